//! Fuzz targets: each takes arbitrary bytes and checks the invariants its code must keep, not only
//! that nothing panics. A target returns `Err` with what broke; the libFuzzer harness
//! (`fuzz/libfuzzer`) turns that into a crash, `tests/corpus.rs` into a failed test.
//!
//! Inputs that carry structure (which config, which path, where chunks split) take it from their
//! first bytes, so every corpus file is still plain bytes.

pub mod seeds;
pub mod sim;

use serde_json::Value;
use sim::{Answer, Sent, Sim};

/// A fuzz target: `Err` says which invariant broke.
pub type Target = fn(&[u8]) -> Result<(), String>;

/// Every target, by name (the corpus directory and the libFuzzer binary share it).
pub const TARGETS: [(&str, Target); 12] = [
    ("sse", sse),
    ("event_stream", event_stream),
    ("gateway", gateway),
    ("moderation_stream", moderation_stream),
    ("config", config),
    ("request", request),
    ("usage", usage),
    ("tokens", tokens),
    ("responses", responses),
    ("mcp", mcp),
    ("masking", masking),
    ("callouts", callouts),
];

/// Chunk boundaries for `data`, from a seed: sizes 1..=max, deterministic.
pub fn split(data: &[u8], seed: u8, max: usize) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % max.max(1)) + 1;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

fn first(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, data),
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// The SSE decoder: the events do not depend on where the bytes split, and it holds at most its
/// bound (the unfinished tail).
pub fn sse(data: &[u8]) -> Result<(), String> {
    use sdk::sse::{SseDecoder, SseEvent};
    const MAX: usize = 512;
    let (seed, data) = first(data);
    let mut whole = SseDecoder::new(MAX);
    let mut a: Vec<SseEvent> = Vec::new();
    let whole_ok = whole.feed(data, &mut a).is_ok();
    whole.finish(&mut a);
    let mut parts = SseDecoder::new(MAX);
    let mut b = Vec::new();
    let mut parts_ok = true;
    for chunk in split(data, seed, 64) {
        if parts.feed(chunk, &mut b).is_err() {
            parts_ok = false;
            break;
        }
        check(parts.buffered() <= MAX + 1, || {
            format!("decoder holds {} bytes, bound {MAX}", parts.buffered())
        })?;
    }
    parts.finish(&mut b);
    if whole_ok && parts_ok {
        check(a == b, || {
            format!("split changed the events:\n{a:?}\n{b:?}")
        })?;
    }
    // What an event encodes to decodes back to it.
    for event in a.iter().filter(|e| !e.data.is_empty()) {
        let mut again = SseDecoder::new(usize::MAX);
        let mut out = Vec::new();
        let _ = again.feed(event.encode().as_bytes(), &mut out);
        check(out.first() == Some(event), || {
            format!("{event:?} encoded and decoded is {out:?}")
        })?;
    }
    Ok(())
}

/// The AWS event-stream decoder (Bedrock): split-independent, bounded, and it reads back what
/// its encoder writes.
pub fn event_stream(data: &[u8]) -> Result<(), String> {
    use ai_proxy::eventstream::{encode, Decoder, HeaderValue};
    const MAX: usize = 4096;
    let (seed, data) = first(data);
    let mut whole = Decoder::new(MAX);
    let mut a = Vec::new();
    let whole_ok = whole.feed(data, &mut a).is_ok();
    let mut parts = Decoder::new(MAX);
    let mut b = Vec::new();
    let mut parts_ok = true;
    for chunk in split(data, seed, 64) {
        if parts.feed(chunk, &mut b).is_err() {
            parts_ok = false;
            break;
        }
        check(parts.buffered() <= MAX, || {
            format!("decoder holds {} bytes, bound {MAX}", parts.buffered())
        })?;
    }
    if whole_ok && parts_ok {
        check(a == b, || "split changed the messages".into())?;
    }
    // The payload as one encoded message reads back whole.
    let framed = encode(&[(":event-type", HeaderValue::string("chunk"))], data);
    let mut again = Decoder::new(usize::MAX);
    let mut out = Vec::new();
    again
        .feed(&framed, &mut out)
        .map_err(|e| format!("own encoding refused: {e}"))?;
    check(out.len() == 1 && out[0].payload == data, || {
        "own encoding read back differently".into()
    })
}

