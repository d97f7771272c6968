//! The console's dashboard (API.md 18.6) in a real browser: the newest
//! checkouts first with their tree/branch, state and build/test counts,
//! the tree/branch select, the regressions, and the live updates from the
//! event stream (a new checkout on top, a badge changing in place, counts
//! re-read) — and a phone-sized window.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use common::browser::Browser;
use serde_json::{Value, json};

fn revision(tree: &str, branch: &str, commit: &str) -> Value {
    json!({"tree": tree, "url": format!("https://git.example.org/{tree}.git"),
           "branch": branch, "commit": commit, "describe": format!("v6.9-{}", &commit[..6])})
}

/// A running checkout of `tree`/`branch` with tree id `treeid`.
fn checkout(srv: &TestServer, tree: &str, branch: &str, treeid: &str) -> Value {
    let commit = format!("{:0<40}", treeid.replace('-', ""));
    srv.make_node(
        srv.admin(),
        &json!({"kind": "checkout", "name": "checkout", "path": ["checkout"],
                "treeid": treeid, "data": {"kernel_revision": revision(tree, branch, &commit)}}),
    )
}

/// A node of `kind` under `parent` in `co`'s tree, done with `result`
/// (`None`: still running).
fn child(srv: &TestServer, co: &Value, parent: &Value, kind: &str, result: Option<&str>) -> Value {
    let state = if result.is_some() { "done" } else { "running" };
    srv.make_node(
        srv.admin(),
        &json!({"kind": kind, "name": format!("{kind}-x"), "path": ["checkout", kind],
                "parent": parent["id"], "treeid": co["treeid"], "state": state, "result": result,
                "data": {"kernel_revision": co["data"]["kernel_revision"]}}),
    )
}

fn id(node: &Value) -> String {
    node["id"].as_str().unwrap().to_string()
}

/// The text of the `result` count of `kind` ("kbuild"/"test") in a row.
fn count_sel(co: &str, kind: &str, result: &str) -> String {
    format!("tr[data-id='{co}'] td.counts.{kind} .count.{result}")
}

#[test]
fn lists_checkouts_newest_first_with_their_counts_and_regressions() {
    let srv = TestServer::start();
    let a = checkout(&srv, "mainline", "master", "tree-a");
    let b = checkout(&srv, "next", "master", "tree-b");
    let c = checkout(&srv, "stable", "linux-6.6.y", "tree-c");
    // c: builds 2 pass, 1 fail, 1 incomplete, 1 running; tests 3 pass, 2 fail.
    let mut builds = Vec::new();
    for result in [
        Some("pass"),
        Some("pass"),
        Some("fail"),
        Some("incomplete"),
        None,
    ] {
        builds.push(child(&srv, &c, &c, "kbuild", result));
    }
    for result in ["pass", "pass", "pass", "fail", "fail"] {
        child(&srv, &c, &builds[0], "test", Some(result));
    }
    // a: one failed build (must not be counted for c).
    child(&srv, &a, &a, "kbuild", Some("fail"));
    let reg = srv.make_node(
        srv.admin(),
        &json!({"kind": "regression", "name": "baseline.login", "path": ["checkout", "regression"],
                "parent": c["id"], "data": {"failed_kernel_revision": c["data"]["kernel_revision"],
                "platform": "qemu-x86"}}),
    );

    let Some(mut br) = Browser::start() else {
        return;
    };
    br.goto(&srv.url("/dashboard"));
    br.wait_until("three checkout rows", |b| {
        (b.count("#checkout-rows tr.checkout") == 3).then_some(())
    });
    let order = br.eval(
        "return [...document.querySelectorAll('#checkout-rows tr')].map(t => t.dataset.id);",
        &[],
    );
    assert_eq!(order, json!([id(&c), id(&b), id(&a)]), "newest first");
    let first = br.text("#checkout-rows tr:first-child").unwrap();
    assert!(first.contains("stable / linux-6.6.y"), "{first}");
    let link = br
        .attr("#checkout-rows tr:first-child td.rev a", "href")
        .unwrap();
    assert_eq!(link, format!("/viewer?node={}", id(&c)));
    assert_eq!(
        br.text("#checkout-rows tr:nth-child(2) td.rev").unwrap(),
        "next / master"
    );
    assert!(
        br.text("#checkout-rows tr:nth-child(2) .badge")
            .unwrap()
            .contains("running")
    );

    let c_id = id(&c);
    br.wait_text(&count_sel(&c_id, "kbuild", "pass"), "2 pass");
    br.wait_text(&count_sel(&c_id, "kbuild", "fail"), "1 fail");
    br.wait_text(&count_sel(&c_id, "kbuild", "incomplete"), "1 incomplete");
    br.wait_text(
        &format!("tr[data-id='{c_id}'] td.kbuild .count.all"),
        "5 in all",
    );
    br.wait_text(&count_sel(&c_id, "test", "pass"), "3 pass");
    br.wait_text(&count_sel(&c_id, "test", "fail"), "2 fail");
    br.wait_text(&count_sel(&c_id, "test", "incomplete"), "0 incomplete");
    let a_id = id(&a);
    br.wait_text(&count_sel(&a_id, "kbuild", "fail"), "1 fail");
    br.wait_text(&count_sel(&a_id, "kbuild", "pass"), "0 pass");
    br.wait_text(&count_sel(&id(&b), "test", "pass"), "0 pass");

    // The regression, linked to the viewer.
    let item = br.wait_text("#regressions li", "baseline.login");
    assert!(item.contains("stable / linux-6.6.y"), "{item}");
    assert_eq!(
        br.attr("#regressions li a", "href").unwrap(),
        format!("/viewer?node={}", id(&reg))
    );
    assert_eq!(br.attr("#no-regressions", "hidden").as_deref(), Some(""));
    br.screenshot("dashboard");

    // Filtering by tree/branch: only that tree's checkouts, in the URL too.
    br.choose("#tree-filter", &json!(["next", "master"]).to_string());
    let b_id = id(&b);
    br.wait_until("only the next checkout", |w| {
        let ids = w.eval(
            "return [...document.querySelectorAll('#checkout-rows tr')].map(t => t.dataset.id);",
            &[],
        );
        (ids == json!([b_id])).then_some(())
    });
    assert!(br.url().contains("tree=next"), "{}", br.url());
    assert!(br.text("#summary").unwrap().contains("next / master"));
    br.choose("#tree-filter", "");
    br.wait_until("all three again", |b| {
        (b.count("#checkout-rows tr.checkout") == 3).then_some(())
    });
    br.assert_no_js_errors();
}

