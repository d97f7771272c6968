//! Shared helpers of the integration tests: an in-process kci-lite server on
//! port 0 with its own temporary database, an HTTP client, user
//! creation through the invite flow, raw HTTP for the cases a client
//! library would "fix", and a few JWT / encoding helpers. [`process`] runs
//! the real binary as a child process instead. Every answer the HTTP
//! helpers receive is checked against the OpenAPI document
//! ([`openapi::check_answer`]), so the whole suite keeps the document true.
//!
//! Every test starts its own server (cheap: bcrypt cost 4, no fixed ports),
//! so tests never share state and can run in parallel.
#![allow(clippy::unwrap_used)] // tests may unwrap
#![allow(dead_code)]

pub mod browser;
pub mod openapi;
pub mod process;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kci_lite::app::App;
use kci_lite::config::Config;
use kci_lite::server::{self, Running};
use serde_json::{Value, json};

/// Password of the bootstrapped admin unless a test overrides it.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
/// Username of the bootstrapped admin.
pub const ADMIN_USERNAME: &str = "admin";
/// E-mail of the bootstrapped admin.
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// A well-formed id that no object has.
pub const MISSING_ID: &str = "0123456789abcdef01234567";
/// The 23 node keys in the contract's order.
pub const NODE_KEYS: [&str; 23] = [
    "id",
    "kind",
    "name",
    "path",
    "group",
    "parent",
    "state",
    "result",
    "artifacts",
    "data",
    "debug",
    "jobfilter",
    "platform_filter",
    "created",
    "updated",
    "timeout",
    "holdoff",
    "owner",
    "submitter",
    "treeid",
    "user_groups",
    "processed_by_kcidb_bridge",
    "retry_counter",
];
/// The `UserRead` keys in the contract's order.
pub const USER_KEYS: [&str; 7] = [
    "id",
    "email",
    "is_active",
    "is_superuser",
    "is_verified",
    "username",
    "groups",
];
/// The page envelope keys in the contract's order.
pub const PAGE_KEYS: [&str; 4] = ["items", "total", "limit", "offset"];
/// Node event `data` keys of a `created` event, in the contract's order.
pub const CREATED_EVENT_KEYS: [&str; 11] = [
    "op",
    "id",
    "kind",
    "name",
    "path",
    "group",
    "state",
    "result",
    "owner",
    "data",
    "is_hierarchy",
];
/// Node event `data` keys of an `updated` event.
pub const UPDATED_EVENT_KEYS: [&str; 13] = [
    "op",
    "id",
    "kind",
    "name",
    "path",
    "group",
    "state",
    "result",
    "owner",
    "data",
    "is_hierarchy",
    "previous_state",
    "previous_result",
];

/// A unique, URL-safe name: `prefix-<time>-<counter>`.
pub fn uniq(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}{nanos:08x}{n}", std::process::id())
}

