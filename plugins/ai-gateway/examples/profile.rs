//! Native profiling harness: drives the pipeline the `ai-gateway` root id builds (the shipped
//! plugin configs from `envoy/ecds/*.yaml`, every stage, the bench's rate limit budget and cache off) with
//! `MockHost`, the way Envoy calls it, and counts host calls per request.
//!
//! ```sh
//! cargo build --profile profiling -p ai-gateway --example profile
//! valgrind --tool=callgrind --toggle-collect='*measure_json*' target/profiling/examples/profile json 200
//! valgrind --tool=callgrind --toggle-collect='*stream_chunks*' target/profiling/examples/profile sse 50
//! target/profiling/examples/profile memory
//! ```
//!
//! Modes: `json N` (non-streaming request and answer), `sse N` (an answer of 80 SSE content
//! chunks), `memory` (heap held after a request whose answer reports no usage, so estimates run).
//! `json-floor` and `sse-floor` run the parse floor instead of the plugins: one stage that has the
//! request body parsed and sees each response chunk (what `bench/floor`'s `parse` does in wasm).
//! `json` and `sse` also print the native time per request and per streamed chunk (`make bench`
//! reads these lines, and the instruction counts callgrind prints).
//! Warm-up requests run before the measured ones (config, metric ids and lazily built tables are
//! set up there, as in a long-running VM); only `measure_*` / `stream_chunks` are meant to be
//! collected.

use proxy_wasm::types::Action;
use sdk::error::ErrorReply;
use sdk::host::{Host, MetricBuffer, MockHost};
use sdk::pipeline::{BodyMode, BodyOutcome, ChunkOut, Exchange, HeaderHold, Need, Pipeline, Stage};
use sdk::shell::Loaded;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Heap accounting for the `memory` mode.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Streamed content chunks per answer (as `make bench`).
const CHUNKS: usize = 80;

/// The bench's rate limit config: a budget no run spends.
const UNLIMITED: &str =
    r#"{"rule_name": "bench", "global_threshold": {"token_per_minute": 1000000000000}}"#;

/// ai-cache off (Higress's strategy key), as the bench runs it.
const CACHE_OFF: &str = r#"{"cacheKeyStrategy": "disabled"}"#;

