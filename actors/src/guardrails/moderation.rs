//! Content moderation by category. A learned classifier (`linear.rs`, one head per
//! category, trained by `switchyard guardrails train` on the data in `ops/guardrails/`)
//! scores every view of a text (`decode.rs`); beside it, phrase lists with a severity
//! each (built-in, plus your own from the config) are matched in one case-insensitive
//! Aho-Corasick pass, a category's phrase score being the noisy-or of the severities
//! found. A category's score is the higher of the two; at or above its threshold it
//! flags the text. The categories and the answer of `POST /v1/moderations` follow
//! OpenAI's moderation format.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use super::decode;
use super::linear::Model;

/// The shipped moderation model (`switchyard guardrails train` makes it).
static MODERATION_MODEL: &[u8] = include_bytes!("../../assets/moderation.model");

/// The shipped model, parsed once and shared.
pub fn builtin_model() -> Result<Arc<Model>, String> {
    static M: OnceLock<Result<Arc<Model>, String>> = OnceLock::new();
    M.get_or_init(|| Model::parse(Cow::Borrowed(MODERATION_MODEL)).map(Arc::new)).clone()
}

use aho_corasick::AhoCorasick;
use serde_json::{json, Value};

/// The categories scored, in OpenAI's names.
pub use switchyard_config::MODERATION_CATEGORIES as CATEGORIES;

/// OpenAI's sub-categories, reported as not flagged (the SDKs expect every field).
const SUBCATEGORIES: &[&str] = &[
    "hate/threatening",
    "harassment/threatening",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual/minors",
    "violence/graphic",
    "illicit/violent",
];

/// Built-in phrases: (category, phrase, severity).
const BUILTIN: &[(&str, &str, f64)] = &[
    ("hate", "inferior race", 0.8),
    ("hate", "subhuman", 0.7),
    ("hate", "go back to your country", 0.6),
    ("hate", "should be exterminated", 0.9),
    ("hate", "ethnic cleansing is good", 0.9),
    ("hate", "all of them are animals", 0.7),
    ("hate", "hate all immigrants", 0.8),
    ("harassment", "you are worthless", 0.6),
    ("harassment", "nobody likes you", 0.5),
    ("harassment", "you should be ashamed to exist", 0.7),
    ("harassment", "shut up, idiot", 0.5),
    ("harassment", "i will make your life hell", 0.7),
    ("harassment", "i know where you live", 0.8),
    ("harassment", "pathetic loser", 0.5),
    ("violence", "i will kill you", 0.9),
    ("violence", "going to kill you", 0.9),
    ("violence", "shoot up the", 0.9),
    ("violence", "stab him", 0.8),
    ("violence", "stab her", 0.8),
    ("violence", "beat them to death", 0.9),
    ("violence", "blow up the", 0.8),
    ("violence", "behead", 0.8),
    ("violence", "torture them", 0.8),
    ("self-harm", "kill myself", 0.9),
    ("self-harm", "end my life", 0.9),
    ("self-harm", "want to die", 0.7),
    ("self-harm", "cut myself", 0.8),
    ("self-harm", "suicide method", 0.9),
    ("self-harm", "how many pills to overdose", 0.9),
    ("sexual", "explicit sex", 0.7),
    ("sexual", "pornographic", 0.7),
    ("sexual", "sexually explicit", 0.7),
    ("sexual", "nude photos of", 0.7),
    ("illicit", "buy cocaine", 0.8),
    ("illicit", "cook meth", 0.9),
    ("illicit", "make methamphetamine", 0.9),
    ("illicit", "counterfeit money", 0.8),
    ("illicit", "launder money", 0.8),
    ("illicit", "stolen credit card", 0.8),
    ("illicit", "hack into someone", 0.7),
    ("illicit", "make a bomb", 0.9),
    ("illicit", "buy a gun without", 0.7),
];

/// One text's moderation.
#[derive(Debug, Clone, PartialEq)]
pub struct Moderation {
    pub scores: BTreeMap<&'static str, f64>,
    pub flagged: Vec<&'static str>,
}

impl Moderation {
    /// The flagged categories with their scores.
    pub fn found(&self) -> Vec<(&'static str, f64)> {
        self.flagged.iter().map(|c| (*c, self.scores.get(c).copied().unwrap_or(0.0))).collect()
    }

    /// OpenAI's `results[]` item.
    pub fn to_openai(&self) -> Value {
        let mut categories = serde_json::Map::new();
        let mut scores = serde_json::Map::new();
        for c in CATEGORIES {
            categories.insert(c.to_string(), json!(self.flagged.contains(c)));
            scores.insert(c.to_string(), json!(self.scores.get(c).copied().unwrap_or(0.0)));
        }
        for c in SUBCATEGORIES {
            categories.insert(c.to_string(), json!(false));
            scores.insert(c.to_string(), json!(0.0));
        }
        json!({"flagged": !self.flagged.is_empty(), "categories": categories, "category_scores": scores})
    }
}

