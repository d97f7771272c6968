//! The read side of telemetry (API.md 12): the `since`/`until` and
//! `is_infra_error` parameters of `GET /telemetry`, the parameters of
//! `/telemetry/stats` and `/telemetry/anomalies` (window, threshold,
//! min_total, scope), and the rules that turn the store's grouped counts
//! into answer rows (rates, thresholds, severity order). Pure: `now` is a
//! parameter.

use std::cmp::Ordering;

use chrono::Duration;
use serde_json::{Map, Value, json};

use crate::model::validate::ValidationItem;
use crate::timestamp::{self, Timestamp};

/// Most rows each list of an anomalies answer holds, the most severe
/// first (a dashboard shows a few dozen).
pub const MAX_ANOMALY_ROWS: usize = 10_000;

/// The fields `/telemetry/stats` may group by; `lab` is the runtime.
pub const GROUP_FIELDS: [&str; 10] = [
    "runtime",
    "lab",
    "device_type",
    "device_id",
    "job_name",
    "tree",
    "branch",
    "arch",
    "kind",
    "error_type",
];

/// The exact-match filters of `/telemetry/stats` (besides `lab`).
pub const STATS_FILTERS: [&str; 8] = [
    "kind",
    "runtime",
    "device_type",
    "device_id",
    "job_name",
    "tree",
    "branch",
    "arch",
];

/// The anomaly windows and their length in hours.
pub const WINDOWS: [(&str, i64); 6] = [
    ("1h", 1),
    ("3h", 3),
    ("6h", 6),
    ("12h", 12),
    ("24h", 24),
    ("48h", 48),
];

/// Why query parameters are refused.
#[derive(Debug, PartialEq)]
pub enum ParamError {
    /// A 400 with this detail.
    Bad(String),
    /// A 422: FastAPI's items for the query parameters that failed.
    Invalid(Vec<ValidationItem>),
}

/// The last value of a query parameter (the contract: the last one wins).
fn last<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Like [`last`], an empty value counting as absent (as upstream's
/// `if value:`).
fn given<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    last(params, name).filter(|v| !v.is_empty())
}

/// The inclusive `since` / `until` bounds on `ts`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimeRange {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl TimeRange {
    /// `since` and `until` (API.md 1.4 query forms; empty = absent), or 400.
    pub fn parse(params: &[(String, String)]) -> Result<TimeRange, ParamError> {
        let bound = |name: &str| -> Result<Option<Timestamp>, ParamError> {
            given(params, name)
                .map(|text| {
                    timestamp::parse_query(text).ok_or_else(|| {
                        ParamError::Bad(format!(
                            "Invalid '{name}' parameter, must be an ISO 8601 datetime"
                        ))
                    })
                })
                .transpose()
        };
        Ok(TimeRange {
            since: bound("since")?,
            until: bound("until")?,
        })
    }

    /// The range as visible while events older than `oldest` are expired:
    /// the lower bound is the later of `since` and `oldest`.
    pub fn kept(self, oldest: Timestamp) -> TimeRange {
        TimeRange {
            since: Some(self.since.map_or(oldest, |s| s.max(oldest))),
            until: self.until,
        }
    }
}

/// `is_infra_error` of `GET /telemetry`: `true` or `false` in any case, or
/// 400 (also for an empty value, as upstream).
pub fn infra_flag(params: &[(String, String)]) -> Result<Option<bool>, ParamError> {
    match last(params, "is_infra_error").map(str::to_ascii_lowercase) {
        None => Ok(None),
        Some(v) if v == "true" => Ok(Some(true)),
        Some(v) if v == "false" => Ok(Some(false)),
        Some(_) => Err(ParamError::Bad(
            "Bad is_infra_error value, use 'true' or 'false'".into(),
        )),
    }
}

/// A field of a stats group: its name in the answer and the column it
/// reads (one of the fixed column names, never client text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupField {
    pub name: &'static str,
    pub column: &'static str,
}

/// What `/telemetry/stats` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsQuery {
    /// Distinct fields, in the order given.
    pub group_by: Vec<GroupField>,
    /// Exact matches: (column, value).
    pub filters: Vec<(&'static str, String)>,
    pub range: TimeRange,
}

