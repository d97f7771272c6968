//! The console's manage page (API.md 18.6) in a real browser: logging in
//! through the page's header form (the token stays in sessionStorage, never
//! in the URL), submitting nodes from the JSON editor with the contract's
//! validation errors shown beside it, editing a node's state and result
//! (and seeing someone else's change live), and the administrators' users,
//! groups and invites sections, which other users do not get.
#![allow(clippy::unwrap_used)]

mod common;

use common::browser::Browser;
use common::{ADMIN_PASSWORD, ADMIN_USERNAME, MISSING_ID, TestServer, TestUser, uniq};
use serde_json::{Value, json};

const TOKEN_KEY: &str = "kci-lite.token";

/// Logs in through the header form, with the keyboard (Enter submits).
fn login(b: &Browser, username: &str, password: &str) {
    b.wait_for("#login-form");
    b.type_into("#login-form input[name=username]", username);
    b.type_into(
        "#login-form input[name=password]",
        &format!("{password}\u{E007}"),
    );
    b.wait_text("#account .who", username);
    b.wait_for("#submit-panel");
}

fn stored_token(b: &Browser) -> Option<String> {
    b.eval(
        "return sessionStorage.getItem(arguments[0]);",
        &[json!(TOKEN_KEY)],
    )
    .as_str()
    .map(str::to_string)
}

