//! OpenAI chat completions client in front of MiniMax's ChatCompletion Pro API (Higress type
//! `minimax` with `minimaxApiType: pro`): `POST /v1/text/chatcompletion_pro?GroupId=<id>`.
//!
//! The conversation goes out as MiniMax's sender-typed `messages` (`USER`/`BOT`) with the system
//! messages as `bot_setting` and `reply_constraints` naming the bot that answers, as Higress
//! sends it. Answers carry `reply`, `choices[].messages` and `base_resp` (a failure answers HTTP
//! 200 with a non-zero `base_resp.status_code`). In a stream each event carries the new text; the
//! last one repeats the whole reply with the finish reason, usage and `base_resp`.

use super::{err, max_tokens, parse, text_only, Decode, TranslateError};
use sdk::llm::openai;
use sdk::llm::stream::{Encoder, Event};
use sdk::sse::SseEvent;
use sdk::usage::{from_usage, Usage};
use serde_json::{json, Value};

/// ChatCompletion Pro path (the `GroupId` query is added from `minimaxGroupId`).
pub const PRO_PATH: &str = "/v1/text/chatcompletion_pro";
/// The bot's name when the system message names none (MiniMax's own assistant name).
pub const DEFAULT_BOT_NAME: &str = "MM智能助理";
/// The user's name when the message names none.
pub const DEFAULT_USER_NAME: &str = "用户";
/// The bot setting when the client sends no system message.
pub const DEFAULT_BOT_SETTING: &str = "MM智能助理是MiniMax自研的大型语言模型，回答用户的问题。";

fn name_or<'a>(msg: &'a openai::ChatMessage, default: &'a str) -> &'a str {
    msg.extra
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(default)
}

/// Builds the ChatCompletion Pro body for an OpenAI chat request.
pub fn to_minimax_pro_request(
    req: &openai::ChatRequest,
    model: &str,
) -> Result<Value, TranslateError> {
    let x = &req.extra;
    if x.get("tools").is_some_and(|t| !t.is_null()) {
        return Err(err(
            "tools are not supported with minimaxApiType pro (use the v2 API)",
        ));
    }
    let mut messages = Vec::new();
    let mut settings = Vec::new();
    let mut bot = DEFAULT_BOT_NAME.to_string();
    for msg in &req.messages {
        let text = text_only(msg, "MiniMax ChatCompletion Pro")?;
        match msg.role.as_str() {
            "system" | "developer" => {
                bot = name_or(msg, DEFAULT_BOT_NAME).to_string();
                settings.push(json!({"bot_name": bot, "content": text}));
            }
            "assistant" => messages.push(json!({"sender_type": "BOT",
                "sender_name": name_or(msg, DEFAULT_BOT_NAME), "text": text})),
            "user" => messages.push(json!({"sender_type": "USER",
                "sender_name": name_or(msg, DEFAULT_USER_NAME), "text": text})),
            other => {
                return Err(err(format!(
                    "message role {other:?} is not supported by MiniMax ChatCompletion Pro"
                )))
            }
        }
    }
    if settings.is_empty() {
        settings.push(json!({"bot_name": DEFAULT_BOT_NAME, "content": DEFAULT_BOT_SETTING}));
    }
    let mut out = json!({
        "model": model,
        "mask_sensitive_info": true,
        "messages": messages,
        "bot_setting": settings,
        "reply_constraints": {"sender_type": "BOT", "sender_name": bot},
    });
    if req.stream == Some(true) {
        out["stream"] = Value::Bool(true);
    }
    if let Some(max) = max_tokens(x) {
        out["tokens_to_generate"] = Value::from(max);
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = x.get(key).filter(|v| v.is_number()) {
            out[key] = v.clone();
        }
    }
    Ok(out)
}

