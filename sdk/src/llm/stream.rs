//! The canonical answer stream: the typed events any provider's answer is read into, and the
//! [`Encoder`] each client protocol implements to write them (its start events, reasoning, tool
//! calls, usage and end). An OpenAI chat stream is read into events by [`ChatChunkReader`]; the
//! Anthropic Messages and Responses encoders live beside their wire types.

use crate::usage::Usage;
use serde_json::Value;

/// One step of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// The answer's id and model, as the provider named them (sent once, before anything else).
    Meta {
        /// The provider's answer id.
        id: &'a str,
        /// The model that answers.
        model: &'a str,
    },
    /// When the provider created the answer (Unix seconds), sent before [`Event::Meta`];
    /// protocols that date each chunk use it instead of the gateway's clock.
    Created(u64),
    /// Generated text.
    Text(&'a str),
    /// Reasoning ("thinking") text.
    Reasoning(&'a str),
    /// Why the model or provider declined to answer (OpenAI's `refusal`; protocols without one
    /// write it as text).
    Refusal(&'a str),
    /// A tool call starts; more of its arguments may follow as [`Event::ToolArgs`].
    ToolStart {
        /// The call id.
        id: &'a str,
        /// The function name.
        name: &'a str,
        /// The start of its JSON arguments (may be empty).
        args: &'a str,
    },
    /// A piece of the open tool call's JSON arguments.
    ToolArgs(&'a str),
    /// The following [`Event::ToolArgs`] belong to the `n`-th call (from 0) of the choice, not
    /// the latest; protocols whose calls cannot interleave drop them.
    ToolSwitch(u32),
    /// Why the answer ended, in OpenAI's vocabulary (`stop`, `length`, `tool_calls`,
    /// `content_filter`).
    Finish(&'a str),
    /// Token usage (cumulative; a later report replaces an earlier one).
    Usage(Usage),
    /// The stream failed; nothing follows.
    Error {
        /// What went wrong.
        message: &'a str,
        /// The OpenAI error type (`server_error`, `rate_limit_exceeded`, …).
        kind: &'a str,
        /// The OpenAI error code, if any.
        code: Option<&'a str>,
    },
    /// The choice's token log probabilities (OpenAI's `logprobs` object), for protocols that
    /// carry them whole.
    Logprobs(&'a Value),
    /// The name the choice's speaker goes by (OpenAI's message `name`: MiniMax's bot, DeepL's
    /// detected language); protocols without one drop it.
    Name(&'a str),
    /// The following events belong to choice `n` (OpenAI `n` > 1, Gemini candidates); events
    /// before any `Choice` belong to choice 0. Single-answer protocols keep choice 0 only.
    Choice(u32),
}

impl<'a> Event<'a> {
    /// The gateway could not read the provider's stream (`bad_upstream_stream`).
    pub fn error(message: &'a str) -> Event<'a> {
        Event::Error {
            message,
            kind: "server_error",
            code: Some("bad_upstream_stream"),
        }
    }
}

/// What happens to reasoning ("thinking") text in OpenAI chat answers (Higress
/// `reasoningContentMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningMode {
    /// Sent as `reasoning_content` beside `content` (DeepSeek style).
    #[default]
    Passthrough,
    /// Dropped.
    Ignore,
    /// Put in front of `content`, wrapped in `<think>…</think>\n`.
    Concat,
}

/// Keeps the events of choice 0, for protocols that carry one answer, and drops empty text.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstChoice {
    other: bool,
    calls: u32,
    /// Arguments go to an earlier call than the latest.
    earlier: bool,
}

impl FirstChoice {
    /// Whether `event` is for the encoder (a [`Event::Choice`] switch is consumed here).
    pub fn keep(&mut self, event: &Event<'_>) -> bool {
        match event {
            Event::Choice(n) => {
                self.other = *n != 0;
                false
            }
            Event::ToolSwitch(n) => {
                self.earlier = !self.other && n.saturating_add(1) != self.calls;
                false
            }
            Event::ToolArgs(t) => !self.other && !self.earlier && !t.is_empty(),
            Event::Text(t) | Event::Reasoning(t) | Event::Refusal(t) => {
                !self.other && !t.is_empty()
            }
            Event::ToolStart { .. } => {
                if !self.other {
                    self.calls = self.calls.saturating_add(1);
                    self.earlier = false;
                }
                !self.other
            }
            Event::Finish(_) | Event::Name(_) | Event::Logprobs(_) => !self.other,
            Event::Meta { .. } | Event::Created(_) | Event::Usage(_) | Event::Error { .. } => true,
        }
    }
}

/// Writes the events of one answer in a client's protocol.
pub trait Encoder {
    /// One event; wire text is appended to `out`.
    fn event(&mut self, event: Event<'_>, out: &mut String);
    /// The answer is over: the protocol's closing events, exactly once (nothing after an error).
    fn end(&mut self, out: &mut String);
}

/// A piece of a gathered answer, in the order it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Generated text.
    Text(String),
    /// Reasoning text.
    Reasoning(String),
    /// A refusal.
    Refusal(String),
    /// A tool call with its JSON arguments.
    Tool {
        /// The call id.
        id: String,
        /// The function name.
        name: String,
        /// The arguments as JSON text.
        args: String,
    },
}

/// One choice of a gathered answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatheredChoice {
    /// The choice's index.
    pub index: u32,
    /// Its pieces; consecutive text (or reasoning, or refusal) is one piece.
    pub parts: Vec<Part>,
    /// Why it ended, if it said.
    pub finish: Option<String>,
    /// The speaker's name, if given.
    pub name: Option<String>,
    /// The token log probabilities, if given.
    pub logprobs: Option<Value>,
    /// The tool call that arguments go to (position in `parts`).
    open_tool: Option<usize>,
}

impl GatheredChoice {
    /// The pieces of one kind joined (`pick` returns a piece's text when it is of that kind).
    pub fn joined(&self, pick: impl Fn(&Part) -> Option<&str>) -> String {
        self.parts.iter().filter_map(pick).collect()
    }

    /// The tool calls: (id, name, arguments).
    pub fn calls(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Tool { id, name, args } => Some((id.as_str(), name.as_str(), args.as_str())),
            _ => None,
        })
    }

    /// The finish reason, else `tool_calls` after a call and `stop` otherwise.
    pub fn finish_reason(&self) -> &str {
        match &self.finish {
            Some(f) => f,
            None if self.calls().next().is_some() => "tool_calls",
            None => "stop",
        }
    }

    fn add(&mut self, event: Event<'_>) {
        let (text, make): (&str, fn(String) -> Part) = match event {
            Event::Text(t) => (t, Part::Text),
            Event::Reasoning(t) => (t, Part::Reasoning),
            Event::Refusal(t) => (t, Part::Refusal),
            Event::ToolStart { id, name, args } => {
                self.open_tool = Some(self.parts.len());
                let (id, name, args) = (id.into(), name.into(), args.into());
                self.parts.push(Part::Tool { id, name, args });
                return;
            }
            Event::ToolArgs(a) => {
                if let Some(Part::Tool { args, .. }) =
                    self.open_tool.and_then(|at| self.parts.get_mut(at))
                {
                    args.push_str(a);
                }
                return;
            }
            Event::ToolSwitch(n) => {
                let at = self
                    .parts
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| matches!(p, Part::Tool { .. }))
                    .nth(n as usize);
                if let Some((at, _)) = at {
                    self.open_tool = Some(at);
                }
                return;
            }
            Event::Finish(f) => {
                self.finish.get_or_insert_with(|| f.to_string());
                return;
            }
            Event::Name(n) => {
                self.name = Some(n.to_string());
                return;
            }
            Event::Logprobs(v) => {
                self.logprobs = Some(v.clone());
                return;
            }
            _ => return,
        };
        if text.is_empty() {
            return;
        }
        match (self.parts.last_mut(), make(String::new())) {
            (Some(Part::Text(s)), Part::Text(_))
            | (Some(Part::Reasoning(s)), Part::Reasoning(_))
            | (Some(Part::Refusal(s)), Part::Refusal(_)) => s.push_str(text),
            _ => self.parts.push(make(text.to_string())),
        }
    }
}

/// The events of one answer gathered whole, for protocols that send the answer in one body
/// (every choice, in the order they first came).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    /// The provider's answer id (may be empty).
    pub id: String,
    /// The model that answered (may be empty).
    pub model: String,
    /// When the provider created the answer, if it said.
    pub created: Option<u64>,
    /// The choices.
    pub choices: Vec<GatheredChoice>,
    /// The last usage reported.
    pub usage: Option<Usage>,
    /// The error that ended the answer, if one did.
    pub error: Option<String>,
    current: u32,
}

