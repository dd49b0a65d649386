//! What each provider kind can do, declared once. The pipeline checks a request
//! against its target's row before translating it, so a request that needs what the
//! provider lacks gets a 400 naming the capability and never reaches the provider. A
//! conformance test holds every row to what the translators really do.

use serde_json::Value;
use switchyard_config::ProviderKind;

use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint};
use crate::GatewayError;

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
    /// `response_format` JSON object / schema.
    pub json_mode: bool,
}

/// The matrix.
pub fn of(kind: ProviderKind) -> Capabilities {
    use ProviderKind::*;
    let openai = Capabilities {
        embeddings: true,
        token_inputs: true,
        images: Images::Any,
        multiple_choices: true,
        logprobs: true,
        json_mode: true,
    };
    match kind {
        OpenAi | OpenAiCompatible | Azure | Mock => openai,
        Anthropic => Capabilities {
            embeddings: false,
            token_inputs: false,
            images: Images::Any,
            multiple_choices: false,
            logprobs: false,
            json_mode: false,
        },
        Bedrock => Capabilities {
            embeddings: false,
            token_inputs: false,
            images: Images::DataUrls,
            multiple_choices: false,
            logprobs: false,
            json_mode: false,
        },
        Ollama | Gemini => Capabilities {
            embeddings: true,
            token_inputs: false,
            images: Images::DataUrls,
            multiple_choices: false,
            logprobs: false,
            json_mode: true,
        },
    }
}

fn lacks(kind: ProviderKind, what: &str) -> GatewayError {
    GatewayError::BadRequest(format!("provider kind `{}` does not support {what}", kind.as_str()))
}

/// Whether `kind` serves `endpoint` at all.
pub fn serves(kind: ProviderKind, endpoint: Endpoint) -> bool {
    endpoint == Endpoint::Chat || of(kind).embeddings
}

/// Checks a chat request against `kind`'s row.
pub fn check_chat(kind: ProviderKind, req: &ChatRequest) -> Result<(), GatewayError> {
    let c = of(kind);
    if !c.multiple_choices && req.rest.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Err(lacks(kind, "`n` greater than 1"));
    }
    if !c.logprobs && req.rest.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(lacks(kind, "`logprobs`"));
    }
    let json_mode = req.rest.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str);
    if !c.json_mode && json_mode.is_some_and(|t| t != "text") {
        return Err(lacks(kind, "`response_format` (JSON mode)"));
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

/// Checks an embeddings request against `kind`'s row.
pub fn check_embeddings(kind: ProviderKind, req: &EmbeddingsRequest) -> Result<(), GatewayError> {
    let c = of(kind);
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

    use super::*;
    use crate::providers::{anthropic, bedrock, gemini, ollama, openai};

    const TRANSLATED: [ProviderKind; 5] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::Ollama,
        ProviderKind::Bedrock,
    ];

    fn translate(kind: ProviderKind, req: &ChatRequest) -> Result<Vec<u8>, GatewayError> {
        match kind {
            ProviderKind::Anthropic => anthropic::chat_body(req, "m"),
            ProviderKind::Gemini => gemini::chat_body(req),
            ProviderKind::Bedrock => bedrock::chat_body(req),
            ProviderKind::Ollama => ollama::chat_body(req, "m"),
            _ => openai::chat_body(req, "m").map_err(|e| GatewayError::Internal(e.to_string())),
        }
    }

    /// For each capability a request can need, the matrix refuses it exactly when the
    /// provider's translator cannot express it.
    #[test]
    fn the_matrix_agrees_with_the_translators() {
        let user = |content: serde_json::Value| json!([{"role": "user", "content": content}]);
        let needs = [
            json!({"model": "a", "messages": user(json!("x")), "n": 2}),
            json!({"model": "a", "messages": user(json!("x")), "logprobs": true}),
            json!({"model": "a", "messages": user(json!("x")), "response_format": {"type": "json_object"}}),
            json!({"model": "a", "messages": user(json!([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]))}),
            json!({"model": "a", "messages": user(json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]))}),
            json!({"model": "a", "messages": user(json!("plain"))}),
        ];
        for kind in TRANSLATED {
            for need in &needs {
                let req = ChatRequest::parse(need.to_string().as_bytes()).unwrap();
                let matrix = check_chat(kind, &req).is_ok();
                let translator = translate(kind, &req).is_ok();
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
                let matrix = check_embeddings(kind, &req).is_ok();
                let translator = match kind {
                    ProviderKind::Gemini => gemini::embed_body(&req, "m").is_ok(),
                    ProviderKind::Ollama => ollama::embed_body(&req, "m").is_ok(),
                    ProviderKind::Anthropic | ProviderKind::Bedrock => false,
                    _ => openai::embeddings_body(&req, "m").is_ok(),
                };
                assert_eq!(matrix, translator, "{kind:?} on {input}");
                assert_eq!(matrix, kinds_ok.contains(&kind), "{kind:?} on {input}");
            }
        }
        let e = check_embeddings(
            ProviderKind::Anthropic,
            &EmbeddingsRequest::parse(br#"{"model":"e","input":"x"}"#).unwrap(),
        );
        assert!(e.unwrap_err().to_string().contains("`anthropic` does not support embeddings"));
    }
}
