//! Node updates end to end (API.md 2.3, 6, 7, 9.3): PUT/PATCH of one node,
//! hierarchies, the batch flag, who may edit, `/nodes/fast`, the query
//! language (including the indexed `data` paths on irregular rows), and the
//! node events each write leaves in the event history.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use chrono::{DateTime, NaiveDateTime, Utc};
use common::*;
use serde_json::{Value, json};

const DENIED: &str = "Unauthorized to complete the operation";
const STATES: [&str; 4] = ["running", "available", "closing", "done"];
/// Keys of a stored CloudEvent envelope (`_sequence_id` is added on delivery).
const ENVELOPE_KEYS: [&str; 7] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "data",
    "owner",
];

// -- helpers ----------------------------------------------------------------------------

fn id(node: &Value) -> String {
    node["id"].as_str().expect("id").to_string()
}

fn ts(text: &Value) -> NaiveDateTime {
    let s = text
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {text}"));
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.6f").unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Asserts that `value` is a timestamp within a minute of now.
#[track_caller]
fn assert_recent(value: &Value) {
    let at = ts(value);
    let now = Utc::now().naive_utc();
    assert!(
        (now - at).num_seconds().abs() < 60,
        "{at} is not close to {now}"
    );
}

fn invalid_id(text: &str) -> String {
    format!(
        "'{text}' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"
    )
}

/// `base` with the members of `changes` set.
fn with(base: &Value, changes: Value) -> Value {
    let mut out = base.clone();
    for (k, v) in changes.as_object().expect("changes object") {
        out[k.as_str()] = v.clone();
    }
    out
}

/// A complete kernel revision.
fn revision(tree: &str, branch: &str, commit: &str) -> Value {
    json!({"tree": tree, "url": "https://git.example.org/linux.git",
           "branch": branch, "commit": commit, "describe": "v6.7-rc1"})
}

/// The stored node (panics unless it exists).
#[track_caller]
fn read(srv: &TestServer, node_id: &str) -> Value {
    let (status, node) = srv.get(&format!("/node/{node_id}"), None);
    assert_eq!(status, 200, "{node}");
    assert!(node.is_object(), "node {node_id} does not exist");
    node
}

fn put(srv: &TestServer, node_id: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    srv.put_json(&format!("/node/{node_id}"), token, body)
}

fn patch(srv: &TestServer, node_id: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    srv.patch_json(&format!("/node/{node_id}"), token, body)
}

fn put_tree(srv: &TestServer, root_id: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    srv.put_json(&format!("/nodes/{root_id}"), token, body)
}

fn batch(srv: &TestServer, token: Option<&str>, ids: &[&str], value: &str) -> (u16, Value) {
    srv.put_json(
        "/batch/nodeset",
        token,
        &json!({"nodes": ids, "field": "processed_by_kcidb_bridge", "value": value}),
    )
}

/// A plain node owned by `token`'s user, with an old `updated` so that a
/// later change is visible, and a far timeout (no timer interference).
#[track_caller]
fn node(srv: &TestServer, token: Option<&str>, extra: Value) -> Value {
    let base = json!({"name": uniq("n"), "path": ["p"], "kind": "node",
                      "updated": "2024-01-01T00:00:00", "timeout": "2099-01-01T00:00:00"});
    srv.make_node(token, &with(&base, extra))
}

/// Asserts that the node is exactly as `before` and has `events` events.
#[track_caller]
fn assert_untouched(srv: &TestServer, before: &Value, events: usize) {
    let node_id = id(before);
    assert_eq!(&read(srv, &node_id), before, "the node must not change");
    assert_eq!(
        srv.node_events(&node_id).len(),
        events,
        "no event may be written"
    );
}

/// A leaf of a hierarchy body.
fn leaf(name: &str, extra: Value) -> Value {
    let body = json!({"name": name, "kind": "test", "path": ["x", name], "data": {},
                      "result": "pass", "state": "done"});
    json!({"node": with(&body, extra), "child_nodes": []})
}

fn is_uuid4(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'4'
        && b"89ab".contains(&b[19])
        && text
            .bytes()
            .enumerate()
            .all(|(i, c)| [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit())
}

/// Asserts the shape and content of a node event (9.1, 9.3) for `node`
/// (the node as it was written); `previous` for `updated` events.
#[track_caller]
fn assert_node_event(
    event: &StoredEvent,
    node: &Value,
    hierarchy: bool,
    previous: Option<(&str, Value)>,
) {
    assert_eq!(event.channel, "node");
    assert_eq!(
        event.owner.as_deref(),
        Some(node["owner"].as_str().expect("owner"))
    );
    let data = &event.data;
    match &previous {
        None => {
            assert_eq!(keys(data), CREATED_EVENT_KEYS, "{data}");
            assert_eq!(data["op"], "created");
        }
        Some((state, result)) => {
            assert_eq!(keys(data), UPDATED_EVENT_KEYS, "{data}");
            assert_eq!(data["op"], "updated");
            assert_eq!(data["previous_state"], *state, "{data}");
            assert_eq!(&data["previous_result"], result, "{data}");
        }
    }
    for key in [
        "id", "kind", "name", "path", "group", "state", "result", "owner", "data",
    ] {
        assert_eq!(data[key], node[key], "event data.{key}: {data}");
    }
    if let Some(inner) = data["data"].as_object().filter(|o| !o.is_empty()) {
        let order: Vec<&String> = inner.keys().collect();
        let want: Vec<String> = keys(&node["data"]);
        assert_eq!(order, want.iter().collect::<Vec<_>>(), "data member order");
    }
    assert_eq!(data["is_hierarchy"], hierarchy);
    let env = &event.envelope;
    assert_eq!(keys(env), ENVELOPE_KEYS, "{env}");
    assert_eq!(env["specversion"], "1.0");
    assert!(is_uuid4(env["id"].as_str().expect("id")), "{env}");
    assert_eq!(env["source"], "https://api.kernelci.org/");
    assert_eq!(env["type"], "api.kernelci.org");
    let time = env["time"].as_str().expect("time");
    assert!(time.ends_with("+00:00") && time.len() == 32, "{time}");
    let at = DateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%S%.6f%:z")
        .unwrap_or_else(|e| panic!("{time}: {e}"));
    assert!((Utc::now() - at.with_timezone(&Utc)).num_seconds().abs() < 60);
    assert_eq!(&env["data"], data);
    assert_eq!(keys(&env["data"]), keys(data));
    assert_eq!(env["owner"], node["owner"]);
}

/// Names of the nodes a query selects, through `/nodes`, `/nodes/fast` and
/// `/count`, which must agree.
#[track_caller]
fn names(srv: &TestServer, pairs: &[(&str, &str)]) -> Vec<String> {
    names_raw(srv, &qs(pairs))
}

/// Like [`names`] with a ready query string (`?...`).
#[track_caller]
fn names_raw(srv: &TestServer, query: &str) -> Vec<String> {
    let of = |items: &Value| -> Vec<String> {
        items
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {items}"))
            .iter()
            .map(|n| n["name"].as_str().expect("name").to_string())
            .collect()
    };
    let (status, page) = srv.get(&format!("/nodes{query}&limit=100000"), None);
    assert_eq!(status, 200, "/nodes{query}: {page}");
    let listed = of(&page["items"]);
    assert_eq!(page["total"], listed.len(), "/nodes{query}");
    let (status, fast) = srv.get(&format!("/nodes/fast{query}"), None);
    assert_eq!(status, 200, "/nodes/fast{query}: {fast}");
    assert_eq!(of(&fast), listed, "/nodes/fast{query} vs /nodes");
    let (status, count) = srv.get(&format!("/count{query}"), None);
    assert_eq!(status, 200, "/count{query}: {count}");
    assert_eq!(count, listed.len(), "/count{query}");
    listed
}

/// Asserts that `pairs` (plus the group) selects exactly `want`, in order.
#[track_caller]
fn assert_names(srv: &TestServer, group: &str, pairs: &[(&str, &str)], want: &[&str]) {
    let mut all = vec![("group", group)];
    all.extend_from_slice(pairs);
    assert_eq!(names(srv, &all), want, "query {pairs:?}");
}

/// Asserts that a query is refused with 400 by all three endpoints.
#[track_caller]
fn assert_query_400(srv: &TestServer, pairs: &[(&str, &str)], detail: Option<&str>) {
    for endpoint in ["/nodes", "/nodes/fast", "/count"] {
        let (status, body) = srv.get(&format!("{endpoint}{}", qs(pairs)), None);
        assert_eq!(status, 400, "{endpoint} {pairs:?}: {body}");
        assert!(body["detail"].is_string(), "{body}");
        if let Some(text) = detail {
            assert_eq!(body["detail"], text, "{endpoint} {pairs:?}");
        }
    }
}

fn make_named_group(srv: &TestServer, name: &str) -> Value {
    let (status, body) = srv.post_json("/user-groups", srv.admin(), &json!({"name": name}));
    assert_eq!(status, 200, "{body}");
    body
}

#[track_caller]
fn set_groups(srv: &TestServer, user: &TestUser, groups: &[&str]) {
    let (status, body) = srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"groups": groups}),
    );
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, groups);
}

// -- PUT /node/{id} ---------------------------------------------------------------------

#[test]
fn put_full_update_replaces_every_given_field() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(
        &srv,
        user.auth(),
        json!({"kind": "checkout", "data": {"kernel_revision": revision("mainline", "master", "a1")}}),
    );
    let parent = node(&srv, user.auth(), json!({}));
    let update = with(
        &original,
        json!({
            "name": "renamed", "path": ["checkout", "renamed"], "group": "grp-1",
            "parent": parent["id"], "state": "available", "result": "pass",
            "artifacts": {"log": "HTTPS://Logs.Example.org", "tarball": "http://h/x.tgz?a=1"},
            "data": {"kernel_revision": revision("next", "main", "b2"), "extra": [1, 2]},
            "debug": {"why": "because"}, "jobfilter": ["baseline"], "platform_filter": ["qemu"],
            "timeout": "2098-01-01T12:00:00+01:00", "holdoff": "2097-06-01T00:00:00Z",
            "treeid": "tree-9", "retry_counter": 3,
        }),
    );
    let (status, got) = put(&srv, &id(&original), user.auth(), &update);
    assert_eq!(status, 200, "{got}");
    assert_eq!(keys(&got), NODE_KEYS);
    let expected = with(
        &update,
        json!({
            "artifacts": {"log": "https://logs.example.org/", "tarball": "http://h/x.tgz?a=1"},
            "timeout": "2098-01-01T11:00:00.000000", "holdoff": "2097-06-01T00:00:00.000000",
            "updated": got["updated"],
        }),
    );
    assert_eq!(got, expected);
    assert_eq!(got["created"], original["created"]);
    assert_ne!(got["updated"], original["updated"]);
    assert_recent(&got["updated"]);
    assert_eq!(read(&srv, &id(&original)), got, "a read returns the same");
}

#[test]
fn put_keeps_omitted_fields() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    let parent = node(&srv, user.auth(), json!({}));
    let original = node(
        &srv,
        user.auth(),
        json!({"kind": "process", "group": "keep", "parent": parent["id"], "result": "fail",
               "state": "available", "artifacts": {"a": "https://a.example/x"},
               "data": {"z": 1, "a": {"b": [1, 2]}}, "debug": {"d": 1},
               "jobfilter": ["j"], "platform_filter": ["p"], "holdoff": "2098-01-01T00:00:00",
               "submitter": "sub", "treeid": "tree", "user_groups": [group["name"]],
               "retry_counter": 4}),
    );
    let (status, got) = put(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"name": "renamed"}),
    );
    assert_eq!(status, 200, "{got}");
    let expected = with(
        &original,
        json!({"name": "renamed", "updated": got["updated"]}),
    );
    assert_eq!(got, expected);
    assert_eq!(keys(&got["data"]), ["z", "a"]);
    assert_ne!(got["updated"], original["updated"]);
    // a client-supplied `created` is honoured, `updated` is always "now"
    let (status, got) = put(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"created": "2022-02-02T11:23:03.157648", "updated": "2000-01-01T00:00:00"}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["created"], "2022-02-02T11:23:03.157000");
    assert_recent(&got["updated"]);
    assert_eq!(got["name"], "renamed");
    assert_eq!(got["timeout"], original["timeout"]);
}

#[test]
fn put_ignores_unknown_top_level_keys() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(&srv, user.auth(), json!({}));
    let (status, got) = put(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"name": "x", "no_such_field": {"a": 1}}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(keys(&got), NODE_KEYS);
    assert_eq!(got["name"], "x");
}

#[test]
fn put_never_changes_owner_submitter_or_user_groups() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    let other_group = srv.make_group();
    let original = node(
        &srv,
        user.auth(),
        json!({"submitter": "s1", "treeid": "t1", "user_groups": [group["name"]]}),
    );
    for token in [user.auth(), srv.admin()] {
        let (status, got) = put(
            &srv,
            &id(&original),
            token,
            &with(
                &original,
                json!({"owner": "mallory", "submitter": "evil",
                       "user_groups": [other_group["name"]], "treeid": "t2"}),
            ),
        );
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["owner"], user.username.as_str());
        assert_eq!(got["submitter"], "s1");
        assert_eq!(got["user_groups"], json!([group["name"]]));
        // treeid is an ordinary field
        assert_eq!(got["treeid"], "t2");
        assert_eq!(read(&srv, &id(&original)), got);
    }
    // nulls do not clear them either
    let (status, got) = put(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"owner": null, "submitter": null, "user_groups": null}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["owner"], user.username.as_str());
    assert_eq!(got["submitter"], "s1");
    assert_eq!(got["user_groups"], json!([group["name"]]));
}

#[test]
fn put_path_id_wins_over_body_id() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let first = node(&srv, user.auth(), json!({}));
    let second = node(&srv, user.auth(), json!({}));
    let (status, got) = put(
        &srv,
        &id(&first),
        user.auth(),
        &with(&first, json!({"id": second["id"], "name": "changed"})),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], first["id"]);
    assert_eq!(read(&srv, &id(&first))["name"], "changed");
    assert_eq!(
        read(&srv, &id(&second)),
        second,
        "the body id is not touched"
    );
    // upper-case path ids are accepted, output is lower case
    let (status, got) = put(
        &srv,
        &id(&first).to_uppercase(),
        user.auth(),
        &json!({"name": "upper"}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], first["id"]);
}

