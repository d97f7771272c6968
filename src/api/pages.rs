//! The root document, metrics, the OpenAPI document and its viewer, and
//! the web pages and assets embedded from `static/`.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::app::App;
use crate::http::{ApiError, ApiResult, Req, Resp};

const INDEX_HTML: &str = include_str!("../../static/index.html");
const INVITE_HTML: &str = include_str!("../../static/invite.html");
const ACCEPT_INVITE_HTML: &str = include_str!("../../static/accept-invite.html");
const DOCS_HTML: &str = include_str!("../../static/docs.html");

/// The OpenAPI 3.1 document of the API (API.md 18.5), served as it is
/// stored: it is the project's own data, kept true by tests/openapi.rs.
pub const OPENAPI_JSON: &str = include_str!("../../static/openapi.json");

/// Every embedded asset: (folder, file name, content type, bytes).
const ASSETS: &[(&str, &str, &str, &[u8])] = &[
    (
        "css",
        "kci-lite.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/css/kci-lite.css"),
    ),
    (
        "js",
        "kci-lite.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/js/kci-lite.js"),
    ),
    (
        "css",
        "docs.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/css/docs.css"),
    ),
    (
        "js",
        "docs.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/js/docs.js"),
    ),
];

/// `GET /`: HTML for browsers, `{"message": "KernelCI API"}` for clients.
pub fn root(_app: &App, req: &Req) -> ApiResult {
    let wants_html = req
        .header("accept")
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        Ok(Resp::html(INDEX_HTML))
    } else {
        Ok(Resp::json(&json!({"message": "KernelCI API"})))
    }
}

/// `GET /metrics`: Prometheus text.
pub fn metrics(app: &App, _req: &Req) -> ApiResult {
    let n = app.requests.load(Ordering::Relaxed);
    let text = format!(
        "# HELP http_requests_total Total number of HTTP requests handled\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{{instance=\"api\"}} {n}\n"
    );
    Ok(Resp::text(200, &text))
}

/// `GET /openapi.json`: the OpenAPI document.
pub fn openapi(_app: &App, _req: &Req) -> ApiResult {
    Ok(Resp::file("application/json", OPENAPI_JSON.as_bytes()))
}

/// `GET /docs`: the page that renders the OpenAPI document for a person
/// (its script and style are embedded assets; no other host is needed).
pub fn docs(_app: &App, _req: &Req) -> ApiResult {
    Ok(Resp::html(DOCS_HTML))
}

/// `GET /user/invite`: the admin's invite form.
pub fn invite_page(_app: &App, _req: &Req) -> ApiResult {
    Ok(Resp::html(INVITE_HTML))
}

/// `GET /user/accept-invite`: the invitee's password form.
pub fn accept_invite_page(_app: &App, _req: &Req) -> ApiResult {
    Ok(Resp::html(ACCEPT_INVITE_HTML))
}

/// `GET /static/css/{f}`: an embedded style sheet.
pub fn css(_app: &App, _req: &Req, file: &str) -> ApiResult {
    asset("css", file)
}

/// `GET /static/js/{f}`: an embedded script.
pub fn js(_app: &App, _req: &Req, file: &str) -> ApiResult {
    asset("js", file)
}

/// `GET /icons/{f}`: an embedded icon.
pub fn icon(_app: &App, _req: &Req, file: &str) -> ApiResult {
    asset("icons", file)
}

/// `GET /static/css/{f}`, `/static/js/{f}`, `/icons/{f}`: embedded files only.
fn asset(folder: &str, file: &str) -> ApiResult {
    let extension = match folder {
        "css" => ".css",
        "js" => ".js",
        _ => ".png",
    };
    let valid = file.len() > extension.len()
        && file.ends_with(extension)
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !valid {
        return Err(ApiError::bad_request(if folder == "icons" {
            "Invalid icon name"
        } else {
            "Invalid filename"
        }));
    }
    ASSETS
        .iter()
        .find(|(f, name, _, _)| *f == folder && *name == file)
        .map(|(_, _, content_type, bytes)| Resp::file(content_type, bytes))
        .ok_or_else(|| ApiError::not_found("File not found"))
}
