//! Users: login, tokens, register, invites, whoami, listing, self and admin
//! updates, deletion and the password flows (API.md sections 2 and 4).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use kci_lite::auth::{Extra, Purpose};
use serde_json::{Value, json};

fn email_of(name: &str) -> String {
    format!("{name}@example.com")
}

/// How many users match `query` (as the admin sees them).
fn user_count(srv: &TestServer, query: &str) -> u64 {
    let (status, page) = srv.get(&format!("/users{query}"), srv.admin());
    assert_eq!(status, 200, "{page}");
    page["total"].as_u64().expect("total")
}

fn whoami(srv: &TestServer, token: &str) -> (u16, Value) {
    srv.get("/whoami", Some(token))
}

// -- login ---------------------------------------------------------------------------

#[test]
fn login_returns_bearer_token_with_fastapi_users_claims() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.login(&user.username, &user.password);
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["access_token", "token_type"]);
    assert_eq!(body["token_type"], "bearer");
    let token = body["access_token"].as_str().expect("token");
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["sub"], user.id.as_str());
    let aud = claims["aud"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![claims["aud"].clone()]);
    assert!(aud.contains(&json!("fastapi-users:auth")), "{claims}");
    // default lifetime: 315360000 s (10 years)
    let exp = claims["exp"].as_i64().expect("exp");
    assert!((exp - now_secs() - 315_360_000).abs() < 120, "exp {exp}");
    let (status, me) = whoami(&srv, token);
    assert_eq!(status, 200);
    assert_eq!(me["id"], user.id.as_str());
}

#[test]
fn login_wrong_password_and_unknown_user() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.login(&user.username, "not-the-password");
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    let (status, body) = srv.login(&uniq("nobody"), "whatever");
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    // usernames are case-sensitive
    let (status, body) = srv.login(&user.username.to_uppercase(), &user.password);
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
}

#[test]
fn login_is_by_username_never_by_email() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.login(&user.email, &user.password);
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    let (status, body) = srv.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
}

#[test]
fn login_missing_fields_are_422() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.post_form("/user/login", &[("username", &user.username)]);
    assert_422(
        status,
        &body,
        &[json!("body"), json!("password")],
        Some("missing"),
    );
    let (status, body) = srv.post_form("/user/login", &[]);
    assert_422(
        status,
        &body,
        &[json!("body"), json!("username")],
        Some("missing"),
    );
    assert_422(
        status,
        &body,
        &[json!("body"), json!("password")],
        Some("missing"),
    );
}

#[test]
fn login_with_json_body_is_422() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.post_json(
        "/user/login",
        None,
        &json!({"username": user.username, "password": user.password}),
    );
    assert_422(status, &body, &[json!("body")], None);
}

#[test]
fn login_accepts_multipart_form() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let body = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n{}\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{}\r\n--XyZ--\r\n",
        user.username, user.password
    );
    let reply = srv.request(
        "POST",
        "/user/login",
        None,
        Body::Raw(body.as_bytes(), Some("multipart/form-data; boundary=XyZ")),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["token_type"], "bearer");
}

#[test]
fn login_unverified_user() {
    let srv = TestServer::start();
    let name = uniq("unver");
    srv.register(&name, "pw-unverified");
    let (status, body) = srv.login(&name, "pw-unverified");
    assert_detail(status, &body, 400, "LOGIN_USER_NOT_VERIFIED");
    // a wrong password does not reveal that the account exists
    let (status, body) = srv.login(&name, "wrong");
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
}

#[test]
fn inactive_user_cannot_log_in_and_token_dies() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    assert_eq!(whoami(&srv, &user.token).0, 200);
    let (status, body) = srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"is_active": false}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_active"], false);
    let (status, body) = srv.login(&user.username, &user.password);
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    let (status, body) = whoami(&srv, &user.token);
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = srv.get("/users", user.auth());
    assert_detail(status, &body, 401, "Unauthorized");
    // tokens are stateless: reactivating brings the old token back
    let (status, _) = srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"is_active": true}),
    );
    assert_eq!(status, 200);
    assert_eq!(whoami(&srv, &user.token).0, 200);
}

// -- tokens ---------------------------------------------------------------------------

#[test]
fn missing_token_is_401() {
    let srv = TestServer::start();
    for (status, body) in [
        srv.get("/whoami", None),
        srv.get("/users", None),
        srv.post_json("/node", None, &json!({"name": "x", "path": ["x"]})),
        srv.post_json("/user-groups", None, &json!({"name": uniq("g")})),
    ] {
        assert_detail(status, &body, 401, "Unauthorized");
    }
}

#[test]
fn garbage_authorization_headers_are_401() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let no_scheme = user.token.clone();
    let basic = format!("Basic {}", user.token);
    for header in [
        "Bearer garbage",
        "Bearer a.b.c",
        "Token abc",
        "Bearer",
        "bearer",
        &no_scheme,
        &basic,
    ] {
        let reply = srv.request_full(
            "GET",
            "/latest/whoami",
            None,
            &[("Authorization", header)],
            Body::None,
        );
        let (status, body) = reply.pair();
        assert_detail(status, &body, 401, "Unauthorized");
    }
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let header = format!("{scheme} {}", user.token);
        let reply = srv.request_full(
            "GET",
            "/latest/whoami",
            None,
            &[("Authorization", &header)],
            Body::None,
        );
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.text);
        assert_eq!(reply.json()["id"], user.id.as_str());
    }
}

#[test]
fn forged_and_tampered_tokens_are_401() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    // right claims, wrong key
    let forged = access_token("not-the-server-secret-at-all", &user.id, 3600);
    let (status, body) = whoami(&srv, &forged);
    assert_detail(status, &body, 401, "Unauthorized");
    // a valid token whose payload was swapped for another user's
    let admin_id = srv.get("/whoami", srv.admin()).1["id"]
        .as_str()
        .expect("id")
        .to_string();
    let parts: Vec<&str> = user.token.split('.').collect();
    let (_, mut claims) = jwt_parts(&user.token);
    claims["sub"] = json!(admin_id);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims.to_string().as_bytes()),
        parts[2]
    );
    let (status, body) = whoami(&srv, &tampered);
    assert_detail(status, &body, 401, "Unauthorized");
    // unsigned ("alg": "none")
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(
            json!({"sub": user.id, "aud": ["fastapi-users:auth"], "exp": now_secs() + 3600})
                .to_string()
                .as_bytes()
        )
    );
    let (status, body) = whoami(&srv, &none);
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn token_minted_with_the_server_secret_is_accepted() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let secret = srv.secret.clone().expect("secret");
    let token = access_token(&secret, &user.id, 3600);
    let (status, body) = whoami(&srv, &token);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], user.username.as_str());
    // tokens without `exp` are accepted too
    let token = mint_hs256(
        &secret,
        &json!({"sub": user.id, "aud": ["fastapi-users:auth"]}),
    );
    let (status, body) = whoami(&srv, &token);
    assert_eq!(status, 200, "token without exp: {body}");
}

