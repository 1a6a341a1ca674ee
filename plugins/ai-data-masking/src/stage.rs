//! The masking core driven by the pipeline: the request is checked for sensitive words and
//! masked before it leaves; the answer is checked and its masked values restored, whole or
//! event by event with a bounded held tail.

use crate::config::MaskingConfig;
use crate::core::{self, MaskMap, Restorer};
use sdk::api::ClientProtocol;
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::guard::{complete_events, deny_response, StreamEnding};
use sdk::host::{Host, LogLevel, MetricType};
use sdk::llm::{anthropic, openai};
use sdk::pipeline::{BodyMode, BodyOutcome, ChunkOut, Exchange, Need, RequestBody, Stage};
use sdk::sse::{SseDecoder, SseEvent};
use sdk::usage::json::JsonRead;
use serde_json::{json, Value};
use std::rc::Rc;

/// Chars of already sent answer text kept to find a sensitive word split across chunks.
const RECENT_CHARS: usize = 64;

/// Which part of the request the config checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The chat conversation (`deny_openai`).
    Chat,
    /// Strings selected by `deny_jsonpath`.
    Paths,
    /// Every string (`deny_raw`).
    Raw,
}

/// How the answer is handled.
enum Answer {
    Off,
    Json,
    Stream {
        tail: Vec<u8>,
        ending: Box<StreamEnding>,
        /// The last answer text sent.
        recent: String,
    },
}

/// Per-request state.
pub struct MaskingStage {
    rules: Rc<RuleSet<MaskingConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<MaskingConfig>>,
    scope: Scope,
    protocol: ClientProtocol,
    stream: bool,
    model: String,
    restorer: Restorer,
    answer: Answer,
    blocked: bool,
}

