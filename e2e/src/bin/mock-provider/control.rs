//! Per-request control through `x-mock-*` headers, and the middleware that
//! records each request and applies delay, forced failures and resets.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::conn::ConnHandle;
use crate::record::Shared;
use crate::reply;
use crate::stream::{self, Pacing, Streamed};

/// Largest request body the mock buffers.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Default number of content chunks in a stream.
pub const DEFAULT_CHUNKS: usize = 5;

/// Behaviour requested by the client through `x-mock-*` headers.
#[derive(Clone, Debug, PartialEq)]
pub struct MockControl {
    /// `x-mock-status`: fail with this status.
    pub status: Option<StatusCode>,
    /// `x-mock-delay-ms`: wait before sending response headers.
    pub delay: Duration,
    /// `x-mock-chunks`: number of content chunks in a stream.
    pub chunks: usize,
    /// `x-mock-piece-bytes`: pad each default stream piece to this many bytes.
    pub piece_bytes: Option<usize>,
    /// `x-mock-chunk-delay-ms`: pause between stream frames.
    pub chunk_delay: Duration,
    /// `x-mock-reset-after`: abort the connection after this many frames.
    pub reset_after: Option<usize>,
    /// `x-mock-one-write: 1`: send a stream's frames as one body chunk (one write).
    pub one_write: bool,
    /// `x-mock-content`: reply text override.
    pub content: Option<String>,
    /// False when `x-mock-usage: none`.
    pub usage: bool,
    /// `x-mock-garbage`: answer 200 with a broken body instead of the provider's answer.
    pub garbage: Option<Garbage>,
}

/// Broken answers a provider (or a proxy in front of it) can give with status 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// An HTML error page (`text/html`).
    Html,
    /// JSON cut off in the middle.
    Truncated,
    /// JSON of the wrong shape: numbers for strings, strings for objects.
    Types,
}

impl Garbage {
    fn parse(v: &str) -> Result<Garbage, String> {
        match v.trim() {
            "html" => Ok(Garbage::Html),
            "truncated" => Ok(Garbage::Truncated),
            "types" => Ok(Garbage::Types),
            other => Err(format!(
                "invalid x-mock-garbage header: {other:?} (html, truncated or types)"
            )),
        }
    }

    /// The answer: 200, in the content type the client asked for (`stream`: SSE framing).
    pub fn response(self, stream: bool) -> Response {
        let (content_type, body) = match (self, stream) {
            (Garbage::Html, _) => (
                "text/html",
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>".to_string(),
            ),
            (Garbage::Truncated, false) => (
                "application/json",
                r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assi"#.to_string(),
            ),
            (Garbage::Truncated, true) => (
                "text/event-stream",
                "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choi".to_string(),
            ),
            (Garbage::Types, false) => (
                "application/json",
                r#"{"id":5,"type":7,"choices":"none","content":"x","usage":"lots","candidates":"x"}"#.to_string(),
            ),
            (Garbage::Types, true) => (
                "text/event-stream",
                "data: {\"id\":5,\"type\":7,\"choices\":\"none\",\"delta\":3}\n\ndata: [1,2]\n\n".to_string(),
            ),
        };
        (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response()
    }
}

impl Default for MockControl {
    fn default() -> Self {
        Self {
            status: None,
            delay: Duration::ZERO,
            chunks: DEFAULT_CHUNKS,
            piece_bytes: None,
            chunk_delay: Duration::ZERO,
            reset_after: None,
            one_write: false,
            content: None,
            usage: true,
            garbage: None,
        }
    }
}

impl MockControl {
    /// Parses the `x-mock-*` headers; the error names the offending header.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let text = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let number = |name: &str| -> Result<Option<u64>, String> {
            match text(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| format!("invalid {name} header: {v:?}")),
            }
        };
        let count = |name: &str| -> Result<Option<usize>, String> {
            number(name)?
                .map(|n| usize::try_from(n).map_err(|_| format!("{name} too large")))
                .transpose()
        };

        let status = match number("x-mock-status")? {
            None => None,
            Some(code) => Some(
                u16::try_from(code)
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| format!("invalid x-mock-status header: {code}"))?,
            ),
        };
        let usage = match text("x-mock-usage") {
            None => true,
            Some(v) if v.trim().eq_ignore_ascii_case("none") => false,
            Some(v) => return Err(format!("invalid x-mock-usage header: {v:?}")),
        };
        Ok(Self {
            status,
            delay: Duration::from_millis(number("x-mock-delay-ms")?.unwrap_or(0)),
            chunks: count("x-mock-chunks")?.unwrap_or(DEFAULT_CHUNKS),
            piece_bytes: count("x-mock-piece-bytes")?,
            chunk_delay: Duration::from_millis(number("x-mock-chunk-delay-ms")?.unwrap_or(0)),
            reset_after: count("x-mock-reset-after")?,
            one_write: number("x-mock-one-write")?.is_some_and(|n| n != 0),
            content: text("x-mock-content"),
            usage,
            garbage: text("x-mock-garbage")
                .map(|v| Garbage::parse(&v))
                .transpose()?,
        })
    }

    /// Stream pacing derived from the chunk delay and reset settings.
    pub fn pacing(&self) -> Pacing {
        Pacing {
            delay: self.chunk_delay,
            reset_after: self.reset_after,
            one_write: self.one_write,
        }
    }
}

