//! Pure translations between wire formats (no host calls): request bodies, response bodies and
//! stream events.

pub mod bedrock;
pub mod chat;
pub mod claude;
pub mod cohere;
pub mod coze;
pub mod deepl;
pub mod dify;
pub mod gemini;
pub mod images;
pub mod messages;
pub mod minimax;
pub mod qwen;
pub mod reasoning;
pub mod responses;
pub mod triton;

use sdk::error::ErrorReply;
use sdk::llm::openai;
use sdk::llm::stream::{ChatChunkReader, Encoder, Event};
use sdk::sse::{SseDecoder, SseEvent};

/// A request that cannot be expressed in the target format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError(pub String);

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A translation error with `message`.
pub(crate) fn err(message: impl Into<String>) -> TranslateError {
    TranslateError(message.into())
}

/// Longest upstream body text kept in an error message, in bytes.
pub(crate) const MAX_ERROR_BODY: usize = 512;

/// OpenAI `error.type` for an HTTP status when the body says nothing usable.
pub(crate) fn openai_error_type_for_status(status: u32) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_exceeded",
        _ => "server_error",
    }
}

/// The start of an upstream body as text, at most [`MAX_ERROR_BODY`] bytes, cut on a character.
pub(crate) fn body_excerpt(body: &[u8], status: u32) -> String {
    let head = body.get(..MAX_ERROR_BODY).unwrap_or(body);
    let text = match std::str::from_utf8(head) {
        Ok(s) => s.to_string(),
        // Only the cut split a character: keep what precedes it.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(head.get(..e.valid_up_to()).unwrap_or_default()).into_owned()
        }
        Err(_) => String::from_utf8_lossy(head).into_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        format!("upstream returned HTTP {status}")
    } else {
        text.to_string()
    }
}

/// The client's error for an upstream error answer: the provider's `message` when it gave
/// one, else the start of the body; the type follows the status unless `kind` names one.
pub(crate) fn upstream_error(
    status: u32,
    body: &[u8],
    kind: Option<&str>,
    code: Option<&str>,
    message: Option<&str>,
) -> ErrorReply {
    let message = message
        .filter(|m| !m.is_empty())
        .map_or_else(|| body_excerpt(body, status), str::to_string);
    let kind = kind.unwrap_or_else(|| openai_error_type_for_status(status));
    ErrorReply::new(status, kind, code, message)
}

/// `body` read as JSON; the error says `what` could not be read.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, TranslateError> {
    serde_json::from_slice(body).map_err(|e| err(format!("{what}: {e}")))
}

/// The string `key` of an optional JSON object.
pub(crate) fn str_of<'a>(value: Option<&'a serde_json::Value>, key: &str) -> Option<&'a str> {
    value
        .and_then(|v| v.get(key))
        .and_then(serde_json::Value::as_str)
}

/// The texts of an OpenAI embeddings request (`input`: a string or strings); `service` names the
/// upstream in the error for token arrays.
pub(crate) fn embedding_inputs<'a>(
    req: &'a serde_json::Value,
    service: &str,
) -> Result<Vec<&'a str>, TranslateError> {
    match req.get("input") {
        Some(serde_json::Value::String(s)) => Ok(vec![s.as_str()]),
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    err(format!(
                        "{service} embeddings take strings (token arrays are not supported)"
                    ))
                })
            })
            .collect(),
        _ => Err(err(
            "input must be a string or a non-empty array of strings",
        )),
    }
}

/// The OpenAI embeddings list of `vectors`, in order; `tokens` is all input.
pub(crate) fn embeddings_list(
    vectors: impl IntoIterator<Item = serde_json::Value>,
    model: &str,
    tokens: u64,
) -> serde_json::Value {
    let data: Vec<_> = vectors
        .into_iter()
        .enumerate()
        .map(
            |(index, v)| serde_json::json!({"object": "embedding", "index": index, "embedding": v}),
        )
        .collect();
    serde_json::json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

/// The client's output limit: `max_completion_tokens`, else the older `max_tokens`.
pub(crate) fn max_tokens(x: &sdk::llm::Extra) -> Option<u64> {
    x.get("max_completion_tokens")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| x.get("max_tokens").and_then(serde_json::Value::as_u64))
}

