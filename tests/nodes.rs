//! Nodes: create, read, list with filters, count (API.md sections 6 and 7,
//! the slice that exists so far).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use chrono::NaiveDateTime;
use common::*;
use serde_json::{Value, json};

fn ts(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.6f")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` with the last three digits `000`.
fn assert_ms_timestamp(text: &Value) {
    let s = text
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {text}"));
    assert_eq!(s.len(), 26, "{s}");
    assert!(s.ends_with("000"), "millisecond precision: {s}");
    ts(s);
}

fn count(srv: &TestServer, query: &str) -> u64 {
    let (status, n) = srv.get(&format!("/count{query}"), None);
    assert_eq!(status, 200, "{n}");
    n.as_u64().expect("integer")
}

fn list(srv: &TestServer, query: &str) -> Value {
    let (status, page) = srv.get(&format!("/nodes{query}"), None);
    assert_eq!(status, 200, "{query}: {page}");
    page
}

fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect()
}

fn id(node: &Value) -> &str {
    node["id"].as_str().expect("id")
}

// -- create ---------------------------------------------------------------------------

#[test]
fn create_defaults_and_key_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let before = chrono::Utc::now().naive_utc();
    let node = srv.make_node(user.auth(), &json!({"name": "n1", "path": ["n1"]}));
    assert_eq!(keys(&node), NODE_KEYS);
    assert!(is_object_id(id(&node)));
    let expected = json!({
        "kind": "node", "name": "n1", "path": ["n1"], "group": null, "parent": null,
        "state": "running", "result": null, "artifacts": {}, "data": {}, "debug": {},
        "jobfilter": null, "platform_filter": [], "holdoff": null,
        "owner": user.username, "submitter": null, "treeid": null, "user_groups": [],
        "processed_by_kcidb_bridge": false, "retry_counter": 0,
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&node[key], value, "{key}");
    }
    for field in ["created", "updated", "timeout"] {
        assert_ms_timestamp(&node[field]);
    }
    let created = ts(node["created"].as_str().unwrap());
    assert!(
        (created - before).num_seconds().abs() < 30,
        "{created} vs {before}"
    );
    assert_eq!(node["created"], node["updated"]);
    let timeout = ts(node["timeout"].as_str().unwrap());
    assert_eq!(timeout - created, chrono::Duration::hours(6));
    // the id starts with the creation second
    let secs = i64::from_str_radix(&id(&node)[..8], 16).unwrap();
    assert!((secs - created.and_utc().timestamp()).abs() <= 2);
    // what a read returns is identical, timestamps included
    let (status, read) = srv.get(&format!("/node/{}", id(&node)), None);
    assert_eq!((status, &read), (200, &node));
}

#[test]
fn owner_comes_from_the_token() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "n", "path": ["n"], "owner": "mallory"}),
    );
    assert_eq!(node["owner"], user.username.as_str());
    let node = srv.make_node(
        srv.admin(),
        &json!({"name": "n", "path": ["n"], "owner": null}),
    );
    assert_eq!(node["owner"], ADMIN_USERNAME);
    let (_, page) = srv.get("/nodes?owner=mallory", None);
    assert_eq!(page["total"], 0);
}

#[test]
fn client_supplied_fields_are_kept() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    let fields = json!({
        "kind": "checkout", "name": "checkout", "path": ["checkout"],
        "group": "kunit-x86_64", "submitter": "abc123", "treeid": "tree-1",
        "state": "available", "result": "pass",
        "jobfilter": ["baseline"], "platform_filter": ["qemu"],
        "debug": {"note": "x"}, "retry_counter": 2,
        "processed_by_kcidb_bridge": true,
        "created": "2024-01-12T12:49:33.996000",
        "updated": "2024-01-12T12:50:00.000000",
        "timeout": "2030-01-12T18:49:33.996000",
        "holdoff": "2030-01-12T13:49:33.996000",
        "artifacts": {"tarball": "https://storage.example.org/linux.tar.gz?sig=a%2Bb"},
        "user_groups": [group["name"]],
        "data": {"zeta": 1, "alpha": {"y": [1, "two", null], "b": true}, "mid": "x"},
    });
    let node = srv.make_node(user.auth(), &fields);
    let (_, stored) = srv.get(&format!("/node/{}", id(&node)), None);
    for (key, value) in fields.as_object().unwrap() {
        assert_eq!(&node[key], value, "{key}");
        assert_eq!(&stored[key], value, "{key}");
    }
    // member order inside data is preserved
    assert_eq!(keys(&stored["data"]), ["zeta", "alpha", "mid"]);
    assert_eq!(keys(&stored["data"]["alpha"]), ["y", "b"]);
    assert_eq!(node["owner"], user.username.as_str());
}

