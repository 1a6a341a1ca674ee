//! Pure content-security logic: Alibaba Cloud RPC request signing (signature version 1.0,
//! HMAC-SHA1), the signed form body of a `TextModerationPlus` / `MultiModalGuard` call, gjson-style
//! content paths, and the verdict read from the service's answer. No host calls.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;
use std::time::{SystemTime, UNIX_EPOCH};

/// API version of the content security (Green) service.
pub const API_VERSION: &str = "2022-03-02";
/// `requestFrom` sent in `ServiceParameters`, as Higress sends it.
pub const REQUEST_FROM: &str = "CIPFrom/AIGateway";

/// RFC 3986 percent-encoding as Alibaba Cloud's RPC signature wants it: unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`) stay, every other byte is `%XX` (uppercase hex).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonicalized query: parameters sorted by name, each `name=value` percent-encoded,
/// joined by `&`.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `Base64(HMAC-SHA1(secret + "&", method + "&" + enc("/") + "&" + enc(canonical query)))`.
pub fn signature(method: &str, params: &[(String, String)], secret: &str) -> String {
    let to_sign = format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    );
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()) else {
        return String::new();
    };
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `yyyy-MM-ddTHH:mm:ssZ` (UTC) of `time`.
pub fn iso8601(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A fresh signature nonce: 16 random bytes from the host, as hex. None when the host has no
/// random source (the call is then not made).
pub fn nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What one signed call carries.
#[derive(Debug, Clone)]
pub struct CallInput<'a> {
    /// `Action`: `TextModerationPlus` or `MultiModalGuard`.
    pub action: &'a str,
    /// `Service`: e.g. `llm_query_moderation`.
    pub service: &'a str,
    /// The text checked.
    pub content: &'a str,
    /// Ties the pieces of one gateway request together.
    pub session_id: &'a str,
    /// `AccessKeyId`.
    pub access_key: &'a str,
    /// The secret the signature is keyed with.
    pub secret_key: &'a str,
    /// `SecurityToken` (STS), if any.
    pub security_token: Option<&'a str>,
    /// `Timestamp`.
    pub timestamp: &'a str,
    /// `SignatureNonce`.
    pub nonce: &'a str,
}

/// The signed parameters of a call, `Signature` last.
pub fn signed_params(input: &CallInput) -> Vec<(String, String)> {
    let service_parameters = json!({
        "content": input.content,
        "sessionId": input.session_id,
        "requestFrom": REQUEST_FROM,
    });
    let mut params: Vec<(String, String)> = [
        ("Action", input.action),
        ("Version", API_VERSION),
        ("Format", "JSON"),
        ("AccessKeyId", input.access_key),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", input.nonce),
        ("Timestamp", input.timestamp),
        ("Service", input.service),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.push(("ServiceParameters".into(), service_parameters.to_string()));
    if let Some(token) = input.security_token {
        params.push(("SecurityToken".into(), token.to_string()));
    }
    let sig = signature("POST", &params, input.secret_key);
    params.push(("Signature".into(), sig));
    params
}

/// The parameters as an `application/x-www-form-urlencoded` body.
pub fn form_body(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// ---------------------------------------------------------------------------------------------
// Content paths (the gjson subset Higress's defaults use)
// ---------------------------------------------------------------------------------------------

/// One step of a content path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Reverse,
    /// `#`: every element.
    All,
    /// `#(key=="value")#`: every element whose `key` is `value`.
    Filter(String, String),
}

/// A gjson-style path: `messages.@reverse.0.content`, `choices.0.delta.content`,
/// `content.#(type=="text")#.text`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentPath {
    source: String,
    steps: Vec<Step>,
}

