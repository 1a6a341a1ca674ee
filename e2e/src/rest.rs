//! The REST API the tool tests call (`src/bin/rest-api.rs`) and its control endpoints.

use crate::http::Client;
use crate::Result;
use serde_json::Value;
use std::process::Child;
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
        let (child, port) = crate::mock::spawn_on_free_port(bin, "rest-api", &[])?;
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
