//! NVIDIA Triton Inference Server generate extension (Higress type `triton`), shaped after
//! Triton's protocol document: `POST /v2/models/{model}[/versions/{version}]/generate` answers
//! one `{model_name, model_version, text_output}`; `.../generate_stream` answers SSE
//! `data: {model_name, model_version, text_output: <piece>}` events, one per response. Errors are
//! `{"error": "…"}` (inside a stream, as a `data:` event: `x-mock-stream-error: <status>`
//! replaces the last event with one).
//!
//! The mock model reads `text_input` and, like Triton's vLLM backend, a boolean `stream` (at the
//! top level or in `parameters`: the generate endpoint maps both onto the model's inputs):
//! without `stream: true` a `generate_stream` request gets the whole answer as one event. It never
//! echoes the prompt (a vLLM or TensorRT-LLM model does in non-streamed answers unless asked for
//! `exclude_input_in_output`). It reports `num_input_tokens` and `num_output_tokens` (per
//! response), as the vLLM backend does when asked for them; `x-mock-usage: none` turns them off
//! (a plain Triton model counts nothing). Word counts stand in for tokens, as in the other formats; the reply text,
//! chunking, pacing and resets follow the `x-mock-*` headers like the OpenAI routes.
//!
//! Triton has no authentication of its own, so neither has the mock. It refuses (400) a request
//! without a string `text_input`, and parameters that are not a string, number or boolean: per
//! the protocol, parameters are scalars, and top-level properties other than the model's inputs
//! are passed as parameters, so a leaked OpenAI `messages` list fails loudly.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Map, Value};

use crate::control::{self, MockControl, RequestCtx};
use crate::openai::stream_pieces;
use crate::reply::{self, count_words};
use crate::stream::{self, sse_data};

/// The mock model's input tensors.
const INPUTS: &[&str] = &["text_input"];
/// The model version reported when the path names none.
const DEFAULT_VERSION: &str = "1";

/// The Triton generate routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/v2/models/{model}/generate", post(generate))
        .route("/v2/models/{model}/generate_stream", post(generate_stream))
        .route(
            "/v2/models/{model}/versions/{version}/generate",
            post(generate),
        )
        .route(
            "/v2/models/{model}/versions/{version}/generate_stream",
            post(generate_stream),
        )
}

/// `{"error": message}`.
pub fn error_body(message: &str) -> Value {
    json!({ "error": message })
}

/// A Triton-shaped error reply.
pub fn error(status: StatusCode, message: &str) -> Response {
    reply::json(status, error_body(message))
}

/// The reply for `x-mock-status` / `/__mock/fail` on the Triton paths, for the control
/// middleware.
pub fn failure(status: StatusCode) -> Response {
    error(status, &format!("mock failure {}", status.as_u16()))
}

/// The parameters of a generate request: `parameters`, plus every top-level property that is
/// not an input. Each must be a string, number or boolean; `text_input` must be a string.
pub fn validate(req: &Value, model: &str) -> Result<Map<String, Value>, String> {
    let Some(obj) = req.as_object() else {
        return Err("failed to parse the request JSON buffer: expected an object".into());
    };
    let mut params = Map::new();
    match obj.get("parameters") {
        None => {}
        Some(Value::Object(p)) => params.extend(p.clone()),
        Some(_) => return Err("parameters must be a JSON object".into()),
    }
    for (key, value) in obj {
        if key != "parameters" && !INPUTS.contains(&key.as_str()) {
            params.insert(key.clone(), value.clone());
        }
    }
    if let Some((key, _)) = params
        .iter()
        .find(|(_, v)| !(v.is_string() || v.is_number() || v.is_boolean()))
    {
        return Err(format!(
            "parameter '{key}' has invalid type. It should be either 'int', 'bool', 'double' or 'string'."
        ));
    }
    match obj.get("text_input") {
        Some(Value::String(_)) => Ok(params),
        Some(_) => Err(format!(
            "unable to parse 'text_input' for model '{model}': expected a string"
        )),
        None => Err(format!(
            "[request id: <id_unknown>] expected 1 inputs but got 0 inputs for model '{model}'. \
             Got input(s) [], but missing required input(s) ['text_input']. \
             Please provide all required input(s)."
        )),
    }
}

