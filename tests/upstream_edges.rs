//! Upstream behaviours at the edges of the query language and the
//! configuration: `null` as the value of a comparison operator (MongoDB
//! semantics), `null` as a whole `__in`/`__nin` list (400), API.md 7; and
//! `KEEP_ALIVE_PERIOD=0`, no keep-alives at all, API.md 13.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{BINARY, ServerProcess};
use common::*;
use serde_json::{Value, json};

// -- null with comparison operators ---------------------------------------------------------

/// Five process nodes in a private group, as the conformance suite's data
/// set: `result` null on c and d, `data.tags` missing on b, d and e.
fn dataset(srv: &TestServer) -> String {
    let group = uniq("q");
    let specs = [
        (
            "a",
            json!("pass"),
            json!({"n": 1, "s": "x", "tags": ["p", "q"], "arch": "x86"}),
        ),
        ("b", json!("fail"), json!({"n": 2, "s": "3", "arch": null})),
        ("c", Value::Null, json!({"n": 3, "s": "y", "tags": ["q"]})),
        ("d", Value::Null, json!({"n": 4.0, "s": 9})),
        ("e", json!("skip"), json!({})),
    ];
    for (name, result, data) in specs {
        srv.make_node(
            srv.admin(),
            &json!({"name": name, "kind": "process", "path": [name], "group": group,
                    "result": result, "data": data}),
        );
    }
    group
}

/// The names `/nodes` selects, checked equal to `/nodes/fast` and `/count`.
#[track_caller]
fn names(srv: &TestServer, group: &str, key: &str, value: &str) -> Vec<String> {
    let query = qs(&[("group", group), (key, value)]);
    let (status, page) = srv.get(&format!("/nodes{query}"), None);
    assert_eq!(status, 200, "{key}={value}: {page}");
    let listed: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    let (status, fast) = srv.get(&format!("/nodes/fast{query}"), None);
    assert_eq!(status, 200, "{fast}");
    let fast: Vec<&str> = fast
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(fast, listed, "/nodes/fast {key}={value}");
    let (status, count) = srv.get(&format!("/count{query}"), None);
    assert_eq!(status, 200, "{count}");
    assert_eq!(count, json!(listed.len()), "/count {key}={value}");
    listed
}

#[test]
fn null_with_comparison_operators_has_mongodb_semantics() {
    let srv = TestServer::start();
    let group = dataset(&srv);
    let all = ["a", "b", "c", "d", "e"];
    let cases: &[(&str, &[&str])] = &[
        // a column
        ("result__ne", &["a", "b", "e"]),
        ("result__lte", &["c", "d"]),
        ("result__gte", &["c", "d"]),
        ("result__lt", &[]),
        ("result__gt", &[]),
        // document fields (the Rust matcher in SQL)
        ("data.n__ne", &["a", "b", "c", "d"]),
        ("data.n__gt", &[]),
        ("data.n__lt", &[]),
        ("data.tags__lte", &["b", "d", "e"]),
        ("data.tags__gte", &["b", "d", "e"]),
        ("data.tags__ne", &["a", "c"]),
        // an indexed path, null on b and missing on c, d, e
        ("data.arch__ne", &["a"]),
        ("data.arch__lte", &["b", "c", "d", "e"]),
        ("data.arch__gt", &[]),
        // timestamps and ids: null, not a bad value
        ("holdoff__ne", &[]),
        ("holdoff__lte", &all),
        ("timeout__ne", &all),
        ("created__lt", &[]),
        ("parent__ne", &[]),
        ("parent__gte", &all),
        ("retry_counter__ne", &all),
    ];
    for (key, want) in cases {
        assert_eq!(names(&srv, &group, key, "null"), *want, "{key}=null");
    }
    // only the exact word is null
    assert_eq!(names(&srv, &group, "result__ne", "Null"), all);
}

