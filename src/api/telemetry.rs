//! `/telemetry`, `/telemetry/stats`, `/telemetry/anomalies` (API.md 12):
//! events that pipeline services post in batches, listed with the query
//! language and aggregated. Rules in `model::telemetry`, SQL in
//! `store::telemetry`; events past `TELEMETRY_TTL_SECONDS` are never shown,
//! even before the timer has purged them.

use serde_json::json;

use super::{page, pagination};
use crate::app::App;
use crate::auth;
use crate::http::{ApiError, ApiResult, Req, Resp};
use crate::model::telemetry::query::{self, AnomalyQuery, ParamError, StatsQuery, TimeRange};
use crate::model::telemetry::rows::{self, Ranking};
use crate::model::telemetry::{self as model, BatchError};
use crate::query::{Filter, Schema};
use crate::store::StoreError;
use crate::store::stream::Rows;
use crate::store::telemetry::{self, ListQuery};
use crate::timestamp::{self, Timestamp};

/// Pages asking for more events than this are streamed in bounded memory
/// instead of built in memory.
const STREAM_ABOVE: u64 = 500;

/// What is special about telemetry fields in the query language.
const TELEMETRY_SCHEMA: Schema = Schema {
    timestamps: &["ts"],
    ids: &["id"],
    ints: &["retry"],
    forbidden: &[],
};

/// Parameters of `GET /telemetry` that are not conditions.
const RESERVED: [&str; 5] = ["limit", "offset", "since", "until", "is_infra_error"];

impl From<BatchError> for ApiError {
    fn from(err: BatchError) -> ApiError {
        match err {
            BatchError::Shape(items) => ApiError::validation(items),
            other => ApiError::bad_request(&other.detail().unwrap_or_default()),
        }
    }
}

impl From<ParamError> for ApiError {
    fn from(err: ParamError) -> ApiError {
        match err {
            ParamError::Bad(detail) => ApiError::bad_request(&detail),
            ParamError::Invalid(items) => ApiError::validation(items),
        }
    }
}

/// The oldest `ts` shown at `now`.
fn oldest(app: &App, now: Timestamp) -> Timestamp {
    model::oldest_kept(now, app.config.telemetry_ttl_secs)
}

/// `POST /telemetry` (user): a list of events, stored all or nothing in one
/// transaction; `{"inserted": N}`.
pub fn create(app: &App, req: &Req) -> ApiResult {
    let body = req.body()?;
    auth::user(&app.keys, &app.users, req.bearer())?;
    let events = model::parse_batch(&body.require()?, timestamp::now())?;
    let inserted = app.store.write(move |c, _| telemetry::insert(c, &events))?;
    Ok(Resp::json(&json!({ "inserted": inserted })))
}

/// `GET /telemetry` (public): a page of events in id order.
pub fn list(app: &App, req: &Req) -> ApiResult {
    let (limit, offset) = pagination(req)?;
    let range = TimeRange::parse(&req.query)?;
    let infra = query::infra_flag(&req.query)?;
    let filter = Filter::parse(&req.query, &RESERVED, &TELEMETRY_SCHEMA)?;
    let q = ListQuery {
        filter,
        range: range.kept(oldest(app, timestamp::now())),
        infra,
    };
    let total = app.store.read(|c| telemetry::count(c, &q))?;
    if limit > STREAM_ABOVE {
        // The envelope's key order: items, total, limit, offset.
        let suffix = format!("],\"total\":{total},\"limit\":{limit},\"offset\":{offset}}}");
        let source: Rows = Box::new(move |c, emit| {
            telemetry::each(c, &q, Some(limit), offset, &mut |event| {
                emit(&event.to_json().to_string())
            })
        });
        let stream = app
            .store
            .stream_array("{\"items\":[".into(), suffix, source)?;
        return Ok(Resp::json_stream(stream));
    }
    let items = app
        .store
        .read(|c| telemetry::list(c, &q, Some(limit), offset))?;
    Ok(Resp::json(&page(items, total, limit, offset)))
}

/// `GET /telemetry/stats` (public): counts per group, streamed (the number
/// of groups grows with the data).
pub fn stats(app: &App, req: &Req) -> ApiResult {
    let mut q = StatsQuery::parse(&req.query)?;
    q.range = q.range.kept(oldest(app, timestamp::now()));
    let source: Rows = Box::new(move |c, emit| {
        telemetry::stats(c, &q, &mut |values, counts| {
            emit(&rows::stats_row(&q.group_by, values, counts).to_string())
        })
    });
    let stream = app.store.stream_array("[".into(), "]".into(), source)?;
    Ok(Resp::json_stream(stream))
}

/// `GET /telemetry/anomalies` (public): failing device groups and frequent
/// runtime errors in the last hours.
pub fn anomalies(app: &App, req: &Req) -> ApiResult {
    let now = timestamp::now();
    let q = AnomalyQuery::parse(&req.query, now)?;
    let from = q.since.max(oldest(app, now));
    let (groups, errors) = app.store.read(|c| {
        let mut ranking = Ranking::new(&q);
        telemetry::result_groups(c, q.scope, &from, q.min_total, &mut |g| ranking.offer(g))?;
        let mut groups = ranking.finish();
        for group in &mut groups {
            telemetry::fill_latest(c, q.scope, group)?;
        }
        let errors = telemetry::error_groups(c, &from, q.min_total)?;
        Ok::<_, StoreError>((groups, errors))
    })?;
    let results = groups.iter().map(|g| g.to_row(q.scope)).collect();
    Ok(Resp::json(&rows::anomalies_answer(&q, results, &errors)))
}
