//! ai-cache configuration: Higress's keys (`cache`, `vector`, `embedding`, `cacheKeyStrategy`,
//! `cacheKeyFrom`, …) plus the rules for what is cached. Stores that only Higress's Envoy can
//! reach (Redis through `proxy_redis_call`) are refused here, naming the field.

use crate::path::JsonPath;
use sdk::config::{ConfigError, Validate};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Higress's default `cacheKeyFrom`.
pub const DEFAULT_KEY_FROM: &str = "messages.@reverse.0.content";
/// Higress's default `cacheValueFrom`.
pub const DEFAULT_VALUE_FROM: &str = "choices.0.message.content";
/// Higress's default `cacheStreamValueFrom`.
pub const DEFAULT_STREAM_VALUE_FROM: &str = "choices.0.delta.content";
/// Higress's default `cacheToolCallsFrom`.
pub const DEFAULT_TOOL_CALLS_FROM: &str = "choices.0.delta.content.tool_calls";

/// Which questions of a conversation make the key (`cacheKeyStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum KeyStrategy {
    /// The last user message.
    #[default]
    #[serde(rename = "lastQuestion")]
    LastQuestion,
    /// Every user message, in order.
    #[serde(rename = "allQuestions")]
    AllQuestions,
    /// Nothing is cached.
    #[serde(rename = "disabled")]
    Disabled,
}

/// Who may share an entry (`cacheScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Scope {
    /// Every client of the route.
    #[default]
    #[serde(rename = "route")]
    Route,
    /// One consumer (from the trusted consumer header); requests without one are not cached.
    #[serde(rename = "consumer")]
    Consumer,
}

/// The plugin configuration (global or one `_rules_` entry).
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CacheConfig {
    /// The exact-match store: absent means this Envoy's shared data.
    pub cache: Option<CacheStore>,
    /// The vector database for semantic lookups.
    pub vector: Option<VectorStore>,
    /// The embedding service for semantic lookups.
    pub embedding: Option<Embedding>,
    /// Which questions make the key.
    pub cache_key_strategy: KeyStrategy,
    /// Semantic lookups (on by default when `vector` is set).
    pub enable_semantic_cache: Option<bool>,
    /// Where the question is read from the request (a GJSON path, default Higress's).
    pub cache_key_from: Option<String>,
    /// Where the answer text is read from an OpenAI JSON answer.
    pub cache_value_from: String,
    /// Where the answer text is read from an OpenAI stream chunk.
    pub cache_stream_value_from: String,
    /// Accepted for compatibility: tool calls are assembled from the protocol's deltas.
    pub cache_tool_calls_from: String,
    /// An OpenAI JSON hit with `%s` for the text (instead of the full replay).
    pub response_template: Option<String>,
    /// An OpenAI streamed hit with `%s` for the text (instead of the full replay).
    pub stream_response_template: Option<String>,
    /// Who may share an entry: `route` (default) or `consumer`.
    pub cache_scope: Scope,
    /// The trusted request header naming the consumer.
    pub consumer_header: String,
    /// Requests with tools are cached (tool definitions are part of the key).
    pub cache_tools: bool,
    /// Requests with a higher `temperature` are not cached (none: any temperature).
    pub max_temperature: Option<f64>,
    /// Parsed `cacheKeyFrom`.
    #[serde(skip)]
    pub key_path: Option<JsonPath>,
    /// Parsed `cacheValueFrom`.
    #[serde(skip)]
    pub value_path: JsonPath,
    /// Parsed `cacheStreamValueFrom`.
    #[serde(skip)]
    pub stream_value_path: JsonPath,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            cache: None,
            vector: None,
            embedding: None,
            cache_key_strategy: KeyStrategy::default(),
            enable_semantic_cache: None,
            cache_key_from: None,
            cache_value_from: DEFAULT_VALUE_FROM.into(),
            cache_stream_value_from: DEFAULT_STREAM_VALUE_FROM.into(),
            cache_tool_calls_from: DEFAULT_TOOL_CALLS_FROM.into(),
            response_template: None,
            stream_response_template: None,
            cache_scope: Scope::default(),
            consumer_header: "x-mse-consumer".into(),
            cache_tools: true,
            max_temperature: None,
            key_path: None,
            value_path: JsonPath::default(),
            stream_value_path: JsonPath::default(),
        }
    }
}

/// Where exact entries live.
#[derive(Debug, Clone, PartialEq)]
pub enum ExactStore {
    /// This Envoy's shared data (one store for all its workers).
    Memory,
    /// A Chroma collection, by id (shared by a fleet).
    Chroma(ChromaTarget),
}