#[test]
fn put_explicit_null_sets_null_where_allowed() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let parent = node(&srv, user.auth(), json!({}));
    let original = node(
        &srv,
        user.auth(),
        json!({"kind": "checkout", "group": "g", "result": "fail", "parent": parent["id"],
               "holdoff": "2098-01-01T00:00:00", "artifacts": {"a": "http://h/"},
               "data": {"kernel_revision": revision("t", "b", "c")}, "debug": {"x": 1},
               "jobfilter": ["a"], "platform_filter": ["b"], "treeid": "t"}),
    );
    let nulls = json!({"group": null, "result": null, "parent": null, "holdoff": null,
                       "artifacts": null, "data": null, "debug": null, "jobfilter": null,
                       "platform_filter": null, "treeid": null});
    let (status, got) = put(
        &srv,
        &id(&original),
        user.auth(),
        &with(&original, nulls.clone()),
    );
    assert_eq!(status, 200, "{got}");
    let stored = read(&srv, &id(&original));
    for key in nulls.as_object().unwrap().keys() {
        assert_eq!(got[key.as_str()], Value::Null, "{key}");
        assert_eq!(stored[key.as_str()], Value::Null, "{key}");
    }
    assert_eq!(stored["kind"], "checkout");
    assert_eq!(stored["name"], original["name"]);
}

#[test]
fn put_parent_equal_to_self_is_400_and_nothing_changes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(&srv, user.auth(), json!({}));
    let events = srv.node_events(&id(&original)).len();
    for parent in [id(&original), id(&original).to_uppercase()] {
        let (status, body) = put(
            &srv,
            &id(&original),
            user.auth(),
            &with(&original, json!({"parent": parent, "name": "changed"})),
        );
        assert_detail(
            status,
            &body,
            400,
            "Parent cannot be the same as the object",
        );
        assert_untouched(&srv, &original, events);
    }
    // PUT does not check that the parent exists
    let (status, got) = put(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"parent": MISSING_ID}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["parent"], MISSING_ID);
}

#[test]
fn put_bad_kind_or_kind_data_is_400_and_nothing_changes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(
        &srv,
        user.auth(),
        json!({"kind": "checkout", "data": {"kernel_revision": revision("t", "b", "c")}}),
    );
    let events = srv.node_events(&id(&original)).len();
    let node_id = id(&original);
    let (status, body) = put(
        &srv,
        &node_id,
        user.auth(),
        &with(&original, json!({"kind": "bogus", "name": "changed"})),
    );
    assert_detail(status, &body, 400, "Unsupported node kind: bogus");
    assert_untouched(&srv, &original, events);
    for (data, place) in [
        (
            json!({"kernel_revision": {"tree": "t", "branch": "b", "commit": "c"}}),
            "kernel_revision",
        ),
        (json!({"error_code": "exploded"}), "error_code"),
        (
            json!({"kernel_revision": with(&revision("t", "b", "c"),
                                           json!({"version": {"version": "six", "patchlevel": 1}}))}),
            "version",
        ),
    ] {
        let (status, body) = put(
            &srv,
            &node_id,
            user.auth(),
            &json!({"data": data, "result": "pass"}),
        );
        assert_eq!(status, 400, "{data}: {body}");
        let detail = body["detail"].as_str().expect("string detail");
        assert!(detail.contains(place), "{detail} should name {place}");
        assert_untouched(&srv, &original, events);
    }
    // the kept data is validated against a new kind
    let loose = node(
        &srv,
        user.auth(),
        json!({"kind": "process", "data": {"kernel_revision": {"tree": "only"}}}),
    );
    let (status, body) = put(&srv, &id(&loose), user.auth(), &json!({"kind": "checkout"}));
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("kernel_revision"));
    assert_untouched(&srv, &loose, 1);
    let (status, got) = put(&srv, &id(&loose), user.auth(), &json!({"kind": "job"}));
    assert_eq!(status, 400, "job checks kernel_revision too: {got}");
    let (status, got) = put(&srv, &id(&loose), user.auth(), &json!({"kind": "node"}));
    assert_eq!((status, &got["kind"]), (200, &json!("node")), "{got}");
}

#[test]
fn put_converts_kernel_version_strings() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(&srv, user.auth(), json!({"kind": "checkout", "data": {}}));
    let rev = with(
        &revision("t", "b", "c"),
        json!({"version": {"version": "6", "patchlevel": "7", "sublevel": "1", "extra": "-rc1"}}),
    );
    let (status, got) = put(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"data": {"kernel_revision": rev}}),
    );
    assert_eq!(status, 200, "{got}");
    let want = json!({"version": 6, "patchlevel": 7, "sublevel": 1, "extra": "-rc1"});
    assert_eq!(got["data"]["kernel_revision"]["version"], want);
    assert_eq!(
        read(&srv, &id(&original))["data"]["kernel_revision"]["version"],
        want
    );
    let events = srv.node_events(&id(&original));
    assert_eq!(
        events.last().unwrap().data["data"]["kernel_revision"]["version"],
        want
    );
}

#[test]
fn put_schema_errors_are_422_and_nothing_changes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(&srv, user.auth(), json!({}));
    let node_id = id(&original);
    for (field, value) in [
        ("state", json!("pending")),
        ("result", json!("ok")),
        ("retry_counter", json!("3")),
        ("retry_counter", json!(1.5)),
        ("processed_by_kcidb_bridge", json!("maybe")),
        ("timeout", json!("yesterday")),
        ("path", json!("p")),
        ("data", json!([1])),
        ("name", json!(5)),
        ("parent", json!("xyz")),
        ("artifacts", json!({"a": "ftp://h/x"})),
    ] {
        let (status, body) = put(
            &srv,
            &node_id,
            user.auth(),
            &json!({field: value, "name_ok": 1, "group": "changed"}),
        );
        assert_422(status, &body, &[json!("body"), json!(field)], None);
        assert_untouched(&srv, &original, 1);
    }
    for body in [json!([]), json!("text"), json!(null)] {
        let (status, reply) = put(&srv, &node_id, user.auth(), &body);
        assert_eq!(status, 422, "{body}: {reply}");
    }
    let reply = srv.request(
        "PUT",
        &format!("/node/{node_id}"),
        user.auth(),
        Body::Raw(b"", Some("application/json")),
    );
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("missing"),
    );
    assert_untouched(&srv, &original, 1);
}

/// The contract's transition map (section 8), written out independently.
fn allowed(from: &str, to: &str) -> bool {
    from == to
        || matches!(
            (from, to),
            ("running", "available")
                | ("running", "closing")
                | ("running", "done")
                | ("available", "closing")
                | ("available", "done")
                | ("closing", "done")
        )
}

#[test]
fn put_and_patch_follow_the_transition_map() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for from in STATES {
        for to in STATES {
            for method in ["PUT", "PATCH"] {
                // a pending child keeps a `closing` node from being moved
                // to `done` by the timer (section 8) during the test
                let start = if from == "closing" { "running" } else { from };
                let original = node(&srv, user.auth(), json!({"state": start}));
                node(&srv, user.auth(), json!({"parent": original["id"]}));
                let original = if from == "closing" {
                    let (status, got) = srv.put_json(
                        &format!("/node/{}?noevent=true", id(&original)),
                        user.auth(),
                        &json!({"state": "closing"}),
                    );
                    assert_eq!(status, 200, "{got}");
                    got
                } else {
                    original
                };
                assert_eq!(read(&srv, &id(&original))["state"], from);
                let events = srv.node_events(&id(&original)).len();
                let body = json!({"state": to, "result": "pass"});
                let (status, got) = if method == "PUT" {
                    put(&srv, &id(&original), user.auth(), &body)
                } else {
                    patch(&srv, &id(&original), user.auth(), &body)
                };
                if allowed(from, to) {
                    assert_eq!(status, 200, "{method} {from} -> {to}: {got}");
                    assert_eq!(got["state"], to);
                    assert_eq!(got["result"], "pass");
                    assert_eq!(read(&srv, &id(&original)), got);
                    let all = srv.node_events(&id(&original));
                    assert_eq!(all.len(), events + 1);
                    assert_node_event(&all[events], &got, false, Some((from, Value::Null)));
                } else {
                    assert_detail(
                        status,
                        &got,
                        400,
                        &format!("Transition not allowed with state: {to}"),
                    );
                    assert_untouched(&srv, &original, events);
                }
            }
        }
    }
}

#[test]
fn put_processed_flag_rules() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let flag = |node: &Value| node["processed_by_kcidb_bridge"].clone();
    // false, body true, same state -> true
    let n = node(&srv, user.auth(), json!({}));
    let (status, got) = put(
        &srv,
        &id(&n),
        user.auth(),
        &with(&n, json!({"processed_by_kcidb_bridge": true})),
    );
    assert_eq!((status, flag(&got)), (200, json!(true)), "{got}");
    assert_eq!(flag(&read(&srv, &id(&n))), true);
    // true, body true again -> false (it was not false)
    let (status, got) = put(&srv, &id(&n), user.auth(), &got);
    assert_eq!((status, flag(&got)), (200, json!(false)), "{got}");
    // true, flag omitted -> false
    let n = node(
        &srv,
        user.auth(),
        json!({"processed_by_kcidb_bridge": true}),
    );
    let (status, got) = put(&srv, &id(&n), user.auth(), &json!({"result": "pass"}));
    assert_eq!((status, flag(&got)), (200, json!(false)), "{got}");
    // true, body false -> false
    let n = node(
        &srv,
        user.auth(),
        json!({"processed_by_kcidb_bridge": true}),
    );
    let (status, got) = put(
        &srv,
        &id(&n),
        user.auth(),
        &json!({"processed_by_kcidb_bridge": false}),
    );
    assert_eq!((status, flag(&got)), (200, json!(false)), "{got}");
    // false, body true but the state changes -> false
    let n = node(&srv, user.auth(), json!({}));
    let (status, got) = put(
        &srv,
        &id(&n),
        user.auth(),
        &json!({"processed_by_kcidb_bridge": true, "state": "done"}),
    );
    assert_eq!((status, flag(&got)), (200, json!(false)), "{got}");
    assert_eq!(got["state"], "done");
    // false, body true, state given but unchanged -> true
    let n = node(&srv, user.auth(), json!({"state": "available"}));
    let (status, got) = put(
        &srv,
        &id(&n),
        user.auth(),
        &json!({"processed_by_kcidb_bridge": true, "state": "available"}),
    );
    assert_eq!((status, flag(&got)), (200, json!(true)), "{got}");
}

#[test]
fn put_unknown_node_is_404_before_the_permission_check() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let original = node(&srv, owner.auth(), json!({}));
    let missing = format!("Node not found with id: {MISSING_ID}");
    for token in [other.auth(), owner.auth(), srv.admin()] {
        let (status, body) = put(&srv, MISSING_ID, token, &json!({"name": "x"}));
        assert_detail(status, &body, 404, &missing);
        // the node lookup also comes before body validation
        let (status, body) = put(&srv, MISSING_ID, token, &json!({"state": "bogus"}));
        assert_detail(status, &body, 404, &missing);
    }
    let (status, body) = put(&srv, &id(&original), other.auth(), &json!({"name": "x"}));
    assert_detail(status, &body, 401, DENIED);
    // permission also comes before body validation and kind checks
    let (status, body) = put(
        &srv,
        &id(&original),
        other.auth(),
        &json!({"state": "bogus", "kind": "bogus"}),
    );
    assert_detail(status, &body, 401, DENIED);
    assert_untouched(&srv, &original, 1);
    // invalid ids
    for bad in ["xyz", "0123456789abcdef0123456", "0123456789abcdef0123456g"] {
        let (status, body) = put(&srv, bad, owner.auth(), &json!({"name": "x"}));
        assert_detail(status, &body, 400, &invalid_id(bad));
    }
}

#[test]
fn put_without_a_valid_token_is_401() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let original = node(&srv, owner.auth(), json!({}));
    for node_id in [id(&original), MISSING_ID.to_string(), "xyz".to_string()] {
        for token in [None, Some("garbage"), Some("a.b.c")] {
            let (status, body) = put(&srv, &node_id, token, &json!({"name": "x"}));
            assert_detail(status, &body, 401, "Unauthorized");
            let (status, body) = patch(&srv, &node_id, token, &json!({"result": "pass"}));
            assert_detail(status, &body, 401, "Unauthorized");
            let (status, body) = put_tree(
                &srv,
                &node_id,
                token,
                &json!({"node": {"name": "x"}, "child_nodes": []}),
            );
            assert_detail(status, &body, 401, "Unauthorized");
        }
    }
    assert_untouched(&srv, &original, 1);
    // an expired token of the owner
    let expired = access_token(srv.secret.as_deref().unwrap(), &owner.id, -10);
    let (status, body) = put(&srv, &id(&original), Some(&expired), &json!({"name": "x"}));
    assert_detail(status, &body, 401, "Unauthorized");
    assert_untouched(&srv, &original, 1);
}

#[test]
fn noevent_suppresses_the_event_of_put_and_patch() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let n = node(&srv, user.auth(), json!({}));
    let node_id = id(&n);
    let mut expected = 1;
    for word in ["true", "1", "yes", "on", "TRUE", "Yes", "ON"] {
        let (status, got) = srv.put_json(
            &format!("/node/{node_id}?noevent={word}"),
            user.auth(),
            &json!({"result": "skip", "name": format!("quiet-{word}")}),
        );
        assert_eq!(status, 200, "{word}: {got}");
        assert_eq!(read(&srv, &node_id)["name"], format!("quiet-{word}"));
        let (status, got) = srv.patch_json(
            &format!("/node/{node_id}?noevent={word}"),
            user.auth(),
            &json!({"result": "fail"}),
        );
        assert_eq!(status, 200, "{word}: {got}");
        assert_eq!(srv.node_events(&node_id).len(), expected, "noevent={word}");
    }
    for word in ["false", "0", "no", "off", "False"] {
        let (status, got) = srv.put_json(
            &format!("/node/{node_id}?noevent={word}"),
            user.auth(),
            &json!({"result": "pass"}),
        );
        assert_eq!(status, 200, "{word}: {got}");
        expected += 1;
        let (status, got) = srv.patch_json(
            &format!("/node/{node_id}?noevent={word}"),
            user.auth(),
            &json!({"result": "fail"}),
        );
        assert_eq!(status, 200, "{word}: {got}");
        expected += 1;
        assert_eq!(srv.node_events(&node_id).len(), expected, "noevent={word}");
    }
    // the last event describes the last (evented) change
    let last = srv.node_events(&node_id).pop().unwrap();
    let current = read(&srv, &node_id);
    assert_node_event(&last, &current, false, Some(("running", json!("pass"))));
}

