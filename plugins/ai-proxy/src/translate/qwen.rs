//! OpenAI chat completions client in front of DashScope's native text generation API
//! (`qwenEnableCompatible: false`): the request goes out as
//! `{model, input: {messages}, parameters}`; the answer, the SSE stream and errors come back in
//! OpenAI's shapes.
//!
//! Streams are requested with `incremental_output: true`, so every event carries only the new
//! text — and the new tool-call pieces: the first piece of a call has its id and name, later
//! pieces have an empty id and only argument text (DashScope's function-calling guide). Each
//! event also repeats the usage so far.

use super::cohere::count;
use super::{err, max_tokens, parse, str_of};
use super::{openai_error_type_for_status, upstream_error};
use super::{Decode, TranslateError};
use sdk::error::ErrorReply;
use sdk::llm::openai;
use sdk::llm::stream::{Encoder, Event};
use sdk::sse::SseEvent;
use sdk::usage::from_usage;
use serde_json::{json, Map, Value};

/// DashScope's host (Beijing; `dashscope-intl.aliyuncs.com` for Singapore).
pub const DEFAULT_HOST: &str = "dashscope.aliyuncs.com";
/// Text generation path.
pub const TEXT_GENERATION_PATH: &str = "/api/v1/services/aigc/text-generation/generation";
/// Multimodal generation path (Qwen-VL, QVQ, Qwen-Audio, or any request with images).
pub const MULTIMODAL_GENERATION_PATH: &str =
    "/api/v1/services/aigc/multimodal-generation/generation";

/// Bounds DashScope accepts for `top_p` (an open interval).
const TOP_P_MIN: f64 = 0.000_001;
const TOP_P_MAX: f64 = 0.999_999;

/// Whether the request goes to the multimodal endpoint: a vision/audio model, or a message
/// with a part that is not text.
pub fn is_multimodal(req: &openai::ChatRequest, model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    let by_model = m.starts_with("qvq") || m.contains("-vl") || m.contains("-audio");
    by_model
        || req.messages.iter().any(|msg| {
            matches!(&msg.content, Some(openai::Content::Parts(parts))
                if parts.iter().any(|p| p.kind != "text"))
        })
}

/// The upstream path for the request: text or multimodal generation.
pub fn chat_path(req: &openai::ChatRequest, model: &str) -> &'static str {
    if is_multimodal(req, model) {
        MULTIMODAL_GENERATION_PATH
    } else {
        TEXT_GENERATION_PATH
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Builds the DashScope body for an OpenAI chat request, sent to `model`.
///
/// Messages keep OpenAI's roles (`developer` → `system`) and tool fields; on the multimodal
/// endpoint content becomes `[{"text"}, {"image"}, …]` lists. `parameters` gets
/// `result_format: "message"`, `incremental_output` when streaming, the sampling fields
/// (`top_p` clamped into (0, 1)), `max_completion_tokens`/`max_tokens` → `max_tokens`, tools,
/// `response_format`, `enable_search`/`search_options`, and `enable_thinking` from
/// `reasoning_effort` (`none` → false, other levels → true) unless the client sets it.
pub fn to_qwen_request(req: &openai::ChatRequest, model: &str) -> Result<Value, TranslateError> {
    let multimodal = is_multimodal(req, model);
    let mut messages = Vec::with_capacity(req.messages.len());
    for msg in &req.messages {
        let role = match msg.role.as_str() {
            "developer" => "system",
            r @ ("system" | "user" | "assistant" | "tool") => r,
            other => return Err(err(format!("message role {other:?} is not supported"))),
        };
        let mut m = Map::new();
        m.insert("role".into(), Value::String(role.to_string()));
        m.insert("content".into(), content(msg.content.as_ref(), multimodal)?);
        match role {
            "assistant" => {
                if let Some(calls) = msg.extra.get("tool_calls").filter(|c| c.is_array()) {
                    m.insert("tool_calls".into(), calls.clone());
                }
            }
            "tool" => {
                let id = msg
                    .extra
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("tool message without tool_call_id"))?;
                m.insert("tool_call_id".into(), Value::String(id.to_string()));
            }
            _ => {}
        }
        if let Some(name) = msg.extra.get("name").filter(|n| n.is_string()) {
            m.insert("name".into(), name.clone());
        }
        messages.push(Value::Object(m));
    }

    let x = &req.extra;
    let mut p = Map::new();
    p.insert("result_format".into(), json!("message"));
    if req.stream == Some(true) {
        p.insert("incremental_output".into(), Value::Bool(true));
    }
    for key in [
        "temperature",
        "top_k",
        "presence_penalty",
        "repetition_penalty",
        "thinking_budget",
    ] {
        if let Some(v) = x.get(key).filter(|v| v.is_number()) {
            p.insert(key.into(), v.clone());
        }
    }
    if let Some(top_p) = x.get("top_p").and_then(Value::as_f64) {
        p.insert("top_p".into(), json!(top_p.clamp(TOP_P_MIN, TOP_P_MAX)));
    }
    let max_tokens = max_tokens(x);
    if let Some(n) = max_tokens {
        p.insert("max_tokens".into(), Value::from(n));
    }
    if let Some(seed) = x.get("seed").and_then(Value::as_u64) {
        p.insert("seed".into(), Value::from(seed));
    }
    match x.get("stop") {
        Some(s @ Value::String(_)) => {
            p.insert("stop".into(), s.clone());
        }
        Some(Value::Array(items)) => {
            let stops: Vec<Value> = items.iter().filter(|v| v.is_string()).cloned().collect();
            if !stops.is_empty() {
                p.insert("stop".into(), Value::Array(stops));
            }
        }
        _ => {}
    }
    for key in ["n", "logprobs", "top_logprobs"] {
        if let Some(v) = x.get(key).filter(|v| !v.is_null()) {
            p.insert(key.into(), v.clone());
        }
    }
    if let Some(tools) = x.get("tools").and_then(Value::as_array) {
        if !tools.is_empty() {
            p.insert("tools".into(), Value::Array(tools.clone()));
            for key in ["tool_choice", "parallel_tool_calls"] {
                if let Some(v) = x.get(key).filter(|v| !v.is_null()) {
                    p.insert(key.into(), v.clone());
                }
            }
        }
    }
    for key in ["response_format", "enable_search", "search_options"] {
        if let Some(v) = x.get(key).filter(|v| !v.is_null()) {
            p.insert(key.into(), v.clone());
        }
    }
    let thinking = match x.get("enable_thinking").and_then(Value::as_bool) {
        Some(b) => Some(b),
        None => x
            .get("reasoning_effort")
            .and_then(Value::as_str)
            .map(|effort| effort != "none"),
    };
    if let Some(b) = thinking {
        p.insert("enable_thinking".into(), Value::Bool(b));
    }

    Ok(json!({
        "model": model,
        "input": {"messages": messages},
        "parameters": p,
    }))
}

