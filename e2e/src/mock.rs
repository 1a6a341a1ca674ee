//! The mock provider process and its control API.

use crate::http::Client;
use crate::Result;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts a test server binary with `--port 0` and `args`; reads the port it bound from the
/// first line it prints (`…:<port>`).
pub fn spawn_on_free_port(bin: &str, what: &str, args: &[&str]) -> Result<(Child, u16)> {
    let mut child = Command::new(bin)
        .args(args)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {what} {bin}: {e}"))?;
    let stdout = child.stdout.take().ok_or(format!("{what} has no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("unexpected {what} banner: {line:?}"))?;
    Ok((child, port))
}

/// A running mock provider; killed on drop.
pub struct Mock {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    client: Client,
}

impl Mock {
    /// Starts the mock binary (`env!("CARGO_BIN_EXE_mock-provider")` in tests) on a free port.
    pub fn start(bin: &str) -> Result<Mock> {
        let (child, port) = spawn_on_free_port(bin, "mock provider", &["--host", "127.0.0.1"])?;
        Ok(Mock {
            child,
            port,
            client: Client::new(Duration::from_secs(10)),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:1234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request the mock received, in order.
    pub fn requests(&self) -> Result<Vec<Value>> {
        let resp = self
            .client
            .get(&format!("{}/__mock/requests", self.url()), &[])?;
        match serde_json::from_str(&resp.body)? {
            Value::Array(list) => Ok(list),
            other => Err(format!("unexpected recordings: {other}").into()),
        }
    }

    /// Requests received on `path`.
    pub fn requests_to(&self, path: &str) -> Result<Vec<Value>> {
        Ok(self
            .requests()?
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect())
    }

    /// Forgets recordings and pending failures.
    pub fn clear(&self) -> Result<()> {
        self.client.request(
            "DELETE",
            &format!("{}/__mock/requests", self.url()),
            &[],
            None,
        )?;
        Ok(())
    }

    /// Makes the next `count` requests carrying header `name: value` fail with `status`.
    pub fn fail_with_header(&self, status: u16, count: u32, name: &str, value: &str) -> Result<()> {
        let body = serde_json::json!({"status": status, "count": count, "header": [name, value]});
        self.client.post(
            &format!("{}/__mock/fail", self.url()),
            &[],
            &body.to_string(),
        )?;
        Ok(())
    }

    /// Makes the next `count` requests fail with `status`.
    pub fn fail_next(&self, status: u16, count: u32) -> Result<()> {
        let body = serde_json::json!({"status": status, "count": count}).to_string();
        self.client
            .post(&format!("{}/__mock/fail", self.url()), &[], &body)?;
        Ok(())
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