/// Header naming a status: a stream ends with that error (in the provider's shape) instead of
/// its last event.
pub const STREAM_ERROR_HEADER: &str = "x-mock-stream-error";

/// The status named by `x-mock-stream-error`, if any and valid.
pub fn stream_error(headers: &HeaderMap) -> Option<StatusCode> {
    headers
        .get(STREAM_ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
}

/// What handlers learn about the current request (a request extension).
#[derive(Clone, Debug)]
pub struct RequestCtx {
    /// Arrival counter, also sent back as `x-mock-request-id`.
    pub id: u64,
    /// Parsed `x-mock-*` headers.
    pub control: MockControl,
}

/// Middleware: records the request (except `/__mock/*`), then applies the
/// delay, forced failures, `x-mock-status` and non-streaming resets.
pub async fn apply(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/__mock/") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let (bytes, read_error) = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => (bytes, None),
        Err(e) => (axum::body::Bytes::new(), Some(e.to_string())),
    };
    let id = shared.record(&parts, &bytes);
    if let Some(case) = parts.headers.get(e2e::golden::MOCK_HEADER) {
        let mut response = crate::golden::answer(&String::from_utf8_lossy(case.as_bytes()));
        response
            .headers_mut()
            .insert("x-mock-request-id", HeaderValue::from(id));
        return response;
    }
    let conn = parts
        .extensions
        .get::<ConnectInfo<ConnHandle>>()
        .map(|c| c.0.clone());

    let mut response = match (read_error, MockControl::from_headers(&parts.headers)) {
        (Some(e), _) => reply::error(
            StatusCode::BAD_REQUEST,
            &format!("failed to read request body: {e}"),
            "invalid_request_error",
            "body_read_error",
        ),
        (None, Err(msg)) => reply::error(
            StatusCode::BAD_REQUEST,
            &msg,
            "invalid_request_error",
            "invalid_mock_header",
        ),
        (None, Ok(control)) => {
            tokio::time::sleep(control.delay).await;
            let forced = shared.take_failure(parts.uri.path(), &parts.headers);
            let stream = serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|v| v["stream"] == true)
                || parts.uri.path().contains("stream");
            if let Some(garbage) = control.garbage {
                garbage.response(stream)
            } else if let Some(status) = forced.or(control.status) {
                // Each wire format fails in its provider's error shape.
                let path = parts.uri.path();
                if path == "/v1/messages" {
                    crate::anthropic::failure(status)
                } else if path.starts_with("/api/v1/services/aigc/")
                    || path.starts_with("/api/v1/services/embeddings/")
                    || path.starts_with("/api/v1/services/rerank/")
                {
                    // DashScope's native API (OpenRouter's OpenAI paths are `/api/v1/…` too).
                    crate::dashscope::failure(status)
                } else if path.starts_with("/v2/models/") {
                    crate::triton::failure(status)
                } else if path.contains("/models/") && path.contains(':') {
                    crate::gemini::failure(status)
                } else if path.starts_with("/v2/") {
                    crate::cohere::failure(status)
                } else if path.starts_with("/model/") {
                    crate::bedrock::failure(status)
                } else {
                    reply::mock_failure(status)
                }
            } else {
                let reset = control.reset_after.is_some();
                let mut req = Request::from_parts(parts, Body::from(bytes));
                req.extensions_mut().insert(RequestCtx { id, control });
                let response = next.run(req).await;
                if reset && response.extensions().get::<Streamed>().is_none() {
                    abort_response(conn)
                } else {
                    response
                }
            }
        }
    };
    response
        .headers_mut()
        .insert("x-mock-request-id", HeaderValue::from(id));
    response
}

