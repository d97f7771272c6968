//! Request and response values independent of the HTTP library; the API
//! layer's error type and its mapping from lower layers' errors live in
//! [`error`], URL and form decoding in [`form`].

pub mod error;
pub mod form;
pub mod sse;
pub mod weight;

pub use error::{ApiError, ApiResult};
pub use form::{parse_query, split_path};

use std::net::SocketAddr;

use serde_json::{Value, json};

pub use crate::model::validate::ValidationItem;

/// HTTP methods the API knows; anything else is `Other` (405 on known paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Other,
}

/// A fully read request: the body is in memory (bounded by the server).
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    /// Decoded path segments after the version prefix (`/latest/node/x` → `["node", "x"]`).
    pub segments: Vec<String>,
    /// Query parameters in order, decoded.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote: Option<SocketAddr>,
}

impl Req {
    /// A request for tests and internal callers.
    pub fn new(method: Method, path: &str) -> Req {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Req {
            method,
            segments: form::split_path(path),
            query: form::parse_query(query),
            headers: Vec::new(),
            body: Vec::new(),
            remote: None,
        }
    }

    /// The value of a header (first occurrence), by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The token of the `Authorization: Bearer …` header, if any.
    pub fn bearer(&self) -> Option<&str> {
        crate::auth::bearer(self.header("authorization")?)
    }

    /// The last value of a query parameter (the contract: last one wins).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// Whether the body is to be parsed as JSON: JSON media types or none.
    fn is_json(&self) -> bool {
        match self.media_type() {
            None => true,
            Some(mt) => {
                mt == "application/json"
                    || (mt.starts_with("application/") && mt.ends_with("+json"))
            }
        }
    }

    /// The body's JSON syntax, checked before authentication as upstream
    /// does: only broken JSON is an error here (422 `json_invalid`). The
    /// check builds no document (an anonymous caller's large body costs
    /// reading it, not a tree of values): [`Body::require`] parses it, once
    /// the caller is known.
    pub fn body(&self) -> Result<Body<'_>, ApiError> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Body::Missing);
        }
        if !self.is_json() {
            return Ok(Body::NotJson);
        }
        let text = std::str::from_utf8(&self.body).map_err(|e| {
            ApiError::validation(vec![ValidationItem::new(
                vec![json!("body"), json!(e.valid_up_to())],
                "JSON decode error: invalid UTF-8",
                "json_invalid",
            )])
        })?;
        decode::<serde::de::IgnoredAny>(text)?;
        Ok(Body::Json(text))
    }

    /// The body as a JSON value: 422 when missing, not JSON or broken.
    pub fn json(&self) -> Result<Value, ApiError> {
        self.body()?.require()
    }

    /// The body as an HTML form (urlencoded or multipart); other content is
    /// an empty form, so that required fields are reported as missing.
    pub fn form(&self) -> Vec<(String, String)> {
        let ct = self.header("content-type").unwrap_or("");
        let mt = self.media_type().unwrap_or_default();
        if mt == "application/x-www-form-urlencoded" {
            form::parse_query(&String::from_utf8_lossy(&self.body))
        } else if mt == "multipart/form-data" {
            form::boundary(ct)
                .map(|b| form::parse_multipart(&self.body, &b))
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    }
}

/// `text` as one JSON value of type `T` and nothing after it, or the 422
/// FastAPI gives for broken JSON.
fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = T::deserialize(&mut de).and_then(|v| {
        de.end()?;
        Ok(v)
    });
    value.map_err(|e| {
        let offset = char_offset(text, e.line(), e.column());
        ApiError::validation(vec![ValidationItem::new(
            vec![json!("body"), json!(offset)],
            &format!("JSON decode error: {e}"),
            "json_invalid",
        )])
    })
}

fn char_offset(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            return offset + l.chars().take(column.saturating_sub(1)).count();
        }
        offset += l.chars().count() + 1;
    }
    offset
}

/// A request body after the syntax check.
#[derive(Debug)]
pub enum Body<'a> {
    /// No body (or only whitespace).
    Missing,
    /// A content type other than JSON.
    NotJson,
    /// Well-formed JSON text, not parsed yet.
    Json(&'a str),
}

impl Body<'_> {
    /// The JSON value, or the 422 FastAPI gives for a missing or non-JSON body.
    pub fn require(self) -> Result<Value, ApiError> {
        match self {
            // The syntax was checked; a number out of range is found here.
            Body::Json(text) => decode(text),
            Body::Missing => Err(ApiError::validation(vec![ValidationItem::new(
                vec![json!("body")],
                "Field required",
                "missing",
            )])),
            Body::NotJson => Err(ApiError::validation(vec![ValidationItem::new(
                vec![json!("body")],
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )])),
        }
    }
}

