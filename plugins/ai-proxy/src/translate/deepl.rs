//! OpenAI chat completions client in front of DeepL text translation (Higress type `deepl`):
//! `POST /v2/translate` with `Authorization: DeepL-Auth-Key <key>`.
//!
//! As in Higress, every non-system message is one text to translate into `targetLang`, the
//! system message is DeepL `context` (steers the translation, is not translated), and each
//! translation comes back as its own choice with the detected source language as `name`.
//! DeepL does not stream and reports characters, not tokens, so answers carry no usage.

use super::TranslateError;
use super::{body_excerpt, openai_error_type_for_status};
use super::{err, parse};
use crate::config::ProviderConfig;
use sdk::config::ConfigError;
use sdk::error::ErrorReply;
use sdk::llm::openai;
use sdk::llm::stream::{Encoder, Event};
use serde_json::{Map, Value};

/// DeepL API Pro host.
pub const DEEPL_PRO_HOST: &str = "api.deepl.com";
/// DeepL API Free host.
pub const DEEPL_FREE_HOST: &str = "api-free.deepl.com";
/// Translation path.
pub const DEEPL_PATH: &str = "/v2/translate";
/// Authorization scheme: the header is `Authorization: DeepL-Auth-Key <key>`.
pub const DEEPL_AUTH_SCHEME: &str = "DeepL-Auth-Key";

/// DeepL request fields a client may set in its chat request; they are passed on as they are.
const PASSED_FIELDS: &[&str] = &[
    "source_lang",
    "split_sentences",
    "preserve_formatting",
    "formality",
    "model_type",
    "glossary_id",
    "tag_handling",
    "outline_detection",
    "non_splitting_tags",
    "splitting_tags",
    "ignore_tags",
    "show_billed_characters",
];

/// DeepL settings from the provider config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeeplOptions {
    /// `targetLang`, e.g. `ZH`, `EN-US` (a request `target_lang` field overrides it).
    pub target_lang: String,
}

impl DeeplOptions {
    /// Reads `targetLang`, which Higress requires.
    pub fn from_config(c: &ProviderConfig) -> Result<DeeplOptions, ConfigError> {
        let target = c.target_lang.as_deref().unwrap_or_default().trim();
        if target.is_empty() {
            return Err(ConfigError::new("targetLang", "required for type `deepl`"));
        }
        Ok(DeeplOptions {
            target_lang: target.to_string(),
        })
    }
}

/// The host for a request: the model `Pro` or `Free` (any case) picks it as in Higress;
/// otherwise a key ending in `:fx` (DeepL's mark of Free keys) means Free, anything else Pro.
pub fn deepl_host(model: &str, key: &str) -> &'static str {
    if model.eq_ignore_ascii_case("pro") {
        DEEPL_PRO_HOST
    } else if model.eq_ignore_ascii_case("free") || key.ends_with(":fx") {
        DEEPL_FREE_HOST
    } else {
        DEEPL_PRO_HOST
    }
}

/// Builds the `/v2/translate` body for an OpenAI chat request.
///
/// Each non-system message with text becomes one `text` entry, in order; `system`/`developer`
/// messages become `context`. `target_lang` is the config's unless the request sets
/// `target_lang`; the DeepL fields in `PASSED_FIELDS` (`source_lang`, `formality`,
/// `glossary_id`, …) are taken from the request. `model` only picks the host
/// ([`deepl_host`]).
pub fn to_deepl_request(
    req: &openai::ChatRequest,
    _model: &str,
    opts: &DeeplOptions,
) -> Result<Value, TranslateError> {
    let x = &req.extra;
    let mut texts = Vec::new();
    let mut context = Vec::new();
    for msg in &req.messages {
        let text = super::text_only(msg, "DeepL")?;
        if text.is_empty() {
            continue;
        }
        match msg.role.as_str() {
            "system" | "developer" => context.push(text),
            _ => texts.push(Value::String(text)),
        }
    }
    if texts.is_empty() {
        return Err(err(
            "no text to translate: every non-system message is empty",
        ));
    }
    let target = x
        .get("target_lang")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or(&opts.target_lang);
    if target.is_empty() {
        return Err(err("no target language (targetLang) for DeepL"));
    }
    let mut body = Map::new();
    body.insert("text".into(), Value::Array(texts));
    body.insert("target_lang".into(), Value::String(target.to_string()));
    if !context.is_empty() {
        body.insert("context".into(), Value::String(context.join("\n")));
    }
    for key in PASSED_FIELDS {
        if let Some(v) = x.get(*key).filter(|v| !v.is_null()) {
            body.insert((*key).to_string(), v.clone());
        }
    }
    Ok(Value::Object(body))
}

