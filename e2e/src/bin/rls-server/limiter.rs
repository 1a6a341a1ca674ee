//! Fixed-window counters in Redis, checked and updated atomically.
//!
//! Each limited descriptor is one counter: a Redis key named by the request's
//! domain, the window and the descriptor's entries (not the max, so a changed
//! max keeps counting in the running window). A window starts with its first
//! hit and lasts `seconds` (the key's TTL), like Limitador's. One Lua script
//! per call checks every counter of the request and, only when all have room,
//! adds the hits to all of them: servers sharing a Redis share one budget, and
//! concurrent calls cannot overshoot it.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tonic::Status;

use crate::descriptor::{self, Limited, Outcome};
use crate::proto::{RateLimitRequest, RateLimitResponse};

/// Redis timeouts: a slow Redis fails the call (Envoy then applies its
/// `failure_mode_deny`) instead of holding it.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: the counters. ARGV: hits, then `max`, `window seconds` per counter.
/// Returns `admitted` (1 or 0), then per counter its value (after the hits
/// when admitted) and its TTL in milliseconds. A key listed twice takes the
/// hits twice, and is checked for both.
const CHECK_AND_UPDATE: &str = r"
local hits = tonumber(ARGV[1])
local values, ttls, pending = {}, {}, {}
local admitted = 1
for i, key in ipairs(KEYS) do
  values[i] = tonumber(redis.call('GET', key) or '0')
  ttls[i] = redis.call('PTTL', key)
  pending[key] = (pending[key] or 0) + hits
  if values[i] + pending[key] > tonumber(ARGV[2 * i]) then
    admitted = 0
  end
end
if admitted == 1 then
  for i, key in ipairs(KEYS) do
    values[i] = redis.call('INCRBY', key, hits)
    if redis.call('PTTL', key) < 0 then
      redis.call('EXPIRE', key, ARGV[2 * i + 1])
    end
    ttls[i] = redis.call('PTTL', key)
  end
