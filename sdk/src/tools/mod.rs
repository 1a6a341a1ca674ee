//! Tools as config: Higress `mcp-server` REST tool definitions, their JSON Schemas, argument
//! validation, the outbound request rendered from `requestTemplate`, and the result rendered
//! from `responseTemplate`. Plugins that expose or run tools (mcp-server, ai-agent) share it.
//!
//! Outbound calls go to an Envoy cluster: `requestTemplate.cluster` (this gateway's key), else
//! `server.cluster`, else the URL's host name (an Envoy cluster named like the API's host,
//! `api.example.com`, the way Higress routes the call by its URL). Timeout:
//! `requestTemplate.timeout` (ms), else `server.timeout`, else 10 s. Credentials come from the
//! templates (`{{.config.apiKey}}`), never from the client's request.

pub mod gotmpl;
pub mod openapi;

use crate::config::{ConfigError, Validate};
use gotmpl::GoTemplate;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Default outbound timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `server`: the MCP server's identity and shared settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    /// Server name (`serverInfo.name`).
    pub name: String,
    /// `rest` (the only type served here).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `serverInfo.version` (default `1.0.0`).
    #[serde(default)]
    pub version: Option<String>,
    /// Values the templates read as `.config.*` (API keys, …).
    #[serde(default)]
    pub config: Value,
    /// Default Envoy cluster for the tools' calls.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Default timeout of the tools' calls, in ms.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// One argument of a REST tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolArg {
    /// Argument name.
    pub name: String,
    /// Description shown to the model.
    #[serde(default)]
    pub description: String,
    /// JSON Schema type (default `string`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Whether the argument must be given.
    #[serde(default)]
    pub required: bool,
    /// Value used when the argument is missing.
    #[serde(default)]
    pub default: Option<Value>,
    /// Allowed values.
    #[serde(default)]
    pub r#enum: Option<Vec<Value>>,
    /// Item schema of an array.
    #[serde(default)]
    pub items: Option<Value>,
    /// Properties of an object.
    #[serde(default)]
    pub properties: Option<Value>,
    /// Where the argument goes: `path`, `query`, `header`, `cookie`, `body`.
    #[serde(default)]
    pub position: Option<String>,
}

/// `key: value` header of a request template.
#[derive(Debug, Clone, Deserialize)]
pub struct HeaderTemplate {
    /// Header name.
    pub key: String,
    /// Value template.
    pub value: String,
}

/// `requestTemplate`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RequestTemplate {
    /// URL template.
    #[serde(default)]
    pub url: String,
    /// HTTP method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// Header templates.
    #[serde(default)]
    pub headers: Vec<HeaderTemplate>,
    /// Body template.
    #[serde(default)]
    pub body: Option<String>,
    /// The arguments as a JSON body.
    #[serde(default)]
    pub args_to_json_body: bool,
    /// The arguments as URL query parameters.
    #[serde(default)]
    pub args_to_url_param: bool,
    /// The arguments as a form body.
    #[serde(default)]
    pub args_to_form_body: bool,
    /// Envoy cluster of the call.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Timeout in ms.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// `responseTemplate`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResponseTemplate {
    /// Template over the JSON answer.
    #[serde(default)]
    pub body: Option<String>,
    /// Text before the raw answer (without `body`).
    #[serde(default)]
    pub prepend_body: Option<String>,
    /// Text after the raw answer (without `body`).
    #[serde(default)]
    pub append_body: Option<String>,
}

/// One REST tool as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestTool {
    /// Tool name.
    pub name: String,
    /// Description shown to the model.
    #[serde(default)]
    pub description: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<ToolArg>,
    /// How the call is made.
    #[serde(default)]
    pub request_template: RequestTemplate,
    /// How the answer is shown.
    #[serde(default)]
    pub response_template: ResponseTemplate,
    /// Template of the error text for a non-2xx answer (`_headers` holds the answer's headers).
    #[serde(default)]
    pub error_response_template: Option<String>,
    /// MCP `outputSchema`: the JSON answer also goes out as `structuredContent`.
    #[serde(default)]
    pub output_schema: Option<Value>,
}

