//! Durable delivery with `subscriber_id` (API.md 9.4): saved positions,
//! catch-up after unsubscribe / restart, the implicit acknowledgement, the
//! owner filter during catch-up, event identity, ownership of subscriber
//! ids, and subscription ids across restarts.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(10);

fn durable(srv: &TestServer, user: &TestUser, channel: &str, sid: &str, extra: &str) -> u64 {
    subscription_id(&srv.subscribe_to(
        user.auth(),
        channel,
        &format!("?subscriber_id={}{extra}", enc(sid)),
    ))
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

fn publish_n(srv: &TestServer, user: &TestUser, channel: &str, n: i64) {
    srv.publish_on(user.auth(), channel, &json!({"data": {"n": n}}));
}

/// The next `count` events (BEEPs skipped).
fn events(srv: &TestServer, user: &TestUser, sub: u64, count: usize) -> Vec<Value> {
    (0..count)
        .map(|_| srv.next_event(user.auth(), sub, SOON))
        .collect()
}

fn ns(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| {
            e["data"]["n"]
                .as_i64()
                .unwrap_or_else(|| panic!("no n: {e}"))
        })
        .collect()
}

#[test]
fn catch_up_after_unsubscribe_with_implicit_ack() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (channel, sid) = (uniq("dur"), uniq("sid"));
    let sub = durable(&srv, &user, &channel, &sid, "");
    publish_n(&srv, &user, &channel, 1);
    publish_n(&srv, &user, &channel, 2);
    let first = events(&srv, &user, sub, 1);
    assert_eq!(ns(&first), [1]);
    // this listen acknowledges n=1 and delivers n=2, which is never acknowledged
    let second = events(&srv, &user, sub, 1);
    assert_eq!(ns(&second), [2]);
    unsubscribe(&srv, &user, sub);
    publish_n(&srv, &user, &channel, 3);
    publish_n(&srv, &user, &channel, 4);
    let sub = durable(&srv, &user, &channel, &sid, "");
    let caught = events(&srv, &user, sub, 3);
    assert_eq!(ns(&caught), [2, 3, 4]);
    // the redelivered event is the same event
    for key in ["id", "time", "_sequence_id", "owner", "source", "type"] {
        assert_eq!(caught[0][key], second[0][key], "{key}");
    }
    publish_n(&srv, &user, &channel, 5);
    assert_eq!(ns(&events(&srv, &user, sub, 1)), [5]);
    // unsubscribing right after a delivery: n=5 comes again, nothing else
    unsubscribe(&srv, &user, sub);
    let sub = durable(&srv, &user, &channel, &sid, "");
    publish_n(&srv, &user, &channel, 6);
    assert_eq!(ns(&events(&srv, &user, sub, 2)), [5, 6]);
}

#[test]
fn new_subscriber_id_starts_now_and_plain_subscriptions_have_no_catch_up() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("dur");
    publish_n(&srv, &user, &channel, 0);
    let sub = durable(&srv, &user, &channel, &uniq("sid"), "");
    publish_n(&srv, &user, &channel, 1);
    assert_eq!(ns(&events(&srv, &user, sub, 1)), [1]);
    // an empty subscriber_id is no subscriber id
    let plain = subscription_id(&srv.subscribe_to(user.auth(), &channel, "?subscriber_id="));
    unsubscribe(&srv, &user, plain);
    publish_n(&srv, &user, &channel, 2);
    let plain = subscription_id(&srv.subscribe_to(user.auth(), &channel, "?subscriber_id="));
    publish_n(&srv, &user, &channel, 3);
    assert_eq!(ns(&events(&srv, &user, plain, 1)), [3]);
}

