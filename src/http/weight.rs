//! What a JSON request body will cost to handle: its number of values,
//! counted without building any of them, and the [`ValueBudget`] that
//! bounds the values of large bodies handled at once. A parsed document
//! takes a few hundred bytes per value (more with the copies a write
//! makes), so the count, not the byte size, is what bounds memory.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use serde::de::{DeserializeSeed, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The most JSON values (objects, arrays, strings, numbers, booleans and
/// nulls, at any depth) one body may hold: a hierarchy of 10,000 test
/// nodes of 25 values each fits. Handling one at the limit peaks at about
/// 250 MB.
pub const MAX_BODY_VALUES: u64 = 250_000;
/// Bodies with more values than this are large: they take their count
/// from the [`ValueBudget`] while they are handled.
pub const LARGE_BODY_VALUES: u64 = 10_000;
/// Values of large bodies that may be handled at once, over all requests.
pub const VALUES_AT_ONCE: u64 = 2 * MAX_BODY_VALUES;

/// How many values the JSON text `body` holds, counting at most up to
/// `max + 1`: `Some(n)` with `n > max` means "too many". `None` when it is
/// not JSON (the handler answers that, with the position of the error).
pub fn count_values(body: &[u8], max: u64) -> Option<u64> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    let count = Cell::new(0);
    let mut de = serde_json::Deserializer::from_slice(body);
    let counted = Counter { count: &count, max }.deserialize(&mut de);
    match counted {
        Ok(()) => de.end().ok().map(|()| count.get()),
        Err(_) if count.get() > max => Some(count.get()),
        Err(_) => None,
    }
}

/// Counts every value it is given into `count`; fails past `max`.
#[derive(Clone, Copy)]
struct Counter<'a> {
    count: &'a Cell<u64>,
    max: u64,
}

impl Counter<'_> {
    fn one<E: Error>(self) -> Result<(), E> {
        let n = self.count.get() + 1;
        self.count.set(n);
        if n > self.max {
            Err(E::custom("too many values"))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<(), E> {
        self.one()
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<(), E> {
        self.one()
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<(), E> {
        self.one()
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<(), E> {
        self.one()
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<(), E> {
        self.one()
    }

    fn visit_unit<E: Error>(self) -> Result<(), E> {
        self.one()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.one()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.one()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// A count of values that large bodies being handled may hold at once.
#[derive(Debug)]
pub struct ValueBudget {
    left: Mutex<u64>,
}

/// Values taken from a [`ValueBudget`], given back on drop.
#[derive(Debug)]
pub struct Held {
    budget: Arc<ValueBudget>,
    values: u64,
}

impl ValueBudget {
    /// A budget of `values`.
    pub fn new(values: u64) -> Arc<ValueBudget> {
        Arc::new(ValueBudget {
            left: Mutex::new(values),
        })
    }

    /// Takes `values` now, or `None` when there is not that much room: a
    /// request never waits for another (it would hold its worker).
    pub fn try_take(self: &Arc<Self>, values: u64) -> Option<Held> {
        // A poisoned lock only means a holder panicked; the count is intact.
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        *left = left.checked_sub(values)?;
        Some(Held {
            budget: Arc::clone(self),
            values,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut left = self.budget.left.lock().unwrap_or_else(|p| p.into_inner());
        *left += self.values;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_at_every_depth_is_counted() {
        assert_eq!(count_values(b"{}", 10), Some(1));
        assert_eq!(count_values(b" [1, \"a\", null, true, 2.5] ", 10), Some(6));
        assert_eq!(
            count_values(br#"{"a": {"b": [1, {"c": []}]}}"#, 10),
            Some(6)
        );
    }

    #[test]
    fn counting_stops_past_the_limit() {
        let many = format!("[{}]", vec!["{}"; 1000].join(","));
        assert_eq!(count_values(many.as_bytes(), 10), Some(11));
        assert_eq!(count_values(many.as_bytes(), 5000), Some(1001));
    }

    #[test]
    fn what_is_not_a_json_document_is_left_to_the_handler() {
        assert_eq!(count_values(b"", 10), None);
        assert_eq!(count_values(b"name=x&y=2", 10), None);
        assert_eq!(count_values(b"\"text\"", 10), None);
        assert_eq!(count_values(b"{\"a\": ", 10), None);
        assert_eq!(count_values(b"{} {}", 10), None);
    }

    #[test]
    fn the_budget_is_given_back() {
        let budget = ValueBudget::new(100);
        let first = budget.try_take(60).expect("room");
        assert!(budget.try_take(60).is_none());
        let small = budget.try_take(40).expect("room");
        drop(first);
        assert!(budget.try_take(60).is_some());
        drop(small);
        assert!(budget.try_take(100).is_some());
    }
}
