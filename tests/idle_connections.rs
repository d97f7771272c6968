//! Connections that send too slowly or nothing at all: a head trickled in
//! slower than its deadline is 408 and closed, a connection idle for the
//! idle timeout is closed, a waiting `/listen` never makes its connection
//! idle, and answers pipelined behind a waiting `/listen` hold no worker.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// How long anything that must happen "at once" may take, generously.
const SOON: Duration = Duration::from_secs(15);

/// Reads until the server closes the connection (or `SOON` passes, which
/// fails the test); what was read.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(SOON)).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return out,
            Err(err) => panic!("the connection was not closed ({err}); read so far: {out:?}"),
        }
    }
}

/// The status and JSON body of the one answer in `bytes`.
fn only_answer(bytes: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("an answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, serde_json::from_str(body).expect("a JSON body"))
}

/// Reads one answer with a Content-Length body: status and body.
fn read_answer(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    stream.set_read_timeout(Some(SOON)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read an answer head");
        assert_eq!(n, 1, "connection closed inside an answer head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read an answer body");
    (status, body)
}

/// A connection that has sent the start of a head and no more.
fn half_head(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /latest/ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream
}

fn assert_serving(srv: &TestServer) {
    let agent = client_with_timeout(SOON);
    let (status, body) = call_url(&agent, "GET", &srv.url("/"), None, None).unwrap();
    assert_eq!(status, 200, "{body}");
}

fn listen_request(sub: u64, token: &str) -> String {
    format!("GET /latest/listen/{sub} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
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

#[test]
fn a_head_trickled_in_slower_than_its_deadline_is_408_and_closed() {
    let srv = TestServer::builder()
        .var("KCI_HEAD_TIMEOUT_SECONDS", "1")
        .start();
    let mut stream = TcpStream::connect(srv.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    // One byte every 200 ms: each read of the server gets something, the
    // whole head never comes. Writes fail once the server has closed.
    let trickle = std::thread::spawn(move || {
        for byte in b"GET /latest/ HTTP/1.1\r\nHost: x\r\nX-Filler: "
            .iter()
            .cycle()
            .take(200)
        {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (status, body) = only_answer(&read_until_closed(&mut stream));
    assert_detail(status, &body, 408, "Request head not received in time");
    trickle.join().unwrap();
    assert_serving(&srv);
}

#[test]
fn many_unfinished_heads_hold_no_worker_and_end_at_their_deadline() {
    let srv = TestServer::builder()
        .var("KCI_HTTP_THREADS", "2")
        .var("KCI_HEAD_TIMEOUT_SECONDS", "2")
        .start();
    let mut held: Vec<TcpStream> = (0..200).map(|_| half_head(srv.addr)).collect();
    assert_serving(&srv);
    for stream in &mut held {
        let (status, body) = only_answer(&read_until_closed(stream));
        assert_detail(status, &body, 408, "Request head not received in time");
    }
    assert_serving(&srv);
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let srv = TestServer::builder()
        .var("KCI_IDLE_TIMEOUT_SECONDS", "1")
        .start();
    // Nothing ever sent: closed without an answer.
    let mut silent = TcpStream::connect(srv.addr).unwrap();
    assert!(read_until_closed(&mut silent).is_empty());
    // Idle after an answered request: the answer, then the close.
    let mut kept = TcpStream::connect(srv.addr).unwrap();
    kept.write_all(b"GET /latest/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, _) = read_answer(&mut kept);
    assert_eq!(status, 200);
    assert!(read_until_closed(&mut kept).is_empty());
}

#[test]
fn a_waiting_listen_never_makes_its_connection_idle() {
    let srv = TestServer::builder()
        .var("KCI_IDLE_TIMEOUT_SECONDS", "1")
        .start();
    let user = srv.make_user(&[]);
    let channel = uniq("slow");
    let sub = subscription_id(&srv.subscribe_to(user.auth(), &channel, ""));
    let mut stream = TcpStream::connect(srv.addr).unwrap();
    stream
        .write_all(listen_request(sub, &user.token).as_bytes())
        .unwrap();
    wait_polled(&srv, sub);
    // Longer than the idle timeout, on purpose: the listen still waits.
    std::thread::sleep(Duration::from_secs(3));
    srv.publish_on(user.auth(), &channel, &json!({"data": "late"}));
    let (status, body) = read_answer(&mut stream);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(cloud_event(&message)["data"], "late", "{message}");
    // Answered, the connection is idle and closed in its turn.
    assert!(read_until_closed(&mut stream).is_empty());
}

/// `/listen` on `sub` followed by `then` requests of `GET /latest/`, all
/// pipelined on one connection.
fn listen_then_roots(srv: &TestServer, token: &str, sub: u64, then: usize) -> TcpStream {
    let mut stream = TcpStream::connect(srv.addr).unwrap();
    let mut requests = listen_request(sub, token);
    for _ in 0..then {
        requests.push_str("GET /latest/ HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    stream.write_all(requests.as_bytes()).unwrap();
    stream
}

fn assert_listen_then_roots(stream: &mut TcpStream, data: &str, then: usize) {
    let (status, body) = read_answer(stream);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(cloud_event(&message)["data"], data, "{message}");
    for i in 0..then {
        let (status, body) = read_answer(stream);
        assert_eq!(
            status,
            200,
            "answer {i}: {}",
            String::from_utf8_lossy(&body)
        );
        let root: Value = serde_json::from_slice(&body).unwrap();
        assert!(root.get("message").is_some(), "answer {i}: {root}");
    }
}

#[test]
fn answers_pipelined_behind_a_waiting_listen_hold_no_worker() {
    // Two workers, eight answers waiting for their turn behind the listen:
    // were they written by workers, every worker would wait.
    let srv = TestServer::builder().var("KCI_HTTP_THREADS", "2").start();
    let user = srv.make_user(&[]);
    let channel = uniq("first");
    let sub = subscription_id(&srv.subscribe_to(user.auth(), &channel, ""));
    let before = srv.requests_total();
    let mut stream = listen_then_roots(&srv, &user.token, sub, 8);
    wait_polled(&srv, sub);
    // Every request counted so far: the listen, the eight behind it, and
    // each count asked for (this one included).
    let mut asked = 0;
    wait_for(SOON, "the pipelined requests to be handled", || {
        asked += 1;
        (srv.requests_total() >= before + 9 + asked).then_some(())
    });
    assert_serving(&srv);
    srv.publish_on(user.auth(), &channel, &json!({"data": "now"}));
    assert_listen_then_roots(&mut stream, "now", 8);
}

#[test]
fn requests_pipelined_past_the_in_flight_bound_are_all_answered_in_order() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let channel = uniq("many");
    let sub = subscription_id(&srv.subscribe_to(user.auth(), &channel, ""));
    let mut stream = listen_then_roots(&srv, &user.token, sub, 100);
    wait_polled(&srv, sub);
    assert_serving(&srv);
    srv.publish_on(user.auth(), &channel, &json!({"data": "go"}));
    assert_listen_then_roots(&mut stream, "go", 100);
}
