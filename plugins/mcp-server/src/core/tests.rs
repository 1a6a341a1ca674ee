#![allow(clippy::unwrap_used)]

use super::*;
use crate::McpServer;
use sdk::shell::Plugin;

pub(crate) const CONFIG: &str = r#"{
  "server": {"name": "weather", "type": "rest", "config": {"apiKey": "secret-key"}},
  "tools": [
    {"name": "get_weather", "description": "Weather for a city",
     "args": [{"name": "location", "type": "string", "required": true, "description": "City"}],
     "requestTemplate": {"url": "http://rest-api/weather?city={{.args.location}}", "method": "GET",
                         "headers": [{"key": "x-api-key", "value": "{{.config.apiKey}}"}]},
     "responseTemplate": {"body": "{{.city}}: {{.temp}} C"}},
    {"name": "get_forecast", "args": [{"name": "days", "type": "integer", "required": true}],
     "requestTemplate": {"url": "http://rest-api/forecast", "method": "POST", "argsToJsonBody": true}}
  ],
  "consumers": [{"name": "bob", "allowTools": ["get_weather"]}]
}"#;

pub(crate) fn config() -> std::rc::Rc<McpConfig> {
    let (set, warnings) = McpServer::parse_config(CONFIG.as_bytes()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    set.global.unwrap()
}

fn headers() -> Headers {
    Headers {
        content_type: Some("application/json".into()),
        accept: Some("application/json, text/event-stream".into()),
        ..Headers::default()
    }
}

fn run(h: &Headers, body: Value) -> Result<Plan, Reply> {
    let mut n = 0;
    let mut ids = || {
        n += 1;
        format!("s{n}")
    };
    plan(&config(), h, Some(&body), &mut ids)
}

fn answer(h: &Headers, body: Value) -> (u32, Value, Vec<(String, String)>) {
    let reply = match run(h, body) {
        Ok(p) => {
            assert!(!p.pending());
            p.reply()
        }
        Err(r) => r,
    };
    let v = if reply.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&reply.body).unwrap()
    };
    (reply.status, v, reply.headers)
}

#[test]
fn session_profile_initialize_list_ping_notifications() {
    let (status, v, got) = answer(
        &headers(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    assert_eq!(status, 200);
    assert_eq!(v["result"]["protocolVersion"], "2025-03-26");
    assert_eq!(
        v["result"]["serverInfo"],
        json!({"name": "weather", "version": "1.0.0"})
    );
    assert!(v["result"]["capabilities"]["tools"].is_object());
    assert!(got.contains(&("mcp-session-id".into(), "s1".into())));
    // An unknown version gets the newest session version.
    let (_, v, _) = answer(
        &headers(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "1999-01-01"}}),
    );
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18");

    let (status, v, _) = answer(
        &headers(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!((status, v), (202, Value::Null));
    let (_, v, _) = answer(
        &headers(),
        json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}),
    );
    assert_eq!(v, json!({"jsonrpc": "2.0", "id": "p", "result": {}}));
    let (_, v, _) = answer(
        &headers(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "get_forecast"]);
    assert_eq!(
        v["result"]["tools"][0]["inputSchema"]["required"],
        json!(["location"])
    );
}

