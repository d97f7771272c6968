//! Durable subscriber positions and the subscription id counter.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, meta};

/// A durable subscriber's saved state.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscriber {
    pub username: String,
    pub channel: String,
    pub position: i64,
}

/// The saved state of `subscriber_id`, if it exists.
pub fn get(c: &Connection, subscriber_id: &str) -> Result<Option<Subscriber>, StoreError> {
    Ok(c.query_row(
        "SELECT username, channel, position FROM subscriber WHERE subscriber_id = ?1",
        [subscriber_id],
        |r| {
            Ok(Subscriber {
                username: r.get(0)?,
                channel: r.get(1)?,
                position: r.get(2)?,
            })
        },
    )
    .optional()?)
}

/// Creates or replaces a durable subscriber.
pub fn put(c: &Connection, subscriber_id: &str, s: &Subscriber) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO subscriber (subscriber_id, username, channel, position) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (subscriber_id) DO UPDATE SET username = excluded.username,
             channel = excluded.channel, position = excluded.position",
        params![subscriber_id, s.username, s.channel, s.position],
    )?;
    Ok(())
}

/// Moves a durable subscriber's acknowledged position forward.
pub fn acknowledge(c: &Connection, subscriber_id: &str, position: i64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE subscriber SET position = max(position, ?2) WHERE subscriber_id = ?1",
        params![subscriber_id, position],
    )?;
    Ok(())
}

/// The next subscription id: unique for the life of the database.
pub fn next_subscription_id(c: &Connection) -> Result<u64, StoreError> {
    let current = meta::get(c, "last_subscription_id")?
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let next = current + 1;
    meta::set(c, "last_subscription_id", &next.to_string())?;
    Ok(next)
}