impl StatsQuery {
    /// The parameters of `/telemetry/stats`, or 400; other parameters are
    /// ignored, as upstream.
    pub fn parse(params: &[(String, String)]) -> Result<StatsQuery, ParamError> {
        let text = given(params, "group_by")
            .ok_or_else(|| ParamError::Bad("'group_by' parameter is required".into()))?;
        let mut group_by: Vec<GroupField> = Vec::new();
        let mut invalid: Vec<&str> = Vec::new();
        for name in text.split(',').map(str::trim) {
            match GROUP_FIELDS.iter().find(|f| **f == name) {
                Some(&name) if !group_by.iter().any(|g| g.name == name) => {
                    let column = if name == "lab" { "runtime" } else { name };
                    group_by.push(GroupField { name, column });
                }
                Some(_) => {}
                None if !invalid.contains(&name) => invalid.push(name),
                None => {}
            }
        }
        if !invalid.is_empty() {
            return Err(ParamError::Bad(format!(
                "Invalid group_by fields: {} (allowed: {})",
                invalid
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                GROUP_FIELDS.join(", ")
            )));
        }
        let mut filters: Vec<(&'static str, String)> = STATS_FILTERS
            .iter()
            .filter_map(|&name| given(params, name).map(|v| (name, v.to_string())))
            .collect();
        if let Some(lab) = given(params, "lab") {
            match filters.iter().find(|(name, _)| *name == "runtime") {
                Some((_, runtime)) if runtime != lab => {
                    return Err(ParamError::Bad(
                        "'lab' and 'runtime' must match when both are provided".into(),
                    ));
                }
                Some(_) => {}
                None => filters.push(("runtime", lab.to_string())),
            }
        }
        Ok(StatsQuery {
            group_by,
            filters,
            range: TimeRange::parse(params)?,
        })
    }
}

/// How `/telemetry/anomalies` groups job and test results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// By (runtime, device_type), job and test results (the default).
    DeviceType,
    /// By (runtime, device_type, device_id), job results with a device.
    Device,
}

impl Scope {
    /// The scope as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::DeviceType => "device_type",
            Scope::Device => "device",
        }
    }
}

/// What `/telemetry/anomalies` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyQuery {
    /// The window as given (`6h`).
    pub window: &'static str,
    pub threshold: f64,
    pub min_total: i64,
    pub scope: Scope,
    /// `now` − window: only events with `ts` ≥ this count.
    pub since: Timestamp,
}

fn query_item(name: &str, msg: &str, kind: &str) -> ValidationItem {
    ValidationItem::new(vec![json!("query"), json!(name)], msg, kind)
}

impl AnomalyQuery {
    /// The parameters at `now`: every 422 problem (threshold, min_total,
    /// scope) first, as FastAPI checks them before the handler, then the
    /// window (400).
    pub fn parse(params: &[(String, String)], now: Timestamp) -> Result<AnomalyQuery, ParamError> {
        let mut problems = Vec::new();
        let threshold = match last(params, "threshold") {
            None => 0.5,
            Some(text) => match text.trim().parse::<f64>() {
                Ok(t) if t.is_nan() => {
                    problems.push(query_item(
                        "threshold",
                        "Input should be a finite number",
                        "finite_number",
                    ));
                    0.5
                }
                Ok(t) if t < 0.0 => {
                    problems.push(query_item(
                        "threshold",
                        "Input should be greater than or equal to 0",
                        "greater_than_equal",
                    ));
                    0.5
                }
                Ok(t) if t > 1.0 => {
                    problems.push(query_item(
                        "threshold",
                        "Input should be less than or equal to 1",
                        "less_than_equal",
                    ));
                    0.5
                }
                Ok(t) => t,
                Err(_) => {
                    problems.push(query_item(
                        "threshold",
                        "Input should be a valid number, unable to parse string as a number",
                        "float_parsing",
                    ));
                    0.5
                }
            },
        };
        let min_total = match last(params, "min_total") {
            None => 3,
            Some(text) => match text.trim().parse::<i128>() {
                Ok(n) if n >= 1 => i64::try_from(n).unwrap_or(i64::MAX),
                Ok(_) => {
                    problems.push(query_item(
                        "min_total",
                        "Input should be greater than or equal to 1",
                        "greater_than_equal",
                    ));
                    3
                }
                Err(_) => {
                    problems.push(query_item(
                        "min_total",
                        "Input should be a valid integer, unable to parse string as an integer",
                        "int_parsing",
                    ));
                    3
                }
            },
        };
        let scope = match last(params, "scope") {
            None | Some("device_type") => Scope::DeviceType,
            Some("device") => Scope::Device,
            Some(_) => {
                problems.push(query_item(
                    "scope",
                    "String should match pattern '^(device_type|device)$'",
                    "string_pattern_mismatch",
                ));
                Scope::DeviceType
            }
        };
        if !problems.is_empty() {
            return Err(ParamError::Invalid(problems));
        }
        let asked = last(params, "window").unwrap_or("6h");
        let (window, hours) = WINDOWS
            .iter()
            .find(|(w, _)| *w == asked)
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = WINDOWS.iter().map(|(w, _)| *w).collect();
                ParamError::Bad(format!(
                    "Invalid window '{asked}'. Use: {}",
                    names.join(", ")
                ))
            })?;
        Ok(AnomalyQuery {
            window,
            threshold,
            min_total,
            scope,
            since: timestamp::shift(now, -Duration::hours(hours)),
        })
    }
}

