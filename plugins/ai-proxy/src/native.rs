//! The request and answer of one provider family, as the stage and the fallback callouts need
//! them: the upstream body, the headers decided from it, and how the answer is translated back
//! into the client's format.

use crate::config::Protocol;
use crate::providers::{Auth, Family, Native, Provider};
use crate::sigv4;
use crate::translate::images::{self, ImageRequest};
use crate::translate::{
    bedrock, claude, cohere, deepl, dify, gemini, messages, minimax, qwen, reasoning, responses,
    triton, ChunkTranslator, Decode, ReasoningMode, SseTranslator, Translate, TranslateError,
};
use sdk::api::{ApiKind, ClientProtocol};
use sdk::error::ErrorReply;
use sdk::llm::anthropic;
use sdk::llm::openai;
use sdk::llm::responses::ResponsesEncoder;
use sdk::llm::stream::{ChatChunkReader, Encoder};
use sdk::pipeline::RequestBody;
use serde_json::{json, Value};
use std::time::SystemTime;

/// Bedrock's count of the input tokens of an InvokeModel call.
pub const INPUT_TOKENS_HEADER: &str = "x-amzn-bedrock-input-token-count";

/// The request as it goes to the provider.
pub struct Outbound {
    /// Upstream body.
    pub body: RequestBody,
    /// Headers decided from the body (`:path` with the model, signatures, …).
    pub late: Vec<(String, Option<String>)>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The model sent upstream (after mapping).
    pub model: String,
}

/// The API the client speaks: decides the shape of translated answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// OpenAI chat completions (and every API passed through as it is).
    Chat,
    /// Anthropic Messages.
    Messages,
    /// OpenAI Responses, to a provider that does not serve it.
    Responses,
}

impl Client {
    /// The client of a request for `api` to `p`.
    pub fn of(api: ApiKind, p: &Provider) -> Client {
        match api {
            ApiKind::AnthropicMessages => Client::Messages,
            ApiKind::Responses if !p.serves_responses() => Client::Responses,
            _ => Client::Chat,
        }
    }
}

fn bad_request(e: TranslateError) -> ErrorReply {
    ErrorReply::bad_request("unsupported_request", e.0)
}

