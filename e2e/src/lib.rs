//! End-to-end harness: starts the mock provider and a real Envoy on free loopback ports, with a
//! config rendered from the shipped `envoy/` files, and stops both when dropped (also when a test
//! fails).

pub mod cli;
pub mod envoy;
pub mod golden;
pub mod green;
pub mod http;
pub mod mock;
pub mod rest;
pub mod sse;

use std::path::PathBuf;

/// A harness error: what failed, with the context a test failure needs.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Result type of the harness.
pub type Result<T> = std::result::Result<T, Error>;

/// The repository root.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Path of a built plugin, `dist/<plugin>.wasm`.
pub fn wasm_path(plugin: &str) -> PathBuf {
    workspace_root().join("dist").join(format!("{plugin}.wasm"))
}

/// A mock provider with an Envoy in front of it.
pub struct Gateway {
    /// The Envoy under test (dropped first).
    pub envoy: envoy::Envoy,
    /// The upstream.
    pub mock: mock::Mock,
    /// Client with a 30 s timeout.
    pub client: http::Client,
}

impl Gateway {
    /// Starts the mock (`env!("CARGO_BIN_EXE_mock-provider")`) and Envoy with `options`.
    pub fn start(mock_bin: &str, options: &envoy::Options) -> Result<Gateway> {
        let mock = mock::Mock::start(mock_bin)?;
        let envoy = envoy::Envoy::start_or_reuse(mock.port, options)?;
        Ok(Gateway {
            envoy,
            mock,
            client: http::Client::new(std::time::Duration::from_secs(30)),
        })
    }

    /// `POST <envoy><path>` with a JSON body.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Result<http::Response> {
        self.client
            .post(&format!("{}{path}", self.envoy.url()), headers, body)
    }

    /// The body of the last request the mock received, as JSON.
    pub fn last_upstream_request(&self) -> Result<serde_json::Value> {
        self.mock.requests()?.pop().ok_or_else(|| {
            format!(
                "the mock received no request; Envoy log:\n{}",
                self.envoy.log()
            )
            .into()
        })
    }
}

/// Runs one of the Python SDK scripts in `e2e/sdk/` with the venv's Python; returns its JSON.
pub fn run_sdk_script(script: &str, args: &[&str]) -> Result<serde_json::Value> {
    let python = workspace_root().join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(workspace_root().join("e2e/sdk").join(script))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e} (run `make setup`)", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{script} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A redis-server on a free loopback port; stopped on drop.
pub struct Redis {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts `redis-server` (installed by `make setup`) without persistence.
    pub fn start() -> Result<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server (run `make setup`): {e}"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err("redis-server did not start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(Redis { child, port })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis behind webdis (an HTTP front to Redis), on free loopback ports: the fleet store of
/// ai-quota. Stopped on drop; it outlives the Envoys a test starts and stops.
pub struct Webdis {
    child: std::process::Child,
    /// The Redis it fronts.
    pub redis: Redis,
    /// webdis's HTTP port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Webdis {
    /// Starts `redis-server` and `webdis` (installed by `make setup`).
    pub fn start() -> Result<Webdis> {
        let redis = Redis::start()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::Builder::new().prefix("ai-gw-webdis-").tempdir()?;
        let config = serde_json::json!({
            "redis_host": "127.0.0.1",
            "redis_port": redis.port,
            "redis_auth": null,
            "http_host": "127.0.0.1",
            "http_port": port,
            "threads": 2,
            "pool_size": 8,
            "daemonize": false,
            "database": 0,
            "acl": [{"disabled": ["DEBUG", "FLUSHDB", "FLUSHALL"]}],
            "verbosity": 1,
            "logfile": dir.path().join("webdis.log"),
        });
        let path = dir.path().join("webdis.json");
        std::fs::write(&path, config.to_string())?;
        let child = std::process::Command::new("webdis")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start webdis (run `make setup`): {e}"))?;
        let mut webdis = Webdis {
            child,
            redis,
            port,
            _dir: dir,
        };
        let client = http::Client::new(std::time::Duration::from_secs(2));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let ping = client.get(&format!("{}/PING", webdis.url()), &[]);
            if matches!(ping, Ok(ref r) if r.status == 200) {
                return Ok(webdis);
            }
            if std::time::Instant::now() > deadline {
                let _ = webdis.child.kill();
                return Err("webdis did not start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a command (`/GET/key`), returning webdis's JSON answer.
    pub fn command(&self, path: &str) -> Result<serde_json::Value> {
        let client = http::Client::new(std::time::Duration::from_secs(5));
        client.get(&format!("{}{path}", self.url()), &[])?.json()
    }
}

impl Drop for Webdis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test rate limit service (`e2e/src/bin/rls-server`); stopped on drop.
pub struct RateLimitService {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
}

impl RateLimitService {
    /// Starts the service binary (`env!("CARGO_BIN_EXE_rls-server")`) against Redis on `redis_port`.
    pub fn start(bin: &str, redis_port: u16) -> Result<RateLimitService> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin)
            .args([
                "--port",
                "0",
                "--redis",
                &format!("redis://127.0.0.1:{redis_port}"),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected rls-server banner: {line:?}"))?;
        Ok(RateLimitService { child, port })
    }
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chroma (`chroma run`, the `chromadb` wheel `make setup` installs in `.venv`) on a free
/// loopback port with its data in a temporary directory; stopped on drop.
pub struct Chroma {
    child: Option<std::process::Child>,
    _dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
    client: http::Client,
}

impl Chroma {
    /// Starts Chroma and waits for its heartbeat.
    pub fn start() -> Result<Chroma> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::Builder::new().prefix("ai-gw-chroma-").tempdir()?;
        let bin = workspace_root().join(".venv/bin/chroma");
        let child = std::process::Command::new(&bin)
            .args([
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--path",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {} (run `make setup`): {e}", bin.display()))?;
        let chroma = Chroma {
            child: Some(child),
            _dir: dir,
            port,
            client: http::Client::new(std::time::Duration::from_secs(5)),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let beat = chroma
                .client
                .get(&format!("{}/api/v2/heartbeat", chroma.url()), &[]);
            if matches!(beat, Ok(ref r) if r.status == 200) {
                return Ok(chroma);
            }
            if std::time::Instant::now() > deadline {
                return Err("chroma did not start in 30 s".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a collection in the default tenant and database; returns its id.
    pub fn create_collection(&self, name: &str) -> Result<String> {
        let url = format!(
            "{}/api/v2/tenants/default_tenant/databases/default_database/collections",
            self.url()
        );
        let body = serde_json::json!({"name": name}).to_string();
        let resp = self.client.post(&url, &[], &body)?;
        let v = resp.json()?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no collection id in {v}").into())
    }

    /// How many records a collection holds.
    pub fn count(&self, collection: &str) -> Result<u64> {
        let url = format!(
            "{}/api/v2/tenants/default_tenant/databases/default_database/collections/{collection}/count",
            self.url()
        );
        let v = self.client.get(&url, &[])?.json()?;
        v.as_u64().ok_or_else(|| format!("count is {v}").into())
    }

    /// Stops Chroma now (the store going away mid-test).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Chroma {
    fn drop(&mut self) {
        self.stop();
    }
}
