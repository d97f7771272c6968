//! The HTTP server: a tiny_http listener and a fixed pool of worker
//! threads; raw request → `Req` (body limit, version prefix), `Resp` → raw
//! response; panics become 500; one access-log line per request. Answers
//! given from other threads (parked long polls) are written by the
//! server's own writer threads, so that no client that stops reading can
//! hold up whoever answered it.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::{App, StartError};
use crate::http::sse::{self, SseWriter};
use crate::http::weight::{self, ValueBudget};
use crate::http::{self, ApiError, Method, Reply, Req, Resp, RespBody, StartStream};
use crate::router;

/// How often an idle worker looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Bodies of the largest allowed size that may be held at once, read
/// ahead on connection threads (more wait, within their deadline).
const BODIES_AT_ONCE: u64 = 16;
/// A writer thread idle this long ends.
const WRITER_IDLE_EXIT: Duration = Duration::from_secs(10);
/// Stack of a writer thread (it only copies a response to a socket).
const WRITER_STACK_BYTES: usize = 128 * 1024;
/// Answers larger than this (and every streamed one) are written by a
/// writer thread: a client that reads them slowly, or not at all, then
/// holds no worker. A smaller answer fits in the socket's send buffer.
const WRITE_ON_WORKER_MAX_BYTES: usize = 64 * 1024;
/// File descriptors one connection takes (its socket and two duplicates).
const FDS_PER_CONNECTION: u64 = 3;
/// File descriptors kept for everything else (the database, its WAL,
/// the listener, logs).
const FDS_KEPT: u64 = 64;

/// The connection cap: `configured`, lowered so that the connections fit
/// in the file descriptors the process may open (raised to the hard limit
/// first). Past the cap, connections are closed as soon as accepted; out
/// of descriptors, the process could not even open its database.
fn connection_cap(configured: usize) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let fit = limit.saturating_sub(FDS_KEPT) / FDS_PER_CONNECTION;
    configured
        .min(usize::try_from(fit).unwrap_or(usize::MAX))
        .max(1)
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    server: Arc<tiny_http::Server>,
    writers: Arc<Writers>,
    sse: Arc<SseWriter>,
}

/// Answers still being written when the server stopped (see
/// [`Running::stop`]), event streams included.
pub struct Writes(Arc<Writers>, Arc<SseWriter>);

impl Writes {
    /// Waits until they are written, at most `timeout` (a client that does
    /// not read is not waited for longer).
    pub fn wait(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.0.wait(timeout);
        self.1
            .wait(deadline.saturating_duration_since(Instant::now()));
    }
}

impl Running {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting work, lets in-flight requests finish, joins workers.
    /// Answers given later (parked requests ended by the broker's stop)
    /// are written on their own threads: [`Writes::wait`] waits for them.
    pub fn stop(self) -> Writes {
        let writes = Writes(Arc::clone(&self.writers), Arc::clone(&self.sse));
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
        // Event streams end when the stream hub stops (`App::close`); what
        // is still unsent then is given `STOP_DRAIN` at most.
        self.sse.stop(sse::STOP_DRAIN);
        writes
    }
}

/// A listening socket with TCP_NODELAY, which accepted connections
/// inherit: tiny_http writes the headers and a body over 1 KiB in two
/// writes, and with Nagle's algorithm the second waits for the client's
/// delayed ACK (about 40 ms per response).
fn listen(bind: &str) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let addr = bind.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

type Write = Box<dyn FnOnce() + Send>;

/// Threads that write responses handed over by other threads. A write is
/// bounded by the send timeout (`KCI_SEND_TIMEOUT_SECONDS`), and a write
/// never waits for another: when no writer is free, one more starts; an
/// idle one ends after a while. So the number of writers follows the
/// number of answers being written at once, and a slow client holds up
/// nobody but its own writer.
struct Writers {
    state: Mutex<WriterState>,
    ready: Condvar,
}

