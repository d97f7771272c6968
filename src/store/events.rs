//! Event-history SQL: every stored event, appended in the transaction that
//! caused it.

use rusqlite::{Connection, params};

use super::StoreError;
use crate::model::event::Event;

/// Appends an event; returns its sequence number.
pub fn append(c: &Connection, event: &Event) -> Result<i64, StoreError> {
    c.execute(
        "INSERT INTO event (id, timestamp, channel, owner, data, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            event.id,
            crate::timestamp::format(&event.timestamp),
            event.channel,
            event.owner,
            event.data.to_string(),
            event.envelope.to_string(),
        ],
    )?;
    Ok(c.last_insert_rowid())
}

/// How many events are stored for a node (`data.id`).
pub fn count_for_node(c: &Connection, node_id: &str) -> Result<u64, StoreError> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM event WHERE json_extract(data, '$.id') = ?1",
        [node_id],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}
