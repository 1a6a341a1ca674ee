//! The agent loop as a pure state machine: model requests, tool calls planned through the sdk's
//! tool layer, results fed back, and the client's final answer. The stage does the I/O.

use crate::config::{AgentConfig, MAX_TOOL_CALLS_PER_TURN};
use crate::react::{self, Labels, Parsed};
use sdk::error::ErrorReply;
use sdk::tools::{Outbound, ToolOutput};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The default path of the model's chat completions endpoint.
pub const DEFAULT_PATH: &str = "/v1/chat/completions";

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Its `tool_call_id` (ReAct: made up).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The validated arguments.
    pub args: Map<String, Value>,
    /// The request to make, or why none can be made (fed back to the model as the result).
    pub plan: Result<Outbound, String>,
}

/// What the loop does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Run these tool calls, then call the model again.
    Tools(Vec<ToolCall>),
    /// Answer the client.
    Answer(Answer),
    /// Answer the client with an error.
    Fail(ErrorReply),
}

/// The final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The text.
    pub content: String,
    /// OpenAI `finish_reason`: `stop`, or `length` when a limit ended the loop.
    pub finish_reason: &'static str,
}

impl Answer {
    /// The loop hit a limit before the model answered.
    pub fn stopped(content: String) -> Answer {
        Answer {
            content,
            finish_reason: "length",
        }
    }
}

/// One request's loop.
#[derive(Debug, Clone)]
pub struct Run {
    /// The conversation sent to the model.
    pub messages: Vec<Value>,
    /// Model calls made.
    pub model_calls: u32,
    /// Tool calls made.
    pub tool_calls: u32,
    /// Usage summed over the model calls: prompt, completion.
    pub usage: (u64, u64),
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The model the client named (echoed in the answer).
    pub client_model: String,
    /// Results of the current turn's tool calls, by position.
    results: Vec<Option<Value>>,
    react: Option<Labels>,
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, saying so.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [cut: {} of {} bytes shown]",
        &text[..end],
        end,
        text.len()
    )
}

