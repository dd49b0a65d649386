//! Learned text classifiers: logistic regression over hashed n-grams (byte 3- to
//! 5-grams, words and word pairs) of a normalized text, one head per label. The same
//! feature code serves training (`train.rs`) and scoring, so they cannot drift.
//!
//! A text is scored in windows (`WINDOW` bytes, overlapping by half), and a head's
//! score is its highest window's probability: an instruction buried in a long
//! document (indirect injection) is not diluted by the document around it. The
//! windows are sums of fixed blocks, so each byte is hashed once however the
//! windows overlap.
//!
//! Weights ship in the binary (`actors/assets/*.model`, made by `switchyard
//! guardrails train`): one signed byte per feature and head, a scale and a bias per
//! head. The format:
//! `b"SWGM" 1 dims_log2 heads 0`, per head `bias:f32 scale:f32 name_len:u8 name`,
//! then `2^dims_log2 * heads` weights, feature-major (all heads of a feature in one
//! cache line).

use std::borrow::Cow;

/// Hashed feature space: 2^18 buckets.
pub const DIMS_LOG2: u32 = 18;
/// A window's size in bytes of normalized text, and the step between windows.
pub const WINDOW: usize = 256;
pub const BLOCK: usize = WINDOW / 2;
/// A window's features are scaled by `1 / sqrt(max(n, MIN_FEATURES))`: a short text
/// (a greeting has some 40 features) has too few for its sum to mean much, and is
/// pulled toward the prior instead of being amplified.
pub const MIN_FEATURES: usize = 256;

/// The scale of each feature of a window with `n` features.
pub fn feature_scale(n: usize) -> f32 {
    1.0 / (n.max(MIN_FEATURES) as f32).sqrt()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const WORD_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const PAIR_SEED: u64 = 0xc2b2_ae3d_27d4_eb4f;

#[inline]
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
    }
    h
}

#[inline]
fn bucket(h: u64, dims_log2: u32) -> u32 {
    // the high bits of a final multiply mix best
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - dims_log2)) as u32
}

/// Calls `emit(position, feature)` for every feature of a normalized text: the byte
/// 3-, 4- and 5-grams starting at each byte, each word and each pair of adjacent
/// words (at the word's first byte).
pub fn features(text: &str, dims_log2: u32, mut emit: impl FnMut(usize, u32)) {
    let b = text.as_bytes();
    for i in 0..b.len() {
        let mut h = FNV_OFFSET;
        for (k, byte) in b[i..b.len().min(i + 5)].iter().enumerate() {
            h = (h ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
            if k >= 2 {
                emit(i, bucket(h, dims_log2));
            }
        }
    }
    let mut previous: Option<u64> = None;
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((b.len(), ' '))) {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
            continue;
        }
        if let Some(s) = start.take() {
            let w = fnv(WORD_SEED, &b[s..i]);
            emit(s, bucket(w, dims_log2));
            if let Some(p) = previous {
                emit(s, bucket(fnv(PAIR_SEED ^ p, &b[s..i]), dims_log2));
            }
            previous = Some(w);
        }
    }
}

/// The features of a text's windows: for each window, its features (repeats kept).
/// `max_windows` keeps that many, evenly spread (training bounds long documents).
pub fn windows(text: &str, dims_log2: u32, max_windows: usize) -> Vec<Vec<u32>> {
    let blocks = text.len().div_ceil(BLOCK).max(1);
    let mut per_block: Vec<Vec<u32>> = vec![Vec::new(); blocks];
    features(text, dims_log2, |pos, f| per_block[(pos / BLOCK).min(blocks - 1)].push(f));
    let n = blocks.saturating_sub(1).max(1);
    let pick: Vec<usize> =
        if n <= max_windows { (0..n).collect() } else { (0..max_windows).map(|k| k * n / max_windows).collect() };
    pick.into_iter()
        .map(|w| {
            let mut v = per_block[w].clone();
            if let Some(next) = per_block.get(w + 1) {
                v.extend_from_slice(next);
            }
            v
        })
        .collect()
}

/// A trained model: heads over one hashed feature space.
#[derive(Debug, Clone)]
pub struct Model {
    pub dims_log2: u32,
    pub heads: Vec<String>,
    pub bias: Vec<f32>,
    pub scale: Vec<f32>,
    /// `2^dims_log2 * heads` signed bytes, feature-major.
    pub weights: Cow<'static, [u8]>,
}

