//! OpenAI chat completions client in front of AWS Bedrock's Converse API: the request goes out
//! as a Converse body (`POST /model/{modelId}/converse` or `/converse-stream`), the JSON answer,
//! the binary event stream (`application/vnd.amazon.eventstream`) and errors come back as chat
//! completions.

use super::chat::{Block, Chat, Media, ToolChoice};
use super::upstream_error;
use super::{err, parse, str_of, ChunkTranslator, TranslateError};
use crate::eventstream::{Decoder, Message};
use crate::providers::BedrockSettings;
use crate::sigv4::uri_encode;
use sdk::error::ErrorReply;
use sdk::llm::openai;
use sdk::llm::stream::{Encoder, Event};
use sdk::usage::{from_usage, Usage};
use serde_json::{json, Map, Value};

/// Completion id of an answer without a `x-amzn-requestid` header (Converse answers have no id).
pub const DEFAULT_ID: &str = "chatcmpl-bedrock";
/// `maxTokens` left for the answer on top of the thinking budget when the client set no limit.
pub const THINKING_ANSWER_TOKENS: u64 = 4096;
/// Smallest thinking budget Anthropic models accept.
pub const MIN_THINKING_BUDGET: u64 = 1024;

/// The Converse path for a model id (given unencoded, e.g. `anthropic.claude-3-haiku-20240307-v1:0`
/// or an inference-profile ARN): `/model/{id, URI-encoded}/converse[-stream]`.
pub fn converse_path(model_id: &str, stream: bool) -> String {
    let action = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    format!("/model/{}/{action}", uri_encode(model_id))
}

/// Where cache points go (Higress `bedrockPromptCachePointPositions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePoints {
    /// After the system prompt (`systemPrompt`).
    pub system_prompt: bool,
    /// At the end of the last user message (`lastUserMessage`).
    pub last_user_message: bool,
    /// At the end of the last message (`lastMessage`).
    pub last_message: bool,
}

impl Default for CachePoints {
    /// Higress's default when the map is absent: after the system prompt only.
    fn default() -> Self {
        CachePoints {
            system_prompt: true,
            last_user_message: false,
            last_message: false,
        }
    }
}

impl CachePoints {
    /// From the config map (`{"systemPrompt": true, "lastMessage": true}`; keys compared without
    /// case, `_` or `-`). Positions not named are off; unknown keys are returned.
    pub fn from_config(map: &Map<String, Value>) -> (Self, Vec<String>) {
        let mut points = CachePoints {
            system_prompt: false,
            last_user_message: false,
            last_message: false,
        };
        let mut unknown = Vec::new();
        for (key, value) in map {
            let on = value.as_bool().unwrap_or(false);
            let norm: String = key
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .flat_map(char::to_lowercase)
                .collect();
            match norm.as_str() {
                "systemprompt" => points.system_prompt = on,
                "lastusermessage" => points.last_user_message = on,
                "lastmessage" => points.last_message = on,
                _ => unknown.push(key.clone()),
            }
        }
        (points, unknown)
    }
}

/// Whether `model` is an Anthropic model on Bedrock (ids, cross-region profiles).
fn is_anthropic(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    m.contains("anthropic.") || m.contains("claude")
}

/// The upstream's name in errors.
const SERVICE: &str = "Bedrock";

/// Builds the Converse request body for an OpenAI chat request.
///
/// `system`/`developer` messages become `system` blocks, tool calls and tool results become
/// `toolUse`/`toolResult` blocks, consecutive turns of one role are merged (Converse needs
/// alternating roles), and OpenAI-only fields are dropped.
pub fn to_converse_request(
    req: &openai::ChatRequest,
    opts: &BedrockSettings,
    model: &str,
) -> Result<Value, TranslateError> {
    let chat = Chat::read(req, SERVICE)?;
    chat.single_answer(SERVICE)?;

    let mut system: Vec<Value> = chat.system.iter().map(|t| json!({ "text": t })).collect();
    let mut messages: Vec<Value> = Vec::new();
    for turn in &chat.turns {
        let role = turn.role.name();
        let blocks = turn
            .blocks
            .iter()
            .map(converse_block)
            .collect::<Result<Vec<_>, _>>()?;
        super::chat::push_turn(&mut messages, role, "content", blocks);
    }

    let mut body = Map::new();

    // Thinking (Anthropic models only): the budget must stay below maxTokens.
    let max_tokens = chat.max_tokens;
    let mut thinking = match chat.effort {
        Some(e) if is_anthropic(model) && !chat.continues_tool_use() => e.anthropic_budget(),
        _ => None,
    };
    if let (Some(budget), Some(max)) = (thinking, max_tokens) {
        // The client's limit covers thinking and answer: shrink the budget to fit, or think
        // not at all when even the minimum does not fit.
        let fitted = budget.min(max.saturating_sub(1));
        thinking = (fitted >= MIN_THINKING_BUDGET).then_some(fitted);
    }

    let mut inference = Map::new();
    match (max_tokens, thinking) {
        (Some(max), _) => {
            inference.insert("maxTokens".into(), json!(max));
        }
        (None, Some(budget)) => {
            inference.insert("maxTokens".into(), json!(budget + THINKING_ANSWER_TOKENS));
        }
        (None, None) => {}
    }
    // Anthropic thinking refuses changed temperature/top_p, so they are left out with it.
    if thinking.is_none() {
        for (to, value) in [("temperature", &chat.temperature), ("topP", &chat.top_p)] {
            if let Some(v) = value {
                inference.insert(to.into(), v.clone());
            }
        }
    }
    if !chat.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(chat.stop));
    }

    if let Some(tool_config) = tool_config(&chat)? {
        body.insert("toolConfig".into(), tool_config);
    }

    add_cache_points(&chat, opts, model, &mut system, &mut messages);

    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }

    let mut additional = Map::new();
    if let Some(budget) = thinking {
        additional.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    if let Some(Value::Object(fields)) = &opts.additional_fields {
        for (k, v) in fields {
            additional.insert(k.clone(), v.clone());
        }
    }
    if !additional.is_empty() {
        body.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    Ok(Value::Object(body))
}

/// The Converse content block for a canonical one.
fn converse_block(block: &Block) -> Result<Value, TranslateError> {
    Ok(match block {
        Block::Text { text, .. } => json!({ "text": text }),
        Block::Image {
            media: Media::Data { media_type, data },
            ..
        } => {
            let format = match media_type.to_ascii_lowercase().as_str() {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(err(format!(
                        "image type {other:?} is not supported by Bedrock (png, jpeg, gif, webp)"
                    )))
                }
            };
            json!({"image": {"format": format, "source": {"bytes": data}}})
        }
        Block::Image {
            media: Media::Url(_),
            ..
        } => {
            return Err(err(
                "Bedrock takes images only as base64 data URLs (data:image/png;base64,…)",
            ))
        }
        Block::ToolUse {
            id, name, input, ..
        } => json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}),
        // A JSON object result as `{json}`, anything else as `{text}`.
        Block::ToolResult { id, content, .. } => {
            let id = id
                .as_deref()
                .ok_or_else(|| err("tool message without tool_call_id"))?;
            let content = match serde_json::from_str::<Value>(content) {
                Ok(obj @ Value::Object(_)) => json!({ "json": obj }),
                _ => json!({ "text": content }),
            };
            json!({"toolResult": {"toolUseId": id, "content": [content]}})
        }
        other => return Err(other.unsupported(SERVICE)),
    })
}

