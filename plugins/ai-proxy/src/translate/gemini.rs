//! OpenAI chat completions client in front of a Google Gemini upstream (Gemini API or Vertex AI
//! `generateContent`): the request goes out as a `GenerateContentRequest`; the response, the
//! `streamGenerateContent?alt=sse` stream is read into canonical events ([`GeminiStream`]); the
//! response, errors and `batchEmbedContents` answers come back OpenAI-shaped.
//!
//! Thought signatures (Gemini 2.5/3 `thoughtSignature` on `functionCall` parts) survive a round
//! trip through plain OpenAI clients: they ride on the tool call both as
//! `extra_content.google.thought_signature` and inside the id (`<id>__thought__<signature>`), and
//! are put back on the `functionCall` part when the tool call returns in the history.

use super::chat::{Block, Chat, Effort, Media, Role, Tool, ToolChoice};
use super::{err, parse, str_of, Decode, ReasoningMode, TranslateError};
use super::{openai_error_type_for_status, upstream_error};
use crate::providers::GeminiSettings;
use sdk::error::ErrorReply;
use sdk::llm::openai::{self, THOUGHT_SEPARATOR};
use sdk::llm::stream::{Encoder, Event};
use sdk::sse::SseEvent;
use sdk::usage::Usage;
use serde_json::{json, Map, Value};

/// `thinkingBudget` for `reasoning_effort` `minimal`/`low`, `medium` and `high` (the budgets
/// Google's own OpenAI-compatible endpoint uses).
const BUDGET_LOW: i64 = 1024;
const BUDGET_MEDIUM: i64 = 8192;
const BUDGET_HIGH: i64 = 24576;

/// Most candidates a stream keeps state for (Gemini allows `candidateCount` up to 8).
const MAX_STREAM_CANDIDATES: usize = 16;

/// JSON-schema keywords Gemini's `Schema` (an OpenAPI subset) accepts as they are.
const SCHEMA_KEYS: &[&str] = &[
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "propertyOrdering",
    "default",
    "minimum",
    "maximum",
];

/// `format` values Gemini accepts (others are rejected with 400).
const SCHEMA_FORMATS: &[&str] = &["enum", "date-time", "float", "double", "int32", "int64"];

/// The upstream's name in errors.
const SERVICE: &str = "Gemini";

/// Builds the `GenerateContentRequest` body for an OpenAI chat request (the model goes in the
/// path, not the body).
///
/// `system`/`developer` messages become `systemInstruction`, `assistant` turns `model` turns,
/// tool calls and results `functionCall`/`functionResponse` parts; consecutive turns of one role
/// are merged; sampling fields go into `generationConfig`.
pub fn to_gemini_request(
    req: &openai::ChatRequest,
    opts: &GeminiSettings,
    reasoning: ReasoningMode,
) -> Result<Value, TranslateError> {
    let chat = Chat::read(req, SERVICE)?;
    let mut contents: Vec<Value> = Vec::new();
    // (tool call id, function name) of the assistant tool calls seen so far.
    let mut calls: Vec<(&str, &str)> = Vec::new();
    for turn in &chat.turns {
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        let mut parts = Vec::with_capacity(turn.blocks.len());
        for block in &turn.blocks {
            parts.push(gemini_part(block, &mut calls)?);
        }
        super::chat::push_turn(&mut contents, role, "parts", parts);
    }
    if contents.is_empty() {
        return Err(err(
            "Gemini needs at least one user or assistant message with content",
        ));
    }

    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !chat.system.is_empty() {
        let parts: Vec<Value> = chat.system.iter().map(|t| json!({ "text": t })).collect();
        out.insert("systemInstruction".into(), json!({ "parts": parts }));
    }

    let tools = gemini_tools(&chat.tools)?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        let mode = |m: &str| json!({"functionCallingConfig": {"mode": m}});
        let config = chat.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => mode("AUTO"),
            ToolChoice::None => mode("NONE"),
            ToolChoice::Required => mode("ANY"),
            ToolChoice::Function(name) => {
                json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}})
            }
        });
        if let Some(config) = config {
            out.insert("toolConfig".into(), config);
        }
    }

    let config = generation_config(&chat, opts, reasoning)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }

    match &opts.safety_settings {
        Some(Value::Object(map)) if !map.is_empty() => {
            let settings = map
                .iter()
                .map(|(category, threshold)| json!({"category": category, "threshold": threshold}))
                .collect();
            out.insert("safetySettings".into(), Value::Array(settings));
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            out.insert("safetySettings".into(), Value::Array(items.clone()));
        }
        _ => {}
    }
    Ok(Value::Object(out))
}

/// The Gemini part for a canonical block; `calls` collects the tool calls, so a tool result
/// can name its function.
fn gemini_part<'a>(
    block: &'a Block,
    calls: &mut Vec<(&'a str, &'a str)>,
) -> Result<Value, TranslateError> {
    Ok(match block {
        Block::Text { text, .. } => json!({ "text": text }),
        Block::Image { media, .. } | Block::Audio(media) | Block::File(media) => {
            gemini_media(media)
        }
        Block::ToolUse {
            id,
            name,
            input,
            signature,
        } => {
            calls.push((id, name));
            let mut part = Map::new();
            part.insert("functionCall".into(), json!({"name": name, "args": input}));
            if let Some(sig) = signature {
                part.insert("thoughtSignature".into(), json!(sig));
            }
            Value::Object(part)
        }
        Block::ToolResult { id, name, content } => {
            let name = match id {
                Some(id) => {
                    fn base(s: &str) -> &str {
                        s.split(THOUGHT_SEPARATOR).next().unwrap_or_default()
                    }
                    // The latest call with that id (generated ids repeat across turns); the id
                    // without its signature when the client stripped it.
                    calls
                        .iter()
                        .rev()
                        .find(|(call, _)| call == id)
                        .or_else(|| calls.iter().rev().find(|(call, _)| base(call) == base(id)))
                        .map(|(_, name)| *name)
                        .or(name.as_deref())
                        .ok_or_else(|| {
                            err(format!(
                                "tool message refers to unknown tool_call_id {id:?}"
                            ))
                        })?
                }
                None => name
                    .as_deref()
                    .ok_or_else(|| err("tool message without tool_call_id"))?,
            };
            // Gemini wants an object; anything else goes under "output" (its documented key).
            let response = match serde_json::from_str::<Value>(content) {
                Ok(Value::Object(obj)) => Value::Object(obj),
                Ok(other) => json!({ "output": other }),
                Err(_) => json!({ "output": content }),
            };
            json!({"functionResponse": {"name": name, "response": response}})
        }
    })
}

/// `inlineData` for base64 data, `fileData` for an http(s) URL.
fn gemini_media(media: &Media) -> Value {
    match media {
        Media::Data { media_type, data } => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        Media::Url(url) => json!({"fileData": {"mimeType": mime_from_url(url), "fileUri": url}}),
    }
}

/// The Gemini part for a base64 data URL or an http(s) URL.
pub(crate) fn media_part(url: &str) -> Result<Value, TranslateError> {
    Media::parse(url).map(|m| gemini_media(&m))
}

/// The media type a URL's file extension suggests (images are the default).
fn mime_from_url(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => "image/jpeg",
    }
}

/// Gemini `tools`: every OpenAI function in one `functionDeclarations` tool, Google's own tools
/// (`googleSearch`, `codeExecution`, `urlContext`, …, given without a `type`) as they are.
fn gemini_tools(tools: &[Tool]) -> Result<Vec<Value>, TranslateError> {
    let mut declarations = Vec::new();
    let mut native = Vec::new();
    for tool in tools {
        match tool {
            Tool::Function {
                name,
                description,
                parameters,
                ..
            } => {
                let mut out = Map::new();
                out.insert("name".into(), json!(name));
                if let Some(d) = description {
                    out.insert("description".into(), json!(d));
                }
                if let Some(params) = parameters.as_ref().map(clean_schema) {
                    // Gemini rejects an OBJECT schema without properties: a function without
                    // parameters.
                    let empty_object = params.get("type").and_then(Value::as_str) == Some("object")
                        && params.get("properties").is_none();
                    if params.as_object().is_some_and(|p| !p.is_empty()) && !empty_object {
                        out.insert("parameters".into(), params);
                    }
                }
                declarations.push(Value::Object(out));
            }
            Tool::Native(tool) => native.push(tool.clone()),
        }
    }
    let mut out = Vec::new();
    if !declarations.is_empty() {
        out.push(json!({ "functionDeclarations": declarations }));
    }
    out.extend(native);
    Ok(out)
}