#[test]
fn follows_new_checkouts_results_and_counts_live() {
    let srv = TestServer::start();
    let old = checkout(&srv, "mainline", "master", "tree-old");
    let Some(mut br) = Browser::start() else {
        return;
    };
    br.goto(&srv.url("/dashboard"));
    br.wait_for(&format!("tr[data-id='{}']", id(&old)));
    br.wait_text("#live", "live");
    br.wait_text(&count_sel(&id(&old), "kbuild", "pass"), "0 pass");
    // A mark that a reload would wipe.
    br.eval("window.__kept = 'yes';", &[]);

    // A new checkout appears on top.
    let new = checkout(&srv, "next", "pending-fixes", "tree-new");
    br.wait_until("the new checkout on top", |b| {
        let top = b.attr("#checkout-rows tr:first-child", "data-id")?;
        (top == id(&new)).then_some(())
    });
    assert!(
        br.text("#checkout-rows tr:first-child")
            .unwrap()
            .contains("next / pending-fixes")
    );
    assert_eq!(br.count("#checkout-rows tr.checkout"), 2);

    // The old checkout's result changes: its badge changes in place.
    let badge = format!("tr[data-id='{}'] .badge", id(&old));
    assert!(br.text(&badge).unwrap().contains("running"));
    let (status, _) = srv.patch_json(
        &format!("/node/{}", id(&old)),
        srv.admin(),
        &json!({"state": "done", "result": "fail"}),
    );
    assert_eq!(status, 200);
    br.wait_until("the fail badge", |b| {
        (b.attr(&badge, "data-result")? == "fail").then_some(())
    });
    assert!(br.text(&badge).unwrap().contains("done · fail"));
    assert!(br.attr(&badge, "class").unwrap().contains("r-fail"));

    // Builds and tests of the new checkout: its counts follow.
    let build = child(&srv, &new, &new, "kbuild", Some("pass"));
    child(&srv, &new, &build, "test", Some("fail"));
    let running = child(&srv, &new, &build, "test", None);
    br.wait_text(&count_sel(&id(&new), "kbuild", "pass"), "1 pass");
    br.wait_text(&count_sel(&id(&new), "test", "fail"), "1 fail");
    let (status, _) = srv.patch_json(
        &format!("/node/{}", id(&running)),
        srv.admin(),
        &json!({"state": "done", "result": "pass"}),
    );
    assert_eq!(status, 200);
    br.wait_text(&count_sel(&id(&new), "test", "pass"), "1 pass");
    // The other checkout's counts were not touched.
    assert_eq!(
        br.text(&count_sel(&id(&old), "kbuild", "pass")).unwrap(),
        "0 pass"
    );

    // A new regression is listed.
    assert_eq!(br.attr("#no-regressions", "hidden"), None);
    srv.make_node(
        srv.admin(),
        &json!({"kind": "regression", "name": "kselftest.net", "path": ["checkout", "regression"],
                "parent": new["id"]}),
    );
    br.wait_text("#regressions li", "kselftest.net");

    assert_eq!(
        br.eval("return window.__kept;", &[]),
        json!("yes"),
        "no reload"
    );
    br.screenshot("dashboard-live");
    br.assert_no_js_errors();
}

