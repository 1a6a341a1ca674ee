//! The event-stream encoder: for tests and fuzz seeds only (feature `test-util`); the plugin
//! only decodes.

use super::{HeaderValue, OVERHEAD};

impl HeaderValue {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        HeaderValue::String(s.into())
    }
}

/// Encodes one message. Names longer than 255 bytes and byte/string values longer than 65535
/// bytes are cut to fit (on a character boundary for strings), so the framing stays valid.
pub fn encode(headers: &[(&str, HeaderValue)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        let name = cut_str(name, usize::from(u8::MAX));
        head.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        head.extend_from_slice(name.as_bytes());
        match value {
            HeaderValue::Bool(true) => head.push(0),
            HeaderValue::Bool(false) => head.push(1),
            HeaderValue::Byte(v) => {
                head.push(2);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Short(v) => {
                head.push(3);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int(v) => {
                head.push(4);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                head.push(5);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(v) => {
                head.push(6);
                let v = v.get(..usize::from(u16::MAX)).unwrap_or(v);
                head.extend_from_slice(&u16::try_from(v.len()).unwrap_or(u16::MAX).to_be_bytes());
                head.extend_from_slice(v);
            }
            HeaderValue::String(s) => {
                head.push(7);
                let s = cut_str(s, usize::from(u16::MAX));
                head.extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes());
                head.extend_from_slice(s.as_bytes());
            }
            HeaderValue::Timestamp(v) => {
                head.push(8);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(v) => {
                head.push(9);
                head.extend_from_slice(v);
            }
        }
    }
    let total = OVERHEAD + head.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary.
fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
