//! Timestamps in range: bodies and query strings accept years 1–9999 with
//! at most six fractional digits (what Python's datetime and pydantic read),
//! so that every stored timestamp has a four-digit year and text order is
//! time order.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Timestamps no body or query may carry.
const OUT_OF_RANGE: [&str; 8] = [
    "+10000-01-01T00:00:00",
    "10000-01-01T00:00:00",
    "0000-01-01T00:00:00",
    "-0001-01-01T00:00:00",
    "+2024-01-01T00:00:00",
    "2024-01-01T00:00:00.1234567",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:30:00-01:00",
];

fn count(srv: &TestServer, query: &str) -> u64 {
    let (status, n) = srv.get(&format!("/count{query}"), None);
    assert_eq!(status, 200, "{n}");
    n.as_u64().expect("integer")
}

fn id(node: &Value) -> String {
    node["id"].as_str().expect("id").to_string()
}

#[track_caller]
fn assert_bad_datetime(status: u16, body: &Value, field: &str) {
    assert_422(
        status,
        body,
        &[json!("body"), json!(field)],
        Some("datetime_from_date_parsing"),
    );
    assert_eq!(body["detail"][0]["msg"], "Input should be a valid datetime");
}

#[test]
fn out_of_range_body_timestamps_are_422_and_store_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for field in ["timeout", "created", "holdoff"] {
        for bad in OUT_OF_RANGE {
            let name = uniq("bad-ts");
            let by_name = format!("?name={name}");
            assert_eq!(count(&srv, &by_name), 0);
            let (status, body) = srv.post_json(
                "/node",
                user.auth(),
                &json!({"name": name, "path": [name], field: bad}),
            );
            assert_bad_datetime(status, &body, field);
            assert_eq!(count(&srv, &by_name), 0, "{field}={bad}: nothing created");
        }
    }
}

#[test]
fn out_of_range_timestamps_in_updates_are_422_and_change_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "n", "path": ["n"], "timeout": "2030-01-01T00:00:00"}),
    );
    let path = format!("/node/{}", id(&node));
    for bad in OUT_OF_RANGE {
        let (status, body) = srv.put_json(&path, user.auth(), &json!({"timeout": bad}));
        assert_bad_datetime(status, &body, "timeout");
        let (status, body) = srv.patch_json(&path, user.auth(), &json!({"holdoff": bad}));
        assert_bad_datetime(status, &body, "holdoff");
    }
    let (status, stored) = srv.get(&path, None);
    assert_eq!(status, 200);
    assert_eq!(stored, node, "the node is unchanged");
}

#[test]
fn range_edges_are_stored_and_sort_in_time_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let name = uniq("edge");
    let late = srv.make_node(
        user.auth(),
        &json!({"name": name, "path": [name], "timeout": "9999-12-31T23:59:59.999999"}),
    );
    assert_eq!(late["timeout"], "9999-12-31T23:59:59.999000");
    let early = srv.make_node(
        user.auth(),
        &json!({"name": name, "path": [name], "created": "0001-01-01T00:00:00Z",
                "timeout": "2999-01-01T01:00:00+01:00"}),
    );
    assert_eq!(early["created"], "0001-01-01T00:00:00.000000");
    assert_eq!(early["timeout"], "2999-01-01T00:00:00.000000");
    let (_, stored) = srv.get(&format!("/node/{}", id(&late)), None);
    assert_eq!(stored["timeout"], "9999-12-31T23:59:59.999000");
    assert_eq!(stored["state"], "running", "a far timeout is not past");

    let ids = |query: &[(&str, &str)]| -> Vec<String> {
        let mut pairs = vec![("name", name.as_str())];
        pairs.extend_from_slice(query);
        let (status, page) = srv.get(&format!("/nodes{}", qs(&pairs)), None);
        assert_eq!(status, 200, "{query:?}: {page}");
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(id)
            .collect()
    };
    assert_eq!(ids(&[("timeout__gt", "3000-01-01")]), [id(&late)]);
    assert_eq!(ids(&[("timeout__lt", "3000-01-01")]), [id(&early)]);
    assert_eq!(ids(&[("created__lt", "1000-01-01")]), [id(&early)]);
    assert_eq!(ids(&[("created__gte", "0001-01-01")]).len(), 2);
    assert_eq!(ids(&[("timeout__lte", "9999-12-31T23:59:59.999")]).len(), 2);
}