/// The counts of one group of events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub pass: u64,
    pub fail: u64,
    pub incomplete: u64,
    pub skip: u64,
    /// Events with `is_infra_error` true.
    pub infra_error: u64,
}

impl Counts {
    /// infra_error / total.
    pub fn infra_rate(&self) -> f64 {
        self.rate(self.infra_error)
    }

    /// (fail + incomplete) / total.
    pub fn fail_rate(&self) -> f64 {
        self.rate(self.fail + self.incomplete)
    }

    fn rate(&self, n: u64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            n as f64 / self.total as f64
        }
    }

    fn put(&self, row: &mut Map<String, Value>) {
        for (key, n) in [
            ("total", self.total),
            ("pass", self.pass),
            ("fail", self.fail),
            ("incomplete", self.incomplete),
            ("skip", self.skip),
            ("infra_error", self.infra_error),
        ] {
            row.insert(key.into(), json!(n));
        }
    }
}

fn text(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::String)
}

/// One row of a stats answer: the group's values under the `group_by`
/// names, in their order, then its counts.
pub fn stats_row(group_by: &[GroupField], values: &[Option<String>], counts: &Counts) -> Value {
    let mut row = Map::new();
    for (field, value) in group_by.iter().zip(values) {
        row.insert(field.name.into(), text(value));
    }
    counts.put(&mut row);
    Value::Object(row)
}

/// Python's `round(x, 3)`: the exact binary value, ties to even.
pub fn round3(x: f64) -> f64 {
    format!("{x:.3}").parse().unwrap_or(x)
}

/// A (runtime, device_type[, device_id]) group of job and test results in
/// an anomaly window, with its newest event.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultGroup {
    pub runtime: String,
    pub device_type: Option<String>,
    /// Set with [`Scope::Device`] only.
    pub device_id: Option<String>,
    pub counts: Counts,
    /// The newest `ts`.
    pub last_seen: Timestamp,
    /// `error_type` and `error_msg` of the newest event.
    pub latest_error_type: Option<String>,
    pub latest_error_msg: Option<String>,
}

impl ResultGroup {
    /// Whether the group is an anomaly: enough events, and its infra or
    /// failure rate at or over the threshold (exact rates, as upstream).
    pub fn is_anomaly(&self, q: &AnomalyQuery) -> bool {
        let c = &self.counts;
        i64::try_from(c.total).unwrap_or(i64::MAX) >= q.min_total
            && (c.infra_rate() >= q.threshold || c.fail_rate() >= q.threshold)
    }

    /// Most severe first: infra rate, then failure rate, descending; equal
    /// rates by the group's values, ascending.
    fn severity(a: &ResultGroup, b: &ResultGroup) -> Ordering {
        let (ca, cb) = (&a.counts, &b.counts);
        cb.infra_rate()
            .total_cmp(&ca.infra_rate())
            .then(cb.fail_rate().total_cmp(&ca.fail_rate()))
            .then_with(|| a.runtime.cmp(&b.runtime))
            .then_with(|| a.device_type.cmp(&b.device_type))
            .then_with(|| a.device_id.cmp(&b.device_id))
    }

