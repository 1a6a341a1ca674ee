//! Decorator configuration (Higress keys `prepend` and `append`, plus `replace`).

use regex::{Regex, RegexBuilder};
use sdk::config::{ConfigError, Validate};
use sdk::template::Template;
use serde::Deserialize;

/// Roles a decoration message may have.
pub const ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

/// The plugin configuration (global or one `_rules_` entry).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DecoratorConfig {
    /// Messages put before the conversation.
    pub prepend: Vec<MessageTemplate>,
    /// Messages put after the conversation.
    pub append: Vec<MessageTemplate>,
    /// Rewrites applied to the client's own messages.
    pub replace: Vec<ReplaceRule>,
}

impl DecoratorConfig {
    /// Whether the config does anything.
    pub fn is_empty(&self) -> bool {
        self.prepend.is_empty() && self.append.is_empty() && self.replace.is_empty()
    }
}

/// A message to add: `{role, content}`; `content` may hold placeholders.
#[derive(Debug, Deserialize)]
pub struct MessageTemplate {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Message text with placeholders.
    pub content: String,
    /// Parsed `content`.
    #[serde(skip)]
    pub template: Option<Template>,
}

/// One role or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single role.
    One(String),
    /// Several roles.
    Many(Vec<String>),
}

/// A rewrite of message text.
#[derive(Debug, Deserialize)]
pub struct ReplaceRule {
    /// Text (or regular expression, with `regex: true`) to find.
    pub pattern: String,
    /// Replacement; with `regex: true`, `$1`/`${name}` insert capture groups.
    #[serde(default)]
    pub replacement: String,
    /// Only messages with this role (or roles); all roles when absent.
    #[serde(default)]
    pub on_role: Option<OneOrMany>,
    /// Treat `pattern` as a regular expression.
    #[serde(default)]
    pub regex: bool,
    /// Compiled pattern (regex rules only).
    #[serde(skip)]
    pub compiled: Option<Regex>,
}

impl ReplaceRule {
    /// Whether the rule applies to messages of `role`.
    pub fn applies_to(&self, role: &str) -> bool {
        match &self.on_role {
            None => true,
            Some(OneOrMany::One(r)) => r == role,
            Some(OneOrMany::Many(rs)) => rs.iter().any(|r| r == role),
        }
    }

    /// Rewrites `text`.
    pub fn apply(&self, text: &str) -> String {
        match &self.compiled {
            Some(re) => re.replace_all(text, self.replacement.as_str()).into_owned(),
            None => text.replace(&self.pattern, &self.replacement),
        }
    }
}

/// Largest compiled regex, so a config cannot exhaust the VM's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn check_messages(list: &mut [MessageTemplate], key: &str) -> Result<(), ConfigError> {
    for (i, m) in list.iter_mut().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ConfigError::new(
                format!("{key}[{i}].role"),
                format!("role `{}` is not one of {}", m.role, ROLES.join(", ")),
            ));
        }
        let t = Template::parse(&m.content)
            .map_err(|e| ConfigError::new(format!("{key}[{i}].content"), e))?;
        m.template = Some(t);
    }
    Ok(())
}

impl Validate for DecoratorConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        check_messages(&mut self.prepend, "prepend")?;
        check_messages(&mut self.append, "append")?;
        for (i, r) in self.replace.iter_mut().enumerate() {
            if r.pattern.is_empty() {
                return Err(ConfigError::new(
                    format!("replace[{i}].pattern"),
                    "must not be empty",
                ));
            }
            if r.regex {
                let re = RegexBuilder::new(&r.pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        ConfigError::new(format!("replace[{i}].pattern"), e.to_string())
                    })?;
                r.compiled = Some(re);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::config::{RuleMode, RuleSet};

    fn parse(json: &str) -> Result<RuleSet<DecoratorConfig>, ConfigError> {
        RuleSet::parse(json.as_bytes(), RuleMode::Independent)
    }

    #[test]
    fn higress_config_parses() {
        let set = parse(
            r#"{"prepend":[{"role":"system","content":"be kind"}],"append":[{"role":"user","content":"answer in ${header:x-lang|English}"}]}"#,
        )
        .unwrap();
        let g = set.global.unwrap();
        assert_eq!(g.prepend.len(), 1);
        assert!(g.append[0].template.is_some());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"prepend":[{"role":"robot","content":"x"}]}"#,
                "prepend[0].role",
            ),
            (r#"{"append":[{"role":"user"}]}"#, "append[0]"),
            (
                r#"{"append":[{"role":"user","content":"${bad}"}]}"#,
                "append[0].content",
            ),
            (
                r#"{"replace":[{"pattern":"(","regex":true}]}"#,
                "replace[0].pattern",
            ),
            (r#"{"replace":[{"pattern":""}]}"#, "replace[0].pattern"),
            (r#"{"prepend":{"role":"user"}}"#, "prepend"),
            (
                r#"{"_rules_":[{"_match_route_":["r"],"prepend":[{"role":"x","content":"y"}]}]}"#,
                "_rules_[0].prepend[0].role",
            ),
        ];
        for (json, path) in cases {
            let err = parse(json).unwrap_err();
            assert_eq!(err.path, path, "{json}: {err}");
        }
    }

    #[test]
    fn replace_rules() {
        let set = parse(
            r#"{"replace":[{"pattern":"secret-\\d+","replacement":"[redacted]","regex":true,"on_role":["user"]},
                           {"pattern":"colour","replacement":"color"}]}"#,
        )
        .unwrap();
        let g = set.global.unwrap();
        assert_eq!(
            g.replace[0].apply("a secret-123 b secret-9"),
            "a [redacted] b [redacted]"
        );
        assert!(g.replace[0].applies_to("user") && !g.replace[0].applies_to("system"));
        assert_eq!(g.replace[1].apply("colour colour"), "color color");
        assert!(g.replace[1].applies_to("assistant"));
    }
}
