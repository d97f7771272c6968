//! Telemetry events (API.md 12): the event in the contract's key order, the
//! validation of a `POST /telemetry` batch (all or nothing) and the
//! retention rule. The parameters of the reads are [`query`], the answer
//! rows of stats and anomalies [`rows`]. Pure: the clock is a parameter.

pub mod query;
pub mod rows;

use serde_json::{Map, Value, json};

use super::validate::{ValidationItem, parse_bool_word};
use crate::ids;
use crate::timestamp::{self, Timestamp};

/// Most events one `POST /telemetry` may carry (the pipeline services send
/// at most 50 per flush); more answer 400 naming the limit.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;

/// One telemetry event, as stored and shown.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryEvent {
    /// Assigned by the server (an ObjectId-style id).
    pub id: String,
    /// When it happened; the time of the request when not given.
    pub ts: Timestamp,
    /// What happened: `job_submission`, `job_result`, `test_result`,
    /// `job_skip`, `runtime_error`, ... (free text).
    pub kind: String,
    /// The runtime (lab) it happened in.
    pub runtime: String,
    /// The device type (platform).
    pub device_type: Option<String>,
    /// The physical device.
    pub device_id: Option<String>,
    /// The job configuration's name.
    pub job_name: Option<String>,
    /// The test case, for test results.
    pub test_name: Option<String>,
    /// The runtime's job id (a LAVA job id).
    pub job_id: Option<String>,
    /// The API node it is about.
    pub node_id: Option<String>,
    /// The kernel tree.
    pub tree: Option<String>,
    /// The kernel branch.
    pub branch: Option<String>,
    /// The CPU architecture.
    pub arch: Option<String>,
    /// `pass`, `fail`, `incomplete`, `skip` (free text).
    pub result: Option<String>,
    /// Whether a failure was the infrastructure's.
    pub is_infra_error: bool,
    /// The error category (`online_check`, `queue_depth`, ...).
    pub error_type: Option<String>,
    /// The error's details.
    pub error_msg: Option<String>,
    /// The retry attempt.
    pub retry: i64,
    /// Free-form details.
    pub extra: Map<String, Value>,
}

/// Why a `POST /telemetry` body is refused; nothing of it is stored.
#[derive(Debug, PartialEq)]
pub enum BatchError {
    /// The body is not a list of objects (422, FastAPI's items).
    Shape(Vec<ValidationItem>),
    /// The list is empty (400).
    Empty,
    /// The list holds this many events, over [`MAX_EVENTS_PER_REQUEST`] (400).
    TooMany(usize),
    /// One event is invalid; the text says which and why (400).
    Invalid(String),
}

impl BatchError {
    /// The `detail` of a 400 (`None` for the 422 of [`BatchError::Shape`]).
    pub fn detail(&self) -> Option<String> {
        match self {
            BatchError::Shape(_) => None,
            BatchError::Empty => Some("Events list cannot be empty".into()),
            BatchError::TooMany(n) => Some(format!(
                "Too many telemetry events: {n} (at most {MAX_EVENTS_PER_REQUEST} per request)"
            )),
            BatchError::Invalid(reason) => Some(format!("Invalid telemetry event: {reason}")),
        }
    }
}

/// The events of a `POST /telemetry` body, each with a new id and, when it
/// gives none, `ts` = `now`. The first invalid event refuses the whole
/// batch; unknown keys (a client's `id` included) are dropped.
pub fn parse_batch(body: &Value, now: Timestamp) -> Result<Vec<TelemetryEvent>, BatchError> {
    let Some(items) = body.as_array() else {
        return Err(BatchError::Shape(vec![ValidationItem::new(
            vec![json!("body")],
            "Input should be a valid list",
            "list_type",
        )]));
    };
    let not_objects: Vec<ValidationItem> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| !item.is_object())
        .map(|(i, _)| {
            ValidationItem::new(
                vec![json!("body"), json!(i)],
                "Input should be a valid dictionary",
                "dict_type",
            )
        })
        .collect();
    if !not_objects.is_empty() {
        return Err(BatchError::Shape(not_objects));
    }
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    if items.len() > MAX_EVENTS_PER_REQUEST {
        return Err(BatchError::TooMany(items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let obj = item
                .as_object()
                .expect("every item was checked to be an object");
            TelemetryEvent::parse(obj, now)
                .map_err(|problems| BatchError::Invalid(format!("events[{i}].{problems}")))
        })
        .collect()
}

