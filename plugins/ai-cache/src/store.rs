//! The embedded store: exact entries in proxy-wasm shared data, one store for all workers of
//! an Envoy (per `vm_id`).
//!
//! Entries live in `4 × maxEntries` slots (`ai-cache/slot/<n>`): the number of shared-data
//! keys is bounded, since the host cannot delete one. A key may sit in one of [`PROBES`] slots
//! from the one its hash picks; a put takes the first that is free, expired or its own, else
//! replaces the first. A slot holds its key (so a colliding key is a miss, never a wrong
//! answer), its expiry and the answer. An index
//! (`ai-cache/index`, updated with compare-and-swap) lists the filled slots oldest first with
//! their sizes; an insert evicts from the front until the entry count and the byte total are
//! within bounds. Reads never touch the index.

use proxy_wasm::types::Status;
use sdk::host::Host;
use sha2::{Digest, Sha256};

const INDEX: &str = "ai-cache/index";
const RETRIES: usize = 16;
/// Slots a key may occupy.
pub const PROBES: u64 = 8;

/// Bounds of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most entries.
    pub entries: usize,
    /// Most bytes of entries.
    pub bytes: usize,
}

/// The slots `key` may occupy, in probe order (double hashing over `4 × entries` slots).
fn slots_of(key: &str, entries: usize) -> impl Iterator<Item = u32> {
    let digest = Sha256::digest(key.as_bytes());
    let word = |at: usize| {
        let mut n = [0u8; 8];
        n.copy_from_slice(digest.get(at..at + 8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(n)
    };
    let slots = (entries.max(1) as u64).saturating_mul(4);
    let (home, step) = (word(0), word(8) | 1);
    (0..PROBES.min(slots)).map(move |p| (home.wrapping_add(p.wrapping_mul(step)) % slots) as u32)
}

fn slot_key(slot: u32) -> String {
    format!("ai-cache/slot/{slot}")
}

/// Slot layout: expiry (u64 LE, unix seconds, 0 = never), key length (u32 LE), key, value.
fn encode_slot(key: &str, value: &[u8], expires: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + key.len() + value.len());
    out.extend_from_slice(&expires.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
    out
}

/// A slot's key, expiry and value.
fn parse_slot(bytes: &[u8]) -> Option<(&[u8], u64, &[u8])> {
    let expires = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    Some((bytes.get(12..12 + len)?, expires, bytes.get(12 + len..)?))
}

fn live(expires: u64, now: u64) -> bool {
    expires == 0 || expires > now
}

/// The index: (slot, size) pairs, oldest first, 8 bytes each.
fn decode_index(bytes: &[u8]) -> Vec<(u32, u32)> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let n = |r: std::ops::Range<usize>| {
                c.get(r)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes)
            };
            (n(0..4), n(4..8))
        })
        .collect()
}

fn encode_index(list: &[(u32, u32)]) -> Vec<u8> {
    list.iter()
        .flat_map(|(s, n)| s.to_le_bytes().into_iter().chain(n.to_le_bytes()))
        .collect()
}

/// Reads the entry of `key`, if present and not expired.
pub fn get(host: &dyn Host, bounds: Bounds, key: &str, now: u64) -> Option<Vec<u8>> {
    for slot in slots_of(key, bounds.entries) {
        let (bytes, _) = host.shared_data(&slot_key(slot));
        let Some(bytes) = bytes else { continue };
        if let Some((stored, expires, value)) = parse_slot(&bytes) {
            if stored == key.as_bytes() {
                return live(expires, now).then(|| value.to_vec());
            }
        }
    }
    None
}

/// What [`put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Stored; these slots were evicted to make room.
    Stored(Vec<u32>),
    /// Larger than the whole store: not stored.
    TooLarge,
    /// The host refused a write.
    Failed(Status),
}

