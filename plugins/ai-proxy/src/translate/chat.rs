//! The canonical request: a client's chat request read once into typed turns of blocks, tools,
//! sampling and limits. The Anthropic, Bedrock and Gemini requests are written from it, so the
//! client's JSON is looked up in one place and every upstream sees the same reading of it.

use super::{err, max_tokens, str_of, TranslateError};
use sdk::llm::{openai, Extra};
use serde_json::{Map, Value};

/// A chat request, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat<'a> {
    /// Non-empty `system`/`developer` texts, in order.
    pub system: Vec<String>,
    /// One turn per user, assistant or tool message (tool results are user turns), in order;
    /// turns without blocks are left out.
    pub turns: Vec<Turn>,
    /// Tools offered to the model.
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Sampling numbers as the client sent them (non-numbers are left out).
    pub temperature: Option<Value>,
    pub top_p: Option<Value>,
    /// Stop sequences (`stop` as a string or strings).
    pub stop: Vec<String>,
    /// Answers asked for (`n`).
    pub n: Option<u64>,
    pub effort: Option<Effort>,
    /// The end user (`user`).
    pub user: Option<String>,
    pub stream: bool,
    /// The rest of the request, for fields only one upstream knows.
    pub extra: &'a Extra,
}

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    /// The role's name in OpenAI's and Anthropic's messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub blocks: Vec<Block>,
}

/// A piece of a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text, with the client's `cache_control` if any.
    Text {
        text: String,
        cache_control: Option<Value>,
    },
    /// An `image_url` part, with the client's `detail` if any.
    Image {
        media: Media,
        detail: Option<Value>,
        cache_control: Option<Value>,
    },
    /// An `input_audio` part (base64, `audio/<format>`).
    Audio(Media),
    /// A `file` part (its `file_data`).
    File(Media),
    /// An assistant's tool call; `input` is a JSON object.
    ToolUse {
        id: String,
        name: String,
        input: Value,
        /// A Gemini thought signature carried by the call.
        signature: Option<String>,
    },
    /// A tool message: the call it answers (absent for a legacy `function` message), the
    /// function name the client gave, and the result text.
    ToolResult {
        id: Option<String>,
        name: Option<String>,
        content: String,
    },
}

impl Block {
    /// A text block without cache control.
    pub fn text(text: impl Into<String>) -> Block {
        Block::Text {
            text: text.into(),
            cache_control: None,
        }
    }

    /// The error for a block `service` cannot take, naming the client's part type.
    pub fn unsupported(&self, service: &str) -> TranslateError {
        let kind = match self {
            Block::Text { .. } => "text",
            Block::Image { .. } => "image_url",
            Block::Audio(_) => "input_audio",
            Block::File(_) => "file",
            Block::ToolUse { .. } => "tool_calls",
            Block::ToolResult { .. } => "tool",
        };
        err(format!(
            "content part type {kind:?} is not supported by {service}"
        ))
    }
}

/// Where media comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// An http(s) URL.
    Url(String),
    /// Base64 data with its media type.
    Data { media_type: String, data: String },
}

