//! The query language of list endpoints: `field[__op]=value` parameters
//! parsed into typed conditions, and their MongoDB-style matching against a
//! JSON document. The store binds conditions as parameters; no key or value
//! ever becomes SQL text.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids;
use crate::timestamp;

/// Comparison operators of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Eq,
    Lt,
    Gt,
    Lte,
    Gte,
    Ne,
    Re,
    In,
    Nin,
}

/// A converted query value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum QValue {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<String>),
}

/// One condition: a dotted field path, an operator and a value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub path: Vec<String>,
    pub op: Op,
    pub value: QValue,
}

/// All conditions of a request (ANDed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub conditions: Vec<Condition>,
}

/// What is special about the fields of one collection.
pub struct Schema {
    /// Fields compared as instants (values parsed as timestamps).
    pub timestamps: &'static [&'static str],
    /// Fields holding ids (values must be 24-hex, or `null`).
    pub ids: &'static [&'static str],
    /// Integer fields (plain and operator values are integers).
    pub ints: &'static [&'static str],
    /// Fields that may not be filtered on at all.
    pub forbidden: &'static [&'static str],
}

/// Node fields.
pub const NODE_SCHEMA: Schema = Schema {
    timestamps: &["created", "updated", "timeout", "holdoff"],
    ids: &["id", "parent"],
    ints: &["retry_counter"],
    forbidden: &[],
};

/// User fields; the password hash is never a filter.
pub const USER_SCHEMA: Schema = Schema {
    timestamps: &[],
    ids: &["id"],
    ints: &[],
    forbidden: &["hashed_password"],
};

/// Group fields.
pub const GROUP_SCHEMA: Schema = Schema {
    timestamps: &[],
    ids: &["id"],
    ints: &[],
    forbidden: &[],
};

/// A query that cannot be run; the text is the 400 detail.
#[derive(Debug, PartialEq)]
pub struct QueryError(pub String);

fn parse_op(name: &str) -> Option<Op> {
    Some(match name {
        "lt" => Op::Lt,
        "gt" => Op::Gt,
        "lte" => Op::Lte,
        "gte" => Op::Gte,
        "ne" => Op::Ne,
        "re" => Op::Re,
        "in" => Op::In,
        "nin" => Op::Nin,
        "int" => Op::Eq,
        _ => return None,
    })
}

impl Filter {
    /// Parses query parameters, skipping `reserved` names. A repeated key
    /// keeps its last value.
    pub fn parse(
        params: &[(String, String)],
        reserved: &[&str],
        schema: &Schema,
    ) -> Result<Filter, QueryError> {
        let mut last: Vec<(&str, &str)> = Vec::new();
        for (key, value) in params {
            if reserved.contains(&key.as_str()) {
                continue;
            }
            last.retain(|(k, _)| *k != key.as_str());
            last.push((key, value));
        }
        let mut conditions = Vec::with_capacity(last.len());
        for (key, value) in last {
            conditions.push(parse_condition(key, value, schema)?);
        }
        Ok(Filter { conditions })
    }
}

fn parse_condition(key: &str, value: &str, schema: &Schema) -> Result<Condition, QueryError> {
    let (field, op_name) = match key.split_once("__") {
        Some((field, op)) if !op.contains("__") => (field, Some(op)),
        _ => (key, None),
    };
    let op = match op_name {
        None => Op::Eq,
        Some(name) => parse_op(name)
            .ok_or_else(|| QueryError(format!("Unsupported query operator: {name}")))?,
    };
    let is_int_cast = op_name == Some("int");
    if field.is_empty() || field.contains('\0') || field.split('.').any(str::is_empty) {
        return Err(QueryError(format!("Invalid query field: '{field}'")));
    }
    if schema.forbidden.contains(&field) {
        return Err(QueryError(format!("Filtering on '{field}' is not allowed")));
    }
    let path: Vec<String> = field.split('.').map(str::to_string).collect();
    let value = if is_int_cast || schema.ints.contains(&field) && op != Op::Re {
        convert_int(field, value, op)?
    } else if schema.timestamps.contains(&field) && op != Op::Re {
        convert_timestamp(value, op)?
    } else if schema.ids.contains(&field) && op != Op::Re {
        convert_id(value, op)?
    } else {
        convert_plain(value, op)
    };
    if op == Op::Re
        && let QValue::Str(pattern) = &value
    {
        check_regex(pattern)?;
    }
    Ok(Condition { path, op, value })
}

