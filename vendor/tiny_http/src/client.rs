use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{self, BufReader, BufWriter, Cursor, ErrorKind, Read};

use std::io::Write;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::util::{Pipeline, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{ConnectionLimits, Header, Request, Response};

// kci-lite patch: limits of a request head, so that reading one costs
// bounded memory whatever the client sends.
/// The longest request line, in bytes, CRLF excluded: a query of the API
/// may carry a list of 10,000 ids.
const MAX_REQUEST_LINE_BYTES: usize = 1024 * 1024;
/// The longest header line, in bytes, CRLF excluded.
const MAX_HEADER_LINE_BYTES: usize = 8 * 1024;
/// The longest set of headers (header lines and the blank line), in bytes,
/// CRLFs included.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header lines in one request.
const MAX_HEADER_COUNT: usize = 100;
/// How long a connection is drained, at most, after an error answered by
/// the library, before it is closed (see `RefinedTcpStream::linger_close`).
const ERROR_LINGER: Duration = Duration::from_secs(2);
/// Bodies up to this size take no share of the body budget: a body that
/// large costs little, and the requests that carry them (nearly all) are
/// never held up by clients that trickle large bodies.
const FREE_BODY_BYTES: u64 = 64 * 1024;
/// A larger body takes its share of the budget in steps of this size as
/// its bytes arrive (never for bytes not sent yet), and only so much memory
/// is set aside for it.
const BUDGET_STEP: u64 = 1024 * 1024;
/// The most requests of one connection handed out and not yet answered:
/// the next one is not read before one of them is answered, so a client
/// that pipelines without reading costs bounded memory.
const MAX_IN_FLIGHT: u64 = 32;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // kci-lite patch: a handle on the socket, to close it after an error
    closer: Option<RefinedTcpStream>,

    // kci-lite patch: set when a chunked body was dropped before its end;
    // what follows on the connection is the rest of it, never a request
    body_unfinished: Arc<AtomicBool>,

    // kci-lite patch: the body limit and deadline (see `prefetch_body`),
    // the head deadline and the idle timeout (see `await_request`)
    limits: ConnectionLimits,

    // kci-lite patch: the requests handed out and not yet answered
    pipeline: Arc<Pipeline>,

    // kci-lite patch: kept as long as the connection is open; handed, with
    // `closer`, to the last request of the connection (see `hand_out`)
    guard: Option<Box<dyn Send>>,

    // kci-lite patch: the last request may take the connection over
    // (`ConnectionLimits::takes_over`)
    taken_over: bool,
}

/// kci-lite patch: bytes taken from a `BodyBudget`, given back on drop.
struct Reserved {
    budget: Option<Arc<crate::BodyBudget>>,
    bytes: u64,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give(self.bytes);
        }
    }
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    /// kci-lite patch: a header line or all headers over their limit
    HeadTooLarge(HTTPVersion),
    /// kci-lite patch: the request line over its limit
    RequestLineTooLong,
    /// kci-lite patch: the head did not arrive within its deadline
    HeadTimeout,
    /// kci-lite patch: nothing was sent for the idle timeout
    Idle,
    /// kci-lite patch: HTTP/2 (its connection preface) or later
    UnsupportedVersion,
    /// kci-lite patch: the length of the body is uncertain (the detail)
    BadFraming(HTTPVersion, &'static str),
    /// kci-lite patch: the previous request left its chunked body unfinished
    BodyUnfinished,
}

