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

/// A plugin with its parsed config, behind one object-safe interface (so one `.wasm` can carry
/// several plugins).
pub trait Loaded {
    /// The stages of one request.
    fn stages(&self) -> Vec<Box<dyn Stage>>;
    /// Wanted tick period.
    fn tick_period(&self) -> Option<Duration>;
    /// Root tick.
    fn on_tick(&self, host: &dyn Host);
    /// Answer to a root callout.
    fn on_root_call_response(&self, host: &dyn Host, token: u32, body_size: usize);
}

struct LoadedPlugin<P: Plugin>(Rc<P::Config>);

impl<P: Plugin> Loaded for LoadedPlugin<P> {
    fn stages(&self) -> Vec<Box<dyn Stage>> {
        P::stages(&self.0)
    }
    fn tick_period(&self) -> Option<Duration> {
        P::tick_period(&self.0)
    }
    fn on_tick(&self, host: &dyn Host) {
        P::on_tick(&self.0, host)
    }
    fn on_root_call_response(&self, host: &dyn Host, token: u32, body_size: usize) {
        P::on_root_call_response(&self.0, host, token, body_size)
    }
}

/// Parses `bytes` as `P`'s configuration.
pub fn load<P: Plugin>(bytes: &[u8]) -> Result<(Box<dyn Loaded>, Vec<String>), ConfigError> {
    let (config, warnings) = P::parse_config(bytes)?;
    Ok((Box::new(LoadedPlugin::<P>(Rc::new(config))), warnings))
}

/// The plugins a root context runs, with config warnings to log.
pub type LoadResult = Result<(Vec<Box<dyn Loaded>>, Vec<String>), ConfigError>;

/// Builds what a root context runs from its `root_id` and configuration bytes.
pub type Loader = fn(&str, &[u8]) -> LoadResult;

/// Registers the plugin's root context; call from `proxy_wasm::main!`.
pub fn start<P: Plugin>() {
    start_with(P::NAME, |_, bytes| {
        load::<P>(bytes).map(|(l, w)| (vec![l], w))
    });
}

thread_local! {
    /// The module's entry: its name and loader (set once by `start_with`).
    static ENTRY: std::cell::Cell<Option<(&'static str, Loader)>> = const { std::cell::Cell::new(None) };
}

/// Registers a root context whose plugins `loader` chooses (the bundle's entry point).
pub fn start_with(name: &'static str, loader: Loader) {
    crate::install_panic_hook(name);
    ENTRY.with(|e| e.set(Some((name, loader))));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        let (name, loader) = ENTRY
            .with(|e| e.get())
            .unwrap_or(("ai-gateway", |_, _| Ok((Vec::new(), Vec::new()))));
        Box::new(Root {
            name: name.to_string(),
            loader,
            loaded: Vec::new(),
        })
    });
}

struct Root {
    name: String,
    loader: Loader,
    loaded: Vec<Box<dyn Loaded>>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        for plugin in &self.loaded {
            plugin.on_root_call_response(&WasmHost, token_id, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let host = WasmHost;
        let bytes =
            proxy_wasm::hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
                .ok()
                .flatten()
                .unwrap_or_default();
        let root_id = host
            .property(&["plugin_root_id"])
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| self.name.clone());
        match (self.loader)(&root_id, &bytes) {
            Ok((loaded, warnings)) => {
                for w in warnings {
                    host.log(LogLevel::Warn, &format!("[{root_id}] {w}"));
                }
                if let Some(period) = loaded.iter().filter_map(|p| p.tick_period()).min() {
                    let _ = proxy_wasm::hostcalls::set_tick_period(period);
                }
                self.loaded = loaded;
                self.name = root_id;
                true
            }
            Err(e) => {
                host.log(LogLevel::Error, &format!("[{root_id}] {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        for plugin in &self.loaded {
            plugin.on_tick(&WasmHost);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stages = self.loaded.iter().flat_map(|p| p.stages()).collect();
        Some(Box::new(Filter {
            pipeline: Pipeline::new(stages),
        }))
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

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.pipeline
            .on_grpc_call_response(&WasmHost, token_id, status_code, response_size);
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
