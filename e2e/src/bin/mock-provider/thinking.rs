//! OpenAI-compatible chat of two types with their own thinking switches, shaped after their API
//! references: ZhipuAI (`POST /api/paas/v4/chat/completions`, `thinking: {type: enabled |
//! disabled, clear_thinking?}`, reasoning as `reasoning_content`) and OpenRouter (`POST
//! /api/v1/chat/completions`, `reasoning: {max_tokens | effort | enabled}`, reasoning as
//! `reasoning`).
//!
//! ZhipuAI thinks unless `thinking.type` is `disabled` (GLM-4.5's default); OpenRouter thinks
//! when `reasoning` asks it to. The reasoning is `thought about: <last user text>`; the answer
//! `mock reply from <model>`. JSON and SSE (`stream_options.include_usage` adds the usage chunk).
//! Both refuse fields the other gateway spelling would leak (`reasoning_max_tokens`; ZhipuAI also
//! `reasoning_effort` and `reasoning`), so an untranslated request fails loudly (400). Word
//! counts stand in for tokens.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::RequestCtx;
use crate::openai::{message_words, split_pieces};
use crate::reply::{self, count_words};
use crate::stream::{self, sse_data, sse_done};

/// ZhipuAI chat.
pub const ZHIPU_PATH: &str = "/api/paas/v4/chat/completions";
/// OpenRouter chat.
pub const OPENROUTER_PATH: &str = "/api/v1/chat/completions";

/// The routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(ZHIPU_PATH, post(zhipu))
        .route(OPENROUTER_PATH, post(openrouter))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zhipu,
    OpenRouter,
}

/// Whether the model thinks for this request, or why the request is refused.
fn thinks(req: &Value, kind: Kind) -> Result<bool, String> {
    if req.get("reasoning_max_tokens").is_some() {
        return Err("unknown field reasoning_max_tokens".into());
    }
    match kind {
        Kind::Zhipu => {
            for field in ["reasoning_effort", "reasoning"] {
                if req.get(field).is_some() {
                    return Err(format!("unknown field {field}"));
                }
            }
            match req.pointer("/thinking/type").and_then(Value::as_str) {
                None | Some("enabled") => Ok(true),
                Some("disabled") => Ok(false),
                Some(other) => Err(format!(
                    "thinking.type {other:?} is not enabled or disabled"
                )),
            }
        }
        Kind::OpenRouter => {
            let r = req.get("reasoning");
            if r.is_some_and(|r| r.get("max_tokens").is_some() && r.get("effort").is_some()) {
                return Err("reasoning: only one of max_tokens and effort".into());
            }
            Ok(
                r.is_some_and(|r| r.get("enabled") != Some(&Value::Bool(false)))
                    || req.get("reasoning_effort").is_some(),
            )
        }
    }
}

fn last_user_text(req: &Value) -> String {
    req.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn chat(ctx: &RequestCtx, body: &[u8], kind: Kind) -> Response {
    let req = match reply::parse_json(body) {
        Ok(v) => v,
        Err(msg) => return reply::invalid_request(&msg),
    };
    let think = match thinks(&req, kind) {
        Ok(t) => t,
        Err(msg) => return reply::invalid_request(&msg),
    };
    let field = match kind {
        Kind::Zhipu => "reasoning_content",
        Kind::OpenRouter => "reasoning",
    };
    let model = req["model"].as_str().unwrap_or("unknown").to_string();
    let id = format!("chatcmpl-thinking-{}", ctx.id);
    let reasoning = think.then(|| format!("thought about: {}", last_user_text(&req)));
    let text = ctx
        .control
        .content
        .clone()
        .unwrap_or_else(|| format!("mock reply from {model}"));
    let prompt = message_words(&req);
    let completion = count_words(&text) + reasoning.as_deref().map_or(0, count_words);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion});
    if req.get("stream") == Some(&Value::Bool(true)) {
        let chunk = |delta: Value, finish: Option<&str>| {
            sse_data(&json!({"id": id, "object": "chat.completion.chunk",
                "created": reply::unix_now(), "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
        };
        let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        for piece in reasoning.as_deref().map(split_pieces).unwrap_or_default() {
            frames.push(chunk(json!({ field: piece }), None));
        }
        for piece in split_pieces(&text) {
            frames.push(chunk(json!({ "content": piece }), None));
        }
        frames.push(chunk(json!({}), Some("stop")));
        if req.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
            frames.push(sse_data(
                &json!({"id": id, "object": "chat.completion.chunk",
                "created": reply::unix_now(), "model": model, "choices": [], "usage": usage}),
            ));
        }
        frames.push(sse_done());
        return stream::sse_response(frames, ctx.control.pacing());
    }
    let mut message = json!({"role": "assistant", "content": text});
    if let Some(r) = reasoning {
        message[field] = Value::String(r);
    }
    reply::json(
        StatusCode::OK,
        json!({"id": id, "object": "chat.completion", "created": reply::unix_now(),
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage}),
    )
}

async fn zhipu(Extension(ctx): Extension<RequestCtx>, body: Bytes) -> Response {
    chat(&ctx, &body, Kind::Zhipu)
}

async fn openrouter(Extension(ctx): Extension<RequestCtx>, body: Bytes) -> Response {
    chat(&ctx, &body, Kind::OpenRouter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_switches() {
        assert_eq!(thinks(&json!({}), Kind::Zhipu), Ok(true));
        assert_eq!(
            thinks(&json!({"thinking": {"type": "disabled"}}), Kind::Zhipu),
            Ok(false)
        );
        assert!(thinks(&json!({"reasoning_effort": "low"}), Kind::Zhipu).is_err());
        assert_eq!(thinks(&json!({}), Kind::OpenRouter), Ok(false));
        assert_eq!(
            thinks(&json!({"reasoning": {"max_tokens": 10}}), Kind::OpenRouter),
            Ok(true)
        );
        assert!(thinks(&json!({"reasoning_max_tokens": 10}), Kind::OpenRouter).is_err());
    }
}
