//! Every mcp-server REST config example in Higress's READMEs (plugins/wasm-go/extensions/mcp-server
//! README_EN.md, plugins/wasm-go/mcp-servers/README.md, the 2026-07-28 REST-to-MCP sample),
//! written as JSON in `higress_examples.json`, must load through the plugin's config entry point.

use mcp_server::McpServer;

#[test]
fn higress_readme_examples_load() {
    let loaded = sdk::shell::load_examples::<McpServer>(include_str!("higress_examples.json"));
    if let Err(failures) = loaded {
        panic!(
            "Higress README examples that do not load:\n{}",
            failures.join("\n")
        );
    }
}
