//! Whole-file operations on a database, for the command line: an online
//! backup to a new file and a check of a file's health. Both work while a
//! server runs on the same file (WAL: readers never block the writer).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{StoreError, migrate};

/// The tables `check` counts, with what they hold.
const TABLES: [(&str, &str); 8] = [
    ("node", "nodes"),
    ("event", "events"),
    ("user", "users"),
    ("user_group", "groups"),
    ("telemetry", "telemetry events"),
    ("kv", "KV entries"),
    ("queue", "queued messages"),
    ("subscriber", "durable subscribers"),
];

/// Opens an existing database file without creating one.
fn open_existing(path: &Path) -> Result<Connection, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Internal(format!(
            "{}: no such database file",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Where a file being written goes until it is complete.
fn partial(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Copies the database `db` into the file `out` with SQLite's online
/// backup, in one step, that is in one read transaction: the copy is the
/// database as one commit left it, however busy the server is. The copy is
/// written beside `out` and renamed over it once complete, so `out` is
/// never a half-written file. Returns the size of the copy in bytes.
pub fn backup(db: &Path, out: &Path) -> Result<u64, StoreError> {
    let source = open_existing(db)?;
    let tmp = partial(out);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut target = Connection::open(&tmp)?;
        {
            use rusqlite::backup::{Backup, StepResult};
            let copy = Backup::new(&source, &mut target)?;
            // -1: every page in one step (one read transaction); a locked
            // database is tried again for a while
            let mut tries = 0;
            while copy.step(-1)? != StepResult::Done {
                tries += 1;
                if tries > 200 {
                    return Err(StoreError::Busy);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        target.close().map_err(|(_, e)| e)?;
        std::fs::rename(&tmp, out)
            .map_err(|e| StoreError::Internal(format!("{}: {e}", out.display())))?;
        std::fs::metadata(out)
            .map(|m| m.len())
            .map_err(|e| StoreError::Internal(format!("{}: {e}", out.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// The schema version of the file.
    pub schema: u32,
    /// The newest schema this binary knows.
    pub latest: u32,
    /// Rows per table: (table, what it holds, count).
    pub counts: Vec<(&'static str, &'static str, i64)>,
    /// Everything wrong, one line each; empty for a healthy file.
    pub problems: Vec<String>,
}

/// Checks the database `db`: SQLite's integrity check, foreign keys, the
/// schema version, and the rows of each table. A file that cannot be read
/// at all is an error; a readable one with problems is a report with
/// `problems`.
pub fn check(db: &Path) -> Result<Report, StoreError> {
    let conn = open_existing(db)?;
    let mut report = Report {
        latest: migrate::latest(),
        ..Report::default()
    };
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if lines != ["ok"] {
        report
            .problems
            .extend(lines.into_iter().map(|l| format!("integrity: {l}")));
    }
    let broken_links: i64 =
        conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })?;
    if broken_links > 0 {
        report.problems.push(format!(
            "foreign keys: {broken_links} rows refer to missing rows"
        ));
    }
    match migrate::current(&conn) {
        Ok(version) => report.schema = version,
        Err(err) => report.problems.push(format!("schema: {err}")),
    }
    for (table, what) in TABLES {
        let exists: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?;
        if !exists {
            if report.schema >= report.latest {
                report
                    .problems
                    .push(format!("schema: table {table} is missing"));
            }
            continue;
        }
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })?;
        report.counts.push((table, what, n));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, meta};

    #[test]
    fn a_backup_is_a_complete_healthy_copy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("live.db");
        let store = Store::open(&db, false).expect("open");
        store.write(|c, _| meta::set(c, "k", "v")).expect("write");
        let out = dir.path().join("copy.db");
        std::fs::write(&out, b"an older file").expect("old file");
        let size = backup(&db, &out).expect("backup");
        assert!(size > 0);
        assert!(!partial(&out).exists());
        let copy = Store::open(&out, false).expect("open the copy");
        assert_eq!(
            copy.read(|c| meta::get(c, "k")).expect("read"),
            Some("v".to_string())
        );
        let report = check(&out).expect("check");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.schema, migrate::latest());
        assert!(report.counts.iter().any(|(t, _, _)| *t == "node"));
        store.close();
    }

    #[test]
    fn missing_files_are_errors_and_are_not_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("none.db");
        assert!(check(&missing).is_err());
        assert!(backup(&missing, &dir.path().join("out.db")).is_err());
        assert!(!missing.exists());
        assert!(!dir.path().join("out.db").exists());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![7u8; 8192]).expect("junk");
        assert!(check(&junk).is_err());
    }
}
