//! ai-proxy: one OpenAI-style API in front of every provider.
//!
//! Higress-compatible config (`provider` / `providers` + `activeProviderId`, `type`,
//! `apiTokens`, `modelMapping`, …). The provider's host, path and key are set from the request
//! headers; the body is model-mapped and translated; answers are translated back, streams chunk
//! by chunk.

pub mod config;
pub mod mapping;
pub mod providers;
pub mod stage;
pub mod translate;

use config::ProxyConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiProxy;

impl Plugin for AiProxy {
    type Config = RuleSet<ProxyConfig>;
    const NAME: &'static str = "ai-proxy";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        // Higress's ai-proxy merges a rule's keys over the global config.
        let mut set = RuleSet::parse(bytes, RuleMode::Override)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::ProxyStage::new(config.clone()))]
    }
}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    sdk::shell::start::<AiProxy>();
}}
