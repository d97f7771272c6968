//! Moving data to and from upstream's MongoDB: `export` writes one
//! `mongoexport` file per upstream collection (and the KV store, which
//! upstream keeps in Redis, to `kv.json`) from one consistent snapshot;
//! `import` reads such files, ours or upstream's, into a database in one
//! transaction, so that it either lands whole or not at all.

pub mod files;
pub mod shapes;

use std::fmt;
use std::path::{Path, PathBuf};

use bson::Bson;
use rusqlite::Connection;

use crate::store::{self, StoreError, dump, groups, kv, nodes, telemetry, users};
use crate::timestamp;

/// The collections, in the order they are written and read, with their
/// files.
pub const COLLECTIONS: [&str; 6] = [
    "node",
    "user",
    "usergroup",
    "eventhistory",
    "telemetry",
    "kv",
];

/// Documents per collection (in [`COLLECTIONS`] order).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts(pub [u64; 6]);

impl Counts {
    fn add(&mut self, collection: &str) {
        self.add_n(collection, 1);
    }

    fn add_n(&mut self, collection: &str, n: u64) {
        if let Some(i) = COLLECTIONS.iter().position(|c| *c == collection) {
            self.0[i] += n;
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = COLLECTIONS
            .iter()
            .zip(self.0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Why an export or import failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// A file could not be read or written.
    File { path: PathBuf, message: String },
    /// A document is malformed: its file, the line it starts on, and what.
    Document {
        file: String,
        line: usize,
        message: String,
    },
    /// The target database holds data and `--merge` was not given.
    NotEmpty(String),
    /// The database failed.
    Store(StoreError),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::File { path, message } => write!(f, "{}: {message}", path.display()),
            ExchangeError::Document {
                file,
                line,
                message,
            } => write!(f, "{file}: line {line}: {message}; nothing was imported"),
            ExchangeError::NotEmpty(what) => write!(
                f,
                "the database is not empty ({what}); use --merge to add to it"
            ),
            ExchangeError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for ExchangeError {
    fn from(e: StoreError) -> ExchangeError {
        ExchangeError::Store(e)
    }
}

impl From<rusqlite::Error> for ExchangeError {
    fn from(e: rusqlite::Error) -> ExchangeError {
        ExchangeError::Store(e.into())
    }
}

/// Progress of a long run, shown or not by the caller.
pub trait Progress {
    /// A collection starts; `total` is its size in documents or bytes.
    fn start(&mut self, collection: &str, total: Option<u64>);
    /// `done` documents or bytes so far.
    fn update(&mut self, done: u64);
    /// The collection is complete.
    fn finish(&mut self);
}

/// No progress shown.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: Option<u64>) {}
    fn update(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

fn file_error(path: &Path, e: impl fmt::Display) -> ExchangeError {
    ExchangeError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

// -- export -------------------------------------------------------------------

/// A file being written: lines go to `NAME.json.partial`, renamed over
/// `NAME.json` once complete.
struct Out {
    path: PathBuf,
    tmp: PathBuf,
    w: std::io::BufWriter<std::fs::File>,
}

impl Out {
    fn create(dir: &Path, collection: &str) -> Result<Out, ExchangeError> {
        let path = dir.join(format!("{collection}.json"));
        let tmp = dir.join(format!("{collection}.json.partial"));
        let file = std::fs::File::create(&tmp).map_err(|e| file_error(&tmp, e))?;
        Ok(Out {
            path,
            tmp,
            w: std::io::BufWriter::new(file),
        })
    }

    fn line(&mut self, text: &str) -> Result<(), StoreError> {
        use std::io::Write;
        writeln!(self.w, "{text}").map_err(|e| StoreError::Internal(format!("write: {e}")))
    }

    fn finish(self) -> Result<(), ExchangeError> {
        let file = self
            .w
            .into_inner()
            .map_err(|e| file_error(&self.tmp, e.error()))?;
        file.sync_all().map_err(|e| file_error(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| file_error(&self.path, e))
    }
}

/// Writes every collection of the database `conn` into `dir` (created if
/// missing; files in it replaced), all from one read transaction.
pub fn export(
    conn: &mut Connection,
    dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Counts, ExchangeError> {
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let sizes = dump::contents(&tx)?;
    let mut counts = Counts::default();
    for collection in COLLECTIONS {
        let total = sizes
            .iter()
            .find(|(c, _)| *c == collection)
            .map(|(_, n)| *n as u64);
        progress.start(collection, total);
        let mut out = Out::create(dir, collection)?;
        let mut n = 0u64;
        let mut emit = |text: String| -> Result<(), StoreError> {
            out.line(&text)?;
            n += 1;
            if n.is_multiple_of(1000) {
                progress.update(n);
            }
            Ok(())
        };
        match collection {
            "node" => dump::each_node(&tx, &mut |doc| {
                let node: serde_json::Value = serde_json::from_str(&doc)?;
                emit(shapes::line(shapes::node_doc(&node)))
            })?,
            "user" => {
                for user in users::all(&tx)? {
                    emit(shapes::line(shapes::user_doc(&user)))?;
                }
            }
            "usergroup" => {
                dump::each_group(&tx, &mut |g| emit(shapes::line(shapes::group_doc(&g))))?
            }
            "eventhistory" => {
                dump::each_event(&tx, &mut |e| emit(shapes::line(shapes::event_doc(&e))))?
            }
            "telemetry" => {
                dump::each_telemetry(&tx, &mut |t| emit(shapes::line(shapes::telemetry_doc(&t))))?
            }
            _ => dump::each_kv(&tx, &mut |(ns, key, value)| {
                emit(shapes::kv_line(&ns, &key, &value))
            })?,
        }
        out.finish()?;
        counts.add_n(collection, n);
        progress.finish();
    }
    tx.commit()?;
    Ok(counts)
}

// -- import -------------------------------------------------------------------

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    /// Documents written, per collection.
    pub counts: Counts,
    /// Documents skipped because their `_id` (or KV key) exists (`--merge`).
    pub skipped: u64,
    /// Nodes whose parent is in neither the files nor the database.
    pub orphans: u64,
    /// Users with a group that is in neither the files nor the database.
    pub without_groups: u64,
}

/// Imports the files of `dir` into `conn` in one transaction (nothing is
/// written when anything fails). Without `merge` the database must hold
/// no data; with it, documents whose `_id` exists are skipped and events
/// get new sequence numbers after the highest one, in their order.
/// `source` is the CloudEvent source of imported events' envelopes.
pub fn import(
    conn: &mut Connection,
    dir: &Path,
    merge: bool,
    source: &str,
    progress: &mut dyn Progress,
) -> Result<Imported, ExchangeError> {
    if !dir.is_dir() {
        return Err(file_error(dir, "no such directory"));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if !merge {
        let held: Vec<String> = dump::contents(&tx)?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        if !held.is_empty() {
            return Err(ExchangeError::NotEmpty(held.join(", ")));
        }
    }
    // Into an empty database, the indexes are built once at the end.
    let deferred = if merge {
        None
    } else {
        Some(dump::defer_indexes(&tx)?)
    };
    dump::stage_events(&tx)?;
    let mut done = Imported::default();
    let now = timestamp::now();
    // Groups first: users refer to them. Events come in sequence order.
    for collection in [
        "usergroup",
        "user",
        "node",
        "eventhistory",
        "telemetry",
        "kv",
    ] {
        let file = format!("{collection}.json");
        let path = dir.join(&file);
        if !path.exists() {
            continue;
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).ok();
        progress.start(collection, size);
        let mut docs = files::Documents::open(&path).map_err(|e| file_error(&path, e))?;
        while let Some(item) = docs.next() {
            let bad = |line: usize, message: String| ExchangeError::Document {
                file: file.clone(),
                line,
                message,
            };
            let (line, value) = item.map_err(|(line, m)| bad(line, m))?;
            let doc = match Bson::try_from(value) {
                Ok(Bson::Document(doc)) => doc,
                Ok(_) => return Err(bad(line, "not a JSON object".into())),
                Err(e) => return Err(bad(line, format!("not Extended JSON: {e}"))),
            };
            let wrote = match collection {
                "usergroup" => {
                    let g = shapes::group_from(&doc).map_err(|m| bad(line, m))?;
                    if merge && dump::exists(&tx, collection, &g.id)? {
                        false
                    } else {
                        groups::insert(&tx, &g).map_err(|e| bad(line, e.to_string()))?;
                        true
                    }
                }
                "user" => {
                    let user = shapes::user_from(&doc).map_err(|m| bad(line, m))?;
                    if merge && dump::exists(&tx, collection, &user.id)? {
                        false
                    } else {
                        for g in &user.groups {
                            if groups::get(&tx, &g.id)?.is_none() {
                                done.without_groups += 1;
                                break;
                            }
                        }
                        users::insert(&tx, &user).map_err(|e| bad(line, e.to_string()))?;
                        true
                    }
                }
                "node" => {
                    let node = shapes::node_from(&doc).map_err(|m| bad(line, m))?;
                    if merge && dump::exists(&tx, collection, &node.id)? {
                        false
                    } else {
                        nodes::insert(&tx, &mut store::Outbox::default(), &node)
                            .map_err(|e| bad(line, e.to_string()))?;
                        true
                    }
                }
                "eventhistory" => {
                    let (event, seq) =
                        shapes::event_from(&doc, source).map_err(|m| bad(line, m))?;
                    if merge && dump::exists(&tx, collection, &event.id)? {
                        false
                    } else {
                        // numbered once all are read (see place_events)
                        dump::stage_event(&tx, seq, line, &event)?;
                        progress.update(docs.bytes);
                        continue;
                    }
                }
                "telemetry" => {
                    let event = shapes::telemetry_from(&doc, now).map_err(|m| bad(line, m))?;
                    if merge && dump::exists(&tx, collection, &event.id)? {
                        false
                    } else {
                        telemetry::insert(&tx, std::slice::from_ref(&event))
                            .map_err(|e| bad(line, e.to_string()))?;
                        true
                    }
                }
                _ => {
                    let (ns, key, value) = shapes::kv_from(&doc).map_err(|m| bad(line, m))?;
                    if merge && dump::kv_exists(&tx, &ns, &key)? {
                        false
                    } else {
                        kv::set(&tx, &ns, &key, &value).map_err(|e| bad(line, e.to_string()))?;
                        true
                    }
                }
            };
            if wrote {
                done.counts.add(collection);
            } else {
                done.skipped += 1;
            }
            progress.update(docs.bytes);
        }
        if collection == "eventhistory" {
            place_events(&tx, &file, merge, &mut done)?;
        }
        progress.finish();
    }
    if let Some(deferred) = deferred {
        progress.start("indexes", None);
        dump::restore_indexes(&tx, deferred)?;
        progress.finish();
    }
    done.orphans = dump::orphans(&tx)?;
    tx.commit()?;
    Ok(done)
}

/// Stores the staged events: with their own sequence numbers (those
/// without one after the highest), or, merging, with new ones after the
/// highest stored, in the order of their own numbers.
fn place_events(
    tx: &Connection,
    file: &str,
    merge: bool,
    done: &mut Imported,
) -> Result<(), ExchangeError> {
    if !merge && let Some((line, seq)) = dump::staged_clash(tx)? {
        return Err(ExchangeError::Document {
            file: file.to_string(),
            line: usize::try_from(line).unwrap_or(0),
            message: format!("sequence_id {seq} is used by another event"),
        });
    }
    let n = dump::place_staged_events(tx, !merge)?;
    done.counts.add_n("eventhistory", n);
    Ok(())
}