/// A JSON schema cut down to what Gemini's `Schema` accepts: unknown keywords (`$schema`,
/// `additionalProperties`, `strict`, `$ref`, …) dropped, `type: [T, "null"]` as `nullable`,
/// `const` as a one-value `enum`, `oneOf` as `anyOf`, empty `properties` dropped.
pub fn clean_schema(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "type" => match value {
                Value::String(t) => {
                    out.insert("type".into(), Value::String(t.clone()));
                }
                Value::Array(types) => {
                    let first = types
                        .iter()
                        .filter_map(Value::as_str)
                        .find(|t| *t != "null");
                    if let Some(t) = first {
                        out.insert("type".into(), Value::String(t.to_string()));
                    }
                    if types.iter().any(|t| t == "null") {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                }
                _ => {}
            },
            "properties" => {
                if let Some(props) = value.as_object().filter(|p| !p.is_empty()) {
                    let props = props
                        .iter()
                        .map(|(name, s)| (name.clone(), clean_schema(s)))
                        .collect();
                    out.insert("properties".into(), Value::Object(props));
                }
            }
            "items" => {
                out.insert("items".into(), clean_schema(value));
            }
            "anyOf" | "oneOf" => {
                if let Some(options) = value.as_array() {
                    let options = options.iter().map(clean_schema).collect();
                    out.insert("anyOf".into(), Value::Array(options));
                }
            }
            "const" if !obj.contains_key("enum") => {
                out.insert("enum".into(), Value::Array(vec![value.clone()]));
            }
            "format" if value.as_str().is_some_and(|f| SCHEMA_FORMATS.contains(&f)) => {
                out.insert("format".into(), value.clone());
            }
            k if SCHEMA_KEYS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    // `required` may only name properties that exist.
    if let Some(Value::Array(required)) = out.get("required") {
        let props = out.get("properties").and_then(Value::as_object);
        let kept: Vec<Value> = required
            .iter()
            .filter(|r| {
                r.as_str()
                    .is_some_and(|r| props.is_some_and(|p| p.contains_key(r)))
            })
            .cloned()
            .collect();
        if kept.is_empty() {
            out.remove("required");
        } else {
            out.insert("required".into(), Value::Array(kept));
        }
    }
    Value::Object(out)
}

fn generation_config(
    chat: &Chat,
    opts: &GeminiSettings,
    reasoning: ReasoningMode,
) -> Result<Map<String, Value>, TranslateError> {
    let mut gc = Map::new();
    for (to, value) in [("temperature", &chat.temperature), ("topP", &chat.top_p)] {
        if let Some(v) = value {
            gc.insert(to.into(), v.clone());
        }
    }
    for (from, to) in [
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = chat.number(from) {
            gc.insert(to.into(), v.clone());
        }
    }
    if let Some(max) = chat.max_tokens {
        gc.insert("maxOutputTokens".into(), max.into());
    }
    if !chat.stop.is_empty() {
        gc.insert("stopSequences".into(), json!(chat.stop));
    }
    if let Some(n) = chat.n {
        gc.insert("candidateCount".into(), n.into());
    }
    if let Some(format) = chat.extra.get("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                gc.insert("responseMimeType".into(), "application/json".into());
            }
            Some("json_schema") => {
                gc.insert("responseMimeType".into(), "application/json".into());
                if let Some(schema) = format.pointer("/json_schema/schema") {
                    gc.insert("responseSchema".into(), clean_schema(schema));
                }
            }
            Some("text") | None => {}
            Some(other) => {
                return Err(err(format!(
                    "response_format {other:?} is not supported by Gemini"
                )))
            }
        }
    }
    if let Some(thinking) = thinking_config(chat, opts, reasoning)? {
        gc.insert("thinkingConfig".into(), thinking);
    }
    Ok(gc)
}

/// `thinkingConfig` from Google's OpenAI-compatible `extra_body.google.thinking_config`, else
/// from `reasoning_effort`, else from the configured budget.
fn thinking_config(
    chat: &Chat,
    opts: &GeminiSettings,
    reasoning: ReasoningMode,
) -> Result<Option<Value>, TranslateError> {
    if let Some(Value::Object(tc)) = chat
        .extra
        .get("extra_body")
        .and_then(|e| e.pointer("/google/thinking_config"))
    {
        let mut out = Map::new();
        for (key, value) in tc {
            let key = match key.as_str() {
                "thinking_budget" => "thinkingBudget",
                "include_thoughts" => "includeThoughts",
                "thinking_level" => "thinkingLevel",
                other => other,
            };
            out.insert(key.to_string(), value.clone());
        }
        return Ok(Some(Value::Object(out)));
    }
    let budget = match chat.effort {
        None => opts.thinking_budget,
        Some(Effort::None) => Some(0),
        Some(Effort::Minimal | Effort::Low) => Some(BUDGET_LOW),
        Some(Effort::Medium) => Some(BUDGET_MEDIUM),
        Some(Effort::High) => Some(BUDGET_HIGH),
        Some(Effort::XHigh) => {
            return Err(err("reasoning_effort \"xhigh\" is not supported by Gemini"))
        }
    };
    Ok(budget.map(|budget| {
        if budget == 0 || reasoning == ReasoningMode::Ignore {
            json!({ "thinkingBudget": budget })
        } else {
            json!({"thinkingBudget": budget, "includeThoughts": true})
        }
    }))
}

/// OpenAI `finish_reason` for a Gemini `finishReason`.
fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT" => "content_filter",
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// A `functionCall` part's call.
struct FunctionCall<'a> {
    /// The call's id, `call_<n>` when it has none.
    base: String,
    name: &'a str,
    /// The arguments as JSON text.
    args: String,
    /// The part's thought signature.
    signature: Option<&'a str>,
}

impl FunctionCall<'_> {
    /// The id with the thought signature appended after [`THOUGHT_SEPARATOR`].
    fn id(&self) -> String {
        match self.signature {
            Some(sig) => format!("{}{THOUGHT_SEPARATOR}{sig}", self.base),
            None => self.base.clone(),
        }
    }
}

/// The call of a `functionCall` part, the `n`-th of its candidate.
fn function_call(part: &Value, n: u32) -> Option<FunctionCall<'_>> {
    let call = part.get("functionCall")?;
    Some(FunctionCall {
        base: call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map_or_else(|| format!("call_{n}"), str::to_string),
        name: call.get("name").and_then(Value::as_str).unwrap_or_default(),
        args: match call.get("args") {
            None | Some(Value::Null) => "{}".to_string(),
            Some(args) => args.to_string(),
        },
        signature: part
            .get("thoughtSignature")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty()),
    })
}

fn parts_of(candidate: &Value) -> &[Value] {
    candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn is_thought(part: &Value) -> bool {
    part.get("thought").and_then(Value::as_bool) == Some(true)
}

fn candidate_index(candidate: &Value, position: usize) -> u32 {
    candidate
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX))
}

fn block_reason(resp: &Value) -> Option<&str> {
    resp.pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
}

fn blocked_message(reason: &str) -> String {
    format!("The prompt was blocked by Gemini ({reason}).")
}

/// Reads a `GenerateContentResponse` body (or the JSON array of a `streamGenerateContent`
/// call) as the events of one answer, as [`GeminiStream`] reads each event of a stream.
pub fn read_answer(
    body: &[u8],
    model: &str,
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let resp: Value = parse(body, "Gemini response is not valid JSON")?;
    if matches!(&resp, Value::Array(chunks) if !chunks.iter().all(Value::is_object)) {
        return Err(err("Gemini response array holds a non-object"));
    }
    let mut stream = GeminiStream::new(model);
    match &resp {
        Value::Array(chunks) => chunks.iter().for_each(|c| stream.on_json(c, enc, out)),
        one => stream.on_json(one, enc, out),
    }
    stream.finish(enc, out);
    Ok(())
}

