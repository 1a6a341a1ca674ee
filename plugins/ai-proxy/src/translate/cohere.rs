//! OpenAI chat completions and embeddings client in front of Cohere's API v2: chat goes out as a
//! `POST /v2/chat` body, embeddings as `POST /v2/embed`; answers, streams and errors come back in
//! OpenAI's shapes.

use super::chat::{Block, Chat, Effort, Media, Role, Tool, ToolChoice, Turn};
use super::upstream_error;
use super::{err, parse, str_of, Decode, TranslateError};
use sdk::error::ErrorReply;
use sdk::llm::openai;
use sdk::llm::stream::{Encoder, Event};
use sdk::sse::SseEvent;
use sdk::usage::from_usage;
use serde_json::{json, Map, Value};

/// Cohere's API host.
pub const DEFAULT_HOST: &str = "api.cohere.com";
/// Chat path (JSON answer, or SSE when the body has `stream: true`).
pub const CHAT_PATH: &str = "/v2/chat";
/// Embeddings path.
pub const EMBED_PATH: &str = "/v2/embed";

/// A token count that may be written as an integer or a float (`12` or `12.0`).
pub(crate) fn count(value: Option<&Value>) -> Option<u64> {
    let v = value?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            // Saturating float-to-int conversion; counts are far below 2^53.
            .map(|f| f.round() as u64)
    })
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// The upstream's name in errors.
const SERVICE: &str = "Cohere";

/// Builds the Cohere v2 chat body for an OpenAI chat request, sent to `model`.
///
/// `system`/`developer` become system messages; assistant text next to tool calls becomes the
/// `tool_plan`; `top_p` → `p`, `top_k` → `k`, `stop` → `stop_sequences`,
/// `max_completion_tokens`/`max_tokens` → `max_tokens`, `reasoning_effort` → `thinking`;
/// OpenAI-only fields are dropped.
pub fn to_cohere_request(req: &openai::ChatRequest, model: &str) -> Result<Value, TranslateError> {
    let chat = Chat::read(req, SERVICE)?;
    chat.single_answer(SERVICE)?;
    let mut messages: Vec<Value> = chat
        .system
        .iter()
        .map(|t| json!({"role": "system", "content": t}))
        .collect();
    for turn in &chat.turns {
        cohere_messages(turn, &mut messages)?;
    }

    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_string()));
    out.insert("messages".into(), Value::Array(messages));
    if chat.stream {
        out.insert("stream".into(), Value::Bool(true));
    }

    add_tools(&chat, &mut out)?;

    if let Some(n) = chat.max_tokens {
        out.insert("max_tokens".into(), Value::from(n));
    }
    for (to, value) in [("temperature", &chat.temperature), ("p", &chat.top_p)] {
        if let Some(v) = value {
            out.insert(to.into(), v.clone());
        }
    }
    for (from, to) in [
        ("top_k", "k"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ] {
        if let Some(v) = chat.number(from) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(seed) = chat.extra.get("seed").and_then(Value::as_u64) {
        out.insert("seed".into(), Value::from(seed));
    }
    if !chat.stop.is_empty() {
        out.insert("stop_sequences".into(), json!(chat.stop));
    }
    if let Some(format) = response_format(chat.extra.get("response_format"))? {
        out.insert("response_format".into(), format);
    }
    if let Some(thinking) = thinking(&chat)? {
        out.insert("thinking".into(), thinking);
    }
    Ok(Value::Object(out))
}

/// Cohere's messages for one turn: user content (a string, or `text`/`image_url` blocks), an
/// assistant's text (its `tool_plan` next to tool calls), and one `tool` message per result.
fn cohere_messages(turn: &Turn, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let mut texts: Vec<&str> = Vec::new();
    let mut blocks: Vec<Value> = Vec::new();
    let mut calls: Vec<Value> = Vec::new();
    for block in &turn.blocks {
        match block {
            Block::Text { text, .. } => {
                texts.push(text);
                blocks.push(json!({"type": "text", "text": text}));
            }
            Block::Image { media, detail, .. } => {
                let url = match media {
                    Media::Url(url) => url.clone(),
                    Media::Data { media_type, data } => format!("data:{media_type};base64,{data}"),
                };
                let mut image = json!({ "url": url });
                if let Some(d) = detail {
                    image["detail"] = d.clone();
                }
                blocks.push(json!({"type": "image_url", "image_url": image}));
            }
            Block::ToolUse {
                id, name, input, ..
            } => calls.push(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()}})),
            Block::ToolResult { id, content, .. } => {
                let id = id
                    .as_deref()
                    .ok_or_else(|| err("tool message without tool_call_id"))?;
                out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            other => return Err(other.unsupported(SERVICE)),
        }
    }
    let text = texts.join("\n");
    match turn.role {
        Role::User if blocks.len() == texts.len() && !texts.is_empty() => {
            out.push(json!({"role": "user", "content": text}))
        }
        Role::User if !blocks.is_empty() => out.push(json!({"role": "user", "content": blocks})),
        Role::User => {}
        Role::Assistant if !calls.is_empty() => {
            let mut m = json!({"role": "assistant", "tool_calls": calls});
            if !text.is_empty() {
                m["tool_plan"] = Value::String(text);
            }
            out.push(m);
        }
        Role::Assistant => out.push(json!({"role": "assistant", "content": text})),
    }
    Ok(())
}

