//! ai-security-guard configuration, with Higress's camelCase keys.

use crate::core::{level, Bars, ContentPath};
use regex::Regex;
use sdk::config::{ConfigError, Validate};
use serde::Deserialize;
use serde_json::Value;

/// Default deny text (Higress's).
pub const DEFAULT_DENY_MESSAGE: &str = "很抱歉，我无法回答您的问题";
/// `action` for text moderation.
pub const TEXT_MODERATION_PLUS: &str = "TextModerationPlus";
/// `action` for the AI guardrail (multimodal guard).
pub const MULTI_MODAL_GUARD: &str = "MultiModalGuard";

/// How a consumer name is matched.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// Equal.
    Exact,
    /// Starts with.
    Prefix,
    /// A regex.
    Regexp,
}

/// One entry of `consumerRequestCheckService`, `consumerResponseCheckService` or
/// `consumerRiskLevel`: a consumer matcher and the settings it overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerEntry {
    /// Consumer name, prefix or regex.
    pub name: String,
    /// How `name` matches.
    pub match_type: MatchType,
    /// The rest of the entry (service names, level bars).
    #[serde(flatten)]
    pub settings: serde_json::Map<String, Value>,
    #[serde(skip)]
    regex: Option<Regex>,
}

impl ConsumerEntry {
    fn matches(&self, consumer: &str) -> bool {
        match self.match_type {
            MatchType::Exact => consumer == self.name,
            MatchType::Prefix => consumer.starts_with(&self.name),
            MatchType::Regexp => self.regex.as_ref().is_some_and(|r| r.is_match(consumer)),
        }
    }
}

/// The plugin configuration (global or one `_rules_` entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GuardConfig {
    /// Envoy cluster of the content security endpoint (Higress: the service name).
    pub service_name: String,
    /// Port of the endpoint (kept for Higress configs; the cluster decides).
    pub service_port: Value,
    /// Host of the endpoint, e.g. `green-cip.cn-shanghai.aliyuncs.com` (`:authority`).
    pub service_host: String,
    /// AccessKey id.
    pub access_key: String,
    /// AccessKey secret (signs, never sent).
    pub secret_key: String,
    /// STS token, if the key is temporary.
    pub security_token: Option<String>,
    /// `TextModerationPlus` (default) or `MultiModalGuard`.
    pub action: String,
    /// Check prompts (default false).
    pub check_request: bool,
    /// Check answers (default false).
    pub check_response: bool,
    /// Service for prompts (default by action).
    pub request_check_service: Option<String>,
    /// Service for answers (default by action).
    pub response_check_service: Option<String>,
    /// Where the prompt is (default `messages.@reverse.0.content`).
    pub request_content_json_path: String,
    /// Where a JSON answer's text is (default `choices.0.message.content`).
    pub response_content_json_path: String,
    /// Where a stream event's text is (default `choices.0.delta.content`).
    pub response_stream_content_json_path: String,
    /// Tried when the answer path finds nothing.
    pub response_content_fallback_json_paths: Vec<String>,
    /// Tried when the stream path finds nothing.
    pub response_stream_content_fallback_json_paths: Vec<String>,
    /// Status of deny answers (default 200: an answer in the model's shape).
    pub deny_code: u32,
    /// Deny text (default: the service's suggested answer, else Higress's text).
    pub deny_message: Option<String>,
    /// `openai` (default): deny answers in the client's protocol; `original`: the service's
    /// verdict as JSON.
    pub protocol: String,
    /// TextModerationPlus: block at this `RiskLevel` or above (default `high`).
    pub risk_level_bar: String,
    /// MultiModalGuard bars (default `max` / `S4`: detect, never block).
    pub content_moderation_level_bar: String,
    /// See `content_moderation_level_bar`.
    pub prompt_attack_level_bar: String,
    /// See `content_moderation_level_bar`.
    pub sensitive_data_level_bar: String,
    /// See `content_moderation_level_bar`.
    pub malicious_url_level_bar: String,
    /// See `content_moderation_level_bar`.
    pub model_hallucination_level_bar: String,
    /// See `content_moderation_level_bar`.
    pub custom_label_level_bar: String,
    /// `block` (default) or `mask` (MultiModalGuard: use the service's desensitized prompt).
    pub risk_action: String,
    /// Call timeout, ms (default 2000).
    pub timeout: u64,
    /// Longest text per call, chars (default 1000); longer texts are checked in pieces.
    pub buffer_limit: usize,
    /// Chars of a streamed answer checked at a time (default 200).
    pub stream_window: usize,
    /// Let the text through when the service fails or times out (default true, as Higress).
    pub fail_open: bool,
    /// Per-consumer request services.
    pub consumer_request_check_service: Vec<ConsumerEntry>,
    /// Per-consumer response services.
    pub consumer_response_check_service: Vec<ConsumerEntry>,
    /// Per-consumer level bars.
    pub consumer_risk_level: Vec<ConsumerEntry>,
    /// Request header naming the consumer (set by Envoy's auth filter, never by the client).
    pub consumer_header: String,
    #[serde(skip)]
    paths: Option<Paths>,
}

