//! Body validation in FastAPI's shape: every problem found is collected as a
//! `ValidationItem` (loc, msg, type) instead of stopping at the first.

use serde_json::{Map, Value, json};

/// One item of a 422 `detail` list.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationItem {
    pub loc: Vec<Value>,
    pub msg: String,
    pub kind: String,
}

impl ValidationItem {
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
        match crate::model::user::normalize_email(&text) {
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

    /// The problems found, if any.
    pub fn finish(self) -> Result<(), Vec<ValidationItem>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
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
    fn non_object_body() {
        let body = json!([1]);
        let f = Fields::new(&body);
        assert_eq!(f.finish().err().map(|e| e.len()), Some(1));
    }
}
