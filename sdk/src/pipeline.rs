//! The per-request pipeline: plugin cores are [`Stage`]s over one shared [`Exchange`].
//!
//! The request body is parsed once into the exchange; every stage reads or edits it, and the
//! body is written back only if a stage changed it. A plugin's own `.wasm` runs a pipeline of one
//! stage; the bundle runs all enabled stages in one HTTP context.

use crate::api::{ApiKind, ClientProtocol};
use crate::config::MatchKey;
use crate::error::ErrorReply;
use crate::host::{Host, LogLevel};
use crate::llm::{anthropic, openai};
use crate::sse::{SseDecoder, SseEvent};
use crate::usage::json::{Json, JsonDoc};
use proxy_wasm::types::Action;
use serde::Deserialize;
use serde_json::Value;
use std::time::SystemTime;

/// The request body, parsed once, in the shape its API defines.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// OpenAI chat completions.
    Chat(openai::ChatRequest),
    /// Anthropic Messages.
    Messages(anthropic::MessagesRequest),
    /// Any other JSON.
    Json(Value),
}

impl RequestBody {
    /// The body as a JSON value.
    pub fn to_json(&self) -> Option<Value> {
        match self {
            RequestBody::Chat(c) => serde_json::to_value(c).ok(),
            RequestBody::Messages(m) => serde_json::to_value(m).ok(),
            RequestBody::Json(v) => Some(v.clone()),
        }
    }

    /// The `model` it names.
    pub fn model(&self) -> Option<&str> {
        match self {
            RequestBody::Chat(c) => c.model.as_deref(),
            RequestBody::Messages(m) => m.model.as_deref(),
            RequestBody::Json(v) => v.get("model").and_then(Value::as_str),
        }
    }
}

/// What the stages share about one request.
#[derive(Debug, Default)]
pub struct Exchange {
    /// `:method`.
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// The API the request targets.
    pub api: Option<ApiKind>,
    /// The parsed body, once read.
    pub body: Option<RequestBody>,
    /// Why the body is not what its API takes (not JSON, or JSON of another shape): the 400 a
    /// stage that needs the typed body answers with. `body` then holds the JSON, if any.
    pub body_error: Option<ErrorReply>,
    /// The request body as read when it is not JSON (a form an admin API takes), else none.
    pub unparsed_body: Option<Vec<u8>>,
    route_name: Option<Option<String>>,
    cluster_name: Option<Option<String>>,
    prompt: Option<String>,
    /// The request body as the client sent it, while the body stages run.
    client_json: Option<Value>,
    /// All request headers, read once when the headers arrived (None outside a pipeline).
    request_headers: Option<Vec<(String, String)>>,
    /// Request header changes not written yet: while the headers are held they go to the host
    /// together when the callback ends.
    request_edits: Vec<(String, Option<String>)>,
    /// All response headers, read once (with the changes made since).
    response_headers: Option<Vec<(String, String)>>,
    /// Response header changes not written yet (written together when the callback ends).
    response_edits: Vec<(String, Option<String>)>,
    /// Facts the stages handed each other in this VM (see [`Exchange::set_fact`]).
    facts: Vec<(&'static str, Vec<u8>)>,
    /// Whether facts no stage here wrote are read from Envoy's filter state (a pipeline of one
    /// stage: its plugin runs as its own filter).
    facts_from_host: bool,
    /// The time of the current callback, read once.
    now: Option<SystemTime>,
    /// The first time read for this request.
    started: Option<SystemTime>,
    /// Response bytes decoded and parsed once per callback for every stage that reads them.
    docs: ResponseDocs,
    /// Host callbacks so far.
    callbacks: u64,
    /// Response chunk edits by stages in this callback.
    edits: u64,
    /// Whether the host holds the request headers back while the body is read, as far as the
    /// plugin knows (see [`HeaderHold`]).
    hold: HeaderHold,
    /// Whether request headers written now still reach the upstream: inside the header callback,
    /// and afterwards while the pipeline holds them.
    headers_held: bool,
    /// The host held this request's headers while its body was read: it can hold headers.
    hold_proven: bool,
    /// The provider's answer could not be used: the client got an error in its place.
    answer_failed: bool,
    /// The response headers wait for the whole body ([`BodyMode::Whole`]).
    response_headers_held: bool,
    /// The answer's usage meter, shared by the stages that meter it.
    #[cfg(feature = "tokens")]
    pub(crate) shared_meter: Option<crate::meter::SharedMeter>,
}

/// The `data` of one event of a streamed answer, parsed as JSON.
#[derive(Debug, Clone, Default)]
pub struct ParsedEvent {
    doc: JsonDoc,
}

impl ParsedEvent {
    /// `data` as JSON, when it is JSON.
    pub fn json(&self) -> Option<Json<'_>> {
        self.doc.root()
    }
}

/// What [`Exchange::response_events`] and [`Exchange::response_json`] last parsed; the
/// buffers are reused from callback to callback.
#[derive(Debug, Default)]
struct ResponseDocs {
    kind: DocKind,
    key: Vec<u8>,
    /// The first `count` are the events of `key`.
    events: Vec<ParsedEvent>,
    count: usize,
    /// Whether the bytes ended where an event ends (a decoder fed them would hold nothing).
    idle_after: bool,
    body: JsonDoc,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum DocKind {
    #[default]
    Nothing,
    Events,
    Json,
}

/// Largest parsed response kept for the next stage (bigger ones are dropped after the callback).
const KEEP_DOC_BYTES: usize = 64 * 1024;

impl Exchange {
    /// The API kind (`Other` before headers were seen).
    pub fn api(&self) -> ApiKind {
        self.api.unwrap_or(ApiKind::Other)
    }

    /// The protocol error replies use.
    pub fn protocol(&self) -> ClientProtocol {
        self.api().client_protocol()
    }

    /// Whether request headers set now still reach the upstream (the pipeline holds them, or
    /// this is the header callback). False once they went on ahead of the body.
    pub fn request_headers_held(&self) -> bool {
        self.headers_held
    }

    /// Whether the provider's answer was replaced by an error (it could not be translated, or
    /// its stream broke): usage it did not report is not estimated for it.
    pub fn answer_failed(&self) -> bool {
        self.answer_failed
    }

    /// Marks the provider's answer as replaced by an error.
    pub fn set_answer_failed(&mut self) {
        self.answer_failed = true;
    }

