//! Message framing and head limits, on the wire: a request whose body
//! length is ambiguous (bad or repeated Content-Length, Content-Length with
//! Transfer-Encoding, a transfer coding other than chunked), an oversized
//! or malformed head, or a body that cannot be read to its end is answered
//! with a JSON error and the connection is closed, so that nothing sent
//! after it on that connection is parsed or run. Ordinary requests,
//! pipelined ones included, are served as before; a huge line costs the
//! server bounded memory.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// How long a test waits for the server to answer and close.
const WAIT: Duration = Duration::from_secs(10);
/// A pipelined request that must never be answered after a refused one.
const FOLLOW_UP: &[u8] = b"GET /latest/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
/// The answer to [`FOLLOW_UP`].
const ROOT_BODY: &str = r#"{"message":"KernelCI API"}"#;

const INVALID_LENGTH: &str = "Invalid Content-Length header";
const MULTIPLE_LENGTHS: &str = "Multiple Content-Length headers";
const LENGTH_AND_ENCODING: &str = "Content-Length and Transfer-Encoding together";
const BAD_ENCODING: &str = "Unsupported Transfer-Encoding header";
const MULTIPLE_ENCODINGS: &str = "Multiple Transfer-Encoding headers";
const ENCODING_IN_1_0: &str = "Transfer-Encoding in an HTTP/1.0 request";
const TOO_LARGE: &str = "Request header fields too large";
const BAD_REQUEST_LINE: &str = "Invalid request line";
const BAD_HEADER: &str = "Invalid header line";
const BAD_EXPECT: &str = "Unsupported Expect header";
const BAD_VERSION: &str = "HTTP version not supported";
const BAD_BODY: &str = "Could not read the request body";

/// One response parsed from the bytes of a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Everything the server sent on one connection.
struct Conversation {
    bytes: Vec<u8>,
    /// The server closed the connection (EOF or reset) within [`WAIT`].
    closed: bool,
}

impl Conversation {
    /// The responses, in order (each framed by its Content-Length or
    /// chunked); panics on bytes that are not a complete response.
    fn answers(&self) -> Vec<Answer> {
        let mut rest = &self.bytes[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (answer, used) = parse_answer(rest);
            out.push(answer);
            rest = &rest[used..];
        }
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_answer(bytes: &[u8]) -> (Answer, usize) {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    let head_end =
        find(bytes, b"\r\n\r\n").unwrap_or_else(|| panic!("no head in {:?}", text())) + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {:?}", text()));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if (100..200).contains(&status) {
        return (answer, head_end);
    }
    if let Some(length) = answer.header("content-length") {
        let length: usize = length.parse().unwrap();
        let end = head_end + length;
        assert!(bytes.len() >= end, "short body in {:?}", text());
        answer.body = bytes[head_end..end].to_vec();
        return (answer, end);
    }
    assert!(
        answer
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
        "response without framing: {:?}",
        text()
    );
    let mut at = head_end;
    loop {
        let line_end = at + find(&bytes[at..], b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[at..line_end]).unwrap(), 16).unwrap();
        at = line_end + 2;
        if size == 0 {
            assert_eq!(&bytes[at..at + 2], b"\r\n");
            return (answer, at + 2);
        }
        answer.body.extend_from_slice(&bytes[at..at + size]);
        at += size + 2;
    }
}

/// Sends `request` on a new connection and reads until the server closes
/// it (or [`WAIT`] passes).
fn converse(addr: SocketAddr, request: &[u8]) -> Conversation {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.set_write_timeout(Some(WAIT)).unwrap();
    // The server may answer and close before it read everything.
    let _ = sock.write_all(request);
    read_to_close(&mut sock)
}

fn read_to_close(sock: &mut TcpStream) -> Conversation {
    let deadline = Instant::now() + WAIT;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match sock.read(&mut chunk) {
            Ok(0) => {
                return Conversation {
                    bytes,
                    closed: true,
                };
            }
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Conversation {
                    bytes,
                    closed: true,
                };
            }
            Err(_) => {
                return Conversation {
                    bytes,
                    closed: false,
                };
            }
        }
        if Instant::now() >= deadline {
            return Conversation {
                bytes,
                closed: false,
            };
        }
    }
}

/// The server is still serving ordinary requests.
#[track_caller]
fn assert_serving(srv: &TestServer) {
    let (status, body) = srv.get("/", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"message": "KernelCI API"}));
}

