//! Batch listen (API.md 18.3) and explicit acknowledgement (18.4): batches
//! of everything available up to `max`, durable catch-up in batches, the
//! implicit acknowledgement of a whole batch, `ack=explicit` durable
//! subscribers and `POST /ack/{sub_id}`, queue leases with `_receipt` and
//! `_deliveries`, `POST /pop/{list}/ack`, ended leases coming back in
//! place (also after a restart), every bad input changing nothing, and
//! schema 8 (leases) upgrading a schema 7 database with queued messages in
//! place, and going down again.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use common::*;
use kci_lite::store::{self, migrate};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(10);

fn subscribe(srv: &TestServer, user: &TestUser, channel: &str, query: &str) -> u64 {
    subscription_id(&srv.subscribe_to(user.auth(), channel, query))
}

fn unsubscribe(srv: &TestServer, user: &TestUser, id: u64) {
    let reply = srv.request(
        "POST",
        &format!("/unsubscribe/{id}"),
        user.auth(),
        Body::None,
    );
    assert_eq!(reply.status, 200, "unsubscribe {id}: {}", reply.text);
}

fn publish_ns(srv: &TestServer, user: &TestUser, channel: &str, ns: &[i64]) {
    for n in ns {
        srv.publish_on(user.auth(), channel, &json!({"data": {"n": n}}));
    }
}

/// `GET /listen/{sub}?max=n`: the CloudEvents of the batch.
fn batch(srv: &TestServer, user: &TestUser, sub: u64, max: usize) -> Vec<Value> {
    let (status, body) = srv
        .call(
            "GET",
            &format!("/listen/{sub}?max={max}"),
            user.auth(),
            None,
            SOON,
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let items = body
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {body}"));
    assert!(!items.is_empty() && items.len() <= max, "{body}");
    for item in items {
        assert_eq!(keys(item), ["type", "pattern", "channel", "data"]);
    }
    items.iter().map(cloud_event).collect()
}

fn ns(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| !is_beep(e))
        .map(|e| e["data"]["n"].as_i64().unwrap_or_else(|| panic!("{e}")))
        .collect()
}

fn next_ns(srv: &TestServer, user: &TestUser, sub: u64, count: usize) -> Vec<i64> {
    let events: Vec<Value> = (0..count)
        .map(|_| srv.next_event(user.auth(), sub, SOON))
        .collect();
    ns(&events)
}

fn ack(srv: &TestServer, user: &TestUser, sub: u64, body: &Value) -> (u16, Value) {
    srv.post_json(&format!("/ack/{sub}"), user.auth(), body)
}

fn seq_of(event: &Value) -> i64 {
    event["_sequence_id"].as_i64().unwrap()
}

fn push_ns(srv: &TestServer, user: &TestUser, list: &str, ns: &[i64]) {
    for n in ns {
        let (status, body) = srv.post_json(
            &format!("/push/{list}"),
            user.auth(),
            &json!({"data": {"n": n}}),
        );
        assert_eq!(status, 200, "{body}");
    }
}

