//! The semantic cache on the request path: which chat requests qualify, what must match
//! exactly (the partition), the prompt's embedding within its time budget, the lookup,
//! and the fill once the answer is known.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use switchyard_config::{SemanticPolicy, SemanticScope};

use super::{CacheStatus, Engine, KeyEntry, OutcomeBody, RequestCtx};
use crate::metrics::{SEMANTIC_CACHE_EMBED_SECONDS, SEMANTIC_CACHE_REQUESTS_TOTAL, SEMANTIC_CACHE_SIMILARITY};
use crate::semantic::{Lookup, NewEntry, Partition, Query, SemanticIndex};
use crate::types::ChatRequest;

/// The id under which the semantic cache's own embedding calls are recorded.
pub const SEMANTIC_KEY_ID: &str = "switchyard:semantic-cache";

/// A qualifying request: what its lookup and fill need.
pub(super) struct Ask {
    pub policy: SemanticPolicy,
    pub partition: Partition,
    pub scope: String,
    pub alias: String,
    /// The last user message: what is embedded and compared.
    pub text: String,
}

/// What the cache fills once the answer is known (held by the finisher).
pub struct Fill {
    pub index: Arc<SemanticIndex>,
    pub entry: NewEntry,
}

fn count(alias: &str, result: &'static str) {
    metrics::counter!(SEMANTIC_CACHE_REQUESTS_TOTAL, "alias" => alias.to_string(), "result" => result).increment(1);
}

impl Engine {
    /// The semantic cache, opened at first use (when a config turns it on).
    pub fn semantic_cache(&self) -> Option<&Arc<SemanticIndex>> {
        let max = self.runtime().config.cache.semantic.as_ref()?.max_entries;
        Some(self.semantic.get_or_init(|| SemanticIndex::open(self.store().semantic.clone(), max)))
    }