    /// The response's `:status` (0 when absent or not a number).
    pub fn response_status(&mut self, host: &dyn Host) -> u32 {
        self.response_header(host, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Whether response headers set now still reach the client (the pipeline holds them for
    /// [`BodyMode::Whole`] or a callout).
    pub fn response_headers_held(&self) -> bool {
        self.response_headers_held
    }

    /// The size of the request headers as Envoy counts it (names plus values), from the copy
    /// read when they arrived.
    pub fn request_header_bytes(&self) -> usize {
        self.request_headers
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    /// The Envoy route name, read once.
    pub fn route_name(&mut self, host: &dyn Host) -> Option<String> {
        self.route_name
            .get_or_insert_with(|| prop_string(host, &["xds", "route_name"]))
            .clone()
    }

    /// The upstream cluster name, read once.
    pub fn cluster_name(&mut self, host: &dyn Host) -> Option<String> {
        self.cluster_name
            .get_or_insert_with(|| prop_string(host, &["xds", "cluster_name"]))
            .clone()
    }

    /// The client's prompt text (for token estimates), extracted once per request from the body
    /// as the client sent it and shared by every stage that asks (later calls, even after other
    /// stages edited the body, return the same text).
    pub fn prompt_text(&mut self) -> &str {
        if self.prompt.is_none() {
            let mut text = String::new();
            match self.client_json() {
                Some(doc) => crate::usage::request_text(doc, &mut text),
                None => {
                    if let Some(doc) = self.body.as_ref().and_then(RequestBody::to_json) {
                        crate::usage::request_text(&doc, &mut text);
                    }
                }
            }
            self.prompt = Some(text);
        }
        self.prompt.as_deref().unwrap_or_default()
    }

    /// The request body as JSON, as the client sent it: available to the stages while they see
    /// the body (`on_request_body`), without converting the parsed body back.
    pub fn client_json(&self) -> Option<&Value> {
        match (&self.client_json, &self.body) {
            (Some(v), _) => Some(v),
            (None, Some(RequestBody::Json(v))) => Some(v),
            _ => None,
        }
    }

    /// A request header (lowercase name). Inside a pipeline the headers were read once when they
    /// arrived, and changes made through [`Exchange::set_request_header`] are seen; otherwise
    /// the host is asked.
    pub fn request_header(&self, host: &dyn Host, name: &str) -> Option<String> {
        match &self.request_headers {
            Some(list) => list
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone()),
            None => host.request_header(name),
        }
    }

    /// Sets or removes a request header, keeping the exchange's copy in step. While the headers
    /// are held the change is written when the callback ends, together with the others (true);
    /// afterwards it is written now, and false says the host refused it.
    pub fn set_request_header(&mut self, host: &dyn Host, name: &str, value: Option<&str>) -> bool {
        let Some(list) = self.request_headers.as_mut() else {
            return host.set_request_header(name, value);
        };
        // Removing a header the request does not have needs no host call.
        if value.is_none() && !list.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            return true;
        }
        if !self.headers_held && !host.set_request_header(name, value) {
            return false;
        }
        edit(list, name, value);
        if self.headers_held {
            edit_later(&mut self.request_edits, name, value);
        }
        true
    }

    /// A response header (lowercase name); all of them are read from the host once.
    pub fn response_header(&mut self, host: &dyn Host, name: &str) -> Option<String> {
        self.response_headers
            .get_or_insert_with(|| host.response_headers())
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// Sets or removes a response header, keeping the exchange's copy in step; the changes go
    /// to the host together when the callback ends.
    pub fn set_response_header(&mut self, host: &dyn Host, name: &str, value: Option<&str>) {
        let list = self
            .response_headers
            .get_or_insert_with(|| host.response_headers());
        if value.is_none() && !list.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            return;
        }
        edit(list, name, value);
        edit_later(&mut self.response_edits, name, value);
    }

    /// Writes the header changes made during this callback: one change as itself, more as
    /// the whole header map in one host call.
    pub(crate) fn write_headers(&mut self, host: &dyn Host) {
        let edits = std::mem::take(&mut self.request_edits);
        if !edits.is_empty() {
            let written = match (&edits[..], &self.request_headers) {
                ([(name, value)], _) => host.set_request_header(name, value.as_deref()),
                (_, Some(list)) if lossless(list) => host.set_request_headers(list),
                _ => edits
                    .iter()
                    .all(|(name, value)| host.set_request_header(name, value.as_deref())),
            };
            if !written {
                host.log(
                    LogLevel::Warn,
                    "request headers could not be changed: the host already sent them",
                );
            }
        }
        let edits = std::mem::take(&mut self.response_edits);
        match &edits[..] {
            [] => {}
            [(name, value)] => host.set_response_header(name, value.as_deref()),
            _ => match &self.response_headers {
                Some(list) if lossless(list) => host.set_response_headers(list),
                _ => {
                    for (name, value) in &edits {
                        host.set_response_header(name, value.as_deref());
                    }
                }
            },
        }
    }

    /// Forgets the response headers read (they are new, or a stage may have replaced them).
    pub(crate) fn forget_response_headers(&mut self) {
        self.response_headers = None;
        self.response_edits.clear();
    }

    /// Hands a fact to the later stages and writes it to Envoy's filter state as `wasm.<key>`
    /// (for access logs, and for plugins running as filters of their own).
    pub fn set_fact(&mut self, host: &dyn Host, key: &'static str, value: &[u8]) {
        match self.facts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => self.facts.push((key, value.to_vec())),
        }
        let _ = host.set_property(&[key], value);
    }

    /// A fact a stage set; a plugin running as its own filter reads the facts other filters
    /// wrote from Envoy's filter state.
    pub fn fact(&self, host: &dyn Host, key: &str) -> Option<Vec<u8>> {
        match self.facts.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(v.clone()),
            None if self.facts_from_host => host.property(&[key]),
            None => None,
        }
    }

    /// Sets fields of the `ai_log` access-log object, keeping the fields other stages wrote
    /// there (the way Higress plugins add their own keys to the AI access log).
    pub fn merge_ai_log<K: Into<String>>(
        &mut self,
        host: &dyn Host,
        fields: impl IntoIterator<Item = (K, Value)>,
    ) {
        let mut object = self
            .fact(host, crate::facts::AI_LOG)
            .and_then(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).ok())
            .unwrap_or_default();
        for (key, value) in fields {
            object.insert(key.into(), value);
        }
        let text = Value::Object(object).to_string();
        self.set_fact(host, crate::facts::AI_LOG, text.as_bytes());
    }

    /// Wall-clock time, read from the host once per callback.
    pub fn now(&mut self, host: &dyn Host) -> SystemTime {
        let now = *self.now.get_or_insert_with(|| host.now());
        self.started.get_or_insert(now);
        now
    }

    /// When this request started: the first time a stage read (read now if none did), without
    /// another host call later on.
    pub fn started(&mut self, host: &dyn Host) -> SystemTime {
        match self.started {
            Some(t) => t,
            None => self.now(host),
        }
    }

    /// The SSE events in `data` (fed to a fresh decoder, then finished), with their `data`
    /// parsed as JSON. Decoded once per callback for all stages that pass the same bytes.
    /// Also says whether `data` ended where an event ends (see [`SseDecoder::is_idle`]).
    pub fn response_events(&mut self, data: &[u8]) -> (&[ParsedEvent], bool) {
        let docs = &mut self.docs;
        if docs.kind != DocKind::Events || docs.key != data {
            let mut decoder = SseDecoder::default();
            let (events, count) = (&mut docs.events, &mut docs.count);
            *count = 0;
            let mut on_event = |event: &SseEvent| {
                if events.len() <= *count {
                    events.push(ParsedEvent::default());
                }
                if let Some(slot) = events.get_mut(*count) {
                    slot.doc.parse(&event.data);
                    *count += 1;
                }
            };
            // An oversized event ends decoding; the events before it still count.
            let _ = decoder.feed_with(data, &mut on_event);
            let idle_after = decoder.is_idle();
            decoder.finish_with(&mut on_event);
            docs.idle_after = idle_after;
            docs.key.clear();
            docs.key.extend_from_slice(data);
            docs.kind = DocKind::Events;
        }
        let events = docs.events.get(..docs.count).unwrap_or_default();
        (events, docs.idle_after)
    }

    /// `body` parsed as JSON, once per callback for all stages that pass the same bytes.
    pub fn response_json(&mut self, body: &[u8]) -> Option<Json<'_>> {
        let docs = &mut self.docs;
        if docs.kind != DocKind::Json || docs.key != body {
            docs.body.parse_bytes(body);
            docs.key.clear();
            docs.key.extend_from_slice(body);
            docs.kind = DocKind::Json;
        }
        docs.body.root()
    }

    /// Starts a host callback: the time is read again, parsed response bytes are forgotten.
    pub(crate) fn begin_callback(&mut self) {
        self.now = None;
        self.callbacks += 1;
        self.edits = 0;
        self.forget_docs();
    }

    /// Which response chunk a stage is given: the callback, and how many stages before it
    /// edited the chunk in this callback. Stages that see the same id see the same bytes.
    pub fn chunk_id(&self) -> (u64, u64) {
        (self.callbacks, self.edits)
    }

    /// Which host callback this is (counts up; stages use it to tell one callback from the
    /// next).
    pub fn callback(&self) -> u64 {
        self.callbacks
    }

    fn forget_docs(&mut self) {
        let docs = &mut self.docs;
        docs.kind = DocKind::Nothing;
        docs.count = 0;
        docs.key.clear();
        if docs.key.capacity() > KEEP_DOC_BYTES {
            docs.key = Vec::new();
        }
        if docs.body.capacity() > KEEP_DOC_BYTES {
            docs.body = JsonDoc::new();
        }
        let big = |e: &ParsedEvent| e.doc.capacity() > KEEP_DOC_BYTES;
        if docs.events.iter().any(big) {
            docs.events = Vec::new();
        }
    }

    /// A request fact for `_rules_` matching.
    pub fn match_value(&mut self, host: &dyn Host, key: MatchKey) -> Option<String> {
        match key {
            MatchKey::Route => self.route_name(host),
            MatchKey::Domain => Some(self.authority.clone()),
            MatchKey::Service => self.cluster_name(host),
        }
    }
}

