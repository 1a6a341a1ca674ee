//! ai-proxy configuration, with Higress's keys: `provider` or `providers` + `activeProviderId`.

use crate::failover::{FailoverConfig, RetryConfig};
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
    /// Providers tried in order when the active one fails.
    pub fallback: FallbackConfig,
    /// The provider resolved at load time.
    #[serde(skip)]
    pub active: Option<Provider>,
    /// The fallback providers, resolved at load time, in order.
    #[serde(skip)]
    pub fallbacks: Vec<Provider>,
    /// Statuses that send a request to the next fallback.
    #[serde(skip)]
    pub fallback_on: crate::failover::Statuses,
    /// Why this rule's providers cannot be used (a missing host or account, a key that does not
    /// parse): the config still loads, and the requests this rule serves get a 500 naming it.
    #[serde(skip)]
    pub unusable: Option<ConfigError>,
}

/// `fallback`: other providers (from `providers`, by id) that answer when the active one fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FallbackConfig {
    /// Ids of providers from `providers`, tried in order.
    pub provider_ids: Vec<String>,
    /// Statuses (regular expressions) that trigger the fallback.
    pub on_status: Vec<String>,
    /// Timeout of one fallback request, milliseconds.
    pub timeout: u64,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            provider_ids: Vec::new(),
            on_status: vec!["429".into(), "5.*".into()],
            timeout: 120_000,
        }
    }
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
    /// A prefix of the client's path: removed before mapping (`basePathHandling: removePrefix`,
    /// the default) or put before the upstream path (`prepend`).
    pub base_path: Option<String>,
    /// `removePrefix` or `prepend`.
    pub base_path_handling: Option<String>,
    /// Put before every upstream path (unless it already starts with it).
    pub provider_base_path: Option<String>,
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
    /// minimax: `v2` (default, OpenAI-compatible) or `pro` (ChatCompletion Pro).
    pub minimax_api_type: Option<String>,
    /// minimax: the group id ChatCompletion Pro needs.
    pub minimax_group_id: Option<String>,
    /// claude: Claude Code mode (an OAuth token as `Bearer`, Claude Code's headers, `?beta=true`,
    /// its system prompt when the client gives none).
    pub claude_code_mode: bool,
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
    /// qwen: use DashScope's OpenAI-compatible mode (default true; false: the native API).
    pub qwen_enable_compatible: Option<bool>,
    /// qwen: DashScope host (e.g. `dashscope-intl.aliyuncs.com`).
    pub qwen_domain: Option<String>,
    /// gemini: API version in the path (default `v1beta`); claude: `anthropic-version` too.
    pub api_version: Option<String>,
    /// gemini/vertex: `safetySettings`, category → threshold.
    pub gemini_safety_setting: Map<String, Value>,
    /// gemini/vertex: `thinkingBudget` sent when the client asks for none.
    pub gemini_thinking_budget: Option<i64>,
    /// vertex: region, e.g. `us-central1`.
    pub vertex_region: Option<String>,
    /// vertex: project id.
    pub vertex_project_id: Option<String>,
    /// vertex: the service-account JSON key.
    pub vertex_auth_key: Option<String>,
    /// vertex: Envoy cluster reaching `oauth2.googleapis.com` for token exchange.
    pub vertex_auth_service_name: Option<String>,
    /// vertex: refresh the access token this many seconds before it expires (default 60).
    pub vertex_token_refresh_ahead: Option<u64>,
    /// vertex: use Vertex AI's OpenAI-compatible endpoint.
    #[serde(rename = "vertexOpenAICompatible")]
    pub vertex_openai_compatible: bool,
    /// bedrock: AWS access key id (SigV4).
    pub aws_access_key: Option<String>,
    /// bedrock: AWS secret access key (SigV4).
    pub aws_secret_key: Option<String>,
    /// bedrock: AWS session token for temporary credentials.
    pub aws_session_token: Option<String>,
    /// bedrock: region, e.g. `us-east-1`.
    pub aws_region: Option<String>,
    /// bedrock: `additionalModelRequestFields` sent with every request.
    pub bedrock_additional_fields: Map<String, Value>,
    /// bedrock: where prompt cache points go (`systemPrompt`, `lastUserMessage`, `lastMessage`).
    pub bedrock_prompt_cache_point_positions: Map<String, Value>,
    /// Prompt cache retention (`in_memory` or `24h`) when the request names none.
    pub prompt_cache_retention: Option<String>,
    /// qwen: turn DashScope's web search on.
    pub qwen_enable_search: bool,
    /// deepl: target language.
    pub target_lang: Option<String>,
    /// dify: API base URL of a self-hosted Dify.
    pub dify_api_url: Option<String>,
    /// dify: app type `Chat`, `Completion`, `Agent` or `Workflow`.
    pub bot_type: Option<String>,
    /// dify workflow: input variable the prompt goes into.
    pub input_variable: Option<String>,
    /// dify workflow: output variable the answer comes from.
    pub output_variable: Option<String>,
    /// triton: model version in the path.
    pub triton_model_version: Option<String>,
    /// triton: server host.
    pub triton_domain: Option<String>,
    /// Reasoning text in answers: `passthrough` (default), `ignore` or `concat`.
    pub reasoning_content_mode: Option<String>,
    /// Envoy cluster for callouts to this provider (fallback, token exchange); default: the
    /// route's cluster.
    pub cluster: Option<String>,
    /// Take failing keys out and health-check them back in.
    pub failover: FailoverConfig,
    /// Retry failed non-streaming requests with another key.
    pub retry_on_failure: RetryConfig,
    /// Fields set in every request body sent to the provider.
    pub custom_settings: Vec<CustomSetting>,
}