/// MiniMax's failure in an answer (`base_resp.status_code` not 0), as text.
fn failure(v: &Value) -> Option<String> {
    let base = v.get("base_resp")?;
    let code = base.get("status_code").and_then(Value::as_i64)?;
    (code != 0).then(|| {
        let msg = base
            .get("status_msg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        format!("MiniMax error {code}: {msg}")
    })
}

/// The usage of an answer or event; ChatCompletion Pro often reports the total alone.
fn usage_of(v: &Value) -> Option<Usage> {
    v.get("usage").and_then(from_usage)
}

fn finish(reason: Option<&str>) -> Option<&'static str> {
    match reason? {
        "length" | "max_output" => Some("length"),
        "" => None,
        _ => Some("stop"),
    }
}

/// Reads a ChatCompletion Pro answer as the events of one answer: a choice per message the
/// bot sent, named by its sender, as Higress does.
pub fn read_pro_answer(
    body: &[u8],
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let v: Value = parse(body, "MiniMax answer is not JSON")?;
    if let Some(e) = failure(&v) {
        return Err(err(e));
    }
    let list = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| err("MiniMax answer without choices"))?;
    if let Some(created) = v.get("created").and_then(Value::as_u64) {
        enc.event(Event::Created(created), out);
    }
    let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
    enc.event(Event::Meta { id, model: "" }, out);
    let messages = list.iter().flat_map(|choice| {
        let reason = finish(choice.get("finish_reason").and_then(Value::as_str));
        let messages = choice.get("messages").and_then(Value::as_array);
        messages.into_iter().flatten().map(move |m| (m, reason))
    });
    for (n, (m, reason)) in messages.enumerate() {
        enc.event(Event::Choice(u32::try_from(n).unwrap_or(u32::MAX)), out);
        if let Some(name) = m.get("sender_name").and_then(Value::as_str) {
            enc.event(Event::Name(name), out);
        }
        enc.event(
            Event::Text(m.get("text").and_then(Value::as_str).unwrap_or_default()),
            out,
        );
        if let Some(reason) = reason {
            enc.event(Event::Finish(reason), out);
        }
    }
    if let Some(u) = usage_of(&v) {
        enc.event(Event::Usage(u), out);
    }
    Ok(())
}

/// Reads ChatCompletion Pro SSE into canonical events.
#[derive(Debug, Default)]
pub struct MinimaxProStream {
    met: bool,
}

