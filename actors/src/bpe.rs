//! A count-only o200k_base tokenizer with compact tables.
//!
//! tiktoken-rs keeps the 200k-token vocabulary three times over (encoder, decoder, sorted
//! bytes), each entry a heap allocation, and a pretokenizer regex per thread: 46 MB
//! resident after load. `bpe-openai` is faster but holds 67 MB. The gateway only counts
//! tokens (to reserve them before a call), so it keeps what counting needs: the token
//! bytes in one arena, a rank per token in one hash table of packed 8-byte entries, one
//! regex. About 4 MB of heap (the table 2.4 MB, the arena 1.3 MB), the same counts (the
//! tests hold it to tiktoken-rs), about the same speed.
//!
//! The vocabulary is `assets/o200k_base.tiktoken`, OpenAI's published encoding (MIT,
//! as distributed with tiktoken); the pretokenizer pattern is tiktoken's own less one
//! alternative (held to `tiktoken_rs::O200K_BASE_PAT_STR` in the tests), copied below as data.
//!
//! The pattern's one lookahead (`\s+(?!\S)`: a run of spaces gives its last one to the
//! word after it) needs a backtracking engine, which made pretokenizing most of the
//! count's cost. The same pieces come from the `regex` crate's automaton on the pattern
//! without that alternative, and one step after each match: a whitespace run that a
//! non-space follows gives back its last character ([`O200k::count`]). The tests hold
//! both to tiktoken-rs.

use std::hash::Hasher as _;
use std::sync::LazyLock;

use base64::Engine as _;

/// o200k_base's pretokenizer (tiktoken's pattern, `tiktoken_rs::O200K_BASE_PAT_STR` in the
/// tests) without its lookahead
/// alternative (`\s+(?!\S)`), for the `regex` crate; `count` does what the lookahead did:
/// words (with their leading punctuation and contractions), numbers of up to three
/// digits, punctuation runs, newlines, spaces.
const PATTERN_DFA: &str = concat!(
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
    "|",
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
    "|",
    r#"\p{N}{1,3}"#,
    "|",
    r#" ?[^\s\p{L}\p{N}]+[\r\n/]*"#,
    "|",
    r#"\s*[\r\n]+"#,
    "|",
    r#"\s+"#
);

const RANK_BITS: u32 = 18;
const LEN_BITS: u32 = 10;

/// A token's entry: its start in the arena (36 bits), its length (10) and rank (18).
fn pack(start: usize, len: usize, rank: u32) -> Option<u64> {
    let (start, len) = (u64::try_from(start).ok()?, u64::try_from(len).ok()?);
    (start < 1 << (64 - RANK_BITS - LEN_BITS) && len < 1 << LEN_BITS && rank < 1 << RANK_BITS)
        .then(|| start << (RANK_BITS + LEN_BITS) | len << RANK_BITS | u64::from(rank))
}

/// A token's bytes and rank from its entry.
fn unpack(arena: &[u8], e: u64) -> (&[u8], u32) {
    let start = (e >> (RANK_BITS + LEN_BITS)) as usize;
    let len = ((e >> RANK_BITS) & ((1 << LEN_BITS) - 1)) as usize;
    (&arena[start..start + len], (e & ((1 << RANK_BITS) - 1)) as u32)
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(bytes);
    h.finish()
}

/// Pieces longer than this are counted in chunks of this size, so that a hostile word
/// (32 KiB of one letter) costs linear time; merges never cross a chunk, which can only
/// overcount such a piece, slightly.
const CHUNK: usize = 256;

pub struct O200k {
    /// The tokens' bytes, one after another (leaked: it lives as long as the process, as
    /// the tables would anyway).
    arena: &'static [u8],
    /// Token bytes -> rank: each entry packs the token's place in the arena and its rank
    /// into 8 bytes (see [`pack`]) and is found by the hash of the bytes; a map keyed by
    /// slices took 24 bytes an entry (6.6 MB against 2.4).
    ranks: hashbrown::HashTable<u64>,
    /// The pretokenizer (a constant pattern, so never `None` in practice: the tests
    /// compile it; without it the count falls back to a byte estimate).
    pattern: Option<regex::Regex>,
}

