//! Pure moderation logic: local deny rules, the text to check, moderation service bodies, stream
//! windows, well-formed endings for cut streams and deny answers. No host calls.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use sdk::api::ClientProtocol;
use sdk::error::ErrorReply;
use sdk::llm::{anthropic, openai};
use sdk::sse::SseEvent;
use sdk::usage::json::{pick, JsonRead};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Content type of JSON answers.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// Content type of streamed answers.
pub const SSE_CONTENT_TYPE: &str = "text/event-stream";
/// Id of OpenAI answers the gateway makes up.
pub const OPENAI_DENY_ID: &str = "chatcmpl-moderation";
/// Id of Anthropic answers the gateway makes up.
pub const ANTHROPIC_DENY_ID: &str = "msg_moderation";
/// Chars of the previous window kept at the start of the next one.
pub const WINDOW_OVERLAP_CHARS: usize = 40;

/// Largest compiled single pattern, so a config cannot exhaust the VM's memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Largest compiled word list and combined set.
const COMBINED_SIZE_LIMIT: usize = 8 << 20;

/// Which part of a request is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckScope {
    /// The last user message that carries text.
    #[default]
    LastUserMessage,
    /// Every user message.
    AllUserMessages,
    /// Every message, system prompt and tool results included.
    Conversation,
}

// ---------------------------------------------------------------------------------------------
// Local rules
// ---------------------------------------------------------------------------------------------

/// Compiled local deny rules for one direction.
///
/// Words match case-insensitively on Unicode word boundaries (so `bomb` does not match `bombay`
/// but matches `BOMB!` and `Bomb.`); words in scripts written without spaces (CJK, Thai, …)
/// match anywhere. Phrases match with any run of whitespace between their words. Patterns are
/// Rust regexes compiled case-insensitive and Unicode aware. Everything is one [`RegexSet`],
/// built once at config time.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Word list (one entry, first, when there are words) plus each pattern.
    set: Option<RegexSet>,
    /// The same regexes one by one, to extract the matched text once the set matched.
    each: Vec<Regex>,
}

impl Rules {
    /// Compiles the rules. The error carries the index into `patterns` of the bad pattern, or
    /// `usize::MAX` when the word list (or the rules as a whole) cannot be compiled. Blank
    /// words are skipped; a pattern that matches the empty text is an error.
    pub fn new(words: &[String], patterns: &[String]) -> Result<Rules, (usize, String)> {
        let mut sources = Vec::with_capacity(patterns.len() + 1);
        let mut each = Vec::with_capacity(patterns.len() + 1);
        let alternatives: Vec<String> = words.iter().filter_map(|w| word_regex(w)).collect();
        if !alternatives.is_empty() {
            let source = alternatives.join("|");
            let re = compile(&source, COMBINED_SIZE_LIMIT).map_err(|e| (usize::MAX, e))?;
            sources.push(source);
            each.push(re);
        }
        for (i, pattern) in patterns.iter().enumerate() {
            let re = compile(pattern, PATTERN_SIZE_LIMIT).map_err(|e| (i, e))?;
            if re.is_match("") {
                return Err((
                    i,
                    "the pattern matches the empty text, so it would deny everything".into(),
                ));
            }
            sources.push(pattern.clone());
            each.push(re);
        }
        if each.is_empty() {
            return Ok(Rules::default());
        }
        let set = RegexSetBuilder::new(&sources)
            .case_insensitive(true)
            .unicode(true)
            .size_limit(COMBINED_SIZE_LIMIT)
            .build()
            .map_err(|e| (usize::MAX, format!("the rules together are too large: {e}")))?;
        Ok(Rules {
            set: Some(set),
            each,
        })
    }

    /// Whether there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.set.is_none()
    }

    /// The first match: the matched text (for logs/metrics), or None. Words are tried first,
    /// then patterns in config order; within one rule the leftmost match wins.
    pub fn find(&self, text: &str) -> Option<String> {
        let set = self.set.as_ref()?;
        let first = set.matches(text).iter().next()?;
        self.each
            .get(first)?
            .find(text)
            .map(|m| m.as_str().to_string())
    }
}

fn compile(source: &str, size_limit: usize) -> Result<Regex, String> {
    RegexBuilder::new(source)
        .case_insensitive(true)
        .unicode(true)
        .size_limit(size_limit)
        .build()
        .map_err(|e| e.to_string())
}

/// The regex for one deny word or phrase, or None for a blank one.
fn word_regex(word: &str) -> Option<String> {
    let parts: Vec<String> = word.split_whitespace().map(regex::escape).collect();
    let first = word.trim_start().chars().next()?;
    let last = word.trim_end().chars().next_back()?;
    let before = if needs_boundary(first) {
        r"\b{start-half}"
    } else {
        ""
    };
    let after = if needs_boundary(last) {
        r"\b{end-half}"
    } else {
        ""
    };
    Some(format!("(?:{before}{}{after})", parts.join(r"\s+")))
}

/// A word character in the sense of regex `\w` (close enough for edges of deny words).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether a word edge needs a word boundary: word characters of scripts written with spaces.
fn needs_boundary(c: char) -> bool {
    is_word_char(c) && !is_unspaced_script(c)
}

/// Scripts that do not separate words with spaces (or attach particles, as Hangul does).
fn is_unspaced_script(c: char) -> bool {
    matches!(u32::from(c),
        0x0E00..=0x0EFF     // Thai, Lao
        | 0x1000..=0x109F   // Myanmar
        | 0x1100..=0x11FF   // Hangul Jamo
        | 0x1780..=0x17FF   // Khmer
        | 0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3130..=0x318F   // Hangul compatibility Jamo
        | 0x31F0..=0x31FF   // Katakana phonetic extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFF9F   // Halfwidth Katakana
        | 0x20000..=0x3FFFF // CJK extensions B and later
    )
}

// ---------------------------------------------------------------------------------------------
// Text to check
// ---------------------------------------------------------------------------------------------

