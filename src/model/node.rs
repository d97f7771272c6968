//! Nodes: the 23-field model in the contract's key order, its defaults and
//! the validation of a create body. Kind-specific `data` rules and updates
//! belong to the nodes issue; this is the first slice.

use chrono::Duration;
use serde_json::{Map, Value, json};

use super::user::{NODE_EDIT_ANY, User};
use super::validate::{Fields, ValidationItem};
use crate::ids;
use crate::timestamp::{self, Timestamp};

/// Kinds the API accepts.
pub const KINDS: &[&str] = &[
    "checkout",
    "kbuild",
    "test",
    "job",
    "process",
    "regression",
    "node",
];
/// Node states.
pub const STATES: &[&str] = &["running", "available", "closing", "done"];
/// Node results.
pub const RESULTS: &[&str] = &["pass", "fail", "skip", "incomplete"];
/// Default lifetime of a node before it times out.
pub const DEFAULT_TIMEOUT_HOURS: i64 = 6;
/// A closing node without any child goes done after this long (children
/// attached right after the state change keep it closing).
pub const CLOSING_GRACE_MS: i64 = 500;

/// A node with every field of the contract.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub path: Vec<String>,
    pub group: Option<String>,
    pub parent: Option<String>,
    pub state: String,
    pub result: Option<String>,
    pub artifacts: Value,
    pub data: Value,
    pub debug: Value,
    pub jobfilter: Value,
    pub platform_filter: Value,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub timeout: Timestamp,
    pub holdoff: Option<Timestamp>,
    pub owner: Option<String>,
    pub submitter: Option<String>,
    pub treeid: Option<String>,
    pub user_groups: Vec<String>,
    pub processed_by_kcidb_bridge: bool,
    pub retry_counter: i64,
}

/// Why a create body was refused.
#[derive(Debug)]
pub enum NodeError {
    /// Schema problems (422).
    Invalid(Vec<ValidationItem>),
    /// A semantic problem (400) with its detail.
    Rejected(String),
}

impl From<Vec<ValidationItem>> for NodeError {
    fn from(items: Vec<ValidationItem>) -> NodeError {
        NodeError::Invalid(items)
    }
}

impl Node {
    /// The node as every endpoint returns it, keys in the contract's order.
    pub fn to_json(&self) -> Value {
        let ts = |t: &Timestamp| Value::String(timestamp::format(t));
        json!({
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "group": self.group,
            "parent": self.parent,
            "state": self.state,
            "result": self.result,
            "artifacts": self.artifacts,
            "data": self.data,
            "debug": self.debug,
            "jobfilter": self.jobfilter,
            "platform_filter": self.platform_filter,
            "created": ts(&self.created),
            "updated": ts(&self.updated),
            "timeout": ts(&self.timeout),
            "holdoff": self.holdoff.as_ref().map(ts),
            "owner": self.owner,
            "submitter": self.submitter,
            "treeid": self.treeid,
            "user_groups": self.user_groups,
            "processed_by_kcidb_bridge": self.processed_by_kcidb_bridge,
            "retry_counter": self.retry_counter,
        })
    }

