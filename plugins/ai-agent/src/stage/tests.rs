#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::AiAgent;
use sdk::host::MockHost;
use sdk::pipeline::Pipeline;
use sdk::shell::Plugin;
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Duration;

const API: &str = r#"{"openapi": "3.0.0", "info": {"title": "w", "version": "1"},
  "paths": {"/weather": {"get": {"operationId": "get_weather",
    "parameters": [{"name": "city", "in": "query", "required": true, "schema": {"type": "string"}}]}}}}"#;

fn pipeline(max_ms: u64) -> Pipeline {
    let config = json!({
        "llm": {"cluster": "llm", "model": "m", "maxIterations": 5, "maxExecutionTime": max_ms},
        "apis": [{"apiProvider": {"cluster": "api"}, "api": API}],
    });
    let (set, _) = AiAgent::parse_config(config.to_string().as_bytes()).unwrap();
    Pipeline::new(AiAgent::stages(&Rc::new(set)))
}

fn host(stream: bool) -> MockHost {
    let host = MockHost::with_request_headers(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw"),
    ]);
    *host.request_body.borrow_mut() = json!({"model": "client", "stream": stream,
        "messages": [{"role": "user", "content": "weather?"}]})
    .to_string()
    .into_bytes();
    host
}

/// Delivers a callout answer to the pipeline.
fn answer(p: &mut Pipeline, host: &MockHost, status: Option<u32>, body: Value) {
    let token = host.callouts.borrow().len() as u32;
    let text = body.to_string().into_bytes();
    *host.call_response_headers.borrow_mut() = status
        .map(|s| vec![(":status".to_string(), s.to_string())])
        .unwrap_or_default();
    let size = text.len();
    *host.call_response_body.borrow_mut() = text;
    p.on_http_call_response(host, token, size);
}

fn tool_call() -> Value {
    json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
}

#[test]
fn the_loop_calls_the_model_then_the_tool_then_answers_locally() {
    let host = host(false);
    let mut p = pipeline(10_000);
    p.on_request_headers(&host, false);
    let size = host.request_body.borrow().len();
    p.on_request_body(&host, size, true);
    assert_eq!(host.callouts.borrow()[0].cluster, "llm");
    answer(&mut p, &host, Some(200), tool_call());
    let call = host.callouts.borrow()[1].clone();
    assert_eq!(call.cluster, "api");
    assert!(call
        .headers
        .contains(&(":path".to_string(), "/weather?city=Oslo".to_string())));
    answer(&mut p, &host, Some(200), json!({"temp": 3}));
    let sent: Value =
        serde_json::from_slice(host.callouts.borrow()[2].body.as_deref().unwrap()).unwrap();
    assert_eq!(sent["messages"][2]["content"], r#"{"temp":3}"#);
    assert!(host.local_reply().is_none());
    answer(
        &mut p,
        &host,
        Some(200),
        json!({"choices": [{"message": {"role": "assistant", "content": "3 degrees"}}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
    );
    let reply = host.local_reply().unwrap();
    assert_eq!(reply.status, 200);
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "3 degrees");
    assert_eq!(v["usage"]["total_tokens"], 12);
    assert_eq!(v["model"], "client");
    // The request itself never went on.
    assert_eq!(host.resumed.borrow().0, 0);
}

#[test]
fn a_spent_time_budget_is_a_clear_answer_and_big_answers_are_refused() {
    let host = host(true);
    let mut p = pipeline(1_000);
    p.on_request_headers(&host, false);
    let size = host.request_body.borrow().len();
    p.on_request_body(&host, size, true);
    answer(&mut p, &host, Some(200), tool_call());
    // The tool call outlives the budget: no model call follows; the answer names the limit.
    *host.clock.borrow_mut() += Duration::from_secs(2);
    answer(&mut p, &host, None, json!(null));
    assert_eq!(host.callouts.borrow().len(), 2);
    let reply = host.local_reply().unwrap();
    let text = String::from_utf8(reply.body.clone()).unwrap();
    assert!(text.starts_with("data: "), "{text}");
    assert!(text.contains("llm.maxExecutionTime"), "{text}");
    assert!(text.contains(r#""finish_reason":"length""#), "{text}");

    // A tool answer over the limit is an error result, not read.
    let host = self::host(false);
    let mut p = pipeline(10_000);
    p.on_request_headers(&host, false);
    let size = host.request_body.borrow().len();
    p.on_request_body(&host, size, true);
    answer(&mut p, &host, Some(200), tool_call());
    *host.call_response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    p.on_http_call_response(&host, 2, super::MAX_TOOL_ANSWER_BYTES + 1);
    let sent: Value =
        serde_json::from_slice(host.callouts.borrow()[2].body.as_deref().unwrap()).unwrap();
    let result = sent["messages"][2]["content"].as_str().unwrap();
    assert!(result.starts_with("error: the API answered"), "{result}");
}
