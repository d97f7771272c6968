//! The root document, metrics, and the web pages and assets embedded from
//! `static/`.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::app::App;
use crate::http::{ApiError, ApiResult, Req, Resp};

const INDEX_HTML: &str = include_str!("../../static/index.html");
const INVITE_HTML: &str = include_str!("../../static/invite.html");
const ACCEPT_INVITE_HTML: &str = include_str!("../../static/accept-invite.html");

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

/// `GET /user/invite`: the admin's invite form.
pub fn invite_page() -> ApiResult {
    Ok(Resp::html(INVITE_HTML))
}

/// `GET /user/accept-invite`: the invitee's password form.
pub fn accept_invite_page() -> ApiResult {
    Ok(Resp::html(ACCEPT_INVITE_HTML))
}

/// `GET /static/css/{f}`, `/static/js/{f}`, `/icons/{f}`: embedded files only.
pub fn asset(folder: &str, file: &str) -> ApiResult {
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
