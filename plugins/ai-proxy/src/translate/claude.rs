//! OpenAI chat completions client in front of an Anthropic Messages upstream: the request goes out
//! as a `/v1/messages` body; the response, the stream and errors come back as chat completions.

use super::chat::{self, Chat, Effort, Media, ToolChoice};
use super::{err, parse, str_of, upstream_error, Decode, TranslateError};
use sdk::error::ErrorReply;
use sdk::llm::anthropic::{self, Block, StreamEvent};
use sdk::llm::stream::{Encoder, Event};
use sdk::llm::{openai, Extra};
use sdk::sse::SseEvent;
use serde_json::{json, Map, Value};

/// Builds the Anthropic request for an OpenAI chat request, sent to `model`.
///
/// `system`/`developer` messages become the top-level `system`, tool calls and tool results
/// become `tool_use`/`tool_result` blocks, and OpenAI-only fields are dropped.
pub fn to_claude_request(
    req: &openai::ChatRequest,
    model: &str,
    default_max_tokens: u64,
) -> Result<anthropic::MessagesRequest, TranslateError> {
    let chat = Chat::read(req, SERVICE)?;
    chat.single_answer(SERVICE)?;

    let mut messages: Vec<anthropic::Message> = Vec::new();
    for turn in &chat.turns {
        let role = turn.role.name();
        let blocks = turn
            .blocks
            .iter()
            .map(claude_block)
            .collect::<Result<Vec<_>, _>>()?;
        // Tool results join the turn of the results before them, and so does the user text
        // after them.
        match messages.last_mut() {
            Some(anthropic::Message {
                role: last,
                content: anthropic::Content::Blocks(existing),
                ..
            }) if last == role && existing.last().is_some_and(|b| b.kind == "tool_result") => {
                existing.extend(blocks)
            }
            _ => messages.push(anthropic::Message {
                role: role.to_string(),
                content: anthropic::Content::Blocks(blocks),
                extra: Extra::new(),
            }),
        }
    }

    let mut max_tokens = chat.max_tokens.unwrap_or(default_max_tokens);
    let thinking = chat
        .effort
        .filter(|_| !chat.continues_tool_use())
        .and_then(Effort::anthropic_budget)
        .and_then(|budget| {
            // Anthropic needs max_tokens above the budget: without a client limit the answer keeps
            // its default room; with one the budget shrinks to fit, and below 1024 thinking is off.
            match chat.max_tokens {
                None => {
                    max_tokens = max_tokens.saturating_add(budget);
                    Some(budget)
                }
                Some(limit) => Some(budget.min(limit.saturating_sub(1))).filter(|b| *b >= 1024),
            }
        });

    let mut extra = Extra::new();
    // Anthropic refuses sampling changes while thinking.
    if thinking.is_none() {
        for (key, value) in [("temperature", &chat.temperature), ("top_p", &chat.top_p)] {
            if let Some(v) = value {
                extra.insert(key.into(), v.clone());
            }
        }
    }
    if !chat.stop.is_empty() {
        extra.insert("stop_sequences".into(), json!(chat.stop));
    }
    if !chat.tools.is_empty() {
        let tools = chat
            .tools
            .iter()
            .map(|t| {
                let (name, description, schema) = t.function(SERVICE)?;
                let mut out = Map::new();
                out.insert("name".into(), json!(name));
                if let Some(d) = description {
                    out.insert("description".into(), json!(d));
                }
                out.insert("input_schema".into(), schema);
                Ok(Value::Object(out))
            })
            .collect::<Result<Vec<_>, TranslateError>>()?;
        let mut choice = chat.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
        });
        if chat.parallel_tool_calls == Some(false) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = Value::Bool(true);
            }
        }
        extra.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            extra.insert("tool_choice".into(), c);
        }
    }
    if let Some(user) = &chat.user {
        extra.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(budget) = thinking {
        extra.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }

    Ok(anthropic::MessagesRequest {
        model: Some(model.to_string()),
        messages,
        system: (!chat.system.is_empty())
            .then(|| anthropic::Content::Text(chat.system.join("\n\n"))),
        max_tokens: Some(max_tokens),
        stream: req.stream,
        extra,
    })
}

