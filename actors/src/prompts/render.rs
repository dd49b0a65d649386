//! Rendering: one prompt version's templates compiled once (minijinja, Jinja2 syntax),
//! rendered with a request's variables. The environment has no loader, no `include`
//! and a fuel limit, so a template reads no file, no network and cannot spin; an
//! undefined variable is an error, never an empty string.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};
use switchyard_config::{var_type, PromptVersion};

use crate::GatewayError;

/// What one render may take: instructions (a loop over a huge range stops there) and
/// the bytes of its text (`server.prompt_render_fuel`, `server.prompt_max_rendered_bytes`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub fuel: u64,
    pub max_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds { fuel: 200_000, max_bytes: 1 << 20 }
    }
}

impl Bounds {
    pub fn of(server: &switchyard_config::Server) -> Bounds {
        Bounds { fuel: server.prompt_render_fuel, max_bytes: server.prompt_max_rendered_bytes }
    }
}

/// A sandboxed environment for templates written by operators.
pub fn environment(bounds: Bounds) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(bounds.fuel));
    env
}

/// A prompt version ready to render.
pub struct Compiled {
    pub version: u32,
    pub spec: PromptVersion,
    env: Environment<'static>,
    /// Variables the templates use (top level), when no schema names them.
    used: BTreeSet<String>,
    max_bytes: usize,
}

impl Compiled {
    pub fn new(version: u32, spec: PromptVersion, bounds: Bounds) -> Result<Compiled, String> {
        let mut env = environment(bounds);
        let mut used = BTreeSet::new();
        for (i, m) in spec.messages.iter().enumerate() {
            env.add_template_owned(format!("messages[{i}]"), m.content.clone()).map_err(|e| e.to_string())?;
            let t = env.get_template(&format!("messages[{i}]")).map_err(|e| e.to_string())?;
            used.extend(t.undeclared_variables(false));
        }
        Ok(Compiled { version, spec, env, used, max_bytes: bounds.max_bytes })
    }

    /// The messages (Chat Completions' shape, string content) for `vars`; a missing,
    /// mistyped or undeclared variable is a 400 that names it.
    pub fn render(&self, prompt: &str, vars: &Map<String, Value>) -> Result<Vec<(String, String)>, GatewayError> {
        let at = || format!("prompt `{prompt}` version {}", self.version);
        let bad = |m: String| GatewayError::BadRequest(format!("{}: {m}", at()));
        let vars = plain_values(vars);
        if self.spec.variables.is_empty() {
            if let Some(missing) = self.used.iter().find(|v| !vars.contains_key(*v)) {
                return Err(bad(format!("variable `{missing}` is missing")));
            }
        } else {
            for (name, spec) in &self.spec.variables {
                let (ty, required) = var_type(spec);
                match vars.get(name) {
                    None | Some(Value::Null) if required => return Err(bad(format!("variable `{name}` is missing"))),
                    None | Some(Value::Null) => {}
                    Some(v) if !is_type(v, ty) => {
                        return Err(bad(format!("variable `{name}` must be {}", article(ty))))
                    }
                    Some(_) => {}
                }
            }
            if let Some(extra) = vars.keys().find(|k| !self.spec.variables.contains_key(*k)) {
                let declared: Vec<&str> = self.spec.variables.keys().map(String::as_str).collect();
                return Err(bad(format!("variable `{extra}` is not declared (declared: {})", declared.join(", "))));
            }
        }
        // optional variables the request left out are there, as none
        let mut ctx = vars.clone();
        for name in self.spec.variables.keys() {
            ctx.entry(name.clone()).or_insert(Value::Null);
        }
        let ctx = minijinja::Value::from_serialize(&ctx);
        let mut out = Vec::with_capacity(self.spec.messages.len());
        for (i, m) in self.spec.messages.iter().enumerate() {
            let t = self.env.get_template(&format!("messages[{i}]")).map_err(|e| bad(e.to_string()))?;
            let text = t.render(&ctx).map_err(|e| bad(describe(&e)))?;
            if text.len() > self.max_bytes {
                let max = self.max_bytes;
                return Err(bad(format!(
                    "message {i} renders to more than {max} bytes (server.prompt_max_rendered_bytes)"
                )));
            }
            out.push((m.role.clone(), text));
        }
        Ok(out)
    }
}

/// Renders one template of a policy with a request's context.
pub fn render_one(
    env: &Environment<'static>,
    name: &str,
    ctx: &minijinja::Value,
    max_bytes: usize,
) -> Result<String, GatewayError> {
    let t = env.get_template(name).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let text =
        t.render(ctx).map_err(|e| GatewayError::BadRequest(format!("prompt policy `{name}`: {}", describe(&e))))?;
    if text.len() > max_bytes {
        return Err(GatewayError::BadRequest(format!(
            "prompt policy `{name}` renders to more than {max_bytes} bytes (server.prompt_max_rendered_bytes)"
        )));
    }
    Ok(text)
}

