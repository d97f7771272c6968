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
