//! Event-history SQL: every stored event, appended in the transaction that
//! caused it, read back by subscribers (by sequence number) and by
//! `GET /events`.

use rusqlite::types::Value;
use rusqlite::{Connection, params};

use super::filter::{SqlTable, doc_table, filter_sql};
use super::{Notice, Outbox, StoreError};
use crate::model::event::Event;
use crate::model::node::Node;
use crate::query::Filter;
use crate::timestamp::{self, Timestamp};

/// The stored event document that `GET /events` filters and returns.
const EVENT_DOC: &str = "json_object('id', id, 'timestamp', timestamp, 'sequence_id', seq, \
                         'channel', channel, 'owner', owner, 'data', json(data))";
const EVENTS: SqlTable = doc_table(EVENT_DOC);

/// The envelope as stored: its `data` (a copy of the data column) left out
/// as null, to be put back by [`deliverable`].
pub(crate) fn stored_envelope(envelope: &serde_json::Value) -> String {
    let mut envelope = envelope.clone();
    if let Some(data) = envelope.get_mut("data") {
        *data = serde_json::Value::Null;
    }
    envelope.to_string()
}

/// The CloudEvent text a subscriber receives: the stored envelope with its
/// data put back and `_sequence_id` appended.
pub fn deliverable(envelope: &str, data: &str, seq: i64) -> String {
    let parsed = (
        serde_json::from_str::<serde_json::Value>(envelope),
        serde_json::from_str::<serde_json::Value>(data),
    );
    match parsed {
        (Ok(serde_json::Value::Object(mut env)), Ok(data)) => {
            env.insert("data".into(), data);
            env.insert("_sequence_id".into(), serde_json::json!(seq));
            serde_json::Value::Object(env).to_string()
        }
        // Too deeply nested to parse back (never from this server's own
        // writes): deliver the stored text rather than nothing.
        _ => envelope.to_string(),
    }
}

/// Appends an event; returns its sequence number. Listeners of the channel
/// are told after COMMIT.
pub fn append(c: &Connection, out: &mut Outbox, event: &Event) -> Result<i64, StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO event (id, timestamp, channel, owner, node_id, data, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    stmt.execute(params![
        event.id,
        timestamp::format(&event.timestamp),
        event.channel,
        event.owner,
        event.data.get("id").and_then(serde_json::Value::as_str),
        event.data.to_string(),
        stored_envelope(&event.envelope),
    ])?;
    out.push(Notice::Channel(event.channel.clone()));
    Ok(c.last_insert_rowid())
}

/// Appends the node event of a change to `node` (`previous`: the node
/// before an update; `hierarchy`: the change came with its descendants).
pub fn append_node_event(
    c: &Connection,
    out: &mut Outbox,
    source: &str,
    node: &Node,
    hierarchy: bool,
    previous: Option<&Node>,
) -> Result<i64, StoreError> {
    let data = node.event_data(hierarchy, previous);
    append(
        c,
        out,
        &Event::new("node", node.owner.as_deref(), data, source),
    )
}

/// The highest sequence number used so far (0 when none).
pub fn max_seq(c: &Connection) -> Result<i64, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'event'")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

/// A stored event of a channel, as read for subscribers.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelEvent {
    pub seq: i64,
    pub owner: Option<String>,
    /// The stored envelope text (without its data).
    pub envelope: String,
    /// The stored data text.
    pub data: String,
}

impl ChannelEvent {
    /// The CloudEvent text a subscriber receives, built only for the
    /// events actually delivered.
    pub fn cloud_event(&self) -> String {
        deliverable(&self.envelope, &self.data, self.seq)
    }
}

