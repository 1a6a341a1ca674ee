//! Fault tests: the provider down, slow past its timeout, reset before and in the middle of an
//! answer, and answering garbage (an HTML page, truncated JSON, JSON of the wrong shape), seen
//! through the official SDKs. For each: the client gets an error in its protocol (the SDK raises
//! its API error class, never a parse error or an empty answer) within the timeout, Envoy keeps
//! serving, no plugin VM dies, and the rate limiter charges nothing for a failed call.
//!
//! Services other than the provider: the moderation service in `ai_moderation.rs`, the rate
//! limit service in `ai_token_ratelimit.rs` (down → `failure_mode_deny`), the fallback provider
//! in `ai_proxy_fallback.rs`.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::{Envoy, Options};
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

/// The provider's timeout in the configs below.
const TIMEOUT_MS: u64 = 1000;

fn options(provider: &str) -> Options {
    Options::plugin("ai-statistics", "{}")
        .with_plugin(
            "ai-token-ratelimit",
            r#"{"rule_name": "faults", "global_threshold": {"token_per_day": 1000000}}"#,
        )
        .with_plugin(
            "ai-proxy",
            &format!(
                r#"{{"provider": {{"type": "{provider}", "apiTokens": ["k"], "timeout": {TIMEOUT_MS}}}}}"#
            ),
        )
}

/// The faults, as the mock's control headers.
fn faults() -> Value {
    json!([
        ["slow", {"x-mock-delay-ms": "3000"}],
        ["reset_before_headers", {"x-mock-reset-after": "0"}],
        ["html", {"x-mock-garbage": "html"}],
        ["truncated", {"x-mock-garbage": "truncated"}],
        ["wrong_types", {"x-mock-garbage": "types"}],
        ["error_500", {"x-mock-status": "500"}],
    ])
}

fn chat(stream: bool) -> String {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
        .to_string()
}

/// Remaining tokens the rate limiter reports on a clean request.
fn remaining(gw: &Gateway) -> u64 {
    let resp = gw.post("/v1/chat/completions", &[], &chat(false)).unwrap();
    assert_eq!(resp.status, 200, "Envoy stopped serving: {}", resp.body);
    resp.header("x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no remaining-tokens header: {:?}", resp.headers))
}

fn no_vm_died(envoy: &Envoy) {
    let log = envoy.log();
    for needle in ["panicked", "RuntimeError", "wasm trap", "VM failed"] {
        assert!(!log.contains(needle), "{needle} in the Envoy log:\n{log}");
    }
}

/// Every fault, through the SDK of `sdk`, against a provider of `provider` type (translated for
/// that SDK: claude for openai, openai for anthropic).
fn sdk_sees_api_errors(provider: &str, sdk: &str, base: &str) {
    let gw = Gateway::start(MOCK, &options(provider)).unwrap();
    // One clean call first: the estimate a failed call would be charged.
    let before = remaining(&gw);
    let after_clean = remaining(&gw);
    let per_call = before - after_clean;
    let base_url = format!("{}{base}", gw.envoy.url());
    for fault in faults().as_array().unwrap() {
        let before = remaining(&gw);
        let out = run_sdk_script(
            "faults.py",
            &[sdk, &base_url, "m", &json!([fault]).to_string()],
        )
        .unwrap();
        // The failed calls cost nothing (the clean call that reads the budget costs `per_call`).
        let charged = before as i64 - remaining(&gw) as i64 - per_call as i64;
        if fault[0] == "reset_before_headers" {
            // The streamed call's headers (200) went out before the reset: it is charged what
            // was seen, its prompt's estimate, as any stream cut midway.
            assert!(
                (0..=per_call as i64).contains(&charged),
                "{fault}: {charged}"
            );
        } else {
            assert_eq!(charged, 0, "{fault} was charged");
        }
        check_outcomes(provider, sdk, &out);
    }
    no_vm_died(&gw.envoy);
}

fn check_outcomes(provider: &str, sdk: &str, out: &Value) {
    for (fault, modes) in out.as_object().unwrap() {
        for (mode, result) in modes.as_object().unwrap() {
            let what = format!("{provider} via {sdk}, {fault}, {mode}: {result}");
            assert_eq!(result["ok"], false, "{what}");
            let error = result["error"].as_str().unwrap();
            // The SDK's API error classes (a status error, or an APIError raised from an error
            // event in a stream), never a decoding error or an empty answer.
            assert!(
                error.ends_with("Error") && !error.contains("Decode") && !error.contains("JSON"),
                "{what}"
            );
            // A failure is a 5xx; once a stream has started (200), an error event, which the
            // SDK raises as its API error.
            let status = result["status"].as_u64();
            assert!(
                status.is_none_or(|s| s >= 500 || (s == 200 && mode == "stream")),
                "a provider failure is a 5xx: {what}"
            );
            // Within the provider timeout plus the time to answer.
            assert!(
                result["seconds"].as_f64().unwrap() < (TIMEOUT_MS as f64 / 1000.0) + 1.5,
                "{what}"
            );
        }
    }
}

#[test]
fn openai_sdk_gets_api_errors_from_a_failing_translated_provider() {
    sdk_sees_api_errors("claude", "openai", "/v1");
}

#[test]
fn anthropic_sdk_gets_api_errors_from_a_failing_translated_provider() {
    sdk_sees_api_errors("openai", "anthropic", "");
}

#[test]
fn a_stream_reset_midway_ends_the_client_stream_and_charges_what_was_seen() {
    let gw = Gateway::start(MOCK, &options("claude")).unwrap();
    let url = format!("{}/v1/chat/completions", gw.envoy.url());
    let cut = gw
        .client
        .post_stream(&url, &[("x-mock-reset-after", "3")], &chat(true));
    // The client's stream ends without [DONE] (or the connection is reset under it).
    if let Ok((status, reads)) = cut {
        assert_eq!(status, 200);
        let text: String = reads
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(!text.contains("[DONE]"), "{text}");
    }
    // Envoy keeps serving; the statistics still logged the cut call.
    assert!(remaining(&gw) > 0);
    let logs = gw.envoy.ai_logs(2);
    assert!(logs.len() >= 2, "{logs:?}");
    no_vm_died(&gw.envoy);
}

#[test]
fn provider_down_is_a_json_503_in_each_protocol() {
    // A cluster pointing at a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let envoy = Envoy::start(closed, &options("claude")).unwrap();
    let client = e2e::http::Client::new(std::time::Duration::from_secs(10));
    let resp = client
        .post(
            &format!("{}/v1/chat/completions", envoy.url()),
            &[],
            &chat(false),
        )
        .unwrap();
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.json().unwrap()["error"]["type"], "server_error");
    let resp = client
        .post(
            &format!("{}/v1/messages", envoy.url()),
            &[],
            &json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.json().unwrap()["type"], "error");
    // The SDK sees a 503 API error too.
    let base_url = format!("{}/v1", envoy.url());
    let out = run_sdk_script(
        "faults.py",
        &["openai", &base_url, "m", r#"[["down", {}]]"#],
    )
    .unwrap();
    assert_eq!(out["down"]["json"]["status"], 503, "{out}");
    assert_eq!(out["down"]["stream"]["status"], 503, "{out}");
    no_vm_died(&envoy);
}
