//! Token usage and generated text, read from any supported LLM wire format.
//!
//! Formats: OpenAI chat/completions/embeddings and the Responses API, Anthropic Messages,
//! Gemini `generateContent`, and Bedrock Converse — non-streaming bodies and stream events.
//!
//! The format is told apart by the keys a body carries, never by configuration:
//! - `usage.prompt_tokens` / `completion_tokens`: OpenAI chat, completions, embeddings.
//! - `usage.input_tokens` / `output_tokens`: the OpenAI Responses API when the body has
//!   `object: "response"` (or is a `response.*` stream event) or the usage has one of
//!   `total_tokens`, `input_tokens_details`, `output_tokens_details` (Anthropic never sends
//!   these); otherwise Anthropic. The two read differently only where cache fields are
//!   present: the Responses API counts cached tokens inside `input_tokens`, Anthropic
//!   outside, and only Anthropic sends `cache_*_input_tokens`.
//! - `usage.inputTokens` / `outputTokens`: Bedrock Converse (cache reads and writes are, as
//!   with Anthropic, outside `inputTokens`).
//! - `usageMetadata`: Gemini.
//!
//! `Usage::input` always counts every prompt token, cached or not; `total` is the provider's
//! total, but never less than `input + output`.

pub mod json;

use json::{pick, JsonRead};

/// Token usage of one request, whatever the provider's format.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Prompt tokens, including those read from or written to a prompt cache.
    pub input: u64,
    /// Generated tokens, including reasoning tokens.
    pub output: u64,
    /// Total tokens (at least `input + output`).
    pub total: u64,
    /// Part of `input` read from a prompt cache.
    pub cached_input: u64,
    /// Part of `input` written to a prompt cache (Anthropic, Bedrock).
    pub cache_creation_input: u64,
    /// Part of `output` spent on reasoning, where the provider says.
    pub reasoning: u64,
    /// Whether the numbers are an estimate rather than the provider's report.
    pub estimated: bool,
}

/// Usage in a non-streaming response body of any supported format; None when it carries none.
///
/// A JSON array (Gemini's `streamGenerateContent` without `alt=sse`) is read as a stream.
pub fn from_json<'a, J: JsonRead<'a>>(body: J) -> Option<Usage> {
    let mut acc = StreamUsage::default();
    acc.on_event(body);
    acc.usage()
}

/// Counts as one event reports them, before they are normalised into a [`Usage`].
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// Prompt tokens as reported.
    input: u64,
    /// Whether `input` already includes `cache_read` and `cache_write`.
    input_includes_cache: bool,
    cache_read: u64,
    cache_write: u64,
    output: u64,
    reasoning: u64,
    total: Option<u64>,
}

impl Counts {
    fn to_usage(self) -> Usage {
        let input = if self.input_includes_cache {
            self.input
        } else {
            self.input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_write)
        };
        let sum = input.saturating_add(self.output);
        Usage {
            input,
            output: self.output,
            total: self.total.map_or(sum, |t| t.max(sum)),
            cached_input: self.cache_read,
            cache_creation_input: self.cache_write,
            reasoning: self.reasoning,
            estimated: false,
        }
    }
}

/// Accumulates usage over a stream's events.
///
/// Cumulative reports replace earlier ones (OpenAI's usage chunk, Gemini's latest
/// `usageMetadata`, Bedrock's `metadata` event, the Responses API's final `response`);
/// Anthropic's `message_delta` updates only the fields it carries.
#[derive(Debug, Default)]
pub struct StreamUsage {
    counts: Option<Counts>,
}

impl StreamUsage {
    /// One stream event's JSON (`data:` of an SSE event, or a decoded Bedrock event payload).
    pub fn on_event<'a, J: JsonRead<'a>>(&mut self, data: J) {
        if data.is_array() {
            data.items().for_each(|e| self.on_event(e));
        } else if data.is_object() {
            self.on_object(data);
        }
    }

    /// The usage seen so far (None if the stream carried none).
    pub fn usage(&self) -> Option<Usage> {
        self.counts.map(Counts::to_usage)
    }

    fn on_object<'a, J: JsonRead<'a>>(&mut self, event: J) {
        let [kind, usage, message, response, usage_metadata, metadata, object] = pick(
            event,
            [
                "type",
                "usage",
                "message",
                "response",
                "usageMetadata",
                "metadata",
                "object",
            ],
        );
        let kind = kind.and_then(J::as_str);
        let object_of = |x: Option<J>| x.filter(|x| x.is_object());
        if kind == Some("message_delta") {
            // Anthropic: cumulative output, and input/cache fields only when present.
            let fields = [
                "input_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "output_tokens",
            ];
            if let Some(usage) = object_of(usage).filter(|u| has_any(*u, &fields)) {
                let counts = self.counts.get_or_insert_with(Counts::default);
                if let Some(n) = num(usage, "input_tokens") {
                    counts.input = n;
                }
                if let Some(n) = num(usage, "cache_read_input_tokens") {
                    counts.cache_read = n;
                }
                if let Some(n) = num(usage, "cache_creation_input_tokens") {
                    counts.cache_write = n;
                }
                if let Some(n) = num(usage, "output_tokens") {
                    counts.output = n;
                }
            }
            return;
        }
        if kind == Some("message_start") {
            if let Some(message) = object_of(message) {
                self.on_object(message);
            }
            return;
        }
        if kind.is_some_and(|k| k.starts_with("response.")) {
            // Responses API stream: usage sits in the `response` of the final events.
            if let Some(response) = object_of(response) {
                self.replace(usage_object(response, true));
            }
            return;
        }
        if let Some(meta) = object_of(usage_metadata) {
            self.replace(gemini_counts(meta));
            return;
        }
        if let Some(metadata) = object_of(metadata) {
            // Bedrock ConverseStream `metadata` event, wrapped by its event type.
            if metadata.get("usage").is_some() {
                self.replace(usage_object(metadata, false));
                return;
            }
        }
        if usage.is_none() {
            // No `usage` member: `usage_object` would find nothing.
            return;
        }
        let responses = object.and_then(J::as_str) == Some("response");
        self.replace(usage_object(event, responses));
    }