/// Sets (`Some`) or removes (`None`) a header in a list.
fn edit(list: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    list.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    if let Some(v) = value {
        list.push((name.to_ascii_lowercase(), v.to_string()));
    }
}

/// Records a change to write later (the last change of a name wins).
fn edit_later(edits: &mut Vec<(String, Option<String>)>, name: &str, value: Option<&str>) {
    edits.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    edits.push((name.to_ascii_lowercase(), value.map(str::to_string)));
}

/// Whether headers read from the host can be written back as they are (values that were not
/// UTF-8 were read with replacement characters; those are changed one by one instead).
fn lossless(list: &[(String, String)]) -> bool {
    !list.iter().any(|(_, v)| v.contains('\u{FFFD}'))
}

fn prop_string(host: &dyn Host, path: &[&str]) -> Option<String> {
    host.property(path)
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|s| !s.is_empty())
}

/// What a stage needs after seeing the request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing more from the request.
    Nothing,
    /// The parsed request body.
    Body,
}

/// Whether a filter that pauses in its request-header callback still receives the body, so the
/// headers can wait for it (Envoy's `allow_on_headers_stop_iteration`, Envoy >= 1.35; Higress's
/// Envoy always). Learnt per plugin config: the first body callback of a held request proves it,
/// body bytes that reach Envoy but never the filter disprove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderHold {
    /// Not learnt yet: headers are held, and the shell watches the first such request.
    #[default]
    Unknown,
    /// Headers wait for the body.
    Works,
    /// Headers go on ahead of the body (the body is held in the body callback instead).
    Unavailable,
}

/// One plugin core, driven by the pipeline.
pub trait Stage {
    /// Plugin name, for logs.
    fn name(&self) -> &'static str;

    /// Sees the request headers (readable and writable here). May refuse the request.
    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply>;

    /// Sees the parsed body (called only if `on_request_headers` asked for it) and says what it
    /// did: left it, changed `ex.body`, or waits for a callout before the request may go on.
    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply>;

    /// The request headers go on ahead of the body (the host cannot hold them): a stage that
    /// must change them after the body refuses the request here, before anything is sent.
    fn on_headers_released(
        &mut self,
        _host: &dyn Host,
        _ex: &mut Exchange,
    ) -> Result<(), ErrorReply> {
        Ok(())
    }

    /// Sees the response headers (writable here) and says how it wants the body.
    fn on_response_headers(&mut self, _host: &dyn Host, _ex: &mut Exchange) -> BodyMode {
        BodyMode::Untouched
    }

    /// The stream is done (also after a local reply or a client reset): last chance to record.
    fn on_log(&mut self, _host: &dyn Host, _ex: &mut Exchange) {}

    /// The answer to a gRPC callout this stage made (`status` is the gRPC status code).
    fn on_grpc_call_response(
        &mut self,
        _host: &dyn Host,
        _ex: &mut Exchange,
        _token: u32,
        _status: u32,
        _message: &[u8],
    ) -> CallResult {
        CallResult::NotMine
    }

    /// The answer to a callout this stage made.
    fn on_http_call_response(
        &mut self,
        _host: &dyn Host,
        _ex: &mut Exchange,
        _token: u32,
        _body_size: usize,
    ) -> CallResult {
        CallResult::NotMine
    }

    /// Sees response body bytes: each chunk as it arrives (`Stream`) or the whole body once
    /// (`Buffer`, with `end` true). Says what goes on to the next stage and whether it changed
    /// them, and whether Envoy keeps holding the answer.
    fn on_response_body(
        &mut self,
        _host: &dyn Host,
        _ex: &mut Exchange,
        chunk: Vec<u8>,
        _end: bool,
    ) -> ChunkOut {
        ChunkOut::pass(chunk)
    }
}

/// What a stage did with the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyOutcome {
    /// It edited `ex.body`.
    pub changed: bool,
    /// It waits for a callout before the request may go on (`on_http_call_response` resumes).
    pub wait: bool,
}

impl BodyOutcome {
    /// Read, left as it is.
    pub const UNCHANGED: BodyOutcome = BodyOutcome {
        changed: false,
        wait: false,
    };
    /// `ex.body` was edited.
    pub const CHANGED: BodyOutcome = BodyOutcome {
        changed: true,
        wait: false,
    };

    /// The same, and the request waits for a callout when `wait` is true.
    pub fn waiting(self, wait: bool) -> BodyOutcome {
        BodyOutcome { wait, ..self }
    }
}

/// How response bytes a stage returns relate to the ones it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// The same bytes.
    None,
    /// Rewritten: they replace the chunk.
    Edited,
    /// They replace everything Envoy holds of the answer, not just this chunk (a cut).
    ReplacesHeld,
}

/// What a stage passes on from a response chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkOut {
    /// The bytes for the next stage (and then the client).
    pub bytes: Vec<u8>,
    /// How they relate to the bytes given.
    pub change: Change,
    /// Envoy keeps buffering the answer (the stage releases it from a callout answer).
    pub hold: bool,
}

impl ChunkOut {
    /// Unchanged.
    pub fn pass(bytes: Vec<u8>) -> ChunkOut {
        ChunkOut {
            bytes,
            change: Change::None,
            hold: false,
        }
    }

    /// Rewritten bytes.
    pub fn edited(bytes: Vec<u8>) -> ChunkOut {
        ChunkOut {
            change: Change::Edited,
            ..ChunkOut::pass(bytes)
        }
    }

    /// Bytes that replace everything Envoy holds.
    pub fn replace_held(bytes: Vec<u8>) -> ChunkOut {
        ChunkOut {
            change: Change::ReplacesHeld,
            ..ChunkOut::pass(bytes)
        }
    }

    /// The same, with Envoy holding the answer when `hold` is true.
    pub fn holding(self, hold: bool) -> ChunkOut {
        ChunkOut { hold, ..self }
    }
}

/// What a stage decided on a callout answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallResult {
    /// Not this stage's callout.
    NotMine,
    /// Still waiting (another callout is out).
    Wait,
    /// The held request may go on; `changed` says the stage edited `ex.body` meanwhile (it is
    /// written back, as for [`BodyOutcome::changed`]).
    ResumeRequest {
        /// The stage edited `ex.body`.
        changed: bool,
    },
    /// The held response may go on.
    ResumeResponse,
    /// Answer the client with this instead of calling the upstream.
    Reply(ErrorReply),
    /// Answer the client with this served answer (the stage did the upstream's work, e.g. an
    /// agent loop): the stages before this one see it as the response, as separate filters
    /// earlier in Envoy's chain see a later filter's local reply.
    Answer(ErrorReply),
}

/// How a stage wants the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BodyMode {
    /// Not at all: it passes untouched.
    Untouched,
    /// Chunk by chunk as it arrives (SSE streams).
    Stream,
    /// Whole, once (JSON answers, errors).
    Buffer,
    /// Whole, once, with the response headers held until it is complete, so a stage can still
    /// set the status and headers from the body. Only where the host is known to hold headers
    /// (this request's body arrived while its headers waited) and a body is coming; elsewhere
    /// as [`BodyMode::Buffer`].
    Whole,
    /// Whole, once, and the headers are held until the stage resumes them from
    /// [`Stage::on_http_call_response`] (it may rewrite them first).
    Hold,
}

/// Runs stages in order over one request.
pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
    wants_body: Vec<bool>,
    /// The shared request state.
    pub ex: Exchange,
    replied: bool,
    response_modes: Vec<BodyMode>,
    response_mode: BodyMode,
    /// Request stages still to run after a pending callout, and the buffered body's length.
    resume_from: Option<(usize, usize)>,
    /// A stage edited `ex.body` (it said so with [`BodyOutcome`] or
    /// [`CallResult::ResumeRequest`]): it is written back.
    body_changed: bool,
    /// Response bytes already given to the stages while Envoy holds them.
    response_seen: usize,
    /// The request headers are paused until the body has been read.
    holding: bool,
    /// A stage holds the response headers until its callout answers (`BodyMode::Hold`).
    response_waiting: bool,
    /// A stage answered with [`CallResult::Answer`]: the stages before it see the answer.
    answered_by: Option<usize>,
    /// Response body Envoy buffered while the headers were held: its size, and whether it is
    /// all of it.
    response_buffered: Option<(usize, bool)>,
    /// The last callback was the answer's last body callback.
    response_ended: bool,
}