/// A failed check of the harness.
type Checked<T> = Result<T, String>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Checked<()> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// The JSON config in a shipped ECDS file (the `value: |` block).
fn shipped_config(ecds: &str) -> Option<String> {
    let at = ecds.find("value: |\n")? + "value: |\n".len();
    Some(
        ecds[at..]
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The one-filter config: every shipped plugin config keyed by plugin name.
fn gateway_config() -> Checked<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy/ecds");
    let mut combined = serde_json::Map::new();
    for plugin in ai_gateway::ORDER {
        let path = format!("{dir}/{plugin}.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let config = if plugin == "ai-token-ratelimit" {
            UNLIMITED.to_string()
        } else if plugin == "ai-cache" {
            // As the bench: its workloads repeat one request, which the cache would answer.
            CACHE_OFF.to_string()
        } else {
            shipped_config(&text).ok_or_else(|| format!("no config in {path}"))?
        };
        let value: Value =
            serde_json::from_str(&config).map_err(|e| format!("{plugin} config: {e}"))?;
        combined.insert(plugin.to_string(), value);
    }
    Ok(Value::Object(combined).to_string().into_bytes())
}

fn load() -> Checked<Vec<Box<dyn Loaded>>> {
    let (loaded, warnings) = ai_gateway::loader(ai_gateway::GATEWAY, &gateway_config()?)
        .map_err(|e| format!("config rejected: {e}"))?;
    ensure(warnings.is_empty(), || format!("{warnings:?}"))?;
    ensure(loaded.len() == ai_gateway::ORDER.len(), || {
        format!(
            "{} of {} plugins loaded",
            loaded.len(),
            ai_gateway::ORDER.len()
        )
    })?;
    Ok(loaded)
}

/// Runs plugin code: everything inside counts as the plugins' cost (callgrind: inclusive cost of
/// `profile::plugin` minus the `MockHost` methods called from it).
#[inline(never)]
fn plugin<R>(f: impl FnOnce() -> R) -> R {
    f()
}

thread_local! {
    /// Whether the parse floor runs instead of the plugins.
    static FLOOR: Cell<bool> = const { Cell::new(false) };
    /// Time spent delivering streamed chunks.
    static CHUNK_TIME: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// The parse floor as a stage: the pipeline parses the request body for it, and it sees each
/// response chunk.
struct ParseFloor;

impl Stage for ParseFloor {
    fn name(&self) -> &'static str {
        "parse-floor"
    }
    fn on_request_headers(
        &mut self,
        _host: &dyn Host,
        _ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        Ok(Need::Body)
    }
    fn on_request_body(
        &mut self,
        _host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        black_box(&ex.body);
        Ok(BodyOutcome::UNCHANGED)
    }
    fn on_response_headers(&mut self, _host: &dyn Host, _ex: &mut Exchange) -> BodyMode {
        BodyMode::Stream
    }
    fn on_response_body(
        &mut self,
        _host: &dyn Host,
        _ex: &mut Exchange,
        chunk: Vec<u8>,
        _end: bool,
    ) -> ChunkOut {
        ChunkOut::pass(black_box(chunk))
    }
}

/// What `create_http_context` builds for one request.
fn pipeline(loaded: &[Box<dyn Loaded>]) -> Pipeline {
    if FLOOR.with(Cell::get) {
        return plugin(|| Pipeline::new(vec![Box::new(ParseFloor)]));
    }
    plugin(|| Pipeline::new(loaded.iter().flat_map(|p| p.stages()).collect()))
}

fn request_body(stream: bool) -> Vec<u8> {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello to the benchmark"}]})
    .to_string()
    .into_bytes()
}

thread_local! {
    /// The VM's held metric updates, carried from one request's host to the next as in a VM.
    static VM_METRICS: RefCell<Option<MetricBuffer>> = RefCell::new(Some(MetricBuffer::default()));
}

/// Gives a request's host the VM's metric buffer back.
fn metrics_back(host: &MockHost) {
    let buffer = host.metric_buffer.borrow_mut().take();
    VM_METRICS.with(|m| *m.borrow_mut() = buffer);
}

/// Host calls the root's tick makes to flush what `n` requests left in the metric buffer.
fn flush_calls() -> u64 {
    let host = MockHost::default();
    *host.metric_buffer.borrow_mut() = VM_METRICS.with(|m| m.borrow_mut().take());
    host.flush_metrics();
    metrics_back(&host);
    host.host_calls()
}

/// A host set up as Envoy is when the request headers arrive.
fn request_host(body: &[u8]) -> MockHost {
    let len = body.len().to_string();
    let host = MockHost::with_request_headers(&[
        (":authority", "127.0.0.1:10000"),
        (":path", "/v1/chat/completions"),
        (":method", "POST"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("content-length", &len),
        ("accept", "*/*"),
        ("user-agent", "bench/1.0"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6a3b1f0e-2c1d-4f5e-9a8b-7c6d5e4f3a2b"),
    ]);
    host.set_prop("xds.route_name", "llm");
    host.set_prop("xds.cluster_name", "llm_upstream");
    host.set_prop("source.address", "127.0.0.1:50000");
    *host.request_body.borrow_mut() = body.to_vec();
    *host.metric_buffer.borrow_mut() = VM_METRICS.with(|m| m.borrow_mut().take());
    host
}

fn response_headers(host: &MockHost, content_type: &str, length: Option<usize>) {
    let mut headers = vec![
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), content_type.to_string()),
        (
            "date".to_string(),
            "Thu, 27 Nov 2025 17:00:00 GMT".to_string(),
        ),
        ("x-mock-request-id".to_string(), "1".to_string()),
        ("x-envoy-upstream-service-time".to_string(), "1".to_string()),
    ];
    if let Some(n) = length {
        headers.push(("content-length".to_string(), n.to_string()));
    }
    *host.response_headers.borrow_mut() = headers;
}

/// The request half, as Envoy delivers it (headers, then the whole body: the buffer filter).
fn send_request(p: &mut Pipeline, host: &MockHost) -> Checked<()> {
    let size = host.request_body.borrow().len();
    // The bench's Envoy sets `allow_on_headers_stop_iteration`: headers wait for the body
    // (Pause) and stay writable, as the root learns on the first request.
    p.set_header_hold(HeaderHold::Works);
    let headers = plugin(|| p.on_request_headers(host, false));
    ensure(matches!(headers, Action::Continue | Action::Pause), || {
        format!("headers: {headers:?}")
    })?;
    let body = plugin(|| p.on_request_body(host, size, true));
    ensure(body == Action::Continue && !p.replied(), || {
        format!("body: {body:?}, reply {:?}", host.local_reply())
    })
}

fn json_answer() -> Vec<u8> {
    json!({"id": "chatcmpl-mock-1", "object": "chat.completion", "created": 1764262800,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant",
            "content": "mock reply from gpt-4o-mini"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}})
    .to_string()
    .into_bytes()
}

