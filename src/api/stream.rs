//! `GET /stream/{channel}`: a channel's stored events as Server-Sent Events
//! (contract 18.2). The handler decides who asks for what and where the
//! stream starts; the stream hub (`streams`) feeds it, and no worker is held
//! while it lasts.

use std::sync::Arc;

use crate::app::App;
use crate::auth;
use crate::http::{ApiError, Reply, Req};
use crate::model::validate::parse_bool_word;
use crate::query::{EVENT_DATA_SCHEMA, Filter, Matcher};
use crate::store::events;
use crate::streams::StreamSpec;

/// Query parameters that are not conditions on the event's data.
const RESERVED: &[&str] = &["promisc", "after"];

/// A resume position: a non-negative integer in decimal digits only (no
/// sign, no space); one beyond what an `i64` holds is the largest one.
pub fn parse_position(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<i64>().unwrap_or(i64::MAX))
}

/// Where a stream starts: after the position it resumes from, never after
/// `newest` (the highest sequence number committed when the request was
/// accepted), so a position from the future still gets every new event;
/// without one, at `newest`.
pub fn start_position(resume: Option<i64>, newest: i64) -> i64 {
    resume.map_or(newest, |n| n.min(newest))
}

/// `GET /stream/{channel}?promisc=&after=&<conditions>` (public; a token
/// applies the owner filter unless `promisc`).
pub fn open(app: &App, req: &Req, channel: &str) -> Result<Reply, ApiError> {
    let user = match req.header("authorization") {
        None => None,
        Some(_) => Some(auth::user(&app.keys, &app.users, req.bearer())?),
    };
    let promiscuous = match req.query_param("promisc") {
        None => false,
        Some(v) => parse_bool_word(v).ok_or_else(|| {
            ApiError::query_invalid("promisc", "Input should be a valid boolean", "bool_parsing")
        })?,
    };
    let resume = match (req.header("last-event-id"), req.query_param("after")) {
        (Some(text), _) => Some(parse_position(text).ok_or_else(|| {
            ApiError::bad_request("Invalid Last-Event-ID header, it must be a non-negative integer")
        })?),
        (None, Some(text)) => Some(parse_position(text).ok_or_else(|| {
            ApiError::bad_request("Invalid 'after' parameter, it must be a non-negative integer")
        })?),
        (None, None) => None,
    };
    let filter = Filter::parse(&req.query, RESERVED, &EVENT_DATA_SCHEMA)?;
    let newest = app.store.read(events::max_seq)?;
    let spec = StreamSpec {
        channel: channel.to_string(),
        after: start_position(resume, newest),
        owner: user.filter(|_| !promiscuous).map(|u| u.username),
        matcher: (!filter.conditions.is_empty()).then(|| Matcher::new(&filter)),
    };
    let hub = Arc::clone(&app.streams);
    Ok(Reply::Stream(Box::new(move |sink| hub.open(spec, sink))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_plain_non_negative_integers() {
        assert_eq!(parse_position("0"), Some(0));
        assert_eq!(parse_position("42"), Some(42));
        assert_eq!(parse_position("99999999999999999999999"), Some(i64::MAX));
        for bad in ["", "-1", "+1", "1.5", "abc", " 1", "1 ", "0x10"] {
            assert_eq!(parse_position(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_stream_never_starts_after_the_newest_event() {
        assert_eq!(start_position(None, 7), 7);
        assert_eq!(start_position(Some(3), 7), 3);
        assert_eq!(start_position(Some(70), 7), 7);
    }
}
