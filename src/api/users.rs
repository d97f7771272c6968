//! `/user/*`, `/users`, `/whoami`: accounts, tokens, invites and the flows
//! that send tokens by e-mail.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{page, pagination, path_id};
use crate::app::{App, random_password};
use crate::auth::{self, Extra, PasswordCheck, Purpose};
use crate::http::{ApiError, ApiResult, Req, Resp, ValidationItem};
use crate::ids;
use crate::model::user::{Group, Invite, NewUser, User, UserPatch, email_key};
use crate::model::validate::Fields;
use crate::query::{Filter, USER_SCHEMA};
use crate::store::{groups, users};

/// A closure that puts a committed user into the authentication cache.
fn cache_put(app: &App) -> impl FnOnce(&User) + Send + 'static {
    let cache = Arc::clone(&app.users);
    move |user: &User| cache.put(user)
}

/// Resolves group names (inside a write), or 400 for an unknown one.
fn resolve_groups(c: &rusqlite::Connection, names: &[String]) -> Result<Vec<Group>, ApiError> {
    names
        .iter()
        .map(|name| {
            groups::get_by_name(c, name)?.ok_or_else(|| {
                ApiError::bad_request(&format!("User group does not exist with name: {name}"))
            })
        })
        .collect()
}

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
        move |c| {
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
    auth::verified(&app.keys, &app.users, req)?;
    Ok(Resp::no_content())
}

/// `GET /whoami`, `GET /user/me`.
pub fn whoami(app: &App, req: &Req) -> ApiResult {
    let user = auth::verified(&app.keys, &app.users, req)?;
    Ok(Resp::json(&user.to_json()))
}

