//! The moderation core driven by the pipeline: requests checked before they leave, answers
//! checked whole or, when streamed, window by window while Envoy holds the window.

use crate::config::{Direction, ModerationConfig};
use crate::core::{self, ServiceVerdict};
use sdk::api::{ApiKind, ClientProtocol};
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::guard::{checked_answer, replace_held, CheckedAnswer, HeldStream};
use sdk::host::{Host, LogLevel, MetricType};
use sdk::pipeline::{
    BodyMode, BodyOutcome, CallResult, ChunkOut, Exchange, Need, RequestBody, Stage,
};
use serde_json::Value;
use std::rc::Rc;
use std::time::Duration;

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Request => "request",
        Direction::Response => "response",
    }
}

/// How the answer is being checked.
enum Answer {
    /// Not checked.
    Off,
    /// A JSON answer, checked whole.
    Json,
    /// A stream, checked window by window while Envoy holds it.
    Stream(Box<HeldStream>),
}

/// Per-request state (lives in the HTTP context).
pub struct ModerationStage {
    rules: Rc<RuleSet<ModerationConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<ModerationConfig>>,
    protocol: ClientProtocol,
    stream: bool,
    model: String,
    request_call: Option<u32>,
    response_call: Option<u32>,
    answer: Answer,
    /// Bytes Envoy holds for us (since the last release).
    held: usize,
    holding: bool,
    /// The answer was cut: everything after is dropped.
    blocked: bool,
    finished: bool,
}

