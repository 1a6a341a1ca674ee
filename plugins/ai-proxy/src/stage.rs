//! The ai-proxy core: pick the provider, point the request at it, translate both ways.

use crate::config::{Protocol, ProxyConfig};
use crate::providers::{Auth, Family, Native, Provider};
use crate::translate::{ChunkTranslator, ReasoningMode};
use crate::{failover, late, native, vertex};
use sdk::api::{ApiKind, ClientProtocol};
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::host::{Host, LogLevel};
use sdk::pipeline::{
    BodyMode, BodyOutcome, CallResult, ChunkOut, Exchange, Need, RequestBody, Stage,
};
use sdk::sse::SseEvent;
use std::rc::Rc;

/// Filter-state key (`wasm.ai_gateway.provider`) holding the provider type of the request.
pub use sdk::facts::PROVIDER as PROVIDER_FACT;

/// Client headers that carry a key; never forwarded unless configured.
const CLIENT_KEY_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// How the response is rewritten.
enum Response {
    /// Passed through.
    Untouched,
    /// An error answer rewritten into the client's error shape.
    Error {
        status: u32,
        error_type: Option<String>,
    },
    /// Buffered and translated whole.
    Json,
    /// Translated chunk by chunk.
    Stream(Box<dyn ChunkTranslator>),
}

/// A callout this request waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `retryOnFailure`: the same provider with another key.
    Retry,
    /// `fallback`: the next provider.
    Fallback(usize),
    /// A Vertex OAuth token for this request (none was there yet).
    Token,
}

/// Per-request state (lives in the HTTP context).
pub struct ProxyStage {
    rules: Rc<RuleSet<ProxyConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<ProxyConfig>>,
    token: Option<usize>,
    /// Upstream path chosen from the headers.
    path: String,
    /// The client's `content-type` (a multipart image form is read by it after the upstream's
    /// was set).
    client_content_type: String,
    /// The provider takes request headers decided from the body.
    headers_from_body: bool,
    /// The request waits for its provider's OAuth token (see [`Call::Token`]).
    awaiting_token: bool,
    stream: bool,
    model: String,
    /// Family and reasoning mode of the provider whose answer the client gets.
    answering: Option<(Family, ReasoningMode)>,
    /// The fallback whose answer the client gets (none: the active provider).
    answered_by_fallback: Option<usize>,
    replay: Option<Replay>,
    /// The client's body, kept for fallback providers.
    fallback_body: Option<RequestBody>,
    next_fallback: usize,
    pending: Option<(u32, Call)>,
    /// A callout's answer that replaces the upstream's.
    replacement: Option<Vec<u8>>,
    response: Response,
    /// A Responses request's parameters its translated answer repeats.
    echo: serde_json::Map<String, serde_json::Value>,
}