    /// The answer row, keys in the contract's order.
    pub fn to_row(&self, scope: Scope) -> Value {
        let c = &self.counts;
        let mut row = Map::new();
        row.insert("runtime".into(), json!(self.runtime));
        row.insert("lab".into(), json!(self.runtime));
        row.insert("device_type".into(), text(&self.device_type));
        if scope == Scope::Device {
            row.insert("device_id".into(), text(&self.device_id));
        }
        c.put(&mut row);
        row.insert("infra_rate".into(), json!(round3(c.infra_rate())));
        row.insert("fail_rate".into(), json!(round3(c.fail_rate())));
        row.insert(
            "constant_failure".into(),
            json!(c.pass == 0 && c.fail + c.incomplete == c.total),
        );
        row.insert(
            "constant_infra_failure".into(),
            json!(c.infra_error == c.total),
        );
        row.insert(
            "last_seen".into(),
            json!(timestamp::format(&self.last_seen)),
        );
        row.insert("latest_error_type".into(), text(&self.latest_error_type));
        row.insert("latest_error_msg".into(), text(&self.latest_error_msg));
        Value::Object(row)
    }
}

/// Collects the `result_anomalies` of a window from groups offered one by
/// one: the anomalies among them, most severe first, at most
/// [`MAX_ANOMALY_ROWS`]. Memory stays bounded by that limit however many
/// groups are offered.
pub struct Ranking<'a> {
    q: &'a AnomalyQuery,
    kept: Vec<ResultGroup>,
}

impl<'a> Ranking<'a> {
    /// An empty ranking for `q`.
    pub fn new(q: &'a AnomalyQuery) -> Ranking<'a> {
        Ranking {
            q,
            kept: Vec::new(),
        }
    }

    /// Keeps `group` if it is an anomaly and among the most severe.
    pub fn offer(&mut self, group: ResultGroup) {
        if group.is_anomaly(self.q) {
            self.kept.push(group);
            if self.kept.len() >= 2 * MAX_ANOMALY_ROWS {
                self.cut();
            }
        }
    }

    fn cut(&mut self) {
        self.kept.sort_by(ResultGroup::severity);
        self.kept.truncate(MAX_ANOMALY_ROWS);
    }

    /// The answer rows, most severe first.
    pub fn rows(mut self) -> Vec<Value> {
        self.cut();
        self.kept.iter().map(|g| g.to_row(self.q.scope)).collect()
    }
}

/// The `result_anomalies` rows of `groups` (see [`Ranking`]).
pub fn result_anomalies(
    groups: impl IntoIterator<Item = ResultGroup>,
    q: &AnomalyQuery,
) -> Vec<Value> {
    let mut ranking = Ranking::new(q);
    groups.into_iter().for_each(|g| ranking.offer(g));
    ranking.rows()
}

/// A (runtime, error_type) group of runtime errors and job skips.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorGroup {
    pub runtime: String,
    pub error_type: Option<String>,
    pub count: u64,
}

impl ErrorGroup {
    /// The answer row `{runtime, error_type, count}`.
    pub fn to_row(&self) -> Value {
        json!({"runtime": self.runtime, "error_type": self.error_type, "count": self.count})
    }
}

