//! Where balances live: this Envoy's shared data (compare-and-swap), or Redis behind webdis
//! (`GET /<COMMAND>/<key>/<n>` → `{"<COMMAND>": n}`), with keys laid out as Higress does.

use sdk::host::{Host, Status};
use serde_json::Value;

/// Shared-data key of a balance (one namespace per plugin).
fn local_key(key: &str) -> String {
    format!("ai-quota/{key}")
}

/// A balance in shared data (0 when unset).
pub fn local_balance(host: &dyn Host, key: &str) -> i64 {
    read(host, &local_key(key)).0
}

fn read(host: &dyn Host, key: &str) -> (i64, Option<u32>) {
    let (bytes, cas) = host.shared_data(key);
    let n = bytes
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (n, cas)
}

/// Applies `f` to a balance atomically (CAS loop); `f` returns the new balance or refuses with
/// an error value. Returns the new balance.
fn update<E>(
    host: &dyn Host,
    key: &str,
    mut f: impl FnMut(i64) -> Result<i64, E>,
    busy: E,
) -> Result<i64, E> {
    let key = local_key(key);
    for _ in 0..64 {
        let (current, cas) = read(host, &key);
        let next = f(current)?;
        match host.set_shared_data(&key, next.to_string().as_bytes(), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return Ok(next),
        }
    }
    Err(busy)
}

/// Sets a balance.
pub fn local_set(host: &dyn Host, key: &str, value: i64) {
    let _ = update::<()>(host, key, |_| Ok(value), ());
}

/// Adds `delta` (may be negative) to a balance; returns the new one.
pub fn local_add(host: &dyn Host, key: &str, delta: i64) -> i64 {
    update::<()>(host, key, |b| Ok(b.saturating_add(delta)), ()).unwrap_or(0)
}

/// Takes `amount` from a balance when it covers it; `Err` carries the balance that did not.
pub fn local_reserve(host: &dyn Host, key: &str, amount: i64) -> Result<i64, i64> {
    update(
        host,
        key,
        |balance| {
            let next = balance.saturating_sub(amount);
            if refused(balance, next) {
                Err(balance)
            } else {
                Ok(next)
            }
        },
        0,
    )
}

/// Whether a reservation that took a balance from `before` to `after` overdraws it: the balance
/// must be positive and cover the whole estimate.
pub fn refused(before: i64, after: i64) -> bool {
    before <= 0 || after < 0
}

/// A webdis command path: `[/<db>]/<COMMAND>/<key>[/<n>]`, the key percent-encoded so `/` and
/// `.` in consumer names stay inside the argument.
pub fn webdis_path(database: u32, command: &str, key: &str, arg: Option<i64>) -> String {
    let mut path = String::new();
    if database != 0 {
        path.push_str(&format!("/{database}"));
    }
    path.push('/');
    path.push_str(command);
    path.push('/');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'@' | b'~') {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    if let Some(n) = arg {
        path.push_str(&format!("/{n}"));
    }
    path
}

/// Reads webdis's answer to `command`: an integer (INCRBY/DECRBY), a string holding one or null
/// (GET; null is 0), or `[true, "OK"]` (SET, read as 0). None for an error or anything else.
pub fn webdis_integer(body: &[u8], command: &str) -> Option<i64> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    match doc.get(command)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Null => Some(0),
        Value::Array(a) if a.first() == Some(&Value::Bool(true)) => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::host::MockHost;

    #[test]
    fn local_balances() {
        let host = MockHost::default();
        assert_eq!(local_balance(&host, "q:alice"), 0);
        assert_eq!(local_reserve(&host, "q:alice", 0), Err(0));
        local_set(&host, "q:alice", 100);
        assert_eq!(local_reserve(&host, "q:alice", 60), Ok(40));
        assert_eq!(local_reserve(&host, "q:alice", 41), Err(40));
        assert_eq!(local_add(&host, "q:alice", 20), 60);
        assert_eq!(local_add(&host, "q:alice", -70), -10);
        assert_eq!(local_reserve(&host, "q:alice", 0), Err(-10));
        assert_eq!(local_balance(&host, "q:bob"), 0);
    }

    #[test]
    fn webdis_paths_and_answers() {
        assert_eq!(
            webdis_path(0, "DECRBY", "chat_quota:alice", Some(30)),
            "/DECRBY/chat_quota:alice/30"
        );
        assert_eq!(
            webdis_path(2, "INCRBY", "chat_quota:a/b.c", Some(-5)),
            "/2/INCRBY/chat_quota:a%2Fb%2Ec/-5"
        );
        assert_eq!(webdis_path(0, "GET", "k", None), "/GET/k");
        assert_eq!(webdis_integer(br#"{"DECRBY":-5}"#, "DECRBY"), Some(-5));
        assert_eq!(webdis_integer(br#"{"GET":"41"}"#, "GET"), Some(41));
        assert_eq!(webdis_integer(br#"{"GET":null}"#, "GET"), Some(0));
        assert_eq!(webdis_integer(br#"{"SET":[true,"OK"]}"#, "SET"), Some(0));
        assert_eq!(
            webdis_integer(
                br#"{"INCRBY":[false,"ERR value is not an integer"]}"#,
                "INCRBY"
            ),
            None
        );
        assert_eq!(webdis_integer(b"<html>", "GET"), None);
        assert!(refused(0, 0) && refused(10, -1) && !refused(10, 0));
    }
}
