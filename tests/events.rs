//! The event history, `GET /events` (API.md 10): shape, order, every
//! filter, `recursive`, the 400 details, and what is (not) an event.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use common::*;
use regex::Regex;
use serde_json::{Value, json};

const EVENT_KEYS: [&str; 6] = ["id", "timestamp", "sequence_id", "channel", "owner", "data"];

/// `GET /events` with these (encoded) parameters, panics unless 200.
#[track_caller]
fn events(srv: &TestServer, params: &[(&str, &str)]) -> Vec<Value> {
    let path = if params.is_empty() {
        "/events".to_string()
    } else {
        format!("/events{}", qs(params))
    };
    let (status, body) = srv.get(&path, None);
    assert_eq!(status, 200, "{path}: {body}");
    body.as_array()
        .unwrap_or_else(|| panic!("{path}: not a list: {body}"))
        .clone()
}

fn field(events: &[Value], path: &[&str]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let mut v = e;
            for p in path {
                v = &v[*p];
            }
            v.clone()
        })
        .collect()
}

fn node_body(kind: &str, name: &str, group: &str) -> Value {
    let data = if kind == "checkout" {
        json!({"kernel_revision": {"tree": "t", "url": "https://git.example.org/t.git",
                                   "branch": "b", "commit": "c"}})
    } else {
        json!({})
    };
    json!({"kind": kind, "name": name, "path": ["root", name], "group": group, "data": data})
}

fn make(srv: &TestServer, user: &TestUser, kind: &str, name: &str, group: &str) -> Value {
    srv.make_node(user.auth(), &node_body(kind, name, group))
}