impl MaskingStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<MaskingConfig>>) -> MaskingStage {
        MaskingStage {
            rules,
            active: None,
            scope: Scope::Chat,
            protocol: ClientProtocol::OpenAi,
            stream: false,
            model: String::new(),
            restorer: Restorer::default(),
            answer: Answer::Off,
            blocked: false,
        }
    }

    fn deny_reply(&self, config: &MaskingConfig) -> ErrorReply {
        if self.scope == Scope::Chat {
            let (ct, body) = deny_response(
                self.protocol,
                self.stream,
                config.deny_code,
                &config.deny_message,
                &self.model,
            );
            ErrorReply::raw(config.deny_code, &ct, body)
        } else {
            ErrorReply::raw(
                config.deny_code,
                &config.deny_content_type,
                config.deny_raw_message.clone(),
            )
        }
    }

    fn record_deny(&self, host: &dyn Host, direction: &str, word: &str) {
        let name = format!("ai_data_masking.denied.direction=.={direction};.;");
        if let Ok(id) = host.define_metric(MetricType::Counter, &name) {
            let _ = host.increment_metric(id, 1);
        }
        // The word itself is sensitive: log its length, not the word.
        host.log(
            LogLevel::Info,
            &format!(
                "[ai-data-masking] {direction} denied: sensitive word of {} chars",
                word.chars().count()
            ),
        );
    }

    /// The refusal that replaces a whole answer holding a denied `word`.
    fn deny_answer(&self, host: &dyn Host, config: &MaskingConfig, word: &str) -> ChunkOut {
        self.record_deny(host, "response", word);
        let reply = if self.scope == Scope::Chat {
            deny_response(self.protocol, false, 200, &config.deny_message, &self.model).1
        } else {
            config.deny_raw_message.clone()
        };
        ChunkOut::edited(reply.into_bytes())
    }

    /// Applies `f` to the strings the scope covers.
    fn each_text(&self, config: &MaskingConfig, body: &mut Value, f: &mut dyn FnMut(&mut String)) {
        match self.scope {
            Scope::Chat => core::each_prompt_text(body, f),
            Scope::Paths => config.paths().iter().for_each(|p| p.each_string(body, f)),
            Scope::Raw => core::each_string(body, f),
        }
    }

    /// Restores and checks one stream chunk of complete events; None when it must be cut.
    /// The events of `data` with masked values restored; `None` when nothing changed (the
    /// bytes go on as they came, not re-encoded).
    fn stream_events(
        &mut self,
        ex: &mut Exchange,
        config: &MaskingConfig,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        if self.restorer.is_empty() {
            return self.check_events(ex, config, data).map(|()| None);
        }
        let mut events = Vec::new();
        let mut decoder = SseDecoder::default();
        if decoder.feed(data, &mut events).is_err() {
            // An event beyond the decoder's limit: passed on as it came.
            return Ok(None);
        }
        decoder.finish(&mut events);
        let Answer::Stream { ending, recent, .. } = &mut self.answer else {
            return Ok(None);
        };
        let mut out = String::with_capacity(data.len());
        let mut sent_text = String::new();
        let mut touched = false;
        for mut event in events {
            if event.data == "[DONE]" {
                // Parts still holding text end here.
                for key in self.restorer.pending_keys() {
                    let rest = self.restorer.flush(key);
                    if !rest.is_empty() {
                        touched = true;
                        sent_text.push_str(&rest);
                        let chunk = json!({"object": "chat.completion.chunk", "model": self.model,
                            "choices": [{"index": key, "delta": {"content": rest}, "finish_reason": null}]});
                        SseEvent::data(chunk.to_string()).encode_into(&mut out);
                    }
                }
                event.encode_into(&mut out);
                continue;
            }
            let Ok(mut value) = serde_json::from_str::<Value>(&event.data) else {
                event.encode_into(&mut out);
                continue;
            };
            let mut before = None;
            match self.protocol {
                ClientProtocol::OpenAi => {
                    if let Some(Value::Array(choices)) = value.get_mut("choices") {
                        for choice in choices {
                            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                            let finished =
                                choice.get("finish_reason").is_some_and(Value::is_string);
                            let Some(delta) =
                                choice.get_mut("delta").and_then(Value::as_object_mut)
                            else {
                                continue;
                            };
                            let piece = delta.get("content").and_then(Value::as_str);
                            let mut text = match piece {
                                Some(piece) => self.restorer.feed(index, piece),
                                None => String::new(),
                            };
                            if finished {
                                text.push_str(&self.restorer.flush(index));
                            }
                            touched |= piece.unwrap_or_default() != text;
                            if delta.contains_key("content") || !text.is_empty() {
                                sent_text.push_str(&text);
                                delta.insert("content".into(), Value::String(text));
                            }
                        }
                    }
                }
                ClientProtocol::Anthropic => {
                    let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                    match value.get("type").and_then(Value::as_str) {
                        Some("content_block_delta") => {
                            if let Some(delta) = value.get_mut("delta") {
                                if let Some(Value::String(piece)) = delta.get_mut("text") {
                                    let text = self.restorer.feed(index, piece);
                                    touched |= *piece != text;
                                    sent_text.push_str(&text);
                                    *piece = text;
                                }
                            }
                        }
                        Some("content_block_stop") => {
                            let rest = self.restorer.flush(index);
                            if !rest.is_empty() {
                                touched = true;
                                sent_text.push_str(&rest);
                                before =
                                    Some(json!({"type": "content_block_delta", "index": index,
                                    "delta": {"type": "text_delta", "text": rest}}));
                            }
                        }
                        _ => {}
                    }
                }
                // Responses events (reached with Higress's chat scope only): every string,
                // whole. A value split across two deltas stays masked.
                ClientProtocol::Responses => {
                    let restorer = &self.restorer;
                    core::each_string(&mut value, &mut |s| {
                        let restored = restorer.restore_all(s);
                        touched |= restored != *s;
                        *s = restored;
                    });
                }
            }
            if let Some(extra) = before {
                ending.observe(&extra);
                SseEvent::typed("content_block_delta", extra.to_string()).encode_into(&mut out);
            }
            ending.observe(&value);
            event.data = value.to_string();
            event.encode_into(&mut out);
        }
        check_recent(config, recent, &sent_text)?;
        ending.release();
        Ok(touched.then(|| out.into_bytes()))
    }

    /// Nothing to restore: the events go on as they came (parsed once for every stage, not
    /// re-encoded); their text is checked for deny words.
    fn check_events(
        &mut self,
        ex: &mut Exchange,
        config: &MaskingConfig,
        data: &[u8],
    ) -> Result<(), String> {
        let protocol = self.protocol;
        let Answer::Stream { ending, recent, .. } = &mut self.answer else {
            return Ok(());
        };
        let mut sent_text = String::new();
        for event in ex.response_events(data).0 {
            let Some(json) = event.json() else {
                continue;
            };
            ending.observe(json);
            match protocol {
                ClientProtocol::OpenAi => {
                    let choices = json.get("choices").map(|c| c.items());
                    for choice in choices.into_iter().flatten() {
                        let content = choice.get("delta").and_then(|d| d.get("content"));
                        sent_text.push_str(content.and_then(|c| c.as_str()).unwrap_or_default());
                    }
                }
                ClientProtocol::Anthropic => {
                    if json.get("type").and_then(|t| t.as_str()) == Some("content_block_delta") {
                        let text = json.get("delta").and_then(|d| d.get("text"));
                        sent_text.push_str(text.and_then(|t| t.as_str()).unwrap_or_default());
                    }
                }
                // Responses events are restored, not checked (as the restoring path does).
                ClientProtocol::Responses => {}
            }
        }
        check_recent(config, recent, &sent_text)?;
        ending.release();
        Ok(())
    }
}

