//! The answer rows of `/telemetry/stats` and `/telemetry/anomalies`
//! (API.md 12), built from the store's grouped counts: key order, rates
//! rounded as Python rounds them, the anomaly rule (min_total, threshold)
//! and the severity order, in bounded memory.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::query::{AnomalyQuery, GroupField, Scope};
use crate::timestamp::{self, Timestamp};

/// Most rows each list of an anomalies answer holds, the most severe
/// first (a dashboard shows a few dozen).
pub const MAX_ANOMALY_ROWS: usize = 10_000;

/// The counts of one group of events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events in the group.
    pub total: u64,
    /// Events with result `pass`.
    pub pass: u64,
    /// Events with result `fail`.
    pub fail: u64,
    /// Events with result `incomplete`.
    pub incomplete: u64,
    /// Events with result `skip`.
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
    /// The group's runtime (its lab).
    pub runtime: String,
    /// The group's device type.
    pub device_type: Option<String>,
    /// Set with [`Scope::Device`] only.
    pub device_id: Option<String>,
    /// Its result counts.
    pub counts: Counts,
    /// The newest `ts`.
    pub last_seen: Timestamp,
    /// `error_type` and `error_msg` of the newest event (the newest id
    /// among equal times).
    pub latest_error_type: Option<String>,
    /// See `latest_error_type`.
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

    /// The anomalies kept, most severe first.
    pub fn finish(mut self) -> Vec<ResultGroup> {
        self.cut();
        self.kept
    }
}

/// The `result_anomalies` rows of `groups` (see [`Ranking`]).
pub fn result_anomalies(
    groups: impl IntoIterator<Item = ResultGroup>,
    q: &AnomalyQuery,
) -> Vec<Value> {
    let mut ranking = Ranking::new(q);
    groups.into_iter().for_each(|g| ranking.offer(g));
    let rows = ranking.finish();
    rows.iter().map(|g| g.to_row(q.scope)).collect()
}

/// A (runtime, error_type) group of runtime errors and job skips.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorGroup {
    /// The group's runtime.
    pub runtime: String,
    /// The group's error type.
    pub error_type: Option<String>,
    /// Events in the group.
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