/// A tool ready to call: its schema and parsed templates.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The definition.
    pub def: RestTool,
    /// `inputSchema`.
    pub schema: Value,
    url: GoTemplate,
    headers: Vec<(String, GoTemplate)>,
    body: Option<GoTemplate>,
    response: Option<GoTemplate>,
    error_response: Option<GoTemplate>,
    method: String,
    timeout: Option<Duration>,
}

/// What a tool call sends to its cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// Envoy cluster.
    pub cluster: String,
    /// Headers, pseudo-headers first.
    pub headers: Vec<(String, String)>,
    /// Body, if any.
    pub body: Option<Vec<u8>>,
    /// Timeout.
    pub timeout: Duration,
}

/// A tool's answer as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// Text content.
    pub text: String,
    /// The call failed.
    pub is_error: bool,
    /// The JSON answer, when the tool has an `outputSchema`.
    pub structured: Option<Value>,
}

impl ToolOutput {
    /// A failed call.
    pub fn error(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            text: text.into(),
            is_error: true,
            structured: None,
        }
    }

    /// The MCP `tools/call` result.
    pub fn to_mcp(&self) -> Value {
        let mut out = json!({
            "content": [{"type": "text", "text": self.text}],
            "isError": self.is_error,
        });
        if let Some(s) = &self.structured {
            out["structuredContent"] = s.clone();
        }
        out
    }
}

const TYPES: [&str; 7] = [
    "string", "number", "integer", "boolean", "array", "object", "null",
];
const POSITIONS: [&str; 5] = ["path", "query", "header", "cookie", "body"];

fn template(at: &str, src: &str) -> Result<GoTemplate, ConfigError> {
    GoTemplate::parse(src).map_err(|e| ConfigError::new(at, e))
}

