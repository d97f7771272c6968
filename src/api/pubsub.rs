//! `/subscribe`, `/listen`, `/unsubscribe`, `/publish`, `/push`, `/pop`,
//! `/stats/subscriptions`. Blocking calls are parked with the broker and
//! never hold a worker thread.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::app::App;
use crate::auth;
use crate::http::{ApiError, ApiResult, Reply, Req, Resp};
use crate::model::event::{self, Event};
use crate::model::validate::{Fields, ValidationItem, parse_bool_word};
use crate::pubsub::Delivery;
use crate::store::{events, queues};
use crate::timestamp;

fn sub_id(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| {
        ApiError::validation(vec![ValidationItem::new(
            vec![json!("path"), json!("sub_id")],
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        )])
    })
}

/// `POST /subscribe/{channel}?promisc=&subscriber_id=` (user).
pub fn subscribe(app: &App, req: &Req, channel: &str) -> ApiResult {
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let promiscuous = match req.query_param("promisc") {
        None => false,
        Some(v) => parse_bool_word(v).ok_or_else(|| {
            ApiError::query_invalid("promisc", "Input should be a valid boolean", "bool_parsing")
        })?,
    };
    let subscriber_id = req
        .query_param("subscriber_id")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let sub = app
        .broker
        .subscribe(channel, &user.username, promiscuous, subscriber_id)?;
    Ok(Resp::json(
        &json!({"id": sub.id, "channel": sub.channel, "user": sub.user,
                          "promiscuous": sub.promiscuous}),
    ))
}

/// The response a listen or pop gets for `delivery`.
fn render(delivery: Delivery) -> Resp {
    match delivery {
        Delivery::Message { channel, envelope } => Resp::json(
            &json!({"type": "message", "pattern": null, "channel": channel, "data": envelope}),
        ),
        // The envelope is stored JSON text: sent as it is.
        Delivery::Popped(envelope) => Resp::json_text(envelope),
        Delivery::Failed(err) => ApiError::from(err).to_resp(),
    }
}

/// `GET /listen/{sub_id}` (user): the next message, waiting as long as
/// needed (a BEEP at least every KEEP_ALIVE_PERIOD).
pub fn listen(app: &App, req: &Req, id: &str) -> Result<Reply, ApiError> {
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let id = sub_id(id)?;
    match app.broker.listen(id, &user.username)? {
        Some(delivery) => Ok(Reply::Now(render(delivery))),
        None => {
            let broker = Arc::clone(&app.broker);
            Ok(Reply::Later(Box::new(move |respond| {
                broker.park_listen(id, Box::new(move |delivery| respond(render(delivery))));
            })))
        }
    }
}

/// `POST|GET /unsubscribe/{sub_id}` (user).
pub fn unsubscribe(app: &App, req: &Req, id: &str) -> ApiResult {
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let id = sub_id(id)?;
    app.broker.unsubscribe(id, &user.username)?;
    Ok(Resp::json(&Value::Null))
}

/// CloudEvent attributes a client may set whose value must be a string:
/// an envelope with another `specversion`, `id` or `time` is no CloudEvent,
/// and its readers could not parse it.
const STRING_ATTRIBUTES: [&str; 3] = ["specversion", "id", "time"];

