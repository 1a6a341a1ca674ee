//! A real Envoy process running the shipped config with test ports, paths and plugin configs.

use crate::http::Client;
use crate::{workspace_root, Result};
use serde_json::{json, Value};
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

/// The JSON config in a shipped ECDS file (its `configuration.value`).
pub fn shipped_config(ecds: &str) -> Option<String> {
    Doc::parse("ECDS file", ecds)
        .ok()?
        .str(&wasm(CONFIG_VALUE))
        .ok()
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
    /// The process and its files; None only while it is dropped.
    proc: Option<Proc>,
    /// Where its files are.
    dir: PathBuf,
    mode: Mode,
    header_hold: HeaderHold,
    /// Current plugin configs (gateway mode rebuilds the one combined config from them).
    configs: std::sync::Mutex<Vec<(String, String)>>,
    /// Listener port.
    pub port: u16,
    /// Admin port.
    pub admin_port: u16,
    client: Client,
    /// Set when another test may use this Envoy after this one ([`reuse_key`]).
    key: Option<String>,
    /// How often it was reused (its ECDS and CDS files' version is 1000 + this).
    reuses: u32,
    /// Where this test's part of `envoy.log` and of the access log starts.
    log_from: (usize, usize),
    /// When its last test ended.
    parked_at: Instant,
}

struct Proc {
    child: Child,
    _dir: tempfile::TempDir,
}

/// A YAML node of an Envoy config file.
type Yaml = serde_norway::Value;

/// A parsed Envoy config file whose fields are read and changed by path.
struct Doc {
    /// What errors call the file.
    name: String,
    yaml: Yaml,
}

impl Doc {
    fn parse(name: &str, text: &str) -> Result<Doc> {
        let yaml = serde_norway::from_str(text).map_err(|e| format!("{name} is not YAML: {e}"))?;
        Ok(Doc {
            name: name.to_string(),
            yaml,
        })
    }

    /// The shipped file `envoy/<file>`.
    fn shipped(file: &str) -> Result<Doc> {
        let path = format!("envoy/{file}");
        let text =
            fs::read_to_string(workspace_root().join(&path)).map_err(|e| format!("{path}: {e}"))?;
        Doc::parse(&path, &text)
    }

    /// The node at `path`: `/`-separated mapping keys, list indexes, or list items by `name`.
    fn at(&mut self, path: &str) -> Result<&mut Yaml> {
        let mut node = &mut self.yaml;
        for step in path.split('/') {
            let next = match node {
                Yaml::Mapping(map) => map.get_mut(step),
                Yaml::Sequence(items) => match step.parse::<usize>() {
                    Ok(i) => items.get_mut(i),
                    Err(_) => items.iter_mut().find(|item| is_named(item, step)),
                },
                _ => None,
            };
            node = next.ok_or_else(|| format!("{} has no `{path}` (no `{step}`)", self.name))?;
        }
        Ok(node)
    }

    fn str(&mut self, path: &str) -> Result<String> {
        let name = self.name.clone();
        let node = self.at(path)?;
        let text = node
            .as_str()
            .ok_or(format!("{name}: `{path}` is not a string"))?;
        Ok(text.to_string())
    }

    fn list(&mut self, path: &str) -> Result<&mut Vec<Yaml>> {
        let name = self.name.clone();
        let node = self.at(path)?;
        Ok(node
            .as_sequence_mut()
            .ok_or(format!("{name}: `{path}` is not a list"))?)
    }

    fn map(&mut self, path: &str) -> Result<&mut serde_norway::Mapping> {
        let name = self.name.clone();
        let node = self.at(path)?;
        Ok(node
            .as_mapping_mut()
            .ok_or(format!("{name}: `{path}` is not a mapping"))?)
    }

    /// Changes the field at `path`, which must exist.
    fn set(&mut self, path: &str, value: impl Into<Yaml>) -> Result<()> {
        *self.at(path)? = value.into();
        Ok(())
    }

    /// Removes the field at `path`, which must exist.
    fn remove(&mut self, path: &str) -> Result<()> {
        self.at(path)?;
        let (parent, key) = path
            .rsplit_once('/')
            .ok_or("no field to remove at the top")?;
        self.map(parent)?.shift_remove(key);
        Ok(())
    }

    /// The file's text (YAML, without the shipped comments).
    fn text(&self) -> Result<String> {
        Ok(serde_norway::to_string(&self.yaml)?)
    }

    /// Inserts `items` before the item named `name` of the list at `path`.
    fn insert_before(&mut self, path: &str, name: &str, items: Vec<Yaml>) -> Result<()> {
        let missing = format!("{} has no `{path}/{name}`", self.name);
        let list = self.list(path)?;
        let at = list
            .iter()
            .position(|item| is_named(item, name))
            .ok_or(missing)?;
        list.splice(at..at, items);
        Ok(())
    }
}

fn is_named(item: &Yaml, name: &str) -> bool {
    item.get("name").and_then(Yaml::as_str) == Some(name)
}

/// A YAML node from JSON built with `json!`.
fn yaml(json: Value) -> Result<Yaml> {
    Ok(serde_norway::to_value(json)?)
}

/// The module and filter name of the one-filter and bundle modes.
const GATEWAY: &str = "ai-gateway";

/// The shipped listener's HTTP connection manager.
const HCM: &str = "static_resources/listeners/ai_gateway/filter_chains/0/filters/envoy.filters.network.http_connection_manager/typed_config";

/// A path under the HTTP connection manager.
fn hcm(tail: &str) -> String {
    format!("{HCM}/{tail}")
}

const ROUTER: &str = "envoy.filters.http.router";

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// A path in the wasm filter config of an ECDS file.
fn wasm(tail: &str) -> String {
    format!("resources/0/typed_config/config/{tail}")
}

/// The plugin configuration (JSON in a string) in the wasm filter config.
const CONFIG_VALUE: &str = "configuration/value";

/// The wasm filter config field that holds the request headers while the body is read.
const HOLD_FLAG: &str = "allow_on_headers_stop_iteration";

/// The keys the tests send, besides the shipped demo keys: crate::http::TEST_KEY (the default),
/// the ones the leak checks send, and per-consumer ones.
const TEST_CONSUMERS: [(&str, &str); 4] = [
    ("client-side-key", "e2e"),
    ("client-secret-key", "e2e-secret"),
    ("sk-e2e-alice", "alice"),
    ("sk-e2e-quota-admin", "quota-admin"),
];

