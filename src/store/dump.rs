//! Every row of the collections that move to and from upstream's MongoDB,
//! read in one consistent snapshot for an export, and written with their
//! ids, timestamps and sequence numbers for an import (the callers hold
//! the transaction).

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, telemetry};
use crate::model::event::Event;
use crate::model::telemetry::TelemetryEvent;
use crate::model::user::Group;
use crate::timestamp::{self, Timestamp};

/// A stored event as the history keeps it.
pub struct EventRow {
    /// Its sequence number.
    pub seq: i64,
    /// Its ObjectId.
    pub id: String,
    /// When it was stored.
    pub timestamp: Timestamp,
    /// Its channel.
    pub channel: String,
    /// Its publisher, if any.
    pub owner: Option<String>,
    /// Its `data`, as stored JSON text.
    pub data: String,
}

fn each<T>(
    c: &Connection,
    sql: &str,
    map: impl Fn(&rusqlite::Row) -> Result<T, StoreError>,
    f: &mut dyn FnMut(T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = c.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        f(map(row)?)?;
    }
    Ok(())
}

/// Each node's stored document, by id.
pub fn each_node(
    c: &Connection,
    f: &mut dyn FnMut(String) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    each(c, "SELECT doc FROM node ORDER BY id", |r| Ok(r.get(0)?), f)
}

/// Each group, by id.
pub fn each_group(
    c: &Connection,
    f: &mut dyn FnMut(Group) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let map = |r: &rusqlite::Row| {
        Ok(Group {
            id: r.get(0)?,
            name: r.get(1)?,
        })
    };
    each(c, "SELECT id, name FROM user_group ORDER BY id", map, f)
}

/// Each stored event, by sequence number.
pub fn each_event(
    c: &Connection,
    f: &mut dyn FnMut(EventRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let map = |r: &rusqlite::Row| {
        let ts: String = r.get(2)?;
        Ok(EventRow {
            seq: r.get(0)?,
            id: r.get(1)?,
            timestamp: timestamp::parse_stored(&ts)
                .ok_or_else(|| StoreError::Internal(format!("malformed event time {ts:?}")))?,
            channel: r.get(3)?,
            owner: r.get(4)?,
            data: r.get(5)?,
        })
    };
    each(
        c,
        "SELECT seq, id, timestamp, channel, owner, data FROM event ORDER BY seq",
        map,
        f,
    )
}

/// Each telemetry event, by time.
pub fn each_telemetry(
    c: &Connection,
    f: &mut dyn FnMut(TelemetryEvent) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT {} FROM telemetry ORDER BY ts, id",
        telemetry::COLUMNS
    );
    each(c, &sql, telemetry::event_from_row, f)
}

/// Each KV entry: (namespace, key, value).
pub fn each_kv(
    c: &Connection,
    f: &mut dyn FnMut((String, String, String)) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let map = |r: &rusqlite::Row| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    each(c, "SELECT ns, key, value FROM kv ORDER BY ns, key", map, f)
}

/// Rows per collection that an import into an empty database requires to
/// be zero: (name, count).
pub fn contents(c: &Connection) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut out = Vec::new();
    for (name, table) in [
        ("node", "node"),
        ("user", "user"),
        ("usergroup", "user_group"),
        ("eventhistory", "event"),
        ("telemetry", "telemetry"),
        ("kv", "kv"),
    ] {
        let n: i64 = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        out.push((name, n));
    }
    Ok(out)
}

/// Whether a row with this id exists in the table of `collection`
/// (`node`, `user`, `usergroup`, `eventhistory` or `telemetry`).
pub fn exists(c: &Connection, collection: &str, id: &str) -> Result<bool, StoreError> {
    let table = match collection {
        "node" => "node",
        "user" => "user",
        "usergroup" => "user_group",
        "eventhistory" => "event",
        "telemetry" => "telemetry",
        other => return Err(StoreError::Internal(format!("no collection {other}"))),
    };
    let mut stmt = c.prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))?;
    Ok(stmt.query_row([id], |_| Ok(())).optional()?.is_some())
}

/// Whether a KV entry exists.
pub fn kv_exists(c: &Connection, ns: &str, key: &str) -> Result<bool, StoreError> {
    let mut stmt = c.prepare_cached("SELECT 1 FROM kv WHERE ns = ?1 AND key = ?2")?;
    Ok(stmt.query_row([ns, key], |_| Ok(())).optional()?.is_some())
}

/// Stores an event with the sequence number it had (the event sequence
/// goes on after the highest one stored).
pub fn insert_event(c: &Connection, seq: i64, event: &Event) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO event (seq, id, timestamp, channel, owner, node_id, data, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    stmt.execute(params![
        seq,
        event.id,
        timestamp::format(&event.timestamp),
        event.channel,
        event.owner,
        event.data.get("id").and_then(serde_json::Value::as_str),
        event.data.to_string(),
        super::events::stored_envelope(&event.envelope),
    ])?;
    Ok(())
}

/// Nodes whose parent is not stored.
pub fn orphans(c: &Connection) -> Result<u64, StoreError> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM node AS n WHERE n.parent IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM node AS p WHERE p.id = n.parent)",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}
