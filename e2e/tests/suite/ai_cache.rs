//! ai-cache through a real Envoy: the embedded store (config `{}`) answering the official
//! OpenAI and Anthropic SDKs in both modes and both orders, keys that never cross system
//! prompts, routes or consumers, semantic lookups in a real Chroma, and Chroma stopped
//! mid-test (misses, never errors).

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::{run_sdk_script, Chroma, Gateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const PLUGIN: &str = "ai-cache";
const CHAT: &str = "/v1/chat/completions";

fn chat(system: &str, question: &str, stream: bool) -> String {
    json!({"model": "gpt-4o", "stream": stream, "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": question}]})
    .to_string()
}

fn upstream_calls(gw: &Gateway, path: &str) -> usize {
    gw.mock.requests_to(path).unwrap().len()
}

/// The SDK's two answers to one question, asked in `modes`.
fn ask_twice(gw: &Gateway, protocol: &str, question: &str, modes: [&str; 2]) -> Vec<Value> {
    let base = match protocol {
        "openai" => format!("{}/v1", gw.envoy.url()),
        _ => gw.envoy.url(),
    };
    let mut args = vec![base.as_str(), protocol, "gpt-4o", "Be brief.", question];
    args.extend(modes);
    let out = run_sdk_script("cache_client.py", &args).unwrap();
    out.as_array().unwrap().clone()
}

#[test]
fn same_request_twice_reaches_the_provider_once_and_every_sdk_parses_the_hit() {
    // Behind the cache, ai-proxy sends both protocols to an Anthropic provider (the mock's
    // `/v1/messages`): an OpenAI client's answer was translated before it was stored.
    let claude = r#"{"provider": {"type": "claude", "apiTokens": ["sk-ant-test"]}}"#;
    let options = Options::plugin(PLUGIN, "{}")
        .with_plugin("ai-statistics", "{}")
        .with_plugin("ai-proxy", claude);
    let gw = Gateway::start(MOCK, &options).unwrap();
    let cases = [
        ("openai", ["json", "stream"]),
        ("openai", ["stream", "json"]),
        ("anthropic", ["json", "stream"]),
        ("anthropic", ["stream", "json"]),
    ];
    let path = "/v1/messages";
    for (i, (protocol, modes)) in cases.into_iter().enumerate() {
        let before = upstream_calls(&gw, path);
        let question = format!("Question number {i} about {protocol}?");
        let answers = ask_twice(&gw, protocol, &question, modes);
        let (first, second) = (&answers[0], &answers[1]);
        let case = format!("{protocol} {modes:?}: {answers:?}");
        assert_eq!(upstream_calls(&gw, path) - before, 1, "{case}");
        assert_eq!(first["cache"], "miss", "{case}");
        assert_eq!(second["cache"], "hit", "{case}");
        // The mock answers JSON and streams with different texts: the hit is the first answer.
        assert!(!first["content"].as_str().unwrap().is_empty(), "{case}");
        assert_eq!(second["content"], first["content"], "{case}");
        assert_eq!(second["finish"], first["finish"], "{case}");
        match protocol {
            "openai" => assert_eq!(second["usage"]["total_tokens"], 0, "{case}"),
            _ => assert_eq!(second["usage"], json!({"input": 0, "output": 0}), "{case}"),
        }
    }
    // Metrics and the access log say what happened.
    assert_eq!(gw.envoy.stat("wasmcustom.ai_cache.hit").unwrap(), Some(4));
    assert_eq!(gw.envoy.stat("wasmcustom.ai_cache.miss").unwrap(), Some(4));
    let logs = gw.envoy.ai_logs(8);
    let statuses: Vec<&str> = logs
        .iter()
        .filter_map(|l| l["cache_status"].as_str())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "hit").count(),
        4,
        "{logs:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "miss").count(),
        4,
        "{logs:?}"
    );
    // A hit costs no provider tokens: statistics count zero.
    for log in logs.iter().filter(|l| l["cache_status"] == "hit") {
        assert_eq!(
            (log["input_token"].as_u64(), log["output_token"].as_u64()),
            (Some(0), Some(0)),
            "{log}"
        );
    }
    let prom = gw.envoy.prometheus().unwrap();
    assert!(
        prom.iter()
            .any(|s| s.name.contains("ai_cache_lookup_duration_ms")),
        "no lookup latency histogram"
    );

    // The skip header: the provider is asked, nothing is served from the cache.
    let body = chat("Be brief.", "Question number 0 about openai?", false);
    let before = upstream_calls(&gw, path);
    let resp = gw
        .post(CHAT, &[("x-higress-skip-ai-cache", "on")], &body)
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-ai-cache"), None);
    assert_eq!(upstream_calls(&gw, path) - before, 1);
}

