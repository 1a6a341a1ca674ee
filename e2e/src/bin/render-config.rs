//! Writes the Envoy config `make run` uses into `.run/`: the shipped `envoy/envoy.yaml` as is
//! (mock provider upstream), or, with `openai`, the same config routed to api.openai.com with the
//! key taken from Envoy's environment (`OPENAI_API_KEY`), never written to disk.

use e2e::envoy::render_openai_upstream;
use e2e::workspace_root;
use std::fs;

fn main() -> e2e::Result<()> {
    let upstream = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "mock".to_string());
    let root = workspace_root();
    let shipped = fs::read_to_string(root.join("envoy/envoy.yaml"))?;
    let out = match upstream.as_str() {
        "mock" => shipped,
        "openai" => render_openai_upstream(&shipped)?,
        other => return Err(format!("unknown upstream `{other}` (mock | openai)").into()),
    };
    let dir = root.join(".run");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("envoy.yaml"), out)?;
    println!("{}", dir.join("envoy.yaml").display());
    Ok(())
}
