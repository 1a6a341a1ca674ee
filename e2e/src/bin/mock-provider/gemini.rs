//! Google Gemini wire format, shaped after Google's public API reference: `generateContent`,
//! `streamGenerateContent` (`alt=sse`: SSE events; otherwise one streamed JSON array),
//! `batchEmbedContents` and `embedContent`, `predict` (Imagen image generation; Vertex text
//! embeddings), image output from `generateContent` (`responseModalities` with `IMAGE`), under
//! the Gemini API paths
//! (`/{v1beta|v1}/models/{model}:{action}`) and the Vertex AI ones
//! (`/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:{action}`,
//! `/v1/publishers/google/models/{model}:{action}`, also under `v1beta1`).
//!
//! Rejects (400, Google's error shape) what the real API rejects and a gateway could get wrong:
//! unknown fields (OpenAI leftovers such as `messages`, JSON-schema keywords such as
//! `additionalProperties`), turns that do not alternate, function responses that do not match
//! the calls before them, and function calls sent back without the thought signature the mock
//! issued. Without a key (`x-goog-api-key`, `?key=` or `Authorization: Bearer`) it answers 401.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::control::{MockControl, RequestCtx};
use crate::openai::{embed, stream_pieces};
use crate::reply::{self, count_words};
use crate::stream::{self, Streamed};

/// The thought the mock shares when `thinkingConfig.includeThoughts` is true.
pub const THOUGHT_TEXT: &str = "Thinking about the answer.";
/// Candidate tokens charged for a function call answer.
const TOOL_CALL_TOKENS: usize = 5;
/// Header naming a status: the stream ends with that error event instead of its last chunk.
const STREAM_ERROR_HEADER: &str = "x-mock-stream-error";

/// Top-level fields of `GenerateContentRequest`.
const REQUEST_FIELDS: &[&str] = &[
    "model",
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
    "labels",
];
/// Fields of `GenerationConfig`.
const GENERATION_FIELDS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "mediaResolution",
    "imageConfig",
    "routingConfig",
    "audioTimestamp",
];
/// Fields of `ThinkingConfig`.
const THINKING_FIELDS: &[&str] = &["includeThoughts", "thinkingBudget", "thinkingLevel"];
/// Fields of `Content`.
const CONTENT_FIELDS: &[&str] = &["role", "parts"];
/// Fields of `Part`.
const PART_FIELDS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "mediaResolution",
];
/// Fields of `FunctionDeclaration`.
const DECLARATION_FIELDS: &[&str] = &[
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
];
/// Fields of `Schema` (an OpenAPI subset).
const SCHEMA_FIELDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];
/// Fields of one `EmbedContentRequest`.
const EMBED_FIELDS: &[&str] = &[
    "model",
    "content",
    "taskType",
    "title",
    "outputDimensionality",
];

/// The Gemini API and Vertex AI routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for prefix in [
        "/v1beta/models",
        "/v1/models",
        "/v1/publishers/google/models",
        "/v1beta1/publishers/google/models",
        "/v1/projects/{project}/locations/{location}/publishers/google/models",
        "/v1beta1/projects/{project}/locations/{location}/publishers/google/models",
    ] {
        router = router.route(&format!("{prefix}/{{call}}"), post(call));
    }
    router
}

/// Google's RPC status name for an HTTP status.
pub fn rpc_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// `{"error":{"code","message","status"}}`.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({"error": {"code": status.as_u16(), "message": message, "status": rpc_status(status)}})
}

/// A Google-shaped error reply.
pub fn error(status: StatusCode, message: &str) -> Response {
    reply::json(status, error_body(status, message))
}

/// The reply for `x-mock-status` / `/__mock/fail` on a Gemini path, for the control middleware
/// (which answers those in the OpenAI shape until it routes Gemini paths here).
pub fn failure(status: StatusCode) -> Response {
    error(status, &format!("mock failure {}", status.as_u16()))
}

/// `model:action` split at the last colon.
pub fn split_call(call: &str) -> Option<(&str, &str)> {
    call.rsplit_once(':')
        .filter(|(model, action)| !model.is_empty() && !action.is_empty())
}

/// The value of a query parameter (not percent-decoded).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether the request carries a key: `x-goog-api-key`, `?key=` or `Authorization: Bearer`.
pub fn has_key(headers: &HeaderMap, query: Option<&str>) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let bearer = header("authorization").is_some_and(|v| {
        v.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
            && v.get(7..).is_some_and(|t| !t.trim().is_empty())
    });
    header("x-goog-api-key").is_some()
        || query_param(query, "key").is_some_and(|k| !k.is_empty())
        || bearer
}

/// The thought signature the mock issues for a call of `name` (base64, like Google's).
pub fn signature(name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("mock-thought-signature:{name}"))
}

/// `snake_case` → `camelCase` (the proto JSON mapping accepts both).
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for ch in key.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// A field by its camelCase name, also found under its snake_case name.
fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let obj = value.as_object()?;
    obj.get(name)
        .or_else(|| obj.iter().find(|(k, _)| camel(k) == name).map(|(_, v)| v))
}

