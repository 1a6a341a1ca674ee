//! Cohere API v2 wire format: `POST /v2/chat` (JSON, and SSE with every v2 event type: message,
//! content, thinking, tool-plan and tool-call events, usage in `message-end`, `[DONE]`) and
//! `POST /v2/embed`, shaped after Cohere's public API reference.
//!
//! Word counts stand in for tokens, as in the other formats. The reply text, chunking, pacing,
//! resets and `x-mock-usage` follow the `x-mock-*` headers like the OpenAI routes.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::{MockControl, RequestCtx};
use crate::openai::{embed, split_pieces, stream_pieces};
use crate::reply::{self, count_words};
use crate::stream::{self, sse_done};

/// Id of the tool call the mock makes.
const TOOL_CALL_ID: &str = "get_weather_mock01";
/// Tool arguments, streamed in three pieces.
const TOOL_ARGS: [&str; 3] = ["{\"location\":", " \"Pa", "ris\"}"];
/// The tool plan said before the tool call (one `tool-plan-delta` per word).
const TOOL_PLAN: &str = "I will look up the weather.";
/// Output tokens charged for the tool call itself (on top of the plan's words).
const TOOL_CALL_TOKENS: usize = 5;
/// Thinking text, sent when the request enables `thinking`.
const THINKING: &str = "Thinking it over.";

/// Top-level fields Cohere's v2 chat accepts; the mock refuses others, so a translation that
/// leaks OpenAI fields (`top_p`, `stop`, `n`, …) fails loudly.
const CHAT_FIELDS: &[&str] = &[
    "stream",
    "model",
    "messages",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "priority",
];

/// The Cohere routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/v2/chat", post(chat))
        .route("/v2/embed", post(embed_route))
}

/// A Cohere-shaped error: `{"id","message"}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    reply::json(status, json!({"id": "mock-error", "message": message}))
}

/// The reply for `x-mock-status` / `/__mock/fail` on the Cohere paths, for the control
/// middleware (which answers OpenAI-shaped errors until it routes `/v2/*` here).
pub fn failure(status: StatusCode) -> Response {
    error(status, &format!("mock failure {}", status.as_u16()))
}

/// The 401 for a request without `Authorization: Bearer <key>`.
fn check_auth(headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, key)| {
            scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty()
        });
    (!bearer).then(|| error(StatusCode::UNAUTHORIZED, "no api key supplied"))
}

/// Why a chat body is refused (400), if it is.
fn chat_problem(req: &Value) -> Option<String> {
    let Some(obj) = req.as_object() else {
        return Some("invalid request: body must be a JSON object".into());
    };
    if let Some(field) = obj.keys().find(|k| !CHAT_FIELDS.contains(&k.as_str())) {
        return Some(format!("invalid request: unknown field {field:?}"));
    }
    if !obj.get("model").is_some_and(Value::is_string) {
        return Some("invalid request: model must be a string".into());
    }
    match obj.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => None,
        _ => Some("invalid request: messages must have at least one message".into()),
    }
}

/// Words of a Cohere content value: a string, or the `text` of blocks.
fn content_words(content: Option<&Value>) -> usize {
    match content {
        Some(Value::String(s)) => count_words(s),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .map(count_words)
            .sum(),
        _ => 0,
    }
}

/// Input tokens: words of every message's content (system, user, assistant, tool).
pub fn input_words(req: &Value) -> usize {
    req.get("messages")
        .and_then(Value::as_array)
        .map(|m| m.iter().map(|m| content_words(m.get("content"))).sum())
        .unwrap_or(0)
}

/// The tool to call: the first tool's name, when tools are offered and the last message is
/// the user's.
pub fn tool_to_call(req: &Value) -> Option<String> {
    let first = req.get("tools")?.as_array()?.first()?;
    let last = req.get("messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    Some(
        first
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("unknown_tool")
            .to_owned(),
    )
}

/// Whether the request turns thinking on (`thinking.type == "enabled"`).
fn thinking_enabled(req: &Value) -> bool {
    req.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled")
}