/// Renders the shipped bootstrap for a test: loopback listener on a free port, admin on a free
/// port, the mock provider as upstream, ECDS files from `ecds_dir`, extra routes.
pub fn render_bootstrap(
    shipped: &str,
    mock_port: u16,
    ecds_dir: &Path,
    routes: &[Route],
) -> Result<String> {
    let mut doc = Doc::parse("envoy.yaml", shipped)?;
    for_tests(&mut doc, mock_port, ecds_dir, routes)?;
    doc.text()
}

fn for_tests(doc: &mut Doc, mock_port: u16, ecds_dir: &Path, routes: &[Route]) -> Result<()> {
    let listener = "static_resources/listeners/ai_gateway/address/socket_address";
    doc.set(&format!("{listener}/port_value"), 0)?;
    doc.set(&format!("{listener}/address"), "127.0.0.1")?;
    doc.set("admin/address/socket_address/port_value", 0)?;
    set_cluster_port(doc, "llm_upstream", mock_port)?;
    let credentials = doc.list(&hcm(
        "http_filters/envoy.filters.http.api_key_auth/typed_config/credentials",
    ))?;
    for (key, client) in TEST_CONSUMERS {
        credentials.push(yaml(json!({ "key": key, "client": client }))?);
    }
    load_ecds_from(doc, ecds_dir)?;
    let routes = routes
        .iter()
        .map(|r| {
            yaml(json!({
                "name": r.name,
                "match": { "prefix": r.prefix },
                "route": { "cluster": "llm_upstream", "prefix_rewrite": "/", "timeout": "300s" },
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    doc.insert_before(&hcm("route_config/virtual_hosts/llm/routes"), "llm", routes)
}

/// The port of a cluster's one endpoint, as a path in the cluster.
const ENDPOINT_PORT: &str =
    "load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/port_value";

fn set_cluster_port(doc: &mut Doc, cluster: &str, port: u16) -> Result<()> {
    doc.set(
        &format!("static_resources/clusters/{cluster}/{ENDPOINT_PORT}"),
        port,
    )
}

fn is_plugin(filter: &Yaml) -> bool {
    filter.get("config_discovery").is_some()
}

/// Points the plugin filters' ECDS sources (shipped in `envoy/ecds`) at `dir`.
fn load_ecds_from(doc: &mut Doc, dir: &Path) -> Result<()> {
    let filters = doc.list(&hcm("http_filters"))?;
    let plugins: Vec<String> = filters
        .iter()
        .filter(|f| is_plugin(f))
        .filter_map(|f| f.get("name")?.as_str().map(str::to_string))
        .collect();
    if plugins.is_empty() {
        return Err(format!(
            "{} loads no ECDS file (no `config_discovery` filter)",
            doc.name
        )
        .into());
    }
    for plugin in plugins {
        let source = hcm(&format!(
            "http_filters/{plugin}/config_discovery/config_source/path_config_source"
        ));
        let path = doc.str(&format!("{source}/path"))?;
        let file = path.strip_prefix("envoy/ecds/").ok_or(format!(
            "{}: `{source}/path` is not in envoy/ecds",
            doc.name
        ))?;
        doc.set(
            &format!("{source}/path"),
            format!("{}/{file}", dir.display()),
        )?;
        doc.set(
            &format!("{source}/watched_directory/path"),
            dir.display().to_string(),
        )?;
    }
    Ok(())
}

/// Replaces the plugin filters with `with` (none: Envoy with only its own filters).
fn replace_plugins(doc: &mut Doc, with: Option<Yaml>) -> Result<()> {
    let missing = format!("{} has no plugin filter (`config_discovery`)", doc.name);
    let filters = doc.list(&hcm("http_filters"))?;
    let first = filters.iter().position(is_plugin).ok_or(missing)?;
    filters.retain(|f| !is_plugin(f));
    if let Some(filter) = with {
        filters.insert(first, filter);
    }
    Ok(())
}

/// A wasm filter loaded through ECDS from `<dir>/<name>.yaml`.
fn ecds_filter(name: &str, dir: &Path) -> Result<Yaml> {
    let dir = dir.display();
    yaml(json!({
        "name": name,
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": format!("{dir}/{name}.yaml"),
                    "watched_directory": { "path": dir.to_string() },
                },
            },
            "type_urls": [WASM_TYPE],
        },
    }))
}

/// A wasm filter configured inline (no ECDS, no plugin config).
fn inline_wasm(name: &str, root_id: &str, vm_id: &str, file: &str) -> Result<Yaml> {
    yaml(json!({
        "name": name,
        "typed_config": {
            "@type": WASM_TYPE,
            "config": {
                "name": name,
                "root_id": root_id,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": file } },
                },
            },
        },
    }))
}

/// The fallback for hosts that cannot hold request headers: Envoy's buffer filter, then the
/// `ai-proxy-headers` filter in ai-proxy's VM (README, "Without allow_on_headers_stop_iteration").
fn companion_filters(dist: &Path, mode: Mode) -> Result<Vec<Yaml>> {
    let vm = if mode == Mode::Plugins {
        "ai-proxy"
    } else {
        GATEWAY
    };
    let buffer = yaml(json!({
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 33554432,
        },
    }))?;
    let file = format!("{}/{vm}.wasm", dist.display());
    Ok(vec![
        buffer,
        inline_wasm("ai-proxy-headers", "ai-proxy-headers", vm, &file)?,
    ])
}

/// A static cluster for a server on loopback.
fn loopback_cluster(name: &str, port: u16) -> Result<Yaml> {
    yaml(json!({
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port },
            } } }] }],
        },
    }))
}

/// Replaces the plugin filters of the bootstrap with one `ai-gateway` filter.
pub fn single_filter(bootstrap: &str, ecds_dir: &Path) -> Result<String> {
    let mut doc = Doc::parse("envoy.yaml", bootstrap)?;
    replace_plugins(&mut doc, Some(ecds_filter(GATEWAY, ecds_dir)?))?;
    doc.text()
}

/// Loads the resource's wasm from `dist`: its shipped module (`dist/<file>`), or `module`.
fn set_module(doc: &mut Doc, dist: &Path, module: Option<&str>) -> Result<()> {
    let path = wasm("vm_config/code/local/filename");
    let shipped = doc.str(&path)?;
    let file = shipped
        .strip_prefix("dist/")
        .ok_or(format!("{}: `{path}` is not in dist/", doc.name))?;
    let file = module.map_or_else(|| file.to_string(), |m| format!("{m}.wasm"));
    doc.set(&path, format!("{}/{file}", dist.display()))
}

