//! MCP over Streamable HTTP, without the host: a POSTed JSON-RPC message (or batch) becomes
//! either an answer now, or tool calls to make and then an answer.
//!
//! Two profiles:
//! - **session** (`2024-11-05`, `2025-03-26`, `2025-06-18`): `initialize` answers with an
//!   `Mcp-Session-Id`, notifications get 202, `ping`, `tools/list`, `tools/call`; batches only
//!   in 2025-03-26 (and 2024-11-05), the version assumed without an `MCP-Protocol-Version`.
//! - **stateless** (`2026-07-28`): no `initialize` and no session; every request carries
//!   `MCP-Protocol-Version` and `Mcp-Method` (and `Mcp-Name` for `tools/call`) matching the
//!   body and `params._meta` (`io.modelcontextprotocol/protocolVersion`,
//!   `io.modelcontextprotocol/clientCapabilities`); `server/discover`, `tools/list`,
//!   `tools/call`; results carry `resultType: complete` and the server in
//!   `_meta.io.modelcontextprotocol/serverInfo`; batches are refused.

use crate::config::McpConfig;
use sdk::tools::{Outbound, ToolOutput};
use serde_json::{json, Map, Value};

/// The stateless protocol version.
pub const STATELESS: &str = "2026-07-28";
/// Session-profile versions, oldest first.
pub const SESSION_VERSIONS: [&str; 3] = ["2024-11-05", "2025-03-26", "2025-06-18"];
/// The version a session-profile request without `MCP-Protocol-Version` is taken to speak.
pub const DEFAULT_VERSION: &str = "2025-03-26";

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SERVER: &str = "io.modelcontextprotocol/serverInfo";

/// JSON-RPC error codes.
pub mod code {
    /// Not JSON.
    pub const PARSE: i64 = -32700;
    /// Not a JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters, unknown tool.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Transport headers disagree with the body (stateless profile).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// Unsupported protocol version (stateless profile).
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// The request headers the protocol reads (names lowercase).
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// `content-type`.
    pub content_type: Option<String>,
    /// `accept`.
    pub accept: Option<String>,
    /// `mcp-protocol-version`.
    pub protocol_version: Option<String>,
    /// `mcp-method`.
    pub mcp_method: Option<String>,
    /// `mcp-name`.
    pub mcp_name: Option<String>,
    /// The trusted consumer.
    pub consumer: Option<String>,
    /// `origin`.
    pub origin: Option<String>,
    /// `:authority`.
    pub authority: String,
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Status.
    pub status: u32,
    /// Headers (content type first).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

/// How JSON-RPC answers are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`.
    Json,
    /// One SSE `message` event.
    Sse,
}

/// One tool call to make.
#[derive(Debug, Clone)]
pub struct Call {
    /// The answer slot it fills.
    pub slot: usize,
    /// Tool name.
    pub tool: String,
    /// The request.
    pub outbound: Outbound,
    /// The validated arguments (the response template sees them as `.args`).
    pub args: Map<String, Value>,
}

/// What answering a POST takes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Answers in request order; `None` waits for a call, or is a notification (no answer).
    slots: Vec<Option<Value>>,
    /// Ids of the slots that wait for a call.
    waiting: Vec<(usize, Value)>,
    /// Calls to make.
    pub calls: Vec<Call>,
    batch: bool,
    stateless: bool,
    framing: Framing,
    /// A new session id to return (`initialize`).
    session: Option<String>,
    server_info: Value,
    /// Status for a single error answer.
    error_status: u32,
    /// Methods and tool names seen, for the log.
    pub methods: Vec<String>,
    /// Tool names called or refused.
    pub tools: Vec<String>,
    /// Tool calls refused before any upstream call (bad arguments): counted as errors.
    pub refused_calls: Vec<String>,
}

fn rpc_error(id: Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = data {
        error["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error answer before any message could be read.
pub fn transport_error(status: u32, code: i64, message: &str, framing: Framing) -> Reply {
    frame(
        status,
        &rpc_error(Value::Null, code, message, None),
        framing,
        &[],
    )
}

fn frame(status: u32, value: &Value, framing: Framing, extra: &[(String, String)]) -> Reply {
    let (content_type, body) = match framing {
        Framing::Json => ("application/json", value.to_string()),
        Framing::Sse => (
            "text/event-stream",
            format!("event: message\ndata: {value}\n\n"),
        ),
    };
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    headers.extend(extra.iter().cloned());
    Reply {
        status,
        headers,
        body,
    }
}

/// The framing the client's `Accept` asks for: the first of JSON and SSE it lists (JSON when it
/// lists neither by name but accepts anything); `None` when it accepts neither.
pub fn framing(accept: Option<&str>) -> Option<Framing> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Framing::Json);
    };
    let mut any = false;
    for part in accept.split(',') {
        let media = part
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json" => return Some(Framing::Json),
            "text/event-stream" => return Some(Framing::Sse),
            "*/*" | "application/*" => any = true,
            _ => {}
        }
    }
    any.then_some(Framing::Json)
}

