//! ai-quota: per-consumer balances (tokens, or cost in micro-units of a currency) with Higress's
//! admin API. A request is reserved from its consumer's balance before it leaves and settled with
//! the real usage when the answer ends; balances live in Envoy shared data (one Envoy) or in Redis
//! behind webdis (a fleet).

pub mod config;
pub mod stage;
pub mod store;

use config::QuotaConfig;
use sdk::config::{object_from_bytes, ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiQuota;

impl Plugin for AiQuota {
    type Config = RuleSet<QuotaConfig>;
    const NAME: &'static str = "ai-quota";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        // An empty config turns the plugin off (the shipped default).
        if object_from_bytes(bytes)?.is_empty() {
            let off = RuleSet {
                global: None,
                rules: Vec::new(),
                warnings: Vec::new(),
            };
            return Ok((off, Vec::new()));
        }
        let mut set = RuleSet::parse(bytes, RuleMode::Independent)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::QuotaStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<AiQuota>();
}}
