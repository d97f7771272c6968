//! Root document, metrics, version prefixes, routing errors, body limits,
//! JSON syntax errors and the embedded static files (API.md sections 1, 3).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use serde_json::{Value, json};

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn raw_get(srv: &TestServer, target: &str) -> RawReply {
    srv.raw(
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

// -- GET / ----------------------------------------------------------------------------

#[test]
fn root_answers_json_to_api_clients() {
    let srv = TestServer::start();
    for accept in [
        "*/*",
        "application/json",
        "application/json, text/plain, */*",
    ] {
        for path in ["/latest/", "/v0/", "/", "/latest"] {
            let reply = srv.request_full("GET", path, None, &[("Accept", accept)], Body::None);
            if path == "/latest" && reply.status == 307 {
                continue; // the contract allows a redirect to /latest/
            }
            assert_eq!(reply.status, 200, "{path} {accept}: {}", reply.text);
            assert!(
                reply.content_type.starts_with("application/json"),
                "{}",
                reply.content_type
            );
            assert_eq!(reply.json(), json!({"message": "KernelCI API"}));
        }
    }
    // no Accept header at all
    let reply = srv.raw(b"GET /latest/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_eq!(reply.status, 200);
    let body: Value = serde_json::from_slice(&reply.body).expect("json");
    assert_eq!(body, json!({"message": "KernelCI API"}));
}

#[test]
fn root_serves_a_page_to_browsers() {
    let srv = TestServer::start();
    for path in ["/latest/", "/"] {
        let reply = srv.request_full("GET", path, None, &[("Accept", BROWSER_ACCEPT)], Body::None);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "text/html; charset=utf-8");
        assert!(
            reply.text.to_lowercase().contains("<html"),
            "{}",
            reply.text
        );
    }
}

#[test]
fn invite_pages_are_html() {
    let srv = TestServer::start();
    for path in ["/user/invite", "/user/accept-invite"] {
        let reply = srv.request_full(
            "GET",
            &format!("/latest{path}"),
            None,
            &[("Accept", BROWSER_ACCEPT)],
            Body::None,
        );
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.content_type, "text/html; charset=utf-8");
        let text = reply.text.to_lowercase();
        assert!(text.contains("<form") || text.contains("<html"), "{path}");
    }
}

// -- /metrics -------------------------------------------------------------------------

#[test]
fn metrics_counter_increases_with_each_request() {
    let srv = TestServer::start();
    let reply = srv.request("GET", "/metrics", None, Body::None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "text/plain; charset=utf-8");
    assert!(
        reply
            .text
            .lines()
            .any(|l| l.starts_with("http_requests_total{instance=\"api\"} ")),
        "{}",
        reply.text
    );
    let first = srv.requests_total();
    for path in ["/nodes?limit=1", "/count", "/no-such-thing"] {
        srv.request("GET", path, None, Body::None);
    }
    let second = srv.requests_total();
    assert!(second >= first + 4, "{first} -> {second}");
    let third = srv.requests_total();
    assert!(third > second, "{second} -> {third}");
    // also served without prefix and under /v0
    for path in ["/metrics", "/v0/metrics"] {
        let reply = srv.request_full("GET", path, None, &[], Body::None);
        assert_eq!(reply.status, 200, "{path}");
        assert!(reply.text.contains("http_requests_total{instance=\"api\"}"));
    }
}

// -- prefixes ---------------------------------------------------------------------------

#[test]
fn every_prefix_serves_the_api() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("pfx");
    let node = srv.make_node(
        user.auth(),
        &json!({"name": "n", "path": ["n"], "group": group}),
    );
    let id = node["id"].as_str().unwrap();
    for prefix in ["/latest", "/v0", ""] {
        let reply = srv.request_full("GET", &format!("{prefix}/node/{id}"), None, &[], Body::None);
        assert_eq!(reply.status, 200, "{prefix}");
        assert_eq!(reply.json(), node);
        let reply = srv.request_full(
            "GET",
            &format!("{prefix}/count?group={group}"),
            None,
            &[],
            Body::None,
        );
        assert_eq!(reply.json(), json!(1), "{prefix}");
    }
}

