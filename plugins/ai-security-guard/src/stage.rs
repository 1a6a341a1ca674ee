//! The guard driven by the pipeline: the prompt is checked (in `bufferLimit` pieces) before the
//! request leaves; the answer is checked whole, or window by window while Envoy holds a
//! streamed answer (sdk's [`HeldStream`]), and cut with an ending that says why.

use crate::config::{GuardConfig, DEFAULT_DENY_MESSAGE};
use crate::core::{self, CallInput, Verdict};
use sdk::api::ClientProtocol;
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::facts::{
    SAFECHECK_REQUEST_ID, SAFECHECK_REQUEST_IDS, SAFECHECK_REQUEST_RT, SAFECHECK_RESPONSE_RT,
    SAFECHECK_RISK_LABEL, SAFECHECK_RISK_WORDS, SAFECHECK_STATUS,
};
use sdk::guard::{
    checked_answer, deny_response, replace_held, split_text, CheckedAnswer, HeldStream,
    JSON_CONTENT_TYPE,
};
use sdk::host::{Host, LogLevel, MetricType};
use sdk::llm::{anthropic, openai};
use sdk::pipeline::{
    BodyMode, BodyOutcome, CallResult, ChunkOut, Exchange, Need, RequestBody, Stage,
};
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// Name in log lines.
const PLUGIN: &str = "ai-security-guard";

/// Which way the checked text travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Request,
    Response,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Response => "response",
        }
    }
}

/// How the answer is checked.
enum Answer {
    Off,
    /// A JSON answer: its text in pieces, the bytes held.
    Json {
        held: usize,
    },
    Stream(Box<HeldStream>),
}

/// A call out to the service.
struct Call {
    token: u32,
    phase: Phase,
    sent: SystemTime,
}

/// Per-request state.
pub struct GuardStage {
    rules: Rc<RuleSet<GuardConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<GuardConfig>>,
    consumer: Option<String>,
    protocol: ClientProtocol,
    stream: bool,
    model: String,
    session: String,
    call: Option<Call>,
    /// Pieces still to check, in order.
    pieces: Vec<String>,
    /// Prompt pieces as they go on (desensitized where the service masked them).
    masked: Vec<String>,
    any_masked: bool,
    answer: Answer,
    /// The answer was cut or replaced: later bytes are dropped.
    blocked: bool,
    request_ids: Vec<String>,
}

