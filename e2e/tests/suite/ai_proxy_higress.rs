//! ai-proxy's Higress drop-in features through a real Envoy, driven by the official `openai` and
//! `anthropic` SDKs where a client call exists: DashScope native embeddings and rerank, Claude
//! Code mode, MiniMax ChatCompletion Pro, Dify's conversation query, and Anthropic-style thinking
//! for ZhipuAI and OpenRouter. The mock provider answers in each upstream's own wire format and
//! records what it received.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

fn gateway(config: &str) -> Gateway {
    Gateway::start(MOCK, &Options::plugin("ai-proxy", config)).unwrap()
}

fn script(gw: &Gateway, model: &str, what: &str) -> Value {
    run_sdk_script("openai_china.py", &[&gw.envoy.url(), model, what]).unwrap()
}

#[test]
fn qwen_native_embeddings_through_the_openai_sdk() {
    let gw = gateway(
        r#"{"provider":{"type":"qwen","apiTokens":["ds-key"],
            "modelMapping":{"text-embedding-3-small":"text-embedding-v3"}}}"#,
    );
    let out = script(&gw, "text-embedding-3-small", "embeddings");
    assert_eq!(out["object"], "list", "{out}");
    assert_eq!(out["model"], "text-embedding-v3");
    // The mock's vectors: 8 numbers unless a dimension is asked; DashScope's own numbers.
    assert_eq!(
        out["data"],
        json!([{"index": 0, "len": 8, "first": 0.01}, {"index": 1, "len": 8, "first": 0.017}])
    );
    // Word counts stand in for tokens: "red apple" + "green pear tree".
    assert_eq!(out["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));
    assert_eq!(
        out["one"],
        json!({"len": 4, "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    );
    let sent = gw.mock.requests().unwrap();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for r in &sent {
        assert_eq!(
            r["path"],
            "/api/v1/services/embeddings/text-embedding/text-embedding"
        );
        assert_eq!(r["headers"]["host"], "dashscope.aliyuncs.com");
        assert_eq!(r["headers"]["authorization"], "Bearer ds-key");
    }
    // The SDK sends `encoding_format: base64` by default; DashScope gets only its own fields.
    assert_eq!(
        sent[0]["body_json"],
        json!({"model": "text-embedding-v3", "input": {"texts": ["red apple", "green pear tree"]}})
    );
    assert_eq!(sent[1]["body_json"]["parameters"], json!({"dimension": 4}));

    // DashScope's errors in OpenAI's shape.
    let body = r#"{"model":"text-embedding-3-small","input":"x"}"#;
    let resp = gw
        .post("/v1/embeddings", &[("x-mock-status", "429")], body)
        .unwrap();
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert_eq!(
        resp.json().unwrap()["error"]["code"],
        "Throttling.RateQuota"
    );
    // Token arrays are not text: refused before anything is sent.
    gw.mock.clear().unwrap();
    let resp = gw
        .post("/v1/embeddings", &[], r#"{"model":"m","input":[[1,2,3]]}"#)
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(gw.mock.requests().unwrap().is_empty());
}

/// No SDK has a rerank call: plain HTTP, as Higress's clients send it.
#[test]
fn qwen_rerank_native_and_compatible() {
    let gw = gateway(
        r#"{"_rules_":[
            {"_match_domain_":["native.test"],"provider":{"type":"qwen","apiTokens":["ds-key"],
                "modelMapping":{"rerank":"gte-rerank-v2"}}},
            {"_match_domain_":["compat.test"],"provider":{"type":"qwen","apiTokens":["ds-key"],
                "qwenEnableCompatible":true,"modelMapping":{"*":"qwen3-rerank"}}}]}"#,
    );
    // Native: DashScope's own body goes on with the model mapped; its answer comes back as is.
    let native = json!({"model": "rerank", "input": {"query": "red apple",
        "documents": ["a pear", "red apple pie", "red car"]},
        "parameters": {"top_n": 2, "return_documents": true}});
    let resp = gw
        .post(
            "/v1/reranks",
            &[("host", "native.test")],
            &native.to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(v["output"]["results"][0]["index"], 1, "{v}");
    assert_eq!(v["output"]["results"][0]["relevance_score"], 1.0);
    assert_eq!(v["output"]["results"][1]["document"]["text"], "red car");
    assert_eq!(v["usage"]["total_tokens"], 9);
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(
        got["path"],
        "/api/v1/services/rerank/text-rerank/text-rerank"
    );
    assert_eq!(got["headers"]["host"], "dashscope.aliyuncs.com");
    assert_eq!(got["headers"]["authorization"], "Bearer ds-key");
    let mut expected = native.clone();
    expected["model"] = json!("gte-rerank-v2");
    assert_eq!(got["body_json"], expected);

    // Compatible mode: `/compatible-api/v1/reranks`, the same body shape as the client's.
    let compat = json!({"model": "any", "query": "red apple",
        "documents": ["a pear", "red apple pie"], "top_n": 1});
    let resp = gw
        .post(
            "/v1/reranks",
            &[("host", "compat.test")],
            &compat.to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(
        v["results"],
        json!([{"index": 1, "relevance_score": 1.0}]),
        "{v}"
    );
    assert_eq!(v["model"], "qwen3-rerank");
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/compatible-api/v1/reranks");
    assert_eq!(got["body_json"]["model"], "qwen3-rerank");
    assert_eq!(got["headers"]["authorization"], "Bearer ds-key");

    // DashScope's errors in OpenAI's shape; a body that is not JSON is refused before sending.
    let resp = gw
        .post(
            "/v1/reranks",
            &[("host", "native.test"), ("x-mock-status", "429")],
            &native.to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert_eq!(
        resp.json().unwrap()["error"]["code"],
        "Throttling.RateQuota"
    );
    let bad = json!({"model": "rerank", "query": "q", "documents": ["d"]});
    let resp = gw
        .post("/v1/reranks", &[("host", "native.test")], &bad.to_string())
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(resp.json().unwrap()["error"]["code"], "InvalidParameter");
    gw.mock.clear().unwrap();
    let resp = gw
        .post("/v1/reranks", &[("host", "native.test")], "{not json")
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(gw.mock.requests().unwrap().is_empty());
}

fn assert_claude_code_headers(r: &Value) {
    let h = &r["headers"];
    assert_eq!(h["authorization"], "Bearer sk-ant-oat01-token", "{r}");
    assert!(h.get("x-api-key").is_none(), "{r}");
    assert_eq!(h["user-agent"], "claude-cli/2.1.2 (external, cli)");
    assert_eq!(h["x-app"], "cli");
    assert_eq!(
        h["anthropic-beta"],
        "oauth-2025-04-20,interleaved-thinking-2025-05-14,claude-code-20250219"
    );
    assert_eq!(h["anthropic-version"], "2023-06-01");
    assert_eq!(r["path"], "/v1/messages");
    assert_eq!(r["query"], "beta=true", "{r}");
}

#[test]
fn claude_code_mode_through_both_sdks() {
    let gw = gateway(
        r#"{"provider":{"type":"claude","apiTokens":["sk-ant-oat01-token"],"claudeCodeMode":true,
            "modelMapping":{"*":"claude-sonnet-4-5"}}}"#,
    );
    let out = script(&gw, "gpt-4o", "chat");
    assert_eq!(
        out["text"]["content"], "mock reply from claude-sonnet-4-5",
        "{out}"
    );
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    // Claude Code's system prompt (9 words) counts when the client gives none: 9 + "Count".
    assert_eq!(out["stream"]["usage"]["prompt_tokens"], 10, "{out}");
    let sent = gw.mock.requests().unwrap();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for r in &sent {
        assert_claude_code_headers(r);
    }
    assert_eq!(
        sent[0]["body_json"]["system"],
        json!([{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        sent[1]["body_json"]["system"],
        json!([{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
            "cache_control": {"type": "ephemeral"}}])
    );

    // An Anthropic client's own request keeps its body; the headers and query are Claude Code's.
    gw.mock.clear().unwrap();
    let out = run_sdk_script("anthropic_client.py", &[&gw.envoy.url(), "claude-x"]).unwrap();
    assert_eq!(
        out["text"]["content"], "mock reply from claude-sonnet-4-5",
        "{out}"
    );
    let sent = gw.mock.requests().unwrap();
    assert!(!sent.is_empty());
    for r in &sent {
        assert_claude_code_headers(r);
    }
    assert_eq!(sent[0]["body_json"]["system"], "Be brief.");
    assert!(!gw.envoy.log().contains("sk-ant-oat01-token"));
}

#[test]
fn minimax_pro_through_the_openai_sdk() {
    let gw = gateway(
        r#"{"provider":{"type":"minimax","apiTokens":["mm-key"],"minimaxApiType":"pro",
            "minimaxGroupId":"1782658868262748467","modelMapping":{"*":"abab6.5s-chat"}}}"#,
    );
    let out = script(&gw, "gpt-4o", "chat");
    assert_eq!(
        out["text"]["content"], "mock reply from abab6.5s-chat",
        "{out}"
    );
    assert_eq!(out["text"]["finish"], "stop");
    assert_eq!(out["text"]["id"], "mock-minimax-1");
    // MiniMax reports the total alone: "Be brief." + "Say hello" + the 4 answer words.
    let usage = &out["text"]["usage"];
    assert_eq!(usage["prompt_tokens"], 0, "{usage}");
    assert_eq!(usage["completion_tokens"], 0);
    assert_eq!(usage["total_tokens"], 8);
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    assert_eq!(out["stream"]["finish"], "stop");
    // The default bot setting (1 word) + "Count" + the 5 pieces.
    assert_eq!(out["stream"]["usage"]["total_tokens"], 7, "{out}");
    let sent = gw.mock.requests().unwrap();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for r in &sent {
        assert_eq!(r["path"], "/v1/text/chatcompletion_pro");
        assert_eq!(r["query"], "GroupId=1782658868262748467");
        assert_eq!(r["headers"]["host"], "api.minimax.chat");
        assert_eq!(r["headers"]["authorization"], "Bearer mm-key");
    }
    assert_eq!(
        sent[0]["body_json"],
        json!({"model": "abab6.5s-chat", "mask_sensitive_info": true, "tokens_to_generate": 50,
            "messages": [{"sender_type": "USER", "sender_name": "用户", "text": "Say hello"}],
            "bot_setting": [{"bot_name": "MM智能助理", "content": "Be brief."}],
            "reply_constraints": {"sender_type": "BOT", "sender_name": "MM智能助理"}})
    );
    assert_eq!(sent[1]["body_json"]["stream"], true);

    // MiniMax fails with HTTP 200 and a status in `base_resp`: the client gets a 502 naming it.
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-minimax-error", "1002")],
            body,
        )
        .unwrap();
    assert_eq!(resp.status, 502, "{}", resp.body);
    let e = resp.json().unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MiniMax error 1002"),
        "{e}"
    );
    let stream = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-minimax-error", "1002")],
            stream,
        )
        .unwrap();
    assert!(resp.body.contains("MiniMax error 1002"), "{}", resp.body);
    // Tools are refused before anything is sent.
    gw.mock.clear().unwrap();
    let tools = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],
        "tools":[{"type":"function","function":{"name":"f"}}]}"#;
    let resp = gw.post("/v1/chat/completions", &[], tools).unwrap();
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(gw.mock.requests().unwrap().is_empty());
}