impl Tool {
    /// Checks and compiles a definition (`at` is its config path, for errors).
    pub fn new(def: RestTool, at: &str) -> Result<Tool, ConfigError> {
        if def.name.is_empty() {
            return Err(ConfigError::new(format!("{at}.name"), "must not be empty"));
        }
        let rt = &def.request_template;
        let modes = [
            rt.args_to_json_body,
            rt.args_to_url_param,
            rt.args_to_form_body,
        ];
        if modes.iter().filter(|m| **m).count() > 1 {
            return Err(ConfigError::new(
                format!("{at}.requestTemplate"),
                "only one of argsToJsonBody, argsToUrlParam, argsToFormBody may be true",
            ));
        }
        if rt.body.is_some() && modes.iter().any(|m| *m) {
            return Err(ConfigError::new(
                format!("{at}.requestTemplate.body"),
                "a body template cannot be combined with argsToJsonBody/argsToUrlParam/argsToFormBody",
            ));
        }
        let mut seen = Vec::new();
        for (i, arg) in def.args.iter().enumerate() {
            let at = format!("{at}.args[{i}]");
            if arg.name.is_empty() || seen.contains(&&arg.name) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    "must be a non-empty name used once",
                ));
            }
            seen.push(&arg.name);
            if let Some(kind) = &arg.kind {
                if !TYPES.contains(&kind.as_str()) {
                    return Err(ConfigError::new(
                        format!("{at}.type"),
                        format!("unknown type `{kind}` (one of {})", TYPES.join(", ")),
                    ));
                }
            }
            if let Some(p) = &arg.position {
                if !POSITIONS.contains(&p.as_str()) {
                    return Err(ConfigError::new(
                        format!("{at}.position"),
                        format!("unknown position `{p}` (one of {})", POSITIONS.join(", ")),
                    ));
                }
            }
        }
        let method = rt
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_uppercase();
        let url = template(&format!("{at}.requestTemplate.url"), &rt.url)?;
        let headers = rt
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let at = format!("{at}.requestTemplate.headers[{i}].value");
                Ok((h.key.clone(), template(&at, &h.value)?))
            })
            .collect::<Result<_, ConfigError>>()?;
        let body = rt
            .body
            .as_deref()
            .map(|b| template(&format!("{at}.requestTemplate.body"), b))
            .transpose()?;
        let response = def
            .response_template
            .body
            .as_deref()
            .map(|b| template(&format!("{at}.responseTemplate.body"), b))
            .transpose()?;
        let error_response = def
            .error_response_template
            .as_deref()
            .map(|b| template(&format!("{at}.errorResponseTemplate"), b))
            .transpose()?;
        Ok(Tool {
            schema: input_schema(&def.args),
            timeout: rt.timeout.map(Duration::from_millis),
            def,
            url,
            headers,
            body,
            response,
            error_response,
            method,
        })
    }

    /// Tool name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The MCP `tools/list` entry.
    pub fn to_mcp(&self) -> Value {
        let mut out = json!({
            "name": self.def.name,
            "description": self.def.description,
            "inputSchema": self.schema,
        });
        if let Some(s) = &self.def.output_schema {
            out["outputSchema"] = s.clone();
        }
        out
    }

    /// Checks `arguments` against the schema; returns the declared arguments with defaults
    /// filled in, or what is wrong.
    pub fn validate(&self, arguments: Option<&Value>) -> Result<Map<String, Value>, String> {
        let given = match arguments {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err("`arguments` must be an object".into()),
        };
        let mut out = Map::new();
        for arg in &self.def.args {
            let value = match given.get(&arg.name) {
                Some(v) => v.clone(),
                None => match &arg.default {
                    Some(d) => d.clone(),
                    None if arg.required => {
                        return Err(format!("missing required argument `{}`", arg.name))
                    }
                    None => continue,
                },
            };
            let kind = arg.kind.as_deref().unwrap_or("string");
            check_type(&arg.name, kind, &value)?;
            if let Some(allowed) = &arg.r#enum {
                if !allowed.contains(&value) {
                    let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
                    return Err(format!(
                        "argument `{}` must be one of {}",
                        arg.name,
                        list.join(", ")
                    ));
                }
            }
            if let (Value::Array(items), Some(item_schema)) = (&value, &arg.items) {
                if let Some(k) = item_schema.get("type").and_then(Value::as_str) {
                    for (i, item) in items.iter().enumerate() {
                        check_type(&format!("{}[{i}]", arg.name), k, item)?;
                    }
                }
            }
            out.insert(arg.name.clone(), value);
        }
        Ok(out)
    }

    /// The outbound request for validated `args`; `server` supplies `.config` and defaults.
    pub fn request(
        &self,
        server: &ServerConfig,
        args: &Map<String, Value>,
    ) -> Result<Outbound, String> {
        let cfg = &server.config;
        if self.def.request_template.url.is_empty() {
            return Err("the tool has no requestTemplate.url".into());
        }
        let url = self.url.render_request(args, cfg)?;
        let mut url = Url::parse(url.trim())?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for (k, t) in &self.headers {
            headers.push((k.to_ascii_lowercase(), t.render_request(args, cfg)?));
        }
        let position = |name: &str| {
            self.def
                .args
                .iter()
                .find(|a| a.name == name)
                .and_then(|a| a.position.as_deref())
        };
        let mut loose = Map::new();
        let mut body_args = Map::new();
        for (name, value) in args {
            let text = gotmpl::to_text(value);
            match position(name) {
                Some("path") => {
                    url.path = url
                        .path
                        .replace(&format!("%7B{name}%7D"), &encode(&text, true))
                }
                Some("query") => url.set_query(name, &text),
                Some("header") => headers.push((name.to_ascii_lowercase(), text)),
                Some("cookie") => {
                    let cookie = format!("{name}={text}");
                    match headers.iter_mut().find(|(k, _)| k == "cookie") {
                        Some((_, v)) => *v = format!("{v}; {cookie}"),
                        None => headers.push(("cookie".into(), cookie)),
                    }
                }
                Some("body") => {
                    body_args.insert(name.clone(), value.clone());
                }
                _ => {
                    loose.insert(name.clone(), value.clone());
                }
            }
        }
        let rt = &self.def.request_template;
        if rt.args_to_url_param {
            for (name, value) in &loose {
                url.set_query(name, &gotmpl::to_text(value));
            }
        }
        let has_type = |h: &[(String, String)], t: &str| {
            h.iter()
                .any(|(k, v)| k == "content-type" && v.to_ascii_lowercase().contains(t))
        };
        let mut body = None;
        let mut content_type = None;
        if let Some(t) = &self.body {
            let text = t.render_request(args, cfg)?;
            if serde_json::from_str::<Value>(text.trim())
                .is_ok_and(|v| v.is_object() || v.is_array())
            {
                content_type = Some("application/json; charset=utf-8");
            }
            body = Some(text.into_bytes());
        } else if rt.args_to_json_body
            || (!body_args.is_empty()
                && !rt.args_to_form_body
                && !has_type(&headers, "application/x-www-form-urlencoded"))
        {
            let mut all = body_args.clone();
            if rt.args_to_json_body {
                all.extend(loose.clone());
            }
            body = Some(Value::Object(all).to_string().into_bytes());
            content_type = Some("application/json; charset=utf-8");
        } else if rt.args_to_form_body || !body_args.is_empty() {
            let mut all = body_args.clone();
            if rt.args_to_form_body {
                all.extend(loose.clone());
            }
            let form: Vec<String> = all
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k, true), encode(&gotmpl::to_text(v), true)))
                .collect();
            body = Some(form.join("&").into_bytes());
            content_type = Some("application/x-www-form-urlencoded");
        }
        if let Some(ct) = content_type {
            if !headers.iter().any(|(k, _)| k == "content-type") {
                headers.push(("content-type".into(), ct.into()));
            }
        }
        if !headers.iter().any(|(k, _)| k == "accept") {
            headers.push(("accept".into(), "*/*".into()));
        }
        let cluster = rt
            .cluster
            .clone()
            .or_else(|| server.cluster.clone())
            .or_else(|| url.host_name())
            .ok_or("the URL names no host and no cluster is configured")?;
        let authority = url.authority.clone().unwrap_or_else(|| cluster.clone());
        let mut all = vec![
            (":method".to_string(), self.method.clone()),
            (":path".to_string(), url.path_and_query()),
            (":authority".to_string(), authority),
        ];
        headers.retain(|(k, _)| !k.starts_with(':') && k != "host" && k != "content-length");
        all.extend(headers);
        let timeout = self
            .timeout
            .or(server.timeout.map(Duration::from_millis))
            .unwrap_or(DEFAULT_TIMEOUT);
        Ok(Outbound {
            cluster,
            headers: all,
            body,
            timeout,
        })
    }

    /// The answer rendered for the client: `status` and `headers` of the REST answer, its body;
    /// the templates also see the call's arguments as `.args` (unless the answer has `args`).
    pub fn response(
        &self,
        status: u32,
        headers: &[(String, String)],
        body: &[u8],
        args: &Map<String, Value>,
    ) -> ToolOutput {
        let text = String::from_utf8_lossy(body);
        let json: Option<Value> = serde_json::from_slice(body).ok();
        if !(200..300).contains(&status) {
            if let Some(t) = &self.error_response {
                let mut data = with_args(json.clone(), args);
                let h: Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                data["_headers"] = Value::Object(h);
                match t.render(&data) {
                    Ok(s) if !s.is_empty() => return ToolOutput::error(s),
                    Ok(_) => {}
                    Err(e) => {
                        return ToolOutput::error(format!(
                            "error executing error response template: {e}"
                        ))
                    }
                }
            }
            return ToolOutput::error(format!("call failed, status: {status}, response: {text}"));
        }
        let rendered = match &self.response {
            Some(t) => match t.render(&with_args(json.clone(), args)) {
                Ok(s) => s,
                Err(e) => {
                    return ToolOutput::error(format!("error executing response template: {e}"))
                }
            },
            None => {
                let rt = &self.def.response_template;
                format!(
                    "{}{text}{}",
                    rt.prepend_body.as_deref().unwrap_or_default(),
                    rt.append_body.as_deref().unwrap_or_default()
                )
            }
        };
        ToolOutput {
            text: if rendered.is_empty() {
                "success".into()
            } else {
                rendered
            },
            is_error: false,
            structured: self.def.output_schema.as_ref().and(json),
        }
    }
}

