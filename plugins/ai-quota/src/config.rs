//! ai-quota configuration: Higress's keys (`redis_key_prefix`, `admin_consumer`, `admin_path`,
//! `enable_path_suffixes`, `redis`) plus the ones a stock Envoy needs (see the README).

use sdk::config::{ConfigError, Validate};
use sdk::cost::PriceTable;
use serde::Deserialize;

/// The plugin configuration (global or one `_rules_` entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct QuotaConfig {
    /// Prefix of a consumer's balance key (`<prefix><consumer>`), as Higress lays it out in Redis.
    pub redis_key_prefix: String,
    /// The consumer allowed to call the admin API (required).
    pub admin_consumer: String,
    /// Suffix of the admin API's path (`<path><admin_path>`, `/refresh`, `/delta`).
    pub admin_path: String,
    /// Path suffixes of the requests that draw from balances.
    pub enable_path_suffixes: Vec<String>,
    /// The fleet store: Redis behind webdis (`service_name` is the Envoy cluster of webdis).
    /// Without it balances live in this Envoy's shared data and do not survive a restart.
    pub redis: Option<RedisConfig>,
    /// Header naming the consumer (set by Envoy's authentication filter, never by the client).
    pub consumer_header: String,
    /// Let requests without a consumer through undrawn instead of answering 401.
    pub allow_anonymous: bool,
    /// Output tokens reserved when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Status of a refusal for lack of balance.
    pub rejected_code: u32,
    /// Message of a refusal for lack of balance.
    pub rejected_msg: String,
    /// When the store cannot be reached: let requests through (true) or answer 503 (false).
    pub fail_open: bool,
    /// Balances count cost in micro-units of `price_table.currency` instead of tokens.
    pub limit_by_cost: bool,
    /// Prices per 1M tokens (`limit_by_cost`); the shipped defaults fill in.
    pub price_table: PriceTable,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            redis_key_prefix: "chat_quota:".into(),
            admin_consumer: String::new(),
            admin_path: "/quota".into(),
            enable_path_suffixes: vec![
                "/v1/chat/completions".into(),
                "/v1/messages".into(),
                "/v1/responses".into(),
            ],
            redis: None,
            consumer_header: "x-mse-consumer".into(),
            allow_anonymous: false,
            default_max_tokens: 0,
            rejected_code: 429,
            rejected_msg: "Request denied by ai quota check, No quota left".into(),
            fail_open: false,
            limit_by_cost: false,
            price_table: PriceTable::default(),
        }
    }
}

/// Higress's `redis` block, read as the address of webdis (an HTTP front to Redis).
#[derive(Debug, Clone, Deserialize)]
pub struct RedisConfig {
    /// Envoy cluster of webdis (required).
    pub service_name: String,
    /// Port, sent in `:authority` (default 80 for webdis behind a static cluster).
    #[serde(default)]
    pub service_port: Option<u16>,
    /// With `password`: HTTP basic auth for webdis's ACL.
    #[serde(default)]
    pub username: Option<String>,
    /// See `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// Call timeout in milliseconds (default 1000).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Redis database (webdis's `/<db>/` URL prefix).
    #[serde(default)]
    pub database: u32,
}

fn default_timeout() -> u64 {
    1000
}

impl Validate for QuotaConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.admin_consumer.trim().is_empty() {
            return Err(ConfigError::new("admin_consumer", "is required"));
        }
        if !self.admin_path.starts_with('/') || self.admin_path.len() < 2 {
            return Err(ConfigError::new(
                "admin_path",
                "must start with `/` and name a path",
            ));
        }
        if let Some(i) = self.enable_path_suffixes.iter().position(String::is_empty) {
            return Err(ConfigError::new(
                format!("enable_path_suffixes[{i}]"),
                "must not be empty",
            ));
        }
        if self.consumer_header.trim().is_empty() {
            return Err(ConfigError::new("consumer_header", "must not be empty"));
        }
        self.consumer_header = self.consumer_header.to_ascii_lowercase();
        if !(200..=599).contains(&self.rejected_code) {
            return Err(ConfigError::new("rejected_code", "must be an HTTP status"));
        }
        self.price_table
            .validate()
            .map_err(|e| e.under("price_table"))?;
        if let Some(redis) = &self.redis {
            if redis.service_name.trim().is_empty() {
                return Err(ConfigError::new("redis.service_name", "is required"));
            }
            if redis.timeout == 0 {
                return Err(ConfigError::new("redis.timeout", "must be at least 1 ms"));
            }
            if redis.username.is_some() != redis.password.is_some() {
                return Err(ConfigError::new(
                    "redis.password",
                    "username and password go together (webdis HTTP basic auth)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::config::{RuleMode, RuleSet};

    fn parse(json: &str) -> Result<RuleSet<QuotaConfig>, ConfigError> {
        RuleSet::parse(json.as_bytes(), RuleMode::Independent)
    }

    #[test]
    fn higress_defaults_and_keys() {
        let set = parse(r#"{"admin_consumer":"root"}"#).unwrap();
        let c = set.global.unwrap();
        assert_eq!(c.redis_key_prefix, "chat_quota:");
        assert_eq!(c.admin_path, "/quota");
        assert_eq!(c.enable_path_suffixes.len(), 3);
        assert!(c.redis.is_none());
        let set = parse(
            r#"{"admin_consumer":"root","redis":{"service_name":"webdis","service_port":7379,"timeout":2000}}"#,
        )
        .unwrap();
        let r = set.global.unwrap().redis.clone().unwrap();
        assert_eq!(
            (r.service_port, r.timeout, r.database),
            (Some(7379), 2000, 0)
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (json, path) in [
            (r#"{"admin_path":"/q"}"#, "admin_consumer"),
            (r#"{"admin_consumer":"a","admin_path":"q"}"#, "admin_path"),
            (
                r#"{"admin_consumer":"a","redis":{"service_name":""}}"#,
                "redis.service_name",
            ),
            (
                r#"{"admin_consumer":"a","redis":{"service_name":"w","timeout":0}}"#,
                "redis.timeout",
            ),
            (
                r#"{"admin_consumer":"a","enable_path_suffixes":["/x",""]}"#,
                "enable_path_suffixes[1]",
            ),
        ] {
            assert_eq!(parse(json).unwrap_err().path, path, "{json}");
        }
    }
}