#[test]
fn noevent_with_a_non_boolean_is_422_and_nothing_changes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let n = node(&srv, user.auth(), json!({}));
    let node_id = id(&n);
    for word in ["maybe", "2", "truthy"] {
        let reply = srv.request(
            "PUT",
            &format!("/node/{node_id}?noevent={word}"),
            user.auth(),
            Body::Json(&json!({"name": "changed"})),
        );
        assert_422(
            reply.status,
            &reply.json(),
            &[json!("query"), json!("noevent")],
            Some("bool_parsing"),
        );
        let reply = srv.request(
            "PATCH",
            &format!("/node/{node_id}?noevent={word}"),
            user.auth(),
            Body::Json(&json!({"result": "pass"})),
        );
        assert_422(
            reply.status,
            &reply.json(),
            &[json!("query"), json!("noevent")],
            Some("bool_parsing"),
        );
        assert_untouched(&srv, &n, 1);
    }
}

#[test]
fn noevent_is_validated_after_the_node_and_permission_checks() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let n = node(&srv, owner.auth(), json!({}));
    let (status, body) = srv.put_json(
        &format!("/node/{MISSING_ID}?noevent=maybe"),
        owner.auth(),
        &json!({"name": "x"}),
    );
    assert_detail(
        status,
        &body,
        404,
        &format!("Node not found with id: {MISSING_ID}"),
    );
    let (status, body) = srv.patch_json(
        &format!("/node/{}?noevent=maybe", id(&n)),
        other.auth(),
        &json!({"result": "pass"}),
    );
    assert_detail(status, &body, 401, DENIED);
}

// -- PATCH /node/{id} -------------------------------------------------------------------

#[test]
fn patch_changes_only_the_given_fields() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(
        &srv,
        user.auth(),
        json!({"group": "g1", "kind": "process", "data": {"a": 1}, "artifacts": {"x": "http://h/x"}}),
    );
    let (status, got) = patch(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"result": "pass", "state": "available", "holdoff": "2097-01-01T00:00:00+01:00",
                "timeout": "2098-05-05T05:05:05.5Z", "debug": {"n": 1},
                "jobfilter": ["a"], "platform_filter": null}),
    );
    assert_eq!(status, 200, "{got}");
    let expected = with(
        &original,
        json!({"result": "pass", "state": "available", "holdoff": "2096-12-31T23:00:00.000000",
               "timeout": "2098-05-05T05:05:05.500000", "debug": {"n": 1}, "jobfilter": ["a"],
               "platform_filter": null, "updated": got["updated"]}),
    );
    assert_eq!(got, expected);
    assert_recent(&got["updated"]);
    assert_eq!(read(&srv, &id(&original)), got);
}

#[test]
fn patch_ignores_keys_that_are_not_patchable() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    let parent = node(&srv, user.auth(), json!({}));
    let original = node(&srv, user.auth(), json!({}));
    let (status, got) = patch(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"result": "pass", "name": "renamed", "kind": "bogus", "path": ["z"],
                "group": "g", "parent": parent["id"], "owner": "mallory", "submitter": "s",
                "treeid": "t", "user_groups": [group["name"]], "retry_counter": 9,
                "created": "2020-01-01T00:00:00", "id": MISSING_ID}),
    );
    assert_eq!(status, 200, "{got}");
    let expected = with(
        &original,
        json!({"result": "pass", "updated": got["updated"]}),
    );
    assert_eq!(got, expected);
}

#[test]
fn patch_without_patchable_keys_is_400() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(&srv, user.auth(), json!({}));
    for body in [
        json!({}),
        json!({"name": "x"}),
        json!({"owner": "me"}),
        json!({"kind": "bogus", "id": MISSING_ID, "parent": "xyz"}),
    ] {
        let (status, reply) = patch(&srv, &id(&original), user.auth(), &body);
        assert_detail(status, &reply, 400, "No fields to update");
        assert_untouched(&srv, &original, 1);
    }
    for body in [json!([]), json!("x"), json!(3)] {
        let (status, reply) = patch(&srv, &id(&original), user.auth(), &body);
        assert_eq!(status, 422, "{body}: {reply}");
        assert_untouched(&srv, &original, 1);
    }
}

#[test]
fn patch_replaces_data_artifacts_and_debug_wholesale() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(
        &srv,
        user.auth(),
        json!({"kind": "process", "data": {"a": 1, "b": {"c": 2, "d": 3}},
               "artifacts": {"x": "http://h/x", "y": "http://h/y"}, "debug": {"k": 1}}),
    );
    let (status, got) = patch(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"data": {"b": {"e": 4}, "z": null, "a2": [1]},
                "artifacts": {"y": "http://h/new"}, "debug": {}}),
    );
    assert_eq!(status, 200, "{got}");
    let stored = read(&srv, &id(&original));
    for n in [&got, &stored] {
        assert_eq!(n["data"], json!({"b": {"e": 4}, "z": null, "a2": [1]}));
        assert_eq!(keys(&n["data"]), ["b", "z", "a2"]);
        assert_eq!(n["artifacts"], json!({"y": "http://h/new"}));
        assert_eq!(n["debug"], json!({}));
    }
    let (status, got) = patch(
        &srv,
        &id(&original),
        user.auth(),
        &json!({"data": null, "artifacts": null}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (&got["data"], &got["artifacts"]),
        (&Value::Null, &Value::Null)
    );
}

#[test]
fn patch_validates_kind_data_and_nothing_changes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let checkout = node(
        &srv,
        user.auth(),
        json!({"kind": "checkout", "data": {"kernel_revision": revision("t", "b", "c")}}),
    );
    let kbuild = node(&srv, user.auth(), json!({"kind": "kbuild", "data": {}}));
    let regression = node(&srv, user.auth(), json!({"kind": "regression", "data": {}}));
    for (n, data, place) in [
        (
            &checkout,
            json!({"kernel_revision": {"tree": "only-tree"}}),
            "kernel_revision",
        ),
        (&checkout, json!({"error_code": "exploded"}), "error_code"),
        (&kbuild, json!({"arch": 64}), "arch"),
        (&kbuild, json!({"fragments": "not-a-list"}), "fragments"),
        (&kbuild, json!({"regression": "not-an-id"}), "regression"),
        (
            &regression,
            json!({"node_sequence": ["zzz"]}),
            "node_sequence",
        ),
    ] {
        let (status, body) = patch(
            &srv,
            &id(n),
            user.auth(),
            &json!({"data": data, "result": "pass"}),
        );
        assert_eq!(status, 400, "{data}: {body}");
        let detail = body["detail"].as_str().expect("string detail");
        assert!(detail.contains(place), "{detail} should name {place}");
        assert_untouched(&srv, n, 1);
    }
    // a valid patch of kind data is applied, version strings converted
    let rev = with(
        &revision("next", "main", "d"),
        json!({"version": {"version": "6", "patchlevel": "8"}}),
    );
    let (status, got) = patch(
        &srv,
        &id(&checkout),
        user.auth(),
        &json!({"data": {"kernel_revision": rev}}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["data"]["kernel_revision"]["version"],
        json!({"version": 6, "patchlevel": 8})
    );
    assert_eq!(got["data"]["kernel_revision"]["tree"], "next");
}

#[test]
fn patch_invalid_artifact_url_is_422_and_nothing_changes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let original = node(&srv, user.auth(), json!({"artifacts": {"ok": "http://h/"}}));
    for url in [
        json!("ftp://example.org/x"),
        json!("not a url"),
        json!("//x/y"),
        json!("http://"),
        json!(12),
    ] {
        let (status, body) = patch(
            &srv,
            &id(&original),
            user.auth(),
            &json!({"artifacts": {"a": url}, "result": "pass"}),
        );
        assert_422(status, &body, &[json!("body"), json!("artifacts")], None);
        assert_untouched(&srv, &original, 1);
    }
    for (field, value) in [
        ("state", json!("pending")),
        ("timeout", json!("soon")),
        ("processed_by_kcidb_bridge", json!("maybe")),
        ("jobfilter", json!("x")),
        ("data", json!([1])),
    ] {
        let (status, body) = patch(&srv, &id(&original), user.auth(), &json!({field: value}));
        assert_422(status, &body, &[json!("body"), json!(field)], None);
        assert_untouched(&srv, &original, 1);
    }
}

#[test]
fn patch_processed_flag_rules() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let flag = |node: &Value| node["processed_by_kcidb_bridge"].clone();
    let n = node(&srv, user.auth(), json!({}));
    let node_id = id(&n);
    let step = |body: Value| -> Value {
        let (status, got) = patch(&srv, &node_id, user.auth(), &body);
        assert_eq!(status, 200, "{body}: {got}");
        assert_eq!(read(&srv, &node_id), got);
        flag(&got)
    };
    assert_eq!(step(json!({"processed_by_kcidb_bridge": true})), true);
    // the patch's value when given, also when it already was true
    assert_eq!(step(json!({"processed_by_kcidb_bridge": true})), true);
    // not given -> false
    assert_eq!(step(json!({"result": "fail"})), false);
    assert_eq!(
        step(json!({"processed_by_kcidb_bridge": true, "state": "running"})),
        true,
        "same state is no change"
    );
    assert_eq!(step(json!({"processed_by_kcidb_bridge": false})), false);
    // a state change always resets it
    assert_eq!(
        step(json!({"processed_by_kcidb_bridge": true, "state": "available"})),
        false
    );
}

#[test]
fn patch_unknown_node_is_404_before_401_and_invalid_id_400() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let n = node(&srv, owner.auth(), json!({}));
    let (status, body) = patch(&srv, MISSING_ID, other.auth(), &json!({"result": "pass"}));
    assert_detail(
        status,
        &body,
        404,
        &format!("Node not found with id: {MISSING_ID}"),
    );
    let (status, body) = patch(&srv, MISSING_ID, other.auth(), &json!({}));
    assert_eq!(status, 404, "404 before 'No fields to update': {body}");
    let (status, body) = patch(&srv, &id(&n), other.auth(), &json!({"result": "pass"}));
    assert_detail(status, &body, 401, DENIED);
    let (status, body) = patch(&srv, &id(&n), other.auth(), &json!({}));
    assert_detail(status, &body, 401, DENIED);
    let (status, body) = patch(&srv, "xyz", owner.auth(), &json!({"result": "pass"}));
    assert_detail(status, &body, 400, &invalid_id("xyz"));
    assert_untouched(&srv, &n, 1);
}

// -- PUT /nodes/{id} (hierarchy) --------------------------------------------------------

#[test]
fn hierarchy_is_written_in_pre_order_with_parents_wired() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let root = node(
        &srv,
        user.auth(),
        json!({"kind": "job", "name": "root", "data": {"runtime": "lab"},
               "submitter": "sub-1", "treeid": "tree-1"}),
    );
    let body = json!({
        "node": with(&root, json!({"result": "pass", "state": "done"})),
        "child_nodes": [
            {"node": {"name": "suite", "kind": "test", "path": ["root", "suite"], "data": {}},
             "child_nodes": [
                leaf("case-a", json!({})),
                {"node": {"name": "case-b", "kind": "test", "path": ["x"], "result": "fail",
                          "data": {"platform": "qemu"}},
                 "child_nodes": [leaf("case-b-log", json!({"kind": "process"}))]},
             ]},
            leaf("case-c", json!({"owner": "someone-else", "submitter": "spoof",
                                  "treeid": "spoof", "parent": MISSING_ID})),
        ],
    });
    let (status, nodes) = put_tree(&srv, &id(&root), user.auth(), &body);
    assert_eq!(status, 200, "{nodes}");
    let nodes = nodes.as_array().expect("list").clone();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["root", "suite", "case-a", "case-b", "case-b-log", "case-c"]
    );
    for n in &nodes {
        assert_eq!(keys(n), NODE_KEYS);
        assert_eq!(&read(&srv, &id(n)), n, "response equals stored node");
    }
    let by = |name: &str| nodes.iter().find(|n| n["name"] == name).unwrap().clone();
    assert_eq!(nodes[0]["id"], root["id"]);
    assert_eq!(
        nodes[0],
        with(
            &root,
            json!({"result": "pass", "state": "done", "updated": nodes[0]["updated"]})
        )
    );
    assert_eq!(by("suite")["parent"], root["id"]);
    assert_eq!(by("case-a")["parent"], by("suite")["id"]);
    assert_eq!(by("case-b")["parent"], by("suite")["id"]);
    assert_eq!(by("case-b-log")["parent"], by("case-b")["id"]);
    assert_eq!(by("case-c")["parent"], root["id"]);
    for name in ["suite", "case-a", "case-b", "case-b-log", "case-c"] {
        let child = by(name);
        assert!(is_object_id(&id(&child)));
        assert_eq!(child["owner"], user.username.as_str(), "{name}");
        assert_eq!(child["submitter"], "sub-1", "{name}");
        assert_eq!(child["treeid"], "tree-1", "{name}");
        assert_eq!(child["user_groups"], json!([]));
        assert_eq!(child["processed_by_kcidb_bridge"], false);
        assert_recent(&child["created"]);
        // children get no events
        assert_eq!(srv.node_events(&id(&child)).len(), 0, "{name}");
    }
    assert_eq!(by("suite")["state"], "running");
    assert_eq!(by("suite")["result"], Value::Null);
    assert_eq!(by("case-b")["result"], "fail");
    assert_eq!(by("case-b")["data"], json!({"platform": "qemu"}));
    assert_eq!(by("case-b-log")["kind"], "process");
    // children are found through the query language
    let (_, kids) = srv.get(&format!("/nodes?parent={}", id(&by("suite"))), None);
    let kid_names: Vec<&str> = kids["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(kid_names, ["case-a", "case-b"]);
    // exactly one event: the root's update, as a hierarchy
    let events = srv.node_events(&id(&root));
    assert_eq!(events.len(), 2, "created + one hierarchy update");
    assert_node_event(&events[1], &nodes[0], true, Some(("running", Value::Null)));
    assert!(events[1].seq > events[0].seq);
}

#[test]
fn hierarchy_children_are_owned_by_the_caller_not_the_root_owner() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let editor = srv.make_user(&["node:edit:any"]);
    let root = node(
        &srv,
        owner.auth(),
        json!({"kind": "job", "submitter": "s", "treeid": "t"}),
    );
    let (status, nodes) = put_tree(
        &srv,
        &id(&root),
        editor.auth(),
        &json!({"node": {"owner": editor.username, "submitter": "x", "name": "renamed"},
                "child_nodes": [leaf("c", json!({"owner": owner.username}))]}),
    );
    assert_eq!(status, 200, "{nodes}");
    assert_eq!(nodes[0]["owner"], owner.username.as_str());
    assert_eq!(nodes[0]["submitter"], "s");
    assert_eq!(nodes[0]["name"], "renamed");
    assert_eq!(nodes[0]["kind"], "job", "omitted root fields are kept");
    assert_eq!(nodes[1]["owner"], editor.username.as_str());
    assert_eq!(nodes[1]["submitter"], "s");
    assert_eq!(nodes[1]["treeid"], "t");
    // the root's event carries the root owner
    let events = srv.node_events(&id(&root));
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].owner.as_deref(), Some(owner.username.as_str()));
    assert_node_event(&events[1], &nodes[0], true, Some(("running", Value::Null)));
}

