//! Golden cases (`x-mock-golden: <case>`): the mock answers with the case's recorded upstream
//! answer from `plugins/ai-proxy/golden/<case>/` (status, headers and body bytes as recorded),
//! whatever the request, so a case runs through a real Envoy as it runs in the Sim.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use crate::reply;
use crate::stream::{self, Pacing, Streamed};

/// Size of the body pieces: the answer reaches Envoy in many reads, as a real one does.
const PIECE: usize = 61;
/// Pause between the pieces.
const PAUSE: Duration = Duration::from_millis(1);

/// The recorded answer of the case `name`, or a 404 naming what is wrong.
pub fn answer(name: &str) -> Response {
    let case = match e2e::golden::Case::load(name) {
        Ok(case) => case,
        Err(e) => {
            return reply::error(
                StatusCode::NOT_FOUND,
                &format!("golden case {name:?}: {e}"),
                "invalid_request_error",
                "golden_case_not_found",
            )
        }
    };
    let frames: Vec<Bytes> = case
        .upstream
        .body
        .chunks(PIECE)
        .map(Bytes::copy_from_slice)
        .collect();
    let pacing = Pacing {
        delay: PAUSE,
        ..Pacing::default()
    };
    let mut response = Response::new(stream::paced_body(frames, pacing));
    *response.status_mut() = u16::try_from(case.upstream.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in &case.upstream.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
            response.headers_mut().insert(k, v);
        }
    }
    response.extensions_mut().insert(Streamed);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn replays_the_recorded_answer() {
        let case = e2e::golden::Case::load("bedrock-chat-stream-reasoning-tool").unwrap();
        let response = answer(&case.name);
        assert_eq!(u32::from(response.status().as_u16()), case.upstream.status);
        assert_eq!(
            response.headers()["content-type"],
            "application/vnd.amazon.eventstream"
        );
        assert_eq!(body(response).await, case.upstream.body);
    }

    #[tokio::test]
    async fn an_unknown_case_is_a_404() {
        for name in ["no-such-case", "../config", ""] {
            let response = answer(name);
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}");
            let text = String::from_utf8(body(response).await).unwrap();
            assert!(text.contains("golden_case_not_found"), "{text}");
        }
    }
}
