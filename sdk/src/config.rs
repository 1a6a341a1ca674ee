//! Plugin configuration: JSON parsing with errors that name the bad field, unknown keys reported
//! as warnings, and Higress `_rules_` choosing the effective config per request.
//!
//! ```json
//! {"prepend": [...],
//!  "_rules_": [{"_match_route_": ["chat"], "prepend": [...]},
//!              {"_match_domain_": ["*.example.com"], "append": [...]}]}
//! ```
//! The first matching rule wins; a request no rule matches gets the global config (the top level
//! without `_rules_`), or none when the top level is empty and rules exist. A stage selects once,
//! in its request-header callback, and keeps the handle [`RuleSet::select`] gives for the rest of
//! the request.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::rc::Rc;

/// A configuration error that names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config at `{path}`: {message}")]
pub struct ConfigError {
    /// Where the error is, e.g. `_rules_[1].prepend[0].role`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Prefixes the path with `prefix` (a parent field).
    pub fn under(mut self, prefix: &str) -> ConfigError {
        self.path = join_path(prefix, &self.path);
        self
    }
}

fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty() || path == ".") {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Checks done after serde parsing (regex compilation, ranges, …).
pub trait Validate {
    /// Returns an error naming the field when the parsed config is unusable.
    fn validate(&mut self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// What loaded but works differently than configured, to log as warnings (asked after
    /// `validate`).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Deserializes a string that YAML configs may write as a bare number or boolean (`key: 102234`),
/// as Higress reads them.
pub fn string_or_scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    match <Value as serde::Deserialize>::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(D::Error::custom(format!(
            "invalid type: {other}, expected a string"
        ))),
    }
}

/// Parses `value` into `T`; unknown keys are appended to `warnings` as full paths.
pub fn from_value<T: DeserializeOwned + Validate>(
    value: Value,
    warnings: &mut Vec<String>,
) -> Result<T, ConfigError> {
    let mut ignored = Vec::new();
    // serde_ignored writes `?` for an `Option` level; users see plain field paths.
    let mut on_ignored = |p: serde_ignored::Path<'_>| {
        let path = p.to_string().replace(".?", "");
        ignored.push(path.strip_prefix("?.").unwrap_or(&path).to_string())
    };
    let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    warnings.extend(
        ignored
            .into_iter()
            .map(|p| format!("unknown key `{p}` ignored")),
    );
    let mut config = result.map_err(|e| {
        let path = e.path().to_string();
        ConfigError::new(path, e.into_inner().to_string())
    })?;
    config.validate()?;
    warnings.extend(config.warnings());
    Ok(config)
}

/// Reads raw plugin configuration bytes (empty means `{}`) into a JSON object.
pub fn object_from_bytes(bytes: &[u8]) -> Result<Map<String, Value>, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ConfigError::new(
            ".",
            "the configuration must be a JSON object",
        )),
        Err(e) => Err(ConfigError::new(
            ".",
            format!("the configuration is not valid JSON: {e}"),
        )),
    }
}

/// How a rule's keys combine with the global config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMode {
    /// A rule's config stands alone (Higress `ParseConfigBy`).
    Independent,
    /// A rule's keys override the global config's keys (Higress `ParseOverrideConfigBy`).
    Override,
}

/// What a rule matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Envoy route names (`_match_route_`).
    Routes(Vec<String>),
    /// Request host names, `*.example.com` wildcards allowed (`_match_domain_`).
    Domains(Vec<String>),
    /// Upstream clusters or services (`_match_service_`).
    Services(Vec<String>),
}

/// Request facts a rule can match, looked up only when a rule needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKey {
    /// The Envoy route name.
    Route,
    /// The request's host (`:authority`, port stripped).
    Domain,
    /// The upstream cluster name.
    Service,
}

impl Matcher {
    fn key(&self) -> MatchKey {
        match self {
            Matcher::Routes(_) => MatchKey::Route,
            Matcher::Domains(_) => MatchKey::Domain,
            Matcher::Services(_) => MatchKey::Service,
        }
    }

