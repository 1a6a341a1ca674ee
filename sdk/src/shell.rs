//! The proxy-wasm shell: thin root and HTTP contexts that hand everything to a [`Pipeline`].

use crate::config::ConfigError;
use crate::host::{Host, LogLevel, WasmHost};
use crate::pipeline::{Pipeline, Stage};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};
use std::rc::Rc;
use std::time::Duration;

/// What a plugin supplies to the shell.
pub trait Plugin: 'static {
    /// Parsed, validated configuration.
    type Config: 'static;
    /// Plugin name, used in logs.
    const NAME: &'static str;
    /// Parses the plugin configuration; returns it with warnings to log.
    fn parse_config(bytes: &[u8]) -> Result<(Self::Config, Vec<String>), ConfigError>;
    /// The stages one request runs through.
    fn stages(config: &Rc<Self::Config>) -> Vec<Box<dyn Stage>>;

    /// How often the root context wants [`Plugin::on_tick`] (none by default).
    fn tick_period(_config: &Self::Config) -> Option<Duration> {
        None
    }

    /// Background work on the root context (health checks, …).
    fn on_tick(_config: &Self::Config, _host: &dyn Host) {}

    /// The answer to a callout the root context made in [`Plugin::on_tick`].
    fn on_root_call_response(
        _config: &Self::Config,
        _host: &dyn Host,
        _token: u32,
        _body_size: usize,
    ) {
    }
}

/// Registers the plugin's root context; call from `proxy_wasm::main!`.
pub fn start<P: Plugin>() {
    crate::install_panic_hook(P::NAME);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root::<P> { config: None })
    });
}

struct Root<P: Plugin> {
    config: Option<Rc<P::Config>>,
}

impl<P: Plugin> Context for Root<P> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(config) = &self.config {
            P::on_root_call_response(config, &WasmHost, token_id, body_size);
        }
    }
}

impl<P: Plugin> RootContext for Root<P> {
    fn on_configure(&mut self, _size: usize) -> bool {
        let host = WasmHost;
        let bytes =
            proxy_wasm::hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
                .ok()
                .flatten()
                .unwrap_or_default();
        match P::parse_config(&bytes) {
            Ok((config, warnings)) => {
                for w in warnings {
                    host.log(LogLevel::Warn, &format!("[{}] {w}", P::NAME));
                }
                if let Some(period) = P::tick_period(&config) {
                    let _ = proxy_wasm::hostcalls::set_tick_period(period);
                }
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                host.log(LogLevel::Error, &format!("[{}] {e}", P::NAME));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stages = self.config.as_ref().map(P::stages).unwrap_or_default();
        Some(Box::new(Filter {
            pipeline: Pipeline::new(stages),
        }))
    }

    fn on_tick(&mut self) {
        if let Some(config) = &self.config {
            P::on_tick(config, &WasmHost);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    pipeline: Pipeline,
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.pipeline
            .on_http_call_response(&WasmHost, token_id, body_size);
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.pipeline.on_request_headers(&WasmHost, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.pipeline
            .on_request_body(&WasmHost, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.pipeline.on_response_headers(&WasmHost)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.pipeline
            .on_response_body(&WasmHost, body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        self.pipeline.on_log(&WasmHost);
    }
}
