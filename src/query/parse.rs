//! Parsing the query language: keys (`field[__op]`), operators and typed
//! values (timestamps, ids, integers, booleans, lists) turned into a
//! [`Filter`], per the schema of the collection being listed.

use std::collections::HashMap;

use super::matcher::compile_pattern;
use super::{Condition, Filter, MAX_CONDITIONS, MAX_LIST_ELEMENTS, Op, QValue, QueryError};
use crate::ids;
use crate::timestamp;

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

/// The `data` of an event (subscription and stream conditions): plain JSON,
/// no field with rules of its own (`id=abc` is an ordinary string).
pub const EVENT_DATA_SCHEMA: Schema = Schema {
    timestamps: &[],
    ids: &[],
    ints: &[],
    forbidden: &[],
};

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
    /// keeps its last value. More than [`MAX_CONDITIONS`] distinct keys, or
    /// a list over [`MAX_LIST_ELEMENTS`], is refused before any is parsed.
    pub fn parse(
        params: &[(String, String)],
        reserved: &[&str],
        schema: &Schema,
    ) -> Result<Filter, QueryError> {
        // Where each key occurs last: one pass, however often a client
        // repeats a key.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (at, (key, _)) in params.iter().enumerate() {
            if !reserved.contains(&key.as_str()) {
                last.insert(key, at);
            }
        }
        if last.len() > MAX_CONDITIONS {
            return Err(QueryError(format!(
                "Too many query conditions: {} (at most {MAX_CONDITIONS})",
                last.len()
            )));
        }
        let mut conditions = Vec::with_capacity(last.len());
        for (at, (key, value)) in params.iter().enumerate() {
            if last.get(key.as_str()) == Some(&at) {
                conditions.push(parse_condition(key, value, schema)?);
            }
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
    if matches!(op, Op::In | Op::Nin) {
        if value == "null" {
            return Err(QueryError(format!(
                "Invalid value for {key}: null is not a list; give comma-separated values"
            )));
        }
        check_list_len(key, value.split(',').count())?;
    }
    let path: Vec<String> = field.split('.').map(str::to_string).collect();
    // `null` is null for equality and every comparison, whatever the
    // field's type (as upstream, which turns each `null` value into None).
    let value = if value == "null" && !matches!(op, Op::Re | Op::In | Op::Nin) {
        QValue::Null
    } else if is_int_cast || schema.ints.contains(&field) && op != Op::Re {
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

/// Refuses a list of `len` values for the parameter `name` when it is over
/// [`MAX_LIST_ELEMENTS`]; the error names both.
pub fn check_list_len(name: &str, len: usize) -> Result<(), QueryError> {
    if len > MAX_LIST_ELEMENTS {
        return Err(QueryError(format!(
            "Too many values for {name}: {len} (at most {MAX_LIST_ELEMENTS})"
        )));
    }
    Ok(())
}

/// A pattern the `regex` crate compiles and that PCRE (MongoDB) and Python
/// would also accept: a repetition of a repetition (`a**`) is refused.
pub fn check_regex(pattern: &str) -> Result<(), QueryError> {
    compile_pattern(pattern).map_err(|e| QueryError(format!("Invalid regular expression: {e}")))?;
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
        Op::In | Op::Nin => Ok(QValue::List(
            value.split(',').map(one).collect::<Result<_, _>>()?,
        )),
        _ => one(value).map(QValue::Str),
    }
}

fn convert_id(value: &str, op: Op) -> Result<QValue, QueryError> {
    let one = |v: &str| ids::parse_id(v).ok_or_else(|| QueryError(ids::invalid_id_detail(v)));
    match op {
        Op::In | Op::Nin => Ok(QValue::List(
            value.split(',').map(one).collect::<Result<_, _>>()?,
        )),
        _ => one(value).map(QValue::Str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::testing::params;

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
    fn null_is_null_for_every_comparison_and_refused_as_a_list() {
        let one = |key: &str, value: &str, schema: &Schema| {
            Filter::parse(&params(&[(key, value)]), &[], schema).map(|f| f.conditions[0].clone())
        };
        for op in ["", "__ne", "__lt", "__gt", "__lte", "__gte"] {
            for field in [
                "result",
                "data.x",
                "created",
                "holdoff",
                "parent",
                "retry_counter",
            ] {
                let key = format!("{field}{op}");
                let cond = one(&key, "null", &NODE_SCHEMA).expect("null is a value");
                assert_eq!(cond.value, QValue::Null, "{key}");
            }
        }
        // only the exact word; `__re` keeps its pattern
        let text = one("result__ne", "NULL", &NODE_SCHEMA).expect("valid");
        assert_eq!(text.value, QValue::Str("NULL".into()));
        let re = one("name__re", "null", &NODE_SCHEMA).expect("valid");
        assert_eq!(re.value, QValue::Str("null".into()));
        for key in ["name__in", "name__nin", "data.x__in", "retry_counter__nin"] {
            let err = one(key, "null", &NODE_SCHEMA).expect_err("null is not a list");
            assert!(err.0.contains(key) && err.0.contains("null"), "{}", err.0);
        }
        for key in ["created__in", "parent__nin", "id__in"] {
            assert!(one(key, "null", &NODE_SCHEMA).is_err(), "{key}");
        }
        assert!(one("username__in", "null", &USER_SCHEMA).is_err());
        // a list that holds the word among others is a list of strings
        let list = one("name__in", "null,x", &NODE_SCHEMA).expect("valid");
        assert_eq!(list.value, QValue::List(vec!["null".into(), "x".into()]));
    }

    fn many_conditions(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("data.f{i}"), "x".into())).collect()
    }

    fn list_of(n: usize) -> String {
        vec!["v"; n].join(",")
    }

    #[test]
    fn conditions_are_limited() {
        let at_limit = Filter::parse(&many_conditions(MAX_CONDITIONS), &[], &NODE_SCHEMA);
        assert_eq!(at_limit.map(|f| f.conditions.len()), Ok(MAX_CONDITIONS));
        assert_eq!(
            Filter::parse(&many_conditions(MAX_CONDITIONS + 1), &[], &NODE_SCHEMA),
            Err(QueryError(
                "Too many query conditions: 101 (at most 100)".into()
            ))
        );
        assert_eq!(
            Filter::parse(&many_conditions(1000), &[], &NODE_SCHEMA),
            Err(QueryError(
                "Too many query conditions: 1000 (at most 100)".into()
            ))
        );
    }

    #[test]
    fn reserved_and_repeated_keys_are_not_counted() {
        let mut pairs = many_conditions(MAX_CONDITIONS);
        pairs.push(("limit".into(), "10".into()));
        pairs.extend((0..1000).map(|i| ("data.f0".to_string(), i.to_string())));
        let filter = Filter::parse(&pairs, &["limit"], &NODE_SCHEMA).expect("within limits");
        assert_eq!(filter.conditions.len(), MAX_CONDITIONS);
        let f0 = filter.conditions.last().expect("last condition");
        assert_eq!(
            (f0.path.join("."), &f0.value),
            ("data.f0".into(), &QValue::Str("999".into())),
            "a repeated key keeps its last value, in the place of its last occurrence"
        );
    }

    #[test]
    fn lists_are_limited() {
        let one =
            |key: &str, value: &str| Filter::parse(&params(&[(key, value)]), &[], &NODE_SCHEMA);
        let full = list_of(MAX_LIST_ELEMENTS);
        for key in ["name__in", "name__nin", "data.x__in", "retry_counter__in"] {
            let filter = one(key, &full).expect("at the limit");
            assert_eq!(
                filter.conditions[0].value,
                QValue::List(vec!["v".into(); MAX_LIST_ELEMENTS])
            );
        }
        let over = list_of(MAX_LIST_ELEMENTS + 1);
        assert_eq!(
            one("name__in", &over),
            Err(QueryError(
                "Too many values for name__in: 10001 (at most 10000)".into()
            ))
        );
        assert_eq!(
            one("data.x__nin", &list_of(20_000)),
            Err(QueryError(
                "Too many values for data.x__nin: 20000 (at most 10000)".into()
            ))
        );
        // Counted before each value is converted: the limit, not a bad id.
        assert_eq!(
            one("parent__in", &over).err().map(|e| e.0),
            Some("Too many values for parent__in: 10001 (at most 10000)".into())
        );
        let ids = vec!["0123456789abcdef01234567"; MAX_LIST_ELEMENTS].join(",");
        assert!(one("parent__in", &ids).is_ok());
        let stamps = vec!["2024-01-01"; MAX_LIST_ELEMENTS].join(",");
        assert!(one("created__nin", &stamps).is_ok());
        assert_eq!(check_list_len("ids", MAX_LIST_ELEMENTS), Ok(()));
        assert_eq!(
            check_list_len("ids", 20_000),
            Err(QueryError(
                "Too many values for ids: 20000 (at most 10000)".into()
            ))
        );
    }
}