#[test]
fn catch_up_respects_owner_filter_with_the_new_promisc_value() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let channel = uniq("dur");
    let (plain, promisc, switched) = (uniq("sid"), uniq("sid"), uniq("sid"));
    for (sid, extra) in [(&plain, ""), (&promisc, "&promisc=true"), (&switched, "")] {
        let id = durable(&srv, &user, &channel, sid, extra);
        unsubscribe(&srv, &user, id);
    }
    srv.publish_on(other.auth(), &channel, &json!({"data": {"from": "other"}}));
    srv.publish_on(user.auth(), &channel, &json!({"data": {"from": "me"}}));
    let a = durable(&srv, &user, &channel, &plain, "");
    let got: Vec<Value> = events(&srv, &user, a, 1)
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(got, [json!({"from": "me"})]);
    let b = durable(&srv, &user, &channel, &promisc, "&promisc=true");
    let got = events(&srv, &user, b, 2);
    assert_eq!(
        got.iter().map(|e| e["data"].clone()).collect::<Vec<_>>(),
        [json!({"from": "other"}), json!({"from": "me"})]
    );
    assert_eq!(got[0]["owner"], other.username.as_str());
    // created non-promiscuous, resumed promiscuous: the new value applies
    let c = durable(&srv, &user, &channel, &switched, "&promisc=1");
    assert_eq!(
        events(&srv, &user, c, 2)
            .iter()
            .map(|e| e["data"].clone())
            .collect::<Vec<_>>(),
        [json!({"from": "other"}), json!({"from": "me"})]
    );
}

#[test]
fn live_events_skipped_by_the_owner_filter_advance_the_position() {
    let srv = TestServer::builder()
        .var("KEEP_ALIVE_PERIOD", "0.5")
        .start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let (channel, sid) = (uniq("dur"), uniq("sid"));
    let sub = durable(&srv, &user, &channel, &sid, "");
    srv.publish_on(other.auth(), &channel, &json!({"data": {"skipped": true}}));
    // nothing for this subscriber: BEEPs; the second listen acknowledges
    // the position past the skipped event
    for _ in 0..2 {
        let (_, event) = srv.listen_message(user.auth(), sub, SOON);
        assert!(is_beep(&event), "{event}");
    }
    unsubscribe(&srv, &user, sub);
    srv.publish_on(user.auth(), &channel, &json!({"data": {"mine": true}}));
    let sub = durable(&srv, &user, &channel, &sid, "&promisc=true");
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(event["data"], json!({"mine": true}));
}

#[test]
fn catch_up_then_live_without_duplicates() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (channel, sid) = (uniq("dur"), uniq("sid"));
    let sub = durable(&srv, &user, &channel, &sid, "");
    unsubscribe(&srv, &user, sub);
    for n in 0..3 {
        publish_n(&srv, &user, &channel, n);
    }
    let sub = durable(&srv, &user, &channel, &sid, "");
    // live while catching up
    publish_n(&srv, &user, &channel, 3);
    let first = events(&srv, &user, sub, 1);
    for n in 4..6 {
        publish_n(&srv, &user, &channel, n);
    }
    let mut got = first;
    got.extend(events(&srv, &user, sub, 5));
    assert_eq!(ns(&got), [0, 1, 2, 3, 4, 5]);
    let seqs: Vec<i64> = got
        .iter()
        .map(|e| e["_sequence_id"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // nothing more is waiting: the next message is the next publish
    publish_n(&srv, &user, &channel, 6);
    assert_eq!(ns(&events(&srv, &user, sub, 1)), [6]);
    // the sequence ids are those of the history
    let (status, history) = srv.get(&format!("/events?channel={channel}"), None);
    assert_eq!(status, 200);
    let hist: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["sequence_id"].as_i64().unwrap())
        .collect();
    assert_eq!(&hist[..6], &seqs[..]);
}

#[test]
fn catch_up_keeps_event_identity_and_message_shape() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (channel, sid) = (uniq("dur"), uniq("sid"));
    let id = durable(&srv, &user, &channel, &sid, "");
    unsubscribe(&srv, &user, id);
    let live = subscription_id(&srv.subscribe_to(user.auth(), &channel, ""));
    srv.publish_on(
        user.auth(),
        &channel,
        &json!({"data": {"same": "event"}, "attributes": {"extra": 1}}),
    );
    let (live_msg, live_event) = srv.listen_message(user.auth(), live, SOON);
    let caught_up = durable(&srv, &user, &channel, &sid, "");
    let (msg, event) = srv.listen_message(user.auth(), caught_up, SOON);
    assert_eq!(keys(&msg), ["type", "pattern", "channel", "data"]);
    assert_eq!(msg["type"], live_msg["type"]);
    assert_eq!(msg["pattern"], Value::Null);
    assert_eq!(msg["channel"], channel.as_str());
    assert_eq!(event, live_event, "catch-up differs from live delivery");
    assert_eq!(
        keys(&event).last().map(String::as_str),
        Some("_sequence_id")
    );
}

