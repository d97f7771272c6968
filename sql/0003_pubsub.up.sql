-- Schema v3: durable subscriber positions and push lists.

-- A durable subscriber (subscribe with subscriber_id): its owner, the
-- channel it follows and the last acknowledged event sequence number.
CREATE TABLE subscriber (
    subscriber_id TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    channel       TEXT NOT NULL,
    position      INTEGER NOT NULL
) WITHOUT ROWID;

-- Work queues: FIFO by id, each message popped by exactly one consumer.
CREATE TABLE queue (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    list     TEXT NOT NULL,
    envelope TEXT NOT NULL CHECK (json_valid(envelope))
);
CREATE INDEX queue_list ON queue (list, id);