    /// Rebuilds a node from its stored document.
    pub fn from_json(doc: &Value) -> Option<Node> {
        let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
        let ts = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .and_then(timestamp::parse)
        };
        Some(Node {
            id: s("id")?,
            kind: s("kind")?,
            name: s("name")?,
            path: serde_json::from_value(doc.get("path")?.clone()).ok()?,
            group: s("group"),
            parent: s("parent"),
            state: s("state")?,
            result: s("result"),
            artifacts: doc.get("artifacts")?.clone(),
            data: doc.get("data")?.clone(),
            debug: doc.get("debug")?.clone(),
            jobfilter: doc.get("jobfilter")?.clone(),
            platform_filter: doc.get("platform_filter")?.clone(),
            created: ts("created")?,
            updated: ts("updated")?,
            timeout: ts("timeout")?,
            holdoff: ts("holdoff"),
            owner: s("owner"),
            submitter: s("submitter"),
            treeid: s("treeid"),
            user_groups: serde_json::from_value(doc.get("user_groups")?.clone()).ok()?,
            processed_by_kcidb_bridge: doc.get("processed_by_kcidb_bridge")?.as_bool()?,
            retry_counter: doc.get("retry_counter")?.as_i64()?,
        })
    }

    /// Builds a new node from a POST body: schema (422), then `id` present,
    /// kind and kind data (400). `owner` is always `owner`, whatever the body
    /// says.
    pub fn create(body: &Value, owner: &str, now: Timestamp) -> Result<Node, NodeError> {
        let mut node = Node::parse(body, now)?;
        if body.get("id").is_some_and(|v| !v.is_null()) {
            return Err(NodeError::Rejected(
                "id must not be given when creating a node".into(),
            ));
        }
        node.check_kind()?;
        node.id = ids::new_id();
        node.owner = Some(owner.to_string());
        Ok(node)
    }

    /// The node after a PUT: body fields replace stored ones, omitted
    /// fields are kept; id, owner, submitter and user_groups never change.
    /// `check_transition` is false for the root of a hierarchy update.
    pub fn put(
        &self,
        body: &Value,
        now: Timestamp,
        check_transition: bool,
    ) -> Result<Node, NodeError> {
        let given = body_object(body)?;
        let mut merged = self.to_json();
        for (key, value) in given {
            if !matches!(key.as_str(), "id" | "owner" | "submitter" | "user_groups") {
                merged[key.as_str()] = value.clone();
            }
        }
        let mut node = self.updated_from(&merged, now)?;
        if node.parent.as_deref() == Some(self.id.as_str()) {
            return Err(NodeError::Rejected(
                "Parent cannot be the same as the object".into(),
            ));
        }
        if check_transition {
            self.check_transition(&node.state)?;
        }
        let sets_true =
            given.contains_key("processed_by_kcidb_bridge") && node.processed_by_kcidb_bridge;
        node.processed_by_kcidb_bridge =
            !self.processed_by_kcidb_bridge && sets_true && node.state == self.state;
        Ok(node)
    }

    /// The node after a PATCH: only [`PATCHABLE`] keys count, each replaces
    /// the stored value wholesale.
    pub fn patch(&self, body: &Value, now: Timestamp) -> Result<Node, NodeError> {
        let given = body_object(body)?;
        let keys: Vec<&String> = given
            .keys()
            .filter(|k| PATCHABLE.contains(&k.as_str()))
            .collect();
        if keys.is_empty() {
            return Err(NodeError::Rejected("No fields to update".into()));
        }
        let mut merged = self.to_json();
        for key in &keys {
            merged[key.as_str()] = given[key.as_str()].clone();
        }
        let mut node = self.updated_from(&merged, now)?;
        self.check_transition(&node.state)?;
        let flag =
            given.contains_key("processed_by_kcidb_bridge") && node.processed_by_kcidb_bridge;
        node.processed_by_kcidb_bridge = node.state == self.state && flag;
        Ok(node)
    }

    /// Parses a merged document as an update of `self`.
    fn updated_from(&self, merged: &Value, now: Timestamp) -> Result<Node, NodeError> {
        let mut node = Node::parse(merged, now)?;
        node.check_kind()?;
        node.id = self.id.clone();
        node.owner = self.owner.clone();
        node.submitter = self.submitter.clone();
        node.user_groups = self.user_groups.clone();
        node.updated = now;
        Ok(node)
    }

    fn check_transition(&self, next: &str) -> Result<(), NodeError> {
        if can_become(&self.state, next) {
            Ok(())
        } else {
            Err(NodeError::Rejected(format!(
                "Transition not allowed with state: {next}"
            )))
        }
    }

    /// Kind (400 `Unsupported node kind: …`) and kind-specific `data`.
    fn check_kind(&mut self) -> Result<(), NodeError> {
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(NodeError::Rejected(format!(
                "Unsupported node kind: {}",
                self.kind
            )));
        }
        super::node_data::validate(&self.kind, &mut self.data).map_err(NodeError::Rejected)
    }

    /// The timer's rule for a pending node past its `timeout`: done, and
    /// when no result was set, `incomplete` with the timeout error in data.
    pub fn on_timeout(&self, now: Timestamp) -> Node {
        let mut node = self.automatic(now, "done");
        if node.result.is_none() {
            node.result = Some("incomplete".into());
            if !node.data.is_object() {
                node.data = json!({});
            }
            node.data["error_code"] = json!("node_timeout");
            node.data["error_msg"] = json!("Node timed-out");
        }
        node
    }

    /// The timer's rule for an available node past its `holdoff`: closing
    /// while a descendant is pending, else done.
    pub fn on_holdoff(&self, pending_descendants: bool, now: Timestamp) -> Node {
        self.automatic(
            now,
            if pending_descendants {
                "closing"
            } else {
                "done"
            },
        )
    }

    /// The timer's rule for a closing node whose descendants are all done.
    pub fn on_descendants_done(&self, now: Timestamp) -> Node {
        self.automatic(now, "done")
    }

    fn automatic(&self, now: Timestamp, state: &str) -> Node {
        let mut node = self.clone();
        node.state = state.to_string();
        node.updated = now;
        node.processed_by_kcidb_bridge = false;
        node
    }

    /// Whether `user` may edit this node (contract 2.3).
    pub fn editable_by(&self, user: &User) -> bool {
        if user.is_superuser || self.owner.as_deref() == Some(user.username.as_str()) {
            return true;
        }
        if user.in_group(NODE_EDIT_ANY) || self.user_groups.iter().any(|g| user.in_group(g)) {
            return true;
        }
        match self.data.get("runtime").and_then(Value::as_str) {
            Some(runtime) if !runtime.is_empty() => {
                user.in_group(&format!("runtime:{runtime}:node-editor"))
                    || user.in_group(&format!("runtime:{runtime}:node-admin"))
            }
            _ => false,
        }
    }

    /// The `data` of this node's event on channel `node`; `previous` is the
    /// (state, result) before an update.
    pub fn event_data(&self, is_hierarchy: bool, previous: Option<(&str, Option<&str>)>) -> Value {
        let mut data = json!({
            "op": if previous.is_some() { "updated" } else { "created" },
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "group": self.group,
            "state": self.state,
            "result": self.result,
            "owner": self.owner,
            "data": self.data,
            "is_hierarchy": is_hierarchy,
        });
        if let Some((state, result)) = previous {
            data["previous_state"] = json!(state);
            data["previous_result"] = json!(result);
        }
        data
    }

    /// Parses every field of a node document (schema only, 422 problems).
    /// `id` and `owner` are left empty for the caller to set.
    pub fn parse(body: &Value, now: Timestamp) -> Result<Node, Vec<ValidationItem>> {
        let mut f = Fields::new(body);
        let kind = f.optional_str("kind").unwrap_or_else(|| "node".to_string());
        let name = f.required_str("name");
        let path = required_string_list(&mut f, "path");
        let group = f.optional_str("group");
        let parent = optional_id(&mut f, "parent");
        let state = enum_field(&mut f, "state", STATES).unwrap_or_else(|| "running".into());
        let result = enum_field(&mut f, "result", RESULTS);
        let artifacts = artifacts_field(&mut f);
        let data = object_field(&mut f, "data");
        let debug = object_field(&mut f, "debug");
        let jobfilter = string_list_or_null(&mut f, "jobfilter").unwrap_or(Value::Null);
        let platform_filter = string_list_or_null(&mut f, "platform_filter").unwrap_or(json!([]));
        let created = timestamp_field(&mut f, "created");
        let updated = timestamp_field(&mut f, "updated");
        let timeout = timestamp_field(&mut f, "timeout");
        let holdoff = timestamp_field(&mut f, "holdoff");
        let submitter = f.optional_str("submitter");
        let treeid = f.optional_str("treeid");
        let user_groups = f.optional_unique_strings("user_groups").unwrap_or_default();
        let processed = f
            .optional_bool("processed_by_kcidb_bridge")
            .unwrap_or(false);
        let retry_counter = strict_int(&mut f, "retry_counter").unwrap_or(0);
        f.finish()?;
        let created = created.unwrap_or(now);
        Ok(Node {
            id: String::new(),
            kind,
            name: name.unwrap_or_default(),
            path: path.unwrap_or_default(),
            group,
            parent,
            state,
            result,
            artifacts: artifacts.unwrap_or_else(|| json!({})),
            data: data.unwrap_or_else(|| json!({})),
            debug: debug.unwrap_or_else(|| json!({})),
            jobfilter,
            platform_filter,
            created,
            updated: updated.unwrap_or(now),
            // From now, not from a client-supplied (back-dated) `created`:
            // an imported old node must not time out the moment it lands.
            timeout: timeout.unwrap_or(now + Duration::hours(DEFAULT_TIMEOUT_HOURS)),
            holdoff,
            owner: None,
            submitter,
            treeid,
            user_groups,
            processed_by_kcidb_bridge: processed,
            retry_counter,
        })
    }
}

