//! Node SQL: one JSON document per node plus indexed columns.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::filter::{self, NODE_TABLE, filter_arms};
use super::{Notice, Outbox, StoreError, clamp};
use crate::model::node::Node;
use crate::query::{Filter, Op, QValue};
use crate::timestamp;

fn decode(doc: String) -> Result<Node, StoreError> {
    serde_json::from_str(&doc).map_err(|e| StoreError::Internal(format!("malformed node row: {e}")))
}

/// The node with this id.
pub fn get(c: &Connection, id: &str) -> Result<Option<Node>, StoreError> {
    c.query_row("SELECT doc FROM node WHERE id = ?1", [id], |r| r.get(0))
        .optional()?
        .map(decode)
        .transpose()
}

/// The columns [`answer_text`] reads, the document first.
const ANSWER_COLUMNS: &str = "doc, created, updated, timeout, holdoff";
/// How many columns [`ANSWER_COLUMNS`] has.
const ANSWER_COLUMNS_N: usize = 5;

/// The JSON text a node row is answered with: the stored document as it
/// is, unless a timestamp of the row is not in the form the server writes
/// (a row from before years were bounded): then the document as read back
/// (years clamped to 1..=9999), the way an update would write it.
fn answer_text<'r>(row: &'r rusqlite::Row) -> Result<std::borrow::Cow<'r, str>, StoreError> {
    let text = |i: usize| {
        row.get_ref(i)?
            .as_str_or_null()
            .map_err(rusqlite::Error::from)
    };
    let doc = text(0)?.unwrap_or("null");
    let mut stamps = (1..=4).map(text);
    if stamps.all(|t| t.is_ok_and(|t| t.is_none_or(timestamp::is_stored_form))) {
        return Ok(std::borrow::Cow::Borrowed(doc));
    }
    Ok(std::borrow::Cow::Owned(
        decode(doc.to_string())?.to_json().to_string(),
    ))
}

/// The JSON text the node with this id is answered with (its stored
/// document, see [`answer_text`]).
pub fn get_doc(c: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {ANSWER_COLUMNS} FROM node WHERE id = ?1"))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(answer_text(row)?.into_owned())),
        None => Ok(None),
    }
}

/// The stored documents of the nodes matching `filter`, in id order, as
/// the text of a JSON array (spliced, never parsed); `None` as soon as it
/// would pass `max_bytes` (the caller streams such an answer instead).
pub fn list_text(
    c: &Connection,
    filter: &Filter,
    limit: Option<u64>,
    offset: u64,
    max_bytes: usize,
) -> Result<Option<String>, StoreError> {
    super::stream::array_text(max_bytes, |emit| each_doc(c, filter, limit, offset, emit))
}

/// Whether a node with this id exists.
pub fn exists(c: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM node WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )?)
}

/// The row of a node: columns in the order of `insert` and `update`.
fn row(node: &Node) -> Vec<Value> {
    let doc = node.to_json();
    let irregular = !filter::is_regular(&doc, &NODE_TABLE);
    let paths = filter::path_columns(&doc, &NODE_TABLE);
    let text = |s: &str| Value::Text(s.to_string());
    let opt = |s: Option<&str>| s.map_or(Value::Null, text);
    vec![
        text(&node.id),
        text(node.kind.as_str()),
        text(&node.name),
        text(node.state.as_str()),
        opt(node.result.map(|r| r.as_str())),
        opt(node.parent.as_deref()),
        opt(node.owner.as_deref()),
        opt(node.group.as_deref()),
        opt(node.treeid.as_deref()),
        Value::Text(timestamp::format(&node.created)),
        Value::Text(timestamp::format(&node.updated)),
        Value::Text(timestamp::format(&node.timeout)),
        node.holdoff
            .as_ref()
            .map_or(Value::Null, |t| Value::Text(timestamp::format(t))),
        Value::Integer(i64::from(irregular)),
    ]
    .into_iter()
    .chain(paths)
    .chain([Value::Text(doc.to_string())])
    .collect()
}

