//! ai-token-ratelimit: token budgets per consumer, header, parameter, cookie or IP, reserved
//! before the request and reconciled with the real usage after it; local (Envoy shared data) or
//! cluster-wide through Envoy's rate limit service API.

pub mod config;
pub mod local;
pub mod rls;
pub mod stage;

use config::RateLimitConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiTokenRatelimit;

impl Plugin for AiTokenRatelimit {
    type Config = RuleSet<RateLimitConfig>;
    const NAME: &'static str = "ai-token-ratelimit";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut set = RuleSet::parse(bytes, RuleMode::Independent)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::RateLimitStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<AiTokenRatelimit>();
}}
