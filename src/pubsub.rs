//! The broker: live subscriptions, and the long polls (`/listen`, `/pop`)
//! parked until a message is ready. Stored events are read from the event
//! history by sequence number, so live delivery, catch-up after a reconnect
//! and delivery after a restart are one mechanism. A dispatcher thread
//! answers parked requests when the writer reports a commit on their
//! channel or list, or when a keep-alive is due.
//!
//! A subscription may carry conditions on the event data (a [`SubFilter`]),
//! judged by the query language's one [`Matcher`]; each stored event's
//! data is parsed once for every subscription and read that judges it
//! (while a bounded cache keeps it), and only when a filter needs it. A
//! listen may take a batch of messages; a durable subscriber acknowledges
//! implicitly (by listening again) or explicitly ([`Broker::acknowledge`]).
//! A pop may lease its message instead of deleting it: the dispatcher
//! also wakes when a lease ends, to give the message back to its list.
//!
//! The broker knows nothing of HTTP: a parked request is an opaque
//! [`Answer`], called once with its [`Delivery`]; it must return at once
//! (the server hands the write to a thread of its own), so no client can
//! slow the dispatcher down.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use serde_json::{Map, Value, json};

use crate::model::event;
use crate::query::{Filter, Matcher};
use crate::store::events::{self, ChannelEvent};
use crate::store::{Notice, Store, StoreError, queues, subscribers};
use crate::timestamp::{self, Clock, Timestamp};

/// Subscriptions polled once and then not for this long are removed.
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);
/// Stored events read per channel at first for several listeners (one
/// listener reads one at first): most reads serve listeners that are one
/// or a few events behind.
const FIRST_READ: i64 = 16;
/// Most stored events read per channel at once (the read size doubles up
/// to this while listeners find nothing they see).
const READ_LIMIT: i64 = 512;
/// How often the dispatcher looks for stale subscriptions.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Most messages one batch listen may ask for (`/listen?max=`).
pub const MAX_BATCH: usize = 1000;
/// A batch listen takes no further message once the CloudEvent texts it
/// holds reach this many bytes (the rest come with the next listen), so
/// that a batch of large events cannot grow to `MAX_BATCH` times the body
/// limit.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of random token in a lease receipt (hex-encoded).
const RECEIPT_TOKEN_BYTES: usize = 16;

/// Conditions on the `data` of the events a subscription gets: the query
/// language's filter, compiled once at subscribe, with the conditions as
/// the client gave them (key and decoded value, in first-appearance order).
pub struct SubFilter {
    /// The conditions as given, each key once (its last value).
    pub given: Vec<(String, String)>,
    matcher: Matcher,
}

impl SubFilter {
    /// Compiles `filter`; `given` is what the subscriber is shown back.
    pub fn new(given: Vec<(String, String)>, filter: &Filter) -> SubFilter {
        SubFilter {
            given,
            matcher: Matcher::new(filter),
        }
    }

    /// Whether event data `doc` (parsed once by the caller; `None` when it
    /// does not parse) satisfies the conditions: only an object can.
    pub fn matches(&self, doc: Option<&Value>) -> bool {
        doc.is_some_and(|d| d.is_object() && self.matcher.matches(d))
    }
}

impl std::fmt::Debug for SubFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubFilter")
            .field("given", &self.given)
            .finish_non_exhaustive()
    }
}

/// The parsed data of recently judged stored events, by sequence number:
/// listeners that read the same events one by one (each `/listen` on its
/// own worker) share one parse of each. Bounded by the size of the texts
/// it holds; a larger event is parsed for each read instead.
#[derive(Default)]
struct ParsedData {
    by_seq: HashMap<i64, Arc<Option<Value>>>,
    /// Sequence numbers and text sizes, oldest first (eviction order).
    order: std::collections::VecDeque<(i64, usize)>,
    bytes: usize,
}

/// Most bytes of event data text whose parse [`ParsedData`] keeps.
const PARSED_KEEP_BYTES: usize = 8 * 1024 * 1024;
/// Events with a larger data text are not kept parsed.
const PARSED_MAX_EVENT_BYTES: usize = 256 * 1024;

impl ParsedData {
    fn get(&self, seq: i64) -> Option<Arc<Option<Value>>> {
        self.by_seq.get(&seq).cloned()
    }

    fn keep(&mut self, seq: i64, size: usize, doc: &Arc<Option<Value>>) {
        if size > PARSED_MAX_EVENT_BYTES || self.by_seq.contains_key(&seq) {
            return;
        }
        while self.bytes + size > PARSED_KEEP_BYTES {
            let Some((old, old_size)) = self.order.pop_front() else {
                break;
            };
            self.by_seq.remove(&old);
            self.bytes -= old_size;
        }
        self.by_seq.insert(seq, Arc::clone(doc));
        self.order.push_back((seq, size));
        self.bytes += size;
    }
}

/// How a new subscription is made (besides its channel and user).
#[derive(Clone, Debug, Default)]
pub struct SubscribeOptions {
    /// See every event of the channel, not only the user's and unowned ones.
    pub promiscuous: bool,
    /// Durable subscriber id, if any.
    pub subscriber_id: Option<String>,
    /// Conditions on the event data, if any.
    pub filter: Option<Arc<SubFilter>>,
    /// The saved position moves only on [`Broker::acknowledge`] (needs a
    /// `subscriber_id`), not at each listen.
    pub explicit: bool,
}

/// A live subscription.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: u64,
    pub channel: String,
    pub user: String,
    /// Sees every event of the channel, not only its user's and unowned ones.
    pub promiscuous: bool,
    pub created: Timestamp,
    /// When it was last listened to (`None` before the first listen).
    pub last_poll: Option<Timestamp>,
    /// Durable subscriber id, if any.
    pub subscriber_id: Option<String>,
    /// Conditions on the event data, if any.
    pub filter: Option<Arc<SubFilter>>,
    /// Acknowledged only by [`Broker::acknowledge`].
    pub explicit: bool,
    /// Highest sequence number delivered or passed over.
    cursor: i64,
    /// Highest sequence number acknowledged (the cursor at the last listen,
    /// or the last explicit acknowledgement).
    acked: i64,
    /// When the next `BEEP` is due; never without keep-alives.
    next_beep: Option<Instant>,
    last_poll_at: Option<Instant>,
}

impl Subscription {
    /// The highest sequence number it was handed or passed over.
    pub fn position(&self) -> i64 {
        self.cursor
    }

    /// Whether this subscription gets `event`: every event of its channel
    /// when promiscuous, else unowned events and its user's own; with
    /// conditions, only those whose data satisfies them. `data` gives the
    /// event's parsed data (`None`: not JSON); it is called only when a
    /// filter needs it, after the owner filter passed the event.
    pub fn sees<'a>(&self, event: &ChannelEvent, data: impl FnOnce() -> Option<&'a Value>) -> bool {
        let owner_ok = self.promiscuous || event.owner.as_ref().is_none_or(|o| *o == self.user);
        owner_ok && self.filter.as_ref().is_none_or(|f| f.matches(data()))
    }

    /// Moves the cursor over `batch` — the channel's events in sequence
    /// order, none missing from some point at or before the cursor up to
    /// `reached` — and returns the positions in `batch` of the first `max`
    /// events it sees (`data(i)`: the parsed data of `batch[i]`). The
    /// cursor stops at the last event taken when `max` are taken before the
    /// end; otherwise it passes everything read.
    fn advance<'a>(
        &mut self,
        batch: &[ChannelEvent],
        data: &dyn Fn(usize) -> Option<&'a Value>,
        reached: i64,
        max: usize,
    ) -> Vec<usize> {
        let mut taken = Vec::new();
        for (i, event) in batch.iter().enumerate() {
            if event.seq <= self.cursor {
                continue;
            }
            if taken.len() == max {
                return taken;
            }
            if self.sees(event, || data(i)) {
                taken.push(i);
                self.cursor = event.seq;
            }
        }
        self.cursor = self.cursor.max(reached);
        taken
    }

    fn beep_due(&self, now: Instant) -> bool {
        self.next_beep.is_some_and(|due| now >= due)
    }
}