/// A Chroma collection reached through an Envoy cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ChromaTarget {
    /// Envoy cluster.
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `/api/v2/tenants/…/collections/<id>`.
    pub base: String,
    /// Callout timeout.
    pub timeout: Duration,
    /// `Authorization` value, if any.
    pub auth: Option<String>,
}

/// The `cache` block.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CacheStore {
    /// `memory` (this Envoy's shared data, the default) or `chroma`; `redis` is refused.
    #[serde(rename = "type")]
    pub kind: String,
    /// Envoy cluster of the store.
    pub service_name: String,
    /// `:authority` of the store (default `serviceName`).
    pub service_host: String,
    /// Accepted for compatibility (the cluster has the port).
    pub service_port: Option<u64>,
    /// Accepted for compatibility (Redis only).
    pub username: Option<String>,
    /// Accepted for compatibility (Redis only).
    pub password: Option<String>,
    /// Callout timeout, milliseconds.
    pub timeout: u64,
    /// Seconds an entry lives; 0: until evicted.
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: u64,
    /// Prefix of every key.
    pub cache_key_prefix: String,
    /// Chroma database name (Redis's numeric database is refused with `redis`).
    pub database: Value,
    /// Chroma tenant.
    pub tenant: String,
    /// Chroma collection id (`chroma`).
    #[serde(rename = "collectionID")]
    pub collection_id: String,
    /// Chroma API key, sent as `x-chroma-token`.
    pub api_key: Option<String>,
    /// Most entries kept (`memory`).
    pub max_entries: usize,
    /// Most bytes of answers kept (`memory`).
    pub max_bytes: usize,
    /// Resolved store.
    #[serde(skip)]
    pub store: Option<ExactStore>,
}

impl Default for CacheStore {
    fn default() -> Self {
        CacheStore {
            kind: "memory".into(),
            service_name: String::new(),
            service_host: String::new(),
            service_port: None,
            username: None,
            password: None,
            timeout: 10_000,
            cache_ttl: 0,
            cache_key_prefix: "higress-ai-cache:".into(),
            database: Value::Null,
            tenant: "default_tenant".into(),
            collection_id: String::new(),
            api_key: None,
            max_entries: 1000,
            max_bytes: 16 << 20,
            store: None,
        }
    }
}

/// How a distance compares with `vector.threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Relation {
    /// Less than.
    #[default]
    #[serde(rename = "lt")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "lte")]
    Lte,
    /// Greater than.
    #[serde(rename = "gt")]
    Gt,
    /// Greater than or equal.
    #[serde(rename = "gte")]
    Gte,
}

impl Relation {
    /// Whether `score` is close enough.
    pub fn accepts(self, score: f64, threshold: f64) -> bool {
        match self {
            Relation::Lt => score < threshold,
            Relation::Lte => score <= threshold,
            Relation::Gt => score > threshold,
            Relation::Gte => score >= threshold,
        }
    }
}

/// The `vector` block.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VectorStore {
    /// `chroma`; the other Higress types are refused.
    #[serde(rename = "type")]
    pub kind: String,
    /// Envoy cluster of the database.
    pub service_name: String,
    /// `:authority` (default `serviceName`).
    pub service_host: String,
    /// Accepted for compatibility (the cluster has the port).
    pub service_port: Option<u64>,
    /// Chroma API key, sent as `x-chroma-token`.
    pub api_key: Option<String>,
    /// Neighbours asked for.
    pub top_k: u32,
    /// Callout timeout, milliseconds.
    pub timeout: u64,
    /// Collection id.
    #[serde(rename = "collectionID")]
    pub collection_id: String,
    /// Distance threshold.
    pub threshold: Option<f64>,
    /// How the distance compares with the threshold.
    pub threshold_relation: Relation,
    /// Chroma tenant.
    pub tenant: String,
    /// Chroma database.
    pub database: String,
    /// Accepted for compatibility (Elasticsearch only, refused with it).
    pub es_username: Option<String>,
    /// Accepted for compatibility (Elasticsearch only, refused with it).
    pub es_password: Option<String>,
    /// Resolved target.
    #[serde(skip)]
    pub target: Option<ChromaTarget>,
}

impl Default for VectorStore {
    fn default() -> Self {
        VectorStore {
            kind: String::new(),
            service_name: String::new(),
            service_host: String::new(),
            service_port: None,
            api_key: None,
            top_k: 1,
            timeout: 10_000,
            collection_id: String::new(),
            threshold: None,
            threshold_relation: Relation::default(),
            tenant: "default_tenant".into(),
            database: "default_database".into(),
            es_username: None,
            es_password: None,
            target: None,
        }
    }
}

