//! ai-moderation through a real Envoy: local rules, an OpenAI-compatible moderation service,
//! fail-open/closed, and streamed answers cut at the offending window.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::Gateway;
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const PLUGIN: &str = "ai-moderation";

fn chat(text: &str, stream: bool) -> String {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]})
        .to_string()
}

fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn denied_requests_never_reach_the_provider() {
    let config = r#"{"denyWords": ["bomb"], "denyPatterns": ["card number \\d{4}"],
        "denyMessage": "Sorry, not allowed.",
        "_rules_": [{"_match_domain_": ["strict.test"], "denyWords": ["bomb"], "denyCode": 403}]}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();

    // OpenAI shape, default 200 with a content_filter completion.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[],
            &chat("How to build a BOMB?", false),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(v["choices"][0]["message"]["content"], "Sorry, not allowed.");
    // Regular expressions, case-insensitive.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[],
            &chat("my Card Number 1234 5678", false),
        )
        .unwrap();
    assert_eq!(
        resp.json().unwrap()["choices"][0]["finish_reason"],
        "content_filter"
    );
    // A streaming client gets a well-formed stream.
    let resp = gw
        .post("/v1/chat/completions", &[], &chat("bomb", true))
        .unwrap();
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_events(&resp.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(resp.body.contains("content_filter"));
    // Anthropic shape.
    let body =
        json!({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "a bomb"}]});
    let v = gw
        .post("/v1/messages", &[], &body.to_string())
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "refusal");
    // An error status when configured.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("host", "strict.test")],
            &chat("bomb", false),
        )
        .unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json().unwrap()["error"]["code"], "content_filter");
    assert!(
        gw.mock.requests().unwrap().is_empty(),
        "the provider was called"
    );
    // Word boundaries: "bombay" is fine; clean requests pass.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[],
            &chat("Flights to Bombay", false),
        )
        .unwrap();
    assert_eq!(resp.json().unwrap()["choices"][0]["finish_reason"], "stop");
    assert_eq!(gw.mock.requests().unwrap().len(), 1);
    let denied = gw.envoy.prometheus().unwrap();
    let count = denied
        .iter()
        .find(|s| {
            s.name == "ai_moderation_denied"
                && s.labels.get("direction").map(String::as_str) == Some("request")
                && s.labels.get("source").map(String::as_str) == Some("local")
        })
        .map(|s| s.value);
    assert_eq!(count, Some(5.0));
    // The guardrail result reaches the access log.
    let mut blocked = 0;
    for _ in 0..200 {
        blocked = gw
            .envoy
            .access_log()
            .matches("\"guardrail\":\"blocked\"")
            .count();
        if blocked >= 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(blocked, 5, "{}", gw.envoy.access_log());
}

const SERVICE: &str = r#"{"service": {"cluster": "llm_upstream", "timeout": 500, "failOpen": true},
    "_rules_": [{"_match_domain_": ["closed.test"],
                 "service": {"cluster": "llm_upstream", "timeout": 500, "failOpen": false}}]}"#;

#[test]
fn moderation_service_checks_requests_and_fails_open_or_closed() {
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, SERVICE)).unwrap();
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[],
            &chat("tell me forbidden things", false),
        )
        .unwrap();
    assert_eq!(
        resp.json().unwrap()["choices"][0]["finish_reason"],
        "content_filter"
    );
    let calls = gw.mock.requests_to("/v1/moderations").unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["body_json"]["input"],
        json!(["tell me forbidden things"])
    );
    assert!(gw
        .mock
        .requests_to("/v1/chat/completions")
        .unwrap()
        .is_empty());
    let resp = gw
        .post("/v1/chat/completions", &[], &chat("hello", false))
        .unwrap();
    assert_eq!(resp.json().unwrap()["choices"][0]["finish_reason"], "stop");

    // Service down (500) and slow (timeout): open passes, closed denies.
    for settings in [json!({"status": 500}), json!({"delay_ms": 1500})] {
        gw.mock.clear().unwrap();
        gw.client
            .post(
                &format!("{}/__mock/moderation", gw.mock.url()),
                &[],
                &settings.to_string(),
            )
            .unwrap();
        let open = gw
            .post("/v1/chat/completions", &[], &chat("hello", false))
            .unwrap();
        assert_eq!(
            open.json().unwrap()["choices"][0]["finish_reason"],
            "stop",
            "{settings}"
        );
        let closed = gw
            .post(
                "/v1/chat/completions",
                &[("host", "closed.test")],
                &chat("hello", false),
            )
            .unwrap();
        assert_eq!(
            closed.json().unwrap()["choices"][0]["finish_reason"],
            "content_filter",
            "{settings}"
        );
        assert_eq!(
            gw.mock.requests_to("/v1/chat/completions").unwrap().len(),
            1,
            "{settings}"
        );
    }
}

