//! The key/value store, `/kv/{namespace}/{key}` (API.md 11): values and
//! deletes, the body rules (JSON string, raw text, 422s), authentication,
//! names kept apart and bounded, durability, and the schema step that adds
//! the store to an existing database.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;
use std::process::Command;

use common::process::BINARY;
use common::*;
use kci_lite::store::{self, meta, migrate};
use serde_json::{Value, json};

const JSON: Option<&str> = Some("application/json");

fn path(ns: &str, key: &str) -> String {
    format!("/kv/{}/{}", enc(ns), enc(key))
}

/// POST with a raw body; (status, answer).
fn post_raw(
    srv: &TestServer,
    token: Option<&str>,
    ns: &str,
    key: &str,
    body: &[u8],
    ct: Option<&str>,
) -> (u16, Value) {
    srv.request("POST", &path(ns, key), token, Body::Raw(body, ct))
        .pair()
}

/// Stores `value` as a JSON string, panics unless 200 "OK".
#[track_caller]
fn set(srv: &TestServer, token: Option<&str>, ns: &str, key: &str, value: &str) {
    let answer = srv.post_json(&path(ns, key), token, &json!(value));
    assert_eq!(answer, (200, json!("OK")), "set {ns}/{key}");
}

/// The value of (ns, key), `Value::Null` when unset; panics unless 200.
#[track_caller]
fn get(srv: &TestServer, token: Option<&str>, ns: &str, key: &str) -> Value {
    let reply = srv.request("GET", &path(ns, key), token, Body::None);
    assert_eq!(reply.status, 200, "get {ns}/{key}: {}", reply.text);
    assert!(
        reply.content_type.starts_with("application/json"),
        "{}",
        reply.content_type
    );
    reply.json()
}

#[test]
fn set_get_overwrite_and_delete() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (ns, key) = (uniq("ns"), uniq("key"));
    assert_eq!(get(&srv, user.auth(), &ns, &key), Value::Null);
    set(&srv, user.auth(), &ns, &key, "first");
    assert_eq!(get(&srv, user.auth(), &ns, &key), json!("first"));
    set(&srv, user.auth(), &ns, &key, "second");
    assert_eq!(get(&srv, user.auth(), &ns, &key), json!("second"));
    for _ in 0..2 {
        // present, then absent: the same answer
        assert_eq!(
            srv.delete(&path(&ns, &key), user.auth()),
            (200, json!("Key-value pair deleted successfully"))
        );
        assert_eq!(get(&srv, user.auth(), &ns, &key), Value::Null);
    }
    assert_eq!(srv.event_total(), 0, "the store publishes nothing");
}

#[test]
fn empty_values_delete() {
    let srv = TestServer::start();
    let token = srv.admin();
    let ns = uniq("ns");
    let bodies: [(&[u8], Option<&str>); 5] = [
        (b"null", JSON),
        (b"\"\"", JSON),
        (b"", JSON),
        (b"", None),
        (b"  \n", Some("text/plain")),
    ];
    for (i, (body, ct)) in bodies.into_iter().enumerate() {
        let key = format!("k{i}");
        set(&srv, token, &ns, &key, "something");
        assert_eq!(
            post_raw(&srv, token, &ns, &key, body, ct),
            (200, json!("OK")),
            "{body:?}"
        );
        assert_eq!(get(&srv, token, &ns, &key), Value::Null, "{body:?}");
    }
}

#[test]
fn non_string_json_is_422_and_changes_nothing() {
    let srv = TestServer::start();
    let token = srv.admin();
    let (ns, key) = (uniq("ns"), uniq("key"));
    set(&srv, token, &ns, &key, "kept");
    for body in [&b"42"[..], b"true", b"{\"a\": 1}", b"[\"x\"]", b"1e999"] {
        let (status, answer) = post_raw(&srv, token, &ns, &key, body, JSON);
        assert_eq!(status, 422, "{body:?}: {answer}");
        assert_eq!(answer["detail"][0]["loc"][0], "body", "{answer}");
    }
    let (status, answer) = post_raw(&srv, token, &ns, &key, b"7", JSON);
    assert_422(status, &answer, &[json!("body")], Some("string_type"));
    assert_eq!(get(&srv, token, &ns, &key), json!("kept"));
}

