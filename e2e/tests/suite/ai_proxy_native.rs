//! ai-proxy to natively translated providers (Gemini, Vertex AI, Cohere, Bedrock, DashScope,
//! Triton) through a real Envoy: the official `openai` SDK parses every answer; usage is what the
//! upstream reported.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

fn gateway(config: &str) -> Gateway {
    Gateway::start(MOCK, &Options::plugin("ai-proxy", config)).unwrap()
}

/// Runs the SDK script (text, stream, tool call, streamed tool call, tool follow-up turn).
fn sdk(gw: &Gateway, model: &str) -> Value {
    run_sdk_script(
        "openai_client.py",
        &[&format!("{}/v1", gw.envoy.url()), model, "followup"],
    )
    .unwrap()
}

fn usage(prompt: u64, completion: u64) -> (u64, u64, u64) {
    (prompt, completion, prompt + completion)
}

fn usage_of(v: &Value) -> (u64, u64, u64) {
    (
        v["prompt_tokens"].as_u64().unwrap(),
        v["completion_tokens"].as_u64().unwrap(),
        v["total_tokens"].as_u64().unwrap(),
    )
}

fn assert_sdk_answers(out: &Value, text: &str) {
    assert_eq!(out["text"]["content"], text, "{out}");
    assert_eq!(out["text"]["finish"], "stop");
    // "Be brief." + "Say hello" = 4 prompt words; the answer's words are the output tokens.
    let words = text.split_whitespace().count() as u64;
    assert_eq!(usage_of(&out["text"]["usage"]), usage(4, words), "{out}");
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    assert_eq!(out["stream"]["finish"], "stop");
    assert_eq!(usage_of(&out["stream"]["usage"]), usage(1, 5), "{out}");
    let call =
        json!({"name": "get_weather", "arguments": {"location": "Paris"}, "finish": "tool_calls"});
    assert_eq!(out["tool"], call);
    assert_eq!(out["tool_stream"], call);
    assert_eq!(out["followup"]["content"], text, "{out}");
}

