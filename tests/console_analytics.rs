//! The analytics page (API.md 18.6, telemetry of API.md 12) in a real
//! browser: the charts by lab and by device type carry the counts that were
//! posted, the window changes them, anomalies and bad parameters are shown,
//! the view lives in the URL, and a phone-sized window stays readable.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration, Utc};
use common::TestServer;
use common::browser::Browser;
use serde_json::{Value, json};

/// `minutes` ago as a naive UTC timestamp.
fn ago(minutes: i64) -> String {
    (Utc::now().naive_utc() - Duration::minutes(minutes))
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string()
}

/// `n` job results of `lab` / `device` with `result`, `minutes` ago.
fn events(
    n: usize,
    lab: &str,
    device: &str,
    result: &str,
    infra: bool,
    minutes: i64,
) -> Vec<Value> {
    (0..n)
        .map(|_| {
            json!({"kind": "job_result", "runtime": lab, "device_type": device,
                   "result": result, "is_infra_error": infra, "ts": ago(minutes)})
        })
        .collect()
}

/// Posts the telemetry every test reads, as a user:
/// recent (10 min ago): lab-a/dt-x 3 pass + 2 fail, lab-a/dt-y 1 pass +
/// 1 incomplete (an infra error), lab-b/dt-x 4 fail, lab-b/dt-y 2 pass +
/// 1 skip; old (10 h ago): lab-a/dt-x 6 pass.
fn post_fixture(srv: &TestServer) -> String {
    let user = srv.make_user(&[]);
    let batch: Vec<Value> = [
        events(3, "lab-a", "dt-x", "pass", false, 10),
        events(2, "lab-a", "dt-x", "fail", false, 10),
        events(1, "lab-a", "dt-y", "pass", false, 10),
        events(1, "lab-a", "dt-y", "incomplete", true, 10),
        events(4, "lab-b", "dt-x", "fail", false, 10),
        events(2, "lab-b", "dt-y", "pass", false, 10),
        events(1, "lab-b", "dt-y", "skip", false, 10),
        events(6, "lab-a", "dt-x", "pass", false, 600),
    ]
    .concat();
    let (status, body) = srv.post_json("/telemetry", user.auth(), &json!(batch));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["inserted"], 20);
    user.token
}

/// What a chart panel shows: per category, the total written at the end of
/// its bar (columns have none: their data-total then), the bar's hover
/// title, and the cells of its numbers table (series → count).
fn chart(b: &Browser, panel: &str) -> Value {
    b.eval(
        "const p = document.querySelector(arguments[0]); const out = {};
         if (!p) return out;
         for (const g of p.querySelectorAll('svg g[data-category]')) {
           const cells = {};
           const row = [...p.querySelectorAll('tbody tr')].find((r) => r.dataset.category === g.dataset.category);
           if (row) for (const td of row.querySelectorAll('td[data-key]')) cells[td.dataset.key] = Number(td.textContent);
           const written = g.querySelector('text.total');
           out[g.dataset.category] = {total: Number(written ? written.textContent : g.dataset.total),
             title: g.querySelector(':scope > title').textContent, cells};
         }
         return out;",
        &[json!(panel)],
    )
}

/// Waits until `panel` shows exactly these (category, total) bars.
#[track_caller]
fn wait_bars(b: &Browser, panel: &str, want: &[(&str, u64)]) -> Value {
    b.wait_until(&format!("{panel} to show {want:?}"), |b| {
        let got = chart(b, panel);
        let map = got.as_object()?;
        let same = map.len() == want.len()
            && want
                .iter()
                .all(|(k, n)| map.get(*k).is_some_and(|v| v["total"] == json!(n)));
        same.then_some(got)
    })
}