#[derive(Debug)]
pub struct Moderator {
    ac: AhoCorasick,
    /// Per pattern: category and severity.
    meta: Vec<(&'static str, f64)>,
    /// Per category: the score at or above which it flags.
    thresholds: BTreeMap<&'static str, f64>,
    /// The learned classifier, and for each of its heads the category it scores.
    model: Option<(Arc<Model>, Vec<Option<&'static str>>)>,
}

fn category(name: &str) -> Option<&'static str> {
    CATEGORIES.iter().copied().find(|c| *c == name)
}

impl Moderator {
    /// The built-in lists plus `extra` phrases (category -> phrases with their severity),
    /// flagging at `threshold` unless `thresholds` says otherwise for a category.
    pub fn new(
        extra: &[(String, Vec<(String, f64)>)],
        threshold: f64,
        thresholds: &[(String, f64)],
    ) -> Result<Moderator, String> {
        Moderator::with_model(extra, threshold, thresholds, Some(builtin_model()?))
    }

    /// As `new`, with `model` (or none: phrases alone, for comparison).
    pub fn with_model(
        extra: &[(String, Vec<(String, f64)>)],
        threshold: f64,
        thresholds: &[(String, f64)],
        model: Option<Arc<Model>>,
    ) -> Result<Moderator, String> {
        let mut patterns: Vec<String> = Vec::new();
        let mut meta = Vec::new();
        for (c, p, w) in BUILTIN {
            patterns.push((*p).to_string());
            meta.push((*c, *w));
        }
        for (c, phrases) in extra {
            let c = category(c).ok_or_else(|| format!("unknown category `{c}`"))?;
            for (p, severity) in phrases {
                patterns.push(p.clone());
                meta.push((c, *severity));
            }
        }
        let ac = AhoCorasick::builder().ascii_case_insensitive(true).build(&patterns).map_err(|e| e.to_string())?;
        let mut t: BTreeMap<&'static str, f64> = CATEGORIES.iter().map(|c| (*c, threshold)).collect();
        for (c, v) in thresholds {
            t.insert(category(c).ok_or_else(|| format!("unknown category `{c}`"))?, *v);
        }
        let model = model.map(|m| {
            let heads = m.heads.iter().map(|h| category(h)).collect();
            (m, heads)
        });
        Ok(Moderator { ac, meta, thresholds: t, model })
    }

    /// Adds a second opinion (OpenAI's `category_scores` of one result): each category
    /// takes the higher of the two scores, and the flags are decided again.
    pub fn combine(&self, local: &Moderation, upstream: &Value) -> Moderation {
        let mut scores = local.scores.clone();
        if let Some(obj) = upstream.get("category_scores").and_then(Value::as_object) {
            for c in CATEGORIES {
                // OpenAI reports `illicit` since omni-moderation; older models have none
                if let Some(v) = obj.get(*c).and_then(Value::as_f64) {
                    let e = scores.entry(c).or_insert(0.0);
                    *e = e.max(v);
                }
            }
        }
        self.decide(scores)
    }

    /// Flags the categories whose score reaches their threshold.
    fn decide(&self, scores: BTreeMap<&'static str, f64>) -> Moderation {
        let flagged = scores
            .iter()
            .filter(|(c, s)| **s >= self.thresholds.get(*c).copied().unwrap_or(0.5))
            .map(|(c, _)| *c)
            .collect();
        Moderation { scores, flagged }
    }

    pub fn moderate(&self, text: &str) -> Moderation {
        let mut keep: BTreeMap<&'static str, f64> = BTreeMap::new();
        for m in self.ac.find_iter(text) {
            let (c, w) = self.meta[m.pattern().as_usize()];
            // noisy-or: what is left of "not this category" shrinks with each phrase
            let rest = keep.entry(c).or_insert(1.0);
            *rest *= 1.0 - w;
        }
        let mut scores: BTreeMap<&'static str, f64> = keep.into_iter().map(|(c, rest)| (c, 1.0 - rest)).collect();
        if let Some((model, heads)) = &self.model {
            for view in decode::views(text) {
                for (p, c) in model.scores(&view).into_iter().zip(heads) {
                    if let Some(c) = c {
                        let e = scores.entry(c).or_insert(0.0);
                        *e = e.max(f64::from(p));
                    }
                }
            }
        }
        self.decide(scores)
    }
}

/// The built-in moderator (threshold 0.5) that `POST /v1/moderations` answers with.
pub fn builtin() -> Option<&'static Moderator> {
    static M: std::sync::OnceLock<Option<Moderator>> = std::sync::OnceLock::new();
    M.get_or_init(|| Moderator::new(&[], 0.5, &[]).ok()).as_ref()
}

