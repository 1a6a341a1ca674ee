//! OpenAI Responses API clients (`POST /v1/responses`) in front of providers that do not serve
//! it: the request becomes a chat completion, which every provider translation takes; answers
//! come back through the canonical events into [`ResponsesEncoder`].

use super::{err, TranslateError};
use sdk::llm::openai::{ChatMessage, ChatRequest, Content, ContentPart};
use sdk::llm::Extra;
use serde_json::{json, Value};

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// One content part of a Responses message as a chat part.
fn part(p: &Value) -> Result<ContentPart, TranslateError> {
    let kind = str_at(p, "type").unwrap_or_default();
    let text = |t: &str| ContentPart {
        kind: "text".into(),
        text: Some(t.to_string()),
        extra: Extra::new(),
    };
    match kind {
        "input_text" | "output_text" | "text" => Ok(text(str_at(p, "text").unwrap_or_default())),
        "refusal" => Ok(text(str_at(p, "refusal").unwrap_or_default())),
        "input_image" => {
            let Some(url) = str_at(p, "image_url") else {
                return Err(err(
                    "input_image needs an image_url (file ids need the provider's file store)",
                ));
            };
            let mut image = json!({"url": url});
            if let Some(detail) = str_at(p, "detail") {
                image["detail"] = json!(detail);
            }
            let mut extra = Extra::new();
            extra.insert("image_url".into(), image);
            Ok(ContentPart {
                kind: "image_url".into(),
                text: None,
                extra,
            })
        }
        other => Err(err(format!(
            "input content type {other:?} is not supported for this provider"
        ))),
    }
}

fn content(c: Option<&Value>) -> Result<Option<Content>, TranslateError> {
    Ok(match c {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Content::Text(s.clone())),
        Some(Value::Array(parts)) => {
            let parts = parts.iter().map(part).collect::<Result<Vec<_>, _>>()?;
            Some(Content::from_parts(parts))
        }
        Some(_) => return Err(err("message content must be a string or a list of parts")),
    })
}

/// Appends a function call to the assistant turn at the end, or starts one.
fn push_call(messages: &mut Vec<ChatMessage>, call: Value) {
    let last_assistant = messages
        .last_mut()
        .filter(|m| m.role == "assistant")
        .and_then(|m| match m.extra.get_mut("tool_calls") {
            Some(Value::Array(calls)) => Some(calls),
            _ => None,
        });
    match last_assistant {
        Some(calls) => calls.push(call),
        None => {
            let mut extra = Extra::new();
            extra.insert("tool_calls".into(), Value::Array(vec![call]));
            messages.push(ChatMessage {
                role: "assistant".into(),
                content: None,
                extra,
            });
        }
    }
}

fn input_items(input: &Value, messages: &mut Vec<ChatMessage>) -> Result<(), TranslateError> {
    let items = match input {
        Value::String(s) => {
            messages.push(ChatMessage::text("user", s.clone()));
            return Ok(());
        }
        Value::Array(items) => items,
        _ => return Err(err("input must be a string or a list of items")),
    };
    for item in items {
        let kind = str_at(item, "type").unwrap_or("message");
        match kind {
            "message" => {
                let role = str_at(item, "role").unwrap_or("user");
                if !matches!(role, "user" | "assistant" | "system" | "developer") {
                    return Err(err(format!("message role {role:?} is not supported")));
                }
                messages.push(ChatMessage {
                    role: role.to_string(),
                    content: content(item.get("content"))?,
                    extra: Extra::new(),
                });
            }
            "function_call" => {
                let call_id = str_at(item, "call_id").unwrap_or_default();
                push_call(
                    messages,
                    json!({"id": call_id, "type": "function", "function": {
                        "name": str_at(item, "name").unwrap_or_default(),
                        "arguments": str_at(item, "arguments").unwrap_or("{}")}}),
                );
            }
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| str_at(p, "text"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let mut extra = Extra::new();
                extra.insert(
                    "tool_call_id".into(),
                    json!(str_at(item, "call_id").unwrap_or_default()),
                );
                messages.push(ChatMessage {
                    role: "tool".into(),
                    content: Some(Content::Text(output)),
                    extra,
                });
            }
            // Reasoning a provider gave earlier is its own; other providers cannot take it back.
            "reasoning" => {}
            "item_reference" => {
                return Err(err(
                    "item_reference needs the provider's stored conversation; send the items themselves",
                ))
            }
            other => {
                return Err(err(format!(
                    "input item type {other:?} is not supported for this provider"
                )))
            }
        }
    }
    Ok(())
}

fn tool(t: &Value) -> Result<Value, TranslateError> {
    match str_at(t, "type") {
        Some("function") => {
            let mut function = json!({"name": str_at(t, "name").unwrap_or_default()});
            for key in ["description", "parameters", "strict"] {
                if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
                    function[key] = v.clone();
                }
            }
            Ok(json!({"type": "function", "function": function}))
        }
        other => Err(err(format!(
            "tool type {:?} is not supported for this provider (function tools only)",
            other.unwrap_or_default()
        ))),
    }
}

