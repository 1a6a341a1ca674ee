//! Anthropic Messages API: request, response, stream events, usage.

use super::Extra;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/messages` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation (user and assistant turns).
    pub messages: Vec<Message>,
    /// System prompt: a string or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    /// Output token limit (required by Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Whether to stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Everything else (tools, thinking, metadata, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// A string or content blocks.
    pub content: Content,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Content: a string or a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed blocks (`text`, `image`, `tool_use`, `tool_result`, `thinking`, …).
    Blocks(Vec<Block>),
}

impl Content {
    /// The text of the content: the string, or the `text` blocks joined with `\n` (as
    /// [`super::openai::Content::text`]).
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Blocks(blocks) => blocks
                .iter()
                .filter_map(|b| b.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Applies `f` to every piece of text (the string, or each `text` block).
    pub fn map_text(&mut self, mut f: impl FnMut(&str) -> String) {
        match self {
            Content::Text(s) => *s = f(s),
            Content::Blocks(blocks) => {
                for text in blocks.iter_mut().filter_map(|b| b.text.as_mut()) {
                    *text = f(text);
                }
            }
        }
    }

    /// Turns the content into blocks (a string becomes one text block, unless empty).
    pub fn into_blocks(self) -> Vec<Block> {
        match self {
            Content::Text(s) if s.is_empty() => Vec::new(),
            Content::Text(s) => vec![Block::text(s)],
            Content::Blocks(b) => b,
        }
    }
}

/// One content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// Block type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Text of a `text` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Everything else (source, id, name, input, cache_control, …).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Block {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Block {
        Block {
            kind: "text".into(),
            text: Some(text.into()),
            extra: Extra::new(),
        }
    }
}

/// Token usage as Anthropic reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens not read from or written to the cache (absent in some `message_delta`s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Non-streaming response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    /// Message id.
    #[serde(default)]
    pub id: String,
    /// `message`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `assistant`.
    #[serde(default)]
    pub role: String,
    /// Model that answered.
    #[serde(default)]
    pub model: String,
    /// Answer blocks.
    #[serde(default)]
    pub content: Vec<Block>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, …
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The stop sequence hit, if any.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Usage.
    #[serde(default)]
    pub usage: Usage,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One streamed event (`data:` of an SSE event), by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// First event: the message shell with input usage.
    MessageStart {
        /// The message so far.
        message: MessagesResponse,
    },
    /// A content block opens.
    ContentBlockStart {
        /// Block index.
        index: u32,
        /// The block shell (tool_use carries id and name here).
        content_block: Block,
    },
    /// A piece of a block: `text_delta`, `input_json_delta`, `thinking_delta`, …
    ContentBlockDelta {
        /// Block index.
        index: u32,
        /// The delta, kept as JSON.
        delta: Value,
    },
    /// A content block closes.
    ContentBlockStop {
        /// Block index.
        index: u32,
    },
    /// Stop reason and output usage.
    MessageDelta {
        /// `stop_reason`, `stop_sequence`.
        delta: Value,
        /// Cumulative usage.
        #[serde(default)]
        usage: Option<Usage>,
    },
    /// Last event.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// An error in the stream.
    Error {
        /// `type` and `message`.
        error: Value,
    },
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`; a plain stop after tool calls is
/// `tool_use` (some OpenAI-compatible servers report it that way).
pub fn stop_reason(finish_reason: Option<&str>, saw_tool_call: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if saw_tool_call => "tool_use",
        _ => "end_turn",
    }
}

impl Usage {
    /// Anthropic usage for normalised counts: `input_tokens` excludes cache reads and writes,
    /// which are reported apart.
    pub fn from_counts(u: &crate::usage::Usage) -> Usage {
        let nonzero = |n: u64| (n > 0).then_some(n);
        Usage {
            input_tokens: Some(
                u.input
                    .saturating_sub(u.cached_input)
                    .saturating_sub(u.cache_creation_input),
            ),
            output_tokens: u.output,
            cache_creation_input_tokens: nonzero(u.cache_creation_input),
            cache_read_input_tokens: nonzero(u.cached_input),
            extra: Extra::new(),
        }
    }

    /// Normalised counts: the input includes cache reads and writes.
    pub fn counts(&self) -> crate::usage::Usage {
        let (read, write) = (
            self.cache_read_input_tokens.unwrap_or(0),
            self.cache_creation_input_tokens.unwrap_or(0),
        );
        let input = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(read)
            .saturating_add(write);
        crate::usage::Usage {
            input,
            output: self.output_tokens,
            total: input.saturating_add(self.output_tokens),
            cached_input: read,
            cache_creation_input: write,
            reasoning: 0,
            estimated: false,
        }
    }
}

