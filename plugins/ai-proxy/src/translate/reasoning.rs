//! `reasoningContentMode` for answers already in OpenAI's shape (OpenAI-compatible providers
//! such as DeepSeek, and Anthropic answers after translation): `reasoning_content` dropped
//! (`ignore`) or put in front of the content as `<think>…</think>\n` (`concat`).

use super::{ReasoningMode, StreamTranslator};
use sdk::llm::{openai, Extra};
use sdk::sse::SseEvent;
use serde_json::Value;

/// Applies `mode` to the messages of a whole answer.
pub fn apply_to_response(resp: &mut openai::ChatResponse, mode: ReasoningMode) {
    if mode == ReasoningMode::Passthrough {
        return;
    }
    for choice in &mut resp.choices {
        let msg = &mut choice.message;
        let reasoning = msg
            .extra
            .remove("reasoning_content")
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|r| !r.is_empty());
        if let (ReasoningMode::Concat, Some(r)) = (mode, reasoning) {
            let content = msg
                .content
                .as_ref()
                .map(openai::Content::text)
                .unwrap_or_default();
            msg.content = Some(openai::Content::Text(format!(
                "<think>{r}</think>\n{content}"
            )));
        }
    }
}

/// Applies a mode to an OpenAI SSE stream, event by event; keeps only whether a `<think>` is open
/// per choice.
pub struct ReasoningFilter {
    mode: ReasoningMode,
    open: Vec<u32>,
}

impl ReasoningFilter {
    /// A filter for `mode` (not `Passthrough`, which needs none).
    pub fn new(mode: ReasoningMode) -> Self {
        ReasoningFilter {
            mode,
            open: Vec::new(),
        }
    }

    /// Rewrites one choice's delta; false when nothing is left worth sending.
    fn delta(&mut self, index: u32, choice: &mut Value) -> bool {
        let finish = choice.get("finish_reason").is_some_and(|f| !f.is_null());
        let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
            return true;
        };
        let reasoning = delta
            .remove("reasoning_content")
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|r| !r.is_empty());
        if self.mode == ReasoningMode::Ignore {
            return reasoning.is_none() || !delta.is_empty() || finish;
        }
        let is_open = self.open.contains(&index);
        let mut text = String::new();
        if let Some(r) = reasoning {
            if !is_open {
                text.push_str("<think>");
                self.open.push(index);
            }
            text.push_str(&r);
        } else if is_open
            && (delta
                .get("content")
                .is_some_and(|c| c.as_str().is_some_and(|s| !s.is_empty()))
                || delta.contains_key("tool_calls")
                || finish)
        {
            text.push_str("</think>\n");
            self.open.retain(|i| *i != index);
        }
        if !text.is_empty() {
            let rest = delta
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default();
            text.push_str(rest);
            delta.insert("content".into(), Value::String(text));
        }
        true
    }
}

impl StreamTranslator for ReasoningFilter {
    fn on_event(&mut self, event: &SseEvent, out: &mut String) {
        let Ok(mut v) = serde_json::from_str::<Value>(&event.data) else {
            // `[DONE]` and anything else pass as they came.
            event.encode_into(out);
            return;
        };
        let mut keep = true;
        if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
            let mut kept = false;
            for choice in choices.iter_mut() {
                let index = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(0);
                kept |= self.delta(index, choice);
            }
            keep = kept || choices.is_empty() || v.get("usage").is_some_and(|u| !u.is_null());
        }
        if keep {
            SseEvent::data(v.to_string()).encode_into(out);
        }
    }

    fn finish(&mut self, _out: &mut String) {}
}

/// An Anthropic client's `thinking`, kept past the conversion to OpenAI's shape for the types
/// whose own thinking switch Higress sets from it (OpenRouter, ZhipuAI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientThinking {
    /// `thinking.type` is `enabled`.
    pub enabled: bool,
    /// `thinking.budget_tokens`, when enabled.
    pub budget: Option<u64>,
}

impl ClientThinking {
    /// Reads a Messages request's `thinking` (absent: not enabled).
    pub fn of(extra: &Extra) -> ClientThinking {
        let thinking = extra.get("thinking");
        let enabled =
            thinking.and_then(|t| t.get("type")).and_then(Value::as_str) == Some("enabled");
        ClientThinking {
            enabled,
            budget: thinking
                .and_then(|t| t.get("budget_tokens"))
                .and_then(Value::as_u64)
                .filter(|b| enabled && *b > 0),
        }
    }