/// One `customSettings` entry: a field set in the provider's request body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomSetting {
    /// Field name; dots reach into objects (`thinking.budget_tokens`).
    pub name: String,
    /// Value to set.
    pub value: Value,
    /// `auto` (default) or `raw`; both use the name as given for the current provider families.
    #[serde(default)]
    pub mode: Option<String>,
    /// Replace a value the client sent (default true).
    #[serde(default = "yes")]
    pub overwrite: bool,
}

fn yes() -> bool {
    true
}

impl CustomSetting {
    /// Sets the field in `body` (an object), creating objects along a dotted name.
    pub fn apply(&self, body: &mut Value) {
        let mut parts: Vec<&str> = self.name.split('.').collect();
        let Some(last) = parts.pop() else { return };
        let mut target = body;
        for part in parts {
            let Some(obj) = target.as_object_mut() else {
                return;
            };
            target = obj.entry(part).or_insert_with(|| Value::Object(Map::new()));
        }
        if let Some(obj) = target.as_object_mut() {
            if self.overwrite || !obj.contains_key(last) {
                obj.insert(last.to_string(), self.value.clone());
            }
        }
    }
}

impl Validate for ProxyConfig {
    /// A rule whose providers cannot be resolved does not take the others down (as in
    /// Higress): it is kept as unusable, logged, and answered with an error naming the key.
    fn validate(&mut self) -> Result<(), ConfigError> {
        if let Err(e) = self.resolve() {
            self.active = None;
            self.fallbacks.clear();
            self.unusable = Some(e);
        }
        Ok(())
    }

    fn warnings(&self) -> Vec<String> {
        self.unusable
            .iter()
            .map(|e| format!("{e}; requests this rule serves are answered 500 until it is fixed"))
            .collect()
    }
}

impl ProxyConfig {
    /// Resolves the active and fallback providers.
    fn resolve(&mut self) -> Result<(), ConfigError> {
        let by_id = |id: &str, at: String| {
            let index = self.providers.iter().position(|p| p.id == id);
            let message = || format!("no provider in `providers` has id `{id}`");
            index.ok_or_else(|| ConfigError::new(at, message()))
        };
        let (chosen, at) = match (&self.provider, self.providers.is_empty()) {
            (Some(p), true) => (p, "provider".to_string()),
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "providers",
                    "set either `provider` or `providers`, not both",
                ))
            }
            (None, false) => {
                let index = match &self.active_provider_id {
                    Some(id) => by_id(id, "activeProviderId".into())?,
                    None if self.providers.len() == 1 => 0,
                    None => {
                        return Err(ConfigError::new(
                            "activeProviderId",
                            "required when `providers` lists more than one provider",
                        ))
                    }
                };
                (&self.providers[index], format!("providers[{index}]"))
            }
            (None, true) => return Ok(()),
        };
        let active = providers::resolve(chosen).map_err(|e| e.under(&at))?;
        let mut fallbacks = Vec::new();
        for (i, id) in self.fallback.provider_ids.iter().enumerate() {
            let index = by_id(id, format!("fallback.providerIds[{i}]"))?;
            let p = providers::resolve(&self.providers[index])
                .map_err(|e| e.under(&format!("providers[{index}]")))?;
            fallbacks.push(p);
        }
        self.active = Some(active);
        self.fallbacks = fallbacks;
        self.fallback_on =
            crate::failover::Statuses::compile(&self.fallback.on_status, "fallback.onStatus")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_settings_set_fields() {
        let settings: Vec<CustomSetting> = serde_json::from_value(json!([
            {"name": "max_tokens", "value": 77},
            {"name": "temperature", "value": 0.5, "overwrite": false},
            {"name": "thinking.budget_tokens", "value": 1024, "mode": "raw"}
        ]))
        .unwrap();
        let mut body = json!({"temperature": 0.9, "max_tokens": 5});
        for s in &settings {
            s.apply(&mut body);
        }
        assert_eq!(
            body,
            json!({"temperature": 0.9, "max_tokens": 77, "thinking": {"budget_tokens": 1024}})
        );
    }

    #[test]
    fn bad_custom_setting_names_the_entry() {
        let c: ProxyConfig =
            serde_json::from_value(json!({"provider": {"type": "openai", "apiTokens": ["k"],
            "customSettings": [{"name": "a..b", "value": 1}]}}))
            .unwrap();
        let mut c = c;
        c.validate().unwrap();
        assert_eq!(c.unusable.unwrap().path, "provider.customSettings[0]");
    }
}
