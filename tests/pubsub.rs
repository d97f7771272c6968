//! Pub/Sub (API.md 9.1–9.3): subscribe, publish, listen, keep-alive,
//! unsubscribe, the owner filter, subscription stats, node events, and
//! long polls that are parked without holding a worker thread.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::{Duration, Instant};

use common::*;
use regex::Regex;
use serde_json::{Value, json};

/// Listen message keys, in order.
const LISTEN_KEYS: [&str; 4] = ["type", "pattern", "channel", "data"];
/// The first six CloudEvent members, in order.
const CE_HEAD: [&str; 6] = ["specversion", "id", "source", "type", "time", "data"];
const SUBSCRIPTION_KEYS: [&str; 4] = ["id", "channel", "user", "promiscuous"];
const STATS_KEYS: [&str; 6] = [
    "id",
    "channel",
    "user",
    "promiscuous",
    "created",
    "last_poll",
];
const DEFAULT_SOURCE: &str = "https://api.kernelci.org/";
const DEFAULT_TYPE: &str = "api.kernelci.org";
/// Client timeout of a listen that should answer at once.
const SOON: Duration = Duration::from_secs(10);

fn uuid4() -> Regex {
    Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$").unwrap()
}

fn ce_time() -> Regex {
    Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$").unwrap()
}

fn naive_ts() -> Regex {
    Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$").unwrap()
}

/// A server whose keep-alive is `period` seconds.
fn server_with_keep_alive(period: &str) -> TestServer {
    TestServer::builder()
        .var("KEEP_ALIVE_PERIOD", period)
        .start()
}

fn sub_of(srv: &TestServer, user: &TestUser, channel: &str, query: &str) -> u64 {
    subscription_id(&srv.subscribe_to(user.auth(), channel, query))
}

/// Waits until every subscription in `ids` has been polled (its `/listen`
/// reached the broker, so it is answered or parked).
fn wait_polled(srv: &TestServer, ids: &[u64]) {
    wait_for(
        Duration::from_secs(10),
        "listens to reach the broker",
        || {
            let (status, stats) = srv.get("/stats/subscriptions", srv.admin());
            assert_eq!(status, 200, "{stats}");
            let polled = stats
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| ids.contains(&s["id"].as_u64().unwrap()) && !s["last_poll"].is_null())
                .count();
            (polled == ids.len()).then_some(())
        },
    );
}

fn stats_entry(srv: &TestServer, id: u64) -> Option<Value> {
    let (status, stats) = srv.get("/stats/subscriptions", srv.admin());
    assert_eq!(status, 200, "{stats}");
    stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
}

fn revision() -> Value {
    json!({"tree": "mainline", "url": "https://git.example.org/linux.git",
           "branch": "master", "commit": "0123abcd"})
}

fn checkout(group: &str) -> Value {
    json!({"kind": "checkout", "name": uniq("co"), "path": ["checkout", "x"],
           "group": group, "data": {"kernel_revision": revision()}})
}

fn not_found(id: u64) -> String {
    format!("Subscription id not found: 'Subscription {id} not found'")
}

// -- subscribe ---------------------------------------------------------------------------

