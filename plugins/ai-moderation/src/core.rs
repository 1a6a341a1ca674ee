//! Pure moderation logic: local deny rules, the text to check, moderation service bodies, stream
//! windows, well-formed endings for cut streams and deny answers. No host calls.

pub use sdk::guard::{
    deny_response, event_text, split_text, StreamEnding, Window, ANTHROPIC_DENY_ID,
    JSON_CONTENT_TYPE, OPENAI_DENY_ID, SSE_CONTENT_TYPE, WINDOW_OVERLAP_CHARS,
};
use sdk::llm::{anthropic, openai};
pub use sdk::matching::Rules;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Which part of a request is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckScope {
    /// The last user message that carries text.
    #[default]
    LastUserMessage,
    /// Every user message.
    AllUserMessages,
    /// Every message, system prompt and tool results included.
    Conversation,
}

// ---------------------------------------------------------------------------------------------
// Text to check
// ---------------------------------------------------------------------------------------------

fn join_texts(texts: impl Iterator<Item = String>) -> String {
    texts
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn openai_message_text(m: &openai::ChatMessage) -> String {
    m.content
        .as_ref()
        .map(openai::Content::text)
        .unwrap_or_default()
}

/// The text to check in an OpenAI chat request, by scope: message strings and `text` parts.
/// `lastUserMessage` skips user messages without text (e.g. only an image).
pub fn request_text_openai(req: &openai::ChatRequest, scope: CheckScope) -> String {
    let users = || req.messages.iter().filter(|m| m.role == "user");
    match scope {
        CheckScope::LastUserMessage => users()
            .rev()
            .map(openai_message_text)
            .find(|t| !t.trim().is_empty())
            .unwrap_or_default(),
        CheckScope::AllUserMessages => join_texts(users().map(openai_message_text)),
        CheckScope::Conversation => join_texts(req.messages.iter().map(openai_message_text)),
    }
}

/// The text of a Responses API message item's `content` (a string or `input_text` /
/// `output_text` parts).
fn responses_item_text(item: &Value) -> String {
    match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => join_texts(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(str::to_string),
        ),
        _ => String::new(),
    }
}

