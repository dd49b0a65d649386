//! Golden translation tests (insta snapshots in `snapshots/`).
//!
//! - One representative request per source format (`fixtures/openai_chat_request.json`,
//!   `fixtures/anthropic_messages_request.json`: system prompt, multi-turn, image, tool
//!   definition, tool call and tool result) gives one snapshot per target provider.
//! - One answer and one stream per provider (`fixtures/<provider>_response.json`,
//!   `fixtures/<provider>_stream.*`, shaped as in the providers' documentation) give one
//!   snapshot per source format: what an OpenAI client and what an Anthropic client get.
//!   (Bedrock's stream is binary event-stream framing; `aws.rs` tests it frame by frame.)
//!
//! A change in any translation shows up as a snapshot diff to review
//! (`cargo insta review`, or `INSTA_UPDATE=always` then `git diff`).

use bytes::Bytes;
use serde_json::Value;

use super::sse::SseParser;
use super::{anthropic, bedrock, from_anthropic, from_responses, gemini, ollama, openai};
use crate::types::ChatRequest;

const CREATED: u64 = 1_700_000_000;

fn fixture(name: &str) -> &'static str {
    match name {
        "openai_chat_request.json" => include_str!("fixtures/openai_chat_request.json"),
        "anthropic_messages_request.json" => include_str!("fixtures/anthropic_messages_request.json"),
        "anthropic_message.json" => include_str!("fixtures/anthropic_message.json"),
        "anthropic_stream.sse" => include_str!("fixtures/anthropic_stream.sse"),
        "gemini_response.json" => include_str!("fixtures/gemini_response.json"),
        "gemini_stream.sse" => include_str!("fixtures/gemini_stream.sse"),
        "ollama_response.json" => include_str!("fixtures/ollama_response.json"),
        "ollama_stream.ndjson" => include_str!("fixtures/ollama_stream.ndjson"),
        "openai_completion.json" => include_str!("fixtures/openai_completion.json"),
        "bedrock_response.json" => include_str!("fixtures/bedrock_response.json"),
        "openai_stream.sse" => include_str!("fixtures/openai_stream.sse"),
        "responses_request.json" => include_str!("fixtures/responses_request.json"),
        other => panic!("no fixture {other}"),
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The `data:` payloads of OpenAI SSE bytes, as JSON (`[DONE]` as a string).
fn openai_events(bytes: &[Bytes]) -> Vec<Value> {
    let mut p = SseParser::new();
    let all: Vec<u8> = bytes.iter().flat_map(|b| b.iter().copied()).collect();
    p.feed(&all).unwrap().into_iter().map(|e| serde_json::from_str(&e.data).unwrap_or(Value::String(e.data))).collect()
}

/// Anthropic SSE bytes as `[event name, data]` pairs.
fn anthropic_events(bytes: &[Bytes]) -> Vec<Value> {
    let mut p = SseParser::new();
    let all: Vec<u8> = bytes.iter().flat_map(|b| b.iter().copied()).collect();
    p.feed(&all)
        .unwrap()
        .into_iter()
        .map(|e| serde_json::json!([e.event, serde_json::from_str::<Value>(&e.data).unwrap()]))
        .collect()
}

/// What an Anthropic client gets for OpenAI stream bytes (the `/v1/messages` ingress).
fn as_anthropic_stream(openai_sse: &[Bytes]) -> Vec<Value> {
    let mut p = SseParser::new();
    let mut t = from_anthropic::EventTranslator::default();
    let all: Vec<u8> = openai_sse.iter().flat_map(|b| b.iter().copied()).collect();
    let out: Vec<Bytes> = p.feed(&all).unwrap().iter().flat_map(|e| t.on_event(e)).collect();
    anthropic_events(&out)
}

/// What a Responses client gets for OpenAI stream bytes (the `/v1/responses` ingress).
fn as_responses_stream(openai_sse: &[Bytes]) -> Vec<Value> {
    let mut p = SseParser::new();
    let echo = from_responses::Echo::of(&serde_json::Map::new());
    let mut t = from_responses::EventTranslator::new("resp_golden".into(), CREATED, echo);
    let all: Vec<u8> = openai_sse.iter().flat_map(|b| b.iter().copied()).collect();
    let out: Vec<Bytes> = p.feed(&all).unwrap().iter().flat_map(|e| t.on_event(e)).collect();
    anthropic_events(&out)
}

#[test]
fn openai_source_request_per_target() {
    let req = ChatRequest::parse(fixture("openai_chat_request.json").as_bytes()).unwrap();
    insta::assert_json_snapshot!("request.openai_to_openai", json(&openai::chat_body(&req, "gpt-4o").unwrap()));
    insta::assert_json_snapshot!(
        "request.openai_to_anthropic",
        json(&anthropic::chat_body(&req, "claude-sonnet-4-5").unwrap())
    );
    insta::assert_json_snapshot!("request.openai_to_gemini", json(&gemini::chat_body(&req).unwrap()));
    insta::assert_json_snapshot!("request.openai_to_ollama", json(&ollama::chat_body(&req, "llama3.2").unwrap()));
    insta::assert_json_snapshot!("request.openai_to_bedrock", json(&bedrock::chat_body(&req).unwrap()));
}

#[test]
fn anthropic_source_request_per_target() {
    let openai_body = from_anthropic::request(fixture("anthropic_messages_request.json").as_bytes()).unwrap();
    insta::assert_json_snapshot!("request.anthropic_to_openai", json(&openai_body));
    // and on to every other target, as the engine would send it
    let req = ChatRequest::parse(&openai_body).unwrap();
    insta::assert_json_snapshot!(
        "request.anthropic_to_anthropic",
        json(&anthropic::chat_body(&req, "claude-sonnet-4-5").unwrap())
    );
    insta::assert_json_snapshot!("request.anthropic_to_gemini", json(&gemini::chat_body(&req).unwrap()));
    insta::assert_json_snapshot!("request.anthropic_to_ollama", json(&ollama::chat_body(&req, "llama3.2").unwrap()));
    insta::assert_json_snapshot!("request.anthropic_to_bedrock", json(&bedrock::chat_body(&req).unwrap()));
}

/// Anthropic to Anthropic sends the client's own request: every field, known to the
/// gateway or not, kept; only the model is the upstream one. (The translated snapshot
/// above is what it gets when a guardrail changed the messages.)
#[test]
fn anthropic_to_anthropic_keeps_every_field() {
    use super::Adapter as _;
    use crate::types::{NativeRequest, WireFormat};
    let mut client: Value = json(fixture("anthropic_messages_request.json").as_bytes());
    client["thinking"] = serde_json::json!({"type": "enabled", "budget_tokens": 2048});
    client["output_config"] = serde_json::json!({"format": {"type": "json_schema", "schema": {"type": "object"}}});
    client["system"] = serde_json::json!([{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]);
    client["a_field_from_next_year"] = serde_json::json!({"x": [1, {"y": null}]});
    let Value::Object(body) = client.clone() else { panic!("an object") };
    let native = NativeRequest { format: WireFormat::Anthropic, body, headers: Vec::new(), untranslatable: None };
    let sent = anthropic::Anthropic.encode_native(&native, "claude-up").unwrap().unwrap();
    client["model"] = Value::String("claude-up".into());
    assert_eq!(json(&sent), client);
    // no other kind takes an Anthropic request as it is
    for kind in [switchyard_config::ProviderKind::OpenAi, switchyard_config::ProviderKind::Gemini] {
        assert!(super::adapter(kind).encode_native(&native, "m").is_none());
    }
}

/// Every provider's answer as the OpenAI completion the engine works with.
fn completions() -> Vec<(&'static str, Bytes)> {
    vec![
        ("openai", Bytes::from_static(fixture("openai_completion.json").as_bytes())),
        ("anthropic", anthropic::completion(fixture("anthropic_message.json").as_bytes(), CREATED).unwrap()),
        (
            "gemini",
            gemini::completion(fixture("gemini_response.json").as_bytes(), "gemini-2.5-flash", "g1", CREATED).unwrap(),
        ),
        ("ollama", ollama::completion(fixture("ollama_response.json").as_bytes(), "o1", CREATED).unwrap()),
        (
            "bedrock",
            bedrock::completion(fixture("bedrock_response.json").as_bytes(), "amazon.nova-lite-v1:0", "b1", CREATED)
                .unwrap(),
        ),
    ]
}

#[test]
fn responses_per_source_format() {
    let echo = from_responses::Echo::of(&serde_json::Map::new());
    for (provider, completion) in completions() {
        insta::assert_json_snapshot!(format!("response.{provider}_for_openai"), json(&completion));
        let message = from_anthropic::message(&completion).unwrap();
        insta::assert_json_snapshot!(format!("response.{provider}_for_anthropic"), json(&message));
        let response = from_responses::response(&completion, "resp_golden", CREATED, &echo).unwrap();
        insta::assert_json_snapshot!(format!("response.{provider}_for_responses"), response);
    }
}

/// A Responses request (instructions, items with a function call and its output, an
/// image, a function tool, structured output, reasoning effort) as the chat request the
/// engine serves, and on to every target.
#[test]
fn responses_source_request_per_target() {
    let Value::Object(req) = json(fixture("responses_request.json").as_bytes()) else { panic!("an object") };
    let chat = from_responses::request(&req, &[]).unwrap();
    insta::assert_json_snapshot!("request.responses_to_openai", json(&chat));
    let req = ChatRequest::parse(&chat).unwrap();
    insta::assert_json_snapshot!(
        "request.responses_to_anthropic",
        json(&anthropic::chat_body(&req, "claude-sonnet-4-5").unwrap())
    );
    insta::assert_json_snapshot!("request.responses_to_gemini", json(&gemini::chat_body(&req).unwrap()));
}

/// Structured output and reasoning effort, mapped to each target that has them and
/// refused with a 400 naming them by the one that has not (Bedrock's Converse).
#[test]
fn structured_output_and_reasoning_per_target() {
    let req = serde_json::json!({"model": "alias", "max_tokens": 8000, "reasoning_effort": "medium",
        "messages": [{"role": "user", "content": "Lisbon"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true, "schema": {
            "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false}}}});
    let req = ChatRequest::parse(req.to_string().as_bytes()).unwrap();
    let claude = json(&anthropic::chat_body(&req, "claude-sonnet-4-5").unwrap());
    insta::assert_json_snapshot!("request.structured_to_anthropic", claude);
    insta::assert_json_snapshot!("request.structured_to_gemini", json(&gemini::chat_body(&req).unwrap()));
    insta::assert_json_snapshot!("request.structured_to_ollama", json(&ollama::chat_body(&req, "llama3.2").unwrap()));
    let refused = bedrock::chat_body(&req).unwrap_err().to_string();
    assert!(refused.contains("response_format"), "{refused}");
    // and from Anthropic's side: `output_config.format` and `thinking` as OpenAI's fields
    let messages = serde_json::json!({"model": "alias", "max_tokens": 8000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "messages": [{"role": "user", "content": "Lisbon"}]});
    let openai = json(&from_anthropic::request(messages.to_string().as_bytes()).unwrap());
    insta::assert_json_snapshot!("request.anthropic_structured_to_openai", openai);
    assert!(from_anthropic::untranslated_fields(messages.to_string().as_bytes()).is_empty());
}

/// Every provider's stream as OpenAI SSE bytes.
fn streams() -> Vec<(&'static str, Vec<Bytes>)> {
    let mut out = vec![("openai", vec![Bytes::from_static(fixture("openai_stream.sse").as_bytes())])];

    let mut p = SseParser::new();
    let mut t = anthropic::StreamTranslator::new(CREATED);
    let evs = p.feed(fixture("anthropic_stream.sse").as_bytes()).unwrap();
    out.push(("anthropic", evs.iter().flat_map(|e| t.on_event(e).unwrap()).collect()));

    let mut p = SseParser::new();
    let mut t = gemini::StreamTranslator::new("g1".into(), "gemini-2.5-flash".into(), CREATED);
    let evs = p.feed(fixture("gemini_stream.sse").as_bytes()).unwrap();
    let mut bytes: Vec<Bytes> = evs.iter().flat_map(|e| t.on_event(e).unwrap()).collect();
    bytes.extend(t.finish());
    out.push(("gemini", bytes));

    let mut t = ollama::StreamTranslator::new("o1".into(), CREATED);
    out.push(("ollama", t.feed(fixture("ollama_stream.ndjson").as_bytes()).unwrap()));
    out
}

#[test]
fn streams_per_source_format() {
    for (provider, sse) in streams() {
        let events = openai_events(&sse);
        assert_eq!(events.last(), Some(&Value::String("[DONE]".into())), "{provider} ends with [DONE]");
        insta::assert_json_snapshot!(format!("stream.{provider}_for_openai"), events);
        insta::assert_json_snapshot!(format!("stream.{provider}_for_anthropic"), as_anthropic_stream(&sse));
        insta::assert_json_snapshot!(format!("stream.{provider}_for_responses"), as_responses_stream(&sse));
    }
}

/// Prompt-cache breakpoints an OpenAI-format client sets (`cache_control` on a system or
/// user part, a message or a tool) reach an Anthropic target on the blocks they mark.
#[test]
fn cache_breakpoints_to_anthropic() {
    let req = serde_json::json!({"model": "alias", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "a long system prompt", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "a long document", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"role": "user", "content": [{"type": "text", "text": "the question"}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "cache_control": {"type": "ephemeral"}}]});
    let req = ChatRequest::parse(req.to_string().as_bytes()).unwrap();
    insta::assert_json_snapshot!(
        "request.breakpoints_to_anthropic",
        json(&anthropic::chat_body(&req, "claude-sonnet-4-5").unwrap())
    );
}

/// Web search across formats: a Responses `web_search` tool (chat's `web_search_options`)
/// as Anthropic's server tool, and Anthropic's answer (the search blocks, then text with
/// `citations`, shaped as in Anthropic's documentation) as what each client gets.
#[test]
fn web_search_per_format() {
    let req = serde_json::json!({"model": "alias", "input": "Lisbon weather",
        "tools": [{"type": "web_search", "user_location": {"type": "approximate", "city": "Lisbon", "country": "PT"}}]});
    let Value::Object(req) = req else { panic!("an object") };
    let chat = ChatRequest::parse(&from_responses::request(&req, &[]).unwrap()).unwrap();
    insta::assert_json_snapshot!(
        "request.web_search_to_anthropic",
        json(&anthropic::chat_body(&chat, "claude-sonnet-4-5").unwrap())
    );
    let answer = serde_json::json!({"id": "msg_ws", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "I'll search for that."},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "Lisbon weather"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [{"type": "web_search_result",
                "url": "https://weather.example/lisbon", "title": "Lisbon forecast", "encrypted_content": "EqkC", "page_age": "1 hour ago"}]},
            {"type": "text", "text": "It is sunny, 24 degrees.", "citations": [{"type": "web_search_result_location",
                "url": "https://weather.example/lisbon", "title": "Lisbon forecast", "encrypted_index": "Eo8B",
                "cited_text": "Sunny, high of 24"}]}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 900, "output_tokens": 40, "server_tool_use": {"web_search_requests": 1}}});
    let completion = anthropic::completion(answer.to_string().as_bytes(), CREATED).unwrap();
    insta::assert_json_snapshot!("response.anthropic_search_for_openai", json(&completion));
    let echo = from_responses::Echo::of(&serde_json::Map::new());
    let response = from_responses::response(&completion, "resp_golden", CREATED, &echo).unwrap();
    insta::assert_json_snapshot!("response.anthropic_search_for_responses", response);
    insta::assert_json_snapshot!(
        "response.anthropic_search_for_anthropic",
        json(&from_anthropic::message(&completion).unwrap())
    );
}
