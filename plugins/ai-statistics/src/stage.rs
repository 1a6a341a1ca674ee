//! The statistics core: observe a request and its answer, then record usage, timings and the
//! access-log fields. Bodies pass untouched; streams are scanned event by event.

use crate::attributes::{self, Collected, StreamedToolCalls};
use crate::config::{Builtin, StatsConfig, ValueSource};
use crate::metrics::{Metrics, Record};
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::host::Host;
use sdk::meter::{Doc, SharedMeter};
use sdk::pipeline::{BodyMode, BodyOutcome, ChunkOut, Exchange, Need, RequestBody, Stage};
use sdk::usage;
use sdk::usage::json::JsonRead;
use serde_json::Value;
use std::rc::Rc;
use std::time::SystemTime;

use sdk::facts::{AI_LOG, CACHE_STATUS, PROVIDER as PROVIDER_FACT};

/// Config plus the VM's metric registry.
pub struct Shared {
    /// Parsed rules.
    pub rules: RuleSet<StatsConfig>,
    /// Metric ids and label bounds.
    pub metrics: Metrics,
}

/// Per-request state (lives in the HTTP context).
pub struct StatsStage {
    shared: Rc<Shared>,
    /// The config this request's route selected.
    active: Option<Rc<StatsConfig>>,
    start: Option<SystemTime>,
    first_byte: Option<SystemTime>,
    end: Option<SystemTime>,
    consumer: String,
    request_model: String,
    response_model: Option<String>,
    stream: bool,
    status: u32,
    chat_round: usize,
    /// Whether this stage feeds the answer's shared meter.
    metered: bool,
    attrs: Collected,
    /// Streamed tool calls, joined (only when a `tool_calls` built-in is configured).
    tool_calls: Option<StreamedToolCalls>,
}

impl StatsStage {
    /// A stage over the shared config.
    pub fn new(shared: Rc<Shared>) -> StatsStage {
        StatsStage {
            shared,
            active: None,
            start: None,
            first_byte: None,
            end: None,
            consumer: String::new(),
            request_model: String::new(),
            response_model: None,
            stream: false,
            status: 0,
            chat_round: 0,
            metered: false,
            attrs: Collected::default(),
            tool_calls: None,
        }
    }

    fn config(&self) -> Option<&StatsConfig> {
        self.active.as_deref()
    }

    /// Offers attribute values from one JSON document of `source`.
    fn collect_json<'a, J: JsonRead<'a>>(&mut self, source: ValueSource, doc: J) {
        let Some(config) = self.active.as_deref() else {
            return;
        };
        for (i, a) in config.attributes.iter().enumerate() {
            for src in a.sources.iter().filter(|s| s.from == source) {
                if self.attrs.settled(i, src) {
                    continue;
                }
                if let Some(v) = attributes::lookup(doc, &src.path) {
                    let text = attributes::text_of(v);
                    self.attrs
                        .offer(i, a, src, &text, config.value_length_limit);
                }
            }
        }
        if source == ValueSource::ResponseStreamingBody {
            if let Some(calls) = self.tool_calls.as_mut() {
                calls.feed(doc);
            }
        }
    }

    /// Offers attribute values from headers (or fixed values) of `source`.
    fn collect_headers(&mut self, source: ValueSource, get: impl Fn(&str) -> Option<String>) {
        let Some(config) = self.active.as_deref() else {
            return;
        };
        for (i, a) in config.attributes.iter().enumerate() {
            for src in a.sources.iter().filter(|s| s.from == source) {
                let value = match source {
                    ValueSource::FixedValue => Some(src.path.clone()),
                    _ => get(&src.path),
                };
                if let Some(v) = value {
                    self.attrs.offer(i, a, src, &v, config.value_length_limit);
                }
            }
        }
    }
}

