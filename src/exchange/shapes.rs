//! Documents as upstream's MongoDB stores them, and back: `_id` as an
//! ObjectId, timestamps as dates, everything else as the API shows it
//! (upstream's models: kernelci-core `Node`, `EventHistory`,
//! `TelemetryEvent`; kernelci-api `User` with its groups embedded as
//! `{_id, name}`, `UserGroup`). Pure functions: no file, no database.

use bson::oid::ObjectId;
use bson::{Bson, DateTime, Document};
use serde_json::{Map, Value, json};

use crate::model::event::{self, Event};
use crate::model::node::Node;
use crate::model::telemetry::TelemetryEvent;
use crate::model::user::{Group, User};
use crate::store::dump::EventRow;
use crate::timestamp::{self, Timestamp};

/// Node fields stored as dates.
const NODE_DATES: [&str; 4] = ["created", "updated", "timeout", "holdoff"];

// -- to upstream ----------------------------------------------------------

/// A JSON value as BSON, taken literally (no Extended JSON keys read).
fn plain(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(plain).collect()),
        Value::Object(map) => Bson::Document(plain_doc(map)),
    }
}

fn plain_doc(map: &Map<String, Value>) -> Document {
    map.iter().map(|(k, v)| (k.clone(), plain(v))).collect()
}

/// An id as an ObjectId (a legacy id that is not one stays a string).
fn oid(id: &str) -> Bson {
    ObjectId::parse_str(id).map_or_else(|_| Bson::String(id.to_string()), Bson::ObjectId)
}

fn date(ts: &Timestamp) -> Bson {
    Bson::DateTime(DateTime::from_millis(ts.and_utc().timestamp_millis()))
}

/// A date field of a stored document (null stays null).
fn date_text(v: &Value) -> Bson {
    match v.as_str().and_then(timestamp::parse_stored) {
        Some(ts) => date(&ts),
        None => plain(v),
    }
}

/// One line of a `mongoexport` file: relaxed Extended JSON v2.
pub fn line(doc: Document) -> String {
    Bson::Document(doc).into_relaxed_extjson().to_string()
}

/// A node (its stored document) as upstream's `node` collection holds it.
pub fn node_doc(node: &Value) -> Document {
    let mut doc = Document::new();
    let Some(fields) = node.as_object() else {
        return doc;
    };
    if let Some(id) = fields.get("id").and_then(Value::as_str) {
        doc.insert("_id", oid(id));
    }
    for (key, value) in fields {
        let bson = match key.as_str() {
            "id" => continue,
            "parent" => value.as_str().map_or(Bson::Null, oid),
            k if NODE_DATES.contains(&k) => date_text(value),
            _ => plain(value),
        };
        doc.insert(key.clone(), bson);
    }
    doc
}

/// A user as upstream's `user` collection holds it (fastapi-users'
/// fields, then the username and the groups embedded).
pub fn user_doc(user: &User) -> Document {
    let groups: Vec<Bson> = user
        .groups
        .iter()
        .map(|g| Bson::Document(group_doc(g)))
        .collect();
    let mut doc = Document::new();
    doc.insert("_id", oid(&user.id));
    doc.insert("email", user.email.clone());
    doc.insert("hashed_password", user.hashed_password.clone());
    doc.insert("is_active", user.is_active);
    doc.insert("is_superuser", user.is_superuser);
    doc.insert("is_verified", user.is_verified);
    doc.insert("username", user.username.clone());
    doc.insert("groups", groups);
    doc
}

/// A group as upstream's `usergroup` collection holds it.
pub fn group_doc(group: &Group) -> Document {
    let mut doc = Document::new();
    doc.insert("_id", oid(&group.id));
    doc.insert("name", group.name.clone());
    doc
}

/// A stored event as upstream's `eventhistory` collection holds it.
pub fn event_doc(event: &EventRow) -> Document {
    let data = serde_json::from_str::<Value>(&event.data).unwrap_or(Value::Null);
    let mut doc = Document::new();
    doc.insert("_id", oid(&event.id));
    doc.insert("timestamp", date(&event.timestamp));
    doc.insert("sequence_id", Bson::Int64(event.seq));
    doc.insert("channel", event.channel.clone());
    doc.insert(
        "owner",
        event.owner.clone().map_or(Bson::Null, Bson::String),
    );
    doc.insert("data", plain(&data));
    doc
}