impl Media {
    /// Reads a base64 data URL or an http(s) URL.
    pub fn parse(url: &str) -> Result<Media, TranslateError> {
        if let Some(rest) = url.strip_prefix("data:") {
            let (meta, data) = rest
                .split_once(',')
                .ok_or_else(|| err("malformed data URL"))?;
            let mut params = meta.split(';');
            let media_type = params.next().unwrap_or_default();
            if media_type.is_empty() || !params.any(|p| p == "base64") {
                return Err(err("data URLs must be base64 with a media type"));
            }
            Ok(Media::Data {
                media_type: media_type.to_string(),
                data: data.to_string(),
            })
        } else if url.starts_with("https://") || url.starts_with("http://") {
            Ok(Media::Url(url.to_string()))
        } else {
            Err(err("media URLs must be http(s) URLs or base64 data URLs"))
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    /// A function; `parameters` as the client sent them.
    Function {
        name: String,
        description: Option<String>,
        parameters: Option<Value>,
        /// `strict`: the arguments must follow the schema.
        strict: bool,
    },
    /// An object without `type` or `function`: an upstream's own tool (Gemini's `googleSearch`).
    Native(Value),
}

impl Tool {
    /// The function's name, description and parameters (an object schema, empty when the
    /// client gave none); a native tool is an error naming `service`.
    pub fn function(&self, service: &str) -> Result<(&str, Option<&str>, Value), TranslateError> {
        match self {
            Tool::Function {
                name,
                description,
                parameters,
                ..
            } => Ok((
                name,
                description.as_deref(),
                parameters
                    .clone()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            )),
            Tool::Native(_) => Err(err(format!(
                "function tool without a name (tools without a type are not supported by {service})"
            ))),
        }
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
}

/// `reasoning_effort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
}

impl Effort {
    /// The thinking budget Anthropic models get (Claude, Bedrock): none for `none`, 1024 for
    /// minimal and low, 4096, 16384, 32768.
    pub fn anthropic_budget(self) -> Option<u64> {
        match self {
            Effort::None => None,
            Effort::Minimal | Effort::Low => Some(1024),
            Effort::Medium => Some(4096),
            Effort::High => Some(16_384),
            Effort::XHigh => Some(32_768),
        }
    }
}

impl<'a> Chat<'a> {
    /// Reads `req`; `service` names the upstream in errors for what no upstream here takes.
    pub fn read(req: &'a openai::ChatRequest, service: &str) -> Result<Chat<'a>, TranslateError> {
        let x = &req.extra;
        let mut system = Vec::new();
        let mut turns = Vec::new();
        for msg in &req.messages {
            let turn = match msg.role.as_str() {
                "system" | "developer" => {
                    let text = msg.content.as_ref().map(openai::Content::text);
                    system.extend(text.filter(|t| !t.is_empty()));
                    continue;
                }
                "user" => Turn {
                    role: Role::User,
                    blocks: user_blocks(msg.content.as_ref(), service)?,
                },
                "assistant" => Turn {
                    role: Role::Assistant,
                    blocks: assistant_blocks(msg, service)?,
                },
                "tool" | "function" => Turn {
                    role: Role::User,
                    blocks: vec![Block::ToolResult {
                        id: msg
                            .extra
                            .get("tool_call_id")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        name: msg
                            .extra
                            .get("name")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        content: msg
                            .content
                            .as_ref()
                            .map(openai::Content::text)
                            .unwrap_or_default(),
                    }],
                },
                other => return Err(err(format!("message role {other:?} is not supported"))),
            };
            if !turn.blocks.is_empty() {
                turns.push(turn);
            }
        }
        let tools = match x.get("tools") {
            Some(Value::Array(tools)) => tools
                .iter()
                .map(|t| tool(t, service))
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let number = |key: &str| x.get(key).filter(|v| v.is_number()).cloned();
        let stop = match x.get("stop") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Chat {
            system,
            turns,
            tools,
            tool_choice: tool_choice(x.get("tool_choice"), service)?,
            parallel_tool_calls: x.get("parallel_tool_calls").and_then(Value::as_bool),
            max_tokens: max_tokens(x),
            temperature: number("temperature"),
            top_p: number("top_p"),
            stop,
            n: x.get("n").and_then(Value::as_u64),
            effort: effort(x.get("reasoning_effort"))?,
            user: x.get("user").and_then(Value::as_str).map(str::to_string),
            stream: req.stream.unwrap_or(false),
            extra: x,
        })
    }

    /// A number of the request's other fields (`top_k`, `seed`, …).
    pub fn number(&self, key: &str) -> Option<&Value> {
        self.extra.get(key).filter(|v| v.is_number())
    }

    /// Whether the conversation holds tool calls or results.
    pub fn has_tool_blocks(&self) -> bool {
        self.turns.iter().any(|t| {
            t.blocks
                .iter()
                .any(|b| matches!(b, Block::ToolUse { .. } | Block::ToolResult { .. }))
        })
    }

    /// Whether the last assistant turn calls tools. Anthropic models then need that turn's
    /// signed thinking block, which chat clients do not send back: thinking stays off.
    pub fn continues_tool_use(&self) -> bool {
        self.turns
            .iter()
            .rev()
            .find(|t| t.role == Role::Assistant)
            .is_some_and(|t| t.blocks.iter().any(|b| matches!(b, Block::ToolUse { .. })))
    }

    /// The error for more than one answer, which `service` cannot give.
    pub fn single_answer(&self, service: &str) -> Result<(), TranslateError> {
        match self.n {
            Some(n) if n > 1 => Err(err(format!("n > 1 is not supported by {service}"))),
            _ => Ok(()),
        }
    }
}

/// Appends `blocks` to the last message when it has `role`, else adds `{role, <key>: blocks}`
/// (for upstreams that need user and assistant turns to alternate).
pub fn push_turn(messages: &mut Vec<Value>, role: &str, key: &str, blocks: Vec<Value>) {
    match messages.last_mut() {
        Some(last) if last["role"] == role => {
            if let Some(existing) = last[key].as_array_mut() {
                existing.extend(blocks);
            }
        }
        _ => messages.push(serde_json::json!({"role": role, key: blocks})),
    }
}

fn cache_control(part: &openai::ContentPart) -> Option<Value> {
    part.extra.get("cache_control").cloned()
}

fn user_blocks(
    content: Option<&openai::Content>,
    service: &str,
) -> Result<Vec<Block>, TranslateError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(openai::Content::Text(s)) if s.is_empty() => return Ok(Vec::new()),
        Some(openai::Content::Text(s)) => return Ok(vec![Block::text(s.as_str())]),
        Some(openai::Content::Parts(parts)) => parts,
    };
    let mut blocks = Vec::new();
    for part in parts {
        match part.kind.as_str() {
            "text" => {
                if let Some(t) = part.text.as_deref().filter(|t| !t.is_empty()) {
                    blocks.push(Block::Text {
                        text: t.to_string(),
                        cache_control: cache_control(part),
                    });
                }
            }
            "image_url" => {
                let url = match part.extra.get("image_url") {
                    Some(Value::String(url)) => Some(url.as_str()),
                    other => str_of(other, "url"),
                }
                .ok_or_else(|| err("image_url part without a url"))?;
                blocks.push(Block::Image {
                    media: Media::parse(url)?,
                    detail: part
                        .extra
                        .get("image_url")
                        .and_then(|i| i.get("detail"))
                        .cloned(),
                    cache_control: cache_control(part),
                });
            }
            "input_audio" => {
                let audio = part.extra.get("input_audio");
                let data =
                    str_of(audio, "data").ok_or_else(|| err("input_audio part without data"))?;
                let format = str_of(audio, "format").unwrap_or("wav");
                blocks.push(Block::Audio(Media::Data {
                    media_type: format!("audio/{format}"),
                    data: data.to_string(),
                }));
            }
            "file" => {
                let data = str_of(part.extra.get("file"), "file_data")
                    .ok_or_else(|| err("file parts need file_data (a base64 data URL)"))?;
                blocks.push(Block::File(Media::parse(data)?));
            }
            other => {
                return Err(err(format!(
                    "content part type {other:?} is not supported by {service}"
                )))
            }
        }
    }
    Ok(blocks)
}

fn assistant_blocks(
    msg: &openai::ChatMessage,
    service: &str,
) -> Result<Vec<Block>, TranslateError> {
    let mut blocks = Vec::new();
    match &msg.content {
        Some(openai::Content::Text(s)) if !s.is_empty() => blocks.push(Block::text(s.as_str())),
        None | Some(openai::Content::Text(_)) => {}
        Some(openai::Content::Parts(parts)) => {
            for part in parts {
                let text = match part.kind.as_str() {
                    "text" => part.text.as_deref(),
                    "refusal" => part.extra.get("refusal").and_then(Value::as_str),
                    other => {
                        return Err(err(format!(
                            "assistant content part type {other:?} is not supported by {service}"
                        )))
                    }
                };
                if let Some(t) = text.filter(|t| !t.is_empty()) {
                    blocks.push(Block::Text {
                        text: t.to_string(),
                        cache_control: cache_control(part),
                    });
                }
            }
        }
    }
    for call in msg
        .extra
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
        let function = call.get("function");
        let name = str_of(function, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(format!("tool call {id:?} without a function name")))?;
        let input = match function.and_then(|f| f.get("arguments")) {
            Some(Value::String(args)) if !args.trim().is_empty() => {
                serde_json::from_str::<Value>(args).map_err(|e| {
                    err(format!(
                        "arguments of tool call {id:?} are not valid JSON: {e}"
                    ))
                })?
            }
            Some(obj @ Value::Object(_)) => obj.clone(),
            _ => Value::Object(Map::new()),
        };
        if !input.is_object() {
            return Err(err(format!(
                "arguments of tool call {id:?} must be a JSON object"
            )));
        }
        let signature = call
            .pointer("/extra_content/google/thought_signature")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| openai::thought_signature(id))
            .map(str::to_string);
        blocks.push(Block::ToolUse {
            id: id.to_string(),
            name: name.to_string(),
            input,
            signature,
        });
    }
    Ok(blocks)
}

