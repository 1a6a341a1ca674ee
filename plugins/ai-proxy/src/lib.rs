//! ai-proxy: one OpenAI-style API in front of every provider.
//!
//! Higress-compatible config (`provider` / `providers` + `activeProviderId`, `type`,
//! `apiTokens`, `modelMapping`, …). The provider's host, path and key are set from the request
//! headers; the body is model-mapped and translated; answers are translated back, streams chunk
//! by chunk.

pub mod config;
pub mod eventstream;
pub mod failover;
pub mod late;
pub mod mapping;
pub mod native;
pub mod providers;
pub mod sigv4;
pub mod stage;
pub mod translate;
pub mod vertex;

use config::ProxyConfig;
use sdk::config::{ConfigError, RuleMode, RuleSet};
use sdk::host::Host;
use sdk::pipeline::Stage;
use sdk::shell::Plugin;
use std::rc::Rc;
use std::time::Duration;

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

    fn tick_period(config: &Self::Config) -> Option<Duration> {
        let health = providers(config)
            .filter_map(|p| p.failover.as_ref())
            .map(|f| Duration::from_millis(f.config.health_check_interval.max(100)));
        let vertex = providers(config)
            .any(|p| matches!(&p.native, providers::Native::Gemini(g) if g.vertex.is_some()))
            .then_some(vertex::TICK_PERIOD);
        health.chain(vertex).min()
    }

    fn on_tick(config: &Self::Config, host: &dyn Host) {
        for p in providers(config) {
            failover::health_check(host, p);
            vertex::refresh(host, p);
        }
    }

    fn on_root_call_response(config: &Self::Config, host: &dyn Host, token: u32, body_size: usize) {
        for p in providers(config) {
            if failover::on_health_response(host, p, token)
                || vertex::on_token_response(host, p, token, body_size)
            {
                return;
            }
        }
    }
}

/// Every resolved provider of the config (global and rules, active and fallbacks).
fn providers(config: &RuleSet<ProxyConfig>) -> impl Iterator<Item = &providers::Provider> {
    config
        .global
        .iter()
        .chain(config.rules.iter().map(|r| &r.config))
        .flat_map(|c| c.active.iter().chain(c.fallbacks.iter()))
}

#[cfg(all(target_arch = "wasm32", feature = "standalone"))]
proxy_wasm::main! {{
    sdk::shell::start_with(AiProxy::NAME, loader);
}}

/// The module's root ids: `ai-proxy-headers` is the companion filter, anything else ai-proxy.
pub fn loader(root_id: &str, bytes: &[u8]) -> sdk::shell::LoadResult {
    let (loaded, warnings) = if root_id == late::ROOT_ID {
        sdk::shell::load::<late::ProxyHeaders>(bytes)?
    } else {
        sdk::shell::load::<AiProxy>(bytes)?
    };
    Ok((vec![loaded], warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_warnings() {
        let (_, warnings) = AiProxy::parse_config(
            br#"{"provider":{"type":"groq","apiTokens":["k"],"colour":"blue"}}"#,
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec!["unknown key `provider.colour` ignored".to_string()]
        );
    }
}
