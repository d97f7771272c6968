//! The query language of list endpoints: the typed conditions that
//! `field[__op]=value` parameters become. [`parse`] turns parameters into a
//! [`Filter`], [`matcher`] evaluates one against a JSON document with
//! MongoDB semantics; the store translates it to SQL (`store::filter`), so
//! no key or value ever becomes SQL text.

pub mod matcher;
pub mod parse;

use serde::{Deserialize, Serialize};

pub use matcher::{Matcher, matches};
pub use parse::{
    EVENT_DATA_SCHEMA, GROUP_SCHEMA, NODE_SCHEMA, Schema, USER_SCHEMA, check_list_len, check_regex,
};

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
    use serde_json::{Value, json};

    /// Query parameters as the HTTP layer gives them.
    pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Five node bodies (kind `process`, roots, no holdoff) whose fields
    /// are stored as given, so that the matcher over these documents and
    /// the SQL over the stored nodes must give the same answers. `data.arch`
    /// is an indexed path: `null` on `b`, missing on `d` and `e`, a list on
    /// `c` (a row the indexes do not serve).
    pub fn null_case_nodes() -> Vec<Value> {
        let specs = [
            (
                "a",
                json!("pass"),
                json!({"n": 1, "tags": ["p", "q"], "arch": "x86"}),
            ),
            ("b", json!("fail"), json!({"n": 2, "arch": null})),
            (
                "c",
                Value::Null,
                json!({"n": 3, "tags": ["q"], "arch": ["arm"]}),
            ),
            ("d", Value::Null, json!({"n": 4.0, "tags": [null, "z"]})),
            ("e", json!("skip"), json!({})),
        ];
        specs
            .into_iter()
            .map(|(name, result, data)| {
                json!({"name": name, "kind": "process", "path": [name], "result": result,
                       "parent": null, "holdoff": null, "data": data})
            })
            .collect()
    }

    /// Query parameters and the names of the nodes they select, in order.
    pub type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );

    /// `null` with every operator (section 7: MongoDB semantics) over
    /// [`null_case_nodes`].
    pub const NULL_CASES: &[Case] = &[
        (&[("result__ne", "null")], &["a", "b", "e"]),
        (&[("result__lte", "null")], &["c", "d"]),
        (&[("result__gte", "null")], &["c", "d"]),
        (&[("result__lt", "null")], &[]),
        (&[("result__gt", "null")], &[]),
        (&[("result", "null")], &["c", "d"]),
        (&[("data.n__ne", "null")], &["a", "b", "c", "d"]),
        (&[("data.n__gt", "null")], &[]),
        (&[("data.n__lt", "null")], &[]),
        (&[("data.n__gte", "null")], &["e"]),
        // a list holding null is null for equality, lte and gte
        (&[("data.tags__lte", "null")], &["b", "d", "e"]),
        (&[("data.tags__gte", "null")], &["b", "d", "e"]),
        (&[("data.tags__ne", "null")], &["a", "c"]),
        (&[("data.tags__lt", "null")], &[]),
        (&[("data.arch__ne", "null")], &["a", "c"]),
        (&[("data.arch__lte", "null")], &["b", "d", "e"]),
        (&[("data.arch__gte", "null")], &["b", "d", "e"]),
        (&[("data.arch__gt", "null")], &[]),
        (&[("data.arch", "null")], &["b", "d", "e"]),
        (&[("name__ne", "null")], &["a", "b", "c", "d", "e"]),
        (&[("name__lte", "null")], &[]),
        (&[("parent__ne", "null")], &[]),
        (&[("parent__gte", "null")], &["a", "b", "c", "d", "e"]),
        (&[("holdoff__ne", "null")], &[]),
        (&[("holdoff__lte", "null")], &["a", "b", "c", "d", "e"]),
        (&[("holdoff__gt", "null")], &[]),
        (&[("unknown__ne", "null")], &[]),
        (&[("unknown__gte", "null")], &["a", "b", "c", "d", "e"]),
        // combined with other conditions
        (&[("result__ne", "null"), ("data.n__gt", "1")], &["b"]),
        (
            &[("result__lte", "null"), ("data.tags__ne", "null")],
            &["c"],
        ),
        // the text "null" in another case is not null
        (&[("result__ne", "NULL")], &["a", "b", "c", "d", "e"]),
    ];
}
