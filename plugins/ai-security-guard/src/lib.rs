//! ai-security-guard: prompts and answers checked by Alibaba Cloud content security
//! (`TextModerationPlus` or the AI guardrail `MultiModalGuard`), each call signed with the
//! AccessKey (RPC signature, HMAC-SHA1); streamed answers are checked window by window while
//! Envoy holds them and cut with an ending that says why.

pub mod config;
pub mod core;
pub mod stage;

use config::GuardConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiSecurityGuard;

impl Plugin for AiSecurityGuard {
    type Config = RuleSet<GuardConfig>;
    const NAME: &'static str = "ai-security-guard";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut set = RuleSet::parse(bytes, RuleMode::Override)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::GuardStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<AiSecurityGuard>();
}}
