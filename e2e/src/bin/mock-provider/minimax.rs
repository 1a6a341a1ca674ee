//! MiniMax ChatCompletion Pro (`POST /v1/text/chatcompletion_pro?GroupId=…`), shaped after
//! MiniMax's API reference: `{model, messages: [{sender_type, sender_name, text}], bot_setting,
//! reply_constraints, stream?, tokens_to_generate?, temperature?, top_p?, mask_sensitive_info?}`.
//!
//! Answers `{created, model, reply, choices: [{finish_reason, messages}], usage: {total_tokens},
//! input_sensitive, output_sensitive, id, base_resp: {status_code: 0, status_msg: ""}}`. A stream
//! sends `data: {…}` events with the new text in `choices[0].messages[0].text`, and a last one
//! repeating the whole reply with the finish reason, usage and `base_resp`. Failures answer HTTP
//! 200 with a non-zero `base_resp.status_code` (1004 without `Authorization: Bearer`, 2013 for
//! a missing `GroupId` or a field MiniMax does not define); `x-mock-minimax-error: <code>` forces
//! one. Word counts stand in for tokens.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::RequestCtx;
use crate::openai::stream_pieces;
use crate::reply::{self, count_words};
use crate::stream;

/// The ChatCompletion Pro path.
pub const PRO_PATH: &str = "/v1/text/chatcompletion_pro";

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "bot_setting",
    "reply_constraints",
    "stream",
    "tokens_to_generate",
    "temperature",
    "top_p",
    "mask_sensitive_info",
    "sample_messages",
    "plugins",
    "functions",
];

/// The routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(PRO_PATH, post(pro))
}

/// A failure as MiniMax answers it (HTTP 200).
fn failure(code: i64, msg: &str) -> Response {
    reply::json(
        StatusCode::OK,
        json!({"base_resp": {"status_code": code, "status_msg": msg}}),
    )
}

/// What is wrong with a request, as MiniMax's code and message.
pub fn check(req: &Value, group: bool) -> Result<(), (i64, String)> {
    let bad = |m: String| Err((2013, m));
    if !group {
        return bad("invalid params, GroupId is required".into());
    }
    let Some(obj) = req.as_object() else {
        return bad("invalid params, body must be a JSON object".into());
    };
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return bad(format!("invalid params, unknown field {k}"));
    }
    if req.get("model").and_then(Value::as_str).is_none() {
        return bad("invalid params, model is required".into());
    }
    let messages = req.get("messages").and_then(Value::as_array);
    if messages.is_none_or(|m| m.is_empty()) {
        return bad("invalid params, messages is required".into());
    }
    for m in messages.into_iter().flatten() {
        let kind = m.get("sender_type").and_then(Value::as_str);
        if !matches!(kind, Some("USER" | "BOT" | "FUNCTION"))
            || m.get("sender_name").and_then(Value::as_str).is_none()
            || m.get("text").and_then(Value::as_str).is_none()
        {
            return bad(format!("invalid params, bad message {m}"));
        }
    }
    let settings = req.get("bot_setting").and_then(Value::as_array);
    if settings.is_none_or(|s| s.is_empty()) {
        return bad("invalid params, bot_setting is required".into());
    }
    let bot = req
        .pointer("/reply_constraints/sender_name")
        .and_then(Value::as_str);
    let named = settings
        .into_iter()
        .flatten()
        .any(|s| s.get("bot_name").and_then(Value::as_str) == bot);
    if req.pointer("/reply_constraints/sender_type") != Some(&json!("BOT")) || !named {
        return bad("invalid params, reply_constraints must name a bot of bot_setting".into());
    }
    Ok(())
}

fn input_words(req: &Value) -> usize {
    let texts = |key: &str, field: &str| -> usize {
        req.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get(field).and_then(Value::as_str))
            .map(count_words)
            .sum()
    };
    texts("messages", "text") + texts("bot_setting", "content")
}

async fn pro(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7);
    if !bearer {
        return failure(1004, "authorization failure");
    }
    if let Some(code) = headers
        .get("x-mock-minimax-error")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
    {
        return failure(code, "mock failure");
    }
    let group = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv.strip_prefix("GroupId=").is_some_and(|g| !g.is_empty()));
    let req = match reply::parse_json(&body) {
        Ok(v) => v,
        Err(msg) => return failure(2013, &msg),
    };
    if let Err((code, msg)) = check(&req, group) {
        return failure(code, &msg);
    }
    let model = req["model"].as_str().unwrap_or("unknown").to_string();
    let bot = req
        .pointer("/reply_constraints/sender_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let id = format!("mock-minimax-{}", ctx.id);
    let prompt = input_words(&req);
    let message = |text: &str| json!({"sender_type": "BOT", "sender_name": bot, "text": text});
    let whole = |text: &str| {
        let output = count_words(text);
        json!({"created": reply::unix_now(), "model": model, "reply": text, "id": id,
            "choices": [{"finish_reason": "stop", "messages": [message(text)]}],
            "usage": {"total_tokens": prompt + output},
            "input_sensitive": false, "output_sensitive": false,
            "base_resp": {"status_code": 0, "status_msg": ""}})
    };
    if req.get("stream") == Some(&Value::Bool(true)) {
        let pieces = stream_pieces(&ctx.control);
        let mut frames: Vec<Bytes> = pieces
            .iter()
            .map(|p| {
                stream::sse_data(&json!({"created": reply::unix_now(), "model": model,
                    "reply": "", "choices": [{"messages": [message(p)]}], "output_sensitive": false}))
            })
            .collect();
        frames.push(stream::sse_data(&whole(&pieces.concat())));
        return stream::sse_response(frames, ctx.control.pacing());
    }
    let text = ctx
        .control
        .content
        .clone()
        .unwrap_or_else(|| format!("mock reply from {model}"));
    reply::json(StatusCode::OK, whole(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ai_proxy::translate::minimax::to_minimax_pro_request;

    #[test]
    fn the_plugin_request_passes_the_checks() {
        let chat = serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}))
        .unwrap();
        let req = to_minimax_pro_request(&chat, "abab6.5s-chat").unwrap();
        assert_eq!(check(&req, true), Ok(()));
        assert_eq!(check(&req, false).unwrap_err().0, 2013);
        let openai = json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
        assert!(check(&openai, true).is_err());
        assert_eq!(input_words(&req), 3);
    }
}