/// `attack` followed by `then` on the same connection is answered
/// `status` with `{"detail": detail}` and `Connection: close`, the
/// connection is closed and nothing else is answered; the server goes on
/// serving.
#[track_caller]
fn assert_refused_then(srv: &TestServer, attack: &[u8], then: &[u8], status: u16, detail: &str) {
    let what = String::from_utf8_lossy(&attack[..attack.len().min(200)]).into_owned();
    let conversation = converse(srv.addr, &[attack, then].concat());
    assert!(conversation.closed, "connection left open after {what:?}");
    let answers = conversation.answers();
    assert_eq!(answers.len(), 1, "{what:?}: {answers:?}");
    let answer = &answers[0];
    assert_eq!(answer.status, status, "{what:?}: {answer:?}");
    assert_eq!(answer.json(), json!({ "detail": detail }), "{what:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what:?}"
    );
    assert_eq!(answer.header("connection"), Some("close"), "{what:?}");
    assert_serving(srv);
}

#[track_caller]
fn assert_refused(srv: &TestServer, attack: &[u8], status: u16, detail: &str) {
    assert_refused_then(srv, attack, FOLLOW_UP, status, detail);
}

/// A `POST /latest/node` head with `framing` as its framing headers.
fn node_post(token: &str, framing: &str) -> String {
    format!(
        "POST /latest/node HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n{framing}\r\n"
    )
}

/// A complete `POST /latest/node` creating a node called `name`, framed by
/// Content-Length.
fn node_request(token: &str, name: &str) -> String {
    let node = json!({"name": name, "kind": "test", "path": [name]}).to_string();
    format!(
        "{}{node}",
        node_post(token, &format!("Content-Length: {}\r\n", node.len()))
    )
}

fn count_named(srv: &TestServer, name: &str) -> Value {
    srv.get(&format!("/count?name={name}"), None).1
}

// -- Content-Length -------------------------------------------------------------------

#[test]
fn invalid_content_length_is_400_and_the_body_is_never_run() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for value in [
        "abc",
        "-1",
        "1e3",
        "+5",
        "0x10",
        "5 5",
        "",
        "99999999999999999999999",
        "18446744073709551616",
    ] {
        // the "body" is a request of its own, which must not run
        let smuggled = node_request(&user.token, "smuggled");
        let head = node_post(&user.token, &format!("Content-Length: {value}\r\n"));
        assert_refused(
            &srv,
            format!("{head}{smuggled}").as_bytes(),
            400,
            INVALID_LENGTH,
        );
    }
    assert_eq!(count_named(&srv, "smuggled"), json!(0));
}

#[test]
fn repeated_content_length_is_400_even_with_equal_values() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let smuggled = node_request(&user.token, "smuggled");
    for (framing, detail) in [
        (
            "Content-Length: 0\r\nContent-Length: 40\r\n",
            MULTIPLE_LENGTHS,
        ),
        (
            "Content-Length: 40\r\nContent-Length: 40\r\n",
            MULTIPLE_LENGTHS,
        ),
        (
            "Content-Length: 40\r\ncontent-length: 0\r\n",
            MULTIPLE_LENGTHS,
        ),
        // a comma list is refused too, even of equal values
        ("Content-Length: 40, 40\r\n", INVALID_LENGTH),
        ("Content-Length: 0, 40\r\n", INVALID_LENGTH),
    ] {
        let attack = format!("{}{smuggled}", node_post(&user.token, framing));
        assert_refused(&srv, attack.as_bytes(), 400, detail);
    }
    assert_eq!(count_named(&srv, "smuggled"), json!(0));
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let smuggled = node_request(&user.token, "smuggled");
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let attack = format!("{}0\r\n\r\n{smuggled}", node_post(&user.token, framing));
        assert_refused(&srv, attack.as_bytes(), 400, LENGTH_AND_ENCODING);
    }
    assert_eq!(count_named(&srv, "smuggled"), json!(0));
}

// -- Transfer-Encoding ----------------------------------------------------------------

#[test]
fn transfer_codings_other_than_chunked_are_400() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let smuggled = node_request(&user.token, "smuggled");
    for (framing, detail) in [
        ("Transfer-Encoding: gzip\r\n", BAD_ENCODING),
        ("Transfer-Encoding: identity\r\n", BAD_ENCODING),
        ("Transfer-Encoding: gzip, chunked\r\n", BAD_ENCODING),
        ("Transfer-Encoding: chunked, chunked\r\n", BAD_ENCODING),
        ("Transfer-Encoding: xchunked\r\n", BAD_ENCODING),
        ("Transfer-Encoding:\r\n", BAD_ENCODING),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            MULTIPLE_ENCODINGS,
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            MULTIPLE_ENCODINGS,
        ),
    ] {
        let attack = format!("{}0\r\n\r\n{smuggled}", node_post(&user.token, framing));
        assert_refused(&srv, attack.as_bytes(), 400, detail);
    }
    // HTTP/1.0 has no transfer codings: the framing of such a request is
    // unknowable, whatever the connection header says
    let attack = format!(
        "POST /latest/node HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        user.token
    );
    assert_refused(&srv, attack.as_bytes(), 400, ENCODING_IN_1_0);
    assert_eq!(count_named(&srv, "smuggled"), json!(0));
}

