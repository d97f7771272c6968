-- Schema v6: rows that cost what they must to write.
--
-- The node's indexed data paths become columns filled by the server from
-- the document it writes (each JSON scalar kept with its own type: text,
-- integer or real), so that no index makes SQLite parse the document
-- again; a boolean at such a path makes the row irregular (matched by
-- kci_match), like an array or an object. The tree index alone goes: the
-- (tree, branch) index serves a tree on its own. Documents are written by
-- the server as serialised JSON, so the json_valid checks go too; the
-- event's node id becomes a column of its own for the same reason. The
-- time indexes end with the id, like the others.

CREATE TABLE node_v6 (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    name      TEXT NOT NULL,
    state     TEXT NOT NULL,
    result    TEXT,
    parent    TEXT,
    owner     TEXT,
    grp       TEXT,
    treeid    TEXT,
    created   TEXT NOT NULL,
    updated   TEXT NOT NULL,
    timeout   TEXT NOT NULL,
    holdoff   TEXT,
    irregular INTEGER NOT NULL DEFAULT 0,
    -- data.kernel_revision.{tree,branch,commit}, data.{arch,defconfig,
    -- platform,runtime} of a regular row; no declared type, so that a
    -- number stays a number
    k_tree,
    k_branch,
    k_commit,
    d_arch,
    d_defconfig,
    d_platform,
    d_runtime,
    doc       TEXT NOT NULL
);

INSERT INTO node_v6
SELECT id, kind, name, state, result, parent, owner, grp, treeid, created, updated, timeout,
       holdoff, irr,
       CASE WHEN irr = 0 THEN json_extract(doc, '$.data.kernel_revision.tree') END,
       CASE WHEN irr = 0 THEN json_extract(doc, '$.data.kernel_revision.branch') END,
       CASE WHEN irr = 0 THEN json_extract(doc, '$.data.kernel_revision.commit') END,
       CASE WHEN irr = 0 THEN json_extract(doc, '$.data.arch') END,
       CASE WHEN irr = 0 THEN json_extract(doc, '$.data.defconfig') END,
       CASE WHEN irr = 0 THEN json_extract(doc, '$.data.platform') END,
       CASE WHEN irr = 0 THEN json_extract(doc, '$.data.runtime') END,
       doc
  FROM (SELECT *, CASE WHEN (irregular = 1
                   OR json_type(doc, '$.data.kernel_revision.tree') IN ('true', 'false')
                   OR json_type(doc, '$.data.kernel_revision.branch') IN ('true', 'false')
                   OR json_type(doc, '$.data.kernel_revision.commit') IN ('true', 'false')
                   OR json_type(doc, '$.data.arch') IN ('true', 'false')
                   OR json_type(doc, '$.data.defconfig') IN ('true', 'false')
                   OR json_type(doc, '$.data.platform') IN ('true', 'false')
                   OR json_type(doc, '$.data.runtime') IN ('true', 'false')) THEN 1 ELSE 0 END AS irr
          FROM node);

DROP TABLE node;
ALTER TABLE node_v6 RENAME TO node;

CREATE INDEX node_kind_state ON node (kind, state, id);
CREATE INDEX node_name ON node (name, id);
CREATE INDEX node_state ON node (state, id);
CREATE INDEX node_parent ON node (parent, id);
CREATE INDEX node_owner ON node (owner, id);
CREATE INDEX node_grp ON node (grp, id);
CREATE INDEX node_treeid ON node (treeid, id);
-- with the id, so that a page of a time window sorts ids from the index
-- alone
CREATE INDEX node_created ON node (created, id);
CREATE INDEX node_updated ON node (updated, id);
CREATE INDEX node_irregular ON node (irregular, id);
CREATE INDEX node_pending_timeout ON node (timeout) WHERE state IN ('running', 'available', 'closing');
CREATE INDEX node_pending_holdoff ON node (holdoff) WHERE state = 'available' AND holdoff IS NOT NULL;
CREATE INDEX node_k_tree_branch ON node (k_tree, k_branch, id);
CREATE INDEX node_k_commit ON node (k_commit, id);
CREATE INDEX node_d_arch ON node (d_arch, id);
CREATE INDEX node_d_defconfig ON node (d_defconfig, id);
CREATE INDEX node_d_platform ON node (d_platform, id);
CREATE INDEX node_d_runtime ON node (d_runtime, id);

CREATE TABLE event_v6 (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
    channel   TEXT NOT NULL,
    owner     TEXT,
    -- data.id when it is a string (the node of a node event)
    node_id   TEXT,
    data      TEXT NOT NULL,
    envelope  TEXT NOT NULL
);

INSERT INTO event_v6
SELECT seq, id, timestamp, channel, owner,
       CASE WHEN json_type(data, '$.id') = 'text' THEN json_extract(data, '$.id') END,
       data, envelope
  FROM event;

-- The sequence goes on from where it was, even past purged events.
DELETE FROM sqlite_sequence WHERE name = 'event_v6';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'event_v6', seq FROM sqlite_sequence WHERE name = 'event';

DROP TABLE event;
ALTER TABLE event_v6 RENAME TO event;

CREATE INDEX event_timestamp ON event (timestamp);
CREATE INDEX event_channel ON event (channel, seq);
CREATE INDEX event_node ON event (node_id, seq);
