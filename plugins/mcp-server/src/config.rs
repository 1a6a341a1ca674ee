//! mcp-server configuration: Higress's `server`, `tools`, `allowTools`, and per-consumer access.

use sdk::config::{ConfigError, Validate};
use sdk::tools::{RestTool, ServerConfig, ToolSet};
use serde::Deserialize;

/// Tool access of one consumer.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerAccess {
    /// Consumer name (the value of the consumer header).
    pub name: String,
    /// Only these tools (when set).
    #[serde(default)]
    pub allow_tools: Option<Vec<String>>,
    /// Never these tools.
    #[serde(default)]
    pub deny_tools: Vec<String>,
}

/// One MCP server (a `_rules_` entry or the global config).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct McpConfig {
    /// `server`: name, `type: rest`, `config`, `version`; absent means the plugin is off.
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// REST tools.
    #[serde(default)]
    pub tools: Vec<RestTool>,
    /// Only these tools are listed and callable (Higress's whitelist).
    #[serde(default)]
    pub allow_tools: Option<Vec<String>>,
    /// Per-consumer allow/deny lists; consumers not listed get `defaultConsumerAccess`.
    #[serde(default)]
    pub consumers: Vec<ConsumerAccess>,
    /// Access of consumers not listed in `consumers` (and of requests without one): `allow`
    /// (default) or `deny`.
    #[serde(default)]
    pub default_consumer_access: Option<String>,
    /// Browser origins (`https://app.example.com`) allowed besides the gateway's own; `*` allows
    /// any. Requests without `Origin` (non-browser clients) are not affected.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// The trusted header naming the consumer.
    #[serde(default = "consumer_header", rename = "consumer_header")]
    pub consumer_header: String,
    /// The compiled tools.
    #[serde(skip)]
    pub toolset: ToolSet,
}

fn consumer_header() -> String {
    "x-mse-consumer".into()
}

impl McpConfig {
    /// Whether a request with this `Origin` to `authority` may be served (DNS-rebinding
    /// protection, as Streamable HTTP asks of servers).
    pub fn origin_allowed(&self, origin: &str, authority: &str) -> bool {
        let host = origin.split_once("://").map_or(origin, |(_, h)| h);
        host.eq_ignore_ascii_case(authority)
            || self
                .allow_origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// Whether `consumer` may see and call `tool`.
    pub fn allowed(&self, consumer: Option<&str>, tool: &str) -> bool {
        let owned =
            |list: &Option<Vec<String>>| list.as_ref().is_none_or(|l| l.iter().any(|t| t == tool));
        if !owned(&self.allow_tools) {
            return false;
        }
        match consumer.and_then(|c| self.consumers.iter().find(|a| a.name == c)) {
            Some(access) => {
                owned(&access.allow_tools) && !access.deny_tools.iter().any(|t| t == tool)
            }
            None => self.default_consumer_access.as_deref() != Some("deny"),
        }
    }
}

impl Validate for McpConfig {
    fn warnings(&self) -> Vec<String> {
        self.toolset.warnings()
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let Some(server) = &self.server else {
            if !self.tools.is_empty() {
                return Err(ConfigError::new(
                    "server",
                    "tools need a `server` (name, type: rest)",
                ));
            }
            return Ok(());
        };
        if server.name.is_empty() {
            return Err(ConfigError::new("server.name", "must not be empty"));
        }
        self.toolset = ToolSet::new(server.clone(), std::mem::take(&mut self.tools))?;
        if let Some(mode) = &self.default_consumer_access {
            if mode != "allow" && mode != "deny" {
                return Err(ConfigError::new(
                    "defaultConsumerAccess",
                    "must be `allow` or `deny`",
                ));
            }
        }
        let known = |name: &str| self.toolset.get(name).is_some();
        for (i, c) in self.consumers.iter().enumerate() {
            if c.name.is_empty() {
                return Err(ConfigError::new(
                    format!("consumers[{i}].name"),
                    "must not be empty",
                ));
            }
            let lists = c.allow_tools.iter().flatten().map(|t| ("allowTools", t));
            for (key, t) in lists.chain(c.deny_tools.iter().map(|t| ("denyTools", t))) {
                if !known(t) {
                    return Err(ConfigError::new(
                        format!("consumers[{i}].{key}"),
                        format!("names no configured tool `{t}`"),
                    ));
                }
            }
        }
        for t in self.allow_tools.iter().flatten() {
            if !known(t) {
                return Err(ConfigError::new(
                    "allowTools",
                    format!("names no configured tool `{t}`"),
                ));
            }
        }
        Ok(())
    }
}