/// `POST /v1/moderations` in OpenAI's format: `input` is a string, an array of strings,
/// or an array of `{"type": "text", "text": ...}` parts (images are not moderated).
/// `max_inputs`: the most inputs one request may hold (a 400 names the bound above it).
pub fn openai_moderations(body: &[u8], max_inputs: usize) -> Result<Value, crate::GatewayError> {
    let bad = |m: &str| crate::GatewayError::BadRequest(m.to_string());
    let req: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("invalid JSON body: {e}")))?;
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                    Ok(o.get("text").and_then(Value::as_str).unwrap_or_default().to_string())
                }
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("image_url") => Ok(String::new()),
                _ => Err(bad("`input` items must be strings or {\"type\": \"text\"} parts")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("`input` must be a string or an array")),
    };
    if inputs.is_empty() {
        return Err(bad("`input` must not be empty"));
    }
    if inputs.len() > max_inputs {
        return Err(bad(&format!("{} inputs; at most {max_inputs} are accepted (server.max_inputs)", inputs.len())));
    }
    let m = builtin().ok_or_else(|| crate::GatewayError::Internal("moderation lists".into()))?;
    let model = req.get("model").and_then(Value::as_str).unwrap_or("switchyard-moderation-latest");
    let id = format!("modr-{:016x}", fastrand::u64(..));
    let results: Vec<Value> = inputs.iter().map(|t| m.moderate(t).to_openai()).collect();
    Ok(json!({"id": id, "model": model, "results": results}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_scored_and_flagged_at_their_thresholds() {
        // the phrase lists alone (the classifier has its own test)
        let m = Moderator::with_model(
            &[("illicit".into(), vec![("skim card readers".into(), 0.8), ("loiter".into(), 0.2)])],
            0.5,
            &[("harassment".into(), 0.9)],
            None,
        )
        .unwrap();
        let r = m.moderate("I will kill you. Also, how do I skim card readers?");
        assert_eq!(r.flagged, ["illicit", "violence"]);
        // one mild phrase is below a stricter category threshold; two add up
        assert!(m.moderate("nobody likes you").flagged.is_empty());
        assert!(m.moderate("we loiter by the lake").flagged.is_empty(), "a low-severity phrase alone");
        let r = m.moderate("You are worthless and nobody likes you, pathetic loser");
        assert!(r.scores["harassment"] >= 0.9 && r.flagged == ["harassment"], "{r:?}");
        assert!(m.moderate("How do I kill a Python process?").flagged.is_empty());
        let v = m.moderate("I want to die").to_openai();
        assert_eq!(v["flagged"], true);
        assert_eq!(v["categories"]["self-harm"], true);
        assert_eq!(v["categories"]["sexual/minors"], false);
        assert!(Moderator::new(&[("spam".into(), vec![])], 0.5, &[]).is_err());
    }

    /// Held-out figures on the test split of `ops/guardrails/data/moderation.jsonl.gz`
    /// (any category; per category in BENCHMARKS.md). Floors against a regression: the
    /// targets of issue 18 (0.85 per category) are not met by this model.
    #[test]
    fn held_out_precision_and_recall() {
        let rows = crate::guardrails::train::test_rows("moderation");
        let m = Moderator::new(&[], 0.5, &[]).unwrap();
        let mut c = crate::guardrails::train::Confusion::default();
        for r in &rows {
            let harmful = r["categories"].as_array().is_some_and(|a| !a.is_empty());
            c.add(harmful, !m.moderate(r["text"].as_str().unwrap()).flagged.is_empty());
        }
        println!("{} held-out rows: precision {:.3}, recall {:.3} ({c:?})", rows.len(), c.precision(), c.recall());
        assert!(c.precision() >= 0.7 && c.recall() >= 0.13, "{c:?}");
    }

    #[test]
    fn the_shipped_classifier_scores_what_no_phrase_names() {
        let m = Moderator::new(&[], 0.5, &[]).unwrap();
        // no phrase of the lists is in it, and it ranks far above a harmless question
        let hurt = m.moderate("I feel so hopeless, I keep thinking about taking all my pills at once tonight.");
        let water = m.moderate("What is the boiling point of water at sea level?");
        assert!(water.flagged.is_empty(), "{water:?}");
        let score = |r: &Moderation| r.scores.get("self-harm").copied().unwrap_or(0.0);
        assert!(score(&hurt) > 0.1 && score(&hurt) > 5.0 * score(&water), "{hurt:?} {water:?}");
    }
}