/// What an answer consists of.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// `model_name`.
    pub model: String,
    /// `model_version`.
    pub version: String,
    /// Input tokens (words of `text_input`).
    pub input: usize,
    /// Whether token counts are reported.
    pub usage: bool,
}

impl Plan {
    /// The plan for a (validated) request.
    pub fn new(req: &Value, model: &str, version: Option<&str>, control: &MockControl) -> Self {
        Plan {
            model: model.to_owned(),
            version: version.unwrap_or(DEFAULT_VERSION).to_owned(),
            input: req
                .get("text_input")
                .and_then(Value::as_str)
                .map_or(0, count_words),
            usage: control.usage,
        }
    }

    /// One response object with `text` and its output token count.
    pub fn response(&self, text: &str, output: usize) -> Value {
        let mut v = json!({"model_name": self.model, "model_version": self.version,
            "text_output": text});
        if self.usage {
            v["num_input_tokens"] = json!(self.input);
            v["num_output_tokens"] = json!(output);
        }
        v
    }

    /// The stream's responses: one per piece when streaming, else the whole text in one; an
    /// empty answer is one empty response.
    pub fn responses(&self, pieces: &[String], streaming: bool) -> Vec<Value> {
        if !streaming || pieces.is_empty() {
            return vec![self.response(&pieces.concat(), pieces.len())];
        }
        pieces.iter().map(|p| self.response(p, 1)).collect()
    }
}

/// The SSE frames of a stream, the last one replaced by an error event when `failure` names a
/// status.
pub fn frames(responses: &[Value], failure: Option<StatusCode>) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = responses.iter().map(sse_data).collect();
    if let Some(status) = failure {
        out.pop();
        out.push(sse_data(&error_body(&format!(
            "mock stream failure {}",
            status.as_u16()
        ))));
    }
    out
}

/// The model and version named by the path.
fn target(params: &[(String, String)]) -> (String, Option<String>) {
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    (get("model").unwrap_or_default(), get("version"))
}

async fn generate(
    Extension(ctx): Extension<RequestCtx>,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    run(&ctx, &params, &HeaderMap::new(), &body, false)
}

async fn generate_stream(
    Extension(ctx): Extension<RequestCtx>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(&ctx, &params, &headers, &body, true)
}

