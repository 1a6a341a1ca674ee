//! ai-agent configuration: Higress's `llm`, `apis`, `promptTemplate`, `jsonResp`, plus the
//! gateway's own bounds (`maxToolResultBytes`, `llm.cluster`, `apis[].apiProvider.cluster`).

use sdk::config::{ConfigError, Validate};
use sdk::tools::openapi::{openapi_tools, ApiProvider};
use sdk::tools::{ServerConfig, Tool};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Default `llm.maxIterations`.
pub const DEFAULT_MAX_ITERATIONS: u32 = 15;
/// Default `llm.maxExecutionTime`, ms.
pub const DEFAULT_MAX_EXECUTION_MS: u64 = 50_000;
/// Default `llm.maxTokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 1000;
/// Default `maxToolResultBytes`.
pub const DEFAULT_MAX_TOOL_RESULT_BYTES: usize = 16 * 1024;
/// Most tool calls run for one model answer.
pub const MAX_TOOL_CALLS_PER_TURN: usize = 16;

/// `llm`: the model the agent talks to (OpenAI chat completions format).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LlmConfig {
    /// Bearer token of the model service.
    #[serde(default)]
    pub api_key: String,
    /// Service name (Higress cluster `outbound|<servicePort>||<serviceName>`).
    #[serde(default)]
    pub service_name: String,
    /// Service port.
    #[serde(default)]
    pub service_port: u16,
    /// Envoy cluster of the model service (this gateway's key; overrides the Higress name).
    #[serde(default)]
    pub cluster: Option<String>,
    /// `:authority` of the model calls.
    #[serde(default)]
    pub domain: String,
    /// Path of the chat completions endpoint.
    #[serde(default)]
    pub path: String,
    /// Model name sent to the service.
    #[serde(default)]
    pub model: String,
    /// Most model calls per request (default 15).
    #[serde(default)]
    pub max_iterations: Option<u32>,
    /// Time budget of the whole loop, ms (default 50000); every callout gets what is left.
    #[serde(default)]
    pub max_execution_time: Option<u64>,
    /// `max_tokens` of every model call (default 1000).
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

/// One `apis[]` entry: where the operations are called, and the OpenAPI document.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApiEntry {
    /// The API's service and credential.
    #[serde(default)]
    pub api_provider: ApiProvider,
    /// The OpenAPI 3 document (YAML or JSON text).
    #[serde(default)]
    pub api: String,
}

/// One language of `promptTemplate` (Higress's ReAct template parts).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateParts {
    /// Label of the question.
    #[serde(default)]
    pub question: Option<String>,
    /// Label of the model's reasoning.
    #[serde(default)]
    pub thought1: Option<String>,
    /// Label of a tool result.
    #[serde(default)]
    pub observation: Option<String>,
    /// Label of the reasoning before the final answer.
    #[serde(default)]
    pub thought2: Option<String>,
}

/// `promptTemplate`: the ReAct text protocol instead of native function calling.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromptTemplate {
    /// `EN` (default) or `CH`.
    #[serde(default)]
    pub language: Option<String>,
    /// Chinese labels.
    #[serde(default)]
    pub ch_template: Option<TemplateParts>,
    /// English labels.
    #[serde(default)]
    pub en_template: Option<TemplateParts>,
}

/// `jsonResp`: the final answer as JSON following a schema.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct JsonResp {
    /// Ask the model for JSON.
    #[serde(default)]
    pub enable: bool,
    /// The JSON Schema (object, or its JSON text).
    #[serde(default)]
    pub json_schema: Option<Value>,
}

/// One agent (a `_rules_` entry or the global config).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    /// The model; absent means the plugin is off.
    #[serde(default)]
    pub llm: Option<LlmConfig>,
    /// APIs whose operations are the tools.
    #[serde(default)]
    pub apis: Vec<ApiEntry>,
    /// ReAct text mode.
    #[serde(default)]
    pub prompt_template: Option<PromptTemplate>,
    /// JSON answers.
    #[serde(default)]
    pub json_resp: Option<JsonResp>,
    /// Most bytes of one tool result fed back to the model (longer ones are cut).
    #[serde(default)]
    pub max_tool_result_bytes: Option<usize>,
    /// The compiled tools.
    #[serde(skip)]
    pub tools: Vec<Tool>,
    /// The Envoy cluster of the model.
    #[serde(skip)]
    pub llm_cluster: String,
    /// The schema `jsonResp` asks for, parsed.
    #[serde(skip)]
    pub json_schema: Option<Value>,
}

