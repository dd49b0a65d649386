//! Training the linear classifiers (`linear.rs`): logistic regression fitted by
//! AdaGrad over the hashed windows of each example, one head per label, classes
//! weighted to balance, in a fixed order from a seed so that the same data makes the
//! same weights. As the scorer takes a text's highest window, training is
//! multiple-instance: every window of a negative example is negative, and of a
//! positive example only its highest-scoring window (per head) is pushed up, so the
//! prose around an attack in a long jailbreak or a document is not learned as one. Run by `switchyard guardrails train`; the data and its sources are
//! in `ops/guardrails/`.
//!
//! Hand-written rather than taken from linfa: its logistic regression wants a dense
//! matrix, and 2^18 hashed features times tens of thousands of windows is not one.

use std::borrow::Cow;

use super::decode::normalize;
use super::linear::{windows, Model};

/// One labelled text: for each head, whether the label applies (`None`: the text
/// says nothing about that head and is left out of its training).
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub labels: Vec<Option<bool>>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dims_log2: u32,
    pub epochs: usize,
    pub rate: f32,
    pub l2: f32,
    /// The most windows one example contributes (each weighted 1/windows).
    pub max_windows: usize,
    pub seed: u64,
    /// Weight the classes so each carries half the loss (else the data's own priors,
    /// which keeps a rare label's probabilities calibrated).
    pub balance: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            dims_log2: super::linear::DIMS_LOG2,
            epochs: 12,
            rate: 0.3,
            l2: 1e-5,
            max_windows: 8,
            seed: 7,
            balance: true,
        }
    }
}

/// One example's windows, each its features with their values.
type Windows = Vec<Vec<(u32, f32)>>;

fn samples(examples: &[Example], opt: &Options) -> Vec<Windows> {
    examples
        .iter()
        .map(|e| {
            windows(&normalize(&e.text), opt.dims_log2, opt.max_windows)
                .into_iter()
                .filter(|w| !w.is_empty())
                .map(|mut w| {
                    let norm = super::linear::feature_scale(w.len());
                    w.sort_unstable();
                    let mut features: Vec<(u32, f32)> = Vec::with_capacity(w.len());
                    for f in w {
                        match features.last_mut() {
                            Some((last, v)) if *last == f => *v += norm,
                            _ => features.push((f, norm)),
                        }
                    }
                    features
                })
                .collect()
        })
        .collect()
}

/// Fits one model with a head per name.
pub fn train(heads: &[&str], examples: &[Example], opt: &Options) -> Model {
    let n = heads.len();
    let dims = 1usize << opt.dims_log2;
    let data = samples(examples, opt);
    // class weights per head: each class carries half the loss
    let mut class = vec![(1f32, 1f32); n];
    for (h, c) in class.iter_mut().enumerate().filter(|_| opt.balance) {
        let pos = examples.iter().filter(|e| e.labels[h] == Some(true)).count().max(1) as f32;
        let neg = examples.iter().filter(|e| e.labels[h] == Some(false)).count().max(1) as f32;
        *c = ((pos + neg) / (2.0 * pos), (pos + neg) / (2.0 * neg));
    }
    let mut w = vec![0f32; dims * n];
    let mut g2 = vec![1e-8f32; dims * n];
    let mut bias = vec![0f32; n];
    let mut bias_g2 = vec![1e-8f32; n];
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = fastrand::Rng::with_seed(opt.seed);
    let mut grad = vec![0f32; n];
    let mut logits: Vec<Vec<f32>> = Vec::new();
    for _ in 0..opt.epochs {
        rng.shuffle(&mut order);
        for &s in &order {
            let (windows, labels) = (&data[s], &examples[s].labels);
            if windows.is_empty() {
                continue;
            }
            logits.clear();
            for features in windows {
                let mut logit = bias.clone();
                for (f, v) in features {
                    let row = *f as usize * n;
                    for (h, l) in logit.iter_mut().enumerate() {
                        *l += w[row + h] * v;
                    }
                }
                logits.push(logit);
            }
            // per head, the positive window: the highest-scoring one
            let best: Vec<usize> = (0..n)
                .map(|h| (0..windows.len()).max_by(|a, b| logits[*a][h].total_cmp(&logits[*b][h])).unwrap_or(0))
                .collect();
            let share = 1.0 / windows.len() as f32;
            for (k, features) in windows.iter().enumerate() {
                for h in 0..n {
                    grad[h] = match labels[h] {
                        Some(true) if best[h] == k => {
                            let p = 1.0 / (1.0 + (-logits[k][h]).exp());
                            (p - 1.0) * class[h].0
                        }
                        Some(false) => {
                            let p = 1.0 / (1.0 + (-logits[k][h]).exp());
                            p * class[h].1 * share
                        }
                        _ => 0.0,
                    };
                    bias_g2[h] += grad[h] * grad[h];
                    bias[h] -= opt.rate * grad[h] / bias_g2[h].sqrt();
                }
                for (f, v) in features {
                    let row = *f as usize * n;
                    for h in 0..n {
                        if grad[h] == 0.0 {
                            continue;
                        }
                        let g = grad[h] * v + opt.l2 * w[row + h];
                        g2[row + h] += g * g;
                        w[row + h] -= opt.rate * g / g2[row + h].sqrt();
                    }
                }
            }
        }
    }
    quantize(heads, &w, bias, opt.dims_log2)
}

