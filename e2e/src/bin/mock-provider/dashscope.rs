//! DashScope native wire format (Alibaba Cloud Model Studio, Higress type `qwen` with
//! `qwenEnableCompatible: false`), shaped after DashScope's public API reference:
//! `POST /api/v1/services/aigc/text-generation/generation` and
//! `POST /api/v1/services/aigc/multimodal-generation/generation`, body
//! `{model, input: {messages}, parameters}`.
//!
//! Answers `{output: {choices: [{finish_reason, message}]}, usage, request_id}` (or the older
//! `{output: {text, finish_reason}}` when `parameters.result_format` is not `message`). A request
//! with `X-DashScope-SSE: enable` (or `Accept: text/event-stream`) is answered as SSE events
//! (`id:`, `event:result`, `:HTTP_STATUS/200`, `data:{…}`): with `incremental_output` each event
//! carries only the new text or tool-call piece (the first piece of a call has its id and name,
//! later ones argument text only), otherwise the whole answer so far; every event repeats the
//! usage so far. Errors are `{code, message, request_id}`, as JSON or, inside a stream, as an
//! `event:error` (`x-mock-stream-error: <status>` replaces the last event with one).
//!
//! Word counts stand in for tokens, as in the other formats. The reply text, chunking, pacing,
//! resets and `x-mock-usage` follow the `x-mock-*` headers like the OpenAI routes. Without
//! `Authorization: Bearer <key>` it answers 401 `InvalidApiKey`. It refuses (400
//! `InvalidParameter`) fields DashScope does not define at the top level, in `input`, in a
//! message or in `parameters`, so a translation that leaks OpenAI fields (`messages`,
//! `frequency_penalty`, `stream_options`, …) fails loudly, and tool results that answer no call.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::{self, MockControl, RequestCtx};
use crate::openai::stream_pieces;
use crate::reply::{self, count_words};
use crate::stream;

/// Text generation.
pub const TEXT_PATH: &str = "/api/v1/services/aigc/text-generation/generation";
/// Multimodal generation (Qwen-VL, Qwen-Audio, QVQ, or any request with images).
pub const MULTIMODAL_PATH: &str = "/api/v1/services/aigc/multimodal-generation/generation";

/// Id of the tool call the mock makes.
const TOOL_CALL_ID: &str = "call_mock_dashscope_01";
/// Tool arguments, streamed in three pieces.
const TOOL_ARGS: [&str; 3] = ["{\"location\":", " \"Pa", "ris\"}"];
/// Output tokens charged for the tool call.
const TOOL_CALL_TOKENS: usize = 5;
/// `request_id` of the forced failures (the control middleware has no request id to give).
const FAILURE_REQUEST_ID: &str = "mock-dashscope-failure";

/// Top-level fields of a generation request.
const REQUEST_FIELDS: &[&str] = &["model", "input", "parameters"];
/// Fields of `input`.
const INPUT_FIELDS: &[&str] = &["messages", "prompt"];
/// Fields of one message.
const MESSAGE_FIELDS: &[&str] = &[
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "partial",
    "reasoning_content",
];
/// Keys of a multimodal content item (each item has exactly one).
const CONTENT_ITEM_KEYS: &[&str] = &["text", "image", "audio", "video"];
/// Fields of `parameters`.
const PARAMETER_FIELDS: &[&str] = &[
    "result_format",
    "incremental_output",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "presence_penalty",
    "max_tokens",
    "max_input_tokens",
    "seed",
    "stop",
    "n",
    "logprobs",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "enable_search",
    "search_options",
    "enable_thinking",
    "thinking_budget",
    "enable_code_interpreter",
    "translation_options",
    "vl_high_resolution_images",
    "modalities",
    "audio",
];

/// The DashScope routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(TEXT_PATH, post(text_generation))
        .route(MULTIMODAL_PATH, post(multimodal_generation))
}

/// DashScope's error code for an HTTP status (its general status code table).
pub fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "InvalidParameter",
        401 => "InvalidApiKey",
        403 => "AccessDenied",
        404 => "ModelNotFound",
        408 => "RequestTimeOut",
        413 => "BadRequest.TooLarge",
        429 => "Throttling.RateQuota",
        _ => "InternalError",
    }
}

/// `{"code","message","request_id"}`.
pub fn error_body(code: &str, message: &str, request_id: &str) -> Value {
    json!({"code": code, "message": message, "request_id": request_id})
}

/// A DashScope-shaped error reply.
pub fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    reply::json(status, error_body(code, message, request_id))
}

/// The reply for `x-mock-status` / `/__mock/fail` on the DashScope paths, for the control
/// middleware.
pub fn failure(status: StatusCode) -> Response {
    error(
        status,
        error_code(status),
        &format!("mock failure {}", status.as_u16()),
        FAILURE_REQUEST_ID,
    )
}

