//! THE route table: every route the server answers, one line each in
//! [`ROUTES`] (method, path template, handler), matched in order after the
//! version prefix was stripped. A path that exists with another method is
//! a 405, anything else a 404. The OpenAPI document (`static/openapi.json`)
//! describes the same table; tests/openapi.rs keeps the two in agreement.

use crate::api::{
    account, events, groups, kv, nodes, pages, pubsub, stats, stream, telemetry, users,
};
use crate::app::App;
use crate::http::{ApiError, ApiResult, Method, Reply, Req};

/// A handler by the number of path parameters it takes.
#[derive(Clone, Copy)]
pub enum Handler {
    /// No path parameter.
    Plain(fn(&App, &Req) -> ApiResult),
    /// One path parameter.
    One(fn(&App, &Req, &str) -> ApiResult),
    /// Two path parameters.
    Two(fn(&App, &Req, &str, &str) -> ApiResult),
    /// One path parameter; the answer may come later (a parked long poll).
    Parked(fn(&App, &Req, &str) -> Result<Reply, ApiError>),
}

/// One route: a method, a path template whose `{name}` segments match any
/// one path segment, and its handler.
#[derive(Clone, Copy)]
pub struct Route {
    /// The method served (HEAD is served as GET).
    pub method: Method,
    /// The path without version prefix, e.g. `/node/{id}`.
    pub path: &'static str,
    /// What answers it.
    pub handler: Handler,
}