fn response_id(resp: &Value) -> Option<String> {
    resp.get("responseId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|id| format!("chatcmpl-{id}"))
}

fn answer_model(model: &str, resp: &Value) -> String {
    if model.is_empty() {
        resp.get("modelVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    } else {
        model.to_string()
    }
}

/// OpenAI `error.type` for a Google RPC status (`INVALID_ARGUMENT`, …), else for the HTTP status.
fn openai_error_type(google_status: Option<&str>, http_status: u32) -> &'static str {
    match google_status {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => {
            "invalid_request_error"
        }
        Some("UNAUTHENTICATED") => "authentication_error",
        Some("PERMISSION_DENIED") => "permission_error",
        Some("NOT_FOUND") => "not_found_error",
        Some("RESOURCE_EXHAUSTED") => "rate_limit_exceeded",
        Some("INTERNAL" | "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "UNKNOWN" | "CANCELLED") => {
            "server_error"
        }
        _ => openai_error_type_for_status(http_status),
    }
}

/// Whether a Google error says the API key itself is invalid (`details[].reason`).
fn key_invalid(error: &Value) -> bool {
    error
        .get("details")
        .and_then(Value::as_array)
        .is_some_and(|details| {
            details
                .iter()
                .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        })
}

/// Turns a Google error response (`{"error":{"code","message","status"}}`, also wrapped in an
/// array as `streamGenerateContent` sends it) into the OpenAI-style error the client gets; `code`
/// is the Google status. An invalid API key (Google answers 400) becomes a 401.
pub fn gemini_error_to_openai(status: u32, body: &[u8]) -> ErrorReply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let root = match &parsed {
        Some(Value::Array(items)) => items.first(),
        other => other.as_ref(),
    };
    let error = root.and_then(|v| v.get("error"));
    let message = str_of(error, "message").filter(|m| !m.is_empty());
    if let (Some(message), true) = (message, error.is_some_and(key_invalid)) {
        return ErrorReply::new(
            401,
            "authentication_error",
            Some("API_KEY_INVALID"),
            message,
        );
    }
    let google_status = str_of(error, "status");
    // Not Google-shaped but carrying a string code (OpenAI-style gateways): keep that code.
    let code = google_status.or_else(|| str_of(error, "code"));
    let kind = openai_error_type(google_status, status);
    upstream_error(
        status,
        body,
        Some(kind),
        code.filter(|_| message.is_some()),
        message,
    )
}

/// Per-candidate state of a stream.
#[derive(Debug, Clone, Copy, Default)]
struct StreamChoice {
    index: u32,
    tools: u32,
    finished: bool,
}

/// Reads a `streamGenerateContent?alt=sse` stream (one `GenerateContentResponse` per event)
/// into canonical events: each candidate's after an [`Event::Choice`], thoughts as reasoning,
/// each `functionCall` as a whole tool call, a blocked prompt as a refusal, and the last
/// `usageMetadata` (zeros if none came) before the end.
///
/// Keeps the model, the last usage and a few counters per candidate; nothing of the text.
#[derive(Debug, Default)]
pub struct GeminiStream {
    model: String,
    met: bool,
    usage: Option<Usage>,
    choices: Vec<StreamChoice>,
    done: bool,
}

impl GeminiStream {
    /// A decoder reporting `model` (Gemini's `modelVersion` when empty).
    pub fn new(model: &str) -> Self {
        GeminiStream {
            model: model.to_string(),
            ..GeminiStream::default()
        }
    }

    /// The answer's id and model, once, before anything of it.
    fn meet(&mut self, resp: &Value, enc: &mut dyn Encoder, out: &mut String) {
        if self.met {
            return;
        }
        self.met = true;
        let id = response_id(resp);
        let model = answer_model(&self.model, resp);
        let id = id.as_deref().unwrap_or("chatcmpl-gemini");
        enc.event(Event::Meta { id, model: &model }, out);
    }

    /// Position of the state of candidate `index`, created on first sight; `None` past
    /// [`MAX_STREAM_CANDIDATES`].
    fn choice(&mut self, index: u32) -> Option<usize> {
        if let Some(pos) = self.choices.iter().position(|c| c.index == index) {
            return Some(pos);
        }
        if self.choices.len() >= MAX_STREAM_CANDIDATES {
            return None;
        }
        self.choices.push(StreamChoice {
            index,
            ..StreamChoice::default()
        });
        Some(self.choices.len() - 1)
    }

    fn candidate(
        &mut self,
        candidate: &Value,
        position: usize,
        enc: &mut dyn Encoder,
        out: &mut String,
    ) {
        let index = candidate_index(candidate, position);
        let Some(pos) = self.choice(index) else {
            return;
        };
        enc.event(Event::Choice(index), out);
        for part in parts_of(candidate) {
            let tools = self.choices.get(pos).map_or(0, |c| c.tools);
            if let Some(call) = function_call(part, tools) {
                let id = call.id();
                enc.event(
                    Event::ToolStart {
                        id: &id,
                        name: call.name,
                        args: &call.args,
                    },
                    out,
                );
                if let Some(state) = self.choices.get_mut(pos) {
                    state.tools = state.tools.saturating_add(1);
                }
            } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                match is_thought(part) {
                    true => enc.event(Event::Reasoning(text), out),
                    false => enc.event(Event::Text(text), out),
                }
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.finish_choice(pos, reason, None, enc, out);
        }
    }

    /// The finish of the candidate at `pos`, once: for Gemini's `reason`, or `content_filter`
    /// after the `refusal` of a blocked prompt.
    fn finish_choice(
        &mut self,
        pos: usize,
        reason: &str,
        refusal: Option<&str>,
        enc: &mut dyn Encoder,
        out: &mut String,
    ) {
        let Some(state) = self.choices.get_mut(pos).filter(|c| !c.finished) else {
            return;
        };
        state.finished = true;
        let finish = match refusal {
            Some(r) => {
                enc.event(Event::Refusal(r), out);
                "content_filter"
            }
            None => finish_reason(reason, state.tools > 0),
        };
        enc.event(Event::Finish(finish), out);
    }
}

impl Decode for GeminiStream {
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String) {
        // Anything that is not JSON (comments, keep-alives) is skipped.
        if let Ok(resp) = serde_json::from_str::<Value>(&event.data) {
            self.on_json(&resp, enc, out);
        }
    }

    /// Upstream ended: the last usage (zeros if none came), then the end, exactly once.
    fn finish(&mut self, enc: &mut dyn Encoder, out: &mut String) {
        if self.done {
            return;
        }
        self.done = true;
        self.meet(&Value::Null, enc, out);
        enc.event(Event::Usage(self.usage.take().unwrap_or_default()), out);
        enc.end(out);
    }
}

impl GeminiStream {
    /// One `GenerateContentResponse`.
    fn on_json(&mut self, resp: &Value, enc: &mut dyn Encoder, out: &mut String) {
        if self.done {
            return;
        }
        if let Some(error) = resp.get("error") {
            let google_status = str_of(Some(error), "status");
            let http = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(500);
            // What was generated before the error is counted.
            if let Some(u) = self.usage.take() {
                enc.event(Event::Usage(u), out);
            }
            let message = str_of(Some(error), "message").unwrap_or("upstream stream error");
            enc.event(
                Event::Error {
                    message,
                    kind: openai_error_type(google_status, http),
                    code: google_status,
                },
                out,
            );
            self.done = true;
            enc.end(out);
            return;
        }
        // Every chunk may carry it; the last one has the final counts.
        if let Some(usage) = sdk::usage::from_json(resp) {
            self.usage = Some(usage);
        }
        let candidates = resp
            .get("candidates")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let blocked = block_reason(resp).filter(|_| candidates.is_empty());
        if !candidates.is_empty() || blocked.is_some() {
            self.meet(resp, enc, out);
        }
        for (position, candidate) in candidates.iter().enumerate() {
            self.candidate(candidate, position, enc, out);
        }
        if let Some(reason) = blocked {
            if let Some(pos) = self.choice(0) {
                enc.event(Event::Choice(0), out);
                let message = blocked_message(reason);
                self.finish_choice(pos, reason, Some(&message), enc, out);
            }
        }
    }
}

