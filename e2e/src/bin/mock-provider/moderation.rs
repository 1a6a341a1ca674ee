//! An OpenAI-compatible moderation endpoint (`POST /v1/moderations`) that flags configured
//! words, with controllable latency and failure (`POST /__mock/moderation`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::record::{lock, Shared};
use crate::reply;

/// How the moderation endpoint behaves.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Words flagged (case-insensitive substring match) as `violence`.
    pub flag_words: Vec<String>,
    /// Delay before answering, ms.
    pub delay_ms: u64,
    /// Answer with this status (and an error body) instead.
    pub status: Option<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            flag_words: vec!["forbidden".into()],
            delay_ms: 0,
            status: None,
        }
    }
}

/// `/v1/moderations` and its control endpoint.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/moderations", post(moderate))
        .route("/__mock/moderation", post(configure))
}

async fn configure(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Settings>(&body) {
        Ok(settings) => {
            *lock(&shared.moderation) = settings;
            reply::json(StatusCode::OK, json!({"ok": true}))
        }
        Err(e) => reply::invalid_request(&format!("invalid moderation settings: {e}")),
    }
}

/// One result per input piece.
pub fn results(inputs: &[String], words: &[String]) -> Vec<Value> {
    inputs
        .iter()
        .map(|text| {
            let lower = text.to_lowercase();
            let hit = words.iter().any(|w| lower.contains(&w.to_lowercase()));
            json!({
                "flagged": hit,
                "categories": {"violence": hit, "harassment": false, "self-harm": false},
                "category_scores": {"violence": if hit { 0.97 } else { 0.01 }, "harassment": 0.02, "self-harm": 0.001},
            })
        })
        .collect()
}

async fn moderate(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let settings = lock(&shared.moderation).clone();
    tokio::time::sleep(Duration::from_millis(settings.delay_ms)).await;
    if let Some(code) = settings.status.and_then(|s| StatusCode::from_u16(s).ok()) {
        return reply::mock_failure(code);
    }
    let req = match reply::parse_json(&body) {
        Ok(req) => req,
        Err(msg) => return reply::invalid_request(&msg),
    };
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return reply::invalid_request("input must be a string or an array of strings"),
    };
    reply::json(
        StatusCode::OK,
        json!({"id": "modr-mock", "model": req.get("model").cloned().unwrap_or(json!("omni-moderation-latest")),
               "results": results(&inputs, &settings.flag_words)}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_configured_words() {
        let r = results(
            &["a FORBIDDEN b".into(), "fine".into()],
            &["forbidden".into()],
        );
        assert_eq!(r[0]["flagged"], true);
        assert_eq!(r[1]["flagged"], false);
    }
}