/// A request id: a string or a number.
fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_number()
}

/// Where a session id comes from: any unique-enough value (sessions hold no state here).
pub type SessionIds<'a> = &'a mut dyn FnMut() -> String;

/// Reads a POST body and plans its answer.
pub fn plan(
    config: &McpConfig,
    headers: &Headers,
    body: Option<&Value>,
    new_session: SessionIds<'_>,
) -> Result<Plan, Reply> {
    let framing = framing(headers.accept.as_deref()).ok_or_else(|| {
        transport_error(
            406,
            code::INVALID_REQUEST,
            "Accept must allow application/json or text/event-stream",
            Framing::Json,
        )
    })?;
    if let Some(origin) = &headers.origin {
        if !config.origin_allowed(origin, &headers.authority) {
            return Err(transport_error(
                403,
                code::INVALID_REQUEST,
                "untrusted Origin",
                framing,
            ));
        }
    }
    let ct_ok = headers.content_type.as_deref().is_some_and(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    if !ct_ok {
        return Err(transport_error(
            415,
            code::INVALID_REQUEST,
            "Content-Type must be application/json",
            framing,
        ));
    }
    let Some(body) = body else {
        return Err(transport_error(
            400,
            code::PARSE,
            "parse error: the body is not JSON",
            framing,
        ));
    };
    let server = &config.toolset.server;
    let server_info = json!({
        "name": server.name,
        "version": server.version.as_deref().unwrap_or("1.0.0"),
    });
    let first_meta_version = match body {
        Value::Object(m) => m
            .get("params")
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_VERSION))
            .and_then(Value::as_str),
        _ => None,
    };
    let stateless = headers.protocol_version.as_deref() == Some(STATELESS)
        || headers.mcp_method.is_some()
        || first_meta_version.is_some_and(|v| !SESSION_VERSIONS.contains(&v));
    let mut plan = Plan {
        slots: Vec::new(),
        waiting: Vec::new(),
        calls: Vec::new(),
        batch: body.is_array(),
        stateless,
        framing,
        session: None,
        server_info,
        error_status: 200,
        methods: Vec::new(),
        tools: Vec::new(),
        refused_calls: Vec::new(),
    };
    if stateless {
        stateless_message(config, headers, body, &mut plan)?;
        return Ok(plan);
    }
    let version = headers
        .protocol_version
        .as_deref()
        .unwrap_or(DEFAULT_VERSION);
    if !SESSION_VERSIONS.contains(&version) {
        return Err(transport_error(
            400,
            code::INVALID_REQUEST,
            &format!("unsupported MCP-Protocol-Version `{version}`"),
            framing,
        ));
    }
    match body {
        Value::Array(items) => {
            if version == "2025-06-18" {
                return Err(transport_error(
                    400,
                    code::INVALID_REQUEST,
                    "batches are not part of protocol version 2025-06-18",
                    framing,
                ));
            }
            if items.is_empty() {
                return Err(transport_error(
                    400,
                    code::INVALID_REQUEST,
                    "empty batch",
                    framing,
                ));
            }
            for item in items {
                session_message(config, headers, item, &mut plan, new_session);
            }
        }
        single => session_message(config, headers, single, &mut plan, new_session),
    }
    Ok(plan)
}

/// Splits a message into id, method and params, or the error answer it gets.
fn envelope(msg: &Value) -> Result<(Option<Value>, String, Option<Value>), Value> {
    let Value::Object(m) = msg else {
        return Err(rpc_error(
            Value::Null,
            code::INVALID_REQUEST,
            "invalid request: not a JSON-RPC object",
            None,
        ));
    };
    let id = m.get("id").cloned();
    let bad_id = id.as_ref().is_some_and(|i| !valid_id(i));
    let id_for_error = id.clone().filter(valid_id).unwrap_or(Value::Null);
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || bad_id {
        return Err(rpc_error(
            id_for_error,
            code::INVALID_REQUEST,
            "invalid request: needs jsonrpc \"2.0\" and a string or number id",
            None,
        ));
    }
    let Some(method) = m.get("method").and_then(Value::as_str) else {
        if m.contains_key("result") || m.contains_key("error") {
            // A response from the client: nothing to answer.
            return Ok((None, String::new(), None));
        }
        return Err(rpc_error(
            id_for_error,
            code::INVALID_REQUEST,
            "invalid request: no method",
            None,
        ));
    };
    let params = m.get("params").cloned();
    if params
        .as_ref()
        .is_some_and(|p| !p.is_object() && !p.is_array())
    {
        return Err(rpc_error(
            id_for_error,
            code::INVALID_REQUEST,
            "invalid request: params must be an object",
            None,
        ));
    }
    Ok((id, method.to_string(), params))
}