fn patch(srv: &TestServer, user: &TestUser, node: &Value, body: &Value) -> Value {
    let (status, answer) = srv.patch_json(
        &format!("/node/{}", node["id"].as_str().unwrap()),
        user.auth(),
        body,
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

fn id_of(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

fn ts(text: &Value) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text.as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.6f")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn event_shape_and_ascending_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = make(&srv, &user, "checkout", "shape", &uniq("g"));
    patch(&srv, &user, &node, &json!({"state": "available"}));
    patch(
        &srv,
        &user,
        &node,
        &json!({"state": "done", "result": "pass"}),
    );
    let got = events(&srv, &[("node_id", id_of(&node))]);
    assert_eq!(got.len(), 3, "{got:?}");
    let ts_re = Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}000$").unwrap();
    for event in &got {
        assert_eq!(keys(event), EVENT_KEYS, "{event}");
        assert!(is_object_id(id_of(event)), "{event}");
        assert!(
            ts_re.is_match(event["timestamp"].as_str().unwrap()),
            "{event}"
        );
        assert!(event["sequence_id"].as_i64().unwrap() > 0);
        assert_eq!(event["channel"], "node");
        assert_eq!(event["owner"], user.username.as_str());
        assert_eq!(event["data"]["id"], node["id"]);
    }
    assert_eq!(
        field(&got, &["data", "op"]),
        [json!("created"), json!("updated"), json!("updated")]
    );
    assert_eq!(
        field(&got, &["data", "state"]),
        [json!("running"), json!("available"), json!("done")]
    );
    assert_eq!(got[1]["data"]["previous_state"], "running");
    assert_eq!(got[2]["data"]["previous_state"], "available");
    assert_eq!(got[2]["data"]["previous_result"], Value::Null);
    let seqs: Vec<i64> = got
        .iter()
        .map(|e| e["sequence_id"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // the first event is close to the node's creation
    let created = ts(&node["created"]);
    assert!((ts(&got[0]["timestamp"]) - created).num_seconds().abs() < 30);
    // the whole history is ascending too
    let all = events(&srv, &[]);
    let seqs: Vec<i64> = all
        .iter()
        .map(|e| e["sequence_id"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // public
    let (status, _) = srv.get("/events?limit=1", None);
    assert_eq!(status, 200);
}

#[test]
fn simple_filters_match_data_fields() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("evf");
    let a = make(&srv, &user, "checkout", "alpha", &group);
    let b = make(&srv, &user, "kbuild", "beta", &group);
    patch(&srv, &user, &b, &json!({"state": "done", "result": "fail"}));
    let g = ("group", group.as_str());
    let ids = |params: &[(&str, &str)]| -> Vec<Value> {
        let mut all = vec![g];
        all.extend_from_slice(params);
        field(&events(&srv, &all), &["data", "id"])
    };
    assert_eq!(
        ids(&[]),
        [a["id"].clone(), b["id"].clone(), b["id"].clone()]
    );
    assert_eq!(
        ids(&[("kind", "kbuild"), ("op", "updated")]),
        [b["id"].clone()]
    );
    assert_eq!(ids(&[("kind", "checkout")]), [a["id"].clone()]);
    assert_eq!(ids(&[("name", "alpha")]), [a["id"].clone()]);
    assert_eq!(
        ids(&[("state", "done"), ("result", "fail")]),
        [b["id"].clone()]
    );
    assert_eq!(ids(&[("state", "running")]).len(), 2);
    assert_eq!(ids(&[("op", "created")]).len(), 2);
    assert_eq!(ids(&[("owner", &user.username)]).len(), 3);
    assert_eq!(ids(&[("owner", "nobody-at-all")]).len(), 0);
    assert_eq!(ids(&[("channel", "node")]).len(), 3);
    assert_eq!(ids(&[("channel", "elsewhere")]).len(), 0);
    assert_eq!(ids(&[("name", "Alpha")]).len(), 0, "exact match");
    // an empty value is no filter
    assert_eq!(ids(&[("kind", ""), ("state", ""), ("owner", "")]).len(), 3);
    assert_eq!(
        events(&srv, &[("group", "")]).len(),
        events(&srv, &[]).len()
    );
}

#[test]
fn path_filter_is_a_regex() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let tag = uniq("p").replace('-', "");
    for (name, second) in [("x", "linux-next"), ("y", "mainline")] {
        srv.make_node(
            user.auth(),
            &json!({"kind": "node", "name": name, "data": {},
                    "path": ["checkout", format!("{tag}-{second}"), name]}),
        );
    }
    let names = |pattern: &str| field(&events(&srv, &[("path", pattern)]), &["data", "name"]);
    assert_eq!(names(&format!("^{tag}-linux")), [json!("x")]);
    assert_eq!(names(&format!("{tag}-.*")), [json!("x"), json!("y")]);
    assert_eq!(names(&format!("{tag}-(main|next)line$")), [json!("y")]);
    // searched in each element of the path list (MongoDB semantics)
    assert_eq!(names("^checkout$"), [json!("x"), json!("y")]);
    assert_eq!(names("^y$"), [json!("y")]);
    let (status, body) = srv.get(&format!("/events{}", qs(&[("path", "(")])), None);
    assert_eq!(status, 400, "invalid regex: {body}");
    assert!(body["detail"].is_string(), "{body}");
}

#[test]
fn node_id_id_and_ids_filters() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = make(&srv, &user, "node", "ids", "g");
    make(&srv, &user, "node", "other", "g");
    patch(&srv, &user, &node, &json!({"result": "pass"}));
    patch(&srv, &user, &node, &json!({"result": "fail"}));
    let got = events(&srv, &[("node_id", id_of(&node))]);
    let ids: Vec<&str> = got.iter().map(id_of).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        field(&events(&srv, &[("id", ids[1])]), &["id"]),
        [json!(ids[1])]
    );
    let upper = ids[1].to_uppercase();
    assert_eq!(
        field(&events(&srv, &[("id", &upper)]), &["id"]),
        [json!(ids[1])],
        "ids are accepted in upper case"
    );
    let both = format!("{},{}", ids[2], ids[0]);
    assert_eq!(
        field(&events(&srv, &[("ids", &both)]), &["id"]),
        [json!(ids[0]), json!(ids[2])],
        "ascending sequence order"
    );
    assert_eq!(
        field(
            &events(&srv, &[("ids", &format!("{},{MISSING_ID}", ids[0]))]),
            &["id"]
        ),
        [json!(ids[0])]
    );
    assert_eq!(events(&srv, &[("id", MISSING_ID)]), Vec::<Value>::new());
    assert_eq!(
        events(&srv, &[("node_id", MISSING_ID)]),
        Vec::<Value>::new()
    );
    // data.id alone works like node_id
    assert_eq!(events(&srv, &[("data.id", id_of(&node))]).len(), 3);
    // combined with other filters
    assert_eq!(
        field(
            &events(&srv, &[("node_id", id_of(&node)), ("result", "fail")]),
            &["id"]
        ),
        [json!(ids[2])]
    );
}

#[test]
fn parameter_errors_are_400_with_exact_details() {
    let srv = TestServer::start();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("id", MISSING_ID), ("ids", MISSING_ID)],
            "Provide either id or ids, not both",
        ),
        (&[("id", "not-an-id")], "Invalid id format"),
        (&[("id", "0123456789abcdef0123456")], "Invalid id format"),
        (
            &[("ids", &format!("{MISSING_ID},nope"))],
            "Invalid ids format",
        ),
        (&[("ids", ",,")], "ids must contain at least one id"),
        (&[("ids", "")], "ids must contain at least one id"),
        (
            &[("node_id", MISSING_ID), ("data.id", MISSING_ID)],
            "Provide either node_id or data.id, not both",
        ),
        (
            &[("from", "not-a-date")],
            "Invalid 'from' parameter, must be an ISO 8601 datetime",
        ),
        (
            &[("from", "2024-13-01")],
            "Invalid 'from' parameter, must be an ISO 8601 datetime",
        ),
        (
            &[("from", "2024-01-01T25:00:00")],
            "Invalid 'from' parameter, must be an ISO 8601 datetime",
        ),
        (
            &[("recursive", "true")],
            "Recursive limit is too large, max is 1000",
        ),
        (
            &[("recursive", "1"), ("limit", "1001")],
            "Recursive limit is too large, max is 1000",
        ),
    ];
    for (params, detail) in cases {
        let path = format!("/events{}", qs(params));
        let (status, body) = srv.get(&path, None);
        assert_detail(status, &body, 400, detail);
    }
    // the largest allowed recursive limit
    let (status, body) = srv.get("/events?recursive=true&limit=1000", None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn from_accepts_every_documented_format() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("evt");
    make(&srv, &user, "node", "first", &group);
    let first = events(&srv, &[("group", &group)]);
    let t1 = ts(&first[0]["timestamp"]);
    // the second event must be stored at a later millisecond
    wait_for(Duration::from_secs(5), "the clock to move on", || {
        (Utc::now().naive_utc() > t1 + chrono::Duration::milliseconds(2)).then_some(())
    });
    make(&srv, &user, "node", "second", &group);
    let names = |from: &str| -> Vec<Value> {
        field(
            &events(&srv, &[("group", &group), ("from", from)]),
            &["data", "name"],
        )
    };
    let second = [json!("second")];
    let both = [json!("first"), json!("second")];
    let naive6 = t1.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    let naive3 = t1.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
    assert_eq!(names(&naive6), second, "strictly after {naive6}");
    assert_eq!(names(&naive3), second);
    assert_eq!(names(&format!("{naive6}Z")), second);
    assert_eq!(names(&format!("{naive6}+00:00")), second);
    let plus2 = (t1 + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%S%.6f+02:00")
        .to_string();
    assert_eq!(names(&plus2), second, "offsets are converted to UTC");
    let before = (t1 - chrono::Duration::milliseconds(1))
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
    assert_eq!(names(&before), both);
    let yesterday = (Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(names(&yesterday), both);
    let tomorrow = (Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(names(&tomorrow), Vec::<Value>::new());
    // Unix epoch seconds, decimal and integer
    let epoch_ms = t1.and_utc().timestamp_millis();
    // (half a millisecond after t1: exact-millisecond values are covered by
    // from_epoch_seconds_with_milliseconds_is_exact)
    let decimal = format!("{}.{:03}5", epoch_ms / 1000, epoch_ms % 1000);
    assert_eq!(names(&decimal), second, "strictly after {decimal}");
    let earlier = format!("{}.{:03}", (epoch_ms - 1) / 1000, (epoch_ms - 1) % 1000);
    assert_eq!(names(&earlier), both, "strictly after {earlier}");
    let whole = format!("{}", epoch_ms / 1000 - 1);
    assert_eq!(names(&whole), both);
    assert_eq!(names("4102444800"), Vec::<Value>::new());
    assert_eq!(names("1700000000.25"), both);
}

/// `from` given as epoch seconds with three decimals is the same instant
/// as the ISO form: an event stored at exactly that millisecond is not
/// "strictly after" it.
#[test]
fn from_epoch_seconds_with_milliseconds_is_exact() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("eve");
    for i in 0..20 {
        make(&srv, &user, "node", &format!("n{i}"), &group);
    }
    let all = events(&srv, &[("group", &group)]);
    for event in &all {
        let t = ts(&event["timestamp"]);
        let ms = t.and_utc().timestamp_millis();
        let epoch = format!("{}.{:03}", ms / 1000, ms % 1000);
        let iso = t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
        let want: Vec<Value> = all
            .iter()
            .filter(|e| ts(&e["timestamp"]) > t)
            .map(|e| e["id"].clone())
            .collect();
        let by_iso = field(&events(&srv, &[("group", &group), ("from", &iso)]), &["id"]);
        assert_eq!(by_iso, want, "from={iso}");
        let by_epoch = field(
            &events(&srv, &[("group", &group), ("from", &epoch)]),
            &["id"],
        );
        assert_eq!(
            by_epoch, want,
            "from={epoch} (= {iso}) includes events at or before that instant"
        );
    }
}

#[test]
fn limit_returns_the_oldest_first() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("evl");
    for name in ["one", "two", "three"] {
        make(&srv, &user, "node", name, &group);
    }
    let names = |limit: &str| {
        field(
            &events(&srv, &[("group", &group), ("limit", limit)]),
            &["data", "name"],
        )
    };
    assert_eq!(names("2"), [json!("one"), json!("two")]);
    assert_eq!(names("1"), [json!("one")]);
    assert_eq!(names("10").len(), 3);
}

#[test]
fn recursive_attaches_the_current_node() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("evr");
    let node = make(&srv, &user, "checkout", "rec", &group);
    patch(&srv, &user, &node, &json!({"result": "pass"}));
    let (_, current) = srv.get(&format!("/node/{}", id_of(&node)), None);
    for word in ["true", "1"] {
        let got = events(
            &srv,
            &[("group", &group), ("recursive", word), ("limit", "10")],
        );
        assert_eq!(got.len(), 2);
        for event in &got {
            let mut want = EVENT_KEYS.to_vec();
            want.push("node");
            assert_eq!(keys(event), want, "{event}");
            assert_eq!(keys(&event["node"]), NODE_KEYS);
            assert_eq!(event["node"], current, "the current node, not a snapshot");
        }
    }
    let got = events(
        &srv,
        &[("group", &group), ("recursive", "false"), ("limit", "10")],
    );
    assert!(got.iter().all(|e| e.get("node").is_none()), "{got:?}");
    let got = events(&srv, &[("group", &group)]);
    assert!(got.iter().all(|e| e.get("node").is_none()), "{got:?}");
    // events whose data.id is not an existing node get no `node`
    let channel = uniq("evch");
    srv.publish_on(user.auth(), &channel, &json!({"data": {"id": MISSING_ID}}));
    srv.publish_on(user.auth(), &channel, &json!({"data": {"x": 1}}));
    let got = events(
        &srv,
        &[("channel", &channel), ("recursive", "true"), ("limit", "5")],
    );
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|e| e.get("node").is_none()), "{got:?}");
}

