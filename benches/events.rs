//! Pub/sub and timer benchmark: starts the release binary as a separate
//! process (port 0, temporary database, one fresh server per
//! measurement) and prints
//!
//! 1. publish → listen latency (p50/p99/max) with L listeners on one
//!    channel while publishers send R events/s for S seconds, at the
//!    requested point L × R and at smaller reference points, with the
//!    deliveries that arrived, the deliveries/s achieved and the CPU of
//!    server and client;
//! 2. how many parked listeners the server holds: server RSS and threads
//!    before and after P listeners park, hello-world throughput and a small
//!    `POST /publish` round trip before and while they are parked, and the
//!    time until all P got one event published on their channel;
//! 3. timer lag: N running nodes with timeouts a day ahead, then K nodes
//!    whose timeouts fall within the next 5–15 s; for each, the time from
//!    its timeout to the arrival of its `updated` (running → done) event
//!    on channel `node` (so the lag includes the pub/sub delivery);
//! 4. the latency workload of 1 with batch consumers: each listener calls
//!    `/listen?max=100` and takes everything available at once, at the
//!    points L × R/10 and L × R (or `--batch-points`);
//! 5. filtered subscriptions: server CPU per 1,000 node events (POST /node
//!    from 8 threads) with no subscription, with F subscriptions whose
//!    conditions match 1% of the events, with F whose conditions match
//!    none, with F promiscuous unfiltered ones and with F subscriptions of
//!    another user that the owner filter gives nothing; each subscription
//!    has a listener consuming it.
//!
//! It prints figures only; nothing is asserted.
//!
//! ```text
//! cargo bench --bench events -- [--listeners 100] [--rate 1000] [--seconds 10]
//!                               [--parked 1000] [--pending 100000] [--binary PATH]
//!                               [--points LxR,LxR,...] [--publishers 8] [--drain 30]
//!                               [--batch-points LxR,...] [--filter-subs 100]
//!                               [--filter-nodes 5000]
//!                               [--phases latency,parked,timer,batch,filter]
//! ```
//!
//! `--points` replaces the default latency points (L × R/100, L × R/50,
//! L × R/20, L × R/10, L/10 × R and L × R). Each `/listen` returns one
//! message, so L × R is also the number of HTTP responses per second the
//! server must send; the smaller points show where that saturates.
//! `--drain` is how long to wait after publishing for the listeners to
//! catch up; `--phases` runs only some of the three parts.
//! Progress goes to standard error, the results to standard output.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{NaiveDateTime, Utc};
use serde_json::{Value, json};

#[allow(dead_code)] // the bench uses only part of the tests' helper
#[path = "../tests/common/process.rs"]
mod process;

use process::ServerProcess;

const DEFAULT_LISTENERS: usize = 100;
const DEFAULT_RATE: usize = 1000;
const DEFAULT_SECONDS: usize = 10;
const DEFAULT_PARKED: usize = 1000;
const DEFAULT_PENDING: usize = 100_000;
const DEFAULT_PUBLISHERS: usize = 8;
const DEFAULT_DRAIN: usize = 30;
/// Messages one batch consumer asks for per `/listen` (phase 4).
const BATCH_MAX: usize = 100;
/// Subscriptions of each kind and node events of phase 5.
const DEFAULT_FILTER_SUBS: usize = 100;
const DEFAULT_FILTER_NODES: usize = 5000;
/// One node in this many matches the filtered subscriptions of phase 5.
const FILTER_ONE_IN: usize = 100;
/// Threads creating nodes in phase 5.
const NODE_WRITERS: usize = 8;
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections for hello-world throughput and for loading pending nodes.
const CONNECTIONS: usize = 16;
const THROUGHPUT_TIME: Duration = Duration::from_secs(5);
/// Sequential `POST /publish` round trips measured for the parked phase.
const PUBLISH_SAMPLES: usize = 200;
/// Stack of each parked listener thread of the client.
const PARKED_STACK: usize = 64 * 1024;
/// Nodes whose timeouts the timer phase watches, and their spread.
const TIMER_NODES: usize = 200;
const TIMER_FIRST: Duration = Duration::from_secs(5);
const TIMER_SPREAD: Duration = Duration::from_secs(10);
/// Keep-alive periods given to the server (KEEP_ALIVE_PERIOD).
const KEEP_ALIVE_LATENCY: &str = "30";
const KEEP_ALIVE_PARKED: &str = "60";
const KEEP_ALIVE_TIMER: &str = "30";
const PASSWORD: &str = "bench-pw";