/// A telemetry event as upstream's `telemetry` collection holds it.
pub fn telemetry_doc(event: &TelemetryEvent) -> Document {
    let mut doc = Document::new();
    doc.insert("_id", oid(&event.id));
    if let Value::Object(fields) = event.to_json() {
        for (key, value) in &fields {
            match key.as_str() {
                "id" => {}
                "ts" => {
                    doc.insert("ts", date(&event.ts));
                }
                _ => {
                    doc.insert(key.clone(), plain(value));
                }
            }
        }
    }
    doc
}

/// A KV entry as a line of `kv.json`.
pub fn kv_line(ns: &str, key: &str, value: &str) -> String {
    json!({"namespace": ns, "key": key, "value": value}).to_string()
}

// -- from upstream --------------------------------------------------------

/// A BSON value as the API's JSON: ObjectIds as their hex text, dates as
/// the API's timestamps; `field` names it in errors.
fn to_json(b: &Bson, field: &str) -> Result<Value, String> {
    Ok(match b {
        Bson::Null => Value::Null,
        Bson::Boolean(v) => Value::Bool(*v),
        Bson::Int32(n) => json!(n),
        Bson::Int64(n) => json!(n),
        Bson::Double(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{field}: {f} is not a finite number"))?,
        Bson::String(s) => Value::String(s.clone()),
        Bson::ObjectId(o) => Value::String(o.to_hex()),
        Bson::DateTime(d) => Value::String(timestamp::format(&from_date(*d, field)?)),
        Bson::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{field}.{i}")))
                .collect::<Result<_, _>>()?,
        ),
        Bson::Document(d) => Value::Object(to_map(d, &format!("{field}."))?),
        other => {
            return Err(format!(
                "{field}: a BSON {:?} has no JSON form here",
                other.element_type()
            ));
        }
    })
}

fn to_map(doc: &Document, prefix: &str) -> Result<Map<String, Value>, String> {
    doc.iter()
        .map(|(k, v)| Ok((k.clone(), to_json(v, &format!("{prefix}{k}"))?)))
        .collect()
}

fn from_date(d: DateTime, field: &str) -> Result<Timestamp, String> {
    let ts = chrono::DateTime::from_timestamp_millis(d.timestamp_millis())
        .map(|t| t.naive_utc())
        .ok_or_else(|| format!("{field}: date out of range"))?;
    // the API's timestamps have years 1 to 9999
    timestamp::parse(&timestamp::format(&ts))
        .filter(|_| (1..=9999).contains(&chrono::Datelike::year(&ts)))
        .ok_or_else(|| format!("{field}: date out of range"))
}

fn id_of(doc: &Document) -> Result<String, String> {
    match doc.get("_id") {
        Some(Bson::ObjectId(o)) => Ok(o.to_hex()),
        Some(_) => Err("_id: not an ObjectId".into()),
        None => Err("_id: missing".into()),
    }
}

fn text(doc: &Document, field: &str) -> Result<String, String> {
    match doc.get(field) {
        Some(Bson::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{field}: not a string")),
        None => Err(format!("{field}: missing")),
    }
}

fn opt_text(doc: &Document, field: &str) -> Result<Option<String>, String> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{field}: not a string")),
    }
}

fn flag(doc: &Document, field: &str, default: bool) -> Result<bool, String> {
    match doc.get(field) {
        None => Ok(default),
        Some(Bson::Boolean(b)) => Ok(*b),
        Some(_) => Err(format!("{field}: not a boolean")),
    }
}

fn date_field(doc: &Document, field: &str) -> Result<Timestamp, String> {
    match doc.get(field) {
        Some(Bson::DateTime(d)) => from_date(*d, field),
        Some(_) => Err(format!("{field}: not a date")),
        None => Err(format!("{field}: missing")),
    }
}

