-- Exact inverse of 0004_kv.up.sql.
DROP TABLE kv;
