//! Write throughput of the group-commit writer: N threads each doing small
//! single-row writes through `Store::write`, with synchronous=FULL and
//! NORMAL. Prints writes/s; run with `cargo bench --bench writer`.

use std::sync::Arc;
use std::time::Instant;

use kci_lite::store::{Store, StoreError, meta};

const WRITES_PER_THREAD: usize = 400;

fn run(threads: usize, full: bool) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(&dir.path().join("bench.db"), full).expect("open"));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..WRITES_PER_THREAD {
                    store
                        .write(move |c, _| meta::set(c, &format!("k-{t}-{i}"), "value"))
                        .map_err(|e: StoreError| e)
                        .expect("write");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let secs = started.elapsed().as_secs_f64();
    store.close();
    (threads * WRITES_PER_THREAD) as f64 / secs
}

fn main() {
    println!("group-commit writer: {WRITES_PER_THREAD} acknowledged writes per thread");
    println!(
        "{:>8} {:>16} {:>16}",
        "threads", "FULL writes/s", "NORMAL writes/s"
    );
    for threads in [1, 4, 16, 64] {
        let full = run(threads, true);
        let normal = run(threads, false);
        println!("{threads:>8} {full:>16.0} {normal:>16.0}");
    }
}
