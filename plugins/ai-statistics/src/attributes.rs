//! `attributes`: values picked from headers and JSON bodies for the access log.
//!
//! JSON paths are dotted: `choices.0.delta.content`; an index may be negative (`messages.-1`
//! is the last message).

use crate::config::{Attribute, Rule, Source, ValueSource};
use sdk::usage::json::JsonRead;
use std::borrow::Cow;

/// Looks up a dotted path.
pub fn lookup<'a, J: JsonRead<'a>>(value: J, path: &str) -> Option<J> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(value, |v, part| {
            if v.is_object() {
                v.get(part)
            } else if v.is_array() {
                let i: i64 = part.parse().ok()?;
                let index = if i < 0 {
                    v.items().count().checked_sub(i.unsigned_abs() as usize)?
                } else {
                    usize::try_from(i).ok()?
                };
                v.items().nth(index)
            } else {
                None
            }
        })
}

/// A value as log text: strings as they are, anything else as JSON.
pub fn text<'a, J: JsonRead<'a>>(value: J) -> String {
    text_of(value).into_owned()
}

/// [`text`], borrowing strings.
pub fn text_of<'a, J: JsonRead<'a>>(value: J) -> Cow<'a, str> {
    match value.as_str() {
        Some(s) => Cow::Borrowed(s),
        None if value.is_null() => Cow::Borrowed(""),
        None => Cow::Owned(value.to_json_string()),
    }
}

