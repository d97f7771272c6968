//! Telemetry (API.md 12) over HTTP: posting batches (all or nothing, what
//! the pipeline sends, hostile bodies), the paginated list with the query
//! language, stats, anomalies, retention, restarts and the schema
//! migration that adds the table.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use chrono::{Duration, NaiveDateTime, Utc};
use common::*;
use kci_lite::store::migrate::{self, MIGRATIONS};
use serde_json::{Value, json};

const TELEMETRY_KEYS: [&str; 19] = [
    "id",
    "ts",
    "kind",
    "runtime",
    "device_type",
    "device_id",
    "job_name",
    "test_name",
    "job_id",
    "node_id",
    "tree",
    "branch",
    "arch",
    "result",
    "is_infra_error",
    "error_type",
    "error_msg",
    "retry",
    "extra",
];

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn iso(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// `at` as the API shows it: cut to milliseconds, six digits.
fn shown(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f000").to_string()
}

#[track_caller]
fn post(srv: &TestServer, token: Option<&str>, events: &Value) -> Value {
    let (status, body) = srv.post_json("/telemetry", token, events);
    assert_eq!(status, 200, "{body}");
    body
}

#[track_caller]
fn page(srv: &TestServer, params: &[(&str, &str)]) -> Value {
    let path = format!("/telemetry{}", qs(params));
    let (status, body) = srv.get(&path, None);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[track_caller]
fn total(srv: &TestServer, params: &[(&str, &str)]) -> u64 {
    page(srv, params)["total"].as_u64().unwrap()
}

fn stored(srv: &TestServer) -> i64 {
    srv.db_reader()
        .query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))
        .unwrap()
}

