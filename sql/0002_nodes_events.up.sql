-- Schema v2: the full node surface and the event history.

-- 1 when some indexed `data` path of the node runs through an array or ends
-- in an object: such rows are matched by kci_match() instead of the
-- expression indexes (MongoDB array semantics stay exact).
ALTER TABLE node ADD COLUMN irregular INTEGER NOT NULL DEFAULT 0;

-- Filters people use return rows in id order: every index ends with id so
-- that "filter ... ORDER BY id LIMIT n" walks the index without sorting.
DROP INDEX node_kind_state;
DROP INDEX node_name;
DROP INDEX node_state;
DROP INDEX node_parent;
DROP INDEX node_owner;
DROP INDEX node_grp;
DROP INDEX node_treeid;
DROP INDEX node_created;
DROP INDEX node_updated;
CREATE INDEX node_kind_state ON node (kind, state, id);
CREATE INDEX node_name ON node (name, id);
CREATE INDEX node_state ON node (state, id);
CREATE INDEX node_parent ON node (parent, id);
CREATE INDEX node_owner ON node (owner, id);
CREATE INDEX node_grp ON node (grp, id);
CREATE INDEX node_treeid ON node (treeid, id);
CREATE INDEX node_created ON node (created);
CREATE INDEX node_updated ON node (updated);
CREATE INDEX node_irregular ON node (irregular, id);
-- The timer's work list: pending nodes by deadline.
CREATE INDEX node_pending_timeout ON node (timeout) WHERE state IN ('running', 'available', 'closing');
CREATE INDEX node_pending_holdoff ON node (holdoff) WHERE state = 'available' AND holdoff IS NOT NULL;

-- The data paths pipelines query most (ending in id, like the others), and
-- the tree + branch pair that dashboards and schedulers ask for together.
CREATE INDEX node_k_tree ON node (json_extract(doc, '$.data.kernel_revision.tree'), id);
CREATE INDEX node_k_branch ON node (json_extract(doc, '$.data.kernel_revision.branch'), id);
CREATE INDEX node_k_tree_branch ON node (json_extract(doc, '$.data.kernel_revision.tree'),
                                         json_extract(doc, '$.data.kernel_revision.branch'), id);
CREATE INDEX node_k_commit ON node (json_extract(doc, '$.data.kernel_revision.commit'), id);
CREATE INDEX node_d_arch ON node (json_extract(doc, '$.data.arch'), id);
CREATE INDEX node_d_defconfig ON node (json_extract(doc, '$.data.defconfig'), id);
CREATE INDEX node_d_platform ON node (json_extract(doc, '$.data.platform'), id);
CREATE INDEX node_d_runtime ON node (json_extract(doc, '$.data.runtime'), id);

-- Every stored event (node events, /publish), written in the transaction
-- that caused it. seq is the contract's sequence_id: strictly increasing,
-- never reused (AUTOINCREMENT).
CREATE TABLE event (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
    channel   TEXT NOT NULL,
    owner     TEXT,
    data      TEXT NOT NULL CHECK (json_valid(data)),
    -- the CloudEvent as delivered (same id and time on every delivery)
    envelope  TEXT NOT NULL CHECK (json_valid(envelope))
);
CREATE INDEX event_timestamp ON event (timestamp);
CREATE INDEX event_channel ON event (channel, seq);
CREATE INDEX event_node ON event (json_extract(data, '$.id'), seq);
