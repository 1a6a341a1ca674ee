//! A small blocking HTTP client for tests: any status is a response, never an error.

use crate::Result;
use serde_json::Value;
use std::io::Read;
use std::time::Duration;

/// A response with its body read.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Response {
    /// One header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("body is not JSON ({e}): {}", self.body).into())
    }
}

/// One read of a streamed body and when it arrived.
pub type TimedRead = (std::time::Instant, Vec<u8>);

/// The API key test clients send unless a test sets its own (`authorization`, `x-api-key`) or
/// `x-no-key` to send none: the shipped config authenticates callers with Envoy's api_key_auth,
/// and the e2e config knows this key as the consumer `e2e` (the SDK scripts use it too).
pub const TEST_KEY: &str = "client-side-key";

fn with_key<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let own = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut all: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("x-no-key"))
        .collect();
    if !own("authorization") && !own("x-api-key") && !own("x-no-key") {
        all.push(("authorization", "Bearer client-side-key"));
    }
    all
}

/// A client with a global timeout.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// A client whose requests fail after `timeout`.
    pub fn new(timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// Sends a request and reads the whole response.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Response> {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in with_key(headers) {
            builder = builder.header(k, v);
        }
        let request = builder.body(body.unwrap_or_default().to_string())?;
        let mut resp = self.agent.run(request)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut text = String::new();
        resp.body_mut().as_reader().read_to_string(&mut text)?;
        Ok(Response {
            status,
            headers,
            body: text,
        })
    }

    /// `GET url`.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response> {
        self.request("GET", url, headers, None)
    }

    /// `POST url` with a JSON body.
    pub fn post(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Result<Response> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.request("POST", url, &all, Some(body))
    }

    /// `POST url` and read the answer as it streams: each read of the body, with the time it
    /// arrived, so tests can see chunking and pacing.
    pub fn post_stream(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, Vec<TimedRead>)> {
        let mut builder = ureq::http::Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/json");
        for (k, v) in with_key(headers) {
            builder = builder.header(k, v);
        }
        let mut resp = self.agent.run(builder.body(body.to_string())?)?;
        let status = resp.status().as_u16();
        let mut reader = resp.body_mut().as_reader();
        let mut reads = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            reads.push((std::time::Instant::now(), buf[..n].to_vec()));
        }
        Ok((status, reads))
    }
}
