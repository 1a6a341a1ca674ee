//! ai-proxy through a real Envoy, against the mock provider.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const PLUGIN: &str = "ai-proxy";
const CLIENT_KEY: &str = "Bearer client-secret-key";

fn gateway(config: &str) -> Gateway {
    Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap()
}

fn chat(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

/// (type, extra config, expected host, expected path, expected key header, expected key value)
const TYPES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "openai",
        "",
        "api.openai.com",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-openai",
    ),
    (
        "azure",
        r#","azureServiceUrl":"https://res.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-06-01""#,
        "res.openai.azure.com",
        "/openai/deployments/dep/chat/completions?api-version=2024-06-01",
        "api-key",
        "key-azure",
    ),
    (
        "moonshot",
        "",
        "api.moonshot.cn",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-moonshot",
    ),
    (
        "qwen",
        r#","qwenEnableCompatible":true"#,
        "dashscope.aliyuncs.com",
        "/compatible-mode/v1/chat/completions",
        "authorization",
        "Bearer key-qwen",
    ),
    (
        "deepseek",
        "",
        "api.deepseek.com",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-deepseek",
    ),
    (
        "groq",
        "",
        "api.groq.com",
        "/openai/v1/chat/completions",
        "authorization",
        "Bearer key-groq",
    ),
    (
        "grok",
        "",
        "api.x.ai",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-grok",
    ),
    (
        "mistral",
        "",
        "api.mistral.ai",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-mistral",
    ),
    (
        "together-ai",
        "",
        "api.together.xyz",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-together-ai",
    ),
    (
        "openrouter",
        "",
        "openrouter.ai",
        "/api/v1/chat/completions",
        "authorization",
        "Bearer key-openrouter",
    ),
    (
        "fireworks",
        "",
        "api.fireworks.ai",
        "/inference/v1/chat/completions",
        "authorization",
        "Bearer key-fireworks",
    ),
    (
        "github",
        "",
        "models.inference.ai.azure.com",
        "/chat/completions",
        "authorization",
        "Bearer key-github",
    ),
    (
        "ollama",
        r#","ollamaServerHost":"ollama.local""#,
        "ollama.local:11434",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-ollama",
    ),
    (
        "vllm",
        r#","vllmServerHost":"vllm.local:8000""#,
        "vllm.local:8000",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-vllm",
    ),
    (
        "zhipuai",
        "",
        "open.bigmodel.cn",
        "/api/paas/v4/chat/completions",
        "authorization",
        "Bearer key-zhipuai",
    ),
    (
        "doubao",
        "",
        "ark.cn-beijing.volces.com",
        "/api/v3/chat/completions",
        "authorization",
        "Bearer key-doubao",
    ),
    (
        "baichuan",
        "",
        "api.baichuan-ai.com",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-baichuan",
    ),
    (
        "yi",
        "",
        "api.lingyiwanwu.com",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-yi",
    ),
    (
        "stepfun",
        "",
        "api.stepfun.com",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-stepfun",
    ),
    (
        "minimax",
        "",
        "api.minimax.chat",
        "/v1/text/chatcompletion_v2",
        "authorization",
        "Bearer key-minimax",
    ),
    (
        "ai360",
        "",
        "api.360.cn",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-ai360",
    ),
    (
        "hunyuan",
        "",
        "api.hunyuan.cloud.tencent.com",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-hunyuan",
    ),
    (
        "cloudflare",
        r#","cloudflareAccountId":"acc123""#,
        "api.cloudflare.com",
        "/client/v4/accounts/acc123/ai/v1/chat/completions",
        "authorization",
        "Bearer key-cloudflare",
    ),
    (
        "longcat",
        "",
        "api.longcat.chat",
        "/openai/v1/chat/completions",
        "authorization",
        "Bearer key-longcat",
    ),
    (
        "baidu",
        "",
        "qianfan.baidubce.com",
        "/v2/chat/completions",
        "authorization",
        "Bearer key-baidu",
    ),
    (
        "spark",
        "",
        "spark-api-open.xf-yun.com",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-spark",
    ),
    (
        "generic",
        r#","genericHost":"llm.internal:9000""#,
        "llm.internal:9000",
        "/v1/chat/completions",
        "authorization",
        "Bearer key-generic",
    ),
];

