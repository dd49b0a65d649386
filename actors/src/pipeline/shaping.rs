//! The first step of a chat request, whichever its format: the prompt it names is
//! rendered into it and the prompt policies add their system text
//! (`prompts::shape`), before guardrails, the cache key and routing see it. What was
//! done is kept in the context, for the response headers and the usage record.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Engine, RequestCtx};
use crate::prompts::shape::{self, Format, PolicyContext, Shaped};
use crate::prompts::Selector;
use crate::GatewayError;

/// Header names of the policies' context (`x-switchyard-meta-NAME`).
const META: &str = "x-switchyard-meta-";

impl Engine {
    /// `POST /v1/feedback` (and its NATS twin): feedback on one of the key's requests.
    pub fn feedback(&self, ctx: &RequestCtx, body: &[u8]) -> Result<serde_json::Value, GatewayError> {
        ctx.key.check_api(ctx.api(switchyard_config::Api::Chat))?;
        crate::prompts::feedback::record(self.store(), &ctx.key.id, body)
    }

    /// Whether a body may need shaping: it names a prompt, or a policy may apply to the
    /// key. A cheap look: most requests are not parsed twice.
    fn may_shape(&self, ctx: &RequestCtx, body: &[u8]) -> bool {
        memchr::memmem::find(body, b"\"prompt\"").is_some() || self.shapes_any(ctx)
    }

    /// Whether every request of this key must be looked at: a policy may apply to it,
    /// or an experiment takes requests by their alias.
    pub(super) fn shapes_any(&self, ctx: &RequestCtx) -> bool {
        ctx.runtime.policies.may_apply(&ctx.key.id, ctx.key.key.team.as_deref()) || self.experiments.by_alias_alone()
    }

    /// Shapes a JSON body; `None` when nothing changed (the body goes on as it came). A
    /// body that is not a JSON object is left to the endpoint's parser to refuse.
    pub(super) fn shape_object(
        &self,
        ctx: &RequestCtx,
        format: Format,
        body: &[u8],
    ) -> Result<Option<Map<String, Value>>, GatewayError> {
        if !self.may_shape(ctx, body) {
            return Ok(None);
        }
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else { return Ok(None) };
        Ok(self.shape(ctx, format, &mut map)?.then_some(map))
    }

    /// Shapes a parsed body in place; whether anything changed.
    pub(super) fn shape(
        &self,
        ctx: &RequestCtx,
        format: Format,
        body: &mut Map<String, Value>,
    ) -> Result<bool, GatewayError> {
        let mut shaped = Shaped::default();
        let mut prompt = shape::prompt_ref(body, &self.prompts, format)?;
        let user = match format {
            Format::Anthropic => body.get("metadata").and_then(|m| m.get("user_id")),
            Format::Chat => body.get("user"),
            Format::Responses => body.get("user").or_else(|| body.get("safety_identifier")),
        };
        let user = user.and_then(Value::as_str).map(String::from);
        // an experiment picks the prompt version and the alias
        let mut variant_model = None;
        let requested = body.get("model").and_then(Value::as_str).unwrap_or("");
        if let Some(exp) = self.experiments.find(prompt.as_ref().map(|p| p.0.as_str()), requested) {
            let sticky = match exp.experiment.sticky.as_str() {
                "user" => user.clone().unwrap_or_else(|| ctx.key.id.to_string()),
                "key" => ctx.key.id.to_string(),
                other => other
                    .strip_prefix("header:")
                    .and_then(|h| ctx.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(h)))
                    .map_or_else(|| ctx.request_id.clone(), |(_, v)| v.clone()),
            };
            let v = exp.variant_for(&sticky);
            if let Some(p) = prompt.as_mut() {
                if let Some(n) = v.prompt_version {
                    p.1 = Selector::Version(n);
                } else if let Some(l) = &v.prompt_label {
                    p.1 = Selector::Label(l.clone());
                }
            }
            variant_model = v.model.clone();
            shaped.experiment = Some((exp.experiment.id.clone(), v.name.clone()));
        }
        if let Some((id, sel, vars)) = prompt {
            let version = self.prompts.resolve(&id, &sel)?;
            shape::apply_prompt(format, body, &id, &version, &vars)?;
            shaped.prompt = Some((id, version.version));
        }
        if let Some(m) = variant_model {
            body.insert("model".into(), Value::String(m));
        }
        let policies = &ctx.runtime.policies;
        if policies.may_apply(&ctx.key.id, ctx.key.key.team.as_deref()) {
            let alias = body.get("model").and_then(Value::as_str).unwrap_or("").to_string();
            let meta: Vec<(String, String)> = ctx
                .headers
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(META).map(|n| (n.replace('-', "_"), v.clone())))
                .collect();
            let cx = PolicyContext {
                key_id: &ctx.key.id,
                team: ctx.key.key.team.as_deref(),
                user: user.as_deref(),
                alias: &alias,
                meta: &meta,
            };
            shaped.policies = policies.apply(format, body, &cx)?;
        }
        if shaped.is_empty() {
            return Ok(false);
        }
        let _ = ctx.shaped.set(Arc::new(shaped));
        Ok(true)
    }
}
