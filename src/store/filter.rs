//! A query-language [`Filter`] as SQL: scalar columns and indexed JSON
//! paths where a table has them, `kci_match` (the Rust matcher) for every
//! other field. Keys never reach SQL as text and values are always bound.
//! The node column map here must agree with the row mapping in
//! `store/nodes.rs` and the schema in `sql/`.

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

/// How a collection's fields map to SQL: scalar columns, indexed JSON
/// expressions, and the document column for everything else.
pub struct SqlTable {
    /// The JSON document column.
    pub doc: &'static str,
    /// Fields stored in scalar text columns: (field, column).
    pub columns: &'static [(&'static str, &'static str)],
    /// Dotted fields with an expression index: (field, JSON path).
    pub indexed_paths: &'static [(&'static str, &'static str)],
    /// Column flagging rows whose indexed paths run through arrays or end
    /// in objects; such rows are matched by `kci_match` instead.
    pub irregular: Option<&'static str>,
}

/// The node table: the columns that `nodes::row` fills, and the paths
/// that have an expression index in `sql/`.
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
        ("data.kernel_revision.tree", "$.data.kernel_revision.tree"),
        (
            "data.kernel_revision.branch",
            "$.data.kernel_revision.branch",
        ),
        (
            "data.kernel_revision.commit",
            "$.data.kernel_revision.commit",
        ),
        ("data.arch", "$.data.arch"),
        ("data.defconfig", "$.data.defconfig"),
        ("data.platform", "$.data.platform"),
        ("data.runtime", "$.data.runtime"),
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

    fn list(&mut self, items: &[String]) -> String {
        items
            .iter()
            .map(|i| self.text(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A condition on a scalar TEXT column (never an array, never a number).
fn column_sql(b: &mut Builder, col: &str, cond: &Condition) -> String {
    match (&cond.op, &cond.value) {
        (Op::Eq, QValue::Null) => format!("{col} IS NULL"),
        (Op::Eq, QValue::Str(v)) => format!("{col} = {}", b.text(v)),
        (Op::Eq, _) => "0".into(),
        (Op::Ne, QValue::Null) => format!("{col} IS NOT NULL"),
        (Op::Ne, QValue::Str(v)) => format!("{col} IS NOT {}", b.text(v)),
        (Op::Ne, _) => "1".into(),
        (Op::In, QValue::List(items)) => format!("{col} IN ({})", b.list(items)),
        (Op::Nin, QValue::List(items)) => {
            format!("({col} IS NULL OR {col} NOT IN ({}))", b.list(items))
        }
        (Op::Re, QValue::Str(p)) => format!("{col} REGEXP {}", b.text(p)),
        (op @ (Op::Lt | Op::Gt | Op::Lte | Op::Gte), QValue::Str(v)) => {
            format!("{col} {} {}", comparison(*op), b.text(v))
        }
        _ => "0".into(),
    }
}

fn comparison(op: Op) -> &'static str {
    match op {
        Op::Lt => "<",
        Op::Gt => ">",
        Op::Lte => "<=",
        _ => ">=",
    }
}

/// A condition on an indexed JSON path of a regular row (no arrays on the
/// way, a scalar or nothing at the end), in terms of `json_extract` so that
/// the expression index serves it.
fn path_sql(b: &mut Builder, doc: &str, path: &str, cond: &Condition) -> String {
    let e = format!("json_extract({doc}, '{path}')");
    let t = format!("json_type({doc}, '{path}')");
    let numeric = format!("{t} IN ('integer', 'real')");
    match (&cond.op, &cond.value) {
        (Op::Eq, QValue::Null) => format!("{e} IS NULL"),
        (Op::Eq, QValue::Str(v)) => format!("{e} = {}", b.text(v)),
        (Op::Eq, QValue::Int(n)) => format!("({e} = {} AND {numeric})", b.bind(Param::Int(*n))),
        (Op::Eq, QValue::Bool(v)) => format!("{t} = '{v}'"),
        (Op::Ne, QValue::Null) => format!("{e} IS NOT NULL"),
        (Op::Ne, QValue::Str(v)) => format!("{e} IS NOT {}", b.text(v)),
        (Op::Ne, QValue::Int(n)) => {
            format!("NOT ({e} IS {} AND {numeric})", b.bind(Param::Int(*n)))
        }
        (Op::Ne, QValue::Bool(v)) => format!("{t} IS NOT '{v}'"),
        (Op::In, QValue::List(items)) => format!("{e} IN ({})", b.list(items)),
        (Op::Nin, QValue::List(items)) => {
            format!("({e} IS NULL OR {e} NOT IN ({}))", b.list(items))
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

/// Translates a filter into a WHERE clause with bound parameters. Keys
/// never reach SQL as text: columns and JSON paths come from `table`, every
/// other field is matched by `kci_match(doc, <condition as JSON>)`.
pub fn to_sql(
    filter: &Filter,
    table: &SqlTable,
) -> Result<(String, Vec<Param>), serde_json::Error> {
    let mut b = Builder { params: Vec::new() };
    let mut clauses = Vec::new();
    // Conditions on indexed paths: for regular rows in json_extract form
    // (served by the expression indexes), for irregular rows by kci_match.
    // (A_reg OR A_irr) AND (B_reg OR B_irr) is written as
    // (A_reg AND B_reg AND regular) OR (A_irr AND B_irr AND irregular),
    // which is the same (a row is one or the other) but lets SQLite use one
    // composite index for all the regular conditions together.
    let mut regular = Vec::new();
    let mut exact = Vec::new();
    for cond in &filter.conditions {
        let field = cond.path.join(".");
        let column = table.columns.iter().find(|(f, _)| *f == field);
        let indexed = table.indexed_paths.iter().find(|(f, _)| *f == field);
        match (column, indexed, table.irregular) {
            (Some((_, col)), _, _) => clauses.push(column_sql(&mut b, col, cond)),
            (None, Some((_, path)), Some(_)) => {
                regular.push(path_sql(&mut b, table.doc, path, cond));
                let json = b.text(&serde_json::to_string(cond)?);
                exact.push(format!("kci_match({}, {json})", table.doc));
            }
            _ => {
                let json = b.text(&serde_json::to_string(cond)?);
                clauses.push(format!("kci_match({}, {json})", table.doc));
            }
        }
    }
    if let (false, Some(flag)) = (regular.is_empty(), table.irregular) {
        clauses.push(format!(
            "(({} AND {flag} = 0) OR ({flag} = 1 AND {}))",
            regular.join(" AND "),
            exact.join(" AND ")
        ));
    }
    let sql = if clauses.is_empty() {
        "1".to_string()
    } else {
        clauses.join(" AND ")
    };
    Ok((sql, b.params))
}

/// Whether the indexed paths of `doc` are regular: no array on the way and
/// a scalar (or nothing) at the end. Irregular rows bypass the indexes.
pub fn is_regular(doc: &Value, table: &SqlTable) -> bool {
    table.indexed_paths.iter().all(|(field, _)| {
        let mut current = doc;
        for step in field.split('.') {
            match current {
                Value::Object(map) => match map.get(step) {
                    Some(next) => current = next,
                    None => return true,
                },
                Value::Array(_) => return false,
                _ => return true,
            }
        }
        !matches!(current, Value::Array(_) | Value::Object(_))
    })
}

/// SQL for a filter over `table`, parameters ready to bind.
pub fn filter_sql(
    filter: &Filter,
    table: &SqlTable,
) -> Result<(String, Vec<rusqlite::types::Value>), StoreError> {
    let (sql, params) = to_sql(filter, table)?;
    let params = params
        .into_iter()
        .map(|p| match p {
            Param::Text(s) => rusqlite::types::Value::Text(s),
            Param::Int(n) => rusqlite::types::Value::Integer(n),
        })
        .collect();
    Ok((sql, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::NODE_SCHEMA;
    use crate::query::testing::params;
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
        assert!(
            sql.contains("json_extract(doc, '$.data.arch') = ?2"),
            "{sql}"
        );
        assert!(sql.contains("kci_match(doc, ?"), "{sql}");
        assert!(sql.contains("name REGEXP ?"), "{sql}");
        assert!(!sql.contains("DROP"), "values never reach SQL text: {sql}");
        assert_eq!(args[0], Param::Text("kbuild".into()));
        assert_eq!(args.len(), 5);
    }

    #[test]
    fn type_mismatches_on_columns_match_nothing() {
        let filter =
            Filter::parse(&params(&[("name__gt", "5")]), &[], &NODE_SCHEMA).expect("valid");
        assert_eq!(to_sql(&filter, &NODE_TABLE).expect("sql").0, "0");
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
