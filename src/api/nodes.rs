//! `/node`, `/nodes`, `/nodes/fast`, `/count`, `/batch/nodeset`: nodes,
//! their updates and hierarchies. Every change writes its node event in the
//! same transaction.

use rusqlite::Connection;
use serde_json::{Value, json};

use super::{IN_MEMORY_MAX_BYTES, STREAM_ABOVE, pagination, path_id};
use crate::app::App;
use crate::auth;
use crate::http::{ApiError, ApiResult, Req, Resp};
use crate::ids;
use crate::model::node::{Node, NodeError, NodeSet};
use crate::model::user::User;
use crate::model::validate::{Fields, parse_bool_word};
use crate::query::{Filter, NODE_SCHEMA};
use crate::store::stream::Rows;
use crate::store::{Outbox, events, groups, nodes};
use crate::timestamp::{self, Timestamp};

const DENIED: &str = "Unauthorized to complete the operation";

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(&format!("Node not found with id: {id}"))
}

/// The stored node `id` if `user` may edit it: 404, then 401.
fn editable(c: &Connection, id: &str, user: &User) -> Result<Node, ApiError> {
    let node = nodes::get(c, id)?.ok_or_else(|| not_found(id))?;
    if node.editable_by(user) {
        Ok(node)
    } else {
        Err(ApiError::denied(DENIED))
    }
}

fn check_groups(c: &Connection, node: &Node) -> Result<(), ApiError> {
    for name in &node.user_groups {
        if groups::get_by_name(c, name)?.is_none() {
            return Err(ApiError::bad_request(&format!(
                "User group does not exist with name: {name}"
            )));
        }
    }
    Ok(())
}

/// `?noevent=`: the contract's boolean words, else 422.
fn noevent(req: &Req) -> Result<bool, ApiError> {
    match req.query_param("noevent") {
        None => Ok(false),
        Some(v) => parse_bool_word(v).ok_or_else(|| {
            ApiError::query_invalid("noevent", "Input should be a valid boolean", "bool_parsing")
        }),
    }
}

/// `POST /node` (user): owner from the token; parent and groups must exist.
pub fn create(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let node = Node::create(&body.require()?, &user.username, timestamp::now())?;
    let source = app.config.cloud_events_source.clone();
    let node = app.store.write(move |c, out| {
        if let Some(parent) = &node.parent
            && !nodes::exists(c, parent)?
        {
            return Err(ApiError::not_found(&format!(
                "Parent not found with id: {parent}"
            )));
        }
        check_groups(c, &node)?;
        nodes::insert(c, out, &node)?;
        events::append_node_event(c, out, &source, &node, false, None)?;
        Ok(node)
    })?;
    Ok(Resp::json(&node.to_json()))
}

/// `GET /node/{id}`: the node, or `null` for an unknown id.
pub fn get(app: &App, _req: &Req, id: &str) -> ApiResult {
    let id = path_id(id)?;
    let doc = app.store.read(|c| nodes::get_doc(c, &id))?;
    Ok(Resp::json_text(doc.unwrap_or_else(|| "null".into())))
}

/// `PUT /node/{id}` (editor).
pub fn put(app: &App, req: &Req, id: &str) -> ApiResult {
    update(app, req, id, |current, body, now| {
        current.put(body, now, true)
    })
}

/// `PATCH /node/{id}` (editor).
pub fn patch(app: &App, req: &Req, id: &str) -> ApiResult {
    update(app, req, id, |current, body, now| current.patch(body, now))
}

fn update(
    app: &App,
    req: &Req,
    id: &str,
    apply: fn(&Node, &Value, Timestamp) -> Result<Node, NodeError>,
) -> ApiResult {
    let body = req.body()?;
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let id = path_id(id)?;
    let quiet = noevent(req);
    let body = body.require();
    let source = app.config.cloud_events_source.clone();
    let node = app.store.write(move |c, out| {
        // 404 and 401 come before any problem with the request itself.
        let current = editable(c, &id, &user)?;
        let (quiet, body) = (quiet?, body?);
        let node = apply(&current, &body, timestamp::now())?;
        nodes::update(c, out, &node)?;
        if !quiet {
            events::append_node_event(c, out, &source, &node, false, Some(&current))?;
        }
        Ok::<_, ApiError>(node)
    })?;
    Ok(Resp::json(&node.to_json()))
}

