//! Telemetry SQL (`sql/0005_telemetry.up.sql`): batched inserts, the
//! paginated list filtered by the query language, the GROUP BY
//! aggregations behind stats and anomalies, and the retention purge. The
//! rules (parameters, rates, thresholds, severity order) are in
//! `model::telemetry`; retention arrives here as a lower bound on `ts`.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, Row};
use serde_json::Value;

use super::filter::{SqlTable, filter_sql};
use super::{StoreError, clamp};
use crate::model::telemetry::TelemetryEvent;
use crate::model::telemetry::query::{Scope, StatsQuery, TimeRange};
use crate::model::telemetry::rows::{Counts, ErrorGroup, MAX_ANOMALY_ROWS, ResultGroup};
use crate::query::Filter;
use crate::timestamp::{self, Timestamp};

/// The columns of an event row, in [`TelemetryEvent`] order.
pub(crate) const COLUMNS: &str = "id, ts, kind, runtime, device_type, device_id, job_name, test_name, \
                       job_id, node_id, tree, branch, arch, result, is_infra_error, error_type, \
                       error_msg, retry, extra";

/// The fields that are not text columns, as the document `kci_match`
/// matches query-language conditions on.
const TELEMETRY_DOC: &str = "json_object('is_infra_error', \
                             json(CASE is_infra_error WHEN 1 THEN 'true' ELSE 'false' END), \
                             'retry', retry, 'extra', json(extra))";

/// The telemetry table for the query language: every text field is a
/// column; `is_infra_error`, `retry` and `extra.*` are matched on
/// [`TELEMETRY_DOC`].
pub const TELEMETRY_TABLE: SqlTable = SqlTable {
    doc: TELEMETRY_DOC,
    columns: &[
        ("id", "id"),
        ("ts", "ts"),
        ("kind", "kind"),
        ("runtime", "runtime"),
        ("device_type", "device_type"),
        ("device_id", "device_id"),
        ("job_name", "job_name"),
        ("test_name", "test_name"),
        ("job_id", "job_id"),
        ("node_id", "node_id"),
        ("tree", "tree"),
        ("branch", "branch"),
        ("arch", "arch"),
        ("result", "result"),
        ("error_type", "error_type"),
        ("error_msg", "error_msg"),
    ],
    indexed_paths: &[],
    irregular: None,
};

/// The counts every aggregation selects, in [`Counts`] order.
const COUNTS: &str = "count(*), sum(result IS 'pass'), sum(result IS 'fail'), \
                      sum(result IS 'incomplete'), sum(result IS 'skip'), sum(is_infra_error)";

/// Stores a batch of events (inside the caller's transaction); how many.
pub fn insert(c: &Connection, events: &[TelemetryEvent]) -> Result<usize, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "INSERT INTO telemetry ({COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))?;
    for e in events {
        stmt.execute(rusqlite::params![
            e.id,
            timestamp::format(&e.ts),
            e.kind,
            e.runtime,
            e.device_type,
            e.device_id,
            e.job_name,
            e.test_name,
            e.job_id,
            e.node_id,
            e.tree,
            e.branch,
            e.arch,
            e.result,
            e.is_infra_error,
            e.error_type,
            e.error_msg,
            e.retry,
            Value::Object(e.extra.clone()).to_string(),
        ])?;
    }
    Ok(events.len())
}

fn malformed(what: &str) -> StoreError {
    StoreError::Internal(format!("malformed telemetry row: {what}"))
}

pub(crate) fn event_from_row(r: &Row) -> Result<TelemetryEvent, StoreError> {
    let ts: String = r.get(1)?;
    let extra: String = r.get(18)?;
    let extra = match serde_json::from_str(&extra)? {
        Value::Object(map) => map,
        _ => return Err(malformed("extra is not an object")),
    };
    Ok(TelemetryEvent {
        id: r.get(0)?,
        ts: timestamp::parse_stored(&ts).ok_or_else(|| malformed("ts"))?,
        kind: r.get(2)?,
        runtime: r.get(3)?,
        device_type: r.get(4)?,
        device_id: r.get(5)?,
        job_name: r.get(6)?,
        test_name: r.get(7)?,
        job_id: r.get(8)?,
        node_id: r.get(9)?,
        tree: r.get(10)?,
        branch: r.get(11)?,
        arch: r.get(12)?,
        result: r.get(13)?,
        is_infra_error: r.get(14)?,
        error_type: r.get(15)?,
        error_msg: r.get(16)?,
        retry: r.get(17)?,
        extra,
    })
}

