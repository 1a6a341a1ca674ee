//! The ai-quota config example of Higress's READMEs (plugins/wasm-go/extensions/ai-quota), written
//! as JSON in `higress_examples.json`, must load through the plugin's config entry point.

use ai_quota::AiQuota;

#[test]
fn higress_readme_examples_load() {
    let loaded = sdk::shell::load_examples::<AiQuota>(include_str!("higress_examples.json"));
    if let Err(failures) = loaded {
        panic!(
            "Higress README examples that do not load:\n{}",
            failures.join("\n")
        );
    }
}
