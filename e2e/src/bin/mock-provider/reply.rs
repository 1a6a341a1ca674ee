//! Small response helpers shared by the provider modules.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// A JSON response with a status.
pub fn json(status: StatusCode, value: Value) -> Response {
    (status, Json(value)).into_response()
}

/// An OpenAI-style error: `{"error":{"message","type","code"}}`.
pub fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    json(
        status,
        json!({"error": {"message": message, "type": kind, "code": code}}),
    )
}

/// The error reply for `x-mock-status` and `/__mock/fail`.
pub fn mock_failure(status: StatusCode) -> Response {
    let code = status.as_u16().to_string();
    error(status, &format!("mock failure {code}"), "mock_error", &code)
}

/// A 400 for a malformed request body.
pub fn invalid_request(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        "invalid_request",
    )
}

/// Parses a request body as JSON; the error is the 400 message.
pub fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

/// Fallback for unknown paths.
pub async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("unknown path {}", req.uri().path()),
        "invalid_request_error",
        "not_found",
    )
}

/// Fallback for a known path with the wrong method.
pub async fn method_not_allowed(req: Request) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "method {} not allowed on {}",
            req.method(),
            req.uri().path()
        ),
        "invalid_request_error",
        "method_not_allowed",
    )
}

/// Whitespace-separated word count, the mock's notion of tokens.
pub fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words() {
        assert_eq!(count_words(""), 0);
        assert_eq!(count_words("  "), 0);
        assert_eq!(count_words("one"), 1);
        assert_eq!(count_words(" two\twords\n"), 2);
    }
}
