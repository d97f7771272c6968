//! Account flows under `/user/*`: login and logout (access tokens),
//! invites, e-mail verification and password changes, and the mails they
//! send. Creating, reading, changing and deleting users is `api::users`.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::users::{self as users_api, cache_put};
use crate::app::{App, random_password};
use crate::auth::{self, Extra, PasswordCheck, Purpose};
use crate::http::{ApiError, ApiResult, Req, Resp, ValidationItem};
use crate::ids;
use crate::mail::{self, Message};
use crate::model::user::{Invite, User, email_key};
use crate::model::validate::Fields;
use crate::store::users;

fn form_fields(req: &Req, names: &[&str]) -> Result<Vec<String>, ApiError> {
    let form = req.form();
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match form.iter().rev().find(|(k, _)| k == name) {
            Some((_, v)) => values.push(v.clone()),
            None => missing.push(ValidationItem::new(
                vec![json!("body"), json!(name)],
                "Field required",
                "missing",
            )),
        }
    }
    if missing.is_empty() {
        Ok(values)
    } else {
        Err(ApiError::validation(missing))
    }
}

/// Checks a username and password; the same work is done whether or not
/// the user exists. Inactive users fail like wrong passwords.
fn check_credentials(
    app: &App,
    username: &str,
    password: &str,
) -> Result<(User, PasswordCheck), ApiError> {
    let bad = || ApiError::bad_request("LOGIN_BAD_CREDENTIALS");
    let username = username.to_string();
    let found = app.store.read(|c| users::get_by_username(c, &username))?;
    let Some(user) = found else {
        let _ = auth::verify_password(password, app.dummy_hash());
        return Err(bad());
    };
    let check = auth::verify_password(password, &user.hashed_password);
    if check == PasswordCheck::Wrong || !user.is_active {
        return Err(bad());
    }
    Ok((user, check))
}

/// Stores a new password hash for `user_id` (when `expect_hash` is given,
/// only if the stored hash is still that one).
fn set_password_hash(
    app: &App,
    user_id: &str,
    hashed: String,
    expect_hash: Option<String>,
    verify: bool,
) -> Result<User, ApiError> {
    let id = user_id.to_string();
    app.store.write_then(
        move |c, _| {
            let mut user =
                users::get(c, &id)?.ok_or_else(|| ApiError::not_found("User not found"))?;
            if expect_hash.is_some_and(|h| h != user.hashed_password) {
                return Err(ApiError::bad_request("RESET_PASSWORD_BAD_TOKEN"));
            }
            user.hashed_password = hashed;
            if verify {
                user.is_verified = true;
            }
            users::update(c, &user)?;
            Ok(user)
        },
        cache_put(app),
    )
}

/// `POST /user/login`: form `username`, `password` → bearer token.
pub fn login(app: &App, req: &Req) -> ApiResult {
    let fields = form_fields(req, &["username", "password"])?;
    let (user, check) = check_credentials(app, &fields[0], &fields[1])?;
    if !user.is_verified {
        return Err(ApiError::bad_request("LOGIN_USER_NOT_VERIFIED"));
    }
    if check == PasswordCheck::OkRehash {
        let hashed = auth::hash_password(&fields[1], app.config.bcrypt_cost)?;
        set_password_hash(
            app,
            &user.id,
            hashed,
            Some(user.hashed_password.clone()),
            false,
        )?;
    }
    let token = app
        .keys
        .issue(Purpose::Access, &user.id, Extra::default())?;
    Ok(Resp::json(
        &json!({"access_token": token, "token_type": "bearer"}),
    ))
}

/// `POST /user/logout`: tokens are stateless; 204.
pub fn logout(app: &App, req: &Req) -> ApiResult {
    auth::verified(&app.keys, &app.users, req.bearer())?;
    Ok(Resp::no_content())
}

fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
                && v6
                    .to_ipv4_mapped()
                    .is_none_or(|v4| is_global(IpAddr::V4(v4)))
        }
    }
}

/// The base of invite links: PUBLIC_BASE_URL, else the proxy's headers for
/// a client on a non-global address, else the Host header.
pub fn public_base_url(app: &App, req: &Req) -> String {
    if let Some(url) = &app.config.public_base_url {
        return url.clone();
    }
    let trusted = req.remote.is_none_or(|addr| !is_global(addr.ip()));
    if trusted {
        if let Some(forwarded) = req.header("forwarded") {
            let first = forwarded.split(',').next().unwrap_or("");
            let mut host = None;
            let mut proto = None;
            for pair in first.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    let v = v.trim().trim_matches('"').to_string();
                    match k.trim().to_ascii_lowercase().as_str() {
                        "host" => host = Some(v),
                        "proto" => proto = Some(v),
                        _ => {}
                    }
                }
            }
            if let Some(host) = host {
                return format!("{}://{host}", proto.unwrap_or_else(|| "http".into()));
            }
        }
        if let Some(host) = req.header("x-forwarded-host") {
            let host = host.split(',').next().unwrap_or("").trim();
            let proto = req
                .header("x-forwarded-proto")
                .and_then(|p| p.split(',').next())
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "http".into());
            if !host.is_empty() {
                return format!("{proto}://{host}");
            }
        }
    }
    let host = req.header("host").unwrap_or("localhost");
    format!("http://{host}")
}

