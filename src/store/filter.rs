//! A query-language [`Filter`] as SQL: scalar columns and the columns of
//! indexed JSON paths where a table has them, `kci_match` (the Rust
//! matcher) for every other field. Keys never reach SQL as text and values
//! are always bound. The node column map here must agree with the row
//! mapping in `store/nodes.rs` and the schema in `sql/`.

use serde_json::Value;

use super::StoreError;
use crate::query::{Condition, Filter, Op, QValue};

/// A bound SQL parameter produced by [`to_sql`].
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// Bound as TEXT.
    Text(String),
    /// Bound as INTEGER.
    Int(i64),
}

/// How a collection's fields map to SQL: scalar columns, the columns that
/// hold the scalar at an indexed JSON path, and the document column for
/// everything else.
pub struct SqlTable {
    /// The JSON document column.
    pub doc: &'static str,
    /// Fields stored in scalar text columns: (field, column).
    pub columns: &'static [(&'static str, &'static str)],
    /// Dotted fields with an indexed column of their own: (field, column).
    /// The column holds the JSON scalar at the path with its type (text,
    /// integer or real; NULL when missing or null) in a regular row, and
    /// NULL in an irregular one; [`path_columns`] fills them.
    pub indexed_paths: &'static [(&'static str, &'static str)],
    /// Column flagging rows whose indexed paths run through arrays or end
    /// in objects or booleans; such rows are matched by `kci_match`
    /// instead.
    pub irregular: Option<&'static str>,
}

/// The node table: the columns that `nodes::row` fills, and the paths
/// that have an indexed column in `sql/`.
pub const NODE_TABLE: SqlTable = SqlTable {
    doc: "doc",
    columns: &[
        ("id", "id"),
        ("kind", "kind"),
        ("name", "name"),
        ("state", "state"),
        ("result", "result"),
        ("parent", "parent"),
        ("owner", "owner"),
        ("group", "grp"),
        ("treeid", "treeid"),
        ("created", "created"),
        ("updated", "updated"),
        ("timeout", "timeout"),
        ("holdoff", "holdoff"),
    ],
    indexed_paths: &[
        ("data.kernel_revision.tree", "k_tree"),
        ("data.kernel_revision.branch", "k_branch"),
        ("data.kernel_revision.commit", "k_commit"),
        ("data.arch", "d_arch"),
        ("data.defconfig", "d_defconfig"),
        ("data.platform", "d_platform"),
        ("data.runtime", "d_runtime"),
    ],
    irregular: Some("irregular"),
};

/// Tables matched only through their document.
pub const fn doc_table(doc: &'static str) -> SqlTable {
    SqlTable {
        doc,
        columns: &[],
        indexed_paths: &[],
        irregular: None,
    }
}

/// Most values of a list bound one variable each; see `Builder::list`. A
/// condition then binds at most this many plus one (its `kci_match`), so
/// `MAX_CONDITIONS` of them stay far below SQLite's 32,766 variables.
const INLINE_LIST_MAX: usize = 32;

struct Builder {
    params: Vec<Param>,
}

impl Builder {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("?{}", self.params.len())
    }

    fn text(&mut self, s: &str) -> String {
        self.bind(Param::Text(s.to_string()))
    }

    /// A list as the right side of `IN`. Up to [`INLINE_LIST_MAX`] values
    /// are bound one by one (the planner sees each, and a one-value list is
    /// an equality an index walks in id order). A longer list is bound as
    /// ONE JSON array read back by `json_each`: a query at the limits (100
    /// lists of 10,000 values) would otherwise need a million variables,
    /// far over SQLite's 32,766, and SQL text that grows with the lists.
    /// SQLite reads such a list into a temporary index once per statement,
    /// and an index on the column serves the `IN` as it does an inline list.
    fn list(&mut self, items: &[String]) -> String {
        if items.len() <= INLINE_LIST_MAX {
            let terms: Vec<String> = items.iter().map(|i| self.text(i)).collect();
            return format!("({})", terms.join(", "));
        }
        let json = serde_json::to_string(items).expect("a list of strings always serialises");
        format!("(SELECT value FROM json_each({}))", self.text(&json))
    }
}

