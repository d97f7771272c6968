//! Numbered schema migrations from `sql/`, embedded in the binary and
//! recorded in `schema_migrations`; each is applied in its own transaction.

use rusqlite::{Connection, params};

use super::StoreError;
use crate::timestamp;

/// One schema step with its exact inverse.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

/// Every migration, in order. Append only; never edit a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        up: include_str!("../../sql/0001_init.up.sql"),
        down: include_str!("../../sql/0001_init.down.sql"),
    },
    Migration {
        version: 2,
        name: "nodes_events",
        up: include_str!("../../sql/0002_nodes_events.up.sql"),
        down: include_str!("../../sql/0002_nodes_events.down.sql"),
    },
    Migration {
        version: 3,
        name: "pubsub",
        up: include_str!("../../sql/0003_pubsub.up.sql"),
        down: include_str!("../../sql/0003_pubsub.down.sql"),
    },
    Migration {
        version: 4,
        name: "kv",
        up: include_str!("../../sql/0004_kv.up.sql"),
        down: include_str!("../../sql/0004_kv.down.sql"),
    },
    Migration {
        version: 5,
        name: "telemetry",
        up: include_str!("../../sql/0005_telemetry.up.sql"),
        down: include_str!("../../sql/0005_telemetry.down.sql"),
    },
    Migration {
        version: 6,
        name: "lean_rows",
        up: include_str!("../../sql/0006_lean_rows.up.sql"),
        down: include_str!("../../sql/0006_lean_rows.down.sql"),
    },
    Migration {
        version: 7,
        name: "kept_counts",
        up: include_str!("../../sql/0007_kept_counts.up.sql"),
        down: include_str!("../../sql/0007_kept_counts.down.sql"),
    },
    Migration {
        version: 8,
        name: "leases",
        up: include_str!("../../sql/0008_leases.up.sql"),
        down: include_str!("../../sql/0008_leases.down.sql"),
    },
    Migration {
        version: 9,
        name: "queue_counts",
        up: include_str!("../../sql/0009_queue_counts.up.sql"),
        down: include_str!("../../sql/0009_queue_counts.down.sql"),
    },
];

/// The newest schema version this binary knows.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// A line of `migrate status`.
#[derive(Debug, PartialEq)]
pub struct Status {
    pub version: u32,
    pub name: &'static str,
    pub applied_at: Option<String>,
}

fn ensure_table(c: &Connection) -> Result<(), StoreError> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TEXT NOT NULL
         )",
    )?;
    Ok(())
}

fn applied(c: &Connection) -> Result<Vec<(u32, String)>, StoreError> {
    ensure_table(c)?;
    let mut stmt =
        c.prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The current schema version (0 for an empty database). A database newer
/// than this binary is refused.
pub fn current(c: &Connection) -> Result<u32, StoreError> {
    let version = applied(c)?.last().map_or(0, |(v, _)| *v);
    if version > latest() {
        return Err(StoreError::Internal(format!(
            "the database has schema version {version}, newer than this kci-lite ({}); use a newer binary",
            latest()
        )));
    }
    Ok(version)
}

/// Every migration with the time it was applied.
pub fn status(c: &Connection) -> Result<Vec<Status>, StoreError> {
    current(c)?;
    let done = applied(c)?;
    Ok(MIGRATIONS
        .iter()
        .map(|m| Status {
            version: m.version,
            name: m.name,
            applied_at: done
                .iter()
                .find(|(v, _)| *v == m.version)
                .map(|(_, at)| at.clone()),
        })
        .collect())
}

/// Applies pending migrations up to `to` (default: all); returns those applied.
pub fn up(c: &Connection, to: Option<u32>) -> Result<Vec<u32>, StoreError> {
    let from = current(c)?;
    let to = to.unwrap_or_else(latest);
    let mut done = Vec::new();
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > from && m.version <= to)
    {
        c.execute_batch("BEGIN IMMEDIATE")?;
        let result = c.execute_batch(m.up).and_then(|()| {
            c.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, timestamp::format(&timestamp::now())],
            )
        });
        match result {
            Ok(_) => c.execute_batch("COMMIT")?,
            Err(err) => {
                let _ = c.execute_batch("ROLLBACK");
                return Err(StoreError::Internal(format!(
                    "migration {:04}_{} failed: {err}",
                    m.version, m.name
                )));
            }
        }
        done.push(m.version);
    }
    Ok(done)
}

/// Reverts applied migrations down to version `to` (0 = empty); returns
/// those reverted, newest first.
pub fn down(c: &Connection, to: u32) -> Result<Vec<u32>, StoreError> {
    let from = current(c)?;
    let mut done = Vec::new();
    for m in MIGRATIONS
        .iter()
        .rev()
        .filter(|m| m.version <= from && m.version > to)
    {
        c.execute_batch("BEGIN IMMEDIATE")?;
        let result = c.execute_batch(m.down).and_then(|()| {
            c.execute(
                "DELETE FROM schema_migrations WHERE version = ?1",
                [m.version],
            )
        });
        match result {
            Ok(_) => c.execute_batch("COMMIT")?,
            Err(err) => {
                let _ = c.execute_batch("ROLLBACK");
                return Err(StoreError::Internal(format!(
                    "reverting migration {:04}_{} failed: {err}",
                    m.version, m.name
                )));
            }
        }
        done.push(m.version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_rerun_down_and_too_new() {
        let c = Connection::open_in_memory().expect("db");
        let all: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(up(&c, None).expect("up"), all);
        assert!(up(&c, None).expect("rerun").is_empty());
        assert!(status(&c).expect("status")[0].applied_at.is_some());
        let reverted: Vec<u32> = all.iter().rev().copied().collect();
        assert_eq!(down(&c, 0).expect("down"), reverted);
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name != 'schema_migrations' AND name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(tables, 0, "down is the exact inverse of up");
        assert_eq!(up(&c, None).expect("up again"), all);
        c.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 'x')",
            [],
        )
        .expect("insert");
        assert!(current(&c).is_err());
    }
}
