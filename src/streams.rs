//! The event-stream hub: every open `GET /stream/{channel}` with its
//! channel, owner filter, conditions and position. One thread learns of
//! commits, reads each new batch of a channel's stored events once, renders
//! each event's Server-Sent Event text once and hands it to every stream
//! that sees it; a stream that resumes (`Last-Event-ID`) first replays the
//! history in pages, as fast as its client reads, then goes live. Nothing
//! is skipped or sent twice: live delivery and replay run on the one thread,
//! and a stream goes live only once its replay reached what the live side
//! has read.
//!
//! The hub knows nothing of HTTP or sockets: a stream's output goes to an
//! opaque [`Sink`], which never blocks, so no client can slow the hub (or
//! another client) down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use serde_json::Value;

use crate::query::Matcher;
use crate::store::events::{self, ChannelEvent};
use crate::store::{Notice, Store, StoreError};
use crate::timestamp::{self, Clock};

/// Stored events read per channel at once for live delivery.
const LIVE_PAGE: i64 = 256;
/// Stored events read at once for one replaying stream.
const REPLAY_PAGE: i64 = 64;
/// A replaying stream gets more history only while less than this much of
/// its output is unsent: a client that reads slowly replays slowly, and is
/// never closed for output it did not ask for yet.
pub const REPLAY_ROOM_BYTES: usize = 64 * 1024;
/// How often a replay waiting for its client to read looks again.
const REPLAY_POLL: Duration = Duration::from_millis(20);
/// How often streams whose client went away are let go.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The keep-alive comment.
pub const KEEP_ALIVE_TEXT: &[u8] = b": keep-alive\n\n";

/// The text of one event or keep-alive, rendered once and shared by every
/// stream that sends it.
pub type Frame = Arc<[u8]>;

/// Where a stream's output goes. Every method returns at once.
pub trait Sink: Send {
    /// Queues `frame` whole; `false` when the stream is over: the client
    /// went away, or its unsent output had passed the sink's bound and the
    /// stream was closed (the client resumes with `Last-Event-ID`).
    fn push(&mut self, frame: &Frame) -> bool;
    /// Starts sending what was queued.
    fn flush(&mut self);
    /// Bytes queued and not sent yet.
    fn unsent(&self) -> usize;
    /// Whether the stream is over (client gone, or closed).
    fn is_closed(&self) -> bool;
    /// Ends the stream cleanly once what is queued is sent.
    fn end(self: Box<Self>);
}

/// What one stream wants.
pub struct StreamSpec {
    /// The channel whose stored events it gets.
    pub channel: String,
    /// It gets the events with a greater sequence number.
    pub after: i64,
    /// `Some(user)`: only events without owner or owned by `user` (the
    /// owner filter of a non-promiscuous subscription); `None`: all.
    pub owner: Option<String>,
    /// Conditions on the event's `data` (`None`: no condition; then data
    /// that is not an object is sent too).
    pub matcher: Option<Matcher>,
}

impl StreamSpec {
    /// Whether a stream with this spec gets `event`; `data` is the event's
    /// parsed data, parsed at most once for all streams.
    fn sees(&self, event: &ChannelEvent, data: &mut Option<Option<Value>>) -> bool {
        let owner_ok = self
            .owner
            .as_ref()
            .is_none_or(|me| event.owner.as_ref().is_none_or(|o| o == me));
        if !owner_ok {
            return false;
        }
        let Some(matcher) = &self.matcher else {
            return true;
        };
        let data = data.get_or_insert_with(|| serde_json::from_str(&event.data).ok());
        match data {
            Some(doc @ Value::Object(_)) => matcher.matches(doc),
            _ => false,
        }
    }
}

/// The Server-Sent Event of a stored event: its sequence number as `id`,
/// and as `data` the CloudEvent text a `/listen` message carries (one line
/// of JSON).
pub fn render(event: &ChannelEvent) -> Frame {
    let text = format!(
        "id: {}\nevent: message\ndata: {}\n\n",
        event.seq,
        event.cloud_event()
    );
    Arc::from(text.into_bytes())
}

/// Settings of the hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Every this long each stream gets a keep-alive comment; `None`: never.
    pub keep_alive: Option<Duration>,
    /// Events older than this are not sent.
    pub history_ttl_secs: u64,
}

/// Where the replays are, after a step of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Replay {
    /// No stream is replaying.
    Done,
    /// Some wait for their client to read.
    Waiting,
    /// Some can go on at once.
    Ready,
}