/// Cuts `s` to at most `limit` bytes on a character boundary.
pub fn truncate(mut s: String, limit: usize) -> String {
    if s.len() > limit {
        let mut end = limit;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Tool calls of a streamed answer, joined from their pieces by index: OpenAI
/// `choices[0].delta.tool_calls[]`, Anthropic `content_block_start` (tool_use) and
/// `input_json_delta` events.
#[derive(Debug, Default)]
pub struct StreamedToolCalls {
    /// (index, id, name, arguments), in first-seen order.
    calls: Vec<(u64, String, String, String)>,
}

impl StreamedToolCalls {
    fn call(&mut self, index: u64) -> &mut (u64, String, String, String) {
        let at = match self.calls.iter().position(|c| c.0 == index) {
            Some(at) => at,
            None => {
                self.calls
                    .push((index, String::new(), String::new(), String::new()));
                self.calls.len() - 1
            }
        };
        &mut self.calls[at]
    }

    /// Reads one stream event.
    pub fn feed<'a, J: JsonRead<'a>>(&mut self, event: J) {
        let deltas = lookup(event, "choices.0.delta.tool_calls");
        for d in deltas.into_iter().flat_map(JsonRead::items) {
            let index = d.get("index").and_then(JsonRead::as_u64).unwrap_or(0);
            let call = self.call(index);
            if let Some(id) = d.get("id").and_then(JsonRead::as_str) {
                call.1.push_str(id);
            }
            if let Some(name) = lookup(d, "function.name").and_then(JsonRead::as_str) {
                call.2.push_str(name);
            }
            if let Some(args) = lookup(d, "function.arguments").and_then(JsonRead::as_str) {
                call.3.push_str(args);
            }
        }
        let index = || event.get("index").and_then(JsonRead::as_u64).unwrap_or(0);
        match event.get("type").and_then(JsonRead::as_str) {
            Some("content_block_start") => {
                let Some(block) = event.get("content_block") else {
                    return;
                };
                if block.get("type").and_then(JsonRead::as_str) == Some("tool_use") {
                    let call = self.call(index());
                    let field = |k| block.get(k).and_then(JsonRead::as_str).unwrap_or_default();
                    call.1 = field("id").to_string();
                    call.2 = field("name").to_string();
                }
            }
            Some("content_block_delta") => {
                if let Some(part) = lookup(event, "delta.partial_json").and_then(JsonRead::as_str) {
                    let i = index();
                    if self.calls.iter().any(|c| c.0 == i) {
                        self.call(i).3.push_str(part);
                    }
                }
            }
            _ => {}
        }
    }

    /// The calls as a JSON array, none when there were none.
    pub fn finish(&self) -> Option<String> {
        if self.calls.is_empty() {
            return None;
        }
        let calls: Vec<serde_json::Value> = self
            .calls
            .iter()
            .map(|(index, id, name, args)| {
                serde_json::json!({"index": index, "id": id, "type": "function",
                    "function": {"name": name, "arguments": args}})
            })
            .collect();
        serde_json::to_string(&calls).ok()
    }
}

/// The text of the last user message and of the system prompt of a chat or Messages request.
pub fn question_and_system(body: &sdk::pipeline::RequestBody) -> (Option<String>, Option<String>) {
    use sdk::pipeline::RequestBody;
    match body {
        RequestBody::Chat(c) => {
            let question = c
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .and_then(|m| m.content.as_ref())
                .map(|c| c.text());
            let system: Vec<String> = c
                .messages
                .iter()
                .filter(|m| m.role == "system" || m.role == "developer")
                .filter_map(|m| m.content.as_ref().map(|c| c.text()))
                .collect();
            (question, (!system.is_empty()).then(|| system.join("\n")))
        }
        RequestBody::Messages(m) => {
            let question = m
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.text());
            (question, m.system.as_ref().map(|s| s.text()))
        }
        RequestBody::Json(_) => (None, None),
    }
}

/// Values gathered for one request.
#[derive(Debug, Default)]
pub struct Collected {
    values: Vec<Option<String>>,
}

impl Collected {
    /// Room for `n` attributes.
    pub fn new(n: usize) -> Collected {
        Collected {
            values: vec![None; n],
        }
    }

    /// Offers a value for attribute `i` found at `src`; streamed values follow its rule.
    pub fn offer(&mut self, i: usize, attr: &Attribute, src: &Source, value: &str, limit: usize) {
        let Some(slot) = self.values.get_mut(i) else {
            return;
        };
        let limit = attr.value_length_limit.unwrap_or(limit);
        let next = match (src.from, src.rule, slot.take()) {
            (ValueSource::ResponseStreamingBody, Rule::Append, Some(mut old)) => {
                if old.len() < limit {
                    old.push_str(value);
                }
                old
            }
            (ValueSource::ResponseStreamingBody, Rule::First, Some(old)) => old,
            _ => value.to_string(),
        };
        *slot = Some(truncate(next, limit));
    }

    /// Sets attribute `i` to a value read by code (a built-in).
    pub fn set(&mut self, i: usize, attr: &Attribute, value: String, limit: usize) {
        if let Some(slot) = self.values.get_mut(i) {
            *slot = Some(truncate(value, attr.value_length_limit.unwrap_or(limit)));
        }
    }

    /// Whether an offer for attribute `i` from `src` would change nothing (a streamed `first`
    /// value is already set), so the value need not be looked up.
    pub fn settled(&self, i: usize, src: &Source) -> bool {
        src.from == ValueSource::ResponseStreamingBody
            && src.rule == Rule::First
            && self.values.get(i).is_some_and(Option::is_some)
    }

    /// The final values, defaults filled in: (attribute index, value).
    pub fn finish<'a>(
        &'a self,
        attrs: &'a [Attribute],
    ) -> impl Iterator<Item = (usize, String)> + 'a {
        attrs.iter().enumerate().filter_map(|(i, a)| {
            let v = self.values.get(i).cloned().flatten();
            v.or_else(|| a.default_value.clone()).map(|v| (i, v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let v = json!({"messages": [{"content": "a"}, {"content": "b"}], "n": 1});
        assert_eq!(lookup(&v, "messages.-1.content"), Some(&json!("b")));
        assert_eq!(lookup(&v, "messages.0.content"), Some(&json!("a")));
        assert_eq!(lookup(&v, "messages.5"), None);
        assert_eq!(lookup(&v, "messages.-3"), None);
        assert_eq!(text(lookup(&v, "n").unwrap()), "1");
    }

    #[test]
    fn streaming_rules() {
        let attr = |rule| Attribute {
            key: "k".into(),
            value_source: Some(ValueSource::ResponseStreamingBody),
            value: "x".into(),
            default_value: None,
            rule,
            apply_to_log: true,
            as_separate_log_field: false,
            value_length_limit: Some(5),
            sources: vec![Source {
                from: ValueSource::ResponseStreamingBody,
                path: "x".into(),
                rule,
            }],
            builtin: None,
        };
        for (rule, want) in [
            (Rule::First, "ab"),
            (Rule::Replace, "cd"),
            (Rule::Append, "abcdef"),
        ] {
            let a = attr(rule);
            let mut c = Collected::new(1);
            let src = &a.sources[0];
            c.offer(0, &a, src, "ab", 100);
            c.offer(0, &a, src, "cd", 100);
            if rule == Rule::Append {
                c.offer(0, &a, src, "ef", 100);
            }
            let got: Vec<_> = c.finish(std::slice::from_ref(&a)).collect();
            assert_eq!(got, vec![(0, truncate(want.to_string(), 5))]);
        }
        assert_eq!(truncate("héllo".into(), 2), "h");
        // A streamed `first` value, once set, needs no more lookups.
        let first = attr(Rule::First);
        let mut c = Collected::new(1);
        assert!(!c.settled(0, &first.sources[0]));
        c.offer(0, &first, &first.sources[0], "ab", 100);
        assert!(c.settled(0, &first.sources[0]));
        assert!(!c.settled(0, &attr(Rule::Append).sources[0]));
    }
}
