//! The ai-proxy core: pick the provider, point the request at it, translate both ways.

use crate::config::{Protocol, ProxyConfig};
use crate::failover;
use crate::providers::{Auth, Family, Provider};
use crate::translate::{claude, messages, StreamTranslator};
use sdk::api::{ApiKind, ClientProtocol};
use sdk::config::{RuleSet, Selected};
use sdk::error::ErrorReply;
use sdk::host::Host;
use sdk::llm::{anthropic, openai};
use sdk::pipeline::{BodyMode, CallResult, Exchange, Need, RequestBody, Stage};
use sdk::sse::{SseDecoder, SseEvent};
use serde_json::{json, Value};
use std::rc::Rc;

/// Filter-state key (`wasm.ai_gateway.provider`) holding the provider type of the request.
pub const PROVIDER_FACT: &str = "ai_gateway.provider";

/// Client headers that carry a key; never forwarded unless configured.
const CLIENT_KEY_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// Longest error text from a non-JSON upstream answer kept in the JSON error.
const MAX_ERROR_TEXT: usize = 512;

/// How the response is rewritten.
enum Response {
    /// Passed through.
    Untouched,
    /// An error answer rewritten into the client's error shape.
    Error { status: u32 },
    /// Anthropic JSON → OpenAI JSON.
    ClaudeJson,
    /// Anthropic SSE → OpenAI SSE.
    ClaudeStream(SseDecoder, claude::ClaudeStream),
    /// OpenAI JSON → Anthropic JSON.
    MessagesJson,
    /// OpenAI SSE → Anthropic SSE.
    MessagesStream(SseDecoder, messages::MessagesStream),
}

/// Per-request state (lives in the HTTP context).
pub struct ProxyStage {
    rules: Rc<RuleSet<ProxyConfig>>,
    active: Option<Selected>,
    token: Option<usize>,
    replay: Option<Replay>,
    response: Response,
}

impl ProxyStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<ProxyConfig>>) -> ProxyStage {
        ProxyStage {
            rules,
            active: None,
            token: None,
            replay: None,
            response: Response::Untouched,
        }
    }

    fn provider(&self) -> Option<&Provider> {
        self.rules.get(self.active?)?.active.as_ref()
    }

    /// Decides how the answer is rewritten, from its status and content type.
    fn plan_response(
        &mut self,
        host: &dyn Host,
        client: ClientProtocol,
        family: Family,
        status: u32,
        content_type: &str,
    ) -> BodyMode {
        let translate = translating(client, family);
        let is_json = content_type.contains("json");
        if status >= 400 {
            if translate || !is_json {
                self.response = Response::Error { status };
                host.set_response_header("content-type", Some("application/json"));
                return BodyMode::Buffer;
            }
            self.response = Response::Untouched;
            return BodyMode::Untouched;
        }
        if !translate {
            self.response = Response::Untouched;
            return BodyMode::Untouched;
        }
        let stream = content_type.contains("text/event-stream");
        self.response = match (client, stream) {
            (ClientProtocol::OpenAi, true) => Response::ClaudeStream(
                SseDecoder::default(),
                // Always end with a usage chunk: the OpenAI SDKs accept it, and counting needs it.
                claude::ClaudeStream::new(true),
            ),
            (ClientProtocol::OpenAi, false) => Response::ClaudeJson,
            (ClientProtocol::Anthropic, true) => {
                Response::MessagesStream(SseDecoder::default(), messages::MessagesStream::new())
            }
            (ClientProtocol::Anthropic, false) => Response::MessagesJson,
        };
        if stream {
            BodyMode::Stream
        } else {
            BodyMode::Buffer
        }
    }

    /// `retryOnFailure`: sends the request again with a key not tried yet, as a callout.
    fn retry_with_another_key(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        p: &Provider,
        status: u32,
    ) -> bool {
        let (Some(retry), Some(replay)) = (&p.retry, self.replay.as_mut()) else {
            return false;
        };
        if replay.retries_left == 0 || !retry.is_retriable(status) {
            return false;
        }
        let Some(index) = (0..p.tokens.len()).find(|i| !replay.tried.contains(i)) else {
            return false;
        };
        let Some(cluster) = ex.cluster_name(host) else {
            return false;
        };
        let Some(token) = p.tokens.get(index) else {
            return false;
        };
        let bearer = format!("Bearer {token}");
        let mut headers = vec![
            (":method", "POST"),
            (":path", replay.path.as_str()),
            (":authority", p.host.as_str()),
            ("content-type", "application/json"),
        ];
        match p.auth {
            Auth::Bearer => headers.push(("authorization", bearer.as_str())),
            Auth::Header(name) => headers.push((name, token.as_str())),
        }
        if p.family == Family::Claude {
            headers.push(("anthropic-version", p.claude_version.as_str()));
        }
        match host.dispatch_http_call(&cluster, &headers, Some(&replay.body), retry.timeout) {
            Ok(call) => {
                replay.call = Some(call);
                replay.tried.push(index);
                replay.retries_left -= 1;
                true
            }
            Err(_) => false,
        }
    }
}

