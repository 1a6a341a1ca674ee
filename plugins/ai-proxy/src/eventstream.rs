//! `application/vnd.amazon.eventstream` framing (AWS event streams, e.g. Bedrock
//! ConverseStream): an incremental decoder that keeps only the unfinished tail, and (for tests
//! and fuzz seeds only, feature `test-util`) an encoder.
//!
//! A message is: total length (u32 BE), headers length (u32 BE), CRC32 of those 8 bytes,
//! headers, payload, CRC32 of everything before it. A header is: name length (u8), name,
//! value type (u8), value.

use std::fmt;

#[cfg(any(test, feature = "test-util"))]
mod encoder;
#[cfg(any(test, feature = "test-util"))]
pub use encoder::encode;

/// Prelude (12 bytes) plus the trailing message CRC (4 bytes).
const OVERHEAD: usize = 16;
/// Default cap on one message (AWS's own limit on an event-stream message).
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A typed header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false).
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6, u16 length prefix.
    Bytes(Vec<u8>),
    /// Type 7, u16 length prefix, UTF-8.
    String(String),
    /// Type 8: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Type 9: 16 bytes.
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The string, for a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Headers in wire order.
    pub headers: Vec<(String, HeaderValue)>,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl Message {
    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The first header with this name, when it is a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }
}

/// Why a stream cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStreamError {
    /// The prelude CRC does not match (garbage, or not an event stream).
    PreludeCrc,
    /// The message CRC does not match (corrupted message).
    MessageCrc,
    /// A total length below the 16-byte minimum, or a headers length that does not fit.
    BadLength {
        /// Declared total length.
        total: u32,
        /// Declared headers length.
        headers: u32,
    },
    /// A message longer than the decoder's cap.
    TooLarge(u32),
    /// Malformed headers.
    BadHeader(String),
    /// The stream ended inside a message (this many bytes pending).
    Truncated(usize),
}

impl fmt::Display for EventStreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventStreamError::PreludeCrc => f.write_str("event stream prelude CRC mismatch"),
            EventStreamError::MessageCrc => f.write_str("event stream message CRC mismatch"),
            EventStreamError::BadLength { total, headers } => write!(
                f,
                "event stream message with bad lengths (total {total}, headers {headers})"
            ),
            EventStreamError::TooLarge(n) => {
                write!(f, "event stream message of {n} bytes exceeds the limit")
            }
            EventStreamError::BadHeader(why) => write!(f, "event stream header: {why}"),
            EventStreamError::Truncated(n) => {
                write!(f, "event stream ended inside a message ({n} bytes pending)")
            }
        }
    }
}

impl std::error::Error for EventStreamError {}

/// Incremental decoder: feed chunks, get whole messages; memory is the unfinished message.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_message: usize,
    /// Set after the first error; the stream cannot be resynchronised.
    failed: Option<EventStreamError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_MESSAGE)
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

impl Decoder {
    /// A decoder refusing messages longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            max_message: max_message.max(OVERHEAD),
            failed: None,
        }
    }

    /// Bytes held for an unfinished message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Decodes the messages completed by `chunk` into `out`. After an error the decoder stays
    /// failed and returns that error again.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Message>) -> Result<(), EventStreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        let result = loop {
            let rest = self.buf.get(pos..).unwrap_or_default();
            match self.next_len(rest) {
                Ok(Some(len)) => match rest.get(..len).map(decode_message) {
                    Some(Ok(msg)) => {
                        out.push(msg);
                        pos += len;
                    }
                    Some(Err(e)) => break Err(e),
                    // The whole message is not there yet.
                    None => break Ok(()),
                },
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..pos.min(self.buf.len()));
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf = Vec::new();
        }
        result
    }

    /// The total length of the message at the start of `rest`, once its prelude is there and
    /// valid (checked before waiting for the rest of the message).
    fn next_len(&self, rest: &[u8]) -> Result<Option<usize>, EventStreamError> {
        let (Some(total), Some(headers), Some(crc)) =
            (u32_at(rest, 0), u32_at(rest, 4), u32_at(rest, 8))
        else {
            return Ok(None);
        };
        if crc32fast::hash(rest.get(..8).unwrap_or_default()) != crc {
            return Err(EventStreamError::PreludeCrc);
        }
        let total_len = usize::try_from(total).unwrap_or(usize::MAX);
        let headers_len = usize::try_from(headers).unwrap_or(usize::MAX);
        if total_len < OVERHEAD || headers_len > total_len - OVERHEAD {
            return Err(EventStreamError::BadLength { total, headers });
        }
        if total_len > self.max_message {
            return Err(EventStreamError::TooLarge(total));
        }
        Ok(Some(total_len))
    }

    /// The stream ended: an error if a message was left unfinished (or decoding had failed).
    pub fn finish(&self) -> Result<(), EventStreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(EventStreamError::Truncated(self.buf.len()))
        }
    }
}

