//! Restarts, persistence, start-up configuration, and the `kci-lite` binary
//! itself (`serve`, `migrate`, `admin create`, signals, `.env`) — API.md
//! section 13.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::process::{BINARY, ServerProcess};
use common::*;
use kci_lite::auth::{PasswordCheck, verify_password};
use kci_lite::store::{meta, users};
use serde_json::{Value, json};

// -- in-process restarts ----------------------------------------------------------------

#[test]
fn restart_keeps_users_tokens_groups_and_nodes_with_a_generated_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("kci.db");
    let (user, group, node, admin_token) = {
        let srv = TestServer::builder().unset("SECRET_KEY").db(&db).start();
        let group = srv.make_group();
        let user = srv.make_user(&[group["name"].as_str().unwrap()]);
        let node = srv.make_node(
            user.auth(),
            &json!({"name": uniq("persist"), "kind": "checkout", "path": ["p"],
                    "data": {"keep": [1, "two"]}, "user_groups": [group["name"]]}),
        );
        (user, group, node, srv.admin_token.clone())
    };
    let srv = TestServer::builder().unset("SECRET_KEY").db(&db).start();
    // the secret was generated once and stored
    let secret = srv
        .app
        .store
        .read(|c| meta::get(c, "secret_key"))
        .expect("read")
        .expect("stored secret");
    assert!(secret.len() >= 32, "{secret}");
    // tokens issued before the restart still work
    let (status, me) = srv.get("/whoami", user.auth());
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], user.username.as_str());
    assert_eq!(me["groups"], json!([group]));
    assert_eq!(srv.get("/whoami", Some(&admin_token)).0, 200);
    // passwords, groups and nodes are still there
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
    let (status, read) = srv.get(
        &format!("/user-groups/{}", group["id"].as_str().unwrap()),
        srv.admin(),
    );
    assert_eq!((status, &read), (200, &group));
    let (status, read) = srv.get(&format!("/node/{}", node["id"].as_str().unwrap()), None);
    assert_eq!((status, &read), (200, &node));
    assert_eq!(srv.get("/count", None).1, json!(1));
    // the stored secret signs tokens; another secret does not
    let minted = access_token(&secret, &user.id, 600);
    assert_eq!(srv.get("/whoami", Some(&minted)).0, 200);
    let foreign = access_token("kci-lite-another-secret-xyz", &user.id, 600);
    assert_eq!(srv.get("/whoami", Some(&foreign)).0, 401);
    // only one admin and one node:edit:any after two starts
    assert_eq!(
        srv.get("/users?is_superuser=true", srv.admin()).1["total"],
        1
    );
    assert_eq!(srv.get("/groups?name=node:edit:any", None).1["total"], 1);
}

#[test]
fn explicit_secret_key_wins_over_the_stored_one() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("kci.db");
    let old_token = {
        let srv = TestServer::builder().unset("SECRET_KEY").db(&db).start();
        srv.admin_token.clone()
    };
    let explicit = "explicit-secret-0123456789";
    let srv = TestServer::builder()
        .var("SECRET_KEY", explicit)
        .db(&db)
        .start();
    let (status, body) = srv.get("/whoami", Some(&old_token));
    assert_detail(status, &body, 401, "Unauthorized");
    let admin_id = srv.get("/whoami", srv.admin()).1["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        srv.get("/whoami", Some(&access_token(explicit, &admin_id, 600)))
            .0,
        200
    );
}

