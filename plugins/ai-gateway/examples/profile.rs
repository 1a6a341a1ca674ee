//! Native profiling harness: drives the pipeline the `ai-gateway` root id builds (the shipped
//! plugin configs from `envoy/ecds/*.yaml`, all five stages, the bench's rate limit budget) with
//! `MockHost`, the way Envoy calls it, and counts host calls per request.
//!
//! ```sh
//! cargo build --release -p ai-gateway --example profile
//! valgrind --tool=callgrind --toggle-collect='*measure_json*' target/release/examples/profile json 200
//! valgrind --tool=callgrind --toggle-collect='*stream_chunks*' target/release/examples/profile sse 50
//! target/release/examples/profile memory
//! ```
//!
//! Modes: `json N` (non-streaming request and answer), `sse N` (an answer of 80 SSE content
//! chunks), `memory` (heap held after a request whose answer reports no usage, so estimates run).
//! Warm-up requests run before the measured ones (config, metric ids and lazily built tables are
//! set up there, as in a long-running VM); only `measure_*` / `stream_chunks` are meant to be
//! collected.

use proxy_wasm::types::Action;
use sdk::host::{Host, MockHost};
use sdk::pipeline::Pipeline;
use sdk::shell::Loaded;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

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
fn gateway_config() -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy/ecds");
    let mut combined = serde_json::Map::new();
    for plugin in ai_gateway::ORDER {
        let text = std::fs::read_to_string(format!("{dir}/{plugin}.yaml"))
            .unwrap_or_else(|e| panic!("{dir}/{plugin}.yaml: {e}"));
        let config = if plugin == "ai-token-ratelimit" {
            UNLIMITED.to_string()
        } else {
            shipped_config(&text).unwrap_or_else(|| panic!("no config in {plugin}.yaml"))
        };
        let value: Value = serde_json::from_str(&config).expect("plugin config is JSON");
        combined.insert(plugin.to_string(), value);
    }
    Value::Object(combined).to_string().into_bytes()
}

fn load() -> Vec<Box<dyn Loaded>> {
    let (loaded, warnings) = ai_gateway::loader(ai_gateway::GATEWAY, &gateway_config())
        .unwrap_or_else(|e| panic!("config rejected: {e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(loaded.len(), 5);
    loaded
}

/// What `create_http_context` builds for one request.
fn pipeline(loaded: &[Box<dyn Loaded>]) -> Pipeline {
    Pipeline::new(loaded.iter().flat_map(|p| p.stages()).collect())
}

fn request_body(stream: bool) -> Vec<u8> {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello to the benchmark"}]})
    .to_string()
    .into_bytes()
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
fn send_request(p: &mut Pipeline, host: &MockHost) {
    let size = host.request_body.borrow().len();
    assert_eq!(p.on_request_headers(host, false), Action::Continue);
    host.request_headers_sealed.set(true);
    assert_eq!(p.on_request_body(host, size, true), Action::Continue);
    assert!(!p.replied(), "{:?}", host.local_reply());
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
        let action = p.on_response_body(host, size, end);
        if action == Action::Continue || end {
            let mut buffer = host.response_body.borrow_mut();
            self.received.extend_from_slice(&buffer);
            buffer.clear();
        }
    }
}

/// One non-streaming request and answer.
fn json_request(loaded: &[Box<dyn Loaded>], usage: bool) -> MockHost {
    let host = request_host(&request_body(false));
    let mut p = pipeline(loaded);
    send_request(&mut p, &host);
    let mut answer = json_answer();
    if !usage {
        let mut v: Value = serde_json::from_slice(&answer).expect("json");
        v.as_object_mut().map(|o| o.remove("usage"));
        answer = v.to_string().into_bytes();
    }
    response_headers(&host, "application/json", Some(answer.len()));
    assert_eq!(p.on_response_headers(&host), Action::Continue);
    let mut down = Downstream {
        received: Vec::new(),
    };
    down.deliver(&mut p, &host, &answer, true);
    p.on_log(&host);
    assert_eq!(down.received, answer);
    host
}

#[inline(never)]
fn stream_chunks(p: &mut Pipeline, host: &MockHost, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut down = Downstream {
        received: Vec::new(),
    };
    for frame in frames {
        down.deliver(p, host, frame, false);
    }
    down.deliver(p, host, &[], true);
    down.received
}

/// One streamed request and its answer.
fn sse_request(loaded: &[Box<dyn Loaded>], frames: &[Vec<u8>]) -> MockHost {
    let host = request_host(&request_body(true));
    let mut p = pipeline(loaded);
    send_request(&mut p, &host);
    response_headers(&host, "text/event-stream", None);
    assert_eq!(p.on_response_headers(&host), Action::Continue);
    let received = stream_chunks(&mut p, &host, frames);
    p.on_log(&host);
    assert_eq!(received, frames.concat());
    host
}

#[inline(never)]
fn measure_json(loaded: &[Box<dyn Loaded>], n: usize) -> MockHost {
    let mut last = None;
    for _ in 0..n {
        last = Some(black_box(json_request(loaded, true)));
    }
    last.unwrap_or_default()
}

#[inline(never)]
fn measure_sse(loaded: &[Box<dyn Loaded>], frames: &[Vec<u8>], n: usize) -> MockHost {
    let mut last = None;
    for _ in 0..n {
        last = Some(black_box(sse_request(loaded, frames)));
    }
    last.unwrap_or_default()
}

/// Checks that the stages did their work, and prints the host calls of one request.
fn report(what: &str, host: &MockHost) {
    let upstream: Value =
        serde_json::from_slice(&host.request_body.borrow()).expect("upstream body is JSON");
    let messages = upstream["messages"].as_array().map_or(0, Vec::len);
    assert_eq!(messages, 4, "decorator added its messages: {upstream}");
    let log = host
        .properties
        .borrow()
        .get("ai_log")
        .cloned()
        .expect("ai_log written");
    let log: Value = serde_json::from_slice(&log).expect("ai_log is JSON");
    println!("{what}: ai_log {log}");
    let calls = host.host_call_counts();
    println!("{what}: {} host calls per request", host.host_calls());
    for (name, n) in calls {
        println!("  {name:<22} {n}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("json", String::as_str);
    let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(100);
    let before = LIVE.load(Ordering::Relaxed);
    let loaded = load();
    let frames = sse_frames(true);
    match mode {
        "json" => {
            for _ in 0..20 {
                json_request(&loaded, true);
            }
            let host = measure_json(&loaded, n);
            report("json", &host);
        }
        "sse" => {
            for _ in 0..5 {
                sse_request(&loaded, &frames);
            }
            let host = measure_sse(&loaded, &frames, n);
            report("sse", &host);
        }
        "memory" => {
            let config = LIVE.load(Ordering::Relaxed) - before;
            let start_peak = PEAK.load(Ordering::Relaxed);
            let host = json_request(&loaded, false);
            report("json without usage", &host);
            let frames = sse_frames(false);
            sse_request(&loaded, &frames);
            println!(
                "heap: config {:.2} MB; after estimates live {:.2} MB, peak {:.2} MB (was {:.2})",
                config as f64 / 1e6,
                LIVE.load(Ordering::Relaxed) as f64 / 1e6,
                PEAK.load(Ordering::Relaxed) as f64 / 1e6,
                start_peak as f64 / 1e6,
            );
        }
        other => panic!("unknown mode {other} (json, sse, memory)"),
    }
}
