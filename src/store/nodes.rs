//! Node SQL: one JSON document per node plus indexed columns.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::users::clamp;
use super::{StoreError, filter_sql};
use crate::model::node::Node;
use crate::query::Filter;
use crate::timestamp;

fn decode(doc: String) -> Result<Node, StoreError> {
    let value: serde_json::Value = serde_json::from_str(&doc)?;
    Node::from_json(&value).ok_or_else(|| StoreError::Internal("malformed node row".into()))
}

/// The node with this id.
pub fn get(c: &Connection, id: &str) -> Result<Option<Node>, StoreError> {
    c.query_row("SELECT doc FROM node WHERE id = ?1", [id], |r| r.get(0))
        .optional()?
        .map(decode)
        .transpose()
}

/// Whether a node with this id exists.
pub fn exists(c: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM node WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )?)
}

/// Stores a new node.
pub fn insert(c: &Connection, node: &Node) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO node (id, kind, name, state, result, parent, owner, grp, treeid,
                           created, updated, timeout, holdoff, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            node.id,
            node.kind,
            node.name,
            node.state,
            node.result,
            node.parent,
            node.owner,
            node.group,
            node.treeid,
            timestamp::format(&node.created),
            timestamp::format(&node.updated),
            timestamp::format(&node.timeout),
            node.holdoff.as_ref().map(timestamp::format),
            node.to_json().to_string(),
        ],
    )?;
    Ok(())
}

/// Nodes matching `filter` in id order; `limit` None means all.
pub fn list(
    c: &Connection,
    filter: &Filter,
    limit: Option<u64>,
    offset: u64,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let (cond, mut args) = filter_sql(filter, "doc")?;
    args.push(Value::Integer(limit.map_or(-1, clamp)));
    args.push(Value::Integer(clamp(offset)));
    let n = args.len();
    let sql = format!(
        "SELECT doc FROM node WHERE {cond} ORDER BY id LIMIT ?{} OFFSET ?{}",
        n - 1,
        n
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        r.get::<_, String>(0)
    })?;
    rows.map(|doc| Ok(serde_json::from_str(&doc?)?)).collect()
}

/// How many nodes match `filter`.
pub fn count(c: &Connection, filter: &Filter) -> Result<u64, StoreError> {
    let (cond, args) = filter_sql(filter, "doc")?;
    let n: i64 = c.query_row(
        &format!("SELECT count(*) FROM node WHERE {cond}"),
        rusqlite::params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}