    /// Whether `req` (after guardrails) qualifies for the semantic cache of `alias`, and
    /// what it is looked up by.
    pub(super) fn semantic_ask(&self, ctx: &RequestCtx, alias: &str, req: &ChatRequest) -> Option<Ask> {
        let rt = &ctx.runtime;
        let settings = rt.config.cache.semantic.as_ref()?;
        let policy = rt.config.model(alias)?.semantic.clone()?;
        let skip = |why: &'static str| {
            count(alias, why);
            None
        };
        if ctx.no_cache {
            return skip("bypass");
        }
        if req.has_tools() && !policy.tools {
            return skip("skipped");
        }
        if req.rest.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
            return skip("skipped");
        }
        if let Some(max) = policy.max_temperature {
            // absent: the providers' default, 1
            let t = req.rest.get("temperature").and_then(Value::as_f64).unwrap_or(1.0);
            if t > max {
                return skip("skipped");
            }
        }
        let last = req.messages.last()?;
        if last.get("role").and_then(Value::as_str) != Some("user") {
            return skip("skipped");
        }
        let text = req.last_user_text();
        if text.trim().is_empty() || text.chars().count() > settings.max_prompt_chars {
            return skip("skipped");
        }
        let mut scope = match (policy.scope, &ctx.key.team) {
            (SemanticScope::Global, _) => "global".to_string(),
            (SemanticScope::Team, Some(t)) => format!("team:{}", t.id),
            // a key without a team keeps its answers to itself
            (SemanticScope::Team | SemanticScope::Key, _) => format!("key:{}", ctx.key.id),
        };
        if policy.per_user {
            if let Some(u) = req.user() {
                scope.push_str("|user:");
                scope.push_str(u);
            }
        }
        let partition = partition(alias, &scope, req);
        Some(Ask { policy, partition, scope, alias: alias.to_string(), text })
    }

    /// The prompt's embedding through the `[cache.semantic]` embeddings alias, within
    /// the time budget: `None` past it or on any failure (counted; the request is then a
    /// miss, never an error). The call goes through this engine as the semantic
    /// cache's own key, so it is metered, limited by the alias and in the ledger.
    pub(super) async fn embed_prompt(&self, ctx: &RequestCtx, ask: &Ask) -> Option<Vec<f32>> {
        let settings = ctx.runtime.config.cache.semantic.as_ref()?;
        let inner = ctx.inner("embed", self.semantic_key.clone(), "switchyard.cache.semantic");
        let body = json!({"model": settings.embeddings, "input": embedded_text(&ask.text)});
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let started = Instant::now();
        let answer = tokio::time::timeout(settings.embed_timeout, self.embeddings(&inner, &bytes)).await;
        metrics::histogram!(SEMANTIC_CACHE_EMBED_SECONDS).record(started.elapsed().as_secs_f64());
        let body = match answer {
            Err(_) => {
                count(&ask.alias, "timeout");
                return None;
            }
            Ok(Err(f)) => {
                count(&ask.alias, "error");
                tracing::warn!(error = %f.error, alias = %settings.embeddings, "semantic cache: the embedding failed; a miss");
                return None;
            }
            Ok(Ok(o)) => match o.body {
                OutcomeBody::Json(b) => b,
                OutcomeBody::Sse(_) => return None,
            },
        };
        let vector = embedding_of(&body);
        if vector.is_none() {
            count(&ask.alias, "error");
            tracing::warn!(alias = %settings.embeddings, "semantic cache: the embeddings answer holds no vector; a miss");
        }
        vector
    }

    /// Looks `ask` up with its `vector` (unit length): the hit's answer, and what the
    /// answer's headers say.
    pub(super) fn semantic_lookup(
        &self,
        ctx: &RequestCtx,
        ask: &Ask,
        vector: &[f32],
    ) -> (Option<crate::actors::messages::CachedResponse>, CacheStatus) {
        let (Some(index), Some(settings)) = (self.semantic_cache(), ctx.runtime.config.cache.semantic.as_ref()) else {
            return (None, CacheStatus::SemanticMiss(None));
        };
        let q = Query {
            partition: &ask.partition,
            vector,
            text: &ask.text,
            threshold: ask.policy.threshold,
            candidates: settings.candidates,
            guards: settings.guards,
        };
        match index.lookup(&q) {
            Lookup::Hit(h) => {
                count(&ask.alias, "hit");
                metrics::histogram!(SEMANTIC_CACHE_SIMILARITY).record(f64::from(h.similarity));
                (Some(h.response), CacheStatus::SemanticHit(h.similarity))
            }
            Lookup::Miss { best, rejected } => {
                count(&ask.alias, if rejected.is_some() { "guard_rejected" } else { "miss" });
                if let Some(b) = best {
                    metrics::histogram!(SEMANTIC_CACHE_SIMILARITY).record(f64::from(b));
                }
                (None, CacheStatus::SemanticMiss(best))
            }
        }
    }

    /// What the finisher stores once the answer is known.
    pub(super) fn semantic_fill(&self, ask: Ask, vector: Vec<f32>) -> Option<Box<Fill>> {
        let index = self.semantic_cache()?.clone();
        let entry = NewEntry {
            partition: ask.partition,
            alias: ask.alias,
            scope: ask.scope,
            text: ask.text,
            vector,
            response: Default::default(),
            ttl: ask.policy.ttl,
        };
        Some(Box::new(Fill { index, entry }))
    }
}

impl Fill {
    /// Stores `response` off the request's thread (sled write and index insert).
    pub fn store(self: Box<Self>, response: crate::actors::messages::CachedResponse) {
        let Fill { index, mut entry } = *self;
        entry.response = response;
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || index.insert(entry));
            }
            Err(_) => index.insert(entry),
        }
    }
}

/// What is embedded: the prompt lower-cased, without the punctuation that ends it (case
/// and a question mark change no meaning, and measured on the tune and dev pairs they
/// moved paraphrases and other questions apart a little).
fn embedded_text(text: &str) -> String {
    text.trim().trim_end_matches(['?', '!', '.', ' ']).to_lowercase()
}

