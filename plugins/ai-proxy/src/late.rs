//! Request headers decided from the body (Gemini's model in the path, Bedrock's SigV4
//! signature, …).
//!
//! With `allow_on_headers_stop_iteration: true` in the Wasm filter's config (Envoy >= 1.35, and
//! Higress's Envoy), the pipeline holds the request headers until the body is read, and ai-proxy
//! sets these headers on the request itself. Where a host cannot hold them (Istio's `WasmPlugin`,
//! older Envoy), the `ai-proxy-headers` companion filter, placed after Envoy's buffer filter and
//! sharing ai-proxy's VM, applies them from filter state. Without either, such a request is
//! refused with an error naming the fix; it never goes out with a wrong path or no signature.

use sdk::config::ConfigError;
use sdk::error::ErrorReply;
use sdk::host::Host;
use sdk::pipeline::{BodyOutcome, Exchange, Need, Stage};
use sdk::shell::Plugin;
use std::cell::Cell;
use std::rc::Rc;

/// Filter-state key holding the headers still to apply.
pub use sdk::facts::UPSTREAM_HEADERS as LATE_HEADERS_FACT;

/// Root id of the companion filter.
pub const ROOT_ID: &str = "ai-proxy-headers";

thread_local! {
    /// Whether the companion filter was configured in this VM.
    static COMPANION: Cell<bool> = const { Cell::new(false) };
}

/// Whether the `ai-proxy-headers` filter runs in this VM (it shares ai-proxy's `vm_id`).
pub fn companion_loaded() -> bool {
    COMPANION.with(Cell::get)
}

/// The error for a provider whose headers depend on the body when nothing can apply them.
pub fn cannot_apply(kind: &str) -> ErrorReply {
    ErrorReply::new(
        500,
        "server_error",
        Some("gateway_misconfigured"),
        format!(
            "ai-proxy: provider type `{kind}` needs request headers decided from the body, and \
             this Envoy sends them before the body is read. Set \
             `allow_on_headers_stop_iteration: true` in the ai-proxy Wasm filter's config \
             (Envoy >= 1.35), or add the `ai-proxy-headers` filter after a buffer filter \
             (see the README)."
        ),
    )
}

/// Sets each header on the request while the pipeline holds the headers; otherwise leaves them
/// for the `ai-proxy-headers` filter, or refuses the request when that filter is not loaded.
pub fn apply(
    host: &dyn Host,
    ex: &mut Exchange,
    kind: &str,
    headers: &[(String, Option<String>)],
) -> Result<(), ErrorReply> {
    if headers.is_empty() {
        return Ok(());
    }
    if ex.request_headers_held()
        && headers
            .iter()
            .all(|(name, value)| ex.set_request_header(host, name, value.as_deref()))
    {
        return Ok(());
    }
    if !companion_loaded() {
        return Err(cannot_apply(kind));
    }
    let encoded = serde_json::to_vec(headers).unwrap_or_default();
    host.set_property(&[LATE_HEADERS_FACT], &encoded)
        .map_err(|e| ErrorReply::internal(format!("cannot hand headers to {ROOT_ID}: {e:?}")))
}

/// The companion filter: applies the headers ai-proxy left in filter state.
pub struct ProxyHeaders;

impl Plugin for ProxyHeaders {
    type Config = ();
    const NAME: &'static str = ROOT_ID;

    fn parse_config(bytes: &[u8]) -> Result<((), Vec<String>), ConfigError> {
        COMPANION.with(|c| c.set(true));
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

    fn on_request_body(
        &mut self,
        _host: &dyn Host,
        _ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        Ok(BodyOutcome::UNCHANGED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_wasm::types::Action;
    use sdk::host::MockHost;
    use sdk::pipeline::{HeaderHold, Pipeline};

    fn late() -> Vec<(String, Option<String>)> {
        vec![
            (
                ":path".into(),
                Some("/v1beta/models/g:generateContent".into()),
            ),
            ("authorization".into(), None),
        ]
    }

    /// Applies `late()` after reading the body, as ai-proxy does.
    struct Applies;

    impl Stage for Applies {
        fn name(&self) -> &'static str {
            "applies"
        }
        fn on_request_headers(
            &mut self,
            _: &dyn Host,
            _: &mut Exchange,
        ) -> Result<Need, ErrorReply> {
            Ok(Need::Body)
        }
        fn on_request_body(
            &mut self,
            host: &dyn Host,
            ex: &mut Exchange,
        ) -> Result<BodyOutcome, ErrorReply> {
            apply(host, ex, "gemini", &late()).map(|()| BodyOutcome::UNCHANGED)
        }
    }

    fn host() -> MockHost {
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("authorization", "x"),
        ]);
        *host.request_body.borrow_mut() = br#"{"model":"m","messages":[]}"#.to_vec();
        host
    }

    fn run(host: &MockHost, hold: HeaderHold) -> (Action, Action) {
        let mut p = Pipeline::new(vec![Box::new(Applies)]);
        p.set_header_hold(hold);
        let headers = p.on_request_headers(host, false);
        let size = host.request_body.borrow().len();
        (headers, p.on_request_body(host, size, true))
    }

    #[test]
    fn writes_directly_while_headers_are_held() {
        let host = host();
        assert_eq!(
            run(&host, HeaderHold::Works),
            (Action::Pause, Action::Continue)
        );
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1beta/models/g:generateContent")
        );
        assert_eq!(host.request_header("authorization"), None);
        assert!(host.property(&[LATE_HEADERS_FACT]).is_none());
    }

    #[test]
    fn otherwise_the_companion_filter_applies_them() {
        let (cfg, warnings) = ProxyHeaders::parse_config(b"").unwrap();
        assert!(warnings.is_empty() && companion_loaded());
        let host = host();
        assert_eq!(
            run(&host, HeaderHold::Unavailable),
            (Action::Continue, Action::Continue)
        );
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1/chat/completions")
        );
        assert!(host.property(&[LATE_HEADERS_FACT]).is_some());
        // The companion, after the buffer filter, sees the headers once the body is in.
        let mut p = Pipeline::new(ProxyHeaders::stages(&Rc::new(cfg)));
        assert_eq!(p.on_request_headers(&host, false), Action::Continue);
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1beta/models/g:generateContent")
        );
        assert_eq!(host.request_header("authorization"), None);
    }

    #[test]
    fn without_either_the_request_is_refused() {
        assert!(!companion_loaded());
        let host = host();
        run(&host, HeaderHold::Unavailable);
        let reply = host.local_reply().unwrap();
        assert_eq!(reply.status, 500);
        let text = String::from_utf8_lossy(&reply.body);
        assert!(text.contains("allow_on_headers_stop_iteration"), "{text}");
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1/chat/completions")
        );
    }

    #[test]
    fn nothing_to_do_without_filter_state() {
        let host = MockHost::with_request_headers(&[(":path", "/p")]);
        let mut p = Pipeline::new(vec![Box::new(ApplyStage)]);
        assert_eq!(p.on_request_headers(&host, false), Action::Continue);
        assert_eq!(host.request_header(":path").as_deref(), Some("/p"));
    }
}