/// Records a 422 for each of [`STRING_ATTRIBUTES`] in `attributes` that is
/// not a string; `key` is the body member holding them (`None`: the body).
fn check_string_attributes(f: &mut Fields, key: Option<&str>, attributes: &Map<String, Value>) {
    for name in STRING_ATTRIBUTES {
        if attributes.get(name).is_some_and(|v| !v.is_string()) {
            match key {
                Some(key) => f.fail(
                    key,
                    &format!("Attribute '{name}' should be a valid string"),
                    "string_type",
                ),
                None => f.fail(name, "Input should be a valid string", "string_type"),
            }
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `POST /publish/{channel}` (user): stores the event, then wakes listeners.
pub fn publish(app: &App, req: &Req, channel: &str) -> ApiResult {
    let body = req.body()?;
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let body = body.require()?;
    let mut f = Fields::new(&body);
    let data = f.raw("data").cloned();
    match &data {
        None => f.fail("data", "Field required", "missing"),
        Some(d) if !truthy(d) => {
            f.fail("data", "Value error, data must not be empty", "value_error")
        }
        Some(_) => {}
    }
    let kind = f.optional_str("type");
    let source = f.optional_str("source");
    let attributes = match f.raw("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            check_string_attributes(&mut f, Some("attributes"), m);
            m.clone()
        }
        Some(_) => {
            f.fail(
                "attributes",
                "Input should be a valid dictionary",
                "dict_type",
            );
            Map::new()
        }
    };
    f.finish()?;
    let data = data.unwrap_or(Value::Null);
    let mut owner_attr = Map::new();
    owner_attr.insert("owner".into(), json!(user.username));
    let mut envelope = event::envelope(
        source.as_deref().unwrap_or(&app.config.cloud_events_source),
        kind.as_deref().unwrap_or(event::DEFAULT_TYPE),
        data.clone(),
        owner_attr,
    );
    if let Value::Object(env) = &mut envelope {
        for (key, value) in attributes {
            let own = matches!(key.as_str(), "specversion" | "id" | "time");
            if own || !env.contains_key(&key) {
                env.insert(key, value);
            }
        }
    }
    let stored = Event {
        id: crate::ids::new_id(),
        timestamp: timestamp::now(),
        channel: channel.to_string(),
        owner: Some(user.username.clone()),
        data,
        envelope,
    };
    app.store
        .write(move |c, out| events::append(c, out, &stored))?;
    Ok(Resp::json(&Value::Null))
}

/// `POST /push/{list}` (user): `data` is the payload, other members become
/// envelope attributes.
pub fn push(app: &App, req: &Req, list: &str) -> ApiResult {
    let body = req.body()?;
    auth::user(&app.keys, &app.users, req.bearer())?;
    let body = body.require()?;
    let mut f = Fields::new(&body);
    if !f.has("data") {
        f.fail("data", "Field required", "missing");
    }
    let kind = f.optional_str("type");
    let source = f.optional_str("source");
    if let Value::Object(members) = &body {
        check_string_attributes(&mut f, None, members);
    }
    f.finish()?;
    let mut attributes = Map::new();
    if let Value::Object(members) = &body {
        for (key, value) in members {
            if !matches!(key.as_str(), "data" | "type" | "source") {
                attributes.insert(key.clone(), value.clone());
            }
        }
    }
    let envelope = event::envelope(
        source.as_deref().unwrap_or(&app.config.cloud_events_source),
        kind.as_deref().unwrap_or(event::DEFAULT_TYPE),
        body.get("data").cloned().unwrap_or(Value::Null),
        attributes,
    );
    let list = list.to_string();
    app.store
        .write(move |c, out| queues::push(c, out, &list, &envelope))?;
    Ok(Resp::json(&Value::Null))
}

/// `GET /pop/{list}` (user): the oldest message, waiting until there is one.
pub fn pop(app: &App, req: &Req, list: &str) -> Result<Reply, ApiError> {
    auth::user(&app.keys, &app.users, req.bearer())?;
    match app.broker.pop(list)? {
        Some(envelope) => Ok(Reply::Now(render(Delivery::Popped(envelope)))),
        None => {
            let broker = Arc::clone(&app.broker);
            let list = list.to_string();
            Ok(Reply::Later(Box::new(move |respond| {
                broker.park_pop(list, Box::new(move |delivery| respond(render(delivery))));
            })))
        }
    }
}

/// `GET /stats/subscriptions` (admin).
pub fn stats(app: &App, req: &Req) -> ApiResult {
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let subs = app.broker.subscriptions();
    let items: Vec<Value> = subs
        .iter()
        .map(|s| {
            json!({"id": s.id, "channel": s.channel, "user": s.user,
                   "promiscuous": s.promiscuous,
                   "created": timestamp::format(&s.created),
                   "last_poll": s.last_poll.as_ref().map(timestamp::format)})
        })
        .collect();
    Ok(Resp::json(&Value::Array(items)))
}
