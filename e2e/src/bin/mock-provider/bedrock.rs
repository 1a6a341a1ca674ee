//! AWS Bedrock Converse wire format, shaped after AWS's public API reference:
//! `POST /model/{modelId}/converse` (JSON) and `POST /model/{modelId}/converse-stream`
//! (`application/vnd.amazon.eventstream`, one event per body frame, real CRCs).
//!
//! Authentication as Bedrock checks it: `Authorization: AWS4-HMAC-SHA256 …` is verified
//! against [`ACCESS_KEY`]/[`SECRET_KEY`] (signature recomputed from the request as received,
//! service `bedrock`, 15-minute clock window), or `Authorization: Bearer` [`API_KEY`]; anything
//! else is a 403. Rejects (400 `ValidationException`) what Converse rejects and a gateway could
//! get wrong: unknown top-level or `inferenceConfig` fields, turns that do not start with the
//! user or do not alternate, empty content or blank text, tool blocks without `toolConfig`,
//! thinking with a budget below 1024, not below `maxTokens`, or with a temperature.
//! Errors are Bedrock-shaped: `x-amzn-errortype` plus `{"message"}`.
//!
//! `POST /model/{modelId}/invoke` serves embedding models as InvokeModel does: Titan
//! (`amazon.titan-embed-*`: one `inputText`, `{"embedding","inputTextTokenCount"}`) and Cohere
//! (`cohere.embed-*`: `texts` with a required `input_type`, `embeddings` by type or as floats),
//! with the input token count in `x-amzn-bedrock-input-token-count`.

use std::time::{Duration, SystemTime};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as EsValue, Message};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::{MockControl, RequestCtx};
use crate::openai::{embed, stream_pieces};
use crate::reply::{self, count_words};
use crate::sigv4::{self, Rejection};
use crate::stream::{self, Streamed};

/// Access key id the mock accepts for SigV4.
pub const ACCESS_KEY: &str = "AKIDMOCKBEDROCK";
/// Its secret.
pub const SECRET_KEY: &str = "mock-bedrock-secret";
/// The one session token accepted in `x-amz-security-token` (when the header is sent).
pub const SESSION_TOKEN: &str = "mock-bedrock-session-token";
/// Bedrock API key accepted as `Authorization: Bearer`.
pub const API_KEY: &str = "mock-bedrock-api-key";
/// Reasoning text of answers to requests with `additionalModelRequestFields.thinking` enabled.
pub const REASONING_TEXT: &str = "Let me think.";
/// Signature of that reasoning block.
const REASONING_SIGNATURE: &str = "mock-signature";
/// Id of the tool call the mock makes.
pub const TOOL_USE_ID: &str = "tooluse_mock_1";
/// Tool input, streamed in three pieces; whole it is `{"location": "Paris"}`.
const TOOL_INPUT: [&str; 3] = ["{\"locat", "ion\": \"Pa", "ris\"}"];
/// Text said before a tool call.
pub const TOOL_PREAMBLE: &str = "Checking the weather.";
/// Output tokens of the tool call itself (on top of the preamble's words).
const TOOL_TOKENS: usize = 5;
/// Header naming a status: the stream ends with the matching exception event instead of
/// `contentBlockStop`/`messageStop`/`metadata`.
const STREAM_ERROR_HEADER: &str = "x-mock-stream-error";
/// Header naming the exception type (e.g. `throttlingException`) of that last event.
const STREAM_EXCEPTION_HEADER: &str = "x-mock-stream-exception";
/// Suffix of `x-amzn-errortype` values.
const ERROR_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.bedrock/";
/// Largest accepted difference between `x-amz-date` and the mock's clock.
const CLOCK_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Top-level fields of a Converse request.
const REQUEST_FIELDS: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
    "outputConfig",
];
/// Fields of `inferenceConfig`.
const INFERENCE_FIELDS: &[&str] = &["maxTokens", "temperature", "topP", "stopSequences"];

/// The Bedrock routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/model/{model}/converse", post(converse))
        .route("/model/{model}/converse-stream", post(converse_stream))
        .route("/model/{model}/invoke", post(invoke))
}

/// InvokeModel for the embedding models (see the module docs).
async fn invoke(
    Extension(ctx): Extension<RequestCtx>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(resp) = check_auth(&method, &uri, &headers, &body) {
        return resp;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return validation("Malformed input request, please reformat your input and try again.");
    };
    let answer = if model.contains("titan-embed") {
        titan_embed(&req)
    } else if model.contains("cohere.embed") {
        cohere_embed(&req)
    } else {
        Err("The provided model identifier is invalid.".to_string())
    };
    match answer {
        Ok((v, tokens)) => {
            let mut resp = reply::json(StatusCode::OK, v);
            resp.headers_mut().insert(
                "x-amzn-bedrock-input-token-count",
                HeaderValue::from(tokens),
            );
            with_request_id(resp, ctx.id)
        }
        Err(m) => validation(&m),
    }
}

/// Every key of `req` must be one of `allowed` (Bedrock's "extraneous key" error).
fn only_keys(req: &Value, allowed: &[&str]) -> Result<(), String> {
    let obj = req
        .as_object()
        .ok_or("Malformed input request: expected an object")?;
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "Malformed input request: #: extraneous key [{k}] is not permitted, please reformat your input and try again."
        )),
        None => Ok(()),
    }
}