fn tool(tool: &Value, service: &str) -> Result<Tool, TranslateError> {
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {}
        None if tool.get("function").is_some() => {}
        None if tool.is_object() => return Ok(Tool::Native(tool.clone())),
        other => {
            return Err(err(format!(
                "tool type {:?} is not supported by {service}",
                other.unwrap_or_default()
            )))
        }
    }
    let function = tool.get("function");
    let name = str_of(function, "name").ok_or_else(|| err("function tool without a name"))?;
    Ok(Tool::Function {
        name: name.to_string(),
        description: str_of(function, "description").map(str::to_string),
        parameters: function.and_then(|f| f.get("parameters")).cloned(),
        strict: function
            .and_then(|f| f.get("strict"))
            .and_then(Value::as_bool)
            == Some(true),
    })
}

fn tool_choice(
    choice: Option<&Value>,
    service: &str,
) -> Result<Option<ToolChoice>, TranslateError> {
    Ok(match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => return Err(err(format!("tool_choice {other:?} is not supported"))),
        }),
        Some(v) if v.get("type").and_then(Value::as_str) == Some("function") => {
            let name = str_of(v.get("function"), "name")
                .ok_or_else(|| err("tool_choice function without a name"))?;
            Some(ToolChoice::Function(name.to_string()))
        }
        Some(_) => {
            return Err(err(format!(
                "tool_choice of this shape is not supported by {service}"
            )))
        }
    })
}

