//! What `switchyard mock-upstream` answers in the providers' own formats (Anthropic's
//! Messages, Ollama's native API, Gemini's, Bedrock's Converse), deterministically, built
//! on the same reply words as the OpenAI answers: the fixtures of the translators' tests.

use serde_json::{json, Value};

use super::{
    digest_hex, finish_reason, last_user_text, mock_tokens, prompt_tokens, reply_words, sample, vector, DEFAULT_DIMS,
};

/// A tool call the mock makes: when the request offers tools and the conversation has
/// no tool result yet, it calls the tool `tool_choice` names (else the first) with an
/// input made from its `input_schema` (strings are the last user text), unless
/// `tool_choice` is `none`.
fn anthropic_tool_call(req: &Value) -> Option<(String, String, Value)> {
    if req.pointer("/tool_choice/type").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let named = req.pointer("/tool_choice/name").and_then(Value::as_str);
    // client tools only: a server tool (`type: web_search_...`) is the provider's to run
    let tools = req.get("tools")?.as_array()?.iter().filter(|t| t.get("type").is_none_or(|ty| ty == "custom"));
    let chosen = tools.clone().find(|t| named.is_none_or(|n| t.get("name").and_then(Value::as_str) == Some(n)))?;
    let tool = chosen.get("name")?.as_str()?.to_string();
    let messages = req.get("messages")?.as_array()?;
    let answered = messages.iter().any(|m| {
        m.get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| blocks.iter().any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")))
    });
    if answered {
        return None;
    }
    let schema = chosen.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
    let id = format!("toolu_mock_{}", digest_hex(req.to_string().as_bytes()));
    Some((id, tool, sample(&schema, &last_user_text(req), 0)))
}

/// What an Anthropic answer says: JSON that matches `output_config.format`'s schema
/// when the request asks for structured output (as one piece), else the reply words.
fn anthropic_words(req: &Value) -> Vec<String> {
    match req.pointer("/output_config/format/schema") {
        Some(schema) => vec![sample(schema, &last_user_text(req), 0).to_string()],
        None => reply_words(req),
    }
}

/// The blocks of a web search the mock runs when the request offers Anthropic's web search
/// server tool: the search call, its result, and the citation of the answer's text.
fn anthropic_search(req: &Value) -> Option<(Value, Value, Value)> {
    let tools = req.get("tools")?.as_array()?;
    tools.iter().find(|t| t.get("type").and_then(Value::as_str).is_some_and(|ty| ty.starts_with("web_search_")))?;
    let query = last_user_text(req);
    let (url, title) = super::search_source(&query);
    let id = format!("srvtoolu_mock_{}", digest_hex(query.as_bytes()));
    let call = json!({"type": "server_tool_use", "id": id, "name": "web_search", "input": {"query": query}});
    let result = json!({"type": "web_search_tool_result", "tool_use_id": id,
        "content": [{"type": "web_search_result", "url": url, "title": title, "encrypted_content": "e", "page_age": null}]});
    let citation = json!({"type": "web_search_result_location", "url": url, "title": title, "cited_text": query,
        "encrypted_index": "i"});
    Some((call, result, citation))
}

/// Usage as Anthropic reports it: a request with a cache breakpoint writes its prompt to
/// the cache (the mock keeps no cache, so it never reads one).
fn anthropic_usage(req: &Value, output: u64) -> Value {
    let prompt = prompt_tokens(req);
    let written = if req.to_string().contains("\"cache_control\"") { prompt } else { 0 };
    json!({"input_tokens": prompt - written, "output_tokens": output, "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": written})
}

/// A Messages API answer (`type: message`) for an Anthropic request.
pub fn anthropic_message(req: &Value, model: &str) -> Value {
    let id = format!("msg_mock_{}", digest_hex(req.to_string().as_bytes()));
    if let Some((tool_id, name, input)) = anthropic_tool_call(req) {
        return json!({"id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": tool_id, "name": name, "input": input}],
            "stop_reason": "tool_use", "stop_sequence": null, "usage": anthropic_usage(req, 12)});
    }
    let words = anthropic_words(req);
    let stop = if finish_reason(req, &words) == "length" { "max_tokens" } else { "end_turn" };
    let mut content = vec![json!({"type": "text", "text": words.join(" ")})];
    if let Some((call, result, citation)) = anthropic_search(req) {
        content[0]["citations"] = json!([citation]);
        content.splice(0..0, [call, result]);
    }
    json!({"id": id, "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": stop, "stop_sequence": null, "usage": anthropic_usage(req, words.len() as u64)})
}