fn session_message(
    config: &McpConfig,
    headers: &Headers,
    msg: &Value,
    plan: &mut Plan,
    new_session: SessionIds<'_>,
) {
    let (id, method, params) = match envelope(msg) {
        Ok(e) => e,
        Err(answer) => {
            plan.error_status = 400;
            plan.slots.push(Some(answer));
            return;
        }
    };
    if !method.is_empty() {
        plan.methods.push(method.clone());
    }
    let Some(id) = id else {
        // Notifications (and client responses) are accepted without an answer.
        plan.slots.push(None);
        return;
    };
    let answer = match method.as_str() {
        "initialize" => {
            let asked = params
                .as_ref()
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str);
            let version = asked
                .filter(|v| SESSION_VERSIONS.contains(v))
                .unwrap_or("2025-06-18");
            plan.session = Some(new_session());
            rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": plan.server_info,
                }),
            )
        }
        "ping" => rpc_result(id, json!({})),
        "tools/list" => rpc_result(id, json!({"tools": list(config, headers)})),
        "tools/call" => match call(config, headers, params.as_ref(), plan) {
            Ok(()) => {
                let slot = plan.slots.len();
                plan.waiting.push((slot, id));
                plan.slots.push(None);
                if let Some(c) = plan.calls.last_mut() {
                    c.slot = slot;
                }
                return;
            }
            Err(CallError::Rpc(code, message)) => rpc_error(id, code, &message, None),
            Err(CallError::Result(output)) => rpc_result(id, output.to_mcp()),
        },
        other => rpc_error(
            id,
            code::METHOD_NOT_FOUND,
            &format!("method not found: {other}"),
            None,
        ),
    };
    plan.slots.push(Some(answer));
}

fn stateless_message(
    config: &McpConfig,
    headers: &Headers,
    msg: &Value,
    plan: &mut Plan,
) -> Result<(), Reply> {
    let framing = plan.framing;
    let fail = |status: u32, id: Value, code: i64, message: &str, data: Option<Value>| {
        frame(status, &rpc_error(id, code, message, data), framing, &[])
    };
    if msg.is_array() {
        return Err(fail(
            400,
            Value::Null,
            code::INVALID_REQUEST,
            "batches are not part of protocol version 2026-07-28",
            None,
        ));
    }
    let (id, method, params) = envelope(msg).map_err(|e| frame(400, &e, framing, &[]))?;
    let Some(id) = id else {
        return Err(fail(
            400,
            Value::Null,
            code::INVALID_REQUEST,
            "the stateless profile takes requests with an id",
            None,
        ));
    };
    plan.methods.push(method.clone());
    let meta = params.as_ref().and_then(|p| p.get("_meta"));
    let Some(version) = meta
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str)
    else {
        return Err(fail(
            400,
            id,
            code::HEADER_MISMATCH,
            "params._meta must carry io.modelcontextprotocol/protocolVersion",
            None,
        ));
    };
    if version != STATELESS {
        let data = json!({"supported": [STATELESS], "requested": version});
        return Err(fail(
            400,
            id,
            code::UNSUPPORTED_VERSION,
            "unsupported MCP protocol version",
            Some(data),
        ));
    }
    if headers.protocol_version.as_deref() != Some(version) {
        return Err(fail(
            400,
            id,
            code::HEADER_MISMATCH,
            "MCP-Protocol-Version does not match params._meta",
            None,
        ));
    }
    if headers.mcp_method.as_deref() != Some(method.as_str()) {
        return Err(fail(
            400,
            id,
            code::HEADER_MISMATCH,
            "Mcp-Method does not match the request's method",
            None,
        ));
    }
    if !meta
        .and_then(|m| m.get(META_CAPS))
        .is_some_and(Value::is_object)
    {
        return Err(fail(
            400,
            id,
            code::INVALID_PARAMS,
            "params._meta must carry io.modelcontextprotocol/clientCapabilities",
            None,
        ));
    }
    let mut result = match method.as_str() {
        "server/discover" => json!({
            "supportedVersions": [STATELESS],
            "capabilities": {"tools": {}},
            "serverInfo": plan.server_info,
            "ttlMs": 0,
            "cacheScope": "private",
        }),
        "tools/list" => {
            json!({"tools": list(config, headers), "ttlMs": 0, "cacheScope": "private"})
        }
        "tools/call" => {
            let name = params
                .as_ref()
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str);
            if headers.mcp_name.as_deref() != name {
                return Err(fail(
                    400,
                    id,
                    code::HEADER_MISMATCH,
                    "Mcp-Name does not match params.name",
                    None,
                ));
            }
            match call(config, headers, params.as_ref(), plan) {
                Ok(()) => {
                    plan.waiting.push((0, id));
                    plan.slots.push(None);
                    return Ok(());
                }
                Err(CallError::Rpc(code, message)) => {
                    return Err(fail(400, id, code, &message, None))
                }
                Err(CallError::Result(output)) => output.to_mcp(),
            }
        }
        other => {
            return Err(fail(
                404,
                id,
                code::METHOD_NOT_FOUND,
                &format!("method not found: {other}"),
                None,
            ))
        }
    };
    stateless_result(&mut result, &plan.server_info);
    plan.slots.push(Some(rpc_result(id, result)));
    Ok(())
}