/// minijinja's message with the detail that names the variable or line.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d}, line {})", e.kind(), e.line().unwrap_or(0)),
        None => format!("{} (line {})", e.kind(), e.line().unwrap_or(0)),
    }
}

/// OpenAI's prompt variables may be input parts: `{"type": "input_text", "text": ...}`
/// is its text.
fn plain_values(vars: &Map<String, Value>) -> Map<String, Value> {
    vars.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("input_text") => {
                    o.get("text").cloned().unwrap_or(Value::Null)
                }
                v => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

fn is_type(v: &Value, ty: &str) -> bool {
    match ty {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn article(ty: &str) -> String {
    match ty {
        "integer" | "array" | "object" => format!("an {ty}"),
        _ => format!("a {ty}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_config::PromptMessage;

    fn version(vars: &[(&str, &str)], messages: &[(&str, &str)]) -> Compiled {
        let spec = PromptVersion {
            messages: messages
                .iter()
                .map(|(r, c)| PromptMessage { role: r.to_string(), content: c.to_string() })
                .collect(),
            model: None,
            params: Map::new(),
            variables: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            note: None,
        };
        Compiled::new(2, spec, Bounds::default()).unwrap()
    }

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renders_with_jinja() {
        let c = version(
            &[],
            &[("system", "You help {{ company }}."), ("user", "{% for q in qs %}- {{ q|upper }}\n{% endfor %}")],
        );
        let out = c.render("p", &vars(json!({"company": "ACME", "qs": ["a", "b"]}))).unwrap();
        assert_eq!(out[0], ("system".into(), "You help ACME.".into()));
        assert_eq!(out[1].1, "- A\n- B\n");
    }

    #[test]
    fn names_a_missing_or_mistyped_variable() {
        let c = version(&[], &[("user", "{{ question }} {{ other }}")]);
        let e = c.render("p", &vars(json!({"question": "x"}))).unwrap_err().to_string();
        assert!(e.contains("prompt `p` version 2: variable `other` is missing"), "{e}");
        let c = version(
            &[("n", "integer"), ("tone", "string?")],
            &[("user", "{{ n }}{% if tone %} {{ tone }}{% endif %}")],
        );
        let e = c.render("p", &vars(json!({"n": "5"}))).unwrap_err().to_string();
        assert!(e.contains("variable `n` must be an integer"), "{e}");
        let e = c.render("p", &vars(json!({"n": 5, "tnoe": "x"}))).unwrap_err().to_string();
        assert!(e.contains("variable `tnoe` is not declared (declared: n, tone)"), "{e}");
        assert_eq!(c.render("p", &vars(json!({"n": 5}))).unwrap()[0].1, "5");
        assert_eq!(c.render("p", &vars(json!({"n": 5, "tone": "warm"}))).unwrap()[0].1, "5 warm");
        // an optional variable left out is none: `or` gives it a default
        let c = version(&[("lang", "string?")], &[("user", "in {{ lang or 'English' }}")]);
        assert_eq!(c.render("p", &Map::new()).unwrap()[0].1, "in English");
        assert_eq!(c.render("p", &vars(json!({"lang": "Portuguese"}))).unwrap()[0].1, "in Portuguese");
    }

    #[test]
    fn an_undefined_attribute_is_an_error_and_input_text_is_its_text() {
        let c = version(&[], &[("user", "{{ user.name }}")]);
        let e = c.render("p", &vars(json!({"user": {}}))).unwrap_err().to_string();
        assert!(e.contains("undefined"), "{e}");
        let c = version(&[], &[("user", "{{ q }}")]);
        let out = c.render("p", &vars(json!({"q": {"type": "input_text", "text": "hi"}}))).unwrap();
        assert_eq!(out[0].1, "hi");
    }

    #[test]
    fn a_template_cannot_spin_or_read_files() {
        let c = version(
            &[],
            &[("user", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}")],
        );
        let e = c.render("p", &Map::new()).unwrap_err().to_string();
        assert!(e.contains("fuel") || e.contains("range"), "{e}");
        let small = Bounds { fuel: 200_000, max_bytes: 10 };
        let c = Compiled::new(1, version(&[], &[("user", "{{ x }}")]).spec.clone(), small).unwrap();
        let e = c.render("p", &vars(json!({"x": "more than ten bytes"}))).unwrap_err().to_string();
        assert!(e.contains("more than 10 bytes (server.prompt_max_rendered_bytes)"), "{e}");
        // no statement reaches another template, a file or the network
        for source in ["{% include 'x' %}", "{% extends 'x' %}", "{% import 'x' as y %}"] {
            let e = switchyard_config::check_template(source).unwrap_err();
            assert!(e.contains("unknown statement"), "{e}");
        }
    }
}