/// Keys a PATCH may change.
pub const PATCHABLE: &[&str] = &[
    "state",
    "result",
    "artifacts",
    "data",
    "debug",
    "jobfilter",
    "platform_filter",
    "timeout",
    "holdoff",
    "processed_by_kcidb_bridge",
];

/// The state machine's manual transitions (same state always allowed).
pub fn can_become(from: &str, to: &str) -> bool {
    from == to
        || matches!(
            (from, to),
            ("running", "available" | "closing" | "done")
                | ("available", "closing" | "done")
                | ("closing", "done")
        )
}

fn body_object(body: &Value) -> Result<&Map<String, Value>, NodeError> {
    body.as_object().ok_or_else(|| {
        NodeError::Invalid(vec![ValidationItem::new(
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )])
    })
}

fn required_string_list(f: &mut Fields, key: &str) -> Option<Vec<String>> {
    match f.raw(key) {
        None => {
            f.fail(key, "Field required", "missing");
            None
        }
        Some(Value::Array(items)) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect();
            if strings.is_none() {
                let at = first_non_string(items);
                f.fail_item(key, at, "Input should be a valid string", "string_type");
            }
            strings
        }
        Some(_) => {
            f.fail(key, "Input should be a valid list", "list_type");
            None
        }
    }
}