/// Decodes one whole message (`msg` is exactly its bytes, prelude already checked).
fn decode_message(msg: &[u8]) -> Result<Message, EventStreamError> {
    let body_end = msg.len().saturating_sub(4);
    let crc = u32_at(msg, body_end).ok_or(EventStreamError::Truncated(msg.len()))?;
    if crc32fast::hash(msg.get(..body_end).unwrap_or_default()) != crc {
        return Err(EventStreamError::MessageCrc);
    }
    let headers_len = u32_at(msg, 4)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX);
    let headers_end = 12usize.saturating_add(headers_len);
    let headers = msg
        .get(12..headers_end)
        .ok_or_else(|| EventStreamError::BadHeader("headers overrun the message".into()))?;
    let payload = msg.get(headers_end..body_end).unwrap_or_default();
    Ok(Message {
        headers: decode_headers(headers)?,
        payload: payload.to_vec(),
    })
}

/// A cursor over header bytes; every read fails instead of running past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EventStreamError> {
        let end = self.pos.saturating_add(n);
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| EventStreamError::BadHeader("header runs past the headers".into()))?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EventStreamError> {
        let bytes = self.take(N)?;
        bytes
            .try_into()
            .map_err(|_| EventStreamError::BadHeader("short header value".into()))
    }

    fn u8(&mut self) -> Result<u8, EventStreamError> {
        Ok(u8::from_be_bytes(self.array::<1>()?))
    }

    fn u16(&mut self) -> Result<u16, EventStreamError> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }
}

