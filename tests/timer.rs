//! The node state machine's timers (API.md 8): timeouts, holdoffs, the
//! closing → done cascade, the events they publish, and deadlines that
//! pass while the server is down.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use common::*;
use serde_json::{Value, json};

/// The contract's 1 s plus slack for a loaded machine.
const SLACK: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

/// A naive UTC timestamp `secs` seconds from now (negative: in the past).
fn at(secs: f64) -> String {
    let when = Utc::now() + chrono::Duration::milliseconds((secs * 1000.0) as i64);
    when.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn ts(value: &Value) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(value.as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.6f")
        .unwrap_or_else(|e| panic!("{value}: {e}"))
}

fn id(node: &Value) -> String {
    node["id"].as_str().unwrap().to_string()
}

/// Creates a node of kind `process` (free-form data) with `extra` fields.
fn create(srv: &TestServer, user: &TestUser, extra: Value) -> Value {
    let mut body = json!({"kind": "process", "name": uniq("t"), "path": ["timer"], "data": {}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    srv.make_node(user.auth(), &body)
}

fn node(srv: &TestServer, node_id: &str) -> Value {
    let (status, body) = srv.get(&format!("/node/{node_id}"), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls the node every 100 ms until it is in `state` (panics after `within`).
#[track_caller]
fn wait_state(srv: &TestServer, node_id: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let current = node(srv, node_id);
        if current["state"] == state {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "{node_id} did not become {state} within {within:?}: {current}"
        );
        std::thread::sleep(POLL);
    }
}

/// Asserts that the node stays in `state` for `period`.
#[track_caller]
fn stays(srv: &TestServer, node_id: &str, state: &str, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        let current = node(srv, node_id);
        assert_eq!(current["state"], state, "{current}");
        std::thread::sleep(POLL);
    }
}

/// The node's events in the history (oldest first).
fn history(srv: &TestServer, node_id: &str) -> Vec<Value> {
    let (status, body) = srv.get(&format!("/events?node_id={node_id}"), None);
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

/// (previous_state, state) of every `updated` event of a node.
fn transitions(srv: &TestServer, node_id: &str) -> Vec<(Value, Value)> {
    history(srv, node_id)
        .iter()
        .filter(|e| e["data"]["op"] == "updated")
        .map(|e| {
            (
                e["data"]["previous_state"].clone(),
                e["data"]["state"].clone(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (Value, Value) {
    (json!(a), json!(b))
}

#[test]
fn running_node_times_out_incomplete_with_an_event() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let sub = subscription_id(&srv.subscribe_to(user.auth(), "node", ""));
    let started = Instant::now();
    let created = create(
        &srv,
        &user,
        json!({"data": null, "timeout": at(1.0), "processed_by_kcidb_bridge": true}),
    );
    let node_id = id(&created);
    assert_eq!(created["data"], Value::Null, "{created}");
    let done = wait_state(&srv, &node_id, "done", Duration::from_secs(1) + SLACK);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "timed out early: {:?}",
        started.elapsed()
    );
    assert_eq!(done["result"], "incomplete");
    assert_eq!(
        done["data"],
        json!({"error_code": "node_timeout", "error_msg": "Node timed-out"})
    );
    assert!(ts(&done["updated"]) > ts(&created["updated"]), "{done}");
    assert_eq!(done["processed_by_kcidb_bridge"], false);
    // live: created, then the timer's update with the previous values
    let first = srv.next_event(user.auth(), sub, Duration::from_secs(10));
    assert_eq!(first["data"]["op"], "created");
    let event = srv.next_event(user.auth(), sub, Duration::from_secs(10));
    assert_eq!(event["owner"], user.username.as_str());
    let data = &event["data"];
    assert_eq!(data["op"], "updated");
    assert_eq!(data["id"], node_id.as_str());
    assert_eq!(
        (&data["state"], &data["result"]),
        (&json!("done"), &json!("incomplete"))
    );
    assert_eq!(data["previous_state"], "running");
    assert_eq!(data["previous_result"], Value::Null);
    assert_eq!(data["is_hierarchy"], false);
    assert_eq!(data["data"], done["data"]);
    // stored once, with the node owner as the envelope owner
    let stored = srv.node_events(&node_id);
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[1].envelope["owner"], user.username.as_str());
    assert_eq!(stored[1].owner.as_deref(), Some(user.username.as_str()));
    assert_eq!(transitions(&srv, &node_id), [pair("running", "done")]);
}

#[test]
fn timeout_keeps_other_data_and_an_existing_result() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let keep = create(
        &srv,
        &user,
        json!({"data": {"keep": 1}, "result": "pass", "timeout": at(1.0)}),
    );
    let merge = create(
        &srv,
        &user,
        json!({"data": {"keep": 2}, "timeout": at(1.0)}),
    );
    let done = wait_state(&srv, &id(&keep), "done", Duration::from_secs(1) + SLACK);
    assert_eq!(done["result"], "pass");
    assert_eq!(done["data"], json!({"keep": 1}));
    let done = wait_state(&srv, &id(&merge), "done", SLACK);
    assert_eq!(done["result"], "incomplete");
    assert_eq!(
        done["data"],
        json!({"keep": 2, "error_code": "node_timeout", "error_msg": "Node timed-out"})
    );
}

#[test]
fn past_deadlines_at_creation_are_handled_at_once() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let timed_out = create(&srv, &user, json!({"timeout": at(-3600.0)}));
    // an offset makes a naive "now" five hours in the past (UTC)
    let local = Utc::now().format("%Y-%m-%dT%H:%M:%S+05:00").to_string();
    let utc = create(&srv, &user, json!({"timeout": local}));
    let held = create(
        &srv,
        &user,
        json!({"state": "available", "holdoff": at(-60.0)}),
    );
    let done = wait_state(&srv, &id(&timed_out), "done", SLACK);
    assert_eq!(done["result"], "incomplete");
    let done = wait_state(&srv, &id(&utc), "done", SLACK);
    assert_eq!(done["result"], "incomplete");
    let done = wait_state(&srv, &id(&held), "done", SLACK);
    assert_eq!(done["result"], Value::Null, "holdoff leaves result alone");
    assert_eq!(done["data"], json!({}));
}

#[test]
fn holdoff_without_children_goes_done_result_untouched() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let pass = create(
        &srv,
        &user,
        json!({"state": "available", "result": "pass", "holdoff": at(1.0)}),
    );
    let none = create(
        &srv,
        &user,
        json!({"state": "available", "holdoff": at(1.0)}),
    );
    assert_eq!(node(&srv, &id(&pass))["state"], "available");
    let done = wait_state(&srv, &id(&pass), "done", Duration::from_secs(1) + SLACK);
    assert_eq!(done["result"], "pass");
    assert_eq!(done["data"], json!({}));
    assert_eq!(done["processed_by_kcidb_bridge"], false);
    let done = wait_state(&srv, &id(&none), "done", SLACK);
    assert_eq!(done["result"], Value::Null);
    assert_eq!(done["data"], json!({}));
    assert_eq!(transitions(&srv, &id(&pass)), [pair("available", "done")]);
}

#[test]
fn holdoff_with_a_pending_child_goes_closing_then_done() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let parent = create(
        &srv,
        &user,
        json!({"state": "available", "result": "pass", "holdoff": at(1.0)}),
    );
    let child = create(&srv, &user, json!({"parent": parent["id"]}));
    let parent_id = id(&parent);
    wait_state(&srv, &parent_id, "closing", Duration::from_secs(1) + SLACK);
    stays(&srv, &parent_id, "closing", Duration::from_millis(1200));
    let (status, body) = srv.patch_json(
        &format!("/node/{}", id(&child)),
        user.auth(),
        &json!({"state": "done", "result": "pass"}),
    );
    assert_eq!(status, 200, "{body}");
    let done = wait_state(&srv, &parent_id, "done", SLACK);
    assert_eq!(done["result"], "pass");
    assert_eq!(done["data"], json!({}));
    assert_eq!(
        transitions(&srv, &parent_id),
        [pair("available", "closing"), pair("closing", "done")]
    );
}

#[test]
fn cascade_child_parent_grandparent_in_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("cascade");
    let gp = create(
        &srv,
        &user,
        json!({"group": group, "state": "available", "result": "pass", "holdoff": at(1.0)}),
    );
    let p = create(
        &srv,
        &user,
        json!({"group": group, "parent": gp["id"], "state": "available", "result": "fail",
               "holdoff": at(1.0)}),
    );
    let c = create(&srv, &user, json!({"group": group, "parent": p["id"]}));
    wait_state(&srv, &id(&gp), "closing", Duration::from_secs(1) + SLACK);
    wait_state(&srv, &id(&p), "closing", SLACK);
    assert_eq!(node(&srv, &id(&c))["state"], "running");
    let (status, body) = srv.patch_json(
        &format!("/node/{}", id(&c)),
        user.auth(),
        &json!({"state": "done"}),
    );
    assert_eq!(status, 200, "{body}");
    let p_done = wait_state(&srv, &id(&p), "done", SLACK);
    let gp_done = wait_state(&srv, &id(&gp), "done", SLACK);
    assert_eq!(p_done["result"], "fail");
    assert_eq!(gp_done["result"], "pass");
    // one event per transition, child first
    let (status, done_events) = srv.get(
        &format!("/events?group={group}&state=done&op=updated"),
        None,
    );
    assert_eq!(status, 200);
    let order: Vec<Value> = done_events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["id"].clone())
        .collect();
    assert_eq!(order, [c["id"].clone(), p["id"].clone(), gp["id"].clone()]);
    for n in [&p, &gp] {
        assert_eq!(
            transitions(&srv, &id(n)),
            [pair("available", "closing"), pair("closing", "done")]
        );
    }
}

