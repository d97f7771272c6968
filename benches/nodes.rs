//! Node benchmark: generates a KernelCI-like tree (checkouts → kbuilds → jobs
//! → tests), loads the first 10 000 nodes through the HTTP API of the
//! release binary and the rest straight into its database file (with the
//! server stopped, through the store in large transactions, node events
//! included), and prints, on the fresh database, at 10 000 nodes and at N:
//!
//! * `POST /node` (a checkout body), `GET /node/{id}` (random ids) and
//!   `GET /nodes?kind=checkout&limit=50` throughput at C concurrent
//!   connections, each next to a hello-world request (`GET /latest/`)
//!   measured right before it on the same server;
//! * p50/p99 of typical pipeline queries (`/nodes` with its default page and
//!   total, and `/count`) after the first 10 000 nodes and after all N;
//! * the server's start-up time on the N-node file and its RSS (now and
//!   peak) after the run.
//!
//! It prints figures only; nothing is asserted.
//!
//! ```text
//! cargo bench --bench nodes -- [--nodes N] [--connections C] [--binary PATH]
//!                              [--synchronous full|normal] [--dir DIR]
//! ```
//!
//! Defaults: 1 000 000 nodes, 16 connections, the `kci-lite` binary that
//! cargo builds for this bench (`target/release/kci-lite`), the server's
//! default `KCI_SYNCHRONOUS` (full). The server runs as a separate process on
//! port 0 with a temporary database and is stopped with SIGTERM at the
//! end (with `--dir`, the database and the server log are kept in DIR). The
//! tree is generated from a fixed seed, so runs are reproducible;
//! only the timestamps move with the clock (the newest checkout is always
//! "now").

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

#[allow(dead_code)] // the bench uses only part of the tests' helper
#[path = "../tests/common/process.rs"]
mod process;

use kci_lite::model::node::Node;
use kci_lite::store::{Store, events, nodes};
use process::ServerProcess;

const DEFAULT_NODES: usize = 1_000_000;
const DEFAULT_CONNECTIONS: usize = 16;
/// Queries are measured once the database holds this many nodes, and again
/// at N.
const SMALL_POINT: usize = 10_000;
const KBUILDS_PER_CHECKOUT: usize = 10;
const JOBS_PER_KBUILD: usize = 10;
const TESTS_PER_JOB: usize = 9;
/// Nodes in one complete checkout subtree: 1 + 10 + 100 + 900.
const NODES_PER_CHECKOUT: usize = 1
    + KBUILDS_PER_CHECKOUT
    + KBUILDS_PER_CHECKOUT * JOBS_PER_KBUILD
    + KBUILDS_PER_CHECKOUT * JOBS_PER_KBUILD * TESTS_PER_JOB;
/// One checkout every 130 minutes: 990 checkouts (1M nodes) span ~89 days.
const CHECKOUT_INTERVAL_MS: i64 = 130 * 60 * 1000;
const THROUGHPUT_TIME: Duration = Duration::from_secs(5);
/// Per query and endpoint: this many sequential requests, or fewer when the
/// time budget runs out first (but at least MIN_QUERY_SAMPLES).
const QUERY_SAMPLES: usize = 200;
const MIN_QUERY_SAMPLES: usize = 5;
const QUERY_BUDGET: Duration = Duration::from_secs(15);
const PASSWORD: &str = "bench-pw";
/// How long the server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const SEED: u64 = 0x6b63_692d_6c69_7465;

// -- the generated tree -------------------------------------------------------------------

/// (tree, url, branches)
const TREES: [(&str, &str, &[&str]); 5] = [
    (
        "mainline",
        "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
        &["master"],
    ),
    (
        "next",
        "https://git.kernel.org/pub/scm/linux/kernel/git/next/linux-next.git",
        &["master", "pending-fixes"],
    ),
    (
        "stable",
        "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git",
        &["linux-6.12.y", "linux-6.6.y", "linux-6.1.y"],
    ),
    (
        "stable-rc",
        "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux-stable-rc.git",
        &["linux-6.12.y", "linux-6.6.y", "linux-6.1.y"],
    ),
    (
        "broonie-misc",
        "https://git.kernel.org/pub/scm/linux/kernel/git/broonie/misc.git",
        &["for-kernelci"],
    ),
];

