//! Key/value store SQL: one text value per (namespace, key), the two kept
//! in separate columns so that no choice of names can make two keys meet.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// The value stored under (`ns`, `key`), if any.
pub fn get(c: &Connection, ns: &str, key: &str) -> Result<Option<String>, StoreError> {
    Ok(c.query_row(
        "SELECT value FROM kv WHERE ns = ?1 AND key = ?2",
        params![ns, key],
        |r| r.get(0),
    )
    .optional()?)
}

/// Stores `value` under (`ns`, `key`), replacing an earlier value.
pub fn set(c: &Connection, ns: &str, key: &str, value: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO kv (ns, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
        params![ns, key, value],
    )?;
    Ok(())
}

/// Removes (`ns`, `key`); whether it was there.
pub fn delete(c: &Connection, ns: &str, key: &str) -> Result<bool, StoreError> {
    let n = c.execute(
        "DELETE FROM kv WHERE ns = ?1 AND key = ?2",
        params![ns, key],
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;

    fn read(store: &crate::store::Store, ns: &str, key: &str) -> Option<String> {
        let (ns, key) = (ns.to_string(), key.to_string());
        store.read(|c| get(c, &ns, &key)).expect("read")
    }

    #[test]
    fn set_replace_and_delete() {
        let (_dir, store) = temp_store();
        assert_eq!(read(&store, "ns", "k"), None);
        store.write(|c, _| set(c, "ns", "k", "one")).expect("set");
        store
            .write(|c, _| set(c, "ns", "k", "two"))
            .expect("replace");
        assert_eq!(read(&store, "ns", "k").as_deref(), Some("two"));
        assert_eq!(store.write(|c, _| delete(c, "ns", "k")), Ok(true));
        assert_eq!(store.write(|c, _| delete(c, "ns", "k")), Ok(false));
        assert_eq!(read(&store, "ns", "k"), None);
    }

    #[test]
    fn namespace_and_key_never_meet() {
        let (_dir, store) = temp_store();
        store
            .write(|c, _| set(c, "a:b", "c", "first"))
            .expect("set");
        store
            .write(|c, _| set(c, "a", "b:c", "second"))
            .expect("set");
        assert_eq!(read(&store, "a:b", "c").as_deref(), Some("first"));
        assert_eq!(read(&store, "a", "b:c").as_deref(), Some("second"));
        assert_eq!(read(&store, "a", "b"), None);
        store.write(|c, _| delete(c, "a", "b:c")).expect("delete");
        assert_eq!(read(&store, "a:b", "c").as_deref(), Some("first"));
    }

    #[test]
    fn any_text_is_kept_exactly() {
        let (_dir, store) = temp_store();
        for (i, value) in [
            "",
            "a\u{0}b",
            "ünï ✓ \u{1F600}",
            "' OR 1=1 --",
            "\"quoted\"",
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("k{i}");
            let (k, v) = (key.clone(), value.to_string());
            store.write(move |c, _| set(c, "ns", &k, &v)).expect("set");
            assert_eq!(
                read(&store, "ns", &key).as_deref(),
                Some(value),
                "{value:?}"
            );
        }
    }
}