#[test]
fn subscribe_shape_and_promisc_words() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    let sub = srv.subscribe_to(user.auth(), &channel, "");
    assert_eq!(keys(&sub), SUBSCRIPTION_KEYS, "{sub}");
    assert!(subscription_id(&sub) > 0, "{sub}");
    assert_eq!(sub["channel"], channel.as_str());
    assert_eq!(sub["user"], user.username.as_str());
    assert_eq!(sub["promiscuous"], false);
    for word in ["true", "1", "yes", "on", "TRUE", "Yes", "t", "y", "ON"] {
        let sub = srv.subscribe_to(user.auth(), &channel, &format!("?promisc={word}"));
        assert_eq!(keys(&sub), SUBSCRIPTION_KEYS, "{sub}");
        assert_eq!(sub["promiscuous"], true, "promisc={word}: {sub}");
    }
    for word in ["false", "0", "no", "off", "FALSE", "f", "n"] {
        let sub = srv.subscribe_to(user.auth(), &channel, &format!("?promisc={word}"));
        assert_eq!(sub["promiscuous"], false, "promisc={word}: {sub}");
    }
    for word in ["maybe", "2", "tru", "yess"] {
        let (status, body) = srv
            .request(
                "POST",
                &format!("/subscribe/{channel}?promisc={word}"),
                user.auth(),
                Body::None,
            )
            .pair();
        assert_422(status, &body, &[json!("query"), json!("promisc")], None);
    }
    let (status, body) = srv
        .request("POST", &format!("/subscribe/{channel}"), None, Body::None)
        .pair();
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn subscription_ids_are_unique_and_increasing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = sub_of(&srv, &user, &uniq("ch"), "");
        ids.push(id);
        let reply = srv.request(
            "POST",
            &format!("/unsubscribe/{id}"),
            user.auth(),
            Body::None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

// -- publish / listen ------------------------------------------------------------------------

#[test]
fn publish_then_listen_roundtrip_shape() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    let sub = sub_of(&srv, &user, &channel, "");
    srv.publish_on(
        user.auth(),
        &channel,
        &json!({"data": {"sample_key": "sample_value", "unicode": "ünï ✓", "q": "\"'"}}),
    );
    let (msg, event) = srv.listen_message(user.auth(), sub, SOON);
    assert_eq!(keys(&msg), LISTEN_KEYS, "{msg}");
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["pattern"], Value::Null);
    assert_eq!(msg["channel"], channel.as_str());
    assert!(msg["data"].is_string(), "{msg}");
    assert_eq!(
        keys(&event),
        [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "data",
            "owner",
            "_sequence_id"
        ],
        "{event}"
    );
    assert_eq!(event["specversion"], "1.0");
    assert!(uuid4().is_match(event["id"].as_str().unwrap()), "{event}");
    assert_eq!(event["source"], DEFAULT_SOURCE);
    assert_eq!(event["type"], DEFAULT_TYPE);
    let time = event["time"].as_str().unwrap();
    assert!(ce_time().is_match(time), "{time}");
    let sent = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    let age = chrono::Utc::now().signed_duration_since(sent);
    assert!(age.num_seconds().abs() < 60, "time {time} is not now");
    assert_eq!(
        event["data"],
        json!({"sample_key": "sample_value", "unicode": "ünï ✓", "q": "\"'"})
    );
    assert_eq!(event["owner"], user.username.as_str());
    assert!(event["_sequence_id"].is_i64(), "{event}");
    // the history holds the same event under the same sequence number
    let (status, history) = srv.get(&format!("/events?channel={channel}"), None);
    assert_eq!(status, 200);
    let history = history.as_array().unwrap().clone();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["sequence_id"], event["_sequence_id"]);
    assert_eq!(history[0]["owner"], user.username.as_str());
    assert_eq!(history[0]["data"], event["data"]);
}

#[test]
fn publish_type_source_and_attributes() {
    let srv = TestServer::builder()
        .var("CLOUD_EVENTS_SOURCE", "https://kci.example.org/src")
        .start();
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    let sub = sub_of(&srv, &user, &channel, "");
    // defaults come from the configuration
    srv.publish_on(user.auth(), &channel, &json!({"data": {"k": 0}}));
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(event["source"], "https://kci.example.org/src");
    assert_eq!(event["type"], DEFAULT_TYPE);
    // attributes cannot override type/source/owner, but add new members
    srv.publish_on(
        user.auth(),
        &channel,
        &json!({"data": {"k": 1}, "type": "my.type", "source": "https://example.org/src",
                "attributes": {"foo": "bar", "owner": "mallory", "type": "zzz",
                               "source": "nope", "data": "replaced?", "num": 7}}),
    );
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(event["type"], "my.type");
    assert_eq!(event["source"], "https://example.org/src");
    assert_eq!(event["owner"], user.username.as_str());
    assert_eq!(event["data"], json!({"k": 1}));
    assert_eq!(event["foo"], "bar");
    assert_eq!(event["num"], 7);
    assert_eq!(
        keys(&event),
        [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "data",
            "owner",
            "foo",
            "num",
            "_sequence_id"
        ]
    );
    // specversion, id and time given as attributes are used
    srv.publish_on(
        user.auth(),
        &channel,
        &json!({"data": {"k": 2},
                "attributes": {"specversion": "1.0-x", "id": "my-own-id",
                               "time": "2020-01-02T03:04:05.000006+00:00"}}),
    );
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(event["specversion"], "1.0-x");
    assert_eq!(event["id"], "my-own-id");
    assert_eq!(event["time"], "2020-01-02T03:04:05.000006+00:00");
    assert_eq!(keys(&event)[..6], CE_HEAD, "{event}");
    assert_eq!(event["owner"], user.username.as_str());
}

