//! Pure masking logic: grok rules with checksums, masking a text and remembering how to undo it,
//! restoring masked values in whole texts and in streamed text split anywhere, a small JSONPath
//! for `deny_jsonpath`. No host calls.

use regex::{Captures, Regex, RegexBuilder};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Largest compiled replace rule.
const RULE_SIZE_LIMIT: usize = 1 << 20;
/// Deepest grok reference chain.
const GROK_DEPTH: usize = 8;

/// A check on the text a grok pattern matched that a regex cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Chinese resident ID (GB 11643): ISO 7064 MOD 11-2 check digit.
    IdCard,
    /// Payment card number: Luhn.
    Luhn,
}

impl Checksum {
    /// Whether `text` passes.
    pub fn check(self, text: &str) -> bool {
        match self {
            Checksum::IdCard => id_card_valid(text),
            Checksum::Luhn => luhn_valid(text),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Checksum::IdCard => "idcard",
            Checksum::Luhn => "luhn",
        }
    }

    fn from_tag(tag: &str) -> Option<Checksum> {
        match tag {
            "idcard" => Some(Checksum::IdCard),
            "luhn" => Some(Checksum::Luhn),
            _ => None,
        }
    }
}

/// The built-in grok patterns: name, regex, checksum.
const GROK: &[(&str, &str, Option<Checksum>)] = &[
    // Mainland China mobile numbers, optionally with +86.
    ("MOBILE", r"(?:\+?86[- ]?)?1[3-9](?-u:\d){9}(?-u:\b)", None),
    // International numbers in E.164 style: +, country code, 6 to 14 more digits in groups.
    (
        "PHONE",
        r"\+[1-9](?-u:\d){0,2}(?:[ -]?(?-u:\d){2,4}){2,4}(?-u:\b)",
        None,
    ),
    (
        "EMAILLOCALPART",
        r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+)*",
        None,
    ),
    (
        "HOSTNAME",
        r"(?:[0-9A-Za-z][0-9A-Za-z-]{0,62})(?:\.[0-9A-Za-z][0-9A-Za-z-]{0,62})*",
        None,
    ),
    ("EMAILADDRESS", r"%{EMAILLOCALPART}@%{HOSTNAME}", None),
    (
        "IPV4",
        r"(?-u:\b)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?-u:\b)",
        None,
    ),
    (
        "IPV6",
        r"(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|::(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}",
        None,
    ),
    ("IP", r"(?:%{IPV4}|%{IPV6})", None),
    // 18-digit resident ID: region, birth date, sequence, check digit.
    (
        "IDCARD",
        r"(?-u:\b)[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?-u:\b)",
        Some(Checksum::IdCard),
    ),
    // Card numbers of 13 to 19 digits, optionally grouped by spaces or dashes.
    (
        "BANKCARD",
        r"(?-u:\b)\d(?:[ -]?\d){12,18}(?-u:\b)",
        Some(Checksum::Luhn),
    ),
    ("CREDITCARD", r"%{BANKCARD}", None),
    // Provider API keys: sk-/pk-/ak- style keys and AWS access key ids.
    (
        "APIKEY",
        r"(?:(?-u:\b)(?:sk|pk|ak|rk)-[A-Za-z0-9_-]{16,}|(?-u:\b)AKIA[0-9A-Z]{16}(?-u:\b))",
        None,
    ),
    ("USERNAME", r"[a-zA-Z0-9._-]+", None),
    ("USER", r"%{USERNAME}", None),
    ("INT", r"[+-]?\d+", None),
    ("NUMBER", r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)", None),
    ("WORD", r"\b\w+\b", None),
    ("NOTSPACE", r"\S+", None),
    ("SPACE", r"\s*", None),
    ("DATA", r".*?", None),
    ("GREEDYDATA", r".*", None),
    (
        "UUID",
        r"[A-Fa-f0-9]{8}-(?:[A-Fa-f0-9]{4}-){3}[A-Fa-f0-9]{12}",
        None,
    ),
];

/// Expands `%{NAME}` and `%{NAME:alias}` in `source` into regex syntax. An alias becomes a named
/// group (usable as `$alias` in `value`); a pattern with a checksum becomes a hidden named group
/// checked on every match. Unknown names are an error naming them.
pub fn expand_grok(source: &str) -> Result<String, String> {
    let mut counter = 0;
    expand(source, 0, &mut counter)
}