/// One level of a hierarchy body: `{"node": {...}, "child_nodes": [...]}`.
fn hierarchy_parts(value: &Value) -> Result<(&Value, &[Value]), ApiError> {
    let mut f = Fields::new(value);
    let node = f.raw("node");
    let children = f.raw("child_nodes");
    if node.is_none() {
        f.fail("node", "Field required", "missing");
    } else if !node.is_some_and(Value::is_object) {
        f.fail("node", "Input should be a valid dictionary", "dict_type");
    }
    if children.is_some_and(|c| !c.is_array() && !c.is_null()) {
        f.fail("child_nodes", "Input should be a valid list", "list_type");
    }
    f.finish()?;
    let children = children
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    Ok((node.unwrap_or(&Value::Null), children))
}

/// Context shared by every child of one hierarchy write.
struct Hierarchy<'a> {
    user: &'a User,
    submitter: Option<String>,
    treeid: Option<String>,
    now: Timestamp,
}

/// Writes `children` under the last of `ancestors` (root first).
fn write_children(
    c: &Connection,
    out: &mut Outbox,
    h: &Hierarchy,
    ancestors: &mut Vec<String>,
    children: &[Value],
    written: &mut Vec<Node>,
) -> Result<(), ApiError> {
    let parent = ancestors.last().cloned().unwrap_or_default();
    let parent = parent.as_str();
    for child in children {
        let (body, grandchildren) = hierarchy_parts(child)?;
        let given_id = body.get("id").and_then(Value::as_str);
        let node = match given_id {
            Some(text) => {
                let id = ids::parse_id(text)
                    .ok_or_else(|| ApiError::bad_request(&ids::invalid_id_detail(text)))?;
                let current = editable(c, &id, h.user)?;
                let mut node = current.put(body, h.now, false)?;
                if id == parent {
                    return Err(ApiError::bad_request(
                        "Parent cannot be the same as the object",
                    ));
                }
                if ancestors.contains(&id) {
                    return Err(ApiError::bad_request(&format!(
                        "Node {id} cannot be its own descendant"
                    )));
                }
                node.parent = Some(parent.to_string());
                nodes::update(c, out, &node)?;
                node
            }
            None => {
                let mut node = Node::create(body, &h.user.username, h.now)?;
                node.parent = Some(parent.to_string());
                node.submitter = h.submitter.clone();
                node.treeid = h.treeid.clone();
                check_groups(c, &node)?;
                nodes::insert(c, out, &node)?;
                node
            }
        };
        ancestors.push(node.id.clone());
        written.push(node);
        write_children(c, out, h, ancestors, grandchildren, written)?;
        ancestors.pop();
    }
    Ok(())
}

/// `PUT /nodes/{id}` (editor of the root): root update plus child nodes,
/// all or nothing; one `updated` event for the root.
pub fn put_hierarchy(app: &App, req: &Req, id: &str) -> ApiResult {
    let body = req.body()?;
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let id = path_id(id)?;
    let body = body.require()?;
    let source = app.config.cloud_events_source.clone();
    let written = app.store.write(move |c, out| {
        let current = editable(c, &id, &user)?;
        let (root_body, children) = hierarchy_parts(&body)?;
        let now = timestamp::now();
        let root = current.put(root_body, now, false)?;
        nodes::update(c, out, &root)?;
        let h = Hierarchy {
            user: &user,
            submitter: current.submitter.clone(),
            treeid: current.treeid.clone(),
            now,
        };
        let mut written = vec![root];
        write_children(c, out, &h, &mut vec![id.clone()], children, &mut written)?;
        events::append_node_event(c, out, &source, &written[0], true, Some(&current))?;
        Ok::<_, ApiError>(written)
    })?;
    Ok(Resp::json(&Value::Array(
        written.iter().map(Node::to_json).collect(),
    )))
}

