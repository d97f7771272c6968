//! The one writer thread: takes jobs from a channel, runs every job waiting
//! at that moment in ONE transaction (each in its own SAVEPOINT, so a
//! failing job rolls back alone), commits once, then answers every job.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;

use super::StoreError;

/// Most jobs committed together.
const MAX_BATCH: usize = 256;

/// What a committed write tells the pub/sub side: new stored events on a
/// channel, or new messages in a push list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Notice {
    Channel(String),
    List(String),
    /// A node was created or changed: the earliest deadline it now has,
    /// and whether it is done or closing (see `Node::next_deadline`,
    /// `Node::is_settling`).
    Node {
        deadline: Option<crate::timestamp::Timestamp>,
        settling: bool,
    },
}

/// Where notices of committed writes go (set once by the broker).
pub type Notifier = Arc<OnceLock<Sender<Vec<Notice>>>>;

/// What one write tells the rest of the server once it commits: the store
/// functions that change what subscribers or the timer watch take it as a
/// parameter, so a write's signature shows what it publishes. Dropped if
/// the write rolls back.
#[derive(Debug, Default)]
pub struct Outbox {
    notices: Vec<Notice>,
}

impl Outbox {
    /// Records a notice, sent after COMMIT.
    pub fn push(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    /// The notices recorded so far, in order.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }
}

/// What a job leaves behind after running: whether to keep its changes
/// (and so send its notices), and how to answer its caller once the commit
/// outcome is known.
pub(crate) struct Done {
    keep: bool,
    out: Outbox,
    finish: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

/// A unit of work for the writer thread.
pub(crate) type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;

/// Wraps a closure and its reply channel into a job.
pub(crate) fn job<T, E, F, A>(f: F, after: A, reply: Sender<Result<T, E>>) -> Job
where
    F: FnOnce(&Connection, &mut Outbox) -> Result<T, E> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    Box::new(move |conn| {
        let mut out = Outbox::default();
        let result = f(conn, &mut out);
        Done {
            keep: result.is_ok(),
            out,
            finish: Box::new(move |commit| {
                let answer = match commit {
                    Ok(()) => {
                        if let Ok(value) = &result {
                            after(value);
                        }
                        result
                    }
                    Err(err) => Err(E::from(err)),
                };
                let _ = reply.send(answer);
            }),
        }
    })
}

pub(crate) fn spawn(
    conn: Connection,
    notifier: Notifier,
) -> Result<(Sender<Job>, JoinHandle<()>), StoreError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let handle = std::thread::Builder::new()
        .name("kci-writer".into())
        .spawn(move || run(conn, rx, notifier))
        .map_err(|e| StoreError::Internal(format!("cannot start writer thread: {e}")))?;
    Ok((tx, handle))
}

fn run(conn: Connection, jobs: Receiver<Job>, notifier: Notifier) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let notices = commit_batch(&conn, batch);
        if let Some(notices) = notices
            && !notices.is_empty()
            && let Some(tx) = notifier.get()
        {
            let _ = tx.send(notices);
        }
    }
    // Refresh the planner's statistics (cheap; SQLite's advice at close).
    let _ = conn.execute_batch("PRAGMA optimize");
    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        eprintln!("kci-lite: WAL checkpoint at shutdown failed: {err}");
    }
}

/// Runs and commits one batch; the notices of its kept jobs if the commit
/// succeeded.
fn commit_batch(conn: &Connection, batch: Vec<Job>) -> Option<Vec<Notice>> {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        eprintln!("kci-lite: cannot begin a write transaction: {err}");
        // Dropping the jobs answers their callers with an error.
        return None;
    }
    let mut notices = Vec::new();
    let mut finished = Vec::with_capacity(batch.len());
    for job in batch {
        if conn.execute_batch("SAVEPOINT job").is_err() {
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| job(conn))) {
            Ok(mut done) => {
                if done.keep {
                    notices.append(&mut done.out.notices);
                } else {
                    let _ = conn.execute_batch("ROLLBACK TO job");
                }
                let _ = conn.execute_batch("RELEASE job");
                finished.push(done);
            }
            Err(_) => {
                eprintln!("kci-lite: a write job panicked; its changes were rolled back");
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            }
        }
    }
    let outcome = conn.execute_batch("COMMIT").map_err(StoreError::from);
    if outcome.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let committed = outcome.is_ok();
    for done in finished {
        (done.finish)(outcome.clone());
    }
    committed.then_some(notices)
}
