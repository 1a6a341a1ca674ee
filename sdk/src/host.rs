//! The seam between plugin logic and the proxy-wasm host.
//!
//! Plugin cores talk to [`Host`], never to `proxy_wasm::hostcalls` directly: [`WasmHost`] is the
//! real adapter (every host error becomes a value, nothing unwraps) and [`MockHost`] records
//! calls for native tests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

pub use proxy_wasm::types::{LogLevel, MetricType, Status};

/// Host calls a plugin uses, over the current HTTP stream's context.
pub trait Host {
    /// One request header (lowercase name).
    fn request_header(&self, name: &str) -> Option<String>;
    /// All request headers, pseudo-headers included.
    fn request_headers(&self) -> Vec<(String, String)>;
    /// Sets (`Some`) or removes (`None`) a request header; false when the host refused (stock
    /// Envoy has no request headers to change once the header callback returned).
    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool;
    /// Replaces all request headers (pseudo-headers included) in one call; false when the host
    /// refused.
    fn set_request_headers(&self, headers: &[(String, String)]) -> bool;
    /// One response header (lowercase name).
    fn response_header(&self, name: &str) -> Option<String>;
    /// All response headers, `:status` included.
    fn response_headers(&self) -> Vec<(String, String)>;
    /// Sets (`Some`) or removes (`None`) a response header.
    fn set_response_header(&self, name: &str, value: Option<&str>);
    /// Replaces all response headers in one call.
    fn set_response_headers(&self, headers: &[(String, String)]);
    /// `size` bytes of the buffered request body from `start`.
    fn request_body(&self, start: usize, size: usize) -> Option<Vec<u8>>;
    /// Replaces `size` bytes of the request body at `start` with `value`.
    fn set_request_body(&self, start: usize, size: usize, value: &[u8]) -> Result<(), Status>;
    /// `size` bytes of the response body chunk from `start`.
    fn response_body(&self, start: usize, size: usize) -> Option<Vec<u8>>;
    /// Replaces `size` bytes of the response body chunk at `start` with `value`.
    fn set_response_body(&self, start: usize, size: usize, value: &[u8]) -> Result<(), Status>;
    /// An Envoy attribute, e.g. `["xds", "route_name"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Writes a filter-state property.
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status>;
    /// Shared data (per VM id, across workers) and its CAS token.
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes shared data; with `cas` the write fails with `CasMismatch` if the value changed.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
    /// Defines (or finds) a metric and returns its id.
    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status>;
    /// Adds `offset` to a counter or gauge.
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status>;
    /// Records a value into a histogram or sets a gauge.
    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status>;
    /// Hands the counter increments and histogram values held in the VM to the host (the root
    /// context calls it on its tick; see [`MetricBuffer`]).
    fn flush_metrics(&self) {}
    /// Sends an HTTP request to an Envoy cluster; the answer arrives in `on_http_call_response`.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Status>;
    /// Sends a unary gRPC request to an Envoy cluster (HTTP/2); the answer arrives in
    /// `on_grpc_call_response`.
    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, Status>;
    /// The message of the gRPC answer being delivered.
    fn grpc_call_response_body(&self, size: usize) -> Option<Vec<u8>>;
    /// A header of the answer to the callout being delivered (`:status` included).
    fn http_call_response_header(&self, name: &str) -> Option<String>;
    /// The body of the answer to the callout being delivered.
    fn http_call_response_body(&self, size: usize) -> Option<Vec<u8>>;
    /// Answers the client directly; the upstream is not (or no longer) called.
    fn send_http_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Resumes a paused request.
    fn resume_request(&self);
    /// Resumes a paused response.
    fn resume_response(&self);
    /// Wall-clock time.
    fn now(&self) -> SystemTime;
    /// Writes to Envoy's log.
    fn log(&self, level: LogLevel, message: &str);
}

/// The real host: a thin adapter over `proxy_wasm::hostcalls`.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmHost;

/// The proxy-wasm ABI called directly, every status returned as a value: the SDK's `hostcalls`
/// panic on any status they do not expect (a body replaced in the middle, a property Envoy
/// refuses, a header value that is not UTF-8), and a panic kills the worker's VM. Only the
/// callouts go through the SDK, whose dispatcher must learn their tokens.
#[allow(unsafe_code)]
pub(crate) mod raw {
    use super::Status;
    use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
    use std::ptr::{null, null_mut};

