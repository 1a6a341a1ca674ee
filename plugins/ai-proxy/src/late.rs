//! Request headers decided from the body (Gemini's model in the path, Bedrock's SigV4
//! signature, …).
//!
//! Stock Envoy keeps a wasm filter's request headers writable only inside its header callback,
//! so ai-proxy first tries to write them directly (Higress's Envoy allows it) and otherwise
//! leaves them in filter state for the `ai-proxy-headers` filter, placed after Envoy's buffer
//! filter, which sees the headers only once the whole body has been read.

use sdk::config::ConfigError;
use sdk::error::ErrorReply;
use sdk::host::Host;
use sdk::pipeline::{Exchange, Need, Stage};
use sdk::shell::Plugin;
use std::rc::Rc;

/// Filter-state key holding the headers still to apply (JSON `[[name, value|null], …]`).
pub const LATE_HEADERS_FACT: &str = "ai_gateway.upstream_headers";

/// Root id of the companion filter.
pub const ROOT_ID: &str = "ai-proxy-headers";

/// Sets each header on the request, or, when the host refuses (stock Envoy after the header
/// callback), leaves all of them for the `ai-proxy-headers` filter.
pub fn apply(host: &dyn Host, headers: &[(String, Option<String>)]) {
    if headers.is_empty() {
        return;
    }
    let mut refused = false;
    for (name, value) in headers {
        if !host.set_request_header(name, value.as_deref()) {
            refused = true;
            break;
        }
    }
    if refused {
        let encoded = serde_json::to_vec(headers).unwrap_or_default();
        let _ = host.set_property(&[LATE_HEADERS_FACT], &encoded);
    }
}

/// The companion filter: applies the headers ai-proxy left in filter state.
pub struct ProxyHeaders;

impl Plugin for ProxyHeaders {
    type Config = ();
    const NAME: &'static str = ROOT_ID;

    fn parse_config(bytes: &[u8]) -> Result<((), Vec<String>), ConfigError> {
        let text = String::from_utf8_lossy(bytes);
        let warnings = match text.trim() {
            "" | "{}" | "null" => Vec::new(),
            _ => vec![format!("{ROOT_ID} takes no configuration; it was ignored")],
        };
        Ok(((), warnings))
    }

    fn stages(_config: &Rc<()>) -> Vec<Box<dyn Stage>> {
        vec![Box::new(ApplyStage)]
    }
}

struct ApplyStage;

impl Stage for ApplyStage {
    fn name(&self) -> &'static str {
        ROOT_ID
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        _ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        let Some(bytes) = host.property(&[LATE_HEADERS_FACT]) else {
            return Ok(Need::Nothing);
        };
        let headers: Vec<(String, Option<String>)> =
            serde_json::from_slice(&bytes).map_err(|e| {
                ErrorReply::internal(format!("bad {LATE_HEADERS_FACT} filter state: {e}"))
            })?;
        for (name, value) in &headers {
            host.set_request_header(name, value.as_deref());
        }
        Ok(Need::Nothing)
    }

    fn on_request_body(&mut self, _host: &dyn Host, _ex: &mut Exchange) -> Result<(), ErrorReply> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_wasm::types::Action;
    use sdk::host::MockHost;
    use sdk::pipeline::Pipeline;

    fn late() -> Vec<(String, Option<String>)> {
        vec![
            (
                ":path".into(),
                Some("/v1beta/models/g:generateContent".into()),
            ),
            ("authorization".into(), None),
        ]
    }

    #[test]
    fn writes_directly_when_the_host_allows() {
        let host = MockHost::with_request_headers(&[
            (":path", "/v1/chat/completions"),
            ("authorization", "x"),
        ]);
        apply(&host, &late());
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1beta/models/g:generateContent")
        );
        assert_eq!(host.request_header("authorization"), None);
        assert!(host.property(&[LATE_HEADERS_FACT]).is_none());
    }

    #[test]
    fn otherwise_the_companion_filter_applies_them() {
        let host = MockHost::with_request_headers(&[
            (":path", "/v1/chat/completions"),
            ("authorization", "x"),
        ]);
        host.request_headers_sealed.set(true);
        apply(&host, &late());
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1/chat/completions")
        );
        assert!(host.property(&[LATE_HEADERS_FACT]).is_some());
        // The next filter sees the headers after the body was buffered.
        host.request_headers_sealed.set(false);
        let (cfg, warnings) = ProxyHeaders::parse_config(b"").unwrap();
        assert!(warnings.is_empty());
        let mut p = Pipeline::new(ProxyHeaders::stages(&Rc::new(cfg)));
        assert_eq!(p.on_request_headers(&host, false), Action::Continue);
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1beta/models/g:generateContent")
        );
        assert_eq!(host.request_header("authorization"), None);
    }

    #[test]
    fn nothing_to_do_without_filter_state() {
        let host = MockHost::with_request_headers(&[(":path", "/p")]);
        let mut p = Pipeline::new(vec![Box::new(ApplyStage)]);
        assert_eq!(p.on_request_headers(&host, false), Action::Continue);
        assert_eq!(host.request_header(":path").as_deref(), Some("/p"));
    }
}