    fn replace(&mut self, counts: Option<Counts>) {
        if let Some(c) = counts {
            self.counts = Some(c);
        }
    }
}

/// Usage in a `usage` object of any dialect (also Cohere's and DashScope's, and a bare
/// `total_tokens`); None when it carries no count.
pub fn from_usage<'a, J: JsonRead<'a>>(usage: J) -> Option<Usage> {
    usage_counts(usage, false).map(Counts::to_usage)
}

impl Usage {
    /// Counts a provider reported as plain numbers.
    pub fn of(input: u64, output: u64) -> Usage {
        Counts {
            input,
            input_includes_cache: true,
            output,
            ..Counts::default()
        }
        .to_usage()
    }
}

/// The counts in `holder.usage`, whatever its dialect.
fn usage_object<'a, J: JsonRead<'a>>(holder: J, responses_api: bool) -> Option<Counts> {
    usage_counts(holder.get("usage")?, responses_api)
}

/// The counts of a `usage` object, whatever its dialect.
fn usage_counts<'a, J: JsonRead<'a>>(u: J, responses_api: bool) -> Option<Counts> {
    if !u.is_object() {
        return None;
    }
    if has_any(u, &["prompt_tokens", "completion_tokens"]) {
        // OpenAI chat / completions / embeddings.
        let cached = u
            .get("prompt_tokens_details")
            .filter(|x| x.is_object())
            .and_then(|d| num(d, "cached_tokens"))
            // DeepSeek reports its cache hits here instead.
            .or_else(|| num(u, "prompt_cache_hit_tokens"))
            .unwrap_or(0);
        return Some(Counts {
            input: num(u, "prompt_tokens").unwrap_or(0),
            input_includes_cache: true,
            cache_read: cached,
            output: num(u, "completion_tokens").unwrap_or(0),
            reasoning: detail(u, "completion_tokens_details", "reasoning_tokens"),
            total: num(u, "total_tokens"),
            ..Counts::default()
        });
    }
    if has_any(u, &["input_tokens", "output_tokens"]) {
        let responses = responses_api
            || has_any(
                u,
                &[
                    "total_tokens",
                    "input_tokens_details",
                    "output_tokens_details",
                ],
            );
        if responses {
            // DashScope reports its cache hits under `prompt_tokens_details`.
            let cached = detail(u, "input_tokens_details", "cached_tokens");
            return Some(Counts {
                input: num(u, "input_tokens").unwrap_or(0),
                input_includes_cache: true,
                cache_read: match cached {
                    0 => detail(u, "prompt_tokens_details", "cached_tokens"),
                    n => n,
                },
                output: num(u, "output_tokens").unwrap_or(0),
                reasoning: detail(u, "output_tokens_details", "reasoning_tokens"),
                total: num(u, "total_tokens"),
                ..Counts::default()
            });
        }
        // Anthropic: cache reads and writes are not part of `input_tokens`.
        return Some(Counts {
            input: num(u, "input_tokens").unwrap_or(0),
            input_includes_cache: false,
            cache_read: num(u, "cache_read_input_tokens").unwrap_or(0),
            cache_write: num(u, "cache_creation_input_tokens").unwrap_or(0),
            output: num(u, "output_tokens").unwrap_or(0),
            ..Counts::default()
        });
    }
    if has_any(u, &["inputTokens", "outputTokens", "totalTokens"]) {
        // Bedrock Converse: cache reads and writes are not part of `inputTokens`.
        return Some(Counts {
            input: num(u, "inputTokens").unwrap_or(0),
            input_includes_cache: false,
            cache_read: num(u, "cacheReadInputTokens").unwrap_or(0),
            cache_write: num(u, "cacheWriteInputTokens").unwrap_or(0),
            output: num(u, "outputTokens").unwrap_or(0),
            total: num(u, "totalTokens"),
            ..Counts::default()
        });
    }
    // Cohere: what the model saw and produced (`tokens`), else what was billed; cache hits
    // are part of the prompt.
    let cohere = |key: &str| {
        u.get(key)
            .filter(|t| t.is_object() && has_any(*t, &["input_tokens", "output_tokens"]))
    };
    if let Some(t) = cohere("tokens").or_else(|| cohere("billed_units")) {
        return Some(Counts {
            input: num(t, "input_tokens").unwrap_or(0),
            input_includes_cache: true,
            cache_read: num(u, "cached_tokens").unwrap_or(0),
            output: num(t, "output_tokens").unwrap_or(0),
            ..Counts::default()
        });
    }
    // A total alone (MiniMax ChatCompletion Pro).
    num(u, "total_tokens").map(|total| Counts {
        input_includes_cache: true,
        total: Some(total),
        ..Counts::default()
    })
}

/// Gemini `usageMetadata`. `promptTokenCount` already includes the cached content; tokens of
/// tool-use prompts are counted separately and added to the input; thoughts are output.
fn gemini_counts<'a, J: JsonRead<'a>>(m: J) -> Option<Counts> {
    if !has_any(
        m,
        &[
            "promptTokenCount",
            "candidatesTokenCount",
            "totalTokenCount",
            "thoughtsTokenCount",
        ],
    ) {
        return None;
    }
    let thoughts = num(m, "thoughtsTokenCount").unwrap_or(0);
    Some(Counts {
        input: num(m, "promptTokenCount")
            .unwrap_or(0)
            .saturating_add(num(m, "toolUsePromptTokenCount").unwrap_or(0)),
        input_includes_cache: true,
        cache_read: num(m, "cachedContentTokenCount").unwrap_or(0),
        output: num(m, "candidatesTokenCount")
            .unwrap_or(0)
            .saturating_add(thoughts),
        reasoning: thoughts,
        total: num(m, "totalTokenCount"),
        ..Counts::default()
    })
}