    #[link(wasm_import_module = "env")]
    extern "C" {
        #[link_name = "proxy_get_header_map_value"]
        fn get_value(map: MapType, k: *const u8, ks: usize, v: *mut *mut u8, vs: *mut usize)
            -> u32;
        #[link_name = "proxy_get_header_map_pairs"]
        fn get_pairs(map: MapType, v: *mut *mut u8, vs: *mut usize) -> u32;
        #[link_name = "proxy_replace_header_map_value"]
        fn replace(map: MapType, k: *const u8, ks: usize, v: *const u8, vs: usize) -> u32;
        #[link_name = "proxy_remove_header_map_value"]
        fn remove(map: MapType, k: *const u8, ks: usize) -> u32;
        #[link_name = "proxy_set_header_map_pairs"]
        fn set_pairs(map: MapType, v: *const u8, vs: usize) -> u32;
        fn proxy_get_buffer_bytes(
            kind: BufferType,
            start: usize,
            max: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        fn proxy_set_buffer_bytes(
            kind: BufferType,
            start: usize,
            size: usize,
            data: *const u8,
            data_size: usize,
        ) -> u32;
        fn proxy_get_property(p: *const u8, ps: usize, v: *mut *mut u8, vs: *mut usize) -> u32;
        fn proxy_set_property(p: *const u8, ps: usize, v: *const u8, vs: usize) -> u32;
        fn proxy_get_shared_data(
            k: *const u8,
            ks: usize,
            v: *mut *mut u8,
            vs: *mut usize,
            cas: *mut u32,
        ) -> u32;
        fn proxy_set_shared_data(k: *const u8, ks: usize, v: *const u8, vs: usize, cas: u32)
            -> u32;
        fn proxy_define_metric(kind: MetricType, n: *const u8, ns: usize, id: *mut u32) -> u32;
        fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        fn proxy_record_metric(id: u32, value: u64) -> u32;
        fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_continue_stream(stream: u32) -> u32;
        fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        fn proxy_log(level: LogLevel, m: *const u8, ms: usize) -> u32;
        fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        fn proxy_set_effective_context(context_id: u32) -> u32;
    }

    /// A host status as a result.
    fn status(code: u32) -> Result<(), Status> {
        match code {
            0 => Ok(()),
            1 => Err(Status::NotFound),
            2 => Err(Status::BadArgument),
            3 => Err(Status::SerializationFailure),
            4 => Err(Status::ParseFailure),
            7 => Err(Status::Empty),
            8 => Err(Status::CasMismatch),
            _ => Err(Status::InternalFailure),
        }
    }

    /// Takes ownership of a host-allocated buffer (allocated through the SDK's
    /// `proxy_on_memory_allocate`, i.e. this module's global allocator).
    unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() {
            Vec::new()
        } else {
            Vec::from_raw_parts(data, size, size)
        }
    }

    /// Bytes the host returned, when it returned any.
    fn bytes(code: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
        // SAFETY: the host writes a buffer it allocated with our allocator, or nothing.
        let owned = unsafe { take(data, size) };
        (code == 0 && !data.is_null()).then_some(owned)
    }

    pub fn header(map: MapType, name: &str) -> Option<String> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: pointers and lengths of live values.
        let code = unsafe { get_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
        let found = bytes(code, data, size);
        found.map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn headers(map: MapType) -> Vec<(String, String)> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: as in `header`.
        let code = unsafe { get_pairs(map, &mut data, &mut size) };
        bytes(code, data, size).map_or_else(Vec::new, |b| super::decode_pairs(&b))
    }

    pub fn set_header(map: MapType, name: &str, value: Option<&str>) -> bool {
        // SAFETY: pointers and lengths of live slices.
        let code = unsafe {
            match value {
                Some(v) => replace(map, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
                None => remove(map, name.as_ptr(), name.len()),
            }
        };
        code == 0
    }

    pub fn set_headers(map: MapType, headers: &[(String, String)]) -> bool {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let bytes = super::encode_pairs(&pairs);
        // SAFETY: pointer and length of a live buffer.
        unsafe { set_pairs(map, bytes.as_ptr(), bytes.len()) == 0 }
    }

    pub fn buffer(kind: BufferType, start: usize, max: usize) -> Option<Vec<u8>> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: as in `header`.
        let code = unsafe { proxy_get_buffer_bytes(kind, start, max, &mut data, &mut size) };
        bytes(code, data, size)
    }