#[test]
fn manual_closing_without_children_goes_done() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let n = create(&srv, &user, json!({"result": "skip"}));
    let (status, body) = srv.patch_json(
        &format!("/node/{}", id(&n)),
        user.auth(),
        &json!({"state": "closing"}),
    );
    assert_eq!(status, 200, "{body}");
    let done = wait_state(&srv, &id(&n), "done", SLACK);
    assert_eq!(done["result"], "skip");
    assert_eq!(
        transitions(&srv, &id(&n)),
        [pair("running", "closing"), pair("closing", "done")]
    );
}

#[test]
fn timeout_wins_over_holdoff() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let later = create(
        &srv,
        &user,
        json!({"state": "available", "holdoff": at(3600.0), "timeout": at(1.0)}),
    );
    // both deadlines already passed: the timeout rule applies
    let both = create(
        &srv,
        &user,
        json!({"state": "available", "holdoff": at(-10.0), "timeout": at(-1.0)}),
    );
    let done = wait_state(&srv, &id(&both), "done", SLACK);
    assert_eq!(done["result"], "incomplete");
    assert_eq!(done["data"]["error_code"], "node_timeout");
    let done = wait_state(&srv, &id(&later), "done", Duration::from_secs(1) + SLACK);
    assert_eq!(done["result"], "incomplete");
    assert_eq!(done["data"]["error_msg"], "Node timed-out");
    // a closing node with a pending child times out as well
    let closing = create(&srv, &user, json!({"state": "closing", "timeout": at(1.0)}));
    create(&srv, &user, json!({"parent": closing["id"]}));
    let done = wait_state(&srv, &id(&closing), "done", Duration::from_secs(1) + SLACK);
    assert_eq!(done["result"], "incomplete");
}

