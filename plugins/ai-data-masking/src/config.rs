//! ai-data-masking configuration, with Higress's snake_case keys.

use crate::core::{JsonPath, MaskRule, MaskType};
use sdk::config::{ConfigError, Validate};
use sdk::matching::Rules;
use serde::Deserialize;
use std::sync::OnceLock;

/// Default deny text (Higress's).
pub const DEFAULT_DENY_MESSAGE: &str = "提问或回答中包含敏感词，已被屏蔽";

/// The built-in sensitive words `system_deny` turns on, one per line.
const SYSTEM_WORDS: &str = include_str!("system_words.txt");

/// The built-in words, compiled once per VM.
pub fn system_rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let words: Vec<String> = SYSTEM_WORDS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        Rules::new(&words, &[]).unwrap_or_default()
    })
}

/// One `replace_roles` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplaceRole {
    /// Regex, with `%{GROK}` references.
    pub regex: String,
    /// `replace` (default) or `hash`.
    #[serde(default, rename = "type")]
    pub kind: RoleType,
    /// Restore the original in the answer.
    #[serde(default)]
    pub restore: bool,
    /// Replacement (`$name` from the match), for `replace`.
    #[serde(default)]
    pub value: String,
}

/// `replace_roles[].type`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoleType {
    /// By `value`.
    #[default]
    Replace,
    /// By the SHA-256 hex digest.
    Hash,
}

/// The plugin configuration (global or one `_rules_` entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MaskingConfig {
    /// Check and mask OpenAI chat / Anthropic Messages conversations (default true).
    pub deny_openai: bool,
    /// Check and mask the strings these JSONPaths select.
    pub deny_jsonpath: Vec<String>,
    /// Check and mask every string of the body (default false).
    pub deny_raw: bool,
    /// Deny the built-in sensitive words too (default false).
    pub system_deny: bool,
    /// Status of deny answers (default 200).
    pub deny_code: u32,
    /// Deny text in chat answers.
    pub deny_message: String,
    /// Deny body for `deny_jsonpath`/`deny_raw` requests.
    pub deny_raw_message: String,
    /// Content type of `deny_raw_message`.
    pub deny_content_type: String,
    /// Custom sensitive words.
    pub deny_words: Vec<String>,
    /// Masking rules, applied in order.
    pub replace_roles: Vec<ReplaceRole>,
    #[serde(skip)]
    compiled_words: Rules,
    #[serde(skip)]
    compiled_roles: Vec<MaskRule>,
    #[serde(skip)]
    compiled_paths: Vec<JsonPath>,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig {
            deny_openai: true,
            deny_jsonpath: Vec::new(),
            deny_raw: false,
            system_deny: false,
            deny_code: 200,
            deny_message: DEFAULT_DENY_MESSAGE.to_string(),
            deny_raw_message: format!("{{\"errmsg\":\"{DEFAULT_DENY_MESSAGE}\"}}"),
            deny_content_type: "application/json".to_string(),
            deny_words: Vec::new(),
            replace_roles: Vec::new(),
            compiled_words: Rules::default(),
            compiled_roles: Vec::new(),
            compiled_paths: Vec::new(),
        }
    }
}

impl MaskingConfig {
    /// The sensitive word found in `text` (custom words first, then built-in ones), if any.
    pub fn denied(&self, text: &str) -> Option<String> {
        self.compiled_words.find(text).or_else(|| {
            self.system_deny
                .then(|| system_rules().find(text))
                .flatten()
        })
    }

    /// Whether any word is denied.
    pub fn has_deny_words(&self) -> bool {
        self.system_deny || !self.compiled_words.is_empty()
    }

    /// The compiled masking rules.
    pub fn rules(&self) -> &[MaskRule] {
        &self.compiled_roles
    }

    /// The compiled `deny_jsonpath`.
    pub fn paths(&self) -> &[JsonPath] {
        &self.compiled_paths
    }
}

impl Validate for MaskingConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if !(200..=599).contains(&self.deny_code) {
            return Err(ConfigError::new(
                "deny_code",
                "must be an HTTP status from 200 to 599",
            ));
        }
        if let Some(i) = self.deny_words.iter().position(|w| w.trim().is_empty()) {
            return Err(ConfigError::new(
                format!("deny_words[{i}]"),
                "must not be blank",
            ));
        }
        self.compiled_words = Rules::new(&self.deny_words, &[])
            .map_err(|(_, e)| ConfigError::new("deny_words", e))?;
        self.compiled_paths = self
            .deny_jsonpath
            .iter()
            .enumerate()
            .map(|(i, p)| {
                JsonPath::parse(p).map_err(|e| ConfigError::new(format!("deny_jsonpath[{i}]"), e))
            })
            .collect::<Result<_, _>>()?;
        self.compiled_roles = self
            .replace_roles
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let kind = match r.kind {
                    RoleType::Replace => MaskType::Replace,
                    RoleType::Hash => MaskType::Hash,
                };
                MaskRule::new(&r.regex, kind, &r.value, r.restore)
                    .map_err(|e| ConfigError::new(format!("replace_roles[{i}].regex"), e))
            })
            .collect::<Result<_, _>>()?;
        if self.system_deny {
            system_rules();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::config::{RuleMode, RuleSet};

    fn parse(json: &str) -> Result<RuleSet<MaskingConfig>, ConfigError> {
        RuleSet::parse(json.as_bytes(), RuleMode::Independent)
    }

    #[test]
    fn defaults_are_higress_defaults() {
        let c = parse("{}").unwrap().global.unwrap();
        assert!(c.deny_openai && !c.deny_raw && !c.system_deny);
        assert_eq!(c.deny_code, 200);
        assert_eq!(c.deny_message, DEFAULT_DENY_MESSAGE);
        assert_eq!(c.deny_content_type, "application/json");
        assert!(!c.has_deny_words() && c.rules().is_empty());
    }

    #[test]
    fn system_words_deny_when_on() {
        let c = parse(r#"{"system_deny": true, "deny_words": ["secretword"]}"#)
            .unwrap()
            .global
            .unwrap();
        assert_eq!(c.denied("a SecretWord!").as_deref(), Some("SecretWord"));
        assert!(c.denied("how to make a pipe bomb").is_some());
        assert!(c.denied("a sunny day").is_none());
        let off = parse(r#"{"deny_words": ["x1"]}"#).unwrap().global.unwrap();
        assert!(off.denied("pipe bomb").is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"deny_code": 42}"#, "deny_code"),
            (r#"{"deny_words": ["a", " "]}"#, "deny_words[1]"),
            (r#"{"deny_jsonpath": ["$.a", "b"]}"#, "deny_jsonpath[1]"),
            (
                r#"{"replace_roles": [{"regex": "%{NOPE}"}]}"#,
                "replace_roles[0].regex",
            ),
            (
                r#"{"replace_roles": [{"regex": "a"}, {"regex": "("}]}"#,
                "replace_roles[1].regex",
            ),
            (
                r#"{"replace_roles": [{"regex": "a", "type": "scramble"}]}"#,
                "replace_roles[0].type",
            ),
            (
                r#"{"replace_roles": [{"regex": "x*"}]}"#,
                "replace_roles[0].regex",
            ),
        ];
        for (json, path) in cases {
            let err = parse(json).unwrap_err();
            assert_eq!(err.path, path, "{json}: {err}");
        }
    }
}
