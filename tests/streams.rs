//! Event streams (`GET /stream/{channel}`, API.md 18.2) over raw sockets:
//! the wire format, who sees what, resuming (also across a restart), bad
//! input, clients that stall or go away, a thousand streams that hold no
//! thread, and the clean end at shutdown.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::process::ServerProcess;
use common::*;
use serde_json::{Value, json};

/// Long enough for anything on a loaded machine; never a timed assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// One event of a stream.
#[derive(Clone, Debug)]
struct Sse {
    id: String,
    fields: Vec<String>,
    data: String,
}

impl Sse {
    fn envelope(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }

    fn n(&self) -> Value {
        self.envelope()["data"]["n"].clone()
    }
}

/// A `GET /stream/...` over a raw socket, de-chunked and parsed as events
/// arrive.
struct Stream {
    sock: TcpStream,
    status: u16,
    head: String,
    raw: Vec<u8>,
    body: Vec<u8>,
    chunked: bool,
    /// Terminal chunk seen.
    done: bool,
    eof: bool,
    pending: Vec<(String, String)>,
    events: Vec<Sse>,
    comments: Vec<String>,
    next: usize,
}

impl Stream {
    fn send(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        rcvbuf: Option<usize>,
    ) -> Stream {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.connect(&addr.into()).unwrap();
        let mut sock: TcpStream = socket.into();
        let mut request =
            format!("GET /latest{path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        sock.write_all(request.as_bytes()).unwrap();
        Stream {
            sock,
            status: 0,
            head: String::new(),
            raw: Vec::new(),
            body: Vec::new(),
            chunked: false,
            done: false,
            eof: false,
            pending: Vec::new(),
            events: Vec::new(),
            comments: Vec::new(),
            next: 0,
        }
    }

    /// Sends the request and reads the head.
    fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut s = Stream::send(addr, path, headers, None);
        s.read_head();
        s
    }

    /// A stream that answered 200 `text/event-stream`.
    fn ok(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Stream {
        let s = Stream::open(addr, path, headers);
        assert_eq!(s.status, 200, "{path}: {}", s.head);
        assert!(
            s.header("content-type")
                .unwrap()
                .starts_with("text/event-stream")
        );
        s
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn read_head(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.raw.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(
                !self.eof,
                "closed before a head: {:?}",
                String::from_utf8_lossy(&self.raw)
            );
            assert!(self.recv(deadline), "no head");
        }
        let end = self.raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        self.head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
        self.raw.drain(..end + 4);
        self.status = self.head.split(' ').nth(1).unwrap().parse().unwrap();
        self.chunked = self
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        self.dechunk();
    }

    fn recv(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.sock.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 65536];
        match self.sock.read(&mut buf) {
            Ok(0) => self.eof = true,
            Ok(n) => self.raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => self.eof = true,
        }
        true
    }

    fn dechunk(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        while !self.done {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.raw[..eol]).unwrap(), 16).unwrap();
            if size == 0 {
                self.done = true;
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            assert_eq!(&self.raw[eol + 2 + size..eol + 4 + size], b"\r\n");
            self.raw.drain(..eol + 4 + size);
        }
    }

    fn parse(&mut self) {
        while let Some(eol) = self.body.iter().position(|b| *b == b'\n') {
            let line = String::from_utf8(self.body[..eol].to_vec()).unwrap();
            self.body.drain(..=eol);
            if line.is_empty() {
                if !self.pending.is_empty() {
                    let pending = std::mem::take(&mut self.pending);
                    let get = |name: &str| {
                        pending
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    self.events.push(Sse {
                        id: get("id"),
                        data: get("data"),
                        fields: pending.iter().map(|(k, _)| k.clone()).collect(),
                    });
                }
            } else if let Some(comment) = line.strip_prefix(':') {
                self.comments.push(comment.to_string());
            } else {
                let (k, v) = line.split_once(": ").unwrap();
                self.pending.push((k.to_string(), v.to_string()));
            }
        }
    }

    fn finished(&self) -> bool {
        self.eof || self.done
    }

    fn pump(&mut self, deadline: Instant) -> bool {
        let got = self.recv(deadline);
        self.dechunk();
        self.parse();
        got
    }

    fn next_event(&mut self) -> Sse {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.next < self.events.len() {
                self.next += 1;
                return self.events[self.next - 1].clone();
            }
            assert!(
                !self.finished(),
                "the stream ended after {} events",
                self.events.len()
            );
            assert!(self.pump(deadline), "no event");
        }
    }

    fn take(&mut self, n: usize) -> Vec<Sse> {
        (0..n).map(|_| self.next_event()).collect()
    }

    /// Reads until the stream ends.
    fn drain(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.finished() {
            assert!(self.pump(deadline), "the stream did not end");
        }
    }
}

