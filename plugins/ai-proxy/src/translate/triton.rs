//! OpenAI chat completions client in front of an NVIDIA Triton Inference Server through its
//! generate extension (Higress type `triton`): `text_input` in, `text_output` back, with
//! `generate_stream` (SSE) for streams.
//!
//! As in Higress the prompt is the text of the last message (the generate endpoint takes raw
//! text, not a conversation), and only sampling settings Triton models commonly read are sent.

use super::upstream_error;
use super::{err, max_tokens, parse};
use super::{Decode, TranslateError};
use crate::config::ProviderConfig;
use sdk::config::ConfigError;
use sdk::error::ErrorReply;
use sdk::llm::openai;
use sdk::llm::stream::{Encoder, Event};
use sdk::sse::SseEvent;
use sdk::usage::Usage;
use serde_json::{json, Map, Value};

/// Triton settings from the provider config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TritonOptions {
    /// `tritonModelVersion`: the model version in the path; empty lets the server choose.
    pub model_version: String,
}

impl TritonOptions {
    /// Reads `tritonModelVersion` (the host, `tritonDomain`, is the provider's business).
    pub fn from_config(c: &ProviderConfig) -> Result<TritonOptions, ConfigError> {
        let version = c.triton_model_version.as_deref().unwrap_or_default().trim();
        if version.contains(['/', '?', '#']) {
            return Err(ConfigError::new(
                "tritonModelVersion",
                "must be a single path segment",
            ));
        }
        Ok(TritonOptions {
            model_version: version.to_string(),
        })
    }
}

/// The upstream path: `/v2/models/{model}[/versions/{version}]/generate`, `generate_stream`
/// when streaming.
pub fn triton_path(model: &str, opts: &TritonOptions, stream: bool) -> String {
    let action = if stream {
        "generate_stream"
    } else {
        "generate"
    };
    if opts.model_version.is_empty() {
        format!("/v2/models/{}/{action}", crate::sigv4::uri_encode(model))
    } else {
        format!(
            "/v2/models/{}/versions/{}/{action}",
            crate::sigv4::uri_encode(model),
            crate::sigv4::uri_encode(&opts.model_version)
        )
    }
}

/// Builds the generate request for an OpenAI chat request (the model goes in the path, see
/// [`triton_path`]).
///
/// `text_input` is the last message's text; `parameters` carries `stream` and, when the client
/// set them, `temperature`, `top_p` and `max_tokens` (from `max_completion_tokens` or
/// `max_tokens`).
pub fn to_triton_request(
    req: &openai::ChatRequest,
    _model: &str,
    _opts: &TritonOptions,
) -> Result<Value, TranslateError> {
    let x = &req.extra;
    if x.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(err("n > 1 is not supported by Triton generate"));
    }
    let last = req
        .messages
        .last()
        .ok_or_else(|| err("no message to send to Triton"))?;
    let text = super::text_only(last, "Triton generate")?;
    if text.is_empty() {
        return Err(err("the last message has no text to send to Triton"));
    }
    let mut parameters = Map::new();
    parameters.insert("stream".into(), Value::Bool(req.stream == Some(true)));
    for key in ["temperature", "top_p"] {
        if let Some(v) = x.get(key).filter(|v| v.is_number()) {
            parameters.insert(key.into(), v.clone());
        }
    }
    let max_tokens = max_tokens(x);
    if let Some(n) = max_tokens {
        parameters.insert("max_tokens".into(), json!(n));
    }
    Ok(json!({"text_input": text, "parameters": parameters}))
}

/// A scalar output, or the first element of a one-element tensor.
fn scalar(v: Option<&Value>) -> Option<&Value> {
    match v? {
        Value::Array(items) => items.first(),
        other => Some(other),
    }
}

/// `text_output` as text (a string, or a list of strings joined).
fn text_output(v: &Value) -> Option<String> {
    match v.get("text_output")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// OpenAI `finish_reason` for a backend finish reason (vLLM backend `finish_reason` output).
fn finish_reason(v: &Value) -> Option<&'static str> {
    let reason = scalar(v.get("finish_reason"))?.as_str()?;
    Some(match reason {
        "length" => "length",
        _ => "stop",
    })
}

fn count(v: &Value, key: &str) -> Option<u64> {
    scalar(v.get(key))?.as_u64()
}