#[test]
fn other_keys_filter_the_stored_document() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = make(&srv, &user, "job", "doc", &uniq("evo"));
    let id = id_of(&node).to_string();
    let count = |params: &[(&str, &str)]| {
        let mut all = vec![("data.id", id.as_str())];
        all.extend_from_slice(params);
        events(&srv, &all).len()
    };
    assert_eq!(count(&[("data.op", "created")]), 1);
    assert_eq!(count(&[("data.op", "updated")]), 0);
    let (status, _) = srv.put_json(
        &format!("/nodes/{id}"),
        user.auth(),
        &json!({"node": {"result": "pass"}, "child_nodes": []}),
    );
    assert_eq!(status, 200);
    assert_eq!(count(&[("data.op", "updated")]), 1);
    assert_eq!(count(&[("data.is_hierarchy", "true")]), 1);
    assert_eq!(count(&[("data.is_hierarchy", "false")]), 1);
    assert_eq!(count(&[("data.kind", "job")]), 2);
    assert_eq!(count(&[("data.data.nothing", "x")]), 0);
    assert_eq!(count(&[("no_such_key", "x")]), 0);
    let all = events(&srv, &[("data.id", &id)]);
    let seq = all[1]["sequence_id"].to_string();
    assert_eq!(count(&[("sequence_id", &seq)]), 1);
}