fn run(
    ctx: &RequestCtx,
    params: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    stream_route: bool,
) -> Response {
    let (model, version) = target(params);
    let req = match serde_json::from_slice::<Value>(body) {
        Ok(req) => req,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("failed to parse the request JSON buffer: {e}"),
            )
        }
    };
    let parameters = match validate(&req, &model) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let plan = Plan::new(&req, &model, version.as_deref(), &ctx.control);
    if stream_route {
        let streaming = parameters.get("stream").and_then(Value::as_bool) == Some(true);
        let responses = plan.responses(&stream_pieces(&ctx.control), streaming);
        let frames = frames(&responses, control::stream_error(headers));
        return stream::sse_response(frames, ctx.control.pacing());
    }
    let text = ctx
        .control
        .content
        .clone()
        .unwrap_or_else(|| format!("mock reply from {model}"));
    reply::json(StatusCode::OK, plan.response(&text, count_words(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::answer_through;
    use ai_proxy::providers::{Family, Native};
    use ai_proxy::translate::triton::{to_triton_request, triton_error_to_openai, TritonOptions};

    fn control() -> MockControl {
        MockControl::default()
    }

    fn ask(stream: bool) -> Value {
        json!({"text_input": "Say hello", "parameters": {"stream": stream, "temperature": 0.2}})
    }

    /// The OpenAI chunks the plugin makes of mock stream frames.
    fn stream_through_plugin(frames: &[Bytes]) -> Vec<Value> {
        crate::stream::chunks_through(Family::Triton, &Native::None, "llama3", frames)
    }

    #[test]
    fn validates_inputs_and_parameters() {
        let params = validate(&ask(true), "m").unwrap();
        assert_eq!(params["stream"], true);
        // Top-level properties that are not inputs are parameters too.
        let extra = json!({"text_input": "x", "max_tokens": 5, "parameters": {"top_p": 0.5}});
        let params = validate(&extra, "m").unwrap();
        assert_eq!(
            (params["max_tokens"].clone(), params["top_p"].clone()),
            (json!(5), json!(0.5))
        );
        let fails = |req: Value, needle: &str| {
            let e = validate(&req, "llama3").unwrap_err();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        };
        fails(
            json!({"parameters": {}}),
            "missing required input(s) ['text_input']",
        );
        fails(json!({"text_input": ["a"]}), "'text_input'");
        fails(
            json!({"text_input": "x", "messages": [{"role": "user", "content": "x"}]}),
            "parameter 'messages' has invalid type",
        );
        fails(
            json!({"text_input": "x", "parameters": {"stop": ["a"]}}),
            "parameter 'stop' has invalid type",
        );
        fails(json!({"text_input": "x", "parameters": [1]}), "JSON object");
        fails(json!([1]), "expected an object");
    }

    #[test]
    fn accepts_what_the_plugin_sends() {
        let openai = json!({"model": "llama3", "stream": true, "temperature": 0.2,
            "top_p": 0.9, "max_tokens": 16, "stream_options": {"include_usage": true},
            "messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello"}]});
        let req = to_triton_request(
            &serde_json::from_value(openai).unwrap(),
            "llama3",
            &TritonOptions::default(),
        )
        .unwrap();
        let params = validate(&req, "llama3").unwrap();
        assert_eq!(params["stream"], true);
        assert_eq!(params["max_tokens"], 16);
    }

    #[test]
    fn json_answer_with_counts() {
        let plan = Plan::new(&ask(false), "llama3", None, &control());
        let out = plan.response("mock reply from llama3", 4);
        assert_eq!(
            out,
            json!({"model_name": "llama3", "model_version": "1",
                "text_output": "mock reply from llama3", "num_input_tokens": 2,
                "num_output_tokens": 4})
        );
        let r = answer_through(Family::Triton, "llama3", out.to_string().as_bytes()).unwrap();
        assert_eq!(
            r["choices"][0]["message"]["content"],
            "mock reply from llama3"
        );
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            r["usage"],
            json!({"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6})
        );

        let quiet = MockControl {
            usage: false,
            ..control()
        };
        let plan = Plan::new(&ask(false), "llama3", Some("3"), &quiet);
        let out = plan.response("hi", 1);
        assert_eq!(
            out,
            json!({"model_name": "llama3", "model_version": "3", "text_output": "hi"})
        );
        let r = answer_through(Family::Triton, "llama3", out.to_string().as_bytes()).unwrap();
        assert!(r.get("usage").is_none());
    }

    #[test]
    fn streams_pieces_or_one_response() {
        let c = MockControl {
            chunks: 3,
            ..control()
        };
        let plan = Plan::new(&ask(true), "llama3", None, &c);
        let pieces = stream_pieces(&c);
        let responses = plan.responses(&pieces, true);
        let texts: Vec<&str> = responses
            .iter()
            .map(|r| r["text_output"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["w0 ", "w1 ", "w2 "]);
        assert!(responses.iter().all(|r| r["num_output_tokens"] == 1));
        let one = plan.responses(&pieces, false);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["text_output"], "w0 w1 w2 ");
        assert_eq!(one[0]["num_output_tokens"], 3);
        let empty = plan.responses(&[], true);
        assert_eq!(empty, [plan.response("", 0)]);

        let frames = frames(&responses, None);
        assert_eq!(
            String::from_utf8_lossy(&frames[0]),
            format!("data: {}\n\n", responses[0])
        );
        let chunks = stream_through_plugin(&frames);
        let text = e2e::sse::chat_text(&chunks);
        assert_eq!(text, "w0 w1 w2 ");
        assert_eq!(
            chunks.last().unwrap()["usage"],
            json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
        );
        assert!(chunks.iter().all(|c| c["model"] == "llama3"));
    }

    #[test]
    fn stream_error_event_replaces_the_last_frame() {
        let plan = Plan::new(&ask(true), "llama3", None, &control());
        let responses = plan.responses(&stream_pieces(&control()), true);
        let frames = frames(&responses, Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(frames.len(), 5);
        assert_eq!(
            String::from_utf8_lossy(&frames[4]),
            "data: {\"error\":\"mock stream failure 500\"}\n\n"
        );
        let chunks = stream_through_plugin(&frames);
        let error = chunks.iter().find(|c| c.get("error").is_some()).unwrap();
        assert_eq!(
            error["error"]["message"],
            "Triton error: mock stream failure 500"
        );
    }

    #[test]
    fn failure_is_triton_shaped() {
        assert_eq!(
            failure(StatusCode::SERVICE_UNAVAILABLE).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let e = triton_error_to_openai(400, error_body("bad input").to_string().as_bytes());
        assert_eq!(e.message, "bad input");
    }

    /// The routes behind the real app, over HTTP: versioned and percent-encoded paths, the
    /// stream, errors in Triton's shape, and the recording.
    #[tokio::test]
    async fn serves_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = crate::app(std::sync::Arc::new(crate::record::Shared::default()));
        tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
        let base = format!("http://{addr}");
        let result = tokio::task::spawn_blocking(move || {
            let client = e2e::http::Client::new(std::time::Duration::from_secs(10));
            let post = |path: &str, headers: &[(&str, &str)], body: &Value| {
                client
                    .post(&format!("{base}{path}"), headers, &body.to_string())
                    .unwrap()
            };
            let ok = post(
                "/v2/models/org%2Fm%20x/versions/2/generate",
                &[],
                &ask(false),
            );
            let sse = post(
                "/v2/models/llama3/generate_stream",
                &[("x-mock-chunks", "2")],
                &ask(true),
            );
            let bad = post(
                "/v2/models/llama3/generate",
                &[],
                &json!({"text_input": "x", "messages": []}),
            );
            let failed = post(
                "/v2/models/llama3/generate",
                &[("x-mock-status", "503")],
                &ask(false),
            );
            let recorded = client.get(&format!("{base}/__mock/requests"), &[]).unwrap();
            (ok, sse, bad, failed, recorded)
        })
        .await
        .unwrap();
        let (ok, sse, bad, failed, recorded) = result;
        assert_eq!(ok.status, 200, "{}", ok.body);
        let v = ok.json().unwrap();
        assert_eq!(
            (v["model_name"].as_str(), v["model_version"].as_str()),
            (Some("org/m x"), Some("2"))
        );
        assert_eq!(v["text_output"], "mock reply from org/m x");
        assert_eq!(sse.status, 200);
        assert_eq!(sse.header("content-type"), Some("text/event-stream"));
        assert_eq!(sse.body.matches("data: ").count(), 2, "{}", sse.body);
        assert!(sse.body.contains("\"text_output\":\"w1 \""), "{}", sse.body);
        assert_eq!(bad.status, 400);
        assert!(bad.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("'messages'"));
        assert_eq!(failed.status, 503);
        assert_eq!(failed.json().unwrap(), error_body("mock failure 503"));
        let list = recorded.json().unwrap();
        let paths: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/v2/models/org%2Fm%20x/versions/2/generate",
                "/v2/models/llama3/generate_stream",
                "/v2/models/llama3/generate",
                "/v2/models/llama3/generate"
            ]
        );
        assert_eq!(list[1]["body_json"]["parameters"]["stream"], true);
    }
}
