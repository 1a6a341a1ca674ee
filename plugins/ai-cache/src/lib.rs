//! ai-cache: exact and semantic LLM answer cache, streams included.
//!
//! Higress-compatible config (`cache`, `vector`, `embedding`, `cacheKeyStrategy`, …). Exact
//! entries live in this Envoy's shared data by default (config `{}`), or in Chroma for a fleet;
//! semantic lookups embed the question through an OpenAI-compatible `/v1/embeddings` endpoint
//! and ask Chroma for the nearest neighbour. A hit is replayed in the client's protocol and
//! mode (OpenAI or Anthropic, JSON or SSE) with a usage of zero tokens.

pub mod chroma;
pub mod config;
pub mod key;
pub mod path;
pub mod stage;
pub mod store;

use config::CacheConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;

/// The plugin as the shell sees it.
pub struct AiCache;

impl Plugin for AiCache {
    type Config = RuleSet<CacheConfig>;
    const NAME: &'static str = "ai-cache";

    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError> {
        let mut set = RuleSet::parse(bytes, RuleMode::Override)?;
        let warnings = std::mem::take(&mut set.warnings);
        Ok((set, warnings))
    }

    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(stage::CacheStage::new(config.clone()))]
    }
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start::<AiCache>();
}}