/// The mock provider's frames for a streamed answer of `CHUNKS` content pieces.
fn sse_frames(usage: bool) -> Vec<Vec<u8>> {
    let chunk = |delta: Value, finish: Option<&str>| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-mock-1", "object": "chat.completion.chunk",
                "created": 1764262800, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
        .into_bytes()
    };
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    for i in 0..CHUNKS {
        frames.push(chunk(json!({"content": format!("w{i} ")}), None));
    }
    frames.push(chunk(json!({}), Some("stop")));
    if usage {
        frames.push(
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-mock-1", "object": "chat.completion.chunk",
                    "created": 1764262800, "model": "gpt-4o-mini", "choices": [],
                    "usage": {"prompt_tokens": 21, "completion_tokens": 80,
                        "total_tokens": 101}})
            )
            .into_bytes(),
        );
    }
    frames.push(b"data: [DONE]\n\n".to_vec());
    frames
}

/// Envoy's response body buffer: data a paused callback held is delivered again with the next.
struct Downstream {
    received: Vec<u8>,
}

impl Downstream {
    fn deliver(&mut self, p: &mut Pipeline, host: &MockHost, data: &[u8], end: bool) {
        host.response_body.borrow_mut().extend_from_slice(data);
        let size = host.response_body.borrow().len();
        let action = plugin(|| p.on_response_body(host, size, end));
        if action == Action::Continue || end {
            let mut buffer = host.response_body.borrow_mut();
            self.received.extend_from_slice(&buffer);
            buffer.clear();
        }
    }
}

/// One non-streaming request and answer.
fn json_request(loaded: &[Box<dyn Loaded>], usage: bool) -> Checked<MockHost> {
    let host = request_host(&request_body(false));
    let mut p = pipeline(loaded);
    send_request(&mut p, &host)?;
    let mut answer = json_answer();
    if !usage {
        let mut v: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
        v.as_object_mut().map(|o| o.remove("usage"));
        answer = v.to_string().into_bytes();
    }
    response_headers(&host, "application/json", Some(answer.len()));
    let headers = plugin(|| p.on_response_headers(&host));
    ensure(headers == Action::Continue, || format!("{headers:?}"))?;
    let mut down = Downstream {
        received: Vec::new(),
    };
    down.deliver(&mut p, &host, &answer, true);
    plugin(|| p.on_log(&host));
    plugin(|| drop(p));
    metrics_back(&host);
    ensure(down.received == answer, || "answer changed".to_string())?;
    Ok(host)
}

#[inline(never)]
fn stream_chunks(p: &mut Pipeline, host: &MockHost, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut down = Downstream {
        received: Vec::new(),
    };
    let started = Instant::now();
    for frame in frames {
        down.deliver(p, host, frame, false);
    }
    down.deliver(p, host, &[], true);
    CHUNK_TIME.with(|t| t.set(t.get() + started.elapsed()));
    down.received
}

/// One streamed request and its answer.
fn sse_request(loaded: &[Box<dyn Loaded>], frames: &[Vec<u8>]) -> Checked<MockHost> {
    let host = request_host(&request_body(true));
    let mut p = pipeline(loaded);
    send_request(&mut p, &host)?;
    response_headers(&host, "text/event-stream", None);
    let headers = plugin(|| p.on_response_headers(&host));
    ensure(headers == Action::Continue, || format!("{headers:?}"))?;
    let received = stream_chunks(&mut p, &host, frames);
    plugin(|| p.on_log(&host));
    plugin(|| drop(p));
    metrics_back(&host);
    ensure(received == frames.concat(), || "stream changed".to_string())?;
    Ok(host)
}

