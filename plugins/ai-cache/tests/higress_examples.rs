//! Configs from Higress's ai-cache README (plugins/wasm-go/extensions/ai-cache), written as JSON
//! in `higress_examples.json`: the ones stock Envoy can serve load; the ones naming stores only
//! Higress's Envoy reaches (Redis through `proxy_redis_call`) or vector databases this plugin
//! does not speak are refused with an error naming the field.

#![allow(clippy::unwrap_used, clippy::panic)]

use ai_cache::AiCache;
use sdk::shell::Plugin;
use serde_json::Value;

fn fixtures() -> Value {
    serde_json::from_str(include_str!("higress_examples.json")).unwrap()
}

#[test]
fn stock_envoy_configs_load() {
    let load = fixtures()["load"].to_string();
    if let Err(failures) = sdk::shell::load_examples::<AiCache>(&load) {
        panic!("configs that do not load:\n{}", failures.join("\n"));
    }
}

#[test]
fn configs_only_higress_can_serve_are_refused_naming_the_field() {
    for case in fixtures()["refuse"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let bytes = case["config"].to_string();
        match AiCache::parse_config(bytes.as_bytes()) {
            Ok(_) => panic!("[{name}] loaded"),
            Err(e) => assert_eq!(e.path, case["field"].as_str().unwrap(), "[{name}] {e}"),
        }
    }
}
