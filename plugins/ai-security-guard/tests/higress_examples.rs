//! The ai-security-guard config examples of Higress's README (plugins/wasm-go/extensions/
//! ai-security-guard), written as JSON in `higress_examples.json`, must load through the
//! plugin's config entry point.

use ai_security_guard::AiSecurityGuard;

#[test]
fn higress_readme_examples_load() {
    let loaded =
        sdk::shell::load_examples::<AiSecurityGuard>(include_str!("higress_examples.json"));
    if let Err(failures) = loaded {
        panic!(
            "Higress README examples that do not load:\n{}",
            failures.join("\n")
        );
    }
}
