//! Figures about the running server: `GET /stats/server` (JSON, for the
//! console's stats page) and `GET /metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::app::App;
use crate::auth;
use crate::http::{ApiResult, Req, Resp};
use crate::store::figures::{self, Figures};
use crate::timestamp;

/// Minutes of event history `GET /stats/server` counts, before this one.
pub const RATE_MINUTES: u32 = 60;

/// At most this many subscriptions are listed with their backlog (the
/// oldest ones): with each backlog counted up to [`figures::MAX_BEHIND`],
/// the answer reads at most 200,000 index entries.
pub const MAX_BACKLOG_ROWS: usize = 200;

/// Bytes of the write-ahead log beside the database file (0 when absent).
fn wal_bytes(app: &App) -> u64 {
    let mut wal = app.store.path().as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

fn nodes_object(figures: &Figures) -> Value {
    figures
        .nodes_by_kind
        .iter()
        .map(|(kind, n)| (kind.clone(), json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `GET /stats/server` (public; an admin's token adds each subscription's
/// backlog): database size, nodes by kind, events per minute, streams,
/// subscriptions and queues.
pub fn server(app: &App, req: &Req) -> ApiResult {
    let admin = match req.header("authorization") {
        None => false,
        Some(_) => auth::user(&app.keys, &app.users, req.bearer())?.administers(),
    };
    let now = timestamp::now();
    let (figures, per_minute) = app.store.read(|c| {
        Ok::<_, crate::store::StoreError>((
            figures::read(c)?,
            figures::events_per_minute(c, &now, RATE_MINUTES)?,
        ))
    })?;
    let first_minute = timestamp::shift(
        timestamp::floor_minute(&now),
        chrono::Duration::minutes(-i64::from(RATE_MINUTES)),
    );
    let mut answer = json!({
        "time": timestamp::format(&now),
        "database": {
            "bytes": figures.database_bytes,
            "free_bytes": figures.free_bytes,
            "wal_bytes": wal_bytes(app),
        },
        "nodes": nodes_object(&figures),
        "nodes_total": figures.nodes_by_kind.iter().map(|(_, n)| n).sum::<u64>(),
        "events": {
            "last_sequence_id": figures.last_sequence,
            "per_minute_since": timestamp::format(&first_minute),
            "per_minute": per_minute,
        },
        "requests": app.requests.load(Ordering::Relaxed),
        "streams": app.streams.open_streams(),
        "subscriptions": app.broker.subscription_count(),
        "queues": figures.queues.iter()
            .map(|(list, n)| json!({"list": list, "length": n}))
            .collect::<Vec<_>>(),
    });
    if admin {
        let subs = app.broker.subscriptions();
        let shown = &subs[..subs.len().min(MAX_BACKLOG_ROWS)];
        let behind = app.store.read(|c| {
            shown
                .iter()
                .map(|s| figures::behind(c, &s.channel, s.position()))
                .collect::<Result<Vec<u64>, _>>()
        })?;
        let backlog = shown
            .iter()
            .zip(behind)
            .map(|(s, behind)| {
                json!({
                    "id": s.id, "channel": s.channel, "user": s.user,
                    "last_poll": s.last_poll.as_ref().map(timestamp::format),
                    "behind": behind,
                })
            })
            .collect();
        answer["subscription_backlog"] = Value::Array(backlog);
    }
    Ok(Resp::json(&answer))
}

/// A Prometheus label value: `\`, `"` and new lines escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`: Prometheus text.
pub fn metrics(app: &App, _req: &Req) -> ApiResult {
    let n = app.requests.load(Ordering::Relaxed);
    let figures = app.store.read(figures::read)?;
    let mut text = format!(
        "# HELP http_requests_total Total number of HTTP requests handled\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{{instance=\"api\"}} {n}\n"
    );
    let mut gauge = |name: &str, help: &str, lines: Vec<(String, u64)>| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in lines {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    gauge(
        "kci_database_bytes",
        "Bytes of the database file and of its write-ahead log",
        vec![
            ("{file=\"main\"}".into(), figures.database_bytes),
            ("{file=\"wal\"}".into(), wal_bytes(app)),
        ],
    );
    gauge(
        "kci_nodes",
        "Nodes stored, by kind",
        figures
            .nodes_by_kind
            .iter()
            .map(|(kind, n)| (format!("{{kind=\"{}\"}}", label(kind)), *n))
            .collect(),
    );
    gauge(
        "kci_event_sequence",
        "Highest event sequence number stored",
        vec![(String::new(), figures.last_sequence.max(0) as u64)],
    );
    gauge(
        "kci_queue_messages",
        "Messages waiting in each push list (the longest lists)",
        figures
            .queues
            .iter()
            .map(|(list, n)| (format!("{{list=\"{}\"}}", label(list)), *n))
            .collect(),
    );
    gauge(
        "kci_subscriptions",
        "Live subscriptions",
        vec![(String::new(), app.broker.subscription_count() as u64)],
    );
    gauge(
        "kci_streams_open",
        "Open event streams",
        vec![(String::new(), app.streams.open_streams() as u64)],
    );
    Ok(Resp::text(200, &text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label("plain"), "plain");
    }
}