/// `toolConfig` from `tools` and `tool_choice`. `none` leaves the tools out, unless the history
/// holds tool blocks (Converse then requires `toolConfig`): the tools stay, without a choice.
fn tool_config(chat: &Chat) -> Result<Option<Value>, TranslateError> {
    if chat.tools.is_empty() {
        return Ok(None);
    }
    let choice = match &chat.tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"auto": {}})),
        Some(ToolChoice::Required) => Some(json!({"any": {}})),
        Some(ToolChoice::None) if chat.has_tool_blocks() => None,
        Some(ToolChoice::None) => return Ok(None),
        Some(ToolChoice::Function(name)) => Some(json!({"tool": {"name": name}})),
    };
    let tools = chat
        .tools
        .iter()
        .map(|t| {
            let (name, description, schema) = t.function(SERVICE)?;
            let mut spec = Map::new();
            spec.insert("name".into(), json!(name));
            if let Some(d) = description.filter(|d| !d.is_empty()) {
                spec.insert("description".into(), json!(d));
            }
            spec.insert("inputSchema".into(), json!({ "json": schema }));
            Ok(json!({ "toolSpec": spec }))
        })
        .collect::<Result<Vec<_>, TranslateError>>()?;
    let mut config = Map::new();
    config.insert("tools".into(), Value::Array(tools));
    if let Some(c) = choice {
        config.insert("toolChoice".into(), c);
    }
    Ok(Some(Value::Object(config)))
}

/// Adds `cachePoint` blocks where configured, when a retention is asked for (request
/// `prompt_cache_retention`, else the config) and the model supports prompt caching:
/// `in_memory` → default TTL, `24h` → `ttl: "1h"` (Bedrock's longest).
fn add_cache_points(
    chat: &Chat,
    opts: &BedrockSettings,
    model: &str,
    system: &mut Vec<Value>,
    messages: &mut [Value],
) {
    let retention = chat
        .extra
        .get("prompt_cache_retention")
        .and_then(Value::as_str)
        .or(opts.cache_retention.as_deref())
        .map(|r| r.trim().to_ascii_lowercase().replace(['-', ' '], "_"));
    let point = match retention.as_deref() {
        Some("in_memory" | "inmemory") => json!({"cachePoint": {"type": "default"}}),
        Some("24h") => json!({"cachePoint": {"type": "default", "ttl": "1h"}}),
        _ => return,
    };
    let model = model.to_ascii_lowercase();
    if !(model.contains("amazon.nova") || model.contains("anthropic.claude")) {
        return;
    }
    let p = opts.cache_points;
    if p.system_prompt && !system.is_empty() {
        system.push(point.clone());
    }
    let mut marked: Option<usize> = None;
    if p.last_user_message {
        if let Some(i) = messages
            .iter()
            .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        {
            push_block(messages.get_mut(i), &point);
            marked = Some(i);
        }
    }
    if p.last_message {
        let last = messages.len().checked_sub(1);
        if last.is_some() && last != marked {
            push_block(last.and_then(|i| messages.get_mut(i)), &point);
        }
    }
}

fn push_block(message: Option<&mut Value>, block: &Value) {
    if let Some(content) = message
        .and_then(|m| m.get_mut("content"))
        .and_then(Value::as_array_mut)
    {
        content.push(block.clone());
    }
}

/// OpenAI `finish_reason` for a Converse `stopReason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Reads a Converse response body as the events of one answer with id `id`: text,
/// `reasoningContent` as reasoning, `toolUse` blocks as tool calls.
pub fn read_converse(
    body: &[u8],
    id: &str,
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let resp: Value = parse(body, "Bedrock response is not JSON")?;
    let content = resp
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| err("Bedrock response without output.message.content"))?;
    enc.event(Event::Meta { id, model: "" }, out);
    for block in content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            enc.event(Event::Text(t), out);
        } else if let Some(tool) = block.get("toolUse") {
            let id = str_of(Some(tool), "toolUseId").unwrap_or_default();
            let name = str_of(Some(tool), "name").unwrap_or_default();
            super::tool_call(enc, out, id, name, tool.get("input"));
        } else if let Some(r) = block
            .pointer("/reasoningContent/reasoningText/text")
            .and_then(Value::as_str)
        {
            enc.event(Event::Reasoning(r), out);
        }
    }
    if let Some(reason) = resp.get("stopReason").and_then(Value::as_str) {
        enc.event(Event::Finish(finish_reason(reason)), out);
    }
    let usage = resp.get("usage").and_then(from_usage).unwrap_or_default();
    enc.event(Event::Usage(usage), out);
    Ok(())
}

/// The bare error name of `x-amzn-errortype` / `:exception-type` / `__type` values
/// (`ValidationException:http://…`, `com.amazon…#ValidationException`).
fn error_name(raw: &str) -> &str {
    let name = raw.split(':').next().unwrap_or(raw);
    name.rsplit('#').next().unwrap_or(name).trim()
}

/// (client status, OpenAI `error.type`) for a Bedrock error name; `None` when unknown.
fn error_kind(name: &str) -> Option<(u32, &'static str)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "validationexception" | "conflictexception" => (400, "invalid_request_error"),
        "accessdeniedexception" => (403, "permission_error"),
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception"
        | "expiredtokenexception"
        | "invalidclienttokenid" => (401, "authentication_error"),
        "resourcenotfoundexception" => (404, "not_found_error"),
        "throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception" => {
            (429, "rate_limit_exceeded")
        }
        "modelnotreadyexception" | "serviceunavailableexception" => (503, "server_error"),
        "modeltimeoutexception" => (408, "server_error"),
        "internalserverexception" => (500, "server_error"),
        "modelerrorexception" | "modelstreamerrorexception" => (502, "server_error"),
        _ => return None,
    })
}