fn array<'a>(value: &'a Value, name: &str) -> &'a [Value] {
    field(value, name)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Every key of `value` must be one of `allowed` (in either spelling).
fn check_fields(value: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
    let Some(obj) = value.as_object() else {
        return Err(format!("Invalid value at '{at}': expected an object"));
    };
    let place = if at.is_empty() {
        String::new()
    } else {
        format!(" at '{at}'")
    };
    match obj.keys().find(|k| !allowed.contains(&camel(k).as_str())) {
        Some(key) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{key}\"{place}: Cannot find field."
        )),
        None => Ok(()),
    }
}

fn check_schema(schema: &Value, at: &str) -> Result<(), String> {
    check_fields(schema, SCHEMA_FIELDS, at)?;
    if let Some(props) = field(schema, "properties").and_then(Value::as_object) {
        for (name, s) in props {
            check_schema(s, &format!("{at}.properties[{name}]"))?;
        }
    }
    if let Some(items) = field(schema, "items") {
        check_schema(items, &format!("{at}.items"))?;
    }
    for (i, s) in array(schema, "anyOf").iter().enumerate() {
        check_schema(s, &format!("{at}.any_of[{i}]"))?;
    }
    Ok(())
}

fn role(content: &Value) -> &str {
    field(content, "role")
        .and_then(Value::as_str)
        .unwrap_or("user")
}

fn parts_with<'a>(content: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    array(content, "parts")
        .iter()
        .filter(move |p| field(p, kind).is_some())
}