impl ReadError {
    /// kci-lite patch: the answer to this error (version, status, detail);
    /// none when the client is gone or nothing more can be said.
    fn answer(&self) -> Option<(HTTPVersion, u16, &'static str)> {
        let v1_1 = HTTPVersion(1, 1);
        Some(match self {
            ReadError::WrongRequestLine => (v1_1, 400, "Invalid request line"),
            ReadError::WrongHeader(v) => (v.clone(), 400, "Invalid header line"),
            ReadError::ExpectationFailed(v) => (v.clone(), 417, "Unsupported Expect header"),
            ReadError::HeadTooLarge(v) => (v.clone(), 431, "Request header fields too large"),
            ReadError::RequestLineTooLong => (v1_1, 414, "Request line too long (at most 1 MiB)"),
            ReadError::HeadTimeout => (v1_1, 408, "Request head not received in time"),
            ReadError::UnsupportedVersion => (v1_1, 505, "HTTP version not supported"),
            ReadError::BadFraming(v, detail) => (v.clone(), 400, *detail),
            ReadError::ReadIoError(err)
                if matches!(err.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) =>
            {
                (v1_1, 408, "Request body not received in time")
            }
            ReadError::ReadIoError(_) | ReadError::BodyUnfinished | ReadError::Idle => return None,
        })
    }
}

/// kci-lite patch: why a line of the head could not be read.
enum LineError {
    /// Longer than its limit (reading stopped there).
    TooLong,
    /// Not ASCII, a control character, or a CR or LF alone.
    Malformed,
    Io(IoError),
}

impl LineError {
    fn in_request_line(self) -> ReadError {
        match self {
            LineError::TooLong => ReadError::RequestLineTooLong,
            LineError::Malformed => ReadError::WrongRequestLine,
            LineError::Io(err) => ReadError::ReadIoError(err),
        }
    }

    fn in_header(self, version: &HTTPVersion) -> ReadError {
        match self {
            LineError::TooLong => ReadError::HeadTooLarge(version.clone()),
            LineError::Malformed => ReadError::WrongHeader(version.clone()),
            LineError::Io(err) => ReadError::ReadIoError(err),
        }
    }
}

