//! `make bench`: plain Envoy against Envoy with the plugins (each plugin's own `.wasm`, the
//! bundle by root id, the bundle as one filter) and against two floor filters (`bench/floor`:
//! a no-op wasm filter, and one that reads and parses the request body and reads each response
//! chunk), same run, same mock upstream. Rounds alternate the setups; each figure is the median
//! over rounds ± their spread (max − min). Reports Envoy CPU per request for three workloads
//! (JSON; SSE arriving in one write; SSE in 80 writes), efficiency vs plain, added CPU as a
//! multiple of the parse floor's, plugin time per streamed chunk, RPS, latency, time to first
//! byte, RSS and module sizes; then ai-cache's hit against a miss (the shipped chain as one filter
//! with the cache on); writes `target/bench/report.md` and `report.json`.
//!
//! usage: bench [--seconds N] [--rounds N] [--concurrency N] [--paced-concurrency N]
//!              [--only plugins,bundle,gateway]
//! (plain Envoy and the floors always run: every figure is relative to them)

use e2e::envoy::{Envoy, ExtraWasm, Mode, Options};
use e2e::http::Client;
use e2e::mock::Mock;
use e2e::{wasm_path, workspace_root, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One configuration under test.
struct Setup {
    name: &'static str,
    /// Its name for `--only`.
    key: &'static str,
    mode: Mode,
    /// No plugin filters (plain Envoy, or Envoy with just the floor filter).
    plain: bool,
    /// Root id of the floor filter (`target/bench/floor.wasm`) put before the router.
    floor: Option<&'static str>,
}

const PLAIN: &str = "plain Envoy";
const PARSE_FLOOR: &str = "floor: read+parse";
const GATEWAY: &str = "one ai-gateway filter";

const SETUPS: [Setup; 6] = [
    Setup {
        name: PLAIN,
        key: "plain",
        mode: Mode::Plugins,
        plain: true,
        floor: None,
    },
    Setup {
        name: "floor: no-op",
        key: "noop",
        mode: Mode::Plugins,
        plain: true,
        floor: Some("noop"),
    },
    Setup {
        name: PARSE_FLOOR,
        key: "parse",
        mode: Mode::Plugins,
        plain: true,
        floor: Some("parse"),
    },
    Setup {
        name: "5 filters (own .wasm)",
        key: "plugins",
        mode: Mode::Plugins,
        plain: false,
        floor: None,
    },
    Setup {
        name: "bundle by root_id",
        key: "bundle",
        mode: Mode::Bundle,
        plain: false,
        floor: None,
    },
    Setup {
        name: GATEWAY,
        key: "gateway",
        mode: Mode::Gateway,
        plain: false,
        floor: None,
    },
];

/// Streamed chunks per answer (`x-mock-chunks`; 82 events with the role and `[DONE]`).
const CHUNKS: u32 = 80;
const CHUNKS_TEXT: &str = "80";

/// One kind of request.
struct Workload {
    /// Its key in report.json.
    key: &'static str,
    name: &'static str,
    stream: bool,
    /// Chunks arrive 1 ms apart: the run uses `--paced-concurrency` connections, so that Envoy
    /// serves enough requests for CPU per request to rise above its idle CPU and /proc's ticks.
    paced: bool,
    headers: &'static [(&'static str, &'static str)],
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        key: "json",
        name: "JSON",
        stream: false,
        paced: false,
        headers: &[],
    },
    Workload {
        key: "sse_one_write",
        name: "SSE in one write",
        stream: true,
        paced: false,
        headers: &[("x-mock-chunks", CHUNKS_TEXT), ("x-mock-one-write", "1")],
    },
    Workload {
        key: "sse_80_writes",
        name: "SSE in 80 writes",
        stream: true,
        paced: true,
        headers: &[
            ("x-mock-chunks", CHUNKS_TEXT),
            ("x-mock-chunk-delay-ms", "1"),
        ],
    },
];

/// Index of the workload whose chunks arrive one by one (the per-chunk figure).
const SEPARATE: usize = 2;

#[derive(Default, Clone)]
struct Load {
    requests: u64,
    errors: u64,
    seconds: f64,
    cpu_seconds: f64,
    latencies_ms: Vec<f64>,
    ttfb_ms: Vec<f64>,
}

