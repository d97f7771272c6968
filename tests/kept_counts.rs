//! Counts kept per (kind, state): a total for a kind, a state or both is
//! read from them, and must always equal the count over the nodes
//! themselves: after creates, updates that change a state or not, and a
//! schema downgrade and upgrade that rebuilds them.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::process::Command;

use common::process::BINARY;
use common::*;
use serde_json::{Value, json};

const KINDS: [&str; 3] = ["checkout", "kbuild", "test"];
const STATES: [&str; 4] = ["running", "available", "closing", "done"];

fn count(srv: &TestServer, query: &str) -> u64 {
    let (status, n) = srv.get(&format!("/count?{query}"), None);
    assert_eq!(status, 200, "{query}: {n}");
    n.as_u64().unwrap()
}

/// Every kind/state total as read from the kept counts, and as counted
/// over the nodes (a condition no node fails takes the count off the kept
/// path).
fn assert_kept_counts_agree(srv: &TestServer) {
    let counted = |q: &str| count(srv, &format!("{q}&name__ne=no-node-has-this-name"));
    let mut queries = vec!["kind__ne=x".to_string()];
    for kind in KINDS {
        queries.push(format!("kind={kind}"));
        for state in STATES {
            queries.push(format!("kind={kind}&state={state}"));
        }
    }
    for state in STATES {
        queries.push(format!("state={state}"));
    }
    for q in &queries {
        let kept = if q == "kind__ne=x" {
            count(srv, "")
        } else {
            count(srv, q)
        };
        assert_eq!(kept, counted(q), "{q}");
    }
}

fn node(kind: &str, name: &str) -> Value {
    json!({"kind": kind, "name": name, "path": [name]})
}

#[test]
fn kept_counts_follow_creates_updates_and_a_schema_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("counts.db");
    let mut ids = Vec::new();
    {
        let srv = TestServer::builder().db(&db).start();
        let admin = srv.admin();
        for (i, kind) in KINDS.iter().cycle().take(12).enumerate() {
            let made = srv.make_node(admin, &node(kind, &format!("n{i}")));
            ids.push(made["id"].as_str().unwrap().to_string());
        }
        assert_eq!(count(&srv, "kind=kbuild"), 4);
        assert_eq!(count(&srv, "state=running"), 12);
        // state changes through the API move a node between counts
        for (i, id) in ids.iter().enumerate().take(6) {
            let (status, mut doc) = srv.get(&format!("/node/{id}"), None);
            assert_eq!(status, 200);
            doc["state"] = json!(if i % 2 == 0 { "done" } else { "available" });
            let (status, body) = srv.put_json(&format!("/node/{id}"), admin, &doc);
            assert_eq!(status, 200, "{body}");
        }
        // an update that keeps the state changes nothing
        let (_, mut doc) = srv.get(&format!("/node/{}", ids[7]), None);
        doc["result"] = json!("pass");
        let (status, body) = srv.put_json(&format!("/node/{}", ids[7]), admin, &doc);
        assert_eq!(status, 200, "{body}");
        assert_eq!(count(&srv, "state=running"), 6);
        assert_eq!(count(&srv, "kind=checkout&state=done"), 1);
        assert_kept_counts_agree(&srv);
    }
    // down to the schema before the kept counts and up again: rebuilt from
    // the nodes
    for args in [&["down", "--to", "6"][..], &["up"][..]] {
        let out = Command::new(BINARY)
            .arg("migrate")
            .args(args)
            .arg("--db")
            .arg(&db)
            .current_dir(dir.path())
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let srv = TestServer::builder().db(&db).start();
    assert_eq!(count(&srv, "kind=test"), 4);
    assert_eq!(count(&srv, "state=available"), 3);
    assert_kept_counts_agree(&srv);
}

#[test]
fn totals_of_a_page_come_from_the_kept_counts_too() {
    let srv = TestServer::start();
    for i in 0..3 {
        srv.make_node(srv.admin(), &node("kbuild", &format!("k{i}")));
    }
    let (status, page) = srv.get("/nodes?kind=kbuild&limit=1", None);
    assert_eq!(status, 200);
    assert_eq!(page["total"], json!(3));
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    // anything but equalities on kind and state is counted over the nodes
    let (_, page) = srv.get("/nodes?kind=kbuild&state__ne=done&limit=1", None);
    assert_eq!(page["total"], json!(3));
    let (_, page) = srv.get("/nodes?kind__int=1", None);
    assert_eq!(page["total"], json!(0));
}