fn join_texts(texts: impl Iterator<Item = String>) -> String {
    texts
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn openai_message_text(m: &openai::ChatMessage) -> String {
    m.content
        .as_ref()
        .map(openai::Content::text)
        .unwrap_or_default()
}

/// The text to check in an OpenAI chat request, by scope: message strings and `text` parts.
/// `lastUserMessage` skips user messages without text (e.g. only an image).
pub fn request_text_openai(req: &openai::ChatRequest, scope: CheckScope) -> String {
    let users = || req.messages.iter().filter(|m| m.role == "user");
    match scope {
        CheckScope::LastUserMessage => users()
            .rev()
            .map(openai_message_text)
            .find(|t| !t.trim().is_empty())
            .unwrap_or_default(),
        CheckScope::AllUserMessages => join_texts(users().map(openai_message_text)),
        CheckScope::Conversation => join_texts(req.messages.iter().map(openai_message_text)),
    }
}

/// Text of a `tool_result` block's `content` (a string or text blocks).
fn tool_result_text(block: &anthropic::Block) -> String {
    match block.extra.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => join_texts(
            items
                .iter()
                .filter(|i| i.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .map(str::to_string),
        ),
        _ => String::new(),
    }
}

/// Text of Anthropic content: the string, or its `text` blocks (and `tool_result` contents
/// when `tool_results`), joined with `\n`.
fn anthropic_content_text(content: &anthropic::Content, tool_results: bool) -> String {
    match content {
        anthropic::Content::Text(s) => s.clone(),
        anthropic::Content::Blocks(blocks) => {
            join_texts(blocks.iter().map(|b| match (b.kind.as_str(), &b.text) {
                ("text", Some(t)) => t.clone(),
                ("tool_result", _) if tool_results => tool_result_text(b),
                _ => String::new(),
            }))
        }
    }
}

/// The text to check in an Anthropic messages request, by scope. User scopes read `text`
/// blocks only (`lastUserMessage` skips turns made only of tool results); `conversation` adds
/// `system`, assistant turns and `tool_result` contents.
pub fn request_text_anthropic(req: &anthropic::MessagesRequest, scope: CheckScope) -> String {
    let users = || req.messages.iter().filter(|m| m.role == "user");
    match scope {
        CheckScope::LastUserMessage => users()
            .rev()
            .map(|m| anthropic_content_text(&m.content, false))
            .find(|t| !t.trim().is_empty())
            .unwrap_or_default(),
        CheckScope::AllUserMessages => {
            join_texts(users().map(|m| anthropic_content_text(&m.content, false)))
        }
        CheckScope::Conversation => {
            let system = req.system.iter().map(|s| anthropic_content_text(s, false));
            let turns = req
                .messages
                .iter()
                .map(|m| anthropic_content_text(&m.content, true));
            join_texts(system.chain(turns))
        }
    }
}

/// The answer text of a non-streaming OpenAI response: each choice's content (string or text
/// parts) and `reasoning_content`.
pub fn response_text_openai(resp: &openai::ChatResponse) -> String {
    join_texts(resp.choices.iter().flat_map(|c| {
        let reasoning = c
            .message
            .extra
            .get("reasoning_content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        [reasoning, openai_message_text(&c.message)]
    }))
}

/// The answer text of a non-streaming Anthropic response: `text` and `thinking` blocks.
pub fn response_text_anthropic(resp: &anthropic::MessagesResponse) -> String {
    join_texts(resp.content.iter().map(|b| {
        match b.kind.as_str() {
            "text" => b.text.clone().unwrap_or_default(),
            "thinking" => b
                .extra
                .get("thinking")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        }
    }))
}

/// The answer text one stream event's JSON carries: OpenAI chunk `choices[].delta.content` and
/// `reasoning_content`; Anthropic `content_block_delta` `text_delta.text` and
/// `thinking_delta.thinking`. Empty for anything else.
pub fn event_text<'a, J: JsonRead<'a>>(data: J) -> String {
    let mut out = String::new();
    let [choices, kind, delta] = pick(data, ["choices", "type", "delta"]);
    if let Some(choices) = choices.filter(|c| c.is_array()) {
        for delta in choices.items().filter_map(|c| c.get("delta")) {
            for s in pick(delta, ["reasoning_content", "content"])
                .into_iter()
                .filter_map(|v| v.and_then(J::as_str))
            {
                out.push_str(s);
            }
        }
    } else if kind.and_then(J::as_str) == Some("content_block_delta") {
        let key = match delta.and_then(|d| d.get("type")).and_then(J::as_str) {
            Some("text_delta") => "text",
            Some("thinking_delta") => "thinking",
            _ => return out,
        };
        if let Some(s) = delta.and_then(|d| d.get(key)).and_then(J::as_str) {
            out.push_str(s);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Moderation service (OpenAI moderation API)
// ---------------------------------------------------------------------------------------------

/// Splits `text` into pieces of at most `max_chars` chars (at least 1), cut on char
/// boundaries, preferring to cut after whitespace in the second half of a piece. The pieces
/// concatenate back to `text`; empty text gives no pieces.
pub fn split_text(text: &str, max_chars: usize) -> Vec<&str> {
    let max = max_chars.max(1);
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len();
        let mut after_space = None;
        for (n, (i, c)) in rest.char_indices().enumerate() {
            if n == max {
                end = i;
                break;
            }
            if c.is_whitespace() && (n + 1) * 2 >= max {
                after_space = Some(i + c.len_utf8());
            }
        }
        if end < rest.len() {
            if let Some(cut) = after_space {
                end = cut;
            }
        }
        let (Some(piece), Some(tail)) = (rest.get(..end), rest.get(end..)) else {
            break;
        };
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The JSON body for the OpenAI moderation API: `{"input": [pieces…], "model"?}`, the pieces
/// as [`split_text`] cuts them. Callers should not call the service for empty text.
pub fn moderation_request(text: &str, max_chars: usize, model: Option<&str>) -> String {
    let mut body = Map::new();
    body.insert("input".into(), json!(split_text(text, max_chars)));
    if let Some(model) = model {
        body.insert("model".into(), json!(model));
    }
    Value::Object(body).to_string()
}

/// What the moderation service said.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceVerdict {
    /// Nothing flagged.
    Allow,
    /// Flagged, with the flagged category names (first seen first, no repeats).
    Deny {
        /// Flagged categories; may be empty when the service flags without naming any.
        categories: Vec<String>,
    },
    /// The answer could not be understood (or was an error); the reason.
    Invalid(String),
}

/// Reads a moderation answer. Without thresholds each result's `flagged` decides and
/// `categories` set to true are listed; with thresholds only those categories count, flagged
/// when `category_scores[category] >= threshold` (a category the service does not score is not
/// flagged). Any flagged result denies.
pub fn parse_moderation(body: &[u8], thresholds: &BTreeMap<String, f64>) -> ServiceVerdict {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return ServiceVerdict::Invalid(format!("moderation answer is not JSON: {e}")),
    };
    if let Some(error) = value.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string);
        return ServiceVerdict::Invalid(format!("moderation service error: {message}"));
    }
    let Some(results) = value.get("results").and_then(Value::as_array) else {
        return ServiceVerdict::Invalid("moderation answer has no `results` array".into());
    };
    if results.is_empty() {
        return ServiceVerdict::Invalid("moderation answer has empty `results`".into());
    }
    let mut flagged = false;
    let mut categories: Vec<String> = Vec::new();
    let add = |name: &str, categories: &mut Vec<String>| {
        if !categories.iter().any(|c| c == name) {
            categories.push(name.to_string());
        }
    };
    for (i, result) in results.iter().enumerate() {
        if thresholds.is_empty() {
            let Some(this) = result.get("flagged").and_then(Value::as_bool) else {
                return ServiceVerdict::Invalid(format!(
                    "moderation answer lacks a boolean `results[{i}].flagged`"
                ));
            };
            if this {
                flagged = true;
                if let Some(cats) = result.get("categories").and_then(Value::as_object) {
                    for (name, _) in cats.iter().filter(|(_, v)| v.as_bool() == Some(true)) {
                        add(name, &mut categories);
                    }
                }
            }
        } else {
            let Some(scores) = result.get("category_scores").and_then(Value::as_object) else {
                return ServiceVerdict::Invalid(format!(
                    "moderation answer lacks an object `results[{i}].category_scores`"
                ));
            };
            for (name, threshold) in thresholds {
                let score = scores.get(name).and_then(Value::as_f64);
                if score.is_some_and(|s| s >= *threshold) {
                    flagged = true;
                    add(name, &mut categories);
                }
            }
        }
    }
    if flagged {
        ServiceVerdict::Deny { categories }
    } else {
        ServiceVerdict::Allow
    }
}

// ---------------------------------------------------------------------------------------------
// Stream windows
// ---------------------------------------------------------------------------------------------

/// Accumulates the answer text of a stream into windows.
#[derive(Debug, Clone, Default)]
pub struct Window {
    size: usize,
    text: String,
    /// Chars added since the last roll (the overlap does not count).
    fresh: usize,
}

impl Window {
    /// An empty window that is ready at `size` chars.
    pub fn new(size: usize) -> Self {
        Window {
            size,
            text: String::new(),
            fresh: 0,
        }
    }

    /// Adds the text carried by one stream event's JSON (see [`event_text`]). Returns true when
    /// the window is ready to check: the text added since the last roll reached `size` chars,
    /// or the text just added ends a sentence and at least `size / 4` chars were added since
    /// the last roll. An event without text returns false.
    pub fn push_event<'a, J: JsonRead<'a>>(&mut self, data: J) -> bool {
        let added = event_text(data);
        self.push_text(&added)
    }

    /// Like [`Window::push_event`] for plain text.
    pub fn push_text(&mut self, added: &str) -> bool {
        if added.is_empty() {
            return false;
        }
        self.text.push_str(added);
        self.fresh += added.chars().count();
        self.fresh >= self.size || (ends_sentence(added) && self.fresh >= self.size / 4)
    }

    /// The window's text so far, overlap included (not cleared).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Starts a new window, keeping the last ~40 chars of the old one as overlap so a word
    /// split across windows is still seen. The overlap starts at a word start when the cut
    /// would fall inside a word of a spaced script, so a word's tail is not checked alone.
    pub fn roll(&mut self) {
        let start = overlap_start(&self.text, WINDOW_OVERLAP_CHARS);
        self.text = self.text.get(start..).unwrap_or_default().to_string();
        self.fresh = 0;
    }

    /// Whether no text came since the last roll.
    pub fn is_empty(&self) -> bool {
        self.fresh == 0
    }
}

/// Whether `text` holds a sentence end: `.`, `!` or `?` followed by whitespace or the end of
/// `text`, or a full-width `。`, `！`, `？` anywhere (those scripts need no space after).
fn ends_sentence(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '。' | '！' | '？' => return true,
            '.' | '!' | '?' if chars.peek().is_none_or(|n| n.is_whitespace()) => return true,
            _ => {}
        }
    }
    false
}