/// Compiled content paths.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Prompt.
    pub request: ContentPath,
    /// JSON answer.
    pub response: ContentPath,
    /// Its fallbacks.
    pub response_fallbacks: Vec<ContentPath>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            service_name: String::new(),
            service_port: Value::Null,
            service_host: String::new(),
            access_key: String::new(),
            secret_key: String::new(),
            security_token: None,
            action: TEXT_MODERATION_PLUS.into(),
            check_request: false,
            check_response: false,
            request_check_service: None,
            response_check_service: None,
            request_content_json_path: "messages.@reverse.0.content".into(),
            response_content_json_path: "choices.0.message.content".into(),
            response_stream_content_json_path: "choices.0.delta.content".into(),
            response_content_fallback_json_paths: vec![
                "choices.0.message.content".into(),
                "content.#(type==\"text\")#.text".into(),
            ],
            response_stream_content_fallback_json_paths: vec![
                "choices.0.delta.content".into(),
                "delta.text".into(),
            ],
            deny_code: 200,
            deny_message: None,
            protocol: "openai".into(),
            risk_level_bar: "high".into(),
            content_moderation_level_bar: "max".into(),
            prompt_attack_level_bar: "max".into(),
            sensitive_data_level_bar: "S4".into(),
            malicious_url_level_bar: "max".into(),
            model_hallucination_level_bar: "max".into(),
            custom_label_level_bar: "max".into(),
            risk_action: "block".into(),
            timeout: 2000,
            buffer_limit: 1000,
            stream_window: 200,
            fail_open: true,
            consumer_request_check_service: Vec::new(),
            consumer_response_check_service: Vec::new(),
            consumer_risk_level: Vec::new(),
            consumer_header: "x-mse-consumer".into(),
            paths: None,
        }
    }
}

const BAR_KEYS: [&str; 7] = [
    "riskLevelBar",
    "contentModerationLevelBar",
    "promptAttackLevelBar",
    "sensitiveDataLevelBar",
    "maliciousUrlLevelBar",
    "modelHallucinationLevelBar",
    "customLabelLevelBar",
];

fn bar_ok(key: &str, value: &str) -> bool {
    let sensitive = key == "sensitiveDataLevelBar";
    let v = value.to_ascii_lowercase();
    let allowed: &[&str] = if sensitive {
        &["s4", "s3", "s2", "s1"]
    } else {
        &["max", "high", "medium", "low"]
    };
    allowed.contains(&v.as_str())
}

impl GuardConfig {
    /// Whether the action is the multimodal guard.
    pub fn multimodal(&self) -> bool {
        self.action.starts_with(MULTI_MODAL_GUARD)
    }

    /// The compiled paths (set by validation).
    pub fn paths(&self) -> Option<&Paths> {
        self.paths.as_ref()
    }

    /// Whether deny answers are the service's verdict as JSON.
    pub fn original_protocol(&self) -> bool {
        self.protocol == "original"
    }

    /// Whether `riskAction` is `mask`.
    pub fn masks(&self) -> bool {
        self.risk_action == "mask"
    }

    /// The service checking prompts of `consumer`.
    pub fn request_service(&self, consumer: Option<&str>) -> String {
        consumer_setting(
            &self.consumer_request_check_service,
            consumer,
            "requestCheckService",
        )
        .or_else(|| self.request_check_service.clone())
        .unwrap_or_else(|| {
            if self.multimodal() {
                "query_security_check".into()
            } else {
                "llm_query_moderation".into()
            }
        })
    }

    /// The service checking answers for `consumer`.
    pub fn response_service(&self, consumer: Option<&str>) -> String {
        consumer_setting(
            &self.consumer_response_check_service,
            consumer,
            "responseCheckService",
        )
        .or_else(|| self.response_check_service.clone())
        .unwrap_or_else(|| {
            if self.multimodal() {
                "response_security_check".into()
            } else {
                "llm_response_moderation".into()
            }
        })
    }

