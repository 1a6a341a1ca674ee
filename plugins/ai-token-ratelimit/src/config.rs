//! ai-token-ratelimit configuration, with Higress's keys.

use regex::Regex;
use sdk::config::{ConfigError, Validate};
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;

/// `token_per_second | token_per_minute | token_per_hour | token_per_day`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Threshold {
    /// Tokens per second.
    pub token_per_second: Option<u64>,
    /// Tokens per minute.
    pub token_per_minute: Option<u64>,
    /// Tokens per hour.
    pub token_per_hour: Option<u64>,
    /// Tokens per day.
    pub token_per_day: Option<u64>,
}

impl Threshold {
    /// (limit, window seconds), when exactly one is set.
    fn resolve(&self, at: &str) -> Result<(u64, u64), ConfigError> {
        let set: Vec<(u64, u64)> = [
            (self.token_per_second, 1),
            (self.token_per_minute, 60),
            (self.token_per_hour, 3600),
            (self.token_per_day, 86_400),
        ]
        .into_iter()
        .filter_map(|(v, w)| v.map(|v| (v, w)))
        .collect();
        match set.as_slice() {
            [one] => Ok(*one),
            [] => Err(ConfigError::new(
                at,
                "needs one of token_per_second, token_per_minute, token_per_hour, token_per_day",
            )),
            _ => Err(ConfigError::new(
                at,
                "set only one of token_per_second, token_per_minute, token_per_hour, token_per_day",
            )),
        }
    }
}

/// One `limit_keys` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitKey {
    /// Exact value, `regexp:<re>`, `*`, or for IPs an address or CIDR (a bare number is read
    /// as its text, as Higress does).
    #[serde(deserialize_with = "sdk::config::string_or_scalar")]
    pub key: String,
    /// The budget.
    #[serde(flatten)]
    pub threshold: Threshold,
}

/// One `rule_items` entry (Higress keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuleItem {
    pub limit_by_header: Option<String>,
    pub limit_by_param: Option<String>,
    pub limit_by_consumer: Option<String>,
    pub limit_by_cookie: Option<String>,
    pub limit_by_per_header: Option<String>,
    pub limit_by_per_param: Option<String>,
    pub limit_by_per_consumer: Option<String>,
    pub limit_by_per_cookie: Option<String>,
    pub limit_by_per_ip: Option<String>,
    pub limit_keys: Vec<LimitKey>,
}

/// Where the backend keeps the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Envoy shared data: exact across the workers of one Envoy.
    #[default]
    Local,
    /// Envoy's rate limit service API (Limitador, envoyproxy/ratelimit): cluster-wide.
    Rls,
}

/// `rls` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RlsConfig {
    /// Envoy cluster of the rate limit service (HTTP/2).
    pub cluster: String,
    /// Rate limit domain.
    pub domain: String,
    /// Timeout, ms.
    pub timeout: u64,
    /// Deny requests when the service fails (else they pass).
    pub failure_mode_deny: bool,
}

impl Default for RlsConfig {
    fn default() -> Self {
        RlsConfig {
            cluster: String::new(),
            domain: "ai-token-ratelimit".into(),
            timeout: 1000,
            failure_mode_deny: false,
        }
    }
}

/// The plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Rule name (counter namespace, metric label).
    pub rule_name: String,
    /// One budget for all requests.
    pub global_threshold: Option<Threshold>,
    /// Budgets by key; the first matching item wins.
    pub rule_items: Vec<RuleItem>,
    /// Status of a rejection.
    pub rejected_code: u32,
    /// Message of a rejection.
    pub rejected_msg: String,
    /// Header naming the consumer.
    pub consumer_header: String,
    /// Output tokens reserved when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// `local` or `rls`.
    pub backend: Backend,
    /// The rate limit service, for `backend: rls`.
    pub rls: Option<RlsConfig>,
    /// Higress's Redis block: refused with an explanation.
    pub redis: Option<Value>,
    /// Budgets count cost in micro-units of `price_table.currency` (`token_per_*` then read as
    /// micro-units) instead of tokens.
    pub limit_by_cost: bool,
    /// Prices per 1M tokens (`limit_by_cost`); the shipped defaults fill in.
    pub price_table: sdk::cost::PriceTable,
    /// Compiled rules.
    #[serde(skip)]
    pub compiled: Vec<Item>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            rule_name: String::new(),
            global_threshold: None,
            rule_items: Vec::new(),
            rejected_code: 429,
            rejected_msg: "Too many requests".into(),
            consumer_header: "x-mse-consumer".into(),
            default_max_tokens: 0,
            backend: Backend::Local,
            rls: None,
            redis: None,
            limit_by_cost: false,
            price_table: sdk::cost::PriceTable::default(),
            compiled: Vec::new(),
        }
    }
}

/// What a rule item reads from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header.
    Header(String),
    /// A query parameter.
    Param(String),
    /// The consumer header.
    Consumer,
    /// A cookie.
    Cookie(String),
    /// The client IP from a header (first address).
    IpHeader(String),
    /// The client IP of the connection.
    RemoteAddr,
    /// Every request (`global_threshold`).
    Global,
}

