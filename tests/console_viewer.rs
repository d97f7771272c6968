//! The viewer page (API.md 18.6) in a real browser: the node list with its
//! filter builder and raw query box, the URL as the view, a node's page with
//! its fields, artifacts, ancestors and tree, and live updates from the
//! event stream without reloading.
#![allow(clippy::unwrap_used)]

mod common;

use common::browser::Browser;
use common::{MISSING_ID, TestServer, uniq};
use serde_json::{Value, json};

fn id(node: &Value) -> String {
    node["id"].as_str().unwrap().to_string()
}

fn revision() -> Value {
    json!({"tree": "mainline", "branch": "master", "url": "https://git.kernel.org/x.git", "commit": "abc123"})
}

fn checkout(srv: &TestServer, name: &str) -> Value {
    srv.make_node(
        srv.admin(),
        &json!({"kind": "checkout", "name": name, "path": [name], "state": "available",
                "data": {"kernel_revision": revision()}}),
    )
}

fn child(srv: &TestServer, parent: &Value, kind: &str, name: &str, extra: Value) -> Value {
    let mut path: Vec<Value> = parent["path"].as_array().unwrap().clone();
    path.push(json!(name));
    let mut body = json!({"kind": kind, "name": name, "path": path, "parent": id(parent),
                          "data": {"kernel_revision": revision()}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    srv.make_node(srv.admin(), &body)
}

/// The names in the list's rows, top to bottom.
fn row_names(b: &Browser) -> Vec<String> {
    let names = b.eval(
        "return [...document.querySelectorAll('#nodes tbody tr[data-id] td:first-child')].map(td => td.innerText);",
        &[],
    );
    names
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Waits until the list's rows are exactly `want` (top to bottom).
fn wait_rows(b: &Browser, want: &[&str]) {
    b.wait_until(&format!("the rows {want:?}"), |b| {
        let got = row_names(b);
        (got == want).then_some(())
    });
}

/// The viewer shows its own pages at /viewer; the harness adds /latest.
fn viewer(srv: &TestServer, query: &str) -> String {
    srv.url(&format!("/viewer{query}"))
}

#[test]
fn list_filters_pages_and_keeps_the_view_in_the_url() {
    let srv = TestServer::start();
    let tag = uniq("l");
    let c1 = checkout(&srv, &format!("{tag}-co1"));
    let k1 = child(
        &srv,
        &c1,
        "kbuild",
        &format!("{tag}-kb1"),
        json!({"state": "done", "result": "pass"}),
    );
    child(
        &srv,
        &k1,
        "test",
        &format!("{tag}-t1"),
        json!({"state": "done", "result": "fail"}),
    );
    checkout(&srv, &format!("{tag}-co2"));
    let Some(mut b) = Browser::start() else {
        return;
    };
    let (co1, kb1, t1, co2) = (
        format!("{tag}-co1"),
        format!("{tag}-kb1"),
        format!("{tag}-t1"),
        format!("{tag}-co2"),
    );

    // Every node, newest first, with the total.
    b.goto(&viewer(&srv, ""));
    wait_rows(&b, &[&co2, &t1, &kb1, &co1]);
    b.wait_text("#total", "4 nodes");
    let first_id = b.attr("#nodes tbody tr:first-child", "data-id").unwrap();
    assert_eq!(
        b.attr("#nodes tbody tr:first-child a.node-link", "href"),
        Some(format!("/viewer?node={first_id}"))
    );

    // The builder: kind = checkout.
    b.type_into(".cond .c-field", "kind");
    b.choose(".cond .c-op", "");
    b.type_into(".cond .c-value", "checkout");
    assert_eq!(
        b.eval("return document.querySelector('#raw-query').value;", &[]),
        json!("kind=checkout")
    );
    // Every control has a name a screen reader can say.
    assert_eq!(
        b.eval(
            "return [...document.querySelectorAll('#filter-form input, #filter-form select')]
                .filter(e => !e.getAttribute('aria-label') && !e.closest('label')).length;",
            &[]
        ),
        json!(0)
    );
    b.click("#apply");
    wait_rows(&b, &[&co2, &co1]);
    assert!(b.url().ends_with("/viewer?kind=checkout"), "{}", b.url());
    b.screenshot("viewer-list");

    // Reloading the URL gives the same view, builder included.
    b.goto(&b.url());
    wait_rows(&b, &[&co2, &co1]);
    assert_eq!(
        b.eval(
            "return document.querySelector('.cond .c-field').value;",
            &[]
        ),
        json!("kind")
    );
    assert_eq!(
        b.eval(
            "return document.querySelector('.cond .c-value').value;",
            &[]
        ),
        json!("checkout")
    );

    // The raw box (Enter applies it), with `!=` shorthand; the builder follows.
    b.type_into(
        "#raw-query",
        &format!("name__re=^{tag} result!=fail state=done\u{E007}"),
    );
    wait_rows(&b, &[&kb1]);
    assert_eq!(b.count(".cond"), 3);
    assert_eq!(
        b.eval(
            "return [...document.querySelectorAll('.cond .c-op')].map(s => s.value);",
            &[]
        ),
        json!(["re", "ne", ""])
    );
    let url = b.url();
    assert!(
        url.contains("result__ne=fail") && url.contains("state=done"),
        "{url}"
    );

    // A query string works too; kind=test narrows to the test.
    b.type_into("#raw-query", &format!("kind=test&name={t1}\u{E007}"));
    wait_rows(&b, &[&t1]);

    // Back restores the previous filter (popstate).
    b.eval("history.back();", &[]);
    wait_rows(&b, &[&kb1]);

    // A bad query: the API's own words next to the box.
    b.type_into("#raw-query", "name__like=x\u{E007}");
    b.wait_text("#query-error", "Unsupported query operator: like");
    assert_eq!(
        b.attr("#raw-query", "aria-invalid").as_deref(),
        Some("true")
    );
    b.goto(&viewer(&srv, "?created__gt=yesterday"));
    b.wait_text("#query-error", "Invalid timestamp");
    b.screenshot("viewer-bad-query");

    // Paging, newest first: two per page.
    b.goto(&viewer(&srv, "?limit=2"));
    wait_rows(&b, &[&co2, &t1]);
    b.wait_text(".pager", "1–2 of 4");
    b.click("#next");
    wait_rows(&b, &[&kb1, &co1]);
    assert!(
        b.url().contains("offset=2") && b.url().contains("limit=2"),
        "{}",
        b.url()
    );
    assert_eq!(b.attr("#next", "disabled").as_deref(), Some(""));
    b.click("#prev");
    wait_rows(&b, &[&co2, &t1]);

    // A pasted viewer URL is read as its filter (its pager parameters dropped).
    b.type_into("#raw-query", "/viewer?kind=checkout&offset=5\u{E007}");
    wait_rows(&b, &[&co2, &co1]);
    assert!(
        b.url().ends_with("/viewer?kind=checkout&limit=2"),
        "{}",
        b.url()
    );
    b.assert_no_js_errors();
}

#[test]
fn a_checkout_page_shows_its_tree_and_follows_changes_live() {
    let srv = TestServer::start();
    let co = checkout(&srv, "tree-checkout");
    let kb = child(
        &srv,
        &co,
        "kbuild",
        "kbuild-gcc-x86",
        json!({"state": "done", "result": "pass"}),
    );
    let job = child(
        &srv,
        &kb,
        "job",
        "baseline-job",
        json!({"state": "running"}),
    );
    let test = child(
        &srv,
        &job,
        "test",
        "baseline-login",
        json!({"state": "running"}),
    );
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.goto(&viewer(&srv, &format!("?node={}", id(&co))));
    b.wait_text("h1", "tree-checkout");
    b.wait_for("#live.on");
    let test_li = format!("li[data-id='{}']", id(&test));
    b.wait_for(&format!("{test_li} .badge"));
    b.wait_text("#tree-counts", "1 kbuild · 1 job · 1 test");

    // Nested kbuild → job → test, each with its badge.
    let nested = format!(
        "ul.tree > li[data-id='{}'] > details > ul > li[data-id='{}'] > details > ul > {test_li}",
        id(&kb),
        id(&job)
    );
    assert_eq!(b.count(&nested), 1, "the tree is nested");
    let badge_class = |b: &Browser, node: &Value| {
        b.attr(
            &format!("li[data-id='{}'] > details > summary .badge", id(node)),
            "class",
        )
        .unwrap()
    };
    assert!(
        badge_class(&b, &kb).contains("r-pass"),
        "{}",
        badge_class(&b, &kb)
    );
    assert!(badge_class(&b, &job).contains("s-running"));
    assert!(badge_class(&b, &test).contains("s-running"));
    assert_eq!(
        b.count(&format!("{test_li}.leaf")),
        1,
        "a test without children is a leaf"
    );
    b.screenshot("viewer-tree");

    // Collapsible: the kbuild's details close and open with its summary.
    let kb_details = format!("li[data-id='{}'] > details", id(&kb));
    b.click(&format!("{kb_details} > summary"));
    assert_eq!(
        b.eval(
            &format!("return document.querySelector(\"{kb_details}\").open;"),
            &[]
        ),
        json!(false)
    );
    b.click(&format!("{kb_details} > summary"));

    // Live, without reload: the test finishes, the checkout is done, a new
    // job appears under the kbuild.
    b.eval("window.__viewerMarker = 'still here';", &[]);
    let (status, _) = srv.patch_json(
        &format!("/node/{}", id(&test)),
        srv.admin(),
        &json!({"state": "done", "result": "fail"}),
    );
    assert_eq!(status, 200);
    b.wait_until("the test's badge to turn r-fail", |b| {
        badge_class(b, &test).contains("r-fail").then_some(())
    });
    // The kbuild's summary counts what is below it.
    b.wait_text(
        &format!("li[data-id='{}'] > details > summary .tally", id(&kb)),
        "2 below: 1 pending, 1 fail",
    );
    let (status, _) = srv.put_json(
        &format!("/node/{}", id(&co)),
        srv.admin(),
        &json!({"state": "done", "result": "pass"}),
    );
    assert_eq!(status, 200);
    b.wait_until("the checkout's heading badge to turn r-pass", |b| {
        b.attr("h1 .badge", "class")
            .filter(|c| c.contains("r-pass"))
    });
    b.wait_text("dd[data-field=state]", "done");
    let late = child(&srv, &kb, "job", "late-job", json!({"state": "running"}));
    b.wait_for(&format!(
        "li[data-id='{}'] > details > ul > li[data-id='{}'] .badge.s-running",
        id(&kb),
        id(&late)
    ));
    b.wait_text("#tree-counts", "1 kbuild · 2 jobs · 1 test");

    // A hierarchy write (PUT /nodes/{id}) gives one event for the root and
    // none for the children it creates: the tree is read again.
    let (status, written) = srv.put_json(
        &format!("/nodes/{}", id(&co)),
        srv.admin(),
        &json!({"node": {"name": "tree-checkout", "path": ["tree-checkout"]},
                "child_nodes": [{"node": {"kind": "kbuild", "name": "hier-kbuild",
                                          "path": ["tree-checkout", "hier-kbuild"],
                                          "data": {"kernel_revision": revision()}},
                                 "child_nodes": [{"node": {"kind": "test", "name": "hier-test",
                                                           "path": ["tree-checkout", "hier-kbuild", "hier-test"],
                                                           "state": "done", "result": "pass"},
                                                  "child_nodes": []}]}]}),
    );
    assert_eq!(status, 200, "{written}");
    let hier_test = id(&written[2]);
    b.wait_for(&format!(
        "li[data-id='{}'] > details > ul > li[data-id='{hier_test}'] .badge.r-pass",
        id(&written[1])
    ));
    b.wait_text("#tree-counts", "2 kbuilds · 2 jobs · 2 tests");
    assert_eq!(
        b.eval("return window.__viewerMarker;", &[]),
        json!("still here")
    );
    b.screenshot("viewer-tree-live");

    // Following a link inside the page keeps the page (no reload).
    b.click(&format!("{test_li} a.node-link"));
    b.wait_text("h1", "baseline-login");
    assert!(b.url().ends_with(&format!("/viewer?node={}", id(&test))));
    assert_eq!(
        b.eval("return window.__viewerMarker;", &[]),
        json!("still here")
    );
    b.assert_no_js_errors();
}

#[test]
fn a_node_page_shows_fields_artifacts_ancestors_and_unknown_ids() {
    let srv = TestServer::start();
    let co = checkout(&srv, "anc-checkout");
    let kb = child(&srv, &co, "kbuild", "anc-kbuild", json!({}));
    let test = child(
        &srv,
        &kb,
        "test",
        "anc-test",
        json!({"state": "done", "result": "skip",
               "artifacts": {"log": "https://storage.example.org/log.txt", "dtb": "http://storage.example.org/x.dtb"},
               "data": {"kernel_revision": revision(), "arch": "<b>arm64</b>"}}),
    );
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.goto(&viewer(&srv, &format!("?node={}", id(&test))));
    b.wait_text("h1", "anc-test");
    assert!(b.attr("h1 .badge", "class").unwrap().contains("r-skip"));

    // Fields, and data as formatted JSON (as text, never markup).
    b.wait_text("dd[data-field=kind]", "test");
    b.wait_text("dd[data-field=owner]", "admin");
    b.wait_text(
        "dd[data-field=path]",
        "anc-checkout / anc-kbuild / anc-test",
    );
    assert_eq!(
        b.attr("dd[data-field=parent] a", "href").unwrap(),
        format!("/viewer?node={}", id(&kb))
    );
    let data = b.text("#data pre.json").unwrap();
    assert!(data.contains("\"arch\": \"<b>arm64</b>\""), "{data}");
    assert_eq!(b.count("#data pre.json b"), 0);

    // Artifacts are links that open in a new tab without an opener.
    assert_eq!(b.count("#artifacts a"), 2);
    let log = "#artifacts a[href='https://storage.example.org/log.txt']";
    b.wait_text(log, "log");
    assert_eq!(b.attr(log, "target").as_deref(), Some("_blank"));
    assert!(b.attr(log, "rel").unwrap().contains("noopener"));

    // The ancestors, root first, each a link.
    b.wait_until("two ancestors", |b| {
        (b.count("#ancestors li a") == 2).then_some(())
    });
    let hrefs = b.eval(
        "return [...document.querySelectorAll('#ancestors li a')].map(a => a.getAttribute('href'));",
        &[],
    );
    assert_eq!(
        hrefs,
        json!([
            format!("/viewer?node={}", id(&co)),
            format!("/viewer?node={}", id(&kb))
        ])
    );
    b.wait_text("#tree-counts", "No children.");
    b.screenshot("viewer-node");

    // Unknown and invalid ids.
    b.goto(&viewer(&srv, &format!("?node={MISSING_ID}")));
    b.wait_text(".not-found h1", "Node not found");
    b.wait_text(".not-found", MISSING_ID);
    b.screenshot("viewer-missing");
    b.goto(&viewer(&srv, "?node=nope"));
    b.wait_text(".not-found", "is not a valid ObjectId");

    // A text from the URL never becomes another API call made with the
    // visitor's token: the queued message stays where it is.
    let (status, _) = srv.post_json("/push/work", srv.admin(), &json!({"data": {"n": 1}}));
    assert_eq!(status, 200);
    b.log_in(common::ADMIN_USERNAME, common::ADMIN_PASSWORD);
    b.goto(&viewer(&srv, "?node=../pop/work"));
    b.wait_text(".not-found", "is not a valid ObjectId");
    let (_, figures) = srv.get("/stats/server", None);
    assert_eq!(figures["queues"], json!([{"list": "work", "length": 1}]));
    b.assert_no_js_errors();
}

#[test]
fn a_node_created_while_the_list_is_open_appears() {
    let srv = TestServer::start();
    let first = checkout(&srv, "live-first");
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.goto(&viewer(&srv, "?kind=checkout"));
    wait_rows(&b, &["live-first"]);
    b.wait_for("#live.on");
    b.eval("window.__viewerMarker = 1;", &[]);

    // A kbuild does not match; a checkout does and comes on top.
    child(&srv, &first, "kbuild", "live-kbuild", json!({}));
    let second = checkout(&srv, "live-second");
    wait_rows(&b, &["live-second", "live-first"]);
    b.wait_text("#total", "2 nodes");

    // A node on screen changes colour in place.
    let (status, _) = srv.patch_json(
        &format!("/node/{}", id(&second)),
        srv.admin(),
        &json!({"state": "done", "result": "incomplete"}),
    );
    assert_eq!(status, 200);
    b.wait_for(&format!(
        "tr[data-id='{}'] .badge.r-incomplete",
        id(&second)
    ));
    assert_eq!(
        b.eval("return window.__viewerMarker;", &[]),
        json!(1),
        "no reload"
    );

    // A filter the event alone cannot settle (a timestamp) asks the server.
    b.goto(&viewer(
        &srv,
        &format!("?created__gte={}", first["created"].as_str().unwrap()),
    ));
    wait_rows(&b, &["live-second", "live-kbuild", "live-first"]);
    b.wait_for("#live.on");
    checkout(&srv, "live-third");
    wait_rows(
        &b,
        &["live-third", "live-second", "live-kbuild", "live-first"],
    );
    b.screenshot("viewer-live");
    b.goto(&viewer(&srv, "?kind=checkout"));
    wait_rows(&b, &["live-third", "live-second", "live-first"]);
    b.assert_no_js_errors();
}

#[test]
fn the_viewer_is_readable_on_a_phone() {
    let srv = TestServer::start();
    let co = checkout(&srv, "phone-checkout-with-a-rather-long-name");
    child(
        &srv,
        &co,
        "kbuild",
        "phone-kbuild",
        json!({"artifacts": {"kernel": "https://storage.example.org/a/very/long/path/to/the/kernel/image/bzImage"}}),
    );
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.window(390, 844);
    b.goto(&viewer(&srv, ""));
    wait_rows(
        &b,
        &["phone-kbuild", "phone-checkout-with-a-rather-long-name"],
    );
    let overflow = |b: &Browser| {
        b.eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            &[],
        )
        .as_i64()
        .unwrap()
    };
    assert!(overflow(&b) <= 0, "the list page is wider than the phone");
    assert!(
        b.eval(
            "return document.querySelector('#apply').getBoundingClientRect().right;",
            &[]
        )
        .as_f64()
        .unwrap()
            <= 390.0
    );
    b.screenshot("viewer-phone");
    b.goto(&viewer(&srv, &format!("?node={}", id(&co))));
    b.wait_for("ul.tree li .badge");
    assert!(overflow(&b) <= 0, "the node page is wider than the phone");
    b.screenshot("viewer-phone-node");
    b.assert_no_js_errors();
}