#[test]
fn openai_compatible_types_get_their_host_path_and_key() {
    // One rule per type, selected by the request's host.
    let rules: Vec<String> = TYPES
        .iter()
        .map(|(kind, extra, ..)| {
            format!(r#"{{"_match_domain_":["{kind}.test"],"provider":{{"type":"{kind}","apiTokens":["key-{kind}"]{extra}}}}}"#)
        })
        .collect();
    let gw = gateway(&format!(r#"{{"_rules_":[{}]}}"#, rules.join(",")));
    for (kind, _, host, path, key_header, key) in TYPES {
        let host_header = format!("{kind}.test");
        let resp = gw
            .post(
                "/v1/chat/completions",
                &[("host", &host_header), ("authorization", CLIENT_KEY)],
                &chat("m"),
            )
            .unwrap();
        // The mock serves only OpenAI's own paths; what matters is what it received.
        assert!(
            resp.status == 200 || resp.status == 404,
            "{kind}: {}",
            resp.body
        );
        let got = gw.last_upstream_request().unwrap();
        let full_path = match got["query"].as_str() {
            Some(q) => format!("{}?{q}", got["path"].as_str().unwrap()),
            None => got["path"].as_str().unwrap().to_string(),
        };
        assert_eq!(full_path, *path, "{kind}");
        assert_eq!(got["headers"]["host"], *host, "{kind}");
        assert_eq!(got["headers"][key_header], *key, "{kind}");
        let headers = got["headers"].to_string();
        assert!(
            !headers.contains("client-secret-key"),
            "{kind} leaked the client key: {headers}"
        );
    }
}

const CLAUDE: &str = r#"{"provider":{"type":"claude","apiTokens":["sk-ant-secret-1"],
    "modelMapping":{"gpt-4o":"claude-sonnet-4-5","*":"claude-haiku-4-5"}}}"#;

/// An agent loop with reasoning from a chat client, to Anthropic and to Claude on Bedrock: the
/// first turn thinks; the turn that returns the tool's result goes without thinking, since the
/// client cannot send back the signed thinking block both upstreams (the mock as well) demand
/// on the assistant turn that called the tool.
#[test]
fn reasoning_tool_loops_reach_anthropic_models() {
    let bedrock = r#"{"provider":{"type":"bedrock","awsAccessKey":"AKIDMOCKBEDROCK",
        "awsSecretKey":"mock-bedrock-secret","awsRegion":"us-east-1",
        "modelMapping":{"*":"anthropic.claude-sonnet-4-20250514-v1:0"}}}"#;
    let tools = json!([{"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let question = json!({"role": "user", "content": "Weather in Paris?"});
    for (config, thinking) in [
        (CLAUDE, "/thinking/type"),
        (bedrock, "/additionalModelRequestFields/thinking/type"),
    ] {
        let gw = gateway(config);
        let ask = |messages: Value| {
            let body = json!({"model": "gpt-4o", "reasoning_effort": "low", "tools": tools,
                "messages": messages});
            let resp = gw
                .post("/v1/chat/completions", &[], &body.to_string())
                .unwrap();
            assert_eq!(resp.status, 200, "{config}: {}", resp.body);
            let sent = gw.last_upstream_request().unwrap()["body_json"].clone();
            sent.pointer(thinking).cloned()
        };
        assert_eq!(ask(json!([question])), Some(json!("enabled")), "{config}");
        let looping = json!([question,
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]);
        assert_eq!(ask(looping), None, "{config}");
    }
}

#[test]
fn openai_chat_to_anthropic_and_back() {
    let gw = gateway(CLAUDE);
    let body = json!({"model": "gpt-4o", "temperature": 0.3, "stop": "END", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]});
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("authorization", CLIENT_KEY)],
            &body.to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply from claude-sonnet-4-5"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/v1/messages");
    assert_eq!(got["headers"]["host"], "api.anthropic.com");
    assert_eq!(got["headers"]["x-api-key"], "sk-ant-secret-1");
    assert_eq!(got["headers"]["anthropic-version"], "2023-06-01");
    assert!(got["headers"].get("authorization").is_none());
    let sent = &got["body_json"];
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    assert_eq!(sent["messages"][0]["role"], "user");
    assert!(sent["messages"][0]["content"]
        .to_string()
        .contains("hi there"));
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["max_tokens"], 4096);

    // Errors come back in OpenAI's shape with the provider's status.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-status", "429")],
            &chat("x"),
        )
        .unwrap();
    assert_eq!(resp.status, 429);
    let v = resp.json().unwrap();
    assert_eq!(v["error"]["message"], "mock failure 429");
    assert_eq!(v["error"]["code"], "rate_limit_error");

    // Anthropic has no embeddings: a 404 in OpenAI's shape, and no upstream call.
    gw.mock.clear().unwrap();
    let resp = gw
        .post("/v1/embeddings", &[], r#"{"model":"e","input":"x"}"#)
        .unwrap();
    assert_eq!(resp.status, 404, "{}", resp.body);
    assert_eq!(
        resp.json().unwrap()["error"]["code"],
        "unsupported_endpoint"
    );
    assert!(gw.mock.requests().unwrap().is_empty());

    // No provider key in any answer or log.
    assert!(!gw.envoy.log().contains("sk-ant-secret-1"));
    assert!(!gw.envoy.access_log().contains("sk-ant-secret-1"));
}