/// Stores a new node.
pub fn insert(c: &Connection, out: &mut Outbox, node: &Node) -> Result<(), StoreError> {
    out.push(Notice::Node {
        deadline: node.next_deadline(),
        settling: node.is_settling(),
    });
    let mut stmt = c.prepare_cached(
        "INSERT INTO node (id, kind, name, state, result, parent, owner, grp, treeid,
                           created, updated, timeout, holdoff, irregular,
                           k_tree, k_branch, k_commit, d_arch, d_defconfig, d_platform,
                           d_runtime, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                 ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
    )?;
    stmt.execute(rusqlite::params_from_iter(row(node)))?;
    Ok(())
}

/// Replaces a stored node; `NotFound` if it is gone.
pub fn update(c: &Connection, out: &mut Outbox, node: &Node) -> Result<(), StoreError> {
    out.push(Notice::Node {
        deadline: node.next_deadline(),
        settling: node.is_settling(),
    });
    let mut stmt = c.prepare_cached(
        "UPDATE node SET kind = ?2, name = ?3, state = ?4, result = ?5, parent = ?6,
                owner = ?7, grp = ?8, treeid = ?9, created = ?10, updated = ?11,
                timeout = ?12, holdoff = ?13, irregular = ?14,
                k_tree = ?15, k_branch = ?16, k_commit = ?17, d_arch = ?18,
                d_defconfig = ?19, d_platform = ?20, d_runtime = ?21, doc = ?22
         WHERE id = ?1",
    )?;
    let n = stmt.execute(rusqlite::params_from_iter(row(node)))?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Nodes matching `filter` in id order; `limit` None means all.
pub fn list(
    c: &Connection,
    filter: &Filter,
    limit: Option<u64>,
    offset: u64,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut docs = Vec::new();
    let mut failed = None;
    each_doc(
        c,
        filter,
        limit,
        offset,
        &mut |doc| match serde_json::from_str(doc) {
            Ok(value) => {
                docs.push(value);
                true
            }
            Err(err) => {
                failed = Some(err);
                false
            }
        },
    )?;
    match failed {
        Some(err) => Err(err.into()),
        None => Ok(docs),
    }
}

/// Most rows one statement of a list reads: a long list is read in pages
/// of its own, one after the other by id, each in a read transaction of
/// its own (no snapshot is held while a slow client reads, which would
/// keep the WAL from being checkpointed), and never more than a page of
/// rowids picked at once.
const PAGE_ROWS: u64 = 500;
/// A page is cut short once its documents pass this many bytes.
const PAGE_BYTES: usize = 1 << 20;

/// Gives the text each node matching `filter` is answered with (its stored
/// document, see [`answer_text`]) to `emit`, in id order, until `emit`
/// answers `false`: answers are spliced from stored text, not parsed and
/// written again. Read in keyset pages (see [`PAGE_ROWS`]): a list that
/// takes long to read sees nodes written meanwhile after its position.
pub fn each_doc(
    c: &Connection,
    filter: &Filter,
    limit: Option<u64>,
    offset: u64,
    emit: &mut dyn FnMut(&str) -> bool,
) -> Result<(), StoreError> {
    let (arms, args) = filter_arms(filter, &NODE_TABLE)?;
    let mut remaining = limit.unwrap_or(u64::MAX);
    let mut offset = offset;
    let mut after: Option<String> = None;
    while remaining > 0 {
        let want = remaining.min(PAGE_ROWS);
        let (page, more) = read_page(c, &arms, &args, after.as_deref(), want, offset)?;
        offset = 0;
        remaining = remaining.saturating_sub(page.len() as u64);
        for (id, doc) in page {
            if !emit(&doc) {
                return Ok(());
            }
            after = Some(id);
        }
        if !more {
            break;
        }
    }
    Ok(())
}

/// One page: up to `want` (id, answer text) pairs after the id `after`,
/// skipping `offset`, and whether more may follow.
fn read_page(
    c: &Connection,
    arms: &[String],
    args: &[Value],
    after: Option<&str>,
    want: u64,
    offset: u64,
) -> Result<(Vec<(String, String)>, bool), StoreError> {
    let mut args = args.to_vec();
    let key = after.map(|id| {
        args.push(Value::Text(id.to_string()));
        args.len()
    });
    args.push(Value::Integer(clamp(want)));
    args.push(Value::Integer(clamp(offset)));
    let n = args.len();
    let mut stmt = c.prepare_cached(&page_sql(arms, key, n - 1, n))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    let (mut page, mut bytes) = (Vec::new(), 0);
    while let Some(row) = rows.next()? {
        let doc = answer_text(row)?.into_owned();
        bytes += doc.len();
        page.push((row.get::<_, String>(ANSWER_COLUMNS_N)?, doc));
        if bytes >= PAGE_BYTES {
            return Ok((page, true));
        }
    }
    let more = page.len() as u64 == want;
    Ok((page, more))
}

/// How many nodes match `filter`: over one index per arm of the filter
/// (see `Where::arms`), or read from the counts kept per kind and state.
pub fn count(c: &Connection, filter: &Filter) -> Result<u64, StoreError> {
    if let Some(n) = kept_count(c, filter)? {
        return Ok(n);
    }
    let (arms, args) = filter_arms(filter, &NODE_TABLE)?;
    let sum: Vec<String> = arms
        .iter()
        .map(|arm| format!("(SELECT count(*) FROM node WHERE {arm})"))
        .collect();
    let mut stmt = c.prepare_cached(&format!("SELECT {}", sum.join(" + ")))?;
    let n: i64 = stmt.query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// The number of matches of a filter made of equalities on `kind` and
/// `state` alone (none at all included), read from the counts the schema
/// keeps per (kind, state) (`sql/0007`); `None` for any other filter.
fn kept_count(c: &Connection, filter: &Filter) -> Result<Option<u64>, StoreError> {
    let (mut kind, mut state) = (None, None);
    for cond in &filter.conditions {
        let (Op::Eq, QValue::Str(value)) = (&cond.op, &cond.value) else {
            return Ok(None);
        };
        match cond.path.as_slice() {
            [field] if field == "kind" => kind = Some(value),
            [field] if field == "state" => state = Some(value),
            _ => return Ok(None),
        }
    }
    let mut stmt = c.prepare_cached(
        "SELECT coalesce(sum(n), 0) FROM node_count
          WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR state = ?2)",
    )?;
    let n: i64 = stmt.query_row(rusqlite::params![kind, state], |r| r.get(0))?;
    Ok(Some(n.max(0) as u64))
}

/// The SELECT of a page of nodes matching the disjoint `arms` of a filter,
/// in id order, their ids after [`ANSWER_COLUMNS`], with the limit and
/// offset in parameters `?lim` and `?off` and, for the pages after the
/// first, the last id of the page before in `?after`. The page picks its
/// rowids first (from an index alone where one covers the filter: a time
/// window sorts its ids without reading a row) and reads only the rows it
/// answers. Several arms are merged in id order, each walked along its own
/// index.
fn page_sql(arms: &[String], after: Option<usize>, lim: usize, off: usize) -> String {
    let keyed: Vec<String> = match after {
        Some(key) => arms
            .iter()
            .map(|arm| format!("({arm}) AND id > ?{key}"))
            .collect(),
        None => arms.to_vec(),
    };
    let window = format!("ORDER BY id LIMIT ?{lim} OFFSET ?{off}");
    format!(
        "SELECT {ANSWER_COLUMNS}, id FROM node WHERE rowid IN ({}) ORDER BY id",
        page_rowids(&keyed, &window)
    )
}

/// The SELECT of the rowids of a page (`window`: its ORDER BY and LIMIT).
fn page_rowids(arms: &[String], window: &str) -> String {
    match arms {
        [cond] => format!("SELECT rowid FROM node WHERE {cond} {window}"),
        _ => format!("SELECT r FROM ({} {window})", union(arms, "rowid AS r, id")),
    }
}

/// `columns` of the rows of each arm, one SELECT after the other.
fn union(arms: &[String], columns: &str) -> String {
    let selects: Vec<String> = arms
        .iter()
        .map(|arm| format!("SELECT {columns} FROM node WHERE {arm}"))
        .collect();
    selects.join(" UNION ALL ")
}

/// The query plan SQLite picks for the rowids of a page of 50 nodes (the
/// part of [`page_sql`] whose plan depends on the filter; for tests that
/// check that filters are served by an index).
pub fn explain_list(c: &Connection, filter: &Filter) -> Result<Vec<String>, StoreError> {
    let (arms, mut args) = filter_arms(filter, &NODE_TABLE)?;
    args.push(Value::Integer(50));
    args.push(Value::Integer(0));
    let n = args.len();
    let rowids = page_rowids(&arms, &format!("ORDER BY id LIMIT ?{} OFFSET ?{n}", n - 1));
    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {rowids}"))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        r.get::<_, String>(3)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Most nodes one timer pass handles per rule (the rest wait for the next).
const TIMER_BATCH: i64 = 500;

fn nodes_where(
    c: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Node>, StoreError> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt.query_map(args, |r| r.get::<_, String>(0))?;
    rows.map(|doc| decode(doc?)).collect()
}

/// Pending nodes whose `timeout` has passed (oldest deadline first).
pub fn timed_out(
    c: &Connection,
    now: &crate::timestamp::Timestamp,
) -> Result<Vec<Node>, StoreError> {
    nodes_where(
        c,
        "SELECT doc FROM node INDEXED BY node_pending_timeout
         WHERE state IN ('running', 'available', 'closing') AND timeout < ?1
         ORDER BY timeout LIMIT ?2",
        &[&timestamp::format(now), &TIMER_BATCH],
    )
}

/// Available nodes whose `holdoff` has passed.
pub fn held_off(
    c: &Connection,
    now: &crate::timestamp::Timestamp,
) -> Result<Vec<Node>, StoreError> {
    nodes_where(
        c,
        "SELECT doc FROM node INDEXED BY node_pending_holdoff
         WHERE state = 'available' AND holdoff IS NOT NULL AND holdoff < ?1
         ORDER BY holdoff LIMIT ?2",
        &[&timestamp::format(now), &TIMER_BATCH],
    )
}

/// Closing nodes with no pending descendant: those with descendants, all
/// done, and those without any child that last changed before
/// `childless_before` (children may still be attached right after).
pub fn closing_without_pending(
    c: &Connection,
    childless_before: &crate::timestamp::Timestamp,
) -> Result<Vec<Node>, StoreError> {
    let closing = nodes_where(
        c,
        "SELECT doc FROM node WHERE state = 'closing'
           AND (EXISTS (SELECT 1 FROM node AS child WHERE child.parent = node.id)
                OR updated < ?2)
         ORDER BY id LIMIT ?1",
        &[&TIMER_BATCH, &timestamp::format(childless_before)],
    )?;
    let mut ready = Vec::new();
    for node in closing {
        if !has_pending_descendant(c, &node.id)? {
            ready.push(node);
        }
    }
    Ok(ready)
}

/// Whether some child, grandchild, ... of `id` is still pending.
pub fn has_pending_descendant(c: &Connection, id: &str) -> Result<bool, StoreError> {
    // UNION (not UNION ALL) ends even if a PUT made a parent cycle.
    Ok(c.query_row(
        "WITH RECURSIVE d(id) AS (
             SELECT id FROM node WHERE parent = ?1
             UNION SELECT n.id FROM node n JOIN d ON n.parent = d.id)
         SELECT EXISTS (SELECT 1 FROM node WHERE id IN (SELECT id FROM d)
                        AND state IN ('running', 'available', 'closing'))",
        [id],
        |r| r.get(0),
    )?)
}

/// The earliest pending deadline (timeout of a pending node, holdoff of an
/// available one, end of a childless closing node's grace), if any.
pub fn next_deadline(
    c: &Connection,
    grace: chrono::Duration,
) -> Result<Option<crate::timestamp::Timestamp>, StoreError> {
    let (deadline, childless): (Option<String>, Option<String>) = c.query_row(
        "SELECT (SELECT min(t) FROM (
                     SELECT min(timeout) AS t FROM node INDEXED BY node_pending_timeout
                      WHERE state IN ('running', 'available', 'closing')
                     UNION ALL
                     SELECT min(holdoff) FROM node INDEXED BY node_pending_holdoff
                      WHERE state = 'available' AND holdoff IS NOT NULL)),
                (SELECT min(updated) FROM node WHERE state = 'closing'
                    AND NOT EXISTS (SELECT 1 FROM node AS child WHERE child.parent = node.id))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let deadline = deadline.as_deref().and_then(timestamp::parse);
    let childless = childless
        .as_deref()
        .and_then(timestamp::parse)
        .and_then(|t| t.checked_add_signed(grace));
    Ok(match (deadline, childless) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Deletes nodes created before `cutoff`, except checkouts; how many.
pub fn purge(c: &Connection, cutoff: &crate::timestamp::Timestamp) -> Result<usize, StoreError> {
    Ok(c.execute(
        "DELETE FROM node WHERE created < ?1 AND kind != 'checkout'",
        [timestamp::format(cutoff)],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::NODE_SCHEMA;
    use crate::store::events;
    use crate::store::testing::temp_store;
    use serde_json::json;

    fn plan(pairs: &[(&str, &str)]) -> Vec<String> {
        let (_dir, store) = temp_store();
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let filter = Filter::parse(&params, &[], &NODE_SCHEMA).expect("valid filter");
        store.read(|c| explain_list(c, &filter)).expect("plan")
    }

    /// The filters pipelines use are served by an index, never a full scan.
    #[test]
    fn typical_filters_use_an_index() {
        let cases: &[&[(&str, &str)]] = &[
            &[("kind", "kbuild"), ("state", "done")],
            &[
                ("data.kernel_revision.tree", "mainline"),
                ("data.kernel_revision.branch", "master"),
            ],
            &[("data.kernel_revision.commit", "abc")],
            &[("data.arch", "x86_64")],
            &[("data.defconfig", "defconfig")],
            &[("data.platform", "qemu")],
            &[("data.runtime", "lava")],
            &[("parent", "0123456789abcdef01234567")],
            &[("name", "baseline")],
            &[("owner", "bob")],
            &[("group", "kunit")],
            &[("treeid", "t1")],
            &[("created__gt", "2024-01-01"), ("created__lt", "2024-02-01")],
            &[
                ("updated__gte", "2024-01-01"),
                ("updated__lt", "2024-01-02"),
            ],
            &[
                ("kind", "test"),
                ("data.platform", "qemu"),
                ("result", "fail"),
            ],
            // the benchmark's queries
            &[("kind", "test"), ("state", "done")],
            &[("kind", "checkout")],
            &[("name__re", "^baseline-x86")],
        ];
        for pairs in cases {
            let plan = plan(pairs);
            let text = plan.join(" | ");
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN node")),
                "{pairs:?} scans the table: {text}"
            );
            assert!(text.contains("USING"), "{pairs:?}: {text}");
        }
    }

    #[test]
    fn tree_and_branch_use_the_composite_index() {
        let text = plan(&[
            ("data.kernel_revision.tree", "mainline"),
            ("data.kernel_revision.branch", "master"),
        ])
        .join(" | ");
        assert!(text.contains("node_k_tree_branch"), "{text}");
    }

    /// Lists longer than a page are read page after page by id: every
    /// match once, in id order, the offset and limit counted over the whole
    /// list, for filters of one arm and of two (indexed paths, with
    /// irregular rows).
    #[test]
    fn long_lists_are_read_in_keyset_pages() {
        let (_dir, store) = temp_store();
        let total = 3 * PAGE_ROWS as usize + 17;
        store
            .write(move |c, out| {
                for i in 0..total {
                    // every seventh row irregular (an array at data.arch)
                    let arch = if i % 7 == 0 { json!(["x86"]) } else { json!("x86") };
                    let group = if i % 3 == 0 { "a" } else { "b" };
                    let body = json!({"name": format!("n{i}"), "path": ["p"], "kind": "process", "group": group,
                                      "data": {"arch": arch}});
                    let node = Node::create(&body, "u", timestamp::now()).expect("valid");
                    insert(c, out, &node)?;
                    events::append_node_event(c, out, "test", &node, false, None)?;
                }
                Ok::<_, StoreError>(())
            })
            .expect("insert");
        // events are read in pages by sequence number the same way
        let seqs = |limit| {
            let q = events::EventQuery {
                limit,
                ..Default::default()
            };
            let list = store.read(|c| events::list(c, &q)).expect("events");
            list.iter()
                .map(|e| e["sequence_id"].as_i64().expect("seq"))
                .collect::<Vec<_>>()
        };
        let want: Vec<i64> = (1..=total as i64).collect();
        assert_eq!(seqs(None), want);
        assert_eq!(seqs(Some(PAGE_ROWS + 1)), want[..PAGE_ROWS as usize + 1]);
        let all: Vec<serde_json::Value> = store
            .read(|c| list(c, &Filter::default(), None, 0))
            .expect("list");
        assert_eq!(all.len(), total);
        let ids: Vec<&str> = all.iter().map(|n| n["id"].as_str().expect("id")).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "every node once, in id order");
        for (pairs, want) in [
            (vec![("group", "a")], total.div_ceil(3)),
            (vec![("data.arch", "x86")], total),
            (
                vec![("group", "b"), ("data.arch", "x86")],
                total - total.div_ceil(3),
            ),
        ] {
            let params: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let filter = Filter::parse(&params, &[], &NODE_SCHEMA).expect("valid");
            let found = store.read(|c| list(c, &filter, None, 0)).expect("list");
            assert_eq!(found.len(), want, "{pairs:?}");
            let window = store
                .read(|c| list(c, &filter, Some(PAGE_ROWS + 3), 9))
                .expect("window");
            let end = (9 + PAGE_ROWS as usize + 3).min(found.len());
            assert_eq!(window[..], found[9..end], "{pairs:?}");
        }
    }

    #[test]
    fn a_kind_alone_walks_its_ids_in_order() {
        let text = plan(&[("kind", "checkout")]).join(" | ");
        assert!(text.contains("node_kind (kind=?)"), "{text}");
        assert!(!text.contains("TEMP B-TREE"), "no sort needed: {text}");
    }

    #[test]
    fn indexed_paths_merge_their_arms_in_id_order() {
        let text = plan(&[
            ("data.kernel_revision.tree", "mainline"),
            ("data.kernel_revision.branch", "master"),
        ])
        .join(" | ");
        assert!(text.contains("MERGE (UNION ALL)"), "{text}");
        assert!(!text.contains("TEMP B-TREE"), "no sort needed: {text}");
        assert!(!text.contains("MULTI-INDEX OR"), "{text}");
    }

    #[test]
    fn an_anchored_name_pattern_walks_the_name_index() {
        let text = plan(&[("name__re", "^baseline-x86")]).join(" | ");
        assert!(text.contains("node_name (name>? AND name<?)"), "{text}");
    }

    #[test]
    fn a_time_window_sorts_ids_from_its_index() {
        let text =
            plan(&[("created__gt", "2024-01-01"), ("created__lt", "2024-02-01")]).join(" | ");
        assert!(text.contains("COVERING INDEX node_created"), "{text}");
    }

    #[test]
    fn plain_listing_walks_the_primary_key() {
        let text = plan(&[]).join(" | ");
        assert!(!text.contains("TEMP B-TREE"), "no sort needed: {text}");
    }
}