/// `POST /user/invite` (admin): creates the user (or, with
/// `resend_if_exists`, finds the same unverified one) and issues an invite
/// token, mailed unless `send_email` is false.
pub fn invite(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let input = Invite::parse(&body.require()?)?;
    let (name, email) = (input.username.clone(), input.email.clone());
    let existing = app
        .store
        .read(|c| match users::get_by_username(c, &name)? {
            Some(u) => Ok::<_, ApiError>(Some(u)),
            None => Ok(users::get_by_email(c, &email)?),
        })?;
    let user = match existing {
        Some(user) => {
            if !input.resend_if_exists {
                return Err(ApiError::bad_request("User already exists"));
            }
            if user.is_verified {
                return Err(ApiError::bad_request("User already verified"));
            }
            if user.username != input.username {
                return Err(ApiError::bad_request(
                    "Existing user has a different username",
                ));
            }
            if user.email_key() != email_key(&input.email) {
                return Err(ApiError::bad_request("Existing user has a different email"));
            }
            user
        }
        None => {
            let hashed_password =
                auth::hash_password(&random_password(32), app.config.bcrypt_cost)?;
            let user = User {
                id: ids::new_id(),
                email,
                is_active: true,
                is_superuser: input.is_superuser,
                is_verified: false,
                username: name,
                groups: Vec::new(),
                hashed_password,
            };
            let taken = "User already exists";
            users_api::create(app, user, input.groups.clone(), taken, taken)?
        }
    };
    let token = app.keys.issue(
        Purpose::Invite,
        &user.id,
        Extra {
            email: Some(user.email.clone()),
            password_fgpt: None,
        },
    )?;
    let base = public_base_url(app, req);
    let accept_url = format!("{base}/user/accept-invite");
    let invite_url = format!("{accept_url}?token={token}");
    let mut email_sent = false;
    if input.send_email {
        let message = mail::invite_message(&user.username, &invite_url, &accept_url, &token);
        match app.mailer.send(&user.email, &message) {
            Ok(()) => email_sent = app.mailer.is_real(),
            Err(err) => eprintln!(
                "kci-lite: invite mail to user {} failed: {}",
                user.id, err.0
            ),
        }
    }
    let (invite_url, token) = if input.return_token {
        (Value::String(invite_url), Value::String(token))
    } else {
        (Value::Null, Value::Null)
    };
    Ok(Resp::json(&json!({
        "user": user.to_json(),
        "email_sent": email_sent,
        "public_base_url": base,
        "accept_invite_url": accept_url,
        "invite_url": invite_url,
        "token": token,
    })))
}

/// `GET /user/invite/url` (admin): where invite links will point.
pub fn invite_url(app: &App, req: &Req) -> ApiResult {
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let base = public_base_url(app, req);
    Ok(Resp::json(&json!({
        "public_base_url": base,
        "accept_invite_url": format!("{base}/user/accept-invite"),
    })))
}

/// Reads `{"token", "password"}` style bodies.
fn token_body(req: &Req, with_password: bool) -> Result<(String, String), ApiError> {
    let body = req.json()?;
    let mut f = Fields::new(&body);
    let token = f.required_str("token");
    let password = if with_password {
        f.required_str("password")
    } else {
        None
    };
    f.finish()?;
    Ok((token.unwrap_or_default(), password.unwrap_or_default()))
}

fn email_body(req: &Req) -> Result<String, ApiError> {
    let body = req.json()?;
    let mut f = Fields::new(&body);
    let email = f.email("email", true);
    f.finish()?;
    Ok(email.unwrap_or_default())
}

/// Sends a notice whose failure only gets logged (the change stands).
fn notify(app: &App, user: &User, message: &Message) {
    if let Err(err) = app.mailer.send(&user.email, message) {
        eprintln!("kci-lite: mail to user {} failed: {}", user.id, err.0);
    }
}

/// Sends a mail the request depends on: failure is 500 `Failed to send email`.
fn send_required(app: &App, user: &User, message: &Message) -> Result<(), ApiError> {
    app.mailer
        .send(&user.email, message)
        .map_err(|err| ApiError::internal_detail("Failed to send email", err.0))
}