/// kernelci-core's `set_kv(ns, key, value)` sends the string unquoted with
/// `Content-Type: application/json`; other clients send `text/plain`.
#[test]
fn raw_text_is_stored_verbatim() {
    let srv = TestServer::start();
    let token = srv.admin();
    let ns = uniq("ns");
    let cases: [(&str, Option<&str>, &str); 6] = [
        ("core", JSON, "plain text value"),
        ("spaces", JSON, "  two words\n"),
        ("broken", JSON, "{\"a\": "),
        ("bare", None, "no content type"),
        ("text", Some("text/plain; charset=utf-8"), "\"quoted\" 42"),
        ("unicode", Some("text/plain"), "ünïcødé ✓ \u{1F600}"),
    ];
    for (key, ct, text) in cases {
        assert_eq!(
            post_raw(&srv, token, &ns, key, text.as_bytes(), ct),
            (200, json!("OK")),
            "{key}"
        );
        assert_eq!(get(&srv, token, &ns, key), json!(text), "{key}");
    }
}

#[test]
fn json_strings_keep_every_character() {
    let srv = TestServer::start();
    let token = srv.admin();
    let ns = uniq("ns");
    let long = "ünïcødé ✓ ".repeat(20_000);
    for (i, value) in ["a\u{0}b", "\"\\/\u{7f}", " ", "null", "' OR 1=1 --", &long]
        .into_iter()
        .enumerate()
    {
        let key = format!("k{i}");
        set(&srv, token, &ns, &key, value);
        assert_eq!(get(&srv, token, &ns, &key), json!(value), "{key}");
    }
}

#[test]
fn bodies_that_are_not_utf8_are_422_and_store_nothing() {
    let srv = TestServer::start();
    let token = srv.admin();
    let (ns, key) = (uniq("ns"), uniq("key"));
    set(&srv, token, &ns, &key, "kept");
    for (body, ct) in [
        (&b"\xff\xfe"[..], JSON),
        (b"\"\xc3\x28\"", JSON),
        (b"abc\x80", Some("text/plain")),
    ] {
        let (status, answer) = post_raw(&srv, token, &ns, &key, body, ct);
        assert_eq!(status, 422, "{body:?}: {answer}");
        assert_eq!(answer["detail"][0]["type"], "string_unicode", "{answer}");
    }
    // Checked before the token, like JSON syntax elsewhere (API.md 1.5).
    let (status, _) = post_raw(&srv, None, &ns, &key, b"\xff", JSON);
    assert_eq!(status, 422);
    assert_eq!(get(&srv, token, &ns, &key), json!("kept"));
}

#[test]
fn every_route_needs_a_valid_token() {
    let srv = TestServer::start();
    let (ns, key) = (uniq("ns"), uniq("key"));
    set(&srv, srv.admin(), &ns, &key, "secret");
    for token in [None, Some("garbage"), Some("a.b.c")] {
        let p = path(&ns, &key);
        let (status, body) = srv.get(&p, token);
        assert_detail(status, &body, 401, "Unauthorized");
        let (status, body) = srv.post_json(&p, token, &json!("stolen"));
        assert_detail(status, &body, 401, "Unauthorized");
        // a non-string value from a stranger is refused for the token first
        let (status, body) = srv.post_json(&p, token, &json!(42));
        assert_detail(status, &body, 401, "Unauthorized");
        let (status, body) = srv.delete(&p, token);
        assert_detail(status, &body, 401, "Unauthorized");
    }
    assert_eq!(get(&srv, srv.admin(), &ns, &key), json!("secret"));
}

#[test]
fn one_store_for_all_users() {
    let srv = TestServer::start();
    let (ann, bob) = (srv.make_user(&[]), srv.make_user(&[]));
    let (ns, key) = (uniq("ns"), uniq("key"));
    set(&srv, ann.auth(), &ns, &key, "shared");
    assert_eq!(get(&srv, bob.auth(), &ns, &key), json!("shared"));
    set(&srv, bob.auth(), &ns, &key, "bob's");
    assert_eq!(get(&srv, ann.auth(), &ns, &key), json!("bob's"));
    assert_eq!(srv.delete(&path(&ns, &key), bob.auth()).0, 200);
    assert_eq!(get(&srv, ann.auth(), &ns, &key), Value::Null);
}

