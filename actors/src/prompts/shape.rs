//! Shaping a request before anything else reads it (guardrails, cache key, routing):
//! the `prompt` object is replaced by its version's rendered messages and parameters,
//! then the prompt policies add their system text. It works on the client's own JSON in
//! its own format (Chat Completions, Anthropic's Messages, Responses), so a request
//! that goes upstream as the client wrote it keeps everything else it said.

use minijinja::Environment;
use serde_json::{json, Map, Value};
use switchyard_config::PromptPolicy;

use super::render::{environment, render_one, Bounds, Compiled};
use super::{Prompts, Selector};
use crate::GatewayError;

/// The client format of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Chat,
    Anthropic,
    Responses,
}

/// What shaping did, for the response headers and the usage record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shaped {
    /// The prompt and the version that served the request.
    pub prompt: Option<(String, u32)>,
    /// The experiment and the variant the request was assigned.
    pub experiment: Option<(String, String)>,
    /// The policies that added text, in order.
    pub policies: Vec<String>,
}

impl Shaped {
    pub fn is_empty(&self) -> bool {
        self.prompt.is_none() && self.experiment.is_none() && self.policies.is_empty()
    }
}

fn bad(m: String) -> GatewayError {
    GatewayError::BadRequest(m)
}

/// A request's prompt: (id, which version, variables).
pub type PromptRef = (String, Selector, Map<String, Value>);

/// The request's `prompt` object: (id, which version, variables); `None` when it has
/// none, or when it names one of OpenAI's own stored prompts (`pmpt_…`) that the
/// registry does not hold (left for an `openai` target).
pub fn prompt_ref(
    body: &Map<String, Value>,
    prompts: &Prompts,
    format: Format,
) -> Result<Option<PromptRef>, GatewayError> {
    let Some(p) = body.get("prompt").filter(|p| !p.is_null()) else { return Ok(None) };
    let p = p
        .as_object()
        .ok_or_else(|| bad("`prompt` must be an object: {\"id\", \"version\" or \"label\", \"variables\"}".into()))?;
    if let Some(k) = p.keys().find(|k| !matches!(k.as_str(), "id" | "version" | "label" | "variables")) {
        return Err(bad(format!("`prompt.{k}` is not a field of a prompt reference (id, version, label, variables)")));
    }
    let id = p.get("id").and_then(Value::as_str).ok_or_else(|| bad("`prompt.id` is required: a string".into()))?;
    if format == Format::Responses && id.starts_with("pmpt_") && prompts.get(id).is_none() {
        return Ok(None);
    }
    let version = match p.get("version") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(Value::String(s)) => s.parse::<u32>().ok(),
        Some(_) => Some(0),
    };
    let sel = match (version, p.get("label").filter(|l| !l.is_null())) {
        (Some(_), Some(_)) => return Err(bad("`prompt`: give `version` or `label`, not both".into())),
        (Some(0), None) => return Err(bad("`prompt.version` must be a version number from 1".into())),
        (Some(n), None) => Selector::Version(n),
        (None, Some(Value::String(l))) => Selector::Label(l.clone()),
        (None, Some(_)) => return Err(bad("`prompt.label` must be a string".into())),
        (None, None) if p.get("version").is_some_and(|v| !v.is_null()) => {
            return Err(bad("`prompt.version` must be a version number from 1".into()))
        }
        (None, None) => Selector::Default,
    };
    let vars = match p.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(bad("`prompt.variables` must be an object".into())),
    };
    Ok(Some((id.to_string(), sel, vars)))
}

/// Replaces the `prompt` object of `body` with what `version` renders: its messages
/// before the request's own, its parameters where the request set none, its model.
pub fn apply_prompt(
    format: Format,
    body: &mut Map<String, Value>,
    id: &str,
    version: &Compiled,
    vars: &Map<String, Value>,
) -> Result<(), GatewayError> {
    let rendered = version.render(id, vars)?;
    body.remove("prompt");
    if let Some(m) = &version.spec.model {
        body.insert("model".into(), json!(m));
    }
    let (system, turns): (Vec<_>, Vec<_>) = rendered.into_iter().partition(|(r, _)| r == "system" || r == "developer");
    match format {
        Format::Chat => {
            let mut messages: Vec<Value> = Vec::new();
            let all = system.into_iter().chain(turns);
            messages.extend(all.map(|(role, content)| json!({"role": role, "content": content})));
            prepend_array(body, "messages", messages)?;
        }
        Format::Anthropic => {
            let text: Vec<String> = system.into_iter().map(|(_, t)| t).collect();
            if !text.is_empty() {
                add_system(body, "system", &text, &[])?;
            }
            let turns = turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
            prepend_array(body, "messages", turns)?;
        }
        Format::Responses => {
            if let Some(Value::String(s)) = body.get("input") {
                let s = s.clone();
                body.insert("input".into(), json!([{"role": "user", "content": s}]));
            }
            let all = system.into_iter().chain(turns);
            let items =
                all.map(|(role, content)| json!({"type": "message", "role": role, "content": content})).collect();
            prepend_array(body, "input", items)?;
        }
    }
    merge_params(body, params_for(format, &version.spec.params)?);
    Ok(())
}

