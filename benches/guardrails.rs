#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Guardrail costs: PII scan throughput (MB/s) on text with and without matches, the
//! injection scorer and the moderator, and the whole set applied to a chat request's
//! messages as the pipeline does it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use switchyard_actors::guardrails::injection::InjectionScorer;
use switchyard_actors::guardrails::moderation::Moderator;
use switchyard_actors::guardrails::pii::{Action, Entity, Scanner, Vault};
use switchyard_actors::guardrails::{Applied, Guard};

const PROSE: &str = "The quarterly report shows steady growth across all regions, with the northern \
division leading on new accounts. Customer satisfaction improved after the support team changed its \
escalation process, and the board approved the budget for the next phase of the migration project. ";

fn scanner() -> Scanner {
    let actions = [
        (Entity::Email, Action::Pseudonymize),
        (Entity::Phone, Action::Redact),
        (Entity::Card, Action::Block),
        (Entity::Iban, Action::Mask),
        (Entity::Ssn, Action::Mask),
        (Entity::Ip, Action::Log),
        (Entity::Secret, Action::Block),
    ]
    .into_iter()
    .collect();
    Scanner::new(actions, &[("EMPLOYEE".into(), r"\bEMP-[0-9]{6}\b".into(), Action::Redact)]).unwrap()
}

fn scan(c: &mut Criterion) {
    let s = scanner();
    let clean = PROSE.repeat(50); // ~14 KB, no matches
    let with_pii = format!(
        "{}Contact jane.doe@example.com or (415) 555-2671 from 10.1.2.3, ssn 123-45-6789. {}",
        PROSE.repeat(25),
        PROSE.repeat(25)
    );
    let mut g = c.benchmark_group("pii_scan");
    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("clean_14kb", |b| b.iter(|| s.scan(black_box(&clean)).len()));
    g.throughput(Throughput::Bytes(with_pii.len() as u64));
    g.bench_function("with_pii_14kb_apply", |b| {
        b.iter(|| {
            let mut v = Vault::default();
            s.apply(black_box(&with_pii), &mut v).map(|(t, _)| t.len()).unwrap_or(0)
        })
    });
    g.finish();

    let inj = InjectionScorer::new().unwrap();
    let m = Moderator::new(&[], 0.5, &[]).unwrap();
    let question =
        "Hi, I ordered a jacket two weeks ago and would like to know how the refund works if it does not fit.";
    let mut g = c.benchmark_group("guardrail_text");
    g.throughput(Throughput::Bytes(question.len() as u64));
    g.bench_function("injection_score_100b", |b| b.iter(|| inj.score(black_box(question)).score));
    g.bench_function("moderation_100b", |b| b.iter(|| m.moderate(black_box(question)).flagged.len()));
    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("injection_score_14kb", |b| b.iter(|| inj.score(black_box(&clean)).score));
    g.bench_function("moderation_14kb", |b| b.iter(|| m.moderate(black_box(&clean)).flagged.len()));
    g.finish();
}

fn per_request(c: &mut Criterion) {
    // the full set as one [[guardrails]] entry: PII, injection and moderation
    let cfg = switchyard_config::Guardrail {
        name: "all".into(),
        on_request: true,
        on_response: true,
        pii: [("email", "pseudonymize"), ("phone", "redact"), ("card", "block"), ("ssn", "mask"), ("secret", "block")]
            .iter()
            .map(|(e, a)| (e.to_string(), a.to_string()))
            .collect(),
        custom: Vec::new(),
        regions: vec!["US".into()],
        injection: Some((0.5, true)),
        injection_model: true,
        injection_classifier: None,
        moderation: Some(switchyard_config::ModerationCfg {
            threshold: 0.5,
            thresholds: Vec::new(),
            extra: Vec::new(),
            block: true,
            upstream: None,
            model: true,
            classifier: None,
        }),
        webhook: None,
        presidio: None,
    };
    let guard = std::sync::Arc::new(Guard::build(&cfg).unwrap());
    let messages = json!([
        {"role": "system", "content": "You are a helpful support assistant for an online shop."},
        {"role": "user", "content": "My order 1234 has not arrived. My e-mail is jane.doe@example.com."},
        {"role": "assistant", "content": "Sorry to hear that! Could you confirm the delivery address?"},
        {"role": "user", "content": "It's 12 Baker Street. Please call me back at (415) 555-2671 today."}
    ]);
    c.bench_function("guardrails_full_set_per_request_4_messages", |b| {
        b.iter(|| {
            let mut applied = Applied { guards: vec![guard.clone()], ..Default::default() };
            let mut m = messages.as_array().cloned().unwrap();
            applied.on_messages(black_box(&mut m)).map(|_| m.len()).unwrap_or(0)
        })
    });
}

criterion_group!(benches, scan, per_request);
criterion_main!(benches);
