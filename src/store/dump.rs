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

/// Upstream's collections and the tables that hold them.
const COLLECTION_TABLES: [(&str, &str); 6] = [
    ("node", "node"),
    ("user", "user"),
    ("usergroup", "user_group"),
    ("eventhistory", "event"),
    ("telemetry", "telemetry"),
    ("kv", "kv"),
];

/// Rows per collection that an import into an empty database requires to
/// be zero: (name, count).
pub fn contents(c: &Connection) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut out = Vec::new();
    for (name, table) in COLLECTION_TABLES {
        let n: i64 = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        out.push((name, n));
    }
    Ok(out)
}

/// Whether a row with this id exists in the table of `collection`
/// (`node`, `user`, `usergroup`, `eventhistory` or `telemetry`).
pub fn exists(c: &Connection, collection: &str, id: &str) -> Result<bool, StoreError> {
    let table = COLLECTION_TABLES
        .iter()
        .find(|(name, table)| *name == collection && *table != "kv")
        .map(|(_, table)| *table)
        .ok_or_else(|| StoreError::Internal(format!("no collection {collection}")))?;
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

/// Creates the staging table of imported events (temporary: it lives in
/// SQLite's temporary store, not in memory, and goes with the connection).
pub fn stage_events(c: &Connection) -> Result<(), StoreError> {
    c.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS staged_event (
             orig_seq INTEGER, line INTEGER NOT NULL, id TEXT NOT NULL,
             timestamp TEXT NOT NULL, channel TEXT NOT NULL, owner TEXT,
             node_id TEXT, data TEXT NOT NULL, envelope TEXT NOT NULL);
         DELETE FROM staged_event;",
    )?;
    Ok(())
}

/// Puts an imported event aside, with its own sequence number if it has
/// one and the line it was read from.
pub fn stage_event(
    c: &Connection,
    orig_seq: Option<i64>,
    line: usize,
    event: &Event,
) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO staged_event (orig_seq, line, id, timestamp, channel, owner, node_id,
                                   data, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    stmt.execute(params![
        orig_seq,
        i64::try_from(line).unwrap_or(i64::MAX),
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

/// The line of an event staged twice with the same sequence number, or of
/// one whose number a stored event has: (line, sequence number).
pub fn staged_clash(c: &Connection) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(c.query_row(
        "SELECT max(line), orig_seq FROM staged_event WHERE orig_seq IS NOT NULL
          GROUP BY orig_seq HAVING count(*) > 1
         UNION ALL
         SELECT s.line, s.orig_seq FROM staged_event AS s JOIN event AS e ON e.seq = s.orig_seq
         LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// Stores the staged events and returns how many. `keep`: each keeps its
/// own sequence number (those without one are numbered after the highest);
/// else all are numbered after the highest stored, in the order of their
/// own numbers.
pub fn place_staged_events(c: &Connection, keep: bool) -> Result<u64, StoreError> {
    let base: i64 = c.query_row(
        "SELECT max(coalesce((SELECT max(seq) FROM event), 0),
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'event'), 0),
                    CASE WHEN ?1 THEN coalesce((SELECT max(orig_seq) FROM staged_event), 0)
                         ELSE 0 END)",
        [keep],
        |r| r.get(0),
    )?;
    let n = c.execute(
        "INSERT INTO event (seq, id, timestamp, channel, owner, node_id, data, envelope)
         SELECT CASE WHEN ?1 AND orig_seq IS NOT NULL THEN orig_seq
                     ELSE ?2 + row_number() OVER (
                         PARTITION BY (?1 AND orig_seq IS NOT NULL)
                         ORDER BY orig_seq IS NULL, orig_seq, rowid) END,
                id, timestamp, channel, owner, node_id, data, envelope
           FROM staged_event ORDER BY rowid",
        params![keep, base],
    )?;
    c.execute_batch("DELETE FROM staged_event")?;
    Ok(n as u64)
}

/// The indexes and triggers of the node and event tables, dropped for a
/// bulk load into an empty database and made again after it (building an
/// index over sorted rows once costs far less than keeping it up to date
/// row by row). The kept node counts are recomputed at the end.
pub struct Deferred {
    sql: Vec<String>,
}

/// Drops the indexes and triggers of the node and event tables (their
/// primary keys stay, for the checks of the load) inside the caller's
/// transaction.
pub fn defer_indexes(c: &Connection) -> Result<Deferred, StoreError> {
    let mut stmt = c.prepare(
        "SELECT type, name, sql FROM sqlite_schema
          WHERE type IN ('index', 'trigger') AND tbl_name IN ('node', 'event')
            AND sql IS NOT NULL",
    )?;
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut sql = Vec::new();
    for (kind, name, create) in rows {
        let kind = if kind == "index" { "INDEX" } else { "TRIGGER" };
        c.execute_batch(&format!("DROP {kind} \"{}\"", name.replace('"', "\"\"")))?;
        sql.push(create);
    }
    Ok(Deferred { sql })
}

/// Makes again what [`defer_indexes`] dropped, and the kept node counts.
pub fn restore_indexes(c: &Connection, deferred: Deferred) -> Result<(), StoreError> {
    for create in &deferred.sql {
        c.execute_batch(create)?;
    }
    c.execute_batch(
        "DELETE FROM node_count;
         INSERT INTO node_count (kind, state, n)
         SELECT kind, state, count(*) FROM node GROUP BY kind, state;",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;
    use serde_json::json;

    fn staged(c: &Connection, events: &[(Option<i64>, &str)]) {
        stage_events(c).expect("stage");
        for (line, (seq, name)) in events.iter().enumerate() {
            let e = Event::new("node", None, json!({"name": name}), "test");
            stage_event(c, *seq, line + 1, &e).expect("staged");
        }
    }

    fn names_by_seq(c: &Connection) -> Vec<(i64, String)> {
        let mut stmt = c
            .prepare("SELECT seq, json_extract(data, '$.name') FROM event ORDER BY seq")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn staged_events_keep_their_numbers_or_follow_the_highest_in_order() {
        let (_dir, store) = temp_store();
        store
            .write(|c, _| {
                staged(c, &[(Some(5), "e5"), (None, "x"), (Some(2), "e2")]);
                assert_eq!(staged_clash(c)?, None);
                assert_eq!(place_staged_events(c, true)?, 3);
                // merging: after the highest, in the order of their own numbers
                staged(c, &[(Some(9), "m9"), (Some(1), "m1"), (None, "m?")]);
                assert_eq!(place_staged_events(c, false)?, 3);
                // a clash is found before anything is placed
                staged(c, &[(Some(3), "a"), (Some(3), "b")]);
                assert_eq!(staged_clash(c)?, Some((2, 3)));
                staged(c, &[(Some(5), "again")]);
                assert_eq!(staged_clash(c)?, Some((1, 5)));
                Ok::<_, StoreError>(())
            })
            .expect("write");
        let got = store
            .read(|c| Ok::<_, StoreError>(names_by_seq(c)))
            .expect("read");
        let want: Vec<(i64, String)> = [
            (2, "e2"),
            (5, "e5"),
            (6, "x"),
            (7, "m1"),
            (8, "m9"),
            (9, "m?"),
        ]
        .iter()
        .map(|(s, n)| (*s, n.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
