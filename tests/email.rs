//! E-mail flows through a real (minimal, in-test) SMTP relay: invites,
//! welcome, password reset, verification, and relay failures (API.md
//! sections 4.3, 4.4 and 14).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{Value, json};

/// One message the sink accepted.
#[derive(Clone, Debug)]
struct Mail {
    from: String,
    to: Vec<String>,
    headers: Vec<(String, String)>,
    text: String,
}

impl Mail {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn subject(&self) -> String {
        self.header("Subject").unwrap_or("").to_string()
    }

    /// Whitespace-delimited words that look like compact JWS tokens.
    fn tokens(&self) -> Vec<String> {
        self.text
            .split_whitespace()
            .filter(|w| w.split('.').count() == 3 && w.len() > 40 && !w.contains('/'))
            .map(str::to_string)
            .collect()
    }
}

fn decode_qp(text: &str) -> String {
    let text = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_b64(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    String::from_utf8_lossy(&b64url_decode(&clean)).into_owned()
}

fn parse_message(from: String, to: Vec<String>, raw: &str) -> Mail {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let encoding = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Transfer-Encoding"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let text = match encoding.as_str() {
        "quoted-printable" => decode_qp(body),
        "base64" => decode_b64(body),
        _ => body.to_string(),
    };
    Mail {
        from,
        to,
        headers,
        text,
    }
}

/// A minimal SMTP relay on a free port: no TLS, no AUTH, accepts all.
struct Sink {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&mails);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let store = Arc::clone(&store);
                std::thread::spawn(move || serve_smtp(conn, &store));
            }
        });
        Sink { port, mails }
    }

    fn all(&self) -> Vec<Mail> {
        self.mails.lock().expect("lock").clone()
    }

    fn to(&self, address: &str) -> Vec<Mail> {
        self.all()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == address))
            .collect()
    }
}

