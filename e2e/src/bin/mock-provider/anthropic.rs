//! Anthropic Messages wire format (`POST /v1/messages`): JSON and SSE with every event type,
//! tool use, and usage with cache fields, shaped after Anthropic's public API reference.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::RequestCtx;
use crate::openai::stream_pieces;
use crate::reply::{self, count_words};
use crate::stream;

/// Id of the tool call the mock makes.
const TOOL_USE_ID: &str = "toolu_mock_1";
/// Tool input, streamed in three pieces.
const TOOL_INPUT: [&str; 3] = ["{\"locat", "ion\": \"Pa", "ris\"}"];
/// Text said before a tool call.
const TOOL_PREAMBLE: &str = "Checking the weather.";

/// The Anthropic routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/v1/messages", post(messages))
}

/// An Anthropic-shaped error.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    reply::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// The reply for `x-mock-status` / `/__mock/fail` on `/v1/messages`.
pub fn failure(status: StatusCode) -> Response {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    error(status, kind, &format!("mock failure {}", status.as_u16()))
}

/// Words of every text in `system` and `messages` (strings and text blocks).
fn input_words(req: &Value) -> usize {
    fn text_words(v: &Value) -> usize {
        match v {
            Value::String(s) => count_words(s),
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .map(count_words)
                .sum(),
            _ => 0,
        }
    }
    let system = req.get("system").map(text_words).unwrap_or(0);
    let messages: usize = req
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|m| m.get("content"))
                .map(text_words)
                .sum()
        })
        .unwrap_or(0);
    system + messages
}

/// The first tool's name when the last turn is the user's (not a tool result).
fn tool_to_use(req: &Value) -> Option<String> {
    let last = req.get("messages")?.as_array()?.last()?;
    if last.get("role")? != "user" {
        return None;
    }
    let is_result = last
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|b| b.iter().any(|b| b["type"] == "tool_result"));
    if is_result {
        return None;
    }
    req.get("tools")?
        .as_array()?
        .first()?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

/// Whether the request carries an OAuth token as Anthropic takes one (Claude Code):
/// `Authorization: Bearer …` with the `oauth-2025-04-20` beta.
fn oauth(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("authorization").is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7)
        && header("anthropic-beta")
            .is_some_and(|b| b.split(',').any(|f| f.trim() == "oauth-2025-04-20"))
}

/// Rejects what Anthropic rejects: missing key, version or required fields.
fn check(headers: &HeaderMap, req: &Value) -> Option<Response> {
    if !headers.contains_key("x-api-key") && !oauth(headers) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required (or an OAuth bearer token with the oauth beta)",
        ));
    }
    if !headers.contains_key("anthropic-version") {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        ));
    }
    for field in ["model", "max_tokens", "messages"] {
        if req.get(field).is_none() {
            return Some(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("{field}: Field required"),
            ));
        }
    }
    let thinking = req.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled");
    let messages = req.get("messages").and_then(Value::as_array);
    if thinking && messages.is_some_and(|m| final_turn_lacks_thinking(m, "type", "tool_use")) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is \
             enabled, a final `assistant` message must start with a thinking block.",
        ));
    }
    None
}