/// Message content: a string on the text endpoint (text parts joined), a list of
/// `{"text"}`/`{"image"}`/`{"audio"}`/`{"video"}` items on the multimodal one.
fn content(content: Option<&openai::Content>, multimodal: bool) -> Result<Value, TranslateError> {
    if !multimodal {
        return Ok(Value::String(
            content.map(openai::Content::text).unwrap_or_default(),
        ));
    }
    let mut items = Vec::new();
    match content {
        None => {}
        Some(openai::Content::Text(s)) => items.push(json!({ "text": s })),
        Some(openai::Content::Parts(parts)) => {
            for part in parts {
                let url_of = |key: &str| match part.extra.get(key) {
                    Some(Value::String(url)) => Some(url.clone()),
                    other => str_of(other, "url").map(str::to_string),
                };
                let item = match part.kind.as_str() {
                    "text" => json!({ "text": part.text.clone().unwrap_or_default() }),
                    "image_url" => json!({
                        "image": url_of("image_url").ok_or_else(|| err("image_url part without a url"))?
                    }),
                    "video_url" => json!({
                        "video": url_of("video_url").ok_or_else(|| err("video_url part without a url"))?
                    }),
                    "input_audio" => {
                        let audio = part.extra.get("input_audio");
                        let data = str_of(audio, "data")
                            .ok_or_else(|| err("input_audio part without data"))?;
                        let audio = if data.starts_with("http") || data.starts_with("data:") {
                            data.to_string()
                        } else {
                            let format = str_of(audio, "format").unwrap_or("wav");
                            format!("data:audio/{format};base64,{data}")
                        };
                        json!({ "audio": audio })
                    }
                    other => {
                        return Err(err(format!(
                            "content part type {other:?} is not supported by DashScope"
                        )))
                    }
                };
                items.push(item);
            }
        }
    }
    Ok(Value::Array(items))
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// OpenAI `finish_reason` for a DashScope one; None while generating (`"null"` or null).
fn finish_reason(reason: Option<&str>) -> Option<&'static str> {
    match reason? {
        "null" | "" => None,
        "length" => Some("length"),
        "tool_calls" => Some("tool_calls"),
        "content_filter" => Some("content_filter"),
        // stop, and anything newer.
        _ => Some("stop"),
    }
}

