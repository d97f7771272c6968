//! `kci-lite backup` and `kci-lite check` from the command line: a backup
//! taken while the server keeps writing is a healthy file that serves
//! every node acknowledged before it started; `check` passes it and fails
//! a damaged copy.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::process::BINARY;
use common::*;
use serde_json::json;

fn kci(dir: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap()
}

#[test]
fn a_backup_taken_while_writing_serves_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let copy = dir.path().join("copy.db");
    let srv = TestServer::builder().db(&db).start();
    let before: Vec<String> = (0..20)
        .map(|i| {
            let node = srv.make_node(
                srv.admin(),
                &json!({"name": format!("b{i}"), "path": ["b"]}),
            );
            node["id"].as_str().unwrap().to_string()
        })
        .collect();
    let out = std::thread::scope(|s| {
        // the server keeps writing during the backup
        let writer = s.spawn(|| {
            for i in 0..50 {
                srv.make_node(
                    srv.admin(),
                    &json!({"name": format!("w{i}"), "path": ["w"]}),
                );
            }
        });
        let out = kci(
            dir.path(),
            &[
                "backup",
                "--out",
                copy.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
            ],
        );
        writer.join().unwrap();
        out
    });
    assert!(out.status.success(), "{out:?}");
    let check = kci(dir.path(), &["check", "--db", copy.to_str().unwrap()]);
    assert!(check.status.success(), "{check:?}");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.lines().any(|l| l.starts_with("node ")), "{report}");
    drop(srv);
    let restored = TestServer::builder().db(&copy).start();
    for id in &before {
        let (status, node) = restored.get(&format!("/node/{id}"), None);
        assert_eq!(status, 200, "{id}: {node}");
    }
}

#[test]
fn check_fails_a_damaged_file_and_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    {
        let srv = TestServer::builder().db(&db).start();
        for i in 0..300 {
            srv.make_node(
                srv.admin(),
                &json!({"name": format!("n{i}"), "path": ["n"]}),
            );
        }
    }
    let ok = kci(dir.path(), &["check", "--db", db.to_str().unwrap()]);
    assert!(ok.status.success(), "{ok:?}");
    // overwrite pages in the middle of the file
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096;
    let middle = bytes.len() / page / 2;
    for b in &mut bytes[middle * page..(middle + 3) * page] {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let damaged = kci(dir.path(), &["check", "--db", db.to_str().unwrap()]);
    assert!(!damaged.status.success(), "{damaged:?}");
    let missing = kci(dir.path(), &["check", "--db", "no-such.db"]);
    assert!(!missing.status.success());
    assert!(!dir.path().join("no-such.db").exists());
}