/// How a limit key matches a value.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal.
    Exact(String),
    /// Any value.
    Any,
    /// A regular expression.
    Regex(Regex),
    /// An IP network.
    Cidr(IpAddr, u8),
}

impl Matcher {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(v) => v == value,
            Matcher::Any => true,
            Matcher::Regex(re) => re.is_match(value),
            Matcher::Cidr(net, bits) => value
                .parse::<IpAddr>()
                .is_ok_and(|ip| in_network(ip, *net, *bits)),
        }
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            (u128::from(u32::from(a)), u128::from(u32::from(b)), 32u32)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32),
        _ => return false,
    };
    let bits = u32::from(bits).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (ip >> shift) == (net >> shift)
}

/// One compiled limit key.
#[derive(Debug, Clone)]
pub struct Key {
    /// How it matches.
    pub matcher: Matcher,
    /// Budget.
    pub limit: u64,
    /// Window, seconds.
    pub window: u64,
}

/// One compiled rule item.
#[derive(Debug, Clone)]
pub struct Item {
    /// What it reads.
    pub source: Source,
    /// A counter per distinct value (`limit_by_per_*`) or one per key.
    pub per_value: bool,
    /// Its keys.
    pub keys: Vec<Key>,
}

fn compile_key(k: &LimitKey, ip: bool, at: &str) -> Result<Key, ConfigError> {
    let (limit, window) = k.threshold.resolve(at)?;
    let matcher = if k.key == "*" {
        Matcher::Any
    } else if let Some(re) = k.key.strip_prefix("regexp:") {
        Matcher::Regex(
            Regex::new(re).map_err(|e| ConfigError::new(format!("{at}.key"), e.to_string()))?,
        )
    } else if ip {
        let (addr, bits) = match k.key.split_once('/') {
            Some((a, b)) => (
                a,
                b.parse::<u8>()
                    .map_err(|_| ConfigError::new(format!("{at}.key"), "bad prefix length"))?,
            ),
            None => (k.key.as_str(), 128),
        };
        let net: IpAddr = addr.parse().map_err(|_| {
            ConfigError::new(
                format!("{at}.key"),
                format!("`{}` is not an IP address or CIDR", k.key),
            )
        })?;
        Matcher::Cidr(net, bits)
    } else {
        Matcher::Exact(k.key.clone())
    };
    Ok(Key {
        matcher,
        limit,
        window,
    })
}

impl Validate for RateLimitConfig {
    fn warnings(&self) -> Vec<String> {
        match (&self.redis, self.backend) {
            (Some(_), Backend::Local) => vec![
                "`redis`: stock Envoy has no Redis host call, so these budgets are counted per Envoy (shared by its workers). For one budget across a fleet set `backend: rls` and an `rls` block pointing at a rate limit service backed by Redis (Limitador, envoyproxy/ratelimit)".to_string(),
            ],
            (Some(_), Backend::Rls) => vec![
                "`redis` is not used: budgets are counted by the rate limit service in `rls`".to_string(),
            ],
            _ => Vec::new(),
        }
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        self.price_table
            .validate()
            .map_err(|e| e.under("price_table"))?;
        if self.global_threshold.is_none()
            && self.rule_items.is_empty()
            && self.rule_name.is_empty()
        {
            // `{}`: nothing to limit (the plugin passes every request).
            return Ok(());
        }
        if self.rule_name.is_empty() {
            return Err(ConfigError::new("rule_name", "required"));
        }
        if self.backend == Backend::Rls && self.rls.as_ref().is_none_or(|r| r.cluster.is_empty()) {
            return Err(ConfigError::new(
                "rls.cluster",
                "required with `backend: rls`",
            ));
        }
        if !(200..600).contains(&self.rejected_code) {
            return Err(ConfigError::new("rejected_code", "must be an HTTP status"));
        }
        let mut compiled = Vec::new();
        if let Some(t) = &self.global_threshold {
            let (limit, window) = t.resolve("global_threshold")?;
            compiled.push(Item {
                source: Source::Global,
                per_value: false,
                keys: vec![Key {
                    matcher: Matcher::Any,
                    limit,
                    window,
                }],
            });
        }
        for (i, item) in self.rule_items.iter().enumerate() {
            let at = format!("rule_items[{i}]");
            let sources = [
                (&item.limit_by_header, false, "header"),
                (&item.limit_by_param, false, "param"),
                (&item.limit_by_consumer, false, "consumer"),
                (&item.limit_by_cookie, false, "cookie"),
                (&item.limit_by_per_header, true, "header"),
                (&item.limit_by_per_param, true, "param"),
                (&item.limit_by_per_consumer, true, "consumer"),
                (&item.limit_by_per_cookie, true, "cookie"),
                (&item.limit_by_per_ip, true, "ip"),
            ];
            let chosen: Vec<_> = sources.iter().filter(|(v, _, _)| v.is_some()).collect();
            let [(value, per_value, kind)] = chosen.as_slice() else {
                return Err(ConfigError::new(at, "needs exactly one limit_by_* key"));
            };
            let value: String = (*value).clone().unwrap_or_default();
            let source = match *kind {
                "header" => Source::Header(value.to_ascii_lowercase()),
                "param" => Source::Param(value),
                "consumer" => Source::Consumer,
                "cookie" => Source::Cookie(value),
                _ => match value.strip_prefix("from-header-") {
                    Some(h) => Source::IpHeader(h.to_ascii_lowercase()),
                    None if value == "from-remote-addr" => Source::RemoteAddr,
                    None => {
                        return Err(ConfigError::new(
                            format!("{at}.limit_by_per_ip"),
                            "use from-header-<name> or from-remote-addr",
                        ))
                    }
                },
            };
            if item.limit_keys.is_empty() {
                return Err(ConfigError::new(
                    format!("{at}.limit_keys"),
                    "must not be empty",
                ));
            }
            let ip = *kind == "ip";
            let keys = item
                .limit_keys
                .iter()
                .enumerate()
                .map(|(j, k)| compile_key(k, ip, &format!("{at}.limit_keys[{j}]")))
                .collect::<Result<_, _>>()?;
            compiled.push(Item {
                source,
                per_value: *per_value,
                keys,
            });
        }
        if compiled.is_empty() {
            return Err(ConfigError::new(
                "rule_items",
                "set global_threshold or rule_items",
            ));
        }
        self.compiled = compiled;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::config::{RuleMode, RuleSet};

    fn parse(json: &str) -> Result<std::rc::Rc<RateLimitConfig>, ConfigError> {
        RuleSet::<RateLimitConfig>::parse(json.as_bytes(), RuleMode::Independent)
            .map(|s| s.global.unwrap())
    }

    #[test]
    fn higress_config_compiles() {
        let c = parse(r#"{"rule_name":"r","rule_items":[
            {"limit_by_per_header":"x-user","limit_keys":[{"key":"regexp:^vip-","token_per_minute":5000},{"key":"*","token_per_minute":100}]},
            {"limit_by_per_ip":"from-remote-addr","limit_keys":[{"key":"10.0.0.0/8","token_per_hour":9}]}]}"#)
        .unwrap();
        assert_eq!(c.compiled.len(), 2);
        assert!(c.compiled[0].per_value);
        assert!(c.compiled[1].keys[0].matcher.matches("10.1.2.3"));
        assert!(!c.compiled[1].keys[0].matcher.matches("11.1.2.3"));
        assert_eq!(c.compiled[1].keys[0].window, 3600);
    }