/// Headers that point a request at the provider (host, key, version headers), independent of the
/// body. `token` is the chosen key.
pub fn static_headers(p: &Provider, token: Option<&str>) -> Vec<(String, String)> {
    let mut out = vec![(":authority".to_string(), p.host.clone())];
    if let Some(token) = token.filter(|_| !p.passthrough_client_key) {
        match p.auth {
            Auth::Bearer => out.push(("authorization".into(), format!("Bearer {token}"))),
            Auth::Header(name) => out.push((name.into(), token.to_string())),
            Auth::Scheme(scheme) => out.push(("authorization".into(), format!("{scheme} {token}"))),
            // Signed per request from the body, or a token fetched by the gateway.
            Auth::SigV4 | Auth::OAuth => {}
        }
    }
    if p.family == Family::Claude {
        out.push(("anthropic-version".into(), p.claude_version.clone()));
    }
    if p.claude_code_mode {
        for (name, value) in claude::CLAUDE_CODE_HEADERS {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

/// Header name/value pairs.
pub type Headers = Vec<(String, String)>;

/// Headers decided from the body: a value, or none to remove the header.
pub type LateHeaders = Vec<(String, Option<String>)>;

/// A whole request to `p` for an HTTP callout (fallbacks, health checks): headers, pseudo-headers
/// included, and the encoded body.
pub fn callout_request(
    host: &dyn sdk::host::Host,
    p: &Provider,
    body: RequestBody,
    api: ApiKind,
    client_path: &str,
    token: Option<&str>,
) -> Result<(Headers, Vec<u8>), ErrorReply> {
    let path = p
        .path_for(api, p.client_path(client_path))
        .unwrap_or_default();
    let out = outbound(p, body, api, host.now(), &path)?;
    let bytes = encode(&out.body)?;
    let mut headers = post_headers(p, &path, token);
    if p.auth == Auth::OAuth {
        if let Some(t) = crate::vertex::access_token(host, p) {
            headers.push(("authorization".into(), format!("Bearer {t}")));
        }
    }
    for (name, value) in out.late {
        headers.retain(|(n, _)| *n != name);
        if let Some(v) = value {
            headers.push((name, v));
        }
    }
    Ok((headers, bytes))
}

/// The headers of a JSON POST to `path` at `p` with key `token`.
pub fn post_headers(p: &Provider, path: &str, token: Option<&str>) -> Headers {
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), p.upstream_path(path)),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    headers.extend(static_headers(p, token));
    headers
}

/// Whether ai-proxy reads the body of this request to `p` (image edits and variations only
/// where it translates them).
pub fn reads_body(p: &Provider, api: ApiKind) -> bool {
    api.has_json_body() || (p.image_edits && api.is_image())
}

/// The JSON form of an images request sent as `multipart/form-data`: image files as data URLs
/// under `images`, so it maps and translates like a JSON request.
pub fn form_body(raw: &[u8], content_type: &str) -> Result<RequestBody, ErrorReply> {
    if !images::is_multipart(content_type) {
        return Err(ErrorReply::bad_request(
            "invalid_request_body",
            "image edits and variations take multipart/form-data or JSON",
        ));
    }
    images::form_to_json(raw, content_type)
        .map(RequestBody::Json)
        .map_err(|e| ErrorReply::bad_request("invalid_request_body", e.0))
}

/// Whether the request's body decides its upstream path or headers (model in the path, …).
fn body_api(p: &Provider, api: ApiKind) -> bool {
    matches!(
        api,
        ApiKind::ChatCompletions | ApiKind::AnthropicMessages | ApiKind::Embeddings
    ) || api.is_image()
        || Client::of(api, p) == Client::Responses
}

/// Whether request headers sent to `p` may depend on the body (model in the path, streaming
/// switches, signatures): a superset of what [`outbound`] puts in `late`.
pub fn headers_from_body(p: &Provider, api: ApiKind) -> bool {
    // DashScope's embedding path does not depend on the body.
    let qwen_embeddings = p.family == Family::Qwen && api == ApiKind::Embeddings;
    body_api(p, api)
        && !qwen_embeddings
        && (p.auth == Auth::SigV4
            || matches!(
                p.family,
                Family::Gemini | Family::Bedrock | Family::Triton | Family::Qwen | Family::Cohere
            ))
}

/// Whether the upstream path depends on the body (the model is part of it).
pub fn path_from_body(p: &Provider, api: ApiKind) -> bool {
    matches!(p.family, Family::Gemini | Family::Bedrock | Family::Triton) && body_api(p, api)
}

/// Translates the client's body for provider `p`. `path` is the upstream path chosen from the
/// headers (used when it does not depend on the body).
pub fn outbound(
    p: &Provider,
    body: RequestBody,
    api: ApiKind,
    now: SystemTime,
    path: &str,
) -> Result<Outbound, ErrorReply> {
    // An Anthropic client to a non-Anthropic provider goes through the OpenAI shape.
    let (body, client_thinking) = match body {
        RequestBody::Messages(msgs) if p.family != Family::Claude => {
            let model = p.mapping.map(msgs.model.as_deref().unwrap_or_default());
            let keep = p.family == Family::OpenAi && reasoning::keeps_reasoning_history(&p.kind);
            let chat = messages::to_openai_request(&msgs, &model, keep).map_err(bad_request)?;
            (
                RequestBody::Chat(chat),
                Some(reasoning::ClientThinking::of(&msgs.extra)),
            )
        }
        RequestBody::Json(v) if Client::of(api, p) == Client::Responses => {
            let model = p
                .mapping
                .map(v.get("model").and_then(Value::as_str).unwrap_or_default());
            let chat = responses::to_chat_request(&v, &model).map_err(bad_request)?;
            (RequestBody::Chat(chat), None)
        }
        other => (other, None),
    };
    let stream = match &body {
        RequestBody::Chat(c) => c.stream == Some(true),
        RequestBody::Messages(m) => m.stream == Some(true),
        RequestBody::Json(v) => v.get("stream") == Some(&Value::Bool(true)),
    };
    let mut out = Outbound {
        model: String::new(),
        body,
        late: Vec::new(),
        stream,
    };
    match std::mem::replace(&mut out.body, RequestBody::Json(Value::Null)) {
        RequestBody::Chat(mut chat) => {
            let model = p.mapping.map(chat.model.as_deref().unwrap_or_default());
            out.model = model.clone();
            out.body = chat_body(p, &mut chat, &model, stream, client_thinking, &mut out.late)?;
        }
        RequestBody::Messages(mut msgs) => {
            // Only Anthropic upstreams get here.
            let model = p.mapping.map(msgs.model.as_deref().unwrap_or_default());
            msgs.model = Some(model.clone());
            out.model = model;
            out.body = RequestBody::Messages(msgs);
        }
        RequestBody::Json(mut v) => {
            let model = v
                .get("model")
                .and_then(Value::as_str)
                .map(|m| p.mapping.map(m));
            out.model = model.clone().unwrap_or_default();
            out.body = match (p.family, api) {
                (Family::Gemini, ApiKind::Embeddings) if !gemini_api(p) => {
                    let model = model.unwrap_or_default();
                    out.late
                        .push((":path".into(), Some(gemini_path(p, &model, "predict"))));
                    RequestBody::Json(gemini::to_vertex_embeddings(&v).map_err(bad_request)?)
                }
                (Family::Bedrock, ApiKind::Embeddings) => {
                    let model = model.unwrap_or_default();
                    out.late
                        .push((":path".into(), Some(bedrock::invoke_path(&model))));
                    RequestBody::Json(
                        bedrock::to_bedrock_embeddings(&v, &model).map_err(bad_request)?,
                    )
                }
                (Family::Gemini, ApiKind::Embeddings) => {
                    let model = model.unwrap_or_default();
                    out.late.push((
                        ":path".into(),
                        Some(gemini_path(p, &model, "batchEmbedContents")),
                    ));
                    RequestBody::Json(
                        gemini::to_gemini_embeddings(&v, &model).map_err(bad_request)?,
                    )
                }
                (Family::Qwen, ApiKind::Embeddings) => RequestBody::Json(
                    qwen::to_qwen_embeddings(&v, &model.unwrap_or_default())
                        .map_err(bad_request)?,
                ),
                (Family::Gemini, api) if api.is_image() => {
                    let model = model.unwrap_or_default();
                    RequestBody::Json(gemini_images(p, &v, api, &model, &mut out.late)?)
                }
                (Family::Cohere, ApiKind::Embeddings) => RequestBody::Json(
                    cohere::to_cohere_embed(&v, &model.unwrap_or_default()).map_err(bad_request)?,
                ),
                // DashScope's rerank: its own body, with the model mapped (as in Higress).
                (Family::OpenAi | Family::Claude, _) | (Family::Qwen, ApiKind::Other) => {
                    if let Some(model) = model {
                        v["model"] = json!(model);
                    }
                    // The Responses API always reports usage and takes no `stream_options`.
                    let asks_usage = api != ApiKind::Responses;
                    if stream && p.include_usage && p.family == Family::OpenAi && asks_usage {
                        if let Some(obj) = v.as_object_mut() {
                            ask_for_usage(obj);
                        }
                    }
                    RequestBody::Json(v)
                }
                (family, api) => {
                    return Err(ErrorReply::new(
                        404,
                        "invalid_request_error",
                        Some("unsupported_endpoint"),
                        format!(
                            "{api:?} is not available for provider type `{}` ({family:?})",
                            p.kind
                        ),
                    ))
                }
            };
        }
    }
    if !p.custom_settings.is_empty() {
        let mut value = match std::mem::replace(&mut out.body, RequestBody::Json(Value::Null)) {
            RequestBody::Chat(c) => serde_json::to_value(c),
            RequestBody::Messages(m) => serde_json::to_value(m),
            RequestBody::Json(v) => Ok(v),
        }
        .map_err(|e| ErrorReply::internal(format!("cannot encode the request: {e}")))?;
        for setting in &p.custom_settings {
            setting.apply(&mut value);
        }
        out.body = RequestBody::Json(value);
    }
    // `basePath`/`providerBasePath` apply to a path decided from the body too, before it is
    // signed.
    for (name, value) in &mut out.late {
        if let (":path", Some(v)) = (name.as_str(), value.as_mut()) {
            *v = p.upstream_path(v);
        }
    }
    if p.auth == Auth::SigV4 {
        out.late.extend(sign(p, &out, &p.upstream_path(path), now)?);
    }
    Ok(out)
}

/// The upstream body of a chat request.
fn chat_body(
    p: &Provider,
    chat: &mut openai::ChatRequest,
    model: &str,
    stream: bool,
    client_thinking: Option<reasoning::ClientThinking>,
    late: &mut Vec<(String, Option<String>)>,
) -> Result<RequestBody, ErrorReply> {
    Ok(match (&p.family, &p.native) {
        (Family::OpenAi, _) => {
            chat.model = Some(model.to_string());
            reasoning::map_thinking(&p.kind, &mut chat.extra, &chat.messages, client_thinking);
            if stream && p.include_usage {
                ask_for_usage(&mut chat.extra);
            }
            RequestBody::Chat(chat.clone())
        }
        (Family::Claude, _) => {
            let mut req =
                claude::to_claude_request(chat, model, p.claude_max_tokens).map_err(bad_request)?;
            if p.claude_code_mode {
                claude::claude_code_system(&mut req);
            }
            RequestBody::Messages(req)
        }
        (Family::Gemini, Native::Gemini(g)) => {
            let action = if stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            late.push((":path".into(), Some(gemini_path(p, model, action))));
            let body = gemini::to_gemini_request(chat, g, p.reasoning).map_err(bad_request)?;
            RequestBody::Json(body)
        }
        (Family::Bedrock, Native::Bedrock(b)) => {
            late.push((":path".into(), Some(bedrock::converse_path(model, stream))));
            let body = bedrock::to_converse_request(chat, b, model).map_err(bad_request)?;
            RequestBody::Json(body)
        }
        (Family::Cohere, _) => {
            if stream {
                late.push(("accept".into(), Some("text/event-stream".into())));
            }
            RequestBody::Json(cohere::to_cohere_request(chat, model).map_err(bad_request)?)
        }
        (Family::Qwen, _) => {
            late.push((
                ":path".into(),
                Some(qwen::chat_path(chat, model).to_string()),
            ));
            if stream {
                late.push(("x-dashscope-sse".into(), Some("enable".into())));
                late.push(("accept".into(), Some("text/event-stream".into())));
            }
            let mut body = qwen::to_qwen_request(chat, model).map_err(bad_request)?;
            if p.qwen_enable_search {
                if let Some(params) = body.get_mut("parameters").and_then(Value::as_object_mut) {
                    params.entry("enable_search").or_insert(Value::Bool(true));
                }
            }
            RequestBody::Json(body)
        }
        (Family::Dify, Native::Dify(o)) => {
            RequestBody::Json(dify::to_dify_request(chat, model, o).map_err(bad_request)?)
        }
        (Family::Triton, Native::Triton(o)) => {
            late.push((":path".into(), Some(triton::triton_path(model, o, stream))));
            RequestBody::Json(triton::to_triton_request(chat, model, o).map_err(bad_request)?)
        }
        (Family::MinimaxPro, _) => {
            RequestBody::Json(minimax::to_minimax_pro_request(chat, model).map_err(bad_request)?)
        }
        (Family::Deepl, Native::Deepl(o)) => {
            RequestBody::Json(deepl::to_deepl_request(chat, model, o).map_err(bad_request)?)
        }
        (family, _) => {
            return Err(ErrorReply::internal(format!(
                "provider `{}` ({family:?}) has no settings",
                p.kind
            )))
        }
    })
}

/// Whether `p` speaks the Gemini API's shapes rather than Vertex AI's.
fn gemini_api(p: &Provider) -> bool {
    matches!(&p.native, Native::Gemini(g) if g.gemini_api)
}

/// The body (and path) of an images request to Gemini (Imagen) or Vertex AI.
fn gemini_images(
    p: &Provider,
    v: &Value,
    api: ApiKind,
    model: &str,
    late: &mut Vec<(String, Option<String>)>,
) -> Result<Value, ErrorReply> {
    let (Native::Gemini(g), true) = (&p.native, api.is_image()) else {
        return Err(ErrorReply::internal(format!(
            "provider `{}` has no Gemini settings",
            p.kind
        )));
    };
    let req = ImageRequest::from_json(v).map_err(bad_request)?;
    if g.gemini_api {
        late.push((":path".into(), Some(gemini_path(p, model, "predict"))));
        return Ok(images::to_imagen_request(&req));
    }
    late.push((
        ":path".into(),
        Some(gemini_path(p, model, "generateContent")),
    ));
    images::to_vertex_image_request(&req, api, g.safety_settings.as_ref()).map_err(bad_request)
}

fn gemini_path(p: &Provider, model: &str, action: &str) -> String {
    match &p.native {
        Native::Gemini(g) => format!("{}/{}:{action}", g.model_prefix, sigv4::uri_encode(model)),
        _ => String::new(),
    }
}

fn ask_for_usage(extra: &mut serde_json::Map<String, Value>) {
    let options = extra.entry("stream_options").or_insert_with(|| json!({}));
    if let Some(obj) = options.as_object_mut() {
        obj.entry("include_usage").or_insert(Value::Bool(true));
    }
}

/// The encoded upstream body.
pub fn encode(body: &RequestBody) -> Result<Vec<u8>, ErrorReply> {
    match body {
        RequestBody::Chat(c) => serde_json::to_vec(c),
        RequestBody::Messages(m) => serde_json::to_vec(m),
        RequestBody::Json(v) => serde_json::to_vec(v),
    }
    .map_err(|e| ErrorReply::internal(format!("cannot encode the request: {e}")))
}

/// AWS SigV4 headers for the request as it will be sent.
fn sign(
    p: &Provider,
    out: &Outbound,
    path: &str,
    now: SystemTime,
) -> Result<Vec<(String, Option<String>)>, ErrorReply> {
    if !matches!(&p.native, Native::Bedrock(b) if b.credentials.is_some()) {
        return Ok(Vec::new());
    }
    let path = out
        .late
        .iter()
        .rev()
        .find(|(n, _)| n == ":path")
        .and_then(|(_, v)| v.clone())
        .unwrap_or_else(|| path.to_string());
    sign_bytes(p, &encode(&out.body)?, &path, now)
}

/// AWS SigV4 headers for a POST of `body` to `path` (none without AWS credentials).
fn sign_bytes(
    p: &Provider,
    body: &[u8],
    path: &str,
    now: SystemTime,
) -> Result<Vec<(String, Option<String>)>, ErrorReply> {
    let Native::Bedrock(b) = &p.native else {
        return Ok(Vec::new());
    };
    let Some(creds) = &b.credentials else {
        return Ok(Vec::new());
    };
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let headers = [
        ("host", p.host.as_str()),
        ("content-type", "application/json"),
    ];
    let req = sigv4::RequestParts {
        method: "POST",
        path,
        query,
        headers: &headers,
        payload: body,
    };
    Ok(sigv4::sign(&req, &b.region, "bedrock", now, creds, true)
        .into_iter()
        .map(|(n, v)| (n, Some(v)))
        .collect())
}

/// Whether a `protocol: original` request to `p` has its body read: Bedrock's, as Higress does,
/// to sign it and apply `customSettings`.
pub fn original_reads_body(p: &Provider, method: &str) -> bool {
    p.family == Family::Bedrock
        && method.eq_ignore_ascii_case("POST")
        && (p.auth == Auth::SigV4 || !p.custom_settings.is_empty())
}

/// A `protocol: original` request to Bedrock: the client's body (JSON) with `customSettings`
/// applied, and the SigV4 headers over it and `path` (the upstream path as sent). A body that is
/// not JSON (`raw`) is signed as it is.
pub fn original_request(
    p: &Provider,
    body: Option<RequestBody>,
    raw: Option<&[u8]>,
    path: &str,
    now: SystemTime,
) -> Result<(Option<RequestBody>, LateHeaders), ErrorReply> {
    let body = match body.as_ref().and_then(RequestBody::to_json) {
        Some(mut v) => {
            for setting in &p.custom_settings {
                setting.apply(&mut v);
            }
            Some(RequestBody::Json(v))
        }
        None => None,
    };
    let bytes = match &body {
        Some(b) => encode(b)?,
        None => raw.unwrap_or_default().to_vec(),
    };
    let late = sign_bytes(p, &bytes, path, now)?;
    Ok((body, late))
}

/// How an answer is rewritten for the client.
pub enum Plan {
    /// Passed through.
    Untouched,
    /// Buffered and translated whole.
    Json,
    /// Translated chunk by chunk.
    Stream(Box<dyn ChunkTranslator>),
}

/// Whether answers from `family` need rewriting for `client`.
pub fn translating(client: Client, family: Family) -> bool {
    !matches!(
        (client, family),
        (Client::Chat, Family::OpenAi) | (Client::Messages, Family::Claude)
    )
}

/// The client's encoder of an answer: its stream, or with `stream` off its one JSON body.
fn client_encoder(
    client: Client,
    stream: bool,
    model: &str,
    created: u64,
    reasoning: ReasoningMode,
    echo: &Echo,
) -> Box<dyn Encoder> {
    match (client, stream) {
        (Client::Chat, true) => Box::new(openai::ChunkEncoder::new(model, created, reasoning)),
        (Client::Chat, false) => Box::new(openai::AnswerEncoder::new(model, created, reasoning)),
        (Client::Messages, true) => Box::new(anthropic::StreamEncoder::new().with_model(model)),
        (Client::Messages, false) => Box::new(anthropic::AnswerEncoder::new(model)),
        (Client::Responses, stream) => Box::new(
            ResponsesEncoder::new(stream, created)
                .with_model(model)
                .with_echo(echo.clone()),
        ),
    }
}

/// A Responses request's parameters its answer repeats (`sdk::llm::responses::echoed`).
pub type Echo = serde_json::Map<String, Value>;

/// `decoder` over SSE, writing through `enc`.
fn sse<D: Decode + 'static>(decoder: D, enc: Box<dyn Encoder>) -> Box<dyn ChunkTranslator> {
    Box::new(SseTranslator::new(Translate::new(decoder, enc)))
}

