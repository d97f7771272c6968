//! Telemetry benchmark: generates KernelCI-like pipeline telemetry (what
//! kernelci-pipeline's scheduler, monitor and lava-callback services emit),
//! loads it through `POST /latest/telemetry` of the release binary in
//! batches, and prints
//!
//! * the insert rate (events/s and requests/s) at C concurrent
//!   connections, next to hello-world (`GET /latest/`) throughput on the
//!   same server in the same run;
//! * p50/p90 latency of typical `/telemetry/stats`, `/telemetry/anomalies`
//!   and `/telemetry` requests, each next to the p50/p90 of hello-world
//!   requests measured on the same connection right before it;
//! * the database size.
//!
//! It prints figures only; nothing is asserted.
//!
//! ```text
//! cargo bench --bench telemetry -- [--events N] [--batch 100] [--connections C]
//!                                  [--binary PATH] [--dir DIR] [--reuse DIR] [--load-only]
//! ```
//!
//! Defaults: 1 000 000 events in batches of 100 over 4 connections, the
//! `kci-lite` binary cargo builds for this bench. The events are spread
//! evenly over the 13 days before "now" (inside the default 14-day
//! retention) and arrive in time order, as the pipeline sends them. With
//! `--dir` the database and server log are kept in DIR; `--reuse DIR`
//! starts the server on DIR's existing database and only runs the
//! queries (for comparing indexes on the same data); `--load-only` skips
//! the queries (for comparing insert rates). The events are
//! generated from a fixed seed; only the timestamps move with the clock.

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

use process::ServerProcess;

const DEFAULT_EVENTS: usize = 1_000_000;
const DEFAULT_BATCH: usize = 100;
const DEFAULT_CONNECTIONS: usize = 4;
/// The generated events span this many days up to now.
const SPAN_DAYS: i64 = 13;
const THROUGHPUT_TIME: Duration = Duration::from_secs(5);
/// Per request: this many sequential samples, or fewer when the time
/// budget runs out first (but at least MIN_SAMPLES).
const SAMPLES: usize = 100;
const MIN_SAMPLES: usize = 5;
const BUDGET: Duration = Duration::from_secs(20);
/// Hello-world samples taken right before each measured request.
const HELLO_SAMPLES: usize = 100;
const PASSWORD: &str = "bench-pw";
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const SEED: u64 = 0x7465_6c65_6d65_7472;

// -- the generated telemetry --------------------------------------------------------------

const RUNTIMES: [&str; 12] = [
    "lava-collabora",
    "lava-baylibre",
    "lava-broonie",
    "lava-cip",
    "lava-kontron",
    "lava-pengutronix",
    "lava-qualcomm",
    "lava-foundriesio",
    "lava-clabbe",
    "k8s-gke-eu-west4",
    "k8s-all",
    "shell",
];
const DEVICE_TYPES: usize = 60;
const DEVICES_PER_TYPE: usize = 6;
const JOBS: [&str; 10] = [
    "baseline",
    "kselftest-cpufreq",
    "kselftest-dt",
    "kselftest-rtc",
    "ltp-timers",
    "sleep",
    "tast-basic",
    "kunit",
    "kver",
    "igt-kms",
];
const TREES: [(&str, &[&str]); 5] = [
    ("mainline", &["master"]),
    ("next", &["master", "pending-fixes"]),
    ("stable", &["linux-6.12.y", "linux-6.6.y", "linux-6.1.y"]),
    ("stable-rc", &["linux-6.12.y", "linux-6.6.y", "linux-6.1.y"]),
    ("broonie-misc", &["for-kernelci"]),
];
const ARCHES: [&str; 4] = ["x86_64", "arm64", "arm", "riscv"];

/// splitmix64: a small deterministic generator.
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
}

fn device_type(i: usize) -> String {
    format!("board-{i:02}")
}

fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .expect("generated timestamps are in range")
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

