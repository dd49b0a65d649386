//! An experiment's report, from the usage ledger and the feedback: per variant, requests,
//! errors, latency p50/p95, tokens, cost per request and the feedback mean, each with a
//! 95% confidence interval, and each variant compared with the control (the first).
//!
//! The tests: means (cost, latency, tokens, feedback) with Welch's t-test, because the
//! variants' variances and sizes differ and Student's pooled test assumes they do not;
//! the error rate with the two-proportion z-test (pooled), flagged when fewer than five
//! errors or successes are expected in a group (the normal approximation's rule of
//! thumb). Intervals: Student's t for means, Wilson's score interval for the error rate
//! (it stays inside [0, 1] and holds at small counts), and the binomial order-statistic
//! interval for percentiles (no assumption on the latency distribution).

use serde_json::{json, Value};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use switchyard_config::Experiment;

use crate::types::UsageRecord;

/// Student's t quantile for a two-sided 95% interval with `df` degrees of freedom.
fn t975(df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map(|t| t.inverse_cdf(0.975)).unwrap_or(1.959_964)
}

fn normal_cdf(z: f64) -> f64 {
    Normal::new(0.0, 1.0).map(|n| n.cdf(z)).unwrap_or(0.5)
}

/// Mean, sample variance and count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    pub var: f64,
}

impl Moments {
    pub fn of(xs: &[f64]) -> Moments {
        let n = xs.len() as f64;
        if xs.is_empty() {
            return Moments { n, mean: 0.0, var: 0.0 };
        }
        let mean = xs.iter().sum::<f64>() / n;
        let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        Moments { n, mean, var }
    }

    /// The 95% interval of the mean (Student's t), `None` below two samples.
    pub fn ci95(&self) -> Option<(f64, f64)> {
        (self.n >= 2.0).then(|| {
            let half = t975(self.n - 1.0) * (self.var / self.n).sqrt();
            (self.mean - half, self.mean + half)
        })
    }
}

/// Welch's t-test: (t, degrees of freedom, two-sided p).
pub fn welch(a: &Moments, b: &Moments) -> Option<(f64, f64, f64)> {
    if a.n < 2.0 || b.n < 2.0 {
        return None;
    }
    let (va, vb) = (a.var / a.n, b.var / b.n);
    let se = (va + vb).sqrt();
    if se == 0.0 {
        return Some((0.0, a.n + b.n - 2.0, if a.mean == b.mean { 1.0 } else { 0.0 }));
    }
    let t = (a.mean - b.mean) / se;
    let df = (va + vb).powi(2) / (va.powi(2) / (a.n - 1.0) + vb.powi(2) / (b.n - 1.0));
    let p = StudentsT::new(0.0, 1.0, df).map(|d| 2.0 * (1.0 - d.cdf(t.abs()))).unwrap_or(f64::NAN);
    Some((t, df, p.clamp(0.0, 1.0)))
}

/// Wilson's 95% score interval of `k` successes in `n`.
pub fn wilson(k: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n, z) = (k as f64, n as f64, 1.959_964);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / denom;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The two-proportion z-test (pooled): (z, two-sided p).
pub fn two_proportions(k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let pool = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (pool * (1.0 - pool) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return Some((0.0, 1.0));
    }
    let z = (p1 - p2) / se;
    Some((z, (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0)))
}

/// The `q` percentile (nearest rank) of sorted `xs` and its 95% order-statistic interval.
pub fn percentile(xs: &[f64], q: f64) -> Option<(f64, Option<(f64, f64)>)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let at = |rank: f64| xs[(rank.max(1.0).min(n) as usize) - 1];
    let value = at((q * n).ceil());
    let half = 1.959_964 * (n * q * (1.0 - q)).sqrt();
    let ci = (xs.len() >= 10).then(|| (at((n * q - half).floor()), at((n * q + half).ceil() + 1.0)));
    Some((value, ci))
}

fn interval(ci: Option<(f64, f64)>) -> Value {
    ci.map_or(Value::Null, |(lo, hi)| json!([lo, hi]))
}

fn mean_stat(m: &Moments) -> Value {
    json!({"mean": m.mean, "ci95": interval(m.ci95()), "n": m.n})
}

fn compare(a: &Moments, control: &Moments) -> Value {
    match welch(a, control) {
        Some((t, df, p)) => {
            json!({"difference": a.mean - control.mean, "t": t, "df": df, "p_value": p, "test": "welch_t"})
        }
        None => Value::Null,
    }
}

/// What one variant's requests add up to.
struct Group {
    n: u64,
    errors: u64,
    latency_ms: Vec<f64>,
    cost: Vec<f64>,
    input: Vec<f64>,
    output: Vec<f64>,
    feedback: Vec<f64>,
}

/// A report being tallied: records are added one by one (straight from the ledger), so
/// what is held is only the experiment's own figures.
pub struct Tally<'a> {
    e: &'a Experiment,
    prefix: String,
    groups: Vec<Group>,
}

