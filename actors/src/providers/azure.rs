//! Azure OpenAI: OpenAI's wire format at deployment URLs
//! (`{base_url}/openai/deployments/{deployment}/...?api-version=...`), authenticated
//! with an `api-key` header.

use switchyard_config::Provider;

use super::Adapter;
use crate::types::Endpoint;
use crate::GatewayError;

/// `kind = "azure"`.
pub struct Azure;

impl Adapter for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn url(&self, p: &Provider, endpoint: Endpoint, model: &str, _stream: bool) -> Result<String, GatewayError> {
        Ok(format!("{}/openai/deployments/{model}{}?api-version={}", p.base_url, endpoint.path(), p.api_version))
    }

    fn url_per_call(&self) -> bool {
        true
    }

    fn auth(&self, api_key: &str) -> (&'static str, String) {
        ("api-key", api_key.to_string())
    }
}