fn decode_headers(bytes: &[u8]) -> Result<Vec<(String, HeaderValue)>, EventStreamError> {
    let mut r = Reader { bytes, pos: 0 };
    let mut headers = Vec::new();
    while r.pos < bytes.len() {
        let name_len = r.u8()?;
        if name_len == 0 {
            return Err(EventStreamError::BadHeader("empty header name".into()));
        }
        let name = std::str::from_utf8(r.take(usize::from(name_len))?)
            .map_err(|_| EventStreamError::BadHeader("header name is not UTF-8".into()))?
            .to_string();
        let value = match r.u8()? {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(r.array()?)),
            3 => HeaderValue::Short(i16::from_be_bytes(r.array()?)),
            4 => HeaderValue::Int(i32::from_be_bytes(r.array()?)),
            5 => HeaderValue::Long(i64::from_be_bytes(r.array()?)),
            6 => {
                let n = r.u16()?;
                HeaderValue::Bytes(r.take(usize::from(n))?.to_vec())
            }
            7 => {
                let n = r.u16()?;
                let s = std::str::from_utf8(r.take(usize::from(n))?).map_err(|_| {
                    EventStreamError::BadHeader(format!("value of {name} is not UTF-8"))
                })?;
                HeaderValue::String(s.to_string())
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(r.array()?)),
            9 => HeaderValue::Uuid(r.array()?),
            t => {
                return Err(EventStreamError::BadHeader(format!(
                    "unknown value type {t} of {name}"
                )))
            }
        };
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_headers() -> Vec<(&'static str, HeaderValue)> {
        vec![
            ("true", HeaderValue::Bool(true)),
            ("false", HeaderValue::Bool(false)),
            ("byte", HeaderValue::Byte(-7)),
            ("short", HeaderValue::Short(-1234)),
            ("int", HeaderValue::Int(0x1234_5678)),
            ("long", HeaderValue::Long(-0x0102_0304_0506_0708)),
            ("bytes", HeaderValue::Bytes(vec![0, 1, 2, 255])),
            (":event-type", HeaderValue::string("contentBlockDelta")),
            ("ts", HeaderValue::Timestamp(1_700_000_000_123)),
            ("uuid", HeaderValue::Uuid(*b"0123456789abcdef")),
        ]
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, EventStreamError> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.feed(bytes, &mut out)?;
        d.finish()?;
        Ok(out)
    }

    /// aws-c-event-stream's published test messages.
    #[test]
    fn known_vectors() {
        let empty = [
            0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98,
            0xc8, 0xff,
        ];
        let msgs = decode_all(&empty).unwrap();
        assert_eq!(
            msgs,
            vec![Message {
                headers: vec![],
                payload: vec![]
            }]
        );
        assert_eq!(encode(&[], b""), empty);

        let mut no_headers = vec![
            0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a,
        ];
        no_headers.extend_from_slice(b"{'foo':'bar'}");
        no_headers.extend_from_slice(&[0xc3, 0x65, 0x39, 0x36]);
        let msgs = decode_all(&no_headers).unwrap();
        assert_eq!(msgs[0].payload, b"{'foo':'bar'}");
        assert_eq!(encode(&[], b"{'foo':'bar'}"), no_headers);

        let mut one_header = vec![
            0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96, 0x0C,
        ];
        one_header.extend_from_slice(b"content-type");
        one_header.extend_from_slice(&[0x07, 0x00, 0x10]);
        one_header.extend_from_slice(b"application/json");
        one_header.extend_from_slice(b"{'foo':'bar'}");
        one_header.extend_from_slice(&[0x8D, 0x9C, 0x08, 0xB1]);
        let msgs = decode_all(&one_header).unwrap();
        assert_eq!(msgs[0].header_str("content-type"), Some("application/json"));
        assert_eq!(msgs[0].payload, b"{'foo':'bar'}");
        assert_eq!(
            encode(
                &[("content-type", HeaderValue::string("application/json"))],
                b"{'foo':'bar'}"
            ),
            one_header
        );
    }

    #[test]
    fn round_trip_every_header_type() {
        let headers = all_headers();
        let wire = encode(&headers, b"payload \xff bytes");
        let msgs = decode_all(&wire).unwrap();
        assert_eq!(msgs.len(), 1);
        let expected: Vec<(String, HeaderValue)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_string(), v.clone()))
            .collect();
        assert_eq!(msgs[0].headers, expected);
        assert_eq!(msgs[0].payload, b"payload \xff bytes");
        assert_eq!(
            msgs[0].header(":event-type"),
            Some(&HeaderValue::string("contentBlockDelta"))
        );
        assert_eq!(msgs[0].header_str("int"), None);
        assert_eq!(msgs[0].header("missing"), None);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let mut wire = Vec::new();
        for i in 0..4 {
            wire.extend(encode(
                &[(":event-type", HeaderValue::string(format!("e{i}")))],
                format!("{{\"n\":{i}}}").as_bytes(),
            ));
        }
        wire.extend(encode(&all_headers(), b""));
        let whole = decode_all(&wire).unwrap();
        assert_eq!(whole.len(), 5);
        for cut in 0..=wire.len() {
            let (a, b) = wire.split_at(cut);
            let mut d = Decoder::default();
            let mut out = Vec::new();
            d.feed(a, &mut out).unwrap();
            assert!(d.buffered() < 200, "only the unfinished message is held");
            d.feed(b, &mut out).unwrap();
            d.finish().unwrap();
            assert_eq!(out, whole, "cut at {cut}");
        }
        // One byte at a time.
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, whole);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn corruption_is_detected() {
        let wire = encode(&all_headers(), b"hello");
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x01;
            let err = decode_all(&bad).unwrap_err();
            if i < 12 {
                // Length bytes or prelude CRC: the prelude check fails first.
                assert_eq!(err, EventStreamError::PreludeCrc, "byte {i}");
            } else {
                assert_eq!(err, EventStreamError::MessageCrc, "byte {i}");
            }
        }
    }

    #[test]
    fn failed_decoder_stays_failed() {
        let mut bad = encode(&[], b"x");
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let mut d = Decoder::default();
        let mut out = Vec::new();
        assert_eq!(d.feed(&bad, &mut out), Err(EventStreamError::MessageCrc));
        let good = encode(&[], b"y");
        assert_eq!(d.feed(&good, &mut out), Err(EventStreamError::MessageCrc));
        assert_eq!(d.finish(), Err(EventStreamError::MessageCrc));
        assert!(out.is_empty());
        assert_eq!(d.buffered(), 0);
    }

    /// A prelude with a valid CRC but the given lengths.
    fn prelude(total: u32, headers: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&headers.to_be_bytes());
        let crc = crc32fast::hash(&p);
        p.extend_from_slice(&crc.to_be_bytes());
        p
    }

    #[test]
    fn absurd_lengths_are_rejected_early() {
        let mut out = Vec::new();
        // A 4 GiB message is refused from its prelude alone.
        let mut d = Decoder::default();
        assert_eq!(
            d.feed(&prelude(u32::MAX, 0), &mut out),
            Err(EventStreamError::TooLarge(u32::MAX))
        );
        let mut d = Decoder::new(64);
        assert_eq!(
            d.feed(&prelude(65, 0), &mut out),
            Err(EventStreamError::TooLarge(65))
        );
        for (total, headers) in [(15, 0), (0, 0), (20, 5), (16, u32::MAX)] {
            let mut d = Decoder::default();
            assert_eq!(
                d.feed(&prelude(total, headers), &mut out),
                Err(EventStreamError::BadLength { total, headers })
            );
        }
        // Garbage (an HTML error page, say) fails on the prelude CRC.
        let mut d = Decoder::default();
        assert_eq!(
            d.feed(b"<html><body>502 Bad Gateway</body></html>", &mut out),
            Err(EventStreamError::PreludeCrc)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn malformed_headers_are_errors() {
        // Each body is framed with valid CRCs so only the header parser can object.
        let frame = |headers: &[u8]| {
            let total = u32::try_from(16 + headers.len()).unwrap();
            let mut m = prelude(total, u32::try_from(headers.len()).unwrap());
            m.extend_from_slice(headers);
            let crc = crc32fast::hash(&m);
            m.extend_from_slice(&crc.to_be_bytes());
            m
        };
        for headers in [
            &[0u8][..],                // empty name
            &[5, b'a', b'b'],          // name runs past the end
            &[1, b'a', 10],            // unknown type
            &[1, b'a', 4, 0, 0],       // short int
            &[1, b'a', 7, 0, 9, b'x'], // string longer than the headers
            &[1, b'a', 7, 0, 1, 0xff], // string not UTF-8
            &[1, 0xff, 0],             // name not UTF-8
            &[1, b'a'],                // no type
        ] {
            let err = decode_all(&frame(headers)).unwrap_err();
            assert!(
                matches!(err, EventStreamError::BadHeader(_)),
                "{headers:?}: {err}"
            );
        }
    }

    #[test]
    fn truncated_stream_is_reported_by_finish() {
        let wire = encode(&[(":event-type", HeaderValue::string("x"))], b"{}");
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.feed(&wire[..wire.len() - 3], &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(d.finish(), Err(EventStreamError::Truncated(wire.len() - 3)));
        // Fewer bytes than a prelude are also pending.
        let mut d = Decoder::default();
        d.feed(&wire[..5], &mut out).unwrap();
        assert_eq!(d.finish(), Err(EventStreamError::Truncated(5)));
        assert!(Decoder::default().finish().is_ok());
    }

    #[test]
    fn oversized_header_values_are_cut_to_fit() {
        let long_name = "n".repeat(300);
        let long_value = "é".repeat(40_000); // 80000 bytes
        let wire = encode(
            &[
                (long_name.as_str(), HeaderValue::string(long_value.clone())),
                ("b", HeaderValue::Bytes(vec![7; 70_000])),
            ],
            b"",
        );
        let msgs = decode_all(&wire).unwrap();
        let (name, value) = &msgs[0].headers[0];
        assert_eq!(name.len(), 255);
        let s = value.as_str().unwrap();
        assert_eq!(s.len(), 65_534);
        assert!(long_value.starts_with(s));
        assert_eq!(msgs[0].headers[1].1, HeaderValue::Bytes(vec![7; 65_535]));
    }
}