    pub fn set_buffer(
        kind: BufferType,
        start: usize,
        size: usize,
        value: &[u8],
    ) -> Result<(), Status> {
        // SAFETY: pointer and length of a live slice.
        status(unsafe { proxy_set_buffer_bytes(kind, start, size, value.as_ptr(), value.len()) })
    }

    /// A property path as the ABI takes it: the segments joined by NUL.
    fn path_bytes(path: &[&str]) -> Vec<u8> {
        path.join("\0").into_bytes()
    }

    pub fn property(path: &[&str]) -> Option<Vec<u8>> {
        let path = path_bytes(path);
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: as in `header`.
        let code = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
        bytes(code, data, size)
    }

    pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), Status> {
        let path = path_bytes(path);
        // SAFETY: pointers and lengths of live slices.
        status(unsafe {
            proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
        })
    }

    pub fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let (mut data, mut size, mut cas) = (null_mut(), 0, 0);
        // SAFETY: as in `header`.
        let code = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        let value = bytes(code, data, size);
        let cas = (code == 0 && cas != 0).then_some(cas);
        (value, cas)
    }

    pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        // SAFETY: pointers and lengths of live slices.
        status(unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        })
    }

    pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
        let mut id = 0;
        // SAFETY: pointer and length of a live string; `id` outlives the call.
        status(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_increment_metric(id, offset) })
    }

    pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_record_metric(id, value) })
    }

    pub fn send_local_response(code: u32, headers: &[(&str, &str)], body: &[u8]) {
        let headers = super::encode_pairs(headers);
        // SAFETY: pointers and lengths of live slices; -1: no gRPC status.
        let _ = unsafe {
            proxy_send_local_response(
                code,
                null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        };
    }

    /// Resumes the request (0) or the response (1) of the current HTTP context.
    pub fn continue_stream(stream: u32) {
        // SAFETY: no pointers.
        let _ = unsafe { proxy_continue_stream(stream) };
    }

    pub fn now_nanos() -> Option<u64> {
        let mut t = 0;
        // SAFETY: `t` outlives the call.
        status(unsafe { proxy_get_current_time_nanoseconds(&mut t) }).ok()?;
        Some(t)
    }

    pub fn log(level: LogLevel, message: &str) {
        // SAFETY: pointer and length of a live string.
        let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
    }

    /// Sets the calling root context's tick period (0 stops it).
    pub fn set_tick_period(period: std::time::Duration) {
        let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: no pointers.
        let _ = unsafe { proxy_set_tick_period_milliseconds(millis) };
    }

    /// Makes later host calls act on `context_id` (until the callback returns).
    pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_set_effective_context(context_id) })
    }
}

/// Encodes header pairs for the ABI: count, sizes, then NUL-terminated names and values.
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes the proxy-wasm header-pairs encoding (count, sizes, then NUL-terminated strings);
/// malformed input yields the pairs read so far.
pub fn decode_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(count) = word(0) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(count.min(256));
    let mut p = 4usize.saturating_add(count.saturating_mul(8));
    for n in 0..count {
        let (Some(ks), Some(vs)) = (word(4 + n * 8), word(8 + n * 8)) else {
            break;
        };
        let (Some(k), Some(v)) = (bytes.get(p..p + ks), bytes.get(p + ks + 1..p + ks + 1 + vs))
        else {
            break;
        };
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
        p += ks + vs + 2;
    }
    out
}

mod wasm {
    use super::*;
    use proxy_wasm::hostcalls as hc;
    use proxy_wasm::types::{BufferType, MapType};

    thread_local! {
        /// The VM's metric updates not handed to the host yet.
        static METRICS: RefCell<MetricBuffer> = RefCell::new(MetricBuffer::default());
    }