/// A condition on a scalar TEXT column (never an array, never a number).
fn column_sql(b: &mut Builder, col: &str, cond: &Condition) -> String {
    match (&cond.op, &cond.value) {
        // null: `lte`/`gte` are equality, `lt`/`gt` hold for nothing (MongoDB).
        (Op::Eq | Op::Lte | Op::Gte, QValue::Null) => format!("{col} IS NULL"),
        (Op::Lt | Op::Gt, QValue::Null) => "0".into(),
        (Op::Eq, QValue::Str(v)) => format!("{col} = {}", b.text(v)),
        (Op::Eq, _) => "0".into(),
        (Op::Ne, QValue::Null) => format!("{col} IS NOT NULL"),
        (Op::Ne, QValue::Str(v)) => format!("{col} IS NOT {}", b.text(v)),
        (Op::Ne, _) => "1".into(),
        (Op::In, QValue::List(items)) => format!("{col} IN {}", b.list(items)),
        (Op::Nin, QValue::List(items)) => {
            format!("({col} IS NULL OR {col} NOT IN {})", b.list(items))
        }
        (Op::Re, QValue::Str(p)) => match prefix_range(p) {
            // an index on the column walks only the names with the prefix
            Some((lo, hi)) => format!(
                "({col} >= {} AND {col} < {} AND {col} REGEXP {})",
                b.text(&lo),
                b.text(&hi),
                b.text(p)
            ),
            None => format!("{col} REGEXP {}", b.text(p)),
        },
        (op @ (Op::Lt | Op::Gt | Op::Lte | Op::Gte), QValue::Str(v)) => {
            format!("{col} {} {}", comparison(*op), b.text(v))
        }
        _ => "0".into(),
    }
}

/// For a pattern anchored at the start with a literal prefix (`^baseline-`
/// and so on), the range of strings `[lo, hi)` that every match lies in:
/// strings starting with the prefix sort from it up to (not including) the
/// prefix with its last character's code point increased (UTF-8 compares
/// in code point order). `None` when the pattern is not so anchored or has
/// an alternation (`^a|b` also matches "b" anywhere).
fn prefix_range(pattern: &str) -> Option<(String, String)> {
    let rest = pattern.strip_prefix('^')?;
    if pattern.contains('|') {
        return None;
    }
    let mut prefix: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '/' | ':' | ',' | ' ' | '='))
        .collect();
    // a quantifier after the last character makes that character optional
    let next = rest[prefix.len()..].chars().next();
    if matches!(next, Some('?' | '*' | '{')) {
        prefix.pop();
    }
    let last = prefix.pop()?;
    let bumped = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32)?;
    let lo = format!("{prefix}{last}");
    Some((lo, format!("{prefix}{bumped}")))
}

fn comparison(op: Op) -> &'static str {
    match op {
        Op::Lt => "<",
        Op::Gt => ">",
        Op::Lte => "<=",
        _ => ">=",
    }
}

