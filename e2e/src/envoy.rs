//! A real Envoy process running the shipped config with test ports, paths and plugin configs.

use crate::http::Client;
use crate::{workspace_root, Result};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Envoy binary: `$ENVOY_BIN`, else the one `make` installs into `.venv`.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"))
}

/// Which module the plugins run from (`AI_GATEWAY_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `plugins` (default): each plugin's own `.wasm`, one filter each.
    Plugins,
    /// `bundle`: `ai-gateway.wasm` for every filter, selected by root id, one shared VM.
    Bundle,
    /// `gateway`: one `ai-gateway` filter running every plugin as a stage.
    Gateway,
}

impl Mode {
    /// The mode the suite runs in.
    pub fn current() -> Mode {
        match std::env::var("AI_GATEWAY_MODE").as_deref() {
            Ok("bundle") => Mode::Bundle,
            Ok("gateway") => Mode::Gateway,
            _ => Mode::Plugins,
        }
    }
}

/// The log line a rejected plugin config produces, as the current mode writes it.
pub fn config_error(plugin: &str, path: &str) -> String {
    match Mode::current() {
        Mode::Gateway => format!("[ai-gateway] invalid config at `{plugin}.{path}`"),
        _ => format!("[{plugin}] invalid config at `{path}`"),
    }
}

/// The JSON config in a shipped ECDS file (the `value: |` block, dedented).
pub fn shipped_config(ecds: &str) -> Option<String> {
    let at = ecds.find("value: |\n")? + "value: |\n".len();
    Some(
        ecds[at..]
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The first plugin filter of the shipped chain.
const FIRST_PLUGIN: &str = "          - name: mcp-server\n";

/// Removes the plugin filters and the buffer filter: Envoy with only the router.
fn without_plugins(bootstrap: &str) -> Result<String> {
    let start = bootstrap
        .find(FIRST_PLUGIN)
        .ok_or("no mcp-server filter (the first plugin) in envoy.yaml")?;
    let end = bootstrap
        .find("          - name: envoy.filters.http.router\n")
        .ok_or("no router in envoy.yaml")?;
    Ok(format!("{}{}", &bootstrap[..start], &bootstrap[end..]))
}

/// The fallback for hosts that cannot hold request headers: Envoy's buffer filter, then the
/// `ai-proxy-headers` filter in ai-proxy's VM, before the router (README, "Without
/// allow_on_headers_stop_iteration").
fn with_companion(bootstrap: &str, dist: &Path, mode: Mode) -> Result<String> {
    let (wasm, vm) = match mode {
        Mode::Plugins => ("ai-proxy", "ai-proxy"),
        Mode::Bundle | Mode::Gateway => ("ai-gateway", "ai-gateway"),
    };
    let filters = format!(
        "          - name: envoy.filters.http.buffer
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 33554432
          - name: ai-proxy-headers
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: ai-proxy-headers
                root_id: ai-proxy-headers
                vm_config:
                  vm_id: {vm}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {dist}/{wasm}.wasm }} }}
",
        dist = dist.display()
    );
    let router = "          - name: envoy.filters.http.router\n";
    replace_once(bootstrap, router, &format!("{filters}{router}"))
}

/// One more wasm filter, configured inline (no ECDS, no plugin config) just before the router:
/// the benchmark's floor filters (`bench/floor`).
#[derive(Debug, Clone)]
pub struct ExtraWasm {
    /// The module.
    pub wasm: PathBuf,
    /// Its root id.
    pub root_id: String,
}

/// Puts `extra` just before the router, in a VM of its own.
fn with_extra_wasm(bootstrap: &str, extra: &ExtraWasm) -> Result<String> {
    let filter = format!(
        "          - name: extra-{root}
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: extra-{root}
                root_id: {root}
                vm_config:
                  vm_id: extra-{root}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {wasm} }} }}
",
        root = extra.root_id,
        wasm = extra.wasm.display()
    );
    let router = "          - name: envoy.filters.http.router\n";
    replace_once(bootstrap, router, &format!("{filter}{router}"))
}

/// How the plugins get to change request headers after reading the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderHold {
    /// As shipped: `allow_on_headers_stop_iteration: true` in every plugin's config.
    #[default]
    Flag,
    /// Without the flag: the buffer filter and the `ai-proxy-headers` companion.
    Companion,
    /// Without the flag and without the companion.
    Neither,
}

