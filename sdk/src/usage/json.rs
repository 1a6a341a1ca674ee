//! A read-only JSON document for the response hot path, and one reading interface over it and
//! `serde_json::Value`.
//!
//! [`JsonDoc`] parses into a flat node list and one string arena, both reused from document to
//! document, so reading a stream event allocates nothing once warm; lookups scan an object's
//! members (objects in LLM answers are small). It accepts exactly what `serde_json` accepts
//! (strict JSON, at most 127 nested containers, numbers that fit an `f64`) and reads the same
//! values: a key given twice reads as its last value, numbers convert as `Value` converts them.
//!
//! Code that reads answers takes any [`JsonRead`], so it serves both representations.

use serde_json::Value;
use std::fmt::Write as _;

/// Reading access to a JSON value.
pub trait JsonRead<'a>: Copy + 'a {
    /// Elements of an array.
    type Items: Iterator<Item = Self>;
    /// Members of an object.
    type Members: Iterator<Item = (&'a str, Self)>;
    /// The member `key` of an object (the last one if the key repeats); None otherwise.
    fn get(self, key: &str) -> Option<Self>;
    /// The string, if this is one.
    fn as_str(self) -> Option<&'a str>;
    /// The number as `u64`, as `Value::as_u64` gives it.
    fn as_u64(self) -> Option<u64>;
    /// The number as `f64`, as `Value::as_f64` gives it.
    fn as_f64(self) -> Option<f64>;
    /// Whether this is `null`.
    fn is_null(self) -> bool;
    /// Whether this is an array.
    fn is_array(self) -> bool;
    /// Whether this is an object.
    fn is_object(self) -> bool;
    /// The elements (none unless this is an array).
    fn items(self) -> Self::Items;
    /// The members (none unless this is an object); a key given twice may come twice, the last
    /// is the one [`JsonRead::get`] reads.
    fn members(self) -> Self::Members;
    /// Appends the value as compact JSON, as `serde_json::to_string` writes it.
    fn write_json(self, out: &mut String);

    /// Whether this is a string.
    fn is_string(self) -> bool {
        self.as_str().is_some()
    }

    /// The value as compact JSON.
    fn to_json_string(self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }
}

/// Members of a `Value` object.
#[derive(Debug, Clone)]
pub struct ValueMembers<'a>(Option<serde_json::map::Iter<'a>>);

impl<'a> Iterator for ValueMembers<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.as_mut()?.next().map(|(k, v)| (k.as_str(), v))
    }
}

/// The members `keys` of an object, read in one pass over it: slot `i` holds what
/// `obj.get(keys[i])` gives.
pub fn pick<'a, J: JsonRead<'a>, const N: usize>(obj: J, keys: [&str; N]) -> [Option<J>; N] {
    let mut out = [None; N];
    for (k, v) in obj.members() {
        if let Some(slot) = keys
            .iter()
            .position(|key| *key == k)
            .and_then(|i| out.get_mut(i))
        {
            *slot = Some(v);
        }
    }
    out
}

impl<'a> JsonRead<'a> for &'a Value {
    type Items = std::slice::Iter<'a, Value>;
    type Members = ValueMembers<'a>;

    fn get(self, key: &str) -> Option<Self> {
        self.as_object()?.get(key)
    }
    fn as_str(self) -> Option<&'a str> {
        Value::as_str(self)
    }
    fn as_u64(self) -> Option<u64> {
        Value::as_u64(self)
    }
    fn as_f64(self) -> Option<f64> {
        Value::as_f64(self)
    }
    fn is_null(self) -> bool {
        Value::is_null(self)
    }
    fn is_array(self) -> bool {
        Value::is_array(self)
    }
    fn is_object(self) -> bool {
        Value::is_object(self)
    }
    fn items(self) -> Self::Items {
        match self {
            Value::Array(items) => items.iter(),
            _ => [].iter(),
        }
    }
    fn members(self) -> ValueMembers<'a> {
        ValueMembers(self.as_object().map(|m| m.iter()))
    }
    fn write_json(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    False,
    True,
    /// `a`, `b`: range of the number's text in the arena.
    Number,
    /// `a`, `b`: range of the decoded string in the arena.
    String,
    /// `a`: index after the last node of the array; `b`: element count.
    Array,
    /// `a`: index after the last node of the object; `b`: member count. Members follow as a
    /// key node (a string) and the value's nodes.
    Object,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    a: u32,
    b: u32,
}