impl Gathered {
    /// Adds one event.
    pub fn add(&mut self, event: Event<'_>) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Meta { id, model } => {
                named(&mut self.id, id);
                named(&mut self.model, model);
            }
            Event::Created(t) => self.created = Some(t).filter(|t| *t > 0),
            Event::Choice(n) => self.current = n,
            Event::Usage(u) => self.usage = Some(u),
            Event::Error { message, .. } => self.error = Some(message.to_string()),
            other => {
                let index = self.current;
                let at = match self.choices.iter().position(|c| c.index == index) {
                    Some(at) => at,
                    None if self.choices.len() >= MAX_GATHERED_CHOICES => return,
                    None => {
                        self.choices.push(GatheredChoice {
                            index,
                            ..GatheredChoice::default()
                        });
                        self.choices.len() - 1
                    }
                };
                if let Some(choice) = self.choices.get_mut(at) {
                    choice.add(other);
                }
            }
        }
    }

    /// The model the provider named, else `fallback`.
    pub fn model_or(&self, fallback: &str) -> String {
        match self.model.is_empty() {
            true => fallback.to_string(),
            false => self.model.clone(),
        }
    }

    /// The first choice (index 0 if there is one).
    pub fn first(&self) -> Option<&GatheredChoice> {
        self.choices
            .iter()
            .find(|c| c.index == 0)
            .or(self.choices.first())
    }
}

