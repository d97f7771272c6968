//! The broker: live subscriptions, and the long polls (`/listen`, `/pop`)
//! parked without holding a worker thread. Stored events are read from the
//! event history by sequence number, so live delivery, catch-up after a
//! reconnect and delivery after a restart are one mechanism. A dispatcher
//! thread answers parked requests when the writer reports a commit on their
//! channel or list, or when a keep-alive is due.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use crossbeam_channel::{Receiver, Sender, select};
use serde_json::{Map, Value, json};

use crate::http::{ApiError, Resp};
use crate::model::event;
use crate::server::Responder;
use crate::store::{Notice, Store, StoreError, events, queues, subscribers};
use crate::timestamp::{self, Timestamp};

/// Subscriptions polled once and then not for this long are removed.
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most new events read per channel for parked listeners at once.
const FAN_OUT_LIMIT: i64 = 512;
/// How often the dispatcher looks for stale subscriptions.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A live subscription.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: u64,
    pub channel: String,
    pub user: String,
    pub promiscuous: bool,
    pub created: Timestamp,
    pub last_poll: Option<Timestamp>,
    /// Durable subscriber id, if any.
    pub subscriber_id: Option<String>,
    /// Highest sequence number delivered or skipped.
    cursor: i64,
    /// Highest sequence number acknowledged (cursor at the last /listen).
    acked: i64,
    next_beep: Instant,
    last_poll_at: Option<Instant>,
}

impl Subscription {
    /// The `/subscribe` answer.
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "channel": self.channel, "user": self.user,
               "promiscuous": self.promiscuous})
    }

    /// The `/stats/subscriptions` entry.
    pub fn stats_json(&self) -> Value {
        json!({"id": self.id, "channel": self.channel, "user": self.user,
               "promiscuous": self.promiscuous,
               "created": timestamp::format(&self.created),
               "last_poll": self.last_poll.as_ref().map(timestamp::format)})
    }
}

enum Parked {
    Listen { sub: u64, responder: Responder },
    Pop { list: String, responder: Responder },
}

enum Command {
    Park(Box<Parked>),
    /// A subscription was removed: answer its parked listens with 404.
    Removed(u64),
    Stop,
}

struct State {
    subs: HashMap<u64, Subscription>,
}

/// Live subscriptions and the dispatcher that answers parked requests.
pub struct Broker {
    store: Arc<Store>,
    state: Mutex<State>,
    commands: Sender<Command>,
    keep_alive: Duration,
    source: String,
    history_ttl: ChronoDuration,
    dispatcher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn not_found(id: u64) -> ApiError {
    ApiError::not_found(&format!(
        "Subscription id not found: 'Subscription {id} not found'"
    ))
}

/// The `/listen` body for a CloudEvent envelope on `channel`.
fn message(channel: &str, envelope_text: String) -> Resp {
    Resp::json(
        &json!({"type": "message", "pattern": null, "channel": channel,
                       "data": envelope_text}),
    )
}

impl Broker {
    /// Starts the dispatcher; `notices` are the writer's commit notices.
    pub fn start(
        store: Arc<Store>,
        notices: Receiver<Vec<Notice>>,
        keep_alive: Duration,
        source: String,
        history_ttl_secs: u64,
    ) -> Result<Arc<Broker>, StoreError> {
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let broker = Arc::new(Broker {
            store,
            state: Mutex::new(State {
                subs: HashMap::new(),
            }),
            commands,
            keep_alive,
            source,
            history_ttl: ChronoDuration::seconds(
                i64::try_from(history_ttl_secs).unwrap_or(i64::MAX / 2_000_000),
            ),
            dispatcher: Mutex::new(None),
        });
        let me = Arc::clone(&broker);
        let handle = std::thread::Builder::new()
            .name("kci-pubsub".into())
            .spawn(move || me.dispatch(&notices, &command_rx))
            .map_err(|e| StoreError::Internal(format!("cannot start the pub/sub thread: {e}")))?;
        if let Ok(mut d) = broker.dispatcher.lock() {
            *d = Some(handle);
        }
        Ok(broker)
    }

