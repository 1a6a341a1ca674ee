//! ai-agent through a real Envoy: the gateway answers a chat request itself by running the
//! model-and-tools loop. The model is the mock provider (its `[mock-agent]` behaviour, reached
//! through the Higress-style cluster `outbound|80||llm.svc`), the tool is an operation of an
//! OpenAPI document called on the test REST API (`outbound|8080||weather.svc`); the client is
//! the official `openai` SDK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::envoy::{Envoy, Options};
use e2e::http::Client;
use e2e::mock::Mock;
use e2e::rest::RestApi;
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};
use std::time::Duration;

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const REST: &str = env!("CARGO_BIN_EXE_rest-api");

/// The REST API's weather operation as an OpenAPI 3 document (Higress's `apis[].api`).
const API: &str = r#"openapi: 3.0.1
info: {title: Weather, version: "1.0"}
servers: [{url: "http://weather.example.com"}]
paths:
  /weather:
    get:
      operationId: get_weather
      description: Current weather for a city
      parameters:
        - {name: city, in: query, required: true, description: City name, schema: {type: string}}
        - {name: unit, in: query, schema: {type: string, enum: [c, f]}}
"#;

fn config(max_iterations: u32) -> String {
    config_with(max_iterations, json!({}))
}

/// The config with `extra` keys added.
fn config_with(max_iterations: u32, extra: Value) -> String {
    let mut config = json!({
        "llm": {"apiKey": "llm-secret", "serviceName": "llm.svc", "servicePort": 80,
                "domain": "llm.example.com", "path": "/v1/chat/completions", "model": "qwen-agent",
                "maxIterations": max_iterations, "maxExecutionTime": 20000, "maxTokens": 500},
        "apis": [{"apiProvider": {"serviceName": "weather.svc", "servicePort": 8080,
                                  "domain": "weather.example.com",
                                  "apiKey": {"in": "header", "name": "x-api-key", "value": "rest-secret"}},
                  "api": API}]
    });
    if let (Some(c), Value::Object(extra)) = (config.as_object_mut(), extra) {
        c.extend(extra);
    }
    config.to_string()
}

fn start(max_iterations: u32) -> (Gateway, RestApi) {
    start_with(&config(max_iterations))
}

fn start_with(config: &str) -> (Gateway, RestApi) {
    let rest = RestApi::start(REST).unwrap();
    let mock = Mock::start(MOCK).unwrap();
    let options = Options::plugin("ai-agent", config)
        .with_cluster("outbound|80||llm.svc", mock.port)
        .with_cluster("outbound|8080||weather.svc", rest.port);
    let envoy = Envoy::start_or_reuse(mock.port, &options).unwrap();
    let gw = Gateway {
        envoy,
        mock,
        client: Client::new(Duration::from_secs(30)),
    };
    (gw, rest)
}

fn ask(gw: &Gateway, prompt: &str) -> Value {
    let url = format!("{}/v1", gw.envoy.url());
    run_sdk_script("openai_agent.py", &[&url, "agent-model", prompt])
        .unwrap_or_else(|e| panic!("{e}\nEnvoy log:\n{}", gw.envoy.log()))
}