/// What the real API rejects and a gateway could get wrong; the error is the 400 message.
pub fn validate(req: &Value) -> Result<(), String> {
    check_fields(req, REQUEST_FIELDS, "")?;
    if let Some(config) = field(req, "generationConfig") {
        check_fields(config, GENERATION_FIELDS, "generation_config")?;
        if let Some(thinking) = field(config, "thinkingConfig") {
            check_fields(
                thinking,
                THINKING_FIELDS,
                "generation_config.thinking_config",
            )?;
            if field(thinking, "thinkingBudget").is_some()
                && field(thinking, "thinkingLevel").is_some()
            {
                return Err(
                    "You can only set only one of thinking budget and thinking level.".into(),
                );
            }
        }
        if let Some(schema) = field(config, "responseSchema") {
            check_schema(schema, "generation_config.response_schema")?;
        }
    }
    for (i, tool) in array(req, "tools").iter().enumerate() {
        for (j, decl) in array(tool, "functionDeclarations").iter().enumerate() {
            let at = format!("tools[{i}].function_declarations[{j}]");
            check_fields(decl, DECLARATION_FIELDS, &at)?;
            if field(decl, "name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(format!(
                    "* GenerateContentRequest.{at}.name: Name cannot be empty."
                ));
            }
            if let Some(params) = field(decl, "parameters") {
                check_schema(params, &format!("{at}.parameters"))?;
                let is_object = field(params, "type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("object"));
                let has_props = field(params, "properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty());
                if is_object && !has_props {
                    return Err(format!(
                        "* GenerateContentRequest.{at}.parameters.properties: should be non-empty for OBJECT type"
                    ));
                }
            }
        }
    }
    if let Some(system) = field(req, "systemInstruction") {
        check_fields(system, CONTENT_FIELDS, "system_instruction")?;
    }

    let contents = array(req, "contents");
    if contents.is_empty() {
        return Err("* GenerateContentRequest.contents: contents is not specified".into());
    }
    for (i, content) in contents.iter().enumerate() {
        check_fields(content, CONTENT_FIELDS, &format!("contents[{i}]"))?;
        let r = role(content);
        if r != "user" && r != "model" {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
            ));
        }
        let parts = array(content, "parts");
        if parts.is_empty() {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            ));
        }
        for (j, part) in parts.iter().enumerate() {
            check_fields(part, PART_FIELDS, &format!("contents[{i}].parts[{j}]"))?;
        }
        if i > 0 && contents.get(i - 1).is_some_and(|prev| role(prev) == r) {
            return Err(format!(
                "contents[{i}]: turns must alternate between user and model (two {r} turns in a row)"
            ));
        }
    }
    for (i, content) in contents.iter().enumerate() {
        if role(content) != "model" {
            continue;
        }
        let calls = parts_with(content, "functionCall").count();
        if calls > 0 {
            if let Some(next) = contents.get(i + 1) {
                let responses = parts_with(next, "functionResponse").count();
                if role(next) != "user" || responses != calls {
                    return Err(format!(
                        "contents[{}]: the number of function response parts ({responses}) must equal the number of function call parts ({calls}) of the turn before",
                        i + 1
                    ));
                }
            }
        }
        // Like Gemini 3: the first function call of each model turn carries its signature.
        if let Some(first) = parts_with(content, "functionCall").next() {
            let name = field(first, "functionCall")
                .and_then(|c| field(c, "name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let sent = field(first, "thoughtSignature").and_then(Value::as_str);
            if sent != Some(signature(name).as_str()) {
                return Err(format!(
                    "Function call `{name}` in contents[{i}] is missing the thought_signature issued with it \
                     (got {sent:?}); signatures must be sent back unchanged."
                ));
            }
        }
    }
    Ok(())
}

/// Prompt tokens: words of every text part in `systemInstruction` and `contents`.
pub fn prompt_words(req: &Value) -> usize {
    let text_words = |content: &Value| -> usize {
        array(content, "parts")
            .iter()
            .filter_map(|p| field(p, "text").and_then(Value::as_str))
            .map(count_words)
            .sum()
    };
    let system = field(req, "systemInstruction").map_or(0, text_words);
    system + array(req, "contents").iter().map(text_words).sum::<usize>()
}

/// The function to call: the first allowed (`allowedFunctionNames`) or first declared function,
/// when functions are offered, calling is not `NONE`, and the last turn is the user's own (not
/// function responses).
pub fn tool_to_call(req: &Value) -> Option<String> {
    let calling = field(req, "toolConfig").and_then(|c| field(c, "functionCallingConfig"));
    let mode = calling
        .and_then(|c| field(c, "mode"))
        .and_then(Value::as_str);
    if mode == Some("NONE") {
        return None;
    }
    let last = array(req, "contents").last()?;
    if role(last) != "user" || parts_with(last, "functionResponse").next().is_some() {
        return None;
    }
    let declared = array(req, "tools")
        .iter()
        .flat_map(|t| array(t, "functionDeclarations"))
        .filter_map(|d| field(d, "name").and_then(Value::as_str))
        .next()?;
    let allowed = calling
        .map(|c| array(c, "allowedFunctionNames"))
        .and_then(|names| names.first())
        .and_then(Value::as_str);
    Some(allowed.unwrap_or(declared).to_owned())
}

/// Whether the request asks for thoughts (`generationConfig.thinkingConfig.includeThoughts`).
pub fn wants_thoughts(req: &Value) -> bool {
    field(req, "generationConfig")
        .and_then(|g| field(g, "thinkingConfig"))
        .and_then(|t| field(t, "includeThoughts"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// What an answer consists of.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The model in the path, echoed as `modelVersion`.
    pub model: String,
    /// `responseId`.
    pub response_id: String,
    /// Prompt tokens.
    pub prompt: usize,
    /// Whether a thought part comes first.
    pub thought: bool,
    /// The function called instead of a text answer.
    pub tool: Option<String>,
    /// Whether `usageMetadata` is reported (`x-mock-usage: none` turns it off).
    pub usage: bool,
}

impl Plan {
    /// The plan for a request.
    pub fn new(req: &Value, model: &str, id: u64, control: &MockControl) -> Self {
        Plan {
            model: model.to_owned(),
            response_id: format!("mock-resp-{id}"),
            prompt: prompt_words(req),
            thought: wants_thoughts(req),
            tool: tool_to_call(req),
            usage: control.usage,
        }
    }

    fn thoughts(&self) -> usize {
        if self.thought {
            count_words(THOUGHT_TEXT)
        } else {
            0
        }
    }

    fn usage(&self, candidates: usize) -> Option<Value> {
        let thoughts = self.thoughts();
        self.usage.then(|| {
            let mut u = json!({
                "promptTokenCount": self.prompt,
                "candidatesTokenCount": candidates,
                "totalTokenCount": self.prompt + candidates + thoughts,
            });
            if thoughts > 0 {
                u["thoughtsTokenCount"] = json!(thoughts);
            }
            u
        })
    }

    /// One `GenerateContentResponse`.
    fn response(&self, parts: Vec<Value>, finished: bool, usage: Option<Value>) -> Value {
        let mut candidate = Map::new();
        candidate.insert("content".into(), json!({"role": "model", "parts": parts}));
        if finished {
            candidate.insert("finishReason".into(), json!("STOP"));
        }
        candidate.insert("index".into(), json!(0));
        let mut out = json!({"candidates": [Value::Object(candidate)]});
        if let Some(u) = usage {
            out["usageMetadata"] = u;
        }
        out["modelVersion"] = json!(self.model);
        out["responseId"] = json!(self.response_id);
        out
    }

    fn thought_part() -> Value {
        json!({"text": THOUGHT_TEXT, "thought": true})
    }

    fn call_part(name: &str) -> Value {
        json!({"functionCall": {"name": name, "args": {"location": "Paris"}},
            "thoughtSignature": signature(name)})
    }

    /// The whole `generateContent` answer; `text` is the reply when no function is called.
    pub fn answer(&self, text: &str) -> Value {
        let mut parts = Vec::new();
        if self.thought {
            parts.push(Self::thought_part());
        }
        let candidates = match &self.tool {
            Some(name) => {
                parts.push(Self::call_part(name));
                TOOL_CALL_TOKENS
            }
            None => {
                parts.push(json!({ "text": text }));
                count_words(text)
            }
        };
        self.response(parts, true, self.usage(candidates))
    }

    /// The `streamGenerateContent` chunks: the thought (if asked for), then one chunk per text
    /// piece (or the whole function call), each with the usage so far; the last one with
    /// `finishReason` and the final usage.
    pub fn chunks(&self, pieces: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        if self.thought {
            out.push(self.response(vec![Self::thought_part()], false, self.usage(0)));
        }
        match &self.tool {
            Some(name) => out.push(self.response(
                vec![Self::call_part(name)],
                true,
                self.usage(TOOL_CALL_TOKENS),
            )),
            None if pieces.is_empty() => {
                out.push(self.response(vec![json!({"text": ""})], true, self.usage(0)));
            }
            None => {
                for (i, piece) in pieces.iter().enumerate() {
                    let last = i + 1 == pieces.len();
                    out.push(self.response(
                        vec![json!({ "text": piece })],
                        last,
                        self.usage(i + 1),
                    ));
                }
            }
        }
        out
    }
}

/// Stream body frames: SSE events (`data: …\r\n\r\n`), or the pieces of one JSON array.
pub fn frames(chunks: &[Value], sse: bool) -> Vec<Bytes> {
    let last = chunks.len().saturating_sub(1);
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            if sse {
                return Bytes::from(format!("data: {chunk}\r\n\r\n"));
            }
            let open = if i == 0 { "[" } else { ",\r\n" };
            let close = if i == last { "]" } else { "" };
            Bytes::from(format!("{open}{chunk}{close}"))
        })
        .collect()
}

async fn call(
    Extension(ctx): Extension<RequestCtx>,
    Path(params): Path<Vec<(String, String)>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = params
        .iter()
        .find(|(name, _)| name == "call")
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    let Some((model, action)) = split_call(target) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!(
                "unknown path {} (expected models/{{model}}:{{action}})",
                uri.path()
            ),
        );
    };
    if !has_key(&headers, uri.query()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "No API key: send x-goog-api-key, the key query parameter, or Authorization: Bearer.",
        );
    }
    let req = match serde_json::from_slice::<Value>(&body) {
        Ok(req) if req.is_object() => req,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid JSON payload received: expected an object.",
            )
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid JSON payload received. {e}"),
            )
        }
    };
    match action {
        "generateContent" | "streamGenerateContent" => {
            if let Err(message) = validate(&req) {
                return error(StatusCode::BAD_REQUEST, &message);
            }
            let plan = Plan::new(&req, model, ctx.id, &ctx.control);
            if action == "generateContent" && wants_image(&req) {
                return reply::json(StatusCode::OK, image_answer(&req, model, &plan));
            }
            if action == "generateContent" {
                let text = ctx
                    .control
                    .content
                    .clone()
                    .unwrap_or_else(|| format!("mock reply from {model}"));
                return reply::json(StatusCode::OK, plan.answer(&text));
            }
            let mut chunks = plan.chunks(&stream_pieces(&ctx.control));
            if let Some(status) = stream_error(&headers) {
                chunks.pop();
                chunks.push(error_body(
                    status,
                    &format!("mock stream failure {}", status.as_u16()),
                ));
            }
            let sse = query_param(uri.query(), "alt") == Some("sse");
            let frames = frames(&chunks, sse);
            if sse {
                return stream::sse_response(frames, ctx.control.pacing());
            }
            let mut response = Response::new(stream::paced_body(frames, ctx.control.pacing()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.extensions_mut().insert(Streamed);
            response
        }
        "predict" => match predict(model, &req) {
            Ok(v) => reply::json(StatusCode::OK, v),
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        "batchEmbedContents" => match batch_embed(model, &req) {
            Ok(v) => reply::json(StatusCode::OK, v),
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        "embedContent" => match embed_one(&req, "") {
            Ok(values) => reply::json(StatusCode::OK, json!({"embedding": {"values": values}})),
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        other => error(
            StatusCode::NOT_FOUND,
            &format!("unknown action {other:?} for model {model}"),
        ),
    }
}

/// Whether a `generateContent` request asks for images (`responseModalities` with `IMAGE`).
fn wants_image(req: &Value) -> bool {
    field(req, "generationConfig")
        .map(|g| array(g, "responseModalities"))
        .is_some_and(|m| m.iter().any(|v| v == "IMAGE"))
}

/// The bytes of the image the mock "draws": what it was asked, readable after base64 decoding.
pub fn mock_image(model: &str, prompt: &str, inputs: usize, mime: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!(
        "mock-image model={model} prompt={prompt} inputs={inputs} mime={mime}"
    ))
}

/// A `generateContent` answer with image output: a text part, then one inline image of the
/// `imageConfig.imageOutputOptions.mimeType` asked for; the input images are counted into it.
fn image_answer(req: &Value, model: &str, plan: &Plan) -> Value {
    let parts: Vec<&Value> = array(req, "contents")
        .iter()
        .flat_map(|c| array(c, "parts"))
        .collect();
    let prompt: Vec<&str> = parts
        .iter()
        .filter_map(|p| field(p, "text").and_then(Value::as_str))
        .collect();
    let inputs = parts
        .iter()
        .filter(|p| field(p, "inlineData").is_some() || field(p, "fileData").is_some())
        .count();
    let mime = field(req, "generationConfig")
        .and_then(|g| field(g, "imageConfig"))
        .and_then(|c| field(c, "imageOutputOptions"))
        .and_then(|o| field(o, "mimeType"))
        .and_then(Value::as_str)
        .unwrap_or("image/png");
    let image = mock_image(model, &prompt.join(" "), inputs, mime);
    let parts = vec![
        json!({"text": "Here is the image."}),
        json!({"inlineData": {"mimeType": mime, "data": image}}),
    ];
    // Google charges image output by the image (1290 tokens for a 1024px one).
    plan.response(parts, true, plan.usage(4 + 1290))
}

/// Fields of an Imagen `predict` instance and its parameters.
const IMAGEN_INSTANCE_FIELDS: &[&str] = &["prompt", "image", "mask", "referenceImages"];
const IMAGEN_PARAMETER_FIELDS: &[&str] = &[
    "sampleCount",
    "aspectRatio",
    "personGeneration",
    "safetySetting",
    "outputOptions",
    "sampleImageSize",
    "negativePrompt",
    "enhancePrompt",
    "addWatermark",
    "seed",
    "language",
];
/// Fields of a Vertex text embedding `predict` instance and its parameters.
const EMBED_INSTANCE_FIELDS: &[&str] = &["content", "taskType", "title"];
const EMBED_PARAMETER_FIELDS: &[&str] = &["autoTruncate", "outputDimensionality"];

/// `predict`: Imagen (`imagen-*` models; `instances[].prompt`, `sampleCount` images, 4 by
/// default) or Vertex text embeddings (`instances[].content`, with `statistics.token_count`).
pub fn predict(model: &str, req: &Value) -> Result<Value, String> {
    check_fields(req, &["instances", "parameters"], "")?;
    let instances = array(req, "instances");
    if instances.is_empty() {
        return Err("instances must not be empty".into());
    }
    let params = field(req, "parameters");
    if model.starts_with("imagen") {
        if let Some(p) = params {
            check_fields(p, IMAGEN_PARAMETER_FIELDS, "parameters")?;
        }
        let [instance] = instances else {
            return Err("Imagen takes exactly one instance".into());
        };
        check_fields(instance, IMAGEN_INSTANCE_FIELDS, "instances[0]")?;
        let prompt = field(instance, "prompt")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or("instances[0].prompt is required")?;
        let count = params
            .and_then(|p| field(p, "sampleCount"))
            .and_then(Value::as_u64)
            .unwrap_or(4);
        let predictions: Vec<Value> = (0..count)
            .map(|_| {
                json!({"bytesBase64Encoded": mock_image(model, prompt, 0, "image/png"),
                    "mimeType": "image/png"})
            })
            .collect();
        return Ok(json!({ "predictions": predictions }));
    }
    if let Some(p) = params {
        check_fields(p, EMBED_PARAMETER_FIELDS, "parameters")?;
    }
    let dims = params
        .and_then(|p| field(p, "outputDimensionality"))
        .and_then(Value::as_u64);
    let mut predictions = Vec::new();
    for (i, instance) in instances.iter().enumerate() {
        check_fields(instance, EMBED_INSTANCE_FIELDS, &format!("instances[{i}]"))?;
        let content = field(instance, "content")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("instances[{i}].content is required"))?;
        let mut values = embed(content);
        if let Some(d) = dims {
            values.truncate(usize::try_from(d).unwrap_or(usize::MAX));
        }
        predictions.push(json!({"embeddings": {"values": values,
            "statistics": {"token_count": count_words(content), "truncated": false}}}));
    }
    Ok(json!({ "predictions": predictions }))
}

/// The status named by `x-mock-stream-error`, if any and valid.
fn stream_error(headers: &HeaderMap) -> Option<StatusCode> {
    headers
        .get(STREAM_ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
}

/// The vector for one `EmbedContentRequest`: the mock embedding of its text parts (joined with
/// a space), cut to `outputDimensionality`.
fn embed_one(req: &Value, at: &str) -> Result<Vec<f64>, String> {
    let content = field(req, "content").ok_or_else(|| format!("{at}content is required"))?;
    let text: Vec<&str> = array(content, "parts")
        .iter()
        .filter_map(|p| field(p, "text").and_then(Value::as_str))
        .collect();
    if text.is_empty() {
        return Err(format!("{at}content must have a text part"));
    }
    let mut values = embed(&text.join(" "));
    if let Some(dims) = field(req, "outputDimensionality").and_then(Value::as_u64) {
        values.truncate(usize::try_from(dims).unwrap_or(usize::MAX));
    }
    Ok(values)
}

/// The `batchEmbedContents` answer: every request must name `models/{model}` of the path.
pub fn batch_embed(model: &str, req: &Value) -> Result<Value, String> {
    check_fields(req, &["requests"], "")?;
    let requests = array(req, "requests");
    if requests.is_empty() {
        return Err("* BatchEmbedContentsRequest.requests: requests must not be empty".into());
    }
    let expected = format!("models/{model}");
    let mut embeddings = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let at = format!("requests[{i}]");
        check_fields(r, EMBED_FIELDS, &at)?;
        let named = field(r, "model").and_then(Value::as_str);
        if named != Some(expected.as_str()) {
            return Err(format!(
                "* BatchEmbedContentsRequest.{at}.model: expected {expected:?}, got {named:?}"
            ));
        }
        let values = embed_one(r, &format!("{at}."))?;
        embeddings.push(json!({ "values": values }));
    }
    Ok(json!({ "embeddings": embeddings }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predict_serves_imagen_and_vertex_embeddings() {
        let v = predict(
            "imagen-3.0-generate-002",
            &json!({"instances": [{"prompt": "a cat"}], "parameters": {"sampleCount": 2}}),
        )
        .unwrap();
        assert_eq!(v["predictions"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["predictions"][0]["bytesBase64Encoded"],
            mock_image("imagen-3.0-generate-002", "a cat", 0, "image/png")
        );
        // Imagen's default is four images; unknown fields are refused.
        let v = predict("imagen-4", &json!({"instances": [{"prompt": "p"}]})).unwrap();
        assert_eq!(v["predictions"].as_array().unwrap().len(), 4);
        assert!(predict(
            "imagen-4",
            &json!({"instances": [{"prompt": "p"}], "parameters": {"n": 1}})
        )
        .is_err());
        let v = predict(
            "text-embedding-005",
            &json!({"instances": [{"content": "a b"}, {"content": "c"}],
                "parameters": {"outputDimensionality": 8}}),
        )
        .unwrap();
        assert_eq!(
            v["predictions"][0]["embeddings"]["statistics"]["token_count"],
            2
        );
        assert_eq!(
            v["predictions"][1]["embeddings"]["values"]
                .as_array()
                .unwrap()
                .len(),
            8
        );
        assert!(predict("text-embedding-005", &json!({"instances": [{"text": "a"}]})).is_err());
        assert!(predict("text-embedding-005", &json!({"instances": []})).is_err());
    }

    fn control() -> MockControl {
        MockControl::default()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "parts": [{"text": text}]})
    }

    #[test]
    fn splits_calls_and_reads_queries() {
        assert_eq!(
            split_call("gemini-2.5-flash:generateContent"),
            Some(("gemini-2.5-flash", "generateContent"))
        );
        assert_eq!(split_call("a:b:c"), Some(("a:b", "c")));
        assert_eq!(split_call("gemini"), None);
        assert_eq!(split_call(":x"), None);
        assert_eq!(query_param(Some("alt=sse&key=k"), "alt"), Some("sse"));
        assert_eq!(query_param(Some("alt=sse&key=k"), "key"), Some("k"));
        assert_eq!(query_param(Some("alt"), "alt"), None);
        assert_eq!(query_param(None, "alt"), None);
    }

    #[test]
    fn needs_a_key() {
        let with = |name: &'static str, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(value).unwrap());
            h
        };
        let none = HeaderMap::new();
        assert!(!has_key(&none, None));
        assert!(!has_key(&none, Some("alt=sse&key=")));
        assert!(has_key(&none, Some("alt=sse&key=abc")));
        assert!(has_key(&with("x-goog-api-key", "abc"), None));
        assert!(!has_key(&with("x-goog-api-key", " "), None));
        assert!(has_key(&with("authorization", "Bearer ya29.token"), None));
        assert!(has_key(&with("authorization", "bearer t"), None));
        assert!(!has_key(&with("authorization", "Bearer "), None));
        assert!(!has_key(&with("authorization", "Basic abc"), None));
    }

    #[test]
    fn google_error_shape() {
        assert_eq!(
            error_body(StatusCode::TOO_MANY_REQUESTS, "slow down"),
            json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
        );
        assert_eq!(rpc_status(StatusCode::UNAUTHORIZED), "UNAUTHENTICATED");
        assert_eq!(rpc_status(StatusCode::SERVICE_UNAVAILABLE), "UNAVAILABLE");
        assert_eq!(rpc_status(StatusCode::IM_A_TEAPOT), "UNKNOWN");
        assert_eq!(
            failure(StatusCode::BAD_GATEWAY).status(),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn accepts_a_well_formed_request() {
        let req = json!({
            "contents": [
                user("Weather?"),
                {"role": "model", "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                     "thoughtSignature": signature("get_weather")},
                    {"functionCall": {"name": "get_time", "args": {}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                    {"functionResponse": {"name": "get_time", "response": {"output": "9"}}}]}
            ],
            "system_instruction": {"parts": [{"text": "Be brief."}]},
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"location": {"type": "string",
                    "nullable": true}, "days": {"type": "array", "items": {"type": "integer"}}},
                    "required": ["location"]}}]}, {"googleSearch": {}}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
            "generationConfig": {"temperature": 0.2, "max_output_tokens": 10,
                "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
        });
        assert_eq!(validate(&req), Ok(()));
    }

    #[test]
    fn rejects_what_gemini_rejects() {
        let base = json!({"contents": [user("hi")]});
        let fails = |patch: &dyn Fn(&mut Value), needle: &str| {
            let mut req = base.clone();
            patch(&mut req);
            let e = validate(&req).unwrap_err();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        };
        fails(&|r| r["messages"] = json!([]), "Unknown name \"messages\"");
        fails(&|r| r["stream"] = json!(true), "Unknown name \"stream\"");
        fails(&|r| r["contents"] = json!([]), "contents is not specified");
        fails(
            &|r| r.as_object_mut().unwrap().clear(),
            "contents is not specified",
        );
        fails(
            &|r| r["contents"][0]["role"] = json!("assistant"),
            "valid role",
        );
        fails(
            &|r| r["contents"][0]["parts"] = json!([]),
            "must not be empty",
        );
        fails(
            &|r| r["contents"][0]["parts"][0]["type"] = json!("text"),
            "Unknown name \"type\"",
        );
        fails(
            &|r| r["contents"] = json!([user("a"), user("b")]),
            "alternate",
        );
        fails(
            &|r| r["generationConfig"] = json!({"max_tokens": 5}),
            "Unknown name \"max_tokens\" at 'generation_config'",
        );
        fails(
            &|r| {
                r["generationConfig"] =
                    json!({"thinkingConfig": {"thinkingBudget": 1, "thinkingLevel": "low"}})
            },
            "only one of thinking budget",
        );
        fails(
            &|r| r["tools"] = json!([{"functionDeclarations": [{"name": "f", "parameters": {
                "type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}]}]),
            "Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters'",
        );
        fails(
            &|r| r["tools"] = json!([{"functionDeclarations": [{"name": "f", "parameters": {
                "type": "object", "properties": {"a": {"type": "array", "items": {"$ref": "#/x"}}}}}]}]),
            "Unknown name \"$ref\" at 'tools[0].function_declarations[0].parameters.properties[a].items'",
        );
        fails(
            &|r| {
                r["tools"] = json!([{"functionDeclarations": [{"name": "f",
                "parameters": {"type": "object", "properties": {}}}]}])
            },
            "should be non-empty for OBJECT type",
        );
        fails(
            &|r| r["tools"] = json!([{"functionDeclarations": [{"name": "f", "strict": true}]}]),
            "Unknown name \"strict\"",
        );
        fails(
            &|r| {
                r["generationConfig"] =
                    json!({"responseSchema": {"type": "object", "$schema": "x"}})
            },
            "response_schema",
        );
    }

    #[test]
    fn checks_function_turns_and_signatures() {
        let call = |name: &str, sig: Option<String>| {
            let mut part = json!({"functionCall": {"name": name, "args": {}}});
            if let Some(s) = sig {
                part["thoughtSignature"] = json!(s);
            }
            part
        };
        let answer = |n: usize| {
            let parts: Vec<Value> = (0..n)
                .map(|_| json!({"functionResponse": {"name": "f", "response": {}}}))
                .collect();
            json!({"role": "user", "parts": parts})
        };
        let req = |model_parts: Vec<Value>, next: Option<Value>| {
            let mut contents = vec![user("go"), json!({"role": "model", "parts": model_parts})];
            contents.extend(next);
            json!({ "contents": contents })
        };
        let signed = call("f", Some(signature("f")));
        assert_eq!(
            validate(&req(vec![signed.clone()], Some(answer(1)))),
            Ok(())
        );
        // The last turn may be the model's own call (nothing answered yet).
        assert_eq!(validate(&req(vec![signed.clone()], None)), Ok(()));
        let e = validate(&req(vec![signed.clone()], Some(answer(2)))).unwrap_err();
        assert!(e.contains("function response parts (2)"), "{e}");
        let e = validate(&req(vec![signed.clone(), call("g", None)], Some(answer(1)))).unwrap_err();
        assert!(e.contains("(1) must equal"), "{e}");
        let e = validate(&req(vec![call("f", None)], Some(answer(1)))).unwrap_err();
        assert!(e.contains("thought_signature"), "{e}");
        let e = validate(&req(vec![call("f", Some(signature("g")))], Some(answer(1)))).unwrap_err();
        assert!(e.contains("thought_signature"), "{e}");
    }

    #[test]
    fn picks_the_function_to_call() {
        let tools = json!([{"googleSearch": {}}, {"functionDeclarations": [{"name": "get_weather"}, {"name": "now"}]}]);
        let ask = json!({"tools": tools, "contents": [user("weather?")]});
        assert_eq!(tool_to_call(&ask).as_deref(), Some("get_weather"));
        let mut only = ask.clone();
        only["toolConfig"] =
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}});
        assert_eq!(tool_to_call(&only).as_deref(), Some("now"));
        let mut none = ask.clone();
        none["toolConfig"] = json!({"function_calling_config": {"mode": "NONE"}});
        assert_eq!(tool_to_call(&none), None);
        let answered = json!({"tools": tools, "contents": [user("weather?"),
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {}}}]}]});
        assert_eq!(tool_to_call(&answered), None);
        assert_eq!(tool_to_call(&json!({"contents": [user("x")]})), None);
    }

    #[test]
    fn counts_prompt_words_and_thoughts() {
        let req = json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [user("one two three"), {"role": "model", "parts": [{"text": "four"},
                {"functionCall": {"name": "f", "args": {}}}]}],
            "generationConfig": {"thinking_config": {"include_thoughts": true}}});
        assert_eq!(prompt_words(&req), 6);
        assert!(wants_thoughts(&req));
        assert!(!wants_thoughts(&json!({"contents": []})));
    }

    #[test]
    fn answers_text_thoughts_and_calls() {
        let req = json!({"contents": [user("hello there")]});
        let plan = Plan::new(&req, "gemini-2.5-flash", 7, &control());
        assert_eq!(
            plan.answer("mock reply from gemini-2.5-flash"),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                    {"text": "mock reply from gemini-2.5-flash"}]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 4, "totalTokenCount": 6},
                "modelVersion": "gemini-2.5-flash", "responseId": "mock-resp-7"})
        );

        let req = json!({"contents": [user("weather?")],
            "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
            "generationConfig": {"thinkingConfig": {"includeThoughts": true}}});
        let plan = Plan::new(&req, "g", 1, &control());
        let out = plan.answer("unused");
        assert_eq!(
            out["candidates"][0]["content"]["parts"],
            json!([{"text": THOUGHT_TEXT, "thought": true},
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                 "thoughtSignature": signature("get_weather")}])
        );
        assert_eq!(
            out["usageMetadata"],
            json!({"promptTokenCount": 1, "candidatesTokenCount": 5, "totalTokenCount": 10,
                "thoughtsTokenCount": 4})
        );

        let quiet = MockControl {
            usage: false,
            ..control()
        };
        let plan = Plan::new(&json!({"contents": [user("x")]}), "g", 1, &quiet);
        assert!(plan.answer("hi").get("usageMetadata").is_none());
    }

    #[test]
    fn streams_chunks_with_running_usage() {
        let req = json!({"contents": [user("a b c")],
            "generationConfig": {"thinkingConfig": {"includeThoughts": true}}});
        let plan = Plan::new(&req, "g", 3, &control());
        let pieces = stream_pieces(&MockControl {
            chunks: 2,
            ..control()
        });
        let chunks = plan.chunks(&pieces);
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["thought"],
            true
        );
        assert_eq!(chunks[0]["usageMetadata"]["totalTokenCount"], 7);
        assert_eq!(
            chunks[1]["candidates"][0]["content"]["parts"][0]["text"],
            "w0 "
        );
        assert!(chunks[1]["candidates"][0].get("finishReason").is_none());
        assert_eq!(chunks[1]["usageMetadata"]["candidatesTokenCount"], 1);
        assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            chunks[2]["usageMetadata"],
            json!({"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 9,
                "thoughtsTokenCount": 4})
        );

        // No pieces: one empty final chunk. A function call: one chunk.
        let plan = Plan::new(&json!({"contents": [user("x")]}), "g", 3, &control());
        let chunks = plan.chunks(&[]);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0]["candidates"][0]["finishReason"], "STOP");
        let req =
            json!({"contents": [user("x")], "tools": [{"functionDeclarations": [{"name": "f"}]}]});
        let chunks = Plan::new(&req, "g", 3, &control()).chunks(&pieces);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["thoughtSignature"],
            signature("f")
        );
        assert_eq!(chunks[0]["usageMetadata"]["candidatesTokenCount"], 5);
    }

    #[test]
    fn frames_sse_and_json_array() {
        let chunks = [json!({"a": 1}), json!({"b": 2})];
        let sse: Vec<Bytes> = frames(&chunks, true);
        assert_eq!(
            sse,
            [
                Bytes::from("data: {\"a\":1}\r\n\r\n"),
                Bytes::from("data: {\"b\":2}\r\n\r\n")
            ]
        );
        let array = frames(&chunks, false).concat();
        let parsed: Value = serde_json::from_slice(&array).unwrap();
        assert_eq!(parsed, json!([{"a": 1}, {"b": 2}]));
        let one: Value = serde_json::from_slice(&frames(&chunks[..1], false).concat()).unwrap();
        assert_eq!(one, json!([{"a": 1}]));
    }

    #[test]
    fn embeds_batches() {
        let req = json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]},
             "outputDimensionality": 3, "taskType": "RETRIEVAL_QUERY"}]});
        let out = batch_embed("text-embedding-004", &req).unwrap();
        assert_eq!(out["embeddings"][0]["values"], json!(embed("hello")));
        assert_eq!(out["embeddings"][1]["values"], json!(embed("hello")[..3]));
        let e = batch_embed("other-model", &req).unwrap_err();
        assert!(e.contains("models/other-model"), "{e}");
        let bare = json!({"requests": [{"model": "text-embedding-004", "content": {"parts": [{"text": "x"}]}}]});
        assert!(batch_embed("text-embedding-004", &bare).is_err());
        assert!(batch_embed("m", &json!({"requests": []})).is_err());
        assert!(batch_embed("m", &json!({"input": "x"})).is_err());
        let no_text = json!({"requests": [{"model": "models/m", "content": {"parts": []}}]});
        assert!(batch_embed("m", &no_text).is_err());
    }
}
