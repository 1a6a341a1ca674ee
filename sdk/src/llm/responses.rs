//! OpenAI Responses API (`POST /v1/responses`) answers written from canonical
//! [`Event`]s: the typed stream events (`response.created` … `response.completed`) and the
//! whole `response` object for JSON answers.
//!
//! The protocol repeats every item's full text in its `.done` event and the whole output in
//! `response.completed`, so the encoder keeps the answer's items until the end.

use super::stream::{Encoder, Event};
use crate::sse::SseEvent;
use crate::usage::Usage;
use serde_json::{json, Value};

/// An output item being written.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
    },
    Reasoning {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        args: String,
    },
}

/// Writes one answer in the Responses API's shape: the event stream, or with `stream` off the
/// `response` object at the end.
#[derive(Debug)]
pub struct ResponsesEncoder {
    stream: bool,
    id: String,
    model: String,
    created_at: u64,
    seq: u64,
    started: bool,
    done: bool,
    output: Vec<Value>,
    open: Option<Item>,
    finish: Option<String>,
    usage: Option<Usage>,
    error: Option<String>,
    choice: super::stream::FirstChoice,
    /// The request's parameters the `response` object repeats ([`echoed`]).
    echo: serde_json::Map<String, Value>,
}

/// The request parameters a `response` object repeats, as OpenAI's do.
const ECHOED: [&str; 13] = [
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "truncation",
    "user",
];

/// The parameters of a Responses `request` that its answer repeats.
pub fn echoed(request: &Value) -> serde_json::Map<String, Value> {
    ECHOED
        .iter()
        .filter_map(|k| Some((k.to_string(), request.get(*k)?.clone())))
        .collect()
}

/// The usage object of a Responses answer.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cached_input},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.total.max(u.input.saturating_add(u.output)),
    })
}

impl ResponsesEncoder {
    /// The request's parameters to repeat in the `response` object ([`echoed`]).
    pub fn with_echo(mut self, echo: serde_json::Map<String, Value>) -> Self {
        self.echo = echo;
        self
    }

    /// The model named when the provider names none.
    pub fn with_model(mut self, model: &str) -> Self {
        self.model = model.to_string();
        self
    }

    /// An encoder for an answer created at `created_at` (Unix seconds); `stream` writes the
    /// events as server-sent events.
    pub fn new(stream: bool, created_at: u64) -> Self {
        ResponsesEncoder {
            stream,
            id: String::new(),
            model: String::new(),
            created_at,
            seq: 0,
            started: false,
            done: false,
            output: Vec::new(),
            open: None,
            finish: None,
            usage: None,
            error: None,
            choice: Default::default(),
            echo: serde_json::Map::new(),
        }
    }

    fn send(&mut self, out: &mut String, kind: &str, mut data: Value) {
        if !self.stream {
            return;
        }
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq = self.seq.saturating_add(1);
        SseEvent::typed(kind, data.to_string()).encode_into(out);
    }

    fn item_id(&self, prefix: &str) -> String {
        let base = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{prefix}_{base}_{}", self.output.len())
    }