#[test]
fn expired_wrong_audience_unknown_subject_tokens_are_401() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let secret = srv.secret.clone().expect("secret");
    let expired = access_token(&secret, &user.id, -60);
    let wrong_aud = mint_hs256(
        &secret,
        &json!({"sub": user.id, "aud": ["fastapi-users:reset"], "exp": now_secs() + 3600}),
    );
    let no_aud = mint_hs256(&secret, &json!({"sub": user.id, "exp": now_secs() + 3600}));
    let unknown = access_token(&secret, MISSING_ID, 3600);
    for token in [expired, wrong_aud, no_aud, unknown] {
        let (status, body) = whoami(&srv, &token);
        assert_detail(status, &body, 401, "Unauthorized");
    }
}

#[test]
fn token_with_another_algorithm_is_401() {
    use jwt_simple::prelude::*;
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let secret = srv.secret.clone().expect("secret");
    let claims = Claims::create(jwt_simple::prelude::Duration::from_hours(1))
        .with_subject(&user.id)
        .with_audience("fastapi-users:auth");
    let token = HS384Key::from_bytes(secret.as_bytes())
        .authenticate(claims)
        .expect("sign");
    assert_eq!(jwt_parts(&token).0["alg"], "HS384");
    let (status, body) = whoami(&srv, &token);
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn deleted_users_token_is_401() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    assert_eq!(whoami(&srv, &user.token).0, 200);
    let (status, body) = srv.delete(&format!("/user/{}", user.id), srv.admin());
    assert_eq!((status, body), (200, Value::Null));
    let (status, body) = whoami(&srv, &user.token);
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = srv.post_json("/node", user.auth(), &json!({"name": "n", "path": ["n"]}));
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn logout_is_204_and_does_not_revoke() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let reply = srv.request("POST", "/user/logout", user.auth(), Body::None);
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(reply.text, "");
    assert_eq!(whoami(&srv, &user.token).0, 200);
    let (status, body) = srv.post_json("/user/logout", None, &json!({}));
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn invite_token_is_not_an_access_token_and_vice_versa() {
    let srv = TestServer::start();
    let name = uniq("inv");
    let invite = srv.invite(&name, &email_of(&name), &[]);
    let invite_token = invite["token"].as_str().expect("token");
    let (status, body) = whoami(&srv, invite_token);
    assert_detail(status, &body, 401, "Unauthorized");
    let user = srv.make_user(&[]);
    let (status, body) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": user.token, "password": "x"}),
    );
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail == "Invalid or expired invite token" || detail == "Invalid invite token",
        "{detail}"
    );
    // the user's password did not change
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
}

// -- whoami ----------------------------------------------------------------------------

#[test]
fn whoami_shape_and_key_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, me) = whoami(&srv, &user.token);
    assert_eq!(status, 200);
    assert_user_shape(&me);
    assert_eq!(
        me,
        json!({"id": user.id, "email": user.email, "is_active": true, "is_superuser": false,
               "is_verified": true, "username": user.username, "groups": []})
    );
    let (status, same) = srv.get("/user/me", user.auth());
    assert_eq!((status, &same), (200, &me));
    let (status, by_id) = srv.get(&format!("/user/{}", user.id), user.auth());
    assert_eq!((status, &by_id), (200, &me));
}

#[test]
fn initial_admin_is_a_verified_superuser() {
    let srv = TestServer::start();
    let (status, me) = srv.get("/whoami", srv.admin());
    assert_eq!(status, 200);
    assert_user_shape(&me);
    assert_eq!(me["username"], ADMIN_USERNAME);
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(
        (&me["is_active"], &me["is_superuser"], &me["is_verified"]),
        (&json!(true), &json!(true), &json!(true))
    );
}

#[test]
fn whoami_needs_verification_but_users_list_does_not() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    // changing the e-mail makes the user unverified; the token stays valid
    let (status, body) = srv.patch_json(
        "/user/me",
        user.auth(),
        &json!({"email": email_of(&uniq("moved"))}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_verified"], false);
    let (status, body) = whoami(&srv, &user.token);
    assert_detail(status, &body, 403, "Forbidden");
    let reply = srv.request("POST", "/user/logout", user.auth(), Body::None);
    assert_eq!(reply.status, 403, "{}", reply.text);
    let (status, page) = srv.get("/users", user.auth());
    assert_eq!(status, 200, "{page}");
}

// -- register --------------------------------------------------------------------------

#[test]
fn register_regular_user() {
    let srv = TestServer::start();
    let name = uniq("reg");
    let (status, body) = srv.post_json(
        "/user/register",
        srv.admin(),
        &json!({"username": name, "email": email_of(&name), "password": "test"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_user_shape(&body);
    assert_eq!(body["username"], name.as_str());
    assert_eq!(body["email"], email_of(&name).as_str());
    assert_eq!(
        (
            &body["is_active"],
            &body["is_superuser"],
            &body["is_verified"]
        ),
        (&json!(true), &json!(false), &json!(false))
    );
    assert_eq!(body["groups"], json!([]));
    let (status, read) = srv.get(
        &format!("/user/{}", body["id"].as_str().unwrap()),
        srv.admin(),
    );
    assert_eq!((status, &read), (200, &body));
}

#[test]
fn register_superuser_in_groups_and_ignored_flags() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let name = uniq("regadm");
    let (status, body) = srv.post_json(
        "/user/register",
        srv.admin(),
        &json!({"username": name, "email": email_of(&name), "password": "admin",
                "is_superuser": 1, "groups": [group["name"]],
                "is_verified": true, "is_active": false}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_superuser"], true);
    assert_eq!(
        body["is_verified"], false,
        "is_verified in the body is ignored"
    );
    assert_eq!(body["is_active"], true, "is_active in the body is ignored");
    assert_eq!(body["groups"], json!([group]));
    let (status, body) = srv.login(&name, "admin");
    assert_detail(status, &body, 400, "LOGIN_USER_NOT_VERIFIED");
}

#[test]
fn register_needs_admin_and_creates_nothing_otherwise() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let name = uniq("x");
    let body = json!({"username": name, "email": email_of(&name), "password": "p"});
    let (status, resp) = srv.post_json("/user/register", user.auth(), &body);
    assert_detail(status, &resp, 403, "Forbidden");
    let (status, resp) = srv.post_json("/user/register", None, &body);
    assert_detail(status, &resp, 401, "Unauthorized");
    assert_eq!(user_count(&srv, &qs(&[("username", &name)])), 0);
}

#[test]
fn register_duplicate_username_creates_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let before = user_count(&srv, "");
    let new_email = email_of(&uniq("dup"));
    let (status, body) = srv.post_json(
        "/user/register",
        srv.admin(),
        &json!({"username": user.username, "email": new_email, "password": "p"}),
    );
    assert_detail(
        status,
        &body,
        400,
        &format!("Username already exists: {}", user.username),
    );
    assert_eq!(user_count(&srv, ""), before);
    assert_eq!(user_count(&srv, &qs(&[("email", &new_email)])), 0);
    // the existing user is untouched
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
}

#[test]
fn register_duplicate_email_is_case_insensitive_and_creates_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let before = user_count(&srv, "");
    for email in [user.email.clone(), user.email.to_uppercase()] {
        let name = uniq("dup");
        let (status, body) = srv.post_json(
            "/user/register",
            srv.admin(),
            &json!({"username": name, "email": email, "password": "p"}),
        );
        assert_detail(status, &body, 400, "REGISTER_USER_ALREADY_EXISTS");
        assert_eq!(user_count(&srv, &qs(&[("username", &name)])), 0);
    }
    assert_eq!(user_count(&srv, ""), before);
}

#[test]
fn register_unknown_group_creates_nothing() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let missing = uniq("nogroup");
    let name = uniq("r");
    let (status, body) = srv.post_json(
        "/user/register",
        srv.admin(),
        &json!({"username": name, "email": email_of(&name), "password": "p",
                "groups": [group["name"], missing]}),
    );
    assert_detail(
        status,
        &body,
        400,
        &format!("User group does not exist with name: {missing}"),
    );
    assert_eq!(user_count(&srv, &qs(&[("username", &name)])), 0);
}

#[test]
fn register_schema_errors_are_422() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let cases = [
        (
            json!({"username": "u", "email": "not-an-email", "password": "p"}),
            "email",
        ),
        (
            json!({"username": "u", "email": "u@example.com"}),
            "password",
        ),
        (
            json!({"email": "u@example.com", "password": "p"}),
            "username",
        ),
        (
            json!({"username": 5, "email": "u@example.com", "password": "p"}),
            "username",
        ),
        (
            json!({"username": "u", "email": "u@example.com", "password": "p",
                "groups": [group["name"], group["name"]]}),
            "groups",
        ),
        (
            json!({"username": "u", "email": "u@example.com", "password": "p", "groups": "g"}),
            "groups",
        ),
        (
            json!({"username": "u", "email": "u@example.com", "password": "p", "is_superuser": "maybe"}),
            "is_superuser",
        ),
    ];
    for (body, field) in cases {
        let (status, resp) = srv.post_json("/user/register", srv.admin(), &body);
        assert_422(status, &resp, &[json!("body"), json!(field)], None);
    }
    // all problems are reported, not only the first
    let (status, resp) = srv.post_json("/user/register", srv.admin(), &json!({}));
    for field in ["username", "email", "password"] {
        assert_422(
            status,
            &resp,
            &[json!("body"), json!(field)],
            Some("missing"),
        );
    }
    // empty body, a JSON array, a non-JSON content type
    let reply = srv.request("POST", "/user/register", srv.admin(), Body::None);
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("missing"),
    );
    let (status, resp) = srv.post_json("/user/register", srv.admin(), &json!([1]));
    assert_422(status, &resp, &[json!("body")], None);
    let reply = srv.request(
        "POST",
        "/user/register",
        srv.admin(),
        Body::Raw(
            br#"{"username": "u", "email": "u@example.com", "password": "p"}"#,
            Some("text/plain"),
        ),
    );
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("model_attributes_type"),
    );
    assert_eq!(user_count(&srv, &qs(&[("username", "u")])), 0);
}