/// A non-negative integer field (integral floats such as `12.0` accepted).
fn num<'a, J: JsonRead<'a>>(obj: J, key: &str) -> Option<u64> {
    let v = obj.get(key)?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
            .map(|f| f as u64)
    })
}

/// `obj[outer][inner]` as a number, 0 when absent.
fn detail<'a, J: JsonRead<'a>>(obj: J, outer: &str, inner: &str) -> u64 {
    obj.get(outer)
        .filter(|x| x.is_object())
        .and_then(|d| num(d, inner))
        .unwrap_or(0)
}

fn has_any<'a, J: JsonRead<'a>>(obj: J, keys: &[&str]) -> bool {
    keys.iter()
        .any(|k| obj.get(k).is_some_and(|v| !v.is_null()))
}

fn str_at<'a, J: JsonRead<'a>>(obj: J, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(J::as_str)
}

/// The model named in a response body or stream event (`model`, Gemini `modelVersion`), if any.
///
/// Also looks in Anthropic's `message_start` (`message.model`) and the Responses API's stream
/// events (`response.model`).
pub fn response_model<'a, J: JsonRead<'a>>(body: J) -> Option<String> {
    let obj = body;
    if !obj.is_object() {
        return None;
    }
    let direct = str_at(obj, "model").or_else(|| str_at(obj, "modelVersion"));
    let nested = || {
        ["message", "response"].iter().find_map(|k| {
            obj.get(k)
                .filter(|x| x.is_object())
                .and_then(|inner| str_at(inner, "model"))
        })
    };
    direct
        .or_else(nested)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
}

/// Where extracted text goes: whole pieces separated by `\n`, or stream pieces as they come.
struct Sink<'a> {
    out: &'a mut String,
    separate: bool,
}

impl Sink<'_> {
    fn push(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.separate && !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        self.out.push_str(text);
    }

    /// A JSON value as text: strings as they are, anything else serialised.
    fn push_json<'a, J: JsonRead<'a>>(&mut self, v: J) {
        if v.is_null() {
            return;
        }
        match v.as_str() {
            Some(s) => self.push(s),
            None => self.push(&v.to_json_string()),
        }
    }
}

/// Appends the generated text of a non-streaming response (any format) to `out`, for estimates.
///
/// Pieces (choices, content blocks, parts) are separated by `\n`. Reasoning text and tool-call
/// arguments count as generated text. A JSON array (Gemini's chunk list) is joined as a stream.
pub fn response_text<'a, J: JsonRead<'a>>(body: J, out: &mut String) {
    // A JSON array is a stream of chunks (Gemini without `alt=sse`): join them as deltas.
    let mut sink = Sink {
        out,
        separate: !body.is_array(),
    };
    answer_text(body, &mut sink);
}

/// Appends the generated text carried by one stream event (any format) to `out`.
///
/// Pieces are appended as they are, so that the deltas of a stream join into its text.
pub fn delta_text<'a, J: JsonRead<'a>>(data: J, out: &mut String) {
    let mut sink = Sink {
        out,
        separate: false,
    };
    answer_text(data, &mut sink);
}

/// Responses API stream events whose string `delta` is generated text.
const RESPONSES_TEXT_DELTAS: &[&str] = &[
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta",
];

/// Text of a response body or a stream event.
fn answer_text<'a, J: JsonRead<'a>>(v: J, sink: &mut Sink<'_>) {
    if v.is_array() {
        return v.items().for_each(|i| answer_text(i, sink));
    }
    if !v.is_object() {
        return;
    }
    let [kind, choices, candidates, content, delta, content_block, object, output, block_delta, block_index] =
        pick(
            v,
            [
                "type",
                "choices",
                "candidates",
                "content",
                "delta",
                "content_block",
                "object",
                "output",
                "contentBlockDelta",
                "contentBlockIndex",
            ],
        );
    let kind = kind.and_then(J::as_str);
    let object_of = |x: Option<J>| x.filter(|x| x.is_object());
    // OpenAI chat / completions, JSON and stream chunks.
    if let Some(choices) = choices.filter(|x| x.is_array()) {
        for choice in choices.items().filter(|x| x.is_object()) {
            let [message, delta, text] = pick(choice, ["message", "delta", "text"]);
            for m in [message, delta]
                .into_iter()
                .flatten()
                .filter(|x| x.is_object())
            {
                block_text(m, sink);
            }
            if let Some(text) = text.and_then(J::as_str) {
                sink.push(text);
            }
        }
        return;
    }
    // Gemini, JSON and stream chunks.
    if let Some(candidates) = candidates.filter(|x| x.is_array()) {
        for candidate in candidates.items().filter(|x| x.is_object()) {
            if let Some(content) = object_of(candidate.get("content")) {
                block_text(content, sink);
            }
        }
        return;
    }
    match kind {
        // Anthropic JSON: the content blocks.
        Some("message") => {
            if let Some(content) = content {
                content_text(content, sink);
            }
            return;
        }
        // Anthropic stream: text, thinking and tool input deltas.
        Some("content_block_delta") => {
            if let Some(delta) = object_of(delta) {
                block_text(delta, sink);
            }
            return;
        }
        // Anthropic stream: a text block may open with text; tool input comes as deltas.
        Some("content_block_start") => {
            if let Some(text) = object_of(content_block).and_then(|b| str_at(b, "text")) {
                sink.push(text);
            }
            return;
        }
        Some(k) if RESPONSES_TEXT_DELTAS.contains(&k) => {
            if let Some(delta) = delta.and_then(J::as_str) {
                sink.push(delta);
            }
            return;
        }
        _ => {}
    }
    // OpenAI Responses API JSON: the output items.
    if object.and_then(J::as_str) == Some("response") {
        if let Some(items) = output.filter(|x| x.is_array()) {
            for item in items.items().filter(|x| x.is_object()) {
                block_text(item, sink);
            }
        }
        return;
    }
    // Bedrock Converse JSON.
    if let Some(message) = object_of(object_of(output).and_then(|o| o.get("message"))) {
        block_text(message, sink);
        return;
    }
    // Bedrock ConverseStream `contentBlockDelta`, wrapped or as the bare event payload.
    let delta = object_of(block_delta)
        .and_then(|d| d.get("delta"))
        .or_else(|| delta.filter(|_| block_index.is_some()));
    if let Some(delta) = object_of(delta) {
        block_text(delta, sink);
    }
}