#[test]
fn publish_field_types_are_validated() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    for (body, field) in [
        (json!({"data": {"a": 1}, "type": {"no": 1}}), "type"),
        (json!({"data": {"a": 1}, "type": 5}), "type"),
        (json!({"data": {"a": 1}, "source": ["x"]}), "source"),
        (
            json!({"data": {"a": 1}, "attributes": [1, 2]}),
            "attributes",
        ),
        (json!({"data": {"a": 1}, "attributes": "x"}), "attributes"),
    ] {
        let (status, answer) = srv.post_json(&format!("/publish/{channel}"), user.auth(), &body);
        assert_422(status, &answer, &[json!("body"), json!(field)], None);
    }
    let (status, answer) = srv.post_json(&format!("/publish/{channel}"), None, &json!({"data": 1}));
    assert_detail(status, &answer, 401, "Unauthorized");
    // nothing was stored
    assert_eq!(
        srv.get(&format!("/events?channel={channel}"), None).1,
        json!([])
    );
}

#[test]
fn publish_empty_or_missing_data_is_422() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    for data in [
        json!(null),
        json!({}),
        json!([]),
        json!(""),
        json!(0),
        json!(0.0),
        json!(false),
    ] {
        let (status, body) = srv.post_json(
            &format!("/publish/{channel}"),
            user.auth(),
            &json!({ "data": data }),
        );
        assert_422(
            status,
            &body,
            &[json!("body"), json!("data")],
            Some("value_error"),
        );
    }
    for body in [json!({"type": "x"}), json!({})] {
        let (status, answer) = srv.post_json(&format!("/publish/{channel}"), user.auth(), &body);
        assert_422(
            status,
            &answer,
            &[json!("body"), json!("data")],
            Some("missing"),
        );
    }
    assert_eq!(
        srv.get(&format!("/events?channel={channel}"), None).1,
        json!([])
    );
}

#[test]
fn publish_any_truthy_json_roundtrips() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    let sub = sub_of(&srv, &user, &channel, "");
    let values = [
        json!("text"),
        json!([1, 2, 3]),
        json!(42),
        json!(-1),
        json!(0.5),
        json!(true),
        json!({"nested": {"x": [1]}}),
        json!({"a": null}),
        json!([null]),
        json!("BEEP!"),
    ];
    for value in &values {
        srv.publish_on(user.auth(), &channel, &json!({ "data": value }));
    }
    for value in &values {
        let event = srv.next_event(user.auth(), sub, SOON);
        assert_eq!(&event["data"], value);
    }
}

#[test]
fn owner_filter_and_promiscuous_subscriptions() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let channel = uniq("ch");
    let mine = sub_of(&srv, &user, &channel, "");
    let all = sub_of(&srv, &user, &channel, "?promisc=true");
    srv.publish_on(other.auth(), &channel, &json!({"data": {"from": "other"}}));
    // an owner attribute cannot be spoofed
    srv.publish_on(
        other.auth(),
        &channel,
        &json!({"data": {"from": "spoof"}, "attributes": {"owner": user.username}}),
    );
    srv.publish_on(user.auth(), &channel, &json!({"data": {"from": "me"}}));
    let event = srv.next_event(user.auth(), mine, SOON);
    assert_eq!(event["data"], json!({"from": "me"}));
    let got: Vec<Value> = (0..3)
        .map(|_| srv.next_event(user.auth(), all, SOON))
        .collect();
    let data: Vec<&Value> = got.iter().map(|e| &e["data"]).collect();
    assert_eq!(
        data,
        [
            &json!({"from": "other"}),
            &json!({"from": "spoof"}),
            &json!({"from": "me"})
        ]
    );
    assert_eq!(got[0]["owner"], other.username.as_str());
    assert_eq!(got[1]["owner"], other.username.as_str());
    let seqs: Vec<i64> = got
        .iter()
        .map(|e| e["_sequence_id"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // the other user's non-promiscuous subscription sees its own messages only
    let theirs = sub_of(&srv, &other, &channel, "");
    srv.publish_on(user.auth(), &channel, &json!({"data": {"n": 1}}));
    srv.publish_on(other.auth(), &channel, &json!({"data": {"n": 2}}));
    assert_eq!(
        srv.next_event(other.auth(), theirs, SOON)["data"],
        json!({"n": 2})
    );
}

#[test]
fn fan_out_to_every_subscription_and_channels_are_isolated() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let channel = uniq("ch");
    let elsewhere = uniq("ch");
    let subs = [
        (user.clone(), sub_of(&srv, &user, &channel, "")),
        (user.clone(), sub_of(&srv, &user, &channel, "")),
        (other.clone(), sub_of(&srv, &other, &channel, "?promisc=1")),
    ];
    srv.publish_on(
        user.auth(),
        &elsewhere,
        &json!({"data": {"for": "elsewhere"}}),
    );
    srv.publish_on(user.auth(), &channel, &json!({"data": {"x": 1}}));
    let mut ids = Vec::new();
    for (who, sub) in &subs {
        let event = srv.next_event(who.auth(), *sub, SOON);
        assert_eq!(event["data"], json!({"x": 1}));
        ids.push(event["id"].clone());
    }
    // one event, one identity in every subscription
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}