/// The text of a message whose target takes text only (`service` names it in the error).
pub fn text_only(msg: &openai::ChatMessage, service: &str) -> Result<String, TranslateError> {
    match &msg.content {
        None => Ok(String::new()),
        Some(openai::Content::Text(s)) => Ok(s.clone()),
        Some(openai::Content::Parts(parts)) => {
            let mut texts = Vec::new();
            for part in parts {
                if part.kind != "text" {
                    return Err(TranslateError(format!(
                        "content part type {:?} is not supported by {service} (text only)",
                        part.kind
                    )));
                }
                texts.extend(part.text.as_deref());
            }
            Ok(texts.join("\n"))
        }
    }
}

pub use sdk::llm::stream::ReasoningMode;

/// A stream translator: upstream SSE events in, client SSE wire text out.
pub trait StreamTranslator {
    /// Translates one upstream event.
    fn on_event(&mut self, event: &SseEvent, out: &mut String);
    /// The upstream stream ended.
    fn finish(&mut self, out: &mut String);
    /// The upstream stream is unusable: an error event in the client's protocol, then the end.
    fn fail(&mut self, message: &str, out: &mut String) {
        out.push_str(&SseEvent::data(stream_error(message)).encode());
        self.finish(out);
    }
}

/// An OpenAI-style error event's data for a stream that cannot be translated.
pub fn stream_error(message: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": "server_error", "code": "bad_upstream_stream"}})
        .to_string()
}

/// A stream translator over raw upstream bytes (binary framings such as AWS event streams, or
/// SSE through [`SseTranslator`]): client SSE wire text out.
pub trait ChunkTranslator {
    /// Translates one upstream chunk; `end` marks the last one.
    fn feed(&mut self, chunk: &[u8], end: bool, out: &mut String);
    /// The upstream stream could not be translated: the client got an error event instead.
    fn failed(&self) -> bool {
        false
    }
}

/// An SSE decoder in front of a [`StreamTranslator`]; memory is the decoder's unfinished tail
/// plus the translator's own state.
pub struct SseTranslator<T> {
    decoder: SseDecoder,
    inner: T,
    /// The translator wrote something for an upstream event (a stream of events it could not
    /// read is not an answer).
    produced: bool,
    failed: bool,
}

impl<T: StreamTranslator> SseTranslator<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        SseTranslator {
            decoder: SseDecoder::default(),
            inner,
            produced: false,
            failed: false,
        }
    }
}

impl<T: StreamTranslator> ChunkTranslator for SseTranslator<T> {
    fn feed(&mut self, chunk: &[u8], end: bool, out: &mut String) {
        if self.failed {
            return;
        }
        let mut events = Vec::new();
        if let Err(e) = self.decoder.feed(chunk, &mut events) {
            self.failed = true;
            self.inner
                .fail(&format!("bad upstream event stream: {e}"), out);
            return;
        }
        // A line that never ended: the provider's stream was cut.
        let cut = end && self.decoder.mid_line();
        if end && !cut {
            self.decoder.finish(&mut events);
        }
        let before = out.len();
        for ev in &events {
            self.inner.on_event(ev, out);
        }
        self.produced |= out.len() > before;
        if cut {
            self.failed = true;
            self.inner
                .fail("the provider's stream was cut inside an event", out);
        } else if end && !self.produced {
            self.failed = true;
            // Bytes with no event the translator could read (an HTML page, JSON of another
            // shape) are not an empty answer.
            self.inner.fail("the provider's stream held no answer", out);
        } else if end {
            self.inner.finish(out);
        }
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

/// A provider's answer stream read into canonical [`Event`]s. Encoders end once and ignore what
/// follows their end (or an error), so a decoder need not track whether the answer is over.
pub trait Decode {
    /// One upstream SSE event; events go to `enc`, which writes the client's wire text.
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String);
    /// The upstream stream ended.
    fn finish(&mut self, enc: &mut dyn Encoder, out: &mut String) {
        enc.end(out);
    }
}

impl Decode for ChatChunkReader {
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String) {
        self.on_data(&event.data, enc, out);
    }
}