/// Appends the prompt text of a request body (any format) to `out`, pieces separated by "\n".
///
/// Reads system prompts (`system`, `systemInstruction`, `instructions`), the conversation
/// (`messages`, `contents`, Responses `input`), legacy `prompt`, embeddings `input`, tool calls
/// and results in the history, and tool definitions (`tools`, Bedrock `toolConfig.tools`,
/// serialised), which providers also bill as input.
pub fn request_text<'a, J: JsonRead<'a>>(body: J, out: &mut String) {
    let obj = body;
    if !obj.is_object() {
        return;
    }
    let mut sink = Sink {
        out,
        separate: true,
    };
    // One pass over the members; system prompts, then the conversation (`content`: Gemini
    // `embedContent`), then tool definitions.
    let members = pick(
        obj,
        [
            "system",
            "systemInstruction",
            "system_instruction",
            "instructions",
            "messages",
            "contents",
            "prompt",
            "input",
            "content",
            "tools",
            "toolConfig",
        ],
    );
    let [.., tools, tool_config] = members;
    for v in members.into_iter().take(9).flatten() {
        content_text(v, &mut sink);
    }
    let tool_config = tool_config
        .filter(|x| x.is_object())
        .and_then(|c| c.get("tools"));
    for tools in [tools, tool_config].into_iter().flatten() {
        tools.items().for_each(|t| sink.push_json(t));
    }
}

/// Text of a content value: a string, a list of strings or blocks, or one block.
fn content_text<'a, J: JsonRead<'a>>(v: J, sink: &mut Sink<'_>) {
    if let Some(s) = v.as_str() {
        sink.push(s);
    } else if v.is_array() {
        v.items().for_each(|i| content_text(i, sink));
    } else if v.is_object() {
        block_text(v, sink);
    }
}