/// The 401 for a request without `Authorization: Bearer <key>`.
pub fn check_auth(headers: &HeaderMap, request_id: &str) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, key)| {
            scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty()
        });
    (!bearer).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "InvalidApiKey",
            "Invalid API-key provided.",
            request_id,
        )
    })
}

/// Whether the request asks for SSE: `X-DashScope-SSE: enable` or `Accept: text/event-stream`.
pub fn wants_sse(headers: &HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    header("x-dashscope-sse").as_deref() == Some("enable")
        || header("accept").is_some_and(|a| a.contains("text/event-stream"))
}

/// A 400 with DashScope's code and message.
type Problem = (&'static str, String);

fn invalid(message: String) -> Problem {
    ("InvalidParameter", message)
}

/// The first key of `obj` not in `allowed`, as the 400.
fn unknown_field(value: &Value, allowed: &[&str], at: &str) -> Result<(), Problem> {
    let Some(obj) = value.as_object() else {
        return Err(invalid(format!("{at} must be a JSON object")));
    };
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(invalid(format!(
            "Unknown field \"{key}\" in {at} (DashScope accepts {allowed:?})"
        ))),
        None => Ok(()),
    }
}

/// One message's content: a string or `[{"text"}]` on the text endpoint; a list of
/// single-key `{"text"|"image"|"audio"|"video"}` items on the multimodal one.
fn check_content(content: &Value, multimodal: bool, at: &str) -> Result<(), Problem> {
    match content {
        Value::String(_) if !multimodal => Ok(()),
        Value::Array(items) => {
            for (j, item) in items.iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                let keys: Vec<&String> = item.as_object().map(|o| o.keys().collect()).ok_or_else(
                    || invalid(format!("{at} must be an object like {{\"text\": \"…\"}}")),
                )?;
                let allowed: &[&str] = if multimodal {
                    CONTENT_ITEM_KEYS
                } else {
                    &["text"]
                };
                let valid = keys.len() == 1
                    && keys.iter().all(|k| allowed.contains(&k.as_str()))
                    && item.as_object().is_some_and(|o| o.values().all(Value::is_string));
                if !valid {
                    return Err(invalid(format!(
                        "{at} must have exactly one of {allowed:?} with a string value"
                    )));
                }
            }
            Ok(())
        }
        _ if multimodal => Err(invalid(format!(
            "{at}.content must be a list of {{\"text\"}}, {{\"image\"}}, {{\"audio\"}} or {{\"video\"}} items on the multimodal endpoint"
        ))),
        _ => Err(invalid(format!("{at}.content must be a string"))),
    }
}

/// The ids of an assistant message's `tool_calls`, after checking their shape.
fn tool_call_ids(calls: &Value, at: &str) -> Result<Vec<String>, Problem> {
    let list = calls
        .as_array()
        .ok_or_else(|| invalid(format!("{at}.tool_calls must be a list")))?;
    list.iter()
        .enumerate()
        .map(|(k, call)| {
            let at = format!("{at}.tool_calls[{k}]");
            let name = call.pointer("/function/name").and_then(Value::as_str);
            let args = call.pointer("/function/arguments").and_then(Value::as_str);
            match (call.get("id").and_then(Value::as_str), name, args) {
                (Some(id), Some(_), Some(_)) if !id.is_empty() => Ok(id.to_owned()),
                _ => Err(invalid(format!(
                    "{at} must have an id and a function with a name and string arguments"
                ))),
            }
        })
        .collect()
}

/// The messages of `input`, checked: known fields and roles, content shaped for the endpoint,
/// every tool result answering a call of the assistant message before it.
fn check_messages(messages: &[Value], multimodal: bool) -> Result<(), Problem> {
    let mut open_calls: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("input.messages[{i}]");
        unknown_field(message, MESSAGE_FIELDS, &at)?;
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content");
        match role {
            "system" | "user" => {
                check_content(content.unwrap_or(&Value::Null), multimodal, &at)?;
                open_calls.clear();
            }
            "assistant" => {
                match message.get("tool_calls") {
                    Some(calls) => {
                        open_calls = tool_call_ids(calls, &at)?;
                        // With tool calls the content may be empty or absent.
                        if let Some(c) = content.filter(|c| !c.is_null()) {
                            if c.as_str() != Some("") {
                                check_content(c, multimodal, &at)?;
                            }
                        }
                    }
                    None => {
                        check_content(content.unwrap_or(&Value::Null), multimodal, &at)?;
                        open_calls.clear();
                    }
                }
            }
            "tool" => {
                check_content(content.unwrap_or(&Value::Null), multimodal, &at)?;
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !open_calls.iter().any(|c| c == id) {
                    return Err(invalid(format!(
                        "{at}: a tool message must answer a tool call of the assistant message before it (tool_call_id {id:?}, open calls {open_calls:?})"
                    )));
                }
            }
            other => {
                return Err(invalid(format!(
                    "{at}.role {other:?} is not one of system, user, assistant, tool"
                )))
            }
        }
    }
    Ok(())
}