#[test]
fn hierarchy_root_skips_the_transition_check_and_path_id_wins() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let root = node(
        &srv,
        user.auth(),
        json!({"kind": "job", "state": "done", "result": "pass"}),
    );
    let other = node(&srv, user.auth(), json!({}));
    let (status, nodes) = put_tree(
        &srv,
        &id(&root),
        user.auth(),
        &json!({"node": {"id": other["id"], "state": "running", "result": null},
                "child_nodes": []}),
    );
    assert_eq!(status, 200, "{nodes}");
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["id"], root["id"]);
    assert_eq!(nodes[0]["state"], "running");
    assert_eq!(read(&srv, &id(&other)), other);
    let events = srv.node_events(&id(&root));
    assert_node_event(&events[1], &nodes[0], true, Some(("done", json!("pass"))));
    // child_nodes may be omitted
    let (status, nodes) = put_tree(
        &srv,
        &id(&root),
        user.auth(),
        &json!({"node": {"name": "n2"}}),
    );
    assert_eq!(status, 200, "{nodes}");
    assert_eq!(nodes[0]["name"], "n2");
    // but the parent of the root is still not itself
    let (status, body) = put_tree(
        &srv,
        &id(&root),
        user.auth(),
        &json!({"node": {"parent": root["id"]}, "child_nodes": []}),
    );
    assert_detail(
        status,
        &body,
        400,
        "Parent cannot be the same as the object",
    );
}

#[test]
fn hierarchy_updates_existing_children_given_by_id() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let root = node(&srv, user.auth(), json!({"kind": "job"}));
    let existing = node(
        &srv,
        user.auth(),
        json!({"kind": "test", "data": {"keep": 1}}),
    );
    let (status, nodes) = put_tree(
        &srv,
        &id(&root),
        user.auth(),
        &json!({"node": {}, "child_nodes": [
            {"node": {"id": existing["id"], "result": "fail", "owner": "mallory"},
             "child_nodes": [leaf("grandchild", json!({}))]}]}),
    );
    assert_eq!(status, 200, "{nodes}");
    let child = &nodes[1];
    assert_eq!(child["id"], existing["id"]);
    assert_eq!(child["parent"], root["id"]);
    assert_eq!(child["result"], "fail");
    assert_eq!(child["owner"], user.username.as_str());
    assert_eq!(child["data"], json!({"keep": 1}));
    assert_eq!(nodes[2]["parent"], existing["id"]);
    assert_eq!(&read(&srv, &id(&existing)), child);
    assert_eq!(
        srv.node_events(&id(&existing)).len(),
        1,
        "only its created event"
    );
}

#[test]
fn hierarchy_cannot_make_a_node_its_own_parent() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let root = node(&srv, user.auth(), json!({"kind": "job"}));
    let (status, body) = put_tree(
        &srv,
        &id(&root),
        user.auth(),
        &json!({"node": {"result": "pass"},
                "child_nodes": [{"node": {"id": root["id"]}, "child_nodes": []}]}),
    );
    assert_detail(
        status,
        &body,
        400,
        "Parent cannot be the same as the object",
    );
    assert_untouched(&srv, &root, 1);
}

/// A hierarchy whose second child at depth 2 is `bad`; every other node of
/// it is valid and belongs to group `group`.
fn hierarchy_with(root: &Value, group: &str, bad: Value) -> Value {
    json!({
        "node": with(root, json!({"result": "fail", "name": "changed"})),
        "child_nodes": [
            leaf("good-1", json!({"group": group})),
            {"node": {"name": "mid", "path": ["m"], "kind": "test", "group": group, "data": {}},
             "child_nodes": [leaf("good-2", json!({"group": group})), bad]},
        ],
    })
}

#[test]
fn hierarchy_is_all_or_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let foreign = node(
        &srv,
        other.auth(),
        json!({"kind": "test", "result": "pass"}),
    );
    let root = node(&srv, user.auth(), json!({"kind": "job"}));
    let group = uniq("atomic");
    let before_total = srv.event_total();
    let (_, before_count) = srv.get("/count", None);
    let cases: Vec<(Value, u16, Option<String>)> = vec![
        (
            leaf("bad", json!({"kind": "bogus", "group": group})),
            400,
            Some("Unsupported node kind: bogus".into()),
        ),
        (
            leaf(
                "bad",
                json!({"kind": "checkout", "group": group,
                                   "data": {"kernel_revision": {"tree": "t"}}}),
            ),
            400,
            None,
        ),
        (
            leaf("bad", json!({"state": "pending", "group": group})),
            422,
            None,
        ),
        (
            leaf(
                "bad",
                json!({"user_groups": ["no-such-group"], "group": group}),
            ),
            400,
            Some("User group does not exist with name: no-such-group".into()),
        ),
        (
            leaf("bad", json!({"id": foreign["id"]})),
            401,
            Some(DENIED.into()),
        ),
        (
            leaf("bad", json!({"id": MISSING_ID})),
            404,
            Some(format!("Node not found with id: {MISSING_ID}")),
        ),
        (
            leaf("bad", json!({"id": "xyz"})),
            400,
            Some(invalid_id("xyz")),
        ),
        (
            json!({"node": "not an object", "child_nodes": []}),
            422,
            None,
        ),
        (
            json!({"node": {"name": "n", "path": []}, "child_nodes": 5}),
            422,
            None,
        ),
    ];
    for (bad, want_status, want_detail) in cases {
        let body = hierarchy_with(&root, &group, bad.clone());
        let (status, reply) = put_tree(&srv, &id(&root), user.auth(), &body);
        assert_eq!(status, want_status, "{bad}: {reply}");
        if let Some(detail) = want_detail {
            assert_eq!(reply, json!({"detail": detail}), "{bad}");
        }
        assert_untouched(&srv, &root, 1);
        assert_eq!(read(&srv, &id(&foreign)), foreign);
        assert_eq!(names(&srv, &[("group", &group)]), Vec::<String>::new());
        assert_eq!(names(&srv, &[("parent", &id(&root))]), Vec::<String>::new());
        let (_, count) = srv.get("/count", None);
        assert_eq!(count, before_count, "{bad}: no node written");
        assert_eq!(srv.event_total(), before_total, "{bad}: no event written");
    }
    // the root itself invalid
    let (status, reply) = put_tree(
        &srv,
        &id(&root),
        user.auth(),
        &json!({"node": {"kind": "bogus"}, "child_nodes": [leaf("good", json!({"group": group}))]}),
    );
    assert_detail(status, &reply, 400, "Unsupported node kind: bogus");
    assert_untouched(&srv, &root, 1);
    assert_eq!(names(&srv, &[("group", &group)]), Vec::<String>::new());
    // missing `node`
    let (status, reply) = put_tree(&srv, &id(&root), user.auth(), &json!({"child_nodes": []}));
    assert_422(
        status,
        &reply,
        &[json!("body"), json!("node")],
        Some("missing"),
    );
    assert_untouched(&srv, &root, 1);
}

#[test]
fn hierarchy_with_a_foreign_child_is_401_and_leaves_it_unchanged() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let foreign = node(
        &srv,
        other.auth(),
        json!({"kind": "test", "result": "pass"}),
    );
    let root = node(&srv, user.auth(), json!({"kind": "job"}));
    let mut child = leaf("hijack", json!({"result": "fail"}));
    child["node"]["id"] = foreign["id"].clone();
    let (status, body) = put_tree(
        &srv,
        &id(&root),
        user.auth(),
        &json!({"node": {"result": "pass"}, "child_nodes": [leaf("first", json!({})), child]}),
    );
    assert_detail(status, &body, 401, DENIED);
    assert_untouched(&srv, &foreign, 1);
    assert_untouched(&srv, &root, 1);
    assert_eq!(names(&srv, &[("parent", &id(&root))]), Vec::<String>::new());
    // the same child is fine for a user who may edit it
    let mut child = leaf("hijack", json!({"result": "fail"}));
    child["node"]["id"] = foreign["id"].clone();
    let (status, nodes) = put_tree(
        &srv,
        &id(&root),
        srv.admin(),
        &json!({"node": {}, "child_nodes": [child]}),
    );
    assert_eq!(status, 200, "{nodes}");
    assert_eq!(nodes[1]["owner"], other.username.as_str());
    assert_eq!(nodes[1]["parent"], root["id"]);
}

#[test]
fn hierarchy_root_must_exist_and_be_editable() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let root = node(&srv, user.auth(), json!({"kind": "job"}));
    let body = json!({"node": {"name": "x", "path": []}, "child_nodes": [leaf("c", json!({}))]});
    let (status, reply) = put_tree(&srv, MISSING_ID, user.auth(), &body);
    assert_detail(
        status,
        &reply,
        404,
        &format!("Node not found with id: {MISSING_ID}"),
    );
    let (status, reply) = put_tree(&srv, "xyz", user.auth(), &body);
    assert_detail(status, &reply, 400, &invalid_id("xyz"));
    let (status, reply) = put_tree(&srv, &id(&root), other.auth(), &body);
    assert_detail(status, &reply, 401, DENIED);
    // permission before body validation
    let (status, reply) = put_tree(&srv, &id(&root), other.auth(), &json!({"bogus": 1}));
    assert_detail(status, &reply, 401, DENIED);
    assert_untouched(&srv, &root, 1);
    assert_eq!(names(&srv, &[("parent", &id(&root))]), Vec::<String>::new());
    assert_eq!(names(&srv, &[("name", "c")]), Vec::<String>::new());
}

// -- PUT /batch/nodeset -----------------------------------------------------------------

#[test]
fn batch_sets_the_flag_and_counts_changed_nodes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let first = node(&srv, user.auth(), json!({}));
    let second = node(&srv, user.auth(), json!({"state": "done"}));
    let ids = [id(&first), id(&second)];
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let before_events = srv.event_total();
    for (value, flag) in [("true", true), ("False", false), ("TRUE", true)] {
        let (status, n) = batch(&srv, user.auth(), &refs, value);
        assert_eq!((status, &n), (200, &json!(2)), "{value}");
        for (original, node_id) in [&first, &second].iter().zip(&ids) {
            let stored = read(&srv, node_id);
            assert_eq!(stored["processed_by_kcidb_bridge"], flag);
            assert_recent(&stored["updated"]);
            let expected = with(
                original,
                json!({"processed_by_kcidb_bridge": flag, "updated": stored["updated"]}),
            );
            assert_eq!(stored, expected, "only the flag and updated change");
        }
    }
    assert_eq!(
        srv.event_total(),
        before_events,
        "batch publishes no events"
    );
    let (status, n) = batch(&srv, user.auth(), &[], "true");
    assert_eq!((status, n), (200, json!(0)));
    // upper-case ids are accepted
    let upper = id(&first).to_uppercase();
    let (status, n) = batch(&srv, user.auth(), &[&upper], "false");
    assert_eq!((status, n), (200, json!(1)));
    assert_eq!(read(&srv, &id(&first))["processed_by_kcidb_bridge"], false);
}

#[test]
fn batch_skips_nodes_the_caller_may_not_edit() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let mine = node(&srv, user.auth(), json!({}));
    let theirs = node(&srv, other.auth(), json!({}));
    let (status, n) = batch(&srv, user.auth(), &[&id(&theirs), &id(&mine)], "true");
    assert_eq!((status, n), (200, json!(1)));
    assert_eq!(read(&srv, &id(&mine))["processed_by_kcidb_bridge"], true);
    assert_eq!(
        read(&srv, &id(&theirs)),
        theirs,
        "flag and updated untouched"
    );
    let (status, n) = batch(&srv, other.auth(), &[&id(&mine)], "false");
    assert_eq!((status, n), (200, json!(0)));
    assert_eq!(read(&srv, &id(&mine))["processed_by_kcidb_bridge"], true);
    let (status, n) = batch(&srv, srv.admin(), &[&id(&theirs), &id(&mine)], "true");
    assert_eq!((status, n), (200, json!(2)));
}

#[test]
fn batch_errors_change_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let n = node(&srv, user.auth(), json!({}));
    let node_id = id(&n);
    let check = || assert_untouched(&srv, &n, 1);
    for field in ["result", "state", "PROCESSED_BY_KCIDB_BRIDGE", ""] {
        let (status, body) = srv.put_json(
            "/batch/nodeset",
            user.auth(),
            &json!({"nodes": [node_id], "field": field, "value": "true"}),
        );
        assert_detail(status, &body, 400, "Field not supported");
        check();
    }
    for value in ["maybe", "1", "yes", "", "true "] {
        let (status, body) = batch(&srv, user.auth(), &[&node_id], value);
        assert_eq!(status, 400, "{value:?}: {body}");
        assert!(body["detail"].is_string(), "{body}");
        check();
    }
    for value in [json!(true), json!(false), json!(1), json!(null)] {
        let (status, body) = srv.put_json(
            "/batch/nodeset",
            user.auth(),
            &json!({"nodes": [node_id], "field": "processed_by_kcidb_bridge", "value": value}),
        );
        assert_422(status, &body, &[json!("body"), json!("value")], None);
        check();
    }
    // an unknown id anywhere in the list: 404 and nothing written
    let (status, body) = batch(&srv, user.auth(), &[&node_id, MISSING_ID], "true");
    assert_detail(
        status,
        &body,
        404,
        &format!("Node not found with id: {MISSING_ID}"),
    );
    check();
    let (status, body) = batch(&srv, user.auth(), &[&node_id, "xyz"], "true");
    assert_detail(status, &body, 400, &invalid_id("xyz"));
    check();
    for body in [
        json!({"nodes": [node_id]}),
        json!({"nodes": node_id, "field": "processed_by_kcidb_bridge", "value": "true"}),
        json!({"nodes": [1], "field": "processed_by_kcidb_bridge", "value": "true"}),
        json!({"field": "processed_by_kcidb_bridge", "value": "true"}),
    ] {
        let (status, reply) = srv.put_json("/batch/nodeset", user.auth(), &body);
        assert_eq!(status, 422, "{body}: {reply}");
        check();
    }
    let (status, body) = batch(&srv, None, &[&node_id], "true");
    assert_detail(status, &body, 401, "Unauthorized");
    check();
}