fn publish_n(srv: &TestServer, token: &str, channel: &str, ns: std::ops::Range<i64>) {
    for n in ns {
        srv.publish_on(Some(token), channel, &json!({"data": {"n": n}}));
    }
}

fn ns(events: &[Sse]) -> Vec<Value> {
    events.iter().map(Sse::n).collect()
}

fn ids(events: &[Sse]) -> Vec<i64> {
    events.iter().map(|e| e.id.parse().unwrap()).collect()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn events_are_sent_as_they_commit_with_their_sequence_number() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("st");
    publish_n(&srv, &user.token, &channel, 0..2);
    let mut stream = Stream::ok(srv.addr, &format!("/stream/{channel}"), &[]);
    assert_eq!(stream.header("cache-control").as_deref(), Some("no-cache"));
    assert!(stream.chunked);
    publish_n(&srv, &user.token, &channel, 2..4);
    let events = stream.take(2);
    assert_eq!(ns(&events), [json!(2), json!(3)]);
    for event in &events {
        assert_eq!(event.fields, ["id", "event", "data"]);
        let env = event.envelope();
        assert_eq!(env["owner"], json!(user.username));
        assert_eq!(json!(event.id.parse::<i64>().unwrap()), env["_sequence_id"]);
    }
    // the same text as /listen carries
    let sub = srv.subscribe_to(user.auth(), &channel, "");
    let sub = subscription_id(&sub);
    srv.publish_on(user.auth(), &channel, &json!({"data": {"n": "ü ✓\n"}}));
    let (message, _) = srv.listen_message(user.auth(), sub, PATIENCE);
    assert_eq!(stream.next_event().data, message["data"].as_str().unwrap());
}

#[test]
fn a_token_applies_the_owner_filter_unless_promisc() {
    let srv = TestServer::start();
    let (ann, bob) = (srv.make_user(&[]), srv.make_user(&[]));
    let channel = uniq("st");
    let bearer = format!("Bearer {}", ann.token);
    let auth = [("Authorization", bearer.as_str())];
    let mut mine = Stream::ok(srv.addr, &format!("/stream/{channel}"), &auth);
    let mut all = Stream::ok(srv.addr, &format!("/stream/{channel}?promisc=yes"), &auth);
    let mut anon = Stream::ok(srv.addr, &format!("/stream/{channel}"), &[]);
    publish_n(&srv, &bob.token, &channel, 1..2);
    publish_n(&srv, &ann.token, &channel, 2..3);
    assert_eq!(ns(&mine.take(1)), [json!(2)]);
    assert_eq!(ns(&all.take(2)), [json!(1), json!(2)]);
    assert_eq!(ns(&anon.take(2)), [json!(1), json!(2)]);
}

#[test]
fn conditions_apply_to_the_event_data() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("st");
    let mut stream = Stream::ok(
        srv.addr,
        &format!("/stream/{channel}?kind__in=a,b&n__gte=2"),
        &[],
    );
    for data in [
        json!("text"),
        json!({"kind": "a", "n": 1}),
        json!({"kind": "c", "n": 5}),
        json!({"kind": "b", "n": 2}),
        json!([1]),
    ] {
        srv.publish_on(user.auth(), &channel, &json!({"data": data}));
    }
    srv.publish_on(
        user.auth(),
        &channel,
        &json!({"data": {"kind": "a", "n": 3}}),
    );
    assert_eq!(ns(&stream.take(2)), [json!(2), json!(3)]);
}

/// A stream request that must be refused: path, headers, status.
type Refused<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);

#[test]
fn bad_requests_are_refused_with_a_detail() {
    let srv = TestServer::start();
    let cases: &[Refused] = &[
        ("/stream/x?after=", &[], 400),
        ("/stream/x?after=-1", &[], 400),
        ("/stream/x?after=abc", &[], 400),
        ("/stream/x?after=1.5", &[], 400),
        ("/stream/x", &[("Last-Event-ID", "abc")], 400),
        ("/stream/x", &[("Last-Event-ID", "-3")], 400),
        ("/stream/x?after=1", &[("Last-Event-ID", "x")], 400),
        ("/stream/x?name__like=x", &[], 400),
        ("/stream/x?name__re=%5B", &[], 400),
        ("/stream/x?n__int=abc", &[], 400),
        ("/stream/x?kind__in=null", &[], 400),
        ("/stream/x?data..x=1", &[], 400),
        ("/stream/x?promisc=maybe", &[], 422),
        ("/stream/x", &[("Authorization", "Bearer not-a-token")], 401),
        (
            "/stream/x?after=abc",
            &[("Authorization", "Bearer not-a-token")],
            401,
        ),
    ];
    for (path, headers, status) in cases {
        let reply = srv.request_full("GET", &format!("/latest{path}"), None, headers, Body::None);
        assert_eq!(reply.status, *status, "{path} {headers:?}: {}", reply.text);
        let detail = &reply.json()["detail"];
        match status {
            422 => assert_eq!(detail[0]["loc"], json!(["query", "promisc"])),
            _ => assert!(
                detail.as_str().is_some_and(|d| !d.is_empty()),
                "{path}: {detail}"
            ),
        }
    }
    let reply = srv.request_full(
        "GET",
        "/latest/stream/x?name__like=x",
        None,
        &[],
        Body::None,
    );
    assert_eq!(
        reply.json()["detail"],
        json!("Unsupported query operator: like")
    );
    // the server still streams after all that
    let user = srv.make_user(&[]);
    let mut stream = Stream::ok(srv.addr, "/stream/x", &[]);
    publish_n(&srv, &user.token, "x", 7..8);
    assert_eq!(ns(&stream.take(1)), [json!(7)]);
}