impl ProxyStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<ProxyConfig>>) -> ProxyStage {
        ProxyStage {
            rules,
            active: None,
            token: None,
            path: String::new(),
            client_content_type: String::new(),
            headers_from_body: false,
            awaiting_token: false,
            stream: false,
            model: String::new(),
            answering: None,
            answered_by_fallback: None,
            replay: None,
            fallback_body: None,
            next_fallback: 0,
            pending: None,
            replacement: None,
            response: Response::Untouched,
            echo: serde_json::Map::new(),
        }
    }

    /// Translates the body for the provider (and sets the headers decided from it).
    fn translate_request(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let Some(config) = self.active.as_deref() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let Some(p) = config.active.as_ref() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        if p.protocol == Protocol::Original {
            let raw = ex.unparsed_body.take();
            // Signing time: the request's start (no clock read of its own; well within the
            // providers' allowed skew).
            let now = ex.started(host);
            let (body, late) =
                native::original_request(p, ex.body.take(), raw.as_deref(), &self.path, now)?;
            late::apply(host, ex, &p.kind, &late)?;
            let changed = body.is_some();
            ex.body = body;
            return Ok(if changed {
                BodyOutcome::CHANGED
            } else {
                BodyOutcome::UNCHANGED
            });
        }
        // Image edits and variations sent as a form are read into their JSON form.
        if ex.api().is_image() && ex.body.is_none() {
            if let Some(raw) = ex.unparsed_body.take() {
                ex.body = Some(native::form_body(&raw, &self.client_content_type)?);
                ex.body_error = None;
            }
        }
        // A body that is not what its API takes goes on untouched only where ai-proxy passes
        // that API through as is (the provider then answers it); a translation needs it typed.
        if let Some(e) = &ex.body_error {
            let passthrough = matches!(
                (p.family, ex.api()),
                (Family::OpenAi, ApiKind::ChatCompletions)
                    | (Family::Claude, ApiKind::AnthropicMessages)
            ) && config.fallbacks.is_empty();
            if !passthrough {
                return Err(e.clone());
            }
        }
        let Some(body) = ex.body.take() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        if !config.fallbacks.is_empty() {
            self.fallback_body = Some(body.clone());
        }
        if let (ApiKind::Responses, RequestBody::Json(request)) = (ex.api(), &body) {
            self.echo = sdk::llm::responses::echoed(request);
        }
        let out = native::outbound(p, body, ex.api(), ex.started(host), &self.path)?;
        late::apply(host, ex, &p.kind, &out.late)?;
        self.stream = out.stream;
        self.model = out.model;
        if self.stream {
            // A stream is answered as it arrives: it cannot be replayed with another key.
            self.replay = None;
        } else if let Some(replay) = self.replay.as_mut() {
            match native::encode(&out.body) {
                Ok(b) => replay.body = b,
                Err(_) => self.replay = None,
            }
            // Headers decided from the body (signatures) cannot be redone for another key.
            if !out.late.is_empty() {
                self.replay = None;
            }
        }
        ex.body = Some(out.body);
        Ok(BodyOutcome::CHANGED)
    }

    /// The provider whose answer the client gets.
    fn answering_provider(&self) -> Option<&Provider> {
        let config = self.active.as_deref()?;
        match self.answered_by_fallback {
            Some(i) => config.fallbacks.get(i),
            None => config.active.as_ref(),
        }
    }

    /// Decides how the answer is rewritten, from its status and content type.
    fn plan_response(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        status: u32,
        content_type: &str,
        error_type: Option<String>,
    ) -> BodyMode {
        let Some((family, reasoning)) = self.answering else {
            return BodyMode::Untouched;
        };
        let Some(p) = self.answering_provider() else {
            return BodyMode::Untouched;
        };
        let client = native::Client::of(ex.api(), p);
        let translate = native::translating(client, family);
        let is_json = content_type.contains("json");
        if status >= 400 {
            if translate || !is_json {
                self.response = Response::Error { status, error_type };
                ex.set_response_header(host, "content-type", Some("application/json"));
                // Headers wait for the error where they can, so it keeps the status it names.
                return BodyMode::Whole;
            }
            self.response = Response::Untouched;
            return BodyMode::Untouched;
        }
        // Dify agents always stream upstream; a non-streaming client gets the whole answer.
        let streamed = (self.stream || family != Family::Dify)
            && (content_type.contains("text/event-stream")
                || content_type.contains("vnd.amazon.eventstream"));
        let created = unix_seconds(ex.started(host));
        let request_id = bedrock_header(ex, host, family, native::REQUEST_ID_HEADER);
        match native::plan(
            client,
            family,
            streamed,
            &self.model,
            reasoning,
            &p.native,
            created,
            request_id.as_deref(),
            &self.echo,
        ) {
            native::Plan::Untouched => {
                self.response = Response::Untouched;
                BodyMode::Untouched
            }
            native::Plan::Json => {
                self.response = Response::Json;
                let ct = if self.stream {
                    "text/event-stream"
                } else {
                    "application/json"
                };
                ex.set_response_header(host, "content-type", Some(ct));
                // Headers wait for the answer: one that cannot be translated gets a 502.
                BodyMode::Whole
            }
            native::Plan::Stream(t) => {
                self.response = Response::Stream(t);
                ex.set_response_header(host, "content-type", Some("text/event-stream"));
                BodyMode::Stream
            }
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
        if replay.retries_left == 0 || !retry.statuses.matches(status) {
            return false;
        }
        let Some(index) = (0..p.tokens.len()).find(|i| !replay.tried.contains(i)) else {
            return false;
        };
        let token = p.tokens.get(index).map(String::as_str);
        let headers = native::post_headers(p, &replay.path, token);
        let Some(call) = dispatch(host, ex, p, &headers, &replay.body, retry.timeout) else {
            return false;
        };
        self.pending = Some((call, Call::Retry));
        replay.tried.push(index);
        replay.retries_left -= 1;
        true
    }

    /// `fallback`: sends the client's request, translated, to the next fallback provider.
    fn try_fallback(&mut self, host: &dyn Host, ex: &mut Exchange, status: Option<u32>) -> bool {
        let Some(config) = self.active.clone() else {
            return false;
        };
        let failed = status.is_none_or(|s| config.fallback_on.matches(s));
        if !failed {
            return false;
        }
        while let Some(p) = config.fallbacks.get(self.next_fallback) {
            let index = self.next_fallback;
            self.next_fallback += 1;
            let Some(body) = self.fallback_body.clone() else {
                return false;
            };
            if self.send_fallback(host, ex, p, body, config.fallback.timeout, index) {
                return true;
            }
        }
        false
    }

    fn send_fallback(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        p: &Provider,
        body: RequestBody,
        timeout_ms: u64,
        index: usize,
    ) -> bool {
        let Ok((headers, bytes)) =
            native::callout_request(host, p, body, ex.api(), &ex.path, p.next_token())
        else {
            return false;
        };
        let timeout = std::time::Duration::from_millis(timeout_ms);
        let Some(call) = dispatch(host, ex, p, &headers, &bytes, timeout) else {
            return false;
        };
        let message = format!("[ai-proxy] falling back to provider `{}`", p.name());
        host.log(LogLevel::Info, &message);
        self.pending = Some((call, Call::Fallback(index)));
        true
    }
}

/// Sends a callout to `p` (its own cluster, else the route's); the call's token.
fn dispatch(
    host: &dyn Host,
    ex: &mut Exchange,
    p: &Provider,
    headers: &[(String, String)],
    body: &[u8],
    timeout: std::time::Duration,
) -> Option<u32> {
    let cluster = p.call_cluster.clone().or_else(|| ex.cluster_name(host))?;
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    host.dispatch_http_call(&cluster, &refs, Some(body), timeout)
        .ok()
}

/// `created` of translated answers: when the request started, in Unix seconds.
/// A header of a Bedrock answer (its error type, its request id); other families send none.
fn bedrock_header(
    ex: &mut Exchange,
    host: &dyn Host,
    family: Family,
    name: &str,
) -> Option<String> {
    (family == Family::Bedrock)
        .then(|| ex.response_header(host, name))
        .flatten()
}

