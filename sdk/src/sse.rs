//! Incremental Server-Sent Events codec: bytes in, events out, keeping only the unfinished tail.
//!
//! Follows the WHATWG event-stream rules: lines end in LF, CRLF or CR; `data:` lines join with
//! `\n`; lines starting with `:` are comments; one leading space after the colon is dropped; a
//! blank line ends an event. Memory is bounded by `max_event_bytes`.

use std::fmt::Write as _;

/// One decoded event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// `id:` field.
    pub id: Option<String>,
    /// `retry:` field, milliseconds.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// A `data:`-only event.
    pub fn data(data: impl Into<String>) -> SseEvent {
        SseEvent {
            data: data.into(),
            ..SseEvent::default()
        }
    }

    /// An event with a type and data.
    pub fn typed(event: impl Into<String>, data: impl Into<String>) -> SseEvent {
        SseEvent {
            event: Some(event.into()),
            data: data.into(),
            ..SseEvent::default()
        }
    }

    /// Appends the wire form of this event (ending in a blank line) to `out`.
    pub fn encode_into(&self, out: &mut String) {
        if let Some(event) = &self.event {
            let _ = writeln!(out, "event: {event}");
        }
        if let Some(id) = &self.id {
            let _ = writeln!(out, "id: {id}");
        }
        if let Some(retry) = self.retry {
            let _ = writeln!(out, "retry: {retry}");
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }

    /// The wire form of this event.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + 16);
        self.encode_into(&mut out);
        out
    }
}

/// Why decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past the configured bound without ending.
    #[error("server-sent event larger than {0} bytes")]
    EventTooLarge(usize),
}