/// The translator of `family`'s stream for the client whose encoder is `enc`; None when the
/// family has no stream of its own.
fn provider_stream(
    family: Family,
    model: &str,
    native: &Native,
    enc: Box<dyn Encoder>,
    request_id: Option<&str>,
) -> Option<Box<dyn ChunkTranslator>> {
    Some(match family {
        Family::OpenAi => sse(ChatChunkReader::new(), enc),
        Family::Cohere => sse(cohere::CohereStream::default(), enc),
        Family::Qwen => sse(qwen::QwenStream::default(), enc),
        Family::Claude => sse(claude::ClaudeStream::default(), enc),
        Family::MinimaxPro => sse(minimax::MinimaxProStream::default(), enc),
        Family::Gemini => sse(gemini::GeminiStream::new(model), enc),
        Family::Bedrock => {
            Box::new(bedrock::BedrockStream::new(model, enc).with_id(bedrock_id(request_id)))
        }
        Family::Dify => match native {
            Native::Dify(o) => sse(dify::DifyStream::new(model, o), enc),
            _ => return None,
        },
        Family::Triton => sse(triton::TritonStream::new(model), enc),
        Family::Deepl => return None,
    })
}

/// Bedrock's request id header: Converse answers carry no id of their own.
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

/// The completion id for a Bedrock answer whose request id is `request_id`.
fn bedrock_id(request_id: Option<&str>) -> String {
    request_id.map_or_else(
        || bedrock::DEFAULT_ID.to_string(),
        |id| format!("chatcmpl-{id}"),
    )
}

