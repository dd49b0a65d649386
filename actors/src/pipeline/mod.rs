//! The request path, shared by every ingress: parse, authorize, limit, cache, route,
//! acquire a provider slot, call, meter. One [`Engine`] holds the actors' addresses and
//! the current config snapshot, which a reload swaps atomically; requests in flight keep
//! the snapshot they started with.

mod admit;
mod call;
mod context;
mod count;
mod endpoints;
mod external;
mod finish;
pub mod jwt;
mod outcome;
mod relay;
pub mod request_log;
mod runtime;
mod second_opinion;
pub mod semantic;
mod shaping;

pub mod vkeys;

pub use self::context::{credential, JobHooks, RequestCtx};
pub use self::count::Counted;
pub use self::outcome::{CacheStatus, Failure, Outcome, OutcomeBody, SseStream};
use self::runtime::seed_spend;
pub use self::runtime::{KeyEntry, ProviderHandle, Runtime};

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwap;
use switchyard_config::Config;

pub use self::finish::{access_refused, record_overhead, Finisher, InflightGuard};
use crate::actors::accounting::{Accounting, Flush, RecordSink};
use crate::actors::cache::{Cache, SetCapacity};
use crate::actors::messages::NextStages;
use crate::actors::rate_limiter::{RateLimiter, SeedSpend};
use crate::actors::router::{Router, UpdateModels};
pub use crate::actors::EngineThread;
use crate::store::Store;
use crate::types::UsageRecord;
use crate::GatewayError;

pub struct Engine {
    runtime: ArcSwap<Runtime>,
    router: Addr<Router>,
    limiter: Addr<RateLimiter>,
    cache: Addr<Cache>,
    /// Where finished requests fill the cache (made once: requests share it).
    cache_put: crate::actors::messages::To<crate::actors::messages::Put>,
    accounting: Addr<Accounting>,
    sink: RecordSink,
    engine_thread: EngineThread,
    vkeys: Arc<vkeys::VirtualKeys>,
    /// The prompt registry (config and admin API).
    prompts: Arc<crate::prompts::Prompts>,
    /// Experiments (config and admin API).
    experiments: Arc<crate::prompts::experiments::Experiments>,
    /// Limits and budgets shared with other instances (NATS key-value), once connected.
    shared: arc_swap::ArcSwapOption<crate::actors::shared_limits::SharedLimits>,
    /// Where request logs go (with NATS).
    request_logs: arc_swap::ArcSwapOption<request_log::RequestLogs>,
    /// The semantic cache, opened when a config first turns it on.
    semantic: std::sync::OnceLock<Arc<crate::semantic::SemanticIndex>>,
    /// The key its embedding calls run as.
    semantic_key: Arc<KeyEntry>,
}

fn mailbox(e: MailboxError) -> GatewayError {
    GatewayError::Unavailable(format!("engine is shutting down: {e}"))
}

impl Engine {
    /// Starts the actors: router, rate limiter, cache and the provider workers on one
    /// engine thread (their handlers are short and never block), accounting on an
    /// arbiter of its own (its commits fsync). Must be called inside a running actix
    /// `System`.
    pub fn start(
        config: Arc<Config>,
        store: Store,
        seed: Option<u64>,
        engine_thread: EngineThread,
    ) -> Result<Arc<Engine>, GatewayError> {
        let ledger_arbiter = Arbiter::new().handle();
        // the admission chain, built back to front: workers <- router <- cache <- limiter
        let table = vkeys::load_table(&store, &config)?;
        let table: vkeys::VirtualTable = Arc::new(ArcSwap::from_pointee(table));
        let prompts = Arc::new(crate::prompts::Prompts::load(store.clone(), &config)?);
        let experiments = Arc::new(crate::prompts::experiments::Experiments::load(store.clone(), &config, &prompts)?);
        let sticky = experiments.sticky_headers.clone();
        let runtime = Self::build_runtime(config.clone(), None, &engine_thread, table.clone(), sticky)?;
        let (cfg, workers, health) = (config.clone(), runtime.workers(), runtime.health());
        let router = engine_thread.start(move |_| Router::new(&cfg, workers, seed).with_health(health));
        let (cache_store, max_bytes, next) = (store.clone(), config.cache.max_bytes, router.clone());
        let cache = engine_thread.start(move |_| Cache::new(cache_store, max_bytes).with_router(next.recipient()));
        let next = NextStages { cache: cache.clone().recipient(), router: router.clone().recipient() };
        let limiter = engine_thread.start(move |_| RateLimiter::new(next));
        // budgets go on from what the ledger says was spent this period
        let seed = seed_spend(&config, &table.load(), &store)?;
        if !seed.is_empty() {
            limiter.try_send(SeedSpend(seed)).map_err(|e| GatewayError::Internal(format!("seeding budgets: {e}")))?;
        }
        let (flush, batch) = (config.server.ledger_flush, config.server.ledger_batch_max);
        let (accounting, sink) = Accounting::start_with_sink(&ledger_arbiter, store.clone(), flush, batch);
        let engine = Arc::new(Engine {
            runtime: ArcSwap::from_pointee(runtime),
            router,
            limiter,
            cache_put: Arc::new(cache.clone().recipient()),
            cache,
            accounting,
            sink,
            engine_thread,
            vkeys: Arc::new(vkeys::VirtualKeys::new(store, table)),
            prompts,
            experiments,
            shared: arc_swap::ArcSwapOption::empty(),
            request_logs: arc_swap::ArcSwapOption::empty(),
            semantic: std::sync::OnceLock::new(),
            semantic_key: semantic::semantic_key(),
        });
        // the semantic cache's entries start loading now, not at the first request
        engine.semantic_cache();
        Ok(engine)
    }