/// Percent-encodes a query component (everything but unreserved chars).
pub fn enc(text: &str) -> String {
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

/// `?k=v&…` with encoded components.
pub fn qs(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

/// The keys of a JSON object, in order.
pub fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

/// Asserts that `value` is `{"detail": <expected>}`.
#[track_caller]
pub fn assert_detail(status: u16, body: &Value, want_status: u16, want: &str) {
    assert_eq!(status, want_status, "unexpected status, body: {body}");
    assert_eq!(body, &json!({ "detail": want }), "status {status}");
}

/// Asserts a 422 whose detail list has an item with exactly this `loc`
/// prefix (and, if given, this `type`).
#[track_caller]
pub fn assert_422(status: u16, body: &Value, loc: &[Value], kind: Option<&str>) {
    assert_eq!(status, 422, "body: {body}");
    let items = body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("422 detail must be a list: {body}"));
    assert!(!items.is_empty(), "empty 422 detail: {body}");
    for item in items {
        assert!(item["loc"].is_array(), "item without loc: {item}");
        assert!(item["msg"].is_string(), "item without msg: {item}");
        assert!(item["type"].is_string(), "item without type: {item}");
    }
    let found = items.iter().any(|item| {
        let l = item["loc"].as_array().cloned().unwrap_or_default();
        l.len() >= loc.len() && l[..loc.len()] == *loc && kind.is_none_or(|k| item["type"] == k)
    });
    assert!(found, "no 422 item with loc {loc:?} type {kind:?}: {body}");
}

/// Asserts the `UserRead` shape, keys in order, and no password hash.
#[track_caller]
pub fn assert_user_shape(user: &Value) {
    assert_eq!(keys(user), USER_KEYS, "{user}");
    assert_eq!(user["id"].as_str().map(is_object_id), Some(true), "{user}");
    for flag in ["is_active", "is_superuser", "is_verified"] {
        assert!(user[flag].is_boolean(), "{flag}: {user}");
    }
    for group in user["groups"].as_array().expect("groups list") {
        assert_eq!(keys(group), ["id", "name"]);
    }
    let text = user.to_string();
    assert!(
        !text.contains("hashed_password") && !text.contains("$2b$"),
        "{text}"
    );
}

/// Asserts the page envelope (keys in order) and returns the items.
#[track_caller]
pub fn assert_page(page: &Value, limit: u64, offset: u64) -> Vec<Value> {
    assert_eq!(keys(page), PAGE_KEYS, "{page}");
    assert_eq!(page["limit"], limit, "{page}");
    assert_eq!(page["offset"], offset, "{page}");
    assert!(page["total"].is_u64(), "{page}");
    page["items"].as_array().expect("items").clone()
}

/// 24 lowercase hex characters.
pub fn is_object_id(text: &str) -> bool {
    text.len() == 24
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// -- JWT helpers ------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64url (padding optional).
pub fn b64url_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64
            .iter()
            .position(|x| *x == c)
            .unwrap_or_else(|| panic!("not base64url: {text}")) as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    out
}

/// The (header, claims) of a compact JWS, unverified.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let header = serde_json::from_slice(&b64url_decode(parts[0])).expect("header JSON");
    let claims = serde_json::from_slice(&b64url_decode(parts[1])).expect("claims JSON");
    (header, claims)
}