/// A provider config for the gateway target, and whether ai-proxy translates its answers for an
/// OpenAI chat client and for an Anthropic Messages client (else they pass as the provider wrote
/// them).
pub const PROVIDERS: [(&str, bool, bool); 12] = [
    (r#"{"type":"openai","apiTokens":["k"]}"#, false, true),
    (r#"{"type":"claude","apiTokens":["k"]}"#, true, false),
    (r#"{"type":"gemini","apiTokens":["k"]}"#, true, true),
    (r#"{"type":"vertex","apiTokens":["k"]}"#, true, true),
    (
        r#"{"type":"bedrock","awsAccessKey":"AKID","awsSecretKey":"s","awsRegion":"us-east-1"}"#,
        true,
        true,
    ),
    (r#"{"type":"cohere","apiTokens":["k"]}"#, true, true),
    (
        r#"{"type":"qwen","apiTokens":["k"],"qwenEnableCompatible":false}"#,
        true,
        true,
    ),
    (
        r#"{"type":"triton","tritonDomain":"triton.internal:8000"}"#,
        true,
        true,
    ),
    (
        r#"{"type":"dify","apiTokens":["k"],"difyApiUrl":"dify.internal"}"#,
        true,
        true,
    ),
    (
        r#"{"type":"deepl","apiTokens":["k:fx"],"targetLang":"DE"}"#,
        true,
        true,
    ),
    (
        r#"{"type":"azure","apiTokens":["k"],"azureServiceUrl":"https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01"}"#,
        false,
        true,
    ),
    (
        r#"{"type":"ollama","apiTokens":["k"],"ollamaServerHost":"ollama","ollamaServerPort":11434}"#,
        false,
        true,
    ),
];

const PATHS: [&str; 5] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/models",
];

const CONTENT_TYPES: [&str; 4] = [
    "text/event-stream",
    "application/json",
    "application/vnd.amazon.eventstream",
    "text/plain",
];

/// Every stage of the one filter in front of one provider.
fn gateway_pipeline(provider: &str) -> Result<sdk::pipeline::Pipeline, String> {
    let config = format!(
        r#"{{"ai-statistics": {{}},
            "ai-token-ratelimit": {{"rule_name": "fuzz", "global_threshold": {{"token_per_minute": 1000000000}}}},
            "ai-moderation": {{"checkRequest": true, "checkResponse": true, "denyWords": ["forbidden"], "streamWindow": 32}},
            "ai-prompt-decorator": {{"prepend": [{{"role": "system", "content": "Be brief."}}]}},
            "ai-proxy": {{"provider": {provider}}}}}"#
    );
    one_filter(&config)
}

/// The pipeline the `ai-gateway` root id builds for one request from a one-filter config.
fn one_filter(config: &str) -> Result<sdk::pipeline::Pipeline, String> {
    let (loaded, _) = ai_gateway::loader(ai_gateway::GATEWAY, config.as_bytes())
        .map_err(|e| format!("fuzz config refused: {e}"))?;
    Ok(sdk::pipeline::Pipeline::new(
        loaded.iter().flat_map(|l| l.stages()).collect(),
    ))
}

/// A client-visible body is well formed for the protocol it claims: SSE whose data are JSON (or
/// OpenAI's `[DONE]`), or a JSON document.
fn well_formed(answer: &Answer, anthropic: bool) -> Result<(), String> {
    let sse = answer
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if sse {
        let events = sse_events(&answer.body)?;
        check(answer.body.is_empty() || !events.is_empty(), || {
            format!(
                "an SSE body without events: {:?}",
                String::from_utf8_lossy(&answer.body)
            )
        })?;
        for e in events {
            let done = e.data == "[DONE]" && !anthropic;
            check(
                done || serde_json::from_str::<Value>(&e.data).is_ok_and(|v| v.is_object()),
                || format!("SSE data is not JSON: {:?}", e.data),
            )?;
        }
        Ok(())
    } else if answer.body.is_empty() {
        Ok(())
    } else {
        check(
            serde_json::from_slice::<Value>(&answer.body).is_ok_and(|v| v.is_object()),
            || {
                format!(
                    "body is not a JSON object: {:?}",
                    String::from_utf8_lossy(&answer.body)
                )
            },
        )
    }
}

/// The complete events of an SSE body; an unfinished last event is an error.
fn sse_events(body: &[u8]) -> Result<Vec<sdk::sse::SseEvent>, String> {
    let mut decoder = sdk::sse::SseDecoder::new(usize::MAX);
    let mut events = Vec::new();
    let _ = decoder.feed(body, &mut events);
    check(decoder.buffered() == 0, || {
        format!(
            "SSE body ends inside an event: {:?}",
            String::from_utf8_lossy(body)
        )
    })?;
    decoder.finish(&mut events);
    Ok(events)
}

/// A translated stream ends as its protocol ends one: `[DONE]` (OpenAI chat), `message_stop` or
/// an `error` event (Anthropic), `response.completed`, `.incomplete` or `.failed` (Responses).
fn terminated(answer: &Answer, anthropic: bool, responses: bool) -> Result<(), String> {
    if !answer
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"))
    {
        return Ok(());
    }
    let events = sse_events(&answer.body)?;
    let last = events.last();
    let ok = if anthropic {
        last.is_some_and(|e| matches!(e.event.as_deref(), Some("message_stop" | "error")))
    } else if responses {
        last.is_some_and(|e| {
            matches!(
                e.event.as_deref(),
                Some("response.completed" | "response.incomplete" | "response.failed")
            )
        })
    } else {
        last.is_some_and(|e| e.data == "[DONE]")
    };
    check(ok, || {
        format!(
            "a translated stream ends with {last:?}: {:?}",
            String::from_utf8_lossy(&answer.body)
        )
    })
}

/// The whole one-filter pipeline in front of each provider: any request body, any upstream answer
/// (status, content type, bytes, split anywhere). No hang; every local reply is a JSON error; an
/// answer ai-proxy translates is well formed for the client's protocol whatever the provider sent.
///
/// Input: `[provider, path, status+content type, split seed, request length (2 bytes), request…,
/// answer…]`.
pub fn gateway(data: &[u8]) -> Result<(), String> {
    gateway_answer(data).map(|_| ())
}

/// [`gateway`], returning what the client got (a default answer for inputs too short to run).
pub fn gateway_answer(data: &[u8]) -> Result<Answer, String> {
    let [p, route, kind, seed, hi, lo, rest @ ..] = data else {
        return Ok(Answer::default());
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let (provider, for_openai, for_anthropic) = PROVIDERS[usize::from(*p) % PROVIDERS.len()];
    let path = PATHS[usize::from(route & 0x0f) % PATHS.len()];
    let anthropic = path == "/v1/messages";
    let responses = path == "/v1/responses";
    let status = [200, 200, 400, 429, 500, 503][usize::from(kind >> 4) % 6];
    let content_type = CONTENT_TYPES[usize::from(kind & 0x0f) % CONTENT_TYPES.len()];
    let (request, answer) = rest.split_at(len.min(rest.len()));
    let mut sim = Sim::new(
        gateway_pipeline(provider)?,
        &[
            (":method", "POST"),
            (":path", path),
            (":authority", "gw"),
            ("content-type", "application/json"),
        ],
    );
    let sent = sim.request(&split(request, *seed, 32))?;
    match sent {
        Sent::Replied(reply) => {
            check(
                reply.header("content-type") == Some("application/json"),
                || format!("local reply {} without a JSON type", reply.status),
            )?;
            well_formed(&reply, anthropic)?;
            return Ok(reply);
        }
        Sent::Waiting => return Ok(Answer::default()),
        Sent::Upstream => {}
    }
    let headers = vec![
        (":status".to_string(), status.to_string()),
        ("content-type".to_string(), content_type.to_string()),
    ];
    let answer_bytes = answer;
    let answer = sim.response(headers, &split(answer, seed.rotate_left(3), 48))?;
    // What the provider wrote passes as is when nothing translates it.
    let translated = if anthropic { for_anthropic } else { for_openai };
    // An upstream stream cut inside a line is an error the client must see.
    let cut = content_type == "text/event-stream"
        && !answer_bytes.is_empty()
        && !answer_bytes.ends_with(b"\n");
    if translated && path != "/v1/models" && path != "/v1/embeddings" {
        well_formed(&answer, anthropic)?;
        if answer.status == 200 {
            terminated(&answer, anthropic, responses)?;
            let body = String::from_utf8_lossy(&answer.body);
            let sse_out = answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream"));
            // (An answer that finished before the cut bytes is whole.)
            let finished = body.contains("\"finish_reason\":\"")
                || body.contains("\"stop_reason\":\"")
                || body.contains("event: response.completed");
            check(
                !cut || !sse_out || finished || body.contains("error"),
                || format!("a stream cut mid-event ended quietly: {body:?}"),
            )?;
        }
    }
    Ok(answer)
}

/// ai-moderation on a streamed answer whose text is the input, split anywhere: the denied word
/// never reaches the client, a cut stream ends with `content_filter`, and a clean answer arrives
/// whole.
///
/// Input: `[window, split seed, text…]`.
pub fn moderation_stream(data: &[u8]) -> Result<(), String> {
    let [window, seed, text @ ..] = data else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(text).to_string();
    let config = format!(
        r#"{{"ai-moderation": {{"checkRequest": false, "checkResponse": true,
             "denyWords": ["forbidden"], "streamWindow": {}}},
            "ai-proxy": {{"provider": {{"type": "openai", "apiTokens": ["k"]}}}}}}"#,
        u32::from(*window % 64) + 1
    );
    let pipeline = one_filter(&config)?;
    let mut sim = Sim::new(
        pipeline,
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
        ],
    );
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    match sim.request(&[body])? {
        Sent::Upstream => {}
        _ => return Err("a clean request did not go upstream".into()),
    }
    // The text as content deltas of a few characters each, then the finish and [DONE].
    let mut stream = String::new();
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(usize::from(*seed % 7) + 1) {
        let piece: String = piece.iter().collect();
        let chunk = serde_json::json!({"id": "c", "object": "chat.completion.chunk",
            "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": piece}}]});
        stream.push_str(&format!("data: {chunk}\n\n"));
    }
    stream.push_str(r#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#);
    stream.push_str("\n\ndata: [DONE]\n\n");
    let headers = vec![
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "text/event-stream".to_string()),
    ];
    let answer = sim.response(headers, &split(stream.as_bytes(), *seed, 40))?;
    well_formed(&answer, false)?;
    let mut decoder = sdk::sse::SseDecoder::new(usize::MAX);
    let mut events = Vec::new();
    let _ = decoder.feed(&answer.body, &mut events);
    decoder.finish(&mut events);
    let mut seen = String::new();
    let mut finishes = Vec::new();
    for e in &events {
        let Ok(v) = serde_json::from_str::<Value>(&e.data) else {
            continue;
        };
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            seen.push_str(t);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finishes.push(f.to_string());
        }
    }
    // Whether the text holds the denied word is the matcher's verdict on the whole text (whole
    // words, case-insensitive); what the stream does must agree with it, whatever the windows.
    let rules = sdk::matching::Rules::new(&["forbidden".to_string()], &[])
        .map_err(|e| format!("rules: {e:?}"))?;
    let denied = rules.find(&text).is_some();
    check(rules.find(&seen).is_none(), || {
        format!("the denied word reached the client: {seen:?}")
    })?;
    if denied {
        check(finishes == ["content_filter"], || {
            format!("a cut stream finished with {finishes:?}")
        })
    } else {
        check(seen == text && finishes == ["stop"], || {
            format!("a clean answer changed: {text:?} → {seen:?} ({finishes:?})")
        })
    }
}