    /// Whether the request fact `value` (for this matcher's key) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Routes(names) => names.iter().any(|n| n == value),
            Matcher::Domains(patterns) => {
                let host = strip_port(value);
                patterns.iter().any(|p| domain_matches(p, host))
            }
            Matcher::Services(names) => names.iter().any(|n| service_matches(n, value)),
        }
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // IPv6 literal: keep the bracketed address.
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

/// `*` matches every host, `*.example.com` any subdomain of example.com, anything else exactly.
fn domain_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return host.len() > suffix.len()
            && host
                .get(host.len() - suffix.len()..)
                .is_some_and(|s| s.eq_ignore_ascii_case(suffix));
    }
    pattern.eq_ignore_ascii_case(host)
}

/// Matches a cluster name exactly, or the host (with optional port) of an Istio/Higress-style
/// cluster name `outbound|<port>|<subset>|<host>`.
fn service_matches(name: &str, cluster: &str) -> bool {
    if name == cluster {
        return true;
    }
    let parts: Vec<&str> = cluster.split('|').collect();
    if let [_, port, _, host] = parts.as_slice() {
        return name == *host || name == format!("{host}:{port}");
    }
    false
}

/// One `_rules_` entry with its parsed config.
#[derive(Debug, Clone)]
pub struct Rule<T> {
    /// What the rule matches.
    pub matcher: Matcher,
    /// The config used when it matches (shared with the requests that selected it).
    pub config: Rc<T>,
}

/// The global config plus `_rules_`, parsed once at configure time.
#[derive(Debug, Clone)]
pub struct RuleSet<T> {
    /// Config for requests no rule matches; `None` means the plugin is off for them.
    pub global: Option<Rc<T>>,
    /// Rules in config order.
    pub rules: Vec<Rule<T>>,
    /// Non-fatal findings (unknown keys) to log.
    pub warnings: Vec<String>,
}

const MATCH_KEYS: [(&str, MatchKey); 3] = [
    ("_match_route_", MatchKey::Route),
    ("_match_domain_", MatchKey::Domain),
    ("_match_service_", MatchKey::Service),
];

impl<T: DeserializeOwned + Validate> RuleSet<T> {
    /// Parses raw plugin configuration bytes.
    pub fn parse(bytes: &[u8], mode: RuleMode) -> Result<RuleSet<T>, ConfigError> {
        let mut top = object_from_bytes(bytes)?;
        let raw_rules = top.remove("_rules_");
        let mut warnings = Vec::new();
        let raw_rules = match raw_rules {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(rules)) => rules,
            Some(_) => return Err(ConfigError::new("_rules_", "must be an array of rules")),
        };
        let global = if top.is_empty() && !raw_rules.is_empty() {
            None
        } else {
            Some(Rc::new(from_value(
                Value::Object(top.clone()),
                &mut warnings,
            )?))
        };
        let mut rules = Vec::with_capacity(raw_rules.len());
        for (i, raw) in raw_rules.into_iter().enumerate() {
            let at = format!("_rules_[{i}]");
            let Value::Object(mut obj) = raw else {
                return Err(ConfigError::new(at, "a rule must be an object"));
            };
            let matcher = take_matcher(&mut obj).map_err(|e| e.under(&at))?;
            let body = match mode {
                RuleMode::Independent => obj,
                RuleMode::Override => {
                    let mut merged = top.clone();
                    merged.extend(obj);
                    merged
                }
            };
            let mut rule_warnings = Vec::new();
            let config =
                from_value(Value::Object(body), &mut rule_warnings).map_err(|e| e.under(&at))?;
            warnings.extend(rule_warnings.into_iter().map(|w| format!("{at}: {w}")));
            rules.push(Rule {
                matcher,
                config: Rc::new(config),
            });
        }
        Ok(RuleSet {
            global,
            rules,
            warnings,
        })
    }
}

