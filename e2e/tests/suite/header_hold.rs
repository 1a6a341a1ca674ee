//! How ai-proxy sets request headers decided from the body (Gemini's model path, Bedrock's
//! SigV4 signature): on the request itself with `allow_on_headers_stop_iteration` (the shipped
//! form, covered by every other test), through the `ai-proxy-headers` companion after a buffer
//! filter where a host cannot set the flag, and otherwise never: a clear error, no wrong request,
//! no hang.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::{HeaderHold, Options};
use e2e::{run_sdk_script, Gateway};
use serde_json::json;
use std::time::{Duration, Instant};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

const GEMINI: &str = r#"{"provider":{"type":"gemini","apiTokens":["g-key"],"modelMapping":{"*":"gemini-2.5-flash"}}}"#;

fn chat(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]}).to_string()
}

#[test]
fn the_companion_filter_still_applies_them_without_the_flag() {
    let options = Options {
        header_hold: HeaderHold::Companion,
        ..Options::plugin("ai-proxy", GEMINI)
    };
    let gw = Gateway::start(MOCK, &options).unwrap();
    let out = run_sdk_script(
        "openai_client.py",
        &[&format!("{}/v1", gw.envoy.url()), "gpt-4o"],
    )
    .unwrap();
    assert_eq!(out["text"]["content"], "mock reply from gemini-2.5-flash");
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    let paths: Vec<String> = gw
        .mock
        .requests()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert!(paths.len() >= 2, "{paths:?}");
    assert_eq!(paths[0], "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(
        paths[1],
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
}

#[test]
fn without_flag_or_companion_a_clear_error_and_nothing_sent() {
    let options = Options {
        header_hold: HeaderHold::Neither,
        ..Options::plugin("ai-proxy", GEMINI)
    };
    let gw = Gateway::start(MOCK, &options).unwrap();
    // The first requests find out that this Envoy cannot hold headers; the later ones are
    // refused at once. None waits for a timeout, none reaches the provider.
    for round in 0..4 {
        let started = Instant::now();
        let resp = gw
            .post("/v1/chat/completions", &[], &chat("gpt-4o"))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status, 500, "round {round}: {}", resp.body);
        let v = resp.json().unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("allow_on_headers_stop_iteration")
                && message.contains("ai-proxy-headers")
                && message.contains("gemini"),
            "{message}"
        );
        assert_eq!(v["error"]["code"], "gateway_misconfigured");
        assert!(took < Duration::from_secs(2), "round {round} took {took:?}");
    }
    assert!(gw.mock.requests().unwrap().is_empty());
    assert!(gw.envoy.log().contains("allow_on_headers_stop_iteration"));

    // An Anthropic client gets the error in its own shape.
    let body = json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw.post("/v1/messages", &[], &body.to_string()).unwrap();
    assert_eq!(resp.status, 500, "{}", resp.body);
    assert_eq!(resp.json().unwrap()["type"], "error");
    assert!(gw.mock.requests().unwrap().is_empty());
}

#[test]
fn without_the_flag_providers_that_need_no_late_headers_still_work() {
    let options = Options {
        header_hold: HeaderHold::Neither,
        ..Options::plugin(
            "ai-proxy",
            r#"{"provider":{"type":"openai","apiTokens":["sk-1"],"modelMapping":{"*":"gpt-4o-mini"}}}"#,
        )
    };
    let gw = Gateway::start(MOCK, &options).unwrap();
    for round in 0..4 {
        let started = Instant::now();
        let resp = gw
            .post("/v1/chat/completions", &[], &chat("gpt-4o"))
            .unwrap();
        assert_eq!(resp.status, 200, "round {round}: {}", resp.body);
        assert!(started.elapsed() < Duration::from_secs(2));
        let sent = gw.last_upstream_request().unwrap();
        assert_eq!(sent["body_json"]["model"], "gpt-4o-mini", "{sent}");
    }
}