/// The Messages response of a gathered answer (its first choice: thinking, text and `tool_use`
/// blocks in the order they came).
#[derive(Debug)]
pub struct MessagesAnswer {
    model: String,
}

/// Writes canonical events as one Messages response body at the end.
pub type AnswerEncoder = super::stream::Whole<MessagesAnswer>;

impl AnswerEncoder {
    /// An encoder for an answer from `model` (used when the provider names none).
    pub fn new(model: &str) -> Self {
        Self::with(MessagesAnswer {
            model: model.to_string(),
        })
    }
}

impl super::stream::Render for MessagesAnswer {
    fn render(&self, gathered: &super::stream::Gathered) -> String {
        serde_json::to_string(&self.response(gathered)).unwrap_or_default()
    }
}

impl MessagesAnswer {
    fn response(&self, g: &super::stream::Gathered) -> MessagesResponse {
        use super::stream::Part;
        use serde_json::json;
        let choice = g.first();
        let block = |kind: &str, fields: Value| Block {
            kind: kind.into(),
            text: None,
            extra: match fields {
                Value::Object(map) => map,
                _ => Extra::new(),
            },
        };
        let content = choice
            .iter()
            .flat_map(|c| &c.parts)
            .map(|p| match p {
                Part::Text(t) | Part::Refusal(t) => Block::text(t.clone()),
                Part::Reasoning(t) => block("thinking", json!({"thinking": t, "signature": ""})),
                Part::Tool { id, name, args } => {
                    let input = serde_json::from_str::<Value>(args)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    block("tool_use", json!({"id": id, "name": name, "input": input}))
                }
            })
            .collect::<Vec<_>>();
        let saw_tool_call = content.iter().any(|b| b.kind == "tool_use");
        let finish = choice.and_then(|c| c.finish.as_deref());
        MessagesResponse {
            id: g.id.clone(),
            kind: "message".into(),
            role: "assistant".into(),
            model: g.model_or(&self.model),
            content,
            stop_reason: Some(stop_reason(finish, saw_tool_call).to_string()),
            stop_sequence: None,
            usage: Usage::from_counts(&g.usage.clone().unwrap_or_default()),
            extra: Extra::new(),
        }
    }
}

/// The content block open in an Anthropic stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    Thinking,
    Tool,
}

/// Writes canonical [`Event`](super::stream::Event)s as Anthropic's event sequence
/// (`message_start`, content blocks, `message_delta`, `message_stop`). Keeps the id, model,
/// the open block, counters and the last usage.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    id: String,
    model: String,
    started: bool,
    done: bool,
    next_index: u32,
    open: Option<(u32, OpenBlock)>,
    saw_tool_call: bool,
    finish_reason: Option<String>,
    usage: Option<crate::usage::Usage>,
    choice: super::stream::FirstChoice,
}

fn send(out: &mut String, kind: &str, data: &Value) {
    crate::sse::SseEvent::typed(kind, data.to_string()).encode_into(out);
}

impl StreamEncoder {
    /// An encoder at the start of an answer.
    pub fn new() -> Self {
        StreamEncoder::default()
    }

    /// The model named when the provider names none.
    pub fn with_model(mut self, model: &str) -> Self {
        self.model = model.to_string();
        self
    }

    fn start(&mut self, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        let input = self.usage.as_ref().map_or(0, |u| {
            Usage::from_counts(u).input_tokens.unwrap_or_default()
        });
        send(
            out,
            "message_start",
            &serde_json::json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": 0}}}),
        );
    }