/// `Some(Value::Null)` for an explicit null, `Some(list)` for a list.
fn string_list_or_null(f: &mut Fields, key: &str) -> Option<Value> {
    match f.raw(key)? {
        Value::Null => Some(Value::Null),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Some(Value::Array(items.clone()))
        }
        Value::Array(items) => {
            let at = first_non_string(items);
            f.fail_item(key, at, "Input should be a valid string", "string_type");
            None
        }
        _ => {
            f.fail(key, "Input should be a valid list", "list_type");
            None
        }
    }
}

fn first_non_string(items: &[Value]) -> usize {
    items.iter().position(|v| !v.is_string()).unwrap_or(0)
}

fn optional_id(f: &mut Fields, key: &str) -> Option<String> {
    let text = f.optional_str(key)?;
    let id = ids::parse_id(&text);
    if id.is_none() {
        f.fail(key, &ids::invalid_id_detail(&text), "value_error");
    }
    id
}

fn enum_field(f: &mut Fields, key: &str, allowed: &[&str]) -> Option<String> {
    let text = f.optional_str(key)?;
    if allowed.contains(&text.as_str()) {
        Some(text)
    } else {
        let expected = allowed
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        f.fail(key, &format!("Input should be {expected}"), "enum");
        None
    }
}

/// `Some(Value::Null)` for explicit null; `None` when absent or invalid.
fn object_field(f: &mut Fields, key: &str) -> Option<Value> {
    match f.raw(key)? {
        v @ (Value::Null | Value::Object(_)) => Some(v.clone()),
        _ => {
            f.fail(key, "Input should be a valid dictionary", "dict_type");
            None
        }
    }
}

fn artifacts_field(f: &mut Fields) -> Option<Value> {
    let raw = f.raw("artifacts")?;
    let Value::Object(map) = raw else {
        if raw.is_null() {
            return Some(Value::Null);
        }
        f.fail(
            "artifacts",
            "Input should be a valid dictionary",
            "dict_type",
        );
        return None;
    };
    let mut out = Map::new();
    let mut ok = true;
    for (name, value) in map {
        match value.as_str().map(normalize_http_url) {
            Some(Ok(url)) => {
                out.insert(name.clone(), Value::String(url));
            }
            Some(Err(kind)) => {
                ok = false;
                f.fail(
                    "artifacts",
                    &format!("Invalid URL for artifact '{name}'"),
                    kind,
                );
            }
            None => {
                ok = false;
                f.fail("artifacts", "Input should be a valid string", "string_type");
            }
        }
    }
    ok.then_some(Value::Object(out))
}