#[test]
fn dify_gets_the_whole_conversation_as_the_query() {
    let gw = gateway(
        r#"{"_rules_":[
            {"_match_domain_":["chat.test"],"provider":{"type":"dify","apiTokens":["app-key"],
                "difyApiUrl":"https://dify.internal/v1","modelMapping":{"*":"dify"}}},
            {"_match_domain_":["wf.test"],"provider":{"type":"dify","apiTokens":["app-key"],
                "botType":"Workflow","inputVariable":"question","outputVariable":"text"}}]}"#,
    );
    // The SDK reaches the chat rule through its `Host` header.
    let sdk = |host: &str| {
        run_sdk_script(
            "openai_china.py",
            &[&gw.envoy.url(), "gpt-4o", "chat", host],
        )
        .unwrap()
    };
    let out = sdk("chat.test");
    let query = "SYSTEM: \nBe brief.\nUSER: \nSay hello\n";
    assert_eq!(
        out["text"]["content"],
        format!("mock answer to: {query}"),
        "{out}"
    );
    assert_eq!(out["text"]["finish"], "stop");
    assert_eq!(out["stream"]["content"], "mock answer to: USER: \nCount\n");
    assert_eq!(out["stream"]["finish"], "stop");
    assert!(out["stream"]["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let sent = gw.mock.requests().unwrap();
    let chats: Vec<&Value> = sent
        .iter()
        .filter(|r| r["path"] == "/v1/chat-messages")
        .collect();
    assert_eq!(chats.len(), 2, "{sent:?}");
    assert_eq!(chats[0]["headers"]["host"], "dify.internal");
    assert_eq!(chats[0]["headers"]["authorization"], "Bearer app-key");
    assert_eq!(
        chats[0]["body_json"],
        json!({"query": query, "inputs": {}, "response_mode": "blocking", "user": "api-user",
            "auto_generate_name": false})
    );
    assert_eq!(chats[1]["body_json"]["response_mode"], "streaming");

    // A longer conversation: every turn, labelled as Higress labels it.
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of France?"}]});
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("host", "wf.test")],
            &body.to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let transcript = "USER: \nHi\nASSISTANT: \nHello!\nUSER: \nCapital of France?\n";
    assert_eq!(
        resp.json().unwrap()["choices"][0]["message"]["content"],
        format!("mock answer to: {transcript}")
    );
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/v1/workflows/run");
    assert_eq!(got["headers"]["host"], "api.dify.ai");
    assert_eq!(got["body_json"]["inputs"], json!({"question": transcript}));
}