impl Pipeline {
    /// A pipeline over `stages` (request order).
    pub fn new(stages: Vec<Box<dyn Stage>>) -> Pipeline {
        Pipeline {
            wants_body: vec![false; stages.len()],
            ex: Exchange {
                facts_from_host: stages.len() == 1,
                ..Exchange::default()
            },
            stages,
            replied: false,
            response_modes: Vec::new(),
            response_mode: BodyMode::Untouched,
            resume_from: None,
            body_changed: false,
            response_seen: 0,
            holding: false,
            response_waiting: false,
            answered_by: None,
            response_buffered: None,
            response_ended: false,
        }
    }

    /// Tells the pipeline what the plugin knows of the host's header hold (before each request).
    pub fn set_header_hold(&mut self, hold: HeaderHold) {
        self.ex.hold = hold;
    }

    /// The shared request state.
    pub fn exchange(&self) -> &Exchange {
        &self.ex
    }

    /// Whether the request headers are paused waiting for the body.
    pub fn holding_headers(&self) -> bool {
        self.holding && !self.replied
    }

    /// The host turned out not to deliver the body while the headers are paused: let them go
    /// on ahead of it (or refuse the request when a stage needed them later).
    pub fn release_held_headers(&mut self, host: &dyn Host) {
        if !self.holding_headers() {
            return;
        }
        self.ex.begin_callback();
        self.ex.hold = HeaderHold::Unavailable;
        if self.release_headers(host) {
            self.ex.write_headers(host);
            host.resume_request();
        }
    }

    /// Headers go on before the body: stages may refuse; the body may change length. Returns
    /// false when a stage refused (a reply was sent).
    fn release_headers(&mut self, host: &dyn Host) -> bool {
        self.holding = false;
        for i in 0..self.stages.len() {
            if !self.wants_body[i] {
                continue;
            }
            if let Err(e) = self.stages[i].on_headers_released(host, &mut self.ex) {
                let name = self.stages[i].name();
                self.reply(host, name, &e);
                return false;
            }
        }
        self.ex.set_request_header(host, "content-length", None);
        self.ex.headers_held = false;
        true
    }

    /// Whether a local reply was sent.
    pub fn replied(&self) -> bool {
        self.replied
    }

    fn reply(&mut self, host: &dyn Host, stage: &str, err: &ErrorReply) -> Action {
        self.ex.client_json = None;
        host.log(
            LogLevel::Debug,
            &format!("[{stage}] local reply {}: {}", err.status, err.message),
        );
        err.send(host, self.ex.protocol());
        self.replied = true;
        Action::Pause
    }

    fn on_request_headers_run(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        if self.stages.is_empty() {
            return Action::Continue;
        }
        self.ex.begin_callback();
        // One host call for every header the stages read (pseudo-headers included).
        self.ex.request_headers = Some(host.request_headers());
        let header = |ex: &Exchange, n: &str| ex.request_header(host, n).unwrap_or_default();
        self.ex.method = header(&self.ex, ":method");
        self.ex.path = header(&self.ex, ":path");
        self.ex.authority = header(&self.ex, ":authority");
        self.ex.api = Some(ApiKind::detect(&self.ex.method, &self.ex.path));
        self.ex.headers_held = true;
        for i in 0..self.stages.len() {
            match self.stages[i].on_request_headers(host, &mut self.ex) {
                Ok(need) => self.wants_body[i] = need == Need::Body,
                Err(e) => {
                    let name = self.stages[i].name();
                    return self.reply(host, name, &e);
                }
            }
        }
        if !self.wants_body.contains(&true) {
            self.ex.headers_held = false;
            return Action::Continue;
        }
        if end_of_stream {
            return self.finish_body(host, &[]);
        }
        match self.ex.hold {
            // Headers wait for the body: a refused request never reaches the upstream, and
            // headers decided from the body are set on the request itself.
            HeaderHold::Works | HeaderHold::Unknown => {
                self.holding = true;
                Action::Pause
            }
            // A paused header callback would stop the body too: headers go on, the body is
            // held in `on_request_body` instead.
            HeaderHold::Unavailable => {
                if self.release_headers(host) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
        }
    }

    fn on_request_body_run(
        &mut self,
        host: &dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if !self.wants_body.contains(&true) {
            return Action::Continue;
        }
        // A body callback while the headers wait: the host holds headers.
        self.ex.hold_proven |= self.holding;
        if !end_of_stream {
            return Action::Pause;
        }
        self.ex.begin_callback();
        let raw = host.request_body(0, body_size).unwrap_or_default();
        self.finish_body(host, &raw)
    }

    /// Parses the body once for every stage. A body that is not what its API takes is no
    /// reason to refuse here: observing stages go on with what could be read, and the stages
    /// that need it typed answer with [`Exchange::body_error`].
    fn finish_body(&mut self, host: &dyn Host, raw: &[u8]) -> Action {
        let parsed = parse_request(self.ex.api(), raw);
        if parsed.body.is_none() {
            self.ex.unparsed_body = Some(raw.to_vec());
        }
        self.ex.body = parsed.body;
        self.ex.client_json = parsed.json;
        self.ex.body_error = parsed.error;
        self.run_body_stages(host, 0, raw.len())
    }

    /// Runs the body stages from `from`; pauses at a stage waiting for a callout.
    fn run_body_stages(&mut self, host: &dyn Host, from: usize, raw_len: usize) -> Action {
        for i in from..self.stages.len() {
            if !self.wants_body[i] {
                continue;
            }
            match self.stages[i].on_request_body(host, &mut self.ex) {
                Err(e) => {
                    let name = self.stages[i].name();
                    return self.reply(host, name, &e);
                }
                Ok(outcome) => {
                    self.body_changed |= outcome.changed;
                    if outcome.wait {
                        self.resume_from = Some((i + 1, raw_len));
                        return Action::Pause;
                    }
                }
            }
        }
        // Every stage has seen the body: the client's JSON is no longer needed.
        self.ex.client_json = None;
        let action = self.write_body(host, raw_len);
        if action == Action::Continue {
            // Headers and body go on together now.
            self.holding = false;
            self.ex.headers_held = false;
        }
        action
    }

    /// Writes the body back if a stage changed it (with its new length while headers are held).
    fn write_body(&mut self, host: &dyn Host, raw_len: usize) -> Action {
        if self.body_changed {
            let bytes = match &self.ex.body {
                Some(RequestBody::Chat(b)) => serde_json::to_vec(b),
                Some(RequestBody::Messages(b)) => serde_json::to_vec(b),
                Some(RequestBody::Json(b)) => serde_json::to_vec(b),
                None => return Action::Continue,
            };
            match bytes {
                Ok(bytes) => {
                    if let Err(status) = host.set_request_body(0, raw_len, &bytes) {
                        let e = ErrorReply::internal(format!(
                            "cannot rewrite request body: {status:?}"
                        ));
                        return self.reply(host, "pipeline", &e);
                    }
                    if self.ex.headers_held {
                        let length = bytes.len().to_string();
                        self.ex
                            .set_request_header(host, "content-length", Some(&length));
                    }
                }
                Err(err) => {
                    let e = ErrorReply::internal(format!("cannot encode request body: {err}"));
                    return self.reply(host, "pipeline", &e);
                }
            }
        }
        Action::Continue
    }
}

impl Pipeline {
    /// `on_http_response_headers`: stages see the response in reverse order (nearest the
    /// upstream first).
    pub fn on_response_headers(&mut self, host: &dyn Host) -> Action {
        self.on_response_headers_end(host, false)
    }

