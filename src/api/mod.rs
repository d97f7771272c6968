//! HTTP handlers, one module per resource, plus the helpers they share
//! (pagination, path ids, page envelopes).

pub mod account;
pub mod events;
pub mod groups;
pub mod kv;
pub mod nodes;
pub mod pages;
pub mod pubsub;
pub mod stats;
pub mod stream;
pub mod telemetry;
pub mod users;

use serde_json::{Value, json};

use crate::http::{ApiError, Req};
use crate::ids;
use crate::model::validate::ValidationItem;

/// Default page size of paginated lists.
pub const DEFAULT_LIMIT: u64 = 50;
/// Lists asking for more items than this (or for all of them) are
/// streamed from the stored documents in bounded memory instead of built in
/// memory.
pub const STREAM_ABOVE: u64 = 500;
/// A shorter list is built in memory only up to this many bytes; past it
/// (large documents), it is streamed too.
pub const IN_MEMORY_MAX_BYTES: usize = 1024 * 1024;

/// `limit` (≥ 1, default 50) and `offset` (≥ 0, default 0), or 422.
pub fn pagination(req: &Req) -> Result<(u64, u64), ApiError> {
    let mut problems = Vec::new();
    let mut read = |name: &str, default: u64, min: u64| match req.query_param(name) {
        None => default,
        Some(text) => match text.trim().parse::<i128>() {
            Ok(n) if n >= min as i128 => u64::try_from(n).unwrap_or(u64::MAX),
            Ok(_) => {
                problems.push(ValidationItem::new(
                    vec![json!("query"), json!(name)],
                    &format!("Input should be greater than or equal to {min}"),
                    "greater_than_equal",
                ));
                default
            }
            Err(_) => {
                problems.push(ValidationItem::new(
                    vec![json!("query"), json!(name)],
                    "Input should be a valid integer, unable to parse string as an integer",
                    "int_parsing",
                ));
                default
            }
        },
    };
    let limit = read("limit", DEFAULT_LIMIT, 1);
    let offset = read("offset", 0, 0);
    if problems.is_empty() {
        Ok((limit, offset))
    } else {
        Err(ApiError::validation(problems))
    }
}

/// The page envelope `{"items", "total", "limit", "offset"}`.
pub fn page(items: Vec<Value>, total: u64, limit: u64, offset: u64) -> Value {
    json!({"items": items, "total": total, "limit": limit, "offset": offset})
}

/// A path parameter that must be an id, or 400.
pub fn path_id(text: &str) -> Result<String, ApiError> {
    ids::parse_id(text).ok_or_else(|| ApiError::bad_request(&ids::invalid_id_detail(text)))
}