#[test]
fn published_events_are_recorded_pushes_and_beeps_are_not() {
    let srv = TestServer::builder()
        .var("KEEP_ALIVE_PERIOD", "0.3")
        .start();
    let user = srv.make_user(&[]);
    let channel = uniq("evch");
    srv.publish_on(
        user.auth(),
        &channel,
        &json!({"data": {"kind": "custom", "value": 1}}),
    );
    let got = events(&srv, &[("channel", &channel)]);
    assert_eq!(got.len(), 1);
    assert_eq!(keys(&got[0]), EVENT_KEYS);
    assert_eq!(got[0]["data"], json!({"kind": "custom", "value": 1}));
    assert_eq!(got[0]["owner"], user.username.as_str());
    assert_eq!(got[0]["channel"], channel.as_str());
    assert_eq!(
        events(&srv, &[("channel", &channel), ("kind", "custom")]),
        got
    );
    let total = srv.event_total();
    // a pushed message is not an event
    let list = uniq("lst");
    let (status, _) = srv.post_json(
        &format!("/push/{list}"),
        user.auth(),
        &json!({"data": {"q": 1}}),
    );
    assert_eq!(status, 200);
    assert_eq!(events(&srv, &[("channel", &list)]), Vec::<Value>::new());
    let (status, popped) = srv.get(&format!("/pop/{list}"), user.auth());
    assert_eq!(status, 200, "{popped}");
    // BEEPs are not events
    let quiet = uniq("quiet");
    let sub = subscription_id(&srv.subscribe_to(user.auth(), &quiet, ""));
    for _ in 0..2 {
        let (_, event) = srv.listen_message(user.auth(), sub, Duration::from_secs(10));
        assert!(is_beep(&event), "{event}");
    }
    assert_eq!(events(&srv, &[("channel", &quiet)]), Vec::<Value>::new());
    assert_eq!(srv.event_total(), total, "push or BEEP stored an event");
}