#[test]
fn generated_admin_password_bootstraps_a_verified_superuser_once() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("kci.db");
    let stored = |srv: &TestServer| {
        srv.app
            .store
            .read(|c| users::get_by_username(c, ADMIN_USERNAME))
            .expect("read")
            .expect("admin exists")
    };
    let first_hash = {
        let srv = TestServer::builder()
            .unset("KCI_INITIAL_PASSWORD")
            .db(&db)
            .start();
        let admin = stored(&srv);
        assert!(
            admin.is_superuser && admin.is_verified && admin.is_active,
            "{admin:?}"
        );
        assert_eq!(admin.email, ADMIN_EMAIL);
        assert!(
            admin.hashed_password.starts_with("$2b$04$"),
            "{}",
            admin.hashed_password
        );
        assert_eq!(
            verify_password("", &admin.hashed_password),
            PasswordCheck::Wrong
        );
        let (status, body) = srv.login(ADMIN_USERNAME, ADMIN_PASSWORD);
        assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
        admin.hashed_password
    };
    // a superuser exists now: a password given later creates nothing
    let srv = TestServer::builder()
        .var("KCI_INITIAL_PASSWORD", "too-late-pw")
        .db(&db)
        .no_admin_login()
        .start();
    assert_eq!(stored(&srv).hashed_password, first_hash);
    let (status, body) = srv.login(ADMIN_USERNAME, "too-late-pw");
    assert_detail(status, &body, 400, "LOGIN_BAD_CREDENTIALS");
    let all = srv.app.store.read(users::all).expect("read");
    assert_eq!(all.len(), 1);
}

#[test]
fn initial_admin_username_and_email_from_configuration() {
    let srv = TestServer::builder()
        .var("KCI_INITIAL_ADMIN_USERNAME", "boss")
        .var("KCI_INITIAL_ADMIN_EMAIL", "boss@example.org")
        .var("KCI_INITIAL_PASSWORD", "boss-pw-123")
        .start();
    let (status, me) = srv.get("/whoami", srv.admin());
    assert_eq!(status, 200);
    assert_eq!(
        (&me["username"], &me["email"], &me["is_superuser"]),
        (&json!("boss"), &json!("boss@example.org"), &json!(true))
    );
    assert_eq!(srv.login(ADMIN_USERNAME, "boss-pw-123").0, 400);
}

#[test]
fn default_admin_email_follows_the_username() {
    let srv = TestServer::builder()
        .unset("KCI_INITIAL_ADMIN_EMAIL")
        .var("KCI_INITIAL_ADMIN_USERNAME", "chief")
        .start();
    assert_eq!(
        srv.get("/whoami", srv.admin()).1["email"],
        "chief@kernelci.org"
    );
}

#[test]
fn token_lifetime_and_algorithm_settings() {
    for (vars, lifetime) in [
        (vec![("ACCESS_TOKEN_EXPIRE_MINUTES", "5")], 300),
        (
            vec![
                ("ACCESS_TOKEN_EXPIRE_MINUTES", "5"),
                ("ACCESS_TOKEN_EXPIRE_SECONDS", "120"),
            ],
            120,
        ),
    ] {
        let mut builder = TestServer::builder();
        for (k, v) in vars {
            builder = builder.var(k, v);
        }
        let srv = builder.start();
        let (_, claims) = jwt_parts(&srv.admin_token);
        let exp = claims["exp"].as_i64().unwrap();
        assert!(
            (exp - now_secs() - lifetime).abs() < 30,
            "exp {exp}, lifetime {lifetime}"
        );
    }
    let srv = TestServer::builder().var("ALGORITHM", "HS512").start();
    let (header, claims) = jwt_parts(&srv.admin_token);
    assert_eq!(header["alg"], "HS512");
    assert_eq!(srv.get("/whoami", srv.admin()).0, 200);
    // an HS256 token with the right secret is refused when ALGORITHM is HS512
    let hs256 = access_token(
        srv.secret.as_deref().unwrap(),
        claims["sub"].as_str().unwrap(),
        600,
    );
    assert_eq!(srv.get("/whoami", Some(&hs256)).0, 401);
}

