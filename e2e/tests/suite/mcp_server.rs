//! mcp-server through a real Envoy: the official MCP Python SDK over Streamable HTTP, the
//! stateless 2026-07-28 profile over raw HTTP, per-consumer tool access, REST calls through an
//! Envoy cluster to the test REST API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::rest::RestApi;
use e2e::{run_sdk_script, Gateway};
use serde_json::{json, Value};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const REST: &str = env!("CARGO_BIN_EXE_rest-api");

/// Higress `mcp-server` REST config on the `mcp` route; bob (key sk-demo-bob) may use only
/// get_weather.
const CONFIG: &str = r#"{"_rules_": [{"_match_route_": ["mcp"],
  "server": {"name": "weather-tools", "type": "rest", "config": {"apiKey": "rest-secret"}},
  "tools": [
    {"name": "get_weather", "description": "Current weather for a city",
     "args": [{"name": "location", "type": "string", "required": true, "description": "City name"},
              {"name": "unit", "type": "string", "enum": ["c", "f"], "default": "c"}],
     "requestTemplate": {"url": "http://rest-api/weather?city={{.args.location}}&unit={{.args.unit}}", "method": "GET",
                         "headers": [{"key": "x-api-key", "value": "{{.config.apiKey}}"}], "timeout": 2000},
     "responseTemplate": {"body": "Weather in {{.city}}: {{.temp}} {{.unit}}, {{.conditions}}"}},
    {"name": "get_forecast", "description": "Forecast for the next days",
     "args": [{"name": "city", "type": "string", "required": true},
              {"name": "days", "type": "integer", "required": true}],
     "requestTemplate": {"url": "http://rest-api/forecast", "method": "POST", "argsToJsonBody": true},
     "responseTemplate": {"body": "{{.city}}:{{range .days}} day {{.day}} {{.temp}};{{end}}"}}
  ],
  "consumers": [{"name": "bob", "allowTools": ["get_weather"]}]
}]}"#;

fn start() -> (Gateway, RestApi) {
    let rest = RestApi::start(REST).unwrap();
    let options = Options::plugin("mcp-server", CONFIG)
        .with_route("mcp", "/mcp")
        .with_cluster("rest-api", rest.port);
    (Gateway::start(MOCK, &options).unwrap(), rest)
}

/// The REST API's temperature for a city (its rule, `e2e/src/bin/rest-api.rs`).
fn temp(city: &str) -> i64 {
    i64::from(city.bytes().map(u32::from).sum::<u32>() % 30) - 5
}

fn sdk(gw: &Gateway, key: &str, calls: Value) -> Value {
    let url = format!("{}/mcp", gw.envoy.url());
    run_sdk_script("mcp_client.py", &[&url, key, &calls.to_string()])
        .unwrap_or_else(|e| panic!("{e}\nEnvoy log:\n{}", gw.envoy.log()))
}

fn names(out: &Value) -> Vec<&str> {
    out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

#[test]
fn official_sdk_lists_calls_and_is_refused_invalid_arguments() {
    let (gw, rest) = start();
    let out = sdk(
        &gw,
        "client-side-key",
        json!([
            {"tool": "get_weather", "arguments": {"location": "Paris"}},
            {"tool": "get_weather", "arguments": {}},
            {"tool": "get_forecast", "arguments": {"city": "Oslo", "days": 2}},
            {"tool": "no_such_tool", "arguments": {}}
        ]),
    );
    assert_eq!(out["server"], "weather-tools");
    assert!(["2025-03-26", "2025-06-18"].contains(&out["protocol"].as_str().unwrap()));
    assert!(out["session_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(names(&out), ["get_weather", "get_forecast"]);
    assert_eq!(
        out["tools"][0]["inputSchema"]["required"],
        json!(["location"])
    );
    assert_eq!(
        out["tools"][0]["inputSchema"]["properties"]["unit"]["enum"],
        json!(["c", "f"])
    );

    let calls = out["calls"].as_array().unwrap();
    // The REST answer, rendered by responseTemplate.
    assert_eq!(
        calls[0],
        json!({"ok": true, "isError": false, "text": format!("Weather in Paris: {} C, sunny", temp("Paris"))})
    );
    // A missing required argument: a JSON-RPC error, before any REST call.
    assert_eq!(calls[1]["ok"], false);
    assert_eq!(calls[1]["code"], -32602);
    assert!(
        calls[1]["error"].as_str().unwrap().contains("location"),
        "{calls:?}"
    );
    let t = temp("Oslo");
    assert_eq!(
        calls[2]["text"],
        format!("Oslo: day 1 {t}; day 2 {};", t + 1)
    );
    assert_eq!(calls[3]["code"], -32602);
    assert_eq!(calls[3]["error"], "Unknown tool: no_such_tool");

    // The REST API saw exactly the two valid calls, with the configured credential and none of
    // the client's.
    let seen = rest.requests().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["method"], "GET");
    assert_eq!(seen[0]["path"], "/weather");
    assert_eq!(seen[0]["query"], "city=Paris&unit=c");
    assert_eq!(seen[0]["headers"]["x-api-key"], "rest-secret");
    assert!(seen[0]["headers"].get("authorization").is_none());
    assert_eq!(seen[1]["method"], "POST");
    let body: Value = serde_json::from_str(seen[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"city": "Oslo", "days": 2}));
    // Nothing reached the LLM upstream.
    assert!(gw.mock.requests().unwrap().is_empty());

    // Per-tool metrics and the tool in the access log.
    let stat = |n: &str| gw.envoy.stat(&format!("wasmcustom.{n}")).unwrap();
    assert_eq!(stat("mcp_tool_calls_total.tool=.=get_weather;.;"), Some(2));
    assert_eq!(stat("mcp_tool_errors_total.tool=.=get_weather;.;"), Some(1));
    assert_eq!(stat("mcp_tool_calls_total.tool=.=get_forecast;.;"), Some(1));
    // initialize, initialized, ping, tools/list, four calls (and the SDK's GET and DELETE).
    let logs = gw.envoy.ai_logs(8);
    assert!(
        logs.iter()
            .any(|l| l["mcp_tool"] == "get_forecast" && l["consumer"] == "e2e"),
        "{logs:?}"
    );
}

#[test]
fn a_consumer_allowed_one_tool_sees_and_calls_only_that() {
    let (gw, rest) = start();
    let out = sdk(
        &gw,
        "sk-demo-bob",
        json!([
            {"tool": "get_forecast", "arguments": {"city": "Oslo", "days": 1}},
            {"tool": "get_weather", "arguments": {"location": "Rome", "unit": "f"}}
        ]),
    );
    assert_eq!(names(&out), ["get_weather"]);
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls[0]["ok"], false);
    assert_eq!(calls[0]["error"], "Unknown tool: get_forecast");
    let f = temp("Rome") * 9 / 5 + 32;
    assert_eq!(calls[1]["text"], format!("Weather in Rome: {f} F, sunny"));
    let seen = rest.requests().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["path"], "/weather");
}

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1.0.0"},
           "io.modelcontextprotocol/clientCapabilities": {}})
}