#[test]
fn messages_before_subscribe_are_not_delivered_and_later_ones_are_queued() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    srv.publish_on(user.auth(), &channel, &json!({"data": {"early": true}}));
    let sub = sub_of(&srv, &user, &channel, "");
    for i in 0..5 {
        srv.publish_on(user.auth(), &channel, &json!({"data": {"seq": i}}));
    }
    let got: Vec<Value> = (0..5)
        .map(|_| srv.next_event(user.auth(), sub, SOON)["data"]["seq"].clone())
        .collect();
    assert_eq!(got, [json!(0), json!(1), json!(2), json!(3), json!(4)]);
}

#[test]
fn listen_blocks_then_wakes_on_publish() {
    let srv = server_with_keep_alive("30");
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    let sub = sub_of(&srv, &user, &channel, "");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let got = srv.listen_message(user.auth(), sub, Duration::from_secs(25));
            (Instant::now(), got)
        });
        wait_polled(&srv, &[sub]);
        assert!(!waiter.is_finished(), "listen returned without a message");
        let published = Instant::now();
        srv.publish_on(user.auth(), &channel, &json!({"data": {"wake": "up"}}));
        let (returned, (msg, event)) = waiter.join().unwrap();
        assert_eq!(event["data"], json!({"wake": "up"}));
        assert_eq!(keys(&msg), LISTEN_KEYS);
        let took = returned.duration_since(published);
        assert!(
            took < Duration::from_secs(3),
            "listen woke {took:?} after the publish"
        );
    });
}

// -- keep-alive -----------------------------------------------------------------------------

#[test]
fn keep_alive_beep_shape_and_period() {
    let srv = server_with_keep_alive("0.5");
    let user = srv.make_user(&[]);
    let channel = uniq("quiet");
    let started = Instant::now();
    let sub = sub_of(&srv, &user, &channel, "");
    let (msg, event) = srv.listen_message(user.auth(), sub, SOON);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(4),
        "first BEEP after {took:?}"
    );
    assert_eq!(keys(&msg), LISTEN_KEYS);
    assert_eq!(msg["channel"], channel.as_str());
    assert_eq!(msg["pattern"], Value::Null);
    assert_eq!(keys(&event), CE_HEAD, "{event}");
    assert_eq!(event["data"], "BEEP");
    assert_eq!(event["type"], DEFAULT_TYPE);
    assert_eq!(event["source"], DEFAULT_SOURCE);
    assert_eq!(event["specversion"], "1.0");
    assert!(uuid4().is_match(event["id"].as_str().unwrap()), "{event}");
    assert!(
        ce_time().is_match(event["time"].as_str().unwrap()),
        "{event}"
    );
    // periodic
    let (_, again) = srv.listen_message(user.auth(), sub, SOON);
    assert!(is_beep(&again), "{again}");
    assert_ne!(again["id"], event["id"]);
    // never stored
    assert_eq!(
        srv.get(&format!("/events?channel={channel}"), None).1,
        json!([])
    );
}