/// A node from a `node` document; every field the API has, in its order.
pub fn node_from(doc: &Document) -> Result<Node, String> {
    let id = id_of(doc)?;
    for required in ["kind", "name", "path", "created", "updated", "timeout"] {
        if !doc.contains_key(required) {
            return Err(format!("{required}: missing"));
        }
    }
    for field in NODE_DATES {
        match doc.get(field) {
            None | Some(Bson::DateTime(_)) => {}
            Some(Bson::Null) if field == "holdoff" => {}
            Some(_) => return Err(format!("{field}: not a date")),
        }
    }
    let mut node = json!({
        "id": id, "kind": null, "name": null, "path": null, "group": null, "parent": null,
        "state": "running", "result": null, "artifacts": {}, "data": {}, "debug": {},
        "jobfilter": null, "platform_filter": [], "created": null, "updated": null,
        "timeout": null, "holdoff": null, "owner": null, "submitter": null, "treeid": null,
        "user_groups": [], "processed_by_kcidb_bridge": false, "retry_counter": 0,
    });
    let fields = node.as_object_mut().expect("a JSON object");
    for (key, value) in doc {
        if let Some(slot) = fields.get_mut(key.as_str())
            && key != "id"
        {
            *slot = to_json(value, key)?;
        }
    }
    serde_json::from_value(node).map_err(|e| format!("not a node: {e}"))
}

