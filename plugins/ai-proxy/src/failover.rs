//! `failover`: keys that keep failing are taken out for every worker and health-checked back in.
//!
//! Health lives in Envoy shared data (one JSON record per provider, updated with
//! compare-and-swap), so a key taken out on one worker is out on all. Health checks run from the
//! root context's tick: a tiny chat request per unhealthy key to the cluster the provider's
//! traffic uses.

use crate::providers::Provider;
use regex::Regex;
use sdk::config::ConfigError;
use sdk::host::{Host, LogLevel};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `failover` as configured (Higress keys and defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FailoverConfig {
    /// Turns failover on.
    pub enabled: bool,
    /// Failures in a row that take a key out.
    pub failure_threshold: u32,
    /// Successful health checks that bring it back.
    pub success_threshold: u32,
    /// Milliseconds between health checks.
    pub health_check_interval: u64,
    /// Health check timeout, milliseconds.
    pub health_check_timeout: u64,
    /// Model used by health checks.
    pub health_check_model: String,
    /// Statuses (regular expressions) that count as failures.
    pub failover_on_status: Vec<String>,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            enabled: false,
            failure_threshold: 3,
            success_threshold: 1,
            health_check_interval: 5000,
            health_check_timeout: 5000,
            health_check_model: String::new(),
            failover_on_status: vec!["4.*".into(), "5.*".into()],
        }
    }
}

/// Compiled failover settings.
#[derive(Debug, Clone)]
pub struct Failover {
    /// Settings.
    pub config: FailoverConfig,
    /// The statuses that count as failures.
    pub statuses: Statuses,
}

impl Failover {
    /// Validates and compiles; `None` when disabled.
    pub fn compile(c: &FailoverConfig) -> Result<Option<Failover>, ConfigError> {
        if !c.enabled {
            return Ok(None);
        }
        if c.health_check_model.is_empty() {
            return Err(ConfigError::new(
                "failover.healthCheckModel",
                "required when failover is enabled",
            ));
        }
        if c.failure_threshold == 0 || c.success_threshold == 0 {
            return Err(ConfigError::new(
                "failover",
                "thresholds must be at least 1",
            ));
        }
        Ok(Some(Failover {
            config: c.clone(),
            statuses: Statuses::compile(&c.failover_on_status, "failover.failoverOnStatus")?,
        }))
    }
}

/// HTTP status patterns (`"429"`, `"5.*"`), anchored.
#[derive(Debug, Clone, Default)]
pub struct Statuses(Vec<Regex>);

impl Statuses {
    /// Compiles `list`; errors name `field[i]`.
    pub fn compile(list: &[String], field: &str) -> Result<Statuses, ConfigError> {
        let compiled = list.iter().enumerate().map(|(i, p)| {
            Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| ConfigError::new(format!("{field}[{i}]"), e.to_string()))
        });
        Ok(Statuses(compiled.collect::<Result<_, _>>()?))
    }

    /// Whether `status` matches a pattern.
    pub fn matches(&self, status: u32) -> bool {
        let s = status.to_string();
        self.0.iter().any(|re| re.is_match(&s))
    }
}

/// `retryOnFailure` as configured (Higress keys and defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryConfig {
    /// Turns retries on.
    pub enabled: bool,
    /// Retries per request.
    pub max_retries: u32,
    /// Timeout of one retry, milliseconds.
    pub retry_timeout: u64,
    /// Statuses (regular expressions) that are retried.
    pub retry_on_status: Vec<String>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: false,
            max_retries: 1,
            retry_timeout: 30_000,
            retry_on_status: vec!["4.*".into(), "5.*".into()],
        }
    }
}

/// Compiled retry settings.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Retries per request.
    pub max_retries: u32,
    /// Timeout of one retry.
    pub timeout: Duration,
    /// The statuses that are retried.
    pub statuses: Statuses,
}

