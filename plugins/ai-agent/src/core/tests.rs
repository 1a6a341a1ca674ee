#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use sdk::config::Validate;

const API: &str = r#"
openapi: 3.0.0
info: {title: Weather, version: "1"}
servers: [{url: "http://weather.example.com/api"}]
paths:
  /weather:
    get:
      operationId: get_weather
      description: Current weather for a city
      parameters:
        - {name: city, in: query, required: true, schema: {type: string}}
"#;

fn config(extra: Value) -> AgentConfig {
    let mut v = json!({
        "llm": {"apiKey": "llm-key", "serviceName": "llm", "servicePort": 8000,
                "domain": "llm.example.com", "model": "qwen", "maxIterations": 3},
        "apis": [{"apiProvider": {"serviceName": "weather", "servicePort": 80,
                  "domain": "weather.example.com",
                  "apiKey": {"in": "header", "name": "x-key", "value": "api-secret"}},
                  "api": API}],
    });
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    let mut c: AgentConfig = serde_json::from_value(v).unwrap();
    c.validate().unwrap();
    c
}

fn chat(content: &str) -> Value {
    json!({"model": "agent", "messages": [{"role": "user", "content": content}]})
}

fn answer(message: Value, prompt: u64, completion: u64) -> Vec<u8> {
    json!({"choices": [{"index": 0, "message": message}],
           "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})
    .to_string()
    .into_bytes()
}

fn tool_call(id: &str, name: &str, args: &str) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": id, "type": "function", "function": {"name": name, "arguments": args}}]})
}

#[test]
fn model_request_carries_tools_and_credentials() {
    let c = config(json!({}));
    assert_eq!(c.llm_cluster, "outbound|8000||llm");
    let mut run = Run::start(&c, &chat("weather in Paris?")).unwrap().unwrap();
    let o = run.model_request(&c, Duration::from_secs(5));
    assert_eq!(o.cluster, "outbound|8000||llm");
    let h = |k: &str| {
        o.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h(":path"), Some(DEFAULT_PATH));
    assert_eq!(h(":authority"), Some("llm.example.com"));
    assert_eq!(h("authorization"), Some("Bearer llm-key"));
    let body: Value = serde_json::from_slice(o.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["model"], "qwen");
    assert_eq!(body["max_tokens"], 1000);
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    assert_eq!(run.model_calls, 1);
}

#[test]
fn a_tool_call_runs_through_the_tool_layer_and_its_result_goes_back() {
    let c = config(json!({}));
    let mut run = Run::start(&c, &chat("weather in Paris?")).unwrap().unwrap();
    run.model_request(&c, Duration::from_secs(5));
    let step = run.on_model_answer(
        &c,
        Some(200),
        &answer(tool_call("c1", "get_weather", r#"{"city":"Paris"}"#), 10, 5),
    );
    let Step::Tools(calls) = step else {
        panic!("{step:?}")
    };
    assert_eq!(calls.len(), 1);
    let o = calls[0].plan.as_ref().unwrap();
    assert_eq!(o.cluster, "outbound|80||weather");
    assert!(o
        .headers
        .contains(&(":path".to_string(), "/api/weather?city=Paris".to_string())));
    assert!(o
        .headers
        .contains(&("x-key".to_string(), "api-secret".to_string())));
    let out = ToolOutput {
        text: "sunny".into(),
        is_error: false,
        structured: None,
    };
    assert!(run.on_tool_result(&c, 0, &calls[0], &out));
    let last = run.messages.last().unwrap();
    assert_eq!(
        last,
        &json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
    );
    run.model_request(&c, Duration::from_secs(5));
    let step = run.on_model_answer(
        &c,
        Some(200),
        &answer(
            json!({"role": "assistant", "content": "It is sunny."}),
            20,
            4,
        ),
    );
    assert_eq!(
        step,
        Step::Answer(Answer {
            content: "It is sunny.".into(),
            finish_reason: "stop"
        })
    );
    assert_eq!(run.usage, (30, 9));
    let reply = run.reply(
        &Answer {
            content: "It is sunny.".into(),
            finish_reason: "stop",
        },
        "id1",
        7,
    );
    let body: Value = serde_json::from_str(&reply.raw.unwrap().1).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "It is sunny.");
    assert_eq!(body["usage"]["total_tokens"], 39);
    assert_eq!(body["model"], "agent");
}

#[test]
fn bad_calls_become_error_results_not_failures() {
    let c = config(json!({}));
    let mut run = Run::start(&c, &chat("x")).unwrap().unwrap();
    run.model_request(&c, Duration::from_secs(5));
    let two = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "nope", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]});
    let Step::Tools(calls) = run.on_model_answer(&c, Some(200), &answer(two, 1, 1)) else {
        panic!()
    };
    assert_eq!(calls[0].plan, Err("unknown tool `nope`".into()));
    assert!(calls[1].plan.as_ref().unwrap_err().contains("city"));
    assert!(!run.on_tool_result(&c, 0, &calls[0], &ToolOutput::error("unknown tool `nope`")));
    assert!(run.on_tool_result(&c, 1, &calls[1], &ToolOutput::error("missing city")));
    let n = run.messages.len();
    assert_eq!(run.messages[n - 2]["content"], "error: unknown tool `nope`");
    assert_eq!(run.messages[n - 1]["tool_call_id"], "b");
}