#[test]
fn resuming_replays_then_goes_live_with_no_gap_or_duplicate() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("st");
    publish_n(&srv, &user.token, &channel, 0..300);
    let first = {
        let mut all = Stream::ok(srv.addr, &format!("/stream/{channel}?after=0"), &[]);
        all.take(300)
    };
    assert_eq!(ns(&first), (0..300).map(|n| json!(n)).collect::<Vec<_>>());
    let resume_from = first[99].id.clone();
    // publishing goes on while the resumed stream replays
    let publisher = {
        let (base, token, channel) = (srv.base.clone(), user.token.clone(), channel.clone());
        std::thread::spawn(move || {
            let agent = client_with_timeout(PATIENCE);
            for n in 300..400 {
                let url = format!("{base}/latest/publish/{channel}");
                let body = json!({"data": {"n": n}});
                let (status, _) =
                    call_url(&agent, "POST", &url, Some(&token), Some(&body)).unwrap();
                assert_eq!(status, 200);
            }
        })
    };
    let mut resumed = Stream::ok(
        srv.addr,
        &format!("/stream/{channel}?after=0"),
        &[("Last-Event-ID", &resume_from)],
    );
    let events = resumed.take(300);
    publisher.join().unwrap();
    assert_eq!(
        ns(&events),
        (100..400).map(|n| json!(n)).collect::<Vec<_>>()
    );
    let got = ids(&events);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, none twice");
}

#[test]
fn resuming_works_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kci.db");
    let channel = uniq("st");
    let secret = uniq("restart-secret");
    let (token, last_seen) = {
        let srv = TestServer::builder()
            .var("SECRET_KEY", &secret)
            .db(&db)
            .start();
        let user = srv.make_user(&[]);
        let mut stream = Stream::ok(srv.addr, &format!("/stream/{channel}"), &[]);
        publish_n(&srv, &user.token, &channel, 0..5);
        let events = stream.take(3);
        publish_n(&srv, &user.token, &channel, 5..6);
        (user.token, events[2].id.clone())
    };
    let srv = TestServer::builder()
        .var("SECRET_KEY", &secret)
        .db(&db)
        .start();
    let mut resumed = Stream::ok(
        srv.addr,
        &format!("/stream/{channel}"),
        &[("Last-Event-ID", &last_seen)],
    );
    assert_eq!(ns(&resumed.take(3)), [json!(3), json!(4), json!(5)]);
    publish_n(&srv, &token, &channel, 6..7);
    assert_eq!(ns(&resumed.take(1)), [json!(6)]);
}

#[test]
fn a_stalled_client_is_dropped_and_delays_no_one() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("slow");
    let mut stalled = Stream::send(srv.addr, &format!("/stream/{channel}"), &[], Some(4096));
    stalled.read_head();
    let mut reader = Stream::ok(srv.addr, &format!("/stream/{channel}"), &[]);
    wait_for(PATIENCE, "both streams open", || {
        (srv.app.streams.open_streams() == 2).then_some(())
    });
    // 300 events of 64 KiB: far more than the bound and the socket buffers
    let collector = std::thread::spawn(move || {
        reader.take(300);
        reader
    });
    let pad = "x".repeat(64 * 1024);
    for n in 0..300 {
        let body = json!({"data": {"n": n, "pad": pad}});
        srv.publish_on(user.auth(), &channel, &body);
    }
    let reader = collector.join().unwrap();
    let want: Vec<Value> = (0..300).map(|n| json!(n)).collect();
    assert_eq!(ns(&reader.events), want);
    wait_for(PATIENCE, "the stalled stream to be let go", || {
        (srv.app.streams.open_streams() == 1).then_some(())
    });
    // what it got is a prefix, and it ends without the terminal chunk
    stalled.drain();
    assert!(!stalled.done, "a dropped stream does not end cleanly");
    let got = ids(&stalled.events);
    assert!(got.len() < 300);
    assert_eq!(got, ids(&reader.events)[..got.len()]);
    // ... and resumes where it was
    let last = got.last().map_or("0".to_string(), i64::to_string);
    let mut again = Stream::ok(
        srv.addr,
        &format!("/stream/{channel}"),
        &[("Last-Event-ID", &last)],
    );
    assert_eq!(
        ids(&again.take(300 - got.len())),
        ids(&reader.events)[got.len()..]
    );
}