/// Every plugin's config parser, and the one-filter form: a config loads or is refused with an
/// error that names a field.
///
/// Input: `[root id, config…]`.
pub fn config(data: &[u8]) -> Result<(), String> {
    let (which, bytes) = first(data);
    let mut roots: Vec<&str> = ai_gateway::ORDER.to_vec();
    roots.push(ai_gateway::GATEWAY);
    let root = roots[usize::from(which) % roots.len()];
    match ai_gateway::loader(root, bytes) {
        Ok(_) => Ok(()),
        Err(e) => check(!e.path.is_empty() && !e.message.is_empty(), || {
            format!("{root}: error without a field: {e:?}")
        }),
    }
}

/// The client request types: what parses re-serializes to something that parses to the same.
pub fn request(data: &[u8]) -> Result<(), String> {
    use sdk::llm::{anthropic::MessagesRequest, openai::ChatRequest};
    if let Ok(chat) = serde_json::from_slice::<ChatRequest>(data) {
        let again = serde_json::to_vec(&chat).map_err(|e| e.to_string())?;
        let back: ChatRequest = serde_json::from_slice(&again).map_err(|e| e.to_string())?;
        check(back == chat, || {
            "chat request changed in a round trip".into()
        })?;
    }
    if let Ok(messages) = serde_json::from_slice::<MessagesRequest>(data) {
        let again = serde_json::to_vec(&messages).map_err(|e| e.to_string())?;
        let back: MessagesRequest = serde_json::from_slice(&again).map_err(|e| e.to_string())?;
        check(back == messages, || {
            "messages request changed in a round trip".into()
        })?;
    }
    Ok(())
}