/// Checks the text sent so far (its last [`RECENT_CHARS`] and `sent`) for deny words, so a word
/// split across chunks is still found.
fn check_recent(config: &MaskingConfig, recent: &mut String, sent: &str) -> Result<(), String> {
    if !config.has_deny_words() || sent.is_empty() {
        return Ok(());
    }
    let mut check = std::mem::take(recent);
    check.push_str(sent);
    if let Some(word) = config.denied(&check) {
        return Err(word);
    }
    let keep = check.chars().count().saturating_sub(RECENT_CHARS);
    *recent = check.chars().skip(keep).collect();
    Ok(())
}

impl Stage for MaskingStage {
    fn name(&self) -> &'static str {
        "ai-data-masking"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        if !ex.api().has_json_body() {
            return Ok(Need::Nothing);
        }
        let Some(config) = self.rules.select(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        if !config.has_deny_words() && config.rules().is_empty() {
            return Ok(Need::Nothing);
        }
        self.scope = if config.deny_openai && ex.api().is_chat() {
            Scope::Chat
        } else if !config.paths().is_empty() {
            Scope::Paths
        } else if config.deny_raw {
            Scope::Raw
        } else {
            return Ok(Need::Nothing);
        };
        self.active = Some(config.clone());
        self.protocol = ex.protocol();
        Ok(Need::Body)
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let Some(config) = self.active.as_deref() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let Some(mut body) = ex.body.as_ref().and_then(RequestBody::to_json) else {
            self.active = None;
            return Ok(BodyOutcome::UNCHANGED);
        };
        self.stream = body.get("stream").and_then(Value::as_bool) == Some(true);
        self.model = ex
            .body
            .as_ref()
            .and_then(RequestBody::model)
            .unwrap_or_default()
            .to_string();
        let mut denied = None;
        self.each_text(config, &mut body, &mut |s| {
            if denied.is_none() {
                denied = config.denied(s);
            }
        });
        if let Some(word) = denied {
            self.record_deny(host, "request", &word);
            return Err(self.deny_reply(config));
        }
        if config.rules().is_empty() {
            return Ok(BodyOutcome::UNCHANGED);
        }
        let mut map = MaskMap::default();
        let mut changed = false;
        self.each_text(config, &mut body, &mut |s| {
            let masked = core::mask_text(config.rules(), s, &mut map);
            if masked != *s {
                *s = masked;
                changed = true;
            }
        });
        self.restorer = Restorer::new(&map);
        if !changed {
            return Ok(BodyOutcome::UNCHANGED);
        }
        let new_body = match &ex.body {
            Some(RequestBody::Chat(_)) => serde_json::from_value::<openai::ChatRequest>(body)
                .map(RequestBody::Chat)
                .map_err(|e| e.to_string()),
            Some(RequestBody::Messages(_)) => {
                serde_json::from_value::<anthropic::MessagesRequest>(body)
                    .map(RequestBody::Messages)
                    .map_err(|e| e.to_string())
            }
            _ => Ok(RequestBody::Json(body)),
        };
        match new_body {
            Ok(b) => {
                ex.body = Some(b);
                Ok(BodyOutcome::CHANGED)
            }
            Err(e) => {
                // The body would leave unmasked: refuse instead.
                host.log(
                    LogLevel::Error,
                    &format!("[ai-data-masking] masked body does not parse back: {e}"),
                );
                Err(ErrorReply::internal("the request could not be masked"))
            }
        }
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        let Some(config) = self.active.as_deref() else {
            return BodyMode::Untouched;
        };
        if self.restorer.is_empty() && !config.has_deny_words() {
            return BodyMode::Untouched;
        }
        if !(200..300).contains(&ex.response_status(host)) {
            return BodyMode::Untouched;
        }
        let content_type = ex.response_header(host, "content-type").unwrap_or_default();
        if content_type.contains("text/event-stream") {
            if self.scope != Scope::Chat {
                return BodyMode::Untouched;
            }
            self.answer = Answer::Stream {
                tail: Vec::new(),
                ending: Box::new(StreamEnding::new(self.protocol)),
                recent: String::new(),
            };
            BodyMode::Stream
        } else {
            self.answer = Answer::Json;
            BodyMode::Buffer
        }
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> ChunkOut {
        if self.blocked {
            return ChunkOut::edited(Vec::new());
        }
        let Some(config) = self.active.clone() else {
            return ChunkOut::pass(chunk);
        };
        match &mut self.answer {
            Answer::Off => ChunkOut::pass(chunk),
            Answer::Json if self.restorer.is_empty() && self.scope == Scope::Chat => {
                // Nothing to restore: only deny words are looked for, in the answer's text as
                // the exchange parsed it once for every stage.
                if !config.has_deny_words() {
                    return ChunkOut::pass(chunk);
                }
                let mut text = String::new();
                if let Some(body) = ex.response_json(&chunk) {
                    sdk::usage::response_text(body, &mut text);
                }
                match config.denied(&text) {
                    Some(word) => self.deny_answer(host, &config, &word),
                    None => ChunkOut::pass(chunk),
                }
            }
            Answer::Json => {
                let Ok(mut body) = serde_json::from_slice::<Value>(&chunk) else {
                    return ChunkOut::pass(chunk);
                };
                let chat = self.scope == Scope::Chat;
                let mut denied = None;
                let mut changed = false;
                let mut visit = |s: &mut String| {
                    let restored = self.restorer.restore_all(s);
                    if restored != *s {
                        *s = restored;
                        changed = true;
                    }
                    if denied.is_none() {
                        denied = config.denied(s);
                    }
                };
                if chat {
                    core::each_answer_text(&mut body, &mut visit);
                } else {
                    core::each_string(&mut body, &mut visit);
                }
                if let Some(word) = denied {
                    return self.deny_answer(host, &config, &word);
                }
                if !changed {
                    return ChunkOut::pass(chunk);
                }
                ChunkOut::edited(body.to_string().into_bytes())
            }
            Answer::Stream { tail, .. } => {
                let joined = !tail.is_empty();
                let mut data = std::mem::take(tail);
                data.extend_from_slice(&chunk);
                let cut = if end {
                    data.len()
                } else {
                    complete_events(&data)
                };
                let rest = data.split_off(cut);
                // The bytes differ from the chunk when a tail was joined or kept back.
                let regrouped = joined || !rest.is_empty();
                if let Answer::Stream { tail, .. } = &mut self.answer {
                    *tail = rest;
                }
                if data.is_empty() {
                    return ChunkOut::edited(Vec::new());
                }
                match self.stream_events(ex, &config, &data) {
                    Ok(Some(out)) => ChunkOut::edited(out),
                    Ok(None) if regrouped => ChunkOut::edited(data),
                    Ok(None) => ChunkOut::pass(data),
                    Err(word) => {
                        self.record_deny(host, "response", &word);
                        self.blocked = true;
                        let ending = match &self.answer {
                            Answer::Stream { ending, .. } => ending.ending(),
                            _ => String::new(),
                        };
                        ChunkOut::edited(ending.into_bytes())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::host::MockHost;
    use sdk::pipeline::Pipeline;

    /// A masking pipeline that has read a chat request for `prompt` and the answer's headers
    /// (SSE when `stream`, else JSON).
    fn answering(config: &str, prompt: &str, stream: bool) -> (Pipeline, MockHost) {
        let rules =
            Rc::new(RuleSet::parse(config.as_bytes(), sdk::config::RuleMode::Override).unwrap());
        let mut p = Pipeline::new(vec![Box::new(MaskingStage::new(rules))]);
        let body = json!({"model": "m", "stream": stream,
            "messages": [{"role": "user", "content": prompt}]})
        .to_string();
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("content-type", "application/json"),
        ]);
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        p.on_request_headers(&host, false);
        p.on_request_body(&host, body.len(), true);
        let content_type = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        *host.response_headers.borrow_mut() = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), content_type.into()),
        ];
        p.on_response_headers(&host);
        (p, host)
    }

    /// What the client gets of an OpenAI stream of `pieces` (one per callback), and whether
    /// each chunk was rewritten.
    fn stream(config: &str, prompt: &str, pieces: &[&str]) -> (String, Vec<bool>, MockHost) {
        let (mut p, host) = answering(config, prompt, true);
        let (mut client, mut written) = (String::new(), Vec::new());
        for (i, piece) in pieces.iter().enumerate() {
            let chunk = format!(
                "data: {}\n\n",
                json!({"object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": piece}}]})
            );
            *host.response_body.borrow_mut() = chunk.clone().into_bytes();
            host.reset_host_calls();
            p.on_response_body(&host, chunk.len(), i + 1 == pieces.len());
            written.push(
                host.host_call_counts()
                    .iter()
                    .any(|(k, _)| *k == "set_response_body"),
            );
            client.push_str(&String::from_utf8_lossy(&host.response_body.borrow()));
        }
        (client, written, host)
    }

    /// What the client gets of a whole `answer` (JSON) to `prompt`, and whether it was rewritten.
    fn whole(config: &str, prompt: &str, answer: &Value) -> (Value, bool) {
        let (mut p, host) = answering(config, prompt, false);
        let answer = answer.to_string();
        *host.response_body.borrow_mut() = answer.clone().into_bytes();
        host.reset_host_calls();
        p.on_response_body(&host, answer.len(), true);
        let written = host
            .host_call_counts()
            .iter()
            .any(|(k, _)| *k == "set_response_body");
        let out = serde_json::from_slice(&host.response_body.borrow()).unwrap();
        (out, written)
    }

    #[test]
    fn whole_answers_are_checked_for_deny_words_and_restored() {
        let config = r#"{"deny_words": ["project falcon"], "deny_message": "Blocked",
            "replace_roles": [{"regex": "\\w+@\\w+\\.com", "type": "replace", "restore": true,
                "value": "[email]"}]}"#;
        let answer = |text: &str| {
            json!({"object": "chat.completion", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
        };
        // Nothing masked, nothing denied: the answer goes on untouched.
        let (out, written) = whole(config, "hello", &answer("all fine"));
        assert_eq!((out, written), (answer("all fine"), false));
        // Nothing masked, a deny word: the refusal replaces the answer.
        let (out, _) = whole(config, "hello", &answer("about Project Falcon now"));
        assert_eq!(out["choices"][0]["message"]["content"], "Blocked", "{out}");
        assert_eq!(
            out["choices"][0]["finish_reason"], "content_filter",
            "{out}"
        );
        // A Responses answer is read too.
        let responses = json!({"object": "response", "output": [{"type": "message",
            "content": [{"type": "output_text", "text": "project falcon"}]}]});
        let (out, _) = whole(config, "hello", &responses);
        assert!(out.to_string().contains("Blocked"), "{out}");
        // A masked value comes back restored.
        let (out, written) = whole(config, "mail ann@x.com", &answer("to [email]"));
        assert_eq!(out["choices"][0]["message"]["content"], "to ann@x.com");
        assert!(written);
    }

    #[test]
    fn unmasked_streams_pass_as_they_came_and_deny_words_split_across_chunks_are_cut() {
        let config = r#"{"deny_words": ["project falcon"], "deny_message": "Blocked",
            "replace_roles": [{"regex": "\\w+@\\w+\\.com", "type": "replace", "restore": true,
                "value": "[email]"}]}"#;
        // Nothing masked: each event goes on as it came, not re-encoded.
        let (client, written, _) = stream(config, "hello", &["all ", "fine"]);
        assert!(
            client.contains("\"all \"") && client.contains("\"fine\""),
            "{client}"
        );
        assert_eq!(written, [false, false]);
        let (client, written, host) = stream(config, "hello", &["about project ", "falcon now"]);
        assert!(!client.contains("falcon now"), "{client}");
        assert!(client.contains("content_filter"), "{client}");
        assert_eq!(written, [false, true]);
        assert_eq!(
            host.metric("ai_data_masking.denied.direction=.=response;.;"),
            Some(1)
        );
        // A masked value comes back restored (the events are rewritten).
        let (client, written, _) = stream(config, "mail ann@x.com", &["to [email]", " done"]);
        assert!(client.contains("ann@x.com"), "{client}");
        assert_eq!(written, [true, false]);
    }
}
