//! ai-prompt-decorator through a real Envoy.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::Gateway;
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const PLUGIN: &str = "ai-prompt-decorator";

fn gateway(options: Options) -> Gateway {
    Gateway::start(MOCK, &options).unwrap()
}

fn chat(content: &str) -> String {
    json!({"model": "any-model", "messages": [{"role": "user", "content": content}]}).to_string()
}

#[test]
fn higress_config_prepends_and_appends() {
    let config = r#"{
      "prepend": [{"role": "system", "content": "You are terse. Caller: ${header:x-user|anonymous}, route ${property:xds.route_name}."}],
      "append": [{"role": "user", "content": "Answer in ${header:x-lang|English}."}]
    }"#;
    let gw = gateway(Options::plugin(PLUGIN, config));

    let resp = gw
        .post("/v1/chat/completions", &[("x-user", "ann")], &chat("hi"))
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.json().unwrap()["choices"][0]["message"]["role"],
        "assistant"
    );
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(
        got["body_json"]["messages"],
        json!([
            {"role": "system", "content": "You are terse. Caller: ann, route llm."},
            {"role": "user", "content": "hi"},
            {"role": "user", "content": "Answer in English."}
        ])
    );
    assert_eq!(got["body_json"]["model"], "any-model");
    // The rewritten body goes upstream with a length that matches it.
    let body_len = got["body"].as_str().unwrap().len().to_string();
    assert_eq!(
        got["headers"]["content-length"].as_str(),
        Some(body_len.as_str())
    );

    // Anthropic Messages: system decorations land in the top-level `system` field.
    let body = json!({"model": "claude-x", "max_tokens": 64, "system": "Base rules.",
        "messages": [{"role": "user", "content": "hello"}]});
    gw.post("/v1/messages", &[("x-lang", "French")], &body.to_string())
        .unwrap();
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/v1/messages");
    assert_eq!(
        got["body_json"]["system"],
        "You are terse. Caller: anonymous, route llm.\n\nBase rules."
    );
    assert_eq!(
        got["body_json"]["messages"],
        json!([{"role": "user", "content": "hello"}, {"role": "user", "content": "Answer in French."}])
    );
    assert_eq!(got["body_json"]["max_tokens"], 64);

    // The Responses API: decorations become input items around the client's.
    let body = json!({"model": "gpt-5", "instructions": "Base rules.", "input": "hey"});
    let resp = gw
        .post("/v1/responses", &[("x-user", "bob")], &body.to_string())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/v1/responses");
    assert_eq!(got["body_json"]["instructions"], "Base rules.");
    assert_eq!(
        got["body_json"]["input"],
        json!([
            {"role": "system", "content": "You are terse. Caller: bob, route llm."},
            {"role": "user", "content": "hey"},
            {"role": "user", "content": "Answer in English."}
        ])
    );

    // Other APIs pass untouched.
    let emb = json!({"model": "e", "input": "text"}).to_string();
    let resp = gw.post("/v1/embeddings", &[], &emb).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(gw.last_upstream_request().unwrap()["body"], emb);
}

#[test]
fn replace_rules_and_rules_per_route_and_domain() {
    let config = r#"{
      "prepend": [{"role": "system", "content": "global"}],
      "replace": [{"pattern": "(?i)password: *\\S+", "replacement": "password: [redacted]", "regex": true, "on_role": "user"}],
      "_rules_": [
        {"_match_route_": ["special"], "prepend": [{"role": "system", "content": "route rule"}]},
        {"_match_domain_": ["*.example.com"], "append": [{"role": "user", "content": "domain rule"}]}
      ]
    }"#;
    let gw = gateway(Options::plugin(PLUGIN, config).with_route("special", "/special/"));

    gw.post(
        "/v1/chat/completions",
        &[],
        &chat("my Password: hunter2 ok"),
    )
    .unwrap();
    let got = gw.last_upstream_request().unwrap()["body_json"]["messages"].clone();
    assert_eq!(
        got,
        json!([{"role": "system", "content": "global"}, {"role": "user", "content": "my password: [redacted] ok"}])
    );

    gw.post("/special/v1/chat/completions", &[], &chat("x"))
        .unwrap();
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/v1/chat/completions");
    assert_eq!(got["body_json"]["messages"][0]["content"], "route rule");
    // A rule replaces the global config (Higress semantics): no redaction there.
    assert_eq!(
        got["body_json"]["messages"].as_array().map(Vec::len),
        Some(2)
    );

    gw.post(
        "/v1/chat/completions",
        &[("host", "api.example.com")],
        &chat("x"),
    )
    .unwrap();
    let got = gw.last_upstream_request().unwrap()["body_json"]["messages"].clone();
    assert_eq!(
        got,
        json!([{"role": "user", "content": "x"}, {"role": "user", "content": "domain rule"}])
    );
}

