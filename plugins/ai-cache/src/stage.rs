//! The cache stage: look the request up (shared data, then Chroma by id, then the nearest
//! neighbour of its embedding), answer a hit in the client's protocol and mode, and store a
//! miss's answer once it finished normally. Every store error or timeout is a miss.

use crate::chroma;
use crate::config::{
    CacheConfig, ChromaTarget, ExactStore, KeyStrategy, Scope, DEFAULT_STREAM_VALUE_FROM,
    DEFAULT_THRESHOLD, DEFAULT_VALUE_FROM,
};
use crate::key::{decide, Decision, Question};
use crate::store::{self, Bounds, Put};
use proxy_wasm::types::MetricType;
use sdk::api::{ApiKind, ClientProtocol};
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::host::{Host, LogLevel};
use sdk::llm::answer::{encode, Answer, Encoding, StreamAssembler};
use sdk::pipeline::{
    BodyMode, BodyOutcome, CallResult, ChunkOut, Exchange, Need, RequestBody, Stage,
};
use sdk::sse::SseDecoder;
use serde_json::Value;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The request header that bypasses the cache (Higress's).
pub const SKIP_HEADER: &str = "x-higress-skip-ai-cache";
/// The response header saying `hit` or `miss`.
pub const STATUS_HEADER: &str = "x-ai-cache";
/// The filter-state fact with the cache status (`wasm.ai_gateway.cache_status`).
pub use sdk::facts::CACHE_STATUS;

/// Largest answer recorded for the cache.
const MAX_RECORD_BYTES: usize = 1 << 20;

/// What the cache did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not a request the cache looks at.
    None,
    /// The client asked to skip the cache.
    Skip,
    /// Not cached by the rules (tools, n > 1, temperature, …).
    Bypass,
    /// Answered from the cache.
    Hit,
    /// Looked up, not found: the answer is stored.
    Miss,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::None => "",
            Status::Skip => "skip",
            Status::Bypass => "bypass",
            Status::Hit => "hit",
            Status::Miss => "miss",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    ExactGet,
    Embed,
    Query,
    Store,
}

/// A lookup step's outcome.
enum Next {
    Hit(Answer),
    Wait,
    Miss,
}

/// The answer of a miss as it passes.
struct Recorder {
    stream: bool,
    decoder: SseDecoder,
    assembler: StreamAssembler,
    /// Text read with a configured `cacheStreamValueFrom`.
    custom_text: Option<String>,
    json: Vec<u8>,
    seen: usize,
    failed: bool,
}

/// Per-request cache state (lives in the HTTP context).
pub struct CacheStage {
    rules: Rc<RuleSet<CacheConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<CacheConfig>>,
    protocol: ClientProtocol,
    consumer: Option<String>,
    status: Status,
    question: Option<Question>,
    embedding: Option<Vec<f32>>,
    pending: Vec<(u32, Call)>,
    lookup_start: Option<SystemTime>,
    record: Option<Recorder>,
}

