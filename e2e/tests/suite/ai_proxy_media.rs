//! ai-proxy's images and embeddings APIs to Google and AWS through a real Envoy, driven by the
//! official `openai` SDK: Imagen and Vertex AI image generation, edits and variations, Vertex
//! and Bedrock embeddings, and Bedrock with `protocol: original`. The mock provider speaks each
//! upstream's native format and records what it received.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

fn gateway(config: &str) -> Gateway {
    Gateway::start(MOCK, &Options::plugin("ai-proxy", config)).unwrap()
}

/// Runs `openai_images.py` with `ops` against the gateway.
fn sdk(gw: &Gateway, model: &str, ops: &[&str]) -> Value {
    let base = format!("{}/v1", gw.envoy.url());
    let mut args = vec![base.as_str(), model];
    args.extend_from_slice(ops);
    run_sdk_script("openai_images.py", &args).unwrap()
}

#[test]
fn gemini_images_go_to_imagen() {
    let gw = gateway(
        r#"{"provider":{"type":"gemini","apiTokens":["g-key"],
            "modelMapping":{"dall-e-3":"imagen-3.0-generate-002"}}}"#,
    );
    let out = sdk(&gw, "dall-e-3", &["generate"]);
    let image = "mock-image model=imagen-3.0-generate-002 prompt=a cat inputs=0 mime=image/png";
    assert_eq!(out["generate"]["b64"], json!([image, image]), "{out}");
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(
        got["path"],
        "/v1beta/models/imagen-3.0-generate-002:predict"
    );
    assert_eq!(got["headers"]["host"], "generativelanguage.googleapis.com");
    assert_eq!(got["headers"]["x-goog-api-key"], "g-key");
    assert_eq!(
        got["body_json"],
        json!({"instances": [{"prompt": "a cat"}], "parameters": {"sampleCount": 2}})
    );
    // The Gemini API has no image edits in Higress either: a 404 before anything is sent.
    let before = gw.mock.requests().unwrap().len();
    let resp = gw
        .post(
            "/v1/images/edits",
            &[("content-type", "application/json")],
            r#"{"model":"m","prompt":"p","image":"data:image/png;base64,AAAA"}"#,
        )
        .unwrap();
    assert_eq!(resp.status, 404, "{}", resp.body);
    assert_eq!(gw.mock.requests().unwrap().len(), before);
}

#[test]
fn vertex_images_generations_edits_and_variations() {
    let gw = gateway(
        r#"{"provider":{"type":"vertex","apiTokens":["v-key"],
            "modelMapping":{"*":"gemini-2.5-flash-image"},
            "geminiSafetySetting":{"HARM_CATEGORY_HARASSMENT":"BLOCK_NONE"}}}"#,
    );
    let out = sdk(&gw, "gpt-image-1", &["generate", "edit", "variation"]);
    let model = "gemini-2.5-flash-image";
    assert_eq!(
        out["generate"]["b64"],
        json!([format!(
            "mock-image model={model} prompt=a cat inputs=0 mime=image/png"
        )]),
        "{out}"
    );
    assert_eq!(
        out["edit"]["b64"],
        json!([format!(
            "mock-image model={model} prompt=add a hat inputs=1 mime=image/png"
        )])
    );
    assert_eq!(
        out["variation"]["b64"],
        json!([format!(
            "mock-image model={model} prompt=Create variations of the provided image. inputs=1 mime=image/png"
        )])
    );
    // Usage as Vertex reported it: 1 prompt word + 1294 output tokens for the generation.
    assert_eq!(out["generate"]["usage"]["input_tokens"], 2, "{out}");
    assert_eq!(out["generate"]["usage"]["output_tokens"], 1294);
    let sent = gw.mock.requests().unwrap();
    assert_eq!(sent.len(), 3);
    for r in &sent {
        assert_eq!(
            r["path"],
            format!("/v1/publishers/google/models/{model}:generateContent")
        );
        assert_eq!(r["headers"]["x-goog-api-key"], "v-key");
        assert_eq!(r["headers"]["content-type"], "application/json");
        let config = &r["body_json"]["generationConfig"];
        assert_eq!(config["responseModalities"], json!(["TEXT", "IMAGE"]));
        assert_eq!(
            r["body_json"]["safetySettings"][0]["threshold"],
            "BLOCK_NONE"
        );
    }
    // The edit: the uploaded PNG inline, the prompt, the size as an aspect ratio.
    let edit = &sent[1]["body_json"];
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==";
    assert_eq!(
        edit["contents"][0]["parts"],
        json!([{"inlineData": {"mimeType": "image/png", "data": png}}, {"text": "add a hat"}])
    );
    assert_eq!(
        edit["generationConfig"]["imageConfig"]["aspectRatio"],
        "16:9"
    );
    assert_eq!(edit["generationConfig"]["imageConfig"]["imageSize"], "2k");
    // JSON edits with an image URL work too; a mask is refused as Higress refuses it.
    let resp = gw
        .post(
            "/v1/images/edits",
            &[("content-type", "application/json")],
            r#"{"model":"m","prompt":"p","image":"https://img.test/a.webp","output_format":"webp"}"#,
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(
        got["body_json"]["contents"][0]["parts"][0],
        json!({"fileData": {"mimeType": "image/webp", "fileUri": "https://img.test/a.webp"}})
    );
    assert_eq!(
        got["body_json"]["generationConfig"]["imageConfig"]["imageOutputOptions"]["mimeType"],
        "image/webp"
    );
    let resp = gw
        .post(
            "/v1/images/edits",
            &[("content-type", "application/json")],
            r#"{"model":"m","prompt":"p","image":"data:image/png;base64,AAAA","mask":"data:image/png;base64,AAAA"}"#,
        )
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.body.contains("mask"), "{}", resp.body);
}