/// The Messages API SSE events (name, data) of a streamed answer: text one word a
/// delta, or a tool call whose input JSON arrives in pieces of 5 characters.
pub fn anthropic_events(req: &Value, model: &str) -> Vec<(&'static str, Value)> {
    let id = format!("msg_mock_{}", digest_hex(req.to_string().as_bytes()));
    let mut start = json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
        "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": anthropic_usage(req, 1)}});
    if let Some(m) = start.get_mut("message") {
        m["usage"]["output_tokens"] = json!(1);
    }
    let mut out = vec![("message_start", start), ("ping", json!({"type": "ping"}))];
    let (stop, output) = if let Some((tool_id, name, input)) = anthropic_tool_call(req) {
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
        ));
        let text = input.to_string();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(5) {
            let part: String = piece.iter().collect();
            out.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
        ("tool_use", 12)
    } else {
        let words = anthropic_words(req);
        // a web search first: its call and result blocks, then the text cites it
        let search = anthropic_search(req);
        let mut index = 0;
        if let Some((call, result, _)) = &search {
            for block in [call, result] {
                out.push((
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": block}),
                ));
                out.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
                index += 1;
            }
        }
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "text", "text": ""}}),
        ));
        if let Some((_, _, citation)) = &search {
            out.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "citations_delta", "citation": citation}}),
            ));
        }
        for (i, w) in words.iter().enumerate() {
            let text = if i == 0 { w.clone() } else { format!(" {w}") };
            out.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        if index > 0 {
            out.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
            out.push((
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": words.len()}}),
            ));
            out.push(("message_stop", json!({"type": "message_stop"})));
            return out;
        }
        let stop = if finish_reason(req, &words) == "length" { "max_tokens" } else { "end_turn" };
        (stop, words.len() as u64)
    };
    out.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    out.push((
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}}),
    ));
    out.push(("message_stop", json!({"type": "message_stop"})));
    out
}

/// An Ollama `/api/chat` request seen as an OpenAI one (for the shared reply logic):
/// `options.num_predict` is its `max_tokens`.
fn ollama_as_openai(req: &Value) -> Value {
    let mut v = json!({"messages": req.get("messages").cloned().unwrap_or(Value::Null)});
    if let Some(n) = req.pointer("/options/num_predict") {
        v["max_tokens"] = n.clone();
    }
    v
}

/// The tool call Ollama's mock makes: the first offered tool, until a tool answered.
fn ollama_tool_call(req: &Value, words: &[String]) -> Option<Value> {
    let name = req.get("tools")?.as_array()?.first()?.pointer("/function/name")?.clone();
    let answered = req.get("messages")?.as_array()?.iter().any(|m| m.get("role") == Some(&json!("tool")));
    if answered {
        return None;
    }
    let query: Vec<&str> = words.iter().skip(6).map(String::as_str).collect();
    Some(json!([{"function": {"name": name, "arguments": {"query": query.join(" ")}}}]))
}

/// The NDJSON lines of an Ollama `/api/chat` answer: one a word, then the `done` line
/// with the token counts (a non-streamed answer is the lines folded into one).
pub fn ollama_lines(req: &Value, model: &str) -> Vec<Value> {
    let as_openai = ollama_as_openai(req);
    let words = reply_words(&as_openai);
    let created = "2026-01-01T00:00:00Z";
    let line = |content: &str| {
        json!({"model": model, "created_at": created,
        "message": {"role": "assistant", "content": content}, "done": false})
    };
    let mut out = Vec::new();
    let calls = ollama_tool_call(req, &words);
    if calls.is_none() {
        for (i, w) in words.iter().enumerate() {
            out.push(line(&if i == 0 { w.clone() } else { format!(" {w}") }));
        }
    }
    let mut last = json!({"model": model, "created_at": created, "message": {"role": "assistant", "content": ""},
        "done": true, "done_reason": if calls.is_none() { finish_reason(&as_openai, &words) } else { "stop" },
        "prompt_eval_count": prompt_tokens(&as_openai), "eval_count": words.len()});
    if let Some(c) = calls {
        last["message"]["tool_calls"] = c;
    }
    out.push(last);
    out
}