/// One value of the access-log object.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LogValue<'a> {
    Text(&'a str),
    Number(u64),
    Bool(bool),
    /// A field another plugin wrote (kept as it was).
    Json(&'a serde_json::Value),
    /// A JSON number written as is (a decimal amount).
    Decimal(&'a str),
}

/// The `wasm.ai_log` object: keys in first-set order, a key set again keeps its place and takes
/// the new value (as a JSON object built by inserting would).
#[derive(Debug, Default)]
struct LogFields<'a> {
    fields: Vec<(&'a str, LogValue<'a>)>,
}

impl<'a> LogFields<'a> {
    fn set(&mut self, key: &'a str, value: LogValue<'a>) {
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key, value)),
        }
    }

    /// The object as compact JSON.
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.push(b'{');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, key);
            out.push(b':');
            let _ = match value {
                LogValue::Text(s) => serde_json::to_writer(&mut out, s),
                LogValue::Number(n) => serde_json::to_writer(&mut out, n),
                LogValue::Bool(b) => serde_json::to_writer(&mut out, b),
                LogValue::Json(v) => serde_json::to_writer(&mut out, v),
                LogValue::Decimal(d) => {
                    out.extend_from_slice(d.as_bytes());
                    Ok(())
                }
            };
        }
        out.push(b'}');
        out
    }
}