// -- permissions (2.3) ------------------------------------------------------------------

/// Asserts that `token` may edit `n` through PUT, PATCH, the hierarchy
/// root and the batch flag.
#[track_caller]
fn assert_can_edit(srv: &TestServer, token: Option<&str>, n: &Value) {
    let node_id = id(n);
    let (status, got) = put(srv, &node_id, token, &json!({"result": "pass"}));
    assert_eq!(
        (status, &got["result"]),
        (200, &json!("pass")),
        "PUT: {got}"
    );
    let (status, got) = patch(srv, &node_id, token, &json!({"result": "fail"}));
    assert_eq!(
        (status, &got["result"]),
        (200, &json!("fail")),
        "PATCH: {got}"
    );
    let (status, got) = put_tree(
        srv,
        &node_id,
        token,
        &json!({"node": {"result": "skip"}, "child_nodes": []}),
    );
    assert_eq!(status, 200, "hierarchy: {got}");
    assert_eq!(got[0]["result"], "skip");
    let (status, count) = batch(srv, token, &[&node_id], "true");
    assert_eq!((status, count), (200, json!(1)), "batch");
    let stored = read(srv, &node_id);
    assert_eq!(stored["result"], "skip");
    assert_eq!(stored["processed_by_kcidb_bridge"], true);
    assert_eq!(
        stored["owner"], n["owner"],
        "editing never changes the owner"
    );
}

/// Asserts that `token` may not edit `n` (401 DENIED, batch skips it).
#[track_caller]
fn assert_cannot_edit(srv: &TestServer, token: Option<&str>, n: &Value) {
    let node_id = id(n);
    let before = read(srv, &node_id);
    let events = srv.node_events(&node_id).len();
    let (status, body) = put(srv, &node_id, token, &json!({"result": "pass"}));
    assert_detail(status, &body, 401, DENIED);
    let (status, body) = patch(srv, &node_id, token, &json!({"result": "pass"}));
    assert_detail(status, &body, 401, DENIED);
    let (status, body) = put_tree(
        srv,
        &node_id,
        token,
        &json!({"node": {"result": "pass"}, "child_nodes": [leaf("x", json!({}))]}),
    );
    assert_detail(status, &body, 401, DENIED);
    let (status, count) = batch(srv, token, &[&node_id], "true");
    assert_eq!((status, count), (200, json!(0)), "batch");
    assert_untouched(srv, &before, events);
}

#[test]
fn owner_and_superuser_may_edit_others_may_not() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    assert_can_edit(&srv, owner.auth(), &node(&srv, owner.auth(), json!({})));
    assert_can_edit(&srv, srv.admin(), &node(&srv, owner.auth(), json!({})));
    assert_cannot_edit(&srv, other.auth(), &node(&srv, owner.auth(), json!({})));
    // the admin's own nodes are not editable by plain users either
    assert_cannot_edit(&srv, owner.auth(), &node(&srv, srv.admin(), json!({})));
}

#[test]
fn node_edit_any_members_may_edit_every_node() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let editor = srv.make_user(&["node:edit:any"]);
    assert_can_edit(&srv, editor.auth(), &node(&srv, owner.auth(), json!({})));
    assert_can_edit(&srv, editor.auth(), &node(&srv, srv.admin(), json!({})));
}

#[test]
fn members_of_a_listed_user_group_may_edit() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let team = srv.make_group();
    let other_team = srv.make_group();
    let team_name = team["name"].as_str().unwrap();
    let member = srv.make_user(&[team_name]);
    let outsider = srv.make_user(&[other_team["name"].as_str().unwrap()]);
    let listed = json!({"user_groups": [team_name]});
    assert_can_edit(
        &srv,
        member.auth(),
        &node(&srv, owner.auth(), listed.clone()),
    );
    assert_cannot_edit(
        &srv,
        outsider.auth(),
        &node(&srv, owner.auth(), listed.clone()),
    );
    assert_cannot_edit(&srv, member.auth(), &node(&srv, owner.auth(), json!({})));
    // a group merely named like the node's group field does not count
    assert_cannot_edit(
        &srv,
        member.auth(),
        &node(&srv, owner.auth(), json!({"group": team_name})),
    );
}

#[test]
fn runtime_editor_and_admin_groups_may_edit_nodes_of_their_runtime() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    for role in ["node-editor", "node-admin"] {
        let lab = uniq("lab");
        let group = make_named_group(&srv, &format!("runtime:{lab}:{role}"));
        let editor = srv.make_user(&[group["name"].as_str().unwrap()]);
        let job = |runtime: Value| {
            node(
                &srv,
                owner.auth(),
                json!({"kind": "job", "data": {"runtime": runtime}}),
            )
        };
        assert_can_edit(&srv, editor.auth(), &job(json!(lab)));
        assert_cannot_edit(&srv, editor.auth(), &job(json!(uniq("lab"))));
        assert_cannot_edit(&srv, editor.auth(), &job(json!(lab.to_uppercase())));
        assert_cannot_edit(
            &srv,
            editor.auth(),
            &node(&srv, owner.auth(), json!({"kind": "job", "data": {}})),
        );
        // a runtime that is not a string does not count
        assert_cannot_edit(
            &srv,
            editor.auth(),
            &node(
                &srv,
                owner.auth(),
                json!({"kind": "process", "data": {"runtime": [lab]}}),
            ),
        );
    }
    // an empty runtime never matches, even with a group for it
    let group = make_named_group(&srv, "runtime::node-editor");
    let editor = srv.make_user(&[group["name"].as_str().unwrap()]);
    assert_cannot_edit(
        &srv,
        editor.auth(),
        &node(
            &srv,
            owner.auth(),
            json!({"kind": "job", "data": {"runtime": ""}}),
        ),
    );
    // other roles of the runtime do not count
    let lab = uniq("lab");
    let group = make_named_group(&srv, &format!("runtime:{lab}:viewer"));
    let viewer = srv.make_user(&[group["name"].as_str().unwrap()]);
    assert_cannot_edit(
        &srv,
        viewer.auth(),
        &node(
            &srv,
            owner.auth(),
            json!({"kind": "job", "data": {"runtime": lab}}),
        ),
    );
}

#[test]
fn runtime_permission_is_taken_from_the_stored_node() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let lab = uniq("lab");
    let group = make_named_group(&srv, &format!("runtime:{lab}:node-editor"));
    let editor = srv.make_user(&[group["name"].as_str().unwrap()]);
    // claiming a foreign node by setting the runtime in the body fails
    let foreign = node(
        &srv,
        owner.auth(),
        json!({"kind": "job", "data": {"runtime": "elsewhere"}}),
    );
    let (status, body) = put(
        &srv,
        &id(&foreign),
        editor.auth(),
        &json!({"data": {"runtime": lab}}),
    );
    assert_detail(status, &body, 401, DENIED);
    let (status, body) = patch(
        &srv,
        &id(&foreign),
        editor.auth(),
        &json!({"data": {"runtime": lab}}),
    );
    assert_detail(status, &body, 401, DENIED);
    assert_untouched(&srv, &foreign, 1);
    // moving a node away from the runtime works once, then the right is gone
    let mine = node(
        &srv,
        owner.auth(),
        json!({"kind": "job", "data": {"runtime": lab}}),
    );
    let (status, got) = patch(
        &srv,
        &id(&mine),
        editor.auth(),
        &json!({"data": {"runtime": "elsewhere"}}),
    );
    assert_eq!(status, 200, "{got}");
    assert_cannot_edit(&srv, editor.auth(), &got);
}

#[test]
fn group_membership_is_evaluated_at_request_time() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let team = srv.make_group();
    let team_name = team["name"].as_str().unwrap();
    let unrelated = srv.make_group();
    let member = srv.make_user(&[team_name]);
    let n = node(&srv, owner.auth(), json!({"user_groups": [team_name]}));
    let plain = node(&srv, owner.auth(), json!({}));
    assert_can_edit(&srv, member.auth(), &n);
    assert_cannot_edit(&srv, member.auth(), &plain);
    set_groups(&srv, &member, &["node:edit:any"]);
    assert_can_edit(&srv, member.auth(), &n);
    assert_can_edit(&srv, member.auth(), &plain);
    set_groups(&srv, &member, &[unrelated["name"].as_str().unwrap()]);
    assert_cannot_edit(&srv, member.auth(), &n);
    assert_cannot_edit(&srv, member.auth(), &plain);
    set_groups(&srv, &member, &[team_name]);
    assert_can_edit(&srv, member.auth(), &n);
    // promotion to superuser counts immediately too
    let (status, body) = srv.patch_json(
        &format!("/user/{}", member.id),
        srv.admin(),
        &json!({"is_superuser": true}),
    );
    assert_eq!(status, 200, "{body}");
    assert_can_edit(&srv, member.auth(), &plain);
}

#[test]
fn deactivated_users_get_401_everywhere() {
    let srv = TestServer::start();
    let user = srv.make_user(&["node:edit:any"]);
    let n = node(&srv, user.auth(), json!({}));
    let (status, body) = srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"is_active": false}),
    );
    assert_eq!(status, 200, "{body}");
    let node_id = id(&n);
    let (status, body) = put(&srv, &node_id, user.auth(), &json!({"result": "pass"}));
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = patch(&srv, &node_id, user.auth(), &json!({"result": "pass"}));
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = put_tree(
        &srv,
        &node_id,
        user.auth(),
        &json!({"node": {}, "child_nodes": []}),
    );
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = batch(&srv, user.auth(), &[&node_id], "true");
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = srv.post_json("/node", user.auth(), &json!({"name": "n", "path": []}));
    assert_detail(status, &body, 401, "Unauthorized");
    assert_untouched(&srv, &n, 1);
    // reactivated: the same token works again
    let (status, body) = srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"is_active": true}),
    );
    assert_eq!(status, 200, "{body}");
    assert_can_edit(&srv, user.auth(), &n);
}

// -- GET /nodes/fast --------------------------------------------------------------------

#[test]
fn fast_is_a_plain_list_without_default_limit() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("fast");
    let mut ids = Vec::new();
    for i in 0..57 {
        let n = node(
            &srv,
            user.auth(),
            json!({"name": format!("f{i:02}"), "group": group, "data": {"i": i}}),
        );
        ids.push(id(&n));
    }
    let (status, list) = srv.get(&format!("/nodes/fast?group={group}"), None);
    assert_eq!(status, 200, "{list}");
    let items = list.as_array().expect("a plain JSON list");
    assert_eq!(items.len(), 57, "no default limit");
    let got: Vec<String> = items.iter().map(id).collect();
    assert_eq!(got, ids, "id order");
    for item in [&items[0], &items[56]] {
        assert_eq!(keys(item), NODE_KEYS);
        assert_eq!(item, &read(&srv, &id(item)));
    }
    let (_, page) = srv.get(&format!("/nodes?group={group}"), None);
    assert_eq!(assert_page(&page, 50, 0).len(), 50);
    assert_eq!(page["total"], 57);
    for (query, want) in [
        ("&limit=3", &ids[..3]),
        ("&offset=55", &ids[55..]),
        ("&limit=5&offset=54", &ids[54..]),
        ("&limit=2&offset=10", &ids[10..12]),
        ("&offset=57", &ids[57..]),
        ("&offset=1000", &ids[57..]),
        ("&limit=1000000", &ids[..]),
        ("&data.i__gte=50&limit=2&offset=1", &ids[51..53]),
    ] {
        let (status, list) = srv.get(&format!("/nodes/fast?group={group}{query}"), None);
        assert_eq!(status, 200, "{query}: {list}");
        let got: Vec<String> = list.as_array().unwrap().iter().map(id).collect();
        assert_eq!(got, want, "{query}");
    }
}