#[test]
fn register_check_order_json_syntax_then_auth_then_schema() {
    let srv = TestServer::start();
    // broken JSON is reported before authentication
    let reply = srv.request(
        "POST",
        "/user/register",
        None,
        Body::Raw(b"{\"username\": ", Some("application/json")),
    );
    assert_422(
        reply.status,
        &reply.json(),
        &[json!("body")],
        Some("json_invalid"),
    );
    // a schema problem is reported after authentication
    let (status, body) = srv.post_json("/user/register", None, &json!({"username": 1}));
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn register_without_content_type_is_parsed_as_json() {
    let srv = TestServer::start();
    let name = uniq("noct");
    let text = json!({"username": name, "email": email_of(&name), "password": "p"}).to_string();
    let reply = srv.request(
        "POST",
        "/user/register",
        srv.admin(),
        Body::Raw(text.as_bytes(), None),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["username"], name.as_str());
}

// -- invites ---------------------------------------------------------------------------

#[test]
fn invite_response_shape() {
    let srv = TestServer::start();
    let name = uniq("inv");
    let data = srv.invite(&name, &email_of(&name), &[]);
    assert_eq!(
        keys(&data),
        [
            "user",
            "email_sent",
            "public_base_url",
            "accept_invite_url",
            "invite_url",
            "token"
        ]
    );
    assert_user_shape(&data["user"]);
    assert_eq!(data["user"]["username"], name.as_str());
    assert_eq!(data["user"]["email"], email_of(&name).as_str());
    assert_eq!(data["user"]["is_verified"], false);
    assert_eq!(data["user"]["is_active"], true);
    assert_eq!(data["user"]["is_superuser"], false);
    assert_eq!(data["email_sent"], false);
    assert_eq!(data["public_base_url"], srv.base.as_str());
    let accept = format!("{}/user/accept-invite", srv.base);
    assert_eq!(data["accept_invite_url"], accept.as_str());
    let token = data["token"].as_str().expect("token");
    assert_eq!(
        data["invite_url"],
        format!("{accept}?token={token}").as_str()
    );
}

#[test]
fn invite_without_return_token_and_with_default_send_email() {
    let srv = TestServer::start();
    let name = uniq("inv");
    // no SMTP configured: the mail goes to the log and email_sent is false
    let (status, data) = srv.post_json(
        "/user/invite",
        srv.admin(),
        &json!({"username": name, "email": email_of(&name)}),
    );
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["email_sent"], false);
    assert_eq!(data["token"], Value::Null);
    assert_eq!(data["invite_url"], Value::Null);
    assert_eq!(data["user"]["username"], name.as_str());
}

#[test]
fn invite_needs_admin() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let name = uniq("x");
    let body = json!({"username": name, "email": email_of(&name)});
    let (status, resp) = srv.post_json("/user/invite", user.auth(), &body);
    assert_detail(status, &resp, 403, "Forbidden");
    let (status, resp) = srv.post_json("/user/invite", None, &body);
    assert_detail(status, &resp, 401, "Unauthorized");
    assert_eq!(user_count(&srv, &qs(&[("username", &name)])), 0);
}

#[test]
fn invite_with_groups_and_superuser() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let name = uniq("inv");
    let (status, data) = srv.post_json(
        "/user/invite",
        srv.admin(),
        &json!({"username": name, "email": email_of(&name), "groups": [group["name"]],
                "is_superuser": true, "send_email": false, "return_token": true}),
    );
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["user"]["is_superuser"], true);
    assert_eq!(data["user"]["groups"], json!([group]));
}

#[test]
fn invite_unknown_group_creates_nothing() {
    let srv = TestServer::start();
    let missing = uniq("nogrp");
    let name = uniq("inv");
    let (status, body) = srv.post_json(
        "/user/invite",
        srv.admin(),
        &json!({"username": name, "email": email_of(&name), "groups": [missing], "send_email": false}),
    );
    assert_detail(
        status,
        &body,
        400,
        &format!("User group does not exist with name: {missing}"),
    );
    assert_eq!(user_count(&srv, &qs(&[("username", &name)])), 0);
}

#[test]
fn invite_schema_errors_are_422() {
    let srv = TestServer::start();
    let (status, body) = srv.post_json("/user/invite", srv.admin(), &json!({"username": "u"}));
    assert_422(
        status,
        &body,
        &[json!("body"), json!("email")],
        Some("missing"),
    );
    let (status, body) = srv.post_json(
        "/user/invite",
        srv.admin(),
        &json!({"username": "u", "email": "nope"}),
    );
    assert_422(status, &body, &[json!("body"), json!("email")], None);
}

