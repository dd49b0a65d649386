//! Prompts (`[[prompts]]`), the policies that shape every request's system prompt
//! (`[[prompt_policies]]`) and experiments (`[[experiments]]`). A prompt is the same
//! type in a config file and in the admin API's JSON, so [`check_prompt`] is the one
//! check of both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A prompt: immutable numbered versions (1, 2, ... in order) and labels that point
/// at them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    /// Letters, digits, `-`, `_` and `.`; at most 128 characters.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version `n` is `versions[n - 1]`.
    #[serde(default)]
    pub versions: Vec<PromptVersion>,
    /// Label (`production`, `staging`, any name) -> version number.
    #[serde(default)]
    pub labels: BTreeMap<String, u32>,
    /// The team that administers it: its team admins may version and label it, its
    /// viewers read it (admins always may). Any key may still use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// One version of a prompt: its messages (Jinja templates) and what it pins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptVersion {
    /// System text, few-shot examples, the user template: the request's own messages
    /// follow them.
    pub messages: Vec<PromptMessage>,
    /// A model alias: the request is served by it, whatever its `model` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Defaults for the request, in Chat Completions' names: `temperature`, `top_p`,
    /// `max_tokens`, `stop`, `seed`, `tools`, `tool_choice`, `response_format`. A field
    /// the request sets itself wins.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Variable name -> type: `string`, `number`, `integer`, `boolean`, `array`,
    /// `object` or `any`; a trailing `?` makes it optional. Empty: the variables the
    /// templates use are all required, of any type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Free text: what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// A Jinja template (minijinja: no file or network access).
    pub content: String,
}

/// The parameters a prompt version may set.
pub const PROMPT_PARAMS: &[&str] =
    &["temperature", "top_p", "max_tokens", "stop", "seed", "tools", "tool_choice", "response_format"];

const VAR_TYPES: &[&str] = &["string", "number", "integer", "boolean", "array", "object", "any"];

/// A variable's type as written: (type, required).
pub fn var_type(spec: &str) -> (&str, bool) {
    match spec.strip_suffix('?') {
        Some(t) => (t, false),
        None => (spec, true),
    }
}

/// Whether `id` may name a prompt or experiment (it is also a key of a NATS key-value
/// bucket, so the characters are few).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.')
        && !id.ends_with('.')
}

/// Every problem of a prompt as (field under the prompt, message); `aliases` are the
/// model aliases a version may pin.
pub fn check_prompt(p: &Prompt, aliases: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !valid_id(&p.id) {
        out.push(("id".into(), "must be 1 to 128 letters, digits, `-`, `_` or `.`".into()));
    }
    if p.versions.is_empty() {
        out.push(("versions".into(), "a prompt needs at least one version".into()));
    }
    for (i, v) in p.versions.iter().enumerate() {
        let f = |name: &str| format!("versions[{i}].{name}");
        if v.messages.is_empty() {
            out.push((f("messages"), "a version needs at least one message".into()));
        }
        for (j, m) in v.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant") {
                out.push((
                    f(&format!("messages[{j}].role")),
                    format!("`{}` is not system, developer, user or assistant", m.role),
                ));
            }
            if let Err(e) = check_template(&m.content) {
                out.push((f(&format!("messages[{j}].content")), e));
            }
        }
        if let Some(m) = v.model.as_deref().filter(|m| !aliases(m)) {
            out.push((f("model"), format!("no model alias `{m}`")));
        }
        for k in v.params.keys().filter(|k| !PROMPT_PARAMS.contains(&k.as_str())) {
            out.push((f(&format!("params.{k}")), format!("not one of {}", PROMPT_PARAMS.join(", "))));
        }
        for (name, spec) in &v.variables {
            if !VAR_TYPES.contains(&var_type(spec).0) {
                out.push((
                    f(&format!("variables.{name}")),
                    format!("`{spec}` is not one of {} (`?` for optional)", VAR_TYPES.join(", ")),
                ));
            }
        }
    }
    for (label, n) in &p.labels {
        if !valid_id(label) {
            out.push((format!("labels.{label}"), "a label is 1 to 128 letters, digits, `-`, `_` or `.`".into()));
        }
        if *n == 0 || *n as usize > p.versions.len() {
            out.push((format!("labels.{label}"), format!("no version {n} (there are {})", p.versions.len())));
        }
    }
    out
}

/// Whether a template compiles (the syntax a request would otherwise fail on).
pub fn check_template(source: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    env.template_from_str(source).map(|_| ()).map_err(|e| format!("template error: {e}"))
}

/// `[[prompt_policies]]`: system text added to every request a policy matches, rendered
/// from the request's context. Policies apply in file order: their `prepend` texts go
/// before the system prompt, their `append` texts after it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptPolicy {
    pub name: String,
    /// Key ids it applies to (empty: any).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Teams it applies to (empty: any).
    #[serde(default)]
    pub teams: Vec<String>,
    /// Model aliases (as requested) it applies to (empty: any).
    #[serde(default)]
    pub models: Vec<String>,
    /// A Jinja template placed before the system prompt.
    pub prepend: Option<String>,
    /// A Jinja template placed after the system prompt.
    pub append: Option<String>,
}

