//! ai-proxy `fallback`: a failed request answered by the next provider, translated for it and
//! back, through a real Envoy.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::Gateway;
use serde_json::json;

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

const CONFIG: &str = r#"{
  "providers": [
    {"id": "primary", "type": "openai", "apiTokens": ["sk-primary"]},
    {"id": "backup", "type": "claude", "apiTokens": ["sk-ant-backup"],
     "modelMapping": {"*": "claude-backup"}}
  ],
  "activeProviderId": "primary",
  "fallback": {"providerIds": ["backup"]}
}"#;

fn chat(stream: bool) -> String {
    json!({"model": "gpt-4o", "stream": stream,
        "messages": [{"role": "user", "content": "hello there"}]})
    .to_string()
}

#[test]
fn a_failing_provider_is_answered_by_the_fallback_in_the_clients_format() {
    let gw = Gateway::start(MOCK, &Options::plugin("ai-proxy", CONFIG)).unwrap();

    // Healthy primary: no fallback.
    let resp = gw.post("/v1/chat/completions", &[], &chat(false)).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-ai-gateway-fallback"), None);
    assert_eq!(gw.mock.requests().unwrap().len(), 1);

    // Primary answers 503: the backup (Anthropic) answers, translated to OpenAI's shape.
    gw.mock.clear().unwrap();
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-status", "503")],
            &chat(false),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-ai-gateway-fallback"), Some("backup"));
    let v = resp.json().unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply from claude-backup"
    );
    let sent = gw.mock.requests().unwrap();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["path"], "/v1/chat/completions");
    assert_eq!(sent[0]["headers"]["authorization"], "Bearer sk-primary");
    assert_eq!(sent[1]["path"], "/v1/messages");
    assert_eq!(sent[1]["headers"]["x-api-key"], "sk-ant-backup");
    assert_eq!(sent[1]["headers"]["host"], "api.anthropic.com");
    assert_eq!(sent[1]["body_json"]["model"], "claude-backup");
    assert!(sent[1]["headers"].get("authorization").is_none());

    // A stream that fails before its first byte: the backup's stream, as OpenAI SSE.
    gw.mock.clear().unwrap();
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-status", "429")],
            &chat(true),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let mut text = String::new();
    let mut usage = None;
    for line in resp.body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if v["usage"].is_object() {
            usage = Some(v["usage"].clone());
        }
    }
    assert!(
        resp.body.trim_end().ends_with("data: [DONE]"),
        "{}",
        resp.body
    );
    assert!(!text.is_empty(), "{}", resp.body);
    assert!(usage.is_some(), "{}", resp.body);
    assert_eq!(
        gw.mock.requests_to("/v1/messages").unwrap()[0]["body_json"]["stream"],
        true
    );

    // A client error is not the provider's failure: no fallback.
    gw.mock.clear().unwrap();
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-status", "400")],
            &chat(false),
        )
        .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(gw.mock.requests().unwrap().len(), 1);

    // Both fail: the client gets the last provider's error, in OpenAI's shape.
    gw.mock.clear().unwrap();
    gw.mock.fail_next(503, 2).unwrap();
    let resp = gw.post("/v1/chat/completions", &[], &chat(false)).unwrap();
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(resp.json().unwrap()["error"]["message"].is_string());
    assert_eq!(gw.mock.requests().unwrap().len(), 2);
    assert!(!gw.envoy.log().contains("sk-ant-backup"));
}