#[track_caller]
fn get_ok(srv: &TestServer, path: &str, params: &[(&str, &str)]) -> Value {
    let path = format!("{path}{}", qs(params));
    let (status, body) = srv.get(&path, None);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[test]
fn a_batch_is_stored_and_listed_in_id_order_with_defaults() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let rt = uniq("rt");
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"kind": format!("k{i}"), "runtime": rt, "surprise": i}))
        .collect();
    assert_eq!(
        post(&srv, user.auth(), &json!(events)),
        json!({"inserted": 5})
    );
    let body = page(&srv, &[("runtime", &rt)]);
    let items = assert_page(&body, 50, 0);
    assert_eq!(body["total"], 5);
    let kinds: Vec<&str> = items.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["k0", "k1", "k2", "k3", "k4"]);
    let ids: Vec<&str> = items.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ascending id order");
    for item in &items {
        assert_eq!(keys(item), TELEMETRY_KEYS);
        assert!(is_object_id(item["id"].as_str().unwrap()));
        assert_eq!(item["is_infra_error"], false);
        assert_eq!(item["retry"], 0);
        assert_eq!(item["extra"], json!({}));
        assert_eq!(item["device_type"], Value::Null);
        let ts =
            NaiveDateTime::parse_from_str(item["ts"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.6f")
                .unwrap();
        assert!((now() - ts).num_seconds().abs() < 60, "{ts}");
    }
    // pages
    let second = page(&srv, &[("runtime", &rt), ("limit", "2"), ("offset", "2")]);
    let items = assert_page(&second, 2, 2);
    assert_eq!(items[0]["kind"], "k2");
    assert_eq!(second["total"], 5);
}

#[test]
fn what_the_pipeline_posts_is_accepted_unchanged() {
    // One flush of kernelci-pipeline's TelemetryEmitter (scheduler, monitor
    // and lava-callback events): aware timestamps with microseconds,
    // explicit nulls, nested extras.
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let rt = uniq("lava");
    let ts = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
    let mut events = Vec::new();
    for i in 0..50 {
        events.push(match i % 5 {
            0 => json!({"kind": "job_skip", "ts": ts, "runtime": rt, "device_type": "rk3588",
                        "job_name": "baseline-arm64", "error_type": "queue_depth",
                        "error_msg": "device_type=rk3588 queue_depth=9 >= max=8",
                        "extra": {"queue_depth": 9, "max_depth": 8, "per_device_depth": 2,
                                  "online_devices": 4, "priority_factor": 1.25}}),
            1 => json!({"kind": "job_submission", "ts": ts, "runtime": rt,
                        "device_type": "rk3588", "job_name": "baseline-arm64",
                        "node_id": "65a1b2c3d4e5f60718293a4b", "tree": "mainline",
                        "branch": "master", "arch": null, "retry": 0}),
            2 => json!({"kind": "job_result", "ts": ts, "runtime": rt, "result": "incomplete",
                        "is_infra_error": true, "error_type": "Infrastructure",
                        "error_msg": "boot failed", "device_type": "rk3588",
                        "device_id": "rk3588-03", "job_name": "baseline-arm64",
                        "job_id": "1234567", "node_id": null, "tree": null,
                        "branch": null, "arch": "arm64"}),
            3 => json!({"kind": "test_result", "ts": ts, "runtime": rt,
                        "test_name": "baseline.login", "result": "pass",
                        "extra": {"suite": "baseline"}, "device_type": "rk3588",
                        "device_id": null, "job_name": "baseline-arm64", "job_id": null,
                        "node_id": "65a1b2c3d4e5f60718293a4c", "tree": "mainline",
                        "branch": "master", "arch": "arm64"}),
            _ => json!({"kind": "build_result", "ts": ts, "runtime": "k8s-gke-eu-west4",
                        "device_type": "", "job_name": "kbuild-gcc-12-x86",
                        "node_id": "65a1b2c3d4e5f60718293a4d", "tree": "mainline",
                        "branch": "master", "arch": "x86_64", "result": null,
                        "error_type": "node_timeout", "error_msg": "Node timed-out"}),
        });
    }
    assert_eq!(
        post(&srv, user.auth(), &json!(events)),
        json!({"inserted": 50})
    );
    assert_eq!(total(&srv, &[("runtime", &rt)]), 40);
    let results = page(&srv, &[("runtime", &rt), ("kind", "job_result")]);
    let item = &results["items"][0];
    assert_eq!(
        item["ts"],
        format!("{}000", &ts[..23]),
        "cut to milliseconds, naive UTC"
    );
    assert_eq!(
        (item["is_infra_error"].clone(), item["job_id"].clone()),
        (json!(true), json!("1234567"))
    );
}

#[test]
fn posting_needs_a_user_and_checks_json_syntax_first() {
    let srv = TestServer::start();
    let one = json!([{"kind": "k", "runtime": uniq("rt")}]);
    let (status, body) = srv.post_json("/telemetry", None, &one);
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = srv.post_json("/telemetry", Some("garbage"), &one);
    assert_detail(status, &body, 401, "Unauthorized");
    // broken JSON is a 422 before the token is looked at
    let reply = srv.request(
        "POST",
        "/telemetry",
        None,
        Body::Raw(b"[{\"kind\": ", Some("application/json")),
    );
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("json_invalid"),
    );
    assert_eq!(stored(&srv), 0);
}

#[test]
fn a_bad_batch_changes_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let good = json!({"kind": "ok", "runtime": "r"});
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!([]), 400, "Events list cannot be empty"),
        (
            json!([good, {"kind": "k"}]),
            400,
            "Invalid telemetry event: events[1].runtime: Field required",
        ),
        (
            json!([good, {"kind": 5, "runtime": "r"}]),
            400,
            "Invalid telemetry event: events[1].kind: Input should be a valid string",
        ),
        (
            json!([good, good, {"kind": "k", "runtime": "r", "ts": "yesterday"}]),
            400,
            "Invalid telemetry event: events[2].ts: Input should be a valid datetime",
        ),
        (
            json!([good, {"kind": "k", "runtime": "r", "retry": "many", "is_infra_error": "perhaps"}]),
            400,
            "Invalid telemetry event: events[1].is_infra_error: Input should be a valid boolean; retry: Input should be a valid integer, unable to parse string as an integer",
        ),
    ];
    for (body, status, detail) in cases {
        let (got, answer) = srv.post_json("/telemetry", user.auth(), &body);
        assert_detail(got, &answer, status, detail);
    }
    for body in [
        good.clone(),
        json!("x"),
        json!(5),
        json!(null),
        json!({"events": [good]}),
    ] {
        let (status, answer) = srv.post_json("/telemetry", user.auth(), &body);
        assert_422(status, &answer, &[json!("body")], Some("list_type"));
    }
    let (status, answer) = srv.post_json("/telemetry", user.auth(), &json!([good, 7, [good]]));
    assert_422(
        status,
        &answer,
        &[json!("body"), json!(1)],
        Some("dict_type"),
    );
    assert_422(
        status,
        &answer,
        &[json!("body"), json!(2)],
        Some("dict_type"),
    );
    // no body, and a form instead of JSON
    let reply = srv.request("POST", "/telemetry", user.auth(), Body::None);
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("missing"),
    );
    let reply = srv.request(
        "POST",
        "/telemetry",
        user.auth(),
        Body::Form(&[("kind", "k")]),
    );
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(stored(&srv), 0);
}

