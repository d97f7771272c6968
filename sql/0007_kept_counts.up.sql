-- Schema v7: pages of one kind in id order, and counts kept per kind and
-- state.
--
-- A filter on the kind alone walks (kind, id) in id order, where the
-- (kind, state, id) index would give the matches of each state in turn
-- and make SQLite sort them all for a page. The number of nodes of each
-- (kind, state) is kept by triggers in the same transaction as the write,
-- so a total for a kind, a state or both (the dashboards' and schedulers'
-- questions) is read, not counted.

CREATE INDEX node_kind ON node (kind, id);

CREATE TABLE node_count (
    kind  TEXT NOT NULL,
    state TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (kind, state)
) WITHOUT ROWID;

INSERT INTO node_count (kind, state, n)
SELECT kind, state, count(*) FROM node GROUP BY kind, state;

CREATE TRIGGER node_count_insert AFTER INSERT ON node
BEGIN
    INSERT INTO node_count (kind, state, n) VALUES (new.kind, new.state, 1)
        ON CONFLICT (kind, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER node_count_delete AFTER DELETE ON node
BEGIN
    UPDATE node_count SET n = n - 1 WHERE kind = old.kind AND state = old.state;
END;

CREATE TRIGGER node_count_update AFTER UPDATE OF kind, state ON node
    WHEN new.kind IS NOT old.kind OR new.state IS NOT old.state
BEGIN
    UPDATE node_count SET n = n - 1 WHERE kind = old.kind AND state = old.state;
    INSERT INTO node_count (kind, state, n) VALUES (new.kind, new.state, 1)
        ON CONFLICT (kind, state) DO UPDATE SET n = n + 1;
END;