impl Load {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn cpu_us(&self) -> f64 {
        1e6 * self.cpu_seconds / self.requests.max(1) as f64
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let i = ((values.len() - 1) as f64 * p).round() as usize;
    values[i.min(values.len() - 1)]
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn run_load(envoy: &Envoy, workload: &Workload, seconds: u64, concurrency: usize) -> Load {
    let url = format!("{}/v1/chat/completions", envoy.url());
    let body = json!({"model": "gpt-4o-mini", "stream": workload.stream,
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello to the benchmark"}]})
    .to_string();
    let before = proc_cpu_seconds(envoy.pid());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let results: Vec<Load> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                let (url, body) = (&url, &body);
                scope.spawn(move || {
                    let client = Client::new(Duration::from_secs(30));
                    let mut load = Load::default();
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        if workload.stream {
                            match client.post_stream(url, workload.headers, body) {
                                Ok((200, reads)) => {
                                    if let Some((first, _)) = reads.first() {
                                        load.ttfb_ms.push((*first - t0).as_secs_f64() * 1e3);
                                    }
                                    load.requests += 1;
                                }
                                _ => load.errors += 1,
                            }
                        } else {
                            match client.post(url, workload.headers, body) {
                                Ok(r) if r.status == 200 => load.requests += 1,
                                _ => load.errors += 1,
                            }
                        }
                        load.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                    load
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut total = Load {
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: proc_cpu_seconds(envoy.pid()) - before,
        ..Load::default()
    };
    for r in results {
        total.requests += r.requests;
        total.errors += r.errors;
        total.latencies_ms.extend(r.latencies_ms);
        total.ttfb_ms.extend(r.ttfb_ms);
    }
    total
}

/// ai-moderation as the bench configures it, minus the response checks.
const REQUESTS_MODERATED: &str =
    r#"{"checkRequest": true, "checkResponse": false, "denyWords": ["forbidden"]}"#;

/// A budget no benchmark spends: the rate limiter does all its work and refuses nothing.
const UNLIMITED: &str =
    r#"{"rule_name": "bench", "global_threshold": {"token_per_minute": 1000000000000}}"#;

/// ai-cache: JSON requests through the shipped chain as one filter with the cache on. With
/// `hits` every request repeats one question (each answer after the first is a hit); otherwise
/// every request asks a new one (each a miss: lookup, the provider, store). A request whose
/// `x-ai-cache` is not the expected one counts as an error.
fn run_cache_load(envoy: &Envoy, hits: bool, seconds: u64, concurrency: usize) -> Load {
    let url = format!("{}/v1/chat/completions", envoy.url());
    let next = std::sync::atomic::AtomicU64::new(0);
    let want = if hits { "hit" } else { "miss" };
    let body = |n: u64| {
        let q = if hits {
            "Say hello to the cache".to_string()
        } else {
            format!("Question {n} to the cache")
        };
        json!({"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": q}]})
        .to_string()
    };
    if hits {
        let _ = Client::new(Duration::from_secs(30)).post(&url, &[], &body(0));
    }
    let before = proc_cpu_seconds(envoy.pid());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let results: Vec<Load> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                let (url, next, body) = (&url, &next, &body);
                scope.spawn(move || {
                    let client = Client::new(Duration::from_secs(30));
                    let mut load = Load::default();
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match client.post(url, &[], &body(n)) {
                            Ok(r) if r.status == 200 && r.header("x-ai-cache") == Some(want) => {
                                load.requests += 1
                            }
                            _ => load.errors += 1,
                        }
                        load.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                    load
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut total = Load {
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: proc_cpu_seconds(envoy.pid()) - before,
        ..Load::default()
    };
    for r in results {
        total.requests += r.requests;
        total.errors += r.errors;
        total.latencies_ms.extend(r.latencies_ms);
    }
    total
}

fn floor_wasm() -> PathBuf {
    workspace_root().join("target/bench/floor.wasm")
}

fn options(setup: &Setup, workers: u32) -> Options {
    Options {
        plain: setup.plain,
        concurrency: Some(workers),
        extra_wasm: setup.floor.map(|root_id| ExtraWasm {
            wasm: floor_wasm(),
            root_id: root_id.to_string(),
        }),
        ..Options::shipped()
    }
    .with_plugin("ai-token-ratelimit", UNLIMITED)
    // The workloads repeat one request: with the shipped cache every answer after the first
    // would be a hit, and the figures would measure the cache, not the chain.
    .with_plugin("ai-cache", e2e::envoy::off_config("ai-cache"))
}

fn start(mock: &Mock, setup: &Setup, workers: u32) -> Result<Envoy> {
    std::env::set_var(
        "AI_GATEWAY_MODE",
        match setup.mode {
            Mode::Plugins => "plugins",
            Mode::Bundle => "bundle",
            Mode::Gateway => "gateway",
        },
    );
    Envoy::start(mock.port, &options(setup, workers))
}

/// Sends 200 JSON requests to a fresh Envoy (estimates included, so the tokenizer is built);
/// returns its RSS after them.
fn warm_rss(envoy: &Envoy) -> Result<f64> {
    let client = Client::new(Duration::from_secs(30));
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
        .to_string();
    for _ in 0..200 {
        client.post(
            &format!("{}/v1/chat/completions", envoy.url()),
            &[("x-mock-usage", "none")],
            &body,
        )?;
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(rss_mb(envoy.pid()))
}

/// Streams one answer of 1 MB of text (1000 pieces of 1000 bytes, moderated in windows when the
/// chain has ai-moderation); returns whether it arrived whole, and Envoy's RSS before and after.
fn big_stream(envoy: &Envoy) -> Result<(bool, f64, f64)> {
    let before = rss_mb(envoy.pid());
    let client = Client::new(Duration::from_secs(120));
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "a long answer"}]}).to_string();
    let headers = [("x-mock-chunks", "1000"), ("x-mock-piece-bytes", "1000")];
    let (status, reads) = client.post_stream(
        &format!("{}/v1/chat/completions", envoy.url()),
        &headers,
        &body,
    )?;
    let bytes: usize = reads.iter().map(|(_, b)| b.len()).sum();
    let last = reads
        .last()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let complete = status == 200 && bytes > 1_000_000 && last.contains("[DONE]");
    Ok((complete, before, rss_mb(envoy.pid())))
}

/// What one setup measured, per workload and round.
#[derive(Default)]
struct Measured {
    cpu_us: [Vec<f64>; 3],
    rps: [Vec<f64>; 3],
    requests: [u64; 3],
    errors: [u64; 3],
    latencies_ms: [Vec<f64>; 3],
    ttfb_ms: [Vec<f64>; 3],
    /// Each round's TTFB p50 of the stream in separate writes.
    ttfb_p50_ms: Vec<f64>,
    rss_mb_1_worker: f64,
    /// RSS of each round's fresh 2-worker Envoy after its 200 warm-up requests.
    rss_mb_2_workers: Vec<f64>,
    big: (bool, f64, f64),
}

/// A figure over rounds: median and spread (max − min).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    median: f64,
    spread: f64,
}

impl Stat {
    /// None without values or when one is not finite (a round without a defined figure).
    fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            spread: v[n - 1] - v[0],
        })
    }

    /// Whether the figure is told apart from zero: the median is outside the spread.
    fn resolved(&self) -> bool {
        self.median.abs() > self.spread
    }

    /// A `≤ goal` budget holds for the whole spread.
    fn at_most(&self, goal: f64) -> bool {
        self.median + self.spread <= goal
    }

    fn show(&self, decimals: usize) -> String {
        format!("{:.d$} ± {:.d$}", self.median, self.spread, d = decimals)
    }

    fn json(&self) -> Value {
        json!({"median": self.median, "spread": self.spread})
    }
}

