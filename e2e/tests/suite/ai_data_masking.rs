//! ai-data-masking through a real Envoy: phone numbers and e-mail addresses reach the provider
//! masked and come back restored (JSON and streams, a masked value split across stream chunks
//! included), sensitive words are refused before the provider is called, in both protocols.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const PLUGIN: &str = "ai-data-masking";

/// Masks phone numbers (with a space inside the mask, so the mock's word-by-word stream splits
/// it across chunks) and e-mail addresses, both restored; blocks a custom and the built-in words.
const CONFIG: &str = r#"{
    "system_deny": true,
    "deny_words": ["project falcon"],
    "deny_message": "Blocked: sensitive content.",
    "replace_roles": [
        {"regex": "%{MOBILE}", "type": "replace", "restore": true, "value": "[phone number]"},
        {"regex": "%{EMAILLOCALPART}@%{HOSTNAME:domain}", "type": "replace", "restore": true,
         "value": "****@$domain"},
        {"regex": "%{IDCARD}", "type": "replace", "value": "[id]"}
    ]
}"#;

const PROMPT: &str = "Call 13800138000 or mail ann.lee@example.com, id 11010519491231002X.";
const MASKED: &str = "Call [phone number] or mail ****@example.com, id [id].";
/// What the provider answers: the masked values, as a model that saw only them would.
const ANSWER: &str = "I will call [phone number] and write to ****@example.com today.";
const RESTORED: &str = "I will call 13800138000 and write to ann.lee@example.com today.";

fn chat(text: &str, stream: bool) -> String {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]})
        .to_string()
}

fn upstream_text(gw: &Gateway) -> String {
    let req = gw.last_upstream_request().unwrap();
    let content = &req["body_json"]["messages"][0]["content"];
    match content {
        Value::String(s) => s.clone(),
        other => other[0]["text"].as_str().unwrap_or_default().to_string(),
    }
}

#[test]
fn masked_before_the_provider_and_restored_in_json_and_streams() {
    // An Anthropic upstream: OpenAI clients get its answer translated by ai-proxy, which runs
    // after the masking on the way out and before it on the way back.
    let proxy = r#"{"provider": {"type": "claude", "apiTokens": ["sk-ant"]}}"#;
    let options = Options::plugin(PLUGIN, CONFIG).with_plugin("ai-proxy", proxy);
    let gw = Gateway::start(MOCK, &options).unwrap();
    let answer = [("x-mock-content", ANSWER)];

    // OpenAI JSON.
    let resp = gw
        .post("/v1/chat/completions", &answer, &chat(PROMPT, false))
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(upstream_text(&gw), MASKED);
    let v = resp.json().unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], RESTORED);

    // OpenAI stream, paced so each word is its own chunk: "[phone " and "number]" arrive apart.
    let paced = [("x-mock-content", ANSWER), ("x-mock-chunk-delay-ms", "20")];
    let resp = gw
        .post("/v1/chat/completions", &paced, &chat(PROMPT, true))
        .unwrap();
    assert_eq!(upstream_text(&gw), MASKED);
    let chunks = e2e::sse::data_json(&resp.body);
    assert_eq!(e2e::sse::chat_text(&chunks), RESTORED, "{}", resp.body);
    assert!(resp.body.trim_end().ends_with("data: [DONE]"));
    // No chunk carries a piece of a mask.
    assert!(!resp.body.contains("[phone") && !resp.body.contains("****"));

    // Anthropic JSON and stream.
    let body = |stream: bool| {
        json!({"model": "claude", "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": PROMPT}]})
        .to_string()
    };
    let resp = gw.post("/v1/messages", &answer, &body(false)).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(upstream_text(&gw), MASKED);
    assert_eq!(resp.json().unwrap()["content"][0]["text"], RESTORED);
    let resp = gw.post("/v1/messages", &paced, &body(true)).unwrap();
    let text: String = e2e::sse::data_json(&resp.body)
        .iter()
        .filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, RESTORED, "{}", resp.body);

    // The official SDK reads the restored stream.
    let base = format!("{}/v1", gw.envoy.url());
    let out = run_sdk_script(
        "openai_stream.py",
        &[&base, "m", PROMPT, &format!("x-mock-content={ANSWER}")],
    )
    .unwrap();
    assert_eq!(out["content"], RESTORED);
    assert_eq!(out["finish"], "stop");
    assert_eq!(upstream_text(&gw), MASKED);
}

#[test]
fn sensitive_words_are_refused_before_the_provider() {
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, CONFIG)).unwrap();
    // A built-in word (system_deny), OpenAI JSON and stream.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[],
            &chat("how to build a pipe bomb", false),
        )
        .unwrap();
    assert_eq!(resp.status, 200);
    let v = resp.json().unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Blocked: sensitive content."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let resp = gw
        .post("/v1/chat/completions", &[], &chat("制作炸弹的方法", true))
        .unwrap();
    assert!(resp.body.contains("content_filter"), "{}", resp.body);
    // A custom word, Anthropic.
    let body = json!({"model": "c", "max_tokens": 9,
        "messages": [{"role": "user", "content": "Tell me about Project  Falcon"}]});
    let v = gw
        .post("/v1/messages", &[], &body.to_string())
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    assert_eq!(v["content"][0]["text"], "Blocked: sensitive content.");
    assert!(
        gw.mock.requests().unwrap().is_empty(),
        "the provider was called"
    );

    // An answer with a sensitive word is replaced (JSON) or cut (stream).
    let bad = [("x-mock-content", "Here is how to build a pipe bomb: no.")];
    let v = gw
        .post("/v1/chat/completions", &bad, &chat("hello", false))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let resp = gw
        .post("/v1/chat/completions", &bad, &chat("hello", true))
        .unwrap();
    let chunks = e2e::sse::data_json(&resp.body);
    assert!(
        !e2e::sse::chat_text(&chunks).contains("bomb"),
        "{}",
        resp.body
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "content_filter"
    );
    let denied = gw.envoy.prometheus().unwrap();
    let count = |direction: &str| {
        denied
            .iter()
            .find(|s| {
                s.name == "ai_data_masking_denied"
                    && s.labels.get("direction").map(String::as_str) == Some(direction)
            })
            .map(|s| s.value)
    };
    assert_eq!(count("request"), Some(3.0));
    assert_eq!(count("response"), Some(2.0));
}

#[test]
fn jsonpath_and_raw_scopes() {
    let config = r#"{"deny_openai": false, "deny_jsonpath": ["$.messages[*].content"],
        "deny_words": ["falcon"], "deny_code": 403,
        "replace_roles": [{"regex": "%{IP}", "type": "replace", "value": "***.***.***.***"}]}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[],
            &chat("ping 192.168.0.1", false),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(upstream_text(&gw), "ping ***.***.***.***");
    let resp = gw
        .post("/v1/chat/completions", &[], &chat("falcon", false))
        .unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json().unwrap()["errmsg"],
        "提问或回答中包含敏感词，已被屏蔽"
    );
}
