//! What content checks share: the answer text of stream events, stream windows checked as they
//! fill, well-formed endings for cut streams, and deny answers in the client's protocol.

use crate::api::ClientProtocol;
use crate::error::ErrorReply;
use crate::matching::{is_word_char, needs_boundary};
use crate::pipeline::{ChunkOut, Exchange};
use crate::sse::SseEvent;
use crate::usage::json::{pick, JsonRead};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Content type of JSON answers.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// Content type of streamed answers.
pub const SSE_CONTENT_TYPE: &str = "text/event-stream";
/// Id of OpenAI answers the gateway makes up.
pub const OPENAI_DENY_ID: &str = "chatcmpl-moderation";
/// Id of Anthropic answers the gateway makes up.
pub const ANTHROPIC_DENY_ID: &str = "msg_moderation";
/// Id of Responses API answers the gateway makes up.
pub const RESPONSES_DENY_ID: &str = "resp_moderation";
/// Chars of the previous window kept at the start of the next one.
pub const WINDOW_OVERLAP_CHARS: usize = 40;

/// The answer text one stream event's JSON carries: OpenAI chunk `choices[].delta.content` and
/// `reasoning_content`; Anthropic `content_block_delta` `text_delta.text` and
/// `thinking_delta.thinking`. Empty for anything else.
pub fn event_text<'a, J: JsonRead<'a>>(data: J) -> String {
    let mut out = String::new();
    let [choices, kind, delta] = pick(data, ["choices", "type", "delta"]);
    if let Some(choices) = choices.filter(|c| c.is_array()) {
        for delta in choices.items().filter_map(|c| c.get("delta")) {
            for s in pick(delta, ["reasoning_content", "content"])
                .into_iter()
                .filter_map(|v| v.and_then(J::as_str))
            {
                out.push_str(s);
            }
        }
    } else if matches!(
        kind.and_then(J::as_str),
        Some("response.output_text.delta" | "response.reasoning_text.delta")
    ) {
        if let Some(s) = delta.and_then(J::as_str) {
            out.push_str(s);
        }
    } else if kind.and_then(J::as_str) == Some("content_block_delta") {
        let key = match delta.and_then(|d| d.get("type")).and_then(J::as_str) {
            Some("text_delta") => "text",
            Some("thinking_delta") => "thinking",
            _ => return out,
        };
        if let Some(s) = delta.and_then(|d| d.get(key)).and_then(J::as_str) {
            out.push_str(s);
        }
    }
    out
}

/// Splits `text` into pieces of at most `max_chars` chars (at least 1), cut on char
/// boundaries, preferring to cut after whitespace in the second half of a piece. The pieces
/// concatenate back to `text`; empty text gives no pieces.
pub fn split_text(text: &str, max_chars: usize) -> Vec<&str> {
    let max = max_chars.max(1);
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len();
        let mut after_space = None;
        for (n, (i, c)) in rest.char_indices().enumerate() {
            if n == max {
                end = i;
                break;
            }
            if c.is_whitespace() && (n + 1) * 2 >= max {
                after_space = Some(i + c.len_utf8());
            }
        }
        if end < rest.len() {
            if let Some(cut) = after_space {
                end = cut;
            }
        }
        let (Some(piece), Some(tail)) = (rest.get(..end), rest.get(end..)) else {
            break;
        };
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

// ---------------------------------------------------------------------------------------------
// Stream windows
// ---------------------------------------------------------------------------------------------

/// Accumulates the answer text of a stream into windows.
#[derive(Debug, Clone, Default)]
pub struct Window {
    size: usize,
    text: String,
    /// Chars added since the last roll (the overlap does not count).
    fresh: usize,
}

impl Window {
    /// An empty window that is ready at `size` chars.
    pub fn new(size: usize) -> Self {
        Window {
            size,
            text: String::new(),
            fresh: 0,
        }
    }

    /// Adds the text carried by one stream event's JSON (see [`event_text`]). Returns true when
    /// the window is ready to check: the text added since the last roll reached `size` chars,
    /// or the text just added ends a sentence and at least `size / 4` chars were added since
    /// the last roll. An event without text returns false.
    pub fn push_event<'a, J: JsonRead<'a>>(&mut self, data: J) -> bool {
        let added = event_text(data);
        self.push_text(&added)
    }

    /// Like [`Window::push_event`] for plain text.
    pub fn push_text(&mut self, added: &str) -> bool {
        if added.is_empty() {
            return false;
        }
        self.text.push_str(added);
        self.fresh += added.chars().count();
        self.fresh >= self.size || (ends_sentence(added) && self.fresh >= self.size / 4)
    }

    /// The window's text so far, overlap included (not cleared).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Starts a new window, keeping the last ~40 chars of the old one as overlap so a word
    /// split across windows is still seen. The overlap starts at a word start when the cut
    /// would fall inside a word of a spaced script, so a word's tail is not checked alone.
    pub fn roll(&mut self) {
        let start = overlap_start(&self.text, WINDOW_OVERLAP_CHARS);
        self.text = self.text.get(start..).unwrap_or_default().to_string();
        self.fresh = 0;
    }

    /// Whether no text came since the last roll.
    pub fn is_empty(&self) -> bool {
        self.fresh == 0
    }
}

/// Whether `text` holds a sentence end: `.`, `!` or `?` followed by whitespace or the end of
/// `text`, or a full-width `。`, `！`, `？` anywhere (those scripts need no space after).
fn ends_sentence(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '。' | '！' | '？' => return true,
            '.' | '!' | '?' if chars.peek().is_none_or(|n| n.is_whitespace()) => return true,
            _ => {}
        }
    }
    false
}