/// A non-streamed Ollama `/api/chat` answer.
pub fn ollama_chat(req: &Value, model: &str) -> Value {
    let lines = ollama_lines(req, model);
    let text: String = lines.iter().filter_map(|l| l.pointer("/message/content").and_then(Value::as_str)).collect();
    let mut last = lines.last().cloned().unwrap_or(Value::Null);
    last["message"]["content"] = json!(text);
    last
}

/// An Ollama `/api/embed` answer.
pub fn ollama_embed(req: &Value, model: &str) -> Result<Value, String> {
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            a.iter().map(|v| v.as_str().map(str::to_string).ok_or("input must be strings")).collect::<Result<_, _>>()?
        }
        _ => return Err("input is required".into()),
    };
    let dims = req.get("dimensions").and_then(Value::as_u64).map_or(DEFAULT_DIMS, |d| d.clamp(1, 8192) as usize);
    let vectors: Vec<Value> = inputs.iter().map(|t| json!(vector(t, dims))).collect();
    let tokens: u64 = inputs.iter().map(|t| mock_tokens(t).max(1)).sum();
    Ok(json!({"model": model, "embeddings": vectors, "prompt_eval_count": tokens}))
}

/// A provider's turns (`list` of objects whose `parts` hold `{"text"}` blocks) seen as
/// an OpenAI request with `max_tokens` from `max_at` (for the shared reply logic).
fn turns_as_openai(req: &Value, list: &str, parts: &str, max_at: &str, role: impl Fn(&Value) -> Value) -> Value {
    let messages: Vec<Value> = req
        .get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|turn| {
            let text: Vec<&str> = turn
                .get(parts)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|b| b.get("text")?.as_str())
                .collect();
            json!({"role": role(turn), "content": text.join(" ")})
        })
        .collect();
    let mut v = json!({"messages": messages});
    if let Some(n) = req.pointer(max_at) {
        v["max_tokens"] = n.clone();
    }
    v
}

/// A Gemini request seen as an OpenAI one.
fn gemini_as_openai(req: &Value) -> Value {
    turns_as_openai(req, "contents", "parts", "/generationConfig/maxOutputTokens", |c| {
        json!(if c.get("role") == Some(&json!("model")) { "assistant" } else { "user" })
    })
}

/// The streamed responses of a Gemini answer: one a word, the last with the finish
/// reason and the usage; a function call when tools are offered and none has been
/// answered; a safety block when the prompt says `unsafe-please`.
pub fn gemini_chunks(req: &Value, model: &str) -> Vec<Value> {
    let as_openai = gemini_as_openai(req);
    let words = reply_words(&as_openai);
    let prompt = prompt_tokens(&as_openai);
    if as_openai.to_string().contains("unsafe-please") {
        return vec![json!({"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt}, "modelVersion": model})];
    }
    let usage = |n: u64| json!({"promptTokenCount": prompt, "candidatesTokenCount": n, "totalTokenCount": prompt + n});
    let tool = req.pointer("/tools/0/functionDeclarations/0/name").cloned();
    let answered = req.get("contents").and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("parts").and_then(Value::as_array).into_iter().flatten().any(|p| p.get("functionResponse").is_some())
    });
    if let (Some(name), false) = (tool, answered) {
        let query: Vec<&str> = words.iter().skip(6).map(String::as_str).collect();
        return vec![json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall":
            {"name": name, "args": {"query": query.join(" ")}}}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage(5), "modelVersion": model})];
    }
    let reason = if finish_reason(&as_openai, &words) == "length" { "MAX_TOKENS" } else { "STOP" };
    let n = words.len();
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let text = if i == 0 { w.clone() } else { format!(" {w}") };
            let mut c = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
                "modelVersion": model});
            if i + 1 == n {
                c["candidates"][0]["finishReason"] = json!(reason);
                c["usageMetadata"] = usage(n as u64);
            }
            c
        })
        .collect()
}

