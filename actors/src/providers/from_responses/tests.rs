use serde_json::{json, Value};

use super::*;
use crate::providers::sse::{SseEvent, SseParser};

fn chat(req: Value, prior: &[Value]) -> Result<Value, GatewayError> {
    let Value::Object(req) = req else { panic!("not an object") };
    Ok(serde_json::from_slice(&request(&req, prior)?).unwrap())
}

fn message_of(e: GatewayError) -> String {
    match e {
        GatewayError::BadRequest(m) => m,
        other => panic!("not a 400: {other:?}"),
    }
}

#[test]
fn a_string_input_with_instructions_becomes_system_and_user_messages() {
    let c = chat(
        json!({"model": "m", "instructions": "be brief", "input": "hi", "max_output_tokens": 50,
        "temperature": 0.2, "reasoning": {"effort": "low"}, "store": false, "metadata": {"a": "b"}}),
        &[],
    )
    .unwrap();
    assert_eq!(c["messages"], json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]));
    assert_eq!(c["max_tokens"], 50);
    assert_eq!(c["temperature"], 0.2);
    assert_eq!(c["reasoning_effort"], "low");
    assert!(c.get("store").is_none() && c.get("metadata").is_none(), "{c}");
}

#[test]
fn items_map_to_messages_tool_calls_and_tool_results() {
    let input = json!([
        {"role": "developer", "content": "dev"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{\"x\":1}"},
        {"type": "function_call", "call_id": "call_2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "one"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "two"}]},
    ]);
    let c = chat(json!({"model": "m", "input": input}), &[]).unwrap();
    let m = c["messages"].as_array().unwrap();
    assert_eq!(m.len(), 5, "{c}");
    assert_eq!(m[0], json!({"role": "developer", "content": "dev"}));
    assert_eq!(
        m[1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}})
    );
    assert_eq!(m[2]["content"], "calling");
    assert_eq!(m[2]["tool_calls"][0]["function"], json!({"name": "f", "arguments": "{\"x\":1}"}));
    assert_eq!(m[2]["tool_calls"][1]["id"], "call_2");
    assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "call_1", "content": "one"}));
    assert_eq!(m[4]["content"], "two");
}

#[test]
fn prior_items_come_before_the_input_and_instructions_lead() {
    let prior = [
        json!({"type": "message", "role": "user", "content": "first"}),
        message_item("msg_1".into(), "answer", "completed"),
    ];
    let c = chat(json!({"model": "m", "instructions": "sys", "input": "second"}), &prior).unwrap();
    let roles: Vec<_> = c["messages"].as_array().unwrap().iter().map(|m| m["content"].clone()).collect();
    assert_eq!(roles, vec![json!("sys"), json!("first"), json!("answer"), json!("second")]);
}

#[test]
fn tools_tool_choice_and_text_format_map_to_chat() {
    let c = chat(json!({"model": "m", "input": "x",
        "tools": [{"type": "function", "name": "get", "description": "d", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"}}), &[])
    .unwrap();
    assert_eq!(
        c["tools"][0],
        json!({"type": "function", "function": {"name": "get", "description": "d",
        "parameters": {"type": "object"}, "strict": true}})
    );
    assert_eq!(c["tool_choice"], json!({"type": "function", "function": {"name": "get"}}));
    assert_eq!(
        c["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}})
    );
    assert_eq!(c["verbosity"], "low");
    let c = chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}), &[]).unwrap();
    assert_eq!(c["response_format"], json!({"type": "json_object"}));
    let c = chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "text"}}}), &[]).unwrap();
    assert!(c.get("response_format").is_none());
}

#[test]
fn web_search_is_carried_and_its_sources_come_back_as_annotations() {
    let c = chat(
        json!({"model": "m", "input": "news", "tools": [{"type": "web_search", "search_context_size": "low"},
        {"type": "function", "name": "f"}]}),
        &[],
    )
    .unwrap();
    assert_eq!(c["web_search_options"], json!({"search_context_size": "low"}));
    assert_eq!(c["tools"].as_array().unwrap().len(), 1);
    let completion = json!({"choices": [{"finish_reason": "stop", "message": {"content": "Lisbon is sunny",
        "annotations": [{"type": "url_citation", "url_citation": {"url": "https://w.pt", "title": "W", "start_index": 0, "end_index": 6}}]}}]});
    let r = response(completion.to_string().as_bytes(), "resp_w", 1, &Echo::default()).unwrap();
    assert_eq!(r["output"][0]["type"], "web_search_call");
    assert_eq!(
        r["output"][1]["content"][0]["annotations"],
        json!([{"type": "url_citation", "url": "https://w.pt",
        "title": "W", "start_index": 0, "end_index": 6}])
    );
    // streamed: an annotation event, and the annotation in the finished item
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"content": "Lisbon"}}]}),
        json!({"choices": [{"index": 0, "delta": {"annotations": completion["choices"][0]["message"]["annotations"]}, "finish_reason": "stop"}]}),
    ];
    let (events, tr) = run(&chunks, "data: [DONE]\n\n");
    assert!(events.iter().any(|e| e["type"] == "response.output_text.annotation.added"), "{events:?}");
    assert_eq!(tr.finished().unwrap()["output"][0]["content"][0]["annotations"][0]["url"], "https://w.pt");
}