/// The response-path JSON reader against `serde_json`: it accepts exactly what `serde_json`
/// accepts and reads the same values, and the usage extractor and text readers find the same
/// things through either.
pub fn usage(data: &[u8]) -> Result<(), String> {
    use sdk::usage::json::JsonDoc;
    use sdk::usage::{delta_text, from_json, request_text, response_model, response_text};
    let value = serde_json::from_slice::<Value>(data).ok();
    let mut doc = JsonDoc::new();
    let parsed = doc.parse_bytes(data);
    check(parsed == value.is_some(), || {
        format!("JsonDoc accepts: {parsed}, serde_json: {}", value.is_some())
    })?;
    let (Some(value), Some(json)) = (value, doc.root()) else {
        return Ok(());
    };
    check(json.to_value() == value, || {
        "JsonDoc read another value".into()
    })?;
    check(from_json(json) == from_json(&value), || {
        "usage differs between the readers".into()
    })?;
    check(response_model(json) == response_model(&value), || {
        "model differs between the readers".into()
    })?;
    let (mut a, mut b) = (String::new(), String::new());
    response_text(json, &mut a);
    delta_text(json, &mut a);
    request_text(json, &mut a);
    response_text(&value, &mut b);
    delta_text(&value, &mut b);
    request_text(&value, &mut b);
    check(a == b, || format!("texts differ: {a:?} / {b:?}"))?;
    if let Value::Array(events) = &value {
        let mut stream = sdk::usage::StreamUsage::default();
        for e in events {
            stream.on_event(e);
        }
        let _ = stream.usage();
    }
    Ok(())
}