impl Retry {
    /// Validates and compiles; `None` when disabled.
    pub fn compile(c: &RetryConfig) -> Result<Option<Retry>, ConfigError> {
        if !c.enabled {
            return Ok(None);
        }
        Ok(Some(Retry {
            max_retries: c.max_retries,
            timeout: Duration::from_millis(c.retry_timeout),
            statuses: Statuses::compile(&c.retry_on_status, "retryOnFailure.retryOnStatus")?,
        }))
    }
}

/// Per-key health shared by all workers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Failures in a row.
    pub fail: Vec<u32>,
    /// Taken out.
    pub down: Vec<bool>,
    /// Successful health checks since taken out.
    pub ok: Vec<u32>,
}

impl Health {
    fn sized(mut self, n: usize) -> Health {
        self.fail.resize(n, 0);
        self.down.resize(n, false);
        self.ok.resize(n, 0);
        self
    }
}

/// The shared health record of `p`'s keys.
pub fn load(host: &dyn Host, p: &Provider) -> Health {
    sdk::shared::load::<Health>(host, &p.health_key).sized(p.tokens.len())
}

/// Applies `change` to the shared record (true: write it).
fn update(host: &dyn Host, p: &Provider, mut change: impl FnMut(&mut Health) -> bool) {
    let n = p.tokens.len();
    sdk::shared::update_json(host, &p.health_key, |h: &mut Health| {
        *h = std::mem::take(h).sized(n);
        change(h)
    });
}

/// The key index for the next request: round robin over healthy keys (all keys if none is).
pub fn choose(host: &dyn Host, p: &Provider) -> Option<usize> {
    let n = p.tokens.len();
    if n == 0 {
        return None;
    }
    if p.failover.is_none() {
        return p.next_token_index();
    }
    let health = load(host, p);
    let first = p.next_token_index()?;
    (0..n)
        .map(|step| (first + step) % n)
        .find(|&i| !health.down.get(i).copied().unwrap_or(false))
        .or(Some(first))
}

/// Counts an upstream answer for key `index`.
pub fn report(host: &dyn Host, p: &Provider, index: usize, status: u32) {
    let Some(f) = &p.failover else { return };
    if f.statuses.matches(status) {
        let threshold = f.config.failure_threshold;
        update(host, p, |h| {
            let Some(fail) = h.fail.get_mut(index) else {
                return false;
            };
            *fail = fail.saturating_add(1);
            if *fail >= threshold && !h.down[index] {
                h.down[index] = true;
                h.ok[index] = 0;
                host.log(
                    LogLevel::Warn,
                    &format!("[ai-proxy] key #{index} of provider `{}` taken out after {} failures (last status {status})", p.name(), *fail),
                );
            }
            true
        });
    } else if (200..300).contains(&status) {
        update(host, p, |h| match h.fail.get_mut(index) {
            Some(fail) if *fail > 0 && !h.down[index] => {
                *fail = 0;
                true
            }
            _ => false,
        });
    }
}

/// Sends one health check per unhealthy key (root context, on tick).
pub fn health_check(host: &dyn Host, p: &Provider) {
    let Some(f) = &p.failover else { return };
    let Some(cluster) = p.cluster.borrow().clone() else {
        return;
    };
    let health = load(host, p);
    for (index, down) in health.down.iter().enumerate() {
        if !down || p.inflight.borrow().values().any(|&i| i == index) {
            continue;
        }
        let Some(token) = p.tokens.get(index) else {
            continue;
        };
        // A one-token chat request, translated for the provider like any client request.
        let ping = serde_json::json!({"model": f.config.health_check_model, "max_tokens": 1,
            "messages": [{"role": "user", "content": "ping"}]});
        let Ok(chat) = serde_json::from_value(ping) else {
            continue;
        };
        let request = crate::native::callout_request(
            host,
            p,
            sdk::pipeline::RequestBody::Chat(chat),
            sdk::api::ApiKind::ChatCompletions,
            "/v1/chat/completions",
            Some(token.as_str()),
        );
        let Ok((mut owned, body)) = request else {
            continue;
        };
        owned.push(("x-ai-gateway-health-check".to_string(), "1".to_string()));
        let headers: Vec<(&str, &str)> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let timeout = Duration::from_millis(f.config.health_check_timeout);
        match host.dispatch_http_call(&cluster, &headers, Some(&body), timeout) {
            Ok(call) => {
                p.inflight.borrow_mut().insert(call, index);
            }
            Err(e) => host.log(
                LogLevel::Warn,
                &format!("[ai-proxy] health check for `{}` not sent: {e:?}", p.name()),
            ),
        }
    }
}

