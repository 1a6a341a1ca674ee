//! Golden fixtures of ai-proxy's translations (`plugins/ai-proxy/golden/<case>/`): loading a
//! case, and checking what the gateway sent upstream and answered the client against the case's
//! expected files. The Sim runner (`fuzz/tests/golden.rs`), the mock provider (which replays a
//! case's recorded upstream answer) and the e2e test through Envoy (`e2e/tests/suite/golden.rs`) all
//! use this one module, so a case means the same thing everywhere.
//!
//! A case's files (see `plugins/ai-proxy/golden/README.md`):
//! - `config.json`: the ai-proxy plugin config, as an operator writes it;
//! - `request.json`: the client's request, `{"path", "headers"?, "body"}`;
//! - `upstream-request.json` (expected): `{"method", "path", "headers", "body"}`;
//! - `upstream-response.json` (recorded): `{"status", "headers"}`, with the body in
//!   `upstream-body.json`, `upstream-body.sse`, `upstream-body.txt`, or `upstream-body.hex`
//!   (binary, e.g. Bedrock's AWS event-stream frames: hex digits, one frame a line, `#` comments);
//! - `response.json` (expected): `{"status", "headers", "body"}`, the body left out when it is
//!   the SSE text in `response.sse`.
//!
//! Volatile values, the only ones normalised (in both the expected files and what is checked):
//! - JSON numbers equal to the gateway's clock while the case ran, in seconds or milliseconds
//!   (today only `created_at` of Responses answers; any `created` the gateway would stamp):
//!   written `"<now>"`; timestamps the provider sent are older and stay checked;
//! - the SigV4 `authorization` header's date and signature and `x-amz-date` (clock-dependent).
//!
//! SSE is compared event by event (comments such as keep-alives are not events); the Sim runner
//! also requires the same bytes for every split of the upstream answer.

use crate::Result;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Set to `1` to (re)write the expected files from what the code does now.
pub const BLESS_ENV: &str = "GOLDEN_BLESS";

/// Request header naming the case whose recorded upstream answer the mock provider replays.
pub const MOCK_HEADER: &str = "x-mock-golden";

/// What a normalised volatile value reads as.
const NOW: &str = "<now>";

/// Headers never compared: framing that Envoy and the Sim set differently.
const IGNORED_HEADERS: [&str; 2] = ["content-length", "transfer-encoding"];

/// Whether this run rewrites the expected files.
pub fn blessing() -> bool {
    std::env::var(BLESS_ENV).is_ok_and(|v| v == "1")
}

/// The fixture directory, `plugins/ai-proxy/golden`.
pub fn dir() -> PathBuf {
    crate::workspace_root().join("plugins/ai-proxy/golden")
}

/// Every case's name, sorted.
pub fn case_names() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir())? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The client's request of a case.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// `:path`.
    pub path: String,
    /// Headers besides `:method`, `:path`, `:authority` and `content-type`.
    pub headers: Vec<(String, String)>,
    /// The JSON body, as sent.
    pub body: String,
}

/// An HTTP answer: the recorded upstream one, or what the client got.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Status.
    pub status: u32,
    /// Headers, lowercase names (pseudo-headers left out).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A request as the provider received it.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Headers, lowercase names; the host as `:authority`.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// How headers are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// The expected headers and no others (the Sim: nothing else touches them).
    Exact,
    /// The expected headers among others (Envoy and the mock add their own), Envoy's own
    /// `x-envoy-*` control headers not required (its router consumes them).
    Subset,
}

/// The gateway's clock while a case ran, in Unix seconds (see the module doc on volatility).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Earliest.
    pub from: u64,
    /// Latest.
    pub to: u64,
}

impl Clock {
    /// The clock at one instant.
    pub fn at(seconds: u64) -> Clock {
        Clock {
            from: seconds,
            to: seconds,
        }
    }

    fn covers(&self, n: u64) -> bool {
        (self.from..=self.to).contains(&n)
            || (self.from.saturating_mul(1000)..=self.to.saturating_mul(1000) + 999).contains(&n)
    }
}