#[test]
fn keys_never_cross_system_prompts_routes_or_consumers() {
    let config = r#"{"cacheScope": "route",
        "_rules_": [{"_match_route_": ["scoped"], "cacheScope": "consumer"}]}"#;
    let options = Options::plugin(PLUGIN, config).with_route("scoped", "/scoped/");
    let gw = Gateway::start(MOCK, &options).unwrap();
    let post = |path: &str, key: &str, system: &str| {
        let auth = format!("Bearer {key}");
        let resp = gw
            .post(
                path,
                &[("authorization", &auth)],
                &chat(system, "Same question", false),
            )
            .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.header("x-ai-cache").unwrap_or_default().to_string()
    };
    // The global config: shared by consumers of the route, split by system prompt.
    assert_eq!(post(CHAT, "sk-demo-ann", "A"), "miss");
    assert_eq!(post(CHAT, "sk-demo-bob", "A"), "hit");
    assert_eq!(post(CHAT, "sk-demo-ann", "B"), "miss");
    assert_eq!(post(CHAT, "sk-demo-ann", "B"), "hit");
    // Another route never sees the first route's entries.
    let scoped = "/scoped/v1/chat/completions";
    assert_eq!(post(scoped, "sk-demo-ann", "A"), "miss");
    assert_eq!(post(scoped, "sk-demo-ann", "A"), "hit");
    // Per consumer on that route: bob never gets ann's entry.
    assert_eq!(post(scoped, "sk-demo-bob", "A"), "miss");
    assert_eq!(post(scoped, "sk-demo-bob", "A"), "hit");
    assert_eq!(upstream_calls(&gw, "/v1/chat/completions"), 4);
    // A client cannot claim a consumer: the header is replaced by the authenticated one.
    let resp = gw
        .post(
            scoped,
            &[
                ("authorization", "Bearer sk-demo-bob"),
                ("x-mse-consumer", "ann"),
            ],
            &chat("A", "Same question", false),
        )
        .unwrap();
    assert_eq!(resp.header("x-ai-cache"), Some("hit"));
    assert_eq!(upstream_calls(&gw, "/v1/chat/completions"), 4);
}