#[test]
fn beeps_do_not_pile_up() {
    let srv = server_with_keep_alive("0.5");
    let user = srv.make_user(&[]);
    let channel = uniq("quiet");
    let sub = sub_of(&srv, &user, &channel, "");
    // let several keep-alive periods pass without polling
    std::thread::sleep(Duration::from_millis(2200));
    srv.publish_on(user.auth(), &channel, &json!({"data": {"after": "sleep"}}));
    let mut beeps = 0;
    loop {
        let (_, event) = srv.listen_message(user.auth(), sub, SOON);
        if is_beep(&event) {
            beeps += 1;
            assert!(beeps <= 1, "more than one BEEP was waiting");
            continue;
        }
        assert_eq!(event["data"], json!({"after": "sleep"}));
        break;
    }
    // at most one more waiting BEEP; the one after that takes a period
    let (_, event) = srv.listen_message(user.auth(), sub, SOON);
    if beeps == 0 {
        assert!(is_beep(&event), "{event}");
    }
    let from = Instant::now();
    let (_, event) = srv.listen_message(user.auth(), sub, SOON);
    assert!(is_beep(&event), "{event}");
    if beeps == 0 {
        assert!(
            from.elapsed() >= Duration::from_millis(300),
            "a second BEEP was queued: {:?}",
            from.elapsed()
        );
    }
}

// -- unsubscribe -------------------------------------------------------------------------------

#[test]
fn unsubscribe_with_post_and_get() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for method in ["POST", "GET"] {
        let id = sub_of(&srv, &user, &uniq("ch"), "");
        let reply = srv.request(
            method,
            &format!("/unsubscribe/{id}"),
            user.auth(),
            Body::None,
        );
        assert_eq!(reply.status, 200, "{method}: {}", reply.text);
        assert_eq!(reply.text.trim(), "null");
        let (status, body) = srv.listen_once(user.auth(), id, SOON).unwrap();
        assert_detail(status, &body, 404, &not_found(id));
        for again in ["POST", "GET"] {
            let (status, body) = srv
                .request(
                    again,
                    &format!("/unsubscribe/{id}"),
                    user.auth(),
                    Body::None,
                )
                .pair();
            assert_detail(status, &body, 404, &not_found(id));
        }
        assert!(stats_entry(&srv, id).is_none());
    }
    let (status, body) = srv
        .request("POST", "/unsubscribe/987654321", user.auth(), Body::None)
        .pair();
    assert_detail(status, &body, 404, &not_found(987654321));
    let (status, body) = srv.listen_once(user.auth(), 987654321, SOON).unwrap();
    assert_detail(status, &body, 404, &not_found(987654321));
    let (status, body) = srv.listen_once(None, 1, SOON).unwrap();
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = srv
        .request("POST", "/unsubscribe/1", None, Body::None)
        .pair();
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn foreign_listen_and_unsubscribe_are_403_and_leave_the_subscription() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let channel = uniq("ch");
    let id = sub_of(&srv, &user, &channel, "");
    let denied = format!("Subscription {id} not owned by {}", other.username);
    let (status, body) = srv.listen_once(other.auth(), id, SOON).unwrap();
    assert_detail(status, &body, 403, &denied);
    for method in ["POST", "GET"] {
        let (status, body) = srv
            .request(
                method,
                &format!("/unsubscribe/{id}"),
                other.auth(),
                Body::None,
            )
            .pair();
        assert_detail(status, &body, 403, &denied);
    }
    // even the admin is "another user" here
    let (status, body) = srv.listen_once(srv.admin(), id, SOON).unwrap();
    assert_detail(
        status,
        &body,
        403,
        &format!("Subscription {id} not owned by {ADMIN_USERNAME}"),
    );
    srv.publish_on(user.auth(), &channel, &json!({"data": {"still": "here"}}));
    assert_eq!(
        srv.next_event(user.auth(), id, SOON)["data"],
        json!({"still": "here"})
    );
}

#[test]
fn unsubscribe_releases_a_parked_listen_with_404() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let id = sub_of(&srv, &user, &uniq("ch"), "");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let got = srv.listen_once(user.auth(), id, Duration::from_secs(25));
            (Instant::now(), got)
        });
        wait_polled(&srv, &[id]);
        assert!(!waiter.is_finished(), "listen returned without a message");
        let removed = Instant::now();
        let reply = srv.request(
            "POST",
            &format!("/unsubscribe/{id}"),
            user.auth(),
            Body::None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        let (returned, got) = waiter.join().unwrap();
        let (status, body) = got.expect("the parked listen must be answered");
        assert_detail(status, &body, 404, &not_found(id));
        let took = returned.duration_since(removed);
        assert!(took < Duration::from_secs(3), "released after {took:?}");
    });
}