/// An HS256 token with exactly these claims, signed with `secret`.
pub fn mint_hs256(secret: &str, claims: &Value) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64url(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let sig = hmac_sha256::HMAC::mac(input.as_bytes(), secret.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

/// An fastapi-users style access token for `sub`, expiring `exp_in` seconds
/// from now (negative: already expired).
pub fn access_token(secret: &str, sub: &str, exp_in: i64) -> String {
    mint_hs256(
        secret,
        &json!({"sub": sub, "aud": ["fastapi-users:auth"], "exp": now_secs() + exp_in}),
    )
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// -- HTTP --------------------------------------------------------------------------------

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    /// The body as JSON (panics with the body if it is not JSON).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.text))
    }

    /// `(status, body)`: JSON when the body parses, else the text as a
    /// string; an empty body is `Value::Null`.
    pub fn pair(&self) -> (u16, Value) {
        if self.text.is_empty() {
            return (self.status, Value::Null);
        }
        let value =
            serde_json::from_str(&self.text).unwrap_or_else(|_| Value::String(self.text.clone()));
        (self.status, value)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request body.
pub enum Body<'a> {
    None,
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
    /// Raw bytes with an optional content type.
    Raw(&'a [u8], Option<&'a str>),
}

/// A user created for a test, logged in.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

impl TestUser {
    pub fn auth(&self) -> Option<&str> {
        Some(&self.token)
    }
}

/// Options of a test server.
pub struct Builder {
    vars: BTreeMap<String, Option<String>>,
    db: Option<PathBuf>,
    login: bool,
}

impl Builder {
    /// Sets a configuration variable (upper-case name).
    pub fn var(mut self, name: &str, value: &str) -> Builder {
        self.vars.insert(name.to_string(), Some(value.to_string()));
        self
    }

    /// Removes a default variable (e.g. `SECRET_KEY` to have it generated).
    pub fn unset(mut self, name: &str) -> Builder {
        self.vars.insert(name.to_string(), None);
        self
    }

    /// Does not log the admin in (for databases whose admin has another
    /// password than `KCI_INITIAL_PASSWORD`).
    pub fn no_admin_login(mut self) -> Builder {
        self.login = false;
        self
    }

    /// Uses this database file instead of a fresh temporary one.
    pub fn db(mut self, path: &Path) -> Builder {
        self.db = Some(path.to_path_buf());
        self
    }

    pub fn start(self) -> TestServer {
        let vars: HashMap<String, String> = self
            .vars
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let (dir, db) = match self.db {
            Some(db) => (None, db),
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let db = dir.path().join("kci.db");
                (Some(dir), db)
            }
        };
        let config = Config::from_vars(&vars).expect("valid test configuration");
        let app = Arc::new(App::open(config, &db).expect("open the app"));
        let running = server::start(Arc::clone(&app), "127.0.0.1:0").expect("start the server");
        let addr = running.addr();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut srv = TestServer {
            base: format!("http://{addr}"),
            addr,
            admin_token: String::new(),
            admin_password: vars.get("KCI_INITIAL_PASSWORD").cloned(),
            secret: vars.get("SECRET_KEY").cloned(),
            db,
            app,
            agent,
            running: Some(running),
            _dir: dir,
        };
        if let Some(password) = srv.admin_password.clone().filter(|_| self.login) {
            let username = vars
                .get("KCI_INITIAL_ADMIN_USERNAME")
                .cloned()
                .unwrap_or_else(|| ADMIN_USERNAME.to_string());
            srv.admin_token = srv.login_token(&username, &password);
        }
        srv
    }
}

/// An in-process kci-lite on `127.0.0.1:0` (the port the system picks).
pub struct TestServer {
    /// `http://127.0.0.1:<port>` (no prefix).
    pub base: String,
    pub addr: SocketAddr,
    /// Token of the bootstrapped admin (empty when its password is generated).
    pub admin_token: String,
    pub admin_password: Option<String>,
    /// The configured SECRET_KEY, if any.
    pub secret: Option<String>,
    pub db: PathBuf,
    pub app: Arc<App>,
    agent: ureq::Agent,
    running: Option<Running>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
        self.app.close();
    }
}

impl TestServer {
    /// The default test configuration, ready to be adjusted.
    pub fn builder() -> Builder {
        let mut vars = BTreeMap::new();
        for (k, v) in [
            ("SECRET_KEY", format!("kci-lite-test-secret-{}", uniq("k"))),
            ("KCI_INITIAL_PASSWORD", ADMIN_PASSWORD.to_string()),
            ("KCI_INITIAL_ADMIN_EMAIL", ADMIN_EMAIL.to_string()),
            ("KCI_BCRYPT_COST", "4".to_string()),
            ("KCI_HTTP_THREADS", "4".to_string()),
            ("KCI_SYNCHRONOUS", "normal".to_string()),
        ] {
            vars.insert(k.to_string(), Some(v));
        }
        Builder {
            vars,
            db: None,
            login: true,
        }
    }

    /// A server with the default test configuration and a fresh database.
    pub fn start() -> TestServer {
        TestServer::builder().start()
    }

    /// The admin's token as an `Option` for the request helpers.
    pub fn admin(&self) -> Option<&str> {
        Some(&self.admin_token)
    }