/// The line of the shipped ECDS files that sets the flag.
const HOLD_FLAG: &str = "      allow_on_headers_stop_iteration: true\n";

/// Replaces the plugin filters of the bootstrap with one `ai-gateway` filter.
pub fn single_filter(bootstrap: &str, ecds_dir: &Path) -> Result<String> {
    let start = bootstrap
        .find(FIRST_PLUGIN)
        .ok_or("no mcp-server filter (the first plugin) in envoy.yaml")?;
    let end = bootstrap
        .find("          - name: envoy.filters.http.router\n")
        .ok_or("no router in envoy.yaml")?;
    let filter = format!(
        "          - name: ai-gateway\n            config_discovery:\n              config_source:\n                path_config_source:\n                  path: {dir}/ai-gateway.yaml\n                  watched_directory: {{ path: {dir} }}\n              type_urls: [\"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\"]\n",
        dir = ecds_dir.display()
    );
    Ok(format!(
        "{}{filter}{}",
        &bootstrap[..start],
        &bootstrap[end..]
    ))
}

/// An extra route put before the catch-all `llm` route of the shipped config.
#[derive(Debug, Clone)]
pub struct Route {
    /// Route name (what `_match_route_` matches).
    pub name: String,
    /// Path prefix it matches; rewritten to `/` upstream.
    pub prefix: String,
}

/// The config that turns a plugin off in a test that does not configure it.
pub fn off_config(plugin: &str) -> &'static str {
    match plugin {
        // `{}` is the embedded cache (what `make run` ships): off is Higress's strategy.
        "ai-cache" => r#"{"cacheKeyStrategy": "disabled"}"#,
        _ => "{}",
    }
}

/// How to start Envoy.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plugin configs (JSON) by plugin name. Plugins not listed are off (`{}`, and for
    /// ai-cache, whose `{}` is the embedded cache, `cacheKeyStrategy: disabled`), unless
    /// `shipped_configs` is set, in which case they keep the shipped `envoy/ecds` config.
    pub plugin_configs: Vec<(String, String)>,
    /// Keep the shipped config of plugins not in `plugin_configs`.
    pub shipped_configs: bool,
    /// Extra routes.
    pub routes: Vec<Route>,
    /// Worker threads (default 2).
    pub concurrency: Option<u32>,
    /// Plain Envoy: no plugin filters and no buffer filter (the benchmark's baseline).
    pub plain: bool,
    /// Port of the rate limit service (`rate_limit_service` cluster).
    pub rls_port: Option<u16>,
    /// Port of webdis (`quota_store` cluster).
    pub webdis_port: Option<u16>,
    /// How request headers decided from the body are applied.
    pub header_hold: HeaderHold,
    /// One more wasm filter before the router (with `plain`: Envoy with just that filter).
    pub extra_wasm: Option<ExtraWasm>,
    /// Extra static clusters on loopback: (name, port) (the APIs tools call).
    pub clusters: Vec<(String, u16)>,
    /// Port of Chroma (`chroma` cluster, ai-cache's vector database).
    pub chroma_port: Option<u16>,
}

impl Options {
    /// Options with one plugin config.
    pub fn plugin(plugin: &str, config: &str) -> Options {
        Options::default().with_plugin(plugin, config)
    }

    /// The shipped configuration, as `make run` uses it.
    pub fn shipped() -> Options {
        Options {
            shipped_configs: true,
            ..Options::default()
        }
    }

    /// Adds a plugin config.
    pub fn with_plugin(mut self, plugin: &str, config: &str) -> Options {
        self.plugin_configs
            .push((plugin.to_string(), config.to_string()));
        self
    }

    /// Adds a static cluster `name` for a loopback server on `port`.
    pub fn with_cluster(mut self, name: &str, port: u16) -> Options {
        self.clusters.push((name.to_string(), port));
        self
    }

    /// Adds a route named `name` for paths under `prefix`.
    pub fn with_route(mut self, name: &str, prefix: &str) -> Options {
        self.routes.push(Route {
            name: name.to_string(),
            prefix: prefix.to_string(),
        });
        self
    }
}

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    mode: Mode,
    header_hold: HeaderHold,
    /// Current plugin configs (gateway mode rebuilds the one combined config from them).
    configs: std::sync::Mutex<Vec<(String, String)>>,
    /// Listener port.
    pub port: u16,
    /// Admin port.
    pub admin_port: u16,
    client: Client,
}

fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => Err(format!("shipped envoy.yaml has `{from}` {n} times, expected once").into()),
    }
}

