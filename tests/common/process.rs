//! The real `kci-lite serve` binary as a child process, for the tests and
//! benches that need one (signals, crashes, start-up, load). It listens on
//! `127.0.0.1:0` and the address is read from the line the binary prints
//! once it serves, so no port is ever guessed. Its standard error is read
//! on a thread of its own, so the child never blocks on a full pipe.
//!
//! The benches include this file on its own (`#[path]`), so it uses nothing
//! else of the test harness.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The `kci-lite` binary cargo built for these tests and benches.
pub const BINARY: &str = env!("CARGO_BIN_EXE_kci-lite");
/// How long [`Launch::start`] waits for the binary to say it serves.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped or killed process may take to close its stderr.
const LOG_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`ServerProcess::stop`] looks whether the process exited.
const EXIT_POLL: Duration = Duration::from_millis(10);
/// The start of the line `serve` prints on stderr once it listens; the
/// bound address follows it.
const SERVING: &str = "kci-lite: serving http://";

/// How to start one `kci-lite serve` process; made by
/// [`ServerProcess::builder`], consumed by [`Launch::start`].
pub struct Launch {
    binary: PathBuf,
    db: Option<PathBuf>,
    dir: Option<PathBuf>,
    clear_env: bool,
    /// In order; `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
    log_file: Option<PathBuf>,
    /// A command the binary is run through (e.g. `prlimit ... --`), which
    /// must exec it (so the process id stays the server's).
    wrapper: Vec<OsString>,
    /// `--bind`: `127.0.0.1:0` unless a test needs a known port.
    bind: String,
}

impl Launch {
    /// Runs this binary instead of [`BINARY`].
    pub fn binary(mut self, path: &Path) -> Launch {
        self.binary = path.to_path_buf();
        self
    }

    /// Runs the binary through `command` (its program and arguments), which
    /// must exec it: `["prlimit", "--nofile=256:256", "--"]`.
    pub fn wrapper(mut self, command: &[&str]) -> Launch {
        self.wrapper = command.iter().map(OsString::from).collect();
        self
    }

    /// Listens on `addr` (e.g. the address of a server that was stopped,
    /// so that its clients reconnect to the new one) instead of a port the
    /// system picks.
    pub fn bind(mut self, addr: SocketAddr) -> Launch {
        self.bind = addr.to_string();
        self
    }

    /// Passes `--db path`; without it the binary uses its default path
    /// (relative to the working directory).
    pub fn db(mut self, path: &Path) -> Launch {
        self.db = Some(path.to_path_buf());
        self
    }

    /// Runs the process in `dir` (where it also looks for a `.env` file).
    pub fn current_dir(mut self, dir: &Path) -> Launch {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Starts from an empty environment instead of this process's one.
    pub fn clear_env(mut self) -> Launch {
        self.clear_env = true;
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.push((name.into(), Some(value.into())));
        self
    }

    /// Removes one environment variable (inherited or set before).
    pub fn env_remove(mut self, name: &str) -> Launch {
        self.env.push((name.into(), None));
        self
    }

    /// Writes every stderr line to `path` instead of keeping it in memory
    /// (for long runs: the server logs one line per request); only the
    /// lines up to the one that gives the address are kept in memory then.
    pub fn log_file(mut self, path: &Path) -> Launch {
        self.log_file = Some(path.to_path_buf());
        self
    }

    /// Spawns `kci-lite serve --bind 127.0.0.1:0` and waits (at most
    /// [`START_TIMEOUT`]) until it prints the address it listens on.
    /// Panics, with what it printed, when it exits or stays silent instead.
    pub fn start(self) -> ServerProcess {
        let mut command = match self.wrapper.split_first() {
            None => Command::new(&self.binary),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.binary);
                command
            }
        };
        command.args(["serve", "--bind", &self.bind]);
        if let Some(db) = &self.db {
            command.arg("--db").arg(db);
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        if self.clear_env {
            command.env_clear();
        }
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let file = self.log_file.as_ref().map(|path| {
            File::create(path)
                .unwrap_or_else(|e| panic!("create the server log {}: {e}", path.display()))
        });
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        let pipe = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        let sink = Arc::clone(&log);
        std::thread::Builder::new()
            .name("kci-lite-stderr".into())
            .spawn(move || sink.collect(pipe, file))
            .expect("start the stderr reader thread");
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = log.wait_until(deadline, |state| state.addr);
        match addr {
            Some(addr) => ServerProcess { child, addr, log },
            None => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "kci-lite serve did not report its address within {} s \
                     (exit status {status:?}); its stderr:\n{}",
                    START_TIMEOUT.as_secs(),
                    log.text()
                );
            }
        }
    }
}

