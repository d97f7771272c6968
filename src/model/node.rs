//! Nodes: the 23-field model in the contract's key order and its typed
//! kind, state and result; the parsing of create, PUT and PATCH bodies; the
//! state machine and the timer's rules (pure: the clock is a parameter).

use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::node_data;
use super::user::{NODE_EDIT_ANY, User};
use super::validate::{Checked, Fields, ValidationItem};
use crate::ids;
use crate::timestamp::{self, Timestamp};

/// Default lifetime of a node before it times out.
pub const DEFAULT_TIMEOUT_HOURS: i64 = 6;
/// A closing node without any child goes done after this long (children
/// attached right after the state change keep it closing).
pub const CLOSING_GRACE_MS: i64 = 500;

/// What a node stands for; selects the rules of its `data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A source checkout (`checkout`).
    Checkout,
    /// A kernel build (`kbuild`).
    Kbuild,
    /// A test (`test`).
    Test,
    /// A test job (`job`).
    Job,
    /// A pipeline process (`process`).
    Process,
    /// A regression found between two results (`regression`).
    Regression,
    /// A plain node, the default (`node`).
    Node,
}

impl Kind {
    /// Every kind the API accepts.
    pub const ALL: [Kind; 7] = [
        Kind::Checkout,
        Kind::Kbuild,
        Kind::Test,
        Kind::Job,
        Kind::Process,
        Kind::Regression,
        Kind::Node,
    ];

    /// The kind as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Checkout => "checkout",
            Kind::Kbuild => "kbuild",
            Kind::Test => "test",
            Kind::Job => "job",
            Kind::Process => "process",
            Kind::Regression => "regression",
            Kind::Node => "node",
        }
    }

    /// The kind written `text`, if the API knows it.
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Where a node is in its life; see [`NodeState::can_become`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Work on the node goes on (the initial state).
    Running,
    /// Results are available; children may still be added until `holdoff`.
    Available,
    /// Waiting for pending descendants before going done.
    Closing,
    /// Final.
    Done,
}

impl NodeState {
    /// Every state, in the order a 422 message lists them.
    pub const ALL: [NodeState; 4] = [
        NodeState::Running,
        NodeState::Available,
        NodeState::Closing,
        NodeState::Done,
    ];

    /// The state as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Running => "running",
            NodeState::Available => "available",
            NodeState::Closing => "closing",
            NodeState::Done => "done",
        }
    }

    /// Whether a client may move a node from `self` to `next` (the same
    /// state is always allowed); the timer's moves follow the same table.
    pub fn can_become(self, next: NodeState) -> bool {
        use NodeState::*;
        self == next
            || matches!(
                (self, next),
                (Running, Available | Closing | Done)
                    | (Available, Closing | Done)
                    | (Closing, Done)
            )
    }
}

/// The outcome of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeResult {
    /// It passed.
    Pass,
    /// It failed.
    Fail,
    /// It was skipped.
    Skip,
    /// It did not finish (set by the timer on a timeout).
    Incomplete,
}

impl NodeResult {
    /// Every result, in the order a 422 message lists them.
    pub const ALL: [NodeResult; 4] = [
        NodeResult::Pass,
        NodeResult::Fail,
        NodeResult::Skip,
        NodeResult::Incomplete,
    ];

    /// The result as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeResult::Pass => "pass",
            NodeResult::Fail => "fail",
            NodeResult::Skip => "skip",
            NodeResult::Incomplete => "incomplete",
        }
    }
}

/// A node with every field of the contract. Serialised, it is the node as
/// every endpoint returns it and as it is stored: keys in the contract's
/// order, every key always present (null when unset).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The node's object id.
    pub id: String,
    /// What the node stands for.
    pub kind: Kind,
    /// The node's name.
    pub name: String,
    /// The names from the root of its hierarchy down to it.
    pub path: Vec<String>,
    /// A free-form group name.
    pub group: Option<String>,
    /// The id of the parent node.
    pub parent: Option<String>,
    /// Where the node is in its life.
    pub state: NodeState,
    /// The outcome, once known.
    pub result: Option<NodeResult>,
    /// Named http(s) URLs (object), or null.
    pub artifacts: Value,
    /// Kind-specific data (object), or null.
    pub data: Value,
    /// Free-form debug data (object), or null.
    pub debug: Value,
    /// A list of strings, or null.
    pub jobfilter: Value,
    /// A list of strings, or null.
    pub platform_filter: Value,
    /// When the node was created.
    #[serde(with = "wire_time")]
    pub created: Timestamp,
    /// When the node last changed.
    #[serde(with = "wire_time")]
    pub updated: Timestamp,
    /// When a pending node times out.
    #[serde(with = "wire_time")]
    pub timeout: Timestamp,
    /// When an available node stops waiting for children.
    #[serde(with = "wire_time_opt", default)]
    pub holdoff: Option<Timestamp>,
    /// The username of the creator.
    pub owner: Option<String>,
    /// Who submitted the hierarchy the node belongs to.
    pub submitter: Option<String>,
    /// The tree id of the hierarchy.
    pub treeid: Option<String>,
    /// Groups whose members may edit the node.
    pub user_groups: Vec<String>,
    /// Whether the KCIDB bridge has processed the node.
    pub processed_by_kcidb_bridge: bool,
    /// How many times the node was retried.
    pub retry_counter: i64,
}