#[test]
fn writes_work_through_v0_and_unprefixed() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for prefix in ["/v0", ""] {
        let body = json!({"name": uniq("w"), "kind": "process", "path": ["x"]});
        let reply = srv.request_full(
            "POST",
            &format!("{prefix}/node"),
            user.auth(),
            &[],
            Body::Json(&body),
        );
        assert_eq!(reply.status, 200, "{prefix}: {}", reply.text);
        let node = reply.json();
        assert_eq!(node["owner"], user.username.as_str());
        let (_, read) = srv.get(&format!("/node/{}", node["id"].as_str().unwrap()), None);
        assert_eq!(read, node);
    }
    let reply = srv.request_full(
        "POST",
        "/v0/user/login",
        None,
        &[],
        Body::Form(&[("username", &user.username), ("password", &user.password)]),
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn unknown_version_prefix_is_rejected_as_text() {
    let srv = TestServer::start();
    for version in ["v1", "v2", "v10", "v0.1", "v3.2"] {
        for path in [
            format!("/{version}/nodes"),
            format!("/{version}"),
            format!("/{version}/no/such/path"),
        ] {
            let reply = srv.request_full("GET", &path, None, &[], Body::None);
            assert_eq!(reply.status, 400, "{path}");
            assert_eq!(reply.content_type, "text/plain; charset=utf-8", "{path}");
            assert_eq!(
                reply.text,
                format!("Unsupported API version: {version}"),
                "{path}"
            );
        }
    }
}

#[test]
fn version_check_comes_before_everything_else() {
    let srv = TestServer::builder()
        .var("KCI_MAX_BODY_BYTES", "100")
        .start();
    // before authentication
    let reply = srv.request_full(
        "POST",
        "/v1/node",
        None,
        &[],
        Body::Json(&json!({"name": "x"})),
    );
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (400, "Unsupported API version: v1")
    );
    // before JSON syntax
    let reply = srv.request_full(
        "POST",
        "/v1/node",
        None,
        &[],
        Body::Raw(b"{broken", Some("application/json")),
    );
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (400, "Unsupported API version: v1")
    );
    // before the body limit and the method check
    let big = vec![b'x'; 500];
    let reply = srv.request_full("DELETE", "/v2/nodes", None, &[], Body::Raw(&big, None));
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (400, "Unsupported API version: v2")
    );
}

#[test]
fn paths_that_only_look_like_versions_are_api_paths() {
    let srv = TestServer::start();
    for path in ["/vue", "/vx/nodes", "/version", "/latestnodes"] {
        let reply = srv.request_full("GET", path, None, &[], Body::None);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text);
        assert_eq!(reply.json(), json!({"detail": "Not Found"}), "{path}");
    }
}

// -- routing errors -------------------------------------------------------------------

#[test]
fn unknown_path_is_404() {
    let srv = TestServer::start();
    for path in [
        format!("/{}", uniq("no-such-endpoint")),
        "/node/a/b".to_string(),
        "/user-groups/a/b".to_string(),
    ] {
        let reply = srv.request("GET", &path, None, Body::None);
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.content_type.starts_with("application/json"));
        assert_eq!(reply.json(), json!({"detail": "Not Found"}), "{path}");
    }
    let (status, body) = srv.post_json(&format!("/{}", uniq("nope")), srv.admin(), &json!({}));
    assert_detail(status, &body, 404, "Not Found");
}