/// A condition on the column of an indexed JSON path of a regular row (no
/// arrays on the way, a string, a number or nothing at the end; never a
/// boolean), so that the column's index serves it. Type brackets as in
/// MongoDB: text compares with text, numbers with numbers.
fn path_sql(b: &mut Builder, col: &str, cond: &Condition) -> String {
    let e = col;
    let t = format!("typeof({col})");
    let numeric = format!("{t} IN ('integer', 'real')");
    match (&cond.op, &cond.value) {
        (Op::Eq | Op::Lte | Op::Gte, QValue::Null) => format!("{e} IS NULL"),
        (Op::Lt | Op::Gt, QValue::Null) => "0".into(),
        (Op::Eq, QValue::Str(v)) => format!("{e} = {}", b.text(v)),
        (Op::Eq, QValue::Int(n)) => format!("({e} = {} AND {numeric})", b.bind(Param::Int(*n))),
        // Booleans make a row irregular.
        (Op::Eq, QValue::Bool(_)) => "0".into(),
        (Op::Ne, QValue::Null) => format!("{e} IS NOT NULL"),
        (Op::Ne, QValue::Str(v)) => format!("{e} IS NOT {}", b.text(v)),
        (Op::Ne, QValue::Int(n)) => {
            format!("NOT ({e} IS {} AND {numeric})", b.bind(Param::Int(*n)))
        }
        (Op::Ne, QValue::Bool(_)) => "1".into(),
        (Op::In, QValue::List(items)) => format!("{e} IN {}", b.list(items)),
        (Op::Nin, QValue::List(items)) => {
            format!("({e} IS NULL OR {e} NOT IN {})", b.list(items))
        }
        (Op::Re, QValue::Str(p)) => format!("{e} REGEXP {}", b.text(p)),
        (op @ (Op::Lt | Op::Gt | Op::Lte | Op::Gte), QValue::Str(v)) => {
            format!("({e} {} {} AND {t} = 'text')", comparison(*op), b.text(v))
        }
        (op @ (Op::Lt | Op::Gt | Op::Lte | Op::Gte), QValue::Int(n)) => {
            format!(
                "({e} {} {} AND {numeric})",
                comparison(*op),
                b.bind(Param::Int(*n))
            )
        }
        _ => "0".into(),
    }
}

/// Whether `path_sql` of `cond` may hold for a NULL column: null itself,
/// and the negations (`ne`, `nin`), which a missing value satisfies.
fn holds_on_null(cond: &Condition) -> bool {
    matches!(
        (&cond.op, &cond.value),
        (Op::Eq | Op::Lte | Op::Gte, QValue::Null) | (Op::Ne | Op::Nin, _)
    )
}

/// A filter as SQL: the conditions every match meets, and for conditions
/// on indexed paths the two disjoint arms a match is in (a regular row
/// meets them on its path columns, an irregular one through `kci_match`).
/// Parameters are numbered once for the whole filter, so every arm binds
/// the same list.
pub struct Where {
    common: Vec<String>,
    arms: Option<(String, String)>,
    /// The parameters, in the order of their numbers.
    pub params: Vec<Param>,
}

impl Where {
    /// One WHERE clause for the whole filter.
    pub fn clause(&self) -> String {
        let mut terms = self.common.clone();
        if let Some((regular, irregular)) = &self.arms {
            terms.push(format!("(({regular}) OR ({irregular}))"));
        }
        conjunction(terms)
    }

    /// The filter as WHERE clauses that no row meets twice: one, or one
    /// per arm when there are conditions on indexed paths. A count or an
    /// id-ordered page over the arms (added up, or merged) is served by one
    /// index walk per arm, where the single clause's OR would make SQLite
    /// collect and sort the rowids of every match.
    pub fn arms(&self) -> Vec<String> {
        match &self.arms {
            None => vec![self.clause()],
            Some((regular, irregular)) => [regular, irregular]
                .iter()
                .map(|arm| {
                    let mut terms = self.common.clone();
                    terms.push(format!("({arm})"));
                    conjunction(terms)
                })
                .collect(),
        }
    }
}

fn conjunction(terms: Vec<String>) -> String {
    if terms.is_empty() {
        "1".to_string()
    } else {
        terms.join(" AND ")
    }
}