#[inline(never)]
fn measure_json(loaded: &[Box<dyn Loaded>], n: usize) -> Checked<MockHost> {
    let mut last = MockHost::default();
    for _ in 0..n {
        last = black_box(json_request(loaded, true)?);
    }
    Ok(last)
}

#[inline(never)]
fn measure_sse(loaded: &[Box<dyn Loaded>], frames: &[Vec<u8>], n: usize) -> Checked<MockHost> {
    let mut last = MockHost::default();
    for _ in 0..n {
        last = black_box(sse_request(loaded, frames)?);
    }
    Ok(last)
}

/// Checks that the stages did their work, and prints the host calls of one request and the
/// metric flushes `n` requests cost the root's tick.
fn report(what: &str, host: &MockHost, n: usize) -> Checked<()> {
    if FLOOR.with(Cell::get) {
        println!(
            "{what}: parse floor, {} host calls per request",
            host.host_calls()
        );
        return Ok(());
    }
    let upstream: Value = serde_json::from_slice(&host.request_body.borrow())
        .map_err(|e| format!("upstream body: {e}"))?;
    let messages = upstream["messages"].as_array().map_or(0, Vec::len);
    ensure(messages == 4, || format!("decorator: {upstream}"))?;
    let log = host.properties.borrow().get("ai_log").cloned();
    let log: Value =
        serde_json::from_slice(&log.unwrap_or_default()).map_err(|e| format!("ai_log: {e}"))?;
    ensure(log["input_token"].as_u64().is_some_and(|n| n > 0), || {
        format!("no usage in {log}")
    })?;
    println!("{what}: ai_log {log}");
    let calls = host.host_call_counts();
    println!("{what}: {} host calls per request", host.host_calls());
    for (name, n) in calls {
        println!("  {name:<22} {n}");
    }
    let flushed = flush_calls();
    println!(
        "{what}: metric updates flushed by the root's tick: {flushed} host calls for {n} requests \
         ({:.2} per request)",
        flushed as f64 / n.max(1) as f64
    );
    println!("host_calls_per_request {}", host.host_calls());
    println!(
        "flush_calls_per_request {:.2}",
        flushed as f64 / n.max(1) as f64
    );
    Ok(())
}

fn main() -> Checked<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("json", String::as_str);
    let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(100);
    let before = LIVE.load(Ordering::Relaxed);
    let loaded = load()?;
    let frames = sse_frames(true);
    match mode {
        "json" | "json-floor" => {
            FLOOR.with(|f| f.set(mode == "json-floor"));
            for _ in 0..20 {
                json_request(&loaded, true)?;
            }
            flush_calls();
            let started = Instant::now();
            let host = measure_json(&loaded, n)?;
            let us = started.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
            report("json", &host, n)?;
            println!("native_us_per_request {us:.3}");
            Ok(())
        }
        "sse" | "sse-floor" => {
            FLOOR.with(|f| f.set(mode == "sse-floor"));
            for _ in 0..5 {
                sse_request(&loaded, &frames)?;
            }
            flush_calls();
            CHUNK_TIME.with(|t| t.set(Duration::ZERO));
            let host = measure_sse(&loaded, &frames, n)?;
            // Each stream is the frames plus the end of stream.
            let chunks = n.max(1) * (frames.len() + 1);
            let us = CHUNK_TIME.with(Cell::get).as_secs_f64() * 1e6 / chunks as f64;
            report("sse", &host, n)?;
            println!("native_us_per_chunk {us:.3}");
            println!("chunks_per_stream {}", frames.len() + 1);
            Ok(())
        }
        "memory" => {
            let config = LIVE.load(Ordering::Relaxed) - before;
            let start_peak = PEAK.load(Ordering::Relaxed);
            report("json without usage", &json_request(&loaded, false)?, 1)?;
            report(
                "sse without usage",
                &sse_request(&loaded, &sse_frames(false))?,
                1,
            )?;
            println!(
                "heap: config {:.2} MB; after estimates live {:.2} MB, peak {:.2} MB (was {:.2})",
                config as f64 / 1e6,
                LIVE.load(Ordering::Relaxed) as f64 / 1e6,
                PEAK.load(Ordering::Relaxed) as f64 / 1e6,
                start_peak as f64 / 1e6,
            );
            Ok(())
        }
        other => Err(format!("unknown mode {other} (json, sse, memory)")),
    }
}