fn show(stat: Option<Stat>, decimals: usize) -> String {
    stat.map_or_else(|| "n/a".to_string(), |s| s.show(decimals))
}

/// A first byte unchanged within noise: its range over rounds reaches into plain Envoy's or below.
fn first_byte_within_noise(first: Option<Stat>, plain: Option<Stat>) -> bool {
    match (first, plain) {
        (Some(f), Some(p)) => f.median - f.spread <= p.median + p.spread,
        _ => false,
    }
}

/// Per-round values of `f(setup's, reference's)`.
fn per_round(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
}

/// The derived figures of one setup.
struct Derived {
    cpu: [Option<Stat>; 3],
    efficiency: [Option<Stat>; 3],
    /// (CPU − plain) / (parse floor − plain), per round.
    floor_multiple: [Option<Stat>; 3],
    /// The parse floor's CPU over plain (the multiple's denominator).
    floor_added: [Option<Stat>; 3],
    /// (SSE-in-80-writes CPU − the parse floor's) / 80.
    per_chunk: Option<Stat>,
    rss_2w: Option<Stat>,
    rss_2w_over_plain: Option<Stat>,
}

fn derive(m: &Measured, plain: &Measured, parse: &Measured) -> Derived {
    let each = |f: &dyn Fn(usize) -> Option<Stat>| [f(0), f(1), f(2)];
    Derived {
        cpu: each(&|w| Stat::of(&m.cpu_us[w])),
        efficiency: each(&|w| {
            Stat::of(&per_round(&plain.cpu_us[w], &m.cpu_us[w], |p, x| {
                100.0 * p / x
            }))
        }),
        floor_multiple: each(&|w| {
            let added = per_round(&m.cpu_us[w], &plain.cpu_us[w], |x, p| x - p);
            let floor = per_round(&parse.cpu_us[w], &plain.cpu_us[w], |x, p| x - p);
            // A round where the floor added nothing has no multiple (NaN makes the Stat None).
            Stat::of(&per_round(&added, &floor, |a, f| {
                if f > 0.0 {
                    a / f
                } else {
                    f64::NAN
                }
            }))
        }),
        floor_added: each(&|w| {
            Stat::of(&per_round(&parse.cpu_us[w], &plain.cpu_us[w], |x, p| x - p))
        }),
        per_chunk: Stat::of(&per_round(
            &m.cpu_us[SEPARATE],
            &parse.cpu_us[SEPARATE],
            |x, f| (x - f) / f64::from(CHUNKS),
        )),
        rss_2w: Stat::of(&m.rss_mb_2_workers),
        rss_2w_over_plain: Stat::of(&per_round(
            &m.rss_mb_2_workers,
            &plain.rss_mb_2_workers,
            |x, p| x - p,
        )),
    }
}