fn unix_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a non-streaming request needs to be sent again with another key.
struct Replay {
    path: String,
    body: Vec<u8>,
    tried: Vec<usize>,
    retries_left: u32,
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
        let Some(config) = self.rules.select(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        if let Some(e) = &config.unusable {
            return Err(ErrorReply::new(
                500,
                "server_error",
                Some("provider_misconfigured"),
                format!("ai-proxy: the provider of this route is misconfigured: {e}"),
            ));
        }
        let Some(p) = config.active.as_ref() else {
            return Ok(Need::Nothing);
        };
        self.active = Some(config.clone());
        self.answering = Some((p.family, p.reasoning));
        // A fact for the other plugins (ai-statistics labels metrics with it).
        ex.set_fact(host, PROVIDER_FACT, p.kind.as_bytes());
        self.client_content_type = ex.request_header(host, "content-type").unwrap_or_default();
        let api = ex.api();
        if p.failover.is_some() && p.cluster.borrow().is_none() {
            *p.cluster.borrow_mut() = ex.cluster_name(host);
        }
        self.token = failover::choose(host, p);
        let token = self.token.and_then(|i| p.tokens.get(i)).map(String::as_str);
        if p.protocol == Protocol::Original {
            // The client's path, with only `basePath`/`providerBasePath` applied.
            let original = p.upstream_path(p.client_path(&ex.path));
            let path = (original != ex.path).then_some(original.as_str());
            if !set_upstream(host, ex, p, path, token) {
                return Err(auth_pending(p, "the token exchange has not answered"));
            }
            // Bedrock's body is still signed, with `customSettings` applied (as in Higress).
            if native::original_reads_body(p, &ex.method) {
                self.path = original;
                self.headers_from_body = p.auth == Auth::SigV4;
                return Ok(Need::Body);
            }
            return Ok(Need::Nothing);
        }
        let path = match p.path_for(api, p.client_path(&ex.path)) {
            Some(path) if !path.is_empty() || native::path_from_body(p, api) => path,
            _ => {
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
                ))
            }
        };
        let from_body = native::path_from_body(p, api);
        let authorized = set_upstream(host, ex, p, (!from_body).then_some(path.as_str()), token);
        // A rerank body is read for its model mapping, as Higress does.
        let has_body = native::reads_body(p, api) || p.is_rerank(api, &ex.path);
        if !authorized {
            // The first request after start: it waits for a token exchange of its own (the
            // headers are held while the body is read), as Higress holds it.
            match vertex::fetch_for_request(host, p).filter(|_| has_body) {
                Some(call) => {
                    self.pending = Some((call, Call::Token));
                    self.awaiting_token = true;
                }
                None => return Err(auth_pending(p, "the token exchange could not be sent")),
            }
        }
        self.path = path.clone();
        // Only bodies ai-proxy read can be sent again (not an upgrade, not a GET).
        if p.retry.is_some() && has_body {
            self.replay = Some(Replay {
                path,
                body: Vec::new(),
                tried: self.token.into_iter().collect(),
                retries_left: p.retry.as_ref().map_or(0, |r| r.max_retries),
            });
        }
        if p.family == Family::Claude
            && api == ApiKind::AnthropicMessages
            && ex.request_header(host, "anthropic-version").is_some()
        {
            // The client's own version wins on a pass-through.
        } else if p.family == Family::Claude {
            ex.set_request_header(host, "anthropic-version", Some(&p.claude_version));
        }
        // Headers this request may still change once the body is read (see on_headers_released).
        self.headers_from_body = native::headers_from_body(p, api) || self.awaiting_token;
        Ok(if has_body { Need::Body } else { Need::Nothing })
    }

    fn on_headers_released(
        &mut self,
        _host: &dyn Host,
        _ex: &mut Exchange,
    ) -> Result<(), ErrorReply> {
        if self.awaiting_token {
            if let Some(p) = self.answering_provider() {
                return Err(auth_pending(p, "headers cannot wait for it on this Envoy"));
            }
        }
        if !self.headers_from_body || late::companion_loaded() {
            return Ok(());
        }
        let kind = self.answering_provider().map_or("", |p| p.kind.as_str());
        Err(late::cannot_apply(kind))
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let outcome = self.translate_request(host, ex)?;
        // A request that waits for its provider's token goes on from `on_http_call_response`.
        Ok(outcome.waiting(self.awaiting_token))
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        let Some(config) = self.active.clone() else {
            return BodyMode::Untouched;
        };
        let Some(p) = config.active.as_ref() else {
            return BodyMode::Untouched;
        };
        if p.protocol == Protocol::Original {
            return BodyMode::Untouched;
        }
        let status: u32 = ex
            .response_header(host, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        if let Some(index) = self.token {
            failover::report(host, p, index, status);
        }
        if self.retry_with_another_key(host, ex, p, status) {
            return BodyMode::Hold;
        }
        if status >= 400 && self.try_fallback(host, ex, Some(status)) {
            return BodyMode::Hold;
        }
        // A protocol switch (WebSocket upgrade) and a passed-through API's answers go to the
        // client as they are.
        let api = ex.api();
        let native_responses = api == ApiKind::Responses && p.serves_responses();
        let as_is = api == ApiKind::Other || native_responses;
        if status < 200 || (as_is && status < 400) {
            return BodyMode::Untouched;
        }
        let content_type = ex.response_header(host, "content-type").unwrap_or_default();
        // Bedrock names its errors in a header.
        let error_type = bedrock_header(ex, host, p.family, "x-amzn-errortype");
        self.plan_response(host, ex, status, &content_type, error_type)
    }

    fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        token: u32,
        body_size: usize,
    ) -> CallResult {
        let Some(config) = self.active.clone() else {
            return CallResult::NotMine;
        };
        let Some((_, call)) = self.pending.filter(|(t, _)| *t == token) else {
            return CallResult::NotMine;
        };
        self.pending = None;
        if call == Call::Token {
            let Some(p) = config.active.as_ref() else {
                return CallResult::NotMine;
            };
            self.awaiting_token = false;
            return match vertex::on_request_token(host, p, body_size) {
                Ok(t) => {
                    let bearer = format!("Bearer {t}");
                    ex.set_request_header(host, "authorization", Some(&bearer));
                    CallResult::ResumeRequest { changed: false }
                }
                Err(e) => CallResult::Reply(auth_pending(p, &e)),
            };
        }
        let status = host
            .http_call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        let answered_by = match call {
            Call::Retry => config.active.as_ref(),
            Call::Fallback(i) => config.fallbacks.get(i),
            // Answered above.
            Call::Token => return CallResult::NotMine,
        };
        if let (Call::Retry, Some(p)) = (call, config.active.as_ref()) {
            if let (Some(status), Some(index)) = (
                status,
                self.replay.as_ref().and_then(|r| r.tried.last().copied()),
            ) {
                failover::report(host, p, index, status);
            }
            if let Some(status) = status {
                if self.retry_with_another_key(host, ex, p, status) {
                    return CallResult::Wait;
                }
            }
        }
        let failed = status.is_none_or(|s| s >= 400);
        if failed && self.try_fallback(host, ex, status) {
            return CallResult::Wait;
        }
        match (status, answered_by) {
            (Some(status), Some(p)) => {
                let content_type = host
                    .http_call_response_header("content-type")
                    .unwrap_or_default();
                let error_type = host.http_call_response_header("x-amzn-errortype");
                let body = host.http_call_response_body(body_size).unwrap_or_default();
                ex.set_response_header(host, ":status", Some(&status.to_string()));
                ex.set_response_header(host, "content-type", Some(&content_type));
                self.replacement = Some(body);
                self.answering = Some((p.family, p.reasoning));
                if let Call::Fallback(i) = call {
                    self.answered_by_fallback = Some(i);
                    ex.set_fact(host, PROVIDER_FACT, p.kind.as_bytes());
                    ex.set_response_header(host, "x-ai-gateway-fallback", Some(p.name()));
                }
                self.plan_response(host, ex, status, &content_type, error_type);
            }
            _ => {
                // The callout itself failed (timeout, reset): the first answer goes out as it was.
                let status = host
                    .response_header(":status")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(502);
                let content_type = host.response_header("content-type").unwrap_or_default();
                let error_type = host.response_header("x-amzn-errortype");
                self.plan_response(host, ex, status, &content_type, error_type);
            }
        }
        CallResult::ResumeResponse
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> ChunkOut {
        let client = ex.protocol();
        // A callout's answer replaces the first one's body.
        let (chunk, replaced) = match self.replacement.take() {
            Some(body) if end => (body, true),
            Some(body) => {
                self.replacement = Some(body);
                (chunk, false)
            }
            None => (chunk, false),
        };
        let as_is = |chunk| match replaced {
            true => ChunkOut::edited(chunk),
            false => ChunkOut::pass(chunk),
        };
        let Some((family, reasoning)) = self.answering else {
            return as_is(chunk);
        };
        let created = unix_seconds(ex.started(host));
        ChunkOut::edited(match &mut self.response {
            Response::Untouched => return as_is(chunk),
            Response::Error { status, error_type } => {
                let (to, body) =
                    native::translate_error(client, family, *status, &chunk, error_type.as_deref());
                // The status the error names, where the headers have not left yet.
                if to != *status && ex.response_headers_held() {
                    ex.set_response_header(host, ":status", Some(&to.to_string()));
                }
                body
            }
            Response::Json => native::translate_json(
                self.answering_provider()
                    .map_or(native::Client::Chat, |p| native::Client::of(ex.api(), p)),
                family,
                self.answering_provider()
                    .map_or(&Native::None, |p| &p.native),
                ex.api(),
                &chunk,
                &self.model,
                reasoning,
                self.stream,
                created,
                ex.response_header(host, native::INPUT_TOKENS_HEADER)
                    .and_then(|t| t.parse().ok()),
                bedrock_header(ex, host, family, native::REQUEST_ID_HEADER).as_deref(),
                &self.echo,
            )
            .unwrap_or_else(|e| {
                ex.set_answer_failed();
                if ex.response_headers_held() {
                    // The client sees a failed call, not a 200 with an error inside.
                    ex.set_response_header(host, ":status", Some("502"));
                    ex.set_response_header(host, "content-type", Some("application/json"));
                    bad_answer(client, &e, false)
                } else {
                    bad_answer(client, &e, self.stream)
                }
            }),
            Response::Stream(tr) => {
                let mut out = String::new();
                tr.feed(&chunk, end, &mut out);
                if tr.failed() {
                    ex.set_answer_failed();
                }
                out.into_bytes()
            }
        })
    }
}