#[test]
fn unified_secret_is_accepted_for_verification() {
    let unified = "unified-secret-abcdef-123456";
    let srv = TestServer::builder().var("UNIFIED_SECRET", unified).start();
    let admin_id = srv.get("/whoami", srv.admin()).1["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        srv.get("/whoami", Some(&access_token(unified, &admin_id, 600)))
            .0,
        200
    );
    // tokens are still issued with SECRET_KEY
    let own = access_token(srv.secret.as_deref().unwrap(), &admin_id, 600);
    assert_eq!(srv.get("/whoami", Some(&own)).0, 200);
}

// -- the binary ---------------------------------------------------------------------------

/// The environment every `kci-lite` run here starts from (after a clear).
const BASE_ENV: [(&str, &str); 3] = [
    ("KCI_BCRYPT_COST", "4"),
    ("KCI_SYNCHRONOUS", "normal"),
    ("KCI_HTTP_THREADS", "4"),
];

/// A `kci-lite` command with a clean environment and a working directory.
fn command(workdir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.args(args).current_dir(workdir).env_clear();
    for (k, v) in BASE_ENV {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a command to completion (stdin text optional); (status, stdout, stderr).
fn run(
    workdir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (ExitStatus, String, String) {
    let mut child = command(workdir, args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kci-lite");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `kci-lite serve` process; killed on drop if a test fails early.
struct Served {
    process: ServerProcess,
    base: String,
}

impl Served {
    /// Starts `serve` and waits until it serves and `GET /latest/` answers.
    fn start(workdir: &Path, db: Option<&Path>, env: &[(&str, &str)]) -> Served {
        let mut launch = ServerProcess::builder().current_dir(workdir).clear_env();
        if let Some(db) = db {
            launch = launch.db(db);
        }
        for (k, v) in BASE_ENV.iter().chain(env) {
            launch = launch.env(k, v);
        }
        let process = launch.start();
        let base = process.url();
        let served = Served { process, base };
        let (status, body) = served.get("/latest/", None);
        assert_eq!(status, 200, "{body}; log: {}", served.log());
        assert_eq!(body, json!({"message": "KernelCI API"}));
        served
    }

    fn log(&self) -> String {
        self.process.log()
    }

    /// The log once it contains `needle` (stderr is collected by another
    /// thread, so a line may arrive a little after the HTTP reply).
    fn log_with(&self, needle: &str) -> String {
        self.process.log_with(needle, Duration::from_secs(10))
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into()
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = Served::agent().get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        match req.call() {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(_) => (0, Value::Null),
        }
    }

    fn login(&self, username: &str, password: &str) -> (u16, Value) {
        let mut resp = Served::agent()
            .post(format!("{}/latest/user/login", self.base))
            .send_form([("username", username), ("password", password)])
            .expect("login request");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn token(&self, username: &str, password: &str) -> String {
        let (status, body) = self.login(username, password);
        assert_eq!(status, 200, "login {username}: {body}; log: {}", self.log());
        body["access_token"].as_str().expect("token").to_string()
    }

    /// SIGTERM, then the exit status within 5 s and the whole log.
    fn terminate(mut self) -> (ExitStatus, String) {
        let status = self.process.stop(Duration::from_secs(5));
        let status =
            status.unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM: {}", self.log()));
        (status, self.log())
    }
}

fn table_count(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name != 'schema_migrations' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )
    .expect("count")
}

#[test]
fn migrate_status_up_down() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("m.db");
    let db_arg = db.to_str().unwrap();

    let (status, out, err) = run(
        dir.path(),
        &["migrate", "status", "--db", db_arg],
        &[],
        None,
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("schema version 0"), "{out}");
    assert!(
        out.contains("0001_init") && out.contains("pending"),
        "{out}"
    );

    let (status, out, err) = run(dir.path(), &["migrate", "up", "--db", db_arg], &[], None);
    assert!(status.success(), "{err}");
    assert!(
        out.contains("applied 0001") && out.contains("applied 0002"),
        "{out}"
    );
    assert!(table_count(&db) > 0);
    let (status, out, _) = run(dir.path(), &["migrate", "--db", db_arg, "up"], &[], None);
    assert!(status.success());
    assert!(out.contains("nothing to apply"), "{out}");

    let (status, out, _) = run(
        dir.path(),
        &["migrate", "status", "--db", db_arg],
        &[],
        None,
    );
    assert!(status.success());
    let latest = format!("schema version {}", kci_lite::store::migrate::latest());
    assert!(out.contains(&latest), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("0001_init"))
        .expect("migration line");
    assert!(!line.contains("pending"), "{line}");
    assert!(
        line.chars().any(|c| c.is_ascii_digit() && c != '0'),
        "applied time: {line}"
    );

    let (status, out, err) = run(
        dir.path(),
        &["migrate", "down", "--to", "0", "--db", db_arg],
        &[],
        None,
    );
    assert!(status.success(), "{err}");
    assert!(
        out.contains("reverted 0002") && out.contains("reverted 0001"),
        "{out}"
    );
    assert_eq!(table_count(&db), 0, "down is the exact inverse of up");
    let (_, out, _) = run(
        dir.path(),
        &["migrate", "status", "--db", db_arg],
        &[],
        None,
    );
    assert!(
        out.contains("schema version 0") && out.contains("pending"),
        "{out}"
    );
    let (status, out, _) = run(dir.path(), &["migrate", "down", "--db", db_arg], &[], None);
    assert!(status.success());
    assert!(out.contains("nothing to revert"), "{out}");
}

#[test]
fn serve_migrates_a_database_that_migrate_reverted() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("m.db");
    let db_arg = db.to_str().unwrap();
    let (status, _, err) = run(dir.path(), &["migrate", "up", "--db", db_arg], &[], None);
    assert!(status.success(), "{err}");
    let (status, _, err) = run(
        dir.path(),
        &["migrate", "down", "--to", "0", "--db", db_arg],
        &[],
        None,
    );
    assert!(status.success(), "{err}");
    let served = Served::start(dir.path(), Some(&db), &[("KCI_INITIAL_PASSWORD", "pw-1")]);
    let token = served.token("admin", "pw-1");
    assert_eq!(served.get("/latest/whoami", Some(&token)).0, 200);
    let (status, _) = served.terminate();
    assert!(status.success());
    let (_, out, _) = run(
        dir.path(),
        &["migrate", "status", "--db", db_arg],
        &[],
        None,
    );
    let latest = format!("schema version {}", kci_lite::store::migrate::latest());
    assert!(out.contains(&latest), "{out}");
}

#[test]
fn admin_create_then_serve() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("a.db");
    let db_arg = db.to_str().unwrap();
    let args = [
        "admin",
        "create",
        "--username",
        "x",
        "--email",
        "x@example.com",
        "--password-stdin",
        "--db",
        db_arg,
    ];
    let (status, out, err) = run(dir.path(), &args, &[], Some("pw-of-x\n"));
    assert!(status.success(), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("created superuser 'x'"), "{out}");
    // the same name again is refused
    let (status, _, err) = run(dir.path(), &args, &[], Some("other\n"));
    assert!(!status.success());
    assert!(err.contains("already exists"), "{err}");

    let served = Served::start(
        dir.path(),
        Some(&db),
        &[("KCI_INITIAL_PASSWORD", "unused-pw")],
    );
    let token = served.token("x", "pw-of-x");
    let (status, me) = served.get("/latest/whoami", Some(&token));
    assert_eq!(status, 200);
    assert_eq!(
        (
            &me["username"],
            &me["email"],
            &me["is_superuser"],
            &me["is_verified"],
            &me["is_active"]
        ),
        (
            &json!("x"),
            &json!("x@example.com"),
            &json!(true),
            &json!(true),
            &json!(true)
        )
    );
    assert_eq!(served.login("x", "other").0, 400);
    let (status, _) = served.terminate();
    assert!(status.success());
}

#[test]
fn admin_create_rejects_empty_and_missing_passwords() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("a.db");
    let db_arg = db.to_str().unwrap();
    let (status, _, err) = run(
        dir.path(),
        &[
            "admin",
            "create",
            "--username",
            "y",
            "--email",
            "y@example.com",
            "--password-stdin",
            "--db",
            db_arg,
        ],
        &[],
        Some("\n"),
    );
    assert!(!status.success());
    assert!(err.contains("empty"), "{err}");
    // no --password-stdin, no terminal, no KCI_INITIAL_PASSWORD
    let (status, _, err) = run(
        dir.path(),
        &[
            "admin",
            "create",
            "--username",
            "y",
            "--email",
            "y@example.com",
            "--db",
            db_arg,
        ],
        &[],
        None,
    );
    assert!(!status.success());
    assert!(err.contains("password"), "{err}");
    // KCI_INITIAL_PASSWORD is the fallback
    let (status, out, err) = run(
        dir.path(),
        &[
            "admin",
            "create",
            "--username",
            "y",
            "--email",
            "y@example.com",
            "--db",
            db_arg,
        ],
        &[("KCI_INITIAL_PASSWORD", "pw-from-env")],
        None,
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("created superuser 'y'"), "{out}");
    // an invalid address is refused
    let (status, _, err) = run(
        dir.path(),
        &[
            "admin",
            "create",
            "--username",
            "z",
            "--email",
            "not-an-email",
            "--password-stdin",
            "--db",
            db_arg,
        ],
        &[],
        Some("pw\n"),
    );
    assert!(!status.success());
    assert!(err.contains("not-an-email"), "{err}");
}

#[test]
fn admin_create_named_admin_on_a_fresh_database() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("a.db");
    let db_arg = db.to_str().unwrap();
    let (status, out, err) = run(
        dir.path(),
        &[
            "admin",
            "create",
            "--username",
            "admin",
            "--email",
            "admin@example.com",
            "--password-stdin",
            "--db",
            db_arg,
        ],
        &[],
        Some("chosen-admin-pw\n"),
    );
    assert!(status.success(), "stdout: {out}\nstderr: {err}");
    let served = Served::start(dir.path(), Some(&db), &[]);
    served.token("admin", "chosen-admin-pw");
}