/// The multiple of the parse floor's added CPU; "floor not resolved" when the floor's added
/// CPU is within its spread of zero (the ratio then means nothing).
fn show_multiple(d: &Derived, w: usize) -> String {
    match d.floor_added[w] {
        Some(floor) if floor.resolved() => format!("{} ×", show(d.floor_multiple[w], 2)),
        Some(floor) => format!("floor not resolved ({} µs)", floor.show(0)),
        None => "n/a".to_string(),
    }
}

/// Whether a `≤ goal` multiple of the floor holds (never when the floor is not resolved).
fn multiple_at_most(d: &Derived, w: usize, goal: f64) -> bool {
    d.floor_added[w].is_some_and(|f| f.resolved())
        && d.floor_multiple[w].is_some_and(|s| s.at_most(goal))
}

/// The per-chunk figure, or "not resolved" when it is within its spread of zero.
fn show_per_chunk(stat: Option<Stat>) -> String {
    match stat {
        Some(s) if s.resolved() => s.show(2),
        Some(s) => format!("not resolved ({})", s.show(2)),
        None => "n/a".to_string(),
    }
}

/// The native harness (`plugins/ai-gateway/examples/profile.rs`) over the one filter's stages
/// and over the parse floor as a stage: instruction counts under callgrind (deterministic) and
/// native time per request and per streamed chunk, each round.
#[derive(Default)]
struct Native {
    /// Instructions per JSON request: one filter, floor.
    json_instructions: [Option<f64>; 2],
    /// Instructions per streamed chunk: one filter, floor.
    chunk_instructions: [Option<f64>; 2],
    /// Native µs per JSON request, per round: one filter, floor.
    json_us: [Vec<f64>; 2],
    /// Native µs per streamed chunk, per round: one filter, floor.
    chunk_us: [Vec<f64>; 2],
    /// Host calls per JSON request and per stream (one filter).
    host_calls: [Option<f64>; 2],
    /// Host calls the root's tick makes per request to flush held metrics (JSON, stream).
    flush_calls: [Option<f64>; 2],
}

fn profile_bin() -> PathBuf {
    workspace_root().join("target/profiling/examples/profile")
}

/// The number after `key` on a line of `text` (`key 1.5`, or `key: 20 host calls`).
fn figure(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(key)?;
        rest.trim_start_matches([':', ' '])
            .split_whitespace()
            .next()?
            .trim_end_matches(',')
            .parse()
            .ok()
    })
}

/// Runs the harness; with `callgrind`, the instructions collected in `function`.
fn harness(mode: &str, n: usize, callgrind: Option<&str>) -> Result<(String, Option<f64>)> {
    let mut cmd = match callgrind {
        Some(function) => {
            let mut c = std::process::Command::new("valgrind");
            c.args([
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                &format!("--toggle-collect=*{function}*"),
            ])
            .arg(profile_bin());
            c
        }
        None => std::process::Command::new(profile_bin()),
    };
    let out = cmd.args([mode, &n.to_string()]).output()?;
    if !out.status.success() {
        return Err(format!(
            "profile {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )
        .into());
    }
    let collected = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| {
            l.split("Collected :")
                .nth(1)
                .map(str::trim)
                .map(str::to_string)
        })
        .and_then(|v| v.parse::<f64>().ok());
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), collected))
}

fn native(rounds: usize) -> Result<Native> {
    let mut n = Native::default();
    let valgrind = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    for (i, floor) in ["", "-floor"].into_iter().enumerate() {
        let (json, sse) = (format!("json{floor}"), format!("sse{floor}"));
        for _ in 0..rounds {
            let (text, _) = harness(&json, 2000, None)?;
            n.json_us[i].extend(figure(&text, "native_us_per_request"));
            let (text, _) = harness(&sse, 200, None)?;
            n.chunk_us[i].extend(figure(&text, "native_us_per_chunk"));
        }
        if i == 0 {
            for (j, mode) in ["json", "sse"].into_iter().enumerate() {
                let (text, _) = harness(mode, 100, None)?;
                n.host_calls[j] = figure(&text, "host_calls_per_request");
                n.flush_calls[j] = figure(&text, "flush_calls_per_request");
            }
        }
        if valgrind {
            const JSON_N: usize = 50;
            const SSE_N: usize = 10;
            let (_, c) = harness(&json, JSON_N, Some("measure_json"))?;
            n.json_instructions[i] = c.map(|c| c / JSON_N as f64);
            let (text, c) = harness(&sse, SSE_N, Some("stream_chunks"))?;
            let chunks = figure(&text, "chunks_per_stream").unwrap_or(1.0) * SSE_N as f64;
            n.chunk_instructions[i] = c.map(|c| c / chunks);
        }
    }
    Ok(n)
}

