//! The OpenAPI document (`static/openapi.json`, API.md 18.5): it names
//! exactly the routes of the route table, is served as stored under every
//! prefix, is well formed (every `$ref` resolves, every schema compiles,
//! statuses that every authenticated or body-taking operation can answer
//! are listed), and `/docs` renders it from embedded files only. That real
//! answers match it is checked on every request of the whole suite by the
//! shared client (tests/common/openapi.rs); the last test here checks that
//! this oracle does catch mismatches.

mod common;

use std::collections::BTreeSet;

use common::openapi::{check_answer, document, operation_of, validator};
use common::{Body, TestServer};
use kci_lite::api::pages::OPENAPI_JSON;
use kci_lite::router::ROUTES;
use serde_json::{Value, json};

/// Routes the document leaves out on purpose (API.md 18.5): HTML pages,
/// static assets, the document itself and its viewer.
const UNDOCUMENTED: &[(&str, &str)] = &[
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/static/css/{file}"),
    ("GET", "/static/js/{file}"),
    ("GET", "/icons/{file}"),
    ("GET", "/user/invite"),
    ("GET", "/user/accept-invite"),
    ("GET", "/viewer"),
    ("GET", "/dashboard"),
    ("GET", "/manage"),
    ("GET", "/analytics"),
    ("GET", "/stats"),
];

/// Operations of the contract that the document describes and the route
/// table does not serve yet (none now). Each must really be missing from
/// the route table: once it is routed, this test fails until the entry is
/// removed, and from then on it is checked like every route.
const NOT_ROUTED_YET: &[(&str, &str)] = &[];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

type Op = (String, String);

fn routed() -> BTreeSet<Op> {
    ROUTES
        .iter()
        .map(|r| {
            let method = format!("{:?}", r.method).to_ascii_uppercase();
            (method, r.path.to_string())
        })
        .collect()
}

fn documented() -> BTreeSet<Op> {
    let mut ops = BTreeSet::new();
    for (path, item) in document()["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops
}

fn set(list: &[(&str, &str)]) -> BTreeSet<Op> {
    list.iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

/// Every operation: (path, method name, operation object).
fn operations() -> Vec<(String, String, &'static Value)> {
    let mut out = Vec::new();
    for (path, item) in document()["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((path.clone(), method.to_string(), op));
            }
        }
    }
    out
}

#[test]
fn the_document_names_exactly_the_routes_of_the_route_table() {
    let routes = routed();
    let docs = documented();
    let undocumented = set(UNDOCUMENTED);
    let pending = set(NOT_ROUTED_YET);
    let missing: Vec<&Op> = routes
        .iter()
        .filter(|op| !docs.contains(*op) && !undocumented.contains(*op))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let unknown: Vec<&Op> = docs
        .iter()
        .filter(|op| !routes.contains(*op) && !pending.contains(*op))
        .collect();
    assert!(unknown.is_empty(), "documented but not routed: {unknown:?}");
    let routed_now: Vec<&Op> = pending.intersection(&routes).collect();
    assert!(
        routed_now.is_empty(),
        "routed now, remove them from NOT_ROUTED_YET: {routed_now:?}"
    );
    let stale: Vec<&Op> = undocumented
        .iter()
        .filter(|op| !routes.contains(*op) || docs.contains(*op))
        .collect();
    assert!(
        stale.is_empty(),
        "UNDOCUMENTED entries not routed, or documented after all: {stale:?}"
    );
}

#[test]
fn the_document_is_served_as_stored_under_every_prefix() {
    let srv = TestServer::start();
    for full in ["/openapi.json", "/latest/openapi.json", "/v0/openapi.json"] {
        let reply = srv.request_full("GET", full, None, &[], Body::None);
        assert_eq!(reply.status, 200, "{full}");
        assert_eq!(reply.content_type, "application/json", "{full}");
        assert_eq!(reply.text, OPENAPI_JSON, "{full}");
    }
    // The paths are the prefix-less ones, as upstream's.
    for path in document()["paths"].as_object().expect("paths").keys() {
        assert!(path.starts_with('/'), "{path}");
        assert!(
            !path.starts_with("/latest") && !path.starts_with("/v0"),
            "{path}"
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_of_this_version() {
    let doc = document();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["info"]["title"], "kci-lite");
    let scheme = &doc["components"]["securitySchemes"]["OAuth2PasswordBearer"];
    assert_eq!(scheme["type"], "oauth2");
    assert_eq!(scheme["flows"]["password"]["tokenUrl"], "user/login");
}

fn walk_refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                found.push(r);
            }
            map.values().for_each(|v| walk_refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| walk_refs(v, found)),
        _ => {}
    }
}

fn resolve(reference: &str) -> Option<&'static Value> {
    let mut at = document();
    for part in reference.strip_prefix("#/")?.split('/') {
        at = at.get(part.replace("~1", "/").replace("~0", "~"))?;
    }
    Some(at)
}