#[test]
fn a_chunked_body_that_cannot_be_read_to_its_end_closes_the_connection() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let smuggled = node_request(&user.token, "smuggled");
    let chunked = node_post(&user.token, "Transfer-Encoding: chunked\r\n");
    for body in [
        // not a chunk size: the decoder stops somewhere inside the body
        "zz\r\n".to_string(),
        "+5\r\nhello\r\n0\r\n\r\n".to_string(),
        "5\nhello\r\n0\r\n\r\n".to_string(),
        // a chunk without its CRLF
        "5\r\nhelloXX0\r\n\r\n".to_string(),
        // a chunk-size line that never ends
        format!("1{}\r\n", "0".repeat(64 * 1024)),
    ] {
        let conversation = converse(srv.addr, format!("{chunked}{body}{smuggled}").as_bytes());
        assert!(conversation.closed, "{body:?}: connection left open");
        let answers = conversation.answers();
        assert_eq!(answers.len(), 1, "{body:?}: {answers:?}");
        assert_eq!(answers[0].status, 400, "{body:?}: {answers:?}");
        assert_eq!(answers[0].json(), json!({ "detail": BAD_BODY }));
    }
    assert_eq!(count_named(&srv, "smuggled"), json!(0));
    assert_serving(&srv);
}

#[test]
fn a_chunked_body_over_the_limit_is_413_and_its_rest_is_never_run() {
    let srv = TestServer::builder()
        .var("KCI_MAX_BODY_BYTES", "1000")
        .start();
    let user = srv.make_user(&[]);
    // the request hidden in the body would be valid, were it read as one
    let smuggled = node_request(&user.token, "smuggled");
    let filler = "z".repeat(1200);
    let attack = format!(
        "{}{:x}\r\n{filler}\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        node_post(&user.token, "Transfer-Encoding: chunked\r\n"),
        filler.len(),
        smuggled.len()
    );
    let conversation = converse(srv.addr, &[attack.as_bytes(), FOLLOW_UP].concat());
    assert!(conversation.closed, "connection left open");
    let answers = conversation.answers();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].status, 413);
    assert_eq!(
        answers[0].json(),
        json!({"detail": "Request body too large"})
    );
    assert_eq!(count_named(&srv, "smuggled"), json!(0));
    assert_serving(&srv);
}

// -- head limits ----------------------------------------------------------------------

#[test]
fn oversized_heads_are_431() {
    let srv = TestServer::start();
    // one header line over 8 KiB
    let long = format!(
        "GET /latest/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    assert_refused(&srv, long.as_bytes(), 431, TOO_LARGE);
    // a request line over 1 MiB is 414
    let target = format!("/latest/?q={}", "a".repeat(1024 * 1024));
    let long = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_refused(
        &srv,
        long.as_bytes(),
        414,
        "Request line too long (at most 1 MiB)",
    );
    // lines within the limit, but over 64 KiB in all
    let header = format!("X-Pad: {}\r\n", "p".repeat(7000));
    let big = format!(
        "GET /latest/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
        header.repeat(10)
    );
    assert_refused(&srv, big.as_bytes(), 431, TOO_LARGE);
    // over 100 header lines
    let many: String = (0..101).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let big = format!("GET /latest/ HTTP/1.1\r\n{many}\r\n");
    assert_refused(&srv, big.as_bytes(), 431, TOO_LARGE);
}

#[test]
fn heads_at_the_limits_are_served() {
    let srv = TestServer::start();
    // a header line of exactly 8 KiB, CRLF excluded
    let name = "X-Long: ";
    let line = format!("{name}{}", "a".repeat(8 * 1024 - name.len()));
    assert_eq!(line.len(), 8 * 1024);
    // 100 header lines in all (with Host and Connection)
    let more: String = (0..97).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let request = format!(
        "GET /latest/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{line}\r\n{more}Connection: close\r\n\r\n"
    );
    let reply = srv.raw(request.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), ROOT_BODY);
}

// -- malformed heads ------------------------------------------------------------------