/// The token counter: any split of a text counts the same as the whole, and never more tokens
/// than bytes.
pub fn tokens(data: &[u8]) -> Result<(), String> {
    use sdk::tokens::{count, Encoding, TokenCounter};
    let (seed, data) = first(data);
    let text = String::from_utf8_lossy(data);
    let Some(whole) = count(Encoding::O200k, &text) else {
        return Err("tokenizer unavailable".into());
    };
    check(whole <= text.len() as u64, || {
        format!("{whole} tokens for {} bytes", text.len())
    })?;
    let mut once = TokenCounter::new(Encoding::O200k);
    once.push(&text);
    let mut parts = TokenCounter::new(Encoding::O200k);
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(usize::from(seed % 13) + 1) {
        parts.push(&piece.iter().collect::<String>());
    }
    let (a, b) = (once.finish(), parts.finish());
    check(a == b, || format!("split counted {b:?}, whole {a:?}"))
}

/// The Responses API request through the gateway to an OpenAI-compatible provider: any body gets
/// a JSON answer or goes upstream with a JSON body.
pub fn responses(data: &[u8]) -> Result<(), String> {
    let mut sim = Sim::new(
        gateway_pipeline(PROVIDERS[0].0)?,
        &[
            (":method", "POST"),
            (":path", "/v1/responses"),
            (":authority", "gw"),
        ],
    );
    match sim.request(&[data])? {
        Sent::Replied(reply) => well_formed(&reply, false),
        Sent::Waiting => Ok(()),
        Sent::Upstream => {
            let sent = sim.host.request_body.borrow().clone();
            check(
                sent == data || serde_json::from_slice::<Value>(&sent).is_ok(),
                || "a rewritten Responses body is not JSON".into(),
            )
        }
    }
}

