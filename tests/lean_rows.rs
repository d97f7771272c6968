//! The schema step that gives indexed data paths columns of their own: a
//! database written by the schema before it upgrades in place without
//! losing a node, an event or the event sequence, queries answer as
//! before (numbers, booleans, arrays at indexed paths), and `migrate down`
//! gives back the previous schema with the same rows.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;
use std::process::Command;

use common::process::BINARY;
use common::*;
use kci_lite::model::node::Node;
use kci_lite::store::{self, migrate};
use kci_lite::timestamp;
use serde_json::{Value, json};

/// The version of the step under test.
const LEAN_ROWS: u32 = 6;

fn migrate_cmd(dir: &Path, db: &Path, args: &[&str]) -> String {
    let out = Command::new(BINARY)
        .arg("migrate")
        .args(args)
        .arg("--db")
        .arg(db)
        .current_dir(dir)
        .env_clear()
        .output()
        .expect("run kci-lite migrate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "migrate {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The documents written with the previous schema, by name.
fn bodies(group: &str) -> Vec<Value> {
    let node = |name: &str, data: Value| {
        json!({"name": name, "kind": "process", "path": ["checkout", name], "group": group,
               "data": data})
    };
    vec![
        node(
            "plain",
            json!({"arch": "x86_64", "platform": "qemu",
                   "kernel_revision": {"tree": "mainline", "branch": "master", "commit": "c1"}}),
        ),
        node("numbers", json!({"arch": 64, "runtime": 4.5})),
        node("booleans", json!({"defconfig": true, "arch": "arm64"})),
        node(
            "arrays",
            json!({"arch": ["x86_64", "riscv"], "platform": "qemu"}),
        ),
        node("empty", json!({})),
    ]
}

/// Writes `bodies` as nodes, each with its node event, in the schema
/// before the step (columns as that schema's server filled them), and
/// purges the newest event so that the sequence counter is above every
/// stored event.
fn write_old_rows(conn: &rusqlite::Connection, bodies: &[Value]) -> Vec<Node> {
    let now = timestamp::now();
    let mut nodes = Vec::new();
    for body in bodies {
        let node = Node::create(body, "admin", now).unwrap();
        let doc = node.to_json();
        let irregular = doc["data"]["arch"].is_array();
        conn.execute(
            "INSERT INTO node (id, kind, name, state, result, parent, owner, grp, treeid,
                               created, updated, timeout, holdoff, irregular, doc)
             VALUES (?1, ?2, ?3, ?4, NULL, NULL, 'admin', ?5, NULL, ?6, ?6, ?7, NULL, ?8, ?9)",
            rusqlite::params![
                node.id,
                node.kind.as_str(),
                node.name,
                node.state.as_str(),
                node.group,
                timestamp::format(&node.created),
                timestamp::format(&node.timeout),
                irregular,
                doc.to_string(),
            ],
        )
        .unwrap();
        let data = node.event_data(false, None);
        conn.execute(
            "INSERT INTO event (id, timestamp, channel, owner, data, envelope)
             VALUES (?1, ?2, 'node', 'admin', ?3, ?4)",
            rusqlite::params![
                kci_lite::ids::new_id(),
                timestamp::format(&now),
                data.to_string(),
                json!({"specversion": "1.0", "type": "api.kernelci.org", "data": null}).to_string(),
            ],
        )
        .unwrap();
        nodes.push(node);
    }
    conn.execute(
        "DELETE FROM event WHERE seq = (SELECT max(seq) FROM event)",
        [],
    )
    .unwrap();
    nodes
}

fn names(srv: &TestServer, group: &str, query: &str) -> Vec<String> {
    let (status, page) = srv.get(&format!("/nodes?group={group}&{query}"), None);
    assert_eq!(status, 200, "{query}: {page}");
    let mut names: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn assert_queries(srv: &TestServer, group: &str) {
    let cases: &[(&str, &[&str])] = &[
        ("data.arch=x86_64", &["arrays", "plain"]),
        ("data.arch=arm64", &["booleans"]),
        ("data.arch__int=64", &["numbers"]),
        ("data.arch__gt=a", &["arrays", "booleans", "plain"]),
        ("data.runtime__gt=4", &["numbers"]),
        ("data.runtime__lt=4", &[]),
        ("data.defconfig=true", &["booleans"]),
        // operators never turn `true` into a boolean
        (
            "data.defconfig__ne=true",
            &["arrays", "booleans", "empty", "numbers", "plain"],
        ),
        ("data.platform=qemu", &["arrays", "plain"]),
        (
            "data.kernel_revision.tree=mainline&data.kernel_revision.branch=master",
            &["plain"],
        ),
        (
            "data.kernel_revision.commit=null",
            &["arrays", "booleans", "empty", "numbers"],
        ),
    ];
    for (query, want) in cases {
        assert_eq!(names(srv, group, query), *want, "{query}");
    }
}

#[test]
fn a_database_of_the_previous_schema_upgrades_in_place_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let group = uniq("lean");
    let (nodes, old_counter) = {
        let conn = store::open_connection(&db, false).unwrap();
        migrate::up(&conn, Some(LEAN_ROWS - 1)).unwrap();
        let nodes = write_old_rows(&conn, &bodies(&group));
        let counter: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'event'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (nodes, counter)
    };
    {
        let srv = TestServer::builder().db(&db).start();
        for node in &nodes {
            let (status, got) = srv.get(&format!("/node/{}", node.id), None);
            assert_eq!((status, got), (200, node.to_json()));
        }
        assert_queries(&srv, &group);
        // every stored event kept, found by its node
        let first = &nodes[0].id;
        let (status, events) = srv.get(&format!("/events?node_id={first}"), None);
        assert_eq!(status, 200);
        assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
        assert_eq!(events[0]["data"]["id"], json!(first));
        // the sequence goes on past the purged event
        let node = srv.make_node(
            srv.admin(),
            &json!({"name": "after", "kind": "process", "path": ["after"]}),
        );
        let (_, events) = srv.get(
            &format!("/events?node_id={}", node["id"].as_str().unwrap()),
            None,
        );
        assert_eq!(events[0]["sequence_id"], json!(old_counter + 1), "{events}");
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(migrate::current(&conn).unwrap(), migrate::latest());
    drop(conn);

    let out = migrate_cmd(
        dir.path(),
        &db,
        &["down", "--to", &(LEAN_ROWS - 1).to_string()],
    );
    assert!(out.contains(&format!("reverted {LEAN_ROWS:04}")), "{out}");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let (nodes_left, events_left): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM node), (SELECT count(*) FROM event)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((nodes_left, events_left), (6, 5));
        let counter: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'event'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counter, old_counter + 1);
    }
    // and up again: the same answers
    migrate_cmd(dir.path(), &db, &["up"]);
    let srv = TestServer::builder().db(&db).start();
    assert_queries(&srv, &group);
}
