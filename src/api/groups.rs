//! User groups under upstream's `/user-groups` and the KernelCI user guide's `/group`,
//! `/groups` paths; both families share one store.

use super::{page, pagination, path_id};
use crate::app::App;
use crate::auth;
use crate::http::{ApiError, ApiResult, Req, Resp};
use crate::ids;
use crate::model::user::{Group, parse_group_name};
use crate::query::{Filter, GROUP_SCHEMA};
use crate::store::{groups, users};

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(&format!("User group not found with id: {id}"))
}

/// `POST /user-groups`, `POST /group` (admin).
pub fn create(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let body = body.require()?;
    let name = parse_group_name(&body)?;
    if body.get("id").is_some() {
        return Err(ApiError::bad_request(
            "A new user group must not have an id",
        ));
    }
    let group = app.store.write(move |c, _| {
        if groups::get_by_name(c, &name)?.is_some() {
            return Err(ApiError::bad_request(&format!(
                "User group already exists with name: {name}"
            )));
        }
        let group = Group {
            id: ids::new_id(),
            name,
        };
        groups::insert(c, &group)?;
        Ok(group)
    })?;
    Ok(Resp::json(&group.to_json()))
}

fn list(app: &App, req: &Req) -> ApiResult {
    let (limit, offset) = pagination(req)?;
    let filter = Filter::parse(&req.query, &["limit", "offset"], &GROUP_SCHEMA)?;
    let (found, total) = app
        .store
        .read(|c| groups::list(c, &filter, limit, offset))?;
    let items = found.iter().map(Group::to_json).collect();
    Ok(Resp::json(&page(items, total, limit, offset)))
}

/// `GET /user-groups` (admin).
pub fn list_admin(app: &App, req: &Req) -> ApiResult {
    auth::admin(&app.keys, &app.users, req.bearer())?;
    list(app, req)
}

/// `GET /groups` (public, as in the KernelCI user guide).
pub fn list_public(app: &App, req: &Req) -> ApiResult {
    list(app, req)
}

fn get(app: &App, id: &str) -> ApiResult {
    let id = path_id(id)?;
    let group = app
        .store
        .read(|c| groups::get(c, &id))?
        .ok_or_else(|| not_found(&id))?;
    Ok(Resp::json(&group.to_json()))
}

/// `GET /user-groups/{id}` (admin).
pub fn get_admin(app: &App, req: &Req, id: &str) -> ApiResult {
    auth::admin(&app.keys, &app.users, req.bearer())?;
    get(app, id)
}

/// `GET /group/{id}` (public).
pub fn get_public(app: &App, _req: &Req, id: &str) -> ApiResult {
    get(app, id)
}

/// `DELETE /user-groups/{id}`, `DELETE /group/{id}` (admin): 204; 409 while
/// any user is a member.
pub fn delete(app: &App, req: &Req, id: &str) -> ApiResult {
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let id = path_id(id)?;
    app.store.write(move |c, _| {
        if groups::get(c, &id)?.is_none() {
            return Err(not_found(&id));
        }
        if users::any_member_of(c, &id)? {
            return Err(ApiError::conflict(
                "User group is assigned to users and cannot be deleted. Remove it from users first.",
            ));
        }
        groups::delete(c, &id)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(Resp::no_content())
}