/// A user from a `user` document: the password hash kept as it is
/// (bcrypt, or argon2 as newer upstream installations write).
pub fn user_from(doc: &Document) -> Result<User, String> {
    let hashed_password = text(doc, "hashed_password")?;
    if !(hashed_password.starts_with("$2") || hashed_password.starts_with("$argon2")) {
        return Err("hashed_password: neither a bcrypt nor an argon2 hash".into());
    }
    let groups = match doc.get("groups") {
        None | Some(Bson::Null) => Vec::new(),
        Some(Bson::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, g)| match g {
                Bson::Document(g) => group_from(g).map_err(|e| format!("groups.{i}.{e}")),
                _ => Err(format!("groups.{i}: not a document")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("groups: not a list".into()),
    };
    Ok(User {
        id: id_of(doc)?,
        email: text(doc, "email")?,
        is_active: flag(doc, "is_active", true)?,
        is_superuser: flag(doc, "is_superuser", false)?,
        is_verified: flag(doc, "is_verified", false)?,
        username: text(doc, "username")?,
        groups,
        hashed_password,
    })
}

/// A group from a `usergroup` document (or one embedded in a user).
pub fn group_from(doc: &Document) -> Result<Group, String> {
    Ok(Group {
        id: id_of(doc)?,
        name: text(doc, "name")?,
    })
}

/// An event from an `eventhistory` document, with its sequence number if
/// it has one; `source` goes into the CloudEvent envelope.
pub fn event_from(doc: &Document, source: &str) -> Result<(Event, Option<i64>), String> {
    let seq = match doc.get("sequence_id") {
        None | Some(Bson::Null) => None,
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        Some(Bson::Int64(n)) => Some(*n),
        Some(_) => return Err("sequence_id: not an integer".into()),
    };
    if seq.is_some_and(|n| n < 1) {
        return Err("sequence_id: not a positive integer".into());
    }
    let at = date_field(doc, "timestamp")?;
    let channel = opt_text(doc, "channel")?.unwrap_or_else(|| "node".to_string());
    let owner = opt_text(doc, "owner")?;
    let data = match doc.get("data") {
        None => json!({}),
        Some(v) => to_json(v, "data")?,
    };
    let mut attributes = Map::new();
    if let Some(owner) = &owner {
        attributes.insert("owner".into(), json!(owner));
    }
    let mut envelope = event::envelope(source, event::DEFAULT_TYPE, data.clone(), attributes);
    envelope["time"] = json!(timestamp::cloud_event_time(&at.and_utc()));
    let event = Event {
        id: id_of(doc)?,
        timestamp: at,
        channel,
        owner,
        data,
        envelope,
    };
    Ok((event, seq))
}

/// A telemetry event from a `telemetry` document (checked as `POST
/// /telemetry` checks one).
pub fn telemetry_from(doc: &Document, now: Timestamp) -> Result<TelemetryEvent, String> {
    let id = id_of(doc)?;
    date_field(doc, "ts")?;
    let fields = to_map(doc, "")?;
    let mut event = TelemetryEvent::parse(&fields, now)?;
    event.id = id;
    Ok(event)
}

/// A KV entry from a line of `kv.json`: (namespace, key, value).
pub fn kv_from(doc: &Document) -> Result<(String, String, String), String> {
    Ok((
        text(doc, "namespace")?,
        text(doc, "key")?,
        text(doc, "value")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Document {
        match Bson::try_from(serde_json::from_str::<Value>(line).expect("json")).expect("extjson") {
            Bson::Document(d) => d,
            other => panic!("not a document: {other:?}"),
        }
    }

    #[test]
    fn a_node_goes_out_and_comes_back_the_same() {
        let body = json!({"kind": "kbuild", "name": "k", "path": ["c", "k"],
                          "parent": "65a1b2c3d4e5f6a7b8c9d0e1",
                          "data": {"arch": "x86_64", "$weird": 1, "n": 1.5, "big": 9_000_000_000_i64}});
        let node = Node::create(&body, "bob", timestamp::now()).expect("node");
        let out = line(node_doc(&node.to_json()));
        let raw: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(raw["_id"], json!({"$oid": node.id}));
        assert!(raw.get("id").is_none());
        assert_eq!(raw["parent"], json!({"$oid": "65a1b2c3d4e5f6a7b8c9d0e1"}));
        assert!(raw["created"]["$date"].is_string(), "{raw}");
        let back = node_from(&parse(&out)).expect("node again");
        assert_eq!(back.to_json(), node.to_json());
    }

    #[test]
    fn canonical_extended_json_reads_too() {
        let line = r#"{"_id": {"$oid": "65a1b2c3d4e5f6a7b8c9d0e1"}, "kind": "checkout",
            "name": "c", "path": ["c"], "retry_counter": {"$numberInt": "2"},
            "created": {"$date": {"$numberLong": "1704067200000"}},
            "updated": {"$date": {"$numberLong": "1704067200000"}},
            "timeout": {"$date": {"$numberLong": "1704070800000"}}}"#;
        let node = node_from(&parse(line)).expect("node");
        assert_eq!(node.id, "65a1b2c3d4e5f6a7b8c9d0e1");
        assert_eq!(node.retry_counter, 2);
        assert_eq!(
            timestamp::format(&node.created),
            "2024-01-01T00:00:00.000000"
        );
    }

    #[test]
    fn bad_documents_name_the_field() {
        let cases = [
            (r#"{"_id": "abc", "kind": "checkout"}"#, "_id"),
            (
                r#"{"_id": {"$oid": "65a1b2c3d4e5f6a7b8c9d0e1"}, "kind": "checkout", "name": "c", "path": ["c"],
                "created": "2024-01-01", "updated": "x", "timeout": "y"}"#,
                "created: not a date",
            ),
            (
                r#"{"_id": {"$oid": "65a1b2c3d4e5f6a7b8c9d0e1"}, "name": "c"}"#,
                "kind: missing",
            ),
        ];
        for (line, want) in cases {
            let err = node_from(&parse(line)).expect_err(line);
            assert!(err.contains(want), "{line}: {err}");
        }
        let user = r#"{"_id": {"$oid": "65a1b2c3d4e5f6a7b8c9d0e1"}, "email": "a@b.c",
                      "username": "a", "hashed_password": "plain"}"#;
        assert!(
            user_from(&parse(user))
                .expect_err("hash")
                .contains("hashed_password")
        );
    }

    #[test]
    fn a_user_keeps_its_hash_and_groups() {
        let user = User {
            id: "65a1b2c3d4e5f6a7b8c9d0e1".into(),
            email: "a@example.org".into(),
            is_active: true,
            is_superuser: false,
            is_verified: true,
            username: "a".into(),
            groups: vec![Group {
                id: "65a1b2c3d4e5f6a7b8c9d0e2".into(),
                name: "lab".into(),
            }],
            hashed_password: "$2b$04$abcdefghijklmnopqrstuv".into(),
        };
        let out = line(user_doc(&user));
        let raw: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(
            raw["groups"],
            json!([{"_id": {"$oid": "65a1b2c3d4e5f6a7b8c9d0e2"}, "name": "lab"}])
        );
        let back = user_from(&parse(&out)).expect("user");
        assert_eq!(back.to_json(), user.to_json());
        assert_eq!(back.hashed_password, user.hashed_password);
    }
}