/// Stores `value` under `key` until `expires` (unix seconds, 0 = until evicted).
pub fn put(
    host: &dyn Host,
    bounds: Bounds,
    key: &str,
    value: &[u8],
    expires: u64,
    now: u64,
) -> Put {
    let candidates: Vec<u32> = slots_of(key, bounds.entries).collect();
    let free = candidates.iter().copied().find(|slot| {
        let (bytes, _) = host.shared_data(&slot_key(*slot));
        match bytes.as_deref().and_then(parse_slot) {
            None => true,
            Some((stored, exp, _)) => stored == key.as_bytes() || !live(exp, now),
        }
    });
    let Some(slot) = free.or_else(|| candidates.first().copied()) else {
        return Put::TooLarge;
    };
    let bytes = encode_slot(key, value, expires);
    if bytes.len() > bounds.bytes {
        return Put::TooLarge;
    }
    let size = bytes.len() as u32;
    if let Err(s) = host.set_shared_data(&slot_key(slot), &bytes, None) {
        return Put::Failed(s);
    }
    for _ in 0..RETRIES {
        let (current, cas) = host.shared_data(INDEX);
        let mut list = decode_index(current.as_deref().unwrap_or_default());
        list.retain(|(s, _)| *s != slot);
        list.push((slot, size));
        let mut total: usize = list.iter().map(|(_, n)| *n as usize).sum();
        let mut evicted = Vec::new();
        while list.len() > bounds.entries || total > bounds.bytes {
            let (s, n) = list.remove(0);
            total -= n as usize;
            evicted.push(s);
        }
        match host.set_shared_data(INDEX, &encode_index(&list), cas) {
            Ok(()) => {
                for s in &evicted {
                    let _ = host.set_shared_data(&slot_key(*s), b"", None);
                }
                return Put::Stored(evicted);
            }
            Err(Status::CasMismatch) => continue,
            Err(s) => return Put::Failed(s),
        }
    }
    Put::Failed(Status::CasMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::host::MockHost;

    const B: Bounds = Bounds {
        entries: 4,
        bytes: 4096,
    };

    #[test]
    fn entries_round_trip_and_expire() {
        let host = MockHost::default();
        assert_eq!(get(&host, B, "k", 10), None);
        assert_eq!(put(&host, B, "k", b"v", 0, 10), Put::Stored(vec![]));
        assert_eq!(get(&host, B, "k", 10).as_deref(), Some(&b"v"[..]));
        put(&host, B, "t", b"w", 20, 10);
        assert_eq!(get(&host, B, "t", 19).as_deref(), Some(&b"w"[..]));
        assert_eq!(get(&host, B, "t", 20), None);
    }

    #[test]
    fn bounded_in_entries_and_bytes_oldest_out_first() {
        let host = MockHost::default();
        let bounds = Bounds {
            entries: 64,
            bytes: 400,
        };
        let mut kept = Vec::new();
        for i in 0..40 {
            let key = format!("key-{i}");
            put(&host, bounds, &key, &[b'x'; 50], 0, 0);
            kept.push(key);
        }
        let index = decode_index(&host.shared_data(INDEX).0.unwrap());
        let total: u32 = index.iter().map(|(_, n)| n).sum();
        assert!(total <= 400 && !index.is_empty(), "{index:?}");
        // The newest is there; the oldest were evicted.
        assert!(get(&host, bounds, "key-39", 0).is_some());
        assert!(get(&host, bounds, "key-0", 0).is_none());
        // Entries: never more than the slots.
        let host = MockHost::default();
        for i in 0..100 {
            put(&host, B, &format!("k{i}"), b"v", 0, 0);
        }
        assert!(decode_index(&host.shared_data(INDEX).0.unwrap()).len() <= 4);
        assert!(get(&host, B, "k99", 0).is_some());
        assert_eq!(put(&host, B, "big", &[0; 5000], 0, 0), Put::TooLarge);
    }

    #[test]
    fn a_colliding_key_is_a_miss_not_a_wrong_answer() {
        let host = MockHost::default();
        // One entry: four slots; the index keeps one entry.
        let one = Bounds {
            entries: 1,
            bytes: 4096,
        };
        put(&host, one, "a", b"A", 0, 0);
        put(&host, one, "b", b"B", 0, 0);
        assert_eq!(get(&host, one, "a", 0), None);
        assert_eq!(get(&host, one, "b", 0).as_deref(), Some(&b"B"[..]));
        // Keys are bounded by the slots however many are put.
        for i in 0..50 {
            put(&host, one, &format!("k{i}"), b"v", 0, 0);
        }
        let slots = host
            .shared
            .borrow()
            .keys()
            .filter(|k| k.starts_with("ai-cache/slot/"))
            .count();
        assert!(slots <= 4, "{slots}");
    }

    #[test]
    fn a_store_holds_as_many_entries_as_it_is_sized_for() {
        let host = MockHost::default();
        let bounds = Bounds {
            entries: 1000,
            bytes: 1 << 20,
        };
        for i in 0..1000 {
            put(&host, bounds, &format!("key-{i}"), b"v", 0, 0);
        }
        let found = (0..1000)
            .filter(|i| get(&host, bounds, &format!("key-{i}"), 0).is_some())
            .count();
        assert_eq!(found, 1000);
    }
}