    /// Opens a block of `kind` unless it is the open one; returns its index.
    fn open(&mut self, kind: OpenBlock, block: Value, out: &mut String) -> u32 {
        if let Some((index, open)) = self.open {
            if open == kind && kind != OpenBlock::Tool {
                return index;
            }
        }
        self.close(out);
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        send(
            out,
            "content_block_start",
            &serde_json::json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.open = Some((index, kind));
        index
    }

    fn close(&mut self, out: &mut String) {
        if let Some((index, _)) = self.open.take() {
            send(
                out,
                "content_block_stop",
                &serde_json::json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn delta(out: &mut String, index: u32, delta: Value) {
        send(
            out,
            "content_block_delta",
            &serde_json::json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }
}

impl super::stream::Encoder for StreamEncoder {
    fn event(&mut self, event: super::stream::Event<'_>, out: &mut String) {
        use super::stream::Event;
        use serde_json::json;
        if self.done || !self.choice.keep(&event) {
            return;
        }
        match event {
            Event::Meta { id, model } => {
                super::stream::named(&mut self.id, id);
                super::stream::named(&mut self.model, model);
            }
            Event::Usage(u) => self.usage = Some(u),
            Event::Finish(reason) => self.finish_reason = Some(reason.to_string()),
            Event::Reasoning(r) => {
                self.start(out);
                let block = json!({"type": "thinking", "thinking": "", "signature": ""});
                let index = self.open(OpenBlock::Thinking, block, out);
                Self::delta(out, index, json!({"type": "thinking_delta", "thinking": r}));
            }
            Event::Text(t) | Event::Refusal(t) => {
                self.start(out);
                let index = self.open(OpenBlock::Text, json!({"type": "text", "text": ""}), out);
                Self::delta(out, index, json!({"type": "text_delta", "text": t}));
            }
            Event::ToolStart { id, name, args } => {
                self.start(out);
                let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                self.open(OpenBlock::Tool, block, out);
                self.saw_tool_call = true;
                if !args.is_empty() {
                    self.event(Event::ToolArgs(args), out);
                }
            }
            Event::ToolArgs(args) => {
                // Arguments of a call whose block was closed cannot be placed.
                if let Some((index, OpenBlock::Tool)) = self.open {
                    Self::delta(
                        out,
                        index,
                        json!({"type": "input_json_delta", "partial_json": args}),
                    );
                }
            }
            Event::Choice(_)
            | Event::ToolSwitch(_)
            | Event::Created(_)
            | Event::Name(_)
            | Event::Logprobs(_) => {}
            Event::Error { message, .. } => {
                send(
                    out,
                    "error",
                    &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
                );
                self.done = true;
            }
        }
    }

    fn end(&mut self, out: &mut String) {
        if self.done {
            return;
        }
        self.done = true;
        self.start(out);
        self.close(out);
        let usage = Usage::from_counts(&self.usage.clone().unwrap_or_default());
        send(
            out,
            "message_delta",
            &serde_json::json!({"type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason(self.finish_reason.as_deref(), self.saw_tool_call),
                    "stop_sequence": null,
                },
                "usage": usage}),
        );
        send(
            out,
            "message_stop",
            &serde_json::json!({"type": "message_stop"}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trip_keeps_unknown_fields() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "thinking": {"type": "enabled", "budget_tokens": 2000}
        });
        let req: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
        assert!(matches!(req.system, Some(Content::Blocks(_))));
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn stream_events_parse() {
        let events = [
            json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                "model": "c", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}}),
            json!({"type": "message_stop"}),
            json!({"type": "ping"}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ];
        for ev in events {
            let parsed: StreamEvent = serde_json::from_value(ev.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), ev);
        }
    }

    #[test]
    fn stream_encoder_writes_refusals_as_text() {
        use super::super::stream::{Encoder, Event};
        let (mut enc, mut out) = (StreamEncoder::new(), String::new());
        enc.event(Event::Refusal("The prompt was blocked."), &mut out);
        enc.event(Event::Finish("content_filter"), &mut out);
        enc.end(&mut out);
        let datas: Vec<Value> = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let kinds: Vec<&str> = datas.iter().map(|d| d["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            datas[2]["delta"],
            json!({"type": "text_delta", "text": "The prompt was blocked."})
        );
        assert_eq!(datas[4]["delta"]["stop_reason"], "refusal");
    }

    #[test]
    fn answer_encoder_writes_the_first_choice_as_blocks() {
        use crate::llm::stream::{Encoder, Event};
        let (mut enc, mut out) = (AnswerEncoder::new("claude"), String::new());
        for e in [
            Event::Meta {
                id: "msg_1",
                model: "",
            },
            Event::Reasoning("hm"),
            Event::Text("Hi"),
            Event::ToolStart {
                id: "t",
                name: "f",
                args: "{\"a\":",
            },
            Event::ToolArgs("1}"),
            Event::Choice(1),
            Event::Text("other"),
            Event::Usage(crate::usage::Usage::of(5, 2)),
        ] {
            enc.event(e, &mut out);
        }
        enc.end(&mut out);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["content"],
            json!([{"type": "thinking", "thinking": "hm", "signature": ""},
                {"type": "text", "text": "Hi"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}])
        );
        assert_eq!(
            (v["id"].as_str(), v["model"].as_str()),
            (Some("msg_1"), Some("claude"))
        );
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["usage"], json!({"input_tokens": 5, "output_tokens": 2}));
    }
}