#[test]
fn sub_id_must_be_an_integer() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for bad in ["abc", "1.5", "-1", "1e3", "%20"] {
        for (method, path) in [
            ("GET", format!("/listen/{bad}")),
            ("POST", format!("/unsubscribe/{bad}")),
            ("GET", format!("/unsubscribe/{bad}")),
        ] {
            let (status, body) = srv.call(method, &path, user.auth(), None, SOON).unwrap();
            assert_422(status, &body, &[json!("path"), json!("sub_id")], None);
        }
    }
}

// -- stats -----------------------------------------------------------------------------------

#[test]
fn subscription_stats_are_admin_only_and_show_polls() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("ch");
    let (status, body) = srv.get("/stats/subscriptions", user.auth());
    assert_detail(status, &body, 403, "Forbidden");
    let (status, body) = srv.get("/stats/subscriptions", None);
    assert_detail(status, &body, 401, "Unauthorized");
    let plain = sub_of(&srv, &user, &channel, "");
    let promisc = sub_of(&srv, &user, &channel, "?promisc=yes");
    let entry = stats_entry(&srv, plain).expect("listed");
    assert_eq!(keys(&entry), STATS_KEYS, "{entry}");
    assert_eq!(entry["channel"], channel.as_str());
    assert_eq!(entry["user"], user.username.as_str());
    assert_eq!(entry["promiscuous"], false);
    assert!(
        naive_ts().is_match(entry["created"].as_str().unwrap()),
        "{entry}"
    );
    assert_eq!(entry["last_poll"], Value::Null);
    assert_eq!(stats_entry(&srv, promisc).unwrap()["promiscuous"], true);
    srv.publish_on(user.auth(), &channel, &json!({"data": {"x": 1}}));
    srv.next_event(user.auth(), plain, SOON);
    let entry = stats_entry(&srv, plain).unwrap();
    let last_poll = entry["last_poll"]
        .as_str()
        .expect("last_poll after a listen");
    assert!(naive_ts().is_match(last_poll), "{entry}");
    assert!(last_poll >= entry["created"].as_str().unwrap(), "{entry}");
    assert_eq!(
        stats_entry(&srv, promisc).unwrap()["last_poll"],
        Value::Null
    );
    let (status, list) = srv.get("/stats/subscriptions", srv.admin());
    assert_eq!(status, 200);
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&plain) && ids.contains(&promisc), "{ids:?}");
    srv.request(
        "POST",
        &format!("/unsubscribe/{plain}"),
        user.auth(),
        Body::None,
    );
    assert!(stats_entry(&srv, plain).is_none());
}

// -- node events ----------------------------------------------------------------------------