#[test]
fn json_rpc_errors() {
    let h = headers();
    let (status, v, _) = answer(
        &h,
        json!({"jsonrpc": "2.0", "id": 3, "method": "resources/list"}),
    );
    assert_eq!(
        (status, v["error"]["code"].as_i64()),
        (200, Some(code::METHOD_NOT_FOUND))
    );
    let (status, v, _) = answer(&h, json!({"id": 3, "method": "ping"}));
    assert_eq!(
        (status, v["error"]["code"].as_i64()),
        (400, Some(code::INVALID_REQUEST))
    );
    let (_, v, _) = answer(
        &h,
        json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}),
    );
    assert_eq!(v["error"]["code"], code::INVALID_REQUEST);
    assert_eq!(v["id"], Value::Null);
    let (_, v, _) = answer(
        &h,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope"}}),
    );
    assert_eq!(v["error"]["code"], code::INVALID_PARAMS);
    assert_eq!(v["error"]["message"], "Unknown tool: nope");
    let (_, v, _) = answer(
        &h,
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "get_weather", "arguments": {}}}),
    );
    assert_eq!(v["error"]["code"], code::INVALID_PARAMS);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing required argument `location`"));
    let plan = run(&h, json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "get_forecast", "arguments": {"days": "x"}}})).unwrap();
    assert!(plan.calls.is_empty());
    assert_eq!(plan.refused_calls, ["get_forecast"]);
    // Not JSON, wrong media types.
    let mut ids = || String::new();
    let r = plan_err(plan_with(&h, None, &mut ids));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("-32700"));
    let mut bad = headers();
    bad.content_type = Some("text/plain".into());
    assert_eq!(run(&bad, json!({})).unwrap_err().status, 415);
    let mut bad = headers();
    bad.accept = Some("text/html".into());
    assert_eq!(run(&bad, json!({})).unwrap_err().status, 406);
    // Another site's page: refused; the gateway's own origin, or none, is served.
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let mut h = headers();
    h.authority = "gw.example.com".into();
    h.origin = Some("https://evil.example".into());
    assert_eq!(run(&h, ping.clone()).unwrap_err().status, 403);
    h.origin = Some("https://gw.example.com".into());
    assert!(run(&h, ping).is_ok());
}

fn plan_with(h: &Headers, body: Option<&Value>, ids: SessionIds<'_>) -> Result<Plan, Reply> {
    plan(&config(), h, body, ids)
}

fn plan_err(r: Result<Plan, Reply>) -> Reply {
    match r {
        Ok(_) => panic!("expected an error reply"),
        Err(r) => r,
    }
}

#[test]
fn tools_call_plans_the_rest_request_and_renders_its_answer() {
    let mut plan = run(
        &headers(),
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "get_weather", "arguments": {"location": "Paris"}}}),
    )
    .unwrap();
    assert_eq!(plan.calls.len(), 1);
    let call = plan.calls[0].clone();
    assert_eq!(call.outbound.cluster, "rest-api");
    assert!(call
        .outbound
        .headers
        .contains(&(":path".into(), "/weather?city=Paris".into())));
    assert!(call
        .outbound
        .headers
        .contains(&("x-api-key".into(), "secret-key".into())));
    assert!(plan.pending());
    let tool = config().toolset.get("get_weather").unwrap().clone();
    plan.answer(
        call.slot,
        &tool.response(200, &[], br#"{"city":"Paris","temp":21}"#, &Map::new()),
    );
    assert!(!plan.pending());
    let reply = plan.reply();
    let v: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(
        v["result"],
        json!({"content": [{"type": "text", "text": "Paris: 21 C"}], "isError": false})
    );
    // An upstream failure is a tool result with isError.
    let mut plan = run(
        &headers(),
        json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "get_weather", "arguments": {"location": "Paris"}}}),
    )
    .unwrap();
    plan.answer(0, &tool.response(500, &[], b"boom", &Map::new()));
    let v: Value = serde_json::from_str(&plan.reply().body).unwrap();
    assert_eq!(v["result"]["isError"], true);
}

