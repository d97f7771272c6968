//! Request and response values independent of the HTTP library, and the one
//! error type of the API layer with its mapping to status + `detail`.

use std::net::SocketAddr;

use serde_json::{Value, json};

pub use crate::model::validate::ValidationItem;
use crate::pubsub::BrokerError;
use crate::store::StoreError;

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
            segments: split_path(path),
            query: parse_query(query),
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
    /// does: only broken JSON is an error here (422 `json_invalid`).
    pub fn body(&self) -> Result<Body, ApiError> {
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
        let mut de = serde_json::Deserializer::from_str(text);
        let value = serde::Deserialize::deserialize(&mut de).and_then(|v: Value| {
            de.end()?;
            Ok(v)
        });
        value.map(Body::Json).map_err(|e| {
            let offset = char_offset(text, e.line(), e.column());
            ApiError::validation(vec![ValidationItem::new(
                vec![json!("body"), json!(offset)],
                &format!("JSON decode error: {e}"),
                "json_invalid",
            )])
        })
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
            parse_query(&String::from_utf8_lossy(&self.body))
        } else if mt == "multipart/form-data" {
            boundary(ct)
                .map(|b| parse_multipart(&self.body, &b))
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    }
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

fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Text fields of a multipart/form-data body.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(&delimiter).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let name = head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
            })
        });
        if let Some(name) = name {
            fields.push((name, value.to_string()));
        }
    }
    fields
}

/// Splits a path into percent-decoded, non-empty segments.
pub fn split_path(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect()
}

/// Parses `a=1&b=2` (urlencoded: `+` is a space).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Percent-decoding; invalid escapes are kept literally and invalid UTF-8
/// becomes replacement characters.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request body after the syntax check.
#[derive(Debug)]
pub enum Body {
    /// No body (or only whitespace).
    Missing,
    /// A content type other than JSON.
    NotJson,
    /// Parsed JSON.
    Json(Value),
}

impl Body {
    /// The JSON value, or the 422 FastAPI gives for a missing or non-JSON body.
    pub fn require(self) -> Result<Value, ApiError> {
        match self {
            Body::Json(v) => Ok(v),
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
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
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
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec()),
            headers: Vec::new(),
        }
    }

    /// 204 with an empty body.
    pub fn no_content() -> Resp {
        Resp {
            status: 204,
            content_type: "application/json",
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// 200 HTML page.
    pub fn html(body: &str) -> Resp {
        Resp {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    /// Plain text with the given status.
    pub fn text(status: u16, body: &str) -> Resp {
        Resp {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    /// Any embedded file.
    pub fn file(content_type: &'static str, body: &[u8]) -> Resp {
        Resp {
            status: 200,
            content_type,
            body: body.to_vec(),
            headers: Vec::new(),
        }
    }
}

/// Every failure of a request, as the client sees it: a status and a
/// `detail`; `cause` is only for the log.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub detail: Value,
    pub cause: Option<String>,
}

/// What handlers return.
pub type ApiResult = Result<Resp, ApiError>;

/// Sends the response of a request answered later; callable from any
/// thread, it never blocks (the server writes on a thread of its own).
pub type Respond = Box<dyn FnOnce(Resp) + Send>;

/// How a request is answered: now, or later (a parked long poll): the
/// closure gets the request's [`Respond`] and passes it on to whoever
/// will answer.
pub enum Reply {
    Now(Resp),
    Later(Box<dyn FnOnce(Respond) + Send>),
}

impl ApiError {
    fn new(status: u16, detail: &str) -> ApiError {
        ApiError {
            status,
            detail: Value::String(detail.to_string()),
            cause: None,
        }
    }

    /// 400 with a text detail.
    pub fn bad_request(detail: &str) -> ApiError {
        ApiError::new(400, detail)
    }

    /// 401 `Unauthorized`: no, bad or dead token.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized")
    }

    /// 403 `Forbidden`: authenticated but lacking the role.
    pub fn forbidden() -> ApiError {
        ApiError::new(403, "Forbidden")
    }

    /// 404 with a text detail.
    pub fn not_found(detail: &str) -> ApiError {
        ApiError::new(404, detail)
    }

    /// 405 for a known path with a method it does not serve.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "Method Not Allowed")
    }

    /// 409 with a text detail.
    pub fn conflict(detail: &str) -> ApiError {
        ApiError::new(409, detail)
    }

    /// 413: the body is over `KCI_MAX_BODY_BYTES`.
    pub fn too_large() -> ApiError {
        ApiError::new(413, "Request body too large")
    }

    /// 422 with FastAPI's list of problems.
    pub fn validation(items: Vec<ValidationItem>) -> ApiError {
        ApiError {
            status: 422,
            detail: Value::Array(items.iter().map(ValidationItem::to_json).collect()),
            cause: None,
        }
    }

    /// 422 for one query parameter.
    pub fn query_invalid(name: &str, msg: &str, kind: &str) -> ApiError {
        ApiError::validation(vec![ValidationItem::new(
            vec![json!("query"), json!(name)],
            msg,
            kind,
        )])
    }

    /// 500: a real server fault; `cause` goes to the log only.
    pub fn internal(cause: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            detail: Value::String("Internal server error".to_string()),
            cause: Some(cause.into()),
        }
    }

    /// 500 with a specific client-facing detail (e.g. a mail failure).
    pub fn internal_detail(detail: &str, cause: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            detail: Value::String(detail.to_string()),
            cause: Some(cause.into()),
        }
    }

    /// The response sent to the client.
    pub fn to_resp(&self) -> Resp {
        Resp::json_status(self.status, &json!({"detail": self.detail}))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::NotFound => ApiError::not_found("Not Found"),
            StoreError::Conflict(what) => ApiError::bad_request(&what),
            StoreError::Busy => ApiError {
                status: 503,
                detail: Value::String("Database busy, try again".into()),
                cause: Some("database busy".into()),
            },
            StoreError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(err: BrokerError) -> ApiError {
        match err {
            BrokerError::NotFound(id) => ApiError::not_found(&format!(
                "Subscription id not found: 'Subscription {id} not found'"
            )),
            BrokerError::NotOwner { id, user } => {
                ApiError::new(403, &format!("Subscription {id} not owned by {user}"))
            }
            BrokerError::SubscriberTaken(sid) => {
                ApiError::new(403, &format!("Subscriber {sid} owned by different user"))
            }
            BrokerError::ShuttingDown => ApiError::new(503, "Server is shutting down"),
            BrokerError::Store(err) => ApiError::from(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%zz%4", true), "%zz%4");
        assert_eq!(percent_decode("%ff", true), "\u{fffd}");
    }

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

    #[test]
    fn multipart_fields() {
        let body = b"--xx\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbob\r\n--xx\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\np w\r\n--xx--\r\n";
        assert_eq!(
            parse_multipart(body, "xx"),
            vec![
                ("username".to_string(), "bob".to_string()),
                ("password".to_string(), "p w".to_string())
            ]
        );
    }
}
