//! The console's pages (API.md 18.6): served at their paths with and without
//! `/latest`, the frame every page shares (navigation, login and logout, the
//! live indicator), the stream follower resuming after a server restart, and
//! the figures of `GET /stats/server` and `/metrics`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::process::ServerProcess;
use common::{ADMIN_PASSWORD, ADMIN_USERNAME, Body, TestServer, call_url, client_with_timeout};
use serde_json::{Value, json};

const PAGES: [&str; 5] = ["viewer", "dashboard", "manage", "analytics", "stats"];

fn checkout(name: &str) -> Value {
    json!({"kind": "checkout", "name": name, "path": [name], "group": "g", "treeid": name,
           "data": {"kernel_revision": {"tree": "mainline", "branch": "master",
                    "url": "https://git.kernel.org/x.git", "commit": "abc"}}})
}

// -- served pages --------------------------------------------------------------

#[test]
fn pages_are_html_at_their_paths_with_and_without_latest() {
    let srv = TestServer::start();
    for page in PAGES {
        for path in [format!("/{page}"), format!("/latest/{page}")] {
            let reply = srv.request_full("GET", &path, None, &[], Body::None);
            assert_eq!(reply.status, 200, "{path}");
            assert_eq!(
                reply.header("content-type"),
                Some("text/html; charset=utf-8")
            );
            let csp = reply.header("content-security-policy").unwrap_or_default();
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            let html = reply.text.clone();
            assert!(html.contains(&format!("/static/js/{page}.js")), "{path}");
            assert!(!html.contains("http://") && !html.contains("https://"));
        }
        let (status, _) = srv.post_json(&format!("/{page}"), None, &json!({}));
        assert_eq!(status, 405, "POST /{page}");
    }
}

