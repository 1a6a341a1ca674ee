//! Metric names and labels: Higress-style and OpenTelemetry GenAI, with bounded cardinality.
//!
//! Envoy has no labelled wasm metrics, so labels live in the stat name and the bootstrap's
//! `stats_config.stats_tags` regexes turn them into Prometheus labels (see `envoy/envoy.yaml`):
//! - Higress: `route.<r>.upstream.<c>.model.<m>.consumer.<u>.metric.<name>` (dots in values
//!   become `_`);
//! - OpenTelemetry: `<name>` followed by `.<label>=.=<value>;.;` per label.

use sdk::host::{Host, MetricType};
use sdk::usage::Usage;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// The word for a missing label value.
pub const UNKNOWN: &str = "unknown";
/// The word for label values past the cardinality bound.
pub const OTHER: &str = "other";

/// Labels whose distinct values are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelKind {
    /// Envoy route.
    Route,
    /// Upstream cluster.
    Cluster,
    /// Model.
    Model,
    /// Consumer.
    Consumer,
    /// Provider type.
    Provider,
}

/// What one request contributes.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Route name.
    pub route: String,
    /// Upstream cluster.
    pub cluster: String,
    /// Model (the response's, else the request's).
    pub model: String,
    /// Consumer.
    pub consumer: String,
    /// Provider type (from ai-proxy's filter state), if known.
    pub provider: String,
    /// Streamed answer.
    pub stream: bool,
    /// Tokens.
    pub usage: Usage,
    /// Time to first token, ms (streams).
    pub first_token_ms: Option<u64>,
    /// Total duration, ms.
    pub duration_ms: u64,
}

/// Metric ids and seen label values of one VM (config-level state, not per request).
#[derive(Debug, Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, (u32, MetricType)>>,
    seen: RefCell<HashMap<LabelKind, HashSet<String>>>,
    max_values: usize,
}

impl Metrics {
    /// A registry that keeps at most `max_values` distinct values per label.
    pub fn new(max_values: usize) -> Metrics {
        Metrics {
            max_values,
            ..Metrics::default()
        }
    }