#[test]
fn null_holdoff_and_future_deadlines_never_fire() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let waiting = create(
        &srv,
        &user,
        json!({"state": "available", "holdoff": null, "timeout": at(3600.0)}),
    );
    let running = create(&srv, &user, json!({"timeout": at(3600.0)}));
    let future = create(
        &srv,
        &user,
        json!({"state": "available", "holdoff": at(3600.0)}),
    );
    let finished = create(
        &srv,
        &user,
        json!({"state": "done", "result": "fail", "timeout": at(-60.0)}),
    );
    stays(&srv, &id(&waiting), "available", Duration::from_secs(2));
    assert_eq!(node(&srv, &id(&running))["state"], "running");
    assert_eq!(node(&srv, &id(&future))["state"], "available");
    // done nodes are left alone
    let again = node(&srv, &id(&finished));
    assert_eq!(again, finished);
    for n in [&waiting, &running, &future, &finished] {
        assert!(transitions(&srv, &id(n)).is_empty());
    }
}

#[test]
fn deadlines_that_passed_while_the_server_was_down_are_handled_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("kci.db");
    let deadline_in = 2.0;
    let (timed, held, deadline) = {
        let srv = TestServer::builder().db(&db).start();
        let user = srv.make_user(&[]);
        let deadline = Utc::now() + chrono::Duration::milliseconds((deadline_in * 1000.0) as i64);
        let timed = create(&srv, &user, json!({"timeout": at(deadline_in)}));
        let held = create(
            &srv,
            &user,
            json!({"state": "available", "result": "pass", "holdoff": at(deadline_in)}),
        );
        (id(&timed), id(&held), deadline)
    };
    let stopped = Utc::now();
    assert!(
        stopped < deadline - chrono::Duration::milliseconds(300),
        "the server took too long to stop; the test is inconclusive"
    );
    // let the deadlines pass while nothing runs
    wait_for(Duration::from_secs(10), "the deadline to pass", || {
        (Utc::now() > deadline + chrono::Duration::milliseconds(300)).then_some(())
    });
    let restart = Utc::now().naive_utc();
    let srv = TestServer::builder().db(&db).start();
    let done = wait_state(&srv, &timed, "done", SLACK);
    assert_eq!(done["result"], "incomplete");
    assert_eq!(done["data"]["error_code"], "node_timeout");
    let updated = ts(&done["updated"]);
    assert!(
        updated >= restart - chrono::Duration::milliseconds(1),
        "updated {updated} before the restart at {restart}"
    );
    let done = wait_state(&srv, &held, "done", SLACK);
    assert_eq!(done["result"], "pass");
    assert!(ts(&done["updated"]) >= restart - chrono::Duration::milliseconds(1));
    assert_eq!(transitions(&srv, &timed), [pair("running", "done")]);
    assert_eq!(transitions(&srv, &held), [pair("available", "done")]);
    // the events were stored after the restart as well
    let last = history(&srv, &timed).pop().unwrap();
    assert!(ts(&last["timestamp"]) >= restart - chrono::Duration::milliseconds(1));
}
