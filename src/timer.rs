//! The node state machine's timer: one thread that sleeps until the
//! earliest pending deadline (or until a node changes) and performs the
//! time-driven transitions itself, each an ordinary node update with its
//! event. Also the periodic purges of old events and nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use crate::model::node::{CLOSING_GRACE_MS, Node};
use crate::store::{Outbox, Store, StoreError, events, nodes};
use crate::timestamp::{self, Timestamp};

/// Longest sleep without looking at the database.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// First node purge after start, then every PURGE_EVERY.
const FIRST_NODE_PURGE: Duration = Duration::from_secs(600);
const NODE_PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// Event-history expiry runs this often.
const EVENT_PURGE_EVERY: Duration = Duration::from_secs(600);
/// Shortest time between two scans of the closing nodes (each node change
/// asks for one; the contract allows one second).
const CLOSING_SCAN_EVERY: Duration = Duration::from_millis(250);
/// Most cascade rounds (closing parents of closing parents) in one pass.
const MAX_CASCADE: usize = 64;

fn grace() -> chrono::Duration {
    chrono::Duration::milliseconds(CLOSING_GRACE_MS)
}

/// Settings of the timer.
#[derive(Clone)]
pub struct TimerConfig {
    pub source: String,
    pub event_ttl_secs: u64,
    pub node_purge_age_days: u64,
}

/// The running timer thread.
pub struct Timer {
    stop: Sender<()>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// Stores a time-driven change and its node event.
fn record(
    c: &rusqlite::Connection,
    out: &mut Outbox,
    source: &str,
    old: &Node,
    new: &Node,
) -> Result<(), StoreError> {
    nodes::update(c, out, new)?;
    events::append_node_event(c, out, source, new, false, Some(old))?;
    Ok(())
}

/// Whether anything is due at `now` (a cheap read before any write).
fn due(store: &Store, now: &Timestamp, closing: bool) -> Result<bool, StoreError> {
    store.read(|c| {
        Ok(!nodes::timed_out(c, now)?.is_empty()
            || !nodes::held_off(c, now)?.is_empty()
            || (closing && !nodes::closing_without_pending(c, &(*now - grace()))?.is_empty()))
    })
}

/// Applies every transition due at `now` in one transaction; how many.
/// `closing`: also look for closing nodes whose descendants are all done
/// (a scan of the closing nodes, so the caller rate-limits it).
pub fn tick(
    store: &Store,
    source: &str,
    now: Timestamp,
    closing: bool,
) -> Result<usize, StoreError> {
    if !due(store, &now, closing)? {
        return Ok(0);
    }
    let source = source.to_string();
    store.write(move |c, out| {
        let mut changed = 0;
        for node in nodes::timed_out(c, &now)? {
            record(c, out, &source, &node, &node.on_timeout(now))?;
            changed += 1;
        }
        for node in nodes::held_off(c, &now)? {
            let pending = nodes::has_pending_descendant(c, &node.id)?;
            record(c, out, &source, &node, &node.on_holdoff(pending, now))?;
            changed += 1;
        }
        // A node that just went done may complete its closing parent.
        let rounds = if closing || changed > 0 {
            MAX_CASCADE
        } else {
            0
        };
        for _ in 0..rounds {
            let ready = nodes::closing_without_pending(c, &(now - grace()))?;
            if ready.is_empty() {
                break;
            }
            for node in ready {
                record(c, out, &source, &node, &node.on_descendants_done(now))?;
                changed += 1;
            }
        }
        Ok(changed)
    })
}

fn sleep_for(store: &Store) -> Duration {
    let next = store
        .read(|c| nodes::next_deadline(c, grace()))
        .ok()
        .flatten();
    match next {
        None => MAX_SLEEP,
        Some(deadline) => {
            let ms = (deadline - timestamp::now()).num_milliseconds() + 1;
            Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0)).min(MAX_SLEEP)
        }
    }
}

fn housekeeping(
    store: &Store,
    cfg: &TimerConfig,
    next_events: &mut Instant,
    next_nodes: &mut Instant,
) {
    let now = Instant::now();
    if now >= *next_events {
        *next_events = now + EVENT_PURGE_EVERY;
        let ttl = chrono::Duration::seconds(
            i64::try_from(cfg.event_ttl_secs).unwrap_or(i64::MAX / 2_000_000),
        );
        let oldest = timestamp::now() - ttl;
        if let Err(err) = store.write(move |c, _| events::purge(c, &oldest)) {
            eprintln!("kci-lite: event history purge failed: {err}");
        }
    }
    if now >= *next_nodes {
        *next_nodes = now + NODE_PURGE_EVERY;
        let age = chrono::Duration::days(i64::try_from(cfg.node_purge_age_days).unwrap_or(36_500));
        let cutoff = timestamp::now() - age;
        match store.write(move |c, _| nodes::purge(c, &cutoff)) {
            Ok(0) => {}
            Ok(n) => eprintln!(
                "kci-lite: purged {n} nodes older than {} days",
                cfg.node_purge_age_days
            ),
            Err(err) => eprintln!("kci-lite: node purge failed: {err}"),
        }
    }
}

impl Timer {
    /// Starts the timer; `wake` receives a message whenever nodes change.
    pub fn start(
        store: Arc<Store>,
        cfg: TimerConfig,
        wake: Receiver<()>,
    ) -> Result<Timer, StoreError> {
        let (stop, stop_rx) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name("kci-timer".into())
            .spawn(move || {
                let mut next_events = Instant::now();
                let mut next_nodes = Instant::now() + FIRST_NODE_PURGE;
                // Nodes changed since the last closing scan (true at start:
                // deadlines passed while the server was down).
                let mut changed = true;
                let mut last_scan = Instant::now() - CLOSING_SCAN_EVERY;
                loop {
                    let scan = changed && last_scan.elapsed() >= CLOSING_SCAN_EVERY;
                    if scan {
                        changed = false;
                        last_scan = Instant::now();
                    }
                    if let Err(err) = tick(&store, &cfg.source, timestamp::now(), scan) {
                        eprintln!("kci-lite: timer pass failed: {err}");
                    }
                    housekeeping(&store, &cfg, &mut next_events, &mut next_nodes);
                    let mut wait = sleep_for(&store);
                    if changed {
                        wait = wait.min(CLOSING_SCAN_EVERY.saturating_sub(last_scan.elapsed()));
                    }
                    select! {
                        recv(wake) -> msg => {
                            if msg.is_err() { break; }
                            while wake.try_recv().is_ok() {}
                            changed = true;
                        }
                        recv(stop_rx) -> _ => break,
                        // a deadline (maybe a childless closing node's grace)
                        default(wait) => changed = true,
                    }
                }
            })
            .map_err(|e| StoreError::Internal(format!("cannot start the timer thread: {e}")))?;
        Ok(Timer {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the timer thread.
    pub fn stop(&mut self) {
        let _ = self.stop.send(());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
