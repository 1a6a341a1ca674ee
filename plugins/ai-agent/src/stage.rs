//! The ai-agent stage: holds the chat request while the loop's callouts run (model, then tools,
//! then model…), and answers the client locally with the final answer. The request never goes
//! on to the upstream.

use crate::config::AgentConfig;
use crate::core::{Answer, Run, Step, ToolCall};
use sdk::api::ApiKind;
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::host::{Host, LogLevel};
use sdk::pipeline::{BodyOutcome, CallResult, Exchange, Need, Stage};
use sdk::tools::{Outbound, ToolOutput};
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// Largest model answer read (a bigger one is a 502).
pub const MAX_MODEL_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Largest tool answer read (a bigger one is an error result for the model).
pub const MAX_TOOL_ANSWER_BYTES: usize = 1024 * 1024;

/// What a callout is for.
enum Pending {
    Model,
    Tool(usize),
}

/// One request's state.
pub struct AgentStage {
    rules: Rc<RuleSet<AgentConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<AgentConfig>>,
    run: Option<Run>,
    /// Callouts out: token and purpose.
    out: Vec<(u32, Pending)>,
    /// The current turn's tool calls.
    calls: Vec<ToolCall>,
    /// The tools called, for the access log.
    called: Vec<String>,
    started: Option<SystemTime>,
    finish: Option<&'static str>,
}

fn dispatch(host: &dyn Host, o: &Outbound) -> Result<u32, String> {
    let headers: Vec<(&str, &str)> = o
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    host.dispatch_http_call(&o.cluster, &headers, o.body.as_deref(), o.timeout)
        .map_err(|status| format!("cannot call cluster `{}`: {status:?}", o.cluster))
}

impl AgentStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<AgentConfig>>) -> AgentStage {
        AgentStage {
            rules,
            active: None,
            run: None,
            out: Vec::new(),
            calls: Vec::new(),
            called: Vec::new(),
            started: None,
            finish: None,
        }
    }

    /// What is left of the time budget (zero when spent).
    fn remaining(&self, config: &AgentConfig, ex: &mut Exchange, host: &dyn Host) -> Duration {
        let now = ex.now(host);
        let spent = self
            .started
            .and_then(|s| now.duration_since(s).ok())
            .unwrap_or_default();
        config.max_execution_time().saturating_sub(spent)
    }

    fn answer(&mut self, host: &dyn Host, ex: &mut Exchange, answer: &Answer) -> ErrorReply {
        self.finish = Some(answer.finish_reason);
        let created = ex
            .now(host)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!("chatcmpl-agent-{:x}", created.as_nanos());
        match &self.run {
            Some(run) => run.reply(answer, &id, created.as_secs()),
            None => ErrorReply::internal("the agent lost its state"),
        }
    }

    /// Calls the model (or answers when the budget is spent).
    fn call_model(&mut self, host: &dyn Host, ex: &mut Exchange) -> CallResult {
        let Some(config) = self.active.as_deref() else {
            return CallResult::Reply(ErrorReply::internal("the agent lost its config"));
        };
        let left = self.remaining(config, ex, host);
        let Some(run) = self.run.as_mut() else {
            return CallResult::Reply(ErrorReply::internal("the agent lost its state"));
        };
        if left.is_zero() {
            let answer = run.out_of_time(config);
            return CallResult::Answer(self.answer(host, ex, &answer));
        }
        let request = run.model_request(config, left);
        match dispatch(host, &request) {
            Ok(token) => {
                self.out.push((token, Pending::Model));
                CallResult::Wait
            }
            Err(e) => {
                host.log(LogLevel::Warn, &format!("[ai-agent] model: {e}"));
                CallResult::Reply(ErrorReply::new(
                    502,
                    "upstream_error",
                    Some("model_unavailable"),
                    "the agent cannot reach its model (llm cluster)",
                ))
            }
        }
    }

    /// Starts the turn's tool calls; the ones that cannot start are answered at once.
    fn call_tools(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        calls: Vec<ToolCall>,
    ) -> CallResult {
        let Some(config) = self.active.as_deref() else {
            return CallResult::Reply(ErrorReply::internal("the agent lost its config"));
        };
        let left = self.remaining(config, ex, host);
        let mut failed = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            self.called.push(call.name.clone());
            let result = match &call.plan {
                Ok(o) if left.is_zero() => Err(format!(
                    "not run: llm.maxExecutionTime spent ({})",
                    o.cluster
                )),
                Ok(o) => {
                    let mut o = o.clone();
                    o.timeout = o.timeout.min(left);
                    dispatch(host, &o)
                }
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok(token) => self.out.push((token, Pending::Tool(i))),
                Err(e) => failed.push((i, e)),
            }
        }
        self.calls = calls;
        let mut complete = false;
        for (i, e) in failed {
            complete |= self.tool_done(i, &ToolOutput::error(e));
        }
        if complete {
            return self.call_model(host, ex);
        }
        CallResult::Wait
    }

    fn tool_done(&mut self, index: usize, output: &ToolOutput) -> bool {
        let (Some(config), Some(run), Some(call)) = (
            self.active.as_deref(),
            self.run.as_mut(),
            self.calls.get(index),
        ) else {
            return false;
        };
        run.on_tool_result(config, index, call, output)
    }

    fn step(&mut self, host: &dyn Host, ex: &mut Exchange, step: Step) -> CallResult {
        match step {
            Step::Tools(calls) => self.call_tools(host, ex, calls),
            // A served answer: the stages before this one (ai-statistics, ai-token-ratelimit…)
            // see it as the response and count its summed usage.
            Step::Answer(answer) => CallResult::Answer(self.answer(host, ex, &answer)),
            Step::Fail(e) => {
                self.finish = Some("error");
                CallResult::Reply(e)
            }
        }
    }
}

