//! Every ai-token-ratelimit plugin config example in Higress's READMEs (README.md and README_EN.md of
//! plugins/wasm-go/extensions/ai-token-ratelimit), written as JSON in `higress_examples.json`, must load
//! through the plugin's config entry point. Higress `matchRules` appear there as `_rules_`.

use ai_token_ratelimit::AiTokenRatelimit;

#[test]
fn higress_readme_examples_load() {
    let loaded =
        sdk::shell::load_examples::<AiTokenRatelimit>(include_str!("higress_examples.json"));
    if let Err(failures) = loaded {
        panic!(
            "Higress README examples that do not load:\n{}",
            failures.join("\n")
        );
    }
}