/// Timestamps in the contract's text form.
mod wire_time {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::timestamp::{self, Timestamp};

    /// Writes `t` as the contract prints it.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&timestamp::format(t))
    }

    /// Reads a timestamp from its text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        parse(String::deserialize(d)?)
    }

    /// The timestamp written `text`, or a serde error naming it. Only stored
    /// documents are read this way (bodies go through `Fields`), so a year
    /// outside the range, left by an older release, reads clamped into it
    /// instead of making the node unreadable.
    pub fn parse<E: Error>(text: String) -> Result<Timestamp, E> {
        timestamp::parse_stored(&text).ok_or_else(|| E::custom(format!("bad timestamp {text:?}")))
    }
}

/// Optional timestamps in the contract's text form; null when unset.
mod wire_time_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::timestamp::Timestamp;

    /// Writes `t` as the contract prints it, or null.
    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::wire_time::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a timestamp from its text; null is `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(super::wire_time::parse)
            .transpose()
    }
}

/// Why a node body was refused.
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

/// What [`Node::parse`] does with an `id` in the body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GivenId {
    /// A create: an `id` is a 400.
    Refused,
    /// An update: the stored id wins.
    Ignored,
}

impl Node {
    /// The earliest time-driven change this node waits for: its `timeout`
    /// while pending (running, available, closing), or its `holdoff` while
    /// available if that comes first; none once done.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.state {
            NodeState::Done => None,
            NodeState::Available => {
                Some(self.holdoff.map_or(self.timeout, |h| h.min(self.timeout)))
            }
            NodeState::Running | NodeState::Closing => Some(self.timeout),
        }
    }

    /// Whether this node is done or closing: a closing ancestor may have
    /// no pending descendant any more.
    pub fn is_settling(&self) -> bool {
        matches!(self.state, NodeState::Done | NodeState::Closing)
    }

    /// The node as every endpoint returns it, keys in the contract's order.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a node has string keys and text timestamps")
    }

    /// Builds a new node from a POST body: schema (422), then `id` present,
    /// kind and kind data (400). `owner` is always `owner`, whatever the body
    /// says.
    pub fn create(body: &Value, owner: &str, now: Timestamp) -> Result<Node, NodeError> {
        let mut node = Node::parse(body, now, GivenId::Refused)?;
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
            self.check_transition(node.state)?;
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
        self.check_transition(node.state)?;
        let flag =
            given.contains_key("processed_by_kcidb_bridge") && node.processed_by_kcidb_bridge;
        node.processed_by_kcidb_bridge = node.state == self.state && flag;
        Ok(node)
    }

    /// Parses a merged document as an update of `self`.
    fn updated_from(&self, merged: &Value, now: Timestamp) -> Result<Node, NodeError> {
        let mut node = Node::parse(merged, now, GivenId::Ignored)?;
        node.id = self.id.clone();
        node.owner = self.owner.clone();
        node.submitter = self.submitter.clone();
        node.user_groups = self.user_groups.clone();
        node.updated = now;
        Ok(node)
    }

    fn check_transition(&self, next: NodeState) -> Result<(), NodeError> {
        if self.state.can_become(next) {
            Ok(())
        } else {
            Err(NodeError::Rejected(format!(
                "Transition not allowed with state: {}",
                next.as_str()
            )))
        }
    }

    /// The timer's rule for a pending node past its `timeout`: done, and
    /// when no result was set, `incomplete` with the timeout error in data.
    pub fn on_timeout(&self, now: Timestamp) -> Node {
        let mut node = self.automatic(now, NodeState::Done);
        if node.result.is_none() {
            node.result = Some(NodeResult::Incomplete);
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
                NodeState::Closing
            } else {
                NodeState::Done
            },
        )
    }

    /// The timer's rule for a closing node whose descendants are all done.
    pub fn on_descendants_done(&self, now: Timestamp) -> Node {
        self.automatic(now, NodeState::Done)
    }

    fn automatic(&self, now: Timestamp, state: NodeState) -> Node {
        let mut node = self.clone();
        node.state = state;
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
    /// node before an update (its state and result are reported).
    pub fn event_data(&self, is_hierarchy: bool, previous: Option<&Node>) -> Value {
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
        if let Some(previous) = previous {
            data["previous_state"] = json!(previous.state);
            data["previous_result"] = json!(previous.result);
        }
        data
    }

    /// Parses every field of a node document: the schema (422 problems),
    /// then a given `id` if refused, the kind and its `data` (400). `id` and
    /// `owner` are left empty for the caller to set.
    fn parse(body: &Value, now: Timestamp, given_id: GivenId) -> Result<Node, NodeError> {
        let mut f = Fields::new(body);
        let kind = f.optional_str("kind");
        let name = f.required_str("name");
        let path = f.required_string_list("path");
        let group = f.optional_str("group");
        let parent = f.optional_id("parent");
        let state = f.optional_choice("state", &NodeState::ALL, NodeState::as_str);
        let result = f.optional_choice("result", &NodeResult::ALL, NodeResult::as_str);
        let artifacts = f.url_map_or_null("artifacts");
        let data = f.object_or_null("data");
        let debug = f.object_or_null("debug");
        let jobfilter = f.string_list_or_null("jobfilter").unwrap_or(Value::Null);
        let platform_filter = f
            .string_list_or_null("platform_filter")
            .unwrap_or(json!([]));
        let created = f.optional_timestamp("created");
        let updated = f.optional_timestamp("updated");
        let timeout = f.optional_timestamp("timeout");
        let holdoff = f.optional_timestamp("holdoff");
        let submitter = f.optional_str("submitter");
        let treeid = f.optional_str("treeid");
        let user_groups = f.optional_unique_strings("user_groups").unwrap_or_default();
        let processed = f
            .optional_bool("processed_by_kcidb_bridge")
            .unwrap_or(false);
        let retry_counter = f.optional_strict_int("retry_counter").unwrap_or(0);
        f.finish()?;
        if given_id == GivenId::Refused && body.get("id").is_some_and(|v| !v.is_null()) {
            return Err(NodeError::Rejected(
                "id must not be given when creating a node".into(),
            ));
        }
        let kind = match kind {
            None => Kind::Node,
            Some(text) => Kind::parse(&text)
                .ok_or_else(|| NodeError::Rejected(format!("Unsupported node kind: {text}")))?,
        };
        let mut data = data.unwrap_or_else(|| json!({}));
        node_data::validate(kind.as_str(), &mut data).map_err(NodeError::Rejected)?;
        let created = created.unwrap_or(now);
        Ok(Node {
            id: String::new(),
            kind,
            name: name.unwrap_or_default(),
            path: path.unwrap_or_default(),
            group,
            parent,
            state: state.unwrap_or(NodeState::Running),
            result,
            artifacts: artifacts.unwrap_or_else(|| json!({})),
            data,
            debug: debug.unwrap_or_else(|| json!({})),
            jobfilter,
            platform_filter,
            created,
            updated: updated.unwrap_or(now),
            // From now, not from a client-supplied (back-dated) `created`:
            // an imported old node must not time out the moment it lands.
            timeout: timeout
                .unwrap_or_else(|| timestamp::shift(now, Duration::hours(DEFAULT_TIMEOUT_HOURS))),
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

fn body_object(body: &Value) -> Result<&Map<String, Value>, NodeError> {
    body.as_object().ok_or_else(|| {
        NodeError::Invalid(vec![ValidationItem::new(
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )])
    })
}

/// A `PUT /batch/nodeset` body as serde reads it; see [`NodeSet::parse`].
#[derive(Default, Deserialize)]
struct NodeSetBody {
    #[serde(default)]
    nodes: Checked<Vec<String>>,
    #[serde(default)]
    field: Checked<String>,
    #[serde(default)]
    value: Checked<String>,
}

/// A checked `PUT /batch/nodeset` request: set `processed_by_kcidb_bridge`
/// to `flag` on the nodes `ids`.
#[derive(Debug, PartialEq)]
pub struct NodeSet {
    /// The node ids, canonical (lower-case), in the body's order.
    pub ids: Vec<String>,
    /// The new value of the flag.
    pub flag: bool,
}

impl NodeSet {
    /// Parses a batch body: the schema (422: `nodes` a list of strings,
    /// `field` and `value` strings), then `field` (400 `Field not
    /// supported`), `value` (400 unless `true`/`false` in any case) and each
    /// id (400).
    pub fn parse(body: &Value) -> Result<NodeSet, NodeError> {
        let mut f = Fields::new(body);
        // Read as an object only: serde would read a list positionally.
        let input = match body {
            Value::Object(_) => NodeSetBody::deserialize(body).unwrap_or_default(),
            _ => NodeSetBody::default(),
        };
        let ids = match input.nodes {
            // `nodes` is reported even beside a body that is not an object,
            // as this endpoint has always answered.
            Checked::Missing => {
                f.fail("nodes", "Field required", "missing");
                None
            }
            nodes => f.required("nodes", nodes),
        };
        let field = f.required("field", input.field);
        let value = f.required("value", input.value);
        f.finish()?;
        if field.as_deref() != Some("processed_by_kcidb_bridge") {
            return Err(NodeError::Rejected("Field not supported".into()));
        }
        let flag = match value.map(|v| v.to_ascii_lowercase()).as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => {
                return Err(NodeError::Rejected(
                    "Value must be 'true' or 'false'".into(),
                ));
            }
        };
        let ids = ids
            .unwrap_or_default()
            .iter()
            .map(|text| {
                ids::parse_id(text).ok_or_else(|| NodeError::Rejected(ids::invalid_id_detail(text)))
            })
            .collect::<Result<_, _>>()?;
        Ok(NodeSet { ids, flag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp;

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
        assert_eq!(serde_json::from_value::<Node>(doc).ok(), Some(node));
    }

    #[test]
    fn unset_fields_are_null_and_read_back() {
        let mut node =
            Node::create(&json!({"name": "n", "path": []}), "bob", now()).expect("valid");
        node.holdoff = Some(now());
        node.result = Some(NodeResult::Skip);
        let doc = node.to_json();
        for key in ["group", "parent", "submitter", "treeid", "jobfilter"] {
            assert_eq!(doc[key], Value::Null, "{key}");
        }
        assert_eq!(doc["holdoff"], "2024-01-01T00:00:00.000000");
        assert_eq!(doc["result"], "skip");
        assert_eq!(doc["state"], "running");
        assert_eq!(serde_json::from_value::<Node>(doc).ok(), Some(node));
    }

    #[test]
    fn wire_names_are_the_serde_names() {
        for kind in Kind::ALL {
            assert_eq!(json!(kind), kind.as_str());
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        for state in NodeState::ALL {
            assert_eq!(json!(state), state.as_str());
            assert_eq!(
                serde_json::from_value(json!(state.as_str())).ok(),
                Some(state)
            );
        }
        for result in NodeResult::ALL {
            assert_eq!(json!(result), result.as_str());
            assert_eq!(
                serde_json::from_value(json!(result.as_str())).ok(),
                Some(result)
            );
        }
        assert_eq!(Kind::parse("Node"), None);
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
        match Node::create(
            &json!({"kind": "bogus", "name": "n", "path": [], "id": "x"}),
            "b",
            now(),
        ) {
            Err(NodeError::Rejected(d)) => {
                assert_eq!(d, "id must not be given when creating a node")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_state_lists_every_state() {
        match Node::create(
            &json!({"name": "n", "path": [], "state": "gone", "result": "ok"}),
            "b",
            now(),
        ) {
            Err(NodeError::Invalid(items)) => {
                let msgs: Vec<_> = items.iter().map(|i| i.msg.as_str()).collect();
                assert_eq!(
                    msgs,
                    [
                        "Input should be 'running', 'available', 'closing', 'done'",
                        "Input should be 'pass', 'fail', 'skip', 'incomplete'"
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
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
        assert_eq!(done.state, NodeState::Done);
        assert_eq!(done.result, Some(NodeResult::Incomplete));
        assert_eq!(
            done.data,
            json!({"error_code": "node_timeout", "error_msg": "Node timed-out"})
        );
        assert_eq!(done.updated, later);
        let mut passed = node.clone();
        passed.result = Some(NodeResult::Pass);
        assert_eq!(passed.on_timeout(later).result, Some(NodeResult::Pass));
        assert_eq!(passed.on_timeout(later).data, Value::Null);
        assert_eq!(node.on_holdoff(true, later).state, NodeState::Closing);
        assert_eq!(node.on_holdoff(false, later).state, NodeState::Done);
        assert!(
            NodeState::Running.can_become(NodeState::Done)
                && !NodeState::Done.can_become(NodeState::Running)
        );
    }

    #[test]
    fn out_of_range_timestamps_are_schema_problems() {
        for field in ["created", "updated", "timeout", "holdoff"] {
            for bad in [
                "+10000-01-01T00:00:00",
                "10000-01-01T00:00:00",
                "0000-01-01T00:00:00",
                "-0001-01-01T00:00:00",
                "2024-01-01T00:00:00.1234567",
                "0001-01-01T00:00:00+01:00",
            ] {
                let mut body = json!({"name": "n", "path": []});
                body[field] = json!(bad);
                match Node::create(&body, "bob", now()) {
                    Err(NodeError::Invalid(items)) => {
                        assert_eq!(
                            items,
                            [ValidationItem::new(
                                vec![json!("body"), json!(field)],
                                "Input should be a valid datetime",
                                "datetime_from_date_parsing",
                            )],
                            "{field}={bad}"
                        );
                    }
                    other => panic!("{field}={bad}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn default_timeout_stays_in_range() {
        let late = timestamp::parse("9999-12-31T23:00:00").expect("valid");
        let node = Node::create(&json!({"name": "n", "path": []}), "bob", late).expect("valid");
        assert_eq!(node.timeout, timestamp::MAX);
        assert_eq!(node.to_json()["timeout"], "9999-12-31T23:59:59.999000");
    }

    #[test]
    fn stored_years_out_of_range_read_clamped() {
        let node = Node::create(&json!({"name": "n", "path": []}), "bob", now()).expect("valid");
        let mut doc = node.to_json();
        doc["timeout"] = json!("+10000-01-01T00:00:00.000000");
        doc["holdoff"] = json!("-0001-01-01T00:00:00.000000");
        let read: Node = serde_json::from_value(doc).expect("readable");
        assert_eq!(read.timeout, timestamp::MAX);
        assert_eq!(read.holdoff, Some(timestamp::MIN));
        // and a PUT of that node, which re-reads every stored field as a body
        // would, still passes
        let put = read.put(&json!({"name": "m"}), now(), true).expect("valid");
        assert_eq!(put.timeout, timestamp::MAX);
    }

    #[test]
    fn transitions() {
        use NodeState::*;
        let allowed = |from: NodeState| {
            NodeState::ALL
                .into_iter()
                .filter(|&to| from.can_become(to))
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Running), [Running, Available, Closing, Done]);
        assert_eq!(allowed(Available), [Available, Closing, Done]);
        assert_eq!(allowed(Closing), [Closing, Done]);
        assert_eq!(allowed(Done), [Done]);
    }

    fn nodeset_problems(body: Value) -> Vec<(Value, String)> {
        match NodeSet::parse(&body) {
            Err(NodeError::Invalid(items)) => items
                .into_iter()
                .map(|i| (Value::Array(i.loc), i.kind))
                .collect(),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn nodeset_bodies() {
        let id = "0123456789ABCDEF01234567";
        let ok = NodeSet::parse(
            &json!({"nodes": [id], "field": "processed_by_kcidb_bridge", "value": "False"}),
        )
        .expect("valid");
        assert_eq!(
            ok,
            NodeSet {
                ids: vec![id.to_lowercase()],
                flag: false
            }
        );
        assert_eq!(
            nodeset_problems(json!({})),
            [
                (json!(["body", "nodes"]), "missing".to_string()),
                (json!(["body", "field"]), "missing".to_string()),
                (json!(["body", "value"]), "missing".to_string()),
            ]
        );
        assert_eq!(
            nodeset_problems(json!({"nodes": [1], "field": null, "value": true})),
            [
                (json!(["body", "nodes"]), "string_type".to_string()),
                (json!(["body", "field"]), "string_type".to_string()),
                (json!(["body", "value"]), "string_type".to_string()),
            ]
        );
        assert_eq!(
            nodeset_problems(json!({"nodes": null, "field": "f", "value": "v"})),
            [(json!(["body", "nodes"]), "list_type".to_string())]
        );
        assert_eq!(
            nodeset_problems(json!([[id], "f", "v"])),
            [
                (json!(["body"]), "model_attributes_type".to_string()),
                (json!(["body", "nodes"]), "missing".to_string()),
            ]
        );
        for (body, detail) in [
            (
                json!({"nodes": [], "field": "state", "value": "true"}),
                "Field not supported".to_string(),
            ),
            (
                json!({"nodes": [], "field": "processed_by_kcidb_bridge", "value": "yes"}),
                "Value must be 'true' or 'false'".to_string(),
            ),
            (
                json!({"nodes": ["xyz"], "field": "processed_by_kcidb_bridge", "value": "true"}),
                ids::invalid_id_detail("xyz"),
            ),
        ] {
            match NodeSet::parse(&body) {
                Err(NodeError::Rejected(d)) => assert_eq!(d, detail),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