#[test]
fn invite_existing_user_rules() {
    let srv = TestServer::start();
    let verified = srv.make_user(&[]);
    let name = uniq("inv");
    let email = email_of(&name);
    let first = srv.invite(&name, &email, &[]);
    let base = json!({"username": name, "email": email, "send_email": false, "return_token": true});

    let (status, body) = srv.post_json("/user/invite", srv.admin(), &base);
    assert_detail(status, &body, 400, "User already exists");
    // same e-mail, other username, no resend: also "already exists"
    let (status, body) = srv.post_json(
        "/user/invite",
        srv.admin(),
        &json!({"username": uniq("other"), "email": email.to_uppercase(), "send_email": false}),
    );
    assert_detail(status, &body, 400, "User already exists");

    let mut again = base.clone();
    again["resend_if_exists"] = json!(true);
    let (status, second) = srv.post_json("/user/invite", srv.admin(), &again);
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["user"]["id"], first["user"]["id"]);
    assert!(second["token"].as_str().is_some_and(|t| !t.is_empty()));

    let mut other_email = again.clone();
    other_email["email"] = json!(email_of(&uniq("other")));
    let (status, body) = srv.post_json("/user/invite", srv.admin(), &other_email);
    assert_detail(status, &body, 400, "Existing user has a different email");

    let mut other_name = again.clone();
    other_name["username"] = json!(uniq("other"));
    let (status, body) = srv.post_json("/user/invite", srv.admin(), &other_name);
    assert_detail(status, &body, 400, "Existing user has a different username");

    let resend = json!({"username": verified.username, "email": verified.email,
                        "resend_if_exists": true, "send_email": false});
    let (status, body) = srv.post_json("/user/invite", srv.admin(), &resend);
    assert_detail(status, &body, 400, "User already verified");

    // nothing new was created by all of this
    assert_eq!(user_count(&srv, &qs(&[("email", &email)])), 1);
    assert_eq!(user_count(&srv, ""), 3);
}

#[test]
fn accept_invite_sets_password_and_verifies() {
    let srv = TestServer::start();
    let name = uniq("inv");
    let invite = srv.invite(&name, &email_of(&name), &[]);
    let token = invite["token"].as_str().expect("token");
    let (status, body) = srv.login(&name, "anything");
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    let (status, accepted) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": token, "password": "chosen-pw"}),
    );
    assert_eq!(status, 200, "{accepted}");
    assert_user_shape(&accepted);
    assert_eq!(accepted["is_verified"], true);
    assert_eq!(accepted["username"], name.as_str());
    assert_eq!(accepted["id"], invite["user"]["id"]);
    let login_token = srv.login_token(&name, "chosen-pw");
    assert_eq!(whoami(&srv, &login_token).1["is_verified"], true);
    let (status, body) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": token, "password": "other-pw"}),
    );
    assert_detail(status, &body, 400, "Invite already accepted");
    // the second attempt did not change the password
    assert_eq!(srv.login(&name, "chosen-pw").0, 200);
    assert_eq!(srv.login(&name, "other-pw").0, 400);
}

#[test]
fn accept_invite_bad_tokens() {
    let srv = TestServer::start();
    for token in ["garbage", "a.b.c", ""] {
        let (status, body) = srv.post_json(
            "/user/accept-invite",
            None,
            &json!({"token": token, "password": "x"}),
        );
        assert_detail(status, &body, 400, "Invalid or expired invite token");
    }
    // signed with another key
    let name = uniq("inv");
    let invite = srv.invite(&name, &email_of(&name), &[]);
    let id = invite["user"]["id"].as_str().expect("id");
    let forged = mint_hs256(
        "some-other-secret-key",
        &json!({"sub": id, "aud": ["kci-lite:invite"], "exp": now_secs() + 3600, "email": email_of(&name)}),
    );
    let (status, body) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": forged, "password": "x"}),
    );
    assert_detail(status, &body, 400, "Invalid or expired invite token");
    assert_eq!(
        srv.get(&format!("/user/{id}"), srv.admin()).1["is_verified"],
        false
    );
}

#[test]
fn accept_invite_missing_fields_are_422() {
    let srv = TestServer::start();
    let (status, body) = srv.post_json("/user/accept-invite", None, &json!({"token": "x"}));
    assert_422(
        status,
        &body,
        &[json!("body"), json!("password")],
        Some("missing"),
    );
    let (status, body) = srv.post_json("/user/accept-invite", None, &json!({"password": "x"}));
    assert_422(
        status,
        &body,
        &[json!("body"), json!("token")],
        Some("missing"),
    );
}

#[test]
fn accept_invite_for_deleted_inactive_or_moved_user() {
    let srv = TestServer::start();
    // deleted
    let name = uniq("gone");
    let invite = srv.invite(&name, &email_of(&name), &[]);
    let id = invite["user"]["id"].as_str().expect("id");
    assert_eq!(srv.delete(&format!("/user/{id}"), srv.admin()).0, 200);
    let (status, body) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": invite["token"], "password": "x"}),
    );
    assert_detail(status, &body, 404, "User not found");

    // inactive
    let name = uniq("inactive");
    let invite = srv.invite(&name, &email_of(&name), &[]);
    let id = invite["user"]["id"].as_str().expect("id");
    assert_eq!(
        srv.patch_json(
            &format!("/user/{id}"),
            srv.admin(),
            &json!({"is_active": false})
        )
        .0,
        200
    );
    let (status, body) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": invite["token"], "password": "x"}),
    );
    assert_detail(status, &body, 400, "User is inactive");

    // e-mail changed after the invite
    let name = uniq("moved");
    let invite = srv.invite(&name, &email_of(&name), &[]);
    let id = invite["user"]["id"].as_str().expect("id");
    let (status, _) = srv.patch_json(
        &format!("/user/{id}"),
        srv.admin(),
        &json!({"email": email_of(&uniq("new"))}),
    );
    assert_eq!(status, 200);
    let (status, body) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": invite["token"], "password": "x"}),
    );
    assert_detail(status, &body, 400, "Invalid invite token");
    assert_eq!(
        srv.get(&format!("/user/{id}"), srv.admin()).1["is_verified"],
        false
    );
}

#[test]
fn invite_url_preview_and_proxy_headers() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, data) = srv.get("/user/invite/url", srv.admin());
    assert_eq!(status, 200, "{data}");
    assert_eq!(
        data,
        json!({"public_base_url": srv.base, "accept_invite_url": format!("{}/user/accept-invite", srv.base)})
    );
    let (status, body) = srv.get("/user/invite/url", user.auth());
    assert_detail(status, &body, 403, "Forbidden");
    let (status, body) = srv.get("/user/invite/url", None);
    assert_detail(status, &body, 401, "Unauthorized");

    let reply = srv.request_full(
        "GET",
        "/latest/user/invite/url",
        srv.admin(),
        &[
            ("X-Forwarded-Host", "ci.example.org:8443"),
            ("X-Forwarded-Proto", "https"),
        ],
        Body::None,
    );
    assert_eq!(
        reply.json()["public_base_url"],
        "https://ci.example.org:8443"
    );
    let reply = srv.request_full(
        "GET",
        "/latest/user/invite/url",
        srv.admin(),
        &[("Forwarded", "host=kci.example.net;proto=https, host=inner")],
        Body::None,
    );
    assert_eq!(
        reply.json(),
        json!({"public_base_url": "https://kci.example.net",
               "accept_invite_url": "https://kci.example.net/user/accept-invite"})
    );
}

