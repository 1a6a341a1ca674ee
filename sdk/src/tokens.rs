//! Token estimates with the o200k and cl100k BPEs, for answers whose provider reports no usage
//! and for the rate limiter's reservations.
//!
//! Counts equal tiktoken's ordinary encoding (see [`bpe`] for how, from compact tables). The
//! rank index (about 1 MB for o200k, 0.5 MB for cl100k) and the pre-tokenizer are built lazily,
//! at most once per thread — once per wasm VM — on first use of that encoding.
//!
//! Text is always counted in slices of at most 4 KiB, cut where the pre-tokenizer would split
//! anyway (see [`TokenCounter`]), so a count is exact for ordinary text while a counter never
//! holds more than a window of a streamed text.

pub mod bpe;

use std::cell::OnceCell;
use std::thread::LocalKey;

use bpe::Encoder;

/// BPE used for an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `o200k_base`: GPT-4o and later OpenAI models.
    O200k,
    /// `cl100k_base`: GPT-4, GPT-3.5 and the embeddings models.
    Cl100k,
}

/// Model name prefixes that use o200k.
const O200K_PREFIXES: &[&str] = &[
    "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-", "gpt-oss",
];

/// Model name prefixes that use cl100k (checked after [`O200K_PREFIXES`]).
const CL100K_PREFIXES: &[&str] = &["gpt-4", "gpt-3.5", "gpt-35", "text-embedding-"];

/// Older completion model families, matched anywhere in the name (`text-davinci-003`,
/// `davinci-002`, `code-cushman-001`); estimated with cl100k.
const CL100K_FAMILIES: &[&str] = &["davinci", "babbage", "curie", "cushman"];

/// o200k for current OpenAI families (gpt-4o*, gpt-4.1*, gpt-4.5*, gpt-5*, o1*, o3*, o4*,
/// chatgpt-*, gpt-oss*), cl100k for older ones (gpt-4 not followed by o/.1/.5, gpt-3.5* and
/// Azure's gpt-35*, text-embedding-*, davinci/babbage/curie/cushman style), o200k for
/// everything else (other providers' models: a modern BPE is the better guess).
///
/// Case-insensitive; a provider prefix like `openai/` (anything up to the last `/`), a
/// Bedrock-style `openai.` and a fine-tune `ft:` prefix are ignored.
pub fn encoding_for_model(model: &str) -> Encoding {
    let lower = model.trim().to_ascii_lowercase();
    let mut name = lower.rsplit('/').next().unwrap_or_default();
    for prefix in ["ft:", "openai."] {
        name = name.strip_prefix(prefix).unwrap_or(name);
    }
    if O200K_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Encoding::O200k;
    }
    if CL100K_PREFIXES.iter().any(|p| name.starts_with(p))
        || CL100K_FAMILIES.iter().any(|f| name.contains(f))
    {
        return Encoding::Cl100k;
    }
    Encoding::O200k
}

thread_local! {
    static O200K: OnceCell<Option<Encoder>> = const { OnceCell::new() };
    static CL100K: OnceCell<Option<Encoder>> = const { OnceCell::new() };
}

fn slot(encoding: Encoding) -> &'static LocalKey<OnceCell<Option<Encoder>>> {
    match encoding {
        Encoding::O200k => &O200K,
        Encoding::Cl100k => &CL100K,
    }
}

fn build(encoding: Encoding) -> Option<Encoder> {
    match encoding {
        Encoding::O200k => Encoder::o200k(),
        Encoding::Cl100k => Encoder::cl100k(),
    }
}

/// Runs `f` with this thread's BPE for `encoding`, building it on first use. A failed build is
/// remembered (not retried) and gives None.
fn with_bpe<R>(encoding: Encoding, f: impl FnOnce(&Encoder) -> R) -> Option<R> {
    slot(encoding)
        .try_with(|cell| cell.get_or_init(|| build(encoding)).as_ref().map(f))
        .ok()
        .flatten()
}

/// Whether the BPE of `encoding` has been built in this thread (for tests/bench).
pub fn is_built(encoding: Encoding) -> bool {
    slot(encoding)
        .try_with(|cell| matches!(cell.get(), Some(Some(_))))
        .unwrap_or(false)
}