/// Titan text embeddings: one `inputText`; `dimensions` 256, 512 or 1024.
fn titan_embed(req: &Value) -> Result<(Value, usize), String> {
    only_keys(
        req,
        &["inputText", "dimensions", "normalize", "embeddingTypes"],
    )?;
    let text = req
        .get("inputText")
        .and_then(Value::as_str)
        .ok_or("Malformed input request: #: required key [inputText] not found")?;
    let mut values = embed(text);
    if let Some(d) = req.get("dimensions") {
        match d.as_u64() {
            Some(n @ (256 | 512 | 1024)) => values.resize(n as usize, 0.0),
            _ => return Err("Malformed input request: #/dimensions: 256, 512 or 1024".into()),
        }
    }
    let tokens = count_words(text);
    Ok((
        json!({"embedding": values, "inputTextTokenCount": tokens}),
        tokens,
    ))
}

/// Cohere embed: `texts` and a required `input_type`.
fn cohere_embed(req: &Value) -> Result<(Value, usize), String> {
    only_keys(
        req,
        &[
            "texts",
            "images",
            "inputs",
            "input_type",
            "truncate",
            "embedding_types",
            "output_dimension",
            "max_tokens",
        ],
    )?;
    if req.get("input_type").and_then(Value::as_str).is_none() {
        return Err("Malformed input request: #: required key [input_type] not found".into());
    }
    let texts: Vec<&str> = req
        .get("texts")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if texts.is_empty() {
        return Err("Malformed input request: #/texts: expected at least 1 item".into());
    }
    let vectors: Vec<Vec<f64>> = texts.iter().map(|t| embed(t)).collect();
    let tokens = texts.iter().map(|t| count_words(t)).sum();
    let body = if req.get("embedding_types").is_some() {
        json!({"id": "mock-cohere-embed", "embeddings": {"float": vectors},
            "response_type": "embeddings_by_type", "texts": texts})
    } else {
        json!({"id": "mock-cohere-embed", "embeddings": vectors,
            "response_type": "embeddings_floats", "texts": texts})
    };
    Ok((body, tokens))
}

/// A Bedrock-shaped error: `x-amzn-errortype: <kind>:<namespace>`, `{"message": …}`.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut resp = reply::json(status, json!({ "message": message }));
    if let Ok(v) = HeaderValue::from_str(&format!("{kind}:{ERROR_NAMESPACE}")) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

/// The Bedrock error name the mock uses for a status.
fn error_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UnrecognizedClientException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        400..=499 => "ValidationException",
        _ => "InternalServerException",
    }
}

/// The reply for `x-mock-status` / `/__mock/fail` on a Bedrock path, for the control middleware
/// (which answers those in the OpenAI shape until it routes `/model/*` here).
pub fn failure(status: StatusCode) -> Response {
    error(
        status,
        error_kind(status),
        &format!("mock failure {}", status.as_u16()),
    )
}