fn pop(srv: &TestServer, user: &TestUser, list: &str, query: &str) -> Value {
    let (status, body) = srv
        .call(
            "GET",
            &format!("/pop/{list}{query}"),
            user.auth(),
            None,
            SOON,
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn pop_ack(srv: &TestServer, user: &TestUser, list: &str, body: &Value) -> (u16, Value) {
    srv.post_json(&format!("/pop/{list}/ack"), user.auth(), body)
}

#[test]
fn a_batch_holds_everything_available_up_to_max_in_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("bat");
    let sub = subscribe(&srv, &user, &channel, "");
    publish_ns(&srv, &user, &channel, &[0, 1, 2, 3, 4]);
    assert_eq!(ns(&batch(&srv, &user, sub, 3)), [0, 1, 2]);
    assert_eq!(ns(&batch(&srv, &user, sub, 1000)), [3, 4]);
    // without max: one object, as before
    publish_ns(&srv, &user, &channel, &[5]);
    let (_, event) = srv.listen_message(user.auth(), sub, SOON);
    assert_eq!(event["data"], json!({"n": 5}));
}

#[test]
fn a_due_beep_comes_alone_in_a_batch() {
    let srv = TestServer::builder()
        .var("KEEP_ALIVE_PERIOD", "0.2")
        .start();
    let user = srv.make_user(&[]);
    let channel = uniq("bat");
    let sub = subscribe(&srv, &user, &channel, "");
    let events = batch(&srv, &user, sub, 10);
    assert_eq!(events.len(), 1);
    assert!(is_beep(&events[0]), "{:?}", events);
}

#[test]
fn bad_max_is_422_and_consumes_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("bat");
    let sub = subscribe(&srv, &user, &channel, "");
    publish_ns(&srv, &user, &channel, &[1]);
    for value in ["0", "1001", "-1", "abc", "1.5", "", "99999999999999999999"] {
        let (status, body) = srv
            .call(
                "GET",
                &format!("/listen/{sub}?max={value}"),
                user.auth(),
                None,
                SOON,
            )
            .unwrap();
        assert_422(status, &body, &[json!("query"), json!("max")], None);
    }
    assert_eq!(next_ns(&srv, &user, sub, 1), [1]);
}

#[test]
fn durable_catch_up_fills_batches_and_the_next_listen_acknowledges_a_batch() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (channel, sid) = (uniq("bat"), uniq("sid"));
    let query = format!("?subscriber_id={sid}");
    unsubscribe(&srv, &user, subscribe(&srv, &user, &channel, &query));
    publish_ns(&srv, &user, &channel, &[1, 2, 3, 4, 5]);
    let sub = subscribe(&srv, &user, &channel, &query);
    publish_ns(&srv, &user, &channel, &[6]);
    assert_eq!(ns(&batch(&srv, &user, sub, 3)), [1, 2, 3]);
    assert_eq!(ns(&batch(&srv, &user, sub, 10)), [4, 5, 6]);
    unsubscribe(&srv, &user, sub);
    // the second batch was not acknowledged: it comes again, whole
    let sub = subscribe(&srv, &user, &channel, &query);
    assert_eq!(ns(&batch(&srv, &user, sub, 10)), [4, 5, 6]);
}

#[test]
fn an_explicit_subscriber_moves_its_position_only_by_acknowledging() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (channel, sid) = (uniq("ack"), uniq("sid"));
    let query = format!("?subscriber_id={sid}&ack=explicit");
    let sub = subscribe(&srv, &user, &channel, &query);
    publish_ns(&srv, &user, &channel, &[1, 2, 3]);
    let events: Vec<Value> = (0..2)
        .map(|_| srv.next_event(user.auth(), sub, SOON))
        .collect();
    // past what was delivered: 400, nothing changes
    let (status, body) = ack(
        &srv,
        &user,
        sub,
        &json!({"sequence_id": seq_of(&events[1]) + 1}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        ack(
            &srv,
            &user,
            sub,
            &json!({"sequence_id": seq_of(&events[0])})
        ),
        (200, Value::Null)
    );
    // lower than the saved position: no change
    assert_eq!(
        ack(&srv, &user, sub, &json!({"sequence_id": 0})),
        (200, Value::Null)
    );
    unsubscribe(&srv, &user, sub);
    let sub = subscribe(&srv, &user, &channel, &query);
    assert_eq!(next_ns(&srv, &user, sub, 2), [2, 3]);
    unsubscribe(&srv, &user, sub);
    // implicit mode again: starts right after the acknowledged event
    let sub = subscribe(&srv, &user, &channel, &format!("?subscriber_id={sid}"));
    assert_eq!(next_ns(&srv, &user, sub, 2), [2, 3]);
    let (status, body) = ack(&srv, &user, sub, &json!({"sequence_id": 1}));
    assert_eq!(status, 400, "not explicit: {body}");
}