/// Text of one message, content block, part, output item or delta, in any format.
fn block_text<'a, J: JsonRead<'a>>(o: J, sink: &mut Sink<'_>) {
    // One pass over the members; the pieces then go out in this fixed order.
    let [kind, text, thinking, reasoning, refusal, partial, content, parts, summary, tool_calls, function, arguments, output, input, function_call, function_response, tool_use, tool_result, json, reasoning_content] =
        pick(
            o,
            [
                "type",
                "text",
                "thinking",
                "reasoning_content",
                "refusal",
                "partial_json",
                "content",
                "parts",
                "summary",
                "tool_calls",
                "function",
                "arguments",
                "output",
                "input",
                "functionCall",
                "functionResponse",
                "toolUse",
                "toolResult",
                "json",
                "reasoningContent",
            ],
        );
    let kind = kind.and_then(J::as_str);
    let object_of = |x: Option<J>| x.filter(|x| x.is_object());
    // Plain text: OpenAI parts, Anthropic/Bedrock blocks, Gemini parts, Responses items, deltas.
    for piece in [text, thinking, reasoning, refusal, partial] {
        if let Some(text) = piece.and_then(J::as_str) {
            sink.push(text);
        }
    }
    // Nested content: messages, tool results, Gemini contents, Responses message items.
    for v in [content, parts, summary, tool_calls].into_iter().flatten() {
        content_text(v, sink);
    }
    // OpenAI tool calls (`function.arguments`) and Responses `function_call` items.
    if let Some(args) = object_of(function).and_then(|f| str_at(f, "arguments")) {
        sink.push(args);
    }
    if let Some(args) = arguments.and_then(J::as_str) {
        sink.push(args);
    }
    if kind == Some("function_call_output") {
        if let Some(output) = output {
            content_text(output, sink);
        }
    }
    // Anthropic tool use: the input object.
    if matches!(kind, Some("tool_use" | "server_tool_use" | "mcp_tool_use")) {
        if let Some(input) = input {
            sink.push_json(input);
        }
    }
    // Gemini function calls and responses.
    for (v, inner) in [(function_call, "args"), (function_response, "response")] {
        if let Some(v) = object_of(v).and_then(|f| f.get(inner)) {
            sink.push_json(v);
        }
    }
    // Bedrock blocks: tool use input (object, or string in stream deltas), tool results,
    // JSON tool-result content, reasoning (`reasoningText.text`, or `text` in stream deltas).
    if let Some(input) = object_of(tool_use).and_then(|t| t.get("input")) {
        sink.push_json(input);
    }
    if let Some(result) = object_of(tool_result) {
        block_text(result, sink);
    }
    if kind.is_none() {
        if let Some(json) = json {
            sink.push_json(json);
        }
    }
    if let Some(reasoning) = object_of(reasoning_content) {
        let text = object_of(reasoning.get("reasoningText"))
            .and_then(|r| str_at(r, "text"))
            .or_else(|| str_at(reasoning, "text"));
        if let Some(text) = text {
            sink.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn usage(input: u64, output: u64, total: u64) -> Usage {
        Usage {
            input,
            output,
            total,
            ..Usage::default()
        }
    }

    /// The same document as a [`json::JsonDoc`]: every reader must give what it gives for the
    /// `Value`, so each test below checks both representations.
    fn doc(v: &Value) -> json::JsonDoc {
        let mut doc = json::JsonDoc::new();
        assert!(doc.parse(&v.to_string()));
        doc
    }

    /// [`super::from_json`] on the `Value` and on the document, which must agree.
    fn from_json(body: &Value) -> Option<Usage> {
        let want = super::from_json(body);
        assert_eq!(super::from_json(doc(body).root().unwrap()), want);
        want
    }

    fn stream(events: &[Value]) -> Option<Usage> {
        let mut acc = StreamUsage::default();
        events.iter().for_each(|e| acc.on_event(e));
        let mut fast = StreamUsage::default();
        for e in events {
            let d = doc(e);
            fast.on_event(d.root().unwrap());
            assert_eq!(response_model(d.root().unwrap()), response_model(e));
        }
        assert_eq!(fast.usage(), acc.usage());
        acc.usage()
    }

    fn stream_text(events: &[Value]) -> String {
        let mut out = String::new();
        events.iter().for_each(|e| delta_text(e, &mut out));
        let mut fast = String::new();
        events
            .iter()
            .for_each(|e| delta_text(doc(e).root().unwrap(), &mut fast));
        assert_eq!(fast, out);
        out
    }

    fn text_of(body: &Value) -> String {
        let mut out = String::new();
        response_text(body, &mut out);
        let d = doc(body);
        let mut fast = String::new();
        response_text(d.root().unwrap(), &mut fast);
        assert_eq!(fast, out);
        assert_eq!(super::from_json(d.root().unwrap()), super::from_json(body));
        assert_eq!(response_model(d.root().unwrap()), response_model(body));
        out
    }

    fn prompt_of(body: &Value) -> String {
        let mut out = String::new();
        request_text(body, &mut out);
        let mut fast = String::new();
        request_text(doc(body).root().unwrap(), &mut fast);
        assert_eq!(fast, out);
        out
    }

    #[test]
    fn provider_usage_objects() {
        let read = |u: Value| from_usage(&u).unwrap();
        // Cohere: what the model saw, else what was billed; cache hits are part of the prompt.
        let cohere = read(
            json!({"billed_units": {"input_tokens": 5, "output_tokens": 2},
            "tokens": {"input_tokens": 71, "output_tokens": 9}, "cached_tokens": 64}),
        );
        assert_eq!(
            (cohere.input, cohere.output, cohere.cached_input),
            (71, 9, 64)
        );
        assert_eq!(
            read(json!({"billed_units": {"input_tokens": 5, "output_tokens": 2}})).total,
            7
        );
        // DashScope: cache hits under prompt_tokens_details, reasoning under output details.
        let qwen = read(
            json!({"input_tokens": 11, "output_tokens": 405, "total_tokens": 416,
            "prompt_tokens_details": {"cached_tokens": 3},
            "output_tokens_details": {"reasoning_tokens": 256}}),
        );
        assert_eq!(
            (
                qwen.input,
                qwen.output,
                qwen.total,
                qwen.cached_input,
                qwen.reasoning
            ),
            (11, 405, 416, 3, 256)
        );
        // MiniMax ChatCompletion Pro: a total alone.
        assert_eq!(
            read(json!({"total_tokens": 12})),
            Usage {
                total: 12,
                ..Usage::default()
            }
        );
        assert_eq!(from_usage(&json!({"note": 1})), None);
        assert_eq!(from_usage(&json!(3)), None);
        assert_eq!(Usage::of(4, 5).total, 9);
    }

    #[test]
    fn openai_chat_json() {
        let body = json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion",
            "created": 1741570283, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": "The image shows a wooden boardwalk.", "refusal": null,
                "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_fc9f1d7035"
        });
        let want = Usage {
            cached_input: 1024,
            ..usage(1117, 46, 1163)
        };
        assert_eq!(from_json(&body), Some(want));
        assert_eq!(text_of(&body), "The image shows a wooden boardwalk.");
        assert_eq!(response_model(&body).as_deref(), Some("gpt-4o-2024-08-06"));
    }

    #[test]
    fn openai_reasoning_tool_calls_json() {
        let body = json!({
            "object": "chat.completion", "model": "o3-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 300, "total_tokens": 380,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 256}}
        });
        let want = Usage {
            reasoning: 256,
            ..usage(80, 300, 380)
        };
        assert_eq!(from_json(&body), Some(want));
        assert_eq!(text_of(&body), "{\"city\":\"Paris\"}");
        // DeepSeek style: reasoning text, cache hits outside the details object.
        let deepseek = json!({
            "object": "chat.completion", "model": "deepseek-reasoner",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "42",
                "reasoning_content": "Think first."}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
                "prompt_cache_hit_tokens": 16, "prompt_cache_miss_tokens": 4}
        });
        assert_eq!(from_json(&deepseek).map(|u| u.cached_input), Some(16));
        assert_eq!(text_of(&deepseek), "Think first.\n42");
    }

    #[test]
    fn openai_legacy_completion_and_embeddings() {
        let completion = json!({
            "id": "cmpl-1", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
            "choices": [{"text": "\n\nThis is a test.", "index": 0, "logprobs": null,
                "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        });
        assert_eq!(from_json(&completion), Some(usage(5, 7, 12)));
        assert_eq!(text_of(&completion), "\n\nThis is a test.");
        let embeddings = json!({
            "object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093]}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}
        });
        assert_eq!(from_json(&embeddings), Some(usage(8, 0, 8)));
        assert_eq!(text_of(&embeddings), "");
    }

    #[test]
    fn openai_stream_with_usage_chunk() {
        let events = [
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "",
                    "refusal": null}, "finish_reason": null}], "usage": null}),
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}],
                "usage": null}),
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": null}],
                "usage": null}),
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": null}),
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                "choices": [], "usage": {"prompt_tokens": 19, "completion_tokens": 2,
                    "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 0,
                        "audio_tokens": 0}, "completion_tokens_details": {
                        "reasoning_tokens": 0, "audio_tokens": 0}}}),
        ];
        assert_eq!(stream(&events[..4]), None);
        assert_eq!(stream(&events), Some(usage(19, 2, 21)));
        assert_eq!(stream_text(&events), "Hello");
        assert_eq!(response_model(&events[1]).as_deref(), Some("gpt-4o-mini"));
        // Tool-call arguments and reasoning deltas count as generated text.
        let tools = [
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "Hmm. "}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": "{\"a\":"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": "1}"}}]}}]}),
            json!({"choices": [{"index": 0, "text": " legacy"}]}),
        ];
        assert_eq!(stream_text(&tools), "Hmm. {\"a\":1} legacy");
    }

    #[test]
    fn responses_api_json_and_stream() {
        let body = json!({
            "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
            "object": "response", "created_at": 1741476777, "status": "completed",
            "model": "o4-mini-2025-04-16",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [
                    {"type": "summary_text", "text": "Planning a story."}]},
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Once upon a time.",
                        "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1",
                    "name": "save", "arguments": "{\"ok\":true}"}
            ],
            "usage": {"input_tokens": 328, "input_tokens_details": {"cached_tokens": 256},
                "output_tokens": 52, "output_tokens_details": {"reasoning_tokens": 32},
                "total_tokens": 380}
        });
        let want = Usage {
            cached_input: 256,
            reasoning: 32,
            ..usage(328, 52, 380)
        };
        assert_eq!(from_json(&body), Some(want.clone()));
        assert_eq!(
            text_of(&body),
            "Planning a story.\nOnce upon a time.\n{\"ok\":true}"
        );
        let events = [
            json!({"type": "response.created", "sequence_number": 0, "response": {
                "id": "resp_1", "object": "response", "status": "in_progress",
                "model": "o4-mini-2025-04-16", "output": [], "usage": null}}),
            json!({"type": "response.output_text.delta", "item_id": "msg_1",
                "output_index": 1, "content_index": 0, "delta": "Once upon"}),
            json!({"type": "response.output_text.delta", "item_id": "msg_1",
                "output_index": 1, "content_index": 0, "delta": " a time."}),
            json!({"type": "response.output_text.done", "item_id": "msg_1",
                "output_index": 1, "content_index": 0, "text": "Once upon a time."}),
            json!({"type": "response.completed", "sequence_number": 9, "response": body}),
        ];
        assert_eq!(stream(&events[..4]), None);
        assert_eq!(stream(&events), Some(want));
        assert_eq!(stream_text(&events), "Once upon a time.");
        assert_eq!(
            response_model(&events[0]).as_deref(),
            Some("o4-mini-2025-04-16")
        );
    }

    #[test]
    fn input_tokens_dialect_rule() {
        // Cached tokens are inside `input_tokens` for the Responses API (told by `object`, or
        // by fields Anthropic never sends) and outside for Anthropic.
        let by_object = json!({"object": "response", "usage": {"input_tokens": 100,
            "output_tokens": 5, "input_tokens_details": {"cached_tokens": 60}}});
        let by_fields = json!({"usage": {"input_tokens": 100, "output_tokens": 5,
            "total_tokens": 105, "input_tokens_details": {"cached_tokens": 60}}});
        for body in [&by_object, &by_fields] {
            let u = from_json(body).unwrap();
            assert_eq!((u.input, u.cached_input, u.total), (100, 60, 105));
        }
        let anthropic = json!({"usage": {"input_tokens": 100, "output_tokens": 5,
            "cache_read_input_tokens": 60}});
        let u = from_json(&anthropic).unwrap();
        assert_eq!((u.input, u.cached_input, u.total), (160, 60, 165));
        // With no hint and no cache fields both readings agree.
        let bare = json!({"usage": {"input_tokens": 7, "output_tokens": 3}});
        assert_eq!(from_json(&bare), Some(usage(7, 3, 10)));
    }

    #[test]
    fn anthropic_json() {
        let body = json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-20250514",
            "content": [
                {"type": "thinking", "thinking": "The user wants weather.",
                    "signature": "EqQBCgIYAhIM"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather", "input": {"location": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 2000, "output_tokens": 57,
                "service_tier": "standard"}
        });
        let want = Usage {
            input: 2112,
            output: 57,
            total: 2169,
            cached_input: 2000,
            cache_creation_input: 100,
            ..Usage::default()
        };
        assert_eq!(from_json(&body), Some(want));
        assert_eq!(
            text_of(&body),
            "The user wants weather.\nLet me check.\n{\"location\":\"Paris\"}"
        );
        assert_eq!(
            response_model(&body).as_deref(),
            Some("claude-sonnet-4-20250514")
        );
    }

    fn anthropic_stream() -> Vec<Value> {
        vec![
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "content": [], "model": "claude-3-7-sonnet-20250219",
                "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25,
                    "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1500,
                    "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Let me see. "}}),
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "ping"}),
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "text_delta", "text": "!"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {
                "type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "{\"q\": "}}),
            json!({"type": "content_block_delta", "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
                "stop_sequence": null}, "usage": {"output_tokens": 15}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
                "stop_sequence": null}, "usage": {"output_tokens": 89}}),
            json!({"type": "message_stop"}),
        ]
    }

    #[test]
    fn anthropic_full_stream() {
        let events = anthropic_stream();
        let want = Usage {
            cached_input: 1500,
            ..usage(1525, 89, 1614)
        };
        assert_eq!(stream(&events), Some(want));
        // After message_start only: the initial output count.
        assert_eq!(stream(&events[..1]).map(|u| u.output), Some(1));
        assert_eq!(stream_text(&events), "Let me see. Hello!{\"q\": 1}");
        assert_eq!(
            response_model(&events[0]).as_deref(),
            Some("claude-3-7-sonnet-20250219")
        );
    }

    #[test]
    fn anthropic_message_delta_with_input_fields() {
        // Newer streams repeat the input side in message_delta: it replaces message_start's.
        let events = [
            json!({"type": "message_start", "message": {"type": "message", "model": "m",
                "content": [], "usage": {"input_tokens": 0, "output_tokens": 1}}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 420, "cache_creation_input_tokens": 30,
                    "cache_read_input_tokens": 50, "output_tokens": 77,
                    "server_tool_use": {"web_search_requests": 1}}}),
        ];
        let want = Usage {
            input: 500,
            output: 77,
            total: 577,
            cached_input: 50,
            cache_creation_input: 30,
            ..Usage::default()
        };
        assert_eq!(stream(&events), Some(want.clone()));
        // A message_delta alone (message_start lost) still gives what it carries.
        assert_eq!(stream(&events[1..]), Some(want));
    }

    #[test]
    fn gemini_json() {
        let body = json!({
            "candidates": [{"content": {"parts": [
                    {"text": "Considering the question.", "thought": true},
                    {"text": "The answer is 4."},
                    {"functionCall": {"name": "log", "args": {"n": 4}}}],
                "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 20,
                "totalTokenCount": 240, "cachedContentTokenCount": 64,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}],
                "thoughtsTokenCount": 100},
            "modelVersion": "gemini-2.5-flash", "responseId": "mTqkaP7cM9exqtsP"
        });
        let want = Usage {
            cached_input: 64,
            reasoning: 100,
            ..usage(120, 120, 240)
        };
        assert_eq!(from_json(&body), Some(want));
        assert_eq!(
            text_of(&body),
            "Considering the question.\nThe answer is 4.\n{\"n\":4}"
        );
        assert_eq!(response_model(&body).as_deref(), Some("gemini-2.5-flash"));
        // Tool-use prompt tokens are input too.
        let tool = json!({"usageMetadata": {"promptTokenCount": 10,
            "toolUsePromptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 18}});
        assert_eq!(from_json(&tool), Some(usage(15, 3, 18)));
    }

    #[test]
    fn gemini_stream_takes_latest_metadata() {
        let events = [
            json!({"candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"},
                "index": 0}], "usageMetadata": {"promptTokenCount": 9,
                "totalTokenCount": 9}, "modelVersion": "gemini-2.0-flash"}),
            json!({"candidates": [{"content": {"parts": [{"text": " sky is"}],
                "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 9,
                "candidatesTokenCount": 4, "totalTokenCount": 13},
                "modelVersion": "gemini-2.0-flash"}),
            json!({"candidates": [{"content": {"parts": [{"text": " blue."}],
                "role": "model"}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 6,
                "totalTokenCount": 15, "promptTokensDetails": [{"modality": "TEXT",
                "tokenCount": 9}]}, "modelVersion": "gemini-2.0-flash"}),
        ];
        assert_eq!(stream(&events[..1]), Some(usage(9, 0, 9)));
        assert_eq!(stream(&events), Some(usage(9, 6, 15)));
        assert_eq!(stream_text(&events), "The sky is blue.");
        // streamGenerateContent without alt=sse: one JSON array of the same chunks.
        let array = Value::Array(events.to_vec());
        assert_eq!(from_json(&array), Some(usage(9, 6, 15)));
        assert_eq!(text_of(&array), "The sky is blue.");
    }

    #[test]
    fn bedrock_converse_json() {
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Plan.", "signature": "s"}}},
                {"text": "Calling the tool."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song",
                    "input": {"sign": "WZPZ"}}}]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 542,
                "cacheReadInputTokens": 400, "cacheWriteInputTokens": 100},
            "metrics": {"latencyMs": 812}
        });
        let want = Usage {
            input: 530,
            output: 12,
            total: 542,
            cached_input: 400,
            cache_creation_input: 100,
            ..Usage::default()
        };
        assert_eq!(from_json(&body), Some(want));
        assert_eq!(
            text_of(&body),
            "Plan.\nCalling the tool.\n{\"sign\":\"WZPZ\"}"
        );
        assert_eq!(response_model(&body), None);
    }

    #[test]
    fn bedrock_stream_events() {
        // Event payloads as decoded from the event stream (the event type is a header)...
        let bare = [
            json!({"role": "assistant", "p": "abcd"}),
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}, "p": "abc"}),
            json!({"contentBlockIndex": 0, "delta": {"text": " there"}}),
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":1}"}}}),
            json!({"contentBlockIndex": 0}),
            json!({"stopReason": "end_turn"}),
            json!({"usage": {"inputTokens": 11, "outputTokens": 4, "totalTokens": 15},
                "metrics": {"latencyMs": 300}}),
        ];
        assert_eq!(stream(&bare), Some(usage(11, 4, 15)));
        assert_eq!(stream_text(&bare), "Hi there{\"a\":1}");
        // ...or wrapped by their event type.
        let wrapped = [
            json!({"messageStart": {"role": "assistant"}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 0,
                "delta": {"reasoningContent": {"text": "Think. "}}}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "Yes"}}}),
            json!({"messageStop": {"stopReason": "end_turn"}}),
            json!({"metadata": {"usage": {"inputTokens": 20, "outputTokens": 6,
                "totalTokens": 126, "cacheReadInputTokens": 100}, "metrics": {"latencyMs": 9}}}),
        ];
        let want = Usage {
            cached_input: 100,
            ..usage(120, 6, 126)
        };
        assert_eq!(stream(&wrapped), Some(want));
        assert_eq!(stream_text(&wrapped), "Think. Yes");
    }

    #[test]
    fn no_usage_gives_none() {
        for body in [
            json!({}),
            json!(null),
            json!("text"),
            json!({"usage": null}),
            json!({"usage": {}}),
            json!({"error": {"message": "bad", "type": "invalid_request_error"}}),
            json!({"type": "ping"}),
            json!({"type": "message_delta", "delta": {}}),
            json!({"type": "message_delta", "delta": {}, "usage": {}}),
            json!({"usageMetadata": {}}),
        ] {
            assert_eq!(from_json(&body), None, "{body}");
        }
    }

    #[test]
    fn totals_are_never_below_input_plus_output() {
        let body = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 5,
            "total_tokens": 3}});
        assert_eq!(from_json(&body).map(|u| u.total), Some(15));
        let floats = json!({"usage": {"prompt_tokens": 10.0, "completion_tokens": 5,
            "total_tokens": -1}});
        assert_eq!(from_json(&floats), Some(usage(10, 5, 15)));
        let huge = json!({"usage": {"input_tokens": u64::MAX, "output_tokens": 5,
            "cache_read_input_tokens": 9}});
        assert_eq!(from_json(&huge).map(|u| u.total), Some(u64::MAX));
    }

    #[test]
    fn request_text_openai_chat() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                    "type": "function", "function": {"name": "look",
                        "arguments": "{\"zoom\":2}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "A cat."}
            ],
            "tools": [{"type": "function", "function": {"name": "look",
                "parameters": {"type": "object"}}}],
            "stream": true
        });
        assert_eq!(
            prompt_of(&body),
            "You are terse.\nWhat is in this image?\n{\"zoom\":2}\nA cat.\n\
             {\"type\":\"function\",\"function\":{\"name\":\"look\",\
             \"parameters\":{\"type\":\"object\"}}}"
        );
    }

    #[test]
    fn request_text_legacy_embeddings_and_responses() {
        assert_eq!(
            prompt_of(&json!({"prompt": "Say this is a test"})),
            "Say this is a test"
        );
        assert_eq!(prompt_of(&json!({"prompt": ["a", "b"]})), "a\nb");
        assert_eq!(prompt_of(&json!({"input": "embed me"})), "embed me");
        assert_eq!(prompt_of(&json!({"input": ["one", "two"]})), "one\ntwo");
        // Token-id inputs carry no text.
        assert_eq!(prompt_of(&json!({"input": [[1, 2, 3]]})), "");
        let responses = json!({
            "model": "gpt-4.1", "instructions": "Be kind.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "done"},
                {"role": "user", "content": "Thanks"}
            ]
        });
        assert_eq!(prompt_of(&responses), "Be kind.\nHi\n{}\ndone\nThanks");
    }

    #[test]
    fn request_text_anthropic() {
        let body = json!({
            "model": "claude-sonnet-4-20250514", "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are a poet.",
                "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "Write a haiku."},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Seasons.", "signature": "x"},
                    {"type": "tool_use", "id": "t1", "name": "rhyme", "input": {"w": "sky"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "high"}]},
                    {"type": "tool_result", "tool_use_id": "t2", "content": "low"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                        "data": "AAAA"}}]}
            ]
        });
        assert_eq!(
            prompt_of(&body),
            "You are a poet.\nWrite a haiku.\nSeasons.\n{\"w\":\"sky\"}\nhigh\nlow"
        );
        assert_eq!(
            prompt_of(&json!({"system": "Plain.", "messages": []})),
            "Plain."
        );
    }

    #[test]
    fn request_text_gemini_and_bedrock() {
        let gemini = json!({
            "systemInstruction": {"parts": [{"text": "Answer in French."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hello"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
                {"role": "model", "parts": [{"functionCall": {"name": "t", "args": {"x": 1}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "t",
                    "response": {"y": 2}}}]}
            ],
            "generationConfig": {"temperature": 0.2}
        });
        assert_eq!(
            prompt_of(&gemini),
            "Answer in French.\nHello\n{\"x\":1}\n{\"y\":2}"
        );
        let bedrock = json!({
            "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
            "messages": [
                {"role": "user", "content": [{"text": "Weather?"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t",
                    "name": "w", "input": {"c": "Oslo"}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [
                    {"json": {"temp": 3}}, {"text": "cold"}]}}]}
            ],
            "inferenceConfig": {"maxTokens": 100},
            "toolConfig": {"tools": [{"toolSpec": {"name": "w"}}]}
        });
        assert_eq!(
            prompt_of(&bedrock),
            "Be brief.\nWeather?\n{\"c\":\"Oslo\"}\n{\"temp\":3}\ncold\n\
             {\"toolSpec\":{\"name\":\"w\"}}"
        );
    }

    #[test]
    fn text_appends_to_existing_output() {
        let mut out = String::from("before");
        response_text(
            &json!({"type": "message", "content": [{"type": "text",
            "text": "after"}]}),
            &mut out,
        );
        assert_eq!(out, "before\nafter");
        let mut out = String::from("be");
        delta_text(
            &json!({"choices": [{"delta": {"content": "fore"}}]}),
            &mut out,
        );
        assert_eq!(out, "before");
    }

    #[test]
    fn usage_serializes_with_field_names() {
        let v = serde_json::to_value(usage(1, 2, 3)).unwrap();
        assert_eq!(
            v,
            json!({"input": 1, "output": 2, "total": 3, "cached_input": 0,
                "cache_creation_input": 0, "reasoning": 0, "estimated": false})
        );
    }
}
