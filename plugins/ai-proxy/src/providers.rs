//! Provider types: one table of OpenAI-compatible APIs (host, base path, auth) plus Anthropic.

use crate::config::{Protocol, ProviderConfig};
use crate::failover::{Failover, Retry};
use crate::mapping::ModelMapping;
use crate::translate::ReasoningMode;
use sdk::api::ApiKind;
use sdk::config::ConfigError;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// How the key is sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    /// `Authorization: Bearer <key>`.
    #[default]
    Bearer,
    /// The key in a named header (`api-key` for Azure, `x-api-key` for Anthropic).
    Header(&'static str),
    /// `Authorization: <scheme> <key>` (DeepL's `DeepL-Auth-Key`).
    Scheme(&'static str),
    /// AWS SigV4, signed per request over the body.
    SigV4,
    /// `Authorization: Bearer` with an OAuth access token fetched by the gateway (Vertex AI).
    OAuth,
}

/// The upstream API family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// OpenAI-compatible chat completions.
    #[default]
    OpenAi,
    /// Anthropic Messages.
    Claude,
    /// Google Gemini `generateContent` (AI Studio and Vertex AI).
    Gemini,
    /// AWS Bedrock Converse.
    Bedrock,
    /// Cohere v2 chat.
    Cohere,
    /// Alibaba DashScope native text generation.
    Qwen,
    /// Dify apps.
    Dify,
    /// NVIDIA Triton generate extension.
    Triton,
    /// DeepL translation.
    Deepl,
    /// MiniMax ChatCompletion Pro (`minimaxApiType: pro`).
    MinimaxPro,
}

/// Settings of the natively translated families.
#[derive(Debug, Default)]
pub enum Native {
    /// OpenAI-compatible and Anthropic providers.
    #[default]
    None,
    /// Gemini and Vertex AI.
    Gemini(GeminiSettings),
    /// Bedrock.
    Bedrock(BedrockSettings),
    /// Dify.
    Dify(crate::translate::dify::DifyOptions),
    /// Triton.
    Triton(crate::translate::triton::TritonOptions),
    /// DeepL.
    Deepl(crate::translate::deepl::DeeplOptions),
}

/// Gemini/Vertex settings.
#[derive(Debug, Default)]
pub struct GeminiSettings {
    /// Path up to the model: `/v1beta/models`, `/v1/projects/P/locations/R/publishers/google/models`.
    pub model_prefix: String,
    /// Higress `geminiSafetySetting`, sent as `safetySettings` (a `{category: threshold}` map or
    /// a ready array).
    pub safety_settings: Option<serde_json::Value>,
    /// Higress `geminiThinkingBudget`: `thinkingBudget` when the request has no
    /// `reasoning_effort` (0 turns thinking off, -1 lets the model decide).
    pub thinking_budget: Option<i64>,
    /// Vertex service account (OAuth) settings.
    pub vertex: Option<crate::vertex::ServiceAccount>,
    /// The Gemini API's shapes (`:batchEmbedContents`, Imagen's `:predict` for images), not Vertex
    /// AI's (`:predict` embeddings, images from `:generateContent`).
    pub gemini_api: bool,
}

/// Bedrock settings.
#[derive(Debug, Default)]
pub struct BedrockSettings {
    /// AWS region.
    pub region: String,
    /// SigV4 credentials (none: API keys from `apiTokens`).
    pub credentials: Option<crate::sigv4::Credentials>,
    /// Higress `bedrockAdditionalFields`: merged into `additionalModelRequestFields` (its keys
    /// win over the translated ones).
    pub additional_fields: Option<serde_json::Value>,
    /// Higress `bedrockPromptCachePointPositions`.
    pub cache_points: crate::translate::bedrock::CachePoints,
    /// Higress `promptCacheRetention` (`in_memory` or `24h`) when the request names none; no
    /// retention means no cache points.
    pub cache_retention: Option<String>,
}

/// OpenAI-compatible types that serve the Responses API themselves (as in Higress); the others
/// get Responses requests as chat completions.
const RESPONSES_NATIVE: &[&str] = &["openai", "azure", "groq", "vllm", "doubao"];

/// One row of the OpenAI-compatible table.
struct Spec {
    kind: &'static str,
    host: &'static str,
    base: &'static str,
    /// Chat path when it is not `<base>/chat/completions`.
    chat: Option<&'static str>,
    completions: bool,
    embeddings: bool,
}

const fn spec(kind: &'static str, host: &'static str, base: &'static str) -> Spec {
    Spec {
        kind,
        host,
        base,
        chat: None,
        completions: false,
        embeddings: true,
    }
}

impl Spec {
    const fn completions(self) -> Spec {
        Spec {
            completions: true,
            ..self
        }
    }

    const fn no_embeddings(self) -> Spec {
        Spec {
            embeddings: false,
            ..self
        }
    }

    const fn chat(self, path: &'static str) -> Spec {
        Spec {
            chat: Some(path),
            ..self
        }
    }
}