/// Byte index where the overlap of the last `keep` chars of `text` starts.
fn overlap_start(text: &str, keep: usize) -> usize {
    let Some(start) = keep
        .checked_sub(1)
        .and_then(|n| text.char_indices().rev().nth(n))
        .map(|(i, _)| i)
    else {
        return if keep == 0 { text.len() } else { 0 };
    };
    let (Some(head), Some(tail)) = (text.get(..start), text.get(start..)) else {
        return start;
    };
    let inside_word = head.chars().next_back().is_some_and(needs_boundary)
        && tail.chars().next().is_some_and(needs_boundary);
    if inside_word {
        if let Some(offset) = tail.find(|c: char| !is_word_char(c)) {
            return start + offset;
        }
    }
    start
}

// ---------------------------------------------------------------------------------------------
// Cut streams
// ---------------------------------------------------------------------------------------------

/// Tracks what a cut stream needs to end well-formed and builds that ending. Events are seen
/// when they arrive and count as the client's only once released: a choice that finished in a
/// held window the cut drops still gets its `content_filter` ending.
#[derive(Debug, Clone, Default)]
pub struct StreamEnding {
    /// Everything seen, held events included.
    seen: Seen,
    /// What the client has been sent.
    released: Seen,
}

impl StreamEnding {
    /// Nothing observed yet.
    pub fn new(protocol: ClientProtocol) -> Self {
        let seen = Seen {
            protocol,
            ..Seen::default()
        };
        StreamEnding {
            released: seen.clone(),
            seen,
        }
    }

    /// Notes one event's JSON as it arrives.
    pub fn observe<'a, J: JsonRead<'a>>(&mut self, data: J) {
        self.seen.observe(data);
    }

    /// The events observed so far reached the client.
    pub fn release(&mut self) {
        self.released.clone_from(&self.seen);
    }

    /// SSE wire text that ends the stream after what the client was sent (see
    /// [`Seen::ending`]); ids and model come from every event seen.
    pub fn ending(&self) -> String {
        let mut basis = self.released.clone();
        if basis.id.is_none() {
            basis.id.clone_from(&self.seen.id);
        }
        if basis.model.is_none() {
            basis.model.clone_from(&self.seen.model);
        }
        if basis.created.is_none() {
            basis.created = self.seen.created;
        }
        basis.ending()
    }
}