/// Largest slice encoded at once, and about the most a [`TokenCounter`] keeps pending.
const WINDOW: usize = 4096;

/// Token count of `text` (ordinary encoding, special tokens treated as text).
///
/// The BPE for an encoding is built lazily on first use, at most once per thread (= per wasm
/// VM); None if building it failed.
pub fn count(encoding: Encoding, text: &str) -> Option<u64> {
    with_bpe(encoding, |bpe| {
        let mut total = 0u64;
        let mut rest = text;
        while rest.len() > WINDOW {
            let Some((head, tail)) = rest.split_at_checked(cut_point(rest)) else {
                break;
            };
            total = total.saturating_add(bpe.count(head)?);
            rest = tail;
        }
        Some(total.saturating_add(bpe.count(rest)?))
    })
    .flatten()
}

/// Where to cut `s` (longer than `WINDOW`): a char boundary in `1..=WINDOW`.
///
/// Preferred: before a space that follows a non-whitespace character and precedes a letter or
/// digit. Otherwise before any whitespace other than `\r`/`\n` that follows a non-whitespace
/// character. Both are places where o200k's and cl100k's pre-tokenizer always splits and where
/// the left part ends in no whitespace (their `\s+(?!\S)` and `\s+$` look past the end), so the
/// counts of the parts add up to the count of the whole. Failing both (a window of CJK text, a
/// long base64 string, a run of whitespace), the cut is at the window's end and the total may
/// be off by a token or two.
fn cut_point(s: &str) -> usize {
    let mut end = WINDOW.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = s.get(..end).unwrap_or_default();
    let mut fallback = None;
    for (p, _) in head.char_indices().rev() {
        match cut_kind(s, p) {
            Some(Cut::Preferred) => return p,
            Some(Cut::Safe) if fallback.is_none() => fallback = Some(p),
            _ => {}
        }
    }
    match fallback {
        Some(p) => p,
        None if end > 0 => end,
        None => s.chars().next().map_or(s.len(), char::len_utf8),
    }
}

/// A place where the pre-tokenizer always splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Before a space between a non-whitespace character and a letter or digit.
    Preferred,
    /// Before whitespace other than `\r`/`\n` that follows a non-whitespace character.
    Safe,
}

/// Whether `s` can be cut before byte `p` without changing its token count.
fn cut_kind(s: &str, p: usize) -> Option<Cut> {
    let (left, right) = s.split_at_checked(p)?;
    let prev = left.chars().next_back()?;
    let mut rest = right.chars();
    let c = rest.next()?;
    if prev.is_whitespace() || !c.is_whitespace() || c == '\n' || c == '\r' {
        return None;
    }
    if c == ' ' && rest.next().is_some_and(char::is_alphanumeric) {
        Some(Cut::Preferred)
    } else {
        Some(Cut::Safe)
    }
}

/// Counts streamed text piece by piece with bounded memory: keeps at most ~4 KiB pending, cutting
/// only at a position where a space is followed by a letter or digit, so that for ordinary text
/// the total equals `count` of the whole text.
///
/// The cut is also only where the space follows a non-whitespace character; text with no such
/// place in 4 KiB is cut at other safe places, or as a last resort anywhere (see the
/// module docs). The BPE is built on the first cut or at [`finish`](TokenCounter::finish).
#[derive(Debug, Clone)]
pub struct TokenCounter {
    encoding: Encoding,
    pending: String,
    total: u64,
    failed: bool,
}

impl TokenCounter {
    /// A counter at zero.
    pub fn new(encoding: Encoding) -> Self {
        TokenCounter {
            encoding,
            pending: String::new(),
            total: 0,
            failed: false,
        }
    }