/// Translates a filter into SQL with bound parameters. Keys never reach
/// SQL as text: columns and JSON paths come from `table`, every other field
/// is matched by `kci_match(doc, <condition as JSON>)`.
pub fn to_where(filter: &Filter, table: &SqlTable) -> Result<Where, serde_json::Error> {
    let mut b = Builder { params: Vec::new() };
    let mut common = Vec::new();
    // Conditions on indexed paths: for regular rows on the path's column
    // (served by its index), for irregular rows by kci_match.
    // (A_reg OR A_irr) AND (B_reg OR B_irr) is the same as
    // (A_reg AND B_reg AND regular) OR (A_irr AND B_irr AND irregular)
    // (a row is one or the other), whose regular arm one composite index
    // serves with all its conditions together.
    let mut regular = Vec::new();
    let mut exact = Vec::new();
    // Whether some regular condition may hold on NULL, which the path
    // columns of every irregular row hold.
    let mut null_may_match = false;
    for cond in &filter.conditions {
        let field = cond.path.join(".");
        let column = table.columns.iter().find(|(f, _)| *f == field);
        let indexed = table.indexed_paths.iter().find(|(f, _)| *f == field);
        match (column, indexed, table.irregular) {
            (Some((_, col)), _, _) => common.push(column_sql(&mut b, col, cond)),
            (None, Some((_, col)), Some(_)) => {
                regular.push(path_sql(&mut b, col, cond));
                null_may_match |= holds_on_null(cond);
                let json = b.text(&serde_json::to_string(cond)?);
                exact.push(format!("kci_match({}, {json})", table.doc));
            }
            _ => {
                let json = b.text(&serde_json::to_string(cond)?);
                common.push(format!("kci_match({}, {json})", table.doc));
            }
        }
    }
    let arms = match (regular.is_empty(), table.irregular) {
        (false, Some(flag)) => {
            // Only regular rows have a value in a path column: when no
            // regular condition holds on NULL, the flag need not be read
            // (so an index on the path columns alone answers the regular
            // arm, counts too), and the arms are disjoint all the same.
            if null_may_match {
                regular.push(format!("{flag} = 0"));
            }
            exact.insert(0, format!("{flag} = 1"));
            Some((regular.join(" AND "), exact.join(" AND ")))
        }
        _ => None,
    };
    Ok(Where {
        common,
        arms,
        params: b.params,
    })
}

/// Translates a filter into one WHERE clause with bound parameters (see
/// [`to_where`]).
pub fn to_sql(
    filter: &Filter,
    table: &SqlTable,
) -> Result<(String, Vec<Param>), serde_json::Error> {
    let w = to_where(filter, table)?;
    Ok((w.clause(), w.params))
}

/// What an indexed path of `doc` holds.
enum AtPath<'a> {
    /// Nothing: the path ends early (a missing key, or a string or number
    /// on the way).
    Nothing,
    /// A string, a number or null.
    Scalar(&'a Value),
    /// An array on the way or at the end, an object or a boolean at the end.
    Irregular,
}

fn at_path<'a>(doc: &'a Value, field: &str) -> AtPath<'a> {
    let mut current = doc;
    for step in field.split('.') {
        match current {
            Value::Object(map) => match map.get(step) {
                Some(next) => current = next,
                None => return AtPath::Nothing,
            },
            Value::Array(_) | Value::Bool(_) => return AtPath::Irregular,
            _ => return AtPath::Nothing,
        }
    }
    match current {
        Value::Array(_) | Value::Object(_) | Value::Bool(_) => AtPath::Irregular,
        scalar => AtPath::Scalar(scalar),
    }
}

/// Whether the indexed paths of `doc` are regular: no array on the way and
/// a string, a number, null or nothing at the end. Irregular rows bypass
/// the indexes.
pub fn is_regular(doc: &Value, table: &SqlTable) -> bool {
    table
        .indexed_paths
        .iter()
        .all(|(field, _)| !matches!(at_path(doc, field), AtPath::Irregular))
}

/// The values of the indexed path columns of `doc`, in the order of
/// `table.indexed_paths`: each scalar with its SQL type, NULL when missing
/// or null, and all NULL for an irregular document.
pub fn path_columns(doc: &Value, table: &SqlTable) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as Sql;
    let regular = is_regular(doc, table);
    table
        .indexed_paths
        .iter()
        .map(|(field, _)| match (regular, at_path(doc, field)) {
            (true, AtPath::Scalar(Value::String(s))) => Sql::Text(s.clone()),
            (true, AtPath::Scalar(Value::Number(n))) => match n.as_i64() {
                Some(i) => Sql::Integer(i),
                None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            _ => Sql::Null,
        })
        .collect()
}