/// What `GET /telemetry` asks for.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Query-language conditions.
    pub filter: Filter,
    /// Inclusive bounds on `ts` (retention already applied).
    pub range: TimeRange,
    /// `is_infra_error` must equal this.
    pub infra: Option<bool>,
}

/// Appends `clause` with `value` bound as its `?`.
fn bind(clauses: &mut Vec<String>, args: &mut Vec<Sql>, clause: &str, value: Sql) {
    args.push(value);
    clauses.push(clause.replace('?', &format!("?{}", args.len())));
}

fn range_clauses(clauses: &mut Vec<String>, args: &mut Vec<Sql>, range: &TimeRange) {
    if let Some(since) = &range.since {
        bind(
            clauses,
            args,
            "ts >= ?",
            Sql::Text(timestamp::format(since)),
        );
    }
    if let Some(until) = &range.until {
        bind(
            clauses,
            args,
            "ts <= ?",
            Sql::Text(timestamp::format(until)),
        );
    }
}

fn list_where(q: &ListQuery) -> Result<(String, Vec<Sql>), StoreError> {
    let (cond, mut args) = filter_sql(&q.filter, &TELEMETRY_TABLE)?;
    let mut clauses = vec![cond];
    range_clauses(&mut clauses, &mut args, &q.range);
    // A literal, not a bound value, so that the planner can use the
    // partial index of infrastructure errors (0 or 1: never client text).
    if let Some(infra) = q.infra {
        clauses.push(format!("is_infra_error = {}", i64::from(infra)));
    }
    Ok((clauses.join(" AND "), args))
}