/// Byte index where the overlap of the last `keep` chars of `text` starts.
fn overlap_start(text: &str, keep: usize) -> usize {
    let Some(start) = keep
        .checked_sub(1)
        .and_then(|n| text.char_indices().rev().nth(n))
        .map(|(i, _)| i)
    else {
        return if keep == 0 { text.len() } else { 0 };
    };
    let (Some(head), Some(tail)) = (text.get(..start), text.get(start..)) else {
        return start;
    };
    let inside_word = head.chars().next_back().is_some_and(needs_boundary)
        && tail.chars().next().is_some_and(needs_boundary);
    if inside_word {
        if let Some(offset) = tail.find(|c: char| !is_word_char(c)) {
            return start + offset;
        }
    }
    start
}

// ---------------------------------------------------------------------------------------------
// Cut streams
// ---------------------------------------------------------------------------------------------

/// Tracks what a cut stream needs to end well-formed and builds that ending. Events are seen
/// when they arrive and count as the client's only once released: a choice that finished in a
/// held window the cut drops still gets its `content_filter` ending.
#[derive(Debug, Clone, Default)]
pub struct StreamEnding {
    /// Everything seen, held events included.
    seen: Seen,
    /// What the client has been sent.
    released: Seen,
}

impl StreamEnding {
    /// Nothing observed yet.
    pub fn new(protocol: ClientProtocol) -> Self {
        let seen = Seen {
            protocol,
            ..Seen::default()
        };
        StreamEnding {
            released: seen.clone(),
            seen,
        }
    }

    /// Notes one event's JSON as it arrives.
    pub fn observe<'a, J: JsonRead<'a>>(&mut self, data: J) {
        self.seen.observe(data);
    }

    /// The events observed so far reached the client.
    pub fn release(&mut self) {
        self.released.clone_from(&self.seen);
    }

    /// SSE wire text that ends the stream after what the client was sent (see
    /// [`Seen::ending`]); ids and model come from every event seen.
    pub fn ending(&self) -> String {
        let mut basis = self.released.clone();
        if basis.id.is_none() {
            basis.id.clone_from(&self.seen.id);
        }
        if basis.model.is_none() {
            basis.model.clone_from(&self.seen.model);
        }
        if basis.created.is_none() {
            basis.created = self.seen.created;
        }
        basis.ending()
    }
}

/// What a stream's events showed.
#[derive(Debug, Clone, Default)]
struct Seen {
    protocol: ClientProtocol,
    /// OpenAI chunk id / Anthropic message id.
    id: Option<String>,
    model: Option<String>,
    /// OpenAI `created`.
    created: Option<u64>,
    /// OpenAI choice indices seen, and those that already finished.
    choices: BTreeSet<u64>,
    finished: BTreeSet<u64>,
    /// Anthropic: `message_start` seen.
    started: bool,
    /// Anthropic: last content block opened, and whether it was stopped.
    open_block: Option<u64>,
    block_stopped: bool,
    /// Anthropic: `message_delta` / `message_stop` seen.
    delta_seen: bool,
    stop_seen: bool,
    /// Responses: the last `sequence_number` seen.
    sequence: Option<u64>,
}

impl Seen {
    /// Notes one event's JSON.
    fn observe<'a, J: JsonRead<'a>>(&mut self, data: J) {
        match self.protocol {
            ClientProtocol::OpenAi => self.observe_openai(data),
            ClientProtocol::Anthropic => self.observe_anthropic(data),
            ClientProtocol::Responses => self.observe_responses(data),
        }
    }

    fn observe_responses<'a, J: JsonRead<'a>>(&mut self, data: J) {
        let [kind, sequence, response] = pick(data, ["type", "sequence_number", "response"]);
        if let Some(n) = sequence.and_then(J::as_u64) {
            self.sequence = Some(n);
        }
        match kind.and_then(J::as_str) {
            Some("response.created") => {
                self.started = true;
                let [id, model, created] =
                    response.map_or([None; 3], |r| pick(r, ["id", "model", "created_at"]));
                self.id = id.and_then(J::as_str).map(str::to_string);
                self.model = model.and_then(J::as_str).map(str::to_string);
                self.created = created.and_then(J::as_u64);
            }
            Some("response.completed" | "response.incomplete" | "response.failed" | "error") => {
                self.stop_seen = true
            }
            _ => {}
        }
    }

