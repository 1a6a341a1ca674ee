//! OpenAI chat completions client in front of a Dify app (Higress type `dify`): chat, agent,
//! completion and workflow apps. The conversation becomes one `query` (or one input variable);
//! the answer, the stream and errors come back as chat completions.

use super::{err, parse};
use super::{openai_error_type_for_status, str_of, upstream_error};
use super::{Decode, TranslateError};
use crate::config::ProviderConfig;
use sdk::config::ConfigError;
use sdk::error::ErrorReply;
use sdk::llm::openai;
use sdk::llm::stream::{Encoder, Event};
use sdk::sse::{SseDecoder, SseEvent};
use sdk::usage::{from_usage, Usage};
use serde_json::{json, Map, Value};

/// Dify cloud host, used when `difyApiUrl` is not set.
pub const DIFY_HOST: &str = "api.dify.ai";

/// `user` sent when the client gives none (Dify requires one).
const DEFAULT_USER: &str = "api-user";

/// A 502 for an upstream answer that cannot be read.
fn bad_upstream(message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(
        502,
        "server_error",
        Some("bad_upstream_response"),
        message.into(),
    )
}

/// The kind of Dify app (Higress `botType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BotType {
    /// Chat app (also chatflow): `/v1/chat-messages`.
    #[default]
    Chat,
    /// Text generator app: `/v1/completion-messages`.
    Completion,
    /// Agent app: `/v1/chat-messages`, streaming only.
    Agent,
    /// Workflow app: `/v1/workflows/run` with `inputVariable`/`outputVariable`.
    Workflow,
}

impl BotType {
    /// Parses Higress `botType` (`Chat`, `Completion`, `Agent`, `Workflow`, any case); empty is
    /// `Chat`.
    pub fn parse(value: &str) -> Result<BotType, TranslateError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "chat" => Ok(BotType::Chat),
            "completion" => Ok(BotType::Completion),
            "agent" => Ok(BotType::Agent),
            "workflow" => Ok(BotType::Workflow),
            _ => Err(err(format!(
                "botType {value:?} is not one of Chat, Completion, Agent, Workflow"
            ))),
        }
    }

    /// Upstream path for this app kind.
    pub fn path(self) -> &'static str {
        match self {
            BotType::Chat | BotType::Agent => "/v1/chat-messages",
            BotType::Completion => "/v1/completion-messages",
            BotType::Workflow => "/v1/workflows/run",
        }
    }
}

/// Dify settings from the provider config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DifyOptions {
    /// `botType`.
    pub bot_type: BotType,
    /// `inputVariable`: the workflow input (or completion input, default `query`) that gets
    /// the text.
    pub input_variable: String,
    /// `outputVariable`: the workflow output that becomes the answer.
    pub output_variable: String,
}

impl DifyOptions {
    /// Reads `botType`, `inputVariable` and `outputVariable`; a Workflow app needs
    /// `inputVariable`.
    pub fn from_config(c: &ProviderConfig) -> Result<DifyOptions, ConfigError> {
        let text = |v: &Option<String>| v.as_deref().unwrap_or_default().trim().to_string();
        let bot_type = BotType::parse(c.bot_type.as_deref().unwrap_or_default())
            .map_err(|e| ConfigError::new("botType", e.0))?;
        let opts = DifyOptions {
            bot_type,
            input_variable: text(&c.input_variable),
            output_variable: text(&c.output_variable),
        };
        if bot_type == BotType::Workflow && opts.input_variable.is_empty() {
            return Err(ConfigError::new(
                "inputVariable",
                "required when botType is Workflow",
            ));
        }
        Ok(opts)
    }

    /// Upstream path for the configured app kind.
    pub fn path(&self) -> &'static str {
        self.bot_type.path()
    }

    /// Whether the upstream answers with SSE: when the client streams, and always for Agent
    /// apps (Dify agents only stream; a plain answer is then collected by
    /// [`from_dify_response`]).
    pub fn upstream_streams(&self, client_stream: bool) -> bool {
        client_stream || self.bot_type == BotType::Agent
    }
}

/// The `:authority` for a `difyApiUrl` (full URL or bare host; only the host is used, as in
/// Higress), or [`DIFY_HOST`] when it is empty.
pub fn dify_host(api_url: &str) -> String {
    let url = api_url.trim();
    let rest = url.split_once("://").map_or(url, |(scheme, rest)| {
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            rest
        } else {
            url
        }
    });
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() {
        DIFY_HOST.to_string()
    } else {
        host.to_string()
    }
}

/// A translated request: where it goes and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct DifyRequest {
    /// Upstream path.
    pub path: &'static str,
    /// Upstream JSON body.
    pub body: Value,
    /// Whether the upstream answers with SSE (see [`DifyOptions::upstream_streams`]).
    pub upstream_stream: bool,
}

/// The text and image URLs of one message.
fn message_parts(msg: &openai::ChatMessage) -> Result<(String, Vec<String>), TranslateError> {
    let mut images = Vec::new();
    let text = match &msg.content {
        None => String::new(),
        Some(openai::Content::Text(s)) => s.clone(),
        Some(openai::Content::Parts(parts)) => {
            let mut texts: Vec<&str> = Vec::new();
            for part in parts {
                match part.kind.as_str() {
                    "text" => texts.extend(part.text.as_deref()),
                    "refusal" => texts.extend(part.extra.get("refusal").and_then(Value::as_str)),
                    "image_url" => images.push(image_url(part)?),
                    other => {
                        return Err(err(format!(
                            "content part type {other:?} is not supported by Dify"
                        )))
                    }
                }
            }
            texts.join("\n")
        }
    };
    Ok((text, images))
}

