//! Anthropic Messages client (`/v1/messages`) in front of an OpenAI-compatible upstream: the
//! request goes out as a chat completion; the response, the stream and errors come back in
//! Anthropic's shapes.

use super::upstream_error;
use super::TranslateError;
use super::{err, str_of};
use sdk::error::ErrorReply;
use sdk::llm::{anthropic, openai, Extra};
use serde_json::{json, Map, Value};

/// Builds the OpenAI chat request for an Anthropic Messages request, sent to `model`.
///
/// With `keep_reasoning`, an assistant turn's thinking blocks
/// go on as its `reasoning_content` (for upstreams that take reasoning history: OpenRouter,
/// ZhipuAI); otherwise thinking blocks are dropped, as are Anthropic-only fields.
pub fn to_openai_request(
    req: &anthropic::MessagesRequest,
    model: &str,
    keep_reasoning: bool,
) -> Result<openai::ChatRequest, TranslateError> {
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        let text = system_text(system);
        if !text.is_empty() {
            messages.push(openai::ChatMessage::text("system", text));
        }
    }
    for msg in &req.messages {
        match msg.role.as_str() {
            "user" => user_messages(&msg.content, &mut messages)?,
            "assistant" => {
                if let Some(m) = assistant_message(&msg.content, keep_reasoning)? {
                    messages.push(m);
                }
            }
            other => return Err(err(format!("message role {other:?} is not supported"))),
        }
    }

    let x = &req.extra;
    let mut extra = Extra::new();
    if let Some(max) = req.max_tokens {
        extra.insert("max_tokens".into(), Value::from(max));
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = x.get(key).filter(|v| v.is_number()) {
            extra.insert(key.into(), v.clone());
        }
    }
    if let Some(stops) = x.get("stop_sequences").and_then(Value::as_array) {
        let stops: Vec<Value> = stops.iter().filter(|v| v.is_string()).cloned().collect();
        if !stops.is_empty() {
            extra.insert("stop".into(), Value::Array(stops));
        }
    }

    let tools = match x.get("tools") {
        Some(Value::Array(tools)) => tools.iter().map(openai_tool).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    if !tools.is_empty() {
        extra.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = x.get("tool_choice").filter(|c| !c.is_null()) {
            extra.insert("tool_choice".into(), openai_tool_choice(choice)?);
            if choice
                .get("disable_parallel_tool_use")
                .and_then(Value::as_bool)
                == Some(true)
            {
                extra.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
    }

    if let Some(user) = str_of(x.get("metadata"), "user_id") {
        extra.insert("user".into(), Value::String(user.to_string()));
    }

    Ok(openai::ChatRequest {
        model: Some(model.to_string()),
        messages,
        stream: req.stream,
        extra,
    })
}

/// The system prompt as one string: the string, or its text blocks joined with a blank line.
fn system_text(system: &anthropic::Content) -> String {
    match system {
        anthropic::Content::Text(s) => s.clone(),
        anthropic::Content::Blocks(blocks) => blocks
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// The text of a `tool_result` block's content: a string, or its text blocks joined.
fn tool_result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A user turn: its tool results as `tool` messages first, then the rest as one user message.
fn user_messages(
    content: &anthropic::Content,
    messages: &mut Vec<openai::ChatMessage>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        anthropic::Content::Text(s) => {
            messages.push(openai::ChatMessage::text("user", s.as_str()));
            return Ok(());
        }
        anthropic::Content::Blocks(blocks) => blocks,
    };
    let mut parts: Vec<openai::ContentPart> = Vec::new();
    for block in blocks {
        match block.kind.as_str() {
            "tool_result" => {
                let id = block
                    .extra
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("tool_result block without tool_use_id"))?;
                let mut m =
                    openai::ChatMessage::text("tool", tool_result_text(block.extra.get("content")));
                m.extra
                    .insert("tool_call_id".into(), Value::String(id.to_string()));
                messages.push(m);
            }
            "text" => parts.push(openai::ContentPart {
                kind: "text".into(),
                text: Some(block.text.clone().unwrap_or_default()),
                extra: Extra::new(),
            }),
            "image" => parts.push(image_part(block)?),
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(err(format!(
                    "content block type {other:?} is not supported by this upstream"
                )))
            }
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    messages.push(openai::ChatMessage {
        role: "user".into(),
        content: Some(openai::Content::from_parts(parts)),
        extra: Extra::new(),
    });
    Ok(())
}

fn image_part(block: &anthropic::Block) -> Result<openai::ContentPart, TranslateError> {
    let source = block.extra.get("source");
    let url = match str_of(source, "type") {
        Some("base64") => {
            let media_type = str_of(source, "media_type")
                .ok_or_else(|| err("base64 image without media_type"))?;
            let data = str_of(source, "data").ok_or_else(|| err("base64 image without data"))?;
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => str_of(source, "url")
            .ok_or_else(|| err("url image without url"))?
            .to_string(),
        _ => return Err(err("image source must be base64 or url")),
    };
    let mut extra = Extra::new();
    extra.insert("image_url".into(), json!({ "url": url }));
    Ok(openai::ContentPart {
        kind: "image_url".into(),
        text: None,
        extra,
    })
}

/// An assistant turn: text blocks concatenated into `content`, `tool_use` blocks as
/// `tool_calls`. `None` when nothing is left (e.g. only thinking).
fn assistant_message(
    content: &anthropic::Content,
    keep_reasoning: bool,
) -> Result<Option<openai::ChatMessage>, TranslateError> {
    let blocks = match content {
        anthropic::Content::Text(s) => {
            return Ok(Some(openai::ChatMessage::text("assistant", s.as_str())))
        }
        anthropic::Content::Blocks(blocks) => blocks,
    };
    let mut text: Option<String> = None;
    let mut thoughts: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.kind.as_str() {
            "text" => text
                .get_or_insert_with(String::new)
                .push_str(block.text.as_deref().unwrap_or_default()),
            "tool_use" => {
                let arguments = block
                    .extra
                    .get("input")
                    .map_or_else(|| "{}".to_string(), Value::to_string);
                calls.push(json!({
                    "id": block.extra.get("id").and_then(Value::as_str).unwrap_or_default(),
                    "type": "function",
                    "function": {
                        "name": block.extra.get("name").and_then(Value::as_str).unwrap_or_default(),
                        "arguments": arguments,
                    },
                }));
            }
            "thinking" if keep_reasoning => {
                thoughts.extend(
                    block
                        .extra
                        .get("thinking")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty()),
                );
            }
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(err(format!(
                    "assistant content block type {other:?} is not supported by this upstream"
                )))
            }
        }
    }
    if text.is_none() && calls.is_empty() && thoughts.is_empty() {
        return Ok(None);
    }
    let mut extra = Extra::new();
    let no_calls = calls.is_empty();
    if !no_calls {
        extra.insert("tool_calls".into(), Value::Array(calls));
    }
    if !thoughts.is_empty() {
        extra.insert(
            "reasoning_content".into(),
            Value::String(thoughts.join("\n\n")),
        );
        // A turn of thinking alone still needs a content.
        if text.is_none() && no_calls {
            text = Some(String::new());
        }
    }
    Ok(Some(openai::ChatMessage {
        role: "assistant".into(),
        content: text.map(openai::Content::Text),
        extra,
    }))
}

fn openai_tool(tool: &Value) -> Result<Value, TranslateError> {
    if let Some(kind) = tool.get("type").and_then(Value::as_str) {
        if kind != "custom" {
            return Err(err(format!(
                "tool type {kind:?} is not supported by this upstream"
            )));
        }
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| err("tool without a name"))?;
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name.to_string()));
    if let Some(d) = tool.get("description").and_then(Value::as_str) {
        function.insert("description".into(), Value::String(d.to_string()));
    }
    let schema = tool
        .get("input_schema")
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    function.insert("parameters".into(), schema);
    Ok(json!({"type": "function", "function": function}))
}

