//! OpenAI's Realtime API: a WebSocket upgrade on `/v1/realtime` goes through the gateway to the
//! provider (the shipped HCM allows `websocket` upgrades), with only what ai-proxy must change:
//! the provider's key instead of the caller's. The official SDK's `client.realtime` then talks
//! to the provider through Envoy for the whole session.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::{run_sdk_script, Gateway};
use serde_json::Value;

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

/// Settings that rewrite or replay answers must leave an upgrade alone.
const PROXY: &str = r#"{"provider":{"type":"openai","apiTokens":["sk-provider"],
    "reasoningContentMode":"concat","retryOnFailure":{"enabled":true}}}"#;

const MODEL: &str = "gpt-realtime";

/// Runs the SDK's Realtime session through the gateway; checks what it parsed and returns the
/// upgrade request the provider received.
fn realtime_session(gw: &Gateway) -> Value {
    let out = run_sdk_script(
        "openai_realtime.py",
        &[&format!("{}/v1", gw.envoy.url()), MODEL],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", gw.envoy.log(), gw.envoy.access_log()));
    assert_eq!(out["session"]["model"], MODEL, "{out}");
    assert_eq!(out["session"]["type"], "realtime", "{out}");
    assert_eq!(out["updated"]["output_modalities"][0], "text", "{out}");
    assert_eq!(out["response"]["status"], "completed", "{out}");
    assert_eq!(out["response"]["text"], "w0 w1 w2 w3 w4 ", "{out}");
    assert_eq!(out["response"]["usage"]["output_tokens"], 5, "{out}");
    // Every event came through whole and the SDK read it as its typed event.
    let events = out["events"].as_array().unwrap();
    let classes: Vec<&str> = events.iter().filter_map(|e| e["class"].as_str()).collect();
    for class in [
        "SessionCreatedEvent",
        "SessionUpdatedEvent",
        "ResponseCreatedEvent",
        "ResponseTextDeltaEvent",
        "ResponseDoneEvent",
    ] {
        assert!(classes.contains(&class), "no {class} in {out}");
    }

    let sent = gw.mock.requests_to("/v1/realtime").unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let upgrade = sent[0].clone();
    assert_eq!(upgrade["method"], "GET", "{upgrade}");
    assert_eq!(upgrade["query"], format!("model={MODEL}"), "{upgrade}");
    assert_eq!(upgrade["headers"]["upgrade"], "websocket", "{upgrade}");
    // The caller's key stops at the gateway (api_key_auth, then ai-proxy).
    assert!(
        !upgrade.to_string().contains("client-side-key"),
        "{upgrade}"
    );
    assert_eq!(upgrade["headers"]["x-mse-consumer"], "e2e", "{upgrade}");
    upgrade
}

/// The access log line of the upgrade (written when the WebSocket closed).
fn access_log_status(gw: &Gateway) -> Option<u64> {
    for _ in 0..40 {
        let log = gw.envoy.access_log();
        let status = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["path"] == format!("/v1/realtime?model={MODEL}"))
            .and_then(|l| l["status"].as_u64());
        if status.is_some() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

#[test]
fn a_realtime_session_reaches_the_provider_with_the_provider_key() {
    let gw = Gateway::start(MOCK, &Options::plugin("ai-proxy", PROXY)).unwrap();
    let upgrade = realtime_session(&gw);
    assert_eq!(upgrade["path"], "/v1/realtime");
    assert_eq!(upgrade["headers"]["authorization"], "Bearer sk-provider");
    assert_eq!(
        access_log_status(&gw),
        Some(101),
        "{}",
        gw.envoy.access_log()
    );
}

#[test]
fn the_shipped_config_serves_a_realtime_session() {
    // All five plugins in the path, as `make run` ships them.
    let gw = Gateway::start(MOCK, &Options::shipped()).unwrap();
    let upgrade = realtime_session(&gw);
    assert_eq!(upgrade["path"], "/v1/realtime");
    assert_eq!(upgrade["headers"]["authorization"], "Bearer sk-local-trial");
    assert_eq!(
        access_log_status(&gw),
        Some(101),
        "{}",
        gw.envoy.access_log()
    );
    // Nothing but the upgrade reached the provider.
    assert_eq!(gw.mock.requests().unwrap().len(), 1);
}