fn image_url(part: &openai::ContentPart) -> Result<String, TranslateError> {
    let url = match part.extra.get("image_url") {
        Some(Value::String(url)) => Some(url.as_str()),
        Some(v) => v.get("url").and_then(Value::as_str),
        None => None,
    }
    .ok_or_else(|| err("image_url part without a url"))?;
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url.to_string())
    } else {
        Err(err(
            "Dify takes images by http(s) URL only (upload data URLs to Dify first)",
        ))
    }
}

/// Higress's label of a message in the query (tool results count as the user's).
fn role_label(role: &str) -> &'static str {
    match role {
        "system" | "developer" => "SYSTEM",
        "assistant" => "ASSISTANT",
        _ => "USER",
    }
}

/// The text Dify gets and the images that go with it.
///
/// As in Higress, the whole conversation is the query, each message as `ROLE: \n<text>\n`
/// (`SYSTEM`, `ASSISTANT`, else `USER`), a lone user message too. With a conversation id Dify
/// holds the history, so only the last user message is sent (Higress sends the whole
/// conversation there too).
fn query_of(
    messages: &[openai::ChatMessage],
    conversation: bool,
) -> Result<(String, Vec<String>), TranslateError> {
    if conversation {
        let last = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .ok_or_else(|| err("no user message to send to Dify"))?;
        return message_parts(last);
    }
    let mut text = String::new();
    let mut images = Vec::new();
    for msg in messages {
        let (part, imgs) = message_parts(msg)?;
        if msg.role == "user" {
            images.extend(imgs);
        }
        text.push_str(role_label(&msg.role));
        text.push_str(": \n");
        text.push_str(&part);
        text.push('\n');
    }
    Ok((text, images))
}

/// Builds the Dify body for an OpenAI chat request (the path is [`DifyOptions::path`]).
///
/// `model` is not sent: a Dify app runs its own model. A `conversation_id` body field continues a
/// Dify conversation; see [`dify_request`] to pass the `ConversationId` header Higress reads.
pub fn to_dify_request(
    req: &openai::ChatRequest,
    _model: &str,
    opts: &DifyOptions,
) -> Result<Value, TranslateError> {
    dify_request(req, opts, None).map(|r| r.body)
}

/// Builds the Dify request for an OpenAI chat request.
///
/// `conversation_id` (Higress: the client's `ConversationId` header; else a `conversation_id`
/// body field) continues a Dify conversation: only the last user message is sent. A client
/// `inputs` object is passed on as the app's input variables; `user` defaults to `api-user`.
pub fn dify_request(
    req: &openai::ChatRequest,
    opts: &DifyOptions,
    conversation_id: Option<&str>,
) -> Result<DifyRequest, TranslateError> {
    let x = &req.extra;
    if x.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(err("n > 1 is not supported by Dify"));
    }
    let conversation = conversation_id
        .filter(|c| !c.is_empty())
        .or_else(|| {
            x.get("conversation_id")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
        })
        .map(str::to_string);
    let (text, images) = query_of(&req.messages, conversation.is_some())?;
    if text.is_empty() && images.is_empty() {
        return Err(err("the messages carry no text to send to Dify"));
    }
    let user = x
        .get("user")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .unwrap_or(DEFAULT_USER);
    let upstream_stream = opts.upstream_streams(req.stream == Some(true));
    let mode = if upstream_stream {
        "streaming"
    } else {
        "blocking"
    };
    let mut inputs = match x.get("inputs") {
        Some(Value::Object(m)) => m.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(err("inputs must be a JSON object")),
    };
    let files: Vec<Value> = images
        .iter()
        .map(|url| json!({"type": "image", "transfer_method": "remote_url", "url": url}))
        .collect();

    let mut body = Map::new();
    match opts.bot_type {
        BotType::Chat | BotType::Agent => {
            body.insert("query".into(), Value::String(text));
            body.insert("auto_generate_name".into(), Value::Bool(false));
            if let Some(c) = conversation {
                body.insert("conversation_id".into(), Value::String(c));
            }
        }
        BotType::Completion => {
            let var = if opts.input_variable.is_empty() {
                "query"
            } else {
                opts.input_variable.as_str()
            };
            inputs.insert(var.to_string(), Value::String(text));
        }
        BotType::Workflow => {
            if opts.input_variable.is_empty() {
                return Err(err("a Dify Workflow app needs inputVariable in the config"));
            }
            if !files.is_empty() {
                return Err(err("images are not supported for Dify Workflow apps"));
            }
            inputs.insert(opts.input_variable.clone(), Value::String(text));
        }
    }
    body.insert("inputs".into(), Value::Object(inputs));
    body.insert("response_mode".into(), Value::String(mode.into()));
    body.insert("user".into(), Value::String(user.to_string()));
    if !files.is_empty() {
        body.insert("files".into(), Value::Array(files));
    }
    Ok(DifyRequest {
        path: opts.bot_type.path(),
        body: Value::Object(body),
        upstream_stream,
    })
}

