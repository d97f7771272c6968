//! Subscription filters (API.md 18.1): conditions of the query language on
//! the event data at subscribe, the `filter` echo in the subscribe answer
//! and in `/stats/subscriptions`, delivery of node events and published
//! objects, BEEPs, bad conditions (400, nothing created), and the durable
//! position passing what the conditions skipped.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(10);

fn subscribe(srv: &TestServer, user: &TestUser, channel: &str, query: &str) -> Value {
    srv.subscribe_to(user.auth(), channel, query)
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

fn publish(srv: &TestServer, user: &TestUser, channel: &str, data: Value) {
    srv.publish_on(user.auth(), channel, &json!({ "data": data }));
}

/// The `data` of the next `count` events of `sub` (BEEPs skipped).
fn next_data(srv: &TestServer, user: &TestUser, sub: u64, count: usize) -> Vec<Value> {
    (0..count)
        .map(|_| srv.next_event(user.auth(), sub, SOON)["data"].clone())
        .collect()
}

fn stats_of(srv: &TestServer, channel: &str) -> Vec<Value> {
    let (status, stats) = srv.get("/stats/subscriptions", srv.admin());
    assert_eq!(status, 200, "{stats}");
    stats
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["channel"] == channel)
        .cloned()
        .collect()
}

#[test]
fn the_filter_is_echoed_in_first_order_with_last_values_and_listed_in_stats() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("flt");
    let sub = subscribe(
        &srv,
        &user,
        &channel,
        "?kind=test&promisc=true&name=a%20b%26c&ack=implicit&n__gt=007&kind=kbuild",
    );
    assert_eq!(
        keys(&sub),
        ["id", "channel", "user", "promiscuous", "filter"]
    );
    assert_eq!(
        serde_json::to_string(&sub["filter"]).unwrap(),
        r#"{"kind":"kbuild","name":"a b&c","n__gt":"007"}"#
    );
    let plain = subscribe(&srv, &user, &channel, "?promisc=1&ack=implicit");
    assert_eq!(keys(&plain), ["id", "channel", "user", "promiscuous"]);
    let stats = stats_of(&srv, &channel);
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0]["filter"], sub["filter"]);
    assert!(stats[1].get("filter").is_none(), "{}", stats[1]);
}

#[test]
fn conditions_select_published_objects_with_the_query_language() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    // conditions, items published in order (an "i" marker added), the
    // markers that must arrive; the last item always matches
    let cases: &[(&str, &[Value], &[i64])] = &[
        (
            "result__ne=pass",
            &[json!({"result": "pass"}), json!({}), json!({"result": "x"})],
            &[1, 2],
        ),
        (
            "kind__in=kbuild,test",
            &[json!({"kind": "job"}), json!({"kind": "test"})],
            &[1],
        ),
        (
            "name__re=b[0-9]c",
            &[json!({"name": 5}), json!({"name": ["z", "ab1c"]})],
            &[1],
        ),
        (
            "data.n__gt=2",
            &[json!({"data": {"n": "9"}}), json!({"data": {"n": 2.5}})],
            &[1],
        ),
        (
            "flag=true",
            &[json!({"flag": "true"}), json!({"flag": true})],
            &[1],
        ),
        ("gone=null", &[json!({"gone": 1}), json!({"a": 1})], &[1]),
        ("n__int=-3", &[json!({"n": "-3"}), json!({"n": -3})], &[1]),
        (
            "items.k=v2",
            &[
                json!({"items": [{"k": "v1"}]}),
                json!({"items": [{"k": "v2"}]}),
            ],
            &[1],
        ),
        // no field rules of section 7: `id` is an ordinary string here
        ("id=abc", &[json!({"id": 5}), json!({"id": "abc"})], &[1]),
    ];
    for (query, items, want) in cases {
        let channel = uniq("flt");
        let sub = subscription_id(&subscribe(&srv, &user, &channel, &format!("?{query}")));
        for (i, item) in items.iter().enumerate() {
            let mut item = item.clone();
            item["i"] = json!(i);
            publish(&srv, &user, &channel, item);
        }
        let got: Vec<i64> = next_data(&srv, &user, sub, want.len())
            .iter()
            .map(|d| d["i"].as_i64().unwrap())
            .collect();
        assert_eq!(&got, want, "{query}");
        unsubscribe(&srv, &user, sub);
    }
}