#[test]
fn namespaces_and_keys_are_kept_apart() {
    let srv = TestServer::start();
    let token = srv.admin();
    let base = uniq("ns");
    set(&srv, token, &format!("{base}:a"), "b", "first");
    set(&srv, token, &base, "a:b", "second");
    set(&srv, token, &base, "a/b", "slash in the key");
    set(
        &srv,
        token,
        &format!("{base}/a"),
        "b",
        "slash in the namespace",
    );
    assert_eq!(get(&srv, token, &format!("{base}:a"), "b"), json!("first"));
    assert_eq!(get(&srv, token, &base, "a:b"), json!("second"));
    assert_eq!(get(&srv, token, &base, "a/b"), json!("slash in the key"));
    assert_eq!(
        get(&srv, token, &format!("{base}/a"), "b"),
        json!("slash in the namespace")
    );
    assert_eq!(get(&srv, token, &base, "a"), Value::Null);
    // the same key in another namespace is another value
    let other = uniq("ns");
    assert_eq!(get(&srv, token, &other, "a:b"), Value::Null);
    // special characters, percent-decoded once
    let key = "build:x86_64 defconfig+kselftest?&#%";
    set(&srv, token, &base, key, "v");
    assert_eq!(get(&srv, token, &base, key), json!("v"));
}

#[test]
fn every_prefix_serves_the_store_and_other_methods_are_405() {
    let srv = TestServer::start();
    let token = srv.admin();
    let (ns, key) = (uniq("ns"), uniq("key"));
    let p = path(&ns, &key);
    let reply = srv.request_full(
        "POST",
        &format!("/v0{p}"),
        token,
        &[],
        Body::Json(&json!("x")),
    );
    assert_eq!(reply.pair(), (200, json!("OK")));
    let reply = srv.request_full("GET", &p, token, &[], Body::None);
    assert_eq!(reply.pair(), (200, json!("x")));
    let reply = srv.request_full("DELETE", &format!("/latest{p}"), token, &[], Body::None);
    assert_eq!(reply.status, 200);
    let (status, body) = srv.put_json(&p, token, &json!("x"));
    assert_detail(status, &body, 405, "Method Not Allowed");
    let (status, body) = srv.get(&format!("/kv/{ns}"), token);
    assert_detail(status, &body, 404, "Not Found");
    let (status, body) = srv.get(&format!("/kv/{ns}/{key}/more"), token);
    assert_detail(status, &body, 404, "Not Found");
}

#[test]
fn names_over_1024_bytes_are_422() {
    let srv = TestServer::start();
    let token = srv.admin();
    let at_limit = "n".repeat(1024);
    set(&srv, token, &at_limit, &at_limit, "fits");
    assert_eq!(get(&srv, token, &at_limit, &at_limit), json!("fits"));
    let over = "é".repeat(513); // 1026 bytes
    for (ns, key, loc) in [
        (over.as_str(), "k", "namespace"),
        ("ns", over.as_str(), "key"),
    ] {
        let p = path(ns, key);
        for (status, body) in [
            srv.post_json(&p, token, &json!("v")),
            srv.get(&p, token),
            srv.delete(&p, token),
        ] {
            assert_422(
                status,
                &body,
                &[json!("path"), json!(loc)],
                Some("string_too_long"),
            );
        }
    }
    let count: i64 = srv
        .db_reader()
        .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1, "only the value that fits was stored");
}

#[test]
fn a_value_over_the_body_limit_is_413_and_not_stored() {
    let srv = TestServer::builder()
        .var("KCI_MAX_BODY_BYTES", "1000")
        .start();
    let token = srv.admin();
    let (ns, key) = (uniq("ns"), uniq("key"));
    set(&srv, token, &ns, &key, &"x".repeat(900));
    let (status, body) = srv.post_json(&path(&ns, &key), token, &json!("y".repeat(2000)));
    assert_detail(status, &body, 413, "Request body too large");
    assert_eq!(get(&srv, token, &ns, &key), json!("x".repeat(900)));
}

