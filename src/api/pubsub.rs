//! `/subscribe`, `/listen`, `/ack`, `/unsubscribe`, `/publish`, `/push`,
//! `/pop`, `/pop/{list}/ack`, `/stats/subscriptions`. Blocking calls are
//! parked with the broker and never hold a worker thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::app::App;
use crate::auth;
use crate::http::{ApiError, ApiResult, Reply, Req, Resp};
use crate::model::event::{self, Event};
use crate::model::validate::{Fields, ValidationItem, parse_bool_word};
use crate::pubsub::{Delivery, MAX_BATCH, SubFilter, SubscribeOptions, Subscription};
use crate::query::{EVENT_DATA_SCHEMA, Filter};
use crate::store::{events, queues};
use crate::timestamp;

/// Query parameters of `/subscribe` that are not conditions on the data.
const SUBSCRIBE_PARAMS: [&str; 3] = ["promisc", "subscriber_id", "ack"];
/// The lease of `/pop?ack=explicit` when none is given, in seconds.
const DEFAULT_LEASE_SECS: f64 = 60.0;
/// The shortest and longest lease a pop may ask for, in seconds.
const LEASE_RANGE_SECS: (f64, f64) = (1.0, 3600.0);

fn sub_id(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| {
        ApiError::validation(vec![ValidationItem::new(
            vec![json!("path"), json!("sub_id")],
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        )])
    })
}

/// The `ack` parameter: `implicit` (the default) or `explicit`.
fn explicit_ack(req: &Req) -> Result<bool, ApiError> {
    match req.query_param("ack") {
        None | Some("implicit") => Ok(false),
        Some("explicit") => Ok(true),
        Some(_) => Err(ApiError::query_invalid(
            "ack",
            "Input should be 'implicit' or 'explicit'",
            "literal_error",
        )),
    }
}

/// The conditions of a query as the client gave them: each key once, in
/// the order keys first appear, with the value of its last occurrence
/// (the occurrence that is the condition, section 7).
fn given_conditions(params: &[(String, String)], reserved: &[&str]) -> Vec<(String, String)> {
    let mut given: Vec<(String, String)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (key, value) in params {
        if reserved.contains(&key.as_str()) {
            continue;
        }
        match at.get(key.as_str()) {
            Some(&i) => given[i].1.clone_from(value),
            None => {
                at.insert(key, given.len());
                given.push((key.clone(), value.clone()));
            }
        }
    }
    given
}

/// A subscription as `/subscribe` and `/stats/subscriptions` show it:
/// `filter` only when it has conditions.
fn with_filter(mut item: Value, sub: &Subscription) -> Value {
    if let (Some(filter), Value::Object(map)) = (&sub.filter, &mut item) {
        let given: Map<String, Value> = filter
            .given
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        map.insert("filter".into(), Value::Object(given));
    }
    item
}

/// `POST /subscribe/{channel}?promisc=&subscriber_id=&ack=&<conditions>`
/// (user). Every other parameter is a condition on the event data.
pub fn subscribe(app: &App, req: &Req, channel: &str) -> ApiResult {
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let promiscuous = match req.query_param("promisc") {
        None => false,
        Some(v) => parse_bool_word(v).ok_or_else(|| {
            ApiError::query_invalid("promisc", "Input should be a valid boolean", "bool_parsing")
        })?,
    };
    let explicit = explicit_ack(req)?;
    let subscriber_id = req
        .query_param("subscriber_id")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if explicit && subscriber_id.is_none() {
        return Err(ApiError::query_invalid(
            "subscriber_id",
            "Field required with ack=explicit",
            "missing",
        ));
    }
    let conditions = Filter::parse(&req.query, &SUBSCRIBE_PARAMS, &EVENT_DATA_SCHEMA)?;
    let filter = (!conditions.conditions.is_empty()).then(|| {
        let given = given_conditions(&req.query, &SUBSCRIBE_PARAMS);
        Arc::new(SubFilter::new(given, &conditions))
    });
    let options = SubscribeOptions {
        promiscuous,
        subscriber_id,
        filter,
        explicit,
    };
    let sub = app
        .broker
        .subscribe_with(channel, &user.username, options)?;
    let item = json!({"id": sub.id, "channel": sub.channel, "user": sub.user,
                      "promiscuous": sub.promiscuous});
    Ok(Resp::json(&with_filter(item, &sub)))
}

/// One `/listen` message object.
fn message(channel: &str, envelope: String) -> Value {
    json!({"type": "message", "pattern": null, "channel": channel, "data": envelope})
}

/// The response a listen or pop gets for `delivery`.
fn render(delivery: Delivery) -> Resp {
    match delivery {
        Delivery::Message { channel, envelope } => Resp::json(&message(&channel, envelope)),
        Delivery::Batch { channel, envelopes } => Resp::json(&Value::Array(
            envelopes
                .into_iter()
                .map(|envelope| message(&channel, envelope))
                .collect(),
        )),
        // The envelope is stored JSON text: sent as it is.
        Delivery::Popped(envelope) => Resp::json_text(envelope),
        Delivery::Failed(err) => ApiError::from(err).to_resp(),
    }
}

/// The `max` parameter of a batch listen: 1 to [`MAX_BATCH`].
fn batch_size(req: &Req) -> Result<Option<usize>, ApiError> {
    let Some(text) = req.query_param("max") else {
        return Ok(None);
    };
    let n = text.parse::<i64>().map_err(|_| {
        ApiError::query_invalid(
            "max",
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        )
    })?;
    if n < 1 {
        return Err(ApiError::query_invalid(
            "max",
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        ));
    }
    match usize::try_from(n) {
        Ok(n) if n <= MAX_BATCH => Ok(Some(n)),
        _ => Err(ApiError::query_invalid(
            "max",
            &format!("Input should be less than or equal to {MAX_BATCH}"),
            "less_than_equal",
        )),
    }
}

