//! OpenAI Responses API (`POST /v1/responses`): a Response object, or its typed SSE events
//! (`event:` names, `type` and `sequence_number` in every payload, no `[DONE]`), with text or
//! one function call, shaped after OpenAI's API reference and the Python SDK's types.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::{MockControl, RequestCtx};
use crate::openai::stream_pieces;
use crate::reply::{self, count_words};
use crate::stream;

/// `call_id` of the single function call the mock makes.
const TOOL_CALL_ID: &str = "call_mock_1";
/// Arguments of that call, streamed in two halves.
const TOOL_ARGS: [&str; 2] = ["{\"location\":", "\"Paris\"}"];
/// Output tokens charged for a function call.
const TOOL_CALL_TOKENS: usize = 5;

/// The Responses API route.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/v1/responses", post(responses))
}

/// Words of a content value: a string, or the `text` of its parts (`input_text`,
/// `output_text`).
fn content_words(content: &Value) -> usize {
    match content {
        Value::String(text) => count_words(text),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(count_words)
            .sum(),
        _ => 0,
    }
}

/// Whether an `input` item is a message (typed `message`, or the short `{role, content}` form).
fn is_message(item: &Value) -> bool {
    item.get("role").is_some()
        && item
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(|t| t == "message")
}

/// Input tokens: words of `instructions` plus the text of `input` (a string, or the content of
/// its message items).
pub fn input_words(req: &Value) -> usize {
    let instructions = req
        .get("instructions")
        .and_then(Value::as_str)
        .map(count_words)
        .unwrap_or(0);
    let input = match req.get("input") {
        Some(Value::String(text)) => count_words(text),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|item| is_message(item))
            .filter_map(|item| item.get("content"))
            .map(content_words)
            .sum(),
        _ => 0,
    };
    instructions + input
}

/// The function to call: the first tool's name, when `tools` is non-empty and the last input is
/// the user's (a string input is a user message; a `function_call_output` is not).
pub fn tool_to_call(req: &Value) -> Option<String> {
    let first = req.get("tools")?.as_array()?.first()?;
    let users = match req.get("input")? {
        Value::String(_) => true,
        Value::Array(items) => items
            .last()
            .is_some_and(|item| is_message(item) && item["role"] == "user"),
        _ => false,
    };
    if !users {
        return None;
    }
    let name = first
        .get("name")
        .or_else(|| first.pointer("/function/name"))
        .and_then(Value::as_str)
        .unwrap_or("unknown_tool");
    Some(name.to_owned())
}

/// `usage` of a Response.
fn usage(input: usize, output: usize) -> Value {
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
    })
}

/// What the mock answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Text, in stream pieces (concatenated when not streamed).
    Text(Vec<String>),
    /// A call of this function.
    Call(String),
}

impl Answer {
    /// The answer to a request: a function call when [`tool_to_call`] picks one, else the
    /// reply text (`x-mock-content`, else `mock reply from <model>`; streamed as
    /// [`stream_pieces`]).
    pub fn of(req: &Value, control: &MockControl, model: &str, stream: bool) -> Self {
        if let Some(name) = tool_to_call(req) {
            return Answer::Call(name);
        }
        if stream {
            return Answer::Text(stream_pieces(control));
        }
        let text = control
            .content
            .clone()
            .unwrap_or_else(|| format!("mock reply from {model}"));
        Answer::Text(vec![text])
    }

    /// Output tokens: the words of the text, [`TOOL_CALL_TOKENS`] for a call.
    fn output_tokens(&self) -> usize {
        match self {
            Answer::Text(pieces) => pieces.iter().map(|p| count_words(p)).sum(),
            Answer::Call(_) => TOOL_CALL_TOKENS,
        }
    }
}

/// One reply: the Response object and its stream events.
pub struct Reply<'a> {
    req: &'a Value,
    id: u64,
    created_at: u64,
    model: String,
    input: usize,
    with_usage: bool,
    answer: Answer,
}

impl<'a> Reply<'a> {
    /// The reply to `req`, the `id`-th request.
    pub fn new(req: &'a Value, id: u64, control: &MockControl, stream: bool) -> Self {
        let model = req
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let answer = Answer::of(req, control, &model, stream);
        Reply {
            req,
            id,
            created_at: reply::unix_now(),
            model,
            input: input_words(req),
            with_usage: control.usage,
            answer,
        }
    }

