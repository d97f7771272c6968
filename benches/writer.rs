//! Write throughput of the group-commit writer: N threads each doing small
//! single-row writes through `Store::write` for a fixed time, with
//! synchronous=FULL and NORMAL. Prints acknowledged writes/s; run with
//! `cargo bench --bench writer`.
//!
//! Each run first writes enough to pass the first WAL checkpoint: until
//! then every commit grows the WAL file, and a sync of a file that grew
//! also commits the file system's journal, which a long-running server
//! (whose WAL is rewound at each checkpoint and keeps its size) does not
//! pay. Both figures are printed: `cold` (a fresh file, the first writes)
//! and the steady state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kci_lite::store::{Store, StoreError, meta};

/// How long each measured run writes.
const RUN_TIME: Duration = Duration::from_secs(3);
/// Writes done before a steady-state run: more than one WAL checkpoint's
/// worth (SQLite checkpoints at 1000 pages, and a write here changes a few).
const WARM_UP_WRITES: usize = 2_000;

/// Acknowledged writes/s of `threads` writers for `RUN_TIME`.
fn writes_per_second(store: &Arc<Store>, threads: usize, tag: &str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, stop, done) = (Arc::clone(store), Arc::clone(&stop), Arc::clone(&done));
            let tag = tag.to_string();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{tag}-{t}-{i}");
                    store
                        .write(move |c, _| meta::set(c, &key, "value"))
                        .map_err(|e: StoreError| e)
                        .expect("write");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(RUN_TIME);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("thread");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// (cold, steady) writes/s of `threads` writers on fresh databases.
fn run(threads: usize, full: bool) -> (f64, f64) {
    let open = |dir: &tempfile::TempDir| {
        Arc::new(Store::open(&dir.path().join("bench.db"), full).expect("open"))
    };
    let cold_dir = tempfile::tempdir().expect("temp dir");
    let store = open(&cold_dir);
    let cold = writes_per_second(&store, threads, "cold");
    store.close();

    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    for i in 0..WARM_UP_WRITES {
        store
            .write(move |c, _| meta::set(c, &format!("warm-{i}"), "value"))
            .map_err(|e: StoreError| e)
            .expect("warm-up write");
    }
    let steady = writes_per_second(&store, threads, "steady");
    store.close();
    (cold, steady)
}

fn main() {
    println!(
        "group-commit writer: acknowledged writes/s, {} s per run; cold = fresh file, \
         steady = after {WARM_UP_WRITES} writes (past the first WAL checkpoint)",
        RUN_TIME.as_secs()
    );
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>12}",
        "threads", "FULL cold", "FULL steady", "NORMAL cold", "NORMAL steady"
    );
    for threads in [1, 4, 16, 64] {
        let (full_cold, full) = run(threads, true);
        let (normal_cold, normal) = run(threads, false);
        println!("{threads:>8} {full_cold:>12.0} {full:>12.0} {normal_cold:>12.0} {normal:>12.0}");
    }
}