/// Up to `limit` events on `channel` with `after < seq <= upto`, not older
/// than `oldest`, in sequence order, whoever owns them: which of them a
/// subscriber gets is the broker's rule (one read serves every listener of
/// the channel).
pub fn since(
    c: &Connection,
    channel: &str,
    after: i64,
    upto: i64,
    oldest: &Timestamp,
    limit: i64,
) -> Result<Vec<ChannelEvent>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, owner, envelope, data FROM event
         WHERE channel = ?1 AND seq > ?2 AND seq <= ?3 AND timestamp >= ?4
         ORDER BY seq LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![channel, after, upto, timestamp::format(oldest), limit],
        |r| {
            Ok(ChannelEvent {
                seq: r.get(0)?,
                owner: r.get(1)?,
                envelope: r.get(2)?,
                data: r.get(3)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What `GET /events` asks for.
#[derive(Default)]
pub struct EventQuery {
    pub channel: Option<String>,
    pub node_id: Option<String>,
    pub ids: Vec<String>,
    pub after: Option<Timestamp>,
    pub oldest: Option<Timestamp>,
    pub limit: Option<u64>,
    /// Conditions on the stored event document.
    pub filter: Filter,
}

/// Stored events matching `q`, ascending by sequence number, as documents
/// `{id, timestamp, sequence_id, channel, owner, data}`.
pub fn list(c: &Connection, q: &EventQuery) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut docs = Vec::new();
    let mut failed = None;
    each_doc(c, q, &mut |doc| match serde_json::from_str(doc) {
        Ok(value) => {
            docs.push(value);
            true
        }
        Err(err) => {
            failed = Some(err);
            false
        }
    })?;
    match failed {
        Some(err) => Err(err.into()),
        None => Ok(docs),
    }
}

/// The documents of [`list`] as the text of a JSON array (spliced from
/// the stored text, never parsed); `None` as soon as it would pass
/// `max_bytes` (the caller streams such an answer instead).
pub fn list_text(
    c: &Connection,
    q: &EventQuery,
    max_bytes: usize,
) -> Result<Option<String>, StoreError> {
    super::stream::array_text(max_bytes, |emit| each_doc(c, q, emit))
}

/// Gives the text of each stored event matching `q` (the documents of
/// [`list`]) to `emit`, ascending by sequence number, until `emit` answers
/// `false`. The stored `data` text is spliced in as it is, never parsed.
pub fn each_doc(
    c: &Connection,
    q: &EventQuery,
    emit: &mut dyn FnMut(&str) -> bool,
) -> Result<(), StoreError> {
    let (cond, mut args) = filter_sql(&q.filter, &EVENTS)?;
    let mut clauses = vec![cond];
    let bind = |args: &mut Vec<Value>, v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(channel) = &q.channel {
        let p = bind(&mut args, Value::Text(channel.clone()));
        clauses.push(format!("channel = {p}"));
    }
    if let Some(node) = &q.node_id {
        let p = bind(&mut args, Value::Text(node.clone()));
        clauses.push(format!("node_id = {p}"));
    }
    if !q.ids.is_empty() {
        let ps: Vec<String> = q
            .ids
            .iter()
            .map(|i| bind(&mut args, Value::Text(i.clone())))
            .collect();
        clauses.push(format!("id IN ({})", ps.join(", ")));
    }
    if let Some(after) = &q.after {
        let p = bind(&mut args, Value::Text(timestamp::format(after)));
        clauses.push(format!("timestamp > {p}"));
    }
    if let Some(oldest) = &q.oldest {
        let p = bind(&mut args, Value::Text(timestamp::format(oldest)));
        clauses.push(format!("timestamp >= {p}"));
    }
    // Read in keyset pages by sequence number, each in a read transaction
    // of its own, as node lists are (see `nodes::each_doc`).
    let after = bind(&mut args, Value::Integer(0));
    let limit = bind(&mut args, Value::Integer(0));
    let sql = format!(
        "SELECT id, timestamp, seq, channel, owner, data FROM event \
         WHERE {} AND seq > {after} ORDER BY seq LIMIT {limit}",
        clauses.join(" AND ")
    );
    let (after_at, limit_at) = (args.len() - 2, args.len() - 1);
    let mut remaining = q.limit.unwrap_or(u64::MAX);
    let mut last = 0i64;
    while remaining > 0 {
        let want = remaining.min(PAGE_ROWS);
        args[after_at] = Value::Integer(last);
        args[limit_at] = Value::Integer(i64::try_from(want).unwrap_or(i64::MAX));
        let mut page = Vec::new();
        let mut bytes = 0;
        {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            while let Some(row) = rows.next()? {
                let text = |i: usize| row.get_ref(i)?.as_str().map_err(rusqlite::Error::from);
                let owner = row
                    .get_ref(4)?
                    .as_str_or_null()
                    .map_err(rusqlite::Error::from)?;
                let seq: i64 = row.get(2)?;
                let mut doc = String::new();
                event_doc(&mut doc, text(0)?, text(1)?, seq, text(3)?, owner, text(5)?);
                bytes += doc.len();
                page.push((seq, doc));
                if bytes >= PAGE_BYTES {
                    break;
                }
            }
        }
        let more = bytes >= PAGE_BYTES || page.len() as u64 == want;
        remaining = remaining.saturating_sub(page.len() as u64);
        for (seq, doc) in page {
            if !emit(&doc) {
                return Ok(());
            }
            last = seq;
        }
        if !more {
            break;
        }
    }
    Ok(())
}

/// Most events one statement of a list reads (the list goes on after the
/// last one, in a new read transaction).
const PAGE_ROWS: u64 = 500;
/// A page is cut short once its documents pass this many bytes.
const PAGE_BYTES: usize = 1 << 20;

/// Writes the document of one stored event into `out`; `data` is stored
/// JSON text, taken as it is.
fn event_doc(
    out: &mut String,
    id: &str,
    ts: &str,
    seq: i64,
    channel: &str,
    owner: Option<&str>,
    data: &str,
) {
    use std::fmt::Write;
    let string = |s: &str| serde_json::Value::from(s).to_string();
    let owner = owner.map_or_else(|| "null".to_string(), string);
    let _ = write!(
        out,
        "{{\"id\":{},\"timestamp\":{},\"sequence_id\":{seq},\"channel\":{},\"owner\":{owner},\"data\":{data}}}",
        string(id),
        string(ts),
        string(channel),
    );
}

/// Deletes events older than `oldest`; how many.
pub fn purge(c: &Connection, oldest: &Timestamp) -> Result<usize, StoreError> {
    Ok(c.execute(
        "DELETE FROM event WHERE timestamp < ?1",
        [timestamp::format(oldest)],
    )?)
}

/// How many events are stored for a node (`data.id`).
pub fn count_for_node(c: &Connection, node_id: &str) -> Result<u64, StoreError> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM event WHERE node_id = ?1",
        [node_id],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_document_is_the_stored_text_spliced_into_valid_json() {
        let data = r#"{"id":"x","name":"caf\u00e9 \"q\"","n":[1,2.5,null]}"#;
        let mut doc = String::from("left over");
        doc.clear();
        event_doc(
            &mut doc,
            "65a1",
            "2024-01-01T00:00:00.000000",
            7,
            "no\"de",
            None,
            data,
        );
        let value: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
        let want = serde_json::json!({
            "id": "65a1", "timestamp": "2024-01-01T00:00:00.000000", "sequence_id": 7,
            "channel": "no\"de", "owner": null,
            "data": serde_json::from_str::<serde_json::Value>(data).expect("data"),
        });
        assert_eq!(value, want);
        let keys: Vec<&String> = value.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            ["id", "timestamp", "sequence_id", "channel", "owner", "data"]
        );
        doc.clear();
        event_doc(&mut doc, "65a1", "t", 8, "node", Some("bob"), "{}");
        let value: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
        assert_eq!(value["owner"], "bob");
    }
}