    fn item_id(&self) -> String {
        match self.answer {
            Answer::Text(_) => format!("msg_mock_{}", self.id),
            Answer::Call(_) => format!("fc_mock_{}", self.id),
        }
    }

    /// A request field echoed back, or `default`.
    fn echo(&self, field: &str, default: Value) -> Value {
        self.req
            .get(field)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    }

    /// The Response object with `status`, `output` and, once completed, `usage`.
    fn response(&self, status: &str, output: Vec<Value>) -> Value {
        let done = status == "completed";
        let usage = if done && self.with_usage {
            usage(self.input, self.answer.output_tokens())
        } else {
            Value::Null
        };
        json!({
            "id": format!("resp_mock_{}", self.id),
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "completed_at": if done { json!(self.created_at) } else { Value::Null },
            "error": null,
            "incomplete_details": null,
            "instructions": self.echo("instructions", Value::Null),
            "max_output_tokens": self.echo("max_output_tokens", Value::Null),
            "metadata": self.echo("metadata", json!({})),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": self.echo("parallel_tool_calls", json!(true)),
            "previous_response_id": self.echo("previous_response_id", Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "store": self.echo("store", json!(true)),
            "temperature": self.echo("temperature", json!(1.0)),
            "text": self.echo("text", json!({"format": {"type": "text"}})),
            "tool_choice": self.echo("tool_choice", json!("auto")),
            "tools": self.echo("tools", json!([])),
            "top_p": self.echo("top_p", json!(1.0)),
            "truncation": "disabled",
            "usage": usage,
            "user": null,
        })
    }

    /// An `output_text` content part.
    fn text_part(text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    /// The output item, in progress (empty) or completed.
    fn item(&self, completed: bool) -> Value {
        let status = if completed {
            "completed"
        } else {
            "in_progress"
        };
        match &self.answer {
            Answer::Text(pieces) => {
                let content = if completed {
                    vec![Self::text_part(&pieces.concat())]
                } else {
                    Vec::new()
                };
                json!({"id": self.item_id(), "type": "message", "status": status,
                       "role": "assistant", "content": content})
            }
            Answer::Call(name) => {
                let arguments = if completed {
                    TOOL_ARGS.concat()
                } else {
                    String::new()
                };
                json!({"id": self.item_id(), "type": "function_call", "status": status,
                       "call_id": TOOL_CALL_ID, "name": name, "arguments": arguments})
            }
        }
    }

    /// The non-streamed answer: the completed Response.
    pub fn body(&self) -> Value {
        self.response("completed", vec![self.item(true)])
    }

    /// The stream: `(event name, data)` in order, `sequence_number` from 0.
    pub fn events(&self) -> Vec<(String, Value)> {
        let item_id = self.item_id();
        let mut events = vec![
            json!({"type": "response.created", "response": self.response("in_progress", vec![])}),
            json!({"type": "response.in_progress", "response": self.response("in_progress", vec![])}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": self.item(false)}),
        ];
        let at = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
        let with = |kind: &str, fields: Value| {
            let mut event = at.clone();
            event["type"] = json!(kind);
            if let (Some(e), Some(f)) = (event.as_object_mut(), fields.as_object()) {
                e.extend(f.clone());
            }
            event
        };
        match &self.answer {
            Answer::Text(pieces) => {
                let text = pieces.concat();
                events.push(with(
                    "response.content_part.added",
                    json!({"part": Self::text_part("")}),
                ));
                for piece in pieces {
                    events.push(with(
                        "response.output_text.delta",
                        json!({"delta": piece, "logprobs": []}),
                    ));
                }
                events.push(with(
                    "response.output_text.done",
                    json!({"text": text, "logprobs": []}),
                ));
                events.push(with(
                    "response.content_part.done",
                    json!({"part": Self::text_part(&text)}),
                ));
            }
            Answer::Call(_) => {
                let call = json!({"item_id": item_id, "output_index": 0});
                let with = |kind: &str, key: &str, value: String| {
                    let mut event = call.clone();
                    event["type"] = json!(kind);
                    event[key] = json!(value);
                    event
                };
                for part in TOOL_ARGS {
                    events.push(with(
                        "response.function_call_arguments.delta",
                        "delta",
                        part.to_owned(),
                    ));
                }
                events.push(with(
                    "response.function_call_arguments.done",
                    "arguments",
                    TOOL_ARGS.concat(),
                ));
            }
        }
        events.push(
            json!({"type": "response.output_item.done", "output_index": 0, "item": self.item(true)}),
        );
        events.push(json!({"type": "response.completed", "response": self.body()}));
        events
            .into_iter()
            .enumerate()
            .map(|(n, mut event)| {
                event["sequence_number"] = json!(n);
                let name = event["type"].as_str().unwrap_or_default().to_owned();
                (name, event)
            })
            .collect()
    }
}

/// One server-sent event `event: <name>\ndata: <json>\n\n`.
fn sse_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn responses(Extension(ctx): Extension<RequestCtx>, body: Bytes) -> Response {
    let req = match reply::parse_json(&body) {
        Ok(req) => req,
        Err(msg) => return reply::invalid_request(&msg),
    };
    if req.get("model").and_then(Value::as_str).is_none() {
        return reply::invalid_request("Missing required parameter: 'model'.");
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let control = &ctx.control;
    let reply = Reply::new(&req, ctx.id, control, stream);
    if stream {
        let frames = reply
            .events()
            .iter()
            .map(|(name, data)| sse_event(name, data))
            .collect();
        return stream::sse_response(frames, control.pacing());
    }
    reply::json(StatusCode::OK, reply.body())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOLS: &str = r#"[{"type": "function", "name": "get_weather", "parameters": {}}]"#;

    fn tools() -> Value {
        serde_json::from_str(TOOLS).unwrap()
    }

    #[test]
    fn counts_instructions_and_input_text() {
        let req = json!({"instructions": "Be brief.", "input": "Say hello"});
        assert_eq!(input_words(&req), 4);
        let items = json!({"input": [
            {"role": "user", "content": "one two"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "three four five"}, {"type": "input_image"}]},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "six", "annotations": []}]},
            {"type": "function_call_output", "call_id": "c", "output": "not counted"},
        ]});
        assert_eq!(input_words(&items), 6);
        assert_eq!(input_words(&json!({})), 0);
    }

    #[test]
    fn calls_a_tool_only_after_the_user() {
        let ask = json!({"tools": tools(), "input": "Weather in Paris?"});
        assert_eq!(tool_to_call(&ask).as_deref(), Some("get_weather"));
        let items = json!({"tools": tools(), "input": [{"role": "user", "content": "weather?"}]});
        assert_eq!(tool_to_call(&items).as_deref(), Some("get_weather"));
        let answered = json!({"tools": tools(), "input": [
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "sunny"}]});
        assert_eq!(tool_to_call(&answered), None);
        assert_eq!(tool_to_call(&json!({"tools": [], "input": "x"})), None);
        assert_eq!(tool_to_call(&json!({"input": "x"})), None);
    }

    #[test]
    fn answers_a_response_object() {
        let req = json!({"model": "gpt-5-mini", "instructions": "Be brief.", "input": "Say hello"});
        let body = Reply::new(&req, 7, &MockControl::default(), false).body();
        assert_eq!(body["id"], "resp_mock_7");
        assert_eq!(body["object"], "response");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["model"], "gpt-5-mini");
        assert_eq!(body["instructions"], "Be brief.");
        assert_eq!(
            body["output"],
            json!([{"id": "msg_mock_7", "type": "message", "status": "completed",
                "role": "assistant", "content": [{"type": "output_text",
                "text": "mock reply from gpt-5-mini", "annotations": [], "logprobs": []}]}])
        );
        assert_eq!(body["usage"]["input_tokens"], 4);
        assert_eq!(body["usage"]["output_tokens"], 4);
        assert_eq!(body["usage"]["total_tokens"], 8);
        assert_eq!(body["usage"]["input_tokens_details"]["cached_tokens"], 0);
        assert_eq!(
            body["usage"]["output_tokens_details"]["reasoning_tokens"],
            0
        );

        let content = MockControl {
            content: Some("a b c".into()),
            usage: false,
            ..MockControl::default()
        };
        let body = Reply::new(&req, 1, &content, false).body();
        assert_eq!(body["output"][0]["content"][0]["text"], "a b c");
        assert!(body["usage"].is_null());
    }

    #[test]
    fn answers_a_function_call() {
        let req = json!({"model": "m", "tools": tools(), "input": "Weather in Paris?"});
        let body = Reply::new(&req, 2, &MockControl::default(), false).body();
        assert_eq!(
            body["output"],
            json!([{"id": "fc_mock_2", "type": "function_call", "status": "completed",
                "call_id": TOOL_CALL_ID, "name": "get_weather",
                "arguments": "{\"location\":\"Paris\"}"}])
        );
        assert_eq!(body["tools"], tools());
        assert_eq!(body["usage"]["input_tokens"], 3);
        assert_eq!(body["usage"]["output_tokens"], TOOL_CALL_TOKENS);
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(name, _)| name.as_str()).collect()
    }

    #[test]
    fn streams_typed_events_in_sequence() {
        let req = json!({"model": "m", "stream": true, "input": "Count"});
        let events = Reply::new(&req, 3, &MockControl::default(), true).events();
        let mut want = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ];
        want.extend(["response.output_text.delta"; 5]);
        want.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(names(&events), want);
        for (n, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], *name);
            assert_eq!(data["sequence_number"], n);
        }
        let deltas: String = events
            .iter()
            .filter(|(name, _)| name == "response.output_text.delta")
            .map(|(_, data)| {
                assert_eq!(data["item_id"], "msg_mock_3");
                data["delta"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(deltas, "w0 w1 w2 w3 w4 ");
        let (_, created) = &events[0];
        assert_eq!(created["response"]["status"], "in_progress");
        assert!(created["response"]["usage"].is_null());
        assert_eq!(created["response"]["output"], json!([]));
        assert_eq!(events[2].1["item"]["content"], json!([]));
        assert_eq!(events[9].1["text"], "w0 w1 w2 w3 w4 ");
        let (_, completed) = events.last().unwrap();
        let response = &completed["response"];
        assert_eq!(response["status"], "completed");
        assert_eq!(
            response["output"][0]["content"][0]["text"],
            "w0 w1 w2 w3 w4 "
        );
        assert_eq!(response["usage"]["input_tokens"], 1);
        assert_eq!(response["usage"]["output_tokens"], 5);
        assert_eq!(response["usage"]["total_tokens"], 6);
    }

    #[test]
    fn streams_a_function_call() {
        let req = json!({"model": "m", "stream": true, "tools": tools(), "input": "Weather?"});
        let events = Reply::new(&req, 4, &MockControl::default(), true).events();
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let added = &events[2].1["item"];
        assert_eq!(added["type"], "function_call");
        assert_eq!(added["name"], "get_weather");
        assert_eq!(added["arguments"], "");
        let args: String = events[3..5]
            .iter()
            .map(|(_, e)| e["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(args, "{\"location\":\"Paris\"}");
        assert_eq!(events[5].1["arguments"], args);
        assert_eq!(events[5].1["item_id"], "fc_mock_4");
        assert!(events[5].1.get("content_index").is_none());
        let response = &events[7].1["response"];
        assert_eq!(response["output"][0]["call_id"], TOOL_CALL_ID);
        assert_eq!(response["usage"]["output_tokens"], TOOL_CALL_TOKENS);
    }

    #[test]
    fn streams_content_override_without_usage() {
        let control = MockControl {
            content: Some("hello big world".into()),
            usage: false,
            ..MockControl::default()
        };
        let req = json!({"model": "m", "stream": true, "input": "hi"});
        let events = Reply::new(&req, 5, &control, true).events();
        let deltas: Vec<&str> = events
            .iter()
            .filter(|(name, _)| name == "response.output_text.delta")
            .map(|(_, e)| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, ["hello ", "big ", "world"]);
        assert!(events.last().unwrap().1["response"]["usage"].is_null());
    }

    #[test]
    fn frames_named_events() {
        let frame = sse_event("response.created", &json!({"type": "response.created"}));
        assert_eq!(
            &frame[..],
            b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n"
        );
    }
}
