//! Clients that try to take the server away from everyone else: idle
//! `Connection: Upgrade` requests, more connections than the process has
//! file descriptors for, clients that never read large answers, and
//! clients that announce large bodies and trickle them. In each case
//! another client is still served, and SIGTERM still stops the server.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::process::ServerProcess;
use common::*;
use serde_json::{Value, json};

/// How long anything that must happen "at once" may take, generously.
const SOON: Duration = Duration::from_secs(15);

fn assert_served(addr: SocketAddr) {
    let agent = client_with_timeout(SOON);
    let url = format!("http://{addr}/latest/");
    let (status, body) = call_url(&agent, "GET", &url, None, None).unwrap();
    assert_eq!(status, 200, "{body}");
}

fn start(dir: &std::path::Path, vars: &[(&str, &str)]) -> ServerProcess {
    let mut launch = ServerProcess::builder()
        .db(&dir.join("kci.db"))
        .current_dir(dir)
        .clear_env()
        .env("KCI_INITIAL_PASSWORD", ADMIN_PASSWORD)
        .env("KCI_BCRYPT_COST", "4");
    for (name, value) in vars {
        launch = launch.env(name, value);
    }
    launch.start()
}

fn stops(mut process: ServerProcess) {
    let stop = process.stop(Duration::from_secs(10));
    assert!(stop.is_some_and(|s| s.success()), "{}", process.log());
}

#[test]
fn idle_upgrade_requests_hold_no_worker() {
    let dir = tempfile::tempdir().unwrap();
    let process = start(dir.path(), &[("KCI_HTTP_THREADS", "2")]);
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = TcpStream::connect(process.addr()).unwrap();
            stream
                .write_all(
                    b"GET /latest/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
                      Upgrade: websocket\r\n\r\n",
                )
                .unwrap();
            stream
        })
        .collect();
    assert_served(process.addr());
    // each was answered as an ordinary request, and its connection ended
    for stream in &mut held {
        stream.set_read_timeout(Some(SOON)).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    stops(process);
}

#[test]
fn more_connections_than_descriptors_leave_the_server_serving() {
    let dir = tempfile::tempdir().unwrap();
    // 256 descriptors: room for about 64 connections
    let process = ServerProcess::builder()
        .wrapper(&["prlimit", "--nofile=256:256", "--"])
        .db(&dir.path().join("kci.db"))
        .current_dir(dir.path())
        .clear_env()
        .env("KCI_INITIAL_PASSWORD", ADMIN_PASSWORD)
        .env("KCI_BCRYPT_COST", "4")
        .start();
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(process.addr()).ok())
        .collect();
    // the ones over the cap are closed at once; the server stays up
    std::thread::sleep(Duration::from_millis(500));
    drop(flood);
    wait_for(SOON, "the server to serve again", || {
        let agent = client_with_timeout(Duration::from_secs(2));
        let url = format!("http://{}/latest/", process.addr());
        call_url(&agent, "GET", &url, None, None)
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    assert!(!process.log().contains("panicked"), "{}", process.log());
    stops(process);
}

/// A connection that asks for `path` and never reads: its receive buffer
/// is as small as the system allows.
fn never_reads(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    stream
}

#[test]
fn clients_that_never_read_large_answers_hold_no_worker() {
    let dir = tempfile::tempdir().unwrap();
    let process = start(
        dir.path(),
        &[
            ("KCI_HTTP_THREADS", "2"),
            ("KCI_SEND_TIMEOUT_SECONDS", "600"),
        ],
    );
    let agent = client_with_timeout(SOON);
    let base = format!("{}/latest", process.url());
    let mut login = agent
        .post(format!("{base}/user/login"))
        .send_form([("username", ADMIN_USERNAME), ("password", ADMIN_PASSWORD)])
        .unwrap();
    let login: Value = serde_json::from_str(&login.body_mut().read_to_string().unwrap()).unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    let padding = "x".repeat(10_000);
    for i in 0..100 {
        let body = json!({"name": format!("big{i}"), "path": ["big"], "data": {"p": padding}});
        let (status, node) = call_url(
            &agent,
            "POST",
            &format!("{base}/node"),
            Some(&token),
            Some(&body),
        )
        .unwrap();
        assert_eq!(status, 200, "{node}");
    }
    // a 1 MB answer each, several per worker, none of them read
    let _stalled: Vec<TcpStream> = [
        "/latest/nodes/fast",
        "/latest/nodes?limit=100",
        "/latest/events",
    ]
    .iter()
    .cycle()
    .take(9)
    .map(|path| never_reads(process.addr(), path))
    .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_served(process.addr());
    let (status, _) = call_url(&agent, "GET", &format!("{base}/count"), None, None).unwrap();
    assert_eq!(status, 200);
    stops(process);
}

/// A POST to /node that announces `head` framing and sends a few bytes.
fn trickled_body(addr: SocketAddr, framing: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            format!("POST /latest/node HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n")
                .as_bytes(),
        )
        .unwrap();
    stream
}

#[test]
fn trickled_large_bodies_hold_up_no_small_one() {
    let dir = tempfile::tempdir().unwrap();
    let process = start(dir.path(), &[("KCI_BODY_TIMEOUT_SECONDS", "120")]);
    // 32 bodies of the largest size announced (twice the budget), and 32
    // chunked ones, each with a first byte and nothing more
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut stream = trickled_body(process.addr(), "Content-Length: 16777216\r\n");
        stream.write_all(b"[").unwrap();
        held.push(stream);
        let mut stream = trickled_body(process.addr(), "Transfer-Encoding: chunked\r\n");
        stream.write_all(b"1\r\n[\r\n").unwrap();
        held.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    // an ordinary small POST is answered at once (401: no token)
    let agent = client_with_timeout(SOON);
    let url = format!("{}/latest/node", process.url());
    let body = json!({"name": "small", "path": ["small"]});
    let (status, reply) = call_url(&agent, "POST", &url, None, Some(&body)).unwrap();
    assert_eq!(status, 401, "{reply}");
    for stream in &held {
        let mut probe = [0u8; 1];
        stream.set_nonblocking(true).unwrap();
        let read = (&*stream).read(&mut probe);
        assert!(
            matches!(&read, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "a trickled body was answered already: {read:?}"
        );
    }
    stops(process);
}