/// `PUT /batch/nodeset` (user): sets `processed_by_kcidb_bridge` on the
/// listed nodes the caller may edit; all ids checked first; no events.
pub fn batch_nodeset(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let NodeSet {
        ids: node_ids,
        flag,
    } = NodeSet::parse(&body.require()?)?;
    let changed = app.store.write(move |c, out| {
        let mut found = Vec::with_capacity(node_ids.len());
        for id in &node_ids {
            found.push(nodes::get(c, id)?.ok_or_else(|| not_found(id))?);
        }
        let now = timestamp::now();
        let mut changed = 0u64;
        for mut node in found.into_iter().filter(|n| n.editable_by(&user)) {
            node.processed_by_kcidb_bridge = flag;
            node.updated = now;
            nodes::update(c, out, &node)?;
            changed += 1;
        }
        Ok::<_, ApiError>(changed)
    })?;
    Ok(Resp::json(&json!(changed)))
}

fn filter(req: &Req) -> Result<Filter, ApiError> {
    Ok(Filter::parse(
        &req.query,
        &["limit", "offset"],
        &NODE_SCHEMA,
    )?)
}

/// `GET /nodes`: a page of nodes in id order.
pub fn list(app: &App, req: &Req) -> ApiResult {
    let (limit, offset) = pagination(req)?;
    let filter = filter(req)?;
    let (items, total) = app.store.read(|c| {
        let items = match limit <= STREAM_ABOVE {
            true => nodes::list_text(c, &filter, Some(limit), offset, IN_MEMORY_MAX_BYTES)?,
            false => None,
        };
        Ok::<_, ApiError>((items, nodes::count(c, &filter)?))
    })?;
    // The envelope's key order: items, total, limit, offset.
    let suffix = format!("\"total\":{total},\"limit\":{limit},\"offset\":{offset}}}");
    if let Some(items) = items {
        return Ok(Resp::json_text(format!("{{\"items\":{items},{suffix}")));
    }
    let rows: Rows =
        Box::new(move |c, emit| nodes::each_doc(c, &filter, Some(limit), offset, emit));
    let stream = app
        .store
        .stream_array("{\"items\":[".into(), format!("],{suffix}"), rows)?;
    Ok(Resp::json_stream(stream))
}

/// `GET /nodes/fast`: a plain list, no default limit; bad limit/offset 400.
pub fn fast(app: &App, req: &Req) -> ApiResult {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        match req.query_param(name) {
            None => Ok(None),
            Some(text) => text.trim().parse::<u64>().map(Some).map_err(|_| {
                ApiError::bad_request(&format!("'{name}' must be a non-negative integer"))
            }),
        }
    };
    let (limit, offset) = (number("limit")?, number("offset")?.unwrap_or(0));
    let filter = filter(req)?;
    if limit.is_some_and(|l| l <= STREAM_ABOVE) {
        let items = app
            .store
            .read(|c| nodes::list_text(c, &filter, limit, offset, IN_MEMORY_MAX_BYTES))?;
        if let Some(items) = items {
            return Ok(Resp::json_text(items));
        }
    }
    let rows: Rows = Box::new(move |c, emit| nodes::each_doc(c, &filter, limit, offset, emit));
    let stream = app.store.stream_array("[".into(), "]".into(), rows)?;
    Ok(Resp::json_stream(stream))
}

/// `GET /count`: how many nodes match; `limit`/`offset` are ignored.
pub fn count(app: &App, req: &Req) -> ApiResult {
    let filter = filter(req)?;
    let n = app.store.read(|c| nodes::count(c, &filter))?;
    Ok(Resp::json(&Value::from(n)))
}
