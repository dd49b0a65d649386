//! The gateway's errors and the one classifier that maps each to an HTTP status and an
//! OpenAI-shaped body. The `reason` doubles as a low-cardinality metric label.

use std::fmt;
use std::time::Duration;

use serde_json::json;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    DailyTokens,
    Concurrency,
    /// A USD budget is spent.
    Budget,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::DailyTokens => "daily_tokens",
            LimitKind::Concurrency => "concurrency",
            LimitKind::Budget => "budget",
        }
    }

    /// OpenAI-style error code.
    pub fn code(self) -> &'static str {
        match self {
            LimitKind::Requests => "rate_limit_requests",
            LimitKind::Tokens => "rate_limit_tokens",
            LimitKind::DailyTokens => "rate_limit_tokens_per_day",
            LimitKind::Concurrency => "rate_limit_concurrency",
            LimitKind::Budget => "insufficient_quota",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Requests => "requests per minute",
            LimitKind::Tokens => "tokens per minute",
            LimitKind::DailyTokens => "tokens per day",
            LimitKind::Concurrency => "concurrent requests",
            LimitKind::Budget => "budget (USD) spent",
        })
    }
}

/// Whether a provider status is worth another try (later, or on another target): 408,
/// 409, 429 and every 5xx. The one list: the upstream client's same-target retries,
/// failover, durable jobs and the Batch API all decide through it (or through
/// [`GatewayError::retryable`], which uses it).
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429 | 500..=599)
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing API key: send `Authorization: Bearer <key>` or `x-api-key`")]
    MissingKey,
    #[error("invalid API key")]
    InvalidKey,
    #[error("the API key expired")]
    ExpiredKey,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A guardrail blocked the request (or the answer).
    #[error("{message}")]
    PolicyViolation { guardrail: String, message: String },
    /// A policy of the key or its team forbids the request.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("the key may not use model `{0}`")]
    ModelNotAllowed(String),
    #[error("the model `{0}` does not exist")]
    UnknownModel(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The request body did not arrive in time.
    #[error("the request body did not arrive within {0:?} (server.body_timeout_ms)")]
    BodyTimeout(Duration),
    #[error("rate limit exceeded: {kind}; retry after {retry_after:?}")]
    RateLimited { kind: LimitKind, retry_after: Duration },
    #[error("provider `{0}` queue is full")]
    QueueFull(String),
    #[error("provider `{provider}` answered {status}: {message}")]
    UpstreamStatus { provider: String, status: u16, message: String, retry_after: Option<u64> },
    #[error("provider `{provider}` could not be reached: {message}")]
    UpstreamConnect { provider: String, message: String },
    #[error("provider `{provider}` timed out ({phase})")]
    UpstreamTimeout { provider: String, phase: &'static str },
    #[error("provider `{provider}` sent an invalid response: {message}")]
    UpstreamInvalid { provider: String, message: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// A named thing (a file, a batch) that does not exist for this caller.
    #[error("{0}")]
    Missing(String),
    /// Work skipped because the caller cancelled it (a Batch API item).
    #[error("{0}")]
    Cancelled(String),
    /// A change that clashes with what exists (a prompt defined twice, or in the config).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the classifier says about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub status: u16,
    /// OpenAI `error.type`
    pub kind: &'static str,
    /// OpenAI `error.code`, also the metric label.
    pub code: &'static str,
}

impl GatewayError {
    /// The one exhaustive mapping from error to (status, type, code).
    pub fn class(&self) -> Class {
        use GatewayError::*;
        let (status, kind, code) = match self {
            BadRequest(_) => (400, "invalid_request_error", "invalid_request"),
            PolicyViolation { .. } => (400, "invalid_request_error", "content_policy_violation"),
            MissingKey => (401, "authentication_error", "missing_api_key"),
            InvalidKey => (401, "authentication_error", "invalid_api_key"),
            ExpiredKey => (401, "authentication_error", "expired_api_key"),
            InvalidToken(_) => (401, "authentication_error", "invalid_token"),
            Forbidden { code, .. } => (403, "permission_error", *code),
            ModelNotAllowed(_) => (403, "permission_error", "model_not_allowed"),
            UnknownModel(_) => (404, "invalid_request_error", "model_not_found"),
            NotFound | Missing(_) => (404, "invalid_request_error", "not_found"),
            Cancelled(_) => (409, "invalid_request_error", "batch_cancelled"),
            Conflict { code, .. } => (409, "invalid_request_error", *code),
            TooLarge(_) => (413, "invalid_request_error", "request_too_large"),
            BodyTimeout(_) => (408, "invalid_request_error", "request_timeout"),
            RateLimited { kind, .. } => (429, "rate_limit_error", kind.code()),
            QueueFull(_) => (503, "server_error", "queue_full"),
            UpstreamStatus { status, .. } => match status {
                400 | 404 | 422 => (400, "invalid_request_error", "upstream_rejected"),
                413 => (413, "invalid_request_error", "upstream_too_large"),
                429 => (429, "rate_limit_error", "upstream_rate_limited"),
                _ => (502, "api_error", "upstream_error"),
            },
            UpstreamConnect { .. } => (502, "api_error", "upstream_unreachable"),
            UpstreamInvalid { .. } => (502, "api_error", "upstream_invalid_response"),
            UpstreamTimeout { .. } => (504, "api_error", "upstream_timeout"),
            Unavailable(_) => (503, "server_error", "unavailable"),
            Internal(_) => (500, "server_error", "internal_error"),
        };
        Class { status, kind, code }
    }

    /// Whether trying again (later, or on another target) may succeed: connection
    /// failures, timeouts, broken answers, and provider statuses 408, 409, 429 and 5xx
    /// (Anthropic's 529 arrives here as 503). What the request itself got wrong, or what
    /// the gateway's own policy refused, is not.
    pub fn retryable(&self) -> bool {
        use GatewayError::*;
        match self {
            UpstreamStatus { status, .. } => retryable_status(*status),
            UpstreamConnect { .. } | UpstreamTimeout { .. } | UpstreamInvalid { .. } => true,
            QueueFull(_) | Unavailable(_) => true,
            BadRequest(_)
            | PolicyViolation { .. }
            | MissingKey
            | InvalidKey
            | ExpiredKey
            | InvalidToken(_)
            | Forbidden { .. }
            | ModelNotAllowed(_)
            | UnknownModel(_)
            | TooLarge(_)
            | BodyTimeout(_)
            | RateLimited { .. }
            | NotFound
            | Missing(_)
            | Cancelled(_)
            | Conflict { .. }
            | Internal(_) => false,
        }
    }

    /// Seconds the client should wait, when the error says so.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).map(|s| s.max(1))
            }
            GatewayError::QueueFull(_) => Some(1),
            GatewayError::UpstreamStatus { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// `{"error":{"message","type","code","param"}}`
    pub fn body(&self) -> serde_json::Value {
        let c = self.class();
        json!({"error": {"message": self.to_string(), "type": c.kind, "code": c.code, "param": null}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let up = |status| GatewayError::UpstreamStatus {
            provider: "p".into(),
            status,
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(GatewayError::BadRequest("x".into()).class().status, 400);
        assert_eq!(GatewayError::InvalidKey.class().status, 401);
        assert_eq!(GatewayError::ModelNotAllowed("m".into()).class().status, 403);
        assert_eq!(GatewayError::UnknownModel("m".into()).class().status, 404);
        assert_eq!(GatewayError::TooLarge(1).class().status, 413);
        assert_eq!(up(500).class().status, 502);
        assert_eq!(up(401).class().status, 502, "a bad provider credential is the gateway's problem");
        assert_eq!(up(400).class().status, 400);
        assert_eq!(up(429).class().status, 429);
        assert_eq!(GatewayError::QueueFull("p".into()).class().status, 503);
        let t = GatewayError::UpstreamTimeout { provider: "p".into(), phase: "first byte" };
        assert_eq!(t.class().status, 504);
        assert!(up(503).retryable() && up(429).retryable() && t.retryable());
        assert!(!up(400).retryable() && !up(401).retryable() && !GatewayError::InvalidKey.retryable());
        let body = t.body();
        assert_eq!(body["error"]["code"], "upstream_timeout");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("timed out")));
    }
}