#[test]
fn explicit_nulls_where_allowed() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "n", "path": [], "artifacts": null, "data": null, "debug": null,
                "jobfilter": null, "platform_filter": null, "group": null, "result": null}),
    );
    for key in [
        "artifacts",
        "data",
        "debug",
        "jobfilter",
        "platform_filter",
        "group",
        "result",
    ] {
        assert_eq!(node[key], Value::Null, "{key}");
    }
    assert_eq!(node["path"], json!([]));
}

#[test]
fn timestamps_are_normalised_to_naive_utc_milliseconds() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for (given, expected) in [
        ("2030-01-01T12:00:00+02:00", "2030-01-01T10:00:00.000000"),
        ("2030-01-01T12:00:00Z", "2030-01-01T12:00:00.000000"),
        ("2030-01-01T12:00:00", "2030-01-01T12:00:00.000000"),
        ("2030-01-01T12:00:00.5", "2030-01-01T12:00:00.500000"),
        (
            "2030-01-01T12:00:00.123-01:30",
            "2030-01-01T13:30:00.123000",
        ),
        ("2030-01-01T12:00:00.123456", "2030-01-01T12:00:00.123000"),
    ] {
        let node = srv.make_node(
            user.auth(),
            &json!({"name": "t", "path": ["t"], "timeout": given}),
        );
        assert_eq!(node["timeout"], expected, "{given}");
        let (_, stored) = srv.get(&format!("/node/{}", id(&node)), None);
        assert_eq!(stored["timeout"], expected, "{given}");
    }
    // a backdated `created` does not make the node time out on arrival:
    // the default timeout counts from now (the user guide's count example relies
    // on an imported old checkout keeping result null)
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "t", "path": ["t"], "created": "2024-03-01T00:00:00Z"}),
    );
    assert_eq!(node["created"], "2024-03-01T00:00:00.000000");
    let timeout = node["timeout"].as_str().unwrap().to_string();
    assert!(timeout.as_str() > "2026-01-01", "{timeout}");
    let (_, stored) = srv.get(&format!("/node/{}", id(&node)), None);
    assert_eq!(stored["state"], "running");
    assert_eq!(stored["result"], Value::Null);
}

#[test]
fn artifact_urls_are_normalised() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "a", "path": ["a"],
                "artifacts": {"a": "http://example.org", "b": "https://example.org/x/y?z=1"}}),
    );
    assert_eq!(
        node["artifacts"],
        json!({"a": "http://example.org/", "b": "https://example.org/x/y?z=1"})
    );
    assert_eq!(keys(&node["artifacts"]), ["a", "b"]);
}

#[test]
fn every_kind_is_accepted_and_unknown_kinds_are_400() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for kind in [
        "checkout",
        "kbuild",
        "test",
        "job",
        "process",
        "regression",
        "node",
    ] {
        let node = srv.make_node(
            user.auth(),
            &json!({"name": kind, "kind": kind, "path": [kind]}),
        );
        assert_eq!(node["kind"], kind);
    }
    for kind in ["bogus", "Checkout", ""] {
        let (status, body) = srv.post_json(
            "/node",
            user.auth(),
            &json!({"name": "x", "kind": kind, "path": ["x"]}),
        );
        assert_detail(
            status,
            &body,
            400,
            &format!("Unsupported node kind: {kind}"),
        );
    }
    assert_eq!(count(&srv, ""), 7);
    assert_eq!(count(&srv, "?name=x"), 0);
}

