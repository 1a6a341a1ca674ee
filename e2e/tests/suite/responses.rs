//! The OpenAI Responses API (`POST /v1/responses`) end to end: the official SDK through ai-proxy
//! (native pass-through with the model mapping, answers untouched), ai-statistics (exact usage
//! from the JSON body and from `response.completed`) and ai-token-ratelimit (reservation,
//! charge of the real usage, budget headers).

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common;
use common::{away_from_minute_end, o200k};
use e2e::envoy::{Options, Sample};
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};
use std::time::Duration;

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

const PROXY: &str = r#"{"provider":{"type":"openai","apiTokens":["sk-provider"],"modelMapping":{"*":"gpt-5-mini"}}}"#;
const RATELIMIT: &str = r#"{"rule_name":"r","global_threshold":{"token_per_minute":100000}}"#;
/// What the client asks for; the mapping sends every model as `gpt-5-mini`.
const CLIENT_MODEL: &str = "gpt-4o-mini";
const MAPPED: &str = "gpt-5-mini";
const LIMIT: u64 = 100_000;

fn options() -> Options {
    Options::plugin("ai-proxy", PROXY)
        .with_plugin("ai-statistics", "{}")
        .with_plugin("ai-token-ratelimit", RATELIMIT)
}

/// `(input, output, total)` of a usage object.
fn counts(usage: &Value) -> (u64, u64, u64) {
    let n = |k: &str| {
        usage[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {usage}"))
    };
    (n("input_tokens"), n("output_tokens"), n("total_tokens"))
}

fn higress(samples: &[Sample], metric: &str) -> Option<f64> {
    let labels = [
        ("ai_route", "llm"),
        ("ai_cluster", "llm_upstream"),
        ("ai_model", MAPPED),
        ("ai_consumer", "e2e"),
    ];
    samples
        .iter()
        .find(|s| {
            s.name == format!("route_upstream_model_consumer_metric_{metric}")
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[test]
fn the_sdk_is_answered_natively_metered_and_charged() {
    let gw = Gateway::start(MOCK, &options()).unwrap();
    away_from_minute_end();
    let out = run_sdk_script(
        "openai_responses.py",
        &[&format!("{}/v1", gw.envoy.url()), CLIENT_MODEL],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", gw.envoy.log(), gw.envoy.access_log()));

    // The answers, as the SDK parsed them: the mapped model answered, usage as the mock counts
    // words ("Be brief." + "Say hello" = 4 in; "mock reply from gpt-5-mini" = 4 out).
    let text = &out["text"];
    assert_eq!(text["content"], "mock reply from gpt-5-mini", "{out}");
    assert_eq!(text["status"], "completed");
    assert_eq!(text["model"], MAPPED);
    assert_eq!(counts(&text["usage"]), (4, 4, 8), "{out}");
    assert_eq!(text["usage"]["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        text["usage"]["output_tokens_details"]["reasoning_tokens"],
        0
    );
    let stream = &out["stream"];
    assert_eq!(stream["content"], "w0 w1 w2 w3 w4 ", "{out}");
    assert_eq!(stream["completed_text"], "w0 w1 w2 w3 w4 ");
    assert_eq!(counts(&stream["usage"]), (1, 5, 6), "{out}");
    let events: Vec<&str> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.first(), Some(&"response.created"), "{events:?}");
    assert_eq!(events.last(), Some(&"response.completed"), "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == "response.output_text.delta")
            .count(),
        5
    );
    let tool = &out["tool"];
    assert_eq!(tool["name"], "get_weather", "{out}");
    assert_eq!(tool["arguments"], json!({"location": "Paris"}));
    assert_eq!(tool["call_id"], "call_mock_1");
    assert_eq!(counts(&tool["usage"]), (3, 5, 8), "{out}");

    // What the provider got: its key, the mapped model, the rest of the body as sent, and no
    // `stream_options` (the Responses API takes none).
    let sent = gw.mock.requests().unwrap();
    assert_eq!(sent.len(), 3, "{sent:?}");
    for r in &sent {
        assert_eq!(r["method"], "POST", "{r}");
        assert_eq!(r["path"], "/v1/responses", "{r}");
        assert_eq!(r["headers"]["authorization"], "Bearer sk-provider", "{r}");
        assert_eq!(r["body_json"]["model"], MAPPED, "{r}");
        assert!(r["body_json"].get("stream_options").is_none(), "{r}");
        assert!(!r.to_string().contains("client-side-key"), "{r}");
    }
    assert_eq!(sent[0]["body_json"]["instructions"], "Be brief.");
    assert_eq!(sent[0]["body_json"]["input"], "Say hello");
    assert_eq!(sent[1]["body_json"]["stream"], true);
    assert_eq!(sent[1]["body_json"]["input"], "Count");
    assert_eq!(sent[2]["body_json"]["tools"][0]["name"], "get_weather");

    // ai-statistics counted the reported usage: 4 + 1 + 3 in, 4 + 5 + 5 out.
    let mut samples = Vec::new();
    for _ in 0..40 {
        samples = gw.envoy.prometheus().unwrap();
        if higress(&samples, "output_token") == Some(14.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let metric = |name: &str| {
        higress(&samples, name).unwrap_or_else(|| panic!("no {name} for {MAPPED}: {samples:?}"))
    };
    assert_eq!(metric("input_token"), 8.0);
    assert_eq!(metric("output_token"), 14.0);
    assert_eq!(metric("total_token"), 22.0);
    assert_eq!(metric("llm_stream_duration_count"), 1.0);
    // Reported, never estimated.
    let otel: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == "gen_ai_client_inference_usage_input_tokens"
                && s.labels.get("consumer").map(String::as_str) == Some("e2e")
        })
        .collect();
    assert!(!otel.is_empty(), "{samples:?}");
    assert!(
        otel.iter()
            .all(|s| s.labels.get("usage_source").map(String::as_str) == Some("reported")),
        "{otel:?}"
    );
    assert_eq!(otel.iter().map(|s| s.value).sum::<f64>(), 8.0, "{otel:?}");

    // And logged each request with its exact usage.
    let logs = gw.envoy.ai_logs(3);
    assert_eq!(logs.len(), 3, "{}", gw.envoy.access_log());
    let mut seen: Vec<(String, u64, u64, u64)> = logs
        .iter()
        .map(|l| {
            assert_eq!(l["usage_estimated"], false, "{l}");
            assert_eq!(l["model"], MAPPED, "{l}");
            assert_eq!(l["request_model"], CLIENT_MODEL, "{l}");
            assert_eq!(l["consumer"], "e2e", "{l}");
            assert_eq!(l["status"], 200, "{l}");
            let n = |k: &str| l[k].as_u64().unwrap_or_else(|| panic!("no {k} in {l}"));
            (
                l["response_type"].as_str().unwrap_or_default().to_owned(),
                n("input_token"),
                n("output_token"),
                n("total_token"),
            )
        })
        .collect();
    seen.sort();
    let want = |kind: &str, i, o| (kind.to_owned(), i, o, i + o);
    assert_eq!(
        seen,
        [
            want("normal", 3, 5),
            want("normal", 4, 4),
            want("stream", 1, 5)
        ]
    );

    // ai-token-ratelimit charged the real usage of those three (22 tokens) and reports the
    // budget left after reserving the next prompt.
    let body = json!({"model": CLIENT_MODEL, "instructions": "Be brief.", "input": "hi"});
    let resp = gw.post("/v1/responses", &[], &body.to_string()).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-ratelimit-limit-tokens"), Some("100000"));
    let reserved = o200k("Be brief.\nhi");
    assert_eq!(
        resp.header("x-ratelimit-remaining-tokens"),
        Some((LIMIT - 22 - reserved).to_string().as_str()),
        "reserved {reserved}"
    );
    let reset = resp.header("x-ratelimit-reset-tokens").unwrap();
    let secs: u64 = reset.strip_suffix('s').unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "{reset}");
    // The answer is the provider's Response object, untouched.
    let v = resp.json().unwrap();
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["model"], MAPPED);
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "mock reply from gpt-5-mini"
    );
    assert_eq!(counts(&v["usage"]), (3, 4, 7));

    // A stream: charged 7 more before it; its events reach the client as the provider sent
    // them (named events, no `[DONE]`).
    let body = json!({"model": CLIENT_MODEL, "input": "Count", "stream": true});
    let resp = gw.post("/v1/responses", &[], &body.to_string()).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("x-ratelimit-remaining-tokens"),
        Some((LIMIT - 22 - 7 - o200k("Count")).to_string().as_str())
    );
    assert!(resp
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    assert!(
        resp.body.starts_with("event: response.created\ndata: {"),
        "{}",
        resp.body
    );
    assert!(resp.body.contains("event: response.completed\n"));
    assert!(!resp.body.contains("[DONE]"), "{}", resp.body);
    let direct = gw
        .client
        .post(&format!("{}/v1/responses", gw.mock.url()), &[], &{
            let mut b = body.clone();
            b["model"] = json!(MAPPED);
            b.to_string()
        })
        .unwrap();
    // Same events as the mock sends directly, apart from the ids and timestamps.
    let shape = |text: &str| -> Vec<Value> {
        text.split("\n\n")
            .filter_map(|e| e.split_once("\ndata: "))
            .map(|(name, data)| {
                let mut v: Value = serde_json::from_str(data).unwrap();
                for ptr in [
                    "/response/id",
                    "/response/created_at",
                    "/response/completed_at",
                ] {
                    if let Some(x) = v.pointer_mut(ptr) {
                        *x = Value::Null;
                    }
                }
                for ptr in ["/item_id", "/item/id"] {
                    if let Some(x) = v.pointer_mut(ptr) {
                        *x = Value::Null;
                    }
                }
                if let Some(output) = v
                    .pointer_mut("/response/output")
                    .and_then(Value::as_array_mut)
                {
                    for item in output {
                        item["id"] = Value::Null;
                    }
                }
                json!([name, v])
            })
            .collect()
    };
    assert_eq!(shape(&resp.body), shape(&direct.body));
}

/// The official SDK's Responses API against providers that do not serve it: the request goes
/// out as each provider's own chat API, and every answer (JSON, the typed stream through the
/// SDK's strict `responses.stream` helper, tool calls, a follow-up turn with the call's output)
/// comes back as Responses.
#[test]
fn the_sdk_reaches_providers_without_the_responses_api() {
    let bedrock_model = "anthropic.claude-3-haiku-20240307-v1:0";
    let cases = [
        (
            r#"{"provider":{"type":"claude","apiTokens":["sk-ant"],"modelMapping":{"*":"claude-haiku-4-5"}}}"#.to_string(),
            "claude-haiku-4-5",
            "/v1/messages",
        ),
        (
            r#"{"provider":{"type":"gemini","apiTokens":["g-key"],"modelMapping":{"*":"gemini-2.5-flash"}}}"#.to_string(),
            "gemini-2.5-flash",
            "/v1beta/models/gemini-2.5-flash:generateContent",
        ),
        (
            format!(
                r#"{{"provider":{{"type":"bedrock","awsAccessKey":"AKIDMOCKBEDROCK",
                "awsSecretKey":"mock-bedrock-secret","awsRegion":"us-east-1",
                "modelMapping":{{"*":"{bedrock_model}"}}}}}}"#
            ),
            bedrock_model,
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        ),
        (
            r#"{"provider":{"type":"deepseek","apiTokens":["sk-ds"],"modelMapping":{"*":"deepseek-chat"}}}"#.to_string(),
            "deepseek-chat",
            "/v1/chat/completions",
        ),
    ];
    for (config, model, first_path) in cases {
        let gw = Gateway::start(
            MOCK,
            &Options::plugin("ai-proxy", &config).with_plugin("ai-statistics", "{}"),
        )
        .unwrap();
        let out = run_sdk_script(
            "openai_responses.py",
            &[&format!("{}/v1", gw.envoy.url()), CLIENT_MODEL, "full"],
        )
        .unwrap_or_else(|e| panic!("{model}: {e}\n{}", gw.envoy.log()));
        let reply = format!("mock reply from {model}");
        let text = &out["text"];
        assert_eq!(text["content"], reply, "{model}: {out}");
        assert_eq!(text["status"], "completed", "{model}");
        assert_eq!(text["model"], model);
        assert_eq!(counts(&text["usage"]), (4, 4, 8), "{model}: {out}");
        // The response repeats the request's parameters, as OpenAI's does.
        assert_eq!(text["instructions"], "Be brief.", "{model}: {out}");

        let stream = &out["stream"];
        assert_eq!(stream["content"], "w0 w1 w2 w3 w4 ", "{model}: {out}");
        assert_eq!(stream["completed_text"], "w0 w1 w2 w3 w4 ", "{model}");
        assert_eq!(counts(&stream["usage"]), (1, 5, 6), "{model}: {out}");
        let events: Vec<&str> = stream["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(events.first(), Some(&"response.created"), "{events:?}");
        assert_eq!(events.last(), Some(&"response.completed"), "{events:?}");

        let helper = &out["helper"];
        assert_eq!(helper["deltas"], "w0 w1 w2 w3 w4 ", "{model}: {out}");
        assert_eq!(helper["text"], "w0 w1 w2 w3 w4 ", "{model}");
        assert_eq!(helper["status"], "completed");

        let paris = json!({"location": "Paris"});
        assert_eq!(out["tool"]["name"], "get_weather", "{model}: {out}");
        assert_eq!(out["tool"]["arguments"], paris, "{model}");
        assert_eq!(out["tool_stream"]["name"], "get_weather", "{model}: {out}");
        assert_eq!(out["tool_stream"]["arguments"], paris, "{model}");
        assert_eq!(out["tool_stream"]["deltas"], paris, "{model}");
        assert_eq!(out["tool"]["tools"], json!(["get_weather"]), "{model}");
        assert_eq!(
            out["tool_stream"]["tools"],
            json!(["get_weather"]),
            "{model}"
        );
        assert_eq!(out["followup"]["content"], reply, "{model}: {out}");
        assert_eq!(out["followup"]["status"], "completed");

        // Each request went out in the provider's own API, never as `/v1/responses`.
        let sent = gw.mock.requests().unwrap();
        assert_eq!(sent.len(), 6, "{model}: {sent:?}");
        assert_eq!(sent[0]["path"], first_path, "{model}");
        assert!(
            sent.iter().all(|r| r["path"] != "/v1/responses"),
            "{sent:?}"
        );
        // The follow-up carried the call and its output back as the provider's own turns.
        let followup = sent[5]["body_json"].to_string();
        assert!(followup.contains("sunny"), "{model}: {followup}");

        // ai-statistics counted the stream's usage as the provider reported it.
        let logs = gw.envoy.ai_logs(6);
        assert!(
            logs.iter()
                .any(|l| l["response_type"] == "stream" && l["output_token"] == 5),
            "{model}: {logs:?}"
        );
    }
}