#[test]
fn gemini_through_the_openai_sdk() {
    let gw = gateway(
        r#"{"provider":{"type":"gemini","apiTokens":["g-key"],"modelMapping":{"*":"gemini-2.5-flash"},
            "geminiSafetySetting":{"HARM_CATEGORY_HARASSMENT":"BLOCK_NONE"}}}"#,
    );
    let out = sdk(&gw, "gpt-4o");
    assert_sdk_answers(&out, "mock reply from gemini-2.5-flash");
    let sent = gw.mock.requests().unwrap();
    let paths: Vec<&str> = sent.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        ]
    );
    assert_eq!(sent[1]["query"], "alt=sse");
    for r in &sent {
        assert_eq!(r["headers"]["host"], "generativelanguage.googleapis.com");
        assert_eq!(r["headers"]["x-goog-api-key"], "g-key");
        assert!(r["headers"].get("authorization").is_none(), "{r}");
    }
    let first = &sent[0]["body_json"];
    assert_eq!(first["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(first["safetySettings"][0]["threshold"], "BLOCK_NONE");
    assert!(first.get("model").is_none() && first.get("messages").is_none());
    // The follow-up carried the thought signature back (the mock refuses a call without it).
    let followup = &sent[3]["body_json"]["contents"][1]["parts"][0];
    assert!(followup["thoughtSignature"].is_string(), "{followup}");

    // Thinking: reasoning_content, and thought tokens inside completion_tokens.
    let body = json!({"model": "gpt-4o", "reasoning_effort": "low",
        "messages": [{"role": "user", "content": "think"}]});
    let resp = gw
        .post("/v1/chat/completions", &[], &body.to_string())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Thinking about the answer."
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        4
    );
    assert_eq!(v["usage"]["completion_tokens"], 4 + 4);

    // Provider errors in OpenAI's shape, with the provider's status.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-status", "429")],
            &body.to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert!(resp.json().unwrap()["error"]["message"].is_string());

    // Embeddings through `:batchEmbedContents`, answered in OpenAI's shape.
    gw.mock.clear().unwrap();
    let body = json!({"model": "text-embedding-3-small", "input": ["one", "two words"]});
    let resp = gw.post("/v1/embeddings", &[], &body.to_string()).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(v["object"], "list", "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert!(v["data"][1]["embedding"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    let sent = gw.last_upstream_request().unwrap();
    assert_eq!(
        sent["path"],
        "/v1beta/models/gemini-2.5-flash:batchEmbedContents"
    );
    assert!(!gw.envoy.log().contains("g-key"));
}

#[test]
fn vertex_express_mode_and_cohere() {
    let gw = gateway(
        r#"{"provider":{"type":"vertex","apiTokens":["v-key"],"reasoningContentMode":"concat"}}"#,
    );
    // `reasoningContentMode: concat`: the thoughts in front of the answer, in <think> tags.
    let think = r#"{"model":"gemini-2.5-pro","reasoning_effort":"low","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw.post("/v1/chat/completions", &[], think).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "<think>Thinking about the answer.</think>\nmock reply from gemini-2.5-pro"
    );
    assert!(v["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[],
            r#"{"model":"gemini-2.5-pro","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.body.contains("\"content\":\"w0 \""), "{}", resp.body);
    assert!(resp.body.trim_end().ends_with("data: [DONE]"));
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(
        got["path"],
        "/v1/publishers/google/models/gemini-2.5-pro:streamGenerateContent"
    );
    assert_eq!(got["headers"]["host"], "aiplatform.googleapis.com");
    assert_eq!(got["headers"]["x-goog-api-key"], "v-key");
    drop(gw);

    let gw = gateway(r#"{"provider":{"type":"cohere","apiTokens":["co-key"]}}"#);
    let out = sdk(&gw, "command-a");
    assert_sdk_answers_cohere(&out);
    let sent = gw.mock.requests_to("/v2/chat").unwrap();
    assert_eq!(sent.len(), 5);
    for r in &sent {
        assert_eq!(r["headers"]["host"], "api.cohere.com");
        assert_eq!(r["headers"]["authorization"], "Bearer co-key");
    }
    assert_eq!(sent[1]["headers"]["accept"], "text/event-stream");
    let resp = gw
        .post(
            "/v1/embeddings",
            &[],
            r#"{"model":"embed-v4.0","input":["a b","c"]}"#,
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(gw.last_upstream_request().unwrap()["path"], "/v2/embed");
}

fn assert_sdk_answers_cohere(out: &Value) {
    assert_eq!(out["text"]["content"], "mock reply from command-a", "{out}");
    assert_eq!(usage_of(&out["text"]["usage"]), usage(4, 4), "{out}");
    assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
    assert_eq!(usage_of(&out["stream"]["usage"]), usage(1, 5), "{out}");
    let call =
        json!({"name": "get_weather", "arguments": {"location": "Paris"}, "finish": "tool_calls"});
    assert_eq!(out["tool"], call);
    assert_eq!(out["tool_stream"], call);
    assert_eq!(
        out["followup"]["content"], "mock reply from command-a",
        "{out}"
    );
}

#[test]
fn bedrock_signed_with_sigv4_through_the_openai_sdk() {
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    let gw = gateway(&format!(
        r#"{{"provider":{{"type":"bedrock","awsAccessKey":"AKIDMOCKBEDROCK",
            "awsSecretKey":"mock-bedrock-secret","awsRegion":"us-east-1",
            "modelMapping":{{"*":"{model}"}}}}}}"#
    ));
    // The mock checks every SigV4 signature against the request it received (403 otherwise).
    let out = sdk(&gw, "gpt-4o");
    assert_sdk_answers(&out, &format!("mock reply from {model}"));
    let sent = gw.mock.requests().unwrap();
    assert_eq!(sent.len(), 5);
    assert_eq!(
        sent[0]["path"],
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(
        sent[1]["path"],
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    );
    for r in &sent {
        assert_eq!(
            r["headers"]["host"],
            "bedrock-runtime.us-east-1.amazonaws.com"
        );
        let auth = r["headers"]["authorization"].as_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCKBEDROCK/"),
            "{auth}"
        );
        assert!(r["headers"]["x-amz-date"].is_string());
    }
    assert_eq!(sent[0]["body_json"]["system"][0]["text"], "Be brief.");
    assert!(sent[2]["body_json"]["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather");

    // Bedrock's errors (type in `x-amzn-errortype`) in OpenAI's shape.
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .post("/v1/chat/completions", &[("x-mock-status", "429")], body)
        .unwrap();
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert_eq!(resp.json().unwrap()["error"]["type"], "rate_limit_exceeded");
    // An exception inside the event stream: one error event, then [DONE].
    let stream = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-stream-error", "429")],
            stream,
        )
        .unwrap();
    assert_error_ends_the_stream(&resp, "mock stream failure 429");
    assert!(!gw.envoy.log().contains("mock-bedrock-secret"));
    drop(gw);

    // A Bedrock API key instead of AWS credentials.
    let gw = gateway(
        r#"{"provider":{"type":"bedrock","apiTokens":["mock-bedrock-api-key"],"awsRegion":"eu-west-1"}}"#,
    );
    let resp = gw.post("/v1/chat/completions", &[], body).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "mock reply from m");
    // Converse answers have no id: each gets Bedrock's request id, so no two answers share one.
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-mock-bedrock-"), "{id}");
    let again = gw.post("/v1/chat/completions", &[], body).unwrap();
    assert_ne!(again.json().unwrap()["id"], v["id"]);
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(
        got["headers"]["authorization"],
        "Bearer mock-bedrock-api-key"
    );
    assert_eq!(
        got["headers"]["host"],
        "bedrock-runtime.eu-west-1.amazonaws.com"
    );
    drop(gw);

    // A wrong secret: the mock, checking with AWS's own signer, refuses the signature (Bedrock's
    // 403); the client gets the authentication error it names, status included.
    let gw = gateway(
        r#"{"provider":{"type":"bedrock","awsAccessKey":"AKIDMOCKBEDROCK",
            "awsSecretKey":"not-the-secret","awsRegion":"us-east-1"}}"#,
    );
    let resp = gw.post("/v1/chat/completions", &[], body).unwrap();
    assert_eq!(resp.status, 401, "{}", resp.body);
    let error = &resp.json().unwrap()["error"];
    assert_eq!(error["code"], "InvalidSignatureException", "{error}");
    assert_eq!(error["type"], "authentication_error", "{error}");
}

