//! Event-stream benchmark (`GET /stream/{channel}`, API.md 18.2): starts the
//! release binary as a separate process (port 0, temporary database, one
//! fresh server per part) and prints
//!
//! 1. delivery: C stream clients on one channel while publishers send R
//!    events/s for S seconds: deliveries that arrived, deliveries/s
//!    sustained, publish → receive latency (p50/p99/max, from the start of
//!    the `POST /publish` to the arrival of the event on the stream);
//! 2. open streams: hello-world (`GET /latest/`) throughput with no stream,
//!    then with P streams open (the ratio), the server's RSS and threads
//!    before and after (RSS per stream), and the time until all P streams
//!    got one event.
//!
//! It prints figures only; nothing is asserted.
//!
//! ```text
//! cargo bench --bench streams -- [--clients 100] [--rate 1000] [--seconds 30]
//!                                [--open 1000] [--binary PATH] [--phases delivery,open]
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

#[allow(dead_code)] // the bench uses only part of the tests' helper
#[path = "../tests/common/process.rs"]
mod process;

use process::ServerProcess;

const PASSWORD: &str = "bench-pw";
/// Connections for hello-world throughput.
const CONNECTIONS: usize = 16;
const THROUGHPUT_TIME: Duration = Duration::from_secs(5);
/// Threads that publish, sharing the rate.
const PUBLISHERS: usize = 8;
/// How long the stream clients may take to catch up after the last publish.
const DRAIN: Duration = Duration::from_secs(30);
const CLIENT_STACK: usize = 64 * 1024;

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `VmRSS` (KiB) and `Threads` of a process.
fn proc_status(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

struct Server {
    process: ServerProcess,
    token: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(binary: &Path, keep_alive: &str) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let process = ServerProcess::builder()
            .binary(binary)
            .db(&dir.path().join("kci.db"))
            .current_dir(dir.path())
            .env("KCI_INITIAL_PASSWORD", PASSWORD)
            .env("SECRET_KEY", "bench-secret-key-0123456789")
            .env("KCI_BCRYPT_COST", "4")
            .env("KCI_HTTP_THREADS", "16")
            .env("KEEP_ALIVE_PERIOD", keep_alive)
            .env_remove("KCI_SYNCHRONOUS")
            .log_file(&dir.path().join("server.log"))
            .start();
        let mut resp = agent()
            .post(format!("{}/latest/user/login", process.url()))
            .send_form([("username", "admin"), ("password", PASSWORD)])
            .expect("login");
        let body: Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap_or_default())
                .expect("login JSON");
        let token = body["access_token"].as_str().expect("token").to_string();
        Server {
            process,
            token,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/latest{path}", self.process.url())
    }

    fn publish(&self, agent: &ureq::Agent, channel: &str, data: &Value) {
        let resp = agent
            .post(self.url(&format!("/publish/{channel}")))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(json!({ "data": data }).to_string())
            .expect("publish");
        assert!(resp.status() == 200, "publish: {}", resp.status());
    }

    fn hello(&self, agent: &ureq::Agent) {
        let mut resp = agent
            .get(self.url("/"))
            .header("Accept", "application/json")
            .call()
            .expect("hello");
        let _ = resp.body_mut().read_to_string();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.stop(Duration::from_secs(30));
    }
}

/// Opens a stream and reads its head; the socket and what followed it.
fn open_stream(addr: SocketAddr, channel: &str) -> (TcpStream, Vec<u8>) {
    let mut sock = TcpStream::connect(addr).expect("connect");
    let request = format!("GET /latest/stream/{channel} HTTP/1.1\r\nHost: x\r\n\r\n");
    sock.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).expect("head");
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    (sock, got[end..].to_vec())
}