/// Checks an absolute http(s) URL with a host; returns it normalised
/// (lower-case scheme and host, `/` for an empty path).
pub fn normalize_http_url(text: &str) -> Result<String, &'static str> {
    let (scheme, rest) = text.split_once("://").ok_or("url_parsing")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("url_scheme");
    }
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_name = host.split(':').next().unwrap_or("");
    if host_name.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("url_parsing");
    }
    let tail = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => format!("{userinfo}@{}", host.to_ascii_lowercase()),
        None => authority.to_ascii_lowercase(),
    };
    Ok(format!("{scheme}://{authority}{tail}"))
}

fn timestamp_field(f: &mut Fields, key: &str) -> Option<Timestamp> {
    match f.raw(key)? {
        Value::Null => None,
        Value::String(text) => {
            let ts = timestamp::parse(text);
            if ts.is_none() {
                f.fail(
                    key,
                    "Input should be a valid datetime",
                    "datetime_from_date_parsing",
                );
            }
            ts
        }
        _ => {
            f.fail(key, "Input should be a valid datetime", "datetime_type");
            None
        }
    }
}

fn strict_int(f: &mut Fields, key: &str) -> Option<i64> {
    match f.raw(key)? {
        Value::Number(n) if n.is_i64() => n.as_i64(),
        _ => {
            f.fail(key, "Input should be a valid integer", "int_type");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        timestamp::parse("2024-01-01T00:00:00").expect("valid")
    }

    #[test]
    fn defaults_and_key_order() {
        let node = Node::create(&json!({"name": "n", "path": ["n"]}), "bob", now()).expect("valid");
        let doc = node.to_json();
        let keys: Vec<_> = doc
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 23);
        assert_eq!(keys[0], "id");
        assert_eq!(doc["kind"], "node");
        assert_eq!(doc["artifacts"], json!({}));
        assert_eq!(doc["platform_filter"], json!([]));
        assert_eq!(doc["timeout"], "2024-01-01T06:00:00.000000");
        assert_eq!(doc["owner"], "bob");
        assert_eq!(Node::from_json(&doc), Some(node));
    }

    #[test]
    fn owner_comes_from_the_token() {
        let node = Node::create(
            &json!({"name": "n", "path": [], "owner": "eve"}),
            "bob",
            now(),
        )
        .expect("valid");
        assert_eq!(node.owner.as_deref(), Some("bob"));
    }

    #[test]
    fn schema_then_kind() {
        match Node::create(&json!({"kind": "bogus"}), "bob", now()) {
            Err(NodeError::Invalid(items)) => assert_eq!(items.len(), 2),
            other => panic!("{other:?}"),
        }
        match Node::create(
            &json!({"kind": "bogus", "name": "n", "path": []}),
            "b",
            now(),
        ) {
            Err(NodeError::Rejected(d)) => assert_eq!(d, "Unsupported node kind: bogus"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(normalize_http_url("http://h").as_deref(), Ok("http://h/"));
        assert_eq!(
            normalize_http_url("HTTPS://Host/a?b=c").as_deref(),
            Ok("https://host/a?b=c")
        );
        assert_eq!(
            normalize_http_url("https://User:Pw@Host.org").as_deref(),
            Ok("https://User:Pw@host.org/")
        );
        assert_eq!(normalize_http_url("ftp://h/x"), Err("url_scheme"));
        assert_eq!(normalize_http_url("nope"), Err("url_parsing"));
        assert_eq!(normalize_http_url("http:///x"), Err("url_parsing"));
    }

    #[test]
    fn timer_rules() {
        let node = Node::create(
            &json!({"name": "n", "path": [], "data": null}),
            "bob",
            now(),
        )
        .expect("valid");
        let later = now() + Duration::hours(7);
        let done = node.on_timeout(later);
        assert_eq!(done.state, "done");
        assert_eq!(done.result.as_deref(), Some("incomplete"));
        assert_eq!(
            done.data,
            json!({"error_code": "node_timeout", "error_msg": "Node timed-out"})
        );
        assert_eq!(done.updated, later);
        let mut passed = node.clone();
        passed.result = Some("pass".into());
        assert_eq!(passed.on_timeout(later).result.as_deref(), Some("pass"));
        assert_eq!(passed.on_timeout(later).data, Value::Null);
        assert_eq!(node.on_holdoff(true, later).state, "closing");
        assert_eq!(node.on_holdoff(false, later).state, "done");
        assert!(can_become("running", "done") && !can_become("done", "running"));
    }
}