#[test]
fn vertex_express_embeddings() {
    let gw = gateway(
        r#"{"provider":{"type":"vertex","apiTokens":["v-key"],
            "modelMapping":{"text-embedding-3-small":"text-embedding-005"}}}"#,
    );
    let out = sdk(&gw, "text-embedding-3-small", &["embed"]);
    // Usage is the sum of Vertex's token counts (2 + 3 words).
    assert_eq!(
        out["embed"],
        json!({"model": "text-embedding-005", "dims": [256, 256], "index": [0, 1],
            "usage": {"prompt_tokens": 5, "total_tokens": 5}}),
        "{out}"
    );
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(
        got["path"],
        "/v1/publishers/google/models/text-embedding-005:predict"
    );
    assert_eq!(got["headers"]["host"], "aiplatform.googleapis.com");
    assert_eq!(got["headers"]["x-goog-api-key"], "v-key");
    assert_eq!(
        got["body_json"],
        json!({"instances": [{"content": "hello world"}, {"content": "good night moon"}]})
    );
}

#[test]
fn bedrock_embeddings_titan_and_cohere_signed() {
    let gw = gateway(
        r#"{"provider":{"type":"bedrock","awsAccessKey":"AKIDMOCKBEDROCK",
            "awsSecretKey":"mock-bedrock-secret","awsRegion":"us-east-1",
            "modelMapping":{"titan":"amazon.titan-embed-text-v2:0","cohere":"cohere.embed-english-v3"}}}"#,
    );
    // The mock checks every SigV4 signature against the request it received (403 otherwise).
    let out = sdk(&gw, "titan", &["embed1"]);
    assert_eq!(
        out["embed1"],
        json!({"model": "amazon.titan-embed-text-v2:0", "dims": [256], "index": [0],
            "usage": {"prompt_tokens": 2, "total_tokens": 2}}),
        "{out}"
    );
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_eq!(got["body_json"], json!({"inputText": "hello world"}));
    assert!(got["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCKBEDROCK/"));
    // Cohere takes every input in one call; usage from Bedrock's token count header.
    let out = sdk(&gw, "cohere", &["embed"]);
    assert_eq!(
        out["embed"],
        json!({"model": "cohere.embed-english-v3", "dims": [256, 256], "index": [0, 1],
            "usage": {"prompt_tokens": 5, "total_tokens": 5}}),
        "{out}"
    );
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], "/model/cohere.embed-english-v3/invoke");
    assert_eq!(
        got["body_json"],
        json!({"texts": ["hello world", "good night moon"], "input_type": "search_document",
            "embedding_types": ["float"]})
    );
    // Titan embeds one input per call: a clear 400 before anything is sent.
    let before = gw.mock.requests().unwrap().len();
    let resp = gw
        .post(
            "/v1/embeddings",
            &[],
            r#"{"model":"titan","input":["a","b"]}"#,
        )
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.body.contains("one input"), "{}", resp.body);
    assert_eq!(gw.mock.requests().unwrap().len(), before);
}

#[test]
fn bedrock_original_protocol_is_signed_with_custom_settings() {
    let gw = gateway(
        r#"{"provider":{"type":"bedrock","protocol":"original","awsAccessKey":"AKIDMOCKBEDROCK",
            "awsSecretKey":"mock-bedrock-secret","awsRegion":"us-east-1",
            "customSettings":[{"name":"inferenceConfig.maxTokens","value":77,"mode":"raw"}]}}"#,
    );
    let model = "anthropic.claude-3-haiku-20240307-v1%3A0";
    let body = r#"{"messages":[{"role":"user","content":[{"text":"hi there"}]}],
        "inferenceConfig":{"maxTokens":5,"temperature":0.5}}"#;
    // The mock checks the SigV4 signature against the request it received (403 otherwise).
    let resp = gw
        .post(
            &format!("/model/{model}/converse"),
            &[("authorization", "Bearer client-side-key")],
            body,
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    // Bedrock's own answer, untranslated.
    let v = resp.json().unwrap();
    assert_eq!(
        v["output"]["message"]["content"][0]["text"],
        "mock reply from anthropic.claude-3-haiku-20240307-v1:0",
        "{v}"
    );
    assert!(v.get("choices").is_none());
    let got = gw.last_upstream_request().unwrap();
    assert_eq!(got["path"], format!("/model/{model}/converse"));
    assert_eq!(
        got["headers"]["host"],
        "bedrock-runtime.us-east-1.amazonaws.com"
    );
    assert!(got["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCKBEDROCK/"));
    // The client's body with `customSettings` applied.
    assert_eq!(
        got["body_json"],
        json!({"messages": [{"role": "user", "content": [{"text": "hi there"}]}],
            "inferenceConfig": {"maxTokens": 77, "temperature": 0.5}})
    );
    // The event stream passes as Bedrock sent it: binary frames, not SSE.
    let url = format!("{}/model/{model}/converse-stream", gw.envoy.url());
    let (status, reads) = gw.client.post_stream(&url, &[], body).unwrap();
    assert_eq!(status, 200);
    let bytes: Vec<u8> = reads.into_iter().flat_map(|(_, b)| b).collect();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(":event-type"), "{text}");
    assert!(text.contains("messageStart"), "{text}");
    assert!(!text.contains("data: "), "{text}");
    assert!(!gw.envoy.log().contains("mock-bedrock-secret"));
}