    fn observe_openai<'a, J: JsonRead<'a>>(&mut self, data: J) {
        let [id, model, created, choices] = pick(data, ["id", "model", "created", "choices"]);
        let text = |v: Option<J>| {
            v.and_then(J::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        if self.id.is_none() {
            self.id = text(id);
        }
        if self.model.is_none() {
            self.model = text(model);
        }
        if self.created.is_none() {
            self.created = created.and_then(J::as_u64);
        }
        for choice in choices.into_iter().flat_map(J::items) {
            let [index, finish_reason] = pick(choice, ["index", "finish_reason"]);
            let index = index.and_then(J::as_u64).unwrap_or(0);
            self.choices.insert(index);
            if finish_reason.is_some_and(J::is_string) {
                self.finished.insert(index);
            }
        }
    }

    fn observe_anthropic<'a, J: JsonRead<'a>>(&mut self, data: J) {
        let index = || data.get("index").and_then(J::as_u64).unwrap_or(0);
        match data.get("type").and_then(J::as_str) {
            Some("message_start") => {
                self.started = true;
                let message = data.get("message");
                let field = |key: &str| {
                    message
                        .and_then(|m| m.get(key))
                        .and_then(J::as_str)
                        .map(str::to_string)
                };
                self.id = field("id");
                self.model = field("model");
            }
            Some("content_block_start") => {
                self.open_block = Some(index());
                self.block_stopped = false;
            }
            Some("content_block_stop") if self.open_block == Some(index()) => {
                self.block_stopped = true;
            }
            Some("message_delta") => self.delta_seen = true,
            Some("message_stop") => self.stop_seen = true,
            _ => {}
        }
    }

    /// SSE wire text that ends the stream. OpenAI: a `content_filter` finish chunk for each
    /// choice not yet finished (index 0 when none was seen), same id/model/created as seen (or
    /// made up), then `data: [DONE]`. Anthropic: `message_start` if none was seen, then
    /// `content_block_stop` for an open block, `message_delta` with `stop_reason: "refusal"`
    /// and `usage.output_tokens` 0 (unless one was seen), and `message_stop`; empty when
    /// `message_stop` was already seen.
    fn ending(&self) -> String {
        let mut out = String::new();
        let model = self.model.as_deref().unwrap_or_default();
        match self.protocol {
            ClientProtocol::OpenAi => {
                let id = self.id.as_deref().unwrap_or(OPENAI_DENY_ID);
                let created = self.created.unwrap_or(0);
                let mut pending: Vec<u64> =
                    self.choices.difference(&self.finished).copied().collect();
                if self.choices.is_empty() {
                    pending.push(0);
                }
                for index in pending {
                    let chunk =
                        openai_chunk(id, created, model, index, json!({}), Some("content_filter"));
                    SseEvent::data(chunk.to_string()).encode_into(&mut out);
                }
                SseEvent::data("[DONE]").encode_into(&mut out);
            }
            ClientProtocol::Anthropic => {
                if self.stop_seen {
                    return out;
                }
                let mut events = Vec::new();
                if !self.started {
                    let id = self.id.as_deref().unwrap_or(ANTHROPIC_DENY_ID);
                    events.push(anthropic_message_start(id, model));
                }
                if let (Some(index), false) = (self.open_block, self.block_stopped) {
                    events.push(json!({"type": "content_block_stop", "index": index}));
                }
                if !self.delta_seen {
                    events.push(anthropic_refusal_delta());
                }
                events.push(json!({"type": "message_stop"}));
                encode_typed(&events, &mut out);
            }
            ClientProtocol::Responses => {
                if self.stop_seen {
                    return out;
                }
                let id = self.id.as_deref().unwrap_or(RESPONSES_DENY_ID);
                let response = |status: &str, incomplete: Value| {
                    json!({"id": id, "object": "response", "created_at": self.created.unwrap_or(0),
                        "status": status, "error": null, "incomplete_details": incomplete,
                        "model": model, "output": [], "usage": null})
                };
                let mut sequence = self.sequence.map_or(0, |n| n.saturating_add(1));
                let mut events = Vec::new();
                if !self.started {
                    events.push(json!({"type": "response.created",
                        "response": response("in_progress", Value::Null)}));
                }
                events.push(json!({"type": "response.incomplete",
                    "response": response("incomplete", json!({"reason": "content_filter"}))}));
                for mut event in events {
                    event["sequence_number"] = json!(sequence);
                    sequence = sequence.saturating_add(1);
                    encode_typed(&[event], &mut out);
                }
            }
        }
        out
    }
}

fn openai_chunk(
    id: &str,
    created: u64,
    model: &str,
    index: u64,
    delta: Value,
    finish_reason: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
    })
}

fn anthropic_message_start(id: &str, model: &str) -> Value {
    json!({"type": "message_start", "message": {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }})
}

fn anthropic_refusal_delta() -> Value {
    json!({"type": "message_delta",
        "delta": {"stop_reason": "refusal", "stop_sequence": null},
        "usage": {"output_tokens": 0}})
}

/// Encodes Anthropic events with `event:` lines named by their `type`.
fn encode_typed(events: &[Value], out: &mut String) {
    for event in events {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        SseEvent::typed(kind, event.to_string()).encode_into(out);
    }
}

// ---------------------------------------------------------------------------------------------
// Deny answers
// ---------------------------------------------------------------------------------------------