/// Every OpenAI-compatible type with its default host and base path (Bearer auth unless noted
/// in `resolve`). Types whose host comes from config have an empty host here.
const OPENAI_COMPATIBLE: &[Spec] = &[
    spec("openai", "api.openai.com", "/v1").completions(),
    spec("azure", "", "").completions(),
    spec("moonshot", "api.moonshot.cn", "/v1"),
    spec("qwen", "dashscope.aliyuncs.com", "/compatible-mode/v1"),
    spec("deepseek", "api.deepseek.com", "/v1").completions(),
    spec("groq", "api.groq.com", "/openai/v1"),
    spec("grok", "api.x.ai", "/v1"),
    spec("mistral", "api.mistral.ai", "/v1"),
    spec("together-ai", "api.together.xyz", "/v1").completions(),
    spec("openrouter", "openrouter.ai", "/api/v1"),
    spec("fireworks", "api.fireworks.ai", "/inference/v1").completions(),
    spec("github", "models.inference.ai.azure.com", ""),
    spec("ollama", "", "/v1").completions(),
    spec("vllm", "", "/v1").completions(),
    spec("zhipuai", "open.bigmodel.cn", "/api/paas/v4"),
    spec("doubao", "ark.cn-beijing.volces.com", "/api/v3"),
    spec("baichuan", "api.baichuan-ai.com", "/v1"),
    spec("yi", "api.lingyiwanwu.com", "/v1"),
    spec("stepfun", "api.stepfun.com", "/v1"),
    spec("minimax", "api.minimax.chat", "/v1")
        .no_embeddings()
        .chat("/v1/text/chatcompletion_v2"),
    spec("ai360", "api.360.cn", "/v1"),
    spec("hunyuan", "api.hunyuan.cloud.tencent.com", "/v1"),
    spec("cloudflare", "api.cloudflare.com", ""),
    spec("longcat", "api.longcat.chat", "/openai/v1").no_embeddings(),
    spec("baidu", "qianfan.baidubce.com", "/v2"),
    spec("spark", "spark-api-open.xf-yun.com", "/v1").no_embeddings(),
    spec("galadriel", "api.galadriel.com", "/v1").no_embeddings(),
    spec("generic", "", "/v1").completions(),
];

/// Natively translated types (resolved in `resolve_native`).
const NATIVE: &[&str] = &[
    "gemini", "vertex", "bedrock", "cohere", "dify", "coze", "triton", "deepl",
];

/// A resolved provider: everything a request needs, computed once at load.
#[derive(Debug, Default)]
pub struct Provider {
    /// Provider type name.
    pub kind: String,
    /// Wire family.
    pub family: Family,
    /// Host (`:authority`) to send.
    pub host: String,
    /// Base path other OpenAI paths are put under (`/v1/files` → `<base>/files`).
    pub base: String,
    /// Query string added to every path (Azure `api-version`).
    pub query: String,
    /// Chat path.
    pub chat: String,
    /// Legacy completions path, if the provider has one.
    pub completions: Option<String>,
    /// Embeddings path, if the provider has one.
    pub embeddings: Option<String>,
    /// Models path.
    pub models: Option<String>,
    /// Image generation path (`modelMapping` applies to its body).
    pub images: Option<String>,
    /// Rerank path for clients' `POST …/v1/reranks` (DashScope; `modelMapping` applies).
    pub rerank: Option<String>,
    /// Image edits and variations are translated (Vertex AI), not passed through.
    pub image_edits: bool,
    /// OpenAI Responses API path (passed natively to OpenAI-compatible types).
    pub responses: Option<String>,
    /// Whether other paths pass through (OpenAI-compatible providers).
    pub passthrough: bool,
    /// Base of the paths that pass through, when not `base` (Azure: `/openai` or `/openai/v1`,
    /// since its Responses, files and batches APIs are not per deployment).
    pub passthrough_base: Option<String>,
    /// Higress `basePath` / `basePathHandling`.
    pub base_path: BasePath,
    /// Higress `providerBasePath`: put before every upstream path.
    pub provider_base_path: String,
    /// Key header.
    pub auth: Auth,
    /// Keys, rotated.
    pub tokens: Vec<String>,
    next_token: Cell<usize>,
    /// Model renames.
    pub mapping: ModelMapping,
    /// `openai` or `original`.
    pub protocol: Protocol,
    /// Upstream timeout, ms.
    pub timeout_ms: u64,
    /// Add `stream_options.include_usage` to streams.
    pub include_usage: bool,
    /// Anthropic `max_tokens` default.
    pub claude_max_tokens: u64,
    /// `anthropic-version`.
    pub claude_version: String,
    /// claude: Higress `claudeCodeMode`.
    pub claude_code_mode: bool,
    /// Send the client's key instead of `apiTokens`.
    pub passthrough_client_key: bool,
    /// Key failover, when enabled.
    pub failover: Option<Failover>,
    /// Retries of failed non-streaming requests with another key, when enabled.
    pub retry: Option<Retry>,
    /// Fields set in every request body.
    pub custom_settings: Vec<crate::config::CustomSetting>,
    /// Settings of natively translated families.
    pub native: Native,
    /// qwen native: `parameters.enable_search` on every request.
    pub qwen_enable_search: bool,
    /// What happens to reasoning text in answers.
    pub reasoning: crate::translate::ReasoningMode,
    /// Envoy cluster for callouts to this provider, when not the route's.
    pub call_cluster: Option<String>,
    /// Shared-data key of this provider's key health.
    pub health_key: String,
    /// Cluster the provider's traffic goes to (learned from requests; used by health checks).
    pub cluster: RefCell<Option<String>>,
    /// Health checks in flight: callout token → key index (root context only).
    pub inflight: RefCell<HashMap<u32, usize>>,
    id: String,
}

impl Provider {
    /// Index of the next key (round robin within this VM), if any.
    pub fn next_token_index(&self) -> Option<usize> {
        if self.tokens.is_empty() {
            return None;
        }
        let i = self.next_token.get() % self.tokens.len();
        self.next_token.set(i.wrapping_add(1));
        Some(i)
    }

    /// The next key, if any.
    pub fn next_token(&self) -> Option<&str> {
        self.next_token_index()
            .and_then(|i| self.tokens.get(i))
            .map(String::as_str)
    }

    /// Provider id, or its type when it has none (for logs).
    pub fn name(&self) -> &str {
        if self.id.is_empty() {
            &self.kind
        } else {
            &self.id
        }
    }