/// Sets `slot` to `value` when the provider named one (an empty id or model keeps the default).
pub fn named(slot: &mut String, value: &str) {
    if !value.is_empty() {
        *slot = value.to_string();
    }
}

/// What a whole-body protocol makes of a gathered answer.
pub trait Render {
    /// The answer's body.
    fn render(&self, gathered: &Gathered) -> String;
}

/// Writes one answer as one body at its end: the events are gathered, then rendered by `R`.
/// An error event leaves [`Gathered::error`] set and writes nothing.
#[derive(Debug)]
pub struct Whole<R> {
    /// What the events said.
    pub gathered: Gathered,
    /// The protocol's body.
    pub render: R,
    done: bool,
}

impl<R> Whole<R> {
    /// An encoder rendering with `render`.
    pub fn with(render: R) -> Self {
        Whole {
            gathered: Gathered::default(),
            render,
            done: false,
        }
    }
}

impl<R: Render> Encoder for Whole<R> {
    fn event(&mut self, event: Event<'_>, _out: &mut String) {
        if !self.done {
            self.gathered.add(event);
        }
    }

    fn end(&mut self, out: &mut String) {
        if !std::mem::replace(&mut self.done, true) && self.gathered.error.is_none() {
            out.push_str(&self.render.render(&self.gathered));
        }
    }
}

/// Most choices gathered (OpenAI's `n` and Gemini's candidates stay far below).
const MAX_GATHERED_CHOICES: usize = 16;

/// Reads OpenAI `chat.completion.chunk` events (first choice only) into [`Event`]s.
///
/// Parallel tool calls that share an index are told apart by their ids; a call without an id
/// gets `call_<n>`.
#[derive(Debug, Default)]
pub struct ChatChunkReader {
    met: bool,
    /// The call being streamed: its OpenAI index and id.
    call: Option<(u64, String)>,
    calls: u32,
}

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