/// The upstream's name in errors.
const SERVICE: &str = "Anthropic";

/// The Anthropic block for a canonical one.
fn claude_block(block: &chat::Block) -> Result<Block, TranslateError> {
    let mut extra = Extra::new();
    let (kind, cache_control) = match block {
        chat::Block::Text {
            text,
            cache_control,
        } => {
            let mut b = Block::text(text.as_str());
            if let Some(cc) = cache_control {
                b.extra.insert("cache_control".into(), cc.clone());
            }
            return Ok(b);
        }
        chat::Block::Image {
            media,
            cache_control,
            ..
        } => {
            let source = match media {
                Media::Data { media_type, data } => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                Media::Url(url) => json!({"type": "url", "url": url}),
            };
            extra.insert("source".into(), source);
            ("image", cache_control.as_ref())
        }
        chat::Block::ToolUse {
            id, name, input, ..
        } => {
            extra.insert("id".into(), json!(id));
            extra.insert("name".into(), json!(name));
            extra.insert("input".into(), input.clone());
            ("tool_use", None)
        }
        chat::Block::ToolResult { id, content, .. } => {
            let id = id
                .as_deref()
                .ok_or_else(|| err("tool message without tool_call_id"))?;
            extra.insert("tool_use_id".into(), json!(id));
            if !content.is_empty() {
                extra.insert("content".into(), json!(content));
            }
            ("tool_result", None)
        }
        other => return Err(other.unsupported(SERVICE)),
    };
    if let Some(cc) = cache_control {
        extra.insert("cache_control".into(), cc.clone());
    }
    Ok(Block {
        kind: kind.into(),
        text: None,
        extra,
    })
}

/// Headers Higress's `claudeCodeMode` sends (as the Claude Code CLI does).
pub const CLAUDE_CODE_HEADERS: [(&str, &str); 3] = [
    ("user-agent", "claude-cli/2.1.2 (external, cli)"),
    ("x-app", "cli"),
    (
        "anthropic-beta",
        "oauth-2025-04-20,interleaved-thinking-2025-05-14,claude-code-20250219",
    ),
];
/// Query parameter added to every path in Claude Code mode.
pub const CLAUDE_CODE_QUERY: &str = "beta=true";
/// System prompt of Claude Code mode when the client sends none.
pub const CLAUDE_CODE_SYSTEM_PROMPT: &str =
    "You are Claude Code, Anthropic's official CLI for Claude.";

/// Claude Code mode's system prompt (as Higress sends it): one text block marked for prompt
/// caching, the client's system text or else Claude Code's own.
pub fn claude_code_system(req: &mut anthropic::MessagesRequest) {
    let text = match req.system.take() {
        Some(anthropic::Content::Text(t)) if !t.is_empty() => t,
        _ => CLAUDE_CODE_SYSTEM_PROMPT.to_string(),
    };
    let mut block = anthropic::Block::text(text);
    block
        .extra
        .insert("cache_control".into(), json!({"type": "ephemeral"}));
    req.system = Some(anthropic::Content::Blocks(vec![block]));
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Reads an Anthropic response as the events of one answer: text, `thinking` blocks as
/// reasoning, `tool_use` blocks as tool calls.
pub fn read_answer(
    body: &[u8],
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let resp: anthropic::MessagesResponse = parse(body, "Anthropic answer is not readable")?;
    enc.event(
        Event::Meta {
            id: &resp.id,
            model: &resp.model,
        },
        out,
    );
    for block in &resp.content {
        let field = |k: &str| {
            block
                .extra
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        match block.kind.as_str() {
            "text" => enc.event(Event::Text(block.text.as_deref().unwrap_or_default()), out),
            "thinking" => enc.event(Event::Reasoning(field("thinking")), out),
            "tool_use" => {
                let input = block.extra.get("input");
                super::tool_call(enc, out, field("id"), field("name"), input);
            }
            _ => {}
        }
    }
    if let Some(reason) = resp.stop_reason.as_deref() {
        enc.event(Event::Finish(finish_reason(reason)), out);
    }
    enc.event(Event::Usage(resp.usage.counts()), out);
    Ok(())
}

/// OpenAI `error.type` for an Anthropic error type.
fn openai_error_type(anthropic_type: &str) -> &'static str {
    match anthropic_type {
        "invalid_request_error" | "request_too_large" => "invalid_request_error",
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" => "rate_limit_exceeded",
        _ => "server_error",
    }
}

/// Turns an Anthropic error response (`{"type":"error","error":{"type","message"}}`) into the
/// OpenAI-style error the client gets; `code` is the Anthropic error type.
pub fn claude_error_to_openai(status: u32, body: &[u8]) -> ErrorReply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = str_of(error, "type");
    upstream_error(
        status,
        body,
        kind.map(openai_error_type),
        kind,
        str_of(error, "message"),
    )
}