/// Points the request at the provider: host, path, key.
/// The 503 of a provider whose OAuth token is not there and cannot be waited for.
fn auth_pending(p: &Provider, why: &str) -> ErrorReply {
    ErrorReply::new(
        503,
        "server_error",
        Some("provider_auth_pending"),
        format!(
            "no access token for provider `{}` yet ({why}); retry shortly",
            p.name()
        ),
    )
}

/// Points the request at the provider: host, path, key. Returns false when the provider's
/// OAuth token is not there yet (the caller waits for it or refuses).
fn set_upstream(
    host: &dyn Host,
    ex: &mut Exchange,
    p: &Provider,
    path: Option<&str>,
    token: Option<&str>,
) -> bool {
    if let Some(path) = path {
        ex.set_request_header(host, ":path", Some(&p.upstream_path(path)));
    }
    let statics = native::static_headers(p, token);
    if !p.passthrough_client_key {
        // The client's key goes, unless the provider's own replaces it in the same header.
        for h in CLIENT_KEY_HEADERS {
            if !statics.iter().any(|(name, _)| name.eq_ignore_ascii_case(h)) {
                ex.set_request_header(host, h, None);
            }
        }
    }
    for (name, value) in &statics {
        ex.set_request_header(host, name, Some(value));
    }
    let mut authorized = true;
    if p.auth == Auth::OAuth && !p.passthrough_client_key {
        match vertex::access_token(host, p) {
            Some(t) => {
                let bearer = format!("Bearer {t}");
                ex.set_request_header(host, "authorization", Some(&bearer));
            }
            None => authorized = false,
        }
    }
    if p.family != Family::OpenAi && p.family != Family::Claude {
        ex.set_request_header(host, "content-type", Some("application/json"));
    }
    // Translation and error rewriting need plain bodies.
    ex.set_request_header(host, "accept-encoding", None);
    let timeout = p.timeout_ms.to_string();
    ex.set_request_header(host, "x-envoy-upstream-rq-timeout-ms", Some(&timeout));
    authorized
}

