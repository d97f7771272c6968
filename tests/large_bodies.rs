//! Large request bodies cost bounded memory, and give it back: an
//! anonymous 13 MB body of small objects is read and refused without
//! being parsed, a body with more JSON values than the limit is 413 before
//! anyone parses it, and after bursts of such bodies the server's RSS
//! returns near where it was.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::process::ServerProcess;
use common::*;
use kci_lite::http::weight::MAX_BODY_VALUES;
use serde_json::Value;

/// RSS the server may keep above its starting point once a burst is over.
const RETAINED_MIB: u64 = 64;
const PARALLEL: usize = 8;

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

/// A node body whose `data` holds `objects` objects of two values each.
fn node_body(objects: usize) -> Vec<u8> {
    let items = vec![r#"{"a":1}"#; objects].join(",");
    format!(r#"{{"name":"big","path":["big"],"kind":"test","data":{{"x":[{items}]}}}}"#)
        .into_bytes()
}

/// POSTs `body` to /node on a connection of its own; status and detail.
fn post_node(addr: SocketAddr, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /latest/node HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer before it has read everything.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("an answer");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn login(process: &ServerProcess) -> String {
    let agent = client_with_timeout(Duration::from_secs(30));
    let mut login = agent
        .post(format!("{}/latest/user/login", process.url()))
        .send_form([("username", ADMIN_USERNAME), ("password", ADMIN_PASSWORD)])
        .unwrap();
    let login: Value = serde_json::from_str(&login.body_mut().read_to_string().unwrap()).unwrap();
    login["access_token"].as_str().unwrap().to_string()
}

fn start(dir: &std::path::Path) -> ServerProcess {
    ServerProcess::builder()
        .db(&dir.join("kci.db"))
        .current_dir(dir)
        .clear_env()
        .env("KCI_INITIAL_PASSWORD", ADMIN_PASSWORD)
        .env("KCI_BCRYPT_COST", "4")
        .start()
}

fn nodes_named_big(process: &ServerProcess) -> Value {
    let agent = client_with_timeout(Duration::from_secs(30));
    let url = format!("{}/latest/count?name=big", process.url());
    call_url(&agent, "GET", &url, None, None).unwrap().1
}

#[test]
fn a_body_over_the_value_limit_is_413_for_anyone_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = start(dir.path());
    let token = login(&process);
    let over = node_body(MAX_BODY_VALUES as usize / 2);
    for token in [None, Some(token.as_str())] {
        let (status, body) = post_node(process.addr(), token, &over);
        assert_detail(
            status,
            &body,
            413,
            &format!("Request body too large: more than {MAX_BODY_VALUES} JSON values"),
        );
    }
    // Just under the limit is an ordinary node.
    let under = node_body(MAX_BODY_VALUES as usize / 2 - 10);
    let (status, body) = post_node(process.addr(), Some(&token), &under);
    assert_eq!(status, 200, "{body}");
    assert_eq!(nodes_named_big(&process), 1);
    let stop = process.stop(Duration::from_secs(30));
    assert!(stop.is_some_and(|s| s.success()), "{}", process.log());
}

#[test]
fn bursts_of_large_bodies_leave_the_memory_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = start(dir.path());
    let token = login(&process);
    let before = rss_mib(process.pid());
    // 13 MB of small objects: far over the value limit, and parsing it
    // took about 770 MB per request before anything was refused.
    let anonymous = std::sync::Arc::new(node_body(13_000_000 / 8));
    // At the value limit, with a token: parsed, validated, stored.
    let heavy = std::sync::Arc::new(node_body(MAX_BODY_VALUES as usize / 2 - 10));
    for burst in 0..3 {
        let threads: Vec<_> = (0..PARALLEL)
            .map(|i| {
                let addr = process.addr();
                let (anonymous, heavy, token) = (anonymous.clone(), heavy.clone(), token.clone());
                std::thread::spawn(move || match i % 2 {
                    0 => post_node(addr, None, &anonymous).0,
                    _ => post_node(addr, Some(&token), &heavy).0,
                })
            })
            .collect();
        for (i, thread) in threads.into_iter().enumerate() {
            let status = thread.join().unwrap();
            let allowed: &[u16] = match i % 2 {
                0 => &[413],
                // Large bodies beyond the budget are turned away at once.
                _ => &[200, 503],
            };
            assert!(
                allowed.contains(&status),
                "burst {burst}, request {i}: {status}"
            );
        }
    }
    assert!(nodes_named_big(&process).as_u64().unwrap() >= 1);
    let settled = wait_for(
        Duration::from_secs(60),
        "the memory to be given back",
        || {
            let now = rss_mib(process.pid());
            (now <= before + RETAINED_MIB).then_some(now)
        },
    );
    eprintln!("RSS {before} MiB before three bursts, {settled} MiB after");
    let stop = process.stop(Duration::from_secs(30));
    assert!(stop.is_some_and(|s| s.success()), "{}", process.log());
}
