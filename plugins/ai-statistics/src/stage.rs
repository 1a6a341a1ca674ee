//! The statistics core: observe a request and its answer, then record usage, timings and the
//! access-log fields. Bodies pass untouched; streams are scanned event by event.

use crate::attributes::{self, Collected};
use crate::config::{StatsConfig, ValueSource};
use crate::metrics::{Metrics, Record};
use sdk::api::ApiKind;
use sdk::config::{RuleSet, Selected};
use sdk::error::ErrorReply;
use sdk::host::{Host, LogLevel};
use sdk::meter::{Doc, UsageMeter};
use sdk::pipeline::{BodyMode, Exchange, Need, RequestBody, Stage};
use sdk::usage;
use serde_json::{json, Map, Value};
use std::rc::Rc;
use std::time::SystemTime;

/// Filter-state key ai-proxy writes the provider type to.
pub const PROVIDER_FACT: &str = "ai_gateway.provider";
/// Filter-state key of the access-log JSON (`%FILTER_STATE(wasm.ai_log:PLAIN)%`).
pub const AI_LOG: &str = "ai_log";

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
    active: Option<Selected>,
    start: Option<SystemTime>,
    first_byte: Option<SystemTime>,
    end: Option<SystemTime>,
    consumer: String,
    request_model: String,
    response_model: Option<String>,
    stream: bool,
    status: u32,
    chat_round: usize,
    prompt: Option<String>,
    meter: Option<UsageMeter>,
    attrs: Collected,
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
            prompt: None,
            meter: None,
            attrs: Collected::default(),
        }
    }

    fn config(&self) -> Option<&StatsConfig> {
        self.shared.rules.get(self.active?)
    }

    /// Offers attribute values from one JSON document of `source`.
    fn collect_json(&mut self, source: ValueSource, doc: &Value) {
        let shared = self.shared.clone();
        let Some(config) = self.active.and_then(|id| shared.rules.get(id)) else {
            return;
        };
        for (i, a) in config.attributes.iter().enumerate() {
            if a.value_source == source {
                if let Some(v) = attributes::lookup(doc, &a.value) {
                    self.attrs
                        .offer(i, a, attributes::text(v), config.value_length_limit);
                }
            }
        }
    }

    /// Offers attribute values from headers (or fixed values) of `source`.
    fn collect_headers(&mut self, source: ValueSource, get: impl Fn(&str) -> Option<String>) {
        let shared = self.shared.clone();
        let Some(config) = self.active.and_then(|id| shared.rules.get(id)) else {
            return;
        };
        for (i, a) in config.attributes.iter().enumerate() {
            let value = match (a.value_source, source) {
                (ValueSource::FixedValue, ValueSource::FixedValue) => Some(a.value.clone()),
                (s, t) if s == t => get(&a.value),
                _ => None,
            };
            if let Some(v) = value {
                self.attrs.offer(i, a, v, config.value_length_limit);
            }
        }
    }
}