/// Builds the `batchEmbedContents` body for an OpenAI `/v1/embeddings` body: one request per
/// input string, `dimensions` as `outputDimensionality`.
pub fn to_gemini_embeddings(req: &Value, model: &str) -> Result<Value, TranslateError> {
    let inputs = super::embedding_inputs(req, "Gemini")?;
    let name = if model.starts_with("models/") {
        model.to_string()
    } else {
        format!("models/{model}")
    };
    let dimensions = req.get("dimensions").and_then(Value::as_u64);
    let requests: Vec<Value> = inputs
        .into_iter()
        .map(|text| {
            let mut r = Map::new();
            r.insert("model".into(), Value::String(name.clone()));
            r.insert("content".into(), json!({"parts": [{ "text": text }]}));
            if let Some(d) = dimensions {
                r.insert("outputDimensionality".into(), d.into());
            }
            Value::Object(r)
        })
        .collect();
    Ok(json!({ "requests": requests }))
}

/// Builds the OpenAI embeddings list for a `batchEmbedContents` (or `embedContent`) answer;
/// usage is `usageMetadata.promptTokenCount` when present, else 0.
pub fn from_gemini_embeddings(body: &[u8], model: &str) -> Result<Value, TranslateError> {
    let resp: Value = parse(body, "Gemini embeddings response is not valid JSON")?;
    if let Some(error) = resp.get("error") {
        let message = str_of(Some(error), "message").unwrap_or("unknown error");
        return Err(err(format!("Gemini returned an error: {message}")));
    }
    let embeddings: Vec<&Value> = match (resp.get("embeddings"), resp.get("embedding")) {
        (Some(Value::Array(items)), _) => items.iter().collect(),
        (None, Some(one)) => vec![one],
        _ => return Err(err("Gemini embeddings response has no embeddings")),
    };
    let vectors = embeddings
        .into_iter()
        .map(|e| e.get("values").cloned().unwrap_or_else(|| json!([])));
    let prompt = resp
        .pointer("/usageMetadata/promptTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(super::embeddings_list(vectors, model, prompt))
}

/// Builds Vertex AI's text embedding `:predict` body for an OpenAI `/v1/embeddings` body: one
/// instance per input, `dimensions` as `outputDimensionality`.
pub fn to_vertex_embeddings(req: &Value) -> Result<Value, TranslateError> {
    let inputs = super::embedding_inputs(req, "Vertex AI")?;
    let instances: Vec<Value> = inputs
        .into_iter()
        .map(|text| json!({ "content": text }))
        .collect();
    let mut out = json!({ "instances": instances });
    if let Some(d) = req.get("dimensions").and_then(Value::as_u64) {
        out["parameters"] = json!({ "outputDimensionality": d });
    }
    Ok(out)
}

/// Builds the OpenAI embeddings list for a Vertex `:predict` embeddings answer; usage is the sum
/// of `statistics.token_count`.
pub fn from_vertex_embeddings(body: &[u8], model: &str) -> Result<Value, TranslateError> {
    let resp: Value = parse(body, "Vertex embeddings response is not valid JSON")?;
    let predictions = resp
        .get("predictions")
        .and_then(Value::as_array)
        .ok_or_else(|| err("Vertex embeddings response has no predictions"))?;
    let mut tokens = 0;
    let mut data = Vec::with_capacity(predictions.len());
    for p in predictions {
        let e = p.get("embeddings");
        tokens += e
            .and_then(|e| e.pointer("/statistics/token_count"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as u64;
        let values = e
            .and_then(|e| e.get("values"))
            .cloned()
            .ok_or_else(|| err("Vertex embeddings prediction without values"))?;
        data.push(values);
    }
    Ok(super::embeddings_list(data, model, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::StreamTranslator;

    /// The provider settings these tests vary, with the reasoning mode.
    #[derive(Default)]
    struct GeminiOptions {
        safety_settings: Option<Value>,
        reasoning: ReasoningMode,
        thinking_budget: Option<i64>,
    }

    fn to_gemini_request(
        req: &openai::ChatRequest,
        o: &GeminiOptions,
    ) -> Result<Value, TranslateError> {
        let settings = GeminiSettings {
            safety_settings: o.safety_settings.clone(),
            thinking_budget: o.thinking_budget,
            ..GeminiSettings::default()
        };
        super::to_gemini_request(req, &settings, o.reasoning)
    }

    fn from_gemini_response(
        body: &[u8],
        model: &str,
        reasoning: ReasoningMode,
    ) -> Result<openai::ChatResponse, TranslateError> {
        crate::translate::whole_chat(model, reasoning, |e, o| read_answer(body, model, e, o))
    }
    use sdk::llm::Extra;
    use sdk::sse::SseDecoder;

    fn chat(v: Value) -> openai::ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn gemini(v: Value) -> Value {
        to_gemini_request(&chat(v), &GeminiOptions::default()).unwrap()
    }

    fn gemini_with(v: Value, opts: &GeminiOptions) -> Value {
        to_gemini_request(&chat(v), opts).unwrap()
    }

    #[test]
    fn system_roles_and_generation_config() {
        let opts = GeminiOptions {
            safety_settings: Some(json!({"HARM_CATEGORY_HARASSMENT": "BLOCK_NONE",
                "HARM_CATEGORY_HATE_SPEECH": "BLOCK_ONLY_HIGH"})),
            ..GeminiOptions::default()
        };
        let out = gemini_with(
            json!({
                "model": "gemini-2.5-flash",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                    {"role": "user", "content": "Hello"},
                    {"role": "user", "content": [{"type": "text", "text": "Are you there?"}]},
                    {"role": "assistant", "content": "Oui."},
                    {"role": "assistant", "content": [{"type": "text", "text": "Bonjour."}]},
                    {"role": "user", "content": ""},
                    {"role": "user", "content": "Merci"}
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.3,
                "top_p": 0.9,
                "max_tokens": 999,
                "max_completion_tokens": 300,
                "stop": "END",
                "n": 2,
                "seed": 7,
                "presence_penalty": 0.1,
                "frequency_penalty": 0.2,
                "user": "u-1",
                "logit_bias": {"1": 2}
            }),
            &opts,
        );
        assert_eq!(
            out,
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "Hello"}, {"text": "Are you there?"}]},
                    {"role": "model", "parts": [{"text": "Oui."}, {"text": "Bonjour."}]},
                    {"role": "user", "parts": [{"text": "Merci"}]}
                ],
                "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]},
                "generationConfig": {
                    "temperature": 0.3, "topP": 0.9, "seed": 7, "presencePenalty": 0.1,
                    "frequencyPenalty": 0.2, "maxOutputTokens": 300, "stopSequences": ["END"],
                    "candidateCount": 2
                },
                "safetySettings": [
                    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"},
                    {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}
                ]
            })
        );
    }

    #[test]
    fn minimal_request_and_errors() {
        let out = gemini(json!({"messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 77, "stop": ["a", "b"]}));
        assert_eq!(
            out,
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "generationConfig": {"maxOutputTokens": 77, "stopSequences": ["a", "b"]}})
        );
        let out = gemini(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            out,
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        );
        // A ready safetySettings array passes through.
        let opts = GeminiOptions {
            safety_settings: Some(
                json!([{"category": "HARM_CATEGORY_CIVIC_INTEGRITY", "threshold": "OFF"}]),
            ),
            ..GeminiOptions::default()
        };
        let out = gemini_with(
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            &opts,
        );
        assert_eq!(
            out["safetySettings"],
            json!([{"category": "HARM_CATEGORY_CIVIC_INTEGRITY", "threshold": "OFF"}])
        );

        let fails = |v: Value| {
            to_gemini_request(&chat(v), &GeminiOptions::default())
                .unwrap_err()
                .0
        };
        assert!(
            fails(json!({"messages": [{"role": "system", "content": "x"}]}))
                .contains("at least one")
        );
        assert!(
            fails(json!({"messages": [{"role": "critic", "content": "x"}]})).contains("critic")
        );
        assert!(fails(json!({"messages": [{"role": "user", "content": [
            {"type": "video", "video": {}}]}]}))
        .contains("video"));
        assert!(fails(json!({"messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "extreme"}))
        .contains("extreme"));
        assert!(fails(json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "xml"}}))
        .contains("xml"));
    }

    #[test]
    fn tools_schemas_and_tool_choice() {
        let base = json!({
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [
                {"type": "function", "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "strict": true,
                    "parameters": {
                        "$schema": "http://json-schema.org/draft-07/schema#",
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "city": {"type": "string", "description": "City", "format": "uri", "minLength": 1},
                            "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                            "when": {"type": "string", "format": "date-time"},
                            "tags": {"type": "array", "items": {"type": "string", "$ref": "#/x"}},
                            "mode": {"const": "fast"},
                            "opts": {"type": "object", "additionalProperties": {"type": "string"},
                                "properties": {}},
                            "alt": {"oneOf": [{"type": "string"}, {"type": "integer", "exclusiveMinimum": 0}]}
                        },
                        "required": ["city", "ghost"],
                        "$defs": {"x": {"type": "string"}}
                    }
                }},
                {"type": "function", "function": {"name": "now",
                    "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}},
                {"type": "function", "function": {"name": "ping"}},
                {"googleSearch": {}}
            ]
        });
        let out = gemini(base.clone());
        assert_eq!(
            out["tools"],
            json!([
                {"functionDeclarations": [
                    {"name": "get_weather", "description": "Current weather for a city",
                     "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "City", "minLength": 1},
                            "unit": {"type": "string", "nullable": true, "enum": ["c", "f"]},
                            "when": {"type": "string", "format": "date-time"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "mode": {"enum": ["fast"]},
                            "opts": {"type": "object"},
                            "alt": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
                        },
                        "required": ["city"]
                     }},
                    {"name": "now"},
                    {"name": "ping"}
                ]},
                {"googleSearch": {}}
            ])
        );
        assert!(out.get("toolConfig").is_none());

        let with = |choice: Value| {
            let mut req = base.clone();
            req["tool_choice"] = choice;
            gemini(req)["toolConfig"].clone()
        };
        assert_eq!(
            with(json!("auto")),
            json!({"functionCallingConfig": {"mode": "AUTO"}})
        );
        assert_eq!(
            with(json!("none")),
            json!({"functionCallingConfig": {"mode": "NONE"}})
        );
        assert_eq!(
            with(json!("required")),
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "get_weather"}})),
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
        let mut bad = base.clone();
        bad["tool_choice"] = json!("sometimes");
        assert!(to_gemini_request(&chat(bad), &GeminiOptions::default()).is_err());
        let mut bad = base;
        bad["tools"] = json!([{"type": "web_search_preview"}]);
        assert!(to_gemini_request(&chat(bad), &GeminiOptions::default()).is_err());

        // tool_choice without tools is dropped.
        let out =
            gemini(json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}));
        assert!(out.get("toolConfig").is_none());
        assert!(out.get("tools").is_none());
    }

    #[test]
    fn tool_calls_and_results_become_function_parts() {
        let out = gemini(json!({
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
                    {"id": "call_3", "type": "function", "function": {"name": "now", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 18}"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
                {"role": "tool", "tool_call_id": "call_3", "content": "[1, 2]"},
                {"role": "user", "content": "And tomorrow?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "forecast", "arguments": "{\"day\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "20C"}
            ]
        }));
        assert_eq!(
            out["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                {"role": "model", "parts": [
                    {"text": "Checking both."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                    {"functionCall": {"name": "now", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
                    {"functionResponse": {"name": "get_weather", "response": {"output": "24C"}}},
                    {"functionResponse": {"name": "now", "response": {"output": [1, 2]}}},
                    {"text": "And tomorrow?"}
                ]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "forecast", "args": {"day": 1}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "forecast", "response": {"output": "20C"}}}
                ]}
            ])
        );

        let fails = |v: Value| {
            to_gemini_request(&chat(v), &GeminiOptions::default())
                .unwrap_err()
                .0
        };
        let e = fails(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "nope", "content": "1"}]}));
        assert!(e.contains("unknown tool_call_id"), "{e}");
        let e = fails(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\": "}}]}]}));
        assert!(e.contains("not valid JSON"), "{e}");
        let e = fails(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "[1]"}}]}]}));
        assert!(e.contains("JSON object"), "{e}");

        // A tool message naming its function, and the legacy `function` role.
        let out = gemini(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "unknown", "name": "lookup", "content": "ok"},
            {"role": "function", "name": "legacy", "content": "{\"a\":1}"}]}));
        assert_eq!(
            out["contents"][0]["parts"],
            json!([{"text": "x"},
                {"functionResponse": {"name": "lookup", "response": {"output": "ok"}}},
                {"functionResponse": {"name": "legacy", "response": {"a": 1}}}])
        );
    }

    #[test]
    fn media_parts() {
        let out = gemini(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare these."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2"}},
            {"type": "image_url", "image_url": "https://example.com/dog"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
        ]}]}));
        assert_eq!(
            out["contents"][0]["parts"],
            json!([
                {"text": "Compare these."},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/dog"}},
                {"inlineData": {"mimeType": "audio/mp3", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
            ])
        );
        for url in [
            "ftp://x/y.png",
            "data:image/svg+xml,<svg/>",
            "data:;base64,AAAA",
        ] {
            let bad = chat(json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]}));
            assert!(
                to_gemini_request(&bad, &GeminiOptions::default()).is_err(),
                "{url}"
            );
        }
    }

    #[test]
    fn reasoning_effort_and_thinking_budget() {
        let req = |effort: Value| {
            let mut v = json!({"messages": [{"role": "user", "content": "x"}]});
            if !effort.is_null() {
                v["reasoning_effort"] = effort;
            }
            v
        };
        let thinking = |v: Value, opts: &GeminiOptions| {
            gemini_with(v, opts)
                .pointer("/generationConfig/thinkingConfig")
                .cloned()
        };
        let pass = GeminiOptions::default();
        let ignore = GeminiOptions {
            reasoning: ReasoningMode::Ignore,
            ..GeminiOptions::default()
        };
        for (effort, budget) in [
            ("minimal", 1024),
            ("low", 1024),
            ("medium", 8192),
            ("high", 24576),
        ] {
            assert_eq!(
                thinking(req(json!(effort)), &pass),
                Some(json!({"thinkingBudget": budget, "includeThoughts": true})),
                "{effort}"
            );
            assert_eq!(
                thinking(req(json!(effort)), &ignore),
                Some(json!({ "thinkingBudget": budget })),
                "{effort}"
            );
        }
        assert_eq!(
            thinking(req(json!("none")), &pass),
            Some(json!({"thinkingBudget": 0}))
        );
        assert_eq!(thinking(req(Value::Null), &pass), None);
        // The configured budget applies only when the client asks for nothing.
        let budget = GeminiOptions {
            thinking_budget: Some(-1),
            reasoning: ReasoningMode::Concat,
            ..GeminiOptions::default()
        };
        assert_eq!(
            thinking(req(Value::Null), &budget),
            Some(json!({"thinkingBudget": -1, "includeThoughts": true}))
        );
        assert_eq!(
            thinking(req(json!("high")), &budget),
            Some(json!({"thinkingBudget": 24576, "includeThoughts": true}))
        );
        // Google's OpenAI-compatible extension wins.
        let mut v = req(json!("high"));
        v["extra_body"] = json!({"google": {"thinking_config": {"thinking_level": "low", "include_thoughts": false}}});
        assert_eq!(
            thinking(v, &pass),
            Some(json!({"thinkingLevel": "low", "includeThoughts": false}))
        );
        assert!(to_gemini_request(&chat(req(json!(3))), &pass).is_err());
    }

    #[test]
    fn response_formats() {
        let out = gemini(json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}}));
        assert_eq!(
            out["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
        let out = gemini(json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true,
                "schema": {"type": "object", "additionalProperties": false,
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                    "required": ["name", "age"]}}}}));
        assert_eq!(
            out["generationConfig"],
            json!({"responseMimeType": "application/json", "responseSchema": {"type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"]}})
        );
        let out = gemini(json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "text"}}));
        assert!(out.get("generationConfig").is_none());
    }

    fn response(v: Value, mode: ReasoningMode) -> Value {
        let body = v.to_string();
        serde_json::to_value(from_gemini_response(body.as_bytes(), "gemini-2.5-pro", mode).unwrap())
            .unwrap()
    }

    const THOUGHT_RESPONSE: &str = r#"{
        "candidates": [{
            "content": {"parts": [
                {"text": "The user greets me.", "thought": true},
                {"text": "Hello! "},
                {"text": "How can I help?"}
            ], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 7, "totalTokenCount": 49,
            "cachedContentTokenCount": 4, "thoughtsTokenCount": 30,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]},
        "modelVersion": "gemini-2.5-pro",
        "responseId": "mzJ0aO2JN7SVz7IPsq"
    }"#;

    #[test]
    fn response_text_thoughts_and_usage() {
        let v: Value = serde_json::from_str(THOUGHT_RESPONSE).unwrap();
        let out = response(v.clone(), ReasoningMode::Passthrough);
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-mzJ0aO2JN7SVz7IPsq",
                "object": "chat.completion",
                "created": 0,
                "model": "gemini-2.5-pro",
                "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": "Hello! How can I help?",
                    "reasoning_content": "The user greets me."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 37, "total_tokens": 49,
                    "prompt_tokens_details": {"cached_tokens": 4},
                    "completion_tokens_details": {"reasoning_tokens": 30}}
            })
        );
        let out = response(v.clone(), ReasoningMode::Ignore);
        assert_eq!(
            out["choices"][0]["message"],
            json!({"role": "assistant", "content": "Hello! How can I help?"})
        );
        let out = response(v, ReasoningMode::Concat);
        assert_eq!(
            out["choices"][0]["message"],
            json!({"role": "assistant",
                "content": "<think>The user greets me.</think>\nHello! How can I help?"})
        );
        // Without usage, ids or a model name.
        let body = br#"{"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}}],
            "modelVersion": "gemini-2.0-flash"}"#;
        let out = from_gemini_response(body, "", ReasoningMode::Passthrough).unwrap();
        assert_eq!(out.id, "chatcmpl-gemini");
        assert_eq!(out.model, "gemini-2.0-flash");
        assert_eq!(out.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            out.usage,
            Some(openai::Usage {
                prompt_tokens: 0,
                completion_tokens: 0,
                total_tokens: 0,
                extra: Extra::new()
            })
        );
        assert!(from_gemini_response(b"not json", "m", ReasoningMode::Passthrough).is_err());
        let e = from_gemini_response(
            br#"{"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}"#,
            "m",
            ReasoningMode::Passthrough,
        )
        .unwrap_err();
        assert!(e.0.contains("boom"));
    }

    #[test]
    fn response_from_a_streamed_json_array() {
        let body = json!([
            {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
             "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}, "responseId": "r1",
             "modelVersion": "gemini-2.5-flash"},
            {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"},
                {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"}]},
                "finishReason": "STOP", "index": 0}],
             "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
             "responseId": "r1"}
        ]);
        let out = response(body, ReasoningMode::Passthrough);
        assert_eq!(out["id"], "chatcmpl-r1");
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], "Hello");
        assert_eq!(message["tool_calls"][0]["id"], "call_0__thought__c2ln");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
        );
        let e = from_gemini_response(
            br#"[{"candidates": []}, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}]"#,
            "m",
            ReasoningMode::Passthrough,
        )
        .unwrap_err();
        assert!(e.0.contains("overloaded"), "{e}");
        assert!(from_gemini_response(b"[1]", "m", ReasoningMode::Passthrough).is_err());
    }

    #[test]
    fn response_function_calls_with_signatures() {
        let out = response(
            json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "Let me check."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                     "thoughtSignature": "CiIBVKhc7oDm+Q=="},
                    {"functionCall": {"id": "fc-7", "name": "now"}}
                ]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 20,
                    "toolUsePromptTokenCount": 5, "totalTokenCount": 75}
            }),
            ReasoningMode::Passthrough,
        );
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([
                {"id": "call_0__thought__CiIBVKhc7oDm+Q==", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                 "extra_content": {"google": {"thought_signature": "CiIBVKhc7oDm+Q=="}}},
                {"id": "fc-7", "type": "function", "function": {"name": "now", "arguments": "{}"}}
            ])
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 55, "completion_tokens": 20, "total_tokens": 75})
        );
    }

    /// The assistant message of a translated response, as an OpenAI client sends it back.
    fn replay(message: &Value, strip_extra: bool) -> Value {
        let mut message = message.clone();
        if strip_extra {
            for call in message["tool_calls"].as_array_mut().unwrap() {
                call.as_object_mut().unwrap().remove("extra_content");
            }
        }
        message
    }

    #[test]
    fn thought_signatures_round_trip() {
        let upstream = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "EjQKMgFVSsZbSig+abc/def="},
            {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}
        ]}, "finishReason": "STOP"}]});
        let out = response(upstream, ReasoningMode::Passthrough);
        let message = &out["choices"][0]["message"];

        // A client keeping the whole tool call, one keeping only id/type/function, and one that
        // keeps extra_content but rewrites ids.
        let mut renamed = replay(message, false);
        for (i, call) in renamed["tool_calls"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            call["id"] = json!(format!("client_{i}"));
        }
        for assistant in [replay(message, false), replay(message, true), renamed] {
            let ids: Vec<String> = assistant["tool_calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect();
            let next = gemini(json!({"messages": [
                {"role": "user", "content": "Weather and time in Paris?"},
                assistant,
                {"role": "tool", "tool_call_id": ids[0], "content": "{\"temp\": 18}"},
                {"role": "tool", "tool_call_id": ids[1], "content": "09:00"}
            ]}));
            assert_eq!(
                next["contents"][1],
                json!({"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                     "thoughtSignature": "EjQKMgFVSsZbSig+abc/def="},
                    {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}
                ]}),
                "{ids:?}"
            );
            assert_eq!(
                next["contents"][2]["parts"],
                json!([
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
                    {"functionResponse": {"name": "get_time", "response": {"output": "09:00"}}}
                ])
            );
        }

        // The streamed tool call carries the same id and extra_content.
        let event = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "EjQKMgFVSsZbSig+abc/def="}]}, "finishReason": "STOP"}]});
        let mut s = super::super::to_chat(GeminiStream::new("g"), "g", ReasoningMode::Passthrough);
        let mut wire = String::new();
        s.on_event(&SseEvent::data(event.to_string()), &mut wire);
        let streamed = chunks(&wire)
            .into_iter()
            .find_map(|c| c["choices"][0]["delta"].get("tool_calls").cloned())
            .unwrap();
        assert_eq!(streamed[0]["id"], message["tool_calls"][0]["id"]);
        assert_eq!(
            streamed[0]["extra_content"],
            message["tool_calls"][0]["extra_content"]
        );
    }

    #[test]
    fn finish_reasons_and_blocked_prompts() {
        for (reason, calls, finish) in [
            ("STOP", false, "stop"),
            ("STOP", true, "tool_calls"),
            ("MAX_TOKENS", false, "length"),
            ("MAX_TOKENS", true, "length"),
            ("SAFETY", false, "content_filter"),
            ("RECITATION", false, "content_filter"),
            ("BLOCKLIST", false, "content_filter"),
            ("PROHIBITED_CONTENT", false, "content_filter"),
            ("SPII", false, "content_filter"),
            ("MALFORMED_FUNCTION_CALL", false, "stop"),
            ("OTHER", false, "stop"),
        ] {
            let mut parts = vec![json!({"text": "x"})];
            if calls {
                parts.push(json!({"functionCall": {"name": "f", "args": {}}}));
            }
            let out = response(
                json!({"candidates": [{"content": {"parts": parts}, "finishReason": reason}]}),
                ReasoningMode::Passthrough,
            );
            assert_eq!(out["choices"][0]["finish_reason"], finish, "{reason}");
        }

        let out = response(
            json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}),
            ReasoningMode::Passthrough,
        );
        assert_eq!(
            out["choices"],
            json!([{"index": 0, "message": {"role": "assistant", "content": null,
                "refusal": "The prompt was blocked by Gemini (SAFETY)."},
                "finish_reason": "content_filter"}])
        );
        assert_eq!(out["usage"]["prompt_tokens"], 9);

        // Several candidates are several choices.
        let out = response(
            json!({"candidates": [
                {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
                {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1}]}),
            ReasoningMode::Passthrough,
        );
        assert_eq!(out["choices"][1]["index"], 1);
        assert_eq!(out["choices"][1]["message"]["content"], "b");
        assert_eq!(out["choices"][1]["finish_reason"], "length");
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let e = gemini_error_to_openai(
            400,
            br#"{"error": {"code": 400, "message": "* GenerateContentRequest.contents: contents is not specified\n", "status": "INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.status, 400);
        assert_eq!(e.error_type, "invalid_request_error");
        assert_eq!(e.code.as_deref(), Some("INVALID_ARGUMENT"));
        assert!(e.message.contains("contents is not specified"));

        for (status, google, mapped) in [
            (401, "UNAUTHENTICATED", "authentication_error"),
            (403, "PERMISSION_DENIED", "permission_error"),
            (404, "NOT_FOUND", "not_found_error"),
            (429, "RESOURCE_EXHAUSTED", "rate_limit_exceeded"),
            (500, "INTERNAL", "server_error"),
            (503, "UNAVAILABLE", "server_error"),
            (504, "DEADLINE_EXCEEDED", "server_error"),
            (400, "FAILED_PRECONDITION", "invalid_request_error"),
        ] {
            let body = json!({"error": {"code": status, "message": "m", "status": google}});
            let e = gemini_error_to_openai(status, body.to_string().as_bytes());
            assert_eq!(
                (e.status, e.error_type.as_str()),
                (status, mapped),
                "{google}"
            );
        }

        // Google answers a bad key with 400; clients and key failover expect 401.
        let e = gemini_error_to_openai(
            400,
            br#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}"#,
        );
        assert_eq!(e.status, 401);
        assert_eq!(e.error_type, "authentication_error");
        assert_eq!(e.code.as_deref(), Some("API_KEY_INVALID"));

        // streamGenerateContent without alt=sse wraps the error in an array.
        let e = gemini_error_to_openai(
            429,
            br#"[{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}]"#,
        );
        assert_eq!(e.error_type, "rate_limit_exceeded");
        assert_eq!(e.message, "Quota exceeded");

        // OpenAI-shaped errors (a gateway in between), non-JSON and empty bodies.
        let e = gemini_error_to_openai(
            503,
            br#"{"error": {"message": "mock failure 503", "type": "mock_error", "code": "503"}}"#,
        );
        assert_eq!(
            (e.error_type.as_str(), e.code.as_deref(), e.message.as_str()),
            ("server_error", Some("503"), "mock failure 503")
        );
        let e = gemini_error_to_openai(502, b"<html>Bad Gateway</html>");
        assert_eq!(
            (e.error_type.as_str(), e.code, e.message.as_str()),
            ("server_error", None, "<html>Bad Gateway</html>")
        );
        let e = gemini_error_to_openai(404, b"");
        assert_eq!(e.error_type, "not_found_error");
        assert_eq!(e.message, "upstream returned HTTP 404");
    }

    fn sse(events: &[Value]) -> String {
        events
            .iter()
            .map(|e| format!("data: {e}\r\n\r\n"))
            .collect()
    }

    /// Decodes `wire` fed in `piece`-byte chunks, translating each event as it completes.
    fn translate(wire: &str, piece: usize, mode: ReasoningMode) -> String {
        let mut decoder = SseDecoder::default();
        let mut stream = super::super::to_chat(
            GeminiStream::new("gemini-2.5-flash"),
            "gemini-2.5-flash",
            mode,
        );
        let mut out = String::new();
        let mut events = Vec::new();
        for chunk in wire.as_bytes().chunks(piece) {
            decoder.feed(chunk, &mut events).unwrap();
            for ev in events.drain(..) {
                stream.on_event(&ev, &mut out);
            }
        }
        decoder.finish(&mut events);
        for ev in events.drain(..) {
            stream.on_event(&ev, &mut out);
        }
        stream.finish(&mut out);
        stream.finish(&mut out);
        out
    }

    fn datas(out: &str) -> Vec<String> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        decoder.feed(out.as_bytes(), &mut events).unwrap();
        decoder.finish(&mut events);
        assert!(events.iter().all(|e| e.event.is_none()));
        events.into_iter().map(|e| e.data).collect()
    }

    fn chunks(out: &str) -> Vec<Value> {
        datas(out)
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn stream_events() -> Vec<Value> {
        let meta = json!({"modelVersion": "gemini-2.5-flash", "responseId": "resp-1"});
        let with = |mut v: Value| {
            for (k, val) in meta.as_object().unwrap() {
                v[k] = val.clone();
            }
            v
        };
        vec![
            with(
                json!({"candidates": [{"content": {"role": "model", "parts": [
                {"text": "Thinking about ", "thought": true}]}, "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10}}),
            ),
            with(
                json!({"candidates": [{"content": {"role": "model", "parts": [
                {"text": "weather.", "thought": true}]}, "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10}}),
            ),
            with(
                json!({"candidates": [{"content": {"role": "model", "parts": [
                {"text": "It is "}]}, "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2, "totalTokenCount": 30,
                    "thoughtsTokenCount": 18}}),
            ),
            with(
                json!({"candidates": [{"content": {"role": "model", "parts": [
                {"text": "sunny."},
                {"functionCall": {"name": "log", "args": {"msg": "done", "n": [1, 2]}},
                 "thoughtSignature": "c2lnLTE="}]},
                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 9, "totalTokenCount": 41,
                    "cachedContentTokenCount": 3, "thoughtsTokenCount": 22}}),
            ),
        ]
    }

    #[test]
    fn stream_text_thoughts_tool_call_and_last_usage() {
        let out = translate(
            &sse(&stream_events()),
            usize::MAX,
            ReasoningMode::Passthrough,
        );
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(out.matches("[DONE]").count(), 1);
        let chunks = chunks(&out);
        for c in &chunks {
            assert_eq!(c["id"], "chatcmpl-resp-1");
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "gemini-2.5-flash");
        }
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(
            chunks[0]["choices"],
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])
        );
        assert_eq!(deltas[1], &json!({"reasoning_content": "Thinking about "}));
        assert_eq!(deltas[2], &json!({"reasoning_content": "weather."}));
        assert_eq!(deltas[3], &json!({"content": "It is "}));
        assert_eq!(deltas[4], &json!({"content": "sunny."}));
        // The whole call at once: id, name and all arguments.
        assert_eq!(
            deltas[5],
            &json!({"tool_calls": [{"index": 0, "id": "call_0__thought__c2lnLTE=", "type": "function",
                "function": {"name": "log", "arguments": "{\"msg\":\"done\",\"n\":[1,2]}"},
                "extra_content": {"google": {"thought_signature": "c2lnLTE="}}}]})
        );
        assert_eq!(chunks[6]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(deltas[6], &json!({}));
        let usage = &chunks[7];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 31, "total_tokens": 41,
                "prompt_tokens_details": {"cached_tokens": 3},
                "completion_tokens_details": {"reasoning_tokens": 22}})
        );
        assert_eq!(chunks.len(), 8);
    }

    #[test]
    fn stream_output_does_not_depend_on_batching() {
        let wire = sse(&stream_events());
        let whole = translate(&wire, usize::MAX, ReasoningMode::Passthrough);
        for piece in [1, 2, 7, 64, 333] {
            assert_eq!(
                translate(&wire, piece, ReasoningMode::Passthrough),
                whole,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn stream_reasoning_modes() {
        let wire = sse(&stream_events());
        let content = |mode| -> String {
            chunks(&translate(&wire, 5, mode))
                .iter()
                .filter_map(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect()
        };
        assert_eq!(
            content(ReasoningMode::Concat),
            "<think>Thinking about weather.</think>\nIt is sunny."
        );
        assert_eq!(content(ReasoningMode::Ignore), "It is sunny.");
        let out = translate(&wire, 5, ReasoningMode::Ignore);
        assert!(!out.contains("reasoning_content"));
        assert!(!translate(&wire, 5, ReasoningMode::Concat).contains("reasoning_content"));

        // Thoughts then a tool call (no text): the think block closes before the call; a
        // stream ending inside thoughts closes it at the end.
        let events = [
            json!({"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "again", "thought": true}]}}]}),
        ];
        let deltas: Vec<Value> = chunks(&translate(&sse(&events), 3, ReasoningMode::Concat))
            .iter()
            .map(|c| c["choices"][0]["delta"].clone())
            .collect();
        assert_eq!(deltas[1], json!({"content": "<think>hmm"}));
        assert_eq!(deltas[2], json!({"content": "</think>\n"}));
        assert_eq!(deltas[3]["tool_calls"][0]["id"], "call_0");
        assert_eq!(deltas[4], json!({"content": "<think>again"}));
        assert_eq!(deltas[5], json!({"content": "</think>\n"}));
        assert_eq!(deltas[6], Value::Null); // the usage chunk
    }

    #[test]
    fn stream_error_event_ends_the_stream() {
        let mut s = super::super::to_chat(GeminiStream::new("g"), "g", ReasoningMode::Passthrough);
        let mut out = String::new();
        s.on_event(
            &SseEvent::data(
                json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}).to_string(),
            ),
            &mut out,
        );
        out.clear();
        s.on_event(
            &SseEvent::data(r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#),
            &mut out,
        );
        s.on_event(
            &SseEvent::data(
                json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}}]}).to_string(),
            ),
            &mut out,
        );
        s.finish(&mut out);
        let d = datas(&out);
        assert_eq!(d.len(), 2);
        assert_eq!(
            serde_json::from_str::<Value>(&d[0]).unwrap(),
            json!({"error": {"message": "The model is overloaded. Please try again later.",
                "type": "server_error", "code": "UNAVAILABLE"}})
        );
        assert_eq!(d[1], "[DONE]");

        // Usage reported before an error follows it: what was generated is counted.
        let mut s = super::super::to_chat(GeminiStream::new("g"), "g", ReasoningMode::Passthrough);
        let mut out = String::new();
        for data in [
            r#"{"candidates": [{"content": {"parts": [{"text": "Hel"}]}}],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1}}"#,
            r#"{"error": {"code": 500, "message": "internal", "status": "INTERNAL"}}"#,
        ] {
            s.on_event(&SseEvent::data(data), &mut out);
        }
        s.finish(&mut out);
        let c = chunks(&out);
        assert_eq!(c[2]["error"]["code"], "INTERNAL");
        assert_eq!(c[3]["usage"]["total_tokens"], 6);
        assert_eq!(c.len(), 4);
        assert_eq!(out.matches("[DONE]").count(), 1);

        // A 429 error without a status string is typed from its code.
        let mut s = super::super::to_chat(GeminiStream::new("g"), "g", ReasoningMode::Passthrough);
        let mut out = String::new();
        s.on_event(
            &SseEvent::data(r#"{"error": {"code": 429, "message": "slow"}}"#),
            &mut out,
        );
        assert_eq!(chunks(&out)[0]["error"]["type"], "rate_limit_exceeded");
    }

    /// `events` decoded for the client whose encoder is `enc`: the data of each event written.
    fn for_client(events: &[Value], enc: Box<dyn Encoder>) -> Vec<Value> {
        let mut s = super::super::Translate::new(GeminiStream::new("gemini-2.5-flash"), enc);
        let mut out = String::new();
        for e in events {
            s.on_event(&SseEvent::data(e.to_string()), &mut out);
        }
        s.finish(&mut out);
        out.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn stream_to_anthropic_and_responses_clients() {
        let mut events = stream_events();
        // A second candidate: protocols with one answer keep the first.
        events.insert(
            3,
            json!({"candidates": [{"content": {"parts": [{"text": "other"}]}, "index": 1}]}),
        );
        let e = for_client(&events, Box::new(sdk::llm::anthropic::StreamEncoder::new()));
        let kinds: Vec<&str> = e.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(e[0]["message"]["id"], "chatcmpl-resp-1");
        assert_eq!(e[0]["message"]["model"], "gemini-2.5-flash");
        assert_eq!(e[1]["content_block"]["type"], "thinking");
        assert_eq!(e[7]["delta"]["text"], "sunny.");
        assert_eq!(
            e[9]["content_block"],
            json!({"type": "tool_use", "id": "call_0__thought__c2lnLTE=", "name": "log", "input": {}})
        );
        assert_eq!(
            e[10]["delta"]["partial_json"],
            "{\"msg\":\"done\",\"n\":[1,2]}"
        );
        assert_eq!(e[12]["delta"]["stop_reason"], "tool_use");
        assert_eq!(e[12]["usage"]["output_tokens"], 31);

        let e = for_client(
            &events,
            Box::new(sdk::llm::responses::ResponsesEncoder::new(true, 0)),
        );
        let done = &e.last().unwrap()["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["id"], "resp_chatcmpl-resp-1");
        let output = done["output"].as_array().unwrap();
        let types: Vec<&str> = output.iter().map(|o| o["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["reasoning", "message", "function_call"]);
        assert_eq!(output[1]["content"][0]["text"], "It is sunny.");
        assert_eq!(output[2]["call_id"], "call_0__thought__c2lnLTE=");
        assert_eq!(output[2]["arguments"], "{\"msg\":\"done\",\"n\":[1,2]}");
        assert_eq!(done["usage"]["output_tokens"], 31);

        // A blocked prompt: its reason as text, a refusal stop.
        let blocked = [json!({"promptFeedback": {"blockReason": "SAFETY"}})];
        let e = for_client(
            &blocked,
            Box::new(sdk::llm::anthropic::StreamEncoder::new()),
        );
        assert_eq!(
            e[2]["delta"]["text"],
            "The prompt was blocked by Gemini (SAFETY)."
        );
        assert_eq!(e[4]["delta"]["stop_reason"], "refusal");
    }

    #[test]
    fn stream_cut_short_blocked_and_several_candidates() {
        // Nothing at all: still an (empty) answer with a usage chunk and [DONE].
        let out = translate("", 1, ReasoningMode::Passthrough);
        let c = chunks(&out);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(c[1]["usage"]["total_tokens"], 0);
        assert_eq!(c[1]["id"], "chatcmpl-gemini");
        assert!(out.ends_with("data: [DONE]\n\n"));

        // A blocked prompt.
        let wire = sse(&[
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}),
        ]);
        let c = chunks(&translate(&wire, 4, ReasoningMode::Passthrough));
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[1]["choices"][0]["delta"]["refusal"],
            "The prompt was blocked by Gemini (PROHIBITED_CONTENT)."
        );
        assert_eq!(c[2]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(c[3]["usage"]["prompt_tokens"], 4);

        // Two candidates, each with its role chunk, content and finish; junk events skipped.
        let mut wire = sse(&[
            json!({"candidates": [
                {"content": {"parts": [{"text": "a"}]}, "index": 0},
                {"content": {"parts": [{"text": "b"}]}, "index": 1}]}),
            json!({"candidates": [
                {"content": {"parts": [{"text": "c"}]}, "index": 1, "finishReason": "MAX_TOKENS"},
                {"content": {"parts": []}, "index": 0, "finishReason": "STOP"}]}),
        ]);
        wire.push_str(": keep-alive\n\ndata: not json\n\n");
        let c = chunks(&translate(&wire, 3, ReasoningMode::Passthrough));
        let by = |i: u64| -> Vec<Value> {
            c.iter()
                .filter(|c| c["choices"][0]["index"] == i)
                .map(|c| c["choices"][0].clone())
                .collect()
        };
        assert_eq!(by(0).len(), 3);
        assert_eq!(by(1).len(), 4);
        assert_eq!(by(1)[3]["finish_reason"], "length");
        assert_eq!(by(0)[2]["finish_reason"], "stop");
        assert_eq!(c.len(), 8);
    }

    #[test]
    fn embeddings_both_ways() {
        let out = to_gemini_embeddings(
            &json!({"model": "text-embedding-004", "input": ["hello world", "bye"], "dimensions": 256,
                "encoding_format": "float"}),
            "text-embedding-004",
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"requests": [
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello world"}]},
                 "outputDimensionality": 256},
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "bye"}]},
                 "outputDimensionality": 256}
            ]})
        );
        let out =
            to_gemini_embeddings(&json!({"input": "one"}), "models/gemini-embedding-001").unwrap();
        assert_eq!(
            out,
            json!({"requests": [{"model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "one"}]}}]})
        );
        for bad in [json!({"input": [1, 2, 3]}), json!({"input": []}), json!({})] {
            assert!(to_gemini_embeddings(&bad, "m").is_err(), "{bad}");
        }

        let out = from_gemini_embeddings(
            br#"{"embeddings": [{"values": [0.1, -0.2]}, {"values": [0.3, 0.4]}]}"#,
            "text-embedding-004",
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.1, -0.2]},
                {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}],
                "model": "text-embedding-004",
                "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        );
        let out = from_gemini_embeddings(
            br#"{"embedding": {"values": [1.0]}, "usageMetadata": {"promptTokenCount": 3}}"#,
            "m",
        )
        .unwrap();
        assert_eq!(out["data"][0]["embedding"], json!([1.0]));
        assert_eq!(out["usage"]["prompt_tokens"], 3);
        assert!(from_gemini_embeddings(b"{}", "m").is_err());
        assert!(from_gemini_embeddings(b"[", "m").is_err());
        assert!(from_gemini_embeddings(
            br#"{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}"#,
            "m"
        )
        .is_err());
    }
}