struct Stream {
    spec: StreamSpec,
    sink: Box<dyn Sink>,
    /// Highest sequence number sent or passed over.
    position: i64,
    /// Caught up with the live side (else replaying).
    live: bool,
    closed: bool,
    /// Given output not flushed yet.
    dirty: bool,
}

struct Channel {
    /// Highest sequence number the live side has read on this channel.
    read_to: i64,
    streams: Vec<Stream>,
}

/// The streams and what they have been sent: the hub's state, driven by
/// its thread (and by the unit tests, without one).
struct Streams {
    store: Arc<Store>,
    config: HubConfig,
    clock: Arc<dyn Clock>,
    channels: HashMap<String, Channel>,
    open: Arc<AtomicUsize>,
}

impl Streams {
    fn oldest(&self) -> timestamp::Timestamp {
        self.clock.now() - timestamp::span_secs(self.config.history_ttl_secs)
    }

    /// Adds a stream; it replays from `spec.after` unless that is where the
    /// live side of its channel is already.
    fn open(&mut self, spec: StreamSpec, sink: Box<dyn Sink>) {
        if !self.channels.contains_key(&spec.channel) {
            let read_to = match self.store.read(events::max_seq) {
                Ok(n) => n,
                Err(err) => {
                    eprintln!("kci-lite: stream of {}: {err}", spec.channel);
                    sink.end();
                    return;
                }
            };
            let channel = Channel {
                read_to,
                streams: Vec::new(),
            };
            self.channels.insert(spec.channel.clone(), channel);
        }
        let Some(channel) = self.channels.get_mut(&spec.channel) else {
            return;
        };
        let position = spec.after;
        channel.streams.push(Stream {
            live: position >= channel.read_to,
            spec,
            sink,
            position,
            closed: false,
            dirty: false,
        });
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A commit was reported: the channels it wrote to that have streams
    /// get the new events.
    fn committed(&mut self, batch: &[Notice]) {
        let mut names: Vec<&String> = batch
            .iter()
            .filter_map(|n| match n {
                Notice::Channel(name) if self.channels.contains_key(name) => Some(name),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return;
        }
        names.sort();
        names.dedup();
        let upto = match self.store.read(events::max_seq) {
            Ok(n) => n,
            Err(err) => {
                eprintln!("kci-lite: streams: {err}");
                return;
            }
        };
        let names: Vec<String> = names.into_iter().cloned().collect();
        for name in names {
            if let Err(err) = self.dispatch(&name, upto) {
                eprintln!("kci-lite: stream of {name}: {err}");
            }
        }
    }

    /// Reads the channel's events up to `upto` that the live side has not
    /// read yet, each once, and gives them to its live streams.
    fn dispatch(&mut self, name: &str, upto: i64) -> Result<(), StoreError> {
        let oldest = self.oldest();
        let Some(channel) = self.channels.get_mut(name) else {
            return Ok(());
        };
        while channel.read_to < upto {
            let from = channel.read_to;
            let batch = self
                .store
                .read(|c| events::since(c, name, from, upto, &oldest, LIVE_PAGE))?;
            let complete = batch.len() < LIVE_PAGE as usize;
            for event in &batch {
                let mut frame = None;
                let mut data = None;
                for stream in channel.streams.iter_mut() {
                    if !stream.live || stream.closed || event.seq <= stream.position {
                        continue;
                    }
                    stream.position = event.seq;
                    if stream.spec.sees(event, &mut data) {
                        let frame = frame.get_or_insert_with(|| render(event));
                        stream.closed = !stream.sink.push(frame);
                        stream.dirty = true;
                    }
                }
            }
            channel.read_to = match batch.last() {
                Some(last) if !complete => last.seq,
                _ => upto,
            };
        }
        for stream in channel.streams.iter_mut().filter(|s| s.live) {
            stream.position = stream.position.max(channel.read_to);
            if std::mem::take(&mut stream.dirty) {
                stream.sink.flush();
            }
        }
        Ok(())
    }

    /// One page of history for each replaying stream whose client has
    /// room.
    fn replay(&mut self) -> Replay {
        let oldest = self.oldest();
        let mut more = Replay::Done;
        for (name, channel) in self.channels.iter_mut() {
            let read_to = channel.read_to;
            for stream in channel.streams.iter_mut() {
                if stream.live || stream.closed {
                    continue;
                }
                if stream.sink.unsent() >= REPLAY_ROOM_BYTES {
                    more = more.max(Replay::Waiting);
                    continue;
                }
                let from = stream.position;
                let page = self
                    .store
                    .read(|c| events::since(c, name, from, read_to, &oldest, REPLAY_PAGE));
                let page = match page {
                    Ok(page) => page,
                    Err(err) => {
                        eprintln!("kci-lite: replay of {name}: {err}");
                        more = more.max(Replay::Waiting);
                        continue;
                    }
                };
                let complete = page.len() < REPLAY_PAGE as usize;
                let mut stopped = false;
                for event in &page {
                    if stream.sink.unsent() >= REPLAY_ROOM_BYTES {
                        stopped = true;
                        break;
                    }
                    stream.position = event.seq;
                    if stream.spec.sees(event, &mut None) && !stream.sink.push(&render(event)) {
                        stream.closed = true;
                        stopped = true;
                        break;
                    }
                }
                stream.sink.flush();
                if complete && !stopped {
                    stream.position = read_to;
                    stream.live = true;
                } else if stream.sink.unsent() < REPLAY_ROOM_BYTES && !stream.closed {
                    more = Replay::Ready;
                } else {
                    more = more.max(Replay::Waiting);
                }
            }
        }
        more
    }

    /// A keep-alive comment for every stream.
    fn keep_alive(&mut self) {
        let frame: Frame = Arc::from(KEEP_ALIVE_TEXT);
        for stream in self
            .channels
            .values_mut()
            .flat_map(|c| c.streams.iter_mut())
        {
            if !stream.closed {
                stream.closed = !stream.sink.push(&frame);
                stream.sink.flush();
            }
        }
    }

    /// Lets go of streams that are over, and of channels without streams.
    fn sweep(&mut self) {
        let mut gone = 0;
        for channel in self.channels.values_mut() {
            channel.streams.retain(|s| {
                let over = s.closed || s.sink.is_closed();
                gone += usize::from(over);
                !over
            });
        }
        self.channels.retain(|_, c| !c.streams.is_empty());
        self.open.fetch_sub(gone, Ordering::Relaxed);
    }

    /// Gives live streams everything committed until now.
    fn catch_up(&mut self) {
        let upto = match self.store.read(events::max_seq) {
            Ok(n) => n,
            Err(err) => {
                eprintln!("kci-lite: streams: {err}");
                return;
            }
        };
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for name in names {
            if let Err(err) = self.dispatch(&name, upto) {
                eprintln!("kci-lite: stream of {name}: {err}");
            }
        }
    }

    /// Ends every stream cleanly (after what it was sent).
    fn end_all(&mut self) {
        for (_, channel) in self.channels.drain() {
            for stream in channel.streams {
                stream.sink.end();
            }
        }
        self.open.store(0, Ordering::Relaxed);
    }
}

enum Command {
    Open(StreamSpec, Box<dyn Sink>),
    Stop,
}

/// The streams and the thread that feeds them.
pub struct Hub {
    commands: Sender<Command>,
    open: Arc<AtomicUsize>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Hub {
    /// Starts the hub's thread; `notices` are the writer's commit notices.
    pub fn start(
        store: Arc<Store>,
        notices: Receiver<Vec<Notice>>,
        config: HubConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Hub>, StoreError> {
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let open = Arc::new(AtomicUsize::new(0));
        let streams = Streams {
            store,
            config,
            clock,
            channels: HashMap::new(),
            open: Arc::clone(&open),
        };
        let thread = std::thread::Builder::new()
            .name("kci-streams".into())
            .spawn(move || run(streams, notices, &command_rx))
            .map_err(|e| StoreError::Internal(format!("cannot start the stream thread: {e}")))?;
        Ok(Arc::new(Hub {
            commands,
            open,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Adds a stream; returns at once. Once the hub has stopped, the stream
    /// ends at once.
    pub fn open(&self, spec: StreamSpec, sink: Box<dyn Sink>) {
        if let Err(err) = self.commands.send(Command::Open(spec, sink))
            && let Command::Open(_, sink) = err.into_inner()
        {
            sink.end();
        }
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Sends what was committed until now, then ends every stream cleanly
    /// and stops the thread.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn run(mut streams: Streams, notices: Receiver<Vec<Notice>>, commands: &Receiver<Command>) {
    let mut notices = notices;
    let period = streams.config.keep_alive;
    let now = streams.clock.instant();
    let mut next_keep_alive = period.map(|p| now + p);
    let mut next_sweep = now + SWEEP_EVERY;
    let mut replaying = Replay::Done;
    loop {
        let now = streams.clock.instant();
        let mut due = next_sweep;
        if let Some(at) = next_keep_alive {
            due = due.min(at);
        }
        match replaying {
            Replay::Ready => due = now,
            Replay::Waiting => due = due.min(now + REPLAY_POLL),
            Replay::Done => {}
        }
        let wait = due.saturating_duration_since(now);
        select! {
            recv(notices) -> batch => match batch {
                Ok(batch) => streams.committed(&batch),
                // No more commits will come: keep serving the streams.
                Err(_) => notices = crossbeam_channel::never(),
            },
            recv(commands) -> command => match command {
                Ok(Command::Open(spec, sink)) => streams.open(spec, sink),
                Ok(Command::Stop) | Err(_) => break,
            },
            default(wait) => {}
        }
        replaying = streams.replay();
        let now = streams.clock.instant();
        if let (Some(at), Some(period)) = (next_keep_alive, period)
            && now >= at
        {
            streams.keep_alive();
            next_keep_alive = Some(now + period);
        }
        if now >= next_sweep {
            streams.sweep();
            next_sweep = now + SWEEP_EVERY;
        }
    }
    // Everything committed before the stop goes out first, also what was
    // committed while its notice was still on its way.
    while let Ok(batch) = notices.try_recv() {
        streams.committed(&batch);
    }
    streams.catch_up();
    streams.end_all();
    while let Ok(command) = commands.try_recv() {
        if let Command::Open(_, sink) = command {
            sink.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Event;
    use crate::query::{EVENT_DATA_SCHEMA, Filter};
    use crate::store::testing::temp_store;
    use crate::timestamp::ManualClock;
    use serde_json::json;

    /// What a test sink was given, shared with the test.
    #[derive(Default)]
    struct Record {
        frames: Vec<String>,
        unsent: usize,
        closed: bool,
        ended: bool,
        /// Refuse pushes (as a sink over its bound does).
        refuse: bool,
    }

    struct TestSink(Arc<Mutex<Record>>);

    impl Sink for TestSink {
        fn push(&mut self, frame: &Frame) -> bool {
            let mut r = self.0.lock().expect("lock");
            if r.refuse || r.closed {
                r.closed = true;
                return false;
            }
            r.frames.push(String::from_utf8_lossy(frame).into_owned());
            true
        }
        fn flush(&mut self) {}
        fn unsent(&self) -> usize {
            self.0.lock().expect("lock").unsent
        }
        fn is_closed(&self) -> bool {
            self.0.lock().expect("lock").closed
        }
        fn end(self: Box<Self>) {
            self.0.lock().expect("lock").ended = true;
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
        streams: Streams,
    }

    fn fixture() -> Fixture {
        let (dir, store) = temp_store();
        let store = Arc::new(store);
        let streams = Streams {
            store: Arc::clone(&store),
            config: HubConfig {
                keep_alive: None,
                history_ttl_secs: 3600,
            },
            clock: Arc::new(ManualClock::new()),
            channels: HashMap::new(),
            open: Arc::default(),
        };
        Fixture {
            _dir: dir,
            store,
            streams,
        }
    }

    impl Fixture {
        fn publish(&mut self, channel: &str, owner: Option<&str>, data: Value) -> i64 {
            let event = Event::new(channel, owner, data, "https://test/");
            let seq = self
                .store
                .write(move |c, out| events::append(c, out, &event))
                .expect("publish");
            self.streams
                .committed(&[Notice::Channel(channel.to_string())]);
            seq
        }

        fn open(
            &mut self,
            channel: &str,
            after: i64,
            owner: Option<&str>,
            query: &[(&str, &str)],
        ) -> Arc<Mutex<Record>> {
            let params: Vec<(String, String)> = query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let filter = Filter::parse(&params, &[], &EVENT_DATA_SCHEMA).expect("filter");
            let record = Arc::new(Mutex::new(Record::default()));
            let spec = StreamSpec {
                channel: channel.into(),
                after,
                owner: owner.map(str::to_string),
                matcher: (!filter.conditions.is_empty()).then(|| Matcher::new(&filter)),
            };
            self.streams
                .open(spec, Box::new(TestSink(Arc::clone(&record))));
            record
        }

        fn now(&self) -> i64 {
            self.store.read(events::max_seq).expect("max")
        }
    }

    /// The `n` of each event frame's CloudEvent data, and the ids.
    fn ns(record: &Arc<Mutex<Record>>) -> Vec<(i64, Value)> {
        record
            .lock()
            .expect("lock")
            .frames
            .iter()
            .filter(|f| f.starts_with("id: "))
            .map(|f| {
                let mut lines = f.lines();
                let id = lines.next().unwrap_or("")[4..].parse().unwrap_or(-1);
                assert_eq!(lines.next(), Some("event: message"));
                let data = lines.next().unwrap_or("");
                let env: Value = serde_json::from_str(&data[6..]).expect("json");
                assert_eq!(env["_sequence_id"], json!(id));
                (id, env["data"]["n"].clone())
            })
            .collect()
    }

    fn values(record: &Arc<Mutex<Record>>) -> Vec<Value> {
        ns(record).into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn a_live_stream_gets_what_is_committed_after_its_start() {
        let mut f = fixture();
        f.publish("ch", None, json!({"n": 0}));
        let start = f.now();
        let live = f.open("ch", start, None, &[]);
        f.publish("ch", Some("ann"), json!({"n": 1}));
        f.publish("other", None, json!({"n": 9}));
        f.publish("ch", None, json!({"n": 2}));
        assert_eq!(values(&live), [json!(1), json!(2)]);
        let ids: Vec<i64> = ns(&live).into_iter().map(|(id, _)| id).collect();
        assert!(ids[0] > start && ids[1] > ids[0]);
    }

    #[test]
    fn owner_filter_and_conditions() {
        let mut f = fixture();
        let start = f.now();
        let mine = f.open("ch", start, Some("ann"), &[]);
        let kinds = f.open("ch", start, None, &[("kind__in", "a,b")]);
        let not_x = f.open("ch", start, None, &[("x__ne", "1")]);
        f.publish("ch", Some("bob"), json!({"n": 1, "kind": "a"}));
        f.publish("ch", Some("ann"), json!({"n": 2, "kind": "c"}));
        f.publish("ch", None, json!({"n": 3, "kind": "b"}));
        f.publish("ch", None, json!("text"));
        assert_eq!(values(&mine), [json!(2), json!(3), Value::Null]);
        assert_eq!(values(&kinds), [json!(1), json!(3)]);
        // data that is not an object matches no condition, not even __ne
        assert_eq!(values(&not_x), [json!(1), json!(2), json!(3)]);
    }

    #[test]
    fn replay_then_live_without_gap_or_duplicate() {
        let mut f = fixture();
        let first = f.publish("ch", None, json!({"n": 0}));
        for n in 1..200 {
            f.publish("ch", None, json!({"n": n}));
        }
        let resumed = f.open("ch", first, None, &[]);
        // live events arrive while the replay is still going on
        f.publish("ch", None, json!({"n": 200}));
        while f.streams.replay() != Replay::Done {
            f.publish("ch", None, json!({"n": "live"}));
        }
        f.publish("ch", None, json!({"n": 201}));
        let got = ns(&resumed);
        let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "in order, none twice");
        assert_eq!(ids.len() as i64, f.now() - first);
        assert_eq!(got[0].1, json!(1));
        assert_eq!(got.last().map(|g| g.1.clone()), Some(json!(201)));
    }

    #[test]
    fn a_replay_waits_while_its_client_has_unsent_output() {
        let mut f = fixture();
        for n in 0..10 {
            f.publish("ch", None, json!({"n": n}));
        }
        let slow = f.open("ch", 0, None, &[]);
        slow.lock().expect("lock").unsent = REPLAY_ROOM_BYTES;
        assert_eq!(f.streams.replay(), Replay::Waiting);
        assert!(values(&slow).is_empty());
        slow.lock().expect("lock").unsent = 0;
        assert_eq!(f.streams.replay(), Replay::Done);
        assert_eq!(values(&slow).len(), 10);
    }

    #[test]
    fn a_stream_over_its_bound_is_let_go_and_others_go_on() {
        let mut f = fixture();
        let start = f.now();
        let stalled = f.open("ch", start, None, &[]);
        let reader = f.open("ch", start, None, &[]);
        f.publish("ch", None, json!({"n": 1}));
        stalled.lock().expect("lock").refuse = true;
        f.publish("ch", None, json!({"n": 2}));
        f.publish("ch", None, json!({"n": 3}));
        assert_eq!(values(&reader), [json!(1), json!(2), json!(3)]);
        assert_eq!(values(&stalled), [json!(1)]);
        assert_eq!(f.streams.open.load(Ordering::Relaxed), 2);
        f.streams.sweep();
        assert_eq!(f.streams.open.load(Ordering::Relaxed), 1);
        f.streams.end_all();
        assert!(reader.lock().expect("lock").ended);
        assert!(!stalled.lock().expect("lock").ended);
    }

    #[test]
    fn keep_alives_are_comments() {
        let mut f = fixture();
        let quiet = f.open("ch", 0, None, &[]);
        f.streams.keep_alive();
        let frames = quiet.lock().expect("lock").frames.clone();
        assert_eq!(frames, [": keep-alive\n\n"]);
    }
}
