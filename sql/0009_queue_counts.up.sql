-- Schema v9: messages kept counted per push list.
--
-- The length of each list (leased messages included: they are still in
-- the list until acknowledged) is kept by triggers in the transaction that
-- pushes or removes a message, so the server's figures read it instead of
-- counting the queue. A list with no message has no row.

CREATE TABLE queue_count (
    list TEXT PRIMARY KEY,
    n    INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO queue_count (list, n) SELECT list, count(*) FROM queue GROUP BY list;

CREATE TRIGGER queue_count_insert AFTER INSERT ON queue
BEGIN
    INSERT INTO queue_count (list, n) VALUES (new.list, 1)
        ON CONFLICT (list) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER queue_count_delete AFTER DELETE ON queue
BEGIN
    UPDATE queue_count SET n = n - 1 WHERE list = old.list;
    DELETE FROM queue_count WHERE list = old.list AND n <= 0;
END;

CREATE TRIGGER queue_count_update AFTER UPDATE OF list ON queue
    WHEN new.list IS NOT old.list
BEGIN
    UPDATE queue_count SET n = n - 1 WHERE list = old.list;
    DELETE FROM queue_count WHERE list = old.list AND n <= 0;
    INSERT INTO queue_count (list, n) VALUES (new.list, 1)
        ON CONFLICT (list) DO UPDATE SET n = n + 1;
END;