#[test]
fn bad_acknowledgements_are_refused_and_change_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let (channel, sid) = (uniq("ack"), uniq("sid"));
    let query = format!("?subscriber_id={sid}&ack=explicit");
    let (status, body) = ack(&srv, &user, 987_654_321, &json!({"sequence_id": 1}));
    assert_detail(
        status,
        &body,
        404,
        "Subscription id not found: 'Subscription 987654321 not found'",
    );
    let sub = subscribe(&srv, &user, &channel, &query);
    publish_ns(&srv, &user, &channel, &[1]);
    let seq = seq_of(&srv.next_event(user.auth(), sub, SOON));
    let (status, body) = ack(&srv, &other, sub, &json!({"sequence_id": seq}));
    assert_detail(
        status,
        &body,
        403,
        &format!("Subscription {sub} not owned by {}", other.username),
    );
    let (status, body) = srv.post_json(&format!("/ack/{sub}"), None, &json!({"sequence_id": seq}));
    assert_detail(status, &body, 401, "Unauthorized");
    for bad in [
        json!({}),
        json!({"sequence_id": "1"}),
        json!({"sequence_id": 1.5}),
        json!({"sequence_id": null}),
        json!({"sequence_id": true}),
        json!([{"sequence_id": seq}]),
        json!(seq),
    ] {
        let (status, body) = ack(&srv, &user, sub, &bad);
        assert_422(status, &body, &[json!("body")], None);
    }
    let reply = srv.request("POST", &format!("/ack/{sub}"), user.auth(), Body::None);
    assert_eq!(reply.status, 422, "{}", reply.text);
    let (status, body) = srv.post_json("/ack/nope", user.auth(), &json!({"sequence_id": seq}));
    assert_422(status, &body, &[json!("path"), json!("sub_id")], None);
    // nothing was acknowledged: the event comes again
    unsubscribe(&srv, &user, sub);
    let sub = subscribe(&srv, &user, &channel, &query);
    assert_eq!(next_ns(&srv, &user, sub, 1), [1]);
}

#[test]
fn the_ack_parameter_is_checked_at_subscribe_and_a_refusal_creates_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("ack");
    for (query, loc) in [
        (
            "?ack=sometimes&subscriber_id=s1",
            vec![json!("query"), json!("ack")],
        ),
        ("?ack=&subscriber_id=s1", vec![json!("query"), json!("ack")]),
        ("?ack=explicit", vec![json!("query")]),
        ("?ack=explicit&subscriber_id=", vec![json!("query")]),
    ] {
        let (status, body) = srv
            .request(
                "POST",
                &format!("/subscribe/{channel}{query}"),
                user.auth(),
                Body::None,
            )
            .pair();
        assert_422(status, &body, &loc, None);
    }
    let (_, stats) = srv.get("/stats/subscriptions", srv.admin());
    assert!(
        !stats
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["channel"] == channel),
        "{stats}"
    );
}