/// A non-streamed Gemini answer: the chunks folded into one.
pub fn gemini_response(req: &Value, model: &str) -> Value {
    let chunks = gemini_chunks(req, model);
    let mut last = chunks.last().cloned().unwrap_or(Value::Null);
    let text: String =
        chunks.iter().filter_map(|c| c.pointer("/candidates/0/content/parts/0/text").and_then(Value::as_str)).collect();
    if !text.is_empty() {
        last["candidates"][0]["content"]["parts"] = json!([{"text": text}]);
    }
    last
}

/// A Gemini `batchEmbedContents` answer.
pub fn gemini_embed(req: &Value) -> Result<Value, String> {
    let requests = req.get("requests").and_then(Value::as_array).ok_or("requests is required")?;
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|r| {
            let text = r.pointer("/content/parts/0/text").and_then(Value::as_str).unwrap_or_default();
            let dims = r
                .get("outputDimensionality")
                .and_then(Value::as_u64)
                .map_or(DEFAULT_DIMS, |d| d.clamp(1, 8192) as usize);
            json!({"values": vector(text, dims)})
        })
        .collect();
    Ok(json!({"embeddings": embeddings}))
}

/// A Converse request seen as an OpenAI one.
fn bedrock_as_openai(req: &Value) -> Value {
    turns_as_openai(req, "messages", "content", "/inferenceConfig/maxTokens", |m| {
        m.get("role").cloned().unwrap_or(Value::Null)
    })
}

/// The ConverseStream events (`:event-type`, payload) of a Bedrock answer: text one word
/// a delta, or a tool use whose input arrives in pieces of 5 characters (when tools are
/// offered and none has been answered); `metadata` with the usage last.
pub fn bedrock_events(req: &Value) -> Vec<(&'static str, Value)> {
    let as_openai = bedrock_as_openai(req);
    let words = reply_words(&as_openai);
    let prompt = prompt_tokens(&as_openai);
    let tool = req.pointer("/toolConfig/tools/0/toolSpec/name").cloned();
    let answered = req.get("messages").and_then(Value::as_array).into_iter().flatten().any(|m| {
        m.get("content").and_then(Value::as_array).into_iter().flatten().any(|b| b.get("toolResult").is_some())
    });
    let mut out = vec![("messageStart", json!({"role": "assistant"}))];
    let (stop, output) = match (tool, answered) {
        (Some(name), false) => {
            let query: Vec<&str> = words.iter().skip(6).map(String::as_str).collect();
            let id = format!("tooluse_mock_{}", digest_hex(req.to_string().as_bytes()));
            out.push((
                "contentBlockStart",
                json!({"start": {"toolUse": {"toolUseId": id, "name": name}}, "contentBlockIndex": 0}),
            ));
            let input = json!({"query": query.join(" ")}).to_string();
            let chars: Vec<char> = input.chars().collect();
            for piece in chars.chunks(5) {
                let part: String = piece.iter().collect();
                out.push(("contentBlockDelta", json!({"delta": {"toolUse": {"input": part}}, "contentBlockIndex": 0})));
            }
            ("tool_use", 9)
        }
        _ => {
            for (i, w) in words.iter().enumerate() {
                let text = if i == 0 { w.clone() } else { format!(" {w}") };
                out.push(("contentBlockDelta", json!({"delta": {"text": text}, "contentBlockIndex": 0})));
            }
            let stop = if finish_reason(&as_openai, &words) == "length" { "max_tokens" } else { "end_turn" };
            (stop, words.len() as u64)
        }
    };
    out.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
    out.push(("messageStop", json!({"stopReason": stop})));
    out.push((
        "metadata",
        json!({"usage": {"inputTokens": prompt, "outputTokens": output, "totalTokens": prompt + output},
        "metrics": {"latencyMs": 1}}),
    ));
    out
}