fn openai_tool_choice(choice: &Value) -> Result<Value, TranslateError> {
    Ok(match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| err("tool_choice of type tool without a name"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => return Err(err("tool_choice of this shape is not supported")),
    })
}

/// Turns an OpenAI-style error response into the error the Anthropic client gets (its
/// `error.type` follows the status; the message is OpenAI's `error.message`).
pub fn openai_error_to_anthropic(status: u32, body: &[u8]) -> ErrorReply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = match error {
        Some(Value::String(s)) => Some(s.as_str()),
        e => str_of(e, "message"),
    }
    .or_else(|| str_of(parsed.as_ref(), "message"));
    let code = match error.and_then(|e| e.get("code")) {
        Some(Value::Number(n)) => Some(n.to_string()),
        c => c.and_then(Value::as_str).map(str::to_string),
    };
    let kind = str_of(error, "type").filter(|_| message.is_some());
    upstream_error(status, body, kind, code.as_deref(), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::StreamTranslator;

    /// OpenAI `chat.completion.chunk` events in, Anthropic's event sequence out.
    fn messages_stream() -> crate::translate::Translate<sdk::llm::stream::ChatChunkReader> {
        crate::translate::Translate::new(
            sdk::llm::stream::ChatChunkReader::new(),
            Box::new(anthropic::StreamEncoder::new()),
        )
    }
    use sdk::sse::SseDecoder;
    use sdk::sse::SseEvent;

    fn openai_req(v: Value) -> Value {
        let req: anthropic::MessagesRequest = serde_json::from_value(v).unwrap();
        serde_json::to_value(to_openai_request(&req, "gpt-4o", false).unwrap()).unwrap()
    }

    #[test]
    fn thinking_history_kept_only_when_asked() {
        let req: anthropic::MessagesRequest = serde_json::from_value(json!({
            "max_tokens": 9, "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "only", "signature": "s"}]},
                {"role": "user", "content": "c"}]}))
        .unwrap();
        let kept = serde_json::to_value(to_openai_request(&req, "m", true).unwrap()).unwrap();
        assert_eq!(
            kept["messages"][1],
            json!({"role": "assistant", "content": "b", "reasoning_content": "hmm"})
        );
        assert_eq!(
            kept["messages"][2],
            json!({"role": "assistant", "content": "", "reasoning_content": "only"})
        );
        let dropped = serde_json::to_value(to_openai_request(&req, "m", false).unwrap()).unwrap();
        assert_eq!(
            dropped["messages"][1],
            json!({"role": "assistant", "content": "b"})
        );
        assert_eq!(dropped["messages"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn request_system_sampling_and_metadata() {
        let out = openai_req(json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [
                {"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be brief."}
            ],
            "messages": [{"role": "user", "content": "Hi"}],
            "stop_sequences": ["\n\nHuman:"],
            "temperature": 0.5,
            "top_p": 0.8,
            "top_k": 40,
            "stream": true,
            "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 2000}
        }));
        assert_eq!(
            out,
            json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "You are a weather bot.\n\nBe brief."},
                    {"role": "user", "content": "Hi"}
                ],
                "max_tokens": 1024,
                "stop": ["\n\nHuman:"],
                "temperature": 0.5,
                "top_p": 0.8,
                "stream": true,
                "user": "u-1"
            })
        );
        let plain = openai_req(
            json!({"max_tokens": 5, "system": "Be nice.", "stream": true,
                "messages": [{"role": "user", "content": "Hi"}]}),
        );
        assert_eq!(
            plain["messages"][0],
            json!({"role": "system", "content": "Be nice."})
        );
    }

    #[test]
    fn request_tools_history_and_images() {
        let out = openai_req(json!({
            "max_tokens": 2048,
            "tools": [
                {"name": "get_weather", "description": "Get the weather",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                 "cache_control": {"type": "ephemeral"}},
                {"name": "now", "input_schema": {"type": "object"}}
            ],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Need weather.", "signature": "sig"},
                    {"type": "text", "text": "A beach. Checking weather."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Nice"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "now", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny, 25C"},
                    {"type": "tool_result", "tool_use_id": "toolu_02",
                     "content": [{"type": "text", "text": "14:00"}, {"type": "text", "text": "CEST"}]},
                    {"type": "text", "text": "Thanks!"}
                ]}
            ]
        }));
        assert_eq!(
            out["tools"],
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "Get the weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
            ])
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(out["parallel_tool_calls"], false);
        assert!(out.get("stream_options").is_none());
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                ]},
                {"role": "assistant", "content": "A beach. Checking weather.", "tool_calls": [
                    {"id": "toolu_01", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Nice\"}"}},
                    {"id": "toolu_02", "type": "function", "function": {"name": "now", "arguments": "{}"}}
                ]},
                {"role": "tool", "content": "Sunny, 25C", "tool_call_id": "toolu_01"},
                {"role": "tool", "content": "14:00\nCEST", "tool_call_id": "toolu_02"},
                {"role": "user", "content": "Thanks!"}
            ])
        );

        for (choice, expected) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
        ] {
            let out = openai_req(
                json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
                    "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": choice}),
            );
            assert_eq!(out["tool_choice"], expected);
            assert!(out.get("parallel_tool_calls").is_none());
        }
    }

    #[test]
    fn request_rejects_what_openai_cannot_carry() {
        let reject = |v: Value| {
            let req: anthropic::MessagesRequest = serde_json::from_value(v).unwrap();
            to_openai_request(&req, "m", false).unwrap_err()
        };
        reject(
            json!({"max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]}]}),
        );
        reject(
            json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
        );
        reject(json!({"max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}));
    }

    fn messages_response(v: Value) -> Value {
        let mut enc = anthropic::AnswerEncoder::new("");
        let body = crate::translate::whole(&mut enc, |e, o| {
            sdk::llm::stream::read_chat_completion(&v, e, o);
            Ok(())
        });
        serde_json::from_str(&body.unwrap()).unwrap()
    }

    #[test]
    fn response_text_with_cached_usage() {
        let out = messages_response(json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": "Hello! How can I assist you today?", "refusal": null, "annotations": []},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 10, "total_tokens": 1210,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}},
            "system_fingerprint": "fp_fc9f1d7035"
        }));
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
                "type": "message",
                "role": "assistant",
                "model": "gpt-4o-2024-08-06",
                "content": [{"type": "text", "text": "Hello! How can I assist you today?"}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": 176, "output_tokens": 10, "cache_read_input_tokens": 1024}
            })
        );
    }

    #[test]
    fn response_tool_calls() {
        let out = messages_response(json!({
            "id": "chatcmpl-abc123",
            "object": "chat.completion",
            "created": 1699896916,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc123", "type": "function",
                 "function": {"name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}},
                {"id": "call_def456", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]}, "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}
        }));
        assert_eq!(
            out["content"],
            json!([
                {"type": "tool_use", "id": "call_abc123", "name": "get_current_weather",
                 "input": {"location": "Boston, MA"}},
                {"type": "tool_use", "id": "call_def456", "name": "now", "input": {}}
            ])
        );
        assert_eq!(out["stop_reason"], "tool_use");
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 82, "output_tokens": 17})
        );

        for (finish, stop) in [
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
            ("stop", "end_turn"),
        ] {
            let out = messages_response(json!({"id": "c", "model": "m", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]}));
            assert_eq!(out["stop_reason"], stop);
        }
    }

    #[test]
    fn errors_map_to_anthropic_shape() {
        let e = openai_error_to_anthropic(
            429,
            br#"{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}"#,
        );
        assert_eq!(e.status, 429);
        assert_eq!(e.message, "Rate limit reached for gpt-4o");
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        let body: Value =
            serde_json::from_str(&e.body(sdk::api::ClientProtocol::Anthropic)).unwrap();
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": "rate_limit_error",
                "message": "Rate limit reached for gpt-4o"}})
        );
        let e = openai_error_to_anthropic(502, b"<html>Bad Gateway</html>");
        assert_eq!(e.message, "<html>Bad Gateway</html>");
        assert_eq!(e.error_type, "server_error");
        let e = openai_error_to_anthropic(400, br#"{"error": "model not found"}"#);
        assert_eq!(e.message, "model not found");
    }

    fn chunk(delta: Value, finish: Option<&str>) -> String {
        let mut data = json!({"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion.chunk", "created": 1741570283, "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_eb9dce56a8",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        data["usage"] = Value::Null;
        format!("data: {data}\n\n")
    }

    fn openai_stream() -> String {
        let mut s = String::new();
        s += &chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        );
        s += &chunk(json!({"content": "Let me"}), None);
        s += &chunk(json!({"content": " check."}), None);
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        );
        for piece in ["{\"loc", "ation\":\"Par", "is, France\"}"] {
            s += &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                None,
            );
        }
        s += &chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}}]}),
            None,
        );
        s += &chunk(json!({}), Some("tool_calls"));
        s += "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":82,\"completion_tokens\":40,\"total_tokens\":122,\"prompt_tokens_details\":{\"cached_tokens\":64,\"audio_tokens\":0}}}\n\n";
        s += "data: [DONE]\n\n";
        s
    }

    fn translate(wire: &str, piece: usize) -> String {
        let mut decoder = SseDecoder::default();
        let mut stream = messages_stream();
        let mut out = String::new();
        let mut events = Vec::new();
        for bytes in wire.as_bytes().chunks(piece) {
            decoder.feed(bytes, &mut events).unwrap();
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

    /// (event type, data) pairs; checks `event:` agrees with the data's `type`.
    fn events(out: &str) -> Vec<(String, Value)> {
        let mut decoder = SseDecoder::default();
        let mut evs = Vec::new();
        decoder.feed(out.as_bytes(), &mut evs).unwrap();
        decoder.finish(&mut evs);
        evs.into_iter()
            .map(|e| {
                let data: Value = serde_json::from_str(&e.data).unwrap();
                let kind = e.event.unwrap();
                assert_eq!(data["type"], kind.as_str());
                // Every event is a valid Anthropic stream event.
                serde_json::from_value::<anthropic::StreamEvent>(data.clone()).unwrap();
                (kind, data)
            })
            .collect()
    }

    #[test]
    fn stream_text_then_tool_calls() {
        let evs = events(&translate(&openai_stream(), usize::MAX));
        let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(
            evs[0].1,
            json!({"type": "message_start", "message": {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
                "type": "message", "role": "assistant", "model": "gpt-4o-2024-08-06", "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})
        );
        assert_eq!(
            evs[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            evs[2].1["delta"],
            json!({"type": "text_delta", "text": "Let me"})
        );
        assert_eq!(evs[3].1["delta"]["text"], " check.");
        assert_eq!(
            evs[5].1,
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use",
                "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "input": {}}})
        );
        let args: String = evs[6..9]
            .iter()
            .map(|(_, d)| {
                assert_eq!(d["index"], 1);
                assert_eq!(d["delta"]["type"], "input_json_delta");
                d["delta"]["partial_json"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"location": "Paris, France"})
        );
        assert_eq!(evs[10].1["content_block"]["id"], "call_2");
        assert_eq!(evs[10].1["index"], 2);
        assert_eq!(
            evs[11].1,
            json!({"type": "content_block_delta", "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":\"CET\"}"}})
        );

        // Every block that starts stops, in order, with matching indices.
        let mut open: Option<u64> = None;
        let mut next = 0;
        for (kind, d) in &evs {
            match kind.as_str() {
                "content_block_start" => {
                    assert_eq!(open, None);
                    assert_eq!(d["index"], next);
                    open = d["index"].as_u64();
                    next += 1;
                }
                "content_block_delta" => assert_eq!(d["index"].as_u64(), open),
                "content_block_stop" => {
                    assert_eq!(d["index"].as_u64(), open);
                    open = None;
                }
                _ => assert_eq!(open, None),
            }
        }

        assert_eq!(
            evs[13].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 18, "output_tokens": 40, "cache_read_input_tokens": 64}})
        );
        assert_eq!(evs[14].1, json!({"type": "message_stop"}));
    }

    #[test]
    fn stream_output_does_not_depend_on_batching() {
        let wire = openai_stream();
        let whole = translate(&wire, usize::MAX);
        for piece in [1, 3, 10, 97] {
            assert_eq!(translate(&wire, piece), whole, "piece {piece}");
        }
        // One event at a time, straight into on_event.
        let mut s = messages_stream();
        let mut out = String::new();
        for block in wire.split("\n\n").filter(|b| !b.is_empty()) {
            let data = block.strip_prefix("data: ").unwrap();
            s.on_event(&SseEvent::data(data), &mut out);
        }
        s.finish(&mut out);
        assert_eq!(out, whole);
    }

    #[test]
    fn stream_reasoning_then_text_and_finish_without_done() {
        let mut s = messages_stream();
        let mut out = String::new();
        for c in [
            chunk(
                json!({"role": "assistant", "reasoning_content": "Think"}),
                None,
            ),
            chunk(json!({"reasoning_content": "ing."}), None),
            chunk(json!({"content": "Answer"}), None),
            chunk(json!({}), Some("length")),
        ] {
            let data = c.trim_end().strip_prefix("data: ").unwrap().to_string();
            s.on_event(&SseEvent::data(data), &mut out);
        }
        // No [DONE]: the upstream just closed.
        s.finish(&mut out);
        s.finish(&mut out);
        s.on_event(&SseEvent::data("[DONE]"), &mut out);
        let evs = events(&out);
        let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(evs[1].1["content_block"]["type"], "thinking");
        assert_eq!(
            evs[2].1["delta"],
            json!({"type": "thinking_delta", "thinking": "Think"})
        );
        assert_eq!(evs[5].1["content_block"]["type"], "text");
        assert_eq!(evs[5].1["index"], 1);
        assert_eq!(evs[8].1["delta"]["stop_reason"], "max_tokens");
        assert_eq!(
            evs[8].1["usage"],
            json!({"input_tokens": 0, "output_tokens": 0})
        );
    }

    #[test]
    fn stream_error_chunk() {
        let mut s = messages_stream();
        let mut out = String::new();
        s.on_event(
            &SseEvent::data(
                chunk(json!({"role": "assistant", "content": "Hi"}), None)
                    .trim_end()
                    .strip_prefix("data: ")
                    .unwrap(),
            ),
            &mut out,
        );
        out.clear();
        s.on_event(
            &SseEvent::data(r#"{"error": {"message": "The server had an error while processing your request.", "type": "server_error", "code": null}}"#),
            &mut out,
        );
        s.on_event(&SseEvent::data("[DONE]"), &mut out);
        s.finish(&mut out);
        let evs = events(&out);
        assert_eq!(evs.len(), 1);
        assert_eq!(
            evs[0].1,
            json!({"type": "error", "error": {"type": "api_error",
                "message": "The server had an error while processing your request."}})
        );
        assert!(out.starts_with("event: error\ndata: {"));
    }

    #[test]
    fn stream_parallel_calls_sharing_index_zero_are_split_by_id() {
        let mut s = messages_stream();
        let mut out = String::new();
        for delta in [
            json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}]}),
            json!({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g", "arguments": "{\"x\":"}}]}),
            json!({"tool_calls": [{"index": 0, "id": "b", "function": {"arguments": "1}"}}]}),
        ] {
            let data = chunk(delta, None);
            s.on_event(
                &SseEvent::data(data.trim_end().strip_prefix("data: ").unwrap()),
                &mut out,
            );
        }
        s.finish(&mut out);
        let evs = events(&out);
        let starts: Vec<&Value> = evs
            .iter()
            .filter(|(k, _)| k == "content_block_start")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[1]["index"], 1);
        assert_eq!(starts[1]["content_block"]["id"], "b");
        let last_delta = evs
            .iter()
            .rev()
            .find(|(k, _)| k == "content_block_delta")
            .unwrap();
        assert_eq!(last_delta.1["index"], 1);
        assert_eq!(evs.last().unwrap().0, "message_stop");
        assert!(out.contains("\"stop_reason\":\"tool_use\""));
    }
}
