//! Pure translations between wire formats (no host calls): request bodies, response bodies and
//! stream events.

pub mod claude;
pub mod messages;

/// A request that cannot be expressed in the target format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError(pub String);

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stream translator: upstream SSE events in, client SSE wire text out.
pub trait StreamTranslator {
    /// Translates one upstream event.
    fn on_event(&mut self, event: &sdk::sse::SseEvent, out: &mut String);
    /// The upstream stream ended.
    fn finish(&mut self, out: &mut String);
}

impl StreamTranslator for claude::ClaudeStream {
    fn on_event(&mut self, event: &sdk::sse::SseEvent, out: &mut String) {
        claude::ClaudeStream::on_event(self, event, out)
    }
    fn finish(&mut self, out: &mut String) {
        claude::ClaudeStream::finish(self, out)
    }
}

impl StreamTranslator for messages::MessagesStream {
    fn on_event(&mut self, event: &sdk::sse::SseEvent, out: &mut String) {
        messages::MessagesStream::on_event(self, event, out)
    }
    fn finish(&mut self, out: &mut String) {
        messages::MessagesStream::finish(self, out)
    }
}