#[test]
fn public_base_url_setting_wins() {
    let srv = TestServer::builder()
        .var("PUBLIC_BASE_URL", "https://kci.example.com/")
        .start();
    let name = uniq("inv");
    let data = srv.invite(&name, &email_of(&name), &[]);
    assert_eq!(data["public_base_url"], "https://kci.example.com");
    assert_eq!(
        data["accept_invite_url"],
        "https://kci.example.com/user/accept-invite"
    );
    let reply = srv.request_full(
        "GET",
        "/latest/user/invite/url",
        srv.admin(),
        &[("X-Forwarded-Host", "proxy.example.org")],
        Body::None,
    );
    assert_eq!(reply.json()["public_base_url"], "https://kci.example.com");
}

// -- listing and reading users ---------------------------------------------------------

#[test]
fn users_list_pagination() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for _ in 0..3 {
        srv.make_user(&[]);
    }
    let (status, page) = srv.get("/users", user.auth());
    assert_eq!(status, 200, "{page}");
    let items = assert_page(&page, 50, 0);
    assert_eq!(page["total"], 5);
    assert_eq!(items.len(), 5);
    for item in &items {
        assert_user_shape(item);
    }
    // ascending id order
    let ids: Vec<String> = items
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(items[0]["username"], ADMIN_USERNAME);

    let (status, page) = srv.get("/users?limit=2&offset=1", user.auth());
    assert_eq!(status, 200);
    let window = assert_page(&page, 2, 1);
    assert_eq!(page["total"], 5);
    assert_eq!(window, items[1..3].to_vec());
    let (_, page) = srv.get("/users?offset=10", user.auth());
    assert_eq!(assert_page(&page, 50, 10), Vec::<Value>::new());
    assert_eq!(page["total"], 5);
}

#[test]
fn users_list_bad_pagination_is_422() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.get("/users?limit=0", user.auth());
    assert_422(
        status,
        &body,
        &[json!("query"), json!("limit")],
        Some("greater_than_equal"),
    );
    let (status, body) = srv.get("/users?offset=-1", user.auth());
    assert_422(
        status,
        &body,
        &[json!("query"), json!("offset")],
        Some("greater_than_equal"),
    );
    let (status, body) = srv.get("/users?limit=abc", user.auth());
    assert_422(
        status,
        &body,
        &[json!("query"), json!("limit")],
        Some("int_parsing"),
    );
}

#[test]
fn users_list_filters() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let gname = group["name"].as_str().unwrap();
    let user = srv.make_user(&[]);
    let members = [srv.make_user(&[gname]), srv.make_user(&[gname])];

    let (_, page) = srv.get(
        &format!("/users{}", qs(&[("username", &members[0].username)])),
        user.auth(),
    );
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], members[0].id.as_str());

    let (_, page) = srv.get(
        &format!("/users{}", qs(&[("groups.name", gname)])),
        user.auth(),
    );
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [members[0].id.as_str(), members[1].id.as_str()]);

    let (_, page) = srv.get("/users?is_superuser=true", user.auth());
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, [ADMIN_USERNAME]);

    let (_, page) = srv.get(
        &format!("/users{}", qs(&[("email", &user.email)])),
        user.auth(),
    );
    assert_eq!(page["total"], 1);
    let (_, page) = srv.get(
        &format!("/users{}", qs(&[("username", "no-such-user")])),
        user.auth(),
    );
    assert_eq!(page["total"], 0);
    assert_eq!(page["items"], json!([]));
}

#[test]
fn users_list_never_contains_password_hashes() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    srv.register(&uniq("unver"), "pw");
    for token in [user.auth(), srv.admin()] {
        let reply = srv.request("GET", "/users?limit=1000", token, Body::None);
        assert_eq!(reply.status, 200);
        for needle in ["hashed_password", "$2b$", "$2a$", "$argon2"] {
            assert!(!reply.text.contains(needle), "{needle} in {}", reply.text);
        }
    }
}

#[test]
fn filtering_on_password_hash_is_400() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for query in [
        "hashed_password=x",
        "hashed_password__re=%5E%5C%24",
        "hashed_password__ne=x",
        "hashed_password__in=a,b",
    ] {
        let (status, body) = srv.get(&format!("/users?{query}"), user.auth());
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
}

#[test]
fn users_list_needs_token() {
    let srv = TestServer::start();
    let (status, body) = srv.get("/users", None);
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn get_user_by_id_unknown_and_invalid() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let (status, body) = srv.get(&format!("/user/{}", other.id), user.auth());
    assert_eq!(status, 200);
    assert_user_shape(&body);
    assert_eq!(body["username"], other.username.as_str());
    // upper-case ids are accepted
    let (status, body) = srv.get(&format!("/user/{}", other.id.to_uppercase()), user.auth());
    assert_eq!(
        (status, body["id"].as_str()),
        (200, Some(other.id.as_str()))
    );
    let (status, body) = srv.get(&format!("/user/{MISSING_ID}"), user.auth());
    assert_detail(status, &body, 404, "Not Found");
    let (status, body) = srv.get("/user/not-an-id", user.auth());
    assert_detail(
        status,
        &body,
        400,
        "'not-an-id' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string",
    );
    let (status, body) = srv.get(&format!("/user/{}", other.id), None);
    assert_detail(status, &body, 401, "Unauthorized");
}

// -- PATCH /user/me --------------------------------------------------------------------

#[test]
fn patch_me_password() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.patch_json("/user/me", user.auth(), &json!({"password": "new-pw"}));
    assert_eq!(status, 200, "{body}");
    assert_user_shape(&body);
    assert_eq!(srv.login(&user.username, "new-pw").0, 200);
    let (status, body) = srv.login(&user.username, &user.password);
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
}

#[test]
fn patch_me_email_requires_reverification() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let new_email = email_of(&uniq("moved"));
    let (status, body) = srv.patch_json(
        "/user/me",
        user.auth(),
        &json!({"password": "new-pw", "email": new_email}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], new_email.as_str());
    assert_eq!(body["is_verified"], false);
    let (status, body) = srv.login(&user.username, "new-pw");
    assert_detail(status, &body, 400, "LOGIN_USER_NOT_VERIFIED");
    let (status, _) = srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"is_verified": true}),
    );
    assert_eq!(status, 200);
    assert_eq!(srv.login(&user.username, "new-pw").0, 200);
}

#[test]
fn patch_me_same_email_keeps_verification() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.patch_json("/user/me", user.auth(), &json!({"email": user.email}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_verified"], true);
}

#[test]
fn patch_me_cannot_escalate() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.patch_json(
        "/user/me",
        user.auth(),
        &json!({"is_superuser": true, "is_active": false, "is_verified": false}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["is_superuser"],
            &body["is_active"],
            &body["is_verified"]
        ),
        (&json!(false), &json!(true), &json!(true))
    );
    let (_, me) = whoami(&srv, &user.token);
    assert_eq!(
        (&me["is_superuser"], &me["is_active"]),
        (&json!(false), &json!(true))
    );
}