/// Most containers open at once (`serde_json`'s recursion limit).
const MAX_DEPTH: usize = 127;

/// A parsed JSON document whose buffers are reused by the next [`JsonDoc::parse`].
#[derive(Debug, Default, Clone)]
pub struct JsonDoc {
    nodes: Vec<Node>,
    text: String,
    open: Vec<u32>,
}

/// A value in a [`JsonDoc`].
#[derive(Debug, Clone, Copy)]
pub struct Json<'a> {
    doc: &'a JsonDoc,
    at: u32,
}

impl JsonDoc {
    /// An empty document.
    pub fn new() -> JsonDoc {
        JsonDoc::default()
    }

    /// Parses `input` (one JSON value, whitespace around it allowed); false when it is not JSON
    /// (the document is then empty).
    pub fn parse(&mut self, input: &str) -> bool {
        self.clear();
        // Strings without escapes and numbers are read in place from this copy; decoded
        // strings follow it.
        self.text.push_str(input);
        let parser = Parser {
            text: input,
            s: input.as_bytes(),
            i: 0,
        };
        let ok = u32::try_from(input.len()).is_ok() && parser.run(self);
        if !ok {
            self.clear();
        }
        ok
    }

    /// [`JsonDoc::parse`] for bytes that may not be UTF-8 (then they are not JSON: outside
    /// strings only ASCII is allowed, and strings must be UTF-8).
    pub fn parse_bytes(&mut self, input: &[u8]) -> bool {
        match std::str::from_utf8(input) {
            Ok(text) => self.parse(text),
            Err(_) => {
                self.clear();
                false
            }
        }
    }

    /// The value, if the last parse succeeded.
    pub fn root(&self) -> Option<Json<'_>> {
        (!self.nodes.is_empty()).then_some(Json { doc: self, at: 0 })
    }

    /// Forgets the document, keeping the buffers.
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.text.clear();
        self.open.clear();
    }

    /// Bytes held by the buffers.
    pub fn capacity(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.text.capacity()
            + self.open.capacity() * 4
    }

    fn push(&mut self, kind: Kind, a: u32, b: u32) {
        self.nodes.push(Node { kind, a, b });
    }

    fn node(&self, at: u32) -> Option<Node> {
        self.nodes.get(at as usize).copied()
    }

    fn text_of(&self, node: Node) -> &str {
        let start = node.a as usize;
        self.text
            .get(start..start + node.b as usize)
            .unwrap_or_default()
    }

    /// Index after the last node of the value at `at`.
    fn end_of(&self, at: u32) -> u32 {
        match self.node(at) {
            Some(n) if matches!(n.kind, Kind::Array | Kind::Object) => n.a,
            _ => at + 1,
        }
    }
}

