//! Tools from an OpenAPI 3 document, as Higress's `ai-agent` takes them (`apis[]`: an
//! `apiProvider` and the OpenAPI `api` text, YAML or JSON): each operation becomes a REST tool
//! named by its `operationId`; its parameters (`query`, `path`, `header`, `cookie`) and the
//! properties of an `application/json` request body become the tool's arguments.
//!
//! The call goes to `apiProvider.cluster` (this gateway's key), else Higress's cluster name
//! `outbound|<servicePort>||<serviceName>`, with `:authority` `domain`; `apiKey`
//! (`in: header|query`, `name`, `value`) is added to every call; `maxExecutionTime` (ms, default
//! 50000) is the timeout.

use super::{HeaderTemplate, RequestTemplate, RestTool, Tool, ToolArg};
use crate::config::ConfigError;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `apiProvider.apiKey`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ApiKey {
    /// `header`, `query` or `none`.
    #[serde(default, rename = "in")]
    pub location: Option<String>,
    /// Header or query parameter name.
    #[serde(default)]
    pub name: String,
    /// The credential.
    #[serde(default)]
    pub value: String,
}

/// `apiProvider`: where an OpenAPI document's operations are called.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApiProvider {
    /// `:authority` of the calls.
    #[serde(default)]
    pub domain: String,
    /// Service name (Higress cluster `outbound|<port>||<name>`).
    #[serde(default)]
    pub service_name: String,
    /// Service port.
    #[serde(default)]
    pub service_port: u16,
    /// Envoy cluster (overrides the Higress-style name).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Credential added to every call.
    #[serde(default)]
    pub api_key: Option<ApiKey>,
    /// Timeout of a call, ms.
    #[serde(default)]
    pub max_execution_time: Option<u64>,
}

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// A literal inside a template (JSON string syntax is the template's string literal).
fn literal(text: &str) -> String {
    if text.contains("{{") {
        format!("{{{{{}}}}}", Value::String(text.to_string()))
    } else {
        text.to_string()
    }
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..8 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        let path: Vec<String> = r
            .trim_start_matches("#/")
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        match super::gotmpl::lookup(doc, &path) {
            Some(target) => v = target,
            None => return v,
        }
    }
    v
}

fn arg_from_schema(
    doc: &Value,
    name: &str,
    schema: &Value,
    required: bool,
    description: Option<&str>,
    position: &str,
) -> ToolArg {
    let schema = resolve(doc, schema);
    let text = |k: &str| schema.get(k).and_then(Value::as_str).map(str::to_string);
    ToolArg {
        name: name.to_string(),
        description: description
            .map(str::to_string)
            .or_else(|| text("description"))
            .unwrap_or_default(),
        kind: text("type").filter(|t| super::TYPES.contains(&t.as_str())),
        required,
        default: schema.get("default").cloned(),
        r#enum: schema.get("enum").and_then(Value::as_array).cloned(),
        items: schema.get("items").map(|i| resolve(doc, i).clone()),
        properties: schema.get("properties").cloned(),
        position: Some(position.to_string()),
    }
}

/// The tools of an OpenAPI document (text, YAML or JSON) called through `provider`.
pub fn openapi_tools(api: &str, provider: &ApiProvider) -> Result<Vec<Tool>, ConfigError> {
    let doc: Value = match serde_json::from_str(api) {
        Ok(v) => v,
        Err(_) => serde_norway::from_str(api).map_err(|e| {
            ConfigError::new(
                "api",
                format!("not an OpenAPI document (YAML or JSON): {e}"),
            )
        })?,
    };
    openapi_tools_from(&doc, provider)
}

