//! The REST API the tool tests call (`src/bin/rest-api.rs`) and its control endpoints.

use crate::http::Client;
use crate::Result;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running REST API; killed on drop.
pub struct RestApi {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    client: Client,
}

impl RestApi {
    /// Starts the binary (`env!("CARGO_BIN_EXE_rest-api")` in tests) on a free port.
    pub fn start(bin: &str) -> Result<RestApi> {
        let mut child = Command::new(bin)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start rest-api {bin}: {e}"))?;
        let stdout = child.stdout.take().ok_or("rest-api has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected rest-api banner: {line:?}"))?;
        Ok(RestApi {
            child,
            port,
            client: Client::new(Duration::from_secs(10)),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every API request received, in order.
    pub fn requests(&self) -> Result<Vec<Value>> {
        let resp = self.client.get(&self.url("/__rest/requests"), &[])?;
        match serde_json::from_str(&resp.body)? {
            Value::Array(list) => Ok(list),
            other => Err(format!("unexpected recordings: {other}").into()),
        }
    }

    /// Forgets recordings and pending failures.
    pub fn clear(&self) -> Result<()> {
        self.client
            .request("DELETE", &self.url("/__rest/requests"), &[], None)?;
        Ok(())
    }

    /// Makes the next `count` API requests fail with `status`.
    pub fn fail_next(&self, status: u16, count: u32) -> Result<()> {
        let body = serde_json::json!({"status": status, "count": count}).to_string();
        self.client.post(&self.url("/__rest/fail"), &[], &body)?;
        Ok(())
    }
}

impl Drop for RestApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
