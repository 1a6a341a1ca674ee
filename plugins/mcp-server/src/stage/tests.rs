#![allow(clippy::unwrap_used)]

use super::*;
use crate::McpServer;
use proxy_wasm::types::Action;
use sdk::host::MockHost;
use sdk::pipeline::Pipeline;
use sdk::shell::Plugin;

fn pipeline(config: &str) -> Pipeline {
    let (set, _) = McpServer::parse_config(config.as_bytes()).unwrap();
    Pipeline::new(McpServer::stages(&Rc::new(set)))
}

fn host(method: &str, consumer: Option<&str>, body: &str) -> MockHost {
    let mut headers = vec![
        (":method", method),
        (":path", "/mcp"),
        (":authority", "gw"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(c) = consumer {
        headers.push(("x-mse-consumer", c));
    }
    let host = MockHost::with_request_headers(&headers);
    *host.request_body.borrow_mut() = body.as_bytes().to_vec();
    host.set_prop("xds.route_name", "mcp");
    host
}

fn reply_json(host: &MockHost) -> (u32, Value) {
    let r = host.local_reply().unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn tools_call_goes_out_through_the_cluster_and_answers_locally() {
    let mut p = pipeline(crate::core::tests::CONFIG);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Paris"}}}"#;
    let host = host("POST", Some("bob"), body);
    assert_eq!(p.on_request_headers(&host, false), Action::Pause);
    assert_eq!(p.on_request_body(&host, body.len(), true), Action::Pause);
    let out = host.callouts.borrow()[0].clone();
    assert_eq!(out.cluster, "rest-api");
    assert!(out
        .headers
        .contains(&(":path".into(), "/weather?city=Paris".into())));
    assert!(host.local_reply().is_none());
    *host.call_response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    *host.call_response_body.borrow_mut() = br#"{"city":"Paris","temp":20}"#.to_vec();
    p.on_http_call_response(&host, 1, 26);
    let (status, v) = reply_json(&host);
    assert_eq!(status, 200);
    assert_eq!(v["result"]["content"][0]["text"], "Paris: 20 C");
    assert_eq!(
        host.metric("mcp_tool_calls_total.tool=.=get_weather;.;"),
        Some(1)
    );
    assert_eq!(
        host.metric("mcp_tool_errors_total.tool=.=get_weather;.;"),
        None
    );
    host.set_prop("ai_log", r#"{"route":"mcp"}"#);
    p.on_log(&host);
    let log: Value = serde_json::from_slice(&host.property(&["ai_log"]).unwrap()).unwrap();
    assert_eq!(log["route"], "mcp");
    assert_eq!(log["mcp_tool"], "get_weather");
    assert_eq!(log["consumer"], "bob");
    // The request never went upstream.
    assert_eq!(host.resumed.borrow().0, 0);
}

#[test]
fn a_failed_or_missing_answer_is_an_error_result() {
    let mut p = pipeline(crate::core::tests::CONFIG);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Paris"}}}"#;
    let host = host("POST", None, body);
    p.on_request_headers(&host, false);
    p.on_request_body(&host, body.len(), true);
    p.on_http_call_response(&host, 1, 0);
    let (_, v) = reply_json(&host);
    assert_eq!(v["result"]["isError"], true);
    assert_eq!(
        host.metric("mcp_tool_errors_total.tool=.=get_weather;.;"),
        Some(1)
    );
}

#[test]
fn get_is_405_and_other_routes_are_untouched() {
    let config = format!(
        r#"{{"_rules_": [{{"_match_route_": ["mcp"], {}}}]}}"#,
        &crate::core::tests::CONFIG.trim()[1..crate::core::tests::CONFIG.trim().len() - 1]
    );
    let mut p = pipeline(&config);
    let get = host("GET", None, "");
    p.on_request_headers(&get, true);
    let r = get.local_reply().unwrap();
    assert_eq!(r.status, 405);
    assert!(r.headers.contains(&("allow".into(), "POST".into())));

    let mut p = pipeline(&config);
    let other = host("POST", None, "{}");
    other.set_prop("xds.route_name", "llm");
    assert_eq!(p.on_request_headers(&other, false), Action::Continue);
    assert!(other.local_reply().is_none());
    // An empty config is off.
    let mut p = pipeline("{}");
    let off = host("POST", None, "{}");
    assert_eq!(p.on_request_headers(&off, false), Action::Continue);
}

#[test]
fn invalid_arguments_never_reach_the_api() {
    let mut p = pipeline(crate::core::tests::CONFIG);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{}}}"#;
    let host = host("POST", None, body);
    p.on_request_headers(&host, false);
    p.on_request_body(&host, body.len(), true);
    assert!(host.callouts.borrow().is_empty());
    let (_, v) = reply_json(&host);
    assert_eq!(v["error"]["code"], -32602);
    assert_eq!(
        host.metric("mcp_tool_errors_total.tool=.=get_weather;.;"),
        Some(1)
    );
    // Not JSON: a parse error.
    let mut p = pipeline(crate::core::tests::CONFIG);
    let bad = crate::stage::tests::host("POST", None, "{nope");
    p.on_request_headers(&bad, false);
    p.on_request_body(&bad, 5, true);
    let (status, v) = reply_json(&bad);
    assert_eq!((status, v["error"]["code"].as_i64()), (400, Some(-32700)));
}