/// A running `kci-lite serve` process; killed (SIGKILL) on drop if it
/// still runs, also when a test fails.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Log>,
}

impl ServerProcess {
    /// A [`Launch`] of [`BINARY`] with the environment of this process,
    /// its working directory and no `--db`.
    pub fn builder() -> Launch {
        Launch {
            binary: PathBuf::from(BINARY),
            db: None,
            dir: None,
            clear_env: false,
            env: Vec::new(),
            log_file: None,
            wrapper: Vec::new(),
            bind: "127.0.0.1:0".into(),
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The operating system's id of the process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed on stderr so far, one `\n` after each
    /// line (with a log file: only the lines up to the address).
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// The log once it contains `needle`, or as it is after `timeout` or
    /// once the process closed its stderr (a line may arrive a little after
    /// the HTTP reply that caused it).
    pub fn log_with(&self, needle: &str, timeout: Duration) -> String {
        self.log.wait_until(Instant::now() + timeout, |state| {
            state.text().contains(needle).then_some(())
        });
        self.log()
    }

    /// SIGKILL, then reaps the process; its exit status. Stderr is read to
    /// the end before this returns (within a few seconds).
    pub fn kill(&mut self) -> ExitStatus {
        // `Child::kill` is SIGKILL on Unix
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for the killed server");
        self.log.wait_closed();
        status
    }

    /// SIGTERM, then the exit status once the process exits within
    /// `within`; stderr is read to the end before this returns. `None` when
    /// SIGTERM could not be sent or the process did not exit in time: it is
    /// SIGKILLed then.
    pub fn stop(&mut self, within: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.log.wait_closed();
            return Some(status);
        }
        // std sends only SIGKILL, and the tests forbid `unsafe` (libc)
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .status();
        let exited = if sent.is_ok_and(|s| s.success()) {
            self.wait_exit(Instant::now() + within)
        } else {
            None
        };
        if exited.is_none() {
            self.kill();
        } else {
            self.log.wait_closed();
        }
        exited
    }

    /// The exit status if the process exits before `deadline`.
    fn wait_exit(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(EXIT_POLL),
                _ => return None,
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the reader thread learnt from the child's stderr.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    /// Set from the serving line.
    addr: Option<SocketAddr>,
    /// The child closed its stderr (it exited) or reading it failed.
    closed: bool,
}

impl LogState {
    fn text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn text(&self) -> String {
        self.lock().text()
    }

    /// Reads `pipe` to its end: each line to `file` if there is one, and
    /// into memory unless the file takes it after the address is known.
    fn collect(&self, pipe: ChildStderr, mut file: Option<File>) {
        let mut reader = BufReader::new(pipe);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&bytes);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(out) = file.as_mut() {
                // a full disk must not stop the draining of the pipe
                let _ = writeln!(out, "{line}");
            }
            let mut state = self.lock();
            if state.addr.is_none() {
                state.addr = serving_addr(line);
                state.lines.push(line.to_string());
            } else if file.is_none() {
                state.lines.push(line.to_string());
            }
            drop(state);
            self.changed.notify_all();
        }
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits until `ready` gives a value, the pipe is closed or `deadline`
    /// passes; the value, or `None` for the other two.
    fn wait_until<T>(
        &self,
        deadline: Instant,
        ready: impl Fn(&LogState) -> Option<T>,
    ) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(value) = ready(&state) {
                return Some(value);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.closed || left.is_zero() {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits (at most [`LOG_CLOSE_TIMEOUT`]) until the pipe is closed, so
    /// that every line is in.
    fn wait_closed(&self) {
        let deadline = Instant::now() + LOG_CLOSE_TIMEOUT;
        self.wait_until(deadline, |state| state.closed.then_some(()));
    }
}

/// The address in `kci-lite: serving http://ADDR (database …)`.
fn serving_addr(line: &str) -> Option<SocketAddr> {
    line.strip_prefix(SERVING)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