/// One golden case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Directory name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// `config.json`, as written.
    pub config: String,
    /// `request.json`.
    pub request: ClientRequest,
    /// The recorded upstream answer.
    pub upstream: Answer,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&read(path)?).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn header_list(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.to_ascii_lowercase(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Hex digits to bytes; whitespace is ignored and `#` starts a comment to the end of the line.
pub fn decode_hex(text: &str) -> Result<Vec<u8>> {
    let digits: Vec<u8> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(|l| l.bytes().filter(|b| !b.is_ascii_whitespace()))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            u8::from_str_radix(s, 16).map_err(|e| format!("bad hex {s:?}: {e}").into())
        })
        .collect()
}

impl Case {
    /// Loads the case `name` from [`dir`].
    pub fn load(name: &str) -> Result<Case> {
        if name.is_empty() || name.contains(['/', '\\', '.']) {
            return Err(format!("not a case name: {name:?}").into());
        }
        let dir = dir().join(name);
        let config = read(&dir.join("config.json"))?;
        let request = read_json(&dir.join("request.json"))?;
        let body = match &request["body"] {
            Value::String(s) => s.clone(),
            Value::Null => return Err(format!("{name}/request.json: no body").into()),
            v => v.to_string(),
        };
        let request = ClientRequest {
            path: request["path"]
                .as_str()
                .ok_or_else(|| format!("{name}/request.json: no path"))?
                .to_string(),
            headers: header_list(&request["headers"]),
            body,
        };
        let meta = read_json(&dir.join("upstream-response.json"))?;
        let status = meta["status"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| format!("{name}/upstream-response.json: no status"))?;
        let upstream = Answer {
            status,
            headers: header_list(&meta["headers"]),
            body: Self::upstream_body(&dir)?,
        };
        Ok(Case {
            name: name.to_string(),
            dir,
            config,
            request,
            upstream,
        })
    }

    fn upstream_body(dir: &Path) -> Result<Vec<u8>> {
        for ext in ["json", "sse", "txt"] {
            let path = dir.join(format!("upstream-body.{ext}"));
            if path.exists() {
                return Ok(read(&path)?.into_bytes());
            }
        }
        let hex = dir.join("upstream-body.hex");
        if hex.exists() {
            return decode_hex(&read(&hex)?).map_err(|e| format!("{}: {e}", hex.display()).into());
        }
        Err(format!("{}: no upstream-body.* file", dir.display()).into())
    }

    /// Writes `upstream-request.json` from what was sent.
    pub fn bless_upstream_request(
        &self,
        sent: &Sent,
        clock: Clock,
    ) -> std::result::Result<(), String> {
        self.write("upstream-request.json", &pretty(&sent_json(sent, clock)))
    }

    /// Writes `response.json` (and `response.sse`, for a stream) from what the client got.
    pub fn bless_response(&self, answer: &Answer, clock: Clock) -> std::result::Result<(), String> {
        let (meta, sse) = answer_json(answer, clock);
        let sse_path = self.dir.join("response.sse");
        if sse {
            self.write("response.sse", &normalised_sse(&answer.body, clock))?;
        } else if sse_path.exists() {
            std::fs::remove_file(&sse_path).map_err(|e| e.to_string())?;
        }
        self.write("response.json", &pretty(&meta))
    }

    /// Checks what was sent upstream against `upstream-request.json`.
    pub fn check_upstream_request(
        &self,
        sent: &Sent,
        headers: Headers,
        clock: Clock,
    ) -> std::result::Result<(), String> {
        let actual = sent_json(sent, clock);
        let file = "upstream-request.json";
        let expected = self.expected_json(file)?;
        let mut problems = Vec::new();
        for key in ["method", "path", "body"] {
            if expected[key] != actual[key] {
                problems.push(format!(
                    "{key}:\n{}",
                    diff(&pretty(&expected[key]), &pretty(&actual[key]))
                ));
            }
        }
        if let Some(p) = compare_headers(&expected["headers"], &actual["headers"], headers) {
            problems.push(p);
        }
        self.verdict(file, problems)
    }