fn take_matcher(obj: &mut Map<String, Value>) -> Result<Matcher, ConfigError> {
    let mut found = None;
    for (key, kind) in MATCH_KEYS {
        let Some(v) = obj.remove(key) else { continue };
        if found.is_some() {
            return Err(ConfigError::new(
                key,
                "a rule takes one of _match_route_, _match_domain_, _match_service_",
            ));
        }
        let list: Vec<String> = match v {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) if !s.is_empty() => Ok(s),
                    _ => Err(ConfigError::new(key, "entries must be non-empty strings")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(ConfigError::new(key, "must be an array of strings")),
        };
        if list.is_empty() {
            return Err(ConfigError::new(key, "must not be empty"));
        }
        found = Some(match kind {
            MatchKey::Route => Matcher::Routes(list),
            MatchKey::Domain => Matcher::Domains(list),
            MatchKey::Service => Matcher::Services(list),
        });
    }
    found.ok_or_else(|| {
        ConfigError::new(
            "",
            "a rule needs one of _match_route_, _match_domain_, _match_service_",
        )
    })
}

impl<T> RuleSet<T> {
    /// The effective config for a request; `lookup` supplies request facts on demand. The
    /// handle is the request's to keep: later callbacks use it without selecting again.
    pub fn select(&self, mut lookup: impl FnMut(MatchKey) -> Option<String>) -> Option<Rc<T>> {
        let mut cache: [Option<Option<String>>; 3] = [None, None, None];
        for rule in &self.rules {
            let key = rule.matcher.key();
            let slot = &mut cache[key as usize];
            let value = slot.get_or_insert_with(|| lookup(key));
            if value.as_deref().is_some_and(|v| rule.matcher.matches(v)) {
                return Some(Rc::clone(&rule.config));
            }
        }
        self.global.clone()
    }