fn bind_all(params: Vec<Param>) -> Vec<rusqlite::types::Value> {
    params
        .into_iter()
        .map(|p| match p {
            Param::Text(s) => rusqlite::types::Value::Text(s),
            Param::Int(n) => rusqlite::types::Value::Integer(n),
        })
        .collect()
}

/// SQL for a filter over `table`, parameters ready to bind.
pub fn filter_sql(
    filter: &Filter,
    table: &SqlTable,
) -> Result<(String, Vec<rusqlite::types::Value>), StoreError> {
    let (sql, params) = to_sql(filter, table)?;
    Ok((sql, bind_all(params)))
}

/// The disjoint arms of a filter over `table` (see [`Where::arms`]),
/// parameters ready to bind.
pub fn filter_arms(
    filter: &Filter,
    table: &SqlTable,
) -> Result<(Vec<String>, Vec<rusqlite::types::Value>), StoreError> {
    let w = to_where(filter, table)?;
    Ok((w.arms(), bind_all(w.params)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::testing::params;
    use crate::query::{MAX_CONDITIONS, MAX_LIST_ELEMENTS, NODE_SCHEMA};
    use crate::store::nodes;
    use crate::store::testing::temp_store;
    use serde_json::json;

    #[test]
    fn sql_uses_columns_and_indexed_paths_and_binds_everything() {
        let filter = Filter::parse(
            &params(&[
                ("kind", "kbuild"),
                ("data.arch", "x86_64"),
                ("path", "checkout'; DROP TABLE node; --"),
                ("name__re", "^a"),
            ]),
            &[],
            &NODE_SCHEMA,
        )
        .expect("valid");
        let (sql, args) = to_sql(&filter, &NODE_TABLE).expect("sql");
        assert!(sql.contains("kind = ?1"), "{sql}");
        assert!(sql.contains("d_arch = ?2"), "{sql}");
        assert!(sql.contains("kci_match(doc, ?"), "{sql}");
        assert!(sql.contains("name REGEXP ?"), "{sql}");
        assert!(!sql.contains("DROP"), "values never reach SQL text: {sql}");
        assert_eq!(args[0], Param::Text("kbuild".into()));
        // kind, arch, its kci_match, path's kci_match, the name prefix range
        // (two) and the pattern
        assert_eq!(args.len(), 7);
    }

    #[test]
    fn anchored_literal_prefixes_become_ranges() {
        let range = |p: &str| prefix_range(p).map(|(lo, hi)| format!("{lo}..{hi}"));
        assert_eq!(
            range("^baseline-x86").as_deref(),
            Some("baseline-x86..baseline-x87")
        );
        assert_eq!(range("^baseline.*").as_deref(), Some("baseline..baselinf"));
        assert_eq!(range("^kunit?x").as_deref(), Some("kuni..kunj"));
        assert_eq!(range("^ab+").as_deref(), Some("ab..ac"));
        assert_eq!(range("^é").as_deref(), Some("é..ê"));
        for none in ["baseline", "^", "^.x", "^(?i)abc", "^a|b", "^[ab]", "^a*"] {
            assert_eq!(range(none), None, "{none}");
        }
    }

    #[test]
    fn a_prefix_range_keeps_every_match() {
        let (_dir, store) = temp_store();
        let names = [
            "base",
            "baseline",
            "baseline-x86",
            "baseline-x86_64",
            "baselinf",
            "basf",
        ];
        store
            .write(move |c, out| {
                for name in names {
                    let body = json!({"name": name, "path": [name]});
                    let node =
                        crate::model::node::Node::create(&body, "u", crate::timestamp::now())
                            .expect("valid");
                    nodes::insert(c, out, &node)?;
                }
                Ok::<_, StoreError>(())
            })
            .expect("insert");
        for pattern in ["^baseline", "^base", "^baseline-x86_", "^basel?", "^b"] {
            let filter =
                Filter::parse(&params(&[("name__re", pattern)]), &[], &NODE_SCHEMA).expect("valid");
            let found: Vec<String> = store
                .read(|c| nodes::list(c, &filter, None, 0))
                .expect("list")
                .iter()
                .map(|n| n["name"].as_str().expect("name").to_string())
                .collect();
            let regex = regex::Regex::new(pattern).expect("pattern");
            let want: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| regex.is_match(n))
                .collect();
            assert_eq!(found, want, "{pattern}");
        }
    }

    #[test]
    fn type_mismatches_on_columns_match_nothing() {
        let filter =
            Filter::parse(&params(&[("name__gt", "5")]), &[], &NODE_SCHEMA).expect("valid");
        assert_eq!(to_sql(&filter, &NODE_TABLE).expect("sql").0, "0");
    }

    #[test]
    fn null_comparisons_on_columns_and_indexed_paths() {
        let sql = |key: &str| {
            let filter =
                Filter::parse(&params(&[(key, "null")]), &[], &NODE_SCHEMA).expect("valid");
            let (sql, args) = to_sql(&filter, &NODE_TABLE).expect("sql");
            // null binds nothing; an indexed path binds its kci_match condition
            let bound = if key.starts_with("data.") { 1 } else { 0 };
            assert_eq!(args.len(), bound, "{key}: {args:?}");
            sql
        };
        assert_eq!(sql("result__ne"), "result IS NOT NULL");
        assert_eq!(sql("result__lte"), "result IS NULL");
        assert_eq!(sql("holdoff__gte"), "holdoff IS NULL");
        assert_eq!(sql("result__lt"), "0");
        assert_eq!(sql("created__gt"), "0");
        let path = sql("data.arch__gte");
        assert!(path.contains("d_arch IS NULL AND irregular = 0"), "{path}");
        assert!(sql("data.arch__lt").contains("((0) OR (irregular = 1"));
    }

    /// The shared table of `null` cases, run through SQL (scalar columns,
    /// indexed paths, `kci_match`) over stored nodes, agrees with the
    /// expected names and with the Rust matcher over the same stored
    /// documents.
    #[test]
    fn sql_and_the_matcher_agree_on_null_cases() {
        use crate::model::node::Node;
        use crate::query::matcher::matches;
        use crate::query::testing::{Case, NULL_CASES, null_case_nodes};

        let (_dir, store) = temp_store();
        for body in null_case_nodes() {
            let node = Node::create(&body, "owner", crate::timestamp::now()).expect("node");
            store
                .write(move |c, out| nodes::insert(c, out, &node))
                .expect("insert");
        }
        let all = store
            .read(|c| nodes::list(c, &Filter::default(), None, 0))
            .expect("all");
        assert_eq!(all.len(), 5);
        let names = |docs: &[Value]| -> Vec<String> {
            docs.iter()
                .map(|d| d["name"].as_str().expect("name").to_string())
                .collect()
        };
        let extra: &[Case] = &[
            // fields every stored node has
            (&[("timeout__ne", "null")], &["a", "b", "c", "d", "e"]),
            (&[("created__lte", "null")], &[]),
            (&[("retry_counter__ne", "null")], &["a", "b", "c", "d", "e"]),
            (&[("retry_counter__gte", "null")], &[]),
            (
                &[("state__ne", "null"), ("result__gte", "null")],
                &["c", "d"],
            ),
            (&[("id__ne", "null")], &["a", "b", "c", "d", "e"]),
        ];
        for (pairs, want) in NULL_CASES.iter().chain(extra) {
            let filter = Filter::parse(&params(pairs), &[], &NODE_SCHEMA).expect("valid");
            let by_sql = store
                .read(|c| nodes::list(c, &filter, None, 0))
                .expect("list");
            let by_matcher: Vec<Value> = all
                .iter()
                .filter(|d| matches(&filter, d))
                .cloned()
                .collect();
            assert_eq!(names(&by_sql), *want, "SQL {pairs:?}");
            assert_eq!(names(&by_matcher), *want, "matcher {pairs:?}");
            let count = store.read(|c| nodes::count(c, &filter)).expect("count");
            assert_eq!(count, want.len() as u64, "count {pairs:?}");
        }
    }

    /// SQLite's defaults in the bundled build.
    const SQLITE_MAX_VARIABLE_NUMBER: usize = 32_766;

    /// `MAX_CONDITIONS` lists of `len` values: `__in` and `__nin` on every
    /// column and indexed path, then on document fields.
    fn lists_of(len: usize) -> Filter {
        let list = (0..len)
            .map(|i| format!("value-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let tables = NODE_TABLE.columns.iter().chain(NODE_TABLE.indexed_paths);
        let fields = tables
            .map(|(field, _)| field.to_string())
            .chain((0..).map(|i| format!("data.f{i}")));
        let pairs: Vec<(String, String)> = fields
            .flat_map(|f| [format!("{f}__in"), format!("{f}__nin")])
            .filter(|key| !key.starts_with("created") && !key.starts_with("updated"))
            .filter(|key| !key.starts_with("timeout") && !key.starts_with("holdoff"))
            .filter(|key| !key.starts_with("id_") && !key.starts_with("parent_"))
            .take(MAX_CONDITIONS)
            .map(|key| (key, list.clone()))
            .collect();
        Filter::parse(&pairs, &[], &NODE_SCHEMA).expect("at the limits")
    }

    #[test]
    fn a_query_at_the_limits_stays_within_sqlite_limits() {
        let (_dir, store) = temp_store();
        for len in [MAX_LIST_ELEMENTS, INLINE_LIST_MAX + 1, INLINE_LIST_MAX] {
            let filter = lists_of(len);
            assert_eq!(filter.conditions.len(), MAX_CONDITIONS);
            let (sql, args) = to_sql(&filter, &NODE_TABLE).expect("sql");
            let most = if len > INLINE_LIST_MAX { 2 } else { len + 1 };
            assert!(args.len() <= most * MAX_CONDITIONS, "{len}: {}", args.len());
            assert!(args.len() < SQLITE_MAX_VARIABLE_NUMBER / 4);
            assert!(sql.len() < 40_000, "{len}: {} bytes of SQL", sql.len());
            // SQLite checks the variable number and the expression depth
            // (1000) when it prepares the statement: list and count run.
            assert_eq!(store.read(|c| nodes::count(c, &filter)), Ok(0), "{len}");
            assert_eq!(
                store.read(|c| nodes::list(c, &filter, Some(10), 0)),
                Ok(vec![])
            );
        }
    }

    /// The query plan of a node list query with this WHERE clause.
    fn plan(
        store: &crate::store::Store,
        sql: &str,
        args: &[rusqlite::types::Value],
    ) -> Vec<String> {
        let query =
            format!("EXPLAIN QUERY PLAN SELECT doc FROM node WHERE {sql} ORDER BY id LIMIT 50");
        store
            .read(|c| {
                let mut stmt = c.prepare(&query)?;
                let rows =
                    stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))?;
                Ok::<_, StoreError>(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .expect("plan")
    }

    /// A long list read by `json_each` is served by the same index as the
    /// same list written inline, one term per value: the plans differ only
    /// by the lines that read the list.
    #[test]
    fn long_lists_use_the_indexes_an_inline_list_uses() {
        let (_dir, store) = temp_store();
        let json_list =
            regex::Regex::new(r"\(SELECT value FROM json_each\((\?\d+)\)\)").expect("regex");
        let long = |v: &str, n: usize| vec![v; n].join(",");
        let ids = long("0123456789abcdef01234567", INLINE_LIST_MAX + 1);
        let cases: &[(&str, String, Option<&str>)] = &[
            ("kind__in", long("kbuild", 40), Some("node_kind (kind=?)")),
            ("name__in", long("a", 100), Some("node_name (name=?)")),
            ("id__in", ids, Some("(id=?)")),
            ("data.arch__in", long("x86_64", 40), None),
            ("data.arch__in", long("x86_64", MAX_LIST_ELEMENTS), None),
            ("state__nin", long("done", 40), None),
            ("data.platform__nin", long("qemu", 40), None),
        ];
        let reads_the_list = |step: &String| {
            step.starts_with("LIST SUBQUERY")
                || step.contains("json_each")
                || step.contains("BLOOM")
        };
        for (key, value, index) in cases {
            let filter = Filter::parse(&params(&[(key, value)]), &[], &NODE_SCHEMA).expect("valid");
            let (sql, args) = filter_sql(&filter, &NODE_TABLE).expect("sql");
            let terms = value.split(',').count();
            let inline = json_list.replace_all(&sql, |c: &regex::Captures| {
                format!("({})", vec![&c[1]; terms].join(", "))
            });
            assert_ne!(inline, sql, "{key} is read by json_each");
            let mut new_plan = plan(&store, &sql, &args);
            new_plan.retain(|s| !reads_the_list(s));
            assert_eq!(new_plan, plan(&store, &inline, &args), "{key}");
            if let Some(index) = index {
                let text = new_plan.join(" | ");
                assert!(
                    text.contains("SEARCH node USING") && text.contains(index),
                    "{key}: {text}"
                );
            }
        }
    }

    #[test]
    fn short_lists_are_bound_value_by_value() {
        let (_dir, store) = temp_store();
        let list = vec!["a"; INLINE_LIST_MAX].join(",");
        let filter =
            Filter::parse(&params(&[("name__in", &list)]), &[], &NODE_SCHEMA).expect("valid");
        let (sql, args) = filter_sql(&filter, &NODE_TABLE).expect("sql");
        assert!(!sql.contains("json_each"), "{sql}");
        assert_eq!(args.len(), INLINE_LIST_MAX);
        // One value: an equality, walked in id order with no sort.
        let filter =
            Filter::parse(&params(&[("name__in", "one")]), &[], &NODE_SCHEMA).expect("valid");
        let (sql, args) = filter_sql(&filter, &NODE_TABLE).expect("sql");
        assert_eq!(sql, "name IN (?1)");
        let text = plan(&store, &sql, &args).join(" | ");
        assert!(
            text.contains("node_name") && !text.contains("TEMP B-TREE"),
            "{text}"
        );
    }

    #[test]
    fn a_list_read_by_json_each_compares_as_bound_text_did() {
        let c = rusqlite::Connection::open_in_memory().expect("memory db");
        let values = [
            "5",
            "it's",
            "a\\\"b",
            "é",
            "\u{1F600}",
            "",
            " x ",
            "a\u{0}b",
        ];
        let items: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let mut b = Builder { params: Vec::new() };
        let list = b.list(&[items.clone(), vec!["pad".into(); INLINE_LIST_MAX]].concat());
        assert_eq!(list, "(SELECT value FROM json_each(?1))");
        let Some(Param::Text(json)) = b.params.pop() else {
            panic!("one JSON parameter: {list}");
        };
        let is_in = |lhs: &str, value: Option<&str>| -> bool {
            let sql = format!("SELECT {lhs} IN (SELECT value FROM json_each(?2))");
            c.query_row(&sql, rusqlite::params![value, json], |r| r.get(0))
                .expect("query")
        };
        for value in values {
            assert!(is_in("?1", Some(value)), "{value:?}");
        }
        assert!(!is_in("?1", Some("a")));
        assert!(!is_in("?1", Some("a\u{0}")));
        // A number at an indexed path is not equal to its text, as with `IN ('5')`.
        assert!(!is_in(r#"json_extract('{"a": 5}', '$.a')"#, None));
        assert!(is_in(r#"json_extract('{"a": "5"}', '$.a')"#, None));
    }

    #[test]
    fn regularity() {
        let regular = json!({"data": {"arch": "x86", "kernel_revision": {"tree": "t"}}});
        assert!(is_regular(&regular, &NODE_TABLE));
        let array = json!({"data": {"arch": ["x86"]}});
        assert!(!is_regular(&array, &NODE_TABLE));
        let through = json!({"data": {"kernel_revision": [{"tree": "t"}]}});
        assert!(!is_regular(&through, &NODE_TABLE));
        assert!(is_regular(&json!({"data": null}), &NODE_TABLE));
    }
}