#[test]
fn charts_show_the_posted_counts_by_lab_and_device_type_and_the_window_changes_them() {
    let srv = TestServer::start();
    post_fixture(&srv);
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.goto(&srv.url("/analytics?window=24h"));
    let labs = wait_bars(&b, "#by-lab", &[("lab-a", 13), ("lab-b", 7)]);
    // The hover title and the table carry the same numbers as the bars.
    assert!(
        labs["lab-a"]["title"]
            .as_str()
            .unwrap()
            .starts_with("lab-a: 13 (pass 10, fail 2, incomplete 1)"),
        "{labs}"
    );
    assert_eq!(
        labs["lab-a"]["cells"],
        json!({"pass": 10, "fail": 2, "incomplete": 1, "skip": 0, "other": 0, "total": 13})
    );
    assert_eq!(
        labs["lab-b"]["cells"],
        json!({"pass": 2, "fail": 4, "incomplete": 0, "skip": 1, "other": 0, "total": 7})
    );
    assert_eq!(b.count("#by-lab svg g.bar"), 2);
    let label = b.attr("#by-lab svg", "aria-label").unwrap();
    assert!(
        label.contains("lab-a: 13 (pass 10, fail 2, incomplete 1)")
            && label.contains("lab-b: 7 (pass 2, fail 4, skip 1)"),
        "{label}"
    );
    assert_eq!(b.attr("#by-lab svg", "role").as_deref(), Some("img"));

    let devices = wait_bars(&b, "#by-device", &[("dt-x", 15), ("dt-y", 5)]);
    assert_eq!(
        devices["dt-y"]["cells"],
        json!({"pass": 3, "fail": 0, "incomplete": 1, "skip": 1, "other": 0, "total": 5})
    );
    let infra = wait_bars(&b, "#infra", &[("lab-a / dt-y", 2)]);
    assert_eq!(infra["lab-a / dt-y"]["cells"]["infra_error"], 1);
    assert_eq!(
        b.text("#totals [data-key=total] strong").as_deref(),
        Some("20")
    );
    assert_eq!(
        b.text("#totals [data-key=infra_error] strong").as_deref(),
        Some("1")
    );
    // The time chart: twelve columns holding every event of the window.
    let columns = chart(&b, "#over-time");
    let columns = columns.as_object().unwrap();
    assert_eq!(columns.len(), 12, "{columns:?}");
    let sum: u64 = columns.values().map(|c| c["total"].as_u64().unwrap()).sum();
    assert_eq!(sum, 20);

    // The numbers table opens from its button.
    assert_eq!(
        b.attr("#by-lab .chart-toggle", "aria-expanded").as_deref(),
        Some("false")
    );
    b.click("#by-lab .chart-toggle");
    b.wait_until("the numbers table", |b| {
        b.eval(
            "return !document.querySelector('#by-lab .chart-numbers').hidden;",
            &[],
        )
        .as_bool()
        .filter(|v| *v)
    });
    assert!(b.text("#by-lab .chart-numbers").unwrap().contains("lab-a"));
    b.screenshot("analytics-24h");

    // 6 hours leaves out the six old passes of lab-a / dt-x.
    b.choose("#window", "6h");
    let labs = wait_bars(&b, "#by-lab", &[("lab-a", 7), ("lab-b", 7)]);
    assert_eq!(labs["lab-a"]["cells"]["pass"], 4);
    wait_bars(&b, "#by-device", &[("dt-x", 9), ("dt-y", 5)]);
    b.wait_text("#totals [data-key=total] strong", "14");
    assert!(b.url().contains("window=6h"), "{}", b.url());

    // A window with nothing in it says so.
    b.goto(&srv.url("/analytics?window=1h&lab=nowhere"));
    b.wait_text("#no-telemetry", "No telemetry in this window");
    b.wait_until("the empty state instead of the charts", |b| {
        let shown = |sel: &str| {
            b.eval(
                "return document.querySelector(arguments[0]).getClientRects().length > 0;",
                &[json!(sel)],
            )
        };
        (shown("#no-telemetry") == json!(true) && shown(".charts") == json!(false)).then_some(())
    });
    assert_eq!(b.count("#by-lab svg"), 0);
    b.assert_no_js_errors();
    b.screenshot("analytics-empty");
}

