//! The console's pages (API.md 18.6): served at their paths with and without
//! `/latest`, the frame every page shares (navigation, login and logout, the
//! live indicator), and the figures of `GET /stats/server` and `/metrics`.
#![allow(clippy::unwrap_used)]

mod common;

use common::browser::Browser;
use common::{ADMIN_PASSWORD, ADMIN_USERNAME, Body, TestServer};

const PAGES: [&str; 5] = ["viewer", "dashboard", "manage", "analytics", "stats"];

#[test]
fn every_page_loads_in_a_browser_without_script_errors() {
    let srv = TestServer::start();
    let Some(mut browser) = Browser::start() else {
        return;
    };
    for page in PAGES {
        browser.goto(&srv.url(&format!("/{page}")));
        browser.wait_for("header.top nav a[aria-current=page]");
        browser.wait_text("#live", "live");
        browser.screenshot(&format!("frame-{page}"));
    }
    browser.assert_no_js_errors();
}