/// The deny answer in the client's protocol: `(content_type, body)`.
///
/// `deny_code` 200 answers like the model would: OpenAI a `chat.completion` (or, streaming, a
/// role chunk, a content chunk, a `content_filter` finish chunk and `[DONE]`) whose content is
/// `message` and finish reason `content_filter`; Anthropic a `message` with one text block and
/// `stop_reason: "refusal"` (or, streaming, the whole event sequence from `message_start` to
/// `message_stop`); Responses an `incomplete` response (reason `content_filter`) whose output
/// text is `message` (or its whole event stream). Any other code gives the [`ErrorReply`] JSON for the protocol (type
/// `invalid_request_error`, code `content_filter`), streaming or not.
pub fn deny_response(
    protocol: ClientProtocol,
    stream: bool,
    deny_code: u32,
    message: &str,
    model: &str,
) -> (String, String) {
    if deny_code != 200 {
        let reply = ErrorReply::new(
            deny_code,
            "invalid_request_error",
            Some("content_filter"),
            message,
        );
        return (JSON_CONTENT_TYPE.into(), reply.body(protocol));
    }
    use crate::llm::stream::{Encoder, ReasoningMode::Passthrough};
    use crate::llm::{anthropic, openai, responses};
    let (id, mut enc, usage): (&str, Box<dyn Encoder>, bool) = match (protocol, stream) {
        (ClientProtocol::Responses, stream) => (
            RESPONSES_DENY_ID,
            Box::new(responses::ResponsesEncoder::new(stream, 0)),
            true,
        ),
        (ClientProtocol::Anthropic, true) => (
            ANTHROPIC_DENY_ID,
            Box::new(anthropic::StreamEncoder::new()),
            true,
        ),
        (ClientProtocol::Anthropic, false) => (
            ANTHROPIC_DENY_ID,
            Box::new(anthropic::AnswerEncoder::new(model)),
            true,
        ),
        (ClientProtocol::OpenAi, true) => (
            OPENAI_DENY_ID,
            Box::new(openai::ChunkEncoder::new(model, 0, Passthrough)),
            false,
        ),
        (ClientProtocol::OpenAi, false) => (
            OPENAI_DENY_ID,
            Box::new(openai::AnswerEncoder::new(model, 0, Passthrough)),
            true,
        ),
    };
    let mut out = String::new();
    deny_events(enc.as_mut(), id, model, message, usage, &mut out);
    match stream {
        true => (SSE_CONTENT_TYPE.into(), out),
        false => (JSON_CONTENT_TYPE.into(), out),
    }
}

/// A refusal answer, as events: `message` as the text, finish reason `content_filter`, and
/// zero `usage` when asked.
fn deny_events(
    enc: &mut dyn crate::llm::stream::Encoder,
    id: &str,
    model: &str,
    message: &str,
    usage: bool,
    out: &mut String,
) {
    use crate::llm::stream::Event;
    enc.event(Event::Meta { id, model }, out);
    if usage {
        enc.event(Event::Usage(crate::usage::Usage::default()), out);
    }
    enc.event(Event::Text(message), out);
    enc.event(Event::Finish("content_filter"), out);
    enc.end(out);
}

/// A streamed answer checked window by window while Envoy holds it: complete events pass on,
/// an unfinished event's bytes wait in a tail (out of Envoy's buffer), each event's text fills
/// the [`Window`], and the answer is held until the owner says the window is clean
/// ([`HeldStream::release`]) or cuts it ([`HeldStream::cut`], a well-formed ending that says
/// why). The owner decides how a window is checked (local rules, a callout).
#[derive(Debug, Clone)]
pub struct HeldStream {
    tail: Vec<u8>,
    window: Window,
    ending: StreamEnding,
    /// Bytes Envoy holds for us since the last release.
    held: usize,
    holding: bool,
    blocked: bool,
}

/// What [`HeldStream::arrive`] made of a chunk.
#[derive(Debug)]
pub struct Arrived {
    /// The complete events to pass on.
    pub bytes: Vec<u8>,
    /// Whether they differ from the chunk given (a tail was joined or kept back).
    pub changed: bool,
    /// The window is ready to check (full, a sentence ended, or the stream ended).
    pub check: bool,
}

impl Arrived {
    /// The bytes as a stage's output, holding when `hold`.
    pub fn out(self, hold: bool) -> ChunkOut {
        let out = if self.changed {
            ChunkOut::edited(self.bytes)
        } else {
            ChunkOut::pass(self.bytes)
        };
        out.holding(hold)
    }
}

/// Puts `replacement` in place of the `held` bytes Envoy holds of the answer (a verdict that
/// arrived from a callout, after the body callback returned); `plugin` names the log line.
pub fn replace_held(host: &dyn crate::host::Host, plugin: &str, held: usize, replacement: &[u8]) {
    if let Err(e) = host.set_response_body(0, held, replacement) {
        host.log(
            crate::host::LogLevel::Error,
            &format!("[{plugin}] cannot replace the held answer: {e:?}"),
        );
    }
}

/// How a checking stage reads an answer (see [`checked_answer`]).
pub enum CheckedAnswer {
    /// A stream, checked window by window while Envoy holds each window.
    Stream(Box<HeldStream>),
    /// A whole (JSON) answer, checked once.
    Whole,
}

