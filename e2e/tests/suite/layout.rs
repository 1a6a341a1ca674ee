//! The shipped files agree with each other: docker-compose mounts what exists, the Envoy config
//! loads ECDS files that exist, and those load wasm files `make build` writes.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::workspace_root;
use std::fs;

#[test]
fn docker_compose_mounts_exist() {
    let root = workspace_root();
    let compose = fs::read_to_string(root.join("docker-compose.yaml")).unwrap();
    let mut mounts = 0;
    for line in compose.lines() {
        let line = line.trim();
        if let Some(spec) = line.strip_prefix("- ./") {
            let host = spec.split(':').next().unwrap();
            if host == ".run" {
                // Written by `make trial-config` (see the trial test below).
                mounts += 1;
                continue;
            }
            assert!(
                root.join(host).exists(),
                "docker-compose mounts ./{host}, which does not exist"
            );
            mounts += 1;
        }
        if let Some(file) = line.strip_prefix("dockerfile: ") {
            assert!(root.join(file).exists(), "missing {file}");
        }
    }
    assert!(mounts >= 3, "expected envoy/, dist/ and .run/ mounts");
    assert!(compose.contains("envoyproxy/envoy:v1.40.0"));
    assert!(compose.contains(".run/envoy.yaml"));
}

#[test]
fn the_trial_runs_every_plugin_in_one_filter() {
    let root = workspace_root();
    let shipped = fs::read_to_string(root.join("envoy/envoy.yaml")).unwrap();
    let (bootstrap, ecds) = e2e::envoy::render_trial_gateway(&shipped, ".run/ecds").unwrap();
    assert!(bootstrap.contains("path: .run/ecds/ai-gateway.yaml"));
    assert!(!bootstrap.contains("path: envoy/ecds/"));
    // The plugin holds the request headers itself: no buffer filter, no companion filter.
    assert!(!bootstrap.contains("envoy.filters.http.buffer"));
    assert!(!bootstrap.contains("ai-proxy-headers"));
    assert!(ecds.contains("allow_on_headers_stop_iteration: true"));
    assert!(ecds.contains("root_id: ai-gateway"));
    assert!(ecds.contains("filename: dist/ai-gateway.wasm"));
    let config = e2e::envoy::shipped_config(&ecds).unwrap();
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    for plugin in [
        "mcp-server",
        "ai-statistics",
        "ai-token-ratelimit",
        "ai-moderation",
        "ai-cache",
        "ai-prompt-decorator",
        "ai-agent",
        "ai-proxy",
    ] {
        assert!(v[plugin].is_object(), "{plugin} missing from {config}");
    }
}

#[test]
fn envoy_config_references_existing_files() {
    let root = workspace_root();
    let bootstrap = fs::read_to_string(root.join("envoy/envoy.yaml")).unwrap();
    let mut ecds = 0;
    for line in bootstrap.lines() {
        let ecds_file = line
            .trim()
            .strip_prefix("path: ")
            .filter(|p| p.starts_with("envoy/ecds/"));
        if let Some(path) = ecds_file {
            assert!(
                root.join(path).exists(),
                "envoy.yaml loads {path}, which does not exist"
            );
            let resource = fs::read_to_string(root.join(path)).unwrap();
            let wasm = resource
                .lines()
                .find_map(|l| l.split("filename: ").nth(1))
                .map(|f| f.trim_end_matches(" } }").trim())
                .unwrap();
            assert!(
                root.join(wasm).exists(),
                "{path} loads {wasm}; run `make build`"
            );
            ecds += 1;
        }
    }
    assert_eq!(
        ecds,
        fs::read_dir(root.join("envoy/ecds")).unwrap().count(),
        "every ECDS file is loaded"
    );
}

/// Nothing git ignores is tracked: a committed build marker or artefact makes a fresh clone skip
/// a setup step that the developer's own machine had already done.
#[test]
fn nothing_ignored_is_tracked() {
    let root = workspace_root();
    if !root.join(".git").exists() {
        return; // an exported tree (e.g. a docker build context) has no index to check
    }
    let out = std::process::Command::new("git")
        .args(["ls-files", "-ci", "--exclude-standard"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "git ls-files failed");
    let tracked = String::from_utf8_lossy(&out.stdout);
    assert!(tracked.trim().is_empty(), "ignored yet tracked:\n{tracked}");
    let out = std::process::Command::new("git")
        .args(["ls-files", ".make"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}