/// The text of a DashScope message content: a string, or the `text` of list items.
fn text_of(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// Reads a whole DashScope answer (`result_format: "message"`, or the older `output.text`) as
/// the events of one answer, as [`QwenStream`] reads each event. The id is DashScope's
/// `request_id`.
pub fn read_answer(
    body: &[u8],
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let v: Value = parse(body, "DashScope answer is not JSON")?;
    if !v.get("output").is_some_and(Value::is_object) {
        return Err(err("DashScope answer without output"));
    }
    match v.pointer("/output/choices").and_then(Value::as_array) {
        // One answer per choice (`n`), each read as an answer of its own.
        Some(choices) if choices.len() > 1 => {
            for (i, choice) in choices.iter().enumerate() {
                enc.event(Event::Choice(u32::try_from(i).unwrap_or(u32::MAX)), out);
                let one =
                    json!({"request_id": v.get("request_id"), "output": {"choices": [choice]}});
                QwenStream::default().on_json(&one, false, enc, out);
            }
            if let Some(u) = v.get("usage").and_then(from_usage) {
                enc.event(Event::Usage(u), out);
            }
        }
        _ => QwenStream::default().on_json(&v, false, enc, out),
    }
    Ok(())
}

/// DashScope's native text rerank path.
pub const TEXT_RERANK_PATH: &str = "/api/v1/services/rerank/text-rerank/text-rerank";
/// DashScope's OpenAI-compatible rerank path (`qwenEnableCompatible: true`).
pub const COMPATIBLE_RERANK_PATH: &str = "/compatible-api/v1/reranks";

/// DashScope's native text embedding path.
pub const TEXT_EMBEDDING_PATH: &str = "/api/v1/services/embeddings/text-embedding/text-embedding";

/// Builds DashScope's text embedding body for an OpenAI embeddings request: `input` (a string or
/// strings) → `input.texts`, `dimensions` → `parameters.dimension`. Token arrays are refused.
pub fn to_qwen_embeddings(req: &Value, model: &str) -> Result<Value, TranslateError> {
    let texts = super::embedding_inputs(req, "DashScope")?;
    let mut out = json!({"model": model, "input": {"texts": texts}});
    if let Some(d) = req.get("dimensions").and_then(Value::as_u64) {
        out["parameters"] = json!({ "dimension": d });
    }
    Ok(out)
}

/// Builds the OpenAI embeddings answer for a DashScope text embedding answer: each vector at its
/// `text_index`; usage is DashScope's `total_tokens` (all input).
pub fn from_qwen_embeddings(body: &[u8], model: &str) -> Result<Value, TranslateError> {
    let v: Value = parse(body, "DashScope answer is not JSON")?;
    let list = v
        .pointer("/output/embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| err("DashScope embedding answer without output.embeddings"))?;
    let mut data = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let vector = e
            .get("embedding")
            .filter(|v| v.is_array())
            .ok_or_else(|| err("DashScope embedding without a vector"))?;
        let index = e
            .get("text_index")
            .and_then(Value::as_u64)
            .unwrap_or(i as u64);
        data.push(json!({"object": "embedding", "index": index, "embedding": vector}));
    }
    let tokens = count(v.pointer("/usage/total_tokens")).unwrap_or(0);
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

/// OpenAI `error.type` for a DashScope error code, else by HTTP status.
fn error_type(code: Option<&str>, status: u32) -> &'static str {
    match code.unwrap_or_default() {
        c if c.starts_with("Throttling") => "rate_limit_exceeded",
        "InvalidApiKey" => "authentication_error",
        c if c.starts_with("AccessDenied") => "permission_error",
        "InvalidParameter" | "DataInspectionFailed" | "data_inspection_failed" => {
            "invalid_request_error"
        }
        c if c.starts_with("InternalError") => "server_error",
        _ => openai_error_type_for_status(status),
    }
}

/// The JSON of an error body: plain JSON, or the `data:` line of an SSE error event.
fn error_json(body: &[u8]) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Some(v);
    }
    let text = std::str::from_utf8(body).ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
}

/// Turns a DashScope error answer (`{"code","message","request_id"}`, as JSON or as an SSE
/// `event:error`) into the OpenAI-style error the client gets; `code` is DashScope's code.
pub fn qwen_error_to_openai(status: u32, body: &[u8]) -> ErrorReply {
    let parsed = error_json(body);
    let code = str_of(parsed.as_ref(), "code").filter(|c| !c.is_empty());
    let message = str_of(parsed.as_ref(), "message");
    upstream_error(status, body, Some(error_type(code, status)), code, message)
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// One tool call seen in the stream.
#[derive(Debug)]
struct ToolSlot {
    /// DashScope's `index`, when it sends one.
    upstream: Option<u64>,
    id: String,
}

/// Reads DashScope SSE events (`event:result`, `data:{output, usage, request_id}`, with
/// `incremental_output`) into canonical events.
///
/// Keeps the request id and the tool calls seen; nothing of the text.
#[derive(Debug, Default)]
pub struct QwenStream {
    id: String,
    tools: Vec<ToolSlot>,
    /// The call the arguments go to.
    open: usize,
    finished: bool,
}

impl Decode for QwenStream {
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String) {
        if event.data.trim() == "[DONE]" {
            self.finish(enc, out);
            return;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&event.data) {
            let error = event.event.as_deref() == Some("error");
            self.on_json(&v, error, enc, out);
        }
    }
}