impl GuardStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<GuardConfig>>) -> GuardStage {
        GuardStage {
            rules,
            active: None,
            consumer: None,
            protocol: ClientProtocol::OpenAi,
            stream: false,
            model: String::new(),
            session: String::new(),
            call: None,
            pieces: Vec::new(),
            masked: Vec::new(),
            any_masked: false,
            answer: Answer::Off,
            blocked: false,
            request_ids: Vec::new(),
        }
    }

    /// Signs and sends one check; false when it could not be sent.
    fn send(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        config: &GuardConfig,
        phase: Phase,
        text: &str,
    ) -> bool {
        let Some(nonce) = core::nonce() else {
            host.log(
                LogLevel::Warn,
                "[ai-security-guard] no random source for the signature nonce",
            );
            return false;
        };
        if self.session.is_empty() {
            self.session = nonce.clone();
        }
        let now = ex.now(host);
        let timestamp = core::iso8601(now);
        let consumer = self.consumer.as_deref();
        let service = match phase {
            Phase::Request => config.request_service(consumer),
            Phase::Response => config.response_service(consumer),
        };
        let params = core::signed_params(&CallInput {
            action: &config.action,
            service: &service,
            content: text,
            session_id: &self.session,
            access_key: &config.access_key,
            secret_key: &config.secret_key,
            security_token: config.security_token.as_deref(),
            timestamp: &timestamp,
            nonce: &nonce,
        });
        let body = core::form_body(&params);
        let headers = [
            (":method", "POST"),
            (":path", "/"),
            (":authority", config.service_host.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        match host.dispatch_http_call(
            &config.service_name,
            &headers,
            Some(body.as_bytes()),
            Duration::from_millis(config.timeout),
        ) {
            Ok(token) => {
                self.call = Some(Call {
                    token,
                    phase,
                    sent: now,
                });
                true
            }
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!("[ai-security-guard] check not sent: {e:?}"),
                );
                false
            }
        }
    }

    /// Sends the next piece; None when there is none, Some(false) when it could not be sent.
    fn send_next(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        config: &GuardConfig,
        phase: Phase,
    ) -> Option<bool> {
        if self.pieces.is_empty() {
            return None;
        }
        let piece = self.pieces.remove(0);
        let sent = self.send(host, ex, config, phase, &piece);
        if phase == Phase::Request {
            self.masked.push(piece);
        }
        Some(sent)
    }

    /// The verdict on the callout being delivered.
    fn verdict(&mut self, host: &dyn Host, config: &GuardConfig, body_size: usize) -> Verdict {
        let status = host.http_call_response_header(":status");
        let body = host.http_call_response_body(body_size).unwrap_or_default();
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if let Some(id) = parsed.as_ref().and_then(core::request_id) {
            self.request_ids.push(id);
        }
        match (status.as_deref(), parsed) {
            (Some("200"), Some(v)) => core::judge(
                &v,
                config.multimodal(),
                &config.bars(self.consumer.as_deref()),
                config.masks(),
            ),
            (Some("200"), None) => Verdict::Error("service answer is not JSON".into()),
            (Some(s), parsed) => {
                let field = |k: &str| {
                    parsed
                        .as_ref()
                        .and_then(|v| v.get(k))
                        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                        .unwrap_or_default()
                };
                Verdict::Error(format!(
                    "service answered {s} {} {}",
                    field("Code"),
                    field("Message")
                ))
            }
            (None, _) => Verdict::Error("service unreachable or timed out".into()),
        }
    }

    /// Records a result: `safecheck_*` filter state for the access log, metrics, the guardrail
    /// facts other plugins' logs read.
    fn record(
        &self,
        host: &dyn Host,
        ex: &mut Exchange,
        phase: Phase,
        result: &str,
        rt: Option<u128>,
        risk: Option<(&str, &str)>,
    ) {
        let status = match (phase, result) {
            (Phase::Request, "deny") => "reqeust deny".to_string(), // Higress's spelling
            (p, r) => format!("{} {r}", p.name()),
        };
        let set = |key: &str, value: &str| {
            let _ = host.set_property(&[key], value.as_bytes());
        };
        set(SAFECHECK_STATUS, &status);
        let mut log = vec![(SAFECHECK_STATUS, json!(status))];
        let rt_key = match phase {
            Phase::Request => SAFECHECK_REQUEST_RT,
            Phase::Response => SAFECHECK_RESPONSE_RT,
        };
        if let Some(rt) = rt {
            set(rt_key, &rt.to_string());
            log.push((rt_key, json!(rt as u64)));
        }
        if let Some((label, words)) = risk {
            set(SAFECHECK_RISK_LABEL, label);
            set(SAFECHECK_RISK_WORDS, words);
            log.push((SAFECHECK_RISK_LABEL, json!(label)));
            log.push((SAFECHECK_RISK_WORDS, json!(words)));
        }
        if let Some(last) = self.request_ids.last() {
            set(SAFECHECK_REQUEST_ID, last);
            set(SAFECHECK_REQUEST_IDS, &json!(self.request_ids).to_string());
            log.push((SAFECHECK_REQUEST_ID, json!(last)));
            log.push((SAFECHECK_REQUEST_IDS, json!(self.request_ids)));
        }
        ex.merge_ai_log(host, log);
        let blocked = result == "deny";
        set(
            sdk::facts::GUARDRAIL_RESULT,
            if blocked { "blocked" } else { "allowed" },
        );
        set(sdk::facts::GUARDRAIL_DIRECTION, phase.name());
        set(
            sdk::facts::GUARDRAIL_SOURCE,
            if result == "error" {
                "failure"
            } else {
                "service"
            },
        );
        let metric = format!(
            "ai_security_guard.checks.direction=.={};.;.result=.={result};.;",
            phase.name()
        );
        if let Ok(id) = host.define_metric(MetricType::Counter, &metric) {
            let _ = host.increment_metric(id, 1);
        }
        if blocked {
            let name = format!("ai_sec_{}_deny", phase.name());
            if let Ok(id) = host.define_metric(MetricType::Counter, &name) {
                let _ = host.increment_metric(id, 1);
            }
            if let Some((label, _)) = risk {
                let _ = host.set_property(&[sdk::facts::GUARDRAIL_CATEGORIES], label.as_bytes());
            }
        }
    }

    fn deny_text(config: &GuardConfig, advice: Option<&str>) -> String {
        config
            .deny_message
            .clone()
            .or_else(|| advice.map(str::to_string))
            .unwrap_or_else(|| DEFAULT_DENY_MESSAGE.to_string())
    }

    /// The refusal of a prompt, in the client's protocol (or the verdict JSON for `original`).
    fn deny_reply(&self, config: &GuardConfig, label: &str, advice: Option<&str>) -> ErrorReply {
        let message = Self::deny_text(config, advice);
        if config.original_protocol() {
            let body = json!({"code": config.deny_code, "denyMessage": message,
                "blockedDetails": [{"type": label}]});
            return ErrorReply::raw(config.deny_code, JSON_CONTENT_TYPE, body.to_string());
        }
        let (ct, body) = deny_response(
            self.protocol,
            self.stream,
            config.deny_code,
            &message,
            &self.model,
        );
        ErrorReply::raw(config.deny_code, &ct, body)
    }

    /// Puts the masked prompt pieces back into the request (the path's message); says whether
    /// the body changed.
    fn apply_mask(&mut self, ex: &mut Exchange) -> bool {
        let text = self.masked.concat();
        let done = match ex.body.as_mut() {
            Some(RequestBody::Chat(c)) => c.messages.last_mut().map(|m| {
                m.content = Some(openai::Content::Text(text));
            }),
            Some(RequestBody::Messages(m)) => m.messages.last_mut().map(|m| {
                m.content = anthropic::Content::Text(text);
            }),
            _ => None,
        };
        done.is_some()
    }

    fn on_request_verdict(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        config: &GuardConfig,
        verdict: Verdict,
        rt: u128,
    ) -> CallResult {
        match verdict {
            Verdict::Block {
                label,
                words,
                answer,
            } => {
                self.record(
                    host,
                    ex,
                    Phase::Request,
                    "deny",
                    Some(rt),
                    Some((&label, &words)),
                );
                CallResult::Reply(self.deny_reply(config, &label, answer.as_deref()))
            }
            Verdict::Error(why) => {
                self.record(host, ex, Phase::Request, "error", Some(rt), None);
                host.log(
                    LogLevel::Warn,
                    &format!("[ai-security-guard] request check failed: {why}"),
                );
                if config.fail_open {
                    CallResult::ResumeRequest { changed: false }
                } else {
                    CallResult::Reply(self.deny_reply(config, "error", None))
                }
            }
            Verdict::Pass | Verdict::Mask(_) => {
                if let Verdict::Mask(text) = verdict {
                    if let Some(last) = self.masked.last_mut() {
                        *last = text;
                        self.any_masked = true;
                    }
                }
                match self.send_next(host, ex, config, Phase::Request) {
                    Some(true) => CallResult::Wait,
                    Some(false) if !config.fail_open => {
                        self.record(host, ex, Phase::Request, "error", None, None);
                        CallResult::Reply(self.deny_reply(config, "error", None))
                    }
                    _ => {
                        let changed = self.any_masked && self.apply_mask(ex);
                        self.record(
                            host,
                            ex,
                            Phase::Request,
                            if self.any_masked { "mask" } else { "pass" },
                            Some(rt),
                            None,
                        );
                        CallResult::ResumeRequest { changed }
                    }
                }
            }
        }
    }

    fn on_response_verdict(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        config: &GuardConfig,
        verdict: Verdict,
        rt: u128,
    ) -> CallResult {
        let deny = match &verdict {
            Verdict::Block { label, words, .. } => {
                self.record(
                    host,
                    ex,
                    Phase::Response,
                    "deny",
                    Some(rt),
                    Some((label, words)),
                );
                true
            }
            Verdict::Error(why) => {
                self.record(host, ex, Phase::Response, "error", Some(rt), None);
                host.log(
                    LogLevel::Warn,
                    &format!("[ai-security-guard] response check failed: {why}"),
                );
                !config.fail_open
            }
            Verdict::Pass | Verdict::Mask(_) => false,
        };
        let advice = match &verdict {
            Verdict::Block { answer, .. } => answer.clone(),
            _ => None,
        };
        if deny {
            self.blocked = true;
            match &mut self.answer {
                Answer::Json { held } => {
                    let message = Self::deny_text(config, advice.as_deref());
                    let (_, body) = deny_response(self.protocol, false, 200, &message, &self.model);
                    replace_held(host, PLUGIN, *held, body.as_bytes());
                    // The replacement is the whole answer.
                    self.blocked = false;
                    self.answer = Answer::Off;
                }
                Answer::Stream(stream) => {
                    let held = stream.held();
                    let ending = stream.cut();
                    replace_held(host, PLUGIN, held, &ending);
                }
                Answer::Off => {}
            }
            return CallResult::ResumeResponse;
        }
        match &mut self.answer {
            Answer::Json { .. } => match self.send_next(host, ex, config, Phase::Response) {
                Some(true) => CallResult::Wait,
                _ => {
                    self.record(host, ex, Phase::Response, "pass", Some(rt), None);
                    self.answer = Answer::Off;
                    CallResult::ResumeResponse
                }
            },
            Answer::Stream(stream) => {
                // Text that arrived during the check is checked before anything is released.
                let window = stream.window();
                if !window.is_empty() {
                    let text = window.text().to_string();
                    window.roll();
                    if self.send(host, ex, config, Phase::Response, &text) {
                        return CallResult::Wait;
                    }
                }
                if let Answer::Stream(stream) = &mut self.answer {
                    stream.release();
                }
                if !matches!(verdict, Verdict::Error(_)) {
                    self.record(host, ex, Phase::Response, "pass", Some(rt), None);
                }
                CallResult::ResumeResponse
            }
            Answer::Off => CallResult::ResumeResponse,
        }
    }
}