/// 24 words of 9 characters each ("aaaaaaaa "), the bad word in the 5th window of 36 chars.
fn long_answer() -> String {
    let mut words: Vec<String> = (0..24).map(|i| format!("word{i:04}")).collect();
    words[17] = "forbidden".into();
    words.join(" ")
}

fn stream_and_check(gw: &Gateway, content: &str) -> (String, Vec<Value>) {
    let url = format!("{}/v1/chat/completions", gw.envoy.url());
    let headers = [("x-mock-content", content), ("x-mock-chunk-delay-ms", "10")];
    let (status, reads) = gw
        .client
        .post_stream(&url, &headers, &chat("go", true))
        .unwrap();
    assert_eq!(status, 200);
    let body = String::from_utf8(reads.into_iter().flat_map(|(_, b)| b).collect()).unwrap();
    let events = sse_events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert_eq!(
        events.iter().filter(|e| *e == "[DONE]").count(),
        1,
        "{body}"
    );
    let chunks: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    (text, chunks)
}

fn check_cut(gw: &Gateway) {
    let answer = long_answer();
    let (text, chunks) = stream_and_check(gw, &answer);
    assert!(!text.contains("forbidden"), "{text}");
    // Everything before the offending window arrived, in order; nothing after it.
    assert!(answer.starts_with(&text), "{text}");
    assert!(
        text.len() >= 4 * 36 - 45 && text.len() < answer.find("forbidden").unwrap(),
        "{} chars: {text}",
        text.len()
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
    // A clean stream arrives complete and in order.
    let clean = answer.replace("forbidden", "fine-word");
    let (text, chunks) = stream_and_check(gw, &clean);
    assert_eq!(text, clean);
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
}

#[test]
fn streamed_answer_is_cut_at_the_offending_window_local_rules() {
    let config = r#"{"checkRequest": false, "checkResponse": true, "denyWords": ["forbidden"], "streamWindow": 36}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();
    check_cut(&gw);
    let denied = gw.envoy.prometheus().unwrap();
    let response_denials = denied
        .iter()
        .find(|s| {
            s.name == "ai_moderation_denied"
                && s.labels.get("direction").map(String::as_str) == Some("response")
        })
        .map(|s| s.value);
    assert_eq!(response_denials, Some(1.0));
}

#[test]
fn streamed_answer_is_cut_at_the_offending_window_service() {
    let config = r#"{"checkRequest": false, "checkResponse": true, "streamWindow": 36,
        "service": {"cluster": "llm_upstream", "failOpen": false}}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();
    check_cut(&gw);
    assert!(gw.mock.requests_to("/v1/moderations").unwrap().len() >= 5);
}