/// What a listen or pop is answered with.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// A message on `channel`: a stored event, or the keep-alive `BEEP`
    /// (CloudEvent text, `_sequence_id` included for stored events).
    Message { channel: String, envelope: String },
    /// The messages on `channel` a batch listen gets, in order (one to its
    /// `max`; a `BEEP` only alone).
    Batch {
        channel: String,
        envelopes: Vec<String>,
    },
    /// The oldest message of a push list (its envelope text).
    Popped(String),
    /// The request cannot be answered with a message.
    Failed(BrokerError),
}

/// Why the broker refused or ended a request.
#[derive(Clone, Debug, PartialEq)]
pub enum BrokerError {
    /// No live subscription has this id (never made, unsubscribed, or
    /// removed as stale).
    NotFound(u64),
    /// The subscription belongs to another user.
    NotOwner { id: u64, user: String },
    /// The durable subscriber id belongs to another user.
    SubscriberTaken(String),
    /// The user has as many live subscriptions as it may.
    TooManySubscriptions { user: String, limit: usize },
    /// The broker is stopping; parked requests end with this.
    ShuttingDown,
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for BrokerError {
    fn from(err: StoreError) -> BrokerError {
        BrokerError::Store(err)
    }
}

/// Why an explicit acknowledgement was refused (nothing changed).
#[derive(Clone, Debug, PartialEq)]
pub enum AckError {
    /// The subscription is unknown, another user's, or the store failed.
    Broker(BrokerError),
    /// The subscription does not acknowledge explicitly.
    NotExplicit(u64),
    /// `seq` is past what the subscription delivered or skipped (`passed`).
    Beyond { seq: i64, passed: i64 },
}

impl From<BrokerError> for AckError {
    fn from(err: BrokerError) -> AckError {
        AckError::Broker(err)
    }
}

impl From<StoreError> for AckError {
    fn from(err: StoreError) -> AckError {
        AckError::Broker(BrokerError::Store(err))
    }
}

/// Called once with what a parked request gets; must not block.
pub type Answer = Box<dyn FnOnce(Delivery) + Send>;

/// Settings of the broker.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// A listener waiting this long gets a `BEEP`; `None`: never (it
    /// waits for a message only).
    pub keep_alive: Option<Duration>,
    /// The CloudEvent `source` of a `BEEP`.
    pub source: String,
    /// Events older than this are not delivered.
    pub history_ttl_secs: u64,
    /// Most live subscriptions one user may hold.
    pub max_subscriptions_per_user: usize,
}

enum Parked {
    /// `max`: a batch listen of at most that many messages.
    Listen {
        sub: u64,
        max: Option<usize>,
        answer: Answer,
    },
    /// `lease`: leased (hidden for that long), not deleted.
    Pop {
        list: String,
        lease: Option<Duration>,
        answer: Answer,
    },
}

impl Parked {
    fn answer(self, delivery: Delivery) {
        let (Parked::Listen { answer, .. } | Parked::Pop { answer, .. }) = self;
        answer(delivery);
    }
}

enum Command {
    Park(Parked),
    /// A subscription was removed: its parked listens end.
    Removed(u64),
    /// A lease was taken: the dispatcher's next wake-up may be sooner.
    Leased,
    Stop,
}

/// Live subscriptions and the dispatcher that answers parked requests.
pub struct Broker {
    store: Arc<Store>,
    subs: Mutex<HashMap<u64, Subscription>>,
    commands: Sender<Command>,
    config: BrokerConfig,
    clock: Arc<dyn Clock>,
    dispatcher: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// No lease ends before this (milliseconds since the epoch); `None`:
    /// no lease holds. Never later than the earliest lease's end.
    lease_due: Mutex<Option<i64>>,
    /// Event data parsed for conditions, shared by all reads.
    parsed: Mutex<ParsedData>,
}

impl Broker {
    /// A broker without its dispatcher thread (see [`Broker::start`]).
    fn new(
        store: Arc<Store>,
        config: BrokerConfig,
        clock: Arc<dyn Clock>,
    ) -> (Broker, Receiver<Command>) {
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let broker = Broker {
            store,
            subs: Mutex::new(HashMap::new()),
            commands,
            config,
            clock,
            dispatcher: Mutex::new(None),
            lease_due: Mutex::new(None),
            parsed: Mutex::new(ParsedData::default()),
        };
        (broker, command_rx)
    }

