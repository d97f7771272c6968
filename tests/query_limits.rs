//! Queries within bounds: too many conditions or too long a list answer
//! 400 with a detail naming the limit, a query at the limits is answered,
//! and ordinary requests are still served after hostile ones.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use serde_json::{Value, json};

const MAX_CONDITIONS: usize = 100;
const MAX_LIST_ELEMENTS: usize = 10_000;

/// `GET /latest{path_and_query}` on a raw connection: a query at the limits
/// is longer than the client library accepts in a URI. Values here need no
/// escaping (commas are allowed in a query).
fn raw_get(srv: &TestServer, path_and_query: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET /latest{path_and_query} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n"
    );
    let reply = srv.raw(request.as_bytes());
    let body = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}: {}", reply.status, reply.text()));
    (reply.status, body)
}

/// `n` values `prefix0,prefix1,…`.
fn list(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `?data.f0=x&data.f1=x&…`: `n` distinct conditions.
fn conditions(n: usize) -> String {
    let parts: Vec<String> = (0..n).map(|i| format!("data.f{i}=x")).collect();
    format!("?{}", parts.join("&"))
}

#[test]
fn too_many_conditions_answer_400_on_every_list_endpoint() {
    let srv = TestServer::start();
    let query = conditions(1000);
    let want = "Too many query conditions: 1000 (at most 100)";
    for path in [
        "/nodes",
        "/nodes/fast",
        "/count",
        "/events",
        "/users",
        "/user-groups",
    ] {
        let (status, body) = raw_get(&srv, &format!("{path}{query}"), srv.admin());
        assert_detail(status, &body, 400, want);
    }
    let (status, body) = raw_get(&srv, &format!("/nodes{}", conditions(101)), None);
    assert_detail(
        status,
        &body,
        400,
        "Too many query conditions: 101 (at most 100)",
    );
    // Pagination parameters are not conditions.
    let query = format!("{}&limit=5&offset=0", conditions(MAX_CONDITIONS));
    let (status, body) = raw_get(&srv, &format!("/nodes{query}"), None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn too_long_lists_answer_400() {
    let srv = TestServer::start();
    let long = list("n", 20_000);
    for key in [
        "name__in",
        "name__nin",
        "data.arch__in",
        "parent__in",
        "path__in",
    ] {
        let (status, body) = raw_get(&srv, &format!("/nodes?{key}={long}"), None);
        let want = format!("Too many values for {key}: 20000 (at most 10000)");
        assert_detail(status, &body, 400, &want);
    }
    let over = list("n", MAX_LIST_ELEMENTS + 1);
    let (status, body) = raw_get(&srv, &format!("/count?kind__in={over}"), None);
    assert_detail(
        status,
        &body,
        400,
        "Too many values for kind__in: 10001 (at most 10000)",
    );
    let ids = vec!["0123456789abcdef01234567"; 20_000].join(",");
    let (status, body) = raw_get(&srv, &format!("/events?ids={ids}"), None);
    assert_detail(
        status,
        &body,
        400,
        "Too many values for ids: 20000 (at most 10000)",
    );
}

#[test]
fn a_query_at_the_limits_is_answered() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let name = uniq("limits");
    let node = srv.make_node(
        user.auth(),
        &json!({"name": name, "path": ["checkout", name], "data": {"arch": "x86_64"}}),
    );
    let id = node["id"].as_str().unwrap();
    // MAX_CONDITIONS conditions, all of which the node satisfies: one list
    // of MAX_LIST_ELEMENTS values, and lists of 100 values on every other
    // column, indexed path and document field (a request line holds at
    // most 1 MiB, which is about 100,000 short values in all).
    let mut names = list("other", MAX_LIST_ELEMENTS - 1);
    names.push_str(&format!(",{name}"));
    let mut parts = vec![format!("name__in={names}")];
    let others = ["kind", "state", "result", "owner", "group", "treeid"];
    let indexed = [
        "data.kernel_revision.tree",
        "data.kernel_revision.branch",
        "data.kernel_revision.commit",
        "data.arch",
        "data.defconfig",
        "data.platform",
        "data.runtime",
    ];
    let fields = others.iter().chain(&indexed).map(|f| f.to_string());
    let fields = fields.chain((0..).map(|i| format!("data.f{i}")));
    parts.extend(
        fields
            .take(MAX_CONDITIONS - 1)
            .map(|f| format!("{f}__nin={}", list("a", 100))),
    );
    assert_eq!(parts.len(), MAX_CONDITIONS);
    let query = format!("?{}", parts.join("&"));
    let (status, page) = raw_get(&srv, &format!("/nodes{query}"), None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["id"], id);
    let (status, count) = raw_get(&srv, &format!("/count{query}"), None);
    assert_eq!((status, count), (200, json!(1)));
    // /events binds each id: at the list limit, with as many conditions as
    // allowed (each binds one value), it is answered too.
    let mut ids = vec!["0123456789abcdef01234567"; MAX_LIST_ELEMENTS - 1];
    ids.push(id);
    let (status, found) = raw_get(
        &srv,
        &format!(
            "/events{}&ids={}",
            conditions(MAX_CONDITIONS),
            ids.join(",")
        ),
        None,
    );
    assert_eq!((status, found), (200, json!([])));
    // and an ordinary query still works as before
    let (status, page) = srv.get(&format!("/nodes{}", qs(&[("name", &name)])), None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 1, "{page}");
}

#[test]
fn ordinary_requests_are_served_after_hostile_ones() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let name = uniq("ordinary");
    srv.make_node(user.auth(), &json!({"name": name, "path": [name]}));
    let many = conditions(1000);
    let long = format!("?name__in={}", list("n", 20_000));
    let hostile: Vec<String> = (0..8)
        .map(|i| format!("/nodes{}", if i % 2 == 0 { &many } else { &long }))
        .collect();
    let srv = &srv;
    std::thread::scope(|s| {
        let replies: Vec<_> = hostile
            .iter()
            .map(|path| s.spawn(move || raw_get(srv, path, None).0))
            .collect();
        for reply in replies {
            assert_eq!(reply.join().unwrap(), 400);
        }
    });
    let (status, page) = srv.get("/nodes", None);
    assert_eq!(status, 200, "{page}");
    let (status, page) = srv.get(&format!("/nodes{}", qs(&[("name", &name)])), None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 1, "{page}");
}