/// What DashScope rejects and a translation could get wrong; the error is the 400's code and
/// message.
pub fn validate(req: &Value, multimodal: bool) -> Result<(), Problem> {
    unknown_field(req, REQUEST_FIELDS, "the request body")?;
    if req
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err((
            "BadRequest.EmptyModel",
            "Required parameter \"model\" missing from request.".into(),
        ));
    }
    let empty_input = || {
        (
            "BadRequest.EmptyInput",
            "Required input parameter missing from request.".to_owned(),
        )
    };
    let input = req.get("input").ok_or_else(empty_input)?;
    unknown_field(input, INPUT_FIELDS, "input")?;
    match (
        input.get("messages").and_then(Value::as_array),
        input.get("prompt").and_then(Value::as_str),
    ) {
        (Some(messages), _) if !messages.is_empty() => check_messages(messages, multimodal)?,
        (None, Some(prompt)) if !prompt.is_empty() => {}
        _ => return Err(empty_input()),
    }
    if let Some(params) = req.get("parameters") {
        unknown_field(params, PARAMETER_FIELDS, "parameters")?;
        if let Some(flag) = params.get("incremental_output") {
            if !flag.is_boolean() {
                return Err(invalid(
                    "parameters.incremental_output must be a boolean".into(),
                ));
            }
        }
        if let Some(tools) = params.get("tools") {
            let named = tools.as_array().is_some_and(|list| {
                list.iter().all(|t| {
                    t.get("type").and_then(Value::as_str) == Some("function")
                        && t.pointer("/function/name").is_some_and(Value::is_string)
                })
            });
            if !named {
                return Err(invalid(
                    "parameters.tools must be a list of {\"type\": \"function\", \"function\": {\"name\", …}}".into(),
                ));
            }
            if !message_format(req) {
                return Err(invalid(
                    "tools require parameters.result_format \"message\"".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Whether the answer uses `output.choices` (`result_format: "message"`) rather than the older
/// `output.text`.
fn message_format(req: &Value) -> bool {
    req.pointer("/parameters/result_format")
        .and_then(Value::as_str)
        == Some("message")
}

/// Whether each stream event carries only the new piece (`incremental_output: true`).
fn incremental(req: &Value) -> bool {
    req.pointer("/parameters/incremental_output")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Words of a content value: a string, or the `text` of list items.
fn content_words(content: Option<&Value>) -> usize {
    match content {
        Some(Value::String(s)) => count_words(s),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .map(count_words)
            .sum(),
        _ => 0,
    }
}

/// Input tokens: words of every message's content (or of `prompt`).
pub fn input_words(req: &Value) -> usize {
    let input = req.get("input");
    let messages: usize = input
        .and_then(|i| i.get("messages"))
        .and_then(Value::as_array)
        .map(|m| m.iter().map(|m| content_words(m.get("content"))).sum())
        .unwrap_or(0);
    let prompt = input
        .and_then(|i| i.get("prompt"))
        .and_then(Value::as_str)
        .map_or(0, count_words);
    messages + prompt
}

/// The tool to call: the first tool's name, when tools are offered, `tool_choice` is not
/// `"none"`, and the last message is the user's.
pub fn tool_to_call(req: &Value) -> Option<String> {
    let params = req.get("parameters")?;
    if params.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let first = params.get("tools")?.as_array()?.first()?;
    let last = req.pointer("/input/messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    first
        .pointer("/function/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// What an answer consists of.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// `request_id`.
    pub request_id: String,
    /// Input tokens.
    pub input: usize,
    /// The tool called instead of a text answer.
    pub tool: Option<String>,
    /// `output.choices` (else `output.text`).
    pub message_format: bool,
    /// Content as a list of `{"text"}` items (the multimodal endpoint).
    pub multimodal: bool,
    /// Stream events carry only the new piece.
    pub incremental: bool,
    /// Whether `usage` is reported (`x-mock-usage: none` turns it off).
    pub usage: bool,
}

impl Plan {
    /// The plan for a (validated) request.
    pub fn new(req: &Value, multimodal: bool, id: u64, control: &MockControl) -> Self {
        Plan {
            request_id: format!("mock-dashscope-{id}"),
            input: input_words(req),
            tool: tool_to_call(req),
            message_format: message_format(req),
            multimodal,
            incremental: incremental(req),
            usage: control.usage,
        }
    }

    fn usage(&self, output: usize) -> Value {
        json!({"input_tokens": self.input, "output_tokens": output,
            "total_tokens": self.input + output})
    }

    fn content(&self, text: &str) -> Value {
        if self.multimodal {
            json!([{ "text": text }])
        } else {
            json!(text)
        }
    }

    /// One answer object: `output` from the message (or text), the usage, the request id.
    fn response(&self, message: Value, text: &str, finish: &str, output: usize) -> Value {
        let out = if self.message_format {
            json!({"choices": [{"finish_reason": finish, "message": message}]})
        } else {
            json!({"text": text, "finish_reason": finish})
        };
        let mut v = json!({ "output": out });
        if self.usage {
            v["usage"] = self.usage(output);
        }
        v["request_id"] = json!(self.request_id);
        v
    }

    fn call(&self, name: Option<&str>, id: &str, args: &str) -> Value {
        let mut function = json!({ "arguments": args });
        if let Some(name) = name {
            function["name"] = json!(name);
        }
        json!({"index": 0, "id": id, "type": "function", "function": function})
    }

    /// The whole (non-streamed) answer; `text` is the reply when no tool is called.
    pub fn answer(&self, text: &str) -> Value {
        match &self.tool {
            Some(name) => {
                let call = self.call(Some(name), TOOL_CALL_ID, &TOOL_ARGS.concat());
                let message =
                    json!({"role": "assistant", "content": self.content(""), "tool_calls": [call]});
                self.response(message, "", "tool_calls", TOOL_CALL_TOKENS)
            }
            None => {
                let message = json!({"role": "assistant", "content": self.content(text)});
                self.response(message, text, "stop", count_words(text))
            }
        }
    }

    /// The stream's `data` objects: one per text piece (or tool-argument piece), each with the
    /// usage so far, `finish_reason` `"null"` until the last one.
    pub fn events(&self, pieces: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        match &self.tool {
            Some(name) => {
                let n = TOOL_ARGS.len();
                for (i, piece) in TOOL_ARGS.iter().enumerate() {
                    let call = if self.incremental {
                        if i == 0 {
                            self.call(Some(name), TOOL_CALL_ID, piece)
                        } else {
                            self.call(None, "", piece)
                        }
                    } else {
                        self.call(Some(name), TOOL_CALL_ID, &TOOL_ARGS[..=i].concat())
                    };
                    let message = json!({"role": "assistant", "content": self.content(""),
                        "tool_calls": [call]});
                    let finish = if i + 1 == n { "tool_calls" } else { "null" };
                    out.push(self.response(message, "", finish, TOOL_CALL_TOKENS * (i + 1) / n));
                }
            }
            None if pieces.is_empty() => {
                let message = json!({"role": "assistant", "content": self.content("")});
                out.push(self.response(message, "", "stop", 0));
            }
            None => {
                for (i, piece) in pieces.iter().enumerate() {
                    let text = if self.incremental {
                        piece.clone()
                    } else {
                        pieces[..=i].concat()
                    };
                    let message = json!({"role": "assistant", "content": self.content(&text)});
                    let finish = if i + 1 == pieces.len() {
                        "stop"
                    } else {
                        "null"
                    };
                    out.push(self.response(message, &text, finish, i + 1));
                }
            }
        }
        out
    }
}

/// One SSE event as DashScope frames it (`id:`, `event:`, `:HTTP_STATUS/…`, `data:`).
pub fn frame(id: usize, event: &str, status: StatusCode, data: &Value) -> Bytes {
    Bytes::from(format!(
        "id:{id}\nevent:{event}\n:HTTP_STATUS/{}\ndata:{data}\n\n",
        status.as_u16()
    ))
}

/// The stream body: `event:result` frames, the last one replaced by an `event:error` when
/// `failure` names a status.
pub fn frames(events: &[Value], failure: Option<StatusCode>, request_id: &str) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = events
        .iter()
        .enumerate()
        .map(|(i, e)| frame(i + 1, "result", StatusCode::OK, e))
        .collect();
    if let Some(status) = failure {
        out.pop();
        let body = error_body(
            error_code(status),
            &format!("mock stream failure {}", status.as_u16()),
            request_id,
        );
        out.push(frame(out.len() + 1, "error", status, &body));
    }
    out
}

async fn text_generation(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    generation(&ctx, &headers, &body, false)
}

async fn multimodal_generation(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    generation(&ctx, &headers, &body, true)
}

fn generation(ctx: &RequestCtx, headers: &HeaderMap, body: &[u8], multimodal: bool) -> Response {
    let request_id = format!("mock-dashscope-{}", ctx.id);
    if let Some(resp) = check_auth(headers, &request_id) {
        return resp;
    }
    let bad =
        |(code, message): Problem| error(StatusCode::BAD_REQUEST, code, &message, &request_id);
    let req = match reply::parse_json(body) {
        Ok(req) => req,
        Err(msg) => return bad(invalid(msg)),
    };
    if let Err(problem) = validate(&req, multimodal) {
        return bad(problem);
    }
    let plan = Plan::new(&req, multimodal, ctx.id, &ctx.control);
    if wants_sse(headers) {
        let events = plan.events(&stream_pieces(&ctx.control));
        let frames = frames(&events, control::stream_error(headers), &request_id);
        return stream::sse_response(frames, ctx.control.pacing());
    }
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let text = ctx
        .control
        .content
        .clone()
        .unwrap_or_else(|| format!("mock reply from {model}"));
    reply::json(StatusCode::OK, plan.answer(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ai_proxy::providers::{Family, Native};
    use ai_proxy::translate::qwen::to_qwen_request;
    use axum::http::HeaderValue;

    fn ask(extra: Value) -> Value {
        let mut req = json!({"model": "qwen-plus", "input": {"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"}
        ]}, "parameters": {"result_format": "message"}});
        if let Some(obj) = extra.as_object() {
            for (k, v) in obj {
                req["parameters"][k] = v.clone();
            }
        }
        req
    }

    fn tools() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])
    }

    fn plan(req: &Value, multimodal: bool, control: &MockControl) -> Plan {
        assert_eq!(validate(req, multimodal), Ok(()));
        Plan::new(req, multimodal, 7, control)
    }

    /// The OpenAI answer the plugin makes of a mock answer.
    fn through_plugin(answer: &Value) -> Value {
        crate::stream::answer_through(Family::Qwen, "qwen-plus", answer.to_string().as_bytes())
            .unwrap()
    }

    /// The OpenAI chunks the plugin makes of mock stream frames.
    fn stream_through_plugin(frames: &[Bytes]) -> Vec<Value> {
        crate::stream::chunks_through(Family::Qwen, &Native::None, "qwen-plus", frames)
    }

    #[test]
    fn auth_requires_a_bearer_key() {
        let mut h = HeaderMap::new();
        assert!(check_auth(&h, "r").is_some());
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert!(check_auth(&h, "r").is_some());
        h.insert("authorization", HeaderValue::from_static("Bearer "));
        assert!(check_auth(&h, "r").is_some());
        h.insert("authorization", HeaderValue::from_static("Bearer sk-ds"));
        assert!(check_auth(&h, "r").is_none());
        let resp = check_auth(&HeaderMap::new(), "r").unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn sse_is_asked_by_header() {
        let mut h = HeaderMap::new();
        assert!(!wants_sse(&h));
        h.insert("x-dashscope-sse", HeaderValue::from_static("Enable"));
        assert!(wants_sse(&h));
        let mut h = HeaderMap::new();
        h.insert("x-dashscope-sse", HeaderValue::from_static("disable"));
        assert!(!wants_sse(&h));
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        assert!(wants_sse(&h));
    }

    #[test]
    fn refuses_openai_fields_and_bad_shapes() {
        assert_eq!(
            validate(&ask(json!({"tools": tools(), "top_k": 3})), false),
            Ok(())
        );
        let fails = |req: Value, multimodal: bool, needle: &str| {
            let (code, message) = validate(&req, multimodal).unwrap_err();
            assert!(
                message.contains(needle) || code == needle,
                "{needle:?} not in {code} {message}"
            );
        };
        let mut leaked = ask(json!({}));
        leaked["messages"] = json!([]);
        fails(leaked, false, "\"messages\"");
        fails(
            ask(json!({"frequency_penalty": 1})),
            false,
            "\"frequency_penalty\"",
        );
        fails(ask(json!({"incremental_output": "yes"})), false, "boolean");
        fails(
            ask(json!({"tools": tools(), "result_format": "text"})),
            false,
            "result_format",
        );
        fails(ask(json!({"tools": [{"name": "f"}]})), false, "tools");
        fails(
            json!({"input": {"messages": []}}),
            false,
            "BadRequest.EmptyModel",
        );
        fails(
            json!({"model": "m", "input": {"messages": []}}),
            false,
            "BadRequest.EmptyInput",
        );
        fails(json!({"model": "m"}), false, "BadRequest.EmptyInput");
        fails(
            json!({"model": "m", "input": {"messages": [{"role": "user", "content": "x", "type": "t"}]}}),
            false,
            "\"type\"",
        );
        fails(
            json!({"model": "m", "input": {"messages": [{"role": "developer", "content": "x"}]}}),
            false,
            "\"developer\"",
        );
        fails(
            json!({"model": "m", "input": {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}}),
            false,
            "exactly one",
        );
        // The multimodal endpoint takes lists of single-key items, not strings.
        fails(
            json!({"model": "m", "input": {"messages": [{"role": "user", "content": "x"}]}}),
            true,
            "multimodal",
        );
        let vl = json!({"model": "qwen-vl-max", "input": {"messages": [{"role": "user",
            "content": [{"image": "https://x/y.png"}, {"text": "What is it?"}]}]}});
        assert_eq!(validate(&vl, true), Ok(()));
        assert!(validate(&vl, false).is_err());
        let prompt = json!({"model": "qwen-turbo", "input": {"prompt": "hi"}});
        assert_eq!(validate(&prompt, false), Ok(()));
    }

    #[test]
    fn tool_results_must_answer_a_call() {
        let turn = |answer_id: &str| {
            json!({"model": "m", "parameters": {"result_format": "message", "tools": tools()},
                "input": {"messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "", "tool_calls": [{"index": 0, "id": "call_1",
                    "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "content": "sunny", "tool_call_id": answer_id}]}})
        };
        assert_eq!(validate(&turn("call_1"), false), Ok(()));
        assert_eq!(tool_to_call(&turn("call_1")), None);
        assert_eq!(input_words(&turn("call_1")), 2);
        let (code, message) = validate(&turn("call_2"), false).unwrap_err();
        assert_eq!(code, "InvalidParameter");
        assert!(message.contains("call_2"), "{message}");
        let orphan = json!({"model": "m", "input": {"messages": [
            {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}]}});
        assert!(validate(&orphan, false).is_err());
    }

    #[test]
    fn accepts_what_the_plugin_sends() {
        let openai = json!({"model": "gpt-4o", "stream": true, "temperature": 0.5,
            "max_tokens": 20, "stop": ["x"], "seed": 1, "frequency_penalty": 0.5,
            "stream_options": {"include_usage": true}, "tools": tools(), "tool_choice": "auto",
            "reasoning_effort": "low",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                    "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]});
        let req = to_qwen_request(&serde_json::from_value(openai).unwrap(), "qwen-plus").unwrap();
        assert_eq!(validate(&req, false), Ok(()));
        let vl = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            {"type": "text", "text": "What is it?"}]}]});
        let req = to_qwen_request(&serde_json::from_value(vl).unwrap(), "qwen-vl-max").unwrap();
        assert_eq!(validate(&req, true), Ok(()));
    }

    #[test]
    fn json_text_answer_with_usage() {
        let p = plan(&ask(json!({})), false, &MockControl::default());
        let out = p.answer("mock reply from qwen-plus");
        assert_eq!(
            out,
            json!({"output": {"choices": [{"finish_reason": "stop", "message": {
                    "role": "assistant", "content": "mock reply from qwen-plus"}}]},
                "usage": {"input_tokens": 5, "output_tokens": 4, "total_tokens": 9},
                "request_id": "mock-dashscope-7"})
        );
        let openai = through_plugin(&out);
        assert_eq!(openai["id"], "mock-dashscope-7");
        assert_eq!(
            openai["choices"][0]["message"]["content"],
            "mock reply from qwen-plus"
        );
        assert_eq!(
            openai["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})
        );

        let quiet = MockControl {
            usage: false,
            ..MockControl::default()
        };
        let out = plan(&ask(json!({"result_format": "text"})), false, &quiet).answer("hi there");
        assert_eq!(
            out,
            json!({"output": {"text": "hi there", "finish_reason": "stop"},
                "request_id": "mock-dashscope-7"})
        );
        assert_eq!(
            through_plugin(&out)["choices"][0]["message"]["content"],
            "hi there"
        );

        let vl = json!({"model": "qwen-vl-max", "parameters": {"result_format": "message"},
            "input": {"messages": [{"role": "user", "content": [{"image": "https://x/y.png"},
                {"text": "What is it?"}]}]}});
        let out = plan(&vl, true, &MockControl::default()).answer("A dog.");
        assert_eq!(
            out["output"]["choices"][0]["message"]["content"],
            json!([{"text": "A dog."}])
        );
        assert_eq!(out["usage"]["input_tokens"], 3);
        assert_eq!(
            through_plugin(&out)["choices"][0]["message"]["content"],
            "A dog."
        );
    }

    #[test]
    fn json_tool_call_answer() {
        let p = plan(
            &ask(json!({"tools": tools()})),
            false,
            &MockControl::default(),
        );
        let out = p.answer("unused");
        assert_eq!(
            out["output"]["choices"][0],
            json!({"finish_reason": "tool_calls", "message": {"role": "assistant", "content": "",
                "tool_calls": [{"index": 0, "id": TOOL_CALL_ID, "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}]}})
        );
        assert_eq!(out["usage"]["output_tokens"], TOOL_CALL_TOKENS);
        let openai = through_plugin(&out);
        assert_eq!(openai["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            openai["choices"][0]["message"]["tool_calls"][0]["function"],
            json!({"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"})
        );
        let none = ask(json!({"tools": tools(), "tool_choice": "none"}));
        assert_eq!(tool_to_call(&none), None);
    }

    #[test]
    fn incremental_text_stream_with_running_usage() {
        let control = MockControl {
            chunks: 3,
            ..MockControl::default()
        };
        let p = plan(&ask(json!({"incremental_output": true})), false, &control);
        let events = p.events(&stream_pieces(&control));
        assert_eq!(events.len(), 3);
        let texts: Vec<&str> = events
            .iter()
            .map(|e| {
                e.pointer("/output/choices/0/message/content")
                    .and_then(Value::as_str)
                    .unwrap()
            })
            .collect();
        assert_eq!(texts, ["w0 ", "w1 ", "w2 "]);
        let finishes: Vec<&Value> = events
            .iter()
            .map(|e| &e["output"]["choices"][0]["finish_reason"])
            .collect();
        assert_eq!(finishes, [&json!("null"), &json!("null"), &json!("stop")]);
        assert_eq!(
            events[1]["usage"],
            json!({"input_tokens": 5, "output_tokens": 2, "total_tokens": 7})
        );

        let frames = frames(&events, None, &p.request_id);
        assert_eq!(
            String::from_utf8_lossy(&frames[0]),
            format!(
                "id:1\nevent:result\n:HTTP_STATUS/200\ndata:{}\n\n",
                events[0]
            )
        );
        let chunks = stream_through_plugin(&frames);
        let text = e2e::sse::chat_text(&chunks);
        assert_eq!(text, "w0 w1 w2 ");
        assert!(chunks.iter().all(|c| c["id"] == "mock-dashscope-7"));
        assert_eq!(
            chunks.last().unwrap()["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
        );
    }

    #[test]
    fn cumulative_stream_without_incremental_output() {
        let control = MockControl {
            chunks: 3,
            ..MockControl::default()
        };
        let p = plan(&ask(json!({})), false, &control);
        let texts: Vec<String> = p
            .events(&stream_pieces(&control))
            .iter()
            .map(|e| e["output"]["choices"][0]["message"]["content"].to_string())
            .collect();
        assert_eq!(texts, ["\"w0 \"", "\"w0 w1 \"", "\"w0 w1 w2 \""]);
        let p = plan(&ask(json!({"tools": tools()})), false, &control);
        let args: Vec<Value> = p
            .events(&[])
            .iter()
            .map(|e| e["output"]["choices"][0]["message"]["tool_calls"][0].clone())
            .collect();
        assert_eq!(
            args[2]["function"]["arguments"],
            "{\"location\": \"Paris\"}"
        );
        assert!(args.iter().all(|c| c["id"] == TOOL_CALL_ID));
        // No pieces: one empty final event.
        let events = p.events(&[]);
        assert_eq!(events.len(), 3);
        let p = plan(&ask(json!({})), false, &control);
        let events = p.events(&[]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["output"]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn incremental_tool_stream_pieces() {
        let p = plan(
            &ask(json!({"tools": tools(), "incremental_output": true})),
            false,
            &MockControl::default(),
        );
        let events = p.events(&[]);
        let calls: Vec<Value> = events
            .iter()
            .map(|e| e["output"]["choices"][0]["message"]["tool_calls"][0].clone())
            .collect();
        assert_eq!(
            calls[0],
            json!({"index": 0, "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":"}})
        );
        assert_eq!(
            calls[1],
            json!({"index": 0, "id": "", "type": "function", "function": {"arguments": " \"Pa"}})
        );
        assert_eq!(
            events[2]["output"]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(events[2]["usage"]["output_tokens"], TOOL_CALL_TOKENS);

        let chunks = stream_through_plugin(&frames(&events, None, &p.request_id));
        let deltas: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
            .collect();
        assert_eq!(deltas[0]["id"], TOOL_CALL_ID);
        assert_eq!(deltas[0]["function"]["name"], "get_weather");
        let args: String = deltas
            .iter()
            .filter_map(|d| d.pointer("/function/arguments").and_then(Value::as_str))
            .collect();
        assert_eq!(args, "{\"location\": \"Paris\"}");
        assert!(chunks
            .iter()
            .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
    }

    #[test]
    fn stream_error_event_replaces_the_last_frame() {
        let control = MockControl {
            chunks: 2,
            ..MockControl::default()
        };
        let p = plan(&ask(json!({"incremental_output": true})), false, &control);
        let events = p.events(&stream_pieces(&control));
        let frames = frames(&events, Some(StatusCode::TOO_MANY_REQUESTS), &p.request_id);
        assert_eq!(frames.len(), 2);
        let last = String::from_utf8_lossy(&frames[1]).into_owned();
        assert!(
            last.starts_with("id:2\nevent:error\n:HTTP_STATUS/429\ndata:"),
            "{last}"
        );
        let chunks = stream_through_plugin(&frames);
        let error = chunks.iter().find(|c| c.get("error").is_some()).unwrap();
        assert_eq!(
            error["error"],
            json!({"message": "mock stream failure 429", "type": "rate_limit_exceeded",
                "code": "Throttling.RateQuota"})
        );
    }

    #[test]
    fn failure_is_dashscope_shaped() {
        assert_eq!(
            error_code(StatusCode::TOO_MANY_REQUESTS),
            "Throttling.RateQuota"
        );
        assert_eq!(error_code(StatusCode::UNAUTHORIZED), "InvalidApiKey");
        assert_eq!(error_code(StatusCode::BAD_GATEWAY), "InternalError");
        assert_eq!(
            failure(StatusCode::SERVICE_UNAVAILABLE).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let e = ai_proxy::translate::qwen::qwen_error_to_openai(
            429,
            error_body("Throttling.RateQuota", "slow down", "r")
                .to_string()
                .as_bytes(),
        );
        assert_eq!(
            (e.error_type.as_str(), e.code.as_deref(), e.message.as_str()),
            (
                "rate_limit_exceeded",
                Some("Throttling.RateQuota"),
                "slow down"
            )
        );
    }

    /// The routes behind the real app, over HTTP: auth, JSON and SSE answers, forced failures in
    /// DashScope's shape, and the recording.
    #[tokio::test]
    async fn serves_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = crate::app(std::sync::Arc::new(crate::record::Shared::default()));
        tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
        let base = format!("http://{addr}");
        let result = tokio::task::spawn_blocking(move || {
            let client = e2e::http::Client::new(std::time::Duration::from_secs(10));
            let url = format!("{base}{TEXT_PATH}");
            let body = ask(json!({"incremental_output": true})).to_string();
            let key = [("authorization", "Bearer sk-ds")];
            let ok = client.post(&url, &key, &body).unwrap();
            let sse = client
                .post(
                    &url,
                    &[
                        ("authorization", "Bearer sk-ds"),
                        ("x-dashscope-sse", "enable"),
                        ("x-mock-chunks", "2"),
                    ],
                    &body,
                )
                .unwrap();
            let no_key = client.post(&url, &[("x-no-key", "1")], &body).unwrap();
            let failed = client
                .post(
                    &url,
                    &[("authorization", "Bearer sk-ds"), ("x-mock-status", "429")],
                    &body,
                )
                .unwrap();
            // OpenRouter's OpenAI-compatible paths also start with `/api/v1/`.
            let openrouter = client
                .post(
                    &format!("{base}/api/v1/chat/completions"),
                    &[("x-mock-status", "429")],
                    &body,
                )
                .unwrap();
            let recorded = client.get(&format!("{base}/__mock/requests"), &[]).unwrap();
            (ok, sse, no_key, failed, openrouter, recorded)
        })
        .await
        .unwrap();
        let (ok, sse, no_key, failed, openrouter, recorded) = result;
        assert_eq!(ok.status, 200, "{}", ok.body);
        let v = ok.json().unwrap();
        assert_eq!(
            v["output"]["choices"][0]["message"]["content"],
            "mock reply from qwen-plus"
        );
        assert_eq!(v["request_id"], "mock-dashscope-1");
        assert_eq!(sse.status, 200);
        assert_eq!(sse.header("content-type"), Some("text/event-stream"));
        assert_eq!(sse.body.matches("event:result").count(), 2, "{}", sse.body);
        assert!(sse.body.contains("\"content\":\"w1 \""), "{}", sse.body);
        assert_eq!(no_key.status, 401);
        assert_eq!(no_key.json().unwrap()["code"], "InvalidApiKey");
        assert_eq!(failed.status, 429);
        assert_eq!(
            failed.json().unwrap(),
            error_body(
                "Throttling.RateQuota",
                "mock failure 429",
                FAILURE_REQUEST_ID
            )
        );
        assert_eq!(openrouter.status, 429);
        assert_eq!(openrouter.json().unwrap()["error"]["code"], "429");
        let list = recorded.json().unwrap();
        let paths: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                TEXT_PATH,
                TEXT_PATH,
                TEXT_PATH,
                TEXT_PATH,
                "/api/v1/chat/completions"
            ]
        );
        assert_eq!(list[1]["headers"]["x-dashscope-sse"], "enable");
        assert_eq!(
            list[0]["body_json"]["parameters"]["result_format"],
            "message"
        );
    }
}
