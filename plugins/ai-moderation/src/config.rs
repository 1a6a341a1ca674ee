//! Moderation configuration (camelCase keys, like Higress's ai-security-guard).

use crate::core::{CheckScope, Rules};
use sdk::config::{ConfigError, Validate};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Which way a text travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client's request.
    Request,
    /// The model's answer.
    Response,
}

/// The plugin configuration (global or one `_rules_` entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ModerationConfig {
    /// Check requests (default true).
    pub check_request: bool,
    /// Check answers (default false).
    pub check_response: bool,
    /// Status of the deny answer; 200 answers like the model would (default 200).
    pub deny_code: u32,
    /// Text of the deny answer.
    pub deny_message: String,
    /// Words and phrases denied in both directions (unless a direction has its own rules).
    pub deny_words: Vec<String>,
    /// Regexes denied in both directions (unless a direction has its own rules).
    pub deny_patterns: Vec<String>,
    /// Replaces `denyWords`/`denyPatterns` for requests.
    pub request_rules: Option<RuleLists>,
    /// Replaces `denyWords`/`denyPatterns` for answers.
    pub response_rules: Option<RuleLists>,
    /// Which request text is checked (default `lastUserMessage`).
    pub check_scope: CheckScope,
    /// Chars of a streamed answer checked at a time (default 200).
    pub stream_window: usize,
    /// An OpenAI-compatible moderation service to ask as well.
    pub service: Option<ServiceConfig>,
    /// Compiled request rules.
    #[serde(skip)]
    compiled_request: Rules,
    /// Compiled answer rules.
    #[serde(skip)]
    compiled_response: Rules,
}

/// Default deny text.
pub const DEFAULT_DENY_MESSAGE: &str = "I can't help with that request.";

impl Default for ModerationConfig {
    fn default() -> Self {
        ModerationConfig {
            check_request: true,
            check_response: false,
            deny_code: 200,
            deny_message: DEFAULT_DENY_MESSAGE.to_string(),
            deny_words: Vec::new(),
            deny_patterns: Vec::new(),
            request_rules: None,
            response_rules: None,
            check_scope: CheckScope::default(),
            stream_window: 200,
            service: None,
            compiled_request: Rules::default(),
            compiled_response: Rules::default(),
        }
    }
}

impl ModerationConfig {
    /// The compiled local rules for a direction (empty before validation).
    pub fn rules(&self, direction: Direction) -> &Rules {
        match direction {
            Direction::Request => &self.compiled_request,
            Direction::Response => &self.compiled_response,
        }
    }

    /// Whether a direction is checked at all: enabled, with local rules or a service.
    pub fn checks(&self, direction: Direction) -> bool {
        let enabled = match direction {
            Direction::Request => self.check_request,
            Direction::Response => self.check_response,
        };
        enabled && (!self.rules(direction).is_empty() || self.service.is_some())
    }
}

/// Deny lists for one direction.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RuleLists {
    /// Words and phrases.
    pub deny_words: Vec<String>,
    /// Regexes.
    pub deny_patterns: Vec<String>,
}

/// The moderation service (OpenAI `/v1/moderations` API).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Envoy cluster to call (required).
    pub cluster: String,
    /// Request path (default `/v1/moderations`).
    #[serde(default = "default_path")]
    pub path: String,
    /// `:authority` of the call (default `moderation`).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Sent as `model` when set.
    #[serde(default)]
    pub model: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Call timeout in milliseconds (default 2000).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Category → score at or above which it flags; empty: the service's `flagged` decides.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// Let the text through when the service fails or answers nonsense (default true).
    #[serde(default = "default_true")]
    pub fail_open: bool,
    /// Longest piece of `input` sent, in chars (default 8000).
    #[serde(default = "default_max_input_chars")]
    pub max_input_chars: usize,
}

fn default_path() -> String {
    "/v1/moderations".into()
}

fn default_authority() -> String {
    "moderation".into()
}

fn default_timeout() -> u64 {
    2000
}

fn default_true() -> bool {
    true
}

fn default_max_input_chars() -> usize {
    8000
}