#[test]
fn patch_me_cannot_change_groups() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let other = srv.make_group();
    let user = srv.make_user(&[group["name"].as_str().unwrap()]);
    let (status, body) = srv.patch_json(
        "/user/me",
        user.auth(),
        &json!({"groups": [other["name"]], "username": uniq("sneaky")}),
    );
    assert_detail(
        status,
        &body,
        400,
        "User groups can only be updated by an admin user",
    );
    let (_, me) = whoami(&srv, &user.token);
    assert_eq!(me["groups"], json!([group]));
    assert_eq!(
        me["username"],
        user.username.as_str(),
        "nothing of the request was applied"
    );
    // an empty list is not a change request: 200 and the groups stay
    let (status, body) = srv.patch_json("/user/me", user.auth(), &json!({"groups": []}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["groups"], json!([group]));
}

#[test]
fn patch_me_username_conflict_changes_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let (status, body) = srv.patch_json(
        "/user/me",
        user.auth(),
        &json!({"username": other.username, "password": "sneaky-new-pw"}),
    );
    assert_detail(
        status,
        &body,
        400,
        &format!("Username already exists: {}", other.username),
    );
    // neither the name nor the password changed
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
    assert_eq!(srv.login(&user.username, "sneaky-new-pw").0, 400);
    assert_eq!(
        whoami(&srv, &user.token).1["username"],
        user.username.as_str()
    );

    let new_name = uniq("renamed");
    let (status, body) = srv.patch_json("/user/me", user.auth(), &json!({"username": new_name}));
    assert_eq!(
        (status, body["username"].as_str()),
        (200, Some(new_name.as_str()))
    );
    assert_eq!(srv.login(&new_name, &user.password).0, 200);
    assert_eq!(srv.login(&user.username, &user.password).0, 400);
    // keeping one's own name is not a conflict
    let (status, _) = srv.patch_json("/user/me", user.auth(), &json!({"username": new_name}));
    assert_eq!(status, 200);
}

#[test]
fn patch_me_email_conflict_changes_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    for email in [other.email.clone(), other.email.to_uppercase()] {
        let (status, body) = srv.patch_json(
            "/user/me",
            user.auth(),
            &json!({"email": email, "username": uniq("x")}),
        );
        assert_detail(status, &body, 400, "UPDATE_USER_EMAIL_ALREADY_EXISTS");
    }
    let (_, me) = whoami(&srv, &user.token);
    assert_eq!(me["email"], user.email.as_str());
    assert_eq!(me["username"], user.username.as_str());
    assert_eq!(me["is_verified"], true);
}

#[test]
fn patch_me_validation_and_auth() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.patch_json("/user/me", user.auth(), &json!({"email": "nope"}));
    assert_422(status, &body, &[json!("body"), json!("email")], None);
    let (status, body) = srv.patch_json("/user/me", user.auth(), &json!({"username": ""}));
    assert_422(status, &body, &[json!("body"), json!("username")], None);
    let (status, body) = srv.patch_json("/user/me", None, &json!({"email": "a@example.com"}));
    assert_detail(status, &body, 401, "Unauthorized");
    let (_, me) = whoami(&srv, &user.token);
    assert_eq!(me["email"], user.email.as_str());
}

// -- admin PATCH / DELETE --------------------------------------------------------------

#[test]
fn admin_patch_groups_replace_clear_and_keep() {
    let srv = TestServer::start();
    let first = srv.make_group();
    let second = srv.make_group();
    let user = srv.make_user(&[]);
    let path = format!("/user/{}", user.id);
    let (status, body) = srv.patch_json(
        &path,
        srv.admin(),
        &json!({"groups": [first["name"], second["name"]]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_user_shape(&body);
    assert_eq!(body["groups"], json!([first, second]));
    let (_, body) = srv.patch_json(&path, srv.admin(), &json!({"groups": [second["name"]]}));
    assert_eq!(body["groups"], json!([second]));
    let (_, body) = srv.patch_json(&path, srv.admin(), &json!({"is_verified": true}));
    assert_eq!(
        body["groups"],
        json!([second]),
        "omitting groups keeps them"
    );
    let (_, body) = srv.patch_json(&path, srv.admin(), &json!({"groups": []}));
    assert_eq!(body["groups"], json!([]), "an empty list clears the groups");
    assert_eq!(whoami(&srv, &user.token).1["groups"], json!([]));
}

#[test]
fn admin_patch_email_change_unverifies_unless_set() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let path = format!("/user/{}", user.id);
    let new_email = email_of(&uniq("adm"));
    let (status, body) = srv.patch_json(&path, srv.admin(), &json!({"email": new_email}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], new_email.as_str());
    assert_eq!(body["is_verified"], false);
    let (status, body) = srv.login(&user.username, &user.password);
    assert_detail(status, &body, 400, "LOGIN_USER_NOT_VERIFIED");
    // the same request may keep the user verified
    let newer = email_of(&uniq("adm"));
    let (status, body) = srv.patch_json(
        &path,
        srv.admin(),
        &json!({"email": newer, "is_verified": true}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["email"].as_str(), &body["is_verified"]),
        (Some(newer.as_str()), &json!(true))
    );
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
}

#[test]
fn admin_patch_flags_and_password() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let path = format!("/user/{}", user.id);
    let (status, body) = srv.patch_json(&path, srv.admin(), &json!({"is_superuser": 1}));
    assert_eq!(
        (status, &body["is_superuser"]),
        (200, &json!(true)),
        "{body}"
    );
    // now an admin endpoint works with the unchanged token
    let (status, _) = srv.get("/user-groups", user.auth());
    assert_eq!(status, 200);
    let (_, body) = srv.patch_json(&path, srv.admin(), &json!({"is_superuser": 0}));
    assert_eq!(body["is_superuser"], false);
    let (status, body) = srv.get("/user-groups", user.auth());
    assert_detail(status, &body, 403, "Forbidden");
    let (status, _) = srv.patch_json(&path, srv.admin(), &json!({"password": "set-by-admin"}));
    assert_eq!(status, 200);
    assert_eq!(srv.login(&user.username, "set-by-admin").0, 200);
    assert_eq!(srv.login(&user.username, &user.password).0, 400);
}

#[test]
fn admin_patch_errors_change_nothing() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let user = srv.make_user(&[group["name"].as_str().unwrap()]);
    let other = srv.make_user(&[]);
    let path = format!("/user/{}", user.id);
    let (_, before) = srv.get(&path, srv.admin());

    let (status, body) = srv.patch_json(
        &format!("/user/{MISSING_ID}"),
        srv.admin(),
        &json!({"email": "a@example.com"}),
    );
    assert_detail(
        status,
        &body,
        404,
        &format!("User not found with id: {MISSING_ID}"),
    );

    let (status, body) = srv.patch_json(
        &path,
        srv.admin(),
        &json!({"username": other.username, "is_superuser": true}),
    );
    assert_detail(
        status,
        &body,
        400,
        &format!("Username already exists: {}", other.username),
    );

    let (status, body) = srv.patch_json(
        &path,
        srv.admin(),
        &json!({"email": other.email.to_uppercase(), "password": "changed"}),
    );
    assert_detail(status, &body, 400, "UPDATE_USER_EMAIL_ALREADY_EXISTS");

    let missing = uniq("nogrp");
    let (status, body) = srv.patch_json(
        &path,
        srv.admin(),
        &json!({"username": uniq("renamed"), "email": email_of(&uniq("e")), "groups": [missing]}),
    );
    assert_detail(
        status,
        &body,
        400,
        &format!("User group does not exist with name: {missing}"),
    );

    let (status, body) = srv.patch_json("/user/xyz", srv.admin(), &json!({"is_active": false}));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("is not a valid ObjectId"),
        "{body}"
    );

    // none of the failed requests changed anything
    let (_, after) = srv.get(&path, srv.admin());
    assert_eq!(after, before);
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
    assert_eq!(whoami(&srv, &user.token).1, before);
}