impl Stage for AgentStage {
    fn name(&self) -> &'static str {
        "ai-agent"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        if ex.api() != ApiKind::ChatCompletions {
            return Ok(Need::Nothing);
        }
        let Some(config) = self
            .rules
            .select(|key| ex.match_value(host, key))
            .filter(|c| c.llm.is_some())
        else {
            return Ok(Need::Nothing);
        };
        self.active = Some(config);
        Ok(Need::Body)
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let Some(config) = self.active.as_deref() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        if let Some(e) = &ex.body_error {
            return Err(e.clone());
        }
        let Some(body) = ex.body.as_ref().and_then(|b| b.to_json()) else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let Some(run) = Run::start(config, &body)? else {
            // The client's own tools: the model answers it directly.
            self.active = None;
            return Ok(BodyOutcome::UNCHANGED);
        };
        self.run = Some(run);
        self.started = Some(ex.now(host));
        match self.call_model(host, ex) {
            CallResult::Wait => Ok(BodyOutcome::UNCHANGED.waiting(true)),
            CallResult::Reply(e) | CallResult::Answer(e) => Err(e),
            _ => Err(ErrorReply::internal("the agent could not start")),
        }
    }

    fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        token: u32,
        body_size: usize,
    ) -> CallResult {
        let Some(at) = self.out.iter().position(|(t, _)| *t == token) else {
            return CallResult::NotMine;
        };
        let (_, pending) = self.out.swap_remove(at);
        let status = host
            .http_call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        let limit = match pending {
            Pending::Model => MAX_MODEL_ANSWER_BYTES,
            Pending::Tool(_) => MAX_TOOL_ANSWER_BYTES,
        };
        let too_big = body_size > limit;
        let body = if too_big {
            Vec::new()
        } else {
            host.http_call_response_body(body_size).unwrap_or_default()
        };
        match pending {
            Pending::Model => {
                let Some(config) = self.active.as_deref() else {
                    return CallResult::Reply(ErrorReply::internal("the agent lost its config"));
                };
                // No answer because the loop's time ran out: the time-limit answer.
                let spent = status.is_none() && self.remaining(config, ex, host).is_zero();
                let Some(run) = self.run.as_mut() else {
                    return CallResult::Reply(ErrorReply::internal("the agent lost its state"));
                };
                let step = if spent {
                    Step::Answer(run.out_of_time(config))
                } else if too_big {
                    Step::Fail(ErrorReply::new(
                        502,
                        "upstream_error",
                        Some("model_error"),
                        format!("the agent's model answered {body_size} bytes (limit {limit})"),
                    ))
                } else {
                    run.on_model_answer(config, status, &body)
                };
                self.step(host, ex, step)
            }
            Pending::Tool(i) => {
                let output = match (status, self.calls.get(i)) {
                    (Some(_), Some(_)) if too_big => ToolOutput::error(format!(
                        "the API answered {body_size} bytes (limit {limit})"
                    )),
                    (Some(status), Some(call)) => {
                        let tool = self
                            .active
                            .as_deref()
                            .and_then(|c| c.tool(&call.name).cloned());
                        let mut headers = vec![(":status".to_string(), status.to_string())];
                        if let Some(ct) = host.http_call_response_header("content-type") {
                            headers.push(("content-type".into(), ct));
                        }
                        match tool {
                            Some(t) => t.response(status, &headers, &body, &call.args),
                            None => ToolOutput::error("unknown tool"),
                        }
                    }
                    _ => {
                        ToolOutput::error("the API did not answer (timeout or connection failure)")
                    }
                };
                if self.tool_done(i, &output) {
                    self.call_model(host, ex)
                } else {
                    CallResult::Wait
                }
            }
        }
    }

    fn on_log(&mut self, host: &dyn Host, ex: &mut Exchange) {
        let Some(run) = &self.run else {
            return;
        };
        let mut log = json!({
            "agent_model_calls": run.model_calls,
            "agent_tool_calls": run.tool_calls,
            "agent_input_tokens": run.usage.0,
            "agent_output_tokens": run.usage.1,
        });
        if !self.called.is_empty() {
            log["agent_tools"] = Value::String(self.called.join(","));
        }
        if let Some(f) = self.finish {
            log["agent_finish"] = Value::String(f.to_string());
        }
        // Added to what another plugin (ai-statistics) wrote for this request.
        if let Value::Object(mine) = log {
            ex.merge_ai_log(host, mine);
        }
    }
}

#[cfg(test)]
mod tests;