    /// The `response` object as it stands (`status` from how the answer ended).
    pub fn response(&self) -> Value {
        let (status, incomplete) = match (&self.error, self.finish.as_deref()) {
            (Some(_), _) => ("failed", Value::Null),
            (None, _) if !self.done => ("in_progress", Value::Null),
            (None, Some("length")) => ("incomplete", json!({"reason": "max_output_tokens"})),
            (None, Some("content_filter")) => ("incomplete", json!({"reason": "content_filter"})),
            (None, _) => ("completed", Value::Null),
        };
        let output = if self.done {
            self.output.clone()
        } else {
            Vec::new()
        };
        let mut response = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": self.error.as_ref().map(|m| json!({"code": "server_error", "message": m})),
            "incomplete_details": incomplete,
            "instructions": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "metadata": {},
            "text": {"format": {"type": "text"}},
            "usage": self.usage.as_ref().filter(|_| self.done).map(usage_json),
        });
        if let Some(fields) = response.as_object_mut() {
            fields.extend(self.echo.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        response
    }

    fn start(&mut self, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = "resp_gateway".into();
        }
        let response = self.response();
        self.send(out, "response.created", json!({"response": response}));
        self.send(out, "response.in_progress", json!({"response": response}));
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    /// Opens an item unless one of the same kind is open (tool calls never continue).
    fn open(&mut self, mut item: Item, out: &mut String) {
        let same = matches!(
            (&self.open, &item),
            (Some(Item::Message { .. }), Item::Message { .. })
                | (Some(Item::Reasoning { .. }), Item::Reasoning { .. })
        );
        if same {
            return;
        }
        self.close(out);
        let index = self.index();
        match &mut item {
            Item::Message { id, .. } => *id = self.item_id("msg"),
            Item::Reasoning { id, .. } => *id = self.item_id("rs"),
            Item::Call { id, .. } => *id = self.item_id("fc"),
        }
        let added = match &item {
            Item::Message { id, .. } => json!({"id": id, "type": "message",
                "status": "in_progress", "role": "assistant", "content": []}),
            Item::Reasoning { id, .. } => {
                json!({"id": id, "type": "reasoning", "summary": [], "content": []})
            }
            Item::Call {
                id, call_id, name, ..
            } => json!({"id": id, "type": "function_call", "status": "in_progress",
                "call_id": call_id, "name": name, "arguments": ""}),
        };
        self.send(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        match &item {
            Item::Message { id, .. } => {
                let part = json!({"item_id": id, "output_index": index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}});
                self.send(out, "response.content_part.added", part);
            }
            Item::Reasoning { id, .. } => {
                let part = json!({"item_id": id, "output_index": index, "content_index": 0,
                    "part": {"type": "reasoning_text", "text": ""}});
                self.send(out, "response.content_part.added", part);
            }
            Item::Call { .. } => {}
        }
        self.open = Some(item);
    }

    fn close(&mut self, out: &mut String) {
        let Some(item) = self.open.take() else {
            return;
        };
        let index = self.index();
        let done = match item {
            Item::Message { id, text } => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.send(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "text": text, "logprobs": []}),
                );
                self.send(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                json!({"id": id, "type": "message", "status": "completed", "role": "assistant",
                    "content": [part]})
            }
            Item::Reasoning { id, text } => {
                let part = json!({"type": "reasoning_text", "text": text});
                self.send(
                    out,
                    "response.reasoning_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                );
                self.send(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                json!({"id": id, "type": "reasoning", "summary": [], "content": [part]})
            }
            Item::Call {
                id,
                call_id,
                name,
                args,
            } => {
                let args = if args.is_empty() { "{}".into() } else { args };
                self.send(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": args}),
                );
                json!({"id": id, "type": "function_call", "status": "completed",
                    "call_id": call_id, "name": name, "arguments": args})
            }
        };
        self.send(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        self.output.push(done);
    }
}

impl Encoder for ResponsesEncoder {
    fn event(&mut self, event: Event<'_>, out: &mut String) {
        if self.done || !self.choice.keep(&event) {
            return;
        }
        match event {
            Event::Meta { id, model } => {
                if !self.started {
                    self.id = match id {
                        "" => String::new(),
                        id if id.starts_with("resp_") => id.to_string(),
                        id => format!("resp_{id}"),
                    };
                    if !model.is_empty() {
                        self.model = model.to_string();
                    }
                }
            }
            Event::Usage(u) => self.usage = Some(u),
            Event::Finish(reason) => self.finish = Some(reason.to_string()),
            Event::Text(t) | Event::Refusal(t) => {
                self.start(out);
                self.open(
                    Item::Message {
                        id: String::new(),
                        text: String::new(),
                    },
                    out,
                );
                let index = self.index();
                if let Some(Item::Message { id, text }) = &mut self.open {
                    text.push_str(t);
                    let delta = json!({"item_id": id, "output_index": index, "content_index": 0,
                        "delta": t, "logprobs": []});
                    self.send(out, "response.output_text.delta", delta);
                }
            }
            Event::Reasoning(r) => {
                self.start(out);
                self.open(
                    Item::Reasoning {
                        id: String::new(),
                        text: String::new(),
                    },
                    out,
                );
                let index = self.index();
                if let Some(Item::Reasoning { id, text }) = &mut self.open {
                    text.push_str(r);
                    let delta = json!({"item_id": id, "output_index": index, "content_index": 0,
                        "delta": r});
                    self.send(out, "response.reasoning_text.delta", delta);
                }
            }
            Event::ToolStart { id, name, args } => {
                self.start(out);
                self.open(
                    Item::Call {
                        id: String::new(),
                        call_id: id.to_string(),
                        name: name.to_string(),
                        args: String::new(),
                    },
                    out,
                );
                if !args.is_empty() {
                    self.event(Event::ToolArgs(args), out);
                }
            }
            Event::ToolArgs(a) => {
                let index = self.index();
                if let Some(Item::Call { id, args, .. }) = &mut self.open {
                    args.push_str(a);
                    let delta = json!({"item_id": id, "output_index": index, "delta": a});
                    self.send(out, "response.function_call_arguments.delta", delta);
                }
            }
            Event::Choice(_)
            | Event::ToolSwitch(_)
            | Event::Created(_)
            | Event::Name(_)
            | Event::Logprobs(_) => {}
            Event::Error { message, .. } => {
                self.start(out);
                self.error = Some(message.to_string());
                self.done = true;
                self.send(
                    out,
                    "error",
                    json!({"code": "bad_upstream_stream", "message": message, "param": null}),
                );
                let response = self.response();
                self.send(out, "response.failed", json!({"response": response}));
            }
        }
    }

    fn end(&mut self, out: &mut String) {
        if self.done {
            return;
        }
        self.start(out);
        self.close(out);
        self.done = true;
        let response = self.response();
        let kind = match response["status"].as_str() {
            Some("incomplete") => "response.incomplete",
            _ => "response.completed",
        };
        match self.stream {
            true => self.send(out, kind, json!({"response": response})),
            false => out.push_str(&response.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(wire: &str) -> Vec<Value> {
        wire.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (head, data) = e.split_once("\ndata: ").unwrap();
                let v: Value = serde_json::from_str(data).unwrap();
                assert_eq!(head.strip_prefix("event: "), v["type"].as_str());
                v
            })
            .collect()
    }

    fn usage() -> Usage {
        Usage {
            input: 10,
            output: 7,
            total: 17,
            cached_input: 4,
            reasoning: 2,
            ..Usage::default()
        }
    }

    fn answer(enc: &mut ResponsesEncoder, out: &mut String) {
        enc.event(
            Event::Meta {
                id: "chatcmpl-1",
                model: "m",
            },
            out,
        );
        enc.event(Event::Reasoning("think"), out);
        enc.event(Event::Text("Hel"), out);
        enc.event(Event::Text("lo"), out);
        enc.event(
            Event::ToolStart {
                id: "call_a",
                name: "f",
                args: "",
            },
            out,
        );
        enc.event(Event::ToolArgs("{\"x\":"), out);
        enc.event(Event::ToolArgs("1}"), out);
        enc.event(Event::Finish("tool_calls"), out);
        enc.event(Event::Usage(usage()), out);
        enc.end(out);
    }

    #[test]
    fn stream_events_in_order() {
        let (mut enc, mut out) = (ResponsesEncoder::new(true, 7), String::new());
        answer(&mut enc, &mut out);
        let evs = events(&out);
        let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        assert_eq!(evs[0]["response"]["id"], "resp_chatcmpl-1");
        assert_eq!(evs[0]["response"]["status"], "in_progress");
        assert_eq!(evs[12]["text"], "Hello");
        assert_eq!(evs[12]["item_id"], "msg_chatcmpl-1_1");
        let done = &evs[20]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][1]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][2]["arguments"], "{\"x\":1}");
        assert_eq!(done["output"][2]["call_id"], "call_a");
        assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(
            done["usage"]["output_tokens_details"]["reasoning_tokens"],
            2
        );
        assert_eq!(done["usage"]["total_tokens"], 17);
    }

    #[test]
    fn whole_answer_and_endings() {
        let (mut enc, mut out) = (ResponsesEncoder::new(false, 7), String::new());
        answer(&mut enc, &mut out);
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r, enc.response());
        assert_eq!(r["object"], "response");
        assert_eq!(r["output"].as_array().unwrap().len(), 3);
        assert_eq!(r["output"][0]["content"][0]["text"], "think");

        let (mut enc, mut out) = (ResponsesEncoder::new(true, 7), String::new());
        enc.event(Event::Text("cut"), &mut out);
        enc.event(Event::Finish("length"), &mut out);
        enc.end(&mut out);
        let evs = events(&out);
        let last = evs.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );

        let (mut enc, mut out) = (ResponsesEncoder::new(true, 7), String::new());
        enc.event(Event::Text("a"), &mut out);
        enc.event(Event::error("boom"), &mut out);
        enc.end(&mut out);
        let evs = events(&out);
        let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(&kinds[kinds.len() - 2..], ["error", "response.failed"]);
        assert_eq!(evs.last().unwrap()["response"]["error"]["message"], "boom");
    }

    #[test]
    fn the_response_repeats_the_request_parameters() {
        let request = json!({"model": "m", "input": "hi", "instructions": "Be brief.",
            "tools": [{"type": "function", "name": "f", "parameters": {}}],
            "tool_choice": "required", "temperature": 0.2, "metadata": {"k": "v"}});
        let echo = echoed(&request);
        assert!(!echo.contains_key("input") && !echo.contains_key("model"));
        let (mut enc, mut out) = (ResponsesEncoder::new(true, 7), String::new());
        enc = enc.with_echo(echo);
        answer(&mut enc, &mut out);
        let evs = events(&out);
        for ev in [evs.first().unwrap(), evs.last().unwrap()] {
            let r = &ev["response"];
            assert_eq!(r["instructions"], "Be brief.");
            assert_eq!(r["tools"][0]["name"], "f");
            assert_eq!(r["tool_choice"], "required");
            assert_eq!(r["temperature"], 0.2);
            assert_eq!(r["metadata"], json!({"k": "v"}));
        }
        // Without a request the defaults stay.
        let r = ResponsesEncoder::new(false, 7).response();
        assert_eq!(
            (&r["tools"], &r["tool_choice"]),
            (&json!([]), &json!("auto"))
        );
    }

    #[test]
    fn refusals_are_message_text() {
        let (mut enc, mut out) = (ResponsesEncoder::new(false, 7), String::new());
        enc.event(Event::Refusal("The prompt was blocked."), &mut out);
        enc.event(Event::Finish("content_filter"), &mut out);
        enc.end(&mut out);
        let r = enc.response();
        assert_eq!(r["output"][0]["type"], "message");
        assert_eq!(
            r["output"][0]["content"][0]["text"],
            "The prompt was blocked."
        );
    }
}