#[test]
fn node_events_on_channel_node() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let sub = sub_of(&srv, &user, "node", "");
    let node = srv.make_node(user.auth(), &checkout("evgroup"));
    let id = node["id"].as_str().unwrap().to_string();
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(event["owner"], user.username.as_str());
    assert_eq!(keys(&event["data"]), CREATED_EVENT_KEYS, "{event}");
    assert_eq!(
        event["data"],
        json!({"op": "created", "id": id, "kind": "checkout", "name": node["name"],
               "path": node["path"], "group": "evgroup", "state": "running",
               "result": null, "owner": user.username, "data": node["data"],
               "is_hierarchy": false})
    );
    let (status, patched) = srv.patch_json(
        &format!("/node/{id}"),
        user.auth(),
        &json!({"state": "available", "result": "pass"}),
    );
    assert_eq!(status, 200, "{patched}");
    let event = srv.next_event(user.auth(), sub, SOON);
    let mut want_keys = CREATED_EVENT_KEYS.to_vec();
    want_keys.extend(["previous_state", "previous_result"]);
    assert_eq!(keys(&event["data"]), want_keys, "{event}");
    assert_eq!(
        event["data"],
        json!({"op": "updated", "id": id, "kind": "checkout", "name": node["name"],
               "path": node["path"], "group": "evgroup", "state": "available",
               "result": "pass", "owner": user.username, "data": node["data"],
               "is_hierarchy": false, "previous_state": "running",
               "previous_result": null})
    );
    // a second update reports the values before it
    srv.patch_json(
        &format!("/node/{id}"),
        user.auth(),
        &json!({"state": "done", "result": "fail"}),
    );
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(
        (
            &event["data"]["state"],
            &event["data"]["result"],
            &event["data"]["previous_state"],
            &event["data"]["previous_result"]
        ),
        (
            &json!("done"),
            &json!("fail"),
            &json!("available"),
            &json!("pass")
        )
    );
    // a hierarchy update is one event, children get none
    let root = srv.make_node(
        user.auth(),
        &json!({"kind": "job", "name": uniq("root"), "path": ["r"], "data": {}}),
    );
    let root_id = root["id"].as_str().unwrap().to_string();
    assert_eq!(
        srv.next_event(user.auth(), sub, SOON)["data"]["id"],
        root_id.as_str()
    );
    let mut root_body = root.clone();
    root_body["result"] = json!("pass");
    let (status, written) = srv.put_json(
        &format!("/nodes/{root_id}"),
        user.auth(),
        &json!({"node": root_body, "child_nodes": [
            {"node": {"kind": "test", "name": "c1", "path": ["r", "c1"], "data": {}},
             "child_nodes": [{"node": {"kind": "test", "name": "c2", "path": ["r", "c1", "c2"],
                                       "data": {}}, "child_nodes": []}]}]}),
    );
    assert_eq!(status, 200, "{written}");
    assert_eq!(written.as_array().unwrap().len(), 3, "{written}");
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(event["data"]["id"], root_id.as_str());
    assert_eq!(event["data"]["op"], "updated");
    assert_eq!(event["data"]["is_hierarchy"], true);
    assert_eq!(event["data"]["result"], "pass");
    assert_eq!(event["data"]["previous_result"], Value::Null);
    // noevent updates publish nothing
    for word in ["true", "1", "yes", "on"] {
        let (status, body) = srv.patch_json(
            &format!("/node/{root_id}?noevent={word}"),
            user.auth(),
            &json!({"data": {"w": word}}),
        );
        assert_eq!(status, 200, "{body}");
    }
    let sentinel = srv.make_node(user.auth(), &checkout("sentinel"));
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(
        event["data"]["id"], sentinel["id"],
        "children or noevent updates published something: {event}"
    );
    assert_eq!(event["data"]["op"], "created");
}

#[test]
fn node_events_of_other_owners_need_promisc() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let mine = sub_of(&srv, &user, "node", "");
    let all = sub_of(&srv, &user, "node", "?promisc=on");
    let theirs = srv.make_node(other.auth(), &checkout("g"));
    let own = srv.make_node(user.auth(), &checkout("g"));
    let event = srv.next_event(user.auth(), mine, SOON);
    assert_eq!(event["data"]["id"], own["id"]);
    let event = srv.next_event(user.auth(), all, SOON);
    assert_eq!(event["data"]["id"], theirs["id"]);
    assert_eq!(event["owner"], other.username.as_str());
    assert_eq!(
        srv.next_event(user.auth(), all, SOON)["data"]["id"],
        own["id"]
    );
}

// -- concurrency ------------------------------------------------------------------------------

#[test]
fn many_parked_listens_do_not_block_ordinary_requests() {
    const LISTENERS: usize = 64;
    let srv = TestServer::builder()
        .var("KCI_HTTP_THREADS", "4")
        .var("KEEP_ALIVE_PERIOD", "45")
        .start();
    let user = srv.make_user(&[]);
    let channel = uniq("busy");
    let subs: Vec<u64> = (0..LISTENERS)
        .map(|_| sub_of(&srv, &user, &channel, ""))
        .collect();
    std::thread::scope(|s| {
        // one after the other (a burst of new connections is
        // a_burst_of_connections_is_served_while_listens_are_parked)
        let mut waiters = Vec::new();
        for &sub in &subs {
            let (srv, user) = (&srv, &user);
            waiters.push(s.spawn(move || {
                let event = srv.next_event(user.auth(), sub, Duration::from_secs(40));
                (Instant::now(), event)
            }));
            wait_polled(srv, &[sub]);
        }
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "a listen returned without a message"
        );
        // 64 parked listens, 4 workers: ordinary traffic is still served,
        // on the open connection and on new ones
        let started = Instant::now();
        for _ in 0..10 {
            let (status, count) = srv
                .call("GET", "/count", None, None, Duration::from_secs(5))
                .expect("GET /count on a new connection while listens are parked");
            assert_eq!(status, 200, "{count}");
            assert!(count.is_u64(), "{count}");
            assert_eq!(srv.get("/count", None).0, 200);
        }
        let node = srv.make_node(user.auth(), &checkout("busy"));
        assert_eq!(
            srv.get(&format!("/node/{}", node["id"].as_str().unwrap()), None)
                .0,
            200
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "ordinary requests took {took:?}"
        );
        // one publish wakes them all
        let published = Instant::now();
        srv.publish_on(user.auth(), &channel, &json!({"data": {"go": true}}));
        for waiter in waiters {
            let (returned, event) = waiter.join().unwrap();
            assert_eq!(event["data"], json!({"go": true}));
            let took = returned.duration_since(published);
            assert!(took < Duration::from_secs(10), "woken after {took:?}");
        }
    });
}