/// Default bound on one event (its unfinished line plus its data so far).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// The incremental decoder. Feed chunks as they arrive; complete events come out.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    skip_lf: bool,
    current: SseEvent,
    data_seen: bool,
    max_event_bytes: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    /// A decoder that fails once one event exceeds `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> SseDecoder {
        SseDecoder {
            line: Vec::new(),
            skip_lf: false,
            current: SseEvent::default(),
            data_seen: false,
            max_event_bytes,
        }
    }

    /// Whether the decoder holds nothing: no unfinished line, no fields of an unfinished event,
    /// no pending CR. Then feeding it bytes gives the same events as feeding a new decoder.
    pub fn is_idle(&self) -> bool {
        self.line.is_empty()
            && !self.skip_lf
            && !self.data_seen
            && self.current.event.is_none()
            && self.current.id.is_none()
            && self.current.retry.is_none()
    }

    /// Inside a line: the bytes so far end without a line break (a stream cut here was cut
    /// mid-event).
    pub fn mid_line(&self) -> bool {
        !self.line.is_empty()
    }

    /// Bytes held for an unfinished line or event.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.current.data.len()
    }

    /// Decodes `chunk`, pushing every event it completes onto `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.feed_with(chunk, |event| out.push(event.clone()))
    }

    /// Decodes `chunk`, handing every event it completes to `on_event` (the event is reused
    /// for the next one: nothing is allocated per event once warm).
    pub fn feed_with(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(&SseEvent),
    ) -> Result<(), SseError> {
        let mut rest = chunk;
        if self.skip_lf {
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
            if !rest.is_empty() {
                self.skip_lf = false;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = rest.split_at(pos);
            let is_cr = tail.first() == Some(&b'\r');
            let mut tail = tail.get(1..).unwrap_or_default();
            if is_cr {
                if tail.is_empty() {
                    self.skip_lf = true;
                } else if let Some(t) = tail.strip_prefix(b"\n") {
                    tail = t;
                }
            }
            if self.line.is_empty() {
                self.process_line(head, &mut on_event);
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, &mut on_event);
                self.line = line;
                self.line.clear();
            }
            rest = tail;
        }
        self.line.extend_from_slice(rest);
        if self.buffered() > self.max_event_bytes {
            return Err(SseError::EventTooLarge(self.max_event_bytes));
        }
        Ok(())
    }

    /// Ends the stream: an event left without its blank line is still delivered.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        self.finish_with(|event| out.push(event.clone()));
    }

    /// [`SseDecoder::finish`], handing the last event to `on_event`.
    pub fn finish_with(&mut self, mut on_event: impl FnMut(&SseEvent)) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut on_event);
        }
        self.dispatch(&mut on_event);
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(&SseEvent)) {
        let Some(&first) = line.first() else {
            self.dispatch(on_event);
            return;
        };
        if first == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = line.get(i + 1..).unwrap_or_default();
                (
                    line.get(..i).unwrap_or_default(),
                    v.strip_prefix(b" ").unwrap_or(v),
                )
            }
            None => (line, &b""[..]),
        };
        let value = match std::str::from_utf8(value) {
            Ok(v) => std::borrow::Cow::Borrowed(v),
            Err(_) => String::from_utf8_lossy(value),
        };
        match name {
            b"data" => {
                if self.data_seen {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.data_seen = true;
            }
            b"event" => {
                self.current.event = Some(value.into_owned());
            }
            b"id" if !value.contains('\0') => {
                self.current.id = Some(value.into_owned());
            }
            b"retry" => {
                if let Ok(ms) = value.parse() {
                    self.current.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    /// A blank line: deliver the event if it had data (per the spec), then start afresh
    /// (keeping the data buffer).
    fn dispatch(&mut self, on_event: &mut impl FnMut(&SseEvent)) {
        if self.data_seen {
            on_event(&self.current);
        }
        self.current.data.clear();
        self.current.event = None;
        self.current.id = None;
        self.current.retry = None;
        self.data_seen = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        d.feed(input, &mut out).unwrap();
        d.finish(&mut out);
        out
    }

    const STREAM: &str = ": keep-alive comment\r\nevent: message_start\r\nid: 7\r\ndata: {\"a\":1}\r\n\r\ndata: line one\ndata:line two\ndata\n\nretry: 250\rdata: cr only\r\rdata: ümlaut ✓\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                event: Some("message_start".into()),
                id: Some("7".into()),
                data: "{\"a\":1}".into(),
                retry: None,
            },
            SseEvent::data("line one\nline two\n"),
            SseEvent {
                retry: Some(250),
                ..SseEvent::data("cr only")
            },
            SseEvent::data("ümlaut ✓"),
        ]
    }

    #[test]
    fn decodes_fields_comments_and_line_endings() {
        assert_eq!(decode_all(STREAM.as_bytes()), expected());
    }

    #[test]
    fn any_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut d = SseDecoder::default();
                let mut out = Vec::new();
                d.feed(&bytes[..i], &mut out).unwrap();
                d.feed(&bytes[i..j], &mut out).unwrap();
                d.feed(&bytes[j..], &mut out).unwrap();
                d.finish(&mut out);
                assert_eq!(out, expected(), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_keeps_only_the_tail() {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for b in STREAM.as_bytes() {
            d.feed(std::slice::from_ref(b), &mut out).unwrap();
            assert!(d.buffered() < 64);
        }
        d.finish(&mut out);
        assert_eq!(out, expected());
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert!(decode_all(b"event: ping\n\n: only a comment\n\n").is_empty());
        assert_eq!(decode_all(b"data:\n\n"), vec![SseEvent::data("")]);
    }

    #[test]
    fn unterminated_event_is_delivered_at_finish() {
        assert_eq!(decode_all(b"data: [DONE]"), vec![SseEvent::data("[DONE]")]);
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut d = SseDecoder::new(16);
        let mut out = Vec::new();
        assert!(d.feed(b"data: 0123456789", &mut out).is_ok());
        assert_eq!(
            d.feed(b"0123456789", &mut out),
            Err(SseError::EventTooLarge(16))
        );
    }

    #[test]
    fn encode_round_trips() {
        for ev in expected() {
            assert_eq!(decode_all(ev.encode().as_bytes()), vec![ev]);
        }
        assert_eq!(
            SseEvent::typed("ping", "{}").encode(),
            "event: ping\ndata: {}\n\n"
        );
    }
}