struct Parser<'s> {
    text: &'s str,
    s: &'s [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Parses the whole input into `doc`.
    fn run(mut self, doc: &mut JsonDoc) -> bool {
        self.skip_ws();
        // Each turn reads one value; containers stay open on `doc.open` until closed.
        'value: loop {
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    if doc.open.len() >= MAX_DEPTH {
                        return false;
                    }
                    let object = self.peek() == Some(b'{');
                    self.i += 1;
                    let at = doc.nodes.len() as u32;
                    doc.push(if object { Kind::Object } else { Kind::Array }, 0, 0);
                    doc.open.push(at);
                    self.skip_ws();
                    let close = if object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                        doc.open.pop();
                        if let Some(n) = doc.nodes.get_mut(at as usize) {
                            n.a = at + 1;
                        }
                    } else {
                        if let Some(n) = doc.nodes.get_mut(at as usize) {
                            n.b = 1;
                        }
                        if object && !self.key(doc) {
                            return false;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    if !self.string(doc) {
                        return false;
                    }
                }
                Some(b't') => {
                    if !self.literal(b"true") {
                        return false;
                    }
                    doc.push(Kind::True, 0, 0);
                }
                Some(b'f') => {
                    if !self.literal(b"false") {
                        return false;
                    }
                    doc.push(Kind::False, 0, 0);
                }
                Some(b'n') => {
                    if !self.literal(b"null") {
                        return false;
                    }
                    doc.push(Kind::Null, 0, 0);
                }
                Some(b'-' | b'0'..=b'9') => {
                    if !self.number(doc) {
                        return false;
                    }
                }
                _ => return false,
            }
            // After a value: close finished containers, or go on with the next element.
            loop {
                let Some(&top) = doc.open.last() else {
                    self.skip_ws();
                    return self.i == self.s.len();
                };
                let object = doc.node(top).is_some_and(|n| n.kind == Kind::Object);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if let Some(n) = doc.nodes.get_mut(top as usize) {
                            n.b += 1;
                        }
                        self.skip_ws();
                        if object && !self.key(doc) {
                            return false;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return false,
                }
                self.i += 1;
                let end = doc.nodes.len() as u32;
                if let Some(n) = doc.nodes.get_mut(top as usize) {
                    n.a = end;
                }
                doc.open.pop();
            }
        }
    }

    /// A member's key and its colon.
    fn key(&mut self, doc: &mut JsonDoc) -> bool {
        if self.peek() != Some(b'"') || !self.string(doc) {
            return false;
        }
        self.skip_ws();
        if self.peek() != Some(b':') {
            return false;
        }
        self.i += 1;
        self.skip_ws();
        true
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.s.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn string(&mut self, doc: &mut JsonDoc) -> bool {
        self.i += 1;
        let first = self.i;
        let rest = self.s.get(first..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| STOP[usize::from(b)])
            .unwrap_or(rest.len());
        self.i += len;
        if self.peek() == Some(b'"') {
            // No escapes: the string is read where it stands in the input copy.
            self.i += 1;
            return push_range(doc, Kind::String, first, len);
        }
        // Escapes: decoded after the input copy.
        let start = doc.text.len();
        let mut from = first;
        loop {
            // Cut before an ASCII byte (or at the end): whole chars of valid UTF-8.
            match self.text.get(from..self.i) {
                Some(t) => doc.text.push_str(t),
                None => return false,
            }
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    if !self.escape(&mut doc.text) {
                        return false;
                    }
                }
                _ => return false,
            }
            from = self.i;
            let rest = self.s.get(from..).unwrap_or_default();
            self.i += rest
                .iter()
                .position(|&b| STOP[usize::from(b)])
                .unwrap_or(rest.len());
        }
        push_range(doc, Kind::String, start, doc.text.len() - start)
    }

    fn escape(&mut self, out: &mut String) -> bool {
        let Some(b) = self.peek() else {
            return false;
        };
        self.i += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let Some(n) = self.hex4() else {
                    return false;
                };
                let code = match n {
                    0xDC00..=0xDFFF => return false,
                    0xD800..=0xDBFF => {
                        if !self.literal(b"\\u") {
                            return false;
                        }
                        match self.hex4() {
                            Some(lo @ 0xDC00..=0xDFFF) => {
                                0x1_0000 + ((n - 0xD800) << 10) + (lo - 0xDC00)
                            }
                            _ => return false,
                        }
                    }
                    n => n,
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return false,
                }
            }
            _ => return false,
        };
        out.push(c);
        true
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        let mut n = 0u32;
        for &d in digits {
            n = n * 16 + char::from(d).to_digit(16)?;
        }
        self.i += 4;
        Some(n)
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - from
    }

    fn number(&mut self, doc: &mut JsonDoc) -> bool {
        let from = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return false;
                }
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return false,
        };
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            float = true;
            if self.digits() == 0 {
                return false;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            float = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return false;
            }
        }
        // Integers of up to 18 digits are integers in serde_json too; anything else must fit an
        // `f64` (serde_json refuses numbers out of range).
        if float || int_digits > 18 {
            let Some(raw) = self.text.get(from..self.i) else {
                return false;
            };
            let in_range = (!float && number_value(raw).is_some())
                || raw.parse::<f64>().is_ok_and(f64::is_finite);
            if !in_range {
                return false;
            }
        }
        push_range(doc, Kind::Number, from, self.i - from)
    }
}