/// The kbuilds of every checkout: (name, arch, short arch, defconfig, compiler).
const KBUILDS: [(&str, &str, &str, &str, &str); KBUILDS_PER_CHECKOUT] = [
    (
        "kbuild-gcc-12-x86",
        "x86_64",
        "x86",
        "x86_64_defconfig",
        "gcc-12",
    ),
    (
        "kbuild-clang-17-x86",
        "x86_64",
        "x86",
        "x86_64_defconfig",
        "clang-17",
    ),
    (
        "kbuild-gcc-12-x86-allmodconfig",
        "x86_64",
        "x86",
        "allmodconfig",
        "gcc-12",
    ),
    (
        "kbuild-gcc-12-arm64",
        "arm64",
        "arm64",
        "defconfig",
        "gcc-12",
    ),
    (
        "kbuild-clang-17-arm64",
        "arm64",
        "arm64",
        "defconfig",
        "clang-17",
    ),
    (
        "kbuild-gcc-12-arm64-allmodconfig",
        "arm64",
        "arm64",
        "allmodconfig",
        "gcc-12",
    ),
    (
        "kbuild-gcc-12-arm",
        "arm",
        "arm",
        "multi_v7_defconfig",
        "gcc-12",
    ),
    (
        "kbuild-gcc-12-arm-imx",
        "arm",
        "arm",
        "imx_v6_v7_defconfig",
        "gcc-12",
    ),
    (
        "kbuild-gcc-12-riscv",
        "riscv",
        "riscv",
        "defconfig",
        "gcc-12",
    ),
    (
        "kbuild-clang-17-riscv",
        "riscv",
        "riscv",
        "defconfig",
        "clang-17",
    ),
];

/// Platforms per short arch; the first is the QEMU one (runtime k8s), the
/// others are boards in LAVA labs.
const PLATFORMS: [(&str, [&str; 5]); 4] = [
    (
        "x86",
        [
            "qemu-x86",
            "asus-C436FA-Flip-hatch",
            "hp-x360-14-G1-sona",
            "dell-latitude-5400-8665U-sarien",
            "acer-chromebox-cxi4-puff",
        ],
    ),
    (
        "arm64",
        [
            "qemu-arm64",
            "bcm2711-rpi-4-b",
            "meson-g12b-a311d-khadas-vim3",
            "mt8183-kukui-jacuzzi-juniper-sku16",
            "rk3399-gru-kevin",
        ],
    ),
    (
        "arm",
        [
            "qemu-arm",
            "bcm2836-rpi-2-b",
            "imx6q-sabrelite",
            "am57xx-beagle-x15",
            "sun7i-a20-cubieboard2",
        ],
    ),
    (
        "riscv",
        [
            "qemu-riscv64",
            "sun20i-d1-nezha",
            "jh7100-starfive-visionfive-v1",
            "mpfs-icicle-kit",
            "k210-sipeed-maix",
        ],
    ),
];

const LAVA_LABS: [&str; 3] = ["lava-collabora", "lava-baylibre", "lava-broonie"];

/// Test suites: each kbuild runs every suite on two platforms (5 × 2 = 10
/// jobs); every job has 9 test cases named `<suite>.<case>`.
const SUITES: [(&str, [&str; TESTS_PER_JOB]); JOBS_PER_KBUILD / 2] = [
    (
        "baseline",
        [
            "login",
            "dmesg.emerg",
            "dmesg.alert",
            "dmesg.crit",
            "dmesg.err",
            "bootrr.deferred-probe-empty",
            "bootrr.cpufreq",
            "bootrr.thermal",
            "bootrr.usb",
        ],
    ),
    (
        "kselftest-dt",
        [
            "shardfile-dt",
            "dt_test_unprobed_devices_sh",
            "dt.cpus",
            "dt.memory",
            "dt.soc",
            "dt.gpio",
            "dt.i2c",
            "dt.spi",
            "dt.mmc",
        ],
    ),
    (
        "kselftest-cpufreq",
        [
            "shardfile-cpufreq",
            "main_sh",
            "cpufreq_basic",
            "cpufreq_governor",
            "cpufreq_suspend",
            "cpufreq_hotplug",
            "cpufreq_stats",
            "cpufreq_boost",
            "cpufreq_limits",
        ],
    ),
    (
        "ltp-syscalls",
        [
            "abort01", "accept01", "access01", "brk01", "chdir01", "clone01", "dup01", "execve01",
            "fork01",
        ],
    ),
    (
        "kunit",
        [
            "exec.list_sort",
            "exec.time_test_cases",
            "exec.kunit-resource-test",
            "exec.sysctl_test",
            "exec.bitfields",
            "exec.hash",
            "exec.mm_init",
            "exec.rtc_lib_test_cases",
            "exec.string",
        ],
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Checkout,
    Kbuild,
    Job,
    Test,
}

const LEVELS: [Level; 4] = [Level::Checkout, Level::Kbuild, Level::Job, Level::Test];

/// One generated node; the JSON body is built from it when it is sent.
struct Spec {
    level: Level,
    /// Index of the parent in the generated list.
    parent: Option<usize>,
    checkout: usize,
    kbuild: usize,
    job: usize,
    test: usize,
    /// Index into the arch's platforms (jobs and tests).
    platform: usize,
    running: bool,
    result: Option<&'static str>,
    created_ms: i64,
}

struct Tree {
    nodes: Vec<Spec>,
    /// `data.kernel_revision` of every checkout.
    revisions: Vec<Value>,
    /// Timeout given to running nodes, far ahead, so that the server's
    /// timeout timer does not rewrite them during the run.
    running_timeout_ms: i64,
}

/// splitmix64: a small deterministic generator, so the tree is the same on
/// every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn pick_result(rng: &mut Rng, level: Level) -> &'static str {
    let roll = rng.below(100);
    match level {
        Level::Checkout => {
            if roll < 98 {
                "pass"
            } else {
                "fail"
            }
        }
        Level::Kbuild => {
            if roll < 95 {
                "pass"
            } else {
                "fail"
            }
        }
        Level::Job => match roll {
            0..90 => "pass",
            90..97 => "fail",
            _ => "incomplete",
        },
        Level::Test => match roll {
            0..85 => "pass",
            85..93 => "fail",
            _ => "skip",
        },
    }
}

