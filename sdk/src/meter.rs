//! Measures an answer's token usage chunk by chunk: exact when the answer reports it, estimated
//! with tiktoken when it does not. Memory: the unfinished SSE tail plus at most 64 KiB of
//! generated text before counting starts (a JSON answer is kept whole to be parsed).

use crate::cost::PriceTable;
use crate::pipeline::{Exchange, RequestBody};
use crate::sse::SseDecoder;
use crate::tokens::{self, Encoding, TokenCounter};
use crate::usage::json::{Json, JsonDoc, JsonRead};
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
    /// Reused for the documents this meter parses itself.
    doc: JsonDoc,
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
            doc: JsonDoc::new(),
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
        mut observe: impl FnMut(Doc, Json<'_>),
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
                if let Some(data) = ev.json() {
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
    pub fn feed(&mut self, chunk: &[u8], end: bool, mut observe: impl FnMut(Doc, Json<'_>)) {
        if let Some(mut decoder) = self.sse.take() {
            let mut doc = std::mem::take(&mut self.doc);
            let mut on_event = |event: &crate::sse::SseEvent| {
                if doc.parse(&event.data) {
                    if let Some(data) = doc.root() {
                        self.on_event(data);
                        observe(Doc::Event, data);
                    }
                }
            };
            if decoder.feed_with(chunk, &mut on_event).is_err() {
                // An oversized event: stop decoding (what was seen still counts).
                decoder = SseDecoder::default();
            }
            if end {
                decoder.finish_with(&mut on_event);
            }
            self.doc = doc;
            self.sse = Some(decoder);
            return;
        }
        if self.json_body.len() + chunk.len() <= MAX_JSON_BODY {
            self.json_body.extend_from_slice(chunk);
        }
        if end && !self.json_body.is_empty() {
            let mut doc = JsonDoc::new();
            if doc.parse_bytes(&self.json_body) {
                if let Some(root) = doc.root() {
                    self.on_json(root);
                    observe(Doc::Body, root);
                }
            }
            self.json_body = Vec::new();
        }
    }

    fn on_json<'a, J: JsonRead<'a>>(&mut self, doc: J) {
        self.json_usage = usage::from_json(doc);
        self.response_model = usage::response_model(doc);
        if self.estimate && self.json_usage.is_none() {
            usage::response_text(doc, &mut self.pending);
        }
    }

    fn on_event<'a, J: JsonRead<'a>>(&mut self, data: J) {
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

    /// The usage the answer reported, if it did.
    pub fn reported(&self) -> Option<Usage> {
        self.json_usage
            .clone()
            .or_else(|| self.stream_usage.usage())
    }

    /// The usage: reported, or estimated from `prompt` and the generated text.
    pub fn finish(&mut self, prompt: Option<&str>) -> Usage {
        if let Some(u) = self.reported() {
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

/// How the last chunk's documents can be shown again to the next stage that feeds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// No documents.
    Nothing,
    /// The events of the exchange's parse of the chunk.
    Events,
    /// The exchange's parse of the chunk as a JSON answer.
    Json,
    /// The first `n` documents kept in `docs`.
    Kept(usize),
}

/// The answer's [`UsageMeter`], kept in the exchange: the stages that meter one answer (usage
/// statistics, rate limiting) share it, and each chunk is metered once however many of them
/// feed it. Stages that share it must see the same bytes (no stage between them edits the
/// answer).
#[derive(Debug)]
pub struct SharedMeter {
    meter: UsageMeter,
    /// (chunk id, end) of the last chunk fed.
    last: Option<((u64, u64), bool)>,
    replay: Replay,
    docs: Vec<(Doc, JsonDoc)>,
    /// The estimate, once made.
    estimated: Option<Usage>,
}

impl SharedMeter {
    /// Starts the answer's meter in `ex`, or joins the one another stage started (estimates are
    /// then collected if any stage wants them).
    pub fn start(ex: &mut Exchange, stream: bool, estimate: bool, request_model: &str) {
        match ex.shared_meter.as_mut() {
            Some(shared) => shared.meter.estimate |= estimate,
            None => {
                ex.shared_meter = Some(SharedMeter {
                    meter: UsageMeter::new(stream, estimate, request_model),
                    last: None,
                    replay: Replay::Nothing,
                    docs: Vec::new(),
                    estimated: None,
                })
            }
        }
    }

    /// The answer's meter, if a stage started one.
    pub fn get(ex: &Exchange) -> Option<&UsageMeter> {
        ex.shared_meter.as_ref().map(|s| &s.meter)
    }

    /// Feeds `chunk` to the answer's meter, unless another stage already fed it this chunk in
    /// this callback; `observe` sees the chunk's documents either way.
    pub fn feed(
        ex: &mut Exchange,
        chunk: &[u8],
        end: bool,
        mut observe: impl FnMut(Doc, Json<'_>),
    ) {
        let Some(mut shared) = ex.shared_meter.take() else {
            return;
        };
        let id = (ex.chunk_id(), end);
        if shared.last == Some(id) {
            shared.show_again(ex, chunk, &mut observe);
        } else {
            shared.last = Some(id);
            shared.feed_once(ex, chunk, end, &mut observe);
        }
        ex.shared_meter = Some(shared);
    }

    fn feed_once(
        &mut self,
        ex: &mut Exchange,
        chunk: &[u8],
        end: bool,
        observe: &mut impl FnMut(Doc, Json<'_>),
    ) {
        let shares_parse = match self.meter.sse.as_ref() {
            Some(decoder) => decoder.is_idle() && (end || ex.response_events(chunk).1),
            None => end && self.meter.json_body.is_empty() && chunk.len() <= MAX_JSON_BODY,
        };
        if shares_parse {
            self.replay = if self.meter.sse.is_some() {
                Replay::Events
            } else {
                Replay::Json
            };
            self.meter.feed_shared(ex, chunk, end, observe);
            return;
        }
        // This meter parses the chunk itself: keep what it observed for the next stage.
        let mut kept = 0;
        let docs = &mut self.docs;
        self.meter.feed(chunk, end, |kind, json| {
            observe(kind, json);
            if docs.len() <= kept {
                docs.push((kind, JsonDoc::new()));
            }
            if let Some(slot) = docs.get_mut(kept) {
                slot.0 = kind;
                slot.1.parse(&json.to_json_string());
                kept += 1;
            }
        });
        self.replay = Replay::Kept(kept);
    }

    fn show_again(
        &mut self,
        ex: &mut Exchange,
        chunk: &[u8],
        observe: &mut impl FnMut(Doc, Json<'_>),
    ) {
        match self.replay {
            Replay::Nothing => {}
            Replay::Events => {
                for ev in ex.response_events(chunk).0 {
                    if let Some(json) = ev.json() {
                        observe(Doc::Event, json);
                    }
                }
            }
            Replay::Json => {
                if let Some(json) = ex.response_json(chunk) {
                    observe(Doc::Body, json);
                }
            }
            Replay::Kept(n) => {
                for (kind, doc) in self.docs.iter().take(n) {
                    if let Some(json) = doc.root() {
                        observe(*kind, json);
                    }
                }
            }
        }
    }

    /// The usage: reported, or (with `estimate`) estimated from the client's prompt and the
    /// generated text, or zeros. The estimate is made once.
    pub fn finish(ex: &mut Exchange, estimate: bool) -> Usage {
        let Some(mut shared) = ex.shared_meter.take() else {
            return Usage::default();
        };
        let usage = match shared.meter.reported() {
            Some(u) => u,
            None if !estimate || !shared.meter.estimate => Usage::default(),
            None => match shared.estimated.clone() {
                Some(u) => u,
                None => {
                    let u = shared.meter.finish(Some(ex.prompt_text()));
                    shared.estimated = Some(u.clone());
                    u
                }
            },
        };
        ex.shared_meter = Some(shared);
        usage
    }
}

/// A request's token reservation, made before it leaves and settled with the answer's usage:
/// the mechanism budgets (ai-token-ratelimit, ai-quota) share. The estimate is the prompt's
/// tokens plus the output cap the request sets (`max_completion_tokens`, `max_tokens`,
/// `max_output_tokens`), or `default_output` when it sets none.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    /// The model the request names.
    pub model: String,
    /// Prompt tokens, estimated with the model's tokenizer.
    pub input: u64,
    /// Output tokens allowed for.
    pub output: u64,
    metered: bool,
    settled: bool,
    /// The answer is an error (status ≥ 400): it is charged only usage it reports.
    failed: bool,
}

impl Reservation {
    /// Estimates the request in `ex` (its body parsed).
    pub fn estimate(ex: &mut Exchange, default_output: u64) -> Reservation {
        let Some(body) = ex.body.as_ref() else {
            return Reservation::default();
        };
        let model = body.model().unwrap_or_default().to_string();
        let output = output_allowance(body).unwrap_or(default_output);
        let encoding = tokens::encoding_for_model(&model);
        let input = tokens::count(encoding, ex.prompt_text()).unwrap_or(0);
        Reservation {
            model,
            input,
            output,
            metered: false,
            settled: false,
            failed: false,
        }
    }

    /// Tokens reserved.
    pub fn tokens(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// The estimate as usage: prompt tokens in, the allowance out.
    pub fn usage(&self) -> Usage {
        Usage {
            input: self.input,
            output: self.output,
            total: self.tokens(),
            ..Usage::default()
        }
    }

    /// What `usage` draws from a budget: its tokens, or with `prices` its cost in micro-units,
    /// priced by the model that answered (else the one asked for). None when it has no price.
    pub fn amount(&self, ex: &Exchange, usage: &Usage, prices: Option<&PriceTable>) -> Option<u64> {
        let Some(table) = prices else {
            return Some(usage.input.saturating_add(usage.output));
        };
        let answered = SharedMeter::get(ex).and_then(UsageMeter::response_model);
        answered
            .and_then(|m| table.cost(m, usage))
            .or_else(|| table.cost(&self.model, usage))
    }

    /// The answer starts (response headers with `status`): meter it in the exchange's shared
    /// meter. Providers do not bill errors: an error answer is charged only the usage it reports.
    pub fn start(&mut self, ex: &mut Exchange, stream: bool, status: u32) {
        self.failed = status >= 400;
        SharedMeter::start(ex, stream, !self.failed, &self.model);
        self.metered = true;
    }

    /// Feeds an answer chunk; at the end, the usage to settle with (once).
    pub fn feed(&mut self, ex: &mut Exchange, chunk: &[u8], end: bool) -> Option<Usage> {
        if !self.metered {
            return None;
        }
        SharedMeter::feed(ex, chunk, end, |_, _| {});
        if end {
            return self.settle(ex);
        }
        None
    }

    /// The usage to settle with, once: reported, or estimated from what was seen (an answer cut
    /// short is still charged for it). None before the answer started or once settled.
    pub fn settle(&mut self, ex: &mut Exchange) -> Option<Usage> {
        if !self.metered || self.settled {
            return None;
        }
        self.settled = true;
        // An answer the gateway replaced by an error (it could not be used) is not estimated.
        let estimate = !self.failed && !ex.answer_failed();
        Some(SharedMeter::finish(ex, estimate))
    }

    /// Settled without an answer to meter (e.g. ai-cache answered it).
    pub fn mark_settled(&mut self) {
        self.settled = true;
    }

    /// Whether it was settled.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// Whether the answer is being metered ([`Reservation::start`] was called).
    pub fn is_metered(&self) -> bool {
        self.metered
    }
}

/// The output cap a request sets, in the field its API uses.
pub fn output_allowance(body: &RequestBody) -> Option<u64> {
    let from = |v: Option<&Value>| v.and_then(Value::as_u64);
    match body {
        RequestBody::Chat(c) => {
            from(c.extra.get("max_completion_tokens")).or(from(c.extra.get("max_tokens")))
        }
        RequestBody::Messages(m) => m.max_tokens,
        // The Responses API caps output with `max_output_tokens`.
        RequestBody::Json(v) => from(v.get("max_completion_tokens"))
            .or(from(v.get("max_tokens")))
            .or(from(v.get("max_output_tokens"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_cap_of_each_api() {
        let json = |v: Value| RequestBody::Json(v);
        let cap = |v| output_allowance(&json(v));
        assert_eq!(cap(serde_json::json!({"max_output_tokens": 10})), Some(10));
        assert_eq!(cap(serde_json::json!({"max_tokens": 7})), Some(7));
        assert_eq!(cap(serde_json::json!({"input": "hi"})), None);
    }

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

    /// Two stages feeding the same chunks in the same callbacks, as the pipeline calls them.
    fn two_stages(chunks: &[&[u8]], estimate: bool) -> (Exchange, usize) {
        let mut ex = Exchange::default();
        SharedMeter::start(&mut ex, true, estimate, "gpt-4o");
        SharedMeter::start(&mut ex, true, false, "gpt-4o");
        let mut seen = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            ex.begin_callback();
            let chunk = chunk.to_vec();
            let end = i + 1 == chunks.len();
            SharedMeter::feed(&mut ex, &chunk, end, |_, _| seen += 1);
            SharedMeter::feed(&mut ex, &chunk, end, |_, _| seen += 1);
        }
        (ex, seen)
    }

    #[test]
    fn shared_meter_meters_each_chunk_once() {
        let text = "data: {\"choices\":[{\"delta\":{\"content\":\"hi there, how are you\"}}]}\n\n";
        // Whole events per chunk (the exchange's parse), then an event split across chunks
        // (the meter's own decoder, its documents kept for the second stage).
        for chunks in [
            vec![
                text.as_bytes(),
                text.as_bytes(),
                b"data: [DONE]\n\n".as_slice(),
            ],
            vec![
                &text.as_bytes()[..20],
                &text.as_bytes()[20..],
                text.as_bytes(),
            ],
        ] {
            let (mut ex, seen) = two_stages(&chunks, true);
            // Each stage saw both events.
            assert_eq!(seen, 4, "{chunks:?}");
            let u = SharedMeter::finish(&mut ex, true);
            // Two deltas, each metered once (fed twice, the text would be there four times).
            let twice = "hi there, how are you".repeat(2);
            assert!(u.estimated);
            assert_eq!(Some(u.output), tokens::count(Encoding::O200k, &twice));
            assert_ne!(
                u.output,
                tokens::count(Encoding::O200k, &twice.repeat(2)).unwrap()
            );
            // The estimate is made once; without estimates a stage gets zeros.
            assert_eq!(SharedMeter::finish(&mut ex, true), u);
            assert_eq!(SharedMeter::finish(&mut ex, false), Usage::default());
            assert!(SharedMeter::get(&ex).is_some_and(UsageMeter::is_stream));
        }
    }

    #[test]
    fn shared_meter_reports_usage_and_estimates_only_when_asked() {
        let stream = b"data: {\"model\":\"gpt-4o-2024\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n";
        let (mut ex, _) = two_stages(&[stream.as_slice()], false);
        let u = SharedMeter::finish(&mut ex, false);
        assert_eq!((u.input, u.output, u.estimated), (3, 2, false));
        assert_eq!(
            SharedMeter::get(&ex).and_then(UsageMeter::response_model),
            Some("gpt-4o-2024")
        );
        // No stage wanted estimates: none were collected.
        let (mut ex, _) = two_stages(
            &[b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"],
            false,
        );
        assert_eq!(SharedMeter::finish(&mut ex, true), Usage::default());
        // Nothing started: zeros.
        assert_eq!(
            SharedMeter::finish(&mut Exchange::default(), true),
            Usage::default()
        );
    }
}