/// The first vector of an OpenAI embeddings answer, unit length.
fn embedding_of(body: &[u8]) -> Option<Vec<f32>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let data = v.get("data")?.as_array()?.first()?.get("embedding")?.as_array()?;
    let mut vector: Vec<f32> = data.iter().map(|x| x.as_f64().map(|f| f as f32)).collect::<Option<_>>()?;
    crate::semantic::normalize(&mut vector).then_some(vector)
}

/// What must match exactly for one request's answer to serve another: the alias, the
/// scope, and the whole request but the last user message's text and the stream flags
/// (system prompt, earlier turns, tools, response format, sampling parameters, a
/// client format's own fields and headers).
fn partition(alias: &str, scope: &str, req: &ChatRequest) -> Partition {
    let mut v = serde_json::to_value(req).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("stream");
        o.remove("stream_options");
        o.remove("user");
        if let Some(last) = o.get_mut("messages").and_then(Value::as_array_mut).and_then(|m| m.last_mut()) {
            if let Some(m) = last.as_object_mut() {
                m.remove("content");
            }
        }
        if let Some(n) = &req.native {
            let mut native = n.body.clone();
            for k in ["stream", "messages", "input", "user", "metadata"] {
                native.remove(k);
            }
            o.insert("native".into(), json!({"body": native, "headers": n.headers}));
        }
    }
    let mut h = Sha256::new();
    for part in ["semantic-v1", alias, scope] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(v.to_string().as_bytes());
    h.finalize().into()
}

/// The key the semantic cache's embedding calls run as: every alias, no limits of its
/// own (the embeddings alias's limits still apply).
pub(super) fn semantic_key() -> Arc<KeyEntry> {
    let key = switchyard_config::Key {
        id: SEMANTIC_KEY_ID.to_string(),
        key_sha256: String::new(),
        models: None,
        limits: Default::default(),
        priority: switchyard_config::Priority::High,
        batch_priority: switchyard_config::Priority::Low,
        team: None,
        endpoints: None,
        max_tokens: None,
        max_priority: switchyard_config::Priority::High,
        budget: None,
        expires_at_ms: None,
        guardrails: Vec::new(),
        log_requests: false,
    };
    Arc::new(KeyEntry::new(key, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_partition_is_everything_but_the_last_prompt_and_the_stream_flags() {
        let base = json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]});
        let p = partition("a", "key:k", &req(base.clone()));
        let mut reworded = base.clone();
        reworded["messages"][1]["content"] = json!("Which city is France's capital?");
        reworded["stream"] = json!(true);
        reworded["stream_options"] = json!({"include_usage": true});
        assert_eq!(p, partition("a", "key:k", &req(reworded)));
        let mut system = base.clone();
        system["messages"][0]["content"] = json!("Be verbose.");
        assert_ne!(p, partition("a", "key:k", &req(system)));
        let mut sampled = base.clone();
        sampled["temperature"] = json!(0.2);
        assert_ne!(p, partition("a", "key:k", &req(sampled)));
        assert_ne!(p, partition("a", "key:other", &req(base.clone())));
        assert_ne!(p, partition("b", "key:k", &req(base)));
    }

    #[test]
    fn an_embeddings_answer_is_read_defensively() {
        let ok = br#"{"data": [{"embedding": [3.0, 4.0]}]}"#;
        assert_eq!(embedding_of(ok), Some(vec![0.6, 0.8]));
        for bad in [
            &b"not json"[..],
            br#"{"data": []}"#,
            br#"{"data": [{"embedding": "AAAA"}]}"#,
            br#"{"data": [{"embedding": [0.0, 0.0]}]}"#,
            br#"{"data": [{"embedding": [1.0, "x"]}]}"#,
            br#"{"error": {"message": "no"}}"#,
        ] {
            assert_eq!(embedding_of(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(embedded_text("  What is it?? "), "what is it");
    }
}
