//! The node state machine's timer: one thread that sleeps until the
//! earliest pending deadline (or until a node changes) and performs the
//! time-driven transitions itself, each an ordinary node update with its
//! event. Also the periodic purges of old events, telemetry and nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use crate::model::node::{CLOSING_GRACE_MS, Node};
use crate::model::telemetry::oldest_kept;
use crate::store::{Notice, Outbox, Store, StoreError, events, nodes, telemetry};
use crate::timestamp::{self, Clock, Timestamp};

/// Longest sleep without looking at the database.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// First node purge after start, then every PURGE_EVERY.
const FIRST_NODE_PURGE: Duration = Duration::from_secs(600);
const NODE_PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// Event-history and telemetry expiry run this often.
const EVENT_PURGE_EVERY: Duration = Duration::from_secs(600);
/// Most expired telemetry events deleted in one transaction: a large
/// backlog is deleted in several, so that other writes and the timer's
/// node transitions go in between.
const TELEMETRY_PURGE_BATCH: usize = 10_000;
/// Pause between two telemetry purge transactions while a backlog lasts.
const TELEMETRY_PURGE_AGAIN: Duration = Duration::from_millis(100);
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
    /// The CloudEvents `source` of the events the timer's changes publish.
    pub source: String,
    /// Events older than this many seconds are purged from the history.
    pub event_ttl_secs: u64,
    /// Telemetry events older than this many seconds are purged.
    pub telemetry_ttl_secs: u64,
    /// Nodes (checkouts excepted) created more than this many days ago are
    /// purged.
    pub node_purge_age_days: u64,
}

/// What committed node changes tell the timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// The earliest deadline the changed nodes now have.
    pub deadline: Option<Timestamp>,
    /// Some changed node is done or closing: a closing node may now have
    /// no pending descendant.
    pub settling: bool,
}

impl Wake {
    /// What the node changes among `notices` tell the timer; `None` when
    /// there are none.
    pub fn of(notices: &[Notice]) -> Option<Wake> {
        notices.iter().fold(None, |wake, notice| match notice {
            Notice::Node { deadline, settling } => Some(wake.unwrap_or_default().merge(Wake {
                deadline: *deadline,
                settling: *settling,
            })),
            _ => wake,
        })
    }

    /// Both wakes in one.
    pub fn merge(self, other: Wake) -> Wake {
        Wake {
            deadline: match (self.deadline, other.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            settling: self.settling || other.settling,
        }
    }

    /// Whether this change needs a pass before the one planned at
    /// `planned` (wall clock): a closing scan, or a deadline before it.
    pub fn needs_pass_before(&self, planned: Timestamp) -> bool {
        self.settling || self.deadline.is_some_and(|d| d < planned)
    }
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

/// How long the thread may sleep at `now`: until just past the earliest
/// pending deadline, at most MAX_SLEEP.
fn sleep_for(store: &Store, now: Timestamp) -> Duration {
    let next = store
        .read(|c| nodes::next_deadline(c, grace()))
        .ok()
        .flatten();
    match next {
        None => MAX_SLEEP,
        Some(deadline) => {
            let ms = (deadline - now).num_milliseconds() + 1;
            Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0)).min(MAX_SLEEP)
        }
    }
}