/// What the REST API answers for a city (its rule, `e2e/src/bin/rest-api.rs`).
fn weather(city: &str) -> String {
    let t = i64::from(city.bytes().map(u32::from).sum::<u32>() % 30) - 5;
    json!({"city": city, "temp": t, "unit": "C", "conditions": "sunny"}).to_string()
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[test]
fn the_gateway_runs_the_tool_and_the_sdk_gets_the_models_final_answer() {
    let (gw, rest) = start(5);
    let out = ask(
        &gw,
        r#"[mock-agent] How is the weather? mock-args={"city": "Paris"}"#,
    );
    let expected = format!("The tool said: {}", weather("Paris"));
    for mode in ["json", "stream"] {
        let a = &out[mode];
        assert_eq!(a["content"], expected.as_str(), "{mode}: {out}");
        assert_eq!(a["finish"], "stop", "{mode}");
        // Usage summed over both model calls: 5 tokens for the tool call, then the answer.
        let usage = &a["usage"];
        assert_eq!(
            usage["completion_tokens"].as_u64(),
            Some(5 + words(&expected)),
            "{mode}: {usage}"
        );
        assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(usage["prompt_tokens"].as_u64().unwrap() + 5 + words(&expected))
        );
    }
    assert_eq!(out["json"]["model"], "agent-model");
    assert!(out["stream"]["chunks"].as_u64().unwrap() >= 3);

    // The REST API was called once per question, with the configured credential only.
    let seen = rest.requests().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for r in &seen {
        assert_eq!(r["method"], "GET");
        assert_eq!(r["path"], "/weather");
        assert_eq!(r["query"], "city=Paris");
        assert_eq!(r["headers"]["x-api-key"], "rest-secret");
        assert!(r["headers"].get("authorization").is_none(), "{r}");
    }

    // The model saw two calls per question: the tools, then the tool result fed back. The
    // client's own request never reached the upstream (every call is the agent's).
    let calls = gw.mock.requests_to("/v1/chat/completions").unwrap();
    assert_eq!(calls.len(), 4, "{calls:?}");
    for c in &calls {
        let body = &c["body_json"];
        assert_eq!(body["model"], "qwen-agent", "{c}");
        assert_eq!(body["stream"], false);
        assert_eq!(body["max_tokens"], 500);
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["required"],
            json!(["city"])
        );
        assert_eq!(c["headers"]["authorization"], "Bearer llm-secret");
        assert_eq!(c["headers"]["host"], "llm.example.com");
    }
    let second = &calls[1]["body_json"]["messages"];
    assert_eq!(
        second[1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(second[2]["role"], "tool");
    assert_eq!(second[2]["tool_call_id"], "call_mock_1");
    assert_eq!(second[2]["content"], weather("Paris"));
}

#[test]
fn a_model_that_never_stops_asking_is_stopped_at_max_iterations() {
    let (gw, rest) = start(3);
    let out = ask(
        &gw,
        r#"[mock-agent-loop] Weather forever mock-args={"city": "Oslo"}"#,
    );
    for mode in ["json", "stream"] {
        let a = &out[mode];
        assert_eq!(a["finish"], "length", "{mode}: {out}");
        let text = a["content"].as_str().unwrap();
        assert!(
            text.contains("stopped after 3 model calls (llm.maxIterations)"),
            "{text}"
        );
        assert!(text.contains("get_weather"), "{text}");
        // Three model calls, each a 5-token tool call.
        assert_eq!(a["usage"]["completion_tokens"], 15, "{mode}");
    }
    // Per question: 3 model calls, the last one's tool call not run.
    assert_eq!(
        gw.mock.requests_to("/v1/chat/completions").unwrap().len(),
        6
    );
    assert_eq!(rest.requests().unwrap().len(), 4);
}

#[test]
fn a_failing_api_is_fed_back_as_an_error_and_a_failing_model_is_an_openai_error() {
    let (gw, rest) = start(5);
    rest.fail_next(503, 1).unwrap();
    let out = ask(&gw, r#"[mock-agent] Weather? mock-args={"city": "Rome"}"#);
    // First question: the REST API failed; the model got the error as the tool result and
    // still answered.
    let text = out["json"]["content"].as_str().unwrap();
    assert!(
        text.starts_with("The tool said: error: call failed, status: 503"),
        "{out}"
    );
    assert!(text.contains("failing on demand"), "{text}");
    assert_eq!(out["json"]["finish"], "stop");
    // Second question: the API is back.
    assert_eq!(
        out["stream"]["content"],
        format!("The tool said: {}", weather("Rome"))
    );
    assert_eq!(rest.requests().unwrap().len(), 2);

    // The model itself failing: an OpenAI error the SDK raises, not a hang.
    gw.mock.clear().unwrap();
    gw.mock.fail_next(500, 2).unwrap();
    let out = ask(&gw, "[mock-agent] Weather?");
    for mode in ["json", "stream"] {
        let e = &out[mode]["error"];
        assert_eq!(e["status"], 500, "{mode}: {out}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("agent's model answered 500"),
            "{out}"
        );
    }
}

#[test]
fn requests_without_the_agent_config_or_with_client_tools_go_to_the_provider() {
    let (gw, _rest) = start(5);
    // The client brought its own tools: the agent steps aside, the upstream answers.
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "mine", "parameters": {"type": "object"}}}]});
    let resp = gw
        .post("/v1/chat/completions", &[], &body.to_string())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "mine"
    );
    let seen = gw.mock.requests_to("/v1/chat/completions").unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["body_json"]["model"], "m");
}

