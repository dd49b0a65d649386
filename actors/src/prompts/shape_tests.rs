use serde_json::json;
use switchyard_config::{PromptMessage, PromptPolicy, PromptVersion};

use super::*;

fn version(model: Option<&str>, params: Value) -> Compiled {
    let spec = PromptVersion {
        messages: vec![
            PromptMessage { role: "system".into(), content: "You are {{ company }}'s agent.".into() },
            PromptMessage { role: "user".into(), content: "Q: {{ q }}".into() },
        ],
        model: model.map(String::from),
        params: params.as_object().cloned().unwrap_or_default(),
        variables: Default::default(),
        note: None,
    };
    Compiled::new(3, spec, Bounds::default()).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn vars() -> Map<String, Value> {
    obj(json!({"company": "ACME", "q": "why?"}))
}

#[test]
fn chat_gets_the_templates_messages_first_and_its_defaults_where_unset() {
    let mut body = obj(json!({"model": "x", "prompt": {"id": "p"}, "temperature": 1.0,
        "messages": [{"role": "user", "content": "and more"}]}));
    let v = version(Some("smart"), json!({"temperature": 0.2, "max_tokens": 50}));
    apply_prompt(Format::Chat, &mut body, "p", &v, &vars()).unwrap();
    assert_eq!(
        Value::Object(body),
        json!({"model": "smart", "temperature": 1.0, "max_tokens": 50, "messages": [
            {"role": "system", "content": "You are ACME's agent."},
            {"role": "user", "content": "Q: why?"},
            {"role": "user", "content": "and more"}]})
    );
}

#[test]
fn messages_and_responses_get_it_in_their_own_shape() {
    let mut body = obj(json!({"model": "x", "max_tokens": 10, "prompt": {"id": "p"},
        "system": [{"type": "text", "text": "mine", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}]}));
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let v = version(None, json!({"stop": "END", "tools": tools, "tool_choice": "required"}));
    apply_prompt(Format::Anthropic, &mut body, "p", &v, &vars()).unwrap();
    assert_eq!(body["system"][0], json!({"type": "text", "text": "You are ACME's agent."}));
    assert_eq!(body["system"][1]["cache_control"], json!({"type": "ephemeral"}), "the client's block is kept whole");
    assert_eq!(body["messages"][0], json!({"role": "user", "content": "Q: why?"}));
    assert_eq!(body["stop_sequences"], json!(["END"]));
    // the Anthropic adapter's own translation (no empty description)
    assert_eq!(body["tools"][0], json!({"name": "f", "input_schema": {"type": "object"}}));
    assert_eq!(body["tool_choice"], json!({"type": "any"}));

    let mut body = obj(json!({"prompt": {"id": "p"}, "input": "hello"}));
    let rf = json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}});
    let v = version(Some("gpt"), json!({"max_tokens": 9, "response_format": rf}));
    apply_prompt(Format::Responses, &mut body, "p", &v, &vars()).unwrap();
    assert_eq!(body["model"], "gpt");
    assert_eq!(body["input"][0], json!({"type": "message", "role": "system", "content": "You are ACME's agent."}));
    assert_eq!(body["input"][2], json!({"role": "user", "content": "hello"}));
    assert_eq!(body["max_output_tokens"], 9);
    assert_eq!(body["text"]["format"], json!({"type": "json_schema", "name": "a", "schema": {"type": "object"}}));
    assert!(!body.contains_key("prompt"));

    // Responses: function tools flattened (strict kept); a `text` of the client's own
    // gets the format beside what it says
    let tools =
        json!([{"type": "function", "function": {"name": "f", "strict": true, "parameters": {"type": "object"}}}]);
    let mut body = obj(json!({"input": "hi", "text": {"verbosity": "low"}}));
    let v = version(
        None,
        json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_object"}, "seed": 3}),
    );
    apply_prompt(Format::Responses, &mut body, "p", &v, &vars()).unwrap();
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "name": "f", "strict": true, "parameters": {"type": "object"}}])
    );
    assert_eq!(body["tool_choice"], json!({"type": "function", "name": "f"}));
    assert_eq!(body["text"], json!({"verbosity": "low", "format": {"type": "json_object"}}));
    assert!(!body.contains_key("seed"), "the Responses API has no seed");

    // a parameter the Anthropic adapter refuses is the request's 400
    let mut body = obj(json!({"max_tokens": 10, "messages": []}));
    let v = version(None, json!({"tool_choice": 5}));
    let e = apply_prompt(Format::Anthropic, &mut body, "p", &v, &vars()).unwrap_err();
    assert_eq!(e.class().status, 400, "{e}");
}