fn validation(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the \
    signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
    service documentation for details.";
const BAD_TOKEN: &str = "The security token included in the request is invalid.";

/// Checks `Authorization` as Bedrock would; the 403 to answer otherwise.
fn check_auth(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let forbidden = |kind: &str, message: &str| Some(error(StatusCode::FORBIDDEN, kind, message));
    let auth = headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if let Some(key) = auth.strip_prefix("Bearer ") {
        return if key.trim() == API_KEY {
            None
        } else {
            forbidden("UnrecognizedClientException", BAD_TOKEN)
        };
    }
    if !auth.starts_with(sigv4::ALGORITHM) {
        return forbidden("UnrecognizedClientException", BAD_TOKEN);
    }
    // The headers as received; HTTP/2 carries the host as `:authority`.
    let mut received: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if !headers.contains_key(HOST) {
        if let Some(authority) = uri.authority() {
            received.push(("host".to_owned(), authority.as_str().to_owned()));
        }
    }
    let req = sigv4::Received {
        method: method.as_str(),
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: &received,
        body,
    };
    let verdict = sigv4::verify(&req, "bedrock", |key| {
        (key == ACCESS_KEY).then(|| SECRET_KEY.to_owned())
    });
    let date = match verdict {
        Ok((_, date)) => date,
        Err(Rejection::Malformed(why)) => {
            return forbidden(
                "IncompleteSignatureException",
                &format!("Malformed SigV4 authorization: {why}"),
            )
        }
        Err(Rejection::UnknownKey(_)) => {
            return forbidden("UnrecognizedClientException", BAD_TOKEN)
        }
        Err(Rejection::BodyHash) => {
            return forbidden(
                "InvalidSignatureException",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        }
        Err(Rejection::Mismatch(_)) => {
            let service = sigv4::Authorization::parse(&auth).map(|a| a.service);
            return if service.is_some_and(|s| s != "bedrock") {
                forbidden(
                    "InvalidSignatureException",
                    "Credential should be scoped to correct service: 'bedrock'.",
                )
            } else {
                forbidden("InvalidSignatureException", SIGNATURE_MISMATCH)
            };
        }
    };
    let skew = match date.duration_since(SystemTime::now()) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    if skew > CLOCK_WINDOW {
        return forbidden(
            "InvalidSignatureException",
            "Signature expired: x-amz-date is more than 15 minutes away from the server time.",
        );
    }
    if let Some(token) = headers.get("x-amz-security-token") {
        if token.as_bytes() != SESSION_TOKEN.as_bytes() {
            return forbidden("UnrecognizedClientException", BAD_TOKEN);
        }
    }
    None
}

fn blocks(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// What Converse rejects; the message of the 400.
fn validate(req: &Value) -> Result<(), String> {
    let Some(obj) = req.as_object() else {
        return Err("Malformed input request, please reformat your input and try again.".into());
    };
    if let Some(extra) = obj.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Malformed input request: extraneous key [{extra}] is not permitted, please reformat your input and try again."
        ));
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("A conversation must start with a user message. Try again with a conversation that starts with a user message.")?;
    let mut tool_blocks = false;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if role != expected {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        let content = blocks(m.get("content"));
        if content.is_empty() {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            ));
        }
        for (j, b) in content.iter().enumerate() {
            if b.get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| t.trim().is_empty())
            {
                return Err(format!(
                    "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
                ));
            }
            tool_blocks |= b.get("toolUse").is_some() || b.get("toolResult").is_some();
        }
    }
    let tools = blocks(obj.get("toolConfig").and_then(|c| c.get("tools")));
    if tool_blocks && tools.is_empty() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    for (i, t) in tools.iter().enumerate() {
        let spec = t.get("toolSpec");
        let named = spec
            .and_then(|s| s.get("name"))
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !named || spec.and_then(|s| s.pointer("/inputSchema/json")).is_none() {
            return Err(format!(
                "toolConfig.tools.{i}: a toolSpec needs a name and inputSchema.json"
            ));
        }
    }
    let inference = obj.get("inferenceConfig");
    if let Some(cfg) = inference {
        let cfg = cfg.as_object().ok_or("inferenceConfig must be an object")?;
        if let Some(extra) = cfg.keys().find(|k| !INFERENCE_FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "Malformed input request: extraneous key [inferenceConfig.{extra}] is not permitted"
            ));
        }
    }
    let thinking = obj
        .get("additionalModelRequestFields")
        .and_then(|a| a.get("thinking"));
    if thinking.and_then(|t| t.get("type")).and_then(Value::as_str) == Some("enabled") {
        let budget = thinking
            .and_then(|t| t.get("budget_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if budget < 1024 {
            return Err(
                "thinking.budget_tokens: Input should be greater than or equal to 1024".into(),
            );
        }
        let max = inference
            .and_then(|c| c.get("maxTokens"))
            .and_then(Value::as_u64);
        if max.is_some_and(|m| m <= budget) {
            return Err("max_tokens must be greater than thinking.budget_tokens".into());
        }
        if inference.and_then(|c| c.get("temperature")).is_some() {
            return Err("temperature may only be set to 1 when thinking is enabled".into());
        }
        let messages = obj.get("messages").and_then(Value::as_array);
        if messages
            .is_some_and(|m| crate::anthropic::final_turn_lacks_thinking(m, "key", "toolUse"))
        {
            return Err(
                "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When \
                `thinking` is enabled, a final `assistant` message must start with a thinking \
                block."
                    .into(),
            );
        }
    }
    Ok(())
}

/// Prompt tokens: words of every `text` block in `system` and `messages`; and, when the request
/// has cache points, the words before the last one (reported as cache reads).
fn input_words(req: &Value) -> (usize, Option<usize>) {
    let all = blocks(req.get("system")).iter().chain(
        blocks(req.get("messages"))
            .iter()
            .flat_map(|m| blocks(m.get("content"))),
    );
    let (mut total, mut before_point, mut cached) = (0, 0, None);
    for b in all {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            let n = count_words(t);
            total += n;
            before_point += n;
        } else if b.get("cachePoint").is_some() {
            cached = Some(before_point);
        }
    }
    (total, cached)
}

