//! `POST /v1/messages/count_tokens`: the input tokens of a Messages request, counted by
//! the provider when the alias is served by Anthropic (its own `count_tokens`, free and
//! exact for its tokenizer), else by the gateway's estimate (tiktoken `o200k_base`).

use serde_json::{json, Map, Value};
use switchyard_config::ProviderKind;

use super::{Engine, RequestCtx};
use crate::types::ChatRequest;
use crate::{tokens, GatewayError};

/// Who counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The provider's own count.
    Provider,
    /// The gateway's estimate (not an Anthropic target, or its count failed).
    Estimate,
}

impl Counted {
    pub fn as_str(self) -> &'static str {
        match self {
            Counted::Provider => "provider",
            Counted::Estimate => "estimate",
        }
    }
}

impl Engine {
    /// The input tokens of the Messages request `body` for an alias the key may use;
    /// `headers` are the client's Anthropic headers (`anthropic-beta`).
    pub async fn count_tokens(
        &self,
        ctx: &RequestCtx,
        mut body: Map<String, Value>,
        headers: &[(String, String)],
    ) -> Result<(u64, Counted), GatewayError> {
        // counting needs no `max_tokens`
        body.entry("max_tokens").or_insert(json!(1));
        let openai = crate::providers::from_anthropic::request(&serde_json::to_vec(&body).unwrap_or_default())?;
        let chat = ChatRequest::parse(&openai)?;
        let Some(model) = ctx.runtime.config.model(&chat.model) else {
            return Err(GatewayError::UnknownModel(chat.model));
        };
        if !ctx.key.allows_model(&chat.model) {
            return Err(GatewayError::ModelNotAllowed(chat.model));
        }
        let anthropic = model.targets.iter().find_map(|t| {
            let handle = ctx.runtime.providers.get(&t.provider)?;
            (handle.client.cfg.kind == ProviderKind::Anthropic).then_some((handle, t))
        });
        if let Some((handle, target)) = anthropic {
            body.remove("max_tokens");
            body.remove("stream");
            body.insert("model".into(), json!(target.model));
            match handle.client.post_json("/messages/count_tokens", &Value::Object(body), headers).await {
                Ok(v) => {
                    if let Some(n) = v.get("input_tokens").and_then(Value::as_u64) {
                        return Ok((n, Counted::Provider));
                    }
                    tracing::warn!(provider = %target.provider, "count_tokens answer without input_tokens; estimating");
                }
                Err(e) => {
                    tracing::warn!(provider = %target.provider, error = %e.into_gateway(&target.provider), "count_tokens failed upstream; estimating")
                }
            }
        }
        Ok((tokens::estimate_prompt(&chat), Counted::Estimate))
    }
}
