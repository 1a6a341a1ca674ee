//! A model's answer independent of the protocol that carried it: read from an OpenAI chat or
//! Anthropic Messages answer (JSON, or assembled from a stream's deltas), and written back in
//! either protocol and mode. A cache replays stored answers through [`encode`]; anything that
//! answers for the model locally can reuse it.

use crate::api::ClientProtocol;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One tool call of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ToolCall {
    /// The call id (`call_…` / `toolu_…`).
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as a JSON text.
    pub arguments: String,
}

/// A complete answer: text, tool calls and why it ended (OpenAI vocabulary: `stop`, `length`,
/// `tool_calls`, `content_filter`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Answer {
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The text.
    #[serde(default)]
    pub text: String,
    /// Tool calls, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Why it ended; none when it did not end (a cut stream).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// Anthropic `stop_reason` in OpenAI's vocabulary.
fn finish_from_anthropic(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_string()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl Answer {
    /// Whether it ended the normal way (a full answer or tool calls, not cut or filtered).
    pub fn finished_normally(&self) -> bool {
        matches!(self.finish_reason.as_deref(), Some("stop" | "tool_calls"))
    }

    /// Reads an OpenAI chat completion (first choice).
    pub fn from_openai(body: &Value) -> Option<Answer> {
        let choice = body.get("choices")?.get(0)?;
        let message = choice.get("message")?;
        let tool_calls = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| ToolCall {
                id: str_of(c, "id").to_string(),
                name: c
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: c
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        Some(Answer {
            model: str_of(body, "model").to_string(),
            text: str_of(message, "content").to_string(),
            tool_calls,
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// Reads an Anthropic Messages answer.
    pub fn from_anthropic(body: &Value) -> Option<Answer> {
        if body.get("type").and_then(Value::as_str) != Some("message") {
            return None;
        }
        let mut answer = Answer {
            model: str_of(body, "model").to_string(),
            finish_reason: body
                .get("stop_reason")
                .and_then(Value::as_str)
                .map(finish_from_anthropic),
            ..Answer::default()
        };
        for block in body
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match str_of(block, "type") {
                "text" => answer.text.push_str(str_of(block, "text")),
                "tool_use" => answer.tool_calls.push(ToolCall {
                    id: str_of(block, "id").to_string(),
                    name: str_of(block, "name").to_string(),
                    arguments: block
                        .get("input")
                        .map_or_else(|| "{}".into(), Value::to_string),
                }),
                _ => {}
            }
        }
        Some(answer)
    }

    /// Reads a Responses API `response` object (its message text and function calls).
    pub fn from_responses(body: &Value) -> Option<Answer> {
        if body.get("object").and_then(Value::as_str) != Some("response") {
            return None;
        }
        let mut answer = Answer {
            model: str_of(body, "model").to_string(),
            ..Answer::default()
        };
        for item in body
            .get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match str_of(item, "type") {
                "message" => {
                    for part in item
                        .get("content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|p| str_of(p, "type") == "output_text")
                    {
                        answer.text.push_str(str_of(part, "text"));
                    }
                }
                "function_call" => answer.tool_calls.push(ToolCall {
                    id: str_of(item, "call_id").to_string(),
                    name: str_of(item, "name").to_string(),
                    arguments: str_of(item, "arguments").to_string(),
                }),
                _ => {}
            }
        }
        let reason = body
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str);
        answer.finish_reason = match (str_of(body, "status"), reason) {
            ("completed", _) if !answer.tool_calls.is_empty() => Some("tool_calls".into()),
            ("completed", _) => Some("stop".into()),
            ("incomplete", Some("max_output_tokens")) => Some("length".into()),
            ("incomplete", Some("content_filter")) => Some("content_filter".into()),
            _ => None,
        };
        Some(answer)
    }

    /// Reads a JSON answer in `protocol`.
    pub fn from_json(protocol: ClientProtocol, body: &Value) -> Option<Answer> {
        match protocol {
            ClientProtocol::OpenAi => Answer::from_openai(body),
            ClientProtocol::Anthropic => Answer::from_anthropic(body),
            ClientProtocol::Responses => Answer::from_responses(body),
        }
    }
}

/// Builds an [`Answer`] from the events of a streamed answer (OpenAI chat chunks or Anthropic
/// Messages events), one event `data` at a time.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    answer: Answer,
    /// Tool calls by their stream index.
    indices: Vec<u64>,
    /// An event that was not JSON of the expected shape, or an error event, was seen.
    broken: bool,
}

impl StreamAssembler {
    fn call(&mut self, index: u64) -> Option<&mut ToolCall> {
        let at = match self.indices.iter().position(|i| *i == index) {
            Some(at) => at,
            None => {
                self.indices.push(index);
                self.answer.tool_calls.push(ToolCall::default());
                self.indices.len() - 1
            }
        };
        self.answer.tool_calls.get_mut(at)
    }

    /// Reads one event's `data` (`[DONE]` and empty data are ignored).
    pub fn feed(&mut self, data: &str) {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return;
        }
        match serde_json::from_str::<Value>(data) {
            Ok(event) => self.feed_json(&event),
            Err(_) => self.broken = true,
        }
    }

    /// Reads one event already parsed.
    pub fn feed_json(&mut self, event: &Value) {
        if let Some(choices) = event.get("choices").and_then(Value::as_array) {
            if let Some(m) = event.get("model").and_then(Value::as_str) {
                self.answer.model = m.to_string();
            }
            // Only the first choice is assembled (n > 1 answers are not cached).
            let Some(choice) = choices
                .iter()
                .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            else {
                return;
            };
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                self.answer.text.push_str(text);
            }
            for d in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = d.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(call) = self.call(index) {
                    call.id.push_str(str_of(d, "id"));
                    call.name.push_str(
                        d.pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    );
                    call.arguments.push_str(
                        d.pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    );
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.answer.finish_reason = Some(reason.to_string());
            }
            return;
        }
        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
        match str_of(event, "type") {
            // The Responses API repeats the whole answer in its last event.
            "response.completed" | "response.incomplete" => {
                match event.get("response").and_then(Answer::from_responses) {
                    Some(answer) => self.answer = answer,
                    None => self.broken = true,
                }
            }
            "response.failed" => self.broken = true,
            "message_start" => {
                if let Some(m) = event.pointer("/message/model").and_then(Value::as_str) {
                    self.answer.model = m.to_string();
                }
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                match str_of(block, "type") {
                    "tool_use" => {
                        if let Some(call) = self.call(index) {
                            call.id = str_of(block, "id").to_string();
                            call.name = str_of(block, "name").to_string();
                        }
                    }
                    "text" => self.answer.text.push_str(str_of(block, "text")),
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                match str_of(delta, "type") {
                    "text_delta" => self.answer.text.push_str(str_of(delta, "text")),
                    "input_json_delta" if self.indices.contains(&index) => {
                        if let Some(call) = self.call(index) {
                            call.arguments.push_str(str_of(delta, "partial_json"));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.answer.finish_reason = Some(finish_from_anthropic(r));
                }
            }
            "error" => self.broken = true,
            _ => {}
        }
    }

    /// The answer, when the stream finished normally and every event was readable.
    pub fn finish(mut self) -> Option<Answer> {
        if self.broken || !self.answer.finished_normally() {
            return None;
        }
        for call in &mut self.answer.tool_calls {
            if call.arguments.is_empty() {
                call.arguments.push_str("{}");
            }
        }
        Some(self.answer)
    }
}

/// How an answer is written for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding<'a> {
    /// The client's protocol.
    pub protocol: ClientProtocol,
    /// Server-sent events instead of one JSON body.
    pub stream: bool,
    /// The answer id (`chatcmpl-…` / `msg_…` are prefixed).
    pub id: &'a str,
    /// Unix seconds for OpenAI's `created`.
    pub created: u64,
}

/// Writes `answer` for a client: the content type and the body (a JSON document, or the whole
/// event stream). The usage block says zero tokens: no provider was asked.
pub fn encode(answer: &Answer, how: Encoding<'_>) -> (&'static str, String) {
    use super::stream::{Encoder, ReasoningMode};
    let finish = answer.finish_reason.as_deref().unwrap_or("stop");
    let model = answer.model.as_str();
    let (prefix, mut enc): (&str, Box<dyn Encoder>) = match (how.protocol, how.stream) {
        (ClientProtocol::Responses, stream) => (
            "resp_",
            Box::new(super::responses::ResponsesEncoder::new(stream, how.created)),
        ),
        (ClientProtocol::OpenAi, false) => (
            "chatcmpl-",
            Box::new(super::openai::AnswerEncoder::new(
                model,
                how.created,
                ReasoningMode::Passthrough,
            )),
        ),
        (ClientProtocol::OpenAi, true) => (
            "chatcmpl-",
            Box::new(super::openai::ChunkEncoder::new(
                model,
                how.created,
                ReasoningMode::Passthrough,
            )),
        ),
        (ClientProtocol::Anthropic, false) => (
            "msg_",
            Box::new(super::anthropic::AnswerEncoder::new(model)),
        ),
        (ClientProtocol::Anthropic, true) => {
            ("msg_", Box::new(super::anthropic::StreamEncoder::new()))
        }
    };
    let mut out = String::new();
    play(
        answer,
        &format!("{prefix}{}", how.id),
        finish,
        enc.as_mut(),
        &mut out,
    );
    match how.stream {
        true => ("text/event-stream", out),
        false => ("application/json", out),
    }
}

/// Plays `answer` into a client's encoder, with zero usage (no provider was asked).
fn play(
    answer: &Answer,
    id: &str,
    finish: &str,
    enc: &mut dyn super::stream::Encoder,
    out: &mut String,
) {
    use super::stream::Event;
    let model = &answer.model;
    enc.event(Event::Meta { id, model }, out);
    enc.event(Event::Usage(crate::usage::Usage::default()), out);
    enc.event(Event::Text(&answer.text), out);
    for c in &answer.tool_calls {
        let (id, name, args) = (&c.id, &c.name, &c.arguments);
        enc.event(Event::ToolStart { id, name, args }, out);
    }
    enc.event(Event::Finish(finish), out);
    enc.end(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;

    fn answer() -> Answer {
        Answer {
            model: "gpt-4o".into(),
            text: "Paris.".into(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
            finish_reason: Some("tool_calls".into()),
        }
    }

    fn events(body: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut d = SseDecoder::default();
        d.feed(body.as_bytes(), &mut out).unwrap();
        d.finish(&mut out);
        out.into_iter().map(|e| e.data).collect()
    }

    #[test]
    fn every_encoding_reads_back_as_the_same_answer() {
        let a = answer();
        for protocol in [
            ClientProtocol::OpenAi,
            ClientProtocol::Anthropic,
            ClientProtocol::Responses,
        ] {
            let how = Encoding {
                protocol,
                stream: false,
                id: "x",
                created: 1,
            };
            let (ct, body) = encode(&a, how);
            assert_eq!(ct, "application/json");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(Answer::from_json(protocol, &v), Some(a.clone()), "{body}");
            let (ct, body) = encode(
                &a,
                Encoding {
                    stream: true,
                    ..how
                },
            );
            assert_eq!(ct, "text/event-stream");
            let mut s = StreamAssembler::default();
            for e in events(&body) {
                s.feed(&e);
            }
            assert_eq!(s.finish(), Some(a.clone()), "{body}");
        }
    }

    #[test]
    fn usage_says_zero_tokens() {
        let how = Encoding {
            protocol: ClientProtocol::OpenAi,
            stream: false,
            id: "x",
            created: 1,
        };
        let v: Value = serde_json::from_str(&encode(&answer(), how).1).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 0);
        let how = Encoding {
            protocol: ClientProtocol::Anthropic,
            stream: true,
            ..how
        };
        let body = encode(&answer(), how).1;
        assert!(body.contains("\"output_tokens\":0"));
        assert!(body.contains("\"input_tokens\":0"));
    }

    #[test]
    fn cut_or_broken_streams_are_no_answer() {
        let mut s = StreamAssembler::default();
        s.feed(r#"{"choices":[{"index":0,"delta":{"content":"Par"}}]}"#);
        assert_eq!(s.finish(), None);
        let mut s = StreamAssembler::default();
        s.feed(r#"{"choices":[{"index":0,"delta":{"content":"Par"},"finish_reason":"length"}]}"#);
        assert_eq!(s.finish(), None);
        let mut s = StreamAssembler::default();
        s.feed(r#"{"type":"error","error":{"type":"overloaded_error"}}"#);
        s.feed(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#);
        assert_eq!(s.finish(), None);
        let mut s = StreamAssembler::default();
        s.feed(r#"{"choices":[{"index":0,"delta":{"content":"Paris"},"finish_reason":"stop"}]}"#);
        s.feed("[DONE]");
        assert_eq!(s.finish().map(|a| a.text), Some("Paris".into()));
    }
}