/// What a non-streaming request needs to be sent again with another key.
struct Replay {
    path: String,
    body: Vec<u8>,
    tried: Vec<usize>,
    retries_left: u32,
    call: Option<u32>,
    replacement: Option<Vec<u8>>,
}

fn translating(client: ClientProtocol, family: Family) -> bool {
    matches!(
        (client, family),
        (ClientProtocol::OpenAi, Family::Claude) | (ClientProtocol::Anthropic, Family::OpenAi)
    )
}

impl Stage for ProxyStage {
    fn name(&self) -> &'static str {
        "ai-proxy"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        let rules = self.rules.clone();
        let Some(id) = rules.select_id(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        let Some(p) = rules.get(id).and_then(|c| c.active.as_ref()) else {
            return Ok(Need::Nothing);
        };
        self.active = Some(id);
        // A fact for the other plugins (ai-statistics labels metrics with it).
        let _ = host.set_property(&[PROVIDER_FACT], p.kind.as_bytes());
        let api = ex.api();
        if p.failover.is_some() && p.cluster.borrow().is_none() {
            *p.cluster.borrow_mut() = ex.cluster_name(host);
        }
        self.token = failover::choose(host, p);
        let token = self.token.and_then(|i| p.tokens.get(i)).map(String::as_str);
        if p.protocol == Protocol::Original {
            set_upstream(host, p, None, token);
            return Ok(Need::Nothing);
        }
        let Some(path) = p.path_for(api, &ex.path) else {
            return Err(ErrorReply::new(
                404,
                "invalid_request_error",
                Some("unsupported_endpoint"),
                format!(
                    "{} {} is not available for provider type `{}`",
                    ex.method,
                    ex.path.split('?').next().unwrap_or_default(),
                    p.kind
                ),
            ));
        };
        set_upstream(host, p, Some(&path), token);
        if p.retry.is_some() {
            self.replay = Some(Replay {
                path: path.clone(),
                body: Vec::new(),
                tried: self.token.into_iter().collect(),
                retries_left: p.retry.as_ref().map_or(0, |r| r.max_retries),
                call: None,
                replacement: None,
            });
        }
        if p.family == Family::Claude && api == ApiKind::AnthropicMessages {
            if host.request_header("anthropic-version").is_none() {
                host.set_request_header("anthropic-version", Some(&p.claude_version));
            }
        } else if p.family == Family::Claude {
            host.set_request_header("anthropic-version", Some(&p.claude_version));
        }
        Ok(match api {
            ApiKind::ChatCompletions
            | ApiKind::AnthropicMessages
            | ApiKind::Completions
            | ApiKind::Embeddings => Need::Body,
            ApiKind::Models | ApiKind::Other => Need::Nothing,
        })
    }