const fn on(method: Method, path: &'static str, handler: Handler) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

use Handler::{One, Parked, Plain, Two};
use Method::{Delete, Get, Patch, Post, Put};

/// Every route, in matching order: the first whose method and template
/// match wins (so `/user/me` comes before `/user/{id}`).
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    // root, metrics, the OpenAPI document, pages and assets (API.md 3, 18.5)
    on(Get, "/", Plain(pages::root)),
    on(Get, "/metrics", Plain(stats::metrics)),
    on(Get, "/openapi.json", Plain(pages::openapi)),
    on(Get, "/docs", Plain(pages::docs)),
    // the web console (API.md 18.6)
    on(Get, "/viewer", Plain(pages::viewer)),
    on(Get, "/dashboard", Plain(pages::dashboard)),
    on(Get, "/manage", Plain(pages::manage)),
    on(Get, "/analytics", Plain(pages::analytics)),
    on(Get, "/stats", Plain(pages::stats)),
    on(Get, "/stats/server", Plain(stats::server)),
    on(Get, "/static/css/{file}", One(pages::css)),
    on(Get, "/static/js/{file}", One(pages::js)),
    on(Get, "/icons/{file}", One(pages::icon)),

    // users and accounts (API.md 4)
    on(Post, "/user/login", Plain(account::login)),
    on(Post, "/user/logout", Plain(account::logout)),
    on(Post, "/user/register", Plain(users::register)),
    on(Get, "/user/invite", Plain(pages::invite_page)),
    on(Post, "/user/invite", Plain(account::invite)),
    on(Get, "/user/invite/url", Plain(account::invite_url)),
    on(Get, "/user/accept-invite", Plain(pages::accept_invite_page)),
    on(Post, "/user/accept-invite", Plain(account::accept_invite)),
    on(Post, "/user/request-verify-token", Plain(account::request_verify_token)),
    on(Post, "/user/verify", Plain(account::verify)),
    on(Post, "/user/forgot-password", Plain(account::forgot_password)),
    on(Post, "/user/reset-password", Plain(account::reset_password)),
    on(Post, "/user/update-password", Plain(account::update_password)),
    on(Get, "/whoami", Plain(users::whoami)),
    on(Get, "/users", Plain(users::list)),
    on(Get, "/user/me", Plain(users::whoami)),
    on(Patch, "/user/me", Plain(users::update_me)),
    on(Get, "/user/{id}", One(users::get)),
    on(Patch, "/user/{id}", One(users::update)),
    on(Delete, "/user/{id}", One(users::delete)),

    // user groups (API.md 5)
    on(Post, "/user-groups", Plain(groups::create)),
    on(Get, "/user-groups", Plain(groups::list_admin)),
    on(Get, "/user-groups/{id}", One(groups::get_admin)),
    on(Delete, "/user-groups/{id}", One(groups::delete)),
    on(Post, "/group", Plain(groups::create)),
    on(Get, "/groups", Plain(groups::list_public)),
    on(Get, "/group/{id}", One(groups::get_public)),
    on(Delete, "/group/{id}", One(groups::delete)),

    // nodes (API.md 6)
    on(Post, "/node", Plain(nodes::create)),
    on(Get, "/node/{id}", One(nodes::get)),
    on(Put, "/node/{id}", One(nodes::put)),
    on(Patch, "/node/{id}", One(nodes::patch)),
    on(Put, "/nodes/{id}", One(nodes::put_hierarchy)),
    on(Put, "/batch/nodeset", Plain(nodes::batch_nodeset)),
    on(Get, "/nodes", Plain(nodes::list)),
    on(Get, "/nodes/fast", Plain(nodes::fast)),
    on(Get, "/count", Plain(nodes::count)),

    // pub/sub, events, key/value store (API.md 9-11)
    on(Post, "/subscribe/{channel}", One(pubsub::subscribe)),
    on(Get, "/listen/{sub_id}", Parked(pubsub::listen)),
    on(Post, "/ack/{sub_id}", One(pubsub::ack)),
    on(Post, "/unsubscribe/{sub_id}", One(pubsub::unsubscribe)),
    on(Get, "/unsubscribe/{sub_id}", One(pubsub::unsubscribe)),
    on(Post, "/publish/{channel}", One(pubsub::publish)),
    on(Post, "/push/{list}", One(pubsub::push)),
    on(Get, "/pop/{list}", Parked(pubsub::pop)),
    on(Post, "/pop/{list}/ack", One(pubsub::pop_ack)),
    on(Get, "/stats/subscriptions", Plain(pubsub::stats)),
    on(Get, "/events", Plain(events::list)),
    on(Get, "/stream/{channel}", Parked(stream::open)),
    on(Get, "/kv/{ns}/{key}", Two(kv::get)),
    on(Post, "/kv/{ns}/{key}", Two(kv::set)),
    on(Delete, "/kv/{ns}/{key}", Two(kv::delete)),

    // telemetry (API.md 12)
    on(Post, "/telemetry", Plain(telemetry::create)),
    on(Get, "/telemetry", Plain(telemetry::list)),
    on(Get, "/telemetry/stats", Plain(telemetry::stats)),
    on(Get, "/telemetry/anomalies", Plain(telemetry::anomalies)),
];

/// The values of `template`'s `{…}` segments if `segments` match it.
fn matches<'a>(template: &str, segments: &'a [String]) -> Option<Vec<&'a str>> {
    let mut parts = template.split('/').filter(|p| !p.is_empty());
    let mut params = Vec::new();
    for segment in segments {
        let part = parts.next()?;
        if part.starts_with('{') {
            params.push(segment.as_str());
        } else if part != segment {
            return None;
        }
    }
    parts.next().is_none().then_some(params)
}

/// The route serving `method` on these path segments (HEAD as GET), and
/// the values of its path parameters.
pub fn find(method: Method, segments: &[String]) -> Option<(&'static Route, Vec<&str>)> {
    let method = match method {
        Method::Head => Method::Get,
        m => m,
    };
    ROUTES.iter().find_map(|route| {
        if route.method != method {
            return None;
        }
        matches(route.path, segments).map(|params| (route, params))
    })
}