/// Handles a health check answer; returns false if `call` was not one of this provider's.
pub fn on_health_response(host: &dyn Host, p: &Provider, call: u32) -> bool {
    let Some(index) = p.inflight.borrow_mut().remove(&call) else {
        return false;
    };
    let Some(f) = &p.failover else { return true };
    let ok = host
        .http_call_response_header(":status")
        .and_then(|s| s.parse::<u32>().ok())
        .is_some_and(|s| (200..300).contains(&s));
    let threshold = f.config.success_threshold;
    update(host, p, |h| {
        if !h.down.get(index).copied().unwrap_or(false) {
            return false;
        }
        if !ok {
            h.ok[index] = 0;
            return true;
        }
        h.ok[index] += 1;
        if h.ok[index] >= threshold {
            h.down[index] = false;
            h.fail[index] = 0;
            h.ok[index] = 0;
            host.log(
                LogLevel::Info,
                &format!(
                    "[ai-proxy] key #{index} of provider `{}` restored by health checks",
                    p.name()
                ),
            );
        }
        true
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;
    use crate::providers::resolve;
    use sdk::host::MockHost;

    fn provider() -> Provider {
        let c: ProviderConfig = serde_json::from_value(serde_json::json!({
            "type": "openai", "apiTokens": ["k0", "k1"],
            "failover": {"enabled": true, "failureThreshold": 2, "successThreshold": 2,
                         "healthCheckModel": "hc", "failoverOnStatus": ["429", "5.."]}}))
        .unwrap();
        resolve(&c).unwrap()
    }

    #[test]
    fn failing_key_is_taken_out_and_checked_back_in() {
        let host = MockHost::default();
        let p = provider();
        *p.cluster.borrow_mut() = Some("llm".into());
        report(&host, &p, 0, 429);
        assert!(!load(&host, &p).down[0]);
        report(&host, &p, 0, 400); // not a failover status
        report(&host, &p, 0, 503);
        assert!(load(&host, &p).down[0]);
        for _ in 0..4 {
            assert_eq!(choose(&host, &p), Some(1));
        }
        health_check(&host, &p);
        health_check(&host, &p); // one check in flight per key
        assert_eq!(host.callouts.borrow().len(), 1);
        let call = host.callouts.borrow()[0].clone();
        assert_eq!(call.cluster, "llm");
        assert!(call
            .headers
            .contains(&("authorization".into(), "Bearer k0".into())));
        *host.call_response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
        assert!(on_health_response(&host, &p, 1));
        assert!(load(&host, &p).down[0], "needs two successes");
        health_check(&host, &p);
        assert!(on_health_response(&host, &p, 2));
        assert!(!load(&host, &p).down[0]);
        let picks: Vec<_> = (0..4).filter_map(|_| choose(&host, &p)).collect();
        assert!(picks.contains(&0) && picks.contains(&1));
        assert!(!on_health_response(&host, &p, 99));
    }

    #[test]
    fn success_resets_the_failure_count() {
        let host = MockHost::default();
        let p = provider();
        report(&host, &p, 1, 500);
        report(&host, &p, 1, 200);
        report(&host, &p, 1, 500);
        assert!(!load(&host, &p).down[1]);
    }

    #[test]
    fn config_needs_a_model() {
        let c = FailoverConfig {
            enabled: true,
            ..FailoverConfig::default()
        };
        assert_eq!(
            Failover::compile(&c).unwrap_err().path,
            "failover.healthCheckModel"
        );
    }
}