#[test]
fn a_batch_over_the_limit_is_refused_whole() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let rt = uniq("rt");
    let event = json!({"kind": "k", "runtime": rt});
    let at_limit = Value::Array(vec![event.clone(); 10_000]);
    assert_eq!(
        post(&srv, user.auth(), &at_limit),
        json!({"inserted": 10_000})
    );
    let over = Value::Array(vec![event; 10_001]);
    let (status, body) = srv.post_json("/telemetry", user.auth(), &over);
    assert_detail(
        status,
        &body,
        400,
        "Too many telemetry events: 10001 (at most 10000 per request)",
    );
    assert_eq!(stored(&srv), 10_000);
    // big pages are streamed with the same envelope
    let big = page(
        &srv,
        &[("runtime", &rt), ("limit", "600"), ("offset", "9500")],
    );
    let items = assert_page(&big, 600, 9500);
    assert_eq!((items.len(), big["total"].as_u64()), (500, Some(10_000)));
    assert_eq!(keys(&items[0]), TELEMETRY_KEYS);
}

#[test]
fn list_filters() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let rt = uniq("rt");
    post(
        &srv,
        user.auth(),
        &json!([
            {"kind": "job_result", "runtime": rt, "result": "pass", "ts": "2031-01-01T00:00:00",
             "extra": {"suite": "baseline"}},
            {"kind": "job_result", "runtime": rt, "result": "fail", "is_infra_error": true,
             "retry": 2, "ts": "2031-01-02T00:00:00"},
            {"kind": "test_result", "runtime": rt, "result": "fail", "device_type": "qemu",
             "ts": "2031-01-03T00:00:00", "extra": {"suite": "kselftest"}},
        ]),
    );
    let n = |extra: &[(&str, &str)]| {
        let mut params = vec![("runtime", rt.as_str())];
        params.extend_from_slice(extra);
        total(&srv, &params)
    };
    assert_eq!(n(&[]), 3);
    assert_eq!(n(&[("kind", "job_result")]), 2);
    assert_eq!(n(&[("result", "fail")]), 2);
    assert_eq!(n(&[("is_infra_error", "true")]), 1);
    assert_eq!(n(&[("is_infra_error", "FALSE")]), 2);
    assert_eq!(n(&[("device_type", "null")]), 2);
    assert_eq!(n(&[("device_type__ne", "qemu")]), 2);
    assert_eq!(n(&[("kind__in", "test_result,job_submission")]), 1);
    assert_eq!(n(&[("retry__gte", "1")]), 1);
    assert_eq!(n(&[("extra.suite", "kselftest")]), 1);
    assert_eq!(n(&[("extra.suite__re", "^base")]), 1);
    assert_eq!(n(&[("ts__lt", "2031-01-02")]), 1);
    assert_eq!(
        n(&[("since", "2031-01-02T00:00:00")]),
        2,
        "since is inclusive"
    );
    assert_eq!(
        n(&[("until", "2031-01-02T00:00:00")]),
        2,
        "until is inclusive"
    );
    assert_eq!(
        n(&[
            ("since", "2031-01-01T12:00:00"),
            ("until", "2031-01-02T12:00:00")
        ]),
        1
    );
    assert_eq!(
        n(&[("since", "2031-01-02T01:00:00+01:00")]),
        2,
        "offsets are converted"
    );
    assert_eq!(n(&[("since", "")]), 3, "an empty since is no bound");
    let first = page(&srv, &[("runtime", &rt)])["items"][0]["id"].clone();
    assert_eq!(n(&[("id", first.as_str().unwrap())]), 1);
    // 400s and 422s
    for (params, detail) in [
        (
            vec![("is_infra_error", "maybe")],
            "Bad is_infra_error value, use 'true' or 'false'",
        ),
        (
            vec![("is_infra_error", "")],
            "Bad is_infra_error value, use 'true' or 'false'",
        ),
        (
            vec![("since", "yesterday")],
            "Invalid 'since' parameter, must be an ISO 8601 datetime",
        ),
        (
            vec![("until", "2031-13-01")],
            "Invalid 'until' parameter, must be an ISO 8601 datetime",
        ),
        (
            vec![("kind__like", "x")],
            "Unsupported query operator: like",
        ),
        (
            vec![("retry", "many")],
            "Invalid integer value for 'retry': 'many'",
        ),
    ] {
        let (status, body) = srv.get(&format!("/telemetry{}", qs(&params)), None);
        assert_detail(status, &body, 400, detail);
    }
    let (status, body) = srv.get("/telemetry?ts=soon", None);
    assert_eq!(status, 400, "{body}");
    let (status, body) = srv.get("/telemetry?id=nope", None);
    assert_eq!(status, 400, "{body}");
    for bad in ["limit=0", "limit=x", "offset=-1"] {
        let (status, body) = srv.get(&format!("/telemetry?{bad}"), None);
        assert_eq!(status, 422, "{bad}: {body}");
    }
}

