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

/// A span of `secs` seconds as a date offset, saturating at about 146,000
/// years so that `now - span` stays inside chrono's date range (the
/// configured retention settings are bounded far below that).
pub fn span_secs(secs: u64) -> chrono::Duration {
    const MAX_SECS: i64 = i64::MAX / 2_000_000;
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(MAX_SECS).min(MAX_SECS))
}

/// Where the broker and the timer read the time: the system clock in the
/// server, a hand-moved one in tests.
pub trait Clock: Send + Sync {
    /// Wall-clock now, as stored and shown to clients.
    fn now(&self) -> Timestamp;
    /// Monotonic now, for keep-alives and idle times.
    fn instant(&self) -> std::time::Instant;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }

    fn instant(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// A clock that moves only when told to (for tests of time rules).
pub struct ManualClock {
    at: std::sync::Mutex<(Timestamp, std::time::Instant)>,
}

impl ManualClock {
    /// A clock standing at the current system time.
    pub fn new() -> ManualClock {
        ManualClock {
            at: std::sync::Mutex::new((now(), std::time::Instant::now())),
        }
    }

    /// Moves both readings forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        let step = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        at.0 += step;
        at.1 += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn instant(&self) -> std::time::Instant {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_saturate() {
        assert_eq!(span_secs(60), chrono::Duration::seconds(60));
        let huge = span_secs(u64::MAX);
        let _ = now() - huge; // no overflow panic
    }

    #[test]
    fn manual_clock_moves_both_readings() {
        let clock = ManualClock::new();
        let (wall, mono) = (clock.now(), clock.instant());
        clock.advance(std::time::Duration::from_secs(90));
        assert_eq!(clock.now() - wall, chrono::Duration::seconds(90));
        assert_eq!(clock.instant() - mono, std::time::Duration::from_secs(90));
    }

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
