//! Every ai-token-ratelimit plugin config example in Higress's READMEs (README.md and README_EN.md of
//! plugins/wasm-go/extensions/ai-token-ratelimit), written as JSON in `higress_examples.json`, must load
//! through the plugin's config entry point. Higress `matchRules` appear there as `_rules_`.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use ai_token_ratelimit::AiTokenRatelimit;
use sdk::shell::Plugin;

const EXAMPLES: &str = include_str!("higress_examples.json");

#[test]
fn higress_readme_examples_load() {
    let examples: Vec<serde_json::Value> =
        serde_json::from_str(EXAMPLES).expect("higress_examples.json is a JSON array");
    assert!(!examples.is_empty(), "no examples in higress_examples.json");
    let mut failures = Vec::new();
    for example in &examples {
        let name = example["name"].as_str().expect("every example has a name");
        assert!(
            example["config"].is_object(),
            "[{name}] config is not an object"
        );
        let bytes = serde_json::to_vec(&example["config"]).unwrap();
        match <AiTokenRatelimit as Plugin>::parse_config(&bytes) {
            Ok((_, warnings)) if warnings.is_empty() => println!("[{name}] ok"),
            Ok((_, warnings)) => {
                println!("[{name}] ok with {} warning(s):", warnings.len());
                for warning in &warnings {
                    println!("    {warning}");
                }
            }
            Err(e) => {
                println!("[{name}] FAILED: {e}");
                failures.push(format!("[{name}] {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} Higress README examples failed to load:\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n")
    );
}