/// Reads a DeepL answer as the events of one answer: a choice per translation, named by its
/// detected source language.
pub fn read_answer(
    body: &[u8],
    enc: &mut dyn Encoder,
    out: &mut String,
) -> Result<(), TranslateError> {
    let v: Value = parse(body, "cannot read the DeepL answer")?;
    let translations = v
        .get("translations")
        .and_then(Value::as_array)
        .ok_or_else(|| match v.get("message").and_then(Value::as_str) {
            Some(m) => err(format!("DeepL error: {m}")),
            None => err("the DeepL answer has no translations"),
        })?;
    for (i, t) in translations.iter().enumerate() {
        let text = t
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("DeepL translation {i} has no text")))?;
        enc.event(Event::Choice(u32::try_from(i).unwrap_or(u32::MAX)), out);
        if let Some(lang) = t.get("detected_source_language").and_then(Value::as_str) {
            enc.event(Event::Name(lang), out);
        }
        enc.event(Event::Text(text), out);
        enc.event(Event::Finish("stop"), out);
    }
    Ok(())
}

/// Turns a DeepL error response (`{"message": "…", "detail": "…"}`) into the OpenAI-style
/// error the client gets. DeepL's own statuses become standard ones: 456 (quota exceeded) is a
/// 429 `insufficient_quota`, 529 (too many requests) a 429; 403 (bad key) is an
/// `authentication_error`.
pub fn deepl_error_to_openai(status: u32, body: &[u8]) -> ErrorReply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |key: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let message = match (field("message"), field("detail")) {
        (Some(m), Some(d)) => format!("{m}: {d}"),
        (Some(m), None) => m.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => body_excerpt(body, status),
    };
    match status {
        456 => ErrorReply::new(429, "insufficient_quota", Some("quota_exceeded"), message),
        529 => ErrorReply::new(429, "rate_limit_exceeded", None, message),
        403 => ErrorReply::new(403, "authentication_error", None, message),
        414 => ErrorReply::new(414, "invalid_request_error", None, message),
        _ => ErrorReply::new(status, openai_error_type_for_status(status), None, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_deepl_response(
        body: &[u8],
        model: &str,
    ) -> Result<openai::ChatResponse, TranslateError> {
        crate::translate::whole_chat(model, Default::default(), |e, o| read_answer(body, e, o))
    }
    use serde_json::json;

    fn chat(v: Value) -> openai::ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn zh() -> DeeplOptions {
        DeeplOptions {
            target_lang: "ZH".into(),
        }
    }

    #[test]
    fn options_from_config() {
        let cfg = ProviderConfig {
            target_lang: Some(" EN-US ".into()),
            ..ProviderConfig::default()
        };
        assert_eq!(
            DeeplOptions::from_config(&cfg).unwrap().target_lang,
            "EN-US"
        );
        let e = DeeplOptions::from_config(&ProviderConfig::default()).unwrap_err();
        assert_eq!(e.path, "targetLang");
    }

    #[test]
    fn hosts() {
        assert_eq!(deepl_host("Pro", "k:fx"), "api.deepl.com");
        assert_eq!(deepl_host("free", "k"), "api-free.deepl.com");
        assert_eq!(deepl_host("deepl", "279a2e9d:fx"), "api-free.deepl.com");
        assert_eq!(deepl_host("deepl", "279a2e9d"), "api.deepl.com");
        assert_eq!(deepl_host("", ""), "api.deepl.com");
    }

    #[test]
    fn request_like_higress_example() {
        let req = chat(json!({
            "model": "Free",
            "messages": [
                {"role": "system", "content": "money"},
                {"role": "user", "content": "sit by the bank"},
                {"role": "user", "content": [{"type": "text", "text": "a bank in China"}]}
            ]
        }));
        assert_eq!(
            to_deepl_request(&req, "Free", &zh()).unwrap(),
            json!({"text": ["sit by the bank", "a bank in China"], "target_lang": "ZH",
                "context": "money"})
        );
    }

    #[test]
    fn request_fields_and_overrides() {
        let req = chat(json!({
            "messages": [
                {"role": "developer", "content": "legal text"},
                {"role": "system", "content": "formal"},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": ""},
                {"role": "assistant", "content": "World"}
            ],
            "target_lang": "DE",
            "source_lang": "EN",
            "formality": "prefer_more",
            "glossary_id": "def3a26b-3e84-45b3-84ae-0c0aaf3525f7",
            "tag_handling": "html",
            "show_billed_characters": true,
            "temperature": 0.5,
            "stream": true
        }));
        assert_eq!(
            to_deepl_request(&req, "Pro", &zh()).unwrap(),
            json!({"text": ["Hello", "World"], "target_lang": "DE",
                "context": "legal text\nformal", "source_lang": "EN", "formality": "prefer_more",
                "glossary_id": "def3a26b-3e84-45b3-84ae-0c0aaf3525f7", "tag_handling": "html",
                "show_billed_characters": true})
        );
    }

    #[test]
    fn request_errors() {
        let only_system = chat(json!({"messages": [{"role": "system", "content": "ctx"}]}));
        assert!(to_deepl_request(&only_system, "Free", &zh()).is_err());
        let image = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}));
        assert!(to_deepl_request(&image, "Free", &zh()).is_err());
        let hello = chat(json!({"messages": [{"role": "user", "content": "Hello"}]}));
        assert!(to_deepl_request(&hello, "Free", &DeeplOptions::default()).is_err());
    }

    #[test]
    fn response_one_choice_per_translation() {
        let r = from_deepl_response(
            br#"{"translations": [
                {"detected_source_language": "EN", "text": "operate a gambling establishment"},
                {"detected_source_language": "EN", "text": "Bank of China", "billed_characters": 15}
            ]}"#,
            "Free",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id": "", "object": "chat.completion", "created": 0, "model": "Free",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "name": "EN",
                    "content": "operate a gambling establishment"}, "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "name": "EN",
                    "content": "Bank of China"}, "finish_reason": "stop"}
            ]})
        );
        assert_eq!(
            from_deepl_response(br#"{"message": "Wrong endpoint"}"#, "Free")
                .unwrap_err()
                .0,
            "DeepL error: Wrong endpoint"
        );
        assert!(from_deepl_response(br#"{"translations": [{"x": 1}]}"#, "Free").is_err());
        assert!(from_deepl_response(b"", "Free").is_err());
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let e = deepl_error_to_openai(456, br#"{"message": "Quota Exceeded"}"#);
        assert_eq!(
            (e.status, e.error_type.as_str(), e.code.as_deref()),
            (429, "insufficient_quota", Some("quota_exceeded"))
        );
        assert_eq!(e.message, "Quota Exceeded");
        let e = deepl_error_to_openai(
            400,
            br#"{"message": "Bad request", "detail": "Value for 'target_lang' not supported."}"#,
        );
        assert_eq!(e.status, 400);
        assert_eq!(e.error_type, "invalid_request_error");
        assert_eq!(
            e.message,
            "Bad request: Value for 'target_lang' not supported."
        );
        let e = deepl_error_to_openai(403, br#"{"message": "Authorization failed"}"#);
        assert_eq!(
            (e.status, e.error_type.as_str()),
            (403, "authentication_error")
        );
        let e = deepl_error_to_openai(529, b"Too many requests");
        assert_eq!(
            (e.status, e.error_type.as_str()),
            (429, "rate_limit_exceeded")
        );
        assert_eq!(e.message, "Too many requests");
        let e = deepl_error_to_openai(414, b"");
        assert_eq!(e.error_type, "invalid_request_error");
        assert_eq!(e.message, "upstream returned HTTP 414");
        assert_eq!(deepl_error_to_openai(500, b"{}").error_type, "server_error");
    }
}