/// The data a response template sees: the JSON answer, with `args` added to an object answer
/// that has none (an answer that is no object is reached as `.body`).
fn with_args(json: Option<Value>, args: &Map<String, Value>) -> Value {
    let mut data = match json {
        Some(Value::Object(m)) => m,
        Some(other) => Map::from_iter([("body".to_string(), other)]),
        None => Map::new(),
    };
    data.entry("args")
        .or_insert_with(|| Value::Object(args.clone()));
    Value::Object(data)
}

fn check_type(name: &str, kind: &str, value: &Value) -> Result<(), String> {
    let ok = match kind {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("argument `{name}` must be of type {kind}"))
    }
}

/// The JSON Schema of a tool's arguments, as Higress derives it.
pub fn input_schema(args: &[ToolArg]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for arg in args {
        let kind = arg.kind.as_deref().unwrap_or("string");
        let mut p = json!({"type": kind, "description": arg.description});
        if let Some(e) = &arg.r#enum {
            p["enum"] = Value::Array(e.clone());
        }
        if let Some(d) = &arg.default {
            p["default"] = d.clone();
        }
        if let (Some(items), "array") = (&arg.items, kind) {
            p["items"] = items.clone();
        }
        if let (Some(props), "object") = (&arg.properties, kind) {
            p["properties"] = props.clone();
        }
        props.insert(arg.name.clone(), p);
        if arg.required {
            required.push(Value::String(arg.name.clone()));
        }
    }
    let mut schema = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    schema
}

