//! Body validation in FastAPI's shape: every problem found is collected as a
//! `ValidationItem` (loc, msg, type) instead of stopping at the first. Also
//! the value rules of single fields (e-mail addresses, http(s) URLs) that the
//! user and node models share. Imports nothing else from the model.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::ids;
use crate::timestamp::{self, Timestamp};

/// One item of a 422 `detail` list.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationItem {
    /// Where the problem is, e.g. `["body", "name"]`.
    pub loc: Vec<Value>,
    /// What is wrong, in pydantic's words.
    pub msg: String,
    /// pydantic's error type (printed as `type`), e.g. `missing`.
    pub kind: String,
}

impl ValidationItem {
    /// An item at `loc` with this message and type.
    pub fn new(loc: Vec<Value>, msg: &str, kind: &str) -> ValidationItem {
        ValidationItem {
            loc,
            msg: msg.to_string(),
            kind: kind.to_string(),
        }
    }

    /// The item as FastAPI prints it.
    pub fn to_json(&self) -> Value {
        json!({"loc": self.loc, "msg": self.msg, "type": self.kind})
    }
}

/// Reads typed fields out of a JSON body object, recording problems.
pub struct Fields<'a> {
    obj: Option<&'a Map<String, Value>>,
    errors: Vec<ValidationItem>,
}

fn loc(key: &str) -> Vec<Value> {
    vec![json!("body"), json!(key)]
}

impl<'a> Fields<'a> {
    /// Starts reading `body`; a body that is not an object is one problem.
    pub fn new(body: &'a Value) -> Fields<'a> {
        match body.as_object() {
            Some(obj) => Fields {
                obj: Some(obj),
                errors: Vec::new(),
            },
            None => Fields {
                obj: None,
                errors: vec![ValidationItem::new(
                    vec![json!("body")],
                    "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type",
                )],
            },
        }
    }

    /// The raw value of `key`, if present (null included).
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.obj.and_then(|o| o.get(key))
    }

    /// Whether `key` is present in the body (null included).
    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// Records a problem at `["body", key]`.
    pub fn fail(&mut self, key: &str, msg: &str, kind: &str) {
        self.errors.push(ValidationItem::new(loc(key), msg, kind));
    }

    /// Records a problem at `["body", key, index]` (an element of a list).
    pub fn fail_item(&mut self, key: &str, index: usize, msg: &str, kind: &str) {
        self.errors.push(ValidationItem::new(
            vec![json!("body"), json!(key), json!(index)],
            msg,
            kind,
        ));
    }

    fn missing(&mut self, key: &str) {
        if self.obj.is_some() {
            self.fail(key, "Field required", "missing");
        }
    }

    /// A required string.
    pub fn required_str(&mut self, key: &str) -> Option<String> {
        match self.raw(key) {
            None => {
                self.missing(key);
                None
            }
            Some(v) => self.string_value(key, v),
        }
    }

    /// An optional string; null and absence are both `None`.
    pub fn optional_str(&mut self, key: &str) -> Option<String> {
        match self.raw(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.string_value(key, v),
        }
    }

