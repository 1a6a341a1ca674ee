//! The part of GJSON path syntax Higress's `cacheKeyFrom`/`cacheValueFrom` defaults use:
//! dotted keys, array indices and the `@reverse` modifier (`messages.@reverse.0.content`).

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    Reverse,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `path`; other GJSON features (wildcards, queries, other modifiers) are refused.
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        if path.trim().is_empty() {
            return Err("must not be empty".into());
        }
        let mut steps = Vec::new();
        for part in path.split('.') {
            let step = match part {
                "" => return Err(format!("`{path}` has an empty segment")),
                "@reverse" => Step::Reverse,
                p if p.starts_with('@') || p.contains(['*', '?', '#', '|', '\\']) => {
                    return Err(format!(
                        "`{p}` in `{path}`: only keys, indices and @reverse are supported"
                    ))
                }
                p => match p.parse::<usize>() {
                    Ok(i) => Step::Index(i),
                    Err(_) => Step::Key(p.to_string()),
                },
            };
            steps.push(step);
        }
        Ok(JsonPath { steps })
    }

    /// The value at this path.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut v = root;
        let mut reversed = false;
        for step in &self.steps {
            v = match (step, v) {
                (Step::Reverse, Value::Array(_)) => {
                    reversed = !reversed;
                    continue;
                }
                (Step::Index(i), Value::Array(items)) if reversed => items
                    .len()
                    .checked_sub(i + 1)
                    .and_then(|at| items.get(at))?,
                (Step::Index(i), Value::Array(items)) => items.get(*i)?,
                (Step::Key(k), Value::Object(map)) => map.get(k)?,
                (Step::Index(i), Value::Object(map)) => map.get(&i.to_string())?,
                _ => return None,
            };
            reversed = false;
        }
        Some(v)
    }

    /// The text at this path: a string as it is, text parts joined, anything else as JSON.
    pub fn text(&self, root: &Value) -> Option<String> {
        let v = self.get(root)?;
        Some(match v {
            Value::String(s) => s.clone(),
            Value::Null => return None,
            Value::Array(parts) if parts.iter().all(|p| p.get("text").is_some()) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        })
    }

    /// Whether this is `default`.
    pub fn is(&self, default: &str) -> bool {
        JsonPath::parse(default).is_ok_and(|d| d == *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn higress_defaults_read_what_they_name() {
        let body = json!({"messages": [{"content": "a"}, {"content": "b"}]});
        let p = JsonPath::parse("messages.@reverse.0.content").unwrap();
        assert_eq!(p.text(&body).as_deref(), Some("b"));
        let p = JsonPath::parse("messages.0.content").unwrap();
        assert_eq!(p.text(&body).as_deref(), Some("a"));
        let p = JsonPath::parse("messages.5.content").unwrap();
        assert_eq!(p.text(&body), None);
        let parts = json!({"m": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]});
        assert_eq!(
            JsonPath::parse("m").unwrap().text(&parts).as_deref(),
            Some("x\ny")
        );
        assert!(JsonPath::parse("messages.#.content").is_err());
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a.@this").is_err());
    }
}
