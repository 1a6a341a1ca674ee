//! Values in Envoy shared data changed atomically across workers: read, change, write with
//! compare-and-swap, and again when another writer got in between.

use crate::host::{Host, Status};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How often a change is tried against other writers before giving up.
pub const TRIES: usize = 32;

/// Changes the value at `key`: `change` gets the current bytes (none when unset) and returns
/// the new bytes, or none to leave the value as it is. `Ok(true)` when a value was written.
pub fn update(
    host: &dyn Host,
    key: &str,
    mut change: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
) -> Result<bool, Status> {
    for _ in 0..TRIES {
        let (current, cas) = host.shared_data(key);
        let Some(next) = change(current.as_deref()) else {
            return Ok(false);
        };
        match host.set_shared_data(key, &next, cas) {
            Ok(()) => return Ok(true),
            Err(Status::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Status::CasMismatch)
}

/// The JSON record at `key`; the default when unset or unreadable.
pub fn load<T: DeserializeOwned + Default>(host: &dyn Host, key: &str) -> T {
    decode(host.shared_data(key).0.as_deref())
}

fn decode<T: DeserializeOwned + Default>(bytes: Option<&[u8]>) -> T {
    bytes
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default()
}

/// [`update`] for a JSON record: `change` edits it and says whether to write it. True when
/// written.
pub fn update_json<T: Serialize + DeserializeOwned + Default>(
    host: &dyn Host,
    key: &str,
    mut change: impl FnMut(&mut T) -> bool,
) -> bool {
    let written = update(host, key, |bytes| {
        let mut record = decode(bytes);
        if !change(&mut record) {
            return None;
        }
        serde_json::to_vec(&record).ok()
    });
    written.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MockHost;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Counter {
        n: u32,
    }

    #[test]
    fn json_records_change_in_place_and_unchanged_ones_are_not_written() {
        let host = MockHost::default();
        assert_eq!(load::<Counter>(&host, "k"), Counter::default());
        for _ in 0..3 {
            assert!(update_json(&host, "k", |c: &mut Counter| {
                c.n += 1;
                true
            }));
        }
        assert_eq!(load::<Counter>(&host, "k"), Counter { n: 3 });
        assert!(!update_json(&host, "k", |_: &mut Counter| false));
        assert_eq!(
            update(&host, "raw", |b| Some(
                [b.unwrap_or_default(), b"x"].concat()
            )),
            Ok(true)
        );
        assert_eq!(host.shared_data("raw").0.as_deref(), Some(&b"x"[..]));
    }
}