impl AgentConfig {
    /// The model settings (defaults when off).
    pub fn llm(&self) -> LlmConfig {
        self.llm.clone().unwrap_or_default()
    }

    /// A tool by name.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name() == name)
    }

    /// Most model calls per request.
    pub fn max_iterations(&self) -> u32 {
        self.llm
            .as_ref()
            .and_then(|l| l.max_iterations)
            .unwrap_or(DEFAULT_MAX_ITERATIONS)
    }

    /// The loop's time budget.
    pub fn max_execution_time(&self) -> Duration {
        Duration::from_millis(
            self.llm
                .as_ref()
                .and_then(|l| l.max_execution_time)
                .unwrap_or(DEFAULT_MAX_EXECUTION_MS),
        )
    }

    /// `max_tokens` of each model call.
    pub fn max_tokens(&self) -> u64 {
        self.llm
            .as_ref()
            .and_then(|l| l.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS)
    }

    /// Most bytes of one tool result fed back.
    pub fn max_tool_result_bytes(&self) -> usize {
        self.max_tool_result_bytes
            .unwrap_or(DEFAULT_MAX_TOOL_RESULT_BYTES)
    }

    /// The `.config` the tool layer's templates see (none: OpenAPI tools carry their key).
    pub fn server(&self) -> ServerConfig {
        ServerConfig::default()
    }
}

fn positive<T: PartialEq + Default>(v: Option<T>, at: &str) -> Result<(), ConfigError> {
    match v {
        Some(x) if x == T::default() => Err(ConfigError::new(at, "must be greater than 0")),
        _ => Ok(()),
    }
}

impl Validate for AgentConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        let Some(llm) = &self.llm else {
            if !self.apis.is_empty() {
                return Err(ConfigError::new("llm", "apis need an `llm` to call"));
            }
            return Ok(());
        };
        self.llm_cluster = match (&llm.cluster, llm.service_name.is_empty()) {
            (Some(c), _) if !c.is_empty() => c.clone(),
            (_, false) => {
                if llm.service_port == 0 {
                    return Err(ConfigError::new("llm.servicePort", "must be set"));
                }
                format!("outbound|{}||{}", llm.service_port, llm.service_name)
            }
            _ => {
                return Err(ConfigError::new(
                    "llm.serviceName",
                    "must be set (or llm.cluster)",
                ))
            }
        };
        if llm.model.is_empty() {
            return Err(ConfigError::new("llm.model", "must be set"));
        }
        if !llm.path.is_empty() && !llm.path.starts_with('/') {
            return Err(ConfigError::new("llm.path", "must start with `/`"));
        }
        positive(llm.max_iterations, "llm.maxIterations")?;
        positive(llm.max_execution_time, "llm.maxExecutionTime")?;
        positive(llm.max_tokens, "llm.maxTokens")?;
        positive(self.max_tool_result_bytes, "maxToolResultBytes")?;
        let mut tools: Vec<Tool> = Vec::new();
        for (i, entry) in self.apis.iter().enumerate() {
            let at = format!("apis[{i}]");
            if entry.api.trim().is_empty() {
                return Err(ConfigError::new(format!("{at}.api"), "must be set"));
            }
            // The tool layer names `api…` and `apiProvider…` fields: they sit under `apis[i]`.
            let found = openapi_tools(&entry.api, &entry.api_provider).map_err(|e| e.under(&at))?;
            for t in found {
                if tools.iter().any(|o| o.name() == t.name()) {
                    return Err(ConfigError::new(
                        format!("{at}.api"),
                        format!("operation `{}` is defined twice", t.name()),
                    ));
                }
                tools.push(t);
            }
        }
        self.tools = tools;
        if let Some(pt) = &self.prompt_template {
            if let Some(lang) = &pt.language {
                if !lang.eq_ignore_ascii_case("EN") && !lang.eq_ignore_ascii_case("CH") {
                    return Err(ConfigError::new(
                        "promptTemplate.language",
                        "must be `EN` or `CH`",
                    ));
                }
            }
        }
        self.json_schema = match self.json_resp.as_ref().filter(|j| j.enable) {
            None => None,
            Some(j) => match &j.json_schema {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => {
                    let v: Value = serde_json::from_str(text).map_err(|e| {
                        ConfigError::new("jsonResp.jsonSchema", format!("not JSON: {e}"))
                    })?;
                    Some(v)
                }
                Some(v @ Value::Object(_)) => Some(v.clone()),
                Some(_) => {
                    return Err(ConfigError::new(
                        "jsonResp.jsonSchema",
                        "must be a JSON Schema object",
                    ))
                }
            },
        };
        Ok(())
    }
}