/// Plans the rewrite of a successful answer; `request_id` is the provider's request id header,
/// where its answers have no id (Bedrock).
#[allow(clippy::too_many_arguments)]
pub fn plan(
    client: Client,
    family: Family,
    stream: bool,
    model: &str,
    reasoning: ReasoningMode,
    native: &Native,
    created: u64,
    request_id: Option<&str>,
    echo: &Echo,
) -> Plan {
    let filter_reasoning = client == Client::Chat
        && reasoning != ReasoningMode::Passthrough
        && family == Family::OpenAi;
    if !translating(client, family) && !filter_reasoning {
        return Plan::Untouched;
    }
    if !stream {
        return Plan::Json;
    }
    if filter_reasoning {
        return Plan::Stream(Box::new(SseTranslator::new(
            reasoning::ReasoningFilter::new(reasoning),
        )));
    }
    let enc = client_encoder(client, true, model, created, reasoning, echo);
    match provider_stream(family, model, native, enc, request_id) {
        Some(t) => Plan::Stream(t),
        // A provider without streams answered JSON to a stream request: buffered.
        None => Plan::Json,
    }
}

/// The error for an OpenAI-compatible answer that does not read as a chat completion.
const NOT_A_COMPLETION: &str = "the answer is not a chat completion";

/// Translates a whole successful answer. `input_tokens` is the provider's count from a header
/// (Bedrock's InvokeModel), for answers whose body has none.
#[allow(clippy::too_many_arguments)]
pub fn translate_json(
    client: Client,
    family: Family,
    native: &Native,
    api: ApiKind,
    body: &[u8],
    model: &str,
    reasoning: ReasoningMode,
    stream: bool,
    created: u64,
    input_tokens: Option<u64>,
    request_id: Option<&str>,
    echo: &Echo,
) -> Result<Vec<u8>, String> {
    let e = |e: TranslateError| e.0;
    if api.is_image() {
        let v = match (family, native) {
            (Family::Gemini, Native::Gemini(g)) if g.gemini_api => {
                images::from_imagen_response(body).map_err(e)?
            }
            (Family::Gemini, _) => images::from_vertex_image_response(body).map_err(e)?,
            _ => return Ok(body.to_vec()),
        };
        return Ok(v.to_string().into_bytes());
    }
    if api == ApiKind::Embeddings {
        let v = match (family, native) {
            (Family::Gemini, Native::Gemini(g)) if !g.gemini_api => {
                gemini::from_vertex_embeddings(body, model).map_err(e)?
            }
            (Family::Bedrock, _) => {
                bedrock::from_bedrock_embeddings(body, model, input_tokens).map_err(e)?
            }
            (Family::Gemini, _) => gemini::from_gemini_embeddings(body, model).map_err(e)?,
            (Family::Cohere, _) => cohere::from_cohere_embed(body, model).map_err(e)?,
            (Family::Qwen, _) => qwen::from_qwen_embeddings(body, model).map_err(e)?,
            _ => return Ok(body.to_vec()),
        };
        return Ok(v.to_string().into_bytes());
    }
    if client == Client::Chat && family == Family::OpenAi && !stream {
        // OpenAI's own answer keeps every field; only the reasoning mode applies.
        let mut chat: openai::ChatResponse =
            crate::translate::parse(body, NOT_A_COMPLETION).map_err(e)?;
        reasoning::apply_to_response(&mut chat, reasoning);
        return serde_json::to_vec(&chat).map_err(|e| e.to_string());
    }
    let mut enc = client_encoder(client, stream, model, created, reasoning, echo);
    let read = |enc: &mut dyn Encoder, out: &mut String| {
        match family {
            Family::OpenAi => {
                // Typed first: an answer of the wrong shape is no answer.
                let chat: openai::ChatResponse = crate::translate::parse(body, NOT_A_COMPLETION)?;
                let v = serde_json::to_value(chat).unwrap_or_default();
                sdk::llm::stream::read_chat_completion(&v, enc, out);
            }
            Family::Claude => claude::read_answer(body, enc, out)?,
            Family::Gemini => gemini::read_answer(body, model, enc, out)?,
            Family::Bedrock => bedrock::read_converse(body, &bedrock_id(request_id), enc, out)?,
            Family::Cohere => cohere::read_answer(body, enc, out)?,
            Family::Qwen => qwen::read_answer(body, enc, out)?,
            Family::Dify => match native {
                Native::Dify(o) => dify::read_answer(body, o, enc, out)?,
                _ => return Err(TranslateError("dify settings missing".into())),
            },
            Family::Triton => triton::read_answer(body, model, enc, out)?,
            Family::Deepl => deepl::read_answer(body, enc, out)?,
            Family::MinimaxPro => minimax::read_pro_answer(body, enc, out)?,
        }
        Ok(())
    };
    crate::translate::whole(enc.as_mut(), read)
        .map(String::into_bytes)
        .map_err(e)
}

