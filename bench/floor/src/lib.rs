//! Floor filters for `make bench` (built to `target/bench/floor.wasm`, never shipped): what any
//! proxy-wasm filter costs, so the plugins' added CPU can be read as a multiple of it.
//!
//! * root id `noop`: an HTTP filter that does nothing.
//! * root id `parse`: pauses nothing, but reads every request body chunk, parses the whole
//!   request body as JSON (serde_json), and reads each response chunk.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
    proxy_wasm::set_root_context(|_| new_root());
}}

/// A plugin's root context; its root id, read at start, picks the floor.
pub fn new_root() -> Box<dyn RootContext> {
    Box::new(Root { parse: false })
}

/// The plugin root: which floor its root id asks for.
struct Root {
    parse: bool,
}

impl Root {
    fn read_root_id(&mut self) {
        self.parse = self
            .get_property(vec!["plugin_root_id"])
            .is_some_and(|id| id == b"parse");
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        self.read_root_id();
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        self.read_root_id();
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.parse {
            Some(Box::new(Parse::default()))
        } else {
            Some(Box::new(Noop))
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Does nothing: every callback is the SDK's default `Continue`.
struct Noop;

impl Context for Noop {}
impl HttpContext for Noop {}

/// Reads and parses; never pauses.
#[derive(Default)]
struct Parse {
    body: Vec<u8>,
}

impl Context for Parse {}

impl HttpContext for Parse {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Nothing is held back, so the buffer holds only this chunk: keep a copy of each.
        if let Some(chunk) = self.get_http_request_body(0, body_size) {
            self.body.extend_from_slice(&chunk);
        }
        if end_of_stream {
            let parsed = serde_json::from_slice::<serde_json::Value>(&self.body);
            std::hint::black_box(parsed.is_ok());
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        let chunk = self.get_http_response_body(0, body_size);
        std::hint::black_box(chunk.map_or(0, |c| c.len()));
        Action::Continue
    }
}