#[test]
fn query_values_are_only_data() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    post(&srv, user.auth(), &json!([{"kind": "k", "runtime": "r"}]));
    for value in [
        "'; DROP TABLE telemetry; --",
        "\" OR 1=1 --",
        "r' OR '1'='1",
        "%",
        "_",
        "\u{0}",
    ] {
        assert_eq!(total(&srv, &[("runtime", value)]), 0, "{value}");
        let (status, body) = srv.get(&format!("/telemetry{}", qs(&[(value, "1")])), None);
        assert!(status == 200 || status == 400, "{value}: {status} {body}");
        let stats = get_ok(
            &srv,
            "/telemetry/stats",
            &[("group_by", "runtime"), ("runtime", value)],
        );
        assert_eq!(stats, json!([]));
    }
    let (status, body) = srv.get(
        "/telemetry/stats?group_by=runtime%3B%20DROP%20TABLE%20telemetry",
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(stored(&srv), 1);
}

#[test]
fn stats_rows_keys_and_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let rt = uniq("rt");
    let mut events = Vec::new();
    for (device, result, infra) in [
        ("rk3588", "pass", false),
        ("rk3588", "fail", true),
        ("rk3588", "incomplete", false),
        ("qemu", "pass", false),
        ("qemu", "skip", false),
        ("beagle", "fail", false),
        ("amd", "pass", false),
    ] {
        events.push(
            json!({"kind": "job_result", "runtime": rt, "device_type": device,
                           "result": result, "is_infra_error": infra}),
        );
    }
    events.push(json!({"kind": "job_result", "runtime": rt}));
    events.push(json!({"kind": "job_submission", "runtime": rt, "device_type": "qemu"}));
    post(&srv, user.auth(), &Value::Array(events));
    let rows = get_ok(
        &srv,
        "/telemetry/stats",
        &[
            ("group_by", "device_type"),
            ("lab", &rt),
            ("kind", "job_result"),
        ],
    );
    let c = |d: Value, t: u64, p: u64, f: u64, i: u64, s: u64, e: u64| json!({"device_type": d, "total": t, "pass": p, "fail": f, "incomplete": i, "skip": s, "infra_error": e});
    assert_eq!(
        rows,
        json!([
            c(json!("rk3588"), 3, 1, 1, 1, 0, 1),
            c(json!("qemu"), 2, 1, 0, 0, 1, 0),
            c(Value::Null, 1, 0, 0, 0, 0, 0),
            c(json!("amd"), 1, 1, 0, 0, 0, 0),
            c(json!("beagle"), 1, 0, 1, 0, 0, 0),
        ]),
        "total descending, then the group values ascending (null first)"
    );
    for row in rows.as_array().unwrap() {
        assert_eq!(
            keys(row),
            [
                "device_type",
                "total",
                "pass",
                "fail",
                "incomplete",
                "skip",
                "infra_error"
            ]
        );
    }
    // two fields, in the order given; lab carries the runtime
    let rows = get_ok(
        &srv,
        "/telemetry/stats",
        &[("group_by", "kind,lab"), ("runtime", &rt)],
    );
    assert_eq!(
        keys(&rows[0]),
        [
            "kind",
            "lab",
            "total",
            "pass",
            "fail",
            "incomplete",
            "skip",
            "infra_error"
        ]
    );
    assert_eq!(
        (
            rows[0]["kind"].clone(),
            rows[0]["lab"].clone(),
            rows[0]["total"].clone()
        ),
        (json!("job_result"), json!(rt), json!(8))
    );
    assert_eq!(rows[1]["kind"], "job_submission");
    // since/until and other filters
    let future = iso(now() + Duration::hours(1));
    assert_eq!(
        get_ok(
            &srv,
            "/telemetry/stats",
            &[
                ("group_by", "runtime"),
                ("runtime", &rt),
                ("since", &future)
            ]
        ),
        json!([])
    );
    assert_eq!(
        get_ok(
            &srv,
            "/telemetry/stats",
            &[
                ("group_by", "runtime"),
                ("runtime", &rt),
                ("until", &future)
            ]
        )[0]["total"],
        9
    );
    assert_eq!(
        get_ok(
            &srv,
            "/telemetry/stats",
            &[
                ("group_by", "runtime"),
                ("runtime", &rt),
                ("device_type", "qemu")
            ]
        )[0]["total"],
        3
    );
    // errors
    for (params, detail) in [
        (vec![], "'group_by' parameter is required"),
        (vec![("group_by", "")], "'group_by' parameter is required"),
        (
            vec![("group_by", "runtime"), ("lab", "a"), ("runtime", "b")],
            "'lab' and 'runtime' must match when both are provided",
        ),
        (
            vec![("group_by", "runtime"), ("since", "later")],
            "Invalid 'since' parameter, must be an ISO 8601 datetime",
        ),
    ] {
        let (status, body) = srv.get(&format!("/telemetry/stats{}", qs(&params)), None);
        assert_detail(status, &body, 400, detail);
    }
    let (status, body) = srv.get("/telemetry/stats?group_by=runtime,colour", None);
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid group_by fields: 'colour'"),
        "{body}"
    );
}

