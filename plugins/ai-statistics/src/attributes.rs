//! `attributes`: values picked from headers and JSON bodies for the access log.
//!
//! JSON paths are dotted: `choices.0.delta.content`; an index may be negative (`messages.-1`
//! is the last message).

use crate::config::{Attribute, Rule, ValueSource};
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
    pub fn offer(&mut self, i: usize, attr: &Attribute, value: &str, limit: usize) {
        let Some(slot) = self.values.get_mut(i) else {
            return;
        };
        let limit = attr.value_length_limit.unwrap_or(limit);
        let next = match (attr.value_source, attr.rule, slot.take()) {
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

    /// Whether an offer for attribute `i` would change nothing (a streamed `first` value is
    /// already set), so the value need not be looked up.
    pub fn settled(&self, i: usize, attr: &Attribute) -> bool {
        attr.value_source == ValueSource::ResponseStreamingBody
            && attr.rule == Rule::First
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
            c.offer(0, &a, "ab", 100);
            c.offer(0, &a, "cd", 100);
            if rule == Rule::Append {
                c.offer(0, &a, "ef", 100);
            }
            let got: Vec<_> = c.finish(std::slice::from_ref(&a)).collect();
            assert_eq!(got, vec![(0, truncate(want.to_string(), 5))]);
        }
        assert_eq!(truncate("héllo".into(), 2), "h");
        // A streamed `first` value, once set, needs no more lookups.
        let first = attr(Rule::First);
        let mut c = Collected::new(1);
        assert!(!c.settled(0, &first));
        c.offer(0, &first, "ab", 100);
        assert!(c.settled(0, &first));
        assert!(!c.settled(0, &attr(Rule::Append)));
    }
}