static O200K: LazyLock<O200k> = LazyLock::new(O200k::load);

/// The tokenizer, loaded on first use.
pub fn o200k() -> &'static O200k {
    &O200K
}

impl O200k {
    fn load() -> O200k {
        let text = include_str!("../assets/o200k_base.tiktoken");
        let mut arena = Vec::with_capacity(1 << 21);
        let mut spans = Vec::with_capacity(200_000);
        for line in text.lines() {
            let Some((token, rank)) = line.split_once(' ') else { continue };
            let start = arena.len();
            let rank = rank.parse::<u32>();
            if base64::engine::general_purpose::STANDARD.decode_vec(token, &mut arena).is_err() || rank.is_err() {
                arena.truncate(start);
                continue;
            }
            spans.push((start, arena.len(), rank.unwrap_or(0)));
        }
        let arena: &'static [u8] = Box::leak(arena.into_boxed_slice());
        let mut ranks = hashbrown::HashTable::with_capacity(spans.len());
        for (start, end, rank) in spans {
            // (o200k's tokens and ranks all fit; one that did not would not be found,
            // and its bytes would be counted as smaller tokens)
            if let Some(entry) = pack(start, end - start, rank) {
                ranks.insert_unique(hash(&arena[start..end]), entry, |&e| hash(unpack(arena, e).0));
            }
        }
        let pattern = regex::Regex::new(PATTERN_DFA).ok();
        O200k { arena, ranks, pattern }
    }

    /// Tokens in the vocabulary (200,000 less the special ones).
    pub fn vocabulary(&self) -> usize {
        self.ranks.len()
    }

    /// The rank of the token `bytes`, if they are one.
    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let arena = self.arena;
        self.ranks.find(hash(bytes), |&e| unpack(arena, e).0 == bytes).map(|&e| unpack(arena, e).1)
    }

    /// The tokens of `text` (special tokens are not recognised: counted as text).
    pub fn count(&self, text: &str) -> usize {
        let Some(pattern) = &self.pattern else { return text.len().div_ceil(4) };
        let mut n = 0;
        let mut at = 0;
        while at < text.len() {
            match pattern.find_at(text, at) {
                Some(m) if m.end() > at => {
                    // bytes the pattern skipped (it matches everything; defensively)
                    if m.start() > at {
                        n += self.piece(&text.as_bytes()[at..m.start()]);
                    }
                    let end = lookahead_end(text, m.start(), m.end());
                    n += self.piece(&text.as_bytes()[m.start()..end]);
                    at = end;
                }
                // no match: the rest as one piece
                _ => {
                    n += self.piece(&text.as_bytes()[at..]);
                    at = text.len();
                }
            }
        }
        n
    }

    /// The tokens of one pretokenized piece: byte-pair merges by rank, lowest first.
    fn piece(&self, piece: &[u8]) -> usize {
        if piece.len() > CHUNK {
            return piece.chunks(CHUNK).map(|c| self.piece(c)).sum();
        }
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return piece.len().min(1);
        }
        // the parts' start offsets (and the end): merge the adjacent pair whose bytes
        // have the lowest rank until no pair is a token
        let mut bounds: Vec<usize> = (0..=piece.len()).collect();
        loop {
            let mut best: Option<(u32, usize)> = None;
            for i in 0..bounds.len() - 2 {
                if let Some(rank) = self.rank(&piece[bounds[i]..bounds[i + 2]]) {
                    if best.is_none_or(|(b, _)| rank < b) {
                        best = Some((rank, i));
                    }
                }
            }
            match best {
                Some((_, i)) => {
                    bounds.remove(i + 1);
                    if bounds.len() == 2 {
                        return 1;
                    }
                }
                None => return bounds.len() - 1,
            }
        }
    }
}

