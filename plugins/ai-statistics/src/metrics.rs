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
    /// OpenTelemetry `gen_ai.operation.name`: `chat`, `embeddings`, `text_completion`.
    pub operation: &'static str,
    /// Streamed answer.
    pub stream: bool,
    /// Tokens.
    pub usage: Usage,
    /// Time to first token, ms (streams).
    pub first_token_ms: Option<u64>,
    /// Total duration, ms.
    pub duration_ms: u64,
    /// Cost in micro-units of the price table's currency, when the model is priced.
    pub cost: Option<u64>,
}

/// Metric ids and seen label values of one VM (config-level state, not per request).
///
/// Names are formatted and metrics defined once per label tuple; a request then only looks its
/// tuple up and increments.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
    families: RefCell<HashMap<Labels, [Option<u32>; SLOTS]>>,
    seen: RefCell<HashMap<LabelKind, HashSet<String>>>,
    max_values: usize,
}

/// The bounded labels of one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Labels {
    route: String,
    cluster: String,
    model: String,
    consumer: String,
    provider: String,
    operation: &'static str,
    estimated: bool,
}

/// The metrics one label tuple has, in the order they are recorded.
#[derive(Debug, Clone, Copy)]
enum Slot {
    InputToken,
    OutputToken,
    TotalToken,
    ServiceDuration,
    DurationCount,
    FirstTokenDuration,
    StreamDurationCount,
    TokenUsageInput,
    TokenUsageOutput,
    InferenceInput,
    InferenceOutput,
    RequestDuration,
    TimeToFirstToken,
    Cost,
    InferenceCost,
}

const SLOTS: usize = 15;

impl Slot {
    fn kind(self) -> MetricType {
        match self {
            Slot::TokenUsageInput
            | Slot::TokenUsageOutput
            | Slot::RequestDuration
            | Slot::TimeToFirstToken => MetricType::Histogram,
            _ => MetricType::Counter,
        }
    }

    /// The stat name for `labels`.
    fn name(self, l: &Labels) -> String {
        // Values keep their dots (`gpt-3.5-turbo`, `outbound|443||llm.internal`): the
        // stats_tags regexes find each value by the `.<next label>.` that follows it.
        let higress = |metric: &str| {
            format!(
                "route.{}.upstream.{}.model.{}.consumer.{}.metric.{metric}",
                l.route, l.cluster, l.model, l.consumer
            )
        };
        let source = if l.estimated { "estimated" } else { "reported" };
        let otel = |metric: &str, extra: &[(&str, &str)]| {
            let mut s = String::from(metric);
            let base = [
                ("gen_ai_operation_name", l.operation),
                ("gen_ai_provider_name", l.provider.as_str()),
                ("gen_ai_request_model", l.model.as_str()),
                ("route", l.route.as_str()),
                ("consumer", l.consumer.as_str()),
            ];
            for (k, v) in base.iter().chain(extra) {
                s.push('.');
                s.push_str(k);
                s.push_str("=.=");
                s.push_str(v);
                s.push_str(";.;");
            }
            s
        };
        let tokens = |t| [("gen_ai_token_type", t), ("usage_source", source)];
        match self {
            Slot::InputToken => higress("input_token"),
            Slot::OutputToken => higress("output_token"),
            Slot::TotalToken => higress("total_token"),
            Slot::ServiceDuration => higress("llm_service_duration"),
            Slot::DurationCount => higress("llm_duration_count"),
            Slot::FirstTokenDuration => higress("llm_first_token_duration"),
            Slot::StreamDurationCount => higress("llm_stream_duration_count"),
            Slot::TokenUsageInput => otel("gen_ai.client.token.usage", &tokens("input")),
            Slot::TokenUsageOutput => otel("gen_ai.client.token.usage", &tokens("output")),
            Slot::InferenceInput => otel(
                "gen_ai.client.inference.usage.input_tokens",
                &[("usage_source", source)],
            ),
            Slot::InferenceOutput => otel(
                "gen_ai.client.inference.usage.output_tokens",
                &[("usage_source", source)],
            ),
            Slot::RequestDuration => otel("gen_ai.server.request.duration", &[]),
            Slot::TimeToFirstToken => otel("gen_ai.server.time_to_first_token", &[]),
            Slot::Cost => higress("cost_micros"),
            Slot::InferenceCost => otel("gen_ai.client.inference.cost_micros", &[]),
        }
    }
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
        let dirty = |c: char| c == ';' || c == '=' || c.is_control();
        let clean: String = if value.contains(dirty) {
            value
                .chars()
                .map(|c| if dirty(c) { '_' } else { c })
                .collect()
        } else {
            value.to_string()
        };
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