/// `GET /listen/{sub_id}?max=` (user): the next message, waiting as long
/// as needed (a BEEP at least every KEEP_ALIVE_PERIOD); with `max`, a list
/// of everything available up to `max` messages.
pub fn listen(app: &App, req: &Req, id: &str) -> Result<Reply, ApiError> {
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let id = sub_id(id)?;
    let max = batch_size(req)?;
    match app.broker.listen(id, &user.username, max)? {
        Some(delivery) => Ok(Reply::Now(render(delivery))),
        None => {
            let broker = Arc::clone(&app.broker);
            Ok(Reply::Later(Box::new(move |respond| {
                broker.park_listen(id, max, Box::new(move |delivery| respond(render(delivery))));
            })))
        }
    }
}

/// `POST /ack/{sub_id}` (user), body `{"sequence_id": n}`: an explicit
/// durable subscriber acknowledges every event up to `n`.
pub fn ack(app: &App, req: &Req, id: &str) -> ApiResult {
    let body = req.body()?;
    let user = auth::user(&app.keys, &app.users, req.bearer())?;
    let id = sub_id(id)?;
    let body = body.require()?;
    let mut f = Fields::new(&body);
    if body.is_object() && !f.has("sequence_id") {
        f.fail("sequence_id", "Field required", "missing");
    }
    let seq = f.optional_strict_int("sequence_id");
    f.finish()?;
    let seq = seq.ok_or_else(|| ApiError::internal("sequence_id checked above"))?;
    app.broker.acknowledge(id, &user.username, seq)?;
    Ok(Resp::json(&Value::Null))
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

/// The lease a pop asks for: `None` for a plain pop (`ack` absent or
/// `implicit`, no `lease`); with `ack=explicit`, `lease` seconds (a
/// number in [`LEASE_RANGE_SECS`], [`DEFAULT_LEASE_SECS`] when absent).
fn pop_lease(req: &Req) -> Result<Option<Duration>, ApiError> {
    let explicit = explicit_ack(req)?;
    let Some(text) = req.query_param("lease") else {
        return Ok(explicit.then(|| Duration::from_secs_f64(DEFAULT_LEASE_SECS)));
    };
    let secs = text
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite())
        .ok_or_else(|| {
            ApiError::query_invalid(
                "lease",
                "Input should be a valid number, unable to parse string as a number",
                "float_parsing",
            )
        })?;
    let (low, high) = LEASE_RANGE_SECS;
    if secs < low {
        return Err(ApiError::query_invalid(
            "lease",
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        ));
    }
    if secs > high {
        return Err(ApiError::query_invalid(
            "lease",
            "Input should be less than or equal to 3600",
            "less_than_equal",
        ));
    }
    if !explicit {
        return Err(ApiError::query_invalid(
            "lease",
            "A lease needs ack=explicit",
            "value_error",
        ));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// `GET /pop/{list}?ack=&lease=` (user): the oldest message, waiting until
/// there is one; with `ack=explicit`, leased rather than deleted.
pub fn pop(app: &App, req: &Req, list: &str) -> Result<Reply, ApiError> {
    auth::user(&app.keys, &app.users, req.bearer())?;
    let lease = pop_lease(req)?;
    match app.broker.pop(list, lease)? {
        Some(envelope) => Ok(Reply::Now(render(Delivery::Popped(envelope)))),
        None => {
            let broker = Arc::clone(&app.broker);
            let list = list.to_string();
            Ok(Reply::Later(Box::new(move |respond| {
                broker.park_pop(
                    list,
                    lease,
                    Box::new(move |delivery| respond(render(delivery))),
                );
            })))
        }
    }
}

/// `POST /pop/{list}/ack` (user), body `{"receipt": r}`: deletes the
/// message leased with receipt `r`.
pub fn pop_ack(app: &App, req: &Req, list: &str) -> ApiResult {
    let body = req.body()?;
    auth::user(&app.keys, &app.users, req.bearer())?;
    let body = body.require()?;
    let mut f = Fields::new(&body);
    let receipt = f.required_str("receipt");
    f.finish()?;
    let receipt = receipt.ok_or_else(|| ApiError::internal("receipt checked above"))?;
    if app.broker.acknowledge_receipt(list, &receipt)? {
        Ok(Resp::json(&Value::Null))
    } else {
        Err(ApiError::not_found("Receipt not found"))
    }
}

/// `GET /stats/subscriptions` (admin).
pub fn stats(app: &App, req: &Req) -> ApiResult {
    auth::admin(&app.keys, &app.users, req.bearer())?;
    let subs = app.broker.subscriptions();
    let items: Vec<Value> = subs
        .iter()
        .map(|s| {
            let item = json!({"id": s.id, "channel": s.channel, "user": s.user,
                              "promiscuous": s.promiscuous,
                              "created": timestamp::format(&s.created),
                              "last_poll": s.last_poll.as_ref().map(timestamp::format)});
            with_filter(item, s)
        })
        .collect();
    Ok(Resp::json(&Value::Array(items)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::testing::params;

    #[test]
    fn given_conditions_keep_first_order_and_last_value() {
        let query = params(&[
            ("kind", "test"),
            ("promisc", "true"),
            ("result", "fail"),
            ("ack", "implicit"),
            ("kind", "kbuild"),
            ("subscriber_id", "s"),
        ]);
        assert_eq!(
            given_conditions(&query, &SUBSCRIBE_PARAMS),
            params(&[("kind", "kbuild"), ("result", "fail")])
        );
        assert!(given_conditions(&params(&[("promisc", "1")]), &SUBSCRIBE_PARAMS).is_empty());
    }
}