impl PromptPolicy {
    /// Whether the policy applies to a request of `key` (in `team`) for `alias`.
    pub fn matches(&self, key: &str, team: Option<&str>, alias: &str) -> bool {
        self.matches_key(key, team) && (self.models.is_empty() || self.models.iter().any(|m| m == alias))
    }

    /// Whether it may apply to a request of `key` (in `team`), whatever its alias.
    pub fn matches_key(&self, key: &str, team: Option<&str>) -> bool {
        (self.keys.is_empty() || self.keys.iter().any(|k| k == key))
            && (self.teams.is_empty() || team.is_some_and(|t| self.teams.iter().any(|x| x == t)))
    }
}

/// `[[experiments]]`: requests that name a prompt, or ask for an alias, are split
/// between variants by weight; a caller stays in its variant (sticky by user, key or a
/// header). The first variant is the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Requests naming this prompt take part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Requests asking for this alias take part (with `prompt`: requests doing both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `user` (the request's `user`, else the key), `key`, `header:NAME`, or `request`
    /// (no stickiness).
    #[serde(default = "default_sticky")]
    pub sticky: String,
    /// `running`, `paused` (everyone gets what they asked for; may run again) or
    /// `stopped` (final).
    #[serde(default = "default_status")]
    pub status: String,
    pub variants: Vec<Variant>,
}

fn default_sticky() -> String {
    "user".into()
}

fn default_status() -> String {
    "running".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// Share of the traffic, relative to the other variants' weights.
    pub weight: u32,
    /// The prompt version it serves (of the experiment's `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<u32>,
    /// Or the prompt label it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_label: Option<String>,
    /// The alias it is served by (over the request's and the prompt version's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The experiment statuses.
pub const EXPERIMENT_STATUSES: &[&str] = &["running", "paused", "stopped"];

/// Every problem of an experiment as (field, message); `prompt` says whether a prompt
/// exists (and how many versions it has), `alias` whether an alias does.
pub fn check_experiment(
    e: &Experiment,
    prompt: &dyn Fn(&str) -> Option<u32>,
    alias: &dyn Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !valid_id(&e.id) {
        out.push(("id".into(), "must be 1 to 128 letters, digits, `-`, `_` or `.`".into()));
    }
    if e.prompt.is_none() && e.model.is_none() {
        out.push(("prompt".into(), "an experiment needs `prompt`, `model` or both: which requests take part".into()));
    }
    let versions = match &e.prompt {
        Some(p) => match prompt(p) {
            Some(n) => Some(n),
            None => {
                out.push(("prompt".into(), format!("no prompt `{p}`")));
                None
            }
        },
        None => None,
    };
    if let Some(m) = e.model.as_deref().filter(|m| !alias(m)) {
        out.push(("model".into(), format!("no model alias `{m}`")));
    }
    let sticky_ok = matches!(e.sticky.as_str(), "user" | "key" | "request")
        || e.sticky.strip_prefix("header:").is_some_and(|h| !h.is_empty());
    if !sticky_ok {
        out.push(("sticky".into(), format!("`{}` is not user, key, request or header:NAME", e.sticky)));
    }
    if !EXPERIMENT_STATUSES.contains(&e.status.as_str()) {
        out.push(("status".into(), format!("`{}` is not running, paused or stopped", e.status)));
    }
    if e.variants.len() < 2 {
        out.push(("variants".into(), "an experiment needs at least two variants (the first is the control)".into()));
    }
    if e.variants.iter().map(|v| u64::from(v.weight)).sum::<u64>() == 0 {
        out.push(("variants".into(), "the weights must not all be 0".into()));
    }
    let mut names = std::collections::HashSet::new();
    for (i, v) in e.variants.iter().enumerate() {
        let f = |name: &str| format!("variants[{i}].{name}");
        if !valid_id(&v.name) || !names.insert(v.name.as_str()) {
            out.push((f("name"), "1 to 128 letters, digits, `-`, `_` or `.`, unique in the experiment".into()));
        }
        if v.prompt_version.is_some() && v.prompt_label.is_some() {
            out.push((f("prompt_version"), "give `prompt_version` or `prompt_label`, not both".into()));
        }
        if (v.prompt_version.is_some() || v.prompt_label.is_some()) && e.prompt.is_none() {
            out.push((f("prompt_version"), "the experiment names no `prompt`".into()));
        }
        if let (Some(n), Some(max)) = (v.prompt_version, versions) {
            if n == 0 || n > max {
                out.push((f("prompt_version"), format!("no version {n} (there are {max})")));
            }
        }
        if let Some(m) = v.model.as_deref().filter(|m| !alias(m)) {
            out.push((f("model"), format!("no model alias `{m}`")));
        }
    }
    out
}