#[test]
fn null_as_a_whole_list_is_400() {
    let srv = TestServer::start();
    for op in ["in", "nin"] {
        for path in ["/nodes", "/count", "/nodes/fast"] {
            for field in ["name", "data.x", "retry_counter", "created", "parent"] {
                let (status, body) = srv.get(&format!("{path}?{field}__{op}=null"), None);
                assert_eq!(status, 400, "{path} {field}__{op}: {body}");
                assert!(body["detail"].is_string(), "{body}");
            }
        }
        let (status, body) = srv.get(&format!("/users?username__{op}=null"), srv.admin());
        assert_eq!(status, 400, "{body}");
        let (status, body) = srv.get(&format!("/groups?name__{op}=null"), None);
        assert_eq!(status, 400, "{body}");
    }
    // a list holding the word among others is a list of strings
    let (status, body) = srv.get("/count?name__in=null,x", None);
    assert_eq!((status, body), (200, json!(0)));
}

#[test]
fn null_comparisons_on_users_and_groups() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, page) = srv.get("/users?email__ne=null&limit=100", srv.admin());
    assert_eq!(status, 200, "{page}");
    let total = page["total"].as_u64().unwrap();
    assert!(total >= 2, "{page}");
    let (_, page) = srv.get(
        &format!("/users?username={}&email__lte=null", user.username),
        srv.admin(),
    );
    assert_eq!(page["total"], 0, "{page}");
    let (status, page) = srv.get("/groups?name__gt=null", None);
    assert_eq!((status, &page["total"]), (200, &json!(0)), "{page}");
}

// -- KEEP_ALIVE_PERIOD=0 ----------------------------------------------------------------------

#[test]
fn zero_keep_alive_period_waits_for_a_real_message() {
    let srv = TestServer::builder().var("KEEP_ALIVE_PERIOD", "0").start();
    assert_eq!(srv.app.config.keep_alive, None);
    let channel = uniq("quiet");
    let sub = subscription_id(&srv.subscribe_to(srv.admin(), &channel, ""));
    let token = srv.admin_token.clone();
    let listen = || srv.listen_message(Some(&token), sub, Duration::from_secs(60));
    std::thread::scope(|s| {
        let waiter = s.spawn(listen);
        // The listen has reached the broker (and waits there) once the
        // subscription shows a poll.
        wait_for(Duration::from_secs(30), "the listen to arrive", || {
            let subs = srv.app.broker.subscriptions();
            subs.iter()
                .any(|s| s.id == sub && s.last_poll.is_some())
                .then_some(())
        });
        srv.publish_on(srv.admin(), &channel, &json!({"data": {"n": 1}}));
        let (_, event) = waiter.join().unwrap();
        assert_eq!(event["data"], json!({"n": 1}), "a message, never a BEEP");
    });
    // and again: the next listen also gets the next message
    std::thread::scope(|s| {
        let waiter = s.spawn(listen);
        srv.publish_on(srv.admin(), &channel, &json!({"data": {"n": 2}}));
        let (_, event) = waiter.join().unwrap();
        assert_eq!(event["data"], json!({"n": 2}));
    });
}

#[test]
fn the_binary_starts_with_keep_alives_off_and_refuses_bad_periods() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("k.db");
    let srv = ServerProcess::builder()
        .clear_env()
        .current_dir(dir.path())
        .db(&db)
        .env("KEEP_ALIVE_PERIOD", "0")
        .env("KCI_INITIAL_PASSWORD", "pw-of-admin")
        .env("KCI_BCRYPT_COST", "4")
        .start();
    let agent = client_with_timeout(Duration::from_secs(30));
    let (status, body) = call_url(&agent, "GET", &format!("{}/latest/", srv.url()), None, None)
        .expect("the server answers");
    assert_eq!(status, 200, "{body}");
    drop(srv);
    for bad in ["-1", "-0.5", "abc", "NaN", "1e-9"] {
        let out = Command::new(BINARY)
            .args(["serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(&db)
            .current_dir(dir.path())
            .env_clear()
            .env("KEEP_ALIVE_PERIOD", bad)
            .env("KCI_INITIAL_PASSWORD", "pw-of-admin")
            .output()
            .expect("run kci-lite serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "KEEP_ALIVE_PERIOD={bad} must fail");
        assert!(err.contains("KEEP_ALIVE_PERIOD"), "{bad}: {err}");
    }
}
