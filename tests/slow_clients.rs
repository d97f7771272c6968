//! Clients that stop reading: a listener that never reads its answer
//! delays no other listener or popper, on its channel or another, and is
//! itself disconnected once the send timeout passes.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Client timeout of a call that must be answered without waiting for the
/// stalled client (which the server waits up to its send timeout for).
const SOON: Duration = Duration::from_secs(10);
/// An event this large cannot fit in the socket buffers of a reader that
/// reads nothing, so writing its answer blocks.
const BIG_EVENT_BYTES: usize = 12 * 1024 * 1024;

/// A connection that asks `GET /latest/listen/{sub}` and then never reads:
/// its receive buffer is as small as the system allows.
fn stalled_listen(srv: &TestServer, token: &str, sub: u64) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&srv.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    let request = format!(
        "GET /latest/listen/{sub} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

fn wait_polled(srv: &TestServer, id: u64) {
    wait_for(SOON, "the listen to reach the broker", || {
        let (_, stats) = srv.get("/stats/subscriptions", srv.admin());
        stats
            .as_array()?
            .iter()
            .any(|s| s["id"] == id && !s["last_poll"].is_null())
            .then_some(())
    });
}

fn big_event() -> Value {
    json!({"data": {"blob": "x".repeat(BIG_EVENT_BYTES)}})
}

/// Publishes a small event on `channel` and checks that `sub` gets it.
fn delivered(srv: &TestServer, user: &TestUser, sub: u64, channel: &str) {
    let marker = uniq("m");
    srv.publish_on(user.auth(), channel, &json!({"data": {"marker": marker}}));
    let event = srv.next_event(user.auth(), sub, SOON);
    assert_eq!(event["data"]["marker"], marker, "{event}");
}

#[test]
fn a_listener_that_never_reads_delays_no_one_else() {
    // A send timeout far longer than any wait below: everything checked
    // here happens while the stalled client is still stalled.
    let srv = TestServer::builder()
        .var("KCI_SEND_TIMEOUT_SECONDS", "600")
        .start();
    let (slow, other) = (srv.make_user(&[]), srv.make_user(&[]));
    let (busy, quiet) = (uniq("busy"), uniq("quiet"));
    let stalled_sub = subscription_id(&srv.subscribe_to(slow.auth(), &busy, ""));
    let same_channel = subscription_id(&srv.subscribe_to(other.auth(), &busy, ""));
    let other_channel = subscription_id(&srv.subscribe_to(other.auth(), &quiet, ""));
    let _stalled = stalled_listen(&srv, &slow.token, stalled_sub);
    wait_polled(&srv, stalled_sub);
    // The stalled listener's answer is written (and blocks) now.
    srv.publish_on(slow.auth(), &busy, &big_event());

    delivered(&srv, &other, same_channel, &busy);
    delivered(&srv, &other, other_channel, &quiet);
    // A parked listen on the same channel, answered by a later publish.
    let parked = {
        let (addr, token) = (srv.addr, other.token.clone());
        std::thread::spawn(move || {
            let agent = client_with_timeout(SOON);
            let url = format!("http://{addr}/latest/listen/{same_channel}");
            call_url(&agent, "GET", &url, Some(&token), None)
        })
    };
    wait_for(SOON, "the second listen to park", || {
        let (_, stats) = srv.get("/stats/subscriptions", srv.admin());
        let polls =
            stats.as_array()?.iter().find(|s| s["id"] == same_channel)?["last_poll"].clone();
        Some(polls).filter(|p| !p.is_null())
    });
    let marker = uniq("m");
    srv.publish_on(other.auth(), &busy, &json!({"data": {"marker": marker}}));
    let (status, message) = parked.join().unwrap().unwrap();
    assert_eq!(status, 200, "{message}");
    let event = cloud_event(&message);
    if !is_beep(&event) {
        assert_eq!(event["data"]["marker"], marker, "{event}");
    }

    // Push lists: a pop that waits, then a push that wakes it.
    let list = uniq("list");
    let popper = {
        let (addr, token, list) = (srv.addr, other.token.clone(), list.clone());
        std::thread::spawn(move || {
            let agent = client_with_timeout(SOON);
            call_url(
                &agent,
                "GET",
                &format!("http://{addr}/latest/pop/{list}"),
                Some(&token),
                None,
            )
        })
    };
    std::thread::yield_now();
    let (status, body) = srv.post_json(
        &format!("/push/{list}"),
        other.auth(),
        &json!({"data": "job"}),
    );
    assert_eq!((status, &body), (200, &Value::Null));
    let (status, popped) = popper.join().unwrap().unwrap();
    assert_eq!(status, 200, "{popped}");
    assert_eq!(popped["data"], "job", "{popped}");
}

#[test]
fn a_listener_that_never_reads_is_disconnected() {
    let srv = TestServer::builder()
        .var("KCI_SEND_TIMEOUT_SECONDS", "1")
        .start();
    let slow = srv.make_user(&[]);
    let channel = uniq("busy");
    let sub = subscription_id(&srv.subscribe_to(slow.auth(), &channel, ""));
    let mut stalled = stalled_listen(&srv, &slow.token, sub);
    wait_polled(&srv, sub);
    srv.publish_on(slow.auth(), &channel, &big_event());
    // Reading nothing for longer than the send timeout is the scenario
    // itself, so this one test waits on purpose.
    std::thread::sleep(Duration::from_secs(3));
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let closed = loop {
        match stalled.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
        assert!(started.elapsed() < Duration::from_secs(60), "still reading");
    };
    assert!(closed, "the server kept the stalled connection open");
    assert!(
        received < BIG_EVENT_BYTES,
        "the whole answer ({received} bytes) was sent to a client that did not read"
    );
    // And the server serves everyone else as before.
    let (status, _) = srv.get("/stats/subscriptions", srv.admin());
    assert_eq!(status, 200);
}

/// Reads one HTTP/1.1 response with a Content-Length body from `stream`.
fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read a response head");
        assert_eq!(n, 1, "connection closed inside a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read a response body");
    (status, body)
}