#[test]
fn requests_outside_the_rules_are_not_cached() {
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, r#"{"maxTemperature": 0.5}"#)).unwrap();
    let body = |extra: Value| {
        let mut v: Value = serde_json::from_str(&chat("s", "q", false)).unwrap();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v.to_string()
    };
    for extra in [json!({"n": 2}), json!({"temperature": 0.9})] {
        for _ in 0..2 {
            let resp = gw.post(CHAT, &[], &body(extra.clone())).unwrap();
            assert_eq!(resp.status, 200, "{}", resp.body);
            assert_eq!(resp.header("x-ai-cache"), None, "{extra}");
        }
    }
    assert_eq!(upstream_calls(&gw, CHAT), 4);
    // Tool calls are cached (tools are part of the key), answered in the same shape.
    let tools = json!({"tools": [{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object"}}}]});
    let first = gw.post(CHAT, &[], &body(tools.clone())).unwrap();
    let second = gw.post(CHAT, &[], &body(tools)).unwrap();
    assert_eq!(second.header("x-ai-cache"), Some("hit"), "{}", second.body);
    let call = |r: &e2e::http::Response| {
        r.json().unwrap()["choices"][0]["message"]["tool_calls"][0].clone()
    };
    assert_eq!(call(&second)["function"], call(&first)["function"]);
    assert_eq!(upstream_calls(&gw, CHAT), 5);
}

fn semantic_config(chroma: &Chroma, vectors: &str, exact: Option<&str>) -> String {
    let mut config = json!({
        "embedding": {"type": "openai", "serviceName": "llm_upstream", "model": "text-embedding-3-small", "timeout": 1000},
        "vector": {"type": "chroma", "serviceName": "chroma", "collectionID": vectors,
                   "threshold": 0.5, "thresholdRelation": "lt", "timeout": 1000}
    });
    if let Some(exact) = exact {
        config["cache"] = json!({"type": "chroma", "serviceName": "chroma", "collectionID": exact, "timeout": 1000});
    }
    let _ = chroma;
    config.to_string()
}

#[test]
fn semantic_lookups_in_chroma_hit_near_questions_and_miss_unrelated_ones() {
    let chroma = Chroma::start().unwrap();
    let vectors = chroma.create_collection("ai-cache-vectors").unwrap();
    let options = Options {
        chroma_port: Some(chroma.port),
        ..Options::plugin(PLUGIN, &semantic_config(&chroma, &vectors, None))
    };
    let gw = Gateway::start(MOCK, &options).unwrap();
    let ask = |question: &str, stream: bool| {
        let resp = gw
            .post(CHAT, &[], &chat("Be brief.", question, stream))
            .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp
    };
    let first = ask("What is the capital of France?", false);
    assert_eq!(first.header("x-ai-cache"), Some("miss"));
    assert_eq!(chroma.count(&vectors).unwrap(), 1);
    // A differently worded question: near enough, served from Chroma.
    let near = ask("what is the capital city of France", false);
    assert_eq!(near.header("x-ai-cache"), Some("hit"), "{}", gw.envoy.log());
    assert_eq!(
        near.json().unwrap()["choices"][0]["message"]["content"],
        first.json().unwrap()["choices"][0]["message"]["content"]
    );
    // The same, streamed: replayed as SSE.
    let streamed = ask("What is the capital of France", true);
    assert_eq!(streamed.header("x-ai-cache"), Some("hit"));
    assert!(streamed.body.contains("data: [DONE]"));
    assert_eq!(upstream_calls(&gw, CHAT), 1);
    // An unrelated question: a miss, asked and stored.
    let far = ask("How do I bake sourdough bread?", false);
    assert_eq!(far.header("x-ai-cache"), Some("miss"));
    assert_eq!(upstream_calls(&gw, CHAT), 2);
    assert_eq!(chroma.count(&vectors).unwrap(), 2);
    // The embeddings came from the provider's /v1/embeddings.
    assert_eq!(upstream_calls(&gw, "/v1/embeddings"), 4);
    // A streamed miss is stored once complete (its last chunk waits for the upsert), then
    // served to a JSON client.
    let streamed = ask("Tell me about the Eiffel tower", true);
    assert_eq!(streamed.header("x-ai-cache"), Some("miss"));
    assert!(streamed.body.contains("data: [DONE]"));
    assert_eq!(chroma.count(&vectors).unwrap(), 3);
    let again = ask("Tell me about the Eiffel tower", false);
    assert_eq!(again.header("x-ai-cache"), Some("hit"));
    let text = again.json().unwrap()["choices"][0]["message"]["content"].clone();
    assert_eq!(text, "w0 w1 w2 w3 w4 ", "{}", again.body);
    // Near, but another system prompt: never shared.
    let other = gw
        .post(
            CHAT,
            &[],
            &chat(
                "Answer in French.",
                "what is the capital city of France",
                false,
            ),
        )
        .unwrap();
    assert_eq!(other.header("x-ai-cache"), Some("miss"));
}

#[test]
fn a_store_stopped_mid_test_turns_lookups_into_misses_never_errors() {
    let mut chroma = Chroma::start().unwrap();
    let vectors = chroma.create_collection("ai-cache-vectors").unwrap();
    let exact = chroma.create_collection("ai-cache-exact").unwrap();
    let options = Options {
        chroma_port: Some(chroma.port),
        ..Options::plugin(PLUGIN, &semantic_config(&chroma, &vectors, Some(&exact)))
    };
    let gw = Gateway::start(MOCK, &options).unwrap();
    // Exact entries live in Chroma by id, semantic ones by embedding.
    let body = chat("Be brief.", "Name a colour.", false);
    assert_eq!(
        gw.post(CHAT, &[], &body).unwrap().header("x-ai-cache"),
        Some("miss")
    );
    assert_eq!(
        gw.post(CHAT, &[], &body).unwrap().header("x-ai-cache"),
        Some("hit")
    );
    assert_eq!(
        (
            chroma.count(&exact).unwrap(),
            chroma.count(&vectors).unwrap()
        ),
        (1, 1)
    );
    assert_eq!(upstream_calls(&gw, CHAT), 1);

    chroma.stop();
    for (i, stream) in [false, true, false, true].into_iter().enumerate() {
        let started = Instant::now();
        let question = if i < 2 {
            "Name a colour."
        } else {
            "Name a fruit."
        };
        let resp = gw
            .post(CHAT, &[], &chat("Be brief.", question, stream))
            .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.header("x-ai-cache"), Some("miss"));
        assert!(!resp.body.contains("error"), "{}", resp.body);
        // Each lookup and store waits at most its timeout (1 s here).
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(upstream_calls(&gw, CHAT), 5);
    assert!(
        gw.envoy
            .stat("wasmcustom.ai_cache.error")
            .unwrap()
            .unwrap_or(0)
            >= 4
    );
}

#[test]
fn hits_cost_no_tokens_in_the_rate_limiters_budget() {
    // 300 tokens an hour: the miss costs a few dozen; forty hits would cost far more if they
    // were charged their prompt (the limiter reserves it before the cache answers).
    let limit = r#"{"rule_name": "cache", "global_threshold": {"token_per_hour": 300}}"#;
    let options = Options::plugin(PLUGIN, "{}").with_plugin("ai-token-ratelimit", limit);
    let gw = Gateway::start(MOCK, &options).unwrap();
    let body = chat(
        "You are a helpful assistant that answers every question about geography briefly.",
        "Which river flows through the middle of Paris, and how long is it in kilometres?",
        false,
    );
    let first = gw.post(CHAT, &[], &body).unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-ai-cache"), Some("miss"));
    for i in 0..40 {
        let resp = gw.post(CHAT, &[], &body).unwrap();
        assert_eq!(resp.status, 200, "hit {i}: {}", resp.body);
        assert_eq!(resp.header("x-ai-cache"), Some("hit"));
    }
    // The budget still has room for a new question.
    let other = chat("Be brief.", "Name a mountain.", false);
    let resp = gw.post(CHAT, &[], &other).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(upstream_calls(&gw, CHAT), 2);
}

/// Many distinct questions: each misses once, then each is a hit (the embedded store keeps
/// them all). What a hit saves in latency and CPU is measured by `make bench`, not here.
#[test]
fn each_question_misses_once_then_hits() {
    const N: usize = 60;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, "{}")).unwrap();
    let question = |i: usize| format!("Question {i:05} for the measurement of the cache?");
    let statuses = || {
        (0..N)
            .map(|i| {
                let resp = gw
                    .post(CHAT, &[], &chat("Be brief.", &question(i), false))
                    .unwrap();
                assert_eq!(resp.status, 200, "{}", resp.body);
                resp.header("x-ai-cache").unwrap_or_default().to_string()
            })
            .collect::<Vec<_>>()
    };
    assert!(statuses().iter().all(|s| s == "miss"));
    assert!(statuses().iter().all(|s| s == "hit"));
    // Only the misses reached the provider.
    assert_eq!(upstream_calls(&gw, CHAT), N);
}

#[test]
fn entries_expire_and_the_oldest_are_evicted() {
    let config = r#"{"cache": {"type": "memory", "cacheTTL": 1, "maxEntries": 2}}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();
    let ask = |q: &str| {
        let resp = gw.post(CHAT, &[], &chat("s", q, false)).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.header("x-ai-cache").unwrap_or_default().to_string()
    };
    assert_eq!(ask("one"), "miss");
    assert_eq!(ask("one"), "hit");
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(ask("one"), "miss");
    // Two entries at most: a third evicts the oldest.
    assert_eq!(ask("two"), "miss");
    assert_eq!(ask("three"), "miss");
    assert_eq!(ask("three"), "hit");
    assert_eq!(ask("two"), "hit");
    assert_eq!(ask("one"), "miss");
}
