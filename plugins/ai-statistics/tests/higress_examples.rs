//! Every ai-statistics plugin config example in Higress's READMEs (README.md and README_EN.md of
//! plugins/wasm-go/extensions/ai-statistics), written as JSON in `higress_examples.json`, must load
//! through the plugin's config entry point. Higress `matchRules` appear there as `_rules_`.

use ai_statistics::AiStatistics;

#[test]
fn higress_readme_examples_load() {
    let loaded = sdk::shell::load_examples::<AiStatistics>(include_str!("higress_examples.json"));
    if let Err(failures) = loaded {
        panic!(
            "Higress README examples that do not load:\n{}",
            failures.join("\n")
        );
    }
}
