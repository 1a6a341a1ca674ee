//! Seed inputs: well-formed requests and each provider's native answers (JSON and streamed), in
//! the byte layouts the targets read. `cargo run -p fuzz --bin seeds` writes them into
//! `fuzz/corpus/<target>/seed-*`; libFuzzer mutates from there.

use ai_proxy::eventstream::{encode, HeaderValue};
use serde_json::json;

fn sse(events: &[serde_json::Value]) -> Vec<u8> {
    let mut out = String::new();
    for e in events {
        out.push_str(&format!("data: {e}\n\n"));
    }
    out.into_bytes()
}

fn typed_sse(events: &[(&str, serde_json::Value)]) -> Vec<u8> {
    let mut out = String::new();
    for (name, e) in events {
        out.push_str(&format!("event: {name}\ndata: {e}\n\n"));
    }
    out.into_bytes()
}

/// Native answers per provider index of [`crate::PROVIDERS`]: (JSON, stream, stream content type).
fn answers(provider: usize) -> (Vec<u8>, Vec<u8>, u8) {
    let openai_json = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
        "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
    let mut openai_stream = sse(&[
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
    ]);
    openai_stream.extend_from_slice(b"data: [DONE]\n\n");
    match provider {
        1 => (
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "Hello"},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 3}})
            .to_string()
            .into_bytes(),
            typed_sse(&[
                ("message_start", json!({"type": "message_start", "message": {"id": "msg_1",
                    "type": "message", "role": "assistant", "model": "m", "content": [],
                    "usage": {"input_tokens": 5, "output_tokens": 1}}})),
                ("content_block_start", json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}})),
                ("content_block_delta", json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": "Hello"}})),
                ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                ("content_block_start", json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}}})),
                ("content_block_delta", json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": "{\"a\":1}"}})),
                ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
                ("message_delta", json!({"type": "message_delta",
                    "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}})),
                ("message_stop", json!({"type": "message_stop"})),
            ]),
            0,
        ),
        2 | 3 => {
            let candidate = |text: &str, finish: Option<&str>| {
                let mut c = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
                if let Some(f) = finish {
                    c["finishReason"] = json!(f);
                }
                json!({"candidates": [c], "modelVersion": "gemini-2.5-flash",
                    "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}})
            };
            let mut call = candidate("", Some("STOP"));
            call["candidates"][0]["content"]["parts"] =
                json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]);
            (
                candidate("Hello", Some("STOP")).to_string().into_bytes(),
                sse(&[candidate("Hel", None), candidate("lo", None), call]),
                0,
            )
        }
        4 => {
            let frame = |kind: &str, body: serde_json::Value| {
                encode(
                    &[
                        (":event-type", HeaderValue::string(kind)),
                        (":content-type", HeaderValue::string("application/json")),
                        (":message-type", HeaderValue::string("event")),
                    ],
                    body.to_string().as_bytes(),
                )
            };
            let mut stream = frame("messageStart", json!({"role": "assistant"}));
            stream.extend(frame(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
            ));
            stream.extend(frame(
                "contentBlockStop",
                json!({"contentBlockIndex": 0}),
            ));
            stream.extend(frame("messageStop", json!({"stopReason": "end_turn"})));
            stream.extend(frame(
                "metadata",
                json!({"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
                    "metrics": {"latencyMs": 10}}),
            ));
            (
                json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hello"},
                    {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}]}},
                    "stopReason": "tool_use",
                    "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}})
                .to_string()
                .into_bytes(),
                stream,
                2,
            )
        }
        5 => (
            json!({"id": "co1", "finish_reason": "COMPLETE", "message": {"role": "assistant",
                "content": [{"type": "text", "text": "Hello"}]},
                "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 2},
                    "tokens": {"input_tokens": 5, "output_tokens": 2}}})
            .to_string()
            .into_bytes(),
            typed_sse(&[
                ("message-start", json!({"type": "message-start", "id": "co1",
                    "delta": {"message": {"role": "assistant"}}})),
                ("content-delta", json!({"type": "content-delta", "index": 0,
                    "delta": {"message": {"content": {"text": "Hello"}}}})),
                ("message-end", json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE",
                    "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 2}}}})),
            ]),
            0,
        ),
        6 => {
            let out = |text: &str, finish: &str| {
                json!({"request_id": "r1", "output": {"choices": [{"finish_reason": finish,
                    "message": {"role": "assistant", "content": text}}]},
                    "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}})
            };
            let mut stream = String::new();
            for (i, e) in [out("Hel", "null"), out("lo", "stop")].iter().enumerate() {
                stream.push_str(&format!("id:{}\nevent:result\n:HTTP_STATUS/200\ndata:{e}\n\n", i + 1));
            }
            (
                out("Hello", "stop").to_string().into_bytes(),
                stream.into_bytes(),
                0,
            )
        }
        7 => (
            json!({"model_name": "m", "model_version": "1", "text_output": "Hello"})
                .to_string()
                .into_bytes(),
            sse(&[
                json!({"model_name": "m", "text_output": "Hel"}),
                json!({"model_name": "m", "text_output": "lo"}),
            ]),
            0,
        ),
        8 => (
            json!({"event": "message", "message_id": "m1", "conversation_id": "c1",
                "answer": "Hello", "metadata": {"usage": {"prompt_tokens": 5,
                "completion_tokens": 2, "total_tokens": 7}}, "created_at": 1})
            .to_string()
            .into_bytes(),
            sse(&[
                json!({"event": "message", "message_id": "m1", "answer": "Hel", "created_at": 1}),
                json!({"event": "message", "message_id": "m1", "answer": "lo", "created_at": 1}),
                json!({"event": "message_end", "message_id": "m1", "metadata": {"usage": {
                    "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}}),
            ]),
            0,
        ),
        9 => (
            json!({"translations": [{"detected_source_language": "EN", "text": "Hallo"}]})
                .to_string()
                .into_bytes(),
            Vec::new(),
            3,
        ),
        _ => (openai_json.to_string().into_bytes(), openai_stream, 0),
    }
}

fn requests() -> [(u8, Vec<u8>); 5] {
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    [
        (
            0,
            json!({"model": "m", "messages": [{"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Hi"}]})
            .to_string()
            .into_bytes(),
        ),
        (
            0x10,
            json!({"model": "m", "stream": true, "tools": tools, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1",
                    "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"}]})
            .to_string()
            .into_bytes(),
        ),
        (
            1,
            json!({"model": "m", "max_tokens": 64, "system": "Be terse.",
                "messages": [{"role": "user", "content": "Hi"}]})
            .to_string()
            .into_bytes(),
        ),
        (
            0x11,
            json!({"model": "m", "max_tokens": 64, "stream": true, "tools": [{"name": "f",
                "input_schema": {"type": "object"}}], "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]})
            .to_string()
            .into_bytes(),
        ),
        (
            2,
            json!({"model": "m", "input": "Hi", "stream": true})
                .to_string()
                .into_bytes(),
        ),
    ]
}

/// Every seed, as (target, file name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for provider in 0..crate::PROVIDERS.len() {
        let (json_answer, stream, stream_type) = answers(provider);
        for (route, body) in requests() {
            let streaming = route & 0x10 != 0;
            let (answer, kind) = if streaming && !stream.is_empty() {
                (stream.clone(), stream_type)
            } else {
                (json_answer.clone(), 1)
            };
            let Ok(len) = u16::try_from(body.len()) else {
                continue;
            };
            let [hi, lo] = len.to_be_bytes();
            let mut input = vec![provider as u8, route & 0x0f, kind, 7, hi, lo];
            input.extend_from_slice(&body);
            input.extend_from_slice(&answer);
            out.push(("gateway", format!("seed-p{provider}-r{route:02x}"), input));
            if route == 0 {
                let mut errored = vec![provider as u8, 0, 0x41, 3, hi, lo];
                errored.extend_from_slice(&body);
                errored.extend_from_slice(
                    br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
                );
                out.push(("gateway", format!("seed-p{provider}-error"), errored));
            }
        }
        if !stream.is_empty() {
            let mut input = vec![provider as u8];
            input.extend_from_slice(&stream);
            let target = if stream_type == 2 {
                "event_stream"
            } else {
                "sse"
            };
            out.push((target, format!("seed-p{provider}"), input));
        }
        out.push(("usage", format!("seed-p{provider}"), json_answer));
    }
    for (route, body) in requests() {
        out.push(("request", format!("seed-r{route:02x}"), body.clone()));
        out.push(("usage", format!("seed-r{route:02x}"), body.clone()));
        if route == 2 {
            out.push(("responses", "seed-stream".into(), body));
        }
    }
    out.push((
        "responses",
        "seed-tools".into(),
        json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]})
        .to_string()
        .into_bytes(),
    ));
    for (i, text) in [
        "A clean answer with nothing to hide.",
        "This is FORBIDDEN territory",
        "forbid den, forbidden, and more",
        "多字节文字 forbidden 测试",
    ]
    .iter()
    .enumerate()
    {
        let mut input = vec![8, i as u8 * 3 + 1];
        input.extend_from_slice(text.as_bytes());
        out.push(("moderation_stream", format!("seed-{i}"), input));
        let mut tokens = vec![i as u8];
        tokens.extend_from_slice(text.as_bytes());
        out.push(("tokens", format!("seed-{i}"), tokens));
    }
    let rpc = [
        (
            0x00,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
        ),
        (0x10, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#),
        (0x40, r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#),
        (
            0x00,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_weather","arguments":{}}}"#,
        ),
        (
            0x00,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Paris","unit":"k"}}}"#,
        ),
        (
            0x40,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get_forecast","arguments":{"city":"Paris","days":2}}}"#,
        ),
        (
            0x00,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ),
        (
            0x01,
            r#"[{"jsonrpc":"2.0","id":7,"method":"ping"},{"jsonrpc":"2.0","id":8,"method":"tools/list"}]"#,
        ),
        (
            0x82,
            r#"{"jsonrpc":"2.0","id":9,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        ),
        (
            0x82,
            r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Oslo"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        ),
        (0x05, r#"{"jsonrpc":"2.0","id":11,"method":"nope"}"#),
        (0x00, "not json"),
    ];
    for (i, (choice, body)) in rpc.iter().enumerate() {
        let mut input = vec![*choice];
        input.extend_from_slice(body.as_bytes());
        out.push(("mcp", format!("seed-{i}"), input));
    }
    for (i, text) in ["hello there", "", "zz zz zz zz zz zz zz zz zz zz zz"]
        .iter()
        .enumerate()
    {
        let mut input = vec![i as u8 * 7 + 1];
        input.extend_from_slice(text.as_bytes());
        out.push(("masking", format!("seed-{i}"), input));
    }
    let answers: [&[u8]; 6] = [
        br#"{"results":[{"flagged":false,"categories":{}}]}"#,
        br#"{"results":[{"flagged":true,"categories":{"violence":true}}]}"#,
        br#"{"Code":200,"Data":{"RiskLevel":"none","Result":[]},"RequestId":"r"}"#,
        br#"{"DECRBY":5}"#,
        br#"{"data":[{"embedding":[0.1,0.2,0.3],"index":0}],"model":"e","usage":{"prompt_tokens":1,"total_tokens":1}}"#,
        b"<html>bad gateway</html>",
    ];
    for which in 0..7u8 {
        for (i, answer) in answers.iter().enumerate() {
            let mut input = vec![which, if i == 5 { 6 } else { 0 }];
            input.extend_from_slice(answer);
            out.push(("callouts", format!("seed-c{which}-{i}"), input));
        }
    }
    let configs: [(u8, &str); 6] = [
        (
            5,
            r#"{"ai-proxy": {"provider": {"type": "openai", "apiTokens": ["k"]}}, "ai-statistics": {}}"#,
        ),
        (
            4,
            r#"{"provider": {"type": "claude", "apiTokens": ["k"], "modelMapping": {"*": "m"}}}"#,
        ),
        (
            1,
            r#"{"rule_name": "r", "rule_items": [{"limit_by_header": "x-key", "limit_keys": [{"key": "*", "token_per_minute": 10}]}]}"#,
        ),
        (
            2,
            r#"{"denyWords": ["a"], "checkResponse": true, "_rules_": [{"_match_route_": ["r"], "denyWords": ["b"]}]}"#,
        ),
        (
            0,
            r#"{"attributes": [{"key": "question", "value_source": "request_body", "value": "messages.@reverse.0.content"}]}"#,
        ),
        (
            3,
            r#"{"prepend": [{"role": "system", "content": "x"}], "append": []}"#,
        ),
    ];
    for (i, (root, config)) in configs.iter().enumerate() {
        let mut input = vec![*root];
        input.extend_from_slice(config.as_bytes());
        out.push(("config", format!("seed-{i}"), input));
    }
    out
}
