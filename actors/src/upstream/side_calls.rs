//! Calls outside the request path: a moderation's second opinion, Anthropic's token
//! count. They use the provider's credentials, timeouts and response cap, and no retry.

use super::{read_capped, root_cause, UpstreamClient, UpstreamError};

impl UpstreamClient {
    /// OpenAI's moderation API on this provider (`POST base_url/moderations`), for a
    /// guardrail's second opinion: the answer's JSON.
    pub async fn moderations(&self, model: &str, inputs: &[String]) -> Result<serde_json::Value, UpstreamError> {
        let body = serde_json::json!({"model": model, "input": inputs});
        self.post_json("/moderations", &body, &[]).await
    }

    /// A JSON `POST` to `base_url` + `path` outside the request path (a moderation's
    /// second opinion, Anthropic's token count), with the provider's credentials and
    /// `headers`, bounded by its timeouts and response cap: the answer's JSON.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(String, String)],
    ) -> Result<serde_json::Value, UpstreamError> {
        let url = format!("{}{path}", self.cfg.base_url);
        let mut rb = self.credentials(self.http().post(url)).json(body);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        self.attempts_total.increment(1);
        let r = match tokio::time::timeout(self.cfg.first_byte_timeout, rb.send()).await {
            Err(_) => return Err(UpstreamError::Timeout("first byte")),
            Ok(Err(e)) if e.is_connect() => return Err(UpstreamError::Connect(root_cause(&e))),
            Ok(Err(e)) => return Err(UpstreamError::Body(root_cause(&e))),
            Ok(Ok(r)) => r,
        };
        let status = r.status().as_u16();
        let bytes = tokio::time::timeout(self.cfg.timeout, read_capped(r, self.cfg.max_response_bytes))
            .await
            .map_err(|_| UpstreamError::Timeout("total"))??;
        if !(200..300).contains(&status) {
            let message = self.sanitized(&self.adapter.error_message(&bytes));
            return Err(UpstreamError::Status { status, message, retry_after: None });
        }
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Body(format!("{path} answer: {e}")))
    }
}
