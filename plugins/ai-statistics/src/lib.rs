//! ai-statistics: token usage (exact when reported, estimated with tiktoken when not), timings,
//! Higress-style and OpenTelemetry metrics, and the `wasm.ai_log` access-log field.

pub mod attributes;
pub mod config;
pub mod metrics;
pub mod stage;

use config::StatsConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use stage::Shared;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiStatistics;

impl Plugin for AiStatistics {
    type Config = Shared;
    const NAME: &'static str = "ai-statistics";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut rules: RuleSet<StatsConfig> = RuleSet::parse(bytes, RuleMode::Override)?;
        let warnings = std::mem::take(&mut rules.warnings);
        let max = rules.global.as_ref().map_or(100, |c| c.max_label_values);
        Ok((
            Shared {
                rules,
                metrics: metrics::Metrics::new(max),
            },
            warnings,
        ))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::StatsStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<AiStatistics>();
}}