/// Turns a plugin's ECDS resource into the one `ai-gateway` filter's, with `config` (every
/// plugin's config by name).
fn as_gateway(doc: &mut Doc, dist: &Path, config: String) -> Result<()> {
    set_module(doc, dist, Some(GATEWAY))?;
    for field in [
        "resources/0/name".to_string(),
        wasm("name"),
        wasm("root_id"),
        wasm("vm_config/vm_id"),
    ] {
        doc.set(&field, GATEWAY)?;
    }
    doc.set(&wasm(CONFIG_VALUE), config)
}

/// Renders a shipped ECDS file: absolute wasm path, and `config` (JSON) as the plugin config.
pub fn render_ecds(shipped: &str, dist: &Path, config: Option<&str>) -> Result<String> {
    let mut doc = Doc::parse("ECDS file", shipped)?;
    set_module(&mut doc, dist, None)?;
    if let Some(config) = config {
        doc.set(&wasm(CONFIG_VALUE), config)?;
    }
    doc.text()
}

/// Writes the ECDS files for `mode` into `dir`; returns their file names.
fn write_ecds(
    mode: Mode,
    dir: &Path,
    configs: &[(String, String)],
    version: u32,
    hold: HeaderHold,
    vm_tag: Option<u32>,
) -> Result<Vec<String>> {
    let dist = workspace_root().join("dist");
    let mut docs = Vec::new();
    if mode == Mode::Gateway {
        let mut combined = serde_json::Map::new();
        for (plugin, config) in configs {
            let value: Value = serde_json::from_str(config)
                .map_err(|e| format!("{plugin} config is not JSON: {e}"))?;
            combined.insert(plugin.clone(), value);
        }
        let (first, _) = configs.first().ok_or("no plugins")?;
        let mut doc = Doc::shipped(&format!("ecds/{first}.yaml"))?;
        as_gateway(&mut doc, &dist, Value::Object(combined).to_string())?;
        docs.push((GATEWAY, doc));
    } else {
        for (plugin, config) in configs {
            let mut doc = Doc::shipped(&format!("ecds/{plugin}.yaml"))?;
            doc.set(&wasm(CONFIG_VALUE), config.as_str())?;
            if mode == Mode::Bundle {
                set_module(&mut doc, &dist, Some(GATEWAY))?;
                doc.set(&wasm("vm_config/vm_id"), GATEWAY)?;
            } else {
                set_module(&mut doc, &dist, None)?;
            }
            docs.push((plugin.as_str(), doc));
        }
    }
    let mut written = Vec::new();
    for (name, mut doc) in docs {
        doc.set("version_info", version.to_string())?;
        if let Some(tag) = vm_tag {
            // A VM of its own: new roots and empty shared data (V8 reuses the compiled module).
            let vm = doc.str(&wasm("vm_config/vm_id"))?;
            doc.set(&wasm("vm_config/vm_id"), format!("{vm}.{tag}"))?;
        }
        if hold != HeaderHold::Flag {
            doc.remove(&wasm(HOLD_FLAG))?;
        }
        let file = format!("{name}.yaml");
        fs::write(dir.join(&file), doc.text()?)?;
        written.push(file);
    }
    Ok(written)
}

/// The local trial in the one-filter form: `envoy.yaml` with one `ai-gateway` filter (root id
/// `ai-gateway`, `dist/ai-gateway.wasm`) whose ECDS file `<ecds_dir>/ai-gateway.yaml` holds every
/// shipped plugin config keyed by plugin name. Paths stay relative to the workspace root.
pub fn render_trial_gateway(shipped: &str, ecds_dir: &str) -> Result<(String, String)> {
    let mut combined = serde_json::Map::new();
    for plugin in [
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
    ] {
        let config = Doc::shipped(&format!("ecds/{plugin}.yaml"))?.str(&wasm(CONFIG_VALUE))?;
        let value: Value = serde_json::from_str(&config)
            .map_err(|e| format!("envoy/ecds/{plugin}.yaml config is not JSON: {e}"))?;
        combined.insert(plugin.to_string(), value);
    }
    let mut ecds = Doc::shipped("ecds/ai-proxy.yaml")?;
    let pretty = serde_json::to_string_pretty(&Value::Object(combined))?;
    as_gateway(&mut ecds, Path::new("dist"), pretty)?;
    Ok((single_filter(shipped, Path::new(ecds_dir))?, ecds.text()?))
}

/// Routes the shipped config to OpenAI instead of the mock: TLS upstream, `Host` rewritten,
/// the client's `Authorization` replaced by `Bearer $OPENAI_API_KEY` read by Envoy at run time.
pub fn render_openai_upstream(shipped: &str) -> Result<String> {
    let mut doc = Doc::parse("envoy.yaml", shipped)?;
    let route = hcm("route_config/virtual_hosts/llm/routes/llm");
    doc.map(&format!("{route}/route"))?
        .insert("host_rewrite_literal".into(), "api.openai.com".into());
    let auth = json!([{
        "header": { "key": "authorization", "value": "Bearer %ENVIRONMENT(OPENAI_API_KEY)%" },
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }]);
    doc.map(&route)?
        .insert("request_headers_to_add".into(), yaml(auth)?);
    *doc.at("static_resources/clusters/llm_upstream")? = yaml(json!({
        "name": "llm_upstream",
        "connect_timeout": "10s",
        "per_connection_buffer_limit_bytes": 33554432,
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": "llm_upstream",
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "api.openai.com", "port_value": 443 },
            } } }] }],
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": "api.openai.com",
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": { "filename": "/etc/ssl/certs/ca-certificates.crt" },
                    },
                },
            },
        },
    }))?;
    doc.text()
}

/// The plugin configs of a test's Envoy: the test's own, the others off (or shipped); in the
/// one-filter-per-plugin form only the plugins a test configures are loaded (each module costs
/// Envoy seconds of compile at start, and the others are off anyway), unless `shipped`.
fn plugin_configs(options: &Options, mode: Mode) -> Result<Vec<(String, String)>> {
    let root = workspace_root();
    let mut configs = Vec::new();
    for entry in fs::read_dir(root.join("envoy/ecds"))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(plugin) = name.strip_suffix(".yaml") else {
            continue;
        };
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
        if !configs.iter().any(|(p, _)| p == plugin) {
            return Err(format!("no envoy/ecds/{plugin}.yaml for a config").into());
        }
    }
    if trims(options, mode) {
        configs.retain(|(p, _)| options.plugin_configs.iter().any(|(q, _)| q == p));
    }
    Ok(configs)
}

