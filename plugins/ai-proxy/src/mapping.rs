//! `modelMapping`: deterministic model renames, regexes compiled once at load.
//!
//! Precedence: exact name, then the longest `prefix*`, then `~regex` entries in config order
//! (capture groups usable as `$1` in the target), then `*`. An empty target keeps the model.

use regex::Regex;
use sdk::config::ConfigError;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Compiled model mapping.
#[derive(Debug, Clone, Default)]
pub struct ModelMapping {
    exact: HashMap<String, String>,
    prefixes: Vec<(String, String)>,
    regexes: Vec<(Regex, String)>,
    wildcard: Option<String>,
}

impl ModelMapping {
    /// Compiles the `modelMapping` object.
    pub fn parse(raw: &Map<String, Value>) -> Result<ModelMapping, ConfigError> {
        let mut m = ModelMapping::default();
        for (key, target) in raw {
            let Value::String(target) = target else {
                return Err(ConfigError::new(
                    key.as_str(),
                    "the target must be a string",
                ));
            };
            let target = target.clone();
            if key == "*" {
                m.wildcard = Some(target);
            } else if let Some(pattern) = key.strip_prefix('~') {
                let re = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| ConfigError::new(key.as_str(), e.to_string()))?;
                m.regexes.push((re, target));
            } else if let Some(prefix) = key.strip_suffix('*') {
                m.prefixes.push((prefix.to_string(), target));
            } else {
                m.exact.insert(key.clone(), target);
            }
        }
        m.prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(m)
    }

    /// The model to send upstream for `model`.
    pub fn map(&self, model: &str) -> String {
        let found = self
            .exact
            .get(model)
            .cloned()
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| model.starts_with(p.as_str()))
                    .map(|(_, t)| t.clone())
            })
            .or_else(|| {
                self.regexes.iter().find_map(|(re, t)| {
                    re.captures(model).map(|caps| {
                        let mut out = String::new();
                        caps.expand(t, &mut out);
                        out
                    })
                })
            })
            .or_else(|| self.wildcard.clone());
        match found {
            Some(t) if !t.is_empty() => t,
            _ => model.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(v: Value) -> ModelMapping {
        ModelMapping::parse(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn precedence_is_exact_prefix_regex_wildcard() {
        let m = mapping(json!({
            "*": "fallback",
            "~gpt-(\\d)o(-.*)?": "mapped-$1",
            "gpt-4*": "prefix-short",
            "gpt-4o*": "prefix-long",
            "gpt-4o": "exact",
            "keep": ""
        }));
        assert_eq!(m.map("gpt-4o"), "exact");
        assert_eq!(m.map("gpt-4o-mini"), "prefix-long");
        assert_eq!(m.map("gpt-4-turbo"), "prefix-short");
        assert_eq!(m.map("gpt-5o-x"), "mapped-5");
        assert_eq!(m.map("claude"), "fallback");
        assert_eq!(m.map("keep"), "keep");
        assert_eq!(ModelMapping::default().map("x"), "x");
    }

    #[test]
    fn regexes_apply_in_config_order() {
        let m = mapping(json!({"~a.*": "first", "~ab.*": "second"}));
        assert_eq!(m.map("abc"), "first");
    }

    #[test]
    fn bad_regex_names_the_key() {
        let e = ModelMapping::parse(json!({"~(": "x"}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.path, "~(");
    }
}