#[test]
fn independent_subscriber_ids() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("dur");
    let (one, two) = (uniq("sid"), uniq("sid"));
    let s1 = durable(&srv, &user, &channel, &one, "");
    let s2 = durable(&srv, &user, &channel, &two, "");
    publish_n(&srv, &user, &channel, 1);
    assert_eq!(ns(&events(&srv, &user, s1, 1)), [1]);
    unsubscribe(&srv, &user, s1);
    unsubscribe(&srv, &user, s2);
    publish_n(&srv, &user, &channel, 2);
    let s2 = durable(&srv, &user, &channel, &two, "");
    assert_eq!(ns(&events(&srv, &user, s2, 2)), [1, 2]);
    let s1 = durable(&srv, &user, &channel, &one, "");
    assert_eq!(ns(&events(&srv, &user, s1, 2)), [1, 2]);
}

#[test]
fn subscriber_id_of_another_user_is_403() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let (channel, sid) = (uniq("dur"), uniq("sid"));
    let id = durable(&srv, &user, &channel, &sid, "");
    // while the owner's subscription is live and after it ended
    for round in 0..2 {
        let (status, body) = srv
            .request(
                "POST",
                &format!("/subscribe/{channel}?subscriber_id={sid}"),
                other.auth(),
                Body::None,
            )
            .pair();
        assert_detail(
            status,
            &body,
            403,
            &format!("Subscriber {sid} owned by different user"),
        );
        if round == 0 {
            unsubscribe(&srv, &user, id);
        }
    }
    // the owner's position was not disturbed
    publish_n(&srv, &user, &channel, 7);
    let id = durable(&srv, &user, &channel, &sid, "");
    assert_eq!(ns(&events(&srv, &user, id, 1)), [7]);
}

#[test]
fn positions_and_subscription_ids_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("kci.db");
    let (channel, sid) = (uniq("dur"), uniq("sid"));
    let (user, live_id, first_ids, delivered) = {
        let srv = TestServer::builder().db(&db).start();
        let user = srv.make_user(&[]);
        let mut ids: Vec<u64> = (0..3)
            .map(|_| subscription_id(&srv.subscribe_to(user.auth(), &uniq("ch"), "")))
            .collect();
        let sub = durable(&srv, &user, &channel, &sid, "");
        ids.push(sub);
        publish_n(&srv, &user, &channel, 1);
        publish_n(&srv, &user, &channel, 2);
        let got = events(&srv, &user, sub, 2); // acknowledges 1, not 2
        assert_eq!(ns(&got), [1, 2]);
        publish_n(&srv, &user, &channel, 3);
        (user, sub, ids, got[1].clone())
    };
    let srv = TestServer::builder().db(&db).start();
    let token = srv.login_token(&user.username, &user.password);
    let user = TestUser { token, ..user };
    // live subscriptions are gone
    let (status, body) = srv.listen_once(user.auth(), live_id, SOON).unwrap();
    assert_detail(
        status,
        &body,
        404,
        &format!("Subscription id not found: 'Subscription {live_id} not found'"),
    );
    // ids are never reused
    let max_before = *first_ids.iter().max().unwrap();
    let fresh = subscription_id(&srv.subscribe_to(user.auth(), &uniq("ch"), ""));
    assert!(fresh > max_before, "{fresh} after {first_ids:?}");
    // the durable position resumes with the unacknowledged event
    let sub = durable(&srv, &user, &channel, &sid, "");
    assert!(sub > fresh);
    publish_n(&srv, &user, &channel, 4);
    let got = events(&srv, &user, sub, 3);
    assert_eq!(ns(&got), [2, 3, 4]);
    assert_eq!(
        got[0], delivered,
        "redelivery after a restart changed the event"
    );
    let seqs: Vec<i64> = got
        .iter()
        .map(|e| e["_sequence_id"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn node_events_are_durable() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let sid = uniq("sid");
    let id = durable(&srv, &user, "node", &sid, "");
    unsubscribe(&srv, &user, id);
    let node = srv.make_node(
        user.auth(),
        &json!({"kind": "node", "name": uniq("n"), "path": ["n"], "data": {}}),
    );
    let id = durable(&srv, &user, "node", &sid, "");
    let event = srv.next_event(user.auth(), id, SOON);
    assert_eq!(event["data"]["id"], node["id"]);
    assert_eq!(event["data"]["op"], "created");
    assert_eq!(event["owner"], user.username.as_str());
}