impl Stage for GuardStage {
    fn name(&self) -> &'static str {
        "ai-security-guard"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        if !ex.api().is_chat() {
            return Ok(Need::Nothing);
        }
        let Some(config) = self.rules.select(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        if !config.check_request && !config.check_response {
            return Ok(Need::Nothing);
        }
        self.active = Some(config.clone());
        self.protocol = ex.protocol();
        self.consumer = ex.request_header(host, &config.consumer_header);
        Ok(Need::Body)
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let Some(config) = self.active.clone() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let json = ex
            .client_json()
            .cloned()
            .or_else(|| ex.body.as_ref().and_then(RequestBody::to_json));
        let Some(json) = json else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        self.stream = json.get("stream").and_then(Value::as_bool) == Some(true);
        self.model = json
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !config.check_request {
            return Ok(BodyOutcome::UNCHANGED);
        }
        let Some(paths) = config.paths() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let text = paths.request.text(&json);
        if text.trim().is_empty() {
            return Ok(BodyOutcome::UNCHANGED);
        }
        self.pieces = split_text(&text, config.buffer_limit)
            .into_iter()
            .map(str::to_string)
            .collect();
        match self.send_next(host, ex, &config, Phase::Request) {
            Some(true) => Ok(BodyOutcome::UNCHANGED.waiting(true)),
            _ if config.fail_open => {
                self.record(host, ex, Phase::Request, "error", None, None);
                Ok(BodyOutcome::UNCHANGED)
            }
            _ => {
                self.record(host, ex, Phase::Request, "error", None, None);
                Err(self.deny_reply(&config, "error", None))
            }
        }
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        let Some(config) = self.active.clone() else {
            return BodyMode::Untouched;
        };
        if !config.check_response {
            return BodyMode::Untouched;
        }
        match checked_answer(host, ex, self.protocol, config.stream_window) {
            None => BodyMode::Untouched,
            Some(CheckedAnswer::Stream(stream)) => {
                self.answer = Answer::Stream(stream);
                BodyMode::Stream
            }
            Some(CheckedAnswer::Whole) => {
                self.answer = Answer::Json { held: 0 };
                BodyMode::Buffer
            }
        }
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> ChunkOut {
        if self.blocked {
            return ChunkOut::edited(Vec::new());
        }
        let Some(config) = self.active.clone() else {
            return ChunkOut::pass(chunk);
        };
        match &mut self.answer {
            Answer::Off => ChunkOut::pass(chunk),
            Answer::Json { held } => {
                *held = chunk.len();
                let text = match (serde_json::from_slice::<Value>(&chunk), config.paths()) {
                    (Ok(doc), Some(paths)) => {
                        core::text_at(&doc, &paths.response, &paths.response_fallbacks)
                    }
                    _ => String::new(),
                };
                if text.trim().is_empty() {
                    self.answer = Answer::Off;
                    return ChunkOut::pass(chunk);
                }
                self.pieces = split_text(&text, config.buffer_limit)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                match self.send_next(host, ex, &config, Phase::Response) {
                    Some(true) => ChunkOut::pass(chunk).holding(true),
                    _ if config.fail_open => {
                        self.record(host, ex, Phase::Response, "error", None, None);
                        self.answer = Answer::Off;
                        ChunkOut::pass(chunk)
                    }
                    _ => {
                        self.record(host, ex, Phase::Response, "error", None, None);
                        let message = Self::deny_text(&config, None);
                        let (_, body) =
                            deny_response(self.protocol, false, 200, &message, &self.model);
                        self.answer = Answer::Off;
                        ChunkOut::edited(body.into_bytes())
                    }
                }
            }
            Answer::Stream(stream) => {
                let arrived = stream.arrive(ex, chunk, end);
                if self.call.is_some() {
                    stream.hold();
                    return arrived.out(true);
                }
                if !arrived.check {
                    stream.hold();
                    return arrived.out(true);
                }
                let window = stream.window();
                if window.is_empty() {
                    stream.release();
                    return arrived.out(false);
                }
                let text = window.text().to_string();
                window.roll();
                stream.hold();
                if self.send(host, ex, &config, Phase::Response, &text) {
                    return arrived.out(true);
                }
                self.record(host, ex, Phase::Response, "error", None, None);
                let Answer::Stream(stream) = &mut self.answer else {
                    return arrived.out(false);
                };
                if config.fail_open {
                    stream.release();
                    arrived.out(false)
                } else {
                    self.blocked = true;
                    ChunkOut::replace_held(stream.cut())
                }
            }
        }
    }

    fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        token: u32,
        body_size: usize,
    ) -> CallResult {
        if self.call.as_ref().map(|c| c.token) != Some(token) {
            return CallResult::NotMine;
        }
        let Some(call) = self.call.take() else {
            return CallResult::NotMine;
        };
        let Some(config) = self.active.clone() else {
            return CallResult::NotMine;
        };
        let verdict = self.verdict(host, &config, body_size);
        let rt = ex
            .now(host)
            .duration_since(call.sent)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        match call.phase {
            Phase::Request => self.on_request_verdict(host, ex, &config, verdict, rt),
            Phase::Response => self.on_response_verdict(host, ex, &config, verdict, rt),
        }
    }
}