impl ChatChunkReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        ChatChunkReader::default()
    }

    /// One SSE event's `data`: `[DONE]` ends the answer; text that is not JSON is skipped.
    pub fn on_data(&mut self, data: &str, enc: &mut dyn Encoder, out: &mut String) {
        let data = data.trim();
        if data == "[DONE]" {
            enc.end(out);
            return;
        }
        if let Ok(chunk) = serde_json::from_str::<Value>(data) {
            self.on_chunk(&chunk, enc, out);
        }
    }

    /// One parsed chunk.
    pub fn on_chunk(&mut self, chunk: &Value, enc: &mut dyn Encoder, out: &mut String) {
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = match error {
                Value::String(s) => s.as_str(),
                e => str_at(e, "message").unwrap_or("upstream stream error"),
            };
            let kind = error
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("server_error");
            let code = str_at(error, "code");
            enc.event(
                Event::Error {
                    message,
                    kind,
                    code,
                },
                out,
            );
            return;
        }
        if !self.met {
            let (id, model) = (str_at(chunk, "id"), str_at(chunk, "model"));
            if id.is_some() || model.is_some() {
                self.met = true;
                enc.event(
                    Event::Meta {
                        id: id.unwrap_or_default(),
                        model: model.unwrap_or_default(),
                    },
                    out,
                );
            }
        }
        // Only the first choice is read: the other protocols have no `n`.
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
        if let Some(delta) = choice.and_then(|c| c.get("delta")) {
            self.on_delta(delta, enc, out);
        }
        if let Some(reason) = choice.and_then(|c| str_at(c, "finish_reason")) {
            enc.event(Event::Finish(reason), out);
        }
        if let Some(usage) = chunk
            .get("usage")
            .filter(|u| u.is_object())
            .and_then(|_| crate::usage::from_json(chunk))
        {
            enc.event(Event::Usage(usage), out);
        }
    }

    fn on_delta(&mut self, delta: &Value, enc: &mut dyn Encoder, out: &mut String) {
        let reasoning = str_at(delta, "reasoning_content").or_else(|| str_at(delta, "reasoning"));
        if let Some(r) = reasoning.filter(|s| !s.is_empty()) {
            enc.event(Event::Reasoning(r), out);
        }
        if let Some(t) = str_at(delta, "content").filter(|s| !s.is_empty()) {
            enc.event(Event::Text(t), out);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.on_tool_call(call, enc, out);
        }
    }

    fn on_tool_call(&mut self, call: &Value, enc: &mut dyn Encoder, out: &mut String) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = str_at(call, "id").filter(|s| !s.is_empty());
        let function = call.get("function");
        let same = match &self.call {
            Some((i, open)) => *i == index && id.is_none_or(|id| id == open),
            None => false,
        };
        if !same {
            let id = tool_start(call, self.calls, enc, out);
            self.calls = self.calls.saturating_add(1);
            self.call = Some((index, id));
        } else if let Some(args) = function
            .and_then(|f| str_at(f, "arguments"))
            .filter(|a| !a.is_empty())
        {
            enc.event(Event::ToolArgs(args), out);
        }
    }
}

/// An OpenAI tool call's start (its id, or `call_<n>` when it has none); returns the id.
fn tool_start(call: &Value, n: u32, enc: &mut dyn Encoder, out: &mut String) -> String {
    let function = call.get("function");
    let id = match str_at(call, "id").filter(|s| !s.is_empty()) {
        Some(id) => id.to_string(),
        None => format!("call_{n}"),
    };
    let name = function.and_then(|f| str_at(f, "name")).unwrap_or_default();
    let args = function
        .and_then(|f| str_at(f, "arguments"))
        .unwrap_or_default();
    let start = Event::ToolStart {
        id: &id,
        name,
        args,
    };
    enc.event(start, out);
    id
}

/// Reads a whole OpenAI chat completion as the events of one answer, ended; choices after the
/// first follow as [`Event::Choice`]s.
pub fn read_chat_completion(body: &Value, enc: &mut dyn Encoder, out: &mut String) {
    enc.event(
        Event::Meta {
            id: str_at(body, "id").unwrap_or_default(),
            model: str_at(body, "model").unwrap_or_default(),
        },
        out,
    );
    let choices = body.get("choices").and_then(Value::as_array);
    for (position, choice) in choices.into_iter().flatten().enumerate() {
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        if position > 0 || index != 0 {
            enc.event(Event::Choice(u32::try_from(index).unwrap_or(u32::MAX)), out);
        }
        read_choice(choice, enc, out);
    }
    if let Some(usage) = body
        .get("usage")
        .filter(|u| u.is_object())
        .and_then(|_| crate::usage::from_json(body))
    {
        enc.event(Event::Usage(usage), out);
    }
    enc.end(out);
}