/// Where tiktoken's `\s+(?!\S)` would have ended a match of `\s+` (`start..end`): a
/// whitespace run of two or more characters that a non-space follows stops before its
/// last character, which goes with the word after it. Any other match ends where it did
/// (a run ending in a newline is the `\s*[\r\n]+` alternative's and stays whole).
fn lookahead_end(text: &str, start: usize, end: usize) -> usize {
    let run = &text[start..end];
    let followed_by_word = text[end..].chars().next().is_some_and(|c| !c.is_whitespace());
    if !followed_by_word || !run.chars().all(char::is_whitespace) || run.ends_with(['\r', '\n']) {
        return end;
    }
    match run.char_indices().next_back() {
        Some((last, _)) if last > 0 => start + last,
        _ => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_tiktokens() {
        let tiktoken = tiktoken_rs::O200K_BASE_PAT_STR;
        assert!(tiktoken.contains(r"|\s+(?!\S)|"), "the one lookahead is where `count` expects it");
        assert_eq!(PATTERN_DFA, tiktoken.replace(r"|\s+(?!\S)", ""), "tiktoken's pattern less the lookahead");
        assert!(o200k().pattern.is_some());
        assert_eq!(o200k().vocabulary(), 199_998);
    }

    /// Text the tokenizer was not written against: many scripts, code, numbers, URLs,
    /// whitespace runs, emoji, contractions, and random bytes as UTF-8.
    #[test]
    fn counts_what_tiktoken_counts() {
        let tiktoken = tiktoken_rs::o200k_base_singleton();
        let mut texts: Vec<String> = vec![
            "Hello, world! It's 2026; we'll see what they've done.".into(),
            "Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم 你好世界 こんにちは 안녕하세요 नमस्ते".into(),
            "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n}\n".into(),
            "https://example.com/a/b?c=d&e=f#g  user@example.org  +1 (555) 010-9999".into(),
            "   leading\t\ttabs\n\n\n\r\nand   trailing   \n".into(),
            "🎉🎉 emoji 👩‍👩‍👧‍👦 families and flags 🇵🇹🇯🇵".into(),
            "1234567890 3.14159 1e-9 0xdeadBEEF 1,000,000.00".into(),
            "ÀÉÎÕÜ àéîõü ß ǅ ǈ İ ı Ω ω".into(),
            "<|endoftext|> is only text here".into(),
        ];
        let mut rng = fastrand::Rng::with_seed(17);
        for _ in 0..200 {
            let n = rng.usize(1..300);
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
            let words: Vec<&str> =
                ["the", "The", "THE", " ", "  ", "\n", "é", "日本", "42", "!", "'s", "don't", "\t"].to_vec();
            texts.push((0..rng.usize(1..60)).map(|_| words[rng.usize(0..words.len())]).collect());
        }
        // whitespace of every kind before words, numbers, punctuation and the end: what the
        // lookahead decided
        let parts = [
            " ", "  ", "\t", "\n", "\r\n", "\r", "\u{a0}", "\u{3000}", "\u{2009}", "x", "Word", "7", "!", "'s", "é",
            "日",
        ];
        for _ in 0..2000 {
            texts.push((0..rng.usize(1..24)).map(|_| parts[rng.usize(0..parts.len())]).collect());
        }
        for t in &texts {
            assert_eq!(o200k().count(t), tiktoken.count_ordinary(t), "{t:?}");
        }
    }

    #[test]
    fn a_hostile_word_costs_linear_time_and_counts_close() {
        let word = "a".repeat(32 * 1024);
        let exact = tiktoken_rs::o200k_base_singleton().count_ordinary(&word);
        let ours = o200k().count(&word);
        assert!(ours >= exact && ours <= exact + exact / 10 + 1, "{ours} against {exact}");
    }
}