#[test]
fn admin_patch_validation_is_422() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let path = format!("/user/{}", user.id);
    for (body, field) in [
        (json!({"is_active": "perhaps"}), "is_active"),
        (json!({"is_superuser": 2}), "is_superuser"),
        (json!({"groups": ["a", "a"]}), "groups"),
        (json!({"groups": [1]}), "groups"),
        (json!({"email": "x"}), "email"),
    ] {
        let (status, resp) = srv.patch_json(&path, srv.admin(), &body);
        assert_422(status, &resp, &[json!("body"), json!(field)], None);
    }
    let (_, me) = whoami(&srv, &user.token);
    assert_eq!(
        (&me["is_active"], &me["is_superuser"]),
        (&json!(true), &json!(false))
    );
}

#[test]
fn admin_patch_needs_admin() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let (status, body) = srv.patch_json(
        &format!("/user/{}", other.id),
        user.auth(),
        &json!({"is_verified": false}),
    );
    assert_detail(status, &body, 403, "Forbidden");
    let (status, body) = srv.patch_json(
        &format!("/user/{}", other.id),
        None,
        &json!({"is_verified": false}),
    );
    assert_detail(status, &body, 401, "Unauthorized");
    assert_eq!(whoami(&srv, &other.token).1["is_verified"], true);
}

#[test]
fn delete_user() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let before = user_count(&srv, "");
    let (status, body) = srv.delete(&format!("/user/{}", user.id), srv.admin());
    assert_eq!((status, body), (200, Value::Null));
    assert_eq!(user_count(&srv, ""), before - 1);
    let (status, body) = srv.get(&format!("/user/{}", user.id), srv.admin());
    assert_detail(status, &body, 404, "Not Found");
    let (status, body) = srv.login(&user.username, &user.password);
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    let (status, body) = srv.delete(&format!("/user/{}", user.id), srv.admin());
    assert_detail(status, &body, 404, "Not Found");
    let (status, body) = srv.delete("/user/nope", srv.admin());
    assert_eq!(status, 400, "{body}");
    // the name and address are free again
    let again = srv.register(&user.username, "pw");
    assert_ne!(again["id"], user.id.as_str());
}

#[test]
fn delete_user_needs_admin() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let other = srv.make_user(&[]);
    let (status, body) = srv.delete(&format!("/user/{}", other.id), user.auth());
    assert_detail(status, &body, 403, "Forbidden");
    let (status, body) = srv.delete(&format!("/user/{}", other.id), None);
    assert_detail(status, &body, 401, "Unauthorized");
    assert_eq!(whoami(&srv, &other.token).0, 200);
}

// -- password flows --------------------------------------------------------------------

#[test]
fn update_password_form() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.post_form(
        "/user/update-password",
        &[
            ("username", &user.username),
            ("password", &user.password),
            ("new_password", "np-1"),
        ],
    );
    assert_eq!((status, body), (200, Value::Null));
    assert_eq!(srv.login(&user.username, "np-1").0, 200);
    let (status, body) = srv.login(&user.username, &user.password);
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
}

#[test]
fn update_password_failures_change_nothing() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (status, body) = srv.post_form(
        "/user/update-password",
        &[
            ("username", &user.username),
            ("password", "wrong"),
            ("new_password", "np"),
        ],
    );
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    let (status, body) = srv.post_form(
        "/user/update-password",
        &[
            ("username", &uniq("ghost")),
            ("password", "x"),
            ("new_password", "np"),
        ],
    );
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    let (status, body) = srv.post_form(
        "/user/update-password",
        &[("username", &user.username), ("password", &user.password)],
    );
    assert_422(
        status,
        &body,
        &[json!("body"), json!("new_password")],
        Some("missing"),
    );
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
    assert_eq!(srv.login(&user.username, "np").0, 400);
}

#[test]
fn update_password_does_not_need_verification_but_activity() {
    let srv = TestServer::start();
    let name = uniq("unver");
    let registered = srv.register(&name, "old-pw");
    let (status, body) = srv.post_form(
        "/user/update-password",
        &[
            ("username", &name),
            ("password", "old-pw"),
            ("new_password", "new-pw"),
        ],
    );
    assert_eq!((status, body), (200, Value::Null));
    let (status, body) = srv.login(&name, "new-pw");
    assert_detail(status, &body, 400, "LOGIN_USER_NOT_VERIFIED");
    let id = registered["id"].as_str().unwrap();
    srv.patch_json(
        &format!("/user/{id}"),
        srv.admin(),
        &json!({"is_active": false}),
    );
    let (status, body) = srv.post_form(
        "/user/update-password",
        &[
            ("username", &name),
            ("password", "new-pw"),
            ("new_password", "newer"),
        ],
    );
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
}

#[test]
fn reset_password_bad_tokens() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let secret = srv.secret.clone().expect("secret");
    let foreign_reset = mint_hs256(
        &secret,
        &json!({"sub": user.id, "aud": ["fastapi-users:reset"], "exp": now_secs() + 600}),
    );
    for token in ["garbage".to_string(), user.token.clone(), foreign_reset] {
        let (status, body) = srv.post_json(
            "/user/reset-password",
            None,
            &json!({"token": token, "password": "hacked"}),
        );
        assert_detail(status, &body, 400, "RESET_PASSWORD_BAD_TOKEN");
    }
    let (status, body) = srv.post_json("/user/reset-password", None, &json!({"token": "x"}));
    assert_422(
        status,
        &body,
        &[json!("body"), json!("password")],
        Some("missing"),
    );
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
    assert_eq!(srv.login(&user.username, "hacked").0, 400);
}

/// A reset token as the forgot-password mail would carry it.
fn reset_token(srv: &TestServer, user_id: &str) -> String {
    let id = user_id.to_string();
    let user = srv
        .app
        .store
        .read(|c| kci_lite::store::users::get(c, &id))
        .expect("read")
        .expect("user exists");
    let fingerprint = srv.app.keys.password_fingerprint(&user.hashed_password);
    srv.app
        .keys
        .issue(
            Purpose::Reset,
            user_id,
            Extra {
                email: None,
                password_fgpt: Some(fingerprint),
            },
        )
        .expect("issue")
}

