//! Counting tokens of o200k / cl100k exactly as tiktoken does, from compact tables.
//!
//! The vocabulary is in the module as one length byte per rank plus the tokens' bytes (written
//! by `build.rs`); the first count in a VM builds a rank index over it (an open-addressing table
//! of `u32`, about 1 MB for o200k) and the pre-tokenizer (a lazy DFA). tiktoken's own tables
//! (two hash maps of byte vectors and a sorted copy, tens of MB) are never built.
//!
//! Pre-tokenizing: tiktoken's patterns have one alternative no DFA can run, `\s+(?!\S)` (a run
//! of whitespace, less its last character when a non-space follows). The DFA runs the pattern
//! without it; a whitespace-only match that does not end in a line break, has at least two
//! characters and does not reach the end is then shortened by its last character — exactly what
//! the alternative would have matched (the alternatives before it match whitespace only when it
//! holds a line break or reaches the end). The possessive quantifiers of cl100k are greedy here:
//! no alternative can backtrack into them. Merging: the lowest-ranked adjacent pair merges first,
//! the leftmost on ties, as in tiktoken.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson::{Config as NfaConfig, WhichCaptures};
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use std::cell::RefCell;
use std::collections::BinaryHeap;

/// o200k's pattern without `\s+(?!\S)` (see the module docs).
const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+",
);

/// cl100k's pattern without `\s+(?!\S)`, possessive quantifiers made greedy.
const CL100K_PATTERN: &str = concat!(
    r"'(?i:[sdmt]|ll|ve|re)",
    r"|[^\r\n\p{L}\p{N}]?\p{L}+",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"|\s+$",
    r"|\s*[\r\n]",
    r"|\s+",
);

/// Pieces longer than this merge with a heap (as tiktoken switches algorithms at 100 bytes).
const LONG_PIECE: usize = 100;

/// Bits of an index slot that hold `rank + 1` (0: empty); the rest hold a hash fingerprint.
const RANK_BITS: u32 = 18;
const RANK_MASK: u32 = (1 << RANK_BITS) - 1;

/// One encoding's vocabulary and pre-tokenizer, built on first use.
pub struct Encoder {
    lens: &'static [u8],
    bytes: &'static [u8],
    /// Start of each rank's bytes, and the end of the last.
    offsets: Vec<u32>,
    /// Open addressing, linear probing.
    index: Vec<u32>,
    pretok: DFA,
    cache: RefCell<Cache>,
}

/// FxHash-style hash of a byte string.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

impl Encoder {
    /// Builds the index over the tables and compiles `pattern`; None if the tables are
    /// inconsistent or the pattern does not compile.
    fn new(lens: &'static [u8], bytes: &'static [u8], pattern: &str) -> Option<Encoder> {
        let n = lens.len();
        if n == 0 || n >= RANK_MASK as usize {
            return None;
        }
        let mut offsets = Vec::with_capacity(n + 1);
        let mut at = 0u32;
        offsets.push(0);
        for &len in lens {
            at = at.checked_add(u32::from(len))?;
            offsets.push(at);
        }
        if at as usize != bytes.len() {
            return None;
        }
        // At most 4/5 full.
        let mut size = 1024;
        while size * 4 / 5 < n {
            size *= 2;
        }
        let mut index = vec![0u32; size];
        let mask = size - 1;
        for rank in 0..n {
            let token = token_bytes(&offsets, bytes, rank)?;
            let h = hash(token);
            let mut slot = h as usize & mask;
            loop {
                let cell = index.get_mut(slot)?;
                if *cell == 0 {
                    *cell = slot_value(rank, h);
                    break;
                }
                slot = (slot + 1) & mask;
            }
        }
        let pretok = DFA::builder()
            .configure(DFA::config().match_kind(MatchKind::LeftmostFirst))
            .thompson(NfaConfig::new().which_captures(WhichCaptures::None))
            .build(pattern)
            .ok()?;
        let cache = RefCell::new(pretok.create_cache());
        Some(Encoder {
            lens,
            bytes,
            offsets,
            index,
            pretok,
            cache,
        })
    }

