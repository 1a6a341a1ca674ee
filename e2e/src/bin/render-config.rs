//! Writes the Envoy config `make run` (and docker compose) uses into `.run/`.
//!
//! `render-config [mock|openai] [gateway|plugins]`: the upstream is the mock provider, or
//! api.openai.com with the key taken from Envoy's environment (`OPENAI_API_KEY`, never written to
//! disk); the plugins run as one `ai-gateway` filter (default: `.run/ecds/ai-gateway.yaml` holds
//! every plugin's config) or as the five filters of `envoy/envoy.yaml` (`envoy/ecds/*.yaml`).

use e2e::envoy::{render_openai_upstream, render_trial_gateway};
use e2e::workspace_root;
use std::fs;

/// Heads the rendered files (plain YAML: the comments are in the shipped files).
const HEADER: &str =
    "# Written by `make trial-config` from envoy/envoy.yaml and envoy/ecds/*.yaml (see the\n\
                      # comments there); rewritten by every `make run`.\n";

fn main() -> e2e::Result<()> {
    let mut args = std::env::args().skip(1);
    let upstream = args.next().unwrap_or_else(|| "mock".to_string());
    let mode = args.next().unwrap_or_else(|| "gateway".to_string());
    let root = workspace_root();
    let shipped = fs::read_to_string(root.join("envoy/envoy.yaml"))?;
    let routed = match upstream.as_str() {
        "mock" => shipped,
        "openai" => render_openai_upstream(&shipped)?,
        other => return Err(format!("unknown upstream `{other}` (mock | openai)").into()),
    };
    let dir = root.join(".run");
    fs::create_dir_all(dir.join("ecds"))?;
    let out = match mode.as_str() {
        "gateway" => {
            let (bootstrap, ecds) = render_trial_gateway(&routed, ".run/ecds")?;
            let next = dir.join("ecds/.ai-gateway.yaml");
            fs::write(&next, format!("{HEADER}# Replace this file atomically (write a copy, then mv) to reload.\n{ecds}"))?;
            fs::rename(&next, dir.join("ecds/ai-gateway.yaml"))?;
            format!("{HEADER}{bootstrap}")
        }
        "plugins" if upstream == "mock" => routed,
        "plugins" => format!("{HEADER}{routed}"),
        other => return Err(format!("unknown mode `{other}` (gateway | plugins)").into()),
    };
    fs::write(dir.join("envoy.yaml"), out)?;
    println!("{}", dir.join("envoy.yaml").display());
    Ok(())
}
