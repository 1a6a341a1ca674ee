//! `ai-gateway.wasm`: every plugin in one module, used two ways.
//!
//! - **Per plugin**: a filter whose `root_id` is a plugin name (`ai-proxy`, …) takes that
//!   plugin's own config. All filters share one VM per worker (same `vm_id`), so the module and
//!   the tokenizer are loaded once.
//! - **One filter**: `root_id` `ai-gateway` takes `{"ai-statistics": {...}, "ai-proxy": {...}}`;
//!   the plugins present run as stages of one pipeline in one HTTP context, in the chain order,
//!   so the request body and each response chunk are parsed once for all of them.

use ai_agent::AiAgent;
use ai_cache::AiCache;
use ai_data_masking::AiDataMasking;
use ai_moderation::AiModeration;
use ai_prompt_decorator::PromptDecorator;
use ai_proxy::AiProxy;
use ai_quota::AiQuota;
use ai_security_guard::AiSecurityGuard;
use ai_statistics::AiStatistics;
use ai_token_ratelimit::AiTokenRatelimit;
use mcp_server::McpServer;
use sdk::config::{object_from_bytes, ConfigError};
use sdk::shell::{load, LoadResult, Loaded};

/// The plugins, in request order (DESIGN.md's filter order).
/// `mcp-server` answers its own route locally, so it goes first.
pub const ORDER: [&str; 11] = [
    "mcp-server",
    "ai-statistics",
    "ai-quota",
    "ai-token-ratelimit",
    "ai-security-guard",
    "ai-moderation",
    "ai-data-masking",
    "ai-cache",
    "ai-prompt-decorator",
    "ai-agent",
    "ai-proxy",
];

/// Root id of the one-filter form.
pub const GATEWAY: &str = "ai-gateway";

type Parsed = Result<(Box<dyn Loaded>, Vec<String>), ConfigError>;

fn load_one(name: &str, bytes: &[u8]) -> Option<Parsed> {
    Some(match name {
        "mcp-server" => load::<McpServer>(bytes),
        "ai-statistics" => load::<AiStatistics>(bytes),
        "ai-quota" => load::<AiQuota>(bytes),
        "ai-token-ratelimit" => load::<AiTokenRatelimit>(bytes),
        "ai-security-guard" => load::<AiSecurityGuard>(bytes),
        "ai-moderation" => load::<AiModeration>(bytes),
        "ai-data-masking" => load::<AiDataMasking>(bytes),
        "ai-cache" => load::<AiCache>(bytes),
        "ai-prompt-decorator" => load::<PromptDecorator>(bytes),
        "ai-agent" => load::<AiAgent>(bytes),
        "ai-proxy" => load::<AiProxy>(bytes),
        // The companion filter after Envoy's buffer filter (see ai_proxy::late).
        ai_proxy::late::ROOT_ID => load::<ai_proxy::late::ProxyHeaders>(bytes),
        _ => return None,
    })
}

/// Chooses the plugins of a root context from its `root_id`.
pub fn loader(root_id: &str, bytes: &[u8]) -> LoadResult {
    if root_id == GATEWAY {
        return combined(bytes);
    }
    match load_one(root_id, bytes) {
        Some(parsed) => parsed.map(|(l, w)| (vec![l], w)),
        None => Err(ConfigError::new(
            "root_id",
            format!(
                "unknown plugin `{root_id}` (one of {}, or {GATEWAY})",
                ORDER.join(", ")
            ),
        )),
    }
}

/// The one-filter form: a config object keyed by plugin name; a missing key means that stage is
/// off.
pub fn combined(bytes: &[u8]) -> LoadResult {
    let mut object = object_from_bytes(bytes)?;
    let mut loaded = Vec::new();
    let mut warnings = Vec::new();
    for name in ORDER {
        let Some(value) = object.remove(name) else {
            continue;
        };
        let parsed = load_one(name, value.to_string().as_bytes())
            .unwrap_or_else(|| Err(ConfigError::new(name, "unknown plugin")));
        let (plugin, w) = parsed.map_err(|e| e.under(name))?;
        loaded.push(plugin);
        warnings.extend(w.into_iter().map(|w| format!("{name}: {w}")));
    }
    warnings.extend(
        object
            .keys()
            .map(|k| format!("unknown plugin `{k}` ignored")),
    );
    Ok((loaded, warnings))
}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    sdk::shell::start_with(GATEWAY, loader);
}}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_config_loads_the_plugins_present_in_order() {
        let (loaded, warnings) = combined(
            br#"{"ai-proxy": {"provider": {"type": "openai", "apiTokens": ["k"]}},
                 "ai-prompt-decorator": {"prepend": [{"role": "system", "content": "x"}]},
                 "ai-nope": {}}"#,
        )
        .unwrap();
        assert_eq!(loaded.len(), 2);
        let names: Vec<&str> = loaded
            .iter()
            .flat_map(|l| l.stages())
            .map(|s| s.name())
            .collect();
        assert_eq!(names, ["ai-prompt-decorator", "ai-proxy"]);
        assert_eq!(warnings, ["unknown plugin `ai-nope` ignored"]);
    }

    #[test]
    fn every_plugin_has_a_place_in_the_order() {
        for name in ORDER {
            assert!(load_one(name, b"{}").is_some(), "{name}");
        }
        let all = r#"{"mcp-server":{},"ai-statistics":{},"ai-quota":{},"ai-token-ratelimit":{},"ai-security-guard":{},"ai-moderation":{},"ai-data-masking":{},"ai-cache":{},"ai-prompt-decorator":{},"ai-agent":{},"ai-proxy":{}}"#;
        let (loaded, warnings) = combined(all.as_bytes()).unwrap();
        assert_eq!(loaded.len(), 11);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn errors_name_the_plugin_and_field() {
        // A config that does not parse is refused whole, naming the field.
        let err = combined(br#"{"ai-proxy": {"provider": {"type": 5, "apiTokens": ["k"]}}}"#).err();
        assert_eq!(
            err.map(|e| e.path),
            Some("ai-proxy.provider.type".to_string())
        );
        // A provider that parses but cannot be used loads; only its rule answers errors.
        let (_, warnings) =
            combined(br#"{"ai-proxy": {"provider": {"type": "nope", "apiTokens": ["k"]}}}"#)
                .unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("provider.type")),
            "{warnings:?}"
        );
        let err = loader("ai-unknown", b"{}").err();
        assert_eq!(err.map(|e| e.path), Some("root_id".to_string()));
        assert!(loader("ai-prompt-decorator", br#"{"prepend":[]}"#).is_ok());
    }
}