#[test]
fn ai_statistics_counts_the_summed_usage_of_the_agents_answer() {
    let rest = RestApi::start(REST).unwrap();
    let mock = Mock::start(MOCK).unwrap();
    let options = Options::plugin("ai-agent", &config(5))
        .with_plugin("ai-statistics", "{}")
        .with_cluster("outbound|80||llm.svc", mock.port)
        .with_cluster("outbound|8080||weather.svc", rest.port);
    let envoy = Envoy::start(mock.port, &options).unwrap();
    let gw = Gateway {
        envoy,
        mock,
        client: Client::new(Duration::from_secs(30)),
    };
    let body = json!({"model": "agent-stats", "messages": [{"role": "user",
        "content": "[mock-agent] Weather? mock-args={\"city\": \"Lima\"}"}]});
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-demo-ann")],
            &body.to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let usage = resp.json().unwrap()["usage"].clone();
    let mut samples = Vec::new();
    for _ in 0..40 {
        samples = gw.envoy.prometheus().unwrap();
        if samples.iter().any(|s| {
            s.name == "route_upstream_model_consumer_metric_output_token"
                && s.labels.values().any(|v| v == "agent-stats")
        }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let find = |metric: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == format!("route_upstream_model_consumer_metric_{metric}")
                    && s.labels.values().any(|v| v == "agent-stats")
            })
            .map(|s| s.value)
    };
    let mine: Vec<_> = samples
        .iter()
        .filter(|s| s.name.starts_with("route_upstream_model_consumer_metric_"))
        .collect();
    assert_eq!(
        find("output_token"),
        usage["completion_tokens"].as_f64(),
        "{mine:?}"
    );
    assert_eq!(find("input_token"), usage["prompt_tokens"].as_f64());
}

#[test]
fn higress_react_template_mode_runs_the_same_loop_in_text() {
    let (gw, rest) = start_with(&config_with(
        5,
        json!({"promptTemplate": {"language": "EN"}}),
    ));
    let out = ask(
        &gw,
        r#"[mock-agent] Weather? mock-react-tool=get_weather mock-args={"city": "Rome"}"#,
    );
    let expected = format!("The tool said: {}", weather("Rome"));
    for mode in ["json", "stream"] {
        assert_eq!(out[mode]["content"], expected.as_str(), "{mode}: {out}");
        assert_eq!(out[mode]["finish"], "stop");
    }
    let seen = rest.requests().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["query"], "city=Rome");
    // No native tools: the tools are described in the ReAct system prompt, and the result goes
    // back as an Observation.
    let calls = gw.mock.requests_to("/v1/chat/completions").unwrap();
    assert_eq!(calls.len(), 4);
    let first = &calls[0]["body_json"];
    assert!(first.get("tools").is_none(), "{first}");
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("get_weather") && system.contains("Action Input"),
        "{system}"
    );
    let second = calls[1]["body_json"]["messages"].as_array().unwrap();
    assert_eq!(
        second.last().unwrap()["content"],
        format!("Observation: {}", weather("Rome"))
    );
}