fn trims(options: &Options, mode: Mode) -> bool {
    mode == Mode::Plugins && !options.shipped_configs
}

/// Writes `envoy.yaml` and `ecds/` for a test into `dir` (and `cds/` with `reusable`: the
/// clusters then come from a file, so the next test can point them at its own mock); returns
/// the plugin configs.
fn write_config(
    dir: &Path,
    mock_port: u16,
    options: &Options,
    mode: Mode,
    reusable: bool,
) -> Result<Vec<(String, String)>> {
    let root = workspace_root();
    let ecds_dir = dir.join("ecds");
    fs::create_dir_all(&ecds_dir)?;
    let configs = plugin_configs(options, mode)?;
    write_ecds(mode, &ecds_dir, &configs, 1, options.header_hold, None)?;
    let mut doc = Doc::shipped("envoy.yaml")?;
    for_tests(&mut doc, mock_port, &ecds_dir, &options.routes)?;
    if trims(options, mode) {
        let loaded = |f: &Yaml| configs.iter().any(|(p, _)| is_named(f, p));
        doc.list(&hcm("http_filters"))?
            .retain(|f| !is_plugin(f) || loaded(f));
    }
    for (cluster, port) in shipped_service_ports(options) {
        set_cluster_port(&mut doc, cluster, port)?;
    }
    if options.plain {
        replace_plugins(&mut doc, None)?;
    } else if mode == Mode::Gateway {
        replace_plugins(&mut doc, Some(ecds_filter(GATEWAY, &ecds_dir)?))?;
    }
    let filters = hcm("http_filters");
    if options.header_hold == HeaderHold::Companion {
        let companion = companion_filters(&root.join("dist"), mode)?;
        doc.insert_before(&filters, ROUTER, companion)?;
    }
    if let Some(extra) = &options.extra_wasm {
        let name = format!("extra-{}", extra.root_id);
        let file = extra.wasm.display().to_string();
        let filter = inline_wasm(&name, &extra.root_id, &name, &file)?;
        doc.insert_before(&filters, ROUTER, vec![filter])?;
    }
    for (name, port) in &options.clusters {
        let cluster = loopback_cluster(name, *port)?;
        doc.list("static_resources/clusters")?.insert(0, cluster);
    }
    if reusable {
        let clusters = std::mem::take(doc.list("static_resources/clusters")?);
        let cds = dir.join("cds");
        fs::create_dir_all(&cds)?;
        fs::write(cds.join(CDS_FILE), cds_text(&clusters, 1)?)?;
        let source = yaml(json!({
            "cds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": cds.join(CDS_FILE).display().to_string(),
                    "watched_directory": { "path": cds.display().to_string() },
                },
            },
        }))?;
        doc.yaml
            .as_mapping_mut()
            .ok_or("envoy.yaml is not a mapping")?
            .insert("dynamic_resources".into(), source);
        fs::write(dir.join(CLUSTERS_FILE), serde_norway::to_string(&clusters)?)?;
        // The routes name clusters that arrive by CDS, after the listener is read.
        doc.map(&hcm("route_config"))?
            .insert("validate_clusters".into(), false.into());
    }
    fs::write(dir.join("envoy.yaml"), doc.text()?)?;
    Ok(configs)
}

const CDS_FILE: &str = "clusters.yaml";

/// The clusters as rendered for the test, kept to rewrite the CDS file for the next one.
const CLUSTERS_FILE: &str = "clusters-rendered.yaml";

/// A CDS file of `clusters`.
fn cds_text(clusters: &[Yaml], version: u32) -> Result<String> {
    let mut resources = Vec::new();
    for cluster in clusters {
        let mut cluster = cluster.clone();
        cluster
            .as_mapping_mut()
            .ok_or("a cluster is not a mapping")?
            .insert("@type".into(), CLUSTER_TYPE.into());
        resources.push(cluster);
    }
    let file = yaml(json!({ "version_info": version.to_string() }))?;
    let mut file = file;
    file.as_mapping_mut()
        .ok_or("no mapping")?
        .insert("resources".into(), Yaml::Sequence(resources));
    Ok(serde_norway::to_string(&file)?)
}

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// Whether a test with `options` can run on an Envoy another test used, and with which others
/// (the same key): only plugin configs (ECDS) and service ports (CDS) may differ. Each test gets
/// VMs of its own (a new `vm_id`: V8 reuses the compiled module, and shared data is per `vm_id`),
/// so budgets, balances, caches and key health start empty. Not reused: ai-statistics and the
/// shipped configs (its histograms are Envoy's and `/reset_counters` keeps them), the
/// companion filter (it must share the VM the ECDS filter had at start), extra wasm filters.
fn reuse_key(options: &Options, mode: Mode) -> Option<String> {
    let statistics = options
        .plugin_configs
        .iter()
        .any(|(plugin, _)| plugin == "ai-statistics");
    let own = options.plain
        || options.shipped_configs
        || options.extra_wasm.is_some()
        || options.header_hold == HeaderHold::Companion;
    if statistics || own {
        return None;
    }
    let mut plugins: Vec<&str> = options
        .plugin_configs
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    plugins.sort_unstable();
    if mode != Mode::Plugins {
        plugins.clear();
    }
    let routes: Vec<String> = options
        .routes
        .iter()
        .map(|r| format!("{}={}", r.name, r.prefix))
        .collect();
    let mut clusters: Vec<&str> = options.clusters.iter().map(|(c, _)| c.as_str()).collect();
    clusters.sort_unstable();
    Some(format!(
        "{mode:?} {:?} {:?} {routes:?} {plugins:?} {clusters:?}",
        options.header_hold, options.concurrency
    ))
}

/// The ports `options` sets for shipped clusters, by cluster name.
fn shipped_service_ports(options: &Options) -> Vec<(&'static str, u16)> {
    [
        ("chroma", options.chroma_port),
        ("rate_limit_service", options.rls_port),
        ("quota_store", options.webdis_port),
    ]
    .into_iter()
    .filter_map(|(cluster, port)| Some((cluster, port?)))
    .collect()
}

