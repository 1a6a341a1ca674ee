//! The shipped trial config (all six plugins, consumers from api_key_auth) serves the official
//! OpenAI and Anthropic SDKs. The whole suite runs in the one-filter form; this file is what the
//! per-plugin modules and the bundle by root id run to show they still load and serve.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::{run_sdk_script, Gateway};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

#[test]
fn the_shipped_suite_serves_both_sdks() {
    let gw = Gateway::start(MOCK, &Options::shipped()).unwrap();
    let out = run_sdk_script(
        "openai_client.py",
        &[&format!("{}/v1", gw.envoy.url()), "gpt-4o-mini"],
    )
    .unwrap();
    assert_eq!(
        out["text"]["content"], "mock reply from gpt-4o-mini",
        "{out}"
    );
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    assert_eq!(out["tool"]["name"], "get_weather");
    assert_eq!(out["tool_stream"]["name"], "get_weather");

    let out = run_sdk_script("anthropic_client.py", &[&gw.envoy.url(), "gpt-4o-mini"])
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", gw.envoy.log(), gw.envoy.access_log()));
    assert_eq!(
        out["text"]["content"], "mock reply from gpt-4o-mini",
        "{out}"
    );
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    assert_eq!(out["tool"]["name"], "get_weather");

    // ai-cache (on in the shipped config) answered four of the eight: the streamed tool call
    // from the JSON one, and the Anthropic client's text, stream and streamed tool call from the
    // entries of the same consumer, model, system prompt and question.
    let hits = gw
        .envoy
        .ai_logs(8)
        .iter()
        .filter(|l| l["cache_status"] == "hit")
        .count();
    assert_eq!(hits, 4);
    // Every request that went out was decorated, in the provider's shape, named for the SDKs'
    // consumer.
    let sent = gw.mock.requests().unwrap();
    assert_eq!(sent.len(), 4, "{sent:?}");
    for r in &sent {
        assert_eq!(
            r["headers"]["authorization"], "Bearer sk-local-trial",
            "{r}"
        );
        let system = r["body_json"]["messages"][0]["content"]
            .as_str()
            .unwrap_or_default();
        assert!(system.contains("The caller is e2e."), "{r}");
    }
    // ai-statistics counted them for that consumer.
    let samples = gw.envoy.prometheus().unwrap();
    let counted = samples.iter().any(|s| {
        s.name == "route_upstream_model_consumer_metric_input_token"
            && s.labels.get("ai_consumer").map(String::as_str) == Some("e2e")
            && s.value > 0.0
    });
    assert!(counted, "no input tokens counted for consumer e2e");
}
