//! OpenAI wire format: chat completions, legacy completions, embeddings and
//! the model list.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::{MockControl, RequestCtx};
use crate::reply::{self, count_words};
use crate::stream::{self, sse_data, sse_done};

/// Id of the single tool call the mock makes.
const TOOL_CALL_ID: &str = "call_mock_1";
/// Arguments of that tool call, streamed in two halves.
const TOOL_ARGS: [&str; 2] = ["{\"location\":", "\"Paris\"}"];
/// Completion tokens charged for a tool call reply.
const TOOL_CALL_TOKENS: usize = 5;
/// Dimensions of the mock embeddings.
const EMBEDDING_DIMS: usize = 256;

/// The OpenAI routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
}

/// `{"prompt_tokens","completion_tokens","total_tokens"}`.
fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// The request's `model`, echoed back (`"unknown"` when absent).
fn model_of(req: &Value) -> String {
    req.get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned()
}

fn is_stream(req: &Value) -> bool {
    req.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

fn include_usage(req: &Value, control: &MockControl) -> bool {
    control.usage
        && req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false)
}

/// Prompt tokens of a chat request: words in every message's string
/// `content` and in the `text` of content parts.
pub fn message_words(req: &Value) -> usize {
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return 0;
    };
    messages
        .iter()
        .map(|message| match message.get("content") {
            Some(Value::String(text)) => count_words(text),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .map(count_words)
                .sum(),
            _ => 0,
        })
        .sum()
}

/// The tool to call: the first tool's name, when `tools` is non-empty and
/// the last message is from the user.
pub fn tool_to_call(req: &Value) -> Option<String> {
    let first = req.get("tools")?.as_array()?.first()?;
    let last_role = req
        .get("messages")?
        .as_array()?
        .last()?
        .get("role")?
        .as_str()?;
    if last_role != "user" {
        return None;
    }
    let name = first
        .pointer("/function/name")
        .or_else(|| first.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("unknown_tool");
    Some(name.to_owned())
}

/// Marker in a message's text that turns on the agent behaviour: with `tools`, a tool call
/// for the first tool after the user's message (arguments from a `mock-args=<JSON object>`
/// marker, else `{"location":"Paris"}`), and after tool results a text quoting them.
pub const AGENT_MARKER: &str = "[mock-agent]";
/// With [`AGENT_MARKER`]: ask for the first tool after every turn, never answering.
pub const AGENT_LOOP_MARKER: &str = "[mock-agent-loop]";
const ARGS_MARKER: &str = "mock-args=";
/// With [`AGENT_MARKER`] and no `tools`: the ReAct text protocol for the tool named after it
/// (`Action:`/`Action Input:` after the question, `Final Answer:` quoting an `Observation:`).
const REACT_MARKER: &str = "mock-react-tool=";

/// What the agent behaviour answers.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentTurn {
    /// A tool call: id, tool name, arguments (JSON text).
    Call(String, String, String),
    /// Text quoting the tool results.
    Text(String),
}

/// The agent behaviour's answer, when a message carries [`AGENT_MARKER`].
pub fn agent_turn(req: &Value) -> Option<AgentTurn> {
    let messages = req.get("messages")?.as_array()?;
    let texts: Vec<String> = messages
        .iter()
        .map(|m| match m.get("content") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
            _ => String::new(),
        })
        .collect();
    let marked = |m: &str| texts.iter().any(|t| t.contains(m));
    if !marked(AGENT_MARKER) && !marked(AGENT_LOOP_MARKER) {
        return None;
    }
    fn role(m: &Value) -> &str {
        m.get("role").and_then(Value::as_str).unwrap_or_default()
    }
    let last = messages.last().map(role).unwrap_or_default();
    let args_of = |texts: &[String]| {
        texts
            .iter()
            .find_map(|t| {
                let at = t.find(ARGS_MARKER)?;
                let rest = &t[at + ARGS_MARKER.len()..];
                let mut de = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
                de.next()?.ok().filter(Value::is_object)
            })
            .map_or_else(|| TOOL_ARGS.concat(), |v| v.to_string())
    };
    let react_tool = texts.iter().find_map(|t| {
        let at = t.find(REACT_MARKER)?;
        t[at + REACT_MARKER.len()..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .map(str::to_string)
    });
    if let (Some(tool), None) = (&react_tool, req.get("tools")) {
        let last_text = texts.last().map(String::as_str).unwrap_or_default();
        return Some(AgentTurn::Text(
            match last_text.strip_prefix("Observation:") {
                Some(result) if !marked(AGENT_LOOP_MARKER) => format!(
                    "Thought: I now know the final answer\nFinal Answer: The tool said: {}",
                    result.trim()
                ),
                _ => format!(
                    "Thought: I should call {tool}\nAction: {tool}\nAction Input: {}",
                    args_of(&texts)
                ),
            },
        ));
    }
    let first_tool = req
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(|t| t.pointer("/function/name").and_then(Value::as_str));
    if let Some(name) = first_tool {
        if last == "user" || marked(AGENT_LOOP_MARKER) {
            let args = args_of(&texts);
            let done = messages.iter().filter(|m| role(m) == "tool").count();
            return Some(AgentTurn::Call(
                format!("call_mock_{}", done + 1),
                name.to_string(),
                args,
            ));
        }
    }
    // The results of the last turn's tool calls.
    let results: Vec<&str> = messages
        .iter()
        .rev()
        .take_while(|m| role(m) == "tool")
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .collect();
    if results.is_empty() {
        return None;
    }
    let quoted: Vec<&str> = results.into_iter().rev().collect();
    Some(AgentTurn::Text(format!(
        "The tool said: {}",
        quoted.join(" | ")
    )))
}