fn value(b: &Browser, selector: &str) -> String {
    b.eval(
        "return document.querySelector(arguments[0]).value;",
        &[json!(selector)],
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn node_count(srv: &TestServer) -> u64 {
    let (status, count) = srv.get("/count", None);
    assert_eq!(status, 200, "{count}");
    count.as_u64().expect("an integer")
}

fn checkout(name: &str) -> Value {
    json!({"kind": "checkout", "name": name, "path": ["checkout"],
           "data": {"kernel_revision": {"tree": "mainline", "url": "https://git.example.org/linux.git",
                                        "branch": "master", "commit": "abc123"}}})
}

/// Opens the manage page (at `path`) logged in as `user`.
fn open_as(b: &Browser, srv: &TestServer, path: &str, user: &TestUser) {
    b.goto(&srv.url(path));
    login(b, &user.username, &user.password);
}

#[test]
fn login_keeps_the_token_in_session_storage_and_logout_clears_it() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.goto(&srv.url("/manage"));
    b.wait_text("#login-needed", "needs a login");
    assert_eq!(b.count("#submit-panel, #edit-panel, .admin"), 0);
    b.screenshot("manage-logged-out");

    login(&b, ADMIN_USERNAME, ADMIN_PASSWORD);
    let token = stored_token(&b).expect("a token in sessionStorage");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert!(!b.url().contains(&token), "token in the URL: {}", b.url());
    let (status, me) = srv.get("/whoami", Some(&token));
    assert_eq!(
        (status, me["username"].clone()),
        (200, json!(ADMIN_USERNAME))
    );
    let elsewhere = b.eval("return localStorage.length + document.cookie.length;", &[]);
    assert_eq!(
        elsewhere,
        json!(0),
        "the token is kept only in sessionStorage"
    );
    b.wait_for("#admin-users");
    b.wait_for("#admin-groups");
    b.wait_for("#admin-invite");
    b.screenshot("manage");

    b.click("#logout");
    b.wait_text("#login-needed", "needs a login");
    assert_eq!(stored_token(&b), None);
    assert_eq!(b.count("#submit-panel, .admin"), 0);

    // A normal user gets the node sections and none of the admin ones.
    login(&b, &user.username, &user.password);
    b.wait_for("#edit-panel");
    assert_eq!(b.count("#admin-users, #admin-groups, #admin-invite"), 0);
    assert!(!b.text("main").unwrap_or_default().contains("Invite a user"));
    assert!(!b.url().contains(&stored_token(&b).unwrap()));
    b.screenshot("manage-user");
    b.click("#logout");
    b.wait_for("#login-needed");
    assert_eq!(stored_token(&b), None);
    b.assert_no_js_errors();
}

#[test]
fn a_node_submitted_from_the_editor_exists_in_the_api() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let Some(mut b) = Browser::start() else {
        return;
    };
    open_as(&b, &srv, "/manage", &user);

    // Each kind has a template; a kind change replaces only an untouched one.
    b.choose("#node-kind", "kbuild");
    let kbuild: Value = serde_json::from_str(&value(&b, "#node-json")).unwrap();
    assert_eq!(kbuild["kind"], "kbuild");
    assert!(kbuild["data"]["kernel_revision"]["tree"].is_string());
    let name = uniq("checkout");
    b.type_into("#node-json", &checkout(&name).to_string());
    b.choose("#node-kind", "test");
    assert!(value(&b, "#node-json").contains(&name), "edited text kept");

    b.click("#submit-node");
    b.wait_for("#submit-result a.node-link");
    let href = b.attr("#submit-result a.node-link", "href").unwrap();
    let id = href.strip_prefix("/viewer?node=").expect("a viewer link");
    let (status, node) = srv.get(&format!("/node/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(node["name"], json!(name));
    assert_eq!(node["kind"], "checkout");
    assert_eq!(node["owner"], json!(user.username));
    assert_eq!(node["data"]["kernel_revision"]["tree"], "mainline");
    b.wait_text("#submit-result", &name);
    assert_ne!(
        b.attr("#node-json", "aria-invalid").as_deref(),
        Some("true")
    );
    assert!(
        b.eval(
            "return document.getElementById('submit-errors').hidden;",
            &[]
        ) == json!(true)
    );
    b.screenshot("manage-submitted");
    // "edit it below" loads the new node into the edit panel.
    b.click("#submit-result a[href^='?node=']");
    b.wait_text("#edit-node", &name);
    b.wait_text("#edit-node .badge", "running");
    assert_eq!(value(&b, "#edit-id"), id);

    // Every template is a valid node of its kind ("Use template" + Submit).
    for kind in ["checkout", "kbuild", "job", "test", "regression", "process"] {
        b.choose("#node-kind", kind);
        b.click("#use-template");
        let before = node_count(&srv);
        b.click("#submit-node");
        b.wait_until(&format!("the {kind} template to be created"), |_| {
            (node_count(&srv) == before + 1).then_some(())
        });
        b.wait_for("#submit-result a.node-link");
        let href = b.attr("#submit-result a.node-link", "href").unwrap();
        let (_, node) = srv.get(&format!("/node/{}", &href["/viewer?node=".len()..]), None);
        assert_eq!(node["kind"], json!(kind));
    }
    b.assert_no_js_errors();
}

#[test]
fn validation_errors_and_bad_json_show_beside_the_editor() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let Some(mut b) = Browser::start() else {
        return;
    };
    open_as(&b, &srv, "/manage", &user);
    let before = node_count(&srv);

    // Not JSON: the browser's own parse error, and nothing is sent.
    let broken = r#"{"kind": "checkout", "name": "x", "path": ["checkout"],"#;
    b.type_into("#node-json", broken);
    // Ctrl+Enter in the editor submits (a key event, as WebDriver would send).
    b.eval(
        "document.getElementById('node-json').dispatchEvent(new KeyboardEvent('keydown',
           {key: 'Enter', ctrlKey: true, bubbles: true, cancelable: true}));",
        &[],
    );
    let parse = b.eval(
        "try { JSON.parse(arguments[0]); } catch (e) { return e.message; } return null;",
        &[json!(broken)],
    );
    let parse = parse.as_str().expect("a parse error").to_string();
    b.wait_text("#submit-errors", &parse);
    assert_eq!(
        b.attr("#node-json", "aria-invalid").as_deref(),
        Some("true")
    );
    b.screenshot("manage-errors-json");
    assert_eq!(node_count(&srv), before, "invalid JSON must not be sent");

    // A checkout whose revision lacks its tree (400 from the kind check).
    let mut no_tree = checkout("no-tree");
    no_tree["data"]["kernel_revision"]
        .as_object_mut()
        .unwrap()
        .remove("tree");
    b.type_into("#node-json", &no_tree.to_string());
    b.click("#submit-node");
    let shown = b.wait_text("#submit-errors", "data.kernel_revision.tree");
    assert!(shown.contains("Field required"), "{shown}");
    // The field is named on its own, beside its message.
    assert_eq!(
        b.text("#submit-errors li code").as_deref(),
        Some("data.kernel_revision.tree")
    );
    assert!(!shown.contains(&parse), "old problems cleared: {shown}");
    assert_eq!(
        b.attr("#node-json", "aria-invalid").as_deref(),
        Some("true")
    );

    // An unknown kind.
    let mut bad_kind = checkout("bad-kind");
    bad_kind["kind"] = json!("nonsense");
    b.type_into("#node-json", &bad_kind.to_string());
    b.click("#submit-node");
    let shown = b.wait_text("#submit-errors", "Unsupported node kind: nonsense");
    assert!(shown.contains("kind →"), "the field is named: {shown}");

    // Schema errors (422): every item, each with its field.
    b.type_into(
        "#node-json",
        r#"{"kind": "checkout", "path": ["checkout"], "state": "sleeping"}"#,
    );
    b.click("#submit-node");
    b.wait_text("#submit-errors", "name →");
    b.wait_text("#submit-errors", "state →");
    assert!(b.count("#submit-errors li") >= 2);
    b.screenshot("manage-errors");
    assert_eq!(node_count(&srv), before, "no invalid node was created");

    // Fixed: the problems go away.
    b.type_into("#node-json", &checkout(&uniq("fixed")).to_string());
    b.click("#submit-node");
    b.wait_for("#submit-result a.node-link");
    assert_eq!(b.count("#submit-errors li"), 0);
    assert_eq!(b.attr("#node-json", "aria-invalid"), None);
    assert_eq!(node_count(&srv), before + 1);
    b.assert_no_js_errors();
}

