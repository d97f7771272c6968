//! The contract's timestamps: naive UTC, millisecond precision, printed with
//! exactly six fractional digits.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound, Utc};

/// A point in time as the API stores it (UTC, milliseconds).
pub type Timestamp = NaiveDateTime;

/// Now, cut to milliseconds, so that what a write returns equals what a
/// later read returns.
pub fn now() -> Timestamp {
    Utc::now().naive_utc().trunc_subsecs(3)
}

/// `2024-01-12T12:49:33.996000`
pub fn format(ts: &Timestamp) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Parses a body or query timestamp: ISO 8601 with or without fraction, with
/// `Z`, an offset (converted to UTC) or none (taken as UTC). The value is
/// cut to milliseconds.
pub fn parse(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(aware) = DateTime::parse_from_rfc3339(text) {
        return Some(aware.naive_utc().trunc_subsecs(3));
    }
    for pattern in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, pattern) {
            return Some(naive.trunc_subsecs(3));
        }
    }
    // offsets without seconds-level colon forms, e.g. +0000
    for pattern in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(aware) = DateTime::parse_from_str(text, pattern) {
            return Some(aware.naive_utc().trunc_subsecs(3));
        }
    }
    None
}

/// Like [`parse`], but also accepts a date alone (midnight UTC), as query
/// strings may.
pub fn parse_query(text: &str) -> Option<Timestamp> {
    parse(text).or_else(|| {
        NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

/// The CloudEvent `time` form: aware UTC with microseconds and `+00:00`.
pub fn cloud_event_time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_six_digits() {
        let ts = parse("2024-01-12T12:49:33.996").expect("valid");
        assert_eq!(format(&ts), "2024-01-12T12:49:33.996000");
        let ts = parse("2030-01-01T10:00:00").expect("valid");
        assert_eq!(format(&ts), "2030-01-01T10:00:00.000000");
    }

    #[test]
    fn converts_offsets_and_cuts_to_millis() {
        let ts = parse("2024-01-12T14:49:33.123456+02:00").expect("valid");
        assert_eq!(format(&ts), "2024-01-12T12:49:33.123000");
        let ts = parse("2024-01-12T12:49:33Z").expect("valid");
        assert_eq!(format(&ts), "2024-01-12T12:49:33.000000");
    }

    #[test]
    fn date_only_is_for_queries() {
        assert!(parse("2024-01-12").is_none());
        let ts = parse_query("2024-01-12").expect("valid");
        assert_eq!(format(&ts), "2024-01-12T00:00:00.000000");
        assert!(parse_query("yesterday").is_none());
    }

    #[test]
    fn now_has_millisecond_precision() {
        let text = format(&now());
        assert!(text.ends_with("000"), "{text}");
    }
}