/// Renders the shipped bootstrap for a test: loopback listener on a free port, admin on a free
/// port, the mock provider as upstream, ECDS files from `ecds_dir`, extra routes.
pub fn render_bootstrap(
    shipped: &str,
    mock_port: u16,
    ecds_dir: &Path,
    routes: &[Route],
) -> Result<String> {
    let mut text = replace_once(shipped, "port_value: 10000", "port_value: 0")?;
    text = replace_once(&text, "port_value: 9901", "port_value: 0")?;
    text = replace_once(
        &text,
        "port_value: 8081",
        &format!("port_value: {mock_port}"),
    )?;
    text = replace_once(&text, "address: 0.0.0.0", "address: 127.0.0.1")?;
    // The key every test client sends by default (crate::http::TEST_KEY), and one the
    // leak checks send.
    text = replace_once(
        &text,
        "              - { key: sk-demo-ann, client: ann }\n",
        "              - { key: sk-demo-ann, client: ann }\n              - { key: client-side-key, client: e2e }\n              - { key: client-secret-key, client: e2e-secret }\n              - { key: sk-e2e-alice, client: alice }\n              - { key: sk-e2e-quota-admin, client: quota-admin }\n",
    )?;
    if !text.contains("envoy/ecds") {
        return Err("shipped envoy.yaml loads no ECDS file from envoy/ecds".into());
    }
    text = text.replace("envoy/ecds", &ecds_dir.display().to_string());
    let anchor = "              - name: llm\n";
    let mut extra = String::new();
    for r in routes {
        extra.push_str(&format!(
            "              - name: {}\n                match: {{ prefix: \"{}\" }}\n                route: {{ cluster: llm_upstream, prefix_rewrite: \"/\", timeout: 300s }}\n",
            r.name, r.prefix
        ));
    }
    replace_once(&text, anchor, &format!("{extra}{anchor}"))
}