    fn on_response_headers_end_run(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        if (self.replied && self.answered_by.is_none()) || self.stages.is_empty() {
            return Action::Continue;
        }
        self.ex.begin_callback();
        self.ex.forget_response_headers();
        // After a stage's served answer, only the stages before it see the response.
        let seen = self.answered_by.unwrap_or(self.stages.len());
        self.response_modes = self
            .stages
            .iter_mut()
            .enumerate()
            .rev()
            .map(|(i, stage)| {
                if i < seen {
                    stage.on_response_headers(host, &mut self.ex)
                } else {
                    BodyMode::Untouched
                }
            })
            .collect();
        self.response_mode = self
            .response_modes
            .iter()
            .copied()
            .max()
            .unwrap_or(BodyMode::Untouched);
        let can_hold = self.ex.hold_proven || self.ex.hold == HeaderHold::Works;
        if self.response_mode == BodyMode::Whole && (end_of_stream || !can_hold) {
            self.response_mode = BodyMode::Buffer;
        }
        if self.response_mode != BodyMode::Untouched {
            self.ex.set_response_header(host, "content-length", None);
        }
        match self.response_mode {
            BodyMode::Hold => {
                self.response_waiting = true;
                self.ex.response_headers_held = true;
                Action::Pause
            }
            BodyMode::Whole => {
                self.ex.response_headers_held = true;
                Action::Pause
            }
            _ => Action::Continue,
        }
    }

    /// `on_log`: stages in response order. Right after the answer's last body callback, that
    /// callback's clock reading still serves.
    pub fn on_log(&mut self, host: &dyn Host) {
        let now = self.ex.now.filter(|_| self.response_ended);
        self.ex.begin_callback();
        self.ex.now = now;
        for stage in self.stages.iter_mut().rev() {
            stage.on_log(host, &mut self.ex);
        }
    }

    /// `on_http_call_response` of the HTTP context: hands the answer to the stage that made the
    /// callout and resumes what it held.
    pub fn on_http_call_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        self.on_call_result(host, |stage, host, ex| {
            stage.on_http_call_response(host, ex, token, body_size)
        });
        self.ex.write_headers(host);
    }

    /// `on_grpc_call_response` of the HTTP context.
    pub fn on_grpc_call_response(&mut self, host: &dyn Host, token: u32, status: u32, size: usize) {
        let message = host.grpc_call_response_body(size).unwrap_or_default();
        self.on_call_result(host, |stage, host, ex| {
            stage.on_grpc_call_response(host, ex, token, status, &message)
        });
        self.ex.write_headers(host);
    }

    /// `on_http_request_headers`.
    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        let action = self.on_request_headers_run(host, end_of_stream);
        // Headers held for the body, on a host known to keep them writable, are written once
        // with the changes the body brings.
        if !(self.holding_headers() && self.ex.hold == HeaderHold::Works) {
            self.ex.write_headers(host);
        }
        action
    }

    /// `on_http_request_body`.
    pub fn on_request_body(
        &mut self,
        host: &dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let action = self.on_request_body_run(host, body_size, end_of_stream);
        self.ex.write_headers(host);
        action
    }

    /// [`Pipeline::on_response_headers`], told whether the answer ends with its headers (then
    /// nothing is held for a body that will not come).
    pub fn on_response_headers_end(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        let action = self.on_response_headers_end_run(host, end_of_stream);
        self.ex.write_headers(host);
        action
    }

    /// `on_http_response_body`. While a stage holds the body, Envoy keeps buffering and
    /// `body_size` grows; only the bytes not seen yet go through the stages.
    pub fn on_response_body(
        &mut self,
        host: &dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let action = self.on_response_body_run(host, body_size, end_of_stream);
        self.ex.write_headers(host);
        self.response_ended = end_of_stream && action == Action::Continue;
        action
    }

    fn on_call_result(
        &mut self,
        host: &dyn Host,
        mut ask: impl FnMut(&mut dyn Stage, &dyn Host, &mut Exchange) -> CallResult,
    ) {
        self.ex.begin_callback();
        // A stage may rewrite the response headers from a callout answer.
        self.ex.forget_response_headers();
        for i in 0..self.stages.len() {
            match ask(self.stages[i].as_mut(), host, &mut self.ex) {
                CallResult::NotMine => continue,
                CallResult::Wait => return,
                CallResult::ResumeResponse => {
                    self.resume_response(host);
                    return;
                }
                CallResult::Reply(e) => {
                    let name = self.stages[i].name();
                    self.reply(host, name, &e);
                    return;
                }
                CallResult::Answer(e) => {
                    self.answered_by = Some(i);
                    let name = self.stages[i].name();
                    self.reply(host, name, &e);
                    return;
                }
                CallResult::ResumeRequest { changed } => {
                    self.body_changed |= changed;
                    let Some((from, raw_len)) = self.resume_from.take() else {
                        return;
                    };
                    if self.run_body_stages(host, from, raw_len) == Action::Continue {
                        self.ex.write_headers(host);
                        host.resume_request();
                    }
                    return;
                }
            }
        }
    }

    /// A stage's callout answered: the held response goes on. A body that arrived meanwhile
    /// (hosts that hold headers deliver it) goes through the stages first, once it is whole.
    fn resume_response(&mut self, host: &dyn Host) {
        self.response_seen = 0;
        self.ex.response_headers_held = false;
        if !std::mem::take(&mut self.response_waiting) {
            self.ex.write_headers(host);
            host.resume_response();
            return;
        }
        match self.response_buffered.take() {
            None => {
                self.ex.write_headers(host);
                host.resume_response();
            }
            Some((size, true)) => {
                if self.on_response_body(host, size, true) == Action::Continue {
                    self.ex.write_headers(host);
                    host.resume_response();
                }
            }
            // The rest is still coming: the last body callback lets it all go.
            Some((_, false)) => {}
        }
    }

    fn on_response_body_run(
        &mut self,
        host: &dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.response_waiting {
            // Headers are held for a callout: the body waits with them, unseen.
            self.response_buffered = Some((body_size, end_of_stream));
            return Action::Pause;
        }
        match self.response_mode {
            BodyMode::Untouched => Action::Continue,
            BodyMode::Buffer | BodyMode::Whole | BodyMode::Hold if !end_of_stream => Action::Pause,
            mode => {
                self.ex.begin_callback();
                let seen = self.response_seen.min(body_size);
                let fresh = body_size - seen;
                let mut bytes = host.response_body(seen, fresh).unwrap_or_default();
                let end = end_of_stream || mode != BodyMode::Stream;
                let stages = self.stages.iter_mut().rev().zip(self.response_modes.iter());
                let mut held = false;
                let mut change = Change::None;
                for (stage, wants) in stages {
                    if *wants != BodyMode::Untouched {
                        let out = stage.on_response_body(host, &mut self.ex, bytes, end);
                        if out.change != Change::None {
                            self.ex.edits += 1;
                        }
                        bytes = out.bytes;
                        change = change.max(out.change);
                        held |= out.hold;
                    }
                }
                self.ex.forget_docs();
                let changed = change == Change::Edited;
                if change == Change::ReplacesHeld {
                    if let Err(status) = host.set_response_body(0, body_size, &bytes) {
                        host.log(
                            LogLevel::Error,
                            &format!("cannot rewrite response body: {status:?}"),
                        );
                    }
                } else if changed && seen > 0 {
                    // Envoy replaces buffered bytes only from the start: rewrite the held
                    // prefix with the changed tail.
                    let mut whole = host.response_body(0, seen).unwrap_or_default();
                    whole.extend_from_slice(&bytes);
                    if let Err(status) = host.set_response_body(0, body_size, &whole) {
                        host.log(
                            LogLevel::Error,
                            &format!("cannot rewrite response body: {status:?}"),
                        );
                    }
                } else if changed {
                    if let Err(status) = host.set_response_body(seen, fresh, &bytes) {
                        host.log(
                            LogLevel::Error,
                            &format!("cannot rewrite response body: {status:?}"),
                        );
                    }
                }
                if held {
                    self.response_seen = seen + bytes.len();
                    Action::Pause
                } else {
                    self.response_seen = 0;
                    self.ex.response_headers_held = false;
                    Action::Continue
                }
            }
        }
    }
}

/// A request body as read for its API.
struct Parsed {
    /// The body: typed for its API, or JSON of another shape; none when not JSON.
    body: Option<RequestBody>,
    /// The JSON a typed body was read from.
    json: Option<Value>,
    /// Why the body is not what its API takes (a 400 for the stages that need it typed).
    error: Option<ErrorReply>,
}