/// Reads a whole answer with `read` and writes it through `enc`, ended; an error event in it,
/// or a body `read` refuses, is the error.
pub fn whole(
    enc: &mut dyn Encoder,
    read: impl FnOnce(&mut dyn Encoder, &mut String) -> Result<(), TranslateError>,
) -> Result<String, TranslateError> {
    /// Stops at the first error event: a whole answer with an error is no answer.
    struct Catch<'a> {
        inner: &'a mut dyn Encoder,
        error: Option<String>,
    }
    impl Encoder for Catch<'_> {
        fn event(&mut self, event: Event<'_>, out: &mut String) {
            match event {
                Event::Error { message, .. } => {
                    self.error.get_or_insert_with(|| message.to_string());
                }
                e if self.error.is_none() => self.inner.event(e, out),
                _ => {}
            }
        }
        fn end(&mut self, out: &mut String) {
            if self.error.is_none() {
                self.inner.end(out);
            }
        }
    }
    let mut catch = Catch {
        inner: enc,
        error: None,
    };
    let mut out = String::new();
    read(&mut catch, &mut out)?;
    catch.end(&mut out);
    match catch.error {
        Some(message) => Err(TranslateError(message)),
        None => Ok(out),
    }
}

/// A whole answer read by `read` as an OpenAI chat completion (created 0: for tests).
#[cfg(test)]
pub fn whole_chat(
    model: &str,
    reasoning: ReasoningMode,
    read: impl FnOnce(&mut dyn Encoder, &mut String) -> Result<(), TranslateError>,
) -> Result<openai::ChatResponse, TranslateError> {
    let mut enc = openai::AnswerEncoder::new(model, 0, reasoning);
    whole(&mut enc, read)?;
    Ok(enc.response())
}

/// A whole tool call: its arguments a JSON text or an object (`{}` when absent).
pub(crate) fn tool_call(
    enc: &mut dyn Encoder,
    out: &mut String,
    id: &str,
    name: &str,
    args: Option<&serde_json::Value>,
) {
    let args = match args {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v @ serde_json::Value::Object(_)) => v.to_string(),
        _ => "{}".to_string(),
    };
    enc.event(
        Event::ToolStart {
            id,
            name,
            args: &args,
        },
        out,
    );
}

/// A [`Decode`]r writing through the client's [`Encoder`].
pub struct Translate<D> {
    decoder: D,
    encoder: Box<dyn Encoder>,
}

impl<D: Decode> Translate<D> {
    /// `decoder`'s events written by `encoder`.
    pub fn new(decoder: D, encoder: Box<dyn Encoder>) -> Self {
        Translate { decoder, encoder }
    }
}

/// `decoder`'s events as OpenAI chat chunks (created 0: for tests).
#[cfg(test)]
pub fn to_chat<D: Decode>(decoder: D, model: &str, reasoning: ReasoningMode) -> Translate<D> {
    Translate::new(
        decoder,
        Box::new(openai::ChunkEncoder::new(model, 0, reasoning)),
    )
}

impl<D: Decode> StreamTranslator for Translate<D> {
    fn on_event(&mut self, event: &SseEvent, out: &mut String) {
        self.decoder.on_event(event, self.encoder.as_mut(), out);
    }
    fn finish(&mut self, out: &mut String) {
        self.decoder.finish(self.encoder.as_mut(), out);
    }
    fn fail(&mut self, message: &str, out: &mut String) {
        self.encoder.event(Event::error(message), out);
        self.encoder.end(out)
    }
}