/// Turns a Bedrock error answer (`{"message": …}` with the type in `x-amzn-errortype`) into
/// the OpenAI-style error the client gets; `code` is the Bedrock error name.
pub fn bedrock_error_to_openai(
    status: u32,
    error_type_header: Option<&str>,
    body: &[u8],
) -> ErrorReply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |key| parsed.as_ref().and_then(|v| str_of(Some(v), key));
    let name = error_type_header
        .or_else(|| field("__type"))
        .map(error_name)
        .filter(|n| !n.is_empty());
    let (status, kind) = match name.and_then(error_kind) {
        Some((status, kind)) => (status, Some(kind)),
        None => (status, None),
    };
    let message = field("message").or_else(|| field("Message"));
    upstream_error(status, body, kind, name, message)
}

/// Reads a ConverseStream answer (binary event stream) into canonical events written by the
/// client's encoder; the answer always ends with usage (zeros when Bedrock sent none).
///
/// Memory: the decoder's unfinished message plus the open tool blocks.
pub struct BedrockStream {
    decoder: Decoder,
    enc: Box<dyn Encoder>,
    id: String,
    model: String,
    started: bool,
    /// Open `toolUse` blocks: (content block index, call number).
    open_tools: Vec<(u64, u32)>,
    calls: u32,
    /// The call arguments go to.
    current: u32,
    done: bool,
    /// Ended with an error event instead of the answer.
    failed: bool,
}

impl BedrockStream {
    /// A translator for an answer from `model`, written by `enc`.
    pub fn new(model: &str, enc: Box<dyn Encoder>) -> Self {
        BedrockStream {
            decoder: Decoder::default(),
            enc,
            id: DEFAULT_ID.into(),
            model: model.to_string(),
            started: false,
            open_tools: Vec::new(),
            calls: 0,
            current: 0,
            done: false,
            failed: false,
        }
    }

    /// Uses `id` (e.g. the `x-amzn-requestid` answer header) as the completion id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The answer's id and model, once.
    fn start(&mut self, out: &mut String) {
        if !self.started {
            self.started = true;
            let meta = Event::Meta {
                id: &self.id,
                model: &self.model,
            };
            self.enc.event(meta, out);
        }
    }

    /// `event`, after the start.
    fn emit(&mut self, event: Event<'_>, out: &mut String) {
        self.start(out);
        self.enc.event(event, out);
    }

    fn on_message(&mut self, msg: &Message, out: &mut String) {
        match msg.header_str(":message-type").unwrap_or("event") {
            "event" => {
                let Some(kind) = msg.header_str(":event-type") else {
                    return;
                };
                // Events that are not JSON objects are skipped.
                let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(&msg.payload)
                else {
                    return;
                };
                self.on_event(kind, &Value::Object(payload), out);
            }
            "exception" => {
                let name = msg.header_str(":exception-type").unwrap_or("exception");
                let payload: Option<Value> = serde_json::from_slice(&msg.payload).ok();
                let message = payload
                    .as_ref()
                    .and_then(|p| str_of(Some(p), "message").or_else(|| str_of(Some(p), "Message")))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("upstream {name}"));
                let kind = error_kind(error_name(name)).map_or("server_error", |(_, k)| k);
                self.fail(&message, kind, Some(name), out);
            }
            "error" => {
                let code = msg.header_str(":error-code").unwrap_or("error");
                let message = msg
                    .header_str(":error-message")
                    .unwrap_or("upstream stream error");
                let kind = error_kind(error_name(code)).map_or("server_error", |(_, k)| k);
                self.fail(message, kind, Some(code), out);
            }
            _ => {}
        }
    }

    fn on_event(&mut self, kind: &str, ev: &Value, out: &mut String) {
        let index = ev
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match kind {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                if let Some(tool) = ev.pointer("/start/toolUse") {
                    self.current = self.calls;
                    self.calls = self.calls.saturating_add(1);
                    self.open_tools.retain(|(block, _)| *block != index);
                    self.open_tools.push((index, self.current));
                    let start = Event::ToolStart {
                        id: str_of(Some(tool), "toolUseId").unwrap_or_default(),
                        name: str_of(Some(tool), "name").unwrap_or_default(),
                        args: "",
                    };
                    self.emit(start, out);
                }
            }
            "contentBlockDelta" => {
                let delta = ev.get("delta");
                if let Some(t) = str_of(delta, "text").filter(|t| !t.is_empty()) {
                    self.emit(Event::Text(t), out);
                } else if let Some(input) = delta
                    .and_then(|d| d.pointer("/toolUse/input"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    // Pieces for a block that is not open are dropped.
                    let open = self.open_tools.iter().find(|(block, _)| *block == index);
                    if let Some(&(_, n)) = open {
                        if n != self.current {
                            self.current = n;
                            self.emit(Event::ToolSwitch(n), out);
                        }
                        self.emit(Event::ToolArgs(input), out);
                    }
                } else if let Some(t) = delta
                    .and_then(|d| d.pointer("/reasoningContent/text"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.emit(Event::Reasoning(t), out);
                }
                // reasoningContent.signature / redactedContent, citations: nothing to send.
            }
            "contentBlockStop" => self.open_tools.retain(|(block, _)| *block != index),
            "messageStop" => {
                let reason = ev
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                self.emit(Event::Finish(finish_reason(reason)), out);
            }
            "metadata" => {
                let usage = ev.get("usage").and_then(from_usage).unwrap_or_default();
                // The last event of a ConverseStream answer.
                self.finish(usage, out);
            }
            _ => {}
        }
    }

    /// An upstream error: one error event, then the end.
    fn fail(&mut self, message: &str, kind: &str, code: Option<&str>, out: &mut String) {
        if self.done {
            return;
        }
        self.done = true;
        self.failed = true;
        let error = Event::Error {
            message,
            kind,
            code,
        };
        self.enc.event(error, out);
        self.enc.end(out);
    }

    /// Upstream ended: its usage and the end, exactly once.
    fn finish(&mut self, usage: Usage, out: &mut String) {
        if self.done {
            return;
        }
        self.done = true;
        self.enc.event(Event::Usage(usage), out);
        self.enc.end(out);
    }
}