/// What a stream's events showed.
#[derive(Debug, Clone, Default)]
struct Seen {
    protocol: ClientProtocol,
    /// OpenAI chunk id / Anthropic message id.
    id: Option<String>,
    model: Option<String>,
    /// OpenAI `created`.
    created: Option<u64>,
    /// OpenAI choice indices seen, and those that already finished.
    choices: BTreeSet<u64>,
    finished: BTreeSet<u64>,
    /// Anthropic: `message_start` seen.
    started: bool,
    /// Anthropic: last content block opened, and whether it was stopped.
    open_block: Option<u64>,
    block_stopped: bool,
    /// Anthropic: `message_delta` / `message_stop` seen.
    delta_seen: bool,
    stop_seen: bool,
}

impl Seen {
    /// Notes one event's JSON.
    fn observe<'a, J: JsonRead<'a>>(&mut self, data: J) {
        match self.protocol {
            ClientProtocol::OpenAi => self.observe_openai(data),
            ClientProtocol::Anthropic => self.observe_anthropic(data),
        }
    }

    fn observe_openai<'a, J: JsonRead<'a>>(&mut self, data: J) {
        let [id, model, created, choices] = pick(data, ["id", "model", "created", "choices"]);
        let text = |v: Option<J>| {
            v.and_then(J::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        if self.id.is_none() {
            self.id = text(id);
        }
        if self.model.is_none() {
            self.model = text(model);
        }
        if self.created.is_none() {
            self.created = created.and_then(J::as_u64);
        }
        for choice in choices.into_iter().flat_map(J::items) {
            let [index, finish_reason] = pick(choice, ["index", "finish_reason"]);
            let index = index.and_then(J::as_u64).unwrap_or(0);
            self.choices.insert(index);
            if finish_reason.is_some_and(J::is_string) {
                self.finished.insert(index);
            }
        }
    }

    fn observe_anthropic<'a, J: JsonRead<'a>>(&mut self, data: J) {
        let index = || data.get("index").and_then(J::as_u64).unwrap_or(0);
        match data.get("type").and_then(J::as_str) {
            Some("message_start") => {
                self.started = true;
                let message = data.get("message");
                let field = |key: &str| {
                    message
                        .and_then(|m| m.get(key))
                        .and_then(J::as_str)
                        .map(str::to_string)
                };
                self.id = field("id");
                self.model = field("model");
            }
            Some("content_block_start") => {
                self.open_block = Some(index());
                self.block_stopped = false;
            }
            Some("content_block_stop") if self.open_block == Some(index()) => {
                self.block_stopped = true;
            }
            Some("message_delta") => self.delta_seen = true,
            Some("message_stop") => self.stop_seen = true,
            _ => {}
        }
    }

    /// SSE wire text that ends the stream. OpenAI: a `content_filter` finish chunk for each
    /// choice not yet finished (index 0 when none was seen), same id/model/created as seen (or
    /// made up), then `data: [DONE]`. Anthropic: `message_start` if none was seen, then
    /// `content_block_stop` for an open block, `message_delta` with `stop_reason: "refusal"`
    /// and `usage.output_tokens` 0 (unless one was seen), and `message_stop`; empty when
    /// `message_stop` was already seen.
    fn ending(&self) -> String {
        let mut out = String::new();
        let model = self.model.as_deref().unwrap_or_default();
        match self.protocol {
            ClientProtocol::OpenAi => {
                let id = self.id.as_deref().unwrap_or(OPENAI_DENY_ID);
                let created = self.created.unwrap_or(0);
                let mut pending: Vec<u64> =
                    self.choices.difference(&self.finished).copied().collect();
                if self.choices.is_empty() {
                    pending.push(0);
                }
                for index in pending {
                    let chunk =
                        openai_chunk(id, created, model, index, json!({}), Some("content_filter"));
                    SseEvent::data(chunk.to_string()).encode_into(&mut out);
                }
                SseEvent::data("[DONE]").encode_into(&mut out);
            }
            ClientProtocol::Anthropic => {
                if self.stop_seen {
                    return out;
                }
                let mut events = Vec::new();
                if !self.started {
                    let id = self.id.as_deref().unwrap_or(ANTHROPIC_DENY_ID);
                    events.push(anthropic_message_start(id, model));
                }
                if let (Some(index), false) = (self.open_block, self.block_stopped) {
                    events.push(json!({"type": "content_block_stop", "index": index}));
                }
                if !self.delta_seen {
                    events.push(anthropic_refusal_delta());
                }
                events.push(json!({"type": "message_stop"}));
                encode_typed(&events, &mut out);
            }
        }
        out
    }
}

fn openai_chunk(
    id: &str,
    created: u64,
    model: &str,
    index: u64,
    delta: Value,
    finish_reason: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
    })
}

fn anthropic_message_start(id: &str, model: &str) -> Value {
    json!({"type": "message_start", "message": {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }})
}

fn anthropic_refusal_delta() -> Value {
    json!({"type": "message_delta",
        "delta": {"stop_reason": "refusal", "stop_sequence": null},
        "usage": {"output_tokens": 0}})
}

/// Encodes Anthropic events with `event:` lines named by their `type`.
fn encode_typed(events: &[Value], out: &mut String) {
    for event in events {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        SseEvent::typed(kind, event.to_string()).encode_into(out);
    }
}

// ---------------------------------------------------------------------------------------------
// Deny answers
// ---------------------------------------------------------------------------------------------