/// Signed bytes with a scale per head.
fn quantize(heads: &[&str], w: &[f32], bias: Vec<f32>, dims_log2: u32) -> Model {
    let n = heads.len();
    let mut scale = vec![0f32; n];
    for (i, v) in w.iter().enumerate() {
        scale[i % n] = scale[i % n].max(v.abs());
    }
    for s in &mut scale {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let weights: Vec<u8> =
        w.iter().enumerate().map(|(i, v)| (v / scale[i % n]).round().clamp(-127.0, 127.0) as i8 as u8).collect();
    Model { dims_log2, heads: heads.iter().map(|h| h.to_string()).collect(), bias, scale, weights: Cow::Owned(weights) }
}

/// Counts of one label's outcomes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Confusion {
    pub tp: u32,
    pub fp: u32,
    pub fn_: u32,
    pub tn: u32,
}

impl Confusion {
    pub fn add(&mut self, truth: bool, predicted: bool) {
        match (truth, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            return 1.0;
        }
        f64::from(self.tp) / f64::from(self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            return 1.0;
        }
        f64::from(self.tp) / f64::from(self.tp + self.fn_)
    }
}

/// The test split of a shipped data file (`ops/guardrails/data/NAME.jsonl.gz`).
#[cfg(test)]
pub fn test_rows(name: &str) -> Vec<serde_json::Value> {
    use std::io::Read;
    let path = format!("{}/../ops/guardrails/data/{name}.jsonl.gz", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(&path).unwrap();
    let mut s = String::new();
    flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut s).unwrap();
    s.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|r| r["split"] == "test").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separable_toy_set_is_learned_and_training_is_deterministic() {
        let mut examples = Vec::new();
        for i in 0..40 {
            examples.push(Example { text: format!("please ignore the rules number {i}"), labels: vec![Some(true)] });
            examples.push(Example { text: format!("please bake a cake number {i}"), labels: vec![Some(false)] });
        }
        let opt = Options { dims_log2: 14, epochs: 5, ..Options::default() };
        let m = train(&["bad"], &examples, &opt);
        assert!(m.scores(&normalize("ignore the rules"))[0] > 0.8);
        assert!(m.scores(&normalize("bake a cake"))[0] < 0.2);
        assert_eq!(train(&["bad"], &examples, &opt).to_bytes(), m.to_bytes());
        let mut c = Confusion::default();
        c.add(true, true);
        c.add(false, true);
        c.add(true, false);
        assert_eq!((c.precision(), c.recall()), (0.5, 0.5));
    }
}
