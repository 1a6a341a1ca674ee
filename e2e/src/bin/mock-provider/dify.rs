//! Dify app API (Higress type `dify`), shaped after Dify's service API reference:
//! `POST /v1/chat-messages` `{query, inputs, response_mode, user, conversation_id?, files?,
//! auto_generate_name?}`, `POST /v1/completion-messages` and `POST /v1/workflows/run`
//! `{inputs, response_mode, user, files?}`.
//!
//! Blocking answers: chat and completion `{event: "message", task_id, id, message_id,
//! conversation_id, mode, answer, metadata: {usage}, created_at}`; workflows `{workflow_run_id,
//! task_id, data: {id, workflow_id, status, outputs: {text}, total_tokens, …}}`. Streaming
//! answers are `data: {"event": "message" | "message_end" | "workflow_finished", …}` events.
//! The answer quotes the query it got (`mock answer to: <query>`), so a test sees what Dify was
//! asked. Errors are `{code, message, status}`: 401 without `Authorization: Bearer`, 400
//! `invalid_param` for a field Dify does not define or a missing one. Word counts stand in for
//! tokens.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::RequestCtx;
use crate::reply::{self, count_words};
use crate::stream;

/// The routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/v1/chat-messages", post(chat))
        .route("/v1/completion-messages", post(completion))
        .route("/v1/workflows/run", post(workflow))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    reply::json(
        status,
        json!({"code": code, "message": message, "status": status.as_u16()}),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum App {
    Chat,
    Completion,
    Workflow,
}

/// What is wrong with a request body for the app, as Dify's 400 message.
fn check(req: &Value, app: App) -> Result<(), String> {
    let allowed: &[&str] = match app {
        App::Chat => &[
            "query",
            "inputs",
            "response_mode",
            "user",
            "conversation_id",
            "files",
            "auto_generate_name",
        ],
        App::Completion | App::Workflow => &["inputs", "response_mode", "user", "files"],
    };
    let obj = req.as_object().ok_or("body must be a JSON object")?;
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown field {k}"));
    }
    if !req.get("inputs").is_some_and(Value::is_object) {
        return Err("inputs is required".into());
    }
    if req.get("user").and_then(Value::as_str).is_none() {
        return Err("user is required".into());
    }
    match req.get("response_mode").and_then(Value::as_str) {
        Some("blocking" | "streaming") => {}
        _ => return Err("response_mode must be blocking or streaming".into()),
    }
    if app == App::Chat && req.get("query").and_then(Value::as_str).is_none() {
        return Err("query is required".into());
    }
    Ok(())
}

/// The text the app was asked: `query`, else the first string input.
fn asked(req: &Value) -> String {
    req.get("query")
        .and_then(Value::as_str)
        .or_else(|| {
            req.get("inputs")
                .and_then(Value::as_object)
                .and_then(|m| m.values().find_map(Value::as_str))
        })
        .unwrap_or_default()
        .to_string()
}

fn answer(ctx: &RequestCtx, headers: &HeaderMap, body: &[u8], app: App) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7);
    if !bearer {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Access token is invalid",
        );
    }
    let req = match reply::parse_json(body) {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "invalid_param", &msg),
    };
    if let Err(msg) = check(&req, app) {
        return error(StatusCode::BAD_REQUEST, "invalid_param", &msg);
    }
    let query = asked(&req);
    let text = ctx
        .control
        .content
        .clone()
        .unwrap_or_else(|| format!("mock answer to: {query}"));
    let (prompt, completion) = (count_words(&query), count_words(&text));
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion});
    let id = format!("mock-dify-{}", ctx.id);
    let conversation = req
        .get("conversation_id")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map_or_else(|| format!("conv-{}", ctx.id), str::to_string);
    let created = reply::unix_now();
    let streaming = req["response_mode"] == "streaming";
    if app == App::Workflow {
        let data = json!({"id": id, "workflow_id": "wf-mock", "status": "succeeded",
            "outputs": {"text": text}, "error": null, "elapsed_time": 0.1,
            "total_tokens": prompt + completion, "total_steps": 3, "created_at": created,
            "finished_at": created});
        if streaming {
            let frames = vec![
                stream::sse_data(&json!({"event": "workflow_started", "task_id": id,
                    "workflow_run_id": id, "data": {"id": id, "workflow_id": "wf-mock",
                    "created_at": created}})),
                stream::sse_data(&json!({"event": "workflow_finished", "task_id": id,
                    "workflow_run_id": id, "data": data})),
            ];
            return stream::sse_response(frames, ctx.control.pacing());
        }
        return reply::json(
            StatusCode::OK,
            json!({"workflow_run_id": id, "task_id": id, "data": data}),
        );
    }
    let mode = if app == App::Chat {
        "chat"
    } else {
        "completion"
    };
    if streaming {
        let mut frames: Vec<Bytes> = crate::openai::split_pieces(&text)
            .iter()
            .map(|piece| {
                stream::sse_data(&json!({"event": "message", "task_id": id, "message_id": id,
                    "conversation_id": conversation, "answer": piece, "created_at": created}))
            })
            .collect();
        frames.push(stream::sse_data(
            &json!({"event": "message_end", "task_id": id,
            "message_id": id, "conversation_id": conversation,
            "metadata": {"usage": usage}}),
        ));
        return stream::sse_response(frames, ctx.control.pacing());
    }
    reply::json(
        StatusCode::OK,
        json!({"event": "message", "task_id": id, "id": id, "message_id": id,
            "conversation_id": conversation, "mode": mode, "answer": text,
            "metadata": {"usage": usage}, "created_at": created}),
    )
}

async fn chat(Extension(ctx): Extension<RequestCtx>, headers: HeaderMap, body: Bytes) -> Response {
    answer(&ctx, &headers, &body, App::Chat)
}

async fn completion(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&ctx, &headers, &body, App::Completion)
}

async fn workflow(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&ctx, &headers, &body, App::Workflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_the_asked_text() {
        let chat = json!({"query": "q", "inputs": {}, "response_mode": "blocking", "user": "u"});
        assert_eq!(check(&chat, App::Chat), Ok(()));
        assert!(check(&chat, App::Workflow).is_err());
        let openai =
            json!({"messages": [], "inputs": {}, "response_mode": "blocking", "user": "u"});
        assert!(check(&openai, App::Chat).is_err());
        let wf = json!({"inputs": {"text": "hi there"}, "response_mode": "streaming", "user": "u"});
        assert_eq!(check(&wf, App::Workflow), Ok(()));
        assert_eq!(asked(&wf), "hi there");
    }
}