/// State and result of a node: running (result null) if its parent is
/// running or with a small probability, else done with a result.
fn pick_state(rng: &mut Rng, level: Level, parent_running: bool) -> (bool, Option<&'static str>) {
    let running = parent_running || (level != Level::Checkout && rng.chance(3));
    if running {
        (true, None)
    } else {
        (false, Some(pick_result(rng, level)))
    }
}

fn hex(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        out.push_str(&format!("{:016x}", rng.next()));
    }
    out.truncate(len);
    out
}

/// The first `total` nodes of an endless sequence of complete checkout
/// subtrees in pre-order, so every node's ancestors come before it.
fn generate(total: usize, now_ms: i64) -> Tree {
    let mut rng = Rng(SEED);
    let checkouts = total.div_ceil(NODES_PER_CHECKOUT);
    let first_ms = now_ms - checkouts as i64 * CHECKOUT_INTERVAL_MS;
    let mut nodes = Vec::with_capacity(total);
    let mut revisions = Vec::with_capacity(checkouts);
    'all: for c in 0..checkouts {
        let tree = rng.below(TREES.len());
        let (tree_name, url, branches) = TREES[tree];
        let branch = rng.below(branches.len());
        let commit = hex(&mut rng, 40);
        let patchlevel = 10 + rng.below(4);
        let rc = format!("-rc{}", 1 + rng.below(7));
        let describe = format!("v6.{patchlevel}{rc}-{}-g{}", rng.below(400), &commit[..12]);
        revisions.push(json!({
                "tree": tree_name,
                "url": url,
                "branch": branches[branch],
                "commit": commit,
                "describe": describe,
                "version": {"version": 6, "patchlevel": patchlevel, "extra": rc},
        }));
        let checkout_ms = first_ms + c as i64 * CHECKOUT_INTERVAL_MS;
        let checkout_index = nodes.len();
        let (running, result) = pick_state(&mut rng, Level::Checkout, false);
        nodes.push(Spec {
            level: Level::Checkout,
            parent: None,
            checkout: c,
            kbuild: 0,
            job: 0,
            test: 0,
            platform: 0,
            running,
            result,
            created_ms: checkout_ms,
        });
        for k in 0..KBUILDS_PER_CHECKOUT {
            if nodes.len() == total {
                break 'all;
            }
            let kbuild_ms = checkout_ms + 2 * 60_000 + k as i64 * 30_000;
            let kbuild_index = nodes.len();
            let (kbuild_running, result) = pick_state(&mut rng, Level::Kbuild, running);
            nodes.push(Spec {
                level: Level::Kbuild,
                parent: Some(checkout_index),
                checkout: c,
                kbuild: k,
                job: 0,
                test: 0,
                platform: 0,
                running: kbuild_running,
                result,
                created_ms: kbuild_ms,
            });
            for j in 0..JOBS_PER_KBUILD {
                if nodes.len() == total {
                    break 'all;
                }
                let job_ms = kbuild_ms + 20 * 60_000 + j as i64 * 60_000;
                let job_index = nodes.len();
                // the first run of each suite is on QEMU half of the time
                let platform = if j % 2 == 0 && rng.chance(50) {
                    0
                } else {
                    1 + rng.below(4)
                };
                let (job_running, result) = pick_state(&mut rng, Level::Job, kbuild_running);
                nodes.push(Spec {
                    level: Level::Job,
                    parent: Some(kbuild_index),
                    checkout: c,
                    kbuild: k,
                    job: j,
                    test: 0,
                    platform,
                    running: job_running,
                    result,
                    created_ms: job_ms,
                });
                for t in 0..TESTS_PER_JOB {
                    if nodes.len() == total {
                        break 'all;
                    }
                    let (test_running, result) = pick_state(&mut rng, Level::Test, job_running);
                    nodes.push(Spec {
                        level: Level::Test,
                        parent: Some(job_index),
                        checkout: c,
                        kbuild: k,
                        job: j,
                        test: t,
                        platform,
                        running: test_running,
                        result,
                        created_ms: job_ms + 5 * 60_000 + t as i64 * 10_000,
                    });
                }
            }
        }
    }
    Tree {
        nodes,
        revisions,
        running_timeout_ms: now_ms + 30 * 24 * 3_600_000,
    }
}

fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .expect("generated timestamps are in range")
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string()
}

fn platforms_of(arch_short: &str) -> &'static [&'static str; 5] {
    &PLATFORMS
        .iter()
        .find(|(a, _)| *a == arch_short)
        .expect("every kbuild arch has platforms")
        .1
}

/// The POST body of node `index`, with its parent's server id.
fn node_body(tree: &Tree, index: usize, parent_id: Option<&str>) -> String {
    let spec = &tree.nodes[index];
    let revision = &tree.revisions[spec.checkout];
    let (kbuild_name, arch, arch_short, defconfig, compiler) = KBUILDS[spec.kbuild];
    let (suite, cases) = SUITES[spec.job / 2];
    let platform = platforms_of(arch_short)[spec.platform];
    let runtime = if spec.platform == 0 {
        "k8s-gke-eu-west4"
    } else {
        LAVA_LABS[spec.platform % LAVA_LABS.len()]
    };
    let job_name = format!("{suite}-{arch_short}");
    let test_name = format!("{suite}.{}", cases[spec.test]);
    let (kind, name, path, data) = match spec.level {
        Level::Checkout => (
            "checkout",
            "checkout".to_string(),
            json!(["checkout"]),
            json!({"kernel_revision": revision}),
        ),
        Level::Kbuild => (
            "kbuild",
            kbuild_name.to_string(),
            json!(["checkout", kbuild_name]),
            json!({
                "kernel_revision": revision,
                "arch": arch,
                "defconfig": defconfig,
                "compiler": compiler,
                "runtime": "k8s-gke-eu-west4",
            }),
        ),
        Level::Job => (
            "job",
            job_name.clone(),
            json!(["checkout", kbuild_name, job_name]),
            json!({
                "kernel_revision": revision,
                "platform": platform,
                "runtime": runtime,
                "arch": arch,
                "defconfig": defconfig,
                "compiler": compiler,
            }),
        ),
        Level::Test => (
            "test",
            test_name.clone(),
            json!(["checkout", kbuild_name, job_name, test_name]),
            json!({
                "kernel_revision": revision,
                "platform": platform,
                "runtime": runtime,
                "arch": arch,
            }),
        ),
    };
    let mut body = json!({
        "kind": kind,
        "name": name,
        "path": path,
        "parent": parent_id,
        "state": if spec.running { "running" } else { "done" },
        "result": spec.result,
        "data": data,
        "created": timestamp(spec.created_ms),
    });
    if spec.running {
        body["timeout"] = json!(timestamp(tree.running_timeout_ms));
    }
    body.to_string()
}

