//! Shared state: the request log, forced failures, and the `/__mock/*`
//! control endpoints.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reply;

/// One received request, as returned by `GET /__mock/requests`.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lowercased names; repeated headers joined with ", "; HTTP/2
    /// `:authority` appears as `host`.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub body_json: Option<Value>,
}

impl Recorded {
    /// Captures a request from its head and buffered body.
    pub fn capture(parts: &Parts, body: &[u8]) -> Self {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        // HTTP/2 carries the host as `:authority`, which hyper puts in the URI.
        if let Some(authority) = parts.uri.authority() {
            headers
                .entry("host".to_owned())
                .or_insert_with(|| authority.as_str().to_owned());
        }
        Self {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            body: String::from_utf8_lossy(body).into_owned(),
            body_json: serde_json::from_slice(body).ok(),
        }
    }
}

/// A pending `POST /__mock/fail` rule.
#[derive(Clone, Debug, Deserialize)]
pub struct FailRule {
    status: u16,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    path_prefix: Option<String>,
    /// Only requests carrying this header value: `["authorization", "Bearer k1"]`.
    #[serde(default)]
    header: Option<(String, String)>,
}

fn one() -> u32 {
    1
}

/// State shared by all connections.
#[derive(Default)]
pub struct Shared {
    requests: Mutex<Vec<Recorded>>,
    failures: Mutex<Vec<FailRule>>,
    counter: AtomicU64,
    /// Behaviour of the moderation endpoint.
    pub moderation: Mutex<crate::moderation::Settings>,
    /// Behaviour of the content security endpoint.
    pub green: Mutex<crate::green::Settings>,
    /// Signature nonces the content security endpoint has seen.
    pub green_nonces: Mutex<crate::green::Nonces>,
}

/// Locks a mutex, ignoring poisoning (the data stays usable).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Appends a request to the log and returns its id (1, 2, ...).
    pub fn record(&self, parts: &Parts, body: &[u8]) -> u64 {
        let entry = Recorded::capture(parts, body);
        let mut requests = lock(&self.requests);
        // Taken under the lock so ids follow log order.
        let id = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        requests.push(entry);
        id
    }

    /// Consumes one forced failure matching `path` and `headers`, if any.
    pub fn take_failure(&self, path: &str, headers: &HeaderMap) -> Option<StatusCode> {
        let mut failures = lock(&self.failures);
        let index = failures.iter().position(|rule| {
            let path_ok = rule
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix));
            let header_ok = rule.header.as_ref().is_none_or(|(name, value)| {
                headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v == value)
            });
            path_ok && header_ok
        })?;
        let rule = &mut failures[index];
        let status = StatusCode::from_u16(rule.status).ok();
        rule.count = rule.count.saturating_sub(1);
        if rule.count == 0 {
            failures.remove(index);
        }
        status
    }
}

/// The `/__mock/*` control routes.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__mock/requests", get(list).delete(clear))
        .route("/__mock/fail", post(fail))
}

async fn list(State(shared): State<Arc<Shared>>) -> Json<Vec<Recorded>> {
    Json(lock(&shared.requests).clone())
}

async fn clear(State(shared): State<Arc<Shared>>) -> StatusCode {
    lock(&shared.requests).clear();
    lock(&shared.failures).clear();
    *lock(&shared.moderation) = crate::moderation::Settings::default();
    *lock(&shared.green) = crate::green::Settings::default();
    StatusCode::NO_CONTENT
}

async fn fail(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let rule: FailRule = match serde_json::from_slice(&body) {
        Ok(rule) => rule,
        Err(e) => return bad_rule(&format!("invalid fail rule: {e}")),
    };
    if StatusCode::from_u16(rule.status).is_err() {
        return bad_rule(&format!("invalid status {}", rule.status));
    }
    if rule.count > 0 {
        lock(&shared.failures).push(rule);
    }
    StatusCode::NO_CONTENT.into_response()
}

fn bad_rule(message: &str) -> Response {
    reply::error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        "invalid_fail_rule",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::post(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        match builder.body(()) {
            Ok(req) => req.into_parts().0,
            Err(e) => unreachable!("bad test request: {e}"),
        }
    }

    #[test]
    fn captures_request() {
        let p = parts(
            "/v1/x?a=1",
            &[("X-Foo", "1"), ("x-foo", "2"), ("content-type", "json")],
        );
        let rec = Recorded::capture(&p, br#"{"a":1}"#);
        assert_eq!(rec.method, "POST");
        assert_eq!(rec.path, "/v1/x");
        assert_eq!(rec.query.as_deref(), Some("a=1"));
        assert_eq!(rec.headers.get("x-foo").map(String::as_str), Some("1, 2"));
        assert_eq!(rec.body_json, Some(serde_json::json!({"a": 1})));
        assert_eq!(Recorded::capture(&p, b"nope").body_json, None);
    }

    #[test]
    fn failures_match_prefix_and_count_down() {
        let shared = Shared::default();
        lock(&shared.failures).push(FailRule {
            status: 503,
            count: 2,
            path_prefix: Some("/v1/chat".into()),
            header: None,
        });
        let none = HeaderMap::new();
        assert_eq!(shared.take_failure("/v1/embeddings", &none), None);
        assert_eq!(
            shared.take_failure("/v1/chat/completions", &none),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert!(shared.take_failure("/v1/chat/completions", &none).is_some());
        assert_eq!(shared.take_failure("/v1/chat/completions", &none), None);
    }
}