fn prepend_array(body: &mut Map<String, Value>, field: &str, first: Vec<Value>) -> Result<(), GatewayError> {
    match body.get_mut(field) {
        None | Some(Value::Null) => {
            body.insert(field.into(), Value::Array(first));
        }
        Some(Value::Array(rest)) => {
            let mut all = first;
            all.append(rest);
            *rest = all;
        }
        Some(_) => return Err(bad(format!("`{field}` must be an array"))),
    }
    Ok(())
}

/// A prompt version's parameters (Chat Completions' names) in the request's format: the
/// Messages API's through the Anthropic adapter's own translation of them.
fn params_for(format: Format, params: &Map<String, Value>) -> Result<Map<String, Value>, GatewayError> {
    let mut out = Map::new();
    match format {
        Format::Chat => out = params.clone(),
        Format::Anthropic => {
            crate::providers::anthropic::translate_options(params, &mut out)?;
            if let Some(n) = params.get("max_tokens") {
                out.insert("max_tokens".into(), n.clone());
            }
        }
        Format::Responses => {
            for (k, v) in params {
                let (name, value) = match k.as_str() {
                    "temperature" | "top_p" => (k.as_str(), v.clone()),
                    "max_tokens" => ("max_output_tokens", v.clone()),
                    "tools" => {
                        let originals = v.as_array().map(Vec::as_slice).unwrap_or_default();
                        let tools = crate::providers::openai::function_tools(v, "responses")?;
                        let tools = tools.into_iter().zip(originals).map(|(t, original)| {
                            let mut tool = json!({"type": "function", "name": t.name});
                            let strict = original.pointer("/function/strict");
                            for (field, value) in
                                [("description", t.description), ("parameters", t.parameters), ("strict", strict)]
                            {
                                if let Some(value) = value {
                                    tool[field] = value.clone();
                                }
                            }
                            tool
                        });
                        ("tools", Value::Array(tools.collect()))
                    }
                    "tool_choice" if v.is_string() => ("tool_choice", v.clone()),
                    "tool_choice" => ("tool_choice", json!({"type": "function", "name": v.pointer("/function/name")})),
                    "response_format" => {
                        let format = match v.get("json_schema").and_then(Value::as_object) {
                            Some(schema) if v["type"] == "json_schema" => {
                                let mut f = schema.clone();
                                f.insert("type".into(), json!("json_schema"));
                                Value::Object(f)
                            }
                            _ => json!({"type": v["type"]}),
                        };
                        ("text", json!({"format": format}))
                    }
                    // what the Responses API has no place for (`stop`, `seed`)
                    _ => continue,
                };
                out.insert(name.into(), value);
            }
        }
    }
    Ok(out)
}

/// Sets what the request did not set itself (`text.format` inside a `text` the request
/// has without one; chat's `max_tokens` not beside its `max_completion_tokens`).
fn merge_params(body: &mut Map<String, Value>, params: Map<String, Value>) {
    let completion_cap = body.contains_key("max_completion_tokens");
    for (k, v) in params {
        match (k.as_str(), body.get_mut(&k)) {
            ("max_tokens", None) if completion_cap => {}
            (_, None) => {
                body.insert(k, v);
            }
            ("text", Some(Value::Object(text))) => {
                if let Some(f) = v.get("format") {
                    text.entry("format").or_insert_with(|| f.clone());
                }
            }
            _ => {}
        }
    }
}

/// Adds system text to a request: `before` ahead of its system prompt, `after` behind
/// it (`field` is `system` for Messages, `instructions` for Responses). Text blocks stay
/// blocks (their `cache_control` kept).
fn add_system(
    body: &mut Map<String, Value>,
    field: &str,
    before: &[String],
    after: &[String],
) -> Result<(), GatewayError> {
    let join = |parts: &[String]| parts.join("\n\n");
    match body.get_mut(field) {
        None | Some(Value::Null) => {
            let all: Vec<String> = before.iter().chain(after).cloned().collect();
            body.insert(field.into(), json!(join(&all)));
        }
        Some(Value::String(s)) => {
            let all: Vec<String> =
                before.iter().cloned().chain((!s.is_empty()).then(|| s.clone())).chain(after.iter().cloned()).collect();
            *s = join(&all);
        }
        Some(Value::Array(blocks)) if field == "system" => {
            let text = |t: String| json!({"type": "text", "text": t});
            let mut all: Vec<Value> = Vec::new();
            if !before.is_empty() {
                all.push(text(join(before)));
            }
            all.append(blocks);
            if !after.is_empty() {
                all.push(text(join(after)));
            }
            *blocks = all;
        }
        Some(_) => return Err(bad(format!("`{field}` must be a string"))),
    }
    Ok(())
}