impl ChunkTranslator for BedrockStream {
    fn feed(&mut self, chunk: &[u8], end: bool, out: &mut String) {
        if self.done {
            return;
        }
        let mut messages = Vec::new();
        let decoded = self.decoder.feed(chunk, &mut messages);
        for m in &messages {
            self.on_message(m, out);
            if self.done {
                return;
            }
        }
        let decoded = decoded.and_then(|()| if end { self.decoder.finish() } else { Ok(()) });
        match decoded {
            Err(e) => self.fail(
                &format!("bad upstream event stream: {e}"),
                "server_error",
                Some("bad_upstream_stream"),
                out,
            ),
            Ok(()) if end => self.finish(Usage::default(), out),
            Ok(()) => {}
        }
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings (InvokeModel)
// ---------------------------------------------------------------------------------------------

/// The InvokeModel path for a model id: `/model/{id, URI-encoded}/invoke`.
pub fn invoke_path(model_id: &str) -> String {
    format!("/model/{}/invoke", uri_encode(model_id))
}

/// Whether a Bedrock model id names a Cohere embed model (`cohere.embed-…`, also behind a
/// regional inference profile such as `us.cohere.embed-v4:0`).
fn is_cohere_embed(model: &str) -> bool {
    model.contains("cohere.embed")
}

/// Builds the InvokeModel body for an OpenAI embeddings request: Cohere embed models take the
/// Cohere embed body (without `model`); Titan (and other) models take one `inputText`, with
/// `dimensions` (Titan v2) passed on.
pub fn to_bedrock_embeddings(req: &Value, model: &str) -> Result<Value, TranslateError> {
    if is_cohere_embed(model) {
        let mut body = super::cohere::to_cohere_embed(req, model)?;
        if let Some(obj) = body.as_object_mut() {
            obj.remove("model");
        }
        return Ok(body);
    }
    let inputs = super::embedding_inputs(req, "Bedrock")?;
    let [text] = inputs.as_slice() else {
        return Err(err(format!(
            "Bedrock model `{model}` embeds one input per request (got {})",
            inputs.len()
        )));
    };
    let mut body = json!({ "inputText": text });
    if let Some(d) = req.get("dimensions").and_then(Value::as_u64) {
        body["dimensions"] = d.into();
    }
    Ok(body)
}

/// Builds the OpenAI embeddings answer for an InvokeModel embeddings answer (Titan's
/// `embedding` or Cohere's `embeddings`). Usage is Titan's `inputTextTokenCount`, else
/// `header_tokens` (Bedrock's `x-amzn-bedrock-input-token-count`).
pub fn from_bedrock_embeddings(
    body: &[u8],
    model: &str,
    header_tokens: Option<u64>,
) -> Result<Value, TranslateError> {
    let v: Value = parse(body, "Bedrock embeddings answer is not JSON")?;
    let mut out = match v.get("embedding") {
        Some(embedding) => {
            let tokens = v
                .get("inputTextTokenCount")
                .and_then(Value::as_u64)
                .or(header_tokens)
                .unwrap_or(0);
            super::embeddings_list([embedding.clone()], model, tokens)
        }
        None => super::cohere::from_cohere_embed(body, model)?,
    };
    if let Some(t) = header_tokens {
        if out.pointer("/usage/prompt_tokens").and_then(Value::as_u64) == Some(0) {
            out["usage"] = json!({"prompt_tokens": t, "total_tokens": t});
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The provider settings these tests vary, with the model.
    #[derive(Default)]
    struct BedrockOptions {
        model: String,
        additional_fields: Option<Value>,
        cache_points: CachePoints,
        cache_retention: Option<String>,
    }

    fn to_converse_request(
        req: &openai::ChatRequest,
        o: &BedrockOptions,
    ) -> Result<Value, TranslateError> {
        let settings = BedrockSettings {
            additional_fields: o.additional_fields.clone(),
            cache_points: o.cache_points,
            cache_retention: o.cache_retention.clone(),
            ..BedrockSettings::default()
        };
        super::to_converse_request(req, &settings, &o.model)
    }
    use crate::translate::ReasoningMode;

    fn from_converse_response(
        body: &[u8],
        model: &str,
        reasoning: ReasoningMode,
    ) -> Result<openai::ChatResponse, TranslateError> {
        crate::translate::whole_chat(model, reasoning, |e, o| {
            read_converse(body, DEFAULT_ID, e, o)
        })
    }
    use crate::eventstream::{encode, HeaderValue};
    use sdk::sse::SseDecoder;

    const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    fn chat(v: Value) -> openai::ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn opts(model: &str) -> BedrockOptions {
        BedrockOptions {
            model: model.into(),
            ..BedrockOptions::default()
        }
    }

    fn converse(v: Value) -> Value {
        to_converse_request(&chat(v), &opts(HAIKU)).unwrap()
    }

    #[test]
    fn paths_encode_the_model_id() {
        assert_eq!(
            converse_path(HAIKU, false),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        assert_eq!(
            converse_path("arn:aws:bedrock:us-east-1:123:inference-profile/us.x", true),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x/converse-stream"
        );
    }

    #[test]
    fn system_messages_and_inference_config() {
        let out = converse(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "system", "content": ""},
                {"role": "user", "content": "Hello"}
            ],
            "max_completion_tokens": 300,
            "max_tokens": 999,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "user-42",
            "frequency_penalty": 0.5,
            "parallel_tool_calls": false,
            "n": 1
        }));
        assert_eq!(
            out,
            json!({
                "system": [{"text": "You are terse."}, {"text": "Answer in French."}],
                "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                "inferenceConfig": {"maxTokens": 300, "temperature": 0.3, "topP": 0.9,
                    "stopSequences": ["END"]}
            })
        );
        let out = converse(json!({"messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 77, "stop": ["a", "b", 3]}));
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 77, "stopSequences": ["a", "b"]})
        );
        let out = converse(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            out,
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
        );
    }