fn expand(source: &str, depth: usize, counter: &mut usize) -> Result<String, String> {
    if depth > GROK_DEPTH {
        return Err("grok patterns nest too deep".into());
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("%{") {
        let (head, tail) = rest.split_at(start);
        out.push_str(head);
        let Some(end) = tail.find('}') else {
            return Err(format!("unclosed grok reference `{tail}`"));
        };
        let inner = tail.get(2..end).unwrap_or_default();
        let (name, alias) = match inner.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (inner, None),
        };
        let Some((_, pattern, checksum)) = GROK.iter().find(|(n, _, _)| *n == name) else {
            return Err(format!("unknown grok pattern `%{{{name}}}`"));
        };
        let body = expand(pattern, depth + 1, counter)?;
        let body = match checksum {
            Some(c) => {
                *counter += 1;
                format!("(?P<chk_{}_{}>{body})", c.tag(), counter)
            }
            None => format!("(?:{body})"),
        };
        match alias {
            Some(a) if !a.is_empty() => {
                let a: String = a
                    .chars()
                    .map(|c| if c.is_alphanumeric() { c } else { '_' })
                    .collect();
                out.push_str(&format!("(?P<{a}>{body})"));
            }
            _ => out.push_str(&body),
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// Chinese resident ID check digit (ISO 7064 MOD 11-2 over the first 17 digits).
pub fn id_card_valid(id: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let bytes = id.as_bytes();
    if bytes.len() != 18 {
        return false;
    }
    let mut sum = 0;
    for (b, w) in bytes.iter().zip(WEIGHTS) {
        let Some(d) = (*b as char).to_digit(10) else {
            return false;
        };
        sum += d * w;
    }
    let want = CHECK.get((sum % 11) as usize).copied();
    bytes.get(17).map(u8::to_ascii_uppercase) == want
}

/// The Luhn check over the digits of `number` (spaces and dashes ignored), 13 to 19 digits.
pub fn luhn_valid(number: &str) -> bool {
    let digits: Vec<u32> = number
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// How a replace rule masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskType {
    /// By `value`, with `$name`/`$1` taken from the match.
    Replace,
    /// By the SHA-256 hex digest of the match.
    Hash,
}

/// One compiled `replace_roles` entry.
#[derive(Debug, Clone)]
pub struct MaskRule {
    regex: Regex,
    checks: Vec<(String, Checksum)>,
    kind: MaskType,
    value: String,
    restore: bool,
}

impl MaskRule {
    /// Compiles a rule; the error says what is wrong with `regex`.
    pub fn new(regex: &str, kind: MaskType, value: &str, restore: bool) -> Result<Self, String> {
        let source = expand_grok(regex)?;
        let compiled = RegexBuilder::new(&source)
            .size_limit(RULE_SIZE_LIMIT)
            .build()
            .map_err(|e| e.to_string())?;
        if compiled.is_match("") {
            return Err("the rule matches the empty text".into());
        }
        let checks = compiled
            .capture_names()
            .flatten()
            .filter_map(|n| {
                let tag = n.strip_prefix("chk_")?.split('_').next()?;
                Some((n.to_string(), Checksum::from_tag(tag)?))
            })
            .collect();
        Ok(MaskRule {
            regex: compiled,
            checks,
            kind,
            value: value.to_string(),
            restore,
        })
    }

    fn passes(&self, caps: &Captures) -> bool {
        self.checks
            .iter()
            .all(|(name, check)| caps.name(name).is_none_or(|m| check.check(m.as_str())))
    }

    fn masked(&self, caps: &Captures) -> String {
        let whole = caps.get(0).map(|m| m.as_str()).unwrap_or_default();
        match self.kind {
            MaskType::Hash => hex_sha256(whole),
            MaskType::Replace => {
                let mut out = String::new();
                caps.expand(&self.value, &mut out);
                out
            }
        }
    }
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What was masked in one request: masked text → original, for the rules with `restore`. A
/// masked text that stands for two different originals is not restored (which one is unknown).
#[derive(Debug, Clone, Default)]
pub struct MaskMap {
    map: BTreeMap<String, Option<String>>,
}

impl MaskMap {
    /// Nothing to restore.
    pub fn is_empty(&self) -> bool {
        self.map.values().all(Option::is_none)
    }

    fn insert(&mut self, masked: String, original: &str) {
        if masked.is_empty() || masked == original {
            return;
        }
        self.map
            .entry(masked)
            .and_modify(|o| {
                if o.as_deref() != Some(original) {
                    *o = None;
                }
            })
            .or_insert_with(|| Some(original.to_string()));
    }

    /// The pairs that restore, longest mask first.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        pairs
    }
}

/// Masks `text` with every rule in order, noting what `restore` rules masked in `map`.
pub fn mask_text(rules: &[MaskRule], text: &str, map: &mut MaskMap) -> String {
    let mut current = text.to_string();
    for rule in rules {
        let mut out = String::with_capacity(current.len());
        let mut last = 0;
        for caps in rule.regex.captures_iter(&current) {
            let Some(whole) = caps.get(0) else { continue };
            if !rule.passes(&caps) {
                continue;
            }
            let masked = rule.masked(&caps);
            if rule.restore {
                map.insert(masked.clone(), whole.as_str());
            }
            out.push_str(current.get(last..whole.start()).unwrap_or_default());
            out.push_str(&masked);
            last = whole.end();
        }
        if last > 0 {
            out.push_str(current.get(last..).unwrap_or_default());
            current = out;
        }
    }
    current
}

/// Restores masked values in text that may arrive in pieces: text that could be the start of a
/// masked value is held back (at most the longest masked value) until the next piece decides.
#[derive(Debug, Clone, Default)]
pub struct Restorer {
    pairs: Vec<(String, String)>,
    /// Held text per stream part (choice or content block index).
    pending: BTreeMap<u64, String>,
}

impl Restorer {
    /// Restores what `map` holds.
    pub fn new(map: &MaskMap) -> Restorer {
        Restorer {
            pairs: map.pairs(),
            pending: BTreeMap::new(),
        }
    }

    /// Whether there is anything to restore.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Restores a whole text.
    pub fn restore_all(&self, text: &str) -> String {
        let (out, _) = self.scan(text, true);
        out
    }

    /// Adds a piece of part `key`'s text; returns the text that can go out now.
    pub fn feed(&mut self, key: u64, piece: &str) -> String {
        let mut text = self.pending.remove(&key).unwrap_or_default();
        text.push_str(piece);
        let (out, held) = self.scan(&text, false);
        if !held.is_empty() {
            self.pending.insert(key, held);
        }
        out
    }

    /// The end of part `key`: whatever was held, restored.
    pub fn flush(&mut self, key: u64) -> String {
        let text = self.pending.remove(&key).unwrap_or_default();
        self.scan(&text, true).0
    }

    /// The parts still holding text.
    pub fn pending_keys(&self) -> Vec<u64> {
        self.pending.keys().copied().collect()
    }

    /// Restores `text`; unless `end`, stops where the rest could still become a masked value and
    /// returns that rest as held.
    fn scan(&self, text: &str, end: bool) -> (String, String) {
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while let Some(rest) = text.get(i..).filter(|r| !r.is_empty()) {
            if let Some((mask, original)) = self
                .pairs
                .iter()
                .find(|(m, _)| rest.starts_with(m.as_str()))
            {
                out.push_str(original);
                i += mask.len();
                continue;
            }
            if !end && self.pairs.iter().any(|(m, _)| m.starts_with(rest)) {
                return (out, rest.to_string());
            }
            let Some(c) = rest.chars().next() else { break };
            out.push(c);
            i += c.len_utf8();
        }
        (out, String::new())
    }
}

/// Applies `f` to every string in `value`.
pub fn each_string(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|v| each_string(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| each_string(v, f)),
        _ => {}
    }
}

/// Text content of an OpenAI/Anthropic `content` (a string, or parts/blocks with `text`).
fn each_content_text(content: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match content {
        Value::String(s) => f(s),
        Value::Array(parts) => {
            for part in parts {
                if let Some(Value::String(s)) = part.get_mut("text") {
                    f(s);
                }
                // Anthropic tool results carry content of their own.
                if part.get("type").and_then(Value::as_str) == Some("tool_result") {
                    if let Some(inner) = part.get_mut("content") {
                        each_content_text(inner, f);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The conversation texts of an OpenAI chat or Anthropic Messages request (`system`, each
/// message's content and `reasoning_content`).
pub fn each_prompt_text(body: &mut Value, f: &mut dyn FnMut(&mut String)) {
    if let Some(system) = body.get_mut("system") {
        each_content_text(system, f);
    }
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for m in messages {
            if let Some(c) = m.get_mut("content") {
                each_content_text(c, f);
            }
            if let Some(Value::String(s)) = m.get_mut("reasoning_content") {
                f(s);
            }
        }
    }
}

/// The answer texts of an OpenAI chat completion or Anthropic message.
pub fn each_answer_text(body: &mut Value, f: &mut dyn FnMut(&mut String)) {
    if let Some(Value::Array(choices)) = body.get_mut("choices") {
        for c in choices {
            if let Some(m) = c.get_mut("message") {
                if let Some(content) = m.get_mut("content") {
                    each_content_text(content, f);
                }
                if let Some(Value::String(s)) = m.get_mut("reasoning_content") {
                    f(s);
                }
            }
        }
    }
    if body.get("type").and_then(Value::as_str) == Some("message") {
        if let Some(Value::Array(blocks)) = body.get_mut("content") {
            for b in blocks {
                for key in ["text", "thinking"] {
                    if let Some(Value::String(s)) = b.get_mut(key) {
                        f(s);
                    }
                }
            }
        }
    }
}

/// One step of a JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    All,
}

/// The JSONPath subset `deny_jsonpath` takes: `$`, `.key`, `['key']`, `[n]`, `[*]`, `.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    /// Parses a path; the error says what is wrong.
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        let mut rest = path.trim().strip_prefix('$').ok_or("must start with `$`")?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let (key, tail) = r.split_at(end);
                if key.is_empty() {
                    return Err("empty key after `.`".into());
                }
                steps.push(if key == "*" {
                    Step::All
                } else {
                    Step::Key(key.to_string())
                });
                rest = tail;
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or("unclosed `[`")?;
                let (inner, tail) = r.split_at(end);
                let inner = inner.trim();
                steps.push(if inner == "*" {
                    Step::All
                } else if let Some(k) = inner
                    .strip_prefix('\'')
                    .and_then(|k| k.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
                {
                    Step::Key(k.to_string())
                } else {
                    Step::Index(inner.parse().map_err(|_| format!("bad index `{inner}`"))?)
                });
                rest = tail.get(1..).unwrap_or_default();
            } else {
                return Err(format!("unexpected `{rest}`"));
            }
        }
        Ok(JsonPath(steps))
    }

    /// Applies `f` to every string the path selects (strings inside selected containers too).
    pub fn each_string(&self, value: &mut Value, f: &mut dyn FnMut(&mut String)) {
        select(&self.0, value, f);
    }
}

fn select(steps: &[Step], value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    let Some((step, rest)) = steps.split_first() else {
        each_string(value, f);
        return;
    };
    match (step, value) {
        (Step::Key(k), Value::Object(map)) => {
            if let Some(v) = map.get_mut(k) {
                select(rest, v, f);
            }
        }
        (Step::Index(i), Value::Array(items)) => {
            if let Some(v) = items.get_mut(*i) {
                select(rest, v, f);
            }
        }
        (Step::All, Value::Array(items)) => items.iter_mut().for_each(|v| select(rest, v, f)),
        (Step::All, Value::Object(map)) => map.values_mut().for_each(|v| select(rest, v, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(regex: &str, kind: MaskType, value: &str, restore: bool) -> MaskRule {
        MaskRule::new(regex, kind, value, restore).unwrap()
    }

    #[test]
    fn checksums() {
        assert!(id_card_valid("11010519491231002X"));
        assert!(id_card_valid("11010519491231002x"));
        assert!(!id_card_valid("110105194912310021"));
        assert!(!id_card_valid("1101051949123100"));
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(luhn_valid("4111-1111-1111-1111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("41111111"));
    }

    #[test]
    fn grok_expands_and_names_aliases() {
        assert!(expand_grok("%{NOPE}").unwrap_err().contains("NOPE"));
        assert!(expand_grok("%{MOBILE").is_err());
        let r = rule(
            "%{EMAILLOCALPART}@%{HOSTNAME:domain}",
            MaskType::Replace,
            "****@$domain",
            true,
        );
        let mut map = MaskMap::default();
        let out = mask_text(&[r], "mail admin@gmail.com now", &mut map);
        assert_eq!(out, "mail ****@gmail.com now");
        assert_eq!(
            map.pairs(),
            [("****@gmail.com".to_string(), "admin@gmail.com".to_string())]
        );
    }

    #[test]
    fn builtin_patterns_mask_with_checksums() {
        let rules = [
            rule("%{MOBILE}", MaskType::Replace, "****", false),
            rule("%{IDCARD}", MaskType::Replace, "[ID]", false),
            rule("%{BANKCARD}", MaskType::Replace, "[CARD]", false),
            rule("%{IP}", MaskType::Replace, "***.***.***.***", false),
            rule("%{APIKEY}", MaskType::Replace, "[KEY]", false),
            rule("%{EMAILADDRESS}", MaskType::Replace, "[MAIL]", false),
        ];
        let mut map = MaskMap::default();
        let text = "手机13800138000, id 11010519491231002X, bad id 110105194912310021, \
                    card 4111 1111 1111 1111, not a card 4111111111111112, ip 192.168.0.1, \
                    key sk-abcdefghijklmnop1234, mail a.b@example.org";
        let out = mask_text(&rules, text, &mut map);
        assert_eq!(
            out,
            "手机****, id [ID], bad id 110105194912310021, card [CARD], \
             not a card 4111111111111112, ip ***.***.***.***, key [KEY], mail [MAIL]"
        );
        assert!(map.is_empty());
    }

    #[test]
    fn hash_is_sha256_hex_and_restores() {
        let r = rule("sk-[0-9a-zA-Z]*", MaskType::Hash, "", true);
        let mut map = MaskMap::default();
        let out = mask_text(&[r], "key sk-12345 here", &mut map);
        let digest = hex_sha256("sk-12345");
        assert_eq!(digest.len(), 64);
        assert_eq!(out, format!("key {digest} here"));
        let restorer = Restorer::new(&map);
        assert_eq!(restorer.restore_all(&out), "key sk-12345 here");
    }

    #[test]
    fn ambiguous_masks_are_not_restored() {
        let r = rule("%{IP}", MaskType::Replace, "IP", true);
        let mut map = MaskMap::default();
        mask_text(std::slice::from_ref(&r), "10.0.0.1 and 10.0.0.2", &mut map);
        assert!(map.is_empty());
        let mut map = MaskMap::default();
        mask_text(&[r], "10.0.0.1 and 10.0.0.1", &mut map);
        assert!(!map.is_empty());
    }

    #[test]
    fn streamed_restore_holds_only_possible_mask_starts() {
        let mut map = MaskMap::default();
        map.insert("****@gmail.com".into(), "ann@gmail.com");
        map.insert("[P1]".into(), "13800138000");
        let whole = "write to ****@gmail.com or call [P1]. **bold** [P";
        let want = Restorer::new(&map).restore_all(whole);
        assert_eq!(
            want,
            "write to ann@gmail.com or call 13800138000. **bold** [P"
        );
        // Every way of cutting the text in three gives the same result.
        let chars: Vec<(usize, char)> = whole.char_indices().collect();
        for a in 0..chars.len() {
            for b in a..chars.len() {
                let (i, j) = (chars[a].0, chars[b].0);
                let mut r = Restorer::new(&map);
                let mut out = r.feed(0, &whole[..i]);
                out += &r.feed(0, &whole[i..j]);
                out += &r.feed(0, &whole[j..]);
                out += &r.flush(0);
                assert_eq!(out, want, "{i} {j}");
            }
        }
        // What is held is bounded by the longest mask.
        let mut r = Restorer::new(&map);
        assert_eq!(r.feed(0, "abc ****@gmail."), "abc ");
        assert_eq!(r.feed(1, "x"), "x");
        assert_eq!(r.pending_keys(), [0]);
        assert_eq!(r.feed(0, "org"), "****@gmail.org");
    }

    #[test]
    fn json_paths() {
        let mut v = json!({"messages": [{"content": "a"}, {"content": ["b", {"x": "c"}]}], "k": {"z": "d"}});
        let collect = |path: &str, v: &mut Value| {
            let mut out = Vec::new();
            JsonPath::parse(path)
                .unwrap()
                .each_string(v, &mut |s| out.push(s.clone()));
            out
        };
        assert_eq!(collect("$.messages[*].content", &mut v), ["a", "b", "c"]);
        assert_eq!(collect("$.messages[0].content", &mut v), ["a"]);
        assert_eq!(collect("$['k'].*", &mut v), ["d"]);
        assert_eq!(collect("$", &mut v).len(), 4);
        assert!(JsonPath::parse("messages").is_err());
        assert!(JsonPath::parse("$.a[x]").is_err());
        assert!(JsonPath::parse("$.a[").is_err());
    }

    #[test]
    fn prompt_and_answer_texts() {
        let mut req = json!({"system": [{"type": "text", "text": "s"}], "messages": [
            {"role": "user", "content": [{"type": "text", "text": "u"},
                {"type": "tool_result", "content": "t"}], "reasoning_content": "r"}]});
        let mut seen = Vec::new();
        each_prompt_text(&mut req, &mut |s| seen.push(s.clone()));
        assert_eq!(seen, ["s", "u", "t", "r"]);
        let mut resp =
            json!({"choices": [{"message": {"content": "a", "reasoning_content": "b"}}]});
        let mut seen = Vec::new();
        each_answer_text(&mut resp, &mut |s| seen.push(s.clone()));
        assert_eq!(seen, ["a", "b"]);
        let mut resp = json!({"type": "message", "content": [{"type": "text", "text": "x"}]});
        let mut seen = Vec::new();
        each_answer_text(&mut resp, &mut |s| seen.push(s.clone()));
        assert_eq!(seen, ["x"]);
    }
}