#[test]
fn what_a_chat_target_cannot_do_is_a_400_naming_it() {
    let cases = [
        (json!({"model": "m", "input": "x", "tools": [{"type": "file_search"}]}), "file_search"),
        (json!({"model": "m", "input": "x", "tools": [{"type": "code_interpreter"}]}), "code_interpreter"),
        (json!({"model": "m", "input": [{"type": "input_image", "file_id": "f"}]}), "input_image"),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
            "file_id",
        ),
        (json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}), "item_reference"),
        (json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}), "role"),
        (json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}), "call_id"),
        (json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}), "schema"),
        (json!({"model": "m", "instructions": "only"}), "input"),
        (json!({"input": "x"}), "model"),
    ];
    for (req, needle) in cases {
        let m = message_of(chat(req.clone(), &[]).unwrap_err());
        assert!(m.contains(needle), "{req}: {m}");
    }
    for (body, needle) in [
        (&br#"{"model":"m","input":"x","background":true}"#[..], "background"),
        (br#"{"model":"m","input":5}"#, "input"),
        (br#"{"model":"m","input":"x","temperature":3}"#, "temperature"),
        (br#"[1]"#, "object"),
    ] {
        let m = message_of(parse(body).unwrap_err());
        assert!(m.contains(needle), "{m}");
    }
}

#[test]
fn a_completion_becomes_a_response_with_items_usage_and_status() {
    let completion = json!({"id": "chatcmpl-1", "model": "up", "choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": "let me check",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 6}, "completion_tokens_details": {"reasoning_tokens": 2}}});
    let echo = Echo::of(json!({"model": "alias", "input": "x", "store": false}).as_object().unwrap());
    let r = response(completion.to_string().as_bytes(), "resp_abc", 7, &echo).unwrap();
    assert_eq!(r["id"], "resp_abc");
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["store"], false);
    assert_eq!(r["output"][0]["content"][0]["text"], "let me check");
    assert_eq!(r["output"][0]["id"], "msg_abc");
    assert_eq!(
        r["output"][1],
        json!({"id": "fc_abc", "type": "function_call", "status": "completed",
        "call_id": "call_9", "name": "get", "arguments": "{\"q\":1}"})
    );
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 0}, "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 14})
    );
    let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "abc"}}]});
    let r = response(cut.to_string().as_bytes(), "resp_x", 7, &echo).unwrap();
    assert_eq!(
        (r["status"].clone(), r["incomplete_details"].clone()),
        (json!("incomplete"), json!({"reason": "max_output_tokens"}))
    );
    assert_eq!(output_as_input(&r).len(), 1);
}

fn run(chunks: &[Value], tail: &str) -> (Vec<Value>, EventTranslator) {
    let mut tr = EventTranslator::new("resp_s".into(), 1, Echo::of(&Map::new()));
    let mut sse = String::new();
    for c in chunks {
        sse.push_str(&format!("data: {c}\n\n"));
    }
    sse.push_str(tail);
    let mut events = Vec::new();
    for ev in SseParser::new().feed(sse.as_bytes()).unwrap() {
        for b in tr.on_event(&ev) {
            for out in SseParser::new().feed(&b).unwrap() {
                let v: Value = serde_json::from_str(&out.data).unwrap();
                assert_eq!(out.event.as_deref(), v["type"].as_str());
                events.push(v);
            }
        }
    }
    (events, tr)
}

#[test]
fn a_stream_becomes_the_documented_event_sequence() {
    let d = |delta: Value| json!({"id": "c", "model": "up", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    let chunks = [
        d(json!({"role": "assistant", "content": ""})),
        d(json!({"content": "Hel"})),
        d(json!({"content": "lo"})),
        d(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        ),
        d(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\""}}]})),
        d(json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]})),
        json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}),
    ];
    let (events, tr) = run(&chunks, "data: [DONE]\n\n");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[6]["text"], "Hello");
    assert_eq!(events[12]["arguments"], "{\"a\":1}");
    let done = tr.finished().unwrap();
    assert_eq!(done["model"], "up");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][1]["call_id"], "call_1");
    assert_eq!(done["usage"]["total_tokens"], 8);
    assert_eq!(&events[14]["response"], done);
}

#[test]
fn a_failed_stream_ends_with_an_error_and_response_failed() {
    let chunk = json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}}]});
    let (events, tr) = run(&[chunk], "data: {\"error\":{\"message\":\"cut\",\"code\":\"upstream_error\"}}\n\n");
    let last: Vec<&str> = events.iter().rev().take(2).map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(last, ["response.failed", "error"]);
    assert_eq!(tr.finished().unwrap()["error"], json!({"code": "upstream_error", "message": "cut"}));
    assert_eq!(tr.finished().unwrap()["status"], "failed");
    // an unreadable event is a failure too; nothing follows the end
    let (events, mut tr) = run(&[], "data: {nope\n\n");
    assert_eq!(events.last().unwrap()["type"], "response.failed");
    assert!(tr.on_event(&SseEvent { event: None, data: "[DONE]".into() }).is_empty());
}

#[test]
fn a_length_cut_stream_is_incomplete() {
    let chunks = [json!({"choices": [{"index": 0, "delta": {"content": "ab"}, "finish_reason": "length"}]})];
    let (events, tr) = run(&chunks, "data: [DONE]\n\n");
    assert_eq!(events.last().unwrap()["type"], "response.incomplete");
    assert_eq!(tr.finished().unwrap()["incomplete_details"]["reason"], "max_output_tokens");
}