#[test]
fn wrong_method_is_405() {
    let srv = TestServer::start();
    for (method, path) in [
        ("DELETE", "/nodes"),
        ("POST", "/count"),
        ("PUT", "/whoami"),
        ("DELETE", "/metrics"),
        ("PUT", "/user/login"),
        ("DELETE", "/user-groups"),
        ("PATCH", "/node"),
        ("POST", "/groups"),
    ] {
        let reply = srv.request(method, path, srv.admin(), Body::None);
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
        assert_eq!(
            reply.json(),
            json!({"detail": "Method Not Allowed"}),
            "{method} {path}"
        );
    }
    let reply =
        srv.raw(b"OPTIONS /latest/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_eq!(reply.status, 405);
    let body: Value = serde_json::from_slice(&reply.body).expect("json");
    assert_eq!(body, json!({"detail": "Method Not Allowed"}));
}

#[test]
fn public_endpoints_ignore_bad_authorization() {
    let srv = TestServer::start();
    for header in ["garbage", "Bearer not.a.token", "Basic Zm9vOmJhcg=="] {
        let reply = srv.request_full(
            "GET",
            "/latest/nodes?limit=1",
            None,
            &[("Authorization", header)],
            Body::None,
        );
        assert_eq!(reply.status, 200, "{header}");
        assert!(reply.json()["items"].is_array());
        let reply = srv.request_full(
            "GET",
            "/latest/count",
            None,
            &[("Authorization", header)],
            Body::None,
        );
        assert_eq!(reply.status, 200, "{header}");
        assert!(reply.json().is_u64());
        let reply = srv.request_full(
            "GET",
            "/latest/",
            None,
            &[("Authorization", header)],
            Body::None,
        );
        assert_eq!(reply.status, 200);
    }
}

#[test]
fn json_content_type_on_api_responses() {
    let srv = TestServer::start();
    for path in ["/nodes?limit=1", "/count", "/groups", "/whoami"] {
        let reply = srv.request("GET", path, srv.admin(), Body::None);
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.content_type.starts_with("application/json"),
            "{path}: {}",
            reply.content_type
        );
    }
}

#[test]
fn keep_alive_connection_serves_two_requests() {
    use std::io::{BufRead, BufReader, Read, Write};
    let srv = TestServer::start();
    let mut sock = std::net::TcpStream::connect(srv.addr).expect("connect");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(sock.try_clone().expect("clone"));
    for _ in 0..2 {
        sock.write_all(
            b"GET /latest/count HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n",
        )
        .expect("write");
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).expect("body");
        assert_eq!(body, b"0");
    }
}

// -- request bodies -------------------------------------------------------------------

fn small_limit_server() -> (TestServer, TestUser) {
    let srv = TestServer::builder()
        .var("KCI_MAX_BODY_BYTES", "1000")
        .start();
    let user = srv.make_user(&[]);
    (srv, user)
}

