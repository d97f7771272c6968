//! Events: what the event history stores and subscribers receive, with the
//! CloudEvents 1.0 envelope fixed once so that every delivery carries the
//! same `id` and `time`.

use chrono::Utc;
use rand::RngCore;
use serde_json::{Map, Value, json};

use crate::ids;
use crate::timestamp::{self, Timestamp};

/// Default CloudEvent `type`.
pub const DEFAULT_TYPE: &str = "api.kernelci.org";

/// A stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// ObjectId of the history entry.
    pub id: String,
    pub timestamp: Timestamp,
    pub channel: String,
    /// The publisher (`owner` attribute), if any.
    pub owner: Option<String>,
    pub data: Value,
    /// The CloudEvent envelope, without `_sequence_id` (added on delivery).
    pub envelope: Value,
}

/// A random (version 4) UUID.
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A CloudEvent envelope: specversion, id, source, type, time, data, then
/// `attributes` in order.
pub fn envelope(source: &str, kind: &str, data: Value, attributes: Map<String, Value>) -> Value {
    let mut env = Map::new();
    env.insert("specversion".into(), json!("1.0"));
    env.insert("id".into(), json!(uuid4()));
    env.insert("source".into(), json!(source));
    env.insert("type".into(), json!(kind));
    env.insert(
        "time".into(),
        json!(timestamp::cloud_event_time(&Utc::now())),
    );
    env.insert("data".into(), data);
    for (k, v) in attributes {
        env.insert(k, v);
    }
    Value::Object(env)
}

impl Event {
    /// An event on `channel` published by `owner`.
    pub fn new(channel: &str, owner: Option<&str>, data: Value, source: &str) -> Event {
        let mut attributes = Map::new();
        if let Some(owner) = owner {
            attributes.insert("owner".into(), json!(owner));
        }
        Event {
            id: ids::new_id(),
            timestamp: timestamp::now(),
            channel: channel.to_string(),
            owner: owner.map(str::to_string),
            envelope: envelope(source, DEFAULT_TYPE, data.clone(), attributes),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_key_order_and_uuid() {
        let e = Event::new(
            "node",
            Some("bob"),
            json!({"op": "created"}),
            "https://api.kernelci.org/",
        );
        let keys: Vec<_> = e
            .envelope
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "specversion",
                "id",
                "source",
                "type",
                "time",
                "data",
                "owner"
            ]
        );
        let id = e.envelope["id"].as_str().unwrap_or("");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(
            e.envelope["time"]
                .as_str()
                .unwrap_or("")
                .ends_with("+00:00")
        );
    }
}