    /// Whether Responses API requests pass to the provider as they are.
    pub fn serves_responses(&self) -> bool {
        self.responses.is_some()
    }

    /// The client's path as the provider sees it (`basePath` removed when so configured).
    pub fn client_path<'a>(&self, path: &'a str) -> &'a str {
        match &self.base_path {
            BasePath::RemovePrefix(b) => match path.strip_prefix(b.as_str()) {
                Some(rest) if rest.starts_with('/') || rest.starts_with('?') => rest,
                _ => path,
            },
            _ => path,
        }
    }

    /// An upstream path with `basePath` (when prepended) and `providerBasePath` put before it.
    pub fn upstream_path(&self, path: &str) -> String {
        let mut out = path.to_string();
        for prefix in [
            match &self.base_path {
                BasePath::Prepend(b) => b.as_str(),
                _ => "",
            },
            self.provider_base_path.as_str(),
        ] {
            if !prefix.is_empty() && !out.starts_with(prefix) {
                out = format!("{prefix}{out}");
            }
        }
        out
    }

    /// Whether the request is a rerank this provider serves (Higress's `qwen/v1/rerank`:
    /// a client path ending in `/v1/reranks`).
    pub fn is_rerank(&self, api: ApiKind, client_path: &str) -> bool {
        let path = client_path.split('?').next().unwrap_or_default();
        api == ApiKind::Other
            && self.rerank.is_some()
            && path.trim_end_matches('/').ends_with("/v1/reranks")
    }

    /// The upstream path for an API, or `None` when the provider lacks it.
    pub fn path_for(&self, api: ApiKind, client_path: &str) -> Option<String> {
        if self.is_rerank(api, client_path) {
            return self
                .rerank
                .clone()
                .map(|path| self.with_query(path, client_path));
        }
        let path = match (api, self.family) {
            (ApiKind::ChatCompletions | ApiKind::AnthropicMessages, _) => Some(self.chat.clone()),
            (ApiKind::Completions, _) => self.completions.clone(),
            (ApiKind::Embeddings, _) => self.embeddings.clone(),
            (ApiKind::Models, _) => self.models.clone(),
            (ApiKind::ImageGenerations, _) => self.images.clone(),
            // Vertex AI: `generateContent` under the model named in the body.
            (ApiKind::ImageEdits | ApiKind::ImageVariations, _) if self.image_edits => {
                Some(String::new())
            }
            // A provider that does not serve it gets the request as a chat completion.
            (ApiKind::Responses, _) => self.responses.clone().or_else(|| Some(self.chat.clone())),
            (ApiKind::Other | ApiKind::ImageEdits | ApiKind::ImageVariations, Family::OpenAi)
                if self.passthrough =>
            {
                let (path, _) = client_path.split_once('?').unwrap_or((client_path, ""));
                let rest = path.strip_prefix("/v1").unwrap_or(path);
                let base = self.passthrough_base.as_deref().unwrap_or(&self.base);
                Some(format!("{base}{rest}"))
            }
            // A provider's own API (Gemini's `…:countTokens`, Anthropic's `count_tokens`,
            // DashScope's rerank, …) goes to it as the client sent it, with its host and key.
            // Not to Bedrock: the signature covers bodies ai-proxy does not read here.
            (ApiKind::Other, family) if family != Family::Bedrock && family != Family::OpenAi => {
                Some(
                    client_path
                        .split_once('?')
                        .map_or(client_path, |(p, _)| p)
                        .to_string(),
                )
            }
            (ApiKind::Other | ApiKind::ImageEdits | ApiKind::ImageVariations, _) => None,
        }?;
        Some(self.with_query(path, client_path))
    }

    fn with_query(&self, path: String, client_path: &str) -> String {
        let client_query = client_path.split_once('?').map(|(_, q)| q).unwrap_or("");
        // A parameter the client already sent is not added twice (Claude Code's `beta=true`).
        let ours = match client_query.split('&').any(|kv| kv == self.query) {
            true => "",
            false => self.query.as_str(),
        };
        let query: Vec<&str> = [ours, client_query]
            .into_iter()
            .filter(|q| !q.is_empty())
            .collect();
        if query.is_empty() {
            path
        } else {
            format!("{path}?{}", query.join("&"))
        }
    }
}

/// A config string that is set and not blank, trimmed.
pub(crate) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Higress's `basePath` with its `basePathHandling`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BasePath {
    /// Not set.
    #[default]
    None,
    /// Removed from the client's path before mapping.
    RemovePrefix(String),
    /// Put before the upstream path.
    Prepend(String),
}

/// Splits `https://host[:port]/path?query` into (host, path, query).
fn split_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if hostport.is_empty() {
        return None;
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    Some((
        hostport.to_string(),
        path.trim_end_matches('/').to_string(),
        query.to_string(),
    ))
}

fn required<'a>(value: &'a Option<String>, key: &str, kind: &str) -> Result<&'a str, ConfigError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::new(key, format!("required for type `{kind}`")))
}