#[test]
fn max_iterations_ends_with_a_clear_answer() {
    let c = config(json!({}));
    let mut run = Run::start(&c, &chat("x")).unwrap().unwrap();
    for i in 1..=3 {
        run.model_request(&c, Duration::from_secs(5));
        let step = run.on_model_answer(
            &c,
            Some(200),
            &answer(
                tool_call(&format!("c{i}"), "get_weather", r#"{"city":"P"}"#),
                1,
                1,
            ),
        );
        match step {
            Step::Tools(calls) if i < 3 => {
                run.on_tool_result(&c, 0, &calls[0], &ToolOutput::error("x"));
            }
            Step::Answer(a) if i == 3 => {
                assert_eq!(a.finish_reason, "length");
                assert!(a.content.contains("llm.maxIterations"), "{}", a.content);
                assert!(a.content.contains("3 model calls"), "{}", a.content);
            }
            other => panic!("{i}: {other:?}"),
        }
    }
}

#[test]
fn model_failures_are_client_errors() {
    let c = config(json!({}));
    let mut run = Run::start(&c, &chat("x")).unwrap().unwrap();
    let Step::Fail(e) = run.on_model_answer(&c, Some(429), br#"{"error":{"message":"slow down"}}"#)
    else {
        panic!()
    };
    assert_eq!(e.status, 429);
    assert!(e.message.contains("slow down"));
    let Step::Fail(e) = run.on_model_answer(&c, None, b"") else {
        panic!()
    };
    assert_eq!(e.status, 504);
    let Step::Fail(e) = run.on_model_answer(&c, Some(200), b"<html>") else {
        panic!()
    };
    assert_eq!(e.status, 502);
}

#[test]
fn the_clients_own_tools_pass_through_and_empty_chats_are_refused() {
    let c = config(json!({}));
    let mut body = chat("x");
    body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    assert!(Run::start(&c, &body).unwrap().is_none());
    let e = Run::start(&c, &json!({"messages": []})).unwrap_err();
    assert_eq!(e.status, 400);
}

#[test]
fn tool_results_are_bounded() {
    let c = config(json!({"maxToolResultBytes": 10}));
    let mut run = Run::start(&c, &chat("x")).unwrap().unwrap();
    run.model_request(&c, Duration::from_secs(5));
    let Step::Tools(calls) = run.on_model_answer(
        &c,
        Some(200),
        &answer(tool_call("c", "get_weather", r#"{"city":"P"}"#), 1, 1),
    ) else {
        panic!()
    };
    let out = ToolOutput {
        text: "é".repeat(50),
        is_error: false,
        structured: None,
    };
    run.on_tool_result(&c, 0, &calls[0], &out);
    let text = run.messages.last().unwrap()["content"].as_str().unwrap();
    assert!(text.starts_with(&"é".repeat(5)), "{text}");
    assert!(text.contains("cut: 10 of 100 bytes"), "{text}");
}

#[test]
fn streamed_answers_are_sse_with_usage_when_asked() {
    let c = config(json!({}));
    let mut body = chat("x");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let run = Run::start(&c, &body).unwrap().unwrap();
    let reply = run.reply(&Answer::stopped("limit".into()), "id", 1);
    let (ct, text) = *reply.raw.unwrap();
    assert_eq!(ct, "text/event-stream");
    assert!(text.contains(r#""finish_reason":"length""#), "{text}");
    assert!(text.contains(r#""usage":{"#), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[test]
fn react_mode_reads_actions_and_feeds_observations() {
    let c = config(json!({"promptTemplate": {"language": "EN"}}));
    let mut run = Run::start(&c, &chat("weather?")).unwrap().unwrap();
    let o = run.model_request(&c, Duration::from_secs(5));
    let body: Value = serde_json::from_slice(o.body.as_deref().unwrap()).unwrap();
    assert!(body.get("tools").is_none());
    assert!(body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("get_weather"));
    let text = "Thought: look\nAction: get_weather\nAction Input: {\"city\": \"Rome\"}";
    let Step::Tools(calls) = run.on_model_answer(
        &c,
        Some(200),
        &answer(json!({"role": "assistant", "content": text}), 1, 1),
    ) else {
        panic!()
    };
    assert_eq!(calls[0].args["city"], "Rome");
    let out = ToolOutput {
        text: "warm".into(),
        is_error: false,
        structured: None,
    };
    assert!(run.on_tool_result(&c, 0, &calls[0], &out));
    assert_eq!(
        run.messages.last().unwrap(),
        &json!({"role": "user", "content": "Observation: warm"})
    );
    let step = run.on_model_answer(
        &c,
        Some(200),
        &answer(
            json!({"role": "assistant", "content": "Thought: ok\nFinal Answer: warm"}),
            1,
            1,
        ),
    );
    assert_eq!(
        step,
        Step::Answer(Answer {
            content: "warm".into(),
            finish_reason: "stop"
        })
    );
}

#[test]
fn config_errors_name_the_field() {
    let bad = |v: Value, field: &str| {
        let mut c: AgentConfig = serde_json::from_value(v).unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.path, field, "{e:?}");
    };
    bad(json!({"llm": {"model": "m"}}), "llm.serviceName");
    bad(
        json!({"llm": {"serviceName": "s", "servicePort": 1}}),
        "llm.model",
    );
    bad(
        json!({"llm": {"cluster": "c", "model": "m", "maxIterations": 0}}),
        "llm.maxIterations",
    );
    bad(
        json!({"llm": {"cluster": "c", "model": "m"}, "apis": [{"apiProvider": {"serviceName": "s", "servicePort": 1}, "api": "openapi: 3.0.0\ninfo: {title: t, version: '1'}"}]}),
        "apis[0].api.paths",
    );
    bad(
        json!({"llm": {"cluster": "c", "model": "m"}, "apis": [{"apiProvider": {}, "api": API}]}),
        "apis[0].apiProvider.serviceName",
    );
    bad(
        json!({"llm": {"cluster": "c", "model": "m"}, "jsonResp": {"enable": true, "jsonSchema": "{oops"}}),
        "jsonResp.jsonSchema",
    );
    bad(json!({"apis": [{"api": API}]}), "llm");
}