    /// Whether any rule needs request facts (so callers can skip lookups).
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        name: String,
    }
    impl Validate for Strict {}

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Cfg {
        name: String,
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize, PartialEq, Default)]
    struct Item {
        role: String,
        size: u32,
    }
    impl Validate for Cfg {}

    fn parse(json: &str, mode: RuleMode) -> Result<RuleSet<Cfg>, ConfigError> {
        RuleSet::parse(json.as_bytes(), mode)
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(
            r#"{"items":[{"role":"a","size":1},{"role":"b","size":"x"}]}"#,
            RuleMode::Independent,
        )
        .err();
        assert_eq!(e.as_ref().map(|e| e.path.as_str()), Some("items[1].size"));
        let e = parse(
            r#"{"_rules_":[{"_match_route_":["r"],"items":[{"role":1,"size":1}]}]}"#,
            RuleMode::Independent,
        )
        .err();
        assert_eq!(
            e.as_ref().map(|e| e.path.as_str()),
            Some("_rules_[0].items[0].role")
        );
        let e = RuleSet::<Strict>::parse(br#"{"nam":"x"}"#, RuleMode::Independent).err();
        assert!(e.is_some_and(|e| e.message.contains("nam")));
        assert!(parse("[1]", RuleMode::Independent).is_err());
        assert!(parse("{bad", RuleMode::Independent).is_err());
        assert_eq!(
            parse(r#"{"_rules_":[{"name":"x"}]}"#, RuleMode::Independent)
                .err()
                .map(|e| e.path),
            Some("_rules_[0]".to_string())
        );
        assert_eq!(
            parse(
                r#"{"_rules_":[{"_match_route_":[]}]}"#,
                RuleMode::Independent
            )
            .err()
            .map(|e| e.path),
            Some("_rules_[0]._match_route_".to_string())
        );
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let set = parse(
            r#"{"name":"a","nmae":1,"_rules_":[{"_match_route_":["r"],"extra":true}]}"#,
            RuleMode::Independent,
        );
        let set = set.ok();
        let warnings = set.map(|s| s.warnings).unwrap_or_default();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("nmae"));
        assert!(warnings[1].starts_with("_rules_[0]") && warnings[1].contains("extra"));
    }

    fn pick(set: &RuleSet<Cfg>, route: &str, host: &str, svc: &str) -> Option<String> {
        set.select(|k| {
            Some(
                match k {
                    MatchKey::Route => route,
                    MatchKey::Domain => host,
                    MatchKey::Service => svc,
                }
                .to_string(),
            )
        })
        .map(|c| c.name.clone())
    }

    #[test]
    fn rules_select_first_match_then_global() {
        let set = parse(
            r#"{"name":"global","_rules_":[
                {"_match_route_":["chat"],"name":"route"},
                {"_match_domain_":["*.example.com","api.test"],"name":"domain"},
                {"_match_service_":["llm.default.svc.cluster.local:80"],"name":"svc"}]}"#,
            RuleMode::Independent,
        );
        let Ok(set) = set else { panic!("parse failed") };
        assert_eq!(
            pick(&set, "chat", "a.example.com", "x"),
            Some("route".to_string())
        );
        assert_eq!(
            pick(&set, "other", "a.example.com:8080", "x"),
            Some("domain".to_string())
        );
        assert_eq!(
            pick(&set, "other", "API.TEST", "x"),
            Some("domain".to_string())
        );
        assert_eq!(
            pick(&set, "other", "example.com", "x"),
            Some("global".to_string())
        );
        assert_eq!(
            pick(&set, "o", "h", "outbound|80||llm.default.svc.cluster.local"),
            Some("svc".to_string())
        );
        assert_eq!(pick(&set, "o", "h", "x"), Some("global".to_string()));
    }

    #[test]
    fn rules_only_config_is_off_elsewhere() {
        let Ok(set) = parse(
            r#"{"_rules_":[{"_match_route_":["chat"],"name":"r"}]}"#,
            RuleMode::Independent,
        ) else {
            panic!("parse failed")
        };
        assert_eq!(pick(&set, "chat", "h", "s"), Some("r".to_string()));
        assert_eq!(pick(&set, "x", "h", "s"), None);
        let Ok(empty) = parse("", RuleMode::Independent) else {
            panic!("parse failed")
        };
        assert_eq!(pick(&empty, "x", "h", "s"), Some("".to_string()));
    }

    #[test]
    fn override_mode_merges_global_keys() {
        let Ok(set) = parse(
            r#"{"name":"g","items":[{"role":"a","size":1}],"_rules_":[{"_match_route_":["r"],"name":"n"}]}"#,
            RuleMode::Override,
        ) else {
            panic!("parse failed")
        };
        assert_eq!(set.rules[0].config.items.len(), 1);
        assert_eq!(set.rules[0].config.name, "n");
        let Ok(ind) = parse(
            r#"{"name":"g","items":[{"role":"a","size":1}],"_rules_":[{"_match_route_":["r"],"name":"n"}]}"#,
            RuleMode::Independent,
        ) else {
            panic!("parse failed")
        };
        assert!(ind.rules[0].config.items.is_empty());
    }

    #[test]
    fn lookups_are_lazy_and_cached() {
        let Ok(set) = parse(
            r#"{"name":"g","_rules_":[{"_match_route_":["a"],"name":"1"},{"_match_route_":["b"],"name":"2"}]}"#,
            RuleMode::Independent,
        ) else {
            panic!("parse failed")
        };
        let mut calls = Vec::new();
        let got = set.select(|k| {
            calls.push(k);
            Some("b".to_string())
        });
        assert_eq!(got.as_deref().map(|c| c.name.as_str()), Some("2"));
        assert_eq!(calls, vec![MatchKey::Route]);
    }

    #[test]
    fn a_selection_is_a_handle_to_the_parsed_config() {
        let Ok(set) = parse(
            r#"{"name":"g","_rules_":[{"_match_route_":["a"],"name":"1"}]}"#,
            RuleMode::Independent,
        ) else {
            panic!("parse failed")
        };
        let route = |r: &'static str| move |_: MatchKey| Some(r.to_string());
        let (Some(rule), Some(global)) = (set.select(route("a")), set.select(route("b"))) else {
            panic!("nothing selected")
        };
        assert!(Rc::ptr_eq(&rule, &set.rules[0].config));
        assert!(set.global.as_ref().is_some_and(|g| Rc::ptr_eq(&global, g)));
    }

    #[test]
    fn strip_port_handles_ipv6() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
    }
}