    /// `base + "/latest" + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/latest{path}", self.base)
    }

    /// Any request to `base + full_path` (the path includes its prefix).
    pub fn request_full(
        &self,
        method: &str,
        full_path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Reply {
        let url = format!("{}{full_path}", self.base);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        let payload = match body {
            Body::None => None,
            Body::Json(v) => {
                builder = builder.header("Content-Type", "application/json");
                Some(serde_json::to_vec(v).expect("serialise"))
            }
            Body::Form(pairs) => {
                builder = builder.header("Content-Type", "application/x-www-form-urlencoded");
                let text: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                    .collect();
                Some(text.join("&").into_bytes())
            }
            Body::Raw(bytes, content_type) => {
                if let Some(ct) = content_type {
                    builder = builder.header("Content-Type", ct);
                }
                Some(bytes.to_vec())
            }
        };
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let result = match payload {
            None => self.agent.run(builder.body(()).expect("request")),
            Some(bytes) => self.agent.run(builder.body(bytes).expect("request")),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let content_type = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body failed: {e}"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        openapi::check_answer(method, &url, status, &content_type, &text);
        Reply {
            status,
            content_type,
            headers,
            text,
        }
    }

    /// A request under `/latest`.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: Body) -> Reply {
        self.request_full(method, &format!("/latest{path}"), token, &[], body)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.request("GET", path, token, Body::None).pair()
    }

    pub fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.request("POST", path, token, Body::Json(body)).pair()
    }

    pub fn patch_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.request("PATCH", path, token, Body::Json(body)).pair()
    }

    pub fn put_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.request("PUT", path, token, Body::Json(body)).pair()
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.request("DELETE", path, token, Body::None).pair()
    }

    pub fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.request("POST", path, None, Body::Form(form)).pair()
    }

    /// `POST /user/login` (form).
    pub fn login(&self, username: &str, password: &str) -> (u16, Value) {
        self.post_form(
            "/user/login",
            &[("username", username), ("password", password)],
        )
    }

    /// Logs in and returns the access token (panics unless 200).
    #[track_caller]
    pub fn login_token(&self, username: &str, password: &str) -> String {
        let (status, body) = self.login(username, password);
        assert_eq!(status, 200, "login of {username} failed: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// Creates a group through the admin API.
    #[track_caller]
    pub fn make_group(&self) -> Value {
        let (status, body) =
            self.post_json("/user-groups", self.admin(), &json!({"name": uniq("grp")}));
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Invites a user (admin, `return_token`), returns (invite response).
    #[track_caller]
    pub fn invite(&self, username: &str, email: &str, groups: &[&str]) -> Value {
        let (status, body) = self.post_json(
            "/user/invite",
            self.admin(),
            &json!({"username": username, "email": email, "groups": groups,
                    "send_email": false, "return_token": true}),
        );
        assert_eq!(status, 200, "invite failed: {body}");
        body
    }

    /// A verified user in these groups: invite, accept the invite, log in.
    #[track_caller]
    pub fn make_user(&self, groups: &[&str]) -> TestUser {
        let username = uniq("user");
        let email = format!("{username}@example.com");
        let invite = self.invite(&username, &email, groups);
        let token = invite["token"].as_str().expect("invite token").to_string();
        let password = uniq("pw");
        let (status, accepted) = self.post_json(
            "/user/accept-invite",
            None,
            &json!({"token": token, "password": password}),
        );
        assert_eq!(status, 200, "accept-invite failed: {accepted}");
        assert_eq!(accepted["is_verified"], true);
        let token = self.login_token(&username, &password);
        TestUser {
            id: accepted["id"].as_str().expect("id").to_string(),
            username,
            email,
            password,
            token,
        }
    }

    /// Registers an (unverified) user through the admin-only register path.
    #[track_caller]
    pub fn register(&self, username: &str, password: &str) -> Value {
        let (status, body) = self.post_json(
            "/user/register",
            self.admin(),
            &json!({"username": username, "email": format!("{username}@example.com"),
                    "password": password}),
        );
        assert_eq!(status, 200, "register failed: {body}");
        body
    }

    /// Creates a node as `token`'s user (panics unless 200).
    #[track_caller]
    pub fn make_node(&self, token: Option<&str>, body: &Value) -> Value {
        let (status, node) = self.post_json("/node", token, body);
        assert_eq!(status, 200, "create node failed: {node}");
        node
    }

    /// `http_requests_total{instance="api"}` from /metrics.
    #[track_caller]
    pub fn requests_total(&self) -> u64 {
        let reply = self.request("GET", "/metrics", None, Body::None);
        assert_eq!(reply.status, 200);
        assert!(
            reply.content_type.starts_with("text/plain"),
            "{}",
            reply.content_type
        );
        reply
            .text
            .lines()
            .find_map(|l| l.strip_prefix("http_requests_total{instance=\"api\"} "))
            .unwrap_or_else(|| panic!("no counter line: {}", reply.text))
            .trim()
            .parse()
            .expect("integer counter")
    }

    /// A read-only connection to the server's database file (WAL mode, so
    /// it sees every committed write and never blocks the writer).
    pub fn db_reader(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open the database read-only")
    }

    /// The stored events of a node (`data.id` = `node_id`), oldest first.
    pub fn node_events(&self, node_id: &str) -> Vec<StoredEvent> {
        let conn = self.db_reader();
        let mut stmt = conn
            .prepare(
                "SELECT seq, channel, owner, data, envelope FROM event
                 WHERE json_extract(data, '$.id') = ?1 ORDER BY seq",
            )
            .expect("prepare");
        let rows = stmt
            .query_map([node_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .expect("query events");
        rows.map(|row| {
            let (seq, channel, owner, data, envelope) = row.expect("event row");
            let data: Value = serde_json::from_str(&data).expect("event data is JSON");
            let mut envelope: Value = serde_json::from_str(&envelope).expect("envelope is JSON");
            // The store keeps one copy of the data: the envelope's is null
            // and put back on delivery, as here.
            assert_eq!(envelope["data"], Value::Null, "stored envelope data");
            envelope["data"] = data.clone();
            StoredEvent {
                seq,
                channel,
                owner,
                data,
                envelope,
            }
        })
        .collect()
    }

    /// How many events the history holds in total.
    pub fn event_total(&self) -> i64 {
        self.db_reader()
            .query_row("SELECT count(*) FROM event", [], |r| r.get(0))
            .expect("count events")
    }

    /// Sends raw bytes on a new connection and reads one response.
    pub fn raw(&self, request: &[u8]) -> RawReply {
        raw_request(self.addr, request)
    }
}

/// One row of the `event` table, JSON columns parsed (key order kept).
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub seq: i64,
    /// Channel, owner and data columns as stored; `envelope` as delivered
    /// (without `_sequence_id`).
    pub channel: String,
    pub owner: Option<String>,
    pub data: Value,
    pub envelope: Value,
}

/// A response read straight from the socket.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes `request` to a new connection and reads one HTTP/1.1 response
/// (headers, then Content-Length bytes, a chunked body (decoded), or up to
/// EOF). Times out after 10 s.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    sock.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A server may answer (and close) before it read everything; a failed
    // write is then not an error of the test.
    let _ = sock.write_all(request);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        assert!(Instant::now() < deadline, "no response headers within 10 s");
        match sock.read(&mut chunk) {
            Ok(0) => panic!(
                "connection closed before the response headers: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "reading the response failed: {e} (got {:?})",
                String::from_utf8_lossy(&buf)
            ),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let mut body = buf[head_end..].to_vec();
    loop {
        if length.is_some_and(|n| body.len() >= n) {
            break;
        }
        if chunked && (body.starts_with(b"0\r\n\r\n") || body.ends_with(b"\r\n0\r\n\r\n")) {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(n) = length {
        assert!(body.len() >= n, "short body: {} of {n} bytes", body.len());
        body.truncate(n);
    }
    if chunked {
        body = dechunk(&body);
    }
    RawReply {
        status,
        headers,
        body,
    }
}

/// The content of a complete chunked body (no trailers, no extensions).
fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = chunked
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk-size line");
        let size = std::str::from_utf8(&chunked[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .expect("a chunk size");
        chunked = &chunked[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&chunked[..size]);
        chunked = &chunked[size + 2..];
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// -- pub/sub helpers (pubsub.rs, durable.rs, events.rs, timer.rs, crash.rs) -------------

/// An HTTP client whose every call gives up after `timeout` (statuses are
/// not errors, no redirects).
pub fn client_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// One request to `url` with `agent` (JSON body if given): `Ok((status,
/// body))` (body `Value::Null` when empty, a JSON string when it is not
/// JSON) or `Err(text)` on a transport error or a client timeout.
pub fn call_url(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    let result = match body {
        None => agent.run(builder.body(()).map_err(|e| e.to_string())?),
        Some(value) => {
            builder = builder.header("Content-Type", "application/json");
            let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
            agent.run(builder.body(bytes).map_err(|e| e.to_string())?)
        }
    };
    let mut resp = result.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
    openapi::check_answer(method, url, status, &content_type, &text);
    if text.is_empty() {
        return Ok((status, Value::Null));
    }
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// The CloudEvent carried (as JSON text) in a `/listen` message.
#[track_caller]
pub fn cloud_event(message: &Value) -> Value {
    let text = message["data"]
        .as_str()
        .unwrap_or_else(|| panic!("listen data must be a string: {message}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("data is not JSON ({e}): {text}"))
}

/// Whether a CloudEvent is a keep-alive.
pub fn is_beep(event: &Value) -> bool {
    event["data"] == "BEEP"
}

/// The integer id of a `/subscribe` answer.
#[track_caller]
pub fn subscription_id(sub: &Value) -> u64 {
    sub["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("subscription without an integer id: {sub}"))
}

impl TestServer {
    /// A request under `/latest` with its own client timeout.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        call_url(
            &client_with_timeout(timeout),
            method,
            &self.url(path),
            token,
            body,
        )
    }

    /// `POST /subscribe/{channel}{query}` (query: "" or "?promisc=..."),
    /// panics unless 200; the subscription object.
    #[track_caller]
    pub fn subscribe_to(&self, token: Option<&str>, channel: &str, query: &str) -> Value {
        let (status, body) = self
            .request(
                "POST",
                &format!("/subscribe/{channel}{query}"),
                token,
                Body::None,
            )
            .pair();
        assert_eq!(status, 200, "subscribe to {channel}{query}: {body}");
        body
    }

    /// `POST /publish/{channel}` with `body`, panics unless 200 `null`.
    #[track_caller]
    pub fn publish_on(&self, token: Option<&str>, channel: &str, body: &Value) {
        let (status, answer) = self.post_json(&format!("/publish/{channel}"), token, body);
        assert_eq!((status, &answer), (200, &Value::Null), "publish {body}");
    }

    /// `GET /listen/{sub}` with a client timeout.
    pub fn listen_once(
        &self,
        token: Option<&str>,
        sub: u64,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        self.call("GET", &format!("/listen/{sub}"), token, None, timeout)
    }

    /// The next message of `sub` (BEEPs included), panics unless 200 within
    /// `timeout`: (message, CloudEvent).
    #[track_caller]
    pub fn listen_message(
        &self,
        token: Option<&str>,
        sub: u64,
        timeout: Duration,
    ) -> (Value, Value) {
        let (status, message) = self
            .listen_once(token, sub, timeout)
            .unwrap_or_else(|e| panic!("listen {sub}: {e}"));
        assert_eq!(status, 200, "listen {sub}: {message}");
        let event = cloud_event(&message);
        (message, event)
    }

    /// The next CloudEvent of `sub` that is not a BEEP, within `timeout`.
    #[track_caller]
    pub fn next_event(&self, token: Option<&str>, sub: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no event for subscription {sub} within {timeout:?}"
            );
            let (_, event) = self.listen_message(token, sub, left);
            if !is_beep(&event) {
                return event;
            }
        }
    }
}
