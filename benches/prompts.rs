#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! What prompt management adds to a request: rendering one version (two Jinja messages,
//! three variables), and the whole shaping step as the pipeline runs it on a chat body
//! (parse the JSON, render the prompt into it, a policy's system text, the request the
//! engine works on), against the parse alone that every request pays anyway.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Map, Value};
use switchyard_actors::prompts::render::{Bounds, Compiled};
use switchyard_actors::prompts::shape::{apply_prompt, Format, Policies, PolicyContext};
use switchyard_actors::types::ChatRequest;
use switchyard_config::{PromptMessage, PromptPolicy, PromptVersion};

fn version() -> Compiled {
    let spec = PromptVersion {
        messages: vec![
            PromptMessage {
                role: "system".into(),
                content: "You are {{ company }}'s assistant. Answer in {{ language }}.".into(),
            },
            PromptMessage { role: "user".into(), content: "Say hello to {{ who }}.".into() },
        ],
        model: None,
        params: json!({"temperature": 0.2}).as_object().cloned().unwrap(),
        variables: [("company", "string"), ("language", "string"), ("who", "string")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        note: None,
    };
    Compiled::new(1, spec, Bounds::default()).unwrap()
}

fn prompts(c: &mut Criterion) {
    let v = version();
    let vars: Map<String, Value> =
        json!({"company": "ACME", "language": "English", "who": "the benchmark"}).as_object().cloned().unwrap();
    c.bench_function("prompt/render", |b| b.iter(|| black_box(v.render("bench", black_box(&vars)).unwrap())));

    let policies = Policies::new(
        &[PromptPolicy {
            name: "date".into(),
            keys: vec![],
            teams: vec![],
            models: vec![],
            prepend: Some("Today is {{ date }}.".into()),
            append: None,
        }],
        Bounds::default(),
    )
    .unwrap();
    let body = serde_json::to_vec(&json!({"model": "fast", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
        "prompt": {"id": "bench", "variables": vars}}))
    .unwrap();
    // what every chat request pays anyway
    c.bench_function("prompt/parse_only", |b| b.iter(|| black_box(ChatRequest::parse(black_box(&body)).unwrap())));
    let cx = PolicyContext { key_id: "bench", team: None, user: None, alias: "fast", meta: &[] };
    c.bench_function("prompt/shape_chat_body", |b| {
        b.iter(|| {
            let Value::Object(mut map) = serde_json::from_slice::<Value>(black_box(&body)).unwrap() else { panic!() };
            let vars = map["prompt"]["variables"].as_object().cloned().unwrap();
            apply_prompt(Format::Chat, &mut map, "bench", &v, &vars).unwrap();
            policies.apply(Format::Chat, &mut map, &cx).unwrap();
            black_box(ChatRequest::from_object(map).unwrap())
        })
    });
}

criterion_group!(benches, prompts);
criterion_main!(benches);