/// Percent-encodes what may not stand in a URL; `strict` also encodes `/?&=#+` and spaces
/// become `%20` either way.
fn encode(s: &str, strict: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || b"-_.~".contains(&b)
            || (!strict && b"!$'()*,;:@/?&=+%".contains(&b));
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A rendered URL, split as the callout needs it.
#[derive(Debug, Clone, PartialEq)]
struct Url {
    authority: Option<String>,
    path: String,
    query: Vec<(String, String)>,
}

impl Url {
    fn parse(text: &str) -> Result<Url, String> {
        let (authority, rest) = match text.split_once("://") {
            Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
                let end = rest.find(['/', '?']).unwrap_or(rest.len());
                let auth = &rest[..end];
                if auth.is_empty() {
                    return Err(format!("URL `{text}` has no host"));
                }
                (Some(auth.to_string()), &rest[end..])
            }
            Some((scheme, _)) => return Err(format!("URL scheme `{scheme}` is not http(s)")),
            None if text.starts_with('/') => (None, text),
            None => return Err(format!("URL `{text}` is neither absolute nor a path")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = if path.is_empty() { "/" } else { path };
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Ok(Url {
            authority,
            path: encode(path, false),
            query,
        })
    }

    fn host_name(&self) -> Option<String> {
        let auth = self.authority.as_deref()?;
        let host = auth.rsplit_once(':').map_or(auth, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                auth
            }
        });
        Some(host.to_string())
    }

    /// Sets a query parameter (raw value; encoded on output).
    fn set_query(&mut self, name: &str, value: &str) {
        let value = encode(value, true);
        let key = encode(name, true);
        match self.query.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.query.push((key, value)),
        }
    }

    fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let q: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
            .collect();
        format!("{}?{}", self.path, q.join("&"))
    }
}

/// `server` + `tools` of a Higress `mcp-server` REST config, compiled.
#[derive(Debug, Clone, Default)]
pub struct ToolSet {
    /// The server settings.
    pub server: ServerConfig,
    /// Tools in config order.
    pub tools: Vec<Tool>,
}

impl ToolSet {
    /// Compiles `tools` (config path `tools`).
    pub fn new(server: ServerConfig, defs: Vec<RestTool>) -> Result<ToolSet, ConfigError> {
        if let Some(kind) = &server.kind {
            if kind != "rest" {
                return Err(ConfigError::new(
                    "server.type",
                    format!("`{kind}` is not served here (only `rest`)"),
                ));
            }
        }
        let mut tools: Vec<Tool> = Vec::new();
        for (i, def) in defs.into_iter().enumerate() {
            let at = format!("tools[{i}]");
            if tools.iter().any(|t| t.def.name == def.name) {
                return Err(ConfigError::new(format!("{at}.name"), "is used twice"));
            }
            tools.push(Tool::new(def, &at)?);
        }
        Ok(ToolSet { server, tools })
    }

    /// What loads but cannot work: tools without a `requestTemplate.url`.
    pub fn warnings(&self) -> Vec<String> {
        self.tools
            .iter()
            .filter(|t| t.def.request_template.url.is_empty())
            .map(|t| {
                format!(
                    "tool `{}` has no requestTemplate.url: calls to it fail",
                    t.name()
                )
            })
            .collect()
    }

    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.def.name == name)
    }
}

impl Validate for ServerConfig {}

#[cfg(test)]
mod tests;