#[test]
fn reset_password_is_single_use() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let token = reset_token(&srv, &user.id);
    // a reset token is not an access token
    let (status, body) = whoami(&srv, &token);
    assert_detail(status, &body, 401, "Unauthorized");
    let (status, body) = srv.post_json(
        "/user/reset-password",
        None,
        &json!({"token": token, "password": "reset-1"}),
    );
    assert_eq!((status, body), (200, Value::Null));
    assert_eq!(srv.login(&user.username, "reset-1").0, 200);
    let (status, body) = srv.post_json(
        "/user/reset-password",
        None,
        &json!({"token": token, "password": "reset-2"}),
    );
    assert_detail(status, &body, 400, "RESET_PASSWORD_BAD_TOKEN");
    assert_eq!(srv.login(&user.username, "reset-1").0, 200);
}

#[test]
fn reset_token_dies_when_the_password_changes_or_user_is_inactive() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let token = reset_token(&srv, &user.id);
    let (status, _) = srv.patch_json("/user/me", user.auth(), &json!({"password": "changed"}));
    assert_eq!(status, 200);
    let (status, body) = srv.post_json(
        "/user/reset-password",
        None,
        &json!({"token": token, "password": "reset"}),
    );
    assert_detail(status, &body, 400, "RESET_PASSWORD_BAD_TOKEN");

    let token = reset_token(&srv, &user.id);
    srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"is_active": false}),
    );
    let (status, body) = srv.post_json(
        "/user/reset-password",
        None,
        &json!({"token": token, "password": "reset"}),
    );
    assert_detail(status, &body, 400, "RESET_PASSWORD_BAD_TOKEN");
}

#[test]
fn forgot_password_and_request_verify_token_always_202_null() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let ghost = email_of(&uniq("ghost"));
    for path in ["/user/forgot-password", "/user/request-verify-token"] {
        for email in [&user.email, &ghost] {
            let (status, body) = srv.post_json(path, None, &json!({"email": email}));
            assert_eq!((status, &body), (202, &Value::Null), "{path} {email}");
        }
        let (status, body) = srv.post_json(path, None, &json!({"email": "not-an-email"}));
        assert_422(status, &body, &[json!("body"), json!("email")], None);
    }
    // nothing about the account changed
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
}

#[test]
fn verify_flow_with_issued_tokens() {
    let srv = TestServer::start();
    let name = uniq("ver");
    let registered = srv.register(&name, "pw");
    let id = registered["id"].as_str().unwrap().to_string();
    let issue = |email: &str| {
        srv.app
            .keys
            .issue(
                Purpose::Verify,
                &id,
                Extra {
                    email: Some(email.to_string()),
                    password_fgpt: None,
                },
            )
            .expect("issue")
    };
    let (status, body) = srv.post_json("/user/verify", None, &json!({"token": "garbage"}));
    assert_detail(status, &body, 400, "VERIFY_USER_BAD_TOKEN");
    // a token for an old address stops working once the address changes
    let stale = issue(&email_of(&name));
    let new_email = email_of(&uniq("moved"));
    srv.patch_json(
        &format!("/user/{id}"),
        srv.admin(),
        &json!({"email": new_email}),
    );
    let (status, body) = srv.post_json("/user/verify", None, &json!({"token": stale}));
    assert_detail(status, &body, 400, "VERIFY_USER_BAD_TOKEN");

    let token = issue(&new_email);
    let (status, body) = srv.post_json("/user/verify", None, &json!({"token": token}));
    assert_eq!(status, 200, "{body}");
    assert_user_shape(&body);
    assert_eq!(body["is_verified"], true);
    assert_eq!(srv.login(&name, "pw").0, 200);
    let (status, body) = srv.post_json("/user/verify", None, &json!({"token": token}));
    assert_detail(status, &body, 400, "VERIFY_USER_ALREADY_VERIFIED");
}

// -- account identity details ----------------------------------------------------------

#[test]
fn email_domain_is_lower_cased_and_usernames_are_case_sensitive() {
    let srv = TestServer::start();
    let name = uniq("Bob");
    let (status, body) = srv.post_json(
        "/user/register",
        srv.admin(),
        &json!({"username": name, "email": format!("{name}@Example.COM"), "password": "p"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], format!("{name}@example.com").as_str());
    // another user whose name differs only in case is a different user
    let lower = name.to_lowercase();
    let (status, body) = srv.post_json(
        "/user/register",
        srv.admin(),
        &json!({"username": lower, "email": email_of(&uniq("other")), "password": "p"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], lower.as_str());
}

#[test]
fn concurrent_registrations_of_one_name_create_one_user() {
    let srv = TestServer::start();
    let name = uniq("race");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let srv = &srv;
                let name = name.clone();
                s.spawn(move || {
                    srv.post_json(
                        "/user/register",
                        srv.admin(),
                        &json!({"username": name, "email": email_of(&format!("{name}-{i}")), "password": "p"}),
                    )
                    .0
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 400),
        "{statuses:?}"
    );
    assert_eq!(user_count(&srv, &qs(&[("username", &name)])), 1);
}

#[test]
fn imported_argon2_and_2y_hashes_log_in_and_are_rehashed() {
    use argon2::PasswordHasher;
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let salt = argon2::password_hash::SaltString::from_b64("c2FsdHNhbHRzYWx0").expect("salt");
    let argon = argon2::Argon2::default()
        .hash_password(b"imported-pw", &salt)
        .expect("hash")
        .to_string();
    let set_hash = |hash: String| {
        let id = user.id.clone();
        srv.app
            .store
            .write(move |c, _| {
                let mut u = kci_lite::store::users::get(c, &id)?.expect("user");
                u.hashed_password = hash;
                kci_lite::store::users::update(c, &u)
            })
            .expect("write");
    };
    let stored_hash = || {
        let id = user.id.clone();
        srv.app
            .store
            .read(|c| kci_lite::store::users::get(c, &id))
            .expect("read")
            .expect("user")
            .hashed_password
    };
    set_hash(argon);
    assert_eq!(srv.login(&user.username, "wrong").0, 400);
    assert!(stored_hash().starts_with("$argon2"));
    assert_eq!(srv.login(&user.username, "imported-pw").0, 200);
    assert!(
        stored_hash().starts_with("$2b$04$"),
        "rehashed to bcrypt: {}",
        stored_hash()
    );
    assert_eq!(srv.login(&user.username, "imported-pw").0, 200);

    let two_y = kci_lite::auth::hash_password("php-pw", 4)
        .expect("hash")
        .replacen("$2b$", "$2y$", 1);
    set_hash(two_y);
    assert_eq!(srv.login(&user.username, "php-pw").0, 200);
}

#[test]
fn login_form_with_special_characters_and_charset_parameter() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let password = "p+w&d=ü ö%20/;";
    let (status, _) = srv.patch_json("/user/me", user.auth(), &json!({"password": password}));
    assert_eq!(status, 200);
    let body = format!(
        "username={}&password={}",
        enc(&user.username),
        enc(password)
    );
    let reply = srv.request(
        "POST",
        "/user/login",
        None,
        Body::Raw(
            body.as_bytes(),
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
        ),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    // `+` in a form means a space: "a+b" is the password "a b"
    let (status, _) = srv.patch_json("/user/me", user.auth(), &json!({"password": "a b"}));
    assert_eq!(status, 200);
    let body = format!("username={}&password=a+b", enc(&user.username));
    let reply = srv.request(
        "POST",
        "/user/login",
        None,
        Body::Raw(body.as_bytes(), Some("application/x-www-form-urlencoded")),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
}
