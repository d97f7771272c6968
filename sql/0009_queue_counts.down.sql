-- Exact inverse of 0009_queue_counts.up.sql.
DROP TRIGGER queue_count_update;
DROP TRIGGER queue_count_delete;
DROP TRIGGER queue_count_insert;
DROP TABLE queue_count;