fn serve_smtp(conn: std::net::TcpStream, store: &Mutex<Vec<Mail>>) {
    let mut out = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    let _ = out.write_all(b"220 sink ESMTP ready\r\n");
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let address = || {
            line.split_once(':')
                .map(|(_, a)| {
                    a.trim()
                        .trim_start_matches('<')
                        .split('>')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default()
        };
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO")
            || upper.starts_with("RSET")
            || upper.starts_with("NOOP")
        {
            b"250 OK\r\n"
        } else if upper.starts_with("MAIL FROM") {
            from = address();
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO") {
            to.push(address());
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            let _ = out.write_all(b"354 go ahead\r\n");
            let mut raw = String::new();
            loop {
                let mut data = String::new();
                if reader.read_line(&mut data).unwrap_or(0) == 0 {
                    return;
                }
                if data == ".\r\n" || data == ".\n" {
                    break;
                }
                raw.push_str(data.strip_prefix('.').unwrap_or(&data));
            }
            // stored before the 250, so the mail is there when the API answers
            store
                .lock()
                .expect("lock")
                .push(parse_message(from.clone(), to.clone(), &raw));
            b"250 queued\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = out.write_all(b"221 bye\r\n");
            return;
        } else {
            b"502 not implemented\r\n"
        };
        if out.write_all(reply).is_err() {
            return;
        }
    }
}

const SENDER: &str = "kci-lite@example.com";

fn server_with_relay(port: u16) -> TestServer {
    TestServer::builder()
        .var("SMTP_HOST", "127.0.0.1")
        .var("SMTP_PORT", &port.to_string())
        .var("SMTP_SECURITY", "none")
        .var("EMAIL_SENDER", SENDER)
        .start()
}

fn register(srv: &TestServer) -> (String, String, String) {
    let name = uniq("mail");
    let email = format!("{name}@example.com");
    srv.register(&name, "pw-original");
    (name, email, "pw-original".to_string())
}

#[track_caller]
fn only_mail(sink: &Sink, to: &str, after: usize) -> Mail {
    let mails = sink.to(to);
    assert_eq!(mails.len(), after + 1, "mails to {to}: {mails:#?}");
    let mail = mails[after].clone();
    assert_eq!(mail.from, SENDER);
    assert!(
        mail.header("From").is_some_and(|f| f.contains(SENDER)),
        "{mail:?}"
    );
    assert!(
        mail.header("To").is_some_and(|t| t.contains(to)),
        "{mail:?}"
    );
    assert!(!mail.subject().is_empty());
    let ct = mail
        .header("Content-Type")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(ct.starts_with("text/plain") && ct.contains("utf-8"), "{ct}");
    mail
}

#[test]
fn invite_mail_is_sent_and_its_token_accepts_the_invite() {
    let sink = Sink::start();
    let srv = server_with_relay(sink.port);
    let name = uniq("inv");
    let email = format!("{name}@example.com");
    let (status, data) = srv.post_json(
        "/user/invite",
        srv.admin(),
        &json!({"username": name, "email": email, "return_token": true}),
    );
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["email_sent"], true);
    let mail = only_mail(&sink, &email, 0);
    assert!(
        mail.subject().to_lowercase().contains("invit"),
        "{}",
        mail.subject()
    );
    let invite_url = data["invite_url"].as_str().unwrap();
    assert!(
        mail.text.split_whitespace().any(|w| w == invite_url),
        "{}",
        mail.text
    );
    let token = data["token"].as_str().unwrap();
    assert!(mail.tokens().iter().any(|t| t == token), "{}", mail.text);

    let (status, body) = srv.post_json(
        "/user/accept-invite",
        None,
        &json!({"token": mail.tokens()[0], "password": "chosen"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_verified"], true);
    let welcome = only_mail(&sink, &email, 1);
    assert!(
        welcome.subject().to_lowercase().contains("welcome"),
        "{}",
        welcome.subject()
    );
    assert_eq!(srv.login(&name, "chosen").0, 200);
}

#[test]
fn invite_without_send_email_sends_nothing() {
    let sink = Sink::start();
    let srv = server_with_relay(sink.port);
    let name = uniq("inv");
    let email = format!("{name}@example.com");
    let data = srv.invite(&name, &email, &[]);
    assert_eq!(data["email_sent"], false);
    assert!(sink.to(&email).is_empty());
}

#[test]
fn forgot_password_mail_resets_once() {
    let sink = Sink::start();
    let srv = server_with_relay(sink.port);
    let user = srv.make_user(&[]);
    let before = sink.to(&user.email).len();
    let (status, body) = srv.post_json(
        "/user/forgot-password",
        None,
        &json!({"email": user.email.to_uppercase()}),
    );
    assert_eq!((status, body), (202, Value::Null));
    let mail = only_mail(&sink, &user.email, before);
    assert!(
        mail.subject().to_lowercase().contains("password reset"),
        "{}",
        mail.subject()
    );
    let tokens = mail.tokens();
    assert_eq!(tokens.len(), 1, "{}", mail.text);
    // the reset token is no access token
    assert_eq!(srv.get("/whoami", Some(&tokens[0])).0, 401);
    let (status, body) = srv.post_json(
        "/user/reset-password",
        None,
        &json!({"token": tokens[0], "password": "after-reset"}),
    );
    assert_eq!((status, body), (200, Value::Null));
    let confirmation = only_mail(&sink, &user.email, before + 1);
    assert!(
        confirmation.subject().to_lowercase().contains("password"),
        "{}",
        confirmation.subject()
    );
    assert_eq!(srv.login(&user.username, "after-reset").0, 200);
    assert_eq!(srv.login(&user.username, &user.password).0, 400);
    let (status, body) = srv.post_json(
        "/user/reset-password",
        None,
        &json!({"token": tokens[0], "password": "again"}),
    );
    assert_detail(status, &body, 400, "RESET_PASSWORD_BAD_TOKEN");
    assert_eq!(
        sink.to(&user.email).len(),
        before + 2,
        "no mail for a refused reset"
    );
}

#[test]
fn forgot_password_for_unknown_or_inactive_accounts_sends_nothing() {
    let sink = Sink::start();
    let srv = server_with_relay(sink.port);
    let ghost = format!("{}@example.com", uniq("ghost"));
    let (status, body) = srv.post_json("/user/forgot-password", None, &json!({"email": ghost}));
    assert_eq!((status, body), (202, Value::Null));
    let user = srv.make_user(&[]);
    srv.patch_json(
        &format!("/user/{}", user.id),
        srv.admin(),
        &json!({"is_active": false}),
    );
    let before = sink.to(&user.email).len();
    let (status, body) =
        srv.post_json("/user/forgot-password", None, &json!({"email": user.email}));
    assert_eq!((status, body), (202, Value::Null));
    assert_eq!(sink.to(&user.email).len(), before);
    assert!(sink.to(&ghost).is_empty());
}

#[test]
fn verification_mail_verifies_once() {
    let sink = Sink::start();
    let srv = server_with_relay(sink.port);
    let (name, email, password) = register(&srv);
    let (status, body) = srv.login(&name, &password);
    assert_detail(status, &body, 400, "LOGIN_USER_NOT_VERIFIED");
    let (status, body) =
        srv.post_json("/user/request-verify-token", None, &json!({"email": email}));
    assert_eq!((status, body), (202, Value::Null));
    let mail = only_mail(&sink, &email, 0);
    assert!(
        mail.subject().to_lowercase().contains("verification"),
        "{}",
        mail.subject()
    );
    let token = mail.tokens().pop().expect("token in mail");
    let (status, body) = srv.post_json("/user/verify", None, &json!({"token": token}));
    assert_eq!(status, 200, "{body}");
    assert_user_shape(&body);
    assert_eq!(
        (&body["is_verified"], body["email"].as_str()),
        (&json!(true), Some(email.as_str()))
    );
    let confirmation = only_mail(&sink, &email, 1);
    assert!(
        confirmation.subject().to_lowercase().contains("verified"),
        "{}",
        confirmation.subject()
    );
    assert_eq!(srv.login(&name, &password).0, 200);
    let (status, body) = srv.post_json("/user/verify", None, &json!({"token": token}));
    assert_detail(status, &body, 400, "VERIFY_USER_ALREADY_VERIFIED");
    // a verified user gets no new verification mail
    let (status, _) = srv.post_json("/user/request-verify-token", None, &json!({"email": email}));
    assert_eq!(status, 202);
    assert_eq!(sink.to(&email).len(), 2);
}

#[test]
fn verification_token_dies_when_the_address_changes() {
    let sink = Sink::start();
    let srv = server_with_relay(sink.port);
    let (_, email, _) = register(&srv);
    srv.post_json("/user/request-verify-token", None, &json!({"email": email}));
    let token = only_mail(&sink, &email, 0).tokens().pop().expect("token");
    let id = srv
        .get(&format!("/users{}", qs(&[("email", &email)])), srv.admin())
        .1["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let moved = format!("{}@example.com", uniq("moved"));
    srv.patch_json(
        &format!("/user/{id}"),
        srv.admin(),
        &json!({"email": moved}),
    );
    let (status, body) = srv.post_json("/user/verify", None, &json!({"token": token}));
    assert_detail(status, &body, 400, "VERIFY_USER_BAD_TOKEN");
    assert_eq!(
        srv.get(&format!("/user/{id}"), srv.admin()).1["is_verified"],
        false
    );
}

#[test]
fn relay_failure_answers_500_or_email_sent_false() {
    // a port with nothing listening
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let srv = server_with_relay(port);
    let user = srv.make_user(&[]);
    let (status, body) =
        srv.post_json("/user/forgot-password", None, &json!({"email": user.email}));
    assert_detail(status, &body, 500, "Failed to send email");
    let (name, email, _) = register(&srv);
    let (status, body) =
        srv.post_json("/user/request-verify-token", None, &json!({"email": email}));
    assert_detail(status, &body, 500, "Failed to send email");
    // no mail is attempted for unknown addresses: still 202
    let ghost = format!("{}@example.com", uniq("ghost"));
    let (status, body) = srv.post_json("/user/forgot-password", None, &json!({"email": ghost}));
    assert_eq!((status, body), (202, Value::Null));
    // an invite still succeeds, with email_sent false
    let invited = uniq("inv");
    let (status, data) = srv.post_json(
        "/user/invite",
        srv.admin(),
        &json!({"username": invited, "email": format!("{invited}@example.com")}),
    );
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["email_sent"], false);
    assert_eq!(data["user"]["username"], invited.as_str());
    // the failed mails changed nothing
    assert_eq!(srv.login(&user.username, &user.password).0, 200);
    assert_eq!(
        srv.login(&name, "pw-original").1["detail"],
        "LOGIN_USER_NOT_VERIFIED"
    );
}