/// The tool to call when tools are offered and the last turn is the user's own (not tool
/// results): `toolChoice.tool.name`, else the first tool.
fn tool_to_use(req: &Value) -> Option<String> {
    let last = blocks(req.get("messages")).last()?;
    if last.get("role")? != "user" {
        return None;
    }
    if blocks(last.get("content"))
        .iter()
        .any(|b| b.get("toolResult").is_some())
    {
        return None;
    }
    let config = req.get("toolConfig")?;
    let first = blocks(config.get("tools")).first()?;
    config
        .pointer("/toolChoice/tool/name")
        .or_else(|| first.pointer("/toolSpec/name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether the request turns Anthropic thinking on.
fn thinking(req: &Value) -> bool {
    req.pointer("/additionalModelRequestFields/thinking/type")
        .and_then(Value::as_str)
        == Some("enabled")
}

/// The usage object: `inputTokens` without the cached words, which are reported as
/// `cacheReadInputTokens` (with `cacheWriteInputTokens: 0`) when the request had cache points.
fn usage(input: (usize, Option<usize>), output: usize) -> Value {
    let (total, cached) = input;
    let fresh = total.saturating_sub(cached.unwrap_or(0));
    let mut u =
        json!({"inputTokens": fresh, "outputTokens": output, "totalTokens": total + output});
    if let Some(c) = cached {
        u["cacheReadInputTokens"] = json!(c);
        u["cacheWriteInputTokens"] = json!(0);
    }
    u
}

/// Parses and checks a request; the answer to send instead when it fails.
fn accept(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Box<Response>> {
    if let Some(resp) = check_auth(method, uri, headers, body) {
        return Err(Box::new(resp));
    }
    let req: Value = serde_json::from_slice(body).map_err(|_| {
        Box::new(validation(
            "Malformed input request, please reformat your input and try again.",
        ))
    })?;
    validate(&req).map_err(|m| Box::new(validation(&m)))?;
    Ok(req)
}

fn with_request_id(mut resp: Response, id: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("mock-bedrock-{id}")) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn converse(
    Extension(ctx): Extension<RequestCtx>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match accept(&method, &uri, &headers, &body) {
        Ok(req) => req,
        Err(resp) => return *resp,
    };
    with_request_id(answer(&req, &model, &ctx.control), ctx.id)
}

/// The JSON answer of `/converse`.
fn answer(req: &Value, model: &str, control: &MockControl) -> Response {
    let mut content = Vec::new();
    let mut output = 0;
    if thinking(req) {
        content.push(json!({"reasoningContent": {"reasoningText": {
            "text": REASONING_TEXT, "signature": REASONING_SIGNATURE}}}));
        output += count_words(REASONING_TEXT);
    }
    let stop = match tool_to_use(req) {
        Some(name) => {
            content.push(json!({ "text": TOOL_PREAMBLE }));
            content.push(json!({"toolUse": {"toolUseId": TOOL_USE_ID, "name": name,
                "input": {"location": "Paris"}}}));
            output += count_words(TOOL_PREAMBLE) + TOOL_TOKENS;
            "tool_use"
        }
        None => {
            let text = control
                .content
                .clone()
                .unwrap_or_else(|| format!("mock reply from {model}"));
            output += count_words(&text);
            content.push(json!({ "text": text }));
            "end_turn"
        }
    };
    let mut out = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "metrics": {"latencyMs": 1},
    });
    if control.usage {
        out["usage"] = usage(input_words(req), output);
    }
    reply::json(StatusCode::OK, out)
}

/// One event-stream frame of a ConverseStream event (with Bedrock's `p` padding field).
fn event(kind: &str, mut payload: Value) -> Bytes {
    payload["p"] = json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    frame(
        [
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string(),
    )
}

/// An exception frame (`:message-type: exception`).
fn exception(kind: &str, message: &str) -> Bytes {
    frame(
        [
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({ "message": message }).to_string(),
    )
}

/// A message with string headers, framed by AWS's own event-stream codec.
fn frame(headers: [(&str, &str); 3], payload: String) -> Bytes {
    let message = headers
        .into_iter()
        .fold(Message::new(payload), |m, (n, v)| {
            m.add_header(Header::new(
                n.to_owned(),
                EsValue::String(v.to_owned().into()),
            ))
        });
    let mut out = Vec::new();
    // Only names over 255 bytes or values over 32 KiB fail to frame; these are short.
    if let Err(e) = write_message_to(&message, &mut out) {
        eprintln!("mock-provider: event-stream frame: {e}");
    }
    Bytes::from(out)
}

/// The stream exception for a status named by `x-mock-stream-error`.
fn stream_exception_for(status: u16) -> &'static str {
    match status {
        400 => "validationException",
        429 => "throttlingException",
        500 => "internalServerException",
        503 => "serviceUnavailableException",
        _ => "modelStreamErrorException",
    }
}

/// The exception (type, message) the stream ends with, if asked for.
fn stream_failure(headers: &HeaderMap) -> Option<(String, String)> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(kind) = text(STREAM_EXCEPTION_HEADER).filter(|k| !k.is_empty()) {
        return Some((kind.to_owned(), format!("mock {kind}")));
    }
    let status = text(STREAM_ERROR_HEADER)?.parse::<u16>().ok()?;
    Some((
        stream_exception_for(status).to_owned(),
        format!("mock stream failure {status}"),
    ))
}

/// The frames of a `/converse-stream` answer: messageStart, reasoning (if thinking), the text
/// deltas, the tool call (if any), messageStop and metadata — or, with a stream failure asked
/// for, an exception right after the content deltas.
fn stream_frames(
    req: &Value,
    control: &MockControl,
    failure: Option<(String, String)>,
) -> Vec<Bytes> {
    let mut frames = vec![event("messageStart", json!({"role": "assistant"}))];
    let mut index = 0;
    let mut output = 0;
    if thinking(req) {
        for delta in [
            json!({"reasoningContent": {"text": REASONING_TEXT}}),
            json!({"reasoningContent": {"signature": REASONING_SIGNATURE}}),
        ] {
            frames.push(event(
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": delta}),
            ));
        }
        frames.push(event(
            "contentBlockStop",
            json!({ "contentBlockIndex": index }),
        ));
        output += count_words(REASONING_TEXT);
        index += 1;
    }
    let text_delta = |index: usize, text: &str| {
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": index, "delta": {"text": text}}),
        )
    };
    let stop = match tool_to_use(req) {
        Some(name) => {
            frames.push(text_delta(index, TOOL_PREAMBLE));
            frames.push(event(
                "contentBlockStop",
                json!({ "contentBlockIndex": index }),
            ));
            index += 1;
            frames.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": index,
                    "start": {"toolUse": {"toolUseId": TOOL_USE_ID, "name": name}}}),
            ));
            for piece in TOOL_INPUT {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}),
                ));
            }
            output += count_words(TOOL_PREAMBLE) + TOOL_TOKENS;
            "tool_use"
        }
        None => {
            let pieces = stream_pieces(control);
            for piece in &pieces {
                frames.push(text_delta(index, piece));
            }
            output += pieces.len();
            "end_turn"
        }
    };
    if let Some((kind, message)) = failure {
        frames.push(exception(&kind, &message));
        return frames;
    }
    frames.push(event(
        "contentBlockStop",
        json!({ "contentBlockIndex": index }),
    ));
    frames.push(event("messageStop", json!({ "stopReason": stop })));
    let mut metadata = json!({"metrics": {"latencyMs": 1}});
    if control.usage {
        metadata["usage"] = usage(input_words(req), output);
    }
    frames.push(event("metadata", metadata));
    frames
}