    #[test]
    fn unsupported_requests_are_errors() {
        let bad = [
            json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}),
            json!({"messages": [{"role": "function", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio",
                "input_audio": {"data": "AAA", "format": "wav"}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "https://example.com/cat.png"}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "data:image/svg+xml;base64,PHN2Zy8+"}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "data:image/png,rawbytes"}}]}]}),
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "code_interpreter"}]}),
            json!({"messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}),
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"}),
            json!({"messages": [{"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                    "function": {"name": "f", "arguments": "{\"a\": "}}]}]}),
            json!({"messages": [{"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                    "function": {"name": "f", "arguments": "[1]"}}]}]}),
        ];
        for b in bad {
            assert!(
                to_converse_request(&chat(b.clone()), &opts(HAIKU)).is_err(),
                "{b}"
            );
        }
        let e = to_converse_request(
            &chat(json!({"messages": [{"role": "user", "content": "hi"}], "n": 2})),
            &opts(HAIKU),
        )
        .unwrap_err();
        assert_eq!(e.0, "n > 1 is not supported by Bedrock");
    }

    #[test]
    fn images_from_data_urls() {
        let out = converse(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare these."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": "data:image/JPEG;base64,/9j/4AAQ"},
            {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
            {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGOD=="}}
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"text": "Compare these."},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
                {"image": {"format": "webp", "source": {"bytes": "UklGRg=="}}},
                {"image": {"format": "gif", "source": {"bytes": "R0lGOD=="}}}
            ])
        );
    }

    #[test]
    fn tool_calls_results_and_merged_turns() {
        let out = converse(json!({
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "user", "content": [{"type": "text", "text": "Both, please."}]},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 18, \"unit\": \"C\"}"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
                {"role": "user", "content": "And tomorrow?"},
                {"role": "assistant", "content": ""},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]},
                "strict": true
            }}, {"type": "function", "function": {"name": "now", "description": ""}}],
            "tool_choice": "auto"
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [
                    {"text": "Weather in Paris and Rome?"}, {"text": "Both, please."}]},
                {"role": "assistant", "content": [
                    {"text": "Checking both."},
                    {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "call_2", "name": "now", "input": {}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"json": {"temp": 18, "unit": "C"}}]}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "12:00"}]}},
                    {"text": "And tomorrow?"}
                ]},
                {"role": "assistant", "content": [{"text": "I can't."}]}
            ])
        );
        assert_eq!(
            out["toolConfig"],
            json!({
                "tools": [
                    {"toolSpec": {"name": "get_weather", "description": "Current weather for a city",
                        "inputSchema": {"json": {"type": "object",
                            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}},
                    {"toolSpec": {"name": "now",
                        "inputSchema": {"json": {"type": "object", "properties": {}}}}}
                ],
                "toolChoice": {"auto": {}}
            })
        );
    }

    #[test]
    fn tool_choice_variants() {
        let base = json!({
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]
        });
        let with = |choice: Value| {
            let mut req = base.clone();
            req["tool_choice"] = choice;
            converse(req).get("toolConfig").cloned()
        };
        assert_eq!(with(Value::Null).unwrap().get("toolChoice"), None);
        assert_eq!(
            with(json!("auto")).unwrap()["toolChoice"],
            json!({"auto": {}})
        );
        assert_eq!(
            with(json!("required")).unwrap()["toolChoice"],
            json!({"any": {}})
        );
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "get_weather"}})).unwrap()
                ["toolChoice"],
            json!({"tool": {"name": "get_weather"}})
        );
        assert_eq!(with(json!("none")), None);
        // `none` with tool blocks in the history keeps the tools (Converse requires them).
        let mut history = base.clone();
        history["messages"] = json!([
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
        ]);
        history["tool_choice"] = json!("none");
        let cfg = converse(history)["toolConfig"].clone();
        assert_eq!(cfg["tools"][0]["toolSpec"]["name"], "get_weather");
        assert!(cfg.get("toolChoice").is_none());
        // tool_choice without tools is dropped.
        let out = converse(
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        );
        assert!(out.get("toolConfig").is_none());
    }

    #[test]
    fn reasoning_effort_becomes_thinking_for_anthropic_models() {
        let req = |extra: Value| {
            let mut r = json!({"messages": [{"role": "user", "content": "Think."}],
                "temperature": 0.2, "top_p": 0.5});
            if let (Value::Object(r), Value::Object(e)) = (&mut r, extra) {
                r.extend(e);
            }
            chat(r)
        };
        let on =
            |model: &str, extra: Value| to_converse_request(&req(extra), &opts(model)).unwrap();

        for (effort, budget) in [
            ("minimal", 1024),
            ("low", 1024),
            ("medium", 4096),
            ("high", 16_384),
            ("xhigh", 32_768),
        ] {
            let out = on(HAIKU, json!({"reasoning_effort": effort}));
            assert_eq!(
                out["additionalModelRequestFields"],
                json!({"thinking": {"type": "enabled", "budget_tokens": budget}}),
                "{effort}"
            );
            // No client limit: room for the answer on top of the budget; sampling left out.
            assert_eq!(
                out["inferenceConfig"],
                json!({"maxTokens": budget + THINKING_ANSWER_TOKENS}),
                "{effort}"
            );
        }
        // A tool loop goes on: the signed thinking block of that turn is not in the history,
        // so this request does not think.
        let looping = chat(json!({"reasoning_effort": "high", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function",
                "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"}]}));
        let out = to_converse_request(&looping, &opts(HAIKU)).unwrap();
        assert!(out.get("additionalModelRequestFields").is_none(), "{out}");
        // The client's limit covers thinking: the budget shrinks to fit, or thinking is off.
        let out = on(
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            json!({"reasoning_effort": "high", "max_tokens": 8000}),
        );
        assert_eq!(
            out["additionalModelRequestFields"]["thinking"]["budget_tokens"],
            7999
        );
        assert_eq!(out["inferenceConfig"], json!({"maxTokens": 8000}));
        let out = on(
            HAIKU,
            json!({"reasoning_effort": "low", "max_completion_tokens": 1000}),
        );
        assert!(out.get("additionalModelRequestFields").is_none());
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 1000, "temperature": 0.2, "topP": 0.5})
        );
        // `none`, and other model families: no thinking, sampling kept.
        for (model, effort) in [
            (HAIKU, "none"),
            ("amazon.nova-pro-v1:0", "high"),
            ("meta.llama3-70b-instruct-v1:0", "low"),
        ] {
            let out = on(model, json!({"reasoning_effort": effort}));
            assert!(out.get("additionalModelRequestFields").is_none(), "{model}");
            assert_eq!(
                out["inferenceConfig"],
                json!({"temperature": 0.2, "topP": 0.5})
            );
        }
    }

    #[test]
    fn additional_fields_merge_over_translated_ones() {
        let o = BedrockOptions {
            model: HAIKU.into(),
            additional_fields: Some(json!({"top_k": 40, "thinking": {"type": "disabled"}})),
            ..BedrockOptions::default()
        };
        let out = to_converse_request(
            &chat(
                json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low"}),
            ),
            &o,
        )
        .unwrap();
        assert_eq!(
            out["additionalModelRequestFields"],
            json!({"thinking": {"type": "disabled"}, "top_k": 40})
        );
        let o = BedrockOptions {
            additional_fields: Some(json!("not an object")),
            ..opts(HAIKU)
        };
        let out = to_converse_request(
            &chat(json!({"messages": [{"role": "user", "content": "x"}]})),
            &o,
        )
        .unwrap();
        assert!(out.get("additionalModelRequestFields").is_none());
    }

    #[test]
    fn cache_points_follow_retention_positions_and_model() {
        let req = |retention: Option<&str>| {
            let mut r = json!({"messages": [
                {"role": "system", "content": "Long instructions."},
                {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "A1"}
            ]});
            if let Some(ret) = retention {
                r["prompt_cache_retention"] = json!(ret);
            }
            chat(r)
        };
        let point = json!({"cachePoint": {"type": "default"}});
        // No retention anywhere: nothing.
        let out = to_converse_request(&req(None), &opts(HAIKU)).unwrap();
        assert_eq!(out["system"], json!([{"text": "Long instructions."}]));
        // Request retention, default positions (system prompt only).
        let out = to_converse_request(&req(Some("in_memory")), &opts(HAIKU)).unwrap();
        assert_eq!(
            out["system"],
            json!([{"text": "Long instructions."}, point])
        );
        assert_eq!(out["messages"][1]["content"], json!([{"text": "A1"}]));
        // Config retention 24h, every position.
        let (points, unknown) = CachePoints::from_config(
            json!({"system_prompt": false, "LastUserMessage": true, "last-message": true, "bogus": true})
                .as_object()
                .unwrap(),
        );
        assert_eq!(unknown, ["bogus"]);
        let o = BedrockOptions {
            model: "us.amazon.nova-pro-v1:0".into(),
            cache_points: points,
            cache_retention: Some("24h".into()),
            ..BedrockOptions::default()
        };
        let out = to_converse_request(&req(None), &o).unwrap();
        let ttl = json!({"cachePoint": {"type": "default", "ttl": "1h"}});
        assert_eq!(out["system"], json!([{"text": "Long instructions."}]));
        assert_eq!(out["messages"][0]["content"], json!([{"text": "Q1"}, ttl]));
        assert_eq!(out["messages"][1]["content"], json!([{"text": "A1"}, ttl]));
        // Last user message = last message: one point.
        let out = to_converse_request(
            &chat(json!({"messages": [{"role": "user", "content": "Q"}]})),
            &o,
        )
        .unwrap();
        assert_eq!(out["messages"][0]["content"], json!([{"text": "Q"}, ttl]));
        // Unsupported model or retention: nothing.
        for (model, ret) in [
            ("meta.llama3-70b-instruct-v1:0", "in_memory"),
            (HAIKU, "forever"),
        ] {
            let out = to_converse_request(&req(Some(ret)), &opts(model)).unwrap();
            assert_eq!(
                out["system"],
                json!([{"text": "Long instructions."}]),
                "{model} {ret}"
            );
        }
        assert!(CachePoints::default().system_prompt);
    }

    fn response(v: Value, reasoning: ReasoningMode) -> Value {
        let out = from_converse_response(v.to_string().as_bytes(), HAIKU, reasoning).unwrap();
        serde_json::to_value(out).unwrap()
    }

    #[test]
    fn response_text_with_cache_usage() {
        let out = response(
            json!({
                "output": {"message": {"role": "assistant", "content": [
                    {"text": "Hello! "}, {"text": "How can I help?"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 12, "outputTokens": 9, "totalTokens": 2121,
                    "cacheReadInputTokens": 2000, "cacheWriteInputTokens": 100},
                "metrics": {"latencyMs": 512}
            }),
            ReasoningMode::Passthrough,
        );
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-bedrock",
                "object": "chat.completion",
                "created": 0,
                "model": HAIKU,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?"},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2112, "completion_tokens": 9, "total_tokens": 2121,
                    "prompt_tokens_details": {"cached_tokens": 2000}}
            })
        );
    }

    #[test]
    fn response_tool_use_and_reasoning_modes() {
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "The user wants weather.", "signature": "EqQB"}}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather",
                    "input": {"location": "San Francisco, CA", "unit": "celsius"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 384, "outputTokens": 96, "totalTokens": 480}
        });
        let out = response(body.clone(), ReasoningMode::Passthrough);
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(
            choice["message"]["reasoning_content"],
            "The user wants weather."
        );
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 384, "completion_tokens": 96, "total_tokens": 480})
        );

        let out = response(body.clone(), ReasoningMode::Ignore);
        assert!(out["choices"][0]["message"]
            .get("reasoning_content")
            .is_none());
        assert_eq!(out["choices"][0]["message"]["content"], "Let me check.");
        let out = response(body, ReasoningMode::Concat);
        assert!(out["choices"][0]["message"]
            .get("reasoning_content")
            .is_none());
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "<think>The user wants weather.</think>\nLet me check."
        );

        // Only a tool call: no content at all.
        let out = response(
            json!({"output": {"message": {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "t", "name": "now", "input": {}}}]}},
                "stopReason": "tool_use"}),
            ReasoningMode::Passthrough,
        );
        assert_eq!(
            out["choices"][0]["message"].get("content"),
            Some(&serde_json::Value::Null)
        );
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
    }

    #[test]
    fn finish_reasons_and_bad_bodies() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
            ("malformed_model_output", "stop"),
        ] {
            let out = response(
                json!({"output": {"message": {"role": "assistant", "content": []}}, "stopReason": stop}),
                ReasoningMode::Passthrough,
            );
            assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        }
        assert!(from_converse_response(b"<html>", HAIKU, ReasoningMode::Passthrough).is_err());
        assert!(
            from_converse_response(b"{\"output\": {}}", HAIKU, ReasoningMode::Passthrough).is_err()
        );
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let e = bedrock_error_to_openai(
            400,
            Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            br#"{"message":"The provided model identifier is invalid."}"#,
        );
        assert_eq!(e.status, 400);
        assert_eq!(e.error_type, "invalid_request_error");
        assert_eq!(e.code.as_deref(), Some("ValidationException"));
        assert_eq!(e.message, "The provided model identifier is invalid.");

        for (name, status, status_out, kind) in [
            ("AccessDeniedException", 403, 403, "permission_error"),
            (
                "UnrecognizedClientException",
                403,
                401,
                "authentication_error",
            ),
            (
                "InvalidSignatureException",
                403,
                401,
                "authentication_error",
            ),
            ("ExpiredTokenException", 403, 401, "authentication_error"),
            ("ResourceNotFoundException", 404, 404, "not_found_error"),
            ("ThrottlingException", 429, 429, "rate_limit_exceeded"),
            (
                "ServiceQuotaExceededException",
                400,
                429,
                "rate_limit_exceeded",
            ),
            ("ModelNotReadyException", 429, 503, "server_error"),
            ("ServiceUnavailableException", 503, 503, "server_error"),
            ("ModelTimeoutException", 408, 408, "server_error"),
            ("InternalServerException", 500, 500, "server_error"),
            ("ModelErrorException", 424, 502, "server_error"),
            ("SomethingNewException", 418, 418, "server_error"),
        ] {
            let e = bedrock_error_to_openai(status, Some(name), br#"{"message":"m"}"#);
            assert_eq!(
                (e.status, e.error_type.as_str()),
                (status_out, kind),
                "{name}"
            );
            assert_eq!(e.code.as_deref(), Some(name));
            assert_eq!(e.message, "m");
        }
        // The type from the body's `__type` when the header is absent.
        let e = bedrock_error_to_openai(
            400,
            None,
            br#"{"__type":"com.amazon.coral.validate#ValidationException","Message":"bad"}"#,
        );
        assert_eq!(
            (e.status, e.code.as_deref(), e.message.as_str()),
            (400, Some("ValidationException"), "bad")
        );
        // No type, not JSON: the status decides, the body is the message.
        let e = bedrock_error_to_openai(502, None, b"upstream connect error");
        assert_eq!((e.error_type.as_str(), e.code), ("server_error", None));
        assert_eq!(e.message, "upstream connect error");
        let e = bedrock_error_to_openai(403, None, b"");
        assert_eq!(e.error_type, "permission_error");
        assert_eq!(e.message, "upstream returned HTTP 403");
    }

    // ---- streams ----

    fn event(kind: &str, payload: Value) -> Vec<u8> {
        encode(
            &[
                (":event-type", HeaderValue::string(kind)),
                (":content-type", HeaderValue::string("application/json")),
                (":message-type", HeaderValue::string("event")),
            ],
            payload.to_string().as_bytes(),
        )
    }

    fn exception(kind: &str, message: &str) -> Vec<u8> {
        encode(
            &[
                (":exception-type", HeaderValue::string(kind)),
                (":content-type", HeaderValue::string("application/json")),
                (":message-type", HeaderValue::string("exception")),
            ],
            json!({ "message": message }).to_string().as_bytes(),
        )
    }

    /// A ConverseStream answer with text, a tool call and usage (`p` is Bedrock's padding).
    fn tool_stream() -> Vec<u8> {
        [
            event("messageStart", json!({"p": "abcdefghijk", "role": "assistant"})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Okay"}, "p": "abcd"})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0,
                "delta": {"text": ", let's check the weather for San Francisco, CA:"}, "p": "ab"})),
            event("contentBlockStop", json!({"contentBlockIndex": 0, "p": "abcdefgh"})),
            event("contentBlockStart", json!({"contentBlockIndex": 1, "p": "abc",
                "start": {"toolUse": {"toolUseId": "tooluse_Qx7pAb", "name": "get_weather"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": ""}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"location\":"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": " \"San Francisco, CA\", "}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"unit\": \"fahrenheit\"}"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event("messageStop", json!({"stopReason": "tool_use", "p": "abcdefghijklmnopqrstu"})),
            event("metadata", json!({"usage": {"inputTokens": 472, "outputTokens": 89,
                "totalTokens": 689, "cacheReadInputTokens": 128}, "metrics": {"latencyMs": 1021}, "p": "abc"})),
        ]
        .concat()
    }

    /// A stream written as OpenAI chat chunks (created 0).
    fn to_chat(model: &str, reasoning: ReasoningMode) -> BedrockStream {
        let enc = openai::ChunkEncoder::new(model, 0, reasoning);
        BedrockStream::new(model, Box::new(enc))
    }

    /// Feeds `wire` in `piece`-byte chunks (the last one marked `end`).
    fn translate(wire: &[u8], piece: usize, reasoning: ReasoningMode) -> String {
        let mut s = to_chat(HAIKU, reasoning);
        let mut out = String::new();
        let chunks: Vec<&[u8]> = wire.chunks(piece.max(1)).collect();
        for (i, c) in chunks.iter().enumerate() {
            s.feed(c, i + 1 == chunks.len(), &mut out);
        }
        if chunks.is_empty() {
            s.feed(b"", true, &mut out);
        }
        // Anything after the end changes nothing.
        s.feed(b"", true, &mut out);
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
        let d = datas(out);
        assert_eq!(d.iter().filter(|d| *d == "[DONE]").count(), 1, "{out}");
        assert_eq!(d.last().map(String::as_str), Some("[DONE]"));
        d.iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn stream_text_tool_call_and_usage() {
        let out = translate(&tool_stream(), usize::MAX, ReasoningMode::Passthrough);
        let chunks = chunks(&out);
        for c in &chunks {
            assert_eq!(c["id"], "chatcmpl-bedrock");
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], HAIKU);
        }
        assert_eq!(
            chunks[0]["choices"],
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Okay, let's check the weather for San Francisco, CA:");
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls.len(), 4); // start + 3 non-empty argument pieces
        assert_eq!(
            calls[0],
            &json!([{"index": 0, "id": "tooluse_Qx7pAb", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}])
        );
        let args: String = calls
            .iter()
            .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
            .collect();
        let args: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        );
        let finishes: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, vec![&json!("tool_calls")]);
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 600, "completion_tokens": 89, "total_tokens": 689,
                "prompt_tokens_details": {"cached_tokens": 128}})
        );
        assert_eq!(
            chunks.iter().filter(|c| c.get("usage").is_some()).count(),
            1
        );
    }

    #[test]
    fn stream_output_does_not_depend_on_chunking() {
        let wire = tool_stream();
        let whole = translate(&wire, usize::MAX, ReasoningMode::Passthrough);
        for piece in [1, 2, 3, 7, 16, 64, 333] {
            assert_eq!(
                translate(&wire, piece, ReasoningMode::Passthrough),
                whole,
                "piece {piece}"
            );
        }
    }

    fn reasoning_stream() -> Vec<u8> {
        [
            event("messageStart", json!({"role": "assistant"})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Two "}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "cities."}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "EqQB"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": "Paris."}})),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event("messageStop", json!({"stopReason": "max_tokens"})),
            event("metadata", json!({"usage": {"inputTokens": 10, "outputTokens": 30, "totalTokens": 40}})),
        ]
        .concat()
    }

    fn deltas(out: &str) -> Vec<Value> {
        chunks(out)
            .iter()
            .filter(|c| c["choices"] != json!([]))
            .map(|c| c["choices"][0]["delta"].clone())
            .collect()
    }

    #[test]
    fn stream_reasoning_modes() {
        let wire = reasoning_stream();
        let pass = translate(&wire, 5, ReasoningMode::Passthrough);
        assert_eq!(
            deltas(&pass),
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"reasoning_content": "Two "}),
                json!({"reasoning_content": "cities."}),
                json!({"content": "Paris."}),
                json!({}),
            ]
        );
        let usage = chunks(&pass).last().unwrap()["usage"].clone();
        assert_eq!(
            usage,
            json!({"prompt_tokens": 10, "completion_tokens": 30, "total_tokens": 40})
        );
        let finish = &chunks(&pass)[4]["choices"][0]["finish_reason"];
        assert_eq!(finish, "length");

        let ignore = translate(&wire, 5, ReasoningMode::Ignore);
        assert_eq!(
            deltas(&ignore),
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"content": "Paris."}),
                json!({})
            ]
        );

        let concat = translate(&wire, 5, ReasoningMode::Concat);
        let text: String = deltas(&concat)
            .iter()
            .filter_map(|d| d["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, "<think>Two cities.</think>\nParis.");
        assert!(deltas(&concat)
            .iter()
            .all(|d| d.get("reasoning_content").is_none()));

        // Concat: thinking closed before a tool call, and at the end when nothing follows it.
        let wire = [
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}})),
            event("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}})),
        ]
        .concat();
        let d = deltas(&translate(&wire, 1000, ReasoningMode::Concat));
        assert_eq!(d[0], json!({"role": "assistant", "content": ""}));
        assert_eq!(d[1], json!({"content": "<think>Hmm."}));
        assert_eq!(d[2], json!({"content": "</think>\n"}));
        assert_eq!(d[3]["tool_calls"][0]["id"], "t1");
        let wire = event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}}),
        );
        let out = translate(&wire, 1000, ReasoningMode::Concat);
        let text: String = deltas(&out)
            .iter()
            .filter_map(|d| d["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, "<think>Hmm.</think>\n");
    }

    #[test]
    fn stream_second_tool_gets_the_next_index() {
        let wire = [
            event("messageStart", json!({"role": "assistant"})),
            event("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "a", "name": "w"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{}"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "b", "name": "w"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"c\":1}"}}})),
            // A piece for a block that is not open is dropped.
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "x"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            // Unknown events and non-JSON payloads are skipped.
            event("somethingNew", json!({"x": 1})),
            encode(&[(":event-type", HeaderValue::string("contentBlockDelta"))], b"not json"),
        ]
        .concat();
        // No metadata: the usage chunk comes at the end with zeros.
        let out = translate(&wire, 9, ReasoningMode::Passthrough);
        let d = deltas(&out);
        assert_eq!(d[1]["tool_calls"][0]["index"], 0);
        assert_eq!(d[2]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(d[3]["tool_calls"][0]["index"], 1);
        assert_eq!(d[3]["tool_calls"][0]["id"], "b");
        assert_eq!(d[4]["tool_calls"][0]["index"], 1);
        assert_eq!(d.len(), 6);
        assert_eq!(
            chunks(&out).last().unwrap()["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
    }

    #[test]
    fn stream_exceptions_become_one_error_event() {
        for (name, kind) in [
            ("throttlingException", "rate_limit_exceeded"),
            ("validationException", "invalid_request_error"),
            ("modelStreamErrorException", "server_error"),
            ("internalServerException", "server_error"),
        ] {
            let wire = [
                event("messageStart", json!({"role": "assistant"})),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
                ),
                exception(name, "Too many tokens, please wait before trying again."),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": "ignored"}}),
                ),
            ]
            .concat();
            for piece in [1, 7, 10_000] {
                let out = translate(&wire, piece, ReasoningMode::Passthrough);
                let d = datas(&out);
                assert_eq!(d.len(), 4, "{name}: {out}");
                assert_eq!(
                    serde_json::from_str::<Value>(&d[2]).unwrap(),
                    json!({"error": {"message": "Too many tokens, please wait before trying again.",
                        "type": kind, "code": name}})
                );
                assert_eq!(d[3], "[DONE]");
            }
        }
        // Generic event-stream error frames.
        let wire = encode(
            &[
                (":message-type", HeaderValue::string("error")),
                (":error-code", HeaderValue::string("InternalFailure")),
                (":error-message", HeaderValue::string("boom")),
            ],
            b"",
        );
        let d = datas(&translate(&wire, 100, ReasoningMode::Passthrough));
        assert_eq!(
            serde_json::from_str::<Value>(&d[0]).unwrap(),
            json!({"error": {"message": "boom", "type": "server_error", "code": "InternalFailure"}})
        );
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn stream_decode_errors_end_the_stream() {
        // A corrupted CRC after one good event.
        let mut wire = tool_stream();
        let first = event(
            "messageStart",
            json!({"p": "abcdefghijk", "role": "assistant"}),
        )
        .len();
        wire[first + 20] ^= 0xff;
        for piece in [1, 50, 100_000] {
            let out = translate(&wire, piece, ReasoningMode::Passthrough);
            let d = datas(&out);
            assert_eq!(d.len(), 3, "{out}");
            let err: Value = serde_json::from_str(&d[1]).unwrap();
            assert_eq!(err["error"]["code"], "bad_upstream_stream");
            assert_eq!(err["error"]["type"], "server_error");
            assert_eq!(d[2], "[DONE]");
        }
        // Truncated at the end: the pending message is an error too.
        let wire = tool_stream();
        let out = translate(&wire[..wire.len() - 10], 64, ReasoningMode::Passthrough);
        let d = datas(&out);
        let err: Value = serde_json::from_str(&d[d.len() - 2]).unwrap();
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended inside a message"));
        assert_eq!(d.iter().filter(|x| *x == "[DONE]").count(), 1);
        // Not an event stream at all.
        let out = translate(b"{\"message\":\"nope\"}", 100, ReasoningMode::Passthrough);
        assert_eq!(datas(&out).len(), 2);
        // Empty upstream: usage and [DONE] only.
        let out = translate(b"", 100, ReasoningMode::Passthrough);
        assert_eq!(chunks(&out).len(), 1);
    }

    #[test]
    fn stream_id_can_be_set() {
        let mut s = to_chat("m", ReasoningMode::Passthrough).with_id("req-123");
        let mut out = String::new();
        s.feed(&tool_stream(), true, &mut out);
        assert!(chunks(&out).iter().all(|c| c["id"] == "req-123"));
    }

    #[test]
    fn embeddings_through_invoke_model() {
        let titan = json!({"model": "m", "input": "hello world", "dimensions": 256});
        assert_eq!(
            to_bedrock_embeddings(&titan, "amazon.titan-embed-text-v2:0").unwrap(),
            json!({"inputText": "hello world", "dimensions": 256})
        );
        let two = json!({"model": "m", "input": ["a", "b"]});
        let e = to_bedrock_embeddings(&two, "amazon.titan-embed-text-v2:0").unwrap_err();
        assert!(e.0.contains("one input"), "{e}");
        assert_eq!(
            to_bedrock_embeddings(&two, "cohere.embed-english-v3").unwrap(),
            json!({"texts": ["a", "b"], "input_type": "search_document",
                "embedding_types": ["float"]})
        );
        assert_eq!(
            invoke_path("amazon.titan-embed-text-v2:0"),
            "/model/amazon.titan-embed-text-v2%3A0/invoke"
        );
        let answer = br#"{"embedding":[0.5,0.25],"inputTextTokenCount":2}"#;
        assert_eq!(
            from_bedrock_embeddings(answer, "t", None).unwrap(),
            json!({"object": "list", "data": [{"object": "embedding", "index": 0,
                "embedding": [0.5, 0.25]}], "model": "t",
                "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        );
        // Cohere's answer carries no counts: Bedrock's header does.
        let cohere = br#"{"id":"x","embeddings":{"float":[[0.1],[0.2]]},"response_type":"embeddings_by_type","texts":["a","b"]}"#;
        let v = from_bedrock_embeddings(cohere, "c", Some(3)).unwrap();
        assert_eq!(v["data"][1]["embedding"], json!([0.2]));
        assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert!(from_bedrock_embeddings(b"nope", "c", None).is_err());
    }
}