fn stateless_result(result: &mut Value, server_info: &Value) {
    if let Value::Object(m) = result {
        m.insert("resultType".into(), json!("complete"));
        let meta = m.entry("_meta").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            meta.insert(META_SERVER.into(), server_info.clone());
        }
    }
}

/// The tools this consumer may see.
fn list(config: &McpConfig, headers: &Headers) -> Vec<Value> {
    let consumer = headers.consumer.as_deref();
    config
        .toolset
        .tools
        .iter()
        .filter(|t| config.allowed(consumer, t.name()))
        .map(|t| t.to_mcp())
        .collect()
}

enum CallError {
    Rpc(i64, String),
    /// Answered without a call (a request that cannot be built).
    Result(ToolOutput),
}

/// Checks a `tools/call` and queues its outbound request.
fn call(
    config: &McpConfig,
    headers: &Headers,
    params: Option<&Value>,
    plan: &mut Plan,
) -> Result<(), CallError> {
    let empty = Map::new();
    let params = params.and_then(Value::as_object).unwrap_or(&empty);
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err(CallError::Rpc(
            code::INVALID_PARAMS,
            "tools/call needs params.name".into(),
        ));
    };
    plan.tools.push(name.to_string());
    // A tool the consumer may not use answers exactly as an unknown one: it is not revealed.
    let tool = config
        .toolset
        .get(name)
        .filter(|t| config.allowed(headers.consumer.as_deref(), t.name()))
        .ok_or_else(|| CallError::Rpc(code::INVALID_PARAMS, format!("Unknown tool: {name}")))?;
    let args = tool.validate(params.get("arguments")).map_err(|e| {
        plan.refused_calls.push(name.to_string());
        CallError::Rpc(
            code::INVALID_PARAMS,
            format!("invalid arguments for tool {name}: {e}"),
        )
    })?;
    let outbound = tool.request(&config.toolset.server, &args).map_err(|e| {
        CallError::Result(ToolOutput::error(format!(
            "cannot build the request of tool {name}: {e}"
        )))
    })?;
    plan.calls.push(Call {
        slot: 0,
        tool: name.to_string(),
        outbound,
        args,
    });
    Ok(())
}

impl Plan {
    /// Whether calls are still out.
    pub fn pending(&self) -> bool {
        self.waiting
            .iter()
            .any(|(slot, _)| self.slots.get(*slot).is_some_and(Option::is_none))
    }

    /// Fills a call's slot with its tool's answer.
    pub fn answer(&mut self, slot: usize, output: &ToolOutput) {
        let Some(id) = self
            .waiting
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, id)| id.clone())
        else {
            return;
        };
        let mut result = output.to_mcp();
        if self.stateless {
            stateless_result(&mut result, &self.server_info);
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(rpc_result(id, result));
        }
    }

    /// The HTTP answer once no call is out.
    pub fn reply(&self) -> Reply {
        let mut extra = Vec::new();
        if let Some(s) = &self.session {
            extra.push(("mcp-session-id".to_string(), s.clone()));
        }
        let answers: Vec<&Value> = self.slots.iter().flatten().collect();
        if answers.is_empty() {
            return Reply {
                status: 202,
                headers: extra,
                body: String::new(),
            };
        }
        if self.batch {
            let all = Value::Array(answers.into_iter().cloned().collect());
            return frame(200, &all, self.framing, &extra);
        }
        let status = if answers[0].get("error").is_some() {
            self.error_status
        } else {
            200
        };
        frame(status, answers[0], self.framing, &extra)
    }
}

#[cfg(test)]
pub(crate) mod tests;