#[test]
fn malformed_heads_are_400_with_a_json_detail() {
    let srv = TestServer::start();
    for (attack, detail) in [
        (&b"GARBAGE\r\n\r\n"[..], BAD_REQUEST_LINE),
        (b"GET /latest/\r\n\r\n", BAD_REQUEST_LINE),
        (
            b"GET /latest/ HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            BAD_REQUEST_LINE,
        ),
        (
            b"GET /latest/ HTTP/1.2\r\nHost: x\r\n\r\n",
            BAD_REQUEST_LINE,
        ),
        (
            b"GET /l\xc3\xa4test/ HTTP/1.1\r\nHost: x\r\n\r\n",
            BAD_REQUEST_LINE,
        ),
        (b"GET /latest/ HTTP/1.1\r\nNoColonHere\r\n\r\n", BAD_HEADER),
        (b"GET /latest/ HTTP/1.1\r\nBad Name: x\r\n\r\n", BAD_HEADER),
        (b"GET /latest/ HTTP/1.1\r\nHost : x\r\n\r\n", BAD_HEADER),
        (
            b"GET /latest/ HTTP/1.1\r\nX-A: caf\xc3\xa9\r\n\r\n",
            BAD_HEADER,
        ),
        // a line folded onto the previous one: a proxy may read it as part
        // of X-A, so it must not be read as a header of its own
        (
            b"POST /latest/node HTTP/1.1\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n",
            BAD_HEADER,
        ),
        // a bare LF or CR inside a line: some parsers end the line there
        (
            b"POST /latest/node HTTP/1.1\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n",
            BAD_HEADER,
        ),
        (
            b"POST /latest/node HTTP/1.1\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n",
            BAD_HEADER,
        ),
        (b"GET /latest/ HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", BAD_HEADER),
    ] {
        assert_refused(&srv, attack, 400, detail);
    }
}

#[test]
fn an_unsupported_expectation_is_417_with_a_json_detail() {
    let srv = TestServer::start();
    let attack = b"POST /latest/node HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\
                   Content-Length: 2\r\n\r\n{}";
    assert_refused(&srv, attack, 417, BAD_EXPECT);
}

#[test]
fn an_http2_preface_is_505_with_a_json_detail() {
    let srv = TestServer::start();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    assert_refused(&srv, preface, 505, BAD_VERSION);
    assert_refused(
        &srv,
        b"GET /latest/ HTTP/3.0\r\nHost: x\r\n\r\n",
        505,
        BAD_VERSION,
    );
}

// -- memory ---------------------------------------------------------------------------

/// This process's resident set, in bytes (the server runs in it).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Sends `head`, then `filler_bytes` of `filler` (from one small buffer, so
/// that the client side costs no memory), then `tail`; the server's
/// answer.
fn send_huge(addr: SocketAddr, head: &str, filler: u8, filler_bytes: usize, tail: &str) -> Answer {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.set_write_timeout(Some(WAIT)).unwrap();
    let block = vec![filler; 64 * 1024];
    let mut sent = 0;
    // The server stops reading at its limit: a write may then fail.
    let mut ok = sock.write_all(head.as_bytes()).is_ok();
    while ok && sent < filler_bytes {
        ok = sock.write_all(&block).is_ok();
        sent += block.len();
    }
    if ok {
        let _ = sock.write_all(tail.as_bytes());
    }
    let conversation = read_to_close(&mut sock);
    assert!(conversation.closed, "connection left open");
    let mut answers = conversation.answers();
    assert_eq!(answers.len(), 1, "{answers:?}");
    answers.remove(0)
}

#[test]
fn a_64_mb_line_costs_the_server_bounded_memory() {
    const HUGE: usize = 64 * 1024 * 1024;
    const SLACK: u64 = 32 * 1024 * 1024;
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    assert_serving(&srv);
    let before = rss_bytes();
    let addr = srv.addr;
    let mut attackers = Vec::new();
    for _ in 0..4 {
        attackers.push(std::thread::spawn(move || {
            let head = "GET /latest/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ";
            send_huge(addr, head, b'a', HUGE, "\r\n\r\n")
        }));
    }
    // a chunk-size line is a line too
    let token = user.token.clone();
    attackers.push(std::thread::spawn(move || {
        let head = node_post(&token, "Transfer-Encoding: chunked\r\n");
        send_huge(addr, &head, b'a', HUGE, "\r\n")
    }));
    let mut peak = before;
    while attackers.iter().any(|a| !a.is_finished()) {
        assert_serving(&srv);
        peak = peak.max(rss_bytes());
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, attacker) in attackers.into_iter().enumerate() {
        let answer = attacker.join().unwrap();
        let (status, detail) = if i < 4 {
            (431, TOO_LARGE)
        } else {
            (400, BAD_BODY)
        };
        assert_eq!(answer.status, status, "{answer:?}");
        assert_eq!(answer.json(), json!({ "detail": detail }));
    }
    peak = peak.max(rss_bytes());
    let grown = peak.saturating_sub(before);
    assert!(
        grown < SLACK,
        "RSS grew by {} MiB (from {} MiB)",
        grown / (1024 * 1024),
        before / (1024 * 1024)
    );
    assert_serving(&srv);
}

