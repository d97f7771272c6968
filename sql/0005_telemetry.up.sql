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

-- Retention, since/until and the stats of a time range.
CREATE INDEX telemetry_ts ON telemetry (ts);
-- The anomaly windows: a few kinds over the last hours.
CREATE INDEX telemetry_kind_ts ON telemetry (kind, ts);