/// Six `/listen`s pipelined on one connection, none answered yet.
fn pipelined_listens(addr: std::net::SocketAddr, token: &str, subs: &[u64]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut requests = String::new();
    for sub in subs {
        requests.push_str(&format!(
            "GET /latest/listen/{sub} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        ));
    }
    stream.write_all(requests.as_bytes()).unwrap();
    stream
}

#[test]
fn pipelined_listens_hang_nothing_and_are_answered_in_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let (busy, quiet) = (uniq("busy"), uniq("quiet"));
    let subs: Vec<u64> = (0..6)
        .map(|_| subscription_id(&srv.subscribe_to(user.auth(), &busy, "")))
        .collect();
    let probe = subscription_id(&srv.subscribe_to(user.auth(), &quiet, ""));
    let mut pipelined = pipelined_listens(srv.addr, &user.token, &subs);
    wait_polled(&srv, subs[0]);
    // everyone else is served while six listens wait on one connection
    delivered(&srv, &user, probe, &quiet);
    let list = uniq("list");
    let (status, _) = srv.post_json(&format!("/push/{list}"), user.auth(), &json!({"data": 1}));
    assert_eq!(status, 200);
    let (status, popped) = srv.get(&format!("/pop/{list}"), user.auth());
    assert_eq!((status, popped["data"].clone()), (200, json!(1)));
    // one event on their channel answers all six, in the order asked
    srv.publish_on(user.auth(), &busy, &json!({"data": "all"}));
    pipelined
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for _ in &subs {
        let (status, body) = read_response(&mut pipelined);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let message: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(cloud_event(&message)["data"], "all", "{message}");
    }
}

#[test]
fn sigterm_stops_the_server_with_stalled_and_pipelined_listeners() {
    use common::process::ServerProcess;
    let dir = tempfile::tempdir().unwrap();
    let mut process = ServerProcess::builder()
        .db(&dir.path().join("kci.db"))
        .current_dir(dir.path())
        .clear_env()
        .env("KCI_INITIAL_PASSWORD", ADMIN_PASSWORD)
        .env("KCI_BCRYPT_COST", "4")
        .env("KCI_SEND_TIMEOUT_SECONDS", "600")
        .start();
    let agent = client_with_timeout(SOON);
    let base = format!("{}/latest", process.url());
    let mut login = agent
        .post(format!("{base}/user/login"))
        .send_form([("username", ADMIN_USERNAME), ("password", ADMIN_PASSWORD)])
        .unwrap();
    let login: Value = serde_json::from_str(&login.body_mut().read_to_string().unwrap()).unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    let subscribe = |channel: &str| {
        let (status, sub) = call_url(
            &agent,
            "POST",
            &format!("{base}/subscribe/{channel}"),
            Some(&token),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{sub}");
        subscription_id(&sub)
    };
    let stalled_sub = subscribe("big");
    let subs: Vec<u64> = (0..6).map(|_| subscribe("other")).collect();
    let _pipelined = pipelined_listens(process.addr(), &token, &subs);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&process.addr().into()).unwrap();
    let mut stalled: TcpStream = socket.into();
    stalled
        .write_all(
            format!(
                "GET /latest/listen/{stalled_sub} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    wait_for(SOON, "the stalled listen to reach the broker", || {
        let (_, stats) = call_url(
            &agent,
            "GET",
            &format!("{base}/stats/subscriptions"),
            Some(&token),
            None,
        )
        .ok()?;
        stats
            .as_array()?
            .iter()
            .any(|s| s["id"] == stalled_sub && !s["last_poll"].is_null())
            .then_some(())
    });
    let (status, _) = call_url(
        &agent,
        "POST",
        &format!("{base}/publish/big"),
        Some(&token),
        Some(&big_event()),
    )
    .unwrap();
    assert_eq!(status, 200);
    let exited = process.stop(Duration::from_secs(30));
    assert!(
        exited.is_some_and(|s| s.success()),
        "no clean exit after SIGTERM: {exited:?}; log: {}",
        process.log()
    );
}

/// A POST that announces `length` body bytes and sends none.
fn silent_body(addr: std::net::SocketAddr, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /latest/node HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

#[test]
fn silent_bodies_hold_no_worker() {
    // 4 workers, 20 connections that announce a body and send nothing
    let srv = TestServer::builder()
        .var("KCI_HTTP_THREADS", "4")
        .var("KCI_BODY_TIMEOUT_SECONDS", "600")
        .start();
    let _silent: Vec<TcpStream> = (0..20).map(|_| silent_body(srv.addr, 2000)).collect();
    let user = srv.make_user(&[]);
    for _ in 0..10 {
        let (status, _) = srv.get("/whoami", user.auth());
        assert_eq!(status, 200);
    }
    let (status, node) = srv.post_json(
        "/node",
        user.auth(),
        &json!({"kind": "checkout", "name": uniq("n"), "path": ["p"]}),
    );
    assert_eq!(status, 200, "{node}");
}

#[test]
fn a_body_too_slow_to_arrive_is_408_and_closed() {
    let srv = TestServer::builder()
        .var("KCI_BODY_TIMEOUT_SECONDS", "1")
        .start();
    let mut stream = silent_body(srv.addr, 100);
    stream.write_all(b"{\"kind\": ").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (status, body) = read_response(&mut stream);
    assert_eq!(status, 408);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({"detail": "Request body not received in time"}));
    let mut rest = Vec::new();
    let closed = match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the connection stayed open");
    let (status, _) = srv.get("/", None);
    assert_eq!(status, 200);
}

#[test]
fn a_413_closes_the_connection_without_reading_the_body() {
    let srv = TestServer::builder()
        .var("KCI_MAX_BODY_BYTES", "1000")
        .start();
    // announces 1 GB, sends a little, then waits: answered at once
    let mut stream = silent_body(srv.addr, 1_000_000_000);
    stream.write_all(b"{\"kind\": \"checkout\"").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (status, body) = read_response(&mut stream);
    assert_eq!(status, 413);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({"detail": "Request body too large"}));
    let mut rest = Vec::new();
    assert!(
        stream.read_to_end(&mut rest).is_ok(),
        "the connection was not closed"
    );
}