/// Compiles one direction's lists; `prefix` is the config key holding them (or empty).
fn compile(words: &[String], patterns: &[String], prefix: &str) -> Result<Rules, ConfigError> {
    let key = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    if let Some(i) = words.iter().position(|w| w.trim().is_empty()) {
        return Err(ConfigError::new(
            format!("{}[{i}]", key("denyWords")),
            "must not be blank",
        ));
    }
    Rules::new(words, patterns).map_err(|(i, message)| {
        let path = if i == usize::MAX {
            key(if words.is_empty() {
                "denyPatterns"
            } else {
                "denyWords"
            })
        } else {
            format!("{}[{i}]", key("denyPatterns"))
        };
        ConfigError::new(path, message)
    })
}

impl Validate for ServiceConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.cluster.trim().is_empty() {
            return Err(ConfigError::new("cluster", "must not be empty"));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::new("path", "must start with `/`"));
        }
        if self.authority.trim().is_empty() {
            return Err(ConfigError::new("authority", "must not be empty"));
        }
        if self.timeout == 0 {
            return Err(ConfigError::new("timeout", "must be at least 1 ms"));
        }
        if self.max_input_chars == 0 {
            return Err(ConfigError::new("maxInputChars", "must be at least 1"));
        }
        for (name, threshold) in &self.thresholds {
            if !threshold.is_finite() || *threshold < 0.0 {
                return Err(ConfigError::new(
                    format!("thresholds.{name}"),
                    "must be a finite number >= 0",
                ));
            }
        }
        Ok(())
    }
}