#[test]
fn openai_sdk_parses_anthropic_answers() {
    let gw = gateway(CLAUDE);
    let out = run_sdk_script(
        "openai_client.py",
        &[&format!("{}/v1", gw.envoy.url()), "gpt-4o"],
    )
    .unwrap();
    assert_eq!(out["text"]["content"], "mock reply from claude-sonnet-4-5");
    assert_eq!(out["text"]["finish"], "stop");
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    assert_eq!(out["stream"]["finish"], "stop");
    assert_eq!(out["stream"]["usage"]["completion_tokens"], 5);
    assert_eq!(out["stream"]["usage"]["prompt_tokens"], 1);
    assert_eq!(
        out["tool"],
        json!({"name": "get_weather", "arguments": {"location": "Paris"}, "finish": "tool_calls"})
    );
    assert_eq!(
        out["tool_stream"],
        json!({"name": "get_weather", "arguments": {"location": "Paris"}, "finish": "tool_calls"})
    );
    // The streamed requests went to Anthropic as streams.
    let sent = gw.mock.requests_to("/v1/messages").unwrap();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[1]["body_json"]["stream"], true);
    assert_eq!(sent[2]["body_json"]["tools"][0]["name"], "get_weather");
    assert!(sent[2]["body_json"]["tools"][0]["input_schema"].is_object());
}

#[test]
fn anthropic_clients_reach_openai_compatible_providers() {
    let gw = gateway(r#"{"provider":{"type":"deepseek","apiTokens":["sk-ds"]}}"#);
    let out = run_sdk_script("anthropic_client.py", &[&gw.envoy.url(), "deepseek-chat"]).unwrap();
    assert_eq!(out["text"]["content"], "mock reply from deepseek-chat");
    assert_eq!(out["text"]["stop"], "end_turn");
    assert_eq!(out["text"]["usage"], json!({"input": 4, "output": 4}));
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    assert_eq!(out["stream"]["stop"], "end_turn");
    assert_eq!(out["stream"]["usage"]["output"], 5);
    assert_eq!(
        out["tool"],
        json!({"name": "get_weather", "input": {"location": "Paris"}, "stop": "tool_use"})
    );
    assert_eq!(
        out["tool_stream"],
        json!({"name": "get_weather", "input": {"location": "Paris"}, "stop": "tool_use"})
    );
    let sent = gw.mock.requests_to("/v1/chat/completions").unwrap();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0]["headers"]["host"], "api.deepseek.com");
    assert_eq!(sent[0]["headers"]["authorization"], "Bearer sk-ds");
    assert!(sent[0]["headers"].get("x-api-key").is_none());
    assert_eq!(
        sent[0]["body_json"]["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent[1]["body_json"]["stream_options"]["include_usage"],
        true
    );

    // Errors come back in Anthropic's shape.
    let body =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let resp = gw
        .post(
            "/v1/messages",
            &[("x-mock-status", "503")],
            &body.to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 503);
    let v = resp.json().unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["message"], "mock failure 503");
}

#[test]
fn anthropic_clients_pass_natively_to_claude() {
    let gw = gateway(CLAUDE);
    let out = run_sdk_script("anthropic_client.py", &[&gw.envoy.url(), "claude-opus"]).unwrap();
    assert_eq!(out["text"]["content"], "mock reply from claude-haiku-4-5");
    assert_eq!(out["tool_stream"]["input"], json!({"location": "Paris"}));
    let sent = gw.mock.requests_to("/v1/messages").unwrap();
    assert_eq!(sent[0]["headers"]["x-api-key"], "sk-ant-secret-1");
    assert_eq!(sent[0]["body_json"]["system"], "Be brief.");
}

