//! Figures about the database for `GET /stats/server` and `/metrics`: its
//! size, the nodes of each kind, the event rate and the queues. Each one is
//! an index seek or a read of a kept count, never a scan of the nodes or
//! events, so the page and a scraper may ask as often as they like.

use rusqlite::{Connection, params};

use super::{StoreError, events};
use crate::timestamp::{self, Timestamp};

/// At most this many push lists are reported (the longest first).
pub const MAX_QUEUES: usize = 100;

/// A subscription's backlog is counted up to this many events.
pub const MAX_BEHIND: i64 = 1_000;

/// The database's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Bytes of the main database file in use (pages × page size).
    pub database_bytes: u64,
    /// Bytes of free pages inside it.
    pub free_bytes: u64,
    /// Node counts by kind, by kind name.
    pub nodes_by_kind: Vec<(String, u64)>,
    /// The highest event sequence number used (0 before the first event).
    pub last_sequence: i64,
    /// Messages in each push list (leased ones included), longest first.
    pub queues: Vec<(String, u64)>,
}

/// Reads the figures.
pub fn read(c: &Connection) -> Result<Figures, StoreError> {
    let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let mut stmt = c.prepare_cached(
        "SELECT kind, sum(n) FROM node_count GROUP BY kind HAVING sum(n) > 0 ORDER BY kind",
    )?;
    let nodes_by_kind = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })?
        .collect::<Result<_, _>>()?;
    let last_sequence = events::max_seq(c)?;
    let mut stmt = c.prepare_cached(
        "SELECT list, n FROM queue_count WHERE n > 0 ORDER BY n DESC, list LIMIT ?1",
    )?;
    let queues = stmt
        .query_map([MAX_QUEUES as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })?
        .collect::<Result<_, _>>()?;
    Ok(Figures {
        database_bytes: (page_size * pages).max(0) as u64,
        free_bytes: (page_size * free).max(0) as u64,
        nodes_by_kind,
        last_sequence,
        queues,
    })
}

/// Events stored in each of the `minutes` whole minutes before `now`'s
/// minute and in `now`'s minute so far, oldest first (`minutes + 1`
/// figures). Each boundary is one seek on the timestamp index: a minute's
/// count is the difference of the first sequence numbers at its two ends.
/// Events purged by retention count as none.
pub fn events_per_minute(
    c: &Connection,
    now: &Timestamp,
    minutes: u32,
) -> Result<Vec<u64>, StoreError> {
    let this_minute = timestamp::floor_minute(now);
    // the sequence number the next event gets: where a minute with no
    // later event ends
    let end = events::max_seq(c)? + 1;
    let mut stmt = c.prepare_cached(
        "SELECT coalesce((SELECT seq FROM event WHERE timestamp >= ?1
                          ORDER BY timestamp, seq LIMIT 1), ?2)",
    )?;
    let mut firsts = Vec::with_capacity(minutes as usize + 2);
    for back in (0..=minutes).rev() {
        let start = timestamp::shift(this_minute, chrono::Duration::minutes(-i64::from(back)));
        let seq: i64 = stmt.query_row(params![timestamp::format(&start), end], |r| r.get(0))?;
        firsts.push(seq);
    }
    firsts.push(end);
    Ok(firsts
        .windows(2)
        .map(|w| (w[1] - w[0]).max(0) as u64)
        .collect())
}

