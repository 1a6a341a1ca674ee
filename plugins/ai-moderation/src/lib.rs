//! ai-moderation: request and response checks with local deny rules and any service speaking
//! the OpenAI moderation API; streamed answers are checked in windows while Envoy holds them.

pub mod config;
pub mod core;
pub mod stage;

use config::ModerationConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiModeration;

impl Plugin for AiModeration {
    type Config = RuleSet<ModerationConfig>;
    const NAME: &'static str = "ai-moderation";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut set = RuleSet::parse(bytes, RuleMode::Override)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::ModerationStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<AiModeration>();
}}
