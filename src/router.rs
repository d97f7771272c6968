//! THE route table: one match on (method, path segments) after the version
//! prefix was stripped. A path that exists with another method is a 405,
//! anything else a 404.

use crate::api::{account, events, groups, kv, nodes, pages, pubsub, telemetry, users};
use crate::app::App;
use crate::http::{ApiError, Method, Reply, Req};

type Handler<'a> = Box<dyn FnOnce(&App, &Req) -> Result<Reply, ApiError> + 'a>;

fn now<'a>(f: impl FnOnce(&App, &Req) -> crate::http::ApiResult + 'a) -> Option<Handler<'a>> {
    Some(Box::new(move |app, req| f(app, req).map(Reply::Now)))
}

fn reply<'a>(f: impl FnOnce(&App, &Req) -> Result<Reply, ApiError> + 'a) -> Option<Handler<'a>> {
    Some(Box::new(f))
}

fn lookup<'a>(method: Method, segments: &'a [&'a str]) -> Option<Handler<'a>> {
    use Method::{Delete, Get, Patch, Post, Put};
    match (method, segments) {
        (Get, []) => now(pages::root),
        (Get, ["metrics"]) => now(pages::metrics),
        (Get, ["static", "css", file]) => now(move |_, _| pages::asset("css", file)),
        (Get, ["static", "js", file]) => now(move |_, _| pages::asset("js", file)),
        (Get, ["icons", file]) => now(move |_, _| pages::asset("icons", file)),

        (Post, ["user", "login"]) => now(account::login),
        (Post, ["user", "logout"]) => now(account::logout),
        (Post, ["user", "register"]) => now(users::register),
        (Get, ["user", "invite"]) => now(|_, _| pages::invite_page()),
        (Post, ["user", "invite"]) => now(account::invite),
        (Get, ["user", "invite", "url"]) => now(account::invite_url),
        (Get, ["user", "accept-invite"]) => now(|_, _| pages::accept_invite_page()),
        (Post, ["user", "accept-invite"]) => now(account::accept_invite),
        (Post, ["user", "request-verify-token"]) => now(account::request_verify_token),
        (Post, ["user", "verify"]) => now(account::verify),
        (Post, ["user", "forgot-password"]) => now(account::forgot_password),
        (Post, ["user", "reset-password"]) => now(account::reset_password),
        (Post, ["user", "update-password"]) => now(account::update_password),
        (Get, ["whoami"]) => now(users::whoami),
        (Get, ["users"]) => now(users::list),
        (Get, ["user", "me"]) => now(users::whoami),
        (Patch, ["user", "me"]) => now(users::update_me),
        (Get, ["user", id]) => now(move |a, r| users::get(a, r, id)),
        (Patch, ["user", id]) => now(move |a, r| users::update(a, r, id)),
        (Delete, ["user", id]) => now(move |a, r| users::delete(a, r, id)),

        (Post, ["user-groups"]) => now(groups::create),
        (Get, ["user-groups"]) => now(groups::list_admin),
        (Get, ["user-groups", id]) => now(move |a, r| groups::get_admin(a, r, id)),
        (Delete, ["user-groups", id]) => now(move |a, r| groups::delete(a, r, id)),
        (Post, ["group"]) => now(groups::create),
        (Get, ["groups"]) => now(groups::list_public),
        (Get, ["group", id]) => now(move |a, r| groups::get_public(a, r, id)),
        (Delete, ["group", id]) => now(move |a, r| groups::delete(a, r, id)),

        (Post, ["node"]) => now(nodes::create),
        (Get, ["node", id]) => now(move |a, r| nodes::get(a, r, id)),
        (Put, ["node", id]) => now(move |a, r| nodes::put(a, r, id)),
        (Patch, ["node", id]) => now(move |a, r| nodes::patch(a, r, id)),
        (Put, ["nodes", id]) => now(move |a, r| nodes::put_hierarchy(a, r, id)),
        (Put, ["batch", "nodeset"]) => now(nodes::batch_nodeset),
        (Get, ["nodes"]) => now(nodes::list),
        (Get, ["nodes", "fast"]) => now(nodes::fast),
        (Get, ["count"]) => now(nodes::count),

        (Post, ["subscribe", channel]) => now(move |a, r| pubsub::subscribe(a, r, channel)),
        (Get, ["listen", id]) => reply(move |a, r| pubsub::listen(a, r, id)),
        (Post | Get, ["unsubscribe", id]) => now(move |a, r| pubsub::unsubscribe(a, r, id)),
        (Post, ["publish", channel]) => now(move |a, r| pubsub::publish(a, r, channel)),
        (Post, ["push", list]) => now(move |a, r| pubsub::push(a, r, list)),
        (Get, ["pop", list]) => reply(move |a, r| pubsub::pop(a, r, list)),
        (Get, ["stats", "subscriptions"]) => now(pubsub::stats),
        (Get, ["events"]) => now(events::list),
        (Get, ["kv", ns, key]) => now(move |a, r| kv::get(a, r, ns, key)),
        (Post, ["kv", ns, key]) => now(move |a, r| kv::set(a, r, ns, key)),
        (Delete, ["kv", ns, key]) => now(move |a, r| kv::delete(a, r, ns, key)),
        (Post, ["telemetry"]) => now(telemetry::create),
        (Get, ["telemetry"]) => now(telemetry::list),
        (Get, ["telemetry", "stats"]) => now(telemetry::stats),
        (Get, ["telemetry", "anomalies"]) => now(telemetry::anomalies),
        _ => None,
    }
}

/// Dispatches a request to its handler.
pub fn route(app: &App, req: &Req) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let method = match req.method {
        Method::Head => Method::Get,
        m => m,
    };
    if let Some(handler) = lookup(method, &segments) {
        return handler(app, req);
    }
    let other_methods = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
    ];
    if other_methods
        .into_iter()
        .any(|m| m != method && lookup(m, &segments).is_some())
    {
        Err(ApiError::method_not_allowed())
    } else {
        Err(ApiError::not_found("Not Found"))
    }
}
