//! The one error shape clients get: OpenAI-style JSON, or Anthropic's on `/v1/messages`.

use crate::api::ClientProtocol;
use crate::host::Host;
use serde_json::json;

/// An error the gateway answers with instead of calling the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// HTTP status.
    pub status: u32,
    /// Human-readable message.
    pub message: String,
    /// OpenAI `error.type`, e.g. `invalid_request_error`.
    pub error_type: String,
    /// OpenAI `error.code`, e.g. `invalid_json`.
    pub code: Option<String>,
    /// A prepared answer (content type, body) sent instead of the error JSON.
    pub raw: Option<Box<(String, String)>>,
    /// Extra response headers (rate-limit headers, `retry-after`, …).
    pub headers: Option<Box<Vec<(String, String)>>>,
}

impl ErrorReply {
    /// An error with explicit status, type and code.
    pub fn new(
        status: u32,
        error_type: &str,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ErrorReply {
            status,
            message: message.into(),
            error_type: error_type.to_string(),
            code: code.map(str::to_string),
            raw: None,
            headers: None,
        }
    }

    /// A local answer with a prepared body (e.g. a refusal shaped as a completion).
    pub fn raw(status: u32, content_type: &str, body: String) -> Self {
        ErrorReply {
            raw: Some(Box::new((content_type.to_string(), body))),
            ..ErrorReply::new(status, "", None, "")
        }
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ErrorReply::new(400, "invalid_request_error", Some(code), message)
    }

    /// 500 `server_error` for a gateway-side failure.
    pub fn internal(message: impl Into<String>) -> Self {
        ErrorReply::new(500, "server_error", Some("gateway_error"), message)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .push((name.to_string(), value.into()));
        self
    }

    /// Anthropic's error type for this status.
    pub fn anthropic_type(&self) -> &'static str {
        match self.status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 | 503 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The JSON body in the client's protocol.
    pub fn body(&self, protocol: ClientProtocol) -> String {
        if let Some(raw) = &self.raw {
            return raw.1.clone();
        }
        let value = match protocol {
            ClientProtocol::OpenAi | ClientProtocol::Responses => json!({"error": {
                "message": self.message,
                "type": self.error_type,
                "param": null,
                "code": self.code,
            }}),
            ClientProtocol::Anthropic => json!({"type": "error", "error": {
                "type": self.anthropic_type(),
                "message": self.message,
            }}),
        };
        value.to_string()
    }

    /// Sends the reply to the client as a local response.
    pub fn send(&self, host: &dyn Host, protocol: ClientProtocol) {
        let body = self.body(protocol);
        let content_type = self
            .raw
            .as_ref()
            .map_or("application/json", |r| r.0.as_str());
        let mut headers = vec![("content-type", content_type)];
        if let Some(extra) = &self.headers {
            headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        host.send_http_response(self.status, &headers, body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MockHost;
    use serde_json::Value;

    #[test]
    fn openai_shape() {
        let e = ErrorReply::bad_request("invalid_json", "bad body");
        let v: Value = serde_json::from_str(&e.body(ClientProtocol::OpenAi)).unwrap();
        assert_eq!(v["error"]["message"], "bad body");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_json");
    }

    #[test]
    fn anthropic_shape() {
        let e = ErrorReply::new(429, "rate_limit_exceeded", None, "slow down");
        let v: Value = serde_json::from_str(&e.body(ClientProtocol::Anthropic)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "slow down");
    }

    #[test]
    fn send_sets_status_and_json_type() {
        let host = MockHost::default();
        ErrorReply::internal("x").send(&host, ClientProtocol::OpenAi);
        let reply = host.local_reply().unwrap();
        assert_eq!(reply.status, 500);
        assert_eq!(
            reply.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        ErrorReply::new(429, "tokens", None, "slow")
            .with_header("retry-after", "7")
            .send(&host, ClientProtocol::OpenAi);
        let reply = host.local_reply().unwrap();
        assert!(reply
            .headers
            .contains(&("retry-after".to_string(), "7".to_string())));
    }
}