#[test]
fn model_mapping_precedence_and_stream_usage_option() {
    let config = r#"{"provider":{"type":"openai","apiTokens":["k1","k2"],"modelMapping":{
        "*": "wild", "~gpt-(\\d+)-(.*)": "re-$1-$2", "gpt-*": "prefix-short", "gpt-4o*": "prefix-long", "gpt-4o": "exact"}}}"#;
    let gw = gateway(config);
    let cases = [
        ("gpt-4o", "exact"),
        ("gpt-4o-mini", "prefix-long"),
        ("gpt-3.5", "prefix-short"),
        ("gpt5-x", "wild"),
        ("llama", "wild"),
    ];
    for (asked, sent) in cases {
        gw.post("/v1/chat/completions", &[], &chat(asked)).unwrap();
        assert_eq!(
            gw.last_upstream_request().unwrap()["body_json"]["model"],
            sent,
            "{asked}"
        );
    }
    // Keys rotate across requests.
    let keys: Vec<Value> = gw
        .mock
        .requests()
        .unwrap()
        .iter()
        .map(|r| r["headers"]["authorization"].clone())
        .collect();
    assert!(
        keys.contains(&json!("Bearer k1")) && keys.contains(&json!("Bearer k2")),
        "{keys:?}"
    );
    // Streams ask the upstream for usage.
    let body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let url = format!("{}/v1/chat/completions", gw.envoy.url());
    let (status, reads) = gw.client.post_stream(&url, &[], &body.to_string()).unwrap();
    assert_eq!(status, 200);
    let text: String = reads
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(text.contains("\"usage\""), "{text}");
    assert_eq!(
        gw.last_upstream_request().unwrap()["body_json"]["stream_options"]["include_usage"],
        true
    );
}

#[test]
fn gateway_failures_are_json_errors() {
    let gw = gateway(r#"{"provider":{"type":"openai","apiTokens":["k"],"timeout":300}}"#);
    // Upstream slower than the provider timeout: Envoy's 504 becomes an OpenAI-style error.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-delay-ms", "2000")],
            &chat("m"),
        )
        .unwrap();
    assert_eq!(resp.status, 504, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v = resp.json().unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    // Upstream connection reset: 503, JSON too.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-reset-after", "0")],
            &chat("m"),
        )
        .unwrap();
    assert!(resp.status >= 500, "{}", resp.status);
    assert!(resp.json().is_ok(), "{}", resp.body);
}