// -- HTTP -----------------------------------------------------------------------------------

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// Reads the body of a response that must have status 200.
fn ok_body(what: &str, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> String {
    let mut resp = result.unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
    assert!(status == 200, "{what}: status {status}: {body}");
    body
}

fn get(agent: &ureq::Agent, url: &str) -> String {
    ok_body(
        url,
        agent.get(url).header("Accept", "application/json").call(),
    )
}

/// Percent-encodes a query component.
fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Requests per second of `request` from `connections` threads, each with
/// its own agent (keep-alive), for THROUGHPUT_TIME.
fn throughput(connections: usize, request: impl Fn(&ureq::Agent, &mut Rng) + Sync) -> f64 {
    let started = Instant::now();
    let counts: Vec<usize> = thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|t| {
                let request = &request;
                s.spawn(move || {
                    let agent = agent();
                    let mut rng = Rng(SEED ^ (t as u64 + 1));
                    let mut n = 0;
                    while started.elapsed() < THROUGHPUT_TIME {
                        request(&agent, &mut rng);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("throughput thread panicked"))
            .collect()
    });
    counts.iter().sum::<usize>() as f64 / started.elapsed().as_secs_f64()
}

// -- the server -----------------------------------------------------------------------------

struct Server {
    process: ServerProcess,
}

impl Server {
    fn start(binary: &Path, dir: &Path, synchronous: Option<&str>) -> Server {
        let mut launch = ServerProcess::builder()
            .binary(binary)
            .db(&dir.join("kci.db"))
            // no stray .env from the caller's directory
            .current_dir(dir)
            .env("KCI_INITIAL_PASSWORD", PASSWORD)
            .env("SECRET_KEY", "bench-secret-key-0123456789")
            .env("KCI_BCRYPT_COST", "4")
            .env("KCI_HTTP_THREADS", "16")
            .env_remove("KCI_SYNCHRONOUS")
            .log_file(&dir.join("server.log"));
        if let Some(mode) = synchronous {
            launch = launch.env("KCI_SYNCHRONOUS", mode);
        }
        Server {
            process: launch.start(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/latest{path}", self.process.url())
    }

    fn login(&self) -> String {
        let body = ok_body(
            "login",
            agent()
                .post(self.url("/user/login"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(format!("username=admin&password={PASSWORD}")),
        );
        let reply: Value = serde_json::from_str(&body).expect("login answers JSON");
        reply["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_string()
    }

    /// SIGTERM, then wait for the clean shutdown (SIGKILL after 30 s).
    fn stop(&mut self) {
        if self.process.stop(STOP_TIMEOUT).is_none() {
            eprintln!("the server did not stop within 30 s after SIGTERM; it was killed");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

// -- loading --------------------------------------------------------------------------------

struct LoadStats {
    nodes: usize,
    time: Duration,
}

/// POSTs nodes `range` level by level (parents before children), each level
/// spread over `connections` threads; stores the server ids in `ids`.
fn load(
    server: &Server,
    token: &str,
    tree: &Tree,
    range: std::ops::Range<usize>,
    connections: usize,
    ids: &mut [Option<String>],
) -> LoadStats {
    let url = server.url("/node");
    let auth = format!("Bearer {token}");
    let started = Instant::now();
    for level in LEVELS {
        let members: Vec<usize> = range
            .clone()
            .filter(|&i| tree.nodes[i].level == level)
            .collect();
        let level_started = Instant::now();
        let next = AtomicUsize::new(0);
        let ids_so_far: &[Option<String>] = ids;
        let created: Vec<Vec<(usize, String)>> = thread::scope(|s| {
            let handles: Vec<_> = (0..connections)
                .map(|_| {
                    s.spawn(|| {
                        let agent = agent();
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&index) = members.get(k) else {
                                break;
                            };
                            let parent_id = tree.nodes[index].parent.map(|p| {
                                ids_so_far[p]
                                    .as_deref()
                                    .expect("parents are loaded before their children")
                            });
                            let body = node_body(tree, index, parent_id);
                            let reply = ok_body(
                                "POST /node",
                                agent
                                    .post(&url)
                                    .header("Authorization", &auth)
                                    .header("Content-Type", "application/json")
                                    .send(&body),
                            );
                            let node: Value =
                                serde_json::from_str(&reply).expect("POST /node answers JSON");
                            let id = node["id"]
                                .as_str()
                                .unwrap_or_else(|| panic!("no id in {reply}"))
                                .to_string();
                            out.push((index, id));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("loader thread panicked"))
                .collect()
        });
        for (index, id) in created.into_iter().flatten() {
            ids[index] = Some(id);
        }
        let secs = level_started.elapsed().as_secs_f64();
        eprintln!(
            "  {:>8} {level:?} nodes in {secs:>7.1} s = {:>5.0} req/s",
            members.len(),
            members.len() as f64 / secs
        );
    }
    LoadStats {
        nodes: range.len(),
        time: started.elapsed(),
    }
}

/// Writes nodes `range` (index order: parents first) straight into the
/// database at `db` with the server stopped, in transactions of
/// `BULK_BATCH` nodes, each with its node event as the API writes it.
fn bulk_load(
    db: &Path,
    tree: &Tree,
    range: std::ops::Range<usize>,
    ids: &mut [Option<String>],
) -> LoadStats {
    const BULK_BATCH: usize = 20_000;
    let store = Store::open(db, false).expect("open the database");
    let started = Instant::now();
    let mut next = range.start;
    while next < range.end {
        let end = (next + BULK_BATCH).min(range.end);
        let batch: Vec<Node> = (next..end)
            .map(|index| {
                let parent = tree.nodes[index]
                    .parent
                    .map(|p| ids[p].clone().expect("parents come first"));
                let body: Value =
                    serde_json::from_str(&node_body(tree, index, parent.as_deref())).expect("body");
                let node = Node::create(&body, "admin", kci_lite::timestamp::now())
                    .unwrap_or_else(|e| panic!("node {index}: {e:?}"));
                ids[index] = Some(node.id.clone());
                node
            })
            .collect();
        store
            .write(move |c, out| {
                for node in &batch {
                    nodes::insert(c, out, node)?;
                    events::append_node_event(c, out, "bench", node, false, None)?;
                }
                Ok::<_, kci_lite::store::StoreError>(())
            })
            .expect("bulk insert");
        next = end;
        eprintln!(
            "  {next:>8} nodes written ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    store.close();
    LoadStats {
        nodes: range.len(),
        time: started.elapsed(),
    }
}

/// Throughput figures at one size, each with the hello-world measured
/// right before it.
struct Rates {
    hello: f64,
    post: f64,
    get_node: f64,
    list: f64,
}

/// POST /node of checkouts, GET /node/{id} and a page of checkouts, each
/// after its hello-world.
fn rates(server: &Server, token: &str, connections: usize, ids: &[Option<String>]) -> Rates {
    let hello_url = server.url("/");
    let hello = |agent: &ureq::Agent, _: &mut Rng| {
        get(agent, &hello_url);
    };
    let post_url = server.url("/node");
    let auth = format!("Bearer {token}");
    let checkout = json!({"kind": "checkout", "name": "checkout", "path": ["checkout"],
        "data": {"kernel_revision": {"tree": "bench-post", "branch": "master",
                 "commit": "0".repeat(40), "url": "https://git.example/linux.git"}}})
    .to_string();
    let hello_post = throughput(connections, hello);
    let posted = std::sync::Mutex::new(Vec::new());
    let post = throughput(connections, |agent, _| {
        let reply = ok_body(
            "POST /node",
            agent
                .post(&post_url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(&checkout),
        );
        let node: Value = serde_json::from_str(&reply).expect("POST /node answers JSON");
        if let Some(id) = node["id"].as_str() {
            posted.lock().expect("ids").push(id.to_string());
        }
    });
    let posted = posted.into_inner().expect("ids");
    // the tree's nodes when there are, else the checkouts just posted
    let loaded: Vec<&str> = if ids.iter().any(Option::is_some) {
        ids.iter().flatten().map(String::as_str).collect()
    } else {
        posted.iter().map(String::as_str).collect()
    };
    let node_url = server.url("/node/");
    let hello_get = throughput(connections, hello);
    let get_node = throughput(connections, |agent, rng| {
        let id = loaded[rng.below(loaded.len())];
        get(agent, &format!("{node_url}{id}"));
    });
    let list_url = server.url("/nodes?kind=checkout&limit=50");
    let hello_list = throughput(connections, hello);
    let list = throughput(connections, |agent, _| {
        get(agent, &list_url);
    });
    let hello = (hello_post + hello_get + hello_list) / 3.0;
    eprintln!(
        "  hello {hello_post:.0}/{hello_get:.0}/{hello_list:.0} req/s; POST {post:.0} ({:.2}),          GET node {get_node:.0} ({:.2}), list {list:.0} ({:.2})",
        post / hello_post,
        get_node / hello_get,
        list / hello_list
    );
    Rates {
        hello,
        post: post / hello_post,
        get_node: get_node / hello_get,
        list: list / hello_list,
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

// -- queries --------------------------------------------------------------------------------

struct QueryDef {
    label: &'static str,
    params: Vec<(String, String)>,
}

struct Latency {
    matches: u64,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sequential requests on one connection: QUERY_SAMPLES of them, or fewer
/// when QUERY_BUDGET runs out (never fewer than MIN_QUERY_SAMPLES).
fn measure(agent: &ureq::Agent, url: &str) -> (Vec<f64>, String) {
    let mut times = Vec::with_capacity(QUERY_SAMPLES);
    let mut last = String::new();
    // one untimed request first: connection set-up, statement cache
    get(agent, url);
    let started = Instant::now();
    while times.len() < QUERY_SAMPLES
        && (times.len() < MIN_QUERY_SAMPLES || started.elapsed() < QUERY_BUDGET)
    {
        let t = Instant::now();
        last = get(agent, url);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times, last)
}

/// (`/nodes` latency, `/count` latency) of every query.
fn run_queries(server: &Server, queries: &[QueryDef]) -> Vec<(Latency, Latency)> {
    let agent = agent();
    queries
        .iter()
        .map(|q| {
            let qs = query_string(&q.params);
            let (times, body) = measure(&agent, &server.url(&format!("/nodes?{qs}")));
            let page: Value = serde_json::from_str(&body).expect("/nodes answers JSON");
            let total = page["total"]
                .as_u64()
                .unwrap_or_else(|| panic!("no total in the page of {}", q.label));
            let nodes = Latency {
                matches: total,
                samples: times.len(),
                p50_ms: percentile(&times, 50.0),
                p99_ms: percentile(&times, 99.0),
            };
            let (times, body) = measure(&agent, &server.url(&format!("/count?{qs}")));
            let count: u64 = body
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("/count of {} answered {body:?}: {e}", q.label));
            let count = Latency {
                matches: count,
                samples: times.len(),
                p50_ms: percentile(&times, 50.0),
                p99_ms: percentile(&times, 99.0),
            };
            eprintln!(
                "  {:<28} /nodes p50 {:>9.2} ms  /count p50 {:>9.2} ms  ({} matches)",
                q.label, nodes.p50_ms, count.p50_ms, total
            );
            (nodes, count)
        })
        .collect()
}

/// The query set; every value refers to nodes of the first SMALL_POINT
/// nodes, so the same query is asked at both sizes.
fn queries(tree: &Tree, ids: &[Option<String>]) -> Vec<QueryDef> {
    let kbuild = tree
        .nodes
        .iter()
        .position(|n| n.level == Level::Kbuild)
        .expect("the tree has a kbuild");
    let kbuild_id = ids[kbuild].clone().expect("the first kbuild is loaded");
    let from = tree.nodes[0].created_ms - 1000;
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    vec![
        QueryDef {
            label: "kind=test&state=done",
            params: vec![p("kind", "test"), p("state", "done")],
        },
        QueryDef {
            label: "tree=mainline&branch=master",
            params: vec![
                p("data.kernel_revision.tree", "mainline"),
                p("data.kernel_revision.branch", "master"),
            ],
        },
        QueryDef {
            label: "parent=<kbuild id>",
            params: vec![p("parent", &kbuild_id)],
        },
        QueryDef {
            label: "name__re=^baseline-x86",
            params: vec![p("name__re", "^baseline-x86")],
        },
        QueryDef {
            label: "created 1-day window",
            params: vec![
                p("created__gt", &timestamp(from)),
                p("created__lt", &timestamp(from + 24 * 3_600_000)),
            ],
        },
    ]
}

// -- main -----------------------------------------------------------------------------------

struct Options {
    nodes: usize,
    connections: usize,
    binary: PathBuf,
    synchronous: Option<String>,
    dir: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo bench --bench nodes -- [--nodes N] [--connections C] \
                     [--binary PATH] [--synchronous full|normal] [--dir DIR]";

fn parse_args() -> Options {
    let mut options = Options {
        nodes: DEFAULT_NODES,
        connections: DEFAULT_CONNECTIONS,
        binary: PathBuf::from(process::BINARY),
        synchronous: None,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    let fail = |message: String| -> ! {
        eprintln!("{message}\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        };
        let number = |name: &str, text: String| -> usize {
            match text.replace('_', "").parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => fail(format!("{name}: not a positive integer: {text}")),
            }
        };
        match arg.as_str() {
            // cargo bench passes --bench to harness = false targets
            "--bench" => {}
            "--nodes" => options.nodes = number("--nodes", value("--nodes")),
            "--connections" => {
                options.connections = number("--connections", value("--connections"))
            }
            "--binary" => options.binary = PathBuf::from(value("--binary")),
            "--synchronous" => options.synchronous = Some(value("--synchronous")),
            "--dir" => options.dir = Some(PathBuf::from(value("--dir"))),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => fail(format!("unknown argument: {other}")),
        }
    }
    options
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let options = parse_args();
    if !options.binary.exists() {
        eprintln!(
            "{} does not exist; build it with `cargo build --release` or pass --binary PATH",
            options.binary.display()
        );
        std::process::exit(1);
    }
    let run_started = Instant::now();
    // the database lives in --dir if given (kept), else in a temporary
    // directory removed at the end
    let temp = tempfile::tempdir().expect("create a temporary directory");
    let dir_path = match &options.dir {
        Some(dir) => {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            assert!(
                !dir.join("kci.db").exists(),
                "{} already holds a kci.db",
                dir.display()
            );
            dir.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let now_ms = Utc::now().timestamp_millis();
    let tree = generate(options.nodes, now_ms);
    let small = SMALL_POINT.min(options.nodes);
    let cores = thread::available_parallelism().map_or(0, |n| n.get());

    println!(
        "kci-lite node benchmark: {} nodes = {} checkout subtrees of 1 checkout, {} kbuilds, \
         {} jobs, {} tests ({} nodes; the last one may be cut short); {} connections",
        options.nodes,
        tree.revisions.len(),
        KBUILDS_PER_CHECKOUT,
        KBUILDS_PER_CHECKOUT * JOBS_PER_KBUILD,
        KBUILDS_PER_CHECKOUT * JOBS_PER_KBUILD * TESTS_PER_JOB,
        NODES_PER_CHECKOUT,
        options.connections
    );
    println!(
        "server: {} (KCI_HTTP_THREADS=16, KCI_BCRYPT_COST=4, KCI_SYNCHRONOUS={}); \
         {cores} CPU cores shared by server and client",
        options.binary.display(),
        options
            .synchronous
            .as_deref()
            .unwrap_or("unset = server default, full"),
    );

    let mut server = Server::start(&options.binary, &dir_path, options.synchronous.as_deref());
    let token = server.login();
    eprintln!("throughput on the fresh database ...");
    let fresh = rates(&server, &token, options.connections, &[]);

    let mut ids: Vec<Option<String>> = vec![None; options.nodes];
    eprintln!("loading {small} nodes through POST /node ...");
    let first = load(
        &server,
        &token,
        &tree,
        0..small,
        options.connections,
        &mut ids,
    );
    let query_set = queries(&tree, &ids);
    eprintln!("queries at {small} nodes ...");
    let at_small = run_queries(&server, &query_set);
    eprintln!("throughput at {small} nodes ...");
    let small_rates = rates(&server, &token, options.connections, &ids);
    let mut at_full = None;
    let mut full = None;
    let mut bulk = None;
    let mut startup = None;
    if options.nodes > small {
        server.stop();
        eprintln!(
            "writing {} more nodes into the database ...",
            options.nodes - small
        );
        bulk = Some(bulk_load(
            &dir_path.join("kci.db"),
            &tree,
            small..options.nodes,
            &mut ids,
        ));
        let started = Instant::now();
        server = Server::start(&options.binary, &dir_path, options.synchronous.as_deref());
        startup = Some(started.elapsed());
        let token = server.login();
        eprintln!("queries at {} nodes ...", options.nodes);
        at_full = Some(run_queries(&server, &query_set));
        eprintln!("throughput at {} nodes ...", options.nodes);
        full = Some(rates(&server, &token, options.connections, &ids));
    }
    let pid = server.process.pid();
    let (rss, peak) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    server.stop();

    let db_size = file_size(&dir_path.join("kci.db"));
    let wal_size = file_size(&dir_path.join("kci.db-wal"));
    let post_rate = first.nodes as f64 / first.time.as_secs_f64();

    println!();
    println!(
        "throughput ({} connections, keep-alive), as ratios to hello world GET /latest/",
        options.connections
    );
    println!(
        "  {:<26} {:>12} {:>12} {:>12}   goal",
        "",
        "fresh",
        format!("{small}"),
        if options.nodes > small {
            format!("{}", options.nodes)
        } else {
            "-".into()
        }
    );
    let row = |label: &str, pick: fn(&Rates) -> f64, goal: &str| {
        let full = full
            .as_ref()
            .map_or("-".to_string(), |r| format!("{:.3}", pick(r)));
        println!(
            "  {label:<26} {:>12.3} {:>12.3} {full:>12}   {goal}",
            pick(&fresh),
            pick(&small_rates)
        );
    };
    row("hello world (req/s)", |r| r.hello, "");
    row("POST /node (checkout)", |r| r.post, ">= 0.30");
    row("GET /node/{id}", |r| r.get_node, ">= 0.60");
    row("GET /nodes?kind=checkout", |r| r.list, ">= 0.15");
    println!(
        "  tree load through POST /node: {} nodes in {:.1} s = {post_rate:.0} req/s",
        first.nodes,
        first.time.as_secs_f64()
    );
    if let Some(bulk) = &bulk {
        println!(
            "  bulk load into the file: {} nodes in {:.1} s = {:.0} nodes/s",
            bulk.nodes,
            bulk.time.as_secs_f64(),
            bulk.nodes as f64 / bulk.time.as_secs_f64()
        );
    }
    if let Some(startup) = startup {
        println!(
            "  serve start-up on the {}-node file (until it answers): {:.0} ms",
            options.nodes,
            startup.as_secs_f64() * 1000.0
        );
    }
    println!(
        "  server RSS at the end {:.1} MiB, peak {:.1} MiB",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );

    println!();
    println!(
        "queries (one connection, sequential; latency in ms; n = samples; \
         /nodes = default page of 50 with total)"
    );
    let columns = format!("{:>8} {:>8} {:>8} {:>6}", "matches", "p50", "p99", "n");
    let mut title = format!("  {:<36} | {:^34} |", "", format!("{small} nodes"));
    let mut head = format!("  {:<28} {:<7} | {columns} |", "query", "path");
    if at_full.is_some() {
        title.push_str(&format!(
            " {:^34} | p50 ratio",
            format!("{} nodes", options.nodes)
        ));
        head.push_str(&format!(" {columns} |"));
    }
    println!("{title}");
    println!("{head}");
    for (i, q) in query_set.iter().enumerate() {
        for (endpoint, pick) in [("/nodes", 0), ("/count", 1)] {
            let choose = |pair: &(Latency, Latency)| -> (u64, usize, f64, f64) {
                let l = if pick == 0 { &pair.0 } else { &pair.1 };
                (l.matches, l.samples, l.p50_ms, l.p99_ms)
            };
            let (m, n, p50, p99) = choose(&at_small[i]);
            let label = if pick == 0 { q.label } else { "" };
            let mut line =
                format!("  {label:<28} {endpoint:<7} | {m:>8} {p50:>8.2} {p99:>8.2} {n:>6} |");
            if let Some(full) = &at_full {
                let (fm, fn_, fp50, fp99) = choose(&full[i]);
                line.push_str(&format!(
                    " {fm:>8} {fp50:>8.2} {fp99:>8.2} {fn_:>6} | {:>6.2}x",
                    fp50 / p50
                ));
            }
            println!("{line}");
        }
    }

    println!();
    println!("total run {:.1} s", run_started.elapsed().as_secs_f64());
    println!(
        "database after shutdown: kci.db {:.1} MiB, kci.db-wal {:.1} MiB ({:.0} bytes/node)",
        mib(db_size),
        mib(wal_size),
        (db_size + wal_size) as f64 / options.nodes as f64
    );
}
