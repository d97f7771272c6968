//! The one SQLite file: a pool of read-only connections and ONE writer
//! thread that group-commits every write. All SQL lives under `store/`.

pub mod dump;
pub mod events;
pub mod figures;
pub mod filter;
pub mod groups;
pub mod kv;
pub mod maintenance;
pub mod meta;
pub mod migrate;
pub mod nodes;
pub mod queues;
pub mod stream;
pub mod subscribers;
pub mod telemetry;
pub mod users;
mod writer;

pub use writer::{Notice, Outbox};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};

use crate::query::matcher::{self, Matcher};
use crate::query::{Condition, Filter};
use filter::{SqlTable, filter_sql};

/// How long a connection waits for a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read connections kept in the pool at most.
const MAX_READERS: u32 = 32;
/// Read connections of streamed answers, a pool of their own: a stream
/// holds its connection while its client reads, as slowly as it likes, so
/// clients that stop reading can use up only these, never the connections
/// of ordinary requests. A stream that finds none free is refused at once
/// (503), so that no worker waits for one.
const MAX_STREAM_READERS: u32 = 16;
/// Page cache of each read connection, in KiB (SQLite's default is 2 MiB
/// a connection). Readers are many and each caches its own copy of the
/// same hot pages, so a small cache each keeps memory flat; what falls out
/// of it comes back from the operating system's file cache.
const READER_CACHE_KIB: i64 = 512;

/// Store failures, as the API layer sees them.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreError {
    /// The row asked for does not exist.
    NotFound,
    /// A uniqueness rule was violated; the text says which.
    Conflict(String),
    /// The database stayed locked past the busy timeout.
    Busy,
    /// Anything else (disk, corruption, a bug): a 500.
    Internal(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("not found"),
            StoreError::Conflict(what) => write!(f, "conflict: {what}"),
            StoreError::Busy => f.write_str("database busy"),
            StoreError::Internal(cause) => write!(f, "store: {cause}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(err.to_string()),
            _ => StoreError::Internal(err.to_string()),
        }
    }
}

/// No read connection within the pool's wait: every one is in use (by
/// streamed answers to slow clients, say), so the caller may try again.
impl From<r2d2::Error> for StoreError {
    fn from(err: r2d2::Error) -> StoreError {
        eprintln!("kci-lite: no read connection: {err}");
        StoreError::Busy
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> StoreError {
        StoreError::Internal(format!("stored JSON: {err}"))
    }
}

/// The database: readers plus the writer thread.
pub struct Store {
    path: PathBuf,
    readers: r2d2::Pool<SqliteConnectionManager>,
    /// Read connections of streamed answers (see `MAX_STREAM_READERS`).
    pub(crate) stream_readers: r2d2::Pool<SqliteConnectionManager>,
    jobs: RwLock<Option<Sender<writer::Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    notifier: writer::Notifier,
}

/// Settings every connection gets, in one place.
fn prepare(conn: &Connection, synchronous_full: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(
        None,
        "synchronous",
        if synchronous_full { "FULL" } else { "NORMAL" },
    )?;
    register_functions(conn)
}

/// `kci_match(doc, condition_json)`: the query language's matcher, and
/// `REGEXP` with the matcher's patterns (the `regex` crate: linear time).
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("kci_match", 2, flags, |ctx| {
        let matcher: Arc<Matcher> = ctx.get_or_create_aux(1, |vr| {
            let text = vr.as_str()?;
            let cond: Condition = serde_json::from_str(text)
                .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
            let filter = Filter {
                conditions: vec![cond],
            };
            Ok::<_, rusqlite::Error>(Matcher::new(&filter))
        })?;
        let doc_text = ctx.get_raw(0).as_str().unwrap_or("null");
        let doc: serde_json::Value = serde_json::from_str(doc_text).unwrap_or_default();
        Ok(matcher.matches(&doc))
    })?;
    conn.create_scalar_function("regexp", 2, flags, |ctx| {
        let re: Arc<regex::Regex> = ctx.get_or_create_aux(0, |vr| {
            matcher::compile_pattern(vr.as_str()?)
                .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
        })?;
        Ok(ctx
            .get_raw(1)
            .as_str()
            .map(|s| re.is_match(s))
            .unwrap_or(false))
    })
}

/// Opens a read-write connection with every setting applied (for the
/// writer thread and the `migrate` command).
pub fn open_connection(path: &Path, synchronous_full: bool) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "cannot use WAL mode (got {mode})"
        )));
    }
    prepare(&conn, synchronous_full)?;
    Ok(conn)
}

