//! The request context every ingress builds before the body is read: the runtime
//! snapshot, the authenticated key, priority, cache control, forwarded headers, and a
//! durable job's hooks.

use std::sync::Arc;
use std::time::Instant;

use switchyard_config::{Api, Priority};

use super::{KeyEntry, Runtime};
use crate::types::UsageRecord;
use crate::GatewayError;

/// What the ingress knows about a request before its body is parsed.
pub struct RequestCtx {
    /// The config snapshot this request is served with, start to end.
    pub runtime: Arc<Runtime>,
    pub request_id: String,
    pub key: Arc<KeyEntry>,
    pub priority: Priority,
    /// `cache-control: no-cache`
    pub no_cache: bool,
    /// Client headers that some provider forwards (lower-case names).
    pub headers: Vec<(String, String)>,
    pub received: Instant,
    /// Set for a durable NATS job (see [`JobHooks`]).
    pub job: Option<Arc<JobHooks>>,
    /// What the prompt and its policies did to the request (set once, when they did).
    pub shaped: std::sync::OnceLock<Arc<crate::prompts::shape::Shaped>>,
    /// The request's span (disabled when traces are off): the parent of its steps'.
    pub span: tracing::Span,
}

/// What a durable job changes on the request path: it takes at most the provider's
/// `jobs_share` of its slots, its usage record is keyed by the job id (written once
/// however often the job is delivered) and on disk before the answer, and the record is
/// handed back to the job runner, which publishes it.
pub struct JobHooks {
    /// The job id: the request id and the ledger's idempotency key.
    pub id: String,
    /// This delivery's number (1 for the first).
    pub attempt: u32,
    /// A failed attempt is not written to the ledger: the job will be retried, and the
    /// runner writes the final outcome with [`Engine::record_usage`].
    pub defer_failures: bool,
    /// Nothing is written: the runner splits this call's record between the jobs it
    /// served (a coalesced embeddings call) and writes theirs.
    pub defer_all: bool,
    /// The record the finisher made.
    pub record: std::sync::OnceLock<UsageRecord>,
    /// A Batch API item: the key needs the `batch` API rather than the item's own.
    pub batch: bool,
}

impl RequestCtx {
    /// Builds the context from request headers, whichever ingress they came from:
    /// `lookup` returns a header's value by its lower-case name. Authenticates
    /// (`Authorization: Bearer` or `x-api-key`) and reads `x-switchyard-priority`
    /// and `cache-control`.
    pub fn from_headers<'a>(
        runtime: Arc<Runtime>,
        request_id: String,
        received: Instant,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<RequestCtx, GatewayError> {
        let auth = crate::telemetry::stage(&crate::telemetry::current(), "switchyard.auth");
        let secret = credential(&lookup).filter(|s| !s.is_empty()).ok_or(GatewayError::MissingKey);
        let key = secret.and_then(|s| runtime.authenticate(s));
        if let Err(e) = &key {
            crate::telemetry::failed(&auth, e.class().code);
        }
        let key = key?;
        drop(auth);
        Self::for_key(runtime, request_id, received, key, lookup)
    }

    /// The context of work done for `key` (already known: a Batch API item runs as its
    /// batch's owner), reading the rest from the headers as [`RequestCtx::from_headers`].
    pub fn for_key<'a>(
        runtime: Arc<Runtime>,
        request_id: String,
        received: Instant,
        key: Arc<KeyEntry>,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<RequestCtx, GatewayError> {
        let priority = match lookup("x-switchyard-priority") {
            None => key.key.priority.max(key.max_priority()),
            Some(v) => {
                let p = Priority::parse(v).ok_or_else(|| {
                    GatewayError::BadRequest("`x-switchyard-priority` must be high, normal or low".into())
                })?;
                if p < key.max_priority() {
                    return Err(GatewayError::Forbidden {
                        code: "priority_not_allowed",
                        message: format!("the key may ask for priority {} at most", key.max_priority().as_str()),
                    });
                }
                p
            }
        };
        let no_cache =
            lookup("cache-control").is_some_and(|v| v.split(',').any(|d| matches!(d.trim(), "no-cache" | "no-store")));
        let mut headers: Vec<(String, String)> = runtime
            .forward_headers
            .iter()
            .filter_map(|name| lookup(name).map(|v| (name.clone(), v.to_string())))
            .collect();
        for name in runtime.sticky_headers.load().iter() {
            if !runtime.forward_headers.contains(name) {
                if let Some(v) = lookup(name) {
                    headers.push((name.clone(), v.to_string()));
                }
            }
        }
        let span = crate::telemetry::current();
        if !span.is_disabled() {
            span.record("switchyard.request_id", request_id.as_str());
            span.record("switchyard.key_id", &*key.id);
        }
        Ok(RequestCtx {
            runtime,
            request_id,
            key,
            priority,
            no_cache,
            headers,
            received,
            job: None,
            shaped: Default::default(),
            span,
        })
    }
}

impl RequestCtx {
    /// The context of a call the gateway makes for this request (a guardrail's
    /// classifier, the semantic cache's embedding): request id `ID-suffix`, as `key`,
    /// its steps under a span `span` of this request's.
    pub(super) fn inner(&self, suffix: &str, key: Arc<KeyEntry>, span: &'static str) -> RequestCtx {
        RequestCtx {
            runtime: self.runtime.clone(),
            request_id: format!("{}-{suffix}", self.request_id),
            key,
            priority: self.priority,
            no_cache: false,
            headers: Vec::new(),
            received: Instant::now(),
            job: None,
            shaped: Default::default(),
            span: crate::telemetry::stage(&self.span, span),
        }
    }

    /// The API a request uses, for the key's `endpoints`: `batch` for a Batch API item.
    pub fn api(&self, own: Api) -> Api {
        if self.job.as_ref().is_some_and(|j| j.batch) {
            Api::Batch
        } else {
            own
        }
    }
}

/// `Authorization: Bearer <key>` or `x-api-key: <key>`.
pub fn credential<'a>(lookup: &impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    if let Some(v) = lookup("authorization") {
        let v = v.trim();
        if let Some(rest) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(rest.trim());
        }
    }
    lookup("x-api-key").map(str::trim)
}
