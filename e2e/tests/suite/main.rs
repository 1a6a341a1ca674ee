//! The end-to-end suite through a real Envoy, as one test binary: `--test-threads` then spreads
//! every test over the threads, and the suite links once. A module per plugin or theme; the smoke
//! sets of the per-plugin and bundle forms pick modules by name (Makefile `E2E_SMOKE_*`).

mod ai_agent;
mod ai_cache;
mod ai_data_masking;
mod ai_moderation;
mod ai_proxy;
mod ai_proxy_fallback;
mod ai_proxy_higress;
mod ai_proxy_media;
mod ai_proxy_native;
mod ai_quota;
mod ai_security_guard;
mod ai_statistics;
mod ai_token_ratelimit;
mod common;
mod consumers;
mod faults;
mod golden;
mod header_hold;
mod layout;
mod mcp_server;
mod prompt_decorator;
mod realtime;
mod reload;
mod responses;
mod smoke;