fn error_message(v: &Value) -> Option<String> {
    match v.get("error")? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Reads a generate answer (`{model_name, model_version, text_output}`) as the events of one
/// answer, as [`TritonStream`] reads each response of a stream.
pub fn read_answer(
    body: &[u8],
    model: &str,
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let v: Value = parse(body, "cannot read the Triton answer")?;
    if error_message(&v).is_none() && text_output(&v).is_none() {
        return Err(err("the Triton answer has no text_output"));
    }
    let mut stream = TritonStream::new(model);
    stream.on_json(&v, enc, out);
    stream.finish(enc, out);
    Ok(())
}

/// Turns a Triton error response (`{"error": "…"}`) into the OpenAI-style error the client
/// gets.
pub fn triton_error_to_openai(status: u32, body: &[u8]) -> ErrorReply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed.as_ref().and_then(error_message);
    upstream_error(status, body, None, None, message.as_deref())
}

/// Reads a `generate_stream` event stream (`data: {text_output, …}` per response) into
/// canonical events.
///
/// Pieces are sent as they come; the stream's end is the answer's end, so the finish reason
/// (`stop`, or `length` when the backend says so) comes then. An `{"error": …}` event is an
/// error. Usage as in [`from_triton_response`] (output counts are per response and add up).
#[derive(Debug, Default)]
pub struct TritonStream {
    model: String,
    id: String,
    model_seen: bool,
    started: bool,
    finish: Option<&'static str>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    done: bool,
}

impl TritonStream {
    /// A reader; `model` is used until the server names the model.
    pub fn new(model: &str) -> Self {
        TritonStream {
            model: model.to_string(),
            ..TritonStream::default()
        }
    }

    /// `event`, after the answer's id and model (once).
    fn emit(&mut self, event: Event<'_>, enc: &mut dyn Encoder, out: &mut String) {
        if !self.started {
            self.started = true;
            let meta = Event::Meta {
                id: &self.id,
                model: &self.model,
            };
            enc.event(meta, out);
        }
        enc.event(event, out);
    }

    /// One generate response.
    fn on_json(&mut self, v: &Value, enc: &mut dyn Encoder, out: &mut String) {
        if self.done {
            return;
        }
        if let Some(message) = error_message(v) {
            self.done = true;
            let message = format!("Triton error: {message}");
            let error = Event::Error {
                message: &message,
                kind: "server_error",
                code: None,
            };
            enc.event(error, out);
            enc.end(out);
            return;
        }
        if !self.model_seen {
            if let Some(m) = v.get("model_name").and_then(Value::as_str) {
                self.model_seen = true;
                if !m.is_empty() {
                    self.model = m.to_string();
                }
            }
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                self.id = id.to_string();
            }
        }
        if let Some(n) = count(v, "num_input_tokens") {
            self.prompt_tokens = Some(n);
        }
        if let Some(n) = count(v, "num_output_tokens") {
            self.completion_tokens = Some(self.completion_tokens.unwrap_or(0).saturating_add(n));
        }
        if let Some(reason) = finish_reason(v) {
            self.finish = Some(reason);
        }
        if let Some(text) = text_output(v) {
            self.emit(Event::Text(&text), enc, out);
        }
    }
}