impl<'a> Tally<'a> {
    pub fn new(e: &'a Experiment) -> Tally<'a> {
        let groups = e
            .variants
            .iter()
            .map(|_| Group {
                n: 0,
                errors: 0,
                latency_ms: vec![],
                cost: vec![],
                input: vec![],
                output: vec![],
                feedback: vec![],
            })
            .collect();
        Tally { e, prefix: format!("{}/", e.id), groups }
    }

    /// Adds a record if it is the experiment's; `feedback(key, request)` is the score
    /// that key gave that request.
    pub fn add(&mut self, r: &UsageRecord, feedback: impl Fn(&str, &str) -> Option<f64>) {
        let Some(v) = r.experiment.as_deref().and_then(|x| x.strip_prefix(&self.prefix)) else { return };
        let Some(i) = self.e.variants.iter().position(|x| x.name == v) else { return };
        let g = &mut self.groups[i];
        g.n += 1;
        g.errors += u64::from(r.status >= 400);
        g.latency_ms.push(r.latency_us as f64 / 1000.0);
        g.cost.push(r.cost_usd);
        g.input.push(r.input_tokens as f64);
        g.output.push(r.output_tokens as f64);
        if let Some(score) = feedback(&r.key_id, &r.request_id) {
            g.feedback.push(score);
        }
    }

    pub fn finish(self) -> Value {
        finish(self.e, self.groups)
    }
}

fn finish(e: &Experiment, mut groups: Vec<Group>) -> Value {
    for g in &mut groups {
        g.latency_ms.sort_by(f64::total_cmp);
    }
    let control = &groups[0];
    let (c_cost, c_lat, c_fb) =
        (Moments::of(&control.cost), Moments::of(&control.latency_ms), Moments::of(&control.feedback));
    let variants: Vec<Value> = e
        .variants
        .iter()
        .zip(&groups)
        .enumerate()
        .map(|(i, (v, g))| {
            let pct = |q| match percentile(&g.latency_ms, q) {
                Some((value, ci)) => json!({"value": value, "ci95": interval(ci)}),
                None => Value::Null,
            };
            let (cost, lat, fb) = (Moments::of(&g.cost), Moments::of(&g.latency_ms), Moments::of(&g.feedback));
            let mut out = json!({
                "name": v.name, "weight": v.weight, "control": i == 0,
                "prompt_version": v.prompt_version, "prompt_label": v.prompt_label, "model": v.model,
                "requests": g.n, "errors": g.errors,
                "error_rate": {"value": if g.n > 0 { g.errors as f64 / g.n as f64 } else { 0.0 }, "ci95": interval(wilson(g.errors, g.n))},
                "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "mean": mean_stat(&lat)},
                "input_tokens": mean_stat(&Moments::of(&g.input)),
                "output_tokens": mean_stat(&Moments::of(&g.output)),
                "cost_per_request_usd": mean_stat(&cost),
                "feedback": {"count": g.feedback.len(), "mean": if g.feedback.is_empty() { Value::Null } else { json!(fb.mean) }, "ci95": interval(fb.ci95())},
            });
            if i > 0 {
                let small = |k: u64, n: u64| n > 0 && (k.min(n - k) as f64) < 5.0;
                let errors = two_proportions(g.errors, g.n, control.errors, control.n).map(|(z, p)| {
                    json!({"difference": g.errors as f64 / g.n as f64 - control.errors as f64 / control.n as f64,
                        "z": z, "p_value": p, "test": "two_proportion_z",
                        "small_sample": small(g.errors, g.n) || small(control.errors, control.n)})
                });
                out["vs_control"] = json!({
                    "error_rate": errors,
                    "cost_per_request_usd": compare(&cost, &c_cost),
                    "latency_ms": compare(&lat, &c_lat),
                    "feedback": compare(&fb, &c_fb),
                });
            }
            out
        })
        .collect();
    json!({"object": "experiment.report", "id": e.id, "status": e.status, "control": e.variants[0].name,
        "confidence": 0.95, "variants": variants})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Welch's example (the textbook one: Welch 1947 via Wikipedia's "Welch's t-test"
    /// worked example 1): A1 vs A2 gives t = -2.46, df = 24.9, p = 0.021.
    #[test]
    fn welch_matches_a_worked_example() {
        let a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
        let a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4];
        let (t, df, p) = welch(&Moments::of(&a1), &Moments::of(&a2)).unwrap();
        assert!(close(t, -2.46, 0.01) && close(df, 24.99, 0.05) && close(p, 0.021, 0.001), "{t} {df} {p}");
    }

    #[test]
    fn intervals_and_tests_match_known_values() {
        // Wilson: 8 of 20 -> [0.219, 0.613] (Newcombe 1998, table I style)
        let (lo, hi) = wilson(8, 20).unwrap();
        assert!(close(lo, 0.2188, 0.001) && close(hi, 0.6134, 0.001), "{lo} {hi}");
        assert_eq!(wilson(0, 0), None);
        // two proportions: 30/100 vs 45/100 -> z = -2.19, p = 0.028
        let (z, p) = two_proportions(30, 100, 45, 100).unwrap();
        assert!(close(z, -2.19, 0.01) && close(p, 0.0285, 0.001), "{z} {p}");
        // the t interval of 1..=10: mean 5.5, half width 2.262 * 3.03 / sqrt(10)
        let m = Moments::of(&(1..=10).map(f64::from).collect::<Vec<_>>());
        let (lo, hi) = m.ci95().unwrap();
        assert!(close(lo, 3.334, 0.001) && close(hi, 7.666, 0.001), "{lo} {hi}");
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let (p50, ci) = percentile(&xs, 0.5).unwrap();
        assert_eq!(p50, 50.0);
        let (lo, hi) = ci.unwrap();
        assert!(lo < 50.0 && hi > 50.0 && lo >= 39.0 && hi <= 62.0, "{lo} {hi}");
        assert_eq!(percentile(&xs, 0.95).unwrap().0, 95.0);
    }
}