#[test]
fn anomalies_list_failing_groups_clamp_7d_and_show_the_api_detail_of_a_bad_parameter() {
    let srv = TestServer::start();
    let token = post_fixture(&srv);
    let errors: Vec<Value> = (0..3)
        .map(|_| json!({"kind": "runtime_error", "runtime": "lab-a", "error_type": "boot-timeout", "ts": ago(5)}))
        .collect();
    let (status, body) = srv.post_json("/telemetry", Some(&token), &json!(errors));
    assert_eq!(status, 200, "{body}");
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.goto(&srv.url("/analytics"));
    // Only lab-b / dt-x fails half of the time or more (4 of 4).
    let row = "#anomaly-table tr[data-lab=lab-b][data-device-type=dt-x]";
    b.wait_for(row);
    assert_eq!(b.count("#anomaly-table tbody tr"), 1);
    let high = b.eval(
        "return [...document.querySelectorAll(arguments[0] + ' td.rate.high')].map((td) => td.textContent);",
        &[json!(row)],
    );
    assert_eq!(high, json!(["100 %"]));
    assert!(b.text(row).unwrap().contains("always failing"));
    b.wait_text("#error-table", "boot-timeout");
    assert!(b.text("#error-table tbody").unwrap().contains("lab-a"));
    assert_eq!(b.count("#anomaly-note"), 0);

    // 7 days is beyond the anomalies' windows: clamped to 48 h, and said.
    b.choose("#window", "7d");
    b.wait_text("#anomaly-note", "at most 48 h");
    b.wait_text("#h-anomalies", "last 48 h");
    b.wait_for(row);
    b.screenshot("analytics-anomalies");

    // A threshold above 1: the API's own message next to the field.
    b.choose("#threshold", "2");
    b.wait_text("#threshold-error", "less than or equal to 1");
    assert_eq!(
        b.attr("#threshold", "aria-invalid").as_deref(),
        Some("true")
    );
    b.wait_text("#anomaly-error", "threshold");
    assert!(b.url().contains("threshold=2"), "{}", b.url());
    // A lower threshold brings lab-a / dt-x (2 fails of 11 in 48 h) in.
    b.choose("#threshold", "0.15");
    b.wait_for("#anomaly-table tr[data-lab=lab-a][data-device-type=dt-x]");
    assert_eq!(b.text("#threshold-error").as_deref(), Some(""));
    b.eval(
        "document.querySelector('#anomalies').scrollIntoView();",
        &[],
    );
    b.screenshot("analytics-anomalies-threshold");
    // A lab in the table links to the view of that lab alone.
    b.click("#anomaly-table tr[data-lab=lab-b] td a");
    wait_bars(&b, "#by-lab", &[("lab-b", 7)]);
    let url = b.url();
    assert!(
        url.contains("lab=lab-b") && url.contains("window=7d") && url.contains("threshold=0.15"),
        "{url}"
    );
    b.assert_no_js_errors();
    b.screenshot("analytics-lab-link");
}