/// A pattern the `regex` crate compiles and that PCRE (MongoDB) and Python
/// would also accept: a repetition of a repetition (`a**`) is refused.
pub fn check_regex(pattern: &str) -> Result<(), QueryError> {
    Regex::new(pattern).map_err(|e| QueryError(format!("Invalid regular expression: {e}")))?;
    let mut after_quantifier = false;
    let mut in_class = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
                after_quantifier = false;
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '*' | '{'
                if after_quantifier
                    && (c == '*' || chars.peek().is_some_and(char::is_ascii_digit)) =>
            {
                return Err(QueryError(format!(
                    "Invalid regular expression: multiple repeat in '{pattern}'"
                )));
            }
            '*' | '+' | '?' => {
                // `??`, `*?`, `*+`: a lazy or possessive modifier ends it
                after_quantifier = !after_quantifier;
                continue;
            }
            '}' => {
                after_quantifier = true;
                continue;
            }
            _ => {}
        }
        if !matches!(c, '*' | '+' | '?' | '}') {
            after_quantifier = false;
        }
    }
    Ok(())
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::to_string).collect()
}

fn convert_plain(value: &str, op: Op) -> QValue {
    match op {
        Op::Eq if value == "null" => QValue::Null,
        Op::Eq => match value.to_ascii_lowercase().as_str() {
            "true" => QValue::Bool(true),
            "false" => QValue::Bool(false),
            _ => QValue::Str(value.to_string()),
        },
        Op::Re => QValue::Str(value.to_string()),
        Op::In | Op::Nin => QValue::List(split_list(value)),
        _ => match value.parse::<i64>() {
            Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => QValue::Int(n),
            _ => QValue::Str(value.to_string()),
        },
    }
}

fn convert_int(field: &str, value: &str, op: Op) -> Result<QValue, QueryError> {
    let int = |v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| QueryError(format!("Invalid integer value for '{field}': '{v}'")))
    };
    match op {
        Op::In | Op::Nin => Ok(QValue::List(split_list(value))),
        Op::Eq if value == "null" => Ok(QValue::Null),
        _ => int(value).map(QValue::Int),
    }
}

fn convert_timestamp(value: &str, op: Op) -> Result<QValue, QueryError> {
    let one = |v: &str| {
        timestamp::parse_query(v)
            .map(|t| timestamp::format(&t))
            .ok_or_else(|| QueryError(format!("Invalid timestamp: '{v}'")))
    };
    match op {
        Op::Eq if value == "null" => Ok(QValue::Null),
        Op::In | Op::Nin => Ok(QValue::List(
            value.split(',').map(one).collect::<Result<_, _>>()?,
        )),
        _ => one(value).map(QValue::Str),
    }
}

fn convert_id(value: &str, op: Op) -> Result<QValue, QueryError> {
    let one = |v: &str| ids::parse_id(v).ok_or_else(|| QueryError(ids::invalid_id_detail(v)));
    match op {
        Op::Eq | Op::Ne if value == "null" => Ok(QValue::Null),
        Op::In | Op::Nin => Ok(QValue::List(
            value.split(',').map(one).collect::<Result<_, _>>()?,
        )),
        _ => one(value).map(QValue::Str),
    }
}

/// The values found at `path` in `doc`, descending into arrays on the way.
fn values_at<'a>(doc: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = path.split_first() else {
        out.push(doc);
        return;
    };
    match doc {
        Value::Object(map) => {
            if let Some(next) = map.get(step) {
                values_at(next, rest, out);
            }
        }
        Value::Array(items) => {
            if let Ok(index) = step.parse::<usize>()
                && let Some(next) = items.get(index)
            {
                values_at(next, rest, out);
            }
            for item in items {
                if item.is_object() {
                    values_at(item, path, out);
                }
            }
        }
        _ => {}
    }
}

fn scalar_equals(v: &Value, want: &QValue) -> bool {
    match (v, want) {
        (Value::Null, QValue::Null) => true,
        (Value::Bool(a), QValue::Bool(b)) => a == b,
        (Value::String(a), QValue::Str(b)) => a == b,
        (Value::Number(a), QValue::Int(b)) => a.as_f64() == Some(*b as f64),
        _ => false,
    }
}

/// Equality with array semantics: the value itself or any element.
fn equals(v: &Value, want: &QValue) -> bool {
    scalar_equals(v, want)
        || match v {
            Value::Array(items) => items.iter().any(|i| scalar_equals(i, want)),
            _ => false,
        }
}

fn compare(v: &Value, want: &QValue, op: Op) -> bool {
    use std::cmp::Ordering;
    let ordering = match (v, want) {
        (Value::Number(a), QValue::Int(b)) => a.as_f64().and_then(|a| a.partial_cmp(&(*b as f64))),
        (Value::String(a), QValue::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::Array(items), _) => {
            return items.iter().any(|i| !i.is_array() && compare(i, want, op));
        }
        _ => None,
    };
    match (ordering, op) {
        (Some(o), Op::Lt) => o == Ordering::Less,
        (Some(o), Op::Lte) => o != Ordering::Greater,
        (Some(o), Op::Gt) => o == Ordering::Greater,
        (Some(o), Op::Gte) => o != Ordering::Less,
        _ => false,
    }
}