    fn string_value(&mut self, key: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.fail(key, "Input should be a valid string", "string_type");
                None
            }
        }
    }

    /// An e-mail address, validated and with its domain lower-cased.
    pub fn email(&mut self, key: &str, required: bool) -> Option<String> {
        let text = if required {
            self.required_str(key)?
        } else {
            self.optional_str(key)?
        };
        match normalize_email(&text) {
            Some(email) => Some(email),
            None => {
                self.fail(
                    key,
                    "value is not a valid email address: An email address must have an @-sign and a valid domain.",
                    "value_error",
                );
                None
            }
        }
    }

    /// An optional boolean; pydantic's lax forms (`1/0`, `"true"`, …) accepted.
    pub fn optional_bool(&mut self, key: &str) -> Option<bool> {
        let v = self.raw(key)?;
        let parsed = match v {
            Value::Null => return None,
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(1) => Some(true),
                Some(0) => Some(false),
                _ => None,
            },
            Value::String(s) => parse_bool_word(s),
            _ => None,
        };
        if parsed.is_none() {
            self.fail(key, "Input should be a valid boolean", "bool_parsing");
        }
        parsed
    }

    /// An optional list of distinct strings.
    pub fn optional_unique_strings(&mut self, key: &str) -> Option<Vec<String>> {
        let v = self.raw(key)?;
        let Value::Array(items) = v else {
            if v.is_null() {
                return None;
            }
            self.fail(key, "Input should be a valid list", "list_type");
            return None;
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => {
                    if out.contains(s) {
                        self.errors.push(ValidationItem::new(
                            loc(key),
                            &format!("Value error, duplicate entry: {s}"),
                            "value_error",
                        ));
                        ok = false;
                    } else {
                        out.push(s.clone());
                    }
                }
                _ => {
                    self.errors.push(ValidationItem::new(
                        vec![json!("body"), json!(key), json!(i)],
                        "Input should be a valid string",
                        "string_type",
                    ));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A required list of strings.
    pub fn required_string_list(&mut self, key: &str) -> Option<Vec<String>> {
        match self.raw(key) {
            None => {
                self.fail(key, "Field required", "missing");
                None
            }
            Some(Value::Array(items)) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect();
                if strings.is_none() {
                    let at = first_non_string(items);
                    self.fail_item(key, at, "Input should be a valid string", "string_type");
                }
                strings
            }
            Some(_) => {
                self.fail(key, "Input should be a valid list", "list_type");
                None
            }
        }
    }

    /// An optional list of strings: `Some(Value::Null)` for an explicit
    /// null, `Some(list)` for a list, `None` when absent or invalid.
    pub fn string_list_or_null(&mut self, key: &str) -> Option<Value> {
        match self.raw(key)? {
            Value::Null => Some(Value::Null),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                Some(Value::Array(items.clone()))
            }
            Value::Array(items) => {
                let at = first_non_string(items);
                self.fail_item(key, at, "Input should be a valid string", "string_type");
                None
            }
            _ => {
                self.fail(key, "Input should be a valid list", "list_type");
                None
            }
        }
    }

    /// An optional object id, returned in its canonical (lower-case) form.
    pub fn optional_id(&mut self, key: &str) -> Option<String> {
        let text = self.optional_str(key)?;
        let id = ids::parse_id(&text);
        if id.is_none() {
            self.fail(key, &ids::invalid_id_detail(&text), "value_error");
        }
        id
    }

    /// An optional value out of the closed set `choices`, each known on the
    /// wire as `name(choice)`; the 422 message lists them in `choices` order.
    pub fn optional_choice<T: Copy>(
        &mut self,
        key: &str,
        choices: &[T],
        name: fn(T) -> &'static str,
    ) -> Option<T> {
        let text = self.optional_str(key)?;
        let found = choices.iter().copied().find(|&c| name(c) == text);
        if found.is_none() {
            let expected = choices
                .iter()
                .map(|&c| format!("'{}'", name(c)))
                .collect::<Vec<_>>()
                .join(", ");
            self.fail(key, &format!("Input should be {expected}"), "enum");
        }
        found
    }

    /// An optional object: `Some(Value::Null)` for an explicit null, `None`
    /// when absent or invalid.
    pub fn object_or_null(&mut self, key: &str) -> Option<Value> {
        match self.raw(key)? {
            v @ (Value::Null | Value::Object(_)) => Some(v.clone()),
            _ => {
                self.fail(key, "Input should be a valid dictionary", "dict_type");
                None
            }
        }
    }

    /// An optional object of http(s) URLs, returned normalised (see
    /// [`normalize_http_url`]); `Some(Value::Null)` for an explicit null.
    pub fn url_map_or_null(&mut self, key: &str) -> Option<Value> {
        let raw = self.raw(key)?;
        let Value::Object(map) = raw else {
            if raw.is_null() {
                return Some(Value::Null);
            }
            self.fail(key, "Input should be a valid dictionary", "dict_type");
            return None;
        };
        let mut out = Map::new();
        let mut ok = true;
        for (name, value) in map {
            match value.as_str().map(normalize_http_url) {
                Some(Ok(url)) => {
                    out.insert(name.clone(), Value::String(url));
                }
                Some(Err(kind)) => {
                    ok = false;
                    self.fail(key, &format!("Invalid URL for artifact '{name}'"), kind);
                }
                None => {
                    ok = false;
                    self.fail(key, "Input should be a valid string", "string_type");
                }
            }
        }
        ok.then_some(Value::Object(out))
    }

    /// An optional timestamp (see [`timestamp::parse`]); null is `None`.
    pub fn optional_timestamp(&mut self, key: &str) -> Option<Timestamp> {
        match self.raw(key)? {
            Value::Null => None,
            Value::String(text) => {
                let ts = timestamp::parse(text);
                if ts.is_none() {
                    self.fail(
                        key,
                        "Input should be a valid datetime",
                        "datetime_from_date_parsing",
                    );
                }
                ts
            }
            _ => {
                self.fail(key, "Input should be a valid datetime", "datetime_type");
                None
            }
        }
    }

    /// An optional JSON integer (no floats, bools or strings).
    pub fn optional_strict_int(&mut self, key: &str) -> Option<i64> {
        match self.raw(key)? {
            Value::Number(n) if n.is_i64() => n.as_i64(),
            _ => {
                self.fail(key, "Input should be a valid integer", "int_type");
                None
            }
        }
    }

    /// The value of a required field that a derived input type read as
    /// [`Checked`]; a missing or ill-typed value is recorded as a problem.
    pub fn required<T: Expected>(&mut self, key: &str, field: Checked<T>) -> Option<T> {
        match field {
            Checked::Missing => {
                self.missing(key);
                None
            }
            Checked::Invalid(found) => {
                let (msg, kind) = T::problem(&found);
                self.fail(key, msg, kind);
                None
            }
            Checked::Valid(value) => Some(value),
        }
    }

    /// The problems found, if any.
    pub fn finish(self) -> Result<(), Vec<ValidationItem>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

fn first_non_string(items: &[Value]) -> usize {
    items.iter().position(|v| !v.is_string()).unwrap_or(0)
}

/// A body field as a serde-derived input type sees it: derived types use it
/// (with `#[serde(default)]`) so that one wrong field does not hide the
/// others, and [`Fields::required`] turns it into FastAPI's problem items.
#[derive(Debug, Default)]
pub enum Checked<T> {
    /// The key is absent.
    #[default]
    Missing,
    /// The key is present but its value is not a `T` (kept for the message).
    Invalid(Value),
    /// The key holds a `T`.
    Valid(T),
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let found = Value::deserialize(deserializer)?;
        Ok(match T::deserialize(&found) {
            Ok(value) => Checked::Valid(value),
            Err(_) => Checked::Invalid(found),
        })
    }
}