#[test]
fn a_prompt_reference_is_checked_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let config = switchyard_config::load_str("", std::path::Path::new("."), &|_| None).unwrap();
    let prompts = Prompts::load(store, &config).unwrap();
    let r = |v: Value, f| prompt_ref(&obj(json!({ "prompt": v })), &prompts, f);
    assert_eq!(r(json!({"id": "a", "version": "2"}), Format::Chat).unwrap().unwrap().1, Selector::Version(2));
    assert_eq!(r(json!({"id": "a", "label": "x"}), Format::Chat).unwrap().unwrap().1, Selector::Label("x".into()));
    assert_eq!(r(json!({"id": "a"}), Format::Chat).unwrap().unwrap().1, Selector::Default);
    for (bad, says) in [
        (json!("a"), "must be an object"),
        (json!({"id": 1}), "`prompt.id` is required"),
        (json!({"id": "a", "version": 0}), "version number"),
        (json!({"id": "a", "version": "x"}), "version number"),
        (json!({"id": "a", "version": 1, "label": "p"}), "not both"),
        (json!({"id": "a", "variables": []}), "must be an object"),
        (json!({"id": "a", "vars": {}}), "`prompt.vars` is not a field"),
    ] {
        let e = r(bad, Format::Chat).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    // OpenAI's own stored prompts go to OpenAI, in the Responses API only
    assert!(r(json!({"id": "pmpt_123"}), Format::Responses).unwrap().is_none());
    assert!(r(json!({"id": "pmpt_123"}), Format::Chat).unwrap().is_some());
}

fn policy(name: &str, teams: &[&str], prepend: Option<&str>, append: Option<&str>) -> PromptPolicy {
    PromptPolicy {
        name: name.into(),
        keys: vec![],
        teams: teams.iter().map(|t| t.to_string()).collect(),
        models: vec![],
        prepend: prepend.map(String::from),
        append: append.map(String::from),
    }
}

#[test]
fn policies_add_system_text_in_order_from_the_context() {
    let p = Policies::new(
        &[
            policy("tone", &["support"], Some("Be kind to {{ user }} (tier {{ meta.tier }})."), None),
            policy("date", &[], Some("Today is {{ date }}."), Some("Key {{ key_id }} on {{ model }}.")),
            policy("other", &["sales"], Some("never"), None),
        ],
        Bounds::default(),
    )
    .unwrap();
    assert_eq!(p.meta_headers, vec!["x-switchyard-meta-tier".to_string()]);
    assert!(p.may_apply("k", None), "a policy for every team");
    let meta = [("tier".to_string(), "gold".to_string())];
    let cx = PolicyContext { key_id: "k1", team: Some("support"), user: Some("ann"), alias: "fast", meta: &meta };
    let mut body =
        obj(json!({"messages": [{"role": "system", "content": "Base."}, {"role": "user", "content": "hi"}]}));
    let names = p.apply(Format::Chat, &mut body, &cx).unwrap();
    assert_eq!(names, vec!["tone", "date"]);
    let text = body["messages"][0]["content"].as_str().unwrap();
    let today = &humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10];
    assert_eq!(text, format!("Be kind to ann (tier gold).\n\nToday is {today}.\n\nBase.\n\nKey k1 on fast."));

    // no system message: one is added; Responses: instructions; Messages: system
    let mut body = obj(json!({"messages": [{"role": "user", "content": "hi"}]}));
    p.apply(Format::Chat, &mut body, &cx).unwrap();
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "hi");
    let mut body = obj(json!({"input": "hi", "instructions": "Mine."}));
    p.apply(Format::Responses, &mut body, &cx).unwrap();
    assert!(body["instructions"].as_str().unwrap().contains("\n\nMine.\n\nKey k1"));
    let mut body = obj(json!({"messages": []}));
    p.apply(Format::Anthropic, &mut body, &cx).unwrap();
    assert!(body["system"].as_str().unwrap().starts_with("Be kind to ann"));

    // a policy reading a header the request did not send is a 400 naming it
    let cx = PolicyContext { key_id: "k1", team: Some("support"), user: None, alias: "fast", meta: &[] };
    let e = p.apply(Format::Chat, &mut obj(json!({"messages": []})), &cx).unwrap_err().to_string();
    assert!(e.contains("prompt policy `tone.prepend`") && e.contains("undefined"), "{e}");
}