#[test]
fn a_lease_hides_a_message_until_its_receipt_deletes_it() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let list = uniq("lease");
    push_ns(&srv, &user, &list, &[0, 1, 2]);
    let leased = pop(&srv, &user, &list, "?ack=explicit&lease=30.5");
    assert_eq!(
        keys(&leased)[..6],
        ["specversion", "id", "source", "type", "time", "data"]
    );
    assert_eq!(leased["data"], json!({"n": 0}));
    assert_eq!(leased["_deliveries"], 1);
    let receipt = leased["_receipt"].as_str().unwrap().to_string();
    let plain = pop(&srv, &user, &list, "");
    assert_eq!(plain["data"], json!({"n": 1}));
    assert!(plain.get("_receipt").is_none() && plain.get("_deliveries").is_none());
    let other = pop(&srv, &user, &list, "?ack=explicit");
    assert_eq!(other["data"], json!({"n": 2}));
    assert_ne!(other["_receipt"], json!(receipt));
    // another list's, unknown, garbage: 404, nothing changes
    for (on, r) in [
        (uniq("lease"), receipt.clone()),
        (list.clone(), "no-such-receipt".to_string()),
        (list.clone(), format!("{receipt}x")),
        (list.clone(), String::new()),
    ] {
        let (status, body) = pop_ack(&srv, &user, &on, &json!({ "receipt": r }));
        assert_detail(status, &body, 404, "Receipt not found");
    }
    for bad in [
        json!({}),
        json!({"receipt": 5}),
        json!({"receipt": null}),
        json!([{"receipt": receipt}]),
        json!(receipt),
    ] {
        let (status, body) = pop_ack(&srv, &user, &list, &bad);
        assert_422(status, &body, &[json!("body")], None);
    }
    let (status, body) = srv.post_json(
        &format!("/pop/{list}/ack"),
        None,
        &json!({ "receipt": receipt }),
    );
    assert_detail(status, &body, 401, "Unauthorized");
    assert_eq!(
        pop_ack(&srv, &user, &list, &json!({ "receipt": receipt })),
        (200, Value::Null)
    );
    let (status, body) = pop_ack(&srv, &user, &list, &json!({ "receipt": receipt }));
    assert_detail(status, &body, 404, "Receipt not found");
    assert_eq!(
        pop_ack(&srv, &user, &list, &json!({"receipt": other["_receipt"]})),
        (200, Value::Null)
    );
    push_ns(&srv, &user, &list, &[3]);
    assert_eq!(pop(&srv, &user, &list, "")["data"], json!({"n": 3}));
}

#[test]
fn bad_pop_parameters_are_422_and_consume_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let list = uniq("lease");
    push_ns(&srv, &user, &list, &[0]);
    for (query, loc) in [
        (
            "?ack=explicit&lease=0",
            vec![json!("query"), json!("lease")],
        ),
        (
            "?ack=explicit&lease=0.5",
            vec![json!("query"), json!("lease")],
        ),
        (
            "?ack=explicit&lease=3601",
            vec![json!("query"), json!("lease")],
        ),
        (
            "?ack=explicit&lease=-5",
            vec![json!("query"), json!("lease")],
        ),
        (
            "?ack=explicit&lease=soon",
            vec![json!("query"), json!("lease")],
        ),
        (
            "?ack=explicit&lease=nan",
            vec![json!("query"), json!("lease")],
        ),
        ("?ack=explicit&lease=", vec![json!("query"), json!("lease")]),
        ("?ack=sometimes", vec![json!("query"), json!("ack")]),
        ("?lease=30", vec![json!("query")]),
        ("?ack=implicit&lease=30", vec![json!("query")]),
    ] {
        let (status, body) = srv
            .call(
                "GET",
                &format!("/pop/{list}{query}"),
                user.auth(),
                None,
                SOON,
            )
            .unwrap();
        assert_422(status, &body, &loc, None);
    }
    assert_eq!(pop(&srv, &user, &list, "")["data"], json!({"n": 0}));
}

#[test]
fn an_ended_lease_comes_back_in_place_to_a_waiting_pop() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let list = uniq("lease");
    push_ns(&srv, &user, &list, &[0]);
    let first = pop(&srv, &user, &list, "?ack=explicit&lease=1");
    // this pop waits for the leased message (no other one exists)
    let again = pop(&srv, &user, &list, "?ack=explicit&lease=60");
    assert_eq!(again["data"], json!({"n": 0}));
    assert_eq!(again["_deliveries"], 2);
    assert_ne!(again["_receipt"], first["_receipt"]);
    let (status, body) = pop_ack(&srv, &user, &list, &json!({"receipt": first["_receipt"]}));
    assert_detail(status, &body, 404, "Receipt not found");
    // older than what is pushed after it
    push_ns(&srv, &user, &list, &[1]);
    let (status, body) = srv
        .call(
            "GET",
            &format!("/pop/{list}?ack=explicit&lease=1"),
            user.auth(),
            None,
            SOON,
        )
        .unwrap();
    assert_eq!((status, &body["data"]), (200, &json!({"n": 1})), "{body}");
    assert_eq!(
        pop_ack(&srv, &user, &list, &json!({"receipt": again["_receipt"]})),
        (200, Value::Null)
    );
    let back = pop(&srv, &user, &list, "");
    assert_eq!(back["data"], json!({"n": 1}), "the n=1 lease ended");
}