#[test]
fn fast_bad_limit_or_offset_is_400() {
    let srv = TestServer::start();
    for query in [
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=",
        "limit=1e3",
        "offset=x",
        "offset=-2",
        "offset=0x10",
    ] {
        let (status, body) = srv.get(&format!("/nodes/fast?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["detail"].is_string(), "{query}: {body}");
    }
    // filters are still validated like /nodes
    let (status, body) = srv.get("/nodes/fast?name__like=x", None);
    assert_detail(status, &body, 400, "Unsupported query operator: like");
}

// -- query language (7) -----------------------------------------------------------------

/// Six process nodes with varied data in a private group.
fn dataset(srv: &TestServer, user: &TestUser) -> (String, Vec<Value>) {
    let group = uniq("q");
    let specs = [
        (
            "a",
            json!(["checkout", "a"]),
            json!("pass"),
            json!({"n": 1, "s": "x", "tags": ["p", "q"], "items": [{"k": "v1"}, {"k": "v2"}],
                   "flag": true}),
        ),
        (
            "b",
            json!(["checkout", "b"]),
            json!("fail"),
            json!({"n": 2, "s": "3", "flag": false, "items": [{"k": "v1"}]}),
        ),
        (
            "c",
            json!(["other", "c"]),
            json!(null),
            json!({"n": 3, "s": "y", "tags": ["q"], "x__y__z": "v"}),
        ),
        (
            "d",
            json!(["other", "d"]),
            json!(null),
            json!({"n": 4.0, "s": 9, "tags": null}),
        ),
        ("e", json!(["e"]), json!("skip"), json!({})),
        (
            "f",
            json!(["checkout", "f", "x"]),
            json!("incomplete"),
            json!({"n": -5, "s": "", "flag": "true", "items": "none"}),
        ),
    ];
    let nodes = specs
        .into_iter()
        .map(|(name, path, result, data)| {
            srv.make_node(
                user.auth(),
                &json!({"name": name, "kind": "process", "path": path, "group": group,
                        "result": result, "data": data, "timeout": "2099-01-01T00:00:00"}),
            )
        })
        .collect();
    (group, nodes)
}

#[test]
fn query_equality_arrays_and_dotted_paths() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (g, _) = dataset(&srv, &user);
    let g = g.as_str();
    assert_names(&srv, g, &[], &["a", "b", "c", "d", "e", "f"]);
    assert_names(&srv, g, &[("name", "c")], &["c"]);
    assert_names(&srv, g, &[("result", "pass")], &["a"]);
    assert_names(
        &srv,
        g,
        &[("kind", "process"), ("state", "running")],
        &["a", "b", "c", "d", "e", "f"],
    );
    // equality on an array: contains
    assert_names(&srv, g, &[("path", "checkout")], &["a", "b", "f"]);
    assert_names(&srv, g, &[("path", "x")], &["f"]);
    assert_names(&srv, g, &[("data.tags", "q")], &["a", "c"]);
    // dotted path through an array of objects
    assert_names(&srv, g, &[("data.items.k", "v1")], &["a", "b"]);
    assert_names(&srv, g, &[("data.items.k", "v2")], &["a"]);
    assert_names(
        &srv,
        g,
        &[("data.items.k__ne", "v2")],
        &["b", "c", "d", "e", "f"],
    );
    // numeric steps index arrays
    assert_names(&srv, g, &[("path.0", "other")], &["c", "d"]);
    assert_names(&srv, g, &[("path.1", "a")], &["a"]);
    assert_names(&srv, g, &[("path.2", "x")], &["f"]);
    assert_names(&srv, g, &[("data.items.1.k", "v2")], &["a"]);
    assert_names(&srv, g, &[("data.items.0.k", "v2")], &[]);
    assert_names(&srv, g, &[("data.s", "3")], &["b"]);
    assert_names(&srv, g, &[("data.s", "")], &["f"]);
    // a key with more than one `__` is a literal field name
    assert_names(&srv, g, &[("data.x__y__z", "v")], &["c"]);
    // unknown fields
    assert_names(&srv, g, &[("no_such_field", "x")], &[]);
    assert_names(
        &srv,
        g,
        &[("no_such_field", "null")],
        &["a", "b", "c", "d", "e", "f"],
    );
    assert_names(
        &srv,
        g,
        &[("data.n.deeper", "null")],
        &["a", "b", "c", "d", "e", "f"],
    );
}

#[test]
fn query_null_and_booleans() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (g, _) = dataset(&srv, &user);
    let g = g.as_str();
    assert_names(&srv, g, &[("result", "null")], &["c", "d"]);
    // only lower-case `null` is null: "NULL" is a string (conformance
    // test_injection_values_are_data[NULL])
    assert_names(&srv, g, &[("result", "NULL")], &[]);
    assert_names(&srv, g, &[("data.tags", "null")], &["b", "d", "e", "f"]);
    assert_names(&srv, g, &[("data.flag", "true")], &["a"]);
    assert_names(&srv, g, &[("data.flag", "TRUE")], &["a"]);
    assert_names(&srv, g, &[("data.flag", "False")], &["b"]);
    assert_names(
        &srv,
        g,
        &[("processed_by_kcidb_bridge", "false")],
        &["a", "b", "c", "d", "e", "f"],
    );
    assert_names(&srv, g, &[("processed_by_kcidb_bridge", "true")], &[]);
    // operators never convert booleans: "true" stays a string
    assert_names(
        &srv,
        g,
        &[("data.flag__ne", "true")],
        &["a", "b", "c", "d", "e"],
    );
    assert_names(&srv, g, &[("data.flag__in", "true")], &["f"]);
    // but null is null with operators too (API.md 7, MongoDB semantics)
    assert_names(&srv, g, &[("result__ne", "null")], &["a", "b", "e", "f"]);
    assert_names(&srv, g, &[("group", "null")], &[]);
    assert_names(
        &srv,
        g,
        &[("holdoff", "null")],
        &["a", "b", "c", "d", "e", "f"],
    );
}

#[test]
fn query_ne_nin_in_and_int() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (g, _) = dataset(&srv, &user);
    let g = g.as_str();
    // __ne and __nin include nodes where the field is missing or null
    assert_names(
        &srv,
        g,
        &[("result__ne", "pass")],
        &["b", "c", "d", "e", "f"],
    );
    assert_names(&srv, g, &[("data.n__ne", "2")], &["a", "c", "d", "e", "f"]);
    assert_names(&srv, g, &[("data.s__ne", "x")], &["b", "c", "d", "e", "f"]);
    assert_names(&srv, g, &[("path__ne", "checkout")], &["c", "d", "e"]);
    assert_names(
        &srv,
        g,
        &[("result__nin", "pass,fail")],
        &["c", "d", "e", "f"],
    );
    assert_names(
        &srv,
        g,
        &[("data.tags__nin", "p")],
        &["b", "c", "d", "e", "f"],
    );
    assert_names(&srv, g, &[("name__in", "a,c,zz")], &["a", "c"]);
    assert_names(&srv, g, &[("name__nin", "a,c")], &["b", "d", "e", "f"]);
    assert_names(&srv, g, &[("path__in", "other,e")], &["c", "d", "e"]);
    assert_names(&srv, g, &[("result__in", "pass,skip")], &["a", "e"]);
    // list elements stay strings
    assert_names(&srv, g, &[("data.n__in", "1,2")], &[]);
    assert_names(&srv, g, &[("data.s__in", "3,9")], &["b"]);
    assert_names(
        &srv,
        g,
        &[("data.n__nin", "1,2")],
        &["a", "b", "c", "d", "e", "f"],
    );
    assert_names(&srv, g, &[("data.s__in", ",zz")], &["f"]);
    // __int compares as a number (ints and floats together)
    assert_names(&srv, g, &[("data.n__int", "3")], &["c"]);
    assert_names(&srv, g, &[("data.n__int", "4")], &["d"]);
    assert_names(&srv, g, &[("data.n__int", "-5")], &["f"]);
    assert_names(&srv, g, &[("data.s__int", "3")], &[]);
    assert_names(&srv, g, &[("data.s__int", "9")], &["d"]);
    assert_query_400(&srv, &[("data.n__int", "abc")], None);
    assert_query_400(&srv, &[("data.n__int", "1.5")], None);
    // a plain value is a string even when it looks like a number
    assert_names(&srv, g, &[("data.n", "1")], &[]);
}

#[test]
fn query_comparisons_use_type_brackets() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (g, _) = dataset(&srv, &user);
    let g = g.as_str();
    assert_names(&srv, g, &[("data.n__gt", "2")], &["c", "d"]);
    assert_names(&srv, g, &[("data.n__gte", "2")], &["b", "c", "d"]);
    assert_names(&srv, g, &[("data.n__lt", "2")], &["a", "f"]);
    assert_names(
        &srv,
        g,
        &[("data.n__lte", "004")],
        &["a", "b", "c", "d", "f"],
    );
    assert_names(
        &srv,
        g,
        &[("data.n__gt", "1"), ("data.n__lt", "4")],
        &["b", "c"],
    );
    // "-1" is not digits only: it stays a string and never meets a number
    assert_names(&srv, g, &[("data.n__gt", "-1")], &[]);
    // numbers with numbers only, strings with strings only
    assert_names(&srv, g, &[("data.s__gt", "5")], &["d"]);
    assert_names(&srv, g, &[("data.s__gt", "w")], &["a", "c"]);
    assert_names(&srv, g, &[("data.s__lt", "w")], &["b", "f"]);
    assert_names(&srv, g, &[("data.s__gte", "")], &["a", "b", "c", "f"]);
    // comparisons on arrays: any element
    assert_names(&srv, g, &[("data.tags__gt", "p")], &["a", "c"]);
    assert_names(&srv, g, &[("data.tags__lt", "q")], &["a"]);
    // top-level string columns against a number: never
    assert_names(&srv, g, &[("name__gt", "5")], &[]);
    assert_names(&srv, g, &[("name__gt", "c")], &["d", "e", "f"]);
    assert_names(&srv, g, &[("name__lte", "b")], &["a", "b"]);
    // a plain condition and operators on one field combine (AND)
    assert_names(&srv, g, &[("name", "b"), ("name__ne", "b")], &[]);
    assert_names(
        &srv,
        g,
        &[("name__in", "a,b,c"), ("name__ne", "a")],
        &["b", "c"],
    );
}

#[test]
fn query_regular_expressions() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (g, _) = dataset(&srv, &user);
    let g = g.as_str();
    assert_names(&srv, g, &[("name__re", "[bd]")], &["b", "d"]);
    assert_names(&srv, g, &[("name__re", "^c$")], &["c"]);
    assert_names(&srv, g, &[("name__re", "C")], &[]);
    assert_names(&srv, g, &[("name__re", "(?i)C")], &["c"]);
    assert_names(&srv, g, &[("path__re", "^oth")], &["c", "d"]);
    assert_names(&srv, g, &[("data.tags__re", "^p")], &["a"]);
    assert_names(&srv, g, &[("data.items.k__re", "2$")], &["a"]);
    // only strings match; digits are a pattern, not a number
    assert_names(&srv, g, &[("data.n__re", "1")], &[]);
    assert_names(&srv, g, &[("data.s__re", "3")], &["b"]);
    assert_names(&srv, g, &[("data.flag__re", "true")], &["f"]);
    assert_names(&srv, g, &[("result__re", "")], &["a", "b", "e", "f"]);
    for pattern in ["[", "(?=x)", "(?<name", "(a)\\1", "a{2,1}"] {
        assert_query_400(&srv, &[("name__re", pattern)], None);
        assert_query_400(&srv, &[("data.s__re", pattern)], None);
        assert_query_400(&srv, &[("data.arch__re", pattern)], None);
    }
}

#[test]
fn query_operator_and_key_errors() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (g, _) = dataset(&srv, &user);
    for (key, op) in [
        ("name__like", "like"),
        ("data.n__foo", "foo"),
        ("kind__", ""),
    ] {
        assert_query_400(
            &srv,
            &[(key, "x")],
            Some(&format!("Unsupported query operator: {op}")),
        );
    }
    // repeated keys: the last occurrence wins
    assert_eq!(names_raw(&srv, &format!("?group={g}&name=a&name=d")), ["d"]);
    assert_eq!(
        names_raw(&srv, &format!("?group={g}&name__in=a,b&name__in=c,e")),
        ["c", "e"]
    );
    assert_eq!(
        names_raw(&srv, &format!("?group=nope&name=a&group={g}")),
        ["a"]
    );
    // unusable field paths: 400 or no match, never 5xx
    for key in ["data..x", ".", "data.", ".data"] {
        for endpoint in ["/nodes", "/nodes/fast", "/count"] {
            let (status, body) = srv.get(&format!("{endpoint}{}", qs(&[(key, "1")])), None);
            assert!(
                status == 400 || status == 200,
                "{endpoint} {key}: {status} {body}"
            );
            if status == 200 {
                assert!(
                    body == json!(0) || body == json!([]) || body["total"] == 0,
                    "{body}"
                );
            }
        }
    }
}

#[test]
fn query_ids_and_parents() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (g, nodes) = dataset(&srv, &user);
    let by = |name: &str| id(nodes.iter().find(|n| n["name"] == name).unwrap());
    let child = node(
        &srv,
        user.auth(),
        json!({"name": "child", "group": g, "parent": by("a")}),
    );
    let g = g.as_str();
    assert_eq!(names(&srv, &[("id", &by("c"))]), ["c"]);
    assert_eq!(names(&srv, &[("id", &by("c").to_uppercase())]), ["c"]);
    assert_eq!(
        names(&srv, &[("id__in", &format!("{},{}", by("e"), by("a")))]),
        ["a", "e"]
    );
    assert_names(
        &srv,
        g,
        &[("id__nin", &format!("{},{}", by("a"), id(&child)))],
        &["b", "c", "d", "e", "f"],
    );
    assert_names(
        &srv,
        g,
        &[("id__ne", &by("b"))],
        &["a", "c", "d", "e", "f", "child"],
    );
    assert_eq!(names(&srv, &[("id", MISSING_ID)]), Vec::<String>::new());
    assert_names(
        &srv,
        g,
        &[("parent", "null")],
        &["a", "b", "c", "d", "e", "f"],
    );
    assert_names(&srv, g, &[("parent__ne", "null")], &["child"]);
    assert_eq!(names(&srv, &[("parent", &by("a"))]), ["child"]);
    assert_eq!(
        names(&srv, &[("parent", &by("a").to_uppercase())]),
        ["child"]
    );
    assert_eq!(
        names(&srv, &[("parent__in", &format!("{},{}", by("a"), by("b")))]),
        ["child"]
    );
    for (key, value) in [
        ("id", "xyz"),
        ("id__in", "0123456789abcdef01234567,xyz"),
        ("parent", "not-an-id"),
        ("parent__ne", "123"),
    ] {
        assert_query_400(&srv, &[(key, value)], None);
    }
}

#[test]
fn query_timestamps_with_offsets_and_dates() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("ts");
    for (name, created) in [
        ("old", "2023-06-01T10:00:00.000000"),
        ("mid", "2024-05-01T00:00:00.000000"),
        ("late", "2024-10-31T23:59:59.999000"),
    ] {
        srv.make_node(
            user.auth(),
            &json!({"name": name, "path": [], "group": group, "created": created,
                    "timeout": "2099-01-01T00:00:00"}),
        );
    }
    let g = group.as_str();
    assert_names(
        &srv,
        g,
        &[
            ("created__gt", "2024-02-26T13:21:55.301000"),
            ("created__lt", "2024-11-01"),
        ],
        &["mid", "late"],
    );
    assert_names(&srv, g, &[("created__lt", "2024-01-01")], &["old"]);
    assert_names(&srv, g, &[("created__gte", "2024-05-01")], &["mid", "late"]);
    assert_names(&srv, g, &[("created__gt", "2024-05-01")], &["late"]);
    assert_names(&srv, g, &[("created", "2024-05-01")], &["mid"]);
    assert_names(
        &srv,
        g,
        &[("created", "2024-05-01T02:00:00+02:00")],
        &["mid"],
    );
    assert_names(
        &srv,
        g,
        &[("created", "2024-04-30T19:00:00-05:00")],
        &["mid"],
    );
    assert_names(
        &srv,
        g,
        &[
            ("created__gte", "2024-05-01T02:00:00+02:00"),
            ("created__lt", "2024-05-01T00:00:00.001Z"),
        ],
        &["mid"],
    );
    assert_names(
        &srv,
        g,
        &[("created__lte", "2024-10-31T23:59:59.999Z")],
        &["old", "mid", "late"],
    );
    assert_names(
        &srv,
        g,
        &[("created__lt", "2024-10-31T23:59:59.999")],
        &["old", "mid"],
    );
    assert_names(
        &srv,
        g,
        &[("created__lt", "2024-11-01T00:59:59.999+01:00")],
        &["old", "mid"],
    );
    assert_names(&srv, g, &[("created__ne", "2024-05-01")], &["old", "late"]);
    assert_names(
        &srv,
        g,
        &[(
            "created__in",
            "2024-05-01T02:00:00+02:00,2023-06-01T10:00:00Z",
        )],
        &["old", "mid"],
    );
    assert_names(&srv, g, &[("created", "null")], &[]);
    assert_names(&srv, g, &[("holdoff", "null")], &["old", "mid", "late"]);
    assert_names(
        &srv,
        g,
        &[("timeout__gt", "2098-12-31")],
        &["old", "mid", "late"],
    );
    assert_names(&srv, g, &[("updated__lt", "2024-01-01")], &[]);
    for value in [
        "yesterday",
        "2024-13-01",
        "2024-02-30T00:00:00",
        "2024-01-01T25:00:00",
        "1700000000",
        "",
    ] {
        for key in [
            "created",
            "created__gt",
            "updated__lte",
            "timeout__ne",
            "holdoff",
        ] {
            assert_query_400(&srv, &[(key, value)], None);
        }
    }
}

