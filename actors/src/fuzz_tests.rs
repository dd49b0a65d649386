//! Bounded fuzzing on the stable toolchain: `cargo fuzz` needs nightly (libFuzzer's
//! sanitizer flags), and this project builds with the one stable toolchain its machines
//! have. So the parsers that face untrusted bytes are driven here with seeded random
//! mutations of real inputs (the golden fixtures): bit flips, byte insertions and
//! deletions, splices and truncations, plus random bytes. The property is the one a
//! fuzzer checks: no panic, no hang; a bad input is an error value. Inputs that once
//! broke something are kept below as regression cases.

use crate::guardrails::injection::InjectionScorer;
use crate::guardrails::moderation::openai_moderations;
use crate::guardrails::pii::{Action, Entity, Scanner, Vault};
use crate::providers::sse::SseParser;
use crate::providers::{from_anthropic, from_responses, openai_responses, Adapter as _};
use crate::types::{ChatRequest, EmbeddingsRequest};

const SEEDS: &[&[u8]] = &[
    include_bytes!("providers/fixtures/openai_chat_request.json"),
    include_bytes!("providers/fixtures/anthropic_messages_request.json"),
    include_bytes!("providers/fixtures/anthropic_stream.sse"),
    include_bytes!("providers/fixtures/gemini_stream.sse"),
    include_bytes!("providers/fixtures/openai_completion.json"),
    include_bytes!("providers/fixtures/responses_request.json"),
    b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"m\",\"delta\":\"x\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":1}}}\n\n",
    br#"{"model":"m","input":["a","b"],"encoding_format":"base64"}"#,
    br#"{"input":[{"type":"text","text":"I will kill you"},"x"]}"#,
    b"data: {\"choices\":[{\"delta\":{\"content\":\"<EMAIL_1>\"}}]}\n\ndata: [DONE]\n\n",
];

fn mutate(rng: &mut fastrand::Rng, input: &[u8]) -> Vec<u8> {
    crate::fuzz::mutate(rng, input, SEEDS)
}

fn scanner() -> Scanner {
    let actions = [Entity::Email, Entity::Phone, Entity::Card, Entity::Iban, Entity::Ssn, Entity::Ip, Entity::Secret]
        .into_iter()
        .map(|e| (e, Action::Pseudonymize))
        .collect();
    Scanner::new(actions, &[]).unwrap()
}

#[test]
fn parsers_survive_mutated_and_random_input() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let scan = scanner();
    let injection = InjectionScorer::new().unwrap();
    let anthropic = crate::providers::adapter(switchyard_config::ProviderKind::Anthropic);
    let iterations = 6_000;
    for i in 0..iterations {
        let input = if i % 10 == 0 {
            (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect()
        } else {
            let seed = SEEDS[rng.usize(0..SEEDS.len())];
            mutate(&mut rng, seed)
        };
        let _ = ChatRequest::parse(&input);
        let _ = EmbeddingsRequest::parse(&input);
        let _ = from_anthropic::request(&input);
        // the Responses request, its chat view, and a Response read as a completion
        if let Ok(req) = from_responses::parse(&input) {
            let prior = from_responses::input_items(&req);
            let _ = from_responses::request_for_any(&req, &prior);
            if let Ok(chat) = from_responses::request(&req, &[]) {
                let _ = ChatRequest::parse(&chat);
            }
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&input) {
            let _ = openai_responses::completion(&v, 0);
            let _ = from_responses::normalize_item(&v);
            let _ = from_responses::output_as_input(&v);
        }
        let _ = openai_moderations(&input, 2048);
        // the SSE parser, fed in random pieces
        let mut p = SseParser::new();
        let echo = from_responses::Echo::of(&serde_json::Map::new());
        let mut to_responses = from_responses::EventTranslator::new("resp_f".into(), 0, echo);
        let cx = crate::providers::DecodeCtx { model: "m", created: 0, base64: false };
        let mut to_chat = openai_responses::OpenAiResponses.stream_decoder(&cx).unwrap();
        let _ = to_chat.feed(&input);
        let mut at = 0;
        while at < input.len() {
            let n = rng.usize(1..=16).min(input.len() - at);
            // and every event through the stream classifiers (OpenAI's, Anthropic's own)
            for ev in p.feed(&input[at..at + n]).unwrap_or_default() {
                let _ = crate::providers::openai::stream_step(&ev);
                let _ = anthropic.native_stream_step(&ev);
                let _ = openai_responses::OpenAiResponses.native_stream_step(&ev);
                let _ = to_responses.on_event(&ev);
                let _ = from_responses::final_response(&ev);
            }
            at += n;
        }
        let _ = from_anthropic::untranslated_fields(&input);
        // text scanners on whatever UTF-8 the bytes hold
        let text = String::from_utf8_lossy(&input);
        let mut vault = Vault::default();
        if let Ok((out, _)) = scan.apply(&text, &mut vault) {
            let _ = vault.restore(&out);
        }
        let _ = injection.score(&text);
    }
}

/// Inputs kept because they once found a fault.
#[test]
fn regressions() {
    let scan = scanner();
    let mut vault = Vault::default();
    // multi-byte characters around matches (slicing must stay on char boundaries)
    for text in ["é@é.éé 4111 1111 1111 1111 ü", "\u{E0041}\u{E0042}\u{E0043}\u{E0044}", "<EMAIL_1", "<<<>>>"] {
        let _ = scan.apply(text, &mut vault);
        let _ = vault.restore(text);
    }
    assert!(ChatRequest::parse(b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}").is_err());
    assert!(openai_moderations(b"{\"input\":[]}", 2048).is_err());
}