    impl Host for WasmHost {
        fn request_header(&self, name: &str) -> Option<String> {
            raw::header(MapType::HttpRequestHeaders, name)
        }
        fn request_headers(&self) -> Vec<(String, String)> {
            raw::headers(MapType::HttpRequestHeaders)
        }
        fn set_request_header(&self, name: &str, value: Option<&str>) -> bool {
            raw::set_header(MapType::HttpRequestHeaders, name, value)
        }
        fn set_request_headers(&self, headers: &[(String, String)]) -> bool {
            raw::set_headers(MapType::HttpRequestHeaders, headers)
        }
        fn response_header(&self, name: &str) -> Option<String> {
            raw::header(MapType::HttpResponseHeaders, name)
        }
        fn response_headers(&self) -> Vec<(String, String)> {
            raw::headers(MapType::HttpResponseHeaders)
        }
        fn set_response_header(&self, name: &str, value: Option<&str>) {
            raw::set_header(MapType::HttpResponseHeaders, name, value);
        }
        fn set_response_headers(&self, headers: &[(String, String)]) {
            raw::set_headers(MapType::HttpResponseHeaders, headers);
        }
        fn request_body(&self, start: usize, size: usize) -> Option<Vec<u8>> {
            raw::buffer(BufferType::HttpRequestBody, start, size)
        }
        fn set_request_body(&self, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
            raw::set_buffer(BufferType::HttpRequestBody, start, size, value)
        }
        fn response_body(&self, start: usize, size: usize) -> Option<Vec<u8>> {
            raw::buffer(BufferType::HttpResponseBody, start, size)
        }
        fn set_response_body(&self, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
            raw::set_buffer(BufferType::HttpResponseBody, start, size, value)
        }
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            raw::property(path)
        }
        fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status> {
            raw::set_property(path, value)
        }
        fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            raw::shared_data(key)
        }
        fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
            raw::set_shared_data(key, value, cas)
        }
        fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
            let id = raw::define_metric(kind, name)?;
            METRICS.with(|m| m.borrow_mut().defined(id, kind));
            Ok(id)
        }
        fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
            match METRICS.with(|m| m.borrow_mut().add(id, offset)) {
                Held::No => raw::increment_metric(id, offset),
                Held::Yes => Ok(()),
                Held::Full => {
                    self.flush_metrics();
                    Ok(())
                }
            }
        }
        fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
            match METRICS.with(|m| m.borrow_mut().record(id, value)) {
                Held::No => raw::record_metric(id, value),
                Held::Yes => Ok(()),
                Held::Full => {
                    self.flush_metrics();
                    Ok(())
                }
            }
        }
        fn flush_metrics(&self) {
            METRICS
                .with(|m| m.borrow_mut().take())
                .apply(raw::increment_metric, raw::record_metric);
        }
        fn dispatch_http_call(
            &self,
            cluster: &str,
            headers: &[(&str, &str)],
            body: Option<&[u8]>,
            timeout: Duration,
        ) -> Result<u32, Status> {
            hc::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
        }
        fn dispatch_grpc_call(
            &self,
            cluster: &str,
            service: &str,
            method: &str,
            message: &[u8],
            timeout: Duration,
        ) -> Result<u32, Status> {
            hc::dispatch_grpc_call(cluster, service, method, vec![], Some(message), timeout)
        }
        fn grpc_call_response_body(&self, size: usize) -> Option<Vec<u8>> {
            raw::buffer(BufferType::GrpcReceiveBuffer, 0, size)
        }
        fn http_call_response_header(&self, name: &str) -> Option<String> {
            raw::header(MapType::HttpCallResponseHeaders, name)
        }
        fn http_call_response_body(&self, size: usize) -> Option<Vec<u8>> {
            raw::buffer(BufferType::HttpCallResponseBody, 0, size)
        }
        fn send_http_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
            raw::send_local_response(status, headers, body);
        }
        fn resume_request(&self) {
            raw::continue_stream(0);
        }
        fn resume_response(&self) {
            raw::continue_stream(1);
        }
        fn now(&self) -> SystemTime {
            raw::now_nanos().map_or(SystemTime::UNIX_EPOCH, |n| {
                SystemTime::UNIX_EPOCH + Duration::from_nanos(n)
            })
        }
        fn log(&self, level: LogLevel, message: &str) {
            raw::log(level, message);
        }
    }
}

/// Counter increments and histogram values held in the VM between flushes: a request's dozen
/// metric updates cost no host call of their own; the root context's tick (every
/// [`METRIC_FLUSH`]) hands each counter's sum and each histogram value to the host. Gauges and
/// metrics the buffer did not see defined go to the host at once.
#[derive(Debug, Default)]
pub struct MetricBuffer {
    kinds: HashMap<u32, MetricType>,
    counters: Vec<(u32, i64)>,
    samples: Vec<(u32, u64)>,
}

/// How often held metric updates reach the host: the lag of a counter in `/stats`.
pub const METRIC_FLUSH: Duration = Duration::from_millis(100);

