//! Measures an answer's token usage chunk by chunk: exact when the answer reports it, estimated
//! with tiktoken when it does not. Memory: the unfinished SSE tail plus at most 64 KiB of
//! generated text before counting starts (a JSON answer is kept whole to be parsed).

use crate::pipeline::Exchange;
use crate::sse::SseDecoder;
use crate::tokens::{self, Encoding, TokenCounter};
use crate::usage::{self, StreamUsage, Usage};
use serde_json::Value;

/// Generated text kept before the tokenizer is started for an estimate.
const PENDING_TEXT: usize = 64 * 1024;
/// Largest non-streaming answer parsed for usage.
const MAX_JSON_BODY: usize = 32 * 1024 * 1024;

/// What a JSON document handed to the observer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    /// One stream event's `data`.
    Event,
    /// The whole (non-streaming) answer.
    Body,
}

/// Usage of one answer, measured as it passes.
#[derive(Debug)]
pub struct UsageMeter {
    sse: Option<SseDecoder>,
    json_body: Vec<u8>,
    stream_usage: StreamUsage,
    json_usage: Option<Usage>,
    pending: String,
    counter: Option<TokenCounter>,
    response_model: Option<String>,
    request_model: String,
    estimate: bool,
}

impl UsageMeter {
    /// A meter for an SSE (`stream`) or JSON answer to a request for `request_model`.
    pub fn new(stream: bool, estimate: bool, request_model: &str) -> UsageMeter {
        UsageMeter {
            sse: stream.then(SseDecoder::default),
            json_body: Vec::new(),
            stream_usage: StreamUsage::default(),
            json_usage: None,
            pending: String::new(),
            counter: None,
            response_model: None,
            request_model: request_model.to_string(),
            estimate,
        }
    }

    /// Whether the answer is a stream.
    pub fn is_stream(&self) -> bool {
        self.sse.is_some()
    }

    /// The model the answer names, if any.
    pub fn response_model(&self) -> Option<&str> {
        self.response_model.as_deref()
    }

    fn encoding(&self) -> Encoding {
        tokens::encoding_for_model(
            self.response_model
                .as_deref()
                .unwrap_or(&self.request_model),
        )
    }

    /// [`UsageMeter::feed`] for a pipeline stage: stream events and the JSON answer are taken
    /// from the exchange, parsed once for every stage that sees the same bytes.
    pub fn feed_shared(
        &mut self,
        ex: &mut Exchange,
        chunk: &[u8],
        end: bool,
        mut observe: impl FnMut(Doc, &Value),
    ) {
        if let Some(decoder) = self.sse.as_ref() {
            if !decoder.is_idle() {
                return self.feed(chunk, end, observe);
            }
            let (events, idle_after) = ex.response_events(chunk);
            if !(idle_after || end) {
                // A partial event at the end: this meter's own decoder keeps it.
                return self.feed(chunk, end, observe);
            }
            for ev in events {
                if let Some(data) = &ev.json {
                    self.on_event(data);
                    observe(Doc::Event, data);
                }
            }
            return;
        }
        if !(end && self.json_body.is_empty()) {
            return self.feed(chunk, end, observe);
        }
        // The whole answer in one piece (the pipeline buffered it).
        if !chunk.is_empty() && chunk.len() <= MAX_JSON_BODY {
            if let Some(doc) = ex.response_json(chunk) {
                self.on_json(doc);
                observe(Doc::Body, doc);
            }
        }
    }

    /// Feeds one chunk of the answer; `observe` sees each stream event and the whole JSON answer.
    pub fn feed(&mut self, chunk: &[u8], end: bool, mut observe: impl FnMut(Doc, &Value)) {
        if let Some(decoder) = self.sse.as_mut() {
            let mut events = Vec::new();
            if decoder.feed(chunk, &mut events).is_err() {
                // An oversized event: stop decoding (what was seen still counts).
                *decoder = SseDecoder::default();
            }
            if end {
                decoder.finish(&mut events);
            }
            for ev in &events {
                if let Ok(data) = serde_json::from_str::<Value>(&ev.data) {
                    self.on_event(&data);
                    observe(Doc::Event, &data);
                }
            }
            return;
        }
        if self.json_body.len() + chunk.len() <= MAX_JSON_BODY {
            self.json_body.extend_from_slice(chunk);
        }
        if end && !self.json_body.is_empty() {
            if let Ok(doc) = serde_json::from_slice::<Value>(&self.json_body) {
                self.on_json(&doc);
                observe(Doc::Body, &doc);
            }
            self.json_body = Vec::new();
        }
    }

    fn on_json(&mut self, doc: &Value) {
        self.json_usage = usage::from_json(doc);
        self.response_model = usage::response_model(doc);
        if self.estimate && self.json_usage.is_none() {
            usage::response_text(doc, &mut self.pending);
        }
    }

    fn on_event(&mut self, data: &Value) {
        self.stream_usage.on_event(data);
        if self.response_model.is_none() {
            self.response_model = usage::response_model(data);
        }
        if self.estimate && self.stream_usage.usage().is_none() {
            usage::delta_text(data, &mut self.pending);
            if self.pending.len() > PENDING_TEXT {
                let encoding = self.encoding();
                let counter = self
                    .counter
                    .get_or_insert_with(|| TokenCounter::new(encoding));
                counter.push(&std::mem::take(&mut self.pending));
            }
        }
    }

    /// The usage: reported, or estimated from `prompt` and the generated text.
    pub fn finish(&mut self, prompt: Option<&str>) -> Usage {
        if let Some(u) = self
            .json_usage
            .clone()
            .or_else(|| self.stream_usage.usage())
        {
            return u;
        }
        if !self.estimate {
            return Usage::default();
        }
        let encoding = self.encoding();
        let input = prompt.and_then(|p| tokens::count(encoding, p)).unwrap_or(0);
        let output = match self.counter.as_mut() {
            Some(c) => {
                c.push(&std::mem::take(&mut self.pending));
                c.finish().unwrap_or(0)
            }
            None => tokens::count(encoding, &self.pending).unwrap_or(0),
        };
        Usage {
            input,
            output,
            total: input + output,
            estimated: true,
            ..Usage::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_usage_wins() {
        let mut m = UsageMeter::new(true, true, "gpt-4o");
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"hi there\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n";
        let mut events = 0;
        for piece in stream.as_bytes().chunks(7) {
            m.feed(piece, false, |_, _| events += 1);
        }
        m.feed(b"", true, |_, _| {});
        assert_eq!(events, 2);
        let u = m.finish(Some("ignored"));
        assert_eq!((u.input, u.output, u.estimated), (3, 2, false));
    }

    #[test]
    fn missing_usage_is_estimated() {
        let mut m = UsageMeter::new(false, true, "gpt-4o");
        let body = br#"{"model":"gpt-4o","choices":[{"message":{"role":"assistant","content":"hello world"}}]}"#;
        m.feed(body, true, |doc, _| assert_eq!(doc, Doc::Body));
        let u = m.finish(Some("say hello"));
        assert!(u.estimated);
        assert_eq!(
            u.output,
            tokens::count(Encoding::O200k, "hello world").unwrap()
        );
        assert_eq!(
            u.input,
            tokens::count(Encoding::O200k, "say hello").unwrap()
        );
        assert_eq!(m.response_model(), Some("gpt-4o"));
    }
}