impl CacheStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<CacheConfig>>) -> CacheStage {
        CacheStage {
            rules,
            active: None,
            protocol: ClientProtocol::OpenAi,
            consumer: None,
            status: Status::None,
            question: None,
            embedding: None,
            pending: Vec::new(),
            lookup_start: None,
            record: None,
        }
    }

    fn set_status(&mut self, host: &dyn Host, ex: &mut Exchange, status: Status) {
        self.status = status;
        ex.set_fact(host, CACHE_STATUS, status.name().as_bytes());
        count(host, &format!("ai_cache.{}", status.name()));
    }

    fn lookup_done(&mut self, host: &dyn Host, ex: &mut Exchange) {
        if let Some(start) = self.lookup_start.take() {
            let ms = ex
                .now(host)
                .duration_since(start)
                .map_or(0, |d| d.as_millis() as u64);
            if let Ok(id) = host.define_metric(MetricType::Histogram, "ai_cache.lookup_duration_ms")
            {
                let _ = host.record_metric(id, ms);
            }
        }
    }

    fn error(&self, host: &dyn Host, what: &str) {
        count(host, "ai_cache.error");
        host.log(
            LogLevel::Warn,
            &format!("[ai-cache] {what}: treated as a miss"),
        );
    }

    fn dispatch(
        &mut self,
        host: &dyn Host,
        target: &ChromaTarget,
        op: &str,
        body: &str,
        call: Call,
    ) -> bool {
        let path = format!("{}/{op}", target.base);
        dispatch_to(
            host,
            &mut self.pending,
            &target.cluster,
            &target.authority,
            &path,
            target.auth.as_deref().map(|k| ("x-chroma-token", k)),
            body,
            target.timeout,
            call,
        )
    }

    /// After the exact stores missed: the semantic lookup, if configured.
    fn start_semantic(&mut self, host: &dyn Host, config: &CacheConfig) -> Next {
        let (Some(e), Some(q)) = (
            config.embedding.as_ref().filter(|_| config.semantic()),
            self.question.as_ref(),
        ) else {
            return Next::Miss;
        };
        if q.text.trim().is_empty() {
            return Next::Miss;
        }
        let body = chroma::embedding_body(&e.model, &q.text);
        let authority = if e.service_host.is_empty() {
            e.service_name.clone()
        } else {
            e.service_host.clone()
        };
        let bearer = e.api_key.as_ref().map(|k| format!("Bearer {k}"));
        if dispatch_to(
            host,
            &mut self.pending,
            &e.service_name,
            &authority,
            &e.path,
            bearer.as_deref().map(|b| ("authorization", b)),
            &body,
            Duration::from_millis(e.timeout),
            Call::Embed,
        ) {
            Next::Wait
        } else {
            self.error(host, "embedding call not sent");
            Next::Miss
        }
    }

    fn now_secs(host: &dyn Host, ex: &mut Exchange) -> u64 {
        ex.now(host)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The local answer for a hit.
    fn hit(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        config: &CacheConfig,
        answer: &Answer,
    ) -> ErrorReply {
        self.lookup_done(host, ex);
        self.set_status(host, ex, Status::Hit);
        let stream = self.question.as_ref().is_some_and(|q| q.stream);
        let id: String = self
            .question
            .as_ref()
            .map_or("", |q| q.key.as_str())
            .chars()
            .rev()
            .take(24)
            .collect();
        let created = Self::now_secs(host, ex);
        let template = match (self.protocol, stream) {
            (ClientProtocol::OpenAi, false) => config.response_template.as_deref(),
            (ClientProtocol::OpenAi, true) => config.stream_response_template.as_deref(),
            _ => None,
        };
        let (content_type, body) = match template {
            Some(t) => {
                let escaped = Value::String(answer.text.clone()).to_string();
                let inner = escaped
                    .get(1..escaped.len().saturating_sub(1))
                    .unwrap_or_default();
                let ct = if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                };
                (ct, t.replacen("%s", inner, 1))
            }
            None => encode(
                answer,
                Encoding {
                    protocol: self.protocol,
                    stream,
                    id: &id,
                    created,
                },
            ),
        };
        ErrorReply::raw(200, content_type, body).with_header(STATUS_HEADER, "hit")
    }

    fn miss(&mut self, host: &dyn Host, ex: &mut Exchange) {
        self.lookup_done(host, ex);
        self.set_status(host, ex, Status::Miss);
    }

    /// Stores a finished answer; true when a callout holds the end of the answer.
    fn store(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        config: &CacheConfig,
        answer: Answer,
    ) -> bool {
        let Some(q) = self.question.clone() else {
            return false;
        };
        let now = Self::now_secs(host, ex);
        let ttl = config.ttl();
        let expires = if ttl == 0 { 0 } else { now + ttl };
        match config.exact_store() {
            ExactStore::Memory => {
                let Ok(bytes) = serde_json::to_vec(&answer) else {
                    return false;
                };
                let (entries, max) = config.memory_bounds();
                match store::put(
                    host,
                    Bounds {
                        entries,
                        bytes: max,
                    },
                    &q.key,
                    &bytes,
                    expires,
                    now,
                ) {
                    Put::Stored(_) | Put::TooLarge => {}
                    Put::Failed(s) => self.error(host, &format!("shared data write failed: {s:?}")),
                }
            }
            ExactStore::Chroma(target) => {
                if let Some(body) = chroma::upsert_body(
                    &q.key,
                    &chroma::EXACT_EMBEDDING,
                    &answer,
                    &q.scope,
                    expires,
                ) {
                    if !self.dispatch(host, &target, "upsert", &body, Call::Store) {
                        self.error(host, "store call not sent");
                    }
                }
            }
        }
        if let (Some(v), Some(e)) = (
            config.vector.as_ref().and_then(|v| v.target.clone()),
            self.embedding.take(),
        ) {
            if config.semantic() {
                if let Some(body) = chroma::upsert_body(&q.key, &e, &answer, &q.scope, expires) {
                    if !self.dispatch(host, &v, "upsert", &body, Call::Store) {
                        self.error(host, "vector store call not sent");
                    }
                }
            }
        }
        !self.pending.is_empty()
    }
}

