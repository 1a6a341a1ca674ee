//! ai-proxy configuration, with Higress's keys: `provider` or `providers` + `activeProviderId`.

use crate::failover::{FailoverConfig, RetryConfig};
use crate::mapping::ModelMapping;
use crate::providers::{self, Provider};
use sdk::config::{ConfigError, Validate};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The plugin configuration (global, or one `_rules_` entry merged over it).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyConfig {
    /// The one provider.
    pub provider: Option<ProviderConfig>,
    /// Several providers; `activeProviderId` picks one.
    pub providers: Vec<ProviderConfig>,
    /// Id of the provider to use from `providers`.
    pub active_provider_id: Option<String>,
    /// The provider resolved at load time.
    #[serde(skip)]
    pub active: Option<Provider>,
}

/// `protocol`: how the client talks to the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenAI-style API in, translated for the provider.
    #[default]
    Openai,
    /// The provider's own API in, passed through with host and key set.
    Original,
}

/// One provider, as Higress spells it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderConfig {
    /// Id for `activeProviderId`.
    pub id: String,
    /// Provider type, e.g. `openai`, `claude`, `deepseek`.
    #[serde(rename = "type")]
    pub kind: String,
    /// API keys, rotated per request.
    pub api_tokens: Vec<String>,
    /// Model name rewrites: exact, `prefix*`, `~regex`, `*`.
    pub model_mapping: Map<String, Value>,
    /// `openai` (default) or `original`.
    pub protocol: Protocol,
    /// Upstream timeout in milliseconds (default 120000).
    pub timeout: Option<u64>,
    /// Overrides the provider's API host.
    pub provider_domain: Option<String>,
    /// Overrides the provider's base path.
    pub base_path: Option<String>,
    /// Per-API path overrides, e.g. `{"openai/v1/chatcompletions": "/v2/chat"}`.
    pub capabilities: Map<String, Value>,
    /// Add `stream_options.include_usage` to streaming requests (default true).
    pub stream_include_usage: Option<bool>,
    /// `max_tokens` sent to Anthropic when the client gives none (default 4096).
    pub claude_default_max_tokens: Option<u64>,
    /// Send the client's own `Authorization`/`x-api-key` upstream instead of `apiTokens`.
    pub passthrough_client_key: bool,
    /// azure: the deployment URL.
    pub azure_service_url: Option<String>,
    /// openai: a custom endpoint URL.
    pub openai_custom_url: Option<String>,
    /// claude: the `anthropic-version` header.
    pub claude_version: Option<String>,
    /// ollama: server host.
    pub ollama_server_host: Option<String>,
    /// ollama: server port.
    pub ollama_server_port: Option<u16>,
    /// generic: upstream host.
    pub generic_host: Option<String>,
    /// vllm: server host.
    pub vllm_server_host: Option<String>,
    /// vllm: a custom endpoint URL.
    pub vllm_custom_url: Option<String>,
    /// cloudflare: account id.
    pub cloudflare_account_id: Option<String>,
    /// qwen: use DashScope's OpenAI-compatible mode.
    pub qwen_enable_compatible: Option<bool>,
    /// Take failing keys out and health-check them back in.
    pub failover: FailoverConfig,
    /// Retry failed non-streaming requests with another key.
    pub retry_on_failure: RetryConfig,
}

impl Validate for ProxyConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        let (chosen, at) = match (&self.provider, self.providers.is_empty()) {
            (Some(p), true) => (p.clone(), "provider".to_string()),
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "providers",
                    "set either `provider` or `providers`, not both",
                ))
            }
            (None, false) => {
                let index = match &self.active_provider_id {
                    Some(id) => {
                        self.providers
                            .iter()
                            .position(|p| &p.id == id)
                            .ok_or_else(|| {
                                ConfigError::new(
                                    "activeProviderId",
                                    format!("no provider in `providers` has id `{id}`"),
                                )
                            })?
                    }
                    None if self.providers.len() == 1 => 0,
                    None => {
                        return Err(ConfigError::new(
                            "activeProviderId",
                            "required when `providers` lists more than one provider",
                        ))
                    }
                };
                (self.providers[index].clone(), format!("providers[{index}]"))
            }
            (None, true) => return Ok(()),
        };
        let mapping = ModelMapping::parse(&chosen.model_mapping)
            .map_err(|e| e.under(&format!("{at}.modelMapping")))?;
        let provider = providers::resolve(&chosen, mapping).map_err(|e| e.under(&at))?;
        self.active = Some(provider);
        Ok(())
    }
}