/// `[[prompt_policies]]`, compiled.
pub struct Policies {
    list: Vec<PromptPolicy>,
    env: Environment<'static>,
    max_bytes: usize,
    /// The `x-switchyard-meta-*` headers their templates read (lower-case names).
    pub meta_headers: Vec<String>,
}

/// What a policy's template may read of a request.
pub struct PolicyContext<'a> {
    pub key_id: &'a str,
    pub team: Option<&'a str>,
    pub user: Option<&'a str>,
    pub alias: &'a str,
    /// `x-switchyard-meta-NAME` headers as (name with `_` for `-`, value).
    pub meta: &'a [(String, String)],
}

impl Policies {
    pub fn new(list: &[PromptPolicy], bounds: Bounds) -> Result<Policies, String> {
        let mut env = environment(bounds);
        let mut meta = std::collections::BTreeSet::new();
        for p in list {
            for (part, text) in [("prepend", &p.prepend), ("append", &p.append)] {
                let Some(text) = text else { continue };
                let name = format!("{}.{part}", p.name);
                env.add_template_owned(name.clone(), text.clone())
                    .map_err(|e| format!("prompt_policies `{}`: {e}", p.name))?;
                let t = env.get_template(&name).map_err(|e| e.to_string())?;
                for v in t.undeclared_variables(true) {
                    if let Some(m) = v.strip_prefix("meta.") {
                        meta.insert(format!("x-switchyard-meta-{}", m.replace('_', "-")));
                    }
                }
            }
        }
        Ok(Policies { list: list.to_vec(), env, max_bytes: bounds.max_bytes, meta_headers: meta.into_iter().collect() })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether any policy may apply to a key (whatever the alias).
    pub fn may_apply(&self, key: &str, team: Option<&str>) -> bool {
        self.list.iter().any(|p| p.matches_key(key, team))
    }

    /// Adds the system text of every policy that matches, in file order; returns their
    /// names.
    pub fn apply(
        &self,
        format: Format,
        body: &mut Map<String, Value>,
        cx: &PolicyContext,
    ) -> Result<Vec<String>, GatewayError> {
        let matching: Vec<&PromptPolicy> =
            self.list.iter().filter(|p| p.matches(cx.key_id, cx.team, cx.alias)).collect();
        if matching.is_empty() {
            return Ok(Vec::new());
        }
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        use minijinja::Value as V;
        let meta: V = cx.meta.iter().map(|(k, v)| (k.as_str(), V::from(v.as_str()))).collect();
        let ctx = minijinja::context! {
            key_id => cx.key_id, team => cx.team, user => cx.user, model => cx.alias,
            date => &now[..10], datetime => now.as_str(), meta => meta,
        };
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for p in &matching {
            if p.prepend.is_some() {
                before.push(render_one(&self.env, &format!("{}.prepend", p.name), &ctx, self.max_bytes)?);
            }
            if p.append.is_some() {
                after.push(render_one(&self.env, &format!("{}.append", p.name), &ctx, self.max_bytes)?);
            }
        }
        match format {
            Format::Chat => chat_system(body, &before, &after)?,
            Format::Anthropic => add_system(body, "system", &before, &after)?,
            Format::Responses => add_system(body, "instructions", &before, &after)?,
        }
        Ok(matching.iter().map(|p| p.name.clone()).collect())
    }
}

/// Chat's system prompt is its first message when that is a system (or developer) one.
fn chat_system(body: &mut Map<String, Value>, before: &[String], after: &[String]) -> Result<(), GatewayError> {
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return Err(bad("`messages` is required: an array of messages".into()));
    };
    let first_is_system = messages
        .first()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        .is_some_and(|r| r == "system" || r == "developer");
    if !first_is_system {
        let all: Vec<String> = before.iter().chain(after).cloned().collect();
        messages.insert(0, json!({"role": "system", "content": all.join("\n\n")}));
        return Ok(());
    }
    let Some(first) = messages.first_mut().and_then(Value::as_object_mut) else { return Ok(()) };
    match first.get_mut("content") {
        Some(Value::Array(parts)) => {
            let text = |t: &[String]| json!({"type": "text", "text": t.join("\n\n")});
            let mut all = Vec::new();
            if !before.is_empty() {
                all.push(text(before));
            }
            all.append(parts);
            if !after.is_empty() {
                all.push(text(after));
            }
            *parts = all;
            Ok(())
        }
        _ => add_system(first, "content", before, after),
    }
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
