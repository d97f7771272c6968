//! MongoDB semantics of the query language over a JSON document: a field
//! path descends into arrays, equality holds for the value or any element,
//! `null` also matches a missing field, comparisons only hold between values
//! of the same type. [`matches`] judges a whole filter, [`Matcher`] does the
//! same with its patterns compiled once, and [`Condition::matches`] judges
//! one condition.

use std::collections::HashSet;

use regex::Regex;
use serde_json::Value;

use super::{Condition, Filter, Op, QValue};

/// Compiles a `__re` pattern as every matcher of the product does (the
/// `regex` crate: linear time, no backtracking).
pub fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(pattern)
}

/// Whether `doc` satisfies every condition of `filter`.
pub fn matches(filter: &Filter, doc: &Value) -> bool {
    Matcher::new(filter).matches(doc)
}

/// A filter with its patterns compiled and its lists in hash sets, to
/// match many documents.
pub struct Matcher {
    conditions: Vec<(Condition, Option<Regex>, Option<HashSet<String>>)>,
}

impl Matcher {
    /// Compiles the patterns of `filter` and indexes its lists, so that a
    /// document costs as much as the values it holds, not the lists' length.
    pub fn new(filter: &Filter) -> Matcher {
        let conditions = filter
            .conditions
            .iter()
            .map(|c| {
                let set = match &c.value {
                    QValue::List(items) => Some(items.iter().cloned().collect()),
                    _ => None,
                };
                (c.clone(), c.regex(), set)
            })
            .collect();
        Matcher { conditions }
    }

    /// Whether `doc` satisfies every condition.
    pub fn matches(&self, doc: &Value) -> bool {
        self.conditions
            .iter()
            .all(|(c, regex, set)| c.matches_in(doc, regex.as_ref(), set.as_ref()))
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
            (Op::Re, QValue::Str(p)) => compile_pattern(p).ok(),
            _ => None,
        }
    }

    /// Whether `doc` satisfies the condition (MongoDB semantics); `regex` is
    /// the compiled pattern of a `__re` condition (see [`Condition::regex`]).
    pub fn matches(&self, doc: &Value, regex: Option<&Regex>) -> bool {
        self.matches_in(doc, regex, None)
    }

    /// [`Condition::matches`], with the values of a list in `set` if given.
    fn matches_in(
        &self,
        doc: &Value,
        regex: Option<&Regex>,
        set: Option<&HashSet<String>>,
    ) -> bool {
        let mut found = Vec::new();
        values_at(doc, &self.path, &mut found);
        let any_equal = |want: &QValue| found.iter().any(|v| equals(v, want));
        // Equal to a listed value: a found string, or a string in a found array.
        let in_list = |list: &[String]| {
            let listed = |s: &str| match set {
                Some(set) => set.contains(s),
                None => list.iter().any(|item| item == s),
            };
            found.iter().any(|v| match v {
                Value::String(s) => listed(s),
                Value::Array(items) => items.iter().any(|i| i.as_str().is_some_and(listed)),
                _ => false,
            })
        };
        match (&self.op, &self.value) {
            // MongoDB: null sorts with null only, and a missing field
            // counts as null; so `lte`/`gte` null are equality and
            // `lt`/`gt` null hold for nothing.
            (Op::Eq | Op::Lte | Op::Gte, QValue::Null) => {
                found.is_empty() || any_equal(&QValue::Null)
            }
            (Op::Lt | Op::Gt, QValue::Null) => false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::NODE_SCHEMA;
    use crate::query::testing::params;
    use serde_json::json;

    /// The whole-filter entry point, checked against the conditions one by one.
    fn check(pairs: &[(&str, &str)], doc: &Value) -> bool {
        let filter =
            Filter::parse(&params(pairs), &["limit", "offset"], &NODE_SCHEMA).expect("valid query");
        let each = filter
            .conditions
            .iter()
            .all(|c| c.matches(doc, c.regex().as_ref()));
        assert_eq!(matches(&filter, doc), each, "{pairs:?}");
        each
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
    fn lists_match_strings_and_strings_in_arrays_only() {
        let doc = json!({"s": "abc", "a": ["x", 3, ["y"], {"s": "z"}], "n": 3, "t": true});
        assert!(check(&[("s__in", "x,abc")], &doc));
        assert!(check(&[("a__in", "q,x")], &doc));
        assert!(!check(&[("a__in", "3,y,z")], &doc));
        assert!(check(&[("a.s__in", "z")], &doc));
        assert!(!check(&[("n__in", "3")], &doc));
        assert!(!check(&[("t__in", "true")], &doc));
        assert!(check(&[("missing__nin", "x")], &doc));
        assert!(!check(&[("s__nin", "abc")], &doc));
        let long = (0..9_999)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(check(&[("a__nin", &long)], &doc));
        assert!(check(&[("s__in", &format!("{long},abc"))], &doc));
    }

    /// The names of the documents `pairs` selects.
    fn selected(pairs: &[(&str, &str)], docs: &[Value]) -> Vec<String> {
        docs.iter()
            .filter(|d| check(pairs, d))
            .map(|d| d["name"].as_str().expect("name").to_string())
            .collect()
    }

    #[test]
    fn null_with_operators_has_mongodb_semantics() {
        let docs = crate::query::testing::null_case_nodes();
        for (pairs, want) in crate::query::testing::NULL_CASES {
            assert_eq!(selected(pairs, &docs), *want, "{pairs:?}");
        }
        // a field holding null, missing, a value, a list with and without null
        let one = |pairs: &[(&str, &str)], doc: Value| check(pairs, &doc);
        for (doc, ne, lte, lt) in [
            (json!({"f": null}), false, true, false),
            (json!({}), false, true, false),
            (json!({"f": 0}), true, false, false),
            (json!({"f": ""}), true, false, false),
            (json!({"f": false}), true, false, false),
            (json!({"f": []}), true, false, false),
            (json!({"f": [1, null]}), false, true, false),
            (json!({"f": {"g": null}}), true, false, false),
        ] {
            assert_eq!(one(&[("f__ne", "null")], doc.clone()), ne, "ne {doc}");
            assert_eq!(one(&[("f__lte", "null")], doc.clone()), lte, "lte {doc}");
            assert_eq!(one(&[("f__gte", "null")], doc.clone()), lte, "gte {doc}");
            assert_eq!(one(&[("f__lt", "null")], doc.clone()), lt, "lt {doc}");
            assert_eq!(one(&[("f__gt", "null")], doc.clone()), lt, "gt {doc}");
        }
    }

    #[test]
    fn empty_filter_matches_everything_and_a_matcher_is_reusable() {
        assert!(matches(&Filter::default(), &json!(null)));
        let filter = Filter::parse(&params(&[("s__re", "^ab")]), &[], &NODE_SCHEMA).expect("valid");
        let matcher = Matcher::new(&filter);
        assert!(matcher.matches(&json!({"s": "abc"})));
        assert!(matcher.matches(&json!({"s": ["x", "abd"]})));
        assert!(!matcher.matches(&json!({"s": "cab"})));
        assert!(!matcher.matches(&json!({"s": 1})));
    }
}