/// A short answer whose every event, the finishing one included, lands in the first held window:
/// the cut still says why (a `content_filter` finish), through the official SDK too.
#[test]
fn a_short_stream_cut_in_its_first_window_says_why() {
    let config = r#"{"checkRequest": false, "checkResponse": true, "denyWords": ["pangram"]}"#;
    // An Anthropic upstream: OpenAI clients get its answer translated, Anthropic ones natively.
    let proxy = r#"{"provider": {"type": "claude", "apiTokens": ["sk-ant"]}}"#;
    let options = Options::plugin(PLUGIN, config).with_plugin("ai-proxy", proxy);
    let gw = Gateway::start(MOCK, &options).unwrap();
    let url = format!("{}/v1/chat/completions", gw.envoy.url());
    let headers = [("x-mock-content", "the last word is pangram")];
    let (status, reads) = gw
        .client
        .post_stream(&url, &headers, &chat("go", true))
        .unwrap();
    assert_eq!(status, 200);
    let body = String::from_utf8(reads.into_iter().flat_map(|(_, b)| b).collect()).unwrap();
    assert!(!body.contains("pangram"), "{body}");
    let events = sse_events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    let finishes: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .map(|c| c["choices"][0]["finish_reason"].clone())
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [json!("content_filter")], "{body}");

    // An Anthropic client gets a refusal stop.
    let url = format!("{}/v1/messages", gw.envoy.url());
    let req = json!({"model": "claude-x", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "go"}]});
    let (status, reads) = gw
        .client
        .post_stream(&url, &headers, &req.to_string())
        .unwrap();
    assert_eq!(status, 200);
    let body = String::from_utf8(reads.into_iter().flat_map(|(_, b)| b).collect()).unwrap();
    assert!(!body.contains("pangram"), "{body}");
    let events: Vec<Value> = sse_events(&body)
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    let stops: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["delta"].get("stop_reason"))
        .filter(|r| !r.is_null())
        .collect();
    assert_eq!(stops, [&json!("refusal")], "{body}");
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("message_stop"))
    );
}

/// Responses API clients (the official SDK) are moderated too: a denied prompt gets the refusal
/// as an `incomplete` response (reason `content_filter`), streamed or not, and a streamed answer
/// from a provider without the Responses API is cut with `response.incomplete`.
#[test]
fn responses_clients_are_moderated_and_refused_in_their_shape() {
    let config = r#"{"denyWords": ["bomb", "pangram"], "checkResponse": true,
        "denyMessage": "I cannot help with that."}"#;
    let proxy = r#"{"provider": {"type": "claude", "apiTokens": ["sk-ant"]}}"#;
    let options = Options::plugin(PLUGIN, config).with_plugin("ai-proxy", proxy);
    let gw = Gateway::start(MOCK, &options).unwrap();
    let base = format!("{}/v1", gw.envoy.url());
    let sdk = |args: &[&str]| {
        let mut all = vec![base.as_str(), "claude-haiku-4-5"];
        all.extend_from_slice(args);
        e2e::run_sdk_script("openai_responses_once.py", &all)
            .unwrap_or_else(|e| panic!("{e}\n{}", gw.envoy.log()))
    };
    for mode in [&[][..], &["stream"][..]] {
        let mut args = vec!["how to build a bomb"];
        args.extend_from_slice(mode);
        let out = sdk(&args);
        assert_eq!(out["text"], "I cannot help with that.", "{out}");
        assert_eq!(out["status"], "incomplete", "{out}");
        assert_eq!(out["reason"], "content_filter", "{out}");
    }
    assert!(
        gw.mock.requests().unwrap().is_empty(),
        "a denied prompt never reaches the provider"
    );
    // The provider's answer holds a denied word: the stream is cut before it.
    let out = sdk(&["hi", "stream", "x-mock-content=the last word is pangram"]);
    assert!(!out["text"].as_str().unwrap().contains("pangram"), "{out}");
    assert_eq!(out["status"], "incomplete", "{out}");
    assert_eq!(out["reason"], "content_filter", "{out}");
    let events = out["events"].as_array().unwrap();
    assert_eq!(events.first().unwrap(), "response.created", "{out}");
    assert_eq!(events.last().unwrap(), "response.incomplete", "{out}");
    // A clean answer arrives whole.
    let out = sdk(&["hi", "stream"]);
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["text"], "w0 w1 w2 w3 w4 ", "{out}");
}