/// The text to check in a Responses API request, by scope: `input` (a string is one user
/// message) and, for the whole conversation, `instructions` and function call outputs.
pub fn request_text_responses(req: &Value, scope: CheckScope) -> String {
    let items: Vec<Value> = match req.get("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    let is_user = |i: &&Value| i.get("role").and_then(Value::as_str) == Some("user");
    match scope {
        CheckScope::LastUserMessage => items
            .iter()
            .filter(is_user)
            .rev()
            .map(responses_item_text)
            .find(|t| !t.trim().is_empty())
            .unwrap_or_default(),
        CheckScope::AllUserMessages => {
            join_texts(items.iter().filter(is_user).map(responses_item_text))
        }
        CheckScope::Conversation => {
            let instructions = req
                .get("instructions")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let turns = items.iter().map(|i| match i.get("output") {
                Some(Value::String(out)) => out.clone(),
                _ => responses_item_text(i),
            });
            join_texts(std::iter::once(instructions).chain(turns))
        }
    }
}

/// Text of a `tool_result` block's `content` (a string or text blocks).
fn tool_result_text(block: &anthropic::Block) -> String {
    match block.extra.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => join_texts(
            items
                .iter()
                .filter(|i| i.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .map(str::to_string),
        ),
        _ => String::new(),
    }
}

/// Text of Anthropic content: the string, or its `text` blocks (and `tool_result` contents
/// when `tool_results`), joined with `\n`.
fn anthropic_content_text(content: &anthropic::Content, tool_results: bool) -> String {
    match content {
        anthropic::Content::Text(s) => s.clone(),
        anthropic::Content::Blocks(blocks) => {
            join_texts(blocks.iter().map(|b| match (b.kind.as_str(), &b.text) {
                ("text", Some(t)) => t.clone(),
                ("tool_result", _) if tool_results => tool_result_text(b),
                _ => String::new(),
            }))
        }
    }
}

/// The text to check in an Anthropic messages request, by scope. User scopes read `text`
/// blocks only (`lastUserMessage` skips turns made only of tool results); `conversation` adds
/// `system`, assistant turns and `tool_result` contents.
pub fn request_text_anthropic(req: &anthropic::MessagesRequest, scope: CheckScope) -> String {
    let users = || req.messages.iter().filter(|m| m.role == "user");
    match scope {
        CheckScope::LastUserMessage => users()
            .rev()
            .map(|m| anthropic_content_text(&m.content, false))
            .find(|t| !t.trim().is_empty())
            .unwrap_or_default(),
        CheckScope::AllUserMessages => {
            join_texts(users().map(|m| anthropic_content_text(&m.content, false)))
        }
        CheckScope::Conversation => {
            let system = req.system.iter().map(|s| anthropic_content_text(s, false));
            let turns = req
                .messages
                .iter()
                .map(|m| anthropic_content_text(&m.content, true));
            join_texts(system.chain(turns))
        }
    }
}

/// The answer text of a non-streaming OpenAI response: each choice's content (string or text
/// parts) and `reasoning_content`.
pub fn response_text_openai(resp: &openai::ChatResponse) -> String {
    join_texts(resp.choices.iter().flat_map(|c| {
        let reasoning = c
            .message
            .extra
            .get("reasoning_content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        [reasoning, openai_message_text(&c.message)]
    }))
}

/// The answer text of a non-streaming Anthropic response: `text` and `thinking` blocks.
pub fn response_text_anthropic(resp: &anthropic::MessagesResponse) -> String {
    join_texts(resp.content.iter().map(|b| {
        match b.kind.as_str() {
            "text" => b.text.clone().unwrap_or_default(),
            "thinking" => b
                .extra
                .get("thinking")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// Moderation service (OpenAI moderation API)
// ---------------------------------------------------------------------------------------------
/// The JSON body for the OpenAI moderation API: `{"input": [pieces…], "model"?}`, the pieces
/// as [`split_text`] cuts them. Callers should not call the service for empty text.
pub fn moderation_request(text: &str, max_chars: usize, model: Option<&str>) -> String {
    let mut body = Map::new();
    body.insert("input".into(), json!(split_text(text, max_chars)));
    if let Some(model) = model {
        body.insert("model".into(), json!(model));
    }
    Value::Object(body).to_string()
}

/// What the moderation service said.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceVerdict {
    /// Nothing flagged.
    Allow,
    /// Flagged, with the flagged category names (first seen first, no repeats).
    Deny {
        /// Flagged categories; may be empty when the service flags without naming any.
        categories: Vec<String>,
    },
    /// The answer could not be understood (or was an error); the reason.
    Invalid(String),
}

/// Reads a moderation answer. Without thresholds each result's `flagged` decides and
/// `categories` set to true are listed; with thresholds only those categories count, flagged
/// when `category_scores[category] >= threshold` (a category the service does not score is not
/// flagged). Any flagged result denies.
pub fn parse_moderation(body: &[u8], thresholds: &BTreeMap<String, f64>) -> ServiceVerdict {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return ServiceVerdict::Invalid(format!("moderation answer is not JSON: {e}")),
    };
    if let Some(error) = value.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string);
        return ServiceVerdict::Invalid(format!("moderation service error: {message}"));
    }
    let Some(results) = value.get("results").and_then(Value::as_array) else {
        return ServiceVerdict::Invalid("moderation answer has no `results` array".into());
    };
    if results.is_empty() {
        return ServiceVerdict::Invalid("moderation answer has empty `results`".into());
    }
    let mut flagged = false;
    let mut categories: Vec<String> = Vec::new();
    let add = |name: &str, categories: &mut Vec<String>| {
        if !categories.iter().any(|c| c == name) {
            categories.push(name.to_string());
        }
    };
    for (i, result) in results.iter().enumerate() {
        if thresholds.is_empty() {
            let Some(this) = result.get("flagged").and_then(Value::as_bool) else {
                return ServiceVerdict::Invalid(format!(
                    "moderation answer lacks a boolean `results[{i}].flagged`"
                ));
            };
            if this {
                flagged = true;
                if let Some(cats) = result.get("categories").and_then(Value::as_object) {
                    for (name, _) in cats.iter().filter(|(_, v)| v.as_bool() == Some(true)) {
                        add(name, &mut categories);
                    }
                }
            }
        } else {
            let Some(scores) = result.get("category_scores").and_then(Value::as_object) else {
                return ServiceVerdict::Invalid(format!(
                    "moderation answer lacks an object `results[{i}].category_scores`"
                ));
            };
            for (name, threshold) in thresholds {
                let score = scores.get(name).and_then(Value::as_f64);
                if score.is_some_and(|s| s >= *threshold) {
                    flagged = true;
                    add(name, &mut categories);
                }
            }
        }
    }
    if flagged {
        ServiceVerdict::Deny { categories }
    } else {
        ServiceVerdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn openai_req() -> openai::ChatRequest {
        serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "system", "content": "sys prompt"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "tool", "tool_call_id": "t", "content": "tool output"},
            {"role": "user", "content": [
                {"type": "text", "text": "part one"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "part two"}]},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
        ]}))
        .unwrap()
    }

    #[test]
    fn openai_scopes() {
        let req = openai_req();
        assert_eq!(
            request_text_openai(&req, CheckScope::LastUserMessage),
            "part one\npart two"
        );
        assert_eq!(
            request_text_openai(&req, CheckScope::AllUserMessages),
            "first question\npart one\npart two"
        );
        assert_eq!(
            request_text_openai(&req, CheckScope::Conversation),
            "sys prompt\nfirst question\nfirst answer\ntool output\npart one\npart two"
        );
        let empty: openai::ChatRequest = serde_json::from_value(json!({"messages": []})).unwrap();
        assert_eq!(request_text_openai(&empty, CheckScope::LastUserMessage), "");
    }

    fn anthropic_req() -> anthropic::MessagesRequest {
        serde_json::from_value(json!({"model": "c", "max_tokens": 10,
            "system": [{"type": "text", "text": "sys block"}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "result string"},
                    {"type": "text", "text": "and now"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t2",
                     "content": [{"type": "text", "text": "block result"}]}]}
            ]}))
        .unwrap()
    }

    #[test]
    fn anthropic_scopes() {
        let req = anthropic_req();
        assert_eq!(
            request_text_anthropic(&req, CheckScope::LastUserMessage),
            "and now"
        );
        assert_eq!(
            request_text_anthropic(&req, CheckScope::AllUserMessages),
            "hello\nand now"
        );
        assert_eq!(
            request_text_anthropic(&req, CheckScope::Conversation),
            "sys block\nhello\ncalling\nresult string\nand now\nblock result"
        );
        let mut plain = req.clone();
        plain.system = Some(anthropic::Content::Text("sys string".into()));
        plain.messages.truncate(1);
        assert_eq!(
            request_text_anthropic(&plain, CheckScope::Conversation),
            "sys string\nhello"
        );
    }

    #[test]
    fn responses_request_texts() {
        let req = serde_json::json!({"instructions": "sys", "input": [
            {"role": "user", "content": "first"},
            {"type": "function_call_output", "call_id": "c", "output": "tool says"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "said"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "last"}]}]});
        assert_eq!(
            request_text_responses(&req, CheckScope::LastUserMessage),
            "last"
        );
        assert_eq!(
            request_text_responses(&req, CheckScope::AllUserMessages),
            "first\nlast"
        );
        assert_eq!(
            request_text_responses(&req, CheckScope::Conversation),
            "sys\nfirst\ntool says\nsaid\nlast"
        );
        let plain = serde_json::json!({"input": "hello"});
        assert_eq!(
            request_text_responses(&plain, CheckScope::LastUserMessage),
            "hello"
        );
    }

    #[test]
    fn response_texts() {
        let resp: openai::ChatResponse = serde_json::from_value(json!({"choices": [
            {"index": 0, "message": {"role": "assistant", "content": "answer", "reasoning_content": "why"}},
            {"index": 1, "message": {"role": "assistant", "content": null}}]}))
        .unwrap();
        assert_eq!(response_text_openai(&resp), "why\nanswer");
        let resp: anthropic::MessagesResponse = serde_json::from_value(json!({"content": [
            {"type": "thinking", "thinking": "think", "signature": "s"},
            {"type": "text", "text": "said"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}))
        .unwrap();
        assert_eq!(response_text_anthropic(&resp), "think\nsaid");
    }

    #[test]
    fn moderation_request_body() {
        let body: Value =
            serde_json::from_str(&moderation_request("hello world again", 8, None)).unwrap();
        assert_eq!(body, json!({"input": ["hello ", "world ", "again"]}));
        let body: Value = serde_json::from_str(&moderation_request(
            "short",
            8000,
            Some("omni-moderation-latest"),
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"input": ["short"], "model": "omni-moderation-latest"})
        );
    }

    fn answer(results: Value) -> Vec<u8> {
        json!({"id": "modr-1", "model": "omni-moderation-latest", "results": results})
            .to_string()
            .into_bytes()
    }

    fn result(flagged: bool, cats: &[(&str, bool, f64)]) -> Value {
        let categories: Map<String, Value> = cats
            .iter()
            .map(|(n, f, _)| (n.to_string(), json!(f)))
            .collect();
        let scores: Map<String, Value> = cats
            .iter()
            .map(|(n, _, s)| (n.to_string(), json!(s)))
            .collect();
        json!({"flagged": flagged, "categories": categories, "category_scores": scores})
    }

    #[test]
    fn parse_moderation_uses_flagged_without_thresholds() {
        let none = BTreeMap::new();
        let ok = answer(json!([result(false, &[("violence", false, 0.1)])]));
        assert_eq!(parse_moderation(&ok, &none), ServiceVerdict::Allow);
        let bad = answer(json!([
            result(false, &[("violence", false, 0.1)]),
            result(
                true,
                &[
                    ("violence", true, 0.9),
                    ("hate", false, 0.2),
                    ("self-harm", true, 0.7)
                ]
            ),
            result(true, &[("violence", true, 0.8)]),
        ]));
        assert_eq!(
            parse_moderation(&bad, &none),
            ServiceVerdict::Deny {
                categories: strings(&["violence", "self-harm"])
            }
        );
    }

    #[test]
    fn parse_moderation_with_thresholds() {
        let th: BTreeMap<String, f64> = [("violence".to_string(), 0.5), ("hate".to_string(), 0.3)]
            .into_iter()
            .collect();
        // The service's own `flagged` is ignored; only listed categories count.
        let body = answer(json!([result(
            true,
            &[("violence", true, 0.49), ("sexual", true, 0.99)]
        )]));
        assert_eq!(parse_moderation(&body, &th), ServiceVerdict::Allow);
        let body = answer(json!([
            result(false, &[("violence", false, 0.5)]),
            result(false, &[("hate", false, 0.31), ("violence", false, 0.0)])
        ]));
        assert_eq!(
            parse_moderation(&body, &th),
            ServiceVerdict::Deny {
                categories: strings(&["violence", "hate"])
            }
        );
        // A category the service does not score is not flagged.
        let body = answer(json!([result(false, &[("other", false, 1.0)])]));
        assert_eq!(parse_moderation(&body, &th), ServiceVerdict::Allow);
        let body = answer(json!([{"flagged": true}]));
        assert!(matches!(
            parse_moderation(&body, &th),
            ServiceVerdict::Invalid(_)
        ));
    }

    #[test]
    fn parse_moderation_rejects_junk() {
        let none = BTreeMap::new();
        let junk: [&[u8]; 7] = [
            b"",
            b"not json",
            b"[1,2]",
            br#"{"results": []}"#,
            br#"{"results": "x"}"#,
            br#"{"results": [{"categories": {}}]}"#,
            br#"{"results": [{"flagged": "yes"}]}"#,
        ];
        for body in junk {
            assert!(
                matches!(parse_moderation(body, &none), ServiceVerdict::Invalid(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let err =
            br#"{"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}"#;
        match parse_moderation(err, &none) {
            ServiceVerdict::Invalid(m) => assert!(m.contains("Incorrect API key")),
            other => panic!("{other:?}"),
        }
    }
}