#[test]
fn query_sees_updated_columns_after_put_patch_and_batch() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let parent = node(&srv, user.auth(), json!({"name": "parent"}));
    let n = node(
        &srv,
        user.auth(),
        json!({"name": "before", "group": "g-before", "kind": "process", "treeid": "t-before",
               "data": {"arch": "arm64", "kernel_revision": {"tree": "old"}}}),
    );
    let node_id = id(&n);
    let (status, got) = put(
        &srv,
        &node_id,
        user.auth(),
        &json!({"name": "after", "group": "g-after", "kind": "job", "treeid": "t-after",
                "parent": parent["id"], "state": "available", "result": "pass",
                "data": {"arch": "x86_64", "kernel_revision": with(&revision("new", "b", "c"), json!({}))}}),
    );
    assert_eq!(status, 200, "{got}");
    for (key, old, new) in [
        ("name", "before", "after"),
        ("group", "g-before", "g-after"),
        ("kind", "process", "job"),
        ("treeid", "t-before", "t-after"),
        ("state", "running", "available"),
        ("result", "null", "pass"),
        ("data.arch", "arm64", "x86_64"),
        ("data.kernel_revision.tree", "old", "new"),
    ] {
        assert_eq!(
            names(&srv, &[("id", &node_id), (key, old)]),
            Vec::<String>::new(),
            "{key}"
        );
        assert_eq!(
            names(&srv, &[("id", &node_id), (key, new)]),
            ["after"],
            "{key}"
        );
    }
    assert_eq!(names(&srv, &[("parent", &id(&parent))]), ["after"]);
    let stamp = got["updated"].as_str().unwrap().to_string();
    assert_eq!(
        names(&srv, &[("id", &node_id), ("updated", &stamp)]),
        ["after"]
    );
    let (status, got) = patch(
        &srv,
        &node_id,
        user.auth(),
        &json!({"state": "done", "result": "fail"}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        names(
            &srv,
            &[("id", &node_id), ("state", "done"), ("result", "fail")]
        ),
        ["after"]
    );
    let (status, _) = batch(&srv, user.auth(), &[&node_id], "true");
    assert_eq!(status, 200);
    assert_eq!(
        names(
            &srv,
            &[("id", &node_id), ("processed_by_kcidb_bridge", "true")]
        ),
        ["after"]
    );
    let stored = read(&srv, &node_id);
    assert_eq!(
        names(
            &srv,
            &[
                ("id", &node_id),
                ("updated", stored["updated"].as_str().unwrap())
            ]
        ),
        ["after"]
    );
}

#[test]
fn query_keys_and_values_are_data_not_sql() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (g, _) = dataset(&srv, &user);
    let g = g.as_str();
    let evil_values = [
        "x' OR '1'='1",
        "x\" OR \"1\"=\"1",
        "'; DROP TABLE node; --",
        "process' --",
        "a') OR 1=1 --",
        "$where",
        "%",
        "_",
        "*",
    ];
    for value in evil_values {
        for key in [
            "name",
            "kind",
            "group",
            "data.s",
            "data.arch",
            "data.kernel_revision.tree",
            "path",
        ] {
            assert_names(&srv, g, &[(key, value)], &[]);
        }
        for key in ["name__in", "data.arch__in", "name__gt"] {
            let pairs = [("group", g), (key, value)];
            let got = names(&srv, &pairs);
            assert!(got.len() <= 6, "{key}={value}: {got:?}");
        }
        assert_names(
            &srv,
            g,
            &[("name__ne", value)],
            &["a", "b", "c", "d", "e", "f"],
        );
        assert_names(&srv, g, &[("name__re", "x' OR '1'='1")], &[]);
    }
    for key in [
        "data.a'); DROP TABLE node;--",
        "data.a')) OR 1=1 OR json_extract(doc, '$.x",
        "name' OR '1'='1",
        "data.$where",
        "data.a\"]",
        "data.arch'); DELETE FROM node; --",
        "doc",
        "irregular",
        "grp",
        "seq",
    ] {
        assert_names(&srv, g, &[(key, "1")], &[]);
        assert_names(&srv, g, &[(key, "null")], &["a", "b", "c", "d", "e", "f"]);
        assert_names(
            &srv,
            g,
            &[(&format!("{key}__ne"), "1")],
            &["a", "b", "c", "d", "e", "f"],
        );
    }
    // the tables are still there and hold what they held
    let conn = srv.db_reader();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.iter().any(|t| t == "node"), "{tables:?}");
    assert!(tables.iter().any(|t| t == "event"), "{tables:?}");
    let count: i64 = conn
        .query_row("SELECT count(*) FROM node WHERE grp = ?1", [g], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(count, 6);
    assert_names(&srv, g, &[], &["a", "b", "c", "d", "e", "f"]);
}

// -- indexed data paths on regular and irregular rows ----------------------------------

/// The indexed `data` paths and, for each, an unindexed twin path holding
/// the same value (always matched by the generic matcher).
const INDEXED: [(&str, &str); 7] = [
    ("data.arch", "data.arch_twin"),
    ("data.defconfig", "data.defconfig_twin"),
    ("data.platform", "data.platform_twin"),
    ("data.runtime", "data.runtime_twin"),
    (
        "data.kernel_revision.tree",
        "data.kernel_revision_twin.tree",
    ),
    (
        "data.kernel_revision.branch",
        "data.kernel_revision_twin.branch",
    ),
    (
        "data.kernel_revision.commit",
        "data.kernel_revision_twin.commit",
    ),
];

/// Rows with scalars or nothing at the indexed paths (`r*`; regular, but
/// for r3 whose booleans make it irregular) and irregular ones (`i*`:
/// arrays on the way or at the end, objects at the end), each with twins
/// of its indexed values.
fn indexed_dataset(srv: &TestServer, user: &TestUser) -> String {
    let group = uniq("idx");
    let specs = [
        (
            "r1",
            "kbuild",
            json!({"arch": "x86_64", "defconfig": "defconfig", "platform": "qemu",
                   "runtime": "lava", "kernel_revision": revision("mainline", "master", "c1")}),
        ),
        (
            "r2",
            "test",
            json!({"arch": "arm64", "defconfig": "multi_v7_defconfig", "platform": "rpi4",
                   "runtime": "k8s", "kernel_revision": revision("next", "main", "c2")}),
        ),
        (
            "r3",
            "process",
            json!({"arch": 64, "defconfig": true, "platform": null, "runtime": 5,
                   "kernel_revision": {"tree": 7, "branch": false, "commit": null}}),
        ),
        ("r4", "process", json!({})),
        (
            "r5",
            "process",
            json!({"kernel_revision": "v6.8", "arch": "", "runtime": 4.5}),
        ),
        (
            "i1",
            "process",
            json!({"arch": ["x86_64", "arm64"], "defconfig": ["defconfig", "tinyconfig"],
                   "platform": ["qemu", "rpi4"], "runtime": ["lava"],
                   "kernel_revision": [{"tree": "mainline", "branch": "stable", "commit": "c3"}]}),
        ),
        (
            "i2",
            "process",
            json!({"arch": ["riscv"], "defconfig": [true, "allnoconfig"],
                   "kernel_revision": {"tree": ["mainline", "next"], "branch": ["master"],
                                       "commit": "c4"}}),
        ),
        (
            "i3",
            "process",
            json!({"arch": {"name": "x86_64"}, "platform": {"qemu": true},
                   "kernel_revision": [{"tree": "next"}, {"tree": "mainline", "commit": "c1"}]}),
        ),
        (
            "i4",
            "process",
            json!({"arch": [], "kernel_revision": [], "runtime": []}),
        ),
        (
            "i5",
            "process",
            json!({"arch": [5, 70], "runtime": [null, "lava"],
                   "kernel_revision": [{"branch": "master"}, "junk", ["nested"]]}),
        ),
        (
            "i6",
            "process",
            json!({"arch": [["x86_64"]], "kernel_revision": {"tree": [["mainline"]]}}),
        ),
    ];
    for (name, kind, mut data) in specs {
        let map = data.as_object_mut().unwrap();
        for key in [
            "arch",
            "defconfig",
            "platform",
            "runtime",
            "kernel_revision",
        ] {
            if let Some(value) = map.get(key).cloned() {
                map.insert(format!("{key}_twin"), value);
            }
        }
        srv.make_node(
            user.auth(),
            &json!({"name": name, "kind": kind, "path": [name], "group": group, "data": data,
                    "timeout": "2099-01-01T00:00:00"}),
        );
    }
    // precondition of the tests below: both kinds of rows are present
    let conn = srv.db_reader();
    let mut stmt = conn
        .prepare("SELECT name, irregular FROM node WHERE grp = ?1 ORDER BY id")
        .unwrap();
    let flags: Vec<(String, i64)> = stmt
        .query_map([&group], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (name, irregular) in flags {
        // r3 holds booleans at indexed paths, which the store keeps out of
        // the path columns: it is matched like an irregular row.
        let expected = name.starts_with('i') || name == "r3";
        assert_eq!(
            irregular,
            i64::from(expected),
            "{name} should be {}",
            if expected { "irregular" } else { "regular" }
        );
    }
    group
}

#[test]
fn indexed_paths_match_irregular_rows_with_array_semantics() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let g = indexed_dataset(&srv, &user);
    let g = g.as_str();
    let all = [
        "r1", "r2", "r3", "r4", "r5", "i1", "i2", "i3", "i4", "i5", "i6",
    ];
    let without = |drop: &[&str]| -> Vec<&str> {
        all.iter().copied().filter(|n| !drop.contains(n)).collect()
    };
    // data.arch
    assert_names(&srv, g, &[("data.arch", "x86_64")], &["r1", "i1"]);
    assert_names(&srv, g, &[("data.arch", "arm64")], &["r2", "i1"]);
    assert_names(&srv, g, &[("data.arch", "")], &["r5"]);
    assert_names(&srv, g, &[("data.arch", "null")], &["r4"]);
    assert_names(
        &srv,
        g,
        &[("data.arch__ne", "x86_64")],
        &without(&["r1", "i1"]),
    );
    assert_names(&srv, g, &[("data.arch__ne", "null")], &without(&["r4"]));
    assert_names(
        &srv,
        g,
        &[("data.arch__in", "x86_64,riscv")],
        &["r1", "i1", "i2"],
    );
    assert_names(
        &srv,
        g,
        &[("data.arch__nin", "x86_64,riscv")],
        &without(&["r1", "i1", "i2"]),
    );
    assert_names(
        &srv,
        g,
        &[("data.arch__re", "^(x86|arm)")],
        &["r1", "r2", "i1"],
    );
    assert_names(&srv, g, &[("data.arch__re", "6")], &["r1", "r2", "i1"]);
    assert_names(
        &srv,
        g,
        &[("data.arch__gt", "a")],
        &["r1", "r2", "i1", "i2"],
    );
    assert_names(&srv, g, &[("data.arch__lt", "b")], &["r2", "r5", "i1"]);
    assert_names(&srv, g, &[("data.arch__gt", "10")], &["r3", "i5"]);
    assert_names(&srv, g, &[("data.arch__lte", "5")], &["i5"]);
    assert_names(&srv, g, &[("data.arch__int", "64")], &["r3"]);
    assert_names(&srv, g, &[("data.arch__int", "70")], &["i5"]);
    assert_names(&srv, g, &[("data.arch", "64")], &[]);
    // `data.arch.0` of i6 is the array ["x86_64"], which contains the value
    assert_names(&srv, g, &[("data.arch.0", "x86_64")], &["i1", "i6"]);
    assert_names(&srv, g, &[("data.arch.name", "x86_64")], &["i3"]);
    // data.defconfig: booleans on regular and irregular rows
    assert_names(&srv, g, &[("data.defconfig", "true")], &["r3", "i2"]);
    assert_names(&srv, g, &[("data.defconfig", "false")], &[]);
    assert_names(&srv, g, &[("data.defconfig__ne", "true")], &all);
    assert_names(&srv, g, &[("data.defconfig", "defconfig")], &["r1", "i1"]);
    assert_names(
        &srv,
        g,
        &[("data.defconfig__ne", "defconfig")],
        &without(&["r1", "i1"]),
    );
    assert_names(
        &srv,
        g,
        &[("data.defconfig__re", "config$")],
        &["r1", "r2", "i1", "i2"],
    );
    // data.platform: null matches null and missing, not arrays or objects
    assert_names(
        &srv,
        g,
        &[("data.platform", "null")],
        &["r3", "r4", "r5", "i2", "i4", "i5", "i6"],
    );
    assert_names(&srv, g, &[("data.platform", "qemu")], &["r1", "i1"]);
    assert_names(
        &srv,
        g,
        &[("data.platform__in", "qemu,rpi4")],
        &["r1", "r2", "i1"],
    );
    assert_names(
        &srv,
        g,
        &[("data.platform__nin", "qemu")],
        &without(&["r1", "i1"]),
    );
    assert_names(&srv, g, &[("data.platform.qemu", "true")], &["i3"]);
    // data.runtime: numbers, null elements
    assert_names(&srv, g, &[("data.runtime", "lava")], &["r1", "i1", "i5"]);
    assert_names(
        &srv,
        g,
        &[("data.runtime", "null")],
        &["r4", "i2", "i3", "i5", "i6"],
    );
    assert_names(&srv, g, &[("data.runtime", "5")], &[]);
    assert_names(&srv, g, &[("data.runtime__int", "5")], &["r3"]);
    assert_names(&srv, g, &[("data.runtime__gt", "4")], &["r3", "r5"]);
    assert_names(&srv, g, &[("data.runtime__lt", "5")], &["r5"]);
    assert_names(
        &srv,
        g,
        &[("data.runtime__nin", "lava")],
        &without(&["r1", "i1", "i5"]),
    );
    assert_names(&srv, g, &[("data.runtime__re", "^la")], &["r1", "i1", "i5"]);
    // data.kernel_revision.*: through arrays of objects, arrays at the end
    let tree = "data.kernel_revision.tree";
    assert_names(&srv, g, &[(tree, "mainline")], &["r1", "i1", "i2", "i3"]);
    assert_names(&srv, g, &[(tree, "next")], &["r2", "i2", "i3"]);
    assert_names(
        &srv,
        g,
        &[(&format!("{tree}__ne"), "mainline")],
        &without(&["r1", "i1", "i2", "i3"]),
    );
    assert_names(
        &srv,
        g,
        &[(&format!("{tree}__in"), "next,stable")],
        &["r2", "i2", "i3"],
    );
    assert_names(
        &srv,
        g,
        &[(&format!("{tree}__nin"), "next")],
        &without(&["r2", "i2", "i3"]),
    );
    assert_names(
        &srv,
        g,
        &[(&format!("{tree}__re"), "^main")],
        &["r1", "i1", "i2", "i3"],
    );
    assert_names(
        &srv,
        g,
        &[(&format!("{tree}__lt"), "n")],
        &["r1", "i1", "i2", "i3"],
    );
    assert_names(&srv, g, &[(&format!("{tree}__int"), "7")], &["r3"]);
    assert_names(&srv, g, &[(&format!("{tree}__gte"), "7")], &["r3"]);
    assert_names(&srv, g, &[(&format!("{tree}__gt"), "7")], &[]);
    assert_names(
        &srv,
        g,
        &[("name__in", "r1,r2,r3,r4,r5,i1,i2,i3"), (tree, "null")],
        &["r4", "r5"],
    );
    assert_names(
        &srv,
        g,
        &[("data.kernel_revision.0.tree", "mainline")],
        &["i1"],
    );
    assert_names(
        &srv,
        g,
        &[("data.kernel_revision.1.tree", "mainline")],
        &["i3"],
    );
    let branch = "data.kernel_revision.branch";
    assert_names(&srv, g, &[(branch, "master")], &["r1", "i2", "i5"]);
    assert_names(&srv, g, &[(branch, "false")], &["r3"]);
    assert_names(
        &srv,
        g,
        &[(&format!("{branch}__ne"), "master")],
        &without(&["r1", "i2", "i5"]),
    );
    assert_names(
        &srv,
        g,
        &[(&format!("{branch}__in"), "stable,main")],
        &["r2", "i1"],
    );
    let commit = "data.kernel_revision.commit";
    assert_names(&srv, g, &[(commit, "c1")], &["r1", "i3"]);
    assert_names(
        &srv,
        g,
        &[(&format!("{commit}__ne"), "c1")],
        &without(&["r1", "i3"]),
    );
    assert_names(&srv, g, &[(&format!("{commit}__gte"), "c3")], &["i1", "i2"]);
    assert_names(
        &srv,
        g,
        &[("name__in", "r1,r2,r3,r4,r5,i1,i2"), (commit, "null")],
        &["r3", "r4", "r5"],
    );
    // combined with column conditions
    assert_names(
        &srv,
        g,
        &[("kind", "process"), ("data.arch", "x86_64")],
        &["i1"],
    );
    assert_names(&srv, g, &[("kind", "kbuild"), (tree, "mainline")], &["r1"]);
}