/// Bytes that end a run of plain string content.
static STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stop[b] = true;
        b += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

/// Adds a string or number node over `len` bytes of the arena from `start`.
fn push_range(doc: &mut JsonDoc, kind: Kind, start: usize, len: usize) -> bool {
    match (u32::try_from(start), u32::try_from(len)) {
        (Ok(a), Ok(b)) => {
            doc.push(kind, a, b);
            true
        }
        _ => false,
    }
}

/// A number as `serde_json` keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NumberValue {
    Unsigned(u64),
    Negative(i64),
    Float(f64),
}

/// The integer value of a number's text, when `serde_json` keeps it as an integer.
fn number_value(raw: &str) -> Option<NumberValue> {
    if raw.contains(['.', 'e', 'E']) {
        return None;
    }
    match raw.strip_prefix('-') {
        None => raw.parse::<u64>().ok().map(NumberValue::Unsigned),
        // `-0` is a float in serde_json.
        Some("0") => None,
        Some(_) => raw.parse::<i64>().ok().map(NumberValue::Negative),
    }
}

fn number_of(raw: &str) -> Option<NumberValue> {
    number_value(raw).or_else(|| raw.parse::<f64>().ok().map(NumberValue::Float))
}

/// Elements of an array in a [`JsonDoc`].
#[derive(Debug, Clone)]
pub struct Items<'a> {
    doc: &'a JsonDoc,
    next: u32,
    left: u32,
}

impl<'a> Iterator for Items<'a> {
    type Item = Json<'a>;

    fn next(&mut self) -> Option<Json<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let at = self.next;
        self.next = self.doc.end_of(at);
        Some(Json { doc: self.doc, at })
    }
}

/// Members of an object in a [`JsonDoc`], in document order (a repeated key comes twice).
#[derive(Debug, Clone)]
pub struct Members<'a> {
    doc: &'a JsonDoc,
    next: u32,
    left: u32,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, Json<'a>);

    fn next(&mut self) -> Option<(&'a str, Json<'a>)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.doc.node(self.next)?;
        let value = self.next + 1;
        self.next = self.doc.end_of(value);
        Some((
            self.doc.text_of(key),
            Json {
                doc: self.doc,
                at: value,
            },
        ))
    }
}

impl<'a> Json<'a> {
    fn node(self) -> Option<Node> {
        self.doc.node(self.at)
    }

    fn kind(self) -> Option<Kind> {
        self.node().map(|n| n.kind)
    }

    fn number(self) -> Option<NumberValue> {
        let n = self.node().filter(|n| n.kind == Kind::Number)?;
        number_of(self.doc.text_of(n))
    }

    /// Copies the value into a `serde_json::Value`.
    pub fn to_value(self) -> Value {
        match self.kind() {
            Some(Kind::True) => Value::Bool(true),
            Some(Kind::False) => Value::Bool(false),
            Some(Kind::String) => Value::String(self.as_str().unwrap_or_default().to_string()),
            Some(Kind::Number) => match self.number() {
                Some(NumberValue::Unsigned(n)) => Value::from(n),
                Some(NumberValue::Negative(n)) => Value::from(n),
                Some(NumberValue::Float(f)) => Value::from(f),
                None => Value::Null,
            },
            Some(Kind::Array) => Value::Array(self.items().map(Json::to_value).collect()),
            Some(Kind::Object) => Value::Object(
                self.members()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
            Some(Kind::Null) | None => Value::Null,
        }
    }
}

impl<'a> JsonRead<'a> for Json<'a> {
    type Items = Items<'a>;
    type Members = Members<'a>;