    /// Starts the dispatcher; `notices` are the writer's commit notices.
    pub fn start(
        store: Arc<Store>,
        notices: Receiver<Vec<Notice>>,
        config: BrokerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Broker>, StoreError> {
        let (broker, command_rx) = Broker::new(store, config, clock);
        // Leases taken before a restart still end, and wake the dispatcher.
        *broker.due_lock() = broker.store.read(queues::next_lease_end)?;
        let broker = Arc::new(broker);
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

    /// Stops the dispatcher; parked requests end with `ShuttingDown`.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
        let handle = self.dispatcher.lock().ok().and_then(|mut d| d.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Subscription>> {
        // A poisoned lock only means a panic elsewhere; the map is intact.
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parsed data of `event` (`None` inside: not JSON), parsed once
    /// for every subscription and read that judges it while it is kept.
    fn parsed_data(&self, event: &ChannelEvent) -> Arc<Option<Value>> {
        let lock = || self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(doc) = lock().get(event.seq) {
            return doc;
        }
        // Parsed outside the lock: a rare second parse by a concurrent read
        // costs less than making every read wait for this one.
        let doc = Arc::new(serde_json::from_str(&event.data).ok());
        lock().keep(event.seq, event.data.len(), &doc);
        doc
    }

    fn due_lock(&self) -> MutexGuard<'_, Option<i64>> {
        self.lease_due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wall-clock now in milliseconds since the epoch (lease times).
    fn now_ms(&self) -> i64 {
        self.clock.now().and_utc().timestamp_millis()
    }

    fn oldest(&self) -> Timestamp {
        self.clock.now() - timestamp::span_secs(self.config.history_ttl_secs)
    }

    /// Subscribes `user` to `channel`. A new subscription starts after the
    /// newest stored event; a durable one (`subscriber_id`) resumes after
    /// the last event its previous subscription acknowledged.
    pub fn subscribe(
        &self,
        channel: &str,
        user: &str,
        promiscuous: bool,
        subscriber_id: Option<String>,
    ) -> Result<Subscription, BrokerError> {
        let options = SubscribeOptions {
            promiscuous,
            subscriber_id,
            ..SubscribeOptions::default()
        };
        self.subscribe_with(channel, user, options)
    }

    /// Subscribes `user` to `channel` as `options` say (see
    /// [`Broker::subscribe`]); conditions and the acknowledgement mode are
    /// those of this subscribe, whatever a durable subscriber used before.
    pub fn subscribe_with(
        &self,
        channel: &str,
        user: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, BrokerError> {
        let SubscribeOptions {
            promiscuous,
            subscriber_id,
            filter,
            explicit,
        } = options;
        let (channel_name, username, sid) =
            (channel.to_string(), user.to_string(), subscriber_id.clone());
        let (id, position) = self.store.write(move |c, _| {
            let id = subscribers::next_subscription_id(c)?;
            let Some(sid) = sid else {
                return Ok::<_, BrokerError>((id, events::max_seq(c)?));
            };
            let position = match subscribers::get(c, &sid)? {
                Some(saved) if saved.username != username => {
                    return Err(BrokerError::SubscriberTaken(sid));
                }
                Some(saved) => saved.position,
                None => events::max_seq(c)?,
            };
            let state = subscribers::Subscriber {
                username,
                channel: channel_name,
                position,
            };
            subscribers::put(c, &sid, &state)?;
            Ok((id, position))
        })?;
        let sub = Subscription {
            id,
            channel: channel.to_string(),
            user: user.to_string(),
            promiscuous,
            created: self.clock.now(),
            last_poll: None,
            subscriber_id,
            filter,
            explicit,
            cursor: position,
            acked: position,
            next_beep: self.next_beep(self.clock.instant()),
            last_poll_at: None,
        };
        let mut subs = self.lock();
        let limit = self.config.max_subscriptions_per_user;
        if subs.values().filter(|s| s.user == user).count() >= limit {
            return Err(BrokerError::TooManySubscriptions {
                user: user.to_string(),
                limit,
            });
        }
        subs.insert(id, sub.clone());
        Ok(sub)
    }

    /// The subscription `id` if `user` owns it.
    fn owned(&self, id: u64, user: &str) -> Result<Subscription, BrokerError> {
        let subs = self.lock();
        let sub = subs.get(&id).ok_or(BrokerError::NotFound(id))?;
        if sub.user != user {
            return Err(BrokerError::NotOwner {
                id,
                user: user.to_string(),
            });
        }
        Ok(sub.clone())
    }

    /// Removes a subscription (a durable position is kept); its parked
    /// listens end with `NotFound`.
    pub fn unsubscribe(&self, id: u64, user: &str) -> Result<(), BrokerError> {
        self.owned(id, user)?;
        self.lock().remove(&id);
        let _ = self.commands.send(Command::Removed(id));
        Ok(())
    }

    /// How many subscriptions are live.
    pub fn subscription_count(&self) -> usize {
        self.lock().len()
    }

    /// Every live subscription, by id.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let mut subs: Vec<Subscription> = self.lock().values().cloned().collect();
        subs.sort_by_key(|s| s.id);
        subs
    }

    /// Starts a listen: acknowledges what the previous one delivered
    /// (durable subscribers save it, unless they acknowledge explicitly),
    /// then gives the next message — or with `max`, a batch of up to that
    /// many — if one is ready; `None` means "park me"
    /// ([`Broker::park_listen`]).
    pub fn listen(
        &self,
        id: u64,
        user: &str,
        max: Option<usize>,
    ) -> Result<Option<Delivery>, BrokerError> {
        self.owned(id, user)?;
        let ack = {
            let mut subs = self.lock();
            let sub = subs.get_mut(&id).ok_or(BrokerError::NotFound(id))?;
            sub.last_poll = Some(self.clock.now());
            sub.last_poll_at = Some(self.clock.instant());
            if sub.explicit {
                None
            } else {
                let changed = sub.cursor > sub.acked;
                sub.acked = sub.cursor;
                match (&sub.subscriber_id, changed) {
                    (Some(sid), true) => Some((sid.clone(), sub.acked)),
                    _ => None,
                }
            }
        };
        if let Some((sid, position)) = ack {
            self.store
                .write(move |c, _| subscribers::acknowledge(c, &sid, position))?;
        }
        let mut answers = self.next_messages(vec![(id, max)])?;
        match answers.pop() {
            Some((_, delivery)) => Ok(delivery),
            None => Err(BrokerError::NotFound(id)),
        }
    }

    /// Acknowledges, for an explicit durable subscriber, every stored event
    /// up to and including `seq`: its saved position moves there (never
    /// back), durably before this returns.
    pub fn acknowledge(&self, id: u64, user: &str, seq: i64) -> Result<(), AckError> {
        let sub = self.owned(id, user)?;
        let Some(sid) = sub.subscriber_id.filter(|_| sub.explicit) else {
            return Err(AckError::NotExplicit(id));
        };
        if seq > sub.cursor {
            return Err(AckError::Beyond {
                seq,
                passed: sub.cursor,
            });
        }
        if seq <= sub.acked {
            return Ok(());
        }
        self.store
            .write(move |c, _| subscribers::acknowledge(c, &sid, seq))?;
        if let Some(sub) = self.lock().get_mut(&id) {
            sub.acked = sub.acked.max(seq);
        }
        Ok(())
    }

    /// The next message for each of `wants` (subscription ids, all on one
    /// channel or gone, each with the batch size it asked for, if any): the
    /// stored events it sees (one, or up to its `max`), a `BEEP` when its
    /// keep-alive is due and nothing else is, or `None`. This is the one
    /// delivery rule, for one listener or many: one read of the channel
    /// serves them all, and each event's data is parsed at most once for
    /// all their conditions.
    fn next_messages(
        &self,
        wants: Vec<(u64, Option<usize>)>,
    ) -> Result<Vec<(u64, Option<Delivery>)>, StoreError> {
        struct Want {
            id: u64,
            max: Option<usize>,
            got: Vec<String>,
            bytes: usize,
        }
        impl Want {
            fn room(&self) -> usize {
                self.max.unwrap_or(1).clamp(1, MAX_BATCH) - self.got.len()
            }
            /// A batch holds at least one message, and no more once its
            /// texts reach [`MAX_BATCH_BYTES`].
            fn full(&self) -> bool {
                self.bytes >= MAX_BATCH_BYTES
            }
        }
        let most = wants
            .iter()
            .map(|(_, max)| max.unwrap_or(1))
            .max()
            .unwrap_or(1);
        // One listener without conditions is most often one event behind;
        // with conditions it usually passes several before it finds one.
        let filtered = {
            let subs = self.lock();
            wants
                .iter()
                .any(|(id, _)| subs.get(id).is_some_and(|s| s.filter.is_some()))
        };
        let first = if wants.len() == 1 && !filtered {
            1
        } else {
            FIRST_READ
        };
        let mut limit = i64::try_from(most)
            .unwrap_or(READ_LIMIT)
            .clamp(first, READ_LIMIT);
        let mut done = Vec::with_capacity(wants.len());
        let mut waiting: Vec<Want> = wants
            .into_iter()
            .map(|(id, max)| Want {
                id,
                max,
                got: Vec::new(),
                bytes: 0,
            })
            .collect();
        let mut channel = None;
        while !waiting.is_empty() {
            let from = {
                let subs = self.lock();
                let mut from = i64::MAX;
                waiting.retain(|w| match subs.get(&w.id) {
                    Some(s) => {
                        channel.get_or_insert_with(|| s.channel.clone());
                        from = from.min(s.cursor);
                        true
                    }
                    None => {
                        done.push((w.id, Some(Delivery::Failed(BrokerError::NotFound(w.id)))));
                        false
                    }
                });
                if waiting.is_empty() {
                    break;
                }
                from
            };
            let Some(channel) = channel.clone() else {
                break;
            };
            let oldest = self.oldest();
            let (upto, batch) = self.store.read(|c| {
                let upto = events::max_seq(c)?;
                let batch = events::since(c, &channel, from, upto, &oldest, limit)?;
                Ok::<_, StoreError>((upto, batch))
            })?;
            let complete = batch.len() < usize::try_from(limit).unwrap_or(usize::MAX);
            limit = (limit * 2).min(READ_LIMIT);
            let reached = match batch.last() {
                Some(last) if !complete => last.seq,
                _ => upto,
            };
            // Built once per event, however many listeners get or judge it.
            let texts: Vec<OnceCell<String>> = batch.iter().map(|_| OnceCell::new()).collect();
            let docs: Vec<OnceCell<Arc<Option<Value>>>> =
                batch.iter().map(|_| OnceCell::new()).collect();
            let data = |i: usize| {
                docs[i]
                    .get_or_init(|| self.parsed_data(&batch[i]))
                    .as_ref()
                    .as_ref()
            };
            let now = self.clock.instant();
            let mut subs = self.lock();
            let mut again = Vec::new();
            for mut want in waiting {
                let Some(sub) = subs.get_mut(&want.id) else {
                    done.push((
                        want.id,
                        Some(Delivery::Failed(BrokerError::NotFound(want.id))),
                    ));
                    continue;
                };
                for i in sub.advance(&batch, &data, reached, want.room()) {
                    if want.full() {
                        // Over the byte bound: this event and those after
                        // it are the next listen's.
                        sub.cursor = batch[i].seq - 1;
                        break;
                    }
                    let text = texts[i].get_or_init(|| batch[i].cloud_event()).clone();
                    want.bytes += text.len();
                    want.got.push(text);
                }
                if want.room() > 0 && !want.full() && !complete {
                    again.push(want); // more stored events to look through
                } else if !want.got.is_empty() {
                    let delivery = deliver(&channel, want.max, want.got);
                    done.push((want.id, Some(delivery)));
                } else if sub.beep_due(now) {
                    sub.next_beep = self.next_beep(now);
                    done.push((
                        want.id,
                        Some(deliver(&channel, want.max, vec![self.beep()])),
                    ));
                } else {
                    done.push((want.id, None));
                }
            }
            waiting = again;
        }
        Ok(done)
    }

    /// When a keep-alive counted from `now` is due, if keep-alives are on.
    fn next_beep(&self, now: Instant) -> Option<Instant> {
        self.config.keep_alive.map(|period| now + period)
    }

    /// The text of a keep-alive `BEEP`.
    fn beep(&self) -> String {
        event::envelope(
            &self.config.source,
            event::DEFAULT_TYPE,
            json!("BEEP"),
            Map::new(),
        )
        .to_string()
    }

    /// Parks a listen (of one message, or a batch of up to `max`) until a
    /// message is ready; `answer` gets it.
    pub fn park_listen(&self, sub: u64, max: Option<usize>, answer: Answer) {
        self.park(Parked::Listen { sub, max, answer });
    }

    /// Parks a pop (leasing for `lease`, if given) until a message of
    /// `list` is available; `answer` gets it.
    pub fn park_pop(&self, list: String, lease: Option<Duration>, answer: Answer) {
        self.park(Parked::Pop {
            list,
            lease,
            answer,
        });
    }

    fn park(&self, parked: Parked) {
        if let Err(err) = self.commands.send(Command::Park(parked))
            && let Command::Park(p) = err.into_inner()
        {
            // The dispatcher is gone: end the request rather than drop it.
            p.answer(Delivery::Failed(BrokerError::ShuttingDown));
        }
    }

    /// Takes the oldest available message of `list` (its envelope text):
    /// deletes it, or with `lease` hides it for that long and adds its
    /// `_receipt` and `_deliveries` (see [`Broker::acknowledge_receipt`]).
    pub fn pop(&self, list: &str, lease: Option<Duration>) -> Result<Option<String>, BrokerError> {
        let list = list.to_string();
        let now_ms = self.now_ms();
        let Some(lease) = lease else {
            return Ok(self
                .store
                .write(move |c, _| queues::pop(c, &list, now_ms))?);
        };
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let until_ms = now_ms.saturating_add(lease_ms.max(1));
        let token = receipt_token();
        let leased = self
            .store
            .write(move |c, _| queues::lease(c, &list, now_ms, until_ms, &token))?;
        if leased.is_some() {
            let mut due = self.due_lock();
            if due.is_none_or(|d| until_ms < d) {
                *due = Some(until_ms);
                drop(due);
                let _ = self.commands.send(Command::Leased);
            }
        }
        Ok(leased)
    }

    /// Acknowledges the leased message of `list` whose receipt is
    /// `receipt`, deleting it; `false`: no lease of `list` holds with that
    /// receipt (unknown, acknowledged or ended), and nothing changed.
    pub fn acknowledge_receipt(&self, list: &str, receipt: &str) -> Result<bool, BrokerError> {
        let (list, receipt) = (list.to_string(), receipt.to_string());
        let now_ms = self.now_ms();
        Ok(self
            .store
            .write(move |c, _| queues::acknowledge(c, &list, &receipt, now_ms))?)
    }

    /// Gives back to their lists the messages whose leases have ended (the
    /// commit's notices wake the poppers waiting on them), and notes when
    /// the next lease ends.
    fn release_leases(&self) {
        let now_ms = self.now_ms();
        if self.due_lock().is_none_or(|d| d > now_ms) {
            return;
        }
        // Leases taken from here on lower `lease_due` again themselves.
        *self.due_lock() = None;
        let next = self.store.write(move |c, out| {
            queues::release_ended(c, out, now_ms)?;
            queues::next_lease_end(c)
        });
        let mut due = self.due_lock();
        match next {
            Ok(next) => {
                *due = match (*due, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Err(err) => {
                // Retried at the next sweep, not in a busy loop.
                eprintln!("kci-lite: releasing ended leases failed: {err}");
                let retry = i64::try_from(SWEEP_EVERY.as_millis()).unwrap_or(i64::MAX);
                *due = Some(due.unwrap_or(i64::MAX).min(now_ms.saturating_add(retry)));
            }
        }
    }

    fn dispatch(&self, notices: &Receiver<Vec<Notice>>, commands: &Receiver<Command>) {
        let mut parked: Vec<Parked> = Vec::new();
        let mut last_sweep = self.clock.instant();
        loop {
            let wait = self
                .next_deadline(&parked)
                .saturating_duration_since(self.clock.instant());
            select! {
                recv(notices) -> batch => {
                    let Ok(batch) = batch else { break };
                    parked = self.committed(parked, &batch);
                }
                recv(commands) -> command => match command {
                    Ok(Command::Park(p)) => parked = self.answer_ready(parked, vec![p]),
                    Ok(Command::Removed(id)) => parked = self.removed(parked, id),
                    Ok(Command::Leased) => {}
                    Ok(Command::Stop) | Err(_) => break,
                },
                default(wait) => parked = self.keep_alive(parked),
            }
            self.release_leases();
            let now = self.clock.instant();
            if now.saturating_duration_since(last_sweep) >= SWEEP_EVERY {
                self.sweep_stale(&parked, now);
                last_sweep = now;
            }
        }
        for p in parked {
            p.answer(Delivery::Failed(BrokerError::ShuttingDown));
        }
    }

    /// When the dispatcher must next wake up without a commit: the
    /// earliest keep-alive of a parked listen, the end of the next lease,
    /// or the next sweep.
    fn next_deadline(&self, parked: &[Parked]) -> Instant {
        let now = self.clock.instant();
        let mut deadline = now + SWEEP_EVERY;
        if let Some(due) = *self.due_lock() {
            let ms = u64::try_from(due.saturating_sub(self.now_ms())).unwrap_or(0);
            deadline = deadline.min(now + Duration::from_millis(ms));
        }
        let subs = self.lock();
        for p in parked {
            if let Parked::Listen { sub, .. } = p
                && let Some(due) = subs.get(sub).and_then(|s| s.next_beep)
            {
                deadline = deadline.min(due);
            }
        }
        deadline
    }

    /// A commit touched the channels and lists in `batch`: answers the
    /// parked requests it may have made ready.
    fn committed(&self, parked: Vec<Parked>, batch: &[Notice]) -> Vec<Parked> {
        let subs = self.lock();
        let (due, mut kept): (Vec<Parked>, Vec<Parked>) =
            parked.into_iter().partition(|p| match p {
                Parked::Listen { sub, .. } => subs
                    .get(sub)
                    .is_none_or(|s| batch.contains(&Notice::Channel(s.channel.clone()))),
                Parked::Pop { list, .. } => batch.contains(&Notice::List(list.clone())),
            });
        drop(subs);
        kept.extend(self.answer_ready(Vec::new(), due));
        kept
    }

    /// A keep-alive may be due: answers the parked listens whose is.
    fn keep_alive(&self, parked: Vec<Parked>) -> Vec<Parked> {
        let now = self.clock.instant();
        let subs = self.lock();
        let (due, mut kept): (Vec<Parked>, Vec<Parked>) =
            parked.into_iter().partition(|p| match p {
                Parked::Listen { sub, .. } => subs.get(sub).is_none_or(|s| s.beep_due(now)),
                Parked::Pop { .. } => false,
            });
        drop(subs);
        kept.extend(self.answer_ready(Vec::new(), due));
        kept
    }

    /// Subscription `id` was removed: its parked listens end.
    fn removed(&self, parked: Vec<Parked>, id: u64) -> Vec<Parked> {
        let mut kept = Vec::with_capacity(parked.len());
        for p in parked {
            match p {
                Parked::Listen { sub, answer, .. } if sub == id => {
                    answer(Delivery::Failed(BrokerError::NotFound(id)));
                }
                other => kept.push(other),
            }
        }
        kept
    }

    /// Answers those of `candidates` that have a message now (listens of
    /// one channel from one read), appending the rest to `kept`.
    fn answer_ready(&self, mut kept: Vec<Parked>, candidates: Vec<Parked>) -> Vec<Parked> {
        type Waiting = Vec<(u64, Option<usize>, Answer)>;
        let mut listens: HashMap<String, Waiting> = HashMap::new();
        for p in candidates {
            match p {
                Parked::Listen { sub, max, answer } => {
                    let channel = self.lock().get(&sub).map(|s| s.channel.clone());
                    match channel {
                        Some(channel) => {
                            listens.entry(channel).or_default().push((sub, max, answer))
                        }
                        None => answer(Delivery::Failed(BrokerError::NotFound(sub))),
                    }
                }
                Parked::Pop {
                    list,
                    lease,
                    answer,
                } => match self.pop(&list, lease) {
                    Ok(Some(text)) => answer(Delivery::Popped(text)),
                    Ok(None) => kept.push(Parked::Pop {
                        list,
                        lease,
                        answer,
                    }),
                    Err(err) => answer(Delivery::Failed(err)),
                },
            }
        }
        for (_, group) in listens {
            let wants = group.iter().map(|(id, max, _)| (*id, *max)).collect();
            let mut answers: HashMap<u64, (Option<usize>, Answer)> = group
                .into_iter()
                .map(|(id, max, answer)| (id, (max, answer)))
                .collect();
            match self.next_messages(wants) {
                Ok(found) => {
                    for (id, delivery) in found {
                        let Some((max, answer)) = answers.remove(&id) else {
                            continue;
                        };
                        match delivery {
                            Some(delivery) => answer(delivery),
                            None => kept.push(Parked::Listen {
                                sub: id,
                                max,
                                answer,
                            }),
                        }
                    }
                }
                Err(err) => {
                    // Keep them parked: the next commit or keep-alive retries.
                    eprintln!("kci-lite: pub/sub read failed: {err}");
                }
            }
            kept.extend(
                answers
                    .into_iter()
                    .map(|(sub, (max, answer))| Parked::Listen { sub, max, answer }),
            );
        }
        kept
    }

    /// Removes subscriptions nobody listened to for `STALE_AFTER` (those
    /// with a parked listen are in use).
    fn sweep_stale(&self, parked: &[Parked], now: Instant) {
        let waiting: Vec<u64> = parked
            .iter()
            .filter_map(|p| match p {
                Parked::Listen { sub, .. } => Some(*sub),
                Parked::Pop { .. } => None,
            })
            .collect();
        self.lock().retain(|id, s| {
            waiting.contains(id)
                || s.last_poll_at
                    .is_none_or(|at| now.saturating_duration_since(at) < STALE_AFTER)
        });
    }
}

/// What a listen that asked for `max` messages (or one) gets.
fn deliver(channel: &str, max: Option<usize>, mut envelopes: Vec<String>) -> Delivery {
    match (max, envelopes.pop()) {
        (None, Some(envelope)) if envelopes.is_empty() => Delivery::Message {
            channel: channel.to_string(),
            envelope,
        },
        (_, last) => {
            envelopes.extend(last);
            Delivery::Batch {
                channel: channel.to_string(),
                envelopes,
            }
        }
    }
}

/// A fresh random token for a lease receipt.
fn receipt_token() -> String {
    let bytes: [u8; RECEIPT_TOKEN_BYTES] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Event;
    use crate::store::testing::temp_store;
    use crate::timestamp::ManualClock;
    use serde_json::Value;

    const KEEP_ALIVE: Duration = Duration::from_secs(45);

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
        clock: Arc<ManualClock>,
        broker: Broker,
        /// What parked requests were answered with, in order.
        answered: Arc<Mutex<Vec<(&'static str, Delivery)>>>,
    }

    fn fixture() -> Fixture {
        fixture_with(Some(KEEP_ALIVE))
    }

    fn fixture_with(keep_alive: Option<Duration>) -> Fixture {
        let (dir, store) = temp_store();
        let store = Arc::new(store);
        let clock = Arc::new(ManualClock::new());
        let config = BrokerConfig {
            keep_alive,
            source: "https://test/".into(),
            history_ttl_secs: 3600,
            max_subscriptions_per_user: 8,
        };
        let (broker, _commands) = Broker::new(Arc::clone(&store), config, clock.clone());
        Fixture {
            _dir: dir,
            store,
            clock,
            broker,
            answered: Arc::default(),
        }
    }

    impl Fixture {
        fn publish(&self, channel: &str, owner: Option<&str>, data: Value) -> i64 {
            let event = Event::new(channel, owner, data, "https://test/");
            self.store
                .write(move |c, out| events::append(c, out, &event))
                .expect("publish")
        }

        /// A parked listen whose answer is recorded under `name`.
        fn parked(&self, name: &'static str, sub: u64) -> Parked {
            let answered = Arc::clone(&self.answered);
            Parked::Listen {
                sub,
                max: None,
                answer: Box::new(move |d| answered.lock().expect("lock").push((name, d))),
            }
        }

        fn answers(&self) -> Vec<(&'static str, Delivery)> {
            std::mem::take(&mut *self.answered.lock().expect("lock"))
        }
    }

    fn data_of(delivery: &Delivery) -> Value {
        match delivery {
            Delivery::Message { envelope, .. } => {
                serde_json::from_str::<Value>(envelope).expect("envelope")["data"].clone()
            }
            other => panic!("not a message: {other:?}"),
        }
    }

    fn stored(seq: i64, owner: Option<&str>) -> ChannelEvent {
        ChannelEvent {
            seq,
            owner: owner.map(str::to_string),
            envelope: format!("{{\"seq\": {seq}}}"),
            data: "null".into(),
        }
    }

    fn no_data(_: usize) -> Option<&'static Value> {
        None
    }

    #[test]
    fn a_subscription_sees_its_users_and_unowned_events_unless_promiscuous() {
        let f = fixture();
        let mut sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let sees = |sub: &Subscription, e: ChannelEvent| sub.sees(&e, || None);
        assert!(sees(&sub, stored(1, None)));
        assert!(sees(&sub, stored(1, Some("ann"))));
        assert!(!sees(&sub, stored(1, Some("bob"))));
        sub.promiscuous = true;
        assert!(sees(&sub, stored(1, Some("bob"))));
    }

    #[test]
    fn advance_takes_the_first_seen_event_or_moves_to_what_was_read() {
        let f = fixture();
        let mut sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let batch = [
            stored(1, Some("bob")),
            stored(2, Some("ann")),
            stored(3, None),
        ];
        assert_eq!(sub.advance(&batch, &no_data, 9, 1), [1]);
        assert_eq!(sub.advance(&batch, &no_data, 9, 1), [2]);
        assert!(sub.advance(&batch, &no_data, 9, 1).is_empty());
        assert_eq!(
            sub.cursor, 9,
            "nothing seen: the cursor passes what was read"
        );
        let others = [stored(10, Some("bob"))];
        assert!(sub.advance(&others, &no_data, 10, 1).is_empty());
        assert_eq!(sub.cursor, 10);
    }

    #[test]
    fn listen_delivers_in_order_then_beeps_only_when_due() {
        let f = fixture();
        let sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        f.publish("ch", Some("ann"), json!({"n": 1}));
        f.publish("ch", Some("bob"), json!({"n": 2})); // not ann's
        f.publish("other", None, json!({"n": 3})); // another channel
        f.publish("ch", None, json!({"n": 4}));
        let first = f
            .broker
            .listen(sub.id, "ann", None)
            .expect("listen")
            .expect("ready");
        assert_eq!(data_of(&first), json!({"n": 1}));
        let next = f
            .broker
            .listen(sub.id, "ann", None)
            .expect("listen")
            .expect("ready");
        assert_eq!(data_of(&next), json!({"n": 4}));
        assert_eq!(
            f.broker.listen(sub.id, "ann", None).expect("listen"),
            None,
            "park"
        );
        f.clock.advance(KEEP_ALIVE);
        let beep = f
            .broker
            .listen(sub.id, "ann", None)
            .expect("listen")
            .expect("beep");
        assert_eq!(data_of(&beep), json!("BEEP"));
        assert_eq!(f.broker.listen(sub.id, "ann", None).expect("listen"), None);
    }

    #[test]
    fn listen_checks_the_subscription_and_its_owner() {
        let f = fixture();
        let sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        assert_eq!(
            f.broker.listen(sub.id + 1, "ann", None),
            Err(BrokerError::NotFound(sub.id + 1))
        );
        assert_eq!(
            f.broker.listen(sub.id, "bob", None),
            Err(BrokerError::NotOwner {
                id: sub.id,
                user: "bob".into()
            })
        );
        assert_eq!(
            f.broker.unsubscribe(sub.id, "bob"),
            Err(BrokerError::NotOwner {
                id: sub.id,
                user: "bob".into()
            })
        );
        f.broker.unsubscribe(sub.id, "ann").expect("unsubscribe");
        assert_eq!(
            f.broker.listen(sub.id, "ann", None),
            Err(BrokerError::NotFound(sub.id))
        );
    }

    #[test]
    fn one_commit_answers_every_parked_listener_that_sees_it() {
        let f = fixture();
        let ann = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let bob = f.broker.subscribe("ch", "bob", false, None).expect("sub");
        let all = f.broker.subscribe("ch", "cid", true, None).expect("sub");
        let elsewhere = f
            .broker
            .subscribe("other", "ann", false, None)
            .expect("sub");
        let mut parked = vec![
            f.parked("ann", ann.id),
            f.parked("bob", bob.id),
            f.parked("all", all.id),
            f.parked("elsewhere", elsewhere.id),
        ];
        f.publish("ch", Some("ann"), json!({"n": 1}));
        parked = f.broker.committed(parked, &[Notice::Channel("ch".into())]);
        let answers = f.answers();
        let names: Vec<&str> = answers.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["ann", "all"]);
        assert!(answers.iter().all(|(_, d)| data_of(d) == json!({"n": 1})));
        assert_eq!(parked.len(), 2, "bob and elsewhere still wait");
        // bob's cursor moved past the event it does not see
        f.publish("ch", None, json!({"n": 2}));
        parked = f.broker.committed(parked, &[Notice::Channel("ch".into())]);
        let answers = f.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, "bob");
        assert_eq!(data_of(&answers[0].1), json!({"n": 2}));
        assert_eq!(parked.len(), 1);
    }

    #[test]
    fn a_listener_with_many_unseen_events_reads_past_them() {
        let f = fixture();
        let sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let n = READ_LIMIT + 10;
        f.store
            .write(move |c, out| {
                for i in 0..n {
                    let e = Event::new("ch", Some("bob"), json!({"n": i}), "https://test/");
                    events::append(c, out, &e)?;
                }
                events::append(
                    c,
                    out,
                    &Event::new("ch", None, json!("mine"), "https://test/"),
                )
            })
            .expect("publish");
        let got = f
            .broker
            .listen(sub.id, "ann", None)
            .expect("listen")
            .expect("ready");
        assert_eq!(data_of(&got), json!("mine"));
    }

    #[test]
    fn keep_alives_answer_only_the_listeners_that_are_due() {
        let f = fixture();
        let early = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        f.clock.advance(Duration::from_secs(10));
        let late = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let mut parked = vec![f.parked("early", early.id), f.parked("late", late.id)];
        f.clock.advance(KEEP_ALIVE - Duration::from_secs(10));
        assert_eq!(f.broker.next_deadline(&parked), f.clock.instant());
        parked = f.broker.keep_alive(parked);
        let answers = f.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, "early");
        assert_eq!(data_of(&answers[0].1), json!("BEEP"));
        assert_eq!(parked.len(), 1);
        assert_eq!(
            f.broker.next_deadline(&parked),
            f.clock.instant() + Duration::from_secs(10)
        );
    }

    #[test]
    fn without_keep_alives_a_listen_waits_for_a_message_only() {
        let f = fixture_with(None);
        let sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        assert_eq!(f.broker.listen(sub.id, "ann", None).expect("listen"), None);
        let mut parked = vec![f.parked("waiting", sub.id)];
        // Well past the default period (and within the event history TTL).
        for _ in 0..3 {
            f.clock.advance(Duration::from_secs(600));
            parked = f.broker.keep_alive(parked);
            assert!(f.answers().is_empty(), "no BEEP, however long it waits");
            assert_eq!(parked.len(), 1);
            // The dispatcher sleeps until its sweep, never in a busy loop.
            assert_eq!(
                f.broker.next_deadline(&parked),
                f.clock.instant() + SWEEP_EVERY
            );
        }
        f.publish("ch", None, json!({"after": "quiet"}));
        let parked = f.broker.committed(parked, &[Notice::Channel("ch".into())]);
        assert!(parked.is_empty());
        let answers = f.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, "waiting");
        assert_eq!(data_of(&answers[0].1), json!({"after": "quiet"}));
    }

    #[test]
    fn removed_subscriptions_end_their_parked_listens() {
        let f = fixture();
        let sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let other = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let parked = vec![f.parked("gone", sub.id), f.parked("kept", other.id)];
        f.broker.unsubscribe(sub.id, "ann").expect("unsubscribe");
        let parked = f.broker.removed(parked, sub.id);
        assert_eq!(
            f.answers(),
            vec![("gone", Delivery::Failed(BrokerError::NotFound(sub.id)))]
        );
        assert_eq!(parked.len(), 1);
    }

    #[test]
    fn a_parked_pop_is_answered_by_a_push_to_its_list() {
        let f = fixture();
        let answered = Arc::clone(&f.answered);
        let pop = Parked::Pop {
            list: "jobs".into(),
            lease: None,
            answer: Box::new(move |d| answered.lock().expect("lock").push(("pop", d))),
        };
        let parked = f.broker.answer_ready(Vec::new(), vec![pop]);
        assert_eq!(parked.len(), 1, "nothing to pop yet");
        f.store
            .write(|c, out| queues::push(c, out, "jobs", &json!({"data": 1})))
            .expect("push");
        let parked = f.broker.committed(parked, &[Notice::List("other".into())]);
        assert_eq!(parked.len(), 1, "another list");
        let parked = f.broker.committed(parked, &[Notice::List("jobs".into())]);
        assert!(parked.is_empty());
        assert_eq!(
            f.answers(),
            vec![("pop", Delivery::Popped("{\"data\":1}".into()))]
        );
    }

    #[test]
    fn a_durable_subscriber_resumes_after_what_it_acknowledged() {
        let f = fixture();
        let sub = f
            .broker
            .subscribe("ch", "ann", false, Some("svc".into()))
            .expect("sub");
        f.publish("ch", None, json!(1));
        f.publish("ch", None, json!(2));
        let first = f
            .broker
            .listen(sub.id, "ann", None)
            .expect("listen")
            .expect("ready");
        assert_eq!(data_of(&first), json!(1));
        // the next listen acknowledges the first event, then gets the second
        let second = f
            .broker
            .listen(sub.id, "ann", None)
            .expect("listen")
            .expect("ready");
        assert_eq!(data_of(&second), json!(2));
        // a reconnect before acknowledging the second gets it again
        let again = f
            .broker
            .subscribe("ch", "ann", false, Some("svc".into()))
            .expect("sub");
        let redelivered = f
            .broker
            .listen(again.id, "ann", None)
            .expect("listen")
            .expect("ready");
        assert_eq!(data_of(&redelivered), json!(2));
        assert_eq!(
            f.broker
                .subscribe("ch", "bob", false, Some("svc".into()))
                .map(|s| s.id),
            Err(BrokerError::SubscriberTaken("svc".into()))
        );
    }

    #[test]
    fn subscriptions_per_user_are_capped() {
        let f = fixture();
        let mut ids = Vec::new();
        for _ in 0..8 {
            ids.push(
                f.broker
                    .subscribe("ch", "ann", false, None)
                    .expect("sub")
                    .id,
            );
        }
        assert_eq!(
            f.broker
                .subscribe("other", "ann", false, None)
                .map(|s| s.id),
            Err(BrokerError::TooManySubscriptions {
                user: "ann".into(),
                limit: 8
            })
        );
        f.broker
            .subscribe("ch", "bob", false, None)
            .expect("another user");
        f.broker.unsubscribe(ids[0], "ann").expect("unsubscribe");
        f.broker
            .subscribe("ch", "ann", false, None)
            .expect("room again");
    }

    #[test]
    fn idle_subscriptions_are_swept_unless_a_listen_waits() {
        let f = fixture();
        let idle = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let waiting = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let fresh = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        f.broker.listen(idle.id, "ann", None).expect("listen");
        f.broker.listen(waiting.id, "ann", None).expect("listen");
        let parked = vec![f.parked("waiting", waiting.id)];
        f.clock.advance(STALE_AFTER);
        f.broker.sweep_stale(&parked, f.clock.instant());
        let left: Vec<u64> = f.broker.subscriptions().iter().map(|s| s.id).collect();
        assert_eq!(left, [waiting.id, fresh.id], "never-polled ones are kept");
    }

    fn filtered(f: &Fixture, query: &[(&str, &str)], sid: Option<&str>, explicit: bool) -> u64 {
        let params = crate::query::testing::params(query);
        let conditions =
            Filter::parse(&params, &[], &crate::query::EVENT_DATA_SCHEMA).expect("conditions");
        let filter = (!conditions.conditions.is_empty()).then(|| {
            let given = params.clone();
            Arc::new(SubFilter::new(given, &conditions))
        });
        let options = SubscribeOptions {
            promiscuous: true,
            subscriber_id: sid.map(str::to_string),
            filter,
            explicit,
        };
        f.broker
            .subscribe_with("ch", "ann", options)
            .expect("sub")
            .id
    }

    fn batch_of(delivery: &Delivery) -> Vec<Value> {
        match delivery {
            Delivery::Batch { envelopes, .. } => envelopes
                .iter()
                .map(|e| serde_json::from_str::<Value>(e).expect("envelope")["data"].clone())
                .collect(),
            other => panic!("not a batch: {other:?}"),
        }
    }

    #[test]
    fn conditions_pick_events_by_their_data_and_skipped_ones_are_passed() {
        let f = fixture();
        let id = filtered(&f, &[("kind", "keep")], None, false);
        f.publish("ch", None, json!({"kind": "drop"}));
        f.publish("ch", None, json!("text"));
        f.publish("ch", None, json!([{"kind": "keep"}]));
        let keep = f.publish("ch", None, json!({"kind": "keep", "n": 1}));
        let got = f.broker.listen(id, "ann", None).expect("listen");
        assert_eq!(
            got.as_ref().map(data_of),
            Some(json!({"kind": "keep", "n": 1}))
        );
        let last = f.publish("ch", None, json!({"kind": "drop"}));
        assert_eq!(f.broker.listen(id, "ann", None).expect("listen"), None);
        let sub = f.broker.owned(id, "ann").expect("sub");
        assert!(
            keep < last && sub.cursor >= last,
            "the skipped event is passed"
        );
        // BEEPs are always delivered
        f.clock.advance(KEEP_ALIVE);
        let beep = f.broker.listen(id, "ann", None).expect("listen");
        assert_eq!(beep.as_ref().map(data_of), Some(json!("BEEP")));
    }

    #[test]
    fn one_read_judges_an_event_once_for_many_filtered_listeners() {
        let f = fixture();
        let a = filtered(&f, &[("n__gt", "1")], None, false);
        let b = filtered(&f, &[("n__int", "1")], None, false);
        let c = filtered(&f, &[], None, false);
        let mut parked = vec![f.parked("a", a), f.parked("b", b), f.parked("c", c)];
        f.publish("ch", None, json!({"n": 1}));
        parked = f.broker.committed(parked, &[Notice::Channel("ch".into())]);
        let mut names: Vec<&str> = f.answers().iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(parked.len(), 1);
    }

    #[test]
    fn a_batch_takes_everything_available_up_to_max_and_a_beep_alone() {
        let f = fixture();
        let sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        for n in 0..5 {
            f.publish("ch", None, json!(n));
        }
        f.clock.advance(KEEP_ALIVE); // a BEEP is due, but messages come first
        let first = f.broker.listen(sub.id, "ann", Some(3)).expect("listen");
        assert_eq!(
            batch_of(&first.expect("ready")),
            [json!(0), json!(1), json!(2)]
        );
        let rest = f
            .broker
            .listen(sub.id, "ann", Some(MAX_BATCH))
            .expect("listen");
        assert_eq!(batch_of(&rest.expect("ready")), [json!(3), json!(4)]);
        let beep = f.broker.listen(sub.id, "ann", Some(10)).expect("listen");
        assert_eq!(batch_of(&beep.expect("beep")), [json!("BEEP")]);
        assert_eq!(
            f.broker.listen(sub.id, "ann", Some(10)).expect("listen"),
            None
        );
        // a parked batch listen gets a batch too
        let answered = Arc::clone(&f.answered);
        let parked = vec![Parked::Listen {
            sub: sub.id,
            max: Some(2),
            answer: Box::new(move |d| answered.lock().expect("lock").push(("batch", d))),
        }];
        f.publish("ch", None, json!(5));
        f.publish("ch", None, json!(6));
        f.publish("ch", None, json!(7));
        assert!(
            f.broker
                .committed(parked, &[Notice::Channel("ch".into())])
                .is_empty()
        );
        let answers = f.answers();
        assert_eq!(batch_of(&answers[0].1), [json!(5), json!(6)]);
    }

    #[test]
    fn a_batch_reads_past_more_events_than_one_read_holds() {
        let f = fixture();
        let sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let n = READ_LIMIT + 10;
        f.store
            .write(move |c, out| {
                for i in 0..n {
                    let e = Event::new("ch", None, json!(i), "https://test/");
                    events::append(c, out, &e)?;
                }
                Ok::<_, StoreError>(())
            })
            .expect("publish");
        let got = f
            .broker
            .listen(sub.id, "ann", Some(MAX_BATCH))
            .expect("listen");
        let got = batch_of(&got.expect("ready"));
        assert_eq!(got.len(), usize::try_from(n).expect("small"));
        assert_eq!(got.last(), Some(&json!(n - 1)));
    }

    #[test]
    fn explicit_acknowledgement_moves_the_saved_position_only_forward() {
        let f = fixture();
        let id = filtered(&f, &[], Some("svc"), true);
        let s1 = f.publish("ch", None, json!(1));
        let s2 = f.publish("ch", None, json!(2));
        let s3 = f.publish("ch", None, json!(3));
        f.broker.listen(id, "ann", None).expect("listen");
        f.broker.listen(id, "ann", None).expect("listen");
        // listening again acknowledges nothing in explicit mode
        let saved = |f: &Fixture| {
            f.store
                .read(|c| subscribers::get(c, "svc"))
                .expect("read")
                .expect("saved")
                .position
        };
        assert!(saved(&f) < s1);
        assert_eq!(
            f.broker.acknowledge(id, "ann", s3),
            Err(AckError::Beyond {
                seq: s3,
                passed: s2
            })
        );
        assert_eq!(
            f.broker.acknowledge(id, "bob", s1),
            Err(AckError::Broker(BrokerError::NotOwner {
                id,
                user: "bob".into()
            }))
        );
        f.broker.acknowledge(id, "ann", s2).expect("ack");
        assert_eq!(saved(&f), s2);
        f.broker.acknowledge(id, "ann", s1).expect("ack, no change");
        assert_eq!(saved(&f), s2, "never back");
        // a new subscribe resumes after what was acknowledged
        let again = filtered(&f, &[], Some("svc"), false);
        let next = f.broker.listen(again, "ann", None).expect("listen");
        assert_eq!(next.as_ref().map(data_of), Some(json!(3)));
        assert_eq!(
            f.broker.acknowledge(again, "ann", s3),
            Err(AckError::NotExplicit(again))
        );
        let plain = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        assert_eq!(
            f.broker.acknowledge(plain.id, "ann", 0),
            Err(AckError::NotExplicit(plain.id))
        );
    }

    #[test]
    fn an_ended_lease_comes_back_and_wakes_the_dispatcher_in_time() {
        let f = fixture();
        f.store
            .write(|c, out| {
                queues::push(c, out, "jobs", &json!({"data": 0}))?;
                queues::push(c, out, "jobs", &json!({"data": 1}))
            })
            .expect("push");
        let lease = Duration::from_secs(5);
        let first = f
            .broker
            .pop("jobs", Some(lease))
            .expect("pop")
            .expect("msg");
        let first: Value = serde_json::from_str(&first).expect("json");
        assert_eq!(
            (first["data"].clone(), first["_deliveries"].clone()),
            (json!(0), json!(1))
        );
        assert_eq!(f.broker.next_deadline(&[]), f.clock.instant() + lease);
        f.broker
            .pop("jobs", None)
            .expect("pop")
            .expect("the next one");
        let answered = Arc::clone(&f.answered);
        let parked = vec![Parked::Pop {
            list: "jobs".into(),
            lease: None,
            answer: Box::new(move |d| answered.lock().expect("lock").push(("pop", d))),
        }];
        let parked = f.broker.answer_ready(Vec::new(), parked);
        assert_eq!(parked.len(), 1, "hidden while the lease holds");
        f.broker.release_leases();
        assert_eq!(f.broker.pop("jobs", None).expect("pop"), None, "not yet");
        f.clock.advance(lease);
        f.broker.release_leases();
        assert_eq!(*f.broker.due_lock(), None, "no lease left");
        let parked = f.broker.committed(parked, &[Notice::List("jobs".into())]);
        assert!(parked.is_empty());
        let answers = f.answers();
        match &answers[0].1 {
            Delivery::Popped(text) => {
                let env: Value = serde_json::from_str(text).expect("json");
                assert_eq!(env["data"], json!(0));
            }
            other => panic!("not popped: {other:?}"),
        }
        let receipt = first["_receipt"].as_str().expect("receipt");
        assert!(!f.broker.acknowledge_receipt("jobs", receipt).expect("ack"));
    }

    #[test]
    fn parsed_data_is_kept_within_its_byte_bound() {
        let mut kept = ParsedData::default();
        let doc = Arc::new(Some(json!({"n": 1})));
        let half = PARSED_KEEP_BYTES / 2;
        kept.keep(1, PARSED_MAX_EVENT_BYTES + 1, &doc);
        assert!(kept.get(1).is_none(), "too large to keep");
        for seq in 1..=((PARSED_KEEP_BYTES / PARSED_MAX_EVENT_BYTES) as i64 + 3) {
            kept.keep(seq, PARSED_MAX_EVENT_BYTES, &doc);
        }
        assert!(kept.bytes <= PARSED_KEEP_BYTES);
        assert!(kept.get(1).is_none(), "the oldest went first");
        assert!(
            kept.get(3 + (half / PARSED_MAX_EVENT_BYTES) as i64)
                .is_some()
        );
        assert_eq!(kept.by_seq.len(), kept.order.len());
    }

    #[test]
    fn a_batch_of_large_events_stops_at_its_byte_bound() {
        let f = fixture();
        let sub = f.broker.subscribe("ch", "ann", false, None).expect("sub");
        let big = "x".repeat(MAX_BATCH_BYTES / 2);
        for n in 0..3 {
            f.publish("ch", None, json!({"n": n, "pad": big}));
        }
        let ns = |d: Option<Delivery>| -> Vec<Value> {
            batch_of(&d.expect("ready"))
                .iter()
                .map(|v| v["n"].clone())
                .collect()
        };
        let first = f.broker.listen(sub.id, "ann", Some(10)).expect("listen");
        assert_eq!(ns(first), [json!(0), json!(1)]);
        let rest = f.broker.listen(sub.id, "ann", Some(10)).expect("listen");
        assert_eq!(ns(rest), [json!(2)], "the event left out comes next");
    }
}