impl ContentPath {
    /// Parses a path; the error says what is wrong.
    pub fn parse(path: &str) -> Result<ContentPath, String> {
        if path.trim().is_empty() {
            return Err("must not be empty".into());
        }
        let mut steps = Vec::new();
        let mut rest = path;
        while !rest.is_empty() {
            let (segment, tail) = if rest.starts_with("#(") {
                let end = rest.find(")#").ok_or("unclosed `#(`")?;
                (
                    rest.get(..end + 2).unwrap_or_default(),
                    rest.get(end + 2..).unwrap_or_default(),
                )
            } else {
                match rest.find('.') {
                    Some(i) => (
                        rest.get(..i).unwrap_or_default(),
                        rest.get(i..).unwrap_or_default(),
                    ),
                    None => (rest, ""),
                }
            };
            rest = tail.strip_prefix('.').unwrap_or(tail);
            let step = if segment == "@reverse" {
                Step::Reverse
            } else if segment == "#" {
                Step::All
            } else if let Some(inner) = segment
                .strip_prefix("#(")
                .and_then(|s| s.strip_suffix(")#"))
            {
                let (key, value) = inner.split_once("==").ok_or_else(|| {
                    format!("unsupported query `{segment}` (only key==\"value\")")
                })?;
                let value = value.trim().trim_matches('"');
                Step::Filter(key.trim().to_string(), value.to_string())
            } else if let Ok(i) = segment.parse::<usize>() {
                Step::Index(i)
            } else if segment.is_empty() {
                return Err(format!("empty segment in `{path}`"));
            } else {
                Step::Key(segment.to_string())
            };
            steps.push(step);
        }
        Ok(ContentPath {
            source: path.to_string(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The text at the path: a string, or the `text` of content parts / blocks, joined by `\n`.
    pub fn text(&self, doc: &Value) -> String {
        let mut found = Vec::new();
        walk(&self.steps, doc, &mut found);
        let mut out = Vec::new();
        for v in found {
            collect_text(v, &mut out);
        }
        out.join("\n")
    }
}

fn walk<'a>(steps: &[Step], value: &'a Value, out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(value);
        return;
    };
    match (step, value) {
        (Step::Key(k), Value::Object(map)) => {
            if let Some(v) = map.get(k) {
                walk(rest, v, out);
            }
        }
        (Step::Index(i), Value::Array(items)) => {
            if let Some(v) = items.get(*i) {
                walk(rest, v, out);
            }
        }
        (Step::Reverse, Value::Array(items)) => {
            // The next step indexes the reversed array.
            match rest.split_first() {
                Some((Step::Index(i), after)) => {
                    if let Some(v) = items.iter().rev().nth(*i) {
                        walk(after, v, out);
                    }
                }
                _ => items.iter().rev().for_each(|v| walk(rest, v, out)),
            }
        }
        (Step::All, Value::Array(items)) => items.iter().for_each(|v| walk(rest, v, out)),
        (Step::Filter(k, want), Value::Array(items)) => items
            .iter()
            .filter(|v| v.get(k).and_then(Value::as_str) == Some(want.as_str()))
            .for_each(|v| walk(rest, v, out)),
        _ => {}
    }
}

fn collect_text(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    Value::Object(_) => {
                        if let Some(Value::String(s)) = item.get("text") {
                            if !s.is_empty() {
                                out.push(s.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// The text at `primary`, else at the first fallback that has some.
pub fn text_at(doc: &Value, primary: &ContentPath, fallbacks: &[ContentPath]) -> String {
    let text = primary.text(doc);
    if !text.is_empty() {
        return text;
    }
    fallbacks
        .iter()
        .filter(|f| f.as_str() != primary.as_str())
        .map(|f| f.text(doc))
        .find(|t| !t.is_empty())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Risk levels and verdicts
// ---------------------------------------------------------------------------------------------

/// A risk level as a number: `none`/`S0` 0, `low`/`S1` 1, `medium`/`S2` 2, `high`/`S3` 3,
/// `max`/`S4` 4; anything else None.
pub fn level(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "none" | "s0" | "" => Some(0),
        "low" | "s1" => Some(1),
        "medium" | "s2" => Some(2),
        "high" | "s3" => Some(3),
        "max" | "s4" => Some(4),
        _ => None,
    }
}

/// The thresholds one request is judged by (a level at or above its bar blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bars {
    /// `riskLevelBar` (TextModerationPlus's `RiskLevel`).
    pub risk: u8,
    /// `contentModerationLevelBar`.
    pub content_moderation: u8,
    /// `promptAttackLevelBar`.
    pub prompt_attack: u8,
    /// `sensitiveDataLevelBar`.
    pub sensitive_data: u8,
    /// `maliciousUrlLevelBar`.
    pub malicious_url: u8,
    /// `modelHallucinationLevelBar`.
    pub model_hallucination: u8,
    /// `customLabelLevelBar`.
    pub custom_label: u8,
}

impl Default for Bars {
    fn default() -> Self {
        Bars {
            risk: 3,
            content_moderation: 4,
            prompt_attack: 4,
            sensitive_data: 4,
            malicious_url: 4,
            model_hallucination: 4,
            custom_label: 4,
        }
    }
}

/// What the service said about one text.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Below every bar.
    Pass,
    /// At or above a bar.
    Block {
        /// `Result[0].Label` (or the dimension that blocked).
        label: String,
        /// `Result[0].RiskWords`.
        words: String,
        /// `Advice[0].Answer`: the service's suggested answer.
        answer: Option<String>,
    },
    /// `riskAction: mask` and the service returned desensitized text for the request.
    Mask(String),
    /// The answer was an error or not understood.
    Error(String),
}

/// The service's `RequestId`, when it sent one.
pub fn request_id(body: &Value) -> Option<String> {
    body.get("RequestId")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Judges a service answer. TextModerationPlus: `Data.RiskLevel` against `riskLevelBar`.
/// MultiModalGuard: `Data.RiskLevel` against the content-moderation bar, `Data.AttackLevel`
/// against the prompt-attack bar, each `Data.Detail[]` against its dimension's bar, and a
/// `Suggestion` of `mask` (with `mask` set) giving the desensitized text.
pub fn judge(body: &Value, multimodal: bool, bars: &Bars, mask: bool) -> Verdict {
    let code = body.get("Code").and_then(Value::as_i64);
    if code != Some(200) {
        let message = body
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or("no Code in the answer");
        return Verdict::Error(format!("service code {code:?}: {message}"));
    }
    let Some(data) = body.get("Data") else {
        return Verdict::Error("answer without Data".into());
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let first = data.pointer("/Result/0");
    let label = text(first.and_then(|r| r.get("Label")));
    let words = text(first.and_then(|r| r.get("RiskWords")));
    let answer = data
        .pointer("/Advice/0/Answer")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let lvl = |key: &str| level(&text(data.get(key))).unwrap_or(0);
    let block = |label: String| Verdict::Block {
        label,
        words: words.clone(),
        answer: answer.clone(),
    };
    if !multimodal {
        return if lvl("RiskLevel") >= bars.risk {
            block(label)
        } else {
            Verdict::Pass
        };
    }
    if lvl("RiskLevel") >= bars.content_moderation {
        return block(if label.is_empty() {
            "contentModeration".into()
        } else {
            label
        });
    }
    if lvl("AttackLevel") >= bars.prompt_attack {
        return block(if label.is_empty() {
            "promptAttack".into()
        } else {
            label
        });
    }
    let mut desensitized = None;
    for detail in data
        .get("Detail")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = text(detail.get("Type"));
        let bar = match kind.as_str() {
            "contentModeration" => bars.content_moderation,
            "promptAttack" => bars.prompt_attack,
            "sensitiveData" => bars.sensitive_data,
            "maliciousUrl" => bars.malicious_url,
            "modelHallucination" => bars.model_hallucination,
            "customLabel" => bars.custom_label,
            _ => continue,
        };
        let suggestion = text(detail.get("Suggestion"));
        if mask && suggestion == "mask" {
            if let Some(d) = detail
                .pointer("/Result/0/Ext/Desensitization")
                .and_then(Value::as_str)
            {
                desensitized = Some(d.to_string());
                continue;
            }
        }
        if level(&text(detail.get("Level"))).unwrap_or(0) >= bar {
            return block(kind);
        }
    }
    if text(data.get("Suggestion")) == "block" {
        return block(label);
    }
    match desensitized {
        Some(d) => Verdict::Mask(d),
        None => Verdict::Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("a b*c/d+e"), "a%20b%2Ac%2Fd%2Be");
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
        assert_eq!(percent_encode("{\"k\":1}"), "%7B%22k%22%3A1%7D");
    }

    /// The worked example of Alibaba Cloud's RPC signature documentation (ECS DescribeRegions,
    /// secret `testsecret`).
    #[test]
    fn signature_matches_the_documented_example() {
        let params: Vec<(String, String)> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            signature("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        let t = UNIX_EPOCH + Duration::from_secs(1_456_231_584);
        assert_eq!(iso8601(t), "2016-02-23T12:46:24Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn nonces_differ() {
        let a = nonce().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, nonce().unwrap());
    }

    #[test]
    fn signed_params_carry_the_signature_of_the_rest() {
        let input = CallInput {
            action: "TextModerationPlus",
            service: "llm_query_moderation",
            content: "hello world",
            session_id: "s1",
            access_key: "ak",
            secret_key: "sk",
            security_token: None,
            timestamp: "2026-01-01T00:00:00Z",
            nonce: "n1",
        };
        let params = signed_params(&input);
        let (last, rest) = params.split_last().unwrap();
        assert_eq!(last.0, "Signature");
        assert_eq!(last.1, signature("POST", rest, "sk"));
        let sp: Value = serde_json::from_str(
            &params
                .iter()
                .find(|(k, _)| k == "ServiceParameters")
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(sp["content"], "hello world");
        assert!(form_body(&params).contains("Action=TextModerationPlus&Version=2022-03-02"));
    }

    #[test]
    fn content_paths() {
        let req = json!({"messages": [{"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]}]});
        let p = ContentPath::parse("messages.@reverse.0.content").unwrap();
        assert_eq!(p.text(&req), "a\nb");
        assert_eq!(
            ContentPath::parse("messages.0.content").unwrap().text(&req),
            "first"
        );
        let resp = json!({"content": [{"type": "text", "text": "x"}, {"type": "tool_use"}, {"type": "text", "text": "y"}]});
        let p = ContentPath::parse("content.#(type==\"text\")#.text").unwrap();
        assert_eq!(p.text(&resp), "x\ny");
        let primary = ContentPath::parse("choices.0.message.content").unwrap();
        assert_eq!(text_at(&resp, &primary, &[p]), "x\ny");
        assert!(ContentPath::parse("").is_err());
        assert!(ContentPath::parse("a..b").is_err());
        assert!(ContentPath::parse("#(type)#").is_err());
    }

    fn answer(data: Value) -> Value {
        json!({"Code": 200, "Message": "OK", "RequestId": "r-1", "Data": data})
    }

    #[test]
    fn text_moderation_plus_uses_the_risk_level_bar() {
        let bars = Bars::default();
        let high = answer(
            json!({"RiskLevel": "high", "Result": [{"Label": "violent", "RiskWords": "bomb"}],
            "Advice": [{"Answer": "Cannot help."}]}),
        );
        assert_eq!(
            judge(&high, false, &bars, false),
            Verdict::Block {
                label: "violent".into(),
                words: "bomb".into(),
                answer: Some("Cannot help.".into())
            }
        );
        let medium = answer(json!({"RiskLevel": "medium"}));
        assert_eq!(judge(&medium, false, &bars, false), Verdict::Pass);
        let strict = Bars {
            risk: 2,
            ..Bars::default()
        };
        assert!(matches!(
            judge(&medium, false, &strict, false),
            Verdict::Block { .. }
        ));
        assert_eq!(request_id(&high).as_deref(), Some("r-1"));
    }

    #[test]
    fn multimodal_guard_uses_the_dimension_bars() {
        let bars = Bars {
            content_moderation: 3,
            prompt_attack: 2,
            sensitive_data: 2,
            ..Bars::default()
        };
        let attack = answer(json!({"RiskLevel": "none", "AttackLevel": "medium"}));
        assert!(
            matches!(judge(&attack, true, &bars, false), Verdict::Block { label, .. } if label == "promptAttack")
        );
        let sensitive = answer(
            json!({"Detail": [{"Type": "sensitiveData", "Level": "S2", "Suggestion": "mask",
            "Result": [{"Ext": {"Desensitization": "call ***"}}]}]}),
        );
        assert!(matches!(
            judge(&sensitive, true, &bars, false),
            Verdict::Block { .. }
        ));
        assert_eq!(
            judge(&sensitive, true, &bars, true),
            Verdict::Mask("call ***".into())
        );
        let low = answer(
            json!({"RiskLevel": "low", "Detail": [{"Type": "sensitiveData", "Level": "S1"}]}),
        );
        assert_eq!(judge(&low, true, &bars, false), Verdict::Pass);
        let suggested = answer(json!({"Suggestion": "block"}));
        assert!(matches!(
            judge(&suggested, true, &bars, false),
            Verdict::Block { .. }
        ));
    }

    #[test]
    fn errors_are_errors() {
        let bars = Bars::default();
        let denied = json!({"Code": 401, "Message": "SignatureDoesNotMatch"});
        assert!(
            matches!(judge(&denied, false, &bars, false), Verdict::Error(m) if m.contains("SignatureDoesNotMatch"))
        );
        assert!(matches!(
            judge(&json!({"Code": 200}), false, &bars, false),
            Verdict::Error(_)
        ));
    }
}