/// What FastAPI answers (msg, type) for a value that is not of this type.
pub trait Expected {
    /// The message and type of the problem with `found`.
    fn problem(found: &Value) -> (&'static str, &'static str);
}

impl Expected for String {
    fn problem(_found: &Value) -> (&'static str, &'static str) {
        ("Input should be a valid string", "string_type")
    }
}

impl Expected for Vec<String> {
    fn problem(found: &Value) -> (&'static str, &'static str) {
        if found.is_array() {
            ("Input should be a valid string", "string_type")
        } else {
            ("Input should be a valid list", "list_type")
        }
    }
}

/// Case-insensitive identity of an e-mail address.
pub fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// Validates an e-mail address; returns it with the domain lower-cased.
pub fn normalize_email(text: &str) -> Option<String> {
    let text = text.trim();
    let (local, domain) = text.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"@<>()[]\\,;:\"".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_alphabetic()));
    (local_ok && domain_ok).then(|| format!("{local}@{}", domain.to_lowercase()))
}

/// Checks an absolute http(s) URL with a host; returns it normalised
/// (lower-case scheme and host, `/` for an empty path).
pub fn normalize_http_url(text: &str) -> Result<String, &'static str> {
    let (scheme, rest) = text.split_once("://").ok_or("url_parsing")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("url_scheme");
    }
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_name = host.split(':').next().unwrap_or("");
    if host_name.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("url_parsing");
    }
    let tail = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => format!("{userinfo}@{}", host.to_ascii_lowercase()),
        None => authority.to_ascii_lowercase(),
    };
    Ok(format!("{scheme}://{authority}{tail}"))
}

