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
    /// Where the value comes from.
    pub value_source: ValueSource,
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
}

impl Validate for StatsConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.consumer_header.is_empty() {
            return Err(ConfigError::new("consumer_header", "must not be empty"));
        }
        for (i, a) in self.attributes.iter().enumerate() {
            if a.key.is_empty() {
                return Err(ConfigError::new(
                    format!("attributes[{i}].key"),
                    "must not be empty",
                ));
            }
            if a.value.is_empty() && a.value_source != ValueSource::FixedValue {
                return Err(ConfigError::new(
                    format!("attributes[{i}].value"),
                    "must name a header or a JSON path",
                ));
            }
            if a.key == "ai_log" || a.key.contains('.') {
                return Err(ConfigError::new(
                    format!("attributes[{i}].key"),
                    "must not be `ai_log` or contain dots",
                ));
            }
        }
        Ok(())
    }
}