#[test]
fn every_reference_resolves() {
    let mut refs = Vec::new();
    walk_refs(document(), &mut refs);
    assert!(refs.len() > 100, "{}", refs.len());
    let broken: Vec<&&str> = refs.iter().filter(|r| resolve(r).is_none()).collect();
    assert!(broken.is_empty(), "{broken:?}");
}

#[test]
fn every_operation_is_named_tagged_and_lists_its_common_statuses() {
    let doc = document();
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations() {
        let at = format!("{method} {path}");
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{at}"));
        assert!(ids.insert(id), "operationId {id} twice");
        assert!(op["summary"].is_string(), "{at}");
        let tag = op["tags"][0].as_str().unwrap_or_else(|| panic!("{at}"));
        assert!(tags.contains(tag), "{at}: tag {tag}");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{at}: no success"
        );
        for status in responses.keys() {
            assert!(
                status.len() == 3 && status.parse::<u16>().is_ok(),
                "{at}: status {status}"
            );
        }
        if op.get("security").is_some() {
            assert!(responses.contains_key("401"), "{at}: secured, no 401");
        }
        if op.get("requestBody").is_some() {
            assert!(responses.contains_key("413"), "{at}: body, no 413");
            assert!(responses.contains_key("422"), "{at}: body, no 422");
        }
        // Every path parameter is declared, as a required path parameter.
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| match p.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(r),
                None => Some(p),
            })
            .filter(|p| p["in"] == "path" && p["required"] == true)
            .filter_map(|p| p["name"].as_str())
            .collect();
        let wanted: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, wanted, "{at}: path parameters");
    }
}

/// One value of every JSON type: a schema that takes them all takes anything.
fn any_json() -> [Value; 7] {
    [
        json!({"zz": [1]}),
        json!(["zz"]),
        json!("zz"),
        json!(12345),
        json!(1.5),
        json!(true),
        Value::Null,
    ]
}

#[test]
fn every_json_schema_compiles_and_none_accepts_anything() {
    let mut checked = 0;
    for (path, method, op) in operations() {
        let mut media: Vec<(String, Vec<String>)> = Vec::new();
        for (status, response) in op["responses"].as_object().expect("responses") {
            for ctype in response["content"]
                .as_object()
                .into_iter()
                .flat_map(|c| c.keys())
            {
                let parts = ["responses", status, "content", ctype, "schema"];
                media.push((
                    format!("{status} {ctype}"),
                    parts.map(String::from).to_vec(),
                ));
            }
        }
        for ctype in op["requestBody"]["content"]
            .as_object()
            .into_iter()
            .flat_map(|c| c.keys())
        {
            let parts = ["requestBody", "content", ctype, "schema"];
            media.push((format!("body {ctype}"), parts.map(String::from).to_vec()));
        }
        for (what, rest) in media {
            if !what.ends_with("json") {
                continue;
            }
            let mut parts = vec!["paths", path.as_str(), method.as_str()];
            parts.extend(rest.iter().map(String::as_str));
            let v = validator(&parts);
            assert!(
                !any_json().iter().all(|value| v.is_valid(value)),
                "{method} {path} {what}: the schema accepts any JSON value"
            );
            checked += 1;
        }
    }
    assert!(checked > 150, "{checked}");
}

#[test]
fn the_error_schemas_are_those_of_the_contract() {
    let error = validator(&["components", "schemas", "HTTPError"]);
    assert!(error.is_valid(&json!({"detail": "Not Found"})));
    for bad in [json!({"detail": 1}), json!({}), json!(["x"]), json!("x")] {
        assert!(!error.is_valid(&bad), "{bad}");
    }
    let validation = validator(&["components", "schemas", "HTTPValidationError"]);
    assert!(validation.is_valid(&json!({"detail": [
        {"loc": ["body", "name"], "msg": "Field required", "type": "missing"},
        {"loc": ["body", 3], "msg": "JSON decode error", "type": "json_invalid"}
    ]})));
    assert!(!validation.is_valid(&json!({"detail": "x"})));
    assert!(!validation.is_valid(&json!({"detail": [{"loc": ["body"], "msg": "m"}]})));
}

#[test]
fn requests_are_matched_to_operations_as_the_server_routes_them() {
    assert_eq!(
        operation_of("GET", "http://127.0.0.1:1/latest/user/me"),
        Some(("/user/me", "get".into()))
    );
    assert_eq!(
        operation_of("GET", "/v0/user/0123456789abcdef01234567?x=1"),
        Some(("/user/{id}", "get".into()))
    );
    assert_eq!(
        operation_of("PUT", "/nodes/fast"),
        Some(("/nodes/{id}", "put".into()))
    );
    assert_eq!(
        operation_of("HEAD", "/nodes"),
        None,
        "HEAD has no body to check"
    );
    assert_eq!(operation_of("GET", "/docs"), None);
    assert_eq!(operation_of("GET", "/no/such/path"), None);
}