#[test]
fn empty_and_phone_sized() {
    let srv = TestServer::start();
    let Some(mut br) = Browser::start() else {
        return;
    };
    br.goto(&srv.url("/dashboard"));
    br.wait_until("the empty state", |b| {
        let shown = b.eval(
            "const e = document.getElementById('no-checkouts'); return !!e && !e.hidden;",
            &[],
        );
        (shown == json!(true)).then_some(())
    });
    assert_eq!(br.text("#no-checkouts").unwrap(), "No checkouts yet");
    assert_eq!(br.text("#no-regressions").unwrap(), "No regressions");
    br.wait_text("#live", "live");

    // A phone: the checkout arrives live and reads as a card, no sideways scrolling.
    br.window(390, 844);
    let co = checkout(&srv, "chromiumos", "chromeos-6.6", "tree-phone");
    let build = child(&srv, &co, &co, "kbuild", Some("pass"));
    child(&srv, &co, &build, "test", Some("pass"));
    br.wait_for(&format!("tr[data-id='{}']", id(&co)));
    assert_eq!(br.attr("#no-checkouts", "hidden").as_deref(), Some(""));
    br.wait_text(&count_sel(&id(&co), "test", "pass"), "1 pass");
    let fits = br.eval(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
        &[],
    );
    assert_eq!(fits, json!(true), "the page scrolls sideways on a phone");
    let row = br.text("#checkout-rows tr:first-child").unwrap();
    assert!(row.contains("chromiumos / chromeos-6.6"), "{row}");
    let label = br.eval(
        "return getComputedStyle(document.querySelector('#checkout-rows td.kbuild'), '::before').content;",
        &[],
    );
    assert_eq!(label, json!("\"Builds\""), "cells are labelled on a phone");
    br.screenshot("dashboard-phone");
    br.assert_no_js_errors();
}

#[test]
fn older_checkouts_are_read_on_demand() {
    let srv = TestServer::start();
    let all: Vec<Value> = (0..27)
        .map(|i| checkout(&srv, "mainline", "master", &format!("tree-{i:02}")))
        .collect();
    let Some(mut br) = Browser::start() else {
        return;
    };
    br.goto(&srv.url("/dashboard"));
    br.wait_until("the newest 25", |b| {
        (b.count("#checkout-rows tr.checkout") == 25).then_some(())
    });
    assert_eq!(
        br.attr("#checkout-rows tr:first-child", "data-id"),
        Some(id(&all[26]))
    );
    assert_eq!(
        br.attr("#checkout-rows tr:last-child", "data-id"),
        Some(id(&all[2]))
    );
    assert!(br.text("#summary").unwrap().contains("25 of 27"));
    assert_eq!(br.attr("#more", "hidden"), None);
    br.eval("document.getElementById('more').click();", &[]);
    br.wait_until("all 27", |b| {
        (b.count("#checkout-rows tr.checkout") == 27).then_some(())
    });
    let ids = br.eval(
        "return [...document.querySelectorAll('#checkout-rows tr')].map(t => t.dataset.id);",
        &[],
    );
    let want: Vec<String> = all.iter().rev().map(id).collect();
    assert_eq!(ids, json!(want), "newest first, no gaps or repeats");
    assert_eq!(br.attr("#more", "hidden").as_deref(), Some(""));
    br.screenshot("dashboard-older");
    br.assert_no_js_errors();
}