/// Updates held before the buffer flushes on its own (bounds its memory without a tick).
const METRIC_HOLD_MAX: usize = 1024;

/// Whether [`MetricBuffer`] held an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Not a buffered metric: send it to the host now.
    No,
    /// Held.
    Yes,
    /// Held, and the buffer is full: flush it.
    Full,
}

impl MetricBuffer {
    /// Remembers a metric's kind.
    pub fn defined(&mut self, id: u32, kind: MetricType) {
        self.kinds.insert(id, kind);
    }

    /// Holds a counter increment.
    pub fn add(&mut self, id: u32, offset: i64) -> Held {
        if self.kinds.get(&id) != Some(&MetricType::Counter) {
            return Held::No;
        }
        match self.counters.iter_mut().find(|(i, _)| *i == id) {
            Some((_, sum)) => *sum = sum.saturating_add(offset),
            None => self.counters.push((id, offset)),
        }
        self.held()
    }

    /// Holds a histogram value.
    pub fn record(&mut self, id: u32, value: u64) -> Held {
        if self.kinds.get(&id) != Some(&MetricType::Histogram) {
            return Held::No;
        }
        self.samples.push((id, value));
        self.held()
    }

    fn held(&self) -> Held {
        if self.counters.len() + self.samples.len() >= METRIC_HOLD_MAX {
            Held::Full
        } else {
            Held::Yes
        }
    }

    /// The held updates, leaving the buffer empty.
    pub fn take(&mut self) -> HeldMetrics {
        HeldMetrics {
            counters: std::mem::take(&mut self.counters),
            samples: std::mem::take(&mut self.samples),
        }
    }
}

/// What a [`MetricBuffer`] held.
#[derive(Debug, Default)]
pub struct HeldMetrics {
    /// Each counter's summed increments.
    pub counters: Vec<(u32, i64)>,
    /// Histogram values, in order.
    pub samples: Vec<(u32, u64)>,
}

impl HeldMetrics {
    /// Hands the updates to a host's metric calls.
    pub fn apply(
        self,
        mut increment: impl FnMut(u32, i64) -> Result<(), Status>,
        mut record: impl FnMut(u32, u64) -> Result<(), Status>,
    ) {
        for (id, offset) in self.counters {
            let _ = increment(id, offset);
        }
        for (id, value) in self.samples {
            let _ = record(id, value);
        }
    }
}

/// A local reply captured by [`MockHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u32,
    /// Reply headers.
    pub headers: Vec<(String, String)>,
    /// Reply body.
    pub body: Vec<u8>,
}

/// An HTTP callout captured by [`MockHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// Target cluster.
    pub cluster: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Option<Vec<u8>>,
}

/// An in-memory host for native tests: set the inputs, run the core, inspect what it did.
#[derive(Debug, Default)]
pub struct MockHost {
    /// Request headers, in order.
    pub request_headers: RefCell<Vec<(String, String)>>,
    /// Response headers, in order.
    pub response_headers: RefCell<Vec<(String, String)>>,
    /// Buffered request body.
    pub request_body: RefCell<Vec<u8>>,
    /// Current response body chunk.
    pub response_body: RefCell<Vec<u8>>,
    /// Properties keyed by their path joined with `.`.
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    /// Shared data with CAS tokens.
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Metrics by name: (kind, value).
    pub metrics: RefCell<Vec<(String, MetricType, i64)>>,
    /// HTTP callouts made.
    pub callouts: RefCell<Vec<Callout>>,
    /// The local reply, if one was sent.
    pub reply: RefCell<Option<LocalReply>>,
    /// Headers of the callout answer being delivered.
    pub call_response_headers: RefCell<Vec<(String, String)>>,
    /// Body of the callout answer being delivered.
    pub call_response_body: RefCell<Vec<u8>>,
    /// Log lines.
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    /// Resume calls: (request, response).
    pub resumed: RefCell<(u32, u32)>,
    /// Clock, seconds since the epoch.
    pub clock: RefCell<Duration>,
    /// When set, request headers can no longer change (stock Envoy after the header callback).
    pub request_headers_sealed: std::cell::Cell<bool>,
    /// Host calls made, by [`Host`] method name (each is one wasm↔host crossing in Envoy).
    pub calls: RefCell<std::collections::BTreeMap<&'static str, u64>>,
    /// When set, metric updates are held as [`WasmHost`] holds them until
    /// [`Host::flush_metrics`].
    pub metric_buffer: RefCell<Option<MetricBuffer>>,
}