/// An mcp-server config with two tools (as the e2e suite's), on every route.
const MCP_CONFIG: &str = r#"{"ai-statistics": {}, "mcp-server": {
  "server": {"name": "weather-tools", "type": "rest", "config": {"apiKey": "k"}},
  "tools": [
    {"name": "get_weather", "description": "Current weather",
     "args": [{"name": "location", "type": "string", "required": true},
              {"name": "unit", "type": "string", "enum": ["c", "f"], "default": "c"}],
     "requestTemplate": {"url": "http://rest-api/weather?city={{.args.location}}", "method": "GET"},
     "responseTemplate": {"body": "Weather in {{.city}}"}},
    {"name": "get_forecast", "description": "Forecast",
     "args": [{"name": "city", "type": "string", "required": true},
              {"name": "days", "type": "integer", "required": true}],
     "requestTemplate": {"url": "http://rest-api/forecast", "method": "POST", "argsToJsonBody": true}}
  ],
  "consumers": [{"name": "bob", "allowTools": ["get_weather"]}]},
  "ai-proxy": {"provider": {"type": "openai", "apiTokens": ["k"]}}}"#;

/// A JSON-RPC answer: a response object (or a batch of them) with `jsonrpc: "2.0"` and a result
/// or an error.
fn json_rpc(v: &Value) -> bool {
    let one =
        |o: &Value| o["jsonrpc"] == "2.0" && (o.get("result").is_some() ^ o.get("error").is_some());
    match v {
        Value::Array(items) => !items.is_empty() && items.iter().all(one),
        other => one(other),
    }
}

/// mcp-server's JSON-RPC handling: any POST body, with any of the protocol headers, is answered
/// by the gateway itself (never the upstream): a JSON-RPC answer as JSON or one SSE event, a 202
/// for notifications, or a tool call going out to its cluster.
///
/// Input: `[header choice, body…]`.
pub fn mcp(data: &[u8]) -> Result<(), String> {
    let (choice, body) = first(data);
    let pipeline = one_filter(MCP_CONFIG)?;
    let version = ["2025-06-18", "2025-03-26", "2026-07-28", "1999-01-01"][usize::from(choice & 3)];
    let accept = [
        "application/json, text/event-stream",
        "text/event-stream, application/json",
        "application/json",
        "*/*",
    ][usize::from((choice >> 2) & 3)];
    let method = ["tools/call", "tools/list", "initialize", "server/discover"]
        [usize::from((choice >> 4) & 3)];
    let consumer = if choice & 0x40 != 0 { "bob" } else { "ann" };
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "gw"),
        ("content-type", "application/json"),
        ("accept", accept),
        ("x-mse-consumer", consumer),
    ];
    if choice & 0x80 != 0 {
        headers.push(("mcp-protocol-version", version));
        headers.push(("mcp-method", method));
    }
    let mut sim = Sim::new(pipeline, &headers);
    let chunks: Vec<&[u8]> = if body.is_empty() {
        Vec::new()
    } else {
        vec![body]
    };
    match sim.request(&chunks)? {
        Sent::Waiting => Ok(()),
        Sent::Upstream => Err("an MCP request reached the upstream".into()),
        Sent::Replied(reply) => {
            if reply.status == 202
                || reply.status == 405
                || reply.status == 415
                || reply.status == 406
            {
                return Ok(());
            }
            let sse = reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream"));
            let value = if sse {
                let events = sse_events(&reply.body)?;
                check(events.len() == 1, || format!("{} SSE events", events.len()))?;
                serde_json::from_str::<Value>(&events[0].data).map_err(|e| e.to_string())?
            } else {
                serde_json::from_slice::<Value>(&reply.body)
                    .map_err(|e| format!("{e}: {:?}", String::from_utf8_lossy(&reply.body)))?
            };
            check(json_rpc(&value), || {
                format!("not a JSON-RPC answer: {value}")
            })?;
            // bob may not see or call get_forecast.
            let text = value.to_string();
            check(
                consumer != "bob" || !text.contains("\"get_forecast\""),
                || format!("bob saw get_forecast: {text}"),
            )
        }
    }
}