    /// Checks what the client got against `response.json` (and `response.sse`).
    pub fn check_response(
        &self,
        answer: &Answer,
        headers: Headers,
        clock: Clock,
    ) -> std::result::Result<(), String> {
        let (meta, sse) = answer_json(answer, clock);
        let expected = self.expected_json("response.json")?;
        let mut problems = Vec::new();
        if expected["status"] != meta["status"] {
            problems.push(format!(
                "status: expected {}, got {}",
                expected["status"], meta["status"]
            ));
        }
        if let Some(p) = compare_headers(&expected["headers"], &meta["headers"], headers) {
            problems.push(p);
        }
        if !sse && expected.get("body") != meta.get("body") {
            problems.push(format!(
                "body:\n{}",
                diff(
                    &pretty(&expected["body"]),
                    &pretty(meta.get("body").unwrap_or(&Value::Null))
                )
            ));
        }
        self.verdict("response.json", problems)?;
        if sse {
            let expected = read(&self.dir.join("response.sse")).map_err(|e| e.to_string())?;
            let actual = String::from_utf8_lossy(&answer.body);
            if let Some(p) = compare_sse(&expected, &actual, clock) {
                return self.verdict("response.sse", vec![p]);
            }
        } else if expected.get("body").is_none() {
            return self.verdict(
                "response.json",
                vec!["expected an SSE answer (response.sse), got a whole body".into()],
            );
        }
        Ok(())
    }

    fn expected_json(&self, file: &str) -> std::result::Result<Value, String> {
        read_json(&self.dir.join(file)).map_err(|e| {
            format!(
                "golden case `{}`, {file}: {e} (run with {BLESS_ENV}=1 to write it)",
                self.name
            )
        })
    }

    fn write(&self, file: &str, text: &str) -> std::result::Result<(), String> {
        std::fs::write(self.dir.join(file), text)
            .map_err(|e| format!("golden case `{}`, {file}: {e}", self.name))
    }

    fn verdict(&self, file: &str, problems: Vec<String>) -> std::result::Result<(), String> {
        if problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "golden case `{}`, {file} differs (- expected, + actual):\n{}",
            self.name,
            problems.join("\n")
        ))
    }
}

fn content_type(headers: &[(String, String)]) -> &str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map_or("", |(_, v)| v.as_str())
}

/// Widest line [`pretty`] keeps a value on.
const WIDTH: usize = 100;

/// Pretty JSON with a final newline (the form of the expected files): a value that fits on its
/// line stays on it, a larger one is spread over one line per member.
pub fn pretty(v: &Value) -> String {
    let mut out = String::new();
    pretty_into(v, 0, 0, &mut out);
    out.push('\n');
    out
}

/// Writes `v` at `indent`, its first line already holding `used` characters.
fn pretty_into(v: &Value, indent: usize, used: usize, out: &mut String) {
    let (open, close, members): (char, char, Vec<(Option<&String>, &Value)>) = match v {
        Value::Array(items) if !items.is_empty() => {
            ('[', ']', items.iter().map(|i| (None, i)).collect())
        }
        Value::Object(map) if !map.is_empty() => {
            ('{', '}', map.iter().map(|(k, i)| (Some(k), i)).collect())
        }
        _ => {
            out.push_str(&v.to_string());
            return;
        }
    };
    let line = spaced(v);
    if used + line.len() <= WIDTH {
        out.push_str(&line);
        return;
    }
    let pad = " ".repeat(indent + 2);
    out.push(open);
    for (i, (key, item)) in members.iter().enumerate() {
        out.push('\n');
        out.push_str(&pad);
        let mut used = pad.len();
        if let Some(k) = key {
            let k = format!("{}: ", Value::String((*k).clone()));
            used += k.len();
            out.push_str(&k);
        }
        pretty_into(item, indent + 2, used, out);
        if i + 1 < members.len() {
            out.push(',');
        }
    }
    out.push('\n');
    out.push_str(&" ".repeat(indent));
    out.push(close);
}

/// One line of JSON with a space after each `:` and `,` between members.
fn spaced(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(spaced).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, i)| format!("{}: {}", Value::String(k.clone()), spaced(i)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Replaces every JSON number the clock covers with `"<now>"`.
pub fn normalise(v: &mut Value, clock: Clock) {
    match v {
        Value::Number(n) if n.as_u64().is_some_and(|n| clock.covers(n)) => {
            *v = Value::String(NOW.into());
        }
        Value::Array(items) => items.iter_mut().for_each(|i| normalise(i, clock)),
        Value::Object(map) => map.values_mut().for_each(|i| normalise(i, clock)),
        _ => {}
    }
}

/// A body as JSON, normalised; a body that is not JSON as `{"text": …}`.
fn body_json(body: &[u8], clock: Clock) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            normalise(&mut v, clock);
            v
        }
        Err(_) => serde_json::json!({"text": String::from_utf8_lossy(body)}),
    }
}