/// The answer a checking stage (moderation, content security) reads, decided from the response
/// headers: only successful answers are checked, streams window by window.
pub fn checked_answer(
    host: &dyn crate::host::Host,
    ex: &mut Exchange,
    protocol: ClientProtocol,
    stream_window: usize,
) -> Option<CheckedAnswer> {
    if !(200..300).contains(&ex.response_status(host)) {
        return None;
    }
    let content_type = ex.response_header(host, "content-type").unwrap_or_default();
    Some(if content_type.contains("text/event-stream") {
        CheckedAnswer::Stream(Box::new(HeldStream::new(protocol, stream_window)))
    } else {
        CheckedAnswer::Whole
    })
}

impl HeldStream {
    /// A stream in `protocol` checked in windows of `window` chars.
    pub fn new(protocol: ClientProtocol, window: usize) -> HeldStream {
        HeldStream {
            tail: Vec::new(),
            window: Window::new(window),
            ending: StreamEnding::new(protocol),
            held: 0,
            holding: false,
            blocked: false,
        }
    }

    /// Takes a chunk of the answer: complete events go on (and count as held), their text fills
    /// the window.
    pub fn arrive(&mut self, ex: &mut Exchange, chunk: Vec<u8>, end: bool) -> Arrived {
        let mut changed = !self.tail.is_empty();
        let mut data = if self.tail.is_empty() {
            chunk
        } else {
            let mut data = std::mem::take(&mut self.tail);
            data.extend_from_slice(&chunk);
            data
        };
        let cut = if end {
            data.len()
        } else {
            complete_events(&data)
        };
        if cut < data.len() {
            self.tail = data.split_off(cut);
            changed = true;
        }
        let mut ready = false;
        for ev in ex.response_events(&data).0 {
            if let Some(json) = ev.json() {
                self.ending.observe(json);
                ready |= self.window.push_event(json);
            }
        }
        self.held += data.len();
        Arrived {
            bytes: data,
            changed,
            check: ready || end,
        }
    }

    /// The window being filled.
    pub fn window(&mut self) -> &mut Window {
        &mut self.window
    }

    /// Envoy keeps holding what arrived.
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// Whether Envoy is holding the answer for us.
    pub fn is_holding(&self) -> bool {
        self.holding
    }

    /// Bytes Envoy holds since the last release (what a cut replaces).
    pub fn held(&self) -> usize {
        self.held
    }

    /// What was held is clean: it goes to the client.
    pub fn release(&mut self) {
        self.holding = false;
        self.held = 0;
        self.ending.release();
    }

    /// Cuts the answer: the ending to put in place of what is held; everything after is dropped.
    pub fn cut(&mut self) -> Vec<u8> {
        self.blocked = true;
        self.holding = false;
        self.held = 0;
        self.ending.ending().into_bytes()
    }

    /// Whether the answer was cut.
    pub fn is_cut(&self) -> bool {
        self.blocked
    }
}