/// Resolves one provider config; errors name the field (relative to the provider).
pub fn resolve(c: &ProviderConfig) -> Result<Provider, ConfigError> {
    let kind = c.kind.as_str();
    if kind.is_empty() {
        return Err(ConfigError::new("type", "missing provider type"));
    }
    for (i, s) in c.custom_settings.iter().enumerate() {
        let bad_mode = s.mode.as_deref().is_some_and(|m| m != "auto" && m != "raw");
        if s.name.is_empty() || s.name.split('.').any(str::is_empty) || bad_mode {
            return Err(ConfigError::new(
                format!("customSettings[{i}]"),
                "needs a field `name` (dots for nested fields) and `mode` auto or raw",
            ));
        }
    }
    let mapping = ModelMapping::parse(&c.model_mapping).map_err(|e| e.under("modelMapping"))?;
    let reasoning = match c.reasoning_content_mode.as_deref().unwrap_or("passthrough") {
        "passthrough" | "normal" | "" => ReasoningMode::Passthrough,
        "ignore" => ReasoningMode::Ignore,
        "concat" => ReasoningMode::Concat,
        other => {
            return Err(ConfigError::new(
                "reasoningContentMode",
                format!("unknown mode `{other}` (passthrough, ignore or concat)"),
            ))
        }
    };
    let mut p = Provider {
        kind: kind.to_string(),
        passthrough: true,
        tokens: c
            .api_tokens
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect(),
        mapping,
        protocol: c.protocol,
        timeout_ms: c.timeout.unwrap_or(120_000),
        include_usage: c.stream_include_usage.unwrap_or(true),
        claude_max_tokens: c.claude_default_max_tokens.unwrap_or(4096),
        claude_version: c
            .claude_version
            .clone()
            .unwrap_or_else(|| "2023-06-01".to_string()),
        passthrough_client_key: c.passthrough_client_key,
        failover: Failover::compile(&c.failover)?,
        retry: Retry::compile(&c.retry_on_failure)?,
        custom_settings: c.custom_settings.clone(),
        reasoning,
        call_cluster: c.cluster.clone().filter(|c| !c.is_empty()),
        id: c.id.clone(),
        ..Provider::default()
    };
    // As in Higress, `qwen` speaks DashScope's native API unless `qwenEnableCompatible: true`.
    if NATIVE.contains(&kind) || (kind == "qwen" && c.qwen_enable_compatible != Some(true)) {
        resolve_native(c, &mut p)?;
    } else if kind == "claude" {
        p.family = Family::Claude;
        p.host = "api.anthropic.com".into();
        p.base = "/v1".into();
        p.chat = "/v1/messages".into();
        p.models = Some("/v1/models".into());
        p.passthrough = false;
        p.auth = Auth::Header("x-api-key");
        if c.claude_code_mode {
            // A Claude Code OAuth token, sent as Claude Code sends it.
            p.claude_code_mode = true;
            p.auth = Auth::Bearer;
            p.query = crate::translate::claude::CLAUDE_CODE_QUERY.into();
        }
    } else {
        let spec = OPENAI_COMPATIBLE
            .iter()
            .find(|s| s.kind == kind)
            .ok_or_else(|| ConfigError::new("type", format!("unknown provider type `{kind}`")))?;
        p.host = spec.host.to_string();
        p.base = spec.base.to_string();
        let mut chat = spec.chat.map(str::to_string);
        match kind {
            "azure" => {
                let url = required(&c.azure_service_url, "azureServiceUrl", kind)?;
                let (host, path, query) = split_url(url).ok_or_else(|| {
                    ConfigError::new("azureServiceUrl", "must be a URL like https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT/chat/completions?api-version=…")
                })?;
                p.host = host;
                // `/openai/deployments/D/chat/completions`, `/openai/responses`,
                // `/openai/v1/chat/completions`, or the host alone.
                let path = path.trim_end_matches('/');
                let base = ["/chat/completions", "/responses"]
                    .iter()
                    .find_map(|end| path.strip_suffix(end))
                    .unwrap_or(path);
                // The host alone: Azure's v1 API, where the model is in the body.
                let base = if base.is_empty() { "/openai/v1" } else { base };
                let root = match base.find("/openai") {
                    Some(at) if base[at..].starts_with("/openai/v1") => &base[..at + 10],
                    Some(at) => &base[..at + 7],
                    None => base,
                };
                p.base = base.to_string();
                p.passthrough_base = Some(root.to_string());
                p.query = query;
                p.auth = Auth::Header("api-key");
            }
            "openai" => {
                if let Some(url) = c.openai_custom_url.as_deref().filter(|u| !u.is_empty()) {
                    let (host, path, _) = split_url(url)
                        .ok_or_else(|| ConfigError::new("openaiCustomUrl", "must be a URL"))?;
                    p.host = host;
                    if let Some(base) = path.strip_suffix("/chat/completions") {
                        p.base = base.to_string();
                        chat = Some(path.clone());
                    } else {
                        p.base = path;
                    }
                }
            }
            "ollama" => {
                let host = required(&c.ollama_server_host, "ollamaServerHost", kind)?;
                p.host = format!("{host}:{}", c.ollama_server_port.unwrap_or(11434));
            }
            "vllm" => {
                if let Some(url) = c.vllm_custom_url.as_deref().filter(|u| !u.is_empty()) {
                    let (host, path, _) = split_url(url)
                        .ok_or_else(|| ConfigError::new("vllmCustomUrl", "must be a URL"))?;
                    p.host = host;
                    p.base = path;
                } else {
                    p.host = required(&c.vllm_server_host, "vllmServerHost", kind)?.to_string();
                }
            }
            "generic" => {
                p.host = required(&c.generic_host, "genericHost", kind)?.to_string();
            }
            "cloudflare" => {
                let account = required(&c.cloudflare_account_id, "cloudflareAccountId", kind)?;
                p.base = format!("/client/v4/accounts/{account}/ai/v1");
            }
            "qwen" => {
                if let Some(d) = c.qwen_domain.as_deref().filter(|d| !d.is_empty()) {
                    p.host = d.to_string();
                }
                p.rerank = Some(crate::translate::qwen::COMPATIBLE_RERANK_PATH.into());
            }
            "minimax" => match non_empty(&c.minimax_api_type).unwrap_or("v2") {
                "v2" => {}
                "pro" => {
                    let group = required(&c.minimax_group_id, "minimaxGroupId", "minimax pro")?;
                    if !group
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
                    {
                        return Err(ConfigError::new(
                            "minimaxGroupId",
                            "must be letters, digits, `-` or `_`",
                        ));
                    }
                    p.family = Family::MinimaxPro;
                    p.passthrough = false;
                    chat = Some(crate::translate::minimax::PRO_PATH.into());
                    p.query = format!("GroupId={group}");
                }
                other => {
                    return Err(ConfigError::new(
                        "minimaxApiType",
                        format!("unknown API type `{other}` (v2 or pro)"),
                    ))
                }
            },
            _ => {}
        }
        p.chat = chat.unwrap_or_else(|| format!("{}/chat/completions", p.base));
        p.completions = spec.completions.then(|| format!("{}/completions", p.base));
        p.embeddings = spec.embeddings.then(|| format!("{}/embeddings", p.base));
        p.models = Some(format!("{}/models", p.base));
        p.images = Some(format!("{}/images/generations", p.base));
        if p.family == Family::MinimaxPro {
            // ChatCompletion Pro is the one API of this mode.
            p.models = None;
            p.images = None;
        }
        // Azure's Responses API is not per deployment (see `passthrough_base`).
        let root = p.passthrough_base.as_deref().unwrap_or(&p.base);
        if RESPONSES_NATIVE.contains(&kind) {
            p.responses = Some(format!("{root}/responses"));
        }
    }
    if let Some(domain) = c.provider_domain.as_deref().filter(|d| !d.is_empty()) {
        p.host = domain.to_string();
    }
    let base_path = non_empty(&c.base_path).map(|b| b.trim_end_matches('/').to_string());
    p.base_path = match (
        base_path,
        c.base_path_handling.as_deref().unwrap_or_default(),
    ) {
        (None, _) => BasePath::None,
        (Some(b), "" | "removePrefix") => BasePath::RemovePrefix(b),
        (Some(b), "prepend") => BasePath::Prepend(b),
        (Some(_), other) => {
            return Err(ConfigError::new(
                "basePathHandling",
                format!("unknown handling `{other}` (removePrefix or prepend)"),
            ))
        }
    };
    p.provider_base_path = non_empty(&c.provider_base_path)
        .map(|b| b.trim_end_matches('/').to_string())
        .unwrap_or_default();
    for (key, value) in &c.capabilities {
        let Some(path) = value.as_str() else {
            return Err(ConfigError::new(
                format!("capabilities.{key}"),
                "must be a path string",
            ));
        };
        let slot = match key.as_str() {
            "openai/v1/chatcompletions" => &mut p.chat,
            "openai/v1/completions" => p.completions.get_or_insert_with(String::new),
            "openai/v1/embeddings" => p.embeddings.get_or_insert_with(String::new),
            "openai/v1/models" => p.models.get_or_insert_with(String::new),
            "openai/v1/imagegeneration" => p.images.get_or_insert_with(String::new),
            "openai/v1/responses" => p.responses.get_or_insert_with(String::new),
            "qwen/v1/rerank" => p.rerank.get_or_insert_with(String::new),
            _ => {
                return Err(ConfigError::new(
                    format!("capabilities.{key}"),
                    "unknown capability (openai/v1/chatcompletions, openai/v1/completions, openai/v1/embeddings, openai/v1/models, openai/v1/imagegeneration, openai/v1/responses, qwen/v1/rerank)",
                ))
            }
        };
        *slot = path.to_string();
    }
    if p.host.is_empty() {
        return Err(ConfigError::new(
            "providerDomain",
            format!("type `{kind}` needs a host"),
        ));
    }
    if p.tokens.is_empty()
        && !p.passthrough_client_key
        && !matches!(p.auth, Auth::SigV4 | Auth::OAuth)
        && !matches!(kind, "ollama" | "vllm" | "generic" | "triton")
    {
        return Err(ConfigError::new(
            "apiTokens",
            format!("type `{kind}` needs at least one key"),
        ));
    }
    Ok(p)
}