fn count(host: &dyn Host, name: &str) {
    if let Ok(id) = host.define_metric(MetricType::Counter, name) {
        let _ = host.increment_metric(id, 1);
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch_to(
    host: &dyn Host,
    pending: &mut Vec<(u32, Call)>,
    cluster: &str,
    authority: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: &str,
    timeout: Duration,
    call: Call,
) -> bool {
    let mut headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/json"),
    ];
    if let Some(h) = auth {
        headers.push(h);
    }
    match host.dispatch_http_call(cluster, &headers, Some(body.as_bytes()), timeout) {
        Ok(token) => {
            pending.push((token, call));
            true
        }
        Err(_) => false,
    }
}

impl Stage for CacheStage {
    fn name(&self) -> &'static str {
        "ai-cache"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        if !matches!(
            ex.api(),
            ApiKind::ChatCompletions | ApiKind::AnthropicMessages
        ) {
            return Ok(Need::Nothing);
        }
        let Some(config) = self
            .rules
            .select(|key| ex.match_value(host, key))
            .filter(|c| c.cache_key_strategy != KeyStrategy::Disabled)
        else {
            return Ok(Need::Nothing);
        };
        if ex
            .request_header(host, SKIP_HEADER)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("on"))
        {
            self.set_status(host, ex, Status::Skip);
            return Ok(Need::Nothing);
        }
        self.consumer = ex
            .request_header(host, &config.consumer_header)
            .filter(|c| !c.is_empty());
        self.active = Some(config);
        self.protocol = ex.protocol();
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
        let body = match &ex.body {
            Some(b @ (RequestBody::Chat(_) | RequestBody::Messages(_))) => b.to_json(),
            _ => None,
        };
        let Some(body) = body else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let consumer = match (config.cache_scope, self.consumer.as_deref()) {
            (Scope::Consumer, None) => {
                self.set_status(host, ex, Status::Bypass);
                return Ok(BodyOutcome::UNCHANGED);
            }
            (Scope::Consumer, Some(c)) => Some(c.to_string()),
            (Scope::Route, _) => None,
        };
        let route = ex.route_name(host).unwrap_or_default();
        let q = match decide(&config, &body, &route, consumer.as_deref()) {
            Decision::Cache(q) => q,
            Decision::Bypass(why) => {
                host.log(LogLevel::Debug, &format!("[ai-cache] not cached: {why}"));
                self.set_status(host, ex, Status::Bypass);
                return Ok(BodyOutcome::UNCHANGED);
            }
        };
        self.lookup_start = Some(ex.now(host));
        self.question = Some(q.clone());
        let next = match config.exact_store() {
            ExactStore::Memory => {
                let (entries, bytes) = config.memory_bounds();
                let now = Self::now_secs(host, ex);
                let found = store::get(host, Bounds { entries, bytes }, &q.key, now)
                    .and_then(|b| serde_json::from_slice::<Answer>(&b).ok());
                match found {
                    Some(answer) => Next::Hit(answer),
                    None => self.start_semantic(host, &config),
                }
            }
            ExactStore::Chroma(target) => {
                if self.dispatch(
                    host,
                    &target,
                    "get",
                    &chroma::get_body(&q.key),
                    Call::ExactGet,
                ) {
                    Next::Wait
                } else {
                    self.error(host, "cache call not sent");
                    self.start_semantic(host, &config)
                }
            }
        };
        match next {
            Next::Hit(answer) => Err(self.hit(host, ex, &config, &answer)),
            Next::Wait => Ok(BodyOutcome::UNCHANGED.waiting(true)),
            Next::Miss => {
                self.miss(host, ex);
                Ok(BodyOutcome::UNCHANGED)
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
        let Some(at) = self.pending.iter().position(|(t, _)| *t == token) else {
            return CallResult::NotMine;
        };
        let (_, call) = self.pending.remove(at);
        let Some(config) = self.active.clone() else {
            return CallResult::ResumeRequest { changed: false };
        };
        let status = host
            .http_call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        let body = match status {
            Some(200..=299) => Ok(host.http_call_response_body(body_size).unwrap_or_default()),
            Some(s) => Err(format!("answered {s}")),
            None => Err("unreachable or timed out".to_string()),
        };
        let now = Self::now_secs(host, ex);
        let next = match call {
            Call::Store => {
                if let Err(e) = body {
                    self.error(host, &format!("store {e}"));
                }
                return if self.pending.iter().any(|(_, c)| *c == Call::Store) {
                    CallResult::Wait
                } else {
                    CallResult::ResumeResponse
                };
            }
            Call::ExactGet => match body.and_then(|b| chroma::read_get(&b, now)) {
                Ok(Some(answer)) => Next::Hit(answer),
                Ok(None) => self.start_semantic(host, &config),
                Err(e) => {
                    self.error(host, &format!("cache lookup {e}"));
                    self.start_semantic(host, &config)
                }
            },
            Call::Embed => match body.and_then(|b| chroma::read_embedding(&b)) {
                Ok(vector) => {
                    let v = config.vector.as_ref();
                    let target = v.and_then(|v| v.target.clone());
                    let scope = self
                        .question
                        .as_ref()
                        .map(|q| q.scope.clone())
                        .unwrap_or_default();
                    let top_k = v.map_or(1, |v| v.top_k);
                    let query = chroma::query_body(&vector, top_k, &scope);
                    self.embedding = Some(vector);
                    match target {
                        Some(t) if self.dispatch(host, &t, "query", &query, Call::Query) => {
                            Next::Wait
                        }
                        _ => {
                            self.error(host, "vector query not sent");
                            Next::Miss
                        }
                    }
                }
                Err(e) => {
                    self.error(host, &format!("embedding {e}"));
                    Next::Miss
                }
            },
            Call::Query => {
                let v = config.vector.as_ref();
                let threshold = v.and_then(|v| v.threshold).unwrap_or(DEFAULT_THRESHOLD);
                let relation = v.map(|v| v.threshold_relation).unwrap_or_default();
                match body
                    .and_then(|b| chroma::read_query(&b, now, |d| relation.accepts(d, threshold)))
                {
                    Ok((Some((answer, distance)), _)) => {
                        host.log(
                            LogLevel::Debug,
                            &format!("[ai-cache] semantic hit at distance {distance}"),
                        );
                        Next::Hit(answer)
                    }
                    Ok((None, nearest)) => {
                        host.log(
                            LogLevel::Debug,
                            &format!("[ai-cache] semantic miss, nearest {nearest:?}"),
                        );
                        Next::Miss
                    }
                    Err(e) => {
                        self.error(host, &format!("vector query {e}"));
                        Next::Miss
                    }
                }
            }
        };
        match next {
            Next::Hit(answer) => CallResult::Reply(self.hit(host, ex, &config, &answer)),
            Next::Wait => CallResult::Wait,
            Next::Miss => {
                self.miss(host, ex);
                CallResult::ResumeRequest { changed: false }
            }
        }
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        if self.status != Status::Miss {
            return BodyMode::Untouched;
        }
        ex.set_response_header(host, STATUS_HEADER, Some("miss"));
        if ex.response_header(host, ":status").as_deref() != Some("200") {
            return BodyMode::Untouched;
        }
        let stream = ex
            .response_header(host, "content-type")
            .is_some_and(|c| c.contains("text/event-stream"));
        self.record = Some(Recorder {
            stream,
            decoder: SseDecoder::new(MAX_RECORD_BYTES),
            assembler: StreamAssembler::default(),
            custom_text: None,
            json: Vec::new(),
            seen: 0,
            failed: false,
        });
        BodyMode::Stream
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> ChunkOut {
        let Some(config) = self.active.clone() else {
            return ChunkOut::pass(chunk);
        };
        let Some(rec) = self.record.as_mut() else {
            return ChunkOut::pass(chunk);
        };
        rec.seen += chunk.len();
        if rec.seen > MAX_RECORD_BYTES {
            rec.failed = true;
        }
        if !rec.failed {
            if rec.stream {
                let custom = (self.protocol == ClientProtocol::OpenAi
                    && !config.stream_value_path.is(DEFAULT_STREAM_VALUE_FROM))
                .then_some(&config.stream_value_path);
                let (assembler, text) = (&mut rec.assembler, &mut rec.custom_text);
                let fed = rec.decoder.feed_with(&chunk, |e| {
                    assembler.feed(&e.data);
                    if let (Some(p), Ok(v)) = (custom, serde_json::from_str::<Value>(&e.data)) {
                        if let Some(t) = p.text(&v) {
                            text.get_or_insert_with(String::new).push_str(&t);
                        }
                    }
                });
                rec.failed |= fed.is_err();
            } else {
                rec.json.extend_from_slice(&chunk);
            }
        }
        if !end {
            return ChunkOut::pass(chunk);
        }
        let Some(mut rec) = self.record.take() else {
            return ChunkOut::pass(chunk);
        };
        if rec.failed {
            return ChunkOut::pass(chunk);
        }
        let answer = if rec.stream {
            let (assembler, custom) = (&mut rec.assembler, &mut rec.custom_text);
            rec.decoder.finish_with(|e| assembler.feed(&e.data));
            let mut answer = std::mem::take(assembler).finish();
            if let (Some(a), Some(t)) = (answer.as_mut(), custom.take()) {
                a.text = t;
            }
            answer
        } else {
            serde_json::from_slice::<Value>(&rec.json)
                .ok()
                .and_then(|v| {
                    let mut a = Answer::from_json(self.protocol, &v)?;
                    if self.protocol == ClientProtocol::OpenAi
                        && !config.value_path.is(DEFAULT_VALUE_FROM)
                    {
                        a.text = config.value_path.text(&v)?;
                    }
                    a.finished_normally().then_some(a)
                })
        };
        let Some(answer) = answer else {
            host.log(
                LogLevel::Debug,
                "[ai-cache] answer not stored: it did not finish normally",
            );
            return ChunkOut::pass(chunk);
        };
        let hold = self.store(host, ex, &config, answer);
        ChunkOut::pass(chunk).holding(hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_wasm::types::Action;
    use sdk::host::MockHost;
    use sdk::pipeline::Pipeline;
    use serde_json::json;

    fn pipeline(config: Value) -> Pipeline {
        let rules: RuleSet<CacheConfig> = RuleSet::parse(
            config.to_string().as_bytes(),
            sdk::config::RuleMode::Override,
        )
        .unwrap();
        Pipeline::new(vec![Box::new(CacheStage::new(Rc::new(rules)))])
    }

    fn host(path: &str, body: &Value, headers: &[(&str, &str)]) -> MockHost {
        let mut all = vec![(":method", "POST"), (":path", path)];
        all.extend_from_slice(headers);
        let host = MockHost::with_request_headers(&all);
        host.set_prop("xds.route_name", "llm");
        *host.request_body.borrow_mut() = body.to_string().into_bytes();
        host
    }

    fn send(p: &mut Pipeline, host: &MockHost) -> Action {
        p.on_request_headers(host, false);
        let size = host.request_body.borrow().len();
        p.on_request_body(host, size, true)
    }

    /// The upstream answers `body` (content type `ct`) in one chunk.
    fn answer(p: &mut Pipeline, host: &MockHost, ct: &str, body: &str) -> Action {
        *host.response_headers.borrow_mut() = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), ct.into()),
        ];
        p.on_response_headers(host);
        *host.response_body.borrow_mut() = body.as_bytes().to_vec();
        p.on_response_body(host, body.len(), true)
    }

    fn chat(stream: bool) -> Value {
        json!({"model": "gpt-4o", "stream": stream, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "capital of France?"}]})
    }

    const OPENAI_JSON: &str = r#"{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;

    #[test]
    fn a_miss_is_stored_and_replayed_in_every_mode() {
        let h = host("/v1/chat/completions", &chat(false), &[]);
        let mut p = pipeline(json!({}));
        assert_eq!(send(&mut p, &h), Action::Continue);
        assert!(h.local_reply().is_none());
        answer(&mut p, &h, "application/json", OPENAI_JSON);
        assert_eq!(
            h.response_headers
                .borrow()
                .iter()
                .find(|(k, _)| k == STATUS_HEADER)
                .map(|(_, v)| v.as_str()),
            Some("miss")
        );
        assert_eq!(h.metric("ai_cache.miss"), Some(1));

        // Same shared data, a new request streamed: a hit as SSE with zero usage.
        let h2 = host("/v1/chat/completions", &chat(true), &[]);
        *h2.shared.borrow_mut() = h.shared.borrow().clone();
        let mut p = pipeline(json!({}));
        assert_eq!(send(&mut p, &h2), Action::Pause);
        let reply = h2.local_reply().unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply
            .headers
            .contains(&(STATUS_HEADER.into(), "hit".into())));
        assert!(reply
            .headers
            .contains(&("content-type".into(), "text/event-stream".into())));
        let body = String::from_utf8(reply.body).unwrap();
        assert!(
            body.contains("\"content\":\"Paris.\"") && body.ends_with("data: [DONE]\n\n"),
            "{body}"
        );
        assert_eq!(h2.metric("ai_cache.hit"), Some(1));
        assert_eq!(
            h2.properties.borrow().get(CACHE_STATUS).map(Vec::as_slice),
            Some(&b"hit"[..])
        );

        // Anthropic client, same question and system prompt: the neutral answer serves it too.
        let msgs = json!({"model": "gpt-4o", "max_tokens": 50, "system": "be brief",
            "messages": [{"role": "user", "content": "capital of France?"}]});
        let h3 = host("/v1/messages", &msgs, &[]);
        *h3.shared.borrow_mut() = h.shared.borrow().clone();
        let mut p = pipeline(json!({}));
        send(&mut p, &h3);
        let v: Value = serde_json::from_slice(&h3.local_reply().unwrap().body).unwrap();
        assert_eq!(v["content"][0]["text"], "Paris.");
        assert_eq!(v["usage"]["input_tokens"], 0);
    }

    #[test]
    fn streams_are_stored_only_when_finished() {
        let sse = |finish: &str| {
            format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"Pa\"}}}}]}}\n\ndata: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"ris\"}}{finish}}}]}}\n\ndata: [DONE]\n\n"
            )
        };
        for (finish, stored) in [(r#","finish_reason":"stop""#, true), ("", false)] {
            let h = host("/v1/chat/completions", &chat(true), &[]);
            let mut p = pipeline(json!({}));
            send(&mut p, &h);
            answer(&mut p, &h, "text/event-stream", &sse(finish));
            let h2 = host("/v1/chat/completions", &chat(false), &[]);
            *h2.shared.borrow_mut() = h.shared.borrow().clone();
            let mut p = pipeline(json!({}));
            send(&mut p, &h2);
            match h2.local_reply() {
                Some(r) => {
                    assert!(stored);
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    assert_eq!(v["choices"][0]["message"]["content"], "Paris");
                }
                None => assert!(!stored),
            }
        }
    }

    #[test]
    fn skip_header_scope_and_rules() {
        let h = host("/v1/chat/completions", &chat(false), &[(SKIP_HEADER, "on")]);
        let mut p = pipeline(json!({}));
        assert_eq!(send(&mut p, &h), Action::Continue);
        answer(&mut p, &h, "application/json", OPENAI_JSON);
        assert!(h.shared.borrow().is_empty());
        assert_eq!(h.metric("ai_cache.skip"), Some(1));

        // Per consumer: no consumer, no caching; two consumers never share.
        let scoped = json!({"cacheScope": "consumer"});
        let h = host("/v1/chat/completions", &chat(false), &[]);
        let mut p = pipeline(scoped.clone());
        send(&mut p, &h);
        answer(&mut p, &h, "application/json", OPENAI_JSON);
        assert!(h.shared.borrow().is_empty());
        let h = host(
            "/v1/chat/completions",
            &chat(false),
            &[("x-mse-consumer", "ann")],
        );
        let mut p = pipeline(scoped.clone());
        send(&mut p, &h);
        answer(&mut p, &h, "application/json", OPENAI_JSON);
        assert!(!h.shared.borrow().is_empty());
        let h2 = host(
            "/v1/chat/completions",
            &chat(false),
            &[("x-mse-consumer", "bob")],
        );
        *h2.shared.borrow_mut() = h.shared.borrow().clone();
        let mut p = pipeline(scoped);
        send(&mut p, &h2);
        assert!(h2.local_reply().is_none());
    }

    #[test]
    fn semantic_lookup_through_chroma_and_store_on_miss() {
        let config = json!({
            "embedding": {"type": "openai", "serviceName": "llm_upstream", "model": "e"},
            "vector": {"type": "chroma", "serviceName": "chroma", "collectionID": "c1", "threshold": 0.5}
        });
        let h = host("/v1/chat/completions", &chat(false), &[]);
        let mut p = pipeline(config.clone());
        assert_eq!(send(&mut p, &h), Action::Pause);
        // Embedding asked for the question.
        let call = h.callouts.borrow()[0].clone();
        assert_eq!(call.cluster, "llm_upstream");
        assert!(String::from_utf8(call.body.unwrap())
            .unwrap()
            .contains("capital of France?"));
        let reply = |h: &MockHost, status: &str, body: &str| {
            *h.call_response_headers.borrow_mut() = vec![(":status".into(), status.into())];
            *h.call_response_body.borrow_mut() = body.as_bytes().to_vec();
        };
        reply(&h, "200", r#"{"data":[{"embedding":[1,0]}]}"#);
        p.on_http_call_response(&h, 1, 40);
        let query = h.callouts.borrow()[1].clone();
        assert!(query.headers.iter().any(|(k, v)| k == ":path" && v == "/api/v2/tenants/default_tenant/databases/default_database/collections/c1/query"));
        // Nothing near enough: a miss, the request goes on.
        reply(
            &h,
            "200",
            r#"{"ids":[[]],"documents":[[]],"distances":[[]],"metadatas":[[]]}"#,
        );
        p.on_http_call_response(&h, 2, 70);
        assert_eq!(h.resumed.borrow().0, 1);
        // The answer is upserted with the embedding; the end of the answer waits for it.
        assert_eq!(
            answer(&mut p, &h, "application/json", OPENAI_JSON),
            Action::Pause
        );
        let upsert = h.callouts.borrow()[2].clone();
        let body: Value = serde_json::from_slice(&upsert.body.unwrap()).unwrap();
        assert_eq!(body["embeddings"], json!([[1.0, 0.0]]));
        reply(&h, "200", "{}");
        p.on_http_call_response(&h, 3, 2);
        assert_eq!(h.resumed.borrow().1, 1);

        // A near neighbour is a hit; the store down is a miss, never an error.
        let doc = serde_json::to_string(&Answer {
            text: "Paris.".into(),
            finish_reason: Some("stop".into()),
            ..Answer::default()
        })
        .unwrap();
        let h = host("/v1/chat/completions", &chat(false), &[]);
        let mut p = pipeline(config.clone());
        send(&mut p, &h);
        reply(&h, "200", r#"{"data":[{"embedding":[1,0]}]}"#);
        p.on_http_call_response(&h, 1, 40);
        let q = json!({"ids": [["k"]], "documents": [[doc]], "distances": [[0.2]], "metadatas": [[{"expires": 0}]]}).to_string();
        reply(&h, "200", &q);
        p.on_http_call_response(&h, 2, q.len());
        assert_eq!(h.local_reply().unwrap().status, 200);

        let h = host("/v1/chat/completions", &chat(false), &[]);
        let mut p = pipeline(config);
        send(&mut p, &h);
        *h.call_response_headers.borrow_mut() = vec![];
        p.on_http_call_response(&h, 1, 0);
        assert!(h.local_reply().is_none());
        assert_eq!(h.resumed.borrow().0, 1);
        assert_eq!(h.metric("ai_cache.error"), Some(1));
    }
}
