//! The mcp-server stage: reads the POSTed message, makes the tool calls through Envoy clusters,
//! answers locally. Per-tool metrics and the `wasm.ai_log` fields are written here.

use crate::config::McpConfig;
use crate::core::{self, Framing, Headers, Plan, Reply};
use proxy_wasm::types::MetricType;
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::host::{Host, LogLevel};
use sdk::pipeline::{BodyOutcome, CallResult, Exchange, Need, RequestBody, Stage};
use sdk::tools::ToolOutput;
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// One request's state.
pub struct McpStage {
    rules: Rc<RuleSet<McpConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<McpConfig>>,
    headers: Headers,
    plan: Option<Plan>,
    /// Callouts out.
    out: Vec<Out>,
}

/// A callout that has not answered yet.
struct Out {
    token: u32,
    slot: usize,
    tool: String,
    args: Map<String, Value>,
    sent: SystemTime,
}

thread_local! {
    static SESSIONS: Cell<u64> = const { Cell::new(0) };
}

/// A session id: the time and a per-VM counter (sessions carry no state here, so the id
/// only needs to be unique).
fn session_id(host: &dyn Host) -> String {
    let n = SESSIONS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    let nanos = host
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}-{n:x}")
}

fn to_error_reply(reply: Reply) -> ErrorReply {
    let content_type = reply
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map_or("application/json", |(_, v)| v.as_str())
        .to_string();
    let mut e = ErrorReply::raw(reply.status, &content_type, reply.body);
    for (k, v) in reply.headers.iter().filter(|(k, _)| k != "content-type") {
        e = e.with_header(k, v.clone());
    }
    e
}

fn count(host: &dyn Host, kind: MetricType, name: &str, tool: &str, value: u64) {
    let name = format!("{name}.tool=.={tool};.;");
    if let Ok(id) = host.define_metric(kind, &name) {
        let _ = match kind {
            MetricType::Histogram => host.record_metric(id, value),
            _ => host.increment_metric(id, value as i64),
        };
    }
}

/// A tool's outcome: calls, errors, latency.
fn record_call(host: &dyn Host, tool: &str, is_error: bool, latency: Option<Duration>) {
    count(host, MetricType::Counter, "mcp_tool_calls_total", tool, 1);
    if is_error {
        count(host, MetricType::Counter, "mcp_tool_errors_total", tool, 1);
    }
    if let Some(l) = latency {
        let ms = u64::try_from(l.as_millis()).unwrap_or(u64::MAX);
        count(
            host,
            MetricType::Histogram,
            "mcp_tool_duration_ms",
            tool,
            ms,
        );
    }
}

impl McpStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<McpConfig>>) -> McpStage {
        McpStage {
            rules,
            active: None,
            headers: Headers::default(),
            plan: None,
            out: Vec::new(),
        }
    }

    fn config(&self) -> Option<&McpConfig> {
        self.active.as_deref()
    }

    fn finish(&self) -> CallResult {
        match &self.plan {
            Some(plan) if !plan.pending() => CallResult::Reply(to_error_reply(plan.reply())),
            Some(_) => CallResult::Wait,
            None => CallResult::NotMine,
        }
    }
}