/// The chat request for a Responses request, sent to `model`.
pub fn to_chat_request(req: &Value, model: &str) -> Result<ChatRequest, TranslateError> {
    for key in ["previous_response_id", "conversation"] {
        if req.get(key).is_some_and(|v| !v.is_null()) {
            return Err(err(format!(
                "`{key}` needs the provider's stored conversation, which this provider does not keep; send the whole conversation in `input`"
            )));
        }
    }
    if req.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(err(
            "`background` responses are not supported for this provider",
        ));
    }
    let mut messages = Vec::new();
    if let Some(instructions) = str_at(req, "instructions").filter(|s| !s.is_empty()) {
        messages.push(ChatMessage::text("system", instructions));
    }
    input_items(req.get("input").unwrap_or(&Value::Null), &mut messages)?;
    if messages.is_empty() {
        return Err(err("`input` is required"));
    }
    let mut extra = Extra::new();
    if let Some(max) = req.get("max_output_tokens").and_then(Value::as_u64) {
        extra.insert("max_tokens".into(), json!(max));
    }
    for key in ["temperature", "top_p", "parallel_tool_calls", "user"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            extra.insert(key.into(), v.clone());
        }
    }
    if let Some(effort) = req.pointer("/reasoning/effort").and_then(Value::as_str) {
        extra.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(format) = req.pointer("/text/format").filter(|f| f.is_object()) {
        match str_at(format, "type") {
            Some("json_schema") => {
                let mut schema = json!({"name": str_at(format, "name").unwrap_or("answer")});
                for key in ["schema", "strict", "description"] {
                    if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                        schema[key] = v.clone();
                    }
                }
                extra.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": schema}),
                );
            }
            Some("json_object") => {
                extra.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    let tools = match req.get("tools") {
        Some(Value::Array(tools)) => tools.iter().map(tool).collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    if !tools.is_empty() {
        extra.insert("tools".into(), Value::Array(tools));
        match req.get("tool_choice") {
            Some(Value::String(s)) => {
                extra.insert("tool_choice".into(), json!(s));
            }
            Some(c) if str_at(c, "type") == Some("function") => {
                extra.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "function": {"name": str_at(c, "name").unwrap_or_default()}}),
                );
            }
            _ => {}
        }
    }
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    Ok(ChatRequest {
        model: Some(model.to_string()),
        messages,
        stream: stream.then_some(true),
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_chat_completion(
        chat: &Value,
        stream: bool,
        created: u64,
        echo: serde_json::Map<String, Value>,
    ) -> String {
        let mut enc = sdk::llm::responses::ResponsesEncoder::new(stream, created).with_echo(echo);
        crate::translate::whole(&mut enc, |e, o| {
            sdk::llm::stream::read_chat_completion(chat, e, o);
            Ok(())
        })
        .unwrap()
    }

    fn chat(req: Value) -> Value {
        serde_json::to_value(to_chat_request(&req, "m").unwrap()).unwrap()
    }

    #[test]
    fn input_items_become_turns() {
        let out = chat(json!({
            "model": "x", "instructions": "Be brief.", "stream": true, "max_output_tokens": 50,
            "reasoning": {"effort": "low"}, "tool_choice": "auto",
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "input": [
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"location\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "and this?"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]}
            ]
        }));
        assert_eq!(
            out,
            json!({
                "model": "m", "stream": true,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                        {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "and this?"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]}
                ],
                "max_tokens": 50, "reasoning_effort": "low", "tool_choice": "auto",
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}}
            })
        );
    }

    #[test]
    fn what_a_chat_provider_cannot_take_is_refused() {
        for (req, says) in [
            (
                json!({"input": "hi", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"input": "hi", "tools": [{"type": "web_search"}]}),
                "web_search",
            ),
            (
                json!({"input": [{"type": "item_reference", "id": "x"}]}),
                "item_reference",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "input_file",
            ),
            (json!({"model": "m"}), "input"),
        ] {
            let e = to_chat_request(&req, "m").unwrap_err();
            assert!(e.0.contains(says), "{e:?}");
        }
    }

    #[test]
    fn a_chat_completion_as_a_response() {
        let chat = json!({"id": "chatcmpl-9", "model": "m", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
        let r: Value =
            serde_json::from_str(&from_chat_completion(&chat, false, 5, Default::default()))
                .unwrap();
        assert_eq!(r["id"], "resp_chatcmpl-9");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(r["usage"]["input_tokens"], 3);
        assert_eq!(r["usage"]["total_tokens"], 4);
        let sse = from_chat_completion(&chat, true, 5, Default::default());
        assert!(sse.starts_with("event: response.created\n"), "{sse}");
        assert!(sse.contains("event: response.completed\n"), "{sse}");
    }
}