/// Prompt tokens of a `prompt`/`input` value: words of strings, length of
/// token arrays, summed over arrays.
pub fn input_units(value: &Value) -> usize {
    match value {
        Value::String(text) => count_words(text),
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(input_units).sum(),
        _ => 0,
    }
}

/// Splits text into stream pieces, one word each with the whitespace that
/// follows it (leading whitespace stays with the first piece), so that the
/// pieces concatenate back to the text.
pub fn split_pieces(text: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut seen_word = false;
    for ch in text.chars() {
        let space = ch.is_whitespace();
        if !space && !in_word && seen_word {
            pieces.push(std::mem::take(&mut current));
        }
        if !space {
            seen_word = true;
        }
        in_word = !space;
        current.push(ch);
    }
    if seen_word {
        pieces.push(current);
    }
    pieces
}

/// Content pieces of a streamed reply: `x-mock-content` split by
/// [`split_pieces`], else `w0 `, `w1 `, ... (`x-mock-chunks` of them).
pub fn stream_pieces(control: &MockControl) -> Vec<String> {
    match &control.content {
        Some(text) => split_pieces(text),
        None => (0..control.chunks)
            .map(|i| {
                let piece = format!("w{i}");
                match control.piece_bytes {
                    Some(n) if n > piece.len() + 1 => {
                        format!("{piece}{} ", "x".repeat(n - piece.len() - 1))
                    }
                    _ => format!("{piece} "),
                }
            })
            .collect(),
    }
}

async fn chat_completions(Extension(ctx): Extension<RequestCtx>, body: Bytes) -> Response {
    let req = match reply::parse_json(&body) {
        Ok(req) => req,
        Err(msg) => return reply::invalid_request(&msg),
    };
    let model = model_of(&req);
    let id = format!("chatcmpl-mock-{}", ctx.id);
    let created = reply::unix_now();
    let prompt = message_words(&req);
    let control = &ctx.control;
    let agent = agent_turn(&req);
    let (tool, call_id, call_args) = match &agent {
        Some(AgentTurn::Call(id, name, args)) => (Some(name.clone()), id.clone(), args.clone()),
        Some(AgentTurn::Text(_)) => (None, TOOL_CALL_ID.to_string(), String::new()),
        None => (
            tool_to_call(&req),
            TOOL_CALL_ID.to_string(),
            TOOL_ARGS.concat(),
        ),
    };
    let agent_text = match &agent {
        Some(AgentTurn::Text(t)) => Some(t.clone()),
        _ => None,
    };

    if is_stream(&req) {
        let chunk = |delta: Value, finish: Option<&str>| {
            sse_data(&json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }))
        };
        let mut frames = Vec::new();
        let (finish, completion) = match &tool {
            Some(name) => {
                frames.push(chunk(
                    json!({"role": "assistant", "content": null, "tool_calls": [{
                        "index": 0, "id": call_id, "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]}),
                    None,
                ));
                let half = call_args.len() / 2;
                let half = (0..=half)
                    .rev()
                    .find(|i| call_args.is_char_boundary(*i))
                    .unwrap_or(0);
                for part in [&call_args[..half], &call_args[half..]] {
                    frames.push(chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                        None,
                    ));
                }
                ("tool_calls", TOOL_CALL_TOKENS)
            }
            None => {
                frames.push(chunk(json!({"role": "assistant", "content": ""}), None));
                let pieces = match &agent_text {
                    Some(text) => split_pieces(text),
                    None => stream_pieces(control),
                };
                for piece in &pieces {
                    frames.push(chunk(json!({"content": piece}), None));
                }
                ("stop", pieces.len())
            }
        };
        frames.push(chunk(json!({}), Some(finish)));
        if include_usage(&req, control) {
            frames.push(sse_data(&json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": usage(prompt, completion),
            })));
        }
        frames.push(sse_done());
        return stream::sse_response(frames, control.pacing());
    }

    let (message, finish, completion) = match &tool {
        Some(name) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": call_id, "type": "function",
                "function": {"name": name, "arguments": call_args},
            }]}),
            "tool_calls",
            TOOL_CALL_TOKENS,
        ),
        None => {
            let text = agent_text.unwrap_or_else(|| reply_text(control, &model));
            let words = count_words(&text);
            (json!({"role": "assistant", "content": text}), "stop", words)
        }
    };
    let mut out = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    });
    if control.usage {
        out["usage"] = usage(prompt, completion);
    }
    reply::json(StatusCode::OK, out)
}