/// Cohere usage: `billed_units` and `tokens` with the same counts.
fn usage(input: usize, output: usize) -> Value {
    let counts = json!({"input_tokens": input, "output_tokens": output});
    json!({"billed_units": counts, "tokens": counts})
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The SSE frames of a streamed chat answer.
pub fn stream_frames(req: &Value, control: &MockControl, id: &str) -> Vec<Bytes> {
    let mut frames = vec![event(
        "message-start",
        &json!({"id": id, "type": "message-start", "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
    )];
    let mut output = 0;
    let mut index = 0;
    if thinking_enabled(req) {
        frames.push(event(
            "content-start",
            &json!({"type": "content-start", "index": index,
                "delta": {"message": {"content": {"type": "thinking", "thinking": ""}}}}),
        ));
        for piece in split_pieces(THINKING) {
            frames.push(event(
                "content-delta",
                &json!({"type": "content-delta", "index": index,
                    "delta": {"message": {"content": {"thinking": piece}}}}),
            ));
        }
        frames.push(event(
            "content-end",
            &json!({"type": "content-end", "index": index}),
        ));
        output += count_words(THINKING);
        index += 1;
    }
    let finish = match tool_to_call(req) {
        Some(name) => {
            for piece in split_pieces(TOOL_PLAN) {
                frames.push(event(
                    "tool-plan-delta",
                    &json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}}),
                ));
            }
            frames.push(event(
                "tool-call-start",
                &json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
                    "id": TOOL_CALL_ID, "type": "function",
                    "function": {"name": name, "arguments": ""}}}}}),
            ));
            for piece in TOOL_ARGS {
                frames.push(event(
                    "tool-call-delta",
                    &json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {
                        "tool_calls": {"function": {"arguments": piece}}}}}),
                ));
            }
            frames.push(event(
                "tool-call-end",
                &json!({"type": "tool-call-end", "index": 0}),
            ));
            output += count_words(TOOL_PLAN) + TOOL_CALL_TOKENS;
            "TOOL_CALL"
        }
        None => {
            frames.push(event(
                "content-start",
                &json!({"type": "content-start", "index": index,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
            ));
            let pieces = stream_pieces(control);
            for piece in &pieces {
                frames.push(event(
                    "content-delta",
                    &json!({"type": "content-delta", "index": index,
                        "delta": {"message": {"content": {"text": piece}}}}),
                ));
            }
            frames.push(event(
                "content-end",
                &json!({"type": "content-end", "index": index}),
            ));
            output += pieces.len();
            "COMPLETE"
        }
    };
    let mut delta = json!({ "finish_reason": finish });
    if control.usage {
        delta["usage"] = usage(input_words(req), output);
    }
    frames.push(event(
        "message-end",
        &json!({"type": "message-end", "delta": delta}),
    ));
    frames.push(sse_done());
    frames
}

/// The JSON body of a non-streamed chat answer.
pub fn chat_body(req: &Value, control: &MockControl, id: &str) -> Value {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let mut content = Vec::new();
    let mut output = 0;
    if thinking_enabled(req) {
        content.push(json!({"type": "thinking", "thinking": THINKING}));
        output += count_words(THINKING);
    }
    let mut message = json!({"role": "assistant"});
    let finish = match tool_to_call(req) {
        Some(name) => {
            message["tool_plan"] = json!(TOOL_PLAN);
            message["tool_calls"] = json!([{"id": TOOL_CALL_ID, "type": "function",
                "function": {"name": name, "arguments": TOOL_ARGS.concat()}}]);
            output += count_words(TOOL_PLAN) + TOOL_CALL_TOKENS;
            "TOOL_CALL"
        }
        None => {
            let text = control
                .content
                .clone()
                .unwrap_or_else(|| format!("mock reply from {model}"));
            output += count_words(&text);
            content.push(json!({"type": "text", "text": text}));
            "COMPLETE"
        }
    };
    if !content.is_empty() {
        message["content"] = Value::Array(content);
    }
    let mut out = json!({"id": id, "finish_reason": finish, "message": message});
    if control.usage {
        out["usage"] = usage(input_words(req), output);
    }
    out
}

async fn chat(Extension(ctx): Extension<RequestCtx>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(resp) = check_auth(&headers) {
        return resp;
    }
    let req = match reply::parse_json(&body) {
        Ok(req) => req,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &format!("invalid request: {msg}")),
    };
    if let Some(msg) = chat_problem(&req) {
        return error(StatusCode::BAD_REQUEST, &msg);
    }
    let id = format!("mock-cohere-{}", ctx.id);
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let frames = stream_frames(&req, &ctx.control, &id);
        return stream::sse_response(frames, ctx.control.pacing());
    }
    reply::json(StatusCode::OK, chat_body(&req, &ctx.control, &id))
}

