//! `GET /events`: the stored event history, oldest first.

use chrono::DateTime;
use serde_json::Value;

use super::{IN_MEMORY_MAX_BYTES, STREAM_ABOVE};
use crate::app::App;
use crate::http::{ApiError, ApiResult, Req, Resp};
use crate::ids;
use crate::model::validate::parse_bool_word;
use crate::query::{Condition, Filter, Op, QValue, Schema, check_list_len};
use crate::store::events::{self, EventQuery};
use crate::store::nodes;
use crate::store::stream::Rows;
use crate::timestamp::{self, Timestamp};

/// Most events `recursive` may attach nodes to.
const MAX_RECURSIVE: u64 = 1000;

/// Parameters that match `data.<name>` exactly.
const DATA_FIELDS: &[&str] = &["kind", "state", "result", "op", "name", "group", "owner"];

const EVENT_SCHEMA: Schema = Schema {
    timestamps: &["timestamp"],
    ids: &["id"],
    ints: &["sequence_id"],
    forbidden: &[],
};

fn bad(detail: &str) -> ApiError {
    ApiError::bad_request(detail)
}

/// `from`: a 1.4 timestamp or Unix epoch seconds.
fn parse_from(text: &str) -> Option<Timestamp> {
    if let Some(ts) = timestamp::parse_query(text) {
        return Some(ts);
    }
    let secs: f64 = text.trim().parse().ok()?;
    if !secs.is_finite() || secs.abs() > 1e14 {
        return None;
    }
    // Round to the millisecond the store keeps: 1795935478.602 is
    // 1795935478.6019999… in binary and must not become .601.
    let millis = (secs * 1000.0).round() as i64;
    DateTime::from_timestamp_millis(millis)
        .map(|dt| dt.naive_utc())
        .filter(|ts| (timestamp::MIN..=timestamp::MAX).contains(ts))
}

fn eq(path: &[&str], value: &str) -> Condition {
    Condition {
        path: path.iter().map(|s| s.to_string()).collect(),
        op: Op::Eq,
        value: QValue::Str(value.to_string()),
    }
}

/// `GET /events` (public).
pub fn list(app: &App, req: &Req) -> ApiResult {
    let mut q = EventQuery::default();
    let param = |name: &str| req.query_param(name).filter(|v| !v.is_empty());
    let id = param("id");
    let ids = req.query_param("ids");
    if id.is_some() && ids.is_some() {
        return Err(bad("Provide either id or ids, not both"));
    }
    if let Some(id) = id {
        q.ids = vec![ids::parse_id(id).ok_or_else(|| bad("Invalid id format"))?];
    }
    if let Some(list) = ids {
        let parts: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(bad("ids must contain at least one id"));
        }
        check_list_len("ids", parts.len())?;
        q.ids = parts
            .iter()
            .map(|p| ids::parse_id(p).ok_or_else(|| bad("Invalid ids format")))
            .collect::<Result<_, _>>()?;
    }
    if param("node_id").is_some() && req.query_param("data.id").is_some() {
        return Err(bad("Provide either node_id or data.id, not both"));
    }
    q.node_id = param("node_id").map(str::to_string);
    q.channel = param("channel").map(str::to_string);
    if let Some(from) = param("from") {
        q.after = Some(
            parse_from(from)
                .ok_or_else(|| bad("Invalid 'from' parameter, must be an ISO 8601 datetime"))?,
        );
    }
    if let Some(limit) = param("limit") {
        q.limit = Some(limit.trim().parse::<u64>().map_err(|_| {
            ApiError::query_invalid("limit", "Input should be a valid integer", "int_parsing")
        })?);
    }
    let recursive = match param("recursive") {
        None => false,
        Some(v) => parse_bool_word(v).ok_or_else(|| {
            ApiError::query_invalid(
                "recursive",
                "Input should be a valid boolean",
                "bool_parsing",
            )
        })?,
    };
    if recursive && q.limit.is_none_or(|l| l > MAX_RECURSIVE) {
        return Err(bad("Recursive limit is too large, max is 1000"));
    }
    let special = [
        "id",
        "ids",
        "node_id",
        "channel",
        "from",
        "limit",
        "recursive",
        "path",
    ];
    let mut conditions = Vec::new();
    for name in DATA_FIELDS {
        if let Some(v) = param(name) {
            conditions.push(eq(&["data", name], v));
        }
    }
    if let Some(pattern) = param("path") {
        regex::Regex::new(pattern).map_err(|e| bad(&format!("Invalid regular expression: {e}")))?;
        conditions.push(Condition {
            path: vec!["data".into(), "path".into()],
            op: Op::Re,
            value: QValue::Str(pattern.to_string()),
        });
    }
    let rest: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| !special.contains(&k.as_str()) && !DATA_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut filter = Filter::parse(&rest, &[], &EVENT_SCHEMA)?;
    filter.conditions.extend(conditions);
    q.filter = filter;
    q.oldest = Some(timestamp::now() - timestamp::span_secs(app.config.event_history_ttl_secs));
    if !recursive {
        if q.limit.is_some_and(|l| l <= STREAM_ABOVE) {
            let items = app
                .store
                .read(|c| events::list_text(c, &q, IN_MEMORY_MAX_BYTES))?;
            if let Some(items) = items {
                return Ok(Resp::json_text(items));
            }
        }
        let rows: Rows = Box::new(move |c, emit| events::each_doc(c, &q, emit));
        let stream = app.store.stream_array("[".into(), "]".into(), rows)?;
        return Ok(Resp::json_stream(stream));
    }
    // recursive: each event with its node attached
    let mut found = app.store.read(|c| events::list(c, &q))?;
    app.store.read(|c| {
        for event in &mut found {
            let node_id = event["data"]["id"].as_str().and_then(ids::parse_id);
            if let Some(node) = node_id.map(|id| nodes::get(c, &id)).transpose()?.flatten() {
                event["node"] = node.to_json();
            }
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(Resp::json(&Value::Array(found)))
}