#[test]
fn window_and_filters_live_in_the_url_a_reload_restores_them_and_node_events_refresh() {
    let srv = TestServer::start();
    let token = post_fixture(&srv);
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.goto(&srv.url("/analytics"));
    wait_bars(&b, "#by-lab", &[("lab-a", 7), ("lab-b", 7)]);
    b.wait_text("#live", "live");
    b.choose("#window", "12h");
    wait_bars(&b, "#by-lab", &[("lab-a", 13), ("lab-b", 7)]);
    b.type_into("#f-lab", "lab-b\u{E007}");
    wait_bars(&b, "#by-lab", &[("lab-b", 7)]);
    wait_bars(&b, "#by-device", &[("dt-x", 4), ("dt-y", 3)]);
    let url = b.url();
    assert!(
        url.contains("window=12h") && url.contains("lab=lab-b"),
        "{url}"
    );

    // The same link in a fresh load shows the same view.
    b.goto(&url);
    wait_bars(&b, "#by-device", &[("dt-x", 4), ("dt-y", 3)]);
    assert_eq!(
        b.eval("return document.querySelector('#window').value;", &[]),
        json!("12h")
    );
    assert_eq!(
        b.eval("return document.querySelector('#f-lab').value;", &[]),
        json!("lab-b")
    );
    wait_bars(&b, "#by-lab", &[("lab-b", 7)]);

    // Telemetry is not streamed: a node event makes the page read it again
    // (and a numbers table someone opened stays open).
    b.wait_text("#live", "live");
    b.click("#by-device .chart-toggle");
    b.wait_text("#by-device .chart-toggle", "Hide numbers");
    let more = [events(3, "lab-b", "dt-z", "pass", false, 1)].concat();
    let (status, body) = srv.post_json("/telemetry", Some(&token), &json!(more));
    assert_eq!(status, 200, "{body}");
    srv.make_node(
        srv.admin(),
        &json!({"name": "checkout", "path": ["checkout"]}),
    );
    wait_bars(&b, "#by-lab", &[("lab-b", 10)]);
    let devices = wait_bars(&b, "#by-device", &[("dt-x", 4), ("dt-y", 3), ("dt-z", 3)]);
    assert_eq!(devices["dt-z"]["cells"]["pass"], 3);
    assert_eq!(
        b.attr("#by-device .chart-toggle", "aria-expanded")
            .as_deref(),
        Some("true")
    );
    assert!(
        b.text("#by-device .chart-numbers")
            .unwrap()
            .contains("dt-z")
    );

    // Clearing the filters brings every lab back and drops them from the URL.
    b.click("#clear");
    wait_bars(&b, "#by-lab", &[("lab-a", 13), ("lab-b", 10)]);
    assert!(!b.url().contains("lab="), "{}", b.url());
    b.assert_no_js_errors();
    b.screenshot("analytics-filtered");
}

#[test]
fn a_phone_sized_window_stays_readable() {
    let srv = TestServer::start();
    post_fixture(&srv);
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.window(390, 844);
    b.goto(&srv.url("/analytics?window=24h"));
    wait_bars(&b, "#by-lab", &[("lab-a", 13), ("lab-b", 7)]);
    b.wait_for("#anomaly-table");
    let layout = b.eval(
        "const vw = document.documentElement.clientWidth;
         const svg = document.querySelector('#by-lab svg').getBoundingClientRect();
         const text = document.querySelector('#by-lab svg text');
         return {vw, page: document.documentElement.scrollWidth, svgRight: svg.right,
                 font: parseFloat(getComputedStyle(text).fontSize),
                 textHeight: text.getBoundingClientRect().height};",
        &[],
    );
    let vw = layout["vw"].as_f64().unwrap();
    assert!(vw <= 390.0, "{layout}");
    // Nothing wider than the screen (wide tables scroll inside their box).
    assert!(layout["page"].as_f64().unwrap() <= vw, "{layout}");
    assert!(layout["svgRight"].as_f64().unwrap() <= vw, "{layout}");
    // Chart text keeps its size: not scaled down to fit.
    assert!(layout["font"].as_f64().unwrap() >= 11.0, "{layout}");
    assert!(layout["textHeight"].as_f64().unwrap() >= 11.0, "{layout}");
    // The time labels fit in the chart without overlapping.
    let ticks = b.eval(
        "const svg = document.querySelector('#over-time svg').getBoundingClientRect();
         const boxes = [...document.querySelectorAll('#over-time svg g.column text')]
           .map((t) => t.getBoundingClientRect());
         return {n: boxes.length, fit: boxes.every((r, i) => r.left >= svg.left - 0.5
           && r.right <= svg.right + 0.5 && (i === 0 || r.left >= boxes[i - 1].right))};",
        &[],
    );
    assert_eq!(ticks, json!({"n": 6, "fit": true}));
    b.screenshot("analytics-phone");
    b.eval("document.querySelector('#by-lab').scrollIntoView();", &[]);
    b.screenshot("analytics-phone-charts");
    b.eval(
        "document.querySelector('#anomalies').scrollIntoView();",
        &[],
    );
    b.screenshot("analytics-phone-anomalies");
    b.assert_no_js_errors();
}
