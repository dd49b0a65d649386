//! What a provider kind can do: each adapter declares its row ([`Capabilities`]), and
//! its `encode_*` checks a request against it before translating it, so a request that needs what the
//! provider lacks gets a 400 naming the capability and never reaches the provider. A
//! conformance test holds every row to what the translators really do.

use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint};
use crate::GatewayError;
use serde_json::Value;

/// How a provider takes images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    /// Data URLs and http(s) URLs.
    Any,
    /// Base64 data URLs only.
    DataUrls,
}

/// One provider kind's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub embeddings: bool,
    /// Token arrays as embedding input.
    pub token_inputs: bool,
    pub images: Images,
    /// `n` greater than 1.
    pub multiple_choices: bool,
    pub logprobs: bool,
    /// `response_format` `json_object` (JSON without a schema).
    pub json_mode: bool,
    /// `response_format` `json_schema` (structured outputs).
    pub json_schema: bool,
    /// `web_search_options`: a web search the provider runs itself.
    pub web_search: bool,
}

impl Capabilities {
    /// Chat with data-URL images, nothing more: the base the other rows add to.
    pub const MINIMAL: Capabilities = Capabilities {
        embeddings: false,
        token_inputs: false,
        images: Images::DataUrls,
        multiple_choices: false,
        logprobs: false,
        json_mode: false,
        json_schema: false,
        web_search: false,
    };

    /// OpenAI's row, shared by every kind that speaks its API.
    pub const OPENAI: Capabilities = Capabilities {
        embeddings: true,
        token_inputs: true,
        images: Images::Any,
        multiple_choices: true,
        logprobs: true,
        json_mode: true,
        json_schema: true,
        web_search: true,
    };
}

fn lacks(kind: &str, what: &str) -> GatewayError {
    GatewayError::BadRequest(format!("provider kind `{kind}` does not support {what}"))
}

/// Whether a provider with `c` serves `endpoint` at all.
pub fn serves(c: &Capabilities, endpoint: Endpoint) -> bool {
    endpoint == Endpoint::Chat || c.embeddings
}

/// Checks a chat request against a kind's row.
pub fn check_chat(kind: &str, c: &Capabilities, req: &ChatRequest) -> Result<(), GatewayError> {
    if !c.multiple_choices && req.rest.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Err(lacks(kind, "`n` greater than 1"));
    }
    if !c.logprobs && req.rest.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(lacks(kind, "`logprobs`"));
    }
    match req.rest.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") if !c.json_mode => {
            let hint = if c.json_schema { "; send `json_schema` with a schema" } else { "" };
            return Err(lacks(kind, &format!("`response_format` `json_object` (JSON without a schema){hint}")));
        }
        Some("json_schema") if !c.json_schema => {
            return Err(lacks(kind, "`response_format` `json_schema` (structured outputs)"));
        }
        _ => {}
    }
    if !c.web_search && req.rest.get("web_search_options").is_some_and(|o| !o.is_null()) {
        return Err(lacks(kind, "web search (`web_search_options`, a `web_search` tool)"));
    }
    if c.images == Images::DataUrls {
        let url_image = req
            .messages
            .iter()
            .flat_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .any(|p| p.pointer("/image_url/url").and_then(Value::as_str).is_some_and(|u| !u.starts_with("data:")));
        if url_image {
            return Err(lacks(kind, "image URLs; send the image as a base64 data URL"));
        }
    }
    Ok(())
}

/// Checks an embeddings request against a kind's row.
pub fn check_embeddings(kind: &str, c: &Capabilities, req: &EmbeddingsRequest) -> Result<(), GatewayError> {
    if !c.embeddings {
        return Err(lacks(kind, "embeddings"));
    }
    let tokens = req.input.as_array().is_some_and(|a| a.iter().any(|i| !i.is_string()));
    if !c.token_inputs && tokens {
        return Err(lacks(kind, "token-array embedding inputs"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchyard_config::ProviderKind;

    use super::*;
    use crate::providers::adapter;

    const TRANSLATED: [ProviderKind; 5] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::Ollama,
        ProviderKind::Bedrock,
    ];

    /// For each capability a request can need, the matrix refuses it exactly when the
    /// provider's translator cannot express it.
    #[test]
    fn the_matrix_agrees_with_the_translators() {
        let user = |content: serde_json::Value| json!([{"role": "user", "content": content}]);
        let needs = [
            json!({"model": "a", "messages": user(json!("x")), "n": 2}),
            json!({"model": "a", "messages": user(json!("x")), "logprobs": true}),
            json!({"model": "a", "messages": user(json!("x")), "response_format": {"type": "json_object"}}),
            json!({"model": "a", "messages": user(json!("x")),
                "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}}),
            json!({"model": "a", "messages": user(json!("x")), "web_search_options": {}}),
            json!({"model": "a", "messages": user(json!([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]))}),
            json!({"model": "a", "messages": user(json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]))}),
            json!({"model": "a", "messages": user(json!("plain"))}),
        ];
        for kind in TRANSLATED {
            let a = adapter(kind);
            for need in &needs {
                let req = ChatRequest::parse(need.to_string().as_bytes()).unwrap();
                let matrix = check_chat(a.name(), &a.capabilities(), &req).is_ok();
                let translator = a.translate_chat(&req, "m").is_ok();
                assert_eq!(matrix, translator, "{kind:?} on {need}: matrix {matrix}, translator {translator}");
            }
        }
    }

    #[test]
    fn embeddings_rows_agree_with_the_translators() {
        for (input, kinds_ok) in [
            (json!(["a", "b"]), vec![ProviderKind::OpenAi, ProviderKind::Gemini, ProviderKind::Ollama]),
            (json!([[1, 2]]), vec![ProviderKind::OpenAi]),
        ] {
            let req = EmbeddingsRequest::parse(json!({"model": "e", "input": input}).to_string().as_bytes()).unwrap();
            for kind in TRANSLATED {
                let a = adapter(kind);
                let matrix = check_embeddings(a.name(), &a.capabilities(), &req).is_ok();
                let translator = a.translate_embeddings(&req, "m").is_ok();
                assert_eq!(matrix, translator, "{kind:?} on {input}");
                assert_eq!(matrix, kinds_ok.contains(&kind), "{kind:?} on {input}");
            }
        }
        let a = adapter(ProviderKind::Anthropic);
        let e = a.encode_embeddings(&EmbeddingsRequest::parse(br#"{"model":"e","input":"x"}"#).unwrap(), "m");
        assert!(e.unwrap_err().to_string().contains("`anthropic` does not support embeddings"));
    }
}