#[test]
fn leases_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("kci.db");
    let list = uniq("lease");
    let (user, long, short) = {
        let srv = TestServer::builder().db(&db).start();
        let user = srv.make_user(&[]);
        push_ns(&srv, &user, &list, &[0, 1, 2]);
        let long = pop(&srv, &user, &list, "?ack=explicit&lease=600");
        let short = pop(&srv, &user, &list, "?ack=explicit&lease=1");
        (user, long, short)
    };
    let srv = TestServer::builder().db(&db).start();
    let token = srv.login_token(&user.username, &user.password);
    let user = TestUser { token, ..user };
    // the short lease ends and its message comes back before n=2
    let mut got = pop(&srv, &user, &list, "?ack=explicit&lease=60");
    if got["data"] == json!({"n": 2}) {
        // popped before the short lease ended: n=1 follows once it has
        got = pop(&srv, &user, &list, "?ack=explicit&lease=60");
    }
    assert_eq!(got["data"], json!({"n": 1}));
    assert_eq!(got["_deliveries"], 2);
    assert_eq!(
        pop_ack(&srv, &user, &list, &json!({"receipt": long["_receipt"]})),
        (200, Value::Null),
        "the long lease still holds after the restart"
    );
    let (status, body) = pop_ack(&srv, &user, &list, &json!({"receipt": short["_receipt"]}));
    assert_detail(status, &body, 404, "Receipt not found");
}

#[test]
fn schema_8_upgrades_a_schema_7_queue_in_place_and_goes_down_again() {
    const LEASES: u32 = 8;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("v7.db");
    let list = uniq("lease");
    {
        // a queue as schema 7 left it, with messages in it
        let conn = store::open_connection(&db, false).expect("open");
        migrate::up(&conn, Some(LEASES - 1)).expect("up to 7");
        for n in 0..3 {
            conn.execute(
                "INSERT INTO queue (list, envelope) VALUES (?1, ?2)",
                rusqlite::params![
                    list,
                    json!({"specversion": "1.0", "id": format!("old-{n}"),
                        "source": "https://api.kernelci.org/", "type": "api.kernelci.org",
                        "time": "2026-01-01T00:00:00.000000+00:00", "data": {"n": n}})
                    .to_string()
                ],
            )
            .expect("insert");
        }
    }
    let user = {
        let srv = TestServer::builder().db(&db).start();
        let user = srv.make_user(&[]);
        let leased = pop(&srv, &user, &list, "?ack=explicit&lease=600");
        assert_eq!(leased["data"], json!({"n": 0}));
        assert_eq!(leased["_deliveries"], 1, "old rows start at no delivery");
        assert_eq!(pop(&srv, &user, &list, "")["data"], json!({"n": 1}));
        // the kept queue counts started from the rows already there; a
        // leased message is still in its list
        let (_, figures) = srv.get("/stats/server", None);
        assert_eq!(figures["queues"], json!([{"list": list, "length": 2}]));
        user
    };
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        assert_eq!(migrate::current(&conn).expect("version"), migrate::latest());
        // down: the lease columns go, the leased message is available again
        let reverted = migrate::down(&conn, LEASES - 1).expect("down to 7");
        assert_eq!(
            reverted,
            (LEASES..=migrate::latest()).rev().collect::<Vec<_>>()
        );
        let left: Vec<String> = conn
            .prepare("SELECT envelope FROM queue WHERE list = ?1 ORDER BY id")
            .unwrap()
            .query_map([&list], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left.len(), 2, "{left:?}");
    }
    let srv = TestServer::builder().db(&db).start();
    let token = srv.login_token(&user.username, &user.password);
    let user = TestUser { token, ..user };
    assert_eq!(pop(&srv, &user, &list, "")["data"], json!({"n": 0}));
    assert_eq!(pop(&srv, &user, &list, "")["data"], json!({"n": 2}));
}
