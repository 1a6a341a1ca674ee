//! Consumers come from a trusted source: the shipped config drops any consumer header the client
//! sent, and Envoy's api_key_auth names the consumer from the caller's key (401 without one).

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::Gateway;
use serde_json::json;

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

const PROXY: &str = r#"{"provider":{"type":"openai","apiTokens":["sk-provider"]}}"#;

fn chat() -> String {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

#[test]
fn the_consumer_is_named_by_the_key_never_by_the_client() {
    let options = Options::plugin("ai-proxy", PROXY).with_plugin(
        "ai-statistics",
        r#"{"attributes": [{"key": "consumer_seen", "value_source": "request_header", "value": "x-mse-consumer", "apply_to_log": true}]}"#,
    );
    let gw = Gateway::start(MOCK, &options).unwrap();

    // ann's key, and a forged consumer header: the plugins and the provider see ann.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[
                ("authorization", "Bearer sk-demo-ann"),
                ("x-mse-consumer", "admin"),
            ],
            &chat(),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let sent = gw.last_upstream_request().unwrap();
    assert_eq!(sent["headers"]["x-mse-consumer"], "ann", "{sent}");
    // The caller's key is stripped; the provider gets the provider key.
    assert_eq!(sent["headers"]["authorization"], "Bearer sk-provider");
    assert!(!sent.to_string().contains("sk-demo-ann"));

    // Anthropic-style key header.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-api-key", "sk-demo-bob"), ("x-mse-consumer", "admin")],
            &chat(),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let sent = gw.last_upstream_request().unwrap();
    assert_eq!(sent["headers"]["x-mse-consumer"], "bob");
    assert!(sent["headers"].get("x-api-key").is_none(), "{sent}");

    // The access log's consumer is the authenticated one.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = gw.envoy.access_log();
    assert!(log.contains(r#"\"consumer_seen\":\"ann\""#), "{log}");
    assert!(!log.contains("admin"), "{log}");
}

#[test]
fn an_unknown_or_missing_key_gets_401_from_envoy() {
    let gw = Gateway::start(MOCK, &Options::plugin("ai-proxy", PROXY)).unwrap();
    for headers in [
        vec![("authorization", "Bearer sk-nobody")],
        vec![("x-no-key", "1"), ("x-mse-consumer", "ann")],
    ] {
        let resp = gw.post("/v1/chat/completions", &headers, &chat()).unwrap();
        assert_eq!(resp.status, 401, "{headers:?}: {}", resp.body);
        let v = resp.json().unwrap();
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
    assert!(gw.mock.requests().unwrap().is_empty());
}