/// Reads Anthropic's stream events into canonical events.
///
/// Keeps the usage so far and the open `tool_use` blocks; nothing of the text.
#[derive(Debug, Default)]
pub struct ClaudeStream {
    usage: anthropic::Usage,
    /// Open `tool_use` blocks (Anthropic block index).
    open_tools: Vec<u32>,
}

impl ClaudeStream {
    fn merge_usage(&mut self, u: &anthropic::Usage) {
        if u.input_tokens.is_some() {
            self.usage.input_tokens = u.input_tokens;
        }
        if u.cache_read_input_tokens.is_some() {
            self.usage.cache_read_input_tokens = u.cache_read_input_tokens;
        }
        if u.cache_creation_input_tokens.is_some() {
            self.usage.cache_creation_input_tokens = u.cache_creation_input_tokens;
        }
        // Output tokens are cumulative in every event that carries them.
        self.usage.output_tokens = u.output_tokens;
    }

    fn block_start(&mut self, index: u32, block: &Block, enc: &mut dyn Encoder, out: &mut String) {
        match block.kind.as_str() {
            "text" => {
                if let Some(t) = block.text.as_deref() {
                    enc.event(Event::Text(t), out);
                }
            }
            "thinking" => {
                if let Some(t) = block.extra.get("thinking").and_then(Value::as_str) {
                    enc.event(Event::Reasoning(t), out);
                }
            }
            "tool_use" => {
                self.open_tools.retain(|block| *block != index);
                self.open_tools.push(index);
                let id = block.extra.get("id").and_then(Value::as_str);
                let name = block.extra.get("name").and_then(Value::as_str);
                enc.event(
                    Event::ToolStart {
                        id: id.unwrap_or_default(),
                        name: name.unwrap_or_default(),
                        args: "",
                    },
                    out,
                );
            }
            // Server tools, redacted thinking, …: nothing the other protocols can use.
            _ => {}
        }
    }

    fn block_delta(&mut self, index: u32, delta: &Value, enc: &mut dyn Encoder, out: &mut String) {
        let field = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or_default();
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => enc.event(Event::Text(field("text")), out),
            Some("thinking_delta") => enc.event(Event::Reasoning(field("thinking")), out),
            Some("input_json_delta") if self.open_tools.contains(&index) => {
                enc.event(Event::ToolArgs(field("partial_json")), out);
            }
            // signature_delta, citations_delta, …
            _ => {}
        }
    }
}