#[test]
fn schema_errors_come_before_the_kind_check() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.post_json("/node", user.auth(), &json!({"kind": "bogus"}));
    assert_422(
        status,
        &body,
        &[json!("body"), json!("name")],
        Some("missing"),
    );
    assert_422(
        status,
        &body,
        &[json!("body"), json!("path")],
        Some("missing"),
    );
}

#[test]
fn field_type_errors_are_422() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    for (field, value) in [
        ("state", json!("pending")),
        ("result", json!("ok")),
        ("retry_counter", json!("3")),
        ("retry_counter", json!(1.5)),
        ("processed_by_kcidb_bridge", json!("maybe")),
        ("timeout", json!("yesterday")),
        ("created", json!(12345)),
        ("path", json!("checkout")),
        ("path", json!([1])),
        ("data", json!([1, 2])),
        ("debug", json!("x")),
        ("artifacts", json!(["http://x/"])),
        ("artifacts", json!({"a": "ftp://example.org/x"})),
        ("artifacts", json!({"a": "not a url"})),
        ("artifacts", json!({"a": "http:///nohost"})),
        ("user_groups", json!("g")),
        ("user_groups", json!([group["name"], group["name"]])),
        ("name", json!(5)),
        ("jobfilter", json!("x")),
        ("platform_filter", json!([1])),
        ("parent", json!("xyz")),
        ("parent", json!(5)),
        ("kind", json!(3)),
    ] {
        let mut body = json!({"name": "typed", "path": ["typed"]});
        body[field] = value.clone();
        let (status, resp) = srv.post_json("/node", user.auth(), &body);
        assert_eq!(status, 422, "{field}={value}: {resp}");
        assert_422(status, &resp, &[json!("body"), json!(field)], None);
    }
    // several problems are all reported
    let (status, resp) = srv.post_json(
        "/node",
        user.auth(),
        &json!({"name": 1, "path": "p", "state": "x", "retry_counter": "1"}),
    );
    for field in ["name", "path", "state", "retry_counter"] {
        assert_422(status, &resp, &[json!("body"), json!(field)], None);
    }
    // a body that is not an object
    let (status, resp) = srv.post_json("/node", user.auth(), &json!(["name", "path"]));
    assert_422(status, &resp, &[json!("body")], None);
    assert_eq!(count(&srv, ""), 0, "nothing was stored");
}

#[test]
fn create_with_id_is_rejected() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.post_json(
        "/node",
        user.auth(),
        &json!({"id": MISSING_ID, "name": "n", "path": ["n"]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    let (status, body) = srv.get(&format!("/node/{MISSING_ID}"), None);
    assert_eq!((status, body), (200, Value::Null));
    assert_eq!(count(&srv, ""), 0);
}

#[test]
fn parent_must_exist() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.post_json(
        "/node",
        user.auth(),
        &json!({"name": "orphan", "path": ["o"], "parent": MISSING_ID}),
    );
    assert_detail(
        status,
        &body,
        404,
        &format!("Parent not found with id: {MISSING_ID}"),
    );
    assert_eq!(count(&srv, ""), 0);
    let root = srv.make_node(user.auth(), &json!({"name": "root", "path": ["root"]}));
    // an upper-case parent id is accepted and stored in lower case
    let child = srv.make_node(
        user.auth(),
        &json!({"name": "child", "path": ["root", "child"], "parent": id(&root).to_uppercase()}),
    );
    assert_eq!(child["parent"], id(&root));
    let (_, stored) = srv.get(&format!("/node/{}", id(&child)), None);
    assert_eq!(stored["parent"], id(&root));
}

#[test]
fn user_groups_must_exist() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    let missing = uniq("nogrp");
    let (status, body) = srv.post_json(
        "/node",
        user.auth(),
        &json!({"name": "g", "path": ["g"], "user_groups": [group["name"], missing]}),
    );
    assert_detail(
        status,
        &body,
        400,
        &format!("User group does not exist with name: {missing}"),
    );
    assert_eq!(count(&srv, ""), 0);
    // the parent check comes first
    let (status, body) = srv.post_json(
        "/node",
        user.auth(),
        &json!({"name": "g", "path": ["g"], "parent": MISSING_ID, "user_groups": [missing]}),
    );
    assert_eq!(status, 404, "{body}");
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "g", "path": ["g"], "user_groups": [group["name"], "node:edit:any"]}),
    );
    assert_eq!(node["user_groups"], json!([group["name"], "node:edit:any"]));
}