/// `tools`, `strict_tools` and `tool_choice`. A named tool choice keeps only that tool and
/// makes it `REQUIRED` (Cohere cannot name the tool to call).
fn add_tools(chat: &Chat, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    if chat.tools.is_empty() {
        return Ok(());
    }
    let only = match &chat.tool_choice {
        Some(ToolChoice::Function(name)) => Some(name.as_str()),
        _ => None,
    };
    let mut converted = Vec::with_capacity(chat.tools.len());
    let mut strict = false;
    for tool in &chat.tools {
        let (name, description, parameters) = tool.function(SERVICE)?;
        if only.is_some_and(|only| only != name) {
            continue;
        }
        let mut f = Map::new();
        f.insert("name".into(), json!(name));
        if let Some(d) = description {
            f.insert("description".into(), json!(d));
        }
        f.insert("parameters".into(), parameters);
        strict |= matches!(tool, Tool::Function { strict: true, .. });
        converted.push(json!({"type": "function", "function": f}));
    }
    if let (Some(name), true) = (only, converted.is_empty()) {
        return Err(err(format!(
            "tool_choice names {name:?}, which is not in tools"
        )));
    }
    let choice = match chat.tool_choice {
        None | Some(ToolChoice::Auto) => None,
        Some(ToolChoice::None) => Some("NONE"),
        Some(ToolChoice::Required | ToolChoice::Function(_)) => Some("REQUIRED"),
    };
    out.insert("tools".into(), Value::Array(converted));
    if strict {
        out.insert("strict_tools".into(), Value::Bool(true));
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), Value::String(c.to_string()));
    }
    Ok(())
}

/// OpenAI `response_format` → Cohere's: `json_schema` becomes `json_object` with the schema.
fn response_format(format: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    Ok(match format.get("type").and_then(Value::as_str) {
        Some("text") => Some(json!({"type": "text"})),
        Some("json_object") => Some(json!({"type": "json_object"})),
        Some("json_schema") => {
            let mut out = json!({"type": "json_object"});
            if let Some(schema) = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
            {
                out["json_schema"] = schema.clone();
            }
            Some(out)
        }
        other => {
            return Err(err(format!(
                "response_format type {:?} is not supported by Cohere",
                other.unwrap_or("")
            )))
        }
    })
}

/// Cohere `thinking`: from a `thinking` object the client sent (Cohere's `token_budget` or
/// Anthropic's `budget_tokens`), else from `reasoning_effort` (`none` disables, any other
/// level enables without a budget).
fn thinking(chat: &Chat) -> Result<Option<Value>, TranslateError> {
    if let Some(t) = chat.extra.get("thinking").filter(|t| t.is_object()) {
        let kind = match t.get("type").and_then(Value::as_str) {
            Some(k @ ("enabled" | "disabled")) => k,
            other => {
                return Err(err(format!(
                    "thinking type {:?} is not supported by Cohere",
                    other.unwrap_or("")
                )))
            }
        };
        let mut out = json!({ "type": kind });
        let budget = count(t.get("token_budget")).or_else(|| count(t.get("budget_tokens")));
        if let Some(b) = budget.filter(|_| kind == "enabled") {
            out["token_budget"] = Value::from(b);
        }
        return Ok(Some(out));
    }
    Ok(match chat.effort {
        None => None,
        Some(Effort::None) => Some(json!({"type": "disabled"})),
        Some(_) => Some(json!({"type": "enabled"})),
    })
}

// ---------------------------------------------------------------------------------------------
// Shared OpenAI output helpers (also used by the DashScope translator)
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// OpenAI `finish_reason` for a Cohere one; None for `ERROR`/`TIMEOUT` (failed generations).
fn finish_reason(reason: &str) -> Option<&'static str> {
    match reason {
        "MAX_TOKENS" => Some("length"),
        "TOOL_CALL" => Some("tool_calls"),
        "ERROR" | "TIMEOUT" => None,
        // COMPLETE, STOP_SEQUENCE and anything newer.
        _ => Some("stop"),
    }
}