fn keys_used(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r["headers"].get("x-ai-gateway-health-check").is_none())
        .map(|r| {
            r["headers"]["authorization"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn failing_key_is_taken_out_and_restored_by_health_checks() {
    let config = r#"{"provider":{"type":"openai","apiTokens":["k1","k2"],
        "failover":{"enabled":true,"failureThreshold":2,"successThreshold":1,
                    "healthCheckInterval":300,"healthCheckModel":"hc-model","failoverOnStatus":["429"]}}}"#;
    let gw = gateway(config);
    gw.mock
        .fail_with_header(429, 100_000, "authorization", "Bearer k1")
        .unwrap();

    let statuses: Vec<u16> = (0..12)
        .map(|_| {
            gw.post("/v1/chat/completions", &[], &chat("m"))
                .unwrap()
                .status
        })
        .collect();
    let failures = statuses.iter().filter(|s| **s == 429).count();
    assert!((1..=3).contains(&failures), "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == 200), "{statuses:?}");
    let used = keys_used(&gw.mock.requests().unwrap());
    assert!(used[6..].iter().all(|k| k == "Bearer k2"), "{used:?}");
    assert!(gw.envoy.wait_for_log(
        "key #0 of provider `openai` taken out",
        std::time::Duration::from_secs(5)
    ));

    // Health checks keep probing the bad key with the configured model while it fails.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let probes: Vec<Value> = gw
        .mock
        .requests()
        .unwrap()
        .into_iter()
        .filter(|r| r["headers"].get("x-ai-gateway-health-check").is_some())
        .collect();
    assert!(!probes.is_empty());
    assert_eq!(probes[0]["headers"]["authorization"], "Bearer k1");
    assert_eq!(probes[0]["body_json"]["model"], "hc-model");
    assert_eq!(probes[0]["path"], "/v1/chat/completions");

    // The provider recovers: the next health check brings the key back.
    gw.mock.clear().unwrap();
    assert!(
        gw.envoy.wait_for_log(
            "restored by health checks",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        gw.envoy.log()
    );
    gw.mock.clear().unwrap();
    for _ in 0..8 {
        assert_eq!(
            gw.post("/v1/chat/completions", &[], &chat("m"))
                .unwrap()
                .status,
            200
        );
    }
    let used = keys_used(&gw.mock.requests().unwrap());
    assert!(
        used.contains(&"Bearer k1".to_string()) && used.contains(&"Bearer k2".to_string()),
        "{used:?}"
    );
    // Keys never reach the log.
    let log = gw.envoy.log();
    assert!(!log.contains("Bearer k1") && !log.contains("\"k1\""));
}

#[test]
fn failed_requests_are_retried_with_another_key() {
    let config = r#"{"provider":{"type":"claude","apiTokens":["sk-a","sk-b"],
        "retryOnFailure":{"enabled":true,"maxRetries":1,"retryOnStatus":["429","5.."]}}}"#;
    let gw = gateway(config);
    gw.mock
        .fail_with_header(529, 100_000, "x-api-key", "sk-a")
        .unwrap();
    for i in 0..6 {
        let resp = gw
            .post("/v1/chat/completions", &[], &chat("claude-x"))
            .unwrap();
        assert_eq!(resp.status, 200, "request {i}: {}", resp.body);
        let v = resp.json().unwrap();
        assert_eq!(v["object"], "chat.completion", "{v}");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "mock reply from claude-x"
        );
    }
    let keys: Vec<String> = gw
        .mock
        .requests()
        .unwrap()
        .iter()
        .map(|r| {
            r["headers"]["x-api-key"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // Every request that went to sk-a first was sent again with sk-b.
    let first_tries = keys.iter().filter(|k| *k == "sk-a").count();
    assert!(first_tries >= 1, "{keys:?}");
    assert_eq!(keys.len(), 6 + first_tries, "{keys:?}");
    let retried = gw.mock.requests().unwrap();
    let (a, b): (Vec<&Value>, Vec<&Value>) = retried
        .iter()
        .partition(|r| r["headers"]["x-api-key"] == "sk-a");
    assert_eq!(a[0]["body"], b[0]["body"], "the retry sends the same body");

    // Streams are not retried: the error reaches the client in its shape.
    gw.mock.clear().unwrap();
    gw.mock.fail_next(503, 100).unwrap();
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let resp = gw
        .post("/v1/chat/completions", &[], &body.to_string())
        .unwrap();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json().unwrap()["error"]["message"], "mock failure 503");
    assert_eq!(gw.mock.requests().unwrap().len(), 1);
}

#[test]
fn endpoints_compression_and_unknown_keys() {
    let config = r#"{"provider":{"type":"groq","apiTokens":["gk"],"streamIncludeUsage":false,"colour":"blue"}}"#;
    let gw = gateway(config);
    assert!(gw.envoy.wait_for_log(
        "unknown key `provider.colour` ignored",
        std::time::Duration::from_secs(5)
    ));

    // Other OpenAI paths pass through under the provider's base path, query kept.
    let resp = gw
        .client
        .get(&format!("{}/v1/models?limit=2", gw.envoy.url()), &[])
        .unwrap();
    assert_eq!(resp.status, 404, "the mock has no /openai/v1/models");
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/openai/v1/models");
    assert_eq!(got["query"], "limit=2");
    gw.post("/v1/files", &[], "{}").unwrap();
    assert_eq!(
        gw.last_upstream_request().unwrap()["path"],
        "/openai/v1/files"
    );
    // groq has no legacy completions: 404 in OpenAI's shape, upstream not called.
    gw.mock.clear().unwrap();
    let resp = gw
        .post("/v1/completions", &[], r#"{"model":"m","prompt":"x"}"#)
        .unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.json().unwrap()["error"]["type"],
        "invalid_request_error"
    );
    assert!(gw.mock.requests().unwrap().is_empty());

    // The client's accept-encoding never reaches the provider, so answers stay translatable.
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    gw.post(
        "/v1/chat/completions",
        &[("accept-encoding", "gzip, br")],
        &body.to_string(),
    )
    .unwrap();
    let got = gw.last_upstream_request().unwrap();
    assert!(
        got["headers"].get("accept-encoding").is_none(),
        "{}",
        got["headers"]
    );
    // streamIncludeUsage: false leaves the request's stream options alone.
    assert!(got["body_json"].get("stream_options").is_none());
}

#[test]
fn custom_settings_reach_the_provider() {
    let config = r#"{"provider":{"type":"claude","apiTokens":["k"],"customSettings":[
        {"name":"max_tokens","value":77},{"name":"temperature","value":0.5,"overwrite":false},
        {"name":"metadata.user_id","value":"gateway"}]}}"#;
    let gw = gateway(config);
    let body =
        json!({"model": "m", "temperature": 0.9, "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .post("/v1/chat/completions", &[], &body.to_string())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let sent = gw.last_upstream_request().unwrap()["body_json"].clone();
    assert_eq!(sent["max_tokens"], 77);
    assert_eq!(sent["temperature"], 0.9);
    assert_eq!(sent["metadata"]["user_id"], "gateway");
    assert_eq!(resp.json().unwrap()["object"], "chat.completion");
}