#[test]
fn node_events_are_matched_on_their_fields_and_the_owner_filter_still_applies() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let group = uniq("fg");
    let mine = subscription_id(&subscribe(
        &srv,
        &user,
        "node",
        &format!("?group={group}&kind=kbuild&result=fail"),
    ));
    let node = |token: Option<&str>, kind: &str, result: &str| {
        srv.make_node(
            token,
            &json!({"name": uniq("n"), "kind": kind, "path": ["x"], "group": group,
                    "result": result, "data": {}}),
        )
    };
    node(other.auth(), "kbuild", "fail"); // another owner
    node(user.auth(), "kbuild", "pass");
    node(user.auth(), "checkout", "fail");
    let target = node(user.auth(), "kbuild", "fail");
    let got = srv.next_event(user.auth(), mine, SOON);
    assert_eq!(got["data"]["id"], target["id"]);
    assert_eq!(got["data"]["op"], "created");
}

#[test]
fn data_that_is_not_an_object_reaches_only_unfiltered_subscriptions() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("flt");
    let filtered = subscription_id(&subscribe(&srv, &user, &channel, "?gone=null"));
    let plain = subscription_id(&subscribe(&srv, &user, &channel, ""));
    let items = [json!("text"), json!([1, 2]), json!(42), json!({"x": 1})];
    for item in &items {
        publish(&srv, &user, &channel, item.clone());
    }
    assert_eq!(next_data(&srv, &user, filtered, 1), [json!({"x": 1})]);
    assert_eq!(next_data(&srv, &user, plain, 4), items);
}

#[test]
fn bad_conditions_are_400_and_create_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let bad = [
        "name__like=x",
        "name__re=%5B",
        "name__re=(%3F%3Dx)",
        "data.n__int=abc",
        "kind__in=null",
        "kind__nin=null",
        "data..x=1",
        ".=1",
        "=1",
        "data.x%00y=1",
    ];
    for query in bad {
        let channel = uniq("flt");
        let sid = uniq("sid");
        let (status, body) = srv
            .request(
                "POST",
                &format!("/subscribe/{channel}?promisc=true&subscriber_id={sid}&{query}"),
                user.auth(),
                Body::None,
            )
            .pair();
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["detail"].is_string(), "{query}: {body}");
        assert!(stats_of(&srv, &channel).is_empty(), "{query}");
        // the subscriber id was not claimed
        let taken = subscribe(&srv, &other, &channel, &format!("?subscriber_id={sid}"));
        assert_eq!(taken["user"], json!(other.username));
    }
    let (status, body) = srv
        .request("POST", "/subscribe/x?name__like=x", user.auth(), Body::None)
        .pair();
    assert_detail(status, &body, 400, "Unsupported query operator: like");
    // more conditions than the query language allows
    let many: Vec<String> = (0..=kci_lite::query::MAX_CONDITIONS)
        .map(|i| format!("k{i}=v"))
        .collect();
    let channel = uniq("flt");
    let (status, body) = srv
        .request(
            "POST",
            &format!("/subscribe/{channel}?{}", many.join("&")),
            user.auth(),
            Body::None,
        )
        .pair();
    assert_eq!(status, 400, "{body}");
    assert!(stats_of(&srv, &channel).is_empty());
}

#[test]
fn skipped_events_pass_the_durable_position_and_beeps_still_come() {
    let srv = TestServer::builder()
        .var("KEEP_ALIVE_PERIOD", "0.2")
        .start();
    let user = srv.make_user(&[]);
    let (channel, sid) = (uniq("flt"), uniq("sid"));
    let query = format!("?subscriber_id={sid}&kind=keep");
    let sub = subscription_id(&subscribe(&srv, &user, &channel, &query));
    publish(&srv, &user, &channel, json!({"kind": "keep", "n": 1}));
    publish(&srv, &user, &channel, json!({"kind": "drop", "n": 2}));
    publish(&srv, &user, &channel, json!({"kind": "drop", "n": 3}));
    assert_eq!(next_data(&srv, &user, sub, 1)[0]["n"], 1);
    // two polls that can only be keep-alives: by the second, the drops
    // are passed and the first poll acknowledged n=1
    for _ in 0..2 {
        let (_, event) = srv.listen_message(user.auth(), sub, SOON);
        assert!(is_beep(&event), "{event}");
    }
    unsubscribe(&srv, &user, sub);
    // without conditions, the drops would come now had they not been passed
    let sub = subscription_id(&subscribe(
        &srv,
        &user,
        &channel,
        &format!("?subscriber_id={sid}"),
    ));
    publish(&srv, &user, &channel, json!({"kind": "sentinel"}));
    assert_eq!(
        next_data(&srv, &user, sub, 1),
        [json!({"kind": "sentinel"})]
    );
}