impl ModerationStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<ModerationConfig>>) -> ModerationStage {
        ModerationStage {
            rules,
            active: None,
            protocol: ClientProtocol::OpenAi,
            stream: false,
            model: String::new(),
            request_call: None,
            response_call: None,
            answer: Answer::Off,
            held: 0,
            holding: false,
            blocked: false,
            finished: false,
        }
    }

    /// Records a decision: a metric and the guardrail fields for the access log.
    fn record(
        &self,
        host: &dyn Host,
        direction: Direction,
        blocked: bool,
        source: &str,
        detail: &str,
    ) {
        let result = if blocked { "blocked" } else { "allowed" };
        let _ = host.set_property(&[sdk::facts::GUARDRAIL_RESULT], result.as_bytes());
        let _ = host.set_property(
            &[sdk::facts::GUARDRAIL_DIRECTION],
            direction_name(direction).as_bytes(),
        );
        let _ = host.set_property(&[sdk::facts::GUARDRAIL_SOURCE], source.as_bytes());
        if blocked {
            let _ = host.set_property(&[sdk::facts::GUARDRAIL_CATEGORIES], detail.as_bytes());
            let name = format!(
                "ai_moderation.denied.direction=.={};.;.source=.={source};.;",
                direction_name(direction)
            );
            if let Ok(id) = host.define_metric(MetricType::Counter, &name) {
                let _ = host.increment_metric(id, 1);
            }
            host.log(
                LogLevel::Info,
                &format!(
                    "[ai-moderation] {} denied by {source}: {detail}",
                    direction_name(direction)
                ),
            );
        }
    }

    fn deny_reply(&self, config: &ModerationConfig) -> ErrorReply {
        let (content_type, body) = core::deny_response(
            self.protocol,
            self.stream,
            config.deny_code,
            &config.deny_message,
            &self.model,
        );
        ErrorReply::raw(config.deny_code, &content_type, body)
    }

    /// Sends `text` to the moderation service; returns the callout token.
    fn ask_service(&self, host: &dyn Host, config: &ModerationConfig, text: &str) -> Option<u32> {
        let service = config.service.as_ref()?;
        let body =
            core::moderation_request(text, service.max_input_chars, service.model.as_deref());
        let bearer = service.api_key.as_ref().map(|k| format!("Bearer {k}"));
        let mut headers = vec![
            (":method", "POST"),
            (":path", service.path.as_str()),
            (":authority", service.authority.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(b) = bearer.as_deref() {
            headers.push(("authorization", b));
        }
        let timeout = Duration::from_millis(service.timeout);
        match host.dispatch_http_call(&service.cluster, &headers, Some(body.as_bytes()), timeout) {
            Ok(token) => Some(token),
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!("[ai-moderation] service call not sent: {e:?}"),
                );
                None
            }
        }
    }

    /// The service's verdict on the callout being delivered: Some(categories) to deny.
    fn service_verdict(
        &self,
        host: &dyn Host,
        config: &ModerationConfig,
        body_size: usize,
    ) -> (bool, String, &'static str) {
        let status = host
            .http_call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        let thresholds = config
            .service
            .as_ref()
            .map(|s| s.thresholds.clone())
            .unwrap_or_default();
        let fail_open = config.service.as_ref().is_none_or(|s| s.fail_open);
        let failure = |why: String| (!fail_open, why, "failure");
        match status {
            Some(200..=299) => {
                let body = host.http_call_response_body(body_size).unwrap_or_default();
                match core::parse_moderation(&body, &thresholds) {
                    ServiceVerdict::Allow => (false, String::new(), "service"),
                    ServiceVerdict::Deny { categories } => (true, categories.join(","), "service"),
                    ServiceVerdict::Invalid(why) => {
                        failure(format!("invalid service answer: {why}"))
                    }
                }
            }
            Some(other) => failure(format!("service answered {other}")),
            None => failure("service unreachable or timed out".to_string()),
        }
    }

    /// Checks the current window locally; when clean and a service is configured, asks it.
    fn check_window(&mut self, host: &dyn Host, end: bool) -> WindowVerdict {
        let Some(config) = self.active.as_deref() else {
            return WindowVerdict::Release;
        };
        let Answer::Stream(stream) = &mut self.answer else {
            return WindowVerdict::Release;
        };
        let window = stream.window();
        if window.is_empty() {
            return WindowVerdict::Release;
        }
        // Mid-stream, a word cut at the window's end is left to the next window (the overlap
        // carries it), so "bomb|ay" is not read as "bomb".
        let full = window.text();
        let text = if end {
            full
        } else {
            let cut = full
                .char_indices()
                .rev()
                .find(|(_, c)| !c.is_alphanumeric())
                .map_or(0, |(i, _)| i);
            &full[..cut]
        };
        let response_rules = config.rules(Direction::Response);
        if let Some(hit) = response_rules.find(text) {
            self.record(host, Direction::Response, true, "local", &hit);
            return WindowVerdict::Cut;
        }
        if !end && response_rules.find(full).is_some() {
            // The unfinished last word may complete a denied one: released now, the client
            // would see it before the next window finds it. Hold until the word ends.
            return WindowVerdict::Hold;
        }
        if config.service.is_some() {
            let text = window.text().to_string();
            window.roll();
            match self.ask_service(host, config, &text) {
                Some(token) => self.response_call = Some(token),
                None if !config.service.as_ref().is_none_or(|s| s.fail_open) => {
                    self.record(
                        host,
                        Direction::Response,
                        true,
                        "failure",
                        "service call not sent",
                    );
                    return WindowVerdict::Cut;
                }
                None => {}
            }
        } else {
            window.roll();
        }
        WindowVerdict::Release
    }

    /// Checks answer bytes; says what goes on.
    fn moderate(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> ChunkOut {
        if self.blocked || self.finished {
            return if self.blocked {
                ChunkOut::edited(Vec::new())
            } else {
                ChunkOut::pass(chunk)
            };
        }
        match &mut self.answer {
            Answer::Off => ChunkOut::pass(chunk),
            Answer::Json => {
                let Some(config) = self.active.as_deref() else {
                    return ChunkOut::pass(chunk);
                };
                let mut text = String::new();
                if let Some(doc) = ex.response_json(&chunk) {
                    sdk::usage::response_text(doc, &mut text);
                }
                self.finished = true;
                if let Some(hit) = config.rules(Direction::Response).find(&text) {
                    self.record(host, Direction::Response, true, "local", &hit);
                    return ChunkOut::edited(
                        core::deny_response(
                            self.protocol,
                            false,
                            200,
                            &config.deny_message,
                            &self.model,
                        )
                        .1
                        .into_bytes(),
                    );
                }
                if let Some(token) = self.ask_service(host, config, &text) {
                    self.response_call = Some(token);
                    self.holding = true;
                    self.held = chunk.len();
                }
                ChunkOut::pass(chunk)
            }
            Answer::Stream(stream) => {
                let arrived = stream.arrive(ex, chunk, end);
                if self.response_call.is_some() {
                    // A check is out: hold this too until its verdict.
                    stream.hold();
                    return arrived.out(true);
                }
                if arrived.check {
                    match self.check_window(host, end) {
                        WindowVerdict::Cut => return ChunkOut::replace_held(self.cut()),
                        WindowVerdict::Hold => self.hold(),
                        WindowVerdict::Release if self.response_call.is_some() => self.hold(),
                        WindowVerdict::Release => self.release(),
                    }
                } else {
                    self.hold();
                }
                arrived.out(self.holding())
            }
        }
    }

    fn stream(&mut self) -> Option<&mut HeldStream> {
        match &mut self.answer {
            Answer::Stream(s) => Some(s),
            _ => None,
        }
    }

    fn hold(&mut self) {
        if let Some(s) = self.stream() {
            s.hold();
        }
    }

    /// The held events go to the client.
    fn release(&mut self) {
        self.held = 0;
        self.holding = false;
        if let Some(s) = self.stream() {
            s.release();
        }
    }

    /// Whether Envoy holds the answer for us.
    fn holding(&self) -> bool {
        match &self.answer {
            Answer::Stream(s) => s.is_holding(),
            _ => self.holding,
        }
    }

    /// Bytes held since the last release.
    fn held(&self) -> usize {
        match &self.answer {
            Answer::Stream(s) => s.held(),
            _ => self.held,
        }
    }

    /// Cuts a stream: the ending to put in place of what is held.
    fn cut(&mut self) -> Vec<u8> {
        self.blocked = true;
        self.stream().map(HeldStream::cut).unwrap_or_default()
    }
}

