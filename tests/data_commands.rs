//! `kci-lite export` and `kci-lite import` from the command line: a round
//! trip into a fresh database answers every API request as the original
//! did (and every user logs in with the same password); a malformed
//! document stops the import with its file and line and writes nothing; an
//! import killed part way leaves the database untouched or complete.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::BINARY;
use common::*;
use serde_json::{Value, json};

fn kci(dir: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The answers a round trip must keep.
fn answers(srv: &TestServer, token: Option<&str>) -> Vec<Value> {
    [
        "/nodes?limit=1000",
        "/events?limit=1000",
        "/users?limit=100",
        "/user-groups?limit=100",
        "/telemetry?limit=100",
        "/count",
    ]
    .iter()
    .map(|path| {
        let (status, body) = srv.get(path, token);
        assert_eq!(status, 200, "{path}: {body}");
        body
    })
    .collect()
}

#[test]
fn a_round_trip_keeps_every_answer_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let out = dir.path().join("out");
    let (before, user, ns_value) = {
        let srv = TestServer::builder().db(&db).start();
        let group = srv.make_group();
        let group_name = group["name"].as_str().unwrap().to_string();
        let user = srv.make_user(&[&group_name]);
        let root = srv.make_node(
            Some(&user.token),
            &json!({"name": "r", "path": ["r"], "artifacts": {"log": "https://example.org/l"},
                    "data": {"kernel_revision": {"tree": "mainline", "branch": "master",
                             "commit": "abc", "url": "https://git.example/l.git"}}}),
        );
        srv.make_node(
            Some(&user.token),
            &json!({"name": "c", "path": ["r", "c"], "parent": root["id"],
                    "data": {"nested": {"list": [1, "two", null, 2.5, true]}}}),
        );
        let (status, _) = srv.post_json(
            "/telemetry",
            Some(&user.token),
            &json!([{"kind": "job_result", "runtime": "lab", "result": "pass"}]),
        );
        assert_eq!(status, 200);
        let (status, _) = srv.post_json("/kv/ns/key", Some(&user.token), &json!("a value"));
        assert_eq!(status, 200);
        (answers(&srv, srv.admin()), user, "a value")
    };
    let summary = ok(kci(
        dir.path(),
        &[
            "export",
            "--out",
            out.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
    ));
    assert!(
        summary.contains("exported: node 2, user 2, usergroup 2"),
        "{summary}"
    );
    let new_db = dir.path().join("new.db");
    let summary = ok(kci(
        dir.path(),
        &[
            "import",
            "--from",
            out.to_str().unwrap(),
            "--db",
            new_db.to_str().unwrap(),
        ],
    ));
    assert!(
        summary.trim_end().ends_with("kv 1; skipped 0"),
        "the summary is the last line: {summary}"
    );
    let srv = TestServer::builder().db(&new_db).no_admin_login().start();
    let admin = srv.login_token(ADMIN_USERNAME, ADMIN_PASSWORD);
    assert_eq!(answers(&srv, Some(&admin)), before);
    let token = srv.login_token(&user.username, &user.password);
    let (status, value) = srv.get("/kv/ns/key", Some(&token));
    assert_eq!((status, value), (200, json!(ns_value)));
}

#[test]
fn a_malformed_document_stops_the_import_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("in");
    std::fs::create_dir(&from).unwrap();
    std::fs::write(
        from.join("usergroup.json"),
        "{\"_id\": {\"$oid\": \"65a1b2c3d4e5f6a7b8c9d0e1\"}, \"name\": \"g\"}\n",
    )
    .unwrap();
    let db = dir.path().join("t.db");
    for (file, text, line) in [
        (
            "node.json",
            "{\"_id\": {\"$oid\": \"65a1b2c3d4e5f6a7b8c9d0e2\"}\n\n{\"_id\": 1}\n",
            1,
        ),
        (
            "user.json",
            "\n\n{\"_id\": {\"$oid\": \"65a1b2c3d4e5f6a7b8c9d0e3\"}, \"email\": \"a@b.c\", \"username\": \"u\", \"hashed_password\": \"x\"}\n",
            3,
        ),
        (
            "telemetry.json",
            "[\n{\"_id\": {\"$oid\": \"65a1b2c3d4e5f6a7b8c9d0e4\"},\n \"ts\": \"yesterday\", \"kind\": \"k\", \"runtime\": \"r\"}]",
            2,
        ),
        (
            "kv.json",
            "{\"namespace\": \"n\", \"key\": \"k\", \"value\": 3}\n",
            1,
        ),
    ] {
        std::fs::write(from.join(file), text).unwrap();
        let out = kci(
            dir.path(),
            &[
                "import",
                "--from",
                from.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
            ],
        );
        assert!(!out.status.success(), "{file}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{file}: line {line}:")),
            "{file}: {err}"
        );
        std::fs::remove_file(from.join(file)).unwrap();
        // nothing of the files before it either
        let conn = rusqlite::Connection::open(&db).unwrap();
        let groups: i64 = conn
            .query_row("SELECT count(*) FROM user_group", [], |r| r.get(0))
            .unwrap();
        assert_eq!(groups, 0, "{file}");
    }
    // a missing directory
    let out = kci(
        dir.path(),
        &["import", "--from", "nowhere", "--db", db.to_str().unwrap()],
    );
    assert!(!out.status.success());
}

#[test]
fn an_import_killed_part_way_leaves_nothing_or_everything() {
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("in");
    std::fs::create_dir(&from).unwrap();
    let total = 30_000;
    let mut nodes = String::new();
    for i in 0..total {
        nodes.push_str(&format!(
            "{{\"_id\": {{\"$oid\": \"{i:024x}\"}}, \"kind\": \"checkout\", \"name\": \"n{i}\", \
             \"path\": [\"n\"], \"created\": {{\"$date\": \"2024-01-01T00:00:00Z\"}}, \
             \"updated\": {{\"$date\": \"2024-01-01T00:00:00Z\"}}, \
             \"timeout\": {{\"$date\": \"2024-01-02T00:00:00Z\"}}}}\n"
        ));
    }
    std::fs::write(from.join("node.json"), nodes).unwrap();
    for delay_ms in [50, 150, 400] {
        let db = dir.path().join(format!("kill-{delay_ms}.db"));
        let mut child = Command::new(BINARY)
            .args([
                "import",
                "--from",
                from.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
            ])
            .current_dir(dir.path())
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(delay_ms) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        if !db.exists() {
            continue;
        }
        let srv = TestServer::builder().db(&db).start();
        let (status, count) = srv.get("/count", None);
        assert_eq!(status, 200);
        let n = count.as_u64().unwrap();
        assert!(n == 0 || n == total, "{delay_ms} ms: {n} nodes");
    }
}