/// The problems found in one event, as `field: message` texts.
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, msg: &str) {
        self.0.push(format!("{key}: {msg}"));
    }

    fn text(&mut self, obj: &Map<String, Value>, key: &str, required: bool) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) if !required => None,
            None => {
                self.add(key, "Field required");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.add(key, "Input should be a valid string");
                None
            }
        }
    }

    /// pydantic's lax boolean: JSON booleans, 0 and 1, the boolean words.
    fn flag(&mut self, obj: &Map<String, Value>, key: &str) -> bool {
        let parsed = match obj.get(key) {
            None => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Some(Value::String(s)) => parse_bool_word(s.trim()),
            Some(_) => None,
        };
        parsed.unwrap_or_else(|| {
            self.add(key, "Input should be a valid boolean");
            false
        })
    }

    /// pydantic's lax integer: JSON integers, floats without a fraction,
    /// integer text; within the 64 bits the store keeps.
    fn integer(&mut self, obj: &Map<String, Value>, key: &str) -> i64 {
        let parsed = match obj.get(key) {
            None => Ok(0),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(i),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
                (None, Some(f)) if f.is_finite() && f.fract() != 0.0 => {
                    Err("Input should be a valid integer, got a number with a fractional part")
                }
                _ => Err("Input should be a valid integer"),
            },
            Some(Value::String(s)) => s.trim().parse::<i64>().map_err(
                |_| "Input should be a valid integer, unable to parse string as an integer",
            ),
            Some(_) => Err("Input should be a valid integer"),
        };
        parsed.unwrap_or_else(|msg| {
            self.add(key, msg);
            0
        })
    }

    fn time(&mut self, obj: &Map<String, Value>, key: &str, now: Timestamp) -> Timestamp {
        match obj.get(key) {
            None => now,
            Some(Value::String(text)) => timestamp::parse(text).unwrap_or_else(|| {
                self.add(key, "Input should be a valid datetime");
                now
            }),
            Some(_) => {
                self.add(key, "Input should be a valid datetime");
                now
            }
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, key: &str) -> Map<String, Value> {
        match obj.get(key) {
            None => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => {
                self.add(key, "Input should be a valid dictionary");
                Map::new()
            }
        }
    }
}

impl TelemetryEvent {
    /// One event of a batch, with a new id; `Err` lists every problem.
    pub fn parse(obj: &Map<String, Value>, now: Timestamp) -> Result<TelemetryEvent, String> {
        let mut p = Problems(Vec::new());
        let opt = |p: &mut Problems, key: &str| p.text(obj, key, false);
        let event = TelemetryEvent {
            id: ids::new_id(),
            ts: p.time(obj, "ts", now),
            kind: p.text(obj, "kind", true).unwrap_or_default(),
            runtime: p.text(obj, "runtime", true).unwrap_or_default(),
            device_type: opt(&mut p, "device_type"),
            device_id: opt(&mut p, "device_id"),
            job_name: opt(&mut p, "job_name"),
            test_name: opt(&mut p, "test_name"),
            job_id: opt(&mut p, "job_id"),
            node_id: opt(&mut p, "node_id"),
            tree: opt(&mut p, "tree"),
            branch: opt(&mut p, "branch"),
            arch: opt(&mut p, "arch"),
            result: opt(&mut p, "result"),
            is_infra_error: p.flag(obj, "is_infra_error"),
            error_type: opt(&mut p, "error_type"),
            error_msg: opt(&mut p, "error_msg"),
            retry: p.integer(obj, "retry"),
            extra: p.object(obj, "extra"),
        };
        if p.0.is_empty() {
            Ok(event)
        } else {
            Err(p.0.join("; "))
        }
    }

    /// The event as the API shows it, keys in the contract's order.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        put("id", json!(self.id));
        put("ts", json!(timestamp::format(&self.ts)));
        put("kind", json!(self.kind));
        put("runtime", json!(self.runtime));
        put("device_type", text(&self.device_type));
        put("device_id", text(&self.device_id));
        put("job_name", text(&self.job_name));
        put("test_name", text(&self.test_name));
        put("job_id", text(&self.job_id));
        put("node_id", text(&self.node_id));
        put("tree", text(&self.tree));
        put("branch", text(&self.branch));
        put("arch", text(&self.arch));
        put("result", text(&self.result));
        put("is_infra_error", json!(self.is_infra_error));
        put("error_type", text(&self.error_type));
        put("error_msg", text(&self.error_msg));
        put("retry", json!(self.retry));
        put("extra", Value::Object(self.extra.clone()));
        Value::Object(m)
    }
}