#[test]
fn a_huge_content_length_over_the_limit_is_413_and_the_server_survives() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    // the server must not make room for a body it refuses (it reads and
    // drops what comes of it, to keep the connection in step)
    for length in [
        "1000000000000",
        "9223372036854775807",
        "18446744073709551615",
    ] {
        let head = node_post(&user.token, &format!("Content-Length: {length}\r\n"));
        let reply = srv.raw(format!("{head}{{}}").as_bytes());
        assert_eq!(reply.status, 413, "{length}: {}", reply.text());
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body, json!({"detail": "Request body too large"}));
        assert_serving(&srv);
    }
}

// -- ordinary requests ----------------------------------------------------------------

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let request = [
        FOLLOW_UP.to_vec(),
        node_request(&user.token, "first").into_bytes(),
        // chunked, with a chunk extension, spelled in capitals
        format!(
            "{}{}",
            node_post(&user.token, "Transfer-Encoding: Chunked\r\n"),
            chunked_body(&json!({"name": "second", "kind": "test", "path": ["second"]}))
        )
        .into_bytes(),
        // an empty body: framing is fine, the content is not
        node_post(&user.token, "Content-Length: 0\r\n").into_bytes(),
        // spaces around the value are allowed
        node_post(&user.token, "Content-Length:   2  \r\n").into_bytes(),
        b"{}".to_vec(),
        b"GET /latest/count?name=first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    ]
    .concat();
    let conversation = converse(srv.addr, &request);
    assert!(conversation.closed, "Connection: close is honoured");
    let answers = conversation.answers();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 200, 422, 422, 200], "{answers:?}");
    assert_eq!(answers[0].body, ROOT_BODY.as_bytes());
    assert_eq!(answers[1].json()["name"], "first");
    assert_eq!(answers[2].json()["name"], "second");
    assert_eq!(answers[5].json(), json!(1));
    assert_eq!(count_named(&srv, "second"), json!(1));
}

/// `value` as a chunked body in two chunks (the first with an extension),
/// with a trailer field.
fn chunked_body(value: &Value) -> String {
    let text = value.to_string();
    let (a, b) = text.split_at(text.len() / 2);
    format!(
        "{:x};name=value\r\n{a}\r\n{:X}\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        b.len()
    )
}

#[test]
fn a_chunked_body_without_content_length_is_served() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = json!({"name": "chunky", "kind": "test", "path": ["chunky"]});
    let request = format!(
        "{}{}",
        node_post(
            &user.token,
            "Transfer-Encoding: chunked\r\nConnection: close\r\n"
        ),
        chunked_body(&node)
    );
    let reply = srv.raw(request.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
    // and through a client that streams its body (no Content-Length)
    let body = json!({"name": "streamed", "kind": "test", "path": ["streamed"]}).to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&srv.url("/node"))
        .header("Authorization", &format!("Bearer {}", user.token))
        .header("Content-Type", "application/json")
        .send(ureq::SendBody::from_reader(&mut body.as_bytes()))
        .unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{text}");
    assert_eq!(count_named(&srv, "chunky"), json!(1));
    assert_eq!(count_named(&srv, "streamed"), json!(1));
}

#[test]
fn expect_100_continue_is_served() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let node = json!({"name": "patient", "kind": "test", "path": ["patient"]}).to_string();
    let mut sock = TcpStream::connect(srv.addr).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let head = node_post(
        &user.token,
        &format!(
            "Expect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n",
            node.len()
        ),
    );
    sock.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while find(&got, b"\r\n\r\n").is_none() {
        let n = sock.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before 100 Continue");
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 100 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    sock.write_all(node.as_bytes()).unwrap();
    let conversation = read_to_close(&mut sock);
    got.extend_from_slice(&conversation.bytes);
    let answers = Conversation {
        bytes: got,
        closed: true,
    }
    .answers();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [100, 200], "{answers:?}");
    assert_eq!(count_named(&srv, "patient"), json!(1));
}
