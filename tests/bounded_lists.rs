//! Long lists are streamed from the stored documents in bounded memory:
//! eight parallel unbounded `GET /nodes/fast`, `GET /nodes` with a huge
//! `limit` and unbounded `GET /events` over 10,000 nodes (and their events)
//! of 2 KiB leave the server's peak RSS nearly where it was, and every
//! answer is complete and valid.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use common::process::ServerProcess;
use common::*;
use kci_lite::model::node::Node;
use kci_lite::store::{events, nodes};
use serde::de::IgnoredAny;
use serde_json::{Value, json};

const NODES: usize = 10_000;
const PARALLEL: usize = 8;
/// Peak RSS growth allowed for all the parallel answers together (each
/// reader has SQLite's page cache and the allocator's cache of its
/// thread); building them in memory took hundreds of MiB.
const PEAK_GROWTH_KIB: u64 = 96 * 1024;

/// A database with `NODES` nodes of about 1 KiB each in group `group`.
fn database(dir: &std::path::Path, group: &str) -> std::path::PathBuf {
    let db = dir.join("kci.db");
    let srv = TestServer::builder().db(&db).start();
    let padding = "x".repeat(1600);
    let now = kci_lite::timestamp::now();
    let group = group.to_string();
    srv.app
        .store
        .write(move |c, out| {
            for i in 0..NODES {
                let body = json!({"kind": "test", "name": format!("t{i}"), "path": ["p"],
                                  "group": group, "data": {"padding": padding}});
                let node = Node::create(&body, "admin", now).expect("valid node");
                nodes::insert(c, out, &node)?;
                events::append_node_event(c, out, "test", &node, false, None)?;
            }
            Ok::<_, kci_lite::store::StoreError>(())
        })
        .expect("insert nodes");
    db
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The number of items of a JSON array read from `url`, without keeping
/// them (the client must not be what uses the memory).
fn count_items(url: &str, items_in: Option<&str>) -> usize {
    let agent = client_with_timeout(Duration::from_secs(120));
    let resp = agent.get(url).call().unwrap();
    assert_eq!(resp.status(), 200);
    let reader = resp.into_body().into_reader();
    match items_in {
        None => serde_json::from_reader::<_, Vec<IgnoredAny>>(reader)
            .unwrap()
            .len(),
        Some(key) => {
            #[derive(serde::Deserialize)]
            struct Page {
                items: Vec<IgnoredAny>,
                total: u64,
            }
            let page: Page = serde_json::from_reader(reader).unwrap();
            assert_eq!(page.total as usize, NODES, "{key}");
            page.items.len()
        }
    }
}

#[test]
fn long_lists_are_streamed_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let group = uniq("long");
    let db = database(dir.path(), &group);
    let mut process = ServerProcess::builder()
        .db(&db)
        .current_dir(dir.path())
        .clear_env()
        .env("KCI_INITIAL_PASSWORD", ADMIN_PASSWORD)
        .env("KCI_BCRYPT_COST", "4")
        .start();
    let base = format!("{}/latest", process.url());
    // warm up: one answer of each kind, so caches are counted before
    assert_eq!(
        count_items(&format!("{base}/nodes/fast?group={group}"), None),
        NODES
    );
    let before = peak_rss_kib(process.pid());
    let threads: Vec<_> = (0..PARALLEL)
        .map(|i| {
            let url = match i % 4 {
                0 => format!("{base}/nodes/fast?group={group}"),
                1 | 3 => format!("{base}/nodes?group={group}&limit=1000000"),
                _ => format!("{base}/events?group={group}"),
            };
            std::thread::spawn(move || count_items(&url, (i % 2 == 1).then_some("page")))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), NODES);
    }
    let after = peak_rss_kib(process.pid());
    eprintln!(
        "peak RSS {before} KiB before, {after} KiB after {PARALLEL} parallel lists of {NODES} nodes"
    );
    assert!(
        after.saturating_sub(before) < PEAK_GROWTH_KIB,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    // a streamed event list says what a small one says
    let agent = client_with_timeout(Duration::from_secs(60));
    let (status, small) = call_url(
        &agent,
        "GET",
        &format!("{base}/events?group={group}&limit=20"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let (status, all) = call_url(
        &agent,
        "GET",
        &format!("{base}/events?group={group}&limit=600"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 600);
    assert_eq!(small.as_array().unwrap()[..], all.as_array().unwrap()[..20]);
    // small pages are still answered from memory, and agree
    let (status, page) = call_url(
        &client_with_timeout(Duration::from_secs(10)),
        "GET",
        &format!("{base}/nodes?group={group}&limit=3&offset=5"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["total"], json!(NODES));
    let stop = process.stop(Duration::from_secs(30));
    assert!(stop.is_some_and(|s| s.success()), "{}", process.log());
    let _: Value = page;
}