#[derive(Default)]
struct WriterState {
    /// Writes handed over and not yet taken by a writer.
    queue: VecDeque<Write>,
    /// Writers waiting for a write.
    idle: usize,
    /// Writes handed over and not finished.
    pending: usize,
}

impl Writers {
    fn new() -> Arc<Writers> {
        Arc::new(Writers {
            state: Mutex::new(WriterState::default()),
            ready: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, WriterState> {
        // A poisoned lock only means a write panicked; the queue is intact.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `write` on a writer thread; never blocks.
    fn submit(self: &Arc<Self>, write: Write) {
        let mut state = self.lock();
        state.pending += 1;
        // Every queued write has a waiting writer of its own.
        if state.idle > state.queue.len() {
            state.queue.push_back(write);
            self.ready.notify_one();
            return;
        }
        drop(state);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("kci-write".into())
            .stack_size(WRITER_STACK_BYTES)
            .spawn(move || {
                me.run(write);
                me.serve();
            });
        if let Err(err) = spawned {
            eprintln!("kci-lite: cannot start a writer thread: {err}");
            self.lock().pending -= 1;
        }
    }

    fn run(&self, write: Write) {
        write();
        self.lock().pending -= 1;
    }

    /// Takes writes until none came for `WRITER_IDLE_EXIT`.
    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if let Some(write) = state.queue.pop_front() {
                drop(state);
                self.run(write);
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (next, waited) = self
                .ready
                .wait_timeout(state, WRITER_IDLE_EXIT)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                return;
            }
        }
    }

    /// Waits until every submitted write is done, or `timeout` passed.
    fn wait(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.lock().pending > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Binds `bind` and starts the worker threads.
pub fn start(app: Arc<App>, bind: &str) -> Result<Running, StartError> {
    let listener = listen(bind).map_err(|e| StartError(format!("cannot listen on {bind}: {e}")))?;
    // A write that blocks this long means the client stopped reading: the
    // connection is closed rather than waited for.
    let limits = tiny_http::ConnectionLimits {
        write_timeout: Some(Duration::from_secs(app.config.send_timeout_secs)),
        // Bodies are read on each connection's own thread, so a worker
        // gets a request only once all of it has arrived.
        max_body_bytes: Some(app.config.max_body_bytes),
        body_deadline: Some(Duration::from_secs(app.config.body_timeout_secs)),
        head_deadline: Some(Duration::from_secs(app.config.head_timeout_secs)),
        idle_timeout: Some(Duration::from_secs(app.config.idle_timeout_secs)),
        max_connections: Some(connection_cap(app.config.max_connections)),
        body_budget: Some(Arc::new(tiny_http::BodyBudget::new(
            app.config.max_body_bytes.saturating_mul(BODIES_AT_ONCE),
        ))),
        // The version prefix is checked before the body (the contract's
        // order): a request with an unsupported one is answered 400 first.
        prefetch: Some(Arc::new(|url: &str| {
            let path = url.split_once('?').map_or(url, |(p, _)| p);
            matches!(strip_prefix(path), Prefix::Api(_))
        })),
        // An event stream takes its connection over: the connection's
        // thread ends once the request is handed out.
        takes_over: Some(Arc::new(|url: &str| {
            let path = url.split_once('?').map_or(url, |(p, _)| p);
            matches!(strip_prefix(path), Prefix::Api(s) if is_stream_path(&s))
        })),
    };
    let server = tiny_http::Server::from_listener_with_limits(listener, None, limits)
        .map_err(|e| StartError(format!("cannot listen on {bind}: {e}")))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| StartError(format!("{bind} is not an IP address")))?;
    let server = Arc::new(server);
    let stopping = Arc::new(AtomicBool::new(false));
    let writers = Writers::new();
    let sse = SseWriter::start()
        .map_err(|e| StartError(format!("cannot start the event-stream thread: {e}")))?;
    let values = ValueBudget::new(weight::VALUES_AT_ONCE);
    let mut workers = Vec::new();
    for i in 0..app.config.http_threads {
        let (app, server, stopping, writers, values, sse) = (
            Arc::clone(&app),
            Arc::clone(&server),
            Arc::clone(&stopping),
            Arc::clone(&writers),
            Arc::clone(&values),
            Arc::clone(&sse),
        );
        let worker = std::thread::Builder::new()
            .name(format!("kci-http-{i}"))
            .spawn(move || work(&app, &server, &stopping, &writers, &values, &sse))
            .map_err(|e| StartError(format!("cannot start worker thread: {e}")))?;
        workers.push(worker);
    }
    Ok(Running {
        addr,
        stopping,
        workers,
        server,
        writers,
        sse,
    })
}

/// Whether these path segments (version prefix stripped) name an event
/// stream (`/stream/{channel}`).
fn is_stream_path(segments: &[String]) -> bool {
    segments.len() == 2 && segments[0] == "stream"
}

fn work(
    app: &Arc<App>,
    server: &tiny_http::Server,
    stopping: &AtomicBool,
    writers: &Arc<Writers>,
    values: &Arc<ValueBudget>,
    sse: &Arc<SseWriter>,
) {
    while !stopping.load(Ordering::SeqCst) {
        match server.recv_timeout(STOP_POLL) {
            Ok(Some(raw)) => handle(app, writers, values, sse, raw),
            Ok(None) => {}
            Err(_) => break,
        }
    }
}

/// Answers one request and writes its access-log line.
struct Responder {
    raw: tiny_http::Request,
    started: Instant,
    method: String,
    path: String,
}

impl Responder {
    /// Writes the response on this thread when it is small and can be
    /// written at once; else (a large or streamed answer, which a client
    /// may read as slowly as it likes, or an earlier request of the
    /// connection, such as a pipelined long poll, is still unanswered)
    /// hands it to a writer thread, so that a worker never waits for a
    /// client or for another request's answer.
    fn send(self, writers: &Arc<Writers>, resp: Resp) {
        let small = match &resp.body {
            RespBody::Bytes(bytes) => bytes.len() <= WRITE_ON_WORKER_MAX_BYTES,
            RespBody::Stream(_) => false,
        };
        if small && self.raw.is_next_to_answer() {
            self.write(resp);
        } else {
            self.send_later(writers, resp);
        }
    }

    /// Writes the response on this thread.
    fn write(self, resp: Resp) {
        let status = resp.status;
        let _ = self.raw.respond(to_raw(resp));
        log(&self.method, &self.path, status, self.started);
    }

    /// Hands the response to a writer thread: for answers given by other
    /// threads, and for requests whose body was not (fully) read, which
    /// tiny_http drains when the request is dropped — as slowly as the
    /// client likes.
    fn send_later(self, writers: &Arc<Writers>, resp: Resp) {
        writers.submit(Box::new(move || self.write(resp)));
    }

    /// Answers with an event stream: sends its head (on a writer thread
    /// when an earlier answer of the connection is still due), then hands
    /// the connection to the event-stream thread and its sink to `start`.
    /// A HEAD request gets the head alone.
    fn stream(self, writers: &Arc<Writers>, sse: &Arc<SseWriter>, start: StartStream) {
        if *self.raw.method() == tiny_http::Method::Head {
            let mut resp = Resp::file(EVENT_STREAM, b"");
            resp.headers = stream_headers();
            return self.send(writers, resp);
        }
        if self.raw.is_next_to_answer() {
            self.take_over(sse, start);
        } else {
            let sse = Arc::clone(sse);
            writers.submit(Box::new(move || self.take_over(&sse, start)));
        }
    }

    fn take_over(self, sse: &SseWriter, start: StartStream) {
        let Responder {
            raw,
            started,
            method,
            path,
        } = self;
        let headers: Vec<tiny_http::Header> =
            std::iter::once(("Content-Type".into(), EVENT_STREAM.into()))
                .chain(stream_headers())
                .filter_map(|(name, value): (String, String)| {
                    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
                })
                .collect();
        match raw.into_stream(tiny_http::StatusCode(200), &headers) {
            Ok(out) => {
                log(&method, &path, 200, started);
                match sse.attach(out) {
                    Ok(sink) => start(sink),
                    Err(err) => {
                        eprintln!("kci-lite: {method} {path}: cannot watch the stream: {err}")
                    }
                }
            }
            // The client went away before the head was sent.
            Err((None, _)) => log(&method, &path, 200, started),
            Err((Some(raw), err)) => {
                eprintln!("kci-lite: {method} {path}: cannot stream: {err}");
                let resp = ApiError::internal("cannot stream").to_resp();
                Responder {
                    raw,
                    started,
                    method,
                    path,
                }
                .write(resp);
            }
        }
    }
}

/// The media type of an event stream.
const EVENT_STREAM: &str = "text/event-stream";

/// Headers of an event stream besides its type: no cache, and no proxy
/// buffering (nginx honours `X-Accel-Buffering`).
fn stream_headers() -> Vec<(String, String)> {
    vec![
        ("Cache-Control".into(), "no-cache".into()),
        ("X-Accel-Buffering".into(), "no".into()),
    ]
}

fn to_raw(resp: Resp) -> tiny_http::ResponseBox {
    let mut out = match resp.body {
        RespBody::Bytes(bytes) => tiny_http::Response::from_data(bytes).boxed(),
        // No length: chunked, written as it is read.
        RespBody::Stream(stream) => tiny_http::Response::new(
            tiny_http::StatusCode(resp.status),
            Vec::new(),
            stream,
            None,
            None,
        ),
    }
    .with_status_code(resp.status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", resp.content_type) {
        out.add_header(h);
    }
    for (name, value) in resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(h);
        }
    }
    out
}

fn log(method: &str, path: &str, status: u16, started: Instant) {
    eprintln!(
        "kci-lite: {method} {path} {status} {:.1}ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

fn method_of(raw: &tiny_http::Method) -> Method {
    match raw {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Head => Method::Head,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Put => Method::Put,
        tiny_http::Method::Patch => Method::Patch,
        tiny_http::Method::Delete => Method::Delete,
        _ => Method::Other,
    }
}

/// What the version prefix of a path means.
enum Prefix {
    /// Serve these segments.
    Api(Vec<String>),
    /// `/vN…` other than `v0`: refused with this version text.
    Unsupported(String),
}

fn strip_prefix(path: &str) -> Prefix {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let segments = http::split_path(path);
    if first == "latest" || first == "v0" {
        return Prefix::Api(segments.into_iter().skip(1).collect());
    }
    let is_version = first.len() > 1
        && first.starts_with('v')
        && first[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && first[1..].bytes().any(|b| b.is_ascii_digit());
    if is_version {
        Prefix::Unsupported(first.to_string())
    } else {
        Prefix::Api(segments)
    }
}

/// The share of the value budget a JSON body needs while it is handled
/// (none for a small one), or the answer when it holds too many values or
/// the budget has no room for it now.
fn weigh(values: &Arc<ValueBudget>, body: &[u8]) -> Result<Option<weight::Held>, Resp> {
    let Some(n) = weight::count_values(body, weight::MAX_BODY_VALUES) else {
        return Ok(None);
    };
    if n > weight::MAX_BODY_VALUES {
        let detail = format!(
            "Request body too large: more than {} JSON values",
            weight::MAX_BODY_VALUES
        );
        return Err(ApiError::too_large_because(&detail).to_resp());
    }
    if n <= weight::LARGE_BODY_VALUES {
        return Ok(None);
    }
    match values.try_take(n) {
        Some(held) => Ok(Some(held)),
        None => Err(ApiError::unavailable(
            "Server busy: too many large request bodies at once, try again",
            format!("no room for a body of {n} JSON values"),
        )
        .to_resp()),
    }
}

fn handle(
    app: &Arc<App>,
    writers: &Arc<Writers>,
    values: &Arc<ValueBudget>,
    sse: &Arc<SseWriter>,
    mut raw: tiny_http::Request,
) {
    let started = Instant::now();
    app.count_request();
    let url = raw.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let responder_for = |raw: tiny_http::Request| Responder {
        method: raw.method().as_str().to_string(),
        path: path.to_string(),
        raw,
        started,
    };
    let segments = match strip_prefix(path) {
        Prefix::Api(segments) => segments,
        Prefix::Unsupported(version) => {
            // Its body is not read: answered off the worker, which would
            // otherwise wait while tiny_http drains it.
            let resp = Resp::text(400, &format!("Unsupported API version: {version}"));
            return responder_for(raw).send_later(writers, resp);
        }
    };
    let limit = app.config.max_body_bytes;
    if raw.body_length().is_some_and(|n| n as u64 > limit) {
        return responder_for(raw).send_later(writers, ApiError::too_large().to_resp());
    }
    // A body read ahead on the connection's thread is taken as it is; any
    // other goes into one allocation of the announced size (at most the
    // limit, checked above) instead of doubling growth and its copies.
    let (body, read) = match raw.take_prefetched_body() {
        Some(body) => (body, Ok(0)),
        None => {
            let mut body = Vec::with_capacity(raw.body_length().unwrap_or(0));
            let read = raw
                .as_reader()
                .take(limit.saturating_add(1))
                .read_to_end(&mut body);
            (body, read)
        }
    };
    if read.is_err() {
        let resp = ApiError::bad_request("Could not read the request body").to_resp();
        return responder_for(raw).send_later(writers, resp);
    }
    if body.len() as u64 > limit {
        return responder_for(raw).send_later(writers, ApiError::too_large().to_resp());
    }
    // Held until the request is answered.
    let _weight = match weigh(values, &body) {
        Ok(held) => held,
        Err(resp) => return responder_for(raw).send(writers, resp),
    };
    let req = Req {
        method: method_of(raw.method()),
        segments,
        query: http::parse_query(query),
        headers: raw
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect(),
        body,
        remote: raw.remote_addr().copied(),
    };
    let reply = catch_unwind(AssertUnwindSafe(|| router::route(app, &req)))
        .unwrap_or_else(|_| Err(ApiError::internal("handler panicked")));
    let responder = responder_for(raw);
    match reply {
        Ok(Reply::Now(resp)) => responder.send(writers, resp),
        Ok(Reply::Later(park)) => {
            let writers = Arc::clone(writers);
            park(Box::new(move |resp| responder.send_later(&writers, resp)));
        }
        Ok(Reply::Stream(start)) => responder.stream(writers, sse, start),
        Err(err) => {
            if let Some(cause) = &err.cause {
                // A cause may quote a whole SQL statement (rusqlite's text of
                // an error in a statement does): its start says what failed.
                const MAX_LOGGED_CAUSE_CHARS: usize = 300;
                let shown: String = cause.chars().take(MAX_LOGGED_CAUSE_CHARS).collect();
                let cut = if shown.len() < cause.len() { "…" } else { "" };
                eprintln!("kci-lite: {} {path}: {shown}{cut}", responder.method);
            }
            responder.send(writers, err.to_resp());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(path: &str) -> Vec<String> {
        match strip_prefix(path) {
            Prefix::Api(s) => s,
            Prefix::Unsupported(v) => vec![format!("!{v}")],
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(api("/latest/node/x"), ["node", "x"]);
        assert_eq!(api("/v0/nodes"), ["nodes"]);
        assert_eq!(api("/nodes"), ["nodes"]);
        assert!(api("/latest").is_empty());
        assert!(api("/").is_empty());
        assert_eq!(api("/v1/nodes"), ["!v1"]);
        assert_eq!(api("/v0.1/nodes"), ["!v0.1"]);
        assert_eq!(api("/viewer"), ["viewer"]);
    }
}
