//! Shared pieces of the AI gateway plugins.
//!
//! Everything two plugins would otherwise both write lives here: the [`host`] seam over the
//! proxy-wasm host, [`config`] parsing with Higress `_rules_`, the incremental [`sse`] codec,
//! [`llm`] wire types, the client [`error`] shape and the [`pipeline`] that runs plugin stages.

pub mod api;
pub mod config;
pub mod cost;
pub mod error;
pub mod facts;
pub mod guard;
pub mod host;
pub mod llm;
pub mod matching;
#[cfg(feature = "tokens")]
pub mod meter;
pub mod pipeline;
pub mod shared;
pub mod sse;
pub mod template;
#[cfg(feature = "tokens")]
pub mod tokens;
pub mod tools;
pub mod usage;

pub mod shell;

/// Installs a panic hook that logs the panic at critical level before the VM aborts.
///
/// A panic still kills the worker's VM; the hook only makes the cause visible in Envoy's log.
pub fn install_panic_hook(plugin: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        host::raw::log(
            proxy_wasm::types::LogLevel::Critical,
            &format!("[{plugin}] panic: {info}"),
        );
    }));
}
