#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Criterion benches of provider translation, on the golden fixtures: one OpenAI chat
//! request (system, image, tool definition, tool call and result, multi-turn) into each
//! provider's format; each provider's answer into OpenAI's; each provider's stream into
//! OpenAI chunks (per event); and the Anthropic ingress both ways.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard_actors::providers::sse::SseParser;
use switchyard_actors::providers::{anthropic, bedrock, from_anthropic, gemini, ollama, openai};
use switchyard_actors::types::ChatRequest;

const REQUEST: &str = include_str!("../actors/src/providers/fixtures/openai_chat_request.json");
const ANTHROPIC_REQUEST: &str = include_str!("../actors/src/providers/fixtures/anthropic_messages_request.json");
const ANTHROPIC_MESSAGE: &str = include_str!("../actors/src/providers/fixtures/anthropic_message.json");
const ANTHROPIC_STREAM: &str = include_str!("../actors/src/providers/fixtures/anthropic_stream.sse");
const GEMINI_RESPONSE: &str = include_str!("../actors/src/providers/fixtures/gemini_response.json");
const GEMINI_STREAM: &str = include_str!("../actors/src/providers/fixtures/gemini_stream.sse");
const OLLAMA_RESPONSE: &str = include_str!("../actors/src/providers/fixtures/ollama_response.json");
const OLLAMA_STREAM: &str = include_str!("../actors/src/providers/fixtures/ollama_stream.ndjson");
const BEDROCK_RESPONSE: &str = include_str!("../actors/src/providers/fixtures/bedrock_response.json");
const OPENAI_COMPLETION: &str = include_str!("../actors/src/providers/fixtures/openai_completion.json");
const OPENAI_STREAM: &str = include_str!("../actors/src/providers/fixtures/openai_stream.sse");

fn requests(c: &mut Criterion) {
    let req = ChatRequest::parse(REQUEST.as_bytes()).unwrap();
    let mut g = c.benchmark_group("request");
    g.bench_function("openai", |b| b.iter(|| openai::chat_body(black_box(&req), "gpt-4o").unwrap()));
    g.bench_function("anthropic", |b| b.iter(|| anthropic::chat_body(black_box(&req), "claude").unwrap()));
    g.bench_function("gemini", |b| b.iter(|| gemini::chat_body(black_box(&req)).unwrap()));
    g.bench_function("ollama", |b| b.iter(|| ollama::chat_body(black_box(&req), "llama").unwrap()));
    g.bench_function("bedrock", |b| b.iter(|| bedrock::chat_body(black_box(&req)).unwrap()));
    g.bench_function("from_anthropic_ingress", |b| {
        b.iter(|| from_anthropic::request(black_box(ANTHROPIC_REQUEST.as_bytes())).unwrap())
    });
    g.finish();
}

fn responses(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    g.bench_function("anthropic", |b| {
        b.iter(|| anthropic::completion(black_box(ANTHROPIC_MESSAGE.as_bytes()), 1).unwrap())
    });
    g.bench_function("gemini", |b| {
        b.iter(|| gemini::completion(black_box(GEMINI_RESPONSE.as_bytes()), "g", "id", 1).unwrap())
    });
    g.bench_function("ollama", |b| {
        b.iter(|| ollama::completion(black_box(OLLAMA_RESPONSE.as_bytes()), "id", 1).unwrap())
    });
    g.bench_function("bedrock", |b| {
        b.iter(|| bedrock::completion(black_box(BEDROCK_RESPONSE.as_bytes()), "m", "id", 1).unwrap())
    });
    g.bench_function("to_anthropic_ingress", |b| {
        b.iter(|| from_anthropic::message(black_box(OPENAI_COMPLETION.as_bytes())).unwrap())
    });
    g.finish();
}

fn count_events(text: &str) -> u64 {
    SseParser::new().feed(text.as_bytes()).unwrap().len() as u64
}

fn streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(count_events(ANTHROPIC_STREAM)));
    g.bench_function("anthropic", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut t = anthropic::StreamTranslator::new(1);
            let evs = p.feed(black_box(ANTHROPIC_STREAM.as_bytes())).unwrap();
            evs.iter().map(|e| t.on_event(e).unwrap().len()).sum::<usize>()
        })
    });
    g.throughput(Throughput::Elements(count_events(GEMINI_STREAM)));
    g.bench_function("gemini", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut t = gemini::StreamTranslator::new("id".into(), "g".into(), 1);
            let evs = p.feed(black_box(GEMINI_STREAM.as_bytes())).unwrap();
            evs.iter().map(|e| t.on_event(e).unwrap().len()).sum::<usize>() + t.finish().len()
        })
    });
    g.throughput(Throughput::Elements(OLLAMA_STREAM.lines().count() as u64));
    g.bench_function("ollama", |b| {
        b.iter(|| {
            ollama::StreamTranslator::new("id".into(), 1).feed(black_box(OLLAMA_STREAM.as_bytes())).unwrap().len()
        })
    });
    g.throughput(Throughput::Elements(count_events(OPENAI_STREAM)));
    g.bench_function("to_anthropic_ingress", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut t = from_anthropic::EventTranslator::default();
            let evs = p.feed(black_box(OPENAI_STREAM.as_bytes())).unwrap();
            evs.iter().map(|e| t.on_event(e).len()).sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, requests, responses, streams);
criterion_main!(benches);
