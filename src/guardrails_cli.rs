//! `switchyard guardrails train|eval`: fit the injection and moderation classifiers on
//! labelled data, and measure precision and recall on a labelled file, so that an
//! operator can read a threshold off their own traffic before turning on `block`.
//!
//! A row is `{"text": ..., "label": 0|1}` (injection) or `{"text": ..., "categories":
//! [...]}` (moderation; `[]` is harmless, `["any"]` harmful in a category the file does
//! not name). Rows may carry `split` (`train` or `test`) and `source`; files may be
//! gzipped (`.gz`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;
use switchyard_actors::guardrails::injection::{InjectionScorer, DEFAULT_THRESHOLD};
use switchyard_actors::guardrails::linear::Model;
use switchyard_actors::guardrails::moderation::{Moderator, CATEGORIES};
use switchyard_actors::guardrails::train::{train, Confusion, Example, Options};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    Injection,
    Moderation,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Train a classifier on the rows whose split is `train`, write it, and report its
    /// precision and recall on the rows whose split is `test`.
    Train {
        #[arg(long, value_enum)]
        task: Task,
        /// The labelled data (`ops/guardrails/data/injection.jsonl.gz`).
        #[arg(long)]
        data: PathBuf,
        /// Where the model goes (`actors/assets/injection.model` ships in the binary).
        #[arg(long)]
        out: PathBuf,
        /// Training passes over the data.
        #[arg(long, default_value_t = Options::default().epochs)]
        epochs: usize,
        /// L2 regularisation.
        #[arg(long, default_value_t = Options::default().l2)]
        l2: f32,
        /// Keep the data's class priors instead of balancing the classes.
        #[arg(long)]
        unbalanced: bool,
        /// Train-split sources to leave out and report on instead of the test split
        /// (choose settings on these; look at the test split once, at the end).
        #[arg(long, value_delimiter = ',')]
        validate: Vec<String>,
    },
    /// Precision, recall and the confusion per category of the shipped classifiers (and
    /// the phrase scorer) on a labelled JSONL file.
    Eval {
        #[arg(long, value_enum)]
        task: Task,
        /// The labelled file (JSONL, optionally gzipped).
        file: PathBuf,
        /// The score at or above which a text is flagged.
        #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
        threshold: f64,
        /// Only rows of this split (`test`); all rows when absent.
        #[arg(long)]
        split: Option<String>,
        /// A model file to evaluate instead of the shipped one.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print each misclassified row.
        #[arg(long)]
        misses: bool,
    },
}

fn read_rows(path: &Path) -> Result<Vec<Value>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut s)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        s
    } else {
        String::from_utf8(raw).map_err(|e| format!("{}: {e}", path.display()))?
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1)))
        .collect()
}

fn text_of(row: &Value) -> &str {
    row.get("text").and_then(Value::as_str).unwrap_or_default()
}

fn split_of(row: &Value) -> &str {
    row.get("split").and_then(Value::as_str).unwrap_or("test")
}