/// `POST /user/accept-invite`: sets the password and verifies the user.
pub fn accept_invite(app: &App, req: &Req) -> ApiResult {
    let (token, password) = token_body(req, true)?;
    let claims = app
        .keys
        .verify(Purpose::Invite, &token)
        .ok_or_else(|| ApiError::bad_request("Invalid or expired invite token"))?;
    let id = claims.subject.clone();
    let user = app
        .store
        .read(|c| users::get(c, &id))?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    if claims.extra.email.as_deref().map(email_key) != Some(user.email_key()) {
        return Err(ApiError::bad_request("Invalid invite token"));
    }
    if !user.is_active {
        return Err(ApiError::bad_request("User is inactive"));
    }
    if user.is_verified {
        return Err(ApiError::bad_request("Invite already accepted"));
    }
    let hashed = auth::hash_password(&password, app.config.bcrypt_cost)?;
    let user = set_password_hash(app, &user.id, hashed, None, true)?;
    notify(app, &user, &mail::welcome_message(&user.username));
    Ok(Resp::json(&user.to_json()))
}

/// `POST /user/request-verify-token`: mails a verification token to an
/// active, unverified user; always 202 `null`.
pub fn request_verify_token(app: &App, req: &Req) -> ApiResult {
    let email = email_body(req)?;
    let user = app.store.read(|c| users::get_by_email(c, &email))?;
    if let Some(user) = user.filter(|u| u.is_active && !u.is_verified) {
        let token = app.keys.issue(
            Purpose::Verify,
            &user.id,
            Extra {
                email: Some(user.email.clone()),
                password_fgpt: None,
            },
        )?;
        send_required(app, &user, &mail::verify_message(&user.username, &token))?;
    }
    Ok(Resp::json_status(202, &Value::Null))
}

/// `POST /user/verify`.
pub fn verify(app: &App, req: &Req) -> ApiResult {
    let (token, _) = token_body(req, false)?;
    let bad = || ApiError::bad_request("VERIFY_USER_BAD_TOKEN");
    let claims = app.keys.verify(Purpose::Verify, &token).ok_or_else(bad)?;
    let id = claims.subject.clone();
    let user = app.store.read(|c| users::get(c, &id))?.ok_or_else(bad)?;
    if claims.extra.email.as_deref() != Some(user.email.as_str()) || !user.is_active {
        return Err(bad());
    }
    if user.is_verified {
        return Err(ApiError::bad_request("VERIFY_USER_ALREADY_VERIFIED"));
    }
    let expected_email = user.email.clone();
    let user = app.store.write_then(
        move |c, _| {
            let mut user = users::get(c, &id)?.ok_or_else(bad)?;
            if user.email != expected_email {
                return Err(bad());
            }
            user.is_verified = true;
            users::update(c, &user)?;
            Ok(user)
        },
        cache_put(app),
    )?;
    notify(app, &user, &mail::verified_message(&user.username));
    Ok(Resp::json(&user.to_json()))
}

/// `POST /user/forgot-password`: mails a reset token to an active user;
/// always 202 `null`.
pub fn forgot_password(app: &App, req: &Req) -> ApiResult {
    let email = email_body(req)?;
    let user = app.store.read(|c| users::get_by_email(c, &email))?;
    if let Some(user) = user.filter(|u| u.is_active) {
        let token = app.keys.issue(
            Purpose::Reset,
            &user.id,
            Extra {
                email: None,
                password_fgpt: Some(app.keys.password_fingerprint(&user.hashed_password)),
            },
        )?;
        send_required(app, &user, &mail::reset_message(&user.username, &token))?;
    }
    Ok(Resp::json_status(202, &Value::Null))
}

/// `POST /user/reset-password`: single use, dies when the password changes.
pub fn reset_password(app: &App, req: &Req) -> ApiResult {
    let (token, password) = token_body(req, true)?;
    let bad = || ApiError::bad_request("RESET_PASSWORD_BAD_TOKEN");
    let claims = app.keys.verify(Purpose::Reset, &token).ok_or_else(bad)?;
    let id = claims.subject.clone();
    let user = app.store.read(|c| users::get(c, &id))?.ok_or_else(bad)?;
    let fingerprint = app.keys.password_fingerprint(&user.hashed_password);
    if !user.is_active || claims.extra.password_fgpt.as_deref() != Some(fingerprint.as_str()) {
        return Err(bad());
    }
    let hashed = auth::hash_password(&password, app.config.bcrypt_cost)?;
    let user = set_password_hash(app, &id, hashed, Some(user.hashed_password), false)?;
    notify(app, &user, &mail::password_reset_message(&user.username));
    Ok(Resp::json(&Value::Null))
}

/// `POST /user/update-password`: form `username`, `password`, `new_password`.
pub fn update_password(app: &App, req: &Req) -> ApiResult {
    let fields = form_fields(req, &["username", "password", "new_password"])?;
    let (user, _) = check_credentials(app, &fields[0], &fields[1])?;
    let hashed = auth::hash_password(&fields[2], app.config.bcrypt_cost)?;
    set_password_hash(app, &user.id, hashed, None, false)?;
    Ok(Resp::json(&Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_addresses() {
        for (ip, global) in [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("192.168.0.1", false),
            ("8.8.8.8", true),
            ("::1", false),
            ("fd00::1", false),
            ("2001:4860::8888", true),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(is_global(ip), global, "{ip}");
        }
    }
}