/// The whole anomalies answer, keys in the contract's order; `since` is
/// aware UTC with microseconds.
pub fn anomalies_answer(q: &AnomalyQuery, results: Vec<Value>, errors: &[ErrorGroup]) -> Value {
    json!({
        "window": q.window,
        "threshold": q.threshold,
        "min_total": q.min_total,
        "scope": q.scope.as_str(),
        "since": timestamp::cloud_event_time(&q.since.and_utc()),
        "result_anomalies": results,
        "error_anomalies": errors.iter().map(ErrorGroup::to_row).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn t(text: &str) -> Timestamp {
        timestamp::parse(text).expect("valid")
    }

    fn bad(result: Result<impl std::fmt::Debug, ParamError>) -> String {
        match result {
            Err(ParamError::Bad(detail)) => detail,
            other => panic!("not a 400: {other:?}"),
        }
    }

    fn invalid(result: Result<AnomalyQuery, ParamError>) -> Vec<(String, String)> {
        match result {
            Err(ParamError::Invalid(items)) => items
                .iter()
                .map(|i| (i.loc[1].as_str().unwrap_or("").to_string(), i.kind.clone()))
                .collect(),
            other => panic!("not a 422: {other:?}"),
        }
    }

    #[test]
    fn time_range_and_retention() {
        let range =
            TimeRange::parse(&params(&[("since", "2031-01-02"), ("until", "")])).expect("valid");
        assert_eq!(range.since, Some(t("2031-01-02T00:00:00")));
        assert_eq!(range.until, None);
        assert_eq!(
            bad(TimeRange::parse(&params(&[("until", "tomorrow")]))),
            "Invalid 'until' parameter, must be an ISO 8601 datetime"
        );
        let oldest = t("2031-01-05T00:00:00");
        assert_eq!(range.kept(oldest).since, Some(oldest));
        let late = TimeRange {
            since: Some(t("2031-02-01T00:00:00")),
            until: None,
        };
        assert_eq!(late.kept(oldest).since, late.since);
        assert_eq!(TimeRange::default().kept(oldest).since, Some(oldest));
    }

    #[test]
    fn infra_flag_is_true_or_false() {
        assert_eq!(infra_flag(&params(&[])), Ok(None));
        assert_eq!(
            infra_flag(&params(&[("is_infra_error", "TRUE")])),
            Ok(Some(true))
        );
        assert_eq!(
            infra_flag(&params(&[("is_infra_error", "false")])),
            Ok(Some(false))
        );
        for v in ["maybe", "", "1", "yes"] {
            assert_eq!(
                bad(infra_flag(&params(&[("is_infra_error", v)]))),
                "Bad is_infra_error value, use 'true' or 'false'"
            );
        }
    }

    #[test]
    fn stats_parameters() {
        assert_eq!(
            bad(StatsQuery::parse(&params(&[]))),
            "'group_by' parameter is required"
        );
        assert_eq!(
            bad(StatsQuery::parse(&params(&[("group_by", "")]))),
            "'group_by' parameter is required"
        );
        let detail = bad(StatsQuery::parse(&params(&[(
            "group_by",
            "runtime,colour,,colour",
        )])));
        assert!(
            detail.starts_with("Invalid group_by fields: 'colour', ''"),
            "{detail}"
        );
        let q = StatsQuery::parse(&params(&[
            ("group_by", " lab , kind,lab,runtime"),
            ("lab", "lava"),
            ("kind", "job_result"),
            ("device_id", ""),
            ("result", "fail"),
            ("since", "2031-01-01"),
        ]))
        .expect("valid");
        let names: Vec<_> = q.group_by.iter().map(|g| (g.name, g.column)).collect();
        assert_eq!(
            names,
            [("lab", "runtime"), ("kind", "kind"), ("runtime", "runtime")]
        );
        assert_eq!(
            q.filters,
            [
                ("kind", "job_result".to_string()),
                ("runtime", "lava".to_string())
            ]
        );
        assert_eq!(q.range.since, Some(t("2031-01-01T00:00:00")));
        assert_eq!(
            bad(StatsQuery::parse(&params(&[
                ("group_by", "runtime"),
                ("lab", "a"),
                ("runtime", "b")
            ]))),
            "'lab' and 'runtime' must match when both are provided"
        );
        let same = StatsQuery::parse(&params(&[
            ("group_by", "runtime"),
            ("lab", "a"),
            ("runtime", "a"),
        ]))
        .expect("equal lab and runtime");
        assert_eq!(same.filters, [("runtime", "a".to_string())]);
    }

    #[test]
    fn anomaly_parameters_and_window() {
        let now = t("2024-05-01T12:00:00.250");
        let q = AnomalyQuery::parse(&params(&[]), now).expect("defaults");
        assert_eq!(
            (q.window, q.threshold, q.min_total, q.scope),
            ("6h", 0.5, 3, Scope::DeviceType)
        );
        assert_eq!(q.since, t("2024-05-01T06:00:00.250"));
        let q = AnomalyQuery::parse(
            &params(&[
                ("window", "48h"),
                ("threshold", "1"),
                ("min_total", "1"),
                ("scope", "device"),
            ]),
            now,
        )
        .expect("valid");
        assert_eq!((q.threshold, q.min_total, q.scope), (1.0, 1, Scope::Device));
        assert_eq!(q.since, t("2024-04-29T12:00:00.250"));
        assert_eq!(
            bad(AnomalyQuery::parse(&params(&[("window", "2h")]), now)),
            "Invalid window '2h'. Use: 1h, 3h, 6h, 12h, 24h, 48h"
        );
        assert_eq!(
            invalid(AnomalyQuery::parse(
                &params(&[
                    ("window", "2h"),
                    ("threshold", "1.5"),
                    ("min_total", "0"),
                    ("scope", "lab")
                ]),
                now
            )),
            [
                ("threshold".to_string(), "less_than_equal".to_string()),
                ("min_total".to_string(), "greater_than_equal".to_string()),
                ("scope".to_string(), "string_pattern_mismatch".to_string()),
            ],
            "every 422 problem, before the window"
        );
        for (value, kind) in [
            ("-0.1", "greater_than_equal"),
            ("high", "float_parsing"),
            ("", "float_parsing"),
            ("nan", "finite_number"),
            ("inf", "less_than_equal"),
        ] {
            assert_eq!(
                invalid(AnomalyQuery::parse(&params(&[("threshold", value)]), now)),
                [("threshold".to_string(), kind.to_string())],
                "{value}"
            );
        }
        assert_eq!(
            invalid(AnomalyQuery::parse(&params(&[("min_total", "2.5")]), now)),
            [("min_total".to_string(), "int_parsing".to_string())]
        );
        let huge = AnomalyQuery::parse(&params(&[("min_total", "99999999999999999999999")]), now)
            .expect("a large minimum is valid");
        assert_eq!(huge.min_total, i64::MAX);
    }

    fn counts(total: u64, pass: u64, fail: u64, incomplete: u64, infra: u64) -> Counts {
        Counts {
            total,
            pass,
            fail,
            incomplete,
            skip: total - pass - fail - incomplete,
            infra_error: infra,
        }
    }

    fn group(runtime: &str, device: &str, c: Counts) -> ResultGroup {
        ResultGroup {
            runtime: runtime.into(),
            device_type: Some(device.into()),
            device_id: None,
            counts: c,
            last_seen: t("2024-05-01T11:59:00"),
            latest_error_type: None,
            latest_error_msg: Some("boot failed".into()),
        }
    }

    #[test]
    fn rates_round_like_python() {
        assert_eq!(round3(2.0 / 3.0), 0.667);
        assert_eq!(round3(0.0625), 0.062, "an exact tie goes to even");
        assert_eq!(round3(0.1875), 0.188);
        assert_eq!(round3(1.0), 1.0);
        let c = counts(3, 1, 1, 1, 1);
        assert_eq!((c.infra_rate(), c.fail_rate()), (1.0 / 3.0, 2.0 / 3.0));
        assert_eq!(Counts::default().fail_rate(), 0.0);
    }

    #[test]
    fn anomalies_need_min_total_and_a_rate_at_the_threshold() {
        let now = t("2024-05-01T12:00:00");
        let q = |pairs: &[(&str, &str)]| AnomalyQuery::parse(&params(pairs), now).expect("valid");
        let half = group("r", "d", counts(4, 2, 1, 1, 0));
        assert!(
            half.is_anomaly(&q(&[])),
            "fail rate 0.5 meets the default 0.5"
        );
        assert!(!half.is_anomaly(&q(&[("threshold", "0.51")])));
        assert!(!half.is_anomaly(&q(&[("min_total", "5")])));
        let infra = group("r", "d", counts(3, 3, 0, 0, 3));
        assert!(
            infra.is_anomaly(&q(&[("threshold", "1.0")])),
            "infra rate alone"
        );
        let healthy = group("r", "d", counts(5, 5, 0, 0, 0));
        assert!(!healthy.is_anomaly(&q(&[])));
        assert!(healthy.is_anomaly(&q(&[("threshold", "0")])));
        // 2/3 = 0.666… is under 0.667 although it is shown as 0.667
        let two_thirds = group("r", "d", counts(3, 1, 2, 0, 0));
        assert!(!two_thirds.is_anomaly(&q(&[("threshold", "0.667")])));
    }

    #[test]
    fn anomaly_rows_order_and_shape() {
        let now = t("2024-05-01T12:00:00");
        let q = AnomalyQuery::parse(&params(&[("threshold", "0.2")]), now).expect("valid");
        let groups = vec![
            group("b", "x", counts(4, 2, 2, 0, 0)),  // fail 0.5, infra 0
            group("a", "y", counts(4, 0, 0, 4, 4)),  // infra 1.0
            group("a", "x", counts(4, 2, 2, 0, 0)),  // ties with b/x: by runtime
            group("c", "z", counts(10, 9, 1, 0, 0)), // 0.1: not an anomaly
            group("d", "w", counts(5, 1, 0, 4, 1)),  // infra 0.2, fail 0.8
        ];
        let rows = result_anomalies(groups, &q);
        let order: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r["runtime"].as_str().unwrap_or(""),
                    r["device_type"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(order, [("a", "y"), ("d", "w"), ("a", "x"), ("b", "x")]);
        let first = rows[0].as_object().expect("object");
        let keys: Vec<&str> = first.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "runtime",
                "lab",
                "device_type",
                "total",
                "pass",
                "fail",
                "incomplete",
                "skip",
                "infra_error",
                "infra_rate",
                "fail_rate",
                "constant_failure",
                "constant_infra_failure",
                "last_seen",
                "latest_error_type",
                "latest_error_msg"
            ]
        );
        assert_eq!(rows[0]["lab"], "a");
        assert_eq!(
            (
                rows[0]["infra_rate"].as_f64(),
                rows[0]["fail_rate"].as_f64()
            ),
            (Some(1.0), Some(1.0))
        );
        assert_eq!(rows[0]["constant_failure"], true);
        assert_eq!(rows[0]["constant_infra_failure"], true);
        assert_eq!(rows[1]["constant_failure"], false);
        assert_eq!(rows[1]["last_seen"], "2024-05-01T11:59:00.000000");
        assert_eq!(rows[1]["latest_error_type"], Value::Null);
        // device scope adds device_id after device_type
        let mut by_device = group("a", "y", counts(2, 0, 2, 0, 0));
        by_device.device_id = Some("y-1".into());
        let row = by_device.to_row(Scope::Device);
        let keys: Vec<&str> = row
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            &keys[..5],
            ["runtime", "lab", "device_type", "device_id", "total"]
        );
    }

    #[test]
    fn anomaly_rows_are_bounded_and_keep_the_most_severe() {
        let now = t("2024-05-01T12:00:00");
        let q = AnomalyQuery::parse(&params(&[("threshold", "0"), ("min_total", "1")]), now)
            .expect("valid");
        let n = 2 * MAX_ANOMALY_ROWS + 7;
        let groups = (0..n).map(|i| {
            let infra = u64::from(i == n - 1);
            group(&format!("r{i:06}"), "d", counts(1, 1 - infra, 0, 0, infra))
        });
        let rows = result_anomalies(groups, &q);
        assert_eq!(rows.len(), MAX_ANOMALY_ROWS);
        assert_eq!(
            rows[0]["runtime"],
            format!("r{:06}", n - 1),
            "the only infra failure leads"
        );
        assert_eq!(rows[1]["runtime"], "r000000");
    }

    #[test]
    fn stats_rows_and_the_anomalies_answer() {
        let group_by = [
            GroupField {
                name: "device_type",
                column: "device_type",
            },
            GroupField {
                name: "lab",
                column: "runtime",
            },
        ];
        let row = stats_row(
            &group_by,
            &[None, Some("lava".into())],
            &counts(3, 1, 1, 1, 1),
        );
        assert_eq!(
            row.to_string(),
            r#"{"device_type":null,"lab":"lava","total":3,"pass":1,"fail":1,"incomplete":1,"skip":0,"infra_error":1}"#
        );
        let q = AnomalyQuery::parse(&params(&[("window", "1h")]), t("2024-05-01T12:00:00.250"))
            .expect("valid");
        let errors = [ErrorGroup {
            runtime: "lava".into(),
            error_type: None,
            count: 4,
        }];
        let answer = anomalies_answer(&q, vec![], &errors);
        assert_eq!(
            answer.to_string(),
            r#"{"window":"1h","threshold":0.5,"min_total":3,"scope":"device_type","since":"2024-05-01T11:00:00.250000+00:00","result_anomalies":[],"error_anomalies":[{"runtime":"lava","error_type":null,"count":4}]}"#
        );
    }
}