/// Stored events on `channel` after sequence number `after`, counted up to
/// [`MAX_BEHIND`].
pub fn behind(c: &Connection, channel: &str, after: i64) -> Result<u64, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT count(*) FROM (SELECT 1 FROM event WHERE channel = ?1 AND seq > ?2 LIMIT ?3)",
    )?;
    let n: i64 = stmt.query_row(params![channel, after, MAX_BEHIND], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;

    fn at(text: &str) -> Timestamp {
        timestamp::parse_stored(text).unwrap()
    }

    fn add_event(c: &Connection, seq: i64, ts: &str, channel: &str) {
        c.execute(
            "INSERT INTO event (seq, id, timestamp, channel, owner, node_id, data, envelope)
             VALUES (?1, ?2, ?3, ?4, NULL, NULL, '{}', '{}')",
            params![seq, format!("e{seq}"), timestamp::format(&at(ts)), channel],
        )
        .unwrap();
    }

    #[test]
    fn an_empty_database_has_no_nodes_events_or_queues() {
        let (_dir, store) = temp_store();
        let figures = store.read(read).unwrap();
        assert!(figures.database_bytes > 0);
        assert!(figures.nodes_by_kind.is_empty());
        assert_eq!(figures.last_sequence, 0);
        assert!(figures.queues.is_empty());
    }

    #[test]
    fn events_are_counted_by_minute_oldest_first() {
        let (_dir, store) = temp_store();
        store
            .write(|c, _| {
                add_event(c, 1, "2026-12-02T10:00:30.000000", "node");
                add_event(c, 2, "2026-12-02T10:01:00.000000", "node");
                add_event(c, 3, "2026-12-02T10:01:59.999999", "x");
                add_event(c, 4, "2026-12-02T10:03:10.000000", "node");
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let now = at("2026-12-02T10:03:20.000000");
        let counts = store.read(|c| events_per_minute(c, &now, 3)).unwrap();
        assert_eq!(counts, vec![1, 2, 0, 1]);
        let counts = store.read(|c| events_per_minute(c, &now, 5)).unwrap();
        assert_eq!(counts, vec![0, 0, 1, 2, 0, 1]);
        let later = at("2026-12-02T11:00:00.000000");
        let counts = store.read(|c| events_per_minute(c, &later, 2)).unwrap();
        assert_eq!(counts, vec![0, 0, 0]);
    }

    #[test]
    fn behind_counts_the_channel_after_the_position() {
        let (_dir, store) = temp_store();
        store
            .write(|c, _| {
                add_event(c, 1, "2026-12-02T10:00:00.000000", "node");
                add_event(c, 2, "2026-12-02T10:00:01.000000", "x");
                add_event(c, 3, "2026-12-02T10:00:02.000000", "node");
                Ok::<_, StoreError>(())
            })
            .unwrap();
        assert_eq!(store.read(|c| behind(c, "node", 0)).unwrap(), 2);
        assert_eq!(store.read(|c| behind(c, "node", 1)).unwrap(), 1);
        assert_eq!(store.read(|c| behind(c, "node", 3)).unwrap(), 0);
        assert_eq!(store.read(|c| behind(c, "x", 0)).unwrap(), 1);
    }

    #[test]
    fn queue_counts_follow_pushes_and_removals() {
        let (_dir, store) = temp_store();
        let lists = |store: &crate::store::Store| store.read(read).unwrap().queues;
        store
            .write(|c, _| {
                for list in ["a", "a", "b"] {
                    c.execute(
                        "INSERT INTO queue (list, envelope) VALUES (?1, '{}')",
                        params![list],
                    )?;
                }
                c.execute("DELETE FROM queue WHERE list = 'b'", [])?;
                c.execute("UPDATE queue SET list = 'c' WHERE id = 1", [])?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        assert_eq!(lists(&store), vec![("a".into(), 1), ("c".into(), 1)]);
        let rows: i64 = store
            .read(|c| {
                Ok::<_, StoreError>(
                    c.query_row("SELECT count(*) FROM queue_count", [], |r| r.get(0))?,
                )
            })
            .unwrap();
        assert_eq!(rows, 2, "an emptied list keeps no row");
    }

    #[test]
    fn queues_are_listed_longest_first() {
        let (_dir, store) = temp_store();
        store
            .write(|c, _| {
                for list in ["a", "b", "b"] {
                    c.execute(
                        "INSERT INTO queue (list, envelope) VALUES (?1, '{}')",
                        params![list],
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let figures = store.read(read).unwrap();
        assert_eq!(figures.queues, vec![("b".into(), 2), ("a".into(), 1)]);
    }
}