/// The methods these path segments are served with, as an `Allow` header
/// value (`GET` brings `HEAD`), or `None` for a path no route has.
pub fn allowed(segments: &[String]) -> Option<String> {
    let served: Vec<Method> = ROUTES
        .iter()
        .filter(|r| matches(r.path, segments).is_some())
        .map(|r| r.method)
        .collect();
    let names: Vec<&str> = [
        (Method::Get, "GET"),
        (Method::Get, "HEAD"),
        (Method::Post, "POST"),
        (Method::Put, "PUT"),
        (Method::Patch, "PATCH"),
        (Method::Delete, "DELETE"),
    ]
    .into_iter()
    .filter(|(m, _)| served.contains(m))
    .map(|(_, name)| name)
    .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Dispatches a request to its handler. A known path with another method
/// is a 405 with the `Allow` header RFC 9110 (15.5.6) requires.
pub fn route(app: &App, req: &Req) -> Result<Reply, ApiError> {
    let Some((route, params)) = find(req.method, &req.segments) else {
        let Some(allow) = allowed(&req.segments) else {
            return Err(ApiError::not_found("Not Found"));
        };
        let mut resp = ApiError::method_not_allowed().to_resp();
        resp.headers.push(("Allow".to_string(), allow));
        return Ok(Reply::Now(resp));
    };
    match (route.handler, params.as_slice()) {
        (Handler::Plain(f), []) => f(app, req).map(Reply::Now),
        (Handler::One(f), [a]) => f(app, req, a).map(Reply::Now),
        (Handler::Two(f), [a, b]) => f(app, req, a, b).map(Reply::Now),
        (Handler::Parked(f), [a]) => f(app, req, a),
        _ => Err(ApiError::internal(format!(
            "route {} has a handler for another number of parameters",
            route.path
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Vec<String> {
        crate::http::split_path(path)
    }

    fn found(method: Method, path: &str) -> Option<(&'static str, Vec<String>)> {
        let segments = segments(path);
        find(method, &segments).map(|(r, p)| (r.path, p.into_iter().map(str::to_string).collect()))
    }

    #[test]
    fn templates_match_one_segment_per_parameter() {
        assert_eq!(
            found(Get, "/node/abc"),
            Some(("/node/{id}", vec!["abc".into()]))
        );
        assert_eq!(
            found(Get, "/kv/a/b"),
            Some(("/kv/{ns}/{key}", vec!["a".into(), "b".into()]))
        );
        assert_eq!(found(Get, "/kv/a"), None);
        assert_eq!(found(Get, "/kv/a/b/c"), None);
        assert_eq!(found(Get, "/"), Some(("/", vec![])));
        assert_eq!(found(Method::Head, "/nodes"), Some(("/nodes", vec![])));
        assert_eq!(found(Method::Other, "/nodes"), None);
    }

    #[test]
    fn earlier_routes_win() {
        assert_eq!(found(Get, "/user/me").map(|f| f.0), Some("/user/me"));
        assert_eq!(found(Get, "/nodes/fast").map(|f| f.0), Some("/nodes/fast"));
        assert_eq!(found(Put, "/nodes/fast").map(|f| f.0), Some("/nodes/{id}"));
    }

    #[test]
    fn every_handler_takes_its_templates_parameters() {
        for route in ROUTES {
            let wanted = route.path.matches('{').count();
            let takes = match route.handler {
                Handler::Plain(_) => 0,
                Handler::One(_) | Handler::Parked(_) => 1,
                Handler::Two(_) => 2,
            };
            assert_eq!(takes, wanted, "{}", route.path);
            assert!(route.path.starts_with('/'), "{}", route.path);
        }
    }

    #[test]
    fn allow_lists_the_methods_of_a_path() {
        assert_eq!(
            allowed(&segments("/node/x")).as_deref(),
            Some("GET, HEAD, PUT, PATCH")
        );
        assert_eq!(
            allowed(&segments("/unsubscribe/1")).as_deref(),
            Some("GET, HEAD, POST")
        );
        assert_eq!(allowed(&segments("/node")).as_deref(), Some("POST"));
        assert_eq!(allowed(&segments("/no/such/path")), None);
    }

    #[test]
    fn no_route_is_listed_twice() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    a.method != b.method || a.path != b.path,
                    "{:?} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