impl Validate for ModerationConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if !(200..=599).contains(&self.deny_code) {
            return Err(ConfigError::new(
                "denyCode",
                "must be an HTTP status from 200 to 599",
            ));
        }
        if self.stream_window == 0 {
            return Err(ConfigError::new("streamWindow", "must be at least 1"));
        }
        if let Some(service) = &mut self.service {
            service.validate().map_err(|e| e.under("service"))?;
        }
        self.compiled_request = match &self.request_rules {
            Some(r) => compile(&r.deny_words, &r.deny_patterns, "requestRules")?,
            None => compile(&self.deny_words, &self.deny_patterns, "")?,
        };
        self.compiled_response = match &self.response_rules {
            Some(r) => compile(&r.deny_words, &r.deny_patterns, "responseRules")?,
            None => compile(&self.deny_words, &self.deny_patterns, "")?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::config::{RuleMode, RuleSet};

    fn parse(json: &str) -> Result<RuleSet<ModerationConfig>, ConfigError> {
        RuleSet::parse(json.as_bytes(), RuleMode::Independent)
    }

    fn global(json: &str) -> std::rc::Rc<ModerationConfig> {
        parse(json).unwrap().global.unwrap()
    }

    #[test]
    fn defaults() {
        let c = global("{}");
        assert!(c.check_request && !c.check_response);
        assert_eq!(c.deny_code, 200);
        assert_eq!(c.deny_message, DEFAULT_DENY_MESSAGE);
        assert_eq!(c.check_scope, CheckScope::LastUserMessage);
        assert_eq!(c.stream_window, 200);
        assert!(c.service.is_none());
        assert!(c.rules(Direction::Request).is_empty());
        assert!(!c.checks(Direction::Request));

        let c = global(r#"{"service":{"cluster":"outbound|443||mod.example.com"}}"#);
        let s = c.service.as_ref().unwrap();
        assert_eq!(s.path, "/v1/moderations");
        assert_eq!(s.authority, "moderation");
        assert_eq!(s.timeout, 2000);
        assert_eq!(s.max_input_chars, 8000);
        assert!(s.fail_open && s.thresholds.is_empty());
        assert!(s.model.is_none() && s.api_key.is_none());
        assert!(c.checks(Direction::Request) && !c.checks(Direction::Response));
    }

    #[test]
    fn full_config_parses() {
        let c = global(
            r#"{"checkRequest":false,"checkResponse":true,"denyCode":403,"denyMessage":"no",
                "denyWords":["bomb"],"denyPatterns":["\\d{16}"],"checkScope":"conversation",
                "streamWindow":50,
                "service":{"cluster":"c","path":"/mod","authority":"mod.local","model":"omni-moderation-latest",
                           "apiKey":"sk-1","timeout":500,"thresholds":{"violence":0.5},
                           "failOpen":false,"maxInputChars":100}}"#,
        );
        assert!(!c.check_request && c.check_response);
        assert_eq!((c.deny_code, c.deny_message.as_str()), (403, "no"));
        assert_eq!(c.check_scope, CheckScope::Conversation);
        assert_eq!(c.stream_window, 50);
        let s = c.service.as_ref().unwrap();
        assert_eq!(s.model.as_deref(), Some("omni-moderation-latest"));
        assert_eq!(s.api_key.as_deref(), Some("sk-1"));
        assert_eq!(
            (s.timeout, s.max_input_chars, s.fail_open),
            (500, 100, false)
        );
        assert_eq!(s.thresholds.get("violence"), Some(&0.5));
        for dir in [Direction::Request, Direction::Response] {
            assert_eq!(c.rules(dir).find("a BOMB!").as_deref(), Some("BOMB"));
            assert!(c.rules(dir).find("card 1234567812345678").is_some());
        }
        assert!(!c.checks(Direction::Request) && c.checks(Direction::Response));
    }

    #[test]
    fn direction_rules_replace_the_shared_lists() {
        let c = global(
            r#"{"denyWords":["shared"],"requestRules":{"denyWords":["asked"]},
                "responseRules":{"denyPatterns":["answer(ed)?"]}}"#,
        );
        let req = c.rules(Direction::Request);
        let resp = c.rules(Direction::Response);
        assert!(req.find("shared").is_none() && req.find("asked").is_some());
        assert!(resp.find("shared").is_none() && resp.find("asked").is_none());
        assert_eq!(resp.find("I answered").as_deref(), Some("answered"));

        let c = global(r#"{"denyWords":["shared"],"responseRules":{}}"#);
        assert!(c.rules(Direction::Request).find("shared").is_some());
        assert!(c.rules(Direction::Response).is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"denyPatterns":["a","b","("]}"#, "denyPatterns[2]"),
            (r#"{"denyPatterns":["x*"]}"#, "denyPatterns[0]"),
            (r#"{"denyWords":["a"," "]}"#, "denyWords[1]"),
            (
                r#"{"requestRules":{"denyPatterns":["ok","[z-a]"]}}"#,
                "requestRules.denyPatterns[1]",
            ),
            (
                r#"{"responseRules":{"denyWords":[""]}}"#,
                "responseRules.denyWords[0]",
            ),
            (r#"{"denyCode":99}"#, "denyCode"),
            (r#"{"denyCode":"x"}"#, "denyCode"),
            (r#"{"streamWindow":0}"#, "streamWindow"),
            (r#"{"checkScope":"everything"}"#, "checkScope"),
            (r#"{"service":{}}"#, "service"),
            (r#"{"service":{"cluster":" "}}"#, "service.cluster"),
            (r#"{"service":{"cluster":"c","path":"v1"}}"#, "service.path"),
            (
                r#"{"service":{"cluster":"c","timeout":0}}"#,
                "service.timeout",
            ),
            (
                r#"{"service":{"cluster":"c","maxInputChars":0}}"#,
                "service.maxInputChars",
            ),
            (
                r#"{"service":{"cluster":"c","thresholds":{"hate":-1}}}"#,
                "service.thresholds.hate",
            ),
            (
                r#"{"_rules_":[{"_match_route_":["r"],"denyPatterns":["("]}]}"#,
                "_rules_[0].denyPatterns[0]",
            ),
        ];
        for (json, path) in cases {
            let err = parse(json).unwrap_err();
            assert_eq!(err.path, path, "{json}: {err}");
        }
    }

    #[test]
    fn unknown_keys_warn() {
        let set = parse(r#"{"denyWord":["x"]}"#).unwrap();
        assert_eq!(set.warnings.len(), 1);
        assert!(set.warnings[0].contains("denyWord"));
    }
}