impl QwenStream {
    /// One answer or event (`error`: an SSE `event:error`).
    fn on_json(&mut self, v: &Value, error: bool, enc: &mut dyn Encoder, out: &mut String) {
        if self.id.is_empty() {
            if let Some(id) = v.get("request_id").and_then(Value::as_str) {
                self.id = id.to_string();
                enc.event(Event::Meta { id, model: "" }, out);
            }
        }
        let code = v
            .get("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty());
        if error || (code.is_some() && v.get("output").is_none()) {
            let message = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream stream error");
            let kind = error_type(code, 500);
            enc.event(
                Event::Error {
                    message,
                    kind,
                    code,
                },
                out,
            );
            self.finish(enc, out);
            return;
        }
        if let Some(u) = v.get("usage").and_then(from_usage) {
            enc.event(Event::Usage(u), out);
        }
        let Some(output) = v.get("output") else {
            return;
        };
        let choice = output
            .get("choices")
            .and_then(|c| c.get(0))
            .unwrap_or(output);
        let message = choice.get("message");
        if let Some(lp) = choice.get("logprobs").filter(|l| !l.is_null()) {
            enc.event(Event::Logprobs(lp), out);
        }
        if let Some(r) = str_of(message, "reasoning_content") {
            enc.event(Event::Reasoning(r), out);
        }
        // The older text format carries `output.text`.
        let text = text_of(message.and_then(|m| m.get("content"))).or_else(|| {
            output
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        if let Some(t) = text {
            enc.event(Event::Text(&t), out);
        }
        if let Some(calls) = message
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
        {
            for call in calls {
                self.tool_piece(call, enc, out);
            }
        }
        let finish = finish_reason(choice.get("finish_reason").and_then(Value::as_str));
        if let Some(f) = finish.filter(|_| !self.finished) {
            self.finished = true;
            enc.event(Event::Finish(f), out);
        }
    }

    /// One tool-call piece: a new call (its id differs, or its `index` is new) starts a tool
    /// call; otherwise the arguments extend the open one.
    fn tool_piece(&mut self, call: &Value, enc: &mut dyn Encoder, out: &mut String) {
        let upstream = call.get("index").and_then(Value::as_u64);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let function = call.get("function");
        let name = str_of(function, "name").unwrap_or_default();
        // Whole answers may carry the arguments as an object.
        let object = function
            .and_then(|f| f.get("arguments"))
            .filter(|a| a.is_object())
            .map(Value::to_string);
        let args = object
            .as_deref()
            .or(str_of(function, "arguments"))
            .unwrap_or_default();
        let existing = match (upstream, id) {
            (Some(i), _) => self.tools.iter().position(|t| t.upstream == Some(i)),
            (None, Some(id)) => self.tools.iter().position(|t| t.id == id),
            (None, None) => self.tools.len().checked_sub(1),
        };
        match existing {
            None => {
                let index = self.tools.len();
                let id = id.map_or_else(|| format!("call_{}_{index}", self.id), str::to_string);
                enc.event(
                    Event::ToolStart {
                        id: &id,
                        name,
                        args,
                    },
                    out,
                );
                self.tools.push(ToolSlot { upstream, id });
                self.open = index;
            }
            Some(slot) if !args.is_empty() => {
                if slot != self.open {
                    self.open = slot;
                    enc.event(
                        Event::ToolSwitch(u32::try_from(slot).unwrap_or(u32::MAX)),
                        out,
                    );
                }
                enc.event(Event::ToolArgs(args), out);
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::ReasoningMode;
    use crate::translate::StreamTranslator;

    fn from_qwen_response(
        body: &[u8],
        model: &str,
        reasoning: ReasoningMode,
    ) -> Result<openai::ChatResponse, TranslateError> {
        crate::translate::whole_chat(model, reasoning, |e, o| read_answer(body, e, o))
    }
    use sdk::sse::SseDecoder;

    fn chat(v: Value) -> openai::ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn qwen(v: Value, model: &str) -> Value {
        to_qwen_request(&chat(v), model).unwrap()
    }

    #[test]
    fn builds_text_generation_body() {
        let out = qwen(
            json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "developer", "content": "You are terse."},
                    {"role": "user", "content": [{"type": "text", "text": "Weather"},
                                                 {"type": "text", "text": "in Hangzhou?"}]},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                        "type": "function", "function": {"name": "get_current_weather",
                        "arguments": "{\"location\": \"Hangzhou\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "name": "get_current_weather",
                     "content": "Sunny, 25C"}
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.7,
                "top_p": 1.0,
                "top_k": 20,
                "max_tokens": 99,
                "max_completion_tokens": 512,
                "seed": 42,
                "stop": ["\n\n"],
                "presence_penalty": 0.5,
                "frequency_penalty": 0.5,
                "tools": [{"type": "function", "function": {"name": "get_current_weather",
                    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
                "tool_choice": "auto",
                "parallel_tool_calls": true,
                "response_format": {"type": "json_object"},
                "enable_search": true,
                "reasoning_effort": "medium",
                "user": "u-1"
            }),
            "qwen-plus",
        );
        assert_eq!(
            out,
            json!({
                "model": "qwen-plus",
                "input": {"messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Weather\nin Hangzhou?"},
                    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1",
                        "type": "function", "function": {"name": "get_current_weather",
                        "arguments": "{\"location\": \"Hangzhou\"}"}}]},
                    {"role": "tool", "content": "Sunny, 25C", "tool_call_id": "call_1",
                     "name": "get_current_weather"}
                ]},
                "parameters": {
                    "result_format": "message",
                    "incremental_output": true,
                    "temperature": 0.7,
                    "top_k": 20,
                    "presence_penalty": 0.5,
                    "top_p": 0.999999,
                    "max_tokens": 512,
                    "seed": 42,
                    "stop": ["\n\n"],
                    "tools": [{"type": "function", "function": {"name": "get_current_weather",
                        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
                    "tool_choice": "auto",
                    "parallel_tool_calls": true,
                    "response_format": {"type": "json_object"},
                    "enable_search": true,
                    "enable_thinking": true
                }
            })
        );
        assert_eq!(
            chat_path(&chat(json!({"messages": []})), "qwen-plus"),
            TEXT_GENERATION_PATH
        );
    }

    #[test]
    fn non_streaming_and_thinking_switches() {
        let out = qwen(
            json!({"messages": [{"role": "user", "content": "hi"}], "stop": "END",
                "reasoning_effort": "none", "top_p": 0.0, "tool_choice": "none"}),
            "qwen3-max",
        );
        let p = &out["parameters"];
        assert!(p.get("incremental_output").is_none());
        assert_eq!(p["stop"], "END");
        assert_eq!(p["enable_thinking"], false);
        assert_eq!(p["top_p"], 0.000001);
        assert!(p.get("tool_choice").is_none());
        let out = qwen(
            json!({"messages": [{"role": "user", "content": "hi"}], "enable_thinking": false,
                "reasoning_effort": "high", "thinking_budget": 50}),
            "qwen-plus",
        );
        assert_eq!(out["parameters"]["enable_thinking"], false);
        assert_eq!(out["parameters"]["thinking_budget"], 50);
        let out = qwen(
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "qwen-plus",
        );
        assert_eq!(out["parameters"], json!({"result_format": "message"}));
    }

    #[test]
    fn multimodal_content_lists() {
        let req = json!({"messages": [
            {"role": "system", "content": "Describe."},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://img.alicdn.com/a.jpg"}},
                {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}},
                {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "mp3"}},
                {"type": "text", "text": "What is here?"}
            ]}
        ]});
        assert!(is_multimodal(&chat(req.clone()), "qwen-plus"));
        assert_eq!(
            chat_path(&chat(req.clone()), "qwen-plus"),
            MULTIMODAL_GENERATION_PATH
        );
        let out = qwen(req, "qwen-plus");
        assert_eq!(
            out["input"]["messages"],
            json!([
                {"role": "system", "content": [{"text": "Describe."}]},
                {"role": "user", "content": [
                    {"image": "https://img.alicdn.com/a.jpg"},
                    {"video": "https://x/v.mp4"},
                    {"audio": "data:audio/mp3;base64,UklGR"},
                    {"text": "What is here?"}
                ]}
            ])
        );
        // A vision model takes lists even for plain text.
        let text_only = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert!(is_multimodal(&chat(text_only.clone()), "qwen-vl-max"));
        assert!(is_multimodal(&chat(text_only.clone()), "qwen3-vl-plus"));
        assert!(is_multimodal(&chat(text_only.clone()), "qvq-max"));
        assert!(!is_multimodal(&chat(text_only.clone()), "qwen-max"));
        assert_eq!(
            qwen(text_only, "qwen-vl-max")["input"]["messages"][0]["content"],
            json!([{"text": "hi"}])
        );
        for bad in [
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}),
            json!({"messages": [{"role": "function", "content": "x"}]}),
            json!({"messages": [{"role": "tool", "content": "x"}]}),
        ] {
            assert!(
                to_qwen_request(&chat(bad.clone()), "qwen-vl-max").is_err(),
                "{bad}"
            );
        }
    }

    fn response(v: Value, mode: ReasoningMode) -> Value {
        serde_json::to_value(
            from_qwen_response(v.to_string().as_bytes(), "qwen-plus", mode).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn response_with_reasoning_and_usage() {
        let body = json!({
            "output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant",
                "content": "I am Qwen.", "reasoning_content": "The user asks who I am."}}]},
            "usage": {"input_tokens": 11, "output_tokens": 405, "total_tokens": 416,
                "output_tokens_details": {"reasoning_tokens": 256},
                "prompt_tokens_details": {"cached_tokens": 3}},
            "request_id": "2ce91085-3602-9c32-9c8b-fe3d583a2c38"
        });
        assert_eq!(
            response(body.clone(), ReasoningMode::Passthrough),
            json!({
                "id": "2ce91085-3602-9c32-9c8b-fe3d583a2c38",
                "object": "chat.completion",
                "created": 0,
                "model": "qwen-plus",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "I am Qwen.",
                    "reasoning_content": "The user asks who I am."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 405, "total_tokens": 416,
                    "prompt_tokens_details": {"cached_tokens": 3},
                    "completion_tokens_details": {"reasoning_tokens": 256}}
            })
        );
        assert_eq!(
            response(body.clone(), ReasoningMode::Ignore)["choices"][0]["message"],
            json!({"role": "assistant", "content": "I am Qwen."})
        );
        assert_eq!(
            response(body, ReasoningMode::Concat)["choices"][0]["message"],
            json!({"role": "assistant",
                "content": "<think>The user asks who I am.</think>\nI am Qwen."})
        );
    }

    #[test]
    fn response_tool_calls_multimodal_and_text_formats() {
        let out = response(
            json!({"output": {"choices": [{"finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "", "tool_calls": [{"index": 0,
                "id": "call_16c72bef988a4c6c8cc662", "type": "function",
                "function": {"name": "get_current_weather", "arguments": "{\"location\": \"杭州\"}"}}]}}]},
                "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                "request_id": "r"}),
            ReasoningMode::Passthrough,
        );
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"].get("content"),
            Some(&serde_json::Value::Null)
        );
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "call_16c72bef988a4c6c8cc662", "type": "function",
                "function": {"name": "get_current_weather", "arguments": "{\"location\": \"杭州\"}"}}])
        );
        let vl = response(
            json!({"output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant",
                "content": [{"text": "A dog "}, {"text": "on a beach."}]}}]},
                "usage": {"input_tokens": 1271, "output_tokens": 9, "image_tokens": 1247}}),
            ReasoningMode::Passthrough,
        );
        assert_eq!(vl["choices"][0]["message"]["content"], "A dog on a beach.");
        assert_eq!(vl["usage"]["total_tokens"], 1280);
        let old = response(
            json!({"output": {"text": "Hello", "finish_reason": "length"}, "request_id": "o"}),
            ReasoningMode::Passthrough,
        );
        assert_eq!(old["choices"][0]["message"]["content"], "Hello");
        assert_eq!(old["choices"][0]["finish_reason"], "length");
        assert!(from_qwen_response(b"{\"code\":\"x\"}", "m", ReasoningMode::Ignore).is_err());
        assert!(from_qwen_response(b"nope", "m", ReasoningMode::Ignore).is_err());
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let e = qwen_error_to_openai(
            401,
            br#"{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"fb53c4ec-1c12-4fc4-a580-cdb7c3261fc1"}"#,
        );
        assert_eq!(
            (
                e.status,
                e.error_type.as_str(),
                e.code.as_deref(),
                e.message.as_str()
            ),
            (
                401,
                "authentication_error",
                Some("InvalidApiKey"),
                "Invalid API-key provided."
            )
        );
        for (status, code, kind) in [
            (429, "Throttling.RateQuota", "rate_limit_exceeded"),
            (403, "AccessDenied.Unpurchased", "permission_error"),
            (400, "DataInspectionFailed", "invalid_request_error"),
            (400, "InvalidParameter", "invalid_request_error"),
            (500, "InternalError.Algo", "server_error"),
            (404, "ModelNotFound", "not_found_error"),
        ] {
            let body = json!({"code": code, "message": "m", "request_id": "r"}).to_string();
            let e = qwen_error_to_openai(status, body.as_bytes());
            assert_eq!(e.error_type, kind, "{code}");
            assert_eq!(e.code.as_deref(), Some(code));
        }
        // An SSE error body (streaming request).
        let sse = b"id:1\nevent:error\n:HTTP_STATUS/400\ndata:{\"code\":\"InvalidParameter\",\"message\":\"Range of input length should be [1, 30720]\",\"request_id\":\"x\"}\n\n";
        let e = qwen_error_to_openai(400, sse);
        assert_eq!(e.message, "Range of input length should be [1, 30720]");
        assert_eq!(e.code.as_deref(), Some("InvalidParameter"));
        let e = qwen_error_to_openai(502, b"bad gateway");
        assert_eq!(
            (e.error_type.as_str(), e.code, e.message.as_str()),
            ("server_error", None, "bad gateway")
        );
    }

    /// DashScope's function-calling stream with thinking (shape from its guide).
    const TOOL_STREAM: &str = concat!(
        "id:1\nevent:result\n:HTTP_STATUS/200\n",
        "data:{\"output\":{\"choices\":[{\"finish_reason\":\"null\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"reasoning_content\":\"The user asks \"}}]},\"usage\":{\"input_tokens\":238,\"output_tokens\":6,\"total_tokens\":244},\"request_id\":\"4edb81cd-4647-9d5d-88f9-a4f30bc6d8dd\"}\n\n",
        "id:2\nevent:result\n:HTTP_STATUS/200\n",
        "data:{\"output\":{\"choices\":[{\"finish_reason\":\"null\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"reasoning_content\":\"about Hangzhou.\"}}]},\"usage\":{\"input_tokens\":238,\"output_tokens\":12,\"total_tokens\":250},\"request_id\":\"4edb81cd-4647-9d5d-88f9-a4f30bc6d8dd\"}\n\n",
        "id:3\nevent:result\n:HTTP_STATUS/200\n",
        "data:{\"output\":{\"choices\":[{\"finish_reason\":\"null\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"reasoning_content\":\"\",\"tool_calls\":[{\"type\":\"function\",\"id\":\"call_ecc41296dccc47baa01567\",\"function\":{\"name\":\"get_current_weather\",\"arguments\":\"{\\\"location\\\": \\\"杭州\"}}]}}]},\"usage\":{\"input_tokens\":238,\"output_tokens\":106,\"total_tokens\":344,\"output_tokens_details\":{\"reasoning_tokens\":90}},\"request_id\":\"4edb81cd-4647-9d5d-88f9-a4f30bc6d8dd\"}\n\n",
        "id:4\nevent:result\n:HTTP_STATUS/200\n",
        "data:{\"output\":{\"choices\":[{\"finish_reason\":\"tool_calls\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"reasoning_content\":\"\",\"tool_calls\":[{\"type\":\"function\",\"id\":\"\",\"function\":{\"arguments\":\"\\\"}\"}}]}}]},\"usage\":{\"input_tokens\":238,\"output_tokens\":108,\"total_tokens\":346,\"output_tokens_details\":{\"reasoning_tokens\":90}},\"request_id\":\"4edb81cd-4647-9d5d-88f9-a4f30bc6d8dd\"}\n\n",
    );

    fn translate(wire: &str, piece: usize, mode: ReasoningMode) -> String {
        let mut decoder = SseDecoder::default();
        let mut stream = super::super::to_chat(QwenStream::default(), "qwen-plus", mode);
        let mut out = String::new();
        let mut events = Vec::new();
        for chunk in wire.as_bytes().chunks(piece) {
            decoder.feed(chunk, &mut events).unwrap();
            for ev in events.drain(..) {
                stream.on_event(&ev, &mut out);
            }
        }
        decoder.finish(&mut events);
        for ev in events.drain(..) {
            stream.on_event(&ev, &mut out);
        }
        stream.finish(&mut out);
        stream.finish(&mut out);
        out
    }

    fn chunks(out: &str) -> Vec<Value> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        decoder.feed(out.as_bytes(), &mut events).unwrap();
        decoder.finish(&mut events);
        assert!(events.iter().all(|e| e.event.is_none()));
        assert_eq!(events.iter().filter(|e| e.data == "[DONE]").count(), 1);
        assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
        events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    fn deltas(out: &str) -> Vec<Value> {
        chunks(out)
            .into_iter()
            .filter_map(|c| c["choices"].get(0).map(|c| c["delta"].clone()))
            .collect()
    }

    #[test]
    fn stream_reasoning_then_incremental_tool_call() {
        let out = translate(TOOL_STREAM, usize::MAX, ReasoningMode::Passthrough);
        let chunks = chunks(&out);
        for c in &chunks {
            assert_eq!(c["id"], "4edb81cd-4647-9d5d-88f9-a4f30bc6d8dd");
            assert_eq!(c["model"], "qwen-plus");
            assert_eq!(c["object"], "chat.completion.chunk");
        }
        let d: Vec<Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0).map(|c| c["delta"].clone()))
            .collect();
        assert_eq!(
            d,
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"reasoning_content": "The user asks "}),
                json!({"reasoning_content": "about Hangzhou."}),
                json!({"tool_calls": [{"index": 0, "id": "call_ecc41296dccc47baa01567",
                    "type": "function", "function": {"name": "get_current_weather",
                    "arguments": "{\"location\": \"杭州"}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"}"}}]}),
                json!({}),
            ]
        );
        let finishes: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0))
            .map(|c| &c["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, vec![&json!("tool_calls")]);
        assert_eq!(
            chunks.last().unwrap()["usage"],
            json!({"prompt_tokens": 238, "completion_tokens": 108, "total_tokens": 346,
                "completion_tokens_details": {"reasoning_tokens": 90}})
        );
        for piece in [1, 5, 64] {
            assert_eq!(
                translate(TOOL_STREAM, piece, ReasoningMode::Passthrough),
                out,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn stream_concat_closes_think_before_tool_call() {
        let out = translate(TOOL_STREAM, 7, ReasoningMode::Concat);
        let d = deltas(&out);
        assert_eq!(d[1], json!({"content": "<think>The user asks "}));
        assert_eq!(d[2], json!({"content": "about Hangzhou."}));
        assert_eq!(d[3], json!({"content": "</think>\n"}));
        assert_eq!(d[4]["tool_calls"][0]["index"], 0);
        let ignore = deltas(&translate(TOOL_STREAM, 7, ReasoningMode::Ignore));
        assert_eq!(ignore.len(), 4);
        assert!(ignore.iter().all(|d| d.get("reasoning_content").is_none()));
    }

    fn event(v: Value) -> SseEvent {
        SseEvent::typed("result", v.to_string())
    }

    #[test]
    fn stream_text_multimodal_and_parallel_calls() {
        let mut s =
            super::super::to_chat(QwenStream::default(), "qwen-vl-max", ReasoningMode::Concat);
        let mut out = String::new();
        let usage =
            |o: u64| json!({"input_tokens": 20, "output_tokens": o, "total_tokens": 20 + o});
        s.on_event(
            &event(json!({"output": {"choices": [{"finish_reason": "null",
            "message": {"role": "assistant", "content": [{"text": "A "}]}}]},
            "usage": usage(1), "request_id": "v1"})),
            &mut out,
        );
        s.on_event(
            &event(json!({"output": {"choices": [{"finish_reason": "null",
            "message": {"role": "assistant", "content": [{"text": "dog."}]}}]},
            "usage": usage(2), "request_id": "v1"})),
            &mut out,
        );
        // Parallel calls with `index`, then one without index or id (continues the last).
        s.on_event(&event(json!({"output": {"choices": [{"finish_reason": "null",
            "message": {"role": "assistant", "content": "", "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":"}},
                {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}}
            ]}}]}, "usage": usage(8), "request_id": "v1"})), &mut out);
        s.on_event(
            &event(json!({"output": {"choices": [{"finish_reason": "null",
            "message": {"role": "assistant", "content": "", "tool_calls": [
                {"index": 0, "id": "", "type": "function", "function": {"arguments": "1}"}}
            ]}}]}, "usage": usage(9), "request_id": "v1"})),
            &mut out,
        );
        s.on_event(
            &event(
                json!({"output": {"choices": [{"finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"arguments": "{}"}}
            ]}}]}, "usage": usage(10), "request_id": "v1"}),
            ),
            &mut out,
        );
        s.finish(&mut out);
        let d = deltas(&out);
        assert_eq!(d[1], json!({"content": "A "}));
        assert_eq!(d[2], json!({"content": "dog."}));
        assert_eq!(d[3]["tool_calls"][0]["id"], "call_a");
        assert_eq!(d[4]["tool_calls"][0]["id"], "call_b");
        assert_eq!(d[4]["tool_calls"][0]["index"], 1);
        assert_eq!(
            d[5],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})
        );
        assert_eq!(
            d[6],
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]})
        );
        assert_eq!(d[7], json!({}));
        assert_eq!(
            chunks(&out).last().unwrap()["usage"]["completion_tokens"],
            10
        );
    }

    #[test]
    fn stream_error_event_and_early_end() {
        let mut s = super::super::to_chat(
            QwenStream::default(),
            "qwen-plus",
            ReasoningMode::Passthrough,
        );
        let mut out = String::new();
        s.on_event(&event(json!({"output": {"choices": [{"finish_reason": "null",
            "message": {"role": "assistant", "content": "Hel"}}]},
            "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}, "request_id": "e"})), &mut out);
        s.on_event(
            &SseEvent::typed("error", r#"{"code":"DataInspectionFailed","message":"Output data may contain inappropriate content.","request_id":"e"}"#),
            &mut out,
        );
        s.on_event(
            &event(json!({"output": {"choices": [{"message": {"content": "lo"}}]}})),
            &mut out,
        );
        s.finish(&mut out);
        let c = chunks(&out);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1]["choices"][0]["delta"], json!({"content": "Hel"}));
        assert_eq!(
            c[2],
            json!({"error": {"message": "Output data may contain inappropriate content.",
                "type": "invalid_request_error", "code": "DataInspectionFailed"}})
        );
        assert_eq!(c[3]["usage"]["total_tokens"], 4);

        // Nothing but a close: one [DONE], no usage.
        let mut s = super::super::to_chat(
            QwenStream::default(),
            "qwen-plus",
            ReasoningMode::Passthrough,
        );
        let mut out = String::new();
        s.finish(&mut out);
        assert_eq!(out, "data: [DONE]\n\n");
    }

    #[test]
    fn embeddings_both_ways() {
        let req = json!({"model": "m", "input": ["a b", "c"], "dimensions": 512,
            "encoding_format": "float"});
        assert_eq!(
            to_qwen_embeddings(&req, "text-embedding-v3").unwrap(),
            json!({"model": "text-embedding-v3", "input": {"texts": ["a b", "c"]},
                "parameters": {"dimension": 512}})
        );
        assert_eq!(
            to_qwen_embeddings(&json!({"input": "hi"}), "e").unwrap(),
            json!({"model": "e", "input": {"texts": ["hi"]}})
        );
        for bad in [json!({"input": [[1, 2]]}), json!({"input": []}), json!({})] {
            assert!(to_qwen_embeddings(&bad, "e").is_err(), "{bad}");
        }
        let answer = br#"{"output":{"embeddings":[{"text_index":1,"embedding":[0.5]},
            {"text_index":0,"embedding":[0.25]}]},"usage":{"total_tokens":3},"request_id":"r"}"#;
        assert_eq!(
            from_qwen_embeddings(answer, "e").unwrap(),
            json!({"object": "list", "model": "e",
                "data": [{"object": "embedding", "index": 1, "embedding": [0.5]},
                         {"object": "embedding", "index": 0, "embedding": [0.25]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        );
        assert!(from_qwen_embeddings(br#"{"output":{}}"#, "e").is_err());
    }

    #[test]
    fn whole_answers_keep_every_choice_and_their_logprobs() {
        let lp = json!({"content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]});
        let body = json!({"request_id": "r1", "usage": {"input_tokens": 3, "output_tokens": 4},
            "output": {"choices": [
                {"finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"},
                 "logprobs": lp},
                {"finish_reason": "length", "message": {"role": "assistant", "content": "Hello"}}]}});
        let r = from_qwen_response(
            body.to_string().as_bytes(),
            "qwen-plus",
            ReasoningMode::Passthrough,
        )
        .unwrap();
        let r = serde_json::to_value(r).unwrap();
        assert_eq!(r["id"], "r1");
        assert_eq!(r["choices"][0]["message"]["content"], "Hi");
        assert_eq!(r["choices"][0]["logprobs"], lp);
        assert_eq!(r["choices"][1]["index"], 1);
        assert_eq!(r["choices"][1]["message"]["content"], "Hello");
        assert_eq!(r["choices"][1]["finish_reason"], "length");
        assert_eq!(r["usage"]["total_tokens"], 7);
    }
}
