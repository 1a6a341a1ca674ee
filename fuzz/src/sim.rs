//! Envoy's side of a filter, simulated over [`MockHost`]: the callbacks in Envoy's order, with its
//! buffering rule (a paused body accumulates and the next callback sees all of it).

use proxy_wasm::types::Action;
use sdk::host::MockHost;
use sdk::pipeline::Pipeline;

/// What the client received.
#[derive(Debug, Default)]
pub struct Answer {
    /// Status sent to the client.
    pub status: u32,
    /// Response headers as the client sees them.
    pub headers: Vec<(String, String)>,
    /// Body bytes as the client sees them.
    pub body: Vec<u8>,
    /// The filter answered itself (local reply).
    pub local: bool,
}

impl Answer {
    /// A header, by name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a simulated exchange is not valid.
pub type Violation = String;

/// How the request half ended.
pub enum Sent {
    /// The request went upstream.
    Upstream,
    /// The filter answered it.
    Replied(Answer),
    /// The filter waits on a callout (not simulated further).
    Waiting,
}

/// One request through a pipeline.
pub struct Sim {
    /// The host the pipeline sees.
    pub host: MockHost,
    /// The pipeline under test.
    pub pipeline: Pipeline,
}

fn reply(host: &MockHost) -> Option<Answer> {
    host.local_reply().map(|r| Answer {
        status: r.status,
        headers: r.headers,
        body: r.body,
        local: true,
    })
}

impl Sim {
    /// A pipeline for a request with these headers.
    pub fn new(pipeline: Pipeline, headers: &[(&str, &str)]) -> Sim {
        let host = MockHost::with_request_headers(headers);
        host.set_prop("xds.route_name", "llm");
        host.set_prop("xds.cluster_name", "llm_upstream");
        Sim { host, pipeline }
    }

    /// Sends the request body in these chunks (an empty list: a request without a body).
    pub fn request(&mut self, chunks: &[&[u8]]) -> Result<Sent, Violation> {
        let (host, p) = (&self.host, &mut self.pipeline);
        let headers = p.on_request_headers(host, chunks.is_empty());
        if let Some(answer) = reply(host) {
            return Ok(Sent::Replied(answer));
        }
        if chunks.is_empty() {
            return match headers {
                Action::Continue => Ok(Sent::Upstream),
                Action::Pause if !host.callouts.borrow().is_empty() => Ok(Sent::Waiting),
                _ => Err("headers of a body-less request paused with nothing pending".into()),
            };
        }
        let mut buffered: Vec<u8> = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len();
            buffered.extend_from_slice(chunk);
            *host.request_body.borrow_mut() = buffered.clone();
            let action = p.on_request_body(host, buffered.len(), end);
            if let Some(answer) = reply(host) {
                return Ok(Sent::Replied(answer));
            }
            match action {
                Action::Continue => buffered.clear(),
                _ if end => {
                    return if host.callouts.borrow().is_empty() {
                        Err("request paused at its end with no callout pending (a hang)".into())
                    } else {
                        Ok(Sent::Waiting)
                    };
                }
                _ => buffered = host.request_body.borrow().clone(),
            }
        }
        host.request_headers_sealed.set(true);
        Ok(Sent::Upstream)
    }

    /// Delivers the upstream's answer in these chunks; returns what the client gets.
    pub fn response(
        &mut self,
        headers: Vec<(String, String)>,
        chunks: &[&[u8]],
    ) -> Result<Answer, Violation> {
        let (host, p) = (&self.host, &mut self.pipeline);
        *host.response_headers.borrow_mut() = headers;
        let action = p.on_response_headers(host);
        if let Some(answer) = reply(host) {
            return Ok(answer);
        }
        if action != Action::Continue && !host.callouts.borrow().is_empty() {
            return Err("response headers wait on a callout (not simulated)".into());
        }
        let mut answer = Answer {
            headers: host.response_headers.borrow().clone(),
            ..Answer::default()
        };
        answer.status = answer
            .header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut buffered: Vec<u8> = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len();
            buffered.extend_from_slice(chunk);
            *host.response_body.borrow_mut() = buffered.clone();
            let action = p.on_response_body(host, buffered.len(), end);
            if let Some(answer) = reply(host) {
                return Ok(answer);
            }
            match action {
                Action::Continue => {
                    answer.body.extend(host.response_body.borrow().iter());
                    buffered.clear();
                }
                _ if end => {
                    return Err(if host.callouts.borrow().is_empty() {
                        "response paused at its end with no callout pending (a hang)".into()
                    } else {
                        "response waits on a callout (not simulated)".into()
                    });
                }
                _ => buffered = host.response_body.borrow().clone(),
            }
        }
        if action == Action::Pause {
            // Held headers went out with the body: as the stages left them.
            answer.headers = host.response_headers.borrow().clone();
            answer.status = answer
                .header(":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
        p.on_log(host);
        Ok(answer)
    }
}