/// Reads a Cohere v2 chat answer as the events of one answer: text blocks (the `tool_plan`
/// when there is no text), `thinking` blocks as reasoning, and the tool calls. A generation
/// that ended in `ERROR` or `TIMEOUT` is an error.
pub fn read_answer(
    body: &[u8],
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let v: Value = parse(body, "Cohere answer is not JSON")?;
    let message = v
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| err("Cohere answer without a message"))?;
    let finish = match v.get("finish_reason").and_then(Value::as_str) {
        Some(r) => Some(
            finish_reason(r)
                .ok_or_else(|| err(format!("Cohere generation ended with finish_reason {r}")))?,
        ),
        None => None,
    };
    let id = str_of(Some(&v), "id").unwrap_or_default();
    enc.event(Event::Meta { id, model: "" }, out);
    let mut text = false;
    match message.get("content") {
        Some(Value::String(s)) => {
            text = !s.is_empty();
            enc.event(Event::Text(s), out);
        }
        Some(Value::Array(blocks)) => {
            for block in blocks {
                let field = |k| str_of(Some(block), k).unwrap_or_default();
                match field("type") {
                    "text" => {
                        text |= !field("text").is_empty();
                        enc.event(Event::Text(field("text")), out);
                    }
                    "thinking" => enc.event(Event::Reasoning(field("thinking")), out),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if let Some(plan) = str_of(Some(message), "tool_plan").filter(|_| !text) {
        enc.event(Event::Text(plan), out);
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function");
        let id = str_of(Some(call), "id").unwrap_or_default();
        let name = str_of(function, "name").unwrap_or_default();
        let args = function.and_then(|f| f.get("arguments"));
        super::tool_call(enc, out, id, name, args);
    }
    if let Some(f) = finish {
        enc.event(Event::Finish(f), out);
    }
    if let Some(u) = v.get("usage").and_then(from_usage) {
        enc.event(Event::Usage(u), out);
    }
    Ok(())
}

/// Turns a Cohere error answer (`{"message"}` or `{"id","message"}`) into the OpenAI-style
/// error the client gets; the type follows the HTTP status.
pub fn cohere_error_to_openai(status: u32, body: &[u8]) -> ErrorReply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let kind = match status {
        // A request or answer with a blocked token; a request cancelled by the client.
        498 => Some("invalid_request_error"),
        499 => Some("request_cancelled"),
        _ => None,
    };
    upstream_error(status, body, kind, None, str_of(parsed.as_ref(), "message"))
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// Reads Cohere v2 chat SSE events into canonical events.
///
/// Keeps whether the answer is over; nothing of the text.
#[derive(Debug, Default)]
pub struct CohereStream {
    met: bool,
}

impl Decode for CohereStream {
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String) {
        if event.data.trim() == "[DONE]" {
            self.finish(enc, out);
            return;
        }
        // Anything that is not JSON (keep-alives, comments) is skipped.
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default();
        let message = v.get("delta").and_then(|d| d.get("message"));
        match kind {
            "message-start" => {
                self.met = true;
                let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
                enc.event(Event::Meta { id, model: "" }, out);
            }
            "content-start" | "content-delta" => {
                let content = message.and_then(|m| m.get("content"));
                if let Some(t) = str_of(content, "thinking") {
                    enc.event(Event::Reasoning(t), out);
                }
                if let Some(t) = str_of(content, "text") {
                    enc.event(Event::Text(t), out);
                }
            }
            "tool-plan-delta" => {
                if let Some(t) = str_of(message, "tool_plan") {
                    enc.event(Event::Text(t), out);
                }
            }
            "tool-call-start" => {
                let call = message.and_then(|m| m.get("tool_calls"));
                let function = call.and_then(|c| c.get("function"));
                let id = str_of(call, "id").unwrap_or_default();
                let name = str_of(function, "name").unwrap_or_default();
                let args = str_of(function, "arguments").unwrap_or_default();
                enc.event(Event::ToolStart { id, name, args }, out);
            }
            "tool-call-delta" => {
                let function = message
                    .and_then(|m| m.get("tool_calls"))
                    .and_then(|c| c.get("function"));
                if let Some(args) = str_of(function, "arguments") {
                    enc.event(Event::ToolArgs(args), out);
                }
            }
            "message-end" => self.message_end(v.get("delta"), enc, out),
            // content-end, tool-call-end, citation-start/end, debug, …
            _ => {}
        }
    }
}

impl CohereStream {
    fn message_end(&mut self, delta: Option<&Value>, enc: &mut dyn Encoder, out: &mut String) {
        if !self.met {
            self.met = true;
            enc.event(Event::Meta { id: "", model: "" }, out);
        }
        if let Some(u) = delta.and_then(|d| d.get("usage")).and_then(from_usage) {
            enc.event(Event::Usage(u), out);
        }
        let reason = str_of(delta, "finish_reason");
        let error = str_of(delta, "error").filter(|e| !e.is_empty());
        match (reason.map(finish_reason), error) {
            (Some(Some(finish)), None) => enc.event(Event::Finish(finish), out),
            (None, None) => {}
            (_, error) => {
                let message = match (error, reason) {
                    (Some(e), _) => e.to_string(),
                    (None, r) => format!(
                        "Cohere generation ended with finish_reason {}",
                        r.unwrap_or_default()
                    ),
                };
                let (kind, code) = ("server_error", reason);
                enc.event(
                    Event::Error {
                        message: &message,
                        kind,
                        code,
                    },
                    out,
                );
            }
        }
        self.finish(enc, out);
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

/// Builds the `POST /v2/embed` body for an OpenAI embeddings request: `input` (a string or
/// strings) → `texts`, `input_type` `search_document` unless the client names one,
/// `embedding_types: ["float"]`, `dimensions` → `output_dimension`. Token arrays are refused.
pub fn to_cohere_embed(req: &Value, model: &str) -> Result<Value, TranslateError> {
    let texts = super::embedding_inputs(req, "Cohere")?;
    let input_type = req
        .get("input_type")
        .and_then(Value::as_str)
        .unwrap_or("search_document");
    let mut out = json!({
        "model": model,
        "texts": texts,
        "input_type": input_type,
        "embedding_types": ["float"],
    });
    if let Some(d) = req.get("dimensions").and_then(Value::as_u64) {
        out["output_dimension"] = Value::from(d);
    }
    if let Some(t) = req.get("truncate").and_then(Value::as_str) {
        out["truncate"] = Value::String(t.to_string());
    }
    Ok(out)
}

/// Builds the OpenAI embeddings answer for a Cohere embed answer (`embeddings.float`, or the
/// bare array of the float-only format); usage is the billed input tokens.
pub fn from_cohere_embed(body: &[u8], model: &str) -> Result<Value, TranslateError> {
    let v: Value = parse(body, "Cohere answer is not JSON")?;
    let embeddings = v.get("embeddings");
    let vectors = match embeddings {
        Some(Value::Array(list)) => list,
        Some(obj) => obj
            .get("float")
            .or_else(|| obj.get("base64"))
            .and_then(Value::as_array)
            .ok_or_else(|| err("Cohere embed answer without float embeddings"))?,
        None => return Err(err("Cohere embed answer without embeddings")),
    };
    let meta = v.get("meta");
    let tokens = count(
        meta.and_then(|m| m.get("tokens"))
            .and_then(|t| t.get("input_tokens")),
    )
    .or_else(|| {
        count(
            meta.and_then(|m| m.get("billed_units"))
                .and_then(|b| b.get("input_tokens")),
        )
    })
    .unwrap_or(0);
    Ok(super::embeddings_list(
        vectors.iter().cloned(),
        model,
        tokens,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::ReasoningMode;
    use crate::translate::StreamTranslator;

    fn from_cohere_response(
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

    fn cohere(v: Value) -> Value {
        to_cohere_request(&chat(v), "command-a-03-2025").unwrap()
    }

    #[test]
    fn maps_messages_and_sampling_fields() {
        let out = cohere(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Bonjour"},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}}
                ]}
            ],
            "max_completion_tokens": 300,
            "max_tokens": 999,
            "temperature": 0.3,
            "top_p": 0.9,
            "top_k": 40,
            "frequency_penalty": 0.1,
            "presence_penalty": 0.2,
            "seed": 7,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "u-1",
            "logprobs": true
        }));
        assert_eq!(
            out,
            json!({
                "model": "command-a-03-2025",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "system", "content": "Answer in French."},
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Bonjour"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}}
                    ]}
                ],
                "stream": true,
                "max_tokens": 300,
                "temperature": 0.3,
                "p": 0.9,
                "k": 40,
                "frequency_penalty": 0.1,
                "presence_penalty": 0.2,
                "seed": 7,
                "stop_sequences": ["END"]
            })
        );
        let out = cohere(json!({"messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5, "stop": ["a", "b"], "stream": false}));
        assert_eq!(out["max_tokens"], 5);
        assert_eq!(out["stop_sequences"], json!(["a", "b"]));
        assert!(out.get("stream").is_none());
    }

    #[test]
    fn rejects_what_cohere_cannot_take() {
        let bad = [
            json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            json!({"messages": [{"role": "function", "content": "x"}]}),
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "code_interpreter"}]}),
            json!({"messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "grammar"}}),
            json!({"messages": [{"role": "user", "content": "x"}],
                "thinking": {"type": "adaptive"}}),
        ];
        for req in bad {
            assert!(to_cohere_request(&chat(req.clone()), "m").is_err(), "{req}");
        }
    }

    #[test]
    fn tools_tool_calls_and_results() {
        let out = cohere(json!({
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "I will look it up.", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
                {"role": "assistant", "content": null}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "strict": true}},
                {"type": "function", "function": {"name": "now"}}
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}
                ], "tool_plan": "I will look it up."},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "12:00"}
            ])
        );
        assert_eq!(
            out["tools"],
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now",
                    "parameters": {"type": "object", "properties": {}}}}
            ])
        );
        assert_eq!(out["strict_tools"], true);
        assert_eq!(out["tool_choice"], "REQUIRED");
        assert!(out.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn tool_choice_forms() {
        let base = json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "a"}},
                      {"type": "function", "function": {"name": "b"}}]
        });
        let with = |choice: Value| {
            let mut req = base.clone();
            req["tool_choice"] = choice;
            to_cohere_request(&chat(req), "m")
        };
        let auto = with(json!("auto")).unwrap();
        assert!(auto.get("tool_choice").is_none());
        assert_eq!(auto["tools"].as_array().unwrap().len(), 2);
        assert_eq!(with(json!("none")).unwrap()["tool_choice"], "NONE");
        let named = with(json!({"type": "function", "function": {"name": "b"}})).unwrap();
        assert_eq!(named["tool_choice"], "REQUIRED");
        assert_eq!(
            named["tools"],
            json!([{"type": "function", "function": {"name": "b",
                "parameters": {"type": "object", "properties": {}}}}])
        );
        assert!(with(json!({"type": "function", "function": {"name": "zzz"}})).is_err());
        assert!(with(json!("sometimes")).is_err());
        // Without tools, tool_choice is dropped.
        let out = cohere(
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
        );
        assert!(out.get("tool_choice").is_none() && out.get("tools").is_none());
    }

    #[test]
    fn response_format_and_thinking() {
        let with = |extra: Value| {
            let mut req = json!({"messages": [{"role": "user", "content": "json please"}]});
            for (k, v) in extra.as_object().unwrap() {
                req[k] = v.clone();
            }
            cohere(req)
        };
        assert_eq!(
            with(json!({"response_format": {"type": "json_object"}}))["response_format"],
            json!({"type": "json_object"})
        );
        assert_eq!(
            with(
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p",
                "schema": {"type": "object", "required": ["a"]}, "strict": true}}})
            )["response_format"],
            json!({"type": "json_object", "json_schema": {"type": "object", "required": ["a"]}})
        );
        assert_eq!(
            with(json!({"response_format": {"type": "text"}}))["response_format"],
            json!({"type": "text"})
        );
        assert_eq!(
            with(json!({"reasoning_effort": "high"}))["thinking"],
            json!({"type": "enabled"})
        );
        assert_eq!(
            with(json!({"reasoning_effort": "none"}))["thinking"],
            json!({"type": "disabled"})
        );
        assert_eq!(
            with(json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}))["thinking"],
            json!({"type": "enabled", "token_budget": 2048})
        );
        assert_eq!(
            with(json!({"thinking": {"type": "disabled", "token_budget": 5}}))["thinking"],
            json!({"type": "disabled"})
        );
        assert!(with(json!({})).get("thinking").is_none());
    }

    fn response(v: Value, mode: ReasoningMode) -> Value {
        serde_json::to_value(
            from_cohere_response(v.to_string().as_bytes(), "command-a-03-2025", mode).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn response_text_with_usage() {
        let out = response(
            json!({
                "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
                "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "content": [
                    {"type": "text", "text": "LLMs are "}, {"type": "text", "text": "models."}]},
                "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 418},
                    "tokens": {"input_tokens": 71, "output_tokens": 418}, "cached_tokens": 64}
            }),
            ReasoningMode::Passthrough,
        );
        assert_eq!(
            out,
            json!({
                "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
                "object": "chat.completion",
                "created": 0,
                "model": "command-a-03-2025",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "LLMs are models."},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 71, "completion_tokens": 418, "total_tokens": 489,
                    "prompt_tokens_details": {"cached_tokens": 64}}
            })
        );
        // billed_units when tokens are absent; floats are accepted.
        let out = response(
            json!({"id": "x", "finish_reason": "MAX_TOKENS",
                "message": {"role": "assistant", "content": [{"type": "text", "text": "cut"}]},
                "usage": {"billed_units": {"input_tokens": 9.0, "output_tokens": 3}}}),
            ReasoningMode::Passthrough,
        );
        assert_eq!(out["choices"][0]["finish_reason"], "length");
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
        );
    }

    #[test]
    fn response_tool_call_with_plan() {
        let out = response(
            json!({
                "id": "5ab2b9c2-1bd4-4c45-9a5e-1b5b8b3dbd4c",
                "finish_reason": "TOOL_CALL",
                "message": {
                    "role": "assistant",
                    "tool_plan": "I will find the sales summary.",
                    "tool_calls": [{"id": "query_daily_sales_report_0ab7t6vnzr5c", "type": "function",
                        "function": {"name": "query_daily_sales_report", "arguments": "{\"day\":\"2023-09-29\"}"}}]
                },
                "usage": {"tokens": {"input_tokens": 1320, "output_tokens": 51}}
            }),
            ReasoningMode::Passthrough,
        );
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"]["content"],
            "I will find the sales summary."
        );
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "query_daily_sales_report_0ab7t6vnzr5c", "type": "function",
                "function": {"name": "query_daily_sales_report", "arguments": "{\"day\":\"2023-09-29\"}"}}])
        );
    }

    #[test]
    fn response_thinking_per_mode() {
        let body = json!({"id": "t", "finish_reason": "COMPLETE", "message": {"role": "assistant",
            "content": [{"type": "thinking", "thinking": "Alice has 2 sisters."},
                        {"type": "text", "text": "3."}]}});
        let pass = response(body.clone(), ReasoningMode::Passthrough);
        assert_eq!(pass["choices"][0]["message"]["content"], "3.");
        assert_eq!(
            pass["choices"][0]["message"]["reasoning_content"],
            "Alice has 2 sisters."
        );
        let ignore = response(body.clone(), ReasoningMode::Ignore);
        assert_eq!(
            ignore["choices"][0]["message"],
            json!({"role": "assistant", "content": "3."})
        );
        let concat = response(body, ReasoningMode::Concat);
        assert_eq!(
            concat["choices"][0]["message"],
            json!({"role": "assistant", "content": "<think>Alice has 2 sisters.</think>\n3."})
        );
        assert!(concat.get("usage").is_none());
    }

    #[test]
    fn failed_generations_and_bad_bodies_are_errors() {
        for reason in ["ERROR", "TIMEOUT"] {
            let body = json!({"id": "x", "finish_reason": reason,
                "message": {"role": "assistant", "content": []}});
            let e = from_cohere_response(body.to_string().as_bytes(), "m", ReasoningMode::Ignore)
                .unwrap_err();
            assert!(e.0.contains(reason), "{e}");
        }
        assert!(from_cohere_response(b"nope", "m", ReasoningMode::Ignore).is_err());
        assert!(from_cohere_response(b"{\"id\":\"x\"}", "m", ReasoningMode::Ignore).is_err());
        for (reason, finish) in [("STOP_SEQUENCE", "stop"), ("COMPLETE", "stop")] {
            let body =
                json!({"id": "x", "finish_reason": reason, "message": {"role": "assistant"}});
            let out = response(body, ReasoningMode::Ignore);
            assert_eq!(out["choices"][0]["finish_reason"], finish);
            assert_eq!(
                out["choices"][0]["message"].get("content"),
                Some(&serde_json::Value::Null)
            );
        }
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let e = cohere_error_to_openai(
            401,
            br#"{"id":"2f0f5d1c-0d2c-4a52-9a1a-7a2a4c2d1f00","message":"invalid api token"}"#,
        );
        assert_eq!(
            (e.status, e.error_type.as_str(), e.code, e.message.as_str()),
            (401, "authentication_error", None, "invalid api token")
        );
        for (status, kind) in [
            (400, "invalid_request_error"),
            (422, "invalid_request_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (429, "rate_limit_exceeded"),
            (498, "invalid_request_error"),
            (499, "request_cancelled"),
            (500, "server_error"),
            (503, "server_error"),
        ] {
            let e = cohere_error_to_openai(status, br#"{"message":"m"}"#);
            assert_eq!(e.error_type, kind, "{status}");
            assert_eq!(e.message, "m");
        }
        let e = cohere_error_to_openai(502, b"<html>bad gateway</html>");
        assert_eq!(e.message, "<html>bad gateway</html>");
        assert_eq!(
            cohere_error_to_openai(504, b"").message,
            "upstream returned HTTP 504"
        );
    }

    const TOOL_STREAM: &str = concat!(
        "event: message-start\n",
        "data: {\"id\":\"29f14a5a-11de-4cae-9800-25e4747408ea\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\",\"content\":[],\"tool_plan\":\"\",\"tool_calls\":[],\"citations\":[]}}}\n\n",
        "event: tool-plan-delta\n",
        "data: {\"type\":\"tool-plan-delta\",\"delta\":{\"message\":{\"tool_plan\":\"I will\"}}}\n\n",
        "event: tool-plan-delta\n",
        "data: {\"type\":\"tool-plan-delta\",\"delta\":{\"message\":{\"tool_plan\":\" check.\"}}}\n\n",
        "event: tool-call-start\n",
        "data: {\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"id\":\"get_weather_nsz5zm3w56q3\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}}}}\n\n",
        "event: tool-call-delta\n",
        "data: {\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"function\":{\"arguments\":\"{\\n    \\\"\"}}}}}\n\n",
        "event: tool-call-delta\n",
        "data: {\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"function\":{\"arguments\":\"location\\\": \\\"Toronto\\\"}\"}}}}}\n\n",
        "event: tool-call-end\n",
        "data: {\"type\":\"tool-call-end\",\"index\":0}\n\n",
        "event: tool-call-start\n",
        "data: {\"type\":\"tool-call-start\",\"index\":1,\"delta\":{\"message\":{\"tool_calls\":{\"id\":\"get_time_1\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}}}}\n\n",
        "event: tool-call-delta\n",
        "data: {\"type\":\"tool-call-delta\",\"index\":1,\"delta\":{\"message\":{\"tool_calls\":{\"function\":{\"arguments\":\"{}\"}}}}}\n\n",
        "event: tool-call-end\n",
        "data: {\"type\":\"tool-call-end\",\"index\":1}\n\n",
        "event: message-end\n",
        "data: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"TOOL_CALL\",\"usage\":{\"billed_units\":{\"input_tokens\":50,\"output_tokens\":26},\"tokens\":{\"input_tokens\":793,\"output_tokens\":61},\"cached_tokens\":176}}}\n\n",
        "data: [DONE]\n\n",
    );

    /// Decodes `wire` fed in `piece`-byte chunks, translating each event as it completes.
    fn translate(wire: &str, piece: usize, mode: ReasoningMode) -> String {
        let mut decoder = SseDecoder::default();
        let mut stream = super::super::to_chat(CohereStream::default(), "command-a-03-2025", mode);
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

    /// The JSON chunks of a translated stream; checks it ends in exactly one `[DONE]`.
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

    #[test]
    fn stream_tool_plan_and_two_tool_calls() {
        let out = translate(TOOL_STREAM, usize::MAX, ReasoningMode::Passthrough);
        let chunks = chunks(&out);
        for c in &chunks {
            assert_eq!(c["id"], "29f14a5a-11de-4cae-9800-25e4747408ea");
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "command-a-03-2025");
        }
        assert_eq!(
            chunks[0]["choices"],
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "I will check.");
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls.len(), 5);
        assert_eq!(
            calls[0],
            &json!([{"index": 0, "id": "get_weather_nsz5zm3w56q3", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}])
        );
        let args: String = calls
            .iter()
            .filter(|c| c[0]["index"] == 0)
            .filter_map(|c| c[0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"location": "Toronto"})
        );
        assert_eq!(calls[3][0]["id"], "get_time_1");
        assert_eq!(calls[3][0]["index"], 1);
        assert_eq!(
            calls[4],
            &json!([{"index": 1, "function": {"arguments": "{}"}}])
        );

        let finishes: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0))
            .map(|c| &c["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, vec![&json!("tool_calls")]);
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 793, "completion_tokens": 61, "total_tokens": 854,
                "prompt_tokens_details": {"cached_tokens": 176}})
        );
    }

    #[test]
    fn stream_output_does_not_depend_on_batching() {
        let whole = translate(TOOL_STREAM, usize::MAX, ReasoningMode::Passthrough);
        for piece in [1, 3, 17, 200] {
            assert_eq!(
                translate(TOOL_STREAM, piece, ReasoningMode::Passthrough),
                whole,
                "piece {piece}"
            );
        }
        // Without `event:` lines the `type` in the data decides.
        let bare: String = TOOL_STREAM
            .lines()
            .filter(|l| !l.starts_with("event:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(translate(&bare, 9, ReasoningMode::Passthrough), whole);
    }

    fn thinking_stream() -> String {
        let events = [
            json!({"id": "r1", "type": "message-start", "delta": {"message": {"role": "assistant"}}}),
            json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "thinking", "thinking": ""}}}}),
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"thinking": "Two "}}}}),
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"thinking": "sisters."}}}}),
            json!({"type": "content-end", "index": 0}),
            json!({"type": "content-start", "index": 1, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
            json!({"type": "content-delta", "index": 1, "delta": {"message": {"content": {"text": "Three"}}}}),
            json!({"type": "citation-start", "index": 0, "delta": {"message": {"citations": {"start": 0, "end": 5, "text": "Three"}}}}),
            json!({"type": "citation-end", "index": 0}),
            json!({"type": "content-delta", "index": 1, "delta": {"message": {"content": {"text": "."}}}}),
            json!({"type": "content-end", "index": 1}),
            json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE",
                "usage": {"tokens": {"input_tokens": 10, "output_tokens": 7}}}}),
        ];
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect()
    }

    fn deltas(out: &str) -> Vec<Value> {
        chunks(out)
            .into_iter()
            .filter_map(|c| c["choices"].get(0).map(|c| c["delta"].clone()))
            .collect()
    }

    #[test]
    fn stream_thinking_per_mode() {
        let wire = thinking_stream();
        let pass = deltas(&translate(&wire, 64, ReasoningMode::Passthrough));
        assert_eq!(
            pass,
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"reasoning_content": "Two "}),
                json!({"reasoning_content": "sisters."}),
                json!({"content": "Three"}),
                json!({"content": "."}),
                json!({}),
            ]
        );
        let ignore = deltas(&translate(&wire, 64, ReasoningMode::Ignore));
        assert_eq!(
            ignore,
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"content": "Three"}),
                json!({"content": "."}),
                json!({}),
            ]
        );
        let concat = translate(&wire, 64, ReasoningMode::Concat);
        let text: String = deltas(&concat)
            .iter()
            .filter_map(|d| d["content"].as_str())
            .collect();
        assert_eq!(text, "<think>Two sisters.</think>\nThree.");
        let usage = chunks(&concat).pop().unwrap();
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17})
        );
    }

    #[test]
    fn stream_closes_think_before_tool_calls_and_on_early_end() {
        let mut s = super::super::to_chat(CohereStream::default(), "m", ReasoningMode::Concat);
        let mut out = String::new();
        let ev = |v: Value| SseEvent::data(v.to_string());
        s.on_event(
            &ev(json!({"type": "content-delta", "delta": {"message": {"content": {"thinking": "hmm"}}}})),
            &mut out,
        );
        s.on_event(
            &ev(
                json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls":
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}}}}),
            ),
            &mut out,
        );
        let d = deltas(&{
            let mut o = out.clone();
            s.finish(&mut o);
            o
        });
        assert_eq!(d[0], json!({"role": "assistant", "content": ""}));
        assert_eq!(d[1], json!({"content": "<think>hmm"}));
        assert_eq!(d[2], json!({"content": "</think>\n"}));
        assert_eq!(d[3]["tool_calls"][0]["id"], "t1");

        // Ended before any usage: no usage chunk, still one [DONE].
        let mut s = super::super::to_chat(CohereStream::default(), "m", ReasoningMode::Concat);
        let mut out = String::new();
        s.on_event(
            &ev(json!({"type": "content-delta", "delta": {"message": {"content": {"thinking": "hmm"}}}})),
            &mut out,
        );
        s.finish(&mut out);
        s.finish(&mut out);
        let c = chunks(&out);
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[2]["choices"][0]["delta"],
            json!({"content": "</think>\n"})
        );
    }

    #[test]
    fn stream_failed_generation_is_an_error_event() {
        let mut s = super::super::to_chat(CohereStream::default(), "m", ReasoningMode::Passthrough);
        let mut out = String::new();
        let ev = |v: Value| SseEvent::data(v.to_string());
        s.on_event(&ev(json!({"id": "e1", "type": "message-start"})), &mut out);
        s.on_event(
            &ev(json!({"type": "content-delta", "delta": {"message": {"content": {"text": "par"}}}})),
            &mut out,
        );
        s.on_event(
            &ev(json!({"type": "message-end", "delta": {"finish_reason": "ERROR",
                "error": "internal failure", "usage": {"tokens": {"input_tokens": 3, "output_tokens": 1}}}})),
            &mut out,
        );
        s.on_event(&SseEvent::data("[DONE]"), &mut out);
        s.finish(&mut out);
        let c = chunks(&out);
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[2],
            json!({"error": {"message": "internal failure", "type": "server_error", "code": "ERROR"}})
        );
        assert_eq!(c[3]["usage"]["total_tokens"], 4);

        let mut s = super::super::to_chat(CohereStream::default(), "m", ReasoningMode::Passthrough);
        let mut out = String::new();
        s.on_event(
            &ev(json!({"type": "message-end", "delta": {"finish_reason": "TIMEOUT"}})),
            &mut out,
        );
        let c = chunks(&out);
        assert_eq!(c[1]["error"]["code"], "TIMEOUT");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn embed_request_and_answer() {
        let out = to_cohere_embed(
            &json!({"input": ["hello", "goodbye"], "model": "text-embedding-3-small",
                "dimensions": 512, "encoding_format": "float", "user": "u"}),
            "embed-v4.0",
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"model": "embed-v4.0", "texts": ["hello", "goodbye"],
                "input_type": "search_document", "embedding_types": ["float"],
                "output_dimension": 512})
        );
        let out = to_cohere_embed(
            &json!({"input": "one", "input_type": "search_query"}),
            "embed-english-v3.0",
        )
        .unwrap();
        assert_eq!(out["texts"], json!(["one"]));
        assert_eq!(out["input_type"], "search_query");
        for bad in [json!({"input": [1, 2]}), json!({"input": []}), json!({})] {
            assert!(to_cohere_embed(&bad, "m").is_err(), "{bad}");
        }

        let body = json!({
            "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
            "texts": ["hello", "goodbye"],
            "embeddings": {"float": [[0.016296387, -0.008354187], [-0.04699707, 0.5]]},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},
            "response_type": "embeddings_by_type"
        });
        let out = from_cohere_embed(body.to_string().as_bytes(), "embed-v4.0").unwrap();
        assert_eq!(
            out,
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.016296387, -0.008354187]},
                {"object": "embedding", "index": 1, "embedding": [-0.04699707, 0.5]}],
                "model": "embed-v4.0",
                "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        );
        let floats = json!({"id": "x", "embeddings": [[1.0]], "response_type": "embeddings_floats",
            "meta": {"billed_units": {"input_tokens": 1}}});
        let out = from_cohere_embed(floats.to_string().as_bytes(), "m").unwrap();
        assert_eq!(out["data"][0]["embedding"], json!([1.0]));
        assert!(from_cohere_embed(b"{\"id\":\"x\"}", "m").is_err());
        assert!(from_cohere_embed(b"{\"embeddings\":{\"int8\":[[1]]}}", "m").is_err());
    }
}