/// The texts of an embed request: `texts`, or the text blocks of each `inputs[].content`.
fn embed_texts(req: &Value) -> Option<Vec<String>> {
    if let Some(texts) = req.get("texts").and_then(Value::as_array) {
        return texts
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .filter(|t| !t.is_empty());
    }
    let inputs = req.get("inputs")?.as_array()?;
    let texts: Vec<String> = inputs
        .iter()
        .map(|i| {
            i.get("content")
                .and_then(Value::as_array)
                .map(|blocks| {
                    blocks
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        })
        .collect();
    (!texts.is_empty()).then_some(texts)
}

/// The embed answer, or the 400 message.
pub fn embed_body(req: &Value, id: &str) -> Result<Value, String> {
    if !req.get("model").is_some_and(Value::is_string) {
        return Err("invalid request: model must be a string".into());
    }
    if !req.get("input_type").is_some_and(Value::is_string) {
        return Err("invalid request: input_type is required for embed v3 and later".into());
    }
    let types = req
        .get("embedding_types")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![json!("float")]);
    if types.iter().any(|t| t != "float") {
        return Err("invalid request: the mock embeds embedding_types [\"float\"] only".into());
    }
    let texts =
        embed_texts(req).ok_or("invalid request: texts must be a non-empty array of strings")?;
    let vectors: Vec<Vec<f64>> = texts.iter().map(|t| embed(t)).collect();
    let tokens: usize = texts.iter().map(|t| count_words(t)).sum();
    Ok(json!({
        "id": id,
        "texts": texts,
        "embeddings": {"float": vectors},
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
        "response_type": "embeddings_by_type",
    }))
}

async fn embed_route(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(resp) = check_auth(&headers) {
        return resp;
    }
    let req = match reply::parse_json(&body) {
        Ok(req) => req,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &format!("invalid request: {msg}")),
    };
    match embed_body(&req, &format!("mock-embed-{}", ctx.id)) {
        Ok(out) => reply::json(StatusCode::OK, out),
        Err(msg) => error(StatusCode::BAD_REQUEST, &msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn data_events(frames: &[Bytes]) -> Vec<(Option<String>, String)> {
        frames
            .iter()
            .map(|f| {
                let text = String::from_utf8_lossy(f).into_owned();
                assert!(text.ends_with("\n\n"), "{text}");
                let mut name = None;
                let mut data = String::new();
                for line in text.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = d.to_owned();
                    }
                }
                (name, data)
            })
            .collect()
    }

    fn events(frames: &[Bytes]) -> Vec<Value> {
        data_events(frames)
            .into_iter()
            .filter(|(_, d)| d != "[DONE]")
            .map(|(name, d)| {
                let v: Value = serde_json::from_str(&d).unwrap();
                assert_eq!(name.as_deref(), v["type"].as_str());
                v
            })
            .collect()
    }

    fn ask(extra: Value) -> Value {
        let mut req = json!({"model": "command-a-03-2025", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]}
        ]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        req
    }

    fn tools() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])
    }

    #[test]
    fn auth_requires_a_bearer_key() {
        let mut h = HeaderMap::new();
        assert!(check_auth(&h).is_some());
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert!(check_auth(&h).is_some());
        h.insert("authorization", HeaderValue::from_static("Bearer "));
        assert!(check_auth(&h).is_some());
        h.insert("authorization", HeaderValue::from_static("bearer co-key"));
        assert!(check_auth(&h).is_none());
        let resp = check_auth(&HeaderMap::new()).unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn refuses_openai_fields_and_missing_parts() {
        assert_eq!(
            chat_problem(&ask(json!({"p": 0.5, "stop_sequences": ["x"]}))),
            None
        );
        let leaked = chat_problem(&ask(json!({"top_p": 0.5}))).unwrap();
        assert!(leaked.contains("\"top_p\""), "{leaked}");
        assert!(chat_problem(&json!({"model": "m", "messages": []})).is_some());
        assert!(chat_problem(&json!({"messages": [{"role": "user", "content": "x"}]})).is_some());
        assert!(chat_problem(&json!([1])).is_some());
    }

    #[test]
    fn counts_words_and_picks_the_tool() {
        let req = ask(json!({}));
        assert_eq!(input_words(&req), 5);
        assert_eq!(tool_to_call(&req), None);
        let req = ask(json!({"tools": tools()}));
        assert_eq!(tool_to_call(&req).as_deref(), Some("get_weather"));
        let answered = json!({"tools": tools(), "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "sunny and warm"}]});
        assert_eq!(tool_to_call(&answered), None);
        assert_eq!(input_words(&answered), 4);
    }

    #[test]
    fn json_text_answer_with_usage() {
        let control = MockControl::default();
        let out = chat_body(&ask(json!({})), &control, "mock-cohere-1");
        assert_eq!(
            out,
            json!({"id": "mock-cohere-1", "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "content": [
                    {"type": "text", "text": "mock reply from command-a-03-2025"}]},
                "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 4},
                    "tokens": {"input_tokens": 5, "output_tokens": 4}}})
        );
        let quiet = MockControl {
            usage: false,
            content: Some("hi there".into()),
            ..MockControl::default()
        };
        let out = chat_body(&ask(json!({"thinking": {"type": "enabled"}})), &quiet, "x");
        assert!(out.get("usage").is_none());
        assert_eq!(
            out["message"]["content"],
            json!([{"type": "thinking", "thinking": THINKING}, {"type": "text", "text": "hi there"}])
        );
    }

    #[test]
    fn json_tool_call_answer() {
        let out = chat_body(
            &ask(json!({"tools": tools()})),
            &MockControl::default(),
            "x",
        );
        assert_eq!(out["finish_reason"], "TOOL_CALL");
        assert_eq!(out["message"]["tool_plan"], TOOL_PLAN);
        assert!(out["message"].get("content").is_none());
        assert_eq!(
            out["message"]["tool_calls"],
            json!([{"id": TOOL_CALL_ID, "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}])
        );
        assert_eq!(out["usage"]["tokens"]["output_tokens"], 11);
    }

    #[test]
    fn text_stream_has_every_event_in_order() {
        let control = MockControl {
            chunks: 3,
            ..MockControl::default()
        };
        let frames = stream_frames(&ask(json!({"stream": true})), &control, "mock-cohere-7");
        let names: Vec<Option<String>> = data_events(&frames).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.last(), Some(&None));
        let evs = events(&frames);
        let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message-start",
                "content-start",
                "content-delta",
                "content-delta",
                "content-delta",
                "content-end",
                "message-end"
            ]
        );
        assert_eq!(evs[0]["id"], "mock-cohere-7");
        let text: String = evs
            .iter()
            .filter_map(|e| {
                e.pointer("/delta/message/content/text")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(text, "w0 w1 w2 ");
        assert_eq!(
            evs[6]["delta"],
            json!({"finish_reason": "COMPLETE", "usage": {
                "billed_units": {"input_tokens": 5, "output_tokens": 3},
                "tokens": {"input_tokens": 5, "output_tokens": 3}}})
        );
        let quiet = MockControl {
            usage: false,
            ..MockControl::default()
        };
        let evs = events(&stream_frames(&ask(json!({})), &quiet, "x"));
        assert_eq!(
            evs.last().unwrap()["delta"],
            json!({"finish_reason": "COMPLETE"})
        );
    }

    #[test]
    fn tool_stream_with_thinking() {
        let req = ask(json!({"stream": true, "tools": tools(), "thinking": {"type": "enabled"}}));
        let evs = events(&stream_frames(&req, &MockControl::default(), "x"));
        let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message-start",
                "content-start",
                "content-delta",
                "content-delta",
                "content-delta",
                "content-end",
                "tool-plan-delta",
                "tool-plan-delta",
                "tool-plan-delta",
                "tool-plan-delta",
                "tool-plan-delta",
                "tool-plan-delta",
                "tool-call-start",
                "tool-call-delta",
                "tool-call-delta",
                "tool-call-delta",
                "tool-call-end",
                "message-end"
            ]
        );
        let thinking: String = evs
            .iter()
            .filter_map(|e| {
                e.pointer("/delta/message/content/thinking")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(thinking, THINKING);
        let plan: String = evs
            .iter()
            .filter_map(|e| {
                e.pointer("/delta/message/tool_plan")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(plan, TOOL_PLAN);
        assert_eq!(
            evs[12]["delta"]["message"]["tool_calls"]["id"],
            TOOL_CALL_ID
        );
        let args: String = evs
            .iter()
            .filter(|e| e["type"] == "tool-call-delta")
            .filter_map(|e| {
                e.pointer("/delta/message/tool_calls/function/arguments")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(args, "{\"location\": \"Paris\"}");
        // 3 thinking words + 6 plan words + 5 for the call.
        assert_eq!(evs[17]["delta"]["finish_reason"], "TOOL_CALL");
        assert_eq!(evs[17]["delta"]["usage"]["tokens"]["output_tokens"], 14);
    }

    #[test]
    fn embed_answers_floats_and_billed_tokens() {
        let req = json!({"model": "embed-v4.0", "texts": ["hello world", "bye"],
            "input_type": "search_document", "embedding_types": ["float"]});
        let out = embed_body(&req, "mock-embed-3").unwrap();
        assert_eq!(out["id"], "mock-embed-3");
        assert_eq!(out["embeddings"]["float"][0], json!(embed("hello world")));
        assert_eq!(out["embeddings"]["float"].as_array().unwrap().len(), 2);
        assert_eq!(out["meta"]["billed_units"]["input_tokens"], 3);
        let inputs = json!({"model": "m", "input_type": "classification",
            "inputs": [{"content": [{"type": "text", "text": "a b"}]}]});
        assert_eq!(embed_body(&inputs, "x").unwrap()["texts"], json!(["a b"]));
        for bad in [
            json!({"model": "m", "texts": ["a"]}),
            json!({"input_type": "search_query", "texts": ["a"]}),
            json!({"model": "m", "input_type": "search_query", "texts": []}),
            json!({"model": "m", "input_type": "search_query", "texts": [1]}),
            json!({"model": "m", "input_type": "search_query", "texts": ["a"], "embedding_types": ["int8"]}),
        ] {
            assert!(embed_body(&bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn failure_is_cohere_shaped() {
        let resp = failure(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