#[test]
fn the_answer_check_catches_what_the_document_does_not_say() {
    let json = "application/json";
    // What the document says passes.
    check_answer("GET", "/latest/count", 200, json, "3");
    check_answer("GET", "/node/nope", 400, json, r#"{"detail": "bad id"}"#);
    check_answer("GET", "/viewer", 404, json, r#"{"detail": "Not Found"}"#);
    check_answer("POST", "/user/logout", 204, json, "");
    let fails = |method: &'static str, url: &'static str, status, ctype, body: &'static str| {
        let outcome = std::panic::catch_unwind(|| check_answer(method, url, status, ctype, body));
        assert!(outcome.is_err(), "{method} {url} {status} {body} passed");
    };
    fails("GET", "/latest/nodes", 200, json, "[]");
    fails("GET", "/latest/count", 200, json, "\"3\"");
    fails("GET", "/latest/count", 299, json, "3");
    fails("GET", "/latest/count", 200, "text/plain", "3");
    fails("GET", "/whoami", 401, json, r#"{"detail": ["x"]}"#);
    fails("POST", "/user/logout", 204, json, "null");
}

#[test]
fn docs_renders_the_document_from_embedded_files_only() {
    let srv = TestServer::start();
    for prefix in ["", "/latest", "/v0"] {
        let page = srv.request_full("GET", &format!("{prefix}/docs"), None, &[], Body::None);
        assert_eq!(page.status, 200, "{prefix}/docs");
        assert!(page.content_type.starts_with("text/html"), "{prefix}");
        assert!(
            !page.text.contains("//"),
            "{prefix}/docs refers to another host"
        );
        // The page's own files, by the relative references it uses.
        for (file, ctype) in [
            ("static/js/docs.js", "text/javascript"),
            ("static/css/docs.css", "text/css"),
            ("openapi.json", "application/json"),
        ] {
            assert!(page.text.contains(file), "{file}");
            let url = format!("{prefix}/{file}");
            let reply = srv.request_full("GET", &url, None, &[], Body::None);
            assert_eq!(reply.status, 200, "{url}");
            assert!(reply.content_type.starts_with(ctype), "{url}");
            assert!(
                !reply.text.contains("http://") && !reply.text.contains("https://")
                    || file == "openapi.json",
                "{url} names another host"
            );
        }
    }
}

#[test]
fn a_known_path_with_another_method_is_405_with_its_methods() {
    let srv = TestServer::start();
    for (method, path, allow) in [
        (
            "DELETE",
            "/node/0123456789abcdef01234567",
            "GET, HEAD, PUT, PATCH",
        ),
        ("TRACE", "/count", "GET, HEAD"),
        ("GET", "/node", "POST"),
        ("PUT", "/unsubscribe/1", "GET, HEAD, POST"),
    ] {
        let reply = srv.request(method, path, srv.admin(), Body::None);
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(reply.json(), json!({"detail": "Method Not Allowed"}));
    }
    let reply = srv.request("GET", "/no/such/path", None, Body::None);
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("allow"), None);
}

#[test]
fn envelope_attributes_a_client_sets_are_strings_or_422() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let queue = common::uniq("queue");
    for (body, key) in [
        (json!({"data": 1, "id": 5}), "id"),
        (json!({"data": 1, "specversion": null}), "specversion"),
        (json!({"data": 1, "time": {"t": 1}}), "time"),
    ] {
        let (status, answer) = srv.post_json(&format!("/push/{queue}"), user.auth(), &body);
        common::assert_422(
            status,
            &answer,
            &[json!("body"), json!(key)],
            Some("string_type"),
        );
    }
    let (status, answer) = srv.post_json(
        "/publish/attrs",
        user.auth(),
        &json!({"data": {"n": 1}, "attributes": {"id": 7}}),
    );
    common::assert_422(
        status,
        &answer,
        &[json!("body"), json!("attributes")],
        Some("string_type"),
    );
    // Nothing was queued by the refused pushes; strings are still the
    // envelope's own values, and the popped envelope is a CloudEvent of
    // the document (the shared client checks it).
    let pushed = json!({"data": 1, "id": "my-id", "time": "2024-01-01T00:00:00+00:00",
                        "specversion": "1.0", "kind": "x"});
    let (status, _) = srv.post_json(&format!("/push/{queue}"), user.auth(), &pushed);
    assert_eq!(status, 200);
    let (status, event) = srv.get(&format!("/pop/{queue}"), user.auth());
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["id"], "my-id");
    assert_eq!(event["time"], "2024-01-01T00:00:00+00:00");
    assert_eq!(event["kind"], "x");
}