/// Higress's default threshold (a distance below 1000 is near).
pub const DEFAULT_THRESHOLD: f64 = 1000.0;

/// The `embedding` block.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Embedding {
    /// `openai` (any OpenAI-compatible `/v1/embeddings`); the other Higress types are refused.
    #[serde(rename = "type")]
    pub kind: String,
    /// Envoy cluster of the service.
    pub service_name: String,
    /// `:authority` (default `serviceName`).
    pub service_host: String,
    /// Accepted for compatibility (the cluster has the port).
    pub service_port: Option<u64>,
    /// Callout timeout, milliseconds.
    pub timeout: u64,
    /// Model name.
    pub model: String,
    /// Bearer key.
    pub api_key: Option<String>,
    /// Path of the embeddings endpoint.
    pub path: String,
}

impl Default for Embedding {
    fn default() -> Self {
        Embedding {
            kind: String::new(),
            service_name: String::new(),
            service_host: String::new(),
            service_port: None,
            timeout: 10_000,
            model: "text-embedding-3-small".into(),
            api_key: None,
            path: "/v1/embeddings".into(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn chroma_target(
    at: &str,
    cluster: &str,
    host: &str,
    tenant: &str,
    database: &str,
    collection: &str,
    timeout: u64,
    key: Option<&str>,
) -> Result<ChromaTarget, ConfigError> {
    if cluster.trim().is_empty() {
        return Err(ConfigError::new(
            format!("{at}.serviceName"),
            "the Envoy cluster of the store is required",
        ));
    }
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !ok(collection) {
        return Err(ConfigError::new(
            format!("{at}.collectionID"),
            "the Chroma collection id is required (letters, digits, `-`, `_`, `.`)",
        ));
    }
    if !ok(tenant) {
        return Err(ConfigError::new(
            format!("{at}.tenant"),
            "must be a Chroma tenant name",
        ));
    }
    if !ok(database) {
        return Err(ConfigError::new(
            format!("{at}.database"),
            "must be a Chroma database name",
        ));
    }
    if timeout == 0 {
        return Err(ConfigError::new(
            format!("{at}.timeout"),
            "must be at least 1 ms",
        ));
    }
    Ok(ChromaTarget {
        cluster: cluster.to_string(),
        authority: if host.is_empty() {
            cluster.to_string()
        } else {
            host.to_string()
        },
        base: format!("/api/v2/tenants/{tenant}/databases/{database}/collections/{collection}"),
        timeout: Duration::from_millis(timeout),
        auth: key.map(str::to_string),
    })
}

const REDIS: &str = "needs Higress's own Envoy (its `proxy_redis_call` host function); on stock Envoy use `memory` (this Envoy's shared data) or `chroma` (a fleet-shared store)";

impl Validate for CacheConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if let Some(c) = self.cache.as_mut() {
            c.store = Some(match c.kind.as_str() {
                "memory" => {
                    if c.max_entries == 0 {
                        return Err(ConfigError::new("cache.maxEntries", "must be at least 1"));
                    }
                    if c.max_bytes < 1024 {
                        return Err(ConfigError::new("cache.maxBytes", "must be at least 1024"));
                    }
                    ExactStore::Memory
                }
                "chroma" => {
                    let database = match &c.database {
                        Value::Null => "default_database".to_string(),
                        Value::String(s) => s.clone(),
                        _ => {
                            return Err(ConfigError::new(
                                "cache.database",
                                "a Chroma database is named by a string",
                            ))
                        }
                    };
                    ExactStore::Chroma(chroma_target(
                        "cache",
                        &c.service_name,
                        &c.service_host,
                        &c.tenant,
                        &database,
                        &c.collection_id,
                        c.timeout,
                        c.api_key.as_deref(),
                    )?)
                }
                "redis" => return Err(ConfigError::new("cache.type", format!("`redis` {REDIS}"))),
                other => {
                    return Err(ConfigError::new(
                        "cache.type",
                        format!("unknown cache type `{other}` (one of memory, chroma)"),
                    ))
                }
            });
        }
        if let Some(v) = self.vector.as_mut() {
            match v.kind.as_str() {
                "chroma" => {}
                "" => return Err(ConfigError::new("vector.type", "is required (chroma)")),
                "dashvector" | "elasticsearch" | "weaviate" | "pinecone" | "qdrant" | "milvus" => {
                    return Err(ConfigError::new(
                        "vector.type",
                        format!("`{}` is not supported by this plugin; use `chroma`", v.kind),
                    ))
                }
                other => {
                    return Err(ConfigError::new(
                        "vector.type",
                        format!("unknown vector type `{other}` (chroma)"),
                    ))
                }
            }
            if v.top_k == 0 {
                return Err(ConfigError::new("vector.topK", "must be at least 1"));
            }
            if v.threshold.is_some_and(|t| !t.is_finite()) {
                return Err(ConfigError::new("vector.threshold", "must be a number"));
            }
            v.target = Some(chroma_target(
                "vector",
                &v.service_name,
                &v.service_host,
                &v.tenant,
                &v.database,
                &v.collection_id,
                v.timeout,
                v.api_key.as_deref(),
            )?);
        }
        if let Some(e) = self.embedding.as_ref() {
            match e.kind.as_str() {
                "openai" | "ollama" => {}
                "" => return Err(ConfigError::new("embedding.type", "is required (openai)")),
                other => {
                    return Err(ConfigError::new(
                        "embedding.type",
                        format!("`{other}` is not supported; use `openai` (any OpenAI-compatible /v1/embeddings endpoint)"),
                    ))
                }
            }
            if e.service_name.trim().is_empty() {
                return Err(ConfigError::new(
                    "embedding.serviceName",
                    "the Envoy cluster of the embedding service is required",
                ));
            }
            if !e.path.starts_with('/') {
                return Err(ConfigError::new("embedding.path", "must start with `/`"));
            }
            if e.timeout == 0 {
                return Err(ConfigError::new(
                    "embedding.timeout",
                    "must be at least 1 ms",
                ));
            }
        }
        if self.semantic() {
            if self.vector.is_none() {
                return Err(ConfigError::new(
                    "vector",
                    "semantic caching needs a vector database",
                ));
            }
            if self.embedding.is_none() {
                return Err(ConfigError::new(
                    "embedding",
                    "semantic caching needs an embedding service",
                ));
            }
        }
        if self.consumer_header.trim().is_empty() {
            return Err(ConfigError::new("consumerHeader", "must not be empty"));
        }
        if let Some(from) = &self.cache_key_from {
            self.key_path =
                Some(JsonPath::parse(from).map_err(|m| ConfigError::new("cacheKeyFrom", m))?);
        }
        self.value_path = JsonPath::parse(&self.cache_value_from)
            .map_err(|m| ConfigError::new("cacheValueFrom", m))?;
        self.stream_value_path = JsonPath::parse(&self.cache_stream_value_from)
            .map_err(|m| ConfigError::new("cacheStreamValueFrom", m))?;
        JsonPath::parse(&self.cache_tool_calls_from)
            .map_err(|m| ConfigError::new("cacheToolCallsFrom", m))?;
        for (field, t) in [
            ("responseTemplate", &self.response_template),
            ("streamResponseTemplate", &self.stream_response_template),
        ] {
            if t.as_ref().is_some_and(|t| !t.contains("%s")) {
                return Err(ConfigError::new(
                    field,
                    "must contain `%s` where the cached text goes",
                ));
            }
        }
        Ok(())
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.semantic() && self.vector.as_ref().is_some_and(|v| v.threshold.is_none()) {
            w.push(format!(
                "vector.threshold not set: Higress's default {DEFAULT_THRESHOLD} accepts almost any neighbour"
            ));
        }
        if self.cache_tool_calls_from != DEFAULT_TOOL_CALLS_FROM {
            w.push(
                "cacheToolCallsFrom ignored: tool calls are assembled from the protocol's deltas"
                    .into(),
            );
        }
        w
    }
}

impl CacheConfig {
    /// Whether semantic lookups run.
    pub fn semantic(&self) -> bool {
        self.enable_semantic_cache.unwrap_or(self.vector.is_some())
    }

    /// Where exact entries live.
    pub fn exact_store(&self) -> ExactStore {
        self.cache
            .as_ref()
            .and_then(|c| c.store.clone())
            .unwrap_or(ExactStore::Memory)
    }

    /// Key prefix.
    pub fn prefix(&self) -> &str {
        self.cache
            .as_ref()
            .map_or("higress-ai-cache:", |c| c.cache_key_prefix.as_str())
    }

    /// Entry lifetime in seconds (0: until evicted).
    pub fn ttl(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.cache_ttl)
    }

    /// Bounds of the shared-data store: entries, bytes.
    pub fn memory_bounds(&self) -> (usize, usize) {
        let d = CacheStore::default();
        let c = self.cache.as_ref().unwrap_or(&d);
        (c.max_entries, c.max_bytes)
    }
}