/// The value of `name` in `/stats` text.
fn stat_value<'a>(stats: &'a str, name: &str) -> Option<&'a str> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// Envoys parked after a test, for the next test with the same [`reuse_key`]: an ECDS and CDS
/// update takes milliseconds where a start takes seconds of V8 compile.
static PARKED: std::sync::Mutex<Vec<Envoy>> = std::sync::Mutex::new(Vec::new());

/// At most this many Envoys wait parked (each holds the modules' memory).
const MAX_PARKED: usize = 3;

fn park(envoy: Envoy) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no arguments, as atexit requires.
        unsafe {
            libc::atexit(stop_parked);
        }
    });
    let Ok(mut parked) = PARKED.lock() else {
        return;
    };
    parked.push(envoy);
    if parked.len() > MAX_PARKED {
        let mut oldest = parked.remove(0);
        oldest.key = None;
        drop(parked);
        drop(oldest);
    }
}

/// Stops the parked Envoys when the test binary exits (statics are never dropped).
extern "C" fn stop_parked() {
    let parked = match PARKED.try_lock() {
        Ok(mut parked) => std::mem::take(&mut *parked),
        Err(_) => return,
    };
    for mut envoy in parked {
        envoy.key = None;
        drop(envoy);
    }
}

impl Envoy {
    /// Starts Envoy in front of the mock on `mock_port` and waits until it serves.
    pub fn start(mock_port: u16, options: &Options) -> Result<Envoy> {
        Envoy::launch(mock_port, options, None)
    }

    /// [`Envoy::start`], or an Envoy an earlier test left with the same bootstrap, given this
    /// test's plugin configs and mock (a fresh plugin root, counters at zero, logs from here).
    pub fn start_or_reuse(mock_port: u16, options: &Options) -> Result<Envoy> {
        let Some(key) = reuse_key(options, Mode::current()) else {
            return Envoy::start(mock_port, options);
        };
        let parked = PARKED.lock().ok().and_then(|mut parked| {
            let at = parked.iter().position(|e| e.key.as_ref() == Some(&key))?;
            Some(parked.remove(at))
        });
        if let Some(mut envoy) = parked {
            match envoy.reuse(mock_port, options) {
                Ok(()) => return Ok(envoy),
                // Not taken (a config it rejects, say): this test gets a new Envoy.
                Err(_) => envoy.key = None,
            }
        }
        Envoy::launch(mock_port, options, Some(key))
    }

