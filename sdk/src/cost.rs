//! Cost of a request: a price table (per model or model glob, per 1M tokens) turns usage into
//! money. Amounts are integers in micro-units of the table's currency: with prices per 1M tokens,
//! `tokens × price` is exactly the cost in micro-units.

use crate::config::ConfigError;
use crate::usage::Usage;
use serde::Deserialize;

/// Prices of one model (or every model a glob matches), per 1M tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelPrice {
    /// Model name, or a glob with `*` (e.g. `gpt-4o-mini*`).
    pub model: String,
    /// Uncached prompt tokens.
    #[serde(default)]
    pub input: f64,
    /// Generated tokens.
    #[serde(default)]
    pub output: f64,
    /// Prompt tokens read from a cache (default: `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to a cache (default: `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Reasoning tokens (default: `output`).
    #[serde(default)]
    pub reasoning: Option<f64>,
}

/// A price table: the configured models first, then (unless `defaults` is false) the shipped
/// [`DEFAULT_PRICES`]. The first entry whose glob matches the model prices it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct PriceTable {
    /// Currency of every price (default `USD`).
    pub currency: String,
    /// Prices, first match wins.
    pub models: Vec<ModelPrice>,
    /// Append the shipped default table.
    pub defaults: bool,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable {
            currency: "USD".into(),
            models: Vec::new(),
            defaults: true,
        }
    }
}

/// When [`DEFAULT_PRICES`] were taken from the vendors' public price lists (standard tier,
/// USD per 1M tokens, prompts under 200k tokens). Override them in config for your contract.
pub const DEFAULT_PRICES_DATE: &str = "2025-08";

/// `(model glob, input, cached input, cache write, output)` in USD per 1M tokens; reasoning is
/// billed as output. More specific globs come first.
pub const DEFAULT_PRICES: &[(&str, f64, f64, f64, f64)] = &[
    ("gpt-4o-mini*", 0.15, 0.075, 0.15, 0.60),
    ("gpt-4o*", 2.50, 1.25, 2.50, 10.00),
    ("gpt-4.1-nano*", 0.10, 0.025, 0.10, 0.40),
    ("gpt-4.1-mini*", 0.40, 0.10, 0.40, 1.60),
    ("gpt-4.1*", 2.00, 0.50, 2.00, 8.00),
    ("gpt-5-nano*", 0.05, 0.005, 0.05, 0.40),
    ("gpt-5-mini*", 0.25, 0.025, 0.25, 2.00),
    ("gpt-5*", 1.25, 0.125, 1.25, 10.00),
    ("o4-mini*", 1.10, 0.275, 1.10, 4.40),
    ("o3-mini*", 1.10, 0.55, 1.10, 4.40),
    ("o3*", 2.00, 0.50, 2.00, 8.00),
    ("claude-opus-4-1*", 15.00, 1.50, 18.75, 75.00),
    ("claude-opus-4*", 15.00, 1.50, 18.75, 75.00),
    ("claude-sonnet-4*", 3.00, 0.30, 3.75, 15.00),
    ("claude-3-7-sonnet*", 3.00, 0.30, 3.75, 15.00),
    ("claude-3-5-haiku*", 0.80, 0.08, 1.00, 4.00),
    ("gemini-2.5-pro*", 1.25, 0.31, 1.25, 10.00),
    ("gemini-2.5-flash-lite*", 0.10, 0.025, 0.10, 0.40),
    ("gemini-2.5-flash*", 0.30, 0.075, 0.30, 2.50),
    ("deepseek-chat*", 0.27, 0.07, 0.27, 1.10),
    ("deepseek-reasoner*", 0.55, 0.14, 0.55, 2.19),
];

impl ModelPrice {
    fn from_default(&(model, input, cached, write, output): &(&str, f64, f64, f64, f64)) -> Self {
        ModelPrice {
            model: model.to_string(),
            input,
            output,
            cached_input: Some(cached),
            cache_write: Some(write),
            reasoning: None,
        }
    }

