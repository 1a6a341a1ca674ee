//! ai-statistics configuration (Higress keys: `attributes`, `value_source`, …).

use sdk::config::{ConfigError, Validate};
use serde::Deserialize;

/// The plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct StatsConfig {
    /// Extra fields taken from the traffic.
    pub attributes: Vec<Attribute>,
    /// Request header naming the consumer (Higress sets `x-mse-consumer`).
    pub consumer_header: String,
    /// Distinct values kept per metric label before new ones become `other`.
    pub max_label_values: usize,
    /// Emit Higress-style metric names.
    pub higress_metrics: bool,
    /// Emit OpenTelemetry GenAI metric names.
    pub otel_metrics: bool,
    /// Estimate tokens with tiktoken when the response carries no usage.
    pub estimate_tokens: bool,
    /// Default length limit of attribute values (bytes).
    pub value_length_limit: usize,
    /// Prices per 1M tokens that turn usage into cost (the shipped defaults fill in).
    pub price_table: sdk::cost::PriceTable,
    /// Response header that carries the request's cost (non-streamed answers; off when unset).
    pub cost_header: Option<String>,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            attributes: Vec::new(),
            consumer_header: "x-mse-consumer".into(),
            max_label_values: 100,
            higress_metrics: true,
            otel_metrics: true,
            estimate_tokens: true,
            value_length_limit: 4000,
            price_table: sdk::cost::PriceTable::default(),
            cost_header: None,
        }
    }
}

/// Where an attribute's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    /// `value` itself.
    FixedValue,
    /// A request header named by `value`.
    RequestHeader,
    /// A JSON path into the request body.
    RequestBody,
    /// A response header named by `value`.
    ResponseHeader,
    /// A JSON path into the (non-streaming) response body.
    ResponseBody,
    /// A JSON path applied to each streamed event.
    ResponseStreamingBody,
}

/// How streamed values combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Keep the first value.
    #[default]
    First,
    /// Keep the last value.
    Replace,
    /// Concatenate all values.
    Append,
}

/// One `attributes` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Attribute {
    /// Name in the log.
    pub key: String,
    /// Where the value comes from; none for Higress's built-in keys (`question`, `answer`, …).
    #[serde(default)]
    pub value_source: Option<ValueSource>,
    /// Fixed value, header name, or JSON path (`choices.0.delta.content`, `-1` for the last item).
    #[serde(default)]
    pub value: String,
    /// Used when the source yields nothing.
    #[serde(default)]
    pub default_value: Option<String>,
    /// For streams: `first`, `replace` or `append`.
    #[serde(default)]
    pub rule: Rule,
    /// Put it into `ai_log`.
    #[serde(default)]
    pub apply_to_log: bool,
    /// Also write it as its own filter-state field `wasm.<key>`.
    #[serde(default)]
    pub as_separate_log_field: bool,
    /// Length limit (bytes) of the value; the config default when absent.
    #[serde(default)]
    pub value_length_limit: Option<usize>,
    /// Where the value is looked for, in order (resolved at load).
    #[serde(skip)]
    pub sources: Vec<Source>,
    /// The built-in this key names, when `value_source` is not set.
    #[serde(skip)]
    pub builtin: Option<Builtin>,
}

/// One place an attribute's value is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Which part of the traffic.
    pub from: ValueSource,
    /// Header name, fixed value or JSON path.
    pub path: String,
    /// How streamed values combine.
    pub rule: Rule,
}

/// Higress's built-in attribute keys: used with `key` alone, they read the client's protocol
/// (OpenAI chat or Anthropic Messages) without a `value_source` or `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// The last user message's text.
    Question,
    /// The system prompt.
    System,
    /// The answer's text, streamed or not.
    Answer,
    /// The reasoning text (`reasoning_content`, Anthropic thinking).
    Reasoning,
    /// The tool calls, as a JSON array (streamed pieces joined by index).
    ToolCalls,
    /// Reasoning tokens of the usage.
    ReasoningTokens,
    /// Cached input tokens of the usage.
    CachedTokens,
    /// The usage's input token details object.
    InputTokenDetails,
    /// The usage's output token details object.
    OutputTokenDetails,
}