/// How many events match `q`.
pub fn count(c: &Connection, q: &ListQuery) -> Result<u64, StoreError> {
    let (cond, args) = list_where(q)?;
    let n: i64 = c.query_row(
        &format!("SELECT count(*) FROM telemetry WHERE {cond}"),
        rusqlite::params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Gives each event matching `q` to `emit`, in id order, until `emit`
/// answers `false`; `limit` None means all.
pub fn each(
    c: &Connection,
    q: &ListQuery,
    limit: Option<u64>,
    offset: u64,
    emit: &mut dyn FnMut(TelemetryEvent) -> bool,
) -> Result<(), StoreError> {
    let (cond, mut args) = list_where(q)?;
    args.push(Sql::Integer(limit.map_or(-1, clamp)));
    args.push(Sql::Integer(clamp(offset)));
    let n = args.len();
    let sql = format!(
        "SELECT {COLUMNS} FROM telemetry WHERE {cond} ORDER BY id LIMIT ?{} OFFSET ?{n}",
        n - 1
    );
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    while let Some(row) = rows.next()? {
        if !emit(event_from_row(row)?) {
            break;
        }
    }
    Ok(())
}

/// The events matching `q` in id order, as the API shows them.
pub fn list(
    c: &Connection,
    q: &ListQuery,
    limit: Option<u64>,
    offset: u64,
) -> Result<Vec<Value>, StoreError> {
    let mut items = Vec::new();
    each(c, q, limit, offset, &mut |event| {
        items.push(event.to_json());
        true
    })?;
    Ok(items)
}

fn counts_at(r: &Row, first: usize) -> Result<Counts, StoreError> {
    let n = |i: usize| -> Result<u64, StoreError> {
        let v: Option<i64> = r.get(first + i)?;
        Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
    };
    Ok(Counts {
        total: n(0)?,
        pass: n(1)?,
        fail: n(2)?,
        incomplete: n(3)?,
        skip: n(4)?,
        infra_error: n(5)?,
    })
}

/// The groups of `/telemetry/stats` (range with retention applied), most
/// events first, equal totals by the group values ascending (nulls
/// first); each given to `emit` with its values in `group_by` order until
/// `emit` answers `false`.
pub fn stats(
    c: &Connection,
    q: &StatsQuery,
    emit: &mut dyn FnMut(&[Option<String>], &Counts) -> bool,
) -> Result<(), StoreError> {
    let mut clauses = vec!["1".to_string()];
    let mut args = Vec::new();
    for (column, value) in &q.filters {
        bind(
            &mut clauses,
            &mut args,
            &format!("{column} = ?"),
            Sql::Text(value.clone()),
        );
    }
    range_clauses(&mut clauses, &mut args, &q.range);
    let groups: Vec<&str> = q.group_by.iter().map(|g| g.column).collect();
    let groups = groups.join(", ");
    let width = q.group_by.len();
    let sql = format!(
        "SELECT {groups}, {COUNTS} FROM telemetry WHERE {} GROUP BY {groups} \
         ORDER BY {} DESC, {groups}",
        clauses.join(" AND "),
        width + 1
    );
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    let mut values: Vec<Option<String>> = Vec::with_capacity(width);
    while let Some(row) = rows.next()? {
        values.clear();
        for i in 0..width {
            values.push(row.get(i)?);
        }
        if !emit(&values, &counts_at(row, width)?) {
            break;
        }
    }
    Ok(())
}

/// Which events the result groups of `scope` count.
fn result_kinds(scope: Scope) -> &'static str {
    match scope {
        Scope::DeviceType => "kind IN ('job_result', 'test_result')",
        Scope::Device => "kind = 'job_result' AND device_id IS NOT NULL AND device_id != ''",
    }
}

/// Gives `emit` each job and test result group of an anomaly window
/// (`ts` ≥ `since`) with at least `min_total` events, with its newest
/// `ts`; its latest error is left empty (see [`fill_latest`]).
pub fn result_groups(
    c: &Connection,
    scope: Scope,
    since: &Timestamp,
    min_total: i64,
    emit: &mut dyn FnMut(ResultGroup),
) -> Result<(), StoreError> {
    let (device, groups) = match scope {
        Scope::DeviceType => ("NULL", "runtime, device_type"),
        Scope::Device => ("device_id", "runtime, device_type, device_id"),
    };
    // The covering index, whatever else the planner thinks of: an index in
    // group order would read every row of the table instead of a window.
    let sql = format!(
        "SELECT runtime, device_type, {device}, {COUNTS}, max(ts)
         FROM telemetry INDEXED BY telemetry_kind_ts WHERE {} AND ts >= ?1
         GROUP BY {groups} HAVING count(*) >= ?2",
        result_kinds(scope)
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params![timestamp::format(since), min_total])?;
    while let Some(row) = rows.next()? {
        let newest: String = row.get(9)?;
        emit(ResultGroup {
            runtime: row.get(0)?,
            device_type: row.get(1)?,
            device_id: row.get(2)?,
            counts: counts_at(row, 3)?,
            last_seen: timestamp::parse_stored(&newest).ok_or_else(|| malformed("ts"))?,
            latest_error_type: None,
            latest_error_msg: None,
        });
    }
    Ok(())
}

/// Sets the latest `error_type` and `error_msg` of a result group: those
/// of its event at `last_seen` with the highest id. Done only for the
/// groups an answer shows, so that the aggregation reads nothing but the
/// covering index.
pub fn fill_latest(
    c: &Connection,
    scope: Scope,
    group: &mut ResultGroup,
) -> Result<(), StoreError> {
    let device = match scope {
        Scope::DeviceType => "",
        Scope::Device => "AND device_id = ?4",
    };
    let mut stmt = c.prepare_cached(&format!(
        "SELECT error_type, error_msg FROM telemetry
         WHERE {} AND ts = ?1 AND runtime = ?2 AND device_type IS ?3 {device}
         ORDER BY id DESC LIMIT 1",
        result_kinds(scope)
    ))?;
    let ts = timestamp::format(&group.last_seen);
    let mut args: Vec<Sql> = vec![
        Sql::Text(ts),
        Sql::Text(group.runtime.clone()),
        group.device_type.clone().map_or(Sql::Null, Sql::Text),
    ];
    if scope == Scope::Device {
        args.push(group.device_id.clone().map_or(Sql::Null, Sql::Text));
    }
    let latest = stmt
        .query_row(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((error_type, error_msg)) = latest {
        group.latest_error_type = error_type;
        group.latest_error_msg = error_msg;
    }
    Ok(())
}

/// The (runtime, error_type) groups of runtime errors and job skips since
/// `since` with at least `min_total` events, most first (equal counts by
/// runtime, then error type), at most [`MAX_ANOMALY_ROWS`].
pub fn error_groups(
    c: &Connection,
    since: &Timestamp,
    min_total: i64,
) -> Result<Vec<ErrorGroup>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT runtime, error_type, count(*) FROM telemetry INDEXED BY telemetry_kind_ts
         WHERE kind IN ('runtime_error', 'job_skip') AND ts >= ?1
         GROUP BY runtime, error_type HAVING count(*) >= ?2
         ORDER BY 3 DESC, runtime, error_type LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![
            timestamp::format(since),
            min_total,
            clamp(MAX_ANOMALY_ROWS as u64)
        ],
        |r| {
            Ok(ErrorGroup {
                runtime: r.get(0)?,
                error_type: r.get(1)?,
                count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes at most `limit` of the events older than `oldest`, oldest
/// first; how many (fewer than `limit`: none is left).
pub fn purge(c: &Connection, oldest: &Timestamp, limit: usize) -> Result<usize, StoreError> {
    Ok(c.execute(
        "DELETE FROM telemetry WHERE rowid IN
             (SELECT rowid FROM telemetry WHERE ts < ?1 ORDER BY ts LIMIT ?2)",
        rusqlite::params![timestamp::format(oldest), clamp(limit as u64)],
    )?)
}

/// The query plan SQLite picks for `sql` (for tests that check which
/// index serves a query).
pub fn explain(c: &Connection, sql: &str, args: &[Sql]) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        r.get::<_, String>(3)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::telemetry::parse_batch;
    use crate::model::telemetry::query::{AnomalyQuery, GroupField};
    use crate::store::Store;
    use crate::store::testing::temp_store;

    fn t(text: &str) -> Timestamp {
        timestamp::parse(text).expect("valid")
    }

    fn events(list: Value) -> Vec<TelemetryEvent> {
        parse_batch(&list, t("2024-05-01T12:00:00")).expect("valid events")
    }

    fn store_with(list: Value) -> (tempfile::TempDir, Store, Vec<TelemetryEvent>) {
        let (dir, store) = temp_store();
        let batch = events(list);
        let copy = batch.clone();
        store.write(move |c, _| insert(c, &copy)).expect("insert");
        (dir, store, batch)
    }

    fn total(store: &Store) -> i64 {
        store
            .read(|c| {
                Ok::<_, StoreError>(
                    c.query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))?,
                )
            })
            .expect("count")
    }

    #[test]
    fn events_read_back_as_written_in_id_order() {
        let (_dir, store, batch) = store_with(json!([
            {"kind": "a", "runtime": "r", "extra": {"k": [1, {"x": null}]}, "retry": 3,
             "is_infra_error": true, "device_id": "d\u{0}1", "error_msg": "it's \"quoted\""},
            {"kind": "b", "runtime": "r", "ts": "2024-04-30T00:00:00.123"},
        ]));
        let q = ListQuery::default();
        let listed = store.read(|c| list(c, &q, None, 0)).expect("list");
        assert_eq!(
            listed,
            batch
                .iter()
                .map(TelemetryEvent::to_json)
                .collect::<Vec<_>>()
        );
        assert_eq!(store.read(|c| count(c, &q)), Ok(2));
        let one = store.read(|c| list(c, &q, Some(1), 1)).expect("page");
        assert_eq!(one[0]["kind"], "b");
    }

    #[test]
    fn a_failing_batch_stores_nothing() {
        let (_dir, store, batch) = store_with(json!([{"kind": "a", "runtime": "r"}]));
        let mut again =
            events(json!([{"kind": "b", "runtime": "r"}, {"kind": "c", "runtime": "r"}]));
        again[1].id = batch[0].id.clone();
        let result = store.write(move |c, _| insert(c, &again));
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        assert_eq!(
            total(&store),
            1,
            "the first event of the batch was rolled back"
        );
    }

    fn list_of(store: &Store, pairs: &[(&str, &str)], range: TimeRange) -> Vec<String> {
        use crate::query::Schema;
        const SCHEMA: Schema = Schema {
            timestamps: &["ts"],
            ids: &["id"],
            ints: &["retry"],
            forbidden: &[],
        };
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let q = ListQuery {
            filter: Filter::parse(&params, &[], &SCHEMA).expect("valid filter"),
            range,
            infra: None,
        };
        let found = store.read(|c| list(c, &q, None, 0)).expect("list");
        assert_eq!(store.read(|c| count(c, &q)), Ok(found.len() as u64));
        found
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn the_query_language_on_columns_and_on_the_document() {
        let (_dir, store, _) = store_with(json!([
            {"kind": "a", "runtime": "r", "result": "pass", "retry": 0, "ts": "2024-05-01T00:00:00"},
            {"kind": "b", "runtime": "r", "result": "fail", "retry": 2, "is_infra_error": true,
             "extra": {"suite": "baseline"}, "ts": "2024-05-02T00:00:00"},
            {"kind": "c", "runtime": "s", "retry": 5, "extra": {"suite": "kselftest"},
             "ts": "2024-05-03T00:00:00"},
        ]));
        let all = TimeRange::default();
        assert_eq!(list_of(&store, &[("runtime", "r")], all), ["a", "b"]);
        assert_eq!(list_of(&store, &[("result", "null")], all), ["c"]);
        assert_eq!(list_of(&store, &[("result__ne", "pass")], all), ["b", "c"]);
        assert_eq!(list_of(&store, &[("kind__in", "a,c")], all), ["a", "c"]);
        assert_eq!(list_of(&store, &[("retry__gt", "1")], all), ["b", "c"]);
        assert_eq!(list_of(&store, &[("retry", "2")], all), ["b"]);
        assert_eq!(list_of(&store, &[("extra.suite", "baseline")], all), ["b"]);
        assert_eq!(list_of(&store, &[("extra.suite__re", "^k")], all), ["c"]);
        assert_eq!(list_of(&store, &[("retry__ne", "2")], all), ["a", "c"]);
        // operator values are never booleans (API.md 7): "true" is text here
        assert_eq!(
            list_of(&store, &[("is_infra_error__ne", "true")], all),
            ["a", "b", "c"]
        );
        assert_eq!(
            list_of(&store, &[("ts__gte", "2024-05-02")], all),
            ["b", "c"]
        );
        assert_eq!(
            list_of(&store, &[("kind__gt", "5")], all),
            Vec::<String>::new()
        );
        assert_eq!(
            list_of(&store, &[("unknown", "x")], all),
            Vec::<String>::new()
        );
        assert_eq!(
            list_of(&store, &[("unknown", "null")], all),
            ["a", "b", "c"]
        );
        let inclusive = TimeRange {
            since: Some(t("2024-05-02T00:00:00")),
            until: Some(t("2024-05-03T00:00:00")),
        };
        assert_eq!(list_of(&store, &[], inclusive), ["b", "c"]);
        let infra = ListQuery {
            infra: Some(true),
            ..ListQuery::default()
        };
        assert_eq!(store.read(|c| count(c, &infra)), Ok(1));
    }

    fn stats_rows(store: &Store, q: &StatsQuery) -> Vec<(Vec<Option<String>>, Counts)> {
        store
            .read(|c| {
                let mut rows = Vec::new();
                stats(c, q, &mut |values, counts| {
                    rows.push((values.to_vec(), *counts));
                    true
                })?;
                Ok::<_, StoreError>(rows)
            })
            .expect("stats")
    }

    #[test]
    fn stats_count_per_group_most_first_then_by_values() {
        let (_dir, store, _) = store_with(json!([
            {"kind": "job_result", "runtime": "b", "device_type": "x", "result": "pass"},
            {"kind": "job_result", "runtime": "b", "device_type": "x", "result": "fail",
             "is_infra_error": true},
            {"kind": "job_result", "runtime": "a", "device_type": "y", "result": "skip"},
            {"kind": "job_result", "runtime": "a", "result": "incomplete"},
            {"kind": "job_result", "runtime": "a", "device_type": "x"},
            {"kind": "other", "runtime": "a", "device_type": "x", "result": "pass"},
        ]));
        let field = |name, column| GroupField { name, column };
        let q = StatsQuery {
            group_by: vec![field("lab", "runtime"), field("device_type", "device_type")],
            filters: vec![("kind", "job_result".into())],
            range: TimeRange::default(),
        };
        let rows = stats_rows(&store, &q);
        let s = |v: &str| Some(v.to_string());
        let shown: Vec<(Vec<Option<String>>, u64)> =
            rows.iter().map(|(v, c)| (v.clone(), c.total)).collect();
        assert_eq!(
            shown,
            [
                (vec![s("b"), s("x")], 2),
                (vec![s("a"), None], 1),
                (vec![s("a"), s("x")], 1),
                (vec![s("a"), s("y")], 1),
            ],
            "ties by the group values ascending, null first"
        );
        assert_eq!(
            rows[0].1,
            Counts {
                total: 2,
                pass: 1,
                fail: 1,
                incomplete: 0,
                skip: 0,
                infra_error: 1
            }
        );
        assert_eq!(rows[1].1.incomplete, 1);
        assert_eq!(rows[3].1.skip, 1);
        // an emit that stops ends the read
        let mut seen = 0;
        store
            .read(|c| {
                stats(c, &q, &mut |_, _| {
                    seen += 1;
                    false
                })
            })
            .expect("stats");
        assert_eq!(seen, 1);
    }

    fn anomaly_groups(
        store: &Store,
        scope: Scope,
        since: &str,
        min_total: i64,
    ) -> Vec<ResultGroup> {
        store
            .read(|c| {
                let mut groups = Vec::new();
                result_groups(c, scope, &t(since), min_total, &mut |g| groups.push(g))?;
                for g in &mut groups {
                    fill_latest(c, scope, g)?;
                }
                Ok::<_, StoreError>(groups)
            })
            .expect("groups")
    }

    #[test]
    fn result_groups_carry_their_newest_event() {
        let (_dir, store, batch) = store_with(json!([
            {"kind": "job_result", "runtime": "r", "device_type": "d", "device_id": "d-1",
             "result": "fail", "error_type": "old", "ts": "2024-05-01T11:00:00"},
            {"kind": "test_result", "runtime": "r", "device_type": "d", "result": "pass",
             "error_type": "first", "error_msg": "one", "ts": "2024-05-01T11:30:00"},
            {"kind": "job_result", "runtime": "r", "device_type": "d", "device_id": "",
             "result": "incomplete", "is_infra_error": true, "error_type": "second",
             "error_msg": "two", "ts": "2024-05-01T11:30:00"},
            {"kind": "job_result", "runtime": "r", "device_type": "d", "device_id": "d-1",
             "result": "fail", "ts": "2024-05-01T09:00:00"},
            {"kind": "runtime_error", "runtime": "r", "device_type": "d", "ts": "2024-05-01T11:59:00"},
        ]));
        let groups = anomaly_groups(&store, Scope::DeviceType, "2024-05-01T10:00:00", 1);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(
            g.counts,
            Counts {
                total: 3,
                pass: 1,
                fail: 1,
                incomplete: 1,
                skip: 0,
                infra_error: 1
            }
        );
        assert_eq!(g.last_seen, t("2024-05-01T11:30:00"));
        // equal newest times: the newer id wins
        assert!(batch[2].id > batch[1].id);
        assert_eq!(
            (
                g.latest_error_type.as_deref(),
                g.latest_error_msg.as_deref()
            ),
            (Some("second"), Some("two"))
        );
        assert_eq!(g.device_id, None);
        // device scope: job results with a device only
        let devices = anomaly_groups(&store, Scope::Device, "2024-05-01T08:00:00", 1);
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].device_id.as_deref(), Some("d-1"));
        assert_eq!(devices[0].counts.total, 2);
        assert_eq!(devices[0].latest_error_type.as_deref(), Some("old"));
        assert!(anomaly_groups(&store, Scope::Device, "2024-05-01T08:00:00", 3).is_empty());
    }

    #[test]
    fn error_groups_most_first() {
        let (_dir, store, _) = store_with(json!([
            {"kind": "job_skip", "runtime": "b", "error_type": "queue_depth"},
            {"kind": "runtime_error", "runtime": "a", "error_type": "online_check"},
            {"kind": "job_skip", "runtime": "a"},
            {"kind": "runtime_error", "runtime": "b", "error_type": "queue_depth"},
            {"kind": "job_result", "runtime": "b", "error_type": "queue_depth"},
            {"kind": "job_skip", "runtime": "b", "error_type": "queue_depth", "ts": "2024-04-01T00:00:00"},
        ]));
        let groups = store
            .read(|c| error_groups(c, &t("2024-05-01T00:00:00"), 1))
            .expect("groups");
        let shown: Vec<(String, Option<String>, u64)> = groups
            .into_iter()
            .map(|g| (g.runtime, g.error_type, g.count))
            .collect();
        assert_eq!(
            shown,
            [
                ("b".into(), Some("queue_depth".into()), 2),
                ("a".into(), None, 1),
                ("a".into(), Some("online_check".into()), 1),
            ]
        );
    }

    #[test]
    fn purge_deletes_the_oldest_in_bounded_batches() {
        let old: Vec<Value> = (0..5)
            .map(|i| json!({"kind": "k", "runtime": "r", "ts": format!("2024-04-0{}T00:00:00", i + 1)}))
            .collect();
        let mut all = old.clone();
        all.push(json!({"kind": "young", "runtime": "r", "ts": "2024-04-10T00:00:00"}));
        let (_dir, store, _) = store_with(Value::Array(all));
        let cut = t("2024-04-10T00:00:00");
        assert_eq!(store.write(move |c, _| purge(c, &cut, 3)), Ok(3));
        assert_eq!(store.write(move |c, _| purge(c, &cut, 3)), Ok(2));
        assert_eq!(store.write(move |c, _| purge(c, &cut, 3)), Ok(0));
        assert_eq!(total(&store), 1);
    }

    fn plan(store: &Store, sql: &str, args: &[Sql]) -> String {
        store
            .read(|c| explain(c, sql, args))
            .expect("plan")
            .join(" | ")
    }

    #[test]
    fn time_windows_are_served_by_indexes() {
        let (_dir, store, _) = store_with(json!([{"kind": "k", "runtime": "r"}]));
        let since = Sql::Text("2024-05-01T00:00:00.000000".into());
        // anomaly windows: (kind, ts)
        let q = AnomalyQuery::parse(&[], t("2024-05-01T12:00:00")).expect("defaults");
        let text = plan(
            &store,
            "SELECT count(*) FROM telemetry WHERE kind IN ('job_result', 'test_result') AND ts >= ?1",
            std::slice::from_ref(&since),
        );
        assert!(text.contains("telemetry_kind_ts"), "{text}");
        let text = plan(
            &store,
            "SELECT count(*) FROM telemetry WHERE kind IN ('runtime_error', 'job_skip') AND ts >= ?1",
            &[Sql::Text(timestamp::format(&q.since))],
        );
        assert!(text.contains("telemetry_kind_ts"), "{text}");
        // retention and since: ts
        let text = plan(
            &store,
            "SELECT rowid FROM telemetry WHERE ts < ?1 ORDER BY ts LIMIT 10",
            &[since],
        );
        assert!(
            text.contains("telemetry_ts") && !text.contains("TEMP B-TREE"),
            "{text}"
        );
        // the recent infrastructure errors: the partial index
        let q = ListQuery {
            range: TimeRange {
                since: Some(t("2024-05-01T00:00:00")),
                until: None,
            },
            infra: Some(true),
            ..ListQuery::default()
        };
        let (cond, args) = list_where(&q).expect("sql");
        let text = plan(
            &store,
            &format!("SELECT count(*) FROM telemetry WHERE {cond}"),
            &args,
        );
        assert!(text.contains("telemetry_infra"), "{text}");
    }
}