/// ai-data-masking with restore, on a streamed chat: the provider never sees the phone number
/// or the e-mail address, and an answer that repeats the masked prompt (split anywhere) reaches
/// the client with the originals back, unchanged otherwise.
///
/// Input: `[split seed, text…]` (the text is reduced to letters and spaces).
pub fn masking(data: &[u8]) -> Result<(), String> {
    const PHONE: &str = "13812345678";
    const EMAIL: &str = "a.b@example.com";
    let (seed, text) = first(data);
    let letters: String = text
        .iter()
        .map(|b| match b % 28 {
            26 | 27 => ' ',
            n => char::from(b'a' + n),
        })
        .collect();
    let original = format!("{letters} call {PHONE} or mail {EMAIL} ok");
    let config = r#"{"ai-data-masking": {"replace_roles": [
        {"regex": "%{MOBILE}", "type": "replace", "restore": true, "value": "[phone]"},
        {"regex": "%{EMAILLOCALPART}@%{HOSTNAME:domain}", "type": "replace", "restore": true, "value": "****@$domain"}]},
        "ai-proxy": {"provider": {"type": "openai", "apiTokens": ["k"]}}}"#;
    let pipeline = one_filter(config)?;
    let mut sim = Sim::new(
        pipeline,
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
        ],
    );
    let body = serde_json::json!({"model": "m", "stream": true,
        "messages": [{"role": "user", "content": original}]})
    .to_string();
    match sim.request(&split(body.as_bytes(), seed, 64))? {
        Sent::Upstream => {}
        _ => return Err("a clean request did not go upstream".into()),
    }
    let sent: Value = serde_json::from_slice(&sim.host.request_body.borrow())
        .map_err(|e| format!("provider body: {e}"))?;
    let masked = sent["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    check(!masked.contains(PHONE) && !masked.contains(EMAIL), || {
        format!("the provider saw the originals: {masked}")
    })?;
    // The model repeats the masked prompt, a few characters an event.
    let mut stream = String::new();
    let chars: Vec<char> = masked.chars().collect();
    for piece in chars.chunks(usize::from(seed % 5) + 1) {
        let piece: String = piece.iter().collect();
        let chunk = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": piece}}]});
        stream.push_str(&format!("data: {chunk}\n\n"));
    }
    stream.push_str("data: [DONE]\n\n");
    let headers = vec![
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "text/event-stream".to_string()),
    ];
    let answer = sim.response(headers, &split(stream.as_bytes(), seed.rotate_left(2), 40))?;
    well_formed(&answer, false)?;
    let mut seen = String::new();
    for e in sse_events(&answer.body)? {
        if let Ok(v) = serde_json::from_str::<Value>(&e.data) {
            seen.push_str(
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or_default(),
            );
        }
    }
    check(seen == original, || {
        format!("restored {seen:?}, sent {original:?} (masked {masked:?})")
    })
}