/// The native harness's table.
fn native_report(n: &Native) -> String {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_string(),
    };
    let count =
        |v: Option<f64>| v.map_or_else(|| "n/a (no valgrind)".to_string(), |v| format!("{v:.0}"));
    let (json, chunk) = (
        [Stat::of(&n.json_us[0]), Stat::of(&n.json_us[1])],
        [Stat::of(&n.chunk_us[0]), Stat::of(&n.chunk_us[1])],
    );
    let us_ratio = |s: [Option<Stat>; 2]| ratio(s[0].map(|s| s.median), s[1].map(|s| s.median));
    format!(
        "
## Native harness: the plugins' own cost

`plugins/ai-gateway/examples/profile.rs` drives the one filter's pipeline (every stage, the bench's configs) and the parse floor as a stage through the mock host, the way Envoy calls them. Instructions are callgrind's (deterministic: the same on every run); times are native code (the wasm build runs the same code compiled by V8), median ± spread over rounds.

| | one filter | parse floor | × floor |
|---|---|---|---|
| instructions per JSON request | {} | {} | {} |
| instructions per streamed chunk | {} | {} | {} |
| native µs per JSON request | {} | {} | {} |
| native µs per streamed chunk | {} | {} | {} |
| host calls per JSON request / per 81-chunk stream | {} / {} | | |
| metric flush calls at the root's tick, per JSON request / stream | {} / {} | | |
",
        count(n.json_instructions[0]),
        count(n.json_instructions[1]),
        ratio(n.json_instructions[0], n.json_instructions[1]),
        count(n.chunk_instructions[0]),
        count(n.chunk_instructions[1]),
        ratio(n.chunk_instructions[0], n.chunk_instructions[1]),
        show(json[0], 2),
        show(json[1], 2),
        us_ratio(json),
        show(chunk[0], 3),
        show(chunk[1], 3),
        us_ratio(chunk),
        count(n.host_calls[0]),
        count(n.host_calls[1]),
        n.flush_calls[0].map_or("n/a".to_string(), |v| format!("{v:.2}")),
        n.flush_calls[1].map_or("n/a".to_string(), |v| format!("{v:.2}")),
    )
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let seconds = arg("--seconds", 6);
    let rounds = arg("--rounds", 3).max(1) as usize;
    let concurrency = arg("--concurrency", 8) as usize;
    let paced_concurrency = arg("--paced-concurrency", 48) as usize;
    if !floor_wasm().exists() {
        return Err(format!(
            "{} is missing (`make bench` builds it: cargo build --release --target wasm32-wasip1 -p floor)",
            floor_wasm().display()
        )
        .into());
    }
    let mock_bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join("mock-provider"))
        .ok_or("no exe dir")?;
    let mock = Mock::start(&mock_bin.display().to_string())?;
    let args: Vec<String> = std::env::args().collect();
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_string).collect());
    // The baseline and the floors always run: every figure is relative to them.
    let chosen: Vec<&Setup> = SETUPS
        .iter()
        .filter(|s| s.plain || only.as_ref().is_none_or(|o| o.iter().any(|k| k == s.key)))
        .collect();
    let mut measured: Vec<Measured> = chosen.iter().map(|_| Measured::default()).collect();
    for (setup, m) in chosen.iter().zip(measured.iter_mut()) {
        eprintln!("== {}: RSS with 1 worker", setup.name);
        let envoy = start(&mock, setup, 1)?;
        m.rss_mb_1_worker = warm_rss(&envoy)?;
        drop(envoy);
        mock.clear()?;
    }
    for round in 0..rounds {
        // Each round starts at a different setup, so no setup always follows the same one.
        for i in 0..chosen.len() {
            let at = (i + round) % chosen.len();
            let (setup, m) = (chosen[at], &mut measured[at]);
            eprintln!("== round {}/{rounds}: {}", round + 1, setup.name);
            let envoy = start(&mock, setup, 2)?;
            m.rss_mb_2_workers.push(warm_rss(&envoy)?);
            let _ = run_load(&envoy, &WORKLOADS[0], 1, concurrency); // warm-up
            let _ = run_load(&envoy, &WORKLOADS[1], 1, concurrency);
            for (w, workload) in WORKLOADS.iter().enumerate() {
                let connections = if workload.paced {
                    paced_concurrency
                } else {
                    concurrency
                };
                let load = run_load(&envoy, workload, seconds, connections);
                m.cpu_us[w].push(load.cpu_us());
                m.rps[w].push(load.rps());
                m.requests[w] += load.requests;
                m.errors[w] += load.errors;
                m.latencies_ms[w].extend(load.latencies_ms);
                if w == SEPARATE {
                    m.ttfb_p50_ms
                        .push(percentile(&mut load.ttfb_ms.clone(), 0.5));
                }
                m.ttfb_ms[w].extend(load.ttfb_ms);
            }
            if round == 0 {
                m.big = big_stream(&envoy)?;
            }
            drop(envoy);
            mock.clear()?;
        }
    }
    // ai-cache: a hit against a miss, the shipped chain as one filter with the cache on.
    let mut cache: [Load; 2] = [Load::default(), Load::default()];
    let mut cache_cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        eprintln!("== round {}/{rounds}: ai-cache miss and hit", round + 1);
        std::env::set_var("AI_GATEWAY_MODE", "gateway");
        let options = Options {
            concurrency: Some(2),
            ..Options::shipped()
        }
        .with_plugin("ai-token-ratelimit", UNLIMITED);
        let envoy = Envoy::start(mock.port, &options)?;
        let _ = run_load(&envoy, &WORKLOADS[0], 1, concurrency); // warm-up
        for (i, hits) in [false, true].into_iter().enumerate() {
            let load = run_cache_load(&envoy, hits, seconds, concurrency);
            cache_cpu[i].push(load.cpu_us());
            cache[i].requests += load.requests;
            cache[i].errors += load.errors;
            cache[i].latencies_ms.extend(load.latencies_ms);
        }
        drop(envoy);
        mock.clear()?;
    }
    // First byte of a stream through the one filter with response moderation off (requests
    // still checked): nothing may hold the stream's start.
    let mut first_byte_ms: Vec<f64> = Vec::new();
    if let Some(gateway) = chosen.iter().find(|s| s.name == GATEWAY) {
        for round in 0..rounds {
            eprintln!(
                "== round {}/{rounds}: {GATEWAY}, response moderation off",
                round + 1
            );
            let mut options = options(gateway, 2);
            options.plugin_configs.insert(
                0,
                ("ai-moderation".to_string(), REQUESTS_MODERATED.to_string()),
            );
            std::env::set_var("AI_GATEWAY_MODE", "gateway");
            let envoy = Envoy::start(mock.port, &options)?;
            let _ = run_load(&envoy, &WORKLOADS[SEPARATE], 1, paced_concurrency); // warm-up
            let mut load = run_load(&envoy, &WORKLOADS[SEPARATE], seconds, paced_concurrency);
            first_byte_ms.push(percentile(&mut load.ttfb_ms, 0.5));
            drop(envoy);
            mock.clear()?;
        }
    }
    eprintln!("== native harness ({rounds} rounds; callgrind when valgrind is installed)");
    let native = native(rounds)?;
    let index = |name: &str| chosen.iter().position(|s| s.name == name).unwrap_or(0);
    let (plain, parse) = (&measured[index(PLAIN)], &measured[index(PARSE_FLOOR)]);
    let derived: Vec<Derived> = measured.iter().map(|m| derive(m, plain, parse)).collect();

    let mut md = String::from("# Benchmark\n\n");
    md.push_str(&format!(
        "{rounds} rounds alternating the setups, {seconds} s per workload and round, {concurrency} connections \
({paced_concurrency} for the paced stream), Envoy with 2 workers (a fresh one per setup and round), mock upstream. Workloads: JSON; an SSE answer of \
{CHUNKS} chunks (82 events) arriving in one write; the same in {CHUNKS} writes 1 ms apart.\n\
Each figure: median over rounds ± spread (max − min). CPU is Envoy's own, from /proc. \
eff. = plain Envoy's CPU per request / this setup's (100 % = free). × floor = CPU added over plain / \
the read+parse floor's added CPU (same round). Plugin µs/chunk = (SSE-in-{CHUNKS}-writes CPU − the \
parse floor's) / {CHUNKS}; \"not resolved\" when that is within its spread of zero.\n\n"
    ));
    md.push_str("| setup |");
    for w in &WORKLOADS {
        md.push_str(&format!(" {} CPU µs/req | eff. % | × floor |", w.name));
    }
    md.push_str(" plugin µs/chunk |\n|---|");
    md.push_str(&"---|".repeat(3 * WORKLOADS.len() + 1));
    md.push('\n');
    for (setup, d) in chosen.iter().zip(&derived) {
        md.push_str(&format!("| {} |", setup.name));
        for w in 0..WORKLOADS.len() {
            let multiple = if setup.name == PLAIN {
                "–".to_string()
            } else if setup.name == PARSE_FLOOR {
                format!("1 (+{} µs)", show(d.floor_added[w], 0))
            } else {
                show_multiple(d, w)
            };
            md.push_str(&format!(
                " {} | {} | {} |",
                show(d.cpu[w], 0),
                show(d.efficiency[w], 0),
                multiple
            ));
        }
        let per_chunk = if setup.name == PLAIN || setup.name == PARSE_FLOOR {
            "–".to_string()
        } else {
            show_per_chunk(d.per_chunk)
        };
        md.push_str(&format!(" {per_chunk} |\n"));
    }
    md.push_str(
        "\n| setup | JSON rps | JSON p50 / p99 ms | SSE 1-write rps | SSE 80-write rps | SSE 80-write TTFB p50 ms | RSS MB 1 worker | RSS MB 2 workers | errors |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (setup, (m, d)) in chosen.iter().zip(measured.iter_mut().zip(&derived)) {
        let errors: u64 = m.errors.iter().sum();
        md.push_str(&format!(
            "| {} | {} | {:.2} / {:.2} | {} | {} | {:.1} | {:.0} | {} | {errors} |\n",
            setup.name,
            show(Stat::of(&m.rps[0]), 0),
            percentile(&mut m.latencies_ms[0], 0.5),
            percentile(&mut m.latencies_ms[0], 0.99),
            show(Stat::of(&m.rps[1]), 0),
            show(Stat::of(&m.rps[SEPARATE]), 0),
            percentile(&mut m.ttfb_ms[SEPARATE], 0.5),
            m.rss_mb_1_worker,
            show(d.rss_2w, 0),
        ));
    }
    // The budgets of the performance issue, held by the one-filter form.
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    if let Some(one) = chosen.iter().position(|s| s.name == GATEWAY) {
        let d = &derived[one];
        md.push_str(&format!(
            "\n| budget ({GATEWAY}) | goal | measured | |\n|---|---|---|---|\n"
        ));
        for (w, workload) in WORKLOADS.iter().enumerate() {
            md.push_str(&format!(
                "| added CPU, {} | ≤ 2 × the parse floor's | {} | {} |\n",
                workload.name,
                show_multiple(d, w),
                verdict(multiple_at_most(d, w, 2.0))
            ));
        }
        md.push_str(&format!(
            "| plugin time per streamed chunk, Envoy CPU | ≤ 3 µs | {} µs | {} |\n",
            show_per_chunk(d.per_chunk),
            verdict(d.per_chunk.is_some_and(|s| s.at_most(3.0)))
        ));
        let chunk = Stat::of(&native.chunk_us[0]);
        md.push_str(&format!(
            "| plugin time per streamed chunk, native harness | ≤ 3 µs | {} µs | {} |\n",
            show(chunk, 3),
            verdict(chunk.is_some_and(|s| s.at_most(3.0)))
        ));
        md.push_str(&format!(
            "| host calls per JSON request | ≤ 15 | {} | {} |\n",
            native.host_calls[0].map_or("n/a".to_string(), |v| format!("{v:.0}")),
            verdict(native.host_calls[0].is_some_and(|v| v <= 15.0))
        ));
        md.push_str(&format!(
            "| RSS with 2 workers over plain | ≤ 60 MB | {} MB | {} |\n",
            show(d.rss_2w_over_plain, 0),
            verdict(d.rss_2w_over_plain.is_some_and(|s| s.at_most(60.0)))
        ));
        let plain_first = Stat::of(&measured[index(PLAIN)].ttfb_p50_ms);
        let first = Stat::of(&first_byte_ms);
        md.push_str(&format!(
            "| first byte of a stream ({CHUNKS} writes), response moderation off | plain's {} ms (ranges overlap) | {} ms | {} |\n",
            show(plain_first, 1),
            show(first, 1),
            verdict(first_byte_within_noise(first, plain_first))
        ));
        md.push_str(&format!(
            "| first byte of a stream ({CHUNKS} writes), response moderation on (`streamWindow` 200) | one window | {} ms | stated |\n",
            show(Stat::of(&measured[one].ttfb_p50_ms), 1),
        ));
        md.push_str("\nA budget is met only when figure + spread meets it.\n");
    }
    md.push_str(&native_report(&native));
    md.push_str(
        "\n| setup | 1 MB streamed answer | Envoy RSS before → after (MB) |\n|---|---|---|\n",
    );
    for (setup, m) in chosen.iter().zip(&measured) {
        md.push_str(&format!(
            "| {} | {} | {:.0} → {:.0} |\n",
            setup.name,
            if m.big.0 { "complete" } else { "INCOMPLETE" },
            m.big.1,
            m.big.2,
        ));
    }
    md.push_str("\n| module | bytes |\n|---|---|\n");
    let mut sizes = Vec::new();
    let mut modules: Vec<(String, PathBuf)> = [
        "ai-statistics",
        "ai-moderation",
        "ai-prompt-decorator",
        "ai-proxy",
        "mcp-server",
        "ai-agent",
        "ai-gateway",
    ]
    .iter()
    .map(|p| (format!("{p}.wasm"), wasm_path(p)))
    .collect();
    modules.push(("floor.wasm (bench only)".to_string(), floor_wasm()));
    for (name, path) in modules {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        md.push_str(&format!("| {name} | {size} |\n"));
        sizes.push(json!({"module": name, "bytes": size}));
    }
    let rows: Vec<Value> = chosen
        .iter()
        .zip(measured.iter().zip(&derived))
        .map(|(setup, (m, d))| {
            let mut row = json!({
                "setup": setup.name,
                "rss_mb_1_worker": m.rss_mb_1_worker,
                "rss_mb_2_workers": m.rss_mb_2_workers,
                "rss_mb_2_workers_over_plain": d.rss_2w_over_plain.map(|s| s.json()),
                "plugin_us_per_chunk": d.per_chunk.map(|s| s.json()),
                "stream_1mb": {"complete": m.big.0, "rss_mb_before": m.big.1, "rss_mb_after": m.big.2},
            });
            for (w, workload) in WORKLOADS.iter().enumerate() {
                row[workload.key] = json!({
                    "cpu_us_per_request": m.cpu_us[w],
                    "rps": m.rps[w],
                    "requests": m.requests[w],
                    "errors": m.errors[w],
                    "cpu": d.cpu[w].map(|s| s.json()),
                    "efficiency_percent": d.efficiency[w].map(|s| s.json()),
                    "added_cpu_x_parse_floor": d.floor_multiple[w].map(|s| s.json()),
                    "parse_floor_added_cpu_us": d.floor_added[w].map(|s| s.json()),
                });
            }
            row
        })
        .collect();
    md.push_str(&format!(
        "\n## ai-cache: a hit against a miss\n\nThe shipped chain as one filter with the cache on \
(`{{}}`, shared data), JSON, {concurrency} connections, {seconds} s per round: a miss asks a new \
question each time (lookup, the provider, store, eviction once full), a hit repeats one.\n\n\
| | CPU µs/req | p50 ms | p99 ms | requests | errors |\n|---|---|---|---|---|---|\n"
    ));
    let mut cache_rows = Vec::new();
    for (i, name) in ["miss", "hit"].into_iter().enumerate() {
        let cpu = Stat::of(&cache_cpu[i]);
        let (p50, p99) = (
            percentile(&mut cache[i].latencies_ms, 0.5),
            percentile(&mut cache[i].latencies_ms, 0.99),
        );
        md.push_str(&format!(
            "| {name} | {} | {p50:.2} | {p99:.2} | {} | {} |\n",
            show(cpu, 0),
            cache[i].requests,
            cache[i].errors
        ));
        cache_rows.push(json!({"kind": name, "cpu_us_per_request": cache_cpu[i],
            "p50_ms": p50, "p99_ms": p99, "requests": cache[i].requests, "errors": cache[i].errors}));
    }
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.md"), &md)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(
            &json!({"rounds": rounds, "seconds": seconds, "concurrency": concurrency,
            "paced_concurrency": paced_concurrency,
            "first_byte_ms_response_moderation_off": first_byte_ms,
            "rows": rows, "modules": sizes, "cache": cache_rows,
            "native": {
                "instructions_per_json_request": native.json_instructions,
                "instructions_per_chunk": native.chunk_instructions,
                "us_per_json_request": native.json_us,
                "us_per_chunk": native.chunk_us,
                "host_calls": native.host_calls,
                "flush_calls": native.flush_calls,
            }}),
        )?,
    )?;
    println!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.spread), (2.0, 2.0));
        assert_eq!(Stat::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(&[]), None);
        assert_eq!(Stat::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn budgets_hold_for_the_whole_spread() {
        let s = Stat {
            median: 2.5,
            spread: 1.0,
        };
        assert!(s.at_most(3.5) && !s.at_most(3.0));
        assert!(s.resolved());
        let noise = Stat {
            median: 0.4,
            spread: 1.0,
        };
        assert!(!noise.resolved());
        assert_eq!(show_per_chunk(Some(noise)), "not resolved (0.40 ± 1.00)");
    }

    #[test]
    fn chunk_count_matches_its_header() {
        assert_eq!(CHUNKS.to_string(), CHUNKS_TEXT);
    }

    #[test]
    fn first_byte_within_noise_needs_overlapping_ranges() {
        let stat = |median, spread| Some(Stat { median, spread });
        assert!(first_byte_within_noise(stat(3.4, 0.3), stat(3.0, 0.2)));
        assert!(first_byte_within_noise(stat(2.5, 0.1), stat(3.0, 0.2)));
        assert!(!first_byte_within_noise(stat(121.8, 5.0), stat(3.0, 0.2)));
        assert!(!first_byte_within_noise(None, stat(3.0, 0.2)));
    }

    #[test]
    fn floor_multiple_is_relative_to_the_parse_floor() {
        let m = |cpu: f64| Measured {
            cpu_us: [vec![cpu, cpu], vec![cpu, cpu], vec![cpu, cpu]],
            rss_mb_2_workers: vec![cpu, cpu],
            ..Measured::default()
        };
        let (plain, parse, setup) = (m(100.0), m(150.0), m(200.0));
        let d = derive(&setup, &plain, &parse);
        assert_eq!(d.floor_multiple[0].map(|s| s.median), Some(2.0));
        assert_eq!(d.efficiency[1].map(|s| s.median), Some(50.0));
        assert_eq!(
            d.per_chunk.map(|s| s.median),
            Some(50.0 / f64::from(CHUNKS))
        );
        assert_eq!(derive(&plain, &plain, &plain).floor_multiple[2], None);
    }
}