fn ms_between(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<u64> {
    let d = b?.duration_since(a?).ok()?;
    u64::try_from(d.as_millis()).ok()
}

impl StatsStage {
    /// Sets the configured cost header from the whole answer's usage.
    fn set_cost_header(&mut self, host: &dyn Host, ex: &mut Exchange) {
        let Some(config) = self.active.as_deref() else {
            return;
        };
        let Some(header) = &config.cost_header else {
            return;
        };
        if !(200..400).contains(&self.status) {
            return;
        }
        let usage = SharedMeter::finish(ex, config.estimate_tokens);
        let answered = SharedMeter::get(ex).and_then(|m| m.response_model());
        let cost = answered
            .and_then(|m| config.price_table.cost(m, &usage))
            .or_else(|| config.price_table.cost(&self.request_model, &usage));
        if let Some(cost) = cost {
            let value = sdk::cost::format_micros(cost);
            ex.set_response_header(host, header, Some(&value));
        }
    }
}

impl Stage for StatsStage {
    fn name(&self) -> &'static str {
        "ai-statistics"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        if !ex.api().is_llm() {
            return Ok(Need::Nothing);
        }
        let Some(config) = self.shared.rules.select(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        self.active = Some(config.clone());
        self.start = Some(ex.now(host));
        self.consumer = ex
            .request_header(host, &config.consumer_header)
            .unwrap_or_default();
        self.attrs = Collected::new(config.attributes.len());
        self.tool_calls = config
            .attributes
            .iter()
            .any(|a| a.builtin == Some(Builtin::ToolCalls))
            .then(StreamedToolCalls::default);
        self.collect_headers(ValueSource::FixedValue, |_| None);
        self.collect_headers(ValueSource::RequestHeader, |name| {
            ex.request_header(host, name)
        });
        Ok(Need::Body)
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let Some(config) = self.active.as_deref() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        if ex.body_error.is_some() {
            // Observed and let through untouched, whatever the body is.
            let route = ex.route_name(host).unwrap_or_default();
            self.shared.metrics.count_unparsed(host, &route);
        }
        let estimate = config.estimate_tokens;
        let body_attributes = config
            .attributes
            .iter()
            .any(|a| a.sources.iter().any(|s| s.from == ValueSource::RequestBody));
        let builtins = config
            .attributes
            .iter()
            .any(|a| matches!(a.builtin, Some(Builtin::Question | Builtin::System)));
        let Some(body) = ex.body.as_ref() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        self.request_model = body.model().unwrap_or_default().to_string();
        (self.stream, self.chat_round) = match body {
            RequestBody::Chat(c) => (
                c.stream == Some(true),
                c.messages.iter().filter(|m| m.role == "user").count(),
            ),
            RequestBody::Messages(m) => (
                m.stream == Some(true),
                m.messages.iter().filter(|m| m.role == "user").count(),
            ),
            RequestBody::Json(v) => (v.get("stream") == Some(&Value::Bool(true)), 0),
        };
        if builtins {
            let (question, system) = attributes::question_and_system(body);
            let limit = config.value_length_limit;
            for (i, a) in config.attributes.iter().enumerate() {
                let value = match a.builtin {
                    Some(Builtin::Question) => question.clone(),
                    Some(Builtin::System) => system.clone(),
                    _ => None,
                };
                if let Some(v) = value {
                    self.attrs.set(i, a, v, limit);
                }
            }
        }
        if body_attributes {
            match ex.client_json() {
                Some(doc) => self.collect_json(ValueSource::RequestBody, doc),
                None => {
                    if let Some(doc) = body.to_json() {
                        self.collect_json(ValueSource::RequestBody, &doc);
                    }
                }
            }
        }
        if estimate {
            // Taken now, from the body as the client sent it; the exchange keeps it for on_log.
            ex.prompt_text();
        }
        Ok(BodyOutcome::UNCHANGED)
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        if self.active.is_none() {
            return BodyMode::Untouched;
        }
        self.status = ex.response_status(host);
        self.collect_headers(ValueSource::ResponseHeader, |name| {
            host.response_header(name)
        });
        let content_type = ex.response_header(host, "content-type").unwrap_or_default();
        let estimate = self.config().is_some_and(|c| c.estimate_tokens);
        let stream = content_type.contains("text/event-stream");
        SharedMeter::start(ex, stream, estimate, &self.request_model);
        self.metered = true;
        // The cost header needs the whole answer before the headers go (not for streams).
        if !stream && self.config().is_some_and(|c| c.cost_header.is_some()) {
            return BodyMode::Whole;
        }
        BodyMode::Stream
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> ChunkOut {
        if !self.metered {
            return ChunkOut::pass(chunk);
        }
        if self.first_byte.is_none() && !chunk.is_empty() {
            self.first_byte = Some(ex.now(host));
        }
        SharedMeter::feed(ex, &chunk, end, |doc, json| {
            let source = match doc {
                Doc::Event => ValueSource::ResponseStreamingBody,
                Doc::Body => ValueSource::ResponseBody,
            };
            self.collect_json(source, json);
        });
        if end {
            self.end = Some(ex.now(host));
            if ex.response_headers_held() {
                self.set_cost_header(host, ex);
            }
        }
        ChunkOut::pass(chunk)
    }

    fn on_log(&mut self, host: &dyn Host, ex: &mut Exchange) {
        let Some(config) = self.active.as_deref() else {
            return;
        };
        let end = match self.end {
            Some(end) => end,
            None => ex.now(host),
        };
        let usage = if self.metered {
            SharedMeter::finish(ex, config.estimate_tokens)
        } else {
            usage::Usage::default()
        };
        let meter = SharedMeter::get(ex).filter(|_| self.metered);
        self.response_model = meter.and_then(|m| m.response_model()).map(str::to_string);
        let stream = meter.is_some_and(|m| m.is_stream()) || self.stream;
        let provider = ex
            .fact(host, PROVIDER_FACT)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let model = self
            .response_model
            .clone()
            .unwrap_or_else(|| self.request_model.clone());
        // Priced by the model that answered, else the one asked for; errors and local replies
        // (a refusal) are not billed.
        let billed = (200..400).contains(&self.status);
        let cost = config
            .price_table
            .cost(&model, &usage)
            .or_else(|| config.price_table.cost(&self.request_model, &usage))
            .filter(|_| billed);
        let record = Record {
            cost,
            route: ex.route_name(host).unwrap_or_default(),
            cluster: ex.cluster_name(host).unwrap_or_default(),
            model,
            consumer: std::mem::take(&mut self.consumer),
            provider,
            operation: ex.api().operation_name(),
            stream,
            usage,
            first_token_ms: if stream {
                ms_between(self.start, self.first_byte)
            } else {
                None
            },
            duration_ms: ms_between(self.start, Some(end)).unwrap_or(0),
        };
        self.shared
            .metrics
            .record(host, &record, config.higress_metrics, config.otel_metrics);

        let usage = &record.usage;
        // Fields other plugins put in the log (ai-security-guard's `safecheck_*`) stay.
        let others: serde_json::Map<String, serde_json::Value> = ex
            .fact(host, AI_LOG)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut log = LogFields::default();
        log.set("model", LogValue::Text(&record.model));
        log.set("request_model", LogValue::Text(&self.request_model));
        log.set("provider", LogValue::Text(&record.provider));
        log.set("route", LogValue::Text(&record.route));
        log.set("cluster", LogValue::Text(&record.cluster));
        log.set("consumer", LogValue::Text(&record.consumer));
        let response_type = if stream { "stream" } else { "normal" };
        log.set("response_type", LogValue::Text(response_type));
        log.set("status", LogValue::Number(u64::from(self.status)));
        log.set("chat_round", LogValue::Number(self.chat_round as u64));
        log.set("input_token", LogValue::Number(usage.input));
        log.set("output_token", LogValue::Number(usage.output));
        log.set("total_token", LogValue::Number(usage.total));
        log.set("cached_input_token", LogValue::Number(usage.cached_input));
        log.set("reasoning_token", LogValue::Number(usage.reasoning));
        log.set("usage_estimated", LogValue::Bool(usage.estimated));
        let cache_status = ex
            .fact(host, CACHE_STATUS)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .filter(|s| !s.is_empty());
        if let Some(status) = cache_status.as_deref() {
            log.set("cache_status", LogValue::Text(status));
        }
        let cost = record.cost.map(sdk::cost::format_micros);
        if let Some(cost) = &cost {
            log.set("cost", LogValue::Decimal(cost));
            log.set("currency", LogValue::Text(&config.price_table.currency));
        }
        if let Some(ttft) = record.first_token_ms {
            log.set("llm_first_token_duration", LogValue::Number(ttft));
        }
        log.set("llm_service_duration", LogValue::Number(record.duration_ms));
        if let Some(calls) = self.tool_calls.as_ref().and_then(|c| c.finish()) {
            let limit = config.value_length_limit;
            for (i, a) in config.attributes.iter().enumerate() {
                if a.builtin == Some(Builtin::ToolCalls) {
                    self.attrs.set(i, a, calls.clone(), limit);
                }
            }
        }
        let values: Vec<(usize, String)> = self.attrs.finish(&config.attributes).collect();
        for (i, value) in &values {
            let Some(a) = config.attributes.get(*i) else {
                continue;
            };
            if a.as_separate_log_field {
                let _ = host.set_property(&[a.key.as_str()], value.as_bytes());
            }
            if a.apply_to_log {
                log.set(&a.key, LogValue::Text(value));
            }
        }
        for (key, value) in &others {
            if !log.fields.iter().any(|(k, _)| k == key) {
                log.set(key, LogValue::Json(value));
            }
        }
        let text = log.to_json();
        ex.set_fact(host, AI_LOG, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_fields_write_what_a_json_object_would() {
        let mut log = LogFields::default();
        log.set("model", LogValue::Text("gpt-4o"));
        log.set("status", LogValue::Number(200));
        log.set("usage_estimated", LogValue::Bool(false));
        log.set("answer", LogValue::Text("a \"quoted\"\nline ✓ \u{1}"));
        // A key set again keeps its place and takes the new value (an attribute named like a
        // built-in field).
        log.set("model", LogValue::Text("override"));
        let mut want = serde_json::Map::new();
        want.insert("model".into(), json!("gpt-4o"));
        want.insert("status".into(), json!(200));
        want.insert("usage_estimated".into(), json!(false));
        want.insert("answer".into(), json!("a \"quoted\"\nline ✓ \u{1}"));
        want.insert("model".into(), json!("override"));
        assert_eq!(
            String::from_utf8(log.to_json()).unwrap(),
            Value::Object(want).to_string()
        );
        assert_eq!(LogFields::default().to_json(), b"{}");
    }
}
