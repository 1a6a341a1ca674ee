//! ai-agent: the gateway runs the model-and-tools loop and answers the chat request itself.
//!
//! Higress `ai-agent` config (`llm`, `apis`, `promptTemplate`, `jsonResp`). The tools are the
//! operations of the OpenAPI documents in `apis` ([`sdk::tools::openapi`]); the model is called
//! through its Envoy cluster with the tools (native function calling, or Higress's ReAct text
//! protocol when `promptTemplate` is set); each tool call goes through the sdk's tool layer to
//! its API's cluster; the client gets one OpenAI answer (JSON or an SSE stream).

pub mod config;
pub mod core;
pub mod react;
pub mod stage;

use config::AgentConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiAgent;

impl Plugin for AiAgent {
    type Config = RuleSet<AgentConfig>;
    const NAME: &'static str = "ai-agent";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut set = RuleSet::parse(bytes, RuleMode::Independent)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::AgentStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<AiAgent>();
}}