/// Parses a request body for its API, keeping whatever could be read.
fn parse_request(api: ApiKind, raw: &[u8]) -> Parsed {
    let value: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => {
            return Parsed {
                body: None,
                json: None,
                error: Some(ErrorReply::bad_request(
                    "invalid_json",
                    format!("request body is not valid JSON: {e}"),
                )),
            }
        }
    };
    let shape_error = |what: &str, e: serde_json::Error| {
        ErrorReply::bad_request(
            "invalid_request_body",
            format!("request body is not a valid {what} request: {e}"),
        )
    };
    let typed = match api {
        ApiKind::ChatCompletions => openai::ChatRequest::deserialize(&value)
            .map(RequestBody::Chat)
            .map_err(|e| shape_error("chat completions", e)),
        ApiKind::AnthropicMessages => anthropic::MessagesRequest::deserialize(&value)
            .map(RequestBody::Messages)
            .map_err(|e| shape_error("messages", e)),
        _ => {
            return Parsed {
                body: Some(RequestBody::Json(value)),
                json: None,
                error: None,
            }
        }
    };
    match typed {
        Ok(body) => Parsed {
            body: Some(body),
            json: Some(value),
            error: None,
        },
        Err(e) => Parsed {
            body: Some(RequestBody::Json(value)),
            json: None,
            error: Some(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MockHost;

    /// Appends a message and records what it saw.
    struct Tagger {
        need: Need,
        refuse: bool,
    }

    impl Stage for Tagger {
        fn name(&self) -> &'static str {
            "tagger"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            if self.refuse {
                return Err(ErrorReply::new(403, "permission_error", None, "no"));
            }
            Ok(self.need)
        }
        fn on_request_body(
            &mut self,
            _: &dyn Host,
            ex: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            if let Some(RequestBody::Chat(chat)) = &mut ex.body {
                chat.messages.push(openai::ChatMessage::text("user", "tag"));
                return Ok(BodyOutcome::CHANGED);
            }
            Ok(BodyOutcome::UNCHANGED)
        }
    }

    fn chat_host(body: &str) -> MockHost {
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
            ("content-length", "10"),
        ]);
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        host
    }

    fn pipeline(need: Need, refuse: bool) -> Pipeline {
        Pipeline::new(vec![Box::new(Tagger { need, refuse })])
    }

    #[test]
    fn body_is_parsed_edited_and_written_back() {
        let host = chat_host(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let mut p = pipeline(Need::Body, false);
        // Headers wait for the body (the hold is not learnt yet, so it is tried).
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        assert!(p.holding_headers());
        let size = host.request_body.borrow().len();
        assert_eq!(p.on_request_body(&host, size / 2, false), Action::Pause);
        assert_eq!(p.on_request_body(&host, size, true), Action::Continue);
        assert!(!p.holding_headers());
        let written = host.request_body.borrow().clone();
        let body: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(body["messages"][1]["content"], "tag");
        assert_eq!(body["model"], "m");
        // The held headers go out with the new length.
        assert_eq!(
            host.request_header("content-length"),
            Some(written.len().to_string())
        );
    }

    #[test]
    fn without_a_hold_headers_go_ahead_without_a_length() {
        let host = chat_host(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let mut p = pipeline(Need::Body, false);
        p.set_header_hold(HeaderHold::Unavailable);
        assert_eq!(p.on_request_headers(&host, false), Action::Continue);
        assert!(!p.exchange().request_headers_held());
        assert_eq!(host.request_header("content-length"), None);
        let size = host.request_body.borrow().len();
        assert_eq!(p.on_request_body(&host, size, true), Action::Continue);
        let body: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
        assert_eq!(body["messages"][1]["content"], "tag");
    }

    /// Changes a header after reading the body, and refuses when headers went ahead.
    struct LateHeader;

    impl Stage for LateHeader {
        fn name(&self) -> &'static str {
            "late"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            Ok(Need::Body)
        }
        fn on_request_body(
            &mut self,
            host: &dyn Host,
            ex: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            assert!(ex.request_headers_held());
            ex.set_request_header(host, ":path", Some("/from-body"));
            Ok(BodyOutcome::UNCHANGED)
        }
        fn on_headers_released(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<(), ErrorReply> {
            Err(ErrorReply::internal("headers cannot follow the body"))
        }
    }

    #[test]
    fn headers_decided_from_the_body_are_set_while_held() {
        let host = chat_host(r#"{"model":"m","messages":[]}"#);
        let mut p = Pipeline::new(vec![Box::new(LateHeader)]);
        p.set_header_hold(HeaderHold::Works);
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        let size = host.request_body.borrow().len();
        assert_eq!(p.on_request_body(&host, size, true), Action::Continue);
        assert_eq!(host.request_header(":path").as_deref(), Some("/from-body"));
        assert!(host.local_reply().is_none());
    }

    #[test]
    fn a_stage_refuses_when_headers_cannot_wait() {
        // Known at the headers: refused before anything is sent.
        let host = chat_host(r#"{"model":"m","messages":[]}"#);
        let mut p = Pipeline::new(vec![Box::new(LateHeader)]);
        p.set_header_hold(HeaderHold::Unavailable);
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        assert_eq!(host.local_reply().unwrap().status, 500);

        // Learnt while the request waited: refused, not resumed.
        let host = chat_host(r#"{"model":"m","messages":[]}"#);
        let mut p = Pipeline::new(vec![Box::new(LateHeader)]);
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        p.release_held_headers(&host);
        assert_eq!(host.local_reply().unwrap().status, 500);
        assert_eq!(host.resumed.borrow().0, 0);

        // A stage that needs nothing later: the request is let go ahead of its body.
        let host = chat_host(r#"{"model":"m","messages":[]}"#);
        let mut p = pipeline(Need::Body, false);
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        p.release_held_headers(&host);
        assert!(host.local_reply().is_none());
        assert_eq!(host.resumed.borrow().0, 1);
        assert_eq!(host.request_header("content-length"), None);
    }

    /// Records the response headers it sees.
    struct Watcher {
        saw: std::rc::Rc<std::cell::Cell<u32>>,
    }

    impl Stage for Watcher {
        fn name(&self) -> &'static str {
            "watcher"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            Ok(Need::Nothing)
        }
        fn on_request_body(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            Ok(BodyOutcome::UNCHANGED)
        }
        fn on_response_headers(&mut self, _: &dyn Host, _: &mut Exchange) -> BodyMode {
            self.saw.set(self.saw.get() + 1);
            BodyMode::Untouched
        }
    }

    /// Waits for a callout, then answers (served) or replies (refusal).
    struct Answerer {
        served: bool,
    }

    impl Stage for Answerer {
        fn name(&self) -> &'static str {
            "answerer"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            Ok(Need::Body)
        }
        fn on_request_body(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            Ok(BodyOutcome::UNCHANGED.waiting(true))
        }
        fn on_http_call_response(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
            _: u32,
            _: usize,
        ) -> CallResult {
            let reply = ErrorReply::raw(200, "application/json", "{}".into());
            if self.served {
                CallResult::Answer(reply)
            } else {
                CallResult::Reply(reply)
            }
        }
    }

    #[test]
    fn a_served_answer_is_seen_by_the_stages_before_the_one_that_answered() {
        for served in [true, false] {
            let host = chat_host(r#"{"model":"m","messages":[]}"#);
            let before = std::rc::Rc::new(std::cell::Cell::new(0));
            let after = std::rc::Rc::new(std::cell::Cell::new(0));
            let mut p = Pipeline::new(vec![
                Box::new(Watcher {
                    saw: before.clone(),
                }),
                Box::new(Answerer { served }),
                Box::new(Watcher { saw: after.clone() }),
            ]);
            p.on_request_headers(&host, false);
            let size = host.request_body.borrow().len();
            assert_eq!(p.on_request_body(&host, size, true), Action::Pause);
            p.on_http_call_response(&host, 1, 0);
            assert_eq!(host.local_reply().unwrap().status, 200);
            p.on_response_headers(&host);
            assert_eq!(before.get(), u32::from(served), "served: {served}");
            assert_eq!(after.get(), 0);
        }
    }

    /// Waits for a callout, then edits the body (or not) and lets the request go on.
    struct Resumer {
        edit: bool,
    }

    impl Stage for Resumer {
        fn name(&self) -> &'static str {
            "resumer"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            Ok(Need::Body)
        }
        fn on_request_body(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            Ok(BodyOutcome::UNCHANGED.waiting(true))
        }
        fn on_http_call_response(
            &mut self,
            _: &dyn Host,
            ex: &mut Exchange,
            _: u32,
            _: usize,
        ) -> CallResult {
            if let (true, Some(RequestBody::Chat(chat))) = (self.edit, &mut ex.body) {
                chat.messages
                    .push(openai::ChatMessage::text("user", "late"));
            }
            CallResult::ResumeRequest { changed: self.edit }
        }
    }

    #[test]
    fn an_edit_made_during_a_callout_is_written_back_when_the_stage_says_so() {
        let sent = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        for edit in [true, false] {
            let host = chat_host(sent);
            let mut p = Pipeline::new(vec![Box::new(Resumer { edit })]);
            p.on_request_headers(&host, false);
            assert_eq!(p.on_request_body(&host, sent.len(), true), Action::Pause);
            p.on_http_call_response(&host, 1, 0);
            assert_eq!(host.resumed.borrow().0, 1);
            let written = host.request_body.borrow().clone();
            if edit {
                let body: Value = serde_json::from_slice(&written).unwrap();
                assert_eq!(body["messages"][1]["content"], "late");
                assert_eq!(
                    host.request_header("content-length"),
                    Some(written.len().to_string())
                );
            } else {
                assert_eq!(written, sent.as_bytes());
                assert_eq!(host.request_header("content-length").as_deref(), Some("10"));
            }
        }
    }

    #[test]
    fn untouched_when_no_stage_needs_the_body() {
        let host = chat_host("not json");
        let mut p = pipeline(Need::Nothing, false);
        assert_eq!(p.on_request_headers(&host, false), Action::Continue);
        assert_eq!(host.request_header("content-length").as_deref(), Some("10"));
        assert_eq!(p.on_request_body(&host, 8, true), Action::Continue);
        assert_eq!(&*host.request_body.borrow(), b"not json");
    }

    #[test]
    fn bodies_not_of_their_api_go_on_untouched_with_the_reason() {
        for body in ["{oops", r#"{"model":"m"}"#, ""] {
            let host = chat_host(body);
            let mut p = pipeline(Need::Body, false);
            let end = body.is_empty();
            let first = p.on_request_headers(&host, end);
            if !end {
                assert_eq!(first, Action::Pause);
                assert_eq!(p.on_request_body(&host, body.len(), true), Action::Continue);
            }
            assert!(host.local_reply().is_none(), "{body}");
            assert_eq!(&*host.request_body.borrow(), body.as_bytes());
            let e = p.exchange().body_error.as_ref().unwrap();
            assert_eq!(
                (e.status, e.error_type.as_str()),
                (400, "invalid_request_error")
            );
        }
        // JSON of another shape stays readable as JSON.
        let host = chat_host(r#"{"model":"m"}"#);
        let mut p = pipeline(Need::Body, false);
        p.on_request_headers(&host, false);
        p.on_request_body(&host, 13, true);
        assert_eq!(
            p.exchange().body.as_ref().and_then(RequestBody::model),
            Some("m")
        );
    }

    /// Needs the typed body: answers with the parse error.
    struct Strict;

    impl Stage for Strict {
        fn name(&self) -> &'static str {
            "strict"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            Ok(Need::Body)
        }
        fn on_request_body(
            &mut self,
            _: &dyn Host,
            ex: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            ex.body_error
                .clone()
                .map_or(Ok(BodyOutcome::UNCHANGED), Err)
        }
    }

    #[test]
    fn a_stage_that_needs_the_typed_body_answers_400_in_the_clients_shape() {
        let host = chat_host("{oops");
        let mut p = Pipeline::new(vec![Box::new(Strict)]);
        p.on_request_headers(&host, false);
        assert_eq!(p.on_request_body(&host, 5, true), Action::Pause);
        let v: Value = serde_json::from_slice(&host.local_reply().unwrap().body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_json");

        let host =
            MockHost::with_request_headers(&[(":method", "POST"), (":path", "/v1/messages")]);
        *host.request_body.borrow_mut() = b"[]".to_vec();
        let mut p = Pipeline::new(vec![Box::new(Strict)]);
        p.on_request_headers(&host, false);
        p.on_request_body(&host, 2, true);
        let v: Value = serde_json::from_slice(&host.local_reply().unwrap().body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn stage_refusal_in_headers_replies() {
        let host = chat_host("{}");
        let mut p = pipeline(Need::Body, true);
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        assert_eq!(host.local_reply().unwrap().status, 403);
        assert_eq!(p.on_request_body(&host, 2, true), Action::Pause);
    }

    #[test]
    fn exchange_reads_route_once() {
        let host = MockHost::default();
        host.set_prop("xds.route_name", "r1");
        let mut ex = Exchange::default();
        assert_eq!(
            ex.match_value(&host, MatchKey::Route).as_deref(),
            Some("r1")
        );
        host.set_prop("xds.route_name", "r2");
        assert_eq!(ex.route_name(&host).as_deref(), Some("r1"));
    }

    /// Passes response chunks on: as given, rewritten, or edited in place.
    #[derive(Clone, Copy)]
    enum Rewrite {
        Keep,
        New,
        InPlace,
    }

    struct Responder {
        rewrite: Rewrite,
        events: Vec<String>,
    }

    impl Stage for Responder {
        fn name(&self) -> &'static str {
            "responder"
        }
        fn on_request_headers(
            &mut self,
            host: &dyn Host,
            ex: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            // Read from the exchange's copy: no host call.
            assert_eq!(ex.request_header(host, "x-user").as_deref(), Some("ann"));
            assert_eq!(ex.now(host), ex.now(host));
            assert_eq!(ex.started(host), ex.now(host));
            Ok(Need::Nothing)
        }
        fn on_request_body(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            Ok(BodyOutcome::UNCHANGED)
        }
        fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
            assert_eq!(ex.response_header(host, ":status").as_deref(), Some("200"));
            assert_eq!(ex.response_header(host, ":status").as_deref(), Some("200"));
            ex.set_response_header(host, "x-seen", Some("1"));
            assert_eq!(ex.response_header(host, "x-seen").as_deref(), Some("1"));
            BodyMode::Stream
        }
        fn on_response_body(
            &mut self,
            _: &dyn Host,
            ex: &mut Exchange,
            mut chunk: Vec<u8>,
            _: bool,
        ) -> ChunkOut {
            let (events, _) = ex.response_events(&chunk);
            for e in events {
                let text = e.json().and_then(|j| j.get("t")).and_then(|t| t.as_str());
                self.events.push(text.unwrap_or_default().to_string());
            }
            match self.rewrite {
                Rewrite::Keep => ChunkOut::pass(chunk),
                Rewrite::New => {
                    ChunkOut::edited(chunk.iter().map(u8::to_ascii_uppercase).collect())
                }
                Rewrite::InPlace => {
                    chunk.make_ascii_uppercase();
                    ChunkOut::edited(chunk)
                }
            }
        }
    }

    use crate::usage::json::JsonRead;

    #[test]
    fn headers_time_and_response_chunks_cost_one_host_call_each() {
        for rewrite in [Rewrite::Keep, Rewrite::New, Rewrite::InPlace] {
            let host = chat_host("{}");
            host.request_headers
                .borrow_mut()
                .push(("x-user".into(), "ann".into()));
            *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
            let mut p = Pipeline::new(vec![Box::new(Responder {
                rewrite,
                events: Vec::new(),
            })]);
            host.reset_host_calls();
            assert_eq!(p.on_request_headers(&host, true), Action::Continue);
            let calls = host.host_call_counts();
            assert_eq!(calls, [("now", 1), ("request_headers", 1)], "{calls:?}");
            host.reset_host_calls();
            p.on_response_headers(&host);
            let calls = host.host_call_counts();
            // All headers read at once; one change written as itself (the absent length is
            // not removed).
            assert_eq!(
                calls,
                [("response_headers", 1), ("set_response_header", 1)],
                "{calls:?}"
            );
            host.reset_host_calls();
            *host.response_body.borrow_mut() = b"data: {\"t\":\"a\"}\n\n".to_vec();
            assert_eq!(p.on_response_body(&host, 16, false), Action::Continue);
            let written = host.host_call_counts().contains(&("set_response_body", 1));
            let body = String::from_utf8(host.response_body.borrow().clone()).unwrap();
            match rewrite {
                Rewrite::Keep => {
                    assert!(!written);
                    assert_eq!(body, "data: {\"t\":\"a\"}\n\n");
                }
                Rewrite::New | Rewrite::InPlace => {
                    assert!(written);
                    assert_eq!(body, "DATA: {\"T\":\"A\"}\n\n");
                }
            }
        }
    }

    #[test]
    fn response_documents_are_parsed_for_the_bytes_given() {
        let mut ex = Exchange::default();
        let (events, idle) = ex.response_events(b"data: {\"t\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0]
                .json()
                .and_then(|j| j.get("t"))
                .and_then(|t| t.as_u64()),
            Some(1)
        );
        assert!(events[1].json().is_none());
        assert!(idle);
        // Same bytes: the same parse; other bytes: parsed again.
        assert_eq!(
            ex.response_events(b"data: {\"t\":1}\n\ndata: [DONE]\n\n")
                .0
                .len(),
            2
        );
        let (events, idle) = ex.response_events(b"data: {\"t\":2}\n\ndata: {\"t\"");
        // The unfinished event is still delivered (as a decoder's finish would), but the bytes
        // did not end where an event ends.
        assert_eq!(events.len(), 2);
        assert!(!idle);
        let body = ex
            .response_json(br#"{"usage":{"total_tokens":3}}"#)
            .map(|j| j.to_json_string());
        assert_eq!(body.as_deref(), Some(r#"{"usage":{"total_tokens":3}}"#));
        assert!(ex.response_json(b"{oops").is_none());
        ex.begin_callback();
        assert!(ex.response_events(b"").0.is_empty());
    }

    /// Asks for the prompt while the body passes.
    struct Prompter;

    impl Stage for Prompter {
        fn name(&self) -> &'static str {
            "prompter"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            Ok(Need::Body)
        }
        fn on_request_body(
            &mut self,
            _: &dyn Host,
            ex: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            assert!(ex.client_json().is_some_and(|j| j.get("model").is_some()));
            ex.prompt_text();
            Ok(BodyOutcome::UNCHANGED)
        }
    }

    #[test]
    fn client_json_and_prompt_come_from_the_body_as_sent() {
        let host = chat_host(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let mut p = Pipeline::new(vec![
            Box::new(Prompter),
            Box::new(Tagger {
                need: Need::Body,
                refuse: false,
            }),
        ]);
        p.on_request_headers(&host, false);
        let size = host.request_body.borrow().len();
        p.on_request_body(&host, size, true);
        // The tagger added a message; the prompt is the client's.
        assert_eq!(p.ex.prompt_text(), "hi");
        // The client's JSON is dropped once every stage saw the body.
        assert!(p.ex.client_json().is_none());
    }

    /// Wants the whole answer before the headers go, and sets a header from it.
    struct Tally;

    impl Stage for Tally {
        fn name(&self) -> &'static str {
            "tally"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            Ok(Need::Nothing)
        }
        fn on_request_body(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            Ok(BodyOutcome::UNCHANGED)
        }
        fn on_response_headers(&mut self, _: &dyn Host, _: &mut Exchange) -> BodyMode {
            BodyMode::Whole
        }
        fn on_response_body(
            &mut self,
            host: &dyn Host,
            ex: &mut Exchange,
            chunk: Vec<u8>,
            end: bool,
        ) -> ChunkOut {
            if end && ex.response_headers_held() {
                ex.set_response_header(host, "x-length", Some(&chunk.len().to_string()));
            }
            ChunkOut::pass(chunk)
        }
    }

    #[test]
    fn whole_answers_hold_the_headers_until_the_end() {
        let host = chat_host("{}");
        let mut p = Pipeline::new(vec![Box::new(Tally)]);
        // The shell learnt that the host holds headers.
        p.set_header_hold(HeaderHold::Works);
        p.on_request_headers(&host, true);
        assert_eq!(p.on_response_headers_end(&host, false), Action::Pause);
        *host.response_body.borrow_mut() = b"hello".to_vec();
        assert_eq!(p.on_response_body(&host, 5, false), Action::Pause);
        assert_eq!(p.on_response_body(&host, 5, true), Action::Continue);
        assert_eq!(host.response_header("x-length").as_deref(), Some("5"));
        // An answer without a body, a host not known to hold headers, or one that cannot:
        // nothing is held.
        let mut p = Pipeline::new(vec![Box::new(Tally)]);
        p.set_header_hold(HeaderHold::Works);
        p.on_request_headers(&host, true);
        assert_eq!(p.on_response_headers_end(&host, true), Action::Continue);
        let mut p = Pipeline::new(vec![Box::new(Tally)]);
        p.on_request_headers(&host, true);
        assert_eq!(p.on_response_headers_end(&host, false), Action::Continue);
        let mut p = Pipeline::new(vec![Box::new(Tally)]);
        p.set_header_hold(HeaderHold::Unavailable);
        p.on_request_headers(&host, true);
        assert_eq!(p.on_response_headers_end(&host, false), Action::Continue);
    }

    /// Sets headers and facts the way ai-proxy and ai-statistics do.
    struct HeaderWriter;

    impl Stage for HeaderWriter {
        fn name(&self) -> &'static str {
            "writer"
        }
        fn on_request_headers(
            &mut self,
            host: &dyn Host,
            ex: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            ex.set_request_header(host, ":path", Some("/v2/chat"));
            ex.set_request_header(host, "authorization", Some("Bearer upstream"));
            ex.set_fact(host, crate::facts::PROVIDER, b"openai");
            Ok(Need::Body)
        }
        fn on_request_body(
            &mut self,
            host: &dyn Host,
            ex: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            ex.set_request_header(host, "x-from-body", Some("1"));
            Ok(BodyOutcome::UNCHANGED)
        }
        fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
            ex.set_response_header(host, "x-a", Some("1"));
            ex.set_response_header(host, "x-b", Some("2"));
            BodyMode::Untouched
        }
        fn on_log(&mut self, host: &dyn Host, ex: &mut Exchange) {
            let provider = ex.fact(host, crate::facts::PROVIDER);
            ex.merge_ai_log(host, [("provider", serde_json::json!(provider.is_some()))]);
        }
    }

    #[test]
    fn held_header_changes_are_written_once_and_facts_stay_in_the_vm() {
        let host = chat_host("{}");
        let mut p = Pipeline::new(vec![Box::new(HeaderWriter), Box::new(HeaderWriter)]);
        p.set_header_hold(HeaderHold::Works);
        host.reset_host_calls();
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        // Held: nothing written yet.
        assert!(!host
            .host_call_counts()
            .iter()
            .any(|(k, _)| k.starts_with("set_request")));
        assert_eq!(p.on_request_body(&host, 2, true), Action::Continue);
        let calls = host.host_call_counts();
        assert!(calls.contains(&("set_request_headers", 1)), "{calls:?}");
        assert!(
            !calls.iter().any(|(k, _)| *k == "set_request_header"),
            "{calls:?}"
        );
        let headers = host.request_headers.borrow().clone();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get(":path").as_deref(), Some("/v2/chat"));
        assert_eq!(get("authorization").as_deref(), Some("Bearer upstream"));
        assert_eq!(get("x-from-body").as_deref(), Some("1"));
        assert_eq!(get(":method").as_deref(), Some("POST"));

        *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
        host.reset_host_calls();
        p.on_response_headers(&host);
        assert_eq!(
            host.host_call_counts(),
            [("response_headers", 1), ("set_response_headers", 1)]
        );
        assert_eq!(host.response_header("x-b").as_deref(), Some("2"));

        host.reset_host_calls();
        p.on_log(&host);
        // The fact is read in the VM; only the access-log object is written.
        assert_eq!(host.host_call_counts(), [("set_property", 2)]);
        let log = host.properties.borrow().get(crate::facts::AI_LOG).cloned();
        assert_eq!(log.as_deref(), Some(&br#"{"provider":true}"#[..]));
    }

    #[test]
    fn a_plugin_of_its_own_reads_facts_other_filters_wrote() {
        let host = chat_host("{}");
        host.set_prop(crate::facts::PROVIDER, "claude");
        let p = Pipeline::new(vec![Box::new(HeaderWriter)]);
        assert_eq!(
            p.exchange().fact(&host, crate::facts::PROVIDER).as_deref(),
            Some(&b"claude"[..])
        );
        let two = Pipeline::new(vec![Box::new(HeaderWriter), Box::new(HeaderWriter)]);
        assert_eq!(two.exchange().fact(&host, crate::facts::PROVIDER), None);
    }
}