#[test]
fn create_needs_a_token() {
    let srv = TestServer::start();
    let (status, body) = srv.post_json("/node", None, &json!({"name": "n", "path": ["n"]}));
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = srv.post_json(
        "/node",
        Some("garbage"),
        &json!({"name": "n", "path": ["n"]}),
    );
    assert_detail(status, &body, 401, "Unauthorized");
    // authentication comes before schema validation
    let (status, body) = srv.post_json("/node", None, &json!({"name": 1}));
    assert_detail(status, &body, 401, "Unauthorized");
    assert_eq!(count(&srv, ""), 0);
}

#[test]
fn unverified_users_may_create_nodes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"is_verified": false}),
    );
    let node = srv.make_node(user.auth(), &json!({"name": "n", "path": ["n"]}));
    assert_eq!(node["owner"], user.username.as_str());
}

// -- GET /node/{id} -------------------------------------------------------------------

#[test]
fn get_node_unknown_upper_case_and_invalid_ids() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.get(&format!("/node/{MISSING_ID}"), None);
    assert_eq!((status, body), (200, Value::Null));
    let reply = srv.request("GET", &format!("/node/{MISSING_ID}"), None, Body::None);
    assert_eq!(reply.text, "null");
    assert!(reply.content_type.starts_with("application/json"));
    let node = srv.make_node(user.auth(), &json!({"name": "n", "path": ["n"]}));
    let (status, read) = srv.get(&format!("/node/{}", id(&node).to_uppercase()), None);
    assert_eq!((status, read), (200, node));
    for bad in [
        "not-an-id",
        "0123456789abcdef0123456",
        "0123456789abcdef012345678",
        "0123456789abcdef0123456g",
    ] {
        let (status, body) = srv.get(&format!("/node/{bad}"), None);
        assert_detail(
            status,
            &body,
            400,
            &format!(
                "'{bad}' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"
            ),
        );
    }
}

// -- GET /nodes -----------------------------------------------------------------------

#[test]
fn nodes_page_envelope_and_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let created: Vec<Value> = (0..5)
        .map(|i| {
            srv.make_node(
                user.auth(),
                &json!({"name": format!("n{i}"), "path": ["p"]}),
            )
        })
        .collect();
    let created_ids: Vec<String> = created.iter().map(|n| id(n).to_string()).collect();
    let mut sorted = created_ids.clone();
    sorted.sort();
    assert_eq!(created_ids, sorted, "ids sort in creation order");

    let page = list(&srv, "");
    let items = assert_page(&page, 50, 0);
    assert_eq!(page["total"], 5);
    assert_eq!(items, created, "full nodes, ascending id order");
    for item in &items {
        assert_eq!(keys(item), NODE_KEYS);
    }
    let page = list(&srv, "?limit=2&offset=1");
    assert_eq!(assert_page(&page, 2, 1), created[1..3].to_vec());
    assert_eq!(page["total"], 5);
    let page = list(&srv, "?limit=2&offset=4");
    assert_eq!(assert_page(&page, 2, 4), created[4..].to_vec());
    let page = list(&srv, "?offset=9");
    assert_eq!(assert_page(&page, 50, 9), Vec::<Value>::new());
    assert_eq!(page["total"], 5);
    // no upper bound on limit
    let page = list(&srv, "?limit=100000");
    assert_eq!(assert_page(&page, 100000, 0).len(), 5);
}

#[test]
fn nodes_default_limit_is_50() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for i in 0..55 {
        srv.make_node(
            user.auth(),
            &json!({"name": format!("n{i}"), "path": ["p"]}),
        );
    }
    let page = list(&srv, "");
    assert_eq!(assert_page(&page, 50, 0).len(), 50);
    assert_eq!(page["total"], 55);
    assert_eq!(count(&srv, ""), 55);
}

