//! Web search across formats: the one server tool every format has. The engine's chat
//! view carries it as OpenAI's `web_search_options` (what OpenAI's search models take);
//! Responses' `web_search` tool and Anthropic's `web_search_*` server tool become it, and
//! an Anthropic target gets its own server tool back. The answer's sources come back as
//! chat `annotations` (`url_citation` with the span of text they support): Anthropic's
//! text-block `citations` become them, and they become Responses' `url_citation`
//! annotations and Anthropic's `web_search_result_location` citations for clients of
//! those formats. A target with no web search (Ollama, Bedrock, Gemini through this
//! gateway) refuses it with a 400 naming it.

use serde_json::{json, Map, Value};

/// Anthropic's web search server tool version the gateway sends.
pub const ANTHROPIC_TOOL: &str = "web_search_20250305";

/// Chat's `user_location` (`{type: approximate, approximate: {city, region, country,
/// timezone}}`) as the flat form Responses and Anthropic use, and back.
fn flat_location(chat: &Value) -> Option<Value> {
    let a = chat.get("approximate")?.as_object()?;
    let mut out = Map::new();
    out.insert("type".into(), json!("approximate"));
    for k in ["city", "region", "country", "timezone"] {
        if let Some(v) = a.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    Some(Value::Object(out))
}

fn nested_location(flat: &Value) -> Value {
    let mut a = Map::new();
    for k in ["city", "region", "country", "timezone"] {
        if let Some(v) = flat.get(k).filter(|v| !v.is_null()) {
            a.insert(k.into(), v.clone());
        }
    }
    json!({"type": "approximate", "approximate": a})
}

/// Whether a Responses tool is web search.
pub fn is_responses_tool(t: &Value) -> bool {
    matches!(t.get("type").and_then(Value::as_str), Some("web_search" | "web_search_preview"))
}

/// A Responses `web_search` tool as chat's `web_search_options`.
pub fn options_from_responses_tool(t: &Value) -> Value {
    let mut o = Map::new();
    if let Some(size) = t.get("search_context_size").filter(|v| !v.is_null()) {
        o.insert("search_context_size".into(), size.clone());
    }
    if let Some(loc) = t.get("user_location").filter(|v| v.is_object()) {
        o.insert("user_location".into(), nested_location(loc));
    }
    Value::Object(o)
}

/// Whether an Anthropic tool is its web search server tool.
pub fn is_anthropic_tool(t: &Value) -> bool {
    t.get("type").and_then(Value::as_str).is_some_and(|ty| ty.starts_with("web_search_"))
}

/// Anthropic's web search server tool as chat's `web_search_options`.
pub fn options_from_anthropic_tool(t: &Value) -> Value {
    let mut o = Map::new();
    if let Some(loc) = t.get("user_location").filter(|v| v.is_object()) {
        o.insert("user_location".into(), nested_location(loc));
    }
    Value::Object(o)
}

/// Chat's `web_search_options` as Anthropic's web search server tool.
pub fn anthropic_tool(options: &Value) -> Value {
    let mut tool = json!({"type": ANTHROPIC_TOOL, "name": "web_search"});
    if let Some(loc) = options.get("user_location").and_then(flat_location) {
        tool["user_location"] = loc;
    }
    tool
}

/// One chat `url_citation` annotation.
pub fn annotation(url: &Value, title: &Value, start: usize, end: usize) -> Value {
    json!({"type": "url_citation", "url_citation": {"url": url, "title": title, "start_index": start, "end_index": end}})
}

/// The chat annotations of an Anthropic text block's `citations`, for the text at
/// `start..end` (character offsets in the whole answer).
pub fn annotations_of_citations(citations: Option<&Value>, start: usize, end: usize) -> Vec<Value> {
    citations
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("url").is_some())
        .map(|c| annotation(&c["url"], c.get("title").unwrap_or(&Value::Null), start, end))
        .collect()
}

/// A chat annotation as a Responses `url_citation` annotation.
pub fn responses_annotation(a: &Value) -> Option<Value> {
    let c = a.get("url_citation")?;
    Some(json!({"type": "url_citation", "url": c.get("url"), "title": c.get("title"),
        "start_index": c.get("start_index"), "end_index": c.get("end_index")}))
}

/// A chat annotation as an Anthropic `web_search_result_location` citation of `text`.
pub fn anthropic_citation(a: &Value, text: &str) -> Option<Value> {
    let c = a.get("url_citation")?;
    let span = |k: &str| c.get(k).and_then(Value::as_u64).map(|n| n as usize);
    let cited: String = match (span("start_index"), span("end_index")) {
        (Some(s), Some(e)) if s <= e => text.chars().skip(s).take(e - s).collect(),
        _ => String::new(),
    };
    Some(json!({"type": "web_search_result_location", "url": c.get("url"), "title": c.get("title"),
        "cited_text": cited, "encrypted_index": ""}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_and_its_location_cross_formats() {
        let responses = json!({"type": "web_search", "search_context_size": "low",
            "user_location": {"type": "approximate", "city": "Lisbon", "country": "PT"}});
        let options = options_from_responses_tool(&responses);
        assert_eq!(
            options,
            json!({"search_context_size": "low",
            "user_location": {"type": "approximate", "approximate": {"city": "Lisbon", "country": "PT"}}})
        );
        assert_eq!(
            anthropic_tool(&options),
            json!({"type": ANTHROPIC_TOOL, "name": "web_search",
            "user_location": {"type": "approximate", "city": "Lisbon", "country": "PT"}})
        );
        let back = options_from_anthropic_tool(&anthropic_tool(&options));
        assert_eq!(back["user_location"], options["user_location"]);
    }

    #[test]
    fn citations_become_annotations_and_back() {
        let citations = json!([{"type": "web_search_result_location", "url": "https://x.pt", "title": "X",
            "cited_text": "...", "encrypted_index": "e"}]);
        let a = annotations_of_citations(Some(&citations), 4, 9);
        assert_eq!(
            a,
            [json!({"type": "url_citation", "url_citation": {"url": "https://x.pt", "title": "X",
            "start_index": 4, "end_index": 9}})]
        );
        assert_eq!(responses_annotation(&a[0]).unwrap()["start_index"], 4);
        let c = anthropic_citation(&a[0], "the Lisbon sun").unwrap();
        assert_eq!(c["cited_text"], "Lisbo");
        assert_eq!(c["url"], "https://x.pt");
    }
}