impl Stage for ModerationStage {
    fn name(&self) -> &'static str {
        "ai-moderation"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        if !ex.api().is_conversation() {
            return Ok(Need::Nothing);
        }
        let Some(config) = self.rules.select(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        if !config.checks(Direction::Request) && !config.checks(Direction::Response) {
            return Ok(Need::Nothing);
        }
        self.active = Some(config.clone());
        self.protocol = ex.protocol();
        Ok(Need::Body)
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let Some(config) = self.active.as_deref() else {
            return Ok(BodyOutcome::UNCHANGED.waiting(self.request_call.is_some()));
        };
        let text = match &ex.body {
            Some(RequestBody::Chat(c)) => {
                self.stream = c.stream == Some(true);
                self.model = c.model.clone().unwrap_or_default();
                core::request_text_openai(c, config.check_scope)
            }
            Some(RequestBody::Messages(m)) => {
                self.stream = m.stream == Some(true);
                self.model = m.model.clone().unwrap_or_default();
                core::request_text_anthropic(m, config.check_scope)
            }
            Some(RequestBody::Json(v)) if ex.api() == ApiKind::Responses => {
                self.stream = v.get("stream").and_then(Value::as_bool) == Some(true);
                self.model = v
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                core::request_text_responses(v, config.check_scope)
            }
            _ => return Ok(BodyOutcome::UNCHANGED.waiting(self.request_call.is_some())),
        };
        if !config.checks(Direction::Request) || text.trim().is_empty() {
            return Ok(BodyOutcome::UNCHANGED.waiting(self.request_call.is_some()));
        }
        if let Some(hit) = config.rules(Direction::Request).find(&text) {
            self.record(host, Direction::Request, true, "local", &hit);
            return Err(self.deny_reply(config));
        }
        if config.service.is_some() {
            match self.ask_service(host, config, &text) {
                Some(token) => self.request_call = Some(token),
                None if config.service.as_ref().is_none_or(|s| s.fail_open) => {}
                None => {
                    self.record(
                        host,
                        Direction::Request,
                        true,
                        "failure",
                        "service call not sent",
                    );
                    return Err(self.deny_reply(config));
                }
            }
        } else {
            self.record(host, Direction::Request, false, "local", "");
        }
        Ok(BodyOutcome::UNCHANGED.waiting(self.request_call.is_some()))
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        let Some(config) = self.active.as_deref() else {
            return BodyMode::Untouched;
        };
        if !config.checks(Direction::Response) {
            return BodyMode::Untouched;
        }
        match checked_answer(host, ex, self.protocol, config.stream_window) {
            None => BodyMode::Untouched,
            Some(CheckedAnswer::Stream(stream)) => {
                self.answer = Answer::Stream(stream);
                BodyMode::Stream
            }
            Some(CheckedAnswer::Whole) => {
                self.answer = Answer::Json;
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
        let out = self.moderate(host, ex, chunk, end);
        // While a window or a check is out, Envoy keeps holding the answer.
        out.holding(self.holding())
    }

    fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        _ex: &mut Exchange,
        token: u32,
        body_size: usize,
    ) -> CallResult {
        let Some(config) = self.active.as_deref() else {
            return CallResult::NotMine;
        };
        if self.request_call == Some(token) {
            self.request_call = None;
            let (deny, detail, source) = self.service_verdict(host, config, body_size);
            self.record(host, Direction::Request, deny, source, &detail);
            if deny {
                return CallResult::Reply(self.deny_reply(config));
            }
            if source == "failure" {
                host.log(
                    LogLevel::Warn,
                    &format!("[ai-moderation] {detail}; allowed (failOpen)"),
                );
            }
            return CallResult::ResumeRequest { changed: false };
        }
        if self.response_call != Some(token) {
            return CallResult::NotMine;
        }
        self.response_call = None;
        let (deny, detail, source) = self.service_verdict(host, config, body_size);
        self.record(host, Direction::Response, deny, source, &detail);
        if deny {
            let held = self.held();
            let replacement = match &self.answer {
                Answer::Json => core::deny_response(
                    self.protocol,
                    false,
                    200,
                    &config.deny_message,
                    &self.model,
                )
                .1
                .into_bytes(),
                _ => self.cut(),
            };
            replace_held(host, "ai-moderation", held, &replacement);
            self.holding = false;
            self.held = 0;
            return CallResult::ResumeResponse;
        }
        // Text that arrived during the check is checked before anything is released.
        if self.stream().is_some_and(|s| !s.window().is_empty()) {
            if self.check_window(host, true) == WindowVerdict::Cut {
                let held = self.held();
                let ending = self.cut();
                replace_held(host, "ai-moderation", held, &ending);
                return CallResult::ResumeResponse;
            }
            if self.response_call.is_some() {
                return CallResult::Wait;
            }
        }
        self.release();
        CallResult::ResumeResponse
    }
}

/// What a checked window of a streamed answer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowVerdict {
    /// Clean: the held events go to the client (or wait for the service's verdict).
    Release,
    /// Denied: the held events are replaced by the stream's ending.
    Cut,
    /// Not decided until the last word ends: keep holding.
    Hold,
}