fn ms_between(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<u64> {
    let d = b?.duration_since(a?).ok()?;
    u64::try_from(d.as_millis()).ok()
}

fn is_llm(api: ApiKind) -> bool {
    matches!(
        api,
        ApiKind::ChatCompletions
            | ApiKind::AnthropicMessages
            | ApiKind::Completions
            | ApiKind::Embeddings
    )
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
        if !is_llm(ex.api()) {
            return Ok(Need::Nothing);
        }
        let shared = self.shared.clone();
        let Some(id) = shared.rules.select_id(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        self.active = Some(id);
        let Some(config) = shared.rules.get(id) else {
            return Ok(Need::Nothing);
        };
        self.start = Some(host.now());
        self.consumer = host
            .request_header(&config.consumer_header)
            .unwrap_or_default();
        self.attrs = Collected::new(config.attributes.len());
        self.collect_headers(ValueSource::FixedValue, |_| None);
        self.collect_headers(ValueSource::RequestHeader, |name| host.request_header(name));
        Ok(Need::Body)
    }

    fn on_request_body(&mut self, _host: &dyn Host, ex: &mut Exchange) -> Result<(), ErrorReply> {
        let Some(config) = self.config() else {
            return Ok(());
        };
        let estimate = config.estimate_tokens;
        let body_attributes = config
            .attributes
            .iter()
            .any(|a| a.value_source == ValueSource::RequestBody);
        let Some(body) = ex.body.as_ref() else {
            return Ok(());
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
        if body_attributes {
            if let Some(doc) = body.to_json() {
                self.collect_json(ValueSource::RequestBody, &doc);
            }
        }
        if estimate {
            self.prompt = Some(ex.prompt_text().to_string());
        }
        Ok(())
    }

    fn on_response_headers(&mut self, host: &dyn Host, _ex: &mut Exchange) -> BodyMode {
        if self.active.is_none() {
            return BodyMode::Untouched;
        }
        self.status = host
            .response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.collect_headers(ValueSource::ResponseHeader, |name| {
            host.response_header(name)
        });
        let content_type = host.response_header("content-type").unwrap_or_default();
        let estimate = self.config().is_some_and(|c| c.estimate_tokens);
        self.meter = Some(UsageMeter::new(
            content_type.contains("text/event-stream"),
            estimate,
            &self.request_model,
        ));
        BodyMode::Stream
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        _ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> Vec<u8> {
        let Some(mut meter) = self.meter.take() else {
            return chunk;
        };
        if self.first_byte.is_none() && !chunk.is_empty() {
            self.first_byte = Some(host.now());
        }
        meter.feed(&chunk, end, |doc, json| {
            let source = match doc {
                Doc::Event => ValueSource::ResponseStreamingBody,
                Doc::Body => ValueSource::ResponseBody,
            };
            self.collect_json(source, json);
        });
        if end {
            self.end = Some(host.now());
        }
        self.meter = Some(meter);
        chunk
    }

    fn on_log(&mut self, host: &dyn Host, ex: &mut Exchange) {
        let shared = self.shared.clone();
        let Some(config) = self.active.and_then(|id| shared.rules.get(id)) else {
            return;
        };
        let end = self.end.unwrap_or_else(|| host.now());
        let usage = match self.meter.as_mut() {
            Some(m) => m.finish(self.prompt.as_deref()),
            None => usage::Usage::default(),
        };
        self.response_model = self
            .meter
            .as_ref()
            .and_then(|m| m.response_model())
            .map(str::to_string);
        let provider = host
            .property(&[PROVIDER_FACT])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let model = self
            .response_model
            .clone()
            .unwrap_or_else(|| self.request_model.clone());
        let stream = self.meter.as_ref().is_some_and(UsageMeter::is_stream) || self.stream;
        let record = Record {
            route: ex.route_name(host).unwrap_or_default(),
            cluster: ex.cluster_name(host).unwrap_or_default(),
            model: model.clone(),
            consumer: self.consumer.clone(),
            provider: provider.clone(),
            stream,
            usage: usage.clone(),
            first_token_ms: if stream {
                ms_between(self.start, self.first_byte)
            } else {
                None
            },
            duration_ms: ms_between(self.start, Some(end)).unwrap_or(0),
        };
        shared
            .metrics
            .record(host, &record, config.higress_metrics, config.otel_metrics);

        let mut log = Map::new();
        log.insert("model".into(), json!(model));
        log.insert("request_model".into(), json!(self.request_model));
        log.insert("provider".into(), json!(provider));
        log.insert("route".into(), json!(record.route));
        log.insert("cluster".into(), json!(record.cluster));
        log.insert("consumer".into(), json!(self.consumer));
        log.insert(
            "response_type".into(),
            json!(if stream { "stream" } else { "normal" }),
        );
        log.insert("status".into(), json!(self.status));
        log.insert("chat_round".into(), json!(self.chat_round));
        log.insert("input_token".into(), json!(usage.input));
        log.insert("output_token".into(), json!(usage.output));
        log.insert("total_token".into(), json!(usage.total));
        log.insert("cached_input_token".into(), json!(usage.cached_input));
        log.insert("reasoning_token".into(), json!(usage.reasoning));
        log.insert("usage_estimated".into(), json!(usage.estimated));
        if let Some(ttft) = record.first_token_ms {
            log.insert("llm_first_token_duration".into(), json!(ttft));
        }
        log.insert("llm_service_duration".into(), json!(record.duration_ms));
        for (i, value) in self.attrs.finish(&config.attributes) {
            let Some(a) = config.attributes.get(i) else {
                continue;
            };
            if a.as_separate_log_field {
                let _ = host.set_property(&[a.key.as_str()], value.as_bytes());
            }
            if a.apply_to_log {
                log.insert(a.key.clone(), json!(value));
            }
        }
        let text = Value::Object(log).to_string();
        if host.set_property(&[AI_LOG], text.as_bytes()).is_err() {
            host.log(LogLevel::Debug, "[ai-statistics] cannot write wasm.ai_log");
        }
    }
}