/// A response before it is written to the wire.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: &'static str,
    pub body: RespBody,
    pub headers: Vec<(String, String)>,
}

/// A response body: bytes in memory, or a stream read as it is written
/// (long lists, in bounded memory; sent chunked).
pub enum RespBody {
    Bytes(Vec<u8>),
    Stream(Box<dyn std::io::Read + Send>),
}

impl std::fmt::Debug for RespBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespBody::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            RespBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl From<Vec<u8>> for RespBody {
    fn from(bytes: Vec<u8>) -> RespBody {
        RespBody::Bytes(bytes)
    }
}

impl Resp {
    /// 200 with a JSON body.
    pub fn json(value: &Value) -> Resp {
        Resp::json_status(200, value)
    }

    /// A JSON body with the given status.
    pub fn json_status(status: u16, value: &Value) -> Resp {
        Resp {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value)
                .unwrap_or_else(|_| b"null".to_vec())
                .into(),
            headers: Vec::new(),
        }
    }

    /// 204 with an empty body.
    pub fn no_content() -> Resp {
        Resp {
            status: 204,
            content_type: "application/json",
            body: Vec::new().into(),
            headers: Vec::new(),
        }
    }

    /// 200 HTML page.
    pub fn html(body: &str) -> Resp {
        Resp {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.as_bytes().to_vec().into(),
            headers: Vec::new(),
        }
    }

    /// Plain text with the given status.
    pub fn text(status: u16, body: &str) -> Resp {
        Resp {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec().into(),
            headers: Vec::new(),
        }
    }

    /// 200 with JSON text as it is (stored documents, already valid).
    pub fn json_text(text: String) -> Resp {
        Resp {
            status: 200,
            content_type: "application/json",
            body: text.into_bytes().into(),
            headers: Vec::new(),
        }
    }

    /// 200 with a JSON body read as it is written.
    pub fn json_stream(stream: impl std::io::Read + Send + 'static) -> Resp {
        Resp {
            status: 200,
            content_type: "application/json",
            body: RespBody::Stream(Box::new(stream)),
            headers: Vec::new(),
        }
    }

    /// Any embedded file.
    pub fn file(content_type: &'static str, body: &[u8]) -> Resp {
        Resp {
            status: 200,
            content_type,
            body: body.to_vec().into(),
            headers: Vec::new(),
        }
    }
}

/// Sends the response of a request answered later; callable from any
/// thread, it never blocks (the server writes on a thread of its own).
pub type Respond = Box<dyn FnOnce(Resp) + Send>;

/// Starts an event stream once its head is sent: gets the sink that
/// carries the stream's body (see [`Reply::Stream`]).
pub type StartStream = Box<dyn FnOnce(Box<dyn crate::streams::Sink>) + Send>;

/// How a request is answered: now, or later (a parked long poll): the
/// closure gets the request's [`Respond`] and passes it on to whoever
/// will answer.
pub enum Reply {
    Now(Resp),
    Later(Box<dyn FnOnce(Respond) + Send>),
    /// An event stream (`text/event-stream`): the server sends the head,
    /// takes the connection over and hands its sink to the closure; the
    /// body is whatever the sink is given, for as long as it lasts.
    Stream(StartStream),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_last_wins() {
        let req = Req::new(Method::Get, "/nodes?a=1&a=2&b=x%3Dy");
        assert_eq!(req.query_param("a"), Some("2"));
        assert_eq!(req.query_param("b"), Some("x=y"));
        assert_eq!(req.segments, vec!["nodes"]);
    }

    #[test]
    fn json_errors_are_422() {
        let mut req = Req::new(Method::Post, "/x");
        assert_eq!(req.json().err().map(|e| e.status), Some(422));
        req.body = b"{\"a\": 1,}".to_vec();
        let err = req.json().expect_err("invalid");
        assert_eq!(err.status, 422);
        assert_eq!(err.detail[0]["type"], "json_invalid");
        req.body = b"{\"a\": 1}".to_vec();
        req.headers
            .push(("content-type".into(), "text/plain".into()));
        assert_eq!(req.json().err().map(|e| e.status), Some(422));
        req.headers[0].1 = "application/json; charset=utf-8".into();
        assert!(req.json().is_ok());
    }
}
