//! OpenAI chat completions: request, response, stream chunk, usage.

use super::Extra;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Whether to stream the answer as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Everything else (temperature, tools, stream_options, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text or content parts; absent or null for assistant tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Everything else (name, tool_calls, tool_call_id, …).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: impl Into<String>, text: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: Some(Content::Text(text.into())),
            extra: Extra::new(),
        }
    }
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts (`text`, `image_url`, `input_audio`, …).
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content: the string, or the `text` parts joined with `\n`.
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Applies `f` to every piece of text (the string, or each part's `text`).
    pub fn map_text(&mut self, mut f: impl FnMut(&str) -> String) {
        match self {
            Content::Text(s) => *s = f(s),
            Content::Parts(parts) => {
                for text in parts.iter_mut().filter_map(|p| p.text.as_mut()) {
                    *text = f(text);
                }
            }
        }
    }
}

/// One content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// Part type, e.g. `text` or `image_url`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Everything else (image_url, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Token usage as OpenAI reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum of both.
    #[serde(default)]
    pub total_tokens: u64,
    /// prompt_tokens_details, completion_tokens_details, …
    #[serde(flatten)]
    pub extra: Extra,
}

/// Non-streaming chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Completion id.
    #[serde(default)]
    pub id: String,
    /// `chat.completion`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Model that answered.
    #[serde(default)]
    pub model: String,
    /// Answers.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Usage, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One answer of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position.
    #[serde(default)]
    pub index: u32,
    /// The assistant message.
    pub message: ChatMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Everything else (logprobs, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One streamed `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Completion id.
    #[serde(default)]
    pub id: String,
    /// `chat.completion.chunk`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Model.
    #[serde(default)]
    pub model: String,
    /// Deltas (empty in the usage chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Usage, in the last chunk when `stream_options.include_usage` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One streamed delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Position.
    #[serde(default)]
    pub index: u32,
    /// The delta: role, content, tool_calls, … (kept as JSON).
    #[serde(default)]
    pub delta: Value,
    /// Set on the last delta of a choice.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trip_keeps_unknown_fields() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief", "name": "sys"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.2,
            "x_vendor": {"deep": [1, 2]}
        });
        let req: ChatRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.messages.len(), 4);
        assert_eq!(
            req.messages[1]
                .content
                .as_ref()
                .map(Content::text)
                .as_deref(),
            Some("what is this?")
        );
        let mut back = serde_json::to_value(&req).unwrap();
        // `content: null` and an absent content mean the same thing to every provider.
        back["messages"][2]["content"] = Value::Null;
        assert_eq!(back, body);
    }

    #[test]
    fn response_and_chunk_keep_unknown_fields() {
        let resp = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null},
                "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 2}},
            "system_fingerprint": "fp"});
        let parsed: ChatResponse = serde_json::from_value(resp.clone()).unwrap();
        assert_eq!(parsed.usage.as_ref().map(|u| u.total_tokens), Some(4));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), resp);

        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "h"}, "finish_reason": null}],
            "service_tier": "default"});
        let parsed: ChatChunk = serde_json::from_value(chunk.clone()).unwrap();
        assert_eq!(parsed.choices[0].delta["content"], "h");
        assert_eq!(serde_json::to_value(&parsed).unwrap(), chunk);
    }

    #[test]
    fn map_text_edits_strings_and_text_parts() {
        let mut c = Content::Text("a b".into());
        c.map_text(|t| t.replace('a', "x"));
        assert_eq!(c.text(), "x b");
        let mut c: Content =
            serde_json::from_value(json!([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "a"}}]))
                .unwrap();
        c.map_text(|t| t.replace('a', "x"));
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "a"}}])
        );
    }
}
