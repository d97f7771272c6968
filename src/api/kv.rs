//! `/kv/{namespace}/{key}`: the key/value store, one for all users. A
//! value is text; a POST body is a JSON string, or any other UTF-8 text
//! taken as it is, so that kernelci-core's `set_kv(ns, key, "plain text")`
//! (sent unquoted with a JSON content type) works.

use serde_json::{Value, json};

use crate::app::App;
use crate::auth;
use crate::http::{ApiError, ApiResult, Body, Req, Resp, ValidationItem};
use crate::store::kv;

/// Longest namespace and longest key accepted, in bytes of UTF-8; longer
/// ones answer 422 (`string_too_long`).
pub const MAX_KV_NAME_BYTES: usize = 1024;

/// What a POST asks the store to do.
#[derive(Debug, PartialEq)]
pub enum KvWrite {
    /// Store this value.
    Set(String),
    /// Remove the key (body `null`, `""`, empty or only whitespace).
    Delete,
}

/// A POST body after the checks made before authentication: it is UTF-8,
/// and either JSON or text to be kept as it is.
#[derive(Debug, PartialEq)]
pub enum Posted<'a> {
    /// No body, or only whitespace.
    Missing,
    /// Well-formed JSON, not parsed yet.
    Json(&'a str),
    /// Text that is not JSON (or not sent as JSON): the value itself.
    Text(&'a str),
}

impl<'a> Posted<'a> {
    /// Classifies `req`'s body: 422 (`string_unicode`) when it is not UTF-8,
    /// the one thing a value cannot be.
    pub fn read(req: &'a Req) -> Result<Posted<'a>, ApiError> {
        let text = std::str::from_utf8(&req.body).map_err(|e| {
            ApiError::validation(vec![ValidationItem::new(
                vec![json!("body"), json!(e.valid_up_to())],
                "Input should be a valid string, unable to parse raw data as a unicode string",
                "string_unicode",
            )])
        })?;
        Ok(match req.body() {
            Ok(Body::Missing) => Posted::Missing,
            Ok(Body::Json(json)) => Posted::Json(json),
            // Another content type, or broken JSON: a plain-text value.
            Ok(Body::NotJson) | Err(_) => Posted::Text(text),
        })
    }

    /// What the body asks for: a JSON string or text is stored, `null` and
    /// `""` delete; any other JSON value is 422 (`string_type`).
    pub fn into_write(self) -> Result<KvWrite, ApiError> {
        let json = match self {
            Posted::Missing => return Ok(KvWrite::Delete),
            Posted::Text(text) => return Ok(KvWrite::Set(text.to_string())),
            Posted::Json(json) => json,
        };
        // The syntax was checked; a number out of range is found here.
        let value = Body::Json(json).require()?;
        match value {
            Value::Null => Ok(KvWrite::Delete),
            Value::String(s) if s.is_empty() => Ok(KvWrite::Delete),
            Value::String(s) => Ok(KvWrite::Set(s)),
            _ => Err(ApiError::validation(vec![ValidationItem::new(
                vec![json!("body")],
                "Input should be a valid string",
                "string_type",
            )])),
        }
    }
}

/// The namespace and key of the path, or 422 naming each one over
/// [`MAX_KV_NAME_BYTES`].
fn names<'a>(ns: &'a str, key: &'a str) -> Result<(&'a str, &'a str), ApiError> {
    let problems: Vec<ValidationItem> = [("namespace", ns), ("key", key)]
        .into_iter()
        .filter(|(_, text)| text.len() > MAX_KV_NAME_BYTES)
        .map(|(name, _)| {
            ValidationItem::new(
                vec![json!("path"), json!(name)],
                &format!("String should have at most {MAX_KV_NAME_BYTES} bytes"),
                "string_too_long",
            )
        })
        .collect();
    if problems.is_empty() {
        Ok((ns, key))
    } else {
        Err(ApiError::validation(problems))
    }
}

/// `GET /kv/{namespace}/{key}` (user): the value, or `null`.
pub fn get(app: &App, req: &Req, ns: &str, key: &str) -> ApiResult {
    auth::user(&app.keys, &app.users, req.bearer())?;
    let (ns, key) = names(ns, key)?;
    let value = app.store.read(|c| kv::get(c, ns, key))?;
    Ok(Resp::json(&value.map_or(Value::Null, Value::String)))
}

/// `POST /kv/{namespace}/{key}` (user): stores the body's value, or
/// deletes the key for an empty one; `"OK"` once it is durable.
pub fn set(app: &App, req: &Req, ns: &str, key: &str) -> ApiResult {
    let posted = Posted::read(req)?;
    auth::user(&app.keys, &app.users, req.bearer())?;
    let (ns, key) = names(ns, key)?;
    let write = posted.into_write()?;
    let (ns, key) = (ns.to_string(), key.to_string());
    app.store.write(move |c, _| match write {
        KvWrite::Set(value) => kv::set(c, &ns, &key, &value),
        KvWrite::Delete => kv::delete(c, &ns, &key).map(drop),
    })?;
    Ok(Resp::json(&json!("OK")))
}

/// `DELETE /kv/{namespace}/{key}` (user): removes the key, present or not.
pub fn delete(app: &App, req: &Req, ns: &str, key: &str) -> ApiResult {
    auth::user(&app.keys, &app.users, req.bearer())?;
    let (ns, key) = names(ns, key)?;
    let (ns, key) = (ns.to_string(), key.to_string());
    app.store.write(move |c, _| kv::delete(c, &ns, &key))?;
    Ok(Resp::json(&json!("Key-value pair deleted successfully")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn post(body: &[u8], content_type: Option<&str>) -> Req {
        let mut req = Req::new(Method::Post, "/kv/ns/key");
        req.body = body.to_vec();
        if let Some(ct) = content_type {
            req.headers.push(("content-type".into(), ct.into()));
        }
        req
    }

    /// The write a body asks for, or the status and `type` of its 422.
    fn write_of(body: &[u8], content_type: Option<&str>) -> Result<KvWrite, (u16, Value)> {
        let req = post(body, content_type);
        Posted::read(&req)
            .and_then(Posted::into_write)
            .map_err(|e| (e.status, e.detail[0]["type"].clone()))
    }

    fn set(text: &str) -> Result<KvWrite, (u16, Value)> {
        Ok(KvWrite::Set(text.to_string()))
    }

    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn json_strings_are_stored_and_empty_values_delete() {
        assert_eq!(write_of(br#""value-1""#, JSON), set("value-1"));
        assert_eq!(write_of(br#""a\"b\u00e9""#, None), set("a\"bé"));
        assert_eq!(write_of(br#""  ""#, JSON), set("  "));
        assert_eq!(write_of(b"null", JSON), Ok(KvWrite::Delete));
        assert_eq!(write_of(br#""""#, JSON), Ok(KvWrite::Delete));
        assert_eq!(write_of(b"", JSON), Ok(KvWrite::Delete));
        assert_eq!(write_of(b" \r\n ", None), Ok(KvWrite::Delete));
    }

    #[test]
    fn other_json_values_are_422() {
        for body in [&b"42"[..], b"true", b"{\"a\": 1}", b"[\"x\"]", b"-0.5"] {
            let got = write_of(body, JSON);
            assert_eq!(got, Err((422, json!("string_type"))), "{body:?}");
        }
        // Well-formed but out of range: still JSON, still not a string.
        assert_eq!(write_of(b"1e999", JSON), Err((422, json!("json_invalid"))));
    }

    #[test]
    fn text_that_is_not_json_is_kept_as_it_is() {
        assert_eq!(write_of(b"plain text value", JSON), set("plain text value"));
        assert_eq!(write_of(b"{broken", None), set("{broken"));
        assert_eq!(write_of(b" two words \n", JSON), set(" two words \n"));
        assert_eq!(write_of(b"\"unterminated", JSON), set("\"unterminated"));
        // Another content type: text even when it looks like JSON.
        assert_eq!(
            write_of(b"\"quoted\"", Some("text/plain")),
            set("\"quoted\"")
        );
        assert_eq!(write_of(b"42", Some("text/plain")), set("42"));
    }

    #[test]
    fn bodies_that_are_not_utf8_are_422_before_anything_else() {
        for (body, ct) in [
            (&b"\xff\xfe"[..], JSON),
            (b"\"\xc3\x28\"", JSON),
            (b"abc\x80", Some("text/plain")),
            (b"\x80", None),
        ] {
            let req = post(body, ct);
            let err = Posted::read(&req).expect_err("not UTF-8");
            assert_eq!(err.status, 422);
            assert_eq!(err.detail[0]["type"], "string_unicode", "{body:?}");
            assert_eq!(err.detail[0]["loc"][0], "body");
        }
    }

    #[test]
    fn names_are_bounded_in_bytes() {
        let at_limit = "k".repeat(MAX_KV_NAME_BYTES);
        assert!(names(&at_limit, &at_limit).is_ok());
        // 513 two-byte characters: 1026 bytes.
        let over = "é".repeat(MAX_KV_NAME_BYTES / 2 + 1);
        let err = names(&over, "k").expect_err("namespace too long");
        assert_eq!(err.status, 422);
        assert_eq!(err.detail[0]["loc"], json!(["path", "namespace"]));
        let err = names(&over, &over).expect_err("both too long");
        assert_eq!(err.detail.as_array().map(Vec::len), Some(2));
        assert_eq!(err.detail[1]["loc"], json!(["path", "key"]));
        assert_eq!(err.detail[1]["type"], "string_too_long");
    }
}