#[test]
fn concurrent_writers_all_land() {
    let srv = TestServer::start();
    let token = srv.admin_token.clone();
    let ns = uniq("ns");
    std::thread::scope(|s| {
        for t in 0..8 {
            let (srv, token, ns) = (&srv, token.as_str(), ns.as_str());
            s.spawn(move || {
                for i in 0..10 {
                    set(
                        srv,
                        Some(token),
                        ns,
                        &format!("k{t}-{i}"),
                        &format!("v{t}-{i}"),
                    );
                    set(srv, Some(token), ns, "shared", &format!("v{t}-{i}"));
                }
            });
        }
    });
    for t in 0..8 {
        for i in 0..10 {
            let key = format!("k{t}-{i}");
            assert_eq!(
                get(&srv, srv.admin(), &ns, &key),
                json!(format!("v{t}-{i}"))
            );
        }
    }
    let last = get(&srv, srv.admin(), &ns, "shared");
    assert!(last.as_str().is_some_and(|v| v.starts_with('v')), "{last}");
}

#[test]
fn values_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("kci.db");
    let (ns, key) = (uniq("ns"), uniq("key"));
    {
        let srv = TestServer::builder().db(&db).start();
        set(&srv, srv.admin(), &ns, &key, "persisted");
        set(&srv, srv.admin(), &ns, "gone", "deleted before the restart");
        assert_eq!(srv.delete(&path(&ns, "gone"), srv.admin()).0, 200);
    }
    let srv = TestServer::builder().db(&db).start();
    assert_eq!(get(&srv, srv.admin(), &ns, &key), json!("persisted"));
    assert_eq!(get(&srv, srv.admin(), &ns, "gone"), Value::Null);
}

// -- the schema step ----------------------------------------------------------------------

/// `kci-lite migrate ARGS --db DB`, panics unless it succeeds; its stdout.
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "migrate {args:?}: {stdout}{stderr}");
    stdout
}

fn has_kv_table(db: &Path) -> bool {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'kv'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .expect("count")
        == 1
}

#[test]
fn a_schema_3_database_gains_the_store_in_place_and_migrate_down_removes_it() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("v3.db");
    {
        // A database as the previous release left it, with data in it.
        let conn = store::open_connection(&db, false).expect("open");
        assert_eq!(migrate::up(&conn, Some(3)).expect("up to 3"), vec![1, 2, 3]);
        meta::set(&conn, "probe", "from schema 3").expect("meta");
    }
    assert!(!has_kv_table(&db));
    let (ns, key) = (uniq("ns"), uniq("key"));
    let user = {
        let srv = TestServer::builder().db(&db).start();
        let user = srv.make_user(&[]);
        set(&srv, user.auth(), &ns, &key, "v4 value");
        user
    };
    assert!(has_kv_table(&db));
    let conn = rusqlite::Connection::open(&db).expect("open");
    assert_eq!(migrate::current(&conn).expect("version"), migrate::latest());
    assert_eq!(
        meta::get(&conn, "probe").expect("meta").as_deref(),
        Some("from schema 3"),
        "older data is kept"
    );
    drop(conn);

    let out = migrate_cmd(dir.path(), &db, &["down", "--to", "3"]);
    assert!(out.contains("reverted 0004"), "{out}");
    assert!(!out.contains("reverted 0003"), "{out}");
    assert!(!has_kv_table(&db));
    let out = migrate_cmd(dir.path(), &db, &["status"]);
    assert!(out.contains("schema version 3"), "{out}");
    let conn = rusqlite::Connection::open(&db).expect("open");
    assert_eq!(
        meta::get(&conn, "probe").expect("meta").as_deref(),
        Some("from schema 3")
    );
    drop(conn);

    // Up again: the store is back, empty; the user made at schema 4 is kept.
    let out = migrate_cmd(dir.path(), &db, &["up"]);
    assert!(out.contains("applied 0004"), "{out}");
    let srv = TestServer::builder().db(&db).start();
    let token = srv.login_token(&user.username, &user.password);
    assert_eq!(get(&srv, Some(&token), &ns, &key), Value::Null);
    set(&srv, Some(&token), &ns, &key, "again");
    assert_eq!(get(&srv, Some(&token), &ns, &key), json!("again"));
}