/// SQLite integers are signed: larger limits mean "everything".
pub(crate) fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One page of `table_name` rows matching `filter` in id order (`columns`
/// selected, each row mapped by `map`) and the total number of matches.
pub(crate) fn page<T>(
    c: &Connection,
    table_name: &str,
    columns: &str,
    table: &SqlTable,
    filter: &Filter,
    (limit, offset): (u64, u64),
    mut map: impl FnMut(&rusqlite::Row) -> Result<T, StoreError>,
) -> Result<(Vec<T>, u64), StoreError> {
    let (cond, mut args) = filter_sql(filter, table)?;
    let total: i64 = c.query_row(
        &format!("SELECT count(*) FROM {table_name} WHERE {cond}"),
        rusqlite::params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    args.push(rusqlite::types::Value::Integer(clamp(limit)));
    args.push(rusqlite::types::Value::Integer(clamp(offset)));
    let n = args.len();
    let sql = format!(
        "SELECT {columns} FROM {table_name} WHERE {cond} ORDER BY id LIMIT ?{} OFFSET ?{n}",
        n - 1
    );
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    let mut items = Vec::new();
    while let Some(row) = rows.next()? {
        items.push(map(row)?);
    }
    Ok((items, u64::try_from(total).unwrap_or(0)))
}

impl Store {
    /// Opens (creating if needed) and migrates the database, then starts the
    /// writer thread and the reader pool.
    pub fn open(path: &Path, synchronous_full: bool) -> Result<Store, StoreError> {
        let conn = open_connection(path, synchronous_full)?;
        migrate::up(&conn, None)?;
        // Statistics for the query planner, limited in time by SQLite.
        conn.execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002")?;
        let manager = || {
            SqliteConnectionManager::file(path)
                .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_init(move |c| {
                    prepare(c, synchronous_full)?;
                    c.pragma_update(None, "cache_size", -READER_CACHE_KIB)
                })
        };
        let readers = r2d2::Pool::builder()
            .max_size(MAX_READERS)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(manager())?;
        let stream_readers = r2d2::Pool::builder()
            .max_size(MAX_STREAM_READERS)
            .min_idle(Some(MAX_STREAM_READERS))
            .build(manager())?;
        let notifier = writer::Notifier::default();
        let (jobs, handle) = writer::spawn(conn, Arc::clone(&notifier))?;
        Ok(Store {
            path: path.to_path_buf(),
            readers,
            stream_readers,
            jobs: RwLock::new(Some(jobs)),
            writer: Mutex::new(Some(handle)),
            notifier,
        })
    }

    /// Where notices of committed writes go; can be set once.
    pub fn set_notifier(&self, tx: Sender<Vec<Notice>>) {
        let _ = self.notifier.set(tx);
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read-only connection.
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let conn = self.readers.get().map_err(StoreError::from)?;
        f(&conn)
    }

    /// Runs `f` in the writer thread inside a transaction shared with
    /// concurrent writes (group commit); returns once it is durable. An
    /// error from `f` rolls back `f`'s changes only, and drops what it put
    /// in its [`Outbox`]; the notices of a write that commits are sent
    /// after COMMIT.
    pub fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection, &mut Outbox) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write_then(f, |_| {})
    }

    /// Like [`Store::write`]; `after` runs in the writer thread right after
    /// the commit, in commit order (used to keep in-memory caches exact).
    pub fn write_then<T, E, F, A>(&self, f: F, after: A) -> Result<T, E>
    where
        F: FnOnce(&Connection, &mut Outbox) -> Result<T, E> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let job = writer::job(f, after, reply);
        {
            let guard = self
                .jobs
                .read()
                .map_err(|_| StoreError::Internal("writer lock poisoned".into()))?;
            let sender = guard
                .as_ref()
                .ok_or_else(|| StoreError::Internal("store is closed".into()))?;
            sender
                .send(job)
                .map_err(|_| StoreError::Internal("writer thread is gone".into()))?;
        }
        answer
            .recv()
            .map_err(|_| E::from(StoreError::Internal("write was abandoned".into())))?
    }

    /// Stops the writer after the queued writes and checkpoints the WAL.
    pub fn close(&self) {
        if let Ok(mut jobs) = self.jobs.write() {
            jobs.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A store on a fresh file in a temporary directory.
    pub fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("t.db"), false).expect("open store");
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_visible_to_readers_and_errors_roll_back() {
        let (_dir, store) = testing::temp_store();
        store.write(|c, _| meta::set(c, "a", "1")).expect("write");
        let failed: Result<(), StoreError> = store.write(|c, _| {
            meta::set(c, "b", "2")?;
            Err(StoreError::Conflict("no".into()))
        });
        assert!(failed.is_err());
        let a = store.read(|c| meta::get(c, "a")).expect("read");
        let b = store.read(|c| meta::get(c, "b")).expect("read");
        assert_eq!(a.as_deref(), Some("1"));
        assert_eq!(b, None);
    }

    #[test]
    fn concurrent_writes_all_land() {
        let (_dir, store) = testing::temp_store();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..20 {
                        store
                            .write(move |c, _| meta::set(c, &format!("k{t}-{i}"), "v"))
                            .expect("write");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let n: i64 = store
            .read(|c| {
                c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .expect("count");
        assert_eq!(n, 160);
        store.close();
    }

    #[test]
    fn notices_leave_after_commit_and_only_for_kept_writes() {
        let (_dir, store) = testing::temp_store();
        let (tx, rx) = crossbeam_channel::unbounded();
        store.set_notifier(tx);
        let failed: Result<(), StoreError> = store.write(|_, out| {
            out.push(Notice::List("dropped".into()));
            Err(StoreError::NotFound)
        });
        assert!(failed.is_err());
        store
            .write(|c, out| {
                out.push(Notice::List("kept".into()));
                meta::set(c, "k", "v")
            })
            .expect("write");
        let sent = rx.recv_timeout(Duration::from_secs(10)).expect("notices");
        assert_eq!(sent, vec![Notice::List("kept".into())]);
        assert!(rx.try_recv().is_err(), "a rolled-back write sent notices");
    }

    #[test]
    fn a_panicking_job_rolls_back_alone() {
        let (_dir, store) = testing::temp_store();
        let result: Result<(), StoreError> = store.write(|c, _| {
            meta::set(c, "x", "1")?;
            panic!("job bug");
        });
        assert!(result.is_err());
        store
            .write(|c, _| meta::set(c, "y", "1"))
            .expect("writer still alive");
        assert_eq!(store.read(|c| meta::get(c, "x")).expect("read"), None);
    }
}
