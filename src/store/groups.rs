//! User group SQL.

use rusqlite::{Connection, OptionalExtension, params};

use super::filter::{SqlTable, doc_table};
use super::{StoreError, page};
use crate::model::user::Group;
use crate::query::Filter;

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
    page(
        c,
        "user_group",
        "id, name",
        &GROUPS,
        filter,
        (limit, offset),
        |r| Ok(group(r)?),
    )
}