    /// Stops the dispatcher; parked requests are answered with 503.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
        let handle = self.dispatcher.lock().ok().and_then(|mut d| d.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the map is intact.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn oldest(&self) -> Timestamp {
        timestamp::now() - self.history_ttl
    }

    /// Registers a subscription starting after sequence number `position`.
    pub fn add(
        &self,
        id: u64,
        channel: &str,
        user: &str,
        promiscuous: bool,
        subscriber_id: Option<String>,
        position: i64,
    ) -> Subscription {
        let sub = Subscription {
            id,
            channel: channel.to_string(),
            user: user.to_string(),
            promiscuous,
            created: timestamp::now(),
            last_poll: None,
            subscriber_id,
            cursor: position,
            acked: position,
            next_beep: Instant::now() + self.keep_alive,
            last_poll_at: None,
        };
        self.lock().subs.insert(id, sub.clone());
        sub
    }

    /// The subscription `id` if `user` owns it: 404 / 403 otherwise.
    fn owned(&self, id: u64, user: &str) -> Result<Subscription, ApiError> {
        let state = self.lock();
        let sub = state.subs.get(&id).ok_or_else(|| not_found(id))?;
        if sub.user != user {
            return Err(ApiError {
                status: 403,
                detail: Value::String(format!("Subscription {id} not owned by {user}")),
                cause: None,
            });
        }
        Ok(sub.clone())
    }

    /// Removes a subscription (durable position kept); parked listens on it
    /// get 404.
    pub fn remove(&self, id: u64, user: &str) -> Result<(), ApiError> {
        self.owned(id, user)?;
        self.lock().subs.remove(&id);
        let _ = self.commands.send(Command::Removed(id));
        Ok(())
    }

    /// Every live subscription, by id.
    pub fn stats(&self) -> Vec<Value> {
        let state = self.lock();
        let mut subs: Vec<&Subscription> = state.subs.values().collect();
        subs.sort_by_key(|s| s.id);
        subs.iter().map(|s| s.stats_json()).collect()
    }

    /// Starts a `/listen`: acknowledges what the previous one delivered
    /// (durable subscribers save it), then answers at once if a message is
    /// ready; `None` means "park me".
    pub fn listen(&self, id: u64, user: &str) -> Result<Option<Resp>, ApiError> {
        self.owned(id, user)?;
        let ack = {
            let mut state = self.lock();
            let sub = state.subs.get_mut(&id).ok_or_else(|| not_found(id))?;
            sub.last_poll = Some(timestamp::now());
            sub.last_poll_at = Some(Instant::now());
            let changed = sub.cursor > sub.acked;
            sub.acked = sub.cursor;
            match (&sub.subscriber_id, changed) {
                (Some(sid), true) => Some((sid.clone(), sub.acked)),
                _ => None,
            }
        };
        if let Some((sid, position)) = ack {
            self.store
                .write(move |c| subscribers::acknowledge(c, &sid, position))?;
        }
        self.try_deliver(id)
    }

    /// The next message for subscription `id`, if any: a stored event, or
    /// a BEEP when the keep-alive is due.
    fn try_deliver(&self, id: u64) -> Result<Option<Resp>, ApiError> {
        loop {
            let sub = self
                .lock()
                .subs
                .get(&id)
                .cloned()
                .ok_or_else(|| not_found(id))?;
            let oldest = self.oldest();
            let found = self.store.read(|c| {
                let upto = events::max_seq(c)?;
                let next = events::next_for(
                    c,
                    &sub.channel,
                    sub.cursor,
                    upto,
                    &sub.user,
                    sub.promiscuous,
                    &oldest,
                )?;
                Ok::<_, StoreError>((upto, next))
            })?;
            let mut state = self.lock();
            let Some(current) = state.subs.get_mut(&id) else {
                return Err(not_found(id));
            };
            if current.cursor != sub.cursor {
                continue; // another listen moved on meanwhile: look again
            }
            match found {
                (_, Some((seq, envelope))) => {
                    current.cursor = seq;
                    return Ok(Some(message(&sub.channel, envelope)));
                }
                (upto, None) => {
                    current.cursor = current.cursor.max(upto);
                    if Instant::now() >= current.next_beep {
                        current.next_beep = Instant::now() + self.keep_alive;
                        return Ok(Some(self.beep(&sub.channel)));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn beep(&self, channel: &str) -> Resp {
        let env = event::envelope(&self.source, event::DEFAULT_TYPE, json!("BEEP"), Map::new());
        message(channel, env.to_string())
    }

    /// Parks a `/listen` until a message is ready.
    pub fn park_listen(&self, sub: u64, responder: Responder) {
        let _ = self
            .commands
            .send(Command::Park(Box::new(Parked::Listen { sub, responder })));
    }

    /// Parks a `/pop` until a message is pushed to `list`.
    pub fn park_pop(&self, list: String, responder: Responder) {
        let _ = self
            .commands
            .send(Command::Park(Box::new(Parked::Pop { list, responder })));
    }

    /// Pops the oldest message of `list` (its envelope as a JSON object).
    pub fn pop(&self, list: &str) -> Result<Option<Resp>, ApiError> {
        let list = list.to_string();
        let popped = self.store.write(move |c| queues::pop(c, &list))?;
        Ok(popped.map(|text| Resp {
            status: 200,
            content_type: "application/json",
            body: text.into_bytes(),
            headers: Vec::new(),
        }))
    }

    /// Tries to answer one parked request; gives it back if not ready.
    fn attempt(&self, parked: Parked) -> Option<Parked> {
        match parked {
            Parked::Listen { sub, responder } => match self.try_deliver(sub) {
                Ok(Some(resp)) => {
                    responder.send(resp);
                    None
                }
                Ok(None) => Some(Parked::Listen { sub, responder }),
                Err(err) => {
                    responder.send(err.to_resp());
                    None
                }
            },
            Parked::Pop { list, responder } => match self.pop(&list) {
                Ok(Some(resp)) => {
                    responder.send(resp);
                    None
                }
                Ok(None) => Some(Parked::Pop { list, responder }),
                Err(err) => {
                    responder.send(err.to_resp());
                    None
                }
            },
        }
    }

    fn next_deadline(&self, parked: &[Parked]) -> Instant {
        let state = self.lock();
        let mut deadline = Instant::now() + SWEEP_EVERY;
        for p in parked {
            if let Parked::Listen { sub, .. } = p
                && let Some(s) = state.subs.get(sub)
            {
                deadline = deadline.min(s.next_beep);
            }
        }
        deadline
    }

    fn sweep_stale(&self, parked: &[Parked]) {
        let waiting: Vec<u64> = parked
            .iter()
            .filter_map(|p| match p {
                Parked::Listen { sub, .. } => Some(*sub),
                Parked::Pop { .. } => None,
            })
            .collect();
        self.lock().subs.retain(|id, s| {
            waiting.contains(id) || s.last_poll_at.is_none_or(|at| at.elapsed() < STALE_AFTER)
        });
    }

    fn dispatch(&self, notices: &Receiver<Vec<Notice>>, commands: &Receiver<Command>) {
        let mut parked: Vec<Parked> = Vec::new();
        let mut last_sweep = Instant::now();
        loop {
            let deadline = self.next_deadline(&parked);
            let timeout = crossbeam_channel::at(deadline);
            select! {
                recv(notices) -> batch => {
                    let Ok(batch) = batch else { break };
                    parked = self.fan_out(parked, &batch);
                    let due = |p: &Parked| match p {
                        Parked::Listen { .. } => false,
                        Parked::Pop { list, .. } => batch.contains(&Notice::List(list.clone())),
                    };
                    parked = self.retry(parked, due);
                }
                recv(commands) -> command => match command {
                    Ok(Command::Park(p)) => {
                        if let Some(p) = self.attempt(*p) {
                            parked.push(p);
                        }
                    }
                    Ok(Command::Removed(id)) => {
                        parked = self.retry(parked, |p| matches!(p, Parked::Listen { sub, .. } if *sub == id));
                    }
                    Ok(Command::Stop) | Err(_) => break,
                },
                recv(timeout) -> _ => {
                    let now = Instant::now();
                    let due = |p: &Parked| match p {
                        Parked::Listen { sub, .. } => {
                            self.lock().subs.get(sub).is_none_or(|s| s.next_beep <= now)
                        }
                        Parked::Pop { .. } => false,
                    };
                    parked = self.retry(parked, due);
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep_stale(&parked);
                last_sweep = Instant::now();
            }
        }
        for p in parked {
            let responder = match p {
                Parked::Listen { responder, .. } | Parked::Pop { responder, .. } => responder,
            };
            responder.send(
                ApiError {
                    status: 503,
                    detail: Value::String("Server is shutting down".into()),
                    cause: None,
                }
                .to_resp(),
            );
        }
    }

    /// Answers parked listens of the channels in `batch` from ONE read of
    /// each channel's new events (instead of one query per listener).
    fn fan_out(&self, parked: Vec<Parked>, batch: &[Notice]) -> Vec<Parked> {
        let mut kept = Vec::with_capacity(parked.len());
        let mut waiting: HashMap<String, Vec<(u64, Responder)>> = HashMap::new();
        for p in parked {
            match p {
                Parked::Listen { sub, responder } => {
                    let channel = self.lock().subs.get(&sub).map(|s| s.channel.clone());
                    match channel {
                        Some(ch) if batch.contains(&Notice::Channel(ch.clone())) => {
                            waiting.entry(ch).or_default().push((sub, responder));
                        }
                        Some(_) => kept.push(Parked::Listen { sub, responder }),
                        None => responder.send(not_found(sub).to_resp()),
                    }
                }
                other => kept.push(other),
            }
        }
        for (channel, listeners) in waiting {
            let from = {
                let state = self.lock();
                listeners
                    .iter()
                    .filter_map(|(id, _)| state.subs.get(id).map(|s| s.cursor))
                    .min()
                    .unwrap_or(0)
            };
            let oldest = self.oldest();
            let read = self.store.read(|c| {
                let upto = events::max_seq(c)?;
                let found = events::since(c, &channel, from, upto, &oldest, FAN_OUT_LIMIT)?;
                Ok::<_, StoreError>((upto, found))
            });
            let (upto, found) = match read {
                Ok(r) => r,
                Err(err) => {
                    eprintln!("kci-lite: pub/sub read failed: {err}");
                    kept.extend(
                        listeners
                            .into_iter()
                            .map(|(sub, responder)| Parked::Listen { sub, responder }),
                    );
                    continue;
                }
            };
            let complete = found.len() < usize::try_from(FAN_OUT_LIMIT).unwrap_or(usize::MAX);
            for (sub, responder) in listeners {
                let answer = {
                    let mut state = self.lock();
                    match state.subs.get_mut(&sub) {
                        None => Some(not_found(sub).to_resp()),
                        Some(s) => {
                            let next = found.iter().find(|d| {
                                d.seq > s.cursor
                                    && (s.promiscuous
                                        || d.owner.as_ref().is_none_or(|o| *o == s.user))
                            });
                            match next {
                                Some(d) => {
                                    s.cursor = d.seq;
                                    Some(message(&channel, d.envelope.clone()))
                                }
                                None if complete => {
                                    s.cursor = s.cursor.max(upto);
                                    None
                                }
                                None => None,
                            }
                        }
                    }
                };
                match answer {
                    Some(resp) => responder.send(resp),
                    None if complete => kept.push(Parked::Listen { sub, responder }),
                    None => {
                        if let Some(p) = self.attempt(Parked::Listen { sub, responder }) {
                            kept.push(p);
                        }
                    }
                }
            }
        }
        kept
    }

    /// Attempts every parked request selected by `due`, in order; keeps
    /// the rest and those still waiting.
    fn retry(&self, parked: Vec<Parked>, due: impl Fn(&Parked) -> bool) -> Vec<Parked> {
        let mut kept = Vec::with_capacity(parked.len());
        for p in parked {
            if due(&p) {
                if let Some(p) = self.attempt(p) {
                    kept.push(p);
                }
            } else {
                kept.push(p);
            }
        }
        kept
    }
}