    fn on_request_body(&mut self, _host: &dyn Host, ex: &mut Exchange) -> Result<(), ErrorReply> {
        let Some(p) = self.provider() else {
            return Ok(());
        };
        let translated = match ex.body.take() {
            Some(RequestBody::Chat(mut chat)) => {
                let model = p.mapping.map(chat.model.as_deref().unwrap_or_default());
                match p.family {
                    Family::Claude => {
                        let req = claude::to_claude_request(&chat, &model, p.claude_max_tokens)
                            .map_err(|e| ErrorReply::bad_request("unsupported_request", e.0))?;
                        RequestBody::Messages(req)
                    }
                    Family::OpenAi => {
                        chat.model = Some(model);
                        if chat.stream == Some(true) && p.include_usage {
                            ask_for_usage(&mut chat.extra);
                        }
                        RequestBody::Chat(chat)
                    }
                }
            }
            Some(RequestBody::Messages(mut msgs)) => {
                let model = p.mapping.map(msgs.model.as_deref().unwrap_or_default());
                match p.family {
                    Family::Claude => {
                        msgs.model = Some(model);
                        RequestBody::Messages(msgs)
                    }
                    Family::OpenAi => RequestBody::Chat(
                        messages::to_openai_request(&msgs, &model, p.include_usage)
                            .map_err(|e| ErrorReply::bad_request("unsupported_request", e.0))?,
                    ),
                }
            }
            Some(RequestBody::Json(mut v)) => {
                if let Some(model) = v.get("model").and_then(Value::as_str) {
                    v["model"] = json!(p.mapping.map(model));
                }
                if v.get("stream") == Some(&Value::Bool(true)) && p.include_usage {
                    if let Some(obj) = v.as_object_mut() {
                        ask_for_usage(obj);
                    }
                }
                RequestBody::Json(v)
            }
            None => return Ok(()),
        };
        let streaming = match &translated {
            RequestBody::Chat(c) => c.stream == Some(true),
            RequestBody::Messages(m) => m.stream == Some(true),
            RequestBody::Json(v) => v.get("stream") == Some(&Value::Bool(true)),
        };
        let translated = if p.custom_settings.is_empty() {
            translated
        } else {
            let value = match translated {
                RequestBody::Chat(c) => serde_json::to_value(c),
                RequestBody::Messages(m) => serde_json::to_value(m),
                RequestBody::Json(v) => Ok(v),
            };
            let mut value = value
                .map_err(|e| ErrorReply::internal(format!("cannot encode the request: {e}")))?;
            for setting in &p.custom_settings {
                setting.apply(&mut value);
            }
            RequestBody::Json(value)
        };
        if streaming {
            // A stream is answered as it arrives: it cannot be replayed with another key.
            self.replay = None;
        } else if let Some(replay) = self.replay.as_mut() {
            let bytes = match &translated {
                RequestBody::Chat(c) => serde_json::to_vec(c),
                RequestBody::Messages(m) => serde_json::to_vec(m),
                RequestBody::Json(v) => serde_json::to_vec(v),
            };
            match bytes {
                Ok(b) => replay.body = b,
                Err(_) => self.replay = None,
            }
        }
        ex.body = Some(translated);
        ex.body_changed = true;
        Ok(())
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        let rules = self.rules.clone();
        let Some(p) = self
            .active
            .and_then(|id| rules.get(id))
            .and_then(|c| c.active.as_ref())
        else {
            return BodyMode::Untouched;
        };
        if p.protocol == Protocol::Original {
            return BodyMode::Untouched;
        }
        let status: u32 = host
            .response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        if let Some(index) = self.token {
            failover::report(host, p, index, status);
        }
        if self.retry_with_another_key(host, ex, p, status) {
            return BodyMode::Hold;
        }
        let content_type = host.response_header("content-type").unwrap_or_default();
        self.plan_response(host, ex.protocol(), p.family, status, &content_type)
    }

    fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        token: u32,
        body_size: usize,
    ) -> CallResult {
        let rules = self.rules.clone();
        let Some(p) = self
            .active
            .and_then(|id| rules.get(id))
            .and_then(|c| c.active.as_ref())
        else {
            return CallResult::NotMine;
        };
        let Some(replay) = self.replay.as_mut().filter(|r| r.call == Some(token)) else {
            return CallResult::NotMine;
        };
        replay.call = None;
        let status = host
            .http_call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        if let (Some(status), Some(index)) = (status, replay.tried.last().copied()) {
            failover::report(host, p, index, status);
        }
        if let Some(status) = status {
            if self.retry_with_another_key(host, ex, p, status) {
                return CallResult::Wait;
            }
            let content_type = host
                .http_call_response_header("content-type")
                .unwrap_or_default();
            let body = host.http_call_response_body(body_size).unwrap_or_default();
            host.set_response_header(":status", Some(&status.to_string()));
            host.set_response_header("content-type", Some(&content_type));
            if let Some(replay) = self.replay.as_mut() {
                replay.replacement = Some(body);
            }
            self.plan_response(host, ex.protocol(), p.family, status, &content_type);
        } else {
            // The retry itself failed (timeout, reset): the first answer goes out as it was.
            let status = host
                .response_header(":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(502);
            let content_type = host.response_header("content-type").unwrap_or_default();
            self.plan_response(host, ex.protocol(), p.family, status, &content_type);
        }
        CallResult::ResumeResponse
    }

    fn on_response_body(
        &mut self,
        _host: &dyn Host,
        ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> Vec<u8> {
        let client = ex.protocol();
        // A retried answer replaces the first one's body.
        let chunk = match self.replay.as_mut().and_then(|r| r.replacement.take()) {
            Some(body) if end => body,
            _ => chunk,
        };
        match &mut self.response {
            Response::Untouched => chunk,
            Response::Error { status } => {
                let reply = match client {
                    ClientProtocol::OpenAi if is_json(&chunk) => {
                        claude::claude_error_to_openai(*status, &chunk)
                    }
                    ClientProtocol::Anthropic if is_json(&chunk) => {
                        messages::openai_error_to_anthropic(*status, &chunk)
                    }
                    _ => text_error(*status, &chunk),
                };
                reply.body(client).into_bytes()
            }
            Response::ClaudeJson => {
                match serde_json::from_slice::<anthropic::MessagesResponse>(&chunk) {
                    Ok(resp) => {
                        serde_json::to_vec(&claude::from_claude_response(&resp)).unwrap_or(chunk)
                    }
                    Err(e) => bad_answer(client, &e),
                }
            }
            Response::MessagesJson => {
                match serde_json::from_slice::<openai::ChatResponse>(&chunk) {
                    Ok(resp) => {
                        serde_json::to_vec(&messages::to_messages_response(&resp)).unwrap_or(chunk)
                    }
                    Err(e) => bad_answer(client, &e),
                }
            }
            Response::ClaudeStream(decoder, tr) => translate_stream(decoder, tr, &chunk, end),
            Response::MessagesStream(decoder, tr) => translate_stream(decoder, tr, &chunk, end),
        }
    }
}

/// Points the request at the provider: host, path, key.
fn set_upstream(host: &dyn Host, p: &Provider, path: Option<&str>, token: Option<&str>) {
    host.set_request_header(":authority", Some(&p.host));
    if let Some(path) = path {
        host.set_request_header(":path", Some(path));
    }
    if !p.passthrough_client_key {
        for h in CLIENT_KEY_HEADERS {
            host.set_request_header(h, None);
        }
        if let Some(token) = token {
            match p.auth {
                Auth::Bearer => {
                    host.set_request_header("authorization", Some(&format!("Bearer {token}")));
                }
                Auth::Header(name) => {
                    host.set_request_header(name, Some(token));
                }
            }
        }
    }
    // Translation and error rewriting need plain bodies.
    host.set_request_header("accept-encoding", None);
    host.set_request_header(
        "x-envoy-upstream-rq-timeout-ms",
        Some(&p.timeout_ms.to_string()),
    );
}

fn ask_for_usage(extra: &mut serde_json::Map<String, Value>) {
    let options = extra.entry("stream_options").or_insert_with(|| json!({}));
    if let Some(obj) = options.as_object_mut() {
        obj.entry("include_usage").or_insert(Value::Bool(true));
    }
}

fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok()
}