impl Decode for MinimaxProStream {
    fn on_event(&mut self, event: &SseEvent, enc: &mut dyn Encoder, out: &mut String) {
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        if let Some(e) = failure(&v) {
            let (kind, code) = ("server_error", Some("upstream_error"));
            enc.event(
                Event::Error {
                    message: &e,
                    kind,
                    code,
                },
                out,
            );
            self.finish(enc, out);
            return;
        }
        if !self.met {
            self.met = true;
            let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
            enc.event(Event::Meta { id, model: "" }, out);
        }
        let choice = v.pointer("/choices/0");
        let reason = choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str);
        // The last event repeats the whole reply: only its finish reason and usage are new.
        let last = reason.is_some_and(|r| !r.is_empty()) || v.get("base_resp").is_some();
        if !last {
            let text: String = choice
                .and_then(|c| c.get("messages"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("text").and_then(Value::as_str))
                .collect();
            enc.event(Event::Text(&text), out);
            return;
        }
        enc.event(Event::Finish(finish(reason).unwrap_or("stop")), out);
        if let Some(u) = usage_of(&v) {
            enc.event(Event::Usage(u), out);
        }
        self.finish(enc, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::StreamTranslator;

    fn from_minimax_pro_response(
        body: &[u8],
        model: &str,
    ) -> Result<openai::ChatResponse, TranslateError> {
        crate::translate::whole_chat(model, Default::default(), |e, o| {
            read_pro_answer(body, e, o)
        })
    }

    fn chat(v: Value) -> openai::ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn request_as_higress_sends_it() {
        let out = to_minimax_pro_request(
            &chat(
                json!({"model": "x", "stream": true, "max_tokens": 100, "temperature": 0.5,
                "messages": [
                    {"role": "system", "content": "Be brief.", "name": "Bot"},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Bye", "name": "Ann"}]}),
            ),
            "abab6.5-chat",
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"model": "abab6.5-chat", "stream": true, "tokens_to_generate": 100,
                "temperature": 0.5, "mask_sensitive_info": true,
                "messages": [
                    {"sender_type": "USER", "sender_name": "用户", "text": "Hi"},
                    {"sender_type": "BOT", "sender_name": "MM智能助理", "text": "Hello"},
                    {"sender_type": "USER", "sender_name": "Ann", "text": "Bye"}],
                "bot_setting": [{"bot_name": "Bot", "content": "Be brief."}],
                "reply_constraints": {"sender_type": "BOT", "sender_name": "Bot"}})
        );
        let plain = to_minimax_pro_request(
            &chat(json!({"messages": [{"role": "user", "content": "Hi"}]})),
            "m",
        )
        .unwrap();
        assert_eq!(plain["bot_setting"][0]["bot_name"], DEFAULT_BOT_NAME);
        assert_eq!(plain["reply_constraints"]["sender_name"], DEFAULT_BOT_NAME);
        assert!(plain.get("stream").is_none());
        let tools = chat(json!({"messages": [{"role": "user", "content": "Hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]}));
        assert!(to_minimax_pro_request(&tools, "m").is_err());
    }

    #[test]
    fn answers_and_failures() {
        let body = r#"{"created":7,"model":"abab6.5-chat","reply":"Hello there","id":"r1",
            "choices":[{"finish_reason":"stop","messages":[{"sender_type":"BOT","sender_name":"MM智能助理","text":"Hello there"}]}],
            "usage":{"total_tokens":12},"base_resp":{"status_code":0,"status_msg":""}}"#;
        let r = from_minimax_pro_response(body.as_bytes(), "abab6.5-chat").unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["id"], "r1");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(v["choices"][0]["message"]["name"], "MM智能助理");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 12);
        let failed = br#"{"base_resp":{"status_code":1004,"status_msg":"authorization failure"}}"#;
        let e = from_minimax_pro_response(failed, "m").unwrap_err();
        assert_eq!(e.0, "MiniMax error 1004: authorization failure");
    }

    #[test]
    fn stream_pieces_then_the_repeated_whole() {
        let mut s = super::super::to_chat(
            MinimaxProStream::default(),
            "m",
            super::super::ReasoningMode::Passthrough,
        );
        let mut out = String::new();
        for data in [
            r#"{"created":1,"model":"m","reply":"","choices":[{"messages":[{"sender_type":"BOT","text":"Hel"}]}]}"#,
            r#"{"created":1,"model":"m","reply":"","choices":[{"messages":[{"sender_type":"BOT","text":"lo"}]}]}"#,
            r#"{"created":1,"model":"m","reply":"Hello","id":"r2","choices":[{"finish_reason":"stop","messages":[{"sender_type":"BOT","text":"Hello"}]}],"usage":{"total_tokens":5},"base_resp":{"status_code":0,"status_msg":""}}"#,
        ] {
            s.on_event(&SseEvent::data(data), &mut out);
        }
        s.finish(&mut out);
        let events: Vec<Value> = out
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect();
        let text: String = events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello");
        assert_eq!(
            events[events.len() - 2]["choices"][0]["finish_reason"],
            "stop"
        );
        assert_eq!(events[events.len() - 1]["usage"]["total_tokens"], 5);
        assert_eq!(out.matches("[DONE]").count(), 1);
        let mut s = super::super::to_chat(
            MinimaxProStream::default(),
            "m",
            super::super::ReasoningMode::Passthrough,
        );
        let mut out = String::new();
        s.on_event(
            &SseEvent::data(r#"{"base_resp":{"status_code":1002,"status_msg":"rate limit"}}"#),
            &mut out,
        );
        s.finish(&mut out);
        assert!(out.contains("MiniMax error 1002: rate limit"), "{out}");
        assert_eq!(out.matches("[DONE]").count(), 1);
    }
}