fn find(list: &[(String, String)], name: &str) -> Option<String> {
    list.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn put(list: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    list.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    if let Some(v) = value {
        list.push((name.to_ascii_lowercase(), v.to_string()));
    }
}

/// Envoy's rule for replacing buffered body bytes: from the start (drop `size` bytes, put
/// `value` first) or at the end (append); anything in between is refused.
fn splice(buf: &mut Vec<u8>, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    if start == 0 {
        let end = size.min(buf.len());
        buf.splice(..end, value.iter().copied());
        Ok(())
    } else if start >= buf.len() {
        buf.extend_from_slice(value);
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

fn slice(buf: &[u8], start: usize, size: usize) -> Option<Vec<u8>> {
    if buf.is_empty() || start >= buf.len() {
        return None;
    }
    let end = start.saturating_add(size).min(buf.len());
    Some(buf[start..end].to_vec())
}

impl MockHost {
    /// A mock whose request has these headers.
    pub fn with_request_headers(headers: &[(&str, &str)]) -> MockHost {
        let host = MockHost::default();
        *host.request_headers.borrow_mut() = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        host
    }

    /// Sets a property value (path joined with `.`).
    pub fn set_prop(&self, path: &str, value: &str) {
        self.properties
            .borrow_mut()
            .insert(path.to_string(), value.as_bytes().to_vec());
    }

    /// The local reply sent, if any.
    pub fn local_reply(&self) -> Option<LocalReply> {
        self.reply.borrow().clone()
    }

    /// Total host calls made so far.
    pub fn host_calls(&self) -> u64 {
        self.calls.borrow().values().sum()
    }

    /// Host calls made so far by method, sorted by name.
    pub fn host_call_counts(&self) -> Vec<(&'static str, u64)> {
        self.calls.borrow().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Forgets the host calls counted so far.
    pub fn reset_host_calls(&self) {
        self.calls.borrow_mut().clear();
    }

    fn apply_increment(&self, id: u32, offset: i64) -> Result<(), Status> {
        self.tally("increment_metric");
        let mut metrics = self.metrics.borrow_mut();
        let m = metrics.get_mut(id as usize).ok_or(Status::NotFound)?;
        m.2 += offset;
        Ok(())
    }

    fn apply_record(&self, id: u32, value: u64) -> Result<(), Status> {
        self.tally("record_metric");
        let mut metrics = self.metrics.borrow_mut();
        let m = metrics.get_mut(id as usize).ok_or(Status::NotFound)?;
        m.2 = i64::try_from(value).unwrap_or(i64::MAX);
        Ok(())
    }

    fn tally(&self, method: &'static str) {
        *self.calls.borrow_mut().entry(method).or_insert(0) += 1;
    }

    /// Value of a metric by name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
    }
}

impl Host for MockHost {
    fn request_header(&self, name: &str) -> Option<String> {
        self.tally("request_header");
        find(&self.request_headers.borrow(), name)
    }
    fn request_headers(&self) -> Vec<(String, String)> {
        self.tally("request_headers");
        self.request_headers.borrow().clone()
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool {
        self.tally("set_request_header");
        if self.request_headers_sealed.get() {
            return false;
        }
        put(&mut self.request_headers.borrow_mut(), name, value);
        true
    }
    fn set_request_headers(&self, headers: &[(String, String)]) -> bool {
        self.tally("set_request_headers");
        if self.request_headers_sealed.get() {
            return false;
        }
        *self.request_headers.borrow_mut() = headers.to_vec();
        true
    }
    fn response_header(&self, name: &str) -> Option<String> {
        self.tally("response_header");
        find(&self.response_headers.borrow(), name)
    }
    fn response_headers(&self) -> Vec<(String, String)> {
        self.tally("response_headers");
        self.response_headers.borrow().clone()
    }
    fn set_response_header(&self, name: &str, value: Option<&str>) {
        self.tally("set_response_header");
        put(&mut self.response_headers.borrow_mut(), name, value);
    }
    fn set_response_headers(&self, headers: &[(String, String)]) {
        self.tally("set_response_headers");
        *self.response_headers.borrow_mut() = headers.to_vec();
    }
    fn request_body(&self, start: usize, size: usize) -> Option<Vec<u8>> {
        self.tally("request_body");
        slice(&self.request_body.borrow(), start, size)
    }
    fn set_request_body(&self, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
        self.tally("set_request_body");
        splice(&mut self.request_body.borrow_mut(), start, size, value)
    }
    fn response_body(&self, start: usize, size: usize) -> Option<Vec<u8>> {
        self.tally("response_body");
        slice(&self.response_body.borrow(), start, size)
    }
    fn set_response_body(&self, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
        self.tally("set_response_body");
        splice(&mut self.response_body.borrow_mut(), start, size, value)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.tally("property");
        self.properties.borrow().get(&path.join(".")).cloned()
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status> {
        self.tally("set_property");
        self.properties
            .borrow_mut()
            .insert(path.join("."), value.to_vec());
        Ok(())
    }
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.tally("shared_data");
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        self.tally("set_shared_data");
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return Err(Status::CasMismatch);
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        shared.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        self.tally("define_metric");
        let mut metrics = self.metrics.borrow_mut();
        let id = match metrics.iter().position(|(n, _, _)| n == name) {
            Some(i) => i as u32,
            None => {
                metrics.push((name.to_string(), kind, 0));
                (metrics.len() - 1) as u32
            }
        };
        if let Some(buffer) = self.metric_buffer.borrow_mut().as_mut() {
            buffer.defined(id, kind);
        }
        Ok(id)
    }
    fn flush_metrics(&self) {
        let held = self
            .metric_buffer
            .borrow_mut()
            .as_mut()
            .map(MetricBuffer::take);
        if let Some(held) = held {
            held.apply(
                |id, offset| self.apply_increment(id, offset),
                |id, value| self.apply_record(id, value),
            );
        }
    }
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        let held = self
            .metric_buffer
            .borrow_mut()
            .as_mut()
            .map(|b| b.add(id, offset));
        match held {
            Some(Held::Yes) => Ok(()),
            Some(Held::Full) => {
                self.flush_metrics();
                Ok(())
            }
            _ => self.apply_increment(id, offset),
        }
    }
    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        let held = self
            .metric_buffer
            .borrow_mut()
            .as_mut()
            .map(|b| b.record(id, value));
        match held {
            Some(Held::Yes) => Ok(()),
            Some(Held::Full) => {
                self.flush_metrics();
                Ok(())
            }
            _ => self.apply_record(id, value),
        }
    }
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, Status> {
        self.tally("dispatch_http_call");
        let mut calls = self.callouts.borrow_mut();
        calls.push(Callout {
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
        });
        Ok(calls.len() as u32)
    }
    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        _timeout: Duration,
    ) -> Result<u32, Status> {
        self.tally("dispatch_grpc_call");
        let mut calls = self.callouts.borrow_mut();
        calls.push(Callout {
            cluster: cluster.to_string(),
            headers: vec![(":path".to_string(), format!("/{service}/{method}"))],
            body: Some(message.to_vec()),
        });
        Ok(calls.len() as u32)
    }
    fn grpc_call_response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.tally("grpc_call_response_body");
        slice(&self.call_response_body.borrow(), 0, size)
    }
    fn http_call_response_header(&self, name: &str) -> Option<String> {
        self.tally("http_call_response_header");
        find(&self.call_response_headers.borrow(), name)
    }
    fn http_call_response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.tally("http_call_response_body");
        slice(&self.call_response_body.borrow(), 0, size)
    }
    fn send_http_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.tally("send_http_response");
        *self.reply.borrow_mut() = Some(LocalReply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
    }
    fn resume_request(&self) {
        self.tally("resume_request");
        self.resumed.borrow_mut().0 += 1;
    }
    fn resume_response(&self) {
        self.tally("resume_response");
        self.resumed.borrow_mut().1 += 1;
    }
    fn now(&self) -> SystemTime {
        self.tally("now");
        SystemTime::UNIX_EPOCH + *self.clock.borrow()
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.tally("log");
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_headers_and_body() {
        let host = MockHost::with_request_headers(&[(":path", "/v1/x"), ("Content-Type", "a")]);
        assert_eq!(host.request_header("content-type").as_deref(), Some("a"));
        host.set_request_header("content-type", None);
        assert_eq!(host.request_header("content-type"), None);
        *host.request_body.borrow_mut() = b"hello world".to_vec();
        assert_eq!(host.request_body(6, 100).as_deref(), Some(&b"world"[..]));
        assert!(host.set_request_body(0, 11, b"bye").is_ok());
        assert_eq!(host.request_body(0, 100).as_deref(), Some(&b"bye"[..]));
        // As in Envoy: replaced from the start, appended at the end, nothing in between.
        assert_eq!(host.set_request_body(1, 1, b"x"), Err(Status::BadArgument));
        assert!(host.set_request_body(3, 0, b"!").is_ok());
        assert_eq!(host.request_body(0, 100).as_deref(), Some(&b"bye!"[..]));
    }

    #[test]
    fn mock_shared_data_cas() {
        let host = MockHost::default();
        assert!(host.set_shared_data("k", b"1", None).is_ok());
        let (v, cas) = host.shared_data("k");
        assert_eq!(v.as_deref(), Some(&b"1"[..]));
        assert!(host.set_shared_data("k", b"2", cas).is_ok());
        assert_eq!(
            host.set_shared_data("k", b"3", cas),
            Err(Status::CasMismatch)
        );
    }

    #[test]
    fn mock_counts_host_calls() {
        let host = MockHost::with_request_headers(&[(":path", "/")]);
        host.request_header(":path");
        host.request_header(":path");
        host.now();
        assert_eq!(host.host_calls(), 3);
        assert_eq!(host.host_call_counts(), [("now", 1), ("request_header", 2)]);
        host.reset_host_calls();
        assert_eq!(host.host_calls(), 0);
    }

    #[test]
    fn mock_metrics_and_reply() {
        let host = MockHost::default();
        let id = host.define_metric(MetricType::Counter, "c");
        assert_eq!(id, Ok(0));
        assert_eq!(host.define_metric(MetricType::Counter, "c"), Ok(0));
        assert!(host.increment_metric(0, 3).is_ok());
        assert_eq!(host.metric("c"), Some(3));
        host.send_http_response(400, &[("content-type", "application/json")], b"{}");
        assert_eq!(host.local_reply().map(|r| r.status), Some(400));
    }
}