/// A reply that never reaches the client: the connection is aborted before
/// the headers are written. Without a connection handle (only in in-process
/// tests) it falls back to headers followed by a failing body.
fn abort_response(conn: Option<ConnHandle>) -> Response {
    match conn {
        Some(conn) => {
            conn.abort();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        None => Response::new(stream::paced_body(
            Vec::new(),
            Pacing {
                delay: Duration::ZERO,
                reset_after: Some(0),
                one_write: false,
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(v) = HeaderValue::from_str(value) {
                map.insert(*name, v);
            }
        }
        map
    }

    #[test]
    fn defaults_without_headers() {
        assert_eq!(
            MockControl::from_headers(&HeaderMap::new()),
            Ok(MockControl::default())
        );
    }

    #[test]
    fn parses_all_headers() {
        let parsed = MockControl::from_headers(&headers(&[
            ("x-mock-status", "503"),
            ("x-mock-delay-ms", "20"),
            ("x-mock-chunks", "3"),
            ("x-mock-chunk-delay-ms", " 7 "),
            ("x-mock-reset-after", "2"),
            ("x-mock-one-write", "1"),
            ("x-mock-content", "hello there"),
            ("x-mock-usage", "None"),
            ("x-mock-garbage", "truncated"),
        ]));
        assert_eq!(
            parsed,
            Ok(MockControl {
                status: Some(StatusCode::SERVICE_UNAVAILABLE),
                delay: Duration::from_millis(20),
                chunks: 3,
                piece_bytes: None,
                chunk_delay: Duration::from_millis(7),
                reset_after: Some(2),
                one_write: true,
                content: Some("hello there".into()),
                usage: false,
                garbage: Some(Garbage::Truncated),
            })
        );
    }

    #[test]
    fn reads_the_stream_error_status() {
        assert_eq!(stream_error(&HeaderMap::new()), None);
        assert_eq!(
            stream_error(&headers(&[(STREAM_ERROR_HEADER, " 429 ")])),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        assert_eq!(
            stream_error(&headers(&[(STREAM_ERROR_HEADER, "soon")])),
            None
        );
        assert_eq!(stream_error(&headers(&[(STREAM_ERROR_HEADER, "42")])), None);
    }

    #[test]
    fn rejects_bad_values() {
        for (name, value) in [
            ("x-mock-status", "abc"),
            ("x-mock-status", "42"),
            ("x-mock-status", "70000"),
            ("x-mock-delay-ms", "-1"),
            ("x-mock-chunks", "many"),
            ("x-mock-one-write", "yes"),
            ("x-mock-usage", "always"),
        ] {
            let err = MockControl::from_headers(&headers(&[(name, value)]));
            assert!(
                matches!(&err, Err(msg) if msg.contains(name)),
                "{name}: {value} -> {err:?}"
            );
        }
    }
}
