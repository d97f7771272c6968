//! A real browser for the console's tests: Debian's Chromium, headless,
//! driven over WebDriver (chromedriver) with plain HTTP+JSON calls. The
//! WebDriver protocol is a handful of JSON requests, so a few helpers on the
//! HTTP client the tests already use do the job of a driver crate.
//!
//! Each [`Browser`] runs its own chromedriver and Chromium with a fresh
//! profile in a temporary directory, where its screenshots go too (and, when
//! `KCI_SCREENSHOTS` names a folder, a copy of each). Everything the page
//! logs is kept: [`Browser::js_errors`] tells the JavaScript errors apart
//! from the network ones (a 404 or 422 the page asked for on purpose).
//!
//! When Chromium or chromedriver is not installed, [`Browser::start`]
//! answers `None` and the test says it was skipped — unless `CI` is set,
//! where `.ci/run` installs both, and a missing browser is a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a `wait_*` helper waits before it fails the test.
pub const WAIT: Duration = Duration::from_secs(15);

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    dir: tempfile::TempDir,
    /// Log entries read so far (the driver hands each one out once).
    log: Vec<Value>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.command("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a 1280×900 window,
    /// or `None` when they are not installed (outside CI).
    pub fn start() -> Option<Browser> {
        let installed = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: {CHROMIUM} or {CHROMEDRIVER} is not installed");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            agent,
            dir,
            log: Vec::new(),
        };
        let started = Instant::now();
        loop {
            let ready = browser
                .raw("GET", "/status", None)
                .ok()
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            sleep(Duration::from_millis(50));
        }
        let profile = browser.dir.path().join("profile");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 30000, "pageLoad": 30000, "implicit": 0},
        }}});
        let answer = browser
            .raw("POST", "/session", Some(&caps))
            .expect("create a WebDriver session");
        browser.session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Some(browser)
    }

    /// The temporary directory of this browser (profile and screenshots).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn raw(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let result = match body {
            Some(body) => self
                .agent
                .run(
                    ureq::http::Request::builder()
                        .method(method)
                        .uri(&url)
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?,
            None => self
                .agent
                .run(
                    ureq::http::Request::builder()
                        .method(method)
                        .uri(&url)
                        .body(())
                        .map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?,
        };
        let status = result.status().as_u16();
        let mut result = result;
        let text = result
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status >= 400 {
            return Err(format!("{method} {path}: {status} {value}"));
        }
        Ok(value)
    }

    /// A WebDriver command on this session; its `value`.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body).map(|mut v| v["value"].take())
    }

    fn must(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.command(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// Opens `url` and waits for the document to load.
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(&json!({"url": url})));
    }

    /// Sets the window size (a phone is 390×844).
    pub fn window(&self, width: u32, height: u32) {
        self.must(
            "POST",
            "/window/rect",
            Some(&json!({"width": width, "height": height})),
        );
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page
    /// and returns what it returns.
    pub fn eval(&self, script: &str, args: &[Value]) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// Runs an async function body in the page: it gets `args` as
    /// `arguments` and its last argument is the callback to call with the
    /// result.
    pub fn eval_async(&self, script: &str, args: &[Value]) -> Value {
        self.must(
            "POST",
            "/execute/async",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// The first element matching the CSS `selector`, if any.
    pub fn find(&self, selector: &str) -> Option<String> {
        let found = self
            .command(
                "POST",
                "/element",
                Some(&json!({"using": "css selector", "value": selector})),
            )
            .ok()?;
        found[ELEMENT_KEY].as_str().map(str::to_string)
    }

    /// How many elements match `selector`.
    pub fn count(&self, selector: &str) -> usize {
        self.eval(
            "return document.querySelectorAll(arguments[0]).length;",
            &[json!(selector)],
        )
        .as_u64()
        .unwrap_or(0) as usize
    }

    /// Waits until `check` answers `Some`, or fails the test with a
    /// screenshot named after `what`.
    pub fn wait_until<T>(&self, what: &str, mut check: impl FnMut(&Browser) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            if started.elapsed() > WAIT {
                let shot = self.screenshot("timeout");
                panic!(
                    "waited {WAIT:?} for {what}; screenshot {}; page log {:?}",
                    shot.display(),
                    self.all_log_messages()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Waits for an element matching `selector` and returns it.
    pub fn wait_for(&self, selector: &str) -> String {
        self.wait_until(&format!("an element {selector}"), |b| b.find(selector))
    }

    /// Waits until the text of the first element matching `selector`
    /// contains `text`, and returns that text.
    pub fn wait_text(&self, selector: &str, text: &str) -> String {
        self.wait_until(&format!("{selector} to contain {text:?}"), |b| {
            let got = b.text(selector)?;
            got.contains(text).then_some(got)
        })
    }

    /// The visible text of the first element matching `selector`.
    pub fn text(&self, selector: &str) -> Option<String> {
        let value = self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            &[json!(selector)],
        );
        value.as_str().map(str::to_string)
    }

    /// An attribute of the first element matching `selector`.
    pub fn attr(&self, selector: &str, name: &str) -> Option<String> {
        let value = self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            &[json!(selector), json!(name)],
        );
        value.as_str().map(str::to_string)
    }

    /// The page's current URL.
    pub fn url(&self) -> String {
        self.must("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Clicks the element matching `selector` (waiting for it first).
    pub fn click(&self, selector: &str) {
        let element = self.wait_for(selector);
        self.must(
            "POST",
            &format!("/element/{element}/click"),
            Some(&json!({})),
        );
    }

    /// Clears the field matching `selector` and types `text` into it
    /// (`\u{E007}` is the Enter key).
    pub fn type_into(&self, selector: &str, text: &str) {
        let element = self.wait_for(selector);
        self.must(
            "POST",
            &format!("/element/{element}/clear"),
            Some(&json!({})),
        );
        self.must(
            "POST",
            &format!("/element/{element}/value"),
            Some(&json!({"text": text})),
        );
    }

    /// Sets the value of a `<select>` (or any field) matching `selector`
    /// and tells the page, as a person choosing it would.
    pub fn choose(&self, selector: &str, value: &str) {
        self.wait_for(selector);
        self.eval(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1];
             e.dispatchEvent(new Event('input', {bubbles: true}));
             e.dispatchEvent(new Event('change', {bubbles: true}));",
            &[json!(selector), json!(value)],
        );
    }

    /// Logs in through the login form in the console's header, as a
    /// person would, and waits until the page says who is logged in.
    pub fn log_in(&self, username: &str, password: &str) {
        self.type_into("#login-form input[name=username]", username);
        self.type_into("#login-form input[name=password]", password);
        self.click("#login-form button[type=submit]");
        self.wait_for("#logout");
    }

    /// Logs out with the header's button and waits for the login form.
    pub fn log_out(&self) {
        self.click("#logout");
        self.wait_for("#login-form");
    }

    /// Saves a PNG of the window as `<dir>/<name>.png` (and into
    /// `KCI_SCREENSHOTS` when set) and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.must("GET", "/screenshot", None);
        let text = data.as_str().unwrap_or_default();
        let bytes = super::b64url_decode(&text.replace('+', "-").replace('/', "_"));
        let path = self.dir.path().join(format!("{name}.png"));
        std::fs::write(&path, &bytes).expect("write the screenshot");
        if let Some(keep) = std::env::var_os("KCI_SCREENSHOTS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            let _ = std::fs::write(keep.join(format!("{name}.png")), &bytes);
        }
        eprintln!("screenshot: {}", path.display());
        path
    }

    fn read_log(&mut self) {
        if let Ok(Value::Array(entries)) =
            self.command("POST", "/se/log", Some(&json!({"type": "browser"})))
        {
            self.log.extend(entries);
        }
    }

    fn all_log_messages(&self) -> Vec<String> {
        let mut entries = self.log.clone();
        if let Ok(Value::Array(more)) =
            self.command("POST", "/se/log", Some(&json!({"type": "browser"})))
        {
            entries.extend(more);
        }
        entries
            .iter()
            .map(|e| format!("{} {}", e["level"], e["message"]))
            .collect()
    }

    /// The JavaScript errors the pages logged so far: uncaught exceptions,
    /// rejected promises and `console.error` calls. A failed request is
    /// the network's entry, not a script error, and is left out.
    pub fn js_errors(&mut self) -> Vec<String> {
        self.read_log();
        self.log
            .iter()
            .filter(|e| e["level"] == json!("SEVERE"))
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .filter(|m| !m.contains("Failed to load resource"))
            .collect()
    }

    /// Fails the test when a page logged a JavaScript error.
    pub fn assert_no_js_errors(&mut self) {
        let errors = self.js_errors();
        assert!(errors.is_empty(), "JavaScript errors: {errors:#?}");
    }
}