#[test]
fn editing_state_and_result_reaches_the_api_and_follows_other_changes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let mine = srv.make_node(user.auth(), &checkout(&uniq("mine")));
    let mine_id = mine["id"].as_str().unwrap();
    let Some(mut b) = Browser::start() else {
        return;
    };
    open_as(&b, &srv, &format!("/manage?node={mine_id}"), &user);
    b.wait_text("#edit-node .badge", "running");
    b.wait_text("#edit-hint", "may go to available, closing, done");
    assert_eq!(value(&b, "#edit-state"), "running");
    assert_eq!(value(&b, "#edit-result"), "none");
    b.choose("#edit-state", "done");
    b.choose("#edit-result", "pass");
    b.click("#save-node");
    b.wait_text("#edit-node .badge", "done · pass");
    let (_, node) = srv.get(&format!("/node/{mine_id}"), None);
    assert_eq!(
        (node["state"].clone(), node["result"].clone()),
        (json!("done"), json!("pass"))
    );
    // From done nothing else is allowed: the other states are disabled.
    let disabled = b.eval(
        "return [...document.querySelectorAll('#edit-state option:disabled')].map(o => o.value);",
        &[],
    );
    assert_eq!(disabled, json!(["running", "available", "closing"]));
    b.wait_text("#edit-hint", "keeps its state");
    assert!(b.url().contains(&format!("?node={mine_id}")));
    assert!(!b.url().contains(&stored_token(&b).unwrap()));
    b.screenshot("manage-edit");

    // Someone else changes the node being shown: the badge follows.
    let other = srv.make_node(user.auth(), &checkout(&uniq("other")));
    let other_id = other["id"].as_str().unwrap();
    // It appears first in "Your latest nodes" (through the event stream).
    let item = format!("#recent-nodes li[data-node='{other_id}']");
    b.wait_for(&item);
    assert!(
        b.text("#recent-nodes li")
            .unwrap()
            .contains(other["name"].as_str().unwrap()),
        "newest first"
    );
    assert!(
        b.text("#recent-nodes")
            .unwrap()
            .contains(mine["name"].as_str().unwrap())
    );
    b.click(&format!("{item} button"));
    b.wait_text("#edit-node", other["name"].as_str().unwrap());
    b.wait_text("#edit-node .badge", "running");
    let (status, _) = srv.patch_json(
        &format!("/node/{other_id}"),
        srv.admin(),
        &json!({"state": "available", "result": "fail"}),
    );
    assert_eq!(status, 200);
    b.wait_text("#edit-node .badge", "available · fail");
    b.wait_text(&format!("{item} .badge"), "available · fail");
    b.wait_until("the selects to follow", |b| {
        (value(b, "#edit-state") == "available" && value(b, "#edit-result") == "fail").then_some(())
    });

    // A node the user may not edit: warned, and the server's 401 is shown.
    let admins = srv.make_node(srv.admin(), &checkout(&uniq("admins")));
    let admins_id = admins["id"].as_str().unwrap();
    b.type_into("#edit-id", &format!("{admins_id}\u{E007}"));
    b.wait_text("#edit-node", "may not be allowed");
    b.choose("#edit-state", "done");
    b.click("#save-node");
    b.wait_text("#edit-errors", "Unauthorized to complete the operation");
    let (_, node) = srv.get(&format!("/node/{admins_id}"), None);
    assert_eq!(node["state"], "running");

    // An unknown id.
    b.type_into("#edit-id", &format!("{MISSING_ID}\u{E007}"));
    b.wait_text("#edit-errors", "No node with id");
    assert_eq!(b.attr("#edit-id", "aria-invalid").as_deref(), Some("true"));
    assert_eq!(b.count("#edit-form"), 0);
    b.screenshot("manage-edit-errors");
    b.assert_no_js_errors();
}