    /// The cost of `usage` at these prices, in micro-units.
    pub fn cost(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_input.min(usage.input);
        let written = usage.cache_creation_input.min(usage.input - cached);
        let fresh = usage.input - cached - written;
        let reasoning = usage.reasoning.min(usage.output);
        let micros = fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + written as f64 * self.cache_write.unwrap_or(self.input)
            + (usage.output - reasoning) as f64 * self.output
            + reasoning as f64 * self.reasoning.unwrap_or(self.output);
        if micros.is_finite() && micros > 0.0 {
            micros.round() as u64
        } else {
            0
        }
    }
}

impl PriceTable {
    /// Checks the prices (finite, not negative, a model name each).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.currency.trim().is_empty() {
            return Err(ConfigError::new("currency", "must not be empty"));
        }
        for (i, m) in self.models.iter().enumerate() {
            let at = |f: &str| format!("models[{i}].{f}");
            if m.model.trim().is_empty() {
                return Err(ConfigError::new(at("model"), "must not be empty"));
            }
            let prices = [
                ("input", Some(m.input)),
                ("output", Some(m.output)),
                ("cached_input", m.cached_input),
                ("cache_write", m.cache_write),
                ("reasoning", m.reasoning),
            ];
            for (name, p) in prices {
                if p.is_some_and(|p| !p.is_finite() || p < 0.0) {
                    return Err(ConfigError::new(at(name), "must be a price >= 0"));
                }
            }
        }
        Ok(())
    }

    /// The prices of `model`, if the table has them.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        if let Some(p) = self.models.iter().find(|p| glob(&p.model, model)) {
            return Some(p.clone());
        }
        if !self.defaults {
            return None;
        }
        DEFAULT_PRICES
            .iter()
            .find(|d| glob(d.0, model))
            .map(ModelPrice::from_default)
    }

    /// The cost of `usage` by `model` in micro-units, if the model is priced.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<u64> {
        self.price(model).map(|p| p.cost(usage))
    }
}

/// Formats micro-units as a decimal amount (`1234567` → `1.234567`).
pub fn format_micros(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (case-insensitive).
pub fn glob(pattern: &str, name: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let n = name.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == n;
    }
    let (first, last) = (parts.first().copied(), parts.last().copied());
    let (Some(first), Some(last)) = (first, last) else {
        return false;
    };
    if !n.starts_with(first) || n.len() < first.len() + last.len() || !n.ends_with(last) {
        return false;
    }
    let mut rest = &n[first.len()..n.len() - last.len()];
    for part in parts.iter().skip(1).take(parts.len().saturating_sub(2)) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("gpt-4o*", "gpt-4o-2024-08-06"));
        assert!(glob("GPT-4o", "gpt-4o"));
        assert!(!glob("gpt-4o", "gpt-4o-mini"));
        assert!(glob("*sonnet*", "claude-sonnet-4-20250514"));
        assert!(glob("a*b*c", "axxbyyc") && !glob("a*b*c", "axxc") && !glob("ab*ba", "aba"));
    }

    #[test]
    fn cost_of_each_kind_of_token() {
        let table: PriceTable = serde_json::from_str(
            r#"{"models": [{"model": "m*", "input": 2, "output": 8, "cached_input": 0.5,
                            "cache_write": 2.5, "reasoning": 10}]}"#,
        )
        .unwrap();
        let usage = Usage {
            input: 1000,
            cached_input: 200,
            cache_creation_input: 100,
            output: 300,
            reasoning: 100,
            ..Usage::default()
        };
        // 700×2 + 200×0.5 + 100×2.5 + 200×8 + 100×10 micro-units
        assert_eq!(
            table.cost("m-1", &usage),
            Some(1400 + 100 + 250 + 1600 + 1000)
        );
        assert_eq!(format_micros(4_350), "0.004350");
        assert_eq!(format_micros(12_000_001), "12.000001");
        // The shipped table fills in; more specific globs first.
        let mini = table.price("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!((mini.input, mini.output), (0.15, 0.60));
        assert_eq!(table.price("gpt-4o").unwrap().input, 2.50);
        assert!(table.price("no-such-model").is_none());
        let own: PriceTable = serde_json::from_str(r#"{"defaults": false}"#).unwrap();
        assert!(own.price("gpt-4o").is_none());
        let bad: PriceTable =
            serde_json::from_str(r#"{"models": [{"model": "x", "input": -1}]}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err().path, "models[0].input");
    }
}