    /// Whether the admission actors are alive. They stop only with the thread they run
    /// on (the HTTP worker that hosts them, with `server.workers` 1 or 2); an engine
    /// without them answers every request 503, so `/readyz` reports it.
    pub fn running(&self) -> bool {
        self.limiter.connected() && self.cache.connected() && self.router.connected()
    }

    /// Whether limits and budgets are shared with other instances now.
    pub fn limits_shared(&self) -> bool {
        self.shared.load().is_some()
    }

    /// From now on, limits and budgets are shared through `s` (see [`shared`]).
    pub fn share_limits(&self, s: Arc<crate::actors::shared_limits::SharedLimits>) {
        self.shared.store(Some(s));
    }

    /// From now on, the requests that ask for it are logged to `logs`.
    pub fn log_requests_to(&self, logs: Arc<request_log::RequestLogs>) {
        self.request_logs.store(Some(logs));
    }

    /// A draft of this request's log entry when its key, team or alias logs requests
    /// (`request` is what goes upstream, made only then).
    pub(super) fn log_draft(
        &self,
        ctx: &RequestCtx,
        alias: &str,
        request: impl FnOnce() -> serde_json::Value,
    ) -> Option<Box<request_log::LogDraft>> {
        // without NATS there is no sink: nothing to look up
        let logs = self.request_logs.load_full()?;
        ctx.logs_requests(alias).then(|| request_log::LogDraft::new(logs, request()))
    }

    /// Virtual keys: the admin API's create, list, update and revoke.
    pub fn virtual_keys(&self) -> &vkeys::VirtualKeys {
        &self.vkeys
    }

    /// The prompt registry: the admin API's prompts and their versions and labels.
    pub fn prompts(&self) -> &crate::prompts::Prompts {
        &self.prompts
    }

    /// Experiments: the admin API's list, status changes and reports.
    pub fn experiments(&self) -> &crate::prompts::experiments::Experiments {
        &self.experiments
    }

    /// The store (reports read the ledger through it).
    pub fn store(&self) -> &Store {
        &self.vkeys.store
    }

    /// Every key's team (config keys, and virtual keys revoked or not), for reports
    /// grouped by team.
    pub fn teams_of_keys(&self) -> HashMap<String, String> {
        let rt = self.runtime();
        let mut teams: HashMap<String, String> =
            rt.config.keys.iter().filter_map(|k| k.team.clone().map(|t| (k.id.clone(), t))).collect();
        if let Ok(all) = self.vkeys.list() {
            teams.extend(all.into_iter().filter_map(|k| k.team.map(|t| (k.id, t))));
        }
        teams
    }

    /// The current config snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swaps in a new (already validated) config. Requests in flight finish on the old one.
    pub async fn reload(&self, config: Arc<Config>) -> Result<(), GatewayError> {
        let old = self.runtime.load_full();
        // virtual keys are checked again against the new teams and aliases
        let table = vkeys::load_table(&self.vkeys.store, &config)?;
        self.vkeys.table.store(Arc::new(table));
        self.prompts.rebuild(&config)?;
        self.experiments.rebuild(&config, &self.prompts)?;
        let sticky = self.experiments.sticky_headers.clone();
        let rt =
            Self::build_runtime(config.clone(), Some(&old), &self.engine_thread, self.vkeys.table.clone(), sticky)?;
        let update = UpdateModels { config: config.clone(), workers: rt.workers(), health: rt.health() };
        self.router.send(update).await.map_err(mailbox)?;
        self.cache.send(SetCapacity(config.cache.max_bytes)).await.map_err(mailbox)?;
        if let (Some(index), Some(s)) = (self.semantic.get(), &config.cache.semantic) {
            index.set_max_entries(s.max_entries);
        }
        self.runtime.store(Arc::new(rt));
        self.semantic_cache();
        Ok(())
    }