#[test]
fn clients_that_go_away_are_let_go_and_leave_nothing_behind() {
    let srv = TestServer::builder().var("KEEP_ALIVE_PERIOD", "0").start();
    let user = srv.make_user(&[]);
    let channel = uniq("gone");
    let fds = open_fds();
    for _ in 0..5 {
        let streams: Vec<Stream> = (0..100)
            .map(|_| Stream::ok(srv.addr, &format!("/stream/{channel}"), &[]))
            .collect();
        wait_for(PATIENCE, "100 streams", || {
            (srv.app.streams.open_streams() == 100).then_some(())
        });
        drop(streams);
        // nothing is published and no keep-alive is written: the closed
        // sockets alone tell
        wait_for(PATIENCE, "the streams to be let go", || {
            (srv.app.streams.open_streams() == 0).then_some(())
        });
    }
    wait_for(PATIENCE, "the descriptors to be closed", || {
        (open_fds() <= fds + 2).then_some(())
    });
    let mut stream = Stream::ok(srv.addr, &format!("/stream/{channel}"), &[]);
    publish_n(&srv, &user.token, &channel, 1..2);
    assert_eq!(ns(&stream.take(1)), [json!(1)]);
}

#[test]
fn a_thousand_streams_hold_no_thread_and_all_get_every_event() {
    let srv = TestServer::builder().var("KEEP_ALIVE_PERIOD", "0").start();
    let user = srv.make_user(&[]);
    let channel = uniq("many");
    let before = threads();
    let mut streams: Vec<Stream> = (0..1000)
        .map(|_| Stream::send(srv.addr, &format!("/stream/{channel}"), &[], None))
        .collect();
    for stream in &mut streams {
        stream.read_head();
        assert_eq!(stream.status, 200);
    }
    wait_for(PATIENCE, "1000 streams", || {
        (srv.app.streams.open_streams() == 1000).then_some(())
    });
    // the connection threads end once their stream is taken over
    wait_for(PATIENCE, "the connection threads to end", || {
        (threads() < before + 50).then_some(())
    });
    let (status, _) = srv.get("/nodes?limit=1", None);
    assert_eq!(status, 200);
    publish_n(&srv, &user.token, &channel, 1..3);
    for stream in &mut streams {
        assert_eq!(ns(&stream.take(2)), [json!(1), json!(2)]);
    }
}

#[test]
fn keep_alives_are_comments_and_not_events() {
    let srv = TestServer::builder()
        .var("KEEP_ALIVE_PERIOD", "0.2")
        .start();
    let mut stream = Stream::ok(srv.addr, &format!("/stream/{}", uniq("quiet")), &[]);
    let deadline = Instant::now() + PATIENCE;
    while stream.comments.len() < 2 {
        assert!(stream.pump(deadline), "no keep-alive");
    }
    assert_eq!(stream.comments[..2], [" keep-alive", " keep-alive"]);
    assert!(stream.events.is_empty());
}

#[test]
fn a_stream_open_at_sigterm_ends_cleanly_and_the_server_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::builder()
        .db(&dir.path().join("kci.db"))
        .current_dir(dir.path())
        .env("SECRET_KEY", "stream-test-secret-0123456789abcdef0123")
        .env("KCI_INITIAL_PASSWORD", "stream-admin-pw")
        .env("KCI_BCRYPT_COST", "4")
        .env("KEEP_ALIVE_PERIOD", "1")
        .start();
    let agent = client_with_timeout(PATIENCE);
    let login = format!("{}/latest/user/login", server.url());
    let mut resp = agent
        .post(&login)
        .send_form([("username", "admin"), ("password", "stream-admin-pw")])
        .unwrap();
    let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    let mut stream = Stream::ok(server.addr(), "/stream/bye", &[]);
    let url = format!("{}/latest/publish/bye", server.url());
    let (status, _) = call_url(
        &agent,
        "POST",
        &url,
        Some(&token),
        Some(&json!({"data": {"n": 1}})),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(ns(&stream.take(1)), [json!(1)]);
    let status = server
        .stop(PATIENCE)
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    stream.drain();
    assert!(stream.done, "the terminal chunk");
    assert!(stream.body.is_empty() && stream.pending.is_empty());
    assert_eq!(stream.events.len(), 1);
}
