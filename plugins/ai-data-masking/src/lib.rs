//! ai-data-masking: blocks sensitive words and masks sensitive data (phone numbers, e-mail
//! addresses, ID and card numbers, IPs, API keys, custom patterns) in requests before they reach
//! the model, and restores masked values in the answer, streamed or not.

pub mod config;
pub mod core;
pub mod stage;

use config::MaskingConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiDataMasking;

impl Plugin for AiDataMasking {
    type Config = RuleSet<MaskingConfig>;
    const NAME: &'static str = "ai-data-masking";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut set = RuleSet::parse(bytes, RuleMode::Override)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::MaskingStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<AiDataMasking>();
}}