#[test]
fn indexed_paths_agree_with_unindexed_twins_for_every_operator() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let g = indexed_dataset(&srv, &user);
    let values = [
        ("", "x86_64"),
        ("", "arm64"),
        ("", "mainline"),
        ("", "next"),
        ("", "master"),
        ("", "c1"),
        ("", "qemu"),
        ("", "lava"),
        ("", "defconfig"),
        ("", "null"),
        ("", "true"),
        ("", "false"),
        ("", ""),
        ("", "5"),
        ("__ne", "x86_64"),
        ("__ne", "mainline"),
        ("__ne", "master"),
        ("__ne", "5"),
        ("__ne", "null"),
        ("__lte", "null"),
        ("__gt", "null"),
        ("__ne", ""),
        ("__in", "x86_64,mainline,lava,master,c1,qemu"),
        ("__in", "riscv,next,stable,rpi4"),
        ("__in", ""),
        ("__nin", "x86_64,mainline,lava,master,c1,qemu"),
        ("__nin", "riscv,next,stable,rpi4"),
        ("__re", "^[a-m]"),
        ("__re", "4"),
        ("__re", "^$"),
        ("__gt", "a"),
        ("__gt", "m"),
        ("__lt", "n"),
        ("__lte", "c1"),
        ("__gte", "5"),
        ("__gt", "5"),
        ("__lt", "65"),
        ("__lte", "7"),
        ("__gt", "-1"),
        ("__int", "5"),
        ("__int", "7"),
        ("__int", "64"),
        ("__int", "70"),
        ("__int", "-3"),
    ];
    let mut checked = 0;
    for (indexed, twin) in INDEXED {
        for (op, value) in values {
            let a = names(&srv, &[("group", &g), (&format!("{indexed}{op}"), value)]);
            let b = names(&srv, &[("group", &g), (&format!("{twin}{op}"), value)]);
            assert_eq!(a, b, "{indexed}{op}={value} vs {twin}{op}={value}");
            checked += 1;
        }
    }
    assert_eq!(checked, INDEXED.len() * values.len());
}

#[test]
fn indexed_paths_follow_updates_between_regular_and_irregular() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = uniq("flip");
    let n = node(
        &srv,
        user.auth(),
        json!({"name": "flip", "group": group, "kind": "process",
               "data": {"arch": "arm64", "kernel_revision": {"tree": "next"}}}),
    );
    let node_id = id(&n);
    let g = group.as_str();
    let check = |arch: &[&str], tree: &[&str]| {
        // `arch` lists the arch values that must match, `tree` the trees
        for value in ["x86_64", "arm64", "riscv"] {
            let want: &[&str] = if arch.contains(&value) {
                &["flip"]
            } else {
                &[]
            };
            assert_names(&srv, g, &[("data.arch", value)], want);
            let not: &[&str] = if arch.contains(&value) {
                &[]
            } else {
                &["flip"]
            };
            assert_names(&srv, g, &[("data.arch__ne", value)], not);
        }
        for value in ["mainline", "next"] {
            let want: &[&str] = if tree.contains(&value) {
                &["flip"]
            } else {
                &[]
            };
            assert_names(&srv, g, &[("data.kernel_revision.tree", value)], want);
        }
    };
    check(&["arm64"], &["next"]);
    // PATCH makes it irregular
    let (status, got) = patch(
        &srv,
        &node_id,
        user.auth(),
        &json!({"data": {"arch": ["x86_64", "riscv"],
                         "kernel_revision": [{"tree": "mainline"}, {"tree": "next"}]}}),
    );
    assert_eq!(status, 200, "{got}");
    check(&["x86_64", "riscv"], &["mainline", "next"]);
    // PUT makes it regular again
    let (status, got) = put(
        &srv,
        &node_id,
        user.auth(),
        &json!({"data": {"arch": "riscv", "kernel_revision": {"tree": "mainline"}}}),
    );
    assert_eq!(status, 200, "{got}");
    check(&["riscv"], &["mainline"]);
    // a hierarchy update of the root, and a child created irregular
    let (status, got) = put_tree(
        &srv,
        &node_id,
        user.auth(),
        &json!({"node": {"data": {"arch": {"x86_64": 1}}},
                "child_nodes": [{"node": {"name": "kid", "path": [], "kind": "process",
                                          "group": "kid-group",
                                          "data": {"arch": ["x86_64"]}},
                                 "child_nodes": []}]}),
    );
    assert_eq!(status, 200, "{got}");
    check(&[], &[]);
    assert_names(&srv, "kid-group", &[("data.arch", "x86_64")], &["kid"]);
    assert_names(&srv, "kid-group", &[("data.arch__ne", "x86_64")], &[]);
    assert_names(
        &srv,
        "kid-group",
        &[("data.arch__in", "arm64,x86_64")],
        &["kid"],
    );
    assert_names(&srv, "kid-group", &[("data.arch__re", "^x86")], &["kid"]);
    assert_names(&srv, "kid-group", &[("data.arch__gt", "w")], &["kid"]);
}

// -- node events (9.3) ------------------------------------------------------------------

#[test]
fn create_writes_one_created_event() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let n = srv.make_node(
        user.auth(),
        &json!({"name": "ev", "kind": "checkout", "path": ["checkout"], "group": "g",
                "state": "available", "result": "pass",
                "data": {"z": 1, "kernel_revision": with(&revision("t", "b", "c"),
                         json!({"version": {"version": "6", "patchlevel": "1"}})), "a": 2}}),
    );
    let events = srv.node_events(&id(&n));
    assert_eq!(events.len(), 1);
    assert_node_event(&events[0], &n, false, None);
    assert_eq!(
        events[0].data["data"]["kernel_revision"]["version"],
        json!({"version": 6, "patchlevel": 1}),
        "the event carries the stored (converted) data"
    );
    assert_eq!(keys(&events[0].data["data"]), ["z", "kernel_revision", "a"]);
    // a failed create writes nothing
    let total = srv.event_total();
    let (status, _) = srv.post_json(
        "/node",
        user.auth(),
        &json!({"name": "x", "path": [], "kind": "bogus"}),
    );
    assert_eq!(status, 400);
    let (status, _) = srv.post_json(
        "/node",
        user.auth(),
        &json!({"name": "x", "path": [], "parent": MISSING_ID}),
    );
    assert_eq!(status, 404);
    assert_eq!(srv.event_total(), total);
}

#[test]
fn put_and_patch_write_one_updated_event_each() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let n = node(
        &srv,
        user.auth(),
        json!({"kind": "process", "data": {"v": 1}}),
    );
    let node_id = id(&n);
    let (status, after_put) = put(
        &srv,
        &node_id,
        user.auth(),
        &json!({"state": "available", "result": "fail", "name": "put", "data": {"v": 2}}),
    );
    assert_eq!(status, 200, "{after_put}");
    let (status, after_patch) = patch(
        &srv,
        &node_id,
        user.auth(),
        &json!({"state": "done", "result": "pass", "data": {"v": 3}}),
    );
    assert_eq!(status, 200, "{after_patch}");
    let events = srv.node_events(&node_id);
    assert_eq!(events.len(), 3);
    assert_node_event(&events[0], &n, false, None);
    assert_node_event(
        &events[1],
        &after_put,
        false,
        Some(("running", Value::Null)),
    );
    assert_node_event(
        &events[2],
        &after_patch,
        false,
        Some(("available", json!("fail"))),
    );
    assert!(events[0].seq < events[1].seq && events[1].seq < events[2].seq);
    let ids: Vec<&Value> = events.iter().map(|e| &e.envelope["id"]).collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2],
        "each event has its own id"
    );
    // an update that changes nothing still writes an event
    let (status, same) = patch(&srv, &node_id, user.auth(), &json!({"result": "pass"}));
    assert_eq!(status, 200);
    let events = srv.node_events(&node_id);
    assert_eq!(events.len(), 4);
    assert_node_event(&events[3], &same, false, Some(("done", json!("pass"))));
}

#[test]
fn event_owner_is_the_node_owner_whoever_edits() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let editor = srv.make_user(&["node:edit:any"]);
    let n = node(&srv, owner.auth(), json!({}));
    let (status, got) = patch(&srv, &id(&n), editor.auth(), &json!({"result": "pass"}));
    assert_eq!(status, 200);
    let (status, got2) = put(&srv, &id(&n), srv.admin(), &json!({"result": "fail"}));
    assert_eq!(status, 200);
    let events = srv.node_events(&id(&n));
    assert_eq!(events.len(), 3);
    assert_node_event(&events[1], &got, false, Some(("running", Value::Null)));
    assert_node_event(&events[2], &got2, false, Some(("running", json!("pass"))));
    for e in &events {
        assert_eq!(e.owner.as_deref(), Some(owner.username.as_str()));
        assert_eq!(e.envelope["owner"], owner.username.as_str());
    }
}

#[test]
fn failed_updates_write_no_event() {
    let srv = TestServer::start();
    let owner = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let n = node(
        &srv,
        owner.auth(),
        json!({"state": "done", "kind": "checkout", "data": {}}),
    );
    let node_id = id(&n);
    let total = srv.event_total();
    let attempts: Vec<(&str, Option<&str>, Value, u16)> = vec![
        ("PUT", owner.auth(), json!({"state": "running"}), 400),
        ("PATCH", owner.auth(), json!({"state": "available"}), 400),
        ("PUT", owner.auth(), json!({"kind": "bogus"}), 400),
        ("PUT", owner.auth(), json!({"parent": node_id}), 400),
        (
            "PATCH",
            owner.auth(),
            json!({"data": {"kernel_revision": {}}}),
            400,
        ),
        ("PATCH", owner.auth(), json!({"name": "x"}), 400),
        ("PUT", owner.auth(), json!({"state": "bogus"}), 422),
        (
            "PATCH",
            owner.auth(),
            json!({"artifacts": {"a": "ftp://x"}}),
            422,
        ),
        ("PUT", other.auth(), json!({"result": "pass"}), 401),
        ("PATCH", other.auth(), json!({"result": "pass"}), 401),
        ("PUT", None, json!({"result": "pass"}), 401),
    ];
    for (method, token, body, want) in attempts {
        let reply = srv.request(
            method,
            &format!("/node/{node_id}"),
            token,
            Body::Json(&body),
        );
        assert_eq!(reply.status, want, "{method} {body}: {}", reply.text);
    }
    let reply = srv.request(
        "PUT",
        &format!("/nodes/{node_id}"),
        owner.auth(),
        Body::Json(&json!({"node": {}, "child_nodes": [leaf("x", json!({"kind": "bogus"}))]})),
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_untouched(&srv, &n, 1);
    assert_eq!(srv.event_total(), total);
}

#[test]
fn batch_and_noevent_hierarchy_siblings_write_no_events() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let a = node(&srv, user.auth(), json!({}));
    let b = node(&srv, user.auth(), json!({}));
    let total = srv.event_total();
    let (status, n) = batch(&srv, user.auth(), &[&id(&a), &id(&b)], "true");
    assert_eq!((status, n), (200, json!(2)));
    assert_eq!(srv.event_total(), total);
    // a hierarchy writes exactly one event, whatever its size
    let children: Vec<Value> = (0..5).map(|i| leaf(&format!("c{i}"), json!({}))).collect();
    let (status, nodes) = put_tree(
        &srv,
        &id(&a),
        user.auth(),
        &json!({"node": {"result": "pass"}, "child_nodes": children}),
    );
    assert_eq!(status, 200, "{nodes}");
    assert_eq!(nodes.as_array().unwrap().len(), 6);
    assert_eq!(srv.event_total(), total + 1);
    let last = srv.node_events(&id(&a)).pop().unwrap();
    assert_node_event(&last, &nodes[0], true, Some(("running", Value::Null)));
}