    /// The bars for `consumer` (its `consumerRiskLevel` entry over the global bars).
    pub fn bars(&self, consumer: Option<&str>) -> Bars {
        let get = |key: &str, global: &str| {
            let v = consumer_setting(&self.consumer_risk_level, consumer, key)
                .unwrap_or_else(|| global.to_string());
            level(&v).unwrap_or(4)
        };
        Bars {
            risk: get("riskLevelBar", &self.risk_level_bar),
            content_moderation: get(
                "contentModerationLevelBar",
                &self.content_moderation_level_bar,
            ),
            prompt_attack: get("promptAttackLevelBar", &self.prompt_attack_level_bar),
            sensitive_data: get("sensitiveDataLevelBar", &self.sensitive_data_level_bar),
            malicious_url: get("maliciousUrlLevelBar", &self.malicious_url_level_bar),
            model_hallucination: get(
                "modelHallucinationLevelBar",
                &self.model_hallucination_level_bar,
            ),
            custom_label: get("customLabelLevelBar", &self.custom_label_level_bar),
        }
    }
}

fn consumer_setting(
    entries: &[ConsumerEntry],
    consumer: Option<&str>,
    key: &str,
) -> Option<String> {
    let consumer = consumer?;
    entries
        .iter()
        .filter(|e| e.matches(consumer))
        .find_map(|e| {
            e.settings
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
        })
}