/// Host, paths, auth and settings of the natively translated types.
fn resolve_native(c: &ProviderConfig, p: &mut Provider) -> Result<(), ConfigError> {
    let kind = p.kind.clone();
    let kind = kind.as_str();
    p.passthrough = false;
    let non_empty = |v: &Option<String>| non_empty(v).map(str::to_string);
    let safety = (!c.gemini_safety_setting.is_empty()).then(|| {
        Value::Array(
            c.gemini_safety_setting
                .iter()
                .map(|(category, threshold)| {
                    serde_json::json!({"category": category, "threshold": threshold})
                })
                .collect(),
        )
    });
    match kind {
        "gemini" => {
            p.family = Family::Gemini;
            p.host = "generativelanguage.googleapis.com".into();
            p.auth = Auth::Header("x-goog-api-key");
            let version = non_empty(&c.api_version).unwrap_or_else(|| "v1beta".into());
            p.base = format!("/{version}");
            p.models = Some(format!("/{version}/models"));
            // `:batchEmbedContents` and Imagen's `:predict` under the model named in the body
            // (see native::outbound).
            p.embeddings = Some(String::new());
            p.images = Some(String::new());
            p.native = Native::Gemini(GeminiSettings {
                model_prefix: format!("/{version}/models"),
                safety_settings: safety,
                thinking_budget: c.gemini_thinking_budget,
                vertex: None,
                gemini_api: true,
            });
        }
        "vertex" => {
            let account = match non_empty(&c.vertex_auth_key) {
                Some(key) => Some(crate::vertex::ServiceAccount::parse(&key, c)?),
                None => None,
            };
            if c.vertex_openai_compatible {
                let Some(account) = account else {
                    return Err(ConfigError::new(
                        "vertexAuthKey",
                        "required with vertexOpenAICompatible (Vertex's OpenAI endpoint takes OAuth tokens)",
                    ));
                };
                p.family = Family::OpenAi;
                p.host = account.host.clone();
                p.base = format!(
                    "/v1/projects/{}/locations/{}/endpoints/openapi",
                    account.project, account.region
                );
                p.chat = format!("{}/chat/completions", p.base);
                p.auth = Auth::OAuth;
                p.native = Native::Gemini(GeminiSettings {
                    vertex: Some(account),
                    ..GeminiSettings::default()
                });
                return Ok(());
            }
            p.family = Family::Gemini;
            let prefix = match &account {
                Some(a) => {
                    p.host = a.host.clone();
                    p.auth = Auth::OAuth;
                    format!(
                        "/v1/projects/{}/locations/{}/publishers/google/models",
                        a.project, a.region
                    )
                }
                None => {
                    // Express mode: an API key from `apiTokens`.
                    p.host = "aiplatform.googleapis.com".into();
                    p.auth = Auth::Header("x-goog-api-key");
                    "/v1/publishers/google/models".to_string()
                }
            };
            // Images through `generateContent` with image output, embeddings through
            // `:predict`, under the body's model.
            p.images = Some(String::new());
            p.embeddings = Some(String::new());
            p.image_edits = true;
            p.native = Native::Gemini(GeminiSettings {
                model_prefix: prefix,
                safety_settings: safety,
                thinking_budget: c.gemini_thinking_budget,
                vertex: account,
                gemini_api: false,
            });
        }
        "bedrock" => {
            p.family = Family::Bedrock;
            let region = required(&c.aws_region, "awsRegion", kind)?.to_string();
            p.host = format!("bedrock-runtime.{region}.amazonaws.com");
            let credentials = match (non_empty(&c.aws_access_key), non_empty(&c.aws_secret_key)) {
                (Some(access_key), Some(secret_key)) => Some(crate::sigv4::Credentials {
                    access_key,
                    secret_key,
                    session_token: non_empty(&c.aws_session_token),
                }),
                (Some(_), None) => {
                    return Err(ConfigError::new(
                        "awsSecretKey",
                        "required with awsAccessKey",
                    ))
                }
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        "awsAccessKey",
                        "required with awsSecretKey",
                    ))
                }
                (None, None) => None,
            };
            // Embeddings through InvokeModel, under the body's model.
            p.embeddings = Some(String::new());
            p.auth = if credentials.is_some() {
                Auth::SigV4
            } else {
                // Bedrock API keys.
                Auth::Bearer
            };
            let (cache_points, unknown) = crate::translate::bedrock::CachePoints::from_config(
                &c.bedrock_prompt_cache_point_positions,
            );
            if let Some(key) = unknown.first() {
                return Err(ConfigError::new(
                    format!("bedrockPromptCachePointPositions.{key}"),
                    "unknown position (systemPrompt, lastUserMessage, lastMessage)",
                ));
            }
            p.native = Native::Bedrock(BedrockSettings {
                region,
                credentials,
                cache_points,
                cache_retention: non_empty(&c.prompt_cache_retention),
                additional_fields: (!c.bedrock_additional_fields.is_empty())
                    .then(|| Value::Object(c.bedrock_additional_fields.clone())),
            });
        }
        "cohere" => {
            p.family = Family::Cohere;
            p.host = "api.cohere.com".into();
            p.chat = "/v2/chat".into();
            p.embeddings = Some("/v2/embed".into());
            p.models = Some("/v1/models".into());
        }
        "qwen" => {
            p.family = Family::Qwen;
            p.qwen_enable_search = c.qwen_enable_search;
            p.host = non_empty(&c.qwen_domain).unwrap_or_else(|| "dashscope.aliyuncs.com".into());
            p.chat = "/api/v1/services/aigc/text-generation/generation".into();
            p.embeddings = Some(crate::translate::qwen::TEXT_EMBEDDING_PATH.into());
            p.rerank = Some(crate::translate::qwen::TEXT_RERANK_PATH.into());
        }
        "dify" => {
            p.family = Family::Dify;
            let opts = crate::translate::dify::DifyOptions::from_config(c)?;
            p.host =
                crate::translate::dify::dify_host(c.dify_api_url.as_deref().unwrap_or_default());
            p.chat = opts.path().to_string();
            p.native = Native::Dify(opts);
        }
        "coze" => {
            // Coze's chat API has no OpenAI-shaped form: as in Higress, the client's own Coze
            // request passes through with host and key set.
            p.family = Family::OpenAi;
            p.host = crate::translate::coze::COZE_HOST.into();
            p.protocol = Protocol::Original;
        }
        "triton" => {
            p.family = Family::Triton;
            p.host = required(&c.triton_domain, "tritonDomain", kind)?.to_string();
            p.native = Native::Triton(crate::translate::triton::TritonOptions::from_config(c)?);
        }
        "deepl" => {
            p.family = Family::Deepl;
            let free = p.tokens.first().is_some_and(|t| t.ends_with(":fx"));
            p.host = if free {
                "api-free.deepl.com"
            } else {
                "api.deepl.com"
            }
            .into();
            p.chat = "/v2/translate".into();
            p.auth = Auth::Scheme("DeepL-Auth-Key");
            p.native = Native::Deepl(crate::translate::deepl::DeeplOptions::from_config(c)?);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type name the config accepts (served now or refused with a clear error).
    fn all_types() -> impl Iterator<Item = &'static str> {
        OPENAI_COMPATIBLE
            .iter()
            .map(|s| s.kind)
            .chain(["claude"])
            .chain(NATIVE.iter().copied())
    }
    use serde_json::json;

    fn provider(v: serde_json::Value) -> Result<Provider, ConfigError> {
        let c: ProviderConfig = serde_json::from_value(v).unwrap();
        resolve(&c)
    }

    #[test]
    fn every_openai_compatible_type_resolves() {
        for spec in OPENAI_COMPATIBLE {
            let p = provider(json!({"type": spec.kind, "apiTokens": ["k"],
                "azureServiceUrl": "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01",
                "ollamaServerHost": "ollama", "vllmServerHost": "vllm:8000", "genericHost": "llm.internal",
                "cloudflareAccountId": "acc"}))
            .unwrap();
            assert!(!p.host.is_empty(), "{}", spec.kind);
            assert!(p.chat.starts_with('/'), "{}", spec.kind);
        }
        assert_eq!(
            all_types().count(),
            OPENAI_COMPATIBLE.len() + 1 + NATIVE.len()
        );
    }

    /// Higress ai-proxy's type names (its provider initializers, less `kling`, its video API),
    /// each with the keys it needs.
    #[test]
    fn every_higress_type_name_is_accepted() {
        let higress = [
            "openai",
            "azure",
            "moonshot",
            "qwen",
            "baichuan",
            "yi",
            "zhipuai",
            "deepseek",
            "groq",
            "grok",
            "openrouter",
            "fireworks",
            "baidu",
            "ai360",
            "github",
            "mistral",
            "minimax",
            "cloudflare",
            "spark",
            "ollama",
            "claude",
            "hunyuan",
            "stepfun",
            "cohere",
            "doubao",
            "coze",
            "gemini",
            "vertex",
            "bedrock",
            "together-ai",
            "dify",
            "deepl",
            "triton",
            "longcat",
            "vllm",
            "generic",
            "galadriel",
        ];
        assert_eq!(higress.len(), 37);
        let mut ours: Vec<&str> = all_types().collect();
        ours.sort_unstable();
        let mut theirs = higress.to_vec();
        theirs.sort_unstable();
        assert_eq!(ours, theirs);
        for kind in higress {
            let p = provider(json!({"type": kind, "apiTokens": ["k"],
                "azureServiceUrl": "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01",
                "ollamaServerHost": "ollama", "vllmServerHost": "vllm:8000", "genericHost": "llm.internal",
                "cloudflareAccountId": "acc", "awsRegion": "us-east-1", "targetLang": "DE",
                "tritonDomain": "triton:8000"}));
            let p = p.unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert!(!p.host.is_empty(), "{kind}");
        }
    }

    #[test]
    fn azure_paths_keep_the_api_version() {
        let p = provider(json!({"type": "azure", "apiTokens": ["k"],
            "azureServiceUrl": "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01"}))
        .unwrap();
        assert_eq!(p.host, "r.openai.azure.com");
        assert_eq!(
            p.path_for(ApiKind::ChatCompletions, "/v1/chat/completions")
                .as_deref(),
            Some("/openai/deployments/d/chat/completions?api-version=2024-06-01")
        );
        assert_eq!(
            p.path_for(ApiKind::Embeddings, "/v1/embeddings").as_deref(),
            Some("/openai/deployments/d/embeddings?api-version=2024-06-01")
        );
        assert_eq!(p.auth, Auth::Header("api-key"));
    }

    #[test]
    fn azure_responses_and_other_apis_are_not_per_deployment() {
        let at = |url: &str, client: &str| {
            let p = provider(json!({"type": "azure", "apiTokens": ["k"], "azureServiceUrl": url}))
                .unwrap();
            p.path_for(ApiKind::Other, client)
        };
        let deployment = "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2025-04-01-preview";
        assert_eq!(
            at(deployment, "/v1/responses").as_deref(),
            Some("/openai/responses?api-version=2025-04-01-preview")
        );
        let responses =
            "https://r.openai.azure.com/openai/responses?api-version=2025-04-01-preview";
        assert_eq!(
            at(responses, "/v1/responses").as_deref(),
            Some("/openai/responses?api-version=2025-04-01-preview")
        );
        let v1 = "https://r.openai.azure.com/openai/v1/chat/completions";
        assert_eq!(
            at(v1, "/v1/responses").as_deref(),
            Some("/openai/v1/responses")
        );
        let host = "https://r.openai.azure.com";
        assert_eq!(
            at(host, "/v1/responses").as_deref(),
            Some("/openai/v1/responses")
        );
        let p = provider(json!({"type": "azure", "apiTokens": ["k"], "azureServiceUrl": host}))
            .unwrap();
        assert_eq!(
            p.path_for(ApiKind::ChatCompletions, "/v1/chat/completions")
                .as_deref(),
            Some("/openai/v1/chat/completions")
        );
    }

    #[test]
    fn paths_capabilities_and_passthrough() {
        let p = provider(json!({"type": "groq", "apiTokens": ["k"],
            "capabilities": {"openai/v1/embeddings": "/custom/embed"}}))
        .unwrap();
        assert_eq!(
            p.path_for(ApiKind::ChatCompletions, "/v1/chat/completions")
                .as_deref(),
            Some("/openai/v1/chat/completions")
        );
        assert_eq!(
            p.path_for(ApiKind::Embeddings, "/v1/embeddings").as_deref(),
            Some("/custom/embed")
        );
        assert_eq!(p.path_for(ApiKind::Completions, "/v1/completions"), None);
        assert_eq!(
            p.path_for(ApiKind::Other, "/v1/files?limit=2").as_deref(),
            Some("/openai/v1/files?limit=2")
        );
        // A native provider's own API passes as the client sent it (Higress forwards it too).
        let c = provider(json!({"type": "claude", "apiTokens": ["k"]})).unwrap();
        assert_eq!(
            c.path_for(ApiKind::Other, "/v1/messages/count_tokens?beta=true")
                .as_deref(),
            Some("/v1/messages/count_tokens?beta=true")
        );
        assert_eq!(c.path_for(ApiKind::Embeddings, "/v1/embeddings"), None);
        let g = provider(json!({"type": "gemini", "apiTokens": ["k"]})).unwrap();
        assert_eq!(
            g.path_for(ApiKind::Other, "/v1beta/models/g:countTokens")
                .as_deref(),
            Some("/v1beta/models/g:countTokens")
        );
        // Not to Bedrock: its signature covers a body ai-proxy does not read there (404).
        let b = provider(json!({"type": "bedrock", "apiTokens": ["k"], "awsRegion": "us-east-1"}))
            .unwrap();
        assert_eq!(b.path_for(ApiKind::Other, "/model/m/count-tokens"), None);
    }

    #[test]
    fn config_errors_name_fields() {
        let cases = [
            (
                json!({"type": "azure", "apiTokens": ["k"]}),
                "azureServiceUrl",
            ),
            (json!({"type": "nope", "apiTokens": ["k"]}), "type"),
            (json!({"type": "bedrock", "apiTokens": ["k"]}), "awsRegion"),
            (
                json!({"type": "bedrock", "awsRegion": "us-east-1", "awsAccessKey": "a"}),
                "awsSecretKey",
            ),
            (
                json!({"type": "vertex", "apiTokens": ["k"], "vertexOpenAICompatible": true}),
                "vertexAuthKey",
            ),
            (
                json!({"type": "openai", "apiTokens": ["k"], "reasoningContentMode": "x"}),
                "reasoningContentMode",
            ),
            (json!({"type": "openai"}), "apiTokens"),
            (
                json!({"type": "minimax", "apiTokens": ["k"], "minimaxApiType": "pro"}),
                "minimaxGroupId",
            ),
            (
                json!({"type": "minimax", "apiTokens": ["k"], "minimaxApiType": "v3"}),
                "minimaxApiType",
            ),
            (
                json!({"type": "openai", "apiTokens": ["k"], "capabilities": {"x": "/y"}}),
                "capabilities.x",
            ),
        ];
        for (v, path) in cases {
            assert_eq!(provider(v.clone()).unwrap_err().path, path, "{v}");
        }
    }

    #[test]
    fn qwen_embeddings_and_rerank_paths_as_in_higress() {
        let native = provider(json!({"type": "qwen", "apiTokens": ["k"]})).unwrap();
        assert_eq!(
            native
                .path_for(ApiKind::Embeddings, "/v1/embeddings")
                .as_deref(),
            Some("/api/v1/services/embeddings/text-embedding/text-embedding")
        );
        assert!(native.is_rerank(ApiKind::Other, "/v1/reranks?x=1"));
        assert_eq!(
            native.path_for(ApiKind::Other, "/v1/reranks").as_deref(),
            Some("/api/v1/services/rerank/text-rerank/text-rerank")
        );
        let compatible =
            provider(json!({"type": "qwen", "apiTokens": ["k"], "qwenEnableCompatible": true}))
                .unwrap();
        assert_eq!(
            compatible
                .path_for(ApiKind::Other, "/api/v1/reranks")
                .as_deref(),
            Some("/compatible-api/v1/reranks")
        );
        assert_eq!(
            compatible
                .path_for(ApiKind::Embeddings, "/v1/embeddings")
                .as_deref(),
            Some("/compatible-mode/v1/embeddings")
        );
        // Other types pass `/v1/reranks` through as any other path.
        let groq = provider(json!({"type": "groq", "apiTokens": ["k"]})).unwrap();
        assert!(!groq.is_rerank(ApiKind::Other, "/v1/reranks"));
        assert_eq!(
            groq.path_for(ApiKind::Other, "/v1/reranks").as_deref(),
            Some("/openai/v1/reranks")
        );
        let custom = provider(json!({"type": "qwen", "apiTokens": ["k"],
            "capabilities": {"qwen/v1/rerank": "/my/rerank"}}))
        .unwrap();
        assert_eq!(
            custom.path_for(ApiKind::Other, "/v1/reranks").as_deref(),
            Some("/my/rerank")
        );
    }

    #[test]
    fn minimax_pro_path_carries_the_group() {
        let p = provider(
            json!({"type": "minimax", "apiTokens": ["k"], "minimaxApiType": "pro",
            "minimaxGroupId": "1782658868262748467"}),
        )
        .unwrap();
        assert_eq!(p.family, Family::MinimaxPro);
        assert_eq!(
            p.path_for(ApiKind::ChatCompletions, "/v1/chat/completions")
                .as_deref(),
            Some("/v1/text/chatcompletion_pro?GroupId=1782658868262748467")
        );
        assert_eq!(p.path_for(ApiKind::Embeddings, "/v1/embeddings"), None);
        // MiniMax's own APIs pass as the client sent them, with the group.
        assert_eq!(
            p.path_for(ApiKind::Other, "/v1/files").as_deref(),
            Some("/v1/files?GroupId=1782658868262748467")
        );
        let v2 = provider(json!({"type": "minimax", "apiTokens": ["k"]})).unwrap();
        assert_eq!(v2.family, Family::OpenAi);
        assert_eq!(v2.chat, "/v1/text/chatcompletion_v2");
    }

    #[test]
    fn tokens_rotate() {
        let p = provider(json!({"type": "openai", "apiTokens": ["a", "b"]})).unwrap();
        let got: Vec<_> = (0..4)
            .map(|_| p.next_token().unwrap().to_string())
            .collect();
        assert_eq!(got, ["a", "b", "a", "b"]);
    }
}