/// `POST /user/register` (admin): a new active, unverified user.
pub fn register(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    auth::admin(&app.keys, &app.users, req)?;
    let input = NewUser::parse(&body.require()?)?;
    let hashed_password = auth::hash_password(&input.password, app.config.bcrypt_cost)?;
    let user = app.store.write_then(
        move |c| {
            if users::get_by_username(c, &input.username)?.is_some() {
                return Err(ApiError::bad_request(&format!(
                    "Username already exists: {}",
                    input.username
                )));
            }
            if users::get_by_email(c, &input.email)?.is_some() {
                return Err(ApiError::bad_request("REGISTER_USER_ALREADY_EXISTS"));
            }
            let user = User {
                id: ids::new_id(),
                email: input.email,
                is_active: true,
                is_superuser: input.is_superuser,
                is_verified: false,
                username: input.username,
                groups: resolve_groups(c, &input.groups)?,
                hashed_password,
            };
            users::insert(c, &user)?;
            Ok(user)
        },
        cache_put(app),
    )?;
    Ok(Resp::json(&user.to_json()))
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

/// `POST /user/invite` (admin).
pub fn invite(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    auth::admin(&app.keys, &app.users, req)?;
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
            let (groups_wanted, is_superuser) = (input.groups.clone(), input.is_superuser);
            app.store.write_then(
                move |c| {
                    if users::get_by_username(c, &name)?.is_some()
                        || users::get_by_email(c, &email)?.is_some()
                    {
                        return Err(ApiError::bad_request("User already exists"));
                    }
                    let user = User {
                        id: ids::new_id(),
                        email,
                        is_active: true,
                        is_superuser,
                        is_verified: false,
                        username: name,
                        groups: resolve_groups(c, &groups_wanted)?,
                        hashed_password,
                    };
                    users::insert(c, &user)?;
                    Ok(user)
                },
                cache_put(app),
            )?
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
        let text = format!(
            "Hello {},\n\nYou have been invited to the KernelCI API.\n\n\
             Open this link to choose your password:\n\n{invite_url}\n\n\
             Or send this invite token to {accept_url} :\n\n{token}\n\n\
             The invite is valid for 7 days.\n",
            user.username
        );
        match app
            .mailer
            .send(&user.email, "You are invited to the KernelCI API", &text)
        {
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
    auth::admin(&app.keys, &app.users, req)?;
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
fn notify(app: &App, user: &User, subject: &str, text: &str) {
    if let Err(err) = app.mailer.send(&user.email, subject, text) {
        eprintln!("kci-lite: mail to user {} failed: {}", user.id, err.0);
    }
}

/// Sends a mail the request depends on: failure is 500 `Failed to send email`.
fn send_required(app: &App, user: &User, subject: &str, text: &str) -> Result<(), ApiError> {
    app.mailer
        .send(&user.email, subject, text)
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
    notify(
        app,
        &user,
        "Welcome to the KernelCI API",
        &format!(
            "Hello {},\n\nWelcome to the KernelCI API: your account is ready and you can log in as '{}'.\n",
            user.username, user.username
        ),
    );
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
        let text = format!(
            "Hello {},\n\nUse this token with POST /user/verify to verify your e-mail address:\n\n{token}\n\n\
             The token is valid for one hour.\n",
            user.username
        );
        send_required(app, &user, "KernelCI API email verification", &text)?;
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
        move |c| {
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
    notify(
        app,
        &user,
        "KernelCI API account verified",
        &format!(
            "Hello {},\n\nYour e-mail address has been verified.\n",
            user.username
        ),
    );
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
        let text = format!(
            "Hello {},\n\nUse this token with POST /user/reset-password to choose a new password:\n\n{token}\n\n\
             The token is valid for one hour and can be used once.\n",
            user.username
        );
        send_required(app, &user, "KernelCI API password reset", &text)?;
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
    notify(
        app,
        &user,
        "KernelCI API password changed",
        &format!(
            "Hello {},\n\nYour password has been reset.\n",
            user.username
        ),
    );
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

/// `GET /users`: a page of users, query language filters.
pub fn list(app: &App, req: &Req) -> ApiResult {
    auth::user(&app.keys, &app.users, req)?;
    let (limit, offset) = pagination(req)?;
    let filter = Filter::parse(&req.query, &["limit", "offset"], &USER_SCHEMA)?;
    let (found, total) = app.store.read(|c| users::list(c, &filter, limit, offset))?;
    let items = found.iter().map(User::to_json).collect();
    Ok(Resp::json(&page(items, total, limit, offset)))
}

/// `GET /user/{id}`.
pub fn get(app: &App, req: &Req, id: &str) -> ApiResult {
    auth::user(&app.keys, &app.users, req)?;
    let id = path_id(id)?;
    let user = app
        .store
        .read(|c| users::get(c, &id))?
        .ok_or_else(|| ApiError::not_found("Not Found"))?;
    Ok(Resp::json(&user.to_json()))
}

/// Applies a patch inside a write; `admin` allows flags and groups.
fn apply_patch(app: &App, id: String, patch: UserPatch, admin: bool) -> Result<User, ApiError> {
    let hashed = match &patch.password {
        Some(password) => Some(auth::hash_password(password, app.config.bcrypt_cost)?),
        None => None,
    };
    app.store.write_then(
        move |c| {
            let mut user = users::get(c, &id)?
                .ok_or_else(|| ApiError::not_found(&format!("User not found with id: {id}")))?;
            if let Some(name) = patch.username
                && name != user.username
            {
                if users::get_by_username(c, &name)?.is_some() {
                    return Err(ApiError::bad_request(&format!(
                        "Username already exists: {name}"
                    )));
                }
                user.username = name;
            }
            if let Some(email) = patch.email
                && email != user.email
            {
                if users::get_by_email(c, &email)?.is_some_and(|other| other.id != user.id) {
                    return Err(ApiError::bad_request("UPDATE_USER_EMAIL_ALREADY_EXISTS"));
                }
                user.email = email;
                user.is_verified = false;
            }
            if let Some(hashed) = hashed {
                user.hashed_password = hashed;
            }
            if admin {
                if let Some(flag) = patch.is_active {
                    user.is_active = flag;
                }
                if let Some(flag) = patch.is_superuser {
                    user.is_superuser = flag;
                }
                if let Some(flag) = patch.is_verified {
                    user.is_verified = flag;
                }
                if let Some(names) = patch.groups {
                    user.groups = resolve_groups(c, &names)?;
                }
            }
            users::update(c, &user)?;
            Ok(user)
        },
        cache_put(app),
    )
}

/// `PATCH /user/me`: username, e-mail, password; never flags or groups.
pub fn update_me(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    let me = auth::user(&app.keys, &app.users, req)?;
    let patch = UserPatch::parse(&body.require()?)?;
    if patch.groups.as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(ApiError::bad_request(
            "User groups can only be updated by an admin user",
        ));
    }
    let user = apply_patch(app, me.id, patch, false)?;
    Ok(Resp::json(&user.to_json()))
}

/// `PATCH /user/{id}` (admin).
pub fn update(app: &App, req: &Req, id: &str) -> ApiResult {
    let body = req.body()?;
    auth::admin(&app.keys, &app.users, req)?;
    let id = path_id(id)?;
    let patch = UserPatch::parse(&body.require()?)?;
    let user = apply_patch(app, id, patch, true)?;
    Ok(Resp::json(&user.to_json()))
}

/// `DELETE /user/{id}` (admin): 200 `null`.
pub fn delete(app: &App, req: &Req, id: &str) -> ApiResult {
    auth::admin(&app.keys, &app.users, req)?;
    let id = path_id(id)?;
    let cache = Arc::clone(&app.users);
    let gone = id.clone();
    app.store.write_then(
        move |c| {
            if users::delete(c, &id)? {
                Ok(())
            } else {
                Err(ApiError::not_found("Not Found"))
            }
        },
        move |_| cache.remove(&gone),
    )?;
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