    /// The label value to use: `unknown` when empty, `other` past the bound.
    pub fn bound(&self, kind: LabelKind, value: &str) -> String {
        if value.is_empty() {
            return UNKNOWN.to_string();
        }
        let clean: String = value
            .chars()
            .map(|c| {
                if c == ';' || c == '=' || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let mut seen = self.seen.borrow_mut();
        let set = seen.entry(kind).or_default();
        if set.contains(&clean) {
            return clean;
        }
        if set.len() >= self.max_values {
            return OTHER.to_string();
        }
        set.insert(clean.clone());
        clean
    }

    fn add(&self, host: &dyn Host, kind: MetricType, name: String, value: u64) {
        let cached = self.ids.borrow().get(&name).copied();
        let id = match cached {
            Some((id, _)) => id,
            None => match host.define_metric(kind, &name) {
                Ok(id) => {
                    self.ids.borrow_mut().insert(name, (id, kind));
                    id
                }
                Err(_) => return,
            },
        };
        let _ = match kind {
            MetricType::Counter => {
                host.increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
            }
            _ => host.record_metric(id, value),
        };
    }

    /// Records one request in the enabled naming sets.
    pub fn record(&self, host: &dyn Host, r: &Record, higress: bool, otel: bool) {
        let route = self.bound(LabelKind::Route, &r.route);
        let cluster = self.bound(LabelKind::Cluster, &r.cluster);
        let model = self.bound(LabelKind::Model, &r.model);
        let consumer = self.bound(LabelKind::Consumer, &r.consumer);
        let provider = self.bound(LabelKind::Provider, &r.provider);
        if higress {
            let dotless = |s: &str| s.replace('.', "_");
            let prefix = format!(
                "route.{}.upstream.{}.model.{}.consumer.{}.metric.",
                dotless(&route),
                dotless(&cluster),
                dotless(&model),
                dotless(&consumer)
            );
            let counter = |name: &str, v: u64| {
                self.add(host, MetricType::Counter, format!("{prefix}{name}"), v)
            };
            counter("input_token", r.usage.input);
            counter("output_token", r.usage.output);
            counter("total_token", r.usage.total);
            counter("llm_service_duration", r.duration_ms);
            counter("llm_duration_count", 1);
            if let Some(ttft) = r.first_token_ms {
                counter("llm_first_token_duration", ttft);
                counter("llm_stream_duration_count", 1);
            }
        }
        if otel {
            let source = if r.usage.estimated {
                "estimated"
            } else {
                "reported"
            };
            let labels = |extra: &[(&str, &str)]| {
                let mut s = String::new();
                let base = [
                    ("gen_ai_operation_name", "chat"),
                    ("gen_ai_provider_name", provider.as_str()),
                    ("gen_ai_request_model", model.as_str()),
                    ("route", route.as_str()),
                    ("consumer", consumer.as_str()),
                ];
                for (k, v) in base.iter().chain(extra) {
                    s.push_str(&format!(".{k}=.={v};.;"));
                }
                s
            };
            let tokens = |t: &str| labels(&[("gen_ai_token_type", t), ("usage_source", source)]);
            self.add(
                host,
                MetricType::Histogram,
                format!("gen_ai.client.token.usage{}", tokens("input")),
                r.usage.input,
            );
            self.add(
                host,
                MetricType::Histogram,
                format!("gen_ai.client.token.usage{}", tokens("output")),
                r.usage.output,
            );
            let usage = labels(&[("usage_source", source)]);
            self.add(
                host,
                MetricType::Counter,
                format!("gen_ai.client.inference.usage.input_tokens{usage}"),
                r.usage.input,
            );
            self.add(
                host,
                MetricType::Counter,
                format!("gen_ai.client.inference.usage.output_tokens{usage}"),
                r.usage.output,
            );
            let plain = labels(&[]);
            self.add(
                host,
                MetricType::Histogram,
                format!("gen_ai.server.request.duration{plain}"),
                r.duration_ms,
            );
            if let Some(ttft) = r.first_token_ms {
                self.add(
                    host,
                    MetricType::Histogram,
                    format!("gen_ai.server.time_to_first_token{plain}"),
                    ttft,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::host::MockHost;

    #[test]
    fn labels_are_bounded() {
        let m = Metrics::new(2);
        assert_eq!(m.bound(LabelKind::Model, ""), "unknown");
        assert_eq!(m.bound(LabelKind::Model, "a"), "a");
        assert_eq!(m.bound(LabelKind::Model, "b;=x"), "b__x");
        assert_eq!(m.bound(LabelKind::Model, "c"), "other");
        assert_eq!(m.bound(LabelKind::Model, "a"), "a");
        assert_eq!(m.bound(LabelKind::Consumer, "c"), "c");
    }

    #[test]
    fn both_naming_sets() {
        let host = MockHost::default();
        let m = Metrics::new(10);
        let r = Record {
            route: "llm".into(),
            cluster: "up".into(),
            model: "gpt-4.1".into(),
            consumer: "ann".into(),
            provider: "openai".into(),
            stream: true,
            usage: Usage {
                input: 7,
                output: 3,
                total: 10,
                ..Usage::default()
            },
            first_token_ms: Some(12),
            duration_ms: 40,
        };
        m.record(&host, &r, true, true);
        m.record(&host, &r, true, true);
        assert_eq!(
            host.metric("route.llm.upstream.up.model.gpt-4_1.consumer.ann.metric.input_token"),
            Some(14)
        );
        assert_eq!(
            host.metric(
                "route.llm.upstream.up.model.gpt-4_1.consumer.ann.metric.llm_stream_duration_count"
            ),
            Some(2)
        );
        let otel = "gen_ai.client.inference.usage.output_tokens.gen_ai_operation_name=.=chat;.;.gen_ai_provider_name=.=openai;.;.gen_ai_request_model=.=gpt-4.1;.;.route=.=llm;.;.consumer=.=ann;.;.usage_source=.=reported;.;";
        assert_eq!(host.metric(otel), Some(6));
    }
}