#[test]
fn vertex_with_a_service_account_token() {
    use rand_chacha::rand_core::SeedableRng;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let private_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let account = json!({"type": "service_account", "project_id": "proj",
        "private_key": private_pem, "client_email": "gw@proj.iam.gserviceaccount.com"});
    let config = json!({"provider": {"type": "vertex", "vertexAuthKey": account.to_string(),
        "vertexRegion": "us-central1", "vertexAuthServiceName": "llm_upstream"}});
    let gw = gateway(&config.to_string());
    // Tokens live 4 s, so the gateway must refresh them while the test runs.
    let resp = gw
        .client
        .post(
            &format!("{}/__mock/oauth/key", gw.mock.url()),
            &[("x-mock-token-ttl", "4")],
            &public_pem,
        )
        .unwrap();
    assert_eq!(resp.status, 204, "{}", resp.body);

    let body = r#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#;
    // The very first request waits for a token exchange of its own (as Higress holds it),
    // instead of failing while the root's first exchange is out.
    let resp = gw.post("/v1/chat/completions", &[], body).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let sent = gw.mock.requests().unwrap();
    let got = sent
        .iter()
        .rev()
        .find(|r| {
            r["path"]
                .as_str()
                .unwrap_or_default()
                .ends_with(":generateContent")
        })
        .unwrap_or_else(|| panic!("{sent:?}"))
        .clone();
    let token = got["headers"]["authorization"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_string();
    assert!(token.starts_with("Bearer mock-token-"), "{token}");
    assert_eq!(
        got["path"],
        "/v1/projects/proj/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        got["headers"]["host"],
        "us-central1-aiplatform.googleapis.com"
    );
    // The official SDK over Vertex: text, stream, tools, the signature round trip.
    let out = sdk(&gw, "gemini-2.5-flash");
    assert_sdk_answers(&out, "mock reply from gemini-2.5-flash");
    let exchange = gw.mock.requests_to("/token").unwrap();
    assert!(!exchange.is_empty());
    assert_eq!(exchange[0]["headers"]["host"], "oauth2.googleapis.com");

    // The token is refreshed before it expires, for every worker: requests keep succeeding.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let resp = gw.post("/v1/chat/completions", &[], body).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let later = gw
        .mock
        .requests()
        .unwrap()
        .iter()
        .rev()
        .find(|r| {
            r["path"]
                .as_str()
                .unwrap_or_default()
                .ends_with(":generateContent")
        })
        .map(|r| r["headers"]["authorization"].clone())
        .unwrap();
    assert_ne!(later.as_str().unwrap(), token, "the token was refreshed");
    // Image edits and embeddings go under the project's path with the token too.
    let base = format!("{}/v1", gw.envoy.url());
    let out = run_sdk_script(
        "openai_images.py",
        &[&base, "gemini-2.5-flash-image", "edit"],
    );
    let out = out.unwrap();
    assert_eq!(
        out["edit"]["b64"].as_array().map(Vec::len),
        Some(1),
        "{out}"
    );
    let out = run_sdk_script("openai_images.py", &[&base, "text-embedding-005", "embed"]);
    assert_eq!(out.unwrap()["embed"]["usage"]["total_tokens"], 5);
    let sent = gw.mock.requests().unwrap();
    let prefix = "/v1/projects/proj/locations/us-central1/publishers/google/models";
    for path in [
        format!("{prefix}/gemini-2.5-flash-image:generateContent"),
        format!("{prefix}/text-embedding-005:predict"),
    ] {
        let r = sent.iter().rev().find(|r| r["path"] == path.as_str());
        let r = r.unwrap_or_else(|| panic!("{path}: {sent:?}"));
        let auth = r["headers"]["authorization"].as_str().unwrap_or_default();
        assert!(auth.starts_with("Bearer mock-token-"), "{auth}");
    }
    assert!(!gw.envoy.log().contains("PRIVATE KEY"));
}

#[test]
fn anthropic_clients_reach_gemini_and_bedrock() {
    let configs = [
        (
            r#"{"provider":{"type":"gemini","apiTokens":["g-key"]}}"#,
            "gemini-2.5-flash",
            "/v1beta/models/gemini-2.5-flash:generateContent",
        ),
        (
            r#"{"provider":{"type":"bedrock","apiTokens":["mock-bedrock-api-key"],"awsRegion":"us-east-1"}}"#,
            "amazon.nova-pro-v1:0",
            "/model/amazon.nova-pro-v1%3A0/converse",
        ),
    ];
    for (config, model, path) in configs {
        let gw = gateway(config);
        let out = run_sdk_script("anthropic_client.py", &[&gw.envoy.url(), model]).unwrap();
        assert_eq!(
            out["text"]["content"],
            format!("mock reply from {model}"),
            "{out}"
        );
        assert_eq!(out["text"]["stop"], "end_turn");
        assert_eq!(out["text"]["usage"], json!({"input": 4, "output": 4}));
        assert_eq!(out["stream"]["content"], "w0 w1 w2 w3 w4 ");
        assert_eq!(out["stream"]["usage"]["output"], 5);
        let call =
            json!({"name": "get_weather", "input": {"location": "Paris"}, "stop": "tool_use"});
        assert_eq!(out["tool"], call, "{model}");
        assert_eq!(out["tool_stream"], call, "{model}");
        assert_eq!(gw.mock.requests().unwrap()[0]["path"], path);

        // Errors in Anthropic's shape.
        let body = json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        let resp = gw
            .post(
                "/v1/messages",
                &[("x-mock-status", "503")],
                &body.to_string(),
            )
            .unwrap();
        assert_eq!(resp.status, 503, "{}", resp.body);
        let v = resp.json().unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert!(v["error"]["message"].is_string());
    }
}

#[test]
fn qwen_native_dashscope_through_the_openai_sdk() {
    let gw = gateway(
        r#"{"provider":{"type":"qwen","qwenEnableCompatible":false,"apiTokens":["ds-key"],
            "modelMapping":{"*":"qwen-plus"}}}"#,
    );
    let out = sdk(&gw, "gpt-4o");
    assert_sdk_answers(&out, "mock reply from qwen-plus");
    let sent = gw.mock.requests().unwrap();
    let paths: Vec<&str> = sent.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths, ["/api/v1/services/aigc/text-generation/generation"; 5],
        "{sent:?}"
    );
    for (i, r) in sent.iter().enumerate() {
        assert_eq!(r["headers"]["host"], "dashscope.aliyuncs.com");
        assert_eq!(r["headers"]["authorization"], "Bearer ds-key");
        let body = &r["body_json"];
        assert_eq!(body["model"], "qwen-plus");
        assert_eq!(body["parameters"]["result_format"], "message");
        assert!(body.get("messages").is_none(), "{body}");
        // The SDK's second and fifth calls stream: SSE asked for by header, incremental pieces.
        let streamed = i == 1 || i == 4;
        if streamed {
            assert_eq!(r["headers"]["x-dashscope-sse"], "enable", "{r}");
            assert_eq!(r["headers"]["accept"], "text/event-stream", "{r}");
            assert_eq!(body["parameters"]["incremental_output"], true);
        } else {
            assert!(r["headers"].get("x-dashscope-sse").is_none(), "{r}");
            assert!(body["parameters"].get("incremental_output").is_none());
        }
    }
    let first = &sent[0]["body_json"];
    assert_eq!(
        first["input"]["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
    );
    assert_eq!(
        sent[2]["body_json"]["parameters"]["tools"][0]["function"]["name"],
        "get_weather"
    );
    // The follow-up sent the call back and answered it by id (the mock refuses a tool result
    // that answers no call).
    let followup = &sent[3]["body_json"]["input"]["messages"];
    let call_id = followup[1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(followup[2]["role"], "tool");
    assert_eq!(followup[2]["tool_call_id"], call_id);

    // An image goes to the multimodal endpoint, content as DashScope's item lists.
    let vision = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}},
        {"type": "text", "text": "What is it?"}]}]});
    let resp = gw
        .post("/v1/chat/completions", &[], &vision.to_string())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply from qwen-plus"
    );
    assert_eq!(usage_of(&v["usage"]), usage(3, 4));
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(
        got["path"],
        "/api/v1/services/aigc/multimodal-generation/generation"
    );
    assert_eq!(
        got["body_json"]["input"]["messages"][0]["content"],
        json!([{"image": "https://example.com/dog.png"}, {"text": "What is it?"}])
    );

    // DashScope's errors in OpenAI's shape, with DashScope's status and code.
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .post("/v1/chat/completions", &[("x-mock-status", "429")], body)
        .unwrap();
    assert_eq!(resp.status, 429, "{}", resp.body);
    let e = resp.json().unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_exceeded", "{e}");
    assert_eq!(e["error"]["code"], "Throttling.RateQuota");
    assert_eq!(e["error"]["message"], "mock failure 429");
    // An error event inside the stream: one OpenAI error event, then [DONE].
    let stream = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-stream-error", "500")],
            stream,
        )
        .unwrap();
    assert!(resp.body.contains("\"content\":\"w0 \""), "{}", resp.body);
    assert_error_ends_the_stream(&resp, "mock stream failure 500");
    assert!(!gw.envoy.log().contains("ds-key"));
}