#[test]
fn nodes_bad_pagination_is_422() {
    let srv = TestServer::start();
    for (query, field, kind) in [
        ("limit=0", "limit", "greater_than_equal"),
        ("limit=-5", "limit", "greater_than_equal"),
        ("offset=-1", "offset", "greater_than_equal"),
        ("limit=ten", "limit", "int_parsing"),
        ("offset=1.5", "offset", "int_parsing"),
    ] {
        let (status, body) = srv.get(&format!("/nodes?{query}"), None);
        assert_422(status, &body, &[json!("query"), json!(field)], Some(kind));
    }
    let (status, body) = srv.get("/nodes?limit=0&offset=-1", None);
    assert_422(status, &body, &[json!("query"), json!("limit")], None);
    assert_422(status, &body, &[json!("query"), json!("offset")], None);
}

/// Three nodes to filter: a checkout root, a kbuild child, a test grandchild.
fn tree(srv: &TestServer, user: &TestUser) -> (Value, Value, Value) {
    let group = srv.make_group();
    let root = srv.make_node(
        user.auth(),
        &json!({"name": "checkout", "kind": "checkout", "path": ["checkout"], "group": "g-root",
                "treeid": "t1", "data": {"kernel_revision": {"tree": "mainline", "branch": "master", "url": "https://git.kernel.org/x.git", "commit": "abc"}}}),
    );
    let build = srv.make_node(
        user.auth(),
        &json!({"name": "kbuild-gcc", "kind": "kbuild", "path": ["checkout", "kbuild-gcc"],
                "parent": id(&root), "state": "done", "result": "pass", "retry_counter": 3,
                "data": {"arch": "x86_64", "kernel_revision": {"tree": "next", "branch": "b", "url": "https://git.kernel.org/x.git", "commit": "def"}, "v": 9},
                "user_groups": [group["name"]]}),
    );
    let test = srv.make_node(
        srv.admin(),
        &json!({"name": "baseline", "kind": "test", "path": ["checkout", "kbuild-gcc", "baseline"],
                "parent": id(&build), "state": "done", "result": "fail",
                "holdoff": "2030-01-01T00:00:00", "data": {"arch": "arm64", "v": "9"}}),
    );
    (root, build, test)
}

#[test]
fn nodes_equality_filters() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (root, build, test) = tree(&srv, &user);
    let (r, b, t) = (
        id(&root).to_string(),
        id(&build).to_string(),
        id(&test).to_string(),
    );
    let ug = build["user_groups"][0].as_str().unwrap().to_string();
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("kind=kbuild".into(), vec![&b]),
        ("name=baseline".into(), vec![&t]),
        ("state=done".into(), vec![&b, &t]),
        ("state=done&result=fail".into(), vec![&t]),
        ("state=running&result=fail".into(), vec![]),
        (format!("owner={}", user.username), vec![&r, &b]),
        (format!("owner={ADMIN_USERNAME}"), vec![&t]),
        ("group=g-root".into(), vec![&r]),
        ("group=null".into(), vec![&b, &t]),
        ("treeid=t1".into(), vec![&r]),
        ("path=checkout".into(), vec![&r, &b, &t]),
        ("path=kbuild-gcc".into(), vec![&b, &t]),
        ("data.arch=x86_64".into(), vec![&b]),
        ("data.kernel_revision.tree=mainline".into(), vec![&r]),
        ("data.kernel_revision.branch=master".into(), vec![&r]),
        (format!("parent={r}"), vec![&b]),
        (format!("parent={}", b.to_uppercase()), vec![&t]),
        ("parent=null".into(), vec![&r]),
        (format!("id={t}"), vec![&t]),
        (format!("user_groups={ug}"), vec![&b]),
        ("holdoff=null".into(), vec![&r, &b]),
        ("holdoff=2030-01-01T00:00:00Z".into(), vec![&t]),
        ("retry_counter=3".into(), vec![&b]),
        ("retry_counter=0".into(), vec![&r, &t]),
        ("processed_by_kcidb_bridge=false".into(), vec![&r, &b, &t]),
        ("processed_by_kcidb_bridge=TRUE".into(), vec![]),
        ("no_such_field=x".into(), vec![]),
        ("no_such_field=null".into(), vec![&r, &b, &t]),
        ("kind=kbuild&kind=test".into(), vec![&t]),
    ];
    for (query, want) in cases {
        let page = list(&srv, &format!("?{query}"));
        assert_eq!(ids_of(&page), want, "{query}");
        assert_eq!(page["total"], want.len(), "{query}");
        assert_eq!(
            count(&srv, &format!("?{query}")),
            want.len() as u64,
            "/count?{query}"
        );
    }
}

