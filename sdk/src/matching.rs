//! Word and pattern matching shared by the content plugins (ai-moderation, ai-data-masking):
//! deny words on Unicode word boundaries and case-insensitive regexes, compiled once into one
//! set at config time.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Largest compiled single pattern, so a config cannot exhaust the VM's memory.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Largest compiled word list and combined set.
pub const COMBINED_SIZE_LIMIT: usize = 8 << 20;

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

pub fn compile(source: &str, size_limit: usize) -> Result<Regex, String> {
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
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether a word edge needs a word boundary: word characters of scripts written with spaces.
pub fn needs_boundary(c: char) -> bool {
    is_word_char(c) && !is_unspaced_script(c)
}

/// Scripts that do not separate words with spaces (or attach particles, as Hangul does).
pub fn is_unspaced_script(c: char) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn rules(words: &[&str], patterns: &[&str]) -> Rules {
        Rules::new(&strings(words), &strings(patterns)).unwrap()
    }

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
}