/// Whether the last assistant message calls a tool without starting with a thinking block (what
/// Anthropic refuses while thinking is on). `kind` names a block's type: Anthropic's `type`
/// value, or Bedrock's block key (`toolUse`, `reasoningContent`).
pub fn final_turn_lacks_thinking(messages: &[Value], kind: &str, tool: &str) -> bool {
    let Some(blocks) = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "assistant")
        .and_then(|m| m["content"].as_array())
    else {
        return false;
    };
    let is = |b: &Value, name: &str| match kind {
        "type" => b["type"] == name,
        _ => b.get(name).is_some(),
    };
    let thinks = blocks.first().is_some_and(|b| {
        ["thinking", "redacted_thinking", "reasoningContent"]
            .iter()
            .any(|n| is(b, n))
    });
    blocks.iter().any(|b| is(b, tool)) && !thinks
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn messages(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match reply::parse_json(&body) {
        Ok(req) => req,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", &msg),
    };
    if let Some(resp) = check(&headers, &req) {
        return resp;
    }
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let id = format!("msg_mock_{}", ctx.id);
    let input = input_words(&req);
    let control = &ctx.control;
    let tool = tool_to_use(&req);
    let usage = |output: usize| {
        json!({"input_tokens": input, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 0, "output_tokens": output})
    };

    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let mut frames = vec![
            event(
                "message_start",
                &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage(1)}}),
            ),
            event("ping", &json!({"type": "ping"})),
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ),
        ];
        let text_delta = |text: &str| {
            event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}}),
            )
        };
        let (stop, output) = match &tool {
            Some(name) => {
                frames.push(text_delta(TOOL_PREAMBLE));
                frames.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ));
                frames.push(event("content_block_start", &json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {}}})));
                for piece in TOOL_INPUT {
                    frames.push(event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    ));
                }
                frames.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 1}),
                ));
                ("tool_use", count_words(TOOL_PREAMBLE) + 5)
            }
            None => {
                let pieces = stream_pieces(control);
                for piece in &pieces {
                    frames.push(text_delta(piece));
                }
                frames.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ));
                ("end_turn", pieces.len())
            }
        };
        let usage_delta = if control.usage {
            json!({"output_tokens": output})
        } else {
            json!({})
        };
        frames.push(event(
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": usage_delta}),
        ));
        frames.push(event("message_stop", &json!({"type": "message_stop"})));
        return stream::sse_response(frames, control.pacing());
    }

    let (content, stop, output) = match &tool {
        Some(name) => (
            json!([{"type": "text", "text": TOOL_PREAMBLE},
                   {"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {"location": "Paris"}}]),
            "tool_use",
            count_words(TOOL_PREAMBLE) + 5,
        ),
        None => {
            let text = control
                .content
                .clone()
                .unwrap_or_else(|| format!("mock reply from {model}"));
            let words = count_words(&text);
            (json!([{"type": "text", "text": text}]), "end_turn", words)
        }
    };
    let mut out = json!({"id": id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": null});
    if control.usage {
        out["usage"] = usage(output);
    }
    reply::json(StatusCode::OK, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_system_and_block_text() {
        let req = json!({"system": [{"type": "text", "text": "be brief"}],
            "messages": [{"role": "user", "content": "one two three"},
                         {"role": "assistant", "content": [{"type": "text", "text": "four"}]}]});
        assert_eq!(input_words(&req), 6);
    }

    #[test]
    fn thinking_needs_the_final_tool_turn_to_start_with_thinking() {
        let tool_turn = |first: Value| {
            vec![
                json!({"role": "user", "content": "q"}),
                json!({"role": "assistant", "content": [first,
                    {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}),
                json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}),
            ]
        };
        assert!(final_turn_lacks_thinking(
            &tool_turn(json!({"type": "text", "text": "x"})),
            "type",
            "tool_use"
        ));
        assert!(!final_turn_lacks_thinking(
            &tool_turn(json!({"type": "thinking", "thinking": "x", "signature": "s"})),
            "type",
            "tool_use"
        ));
        let converse = vec![json!({"role": "assistant", "content": [{"toolUse": {}}]})];
        assert!(final_turn_lacks_thinking(&converse, "key", "toolUse"));
        assert!(!final_turn_lacks_thinking(&[], "type", "tool_use"));
    }

    #[test]
    fn tool_only_after_a_user_question() {
        let tools = json!([{"name": "get_weather", "input_schema": {}}]);
        let ask = json!({"tools": tools, "messages": [{"role": "user", "content": "weather?"}]});
        assert_eq!(tool_to_use(&ask).as_deref(), Some("get_weather"));
        let answered = json!({"tools": tools, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": "sunny"}]}]});
        assert_eq!(tool_to_use(&answered), None);
    }
}