/// End of the last complete SSE event in `data` (after its blank line).
pub fn complete_events(data: &[u8]) -> usize {
    let mut end = 0;
    let mut i = 0;
    // Both separators start with a line break: jump from one to the next.
    while let Some(at) = data
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n' || b == b'\r'))
        .map(|p| i + p)
    {
        if data.get(at..at + 2) == Some(b"\n\n") {
            end = at + 2;
            i = at + 2;
        } else if data.get(at..at + 4) == Some(b"\r\n\r\n") {
            end = at + 4;
            i = at + 4;
        } else {
            i = at + 1;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{anthropic, openai};
    use crate::matching::Rules;
    use crate::sse::SseDecoder;

    fn rules(words: &[&str], patterns: &[&str]) -> Rules {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Rules::new(&strings(words), &strings(patterns)).unwrap()
    }

    fn decode(wire: &str) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        d.feed(wire.as_bytes(), &mut out).unwrap();
        d.finish(&mut out);
        out
    }

    fn data(events: &[SseEvent]) -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    // ---- moderation service ----

    #[test]
    fn split_keeps_all_text_and_respects_max() {
        let texts = [
            "hello world, this is a test of the splitter",
            "nowhitespaceatallinthislongword",
            "ümlaut ✓ 中文文本没有空格但是很长 emoji 🎉🎉🎉 done",
            "a",
            "  leading and trailing  ",
        ];
        for text in texts {
            for max in 1..=12 {
                let pieces = split_text(text, max);
                assert_eq!(pieces.concat(), text, "max {max}");
                assert!(pieces.iter().all(|p| !p.is_empty()));
                assert!(
                    pieces.iter().all(|p| p.chars().count() <= max),
                    "{pieces:?} max {max}"
                );
            }
        }
        assert_eq!(
            split_text("hello world again", 8),
            vec!["hello ", "world ", "again"]
        );
        assert_eq!(split_text("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert!(split_text("", 5).is_empty());
        assert_eq!(split_text("abc", 0), vec!["a", "b", "c"]);
    }

    // ---- windows ----

    fn oa(text: &str) -> Value {
        json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
    }

    #[test]
    fn event_text_reads_both_protocols() {
        assert_eq!(event_text(&oa("hi")), "hi");
        assert_eq!(
            event_text(
                &json!({"choices": [{"delta": {"reasoning_content": "r"}}, {"delta": {"content": "c"}}]})
            ),
            "rc"
        );
        assert_eq!(
            event_text(&json!({"choices": [{"delta": {"role": "assistant"}}]})),
            ""
        );
        assert_eq!(
            event_text(
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "t"}})
            ),
            "t"
        );
        assert_eq!(
            event_text(
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "th"}})
            ),
            "th"
        );
        assert_eq!(
            event_text(
                &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}})
            ),
            ""
        );
        assert_eq!(event_text(&json!({"type": "message_stop"})), "");
    }

    #[test]
    fn window_ready_at_size() {
        let mut w = Window::new(10);
        assert!(w.is_empty());
        assert!(!w.push_event(&oa("abcd")));
        assert!(!w.push_event(&json!({"type": "ping"})));
        assert!(!w.push_event(&oa("efgh")));
        assert!(!w.is_empty());
        assert!(w.push_event(&oa("ij")));
        assert_eq!(w.text(), "abcdefghij");
        // Chars, not bytes.
        let mut w = Window::new(3);
        assert!(!w.push_event(&oa("äö")));
        assert!(w.push_event(&oa("ü")));
    }

    #[test]
    fn window_ready_at_sentence_end() {
        let mut w = Window::new(40);
        // Too short for a sentence end to count (needs 10 chars).
        assert!(!w.push_text("Hi."));
        assert!(!w.push_text(" This is"));
        assert!(w.push_text(" it. "));
        let mut w = Window::new(40);
        assert!(!w.push_text("version 3.14 of the"));
        assert!(w.push_text(" thing!"));
        let mut w = Window::new(40);
        assert!(!w.push_text("这是一个很长的句子"));
        assert!(w.push_text("。然后"));
        let mut w = Window::new(40);
        assert!(
            w.push_event(&json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Is this a question? Yes"}}))
        );
    }

    #[test]
    fn roll_keeps_an_overlap() {
        let mut w = Window::new(10);
        let long = "one two three four five six seven eight nine ten eleven twelve";
        assert!(w.push_text(long));
        w.roll();
        assert!(w.is_empty());
        // The overlap starts at a word start, within the last 40 chars.
        assert!(long.ends_with(w.text()));
        assert!(w.text().chars().count() <= WINDOW_OVERLAP_CHARS);
        assert_eq!(w.text(), " six seven eight nine ten eleven twelve");
        // A word split across windows is seen in the next one.
        let r = rules(&["twelvebomb"], &[]);
        assert!(r.find(w.text()).is_none());
        assert!(!w.push_text("bo"));
        assert!(w.push_text("mb and more text"));
        assert_eq!(r.find(w.text()).as_deref(), Some("twelvebomb"));
        // Short text is kept whole; an unspaced script is cut at 40 chars.
        let mut w = Window::new(1);
        w.push_text("short");
        w.roll();
        assert_eq!(w.text(), "short");
        let mut w = Window::new(1);
        let han = "字".repeat(100);
        w.push_text(&han);
        w.roll();
        assert_eq!(w.text().chars().count(), 40);
        // One long word is kept as is.
        let mut w = Window::new(1);
        w.push_text(&"x".repeat(100));
        w.roll();
        assert_eq!(w.text().len(), 40);
    }

    // ---- stream endings ----

    #[test]
    fn a_finish_in_a_window_that_was_cut_still_gets_its_ending() {
        // All events, the finishing one included, arrived in one held window that is cut.
        let mut e = StreamEnding::new(ClientProtocol::OpenAi);
        e.observe(&json!({"id": "c1", "created": 7, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "a pangram"}, "finish_reason": null}]}));
        e.observe(
            &json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        );
        let events = decode(&e.ending());
        assert_eq!(events.len(), 2, "{events:?}");
        let chunk: Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(chunk["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(chunk["id"], "c1");
        // Released events count: a finished choice needs no second ending.
        e.release();
        assert_eq!(decode(&e.ending()).len(), 1);

        // Anthropic: a held message_stop does not end the client's stream.
        let mut e = StreamEnding::new(ClientProtocol::Anthropic);
        e.observe(&json!({"type": "message_start", "message": {"id": "msg_1", "model": "m"}}));
        e.release();
        e.observe(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
        e.observe(&json!({"type": "message_stop"}));
        let types: Vec<String> = decode(&e.ending())
            .iter()
            .filter_map(|ev| serde_json::from_str::<Value>(&ev.data).ok())
            .map(|v| v["type"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(types, ["message_delta", "message_stop"]);
    }

    #[test]
    fn openai_ending_reuses_ids() {
        let mut e = StreamEnding::new(ClientProtocol::OpenAi);
        e.observe(&json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}));
        e.observe(&json!({"id": "chatcmpl-9", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": null}]}));
        e.release();
        let events = decode(&e.ending());
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data, "[DONE]");
        let chunk: openai::ChatChunk = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(
            (chunk.id.as_str(), chunk.model.as_str(), chunk.created),
            ("chatcmpl-9", "gpt-4o", 1700000000)
        );
        assert_eq!(chunk.object, "chat.completion.chunk");
        assert_eq!(chunk.choices.len(), 1);
        assert_eq!(
            chunk.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        assert_eq!(chunk.choices[0].delta, json!({}));
    }

    #[test]
    fn openai_ending_without_events_and_with_several_choices() {
        let e = StreamEnding::new(ClientProtocol::OpenAi);
        let events = decode(&e.ending());
        let chunks = data(&events);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0]["id"], OPENAI_DENY_ID);
        assert_eq!(chunks[0]["choices"][0]["index"], 0);
        assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));

        let mut e = StreamEnding::new(ClientProtocol::OpenAi);
        e.observe(&json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]}));
        e.observe(&json!({"id": "c", "choices": [{"index": 1, "delta": {"content": "b"}}]}));
        e.observe(
            &json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        );
        e.release();
        let chunks = data(&decode(&e.ending()));
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0]["choices"][0]["index"], 1);
    }

    fn anthropic_stream_start(e: &mut StreamEnding) {
        e.observe(
            &json!({"type": "message_start", "message": {"id": "msg_9", "type": "message",
            "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        );
    }

    #[test]
    fn anthropic_ending_closes_the_open_block() {
        let mut e = StreamEnding::new(ClientProtocol::Anthropic);
        anthropic_stream_start(&mut e);
        e.observe(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}));
        e.observe(&json!({"type": "content_block_stop", "index": 0}));
        e.observe(&json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}));
        e.observe(&json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}}));
        e.release();
        let events = decode(&e.ending());
        let kinds: Vec<_> = events
            .iter()
            .map(|e| e.event.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let parsed: Vec<anthropic::StreamEvent> = events
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert_eq!(
            parsed[0],
            anthropic::StreamEvent::ContentBlockStop { index: 1 }
        );
        match &parsed[1] {
            anthropic::StreamEvent::MessageDelta { delta, usage } => {
                assert_eq!(delta["stop_reason"], "refusal");
                assert_eq!(usage.as_ref().map(|u| u.output_tokens), Some(0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parsed[2], anthropic::StreamEvent::MessageStop);
    }

    #[test]
    fn anthropic_ending_in_other_states() {
        // Block already stopped: no second stop.
        let mut e = StreamEnding::new(ClientProtocol::Anthropic);
        anthropic_stream_start(&mut e);
        e.observe(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
        e.observe(&json!({"type": "content_block_stop", "index": 0}));
        e.release();
        let kinds: Vec<_> = decode(&e.ending())
            .into_iter()
            .filter_map(|e| e.event)
            .collect();
        assert_eq!(kinds, ["message_delta", "message_stop"]);
        // Nothing seen: a whole (empty) message.
        let e = StreamEnding::new(ClientProtocol::Anthropic);
        let events = decode(&e.ending());
        let kinds: Vec<_> = events.iter().filter_map(|e| e.event.clone()).collect();
        assert_eq!(kinds, ["message_start", "message_delta", "message_stop"]);
        let start: anthropic::StreamEvent = serde_json::from_str(&events[0].data).unwrap();
        assert!(
            matches!(start, anthropic::StreamEvent::MessageStart { message } if message.id == ANTHROPIC_DENY_ID)
        );
        // message_delta seen: only the stop; message_stop seen: nothing.
        let mut e = StreamEnding::new(ClientProtocol::Anthropic);
        anthropic_stream_start(&mut e);
        e.observe(&json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}));
        e.release();
        let kinds: Vec<_> = decode(&e.ending())
            .into_iter()
            .filter_map(|e| e.event)
            .collect();
        assert_eq!(kinds, ["message_stop"]);
        e.observe(&json!({"type": "message_stop"}));
        e.release();
        assert_eq!(e.ending(), "");
    }

    // ---- deny answers ----

    #[test]
    fn deny_and_cut_responses() {
        let (ct, body) = deny_response(ClientProtocol::Responses, false, 200, "No.", "gpt-5");
        assert_eq!(ct, JSON_CONTENT_TYPE);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "content_filter");
        assert_eq!(v["output"][0]["content"][0]["text"], "No.");
        let (ct, body) = deny_response(ClientProtocol::Responses, true, 200, "No.", "gpt-5");
        assert_eq!(ct, SSE_CONTENT_TYPE);
        let events = decode(&body);
        assert_eq!(events[0].event.as_deref(), Some("response.created"));
        assert_eq!(
            events.last().unwrap().event.as_deref(),
            Some("response.incomplete")
        );
        let (_, body) = deny_response(ClientProtocol::Responses, false, 403, "No.", "gpt-5");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
            "content_filter"
        );

        // A cut after two events: the same response id, the next sequence number, incomplete.
        let mut e = StreamEnding::new(ClientProtocol::Responses);
        e.observe(&json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_9", "model": "m", "created_at": 5}}));
        e.observe(
            &json!({"type": "response.output_text.delta", "sequence_number": 4, "delta": "x"}),
        );
        e.release();
        let end = decode(&e.ending());
        assert_eq!(end.len(), 1);
        let v: Value = serde_json::from_str(&end[0].data).unwrap();
        assert_eq!(v["type"], "response.incomplete");
        assert_eq!(v["sequence_number"], 5);
        assert_eq!(v["response"]["id"], "resp_9");
        assert_eq!(
            v["response"]["incomplete_details"]["reason"],
            "content_filter"
        );
        // Nothing seen: the stream starts and ends.
        let end = decode(&StreamEnding::new(ClientProtocol::Responses).ending());
        assert_eq!(end.len(), 2);
        e.observe(&json!({"type": "response.completed", "sequence_number": 6}));
        e.release();
        assert_eq!(e.ending(), "");
        assert_eq!(
            event_text(&json!({"type": "response.output_text.delta", "delta": "hi"})),
            "hi"
        );
    }

    #[test]
    fn deny_openai_json() {
        let (ct, body) = deny_response(ClientProtocol::OpenAi, false, 200, "No.", "gpt-4o");
        assert_eq!(ct, JSON_CONTENT_TYPE);
        let resp: openai::ChatResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(resp.object, "chat.completion");
        assert_eq!(resp.model, "gpt-4o");
        assert_eq!(resp.choices.len(), 1);
        assert_eq!(resp.choices[0].message.role, "assistant");
        assert_eq!(
            resp.choices[0]
                .message
                .content
                .as_ref()
                .map(openai::Content::text)
                .as_deref(),
            Some("No.")
        );
        assert_eq!(
            resp.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
    }

    #[test]
    fn deny_openai_stream() {
        let (ct, body) = deny_response(ClientProtocol::OpenAi, true, 200, "No.", "gpt-4o");
        assert_eq!(ct, SSE_CONTENT_TYPE);
        let events = decode(&body);
        assert_eq!(events.len(), 4);
        assert_eq!(events[3].data, "[DONE]");
        let chunks: Vec<openai::ChatChunk> = events[..3]
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert!(chunks
            .iter()
            .all(|c| c.object == "chat.completion.chunk" && c.model == "gpt-4o"));
        assert_eq!(chunks[0].choices[0].delta["role"], "assistant");
        assert_eq!(chunks[1].choices[0].delta["content"], "No.");
        assert_eq!(chunks[1].choices[0].finish_reason, None);
        assert_eq!(
            chunks[2].choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        let text: String = events[..3]
            .iter()
            .map(|e| event_text(&serde_json::from_str(&e.data).unwrap()))
            .collect();
        assert_eq!(text, "No.");
    }

    #[test]
    fn deny_anthropic_json() {
        let (ct, body) = deny_response(ClientProtocol::Anthropic, false, 200, "No.", "claude-x");
        assert_eq!(ct, JSON_CONTENT_TYPE);
        let resp: anthropic::MessagesResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (resp.kind.as_str(), resp.role.as_str()),
            ("message", "assistant")
        );
        assert_eq!(resp.model, "claude-x");
        assert_eq!(resp.content, vec![anthropic::Block::text("No.")]);
        assert_eq!(resp.stop_reason.as_deref(), Some("refusal"));
    }

    #[test]
    fn deny_anthropic_stream() {
        let (ct, body) = deny_response(ClientProtocol::Anthropic, true, 200, "No.", "claude-x");
        assert_eq!(ct, SSE_CONTENT_TYPE);
        let events = decode(&body);
        let kinds: Vec<_> = events.iter().filter_map(|e| e.event.clone()).collect();
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
        let parsed: Vec<anthropic::StreamEvent> = events
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert!(
            matches!(&parsed[0], anthropic::StreamEvent::MessageStart { message } if message.model == "claude-x")
        );
        let text: String = data(&events).iter().map(event_text).collect();
        assert_eq!(text, "No.");
        assert!(
            matches!(&parsed[4], anthropic::StreamEvent::MessageDelta { delta, .. } if delta["stop_reason"] == "refusal")
        );
    }

    #[test]
    fn deny_with_error_code() {
        for stream in [false, true] {
            let (ct, body) = deny_response(ClientProtocol::OpenAi, stream, 403, "Blocked", "m");
            assert_eq!(ct, JSON_CONTENT_TYPE);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["message"], "Blocked");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["code"], "content_filter");
            let (ct, body) = deny_response(ClientProtocol::Anthropic, stream, 400, "Blocked", "m");
            assert_eq!(ct, JSON_CONTENT_TYPE);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["message"], "Blocked");
        }
    }

    /// The byte-by-byte scan `complete_events` must agree with.
    fn reference(data: &[u8]) -> usize {
        let mut end = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            if data[i] == b'\n' && data[i + 1] == b'\n' {
                end = i + 2;
                i += 2;
            } else if i + 3 < data.len() && &data[i..i + 4] == b"\r\n\r\n" {
                end = i + 4;
                i += 4;
            } else {
                i += 1;
            }
        }
        end
    }

    #[test]
    fn complete_events_ends_after_the_last_blank_line() {
        assert_eq!(complete_events(b"data: a\n\ndata: b"), 9);
        assert_eq!(complete_events(b"data: a\r\n\r\ndata: b\n\n"), 20);
        assert_eq!(complete_events(b"data: partial"), 0);
        assert_eq!(complete_events(b""), 0);
        // Every string over the bytes that matter, up to 7 long.
        let alphabet = [b'\n', b'\r', b'x'];
        for len in 0..=7u32 {
            for mut n in 0..3usize.pow(len) {
                let mut data = Vec::new();
                for _ in 0..len {
                    data.push(alphabet[n % 3]);
                    n /= 3;
                }
                assert_eq!(complete_events(&data), reference(&data), "{data:?}");
            }
        }
    }
}