/// Event `index` of `total`, arriving in time order from `first_ms` on.
fn event(index: usize, total: usize, first_ms: i64, span_ms: i64) -> Value {
    let mut rng = Rng(SEED ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let ts = timestamp(first_ms + (span_ms as i128 * index as i128 / total as i128) as i64);
    let runtime = RUNTIMES[rng.below(RUNTIMES.len())];
    let dt = rng.below(DEVICE_TYPES);
    let device = format!("{}-{:02}", device_type(dt), rng.below(DEVICES_PER_TYPE));
    // a few boards are broken: mostly incomplete with infrastructure errors
    let broken = dt % 17 == 3;
    let job = JOBS[rng.below(JOBS.len())];
    let (tree, branches) = TREES[rng.below(TREES.len())];
    let branch = branches[rng.below(branches.len())];
    let arch = ARCHES[rng.below(ARCHES.len())];
    let node_id = format!("{:016x}{:08x}", rng.next(), rng.next() as u32);
    let roll = rng.below(100);
    let common = json!({
        "ts": ts, "runtime": runtime, "device_type": device_type(dt), "job_name": job,
        "node_id": node_id, "tree": tree, "branch": branch, "arch": arch,
    });
    let mut e = common;
    let set = |e: &mut Value, k: &str, v: Value| e[k] = v;
    match roll {
        0..12 => {
            set(&mut e, "kind", json!("job_submission"));
            set(&mut e, "retry", json!(rng.below(10) / 8));
        }
        12..24 => {
            set(&mut e, "kind", json!("job_result"));
            set(&mut e, "device_id", json!(device));
            set(&mut e, "job_id", json!(format!("{}", 1_000_000 + index)));
            let r = rng.below(100);
            let (result, infra) = match (broken, r) {
                (true, 0..80) | (false, 0..6) => ("incomplete", true),
                (false, 6..10) => ("fail", false),
                _ => ("pass", false),
            };
            set(&mut e, "result", json!(result));
            set(&mut e, "is_infra_error", json!(infra));
            if infra {
                set(&mut e, "error_type", json!("Infrastructure"));
                set(
                    &mut e,
                    "error_msg",
                    json!(format!(
                        "bootloader-commands timed out after {} seconds",
                        60 + r
                    )),
                );
            }
        }
        24..92 => {
            set(&mut e, "kind", json!("test_result"));
            set(&mut e, "device_id", json!(device));
            set(
                &mut e,
                "test_name",
                json!(format!("{job}.case-{:03}", rng.below(200))),
            );
            let r = rng.below(100);
            let result = match (broken, r) {
                (true, 0..50) | (false, 0..7) => "fail",
                (_, 93..) => "skip",
                _ => "pass",
            };
            set(&mut e, "result", json!(result));
            set(&mut e, "extra", json!({"suite": job}));
        }
        92..95 => {
            set(&mut e, "kind", json!("runtime_error"));
            set(&mut e, "error_type", json!("online_check"));
            set(
                &mut e,
                "error_msg",
                json!("HTTPSConnectionPool: Max retries exceeded"),
            );
        }
        _ => {
            set(&mut e, "kind", json!("job_skip"));
            set(&mut e, "error_type", json!("queue_depth"));
            let depth = 8 + rng.below(20);
            set(
                &mut e,
                "error_msg",
                json!(format!(
                    "device_type={} queue_depth={depth} >= max=8",
                    device_type(dt)
                )),
            );
            set(
                &mut e,
                "extra",
                json!({"queue_depth": depth, "max_depth": 8, "per_device_depth": 2,
                       "online_devices": 4, "priority_factor": 1.0}),
            );
        }
    }
    e
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

fn ok_body(what: &str, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> String {
    let mut resp = result.unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
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

fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Requests per second of `request` from `connections` threads with their
/// own keep-alive agents, for THROUGHPUT_TIME.
fn throughput(connections: usize, request: impl Fn(&ureq::Agent) + Sync) -> f64 {
    let started = Instant::now();
    let counts: Vec<usize> = thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|_| {
                let request = &request;
                s.spawn(move || {
                    let agent = agent();
                    let mut n = 0;
                    while started.elapsed() < THROUGHPUT_TIME {
                        request(&agent);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    counts.iter().sum::<usize>() as f64 / started.elapsed().as_secs_f64()
}

// -- the server -----------------------------------------------------------------------------

struct Server {
    process: ServerProcess,
}

impl Server {
    fn start(binary: &Path, dir: &Path) -> Server {
        let launch = ServerProcess::builder()
            .binary(binary)
            .db(&dir.join("kci.db"))
            .current_dir(dir)
            .env("KCI_INITIAL_PASSWORD", PASSWORD)
            .env("SECRET_KEY", "bench-secret-key-0123456789")
            .env("KCI_BCRYPT_COST", "4")
            .env("KCI_HTTP_THREADS", "16")
            .env_remove("KCI_SYNCHRONOUS")
            .env_remove("TELEMETRY_TTL_SECONDS")
            .log_file(&dir.join("server.log"));
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

/// POSTs all events in batches over `connections` threads; the time taken.
fn load(server: &Server, token: &str, options: &Options, now_ms: i64) -> Duration {
    let url = server.url("/telemetry");
    let auth = format!("Bearer {token}");
    let span_ms = SPAN_DAYS * 86_400_000;
    let first_ms = now_ms - span_ms;
    let batches = options.events.div_ceil(options.batch);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    thread::scope(|s| {
        for _ in 0..options.connections {
            s.spawn(|| {
                let agent = agent();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= batches {
                        break;
                    }
                    let range = k * options.batch..((k + 1) * options.batch).min(options.events);
                    let n = range.len();
                    let body = Value::Array(
                        range
                            .map(|i| event(i, options.events, first_ms, span_ms))
                            .collect(),
                    )
                    .to_string();
                    let reply = ok_body(
                        "POST /telemetry",
                        agent
                            .post(&url)
                            .header("Authorization", &auth)
                            .header("Content-Type", "application/json")
                            .send(&body),
                    );
                    assert_eq!(reply, format!("{{\"inserted\":{n}}}"), "{reply}");
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if finished.is_multiple_of((batches / 20).max(1)) {
                        let secs = started.elapsed().as_secs_f64();
                        let events = (finished * options.batch).min(options.events);
                        eprintln!(
                            "  {events:>9} events in {secs:>6.1} s = {:>7.0} events/s",
                            events as f64 / secs
                        );
                    }
                }
            });
        }
    });
    started.elapsed()
}

// -- queries --------------------------------------------------------------------------------

struct Latency {
    samples: usize,
    p50: f64,
    p90: f64,
}

/// Sequential requests on one connection: SAMPLES, or fewer when BUDGET
/// runs out (never fewer than MIN_SAMPLES), after one untimed request.
fn measure(agent: &ureq::Agent, url: &str, samples: usize) -> (Latency, String) {
    let mut times = Vec::with_capacity(samples);
    let mut last = get(agent, url);
    let started = Instant::now();
    while times.len() < samples && (times.len() < MIN_SAMPLES || started.elapsed() < BUDGET) {
        let t = Instant::now();
        last = get(agent, url);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let latency = Latency {
        samples: times.len(),
        p50: percentile(&times, 50.0),
        p90: percentile(&times, 90.0),
    };
    (latency, last)
}

/// What an answer holds, in a few words.
fn summary(body: &str) -> String {
    let value: Value = serde_json::from_str(body).expect("the answer is JSON");
    match &value {
        Value::Array(rows) => format!("{} rows", rows.len()),
        Value::Object(map) if map.contains_key("result_anomalies") => format!(
            "{} + {} rows",
            value["result_anomalies"].as_array().map_or(0, Vec::len),
            value["error_anomalies"].as_array().map_or(0, Vec::len)
        ),
        Value::Object(map) if map.contains_key("total") => {
            format!("total {}", value["total"])
        }
        _ => "?".into(),
    }
}

fn queries(now_ms: i64) -> Vec<(&'static str, String)> {
    let ago = |hours: i64| enc(&timestamp(now_ms - hours * 3_600_000)[..26]);
    vec![
        (
            "stats runtime,device_type (all)",
            "/telemetry/stats?group_by=runtime,device_type".into(),
        ),
        (
            "stats runtime,device_type since 24h",
            format!(
                "/telemetry/stats?group_by=runtime,device_type&since={}",
                ago(24)
            ),
        ),
        (
            "stats lab,device_id job_result 24h",
            format!(
                "/telemetry/stats?group_by=lab,device_id&kind=job_result&since={}",
                ago(24)
            ),
        ),
        (
            "stats kind since 7d",
            format!("/telemetry/stats?group_by=kind&since={}", ago(7 * 24)),
        ),
        (
            "stats tree since 48h",
            format!("/telemetry/stats?group_by=tree&since={}", ago(48)),
        ),
        (
            "stats tree runtime=lava-cip 24h",
            format!(
                "/telemetry/stats?group_by=tree&runtime=lava-cip&since={}",
                ago(24)
            ),
        ),
        ("anomalies (6h)", "/telemetry/anomalies".into()),
        (
            "anomalies window=48h",
            "/telemetry/anomalies?window=48h".into(),
        ),
        (
            "anomalies device 48h thr 1.0",
            "/telemetry/anomalies?scope=device&window=48h&threshold=1.0&min_total=3".into(),
        ),
        (
            "list since 24h infra=true",
            format!("/telemetry?since={}&is_infra_error=true&limit=50", ago(24)),
        ),
        (
            "list since 6h kind=job_result",
            format!("/telemetry?since={}&kind=job_result&limit=50", ago(6)),
        ),
        (
            "list runtime+device_type",
            "/telemetry?runtime=lava-collabora&device_type=board-07&limit=50".into(),
        ),
    ]
}

// -- main -----------------------------------------------------------------------------------

struct Options {
    events: usize,
    batch: usize,
    connections: usize,
    binary: PathBuf,
    dir: Option<PathBuf>,
    reuse: Option<PathBuf>,
    load_only: bool,
}

const USAGE: &str = "usage: cargo bench --bench telemetry -- [--events N] [--batch B] \
                     [--connections C] [--binary PATH] [--dir DIR] [--reuse DIR] [--load-only]";

fn parse_args() -> Options {
    let mut options = Options {
        events: DEFAULT_EVENTS,
        batch: DEFAULT_BATCH,
        connections: DEFAULT_CONNECTIONS,
        binary: PathBuf::from(process::BINARY),
        dir: None,
        reuse: None,
        load_only: false,
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
            "--bench" => {}
            "--events" => options.events = number("--events", value("--events")),
            "--batch" => options.batch = number("--batch", value("--batch")),
            "--connections" => {
                options.connections = number("--connections", value("--connections"))
            }
            "--binary" => options.binary = PathBuf::from(value("--binary")),
            "--dir" => options.dir = Some(PathBuf::from(value("--dir"))),
            "--reuse" => options.reuse = Some(PathBuf::from(value("--reuse"))),
            "--load-only" => options.load_only = true,
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
    let temp = tempfile::tempdir().expect("create a temporary directory");
    let dir = match (&options.reuse, &options.dir) {
        (Some(dir), _) => {
            assert!(
                dir.join("kci.db").exists(),
                "{} holds no kci.db",
                dir.display()
            );
            dir.clone()
        }
        (None, Some(dir)) => {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            assert!(
                !dir.join("kci.db").exists(),
                "{} already holds a kci.db",
                dir.display()
            );
            dir.clone()
        }
        (None, None) => temp.path().to_path_buf(),
    };
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "kci-lite telemetry benchmark: {} events over {SPAN_DAYS} days in batches of {} on {} \
         connections; server {} (KCI_HTTP_THREADS=16, KCI_SYNCHRONOUS unset = full); {cores} \
         CPU cores shared by server and client",
        options.events,
        options.batch,
        options.connections,
        options.binary.display()
    );
    let mut server = Server::start(&options.binary, &dir);
    let now_ms = Utc::now().timestamp_millis();
    let hello_url = server.url("/");
    if options.reuse.is_none() {
        let token = server.login();
        eprintln!("hello-world throughput ...");
        let hello = throughput(options.connections, |a| {
            get(a, &hello_url);
        });
        eprintln!("loading {} events ...", options.events);
        let took = load(&server, &token, &options, now_ms);
        let secs = took.as_secs_f64();
        let requests = options.events.div_ceil(options.batch) as f64;
        println!();
        println!("insert ({} connections, keep-alive)", options.connections);
        println!("  hello world GET /latest/            {hello:>9.0} req/s");
        println!(
            "  POST /telemetry, {} events/request  {:>9.0} req/s = {:.0} events/s \
             ({} events in {secs:.1} s)",
            options.batch,
            requests / secs,
            options.events as f64 / secs,
            options.events
        );
    }

    let query_set = if options.load_only {
        Vec::new()
    } else {
        queries(now_ms)
    };
    println!();
    println!(
        "requests (one connection, sequential, latency in ms; hello = GET /latest/ on the same \
         connection right before)"
    );
    println!(
        "  {:<36} {:>9} {:>9} {:>5} | {:>7} {:>7} | answer",
        "request", "p50", "p90", "n", "hello50", "hello90"
    );
    let agent = agent();
    for (label, path) in query_set {
        let (hello, _) = measure(&agent, &hello_url, HELLO_SAMPLES);
        let (latency, body) = measure(&agent, &server.url(&path), SAMPLES);
        println!(
            "  {label:<36} {:>9.2} {:>9.2} {:>5} | {:>7.3} {:>7.3} | {}",
            latency.p50,
            latency.p90,
            latency.samples,
            hello.p50,
            hello.p90,
            summary(&body)
        );
    }
    server.stop();
    let db = file_size(&dir.join("kci.db"));
    let wal = file_size(&dir.join("kci.db-wal"));
    println!();
    println!(
        "database after shutdown: kci.db {:.1} MiB, kci.db-wal {:.1} MiB ({:.0} bytes/event); \
         total run {:.1} s",
        mib(db),
        mib(wal),
        (db + wal) as f64 / options.events as f64,
        run_started.elapsed().as_secs_f64()
    );
}