#[test]
fn nodes_operator_filters() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (root, build, test) = tree(&srv, &user);
    let (r, b, t) = (
        id(&root).to_string(),
        id(&build).to_string(),
        id(&test).to_string(),
    );
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("kind__ne=kbuild".into(), vec![&r, &t]),
        ("kind__in=kbuild,test".into(), vec![&b, &t]),
        ("kind__nin=kbuild,test".into(), vec![&r]),
        ("name__re=^kbuild-".into(), vec![&b]),
        ("name__re=line".into(), vec![&t]),
        ("retry_counter__gte=1".into(), vec![&b]),
        ("retry_counter__lt=3".into(), vec![&r, &t]),
        ("data.v__gt=5".into(), vec![&b]),
        ("data.v__int=9".into(), vec![&b]),
        ("data.v=9".into(), vec![&t]),
        ("created__gt=2000-01-01".into(), vec![&r, &b, &t]),
        ("created__lt=2000-01-01".into(), vec![]),
        (format!("id__in={r},{t}"), vec![&r, &t]),
        ("data.arch__ne=x86_64".into(), vec![&r, &t]),
    ];
    for (query, want) in cases {
        let page = list(&srv, &format!("?{query}"));
        assert_eq!(ids_of(&page), want, "{query}");
        assert_eq!(
            count(&srv, &format!("?{query}")),
            want.len() as u64,
            "/count?{query}"
        );
    }
}

#[test]
fn nodes_bad_filters_are_400() {
    let srv = TestServer::start();
    for (query, detail) in [
        ("kind__bogus=x", Some("Unsupported query operator: bogus")),
        (
            "parent=xyz",
            Some(
                "'xyz' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string",
            ),
        ),
        ("created=yesterday", None),
        ("name__re=(", None),
        ("retry_counter=abc", None),
        ("data.x__int=1.5", None),
    ] {
        for path in ["/nodes", "/count"] {
            let (status, body) = srv.get(&format!("{path}?{query}"), None);
            assert_eq!(status, 400, "{path}?{query}: {body}");
            match detail {
                Some(text) => assert_eq!(body, json!({"detail": text}), "{path}?{query}"),
                None => assert!(body["detail"].is_string(), "{path}?{query}: {body}"),
            }
        }
    }
}

#[test]
fn query_values_are_data() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let name = "x'; DROP TABLE node; --";
    let node = srv.make_node(user.auth(), &json!({"name": name, "path": ["$where"]}));
    let page = list(&srv, &qs(&[("name", name)]));
    assert_eq!(ids_of(&page), [id(&node)]);
    let page = list(&srv, &qs(&[("path", "$where")]));
    assert_eq!(page["total"], 1);
    let page = list(&srv, &qs(&[("name\"; --", "x")]));
    assert_eq!(page["total"], 0);
    assert_eq!(count(&srv, ""), 1);
}

#[test]
fn count_ignores_limit_and_offset() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for i in 0..3 {
        srv.make_node(
            user.auth(),
            &json!({"name": format!("c{i}"), "path": ["c"], "group": "cnt"}),
        );
    }
    srv.make_node(user.auth(), &json!({"name": "other", "path": ["o"]}));
    assert_eq!(count(&srv, ""), 4);
    assert_eq!(count(&srv, "?group=cnt"), 3);
    assert_eq!(count(&srv, "?group=cnt&limit=1&offset=2"), 3);
    assert_eq!(count(&srv, "?limit=0&offset=-5"), 4);
    let reply = srv.request("GET", "/count", None, Body::None);
    assert!(reply.content_type.starts_with("application/json"));
    assert_eq!(reply.text, "4");
}

