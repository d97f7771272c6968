//! Key/value settings of the server itself (the generated secret key).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// The value stored under `key`, if any.
pub fn get(c: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?,
    )
}

/// Stores `value` under `key`, replacing an earlier value.
pub fn set(c: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
