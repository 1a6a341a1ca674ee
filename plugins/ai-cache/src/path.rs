//! The part of GJSON path syntax Higress's `cacheKeyFrom`/`cacheValueFrom` and its README's
//! examples use: dotted keys, array indices, `@reverse`, queries `#(key=="value")` (first
//! match) and `#(key=="value")#` (all matches; the keys after it are read from each), `!=`, and
//! `|` (the steps after it apply to the result, not to each match).

use serde_json::Value;

/// A query's condition: `key == value` or `key != value`.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    key: String,
    equal: bool,
    value: Value,
}

impl Condition {
    fn holds(&self, item: &Value) -> bool {
        (item.get(&self.key) == Some(&self.value)) == self.equal
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Reverse,
    First(Condition),
    All(Condition),
    /// `|`: the steps after it apply to the whole result.
    Pipe,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonPath {
    steps: Vec<Step>,
}

/// Splits at `.` and `|` outside parentheses and quotes; `|` is kept as its own part.
fn split(path: &str) -> Vec<String> {
    let (mut parts, mut cur, mut depth, mut quoted, mut escaped) =
        (Vec::new(), String::new(), 0u32, false, false);
    for c in path.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            '.' | '|' if !quoted && depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                if c == '|' {
                    parts.push("|".into());
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

fn condition(inner: &str, part: &str) -> Result<Condition, String> {
    let (at, equal, len) = match (inner.find("!="), inner.find("==")) {
        (Some(i), _) => (i, false, 2),
        (None, Some(i)) => (i, true, 2),
        _ => return Err(format!("`{part}`: a query needs `==` or `!=`")),
    };
    let key = inner[..at].trim();
    let value = inner[at + len..].trim();
    let value: Value = serde_json::from_str(value)
        .map_err(|_| format!("`{part}`: the value must be JSON (a quoted string, a number, …)"))?;
    if key.is_empty() {
        return Err(format!("`{part}`: the query names no key"));
    }
    Ok(Condition {
        key: key.to_string(),
        equal,
        value,
    })
}

impl JsonPath {
    /// Parses `path`; other GJSON features (wildcards, other modifiers) are refused.
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        if path.trim().is_empty() {
            return Err("must not be empty".into());
        }
        let mut steps = Vec::new();
        for part in split(path) {
            let step = match part.as_str() {
                "" => return Err(format!("`{path}` has an empty segment")),
                "|" => Step::Pipe,
                "@reverse" => Step::Reverse,
                p if p.starts_with("#(") => {
                    let (all, inner) = match (p.strip_suffix(")#"), p.strip_suffix(')')) {
                        (Some(s), _) => (true, s),
                        (None, Some(s)) => (false, s),
                        _ => return Err(format!("`{p}`: unclosed query")),
                    };
                    let c = condition(inner.get(2..).unwrap_or_default(), p)?;
                    if all {
                        Step::All(c)
                    } else {
                        Step::First(c)
                    }
                }
                p if p.starts_with('@') || p.contains(['*', '?', '#', '\\']) => {
                    return Err(format!(
                        "`{p}` in `{path}`: keys, indices, @reverse, #(…) queries and | are supported"
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

    fn apply(step: &Step, v: &Value) -> Option<Value> {
        match (step, v) {
            (Step::Key(k), Value::Object(map)) => map.get(k).cloned(),
            (Step::Index(i), Value::Object(map)) => map.get(&i.to_string()).cloned(),
            (Step::Index(i), Value::Array(items)) => items.get(*i).cloned(),
            (Step::Reverse, Value::Array(items)) => {
                Some(Value::Array(items.iter().rev().cloned().collect()))
            }
            (Step::First(c), Value::Array(items)) => items.iter().find(|x| c.holds(x)).cloned(),
            (Step::All(c), Value::Array(items)) => Some(Value::Array(
                items.iter().filter(|x| c.holds(x)).cloned().collect(),
            )),
            _ => None,
        }
    }

    /// The value at this path.
    pub fn get(&self, root: &Value) -> Option<Value> {
        let mut v = root.clone();
        // After `#(…)#`, steps read each match until a `|`.
        let mut each = false;
        for step in &self.steps {
            match step {
                Step::Pipe => each = false,
                _ if each => {
                    let items = v.as_array()?;
                    v = Value::Array(items.iter().filter_map(|x| Self::apply(step, x)).collect());
                }
                Step::All(_) => {
                    v = Self::apply(step, &v)?;
                    each = true;
                }
                _ => v = Self::apply(step, &v)?,
            }
        }
        Some(v)
    }

    /// The text at this path: a string as it is, text parts joined, anything else as JSON.
    pub fn text(&self, root: &Value) -> Option<String> {
        Some(match self.get(root)? {
            Value::String(s) => s,
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

    fn text(path: &str, body: &Value) -> Option<String> {
        JsonPath::parse(path).unwrap().text(body)
    }

    #[test]
    fn higress_defaults_read_what_they_name() {
        let body = json!({"messages": [{"content": "a"}, {"content": "b"}]});
        assert_eq!(
            text("messages.@reverse.0.content", &body).as_deref(),
            Some("b")
        );
        assert_eq!(text("messages.0.content", &body).as_deref(), Some("a"));
        assert_eq!(text("messages.5.content", &body), None);
        let parts = json!({"m": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]});
        assert_eq!(text("m", &parts).as_deref(), Some("x\ny"));
        assert!(JsonPath::parse("messages.*.content").is_err());
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a.@this").is_err());
        assert!(JsonPath::parse("m.#(role=user)").is_err());
        assert!(JsonPath::parse("m.#(role==\"user\"").is_err());
    }

    #[test]
    fn higress_readme_queries() {
        let body = json!({"messages": [
            {"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2"}]});
        // The last user message, the users' messages (newest first), the second-to-last.
        let last = r#"messages.@reverse.#(role=="user").content"#;
        assert_eq!(text(last, &body).as_deref(), Some("q2"));
        let all = r#"messages.@reverse.#(role=="user")#.content"#;
        assert_eq!(text(all, &body).as_deref(), Some(r#"["q2","q1"]"#));
        let second = r#"messages.@reverse.#(role=="user")#.content|1"#;
        assert_eq!(text(second, &body).as_deref(), Some("q1"));
        let not_system = r#"messages.#(role!="system").content"#;
        assert_eq!(text(not_system, &body).as_deref(), Some("q1"));
    }
}