#[test]
fn anthropic_thinking_reaches_zhipuai_and_openrouter() {
    let gw = gateway(
        r#"{"_rules_":[
            {"_match_domain_":["zhipu.test"],"provider":{"type":"zhipuai","apiTokens":["zp-key"],
                "modelMapping":{"*":"glm-4.5"}}},
            {"_match_domain_":["or.test"],"provider":{"type":"openrouter","apiTokens":["or-key"],
                "modelMapping":{"*":"deepseek/deepseek-r1"}}}]}"#,
    );
    for (host, path, model) in [
        ("zhipu.test", "/api/paas/v4/chat/completions", "glm-4.5"),
        (
            "or.test",
            "/api/v1/chat/completions",
            "deepseek/deepseek-r1",
        ),
    ] {
        gw.mock.clear().unwrap();
        // The script sends the rule's domain as the Host header.
        let out = run_sdk_script(
            "openai_china.py",
            &[&gw.envoy.url(), "claude-sonnet-4-5", "thinking", host],
        )
        .unwrap();
        let answer = format!("mock reply from {model}");
        assert_eq!(
            out["text"]["thinking"], "thought about: Why is the sky blue?",
            "{host}: {out}"
        );
        assert_eq!(out["text"]["content"], answer);
        assert_eq!(
            out["stream"]["thinking"], "thought about: Count",
            "{host}: {out}"
        );
        assert_eq!(out["stream"]["content"], answer);
        assert_eq!(out["followup"], answer);
        assert_eq!(out["plain"], answer);
        let sent = gw.mock.requests().unwrap();
        assert_eq!(sent.len(), 4, "{host}: {sent:?}");
        for r in &sent {
            assert_eq!(r["path"], path, "{host}");
            assert!(r["body_json"].get("reasoning_effort").is_none(), "{r}");
        }
        let bodies: Vec<&Value> = sent.iter().map(|r| &r["body_json"]).collect();
        // The first turn's thinking goes back as the assistant's reasoning_content.
        assert_eq!(
            bodies[2]["messages"][1]["reasoning_content"], "thought about: Why is the sky blue?",
            "{host}: {}",
            bodies[2]
        );
        if host == "zhipu.test" {
            assert_eq!(bodies[0]["thinking"], json!({"type": "enabled"}));
            assert_eq!(bodies[1]["thinking"], json!({"type": "enabled"}));
            assert_eq!(
                bodies[2]["thinking"],
                json!({"type": "enabled", "clear_thinking": false})
            );
            assert_eq!(bodies[3]["thinking"], json!({"type": "disabled"}));
        } else {
            for b in &bodies[..3] {
                assert_eq!(b["reasoning"], json!({"max_tokens": 2048}), "{b}");
            }
            assert!(bodies[3].get("reasoning").is_none(), "{}", bodies[3]);
        }
    }

    // An OpenAI client of ZhipuAI gets the reasoning as `reasoning_content`, whole and streamed.
    gw.mock.clear().unwrap();
    let out = run_sdk_script(
        "openai_china.py",
        &[&gw.envoy.url(), "gpt-4o", "chat", "zhipu.test"],
    )
    .unwrap();
    assert_eq!(
        out["text"]["reasoning"], "thought about: Say hello",
        "{out}"
    );
    assert_eq!(out["text"]["content"], "mock reply from glm-4.5");
    assert_eq!(out["stream"]["reasoning"], "thought about: Count", "{out}");
    assert_eq!(out["stream"]["content"], "mock reply from glm-4.5");
    // `reasoning_effort` from an OpenAI client switches ZhipuAI's thinking on.
    let body =
        r#"{"model":"m","reasoning_effort":"high","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .post("/v1/chat/completions", &[("host", "zhipu.test")], body)
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["body_json"]["thinking"], json!({"type": "enabled"}));
    assert!(got["body_json"].get("reasoning_effort").is_none());
    // OpenRouter's `reasoning_max_tokens` spelling becomes `reasoning.max_tokens`.
    let body =
        r#"{"model":"m","reasoning_max_tokens":512,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .post("/v1/chat/completions", &[("host", "or.test")], body)
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(
        v["choices"][0]["message"]["reasoning"], "thought about: hi",
        "{v}"
    );
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["body_json"]["reasoning"], json!({"max_tokens": 512}));
}