/// The oldest `ts` still kept at `now` with a retention of `ttl_secs`
/// (`TELEMETRY_TTL_SECONDS`): older events are purged, and never shown
/// before that.
pub fn oldest_kept(now: Timestamp, ttl_secs: u64) -> Timestamp {
    timestamp::shift(now, -timestamp::span_secs(ttl_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        timestamp::parse(text).expect("valid")
    }

    fn one(event: Value) -> Result<TelemetryEvent, BatchError> {
        parse_batch(&json!([event]), t("2024-05-01T10:00:00")).map(|mut v| v.remove(0))
    }

    fn reason(event: Value) -> String {
        match one(event) {
            Err(BatchError::Invalid(reason)) => reason,
            other => panic!("not refused as invalid: {other:?}"),
        }
    }

    #[test]
    fn defaults_order_and_unknown_keys() {
        let event = one(json!({"kind": "k", "runtime": "r", "surprise": 1,
                               "id": "0123456789abcdef01234567", "_id": "x"}))
        .expect("valid");
        let shown = event.to_json();
        let keys: Vec<&str> = shown
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "ts",
                "kind",
                "runtime",
                "device_type",
                "device_id",
                "job_name",
                "test_name",
                "job_id",
                "node_id",
                "tree",
                "branch",
                "arch",
                "result",
                "is_infra_error",
                "error_type",
                "error_msg",
                "retry",
                "extra"
            ]
        );
        assert_ne!(
            event.id, "0123456789abcdef01234567",
            "the server assigns ids"
        );
        assert!(ids::parse_id(&event.id).is_some());
        assert_eq!(shown["ts"], "2024-05-01T10:00:00.000000");
        assert_eq!(shown["is_infra_error"], false);
        assert_eq!(shown["retry"], 0);
        assert_eq!(shown["extra"], json!({}));
        assert_eq!(shown["device_type"], Value::Null);
    }

    #[test]
    fn what_the_pipeline_sends_is_accepted_unchanged() {
        // kernelci-pipeline's TelemetryEmitter: an aware ts with microseconds,
        // nulls for unknown fields, an integer retry, a nested extra.
        let event = one(json!({
            "kind": "job_skip", "ts": "2026-01-04T10:48:39.974782+00:00",
            "runtime": "lava-collabora", "device_type": "rk3588", "job_name": "baseline",
            "node_id": null, "tree": null, "branch": "master", "arch": null,
            "error_type": "queue_depth", "error_msg": "device_type=rk3588 queue_depth=9 >= max=8",
            "retry": 1, "is_infra_error": false,
            "extra": {"queue_depth": 9, "priority_factor": 1.5}
        }))
        .expect("valid");
        assert_eq!(timestamp::format(&event.ts), "2026-01-04T10:48:39.974000");
        assert_eq!(event.retry, 1);
        assert_eq!(event.node_id, None);
        assert_eq!(event.extra["priority_factor"], json!(1.5));
        let offset =
            one(json!({"kind": "k", "runtime": "r", "ts": "2030-03-04T05:06:07.250+01:00"}))
                .expect("valid");
        assert_eq!(timestamp::format(&offset.ts), "2030-03-04T04:06:07.250000");
        // empty strings are strings
        assert_eq!(
            one(json!({"kind": "", "runtime": ""}))
                .expect("valid")
                .runtime,
            ""
        );
    }

    #[test]
    fn lax_booleans_and_integers() {
        let ok = |v: Value| one(v).expect("valid");
        assert!(ok(json!({"kind": "k", "runtime": "r", "is_infra_error": "true"})).is_infra_error);
        assert!(ok(json!({"kind": "k", "runtime": "r", "is_infra_error": 1})).is_infra_error);
        assert!(!ok(json!({"kind": "k", "runtime": "r", "is_infra_error": "no"})).is_infra_error);
        assert_eq!(
            ok(json!({"kind": "k", "runtime": "r", "retry": "3"})).retry,
            3
        );
        assert_eq!(
            ok(json!({"kind": "k", "runtime": "r", "retry": 2.0})).retry,
            2
        );
        assert_eq!(
            ok(json!({"kind": "k", "runtime": "r", "retry": -1})).retry,
            -1
        );
    }

    #[test]
    fn invalid_events_name_the_event_and_every_problem() {
        assert_eq!(
            reason(json!({"runtime": "r"})),
            "events[0].kind: Field required"
        );
        assert_eq!(
            reason(json!({"kind": 5})),
            "events[0].kind: Input should be a valid string; runtime: Field required"
        );
        for (key, value, msg) in [
            (
                "retry",
                json!("many"),
                "Input should be a valid integer, unable to parse string as an integer",
            ),
            (
                "retry",
                json!(1.5),
                "Input should be a valid integer, got a number with a fractional part",
            ),
            ("retry", json!(true), "Input should be a valid integer"),
            ("retry", json!(1e300), "Input should be a valid integer"),
            ("retry", json!(u64::MAX), "Input should be a valid integer"),
            (
                "ts",
                json!("not-a-time"),
                "Input should be a valid datetime",
            ),
            ("ts", json!(null), "Input should be a valid datetime"),
            ("ts", json!(1700000000), "Input should be a valid datetime"),
            (
                "ts",
                json!("10000-01-01T00:00:00"),
                "Input should be a valid datetime",
            ),
            (
                "is_infra_error",
                json!("perhaps"),
                "Input should be a valid boolean",
            ),
            (
                "is_infra_error",
                json!(null),
                "Input should be a valid boolean",
            ),
            (
                "is_infra_error",
                json!(2),
                "Input should be a valid boolean",
            ),
            ("extra", json!([1]), "Input should be a valid dictionary"),
            ("extra", json!(null), "Input should be a valid dictionary"),
            ("device_type", json!(7), "Input should be a valid string"),
            ("result", json!({"a": 1}), "Input should be a valid string"),
        ] {
            let mut event = json!({"kind": "k", "runtime": "r"});
            event[key] = value.clone();
            assert_eq!(
                reason(event),
                format!("events[0].{key}: {msg}"),
                "{key} = {value}"
            );
        }
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let now = t("2024-05-01T10:00:00");
        let good = json!({"kind": "k", "runtime": "r"});
        let bad = json!({"kind": "k", "runtime": "r", "retry": "x"});
        let err = parse_batch(&json!([good, good, bad]), now).expect_err("refused");
        assert_eq!(
            err.detail().as_deref(),
            Some(
                "Invalid telemetry event: events[2].retry: Input should be a valid integer, unable to parse string as an integer"
            )
        );
        assert_eq!(parse_batch(&json!([]), now), Err(BatchError::Empty));
        assert_eq!(
            BatchError::Empty.detail().as_deref(),
            Some("Events list cannot be empty")
        );
        let full = Value::Array(vec![good.clone(); MAX_EVENTS_PER_REQUEST]);
        let events = parse_batch(&full, now).expect("at the limit");
        assert_eq!(events.len(), MAX_EVENTS_PER_REQUEST);
        let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        ids.dedup();
        assert_eq!(
            ids.len(),
            MAX_EVENTS_PER_REQUEST,
            "every event has its own id"
        );
        let over = Value::Array(vec![good.clone(); MAX_EVENTS_PER_REQUEST + 1]);
        let err = parse_batch(&over, now).expect_err("over the limit");
        assert_eq!(err, BatchError::TooMany(MAX_EVENTS_PER_REQUEST + 1));
        assert_eq!(
            err.detail().as_deref(),
            Some("Too many telemetry events: 10001 (at most 10000 per request)")
        );
    }

    #[test]
    fn a_body_that_is_not_a_list_of_objects_is_a_shape_error() {
        let now = t("2024-05-01T10:00:00");
        for body in [
            json!({"kind": "k", "runtime": "r"}),
            json!("x"),
            json!(5),
            json!(null),
        ] {
            match parse_batch(&body, now) {
                Err(BatchError::Shape(items)) => {
                    assert_eq!(items[0].loc, vec![json!("body")]);
                    assert_eq!(items[0].kind, "list_type");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        match parse_batch(&json!([{"kind": "k", "runtime": "r"}, 5, "x"]), now) {
            Err(BatchError::Shape(items)) => {
                let locs: Vec<_> = items.iter().map(|i| i.loc.clone()).collect();
                assert_eq!(
                    locs,
                    [vec![json!("body"), json!(1)], vec![json!("body"), json!(2)]]
                );
                assert!(items.iter().all(|i| i.kind == "dict_type"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retention_keeps_what_is_younger_than_the_ttl() {
        let now = t("2024-05-15T00:00:00");
        assert_eq!(oldest_kept(now, 1_209_600), t("2024-05-01T00:00:00"));
        assert_eq!(oldest_kept(now, 0), now);
        // a huge retention saturates far in the past instead of overflowing
        assert!(oldest_kept(now, u64::MAX) < t("0100-01-01T00:00:00"));
    }
}