impl Decode for TritonStream {
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String) {
        if let Ok(v) = serde_json::from_str::<Value>(&event.data) {
            self.on_json(&v, enc, out);
        }
    }

    /// Upstream ended: the finish reason, usage when counts were reported, then the end, once.
    fn finish(&mut self, enc: &mut dyn Encoder, out: &mut String) {
        if self.done {
            return;
        }
        self.done = true;
        self.emit(Event::Finish(self.finish.unwrap_or("stop")), enc, out);
        if let (Some(p), Some(c)) = (self.prompt_tokens, self.completion_tokens) {
            enc.event(Event::Usage(Usage::of(p, c)), out);
        }
        enc.end(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_triton_response(
        body: &[u8],
        model: &str,
    ) -> Result<openai::ChatResponse, TranslateError> {
        crate::translate::whole_chat(model, Default::default(), |e, o| {
            read_answer(body, model, e, o)
        })
    }
    use crate::translate::{ChunkTranslator, ReasoningMode, SseTranslator};
    use sdk::sse::SseDecoder;

    fn chat(v: Value) -> openai::ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn version(v: &str) -> TritonOptions {
        TritonOptions {
            model_version: v.into(),
        }
    }

    #[test]
    fn options_from_config() {
        let cfg = |v: &str| ProviderConfig {
            triton_model_version: Some(v.into()),
            ..ProviderConfig::default()
        };
        assert_eq!(
            TritonOptions::from_config(&ProviderConfig::default()).unwrap(),
            TritonOptions::default()
        );
        assert_eq!(
            TritonOptions::from_config(&cfg(" 2 ")).unwrap(),
            version("2")
        );
        assert_eq!(
            TritonOptions::from_config(&cfg("1/generate"))
                .unwrap_err()
                .path,
            "tritonModelVersion"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(
            triton_path("gpt2", &TritonOptions::default(), false),
            "/v2/models/gpt2/generate"
        );
        assert_eq!(
            triton_path("gpt2", &TritonOptions::default(), true),
            "/v2/models/gpt2/generate_stream"
        );
        assert_eq!(
            triton_path("llama-3.1_8b", &version("3"), false),
            "/v2/models/llama-3.1_8b/versions/3/generate"
        );
        assert_eq!(
            triton_path("org/m x", &version("1"), true),
            "/v2/models/org%2Fm%20x/versions/1/generate_stream"
        );
    }

    #[test]
    fn request_takes_last_message_and_sampling() {
        let req = chat(json!({
            "model": "gpt2",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi, who are you?"}]}
            ],
            "stream": true,
            "temperature": 0.2,
            "top_p": 0.9,
            "max_tokens": 99,
            "max_completion_tokens": 64,
            "presence_penalty": 1
        }));
        assert_eq!(
            to_triton_request(&req, "gpt2", &TritonOptions::default()).unwrap(),
            json!({"text_input": "Hi, who are you?", "parameters": {
                "stream": true, "temperature": 0.2, "top_p": 0.9, "max_tokens": 64}})
        );
        let plain =
            chat(json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}));
        assert_eq!(
            to_triton_request(&plain, "m", &TritonOptions::default()).unwrap(),
            json!({"text_input": "Hello", "parameters": {"stream": false, "max_tokens": 8}})
        );
    }

    #[test]
    fn request_errors() {
        let o = TritonOptions::default();
        assert!(to_triton_request(&chat(json!({"messages": []})), "m", &o).is_err());
        let empty = chat(json!({"messages": [{"role": "user", "content": ""}]}));
        assert!(to_triton_request(&empty, "m", &o).is_err());
        let image = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}));
        assert!(to_triton_request(&image, "m", &o).is_err());
        let n = chat(json!({"messages": [{"role": "user", "content": "x"}], "n": 3}));
        assert!(to_triton_request(&n, "m", &o).is_err());
    }

    #[test]
    fn response() {
        let r = from_triton_response(
            br#"{"model_name": "gpt2", "model_version": "1", "text_output": "I am a language model."}"#,
            "mapped",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id": "", "object": "chat.completion", "created": 0, "model": "gpt2",
                "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": "I am a language model."}, "finish_reason": "stop"}]})
        );
        // vLLM backend extra outputs: finish reason and token counts.
        let r = from_triton_response(
            br#"{"model_name": "", "text_output": ["a", "b"], "finish_reason": ["length"],
                "num_input_tokens": 7, "num_output_tokens": [16]}"#,
            "vllm_model",
        )
        .unwrap();
        assert_eq!(r.model, "vllm_model");
        assert_eq!(
            r.choices[0].message.content,
            Some(openai::Content::Text("ab".into()))
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(
            serde_json::to_value(r.usage).unwrap(),
            json!({"prompt_tokens": 7, "completion_tokens": 16, "total_tokens": 23})
        );
        // Only one count: no usage.
        let r =
            from_triton_response(br#"{"text_output": "x", "num_output_tokens": 3}"#, "m").unwrap();
        assert!(r.usage.is_none());
        assert_eq!(
            from_triton_response(br#"{"error": "Unable to find model"}"#, "m")
                .unwrap_err()
                .0,
            "Triton error: Unable to find model"
        );
        assert!(from_triton_response(br#"{"model_name": "m"}"#, "m").is_err());
        assert!(from_triton_response(b"<html>", "m").is_err());
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let e = triton_error_to_openai(
            400,
            br#"{"error": "Request for unknown model: 'gpt3' is not found"}"#,
        );
        assert_eq!(e.status, 400);
        assert_eq!(e.error_type, "invalid_request_error");
        assert_eq!(e.code, None);
        assert_eq!(e.message, "Request for unknown model: 'gpt3' is not found");
        let e = triton_error_to_openai(503, b"upstream connect error");
        assert_eq!(e.error_type, "server_error");
        assert_eq!(e.message, "upstream connect error");
        assert_eq!(
            triton_error_to_openai(404, b"").message,
            "upstream returned HTTP 404"
        );
    }

    const STREAM: &str = concat!(
        "data: {\"batch_index\":0,\"model_name\":\"ensemble\",\"model_version\":\"1\",\"text_output\":\" a\"}\n\n",
        "data: {\"batch_index\":0,\"model_name\":\"ensemble\",\"model_version\":\"1\",\"text_output\":\" very\"}\n\n",
        "data: {\"batch_index\":0,\"model_name\":\"ensemble\",\"model_version\":\"1\",\"text_output\":\" good\"}\n\n",
    );

    fn translate(wire: &str, piece: usize) -> String {
        let chat = super::super::to_chat(
            TritonStream::new("gpt2"),
            "gpt2",
            ReasoningMode::Passthrough,
        );
        let mut tr = SseTranslator::new(chat);
        let mut out = String::new();
        let chunks: Vec<&[u8]> = wire.as_bytes().chunks(piece).collect();
        if chunks.is_empty() {
            tr.feed(b"", true, &mut out);
        }
        for (i, c) in chunks.iter().enumerate() {
            tr.feed(c, i + 1 == chunks.len(), &mut out);
        }
        out
    }

    fn datas(out: &str) -> Vec<String> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        decoder.feed(out.as_bytes(), &mut events).unwrap();
        decoder.finish(&mut events);
        events.into_iter().map(|e| e.data).collect()
    }

    fn chunks(out: &str) -> Vec<Value> {
        datas(out)
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn stream() {
        let out = translate(STREAM, usize::MAX);
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(out.matches("[DONE]").count(), 1);
        let c = chunks(&out);
        assert_eq!(c.len(), 5);
        for chunk in &c {
            assert_eq!(chunk["model"], "ensemble");
            assert_eq!(chunk["object"], "chat.completion.chunk");
        }
        assert_eq!(
            c[0]["choices"],
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])
        );
        let text: String = c
            .iter()
            .filter_map(|x| x["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, " a very good");
        assert_eq!(
            c[4]["choices"],
            json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        );
        // Triton reported no counts: no usage chunk.
        assert!(c.iter().all(|x| x.get("usage").is_none()));
        for piece in [1, 5, 33] {
            assert_eq!(translate(STREAM, piece), out, "piece {piece}");
        }
    }

    #[test]
    fn stream_with_backend_counts_and_finish() {
        let wire = concat!(
            "data: {\"model_name\":\"vllm_model\",\"text_output\":\"Hel\",\"num_input_tokens\":5,\"num_output_tokens\":1}\n\n",
            "data: {\"model_name\":\"vllm_model\",\"text_output\":\"lo\",\"num_output_tokens\":[2],\"finish_reason\":[\"length\"]}\n\n",
        );
        let c = chunks(&translate(wire, 9));
        assert_eq!(c[3]["choices"][0]["finish_reason"], "length");
        let usage = c.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
        );
        assert_eq!(usage["model"], "vllm_model");
    }

    #[test]
    fn stream_error_event() {
        let wire = concat!(
            "data: {\"model_name\":\"m\",\"text_output\":\"x\"}\n\n",
            "data: {\"error\":\"Error generating stream: out of memory\"}\n\n",
            "data: {\"model_name\":\"m\",\"text_output\":\"late\"}\n\n",
        );
        let d = datas(&translate(wire, usize::MAX));
        assert_eq!(d.len(), 4);
        assert_eq!(
            serde_json::from_str::<Value>(&d[2]).unwrap(),
            json!({"error": {"message": "Triton error: Error generating stream: out of memory",
                "type": "server_error", "code": null}})
        );
        assert_eq!(d[3], "[DONE]");
        // Nothing at all is not an empty answer: an error event, and the stream still ends.
        let d = datas(&translate("", 1));
        assert_eq!(
            serde_json::from_str::<Value>(&d[0]).unwrap()["error"]["code"],
            "bad_upstream_stream"
        );
        assert_eq!(d.last().map(String::as_str), Some("[DONE]"));
    }
}
