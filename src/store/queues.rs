//! Push lists: FIFO work queues, each message popped exactly once.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Notice, Outbox, StoreError};

/// Appends a message (a CloudEvent envelope) to `list`.
pub fn push(
    c: &Connection,
    out: &mut Outbox,
    list: &str,
    envelope: &serde_json::Value,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO queue (list, envelope) VALUES (?1, ?2)",
        params![list, envelope.to_string()],
    )?;
    out.push(Notice::List(list.to_string()));
    Ok(())
}

/// Removes and returns the oldest message of `list`.
pub fn pop(c: &Connection, list: &str) -> Result<Option<String>, StoreError> {
    let found: Option<(i64, String)> = c
        .query_row(
            "SELECT id, envelope FROM queue WHERE list = ?1 ORDER BY id LIMIT 1",
            [list],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match found {
        Some((id, envelope)) => {
            c.execute("DELETE FROM queue WHERE id = ?1", [id])?;
            Ok(Some(envelope))
        }
        None => Ok(None),
    }
}