/// The categories a moderation row names (`any`: some harm, category unnamed).
fn categories(row: &Value) -> Vec<&str> {
    row.get("categories")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn injection_label(row: &Value) -> bool {
    row.get("label").and_then(Value::as_i64) == Some(1) || row.get("label").and_then(Value::as_bool) == Some(true)
}

pub fn run(action: Action) -> ExitCode {
    match run_inner(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard guardrails: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(action: Action) -> Result<(), String> {
    match action {
        Action::Train { task, data, out, epochs, l2, unbalanced, validate } => {
            let rows = read_rows(&data)?;
            let held = |r: &Value| validate.iter().any(|s| r.get("source").and_then(Value::as_str) == Some(s.as_str()));
            let train_rows: Vec<&Value> = rows.iter().filter(|r| split_of(r) == "train" && !held(r)).collect();
            let heads: Vec<&str> = match task {
                Task::Injection => vec!["injection"],
                Task::Moderation => CATEGORIES.to_vec(),
            };
            let examples: Vec<Example> = train_rows
                .iter()
                .map(|r| Example {
                    text: text_of(r).to_string(),
                    labels: match task {
                        Task::Injection => vec![Some(injection_label(r))],
                        Task::Moderation => {
                            let c = categories(r);
                            heads.iter().map(|h| if c.contains(&"any") { None } else { Some(c.contains(h)) }).collect()
                        }
                    },
                })
                .collect();
            let started = std::time::Instant::now();
            let model = train(&heads, &examples, &Options { epochs, l2, balance: !unbalanced, ..Options::default() });
            std::fs::write(&out, model.to_bytes()).map_err(|e| format!("{}: {e}", out.display()))?;
            println!(
                "trained {} heads on {} examples in {:.1} s; wrote {} ({} bytes)",
                heads.len(),
                examples.len(),
                started.elapsed().as_secs_f64(),
                out.display(),
                model.to_bytes().len()
            );
            let report_on: Vec<&Value> = if validate.is_empty() {
                rows.iter().filter(|r| split_of(r) == "test").collect()
            } else {
                println!("validation (train-split sources left out): {}", validate.join(", "));
                rows.iter().filter(|r| split_of(r) == "train" && held(r)).collect()
            };
            report(task, &report_on, DEFAULT_THRESHOLD, Some(Arc::new(model)), false)
        }
        Action::Eval { task, file, threshold, split, model, misses } => {
            let rows = read_rows(&file)?;
            let rows: Vec<&Value> = rows.iter().filter(|r| split.as_deref().is_none_or(|s| split_of(r) == s)).collect();
            let model = match model {
                None => None,
                Some(p) => {
                    let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                    Some(Arc::new(Model::parse(bytes.into())?))
                }
            };
            report(task, &rows, threshold, model, misses)
        }
    }
}

fn line(name: &str, c: &Confusion) {
    println!(
        "  {name:<28} precision {:.3}  recall {:.3}  (tp {} fp {} fn {} tn {})",
        c.precision(),
        c.recall(),
        c.tp,
        c.fp,
        c.fn_,
        c.tn
    );
}

/// Prints precision and recall of the classifier, the phrase scorer and the two
/// combined (as the gateway runs them), overall and per source.
fn report(task: Task, rows: &[&Value], threshold: f64, model: Option<Arc<Model>>, misses: bool) -> Result<(), String> {
    println!("{} labelled rows, threshold {threshold}", rows.len());
    match task {
        Task::Injection => {
            let shipped = model.is_none();
            let model = match model {
                Some(m) => m,
                None => switchyard_actors::guardrails::injection::builtin_model()?,
            };
            let scorer = InjectionScorer::with_model(Some(model))?;
            let (mut classifier, mut phrases, mut both) =
                (Confusion::default(), Confusion::default(), Confusion::default());
            let mut by_source: BTreeMap<&str, Confusion> = BTreeMap::new();
            for r in rows {
                let (t, truth) = (text_of(r), injection_label(r));
                let p = scorer.model_score(t).unwrap_or(0.0);
                let ph = scorer.phrase_score(t).score;
                classifier.add(truth, p >= threshold);
                phrases.add(truth, ph >= threshold);
                let flagged = p.max(ph) >= threshold;
                both.add(truth, flagged);
                by_source
                    .entry(r.get("source").and_then(Value::as_str).unwrap_or("-"))
                    .or_default()
                    .add(truth, flagged);
                if misses && truth != flagged {
                    println!("  {} ({:.2} / {:.2}): {}", if truth { "missed" } else { "false alarm" }, p, ph, short(t));
                }
            }
            println!("injection ({} model):", if shipped { "shipped" } else { "new" });
            line("classifier alone", &classifier);
            line("phrases alone", &phrases);
            line("classifier + phrases", &both);
            println!("by source (classifier + phrases):");
            for (s, c) in &by_source {
                line(s, c);
            }
        }
        Task::Moderation => {
            let model = match model {
                Some(m) => m,
                None => switchyard_actors::guardrails::moderation::builtin_model()?,
            };
            let with = Moderator::with_model(&[], threshold, &[], Some(model))?;
            let without = Moderator::with_model(&[], threshold, &[], None)?;
            let mut per: BTreeMap<&str, (Confusion, Confusion)> = BTreeMap::new();
            let (mut any, mut any_phrases) = (Confusion::default(), Confusion::default());
            let mut by_source: BTreeMap<&str, Confusion> = BTreeMap::new();
            for r in rows {
                let (t, truth) = (text_of(r), categories(r));
                let m = with.moderate(t);
                let ph = without.moderate(t);
                let harmful = !truth.is_empty();
                any.add(harmful, !m.flagged.is_empty());
                any_phrases.add(harmful, !ph.flagged.is_empty());
                by_source
                    .entry(r.get("source").and_then(Value::as_str).unwrap_or("-"))
                    .or_default()
                    .add(harmful, !m.flagged.is_empty());
                if misses && harmful == m.flagged.is_empty() {
                    println!(
                        "  {} {:?} (truth {:?}): {}",
                        if harmful { "missed" } else { "false alarm" },
                        m.flagged,
                        truth,
                        short(t)
                    );
                }
                if truth.contains(&"any") {
                    continue;
                }
                for c in CATEGORIES {
                    let e = per.entry(c).or_default();
                    e.0.add(truth.contains(c), m.flagged.contains(c));
                    e.1.add(truth.contains(c), ph.flagged.contains(c));
                }
            }
            println!("moderation, per category (classifier + phrases):");
            for (c, (both, _)) in &per {
                line(c, both);
            }
            println!("per category (phrases alone):");
            for (c, (_, ph)) in &per {
                line(c, ph);
            }
            println!("any category:");
            line("classifier + phrases", &any);
            line("phrases alone", &any_phrases);
            println!("by source, any category (classifier + phrases):");
            for (s, c) in &by_source {
                line(s, c);
            }
        }
    }
    Ok(())
}

fn short(t: &str) -> String {
    let one: String = t.chars().take(140).map(|c| if c.is_control() { ' ' } else { c }).collect();
    one
}
