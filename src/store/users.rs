//! User SQL. The document column holds `UserRead`; the hash has its own
//! column so that no filter or response can reach it.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::filter::{SqlTable, doc_table};
use super::{StoreError, page};
use crate::model::user::User;
use crate::query::Filter;

const USERS: SqlTable = doc_table("doc");

fn from_row(row: &Row) -> rusqlite::Result<(String, String)> {
    Ok((row.get(0)?, row.get(1)?))
}

fn decode((doc, hash): (String, String)) -> Result<User, StoreError> {
    let user: User = serde_json::from_str(&doc)
        .map_err(|e| StoreError::Internal(format!("malformed user row: {e}")))?;
    Ok(User {
        hashed_password: hash,
        ..user
    })
}

fn one(c: &Connection, sql: &str, key: &str) -> Result<Option<User>, StoreError> {
    c.query_row(sql, [key], from_row)
        .optional()?
        .map(decode)
        .transpose()
}

/// The user with this id.
pub fn get(c: &Connection, id: &str) -> Result<Option<User>, StoreError> {
    one(c, "SELECT doc, hashed_password FROM user WHERE id = ?1", id)
}

/// The user with this (case-sensitive) username.
pub fn get_by_username(c: &Connection, username: &str) -> Result<Option<User>, StoreError> {
    one(
        c,
        "SELECT doc, hashed_password FROM user WHERE username = ?1",
        username,
    )
}

/// The user with this e-mail address (case-insensitive).
pub fn get_by_email(c: &Connection, email: &str) -> Result<Option<User>, StoreError> {
    let key = crate::model::user::email_key(email);
    one(
        c,
        "SELECT doc, hashed_password FROM user WHERE email_key = ?1",
        &key,
    )
}

/// Every user (to fill the authentication cache at start-up).
pub fn all(c: &Connection) -> Result<Vec<User>, StoreError> {
    let mut stmt = c.prepare("SELECT doc, hashed_password FROM user ORDER BY id")?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| decode(r?)).collect()
}

/// Whether any superuser exists.
pub fn any_superuser(c: &Connection) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM user WHERE json_extract(doc, '$.is_superuser') = 1)",
        [],
        |r| r.get(0),
    )?)
}

/// Whether an active superuser other than `id` exists.
pub fn other_active_superuser(c: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM user WHERE id <> ?1
             AND json_extract(doc, '$.is_superuser') = 1 AND json_extract(doc, '$.is_active') = 1)",
        [id],
        |r| r.get(0),
    )?)
}

/// Stores a new user.
pub fn insert(c: &Connection, user: &User) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO user (id, username, email_key, hashed_password, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            user.id,
            user.username,
            user.email_key(),
            user.hashed_password,
            user.to_json().to_string()
        ],
    )?;
    Ok(())
}

/// Replaces a stored user; `NotFound` if it is gone.
pub fn update(c: &Connection, user: &User) -> Result<(), StoreError> {
    let n = c.execute(
        "UPDATE user SET username = ?2, email_key = ?3, hashed_password = ?4, doc = ?5 WHERE id = ?1",
        params![
            user.id,
            user.username,
            user.email_key(),
            user.hashed_password,
            user.to_json().to_string()
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Deletes a user; whether it existed.
pub fn delete(c: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(c.execute("DELETE FROM user WHERE id = ?1", [id])? > 0)
}

/// Whether some user is a member of the group with this id.
pub fn any_member_of(c: &Connection, group_id: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM user, json_each(user.doc, '$.groups') AS g
                        WHERE json_extract(g.value, '$.id') = ?1)",
        [group_id],
        |r| r.get(0),
    )?)
}

/// One page of users matching `filter` (in id order) and the total count.
pub fn list(
    c: &Connection,
    filter: &Filter,
    limit: u64,
    offset: u64,
) -> Result<(Vec<User>, u64), StoreError> {
    let columns = "doc, hashed_password";
    page(c, "user", columns, &USERS, filter, (limit, offset), |r| {
        decode(from_row(r)?)
    })
}
