-- Exact inverse of 0003_pubsub.up.sql.
DROP TABLE queue;
DROP TABLE subscriber;