#[test]
fn consumers_see_and_call_only_their_tools() {
    let mut h = headers();
    h.consumer = Some("bob".into());
    let (_, v, _) = answer(
        &h,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
    assert_eq!(v["result"]["tools"][0]["name"], "get_weather");
    let (_, v, _) = answer(
        &h,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_forecast", "arguments": {"days": 1}}}),
    );
    assert_eq!(v["error"]["message"], "Unknown tool: get_forecast");
    h.consumer = Some("ann".into());
    let (_, v, _) = answer(
        &h,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 2);
}

#[test]
fn batches_per_version_and_sse_framing() {
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_weather", "arguments": {"location": "Rome"}}}
    ]);
    let mut plan = run(&headers(), batch.clone()).unwrap();
    let slot = plan.calls[0].slot;
    plan.answer(slot, &ToolOutput::error("x"));
    let v: Value = serde_json::from_str(&plan.reply().body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["id"], 2);
    let mut h = headers();
    h.protocol_version = Some("2025-06-18".into());
    assert_eq!(run(&h, batch).unwrap_err().status, 400);
    h.protocol_version = Some("2099-01-01".into());
    assert_eq!(
        run(&h, json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .unwrap_err()
            .status,
        400
    );

    let mut h = headers();
    h.accept = Some("text/event-stream, application/json".into());
    let reply = run(&h, json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .unwrap()
        .reply();
    assert_eq!(reply.headers[0].1, "text/event-stream");
    assert_eq!(
        reply.body,
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
    );
}

fn stateless(method: &str, name: Option<&str>) -> Headers {
    let mut h = headers();
    h.protocol_version = Some(STATELESS.into());
    h.mcp_method = Some(method.into());
    h.mcp_name = name.map(str::to_string);
    h
}

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": STATELESS,
           "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"},
           "io.modelcontextprotocol/clientCapabilities": {}})
}

#[test]
fn stateless_profile() {
    let (status, v, got) = answer(
        &stateless("server/discover", None),
        json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": meta()}}),
    );
    assert_eq!(status, 200);
    assert!(!got.iter().any(|(k, _)| k == "mcp-session-id"));
    let r = &v["result"];
    assert_eq!(r["supportedVersions"], json!([STATELESS]));
    assert_eq!(r["resultType"], "complete");
    assert_eq!(r["capabilities"], json!({"tools": {}}));
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "weather"
    );
    assert_eq!(
        (r["ttlMs"].as_u64(), r["cacheScope"].as_str()),
        (Some(0), Some("private"))
    );

    let (_, v, _) = answer(
        &stateless("tools/list", None),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}}),
    );
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 2);
    assert_eq!(v["result"]["resultType"], "complete");

    let mut plan = run(&stateless("tools/call", Some("get_weather")),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"_meta": meta(), "name": "get_weather", "arguments": {"location": "Oslo"}}})).unwrap();
    plan.answer(
        0,
        &ToolOutput {
            text: "ok".into(),
            is_error: false,
            structured: None,
        },
    );
    let v: Value = serde_json::from_str(&plan.reply().body).unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "ok");
    assert_eq!(v["result"]["resultType"], "complete");

    // Headers that disagree with the body, versions, batches, unknown methods.
    let call = |h: &Headers, body: Value| run(h, body).unwrap_err();
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"_meta": meta(), "name": "get_weather", "arguments": {"location": "Oslo"}}});
    let e = call(&stateless("tools/call", Some("get_forecast")), body.clone());
    assert!(
        (e.status, e.body.contains("-32020")) == (400, true),
        "{e:?}"
    );
    let e = call(&stateless("tools/list", None), body.clone());
    assert!(e.body.contains("-32020"));
    let mut m = meta();
    m["io.modelcontextprotocol/protocolVersion"] = json!("2027-01-01");
    let e = call(
        &stateless("tools/list", None),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": m}}),
    );
    assert!(e.body.contains("-32022") && e.body.contains("2027-01-01"));
    let e = call(
        &stateless("tools/list", None),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}),
    );
    assert!(e.body.contains("-32020"));
    let e = call(
        &stateless("tools/list", None),
        json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]),
    );
    assert!(e.body.contains("-32600"));
    let e = call(
        &stateless("initialize", None),
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"_meta": meta()}}),
    );
    assert_eq!(e.status, 404);
    let e = call(
        &stateless("tools/call", Some("get_weather")),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"_meta": meta(), "name": "get_weather", "arguments": {}}}),
    );
    assert!(e.body.contains("-32602") && e.body.contains("location"));
}