impl Builtin {
    /// The built-in a key names.
    pub fn from_key(key: &str) -> Option<Builtin> {
        Some(match key {
            "question" => Builtin::Question,
            "system" => Builtin::System,
            "answer" => Builtin::Answer,
            "reasoning" => Builtin::Reasoning,
            "tool_calls" => Builtin::ToolCalls,
            "reasoning_tokens" => Builtin::ReasoningTokens,
            "cached_tokens" => Builtin::CachedTokens,
            "input_token_details" => Builtin::InputTokenDetails,
            "output_token_details" => Builtin::OutputTokenDetails,
            _ => return None,
        })
    }

    /// The JSON paths it reads in response bodies and stream events (OpenAI's and Anthropic's);
    /// question, system and streamed tool calls are read by code instead.
    fn sources(self) -> Vec<Source> {
        use ValueSource::{ResponseBody as Body, ResponseStreamingBody as Event};
        let s = |from, path: &str, rule| Source {
            from,
            path: path.to_string(),
            rule,
        };
        match self {
            Builtin::Question | Builtin::System => Vec::new(),
            Builtin::Answer => vec![
                s(Event, "choices.0.delta.content", Rule::Append),
                s(Event, "delta.text", Rule::Append),
                s(Body, "choices.0.message.content", Rule::First),
                s(Body, "content.-1.text", Rule::First),
            ],
            Builtin::Reasoning => vec![
                s(Event, "choices.0.delta.reasoning_content", Rule::Append),
                s(Event, "delta.thinking", Rule::Append),
                s(Body, "choices.0.message.reasoning_content", Rule::First),
                s(Body, "content.0.thinking", Rule::First),
            ],
            Builtin::ToolCalls => vec![s(Body, "choices.0.message.tool_calls", Rule::First)],
            Builtin::ReasoningTokens => vec![
                s(
                    Event,
                    "usage.completion_tokens_details.reasoning_tokens",
                    Rule::Replace,
                ),
                s(
                    Body,
                    "usage.completion_tokens_details.reasoning_tokens",
                    Rule::First,
                ),
            ],
            Builtin::CachedTokens => vec![
                s(
                    Event,
                    "usage.prompt_tokens_details.cached_tokens",
                    Rule::Replace,
                ),
                s(
                    Event,
                    "message.usage.cache_read_input_tokens",
                    Rule::Replace,
                ),
                s(
                    Body,
                    "usage.prompt_tokens_details.cached_tokens",
                    Rule::First,
                ),
                s(Body, "usage.cache_read_input_tokens", Rule::First),
            ],
            Builtin::InputTokenDetails => vec![
                s(Event, "usage.prompt_tokens_details", Rule::Replace),
                s(Body, "usage.prompt_tokens_details", Rule::First),
            ],
            Builtin::OutputTokenDetails => vec![
                s(Event, "usage.completion_tokens_details", Rule::Replace),
                s(Body, "usage.completion_tokens_details", Rule::First),
            ],
        }
    }
}

impl Validate for StatsConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.consumer_header.is_empty() {
            return Err(ConfigError::new("consumer_header", "must not be empty"));
        }
        self.price_table
            .validate()
            .map_err(|e| e.under("price_table"))?;
        if let Some(h) = &mut self.cost_header {
            if h.trim().is_empty() || h.starts_with(':') {
                return Err(ConfigError::new("cost_header", "must be a header name"));
            }
            *h = h.trim().to_ascii_lowercase();
        }
        for (i, a) in self.attributes.iter_mut().enumerate() {
            if a.key.is_empty() {
                return Err(ConfigError::new(
                    format!("attributes[{i}].key"),
                    "must not be empty",
                ));
            }
            let Some(source) = a.value_source else {
                // A configured `value_source` wins over a built-in of the same key (Higress).
                let builtin = Builtin::from_key(&a.key).ok_or_else(|| {
                    ConfigError::new(
                        format!("attributes[{i}].value_source"),
                        "required, unless the key is a built-in: question, system, answer, \
                         reasoning, tool_calls, reasoning_tokens, cached_tokens, \
                         input_token_details, output_token_details",
                    )
                })?;
                a.builtin = Some(builtin);
                a.sources = builtin.sources();
                continue;
            };
            if a.value.is_empty() && source != ValueSource::FixedValue {
                return Err(ConfigError::new(
                    format!("attributes[{i}].value"),
                    "must name a header or a JSON path",
                ));
            }
            a.sources = vec![Source {
                from: source,
                path: a.value.clone(),
                rule: a.rule,
            }];
            if a.key == sdk::facts::AI_LOG || a.key.contains('.') {
                return Err(ConfigError::new(
                    format!("attributes[{i}].key"),
                    "must not be `ai_log` or contain dots",
                ));
            }
        }
        Ok(())
    }
}