#[test]
fn admin_create_creates_only_the_named_superuser() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("a.db");
    let db_arg = db.to_str().unwrap();
    let (status, _, err) = run(
        dir.path(),
        &[
            "admin",
            "create",
            "--username",
            "x",
            "--email",
            "x@example.com",
            "--password-stdin",
            "--db",
            db_arg,
        ],
        &[],
        Some("pw-of-x\n"),
    );
    assert!(status.success(), "{err}");
    assert!(!err.contains("initial admin password"), "{err}");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let names: Vec<String> = conn
        .prepare("SELECT username FROM user ORDER BY id")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(names, ["x"]);
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("s.db");
    let served = Served::start(
        dir.path(),
        Some(&db),
        &[
            ("KCI_INITIAL_PASSWORD", "pw-1"),
            ("SECRET_KEY", "sigterm-secret-0123456789"),
        ],
    );
    let token = served.token("admin", "pw-1");
    let (status, node) = {
        let mut resp = Served::agent()
            .post(format!("{}/latest/node", served.base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(json!({"name": "durable", "path": ["d"]}).to_string())
            .expect("create node");
        let text = resp.body_mut().read_to_string().expect("body");
        (
            resp.status().as_u16(),
            serde_json::from_str::<Value>(&text).expect("json"),
        )
    };
    assert_eq!(status, 200, "{node}");
    let (status, log) = served.terminate();
    assert!(status.success(), "exit status {status}; log: {log}");
    assert_eq!(status.code(), Some(0));
    // everything acknowledged survived; the same token works after a restart
    let served = Served::start(
        dir.path(),
        Some(&db),
        &[
            ("KCI_INITIAL_PASSWORD", "pw-1"),
            ("SECRET_KEY", "sigterm-secret-0123456789"),
        ],
    );
    let (status, read) = served.get(
        &format!("/latest/node/{}", node["id"].as_str().unwrap()),
        None,
    );
    assert_eq!((status, read), (200, node));
    assert_eq!(served.get("/latest/whoami", Some(&token)).0, 200);
    let (status, _) = served.terminate();
    assert!(status.success());
}

#[test]
fn generated_secret_and_admin_password_survive_a_binary_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("g.db");
    let served = Served::start(dir.path(), Some(&db), &[]);
    let log = served.log_with("kci-lite: serving http");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("initial admin password"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let password = lines[0]
        .strip_prefix("kci-lite: initial admin password: ")
        .unwrap_or_else(|| panic!("format: {}", lines[0]))
        .trim()
        .to_string();
    assert!(!password.is_empty());
    let token = served.token("admin", &password);
    let (_, me) = served.get("/latest/whoami", Some(&token));
    assert_eq!(
        (&me["is_superuser"], &me["is_verified"]),
        (&json!(true), &json!(true))
    );
    let (status, _) = served.terminate();
    assert!(status.success());

    let served = Served::start(dir.path(), Some(&db), &[]);
    assert_eq!(
        served.get("/latest/whoami", Some(&token)).0,
        200,
        "token survives the restart"
    );
    served.token("admin", &password);
    let (status, log) = served.terminate();
    assert!(status.success());
    assert!(
        !log.contains("initial admin password"),
        "printed only once: {log}"
    );
}

#[test]
fn bad_configuration_value_stops_serve_with_a_message() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("bad.db");
    for (name, value) in [
        ("ALGORITHM", "RS256"),
        ("KCI_BCRYPT_COST", "3"),
        ("SECRET_KEY", "short"),
    ] {
        let (status, _, err) = run(
            dir.path(),
            &[
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--db",
                db.to_str().unwrap(),
            ],
            &[(name, value), ("KCI_INITIAL_PASSWORD", "pw")],
            None,
        );
        assert!(!status.success(), "{name}={value} must fail");
        assert!(err.contains(name), "{name}: {err}");
    }
    // lower-case names are the same settings
    let (status, _, err) = run(
        dir.path(),
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--db",
            db.to_str().unwrap(),
        ],
        &[("algorithm", "RS256"), ("KCI_INITIAL_PASSWORD", "pw")],
        None,
    );
    assert!(!status.success());
    assert!(err.contains("ALGORITHM"), "{err}");
}