/// A stage that calls a service before the provider, in front of an OpenAI provider: the
/// moderation service (fail open, fail closed), Alibaba Cloud content security, the quota store
/// (webdis), the embedding service and the vector store (ai-cache), the agent's model and tools,
/// and the rate limit service (gRPC).
const CALLOUT_CONFIGS: [&str; 7] = [
    r#""ai-moderation": {"checkRequest": true, "service": {"cluster": "mod", "timeout": 500, "failOpen": true}}"#,
    r#""ai-moderation": {"checkRequest": true, "service": {"cluster": "mod", "timeout": 500, "failOpen": false}}"#,
    r#""ai-security-guard": {"serviceName": "green", "servicePort": 80, "serviceHost": "green-cip.cn-shanghai.aliyuncs.com", "accessKey": "ak", "secretKey": "sk", "checkRequest": true, "timeout": 500}"#,
    r#""ai-quota": {"admin_consumer": "admin", "redis": {"service_name": "quota_store", "timeout": 500}}"#,
    r#""ai-cache": {"embedding": {"type": "openai", "serviceName": "emb", "model": "e", "timeout": 500}, "vector": {"type": "chroma", "serviceName": "chroma", "collectionID": "c", "threshold": 0.5, "thresholdRelation": "lt", "timeout": 500}, "cache": {"type": "chroma", "serviceName": "chroma", "collectionID": "x", "timeout": 500}}"#,
    r#""ai-agent": {"llm": {"apiKey": "k", "serviceName": "llm.svc", "servicePort": 80, "domain": "llm.example.com", "path": "/v1/chat/completions", "model": "m", "maxIterations": 3, "maxExecutionTime": 5000}, "apis": [{"apiProvider": {"serviceName": "weather.svc", "servicePort": 8080, "domain": "weather.example.com"}, "api": "openapi: 3.0.1\ninfo: {title: W, version: '1'}\npaths:\n  /weather:\n    get:\n      operationId: get_weather\n      parameters:\n        - {name: city, in: query, required: true, schema: {type: string}}\n"}]}"#,
    r#""ai-token-ratelimit": {"rule_name": "r", "backend": "rls", "global_threshold": {"token_per_hour": 1000}, "rls": {"cluster": "rls", "domain": "d", "timeout": 500, "failure_mode_deny": true}}"#,
];

/// Every service a plugin calls, answering anything (any status, any bytes, as many times as it
/// is called): the request is never left hanging — it goes on to the provider or gets a JSON
/// error in the client's protocol — and nothing panics.
///
/// Input: `[config, status, body…]`.
pub fn callouts(data: &[u8]) -> Result<(), String> {
    callouts_made(data).map(|_| ())
}

/// [`callouts`], returning how many callouts were answered.
pub fn callouts_made(data: &[u8]) -> Result<usize, String> {
    let [which, status, body @ ..] = data else {
        return Ok(0);
    };
    let stage = CALLOUT_CONFIGS[usize::from(*which) % CALLOUT_CONFIGS.len()];
    let status = [200u32, 200, 400, 404, 429, 500, 503, 0][usize::from(*status & 7)];
    let config = format!(
        r#"{{{stage}, "ai-proxy": {{"provider": {{"type": "openai", "apiTokens": ["k"]}}}}}}"#
    );
    let pipeline = one_filter(&config)?;
    let mut sim = Sim::new(
        pipeline,
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
            ("x-mse-consumer", "alice"),
        ],
    );
    let request = br#"{"model":"m","messages":[{"role":"user","content":"weather in Paris?"}]}"#;
    match sim.request(&[request])? {
        Sent::Upstream | Sent::Replied(_) => return Ok(0),
        Sent::Waiting => {}
    }
    // Answer each callout in turn with the same status and bytes, for as long as new ones come.
    let mut answered = 0;
    for _ in 0..8 {
        let pending: Vec<(u32, bool)> = sim
            .host
            .callouts
            .borrow()
            .iter()
            .enumerate()
            .skip(answered)
            .map(|(i, c)| (i as u32 + 1, c.headers.iter().any(|(k, _)| k == ":method")))
            .collect();
        if pending.is_empty() {
            break;
        }
        answered += pending.len();
        for (token, http) in pending {
            *sim.host.call_response_headers.borrow_mut() = if status == 0 {
                Vec::new()
            } else {
                vec![(":status".into(), status.to_string())]
            };
            *sim.host.call_response_body.borrow_mut() = body.to_vec();
            if http {
                sim.pipeline
                    .on_http_call_response(&sim.host, token, body.len());
            } else {
                let grpc = if status == 200 { 0 } else { 14 };
                sim.pipeline
                    .on_grpc_call_response(&sim.host, token, grpc, body.len());
            }
        }
    }
    if let Some(reply) = sim.host.local_reply() {
        let answer = Answer {
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
            local: true,
        };
        check(answer.status >= 200, || {
            format!("reply status {}", answer.status)
        })?;
        return well_formed(&answer, false).map(|()| answered);
    }
    let resumed = sim.host.resumed.borrow().0 > 0;
    let still_out = sim.host.callouts.borrow().len() > answered;
    check(resumed || still_out, || {
        format!(
            "the request hangs after {answered} callouts: neither resumed nor answered ({})",
            String::from_utf8_lossy(body)
        )
    })?;
    Ok(answered)
}