#[cfg(test)]
mod pair_tests {
    use super::*;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn decodes_pairs_and_survives_bad_input() {
        let bytes = encode(&[(b":path", b"/v1"), (b"x-bin", b"a\xffb")]);
        let pairs = decode_pairs(&bytes);
        assert_eq!(pairs[0], (":path".into(), "/v1".into()));
        assert_eq!(pairs[1], ("x-bin".into(), "a\u{fffd}b".into()));
        assert_eq!(decode_pairs(&bytes[..bytes.len() - 4]).len(), 1);
        assert!(decode_pairs(&[]).is_empty());
        assert!(decode_pairs(&[9, 0, 0, 0]).is_empty());
    }

    #[test]
    fn held_metrics_reach_the_host_summed_at_the_flush() {
        let host = MockHost::default();
        *host.metric_buffer.borrow_mut() = Some(MetricBuffer::default());
        let counter = host.define_metric(MetricType::Counter, "c").unwrap();
        let histogram = host.define_metric(MetricType::Histogram, "h").unwrap();
        let gauge = host.define_metric(MetricType::Gauge, "g").unwrap();
        host.reset_host_calls();
        for _ in 0..10 {
            host.increment_metric(counter, 2).unwrap();
            host.record_metric(histogram, 7).unwrap();
        }
        host.record_metric(gauge, 5).unwrap();
        // Only the gauge went to the host at once.
        assert_eq!(host.host_call_counts(), [("record_metric", 1)]);
        assert_eq!(host.metric("c"), Some(0));
        host.reset_host_calls();
        host.flush_metrics();
        // One call for the counter's sum, one per histogram value.
        assert_eq!(
            host.host_call_counts(),
            [("increment_metric", 1), ("record_metric", 10)]
        );
        assert_eq!(host.metric("c"), Some(20));
        assert_eq!(host.metric("g"), Some(5));
        host.reset_host_calls();
        host.flush_metrics();
        assert_eq!(host.host_calls(), 0);
    }

    #[test]
    fn a_full_metric_buffer_flushes_without_a_tick() {
        let host = MockHost::default();
        *host.metric_buffer.borrow_mut() = Some(MetricBuffer::default());
        let histogram = host.define_metric(MetricType::Histogram, "h").unwrap();
        for _ in 0..METRIC_HOLD_MAX {
            host.record_metric(histogram, 1).unwrap();
        }
        assert_eq!(
            host.host_call_counts(),
            [
                ("define_metric", 1),
                ("record_metric", METRIC_HOLD_MAX as u64)
            ]
        );
    }
}