/// The boolean words the API accepts in queries and lax bodies.
pub fn parse_bool_word(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_problem() {
        let body = json!({"a": 1, "flag": "maybe", "list": ["x", "x"]});
        let mut f = Fields::new(&body);
        assert!(f.required_str("a").is_none());
        assert!(f.required_str("missing").is_none());
        assert!(f.optional_bool("flag").is_none());
        assert!(f.optional_unique_strings("list").is_none());
        let errors = f.finish().expect_err("problems");
        let kinds: Vec<_> = errors.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["string_type", "missing", "bool_parsing", "value_error"]
        );
    }

    #[test]
    fn lax_booleans() {
        let body = json!({"a": 1, "b": 0, "c": true, "d": "yes"});
        let mut f = Fields::new(&body);
        assert_eq!(f.optional_bool("a"), Some(true));
        assert_eq!(f.optional_bool("b"), Some(false));
        assert_eq!(f.optional_bool("c"), Some(true));
        assert_eq!(f.optional_bool("d"), Some(true));
        assert!(f.finish().is_ok());
    }

    #[test]
    fn email_rules() {
        assert_eq!(
            normalize_email("Bob@Example.COM").as_deref(),
            Some("Bob@example.com")
        );
        for bad in [
            "nope",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@-x.com",
            "a@x..com",
        ] {
            assert!(normalize_email(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(normalize_http_url("http://h").as_deref(), Ok("http://h/"));
        assert_eq!(
            normalize_http_url("HTTPS://Host/a?b=c").as_deref(),
            Ok("https://host/a?b=c")
        );
        assert_eq!(
            normalize_http_url("https://User:Pw@Host.org").as_deref(),
            Ok("https://User:Pw@host.org/")
        );
        assert_eq!(normalize_http_url("ftp://h/x"), Err("url_scheme"));
        assert_eq!(normalize_http_url("nope"), Err("url_parsing"));
        assert_eq!(normalize_http_url("http:///x"), Err("url_parsing"));
    }

    #[derive(Default, Deserialize)]
    struct Pair {
        #[serde(default)]
        names: Checked<Vec<String>>,
        #[serde(default)]
        label: Checked<String>,
    }

    #[test]
    fn checked_fields_report_every_problem() {
        let body = json!({"names": ["a", 1], "label": null});
        let pair = Pair::deserialize(&body).expect("never fails on an object");
        let mut f = Fields::new(&body);
        assert!(f.required("names", pair.names).is_none());
        assert!(f.required("label", pair.label).is_none());
        assert!(f.required("gone", Checked::<String>::Missing).is_none());
        let errors = f.finish().expect_err("problems");
        let kinds: Vec<_> = errors.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["string_type", "string_type", "missing"]);
        let body = json!({"names": "a", "label": "x"});
        let pair = Pair::deserialize(&body).expect("never fails on an object");
        let mut f = Fields::new(&body);
        assert!(f.required("names", pair.names).is_none());
        assert_eq!(f.required("label", pair.label).as_deref(), Some("x"));
        let errors = f.finish().expect_err("problems");
        assert_eq!(errors[0].kind, "list_type");
    }

    #[test]
    fn non_object_body() {
        let body = json!([1]);
        let f = Fields::new(&body);
        assert_eq!(f.finish().err().map(|e| e.len()), Some(1));
    }
}