#[test]
fn body_over_the_limit_is_413_before_the_body_arrives() {
    let (srv, user) = small_limit_server();
    // only the headers: the server must decide from Content-Length
    let head = format!(
        "POST /latest/node HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n",
        user.token
    );
    let reply = srv.raw(head.as_bytes());
    assert_eq!(reply.status, 413, "{}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).expect("json");
    assert_eq!(body, json!({"detail": "Request body too large"}));
    let (_, count) = srv.get("/count?name=big", None);
    assert_eq!(count, json!(0));
}

#[test]
fn body_over_the_limit_is_413_and_nothing_is_stored() {
    let (srv, user) = small_limit_server();
    let padding = "y".repeat(2000);
    let node = json!({"name": "big", "kind": "process", "path": ["big"], "data": {"pad": padding}})
        .to_string();
    let request = format!(
        "POST /latest/node HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{node}",
        user.token,
        node.len()
    );
    let reply = srv.raw(request.as_bytes());
    assert_eq!(reply.status, 413, "{}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).expect("json");
    assert_eq!(body, json!({"detail": "Request body too large"}));
    // also through an ordinary client
    let reply = srv.request(
        "POST",
        "/node",
        user.auth(),
        Body::Raw(node.as_bytes(), Some("application/json")),
    );
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(reply.json(), json!({"detail": "Request body too large"}));
    let (_, count) = srv.get("/count?name=big", None);
    assert_eq!(count, json!(0));
    // the server keeps serving
    let (status, _) = srv.get("/whoami", user.auth());
    assert_eq!(status, 200);
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let (srv, user) = small_limit_server();
    let chunk = "z".repeat(600);
    let request = format!(
        "POST /latest/node HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        user.token,
        chunk.len(),
        chunk.len()
    );
    let reply = srv.raw(request.as_bytes());
    assert_eq!(reply.status, 413, "{}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).expect("json");
    assert_eq!(body, json!({"detail": "Request body too large"}));
    assert_eq!(srv.get("/count", None).1, json!(0));
}

#[test]
fn body_at_the_limit_is_accepted() {
    let (srv, user) = small_limit_server();
    let base = json!({"name": "fits", "kind": "process", "path": ["fits"], "data": {"pad": ""}})
        .to_string();
    let pad = "p".repeat(1000 - base.len());
    let node = json!({"name": "fits", "kind": "process", "path": ["fits"], "data": {"pad": pad}})
        .to_string();
    assert_eq!(node.len(), 1000);
    let reply = srv.request(
        "POST",
        "/node",
        user.auth(),
        Body::Raw(node.as_bytes(), Some("application/json")),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(srv.get("/count?name=fits", None).1, json!(1));
    // a chunked body within the limit is fine too
    let request = format!(
        "POST /latest/node HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{}\r\n0\r\n\r\n",
        user.token,
        node.len(),
        node
    );
    let reply = srv.raw(request.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(srv.get("/count?name=fits", None).1, json!(2));
}

#[test]
fn broken_json_is_422_json_invalid_before_authentication() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for payload in [
        &b"{\"name\": "[..],
        b"{'name': 'x'}",
        b"{\"a\": 1,}",
        b"[1, 2",
        b"nul",
        b"{\"a\": 1} x",
    ] {
        for token in [user.auth(), None] {
            let reply = srv.request(
                "POST",
                "/node",
                token,
                Body::Raw(payload, Some("application/json")),
            );
            assert_eq!(
                reply.status,
                422,
                "{:?}: {}",
                String::from_utf8_lossy(payload),
                reply.text
            );
            let body = reply.json();
            let item = &body["detail"][0];
            assert_eq!(item["type"], "json_invalid", "{body}");
            assert_eq!(item["loc"][0], "body", "{body}");
            assert!(item["loc"][1].is_u64(), "char offset: {body}");
            assert!(item["msg"].is_string());
        }
    }
    // the offset points into the text
    let reply = srv.request(
        "POST",
        "/node",
        user.auth(),
        Body::Raw(b"{\"a\": 1,}", Some("application/json")),
    );
    let offset = reply.json()["detail"][0]["loc"][1].as_u64().unwrap();
    assert!(offset <= 9, "{offset}");
    // other endpoints too
    for path in ["/user/register", "/user-groups", "/user/invite"] {
        let reply = srv.request(
            "POST",
            path,
            srv.admin(),
            Body::Raw(b"{oops", Some("application/json")),
        );
        assert_422(
            reply.status,
            &reply.json(),
            &[json!("body")],
            Some("json_invalid"),
        );
    }
    let reply = srv.request("PATCH", "/user/me", None, Body::Raw(b"{oops", None));
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("json_invalid"),
    );
    assert_eq!(srv.get("/count", None).1, json!(0));
}

#[test]
fn invalid_utf8_and_empty_bodies_are_422() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let reply = srv.request(
        "POST",
        "/node",
        user.auth(),
        Body::Raw(b"{\"name\": \"\xff\xfe\"}", Some("application/json")),
    );
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("json_invalid"),
    );
    for body in [&b""[..], b"   \n"] {
        let reply = srv.request(
            "POST",
            "/node",
            user.auth(),
            Body::Raw(body, Some("application/json")),
        );
        assert_422(
            reply.status,
            &reply.json(),
            &[json!("body")],
            Some("missing"),
        );
    }
    let reply = srv.request(
        "POST",
        "/node",
        user.auth(),
        Body::Raw(br#"{"name": "n", "path": ["n"]}"#, Some("text/plain")),
    );
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("model_attributes_type"),
    );
    // +json media types and charset parameters are JSON
    for ct in [
        "application/json; charset=utf-8",
        "application/vnd.kci+json",
    ] {
        let reply = srv.request(
            "POST",
            "/node",
            user.auth(),
            Body::Raw(br#"{"name": "ok", "path": ["n"]}"#, Some(ct)),
        );
        assert_eq!(reply.status, 200, "{ct}: {}", reply.text);
    }
    assert_eq!(srv.get("/count", None).1, json!(2));
}

#[test]
fn deeply_nested_json_is_never_a_5xx() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let depth = 5000;
    let text = format!(
        "{{\"name\": \"deep\", \"path\": [\"d\"], \"data\": {{\"x\": {}1{}}}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let reply = srv.request(
        "POST",
        "/node",
        user.auth(),
        Body::Raw(text.as_bytes(), Some("application/json")),
    );
    assert!(reply.status < 500, "{}: {}", reply.status, reply.text);
    let (status, _) = srv.get("/whoami", user.auth());
    assert_eq!(status, 200, "the server still answers");
}

// -- static files ---------------------------------------------------------------------

#[test]
fn embedded_assets_are_served() {
    let srv = TestServer::start();
    let reply = srv.request("GET", "/static/css/kci-lite.css", None, Body::None);
    assert_eq!(reply.status, 200);
    assert!(
        reply.content_type.starts_with("text/css"),
        "{}",
        reply.content_type
    );
    assert!(!reply.text.is_empty());
    assert_eq!(
        reply.text.as_bytes(),
        include_bytes!("../static/css/kci-lite.css")
    );
    let reply = srv.request("GET", "/static/js/kci-lite.js", None, Body::None);
    assert_eq!(reply.status, 200);
    assert!(
        reply.content_type.contains("javascript"),
        "{}",
        reply.content_type
    );
    // without prefix as well
    let reply = srv.request_full("GET", "/static/css/kci-lite.css", None, &[], Body::None);
    assert_eq!(reply.status, 200);
}

#[test]
fn unknown_assets_are_404_file_not_found() {
    let srv = TestServer::start();
    for path in [
        "/icons/x.png",
        "/static/css/missing.css",
        "/static/js/missing.js",
        "/static/css/..css",
    ] {
        let (status, body) = srv.get(path, None);
        assert_detail(status, &body, 404, "File not found");
    }
}

#[test]
fn invalid_asset_names_are_400() {
    let srv = TestServer::start();
    for (path, detail) in [
        ("/static/js/bad!.js", "Invalid filename"),
        ("/static/css/kci-lite.js", "Invalid filename"),
        ("/static/js/kci-lite.css", "Invalid filename"),
        ("/static/css/.css", "Invalid filename"),
        ("/static/css/a%20b.css", "Invalid filename"),
        ("/icons/bad!.png", "Invalid icon name"),
        ("/icons/logo.svg", "Invalid icon name"),
        ("/static/css/..%2F..%2FCargo.toml", "Invalid filename"),
        (
            "/static/css/..%2F..%2Fstatic%2Fcss%2Fkci-lite.css",
            "Invalid filename",
        ),
        ("/static/css/%2e%2e%5ckci-lite.css", "Invalid filename"),
        ("/icons/..%2F..%2Fsrc%2Fmain.png", "Invalid icon name"),
    ] {
        let (status, body) = srv.get(path, None);
        assert_detail(status, &body, 400, detail);
    }
}

#[test]
fn dot_segments_never_reach_a_file() {
    let srv = TestServer::start();
    for target in [
        "/static/css/../x",
        "/latest/static/css/../x",
        "/static/css/../../Cargo.toml",
        "/static/css/../js/kci-lite.js",
        "/static/../static/css/kci-lite.css",
        "/icons/../static/css/kci-lite.css",
        "/static/css/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let reply = raw_get(&srv, target);
        assert!(
            reply.status == 400 || reply.status == 404,
            "{target}: {} {}",
            reply.status,
            reply.text()
        );
        assert!(!reply.text().contains("[package]"), "{target}");
    }
}

#[test]
fn trailing_slashes_are_not_significant() {
    let srv = TestServer::start();
    for path in ["/latest/nodes/", "/latest/count/", "/nodes/", "/v0/groups/"] {
        let reply = srv.request_full("GET", path, None, &[], Body::None);
        assert!(
            reply.status == 200 || reply.status == 307,
            "{path}: {} {}",
            reply.status,
            reply.text
        );
    }
}

#[test]
fn body_limit_comes_before_json_syntax_authentication_and_routing() {
    let (srv, _user) = small_limit_server();
    for (method, target) in [
        ("POST", "/latest/node"),
        ("POST", "/latest/user/register"),
        ("POST", "/latest/no-such-endpoint"),
        ("DELETE", "/latest/nodes"),
    ] {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: 5000\r\nConnection: close\r\n\r\n{{broken"
        );
        let reply = srv.raw(request.as_bytes());
        assert_eq!(reply.status, 413, "{method} {target}: {}", reply.text());
        let body: Value = serde_json::from_slice(&reply.body).expect("json");
        assert_eq!(body, json!({"detail": "Request body too large"}));
    }
    // within the limit, the usual order applies: JSON syntax before authentication
    let reply = srv.request(
        "POST",
        "/node",
        None,
        Body::Raw(b"{broken", Some("application/json")),
    );
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("json_invalid"),
    );
}