/// One choice of a whole chat completion.
fn read_choice(choice: &Value, enc: &mut dyn Encoder, out: &mut String) {
    if let Some(m) = choice.get("message") {
        let reasoning = str_at(m, "reasoning_content").or_else(|| str_at(m, "reasoning"));
        if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
            enc.event(Event::Reasoning(r), out);
        }
        let text = match m.get("content") {
            Some(content @ Value::Array(_)) => {
                serde_json::from_value::<super::openai::Content>(content.clone())
                    .map(|c| c.text())
                    .unwrap_or_default()
            }
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let text = match text.is_empty() {
            true => str_at(m, "refusal").unwrap_or_default(),
            false => &text,
        };
        if !text.is_empty() {
            enc.event(Event::Text(text), out);
        }
        for (i, call) in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            tool_start(call, u32::try_from(i).unwrap_or(u32::MAX), enc, out);
        }
    }
    if let Some(reason) = str_at(choice, "finish_reason") {
        enc.event(Event::Finish(reason), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Records events as text.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Encoder for Log {
        fn event(&mut self, event: Event<'_>, _out: &mut String) {
            self.0.push(match event {
                Event::Usage(u) => format!("usage {} {}", u.input, u.output),
                other => format!("{other:?}"),
            });
        }
        fn end(&mut self, _out: &mut String) {
            self.0.push("end".into());
        }
    }

    fn read(chunks: &[Value]) -> Vec<String> {
        let (mut r, mut log, mut out) = (ChatChunkReader::new(), Log::default(), String::new());
        for c in chunks {
            r.on_data(&c.to_string(), &mut log, &mut out);
        }
        r.on_data("[DONE]", &mut log, &mut out);
        log.0
    }

    #[test]
    fn a_whole_completion_is_one_answer() {
        let (mut log, mut out) = (Log::default(), String::new());
        let body = json!({"id": "c", "model": "m", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": null, "refusal": "no", "reasoning_content": "r",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}});
        read_chat_completion(&body, &mut log, &mut out);
        assert_eq!(
            log.0,
            [
                r#"Meta { id: "c", model: "m" }"#,
                r#"Reasoning("r")"#,
                r#"Text("no")"#,
                r#"ToolStart { id: "call_0", name: "f", args: "{}" }"#,
                r#"Finish("tool_calls")"#,
                "usage 1 2",
                "end"
            ]
        );
    }

    #[test]
    fn chunks_become_events() {
        let c = |delta: Value, finish: Value| json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        let log = read(&[
            c(
                json!({"role": "assistant", "reasoning_content": "hmm"}),
                Value::Null,
            ),
            c(json!({"content": "Hi"}), Value::Null),
            c(
                json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"x\""}}]}),
                Value::Null,
            ),
            c(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                Value::Null,
            ),
            // A second call on the same index, told apart by its id.
            c(
                json!({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g"}}]}),
                json!("tool_calls"),
            ),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        ]);
        assert_eq!(
            log,
            [
                r#"Meta { id: "c1", model: "m" }"#,
                r#"Reasoning("hmm")"#,
                r#"Text("Hi")"#,
                r#"ToolStart { id: "a", name: "f", args: "{\"x\"" }"#,
                r#"ToolArgs(":1}")"#,
                r#"ToolStart { id: "b", name: "g", args: "" }"#,
                r#"Finish("tool_calls")"#,
                "usage 3 4",
                "end"
            ]
        );
    }

    #[test]
    fn error_chunks_and_generated_ids() {
        let log = read(&[
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"name": "f"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 2, "id": "z", "function": {"name": "g"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 2, "function": {"arguments": "{}"}}]}}]}),
            json!({"error": {"message": "overloaded"}}),
        ]);
        assert_eq!(
            log,
            [
                r#"ToolStart { id: "call_0", name: "f", args: "" }"#,
                r#"ToolStart { id: "z", name: "g", args: "" }"#,
                r#"ToolArgs("{}")"#,
                r#"Error { message: "overloaded", kind: "server_error", code: None }"#,
                "end"
            ]
        );
    }
}