#[test]
fn bad_input_gets_400_and_never_reaches_upstream() {
    let gw = gateway(Options::plugin(
        PLUGIN,
        r#"{"prepend":[{"role":"system","content":"s"}]}"#,
    ));
    let cases: [(&str, &str); 4] = [
        ("/v1/chat/completions", "{not json"),
        ("/v1/chat/completions", r#"{"model":"m"}"#),
        ("/v1/chat/completions", r#"{"model":"m","messages":"nope"}"#),
        ("/v1/messages", r#"{"model":"m","max_tokens":5}"#),
    ];
    for (path, body) in cases {
        let resp = gw.post(path, &[], body).unwrap();
        assert_eq!(resp.status, 400, "{path} {body}: {}", resp.body);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let v = resp.json().unwrap();
        if path == "/v1/messages" {
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "invalid_request_error");
        } else {
            assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    }
    assert_eq!(gw.mock.requests().unwrap().len(), 0);
    assert_eq!(
        gw.envoy
            .stat("cluster.llm_upstream.upstream_rq_total")
            .unwrap(),
        Some(0)
    );

    // Envoy keeps serving after bad input.
    for _ in 0..3 {
        let resp = gw.post("/v1/chat/completions", &[], &chat("fine")).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    assert_eq!(gw.mock.requests().unwrap().len(), 3);
}

fn sse_data(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|ev| ev.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn streaming_answer_passes_through_as_it_arrives() {
    let gw = gateway(Options::plugin(
        PLUGIN,
        r#"{"prepend":[{"role":"system","content":"s"}]}"#,
    ));
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "count"}]})
    .to_string();
    let headers = [("x-mock-chunks", "12"), ("x-mock-chunk-delay-ms", "40")];
    let url = format!("{}/v1/chat/completions", gw.envoy.url());
    let (status, reads) = gw.client.post_stream(&url, &headers, &body).unwrap();
    assert_eq!(status, 200);
    // Paced chunks arrive in several reads spread over time, not in one buffered piece.
    assert!(reads.len() >= 6, "only {} reads", reads.len());
    let span = reads.last().unwrap().0 - reads.first().unwrap().0;
    assert!(span.as_millis() >= 200, "stream arrived within {span:?}");
    let all: Vec<u8> = reads.into_iter().flat_map(|(_, b)| b).collect();

    // Byte for byte what the mock sends when asked directly (ids and timestamps aside).
    let (_, direct) = gw
        .client
        .post_stream(
            &format!("{}/v1/chat/completions", gw.mock.url()),
            &headers,
            &body,
        )
        .unwrap();
    let direct: Vec<u8> = direct.into_iter().flat_map(|(_, b)| b).collect();
    let normalize = |events: Vec<String>| -> Vec<Value> {
        events
            .into_iter()
            .map(|d| match serde_json::from_str::<Value>(&d) {
                Ok(mut v) => {
                    v["id"] = Value::Null;
                    v["created"] = Value::Null;
                    v
                }
                Err(_) => Value::String(d),
            })
            .collect()
    };
    let via_envoy = normalize(sse_data(&all));
    let mut direct = normalize(sse_data(&direct));
    // The decorated prompt is one word (the system message "s") longer.
    for v in &mut direct {
        if let Some(usage) = v.get_mut("usage") {
            usage["prompt_tokens"] = json!(usage["prompt_tokens"].as_u64().unwrap_or(0) + 1);
            usage["total_tokens"] = json!(usage["total_tokens"].as_u64().unwrap_or(0) + 1);
        }
    }
    assert_eq!(via_envoy, direct);
    assert_eq!(via_envoy.last(), Some(&Value::String("[DONE]".into())));
    let text: String = via_envoy
        .iter()
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, (0..12).map(|i| format!("w{i} ")).collect::<String>());
    // And the request itself was decorated.
    let sent = gw.mock.requests_to("/v1/chat/completions").unwrap();
    assert_eq!(sent[0]["body_json"]["messages"][0]["content"], "s");
}

#[test]
fn bad_plugin_config_is_rejected_naming_the_field() {
    let bad = r#"{"prepend":[{"role":"robot","content":"x"}]}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, bad)).unwrap();
    let needle = format!(
        "{}: role `robot` is not one of",
        e2e::envoy::config_error(PLUGIN, "prepend[0].role")
    );
    assert!(
        gw.envoy
            .wait_for_log(&needle, std::time::Duration::from_secs(10)),
        "{}",
        gw.envoy.log()
    );
    // The filter fails closed: requests are refused, none passes undecorated.
    let resp = gw.post("/v1/chat/completions", &[], &chat("x")).unwrap();
    assert_eq!(resp.status, 500, "{}", resp.body);
    assert!(gw.mock.requests().unwrap().is_empty());
}

#[test]
fn shipped_trial_config_decorates_and_proxies() {
    let gw = gateway(Options::shipped());
    let resp = gw
        .post(
            "/v1/chat/completions",
            // ann's demo key: the decorator names the consumer Envoy authenticated, whatever
            // consumer header the client sent.
            &[
                ("authorization", "Bearer sk-demo-ann"),
                ("x-mse-consumer", "mallory"),
            ],
            &chat("Hello"),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["headers"]["host"], "api.openai.com");
    assert_eq!(got["headers"]["authorization"], "Bearer sk-local-trial");
    let messages = got["body_json"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert!(messages[0]["content"]
        .as_str()
        .unwrap()
        .ends_with("The caller is ann."));
}
