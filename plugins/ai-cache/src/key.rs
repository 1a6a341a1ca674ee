//! What a request's cache entry is keyed by, and whether it is cached at all.
//!
//! The key is a SHA-256 over everything that changes the answer: the route, the consumer (with
//! `cacheScope: consumer`), the model, the system prompt, the chosen questions
//! (`cacheKeyStrategy` or `cacheKeyFrom`), and the tools, `tool_choice` and `response_format`.
//! Semantic lookups search only among entries of the same scope (all of that but the
//! questions), so a near question never crosses a route, model, system prompt or consumer.

use crate::config::{CacheConfig, KeyStrategy};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A request the cache serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The exact key (`cacheKeyPrefix` + hex SHA-256).
    pub key: String,
    /// Hex SHA-256 of the scope (the key without the questions).
    pub scope: String,
    /// The chosen questions as text (what is embedded).
    pub text: String,
    /// The client asked for a stream.
    pub stream: bool,
}

/// Whether and how a request is cached.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Looked up, and stored on a miss.
    Cache(Question),
    /// Passed through untouched, for this reason.
    Bypass(&'static str),
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha(value: &Value) -> String {
    hex(&Sha256::digest(value.to_string().as_bytes()))
}

/// The text of message content: a string, or the text parts joined.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn is_tool_result(message: &Value) -> bool {
    let role = message.get("role").and_then(Value::as_str);
    role == Some("tool")
        || message
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            })
}

