//! The query language of list endpoints: the typed conditions that
//! `field[__op]=value` parameters become. [`parse`] turns parameters into a
//! [`Filter`], [`matcher`] evaluates one against a JSON document with
//! MongoDB semantics; the store translates it to SQL (`store::filter`), so
//! no key or value ever becomes SQL text.

pub mod matcher;
pub mod parse;

use serde::{Deserialize, Serialize};

pub use matcher::{Matcher, matches};
pub use parse::{GROUP_SCHEMA, NODE_SCHEMA, Schema, USER_SCHEMA, check_list_len, check_regex};

/// Most conditions (distinct `field[__op]` keys) one query may hold; more
/// answer 400. Pipeline queries use a few dozen at most.
pub const MAX_CONDITIONS: usize = 100;

/// Most values one list-valued parameter may hold (`__in`, `__nin`, the
/// `ids` of `/events`); more answer 400. Pipelines ask for hundreds of ids.
pub const MAX_LIST_ELEMENTS: usize = 10_000;

/// Comparison operators of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Equal (no suffix, or `__int`).
    Eq,
    /// `__lt`: less than.
    Lt,
    /// `__gt`: greater than.
    Gt,
    /// `__lte`: less than or equal.
    Lte,
    /// `__gte`: greater than or equal.
    Gte,
    /// `__ne`: not equal.
    Ne,
    /// `__re`: matches a regular expression.
    Re,
    /// `__in`: equal to one of a comma-separated list.
    In,
    /// `__nin`: equal to none of a comma-separated list.
    Nin,
}

/// A converted query value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum QValue {
    /// `null`.
    Null,
    /// `true` or `false` (any case).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Text (also timestamps and ids, in their stored form).
    Str(String),
    /// The items of `__in` / `__nin`.
    List(Vec<String>),
}

/// One condition: a dotted field path, an operator and a value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// The field's path, one step per dotted part.
    pub path: Vec<String>,
    /// The comparison.
    pub op: Op,
    /// What the field is compared with.
    pub value: QValue,
}

/// All conditions of a request (ANDed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// The conditions, each of which must hold.
    pub conditions: Vec<Condition>,
}

/// A query that cannot be run; the text is the 400 detail.
#[derive(Debug, PartialEq)]
pub struct QueryError(pub String);

#[cfg(test)]
pub(crate) mod testing {
    /// Query parameters as the HTTP layer gives them.
    pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}