/// 64 long polls and 16 ordinary requests arrive at the same moment, each
/// on a new connection: every one of them must be read and handled.
#[test]
fn a_burst_of_connections_is_served_while_listens_are_parked() {
    const LISTENERS: usize = 64;
    const ORDINARY: usize = 16;
    let srv = TestServer::builder()
        .var("KCI_HTTP_THREADS", "4")
        .var("KEEP_ALIVE_PERIOD", "45")
        .start();
    let user = srv.make_user(&[]);
    let channel = uniq("burst");
    let subs: Vec<u64> = (0..LISTENERS)
        .map(|_| sub_of(&srv, &user, &channel, ""))
        .collect();
    let gate = std::sync::Barrier::new(LISTENERS + ORDINARY);
    std::thread::scope(|s| {
        let listens: Vec<_> = subs
            .iter()
            .map(|&sub| {
                let (srv, user, gate) = (&srv, &user, &gate);
                s.spawn(move || {
                    gate.wait();
                    srv.listen_once(user.auth(), sub, Duration::from_secs(15))
                })
            })
            .collect();
        let counts: Vec<_> = (0..ORDINARY)
            .map(|_| {
                let (srv, gate) = (&srv, &gate);
                s.spawn(move || {
                    gate.wait();
                    srv.call("GET", "/count", None, None, Duration::from_secs(5))
                })
            })
            .collect();
        let answered: Vec<Result<(u16, Value), String>> =
            counts.into_iter().map(|c| c.join().unwrap()).collect();
        let stuck = answered.iter().filter(|r| r.is_err()).count();
        // every listen reaches the broker (is polled) soon
        let deadline = Instant::now() + Duration::from_secs(5);
        let unpolled = loop {
            let (_, stats) = srv.get("/stats/subscriptions", srv.admin());
            let unpolled: Vec<u64> = stats
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["last_poll"].is_null())
                .map(|s| s["id"].as_u64().unwrap())
                .collect();
            if unpolled.is_empty() || Instant::now() > deadline {
                break unpolled;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // release the parked listens before asserting
        srv.publish_on(user.auth(), &channel, &json!({"data": {"go": true}}));
        for l in listens {
            let _ = l.join();
        }
        assert_eq!(stuck, 0, "{stuck} of {ORDINARY} GET /count never answered");
        assert!(
            unpolled.is_empty(),
            "{} of {LISTENERS} listens not read within 5 s: {unpolled:?}",
            unpolled.len()
        );
    });
}

#[test]
fn subscriptions_per_user_are_capped_with_429() {
    let srv = TestServer::builder()
        .var("KCI_MAX_SUBSCRIPTIONS_PER_USER", "3")
        .start();
    let (ann, bob) = (srv.make_user(&[]), srv.make_user(&[]));
    let channel = uniq("cap");
    let ids: Vec<u64> = (0..3)
        .map(|_| subscription_id(&srv.subscribe_to(ann.auth(), &channel, "")))
        .collect();
    let (status, body) = srv.post_json(&format!("/subscribe/{channel}"), ann.auth(), &Value::Null);
    assert_eq!(status, 429, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("at most 3"),
        "{body}"
    );
    // another user is not affected, and unsubscribing makes room
    srv.subscribe_to(bob.auth(), &channel, "");
    let (status, _) = srv.post_json(
        &format!("/unsubscribe/{}", ids[0]),
        ann.auth(),
        &Value::Null,
    );
    assert_eq!(status, 200);
    srv.subscribe_to(ann.auth(), &channel, "");
}