    fn launch(mock_port: u16, options: &Options, key: Option<String>) -> Result<Envoy> {
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
        let mode = Mode::current();
        let configs = write_config(dir.path(), mock_port, options, mode, key.is_some())?;
        for (plugin, _) in &configs {
            let wasm = if mode == Mode::Plugins {
                plugin
            } else {
                GATEWAY
            };
            if !root.join(format!("dist/{wasm}.wasm")).exists() {
                return Err(format!("dist/{wasm}.wasm is missing (run `make build`)").into());
            }
        }
        let config_path = dir.path().join("envoy.yaml");
        let admin_path = dir.path().join("admin-address");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--disable-hot-restart", "-l", "info"])
            // Access logs reach the file within 50 ms (Envoy's default holds them up to 10 s).
            .args(["--file-flush-interval-msec", "50"])
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
            dir: dir.path().to_path_buf(),
            proc: Some(Proc { child, _dir: dir }),
            mode,
            header_hold: options.header_hold,
            configs: std::sync::Mutex::new(configs),
            port: 0,
            admin_port: 0,
            client: Client::new(Duration::from_secs(5)),
            key,
            reuses: 0,
            log_from: (0, 0),
            parked_at: Instant::now(),
        };
        envoy.wait_ready(&admin_path)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.try_wait()? {
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

    /// Writes the ECDS files of `configs` into the staging folder (to be renamed into place):
    /// the folder and the files' names.
    fn stage_ecds(
        &self,
        configs: &[(String, String)],
        version: u32,
        vm_tag: Option<u32>,
    ) -> Result<(PathBuf, Vec<String>)> {
        let staging = self.dir.join("staging");
        fs::create_dir_all(&staging)?;
        let written = write_ecds(
            self.mode,
            &staging,
            configs,
            version,
            self.header_hold,
            vm_tag,
        )?;
        Ok((staging, written))
    }

    /// The xDS versions and rejections Envoy reports (`name: value` lines).
    fn xds_stats(&self) -> Result<String> {
        let url = format!(
            "{}/stats?filter=(version_text|update_rejected)$",
            self.admin_url()
        );
        Ok(self.client.get(&url, &[])?.body)
    }

    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        match self.proc.as_mut() {
            Some(proc) => proc.child.try_wait(),
            None => Ok(None),
        }
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, |p| p.child.id())
    }

    /// Takes this test's plugin configs and mock: new ECDS and CDS files, applied when Envoy
    /// reports their version; then counters are zeroed and the logs start here.
    fn reuse(&mut self, mock_port: u16, options: &Options) -> Result<()> {
        // The last test's access log lines and metric flushes land first (50 ms, 100 ms).
        let settle = Duration::from_millis(300).saturating_sub(self.parked_at.elapsed());
        std::thread::sleep(settle);
        if !self.is_running() {
            return Err("exited while parked".into());
        }
        let size = |file: &str| fs::metadata(self.dir.join(file)).map_or(0, |m| m.len() as usize);
        self.log_from = (size("envoy.log"), size("stdout.log"));
        self.reuses += 1;
        // Apart from the versions a test pushes itself (`push_plugin_config`).
        let version = 1000 + self.reuses;
        let configs = plugin_configs(options, self.mode)?;
        let text = fs::read_to_string(self.dir.join(CLUSTERS_FILE))?;
        let mut clusters: Vec<Yaml> = serde_norway::from_str(&text)?;
        let shipped = shipped_service_ports(options).into_iter();
        let ports = [("llm_upstream", mock_port)]
            .into_iter()
            .chain(shipped)
            .chain(options.clusters.iter().map(|(c, p)| (c.as_str(), *p)));
        for (name, port) in ports {
            let cluster = clusters
                .iter_mut()
                .find(|c| is_named(c, name))
                .ok_or(format!("no {name} cluster"))?;
            let mut doc = Doc {
                name: name.to_string(),
                yaml: cluster.clone(),
            };
            doc.set(ENDPOINT_PORT, port)?;
            *cluster = doc.yaml;
        }
        let (staging, written) = self.stage_ecds(&configs, version, Some(version))?;
        fs::write(staging.join(CDS_FILE), cds_text(&clusters, version)?)?;
        fs::rename(staging.join(CDS_FILE), self.dir.join("cds").join(CDS_FILE))?;
        let names: Vec<String> = written
            .iter()
            .filter_map(|f| f.strip_suffix(".yaml").map(str::to_string))
            .collect();
        let ecds = |name: &str, stat: &str| {
            format!("extension_config_discovery.http_filter.{name}.{stat}")
        };
        let before = self.xds_stats()?;
        for file in &written {
            fs::rename(staging.join(file), self.dir.join("ecds").join(file))?;
        }
        let want = format!("\"{version}\"");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = self.xds_stats()?;
            let at = |name: &str| stat_value(&stats, name);
            let applied = names
                .iter()
                .all(|n| at(&ecds(n, "version_text")) == Some(&want))
                && at("cluster_manager.cds.version_text") == Some(&want);
            if applied {
                break;
            }
            for name in &names {
                let rejected = ecds(name, "update_rejected");
                if at(&rejected) != stat_value(&before, &rejected) {
                    return Err(format!("{name}: config rejected").into());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("version {version} not applied:\n{stats}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.client
            .post(&format!("{}/reset_counters", self.admin_url()), &[], "")?;
        *self.configs.lock().map_err(|_| "config lock poisoned")? = configs;
        Ok(())
    }

    /// Listener base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Admin base URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Envoy's log so far (this test's part).
    pub fn log(&self) -> String {
        self.read_from("envoy.log", self.log_from.0)
    }

    /// Access log (stdout) so far (this test's part).
    pub fn access_log(&self) -> String {
        self.read_from("stdout.log", self.log_from.1)
    }

    fn read_from(&self, file: &str, from: usize) -> String {
        let bytes = fs::read(self.dir.join(file)).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// A counter or gauge from `/stats`, if present (after the plugins' metric flush).
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        metric_flush();
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
        let (staging, written) = self.stage_ecds(&configs, version, None)?;
        let ecds = self.dir.join("ecds");
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
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        // A VM that died (a plugin panic, a wasm trap) would fail the next test too.
        let log = self.log();
        let vm_died = ["panicked", "wasm trap", "VM failed", "RuntimeError"]
            .iter()
            .any(|needle| log.contains(needle));
        let parkable = self.key.is_some()
            && !vm_died
            && !std::thread::panicking()
            && matches!(proc.child.try_wait(), Ok(None));
        if parkable {
            let configs = self.configs.lock().map(|c| c.clone()).unwrap_or_default();
            park(Envoy {
                proc: Some(proc),
                dir: self.dir.clone(),
                mode: self.mode,
                header_hold: self.header_hold,
                configs: std::sync::Mutex::new(configs),
                port: self.port,
                admin_port: self.admin_port,
                client: Client::new(Duration::from_secs(5)),
                key: self.key.take(),
                reuses: self.reuses,
                log_from: (0, 0),
                parked_at: Instant::now(),
            });
            return;
        }
        let _ = proc.child.kill();
        let _ = proc.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_share_an_envoy_when_only_configs_and_ports_differ() {
        let proxy = |c: &str| Options::plugin("ai-proxy", c);
        let key = |o: &Options, m: Mode| reuse_key(o, m);
        let a = key(&proxy(r#"{"provider":{"type":"openai"}}"#), Mode::Gateway);
        let b = key(&proxy(r#"{"provider":{"type":"gemini"}}"#), Mode::Gateway);
        assert!(a.is_some());
        assert_eq!(a, b, "plugin configs differ by ECDS only");
        let limited = Options {
            rls_port: Some(1),
            ..Options::plugin("ai-token-ratelimit", "{}")
        };
        assert_eq!(key(&limited, Mode::Gateway), a, "ports come by CDS");
        let both = proxy("{}").with_plugin("ai-prompt-decorator", "{}");
        assert_ne!(
            key(&proxy("{}"), Mode::Plugins),
            key(&both, Mode::Plugins),
            "another set of filters"
        );
        let tools = key(&proxy("{}").with_cluster("tools", 1), Mode::Gateway);
        assert_ne!(tools, a, "another set of clusters");
        assert_eq!(
            tools,
            key(&proxy("{}").with_cluster("tools", 2), Mode::Gateway)
        );
        let held = Options {
            header_hold: HeaderHold::Neither,
            ..proxy("{}")
        };
        assert_ne!(key(&held, Mode::Gateway), a);
        let companion = Options {
            header_hold: HeaderHold::Companion,
            ..proxy("{}")
        };
        for own in [
            companion,
            Options::plugin("ai-statistics", "{}"),
            Options::shipped(),
        ] {
            assert_eq!(key(&own, Mode::Gateway), None, "{own:?}");
        }
    }

    #[test]
    fn a_reused_envoy_gets_vms_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let configs = vec![("ai-proxy".to_string(), "{}".to_string())];
        for mode in [Mode::Gateway, Mode::Plugins] {
            let written =
                write_ecds(mode, dir.path(), &configs, 1003, HeaderHold::Flag, Some(3)).unwrap();
            let mut doc = rendered(dir.path(), &written[0]);
            let vm = doc.str(&wasm("vm_config/vm_id")).unwrap();
            assert!(vm.ends_with(".3"), "{vm}");
        }
    }

    #[test]
    fn reusable_envoys_take_clusters_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::plugin("ai-proxy", "{}");
        write_config(dir.path(), 4242, &options, Mode::Gateway, true).unwrap();
        let mut doc = rendered(dir.path(), "envoy.yaml");
        assert!(doc.list("static_resources/clusters").unwrap().is_empty());
        let cds = doc
            .str("dynamic_resources/cds_config/path_config_source/path")
            .unwrap();
        let file = Doc::parse("cds", &fs::read_to_string(cds).unwrap()).unwrap();
        let llm = file.yaml["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| is_named(c, "llm_upstream"))
            .unwrap();
        assert_eq!(llm["@type"].as_str(), Some(CLUSTER_TYPE));
        let endpoint = &llm["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
        assert_eq!(
            endpoint["address"]["socket_address"]["port_value"].as_u64(),
            Some(4242)
        );
    }

    fn rendered(dir: &Path, file: &str) -> Doc {
        Doc::parse(file, &fs::read_to_string(dir.join(file)).unwrap()).unwrap()
    }

    fn names(filters: &[Yaml]) -> Vec<&str> {
        filters
            .iter()
            .filter_map(|f| f.get("name")?.as_str())
            .collect()
    }

    #[test]
    fn every_mode_renders_the_test_ports_paths_and_routes() {
        let options = Options {
            rls_port: Some(1111),
            webdis_port: Some(2222),
            chroma_port: Some(3333),
            ..Options::plugin("ai-proxy", r#"{"provider": {"type": "openai"}}"#)
                .with_route("b", "/b/")
                .with_cluster("tools", 4444)
        };
        let dist = workspace_root().join("dist");
        for mode in [Mode::Plugins, Mode::Bundle, Mode::Gateway] {
            let dir = tempfile::tempdir().unwrap();
            let configs = write_config(dir.path(), 4242, &options, mode, false).unwrap();
            let ecds_dir = dir.path().join("ecds");
            let mut doc = rendered(dir.path(), "envoy.yaml");
            let listener = "static_resources/listeners/ai_gateway/address/socket_address";
            let port = |doc: &mut Doc, path: &str| doc.at(path).unwrap().as_u64();
            assert_eq!(port(&mut doc, &format!("{listener}/port_value")), Some(0));
            assert_eq!(
                doc.str(&format!("{listener}/address")).unwrap(),
                "127.0.0.1"
            );
            assert_eq!(
                port(&mut doc, "admin/address/socket_address/port_value"),
                Some(0)
            );
            for (cluster, want) in [
                ("llm_upstream", 4242),
                ("rate_limit_service", 1111),
                ("quota_store", 2222),
                ("chroma", 3333),
                ("tools", 4444),
            ] {
                let endpoint = "load_assignment/endpoints/0/lb_endpoints/0/endpoint/address";
                let path = format!(
                    "static_resources/clusters/{cluster}/{endpoint}/socket_address/port_value"
                );
                assert_eq!(port(&mut doc, &path), Some(want), "{mode:?} {cluster}");
            }
            let credentials =
                hcm("http_filters/envoy.filters.http.api_key_auth/typed_config/credentials");
            let keys: Vec<_> = doc
                .list(&credentials)
                .unwrap()
                .iter()
                .filter_map(|c| c.get("key")?.as_str().map(str::to_string))
                .collect();
            for key in [
                "sk-demo-ann",
                "sk-demo-bob",
                crate::http::TEST_KEY,
                "sk-e2e-alice",
            ] {
                assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
            }
            let routes = doc
                .list(&hcm("route_config/virtual_hosts/llm/routes"))
                .unwrap();
            assert_eq!(names(routes), ["b", "llm"]);
            let prefix = hcm("route_config/virtual_hosts/llm/routes/b/match/prefix");
            assert_eq!(doc.str(&prefix).unwrap(), "/b/");
            let filters = doc.list(&hcm("http_filters")).unwrap();
            let plugins: Vec<&Yaml> = filters.iter().filter(|f| is_plugin(f)).collect();
            for filter in &plugins {
                let source = &filter["config_discovery"]["config_source"]["path_config_source"];
                let path = PathBuf::from(source["path"].as_str().unwrap());
                assert!(path.starts_with(&ecds_dir) && path.exists(), "{path:?}");
                let watched = source["watched_directory"]["path"].as_str();
                assert_eq!(watched, ecds_dir.to_str());
            }
            let plugin_count = plugins.len();
            let file = if mode == Mode::Gateway {
                GATEWAY
            } else {
                "ai-proxy"
            };
            let mut ecds = rendered(&ecds_dir, &format!("{file}.yaml"));
            assert_eq!(ecds.str("version_info").unwrap(), "1");
            assert_eq!(ecds.at(&wasm(HOLD_FLAG)).unwrap().as_bool(), Some(true));
            let config = ecds.str(&wasm(CONFIG_VALUE)).unwrap();
            let config: Value = serde_json::from_str(&config).unwrap();
            let module = ecds.str(&wasm("vm_config/code/local/filename")).unwrap();
            let vm_id = ecds.str(&wasm("vm_config/vm_id")).unwrap();
            let root_id = ecds.str(&wasm("root_id")).unwrap();
            let files = fs::read_dir(&ecds_dir).unwrap().count();
            match mode {
                Mode::Plugins | Mode::Bundle => {
                    assert_eq!((plugin_count, files), (configs.len(), configs.len()));
                    assert_eq!(config["provider"]["type"], "openai");
                    assert_eq!(root_id, "ai-proxy");
                    let vm = if mode == Mode::Bundle {
                        GATEWAY
                    } else {
                        "ai-proxy"
                    };
                    assert_eq!(vm_id, vm);
                    assert_eq!(PathBuf::from(module), dist.join(format!("{vm}.wasm")));
                }
                Mode::Gateway => {
                    assert_eq!((plugin_count, files), (1, 1));
                    assert_eq!(config["ai-proxy"]["provider"]["type"], "openai");
                    assert_eq!(
                        config["ai-cache"],
                        json!({ "cacheKeyStrategy": "disabled" })
                    );
                    assert_eq!((root_id.as_str(), vm_id.as_str()), (GATEWAY, GATEWAY));
                    assert_eq!(PathBuf::from(module), dist.join("ai-gateway.wasm"));
                }
            }
            // A reload writes the next version.
            let staging = tempfile::tempdir().unwrap();
            let written =
                write_ecds(mode, staging.path(), &configs, 3, HeaderHold::Flag, None).unwrap();
            assert_eq!(written.len(), files);
            let mut next = rendered(staging.path(), &format!("{file}.yaml"));
            assert_eq!(next.str("version_info").unwrap(), "3");
        }
    }

    #[test]
    fn without_the_flag_the_companion_holds_the_headers() {
        for (mode, vm) in [(Mode::Plugins, "ai-proxy"), (Mode::Gateway, GATEWAY)] {
            let dir = tempfile::tempdir().unwrap();
            let options = Options {
                header_hold: HeaderHold::Companion,
                ..Options::default()
            };
            write_config(dir.path(), 4242, &options, mode, false).unwrap();
            let mut doc = rendered(dir.path(), "envoy.yaml");
            let filters = doc.list(&hcm("http_filters")).unwrap();
            let names = names(filters);
            assert_eq!(
                names[names.len() - 3..],
                ["envoy.filters.http.buffer", "ai-proxy-headers", ROUTER]
            );
            let vm_id = hcm("http_filters/ai-proxy-headers/typed_config/config/vm_config/vm_id");
            assert_eq!(doc.str(&vm_id).unwrap(), vm);
            for entry in fs::read_dir(dir.path().join("ecds")).unwrap() {
                let path = entry.unwrap().path();
                let mut ecds = Doc::parse("ecds", &fs::read_to_string(&path).unwrap()).unwrap();
                let err = ecds.at(&wasm(HOLD_FLAG)).unwrap_err().to_string();
                assert!(err.contains(HOLD_FLAG), "{err}");
            }
        }
    }

    #[test]
    fn plain_envoy_runs_just_the_extra_filter() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            plain: true,
            extra_wasm: Some(ExtraWasm {
                wasm: PathBuf::from("/abs/floor.wasm"),
                root_id: "noop".into(),
            }),
            ..Options::default()
        };
        write_config(dir.path(), 4242, &options, Mode::Gateway, false).unwrap();
        let mut doc = rendered(dir.path(), "envoy.yaml");
        let filters = doc.list(&hcm("http_filters")).unwrap();
        assert!(!filters.iter().any(is_plugin));
        assert!(names(filters).ends_with(&["extra-noop", ROUTER]));
        let config = hcm("http_filters/extra-noop/typed_config/config");
        assert_eq!(doc.str(&format!("{config}/root_id")).unwrap(), "noop");
        assert_eq!(
            doc.str(&format!("{config}/vm_config/vm_id")).unwrap(),
            "extra-noop"
        );
        let file = format!("{config}/vm_config/code/local/filename");
        assert_eq!(doc.str(&file).unwrap(), "/abs/floor.wasm");
    }

    #[test]
    fn a_missing_field_is_an_error_naming_its_path() {
        let root = workspace_root();
        let shipped = fs::read_to_string(root.join("envoy/envoy.yaml")).unwrap();
        let render = |text: &str| {
            render_bootstrap(text, 1, Path::new("/x"), &[])
                .unwrap_err()
                .to_string()
        };
        let err = render(&shipped.replace("port_value: 9901", "port: 9901"));
        assert!(
            err.contains("`admin/address/socket_address/port_value`"),
            "{err}"
        );
        let err = render(&shipped.replace("- name: llm_upstream", "- name: upstream"));
        assert!(
            err.contains("`static_resources/clusters/llm_upstream/"),
            "{err}"
        );
        assert!(err.contains("(no `llm_upstream`)"), "{err}");
        let err =
            render(&shipped.replace("              - name: llm\n", "              - name: x\n"));
        assert!(err.contains("virtual_hosts/llm/routes/llm`"), "{err}");
        let ecds = fs::read_to_string(root.join("envoy/ecds/ai-proxy.yaml")).unwrap();
        let err = render_ecds(&ecds.replace("filename:", "file:"), Path::new("/d"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`resources/0/typed_config/config/vm_config/code/local/filename`"),
            "{err}"
        );
        assert!(shipped_config(&ecds.replace("value:", "text:")).is_none());
        assert!(shipped_config(&ecds).is_some());
    }

    #[test]
    fn the_openai_upstream_and_the_trial() {
        let shipped = fs::read_to_string(workspace_root().join("envoy/envoy.yaml")).unwrap();
        let openai = render_openai_upstream(&shipped).unwrap();
        let mut doc = Doc::parse("openai", &openai).unwrap();
        let route = hcm("route_config/virtual_hosts/llm/routes/llm");
        let host = doc.str(&format!("{route}/route/host_rewrite_literal"));
        assert_eq!(host.unwrap(), "api.openai.com");
        let auth = doc.str(&format!("{route}/request_headers_to_add/0/header/value"));
        assert_eq!(auth.unwrap(), "Bearer %ENVIRONMENT(OPENAI_API_KEY)%");
        let cluster = "static_resources/clusters/llm_upstream";
        let address = "load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address";
        let upstream = doc.str(&format!("{cluster}/{address}/address"));
        assert_eq!(upstream.unwrap(), "api.openai.com");
        assert!(doc.at(&format!("{cluster}/transport_socket")).is_ok());
        assert!(doc.at("static_resources/clusters/chroma").is_ok());
        let (bootstrap, ecds) = render_trial_gateway(&openai, ".run/ecds").unwrap();
        let mut doc = Doc::parse("trial", &bootstrap).unwrap();
        assert!(doc.at(&format!("{route}/request_headers_to_add")).is_ok());
        let filters = doc.list(&hcm("http_filters")).unwrap();
        let plugins: Vec<Yaml> = filters.iter().filter(|f| is_plugin(f)).cloned().collect();
        assert_eq!(names(&plugins), [GATEWAY]);
        let path = "config_discovery/config_source/path_config_source/path";
        let path = doc.str(&hcm(&format!("http_filters/{GATEWAY}/{path}")));
        assert_eq!(path.unwrap(), ".run/ecds/ai-gateway.yaml");
        let mut ecds = Doc::parse("trial ecds", &ecds).unwrap();
        let module = ecds.str(&wasm("vm_config/code/local/filename"));
        assert_eq!(module.unwrap(), "dist/ai-gateway.wasm");
        assert_eq!(ecds.str("resources/0/name").unwrap(), GATEWAY);
        // Every shipped plugin has its config in the one filter's.
        let config: Value = serde_json::from_str(&ecds.str(&wasm(CONFIG_VALUE)).unwrap()).unwrap();
        for entry in fs::read_dir(workspace_root().join("envoy/ecds")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            let plugin = name.trim_end_matches(".yaml");
            assert!(config.get(plugin).is_some(), "{plugin} is not in the trial");
        }
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

/// Waits out the plugins' metric lag: each VM hands the counter increments it holds to Envoy
/// on its root tick (every 100 ms, `sdk::host::METRIC_FLUSH`), after the request's `on_log`.
fn metric_flush() {
    std::thread::sleep(std::time::Duration::from_millis(300));
}

impl Envoy {
    /// The Prometheus samples Envoy serves (after the plugins' metric flush).
    pub fn prometheus(&self) -> Result<Vec<Sample>> {
        metric_flush();
        let resp = self
            .client
            .get(&format!("{}/stats/prometheus", self.admin_url()), &[])?;
        Ok(parse_prometheus(&resp.body))
    }
}
