//! The proxy-wasm shell: thin root and HTTP contexts that hand everything to a [`Pipeline`].

use crate::config::ConfigError;
use crate::host::{raw, Host, LogLevel, WasmHost, METRIC_FLUSH};
use crate::pipeline::{HeaderHold, Pipeline, Stage};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime};

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

/// Loads every example of a JSON array of `{"name", "config"}` through `P`'s config parser (tests
/// that replay documented configs). Returns how many loaded, or every failure with its name.
pub fn load_examples<P: Plugin>(examples: &str) -> Result<usize, Vec<String>> {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(examples).map_err(|e| vec![format!("not a JSON array: {e}")])?;
    let mut failures = Vec::new();
    for example in &list {
        let name = example["name"].as_str().unwrap_or("unnamed");
        let bytes = serde_json::to_vec(&example["config"]).unwrap_or_default();
        match P::parse_config(&bytes) {
            Ok(_) if example["config"].is_object() => {}
            Ok(_) => failures.push(format!("[{name}] config is not an object")),
            Err(e) => failures.push(format!("[{name}] {e}")),
        }
    }
    match (failures.is_empty(), list.len()) {
        (true, 0) => Err(vec!["no examples".into()]),
        (true, n) => Ok(n),
        (false, _) => Err(failures),
    }
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
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        let (name, loader) = ENTRY
            .with(|e| e.get())
            .unwrap_or(("ai-gateway", |_, _| Ok((Vec::new(), Vec::new()))));
        Box::new(Root {
            context_id,
            name: name.to_string(),
            loader,
            loaded: Vec::new(),
            probe: Rc::default(),
            plugin_tick: None,
            last_plugin_tick: None,
            tick: None,
        })
    });
}

struct Root {
    context_id: u32,
    name: String,
    loader: Loader,
    loaded: Vec<Box<dyn Loaded>>,
    probe: Rc<HoldProbe>,
    /// The plugins' own tick period, and when their tick last ran.
    plugin_tick: Option<Duration>,
    last_plugin_tick: Option<SystemTime>,
    /// The tick period set on the host.
    tick: Option<Duration>,
}

/// How often the root looks at requests whose headers wait for a body while the header hold is
/// not learnt yet.
const PROBE_TICK: Duration = Duration::from_millis(50);

/// Without the request-size attribute, how long a held request may see no body before the hold
/// is taken as unavailable.
const PROBE_GIVE_UP: Duration = Duration::from_secs(1);

/// Learns, per plugin config, whether the host delivers the body to a filter paused at its
/// request headers (see [`HeaderHold`]).
#[derive(Default)]
struct HoldProbe {
    state: Cell<HeaderHold>,
    waiting: RefCell<Vec<Waiting>>,
}

/// A request held at its headers while the hold is not learnt yet.
struct Waiting {
    context_id: u32,
    pipeline: Weak<RefCell<Pipeline>>,
    /// `request.total_size` when the headers were paused.
    size: Option<i64>,
    /// Body bytes Envoy had received by then (the total less the headers).
    body_before: i64,
    since: SystemTime,
}

/// Envoy's `request.total_size`: headers plus the body bytes Envoy has received so far.
fn request_size(host: &dyn Host) -> Option<i64> {
    let bytes = host.property(&["request", "total_size"])?;
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(i64::from_le_bytes(raw))
}

impl HoldProbe {
    /// A held request's first body callback: the hold works.
    fn body_arrived(&self) {
        if self.state.get() == HeaderHold::Unknown {
            self.state.set(HeaderHold::Works);
            self.waiting.borrow_mut().clear();
        }
    }

    /// Looks at the waiting requests; when body bytes reached Envoy but not the filter, the hold
    /// is unavailable and every waiting request is let go ahead of its body.
    fn check(&self, name: &str) {
        let host = WasmHost;
        let now = host.now();
        let mut waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        waiting.retain(|w| w.pipeline.strong_count() > 0);
        let stuck = waiting.iter().any(|w| {
            if raw::set_effective_context(w.context_id).is_err() {
                return false;
            }
            let waited = now.duration_since(w.since).unwrap_or_default();
            match (w.size, request_size(&host)) {
                // Body bytes reached Envoy (before or after the pause) and not the filter,
                // although a host that holds headers passes them on at once.
                (Some(before), Some(now_size)) => {
                    now_size > before || (w.body_before > 0 && waited >= PROBE_TICK / 2)
                }
                _ => waited >= PROBE_GIVE_UP,
            }
        });
        if !stuck {
            let mut kept = self.waiting.borrow_mut();
            waiting.append(&mut kept);
            *kept = waiting;
            return;
        }
        self.state.set(HeaderHold::Unavailable);
        host.log(
            LogLevel::Warn,
            &format!(
                "[{name}] Envoy does not pass the request body to a filter paused at its headers: \
                 set `allow_on_headers_stop_iteration: true` in this Wasm filter's config \
                 (Envoy >= 1.35). Until then request headers go on ahead of the body."
            ),
        );
        for w in waiting {
            let Some(pipeline) = w.pipeline.upgrade() else {
                continue;
            };
            if raw::set_effective_context(w.context_id).is_err() {
                continue;
            }
            if let Ok(mut p) = pipeline.try_borrow_mut() {
                p.release_held_headers(&host);
            };
        }
    }
}

