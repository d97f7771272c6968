-- Schema v5: telemetry events (API.md 12), a collection of its own: far
-- more rows than nodes, written in batches, read by time window.

-- Every field a query may filter or group on is a real column; `extra` is
-- the event's free-form object. ts is the contract's text form (fixed
-- width), so text order is time order.
CREATE TABLE telemetry (
    id             TEXT PRIMARY KEY,
    ts             TEXT NOT NULL,
    kind           TEXT NOT NULL,
    runtime        TEXT NOT NULL,
    device_type    TEXT,
    device_id      TEXT,
    job_name       TEXT,
    test_name      TEXT,
    job_id         TEXT,
    node_id        TEXT,
    tree           TEXT,
    branch         TEXT,
    arch           TEXT,
    result         TEXT,
    is_infra_error INTEGER NOT NULL CHECK (is_infra_error IN (0, 1)),
    error_type     TEXT,
    error_msg      TEXT,
    retry          INTEGER NOT NULL,
    extra          TEXT NOT NULL CHECK (json_valid(extra))
);

-- Indexes chosen by measuring at 1M events (bench/telemetry.md). Each
-- grows at few places (ts, or kind then ts), so inserts stay appends.
-- Retention, since/until, and the stats of a time range: covering for
-- the groups and filters dashboards use (runtime, device type, kind,
-- tree), so that those aggregations never read a row.
CREATE INDEX telemetry_ts ON telemetry (ts, runtime, device_type, kind, tree, result,
                                        is_infra_error);
-- The anomaly windows (a few kinds over the last hours) and stats of a
-- kind, covering likewise.
CREATE INDEX telemetry_kind_ts ON telemetry (kind, ts, runtime, device_type, device_id,
                                             result, is_infra_error, error_type);
-- The recent infrastructure errors dashboards list.
CREATE INDEX telemetry_infra ON telemetry (ts) WHERE is_infra_error = 1;