    /// Adds `value` to the metric in `slot` of `ids`, defining it on first use.
    fn add(
        &self,
        host: &dyn Host,
        labels: &Labels,
        ids: &mut [Option<u32>],
        slot: Slot,
        value: u64,
    ) {
        let Some(cell) = ids.get_mut(slot as usize) else {
            return;
        };
        let id = match *cell {
            Some(id) => id,
            None => {
                let name = slot.name(labels);
                let known = self.ids.borrow().get(&name).copied();
                let id = match known {
                    Some(id) => id,
                    None => match host.define_metric(slot.kind(), &name) {
                        Ok(id) => {
                            self.ids.borrow_mut().insert(name, id);
                            id
                        }
                        Err(_) => return,
                    },
                };
                *cell = Some(id);
                id
            }
        };
        let _ = match slot.kind() {
            MetricType::Counter => {
                host.increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
            }
            _ => host.record_metric(id, value),
        };
    }

    /// Counts a request whose body ai-statistics could not read as its API's (not JSON, or
    /// another shape): it was observed and let through untouched.
    pub fn count_unparsed(&self, host: &dyn Host, route: &str) {
        let name = format!(
            "ai_statistics.unparsed_request.route=.={};.;",
            self.bound(LabelKind::Route, route)
        );
        let known = self.ids.borrow().get(&name).copied();
        let id = match known {
            Some(id) => id,
            None => match host.define_metric(MetricType::Counter, &name) {
                Ok(id) => {
                    self.ids.borrow_mut().insert(name, id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = host.increment_metric(id, 1);
    }

    /// Records one request in the enabled naming sets.
    pub fn record(&self, host: &dyn Host, r: &Record, higress: bool, otel: bool) {
        if !higress && !otel {
            return;
        }
        let labels = Labels {
            route: self.bound(LabelKind::Route, &r.route),
            cluster: self.bound(LabelKind::Cluster, &r.cluster),
            model: self.bound(LabelKind::Model, &r.model),
            consumer: self.bound(LabelKind::Consumer, &r.consumer),
            provider: self.bound(LabelKind::Provider, &r.provider),
            operation: if r.operation.is_empty() {
                "chat"
            } else {
                r.operation
            },
            estimated: r.usage.estimated,
        };
        let cached = self.families.borrow().get(&labels).copied();
        let mut ids = cached.unwrap_or([None; SLOTS]);
        let mut add = |slot: Slot, value: u64| self.add(host, &labels, &mut ids, slot, value);
        if higress {
            add(Slot::InputToken, r.usage.input);
            add(Slot::OutputToken, r.usage.output);
            add(Slot::TotalToken, r.usage.total);
            add(Slot::ServiceDuration, r.duration_ms);
            add(Slot::DurationCount, 1);
            if let Some(ttft) = r.first_token_ms {
                add(Slot::FirstTokenDuration, ttft);
                add(Slot::StreamDurationCount, 1);
            }
            if let Some(cost) = r.cost {
                add(Slot::Cost, cost);
            }
        }
        if otel {
            add(Slot::TokenUsageInput, r.usage.input);
            add(Slot::TokenUsageOutput, r.usage.output);
            add(Slot::InferenceInput, r.usage.input);
            add(Slot::InferenceOutput, r.usage.output);
            add(Slot::RequestDuration, r.duration_ms);
            if let Some(ttft) = r.first_token_ms {
                add(Slot::TimeToFirstToken, ttft);
            }
            if let Some(cost) = r.cost {
                add(Slot::InferenceCost, cost);
            }
        }
        if cached != Some(ids) {
            self.families.borrow_mut().insert(labels, ids);
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
            operation: "chat",
            stream: true,
            usage: Usage {
                input: 7,
                output: 3,
                total: 10,
                ..Usage::default()
            },
            first_token_ms: Some(12),
            duration_ms: 40,
            cost: Some(4_350),
        };
        m.record(&host, &r, true, true);
        m.record(&host, &r, true, true);
        assert_eq!(
            host.metric("route.llm.upstream.up.model.gpt-4.1.consumer.ann.metric.cost_micros"),
            Some(8_700)
        );
        let otel = "gen_ai.client.inference.cost_micros.gen_ai_operation_name=.=chat;.;.gen_ai_provider_name=.=openai;.;.gen_ai_request_model=.=gpt-4.1;.;.route=.=llm;.;.consumer=.=ann;.;";
        assert_eq!(host.metric(otel), Some(8_700));
        assert_eq!(
            // The model keeps its dot, as Higress writes it.
            host.metric("route.llm.upstream.up.model.gpt-4.1.consumer.ann.metric.input_token"),
            Some(14)
        );
        assert_eq!(
            host.metric(
                "route.llm.upstream.up.model.gpt-4.1.consumer.ann.metric.llm_stream_duration_count"
            ),
            Some(2)
        );
        let otel = "gen_ai.client.inference.usage.output_tokens.gen_ai_operation_name=.=chat;.;.gen_ai_provider_name=.=openai;.;.gen_ai_request_model=.=gpt-4.1;.;.route=.=llm;.;.consumer=.=ann;.;.usage_source=.=reported;.;";
        assert_eq!(host.metric(otel), Some(6));
        // Embeddings are their own operation.
        let r = Record {
            operation: "embeddings",
            ..r
        };
        m.record(&host, &r, false, true);
        let otel = "gen_ai.client.inference.usage.input_tokens.gen_ai_operation_name=.=embeddings;.;.gen_ai_provider_name=.=openai;.;.gen_ai_request_model=.=gpt-4.1;.;.route=.=llm;.;.consumer=.=ann;.;.usage_source=.=reported;.;";
        assert_eq!(host.metric(otel), Some(7));
    }

    #[test]
    fn metrics_are_defined_once_per_name() {
        let host = MockHost::default();
        let m = Metrics::new(10);
        let mut r = Record {
            route: "llm".into(),
            model: "m".into(),
            usage: Usage {
                input: 1,
                output: 2,
                total: 3,
                ..Usage::default()
            },
            ..Record::default()
        };
        for _ in 0..3 {
            m.record(&host, &r, true, true);
        }
        let defined = |host: &MockHost| {
            host.host_call_counts()
                .iter()
                .find(|(n, _)| *n == "define_metric")
                .map_or(0, |(_, c)| *c)
        };
        // 5 Higress counters, 5 OpenTelemetry metrics (no stream: no first-token metrics).
        assert_eq!(defined(&host), 10);
        assert_eq!(
            host.metric("route.llm.upstream.unknown.model.m.consumer.unknown.metric.total_token"),
            Some(9)
        );
        // Another tuple (a stream, estimated): its own names, defined once too.
        r.first_token_ms = Some(5);
        r.usage.estimated = true;
        m.record(&host, &r, true, true);
        m.record(&host, &r, true, true);
        let estimated = "gen_ai.client.inference.usage.input_tokens.gen_ai_operation_name=.=chat;.;.gen_ai_provider_name=.=unknown;.;.gen_ai_request_model=.=m;.;.route=.=llm;.;.consumer=.=unknown;.;.usage_source=.=estimated;.;";
        assert_eq!(host.metric(estimated), Some(2));
        // Higress names do not carry the source: only the two stream metrics are new; the
        // OpenTelemetry names with `estimated` (4) and time to first token (1) are new.
        assert_eq!(defined(&host), 10 + 2 + 5);
        assert_eq!(
            host.metric("route.llm.upstream.unknown.model.m.consumer.unknown.metric.total_token"),
            Some(15)
        );
    }
}