fn regex_matches(v: &Value, re: &Regex) -> bool {
    match v {
        Value::String(s) => re.is_match(s),
        Value::Array(items) => items
            .iter()
            .any(|i| i.as_str().is_some_and(|s| re.is_match(s))),
        _ => false,
    }
}

impl Condition {
    /// The compiled pattern of a `__re` condition.
    pub fn regex(&self) -> Option<Regex> {
        match (&self.op, &self.value) {
            (Op::Re, QValue::Str(p)) => Regex::new(p).ok(),
            _ => None,
        }
    }

    /// Whether `doc` satisfies the condition (MongoDB semantics).
    pub fn matches(&self, doc: &Value, regex: Option<&Regex>) -> bool {
        let mut found = Vec::new();
        values_at(doc, &self.path, &mut found);
        let any_equal = |want: &QValue| found.iter().any(|v| equals(v, want));
        let in_list = |list: &[String]| {
            list.iter()
                .any(|item| any_equal(&QValue::Str(item.clone())))
        };
        match (&self.op, &self.value) {
            (Op::Eq, QValue::Null) => found.is_empty() || any_equal(&QValue::Null),
            (Op::Eq, want) => any_equal(want),
            (Op::Ne, QValue::Null) => !(found.is_empty() || any_equal(&QValue::Null)),
            (Op::Ne, want) => !any_equal(want),
            (Op::In, QValue::List(list)) => in_list(list),
            (Op::Nin, QValue::List(list)) => !in_list(list),
            (Op::Re, _) => regex.is_some_and(|re| found.iter().any(|v| regex_matches(v, re))),
            (op @ (Op::Lt | Op::Gt | Op::Lte | Op::Gte), want) => {
                found.iter().any(|v| compare(v, want, *op))
            }
            _ => false,
        }
    }
}

/// A bound SQL parameter produced by [`to_sql`].
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Text(String),
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

/// The node table.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(pairs: &[(&str, &str)], doc: &Value) -> bool {
        let filter =
            Filter::parse(&params(pairs), &["limit", "offset"], &NODE_SCHEMA).expect("valid query");
        filter
            .conditions
            .iter()
            .all(|c| c.matches(doc, c.regex().as_ref()))
    }

    #[test]
    fn equality_and_arrays() {
        let doc =
            json!({"name": "a", "path": ["checkout", "kbuild"], "data": {"items": [{"n": "x"}]}});
        assert!(check(&[("name", "a")], &doc));
        assert!(check(&[("path", "checkout")], &doc));
        assert!(check(&[("data.items.n", "x")], &doc));
        assert!(!check(&[("name", "b")], &doc));
        assert!(check(&[("unknown", "null")], &doc));
        assert!(!check(&[("unknown", "x")], &doc));
    }

    #[test]
    fn booleans_nulls_and_last_wins() {
        let doc = json!({"flag": true, "group": null});
        assert!(check(&[("flag", "TRUE")], &doc));
        assert!(check(&[("group", "null")], &doc));
        assert!(check(&[("flag", "false"), ("flag", "true")], &doc));
    }

    #[test]
    fn operators() {
        let doc = json!({"v": 7, "s": "abc", "created": "2024-01-02T00:00:00.000000"});
        assert!(check(&[("v__gt", "5")], &doc));
        assert!(!check(&[("v__gt", "007")], &doc));
        assert!(check(&[("v__gte", "007")], &doc));
        assert!(check(&[("s__re", "^ab")], &doc));
        assert!(check(&[("s__in", "x,abc")], &doc));
        assert!(check(&[("s__nin", "x,y")], &doc));
        assert!(check(&[("missing__ne", "x")], &doc));
        assert!(check(&[("v__int", "7")], &doc));
        assert!(check(
            &[("created__gt", "2024-01-01"), ("created__lt", "2024-01-03")],
            &doc
        ));
        assert!(!check(&[("s__gt", "5")], &json!({"s": "9"})));
    }

    #[test]
    fn bad_queries() {
        let bad = |pairs: &[(&str, &str)]| Filter::parse(&params(pairs), &[], &NODE_SCHEMA).err();
        assert_eq!(
            bad(&[("name__like", "x")]),
            Some(QueryError("Unsupported query operator: like".into()))
        );
        assert!(bad(&[("name__re", "(")]).is_some());
        assert!(bad(&[("name__re", "a**")]).is_some());
        assert!(bad(&[("name__re", "a{2}*")]).is_some());
        assert!(bad(&[("name__re", "a*?b+?c??[*+]x\\**")]).is_none());
        assert!(bad(&[("created", "yesterday")]).is_some());
        assert!(bad(&[("parent", "nope")]).is_some());
        assert!(bad(&[("data..x", "1")]).is_some());
        assert!(
            Filter::parse(&params(&[("hashed_password__re", "x")]), &[], &USER_SCHEMA).is_err()
        );
    }

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
