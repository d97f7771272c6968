-- Schema v4: the key/value store (`/kv/{namespace}/{key}`).

-- One text value per (namespace, key). The two are separate columns, so
-- `a:b`/`c` and `a`/`b:c` are different keys. A rowid table, not WITHOUT
-- ROWID: a value may be as long as a request body.
CREATE TABLE kv (
    ns    TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (ns, key)
);