const MAGIC: &[u8; 4] = b"SWGM";

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Model {
    /// Reads a model; a model embedded with `include_bytes!` is used in place.
    pub fn parse(bytes: Cow<'static, [u8]>) -> Result<Model, String> {
        let bad = || "not a Switchyard guardrail model (bad header)".to_string();
        if bytes.len() < 8 || &bytes[..4] != MAGIC || bytes[4] != 1 {
            return Err(bad());
        }
        let (dims_log2, n) = (u32::from(bytes[5]), usize::from(bytes[6]));
        if !(8..=24).contains(&dims_log2) || n == 0 {
            return Err(bad());
        }
        let mut at = 8;
        let (mut heads, mut bias, mut scale) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let head = bytes.get(at..at + 9).ok_or_else(bad)?;
            let f = |s: &[u8]| f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            bias.push(f(&head[0..4]));
            scale.push(f(&head[4..8]));
            let len = usize::from(head[8]);
            let name = bytes.get(at + 9..at + 9 + len).ok_or_else(bad)?;
            heads.push(String::from_utf8(name.to_vec()).map_err(|_| bad())?);
            at += 9 + len;
        }
        let size = (1usize << dims_log2) * n;
        if bytes.len() != at + size {
            return Err(format!("model weights: {} bytes, expected {size}", bytes.len() - at));
        }
        let weights = match bytes {
            Cow::Borrowed(b) => Cow::Borrowed(&b[at..]),
            Cow::Owned(mut v) => {
                v.drain(..at);
                Cow::Owned(v)
            }
        };
        Ok(Model { dims_log2, heads, bias, scale, weights })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weights.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[1, self.dims_log2 as u8, self.heads.len() as u8, 0]);
        for (i, h) in self.heads.iter().enumerate() {
            out.extend_from_slice(&self.bias[i].to_le_bytes());
            out.extend_from_slice(&self.scale[i].to_le_bytes());
            out.push(h.len() as u8);
            out.extend_from_slice(h.as_bytes());
        }
        out.extend_from_slice(&self.weights);
        out
    }

    /// Each head's probability for a normalized text: its highest window's.
    pub fn scores(&self, text: &str) -> Vec<f32> {
        let heads = self.heads.len();
        let blocks = text.len().div_ceil(BLOCK).max(1);
        // per block: each head's weight sum, then the feature count
        let mut sums = vec![0i32; blocks * (heads + 1)];
        let w = &self.weights;
        features(text, self.dims_log2, |pos, f| {
            let row = (pos / BLOCK).min(blocks - 1) * (heads + 1);
            let base = f as usize * heads;
            for h in 0..heads {
                sums[row + h] += i32::from(w[base + h] as i8);
            }
            sums[row + heads] += 1;
        });
        let mut best = vec![0f32; heads];
        let windows = blocks.saturating_sub(1).max(1);
        for k in 0..windows {
            let row = |b: usize, h: usize| sums.get(b * (heads + 1) + h).copied().unwrap_or(0);
            let count = row(k, heads) + if blocks > 1 { row(k + 1, heads) } else { 0 };
            if count == 0 {
                continue;
            }
            let norm = feature_scale(count as usize);
            for (h, b) in best.iter_mut().enumerate() {
                let sum = row(k, h) + if blocks > 1 { row(k + 1, h) } else { 0 };
                let p = sigmoid(self.bias[h] + sum as f32 * self.scale[h] * norm);
                *b = b.max(p);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_and_windows_cover_the_text() {
        let mut n = 0;
        features("ab", DIMS_LOG2, |_, _| n += 1);
        assert_eq!(n, 1, "one word, no 3-gram");
        let mut seen = Vec::new();
        features("ignore all", DIMS_LOG2, |p, f| seen.push((p, f)));
        // 8 + 7 + 6 byte grams, two words, one pair
        assert_eq!(seen.len(), 24);
        assert!(seen.iter().all(|(_, f)| *f < 1 << DIMS_LOG2));
        let long = "word ".repeat(200);
        let w = windows(&long, DIMS_LOG2, 100);
        assert_eq!(w.len(), long.len().div_ceil(BLOCK) - 1);
        assert_eq!(windows(&long, DIMS_LOG2, 3).len(), 3);
        assert_eq!(windows("", DIMS_LOG2, 3).len(), 1);
    }

    #[test]
    fn a_model_round_trips_and_rejects_garbage() {
        let dims = 8;
        let mut weights = vec![0u8; 2 << dims];
        weights[5] = 100;
        let m = Model {
            dims_log2: dims,
            heads: vec!["a".into(), "b".into()],
            bias: vec![-1.0, 0.5],
            scale: vec![0.01, 0.02],
            weights: Cow::Owned(weights),
        };
        let back = Model::parse(Cow::Owned(m.to_bytes())).unwrap();
        assert_eq!(back.heads, m.heads);
        assert_eq!(back.weights, m.weights);
        let s = back.scores("hello world");
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|p| (0.0..=1.0).contains(p)));
        assert!(Model::parse(Cow::Borrowed(b"SWGM\x01\x08\x01\x00")).is_err());
        assert!(Model::parse(Cow::Borrowed(b"nope")).is_err());
        let mut cut = m.to_bytes();
        cut.pop();
        assert!(Model::parse(Cow::Owned(cut)).is_err());
    }
}