#[test]
fn every_script_and_style_a_page_names_is_served_and_nothing_comes_from_another_host() {
    let srv = TestServer::start();
    for page in PAGES {
        let reply = srv.request_full("GET", &format!("/{page}"), None, &[], Body::None);
        let html = reply.text.clone();
        let mut assets = vec![format!("/static/js/{page}.js")];
        assets.extend(
            html.split("href=\"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .filter(|href| href.starts_with("/static/"))
                .map(str::to_string),
        );
        for asset in assets {
            let reply = srv.request_full("GET", &asset, None, &[], Body::None);
            assert_eq!(reply.status, 200, "{asset}");
            let text = reply.text.clone();
            assert!(!text.is_empty(), "{asset} is empty");
            for import in text.split("from \"").skip(1) {
                let target = import.split('"').next().unwrap();
                let file = target
                    .strip_prefix("./")
                    .or_else(|| target.strip_prefix("/static/js/"))
                    .unwrap_or_else(|| panic!("{asset} imports {target}"));
                let path = format!("/static/js/{file}");
                let reply = srv.request_full("GET", &path, None, &[], Body::None);
                assert_eq!(reply.status, 200, "{path}");
            }
            assert!(
                !text.contains("//cdn") && !text.contains("https://fonts"),
                "{asset} loads from another host"
            );
        }
    }
}

#[test]
fn the_root_answers_json_to_clients_and_links_the_console_for_browsers() {
    let srv = TestServer::start();
    let (status, body) = srv.get("/", None);
    assert_eq!((status, body), (200, json!({"message": "KernelCI API"})));
    let reply = srv.request_full(
        "GET",
        "/",
        None,
        &[("Accept", "text/html,application/xhtml+xml")],
        Body::None,
    );
    let html = reply.text.clone();
    for page in PAGES {
        assert!(
            html.contains(&format!("href=\"/{page}\"")),
            "landing links /{page}"
        );
    }
}

// -- the frame in a browser ------------------------------------------------------

#[test]
fn every_page_loads_in_a_browser_without_script_errors() {
    let srv = TestServer::start();
    let Some(mut browser) = Browser::start() else {
        return;
    };
    for page in PAGES {
        browser.goto(&srv.url(&format!("/{page}")));
        let current = browser.wait_for("header.top nav a[aria-current=page]");
        assert!(!current.is_empty());
        assert_eq!(
            browser.attr("header.top nav a[aria-current=page]", "href"),
            Some(format!("/{page}"))
        );
        browser.wait_text("#live", "live");
        browser.screenshot(&format!("frame-{page}"));
    }
    browser.assert_no_js_errors();
}

#[test]
fn logging_in_keeps_the_token_in_the_tab_session_and_logging_out_ends_it() {
    let srv = TestServer::start();
    let Some(mut browser) = Browser::start() else {
        return;
    };
    browser.goto(&srv.url("/stats"));
    browser.type_into("#login-form input[name=username]", ADMIN_USERNAME);
    browser.type_into("#login-form input[name=password]", "wrong password");
    browser.click("#login-form button[type=submit]");
    browser.wait_text("#notices", "Login failed");
    assert!(browser.find("#logout").is_none());

    browser.type_into("#login-form input[name=password]", ADMIN_PASSWORD);
    browser.click("#login-form button[type=submit]");
    browser.wait_text("#account", ADMIN_USERNAME);
    let token = browser.eval("return sessionStorage.getItem('kci-lite.token');", &[]);
    let token = token
        .as_str()
        .expect("a token in sessionStorage")
        .to_string();
    assert!(!browser.url().contains(&token), "the token is in the URL");
    assert_eq!(srv.get("/whoami", Some(&token)).0, 200);
    browser.screenshot("frame-logged-in");

    // another page of the same tab is still logged in
    browser.goto(&srv.url("/viewer"));
    browser.wait_text("#account", ADMIN_USERNAME);

    browser.click("#logout");
    browser.wait_for("#login-form");
    let left = browser.eval("return sessionStorage.getItem('kci-lite.token');", &[]);
    assert_eq!(left, Value::Null);
    // tokens are stateless (API.md 2.1): the tab forgets it, the page
    // reloads logged out
    browser.goto(&srv.url("/stats"));
    browser.wait_for("#login-form");
    browser.assert_no_js_errors();
}

/// Starts a follower in the page that records the sequence numbers and
/// node ids it is handed in `window.seen`.
const RECORD_EVENTS: &str = "
    const done = arguments[arguments.length - 1];
    import('/static/js/console.js').then(async ({ follow }) => {
        window.seen = [];
        const f = follow('node');
        await f.ready;
        f.listen((event) => window.seen.push([event.seq, event.data.id]));
        done(true);
    });";

fn seen(browser: &Browser) -> Vec<(i64, String)> {
    let value = browser.eval("return window.seen || [];", &[]);
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn the_stream_resumes_after_a_server_restart_and_misses_nothing() {
    let Some(mut browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kci.db");
    let start = |bind: Option<std::net::SocketAddr>| {
        let mut launch = ServerProcess::builder()
            .db(&db)
            .current_dir(dir.path())
            .clear_env()
            .env("KCI_INITIAL_PASSWORD", ADMIN_PASSWORD)
            .env("KCI_BCRYPT_COST", "4")
            .env("KEEP_ALIVE_PERIOD", "1");
        if let Some(addr) = bind {
            launch = launch.bind(addr);
        }
        launch.start()
    };
    let agent = client_with_timeout(Duration::from_secs(20));
    let token_of = |base: &str| {
        let mut resp = agent
            .post(format!("{base}/latest/user/login"))
            .send_form([("username", ADMIN_USERNAME), ("password", ADMIN_PASSWORD)])
            .unwrap();
        let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        body["access_token"].as_str().unwrap().to_string()
    };
    let create = |base: &str, token: &str, name: &str| -> String {
        let (status, node) = call_url(
            &agent,
            "POST",
            &format!("{base}/latest/node"),
            Some(token),
            Some(&checkout(name)),
        )
        .unwrap();
        assert_eq!(status, 200, "{node}");
        node["id"].as_str().unwrap().to_string()
    };

    let mut first = start(None);
    let addr = first.addr();
    let base = first.url();
    let token = token_of(&base);
    browser.goto(&format!("{base}/stats"));
    assert_eq!(browser.eval_async(RECORD_EVENTS, &[]), json!(true));
    let mut ids: Vec<String> = (0..3)
        .map(|i| create(&base, &token, &format!("before-{i}")))
        .collect();
    browser.wait_until("the first three events", |b| {
        (seen(b).len() >= 3).then_some(())
    });

    // The browser retries every few seconds while nothing listens; the
    // events made right after the restart are usually committed before it
    // is back, so they reach it by the replay of `Last-Event-ID`.
    first.kill();
    let second = start(Some(addr));
    ids.extend((0..3).map(|i| create(&base, &token, &format!("after-{i}"))));
    browser.wait_until("all six events", |b| (seen(b).len() >= 6).then_some(()));

    let got = seen(&browser);
    let got_ids: Vec<String> = got.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(got_ids, ids, "every event once, in order");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
    browser.screenshot("frame-resumed");
    browser.assert_no_js_errors();
    drop(second);
}

#[test]
fn published_look_alikes_of_node_events_change_nothing_on_the_pages() {
    let srv = TestServer::start();
    let Some(mut browser) = Browser::start() else {
        return;
    };
    let user = srv.make_user(&[]);
    let node = srv.make_node(srv.admin(), &checkout("real"));
    let id = node["id"].as_str().unwrap().to_string();
    browser.goto(&srv.url(&format!("/viewer?node={id}")));
    let badge = "#node-view h1 .badge, #node-view .badge";
    browser.wait_for(badge);
    assert_eq!(browser.eval_async(RECORD_EVENTS, &[]), json!(true));
    // every result the badge ever shows
    browser.eval(
        "window.shown = [];
         const el = document.querySelector(arguments[0]);
         new MutationObserver(() => window.shown.push(el.dataset.result))
             .observe(el, {attributes: true, attributeFilter: ['data-result']});",
        &[json!(badge)],
    );

    // anyone may publish on `node`; the envelope's owner is the publisher
    for owner in [json!("admin"), json!(user.username), Value::Null] {
        let fake = json!({"data": {"op": "updated", "id": id, "kind": "checkout", "name": "real",
                                   "state": "done", "result": "fail", "owner": owner}});
        let (status, body) = srv.post_json("/publish/node", user.auth(), &fake);
        assert_eq!(status, 200, "{body}");
    }
    // A look-alike naming its publisher as owner reaches the follower (it
    // is the publisher's own claim) but no badge of another's node.
    browser.wait_until("the self-named look-alike", |b| {
        (!seen(b).is_empty()).then_some(())
    });
    assert_eq!(browser.attr(badge, "data-result").as_deref(), Some(""));
    let (status, _) = srv.patch_json(
        &format!("/node/{id}"),
        srv.admin(),
        &json!({"state": "done", "result": "pass"}),
    );
    assert_eq!(status, 200);
    browser.wait_until("the real change", |b| {
        (b.attr(badge, "data-result").as_deref() == Some("pass")).then_some(())
    });
    let got = seen(&browser);
    assert_eq!(
        got.len(),
        2,
        "the node event and the self-named one: {got:?}"
    );
    let shown = browser.eval("return window.shown;", &[]);
    assert!(
        !shown.as_array().unwrap().contains(&json!("fail")),
        "{shown}"
    );
    browser.assert_no_js_errors();
}

#[test]
fn the_invite_pages_work_in_a_browser_and_leave_no_token_in_the_address() {
    let srv = TestServer::start();
    let Some(mut browser) = Browser::start() else {
        return;
    };
    // the admin's form
    browser.goto(&srv.url("/user/invite"));
    browser.type_into("#invite-form input[name=admin_token]", srv.admin().unwrap());
    browser.type_into("#invite-form input[name=username]", "newcomer");
    browser.type_into("#invite-form input[name=email]", "newcomer@example.com");
    browser.click("#invite-form input[name=send_email]");
    browser.click("#invite-form button[type=submit]");
    let answer = browser.wait_text("#result", "200");
    assert!(browser.url().ends_with("/user/invite"), "{}", browser.url());
    let body: Value = serde_json::from_str(answer.trim_start_matches("200").trim()).unwrap();
    let token = body["token"].as_str().unwrap().to_string();

    // the invitee's form: the token leaves the address once read
    browser.goto(&srv.url(&format!("/user/accept-invite?token={token}")));
    browser.wait_until("the token to leave the address", |b| {
        (!b.url().contains("token=")).then_some(())
    });
    browser.type_into("#accept-form input[name=password]", "a new password");
    browser.click("#accept-form button[type=submit]");
    browser.wait_text("#result", "200");
    assert_eq!(srv.login("newcomer", "a new password").0, 200);
    browser.assert_no_js_errors();
}

// -- figures ---------------------------------------------------------------------

#[test]
fn server_figures_count_nodes_events_queues_and_streams() {
    let srv = TestServer::start();
    let admin = srv.admin();
    let (status, before) = srv.get("/stats/server", None);
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["events"]["per_minute"].as_array().unwrap().len(), 61);
    assert!(before.get("subscription_backlog").is_none());
    assert!(before["database"]["bytes"].as_u64().unwrap() > 0);

    for i in 0..3 {
        srv.make_node(admin, &checkout(&format!("c{i}")));
    }
    let (status, _) = srv.post_json("/push/work", admin, &json!({"data": {"n": 1}}));
    assert_eq!(status, 200);
    srv.post_json("/push/work", admin, &json!({"data": {"n": 2}}));

    let (_, after) = srv.get("/stats/server", None);
    assert_eq!(after["nodes"], json!({"checkout": 3}));
    assert_eq!(after["nodes_total"], json!(3));
    let per_minute: u64 = after["events"]["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(per_minute, 3, "the three node events of the last hour");
    assert_eq!(
        after["events"]["last_sequence_id"].as_i64().unwrap()
            - before["events"]["last_sequence_id"].as_i64().unwrap(),
        3
    );
    assert_eq!(after["queues"], json!([{"list": "work", "length": 2}]));
    assert!(after["requests"].as_u64().unwrap() > before["requests"].as_u64().unwrap());
}

#[test]
fn an_admin_sees_how_far_behind_each_subscription_is() {
    let srv = TestServer::start();
    let admin = srv.admin();
    let user = srv.make_user(&[]);
    let (status, sub) = srv.post_json("/subscribe/node", admin, &json!({}));
    assert_eq!(status, 200, "{sub}");
    for i in 0..4 {
        srv.make_node(admin, &checkout(&format!("c{i}")));
    }
    let (status, stats) = srv.get("/stats/server", admin);
    assert_eq!(status, 200);
    let mine: Vec<&Value> = stats["subscription_backlog"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"] == sub["id"])
        .collect();
    assert_eq!(mine.len(), 1, "{stats}");
    assert_eq!(mine[0]["channel"], json!("node"));
    assert_eq!(mine[0]["user"], json!(ADMIN_USERNAME));
    assert_eq!(mine[0]["behind"], json!(4));
    assert_eq!(mine[0]["last_poll"], Value::Null);
    assert_eq!(stats["subscriptions"], json!(1));

    // a listen hands one event over: one fewer behind
    let (status, _) = srv.get(&format!("/listen/{}", sub["id"]), admin);
    assert_eq!(status, 200);
    let (_, stats) = srv.get("/stats/server", admin);
    assert_eq!(stats["subscription_backlog"][0]["behind"], json!(3));

    // others see the totals only; a bad token is refused
    let (status, stats) = srv.get("/stats/server", user.auth());
    assert_eq!(status, 200);
    assert!(stats.get("subscription_backlog").is_none());
    let (status, body) = srv.get("/stats/server", Some("not-a-token"));
    assert_eq!(status, 401, "{body}");
}

#[test]
fn metrics_carry_the_server_figures() {
    let srv = TestServer::start();
    srv.make_node(srv.admin(), &checkout("c"));
    let reply = srv.request("GET", "/metrics", None, Body::None);
    assert_eq!(reply.status, 200);
    let text = reply.text.clone();
    for line in [
        "kci_nodes{kind=\"checkout\"} 1",
        "kci_event_sequence 1",
        "kci_subscriptions 0",
        "kci_streams_open 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    assert!(text.contains("kci_database_bytes{file=\"main\"} "));
    assert!(text.contains("# TYPE kci_nodes gauge"));
}