#[test]
fn nodes_and_count_are_public() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = srv.make_node(user.auth(), &json!({"name": "pub", "path": ["pub"]}));
    for token in [None, Some("garbage"), user.auth()] {
        let (status, page) = srv.get("/nodes?name=pub", token);
        assert_eq!(status, 200);
        assert_eq!(page["items"], json!([node]));
        let (status, n) = srv.get("/count?name=pub", token);
        assert_eq!((status, n), (200, json!(1)));
        let (status, read) = srv.get(&format!("/node/{}", id(&node)), token);
        assert_eq!((status, &read), (200, &node));
    }
}

#[test]
fn non_ascii_and_nul_characters_round_trip_and_filter() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let name = "Größe ✓ 日本";
    let node = srv.make_node(
        user.auth(),
        &json!({"name": name, "path": ["ü"], "data": {"k": "a\u{0}b"}}),
    );
    assert_eq!(node["name"], name);
    let reply = srv.request("GET", &format!("/node/{}", id(&node)), None, Body::None);
    assert!(
        reply.text.contains(name),
        "UTF-8 on the wire, not escapes: {}",
        reply.text
    );
    assert_eq!(reply.json(), node);
    assert_eq!(ids_of(&list(&srv, &qs(&[("name", name)]))), [id(&node)]);
    assert_eq!(ids_of(&list(&srv, "?data.k=a%00b")), [id(&node)]);
    assert_eq!(list(&srv, "?data.k=ab")["total"], 0);
}

#[test]
fn undecodable_query_parameters_are_never_5xx() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    srv.make_node(user.auth(), &json!({"name": "n", "path": ["n"]}));
    for query in [
        "name=%ff%fe",
        "name=%zz",
        "name=100%",
        "%ff=1",
        "=x",
        "data..x=1",
        ".=1",
        "a%00b=1",
        "name__re=%ff",
    ] {
        for path in ["/nodes", "/count"] {
            let (status, body) = srv.get(&format!("{path}?{query}"), None);
            assert!(
                status == 200 || status == 400,
                "{path}?{query}: {status} {body}"
            );
            if status == 200 && path == "/nodes" {
                assert_eq!(body["total"], 0, "{query}");
            }
        }
    }
}

#[test]
fn artifact_url_normalisation_lower_cases_scheme_and_host_only() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "a", "path": ["a"],
                "artifacts": {"p": "HTTPS://Storage.Example.ORG/Linux/Image?Sig=AbC",
                              "q": "http://Example.org:8080"}}),
    );
    assert_eq!(
        node["artifacts"]["p"],
        "https://storage.example.org/Linux/Image?Sig=AbC"
    );
    assert_eq!(node["artifacts"]["q"], "http://example.org:8080/");
}

#[test]
fn artifact_url_normalisation_keeps_userinfo_case() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "a", "path": ["a"], "artifacts": {"u": "https://User:Secret@Example.org/x"}}),
    );
    assert_eq!(node["artifacts"]["u"], "https://User:Secret@example.org/x");
}

#[test]
fn concurrent_creates_are_all_stored_with_unique_ids() {
    let srv = TestServer::start();
    let users: Vec<TestUser> = (0..4).map(|_| srv.make_user(&[])).collect();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (srv, user) = (&srv, &users[t % users.len()]);
                s.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let node = srv.make_node(
                                user.auth(),
                                &json!({"name": format!("c{t}-{i}"), "path": ["c"], "group": "conc"}),
                            );
                            assert_eq!(node["owner"], user.username.as_str());
                            id(&node).to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 80);
    assert_eq!(count(&srv, "?group=conc"), 80);
    let page = list(&srv, "?group=conc&limit=100");
    let mut listed = ids_of(&page);
    let in_order = listed.clone();
    listed.sort();
    assert_eq!(in_order, listed, "listed in ascending id order");
    assert_eq!(listed, unique);
}
