-- Schema v1: settings, users, groups and nodes.

-- Server settings that must survive restarts (the generated SECRET_KEY).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Users: the public document (UserRead, groups embedded as {id, name}) plus
-- the columns that must be unique and the password hash, which is kept out
-- of the document so that no query or response can ever reach it.
CREATE TABLE user (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    email_key       TEXT NOT NULL UNIQUE,   -- lower-cased e-mail
    hashed_password TEXT NOT NULL,
    doc             TEXT NOT NULL CHECK (json_valid(doc))
);

CREATE TABLE user_group (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- Nodes: one JSON document each (all 23 fields, contract key order) plus
-- indexed copies of the fields people filter on.
CREATE TABLE node (
    id       TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    name     TEXT NOT NULL,
    state    TEXT NOT NULL,
    result   TEXT,
    parent   TEXT,
    owner    TEXT,
    grp      TEXT,
    treeid   TEXT,
    created  TEXT NOT NULL,
    updated  TEXT NOT NULL,
    timeout  TEXT NOT NULL,
    holdoff  TEXT,
    doc      TEXT NOT NULL CHECK (json_valid(doc))
);

CREATE INDEX node_kind_state ON node (kind, state);
CREATE INDEX node_name ON node (name);
CREATE INDEX node_state ON node (state);
CREATE INDEX node_parent ON node (parent);
CREATE INDEX node_owner ON node (owner);
CREATE INDEX node_grp ON node (grp);
CREATE INDEX node_treeid ON node (treeid);
CREATE INDEX node_created ON node (created);
CREATE INDEX node_updated ON node (updated);