/// kci-lite patch: `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: ConnectionLimits,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let closer = read_socket.try_clone_handle().ok(); // kci-lite patch

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            closer,
            body_unfinished: Arc::default(),
            limits,
            pipeline: Pipeline::new(),
            guard: None,
            taken_over: false,
        }
    }

    /// kci-lite patch: `guard` is dropped once the connection is closed:
    /// with this value, or with its last request if that outlives it.
    pub(crate) fn hold_until_closed(&mut self, guard: Box<dyn Send>) {
        self.guard = Some(guard);
    }

    /// kci-lite patch: gives `rq` its turn; the last request of the
    /// connection also gets the handle on its socket and the connection's
    /// guard, so that it may take the connection over
    /// (`Request::into_stream`) once this thread is gone.
    fn hand_out(&mut self, mut rq: Request, safe: bool) -> Request {
        rq.set_turn(self.pipeline.hand_out(safe));
        if self.no_more_requests {
            if self.taken_over {
                // the reader ends with this thread, the reading must not
                if let Some(closer) = self.closer.as_ref() {
                    closer.keep_open();
                }
            }
            rq.set_last(self.closer.take(), self.guard.take(), self.taken_over);
        }
        rq
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// kci-lite patch: at most `limit` bytes (CRLF excluded): reading stops
    /// at the limit, so memory is bounded; a byte that is not ASCII, a
    /// control character other than HTAB, or a CR or LF alone (which some
    /// parsers take for the end of a line) make the line malformed.
    /// `first`, when given, is the line's first byte, already read.
    fn read_next_line(&mut self, limit: usize, first: Option<u8>) -> Result<AsciiString, LineError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;
        let mut first = first.map(Ok);

        loop {
            let byte = first
                .take()
                .or_else(|| self.next_header_source.by_ref().bytes().next());

            let byte = match byte {
                Some(b) => b.map_err(LineError::Io)?,
                None => {
                    let eof = IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF");
                    return Err(LineError::Io(eof));
                }
            };

            match (prev_byte_was_cr, byte) {
                (true, b'\n') => {
                    return AsciiString::from_ascii(buf).map_err(|_| LineError::Malformed)
                }
                (true, _) | (false, b'\n') => return Err(LineError::Malformed),
                (false, b'\r') => prev_byte_was_cr = true,
                (false, b) if !b.is_ascii() || (b.is_ascii_control() && b != b'\t') => {
                    return Err(LineError::Malformed)
                }
                (false, _) if buf.len() == limit => return Err(LineError::TooLong),
                (false, b) => buf.push(b),
            }
        }
    }

    /// kci-lite patch: a line of the head, within both
    /// `MAX_HEADER_LINE_BYTES` and what is left of `MAX_HEAD_BYTES`
    /// (`head_left`, which it decreases).
    fn read_head_line(&mut self, head_left: &mut usize) -> Result<AsciiString, LineError> {
        let Some(room) = head_left.checked_sub(2) else {
            return Err(LineError::TooLong);
        };
        let line = self.read_next_line(MAX_HEADER_LINE_BYTES.min(room), None)?;
        *head_left = room - line.len();
        Ok(line)
    }

    /// kci-lite patch: waits for the first byte of the next request, and
    /// gives up (`Idle`) once the connection has been idle for the idle
    /// timeout: no request in flight and none arriving. While a request is
    /// in flight the connection is not idle, however long its answer takes.
    fn await_request(&mut self) -> Result<u8, ReadError> {
        loop {
            if let (Some(idle), Some(closer)) = (self.limits.idle_timeout, self.closer.as_ref()) {
                let wait = match self.pipeline.idle_for() {
                    None => idle,
                    Some(for_) if for_ >= idle => return Err(ReadError::Idle),
                    Some(for_) => idle - for_,
                };
                let _ = closer.set_read_timeout(Some(wait));
            }
            let mut byte = [0u8];
            match self.next_header_source.read(&mut byte) {
                Ok(0) => {
                    let eof = IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF");
                    return Err(ReadError::ReadIoError(eof));
                }
                Ok(_) => return Ok(byte[0]),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err)
                    if self.limits.idle_timeout.is_some()
                        && matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(err) => return Err(ReadError::ReadIoError(err)),
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    ///
    /// kci-lite patch: once its first byte is here, the head must arrive
    /// within the head deadline.
    fn read(&mut self) -> Result<Request, ReadError> {
        let first = self.await_request()?;
        let head_deadline = self.limits.head_deadline.map(|d| Instant::now() + d);
        if let Some(closer) = self.closer.as_ref() {
            closer.set_read_deadline(head_deadline);
        }
        let head = self.read_head(first);
        if let (Some(_), Some(closer)) = (head_deadline, self.closer.as_ref()) {
            closer.set_read_deadline(None);
            let _ = closer.set_read_timeout(None);
        }
        let (method, path, version, headers) = match head {
            Err(ReadError::ReadIoError(err))
                if head_deadline.is_some()
                    && matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                return Err(ReadError::HeadTimeout)
            }
            head => head?,
        };
        self.read_body(method, path, version, headers)
    }

    /// kci-lite patch: the request line (starting with `first`) and the
    /// headers of a request.
    fn read_head(&mut self, first: u8) -> Result<(Method, String, HTTPVersion, Vec<Header>), ReadError> {
        // kci-lite patch: what is left of MAX_HEAD_BYTES
        let mut head_left = MAX_HEAD_BYTES;
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                // kci-lite patch: the request line has a limit of its own
                let line = self.read_next_line(MAX_REQUEST_LINE_BYTES, Some(first));
                // kci-lite patch: these bytes are the rest of the previous
                // body (its reader is handed on once it is dropped)
                if self.body_unfinished.load(Ordering::SeqCst) {
                    return Err(ReadError::BodyUnfinished);
                }
                let line = line.map_err(LineError::in_request_line)?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // kci-lite patch: HTTP/2 and later (the HTTP/2 connection
            // preface reads as `PRI * HTTP/2.0`) are refused at once
            if version > (1, 1) {
                return Err(ReadError::UnsupportedVersion);
            }

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self
                        .read_head_line(&mut head_left)
                        .map_err(|e| e.in_header(&version))?;

                    if line.is_empty() {
                        break;
                    };
                    // kci-lite patch: at most MAX_HEADER_COUNT headers; a
                    // line folded onto the previous one (obs-fold) is
                    // refused, not read as a header of its own
                    if headers.len() == MAX_HEADER_COUNT {
                        return Err(ReadError::HeadTooLarge(version));
                    }
                    if line
                        .as_bytes()
                        .first()
                        .is_some_and(|b| *b == b' ' || *b == b'\t')
                    {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };
        Ok((method, path, version, headers))
    }

    /// kci-lite patch: the request of this head, with the reader of its
    /// body (the rest of `read` as it was).
    fn read_body(
        &mut self,
        method: Method,
        path: String,
        version: HTTPVersion,
        headers: Vec<Header>,
    ) -> Result<Request, ReadError> {
        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // kci-lite patch: a small body is read right here; it too must
        // arrive within the body deadline
        let deadline = self.limits.body_deadline;
        if let (Some(deadline), Some(closer)) = (deadline, self.closer.as_ref()) {
            let _ = closer.set_read_timeout(Some(deadline));
        }

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
            Arc::clone(&self.body_unfinished),
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::BadFraming(detail) => {
                    ReadError::BadFraming(version, detail)
                }
            }
        });
        if let (Some(_), Some(closer)) = (deadline, self.closer.as_ref()) {
            let _ = closer.set_read_timeout(None);
        }
        let request = request?;

        // return the request
        Ok(request)
    }

    /// kci-lite patch: answers an error found by the library itself, after
    /// the answers before it: `{"detail": ...}` as JSON with `Connection:
    /// close`. Then the connection is closed, and nothing after the request
    /// is read.
    fn refuse(&mut self, version: HTTPVersion, status: u16, detail: &str) {
        self.no_more_requests = true;
        let Some(mut writer) = self.sink.next() else {
            return;
        };
        let mut response = Response::from_data(format!("{{\"detail\":{}}}", json_string(detail)))
            .with_status_code(status)
            .with_connection_close();
        if let Ok(content_type) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        {
            response.add_header(content_type);
        }
        let written = response
            .raw_print(&mut writer, version, &[], false, None)
            .and_then(|()| writer.flush());
        drop(writer);
        if written.is_ok() {
            self.linger_close();
        }
    }

    /// kci-lite patch: reads the whole body of `rq` here, on the
    /// connection's thread, within `max` bytes and `deadline`, and puts it
    /// in the request: whoever takes the request never waits for the
    /// client. A body over the limit is answered 413, a body slower than
    /// the deadline 408, both in JSON; then the connection is closed
    /// without reading the rest. `None` when the request was answered here
    /// (or the client went away).
    fn prefetch_body(&mut self, mut rq: Request, max: u64, deadline: Duration) -> Option<Request> {
        if rq.body_length().is_some_and(|n| n as u64 > max) {
            self.finish(rq, 413, "Request body too large");
            return None;
        }
        let until = Instant::now() + deadline;
        // The most this body can be: its length, or the limit.
        let most = rq.body_length().map_or(max, |n| n as u64);
        let mut held = Reserved {
            budget: self.limits.body_budget.clone(),
            bytes: 0,
        };
        let mut body = Vec::with_capacity(most.min(FREE_BODY_BYTES) as usize);
        let mut chunk = [0u8; 16 * 1024];
        let outcome = loop {
            let left = until.saturating_duration_since(Instant::now());
            let timed = left.is_zero()
                || self
                    .closer
                    .as_ref()
                    .is_some_and(|c| c.set_read_timeout(Some(left)).is_err());
            if timed {
                break Err(408);
            }
            match rq.as_reader().read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) if (body.len() + n) as u64 > max => break Err(413),
                Ok(n) => {
                    let need = (body.len() + n) as u64;
                    if need > FREE_BODY_BYTES && need > held.bytes {
                        // the next step of the budget, and the memory for it
                        let upto = need.div_ceil(BUDGET_STEP).saturating_mul(BUDGET_STEP).min(most.max(need));
                        let more = upto - held.bytes;
                        if let Some(budget) = &held.budget {
                            if !budget.take(more, until) {
                                break Err(503);
                            }
                        }
                        held.bytes = upto;
                        body.reserve_exact((upto as usize).saturating_sub(body.len()));
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break Err(408);
                }
                Err(_) => break Err(400),
            }
        };
        match outcome {
            Ok(()) => {
                if let Some(closer) = self.closer.as_ref() {
                    let _ = closer.set_read_timeout(None);
                }
                rq.set_prefetched(body, Box::new(held));
                Some(rq)
            }
            Err(413) => {
                self.finish(rq, 413, "Request body too large");
                None
            }
            Err(408) => {
                self.finish(rq, 408, "Request body not received in time");
                None
            }
            Err(503) => {
                self.finish(rq, 503, "Server busy: too many request bodies at once, try again");
                None
            }
            Err(_) => {
                self.finish(rq, 400, "Could not read the request body");
                None
            }
        }
    }

    /// kci-lite patch: answers `rq` here with a JSON `detail` and ends the
    /// connection, leaving the rest of its body unread.
    fn finish(&mut self, mut rq: Request, status: u16, detail: &str) {
        self.no_more_requests = true;
        // The body's reader reads what is left of it when dropped: a read
        // timeout of a moment makes it give up at once.
        if let Some(closer) = self.closer.as_ref() {
            let _ = closer.set_read_timeout(Some(Duration::from_millis(1)));
        }
        rq.replace_body(Box::new(io::empty()));
        let mut response = Response::from_data(format!("{{\"detail\":{}}}", json_string(detail)))
            .with_status_code(status)
            .with_connection_close();
        if let Ok(content_type) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        {
            response.add_header(content_type);
        }
        if rq.respond(response).is_ok() {
            self.linger_close();
        }
    }

    /// kci-lite patch: ends the connection once its last answer is written
    /// (see `RefinedTcpStream::linger_close`).
    fn linger_close(&mut self) {
        if let Some(closer) = self.closer.as_mut() {
            closer.linger_close(ERROR_LINGER);
        }
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        // kci-lite patch: no more than MAX_IN_FLIGHT unanswered requests
        self.pipeline.wait_for_room(MAX_IN_FLIGHT);

        // kci-lite patch: every error found here is answered in JSON (see
        // `ReadError::answer`) and ends the connection: after a bad head,
        // where the next request would start is unknown.
        let rq = match self.read() {
            Ok(rq) => rq,
            Err(ReadError::BodyUnfinished) => {
                // the answer to the previous request was written before
                // its body was dropped
                self.linger_close();
                return None;
            }
            Err(err) => {
                if let Some((version, status, detail)) = err.answer() {
                    self.refuse(version, status, detail);
                }
                return None;
            }
        };

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // kci-lite patch: a request that may take the connection over is
        // its last one
        if self.limits.takes_over.as_ref().is_some_and(|rule| rule(rq.url())) {
            self.no_more_requests = true;
            self.taken_over = true;
        }

        // kci-lite patch: a request with an unsafe method runs alone, a
        // safe one only beside safe ones (RFC 9112 §9.3.2)
        let safe = matches!(
            rq.method(),
            Method::Get | Method::Head | Method::Options | Method::Trace
        );
        self.pipeline.wait_to_run(safe);

        // kci-lite patch: the body is read here, not by whoever takes the
        // request
        if let (Some(max), Some(deadline)) = (self.limits.max_body_bytes, self.limits.body_deadline) {
            // a body is announced by a length or a chunked transfer coding
            let has_body = match rq.body_length() {
                Some(n) => n > 0,
                None => rq.headers().iter().any(|h| h.field.equiv("Transfer-Encoding")),
            };
            let wanted = self.limits.prefetch.as_ref().is_none_or(|rule| rule(rq.url()));
            if wanted && has_body {
                let rq = self.prefetch_body(rq, max, deadline)?;
                return Some(self.hand_out(rq, safe));
            }
        }

        // returning the request
        Some(self.hand_out(rq, safe))
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());
    // kci-lite patch: nothing after the version
    if parts.next().is_some() {
        return Err(ReadError::WrongRequestLine);
    }

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
        // kci-lite patch
        assert!(super::parse_request_line("GET /hello HTTP/1.1 more").is_err());
    }
}