/// Renders a shipped ECDS file: absolute wasm path, and `config` (JSON) as the plugin config.
pub fn render_ecds(shipped: &str, dist: &Path, config: Option<&str>) -> Result<String> {
    let text = replace_once(
        shipped,
        "filename: dist/",
        &format!("filename: {}/", dist.display()),
    )?;
    let Some(config) = config else {
        return Ok(text);
    };
    let marker = "value: |\n";
    let at = text
        .find(marker)
        .ok_or("ECDS file has no `value: |` block")?;
    let indent = text[..at].rsplit('\n').next().map_or(0, str::len) + 2;
    let pad = " ".repeat(indent);
    let mut out = text[..at + marker.len()].to_string();
    for line in config.lines() {
        out.push_str(&pad);
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Writes the ECDS files for `mode` into `dir`; returns their file names.
fn write_ecds(
    mode: Mode,
    dir: &Path,
    configs: &[(String, String)],
    version: u32,
    hold: HeaderHold,
) -> Result<Vec<String>> {
    let flag = |text: String| match hold {
        HeaderHold::Flag => text,
        _ => text.replace(HOLD_FLAG, ""),
    };
    let root = workspace_root();
    let dist = root.join("dist");
    let version_line = format!("version_info: \"{version}\"");
    let mut written = Vec::new();
    if mode == Mode::Gateway {
        let mut combined = serde_json::Map::new();
        for (plugin, config) in configs {
            let value: Value = serde_json::from_str(config)
                .map_err(|e| format!("{plugin} config is not JSON: {e}"))?;
            combined.insert(plugin.clone(), value);
        }
        let (first, _) = configs.first().ok_or("no plugins")?;
        let shipped = fs::read_to_string(root.join(format!("envoy/ecds/{first}.yaml")))?;
        let text = render_ecds(
            &shipped.replace(first.as_str(), "ai-gateway"),
            &dist,
            Some(&Value::Object(combined).to_string()),
        )?
        .replacen("version_info: \"1\"", &version_line, 1);
        fs::write(dir.join("ai-gateway.yaml"), flag(text))?;
        written.push("ai-gateway.yaml".to_string());
        return Ok(written);
    }
    for (plugin, config) in configs {
        let shipped = fs::read_to_string(root.join(format!("envoy/ecds/{plugin}.yaml")))?;
        let mut text = render_ecds(&shipped, &dist, Some(config))?.replacen(
            "version_info: \"1\"",
            &version_line,
            1,
        );
        if mode == Mode::Bundle {
            text = text
                .replace(&format!("{plugin}.wasm"), "ai-gateway.wasm")
                .replace(&format!("vm_id: {plugin}"), "vm_id: ai-gateway");
        }
        let name = format!("{plugin}.yaml");
        fs::write(dir.join(&name), flag(text))?;
        written.push(name);
    }
    Ok(written)
}

/// The local trial in the one-filter form: `envoy.yaml` with one `ai-gateway` filter (root id
/// `ai-gateway`, `dist/ai-gateway.wasm`) whose ECDS file `<ecds_dir>/ai-gateway.yaml` holds every
/// shipped plugin config keyed by plugin name. Paths stay relative to the workspace root.
pub fn render_trial_gateway(shipped: &str, ecds_dir: &str) -> Result<(String, String)> {
    let root = workspace_root();
    let mut combined = serde_json::Map::new();
    let mut template = None;
    for plugin in [
        "mcp-server",
        "ai-statistics",
        "ai-quota",
        "ai-token-ratelimit",
        "ai-moderation",
        "ai-cache",
        "ai-prompt-decorator",
        "ai-agent",
        "ai-proxy",
    ] {
        let text = fs::read_to_string(root.join(format!("envoy/ecds/{plugin}.yaml")))?;
        let config =
            shipped_config(&text).ok_or(format!("no config in envoy/ecds/{plugin}.yaml"))?;
        let value: Value = serde_json::from_str(&config)
            .map_err(|e| format!("envoy/ecds/{plugin}.yaml config is not JSON: {e}"))?;
        combined.insert(plugin.to_string(), value);
        if plugin == "ai-proxy" {
            template = Some(text);
        }
    }
    let template = template.ok_or("no ai-proxy ECDS file")?;
    let pretty = serde_json::to_string_pretty(&Value::Object(combined))?;
    let marker = "value: |\n";
    let at = template
        .find(marker)
        .ok_or("no `value: |` in the ai-proxy ECDS file")?
        + marker.len();
    let indent = "          ";
    let body: String = pretty.lines().map(|l| format!("{indent}{l}\n")).collect();
    let ecds = format!("{}{body}", template[..at].replace("ai-proxy", "ai-gateway"));
    let bootstrap = single_filter(shipped, Path::new(ecds_dir))?;
    Ok((bootstrap, ecds))
}

/// Routes the shipped config to OpenAI instead of the mock: TLS upstream, `Host` rewritten,
/// the client's `Authorization` replaced by `Bearer $OPENAI_API_KEY` read by Envoy at run time.
pub fn render_openai_upstream(shipped: &str) -> Result<String> {
    let route = replace_once(
        shipped,
        "route: { cluster: llm_upstream, timeout: 300s }",
        "route: { cluster: llm_upstream, timeout: 300s, host_rewrite_literal: api.openai.com }\n                request_headers_to_add:\n                - header: { key: authorization, value: \"Bearer %ENVIRONMENT(OPENAI_API_KEY)%\" }\n                  append_action: OVERWRITE_IF_EXISTS_OR_ADD",
    )?;
    let at = route
        .find("  - name: llm_upstream\n")
        .ok_or("shipped envoy.yaml has no llm_upstream cluster")?;
    let mut out = route[..at].to_string();
    out.push_str(OPENAI_CLUSTER);
    Ok(out)
}

const OPENAI_CLUSTER: &str = "  - name: llm_upstream
    connect_timeout: 10s
    per_connection_buffer_limit_bytes: 33554432
    type: LOGICAL_DNS
    dns_lookup_family: V4_PREFERRED
    load_assignment:
      cluster_name: llm_upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: api.openai.com, port_value: 443 }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: api.openai.com
        common_tls_context:
          validation_context:
            trusted_ca: { filename: /etc/ssl/certs/ca-certificates.crt }
";

impl Envoy {
    /// Starts Envoy in front of the mock on `mock_port` and waits until it serves.
    pub fn start(mock_port: u16, options: &Options) -> Result<Envoy> {
        let bin = envoy_bin();
        if !bin.exists() {
            return Err(format!(
                "Envoy not found at {} (run `make test`, or set ENVOY_BIN)",
                bin.display()
            )
            .into());
        }
        let root = workspace_root();
        let dir = tempfile::Builder::new().prefix("ai-gw-e2e-").tempdir()?;
        let ecds_dir = dir.path().join("ecds");
        fs::create_dir_all(&ecds_dir)?;
        let dist = root.join("dist");
        let mode = Mode::current();
        let mut configs = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(root.join("envoy/ecds"))? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(plugin) = name.strip_suffix(".yaml") else {
                continue;
            };
            names.push(plugin.to_string());
            let wasm = if mode == Mode::Plugins {
                plugin
            } else {
                "ai-gateway"
            };
            if !dist.join(format!("{wasm}.wasm")).exists() {
                return Err(format!("dist/{wasm}.wasm is missing (run `make build`)").into());
            }
            let shipped = fs::read_to_string(&path)?;
            let config = options
                .plugin_configs
                .iter()
                .find(|(p, _)| p == plugin)
                .map(|(_, c)| c.clone())
                .or_else(|| (!options.shipped_configs).then(|| off_config(plugin).to_string()))
                .or_else(|| shipped_config(&shipped))
                .unwrap_or_else(|| "{}".to_string());
            configs.push((plugin.to_string(), config));
        }
        for (plugin, _) in &options.plugin_configs {
            if !names.contains(plugin) {
                return Err(format!("no envoy/ecds/{plugin}.yaml for a config").into());
            }
        }
        write_ecds(mode, &ecds_dir, &configs, 1, options.header_hold)?;
        let shipped = fs::read_to_string(root.join("envoy/envoy.yaml"))?;
        let mut bootstrap = render_bootstrap(&shipped, mock_port, &ecds_dir, &options.routes)?;
        if let Some(port) = options.chroma_port {
            bootstrap = replace_once(
                &bootstrap,
                "port_value: 8000",
                &format!("port_value: {port}"),
            )?;
        }
        if let Some(port) = options.rls_port {
            bootstrap = replace_once(
                &bootstrap,
                "port_value: 8089",
                &format!("port_value: {port}"),
            )?;
        }
        if let Some(port) = options.webdis_port {
            bootstrap = replace_once(
                &bootstrap,
                "port_value: 7379",
                &format!("port_value: {port}"),
            )?;
        }
        if options.plain {
            bootstrap = without_plugins(&bootstrap)?;
        } else if mode == Mode::Gateway {
            bootstrap = single_filter(&bootstrap, &ecds_dir)?;
        }
        if options.header_hold == HeaderHold::Companion {
            bootstrap = with_companion(&bootstrap, &dist, mode)?;
        }
        if let Some(extra) = &options.extra_wasm {
            bootstrap = with_extra_wasm(&bootstrap, extra)?;
        }
        for (name, port) in &options.clusters {
            let cluster = format!(
                "  clusters:\n  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
            );
            bootstrap = replace_once(&bootstrap, "  clusters:\n", &cluster)?;
        }
        let config_path = dir.path().join("envoy.yaml");
        fs::write(&config_path, bootstrap)?;
        let admin_path = dir.path().join("admin-address");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--disable-hot-restart", "-l", "info"])
            .args([
                "--concurrency",
                &options.concurrency.unwrap_or(2).to_string(),
            ])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(fs::File::create(dir.path().join("envoy.log"))?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut envoy = Envoy {
            child,
            dir,
            mode,
            header_hold: options.header_hold,
            configs: std::sync::Mutex::new(configs),
            port: 0,
            admin_port: 0,
            client: Client::new(Duration::from_secs(5)),
        };
        envoy.wait_ready(&admin_path)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(
                    format!("Envoy exited ({status}) during start:\n{}", self.log()).into(),
                );
            }
            if Instant::now() > deadline {
                return Err(format!("Envoy not ready after 60 s:\n{}", self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
            let Ok(admin) = fs::read_to_string(admin_path) else {
                continue;
            };
            let Some(port) = admin.trim().rsplit(':').next().and_then(|p| p.parse().ok()) else {
                continue;
            };
            self.admin_port = port;
            let ready = self.client.get(&format!("{}/ready", self.admin_url()), &[]);
            if !matches!(ready, Ok(ref r) if r.status == 200) {
                continue;
            }
            let listeners = self
                .client
                .get(&format!("{}/listeners?format=json", self.admin_url()), &[])?
                .json()?;
            let port = listeners["listener_statuses"][0]["local_address"]["socket_address"]
                ["port_value"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok());
            if let Some(port) = port.filter(|p| *p != 0) {
                self.port = port;
                return Ok(());
            }
        }
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Listener base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Admin base URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Access log (stdout) so far.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A counter or gauge from `/stats`, if present.
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        let resp = self.client.get(
            &format!(
                "{}/stats?format=json&filter=^{}$",
                self.admin_url(),
                regex_escape(name)
            ),
            &[],
        )?;
        let v: Value = resp.json()?;
        Ok(v["stats"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .and_then(|s| s["value"].as_u64()))
    }

    /// Replaces a plugin's config on the running Envoy (write a new ECDS file, then rename).
    pub fn push_plugin_config(&self, plugin: &str, config: &str, version: u32) -> Result<()> {
        let mut configs = self.configs.lock().map_err(|_| "config lock poisoned")?;
        match configs.iter_mut().find(|(p, _)| p == plugin) {
            Some(entry) => entry.1 = config.to_string(),
            None => return Err(format!("no plugin {plugin}").into()),
        }
        let staging = self.dir.path().join("staging");
        fs::create_dir_all(&staging)?;
        let written = write_ecds(self.mode, &staging, &configs, version, self.header_hold)?;
        let ecds = self.dir.path().join("ecds");
        for name in written {
            let only_this = self.mode == Mode::Gateway || name == format!("{plugin}.yaml");
            if only_this {
                fs::rename(staging.join(&name), ecds.join(&name))?;
            }
        }
        Ok(())
    }

    /// The `ai_log` objects of the access log (one per request), waiting up to 10 s until
    /// there are `want` (Envoy writes access logs in the background).
    pub fn ai_logs(&self, want: usize) -> Vec<Value> {
        let mut logs = Vec::new();
        for _ in 0..200 {
            logs = self
                .access_log()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|l| {
                    l["ai_log"]
                        .as_str()
                        .and_then(|s| serde_json::from_str(s).ok())
                })
                .collect();
            if logs.len() >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        logs
    }

    /// Waits until Envoy's log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_renders_for_tests() {
        let root = workspace_root();
        let shipped = fs::read_to_string(root.join("envoy/envoy.yaml")).unwrap();
        let out = render_bootstrap(
            &shipped,
            4242,
            Path::new("/tmp/x/ecds"),
            &[Route {
                name: "b".into(),
                prefix: "/b/".into(),
            }],
        )
        .unwrap();
        assert!(out.contains("port_value: 4242"));
        assert!(!out.contains("envoy/ecds"));
        assert!(out.contains("- name: b\n"));
        let floor = with_extra_wasm(
            &without_plugins(&out).unwrap(),
            &ExtraWasm {
                wasm: PathBuf::from("/abs/floor.wasm"),
                root_id: "noop".into(),
            },
        )
        .unwrap();
        assert!(floor.contains(
            "                root_id: noop\n                vm_config:\n                  vm_id: extra-noop\n"
        ));
        assert!(floor.contains("filename: /abs/floor.wasm }"));
        assert!(!floor.contains("- name: ai-statistics\n"));
        assert!(
            floor.find("- name: extra-noop\n") < floor.find("- name: envoy.filters.http.router\n")
        );
        let ecds = fs::read_to_string(root.join("envoy/ecds/ai-prompt-decorator.yaml")).unwrap();
        let out = render_ecds(&ecds, Path::new("/abs/dist"), Some("{\n  \"a\": 1\n}")).unwrap();
        assert!(out.contains("filename: /abs/dist/ai-prompt-decorator.wasm"));
        let openai = render_openai_upstream(&shipped).unwrap();
        assert!(openai.contains("api.openai.com, port_value: 443"));
        assert!(!openai.contains("port_value: 8081"));
        assert!(
            out.ends_with("        value: |\n          {\n            \"a\": 1\n          }\n"),
            "{out}"
        );
    }
}

/// One Prometheus sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses Prometheus text exposition (what `/stats/prometheus` serves).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut map = std::collections::BTreeMap::new();
        let mut rest = labels;
        while let Some((key, after)) = rest.split_once("=\"") {
            let Some(end) = after.find('"') else { break };
            map.insert(
                key.trim_start_matches(',').to_string(),
                after[..end].to_string(),
            );
            rest = &after[end + 1..];
        }
        out.push(Sample {
            name: name.to_string(),
            labels: map,
            value,
        });
    }
    out
}

impl Envoy {
    /// The Prometheus samples Envoy serves now.
    pub fn prometheus(&self) -> Result<Vec<Sample>> {
        let resp = self
            .client
            .get(&format!("{}/stats/prometheus", self.admin_url()), &[])?;
        Ok(parse_prometheus(&resp.body))
    }
}
