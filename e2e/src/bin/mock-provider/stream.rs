//! Paced streaming bodies: one body frame per item (or all of them in one,
//! `x-mock-one-write`), an optional pause between frames, and an optional abort
//! (`x-mock-reset-after`).

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::Response;
use futures_util::stream::{self, Stream};
use serde_json::Value;

/// Response extension marking a streamed reply; the control middleware then
/// leaves `x-mock-reset-after` to the stream itself.
#[derive(Clone, Copy, Debug)]
pub struct Streamed;

/// How frames are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pacing {
    /// Pause between consecutive frames (not before the first).
    pub delay: Duration,
    /// Fail the body after this many frames (or after all of them, if fewer).
    pub reset_after: Option<usize>,
    /// Send all frames as one body chunk, so the whole stream goes out in one write (the
    /// pause and `reset_after` then count that one frame).
    pub one_write: bool,
}

/// Time given to hyper to flush the frames already sent before the body
/// fails (a failing body drops the connection, buffered bytes included).
const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// The frames as a stream of body chunks, paced and possibly ending in an
/// error.
pub fn paced(frames: Vec<Bytes>, pacing: Pacing) -> impl Stream<Item = io::Result<Bytes>> {
    let frames = if pacing.one_write && frames.len() > 1 {
        vec![Bytes::from(frames.concat())]
    } else {
        frames
    };
    let state = (frames.into_iter(), 0usize, false);
    stream::unfold(state, move |(mut frames, sent, done)| async move {
        if done {
            return None;
        }
        let next = match pacing.reset_after {
            Some(limit) if sent >= limit => None,
            _ => frames.next(),
        };
        if sent > 0 && (next.is_some() || pacing.reset_after.is_some()) {
            tokio::time::sleep(pacing.delay).await;
        }
        match next {
            Some(frame) => Some((Ok(frame), (frames, sent + 1, false))),
            None if pacing.reset_after.is_some() => {
                tokio::time::sleep(FLUSH_GRACE).await;
                let err = io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    format!("x-mock-reset-after: aborted after {sent} frames"),
                );
                Some((Err(err), (frames, sent, true)))
            }
            None => None,
        }
    })
}

/// A body sending the frames one by one (see [`paced`]).
pub fn paced_body(frames: Vec<Bytes>, pacing: Pacing) -> Body {
    Body::from_stream(paced(frames, pacing))
}

/// One server-sent event `data: <json>\n\n`.
pub fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// The OpenAI terminator event `data: [DONE]\n\n`.
pub fn sse_done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// A `text/event-stream` response sending the frames with the pacing.
pub fn sse_response(frames: Vec<Bytes>, pacing: Pacing) -> Response {
    let mut response = Response::new(paced_body(frames, pacing));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response.extensions_mut().insert(Streamed);
    response
}

/// The OpenAI chunks the plugin makes of mock stream frames from a `family` provider, for a
/// chat client (for the modules' tests: the plugin's parser is the contract the mock must
/// satisfy).
#[cfg(test)]
pub fn chunks_through(
    family: ai_proxy::providers::Family,
    native: &ai_proxy::providers::Native,
    model: &str,
    frames: &[axum::body::Bytes],
) -> Vec<serde_json::Value> {
    use ai_proxy::native::{plan, Client, Plan};
    let mode = ai_proxy::translate::ReasoningMode::Passthrough;
    let Plan::Stream(mut t) = plan(
        Client::Chat,
        family,
        true,
        model,
        mode,
        native,
        0,
        None,
        &Default::default(),
    ) else {
        panic!("no stream translator for {family:?}");
    };
    let mut out = String::new();
    for (i, f) in frames.iter().enumerate() {
        t.feed(f, i + 1 == frames.len(), &mut out);
    }
    let datas: Vec<&str> = out
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{out}");
    datas
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The OpenAI chat completion the plugin makes of a whole mock answer from a `family`
/// provider (as [`chunks_through`] for streams).
#[cfg(test)]
pub fn answer_through(
    family: ai_proxy::providers::Family,
    model: &str,
    body: &[u8],
) -> Result<serde_json::Value, String> {
    let answer = ai_proxy::native::translate_json(
        ai_proxy::native::Client::Chat,
        family,
        &ai_proxy::providers::Native::None,
        sdk::api::ApiKind::ChatCompletions,
        body,
        model,
        ai_proxy::translate::ReasoningMode::Passthrough,
        false,
        0,
        None,
        None,
        &Default::default(),
    )?;
    serde_json::from_slice(&answer).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn frames(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("f{i}"))).collect()
    }

    /// Collects a paced stream as `Ok` frames and a trailing "ERR".
    async fn collect(n: usize, reset_after: Option<usize>) -> Vec<String> {
        let pacing = Pacing {
            delay: Duration::ZERO,
            reset_after,
            one_write: false,
        };
        paced(frames(n), pacing)
            .map(|item| match item {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(_) => "ERR".to_owned(),
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn sends_all_frames_without_reset() {
        assert_eq!(collect(3, None).await, ["f0", "f1", "f2"]);
        assert!(collect(0, None).await.is_empty());
    }

    #[tokio::test]
    async fn resets_after_n_frames() {
        assert_eq!(collect(3, Some(0)).await, ["ERR"]);
        assert_eq!(collect(3, Some(2)).await, ["f0", "f1", "ERR"]);
        assert_eq!(collect(3, Some(9)).await, ["f0", "f1", "f2", "ERR"]);
    }

    #[tokio::test]
    async fn pauses_between_frames() {
        let pacing = Pacing {
            delay: Duration::from_millis(30),
            reset_after: None,
            one_write: false,
        };
        let start = std::time::Instant::now();
        let n = paced(frames(3), pacing).count().await;
        assert_eq!(n, 3);
        assert!(start.elapsed() >= Duration::from_millis(60));
    }

    #[tokio::test]
    async fn one_write_sends_one_frame() {
        let pacing = Pacing {
            delay: Duration::from_millis(30),
            reset_after: None,
            one_write: true,
        };
        let start = std::time::Instant::now();
        let sent: Vec<Bytes> = paced(frames(3), pacing)
            .filter_map(|item| async move { item.ok() })
            .collect()
            .await;
        assert_eq!(sent, [Bytes::from("f0f1f2")]);
        assert!(start.elapsed() < Duration::from_millis(30));
    }
}