#[test]
fn an_admin_manages_groups_invites_and_users() {
    let srv = TestServer::start();
    let Some(mut b) = Browser::start() else {
        return;
    };
    b.goto(&srv.url("/manage"));
    login(&b, ADMIN_USERNAME, ADMIN_PASSWORD);
    b.wait_text("#users-body", ADMIN_USERNAME);
    // The admin cannot lock themselves out from here.
    assert_eq!(
        b.eval(
            "return document.querySelector('#users-body tr[data-user=admin] .delete-user').disabled;",
            &[]
        ),
        json!(true)
    );

    // A group.
    let group = uniq("team");
    b.type_into("#group-name", &format!("{group}\u{E007}"));
    b.wait_for(&format!("#groups-list li[data-group='{group}']"));
    let (_, page) = srv.get(&format!("/user-groups?name={group}"), srv.admin());
    assert_eq!(page["total"], 1, "{page}");
    b.type_into("#group-name", &format!("{group}\u{E007}"));
    b.wait_text("#group-errors", "already exists");
    assert_eq!(
        b.attr("#group-name", "aria-invalid").as_deref(),
        Some("true")
    );

    // An invite into that group, with the link to hand over.
    let username = uniq("invitee");
    b.type_into("#invite-username", &username);
    b.type_into("#invite-email", &format!("{username}@example.com"));
    b.type_into("#invite-groups", &group);
    b.click("#invite-superuser");
    b.click("#send-invite");
    b.wait_for("#invite-url");
    let link = value(&b, "#invite-url");
    b.click("#invite-result summary");
    let token = b.wait_until("the token", |b| {
        b.text("#invite-token").filter(|t| !t.is_empty())
    });
    assert!(link.contains("/user/accept-invite?token="), "{link}");
    assert!(link.ends_with(&token), "{link} / {token}");
    b.wait_for(&format!("#users-body tr[data-user='{username}']"));
    let (_, users) = srv.get(&format!("/users?username={username}"), srv.admin());
    let invited = users["items"][0].clone();
    assert_eq!(invited["groups"][0]["name"], json!(group), "{users}");
    assert_eq!(invited["is_superuser"], true, "{users}");
    let (status, accepted) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": token, "password": "a-new-password"}),
    );
    assert_eq!(status, 200, "the shown token works: {accepted}");
    b.screenshot("manage-admin");

    // A bad e-mail is named beside its field.
    b.type_into("#invite-username", &uniq("bad"));
    b.type_into("#invite-email", "not-an-address");
    b.click("#send-invite");
    b.wait_text("#invite-errors", "email");
    assert_eq!(
        b.attr("#invite-email", "aria-invalid").as_deref(),
        Some("true")
    );
    b.screenshot("manage-admin-errors");

    // Flags and deletion, by user id.
    let id = invited["id"].as_str().unwrap().to_string();
    let row = format!("#users-body tr[data-user='{username}']");
    b.click(&format!("{row} .toggle-active"));
    b.wait_until("the user to be deactivated", |_| {
        let (_, u) = srv.get(&format!("/user/{id}"), srv.admin());
        (u["is_active"] == false).then_some(())
    });
    b.wait_until("the button to show it", |b| {
        (b.attr(&format!("{row} .toggle-active"), "aria-pressed")
            .as_deref()
            == Some("false"))
        .then_some(())
    });

    // The group is still used: the 409 is shown and it stays.
    let item = format!("#groups-list li[data-group='{group}']");
    b.click(&format!("{item} .delete-group"));
    b.click(&format!("{item} .confirm-delete"));
    b.wait_text("#notices", "cannot be deleted");

    b.click(&format!("{row} .delete-user"));
    b.wait_text(&row, "Delete");
    b.click(&format!("{row} .confirm-delete"));
    b.wait_until("the row to go", |b| (b.count(&row) == 0).then_some(()));
    let (status, _) = srv.get(&format!("/user/{id}"), srv.admin());
    assert_eq!(status, 404);

    b.click(&format!("{item} .delete-group"));
    b.click(&format!("{item} .confirm-delete"));
    b.wait_until("the group to go", |b| (b.count(&item) == 0).then_some(()));
    let (_, page) = srv.get(&format!("/user-groups?name={group}"), srv.admin());
    assert_eq!(page["total"], 0, "{page}");
    b.assert_no_js_errors();
}