end
local result = {admitted}
for i = 1, #KEYS do
  result[#result + 1] = values[i]
  result[#result + 1] = ttls[i]
end
return result
";

pub struct Limiter {
    conn: ConnectionManager,
    script: Script,
}

impl Limiter {
    /// Connects to Redis and loads the script, so that a missing or unfit
    /// Redis shows at start.
    pub async fn connect(url: &str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid Redis URL {url:?}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let script = Script::new(CHECK_AND_UPDATE);
        let connect = async {
            let mut conn = ConnectionManager::new_with_config(client, config).await?;
            script.prepare_invoke().load_async(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let conn = tokio::time::timeout(REDIS_TIMEOUT * 3, connect)
            .await
            .map_err(|_| format!("Redis at {url} did not answer"))?
            .map_err(|e| format!("cannot reach Redis at {url}: {e}"))?;
        Ok(Self { conn, script })
    }

    /// Answers one `ShouldRateLimit` call.
    pub async fn should_rate_limit(
        &self,
        request: &RateLimitRequest,
    ) -> Result<RateLimitResponse, Status> {
        if request.domain.is_empty() {
            return Err(Status::invalid_argument(
                "rate limit domain must not be empty",
            ));
        }
        let hits = descriptor::hits(request.hits_addend);
        let descriptors = request
            .descriptors
            .iter()
            .map(descriptor::classify)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;

        let mut invocation = self.script.prepare_invoke();
        invocation.arg(hits);
        let mut owners = Vec::new();
        for (i, limited) in descriptors.iter().enumerate() {
            if let Some(limited) = limited {
                invocation
                    .key(counter_key(&request.domain, limited))
                    .arg(limited.spec.max)
                    .arg(limited.spec.seconds);
                owners.push(i);
            }
        }

        let mut outcomes = vec![None; descriptors.len()];
        let admitted = if owners.is_empty() {
            true
        } else {
            let mut conn = self.conn.clone();
            // After Redis restarts, the first call on the old connection fails
            // while the manager reconnects: try once more. (Should the old
            // connection drop after running the script, the hits count twice.)
            let reply: Vec<i64> = match invocation.invoke_async(&mut conn).await {
                Err(e) if e.is_connection_dropped() => invocation.invoke_async(&mut conn).await,
                reply => reply,
            }
            .map_err(redis_status)?;
            let (admitted, counters) = reply
                .split_first()
                .filter(|(_, counters)| counters.len() == 2 * owners.len())
                .ok_or_else(|| Status::internal("unexpected reply from the Redis script"))?;
            for (owner, counter) in owners.iter().zip(counters.chunks_exact(2)) {
                let limited = descriptors[*owner].as_ref();
                let max = limited.map_or(0, |l| l.spec.max);
                let window = limited.map_or(0, |l| l.spec.seconds);
                outcomes[*owner] = Some(outcome(max, window, counter[0], counter[1]));
            }
            *admitted == 1
        };
        Ok(descriptor::build_response(
            &descriptors,
            &outcomes,
            hits,
            admitted,
        ))
    }
}

/// The Redis key of a descriptor's counter: domain, window and entries,
/// JSON-encoded so that no two descriptors share one by accident.
pub fn counter_key(domain: &str, limited: &Limited) -> String {
    let id: (&str, u64, &BTreeMap<String, String>) =
        (domain, limited.spec.seconds, &limited.entries);
    // Serializing strings and integers cannot fail.
    format!("rls:{}", serde_json::to_string(&id).unwrap_or_default())
}

/// A counter's remaining hits and time to reset from its value and TTL (ms;
/// negative when the key does not exist, i.e. the window has not started).
fn outcome(max: u64, window_seconds: u64, value: i64, ttl_ms: i64) -> Outcome {
    let value = u64::try_from(value).unwrap_or(0);
    let reset = match u64::try_from(ttl_ms) {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => Duration::from_secs(window_seconds),
    };
    Outcome {
        remaining: max.saturating_sub(value),
        reset,
    }
}

/// Redis trouble is `UNAVAILABLE`: Envoy's `failure_mode_deny` decides.
fn redis_status(e: redis::RedisError) -> Status {
    Status::unavailable(format!("Redis: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::LimitSpec;

    fn limited(seconds: u64, entries: &[(&str, &str)]) -> Limited {
        Limited {
            spec: LimitSpec { max: 5, seconds },
            entries: entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn keys_counters_by_domain_window_and_entries() {
        let key = counter_key("api", &limited(60, &[("user", "u1"), ("model", "m")]));
        assert_eq!(key, r#"rls:["api",60,{"model":"m","user":"u1"}]"#);
        assert_eq!(
            counter_key("api", &limited(60, &[])),
            r#"rls:["api",60,{}]"#
        );
        // The max is not part of the key; everything else is.
        let mut other_max = limited(60, &[("user", "u1"), ("model", "m")]);
        other_max.spec.max = 99;
        assert_eq!(counter_key("api", &other_max), key);
        let distinct = [
            counter_key("api2", &limited(60, &[("user", "u1"), ("model", "m")])),
            counter_key("api", &limited(61, &[("user", "u1"), ("model", "m")])),
            counter_key("api", &limited(60, &[("user", "u1")])),
            counter_key("api", &limited(60, &[("user", "u1"), ("model", "m2")])),
            // Separators inside values cannot forge another key.
            counter_key("api", &limited(60, &[("user", "u1\",\"model\":\"m")])),
        ];
        for other in distinct {
            assert_ne!(other, key);
        }
    }

    #[test]
    fn reads_counter_state() {
        let o = outcome(10, 60, 3, 41_250);
        assert_eq!(o.remaining, 7);
        assert_eq!(o.reset, Duration::from_millis(41_250));
        // Not started (no key): full window.
        let o = outcome(10, 60, 0, -2);
        assert_eq!((o.remaining, o.reset), (10, Duration::from_secs(60)));
        // Over the max (a smaller max sent mid-window): none left.
        assert_eq!(outcome(10, 60, 12, 1_000).remaining, 0);
    }
}
