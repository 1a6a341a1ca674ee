//! ai-prompt-decorator: prepend, append and rewrite chat messages before they reach the model.
//!
//! Works on OpenAI chat completions and Anthropic `/v1/messages` bodies; Higress-compatible
//! config (`prepend`, `append`) plus `replace` rules and per-request placeholders.

pub mod config;
pub mod stage;

use config::DecoratorConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct PromptDecorator;

impl Plugin for PromptDecorator {
    type Config = RuleSet<DecoratorConfig>;
    const NAME: &'static str = "ai-prompt-decorator";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut set = RuleSet::parse(bytes, RuleMode::Independent)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::DecoratorStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<PromptDecorator>();
}}