#[test]
fn the_page_is_usable_on_a_phone() {
    let srv = TestServer::start();
    let Some(mut b) = Browser::start() else {
        return;
    };
    for n in 0..20 {
        srv.register(&uniq(&format!("u{n}")), "a-password");
    }
    b.window(390, 844);
    b.goto(&srv.url("/manage"));
    b.wait_for("#login-needed");
    login(&b, ADMIN_USERNAME, ADMIN_PASSWORD);
    b.wait_text("#users-body", ADMIN_USERNAME);
    b.wait_for("#groups-list li");
    let fits = || {
        b.eval(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            &[],
        )
    };
    assert_eq!(fits(), json!(true), "no sideways scrolling at 390 px");
    b.screenshot("manage-phone");

    // 21 users: pages of 20.
    b.wait_text("#admin-users .pager", "1–20 of 21 users");
    assert_eq!(b.count("#users-body tr"), 20);
    b.click("#admin-users .pager button:last-child");
    b.wait_text("#admin-users .pager", "21–21 of 21 users");
    assert_eq!(b.count("#users-body tr"), 1);

    b.type_into(
        "#node-json",
        r#"{"kind": "bogus", "name": "n", "path": ["n"]}"#,
    );
    b.click("#submit-node");
    b.wait_text("#submit-errors", "Unsupported node kind");
    assert_eq!(fits(), json!(true));
    b.eval(
        "document.getElementById('submit-errors').scrollIntoView();",
        &[],
    );
    b.screenshot("manage-phone-errors");
    b.assert_no_js_errors();
}