impl Root {
    fn set_tick(&mut self, period: Option<Duration>) {
        if self.tick != period {
            raw::set_tick_period(period.unwrap_or_default());
            self.tick = period;
        }
    }

    /// The tick the root needs now: fast while the header hold is being learnt, and at least
    /// every [`METRIC_FLUSH`] for the metric updates the VM holds.
    fn wanted_tick(&self) -> Option<Duration> {
        let mut tick = self
            .plugin_tick
            .map_or(METRIC_FLUSH, |p| p.min(METRIC_FLUSH));
        if self.probe.state.get() == HeaderHold::Unknown {
            tick = tick.min(PROBE_TICK);
        }
        Some(tick)
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        // The VM may go with this root (a config reload): hand over what it holds.
        WasmHost.flush_metrics();
        true
    }

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
        let bytes = raw::buffer(BufferType::PluginConfiguration, 0, usize::MAX).unwrap_or_default();
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
                self.plugin_tick = loaded.iter().filter_map(|p| p.tick_period()).min();
                self.loaded = loaded;
                self.name = root_id;
                self.set_tick(self.wanted_tick());
                true
            }
            Err(e) => {
                host.log(LogLevel::Error, &format!("[{root_id}] {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        WasmHost.flush_metrics();
        if self.probe.state.get() == HeaderHold::Unknown {
            self.probe.check(&self.name);
            // Host calls from here on are the root's own again.
            let _ = raw::set_effective_context(self.context_id);
        }
        if let Some(period) = self.plugin_tick {
            let now = WasmHost.now();
            let due = self
                .last_plugin_tick
                .is_none_or(|last| now.duration_since(last).unwrap_or_default() >= period);
            if due {
                self.last_plugin_tick = Some(now);
                for plugin in &self.loaded {
                    plugin.on_tick(&WasmHost);
                }
            }
        }
        self.set_tick(self.wanted_tick());
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stages = self.loaded.iter().flat_map(|p| p.stages()).collect();
        Some(Box::new(Filter {
            context_id,
            pipeline: Rc::new(RefCell::new(Pipeline::new(stages))),
            probe: self.probe.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    context_id: u32,
    /// Shared with the root's probe while the request waits for the header hold to be learnt.
    pipeline: Rc<RefCell<Pipeline>>,
    probe: Rc<HoldProbe>,
}

impl Filter {
    /// Runs `f` on the pipeline (a re-entrant callback, which Envoy does not make, is let
    /// through untouched).
    fn with<R>(&self, otherwise: R, f: impl FnOnce(&mut Pipeline) -> R) -> R {
        match self.pipeline.try_borrow_mut() {
            Ok(mut p) => f(&mut p),
            Err(_) => otherwise,
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.with((), |p| {
            p.on_http_call_response(&WasmHost, token_id, body_size)
        });
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.with((), |p| {
            p.on_grpc_call_response(&WasmHost, token_id, status_code, response_size)
        });
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let hold = self.probe.state.get();
        let probing = hold == HeaderHold::Unknown;
        // The header size is needed only while the hold is being learnt.
        let (action, header_bytes) = self.with((Action::Continue, None), |p| {
            p.set_header_hold(hold);
            let action = p.on_request_headers(&WasmHost, end_of_stream);
            let bytes =
                (probing && p.holding_headers()).then(|| p.exchange().request_header_bytes());
            (action, bytes)
        });
        if let Some(header_bytes) = header_bytes {
            let size = request_size(&WasmHost);
            let headers = i64::try_from(header_bytes).unwrap_or(i64::MAX);
            self.probe.waiting.borrow_mut().push(Waiting {
                context_id: self.context_id,
                pipeline: Rc::downgrade(&self.pipeline),
                size,
                body_before: size.map_or(0, |s| s.saturating_sub(headers)),
                since: WasmHost.now(),
            });
        }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let probe = &self.probe;
        self.with(Action::Continue, |p| {
            if p.holding_headers() {
                probe.body_arrived();
            }
            p.on_request_body(&WasmHost, body_size, end_of_stream)
        })
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.with(Action::Continue, |p| {
            p.on_response_headers_end(&WasmHost, end_of_stream)
        })
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with(Action::Continue, |p| {
            p.on_response_body(&WasmHost, body_size, end_of_stream)
        })
    }

    fn on_log(&mut self) {
        self.with((), |p| p.on_log(&WasmHost));
    }
}
