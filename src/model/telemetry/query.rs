//! The query parameters of telemetry reads (API.md 12): `since`/`until`
//! and `is_infra_error` of `GET /telemetry`, `group_by` and the filters of
//! `/telemetry/stats`, and window, threshold, min_total and scope of
//! `/telemetry/anomalies`, each with upstream's 400 or 422. Pure: `now`
//! is a parameter.

use chrono::Duration;
use serde_json::json;

use crate::model::validate::ValidationItem;
use crate::timestamp::{self, Timestamp};

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
    /// Events with `ts` at or after this.
    pub since: Option<Timestamp>,
    /// Events with `ts` at or before this.
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
    /// The name given in `group_by` and shown in the rows.
    pub name: &'static str,
    /// The column it reads.
    pub column: &'static str,
}

/// What `/telemetry/stats` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsQuery {
    /// Distinct fields, in the order given.
    pub group_by: Vec<GroupField>,
    /// Exact matches: (column, value).
    pub filters: Vec<(&'static str, String)>,
    /// `since` / `until`.
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
    /// The rate (0..1) at which a group is an anomaly.
    pub threshold: f64,
    /// The fewest events a group needs to count.
    pub min_total: i64,
    /// How results are grouped.
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
}