#[test]
fn upstream_style_dotenv_file_lets_serve_start() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = "dotenv-secret-0123456789abcdef0123";
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "# upstream kernelci-api settings\n\
             MONGO_SERVICE=mongodb://db:27017\n\
             REDIS_HOST=redis\n\
             SECRET_KEY={secret}\n\
             ALGORITHM=HS256\n\
             ACCESS_TOKEN_EXPIRE_MINUTES=480\n\
             KCI_INITIAL_PASSWORD=\"from-dotenv\"\n"
        ),
    )
    .expect("write .env");
    let db = dir.path().join("e.db");
    let served = Served::start(dir.path(), Some(&db), &[]);
    let token = served.token("admin", "from-dotenv");
    let (_, claims) = jwt_parts(&token);
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        (exp - now_secs() - 480 * 60).abs() < 60,
        "ACCESS_TOKEN_EXPIRE_MINUTES from .env: {exp}"
    );
    // SECRET_KEY came from .env
    let me = served.get("/latest/whoami", Some(&token)).1;
    let minted = access_token(secret, me["id"].as_str().unwrap(), 600);
    assert_eq!(served.get("/latest/whoami", Some(&minted)).0, 200);
    let (status, log) = served.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("MONGO_SERVICE"),
        "ignored upstream settings are logged: {log}"
    );

    // the process environment wins over .env
    let served = Served::start(
        dir.path(),
        Some(&db),
        &[("ACCESS_TOKEN_EXPIRE_MINUTES", "5")],
    );
    let token = served.token("admin", "from-dotenv");
    let exp = jwt_parts(&token).1["exp"].as_i64().unwrap();
    assert!(
        (exp - now_secs() - 300).abs() < 60,
        "environment wins: {exp}"
    );
    let (status, _) = served.terminate();
    assert!(status.success());
}

