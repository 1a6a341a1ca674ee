//! mcp-server: REST APIs as MCP tools, served by the gateway over Streamable HTTP.
//!
//! Higress `mcp-server` REST config (`server`, `tools`, `allowTools`) plus per-consumer tool
//! access; both the session profile (2025-03-26, 2025-06-18) and the stateless 2026-07-28
//! profile. The tools are the sdk's tool layer ([`sdk::tools`]); calls go out through Envoy
//! clusters and every answer is a local reply (the request never reaches an upstream).

pub mod config;
pub mod core;
pub mod stage;

use config::McpConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct McpServer;

impl Plugin for McpServer {
    type Config = RuleSet<McpConfig>;
    const NAME: &'static str = "mcp-server";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut set = RuleSet::parse(bytes, RuleMode::Independent)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::McpStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<McpServer>();
}}