impl Validate for GuardConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("serviceName", &self.service_name),
            ("serviceHost", &self.service_host),
            ("accessKey", &self.access_key),
            ("secretKey", &self.secret_key),
        ] {
            if value.trim().is_empty() && (self.check_request || self.check_response) {
                return Err(ConfigError::new(key, "is required"));
            }
        }
        if ![TEXT_MODERATION_PLUS, MULTI_MODAL_GUARD].contains(&self.action.as_str()) {
            return Err(ConfigError::new(
                "action",
                format!("must be {TEXT_MODERATION_PLUS} or {MULTI_MODAL_GUARD}"),
            ));
        }
        if !(200..=599).contains(&self.deny_code) {
            return Err(ConfigError::new(
                "denyCode",
                "must be an HTTP status from 200 to 599",
            ));
        }
        if !["openai", "original"].contains(&self.protocol.as_str()) {
            return Err(ConfigError::new("protocol", "must be openai or original"));
        }
        if !["block", "mask"].contains(&self.risk_action.as_str()) {
            return Err(ConfigError::new("riskAction", "must be block or mask"));
        }
        if self.risk_level_bar.is_empty() || !bar_ok("riskLevelBar", &self.risk_level_bar) {
            return Err(ConfigError::new(
                "riskLevelBar",
                "must be one of max, high, medium, low",
            ));
        }
        let bars = [
            (
                "contentModerationLevelBar",
                &self.content_moderation_level_bar,
            ),
            ("promptAttackLevelBar", &self.prompt_attack_level_bar),
            ("sensitiveDataLevelBar", &self.sensitive_data_level_bar),
            ("maliciousUrlLevelBar", &self.malicious_url_level_bar),
            (
                "modelHallucinationLevelBar",
                &self.model_hallucination_level_bar,
            ),
            ("customLabelLevelBar", &self.custom_label_level_bar),
        ];
        for (key, value) in bars {
            if !bar_ok(key, value) {
                let allowed = if key == "sensitiveDataLevelBar" {
                    "S4, S3, S2, S1"
                } else {
                    "max, high, medium, low"
                };
                return Err(ConfigError::new(key, format!("must be one of {allowed}")));
            }
        }
        if self.timeout == 0 {
            return Err(ConfigError::new("timeout", "must be at least 1 ms"));
        }
        if self.buffer_limit == 0 {
            return Err(ConfigError::new("bufferLimit", "must be at least 1"));
        }
        if self.stream_window == 0 {
            return Err(ConfigError::new("streamWindow", "must be at least 1"));
        }
        for (field, entries) in [
            (
                "consumerRequestCheckService",
                &mut self.consumer_request_check_service,
            ),
            (
                "consumerResponseCheckService",
                &mut self.consumer_response_check_service,
            ),
            ("consumerRiskLevel", &mut self.consumer_risk_level),
        ] {
            for (i, e) in entries.iter_mut().enumerate() {
                if e.match_type == MatchType::Regexp {
                    e.regex = Some(Regex::new(&e.name).map_err(|err| {
                        ConfigError::new(format!("{field}[{i}].name"), err.to_string())
                    })?);
                }
                if field == "consumerRiskLevel" {
                    for key in BAR_KEYS {
                        if let Some(v) = e.settings.get(key) {
                            let ok = v.as_str().is_some_and(|s| bar_ok(key, s));
                            if !ok {
                                return Err(ConfigError::new(
                                    format!("{field}[{i}].{key}"),
                                    "is not a level of this dimension",
                                ));
                            }
                        }
                    }
                }
            }
        }
        let path = |key: &str, p: &str| ContentPath::parse(p).map_err(|e| ConfigError::new(key, e));
        let fallbacks = self
            .response_content_fallback_json_paths
            .iter()
            .enumerate()
            .map(|(i, p)| path(&format!("responseContentFallbackJsonPaths[{i}]"), p))
            .collect::<Result<_, _>>()?;
        for (i, p) in self
            .response_stream_content_fallback_json_paths
            .iter()
            .enumerate()
        {
            path(&format!("responseStreamContentFallbackJsonPaths[{i}]"), p)?;
        }
        path(
            "responseStreamContentJsonPath",
            &self.response_stream_content_json_path,
        )?;
        self.paths = Some(Paths {
            request: path("requestContentJsonPath", &self.request_content_json_path)?,
            response: path("responseContentJsonPath", &self.response_content_json_path)?,
            response_fallbacks: fallbacks,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::config::{RuleMode, RuleSet};

    fn parse(json: &str) -> Result<RuleSet<GuardConfig>, ConfigError> {
        RuleSet::parse(json.as_bytes(), RuleMode::Independent)
    }

    const BASE: &str = r#""serviceName": "green", "servicePort": 443, "serviceHost": "green-cip.cn-shanghai.aliyuncs.com",
        "accessKey": "ak", "secretKey": "sk", "checkRequest": true"#;

    #[test]
    fn defaults_follow_the_action() {
        let c = parse(&format!("{{{BASE}}}")).unwrap().global.unwrap();
        assert_eq!(c.request_service(None), "llm_query_moderation");
        assert_eq!(c.response_service(None), "llm_response_moderation");
        assert_eq!(c.bars(None), Bars::default());
        assert!(c.fail_open && !c.multimodal());
        let c = parse(&format!("{{{BASE}, \"action\": \"MultiModalGuard\"}}"))
            .unwrap()
            .global
            .unwrap();
        assert_eq!(c.request_service(None), "query_security_check");
        assert_eq!(c.response_service(None), "response_security_check");
    }

    #[test]
    fn consumers_override_services_and_bars() {
        let c = parse(&format!(
            r#"{{{BASE}, "promptAttackLevelBar": "high",
            "consumerRequestCheckService": [{{"name": "vip", "matchType": "exact", "requestCheckService": "vip_check"}}],
            "consumerResponseCheckService": [{{"name": "team-", "matchType": "prefix", "responseCheckService": "team_out"}}],
            "consumerRiskLevel": [{{"name": "^test.*", "matchType": "regexp", "promptAttackLevelBar": "low"}}]}}"#
        ))
        .unwrap()
        .global
        .unwrap();
        assert_eq!(c.request_service(Some("vip")), "vip_check");
        assert_eq!(c.request_service(Some("vip2")), "llm_query_moderation");
        assert_eq!(c.response_service(Some("team-a")), "team_out");
        assert_eq!(c.bars(Some("tester")).prompt_attack, 1);
        assert_eq!(c.bars(Some("other")).prompt_attack, 3);
        assert_eq!(c.bars(None).prompt_attack, 3);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"checkRequest": true}"#.to_string(), "serviceName"),
            (format!("{{{BASE}, \"action\": \"Nope\"}}"), "action"),
            (format!("{{{BASE}, \"denyCode\": 42}}"), "denyCode"),
            (format!("{{{BASE}, \"protocol\": \"x\"}}"), "protocol"),
            (format!("{{{BASE}, \"riskAction\": \"x\"}}"), "riskAction"),
            (format!("{{{BASE}, \"sensitiveDataLevelBar\": \"high\"}}"), "sensitiveDataLevelBar"),
            (format!("{{{BASE}, \"promptAttackLevelBar\": \"S1\"}}"), "promptAttackLevelBar"),
            (format!("{{{BASE}, \"timeout\": 0}}"), "timeout"),
            (format!("{{{BASE}, \"bufferLimit\": 0}}"), "bufferLimit"),
            (format!("{{{BASE}, \"requestContentJsonPath\": \"a..b\"}}"), "requestContentJsonPath"),
            (
                format!("{{{BASE}, \"consumerRiskLevel\": [{{\"name\": \"(\", \"matchType\": \"regexp\"}}]}}"),
                "consumerRiskLevel[0].name",
            ),
            (
                format!("{{{BASE}, \"consumerRiskLevel\": [{{\"name\": \"a\", \"matchType\": \"exact\", \"sensitiveDataLevelBar\": \"low\"}}]}}"),
                "consumerRiskLevel[0].sensitiveDataLevelBar",
            ),
        ];
        for (json, path) in cases {
            let err = parse(&json).unwrap_err();
            assert_eq!(err.path, path, "{json}: {err}");
        }
    }
}
