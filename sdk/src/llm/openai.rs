//! OpenAI chat completions: request, response, stream chunk, usage.

use super::stream::ReasoningMode;
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
    /// Content of `parts`; text-only parts as one string (joined with `\n`), which every
    /// OpenAI-compatible server takes.
    pub fn from_parts(parts: Vec<ContentPart>) -> Content {
        match parts.iter().all(|p| p.kind == "text") {
            true => Content::Text(Content::Parts(parts).text()),
            false => Content::Parts(parts),
        }
    }

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
    /// The assistant message (`content` written as `null` when absent, as OpenAI answers).
    #[serde(serialize_with = "answer_message")]
    pub message: ChatMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Everything else (logprobs, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// An answer's message: OpenAI writes `"content": null` beside tool calls, and clients that
/// read the field expect it.
fn answer_message<S: serde::Serializer>(msg: &ChatMessage, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Answer<'a> {
        role: &'a str,
        content: &'a Option<Content>,
        #[serde(flatten)]
        extra: &'a Extra,
    }
    // Every field, so that a new one cannot be left out here.
    let ChatMessage {
        role,
        content,
        extra,
    } = msg;
    Answer {
        role,
        content,
        extra,
    }
    .serialize(s)
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

/// The OpenAI usage object for canonical counts (details only where non-zero).
pub fn usage_of(u: &crate::usage::Usage) -> Usage {
    let mut extra = Extra::new();
    if u.cached_input > 0 {
        extra.insert(
            "prompt_tokens_details".into(),
            serde_json::json!({ "cached_tokens": u.cached_input }),
        );
    }
    if u.reasoning > 0 {
        extra.insert(
            "completion_tokens_details".into(),
            serde_json::json!({ "reasoning_tokens": u.reasoning }),
        );
    }
    Usage {
        prompt_tokens: u.input,
        completion_tokens: u.output,
        total_tokens: u.total.max(u.input.saturating_add(u.output)),
        extra,
    }
}

/// Separator between a tool call id and a provider's signature carried inside it
/// (`<id>__thought__<signature>`, Gemini's `thoughtSignature`): the signature must come back
/// with the call, and clients keep the id.
pub const THOUGHT_SEPARATOR: &str = "__thought__";

/// The signature a tool call id carries after [`THOUGHT_SEPARATOR`], if any.
pub fn thought_signature(id: &str) -> Option<&str> {
    id.split_once(THOUGHT_SEPARATOR)
        .map(|(_, sig)| sig)
        .filter(|sig| !sig.is_empty())
}

/// Most choices a stream keeps state for (Gemini allows 8 candidates).
const MAX_CHOICES: usize = 16;

/// The per-choice state of a [`ChunkEncoder`].
#[derive(Debug, Default)]
struct ChoiceState {
    index: u32,
    /// A `<think>` opened in `Concat` mode and not yet closed.
    thinking: bool,
    tools: u32,
    open_tool: Option<u32>,
    finished: bool,
}

/// Writes canonical [`Event`](super::stream::Event)s as `chat.completion.chunk` server-sent
/// events: the role chunk of each choice, reasoning per [`ReasoningMode`], numbered tool calls
/// (a signature carried in the id also as `extra_content.google.thought_signature`, where
/// Google's OpenAI-compatible clients read it), refusals, the finish chunk, the usage chunk
/// (`choices: []`, when usage is known) and `[DONE]`.
#[derive(Debug)]
pub struct ChunkEncoder {
    id: String,
    model: String,
    created: u64,
    reasoning: ReasoningMode,
    choices: Vec<ChoiceState>,
    current: u32,
    usage: Option<crate::usage::Usage>,
    done: bool,
}

impl ChunkEncoder {
    /// An encoder for an answer from `model` created at `created` (Unix seconds).
    pub fn new(model: &str, created: u64, reasoning: ReasoningMode) -> Self {
        ChunkEncoder {
            id: String::new(),
            model: model.to_string(),
            created,
            reasoning,
            choices: Vec::new(),
            current: 0,
            usage: None,
            done: false,
        }
    }

    fn write(&self, out: &mut String, choices: Value, usage: Option<&Usage>) {
        let mut chunk = serde_json::json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let (Some(u), Some(obj)) = (usage, chunk.as_object_mut()) {
            obj.insert("usage".into(), serde_json::to_value(u).unwrap_or_default());
        }
        crate::sse::SseEvent::data(chunk.to_string()).encode_into(out);
    }

    fn delta(&self, index: u32, delta: Value, finish: Option<&str>, out: &mut String) {
        self.write(
            out,
            serde_json::json!([{"index": index, "delta": delta, "finish_reason": finish}]),
            None,
        );
    }

    /// The state of the current choice, created (role chunk sent) on first use.
    fn choice(&mut self, out: &mut String) -> Option<usize> {
        let index = self.current;
        if let Some(pos) = self.choices.iter().position(|c| c.index == index) {
            return Some(pos);
        }
        if self.choices.len() >= MAX_CHOICES {
            return None;
        }
        self.delta(
            index,
            serde_json::json!({"role": "assistant", "content": ""}),
            None,
            out,
        );
        self.choices.push(ChoiceState {
            index,
            ..ChoiceState::default()
        });
        Some(self.choices.len() - 1)
    }

    /// Closes an open `<think>` of the choice at `pos`.
    fn close_thinking(&mut self, pos: usize, out: &mut String) {
        let Some(c) = self.choices.get_mut(pos).filter(|c| c.thinking) else {
            return;
        };
        c.thinking = false;
        let index = c.index;
        self.delta(
            index,
            serde_json::json!({"content": "</think>\n"}),
            None,
            out,
        );
    }

    fn text(&mut self, text: &str, reasoning: bool, out: &mut String) {
        let Some(pos) = self.choice(out) else {
            return;
        };
        let mode = self.reasoning;
        let Some(c) = self.choices.get_mut(pos).filter(|c| !c.finished) else {
            return;
        };
        if text.is_empty() {
            return;
        }
        let index = c.index;
        let delta = match (reasoning, mode) {
            (true, ReasoningMode::Ignore) => return,
            (true, ReasoningMode::Passthrough) => serde_json::json!({ "reasoning_content": text }),
            (true, ReasoningMode::Concat) if c.thinking => serde_json::json!({ "content": text }),
            (true, ReasoningMode::Concat) => {
                c.thinking = true;
                serde_json::json!({ "content": format!("<think>{text}") })
            }
            (false, _) if c.thinking => {
                c.thinking = false;
                serde_json::json!({ "content": format!("</think>\n{text}") })
            }
            (false, _) => serde_json::json!({ "content": text }),
        };
        self.delta(index, delta, None, out);
    }
}

impl super::stream::Encoder for ChunkEncoder {
    fn event(&mut self, event: super::stream::Event<'_>, out: &mut String) {
        use super::stream::Event;
        use serde_json::json;
        if self.done {
            return;
        }
        match event {
            Event::Meta { id, model } => {
                super::stream::named(&mut self.id, id);
                super::stream::named(&mut self.model, model);
                self.choice(out);
            }
            Event::Choice(n) => self.current = n,
            // Chunks already written keep their time.
            Event::Created(t) if t > 0 && self.choices.is_empty() => self.created = t,
            Event::Created(_) | Event::Name(_) | Event::Logprobs(_) => {}
            Event::Text(t) => self.text(t, false, out),
            Event::Reasoning(r) => self.text(r, true, out),
            Event::ToolStart { id, name, args } => {
                let Some(pos) = self.choice(out) else {
                    return;
                };
                self.close_thinking(pos, out);
                let Some(c) = self.choices.get_mut(pos).filter(|c| !c.finished) else {
                    return;
                };
                let (index, tool) = (c.index, c.tools);
                c.tools = c.tools.saturating_add(1);
                c.open_tool = Some(tool);
                let mut call = json!({"index": tool, "id": id, "type": "function",
                    "function": {"name": name, "arguments": args}});
                if let (Some(sig), Some(obj)) = (thought_signature(id), call.as_object_mut()) {
                    obj.insert(
                        "extra_content".into(),
                        json!({"google": {"thought_signature": sig}}),
                    );
                }
                self.delta(index, json!({ "tool_calls": [call] }), None, out);
            }
            Event::Refusal(r) => {
                let Some(pos) = self.choice(out) else {
                    return;
                };
                self.close_thinking(pos, out);
                if let Some(c) = self
                    .choices
                    .get(pos)
                    .filter(|c| !c.finished && !r.is_empty())
                {
                    let index = c.index;
                    self.delta(index, json!({ "refusal": r }), None, out);
                }
            }
            Event::ToolArgs(args) => {
                let Some(pos) = self.choice(out) else {
                    return;
                };
                let Some(c) = self.choices.get(pos).filter(|c| !c.finished) else {
                    return;
                };
                if let (Some(tool), false) = (c.open_tool, args.is_empty()) {
                    let index = c.index;
                    self.delta(
                        index,
                        json!({"tool_calls": [{"index": tool, "function": {"arguments": args}}]}),
                        None,
                        out,
                    );
                }
            }
            Event::Finish(reason) => {
                let Some(pos) = self.choice(out) else {
                    return;
                };
                self.close_thinking(pos, out);
                let Some(c) = self.choices.get_mut(pos).filter(|c| !c.finished) else {
                    return;
                };
                c.finished = true;
                let index = c.index;
                self.delta(index, json!({}), Some(reason), out);
            }
            Event::ToolSwitch(n) => {
                if let Some(c) = self.choices.iter_mut().find(|c| c.index == self.current) {
                    if n < c.tools {
                        c.open_tool = Some(n);
                    }
                }
            }
            Event::Usage(u) => self.usage = Some(u),
            Event::Error {
                message,
                kind,
                code,
            } => {
                // The usage so far still follows: what was generated is counted.
                let error = json!({"error": {"message": message, "type": kind, "code": code}});
                crate::sse::SseEvent::data(error.to_string()).encode_into(out);
                self.choices.clear();
                self.end(out);
            }
        }
    }

    fn end(&mut self, out: &mut String) {
        if self.done {
            return;
        }
        for pos in 0..self.choices.len() {
            self.close_thinking(pos, out);
        }
        self.done = true;
        if let Some(u) = self.usage.as_ref().map(usage_of) {
            self.write(out, json_empty(), Some(&u));
        }
        crate::sse::SseEvent::data("[DONE]").encode_into(out);
    }
}

/// The `chat.completion` of a gathered answer: every choice, reasoning per [`ReasoningMode`],
/// tool calls as [`ChunkEncoder`] writes them, refusals, the finish reason and the usage.
#[derive(Debug)]
pub struct ChatAnswer {
    model: String,
    created: u64,
    reasoning: ReasoningMode,
}

/// Writes canonical events as one `chat.completion` body at the end.
pub type AnswerEncoder = super::stream::Whole<ChatAnswer>;

impl AnswerEncoder {
    /// An encoder for an answer from `model` created at `created` (Unix seconds).
    pub fn new(model: &str, created: u64, reasoning: ReasoningMode) -> Self {
        let model = model.to_string();
        Self::with(ChatAnswer {
            model,
            created,
            reasoning,
        })
    }

    /// The `chat.completion` for what was gathered.
    pub fn response(&self) -> ChatResponse {
        self.render.response(&self.gathered)
    }
}

impl super::stream::Render for ChatAnswer {
    fn render(&self, gathered: &super::stream::Gathered) -> String {
        serde_json::to_string(&self.response(gathered)).unwrap_or_default()
    }
}

impl ChatAnswer {
    fn response(&self, g: &super::stream::Gathered) -> ChatResponse {
        let mut choices: Vec<Choice> = g.choices.iter().map(|c| self.choice(c)).collect();
        if choices.is_empty() {
            choices.push(self.choice(&Default::default()));
        }
        ChatResponse {
            id: g.id.clone(),
            object: "chat.completion".into(),
            created: g.created.unwrap_or(self.created),
            model: g.model_or(&self.model),
            choices,
            usage: g.usage.as_ref().map(usage_of),
            extra: Extra::new(),
        }
    }

    fn choice(&self, c: &super::stream::GatheredChoice) -> Choice {
        use super::stream::Part;
        use serde_json::json;
        let mut text = c.joined(|p| match p {
            Part::Text(t) => Some(t),
            _ => None,
        });
        let reasoning = c.joined(|p| match p {
            Part::Reasoning(t) => Some(t),
            _ => None,
        });
        let refusal = c.joined(|p| match p {
            Part::Refusal(t) => Some(t),
            _ => None,
        });
        let mut extra = Extra::new();
        match self.reasoning {
            _ if reasoning.is_empty() => {}
            ReasoningMode::Passthrough => {
                extra.insert("reasoning_content".into(), reasoning.into());
            }
            ReasoningMode::Concat => text = format!("<think>{reasoning}</think>\n{text}"),
            ReasoningMode::Ignore => {}
        }
        let calls: Vec<Value> = c
            .calls()
            .map(|(id, name, args)| {
                let args = if args.is_empty() { "{}" } else { args };
                let mut call = json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": args}});
                if let (Some(sig), Some(obj)) = (thought_signature(id), call.as_object_mut()) {
                    obj.insert(
                        "extra_content".into(),
                        json!({"google": {"thought_signature": sig}}),
                    );
                }
                call
            })
            .collect();
        let content = Some(text).filter(|t| !t.is_empty()).map(Content::Text);
        if !calls.is_empty() {
            extra.insert("tool_calls".into(), Value::Array(calls));
        }
        if !refusal.is_empty() {
            extra.insert("refusal".into(), refusal.into());
        }
        if let Some(name) = &c.name {
            extra.insert("name".into(), name.as_str().into());
        }
        Choice {
            index: c.index,
            message: ChatMessage {
                role: "assistant".into(),
                content,
                extra,
            },
            finish_reason: Some(c.finish_reason().to_string()),
            extra: c
                .logprobs
                .iter()
                .map(|l| ("logprobs".to_string(), l.clone()))
                .collect(),
        }
    }
}

fn json_empty() -> Value {
    Value::Array(Vec::new())
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
    fn chunk_encoder_dates_chunks_with_the_providers_time() {
        use super::super::stream::{Encoder, Event};
        let created = |out: &str| -> Vec<Value> {
            out.split("\n\n")
                .filter_map(|e| e.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str::<Value>(d).unwrap()["created"].clone())
                .collect()
        };
        let mut enc = ChunkEncoder::new("m", 7, ReasoningMode::Passthrough);
        let mut out = String::new();
        enc.event(Event::Created(1_700_000_000), &mut out);
        enc.event(Event::Meta { id: "a", model: "" }, &mut out);
        enc.event(Event::Text("hi"), &mut out);
        // A time that comes after the first chunk changes nothing; zero is no time.
        enc.event(Event::Created(5), &mut out);
        enc.event(Event::Finish("stop"), &mut out);
        enc.end(&mut out);
        assert_eq!(created(&out), vec![json!(1_700_000_000); 3]);
        let mut enc = ChunkEncoder::new("m", 7, ReasoningMode::Passthrough);
        let mut out = String::new();
        enc.event(Event::Created(0), &mut out);
        enc.event(Event::Text("hi"), &mut out);
        enc.end(&mut out);
        assert_eq!(created(&out), vec![json!(7); 2]);
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

    /// The `data` of each chunk `enc` wrote for `events`, then its end.
    fn encode(events: &[super::super::stream::Event<'_>]) -> Vec<Value> {
        use super::super::stream::Encoder;
        let (mut enc, mut out) = (
            ChunkEncoder::new("m", 1, ReasoningMode::Passthrough),
            String::new(),
        );
        for e in events {
            enc.event(e.clone(), &mut out);
        }
        enc.end(&mut out);
        out.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn chunk_encoder_signed_tool_calls_and_refusals() {
        use super::super::stream::Event;
        let c = encode(&[
            Event::ToolStart {
                id: "call_0__thought__c2ln",
                name: "f",
                args: "{}",
            },
            Event::ToolStart {
                id: "plain",
                name: "g",
                args: "",
            },
            Event::Choice(1),
            Event::Refusal("I can't help with that."),
            Event::Refusal(""),
            Event::Finish("content_filter"),
        ]);
        let delta = |i: usize| &c[i]["choices"][0]["delta"];
        assert_eq!(
            delta(1)["tool_calls"],
            json!([{"index": 0, "id": "call_0__thought__c2ln", "type": "function",
                "function": {"name": "f", "arguments": "{}"},
                "extra_content": {"google": {"thought_signature": "c2ln"}}}])
        );
        assert_eq!(delta(2)["tool_calls"][0].get("extra_content"), None);
        assert_eq!(c[3]["choices"][0]["index"], 1);
        assert_eq!(delta(3)["role"], "assistant");
        assert_eq!(delta(4), &json!({"refusal": "I can't help with that."}));
        assert_eq!(c[5]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(c.len(), 6);
        assert_eq!(thought_signature("a__thought__"), None);
        assert_eq!(thought_signature("a"), None);
    }

    #[test]
    fn answer_encoder_writes_every_choice_whole() {
        use super::super::stream::{Encoder, Event};
        let run = |mode: ReasoningMode, events: &[Event<'_>]| {
            let (mut enc, mut out) = (AnswerEncoder::new("m", 9, mode), String::new());
            for e in events {
                enc.event(e.clone(), &mut out);
            }
            enc.end(&mut out);
            serde_json::from_str::<Value>(&out).unwrap_or(Value::Null)
        };
        let events = [
            Event::Meta {
                id: "c1",
                model: "",
            },
            Event::Reasoning("hm"),
            Event::Text("Hi"),
            Event::Text(" there"),
            Event::ToolStart {
                id: "a__thought__sig",
                name: "f",
                args: "{\"x\"",
            },
            Event::ToolStart {
                id: "b",
                name: "g",
                args: "",
            },
            Event::ToolSwitch(0),
            Event::ToolArgs(":1}"),
            Event::Choice(1),
            Event::Name("bot"),
            Event::Refusal("no"),
            Event::Finish("content_filter"),
            Event::Usage(crate::usage::Usage::of(3, 4)),
        ];
        let v = run(ReasoningMode::Passthrough, &events);
        assert_eq!(v["id"], "c1");
        assert_eq!(
            (v["model"].as_str(), v["created"].as_u64()),
            (Some("m"), Some(9))
        );
        let first = &v["choices"][0];
        assert_eq!(first["message"]["content"], "Hi there");
        assert_eq!(first["message"]["reasoning_content"], "hm");
        let calls = &first["message"]["tool_calls"];
        assert_eq!(calls[0]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(
            calls[0]["extra_content"]["google"]["thought_signature"],
            "sig"
        );
        assert_eq!(calls[1]["function"]["arguments"], "{}");
        assert_eq!(first["finish_reason"], "tool_calls");
        let second = &v["choices"][1];
        assert_eq!(second["index"], 1);
        assert_eq!(second["message"]["content"], Value::Null);
        assert_eq!(second["message"]["refusal"], "no");
        assert_eq!(second["message"]["name"], "bot");
        assert_eq!(second["finish_reason"], "content_filter");
        assert_eq!(v["usage"]["total_tokens"], 7);

        let concat = run(ReasoningMode::Concat, &events[..4]);
        assert_eq!(
            concat["choices"][0]["message"]["content"],
            "<think>hm</think>\nHi there"
        );
        let ignored = run(ReasoningMode::Ignore, &events[..4]);
        assert_eq!(ignored["choices"][0]["message"]["content"], "Hi there");
        assert!(ignored["choices"][0]["message"]
            .get("reasoning_content")
            .is_none());
        // Nothing came: one empty choice; an error writes nothing.
        let empty = run(ReasoningMode::Passthrough, &[]);
        assert_eq!(empty["choices"][0]["finish_reason"], "stop");
        assert!(empty.get("usage").is_none());
        assert_eq!(
            run(ReasoningMode::Passthrough, &[Event::error("boom")]),
            Value::Null
        );
    }
}