/// Decides for one chat (`/v1/chat/completions`) or Messages (`/v1/messages`) body.
pub fn decide(config: &CacheConfig, body: &Value, route: &str, consumer: Option<&str>) -> Decision {
    if config.cache_key_strategy == KeyStrategy::Disabled {
        return Decision::Bypass("disabled");
    }
    if body.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Decision::Bypass("n");
    }
    let temperature = body.get("temperature").and_then(Value::as_f64);
    if let (Some(t), Some(max)) = (temperature, config.max_temperature) {
        if t > max {
            return Decision::Bypass("temperature");
        }
    }
    let tools = body.get("tools").filter(|t| !t.is_null());
    if tools.is_some() && !config.cache_tools {
        return Decision::Bypass("tools");
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Decision::Bypass("no messages");
    };
    let Some(last) = messages.last() else {
        return Decision::Bypass("no messages");
    };
    // An answer to a tool result depends on the whole exchange before it.
    if last.get("role").and_then(Value::as_str) != Some("user") || is_tool_result(last) {
        return Decision::Bypass("not a question");
    }
    let role = |m: &&Value, r: &[&str]| {
        m.get("role")
            .and_then(Value::as_str)
            .is_some_and(|x| r.contains(&x))
    };
    let null = Value::Null;
    let content = |m: &Value| m.get("content").unwrap_or(&null).clone();
    let mut system: Vec<Value> = messages
        .iter()
        .filter(|m| role(m, &["system", "developer"]))
        .map(content)
        .collect();
    if let Some(s) = body.get("system") {
        system.push(s.clone());
    }
    let (questions, text) = match &config.key_path {
        Some(path) => match path.text(body) {
            Some(t) => (Value::String(t.clone()), t),
            None => return Decision::Bypass("cacheKeyFrom found nothing"),
        },
        None => {
            let users: Vec<&Value> = messages.iter().filter(|m| role(m, &["user"])).collect();
            let chosen: Vec<&Value> = match config.cache_key_strategy {
                KeyStrategy::AllQuestions => users,
                _ => users.last().copied().into_iter().collect(),
            };
            let text = chosen
                .iter()
                .map(|m| content_text(m.get("content").unwrap_or(&null)))
                .collect::<Vec<_>>()
                .join("\n");
            (chosen.into_iter().map(content).collect(), text)
        }
    };
    let mut scope = json!({
        "v": 1,
        "route": route,
        "consumer": consumer.unwrap_or_default(),
        "model": body.get("model").unwrap_or(&null),
        "system": system,
        "tools": tools.unwrap_or(&null),
        "tool_choice": body.get("tool_choice").unwrap_or(&null),
        "response_format": body.get("response_format").unwrap_or(&null),
    });
    let scope_hash = sha(&scope);
    scope["questions"] = questions;
    Decision::Cache(Question {
        key: format!("{}{}", config.prefix(), sha(&scope)),
        scope: scope_hash,
        text,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::config::{from_value, Validate};

    fn config(v: Value) -> CacheConfig {
        let mut c: CacheConfig = from_value(v, &mut Vec::new()).unwrap();
        c.validate().unwrap();
        c
    }

    fn key(c: &CacheConfig, body: Value, route: &str, consumer: Option<&str>) -> Option<Question> {
        match decide(c, &body, route, consumer) {
            Decision::Cache(q) => Some(q),
            Decision::Bypass(_) => None,
        }
    }

    fn chat(system: &str, question: &str) -> Value {
        json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question}]})
    }

    #[test]
    fn the_key_covers_what_changes_the_answer() {
        let c = config(json!({}));
        let base = key(&c, chat("s", "q"), "r", None).unwrap();
        assert!(base.key.starts_with("higress-ai-cache:"));
        assert_eq!(base.text, "q");
        assert_eq!(key(&c, chat("s", "q"), "r", None), Some(base.clone()));
        let other_system = key(&c, chat("t", "q"), "r", None).unwrap();
        assert_ne!(other_system.key, base.key);
        assert_ne!(other_system.scope, base.scope);
        assert_ne!(key(&c, chat("s", "q"), "r2", None).unwrap().key, base.key);
        assert_ne!(key(&c, chat("s", "q2"), "r", None).unwrap().key, base.key);
        assert_eq!(
            key(&c, chat("s", "q2"), "r", None).unwrap().scope,
            base.scope
        );
        let mut other_model = chat("s", "q");
        other_model["model"] = json!("gpt-4o-mini");
        assert_ne!(key(&c, other_model, "r", None).unwrap().key, base.key);
        let mut tools = chat("s", "q");
        tools["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        assert_ne!(key(&c, tools.clone(), "r", None).unwrap().key, base.key);
        // The stream flag does not change the answer.
        let mut streamed = chat("s", "q");
        streamed["stream"] = json!(true);
        let s = key(&c, streamed, "r", None).unwrap();
        assert_eq!((s.key.as_str(), s.stream), (base.key.as_str(), true));
        // Consumers never share when scoped.
        assert_ne!(
            key(&c, chat("s", "q"), "r", Some("ann")).unwrap().key,
            key(&c, chat("s", "q"), "r", Some("bob")).unwrap().key
        );
        let no_tools = config(json!({"cacheTools": false}));
        assert_eq!(
            decide(&no_tools, &tools, "r", None),
            Decision::Bypass("tools")
        );
    }

    #[test]
    fn strategies_choose_the_questions() {
        let conv = json!({"model": "m", "messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]}]});
        let last = key(&config(json!({})), conv.clone(), "r", None).unwrap();
        assert_eq!(last.text, "b");
        let all = key(
            &config(json!({"cacheKeyStrategy": "allQuestions"})),
            conv.clone(),
            "r",
            None,
        )
        .unwrap();
        assert_eq!(all.text, "a\nb");
        assert_ne!(all.key, last.key);
        let from = config(json!({"cacheKeyFrom": "messages.0.content"}));
        assert_eq!(key(&from, conv.clone(), "r", None).unwrap().text, "a");
        let off = config(json!({"cacheKeyStrategy": "disabled"}));
        assert_eq!(decide(&off, &conv, "r", None), Decision::Bypass("disabled"));
    }

    #[test]
    fn rules_for_n_temperature_and_tool_results() {
        let c = config(json!({"maxTemperature": 0.5}));
        let mut b = chat("s", "q");
        b["n"] = json!(2);
        assert_eq!(decide(&c, &b, "r", None), Decision::Bypass("n"));
        let mut b = chat("s", "q");
        b["temperature"] = json!(0.9);
        assert_eq!(decide(&c, &b, "r", None), Decision::Bypass("temperature"));
        b["temperature"] = json!(0.2);
        assert!(key(&c, b, "r", None).is_some());
        let tool = json!({"model": "m", "messages": [{"role": "user", "content": "q"},
            {"role": "tool", "tool_call_id": "c", "content": "42"}]});
        assert_eq!(
            decide(&c, &tool, "r", None),
            Decision::Bypass("not a question")
        );
        let anthropic_tool = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": "42"}]}]});
        assert_eq!(
            decide(&c, &anthropic_tool, "r", None),
            Decision::Bypass("not a question")
        );
        // Anthropic's system field is the system prompt.
        let a =
            json!({"model": "m", "system": "s1", "messages": [{"role": "user", "content": "q"}]});
        let b =
            json!({"model": "m", "system": "s2", "messages": [{"role": "user", "content": "q"}]});
        assert_ne!(
            key(&c, a, "r", None).unwrap().key,
            key(&c, b, "r", None).unwrap().key
        );
    }
}
