//! ai-statistics through a real Envoy: exact and estimated usage, both metric naming sets,
//! access-log fields.

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common;
use common::o200k;
use e2e::envoy::{Options, Sample};
use e2e::Gateway;
use serde_json::{json, Value};
use std::time::Duration;

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

const STATS: &str = r#"{
  "attributes": [
    {"key": "question", "value_source": "request_body", "value": "messages.-1.content", "apply_to_log": true},
    {"key": "answer", "value_source": "response_streaming_body", "value": "choices.0.delta.content", "rule": "append", "apply_to_log": true},
    {"key": "reply", "value_source": "response_body", "value": "choices.0.message.content", "apply_to_log": true},
    {"key": "team", "value_source": "request_header", "value": "x-team", "default_value": "none", "apply_to_log": true},
    {"key": "env", "value_source": "fixed_value", "value": "e2e", "apply_to_log": true}
  ]
}"#;

const PROXY: &str = r#"{"provider":{"type":"openai","apiTokens":["k"]},
  "_rules_":[{"_match_domain_":["claude.test"],"provider":{"type":"claude","apiTokens":["a"]}}]}"#;

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels)
        .map(|s| s.value)
        .unwrap_or_else(|| panic!("no {name} with {labels:?}"))
}

#[test]
fn mixed_traffic_is_counted_exactly_or_estimated() {
    let options = Options::plugin("ai-statistics", STATS).with_plugin("ai-proxy", PROXY);
    let gw = Gateway::start(MOCK, &options).unwrap();
    // ann's key: Envoy's api_key_auth names the consumer.
    let user = [("authorization", "Bearer sk-demo-ann"), ("x-team", "blue")];
    let chat = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there friend"}]}).to_string()
    };
    let stream_url = format!("{}/v1/chat/completions", gw.envoy.url());
    let read_stream = |headers: &[(&str, &str)], body: &str| {
        let (status, reads) = gw.client.post_stream(&stream_url, headers, body).unwrap();
        assert_eq!(status, 200);
        reads.into_iter().flat_map(|(_, b)| b).count()
    };

    // 1. OpenAI JSON with usage; 2. OpenAI stream (usage requested by ai-proxy).
    assert_eq!(
        gw.post("/v1/chat/completions", &user, &chat("m-json", false))
            .unwrap()
            .status,
        200
    );
    read_stream(&user, &chat("m-stream", true));
    // 3./4. The same without usage: estimated.
    let no_usage = [user[0], user[1], ("x-mock-usage", "none")];
    assert_eq!(
        gw.post(
            "/v1/chat/completions",
            &no_usage,
            &chat("m-est-json", false)
        )
        .unwrap()
        .status,
        200
    );
    read_stream(&no_usage, &chat("m-est-stream", true));
    // 5./6. Anthropic Messages, JSON and stream.
    let claude = [user[0], user[1], ("host", "claude.test")];
    let messages = |model: &str, stream: bool| {
        json!({"model": model, "max_tokens": 50, "stream": stream,
               "messages": [{"role": "user", "content": "hello there friend"}]})
        .to_string()
    };
    assert_eq!(
        gw.post("/v1/messages", &claude, &messages("c-json", false))
            .unwrap()
            .status,
        200
    );
    let resp = gw
        .post("/v1/messages", &claude, &messages("c-stream", true))
        .unwrap();
    assert_eq!(resp.status, 200);
    // Not an LLM call: not counted.
    gw.client
        .get(&format!("{}/healthz", gw.envoy.url()), &[])
        .unwrap();

    let mut samples = Vec::new();
    for _ in 0..40 {
        samples = gw.envoy.prometheus().unwrap();
        if find(
            &samples,
            "route_upstream_model_consumer_metric_input_token",
            &[("ai_model", "c-stream")],
        )
        .is_some()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let higress = |metric: &str, model: &str| {
        value(
            &samples,
            &format!("route_upstream_model_consumer_metric_{metric}"),
            &[
                ("ai_route", "llm"),
                ("ai_cluster", "llm_upstream"),
                ("ai_model", model),
                ("ai_consumer", "ann"),
            ],
        )
    };
    // Exact: the mock counts words (prompt "hello there friend" = 3).
    assert_eq!(higress("input_token", "m-json"), 3.0);
    assert_eq!(higress("output_token", "m-json"), 4.0); // "mock reply from m-json"
    assert_eq!(higress("total_token", "m-json"), 7.0);
    assert_eq!(higress("output_token", "m-stream"), 5.0); // w0 .. w4
    assert_eq!(higress("llm_stream_duration_count", "m-stream"), 1.0);
    assert_eq!(higress("llm_duration_count", "m-json"), 1.0);
    assert!(find(
        &samples,
        "route_upstream_model_consumer_metric_llm_stream_duration_count",
        &[("ai_model", "m-json")]
    )
    .is_none());
    assert_eq!(higress("input_token", "c-json"), 3.0);
    assert_eq!(higress("output_token", "c-json"), 4.0);
    assert_eq!(higress("input_token", "c-stream"), 3.0);
    assert_eq!(higress("output_token", "c-stream"), 5.0);
    // Estimated with tiktoken (o200k for unknown models) on the same text.
    assert_eq!(
        higress("input_token", "m-est-json"),
        o200k("hello there friend") as f64
    );
    assert_eq!(
        higress("output_token", "m-est-json"),
        o200k("mock reply from m-est-json") as f64
    );
    assert_eq!(
        higress("input_token", "m-est-stream"),
        o200k("hello there friend") as f64
    );
    assert_eq!(
        higress("output_token", "m-est-stream"),
        o200k("w0 w1 w2 w3 w4 ") as f64
    );

    // OpenTelemetry names, with provider and the usage source.
    let otel = |metric: &str, model: &str, provider: &str, source: &str| {
        value(
            &samples,
            &format!("gen_ai_client_inference_usage_{metric}"),
            &[
                ("gen_ai_request_model", model),
                ("gen_ai_provider_name", provider),
                ("usage_source", source),
                ("route", "llm"),
                ("consumer", "ann"),
                ("gen_ai_operation_name", "chat"),
            ],
        )
    };
    assert_eq!(otel("input_tokens", "m-json", "openai", "reported"), 3.0);
    assert_eq!(otel("output_tokens", "c-stream", "claude", "reported"), 5.0);
    assert_eq!(
        otel("output_tokens", "m-est-stream", "openai", "estimated"),
        o200k("w0 w1 w2 w3 w4 ") as f64
    );
    // Histograms reach /stats/prometheus at Envoy's next stats flush (every 5 s by default).
    let hist = |samples: &[Sample]| {
        find(
            samples,
            "gen_ai_client_token_usage_count",
            &[
                ("gen_ai_token_type", "output"),
                ("gen_ai_request_model", "m-json"),
            ],
        )
        .map(|s| s.value)
    };
    for _ in 0..80 {
        if hist(&samples) == Some(1.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        samples = gw.envoy.prometheus().unwrap();
    }
    assert_eq!(hist(&samples), Some(1.0), "token usage histogram");
    let sum = find(
        &samples,
        "gen_ai_client_token_usage_sum",
        &[
            ("gen_ai_token_type", "output"),
            ("gen_ai_request_model", "m-json"),
        ],
    );
    // Envoy's histograms are approximate (log-linear buckets): the sum is within a few percent.
    assert!(sum.is_some_and(|s| (s.value - 4.0).abs() < 0.2), "{sum:?}");
    assert!(find(
        &samples,
        "gen_ai_server_time_to_first_token_count",
        &[("gen_ai_request_model", "m-stream")]
    )
    .is_some());
    assert!(find(
        &samples,
        "gen_ai_server_request_duration_count",
        &[("gen_ai_request_model", "c-json")]
    )
    .is_some());

    // Access log: one JSON line per request with the ai_log fields and attributes.
    let logs = gw.envoy.ai_logs(6);
    assert_eq!(logs.len(), 6, "{}", gw.envoy.access_log());
    let by_model = |m: &str| {
        logs.iter()
            .find(|l| l["request_model"] == m)
            .unwrap()
            .clone()
    };
    let est = by_model("m-est-stream");
    assert_eq!(est["usage_estimated"], true);
    assert_eq!(est["response_type"], "stream");
    assert_eq!(est["answer"], "w0 w1 w2 w3 w4 ");
    assert_eq!(est["question"], "hello there friend");
    assert_eq!(est["team"], "blue");
    assert_eq!(est["env"], "e2e");
    let exact = by_model("m-json");
    assert_eq!(exact["usage_estimated"], false);
    assert_eq!(exact["input_token"], 3);
    assert_eq!(exact["reply"], "mock reply from m-json");
    assert_eq!(exact["provider"], "openai");
    assert_eq!(exact["consumer"], "ann");
    assert_eq!(exact["chat_round"], 1);
    assert!(exact["llm_service_duration"].as_u64().is_some());
    assert!(by_model("m-stream")["llm_first_token_duration"]
        .as_u64()
        .is_some());
}

/// An observability plugin never blocks or alters traffic: bodies it cannot read go through
/// untouched and are counted; embeddings are their own operation; model names keep their dots.
#[test]
fn observes_without_touching_and_labels_what_it_saw() {
    let gw = Gateway::start(MOCK, &Options::plugin("ai-statistics", "{}")).unwrap();
    for body in [r#"{"model":"m"}"#, "{oops", "[]"] {
        gw.mock.clear().unwrap();
        let resp = gw.post("/v1/chat/completions", &[], body).unwrap();
        assert_ne!(resp.status, 500, "{}", resp.body);
        let sent = gw.last_upstream_request().unwrap();
        assert_eq!(sent["body"], body, "{sent}");
    }
    let chat = json!({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .post("/v1/chat/completions", &[], &chat.to_string())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let embed = json!({"model": "text-embedding-3-small", "input": "hello there"});
    let resp = gw.post("/v1/embeddings", &[], &embed.to_string()).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);

    let mut samples = Vec::new();
    for _ in 0..40 {
        samples = gw.envoy.prometheus().unwrap();
        let embedded = find(
            &samples,
            "gen_ai_client_inference_usage_input_tokens",
            &[("gen_ai_operation_name", "embeddings")],
        );
        if embedded.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        value(
            &samples,
            "ai_statistics_unparsed_request",
            &[("route", "llm")]
        ),
        3.0
    );
    assert!(find(
        &samples,
        "gen_ai_client_inference_usage_input_tokens",
        &[
            ("gen_ai_operation_name", "embeddings"),
            ("gen_ai_request_model", "text-embedding-3-small")
        ],
    )
    .is_some());
    assert!(find(
        &samples,
        "gen_ai_client_inference_usage_input_tokens",
        &[
            ("gen_ai_operation_name", "chat"),
            ("gen_ai_request_model", "gpt-3.5-turbo")
        ],
    )
    .is_some());
    assert_eq!(
        value(
            &samples,
            "route_upstream_model_consumer_metric_input_token",
            &[("ai_model", "gpt-3.5-turbo"), ("ai_consumer", "e2e")]
        ),
        1.0
    );
}

/// Higress's built-in attribute keys (`key` alone) read the client's protocol: OpenAI chat and
/// Anthropic Messages, streamed or not; streamed tool calls are joined by index.
#[test]
fn higress_built_in_attributes() {
    let stats = r#"{"attributes": [
        {"key": "question", "apply_to_log": true},
        {"key": "system", "apply_to_log": true},
        {"key": "answer", "apply_to_log": true},
        {"key": "tool_calls", "apply_to_log": true}
    ]}"#;
    let proxy = r#"{"provider":{"type":"openai","apiTokens":["k"]}}"#;
    let options = Options::plugin("ai-statistics", stats).with_plugin("ai-proxy", proxy);
    let gw = Gateway::start(MOCK, &options).unwrap();
    let base = format!("{}/v1", gw.envoy.url());
    e2e::run_sdk_script("openai_client.py", &[&base, "gpt-4o"]).unwrap();
    e2e::run_sdk_script("anthropic_client.py", &[&gw.envoy.url(), "claude-x"]).unwrap();
    let logs = gw.envoy.ai_logs(8);
    assert_eq!(logs.len(), 8, "{logs:?}\n{}", gw.envoy.access_log());
    for model in ["gpt-4o", "claude-x"] {
        let text = logs
            .iter()
            .find(|l| l["request_model"] == model && l["system"] == "Be brief.")
            .unwrap_or_else(|| panic!("no {model} text answer in {logs:?}"));
        assert_eq!(text["question"], "Say hello");
        assert_eq!(text["answer"], format!("mock reply from {model}"));
        let streamed = logs
            .iter()
            .find(|l| l["request_model"] == model && l["question"] == "Count")
            .unwrap_or_else(|| panic!("no {model} stream in {logs:?}"));
        assert_eq!(streamed["answer"], "w0 w1 w2 w3 w4 ", "{streamed}");
    }
    // OpenAI: the tool call of the JSON answer, and the streamed one joined from its pieces.
    let calls: Vec<Value> = logs
        .iter()
        .filter(|l| l["request_model"] == "gpt-4o")
        .filter_map(|l| l["tool_calls"].as_str())
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert!(calls.len() >= 2, "{logs:?}");
    for call in &calls {
        let f = &call[0]["function"];
        assert_eq!(f["name"], "get_weather", "{call}");
        let args: Value = serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"location": "Paris"}));
    }
}