/// The tools of a parsed OpenAPI document.
pub fn openapi_tools_from(doc: &Value, provider: &ApiProvider) -> Result<Vec<Tool>, ConfigError> {
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Err(ConfigError::new(
            "api.paths",
            "the OpenAPI document has no paths",
        ));
    };
    let cluster = match (&provider.cluster, provider.service_name.is_empty()) {
        (Some(c), _) => c.clone(),
        (None, false) => format!(
            "outbound|{}||{}",
            provider.service_port, provider.service_name
        ),
        (None, true) => {
            return Err(ConfigError::new(
                "apiProvider.serviceName",
                "needs serviceName and servicePort (or cluster)",
            ))
        }
    };
    // The server URL's path is the base of every operation's path.
    let base = doc
        .pointer("/servers/0/url")
        .and_then(Value::as_str)
        .map(|u| {
            let after = u.split_once("://").map_or(u, |(_, rest)| rest);
            after
                .find('/')
                .map_or("", |i| &after[i..])
                .trim_end_matches('/')
                .to_string()
        })
        .unwrap_or_default();
    let authority = if provider.domain.is_empty() {
        cluster.clone()
    } else {
        provider.domain.clone()
    };
    let mut tools = Vec::new();
    for (path, item) in paths {
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let at = format!("api.paths.{path}.{method}");
            let name = op
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    let slug: String = path
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    format!("{method}{}", slug.trim_end_matches('_'))
                });
            let mut args: Vec<ToolArg> = Vec::new();
            let params = shared.iter().chain(
                op.get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            );
            for p in params {
                let p = resolve(doc, p);
                let (Some(pname), Some(location)) = (
                    p.get("name").and_then(Value::as_str),
                    p.get("in").and_then(Value::as_str),
                ) else {
                    return Err(ConfigError::new(
                        format!("{at}.parameters"),
                        "a parameter needs `name` and `in`",
                    ));
                };
                let required = p
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(location == "path");
                let schema = p
                    .get("schema")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                let arg = arg_from_schema(
                    doc,
                    pname,
                    &schema,
                    required,
                    p.get("description").and_then(Value::as_str),
                    location,
                );
                args.retain(|a| a.name != arg.name);
                args.push(arg);
            }
            if let Some(body) = op.get("requestBody").map(|b| resolve(doc, b)) {
                let schema = body
                    .pointer("/content/application~1json/schema")
                    .map(|s| resolve(doc, s));
                if let Some(props) = schema
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                {
                    let required: Vec<&str> = schema
                        .and_then(|s| s.get("required"))
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    for (pname, pschema) in props {
                        args.push(arg_from_schema(
                            doc,
                            pname,
                            pschema,
                            required.contains(&pname.as_str()),
                            None,
                            "body",
                        ));
                    }
                }
            }
            let mut url = format!("http://{authority}{base}{path}");
            let mut headers = Vec::new();
            if let Some(key) = &provider.api_key {
                match key.location.as_deref() {
                    Some("header") => headers.push(HeaderTemplate {
                        key: key.name.clone(),
                        value: literal(&key.value),
                    }),
                    Some("query") => {
                        url.push_str(&format!("?{}={}", key.name, literal(&key.value)))
                    }
                    _ => {}
                }
            }
            let description = op
                .get("description")
                .or_else(|| op.get("summary"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let def = RestTool {
                name,
                description,
                args,
                request_template: RequestTemplate {
                    url,
                    method: Some(method.to_uppercase()),
                    headers,
                    cluster: Some(cluster.clone()),
                    timeout: Some(provider.max_execution_time.unwrap_or(50_000)),
                    ..RequestTemplate::default()
                },
                response_template: Default::default(),
                error_response_template: None,
                output_schema: None,
            };
            if tools.iter().any(|t: &Tool| t.def.name == def.name) {
                return Err(ConfigError::new(
                    format!("{at}.operationId"),
                    format!("`{}` is used twice", def.name),
                ));
            }
            tools.push(Tool::new(def, &at)?);
        }
    }
    Ok(tools)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tools::ServerConfig;
    use serde_json::json;

    const AMAP: &str = r#"