/// A non-streamed Converse answer: the events folded into one.
pub fn bedrock_response(req: &Value) -> Value {
    let events = bedrock_events(req);
    let mut text = String::new();
    let mut tool: Option<Value> = None;
    let mut input = String::new();
    let (mut stop, mut usage) = (Value::Null, Value::Null);
    for (kind, v) in &events {
        match *kind {
            "contentBlockStart" => tool = v.pointer("/start/toolUse").cloned(),
            "contentBlockDelta" => {
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    text.push_str(t);
                }
                if let Some(p) = v.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                    input.push_str(p);
                }
            }
            "messageStop" => stop = v["stopReason"].clone(),
            "metadata" => usage = v["usage"].clone(),
            _ => {}
        }
    }
    let content = match tool {
        Some(mut t) => {
            t["input"] = serde_json::from_str(&input).unwrap_or(Value::Null);
            json!([{"toolUse": t}])
        }
        None => json!([{"text": text}]),
    };
    json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop, "usage": usage,
        "metrics": {"latencyMs": 1}})
}

/// The chat request a Responses request stands for (hosted tools left out: the mock
/// answers function calls only), and the fields its Response echoes.
fn responses_as_chat(req: &Value) -> Result<(Value, super::super::from_responses::Echo), String> {
    use super::super::from_responses::{request_for_any, Echo};
    let Value::Object(mut r) = req.clone() else { return Err("the body must be a JSON object".into()) };
    let echo = Echo::of(&r);
    if let Some(Value::Array(tools)) = r.get_mut("tools") {
        tools.retain(|t| t.get("type") == Some(&json!("function")));
    }
    r.remove("previous_response_id");
    let (chat, _) = request_for_any(&r, &[]).map_err(|e| e.to_string())?;
    let mut chat: Value = serde_json::from_slice(&chat).map_err(|e| e.to_string())?;
    chat["stream_options"] = json!({"include_usage": true});
    Ok((chat, echo))
}

/// What OpenAI's Responses endpoint answers (`kind = "openai"`): the chat reply to the
/// same conversation as a Response whose id starts `resp_mock_` (the gateway makes its
/// own ids when it translates), with a reasoning item first and a `web_search_call`
/// item when a `web_search` tool is offered: what only a request passed through whole
/// gets back.
pub fn responses_answer(req: &Value, created: u64) -> Result<Value, String> {
    use super::super::from_responses::response;
    let (chat, echo) = responses_as_chat(req)?;
    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock");
    let completion = super::chat_completion(&chat, model, created);
    let id = format!("resp_mock_{}", digest_hex(req.to_string().as_bytes()));
    let mut r = response(completion.to_string().as_bytes(), &id, created, &echo).map_err(|e| e.to_string())?;
    let mut extra = vec![json!({"type": "reasoning", "id": format!("rs_{id}"), "summary": []})];
    let tools = req.get("tools").and_then(Value::as_array).into_iter().flatten();
    if tools.clone().any(|t| t.get("type") == Some(&json!("web_search"))) {
        extra.push(json!({"type": "web_search_call", "id": format!("ws_{id}"), "status": "completed",
            "action": {"type": "search", "query": last_user_text(&chat)}}));
    }
    if let Some(Value::Array(output)) = r.get_mut("output") {
        output.splice(0..0, extra);
    }
    r["usage"]["output_tokens_details"]["reasoning_tokens"] = json!(2);
    Ok(r)
}

/// The Responses events of a streamed answer (named SSE events, as OpenAI sends them).
pub fn responses_events(req: &Value, created: u64) -> Result<Vec<bytes::Bytes>, String> {
    use super::super::from_responses::EventTranslator;
    let (chat, echo) = responses_as_chat(req)?;
    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock");
    let id = format!("resp_mock_{}", digest_hex(req.to_string().as_bytes()));
    let mut tr = EventTranslator::new(id, created, echo);
    let mut out = Vec::new();
    let chunks = super::chat_chunks(&chat, model, created);
    let events = chunks.iter().map(|c| c.to_string()).chain(std::iter::once("[DONE]".to_string()));
    for data in events {
        out.extend(tr.on_event(&super::super::sse::SseEvent { event: None, data }));
    }
    Ok(out)
}

/// Anthropic's `count_tokens` answer for a Messages request (the mock's own count).
pub fn anthropic_count(req: &Value) -> Value {
    json!({"input_tokens": prompt_tokens(req)})
}