// -- small helpers ------------------------------------------------------------------------

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds since the Unix epoch (the publisher's and listeners'
/// shared clock: client and server run on one machine).
fn unix_us() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(d.as_micros()).expect("micros fit in i64")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `VmRSS` (KiB) and `Threads` of a process, from /proc/<pid>/status.
fn proc_status(pid: u32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

/// User + system CPU time (seconds) from the text of a /proc stat file.
fn stat_cpu(text: &str, ticks: f64) -> f64 {
    // the command name may contain spaces: count fields after the last ')'
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields after ')' start with the state, field 3 of the full line;
    // utime and stime are fields 14 and 15
    let get = |i: usize| -> f64 {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get(14) + get(15)) / ticks
}

/// User + system CPU time of a process ("self" or a pid), in seconds.
fn cpu_seconds(pid: &str, ticks: f64) -> f64 {
    stat_cpu(
        &fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
        ticks,
    )
}

/// CPU seconds of every live thread of `pid`: tid → (group, seconds),
/// where the group is the thread name without a trailing number
/// (`kci-http-3` → `kci-http`; unnamed threads carry the process name).
fn thread_cpu(pid: &str, ticks: f64) -> HashMap<String, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) = (
            fs::read_to_string(path.join("comm")),
            fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        let group = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-')
            .to_string();
        out.insert(
            task.file_name().to_string_lossy().into_owned(),
            (group, stat_cpu(&stat, ticks)),
        );
    }
    out
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU used by the server and by this client over an interval.
struct CpuMeter {
    pid: String,
    ticks: f64,
    started: Instant,
    server: f64,
    client: f64,
    threads: HashMap<String, (String, f64)>,
}

/// What a CpuMeter measured, in percent of one core.
struct CpuUse {
    server: f64,
    client: f64,
    /// Server threads grouped by name, busiest first (threads that ended
    /// during the interval are missing).
    groups: Vec<(String, usize, f64)>,
}

impl CpuUse {
    /// The busiest server thread groups, e.g. `kci-http(16) 40%`.
    fn top(&self, n: usize) -> String {
        self.groups
            .iter()
            .take(n)
            .map(|(name, count, pct)| format!("{name}({count}) {pct:.0}%"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl CpuMeter {
    fn start(pid: u32, ticks: f64) -> CpuMeter {
        let pid = pid.to_string();
        CpuMeter {
            server: cpu_seconds(&pid, ticks),
            client: cpu_seconds("self", ticks),
            threads: thread_cpu(&pid, ticks),
            pid,
            ticks,
            started: Instant::now(),
        }
    }

    fn read(&self) -> CpuUse {
        let secs = self.started.elapsed().as_secs_f64();
        let server = cpu_seconds(&self.pid, self.ticks) - self.server;
        let client = cpu_seconds("self", self.ticks) - self.client;
        let mut groups: HashMap<String, (usize, f64)> = HashMap::new();
        for (tid, (group, now)) in thread_cpu(&self.pid, self.ticks) {
            let before = self.threads.get(&tid).map_or(0.0, |(_, s)| *s);
            let entry = groups.entry(group).or_default();
            entry.0 += 1;
            entry.1 += now - before;
        }
        let mut groups: Vec<(String, usize, f64)> = groups
            .into_iter()
            .map(|(name, (count, cpu))| (name, count, 100.0 * cpu / secs))
            .collect();
        groups.sort_by(|a, b| b.2.total_cmp(&a.2));
        CpuUse {
            server: 100.0 * server / secs,
            client: 100.0 * client / secs,
            groups,
        }
    }
}

fn machine_notes() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let files = fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .unwrap_or_default();
    format!(
        "{cores} CPU cores shared by server and client; load average {}; \
         open files soft / hard {files}",
        load.join(" ")
    )
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

/// Status and body of a response.
fn read(
    what: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> (u16, String) {
    let mut resp = result.unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
    (status, body)
}

/// Reads the body of a response that must have status 200.
fn ok_body(what: &str, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> String {
    let (status, body) = read(what, result);
    assert!(status == 200, "{what}: status {status}: {body}");
    body
}

/// Requests per second of `request` from CONNECTIONS threads, each with
/// its own agent (keep-alive), for THROUGHPUT_TIME.
fn throughput(request: impl Fn(&ureq::Agent) + Sync) -> f64 {
    let started = Instant::now();
    let counts: Vec<usize> = thread::scope(|s| {
        let handles: Vec<_> = (0..CONNECTIONS)
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
            .map(|h| h.join().expect("throughput thread panicked"))
            .collect()
    });
    counts.iter().sum::<usize>() as f64 / started.elapsed().as_secs_f64()
}

// -- the server -----------------------------------------------------------------------------

struct Server {
    process: ServerProcess,
    token: String,
    /// Holds the database and the log until the server is dropped.
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(binary: &Path, keep_alive: &str) -> Server {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let process = ServerProcess::builder()
            .binary(binary)
            .db(&dir.path().join("kci.db"))
            // no stray .env from the caller's directory
            .current_dir(dir.path())
            .env("KCI_INITIAL_PASSWORD", PASSWORD)
            .env("SECRET_KEY", "bench-secret-key-0123456789")
            .env("KCI_BCRYPT_COST", "4")
            .env("KCI_HTTP_THREADS", "16")
            .env("KEEP_ALIVE_PERIOD", keep_alive)
            .env_remove("KCI_SYNCHRONOUS")
            .log_file(&dir.path().join("server.log"))
            .start();
        let mut server = Server {
            process,
            token: String::new(),
            _dir: dir,
        };
        server.token = server.login();
        server
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/latest{path}", self.process.url())
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
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

    fn hello(&self, agent: &ureq::Agent) {
        ok_body(
            "GET /latest/",
            agent
                .get(self.url("/"))
                .header("Accept", "application/json")
                .call(),
        );
    }

    /// A new subscription to `channel` (promiscuous); its id.
    fn subscribe(&self, agent: &ureq::Agent, channel: &str) -> u64 {
        let body = ok_body(
            "subscribe",
            agent
                .post(self.url(&format!("/subscribe/{channel}?promisc=true")))
                .header("Authorization", self.auth())
                .send_empty(),
        );
        let reply: Value = serde_json::from_str(&body).expect("subscribe answers JSON");
        reply["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no id in {body}"))
    }

    fn unsubscribe(&self, agent: &ureq::Agent, id: u64) {
        // 404 is fine: already gone
        let _ = read(
            "unsubscribe",
            agent
                .post(self.url(&format!("/unsubscribe/{id}")))
                .header("Authorization", self.auth())
                .send_empty(),
        );
    }

    fn publish(&self, agent: &ureq::Agent, channel: &str, data: &Value) {
        ok_body(
            "publish",
            agent
                .post(self.url(&format!("/publish/{channel}")))
                .header("Authorization", self.auth())
                .header("Content-Type", "application/json")
                .send(json!({ "data": data }).to_string()),
        );
    }

    /// One `/listen`: `None` when the subscription is gone (404), else
    /// the CloudEvent's `data` (`"BEEP"` for a keep-alive).
    fn listen(&self, agent: &ureq::Agent, url: &str, auth: &str) -> Option<Value> {
        let (status, body) = read(
            "listen",
            agent.get(url).header("Authorization", auth).call(),
        );
        if status == 404 {
            return None;
        }
        assert!(status == 200, "listen: status {status}: {body}");
        let message: Value = serde_json::from_str(&body).expect("listen answers JSON");
        let text = message["data"]
            .as_str()
            .unwrap_or_else(|| panic!("listen: no data text in {body}"));
        let mut envelope: Value =
            serde_json::from_str(text).expect("the listen data is a CloudEvent");
        Some(envelope["data"].take())
    }

    /// One `/listen?max=…` (`url` carries it): `None` when the subscription
    /// is gone (404), else the `data` of each CloudEvent of the batch.
    fn listen_batch(&self, agent: &ureq::Agent, url: &str, auth: &str) -> Option<Vec<Value>> {
        let (status, body) = read(
            "listen?max",
            agent.get(url).header("Authorization", auth).call(),
        );
        if status == 404 {
            return None;
        }
        assert!(status == 200, "listen?max: status {status}: {body}");
        let batch: Value = serde_json::from_str(&body).expect("listen answers JSON");
        let items = batch
            .as_array()
            .unwrap_or_else(|| panic!("listen?max: not a list: {body}"));
        Some(
            items
                .iter()
                .map(|message| {
                    let text = message["data"]
                        .as_str()
                        .unwrap_or_else(|| panic!("listen?max: no data text in {body}"));
                    let mut envelope: Value =
                        serde_json::from_str(text).expect("the listen data is a CloudEvent");
                    envelope["data"].take()
                })
                .collect(),
        )
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

// -- 1. publish → listen latency ------------------------------------------------------------

struct LatencyPoint {
    /// `Some(n)`: the listeners called `/listen?max=n`.
    batch: Option<usize>,
    listeners: usize,
    rate: usize,
    sent: usize,
    publish_secs: f64,
    expected: usize,
    arrived: usize,
    beeps: usize,
    /// From the first publish to the last delivery.
    delivery_secs: f64,
    /// Waited for the listeners after the last publish.
    drain_secs: f64,
    drained: bool,
    sorted_ms: Vec<f64>,
    publish_p50_ms: f64,
    publish_p99_ms: f64,
    cpu: CpuUse,
    server_rss_kib: u64,
    server_threads: u64,
}

fn latency_point(
    options: &Options,
    listeners: usize,
    rate: usize,
    batch: Option<usize>,
    ticks: f64,
) -> LatencyPoint {
    eprintln!(
        "latency: {listeners} listeners{} x {rate} events/s for {} s ...",
        batch.map_or(String::new(), |n| format!(" (listen?max={n})")),
        options.seconds
    );
    let server = Server::start(&options.binary, KEEP_ALIVE_LATENCY);
    let control = agent();
    let subs: Vec<u64> = (0..listeners)
        .map(|_| server.subscribe(&control, "bench"))
        .collect();
    let received = AtomicUsize::new(0);
    let sent_total = AtomicUsize::new(usize::MAX);
    let started = Mutex::new(None::<Instant>);
    let publishers = options.publishers;
    let seconds = Duration::from_secs(options.seconds as u64);
    let auth = server.auth();
    let next = AtomicU64::new(0);

    let (listener_results, publisher_results, meter, drain_secs, drained, stats) =
        thread::scope(|s| {
            let listener_handles: Vec<_> = subs
                .iter()
                .map(|&id| {
                    let (server, received, auth) = (&server, &received, &auth);
                    s.spawn(move || {
                        let agent = agent();
                        let url = match batch {
                            Some(n) => server.url(&format!("/listen/{id}?max={n}")),
                            None => server.url(&format!("/listen/{id}")),
                        };
                        let mut latencies = Vec::new();
                        let mut beeps = 0;
                        let mut last = None;
                        let next = |agent: &ureq::Agent| match batch {
                            Some(_) => server.listen_batch(agent, &url, auth),
                            None => server.listen(agent, &url, auth).map(|d| vec![d]),
                        };
                        while let Some(items) = next(&agent) {
                            let now = unix_us();
                            for data in items {
                                if data == "BEEP" {
                                    beeps += 1;
                                    continue;
                                }
                                let t_us = data["t_us"]
                                    .as_i64()
                                    .unwrap_or_else(|| panic!("no t_us in {data}"));
                                latencies.push((now - t_us) as f64 / 1000.0);
                                last = Some(Instant::now());
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        (latencies, beeps, last)
                    })
                })
                .collect();
            // let every listener make its first /listen (messages are queued
            // from the subscription on anyway)
            thread::sleep(Duration::from_millis(500));

            let meter = CpuMeter::start(server.pid(), ticks);
            let t0 = Instant::now() + Duration::from_millis(50);
            *started.lock().expect("lock") = Some(t0);
            let publisher_handles: Vec<_> = (0..publishers)
                .map(|_| {
                    let (server, next) = (&server, &next);
                    s.spawn(move || {
                        let agent = agent();
                        let mut times = Vec::new();
                        let mut last_end = t0;
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
                            if due >= t0 + seconds {
                                break;
                            }
                            let now = Instant::now();
                            if now >= t0 + seconds {
                                break;
                            }
                            if due > now {
                                thread::sleep(due - now);
                            }
                            let begin = Instant::now();
                            server.publish(&agent, "bench", &json!({"n": i, "t_us": unix_us()}));
                            last_end = Instant::now();
                            times.push((last_end - begin).as_secs_f64() * 1000.0);
                        }
                        (times, last_end)
                    })
                })
                .collect();
            let publisher_results: Vec<(Vec<f64>, Instant)> = publisher_handles
                .into_iter()
                .map(|h| h.join().expect("publisher panicked"))
                .collect();
            let sent: usize = publisher_results.iter().map(|(t, _)| t.len()).sum();
            sent_total.store(sent, Ordering::Relaxed);
            let expected = sent * listeners;
            let drain_started = Instant::now();
            let drain_limit = Duration::from_secs(options.drain as u64);
            let mut last_progress = Instant::now();
            while received.load(Ordering::Relaxed) < expected
                && drain_started.elapsed() < drain_limit
            {
                thread::sleep(Duration::from_millis(10));
                if last_progress.elapsed() >= Duration::from_secs(5) {
                    eprintln!(
                        "  draining: {} of {expected} deliveries",
                        received.load(Ordering::Relaxed)
                    );
                    last_progress = Instant::now();
                }
            }
            let drained = received.load(Ordering::Relaxed) >= expected;
            let drain_secs = drain_started.elapsed().as_secs_f64();
            let stats = proc_status(server.pid());
            let cpu = meter.read();
            for &id in &subs {
                server.unsubscribe(&control, id);
            }
            let listener_results: Vec<(Vec<f64>, usize, Option<Instant>)> = listener_handles
                .into_iter()
                .map(|h| h.join().expect("listener panicked"))
                .collect();
            (
                listener_results,
                publisher_results,
                cpu,
                drain_secs,
                drained,
                stats,
            )
        });
    drop(server);

    let t0 = started
        .into_inner()
        .expect("lock")
        .expect("the publishers started");
    let sent = sent_total.load(Ordering::Relaxed);
    let publish_end = publisher_results
        .iter()
        .map(|(_, end)| *end)
        .max()
        .unwrap_or(t0);
    let mut publish_ms: Vec<f64> = publisher_results
        .iter()
        .flat_map(|(t, _)| t.iter().copied())
        .collect();
    publish_ms.sort_by(f64::total_cmp);
    let last_delivery = listener_results
        .iter()
        .filter_map(|(_, _, last)| *last)
        .max()
        .unwrap_or(t0);
    let mut sorted_ms: Vec<f64> = listener_results
        .iter()
        .flat_map(|(l, _, _)| l.iter().copied())
        .collect();
    sorted_ms.sort_by(f64::total_cmp);
    let point = LatencyPoint {
        batch,
        listeners,
        rate,
        sent,
        publish_secs: publish_end.saturating_duration_since(t0).as_secs_f64(),
        expected: sent * listeners,
        arrived: sorted_ms.len(),
        beeps: listener_results.iter().map(|(_, b, _)| b).sum(),
        delivery_secs: last_delivery.saturating_duration_since(t0).as_secs_f64(),
        drain_secs,
        drained,
        publish_p50_ms: percentile(&publish_ms, 50.0),
        publish_p99_ms: percentile(&publish_ms, 99.0),
        sorted_ms,
        cpu: meter,
        server_rss_kib: stats.0,
        server_threads: stats.1,
    };
    eprintln!(
        "  sent {} ({:.0}/s), {} of {} deliveries, p50 {:.2} ms, p99 {:.2} ms",
        point.sent,
        point.sent as f64 / point.publish_secs,
        point.arrived,
        point.expected,
        percentile(&point.sorted_ms, 50.0),
        percentile(&point.sorted_ms, 99.0)
    );
    point
}

fn print_latency(options: &Options, points: &[LatencyPoint]) {
    println!();
    match points.first().and_then(|p| p.batch) {
        None => println!(
            "1. publish -> listen latency (channel \"bench\", KEEP_ALIVE_PERIOD={KEEP_ALIVE_LATENCY}, \
             {} s of publishing, {} publisher threads, then up to {} s to drain; \
             latency = receive time - send time in the event)",
            options.seconds, options.publishers, options.drain
        ),
        Some(n) => println!(
            "4. publish -> listen latency with batch consumers (each listener calls \
             /listen?max={n}; otherwise as 1)"
        ),
    }
    println!(
        "  {:>9} {:>6} | {:>7} {:>8} {:>8} {:>8} | {:>9} {:>9} {:>6} {:>8} | {:>8} {:>8} {:>8} | {:>6} {:>6} | {:>11}",
        "listeners",
        "rate",
        "sent",
        "pub/s",
        "pub p50",
        "pub p99",
        "expected",
        "arrived",
        "%",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "srvCPU",
        "cliCPU",
        "drain"
    );
    for p in points {
        let drain = if p.drained {
            format!("{:.1} s", p.drain_secs)
        } else {
            format!("cut {:.0} s", p.drain_secs)
        };
        println!(
            "  {:>9} {:>6} | {:>7} {:>8.0} {:>8.2} {:>8.2} | {:>9} {:>9} {:>5.1}% {:>8.0} | {:>8.2} {:>8.2} {:>8.2} | {:>5.0}% {:>5.0}% | {:>11}",
            p.listeners,
            p.rate,
            p.sent,
            p.sent as f64 / p.publish_secs,
            p.publish_p50_ms,
            p.publish_p99_ms,
            p.expected,
            p.arrived,
            100.0 * p.arrived as f64 / p.expected.max(1) as f64,
            p.arrived as f64 / p.delivery_secs,
            percentile(&p.sorted_ms, 50.0),
            percentile(&p.sorted_ms, 99.0),
            p.sorted_ms.last().copied().unwrap_or(f64::NAN),
            p.cpu.server,
            p.cpu.client,
            drain
        );
    }
    println!(
        "  (pub/s = events sent / publishing time; pub p50/p99 = POST /publish round trip in ms; \
         deliv/s = deliveries that arrived / time from the first publish to the last delivery; \
         latency percentiles over the deliveries that arrived; srvCPU/cliCPU = CPU of the server / \
         of this client in % of one core from the first publish to the end of the drain; \
         drain = time waited after the last publish, \"cut\" = gave up with deliveries missing)"
    );
    for p in points {
        println!(
            "  {} x {}: beeps {}; server at the end: RSS {:.1} MiB, {} threads; busiest server \
             threads: {}",
            p.listeners,
            p.rate,
            p.beeps,
            mib(p.server_rss_kib),
            p.server_threads,
            p.cpu.top(5)
        );
    }
}

// -- 2. parked listeners ------------------------------------------------------------------

struct ParkedResult {
    requested: usize,
    parked: usize,
    spawn_error: Option<String>,
    park_secs: f64,
    all_polled: bool,
    before: (u64, u64),
    after: (u64, u64),
    hello_before: f64,
    hello_parked: f64,
    publish_before: (f64, f64),
    publish_parked: (f64, f64),
    fan_out_ms: Option<f64>,
    fan_out_got: usize,
    fan_out_sorted_ms: Vec<f64>,
    after_fan_out: (u64, u64),
}

/// PUBLISH_SAMPLES sequential round trips of a small `POST /publish` on a
/// channel nobody listens to: (p50, p99) in ms.
fn publish_latency(server: &Server) -> (f64, f64) {
    let agent = agent();
    server.publish(&agent, "other", &json!({"warm": 1}));
    let mut times: Vec<f64> = (0..PUBLISH_SAMPLES)
        .map(|i| {
            let t = Instant::now();
            server.publish(&agent, "other", &json!({"n": i}));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (percentile(&times, 50.0), percentile(&times, 99.0))
}

/// How many subscriptions have been polled at least once.
fn polled(server: &Server, agent: &ureq::Agent) -> usize {
    let body = ok_body(
        "stats/subscriptions",
        agent
            .get(server.url("/stats/subscriptions"))
            .header("Authorization", server.auth())
            .call(),
    );
    let list: Value = serde_json::from_str(&body).expect("stats answer JSON");
    list.as_array().map_or(0, |l| {
        l.iter().filter(|s| !s["last_poll"].is_null()).count()
    })
}

fn parked_phase(options: &Options) -> ParkedResult {
    eprintln!("parked: baseline ...");
    let server = Server::start(&options.binary, KEEP_ALIVE_PARKED);
    let hello_before = throughput(|a| server.hello(a));
    let publish_before = publish_latency(&server);
    // tiny_http ends a connection thread 5 s after its connection closed:
    // let those of the baseline go
    thread::sleep(Duration::from_secs(6));
    let before = proc_status(server.pid());
    let control = agent();
    eprintln!("parked: {} subscriptions and listeners ...", options.parked);
    let subs: Vec<u64> = (0..options.parked)
        .map(|_| server.subscribe(&control, "parked"))
        .collect();
    let got = AtomicUsize::new(0);
    let published_at = Mutex::new(None::<(Instant, i64)>);
    let auth = server.auth();
    let stop_waiting = AtomicBool::new(false);

    thread::scope(|s| {
        let mut handles = Vec::new();
        let mut spawn_error = None;
        for &id in &subs {
            let (server, got, auth, stop_waiting) = (&server, &got, &auth, &stop_waiting);
            let spawned = thread::Builder::new()
                .stack_size(PARKED_STACK)
                .spawn_scoped(s, move || {
                    let agent = agent();
                    let url = server.url(&format!("/listen/{id}"));
                    while let Some(data) = server.listen(&agent, &url, auth) {
                        if data == "BEEP" {
                            if stop_waiting.load(Ordering::Relaxed) {
                                return None;
                            }
                            continue;
                        }
                        let at = (Instant::now(), unix_us());
                        got.fetch_add(1, Ordering::Relaxed);
                        return Some(at);
                    }
                    None
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(format!("thread {} failed to start: {e}", handles.len()));
                    break;
                }
            }
        }
        let parked = handles.len();
        let park_started = Instant::now();
        let mut all_polled = false;
        while park_started.elapsed() < Duration::from_secs(60) {
            if polled(&server, &control) >= parked {
                all_polled = true;
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let park_secs = park_started.elapsed().as_secs_f64();
        thread::sleep(Duration::from_secs(2));
        let after = proc_status(server.pid());
        eprintln!(
            "parked: {parked} listeners parked in {park_secs:.1} s; hello and publish while parked ..."
        );
        let hello_parked = throughput(|a| server.hello(a));
        let publish_parked = publish_latency(&server);

        eprintln!("parked: one event to all {parked} ...");
        let t = Instant::now();
        let t_us = unix_us();
        *published_at.lock().expect("lock") = Some((t, t_us));
        server.publish(&control, "parked", &json!({"t_us": t_us}));
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.load(Ordering::Relaxed) < parked && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        let after_fan_out = proc_status(server.pid());
        stop_waiting.store(true, Ordering::Relaxed);
        for &id in &subs {
            server.unsubscribe(&control, id);
        }
        let results: Vec<Option<(Instant, i64)>> = handles
            .into_iter()
            .map(|h| h.join().expect("parked listener panicked"))
            .collect();
        let received: Vec<(Instant, i64)> = results.into_iter().flatten().collect();
        let mut sorted_ms: Vec<f64> = received
            .iter()
            .map(|(_, us)| (us - t_us) as f64 / 1000.0)
            .collect();
        sorted_ms.sort_by(f64::total_cmp);
        let fan_out_ms = if received.len() == parked {
            received
                .iter()
                .map(|(at, _)| *at)
                .max()
                .map(|last| last.saturating_duration_since(t).as_secs_f64() * 1000.0)
        } else {
            None
        };
        ParkedResult {
            requested: options.parked,
            parked,
            spawn_error,
            park_secs,
            all_polled,
            before,
            after,
            hello_before,
            hello_parked,
            publish_before,
            publish_parked,
            fan_out_ms,
            fan_out_got: received.len(),
            fan_out_sorted_ms: sorted_ms,
            after_fan_out,
        }
    })
}

fn print_parked(r: &ParkedResult) {
    println!();
    println!(
        "2. parked listeners (KEEP_ALIVE_PERIOD={KEEP_ALIVE_PARKED}; one subscription, one \
         connection and one client thread with a {} KiB stack per listener)",
        PARKED_STACK / 1024
    );
    println!(
        "  listeners parked              {} of {} requested{}{}",
        r.parked,
        r.requested,
        if r.all_polled {
            format!(" (all had polled after {:.1} s)", r.park_secs)
        } else {
            " (NOT all had polled within 60 s)".to_string()
        },
        r.spawn_error
            .as_ref()
            .map(|e| format!("; {e}"))
            .unwrap_or_default()
    );
    let per = |a: u64, b: u64| (a as f64 - b as f64) / r.parked.max(1) as f64;
    println!(
        "  server RSS                    {:>8.1} MiB before, {:>8.1} MiB parked  \
         ({:.1} KiB per listener)",
        mib(r.before.0),
        mib(r.after.0),
        per(r.after.0, r.before.0)
    );
    println!(
        "  server threads                {:>8} before, {:>8} parked  ({:.2} per listener)",
        r.before.1,
        r.after.1,
        per(r.after.1, r.before.1)
    );
    println!(
        "  hello world GET /latest/      {:>8.0} req/s before, {:>8.0} req/s parked  \
         (ratio {:.2}; {CONNECTIONS} connections, {} s)",
        r.hello_before,
        r.hello_parked,
        r.hello_parked / r.hello_before,
        THROUGHPUT_TIME.as_secs()
    );
    println!(
        "  POST /publish round trip      p50 {:.2} ms / p99 {:.2} ms before, \
         p50 {:.2} ms / p99 {:.2} ms parked  ({PUBLISH_SAMPLES} sequential, channel \"other\")",
        r.publish_before.0, r.publish_before.1, r.publish_parked.0, r.publish_parked.1
    );
    match r.fan_out_ms {
        Some(ms) => println!(
            "  one event to all parked       all {} got it {:.1} ms after the publish started \
             (per listener p50 {:.1} ms, p99 {:.1} ms)",
            r.parked,
            ms,
            percentile(&r.fan_out_sorted_ms, 50.0),
            percentile(&r.fan_out_sorted_ms, 99.0)
        ),
        None => println!(
            "  one event to all parked       only {} of {} got it within 60 s",
            r.fan_out_got, r.parked
        ),
    }
    println!(
        "  server after the fan-out      RSS {:.1} MiB, {} threads",
        mib(r.after_fan_out.0),
        r.after_fan_out.1
    );
}

// -- 3. timer lag -----------------------------------------------------------------------------

struct TimerResult {
    pending: usize,
    load_secs: f64,
    create_secs: f64,
    watched: usize,
    sorted_ms: Vec<f64>,
    late_created: usize,
    cpu_wait: CpuUse,
    rss_kib: u64,
}

fn node_body(name: &str, timeout: &str) -> String {
    json!({
        "kind": "process",
        "name": name,
        "path": ["bench", name],
        "state": "running",
        "data": {},
        "timeout": timeout,
    })
    .to_string()
}

fn format_ts(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// POST /node; (id, timeout as unix micros) of the created node.
fn create_node(server: &Server, agent: &ureq::Agent, body: String) -> (String, i64) {
    let reply = ok_body(
        "POST /node",
        agent
            .post(server.url("/node"))
            .header("Authorization", server.auth())
            .header("Content-Type", "application/json")
            .send(&body),
    );
    let node: Value = serde_json::from_str(&reply).expect("POST /node answers JSON");
    let id = node["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {reply}"))
        .to_string();
    let timeout = node["timeout"]
        .as_str()
        .unwrap_or_else(|| panic!("no timeout in {reply}"));
    let timeout = NaiveDateTime::parse_from_str(timeout, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("timeout {timeout:?}: {e}"))
        .and_utc()
        .timestamp_micros();
    (id, timeout)
}

fn timer_phase(options: &Options, ticks: f64) -> TimerResult {
    let server = Server::start(&options.binary, KEEP_ALIVE_TIMER);
    let far = format_ts(Utc::now() + chrono::Duration::days(1));
    eprintln!(
        "timer: loading {} running nodes (timeout {far}) ...",
        options.pending
    );
    let next = AtomicUsize::new(0);
    let load_started = Instant::now();
    thread::scope(|s| {
        for _ in 0..CONNECTIONS {
            s.spawn(|| {
                let agent = agent();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= options.pending {
                        break;
                    }
                    create_node(&server, &agent, node_body(&format!("pending-{i}"), &far));
                    if (i + 1).is_multiple_of(10_000) {
                        eprintln!(
                            "  {} nodes in {:.1} s",
                            i + 1,
                            load_started.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    let load_secs = load_started.elapsed().as_secs_f64();

    let control = agent();
    let sub = server.subscribe(&control, "node");
    let (tx, rx) = mpsc::channel::<(String, i64)>();
    let auth = server.auth();
    thread::scope(|s| {
        let server = &server;
        let auth = &auth;
        s.spawn(move || {
            let agent = agent();
            let url = server.url(&format!("/listen/{sub}"));
            while let Some(data) = server.listen(&agent, &url, auth) {
                let now = unix_us();
                if data["op"] == "updated"
                    && data["previous_state"] == "running"
                    && data["state"] == "done"
                    && let Some(id) = data["id"].as_str()
                {
                    let _ = tx.send((id.to_string(), now));
                }
            }
        });
        eprintln!(
            "timer: {TIMER_NODES} nodes with timeouts in {}..{} s ...",
            TIMER_FIRST.as_secs(),
            (TIMER_FIRST + TIMER_SPREAD).as_secs()
        );
        let base = Utc::now() + chrono::Duration::from_std(TIMER_FIRST).expect("small duration");
        let step = TIMER_SPREAD.as_secs_f64() / (TIMER_NODES - 1) as f64;
        let agent = agent();
        let create_started = Instant::now();
        let mut watched: HashMap<String, i64> = HashMap::new();
        let mut late_created = 0;
        for i in 0..TIMER_NODES {
            let timeout = base + chrono::Duration::microseconds((i as f64 * step * 1e6) as i64);
            let (id, timeout_us) = create_node(
                server,
                &agent,
                node_body(&format!("timed-{i}"), &format_ts(timeout)),
            );
            if unix_us() >= timeout_us {
                late_created += 1;
            }
            watched.insert(id, timeout_us);
        }
        let create_secs = create_started.elapsed().as_secs_f64();
        let meter = CpuMeter::start(server.pid(), ticks);
        let last_deadline = watched.values().copied().max().unwrap_or(0);
        let give_up = last_deadline + 15_000_000;
        let mut lags = Vec::new();
        while lags.len() < watched.len() {
            let wait = (give_up - unix_us()).max(0) as u64;
            match rx.recv_timeout(Duration::from_micros(wait)) {
                Ok((id, at)) => {
                    if let Some(timeout) = watched.get(&id) {
                        lags.push((at - timeout) as f64 / 1000.0);
                    }
                }
                Err(_) => break,
            }
        }
        let cpu_wait = meter.read();
        let rss_kib = proc_status(server.pid()).0;
        server.unsubscribe(&control, sub);
        lags.sort_by(f64::total_cmp);
        TimerResult {
            pending: options.pending,
            load_secs,
            create_secs,
            watched: watched.len(),
            sorted_ms: lags,
            late_created,
            cpu_wait,
            rss_kib,
        }
    })
}

fn print_timer(r: &TimerResult) {
    println!();
    println!(
        "3. timer lag (KEEP_ALIVE_PERIOD={KEEP_ALIVE_TIMER}; lag = arrival of the node's \
         `updated` running -> done event at a promiscuous listener on channel \"node\" \
         - its timeout)"
    );
    println!(
        "  pending nodes loaded          {} in {:.1} s = {:.0} POST /node per s \
         ({CONNECTIONS} connections, kind process, timeout +1 day)",
        r.pending,
        r.load_secs,
        r.pending as f64 / r.load_secs
    );
    println!(
        "  watched nodes                 {} created in {:.2} s, timeouts spread over now+{}..{} s \
         ({} created after their own timeout)",
        r.watched,
        r.create_secs,
        TIMER_FIRST.as_secs(),
        (TIMER_FIRST + TIMER_SPREAD).as_secs(),
        r.late_created
    );
    println!(
        "  events arrived                {} of {}",
        r.sorted_ms.len(),
        r.watched
    );
    println!(
        "  lag after the deadline        p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, min {:.1} ms  \
         (goal p99 <= 1000 ms)",
        percentile(&r.sorted_ms, 50.0),
        percentile(&r.sorted_ms, 99.0),
        r.sorted_ms.last().copied().unwrap_or(f64::NAN),
        r.sorted_ms.first().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  server while the timeouts fired: {:.0}% of one core (busiest threads: {}), \
         RSS {:.1} MiB",
        r.cpu_wait.server,
        r.cpu_wait.top(3),
        mib(r.rss_kib)
    );
}

// -- 5. filtered subscriptions ----------------------------------------------------------------

/// What the subscriptions of one filter run ask for.
#[derive(Clone, Copy, PartialEq)]
enum FilterKind {
    /// No subscription at all (the cost of the node events themselves).
    Nothing,
    /// Promiscuous, with conditions that 1 event in FILTER_ONE_IN meets.
    Matching,
    /// Promiscuous, with conditions that no event meets.
    MatchingNone,
    /// Promiscuous, without conditions: every event.
    Unfiltered,
    /// Another user's, not promiscuous: the owner filter passes nothing.
    OwnerFiltered,
}

impl FilterKind {
    fn label(self) -> &'static str {
        match self {
            FilterKind::Nothing => "no subscription",
            FilterKind::Matching => "conditions matching 1%",
            FilterKind::MatchingNone => "conditions matching 0%",
            FilterKind::Unfiltered => "promiscuous, unfiltered",
            FilterKind::OwnerFiltered => "owner filter, sees 0%",
        }
    }
}

struct FilterRow {
    kind: FilterKind,
    subs: usize,
    nodes: usize,
    create_secs: f64,
    expected: usize,
    arrived: usize,
    drained: bool,
    server_cpu_secs: f64,
}

/// A second, verified user (invite flow); its access token.
fn other_user_token(server: &Server, agent: &ureq::Agent) -> String {
    let username = format!("bench-other-{}", std::process::id());
    let invite = ok_body(
        "invite",
        agent
            .post(server.url("/user/invite"))
            .header("Authorization", server.auth())
            .header("Content-Type", "application/json")
            .send(
                json!({"username": username, "email": format!("{username}@example.com"),
                       "send_email": false, "return_token": true})
                .to_string(),
            ),
    );
    let invite: Value = serde_json::from_str(&invite).expect("invite answers JSON");
    ok_body(
        "accept-invite",
        agent
            .post(server.url("/user/accept-invite"))
            .header("Content-Type", "application/json")
            .send(json!({"token": invite["token"], "password": PASSWORD}).to_string()),
    );
    let body = ok_body(
        "login",
        agent
            .post(server.url("/user/login"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(format!("username={username}&password={PASSWORD}")),
    );
    let reply: Value = serde_json::from_str(&body).expect("login answers JSON");
    reply["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_string()
}

fn filter_run(options: &Options, kind: FilterKind, ticks: f64) -> FilterRow {
    let subs_wanted = if kind == FilterKind::Nothing {
        0
    } else {
        options.filter_subs
    };
    eprintln!(
        "filter: {subs_wanted} subscriptions ({}), {} node events ...",
        kind.label(),
        options.filter_nodes
    );
    let server = Server::start(&options.binary, KEEP_ALIVE_LATENCY);
    let control = agent();
    let auth = match kind {
        FilterKind::OwnerFiltered => format!("Bearer {}", other_user_token(&server, &control)),
        _ => server.auth(),
    };
    let query = match kind {
        FilterKind::Matching => "?promisc=true&data.tag=hit",
        FilterKind::MatchingNone => "?promisc=true&data.tag=none",
        FilterKind::Unfiltered => "?promisc=true",
        FilterKind::Nothing | FilterKind::OwnerFiltered => "",
    };
    let subs: Vec<u64> = (0..subs_wanted)
        .map(|_| {
            let body = ok_body(
                "subscribe",
                control
                    .post(server.url(&format!("/subscribe/node{query}")))
                    .header("Authorization", &auth)
                    .send_empty(),
            );
            let reply: Value = serde_json::from_str(&body).expect("subscribe answers JSON");
            reply["id"].as_u64().expect("subscription id")
        })
        .collect();
    let nodes = options.filter_nodes;
    let hits = nodes.div_ceil(FILTER_ONE_IN);
    let expected = match kind {
        FilterKind::Matching => hits * subs.len(),
        FilterKind::Unfiltered => nodes * subs.len(),
        FilterKind::Nothing | FilterKind::MatchingNone | FilterKind::OwnerFiltered => 0,
    };
    let received = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let (meter, create_secs, drained) = thread::scope(|s| {
        let listeners: Vec<_> = subs
            .iter()
            .map(|&id| {
                let (server, received, auth) = (&server, &received, &auth);
                s.spawn(move || {
                    let agent = agent();
                    let url = server.url(&format!("/listen/{id}"));
                    while let Some(data) = server.listen(&agent, &url, auth) {
                        if data != "BEEP" {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(500));
        let meter = CpuMeter::start(server.pid(), ticks);
        let started = Instant::now();
        let writers: Vec<_> = (0..NODE_WRITERS)
            .map(|_| {
                let (server, next) = (&server, &next);
                s.spawn(move || {
                    let agent = agent();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= nodes {
                            break;
                        }
                        let tag = if i % FILTER_ONE_IN == 0 {
                            "hit"
                        } else {
                            "miss"
                        };
                        let name = format!("f{i}");
                        let body = json!({"kind": "process", "name": name,
                                          "path": ["bench", name], "data": {"tag": tag, "i": i}});
                        ok_body(
                            "POST /node",
                            agent
                                .post(server.url("/node"))
                                .header("Authorization", server.auth())
                                .header("Content-Type", "application/json")
                                .send(body.to_string()),
                        );
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("node writer panicked");
        }
        let create_secs = started.elapsed().as_secs_f64();
        let drain_started = Instant::now();
        let drain_limit = Duration::from_secs(options.drain as u64);
        while received.load(Ordering::Relaxed) < expected && drain_started.elapsed() < drain_limit {
            thread::sleep(Duration::from_millis(10));
        }
        // the listens of the runs that expect nothing park on nothing: give
        // the dispatcher the time to pass the events it judges
        thread::sleep(Duration::from_millis(200));
        let drained = received.load(Ordering::Relaxed) >= expected;
        let cpu_secs = cpu_seconds(&server.pid().to_string(), ticks) - meter.server;
        for &id in &subs {
            let _ = read(
                "unsubscribe",
                control
                    .post(server.url(&format!("/unsubscribe/{id}")))
                    .header("Authorization", &auth)
                    .send_empty(),
            );
        }
        for l in listeners {
            l.join().expect("listener panicked");
        }
        (cpu_secs, create_secs, drained)
    });
    FilterRow {
        kind,
        subs: subs.len(),
        nodes,
        create_secs,
        expected,
        arrived: received.load(Ordering::Relaxed),
        drained,
        server_cpu_secs: meter,
    }
}

fn print_filter(rows: &[FilterRow]) {
    println!();
    println!(
        "5. filtered subscriptions: server CPU per 1,000 node events (POST /node from \
         {NODE_WRITERS} threads; each subscription on channel \"node\" has a listener \
         consuming it; CPU from /proc/<pid>/stat, from the first POST to the last delivery)"
    );
    println!(
        "  {:<26} {:>5} {:>6} {:>8} {:>9} {:>9} | {:>14} {:>22}",
        "subscriptions",
        "subs",
        "nodes",
        "POST s",
        "expected",
        "arrived",
        "CPU ms/1k ev",
        "extra ms/1k ev per sub"
    );
    let base = rows
        .iter()
        .find(|r| r.kind == FilterKind::Nothing)
        .map(|r| 1000.0 * r.server_cpu_secs / r.nodes as f64 * 1000.0);
    for r in rows {
        let per_k = 1000.0 * r.server_cpu_secs / r.nodes as f64 * 1000.0;
        let extra = match (base, r.subs) {
            (Some(b), n) if n > 0 => format!("{:.3}", (per_k - b) / n as f64),
            _ => "-".into(),
        };
        println!(
            "  {:<26} {:>5} {:>6} {:>8.1} {:>9} {:>9} | {:>14.1} {:>22}{}",
            r.kind.label(),
            r.subs,
            r.nodes,
            r.create_secs,
            r.expected,
            r.arrived,
            per_k,
            extra,
            if r.drained { "" } else { "  (not drained)" }
        );
    }
    println!(
        "  (CPU ms/1k ev = server CPU milliseconds per 1,000 node events, node creation \
         included; extra = the difference to \"no subscription\" divided by the number of \
         subscriptions)"
    );
}

// -- main -----------------------------------------------------------------------------------

struct Options {
    listeners: usize,
    rate: usize,
    seconds: usize,
    parked: usize,
    pending: usize,
    binary: PathBuf,
    points: Option<Vec<(usize, usize)>>,
    publishers: usize,
    drain: usize,
    phases: Vec<String>,
    batch_points: Option<Vec<(usize, usize)>>,
    filter_subs: usize,
    filter_nodes: usize,
}

const USAGE: &str = "usage: cargo bench --bench events -- [--listeners L] [--rate R] \
                     [--seconds S] [--parked P] [--pending N] [--binary PATH] \
                     [--points LxR,...] [--publishers T] [--drain SECS] \
                     [--batch-points LxR,...] [--filter-subs F] [--filter-nodes N] \
                     [--phases latency,parked,timer,batch,filter]";

fn parse_args() -> Options {
    let mut options = Options {
        listeners: DEFAULT_LISTENERS,
        rate: DEFAULT_RATE,
        seconds: DEFAULT_SECONDS,
        parked: DEFAULT_PARKED,
        pending: DEFAULT_PENDING,
        binary: PathBuf::from(process::BINARY),
        points: None,
        publishers: DEFAULT_PUBLISHERS,
        drain: DEFAULT_DRAIN,
        phases: ["latency", "parked", "timer", "batch", "filter"]
            .map(String::from)
            .to_vec(),
        batch_points: None,
        filter_subs: DEFAULT_FILTER_SUBS,
        filter_nodes: DEFAULT_FILTER_NODES,
    };
    let mut args = std::env::args().skip(1);
    let fail = |message: String| -> ! {
        eprintln!("{message}\n{USAGE}");
        std::process::exit(2)
    };
    let number = |name: &str, text: &str| -> usize {
        match text.replace('_', "").parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => fail(format!("{name}: not a positive integer: {text}")),
        }
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        };
        match arg.as_str() {
            // cargo bench passes --bench to harness = false targets
            "--bench" => {}
            "--listeners" => options.listeners = number(&arg, &value(&arg)),
            "--rate" => options.rate = number(&arg, &value(&arg)),
            "--seconds" => options.seconds = number(&arg, &value(&arg)),
            "--parked" => options.parked = number(&arg, &value(&arg)),
            "--pending" => options.pending = number(&arg, &value(&arg)),
            "--publishers" => options.publishers = number(&arg, &value(&arg)),
            "--drain" => options.drain = number(&arg, &value(&arg)),
            "--binary" => options.binary = PathBuf::from(value(&arg)),
            "--points" | "--batch-points" => {
                let text = value(&arg);
                let points = text
                    .split(',')
                    .map(|p| match p.split_once('x') {
                        Some((l, r)) => (number(&arg, l), number(&arg, r)),
                        None => fail(format!("{arg}: not LxR: {p}")),
                    })
                    .collect();
                if arg == "--points" {
                    options.points = Some(points);
                } else {
                    options.batch_points = Some(points);
                }
            }
            "--filter-subs" => options.filter_subs = number(&arg, &value(&arg)),
            "--filter-nodes" => options.filter_nodes = number(&arg, &value(&arg)),
            "--phases" => {
                let text = value(&arg);
                options.phases = text.split(',').map(str::to_string).collect();
                for p in &options.phases {
                    if !["latency", "parked", "timer", "batch", "filter"].contains(&p.as_str()) {
                        fail(format!("--phases: unknown phase {p}"));
                    }
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => fail(format!("unknown argument: {other}")),
        }
    }
    options
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
    let ticks = clock_ticks();
    let phase = |name: &str| options.phases.iter().any(|p| p == name);
    let points = options.points.clone().unwrap_or_else(|| {
        let l = options.listeners;
        let r = options.rate;
        let mut points = vec![
            (l, (r / 100).max(1)),
            (l, (r / 50).max(1)),
            (l, (r / 20).max(1)),
            (l, (r / 10).max(1)),
            ((l / 10).max(1), r),
            (l, r),
        ];
        points.dedup();
        points
    });

    println!("kci-lite pub/sub and timer benchmark");
    println!(
        "server: {} (one fresh server and database per measurement; KCI_HTTP_THREADS=16, \
         KCI_BCRYPT_COST=4, KCI_SYNCHRONOUS unset = full)",
        options.binary.display()
    );
    println!("machine at start: {}", machine_notes());

    let latency: Vec<LatencyPoint> = if phase("latency") {
        points
            .iter()
            .map(|&(l, r)| latency_point(&options, l, r, None, ticks))
            .collect()
    } else {
        Vec::new()
    };
    let parked = phase("parked").then(|| parked_phase(&options));
    let timer = phase("timer").then(|| timer_phase(&options, ticks));
    let batch_points = options.batch_points.clone().unwrap_or_else(|| {
        let (l, r) = (options.listeners, options.rate);
        vec![(l, (r / 10).max(1)), (l, r)]
    });
    let batched: Vec<LatencyPoint> = if phase("batch") {
        batch_points
            .iter()
            .map(|&(l, r)| latency_point(&options, l, r, Some(BATCH_MAX), ticks))
            .collect()
    } else {
        Vec::new()
    };
    let filtered: Vec<FilterRow> = if phase("filter") {
        [
            FilterKind::Nothing,
            FilterKind::Matching,
            FilterKind::MatchingNone,
            FilterKind::Unfiltered,
            FilterKind::OwnerFiltered,
        ]
        .into_iter()
        .map(|kind| filter_run(&options, kind, ticks))
        .collect()
    } else {
        Vec::new()
    };

    if !latency.is_empty() {
        print_latency(&options, &latency);
    }
    if let Some(r) = &parked {
        print_parked(r);
    }
    if let Some(r) = &timer {
        print_timer(r);
    }
    if !batched.is_empty() {
        print_latency(&options, &batched);
    }
    if !filtered.is_empty() {
        print_filter(&filtered);
    }
    println!();
    println!(
        "total run {:.1} s; machine at the end: {}",
        run_started.elapsed().as_secs_f64(),
        machine_notes()
    );
}
