-- Inverse of 0007_kept_counts.up.sql.

DROP TRIGGER node_count_update;
DROP TRIGGER node_count_delete;
DROP TRIGGER node_count_insert;
DROP TABLE node_count;
DROP INDEX node_kind;