#[test]
fn stats_with_many_groups_are_complete() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let rt = uniq("rt");
    let events: Vec<Value> = (0..3000)
        .map(|i| {
            json!({"kind": "job_result", "runtime": rt, "device_id": format!("dev-{i:05}"),
                        "result": "pass"})
        })
        .collect();
    post(&srv, user.auth(), &Value::Array(events));
    let rows = get_ok(
        &srv,
        "/telemetry/stats",
        &[("group_by", "device_id"), ("runtime", &rt)],
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3000);
    assert_eq!(rows[0]["device_id"], "dev-00000");
    assert_eq!(rows[2999]["device_id"], "dev-02999");
}

#[test]
fn anomalies_find_failing_devices_and_frequent_errors() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let rt = uniq("rt");
    let at = now();
    let mut events: Vec<Value> = (0..4)
        .map(|i| {
            json!({"kind": "job_result", "runtime": rt, "device_type": "board",
                        "device_id": format!("board-{}", i % 2), "result": "incomplete",
                        "is_infra_error": true, "error_type": "Infrastructure",
                        "error_msg": format!("boot failed {i}"),
                        "ts": iso(at - Duration::minutes(10 - i))})
        })
        .collect();
    // a board that fails half of the time, a healthy one, an old failure
    for (device, result, minutes) in [
        ("flaky", "fail", 5),
        ("flaky", "pass", 4),
        ("flaky", "fail", 3),
        ("flaky", "pass", 2),
        ("good", "pass", 5),
        ("good", "pass", 4),
        ("good", "pass", 3),
        ("old", "fail", 120),
        ("old", "fail", 121),
        ("old", "fail", 122),
    ] {
        events.push(
            json!({"kind": "test_result", "runtime": rt, "device_type": device,
                           "result": result, "ts": iso(at - Duration::minutes(minutes))}),
        );
    }
    events.extend(
        (0..3).map(|_| json!({"kind": "runtime_error", "runtime": rt, "error_type": "submission"})),
    );
    events.extend(
        (0..4).map(|_| json!({"kind": "job_skip", "runtime": rt, "error_type": "queue_depth"})),
    );
    events.extend((0..2).map(|_| json!({"kind": "job_skip", "runtime": rt, "error_type": "rare"})));
    post(&srv, user.auth(), &Value::Array(events));

    let body = get_ok(&srv, "/telemetry/anomalies", &[("window", "1h")]);
    assert_eq!(
        keys(&body),
        [
            "window",
            "threshold",
            "min_total",
            "scope",
            "since",
            "result_anomalies",
            "error_anomalies"
        ]
    );
    assert_eq!(
        (
            body["window"].clone(),
            body["threshold"].clone(),
            body["min_total"].clone(),
            body["scope"].clone()
        ),
        (json!("1h"), json!(0.5), json!(3), json!("device_type"))
    );
    let since = body["since"].as_str().unwrap();
    assert!(
        since.ends_with("+00:00") && since.len() == "2024-01-04T10:48:39.974782+00:00".len(),
        "{since}"
    );
    let mine: Vec<&Value> = body["result_anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["runtime"] == rt.as_str())
        .collect();
    let devices: Vec<&str> = mine
        .iter()
        .map(|r| r["device_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        devices,
        ["board", "flaky"],
        "infra rate first; healthy and old groups left out"
    );
    let board = mine[0];
    assert_eq!(
        keys(board),
        [
            "runtime",
            "lab",
            "device_type",
            "total",
            "pass",
            "fail",
            "incomplete",
            "skip",
            "infra_error",
            "infra_rate",
            "fail_rate",
            "constant_failure",
            "constant_infra_failure",
            "last_seen",
            "latest_error_type",
            "latest_error_msg"
        ]
    );
    assert_eq!(
        (
            board["total"].clone(),
            board["incomplete"].clone(),
            board["infra_rate"].clone()
        ),
        (json!(4), json!(4), json!(1.0))
    );
    assert_eq!(board["latest_error_msg"], "boot failed 3");
    assert_eq!(board["last_seen"], shown(at - Duration::minutes(7)));
    assert_eq!(
        (
            mine[1]["fail_rate"].clone(),
            mine[1]["constant_failure"].clone()
        ),
        (json!(0.5), json!(false))
    );
    let errors: Vec<&Value> = body["error_anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["runtime"] == rt.as_str())
        .collect();
    assert_eq!(
        errors,
        [
            &json!({"runtime": rt, "error_type": "queue_depth", "count": 4}),
            &json!({"runtime": rt, "error_type": "submission", "count": 3})
        ]
    );
    // a wider window sees the old failures; device scope splits the boards
    let wide = get_ok(
        &srv,
        "/telemetry/anomalies",
        &[("window", "3h"), ("threshold", "1.0")],
    );
    let wide: Vec<&str> = wide["result_anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["runtime"] == rt.as_str())
        .map(|r| r["device_type"].as_str().unwrap())
        .collect();
    assert_eq!(wide, ["board", "old"]);
    let by_device = get_ok(
        &srv,
        "/telemetry/anomalies",
        &[("window", "1h"), ("min_total", "2"), ("scope", "device")],
    );
    let rows: Vec<&Value> = by_device["result_anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["runtime"] == rt.as_str())
        .collect();
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["board-0", "board-1"]);
    assert!(
        rows.iter()
            .all(|r| r["total"] == 2 && r["constant_infra_failure"] == true)
    );
}

#[test]
fn anomaly_parameter_errors() {
    let srv = TestServer::start();
    let (status, body) = srv.get("/telemetry/anomalies?window=2h", None);
    assert_detail(
        status,
        &body,
        400,
        "Invalid window '2h'. Use: 1h, 3h, 6h, 12h, 24h, 48h",
    );
    for (param, kind) in [
        ("threshold=1.5", "less_than_equal"),
        ("threshold=-0.1", "greater_than_equal"),
        ("threshold=high", "float_parsing"),
        ("min_total=0", "greater_than_equal"),
        ("min_total=x", "int_parsing"),
        ("scope=lab", "string_pattern_mismatch"),
    ] {
        let (status, body) = srv.get(&format!("/telemetry/anomalies?window=2h&{param}"), None);
        let name = param.split('=').next().unwrap();
        assert_422(status, &body, &[json!("query"), json!(name)], Some(kind));
    }
}

#[test]
fn expired_events_are_never_shown() {
    let srv = TestServer::builder()
        .var("TELEMETRY_TTL_SECONDS", "3600")
        .start();
    let user = srv.make_user(&[]);
    let rt = uniq("rt");
    let at = now();
    let mut events: Vec<Value> = (0..3)
        .map(|_| {
            json!({"kind": "job_result", "runtime": rt, "device_type": "gone", "result": "fail",
                        "ts": iso(at - Duration::minutes(61))})
        })
        .collect();
    events.push(
        json!({"kind": "job_result", "runtime": rt, "device_type": "kept", "result": "pass"}),
    );
    assert_eq!(
        post(&srv, user.auth(), &Value::Array(events)),
        json!({"inserted": 4})
    );
    assert_eq!(total(&srv, &[("runtime", &rt)]), 1);
    assert_eq!(
        total(&srv, &[("runtime", &rt), ("since", "2000-01-01")]),
        1,
        "since cannot reach past the retention"
    );
    let stats = get_ok(
        &srv,
        "/telemetry/stats",
        &[("group_by", "device_type"), ("runtime", &rt)],
    );
    assert_eq!(stats.as_array().unwrap().len(), 1);
    assert_eq!(stats[0]["device_type"], "kept");
    let body = get_ok(
        &srv,
        "/telemetry/anomalies",
        &[("window", "48h"), ("threshold", "0")],
    );
    assert!(
        !body["result_anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["device_type"] == "gone"),
        "{body}"
    );
}

#[test]
fn telemetry_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kci.db");
    let rt = uniq("rt");
    let before = {
        let srv = TestServer::builder().db(&db).start();
        let user = srv.make_user(&[]);
        post(
            &srv,
            user.auth(),
            &json!([{"kind": "k", "runtime": rt, "extra": {"a": [1, 2]}}]),
        );
        page(&srv, &[("runtime", &rt)])
    };
    let srv = TestServer::builder().db(&db).start();
    assert_eq!(page(&srv, &[("runtime", &rt)]), before);
}

#[test]
fn an_older_database_gains_the_table_and_loses_it_on_the_way_down() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kci.db");
    let at = MIGRATIONS
        .iter()
        .position(|m| m.name == "telemetry")
        .unwrap();
    let before = MIGRATIONS[at - 1].version;
    let tables = |c: &rusqlite::Connection| -> Vec<String> {
        let mut stmt = c
            .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index') AND name LIKE 'telemetry%' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        migrate::up(&c, Some(before)).unwrap();
        c.execute("INSERT INTO meta (key, value) VALUES ('kept', 'yes')", [])
            .unwrap();
        assert!(tables(&c).is_empty());
    }
    // the server upgrades the database in place and serves telemetry
    {
        let srv = TestServer::builder().db(&db).start();
        let user = srv.make_user(&[]);
        post(&srv, user.auth(), &json!([{"kind": "k", "runtime": "r"}]));
        assert_eq!(total(&srv, &[]), 1);
    }
    let c = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(migrate::current(&c).unwrap(), migrate::latest());
    assert_eq!(
        tables(&c),
        [
            "telemetry",
            "telemetry_infra",
            "telemetry_kind_ts",
            "telemetry_ts"
        ]
    );
    let kept: String = c
        .query_row("SELECT value FROM meta WHERE key = 'kept'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kept, "yes");
    // down to the version before: the table and its indexes are gone, the rest stays
    let reverted = migrate::down(&c, before).unwrap();
    assert!(reverted.contains(&MIGRATIONS[at].version), "{reverted:?}");
    assert!(tables(&c).is_empty());
    let kept: String = c
        .query_row("SELECT value FROM meta WHERE key = 'kept'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kept, "yes");
    assert_eq!(
        migrate::up(&c, None).unwrap().last(),
        Some(&migrate::latest())
    );
}
