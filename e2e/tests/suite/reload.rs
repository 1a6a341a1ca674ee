//! Hot config reload through ECDS: in-flight streams finish intact, new requests see the new
//! config, a broken config is rejected and the old one keeps serving.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::Gateway;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const PLUGIN: &str = "ai-prompt-decorator";

fn config(text: &str) -> String {
    json!({"prepend": [{"role": "system", "content": text}]}).to_string()
}

fn first_message(gw: &Gateway) -> String {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}).to_string();
    assert_eq!(
        gw.post("/v1/chat/completions", &[], &body).unwrap().status,
        200
    );
    gw.last_upstream_request().unwrap()["body_json"]["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn config_reload_keeps_streams_and_rejects_bad_pushes() {
    let gw =
        Arc::new(Gateway::start(MOCK, &Options::plugin(PLUGIN, &config("version A"))).unwrap());
    assert_eq!(first_message(&gw), "version A");

    let streams: Vec<_> = (0..50)
        .map(|_| {
            let gw = gw.clone();
            std::thread::spawn(move || {
                let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "go"}]});
                let url = format!("{}/v1/chat/completions", gw.envoy.url());
                let headers = [("x-mock-chunks", "30"), ("x-mock-chunk-delay-ms", "40")];
                let (status, reads) = gw.client.post_stream(&url, &headers, &body.to_string()).unwrap();
                let text = String::from_utf8(reads.into_iter().flat_map(|(_, b)| b).collect()).unwrap();
                (status, text)
            })
        })
        .collect();
    // Push the new config while the streams are in flight.
    std::thread::sleep(Duration::from_millis(400));
    gw.envoy
        .push_plugin_config(PLUGIN, &config("version B"), 2)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while first_message(&gw) != "version B" {
        assert!(
            Instant::now() < deadline,
            "new config not applied:\n{}",
            gw.envoy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let want: String = (0..30)
        .map(|i| format!("\"content\":\"w{i} \""))
        .collect::<Vec<_>>()
        .join("|");
    for handle in streams {
        let (status, text) = handle.join().unwrap();
        assert_eq!(status, 200);
        assert!(
            text.trim_end().ends_with("data: [DONE]"),
            "stream cut short: {text}"
        );
        for piece in want.split('|') {
            assert!(text.contains(piece), "missing {piece}");
        }
    }
    // Streams that started before the push kept the config they started with.
    let started: Vec<_> = gw
        .mock
        .requests()
        .unwrap()
        .into_iter()
        .filter(|r| r["body_json"]["stream"] == true)
        .collect();
    assert_eq!(started.len(), 50);
    assert!(started
        .iter()
        .all(|r| r["body_json"]["messages"][0]["content"] == "version A"));

    // A broken config is rejected, logged with its field, and the old one keeps serving.
    let bad = r#"{"prepend":[{"role":"robot","content":"x"}]}"#;
    gw.envoy.push_plugin_config(PLUGIN, bad, 3).unwrap();
    assert!(
        gw.envoy.wait_for_log(
            &e2e::envoy::config_error(PLUGIN, "prepend[0].role"),
            Duration::from_secs(10)
        ),
        "{}",
        gw.envoy.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        assert_eq!(first_message(&gw), "version B");
    }
}
