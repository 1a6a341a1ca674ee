//! `make bench`: plain Envoy against Envoy with the plugins (each plugin's own `.wasm`, the
//! bundle by root id, the bundle as one filter), same run, same mock upstream. Reports Envoy CPU
//! per request, RPS, latency, time to first byte, RSS and module sizes; writes
//! `target/bench/report.md` and `report.json`.
//!
//! usage: bench [--seconds N] [--concurrency N] [--only plain,plugins,bundle,gateway]

use e2e::envoy::{Envoy, Mode, Options};
use e2e::http::Client;
use e2e::mock::Mock;
use e2e::{wasm_path, workspace_root, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One configuration under test.
struct Setup {
    name: &'static str,
    /// Its name for `--only`.
    key: &'static str,
    mode: Mode,
    plain: bool,
}

const SETUPS: [Setup; 4] = [
    Setup {
        name: "plain Envoy",
        key: "plain",
        mode: Mode::Plugins,
        plain: true,
    },
    Setup {
        name: "5 filters (own .wasm)",
        key: "plugins",
        mode: Mode::Plugins,
        plain: false,
    },
    Setup {
        name: "bundle by root_id",
        key: "bundle",
        mode: Mode::Bundle,
        plain: false,
    },
    Setup {
        name: "one ai-gateway filter",
        key: "gateway",
        mode: Mode::Gateway,
        plain: false,
    },
];

/// Streamed chunks per answer.
const CHUNKS: u32 = 80;

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

fn run_load(envoy: &Envoy, stream: bool, seconds: u64, concurrency: usize) -> Load {
    let url = format!("{}/v1/chat/completions", envoy.url());
    let body = json!({"model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello to the benchmark"}]})
    .to_string();
    let chunks = CHUNKS.to_string();
    let before = proc_cpu_seconds(envoy.pid());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let results: Vec<Load> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                let (url, body, chunks) = (&url, &body, &chunks);
                scope.spawn(move || {
                    let client = Client::new(Duration::from_secs(30));
                    let mut load = Load::default();
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let headers = [
                            ("x-mock-chunks", chunks.as_str()),
                            ("x-mock-chunk-delay-ms", "1"),
                        ];
                        if stream {
                            match client.post_stream(url, &headers, body) {
                                Ok((200, reads)) => {
                                    if let Some((first, _)) = reads.first() {
                                        load.ttfb_ms.push((*first - t0).as_secs_f64() * 1e3);
                                    }
                                    load.requests += 1;
                                }
                                _ => load.errors += 1,
                            }
                        } else {
                            match client.post(url, &[], body) {
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

/// A budget no benchmark spends: the rate limiter does all its work and refuses nothing.
const UNLIMITED: &str =
    r#"{"rule_name": "bench", "global_threshold": {"token_per_minute": 1000000000000}}"#;

fn options(setup: &Setup, workers: u32) -> Options {
    Options {
        plain: setup.plain,
        concurrency: Some(workers),
        ..Options::shipped()
    }
    .with_plugin("ai-token-ratelimit", UNLIMITED)
}

/// RSS of a fresh Envoy after `n` requests (estimates included, so the tokenizer is built).
fn rss_after_warmup(mock: &Mock, setup: &Setup, workers: u32) -> Result<f64> {
    let envoy = Envoy::start(mock.port, &options(setup, workers))?;
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
    let concurrency = arg("--concurrency", 8) as usize;
    let mock_bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join("mock-provider"))
        .ok_or("no exe dir")?;
    let mock = Mock::start(&mock_bin.display().to_string())?;
    let mut rows = Vec::new();
    let args: Vec<String> = std::env::args().collect();
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_string).collect());
    // The baseline always runs: efficiency is relative to it.
    let chosen = SETUPS
        .iter()
        .filter(|s| s.plain || only.as_ref().is_none_or(|o| o.iter().any(|k| k == s.key)));
    for setup in chosen {
        std::env::set_var(
            "AI_GATEWAY_MODE",
            match setup.mode {
                Mode::Plugins => "plugins",
                Mode::Bundle => "bundle",
                Mode::Gateway => "gateway",
            },
        );
        eprintln!("== {}", setup.name);
        let rss1 = rss_after_warmup(&mock, setup, 1)?;
        let rss2 = rss_after_warmup(&mock, setup, 2)?;
        let envoy = Envoy::start(mock.port, &options(setup, 2))?;
        let _ = run_load(&envoy, false, 1, concurrency); // warm-up
        let mut json_load = run_load(&envoy, false, seconds, concurrency);
        let mut sse_load = run_load(&envoy, true, seconds, concurrency);
        let (big_ok, rss_before_big, rss_after_big) = big_stream(&envoy)?;
        mock.clear()?;
        rows.push(json!({
            "setup": setup.name,
            "json": {"requests": json_load.requests, "errors": json_load.errors, "rps": json_load.rps(),
                     "cpu_us_per_request": json_load.cpu_us(),
                     "p50_ms": percentile(&mut json_load.latencies_ms, 0.5), "p99_ms": percentile(&mut json_load.latencies_ms, 0.99)},
            "sse": {"requests": sse_load.requests, "errors": sse_load.errors, "rps": sse_load.rps(),
                    "cpu_us_per_request": sse_load.cpu_us(),
                    "p50_ms": percentile(&mut sse_load.latencies_ms, 0.5), "p99_ms": percentile(&mut sse_load.latencies_ms, 0.99),
                    "ttfb_p50_ms": percentile(&mut sse_load.ttfb_ms, 0.5), "ttfb_p99_ms": percentile(&mut sse_load.ttfb_ms, 0.99)},
            "rss_mb_1_worker": rss1,
            "rss_mb_2_workers": rss2,
            "stream_1mb": {"complete": big_ok, "rss_mb_before": rss_before_big, "rss_mb_after": rss_after_big},
        }));
    }
    let base = rows.first().cloned().unwrap_or_default();
    let eff = |row: &Value, kind: &str| {
        let b = base[kind]["cpu_us_per_request"].as_f64().unwrap_or(0.0);
        let x = row[kind]["cpu_us_per_request"].as_f64().unwrap_or(f64::MAX);
        100.0 * b / x
    };
    let mut md = String::from("# Benchmark\n\n");
    md.push_str(&format!(
        "{seconds} s per workload, {concurrency} connections, Envoy with 2 workers, mock upstream, streams of {CHUNKS} chunks.\nEfficiency = plain Envoy's CPU per request / this setup's (100 % = free).\n\n"
    ));
    md.push_str("| setup | JSON rps | JSON CPU µs/req | JSON eff. | p50 / p99 ms | SSE rps | SSE CPU µs/req | SSE eff. | plugin µs/chunk | TTFB p50 ms | RSS MB 1w / 2w | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in &rows {
        let per_chunk = (row["sse"]["cpu_us_per_request"].as_f64().unwrap_or(0.0)
            - base["sse"]["cpu_us_per_request"].as_f64().unwrap_or(0.0))
            / f64::from(CHUNKS);
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} % | {:.2} / {:.2} | {:.0} | {:.0} | {:.0} % | {:.2} | {:.1} | {:.0} / {:.0} | {} |\n",
            row["setup"].as_str().unwrap_or_default(),
            row["json"]["rps"].as_f64().unwrap_or(0.0),
            row["json"]["cpu_us_per_request"].as_f64().unwrap_or(0.0),
            eff(row, "json"),
            row["json"]["p50_ms"].as_f64().unwrap_or(0.0),
            row["json"]["p99_ms"].as_f64().unwrap_or(0.0),
            row["sse"]["rps"].as_f64().unwrap_or(0.0),
            row["sse"]["cpu_us_per_request"].as_f64().unwrap_or(0.0),
            eff(row, "sse"),
            per_chunk,
            row["sse"]["ttfb_p50_ms"].as_f64().unwrap_or(0.0),
            row["rss_mb_1_worker"].as_f64().unwrap_or(0.0),
            row["rss_mb_2_workers"].as_f64().unwrap_or(0.0),
            row["json"]["errors"].as_u64().unwrap_or(0) + row["sse"]["errors"].as_u64().unwrap_or(0),
        ));
    }
    // The budgets of the performance issue, held by the one-filter form.
    if let Some(one) = rows.iter().find(|r| r["setup"] == "one ai-gateway filter") {
        let per_chunk = (one["sse"]["cpu_us_per_request"].as_f64().unwrap_or(0.0)
            - base["sse"]["cpu_us_per_request"].as_f64().unwrap_or(0.0))
            / f64::from(CHUNKS);
        let extra_rss = one["rss_mb_2_workers"].as_f64().unwrap_or(0.0)
            - base["rss_mb_2_workers"].as_f64().unwrap_or(0.0);
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        md.push_str(
            "\n| budget (one ai-gateway filter) | goal | measured | |\n|---|---|---|---|\n",
        );
        for (name, goal, measured, ok) in [
            (
                "JSON efficiency",
                "≥ 75 %",
                format!("{:.0} %", eff(one, "json")),
                eff(one, "json") >= 75.0,
            ),
            (
                "SSE efficiency",
                "≥ 75 %",
                format!("{:.0} %", eff(one, "sse")),
                eff(one, "sse") >= 75.0,
            ),
            (
                "plugin time per streamed chunk",
                "≤ 5 µs",
                format!("{per_chunk:.1} µs"),
                per_chunk <= 5.0,
            ),
            (
                "RSS with 2 workers over plain",
                "≤ 60 MB",
                format!("{extra_rss:.0} MB"),
                extra_rss <= 60.0,
            ),
        ] {
            md.push_str(&format!(
                "| {name} | {goal} | {measured} | {} |\n",
                verdict(ok)
            ));
        }
    }
    md.push_str(
        "\n| setup | 1 MB streamed answer | Envoy RSS before → after (MB) |\n|---|---|---|\n",
    );
    for row in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.0} → {:.0} |\n",
            row["setup"].as_str().unwrap_or_default(),
            if row["stream_1mb"]["complete"] == true {
                "complete"
            } else {
                "INCOMPLETE"
            },
            row["stream_1mb"]["rss_mb_before"].as_f64().unwrap_or(0.0),
            row["stream_1mb"]["rss_mb_after"].as_f64().unwrap_or(0.0),
        ));
    }
    md.push_str("\n| module | bytes |\n|---|---|\n");
    let mut sizes = Vec::new();
    for plugin in [
        "ai-statistics",
        "ai-moderation",
        "ai-prompt-decorator",
        "ai-proxy",
        "ai-gateway",
    ] {
        let size = std::fs::metadata(wasm_path(plugin))
            .map(|m| m.len())
            .unwrap_or(0);
        md.push_str(&format!("| {plugin}.wasm | {size} |\n"));
        sizes.push(json!({"module": plugin, "bytes": size}));
    }
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.md"), &md)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&json!({"rows": rows, "modules": sizes}))?,
    )?;
    println!("{md}");
    Ok(())
}
