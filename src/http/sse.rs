//! Event-stream responses (Server-Sent Events) on connections taken over
//! from tiny_http after the response head (`Request::into_stream`). Their
//! sockets are written non-blocking by whoever queues output (the stream
//! hub); one thread watches them all (mio) and finishes the writes a client
//! was too slow for, notices clients that go away or send what they should
//! not, and closes them. No thread ever waits on one of these sockets, so a
//! thousand idle streams cost no thread, and a client that stops reading
//! delays nobody: once more than [`MAX_UNSENT_BYTES`] of its output is
//! unsent, its stream is closed.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::streams::{Frame, Sink};

/// A stream with more output than this queued and unsent is closed when
/// more comes (its client resumes with `Last-Event-ID`). One event larger
/// than this still goes to a client that keeps up.
pub const MAX_UNSENT_BYTES: usize = 1024 * 1024;
/// What a client may send after its stream request (it has nothing to
/// send; the bytes are read and dropped) before its stream is closed.
const MAX_INPUT_BYTES: usize = 64 * 1024;
/// Pieces of output written by one system call.
const MAX_SLICES: usize = 64;
/// The watching thread's token for its waker.
const WAKE: Token = Token(0);
/// How long the watching thread sleeps at most (it looks at the stop flag).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long, at most, streams still being written are given once the
/// server stops.
pub const STOP_DRAIN: Duration = Duration::from_secs(5);
/// The end of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A piece of a stream's output.
enum Piece {
    /// Shared by every stream that sends it.
    Shared(Frame),
    /// A chunk-size line.
    Size([u8; 18], u8),
    Static(&'static [u8]),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Shared(frame) => frame,
            Piece::Size(buf, len) => &buf[..usize::from(*len)],
            Piece::Static(bytes) => bytes,
        }
    }

    fn size_line(len: usize) -> Piece {
        let text = format!("{len:x}\r\n");
        let mut buf = [0u8; 18];
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Piece::Size(buf, n as u8)
    }
}

/// How far a write got.
enum Progress {
    /// Everything queued is written.
    Done,
    /// The socket has no room now.
    Blocked,
    /// The client is gone (or the connection was closed).
    Failed,
}

/// One stream's connection and what is queued for it.
struct Conn {
    token: Token,
    socket: Option<TcpStream>,
    /// The rest of the tiny_http request and connection; dropped on close.
    held: Option<Box<dyn Send>>,
    chunked: bool,
    outbox: VecDeque<Piece>,
    /// Bytes of the first piece already written.
    offset: usize,
    unsent: usize,
    /// The last write would have blocked: the watching thread goes on
    /// when the socket has room again.
    blocked: bool,
    /// End once the outbox is written.
    ending: bool,
    closed: bool,
    input: usize,
}

impl Conn {
    fn queue(&mut self, piece: Piece) {
        self.unsent += piece.bytes().len();
        self.outbox.push_back(piece);
    }

    /// Writes what it can without blocking; closes the connection on an
    /// error, or when it was ending and everything is written.
    fn write_out(&mut self, registry: &Registry) {
        match self.write_some() {
            Progress::Done if self.ending => self.close(registry, true),
            Progress::Done => self.blocked = false,
            Progress::Blocked => self.blocked = true,
            Progress::Failed => self.close(registry, false),
        }
    }