    /// The o200k encoder.
    pub fn o200k() -> Option<Encoder> {
        Encoder::new(
            include_bytes!(concat!(env!("OUT_DIR"), "/o200k.lens")),
            include_bytes!(concat!(env!("OUT_DIR"), "/o200k.bytes")),
            O200K_PATTERN,
        )
    }

    /// The cl100k encoder.
    pub fn cl100k() -> Option<Encoder> {
        Encoder::new(
            include_bytes!(concat!(env!("OUT_DIR"), "/cl100k.lens")),
            include_bytes!(concat!(env!("OUT_DIR"), "/cl100k.bytes")),
            CL100K_PATTERN,
        )
    }

    /// Number of tokens in the vocabulary.
    pub fn vocabulary(&self) -> usize {
        self.lens.len()
    }

    /// The rank of `token`, if it is one.
    fn rank(&self, token: &[u8]) -> Option<u32> {
        let h = hash(token);
        let mask = self.index.len() - 1;
        let want = (h as u32) & !RANK_MASK;
        let mut slot = h as usize & mask;
        loop {
            let cell = *self.index.get(slot)?;
            if cell == 0 {
                return None;
            }
            if cell & !RANK_MASK == want {
                let rank = (cell & RANK_MASK) - 1;
                if token_bytes(&self.offsets, self.bytes, rank as usize) == Some(token) {
                    return Some(rank);
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Tokens of `text` in an ordinary encoding (special tokens are plain text); None if the
    /// pre-tokenizer failed (its cache could not be used).
    pub fn count(&self, text: &str) -> Option<u64> {
        let mut cache = self.cache.try_borrow_mut().ok()?;
        let mut total = 0u64;
        let mut at = 0;
        while at < text.len() {
            let end = self.piece_end(&mut cache, text, at)?;
            let piece = text.as_bytes().get(at..end)?;
            total = total.saturating_add(self.piece_tokens(piece));
            at = end;
        }
        Some(total)
    }

    /// End of the pre-tokenizer piece that starts at `at`.
    fn piece_end(&self, cache: &mut Cache, text: &str, at: usize) -> Option<usize> {
        let end = match self.longest_match(cache, text.as_bytes(), at)? {
            Some(end) if end > at => end,
            // Every character matches some alternative; take one if that ever fails.
            _ => at + text.get(at..)?.chars().next()?.len_utf8(),
        };
        let piece = text.get(at..end)?;
        let mut chars = piece.chars();
        let last = chars.next_back()?;
        let shorten = end < text.len()
            && last != '\n'
            && last != '\r'
            && last.is_whitespace()
            && chars.clone().next().is_some()
            && chars.all(char::is_whitespace);
        Some(if shorten { end - last.len_utf8() } else { end })
    }

    /// End of the leftmost-first match anchored at `at` (None inside: no match), as the lazy
    /// DFA's own search finds it, without its per-search setup: a match state reached on the
    /// byte at `i` means a match ends at `i`; the end of the text is one more transition.
    fn longest_match(&self, cache: &mut Cache, bytes: &[u8], at: usize) -> Option<Option<usize>> {
        let config = start::Config::new().anchored(Anchored::Yes);
        let mut sid = self.pretok.start_state(cache, &config).ok()?;
        let mut end = None;
        for (i, &b) in bytes.iter().enumerate().skip(at) {
            sid = self.pretok.next_state(cache, sid, b).ok()?;
            if sid.is_tagged() {
                if sid.is_match() {
                    end = Some(i);
                } else if sid.is_dead() {
                    return Some(end);
                } else if sid.is_quit() {
                    return None;
                }
            }
        }
        sid = self.pretok.next_eoi_state(cache, sid).ok()?;
        if sid.is_match() {
            end = Some(bytes.len());
        }
        Some(end)
    }

    /// Tokens of one pre-tokenizer piece.
    fn piece_tokens(&self, piece: &[u8]) -> u64 {
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return piece.len().min(1) as u64;
        }
        if piece.len() < LONG_PIECE {
            self.merge_short(piece)
        } else {
            self.merge_long(piece)
        }
    }

    /// Rank of `piece[start..end]`, `u32::MAX` when it is no token.
    fn rank_of(&self, piece: &[u8], start: usize, end: usize) -> u32 {
        piece
            .get(start..end)
            .and_then(|t| self.rank(t))
            .unwrap_or(u32::MAX)
    }

    /// tiktoken's merge for short pieces: boundaries with the rank of the pair starting there.
    fn merge_short(&self, piece: &[u8]) -> u64 {
        let n = piece.len();
        // (start, rank of the pair starting here); two sentinels at the end.
        let mut parts: Vec<(usize, u32)> = (0..n - 1)
            .map(|i| (i, self.rank_of(piece, i, i + 2)))
            .collect();
        parts.push((n - 1, u32::MAX));
        parts.push((n, u32::MAX));
        let pair_rank = |parts: &[(usize, u32)], i: usize| -> u32 {
            match (parts.get(i), parts.get(i + 3)) {
                (Some(a), Some(b)) => self.rank_of(piece, a.0, b.0),
                _ => u32::MAX,
            }
        };
        let lowest = |parts: &[(usize, u32)]| {
            parts
                .iter()
                .take(parts.len().saturating_sub(1))
                .enumerate()
                .min_by_key(|(i, p)| (p.1, *i))
                .map(|(i, p)| (i, p.1))
                .filter(|(_, rank)| *rank != u32::MAX)
        };
        while let Some((i, _)) = lowest(&parts) {
            if i > 0 {
                let r = pair_rank(&parts, i - 1);
                if let Some(p) = parts.get_mut(i - 1) {
                    p.1 = r;
                }
            }
            let r = pair_rank(&parts, i);
            if let Some(p) = parts.get_mut(i) {
                p.1 = r;
            }
            if i + 1 < parts.len() {
                parts.remove(i + 1);
            }
        }
        (parts.len() - 1) as u64
    }

    /// The same merge order with a heap, for long pieces.
    fn merge_long(&self, piece: &[u8]) -> u64 {
        let n = piece.len();
        // Parts as a linked list of start positions; `next[s]` is the start after `s`.
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut rank: Vec<u32> = vec![u32::MAX; n];
        let mut heap = BinaryHeap::new();
        let pair = |next: &[usize], s: usize| -> u32 {
            let Some(&mid) = next.get(s) else {
                return u32::MAX;
            };
            match next.get(mid) {
                Some(&end) => self.rank_of(piece, s, end),
                None => u32::MAX,
            }
        };
        for s in 0..n {
            let r = pair(&next, s);
            if let Some(slot) = rank.get_mut(s) {
                *slot = r;
            }
            if r != u32::MAX {
                heap.push(std::cmp::Reverse((r, s)));
            }
        }
        let mut parts = n as u64;
        while let Some(std::cmp::Reverse((r, s))) = heap.pop() {
            if !alive.get(s).copied().unwrap_or(false) || rank.get(s).copied() != Some(r) {
                continue;
            }
            // Merge the part at `s` with the one after it.
            let Some(&mid) = next.get(s) else { continue };
            let after = next.get(mid).copied().unwrap_or(n);
            if let Some(a) = alive.get_mut(mid) {
                *a = false;
            }
            if let Some(x) = next.get_mut(s) {
                *x = after;
            }
            if let Some(p) = prev.get_mut(after) {
                *p = s;
            }
            parts -= 1;
            for start in [Some(s), prev.get(s).copied().filter(|&p| p < n)]
                .into_iter()
                .flatten()
            {
                let r = pair(&next, start);
                if let Some(slot) = rank.get_mut(start) {
                    *slot = r;
                }
                if r != u32::MAX {
                    heap.push(std::cmp::Reverse((r, start)));
                }
            }
        }
        parts
    }
}

fn token_bytes<'a>(offsets: &[u32], bytes: &'a [u8], rank: usize) -> Option<&'a [u8]> {
    let start = *offsets.get(rank)? as usize;
    let end = *offsets.get(rank + 1)? as usize;
    bytes.get(start..end)
}

fn slot_value(rank: usize, h: u64) -> u32 {
    ((h as u32) & !RANK_MASK) | (rank as u32 + 1)
}
