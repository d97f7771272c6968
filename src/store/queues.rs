//! Push lists: FIFO work queues, each message popped exactly once, or
//! leased (hidden until its lease ends) and deleted by acknowledging its
//! receipt. Lease times are milliseconds since the Unix epoch (UTC), so
//! that leases survive a restart.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

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

/// The oldest message of `list` that no lease hides at `now_ms`: its id,
/// envelope text and deliveries so far.
fn oldest_available(
    c: &Connection,
    list: &str,
    now_ms: i64,
) -> Result<Option<(i64, String, i64)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, envelope, deliveries FROM queue
         WHERE list = ?1 AND (lease_until IS NULL OR lease_until <= ?2)
         ORDER BY id LIMIT 1",
    )?;
    Ok(stmt
        .query_row(params![list, now_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

/// Removes and returns the oldest available message of `list` (a message
/// whose lease ended at or before `now_ms` is available again).
pub fn pop(c: &Connection, list: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
    match oldest_available(c, list, now_ms)? {
        Some((id, envelope, _)) => {
            c.execute("DELETE FROM queue WHERE id = ?1", [id])?;
            Ok(Some(envelope))
        }
        None => Ok(None),
    }
}

/// Leases the oldest available message of `list` until `until_ms`: it
/// stays in place, hidden, and `receipt` of [`receipt_for`] acknowledges
/// it. Returns its envelope text with `_receipt` and `_deliveries` added.
pub fn lease(
    c: &Connection,
    list: &str,
    now_ms: i64,
    until_ms: i64,
    token: &str,
) -> Result<Option<String>, StoreError> {
    let Some((id, envelope, deliveries)) = oldest_available(c, list, now_ms)? else {
        return Ok(None);
    };
    let receipt = receipt_for(id, token);
    let deliveries = deliveries + 1;
    c.execute(
        "UPDATE queue SET lease_until = ?2, receipt = ?3, deliveries = ?4 WHERE id = ?1",
        params![id, until_ms, receipt, deliveries],
    )?;
    Ok(Some(with_receipt(&envelope, &receipt, deliveries)))
}

/// The receipt of a lease of message `id`: the id (to find the row by its
/// key) and a random token (so that no receipt can be guessed, and each
/// delivery's differs).
pub fn receipt_for(id: i64, token: &str) -> String {
    format!("{id}.{token}")
}

/// `envelope` with the lease attributes set (over any of the same name
/// that the pusher gave).
fn with_receipt(envelope: &str, receipt: &str, deliveries: i64) -> String {
    match serde_json::from_str::<Value>(envelope) {
        Ok(Value::Object(mut env)) => {
            env.insert("_receipt".into(), json!(receipt));
            env.insert("_deliveries".into(), json!(deliveries));
            Value::Object(env).to_string()
        }
        // Stored by this server as an object; anything else is sent as it is.
        _ => envelope.to_string(),
    }
}

/// Deletes the message of `list` leased with `receipt` if that lease still
/// holds at `now_ms`; `false`: no such lease (unknown, acknowledged,
/// ended, or of another list), and nothing changed.
pub fn acknowledge(
    c: &Connection,
    list: &str,
    receipt: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let Some(id) = receipt
        .split_once('.')
        .and_then(|(id, _)| id.parse::<i64>().ok())
    else {
        return Ok(false);
    };
    let deleted = c.execute(
        "DELETE FROM queue WHERE id = ?1 AND list = ?2 AND receipt = ?3 AND lease_until > ?4",
        params![id, list, receipt, now_ms],
    )?;
    Ok(deleted > 0)
}

/// Ends every lease that ended at or before `now_ms`: the message is
/// available again at its place and its receipt no longer acknowledges
/// it. Poppers waiting on those lists are told after COMMIT. Returns how
/// many leases ended.
pub fn release_ended(c: &Connection, out: &mut Outbox, now_ms: i64) -> Result<usize, StoreError> {
    let lists: Vec<String> = {
        let mut stmt = c.prepare_cached(
            "SELECT DISTINCT list FROM queue WHERE lease_until IS NOT NULL AND lease_until <= ?1",
        )?;
        let rows = stmt.query_map([now_ms], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if lists.is_empty() {
        return Ok(0);
    }
    let ended = c.execute(
        "UPDATE queue SET lease_until = NULL, receipt = NULL
         WHERE lease_until IS NOT NULL AND lease_until <= ?1",
        [now_ms],
    )?;
    for list in lists {
        out.push(Notice::List(list));
    }
    Ok(ended)
}

/// When the next lease ends (milliseconds since the epoch), if any holds.
pub fn next_lease_end(c: &Connection) -> Result<Option<i64>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT MIN(lease_until) FROM queue WHERE lease_until IS NOT NULL")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;

    fn data(envelope: &str) -> Value {
        serde_json::from_str::<Value>(envelope).expect("json")["data"].clone()
    }

    fn field(envelope: &str, key: &str) -> Value {
        serde_json::from_str::<Value>(envelope).expect("json")[key].clone()
    }

    #[test]
    fn a_lease_hides_a_message_in_place_until_it_ends() {
        let (_dir, store) = temp_store();
        store
            .write(|c, out| {
                push(c, out, "q", &json!({"data": 0}))?;
                push(c, out, "q", &json!({"data": 1}))
            })
            .expect("push");
        let first = store
            .write(|c, _| lease(c, "q", 1_000, 2_000, "t1"))
            .expect("lease")
            .expect("a message");
        assert_eq!(data(&first), json!(0));
        assert_eq!(field(&first, "_deliveries"), json!(1));
        let receipt = field(&first, "_receipt");
        // hidden: the next message goes out
        let plain = store.write(|c, _| pop(c, "q", 1_500)).expect("pop");
        assert_eq!(plain.as_deref().map(data), Some(json!(1)));
        assert_eq!(store.write(|c, _| pop(c, "q", 1_999)).expect("pop"), None);
        // ended: back at its place, with a new receipt on its next delivery
        let again = store
            .write(|c, _| lease(c, "q", 2_000, 3_000, "t2"))
            .expect("lease")
            .expect("a message");
        assert_eq!(data(&again), json!(0));
        assert_eq!(field(&again, "_deliveries"), json!(2));
        assert_ne!(field(&again, "_receipt"), receipt);
        let old = receipt.as_str().expect("text").to_string();
        let new = field(&again, "_receipt")
            .as_str()
            .expect("text")
            .to_string();
        assert!(
            !store
                .write(move |c, _| acknowledge(c, "q", &old, 2_500))
                .expect("ack")
        );
        let other = new.clone();
        assert!(
            !store
                .write(move |c, _| acknowledge(c, "other", &other, 2_500))
                .expect("ack"),
            "a receipt of another list"
        );
        let late = new.clone();
        assert!(
            !store
                .write(move |c, _| acknowledge(c, "q", &late, 3_000))
                .expect("ack"),
            "an ended lease"
        );
        assert!(
            store
                .write(move |c, _| acknowledge(c, "q", &new, 2_999))
                .expect("ack")
        );
        assert_eq!(store.write(|c, _| pop(c, "q", 9_999)).expect("pop"), None);
    }

    #[test]
    fn ended_leases_are_released_and_their_lists_told() {
        let (_dir, store) = temp_store();
        store
            .write(|c, out| {
                push(c, out, "a", &json!({"data": 0}))?;
                push(c, out, "b", &json!({"data": 0}))
            })
            .expect("push");
        store
            .write(|c, _| {
                lease(c, "a", 0, 1_000, "x")?;
                lease(c, "b", 0, 5_000, "y")
            })
            .expect("lease");
        assert_eq!(store.read(next_lease_end).expect("read"), Some(1_000));
        let (ended, notices) = store
            .write(|c, out| {
                let n = release_ended(c, out, 1_000)?;
                Ok::<_, StoreError>((n, out.notices().to_vec()))
            })
            .expect("release");
        assert_eq!(ended, 1);
        assert_eq!(notices, vec![Notice::List("a".into())]);
        assert_eq!(store.read(next_lease_end).expect("read"), Some(5_000));
        for garbage in ["", "x", "1", "1.", "nope.x", "99.x"] {
            let g = garbage.to_string();
            assert!(
                !store
                    .write(move |c, _| acknowledge(c, "a", &g, 0))
                    .expect("ack")
            );
        }
    }
}
