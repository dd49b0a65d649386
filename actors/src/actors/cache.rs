//! Exact response cache in sled: key = SHA-256 of the alias and the normalized request;
//! entries expire after a TTL, and the oldest are evicted above a size cap.

use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::messages::{forward, CacheDecision, CacheKey, CachedResponse, Job, Put};
use crate::store::{decode, encode, Store};
use crate::types::{unix_ms, Endpoint};

/// Hash of what makes two requests the same: endpoint, alias and the normalized body
/// (serde_json sorts object keys; stream flags are removed by the caller).
pub fn cache_key(endpoint: Endpoint, alias: &str, normalized: &serde_json::Value) -> CacheKey {
    let mut h = Sha256::new();
    h.update(endpoint.as_str().as_bytes());
    h.update([0]);
    h.update(alias.as_bytes());
    h.update([0]);
    h.update(normalized.to_string().as_bytes());
    h.finalize().into()
}

/// A stored entry (entries of an earlier layout do not decode and are dropped when met).
#[derive(Serialize, Deserialize)]
struct Entry {
    expires_ms: u64,
    stored_ms: u64,
    alias: String,
    response: CachedResponse,
}

/// Change the size cap (config reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetCapacity(pub u64);

/// Entries of these many bytes were removed outside the actor ([`clear`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget(pub u64);

/// Removes every entry, or those of `alias` (and any that cannot be read), from the
/// store: how many, and their bytes (for [`Forget`]). Runs off the engine thread.
pub fn clear(store: &Store, alias: Option<&str>) -> (usize, u64) {
    let (mut removed, mut bytes) = (0, 0);
    for item in store.cache.iter() {
        let Ok((k, v)) = item else { continue };
        let drop_it = match (alias, decode::<Entry>(&v)) {
            (None, _) | (_, Err(_)) => true,
            (Some(a), Ok(e)) => e.alias == a,
        };
        if drop_it {
            if let Ok(Some(old)) = store.cache.remove(&k) {
                removed += 1;
                bytes += old.len() as u64;
            }
        }
    }
    (removed, bytes)
}

pub struct Cache {
    store: Store,
    /// Next admission stage; `None` in unit tests.
    router: Option<Recipient<Job>>,
    max_bytes: u64,
    bytes: u64,
    seq: u64,
}

impl Cache {
    pub fn new(store: Store, max_bytes: u64) -> Cache {
        let bytes = store.cache.iter().values().flatten().map(|v| v.len() as u64).sum();
        let seq = store
            .cache_order
            .last()
            .ok()
            .flatten()
            .and_then(|(k, _)| k.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
            .map_or(0, |s| s + 1);
        Cache { store, router: None, max_bytes, bytes, seq }
    }

    pub fn get(&mut self, key: &CacheKey) -> Option<CachedResponse> {
        let raw = self.store.cache.get(key).ok()??;
        match decode::<Entry>(&raw) {
            Ok(e) if e.expires_ms > unix_ms() => Some(e.response),
            _ => {
                // expired or unreadable: drop it
                if self.store.cache.remove(key).ok().flatten().is_some() {
                    self.bytes = self.bytes.saturating_sub(raw.len() as u64);
                }
                None
            }
        }
    }

    pub fn put(&mut self, key: CacheKey, alias: String, response: CachedResponse, ttl: Duration) {
        let now = unix_ms();
        let entry = Entry { expires_ms: now + ttl.as_millis() as u64, stored_ms: now, alias, response };
        let Ok(value) = encode(&entry) else { return };
        if value.len() as u64 > self.max_bytes {
            return;
        }
        let len = value.len() as u64;
        match self.store.cache.insert(key, value) {
            Ok(Some(old)) => self.bytes = self.bytes.saturating_sub(old.len() as u64),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cache write failed");
                return;
            }
        }
        self.bytes += len;
        let mut order = [0u8; 40];
        order[..8].copy_from_slice(&self.seq.to_be_bytes());
        order[8..].copy_from_slice(&key);
        self.seq += 1;
        let _ = self.store.cache_order.insert(order, &[]);
        self.evict();
    }

    /// Removes the oldest entries until the cache fits its cap.
    fn evict(&mut self) {
        while self.bytes > self.max_bytes {
            let Ok(Some((order, _))) = self.store.cache_order.pop_min() else {
                break;
            };
            let Some(key) = order.get(8..) else { continue };
            if let Ok(Some(old)) = self.store.cache.remove(key) {
                self.bytes = self.bytes.saturating_sub(old.len() as u64);
            }
        }
    }

    /// Sets the admission stage that misses go to.
    pub fn with_router(mut self, router: Recipient<Job>) -> Cache {
        self.router = Some(router);
        self
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Actor for Cache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
    }
}

/// Admission stage: a hit answers the job; a miss goes on to the router.
impl Handler<Job> for Cache {
    type Result = ();