#[test]
fn out_of_range_query_timestamps_are_400() {
    let srv = TestServer::start();
    // unencoded, `+` reads as a space: still refused
    for path in ["/nodes", "/count"] {
        let (status, body) = srv.get(&format!("{path}?created__gt=+10000-01-01"), None);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["detail"].is_string(), "{path}: {body}");
    }
    let dates = ["+10000-01-01", "10000-01-01", "0000-01-01", "-0001-01-01"];
    for bad in dates.into_iter().chain(OUT_OF_RANGE) {
        for path in ["/nodes", "/count"] {
            for op in ["created__gt", "timeout__lt", "updated"] {
                let (status, body) = srv.get(&format!("{path}{}", qs(&[(op, bad)])), None);
                assert_detail(status, &body, 400, &format!("Invalid timestamp: '{bad}'"));
            }
            let list = format!("2024-01-01,{bad}");
            let (status, body) = srv.get(&format!("{path}{}", qs(&[("created__in", &list)])), None);
            assert_detail(status, &body, 400, &format!("Invalid timestamp: '{bad}'"));
        }
    }
    for good in [
        "2024-01-01",
        "0001-01-01",
        "9999-12-31T23:59:59.999999+00:00",
    ] {
        let (status, body) = srv.get(&format!("/nodes{}", qs(&[("created__gt", good)])), None);
        assert_eq!(status, 200, "{good}: {body}");
        let (status, body) = srv.get(&format!("/count{}", qs(&[("created__lt", good)])), None);
        assert_eq!(status, 200, "{good}: {body}");
    }
}

#[test]
fn stored_years_out_of_range_stay_readable() {
    // a database written before the range was enforced
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("kci.db");
    let legacy = "+10000-01-01T00:00:00.000000";
    let (far, old) = {
        let srv = TestServer::builder().db(&db).start();
        let user = srv.make_user(&[]);
        let body = json!({"name": "n", "path": ["n"], "timeout": "2999-01-01T00:00:00"});
        (
            id(&srv.make_node(user.auth(), &body)),
            id(&srv.make_node(user.auth(), &body)),
        )
    };
    let conn = rusqlite::Connection::open(&db).expect("open");
    let set = |id: &str, field: &str, text: &str| {
        let sql = format!(
            "UPDATE node SET {field} = ?2, doc = json_set(doc, '$.{field}', ?2) WHERE id = ?1"
        );
        assert_eq!(conn.execute(&sql, [id, text]).expect("update"), 1);
    };
    set(&far, "timeout", legacy);
    set(&old, "created", "-0001-01-01T00:00:00.000000");
    drop(conn);

    let srv = TestServer::builder().db(&db).start();
    // the timer still runs: the text comparison of the old row makes it time
    // out at once, as it always did, and it is written back in range
    let done = wait_for(Duration::from_secs(10), "the old row to time out", || {
        let (status, node) = srv.get(&format!("/node/{far}"), None);
        assert_eq!(status, 200, "{node}");
        (node["state"] == "done").then_some(node)
    });
    assert_eq!(done["timeout"], "9999-12-31T23:59:59.999000");
    let stored: String = srv
        .db_reader()
        .query_row("SELECT timeout FROM node WHERE id = ?1", [&far], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(stored, "9999-12-31T23:59:59.999000");
    // a year before 1 reads as year 1, and an update writes it back so
    let path = format!("/node/{old}");
    let (status, node) = srv.get(&path, None);
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["created"], "0001-01-01T00:00:00.000000");
    let (status, node) = srv.put_json(&path, srv.admin(), &json!({"name": "m"}));
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["created"], "0001-01-01T00:00:00.000000");
    let (status, page) = srv.get(&format!("/nodes?id={old}"), None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["created"], "0001-01-01T00:00:00.000000");
}

#[test]
fn events_from_epoch_seconds_must_stay_in_range() {
    let srv = TestServer::start();
    for from in ["253402300800", "-62135596801"] {
        let (status, body) = srv.get(&format!("/events?from={from}"), None);
        assert_eq!(status, 400, "from={from}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("'from'")),
            "{body}"
        );
    }
    let (status, body) = srv.get("/events?from=253402300799", None);
    assert_eq!(status, 200, "{body}");
}
