//! User records: `/users`, `/user/{id}`, `/user/me`, `/whoami` and the
//! admin's `/user/register`, plus the HTTP answers of creating a user
//! ([`create`], shared with invites). The account flows (tokens, invites,
//! passwords, mail) are `api::account`.

use std::sync::Arc;

use serde_json::Value;

use super::{page, pagination, path_id};
use crate::app::{App, CreateUserError};
use crate::auth;
use crate::http::{ApiError, ApiResult, Req, Resp};
use crate::ids;
use crate::model::user::{Group, NewUser, User, UserPatch};
use crate::query::{Filter, USER_SCHEMA};
use crate::store::{groups, users};

/// A closure that puts a committed user into the authentication cache.
pub(super) fn cache_put(app: &App) -> impl FnOnce(&User) + Send + 'static {
    let cache = Arc::clone(&app.users);
    move |user: &User| cache.put(user)
}

/// 400 for a group name that names no group.
fn unknown_group(name: &str) -> ApiError {
    ApiError::bad_request(&format!("User group does not exist with name: {name}"))
}

/// Resolves group names (inside a write), or 400 for an unknown one.
fn resolve_groups(c: &rusqlite::Connection, names: &[String]) -> Result<Vec<Group>, ApiError> {
    names
        .iter()
        .map(|name| groups::get_by_name(c, name)?.ok_or_else(|| unknown_group(name)))
        .collect()
}

/// Creates `user` in the named groups through [`App::create_user`]; a
/// taken username or e-mail is a 400 with the caller's detail, an unknown
/// group a 400 naming it.
pub(super) fn create(
    app: &App,
    user: User,
    group_names: Vec<String>,
    username_taken: &str,
    email_taken: &str,
) -> Result<User, ApiError> {
    app.create_user(user, group_names).map_err(|err| match err {
        CreateUserError::UsernameTaken => ApiError::bad_request(username_taken),
        CreateUserError::EmailTaken => ApiError::bad_request(email_taken),
        CreateUserError::UnknownGroup(name) => unknown_group(&name),
        CreateUserError::Store(err) => err.into(),
    })
}

/// `GET /whoami`, `GET /user/me`.
pub fn whoami(app: &App, req: &Req) -> ApiResult {
    let user = auth::verified(&app.keys, &app.users, req.bearer())?;
    Ok(Resp::json(&user.to_json()))
}

/// `POST /user/register` (admin): a new active, unverified user.
pub fn register(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let input = NewUser::parse(&body.require()?)?;
    let hashed_password = auth::hash_password(&input.password, app.config.bcrypt_cost)?;
    let username_taken = format!("Username already exists: {}", input.username);
    let user = User {
        id: ids::new_id(),
        email: input.email,
        is_active: true,
        is_superuser: input.is_superuser,
        is_verified: false,
        username: input.username,
        groups: Vec::new(),
        hashed_password,
    };
    let user = create(
        app,
        user,
        input.groups,
        &username_taken,
        "REGISTER_USER_ALREADY_EXISTS",
    )?;
    Ok(Resp::json(&user.to_json()))
}

/// `GET /users`: a page of users, query language filters.
pub fn list(app: &App, req: &Req) -> ApiResult {
    auth::user(&app.keys, &app.users, req.bearer())?;
    let (limit, offset) = pagination(req)?;
    let filter = Filter::parse(&req.query, &["limit", "offset"], &USER_SCHEMA)?;
    let (found, total) = app.store.read(|c| users::list(c, &filter, limit, offset))?;
    let items = found.iter().map(User::to_json).collect();
    Ok(Resp::json(&page(items, total, limit, offset)))
}

/// `GET /user/{id}`.
pub fn get(app: &App, req: &Req, id: &str) -> ApiResult {
    auth::user(&app.keys, &app.users, req.bearer())?;
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
        move |c, _| {
            let mut user = users::get(c, &id)?
                .ok_or_else(|| ApiError::not_found(&format!("User not found with id: {id}")))?;
            let before = user.clone();
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
            if before.administers() && !user.administers() {
                keep_an_administrator(c, &user.id)?;
            }
            users::update(c, &user)?;
            Ok(user)
        },
        cache_put(app),
    )
}

/// Refuses a change that would leave no active superuser: `id`, an active
/// superuser, is about to stop being one.
fn keep_an_administrator(c: &rusqlite::Connection, id: &str) -> Result<(), ApiError> {
    if users::other_active_superuser(c, id)? {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "The last active superuser cannot be removed, deactivated or lose its superuser flag",
        ))
    }
}

/// `PATCH /user/me`: username, e-mail, password; never flags or groups.
pub fn update_me(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    let me = auth::user(&app.keys, &app.users, req.bearer())?;
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
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let id = path_id(id)?;
    let patch = UserPatch::parse(&body.require()?)?;
    let user = apply_patch(app, id, patch, true)?;
    Ok(Resp::json(&user.to_json()))
}

/// `DELETE /user/{id}` (admin): 200 `null`.
pub fn delete(app: &App, req: &Req, id: &str) -> ApiResult {
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let id = path_id(id)?;
    let cache = Arc::clone(&app.users);
    let gone = id.clone();
    app.store.write_then(
        move |c, _| {
            if users::get(c, &id)?.is_some_and(|u| u.administers()) {
                keep_an_administrator(c, &id)?;
            }
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