impl Run {
    /// A loop for a chat request, or None when the agent does not take it (the client brought
    /// its own tools: the request goes on to the model as it is).
    pub fn start(config: &AgentConfig, body: &Value) -> Result<Option<Run>, ErrorReply> {
        if body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
        {
            return Ok(None);
        }
        let messages = match body.get("messages").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m.clone(),
            _ => {
                return Err(ErrorReply::bad_request(
                    "invalid_messages",
                    "`messages` must be a non-empty array",
                ))
            }
        };
        let react = config.prompt_template.as_ref().map(Labels::from_template);
        let mut all = Vec::with_capacity(messages.len() + 1);
        if let Some(labels) = &react {
            all.push(
                json!({"role": "system", "content": react::system_prompt(labels, &config.tools)}),
            );
        }
        all.extend(messages);
        Ok(Some(Run {
            messages: all,
            model_calls: 0,
            tool_calls: 0,
            usage: (0, 0),
            stream: body.get("stream").and_then(Value::as_bool) == Some(true),
            include_usage: body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true),
            client_model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            results: Vec::new(),
            react,
        }))
    }

    /// The next model request (counted as a model call); `timeout` is what is left of the budget.
    pub fn model_request(&mut self, config: &AgentConfig, timeout: Duration) -> Outbound {
        self.model_calls += 1;
        let llm = config.llm();
        let mut body = json!({
            "model": llm.model,
            "messages": self.messages,
            "max_tokens": config.max_tokens(),
            "stream": false,
        });
        if self.react.is_none() && !config.tools.is_empty() {
            let tools: Vec<Value> = config
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name(),
                        "description": t.def.description,
                        "parameters": t.schema,
                    }})
                })
                .collect();
            body["tools"] = Value::Array(tools);
        }
        if config.json_resp.as_ref().is_some_and(|j| j.enable) {
            body["response_format"] = match &config.json_schema {
                Some(schema) => {
                    json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
                }
                None => json!({"type": "json_object"}),
            };
        }
        let path = if llm.path.is_empty() {
            DEFAULT_PATH.to_string()
        } else {
            llm.path.clone()
        };
        let authority = if llm.domain.is_empty() {
            config.llm_cluster.clone()
        } else {
            llm.domain.clone()
        };
        let mut headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), path),
            (":authority".to_string(), authority),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        if !llm.api_key.is_empty() {
            headers.push(("authorization".into(), format!("Bearer {}", llm.api_key)));
        }
        Outbound {
            cluster: config.llm_cluster.clone(),
            headers,
            body: Some(body.to_string().into_bytes()),
            timeout,
        }
    }

    /// The model's answer (`status` None: no answer at all) decides the next step.
    pub fn on_model_answer(
        &mut self,
        config: &AgentConfig,
        status: Option<u32>,
        body: &[u8],
    ) -> Step {
        let Some(status) = status else {
            return Step::Fail(ErrorReply::new(
                504,
                "upstream_error",
                Some("model_unavailable"),
                "the agent's model did not answer (timeout or connection failure)",
            ));
        };
        let json: Option<Value> = serde_json::from_slice(body).ok();
        if !(200..300).contains(&status) {
            let detail = json
                .as_ref()
                .and_then(|j| j.pointer("/error/message").and_then(Value::as_str))
                .map(str::to_string)
                .unwrap_or_else(|| bounded(&String::from_utf8_lossy(body), 512));
            let code = if (400..600).contains(&status) {
                status
            } else {
                502
            };
            return Step::Fail(ErrorReply::new(
                code,
                "upstream_error",
                Some("model_error"),
                format!("the agent's model answered {status}: {detail}"),
            ));
        }
        let Some(message) = json
            .as_ref()
            .and_then(|j| j.pointer("/choices/0/message"))
            .filter(|m| m.is_object())
        else {
            return Step::Fail(ErrorReply::new(
                502,
                "upstream_error",
                Some("model_error"),
                "the agent's model answered no chat completion message",
            ));
        };
        if let Some(u) = json.as_ref().and_then(|j| j.get("usage")) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage.0 += n("prompt_tokens");
            self.usage.1 += n("completion_tokens");
        }
        let content = message.get("content").map(text_of).unwrap_or_default();
        let requested: Vec<(String, String, String)> = match &self.react {
            Some(labels) => match react::parse(&content, labels) {
                Parsed::Final(text) => return Step::Answer(self.final_answer(text)),
                Parsed::Action(name, input) => {
                    vec![(format!("react_{}", self.model_calls), name, input)]
                }
            },
            None => message
                .get("tool_calls")
                .and_then(Value::as_array)
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| {
                            let s = |p: &str| {
                                c.pointer(p)
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string()
                            };
                            (s("/id"), s("/function/name"), s("/function/arguments"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        if requested.is_empty() {
            return Step::Answer(self.final_answer(content));
        }
        if self.model_calls >= config.max_iterations() {
            return Step::Answer(Answer::stopped(format!(
                "The agent stopped after {} model calls (llm.maxIterations) without a final answer; the model was still asking for tools ({}).",
                self.model_calls,
                requested
                    .iter()
                    .map(|r| r.1.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // The model's turn goes into the conversation as it was given.
        match &self.react {
            Some(_) => self
                .messages
                .push(json!({"role": "assistant", "content": content})),
            None => {
                let mut turn = message.clone();
                if let Some(m) = turn.as_object_mut() {
                    m.retain(|k, _| ["role", "content", "tool_calls"].contains(&k.as_str()));
                }
                self.messages.push(turn);
            }
        }
        let server = config.server();
        let calls: Vec<ToolCall> = requested
            .into_iter()
            .enumerate()
            .map(|(i, (id, name, arguments))| {
                let mut call = ToolCall {
                    id,
                    name: name.clone(),
                    args: Map::new(),
                    plan: Err(String::new()),
                };
                call.plan = if i >= MAX_TOOL_CALLS_PER_TURN {
                    Err(format!(
                        "not run: at most {MAX_TOOL_CALLS_PER_TURN} tool calls per turn"
                    ))
                } else {
                    match config.tool(&name) {
                        None => Err(format!("unknown tool `{name}`")),
                        Some(tool) => {
                            let parsed: Result<Value, String> = if arguments.trim().is_empty() {
                                Ok(json!({}))
                            } else {
                                serde_json::from_str(&arguments)
                                    .map_err(|e| format!("arguments are not JSON: {e}"))
                            };
                            parsed
                                .and_then(|v| tool.validate(Some(&v)))
                                .and_then(|args| {
                                    let out = tool.request(&server, &args);
                                    call.args = args;
                                    out
                                })
                        }
                    }
                };
                call
            })
            .collect();
        self.results = vec![None; calls.len()];
        self.tool_calls += calls.iter().filter(|c| c.plan.is_ok()).count() as u32;
        Step::Tools(calls)
    }

    /// A tool call's result (call `index` of the last [`Step::Tools`]); true when the turn is
    /// complete and the model is called next.
    pub fn on_tool_result(
        &mut self,
        config: &AgentConfig,
        index: usize,
        call: &ToolCall,
        output: &ToolOutput,
    ) -> bool {
        let text = if output.is_error {
            format!("error: {}", output.text)
        } else {
            output.text.clone()
        };
        let text = bounded(&text, config.max_tool_result_bytes());
        let message = match &self.react {
            Some(labels) => react::observation(labels, &text),
            None => json!({"role": "tool", "tool_call_id": call.id, "content": text}),
        };
        if let Some(slot) = self.results.get_mut(index) {
            *slot = Some(message);
        }
        if self.results.iter().any(Option::is_none) {
            return false;
        }
        let done = std::mem::take(&mut self.results);
        self.messages.extend(done.into_iter().flatten());
        true
    }

    /// The answer when the time budget ran out.
    pub fn out_of_time(&self, config: &AgentConfig) -> Answer {
        Answer::stopped(format!(
            "The agent stopped after {} ms (llm.maxExecutionTime) without a final answer ({} model calls, {} tool calls).",
            config.max_execution_time().as_millis(),
            self.model_calls,
            self.tool_calls
        ))
    }

    fn final_answer(&self, content: String) -> Answer {
        Answer {
            content,
            finish_reason: "stop",
        }
    }

    fn usage_json(&self) -> Value {
        json!({
            "prompt_tokens": self.usage.0,
            "completion_tokens": self.usage.1,
            "total_tokens": self.usage.0 + self.usage.1,
        })
    }

    /// The client's answer: an OpenAI chat completion, or its SSE stream; `id` and `created`
    /// (unix seconds) name it.
    pub fn reply(&self, answer: &Answer, id: &str, created: u64) -> ErrorReply {
        let model = &self.client_model;
        if !self.stream {
            let body = json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.content},
                             "finish_reason": answer.finish_reason}],
                "usage": self.usage_json(),
            });
            return ErrorReply::raw(200, "application/json", body.to_string());
        }
        let chunk = |delta: Value, finish: Option<&str>| {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
        };
        let mut events = vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": answer.content}), None),
            chunk(json!({}), Some(answer.finish_reason)),
        ];
        if self.include_usage {
            events.push(json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": self.usage_json(),
            }));
        }
        let mut body = String::new();
        for e in events {
            body.push_str(&format!("data: {e}\n\n"));
        }
        body.push_str("data: [DONE]\n\n");
        ErrorReply::raw(200, "text/event-stream", body).with_header("cache-control", "no-cache")
    }
}

#[cfg(test)]
mod tests;