#[test]
fn bodies_read_ahead_share_a_bounded_budget() {
    // the budget holds 16 bodies of the largest size, taken as their bytes
    // arrive (bodies up to 64 KiB take none)
    const LIMIT: usize = 2 * 1024 * 1024;
    let srv = TestServer::builder()
        .var("KCI_MAX_BODY_BYTES", &LIMIT.to_string())
        .var("KCI_BODY_TIMEOUT_SECONDS", "3")
        .start();
    // announcing a body takes nothing: 32 silent ones leave room
    let _silent: Vec<TcpStream> = (0..32).map(|_| silent_body(srv.addr, LIMIT)).collect();
    // 16 that sent all but their last byte take it all
    let _holding: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut stream = silent_body(srv.addr, LIMIT);
            stream.write_all(&vec![b' '; LIMIT - 1]).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500)); // let them take the budget
    // one more large body waits for room, then gives up within its deadline
    let mut waiting = silent_body(srv.addr, LIMIT / 2);
    waiting.write_all(&vec![b' '; LIMIT / 2]).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (status, body) = read_response(&mut waiting);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    // small bodies and requests without a body are served meanwhile
    let (status, _) = srv.post_json("/node", None, &json!({"name": "small"}));
    assert_eq!(status, 401);
    let (status, _) = srv.get("/", None);
    assert_eq!(status, 200);
}