    fn handle(&mut self, Job(job): Job, ctx: &mut Self::Context) {
        let hit = job.cache_key.as_ref().and_then(|k| self.get(k));
        let span = crate::telemetry::stage(&job.span, "switchyard.cache");
        if !span.is_disabled() {
            span.record("switchyard.result", if hit.is_some() { "hit" } else { "miss" });
        }
        match (hit, &self.router) {
            (Some(hit), _) => job.admit(CacheDecision::Hit(hit), None),
            (None, Some(router)) => forward(ctx, router, Job(job), "router"),
            (None, None) => {
                let decision = job.cache_key.map_or(CacheDecision::Bypass, CacheDecision::Miss);
                job.admit(decision, None)
            }
        }
    }
}

impl Handler<Put> for Cache {
    type Result = ();

    fn handle(&mut self, msg: Put, _: &mut Self::Context) {
        self.put(msg.key, msg.alias, msg.response, msg.ttl);
    }
}

impl Handler<Forget> for Cache {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Self::Context) {
        self.bytes = self.bytes.saturating_sub(msg.0);
    }
}

impl Handler<SetCapacity> for Cache {
    type Result = ();

    fn handle(&mut self, msg: SetCapacity, _: &mut Self::Context) {
        self.max_bytes = msg.0;
        self.evict();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::types::Usage;

    fn response(n: usize) -> CachedResponse {
        CachedResponse {
            body: vec![b'x'; n],
            provider: "p".into(),
            upstream_model: "m".into(),
            usage: Usage { input: 1, output: 2, ..Usage::default() },
        }
    }

    #[test]
    fn key_ignores_field_order_and_separates_aliases() {
        let a = cache_key(Endpoint::Chat, "m", &json!({"a": 1, "b": 2}));
        let b = cache_key(Endpoint::Chat, "m", &serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, cache_key(Endpoint::Chat, "other", &json!({"a": 1, "b": 2})));
        assert_ne!(a, cache_key(Endpoint::Embeddings, "m", &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn hit_expiry_and_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut c = Cache::new(store, 3_000);
        c.put([1; 32], "m".into(), response(1000), Duration::from_secs(60));
        assert_eq!(c.get(&[1; 32]), Some(response(1000)));
        c.put([2; 32], "m".into(), response(10), Duration::from_millis(0));
        assert_eq!(c.get(&[2; 32]), None, "expired");
        c.put([3; 32], "m".into(), response(1000), Duration::from_secs(60));
        c.put([4; 32], "m".into(), response(1000), Duration::from_secs(60));
        assert!(c.bytes() <= 3_000);
        assert_eq!(c.get(&[1; 32]), None, "oldest evicted above the cap");
        assert!(c.get(&[4; 32]).is_some());
    }

    #[test]
    fn clear_all_or_one_alias() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut c = Cache::new(store.clone(), 1 << 20);
        c.put([1; 32], "a".into(), response(10), Duration::from_secs(60));
        c.put([2; 32], "b".into(), response(10), Duration::from_secs(60));
        c.put([3; 32], "b".into(), response(10), Duration::from_secs(60));
        store.cache.insert([4; 32], b"an entry of an earlier layout".to_vec()).unwrap();
        let (n, bytes) = clear(&store, Some("b"));
        assert_eq!(n, 3, "b's two, and the unreadable one");
        assert!(bytes > 0);
        assert!(c.get(&[1; 32]).is_some() && c.get(&[2; 32]).is_none());
        assert_eq!(clear(&store, None).0, 1);
        assert!(store.cache.is_empty());
    }

    #[test]
    fn entries_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut c = Cache::new(store.clone(), 1 << 20);
            c.put([9; 32], "m".into(), response(5), Duration::from_secs(60));
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let mut c = Cache::new(store, 1 << 20);
        assert!(c.bytes() > 0);
        assert!(c.get(&[9; 32]).is_some());
    }

    #[actix_rt::test]
    async fn admission_stage_answers_hits_and_reports_misses() {
        use crate::actors::messages::{CacheDecision, JobState};
        use crate::actors::rate_limiter::RateLimiter;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = Cache::new(store, 1 << 20).start();
        cache
            .send(Put { key: [9; 32], alias: "m".into(), response: response(5), ttl: Duration::from_secs(60) })
            .await
            .unwrap();
        // the limiter (no further stages) issues the ticket a job needs
        let limiter = RateLimiter::default().start();
        for (key, hit) in [([9u8; 32], true), ([8u8; 32], false)] {
            let (job, rx) = JobState::create(
                "k".into(),
                Default::default(),
                0,
                "m".into(),
                switchyard_config::Priority::Normal,
                Some(key),
            );
            // run the limiter stage by hand, then hand the job to the cache
            let crate::actors::messages::Job(mut state) = job;
            state.rate = Some(Default::default());
            let (tjob, trx) = JobState::create(
                "k".into(),
                Default::default(),
                0,
                "m".into(),
                switchyard_config::Priority::Normal,
                None,
            );
            limiter.send(tjob).await.unwrap();
            state.ticket = Some(trx.await.unwrap().unwrap().ticket);
            cache.send(crate::actors::messages::Job(state)).await.unwrap();
            let admission = rx.await.unwrap().unwrap();
            match admission.cache {
                CacheDecision::Hit(r) => assert!(hit && r == response(5)),
                CacheDecision::Miss(k) => assert!(!hit && k == key),
                CacheDecision::Bypass => panic!("a keyed job is never a bypass"),
            }
        }
    }
}
