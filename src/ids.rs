//! MongoDB-ObjectId-compatible identifiers: 4-byte seconds, 5 random bytes
//! fixed per process, 3-byte counter starting at a random value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;

struct Generator {
    process: [u8; 5],
    counter: AtomicU32,
}

fn generator() -> &'static Generator {
    static GEN: OnceLock<Generator> = OnceLock::new();
    GEN.get_or_init(|| {
        let mut rng = rand::rng();
        let mut process = [0u8; 5];
        rng.fill_bytes(&mut process);
        Generator {
            process,
            counter: AtomicU32::new(rng.next_u32() & 0x00ff_ffff),
        }
    })
}

/// A new id, 24 lowercase hex characters, sorting after every id this
/// process generated in an earlier second.
pub fn new_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as u32;
    let generator = generator();
    let count = generator.counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..9].copy_from_slice(&generator.process);
    bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The normalised (lowercase) form of `text` if it is a 24-hex id.
pub fn parse_id(text: &str) -> Option<String> {
    if text.len() == 24 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(text.to_ascii_lowercase())
    } else {
        None
    }
}

/// The contract's 400 detail for a path parameter that is not an id.
pub fn invalid_id_detail(text: &str) -> String {
    format!(
        "'{text}' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_hex_and_increase() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 24);
        assert!(parse_id(&a).is_some());
        assert!(a[..8] <= b[..8]);
        assert_ne!(a, b);
        assert_eq!(a[8..18], b[8..18], "process part is fixed");
    }

    #[test]
    fn parse_accepts_upper_case_and_rejects_others() {
        assert_eq!(
            parse_id("0123456789ABCDEF01234567").as_deref(),
            Some("0123456789abcdef01234567")
        );
        assert!(parse_id("xyz").is_none());
        assert!(parse_id("0123456789abcdef0123456g").is_none());
    }
}
