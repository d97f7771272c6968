//! Parsing the query language: keys (`field[__op]`), operators and typed
//! values (timestamps, ids, integers, booleans, lists) turned into a
//! [`Filter`], per the schema of the collection being listed.

use super::matcher::compile_pattern;
use super::{Condition, Filter, Op, QValue, QueryError};
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
}