    fn members(self) -> Members<'a> {
        let left = match self.node() {
            Some(n) if n.kind == Kind::Object => n.b,
            _ => 0,
        };
        Members {
            doc: self.doc,
            next: self.at + 1,
            left,
        }
    }

    fn get(self, key: &str) -> Option<Self> {
        let mut found = None;
        for (k, v) in self.members() {
            if k == key {
                found = Some(v);
            }
        }
        found
    }
    fn as_str(self) -> Option<&'a str> {
        let n = self.node().filter(|n| n.kind == Kind::String)?;
        Some(self.doc.text_of(n))
    }
    fn as_u64(self) -> Option<u64> {
        match self.number()? {
            NumberValue::Unsigned(n) => Some(n),
            _ => None,
        }
    }
    fn as_f64(self) -> Option<f64> {
        Some(match self.number()? {
            NumberValue::Unsigned(n) => n as f64,
            NumberValue::Negative(n) => n as f64,
            NumberValue::Float(f) => f,
        })
    }
    fn is_null(self) -> bool {
        self.kind() == Some(Kind::Null)
    }
    fn is_array(self) -> bool {
        self.kind() == Some(Kind::Array)
    }
    fn is_object(self) -> bool {
        self.kind() == Some(Kind::Object)
    }
    fn items(self) -> Items<'a> {
        let left = match self.node() {
            Some(n) if n.kind == Kind::Array => n.b,
            _ => 0,
        };
        Items {
            doc: self.doc,
            next: self.at + 1,
            left,
        }
    }
    fn write_json(self, out: &mut String) {
        match self.kind() {
            Some(Kind::Null) | None => out.push_str("null"),
            Some(Kind::True) => out.push_str("true"),
            Some(Kind::False) => out.push_str("false"),
            Some(Kind::String) => write_string(out, self.as_str().unwrap_or_default()),
            Some(Kind::Number) => match self.number() {
                Some(NumberValue::Unsigned(n)) => {
                    let _ = write!(out, "{n}");
                }
                Some(NumberValue::Negative(n)) => {
                    let _ = write!(out, "{n}");
                }
                Some(NumberValue::Float(f)) => {
                    let _ = write!(out, "{}", Value::from(f));
                }
                None => out.push_str("null"),
            },
            Some(Kind::Array) => {
                out.push('[');
                for (i, item) in self.items().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Some(Kind::Object) => {
                // As a `Value` map keeps them: first place of a key, last value.
                let mut members: Vec<(&str, Json<'_>)> = Vec::new();
                for (k, v) in self.members() {
                    match members.iter_mut().find(|(seen, _)| *seen == k) {
                        Some(slot) => slot.1 = v,
                        None => members.push((k, v)),
                    }
                }
                out.push('{');
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string literal, escaped as `serde_json` escapes it.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses with both and checks they agree on validity and on every value read.
    fn same(input: &str) {
        let want: Option<Value> = serde_json::from_str(input).ok();
        let mut doc = JsonDoc::new();
        let ok = doc.parse(input);
        assert_eq!(ok, want.is_some(), "validity of {input:?}");
        let bytes_ok = JsonDoc::new().parse_bytes(input.as_bytes());
        assert_eq!(bytes_ok, ok, "bytes validity of {input:?}");
        if let (Some(want), Some(root)) = (want, doc.root()) {
            assert_eq!(root.to_value(), want, "{input:?}");
            assert_eq!(root.to_json_string(), want.to_string(), "{input:?}");
            check(root, &want);
        }
    }

    /// Every accessor agrees with `Value`'s, recursively.
    fn check(j: Json<'_>, v: &Value) {
        assert_eq!(j.as_str(), v.as_str());
        assert_eq!(j.as_u64(), v.as_u64(), "{v}");
        assert_eq!(
            j.as_f64().map(f64::to_bits),
            v.as_f64().map(f64::to_bits),
            "{v}"
        );
        assert_eq!(j.is_null(), v.is_null());
        assert_eq!(j.is_array(), v.is_array());
        assert_eq!(j.is_object(), v.is_object());
        assert_eq!(j.is_string(), v.is_string());
        assert_eq!(j.items().count(), JsonRead::items(v).count());
        for (a, b) in j.items().zip(JsonRead::items(v)) {
            check(a, b);
        }
        if let Some(map) = v.as_object() {
            for (k, b) in map {
                let a = JsonRead::get(j, k);
                assert!(a.is_some(), "{k}");
                if let Some(a) = a {
                    check(a, b);
                }
            }
            assert!(JsonRead::get(j, "no such key").is_none());
        }
    }

    #[test]
    fn agrees_with_serde_json_on_documents() {
        let docs = [
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1}}}"#,
            r#" [1, -2, 3.5, -0, 0, 1e3, 2E-2, -1.25e+2, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809] "#,
            r#"{"s":"a\"b\\c\/d\b\f\n\r\t\u0001\u00e9\u20ac\ud83d\ude00 ü ✓","e":"","n":null,"t":true,"f":false}"#,
            r#"{"a":1,"a":2,"b":{"a":[{"a":{}}]},"c":[[],[[]],{}]}"#,
            "\"plain\"",
            "0",
            "-0.0",
            "1.5e308",
            "5e-324",
            "1e-400",
            "\t\r\n null \n",
            "{\"k\":\"\u{7f}\"}",
        ];
        for d in docs {
            same(d);
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let bad = [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            "{\"a\" 1}",
            "{a:1}",
            "01",
            "-",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "0x1",
            "NaN",
            "Infinity",
            "1e400",
            "-1e400",
            "tru",
            "nul",
            "\"abc",
            "\"a\u{1}b\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\\ud800x\"",
            "[1]x",
            "{} {}",
            "[\"a\",]",
            "{\"a\":}",
            "{,}",
            "[,]",
            "\"\\\"",
        ];
        for d in bad {
            same(d);
        }
        let mut doc = JsonDoc::new();
        assert!(!doc.parse_bytes(b"\"\xff\""));
        assert!(doc.root().is_none());
        assert!(serde_json::from_slice::<Value>(b"\"\xff\"").is_err());
    }

    #[test]
    fn nesting_limit_is_serde_jsons() {
        for depth in [1, 100, 126, 127, 128, 129, 400] {
            same(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            let obj = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            same(&obj);
        }
    }

    #[test]
    fn random_documents_agree() {
        // Deterministic pseudo-random documents, then every prefix of some (mostly invalid).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        fn gen(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> Value {
            match next(if depth > 3 { 5 } else { 7 }) {
                0 => Value::Null,
                1 => Value::Bool(next(2) == 0),
                2 => json!(next(1 << 40) as i64 - (1 << 39)),
                3 => json!((next(1 << 20) as f64) / 64.0),
                4 => {
                    let chars = ["a", "é", "\"", "\\", "\n", "\u{1}", "😀", " ", "/"];
                    let n = next(6);
                    Value::String((0..n).map(|_| chars[next(9) as usize]).collect())
                }
                5 => Value::Array((0..next(4)).map(|_| gen(next, depth + 1)).collect()),
                _ => {
                    let mut m = serde_json::Map::new();
                    for _ in 0..next(5) {
                        let key =
                            ["id", "model", "choices", "delta", "usage", "é"][next(6) as usize];
                        m.insert(key.to_string(), gen(next, depth + 1));
                    }
                    Value::Object(m)
                }
            }
        }
        for round in 0..400 {
            let v = gen(&mut next, 0);
            let text = if round % 2 == 0 {
                v.to_string()
            } else {
                serde_json::to_string_pretty(&v).unwrap()
            };
            same(&text);
            if round % 20 == 0 {
                for cut in (0..text.len()).filter(|c| text.is_char_boundary(*c)) {
                    same(&text[..cut]);
                }
            }
        }
    }

    #[test]
    fn buffers_are_reused() {
        let mut doc = JsonDoc::new();
        assert!(doc.parse(r#"{"a":"some text","b":[1,2,3]}"#));
        assert!(doc.parse(r#"{"a":"other text","b":[4,5,6]}"#));
        let cap = doc.capacity();
        for _ in 0..10 {
            assert!(doc.parse(r#"{"a":"other text","b":[4,5,6]}"#));
        }
        assert_eq!(doc.capacity(), cap);
        let root = doc.root().unwrap();
        assert_eq!(root.get("a").and_then(Json::as_str), Some("other text"));
        let b: Vec<u64> = root
            .get("b")
            .unwrap()
            .items()
            .filter_map(Json::as_u64)
            .collect();
        assert_eq!(b, [4, 5, 6]);
        assert!(!doc.parse("[1,"));
        assert!(doc.root().is_none());
    }
}
