//! The console's stats page (API.md 18.6) in a real browser: database size,
//! node counts by kind, the events-per-minute chart, queue lengths, kept
//! current from the event stream; live subscriptions with their backlog for
//! an administrator logged in through the page, a note for anyone else.
#![allow(clippy::unwrap_used)]

mod common;

use common::browser::Browser;
use common::{ADMIN_PASSWORD, ADMIN_USERNAME, TestServer};
use serde_json::{Value, json};

fn node(srv: &TestServer, kind: &str) -> Value {
    srv.make_node(
        srv.admin(),
        &json!({"kind": kind, "name": format!("{kind}-n"), "path": [kind]}),
    )
}

/// The count shown for `kind` in the bar list.
fn kind_count(b: &Browser, kind: &str) -> Option<String> {
    b.text(&format!("#node-kinds li[data-kind='{kind}'] .n"))
}

/// The events the chart's bars stand for, summed.
fn chart_sum(b: &Browser) -> u64 {
    b.eval(
        "return [...document.querySelectorAll('#events-chart rect.bar')]
           .reduce((a, r) => a + Number(r.dataset.n), 0);",
        &[],
    )
    .as_u64()
    .unwrap_or(0)
}

#[test]
fn shows_database_nodes_events_and_queues_live() {
    let srv = TestServer::start();
    for kind in ["checkout", "checkout", "kbuild", "kbuild", "kbuild", "test"] {
        node(&srv, kind);
    }
    for (list, n) in [("work-a", 2), ("work-b", 1)] {
        for i in 0..n {
            let (status, body) = srv.post_json(
                &format!("/push/{list}"),
                srv.admin(),
                &json!({"data": {"i": i}}),
            );
            assert_eq!(status, 200, "{body}");
        }
    }
    let Some(mut br) = Browser::start() else {
        return;
    };
    br.goto(&srv.url("/stats"));
    br.wait_until("three kbuilds", |b| {
        (kind_count(b, "kbuild")? == "3").then_some(())
    });
    assert_eq!(kind_count(&br, "checkout").as_deref(), Some("2"));
    assert_eq!(kind_count(&br, "test").as_deref(), Some("1"));
    assert_eq!(br.count("#node-kinds li"), 3);
    assert!(br.text("#nodes-total").unwrap().contains("6 nodes"));
    // The largest kind has the longest bar.
    let widths = br.eval(
        "return ['kbuild', 'test'].map(k => document.querySelector(`#node-kinds li[data-kind=${k}] .fill`).getBoundingClientRect().width);",
        &[],
    );
    assert!(widths[0].as_f64() > widths[1].as_f64(), "{widths}");

    // Database size: the figure of the API, in words.
    let (_, figures) = srv.get("/stats/server", None);
    let db_bytes = figures["database"]["bytes"].as_u64().unwrap();
    assert!(db_bytes > 0);
    let size = br.text("#db-size").unwrap();
    assert!(size.ends_with("KiB") || size.ends_with("MiB"), "{size}");
    let shown: u64 = br.attr("#db-size", "data-bytes").unwrap().parse().unwrap();
    assert!(shown > 0, "{shown}");

    // Six node events: the chart has bars for them.
    br.wait_until("bars for the six events", |b| {
        (chart_sum(b) >= 6).then_some(())
    });
    assert!(br.count("#events-chart rect.bar") >= 1);
    assert!(
        br.text("#events-note")
            .unwrap()
            .contains("events in the last hour")
    );

    // Queue lengths, longest first.
    assert_eq!(
        br.text("#queue-table tr[data-list='work-a'] td.num")
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        br.text("#queue-table tr[data-list='work-b'] td.num")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        br.attr("#queue-table tbody tr:first-child", "data-list")
            .as_deref(),
        Some("work-a")
    );

    // Anonymous: the note instead of subscription details.
    br.wait_text("#subs-note", "need an admin login");
    assert_eq!(br.count("#sub-table"), 0);
    br.wait_text("#live", "live");
    br.screenshot("stats");

    // Live: nodes created while the page is open are counted in.
    let before = chart_sum(&br);
    for _ in 0..2 {
        node(&srv, "kbuild");
    }
    node(&srv, "regression");
    br.wait_until("five kbuilds", |b| {
        (kind_count(b, "kbuild")? == "5").then_some(())
    });
    br.wait_until("a regression", |b| {
        (kind_count(b, "regression")? == "1").then_some(())
    });
    br.wait_until("three more events in the chart", |b| {
        (chart_sum(b) >= before + 3).then_some(())
    });
    br.wait_text("#nodes-total", "9 nodes");
    // ... and the re-read agrees with what was counted live (no double count).
    br.wait_until("the re-read figures", |b| {
        let seq = b.text("#last-seq")?;
        (seq == format!("#{}", srv.event_total())).then_some(())
    });
    assert_eq!(kind_count(&br, "kbuild").as_deref(), Some("5"));
    br.assert_no_js_errors();
}

#[test]
fn an_admin_sees_subscriptions_with_their_lag_others_see_a_note() {
    let srv = TestServer::start();
    let (status, sub) = srv.post_json("/subscribe/node?promisc=true", srv.admin(), &json!({}));
    assert_eq!(status, 200, "{sub}");
    let sub_id = sub["id"].as_i64().unwrap();
    for _ in 0..3 {
        node(&srv, "checkout");
    }
    let user = srv.make_user(&[]);

    let Some(mut br) = Browser::start() else {
        return;
    };
    br.goto(&srv.url("/stats"));
    br.wait_text("#subs-note", "need an admin login");
    assert!(
        br.text("#subs-note")
            .unwrap()
            .contains("1 live subscription")
    );

    // A user who is not an administrator: still the note.
    br.log_in(&user.username, &user.password);
    br.wait_text("#subs-note", &format!("logged in as {}", user.username));
    assert!(
        br.text("#subs-note")
            .unwrap()
            .contains("need an admin login")
    );
    assert_eq!(br.count("#sub-table"), 0);
    br.log_out();

    // The administrator, through the same form: the table with the backlog.
    br.log_in(ADMIN_USERNAME, ADMIN_PASSWORD);
    let row = format!("#sub-table tr[data-id='{sub_id}']");
    br.wait_for(&row);
    assert_eq!(br.count("#subs-note"), 0);
    let text = br.text(&row).unwrap();
    assert!(text.contains("node"), "{text}");
    assert!(text.contains(ADMIN_USERNAME), "{text}");
    assert!(text.contains("yes"), "promiscuous: {text}");
    assert_eq!(
        br.text(&format!("{row} td.last-poll")).as_deref(),
        Some("never")
    );
    assert_eq!(br.text(&format!("{row} td.behind")).as_deref(), Some("3"));

    // One more event: the lag grows without a reload.
    node(&srv, "kbuild");
    br.wait_until("the lag of 4", |b| {
        (b.text(&format!("{row} td.behind"))? == "4").then_some(())
    });
    br.eval("document.getElementById('subs').scrollIntoView();", &[]);
    br.screenshot("stats-admin");

    // A phone-sized window: no sideways scrolling of the page.
    br.window(390, 844);
    let fits = br.eval(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
        &[],
    );
    assert_eq!(fits, json!(true), "the page scrolls sideways on a phone");
    br.screenshot("stats-phone");

    // Logging out takes the details away again.
    br.log_out();
    br.wait_text("#subs-note", "need an admin login");
    br.assert_no_js_errors();
}