/// Calls `each` with the CloudEvent of every `data:` line that arrives,
/// until `stop` is set (checked every 200 ms) or the stream ends.
fn read_events(
    mut sock: TcpStream,
    mut pending: Vec<u8>,
    stop: &AtomicBool,
    mut each: impl FnMut(Value),
) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(eol) = pending.iter().position(|b| *b == b'\n') {
            if let Some(text) = pending[..eol].strip_prefix(b"data: ")
                && let Ok(value) = serde_json::from_slice::<Value>(text)
            {
                each(value);
            }
            pending.drain(..=eol);
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn throughput(server: &Server) -> f64 {
    let started = Instant::now();
    let total: usize = thread::scope(|s| {
        let handles: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                s.spawn(|| {
                    let agent = agent();
                    let mut n = 0;
                    while started.elapsed() < THROUGHPUT_TIME {
                        server.hello(&agent);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

struct Options {
    binary: PathBuf,
    clients: usize,
    rate: usize,
    seconds: usize,
    open: usize,
    phases: Vec<String>,
}

fn options() -> Options {
    let mut o = Options {
        binary: PathBuf::from(process::BINARY),
        clients: 100,
        rate: 1000,
        seconds: 30,
        open: 1000,
        phases: vec!["delivery".into(), "open".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let number = || {
            value
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("{}: a number", args[i]))
        };
        match args[i].as_str() {
            "--binary" => o.binary = PathBuf::from(&value),
            "--clients" => o.clients = number(),
            "--rate" => o.rate = number(),
            "--seconds" => o.seconds = number(),
            "--open" => o.open = number(),
            "--phases" => o.phases = value.split(',').map(str::to_string).collect(),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn delivery(o: &Options) {
    eprintln!(
        "delivery: {} clients x {} events/s for {} s ...",
        o.clients, o.rate, o.seconds
    );
    let server = Server::start(&o.binary, "30");
    let channel = "bench";
    let stop = AtomicBool::new(false);
    let arrived = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::<f64>::with_capacity(o.clients * o.rate * o.seconds));
    let last_arrival = Mutex::new(Instant::now());
    let sent = AtomicUsize::new(0);
    let expected = o.clients * o.rate * o.seconds;
    let sockets: Vec<(TcpStream, Vec<u8>)> = (0..o.clients)
        .map(|_| open_stream(server.process.addr(), channel))
        .collect();
    let publish_start = Instant::now();
    thread::scope(|s| {
        for (sock, rest) in sockets {
            let (stop, arrived, latencies, last_arrival) =
                (&stop, &arrived, &latencies, &last_arrival);
            thread::Builder::new()
                .stack_size(CLIENT_STACK)
                .spawn_scoped(s, move || {
                    let mut mine = Vec::new();
                    let mut last = None;
                    read_events(sock, rest, stop, |env| {
                        if let Some(t) = env["data"]["t"].as_i64() {
                            mine.push((unix_us() - t) as f64 / 1000.0);
                            last = Some(Instant::now());
                            arrived.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    if let (Ok(mut l), Some(last)) = (last_arrival.lock(), last) {
                        *l = (*l).max(last);
                    }
                    latencies.lock().expect("lock").extend(mine);
                })
                .expect("client thread");
        }
        let per = o.rate * o.seconds / PUBLISHERS;
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let (server, sent) = (&server, &sent);
                let rate = o.rate as f64 / PUBLISHERS as f64;
                s.spawn(move || {
                    let agent = agent();
                    for i in 0..per {
                        let due = publish_start + Duration::from_secs_f64(i as f64 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                        server.publish(&agent, channel, &json!({"t": unix_us(), "p": p, "i": i}));
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for p in publishers {
            let _ = p.join();
        }
        eprintln!(
            "delivery: publishing took {:.1} s; waiting for the clients ...",
            publish_start.elapsed().as_secs_f64()
        );
        let want = sent.load(Ordering::Relaxed) * o.clients;
        let drain_start = Instant::now();
        while arrived.load(Ordering::Relaxed) < want && drain_start.elapsed() < DRAIN {
            thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let mut lat = latencies.into_inner().expect("lock");
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let sent = sent.load(Ordering::Relaxed);
    let got = lat.len();
    let span = last_arrival
        .into_inner()
        .expect("lock")
        .saturating_duration_since(publish_start)
        .as_secs_f64();
    let (rss, threads) = proc_status(server.process.pid());
    println!(
        "## delivery: {} stream clients, {} events/s for {} s",
        o.clients, o.rate, o.seconds
    );
    println!("  published            {sent} events ({expected} planned deliveries)");
    println!(
        "  delivered            {got} of {} ({:.2} %)",
        sent * o.clients,
        100.0 * got as f64 / (sent * o.clients).max(1) as f64
    );
    println!(
        "  deliveries/s         {:.0} (over {span:.1} s, first publish to last arrival)",
        got as f64 / span.max(1e-9)
    );
    println!(
        "  publish -> receive   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  server at the end    RSS {:.1} MiB, {threads} threads",
        rss as f64 / 1024.0
    );
}

fn open_streams(o: &Options) {
    eprintln!("open: {} streams ...", o.open);
    let server = Server::start(&o.binary, "60");
    let pid = server.process.pid();
    server.hello(&agent());
    thread::sleep(Duration::from_secs(1));
    let before = throughput(&server);
    let (rss0, threads0) = proc_status(pid);
    let channel = "many";
    let streams: Vec<(TcpStream, Vec<u8>)> = (0..o.open)
        .map(|_| open_stream(server.process.addr(), channel))
        .collect();
    thread::sleep(Duration::from_secs(2));
    let (rss1, threads1) = proc_status(pid);
    let with = throughput(&server);
    let (rss2, threads2) = proc_status(pid);
    let published = Instant::now();
    server.publish(&agent(), channel, &json!({"t": unix_us()}));
    let mut slowest = Duration::ZERO;
    for (mut sock, mut got) in streams {
        let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = [0u8; 4096];
        while !got.windows(6).any(|w| w == b"data: ") {
            match sock.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        slowest = slowest.max(published.elapsed());
    }
    println!("## open streams: {}", o.open);
    println!(
        "  hello world          {before:.0} req/s without streams, {with:.0} req/s with {} open (ratio {:.2})",
        o.open,
        with / before.max(1e-9)
    );
    println!(
        "  server RSS           {:.1} MiB before, {:.1} MiB with them ({:.1} KiB per stream), {:.1} MiB after the throughput run",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / o.open as f64,
        rss2 as f64 / 1024.0
    );
    println!(
        "  server threads       {threads0} before, {threads1} with them, {threads2} after the throughput run"
    );
    println!(
        "  one event to all     {:.1} ms until the last of {} streams had it",
        slowest.as_secs_f64() * 1000.0,
        o.open
    );
}

fn main() {
    let o = options();
    if o.phases.iter().any(|p| p == "delivery") {
        delivery(&o);
    }
    if o.phases.iter().any(|p| p == "open") {
        open_streams(&o);
    }
}
