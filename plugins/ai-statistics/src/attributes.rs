//! `attributes`: values picked from headers and JSON bodies for the access log.
//!
//! JSON paths are dotted: `choices.0.delta.content`; an index may be negative (`messages.-1`
//! is the last message).

use crate::config::{Attribute, Rule, ValueSource};
use serde_json::Value;

/// Looks up a dotted path.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(value, |v, part| match v {
            Value::Object(map) => map.get(part),
            Value::Array(items) => {
                let i: i64 = part.parse().ok()?;
                let index = if i < 0 {
                    items.len().checked_sub(i.unsigned_abs() as usize)?
                } else {
                    i as usize
                };
                items.get(index)
            }
            _ => None,
        })
}

/// A value as log text: strings as they are, anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
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

    /// Offers a value for attribute `i`; streamed values follow the attribute's rule.
    pub fn offer(&mut self, i: usize, attr: &Attribute, value: String, limit: usize) {
        let Some(slot) = self.values.get_mut(i) else {
            return;
        };
        let limit = attr.value_length_limit.unwrap_or(limit);
        let next = match (attr.value_source, attr.rule, slot.take()) {
            (ValueSource::ResponseStreamingBody, Rule::Append, Some(mut old)) => {
                if old.len() < limit {
                    old.push_str(&value);
                }
                old
            }
            (ValueSource::ResponseStreamingBody, Rule::First, Some(old)) => old,
            _ => value,
        };
        *slot = Some(truncate(next, limit));
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
            value_source: ValueSource::ResponseStreamingBody,
            value: "x".into(),
            default_value: None,
            rule,
            apply_to_log: true,
            as_separate_log_field: false,
            value_length_limit: Some(5),
        };
        for (rule, want) in [
            (Rule::First, "ab"),
            (Rule::Replace, "cd"),
            (Rule::Append, "abcdef"),
        ] {
            let a = attr(rule);
            let mut c = Collected::new(1);
            c.offer(0, &a, "ab".into(), 100);
            c.offer(0, &a, "cd".into(), 100);
            if rule == Rule::Append {
                c.offer(0, &a, "ef".into(), 100);
            }
            let got: Vec<_> = c.finish(std::slice::from_ref(&a)).collect();
            assert_eq!(got, vec![(0, truncate(want.to_string(), 5))]);
        }
        assert_eq!(truncate("héllo".into(), 2), "h");
    }
}