/// The deny answer in the client's protocol: `(content_type, body)`.
///
/// `deny_code` 200 answers like the model would: OpenAI a `chat.completion` (or, streaming, a
/// role chunk, a content chunk, a `content_filter` finish chunk and `[DONE]`) whose content is
/// `message` and finish reason `content_filter`; Anthropic a `message` with one text block and
/// `stop_reason: "refusal"` (or, streaming, the whole event sequence from `message_start` to
/// `message_stop`). Any other code gives the [`ErrorReply`] JSON for the protocol (type
/// `invalid_request_error`, code `content_filter`), streaming or not.
pub fn deny_response(
    protocol: ClientProtocol,
    stream: bool,
    deny_code: u32,
    message: &str,
    model: &str,
) -> (String, String) {
    if deny_code != 200 {
        let reply = ErrorReply::new(
            deny_code,
            "invalid_request_error",
            Some("content_filter"),
            message,
        );
        return (JSON_CONTENT_TYPE.into(), reply.body(protocol));
    }
    let body = match (protocol, stream) {
        (ClientProtocol::OpenAi, false) => json!({
            "id": OPENAI_DENY_ID,
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": message},
                "logprobs": null,
                "finish_reason": "content_filter",
            }],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })
        .to_string(),
        (ClientProtocol::Anthropic, false) => json!({
            "id": ANTHROPIC_DENY_ID,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": message}],
            "stop_reason": "refusal",
            "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        })
        .to_string(),
        (ClientProtocol::OpenAi, true) => {
            let mut out = String::new();
            let chunks = [
                (json!({"role": "assistant", "content": ""}), None),
                (json!({"content": message}), None),
                (json!({}), Some("content_filter")),
            ];
            for (delta, finish) in chunks {
                let chunk = openai_chunk(OPENAI_DENY_ID, 0, model, 0, delta, finish);
                SseEvent::data(chunk.to_string()).encode_into(&mut out);
            }
            SseEvent::data("[DONE]").encode_into(&mut out);
            return (SSE_CONTENT_TYPE.into(), out);
        }
        (ClientProtocol::Anthropic, true) => {
            let mut out = String::new();
            let events = [
                anthropic_message_start(ANTHROPIC_DENY_ID, model),
                json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": message}}),
                json!({"type": "content_block_stop", "index": 0}),
                anthropic_refusal_delta(),
                json!({"type": "message_stop"}),
            ];
            encode_typed(&events, &mut out);
            return (SSE_CONTENT_TYPE.into(), out);
        }
    };
    (JSON_CONTENT_TYPE.into(), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::sse::SseDecoder;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn rules(words: &[&str], patterns: &[&str]) -> Rules {
        Rules::new(&strings(words), &strings(patterns)).unwrap()
    }

    fn decode(wire: &str) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        d.feed(wire.as_bytes(), &mut out).unwrap();
        d.finish(&mut out);
        out
    }

    fn data(events: &[SseEvent]) -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    // ---- rules ----

    #[test]
    fn words_match_on_word_boundaries() {
        let r = rules(&["bomb"], &[]);
        assert_eq!(r.find("how to build a BOMB!").as_deref(), Some("BOMB"));
        assert_eq!(r.find("Bomb.").as_deref(), Some("Bomb"));
        assert_eq!(r.find("(bomb)").as_deref(), Some("bomb"));
        assert!(r.find("bombay is a city").is_none());
        assert!(r.find("a megabomb").is_none());
        assert!(r.find("bomb_squad").is_none());
        assert!(r.find("").is_none());
    }

    #[test]
    fn words_fold_unicode_case() {
        let r = rules(&["straße", "бомба"], &[]);
        assert_eq!(r.find("STRAßE").as_deref(), Some("STRAßE"));
        assert_eq!(r.find("die STRAẞE hier").as_deref(), Some("STRAẞE"));
        assert_eq!(r.find("Это БОМБА.").as_deref(), Some("БОМБА"));
        assert!(r.find("бомбардировка").is_none());
        assert!(r.find("straßenbahn").is_none());
        let r = rules(&["ÉCOLE"], &[]);
        assert!(r.find("une école.").is_some());
        assert!(r.find("écoles").is_none());
    }

    #[test]
    fn unspaced_scripts_match_inside_text() {
        let r = rules(&["炸弹", "폭탄"], &[]);
        assert_eq!(r.find("如何制作炸弹？").as_deref(), Some("炸弹"));
        assert_eq!(r.find("폭탄을 만드는 법").as_deref(), Some("폭탄"));
    }

    #[test]
    fn phrases_match_as_phrases() {
        let r = rules(&["make a bomb", "c++"], &[]);
        assert_eq!(
            r.find("How do I MAKE  A\nBomb?").as_deref(),
            Some("MAKE  A\nBomb")
        );
        assert!(r.find("make a bombastic speech").is_none());
        assert!(r.find("make bomb").is_none());
        assert!(r.find("I write C++ daily").is_some());
        // Regex metacharacters in words are literal.
        assert!(rules(&["a.b"], &[]).find("axb").is_none());
    }

    #[test]
    fn patterns_are_case_insensitive_regexes() {
        let r = rules(
            &[],
            &[r"\b\d{4}-\d{4}-\d{4}-\d{4}\b", "ignore (all )?previous"],
        );
        assert_eq!(
            r.find("card 1234-5678-1234-5678 ok").as_deref(),
            Some("1234-5678-1234-5678")
        );
        assert_eq!(
            r.find("IGNORE ALL PREVIOUS instructions").as_deref(),
            Some("IGNORE ALL PREVIOUS")
        );
        assert!(r.find("nothing here").is_none());
        assert!(rules(&[], &["(?-i)Secret"]).find("secret").is_none());
        // Words come first, then patterns in order.
        let r = rules(&["zeta"], &["alpha", "beta"]);
        assert_eq!(r.find("beta alpha zeta").as_deref(), Some("zeta"));
        assert_eq!(r.find("beta alpha").as_deref(), Some("alpha"));
        // Duplicate group names across patterns are fine.
        let r = rules(&[], &["(?P<x>foo)", "(?P<x>bar)"]);
        assert_eq!(r.find("bar").as_deref(), Some("bar"));
    }

    #[test]
    fn rule_errors_name_the_index() {
        let err = Rules::new(&[], &strings(&["ok", "fine", "(unclosed"])).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(
            err.1.contains("unclosed") || err.1.contains("regex"),
            "{}",
            err.1
        );
        assert_eq!(Rules::new(&[], &strings(&["a|"])).unwrap_err().0, 0);
        let huge = strings(&["\\w{1000}\\w{1000}\\w{1000}"]);
        assert_eq!(Rules::new(&[], &huge).unwrap_err().0, 0);
    }

    #[test]
    fn empty_rules() {
        let r = Rules::new(&strings(&["  "]), &[]).unwrap();
        assert!(r.is_empty() && r.find("anything").is_none());
        assert!(Rules::default().is_empty());
        assert!(!rules(&["x"], &[]).is_empty());
    }

    #[test]
    fn many_words_compile() {
        let words: Vec<String> = (0..2000).map(|i| format!("forbidden{i}")).collect();
        let r = Rules::new(&words, &[]).unwrap();
        assert_eq!(
            r.find("say FORBIDDEN1999.").as_deref(),
            Some("FORBIDDEN1999")
        );
        assert!(r.find("forbidden20000").is_none());
    }

    // ---- request text ----

    fn openai_req() -> openai::ChatRequest {
        serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "system", "content": "sys prompt"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "tool", "tool_call_id": "t", "content": "tool output"},
            {"role": "user", "content": [
                {"type": "text", "text": "part one"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "part two"}]},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
        ]}))
        .unwrap()
    }

    #[test]
    fn openai_scopes() {
        let req = openai_req();
        assert_eq!(
            request_text_openai(&req, CheckScope::LastUserMessage),
            "part one\npart two"
        );
        assert_eq!(
            request_text_openai(&req, CheckScope::AllUserMessages),
            "first question\npart one\npart two"
        );
        assert_eq!(
            request_text_openai(&req, CheckScope::Conversation),
            "sys prompt\nfirst question\nfirst answer\ntool output\npart one\npart two"
        );
        let empty: openai::ChatRequest = serde_json::from_value(json!({"messages": []})).unwrap();
        assert_eq!(request_text_openai(&empty, CheckScope::LastUserMessage), "");
    }

    fn anthropic_req() -> anthropic::MessagesRequest {
        serde_json::from_value(json!({"model": "c", "max_tokens": 10,
            "system": [{"type": "text", "text": "sys block"}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "result string"},
                    {"type": "text", "text": "and now"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t2",
                     "content": [{"type": "text", "text": "block result"}]}]}
            ]}))
        .unwrap()
    }

    #[test]
    fn anthropic_scopes() {
        let req = anthropic_req();
        assert_eq!(
            request_text_anthropic(&req, CheckScope::LastUserMessage),
            "and now"
        );
        assert_eq!(
            request_text_anthropic(&req, CheckScope::AllUserMessages),
            "hello\nand now"
        );
        assert_eq!(
            request_text_anthropic(&req, CheckScope::Conversation),
            "sys block\nhello\ncalling\nresult string\nand now\nblock result"
        );
        let mut plain = req.clone();
        plain.system = Some(anthropic::Content::Text("sys string".into()));
        plain.messages.truncate(1);
        assert_eq!(
            request_text_anthropic(&plain, CheckScope::Conversation),
            "sys string\nhello"
        );
    }

    #[test]
    fn response_texts() {
        let resp: openai::ChatResponse = serde_json::from_value(json!({"choices": [
            {"index": 0, "message": {"role": "assistant", "content": "answer", "reasoning_content": "why"}},
            {"index": 1, "message": {"role": "assistant", "content": null}}]}))
        .unwrap();
        assert_eq!(response_text_openai(&resp), "why\nanswer");
        let resp: anthropic::MessagesResponse = serde_json::from_value(json!({"content": [
            {"type": "thinking", "thinking": "think", "signature": "s"},
            {"type": "text", "text": "said"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}))
        .unwrap();
        assert_eq!(response_text_anthropic(&resp), "think\nsaid");
    }

    // ---- moderation service ----

    #[test]
    fn split_keeps_all_text_and_respects_max() {
        let texts = [
            "hello world, this is a test of the splitter",
            "nowhitespaceatallinthislongword",
            "ümlaut ✓ 中文文本没有空格但是很长 emoji 🎉🎉🎉 done",
            "a",
            "  leading and trailing  ",
        ];
        for text in texts {
            for max in 1..=12 {
                let pieces = split_text(text, max);
                assert_eq!(pieces.concat(), text, "max {max}");
                assert!(pieces.iter().all(|p| !p.is_empty()));
                assert!(
                    pieces.iter().all(|p| p.chars().count() <= max),
                    "{pieces:?} max {max}"
                );
            }
        }
        assert_eq!(
            split_text("hello world again", 8),
            vec!["hello ", "world ", "again"]
        );
        assert_eq!(split_text("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert!(split_text("", 5).is_empty());
        assert_eq!(split_text("abc", 0), vec!["a", "b", "c"]);
    }

    #[test]
    fn moderation_request_body() {
        let body: Value =
            serde_json::from_str(&moderation_request("hello world again", 8, None)).unwrap();
        assert_eq!(body, json!({"input": ["hello ", "world ", "again"]}));
        let body: Value = serde_json::from_str(&moderation_request(
            "short",
            8000,
            Some("omni-moderation-latest"),
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"input": ["short"], "model": "omni-moderation-latest"})
        );
    }

    fn answer(results: Value) -> Vec<u8> {
        json!({"id": "modr-1", "model": "omni-moderation-latest", "results": results})
            .to_string()
            .into_bytes()
    }

    fn result(flagged: bool, cats: &[(&str, bool, f64)]) -> Value {
        let categories: Map<String, Value> = cats
            .iter()
            .map(|(n, f, _)| (n.to_string(), json!(f)))
            .collect();
        let scores: Map<String, Value> = cats
            .iter()
            .map(|(n, _, s)| (n.to_string(), json!(s)))
            .collect();
        json!({"flagged": flagged, "categories": categories, "category_scores": scores})
    }

    #[test]
    fn parse_moderation_uses_flagged_without_thresholds() {
        let none = BTreeMap::new();
        let ok = answer(json!([result(false, &[("violence", false, 0.1)])]));
        assert_eq!(parse_moderation(&ok, &none), ServiceVerdict::Allow);
        let bad = answer(json!([
            result(false, &[("violence", false, 0.1)]),
            result(
                true,
                &[
                    ("violence", true, 0.9),
                    ("hate", false, 0.2),
                    ("self-harm", true, 0.7)
                ]
            ),
            result(true, &[("violence", true, 0.8)]),
        ]));
        assert_eq!(
            parse_moderation(&bad, &none),
            ServiceVerdict::Deny {
                categories: strings(&["violence", "self-harm"])
            }
        );
    }

    #[test]
    fn parse_moderation_with_thresholds() {
        let th: BTreeMap<String, f64> = [("violence".to_string(), 0.5), ("hate".to_string(), 0.3)]
            .into_iter()
            .collect();
        // The service's own `flagged` is ignored; only listed categories count.
        let body = answer(json!([result(
            true,
            &[("violence", true, 0.49), ("sexual", true, 0.99)]
        )]));
        assert_eq!(parse_moderation(&body, &th), ServiceVerdict::Allow);
        let body = answer(json!([
            result(false, &[("violence", false, 0.5)]),
            result(false, &[("hate", false, 0.31), ("violence", false, 0.0)])
        ]));
        assert_eq!(
            parse_moderation(&body, &th),
            ServiceVerdict::Deny {
                categories: strings(&["violence", "hate"])
            }
        );
        // A category the service does not score is not flagged.
        let body = answer(json!([result(false, &[("other", false, 1.0)])]));
        assert_eq!(parse_moderation(&body, &th), ServiceVerdict::Allow);
        let body = answer(json!([{"flagged": true}]));
        assert!(matches!(
            parse_moderation(&body, &th),
            ServiceVerdict::Invalid(_)
        ));
    }

    #[test]
    fn parse_moderation_rejects_junk() {
        let none = BTreeMap::new();
        let junk: [&[u8]; 7] = [
            b"",
            b"not json",
            b"[1,2]",
            br#"{"results": []}"#,
            br#"{"results": "x"}"#,
            br#"{"results": [{"categories": {}}]}"#,
            br#"{"results": [{"flagged": "yes"}]}"#,
        ];
        for body in junk {
            assert!(
                matches!(parse_moderation(body, &none), ServiceVerdict::Invalid(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let err =
            br#"{"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}"#;
        match parse_moderation(err, &none) {
            ServiceVerdict::Invalid(m) => assert!(m.contains("Incorrect API key")),
            other => panic!("{other:?}"),
        }
    }

    // ---- windows ----

    fn oa(text: &str) -> Value {
        json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
    }

    #[test]
    fn event_text_reads_both_protocols() {
        assert_eq!(event_text(&oa("hi")), "hi");
        assert_eq!(
            event_text(
                &json!({"choices": [{"delta": {"reasoning_content": "r"}}, {"delta": {"content": "c"}}]})
            ),
            "rc"
        );
        assert_eq!(
            event_text(&json!({"choices": [{"delta": {"role": "assistant"}}]})),
            ""
        );
        assert_eq!(
            event_text(
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "t"}})
            ),
            "t"
        );
        assert_eq!(
            event_text(
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "th"}})
            ),
            "th"
        );
        assert_eq!(
            event_text(
                &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}})
            ),
            ""
        );
        assert_eq!(event_text(&json!({"type": "message_stop"})), "");
    }

    #[test]
    fn window_ready_at_size() {
        let mut w = Window::new(10);
        assert!(w.is_empty());
        assert!(!w.push_event(&oa("abcd")));
        assert!(!w.push_event(&json!({"type": "ping"})));
        assert!(!w.push_event(&oa("efgh")));
        assert!(!w.is_empty());
        assert!(w.push_event(&oa("ij")));
        assert_eq!(w.text(), "abcdefghij");
        // Chars, not bytes.
        let mut w = Window::new(3);
        assert!(!w.push_event(&oa("äö")));
        assert!(w.push_event(&oa("ü")));
    }

    #[test]
    fn window_ready_at_sentence_end() {
        let mut w = Window::new(40);
        // Too short for a sentence end to count (needs 10 chars).
        assert!(!w.push_text("Hi."));
        assert!(!w.push_text(" This is"));
        assert!(w.push_text(" it. "));
        let mut w = Window::new(40);
        assert!(!w.push_text("version 3.14 of the"));
        assert!(w.push_text(" thing!"));
        let mut w = Window::new(40);
        assert!(!w.push_text("这是一个很长的句子"));
        assert!(w.push_text("。然后"));
        let mut w = Window::new(40);
        assert!(
            w.push_event(&json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Is this a question? Yes"}}))
        );
    }

    #[test]
    fn roll_keeps_an_overlap() {
        let mut w = Window::new(10);
        let long = "one two three four five six seven eight nine ten eleven twelve";
        assert!(w.push_text(long));
        w.roll();
        assert!(w.is_empty());
        // The overlap starts at a word start, within the last 40 chars.
        assert!(long.ends_with(w.text()));
        assert!(w.text().chars().count() <= WINDOW_OVERLAP_CHARS);
        assert_eq!(w.text(), " six seven eight nine ten eleven twelve");
        // A word split across windows is seen in the next one.
        let r = rules(&["twelvebomb"], &[]);
        assert!(r.find(w.text()).is_none());
        assert!(!w.push_text("bo"));
        assert!(w.push_text("mb and more text"));
        assert_eq!(r.find(w.text()).as_deref(), Some("twelvebomb"));
        // Short text is kept whole; an unspaced script is cut at 40 chars.
        let mut w = Window::new(1);
        w.push_text("short");
        w.roll();
        assert_eq!(w.text(), "short");
        let mut w = Window::new(1);
        let han = "字".repeat(100);
        w.push_text(&han);
        w.roll();
        assert_eq!(w.text().chars().count(), 40);
        // One long word is kept as is.
        let mut w = Window::new(1);
        w.push_text(&"x".repeat(100));
        w.roll();
        assert_eq!(w.text().len(), 40);
    }

    // ---- stream endings ----

    #[test]
    fn a_finish_in_a_window_that_was_cut_still_gets_its_ending() {
        // All events, the finishing one included, arrived in one held window that is cut.
        let mut e = StreamEnding::new(ClientProtocol::OpenAi);
        e.observe(&json!({"id": "c1", "created": 7, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "a pangram"}, "finish_reason": null}]}));
        e.observe(
            &json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        );
        let events = decode(&e.ending());
        assert_eq!(events.len(), 2, "{events:?}");
        let chunk: Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(chunk["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(chunk["id"], "c1");
        // Released events count: a finished choice needs no second ending.
        e.release();
        assert_eq!(decode(&e.ending()).len(), 1);

        // Anthropic: a held message_stop does not end the client's stream.
        let mut e = StreamEnding::new(ClientProtocol::Anthropic);
        e.observe(&json!({"type": "message_start", "message": {"id": "msg_1", "model": "m"}}));
        e.release();
        e.observe(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
        e.observe(&json!({"type": "message_stop"}));
        let types: Vec<String> = decode(&e.ending())
            .iter()
            .filter_map(|ev| serde_json::from_str::<Value>(&ev.data).ok())
            .map(|v| v["type"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(types, ["message_delta", "message_stop"]);
    }

    #[test]
    fn openai_ending_reuses_ids() {
        let mut e = StreamEnding::new(ClientProtocol::OpenAi);
        e.observe(&json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}));
        e.observe(&json!({"id": "chatcmpl-9", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": null}]}));
        e.release();
        let events = decode(&e.ending());
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data, "[DONE]");
        let chunk: openai::ChatChunk = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(
            (chunk.id.as_str(), chunk.model.as_str(), chunk.created),
            ("chatcmpl-9", "gpt-4o", 1700000000)
        );
        assert_eq!(chunk.object, "chat.completion.chunk");
        assert_eq!(chunk.choices.len(), 1);
        assert_eq!(
            chunk.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        assert_eq!(chunk.choices[0].delta, json!({}));
    }

    #[test]
    fn openai_ending_without_events_and_with_several_choices() {
        let e = StreamEnding::new(ClientProtocol::OpenAi);
        let events = decode(&e.ending());
        let chunks = data(&events);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0]["id"], OPENAI_DENY_ID);
        assert_eq!(chunks[0]["choices"][0]["index"], 0);
        assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));

        let mut e = StreamEnding::new(ClientProtocol::OpenAi);
        e.observe(&json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]}));
        e.observe(&json!({"id": "c", "choices": [{"index": 1, "delta": {"content": "b"}}]}));
        e.observe(
            &json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        );
        e.release();
        let chunks = data(&decode(&e.ending()));
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0]["choices"][0]["index"], 1);
    }

    fn anthropic_stream_start(e: &mut StreamEnding) {
        e.observe(
            &json!({"type": "message_start", "message": {"id": "msg_9", "type": "message",
            "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        );
    }

    #[test]
    fn anthropic_ending_closes_the_open_block() {
        let mut e = StreamEnding::new(ClientProtocol::Anthropic);
        anthropic_stream_start(&mut e);
        e.observe(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}));
        e.observe(&json!({"type": "content_block_stop", "index": 0}));
        e.observe(&json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}));
        e.observe(&json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}}));
        e.release();
        let events = decode(&e.ending());
        let kinds: Vec<_> = events
            .iter()
            .map(|e| e.event.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let parsed: Vec<anthropic::StreamEvent> = events
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert_eq!(
            parsed[0],
            anthropic::StreamEvent::ContentBlockStop { index: 1 }
        );
        match &parsed[1] {
            anthropic::StreamEvent::MessageDelta { delta, usage } => {
                assert_eq!(delta["stop_reason"], "refusal");
                assert_eq!(usage.as_ref().map(|u| u.output_tokens), Some(0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parsed[2], anthropic::StreamEvent::MessageStop);
    }

    #[test]
    fn anthropic_ending_in_other_states() {
        // Block already stopped: no second stop.
        let mut e = StreamEnding::new(ClientProtocol::Anthropic);
        anthropic_stream_start(&mut e);
        e.observe(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
        e.observe(&json!({"type": "content_block_stop", "index": 0}));
        e.release();
        let kinds: Vec<_> = decode(&e.ending())
            .into_iter()
            .filter_map(|e| e.event)
            .collect();
        assert_eq!(kinds, ["message_delta", "message_stop"]);
        // Nothing seen: a whole (empty) message.
        let e = StreamEnding::new(ClientProtocol::Anthropic);
        let events = decode(&e.ending());
        let kinds: Vec<_> = events.iter().filter_map(|e| e.event.clone()).collect();
        assert_eq!(kinds, ["message_start", "message_delta", "message_stop"]);
        let start: anthropic::StreamEvent = serde_json::from_str(&events[0].data).unwrap();
        assert!(
            matches!(start, anthropic::StreamEvent::MessageStart { message } if message.id == ANTHROPIC_DENY_ID)
        );
        // message_delta seen: only the stop; message_stop seen: nothing.
        let mut e = StreamEnding::new(ClientProtocol::Anthropic);
        anthropic_stream_start(&mut e);
        e.observe(&json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}));
        e.release();
        let kinds: Vec<_> = decode(&e.ending())
            .into_iter()
            .filter_map(|e| e.event)
            .collect();
        assert_eq!(kinds, ["message_stop"]);
        e.observe(&json!({"type": "message_stop"}));
        e.release();
        assert_eq!(e.ending(), "");
    }

    // ---- deny answers ----

    #[test]
    fn deny_openai_json() {
        let (ct, body) = deny_response(ClientProtocol::OpenAi, false, 200, "No.", "gpt-4o");
        assert_eq!(ct, JSON_CONTENT_TYPE);
        let resp: openai::ChatResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(resp.object, "chat.completion");
        assert_eq!(resp.model, "gpt-4o");
        assert_eq!(resp.choices.len(), 1);
        assert_eq!(resp.choices[0].message.role, "assistant");
        assert_eq!(
            resp.choices[0]
                .message
                .content
                .as_ref()
                .map(openai::Content::text)
                .as_deref(),
            Some("No.")
        );
        assert_eq!(
            resp.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
    }

    #[test]
    fn deny_openai_stream() {
        let (ct, body) = deny_response(ClientProtocol::OpenAi, true, 200, "No.", "gpt-4o");
        assert_eq!(ct, SSE_CONTENT_TYPE);
        let events = decode(&body);
        assert_eq!(events.len(), 4);
        assert_eq!(events[3].data, "[DONE]");
        let chunks: Vec<openai::ChatChunk> = events[..3]
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert!(chunks
            .iter()
            .all(|c| c.object == "chat.completion.chunk" && c.model == "gpt-4o"));
        assert_eq!(chunks[0].choices[0].delta["role"], "assistant");
        assert_eq!(chunks[1].choices[0].delta["content"], "No.");
        assert_eq!(chunks[1].choices[0].finish_reason, None);
        assert_eq!(
            chunks[2].choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        let text: String = events[..3]
            .iter()
            .map(|e| event_text(&serde_json::from_str(&e.data).unwrap()))
            .collect();
        assert_eq!(text, "No.");
    }

    #[test]
    fn deny_anthropic_json() {
        let (ct, body) = deny_response(ClientProtocol::Anthropic, false, 200, "No.", "claude-x");
        assert_eq!(ct, JSON_CONTENT_TYPE);
        let resp: anthropic::MessagesResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (resp.kind.as_str(), resp.role.as_str()),
            ("message", "assistant")
        );
        assert_eq!(resp.model, "claude-x");
        assert_eq!(resp.content, vec![anthropic::Block::text("No.")]);
        assert_eq!(resp.stop_reason.as_deref(), Some("refusal"));
    }

    #[test]
    fn deny_anthropic_stream() {
        let (ct, body) = deny_response(ClientProtocol::Anthropic, true, 200, "No.", "claude-x");
        assert_eq!(ct, SSE_CONTENT_TYPE);
        let events = decode(&body);
        let kinds: Vec<_> = events.iter().filter_map(|e| e.event.clone()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let parsed: Vec<anthropic::StreamEvent> = events
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert!(
            matches!(&parsed[0], anthropic::StreamEvent::MessageStart { message } if message.model == "claude-x")
        );
        let text: String = data(&events).iter().map(event_text).collect();
        assert_eq!(text, "No.");
        assert!(
            matches!(&parsed[4], anthropic::StreamEvent::MessageDelta { delta, .. } if delta["stop_reason"] == "refusal")
        );
    }

    #[test]
    fn deny_with_error_code() {
        for stream in [false, true] {
            let (ct, body) = deny_response(ClientProtocol::OpenAi, stream, 403, "Blocked", "m");
            assert_eq!(ct, JSON_CONTENT_TYPE);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["message"], "Blocked");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["code"], "content_filter");
            let (ct, body) = deny_response(ClientProtocol::Anthropic, stream, 400, "Blocked", "m");
            assert_eq!(ct, JSON_CONTENT_TYPE);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["message"], "Blocked");
        }
    }
}
