//! `/node`, `/nodes`, `/count`: the first slice of the node surface
//! (create, get, list with equality filters, count).

use serde_json::Value;

use super::{page, pagination, path_id};
use crate::app::App;
use crate::auth;
use crate::http::{ApiError, ApiResult, Req, Resp};
use crate::model::node::{Node, NodeError};
use crate::query::{Filter, NODE_SCHEMA};
use crate::store::{groups, nodes};
use crate::timestamp;

/// `POST /node` (user): owner from the token; parent and groups must exist.
pub fn create(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    let user = auth::user(&app.keys, &app.users, req)?;
    let node =
        Node::create(&body.require()?, &user.username, timestamp::now()).map_err(|e| match e {
            NodeError::Invalid(items) => ApiError::validation(items),
            NodeError::Rejected(detail) => ApiError::bad_request(&detail),
        })?;
    let node = app.store.write(move |c| {
        if let Some(parent) = &node.parent
            && !nodes::exists(c, parent)?
        {
            return Err(ApiError::not_found(&format!(
                "Parent not found with id: {parent}"
            )));
        }
        for name in &node.user_groups {
            if groups::get_by_name(c, name)?.is_none() {
                return Err(ApiError::bad_request(&format!(
                    "User group does not exist with name: {name}"
                )));
            }
        }
        nodes::insert(c, &node)?;
        Ok(node)
    })?;
    Ok(Resp::json(&node.to_json()))
}

/// `GET /node/{id}`: the node, or `null` for an unknown id.
pub fn get(app: &App, _req: &Req, id: &str) -> ApiResult {
    let id = path_id(id)?;
    let node = app.store.read(|c| nodes::get(c, &id))?;
    Ok(Resp::json(&node.map_or(Value::Null, |n| n.to_json())))
}

/// `GET /nodes`: a page of nodes in id order.
pub fn list(app: &App, req: &Req) -> ApiResult {
    let (limit, offset) = pagination(req)?;
    let filter = Filter::parse(&req.query, &["limit", "offset"], &NODE_SCHEMA)?;
    let (items, total) = app.store.read(|c| {
        Ok::<_, ApiError>((
            nodes::list(c, &filter, Some(limit), offset)?,
            nodes::count(c, &filter)?,
        ))
    })?;
    Ok(Resp::json(&page(items, total, limit, offset)))
}

/// `GET /count`: how many nodes match; `limit`/`offset` are ignored.
pub fn count(app: &App, req: &Req) -> ApiResult {
    let filter = Filter::parse(&req.query, &["limit", "offset"], &NODE_SCHEMA)?;
    let n = app.store.read(|c| nodes::count(c, &filter))?;
    Ok(Resp::json(&Value::from(n)))
}