/// A JSON value as answer text: strings as they are, null as nothing, the rest as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The answer of a finished workflow run (`data` of the blocking answer or of
/// `workflow_finished`).
fn workflow_answer(data: Option<&Value>, output_variable: &str) -> Result<String, ErrorReply> {
    let status = data
        .and_then(|d| d.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("succeeded");
    if status != "succeeded" {
        let detail = data
            .and_then(|d| d.get("error"))
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .unwrap_or("no detail");
        return Err(ErrorReply::new(
            502,
            "server_error",
            Some("dify_workflow_failed"),
            format!("Dify workflow {status}: {detail}"),
        ));
    }
    let outputs = data.and_then(|d| d.get("outputs"));
    if !output_variable.is_empty() {
        return outputs
            .and_then(|o| o.get(output_variable))
            .map(value_text)
            .ok_or_else(|| {
                bad_upstream(format!(
                    "the Dify workflow has no output {output_variable:?}"
                ))
            });
    }
    Ok(match outputs {
        Some(Value::Object(m)) if m.len() == 1 => {
            m.values().next().map(value_text).unwrap_or_default()
        }
        Some(v) => value_text(v),
        None => String::new(),
    })
}

/// The completion id Higress uses: the conversation id for chat and agent apps (so clients can
/// continue the conversation), the message id for completion apps, the run id for workflows.
fn answer_id(v: &Value, bot: BotType) -> Option<&str> {
    let s = |key: &str| v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    match bot {
        BotType::Chat | BotType::Agent => s("conversation_id").or_else(|| s("message_id")),
        BotType::Completion => s("message_id").or_else(|| s("id")),
        BotType::Workflow => s("workflow_run_id").or_else(|| {
            v.get("data")
                .and_then(|d| d.get("id"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        }),
    }
}

fn created_of(v: &Value) -> Option<u64> {
    v.get("created_at")
        .and_then(Value::as_u64)
        .or_else(|| v.get("data")?.get("created_at")?.as_u64())
}

/// Reads a Dify answer as the events of one answer: a blocking JSON answer, or a whole SSE body
/// (Agent apps, which only stream). A failed workflow run, an error event or a stream cut short
/// is an error.
pub fn read_answer(
    body: &[u8],
    opts: &DifyOptions,
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let head = body.trim_ascii_start();
    if head.starts_with(b"data:") || head.starts_with(b"event:") || head.starts_with(b":") {
        return read_stream_body(body, opts, enc, out);
    }
    let v: Value = parse(body, "cannot read the Dify answer")?;
    if !v.is_object() {
        return Err(err("the Dify answer is not a JSON object"));
    }
    let (content, usage) = if opts.bot_type == BotType::Workflow {
        let answer =
            workflow_answer(v.get("data"), &opts.output_variable).map_err(|e| err(e.message))?;
        (answer, None)
    } else {
        let answer = v
            .get("answer")
            .and_then(Value::as_str)
            .ok_or_else(|| err("the Dify answer has no answer field"))?;
        let usage = v.pointer("/metadata/usage").and_then(from_usage);
        (answer.to_string(), usage)
    };
    let id = answer_id(&v, opts.bot_type).unwrap_or_default();
    answer(enc, out, (id, created_of(&v)), &content, "stop", usage);
    Ok(())
}

/// An error reply for a Dify error object (`{status, code, message}`), with `status` when the
/// object has none.
fn dify_error(v: &Value, status: u32) -> Option<ErrorReply> {
    let message = v.get("message").and_then(Value::as_str)?;
    let status = v
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .filter(|s| (400..600).contains(s))
        .unwrap_or(status);
    let code = v.get("code").and_then(Value::as_str);
    Some(ErrorReply::new(
        status,
        openai_error_type_for_status(status),
        code,
        message,
    ))
}

/// Turns a Dify error response (`{"status":400,"code":"invalid_param","message":"…"}`) into the
/// OpenAI-style error the client gets; `code` is Dify's code.
pub fn dify_error_to_openai(status: u32, body: &[u8]) -> ErrorReply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |key| str_of(parsed.as_ref(), key);
    upstream_error(status, body, None, field("code"), field("message"))
}

/// What one Dify stream event means for the answer.
enum Step {
    /// A piece of the answer.
    Text(String),
    /// The answer replaced by moderation.
    Replace(String),
    /// The answer is complete (`message_end`), with its usage.
    End(Option<Usage>),
    /// A workflow run finished with this answer.
    WorkflowDone(String),
    /// The run failed.
    Fail(ErrorReply),
    /// Nothing for the client (ping, node events, agent thoughts, …).
    Skip,
}

fn step(ev: &SseEvent, v: &Value, opts: &DifyOptions) -> Step {
    let name = v
        .get("event")
        .and_then(Value::as_str)
        .or(ev.event.as_deref())
        .unwrap_or_default();
    let answer = || {
        v.get("answer")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let workflow = opts.bot_type == BotType::Workflow;
    match name {
        "message" | "agent_message" if !workflow => Step::Text(answer()),
        "message_replace" if !workflow => Step::Replace(answer()),
        "message_end" if !workflow => Step::End(v.pointer("/metadata/usage").and_then(from_usage)),
        "workflow_finished" if workflow => {
            match workflow_answer(v.get("data"), &opts.output_variable) {
                Ok(text) => Step::WorkflowDone(text),
                Err(e) => Step::Fail(e),
            }
        }
        "error" => Step::Fail(
            dify_error(v, 500)
                .unwrap_or_else(|| ErrorReply::new(500, "server_error", None, "Dify stream error")),
        ),
        _ => Step::Skip,
    }
}

/// Reads a Dify event stream (`data: {"event": …}` events) into canonical events.
///
/// Chat, agent and completion apps stream `message`/`agent_message` pieces and end with
/// `message_end` (usage); a moderation `message_replace` is sent as text and the finish reason
/// becomes `content_filter`. Workflow apps send the `outputVariable` value when
/// `workflow_finished` arrives. Workflow runs report no prompt/completion split, so they carry no
/// usage. The answer keeps Dify's id and creation time.
#[derive(Debug, Default)]
pub struct DifyStream {
    opts: DifyOptions,
    model: String,
    id: String,
    created: u64,
    started: bool,
    replaced: bool,
    done: bool,
    /// The text so far, for a whole answer (none: sent as it comes).
    held: Option<String>,
}

impl DifyStream {
    /// A reader; `model` is the model name the client sees.
    pub fn new(model: &str, opts: &DifyOptions) -> Self {
        DifyStream {
            opts: opts.clone(),
            model: model.to_string(),
            ..DifyStream::default()
        }
    }

    /// `event`, after the answer's time, id and model (once).
    fn emit(&mut self, event: Event<'_>, enc: &mut dyn Encoder, out: &mut String) {
        if !self.started {
            self.started = true;
            enc.event(Event::Created(self.created), out);
            let meta = Event::Meta {
                id: &self.id,
                model: &self.model,
            };
            enc.event(meta, out);
        }
        enc.event(event, out);
    }
}

impl Decode for DifyStream {
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String) {
        if self.done {
            return;
        }
        // Pings carry no data; anything that is not JSON is skipped too.
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        if self.id.is_empty() {
            if let Some(id) = answer_id(&v, self.opts.bot_type) {
                self.id = id.to_string();
            }
        }
        if self.created == 0 {
            self.created = created_of(&v).unwrap_or(0);
        }
        match step(event, &v, &self.opts) {
            Step::Text(t) => match &mut self.held {
                Some(held) => held.push_str(&t),
                None => self.emit(Event::Text(&t), enc, out),
            },
            Step::Replace(t) => {
                self.replaced = true;
                match &mut self.held {
                    Some(held) => *held = t,
                    None => self.emit(Event::Text(&t), enc, out),
                }
            }
            Step::End(usage) => {
                if let Some(held) = self.held.take() {
                    self.emit(Event::Text(&held), enc, out);
                }
                let reason = if self.replaced {
                    "content_filter"
                } else {
                    "stop"
                };
                self.emit(Event::Finish(reason), enc, out);
                if let Some(u) = usage {
                    enc.event(Event::Usage(u), out);
                }
                self.finish(enc, out);
            }
            Step::WorkflowDone(text) => {
                self.emit(Event::Text(&text), enc, out);
                enc.event(Event::Finish("stop"), out);
                self.finish(enc, out);
            }
            Step::Fail(e) => {
                let error = Event::Error {
                    message: &e.message,
                    kind: &e.error_type,
                    code: e.code.as_deref(),
                };
                enc.event(error, out);
                self.finish(enc, out);
            }
            Step::Skip => {}
        }
    }

    /// The end, once (an answer cut short gets no finish reason).
    fn finish(&mut self, enc: &mut dyn Encoder, out: &mut String) {
        if !self.done {
            self.done = true;
            enc.end(out);
        }
    }
}

/// A whole Dify SSE body read by [`DifyStream`], its text held until the end (a replacement
/// replaces what came before).
fn read_stream_body(
    body: &[u8],
    opts: &DifyOptions,
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    decoder
        .feed(body, &mut events)
        .map_err(|e| err(e.to_string()))?;
    decoder.finish(&mut events);
    let mut stream = DifyStream::new("", opts);
    stream.held = Some(String::new());
    for ev in &events {
        stream.on_event(ev, enc, out);
    }
    match stream.done {
        true => Ok(()),
        false => Err(err("the Dify stream ended before the answer was complete")),
    }
}
/// A whole answer's events: its (id, creation time), text, finish reason and usage.
fn answer(
    enc: &mut dyn Encoder,
    out: &mut String,
    (id, created): (&str, Option<u64>),
    text: &str,
    finish: &str,
    usage: Option<Usage>,
) {
    enc.event(Event::Created(created.unwrap_or(0)), out);
    enc.event(Event::Meta { id, model: "" }, out);
    enc.event(Event::Text(text), out);
    enc.event(Event::Finish(finish), out);
    if let Some(u) = usage {
        enc.event(Event::Usage(u), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_dify_response(
        body: &[u8],
        model: &str,
        opts: &DifyOptions,
    ) -> Result<openai::ChatResponse, TranslateError> {
        crate::translate::whole_chat(model, Default::default(), |e, o| {
            read_answer(body, opts, e, o)
        })
    }

    fn chat(v: Value) -> openai::ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn opts(bot: BotType) -> DifyOptions {
        DifyOptions {
            bot_type: bot,
            ..DifyOptions::default()
        }
    }

    #[test]
    fn bot_types_and_paths() {
        assert_eq!(BotType::parse("").unwrap(), BotType::Chat);
        assert_eq!(BotType::parse("Chat").unwrap(), BotType::Chat);
        assert_eq!(BotType::parse("agent").unwrap(), BotType::Agent);
        assert_eq!(BotType::parse(" Completion ").unwrap(), BotType::Completion);
        assert_eq!(BotType::parse("WORKFLOW").unwrap(), BotType::Workflow);
        assert!(BotType::parse("chatflow").is_err());
        assert_eq!(BotType::Chat.path(), "/v1/chat-messages");
        assert_eq!(BotType::Agent.path(), "/v1/chat-messages");
        assert_eq!(BotType::Completion.path(), "/v1/completion-messages");
        assert_eq!(BotType::Workflow.path(), "/v1/workflows/run");
    }

    #[test]
    fn options_from_config() {
        let cfg = |bot: &str, input: &str, output: &str| ProviderConfig {
            bot_type: Some(bot.into()),
            input_variable: Some(input.into()),
            output_variable: Some(output.into()),
            ..ProviderConfig::default()
        };
        let o = DifyOptions::from_config(&ProviderConfig::default()).unwrap();
        assert_eq!(o, DifyOptions::default());
        assert_eq!(o.path(), "/v1/chat-messages");
        let o = DifyOptions::from_config(&cfg("Workflow", " text ", "result")).unwrap();
        assert_eq!(
            o,
            DifyOptions {
                bot_type: BotType::Workflow,
                input_variable: "text".into(),
                output_variable: "result".into(),
            }
        );
        assert_eq!(o.path(), "/v1/workflows/run");
        let e = DifyOptions::from_config(&cfg("Workflow", "", "result")).unwrap_err();
        assert_eq!(e.path, "inputVariable");
        let e = DifyOptions::from_config(&cfg("Bot", "", "")).unwrap_err();
        assert_eq!(e.path, "botType");

        assert!(!o.upstream_streams(false));
        assert!(o.upstream_streams(true));
        assert!(opts(BotType::Agent).upstream_streams(false));
    }

    #[test]
    fn hosts_from_api_url() {
        assert_eq!(dify_host(""), "api.dify.ai");
        assert_eq!(dify_host("  "), "api.dify.ai");
        assert_eq!(dify_host("https://dify.example.com/v1"), "dify.example.com");
        assert_eq!(dify_host("http://10.0.0.5:8080"), "10.0.0.5:8080");
        assert_eq!(dify_host("dify.internal/v1"), "dify.internal");
        assert_eq!(
            dify_host("HTTPS://Dify.Example.com?x=1"),
            "Dify.Example.com"
        );
        assert_eq!(dify_host("https://"), "api.dify.ai");
    }

    #[test]
    fn chat_single_user_message() {
        let r = dify_request(
            &chat(json!({"model": "dify", "messages": [{"role": "user", "content": "Hello"}]})),
            &opts(BotType::Chat),
            None,
        )
        .unwrap();
        assert_eq!(r.path, "/v1/chat-messages");
        assert!(!r.upstream_stream);
        assert_eq!(
            r.body,
            json!({"inputs": {}, "query": "USER: \nHello\n", "response_mode": "blocking", "user": "api-user",
                "auto_generate_name": false})
        );
    }

    #[test]
    fn body_only_entry_point() {
        let req = chat(json!({"model": "gpt-4o", "conversation_id": "c-3",
            "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}));
        let body = to_dify_request(&req, "gpt-4o", &opts(BotType::Chat)).unwrap();
        assert_eq!(
            body,
            dify_request(&req, &opts(BotType::Chat), None).unwrap().body
        );
        assert_eq!(body["query"], "b");
        assert_eq!(body["conversation_id"], "c-3");
    }

    #[test]
    fn chat_transcript_without_conversation() {
        let r = dify_request(
            &chat(json!({"messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}
            ], "stream": true, "user": "u-7", "inputs": {"lang": "en"}})),
            &opts(BotType::Chat),
            None,
        )
        .unwrap();
        assert!(r.upstream_stream);
        assert_eq!(
            r.body,
            json!({"inputs": {"lang": "en"},
                "query": "SYSTEM: \nBe brief.\nUSER: \nHi\nASSISTANT: \nHello!\nUSER: \nCapital of France?\n",
                "response_mode": "streaming", "user": "u-7", "auto_generate_name": false})
        );
    }

    #[test]
    fn conversation_sends_last_user_message_only() {
        let req = chat(json!({"messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "And now?"}
        ]}));
        let r = dify_request(&req, &opts(BotType::Chat), Some("conv-1")).unwrap();
        assert_eq!(r.body["query"], "And now?");
        assert_eq!(r.body["conversation_id"], "conv-1");
        // The body field works too; an empty header value does not count.
        let mut v = serde_json::to_value(&req).unwrap();
        v["conversation_id"] = json!("conv-2");
        let r = dify_request(&chat(v), &opts(BotType::Chat), Some("")).unwrap();
        assert_eq!(r.body["conversation_id"], "conv-2");
        assert_eq!(r.body["query"], "And now?");
    }

    #[test]
    fn images_become_remote_files() {
        let r = dify_request(
            &chat(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}
            ]}]})),
            &opts(BotType::Chat),
            None,
        )
        .unwrap();
        assert_eq!(r.body["query"], "USER: \nWhat is this?\n");
        assert_eq!(
            r.body["files"],
            json!([{"type": "image", "transfer_method": "remote_url", "url": "https://x.test/cat.png"}])
        );
        let data_url = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}));
        assert!(dify_request(&data_url, &opts(BotType::Chat), None).is_err());
        let audio = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}]}]}));
        assert!(dify_request(&audio, &opts(BotType::Chat), None).is_err());
    }

    #[test]
    fn agent_always_streams_upstream() {
        let r = dify_request(
            &chat(
                json!({"messages": [{"role": "user", "content": "Plan a trip"}], "stream": false}),
            ),
            &opts(BotType::Agent),
            None,
        )
        .unwrap();
        assert!(r.upstream_stream);
        assert_eq!(r.body["response_mode"], "streaming");
        assert_eq!(r.path, "/v1/chat-messages");
    }

    #[test]
    fn completion_and_workflow_inputs() {
        let req = chat(json!({"messages": [{"role": "user", "content": "Write a haiku"}]}));
        let r = dify_request(&req, &opts(BotType::Completion), None).unwrap();
        assert_eq!(r.path, "/v1/completion-messages");
        assert_eq!(
            r.body,
            json!({"inputs": {"query": "USER: \nWrite a haiku\n"}, "response_mode": "blocking", "user": "api-user"})
        );
        let mut o = opts(BotType::Completion);
        o.input_variable = "topic".into();
        let r = dify_request(&req, &o, None).unwrap();
        assert_eq!(
            r.body["inputs"],
            json!({"topic": "USER: \nWrite a haiku\n"})
        );

        let mut o = opts(BotType::Workflow);
        assert!(dify_request(&req, &o, None).is_err());
        o.input_variable = "text".into();
        o.output_variable = "result".into();
        let r = dify_request(&req, &o, None).unwrap();
        assert_eq!(r.path, "/v1/workflows/run");
        assert_eq!(
            r.body,
            json!({"inputs": {"text": "USER: \nWrite a haiku\n"}, "response_mode": "blocking", "user": "api-user"})
        );
    }

    #[test]
    fn request_errors() {
        let o = opts(BotType::Chat);
        assert!(dify_request(&chat(json!({"messages": []})), &o, None).is_err());
        assert!(dify_request(
            &chat(json!({"messages": [{"role": "user", "content": "x"}], "n": 2})),
            &o,
            None
        )
        .is_err());
        assert!(dify_request(
            &chat(json!({"messages": [{"role": "user", "content": "x"}], "inputs": [1]})),
            &o,
            None
        )
        .is_err());
        // A conversation needs a user message.
        assert!(dify_request(
            &chat(json!({"messages": [{"role": "system", "content": "x"}]})),
            &o,
            Some("c")
        )
        .is_err());
    }

    #[test]
    fn blocking_chat_answer() {
        let body = json!({
            "event": "message", "task_id": "c3800678", "id": "9da23599", "message_id": "9da23599",
            "conversation_id": "45701982-8118-4bc5-8e9b-64562b4555f2", "mode": "chat",
            "answer": "iPhone 13 Pro Max specs are listed here:...",
            "metadata": {"usage": {"prompt_tokens": 1033, "prompt_unit_price": "0.001",
                "completion_tokens": 128, "total_tokens": 1161, "total_price": "0.0012890",
                "currency": "USD", "latency": 0.768}, "retriever_resources": []},
            "created_at": 1705407629
        });
        let r =
            from_dify_response(body.to_string().as_bytes(), "dify", &opts(BotType::Chat)).unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id": "45701982-8118-4bc5-8e9b-64562b4555f2", "object": "chat.completion",
                "created": 1705407629, "model": "dify",
                "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": "iPhone 13 Pro Max specs are listed here:..."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1033, "completion_tokens": 128, "total_tokens": 1161}})
        );
        // Completion apps: the message id; no usage when Dify sends none.
        let body = json!({"message_id": "m-1", "answer": "ok", "created_at": 5});
        let r = from_dify_response(body.to_string().as_bytes(), "d", &opts(BotType::Completion))
            .unwrap();
        assert_eq!(r.id, "m-1");
        assert!(r.usage.is_none());
        assert!(from_dify_response(b"{}", "d", &opts(BotType::Chat)).is_err());
        assert!(from_dify_response(b"nope", "d", &opts(BotType::Chat))
            .unwrap_err()
            .0
            .starts_with("cannot read the Dify answer"));
    }

    #[test]
    fn blocking_workflow_answer() {
        let mut o = opts(BotType::Workflow);
        o.output_variable = "result".into();
        let body = json!({"workflow_run_id": "djflajgkldjgd", "task_id": "9da23599",
            "data": {"id": "fdlsjfjejkghjda", "workflow_id": "fldjaslkfjlsda", "status": "succeeded",
                "outputs": {"result": "Bonjour", "other": 1}, "error": null, "elapsed_time": 0.875,
                "total_tokens": 3562, "total_steps": 8, "created_at": 1705407629,
                "finished_at": 1727807631}});
        let r = from_dify_response(body.to_string().as_bytes(), "wf", &o).unwrap();
        assert_eq!(r.id, "djflajgkldjgd");
        assert_eq!(r.created, 1705407629);
        assert_eq!(
            r.choices[0].message.content,
            Some(openai::Content::Text("Bonjour".into()))
        );
        assert!(r.usage.is_none());

        // Missing output variable; without outputVariable a lone output is used, else all as JSON.
        o.output_variable = "missing".into();
        assert!(from_dify_response(body.to_string().as_bytes(), "wf", &o).is_err());
        o.output_variable.clear();
        let text = |b: Value| {
            from_dify_response(b.to_string().as_bytes(), "wf", &o)
                .unwrap()
                .choices[0]
                .message
                .content
                .as_ref()
                .map(openai::Content::text)
                .unwrap()
        };
        assert_eq!(
            text(json!({"data": {"status": "succeeded", "outputs": {"x": {"a": 1}}}})),
            r#"{"a":1}"#
        );
        assert_eq!(
            text(json!({"data": {"status": "succeeded", "outputs": {"a": "1", "b": 2}}})),
            r#"{"a":"1","b":2}"#
        );

        let failed = json!({"data": {"status": "failed", "error": "node LLM timed out"}});
        let e = from_dify_response(failed.to_string().as_bytes(), "wf", &o).unwrap_err();
        assert_eq!(e.0, "Dify workflow failed: node LLM timed out");
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let e = dify_error_to_openai(
            404,
            br#"{"status": 404, "code": "not_found", "message": "Conversation Not Exists."}"#,
        );
        assert_eq!(e.status, 404);
        assert_eq!(e.error_type, "not_found_error");
        assert_eq!(e.code.as_deref(), Some("not_found"));
        assert_eq!(e.message, "Conversation Not Exists.");
        let e = dify_error_to_openai(
            400,
            br#"{"code": "provider_quota_exceeded", "message": "quota"}"#,
        );
        assert_eq!(e.error_type, "invalid_request_error");
        let e = dify_error_to_openai(502, b"<html>bad gateway</html>");
        assert_eq!(e.error_type, "server_error");
        assert_eq!(e.code, None);
        assert_eq!(e.message, "<html>bad gateway</html>");
        assert_eq!(
            dify_error_to_openai(401, b"").message,
            "upstream returned HTTP 401"
        );
    }

    const CHAT_STREAM: &str = concat!(
        "data: {\"event\": \"workflow_started\", \"task_id\": \"t1\", \"workflow_run_id\": \"r1\", \"data\": {\"id\": \"r1\"}}\n\n",
        "data: {\"event\": \"message\", \"task_id\": \"t1\", \"message_id\": \"m1\", \"conversation_id\": \"c1\", \"answer\": \" I\", \"created_at\": 1679586595}\n\n",
        "event: ping\n\n",
        "data: {\"event\": \"message\", \"task_id\": \"t1\", \"message_id\": \"m1\", \"conversation_id\": \"c1\", \"answer\": \"'m\", \"created_at\": 1679586595}\n\n",
        "data: {\"event\": \"message\", \"task_id\": \"t1\", \"message_id\": \"m1\", \"conversation_id\": \"c1\", \"answer\": \" glad\", \"created_at\": 1679586595}\n\n",
        "data: {\"event\": \"workflow_finished\", \"task_id\": \"t1\", \"workflow_run_id\": \"r1\", \"data\": {\"status\": \"succeeded\", \"outputs\": {\"answer\": \"x\"}}}\n\n",
        "data: {\"event\": \"message_end\", \"id\": \"m1\", \"conversation_id\": \"c1\", \"metadata\": {\"usage\": {\"prompt_tokens\": 1033, \"completion_tokens\": 135, \"total_tokens\": 1168, \"total_price\": \"0.0013030\"}}}\n\n",
    );

    fn translate(wire: &str, piece: usize, o: &DifyOptions) -> String {
        let mode = super::super::ReasoningMode::Passthrough;
        let chat = super::super::to_chat(DifyStream::new("dify", o), "dify", mode);
        let mut tr = super::super::SseTranslator::new(chat);
        let mut out = String::new();
        let bytes = wire.as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(piece).collect();
        for (i, c) in chunks.iter().enumerate() {
            super::super::ChunkTranslator::feed(&mut tr, c, i + 1 == chunks.len(), &mut out);
        }
        if chunks.is_empty() {
            super::super::ChunkTranslator::feed(&mut tr, b"", true, &mut out);
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
    fn chat_stream() {
        let out = translate(CHAT_STREAM, usize::MAX, &opts(BotType::Chat));
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(out.matches("[DONE]").count(), 1);
        let c = chunks(&out);
        for chunk in &c {
            assert_eq!(chunk["id"], "c1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["model"], "dify");
            assert_eq!(chunk["created"], 1679586595);
        }
        assert_eq!(
            c[0]["choices"],
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])
        );
        let text: String = c
            .iter()
            .filter_map(|x| x["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, " I'm glad");
        let finishes: Vec<&Value> = c
            .iter()
            .map(|x| &x["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, vec![&json!("stop")]);
        let usage = c.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 1033, "completion_tokens": 135, "total_tokens": 1168})
        );
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn stream_output_does_not_depend_on_batching() {
        let o = opts(BotType::Chat);
        let whole = translate(CHAT_STREAM, usize::MAX, &o);
        for piece in [1, 3, 17, 100] {
            assert_eq!(translate(CHAT_STREAM, piece, &o), whole, "piece {piece}");
        }
    }

    #[test]
    fn agent_stream_with_moderation_replace() {
        let wire = concat!(
            "data: {\"event\": \"agent_thought\", \"id\": \"th1\", \"conversation_id\": \"c9\", \"thought\": \"thinking\"}\n\n",
            "data: {\"event\": \"agent_message\", \"conversation_id\": \"c9\", \"answer\": \"bad words\"}\n\n",
            "data: {\"event\": \"message_replace\", \"conversation_id\": \"c9\", \"answer\": \"Sorry, I cannot answer.\"}\n\n",
            "data: {\"event\": \"message_end\", \"conversation_id\": \"c9\", \"metadata\": {}}\n\n",
        );
        let out = translate(wire, 7, &opts(BotType::Agent));
        let c = chunks(&out);
        let text: String = c
            .iter()
            .filter_map(|x| x["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "bad wordsSorry, I cannot answer.");
        assert_eq!(
            c.last().unwrap()["choices"][0]["finish_reason"],
            "content_filter"
        );
        // No usage reported, so no usage chunk.
        assert!(c.iter().all(|x| x.get("usage").is_none()));
        assert!(out.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn workflow_stream() {
        let mut o = opts(BotType::Workflow);
        o.output_variable = "text".into();
        let wire = concat!(
            "data: {\"event\": \"workflow_started\", \"task_id\": \"t\", \"workflow_run_id\": \"run-5\", \"data\": {\"id\": \"run-5\", \"created_at\": 1700000000}}\n\n",
            "data: {\"event\": \"node_finished\", \"workflow_run_id\": \"run-5\", \"data\": {\"outputs\": {\"text\": \"ignored\"}}}\n\n",
            "data: {\"event\": \"text_chunk\", \"workflow_run_id\": \"run-5\", \"data\": {\"text\": \"Hel\"}}\n\n",
            "data: {\"event\": \"workflow_finished\", \"workflow_run_id\": \"run-5\", \"data\": {\"id\": \"run-5\", \"status\": \"succeeded\", \"outputs\": {\"text\": \"Hello world\"}, \"total_tokens\": 50}}\n\n",
        );
        let c = chunks(&translate(wire, 11, &o));
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["id"], "run-5");
        assert_eq!(c[0]["created"], 1700000000);
        assert_eq!(
            c[1]["choices"][0]["delta"],
            json!({"content": "Hello world"})
        );
        assert_eq!(c[2]["choices"][0]["finish_reason"], "stop");

        let failed = "data: {\"event\": \"workflow_finished\", \"data\": {\"status\": \"failed\", \"error\": \"boom\"}}\n\n";
        let d = datas(&translate(failed, 5, &o));
        assert_eq!(d.len(), 2);
        assert_eq!(
            serde_json::from_str::<Value>(&d[0]).unwrap(),
            json!({"error": {"message": "Dify workflow failed: boom", "type": "server_error",
                "code": "dify_workflow_failed"}})
        );
        assert_eq!(d[1], "[DONE]");
    }

    #[test]
    fn stream_error_event_and_early_end() {
        let wire = concat!(
            "data: {\"event\": \"message\", \"conversation_id\": \"c\", \"answer\": \"Hi\"}\n\n",
            "data: {\"event\": \"error\", \"task_id\": \"t\", \"message_id\": \"m\", \"status\": 400, \"code\": \"completion_request_error\", \"message\": \"model quota exceeded\"}\n\n",
            "data: {\"event\": \"message\", \"conversation_id\": \"c\", \"answer\": \"late\"}\n\n",
        );
        let out = translate(wire, usize::MAX, &opts(BotType::Chat));
        let d = datas(&out);
        assert_eq!(d.len(), 4);
        assert_eq!(
            serde_json::from_str::<Value>(&d[2]).unwrap(),
            json!({"error": {"message": "model quota exceeded", "type": "invalid_request_error",
                "code": "completion_request_error"}})
        );
        assert_eq!(d[3], "[DONE]");

        // Cut off before message_end: the text, no finish, no usage, one [DONE].
        let cut =
            "data: {\"event\": \"message\", \"conversation_id\": \"c\", \"answer\": \"Hi\"}\n\n";
        let out = translate(cut, 4, &opts(BotType::Chat));
        let c = chunks(&out);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|x| x["choices"][0]["finish_reason"].is_null()));
        assert_eq!(out.matches("[DONE]").count(), 1);
        // An empty upstream is an error, and the client stream still ends.
        let out = translate("", 1, &opts(BotType::Chat));
        assert!(out.contains("bad_upstream_stream"), "{out}");
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    }

    #[test]
    fn stream_body_collected_for_non_streaming_clients() {
        // from_dify_response recognises an SSE body (Agent apps only stream).
        let r = from_dify_response(CHAT_STREAM.as_bytes(), "dify", &opts(BotType::Agent)).unwrap();
        assert_eq!(r.id, "c1");
        assert_eq!(r.created, 1679586595);
        assert_eq!(
            r.choices[0].message.content,
            Some(openai::Content::Text(" I'm glad".into()))
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(r.usage.as_ref().map(|u| u.total_tokens), Some(1168));

        let replaced = concat!(
            "data: {\"event\": \"agent_message\", \"conversation_id\": \"c\", \"answer\": \"bad\"}\n\n",
            "data: {\"event\": \"message_replace\", \"conversation_id\": \"c\", \"answer\": \"Sorry.\"}\n\n",
            "data: {\"event\": \"message_end\", \"conversation_id\": \"c\"}\n\n",
        );
        let r = from_dify_response(replaced.as_bytes(), "d", &opts(BotType::Agent)).unwrap();
        assert_eq!(
            r.choices[0].message.content,
            Some(openai::Content::Text("Sorry.".into()))
        );
        assert_eq!(
            r.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        assert!(r.usage.is_none());

        let cut = "data: {\"event\": \"agent_message\", \"conversation_id\": \"c\", \"answer\": \"Hi\"}\n\n";
        assert_eq!(
            from_dify_response(cut.as_bytes(), "d", &opts(BotType::Agent))
                .unwrap_err()
                .0,
            "the Dify stream ended before the answer was complete"
        );
        let error = "\n: keep-alive\ndata: {\"event\": \"error\", \"status\": 429, \"code\": \"too_many\", \"message\": \"slow down\"}\n\n";
        let e = from_dify_response(error.as_bytes(), "d", &opts(BotType::Agent)).unwrap_err();
        assert_eq!(e.0, "slow down");
    }
}
