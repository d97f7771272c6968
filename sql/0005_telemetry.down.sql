-- Exact inverse of 0005_telemetry.up.sql.
DROP INDEX telemetry_infra;
DROP INDEX telemetry_kind_ts;
DROP INDEX telemetry_ts;
DROP TABLE telemetry;