    /// Writes a record that the request path left to its caller (a durable job's final
    /// failure, see [`JobHooks::defer_failures`]) and waits until it is on disk.
    pub async fn record_usage(&self, record: UsageRecord) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sink.record(crate::actors::accounting::Record(record, Some(tx), tracing::Span::none()));
        let _ = rx.await;
    }

    /// `DELETE /admin/cache`: the exact cache's entries (every one, or one alias's: it
    /// is not scoped) and the semantic cache's (every one, or those of an alias, a
    /// scope, or both). How many of each were removed.
    pub async fn clear_cache(
        &self,
        alias: Option<String>,
        scope: Option<String>,
    ) -> Result<(usize, usize), GatewayError> {
        let store = self.store().clone();
        let semantic = self.semantic_cache().cloned();
        let (exact, semantic) = tokio::task::spawn_blocking(move || {
            let exact = if scope.is_none() { crate::actors::cache::clear(&store, alias.as_deref()) } else { (0, 0) };
            let semantic = match semantic {
                Some(index) => index.clear(alias.as_deref(), scope.as_deref()),
                // off: whatever an earlier config stored goes when everything is cleared
                None if alias.is_none() && scope.is_none() => {
                    let n = store.semantic.len();
                    let _ = store.semantic.clear();
                    n
                }
                None => 0,
            };
            (exact, semantic)
        })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
        self.cache.send(crate::actors::cache::Forget(exact.1)).await.map_err(mailbox)?;
        Ok((exact.0, semantic))
    }

    /// Commits buffered usage records now (graceful shutdown).
    pub async fn flush_ledger(&self) -> Result<usize, GatewayError> {
        self.accounting.send(Flush).await.map_err(mailbox)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn config() -> Arc<Config> {
        let text = "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nalias = \"fast\"\n\
                    targets = [{ provider = \"m\", model = \"gpt-4o-mini\" }]\n\
                    [[keys]]\nid = \"k\"\nkey = \"sk-test-key-01\"\nmodels = [\"fast\"]\n";
        Arc::new(switchyard_config::load_str(text, std::path::Path::new("."), &|_| None).unwrap())
    }

    #[actix_rt::test]
    async fn an_engine_whose_host_is_gone_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let (thread, host) = EngineThread::deferred();
        let engine = Engine::start(config(), Store::open(dir.path()).unwrap(), None, thread).unwrap();
        host.host_here();
        assert!(engine.running());

        let dir = tempfile::tempdir().unwrap();
        let (thread, host) = EngineThread::deferred();
        let engine = Engine::start(config(), Store::open(dir.path()).unwrap(), None, thread).unwrap();
        drop(host);
        assert!(!engine.running());
        // a request reaching the stopped engine is answered with a 503, not left waiting
        let headers = |name: &str| (name == "authorization").then_some("Bearer sk-test-key-01");
        let ctx = RequestCtx::from_headers(engine.runtime(), "r".into(), Instant::now(), headers).unwrap();
        let body = br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
        let failure = engine.chat(&ctx, body).await.err().unwrap();
        assert_eq!(failure.error.class().status, 503, "{}", failure.error);
    }

    /// More requests than the limiter's mailbox holds arrive while the engine's thread
    /// cannot run (here: not hosted yet): those that find it full wait for room instead
    /// of failing, and every one is answered once the engine runs.
    #[actix_rt::test]
    async fn requests_beyond_a_full_limiter_mailbox_wait_for_room() {
        let text = "[[providers]]\nname = \"m\"\nkind = \"mock\"\nconcurrency = 8192\nqueue_size = 8192\n\
                    [[models]]\nalias = \"fast\"\ntargets = [{ provider = \"m\", model = \"gpt-4o-mini\" }]\n\
                    [[keys]]\nid = \"k\"\nkey = \"sk-test-key-01\"\nmodels = [\"fast\"]\n";
        let config = Arc::new(switchyard_config::load_str(text, std::path::Path::new("."), &|_| None).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let (thread, host) = EngineThread::deferred();
        let engine = Arc::new(Engine::start(config, Store::open(dir.path()).unwrap(), None, thread).unwrap());
        let n = crate::actors::MAILBOX + 50;
        let requests: Vec<_> = (0..n)
            .map(|i| {
                let engine = engine.clone();
                actix_rt::spawn(async move {
                    let headers = |name: &str| (name == "authorization").then_some("Bearer sk-test-key-01");
                    let ctx =
                        RequestCtx::from_headers(engine.runtime(), format!("r{i}"), Instant::now(), headers).unwrap();
                    let body = br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
                    engine.chat(&ctx, body).await.map(|_| ()).map_err(|f| f.error.to_string())
                })
            })
            .collect();
        // every request has run up to the limiter's mailbox: MAILBOX of them are in it,
        // the rest wait for room
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(requests.iter().all(|r| !r.is_finished()), "nothing is answered before the engine runs");
        host.host_here();
        for r in requests {
            assert_eq!(r.await.unwrap(), Ok(()));
        }
    }
}