#[test]
fn stateless_profile_raw_requests() {
    let (gw, rest) = start();
    let post = |headers: &[(&str, &str)], body: &Value| {
        let mut all = headers.to_vec();
        for (k, v) in [
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
        ] {
            if !headers.iter().any(|(h, _)| *h == k) {
                all.push((k, v));
            }
        }
        gw.post("/mcp", &all, &body.to_string()).unwrap()
    };

    let discover = post(
        &[("mcp-method", "server/discover")],
        &json!({"jsonrpc": "2.0", "id": "d1", "method": "server/discover", "params": {"_meta": meta()}}),
    );
    assert_eq!(discover.status, 200, "{}", discover.body);
    assert!(discover.header("mcp-session-id").is_none());
    let v = discover.json().unwrap();
    assert_eq!(v["result"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(
        v["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "weather-tools"
    );

    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"_meta": meta(), "name": "get_weather", "arguments": {"location": "Hangzhou"}}});
    let r = post(
        &[("mcp-method", "tools/call"), ("mcp-name", "get_weather")],
        &call,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json().unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(v["result"]["isError"], false);
    assert_eq!(
        v["result"]["content"][0]["text"],
        format!("Weather in Hangzhou: {} C, sunny", temp("Hangzhou"))
    );

    // The answer as one SSE event when the client prefers the stream.
    let r = post(
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_weather"),
            ("accept", "text/event-stream"),
        ],
        &call,
    );
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let data = r.body.strip_prefix("event: message\ndata: ").unwrap();
    let v: Value = serde_json::from_str(data.trim_end()).unwrap();
    assert_eq!(v["id"], 7);

    // The REST API failing: a tool result with isError, not a protocol error.
    rest.fail_next(503, 1).unwrap();
    let r = post(
        &[("mcp-method", "tools/call"), ("mcp-name", "get_weather")],
        &call,
    );
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    assert_eq!(v["result"]["isError"], true);
    assert!(v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("503"));
    let before = rest.requests().unwrap().len();
    assert_eq!(before, 3);

    // Headers that disagree with the body, a missing argument, an unknown method: refused
    // before any REST call.
    let r = post(
        &[("mcp-method", "tools/call"), ("mcp-name", "get_forecast")],
        &call,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json().unwrap()["error"]["code"], -32020);
    let missing = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"_meta": meta(), "name": "get_weather", "arguments": {}}});
    let r = post(
        &[("mcp-method", "tools/call"), ("mcp-name", "get_weather")],
        &missing,
    );
    assert_eq!(r.json().unwrap()["error"]["code"], -32602);
    let r = post(
        &[("mcp-method", "prompts/list")],
        &json!({"jsonrpc": "2.0", "id": 9, "method": "prompts/list", "params": {"_meta": meta()}}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json().unwrap()["error"]["code"], -32601);
    assert_eq!(rest.requests().unwrap().len(), before);

    // A page of another site (DNS rebinding): refused.
    let r = post(
        &[
            ("mcp-method", "tools/list"),
            ("origin", "http://evil.example"),
        ],
        &json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list", "params": {"_meta": meta()}}),
    );
    assert_eq!(r.status, 403);

    // Not JSON; GET (no server stream).
    let r = gw.post("/mcp", &[], "{nope").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json().unwrap()["error"]["code"], -32700);
    let r = gw
        .client
        .get(
            &format!("{}/mcp", gw.envoy.url()),
            &[("accept", "text/event-stream")],
        )
        .unwrap();
    assert_eq!(r.status, 405);
    assert!(gw.mock.requests().unwrap().is_empty());
}
