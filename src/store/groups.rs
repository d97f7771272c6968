//! User group SQL.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::users::clamp;
use super::{StoreError, filter_sql};
use crate::model::user::Group;
use crate::query::{Filter, SqlTable, doc_table};

const GROUPS: SqlTable = doc_table("json_object('id', id, 'name', name)");

fn group(row: &rusqlite::Row) -> rusqlite::Result<Group> {
    Ok(Group {
        id: row.get(0)?,
        name: row.get(1)?,
    })
}

/// The group with this id.
pub fn get(c: &Connection, id: &str) -> Result<Option<Group>, StoreError> {
    Ok(
        c.query_row("SELECT id, name FROM user_group WHERE id = ?1", [id], group)
            .optional()?,
    )
}

/// The group with this name.
pub fn get_by_name(c: &Connection, name: &str) -> Result<Option<Group>, StoreError> {
    Ok(c.query_row(
        "SELECT id, name FROM user_group WHERE name = ?1",
        [name],
        group,
    )
    .optional()?)
}

/// Stores a new group.
pub fn insert(c: &Connection, g: &Group) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO user_group (id, name) VALUES (?1, ?2)",
        params![g.id, g.name],
    )?;
    Ok(())
}

/// Deletes a group; whether it existed.
pub fn delete(c: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(c.execute("DELETE FROM user_group WHERE id = ?1", [id])? > 0)
}

/// One page of groups matching `filter` (in id order) and the total count.
pub fn list(
    c: &Connection,
    filter: &Filter,
    limit: u64,
    offset: u64,
) -> Result<(Vec<Group>, u64), StoreError> {
    let (cond, mut args) = filter_sql(filter, &GROUPS)?;
    let total: i64 = c.query_row(
        &format!("SELECT count(*) FROM user_group WHERE {cond}"),
        rusqlite::params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    args.push(Value::Integer(clamp(limit)));
    args.push(Value::Integer(clamp(offset)));
    let n = args.len();
    let sql = format!(
        "SELECT id, name FROM user_group WHERE {cond} ORDER BY id LIMIT ?{} OFFSET ?{}",
        n - 1,
        n
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), group)?;
    Ok((rows.collect::<Result<_, _>>()?, total.max(0) as u64))
}