#[test]
fn triton_generate_and_generate_stream() {
    let gw = gateway(r#"{"provider":{"type":"triton","tritonDomain":"triton.internal:8000"}}"#);
    let ask = |stream: bool| {
        json!({"model": "llama3", "stream": stream, "stream_options": {"include_usage": true},
            "temperature": 0.2, "max_tokens": 32,
            "messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello"}]})
    };
    // The generate endpoint takes the last message only: 2 words in.
    let resp = gw
        .post("/v1/chat/completions", &[], &ask(false).to_string())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "llama3");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "mock reply from llama3"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(usage_of(&v["usage"]), usage(2, 4));
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/v2/models/llama3/generate");
    assert_eq!(got["headers"]["host"], "triton.internal:8000");
    // No provider key configured: the client's own key does not travel upstream.
    assert!(got["headers"].get("authorization").is_none(), "{got}");
    assert_eq!(
        got["body_json"],
        json!({"text_input": "Say hello",
            "parameters": {"stream": false, "temperature": 0.2, "max_tokens": 32}})
    );

    let url = format!("{}/v1/chat/completions", gw.envoy.url());
    let (status, reads) = gw
        .client
        .post_stream(&url, &[], &ask(true).to_string())
        .unwrap();
    assert_eq!(status, 200);
    let body: String = reads
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let chunks = e2e::sse::data_json(&body);
    let text = e2e::sse::chat_text(&chunks);
    assert_eq!(text, "w0 w1 w2 w3 w4 ");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    assert_eq!(
        usage_of(&chunks.last().unwrap()["usage"]),
        usage(2, 5),
        "{body}"
    );
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/v2/models/llama3/generate_stream");
    assert_eq!(got["body_json"]["parameters"]["stream"], true);
    assert_eq!(gw.mock.requests().unwrap().len(), 2);

    // A model that counts nothing: no usage.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-usage", "none")],
            &ask(false).to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.json().unwrap().get("usage").is_none(), "{}", resp.body);
    // Triton's errors in OpenAI's shape, with Triton's status.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-status", "503")],
            &ask(false).to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 503, "{}", resp.body);
    let e = resp.json().unwrap();
    assert_eq!(e["error"]["message"], "mock failure 503", "{e}");
    assert_eq!(e["error"]["type"], "server_error");
    // An error inside the stream: one OpenAI error event, then [DONE].
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-stream-error", "500")],
            &ask(true).to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.body.contains("Triton error: mock stream failure 500"),
        "{}",
        resp.body
    );
    assert!(resp.body.trim_end().ends_with("data: [DONE]"));
    drop(gw);

    // A pinned model version, and a provider key sent as a bearer token.
    let gw = gateway(
        r#"{"provider":{"type":"triton","tritonDomain":"triton.internal:8000",
            "tritonModelVersion":"2","apiTokens":["triton-key"]}}"#,
    );
    let resp = gw
        .post("/v1/chat/completions", &[], &ask(false).to_string())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/v2/models/llama3/versions/2/generate");
    assert_eq!(got["headers"]["authorization"], "Bearer triton-key");
}

/// A stream the provider broke off: still 200, the error said in the stream, `[DONE]` last.
fn assert_error_ends_the_stream(resp: &e2e::http::Response, error: &str) {
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains(error), "{}", resp.body);
    assert!(
        resp.body.trim_end().ends_with("data: [DONE]"),
        "{}",
        resp.body
    );
}