/// An upstream error answer in the client's error shape, with the HTTP status that goes with it
/// (the provider's error kind may name another: Bedrock's `ThrottlingException` family is a 429,
/// a bad signature a 401).
pub fn translate_error(
    client: ClientProtocol,
    family: Family,
    status: u32,
    body: &[u8],
    error_type: Option<&str>,
) -> (u32, Vec<u8>) {
    let json = serde_json::from_slice::<Value>(body).is_ok();
    let reply = match (client, family) {
        (ClientProtocol::Anthropic, Family::OpenAi) if json => {
            messages::openai_error_to_anthropic(status, body)
        }
        (_, Family::Claude) if json => claude::claude_error_to_openai(status, body),
        (_, Family::Gemini) => gemini::gemini_error_to_openai(status, body),
        (_, Family::Bedrock) => bedrock::bedrock_error_to_openai(status, error_type, body),
        (_, Family::Cohere) => cohere::cohere_error_to_openai(status, body),
        (_, Family::Qwen) => qwen::qwen_error_to_openai(status, body),
        (_, Family::Dify) => dify::dify_error_to_openai(status, body),
        (_, Family::Triton) => triton::triton_error_to_openai(status, body),
        (_, Family::Deepl) => deepl::deepl_error_to_openai(status, body),
        (ClientProtocol::OpenAi | ClientProtocol::Responses, Family::OpenAi) if json => {
            return (status, body.to_vec());
        }
        _ => text_error(status, body),
    };
    (reply.status, reply.body(client).into_bytes())
}