fn effort(value: Option<&Value>) -> Result<Option<Effort>, TranslateError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    Ok(Some(match value.as_str() {
        Some("none") => Effort::None,
        Some("minimal") => Effort::Minimal,
        Some("low") => Effort::Low,
        Some("medium") => Effort::Medium,
        Some("high") => Effort::High,
        Some("xhigh") => Effort::XHigh,
        _ => {
            return Err(err(format!(
                "reasoning_effort {value} is not one of none, minimal, low, medium, high, xhigh"
            )))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(body: Value) -> Result<Vec<Turn>, TranslateError> {
        let req: openai::ChatRequest = serde_json::from_value(body).unwrap();
        Chat::read(&req, "X").map(|c| c.turns)
    }

    #[test]
    fn messages_become_turns_of_blocks() {
        let req: openai::ChatRequest = serde_json::from_value(json!({
            "model": "m", "stream": true, "max_tokens": 9, "stop": "END", "temperature": 0.5,
            "reasoning_effort": "high", "tool_choice": {"type": "function", "function": {"name": "f"}},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
                      {"googleSearch": {}}],
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": ""},
                {"role": "user", "content": [{"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1__thought__sig",
                    "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                {"role": "user", "content": ""}
            ]})).unwrap();
        let chat = Chat::read(&req, "X").unwrap();
        assert_eq!(chat.system, ["be brief"]);
        assert_eq!(chat.turns.len(), 3);
        assert_eq!(
            chat.turns[0].blocks,
            [
                Block::Text {
                    text: "look".into(),
                    cache_control: Some(json!({"type": "ephemeral"}))
                },
                Block::Image {
                    media: Media::Data {
                        media_type: "image/png".into(),
                        data: "AAAA".into()
                    },
                    detail: None,
                    cache_control: None
                }
            ]
        );
        assert_eq!(
            chat.turns[1].blocks,
            [Block::ToolUse {
                id: "c1__thought__sig".into(),
                name: "f".into(),
                input: json!({"a": 1}),
                signature: Some("sig".into())
            }]
        );
        assert_eq!(chat.turns[2].role, Role::User);
        assert!(chat.has_tool_blocks());
        assert_eq!(chat.tools.len(), 2);
        assert!(matches!(chat.tools[1], Tool::Native(_)));
        assert_eq!(chat.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(
            (chat.max_tokens, chat.stop, chat.effort, chat.stream),
            (Some(9), vec!["END".to_string()], Some(Effort::High), true)
        );
        assert_eq!(chat.temperature, Some(json!(0.5)));
    }

    #[test]
    fn bad_input_is_named() {
        let msg = |m: Value| read(json!({"messages": [m]})).unwrap_err().0;
        assert!(msg(json!({"role": "critic", "content": "x"})).contains("\"critic\""));
        assert!(
            msg(json!({"role": "user", "content": [{"type": "video", "x": 1}]}))
                .contains("\"video\" is not supported by X")
        );
        assert!(msg(json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://a"}}]}))
            .contains("http(s)"));
        assert!(msg(json!({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}))
            .contains("must be a JSON object"));
        assert!(msg(json!({"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}))
            .contains("without a function name"));
        let req = |extra: Value| {
            let mut body = json!({"messages": []});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let req: openai::ChatRequest = serde_json::from_value(body).unwrap();
            Chat::read(&req, "X").map(|_| ()).unwrap_err().0
        };
        assert!(req(json!({"reasoning_effort": "max"})).contains("not one of"));
        assert!(req(json!({"tool_choice": "sometimes"})).contains("\"sometimes\""));
        assert!(req(json!({"tools": [{"type": "retrieval"}]}))
            .contains("\"retrieval\" is not supported by X"));
    }
}