    #[test]
    fn higress_examples_with_a_redis_block_load_with_a_warning() {
        let examples = [
            r#"{"rule_name": "routeA-global-limit-rule", "global_threshold": {"token_per_minute": 1000},
                "redis": {"service_name": "redis.static"}}"#,
            r#"{"rule_name": "default_rule", "rule_items": [{"limit_by_param": "apikey", "limit_keys": [
                {"key": "9a342114-ba8a-11ec-b1bf-00163e1250b5", "token_per_minute": 10},
                {"key": "*", "token_per_hour": 1000}]}],
                "redis": {"service_name": "redis.static", "service_port": 6379, "timeout": 1000}}"#,
        ];
        for example in examples {
            let set = RuleSet::<RateLimitConfig>::parse(example.as_bytes(), RuleMode::Independent)
                .unwrap();
            assert!(
                set.warnings
                    .iter()
                    .any(|w| w.contains("`redis`") && w.contains("per Envoy")),
                "{:?}",
                set.warnings
            );
        }
    }

    #[test]
    fn errors_name_fields() {
        let cases = [
            (
                r#"{"global_threshold":{"token_per_minute":1}}"#,
                "rule_name",
            ),
            (
                r#"{"rule_name":"r","global_threshold":{}}"#,
                "global_threshold",
            ),
            (r#"{"rule_name":"r"}"#, "rule_items"),
            (
                r#"{"rule_name":"r","rule_items":[{"limit_keys":[]}]}"#,
                "rule_items[0]",
            ),
            (
                r#"{"rule_name":"r","rule_items":[{"limit_by_per_ip":"from-remote-addr","limit_keys":[{"key":"nope","token_per_day":1}]}]}"#,
                "rule_items[0].limit_keys[0].key",
            ),
            (
                r#"{"rule_name":"r","backend":"rls","global_threshold":{"token_per_minute":1}}"#,
                "rls.cluster",
            ),
        ];
        for (json, path) in cases {
            assert_eq!(parse(json).unwrap_err().path, path, "{json}");
        }
    }

    #[test]
    fn empty_config_limits_nothing() {
        assert!(parse("{}").unwrap().compiled.is_empty());
    }

    #[test]
    fn networks() {
        let v6: IpAddr = "2001:db8::".parse().unwrap();
        assert!(in_network("2001:db8::1".parse().unwrap(), v6, 32));
        assert!(!in_network("2001:db9::1".parse().unwrap(), v6, 32));
        assert!(!in_network("10.0.0.1".parse().unwrap(), v6, 32));
    }
}