openapi: 3.1.0
info: {title: Amap, version: v1.0.0}
servers:
  - url: https://restapi.amap.com/api
paths:
  /v5/place/text:
    get:
      description: Get coordinates of a POI
      operationId: get_location_coordinate
      parameters:
        - name: keywords
          in: query
          description: POI name
          required: true
          schema: {type: string}
        - $ref: '#/components/parameters/Region'
  /items/{id}:
    post:
      summary: Update an item
      parameters:
        - {name: id, in: path, schema: {type: integer}}
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Item'}
components:
  parameters:
    Region: {name: region, in: query, schema: {type: string, enum: [north, south]}}
  schemas:
    Item:
      type: object
      required: [title]
      properties:
        title: {type: string}
        tags: {type: array, items: {type: string}}
"#;

    fn provider() -> ApiProvider {
        serde_json::from_value(
            json!({"domain": "restapi.amap.com", "serviceName": "geo.dns", "servicePort": 80,
            "apiKey": {"in": "query", "name": "key", "value": "k-1"}, "maxExecutionTime": 3000}),
        )
        .unwrap()
    }

    #[test]
    fn operations_become_tools() {
        let tools = openapi_tools(AMAP, &provider()).unwrap();
        let names: Vec<&str> = tools.iter().map(Tool::name).collect();
        assert_eq!(names, ["get_location_coordinate", "post_items__id"]);
        let t = &tools[0];
        assert_eq!(t.def.description, "Get coordinates of a POI");
        assert_eq!(t.schema["required"], json!(["keywords"]));
        assert_eq!(
            t.schema["properties"]["region"]["enum"],
            json!(["north", "south"])
        );
        let args = t
            .validate(Some(&json!({"keywords": "西湖", "region": "north"})))
            .unwrap();
        let out = t.request(&ServerConfig::default(), &args).unwrap();
        assert_eq!(out.cluster, "outbound|80||geo.dns");
        assert_eq!(out.timeout, std::time::Duration::from_millis(3000));
        assert_eq!(out.headers[0].1, "GET");
        assert_eq!(
            out.headers[1].1,
            "/api/v5/place/text?key=k-1&keywords=%E8%A5%BF%E6%B9%96&region=north"
        );
        assert_eq!(out.headers[2].1, "restapi.amap.com");

        let t = &tools[1];
        assert_eq!(t.schema["required"], json!(["id", "title"]));
        assert!(t.validate(Some(&json!({"id": 3}))).is_err());
        let args = t
            .validate(Some(&json!({"id": 3, "title": "x", "tags": ["a"]})))
            .unwrap();
        let out = t.request(&ServerConfig::default(), &args).unwrap();
        assert_eq!(out.headers[1].1, "/api/items/3?key=k-1");
        let body: Value = serde_json::from_slice(out.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, json!({"title": "x", "tags": ["a"]}));
    }

    #[test]
    fn header_keys_json_documents_and_errors() {
        let doc =
            json!({"openapi": "3.0.0", "paths": {"/w": {"get": {"operationId": "w"}}}}).to_string();
        let p: ApiProvider = serde_json::from_value(json!({"domain": "d", "cluster": "c",
            "apiKey": {"in": "header", "name": "x-key", "value": "{{secret}}"}}))
        .unwrap();
        let tools = openapi_tools(&doc, &p).unwrap();
        let out = tools[0]
            .request(&ServerConfig::default(), &Map::new())
            .unwrap();
        assert_eq!(out.cluster, "c");
        assert!(out.headers.contains(&("x-key".into(), "{{secret}}".into())));
        assert_eq!(openapi_tools("a: [", &p).unwrap_err().path, "api");
        assert_eq!(openapi_tools("{}", &p).unwrap_err().path, "api.paths");
        assert_eq!(
            openapi_tools(&doc, &ApiProvider::default())
                .unwrap_err()
                .path,
            "apiProvider.serviceName"
        );
    }
}
