//! The contract's timestamps: naive UTC, millisecond precision, years 1 to
//! 9999, printed with a four-digit year and exactly six fractional digits
//! (so that their text sorts in time order).

use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound, Timelike, Utc};

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

/// Whether `text` is exactly what [`format`] writes for a timestamp in
/// range (`YYYY-MM-DDTHH:MM:SS.ffffff`): a stored value in that form is
/// answered as it is, any other is read with [`parse_stored`] first.
pub fn is_stored_form(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 26
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// The earliest timestamp the API accepts or computes, `0001-01-01T00:00:00`
/// (year 1, the first that Python's `datetime` and pydantic read).
pub const MIN: Timestamp = at(1, 1, 1, 0, 0, 0, 0);

/// The latest timestamp the API accepts or computes,
/// `9999-12-31T23:59:59.999` (the last millisecond of year 9999).
pub const MAX: Timestamp = at(9999, 12, 31, 23, 59, 59, 999);

const fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> Timestamp {
    NaiveDate::from_ymd_opt(y, mo, d)
        .expect("a valid date")
        .and_hms_milli_opt(h, mi, s, ms)
        .expect("a valid time")
}

/// Parses a body or query timestamp: ISO 8601 with or without fraction, with
/// `Z`, an offset (converted to UTC) or none (taken as UTC). The value is
/// cut to milliseconds. Refused (`None`): a year not written with exactly
/// four digits (no sign), more than six fractional digits, a leap second,
/// and any value that is outside [`MIN`]..=[`MAX`] once in UTC. Within
/// that range every value formats with a four-digit year, so stored text
/// sorts in time order.
pub fn parse(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if !plain_digits(text) {
        return None;
    }
    parse_any(text).and_then(in_range)
}

/// Like [`parse`], but also accepts a date alone (midnight UTC), as query
/// strings may.
pub fn parse_query(text: &str) -> Option<Timestamp> {
    parse(text).or_else(|| {
        let text = text.trim();
        if !plain_digits(text) {
            return None;
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(in_range)
    })
}

/// Reads a timestamp the server itself wrote (a stored node document).
/// Unlike [`parse`] it refuses no year: a document written before the range
/// was enforced may hold one outside it (`+10000-…`, `-0001-…`), and such a
/// value reads as the nearest end of the range, so that the node stays
/// readable and is written back in range the next time it changes.
pub fn parse_stored(text: &str) -> Option<Timestamp> {
    parse_any(text.trim()).map(|t| t.clamp(MIN, MAX))
}

/// `at + span`, kept within [`MIN`]..=[`MAX`] (saturating, never panicking).
pub fn shift(at: Timestamp, span: chrono::Duration) -> Timestamp {
    match at.checked_add_signed(span) {
        Some(t) => t.clamp(MIN, MAX),
        None if span < chrono::Duration::zero() => MIN,
        None => MAX,
    }
}

/// The start of `at`'s minute.
pub fn floor_minute(at: &Timestamp) -> Timestamp {
    at.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(*at)
}

/// Whether `text` writes its year with exactly four digits and no sign, and
/// its seconds with at most six fractional digits (chrono alone would read
/// `+10000-…`, `-0001-…` and nine digits).
fn plain_digits(text: &str) -> bool {
    let bytes = text.as_bytes();
    let year = bytes.len() > 4 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-';
    let fraction = match text.find('.') {
        None => true,
        Some(dot) => {
            text[dot + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count()
                <= 6
        }
    };
    year && fraction
}

/// `t` if it lies within [`MIN`]..=[`MAX`] and is no leap second (which
/// Python cannot read either).
fn in_range(t: Timestamp) -> Option<Timestamp> {
    (MIN..=MAX)
        .contains(&t)
        .then_some(t)
        .filter(|t| t.nanosecond() < 1_000_000_000)
}

/// Any form [`parse`] knows, at any year chrono reads, cut to milliseconds.
fn parse_any(text: &str) -> Option<Timestamp> {
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

/// The CloudEvent `time` form: aware UTC with microseconds and `+00:00`.
pub fn cloud_event_time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// A span of `secs` seconds as a date offset, saturating at the span from
/// [`MIN`] to 1970-01-01 (about 1969 years) so that `now - span` stays
/// within the API's range for any clock past 1970 (the configured retention
/// settings are bounded far below that).
pub fn span_secs(secs: u64) -> chrono::Duration {
    const MAX_SECS: i64 = 62_135_596_800;
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

    #[test]
    fn the_stored_form_is_exactly_what_format_writes() {
        assert!(is_stored_form(&format(&MIN)));
        assert!(is_stored_form(&format(&MAX)));
        assert!(is_stored_form("2024-02-29T12:00:00.123456"));
        for other in [
            "-0001-01-01T00:00:00.000000",
            "+10000-01-01T00:00:00.000000",
            "2024-02-29T12:00:00.1234567",
            "2024-02-29T12:00:00",
            "2024-02-29 12:00:00.123456",
            "",
        ] {
            assert!(!is_stored_form(other), "{other}");
        }
    }

    use super::*;

    #[test]
    fn spans_saturate() {
        assert_eq!(span_secs(60), chrono::Duration::seconds(60));
        let huge = span_secs(u64::MAX);
        assert!(now() - huge >= MIN);
        assert_eq!(DateTime::UNIX_EPOCH.naive_utc() - huge, MIN);
    }

    fn refused(text: &str) {
        assert_eq!(parse(text), None, "{text}");
        assert_eq!(parse_query(text), None, "{text}");
    }

    fn accepted(text: &str, want: &str) {
        assert_eq!(
            parse(text).as_ref().map(format).as_deref(),
            Some(want),
            "{text}"
        );
        assert_eq!(
            parse_query(text).as_ref().map(format).as_deref(),
            Some(want),
            "{text}"
        );
    }

    #[test]
    fn years_beyond_four_digits_are_refused() {
        refused("+10000-01-01T00:00:00");
        refused("10000-01-01T00:00:00");
        refused("+10000-01-01T00:00:00Z");
        refused("10000-01-01T00:00:00+00:00");
        refused("+10000-01-01");
        refused("10000-01-01");
    }

    #[test]
    fn year_zero_and_signed_years_are_refused() {
        refused("0000-01-01T00:00:00");
        refused("0000-01-01T00:00:00Z");
        refused("0000-01-01");
        refused("-0001-01-01T00:00:00");
        refused("-0001-01-01T00:00:00Z");
        refused("-0001-01-01");
        refused("+2024-01-01T00:00:00");
        refused("+2024-01-01");
        refused("-2024-01-01T00:00:00");
        refused("24-01-01T00:00:00");
    }

    #[test]
    fn more_than_six_fraction_digits_are_refused() {
        refused("2024-01-01T00:00:00.1234567");
        refused("2024-01-01T00:00:00.1234567Z");
        refused("2024-01-01T00:00:00.1234567+02:00");
        refused("2024-01-01 00:00:00.123456789");
        accepted("2024-01-01T00:00:00.123456", "2024-01-01T00:00:00.123000");
        accepted("2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00.123000");
    }

    #[test]
    fn offsets_must_land_in_range() {
        refused("0001-01-01T00:00:00+01:00");
        refused("0001-01-01T00:59:59.999+01:00");
        refused("9999-12-31T23:00:00-01:00");
        refused("9999-12-31T23:59:59.999-00:01");
        accepted("0001-01-01T01:00:00+01:00", "0001-01-01T00:00:00.000000");
        accepted(
            "9999-12-31T22:59:59.999-01:00",
            "9999-12-31T23:59:59.999000",
        );
        accepted("0001-01-01T00:00:00-01:00", "0001-01-01T01:00:00.000000");
    }

    #[test]
    fn range_edges_are_accepted() {
        accepted("0001-01-01T00:00:00", "0001-01-01T00:00:00.000000");
        accepted("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000");
        accepted("9999-12-31T23:59:59.999999", "9999-12-31T23:59:59.999000");
        accepted(
            "9999-12-31T23:59:59.999999+00:00",
            "9999-12-31T23:59:59.999000",
        );
        assert_eq!(parse("0001-01-01T00:00:00"), Some(MIN));
        assert_eq!(parse("9999-12-31T23:59:59.999999"), Some(MAX));
        assert_eq!(
            format(&parse_query("0001-01-01").expect("valid")),
            "0001-01-01T00:00:00.000000"
        );
        assert_eq!(
            format(&parse_query("9999-12-31").expect("valid")),
            "9999-12-31T00:00:00.000000"
        );
    }

    #[test]
    fn aware_forms_in_range_are_unchanged() {
        for (given, want) in [
            ("2024-01-12T12:49:33Z", "2024-01-12T12:49:33.000000"),
            ("2024-01-12T12:49:33.5Z", "2024-01-12T12:49:33.500000"),
            ("2024-01-12T14:49:33+02:00", "2024-01-12T12:49:33.000000"),
            (
                "2024-01-12T14:49:33.123456+02:00",
                "2024-01-12T12:49:33.123000",
            ),
            ("2024-01-12T11:19:33-01:30", "2024-01-12T12:49:33.000000"),
            ("2024-01-12T12:49:33+0000", "2024-01-12T12:49:33.000000"),
            ("2024-01-12T14:49:33.250+0200", "2024-01-12T12:49:33.250000"),
            ("2024-01-12 12:49:33.996", "2024-01-12T12:49:33.996000"),
            ("2024-01-12T12:49", "2024-01-12T12:49:00.000000"),
            (" 2024-01-12T12:49:33 ", "2024-01-12T12:49:33.000000"),
        ] {
            accepted(given, want);
        }
    }

    #[test]
    fn leap_seconds_are_refused() {
        refused("2016-12-31T23:59:60Z");
        refused("2016-12-31T23:59:60.5");
    }

    #[test]
    fn stored_text_sorts_in_time_order() {
        let texts = [
            "0001-01-01T00:00:00",
            "0001-01-01T00:00:00.001",
            "0009-12-31T23:59:59.999",
            "0099-06-01T00:00:00",
            "0999-01-01T00:00:00",
            "1970-01-01T00:00:00",
            "2024-01-12T12:49:33.996",
            "2024-01-12T12:49:34",
            "9999-12-31T23:59:59.999999",
        ];
        let stamps: Vec<Timestamp> = texts.iter().filter_map(|t| parse(t)).collect();
        assert_eq!(stamps.len(), texts.len());
        let formatted: Vec<String> = stamps.iter().map(format).collect();
        for text in &formatted {
            assert_eq!(text.len(), 26, "{text}");
        }
        let mut by_text = formatted.clone();
        by_text.sort();
        assert_eq!(by_text, formatted, "text order is time order");
        for pair in stamps.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        assert_eq!(format(&MIN), "0001-01-01T00:00:00.000000");
        assert_eq!(format(&MAX), "9999-12-31T23:59:59.999000");
    }

    #[test]
    fn stored_text_out_of_range_reads_clamped() {
        assert_eq!(parse_stored("+10000-01-01T00:00:00.000000"), Some(MAX));
        assert_eq!(parse_stored("-0001-01-01T00:00:00.000000"), Some(MIN));
        assert_eq!(parse_stored("0000-06-01T00:00:00.000000"), Some(MIN));
        assert_eq!(
            parse_stored("2024-01-12T12:49:33.996000"),
            parse("2024-01-12T12:49:33.996")
        );
        assert_eq!(parse_stored("yesterday"), None);
    }

    #[test]
    fn shifts_stay_in_range() {
        let t = parse("2024-01-01T00:00:00").expect("valid");
        let hours = chrono::Duration::hours(6);
        assert_eq!(format(&shift(t, hours)), "2024-01-01T06:00:00.000000");
        assert_eq!(shift(MAX, hours), MAX);
        assert_eq!(shift(MIN, -hours), MIN);
        assert_eq!(shift(t, chrono::Duration::MAX), MAX);
        assert_eq!(shift(t, chrono::Duration::MIN), MIN);
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