#[test]
fn serve_uses_the_default_database_path() {
    let dir = tempfile::tempdir().expect("dir");
    let served = Served::start(dir.path(), None, &[("KCI_INITIAL_PASSWORD", "pw")]);
    served.token("admin", "pw");
    let (status, _) = served.terminate();
    assert!(status.success());
    let default: PathBuf = dir.path().join("kci-lite.db");
    assert!(default.exists(), "{}", default.display());
}

#[test]
fn body_limit_setting_applies_to_the_binary() {
    let dir = tempfile::tempdir().expect("dir");
    let served = Served::start(
        dir.path(),
        Some(&dir.path().join("b.db")),
        &[
            ("KCI_INITIAL_PASSWORD", "pw"),
            ("KCI_MAX_BODY_BYTES", "2048"),
        ],
    );
    let token = served.token("admin", "pw");
    let addr = served.process.addr();
    let reply = raw_request(
        addr,
        format!(
            "POST /latest/node HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.body).expect("json"),
        json!({"detail": "Request body too large"})
    );
    assert_eq!(served.get("/latest/count", None).1, json!(0));
    let (status, _) = served.terminate();
    assert!(status.success());
}

#[test]
fn without_smtp_mails_go_to_the_log_with_their_tokens() {
    let dir = tempfile::tempdir().expect("dir");
    let served = Served::start(
        dir.path(),
        Some(&dir.path().join("l.db")),
        &[("KCI_INITIAL_PASSWORD", "pw")],
    );
    let admin = served.token("admin", "pw");
    let agent = Served::agent();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = agent
            .post(format!("{}/latest{path}", served.base))
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let mut resp = req.send(body.to_string()).expect("request");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("body");
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    let name = uniq("logged");
    let email = format!("{name}@example.com");
    let (status, invite) = post(
        "/user/invite",
        Some(&admin),
        json!({"username": name, "email": email}),
    );
    assert_eq!(status, 200, "{invite}");
    assert_eq!(invite["email_sent"], false);
    assert_eq!(invite["token"], Value::Null);
    // the invite mail, token and link included, is in the log
    let log = served.log_with("The invite is valid for 7 days");
    let url_prefix = format!("{}/user/accept-invite?token=", served.base);
    let invite_url = log
        .split_whitespace()
        .find(|w| w.starts_with(&url_prefix))
        .unwrap_or_else(|| panic!("no invite link in the log: {log}"))
        .to_string();
    let token = invite_url.trim_start_matches(&url_prefix);
    let (status, body) = post(
        "/user/accept-invite",
        None,
        json!({"token": token, "password": "from-log"}),
    );
    assert_eq!(status, 200, "{body}");
    served.token(&name, "from-log");

    let (status, body) = post("/user/forgot-password", None, json!({"email": email}));
    assert_eq!((status, body), (202, Value::Null));
    let log = served.log_with("can be used once");
    let after = &log[log
        .rfind("password reset")
        .unwrap_or_else(|| panic!("no reset mail: {log}"))..];
    let reset = after
        .split_whitespace()
        .find(|w| w.split('.').count() == 3 && w.len() > 40)
        .unwrap_or_else(|| panic!("no reset token: {after}"))
        .to_string();
    let (status, body) = post(
        "/user/reset-password",
        None,
        json!({"token": reset, "password": "reset-from-log"}),
    );
    assert_eq!((status, body), (200, Value::Null));
    served.token(&name, "reset-from-log");
    let (status, _) = served.terminate();
    assert!(status.success());
}