impl Stage for McpStage {
    fn name(&self) -> &'static str {
        "mcp-server"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        let Some(config) = self.rules.select(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        if config.server.is_none() {
            return Ok(Need::Nothing);
        }
        let header = |name: &str| ex.request_header(host, name);
        self.headers = Headers {
            content_type: header("content-type"),
            accept: header("accept"),
            protocol_version: header("mcp-protocol-version"),
            mcp_method: header("mcp-method"),
            mcp_name: header("mcp-name"),
            consumer: header(&config.consumer_header).filter(|c| !c.is_empty()),
            origin: header("origin").filter(|o| !o.is_empty() && o != "null"),
            authority: ex.authority.clone(),
        };
        self.active = Some(config);
        if !ex.method.eq_ignore_ascii_case("POST") {
            // No server-initiated stream and no session to end: Streamable HTTP's GET and
            // DELETE are answered 405.
            let framing = core::framing(self.headers.accept.as_deref()).unwrap_or(Framing::Json);
            let reply = core::transport_error(
                405,
                core::code::INVALID_REQUEST,
                "method not allowed: MCP messages are POSTed",
                framing,
            );
            return Err(to_error_reply(reply).with_header("allow", "POST"));
        }
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
        let body = match (&ex.body, &ex.body_error) {
            (Some(RequestBody::Json(v)), None) => Some(v),
            _ => None,
        };
        let mut ids = || session_id(host);
        let plan = core::plan(config, &self.headers, body, &mut ids).map_err(to_error_reply)?;
        for tool in &plan.refused_calls {
            record_call(host, tool, true, None);
        }
        let mut plan = plan;
        let calls = std::mem::take(&mut plan.calls);
        for call in calls {
            let o = &call.outbound;
            let headers: Vec<(&str, &str)> = o
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match host.dispatch_http_call(&o.cluster, &headers, o.body.as_deref(), o.timeout) {
                Ok(token) => self.out.push(Out {
                    token,
                    slot: call.slot,
                    tool: call.tool,
                    args: call.args,
                    sent: ex.now(host),
                }),
                Err(status) => {
                    host.log(
                        LogLevel::Warn,
                        &format!(
                            "[mcp-server] tool {} cannot call cluster `{}`: {status:?}",
                            call.tool, o.cluster
                        ),
                    );
                    record_call(host, &call.tool, true, None);
                    let output = ToolOutput::error(format!(
                        "tool {} could not reach its API (cluster `{}`)",
                        call.tool, o.cluster
                    ));
                    plan.answer(call.slot, &output);
                }
            }
        }
        let pending = plan.pending();
        let reply = plan.reply();
        self.plan = Some(plan);
        if pending {
            return Ok(BodyOutcome::UNCHANGED.waiting(true));
        }
        Err(to_error_reply(reply))
    }

    fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        token: u32,
        body_size: usize,
    ) -> CallResult {
        let Some(at) = self.out.iter().position(|o| o.token == token) else {
            return CallResult::NotMine;
        };
        let Out {
            slot,
            tool,
            args,
            sent,
            ..
        } = self.out.swap_remove(at);
        let Some(config) = self.active.as_deref() else {
            return CallResult::NotMine;
        };
        let status = host
            .http_call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        let output = match (status, config.toolset.get(&tool)) {
            (Some(status), Some(t)) => {
                let mut headers = vec![(":status".to_string(), status.to_string())];
                if let Some(ct) = host.http_call_response_header("content-type") {
                    headers.push(("content-type".into(), ct));
                }
                let body = host.http_call_response_body(body_size).unwrap_or_default();
                t.response(status, &headers, &body, &args)
            }
            _ => ToolOutput::error(format!(
                "tool {tool}: the API did not answer (timeout or connection failure)"
            )),
        };
        let latency = ex.now(host).duration_since(sent).ok();
        record_call(host, &tool, output.is_error, latency);
        if let Some(plan) = self.plan.as_mut() {
            plan.answer(slot, &output);
        }
        self.finish()
    }

    fn on_log(&mut self, host: &dyn Host, ex: &mut Exchange) {
        let (Some(config), Some(plan)) = (self.config(), &self.plan) else {
            return;
        };
        let server = config.toolset.server.name.as_str();
        let mut log = json!({"mcp_server": server, "mcp_method": plan.methods.join(",")});
        if !plan.tools.is_empty() {
            log["mcp_tool"] = Value::String(plan.tools.join(","));
        }
        if let Some(c) = &self.headers.consumer {
            log["consumer"] = Value::String(c.clone());
        }
        // Added to what another plugin (ai-statistics) wrote for this request.
        if let Value::Object(mine) = log {
            ex.merge_ai_log(host, mine);
        }
    }
}

#[cfg(test)]
mod tests;