impl Decode for ClaudeStream {
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String) {
        // Unknown event types (and anything that is not JSON) are skipped.
        let Ok(ev) = serde_json::from_str::<StreamEvent>(&event.data) else {
            return;
        };
        match ev {
            StreamEvent::MessageStart { message } => {
                self.merge_usage(&message.usage);
                let (id, model) = (message.id.as_str(), message.model.as_str());
                enc.event(Event::Meta { id, model }, out);
                enc.event(Event::Usage(self.usage.counts()), out);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => self.block_start(index, &content_block, enc, out),
            StreamEvent::ContentBlockDelta { index, delta } => {
                self.block_delta(index, &delta, enc, out);
            }
            StreamEvent::ContentBlockStop { index } => {
                self.open_tools.retain(|block| *block != index);
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.merge_usage(&u);
                    enc.event(Event::Usage(self.usage.counts()), out);
                }
                if let Some(reason) = delta.get("stop_reason").and_then(Value::as_str) {
                    enc.event(Event::Finish(finish_reason(reason)), out);
                }
            }
            StreamEvent::MessageStop => self.finish(enc, out),
            StreamEvent::Ping => {}
            StreamEvent::Error { error } => {
                let kind = error
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("api_error");
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream stream error");
                let kind = openai_error_type(kind);
                enc.event(
                    Event::Error {
                        message,
                        kind,
                        code: None,
                    },
                    out,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::StreamTranslator;

    fn from_claude_response(resp: &anthropic::MessagesResponse) -> openai::ChatResponse {
        let body = serde_json::to_vec(resp).unwrap();
        crate::translate::whole_chat("", ReasoningMode::Passthrough, |e, o| {
            read_answer(&body, e, o)
        })
        .unwrap()
    }
    use crate::translate::ReasoningMode;
    use sdk::sse::SseDecoder;

    fn chat(v: Value) -> openai::ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn claude(v: Value) -> Value {
        let req = to_claude_request(&chat(v), "claude-sonnet-4-5", 4096).unwrap();
        serde_json::to_value(req).unwrap()
    }

    #[test]
    fn lifts_system_and_maps_sampling_fields() {
        let out = claude(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hello"}
            ],
            "max_completion_tokens": 300,
            "max_tokens": 999,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "user-42",
            "frequency_penalty": 0.5,
            "logprobs": true,
            "n": 1
        }));
        assert_eq!(
            out,
            json!({
                "model": "claude-sonnet-4-5",
                "system": "You are terse.\n\nAnswer in French.",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
                "max_tokens": 300,
                "temperature": 0.3,
                "top_p": 0.9,
                "stop_sequences": ["END"],
                "stream": true,
                "metadata": {"user_id": "user-42"}
            })
        );
    }

    #[test]
    fn max_tokens_fallbacks_and_stop_array() {
        let out = claude(
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 77,
            "stop": ["a", "b"]}),
        );
        assert_eq!(out["max_tokens"], 77);
        assert_eq!(out["stop_sequences"], json!(["a", "b"]));
        assert!(out.get("system").is_none());
        let out = claude(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(out["max_tokens"], 4096);
        assert!(out.get("stop_sequences").is_none());
    }

    #[test]
    fn n_above_one_and_unknown_parts_are_rejected() {
        let e = to_claude_request(
            &chat(json!({"messages": [{"role": "user", "content": "hi"}], "n": 2})),
            "m",
            10,
        )
        .unwrap_err();
        assert_eq!(e.0, "n > 1 is not supported by Anthropic");
        let audio = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}));
        assert!(to_claude_request(&audio, "m", 10).is_err());
    }

    #[test]
    fn tools_and_tool_choice() {
        let base = json!({
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]},
                "strict": true
            }}, {"type": "function", "function": {"name": "now"}}]
        });
        let out = claude(base.clone());
        assert_eq!(
            out["tools"],
            json!([
                {"name": "get_weather", "description": "Current weather for a city",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
        assert!(out.get("tool_choice").is_none());

        let with = |choice: Value, parallel: Option<bool>| {
            let mut req = base.clone();
            req["tool_choice"] = choice;
            if let Some(p) = parallel {
                req["parallel_tool_calls"] = json!(p);
            }
            claude(req)["tool_choice"].clone()
        };
        assert_eq!(with(json!("auto"), None), json!({"type": "auto"}));
        assert_eq!(with(json!("required"), None), json!({"type": "any"}));
        assert_eq!(with(json!("none"), Some(false)), json!({"type": "none"}));
        assert_eq!(
            with(
                json!({"type": "function", "function": {"name": "get_weather"}}),
                Some(false)
            ),
            json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            with(Value::Null, Some(false)),
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert_eq!(with(json!("required"), Some(true)), json!({"type": "any"}));

        // tool_choice without tools is dropped.
        let out =
            claude(json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}));
        assert!(out.get("tool_choice").is_none());
    }

    #[test]
    fn tool_calls_and_results_merge_into_alternating_turns() {
        let out = claude(json!({
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
                    {"id": "call_3", "type": "function", "function": {"name": "now", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
                {"role": "tool", "tool_call_id": "call_3", "content": "12:00"},
                {"role": "user", "content": "And tomorrow?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_4", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"day\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_4", "content": "20C"}
            ]
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
                    {"type": "tool_use", "id": "call_3", "name": "now", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "24C"},
                    {"type": "tool_result", "tool_use_id": "call_3", "content": "12:00"},
                    {"type": "text", "text": "And tomorrow?"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_4", "name": "get_weather",
                     "input": {"city": "Paris", "day": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_4", "content": "20C"}
                ]}
            ])
        );
    }

    #[test]
    fn invalid_tool_arguments_are_an_error() {
        let req = chat(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\": "}}]}
        ]}));
        let e = to_claude_request(&req, "m", 10).unwrap_err();
        assert!(e.0.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn images_as_base64_and_url() {
        let out = claude(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare these."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/cat.jpg"}}
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Compare these."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                    "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/cat.jpg"}}
            ])
        );
        let bad = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}));
        assert!(to_claude_request(&bad, "m", 10).is_err());
        let not_b64 = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}]}]}));
        assert!(to_claude_request(&not_b64, "m", 10).is_err());
    }

    fn claude_response(v: Value) -> Value {
        let resp: anthropic::MessagesResponse = serde_json::from_value(v).unwrap();
        serde_json::to_value(from_claude_response(&resp)).unwrap()
    }

    #[test]
    fn response_text_with_cache_usage() {
        let out = claude_response(json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hello! "}, {"type": "text", "text": "How can I help?"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 2000, "output_tokens": 9, "service_tier": "standard"}
        }));
        assert_eq!(
            out,
            json!({
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "object": "chat.completion",
                "created": 0,
                "model": "claude-sonnet-4-5-20250929",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?"},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2112, "completion_tokens": 9, "total_tokens": 2121,
                    "prompt_tokens_details": {"cached_tokens": 2000}}
            })
        );
    }

    #[test]
    fn reasoning_effort_becomes_thinking() {
        let req = |v: Value| -> openai::ChatRequest { serde_json::from_value(v).unwrap() };
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let r = to_claude_request(
            &req(json!({"messages": msgs, "reasoning_effort": "medium", "temperature": 0.2})),
            "m",
            4096,
        )
        .unwrap();
        assert_eq!(
            r.extra["thinking"],
            json!({"type": "enabled", "budget_tokens": 4096})
        );
        assert_eq!(r.max_tokens, Some(8192));
        assert!(r.extra.get("temperature").is_none());
        let r = to_claude_request(
            &req(json!({"messages": msgs, "reasoning_effort": "high", "max_tokens": 2000})),
            "m",
            4096,
        )
        .unwrap();
        assert_eq!(r.extra["thinking"]["budget_tokens"], 1999);
        assert_eq!(r.max_tokens, Some(2000));
        let r = to_claude_request(
            &req(json!({"messages": msgs, "reasoning_effort": "low", "max_tokens": 500})),
            "m",
            4096,
        )
        .unwrap();
        assert!(r.extra.get("thinking").is_none());
        assert!(to_claude_request(
            &req(json!({"messages": msgs, "reasoning_effort": "max"})),
            "m",
            1
        )
        .is_err());
        // A tool loop goes on: the client cannot send back the signed thinking block Anthropic
        // wants on that assistant turn, so this request does not think (nor keeps the budget).
        let looping = json!([{"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function",
                "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"}]);
        let r = to_claude_request(
            &req(json!({"messages": looping, "reasoning_effort": "medium", "temperature": 0.2})),
            "m",
            4096,
        )
        .unwrap();
        assert!(r.extra.get("thinking").is_none());
        assert_eq!(
            (r.max_tokens, &r.extra["temperature"]),
            (Some(4096), &json!(0.2))
        );
    }

    #[test]
    fn response_tool_use_and_thinking() {
        let out = claude_response(json!({
            "id": "msg_01Aq9w938a90dw8q",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM"},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                 "input": {"location": "San Francisco, CA", "unit": "celsius"}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 384, "output_tokens": 96}
        }));
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"].get("content"),
            Some(&serde_json::Value::Null)
        );
        assert_eq!(
            choice["message"]["reasoning_content"],
            "The user wants weather."
        );
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 384, "completion_tokens": 96, "total_tokens": 480})
        );
    }

    #[test]
    fn finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
        ] {
            let out = claude_response(json!({"id": "m", "model": "c", "content": [],
                "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 1}}));
            assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        }
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let e = claude_error_to_openai(
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
        );
        assert_eq!(e.status, 429);
        assert_eq!(e.error_type, "rate_limit_exceeded");
        assert_eq!(e.code.as_deref(), Some("rate_limit_error"));
        assert!(e.message.starts_with("Number of request tokens"));

        for (kind, mapped) in [
            ("invalid_request_error", "invalid_request_error"),
            ("authentication_error", "authentication_error"),
            ("permission_error", "permission_error"),
            ("not_found_error", "not_found_error"),
            ("overloaded_error", "server_error"),
            ("api_error", "server_error"),
        ] {
            let body =
                json!({"type": "error", "error": {"type": kind, "message": "m"}}).to_string();
            assert_eq!(
                claude_error_to_openai(500, body.as_bytes()).error_type,
                mapped
            );
        }

        let long = "é".repeat(400); // 800 bytes; the 512-byte cut lands on a character boundary
        let e = claude_error_to_openai(502, long.as_bytes());
        assert_eq!(e.error_type, "server_error");
        assert_eq!(e.code, None);
        assert_eq!(e.message, "é".repeat(256));
        let odd = format!("x{long}"); // now the cut splits a character
        let e = claude_error_to_openai(502, odd.as_bytes());
        assert_eq!(e.message.len(), 511);
        assert_eq!(
            claude_error_to_openai(503, b"").message,
            "upstream returned HTTP 503"
        );
    }

    const TOOL_STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_read_input_tokens\":128,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\", let's check the weather for San Francisco, CA:\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San Francisco, CA\\\", \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"unit\\\": \\\"fahrenheit\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    /// Decodes `wire` fed in `piece`-byte chunks, translating each event as it completes.
    fn translate(wire: &str, piece: usize, include_usage: bool) -> String {
        let mut decoder = SseDecoder::default();
        let _ = include_usage;
        let mut stream = super::super::to_chat(
            ClaudeStream::default(),
            "",
            super::super::ReasoningMode::Passthrough,
        );
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

    fn datas(out: &str) -> Vec<String> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        decoder.feed(out.as_bytes(), &mut events).unwrap();
        decoder.finish(&mut events);
        assert!(events.iter().all(|e| e.event.is_none()));
        events.into_iter().map(|e| e.data).collect()
    }

    #[test]
    fn stream_text_and_tool_call() {
        let out = translate(TOOL_STREAM, usize::MAX, true);
        assert!(out.ends_with("data: [DONE]\n\n"));
        let datas = datas(&out);
        assert_eq!(datas.iter().filter(|d| *d == "[DONE]").count(), 1);
        assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = datas
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        for c in &chunks {
            assert_eq!(c["id"], "msg_014p7gG3wDgGV9EUtLvnow3U");
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "claude-sonnet-4-5-20250929");
        }
        assert_eq!(
            chunks[0]["choices"],
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Okay, let's check the weather for San Francisco, CA:");

        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls.len(), 4); // start + 3 non-empty argument pieces
        assert_eq!(
            calls[0],
            &json!([{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}])
        );
        let args: String = calls
            .iter()
            .map(|c| {
                assert_eq!(c[0]["index"], 0);
                c[0]["function"]["arguments"].as_str().unwrap()
            })
            .collect();
        let args: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        );

        let finishes: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, vec![&json!("tool_calls")]);

        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 600, "completion_tokens": 89, "total_tokens": 689,
                "prompt_tokens_details": {"cached_tokens": 128}})
        );
        assert_eq!(
            chunks.iter().filter(|c| c.get("usage").is_some()).count(),
            1
        );
    }

    #[test]
    fn stream_output_does_not_depend_on_batching() {
        let whole = translate(TOOL_STREAM, usize::MAX, true);
        for piece in [1, 2, 7, 64, 333] {
            assert_eq!(translate(TOOL_STREAM, piece, true), whole, "piece {piece}");
        }
    }

    #[test]
    fn stream_without_usage_and_without_event_lines() {
        let wire: String = TOOL_STREAM
            .lines()
            .filter(|l| !l.starts_with("event:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let out = translate(&wire, 5, false);
        assert_eq!(out, translate(TOOL_STREAM, 5, false));
        assert!(out.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn stream_thinking_and_second_tool_indices() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-opus-4-1", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Two cities."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "w", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "w", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"c\":1}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
        ];
        let mut s = super::super::to_chat(
            ClaudeStream::default(),
            "",
            super::super::ReasoningMode::Passthrough,
        );
        let mut out = String::new();
        for e in &events {
            s.on_event(&SseEvent::data(e.to_string()), &mut out);
        }
        // Upstream closed without message_stop: finish still ends the stream, once.
        s.finish(&mut out);
        s.finish(&mut out);
        let chunks: Vec<Value> = datas(&out)
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas[1], &json!({"reasoning_content": "Two cities."}));
        assert_eq!(deltas[2]["tool_calls"][0]["index"], 0);
        assert_eq!(deltas[3]["tool_calls"][0]["arguments"], Value::Null);
        assert_eq!(deltas[3]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(deltas[4]["tool_calls"][0]["index"], 1);
        assert_eq!(deltas[4]["tool_calls"][0]["id"], "toolu_b");
        assert_eq!(deltas[5]["tool_calls"][0]["index"], 1);
        assert_eq!(chunks[6]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[7]["usage"]["completion_tokens"], 30);
        assert_eq!(chunks.len(), 8);
        assert_eq!(out.matches("[DONE]").count(), 1);
    }

    #[test]
    fn stream_error_event() {
        let mut s = super::super::to_chat(
            ClaudeStream::default(),
            "",
            super::super::ReasoningMode::Passthrough,
        );
        let mut out = String::new();
        s.on_event(
            &SseEvent::typed(
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_e","type":"message","role":"assistant","model":"c","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}"#,
            ),
            &mut out,
        );
        out.clear();
        s.on_event(
            &SseEvent::typed(
                "error",
                r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
            ),
            &mut out,
        );
        s.on_event(&SseEvent::data(r#"{"type":"message_stop"}"#), &mut out);
        s.finish(&mut out);
        let d = datas(&out);
        assert_eq!(d.len(), 3);
        assert_eq!(
            serde_json::from_str::<Value>(&d[0]).unwrap(),
            json!({"error": {"message": "Overloaded", "type": "server_error", "code": null}})
        );
        // The usage so far follows the error: what was generated is still counted.
        let usage = serde_json::from_str::<Value>(&d[1]).unwrap();
        assert_eq!(usage["usage"]["prompt_tokens"], 5);
        assert_eq!(d[2], "[DONE]");
    }
}
