//! The ai-data-masking config example of Higress's README (plugins/wasm-rust/extensions/
//! ai-data-masking), written as JSON in `higress_examples.json`, must load through the plugin's
//! config entry point.

use ai_data_masking::AiDataMasking;

#[test]
fn higress_readme_examples_load() {
    let loaded = sdk::shell::load_examples::<AiDataMasking>(include_str!("higress_examples.json"));
    if let Err(failures) = loaded {
        panic!(
            "Higress README examples that do not load:\n{}",
            failures.join("\n")
        );
    }
}
