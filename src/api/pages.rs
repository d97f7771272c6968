//! The root document, the OpenAPI document and its viewer, and
//! the web pages and assets embedded from `static/`.

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

/// An embedded asset of `static/<folder>/<name>` as a table row.
macro_rules! asset {
    ($folder:literal, $name:literal, $type:expr) => {
        (
            $folder,
            $name,
            $type,
            include_bytes!(concat!("../../static/", $folder, "/", $name)),
        )
    };
}

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every embedded asset: (folder, file name, content type, bytes).
const ASSETS: &[(&str, &str, &str, &[u8])] = &[
    asset!("css", "kci-lite.css", CSS),
    asset!("css", "docs.css", CSS),
    asset!("css", "console.css", CSS),
    asset!("css", "viewer.css", CSS),
    asset!("css", "dashboard.css", CSS),
    asset!("css", "manage.css", CSS),
    asset!("css", "analytics.css", CSS),
    asset!("css", "stats.css", CSS),
    asset!("js", "kci-lite.js", JS),
    asset!("js", "docs.js", JS),
    asset!("js", "console.js", JS),
    asset!("js", "chart.js", JS),
    asset!("js", "viewer.js", JS),
    asset!("js", "dashboard.js", JS),
    asset!("js", "manage.js", JS),
    asset!("js", "analytics.js", JS),
    asset!("js", "stats.js", JS),
];

/// The console's pages (API.md 18.6): (path segment, HTML).
pub const CONSOLE_PAGES: &[(&str, &str)] = &[
    ("viewer", include_str!("../../static/viewer.html")),
    ("dashboard", include_str!("../../static/dashboard.html")),
    ("manage", include_str!("../../static/manage.html")),
    ("analytics", include_str!("../../static/analytics.html")),
    ("stats", include_str!("../../static/stats.html")),
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

/// `GET /openapi.json`: the OpenAPI document.
pub fn openapi(_app: &App, _req: &Req) -> ApiResult {
    Ok(Resp::file("application/json", OPENAPI_JSON.as_bytes()))
}

/// `GET /docs`: the page that renders the OpenAPI document for a person
/// (its script and style are embedded assets; no other host is needed).
pub fn docs(_app: &App, _req: &Req) -> ApiResult {
    Ok(Resp::html(DOCS_HTML))
}

/// What a console page (and an invite page) may load and run: its own embedded scripts and
/// styles and calls to this server, nothing inline, nothing from another
/// host, and it may not be framed. A value that slipped into the page as
/// markup still could not run.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// A page of the console by name; its scripts draw it from the API.
fn console_page(name: &str) -> ApiResult {
    let (_, html) = CONSOLE_PAGES
        .iter()
        .find(|(page, _)| *page == name)
        .ok_or_else(|| ApiError::not_found("Not Found"))?;
    Ok(with_csp(Resp::html(html)))
}

/// `resp` with [`CONSOLE_CSP`] (and no content-type sniffing).
fn with_csp(mut resp: Resp) -> Resp {
    resp.headers
        .push(("Content-Security-Policy".into(), CONSOLE_CSP.into()));
    resp.headers
        .push(("X-Content-Type-Options".into(), "nosniff".into()));
    resp
}

/// `GET /viewer`: browse and filter nodes, follow a checkout's tree.
pub fn viewer(_app: &App, _req: &Req) -> ApiResult {
    console_page("viewer")
}

/// `GET /dashboard`: recent checkouts and their results, regressions.
pub fn dashboard(_app: &App, _req: &Req) -> ApiResult {
    console_page("dashboard")
}

/// `GET /manage`: submit and edit nodes; users, groups and invites.
pub fn manage(_app: &App, _req: &Req) -> ApiResult {
    console_page("manage")
}

/// `GET /analytics`: telemetry by lab and device type, anomalies.
pub fn analytics(_app: &App, _req: &Req) -> ApiResult {
    console_page("analytics")
}

/// `GET /stats`: subscriptions, queues, event rates, database size.
pub fn stats(_app: &App, _req: &Req) -> ApiResult {
    console_page("stats")
}

/// `GET /user/invite`: the admin's invite form.
pub fn invite_page(_app: &App, _req: &Req) -> ApiResult {
    Ok(with_csp(Resp::html(INVITE_HTML)))
}

/// `GET /user/accept-invite`: the invitee's password form.
pub fn accept_invite_page(_app: &App, _req: &Req) -> ApiResult {
    Ok(with_csp(Resp::html(ACCEPT_INVITE_HTML)))
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
