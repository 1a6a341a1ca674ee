//! Token counters in Envoy shared data: one record per counter (`<window start> <tokens>`),
//! updated with compare-and-swap, so every worker of one Envoy sees the same budget.

use sdk::host::{Host, Status};

/// A counter's state after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Tokens allowed per window.
    pub limit: u64,
    /// Tokens left in the window.
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset: u64,
    /// Start of the window (unix seconds).
    pub window_start: u64,
}

fn key(counter: &str) -> String {
    format!("ai-token-ratelimit.{counter}")
}

fn read(host: &dyn Host, key: &str) -> (u64, u64, Option<u32>) {
    let (bytes, cas) = host.shared_data(key);
    let text = bytes
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut parts = text
        .split_whitespace()
        .map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), cas)
}

/// Reserves `tokens` in the current window; `Err` (with the budget) when they do not fit.
pub fn reserve(
    host: &dyn Host,
    counter: &str,
    limit: u64,
    window: u64,
    now: u64,
    tokens: u64,
) -> Result<Budget, Budget> {
    let key = key(counter);
    let window = window.max(1);
    let current = now - now % window;
    for _ in 0..32 {
        let (start, used, cas) = read(host, &key);
        let used = if start == current { used } else { 0 };
        let budget = |used: u64| Budget {
            limit,
            remaining: limit.saturating_sub(used),
            reset: current + window - now,
            window_start: current,
        };
        // Full budget: refuse even a reservation of 0 (a stream that went over blocks the next).
        if used >= limit || used.saturating_add(tokens) > limit {
            return Err(budget(used));
        }
        let next = used + tokens;
        match host.set_shared_data(&key, format!("{current} {next}").as_bytes(), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return Ok(budget(next)),
        }
    }
    Err(Budget {
        limit,
        remaining: 0,
        reset: current + window - now,
        window_start: current,
    })
}

/// Charges (`delta` > 0) or gives back (`delta` < 0) tokens to the window they were reserved in;
/// a positive charge whose window is over lands in the current one.
pub fn adjust(
    host: &dyn Host,
    counter: &str,
    window: u64,
    window_start: u64,
    now: u64,
    delta: i64,
) {
    if delta == 0 {
        return;
    }
    let key = key(counter);
    let window = window.max(1);
    let current = now - now % window;
    for _ in 0..32 {
        let (start, used, cas) = read(host, &key);
        let (start, used) = if start == current {
            (start, used)
        } else {
            (current, 0)
        };
        if start != window_start && delta < 0 {
            return;
        }
        let next = if delta < 0 {
            used.saturating_sub(delta.unsigned_abs())
        } else {
            used.saturating_add(delta.unsigned_abs())
        };
        match host.set_shared_data(&key, format!("{start} {next}").as_bytes(), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::host::MockHost;

    #[test]
    fn reserve_adjust_and_windows() {
        let host = MockHost::default();
        let ok = reserve(&host, "c", 1000, 60, 120, 300).unwrap();
        assert_eq!((ok.remaining, ok.reset), (700, 60));
        adjust(&host, "c", 60, ok.window_start, 130, -100); // used less than reserved
        assert_eq!(
            reserve(&host, "c", 1000, 60, 131, 0).unwrap().remaining,
            800
        );
        assert!(reserve(&host, "c", 1000, 60, 140, 801).is_err());
        adjust(&host, "c", 60, ok.window_start, 150, 900); // a stream went over
        let err = reserve(&host, "c", 1000, 60, 151, 0).unwrap_err();
        assert_eq!((err.remaining, err.reset), (0, 29));
        // Next window: a fresh budget.
        assert_eq!(
            reserve(&host, "c", 1000, 60, 181, 10).unwrap().remaining,
            990
        );
    }
}