fn text_error(status: u32, body: &[u8]) -> ErrorReply {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let message = match text[..end].trim() {
        "" => format!("upstream answered {status}"),
        t => t.to_string(),
    };
    let kind = if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    ErrorReply::new(status, kind, Some("upstream_error"), message)
}

fn bad_answer(client: ClientProtocol, e: &serde_json::Error) -> Vec<u8> {
    ErrorReply::new(
        502,
        "server_error",
        Some("bad_upstream_response"),
        format!("cannot translate the provider's answer: {e}"),
    )
    .body(client)
    .into_bytes()
}

/// Decodes a chunk of upstream SSE and translates the events it completes; memory is the
/// decoder's unfinished tail plus the translator's per-block state.
fn translate_stream(
    decoder: &mut SseDecoder,
    tr: &mut impl StreamTranslator,
    chunk: &[u8],
    end: bool,
) -> Vec<u8> {
    let mut events = Vec::new();
    let mut out = String::new();
    if let Err(e) = decoder.feed(chunk, &mut events) {
        let err = json!({"error": {"message": e.to_string(), "type": "server_error", "code": "bad_upstream_stream"}});
        out.push_str(&SseEvent::data(err.to_string()).encode());
        tr.finish(&mut out);
        return out.into_bytes();
    }
    if end {
        decoder.finish(&mut events);
    }
    for ev in &events {
        tr.on_event(ev, &mut out);
    }
    if end {
        tr.finish(&mut out);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_wasm::types::Action;
    use sdk::config::RuleMode;
    use sdk::host::MockHost;
    use sdk::pipeline::Pipeline;

    fn pipeline(config: &str) -> Pipeline {
        let rules = RuleSet::parse(config.as_bytes(), RuleMode::Override).unwrap();
        Pipeline::new(vec![Box::new(ProxyStage::new(Rc::new(rules)))])
    }

    fn request(p: &mut Pipeline, host: &MockHost, body: &str) {
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        assert_eq!(p.on_request_headers(host, false), Action::Continue);
        assert_eq!(p.on_request_body(host, body.len(), true), Action::Continue);
    }

    #[test]
    fn openai_client_to_claude_json_round_trip() {
        let mut p = pipeline(r#"{"provider":{"type":"claude","apiTokens":["sk-ant"]}}"#);
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
            ("authorization", "Bearer client"),
        ]);
        request(
            &mut p,
            &host,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1/messages")
        );
        assert_eq!(host.request_header("x-api-key").as_deref(), Some("sk-ant"));
        assert_eq!(host.request_header("authorization"), None);
        *host.response_headers.borrow_mut() = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
            ("content-length".into(), "10".into()),
        ];
        assert_eq!(p.on_response_headers(&host), Action::Continue);
        assert_eq!(host.response_header("content-length"), None);
        let answer = r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}"#;
        *host.response_body.borrow_mut() = answer.as_bytes().to_vec();
        assert_eq!(
            p.on_response_body(&host, answer.len() / 2, false),
            Action::Pause
        );
        assert_eq!(
            p.on_response_body(&host, answer.len(), true),
            Action::Continue
        );
        let v: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "hello");
    }

    #[test]
    fn text_errors_become_json() {
        let mut p = pipeline(r#"{"provider":{"type":"openai","apiTokens":["k"]}}"#);
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
        ]);
        request(&mut p, &host, r#"{"model":"m","messages":[]}"#);
        *host.response_headers.borrow_mut() = vec![
            (":status".into(), "504".into()),
            ("content-type".into(), "text/plain".into()),
        ];
        p.on_response_headers(&host);
        assert_eq!(
            host.response_header("content-type").as_deref(),
            Some("application/json")
        );
        *host.response_body.borrow_mut() = b"upstream request timeout".to_vec();
        p.on_response_body(&host, 24, true);
        let v: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
        assert_eq!(v["error"]["message"], "upstream request timeout");
        assert_eq!(v["error"]["type"], "server_error");
    }
}