    /// Adds a piece of text (any split, even inside a word).
    pub fn push(&mut self, text: &str) {
        let mut rest = text;
        while !rest.is_empty() && !self.failed {
            // Fill up to one byte over the window, whole characters only.
            let room = (WINDOW + 1).saturating_sub(self.pending.len()).max(1);
            let mut take = room.min(rest.len());
            while !rest.is_char_boundary(take) {
                take += 1;
            }
            let Some((piece, tail)) = rest.split_at_checked(take) else {
                return;
            };
            self.pending.push_str(piece);
            rest = tail;
            while self.pending.len() > WINDOW && !self.failed {
                let cut = cut_point(&self.pending);
                let head = self.pending.get(..cut).unwrap_or_default();
                match count(self.encoding, head) {
                    Some(n) => self.total = self.total.saturating_add(n),
                    None => {
                        self.failed = true;
                        self.pending = String::new();
                        return;
                    }
                }
                if self.pending.is_char_boundary(cut) {
                    self.pending.drain(..cut);
                } else {
                    self.pending.clear();
                }
            }
        }
    }

    /// Counts what is pending and returns the total so far; None if the BPE could not be built.
    /// The counter stays usable: later pushes add to the same total.
    pub fn finish(&mut self) -> Option<u64> {
        if self.failed {
            return None;
        }
        let n = count(self.encoding, &self.pending)?;
        self.pending.clear();
        self.total = self.total.saturating_add(n);
        Some(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static REFERENCE: (tiktoken_rs::CoreBPE, tiktoken_rs::CoreBPE) =
            (tiktoken_rs::o200k_base().unwrap(), tiktoken_rs::cl100k_base().unwrap());
    }

    /// tiktoken's count, without any cutting: the reference every count must match.
    fn raw(encoding: Encoding, text: &str) -> u64 {
        REFERENCE.with(|(o200k, cl100k)| {
            let bpe = match encoding {
                Encoding::O200k => o200k,
                Encoding::Cl100k => cl100k,
            };
            bpe.encode_ordinary(text).len() as u64
        })
    }

    /// This module's count of `text` in one piece (no windows).
    fn whole(encoding: Encoding, text: &str) -> u64 {
        with_bpe(encoding, |bpe| bpe.count(text)).flatten().unwrap()
    }

    /// Deterministic pseudo-random numbers (64-bit LCG).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, bound: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % bound
        }
    }

    /// About `len` bytes of English prose with punctuation, numbers, quotes and paragraphs.
    fn english(len: usize, seed: u64) -> String {
        const WORDS: &[&str] = &[
            "the",
            "gateway",
            "routes",
            "every",
            "request",
            "to",
            "a",
            "provider",
            "and",
            "counts",
            "tokens",
            "of",
            "prompt",
            "answer",
            "while",
            "streaming",
            "model",
            "can't",
            "it's",
            "they're",
            "Envoy",
            "plugin",
            "WebAssembly",
            "throughput",
            "latency",
            "budget",
            "quota",
            "user",
            "in",
            "with",
            "for",
            "is",
            "was",
            "were",
            "OpenAI",
            "Anthropic",
            "Gemini",
            "Bedrock",
            "cache",
            "hit",
            "miss",
            "retry",
        ];
        let mut rng = Lcg(seed);
        let mut out = String::new();
        let mut sentence_start = true;
        while out.len() < len {
            let mut word = WORDS[rng.next(WORDS.len())].to_string();
            if rng.next(17) == 0 {
                word = format!("{}", rng.next(100_000));
            }
            if sentence_start {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    word = first.to_uppercase().chain(chars).collect();
                }
                sentence_start = false;
            }
            out.push_str(&word);
            match rng.next(40) {
                0..=2 => {
                    out.push_str(". ");
                    sentence_start = true;
                }
                3 => out.push_str(", "),
                4 => {
                    out.push_str(".\n\n");
                    sentence_start = true;
                }
                5 => out.push_str(" (see \"docs\") "),
                6 => out.push_str("; "),
                _ => out.push(' '),
            }
        }
        out
    }

    /// Random text over characters that exercise every branch of both pre-tokenizer patterns:
    /// letters of each case class and script, combining marks, digits of several scripts, every
    /// kind of whitespace and line break, punctuation, apostrophe contractions in any case,
    /// emoji, and long runs (which merge with the heap).
    fn mixed(len: usize, seed: u64) -> String {
        const ATOMS: &[&str] = &[
            "a",
            "Z",
            "é",
            "É",
            "ǅ",
            "ʰ",
            "ß",
            "ﬁ",
            "ω",
            "Ω",
            "д",
            "Ж",
            "א",
            "ع",
            "ह",
            "ि",
            "中",
            "文",
            "カ",
            "ﾟ",
            "한",
            "ก",
            "\u{301}",
            "\u{20dd}",
            "0",
            "7",
            "٣",
            "५",
            "Ⅻ",
            "½",
            " ",
            "  ",
            "\t",
            "\n",
            "\r",
            "\r\n",
            "\u{b}",
            "\u{c}",
            "\u{85}",
            "\u{a0}",
            "\u{2003}",
            "\u{3000}",
            "\u{2028}",
            ".",
            ",",
            "!",
            "?",
            "-",
            "/",
            "//",
            "\"",
            "(",
            ")",
            "'",
            "'s",
            "'T",
            "'re",
            "'VE",
            "'m",
            "'ll",
            "'D",
            "’",
            "$",
            "€",
            "😀",
            "👍🏽",
            "🇫🇷",
            "<|endoftext|>",
            "the",
            " the",
            "The",
            "THE",
            " hello",
            "world",
            "1234567",
            "...",
            "-->",
            "\u{0}",
        ];
        let mut rng = Lcg(seed);
        let mut out = String::new();
        while out.len() < len {
            match rng.next(40) {
                // A long run: one atom repeated.
                0 => {
                    let atom = ATOMS[rng.next(ATOMS.len())];
                    for _ in 0..(20 + rng.next(200)) {
                        out.push_str(atom);
                    }
                }
                _ => out.push_str(ATOMS[rng.next(ATOMS.len())]),
            }
        }
        out
    }

    #[test]
    fn counts_equal_tiktoken_on_mixed_text() {
        let mut pieces = 0;
        for seed in 0..60 {
            let text = mixed(300 + 40 * seed as usize, seed);
            for encoding in [Encoding::O200k, Encoding::Cl100k] {
                assert_eq!(
                    whole(encoding, &text),
                    raw(encoding, &text),
                    "{encoding:?} {text:?}"
                );
            }
            // Every prefix of a short text: pieces end at every possible place.
            if seed % 10 == 0 {
                for (cut, _) in text.char_indices().take(300) {
                    let head = &text[..cut];
                    for encoding in [Encoding::O200k, Encoding::Cl100k] {
                        assert_eq!(whole(encoding, head), raw(encoding, head), "{head:?}");
                    }
                    pieces += 1;
                }
            }
        }
        assert!(pieces > 1000);
    }

    #[test]
    fn long_pieces_merge_like_tiktoken() {
        // Runs of letters, digits and symbols far over 100 bytes: one piece each.
        let texts = [
            "a".repeat(1000),
            "ab".repeat(700),
            "xyz".repeat(333),
            "Hello".repeat(300),
            "é".repeat(400),
            "!?".repeat(400),
            "аб".repeat(300),
            "漢字".repeat(200),
            format!("{}{}", "A".repeat(150), "z".repeat(150)),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZH".repeat(4),
        ];
        for text in &texts {
            for encoding in [Encoding::O200k, Encoding::Cl100k] {
                assert_eq!(
                    whole(encoding, text),
                    raw(encoding, text),
                    "{encoding:?} {text:?}"
                );
            }
        }
    }

    #[test]
    fn compact_tables_hold_every_token() {
        for (encoding, size) in [(Encoding::O200k, 199_998), (Encoding::Cl100k, 100_256)] {
            assert_eq!(with_bpe(encoding, |b| b.vocabulary()), Some(size));
        }
    }

    #[test]
    fn encoding_table() {
        use Encoding::*;
        let table = [
            ("gpt-4o", O200k),
            ("gpt-4o-mini-2024-07-18", O200k),
            ("GPT-4.1-nano", O200k),
            ("gpt-4.5-preview", O200k),
            ("gpt-5", O200k),
            ("gpt-5-mini", O200k),
            ("o1-preview", O200k),
            ("o3-mini", O200k),
            ("o4-mini", O200k),
            ("chatgpt-4o-latest", O200k),
            ("gpt-oss-120b", O200k),
            ("openai/gpt-4o", O200k),
            ("openai.gpt-oss-20b-1:0", O200k),
            ("ft:gpt-4o-mini-2024-07-18:org::abc", O200k),
            ("gpt-4", Cl100k),
            ("gpt-4-0613", Cl100k),
            ("gpt-4-turbo", Cl100k),
            ("gpt-4-32k", Cl100k),
            ("openai/gpt-4-turbo", Cl100k),
            ("gpt-3.5-turbo", Cl100k),
            ("gpt-3.5-turbo-instruct", Cl100k),
            ("gpt-35-turbo", Cl100k),
            ("text-embedding-3-small", Cl100k),
            ("text-embedding-ada-002", Cl100k),
            ("davinci-002", Cl100k),
            ("babbage-002", Cl100k),
            ("text-davinci-003", Cl100k),
            ("ft:gpt-3.5-turbo:org::x", Cl100k),
            ("claude-sonnet-4-20250514", O200k),
            ("gemini-2.5-flash", O200k),
            ("qwen-max", O200k),
            ("", O200k),
        ];
        for (model, want) in table {
            assert_eq!(encoding_for_model(model), want, "{model}");
        }
    }

    #[test]
    fn counts_known_strings() {
        assert_eq!(count(Encoding::O200k, ""), Some(0));
        assert_eq!(count(Encoding::O200k, "hello world"), Some(2));
        assert_eq!(count(Encoding::Cl100k, "hello world"), Some(2));
        // Special tokens are plain text.
        let special = "<|endoftext|>";
        assert!(count(Encoding::Cl100k, special).unwrap() > 1);
        assert_eq!(
            count(Encoding::Cl100k, special),
            Some(raw(Encoding::Cl100k, special))
        );
    }

    #[test]
    fn laziness_per_thread_and_encoding() {
        std::thread::spawn(|| {
            assert!(!is_built(Encoding::O200k));
            assert!(!is_built(Encoding::Cl100k));
            let mut counter = TokenCounter::new(Encoding::Cl100k);
            counter.push("short");
            // Nothing to cut yet: still nothing built.
            assert!(!is_built(Encoding::Cl100k));
            assert_eq!(counter.finish(), Some(1));
            assert!(is_built(Encoding::Cl100k));
            assert!(!is_built(Encoding::O200k));
            assert_eq!(count(Encoding::Cl100k, "hello world"), Some(2));
            assert!(!is_built(Encoding::O200k));
            assert_eq!(count(Encoding::O200k, "hello world"), Some(2));
            assert!(is_built(Encoding::O200k));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn windowed_count_equals_whole_count() {
        let text = english(20_000, 7);
        assert!(text.len() >= 20_000);
        for encoding in [Encoding::O200k, Encoding::Cl100k] {
            assert_eq!(count(encoding, &text), Some(raw(encoding, &text)));
        }
    }

    #[test]
    fn counter_over_random_splits_equals_count() {
        let text = english(20_000, 42);
        let whole = count(Encoding::O200k, &text).unwrap();
        assert_eq!(whole, raw(Encoding::O200k, &text));
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut rng = Lcg(1);
        for round in 0..40 {
            let mut counter = TokenCounter::new(Encoding::O200k);
            let mut at = 0;
            // Rounds use ever larger pieces: from single characters to several windows.
            let max_piece = [1, 3, 10, 50, 300, 2000, 6000, 15000][round % 8];
            while at < chars.len() {
                let step = 1 + rng.next(max_piece);
                let end = (at + step).min(chars.len());
                let from = chars[at].0;
                let to = chars.get(end).map_or(text.len(), |c| c.0);
                counter.push(&text[from..to]);
                assert!(counter.pending.len() <= WINDOW + 4);
                at = end;
            }
            assert_eq!(counter.finish(), Some(whole), "round {round}");
        }
        // The same over cl100k, fewer rounds.
        let whole = count(Encoding::Cl100k, &text).unwrap();
        for seed in 0..4 {
            let mut rng = Lcg(seed);
            let mut counter = TokenCounter::new(Encoding::Cl100k);
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut n = (1 + rng.next(700)).min(rest.len());
                while !rest.is_char_boundary(n) {
                    n += 1;
                }
                counter.push(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(counter.finish(), Some(whole));
        }
    }

    #[test]
    fn fallback_cuts_stay_exact_without_spaces_before_words() {
        // Code-like text: tabs and spaces before punctuation, newlines; few "space + letter".
        let mut text = String::new();
        for i in 0..900 {
            text.push_str(&format!("x{i}\t=\t[{i},\t{}];\n", i * 7));
        }
        for encoding in [Encoding::O200k, Encoding::Cl100k] {
            let mut counter = TokenCounter::new(encoding);
            for piece in text.as_bytes().chunks(333) {
                counter.push(std::str::from_utf8(piece).unwrap());
            }
            let want = raw(encoding, &text);
            assert_eq!(counter.finish(), Some(want));
            assert_eq!(count(encoding, &text), Some(want));
        }
    }

    #[test]
    fn pathological_inputs_do_not_panic() {
        let inputs = [
            " ".repeat(200_000),
            "\n".repeat(100_000),
            " \n\t".repeat(50_000),
            "^".repeat(100_000),
            "日本語のテキスト".repeat(5_000),
            "a".repeat(100_000),
        ];
        for text in &inputs {
            let n = count(Encoding::O200k, text).unwrap();
            assert!(n > 0 && n <= text.len() as u64);
            let mut counter = TokenCounter::new(Encoding::Cl100k);
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut n = 4000.min(rest.len());
                while !rest.is_char_boundary(n) {
                    n -= 1;
                }
                counter.push(&rest[..n]);
                rest = &rest[n..];
            }
            assert!(counter.finish().unwrap() > 0);
        }
        // CJK has no safe cut, so the windowed count is an estimate, but a close one.
        let cjk = &inputs[4];
        let (approx, exact) = (
            count(Encoding::O200k, cjk).unwrap(),
            raw(Encoding::O200k, cjk),
        );
        assert!(approx.abs_diff(exact) * 100 <= exact, "{approx} vs {exact}");
    }

    #[test]
    fn every_allowed_cut_preserves_the_count() {
        // Mixed text: prose, code, tabs, newlines before and after spaces, contractions,
        // numbers, non-Latin scripts, combining marks, punctuation runs.
        let text = "It's 12345 o'clock; they'll say \"hi\"!\n  Indented line\twith\ttabs.\n\n\
            fn main() {\n\tlet x = [1, 2, 3];\n    println!(\"{x:?}\");  // note\n}\r\n\
            Ünïcödé wörds — and café\u{301} here. 日本語 テキスト 42 末尾 \u{a0}nbsp\u{2003}em\n\
            a  b   c \t d\n e\r\n f /path/to/file.rs:10 ... ??? !!! \u{1F600} smile 😀 ok\n\
            URLs: https://example.com/a?b=c&d=e and emails a.b@c.de; x/y/z. End .";
        let mut positions = 0;
        for encoding in [Encoding::O200k, Encoding::Cl100k] {
            let whole = raw(encoding, text);
            for (p, _) in text.char_indices() {
                if cut_kind(text, p).is_some() {
                    positions += 1;
                    let (l, r) = text.split_at(p);
                    assert_eq!(
                        raw(encoding, l) + raw(encoding, r),
                        whole,
                        "{encoding:?} cut at {p}: {l:?} | {r:?}"
                    );
                }
            }
        }
        assert!(positions > 60, "{positions}");
    }

    #[test]
    fn cut_points_are_char_boundaries_and_make_progress() {
        let text = format!("{}{}", "é".repeat(3000), " word".repeat(10));
        let cut = cut_point(&text);
        assert!(cut > 0 && cut <= WINDOW && text.is_char_boundary(cut));
        let text = english(10_000, 3);
        let cut = cut_point(&text);
        assert_eq!(&text[cut..cut + 1], " ");
        assert!(text[cut + 1..].starts_with(|c: char| c.is_alphanumeric()));
        assert!(!text[..cut].ends_with(char::is_whitespace));
    }
}