/// The purges due at `at` (monotonic), each cutting relative to `now`
/// (wall clock): events older than the TTL, then, on its own cadence,
/// nodes older than the purge age.
fn housekeeping(
    store: &Store,
    cfg: &TimerConfig,
    now: Timestamp,
    at: Instant,
    next_events: &mut Instant,
    next_nodes: &mut Instant,
) {
    if at >= *next_events {
        *next_events = at + EVENT_PURGE_EVERY;
        let oldest = now - timestamp::span_secs(cfg.event_ttl_secs);
        if let Err(err) = store.write(move |c, _| events::purge(c, &oldest)) {
            eprintln!("kci-lite: event history purge failed: {err}");
        }
    }
    if at >= *next_nodes {
        *next_nodes = at + NODE_PURGE_EVERY;
        let cutoff = now - timestamp::span_secs(cfg.node_purge_age_days.saturating_mul(86_400));
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

/// Purges expired telemetry when it is due at `at` (monotonic): one
/// transaction deleting at most TELEMETRY_PURGE_BATCH of the events older
/// than the retention at `now` (wall clock). A full batch means more are
/// left, and the next one is due TELEMETRY_PURGE_AGAIN later, so that a
/// large backlog never holds up the node transitions of a timer pass for
/// long; otherwise the next purge is due after EVENT_PURGE_EVERY.
fn purge_telemetry(
    store: &Store,
    cfg: &TimerConfig,
    now: Timestamp,
    at: Instant,
    next: &mut Instant,
) {
    if at < *next {
        return;
    }
    let oldest = oldest_kept(now, cfg.telemetry_ttl_secs);
    let purged = store.write(move |c, _| telemetry::purge(c, &oldest, TELEMETRY_PURGE_BATCH));
    *next = match purged {
        Ok(n) if n >= TELEMETRY_PURGE_BATCH => at + TELEMETRY_PURGE_AGAIN,
        Ok(_) => at + EVENT_PURGE_EVERY,
        Err(err) => {
            eprintln!("kci-lite: telemetry purge failed: {err}");
            at + EVENT_PURGE_EVERY
        }
    };
}

impl Timer {
    /// Starts the timer; `wake` receives what committed node changes tell
    /// it. A change runs a pass only when it needs one sooner than the pass
    /// planned (see [`Wake::needs_pass_before`]); a stream of new nodes
    /// with far deadlines leaves the timer asleep. Every reading of the
    /// time comes from `clock`.
    pub fn start(
        store: Arc<Store>,
        cfg: TimerConfig,
        wake: Receiver<Wake>,
        clock: Arc<dyn Clock>,
    ) -> Result<Timer, StoreError> {
        let (stop, stop_rx) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name("kci-timer".into())
            .spawn(move || {
                let started = clock.instant();
                let mut next_events = started;
                let mut next_telemetry = started;
                let mut next_nodes = started + FIRST_NODE_PURGE;
                // Nodes changed since the last closing scan (true at start:
                // deadlines passed while the server was down).
                let mut changed = true;
                let mut last_scan = started - CLOSING_SCAN_EVERY;
                loop {
                    let (now, at) = (clock.now(), clock.instant());
                    let scan = changed && at.duration_since(last_scan) >= CLOSING_SCAN_EVERY;
                    if scan {
                        changed = false;
                        last_scan = at;
                    }
                    if let Err(err) = tick(&store, &cfg.source, now, scan) {
                        eprintln!("kci-lite: timer pass failed: {err}");
                    }
                    housekeeping(&store, &cfg, now, at, &mut next_events, &mut next_nodes);
                    purge_telemetry(&store, &cfg, now, at, &mut next_telemetry);
                    let mut wait = sleep_for(&store, now)
                        .min(next_telemetry.saturating_duration_since(clock.instant()));
                    if changed {
                        let since_scan = at.duration_since(last_scan);
                        wait = wait.min(CLOSING_SCAN_EVERY.saturating_sub(since_scan));
                    }
                    let until = at + wait;
                    let planned = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    // Wait for the planned pass, or a change that needs one sooner.
                    loop {
                        let left = until.saturating_duration_since(clock.instant());
                        select! {
                            recv(wake) -> msg => {
                                let Ok(mut news) = msg else { return };
                                while let Ok(more) = wake.try_recv() {
                                    news = news.merge(more);
                                }
                                if news.needs_pass_before(planned) {
                                    changed |= news.settling;
                                    break;
                                }
                            }
                            recv(stop_rx) -> _ => return,
                            // a deadline (maybe a childless closing node's grace)
                            default(left) => {
                                changed = true;
                                break;
                            }
                        }
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::event::Event;
    use crate::model::node::{NodeResult, NodeState};
    use crate::store::events::EventQuery;
    use crate::store::testing::temp_store;
    use crate::timestamp::ManualClock;

    const SOURCE: &str = "https://kci-lite.test/";

    fn t0() -> Timestamp {
        timestamp::parse("2024-01-01T00:00:00").expect("valid")
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    fn text(at: Timestamp) -> String {
        timestamp::format(&at)
    }

    /// A node created at `at`, with the body fields `extra`.
    fn node(extra: Value, at: Timestamp) -> Node {
        let mut body = json!({"name": "n", "path": ["timer"]});
        for (key, value) in extra.as_object().expect("an object") {
            body[key.as_str()] = value.clone();
        }
        Node::create(&body, "bob", at).expect("a valid node")
    }

    fn insert(store: &Store, list: &[&Node]) {
        let list: Vec<Node> = list.iter().map(|&n| n.clone()).collect();
        store
            .write(move |c, out| list.iter().try_for_each(|n| nodes::insert(c, out, n)))
            .expect("insert");
    }

    fn save(store: &Store, changed: &Node) {
        let changed = changed.clone();
        store
            .write(move |c, out| nodes::update(c, out, &changed))
            .expect("update");
    }

    fn get(store: &Store, id: &str) -> Node {
        store
            .read(|c| nodes::get(c, id))
            .expect("read")
            .expect("stored")
    }

    /// The node's events in the history, oldest first.
    fn history(store: &Store, id: &str) -> Vec<Value> {
        let q = EventQuery {
            node_id: Some(id.to_string()),
            ..EventQuery::default()
        };
        store.read(|c| events::list(c, &q)).expect("read")
    }

    fn event_total(store: &Store) -> i64 {
        store
            .read(|c| {
                Ok::<_, StoreError>(c.query_row("SELECT count(*) FROM event", [], |r| r.get(0))?)
            })
            .expect("read")
    }

    #[test]
    fn a_running_node_past_its_timeout_goes_done_with_one_event() {
        let (_dir, store) = temp_store();
        let bare = node(
            json!({"timeout": text(t0() + secs(1)), "data": null,
                   "processed_by_kcidb_bridge": true}),
            t0(),
        );
        let passed = node(
            json!({"timeout": text(t0() + secs(1)), "result": "pass", "data": {"k": 1}}),
            t0(),
        );
        insert(&store, &[&bare, &passed]);
        let now = t0() + secs(2);
        assert_eq!(tick(&store, SOURCE, now, false).expect("tick"), 2);

        let done = get(&store, &bare.id);
        assert_eq!(done, bare.on_timeout(now));
        assert_eq!(done.state, NodeState::Done);
        assert_eq!(done.result, Some(NodeResult::Incomplete));
        assert_eq!(
            done.data,
            json!({"error_code": "node_timeout", "error_msg": "Node timed-out"})
        );
        assert_eq!(done.updated, now);
        assert!(!done.processed_by_kcidb_bridge);
        let kept = get(&store, &passed.id);
        assert_eq!(kept, passed.on_timeout(now));
        assert_eq!(
            (kept.result, &kept.data),
            (Some(NodeResult::Pass), &json!({"k": 1}))
        );

        let events = history(&store, &bare.id);
        assert_eq!(events.len(), 1, "{events:?}");
        let data = &events[0]["data"];
        assert_eq!(data["op"], "updated");
        assert_eq!(
            (&data["state"], &data["result"]),
            (&json!("done"), &json!("incomplete"))
        );
        assert_eq!(data["previous_state"], "running");
        assert_eq!(data["previous_result"], Value::Null);
        assert_eq!(data["is_hierarchy"], false);
        assert_eq!(events[0]["owner"], "bob");
        assert_eq!(history(&store, &passed.id).len(), 1);

        // done nodes have no deadline any more
        assert_eq!(tick(&store, SOURCE, now + secs(60), true).expect("tick"), 0);
        assert_eq!(event_total(&store), 2);
    }

    #[test]
    fn deadlines_after_now_are_untouched() {
        let (_dir, store) = temp_store();
        let running = node(json!({"timeout": text(t0() + secs(1))}), t0());
        let waiting = node(
            json!({"state": "available", "holdoff": text(t0() + secs(1))}),
            t0(),
        );
        // no holdoff: an available node waits for its timeout only
        let open = node(json!({"state": "available"}), t0() - secs(3600));
        // a done node's past timeout no longer counts
        let finished = node(
            json!({"state": "done", "timeout": text(t0() - secs(1))}),
            t0() - secs(2),
        );
        insert(&store, &[&running, &waiting, &open, &finished]);
        // a deadline must have passed, not merely been reached
        for now in [t0(), t0() + secs(1)] {
            assert_eq!(tick(&store, SOURCE, now, true).expect("tick"), 0);
        }
        for before in [&running, &waiting, &open, &finished] {
            assert_eq!(&get(&store, &before.id), before);
        }
        assert_eq!(event_total(&store), 0);
    }

    #[test]
    fn an_available_node_past_its_holdoff_goes_closing_or_done() {
        let (_dir, store) = temp_store();
        let holdoff = json!(text(t0() + secs(1)));
        let waiting = node(json!({"state": "available", "holdoff": holdoff}), t0());
        let pending = node(json!({"parent": waiting.id}), t0());
        let alone = node(
            json!({"state": "available", "holdoff": holdoff, "result": "pass"}),
            t0(),
        );
        let finished = node(json!({"state": "available", "holdoff": holdoff}), t0());
        let finished_child = node(json!({"state": "done", "parent": finished.id}), t0());
        insert(
            &store,
            &[&waiting, &pending, &alone, &finished, &finished_child],
        );
        let now = t0() + secs(2);
        assert_eq!(tick(&store, SOURCE, now, false).expect("tick"), 3);

        let closing = get(&store, &waiting.id);
        assert_eq!(closing, waiting.on_holdoff(true, now));
        assert_eq!(closing.state, NodeState::Closing);
        let done = get(&store, &alone.id);
        assert_eq!(done, alone.on_holdoff(false, now));
        assert_eq!(
            (done.state, done.result),
            (NodeState::Done, Some(NodeResult::Pass))
        );
        assert_eq!(get(&store, &finished.id).state, NodeState::Done);
        assert_eq!(&get(&store, &pending.id), &pending);
        for id in [&waiting.id, &alone.id, &finished.id] {
            let events = history(&store, id);
            assert_eq!(events.len(), 1, "{events:?}");
            assert_eq!(events[0]["data"]["previous_state"], "available");
        }
        assert_eq!(event_total(&store), 3);
    }

    #[test]
    fn closing_nodes_go_done_once_their_descendants_are_done_in_one_pass() {
        let (_dir, store) = temp_store();
        let grand = node(json!({"state": "closing"}), t0());
        let parent = node(json!({"state": "closing", "parent": grand.id}), t0());
        let child = node(json!({"parent": parent.id}), t0());
        insert(&store, &[&grand, &parent, &child]);
        assert_eq!(tick(&store, SOURCE, t0() + secs(1), true).expect("tick"), 0);
        assert_eq!(get(&store, &parent.id), parent);
        assert_eq!(get(&store, &grand.id), grand);

        let child_done = child
            .patch(&json!({"state": "done", "result": "pass"}), t0() + secs(2))
            .expect("a valid patch");
        save(&store, &child_done);
        // without a closing scan and with nothing else due, nothing happens
        assert_eq!(
            tick(&store, SOURCE, t0() + secs(3), false).expect("tick"),
            0
        );
        let now = t0() + secs(3);
        assert_eq!(tick(&store, SOURCE, now, true).expect("tick"), 2);
        assert_eq!(get(&store, &parent.id), parent.on_descendants_done(now));
        assert_eq!(get(&store, &grand.id), grand.on_descendants_done(now));
        for id in [&parent.id, &grand.id] {
            let events = history(&store, id);
            assert_eq!(events.len(), 1, "{events:?}");
            let data = &events[0]["data"];
            assert_eq!(
                (&data["previous_state"], &data["state"]),
                (&json!("closing"), &json!("done"))
            );
        }
    }

    #[test]
    fn a_timeout_completes_its_closing_ancestors_in_the_same_pass() {
        let (_dir, store) = temp_store();
        let grand = node(json!({"state": "closing"}), t0());
        let parent = node(json!({"state": "closing", "parent": grand.id}), t0());
        let child = node(
            json!({"parent": parent.id, "timeout": text(t0() + secs(1))}),
            t0(),
        );
        insert(&store, &[&grand, &parent, &child]);
        let now = t0() + secs(2);
        // no closing scan asked: the timeout itself starts the cascade
        assert_eq!(tick(&store, SOURCE, now, false).expect("tick"), 3);
        for before in [&child, &parent, &grand] {
            assert_eq!(get(&store, &before.id).state, NodeState::Done);
            assert_eq!(history(&store, &before.id).len(), 1);
        }
    }

    #[test]
    fn a_childless_closing_node_goes_done_after_the_grace_period() {
        let (_dir, store) = temp_store();
        let closing = node(json!({"state": "closing"}), t0());
        insert(&store, &[&closing]);
        let end = t0() + grace();
        assert_eq!(tick(&store, SOURCE, end, true).expect("tick"), 0);
        assert_eq!(get(&store, &closing.id), closing);
        let after = end + chrono::Duration::milliseconds(1);
        assert_eq!(tick(&store, SOURCE, after, false).expect("tick"), 0);
        assert_eq!(tick(&store, SOURCE, after, true).expect("tick"), 1);
        assert_eq!(get(&store, &closing.id), closing.on_descendants_done(after));
        assert_eq!(history(&store, &closing.id).len(), 1);
    }

    #[test]
    fn sleep_lasts_until_just_past_the_next_deadline() {
        let (_dir, store) = temp_store();
        assert_eq!(sleep_for(&store, t0()), MAX_SLEEP);
        let running = node(json!({"timeout": text(t0() + secs(2))}), t0());
        insert(&store, &[&running]);
        assert_eq!(sleep_for(&store, t0()), Duration::from_millis(2001));
        assert_eq!(sleep_for(&store, t0() - secs(3600)), MAX_SLEEP);
        assert_eq!(sleep_for(&store, t0() + secs(5)), Duration::ZERO);
        let closing = node(json!({"state": "closing"}), t0());
        insert(&store, &[&closing]);
        let grace_ms = u64::try_from(CLOSING_GRACE_MS).expect("positive");
        assert_eq!(sleep_for(&store, t0()), Duration::from_millis(grace_ms + 1));
    }

    /// Stores an event on channel `node` stamped `at`.
    fn old_event(store: &Store, at: Timestamp) -> String {
        let mut event = Event::new("node", Some("bob"), json!({"op": "test"}), SOURCE);
        event.timestamp = at;
        let id = event.id.clone();
        store
            .write(move |c, out| events::append(c, out, &event))
            .expect("append");
        id
    }

    fn event_ids(store: &Store) -> Vec<String> {
        store
            .read(|c| events::list(c, &EventQuery::default()))
            .expect("read")
            .iter()
            .map(|e| e["id"].as_str().expect("an id").to_string())
            .collect()
    }

    fn node_exists(store: &Store, id: &str) -> bool {
        store.read(|c| nodes::exists(c, id)).expect("read")
    }

    #[test]
    fn housekeeping_purges_what_is_older_than_its_age_at_now() {
        let (_dir, store) = temp_store();
        let cfg = TimerConfig {
            source: SOURCE.into(),
            event_ttl_secs: 24 * 3600,
            telemetry_ttl_secs: 2 * 24 * 3600,
            node_purge_age_days: 10,
        };
        let clock = ManualClock::new();
        let now = clock.now();
        let ttl = secs(24 * 3600);
        old_event(&store, now - ttl - secs(1));
        let recent = old_event(&store, now - ttl + secs(3600));
        let old_node = node(json!({}), now - chrono::Duration::days(10) - secs(1));
        let young_node = node(json!({}), now - chrono::Duration::days(8));
        insert(&store, &[&old_node, &young_node]);

        let at = clock.instant();
        let (mut next_events, mut next_nodes) = (at, at);
        housekeeping(&store, &cfg, now, at, &mut next_events, &mut next_nodes);
        assert_eq!(event_ids(&store), std::slice::from_ref(&recent));
        assert!(!node_exists(&store, &old_node.id));
        assert!(node_exists(&store, &young_node.id));
        assert_eq!(next_events, at + EVENT_PURGE_EVERY);
        assert_eq!(next_nodes, at + NODE_PURGE_EVERY);

        // each purge waits for its own cadence
        let expired = old_event(&store, clock.now() - ttl - secs(1));
        let old_node = node(json!({}), clock.now() - chrono::Duration::days(11));
        insert(&store, &[&old_node]);
        clock.advance(EVENT_PURGE_EVERY - Duration::from_secs(1));
        let again = |clock: &ManualClock, next_events: &mut Instant, next_nodes: &mut Instant| {
            housekeeping(
                &store,
                &cfg,
                clock.now(),
                clock.instant(),
                next_events,
                next_nodes,
            )
        };
        again(&clock, &mut next_events, &mut next_nodes);
        assert_eq!(event_ids(&store), [recent.clone(), expired.clone()]);
        clock.advance(Duration::from_secs(1));
        again(&clock, &mut next_events, &mut next_nodes);
        assert_eq!(event_ids(&store), [recent]);
        assert!(node_exists(&store, &old_node.id));
        clock.advance(NODE_PURGE_EVERY);
        again(&clock, &mut next_events, &mut next_nodes);
        assert!(!node_exists(&store, &old_node.id));
        assert!(node_exists(&store, &young_node.id));
    }

    fn telemetry_at(store: &Store, times: &[Timestamp]) {
        let body = Value::Array(
            times
                .iter()
                .map(|at| json!({"kind": "k", "runtime": "r", "ts": text(*at)}))
                .collect(),
        );
        let batch = crate::model::telemetry::parse_batch(&body, t0()).expect("valid");
        store
            .write(move |c, _| telemetry::insert(c, &batch))
            .expect("insert");
    }

    fn telemetry_times(store: &Store) -> Vec<Timestamp> {
        let q = telemetry::ListQuery::default();
        let mut times = Vec::new();
        store
            .read(|c| {
                telemetry::each(c, &q, None, 0, &mut |e| {
                    times.push(e.ts);
                    true
                })
            })
            .expect("read");
        times.sort();
        times
    }

    #[test]
    fn expired_telemetry_is_purged_one_bounded_batch_per_pass() {
        let (_dir, store) = temp_store();
        let cfg = TimerConfig {
            source: SOURCE.into(),
            event_ttl_secs: 24 * 3600,
            telemetry_ttl_secs: 3600,
            node_purge_age_days: 10,
        };
        let clock = ManualClock::new();
        let now = clock.now();
        let ttl = secs(3600);
        // more expired events than one purge transaction takes
        let expired: Vec<Timestamp> = (0..TELEMETRY_PURGE_BATCH + 5)
            .map(|i| now - ttl - secs(1 + (i % 100) as i64))
            .collect();
        for chunk in expired.chunks(crate::model::telemetry::MAX_EVENTS_PER_REQUEST) {
            telemetry_at(&store, chunk);
        }
        let kept = [now - ttl, now - ttl + secs(60), now + secs(3600)];
        telemetry_at(&store, &kept);
        let at = clock.instant();
        let mut next = at;
        purge_telemetry(&store, &cfg, now, at, &mut next);
        assert_eq!(
            telemetry_times(&store).len(),
            kept.len() + 5,
            "one full batch"
        );
        assert_eq!(
            next,
            at + TELEMETRY_PURGE_AGAIN,
            "more are left: soon again"
        );
        purge_telemetry(&store, &cfg, now, at, &mut next);
        assert_eq!(telemetry_times(&store).len(), kept.len() + 5, "not due yet");
        clock.advance(TELEMETRY_PURGE_AGAIN);
        let at = clock.instant();
        purge_telemetry(&store, &cfg, now, at, &mut next);
        assert_eq!(
            telemetry_times(&store),
            kept,
            "exactly the expired ones are gone"
        );
        assert_eq!(next, at + EVENT_PURGE_EVERY, "none left: the usual cadence");
        // the next purge cuts at its own now
        clock.advance(EVENT_PURGE_EVERY);
        purge_telemetry(&store, &cfg, clock.now(), clock.instant(), &mut next);
        assert_eq!(telemetry_times(&store), [now + secs(3600)]);
    }

    #[test]
    fn only_changes_that_need_a_pass_sooner_wake_the_timer() {
        let now = timestamp::now();
        let later = |s: i64| now + chrono::Duration::seconds(s);
        let notices = [
            Notice::Channel("node".into()),
            Notice::Node {
                deadline: Some(later(600)),
                settling: false,
            },
            Notice::Node {
                deadline: Some(later(60)),
                settling: false,
            },
            Notice::Node {
                deadline: None,
                settling: false,
            },
        ];
        let wake = Wake::of(&notices).expect("node changes");
        assert_eq!(
            wake,
            Wake {
                deadline: Some(later(60)),
                settling: false
            }
        );
        assert!(Wake::of(&[Notice::List("jobs".into())]).is_none());
        // new nodes with far deadlines: the planned pass is soon enough
        assert!(!wake.needs_pass_before(later(30)));
        assert!(wake.needs_pass_before(later(120)));
        // a node done or closing asks for a closing scan at once
        let settling = Wake {
            deadline: None,
            settling: true,
        };
        assert!(settling.needs_pass_before(later(30)));
        assert!(wake.merge(settling).settling);
    }

    #[test]
    fn the_thread_reads_the_time_from_its_clock() {
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let clock = Arc::new(ManualClock::new());
        let running = node(
            json!({"timeout": text(clock.now() + secs(3600))}),
            clock.now(),
        );
        insert(&store, &[&running]);
        let (wake, wake_rx) = crossbeam_channel::unbounded();
        let cfg = TimerConfig {
            source: SOURCE.into(),
            event_ttl_secs: 3600,
            telemetry_ttl_secs: 3600,
            node_purge_age_days: 10,
        };
        let mut timer =
            Timer::start(Arc::clone(&store), cfg, wake_rx, clock.clone()).expect("start");
        // two hours pass on the clock only; a node change wakes the timer
        clock.advance(Duration::from_secs(2 * 3600));
        wake.send(Wake::default()).expect("the timer listens");
        let deadline = Instant::now() + Duration::from_secs(10);
        let done = loop {
            let current = get(&store, &running.id);
            if current.state == NodeState::Done {
                break current;
            }
            assert!(Instant::now() < deadline, "not timed out: {current:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        timer.stop();
        assert_eq!(done, running.on_timeout(clock.now()));
    }
}