    /// OpenAI's `reasoning_effort` for an enabled budget, as Higress maps it (under 4096 tokens
    /// `low`, under 16384 `medium`, else `high`).
    pub fn effort(self) -> Option<&'static str> {
        if !self.enabled {
            return None;
        }
        Some(match self.budget.unwrap_or(0) {
            0..4096 => "low",
            4096..16384 => "medium",
            _ => "high",
        })
    }
}

/// Whether an Anthropic client's thinking history goes to this type as `reasoning_content`.
pub fn keeps_reasoning_history(kind: &str) -> bool {
    matches!(kind, "zhipuai" | "openrouter")
}

/// Sets a type's own thinking switch as Higress does, from `reasoning_effort` (or
/// `reasoning_max_tokens`) in the body and an Anthropic client's `thinking`:
///
/// - `zhipuai`: `reasoning_effort` (or thinking enabled) becomes `thinking: {type: enabled}`; an
///   Anthropic client without thinking gets `{type: disabled}`; reasoning history in the messages
///   sets `thinking.clear_thinking: false`.
/// - `openrouter`: `reasoning_max_tokens` (else the thinking budget) becomes
///   `reasoning.max_tokens`, replacing `reasoning_effort`.
pub fn map_thinking(
    kind: &str,
    x: &mut Extra,
    messages: &[openai::ChatMessage],
    client: Option<ClientThinking>,
) {
    match kind {
        "zhipuai" => {
            let effort = x.remove("reasoning_effort").filter(|e| !e.is_null());
            let asked = effort.is_some() || client.is_some_and(|c| c.enabled);
            if asked {
                x.insert("thinking".into(), serde_json::json!({"type": "enabled"}));
            } else if client.is_some() {
                x.insert("thinking".into(), serde_json::json!({"type": "disabled"}));
            }
            let history = messages.iter().any(|m| {
                m.extra
                    .get("reasoning_content")
                    .and_then(Value::as_str)
                    .is_some_and(|r| !r.is_empty())
            });
            if history {
                let thinking = x.entry("thinking").or_insert_with(|| serde_json::json!({}));
                if let Some(obj) = thinking.as_object_mut() {
                    obj.insert("clear_thinking".into(), Value::Bool(false));
                }
            }
        }
        "openrouter" => {
            let asked = x
                .get("reasoning_max_tokens")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0);
            let max = match asked {
                Some(n) => {
                    x.remove("reasoning_max_tokens");
                    Some(n)
                }
                None => client.and_then(|c| c.budget),
            };
            if let Some(max) = max {
                x.remove("reasoning_effort");
                let reasoning = x
                    .entry("reasoning")
                    .or_insert_with(|| serde_json::json!({}));
                if !reasoning.is_object() {
                    *reasoning = serde_json::json!({});
                }
                if let Some(obj) = reasoning.as_object_mut() {
                    obj.insert("max_tokens".into(), Value::from(max));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(mode: ReasoningMode, deltas: &[Value]) -> Vec<Value> {
        let mut f = ReasoningFilter::new(mode);
        let mut out = String::new();
        for d in deltas {
            let ev = json!({"id": "c", "choices": [{"index": 0, "delta": d["delta"], "finish_reason": d["finish"]}]});
            f.on_event(&SseEvent::data(ev.to_string()), &mut out);
        }
        f.on_event(&SseEvent::data("[DONE]"), &mut out);
        assert!(out.ends_with("data: [DONE]\n\n"));
        out.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .map(|v| v["choices"][0]["delta"].clone())
            .collect()
    }

    fn stream() -> Vec<Value> {
        vec![
            json!({"delta": {"role": "assistant", "content": ""}, "finish": null}),
            json!({"delta": {"reasoning_content": "Let me "}, "finish": null}),
            json!({"delta": {"reasoning_content": "think."}, "finish": null}),
            json!({"delta": {"content": "Hi"}, "finish": null}),
            json!({"delta": {}, "finish": "stop"}),
        ]
    }

    #[test]
    fn concat_wraps_reasoning_in_think_tags() {
        let deltas = run(ReasoningMode::Concat, &stream());
        let text: String = deltas
            .iter()
            .filter_map(|d| d["content"].as_str())
            .collect();
        assert_eq!(text, "<think>Let me think.</think>\nHi");
        assert!(deltas.iter().all(|d| d.get("reasoning_content").is_none()));
    }

    #[test]
    fn ignore_drops_reasoning_events() {
        let deltas = run(ReasoningMode::Ignore, &stream());
        assert_eq!(deltas.len(), 3, "{deltas:?}");
        let text: String = deltas
            .iter()
            .filter_map(|d| d["content"].as_str())
            .collect();
        assert_eq!(text, "Hi");
    }

    #[test]
    fn whole_answers() {
        let mut resp: openai::ChatResponse = serde_json::from_value(json!({"id": "c",
            "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi",
                "reasoning_content": "Hmm."}, "finish_reason": "stop"}]}))
        .unwrap();
        let mut ignored = resp.clone();
        apply_to_response(&mut ignored, ReasoningMode::Ignore);
        assert_eq!(
            serde_json::to_value(&ignored.choices[0].message).unwrap(),
            json!({"role": "assistant", "content": "Hi"})
        );
        apply_to_response(&mut resp, ReasoningMode::Concat);
        assert_eq!(
            resp.choices[0]
                .message
                .content
                .as_ref()
                .map(openai::Content::text)
                .unwrap(),
            "<think>Hmm.</think>\nHi"
        );
    }

    fn thinking(kind: &str, body: Value, client: Option<ClientThinking>) -> Value {
        let mut chat: openai::ChatRequest = serde_json::from_value(body).unwrap();
        map_thinking(kind, &mut chat.extra, &chat.messages, client);
        serde_json::to_value(&chat).unwrap()
    }

    #[test]
    fn zhipuai_and_openrouter_thinking_as_in_higress() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let on = Some(ClientThinking {
            enabled: true,
            budget: Some(2048),
        });
        let off = Some(ClientThinking::default());
        let z = thinking(
            "zhipuai",
            json!({"messages": user, "reasoning_effort": "low"}),
            None,
        );
        assert_eq!(z["thinking"], json!({"type": "enabled"}));
        assert!(z.get("reasoning_effort").is_none());
        let z = thinking("zhipuai", json!({"messages": user}), on);
        assert_eq!(z["thinking"], json!({"type": "enabled"}));
        let z = thinking("zhipuai", json!({"messages": user}), off);
        assert_eq!(z["thinking"], json!({"type": "disabled"}));
        // An OpenAI client that says nothing: nothing set.
        let z = thinking("zhipuai", json!({"messages": user}), None);
        assert!(z.get("thinking").is_none());
        let history = json!([{"role": "user", "content": "a"},
            {"role": "assistant", "content": "b", "reasoning_content": "hmm"},
            {"role": "user", "content": "c"}]);
        let z = thinking("zhipuai", json!({"messages": history}), on);
        assert_eq!(
            z["thinking"],
            json!({"type": "enabled", "clear_thinking": false})
        );

        let o = thinking(
            "openrouter",
            json!({"messages": user, "reasoning_max_tokens": 3000, "reasoning_effort": "high"}),
            None,
        );
        assert_eq!(o["reasoning"], json!({"max_tokens": 3000}));
        assert!(o.get("reasoning_effort").is_none() && o.get("reasoning_max_tokens").is_none());
        let o = thinking(
            "openrouter",
            json!({"messages": user, "reasoning_effort": "low"}),
            on,
        );
        assert_eq!(o["reasoning"], json!({"max_tokens": 2048}));
        assert!(o.get("reasoning_effort").is_none());
        let o = thinking(
            "openrouter",
            json!({"messages": user, "reasoning_effort": "low"}),
            None,
        );
        assert_eq!(o["reasoning_effort"], "low");
        assert!(o.get("reasoning").is_none());
        // Other types are left alone.
        let d = thinking(
            "deepseek",
            json!({"messages": user, "reasoning_effort": "low"}),
            on,
        );
        assert_eq!(d["reasoning_effort"], "low");
        assert_eq!(on.and_then(ClientThinking::effort), Some("low"));
        let big = ClientThinking {
            enabled: true,
            budget: Some(20000),
        };
        assert_eq!(big.effort(), Some("high"));
    }
}