/// The whole reply text of a non-streamed completion.
fn reply_text(control: &MockControl, model: &str) -> String {
    control
        .content
        .clone()
        .unwrap_or_else(|| format!("mock reply from {model}"))
}

async fn completions(Extension(ctx): Extension<RequestCtx>, body: Bytes) -> Response {
    let req = match reply::parse_json(&body) {
        Ok(req) => req,
        Err(msg) => return reply::invalid_request(&msg),
    };
    let model = model_of(&req);
    let id = format!("cmpl-mock-{}", ctx.id);
    let created = reply::unix_now();
    let prompt = req.get("prompt").map(input_units).unwrap_or(0);
    let control = &ctx.control;
    let object = |choices: Value| {
        json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": choices,
        })
    };
    let choice = |text: &str, finish: Option<&str>| json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]);

    if is_stream(&req) {
        let pieces = stream_pieces(control);
        let mut frames: Vec<Bytes> = pieces
            .iter()
            .map(|piece| sse_data(&object(choice(piece, None))))
            .collect();
        frames.push(sse_data(&object(choice("", Some("stop")))));
        if include_usage(&req, control) {
            let mut last = object(json!([]));
            last["usage"] = usage(prompt, pieces.len());
            frames.push(sse_data(&last));
        }
        frames.push(sse_done());
        return stream::sse_response(frames, control.pacing());
    }

    let text = reply_text(control, &model);
    let mut out = object(choice(&text, Some("stop")));
    if control.usage {
        out["usage"] = usage(prompt, count_words(&text));
    }
    reply::json(StatusCode::OK, out)
}

/// Embedding inputs as (hash key, token count): a string, a token array, or
/// an array of either.
pub fn embedding_inputs(input: &Value) -> Option<Vec<(String, usize)>> {
    let one = |item: &Value| match item {
        Value::String(text) => Some((text.clone(), count_words(text))),
        Value::Array(tokens) if tokens.iter().all(Value::is_number) => {
            Some((item.to_string(), tokens.len()))
        }
        _ => None,
    };
    match input {
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_number) => one(input).map(|x| vec![x]),
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|x| vec![x]),
    }
}

/// A deterministic bag-of-words embedding: every lowercase word (letters and digits) adds 1 to
/// the dimension its FNV-1a hash picks, then the vector is scaled to length 1 (rounded to 6
/// decimals). Texts that share words are near (cosine = shared words), unrelated texts are
/// far: what a semantic cache test needs from a real embedding model, without one.
pub fn embed(text: &str) -> Vec<f64> {
    let mut v = vec![0.0f64; EMBEDDING_DIMS];
    let lower = text.to_lowercase();
    for word in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in word.bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        v[(h % EMBEDDING_DIMS as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x = (*x / norm * 1e6).round() / 1e6;
        }
    }
    v
}

async fn embeddings(Extension(_ctx): Extension<RequestCtx>, body: Bytes) -> Response {
    let req = match reply::parse_json(&body) {
        Ok(req) => req,
        Err(msg) => return reply::invalid_request(&msg),
    };
    let Some(inputs) = req.get("input").and_then(embedding_inputs) else {
        return reply::invalid_request(
            "'input' must be a string, a token array, or a non-empty array of them",
        );
    };
    let prompt: usize = inputs.iter().map(|(_, tokens)| tokens).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, (key, _))| json!({"object": "embedding", "index": index, "embedding": embed(key)}))
        .collect();
    reply::json(
        StatusCode::OK,
        json!({
            "object": "list", "data": data, "model": model_of(&req),
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }),
    )
}