    fn write_some(&mut self) -> Progress {
        let Some(socket) = self.socket.as_mut() else {
            return Progress::Failed;
        };
        while self.unsent > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (i, piece) in self.outbox.iter().take(MAX_SLICES).enumerate() {
                let bytes = piece.bytes();
                slices[i] = IoSlice::new(if i == 0 { &bytes[self.offset..] } else { bytes });
                count = i + 1;
            }
            match socket.write_vectored(&slices[..count]) {
                Ok(0) => return Progress::Failed,
                Ok(mut n) => {
                    self.unsent = self.unsent.saturating_sub(n);
                    while n > 0 {
                        let Some(first) = self.outbox.front() else {
                            break;
                        };
                        let left = first.bytes().len() - self.offset;
                        if n < left {
                            self.offset += n;
                            n = 0;
                        } else {
                            n -= left;
                            self.offset = 0;
                            self.outbox.pop_front();
                        }
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Progress::Blocked,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Progress::Failed,
            }
        }
        Progress::Done
    }

    /// Reads and drops what the client sent; closes the connection when
    /// the client has gone, failed, or sent too much.
    fn read_in(&mut self, registry: &Registry) {
        if !self.read_some() {
            self.close(registry, false);
        }
    }

    /// Whether the client is still there and within its input bound.
    fn read_some(&mut self) -> bool {
        let Some(socket) = self.socket.as_mut() else {
            return false;
        };
        let mut scratch = [0u8; 4096];
        loop {
            match socket.read(&mut scratch) {
                Ok(0) => return false,
                Ok(n) => {
                    self.input += n;
                    if self.input > MAX_INPUT_BYTES {
                        return false;
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return true,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Closes the connection: `clean` after its whole output (FIN), else
    /// at once both ways.
    fn close(&mut self, registry: &Registry, clean: bool) {
        if let Some(mut socket) = self.socket.take() {
            let _ = registry.deregister(&mut socket);
            let _ = socket.shutdown(if clean {
                Shutdown::Write
            } else {
                Shutdown::Both
            });
        }
        self.held = None;
        self.outbox.clear();
        self.unsent = 0;
        self.closed = true;
    }
}

type Shared = Arc<Mutex<Conn>>;

fn lock(conn: &Mutex<Conn>) -> MutexGuard<'_, Conn> {
    // A poisoned lock only means a panic elsewhere; the state is usable.
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connections being watched, by token.
struct Watched {
    registry: Registry,
    conns: Mutex<HashMap<Token, Shared>>,
    next: AtomicUsize,
    /// Set when the server stops: the thread ends once every stream has
    /// ended, or at `deadline`.
    stopping: AtomicBool,
    deadline: Mutex<Option<Instant>>,
}

impl Watched {
    fn conns(&self) -> MutexGuard<'_, HashMap<Token, Shared>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, token: Token) {
        self.conns().remove(&token);
    }
}

/// The thread watching every event-stream connection.
pub struct SseWriter {
    watched: Arc<Watched>,
    waker: Waker,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl SseWriter {
    /// Starts the watching thread.
    pub fn start() -> std::io::Result<Arc<SseWriter>> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let watched = Arc::new(Watched {
            registry: poll.registry().try_clone()?,
            conns: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(1),
            stopping: AtomicBool::new(false),
            deadline: Mutex::new(None),
        });
        let me = Arc::clone(&watched);
        let thread = std::thread::Builder::new()
            .name("kci-sse".into())
            .spawn(move || watch(poll, &me))?;
        Ok(Arc::new(SseWriter {
            watched,
            waker,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Takes a connection whose head was sent; its sink queues and writes
    /// the stream's body.
    pub fn attach(&self, out: tiny_http::StreamOut) -> std::io::Result<Box<dyn Sink>> {
        out.socket.set_nonblocking(true)?;
        let token = Token(self.watched.next.fetch_add(1, Ordering::Relaxed));
        let mut socket = TcpStream::from_std(out.socket);
        // Known before the socket is registered, so its first event finds it.
        let conn = Arc::new(Mutex::new(Conn {
            token,
            socket: None,
            held: Some(out.held),
            chunked: out.chunked,
            outbox: VecDeque::new(),
            offset: 0,
            unsent: 0,
            blocked: false,
            ending: false,
            closed: false,
            input: 0,
        }));
        self.watched.conns().insert(token, Arc::clone(&conn));
        {
            // Held while registering: the socket's first event waits for it.
            let mut state = lock(&conn);
            let registered = self.watched.registry.register(
                &mut socket,
                token,
                Interest::READABLE | Interest::WRITABLE,
            );
            if let Err(err) = registered {
                drop(state);
                self.watched.forget(token);
                return Err(err);
            }
            state.socket = Some(socket);
        }
        Ok(Box::new(SseSink {
            conn,
            watched: Arc::clone(&self.watched),
        }))
    }

    /// The server stops: the thread ends once every stream has ended (see
    /// [`crate::streams::Hub::stop`]), or after `drain` at most, closing
    /// what is left.
    pub fn stop(&self, drain: Duration) {
        let deadline = Instant::now() + drain;
        *self
            .watched
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(deadline);
        self.watched.stopping.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// Waits for the thread to end (after [`SseWriter::stop`]), at most
    /// `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let finished = self
                .thread
                .lock()
                .map(|t| t.as_ref().is_none_or(JoinHandle::is_finished))
                .unwrap_or(true);
            if finished || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(handle) = self.thread.lock().ok().and_then(|mut t| t.take())
            && handle.is_finished()
        {
            let _ = handle.join();
        }
    }
}

fn watch(mut poll: Poll, watched: &Watched) {
    let mut events = Events::with_capacity(256);
    loop {
        if let Err(err) = poll.poll(&mut events, Some(IDLE_POLL))
            && err.kind() != ErrorKind::Interrupted
        {
            eprintln!("kci-lite: event streams: poll failed: {err}");
            std::thread::sleep(IDLE_POLL);
        }
        for event in events.iter() {
            if event.token() == WAKE {
                continue;
            }
            let Some(conn) = watched.conns().get(&event.token()).cloned() else {
                continue;
            };
            let closed = {
                let mut conn = lock(&conn);
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    conn.read_in(&watched.registry);
                }
                if event.is_writable() || event.is_error() {
                    conn.write_out(&watched.registry);
                }
                conn.closed
            };
            if closed {
                watched.forget(event.token());
            }
        }
        if watched.stopping.load(Ordering::SeqCst) {
            let deadline = *watched.deadline.lock().unwrap_or_else(|p| p.into_inner());
            let over = deadline.is_none_or(|d| Instant::now() >= d);
            if over {
                let conns: Vec<Shared> = watched.conns().drain().map(|(_, c)| c).collect();
                for conn in conns {
                    lock(&conn).close(&watched.registry, false);
                }
            }
            if watched.conns().is_empty() {
                return;
            }
        }
    }
}

/// The [`Sink`] of one event-stream connection.
struct SseSink {
    conn: Shared,
    watched: Arc<Watched>,
}

impl SseSink {
    /// Runs `f` on the connection; forgets the connection if it closed.
    fn with<T>(&self, f: impl FnOnce(&mut Conn, &Registry) -> T) -> T {
        let (value, closed, token) = {
            let mut conn = lock(&self.conn);
            let was_closed = conn.closed;
            let value = f(&mut conn, &self.watched.registry);
            (value, conn.closed && !was_closed, conn.token)
        };
        if closed {
            self.watched.forget(token);
        }
        value
    }
}

impl Sink for SseSink {
    fn push(&mut self, frame: &Frame) -> bool {
        self.with(|conn, registry| {
            if conn.closed || conn.ending {
                return false;
            }
            if conn.unsent > MAX_UNSENT_BYTES {
                conn.close(registry, false);
                return false;
            }
            if conn.chunked {
                conn.queue(Piece::size_line(frame.len()));
                conn.queue(Piece::Shared(Arc::clone(frame)));
                conn.queue(Piece::Static(b"\r\n"));
            } else {
                conn.queue(Piece::Shared(Arc::clone(frame)));
            }
            true
        })
    }

    fn flush(&mut self) {
        self.with(|conn, registry| {
            if !conn.closed && !conn.blocked {
                conn.write_out(registry);
            }
        });
    }

    fn unsent(&self) -> usize {
        lock(&self.conn).unsent
    }

    fn is_closed(&self) -> bool {
        lock(&self.conn).closed
    }

    fn end(self: Box<Self>) {
        self.with(|conn, registry| {
            if conn.closed || conn.ending {
                return;
            }
            conn.ending = true;
            if conn.chunked {
                conn.queue(Piece::Static(LAST_CHUNK));
            }
            if !conn.blocked {
                conn.write_out(registry);
            }
        });
    }
}

impl Drop for SseSink {
    /// A sink let go without [`Sink::end`] closes its stream at once.
    fn drop(&mut self) {
        self.with(|conn, registry| {
            if !conn.closed && !conn.ending {
                conn.close(registry, false);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream as StdStream};

    /// A sink on one end of a loopback connection, and the other end.
    fn pair(writer: &SseWriter, chunked: bool) -> (Box<dyn Sink>, StdStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = StdStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let out = tiny_http::StreamOut {
            socket: server,
            chunked,
            held: Box::new(()),
        };
        (writer.attach(out).expect("attach"), client)
    }

    fn read_all(mut client: StdStream) -> Vec<u8> {
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut got = Vec::new();
        let _ = client.read_to_end(&mut got);
        got
    }

    #[test]
    fn frames_go_out_chunked_and_the_end_is_the_last_chunk() {
        let writer = SseWriter::start().expect("start");
        let (mut sink, client) = pair(&writer, true);
        let frame: Frame = Arc::from(&b"id: 1\n\n"[..]);
        assert!(sink.push(&frame));
        sink.flush();
        sink.end();
        assert_eq!(read_all(client), b"7\r\nid: 1\n\n\r\n0\r\n\r\n");
        let (mut sink, client) = pair(&writer, false);
        assert!(sink.push(&frame));
        sink.end();
        assert_eq!(read_all(client), b"id: 1\n\n");
    }

    #[test]
    fn a_client_that_reads_nothing_is_closed_past_the_bound() {
        let writer = SseWriter::start().expect("start");
        let (mut sink, client) = pair(&writer, true);
        let frame: Frame = Arc::from(vec![b'x'; 64 * 1024]);
        let mut pushed = 0;
        while sink.push(&frame) {
            sink.flush();
            pushed += 1;
            assert!(pushed < 10_000, "never closed");
        }
        assert!(sink.is_closed());
        assert_eq!(sink.unsent(), 0, "its output is let go");
        // what it had received ends without the last chunk
        let got = read_all(client);
        assert!(!got.ends_with(b"0\r\n\r\n"));
    }

    #[test]
    fn a_client_that_leaves_is_noticed() {
        let writer = SseWriter::start().expect("start");
        let (sink, client) = pair(&writer, true);
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sink.is_closed() {
            assert!(Instant::now() < deadline, "not noticed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn chunk_size_lines_are_hex() {
        assert_eq!(Piece::size_line(26).bytes(), b"1a\r\n");
        assert_eq!(Piece::size_line(0x10_0000).bytes(), b"100000\r\n");
    }
}