/// A volatile header value in its normalised form.
fn normalise_header(name: &str, value: &str) -> String {
    match name {
        "x-amz-date" => NOW.into(),
        "authorization" if value.starts_with("AWS4-HMAC-SHA256 ") => value
            .split(", ")
            .map(|part| {
                if let Some(cred) = part.strip_prefix("AWS4-HMAC-SHA256 Credential=") {
                    // KEY/DATE/REGION/SERVICE/aws4_request
                    let mut fields: Vec<&str> = cred.split('/').collect();
                    if let Some(date) = fields.get_mut(1) {
                        *date = NOW;
                    }
                    format!("AWS4-HMAC-SHA256 Credential={}", fields.join("/"))
                } else if part.starts_with("Signature=") {
                    "Signature=<signature>".into()
                } else {
                    part.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => value.to_string(),
    }
}

/// Headers as a JSON object (sorted, normalised, pseudo-headers and framing left out).
fn headers_json(headers: &[(String, String)]) -> Value {
    let mut list: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| {
            (!k.starts_with(':') || k == ":authority") && !IGNORED_HEADERS.contains(&k.as_str())
        })
        .map(|(k, v)| {
            let v = normalise_header(&k, &v);
            (k, v)
        })
        .collect();
    list.sort();
    Value::Object(
        list.into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// An answer's `response.json` form, and whether its body is SSE (left out of it).
fn answer_json(answer: &Answer, clock: Clock) -> (Value, bool) {
    let sse = content_type(&answer.headers).starts_with("text/event-stream");
    let mut meta = Map::new();
    meta.insert("status".into(), Value::from(answer.status));
    meta.insert("headers".into(), headers_json(&answer.headers));
    if !sse {
        meta.insert("body".into(), body_json(&answer.body, clock));
    }
    (Value::Object(meta), sse)
}

fn sent_json(sent: &Sent, clock: Clock) -> Value {
    serde_json::json!({
        "method": sent.method,
        "path": sent.path,
        "headers": headers_json(&sent.headers),
        "body": body_json(&sent.body, clock),
    })
}

fn compare_headers(expected: &Value, actual: &Value, how: Headers) -> Option<String> {
    let (Some(expected), Some(actual)) = (expected.as_object(), actual.as_object()) else {
        return Some("headers: not an object".into());
    };
    let mut lines = Vec::new();
    for (k, v) in expected {
        // Envoy's router consumes its own control headers (the upstream timeout).
        if how == Headers::Subset && k.starts_with("x-envoy-") {
            continue;
        }
        match actual.get(k) {
            Some(a) if a == v => {}
            Some(a) => lines.push(format!("- {k}: {v}\n+ {k}: {a}")),
            None => lines.push(format!("- {k}: {v}")),
        }
    }
    if how == Headers::Exact {
        for (k, a) in actual {
            if !expected.contains_key(k) {
                lines.push(format!("+ {k}: {a}"));
            }
        }
    }
    (!lines.is_empty()).then(|| format!("headers:\n{}", lines.join("\n")))
}

/// The events of an SSE text (an unfinished last event counts).
fn sse_events(text: &str) -> Vec<sdk::sse::SseEvent> {
    let mut decoder = sdk::sse::SseDecoder::new(usize::MAX);
    let mut events = Vec::new();
    let _ = decoder.feed(text.as_bytes(), &mut events);
    decoder.finish(&mut events);
    events
}

/// An SSE event as JSON for comparing and printing: its fields, `data` parsed when it is JSON.
fn event_json(e: &sdk::sse::SseEvent, clock: Clock) -> Value {
    let mut m = Map::new();
    if let Some(name) = &e.event {
        m.insert("event".into(), Value::String(name.clone()));
    }
    if let Some(id) = &e.id {
        m.insert("id".into(), Value::String(id.clone()));
    }
    let data = match serde_json::from_str::<Value>(&e.data) {
        Ok(mut v) => {
            normalise(&mut v, clock);
            v
        }
        Err(_) => Value::String(e.data.clone()),
    };
    m.insert("data".into(), data);
    Value::Object(m)
}

/// An SSE body with its JSON data normalised (the form of `response.sse`).
pub fn normalised_sse(body: &[u8], clock: Clock) -> String {
    let mut out = String::new();
    for e in sse_events(&String::from_utf8_lossy(body)) {
        let mut e = e.clone();
        if let Ok(mut v) = serde_json::from_str::<Value>(&e.data) {
            normalise(&mut v, clock);
            e.data = v.to_string();
        }
        e.encode_into(&mut out);
    }
    out
}

/// Compares two SSE texts event by event; `None` when they carry the same events.
pub fn compare_sse(expected: &str, actual: &str, clock: Clock) -> Option<String> {
    let expected: Vec<Value> = sse_events(expected)
        .iter()
        .map(|e| event_json(e, clock))
        .collect();
    let actual: Vec<Value> = sse_events(actual)
        .iter()
        .map(|e| event_json(e, clock))
        .collect();
    if expected == actual {
        return None;
    }
    let mut out = String::new();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => {}
            (e, a) => {
                let _ = writeln!(out, "event {i}:");
                out.push_str(&diff(
                    &e.map(pretty).unwrap_or_default(),
                    &a.map(pretty).unwrap_or_default(),
                ));
                let _ = writeln!(
                    out,
                    "({} events expected, {} received; later events not shown)",
                    expected.len(),
                    actual.len()
                );
                break;
            }
        }
    }
    Some(out)
}

/// A line diff (longest common subsequence): `-` expected, `+` actual, common lines indented.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ignores_comments_and_spaces() {
        assert_eq!(
            decode_hex("# a frame\n00 ff\n1a # x\n").unwrap(),
            vec![0, 255, 0x1a]
        );
        assert!(decode_hex("abc").is_err());
    }

    #[test]
    fn the_clock_normalises_its_seconds_and_milliseconds_only() {
        let mut v = serde_json::json!({"created": 1000, "ms": 1000500, "old": 999, "n": [1001]});
        normalise(
            &mut v,
            Clock {
                from: 1000,
                to: 1000,
            },
        );
        assert_eq!(
            v,
            serde_json::json!({"created": "<now>", "ms": "<now>", "old": 999, "n": [1001]})
        );
    }

    #[test]
    fn sigv4_keeps_its_shape_without_the_date_and_signature() {
        let h = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc123";
        assert_eq!(
            normalise_header("authorization", h),
            "AWS4-HMAC-SHA256 Credential=AKID/<now>/us-east-1/bedrock/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=<signature>"
        );
        assert_eq!(normalise_header("authorization", "Bearer k"), "Bearer k");
    }

    #[test]
    fn sse_compares_events_not_bytes() {
        let clock = Clock::at(5);
        let a = "data: {\"a\":1,\"b\":5}\n\nevent: x\ndata: [DONE]\n\n";
        let b = "data:{\"b\":5, \"a\":1}\r\n\r\nevent: x\ndata: [DONE]\n\n";
        assert_eq!(compare_sse(a, b, clock), None);
        let c = "data: {\"a\":2}\n\n";
        let report = compare_sse(a, c, clock).unwrap();
        assert!(report.contains("event 0:"), "{report}");
        assert!(
            report.contains("- {\"data\": {\"a\": 1, \"b\": \"<now>\"}}"),
            "{report}"
        );
        assert!(report.contains("+ {\"data\": {\"a\": 2}}"), "{report}");
    }

    #[test]
    fn pretty_keeps_short_values_on_one_line() {
        let v = serde_json::json!({"a": [1, 2], "b": {"c": "x"}, "long": vec!["0123456789"; 12]});
        let text = pretty(&v);
        assert!(
            text.starts_with("{\n  \"a\": [1, 2],\n  \"b\": {\"c\": \"x\"},\n"),
            "{text}"
        );
        assert!(
            text.contains("  \"long\": [\n    \"0123456789\",\n"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn diff_marks_changed_lines() {
        assert_eq!(diff("a\nb\nc", "a\nx\nc"), "  a\n- b\n+ x\n  c\n");
    }
}