async fn models() -> Response {
    let model = |id: &str| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"});
    reply::json(
        StatusCode::OK,
        json!({"object": "list", "data": [model("mock-gpt"), model("mock-gpt-mini"), model("mock-embedding")]}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_message_words() {
        let req = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi there you"}, {"type": "image_url"}]},
            {"role": "assistant", "content": null},
        ]});
        assert_eq!(message_words(&req), 5);
        assert_eq!(message_words(&json!({})), 0);
    }

    #[test]
    fn picks_tool_only_after_user_message() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
        let user = json!({"tools": tools, "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(tool_to_call(&user).as_deref(), Some("get_weather"));
        let tool = json!({"tools": tools, "messages": [{"role": "tool", "content": "x"}]});
        assert_eq!(tool_to_call(&tool), None);
        let empty = json!({"tools": [], "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(tool_to_call(&empty), None);
    }

    #[test]
    fn agent_marker_calls_then_quotes_and_loop_never_stops() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
        let plain = json!({"tools": tools, "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(agent_turn(&plain), None);
        let ask = json!({"tools": tools, "messages": [
            {"role": "user", "content": "[mock-agent] weather mock-args={\"city\": \"Oslo\"} please"}]});
        assert_eq!(
            agent_turn(&ask),
            Some(AgentTurn::Call(
                "call_mock_1".into(),
                "get_weather".into(),
                r#"{"city":"Oslo"}"#.into()
            ))
        );
        let answered = json!({"tools": tools, "messages": [
            {"role": "user", "content": "[mock-agent] weather"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny"}]});
        assert_eq!(
            agent_turn(&answered),
            Some(AgentTurn::Text("The tool said: sunny".into()))
        );
        let looping = json!({"tools": tools, "messages": [
            {"role": "user", "content": "[mock-agent-loop] weather"},
            {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny"}]});
        assert_eq!(
            agent_turn(&looping),
            Some(AgentTurn::Call(
                "call_mock_2".into(),
                "get_weather".into(),
                TOOL_ARGS.concat()
            ))
        );
    }

    #[test]
    fn react_marker_speaks_the_text_protocol() {
        let ask = json!({"messages": [
            {"role": "system", "content": "tools..."},
            {"role": "user", "content": "[mock-agent] mock-react-tool=get_weather mock-args={\"city\":\"Rome\"}"}]});
        assert_eq!(
            agent_turn(&ask),
            Some(AgentTurn::Text("Thought: I should call get_weather\nAction: get_weather\nAction Input: {\"city\":\"Rome\"}".into()))
        );
        let seen = json!({"messages": [
            {"role": "user", "content": "[mock-agent] mock-react-tool=get_weather"},
            {"role": "assistant", "content": "Action: get_weather"},
            {"role": "user", "content": "Observation: warm"}]});
        assert_eq!(
            agent_turn(&seen),
            Some(AgentTurn::Text(
                "Thought: I now know the final answer\nFinal Answer: The tool said: warm".into()
            ))
        );
    }

    #[test]
    fn counts_prompt_units() {
        assert_eq!(input_units(&json!("a b c")), 3);
        assert_eq!(input_units(&json!(["a b", "c"])), 3);
        assert_eq!(input_units(&json!([1, 2, 3, 4])), 4);
        assert_eq!(input_units(&json!([[1, 2], [3]])), 3);
    }

    #[test]
    fn splits_pieces_losslessly() {
        assert_eq!(
            split_pieces("hello big  world"),
            ["hello ", "big  ", "world"]
        );
        assert_eq!(split_pieces(" lead trail "), [" lead ", "trail "]);
        assert!(split_pieces("   ").is_empty());
        assert!(split_pieces("").is_empty());
    }

    #[test]
    fn plans_stream_pieces() {
        let default = MockControl::default();
        assert_eq!(stream_pieces(&default), ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]);
        let two = MockControl {
            chunks: 2,
            ..MockControl::default()
        };
        assert_eq!(stream_pieces(&two).concat(), "w0 w1 ");
        let content = MockControl {
            chunks: 9,
            content: Some("a b".into()),
            ..MockControl::default()
        };
        assert_eq!(stream_pieces(&content), ["a ", "b"]);
    }

    #[test]
    fn parses_embedding_inputs() {
        let keys = |v: Value| {
            embedding_inputs(&v).map(|i| i.into_iter().map(|(_, n)| n).collect::<Vec<_>>())
        };
        assert_eq!(keys(json!("a b")), Some(vec![2]));
        assert_eq!(keys(json!(["a", "b c"])), Some(vec![1, 2]));
        assert_eq!(keys(json!([5, 6, 7])), Some(vec![3]));
        assert_eq!(keys(json!([[5, 6], [7]])), Some(vec![2, 1]));
        assert_eq!(keys(json!([])), None);
        assert_eq!(keys(json!({"x": 1})), None);
    }

    #[test]
    fn embeddings_are_deterministic_and_bounded() {
        let a = embed("hello");
        assert_eq!(a.len(), EMBEDDING_DIMS);
        assert_eq!(a, embed("hello"));
        assert_ne!(a, embed("hello there"));
        assert!(a.iter().all(|x| (-1.0..=1.0).contains(x)));
        // Near for shared words, far for none.
        let cos = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let q = embed("What is the capital of France?");
        assert!(cos(&q, &embed("what is the capital city of France")) > 0.85);
        assert!(cos(&q, &embed("How do I bake sourdough bread?")) < 0.3);
    }
}