/// The answer for a provider's answer that cannot be translated; an OpenAI client that asked to
/// stream was promised `text/event-stream`, so it gets the error as an event.
fn bad_answer(client: ClientProtocol, e: &str, stream: bool) -> Vec<u8> {
    let body = ErrorReply::new(
        502,
        "server_error",
        Some("bad_upstream_response"),
        format!("cannot translate the provider's answer: {e}"),
    )
    .body(client);
    if stream && client == ClientProtocol::Responses {
        use sdk::llm::stream::{Encoder, Event};
        let mut enc = sdk::llm::responses::ResponsesEncoder::new(true, 0);
        let mut out = String::new();
        enc.event(
            Event::error(&format!("cannot translate the provider's answer: {e}")),
            &mut out,
        );
        out.into_bytes()
    } else if stream && client == ClientProtocol::OpenAi {
        let mut out = SseEvent::data(body).encode();
        SseEvent::data("[DONE]").encode_into(&mut out);
        out.into_bytes()
    } else {
        body.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_wasm::types::Action;
    use sdk::config::RuleMode;
    use sdk::host::MockHost;
    use sdk::pipeline::Pipeline;
    use serde_json::Value;

    fn pipeline(config: &str) -> Pipeline {
        let rules = RuleSet::parse(config.as_bytes(), RuleMode::Override).unwrap();
        Pipeline::new(vec![Box::new(ProxyStage::new(Rc::new(rules)))])
    }

    fn request(p: &mut Pipeline, host: &MockHost, body: &str) {
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        // Headers wait for the body, then go on with it.
        assert_eq!(p.on_request_headers(host, false), Action::Pause);
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
        // The host held the request headers: the response headers wait for the whole answer.
        assert_eq!(p.on_response_headers(&host), Action::Pause);
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
    fn a_translated_error_keeps_the_status_it_names() {
        let mut p = pipeline(
            r#"{"provider":{"type":"bedrock","awsAccessKey":"AKID","awsSecretKey":"s",
                "awsRegion":"us-east-1"}}"#,
        );
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
        ]);
        request(
            &mut p,
            &host,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        );
        // Bedrock says a quota is spent with a 400: the client gets OpenAI's 429, so its SDK
        // backs off and retries as it does for rate limits.
        *host.response_headers.borrow_mut() = vec![
            (":status".into(), "400".into()),
            ("content-type".into(), "application/json".into()),
            (
                "x-amzn-errortype".into(),
                "ServiceQuotaExceededException:http://internal".into(),
            ),
        ];
        assert_eq!(p.on_response_headers(&host), Action::Pause);
        let error = br#"{"message":"Too many tokens per day"}"#;
        *host.response_body.borrow_mut() = error.to_vec();
        assert_eq!(
            p.on_response_body(&host, error.len(), true),
            Action::Continue
        );
        assert_eq!(host.response_header(":status").as_deref(), Some("429"));
        let v: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_exceeded");
        assert_eq!(v["error"]["code"], "ServiceQuotaExceededException");
    }

    #[test]
    fn an_answer_that_cannot_be_translated_is_a_502() {
        for (stream, held) in [(false, true), (true, true), (true, false)] {
            let mut p = pipeline(r#"{"provider":{"type":"claude","apiTokens":["k"]}}"#);
            if !held {
                p.set_header_hold(sdk::pipeline::HeaderHold::Unavailable);
            }
            let host = MockHost::with_request_headers(&[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
            ]);
            let body = format!(
                r#"{{"model":"m","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
            );
            *host.request_body.borrow_mut() = body.as_bytes().to_vec();
            p.on_request_headers(&host, false);
            p.on_request_body(&host, body.len(), true);
            *host.response_headers.borrow_mut() = vec![
                (":status".into(), "200".into()),
                ("content-type".into(), "application/json".into()),
            ];
            let expect = if held {
                Action::Pause
            } else {
                Action::Continue
            };
            assert_eq!(p.on_response_headers(&host), expect);
            let html = b"<html>Bad gateway</html>";
            *host.response_body.borrow_mut() = html.to_vec();
            assert_eq!(
                p.on_response_body(&host, html.len(), true),
                Action::Continue
            );
            let out = String::from_utf8(host.response_body.borrow().clone()).unwrap();
            if held {
                // Headers still held: a real failure status and a plain JSON error.
                assert_eq!(host.response_header(":status").as_deref(), Some("502"));
                assert_eq!(
                    host.response_header("content-type").as_deref(),
                    Some("application/json")
                );
                let v: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["error"]["code"], "bad_upstream_response");
            } else {
                // Headers gone as SSE: the error is an event, and the stream ends.
                assert!(out.starts_with("data: {\"error\""), "{out}");
                assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
            }
        }
    }

    #[test]
    fn streams_translated_from_other_clients_ask_for_usage() {
        for (path, body) in [
            (
                "/v1/messages",
                r#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            ),
            (
                "/v1/responses",
                r#"{"model":"m","input":"hi","stream":true}"#,
            ),
        ] {
            for (config, asked) in [
                (
                    r#"{"provider": {"type": "deepseek", "apiTokens": ["k"]}}"#,
                    true,
                ),
                (
                    r#"{"provider": {"type": "deepseek", "apiTokens": ["k"], "streamIncludeUsage": false}}"#,
                    false,
                ),
            ] {
                let mut p = pipeline(config);
                let host = MockHost::with_request_headers(&[(":method", "POST"), (":path", path)]);
                request(&mut p, &host, body);
                let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
                let usage = sent.pointer("/stream_options/include_usage");
                assert_eq!(usage == Some(&Value::Bool(true)), asked, "{path}: {sent}");
            }
        }
    }

    #[test]
    fn responses_pass_natively_with_the_model_mapping() {
        for (config, path) in [
            (
                r#"{"provider": {"type": "openai", "apiTokens": ["k"], "modelMapping": {"*": "gpt-5"}}}"#,
                "/v1/responses",
            ),
            (
                r#"{"provider": {"type": "azure", "apiTokens": ["k"], "modelMapping": {"*": "gpt-5"},
                    "azureServiceUrl": "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2025-04-01-preview"}}"#,
                "/openai/responses?api-version=2025-04-01-preview",
            ),
        ] {
            let mut p = pipeline(config);
            let host = MockHost::with_request_headers(&[
                (":method", "POST"),
                (":path", "/v1/responses"),
                (":authority", "gw"),
            ]);
            request(&mut p, &host, r#"{"model":"m","input":"hi","stream":true}"#);
            assert_eq!(host.request_header(":path").as_deref(), Some(path));
            let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
            assert_eq!(sent["model"], "gpt-5");
            assert!(sent.get("stream_options").is_none(), "{sent}");
            // The answer goes back as the provider wrote it.
            *host.response_headers.borrow_mut() = vec![
                (":status".into(), "200".into()),
                ("content-type".into(), "text/event-stream".into()),
            ];
            p.on_response_headers(&host);
            let event = b"event: response.output_text.delta\ndata: {\"delta\":\"x\"}\n\n";
            *host.response_body.borrow_mut() = event.to_vec();
            p.on_response_body(&host, event.len(), true);
            assert_eq!(&*host.response_body.borrow(), event);
        }
    }

    #[test]
    fn responses_to_a_provider_without_it_go_as_its_chat() {
        let mut p = pipeline(
            r#"{"provider": {"type": "claude", "apiTokens": ["k"], "modelMapping": {"*": "claude-x"}}}"#,
        );
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/responses"),
            (":authority", "gw"),
        ]);
        request(
            &mut p,
            &host,
            r#"{"model":"m","instructions":"Be brief.","input":"hi","stream":true}"#,
        );
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1/messages")
        );
        let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
        assert_eq!(sent["model"], "claude-x");
        assert_eq!(sent["system"], "Be brief.");
        assert_eq!(sent["messages"][0]["content"][0]["text"], "hi");
        *host.response_headers.borrow_mut() = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "text/event-stream".into()),
        ];
        p.on_response_headers(&host);
        let upstream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":3,\"output_tokens\":0}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":1}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        *host.response_body.borrow_mut() = upstream.as_bytes().to_vec();
        p.on_response_body(&host, upstream.len(), true);
        let out = String::from_utf8(host.response_body.borrow().clone()).unwrap();
        assert!(out.starts_with("event: response.created\n"), "{out}");
        assert!(out.contains("\"delta\":\"Hello\""), "{out}");
        let last = out.trim_end().rsplit("\n\n").next().unwrap();
        assert!(last.starts_with("event: response.completed\n"), "{out}");
        assert!(last.contains("\"input_tokens\":3"), "{out}");
        assert!(last.contains("\"output_tokens\":1"), "{out}");
    }

    #[test]
    fn image_generations_get_the_model_mapping() {
        let mut p = pipeline(
            r#"{"provider": {"type": "openai", "apiTokens": ["k"],
                "modelMapping": {"dall-e-3": "gpt-image-1"}}}"#,
        );
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/images/generations"),
            (":authority", "gw"),
        ]);
        request(
            &mut p,
            &host,
            r#"{"model":"dall-e-3","prompt":"a cat","size":"1024x1024"}"#,
        );
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1/images/generations")
        );
        let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
        assert_eq!(sent["model"], "gpt-image-1");
        assert_eq!(sent["prompt"], "a cat");
        // A type without an image API answers 404 before anything is sent.
        let mut p = pipeline(r#"{"provider": {"type": "cohere", "apiTokens": ["k"]}}"#);
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/images/generations"),
        ]);
        p.on_request_headers(&host, false);
        assert_eq!(host.local_reply().unwrap().status, 404);
    }

    /// Sends `body` (with `content_type`) to `path`, then answers `answer`; returns the request
    /// the upstream got (path, body) and the client's answer.
    fn images_round_trip(
        config: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
        answer: &str,
    ) -> (String, Value, Value) {
        let mut p = pipeline(config);
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", path),
            (":authority", "gw"),
            ("content-type", content_type),
        ]);
        *host.request_body.borrow_mut() = body.to_vec();
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        assert_eq!(p.on_request_body(&host, body.len(), true), Action::Continue);
        assert!(host.local_reply().is_none(), "{:?}", host.local_reply());
        let upstream_path = host.request_header(":path").unwrap();
        let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
        *host.response_headers.borrow_mut() = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ];
        p.on_response_headers(&host);
        *host.response_body.borrow_mut() = answer.as_bytes().to_vec();
        p.on_response_body(&host, answer.len(), true);
        let got: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
        (upstream_path, sent, got)
    }

    #[test]
    fn gemini_image_generation_goes_to_imagen() {
        let (path, sent, got) = images_round_trip(
            r#"{"provider": {"type": "gemini", "apiTokens": ["k"],
                "modelMapping": {"dall-e-3": "imagen-3.0-generate-002"}}}"#,
            "/v1/images/generations",
            "application/json",
            br#"{"model":"dall-e-3","prompt":"a cat","n":2}"#,
            r#"{"predictions":[{"bytesBase64Encoded":"QUJD","mimeType":"image/png"}]}"#,
        );
        assert_eq!(path, "/v1beta/models/imagen-3.0-generate-002:predict");
        assert_eq!(
            sent,
            serde_json::json!({"instances": [{"prompt": "a cat"}], "parameters": {"sampleCount": 2}})
        );
        assert_eq!(got["data"][0]["b64_json"], "QUJD");
    }

    #[test]
    fn vertex_image_edits_from_a_form() {
        let form = b"--b1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-image-1\r\n\
--b1\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nadd a hat\r\n\
--b1\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--b1--\r\n";
        let answer = r#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"SU1H"}}]}}],
            "usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":3,"totalTokenCount":5}}"#;
        let (path, sent, got) = images_round_trip(
            r#"{"provider": {"type": "vertex", "apiTokens": ["k"],
                "modelMapping": {"gpt-image-1": "gemini-2.5-flash-image"}}}"#,
            "/v1/images/edits",
            "multipart/form-data; boundary=b1",
            form,
            answer,
        );
        assert_eq!(
            path,
            "/v1/publishers/google/models/gemini-2.5-flash-image:generateContent"
        );
        let parts = &sent["contents"][0]["parts"];
        assert_eq!(parts[0]["inlineData"]["data"], "UE5HREFUQQ==");
        assert_eq!(parts[1]["text"], "add a hat");
        assert_eq!(got["data"][0]["b64_json"], "SU1H");
        assert_eq!(got["usage"]["total_tokens"], 5);
        // A body that is neither a form nor JSON is refused with a clear 400.
        let mut p = pipeline(r#"{"provider": {"type": "vertex", "apiTokens": ["k"]}}"#);
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/images/variations"),
            ("content-type", "text/plain"),
        ]);
        *host.request_body.borrow_mut() = b"hello".to_vec();
        p.on_request_headers(&host, false);
        p.on_request_body(&host, 5, true);
        assert_eq!(host.local_reply().unwrap().status, 400);
    }

    #[test]
    fn openai_image_edits_pass_through_unread() {
        for (kind, path) in [
            ("openai", "/v1/images/edits"),
            ("groq", "/openai/v1/images/variations"),
        ] {
            let mut p = pipeline(&format!(
                r#"{{"provider": {{"type": "{kind}", "apiTokens": ["k"]}}}}"#
            ));
            let client_path = format!("/v1/images/{}", path.rsplit('/').next().unwrap());
            let host = MockHost::with_request_headers(&[
                (":method", "POST"),
                (":path", &client_path),
                ("content-type", "multipart/form-data; boundary=b"),
            ]);
            // The form is not read: headers go on at once.
            assert_eq!(p.on_request_headers(&host, false), Action::Continue);
            assert_eq!(host.request_header(":path").as_deref(), Some(path));
            assert_eq!(
                host.request_header("authorization").as_deref(),
                Some("Bearer k")
            );
        }
    }

    #[test]
    fn bedrock_original_is_signed_with_custom_settings() {
        let mut p = pipeline(
            r#"{"provider": {"type": "bedrock", "protocol": "original", "awsRegion": "us-east-1",
                "awsAccessKey": "AKID", "awsSecretKey": "secret",
                "customSettings": [{"name": "inferenceConfig.maxTokens", "value": 77, "mode": "raw"}]}}"#,
        );
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/model/m%3A0/converse"),
            (":authority", "gw"),
            ("authorization", "Bearer client"),
        ]);
        request(
            &mut p,
            &host,
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":5,"temperature":0.5}}"#,
        );
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/model/m%3A0/converse")
        );
        assert_eq!(
            host.request_header(":authority").as_deref(),
            Some("bedrock-runtime.us-east-1.amazonaws.com")
        );
        let auth = host.request_header("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"),
            "{auth}"
        );
        assert!(host.request_header("x-amz-date").is_some());
        let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
        // The client's body as sent (field order kept), with the setting applied.
        assert_eq!(
            sent,
            serde_json::json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "inferenceConfig": {"maxTokens": 77, "temperature": 0.5}})
        );
        // The answer goes back untranslated.
        *host.response_headers.borrow_mut() = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ];
        assert_eq!(p.on_response_headers(&host), Action::Continue);
        // A Bedrock API key and no settings: nothing to sign, the body is not read.
        let mut p = pipeline(
            r#"{"provider": {"type": "bedrock", "protocol": "original", "awsRegion": "us-east-1",
                "apiTokens": ["bk"]}}"#,
        );
        let host =
            MockHost::with_request_headers(&[(":method", "POST"), (":path", "/model/m/converse")]);
        assert_eq!(p.on_request_headers(&host, false), Action::Continue);
        assert_eq!(
            host.request_header("authorization").as_deref(),
            Some("Bearer bk")
        );
    }

    #[test]
    fn base_path_is_removed_or_prepended_as_in_higress() {
        let cases = [
            // removePrefix (the default): the client's prefix goes before mapping.
            (
                r#"{"provider": {"type": "openai", "apiTokens": ["k"], "basePath": "/ai"}}"#,
                "/ai/v1/files?limit=1",
                "/v1/files?limit=1",
            ),
            (
                r#"{"provider": {"type": "openai", "apiTokens": ["k"], "basePath": "/ai"}}"#,
                "/ai/v1/chat/completions",
                "/v1/chat/completions",
            ),
            // prepend: put before the upstream path.
            (
                r#"{"provider": {"type": "deepseek", "apiTokens": ["k"], "basePath": "/proxy",
                    "basePathHandling": "prepend"}}"#,
                "/v1/chat/completions",
                "/proxy/v1/chat/completions",
            ),
            // providerBasePath: always before the upstream path.
            (
                r#"{"provider": {"type": "openai", "apiTokens": ["k"], "providerBasePath": "/gw"}}"#,
                "/v1/chat/completions",
                "/gw/v1/chat/completions",
            ),
            // protocol original: the client's path, prefix removed.
            (
                r#"{"provider": {"type": "openai", "apiTokens": ["k"], "protocol": "original",
                    "basePath": "/ai"}}"#,
                "/ai/v1/chat/completions",
                "/v1/chat/completions",
            ),
        ];
        for (config, client, upstream) in cases {
            let mut p = pipeline(config);
            let host = MockHost::with_request_headers(&[
                (":method", "POST"),
                (":path", client),
                (":authority", "gw"),
            ]);
            p.on_request_headers(&host, false);
            assert!(host.local_reply().is_none(), "{config}");
            assert_eq!(
                host.request_header(":path").as_deref(),
                Some(upstream),
                "{config}"
            );
        }
        let bad = r#"{"provider": {"type": "openai", "apiTokens": ["k"], "basePath": "/a",
            "basePathHandling": "strip"}}"#;
        let rules: RuleSet<ProxyConfig> =
            RuleSet::parse(bad.as_bytes(), RuleMode::Override).unwrap();
        assert!(rules
            .warnings
            .iter()
            .any(|w| w.contains("basePathHandling")));
    }

    #[test]
    fn a_misconfigured_rule_is_refused_alone() {
        // Higress loads these; a rule without its required key answers an error, the others
        // serve.
        let config = r#"{"provider": {"type": "openai", "apiTokens": ["k"]},
            "_rules_": [
                {"_match_domain_": ["cf.test"], "provider": {"type": "cloudflare", "apiTokens": ["c"]}},
                {"_match_domain_": ["gen.test"], "provider": {"type": "generic", "apiTokens": ["g"]}}
            ]}"#;
        let rules: RuleSet<ProxyConfig> =
            RuleSet::parse(config.as_bytes(), RuleMode::Override).unwrap();
        for key in ["cloudflareAccountId", "genericHost"] {
            assert!(
                rules.warnings.iter().any(|w| w.contains(key)),
                "{:?}",
                rules.warnings
            );
        }
        let rules = Rc::new(rules);
        for (authority, refused) in [
            ("cf.test", Some("cloudflareAccountId")),
            ("gen.test", Some("genericHost")),
            ("other.test", None),
        ] {
            let mut p = Pipeline::new(vec![Box::new(ProxyStage::new(rules.clone()))]);
            let host = MockHost::with_request_headers(&[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                (":authority", authority),
            ]);
            p.on_request_headers(&host, false);
            match refused {
                Some(key) => {
                    let reply = host.local_reply().unwrap();
                    assert_eq!(reply.status, 500);
                    let text = String::from_utf8_lossy(&reply.body);
                    assert!(text.contains(key), "{text}");
                }
                None => {
                    assert!(host.local_reply().is_none());
                    assert_eq!(
                        host.request_header("authorization").as_deref(),
                        Some("Bearer k")
                    );
                }
            }
        }
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