#[test]
fn noevent_and_hierarchy_updates_in_the_history() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let root = make(&srv, &user, "job", "root", "g");
    let id = id_of(&root).to_string();
    for word in ["true", "1", "yes", "on", "TRUE"] {
        let (status, body) = srv.patch_json(
            &format!("/node/{id}?noevent={word}"),
            user.auth(),
            &json!({"result": "pass"}),
        );
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        field(&events(&srv, &[("node_id", &id)]), &["data", "op"]),
        [json!("created")]
    );
    let (status, body) = srv.patch_json(
        &format!("/node/{id}?noevent=false"),
        user.auth(),
        &json!({"result": "fail"}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, written) = srv.put_json(
        &format!("/nodes/{id}"),
        user.auth(),
        &json!({"node": {"result": "pass"}, "child_nodes": [
            {"node": {"kind": "test", "name": "c", "path": ["root", "c"], "data": {}},
             "child_nodes": []}]}),
    );
    assert_eq!(status, 200, "{written}");
    let child = &written.as_array().unwrap()[1];
    let got = events(&srv, &[("node_id", &id)]);
    assert_eq!(
        field(&got, &["data", "is_hierarchy"]),
        [json!(false), json!(false), json!(true)]
    );
    assert_eq!(got[2]["data"]["previous_result"], "fail");
    assert_eq!(
        events(&srv, &[("node_id", id_of(child))]),
        Vec::<Value>::new()
    );
}

#[test]
fn event_history_ttl_hides_old_events() {
    let srv = TestServer::builder()
        .var("EVENT_HISTORY_TTL_SECONDS", "1")
        .var("KEEP_ALIVE_PERIOD", "0.3")
        .start();
    let user = srv.make_user(&[]);
    let (channel, sid) = (uniq("ttl"), uniq("sid"));
    let durable =
        subscription_id(&srv.subscribe_to(user.auth(), &channel, &format!("?subscriber_id={sid}")));
    srv.request(
        "POST",
        &format!("/unsubscribe/{durable}"),
        user.auth(),
        Body::None,
    );
    srv.publish_on(user.auth(), &channel, &json!({"data": {"old": true}}));
    assert_eq!(events(&srv, &[("channel", &channel)]).len(), 1);
    wait_for(Duration::from_secs(5), "the event to expire", || {
        events(&srv, &[("channel", &channel)])
            .is_empty()
            .then_some(())
    });
    // nor is it delivered to a durable subscriber catching up
    let sub =
        subscription_id(&srv.subscribe_to(user.auth(), &channel, &format!("?subscriber_id={sid}")));
    let (_, event) = srv.listen_message(user.auth(), sub, Duration::from_secs(10));
    assert!(is_beep(&event), "an expired event was delivered: {event}");
    // a fresh event is visible again
    srv.publish_on(user.auth(), &channel, &json!({"data": {"new": true}}));
    assert_eq!(
        field(&events(&srv, &[("channel", &channel)]), &["data"]),
        [json!({"new": true})]
    );
    assert_eq!(
        srv.next_event(user.auth(), sub, Duration::from_secs(10))["data"],
        json!({"new": true})
    );
}
