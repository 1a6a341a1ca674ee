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
    /// One response header (lowercase name).
    fn response_header(&self, name: &str) -> Option<String>;
    /// Sets (`Some`) or removes (`None`) a response header.
    fn set_response_header(&self, name: &str, value: Option<&str>);
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

/// Header-map host calls that return errors instead of panicking (the SDK's `hostcalls` panic on
/// any status but `Ok`/`NotFound`, and on header values that are not UTF-8).
#[allow(unsafe_code)]
mod raw {
    use proxy_wasm::types::MapType;
    use std::ptr::null_mut;

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

    pub fn header(map: MapType, name: &str) -> Option<String> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: the host writes a buffer it allocated with our allocator, or nothing.
        let status = unsafe { get_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
        let bytes = unsafe { take(data, size) };
        (status == 0).then(|| String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn headers(map: MapType) -> Vec<(String, String)> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: as in `header`.
        let status = unsafe { get_pairs(map, &mut data, &mut size) };
        let bytes = unsafe { take(data, size) };
        if status != 0 {
            return Vec::new();
        }
        super::decode_pairs(&bytes)
    }

    pub fn set_header(map: MapType, name: &str, value: Option<&str>) -> bool {
        // SAFETY: pointers and lengths of live slices.
        let status = unsafe {
            match value {
                Some(v) => replace(map, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
                None => remove(map, name.as_ptr(), name.len()),
            }
        };
        status == 0
    }
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
        fn response_header(&self, name: &str) -> Option<String> {
            raw::header(MapType::HttpResponseHeaders, name)
        }
        fn set_response_header(&self, name: &str, value: Option<&str>) {
            raw::set_header(MapType::HttpResponseHeaders, name, value);
        }
        fn request_body(&self, start: usize, size: usize) -> Option<Vec<u8>> {
            hc::get_buffer(BufferType::HttpRequestBody, start, size)
                .ok()
                .flatten()
        }
        fn set_request_body(&self, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
            hc::set_buffer(BufferType::HttpRequestBody, start, size, value)
        }
        fn response_body(&self, start: usize, size: usize) -> Option<Vec<u8>> {
            hc::get_buffer(BufferType::HttpResponseBody, start, size)
                .ok()
                .flatten()
        }
        fn set_response_body(&self, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
            hc::set_buffer(BufferType::HttpResponseBody, start, size, value)
        }
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            hc::get_property(path.to_vec()).ok().flatten()
        }
        fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status> {
            hc::set_property(path.to_vec(), Some(value))
        }
        fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            hc::get_shared_data(key).unwrap_or((None, None))
        }
        fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
            hc::set_shared_data(key, Some(value), cas)
        }
        fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
            hc::define_metric(kind, name)
        }
        fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
            hc::increment_metric(id, offset)
        }
        fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
            hc::record_metric(id, value)
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
            hc::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
                .ok()
                .flatten()
        }
        fn http_call_response_header(&self, name: &str) -> Option<String> {
            raw::header(MapType::HttpCallResponseHeaders, name)
        }
        fn http_call_response_body(&self, size: usize) -> Option<Vec<u8>> {
            hc::get_buffer(BufferType::HttpCallResponseBody, 0, size)
                .ok()
                .flatten()
        }
        fn send_http_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
            let _ = hc::send_http_response(status, headers.to_vec(), Some(body));
        }
        fn resume_request(&self) {
            let _ = hc::resume_http_request();
        }
        fn resume_response(&self) {
            let _ = hc::resume_http_response();
        }
        fn now(&self) -> SystemTime {
            hc::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
        }
        fn log(&self, level: LogLevel, message: &str) {
            let _ = hc::log(level, message);
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

fn splice(buf: &mut Vec<u8>, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    let end = start.checked_add(size).ok_or(Status::BadArgument)?;
    if start > buf.len() {
        return Err(Status::BadArgument);
    }
    let end = end.min(buf.len());
    buf.splice(start..end, value.iter().copied());
    Ok(())
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
    fn response_header(&self, name: &str) -> Option<String> {
        self.tally("response_header");
        find(&self.response_headers.borrow(), name)
    }
    fn set_response_header(&self, name: &str, value: Option<&str>) {
        self.tally("set_response_header");
        put(&mut self.response_headers.borrow_mut(), name, value);
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
        if let Some(i) = metrics.iter().position(|(n, _, _)| n == name) {
            return Ok(i as u32);
        }
        metrics.push((name.to_string(), kind, 0));
        Ok((metrics.len() - 1) as u32)
    }
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        self.tally("increment_metric");
        let mut metrics = self.metrics.borrow_mut();
        let m = metrics.get_mut(id as usize).ok_or(Status::NotFound)?;
        m.2 += offset;
        Ok(())
    }
    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        self.tally("record_metric");
        let mut metrics = self.metrics.borrow_mut();
        let m = metrics.get_mut(id as usize).ok_or(Status::NotFound)?;
        m.2 = i64::try_from(value).unwrap_or(i64::MAX);
        Ok(())
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
        assert_eq!(host.set_request_body(10, 1, b"x"), Err(Status::BadArgument));
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
    use super::decode_pairs;

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
}