/// A JSON error for a non-JSON error answer.
pub fn text_error(status: u32, body: &[u8]) -> ErrorReply {
    let kind = match status {
        500.. => "server_error",
        _ => "invalid_request_error",
    };
    crate::translate::upstream_error(status, body, Some(kind), Some("upstream_error"), None)
}

/// Whether the answer of a provider in this protocol mode is left alone entirely.
pub fn passthrough(p: &Provider) -> bool {
    p.protocol == Protocol::Original
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::resolve;
    use std::time::{Duration, UNIX_EPOCH};

    fn provider(v: Value) -> Result<Provider, sdk::config::ConfigError> {
        let c: crate::config::ProviderConfig = serde_json::from_value(v).unwrap();
        resolve(&c)
    }

    fn chat(stream: bool) -> RequestBody {
        RequestBody::Chat(
            serde_json::from_value(json!({"model": "m-1:0", "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]}))
            .unwrap(),
        )
    }

    fn late<'a>(out: &'a Outbound, name: &str) -> Option<&'a str> {
        out.late
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn gemini_and_bedrock_paths_come_from_the_body() {
        let g =
            provider(json!({"type": "gemini", "apiTokens": ["k"], "apiVersion": "v1"})).unwrap();
        let out = outbound(&g, chat(true), ApiKind::ChatCompletions, now(), "").unwrap();
        assert_eq!(
            late(&out, ":path"),
            Some("/v1/models/m-1%3A0:streamGenerateContent?alt=sse")
        );
        assert!(out.stream);
        let b = provider(json!({"type": "bedrock", "awsRegion": "us-east-1",
            "awsAccessKey": "AKID", "awsSecretKey": "secret"}))
        .unwrap();
        let out = outbound(&b, chat(false), ApiKind::ChatCompletions, now(), "").unwrap();
        assert_eq!(late(&out, ":path"), Some("/model/m-1%3A0/converse"));
        let auth = late(&out, "authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20231114/us-east-1/bedrock/"),
            "{auth}"
        );
        assert_eq!(late(&out, "x-amz-date"), Some("20231114T221320Z"));
        // The static headers carry no key for SigV4.
        assert!(static_headers(&b, None)
            .iter()
            .all(|(n, _)| n != "authorization"));
        // A provider base path is part of the path that is signed.
        let prefixed = provider(json!({"type": "bedrock", "awsRegion": "us-east-1",
            "awsAccessKey": "AKID", "awsSecretKey": "secret", "providerBasePath": "/gw"}))
        .unwrap();
        let out2 = outbound(&prefixed, chat(false), ApiKind::ChatCompletions, now(), "").unwrap();
        assert_eq!(late(&out2, ":path"), Some("/gw/model/m-1%3A0/converse"));
        assert_ne!(
            late(&out2, "authorization"),
            Some(auth),
            "signed over the prefixed path"
        );
    }

    #[test]
    fn vertex_and_bedrock_embeddings_paths_come_from_the_body() {
        let embed =
            |model: &str, input: Value| RequestBody::Json(json!({"model": model, "input": input}));
        let v = provider(json!({"type": "vertex", "apiTokens": ["k"]})).unwrap();
        let out = outbound(
            &v,
            embed("text-embedding-005", json!(["a", "b"])),
            ApiKind::Embeddings,
            now(),
            "",
        )
        .unwrap();
        assert_eq!(
            late(&out, ":path"),
            Some("/v1/publishers/google/models/text-embedding-005:predict")
        );
        let RequestBody::Json(body) = &out.body else {
            panic!("json body")
        };
        assert_eq!(
            body,
            &json!({"instances": [{"content": "a"}, {"content": "b"}]})
        );
        let b = provider(json!({"type": "bedrock", "awsRegion": "us-east-1",
            "awsAccessKey": "AKID", "awsSecretKey": "secret"}))
        .unwrap();
        let out = outbound(
            &b,
            embed("amazon.titan-embed-text-v2:0", json!("hi")),
            ApiKind::Embeddings,
            now(),
            "",
        )
        .unwrap();
        assert_eq!(
            late(&out, ":path"),
            Some("/model/amazon.titan-embed-text-v2%3A0/invoke")
        );
        assert!(late(&out, "authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")));
        let answer = br#"{"predictions":[{"embeddings":{"values":[0.5],"statistics":{"token_count":2,"truncated":false}}}]}"#;
        let got = translate_json(
            Client::Chat,
            Family::Gemini,
            &v.native,
            ApiKind::Embeddings,
            answer,
            "text-embedding-005",
            ReasoningMode::Passthrough,
            false,
            0,
            None,
            None,
            &Echo::new(),
        )
        .unwrap();
        let got: Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(got["data"][0]["embedding"], json!([0.5]));
        assert_eq!(got["usage"]["total_tokens"], 2);
    }

    #[test]
    fn type_settings_reach_the_body() {
        let q = provider(json!({"type": "qwen", "qwenEnableCompatible": false,
            "qwenEnableSearch": true, "apiTokens": ["k"]}))
        .unwrap();
        let out = outbound(&q, chat(true), ApiKind::ChatCompletions, now(), "").unwrap();
        let RequestBody::Json(body) = &out.body else {
            panic!("json body")
        };
        assert_eq!(body["parameters"]["enable_search"], true);
        assert_eq!(late(&out, "x-dashscope-sse"), Some("enable"));
        assert_eq!(
            late(&out, ":path"),
            Some("/api/v1/services/aigc/text-generation/generation")
        );
        let err = provider(
            json!({"type": "bedrock", "awsRegion": "r", "apiTokens": ["k"],
            "bedrockPromptCachePointPositions": {"middle": true}}),
        )
        .unwrap_err();
        assert_eq!(err.path, "bedrockPromptCachePointPositions.middle");
        let d =
            provider(json!({"type": "deepl", "apiTokens": ["k:fx"], "targetLang": "DE"})).unwrap();
        assert_eq!(d.host, "api-free.deepl.com");
        assert!(static_headers(&d, Some("k:fx")).contains(&(
            "authorization".to_string(),
            "DeepL-Auth-Key k:fx".to_string()
        )));
    }

    #[test]
    fn claude_code_mode_as_in_higress() {
        let p =
            provider(json!({"type": "claude", "apiTokens": ["oauth-tok"], "claudeCodeMode": true}))
                .unwrap();
        let headers = static_headers(&p, Some("oauth-tok"));
        for (name, value) in [
            ("authorization", "Bearer oauth-tok"),
            ("user-agent", "claude-cli/2.1.2 (external, cli)"),
            ("x-app", "cli"),
            (
                "anthropic-beta",
                "oauth-2025-04-20,interleaved-thinking-2025-05-14,claude-code-20250219",
            ),
            ("anthropic-version", "2023-06-01"),
        ] {
            assert!(
                headers.contains(&(name.to_string(), value.to_string())),
                "{name}: {headers:?}"
            );
        }
        assert!(headers.iter().all(|(n, _)| n != "x-api-key"));
        assert_eq!(
            p.path_for(ApiKind::ChatCompletions, "/v1/chat/completions")
                .as_deref(),
            Some("/v1/messages?beta=true")
        );
        assert_eq!(
            p.path_for(ApiKind::AnthropicMessages, "/v1/messages?beta=true")
                .as_deref(),
            Some("/v1/messages?beta=true")
        );
        let out = outbound(&p, chat(false), ApiKind::ChatCompletions, now(), "").unwrap();
        let body = serde_json::to_value(match &out.body {
            RequestBody::Messages(m) => m,
            _ => panic!("messages body"),
        })
        .unwrap();
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                "cache_control": {"type": "ephemeral"}}])
        );
        let with_system = RequestBody::Chat(
            serde_json::from_value(json!({"model": "m", "messages": [
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}))
            .unwrap(),
        );
        let out = outbound(&p, with_system, ApiKind::ChatCompletions, now(), "").unwrap();
        let RequestBody::Messages(m) = &out.body else {
            panic!("messages body")
        };
        assert_eq!(
            serde_json::to_value(&m.system).unwrap(),
            json!([{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}])
        );
        // Without the mode: x-api-key, no Claude Code headers, no query.
        let plain = provider(json!({"type": "claude", "apiTokens": ["k"]})).unwrap();
        assert!(static_headers(&plain, Some("k"))
            .iter()
            .all(|(n, _)| n != "x-app"));
        assert_eq!(
            plain
                .path_for(ApiKind::ChatCompletions, "/v1/chat/completions")
                .as_deref(),
            Some("/v1/messages")
        );
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_no_answer() {
        let garbage = br#"{"id":5,"choices":"none","usage":"lots"}"#;
        for client in [Client::Chat, Client::Messages, Client::Responses] {
            let got = translate_json(
                client,
                Family::OpenAi,
                &Native::None,
                ApiKind::ChatCompletions,
                garbage,
                "m",
                ReasoningMode::Passthrough,
                false,
                1,
                None,
                None,
                &Echo::new(),
            );
            assert!(got.is_err(), "{client:?}: {got:?}");
        }
    }

    #[test]
    fn whole_answers_to_stream_requests_become_sse() {
        let chat = json!({"id": "c", "object": "chat.completion",
            "created": 1, "model": "m", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": "hallo"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
        let sse = translate_json(
            Client::Chat,
            Family::OpenAi,
            &Native::None,
            ApiKind::ChatCompletions,
            chat.to_string().as_bytes(),
            "m",
            ReasoningMode::Passthrough,
            true,
            1,
            None,
            None,
            &Echo::new(),
        )
        .unwrap();
        let sse = String::from_utf8(sse).unwrap();
        assert!(sse.contains("\"content\":\"hallo\""), "{sse}");
        assert!(sse.contains("\"total_tokens\":2"), "{sse}");
        assert!(sse.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn anthropic_and_responses_clients_see_the_model_when_the_provider_names_none() {
        let wire = concat!(
            "data: {\"type\": \"message-start\", \"id\": \"e1\"}\n\n",
            "data: {\"type\": \"content-delta\", \"delta\": {\"message\": {\"content\": {\"text\": \"Hi\"}}}}\n\n",
            "data: {\"type\": \"message-end\", \"delta\": {\"finish_reason\": \"COMPLETE\"}}\n\n",
        );
        for client in [Client::Messages, Client::Responses] {
            let mode = ReasoningMode::Passthrough;
            let Plan::Stream(mut t) = plan(
                client,
                Family::Cohere,
                true,
                "command-a",
                mode,
                &Native::None,
                0,
                None,
                &Echo::new(),
            ) else {
                panic!("cohere streams")
            };
            let mut out = String::new();
            t.feed(wire.as_bytes(), true, &mut out);
            assert!(out.contains("\"model\":\"command-a\""), "{client:?}: {out}");
            assert!(out.contains("Hi"), "{out}");
        }
    }

    #[test]
    fn bedrock_dify_and_triton_streams_reach_anthropic_clients() {
        use crate::eventstream::{encode, HeaderValue};
        let event = |kind: &str, payload: Value| {
            let headers = [
                (":event-type", HeaderValue::string(kind)),
                (":message-type", HeaderValue::string("event")),
            ];
            encode(&headers, payload.to_string().as_bytes())
        };
        let bedrock = [
            event("messageStart", json!({"role": "assistant"})),
            event("contentBlockDelta", json!({"delta": {"text": "Hi"}})),
            event("messageStop", json!({"stopReason": "max_tokens"})),
            event(
                "metadata",
                json!({"usage": {"inputTokens": 3, "outputTokens": 1}}),
            ),
        ]
        .concat();
        let dify = concat!(
            "data: {\"event\": \"message\", \"conversation_id\": \"c\", \"answer\": \"Hi\"}\n\n",
            "data: {\"event\": \"message_end\", \"conversation_id\": \"c\", \"metadata\": ",
            "{\"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 1}}}\n\n",
        );
        let triton = concat!(
            "data: {\"model_name\": \"t\", \"text_output\": \"Hi\", \"finish_reason\": [\"length\"], ",
            "\"num_input_tokens\": 3, \"num_output_tokens\": 1}\n\n",
        );
        let dify_opts = Native::Dify(dify::DifyOptions::default());
        for (family, native, wire, stop) in [
            (
                Family::Bedrock,
                &Native::None,
                bedrock.as_slice(),
                "max_tokens",
            ),
            (Family::Dify, &dify_opts, dify.as_bytes(), "end_turn"),
            (
                Family::Triton,
                &Native::None,
                triton.as_bytes(),
                "max_tokens",
            ),
        ] {
            let mode = ReasoningMode::Passthrough;
            let Plan::Stream(mut t) = plan(
                Client::Messages,
                family,
                true,
                "m",
                mode,
                native,
                0,
                None,
                &Echo::new(),
            ) else {
                panic!("{family:?} streams")
            };
            let mut out = String::new();
            t.feed(wire, true, &mut out);
            let events: Vec<Value> = out
                .split("\n\n")
                .filter_map(|e| e.split_once("data: "))
                .map(|(_, d)| serde_json::from_str(d).unwrap())
                .collect();
            let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
            assert_eq!(
                types,
                [
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop"
                ],
                "{family:?}: {out}"
            );
            assert_eq!(events[2]["delta"]["text"], "Hi", "{family:?}");
            assert_eq!(events[4]["delta"]["stop_reason"], stop, "{family:?}");
            assert_eq!(events[4]["usage"]["output_tokens"], 1, "{family:?}");
        }
    }
}