async fn converse_stream(
    Extension(ctx): Extension<RequestCtx>,
    Path(_model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match accept(&method, &uri, &headers, &body) {
        Ok(req) => req,
        Err(resp) => return *resp,
    };
    let frames = stream_frames(&req, &ctx.control, stream_failure(&headers));
    let mut resp = Response::new(stream::paced_body(frames, ctx.control.pacing()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    resp.extensions_mut().insert(Streamed);
    with_request_id(resp, ctx.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    // Requests are signed by the gateway's signer and checked by AWS's: each checks the other.
    use ai_proxy::sigv4::{self as gateway_sigv4, Credentials, RequestParts};
    use aws_smithy_eventstream::frame::read_message_from;

    #[test]
    fn invoke_model_embeddings() {
        let (v, tokens) = titan_embed(&json!({"inputText": "a b c", "dimensions": 512})).unwrap();
        assert_eq!(tokens, 3);
        assert_eq!(v["inputTextTokenCount"], 3);
        assert_eq!(v["embedding"].as_array().unwrap().len(), 512);
        assert!(titan_embed(&json!({"inputText": "a", "dimensions": 100})).is_err());
        assert!(titan_embed(&json!({"texts": ["a"]})).is_err());
        let (v, tokens) = cohere_embed(&json!({"texts": ["a b", "c"],
            "input_type": "search_document", "embedding_types": ["float"]}))
        .unwrap();
        assert_eq!(tokens, 3);
        assert_eq!(v["embeddings"]["float"].as_array().unwrap().len(), 2);
        let (v, _) = cohere_embed(&json!({"texts": ["a"], "input_type": "search_query"})).unwrap();
        assert_eq!(v["response_type"], "embeddings_floats");
        assert!(cohere_embed(&json!({"texts": ["a"]})).is_err());
        assert!(cohere_embed(&json!({"texts": ["a"], "input_type": "x", "model": "m"})).is_err());
    }

    const MODEL_PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";

    fn signed(
        path: &str,
        body: &[u8],
        creds: &Credentials,
        service: &str,
        time: SystemTime,
    ) -> HeaderMap {
        let base = [
            ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
            ("content-type", "application/json"),
        ];
        let req = RequestParts {
            method: "POST",
            path,
            query: "",
            headers: &base,
            payload: body,
        };
        let mut map = HeaderMap::new();
        for (n, v) in base {
            map.insert(n, HeaderValue::from_static(v));
        }
        for (n, v) in gateway_sigv4::sign(&req, "us-east-1", service, time, creds, true) {
            let name = axum::http::HeaderName::from_bytes(n.as_bytes()).unwrap();
            map.insert(name, HeaderValue::from_str(&v).unwrap());
        }
        map
    }

    fn mock_creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            session_token: token.map(str::to_owned),
        }
    }

    fn auth_result(uri: &str, headers: &HeaderMap, body: &[u8]) -> Option<(u16, String)> {
        let uri: Uri = uri.parse().unwrap();
        check_auth(&Method::POST, &uri, headers, body).map(|r| {
            let kind = r.headers()["x-amzn-errortype"].to_str().unwrap().to_owned();
            (r.status().as_u16(), kind)
        })
    }

    fn kind_of(result: Option<(u16, String)>) -> Option<(u16, String)> {
        result.map(|(s, k)| (s, k.split(':').next().unwrap().to_owned()))
    }

    #[test]
    fn sigv4_requests_are_verified() {
        let body = br#"{"messages":[]}"#;
        let now = SystemTime::now();
        let ok = signed(MODEL_PATH, body, &mock_creds(None), "bedrock", now);
        assert_eq!(auth_result(MODEL_PATH, &ok, body), None);
        // Also with the host taken from the URI (HTTP/2) and a session token.
        let mut h2 = signed(
            MODEL_PATH,
            body,
            &mock_creds(Some(SESSION_TOKEN)),
            "bedrock",
            now,
        );
        h2.remove(HOST);
        let uri = format!("http://bedrock-runtime.us-east-1.amazonaws.com{MODEL_PATH}");
        assert_eq!(auth_result(&uri, &h2, body), None);

        let mismatch = Some((403, "InvalidSignatureException".to_owned()));
        // Another body, another path, the path not double-encoded, another key or secret.
        assert_eq!(kind_of(auth_result(MODEL_PATH, &ok, b"{}")), mismatch);
        assert_eq!(
            kind_of(auth_result("/model/other/converse", &ok, body)),
            mismatch
        );
        let single = {
            let base = [
                ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
                ("content-type", "application/json"),
            ];
            let req = RequestParts {
                method: "POST",
                path: MODEL_PATH,
                query: "",
                headers: &base,
                payload: body,
            };
            let mut map = HeaderMap::new();
            for (n, v) in base {
                map.insert(n, HeaderValue::from_static(v));
            }
            for (n, v) in
                gateway_sigv4::sign(&req, "us-east-1", "bedrock", now, &mock_creds(None), false)
            {
                let name = axum::http::HeaderName::from_bytes(n.as_bytes()).unwrap();
                map.insert(name, HeaderValue::from_str(&v).unwrap());
            }
            map
        };
        assert_eq!(kind_of(auth_result(MODEL_PATH, &single, body)), mismatch);
        let stranger = Credentials {
            access_key: "AKIDSTRANGER".into(),
            ..mock_creds(None)
        };
        let h = signed(MODEL_PATH, body, &stranger, "bedrock", now);
        let unknown = Some((403, "UnrecognizedClientException".to_owned()));
        assert_eq!(kind_of(auth_result(MODEL_PATH, &h, body)), unknown);
        let wrong = Credentials {
            secret_key: "guess".into(),
            ..mock_creds(None)
        };
        let h = signed(MODEL_PATH, body, &wrong, "bedrock", now);
        assert_eq!(kind_of(auth_result(MODEL_PATH, &h, body)), mismatch);
        // A signed header changed on the way.
        let mut tampered = ok.clone();
        tampered.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(kind_of(auth_result(MODEL_PATH, &tampered, body)), mismatch);
        // Wrong service scope, stale clock, unknown session token.
        let h = signed(MODEL_PATH, body, &mock_creds(None), "s3", now);
        assert_eq!(kind_of(auth_result(MODEL_PATH, &h, body)), mismatch);
        let h = signed(
            MODEL_PATH,
            body,
            &mock_creds(None),
            "bedrock",
            now - Duration::from_secs(3600),
        );
        assert_eq!(kind_of(auth_result(MODEL_PATH, &h, body)), mismatch);
        let h = signed(MODEL_PATH, body, &mock_creds(Some("other")), "bedrock", now);
        assert_eq!(
            kind_of(auth_result(MODEL_PATH, &h, body)),
            Some((403, "UnrecognizedClientException".to_owned()))
        );
        // Malformed authorization.
        let mut bad = ok.clone();
        bad.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
        );
        assert_eq!(
            kind_of(auth_result(MODEL_PATH, &bad, body)),
            Some((403, "IncompleteSignatureException".to_owned()))
        );
    }

    #[test]
    fn bearer_keys_and_missing_auth() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {API_KEY}")).unwrap(),
        );
        assert_eq!(auth_result(MODEL_PATH, &h, b"{}"), None);
        h.insert("authorization", HeaderValue::from_static("Bearer nope"));
        let denied = Some((403, "UnrecognizedClientException".to_owned()));
        assert_eq!(kind_of(auth_result(MODEL_PATH, &h, b"{}")), denied);
        assert_eq!(
            kind_of(auth_result(MODEL_PATH, &HeaderMap::new(), b"{}")),
            denied
        );
        let (_, header) = auth_result(MODEL_PATH, &HeaderMap::new(), b"{}").unwrap();
        assert_eq!(
            header,
            "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        );
    }

    #[test]
    fn failures_are_bedrock_shaped() {
        for (status, kind) in [
            (400, "ValidationException"),
            (403, "AccessDeniedException"),
            (404, "ResourceNotFoundException"),
            (408, "ModelTimeoutException"),
            (429, "ThrottlingException"),
            (500, "InternalServerException"),
            (502, "InternalServerException"),
            (503, "ServiceUnavailableException"),
        ] {
            let resp = failure(StatusCode::from_u16(status).unwrap());
            assert_eq!(resp.status().as_u16(), status);
            let header = resp.headers()["x-amzn-errortype"].to_str().unwrap();
            assert_eq!(header.split(':').next(), Some(kind), "{status}");
        }
    }

    #[test]
    fn validation_mirrors_converse() {
        let ok = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "system": [{"text": "be brief"}], "inferenceConfig": {"maxTokens": 10}});
        assert_eq!(validate(&ok), Ok(()));
        let bad = [
            json!([]),
            json!({"model": "x", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
            json!({"messages": []}),
            json!({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]},
                {"role": "user", "content": [{"text": "b"}]}]}),
            json!({"messages": [{"role": "user", "content": []}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "  "}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "toolConfig": {"tools": [{"toolSpec": {"name": "f"}}]}}),
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "inferenceConfig": {"max_tokens": 5}}),
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 500}}}),
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "inferenceConfig": {"maxTokens": 1024},
                "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}}),
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "inferenceConfig": {"temperature": 0.5},
                "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}}),
        ];
        for b in bad {
            assert!(validate(&b).is_err(), "{b}");
        }
    }

    #[test]
    fn counts_words_and_cache_reads() {
        let req = json!({"system": [{"text": "be brief"}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "one two three"},
                {"image": {"format": "png", "source": {"bytes": "AAAA"}}}]}]});
        assert_eq!(input_words(&req), (5, Some(2)));
        assert_eq!(
            usage(input_words(&req), 4),
            json!({"inputTokens": 3, "outputTokens": 4, "totalTokens": 9,
                "cacheReadInputTokens": 2, "cacheWriteInputTokens": 0})
        );
        let plain = json!({"messages": [{"role": "user", "content": [{"text": "a b"}]}]});
        assert_eq!(input_words(&plain), (2, None));
        assert_eq!(
            usage(input_words(&plain), 1),
            json!({"inputTokens": 2, "outputTokens": 1, "totalTokens": 3})
        );
    }

    #[test]
    fn tool_only_after_a_user_question() {
        let tools = json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}},
            {"toolSpec": {"name": "now", "inputSchema": {"json": {}}}}]});
        let ask = json!({"toolConfig": tools, "messages": [{"role": "user", "content": [{"text": "weather?"}]}]});
        assert_eq!(tool_to_use(&ask).as_deref(), Some("get_weather"));
        let mut chosen = ask.clone();
        chosen["toolConfig"]["toolChoice"] = json!({"tool": {"name": "now"}});
        assert_eq!(tool_to_use(&chosen).as_deref(), Some("now"));
        let answered = json!({"toolConfig": tools, "messages": [{"role": "user", "content": [
            {"toolResult": {"toolUseId": "t", "content": [{"text": "sunny"}]}}]}]});
        assert_eq!(tool_to_use(&answered), None);
        let no_tools = json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]});
        assert_eq!(tool_to_use(&no_tools), None);
    }

    /// Decodes each frame with AWS's codec: exactly one message per frame.
    fn decode(frames: &[Bytes]) -> Vec<Message> {
        frames
            .iter()
            .map(|f| {
                let mut rest = &f[..];
                let m = read_message_from(&mut rest).unwrap();
                assert!(rest.is_empty(), "one event per frame");
                m
            })
            .collect()
    }

    fn header_str<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
        m.headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str())
    }

    fn kinds(msgs: &[Message]) -> Vec<String> {
        msgs.iter()
            .map(|m| {
                header_str(m, ":event-type")
                    .or(header_str(m, ":exception-type"))
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn payload(m: &Message) -> Value {
        serde_json::from_slice(m.payload()).unwrap()
    }

    #[test]
    fn stream_frames_for_text_with_usage() {
        let req = json!({"messages": [{"role": "user", "content": [{"text": "Say hi there"}]}]});
        let control = MockControl {
            chunks: 3,
            ..MockControl::default()
        };
        let msgs = decode(&stream_frames(&req, &control, None));
        assert_eq!(
            kinds(&msgs),
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert!(msgs
            .iter()
            .all(|m| header_str(m, ":message-type") == Some("event")
                && header_str(m, ":content-type") == Some("application/json")));
        let text: String = msgs
            .iter()
            .filter_map(|m| {
                payload(m)
                    .pointer("/delta/text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "w0 w1 w2 ");
        assert_eq!(payload(&msgs[5])["stopReason"], "end_turn");
        assert_eq!(
            payload(&msgs[6])["usage"],
            json!({"inputTokens": 3, "outputTokens": 3, "totalTokens": 6})
        );
        // Without usage: metadata keeps only metrics.
        let none = MockControl {
            usage: false,
            ..MockControl::default()
        };
        let msgs = decode(&stream_frames(&req, &none, None));
        assert!(payload(msgs.last().unwrap()).get("usage").is_none());
    }

    #[test]
    fn stream_frames_for_tool_call_with_thinking() {
        let req = json!({
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]},
            "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}
        });
        let msgs = decode(&stream_frames(&req, &MockControl::default(), None));
        assert_eq!(
            kinds(&msgs),
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "contentBlockDelta",
                "contentBlockStop",
                "contentBlockStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(
            payload(&msgs[1])["delta"]["reasoningContent"]["text"],
            REASONING_TEXT
        );
        assert_eq!(payload(&msgs[4])["contentBlockIndex"], 1);
        assert_eq!(
            payload(&msgs[6])["start"],
            json!({"toolUse": {"toolUseId": TOOL_USE_ID, "name": "get_weather"}})
        );
        let input: String = msgs[7..10]
            .iter()
            .map(|m| {
                payload(m)["delta"]["toolUse"]["input"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&input).unwrap(),
            json!({"location": "Paris"})
        );
        assert_eq!(payload(&msgs[11])["stopReason"], "tool_use");
        // 3 reasoning words + 3 preamble words + 5 for the call.
        assert_eq!(payload(&msgs[12])["usage"]["outputTokens"], 11);
    }

    #[test]
    fn stream_failures_end_with_an_exception() {
        let req = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
        let mut h = HeaderMap::new();
        h.insert(STREAM_ERROR_HEADER, HeaderValue::from_static("429"));
        let failure = stream_failure(&h);
        assert_eq!(
            failure,
            Some((
                "throttlingException".into(),
                "mock stream failure 429".into()
            ))
        );
        let control = MockControl {
            chunks: 2,
            ..MockControl::default()
        };
        let msgs = decode(&stream_frames(&req, &control, failure));
        assert_eq!(
            kinds(&msgs),
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "throttlingException"
            ]
        );
        let last = msgs.last().unwrap();
        assert_eq!(header_str(last, ":message-type"), Some("exception"));
        assert_eq!(payload(last), json!({"message": "mock stream failure 429"}));
        h.insert(
            STREAM_EXCEPTION_HEADER,
            HeaderValue::from_static("validationException"),
        );
        assert_eq!(
            stream_failure(&h),
            Some((
                "validationException".into(),
                "mock validationException".into()
            ))
        );
        assert_eq!(stream_failure(&HeaderMap::new()), None);
        assert_eq!(stream_exception_for(503), "serviceUnavailableException");
        assert_eq!(stream_exception_for(502), "modelStreamErrorException");
    }

    #[test]
    fn stream_translates_back_through_the_plugin() {
        use ai_proxy::providers::{Family, Native};
        let req = json!({"messages": [{"role": "user", "content": [{"text": "Say hi"}]}]});
        let control = MockControl {
            content: Some("Hello from the mock".into()),
            ..MockControl::default()
        };
        let frames = stream_frames(&req, &control, None);
        let chunks = crate::stream::chunks_through(Family::Bedrock, &Native::None, "m", &frames);
        let text = e2e::sse::chat_text(&chunks);
        assert_eq!(text, "Hello from the mock");
        let usage = chunks.last().unwrap().clone();
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6})
        );
    }

    #[tokio::test]
    async fn json_answer_shapes() {
        let req = json!({"messages": [{"role": "user", "content": [{"text": "Say hi"}]}],
            "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2000}}});
        let resp = answer(&req, "anthropic.claude-x", &MockControl::default());
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["output"]["message"]["content"],
            json!([{"reasoningContent": {"reasoningText": {"text": REASONING_TEXT, "signature": "mock-signature"}}},
                {"text": "mock reply from anthropic.claude-x"}])
        );
        assert_eq!(v["stopReason"], "end_turn");
        assert_eq!(
            v["usage"],
            json!({"inputTokens": 2, "outputTokens": 7, "totalTokens": 9})
        );
    }

    /// The routes behind the real app, over HTTP: percent-encoded model ids, signed headers as
    /// received, the JSON answer and the event stream.
    #[tokio::test]
    async fn serves_signed_requests_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = crate::app(std::sync::Arc::new(crate::record::Shared::default()));
        tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
        let host = addr.to_string();
        let result = tokio::task::spawn_blocking(move || {
            let client = e2e::http::Client::new(Duration::from_secs(10));
            let body = r#"{"messages":[{"role":"user","content":[{"text":"Say hi"}]}]}"#;
            let send = |path: &str, extra: &[(&str, &str)], sign_body: &str| {
                let base = [
                    ("host", host.as_str()),
                    ("content-type", "application/json"),
                ];
                let req = RequestParts {
                    method: "POST",
                    path,
                    query: "",
                    headers: &base,
                    payload: sign_body.as_bytes(),
                };
                let added = gateway_sigv4::sign(
                    &req,
                    "us-east-1",
                    "bedrock",
                    SystemTime::now(),
                    &mock_creds(None),
                    true,
                );
                let mut headers: Vec<(&str, &str)> = added
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                headers.extend_from_slice(extra);
                client
                    .post(&format!("http://{host}{path}"), &headers, body)
                    .unwrap()
            };
            let ok = send(MODEL_PATH, &[], body);
            let forged = send(MODEL_PATH, &[], "{}");
            // The stream is binary: read it raw.
            let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream";
            let base = [
                ("host", host.as_str()),
                ("content-type", "application/json"),
            ];
            let req = RequestParts {
                method: "POST",
                path,
                query: "",
                headers: &base,
                payload: body.as_bytes(),
            };
            let added = gateway_sigv4::sign(
                &req,
                "us-east-1",
                "bedrock",
                SystemTime::now(),
                &mock_creds(None),
                true,
            );
            let mut builder = ureq::http::Request::builder()
                .method("POST")
                .uri(format!("http://{host}{path}"))
                .header("content-type", "application/json")
                .header("x-mock-chunks", "2");
            for (n, v) in &added {
                builder = builder.header(n.as_str(), v.as_str());
            }
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut resp = agent.run(builder.body(body.to_owned()).unwrap()).unwrap();
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
            let bytes = resp.body_mut().read_to_vec().unwrap();
            (ok, forged, resp.status().as_u16(), content_type, bytes)
        })
        .await
        .unwrap();
        let (ok, forged, stream_status, content_type, bytes) = result;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(ok.header("x-amzn-requestid"), Some("mock-bedrock-1"));
        let v = ok.json().unwrap();
        assert_eq!(
            v["output"]["message"]["content"][0]["text"],
            "mock reply from anthropic.claude-3-haiku-20240307-v1:0"
        );
        assert_eq!(
            v["usage"],
            json!({"inputTokens": 2, "outputTokens": 4, "totalTokens": 6})
        );
        assert_eq!(stream_status, 200);
        assert_eq!(content_type, "application/vnd.amazon.eventstream");
        let mut rest = &bytes[..];
        let mut msgs = Vec::new();
        while !rest.is_empty() {
            msgs.push(read_message_from(&mut rest).unwrap());
        }
        assert_eq!(
            kinds(&msgs),
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(forged.status, 403);
        assert_eq!(
            forged
                .header("x-amzn-errortype")
                .and_then(|t| t.split(':').next()),
            Some("InvalidSignatureException")
        );
    }
}
