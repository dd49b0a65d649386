//! Router: model alias -> one target, chosen by the alias's strategy, then the job goes
//! to that provider's worker. Owns its RNG (seedable for tests), its slice of the config,
//! the workers' addresses and the targets' load trackers, swapped (trackers kept) by
//! `UpdateModels` on reload.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use switchyard_config::{Config, Strategy, Target, TokenCounts};

use super::breaker::{Breaker, BreakerSettings};
use super::load::{TargetLoad, TargetSlot};
use super::messages::{forward, CacheDecision, Job, Refusal, RouteDecision, WorkerRef};

/// Why no target was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    UnknownAlias,
    /// Every target was tried already.
    Exhausted,
    /// The untried targets are all at their `max_concurrency`.
    Busy,
}

/// What the choice depends on besides the alias.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickArgs<'a> {
    /// Providers a failed request already tried.
    pub exclude: &'a [String],
    /// Hash of the request's `user` (a sticky `weighted` alias draws with it).
    pub sticky: Option<u64>,
    /// Estimated tokens (the `cost` strategy prices them).
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The stable hash a sticky split draws with.
pub fn sticky_hash(user: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    user.hash(&mut h);
    h.finish()
}

/// Replace the model table and the workers (config reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateModels {
    pub config: Arc<Config>,
    pub workers: HashMap<String, WorkerRef>,
    /// Each provider's health-check breaker.
    pub health: HashMap<String, Arc<Breaker>>,
}

struct Entry {
    target: Target,
    load: Arc<TargetLoad>,
    /// `max_concurrency` and the requests of this alias in flight to the target.
    limit: Option<(u32, Arc<AtomicU32>)>,
    /// USD per million input / output tokens; `None`: no known price.
    price: Option<(f64, f64)>,
}

impl Entry {
    fn full(&self) -> bool {
        self.limit.as_ref().is_some_and(|(max, n)| n.load(Ordering::Relaxed) >= *max)
    }
}

struct Group {
    strategy: Strategy,
    sticky_user: bool,
    targets: Vec<Entry>,
}

pub struct Router {
    groups: HashMap<String, Group>,
    workers: HashMap<String, WorkerRef>,
    /// Providers whose health checks fail are skipped (like targets whose breaker is
    /// open) while another target is available.
    health: HashMap<String, Arc<Breaker>>,
    /// Per (provider, upstream model), kept across reloads that keep the provider's
    /// breaker settings.
    loads: HashMap<(String, String), Arc<TargetLoad>>,
    rng: fastrand::Rng,
}

impl Router {
    pub fn new(config: &Config, workers: HashMap<String, WorkerRef>, seed: Option<u64>) -> Router {
        let rng = match seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        };
        let mut r = Router { groups: HashMap::new(), workers, health: HashMap::new(), loads: HashMap::new(), rng };
        r.load(config);
        r
    }

    pub fn with_health(mut self, health: HashMap<String, Arc<Breaker>>) -> Router {
        self.health = health;
        self
    }

    /// The state of a target (created on first use, and again when the provider's
    /// breaker settings change).
    pub fn target_state(&mut self, provider: &str, model: &str, settings: &BreakerSettings) -> Arc<TargetLoad> {
        let key = (provider.to_string(), model.to_string());
        match self.loads.get(&key) {
            Some(l) if l.settings == *settings => l.clone(),
            _ => {
                let l = Arc::new(TargetLoad::new(provider, model, settings));
                self.loads.insert(key, l.clone());
                l
            }
        }
    }

    /// A target's state as the config has it (benches and tests observe through it).
    pub fn target_load(&mut self, provider: &str, model: &str) -> Arc<TargetLoad> {
        let key = (provider.to_string(), model.to_string());
        match self.loads.get(&key) {
            Some(l) => l.clone(),
            None => self.target_state(provider, model, &BreakerSettings::default()),
        }
    }

    fn load(&mut self, config: &Config) {
        let mut old = std::mem::take(&mut self.groups);
        let mut groups = HashMap::new();
        for m in &config.models {
            let previous = old.remove(&m.alias);
            let mut targets = Vec::new();
            for t in &m.targets {
                // in-flight counts survive a reload that keeps the target's limit
                let kept = previous.as_ref().and_then(|g| {
                    g.targets.iter().find(|e| e.target.provider == t.provider && e.target.model == t.model)
                });
                let limit = t.max_concurrency.map(|max| {
                    let count = kept.and_then(|e| e.limit.as_ref().map(|(_, n)| n.clone()));
                    (max, count.unwrap_or_default())
                });
                let per_mtok = TokenCounts { input: 1_000_000, output: 0, cached_input: 0, cache_write_input: 0 };
                let (input, known) = config.pricing.target_cost(m, Some(t), &t.model, per_mtok);
                let per_mtok = TokenCounts { input: 0, output: 1_000_000, cached_input: 0, cache_write_input: 0 };
                let (output, _) = config.pricing.target_cost(m, Some(t), &t.model, per_mtok);
                let settings = config.provider(&t.provider).map(BreakerSettings::of).unwrap_or_default();
                targets.push(Entry {
                    target: t.clone(),
                    load: self.target_state(&t.provider, &t.model, &settings),
                    limit,
                    price: known.then_some((input, output)),
                });
            }
            groups.insert(m.alias.clone(), Group { strategy: m.strategy, sticky_user: m.sticky_user, targets });
        }
        self.groups = groups;
    }

    /// The choice itself (plain function, benchmarked): a target of `alias` whose
    /// provider is not in `args.exclude` and that is below its `max_concurrency`.
    pub fn pick(&mut self, alias: &str, args: &PickArgs<'_>) -> Result<RouteDecision, NoRoute> {
        let now = crate::types::unix_ms();
        let g = self.groups.get(alias).ok_or(NoRoute::UnknownAlias)?;
        let untried = |e: &Entry| !args.exclude.contains(&e.target.provider);
        if !g.targets.iter().any(untried) {
            return Err(NoRoute::Exhausted);
        }
        let free = |e: &Entry| untried(e) && !e.full();
        let up =
            |e: &Entry| e.load.breaker.allows(now) && self.health.get(&e.target.provider).is_none_or(|h| h.allows(now));
        // open breakers are skipped while another target is available
        let any_up = g.targets.iter().filter(|e| free(e)).any(up);
        let open = |e: &&Entry| free(e) && (!any_up || up(e));
        let candidates = g.targets.iter().filter(open).count();
        if candidates == 0 {
            return Err(NoRoute::Busy);
        }
        let e = match g.strategy {
            Strategy::Failover => g.targets.iter().find(open),
            Strategy::Cost => {
                let cost = |e: &&Entry| match e.price {
                    Some((i, o)) => (i * args.input_tokens as f64 + o * args.output_tokens as f64, false),
                    None => (0.0, true),
                };
                // the first of equally cheap targets (file order) wins
                g.targets.iter().filter(open).min_by(|a, b| {
                    let (ca, cb) = (cost(a), cost(b));
                    ca.1.cmp(&cb.1).then(ca.0.partial_cmp(&cb.0).unwrap_or(std::cmp::Ordering::Equal))
                })
            }
            Strategy::Latency => {
                // power of two choices: two distinct candidates at random, the lower score wins
                let i = self.rng.usize(0..candidates);
                let a = g.targets.iter().filter(open).nth(i);
                if candidates == 1 {
                    a
                } else {
                    let j = (i + 1 + self.rng.usize(0..candidates - 1)) % candidates;
                    let b = g.targets.iter().filter(open).nth(j);
                    match (a, b) {
                        (Some(a), Some(b)) if b.load.score(now) < a.load.score(now) => Some(b),
                        (a, _) => a,
                    }
                }
            }
            Strategy::Weighted => {
                let total: u64 = g.targets.iter().filter(open).map(|e| u64::from(e.target.weight)).sum();
                if total == 0 {
                    g.targets.iter().find(open)
                } else {
                    let mut x = match (g.sticky_user, args.sticky) {
                        (true, Some(h)) => h % total,
                        _ => self.rng.u64(0..total),
                    };
                    let mut chosen = g.targets.iter().find(open);
                    for e in g.targets.iter().filter(open) {
                        let w = u64::from(e.target.weight);
                        if x < w {
                            chosen = Some(e);
                            break;
                        }
                        x -= w;
                    }
                    chosen
                }
            }
        };
        let e = e.ok_or(NoRoute::Busy)?;
        let slot = TargetSlot::take(e.load.clone(), e.limit.as_ref().map(|(_, n)| n.clone()));
        Ok(RouteDecision { provider: e.target.provider.clone(), model: e.target.model.clone(), slot })
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
    }
}

/// Admission stage: pick the target, pass the job to its provider's worker.
impl Handler<Job> for Router {
    type Result = ();

    fn handle(&mut self, Job(mut job): Job, ctx: &mut Self::Context) {
        let args = PickArgs {
            exclude: &job.exclude,
            sticky: job.route_hints.sticky,
            input_tokens: job.route_hints.input_tokens,
            output_tokens: job.route_hints.output_tokens,
        };
        let span = crate::telemetry::stage(&job.span, "switchyard.route");
        let decision = match self.pick(&job.alias, &args) {
            Ok(d) => {
                if !span.is_disabled() {
                    span.record("switchyard.provider", d.provider.as_str());
                    span.record("switchyard.model", d.model.as_str());
                }
                d
            }
            Err(NoRoute::UnknownAlias | NoRoute::Exhausted) => return job.refuse(Refusal::UnknownModel),
            Err(NoRoute::Busy) => {
                let rate = job.rate.take().unwrap_or_default();
                let provider = format!("every target of `{}`", job.alias);
                return job.refuse(Refusal::QueueFull { provider, rate });
            }
        };
        let Some(worker) = self.workers.get(&decision.provider) else {
            return job.refuse(Refusal::Overloaded("no worker for the chosen provider"));
        };
        // a free slot and nobody waiting: admitted here, one hand-off less (the worker
        // still gets the release); otherwise the worker queues or refuses the job
        if !job.background {
            if let Some(permit) = worker.slots.try_take(&worker.release) {
                let cache = job.cache_key.map_or(CacheDecision::Bypass, CacheDecision::Miss);
                return job.admit(cache, Some((decision, permit)));
            }
        }
        job.decision = Some(decision);
        forward(ctx, &worker.jobs, Job(job), "provider worker");
    }
}

impl Handler<UpdateModels> for Router {
    type Result = ();

    fn handle(&mut self, msg: UpdateModels, _: &mut Self::Context) {
        self.load(&msg.config);
        self.workers = msg.workers;
        self.health = msg.health;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        let pricing = format!("pricing_file = \"{}/../config/pricing.toml\"\n", env!("CARGO_MANIFEST_DIR"));
        let text = pricing
            + r#"
[[providers]]
name = "a"
kind = "mock"
[[providers]]
name = "b"
kind = "mock"
[[models]]
alias = "split"
targets = [{ provider = "a", model = "ma", weight = 9 }, { provider = "b", model = "mb", weight = 1 }]
[[models]]
alias = "one"
targets = [{ provider = "b", model = "mb" }]
[[models]]
alias = "ordered"
strategy = "failover"
targets = [{ provider = "b", model = "m1" }, { provider = "a", model = "m2" }]
[[models]]
alias = "cheap"
strategy = "cost"
targets = [{ provider = "a", model = "unpriced" }, { provider = "a", model = "gpt-4o" },
           { provider = "b", model = "gpt-4o-mini" }]
[[models]]
alias = "priced"
strategy = "cost"
targets = [{ provider = "a", model = "cheap-output", input_per_mtok = 10.0, output_per_mtok = 1.0 },
           { provider = "b", model = "cheap-input", input_per_mtok = 1.0, output_per_mtok = 10.0 }]
[[models]]
alias = "quick"
strategy = "latency"
targets = [{ provider = "a", model = "fast" }, { provider = "b", model = "slow" }]
[[models]]
alias = "canary"
sticky = "user"
targets = [{ provider = "a", model = "v1", weight = 95 }, { provider = "a", model = "v2", weight = 5 }]
[[models]]
alias = "capped"
strategy = "failover"
targets = [{ provider = "a", model = "small", max_concurrency = 2 }, { provider = "b", model = "big", max_concurrency = 4 }]
"#;
        switchyard_config::load_str(&text, Path::new("."), &|_| None).unwrap()
    }

    fn pick(router: &mut Router, alias: &str, tried: &[&str]) -> Option<(String, String)> {
        let exclude: Vec<String> = tried.iter().map(|n| n.to_string()).collect();
        let args = PickArgs { exclude: &exclude, input_tokens: 1000, output_tokens: 500, ..Default::default() };
        router.pick(alias, &args).ok().map(|d| (d.provider.clone(), d.model.clone()))
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let mut router = Router::new(&config(), HashMap::new(), Some(7));
        let mut a = 0;
        for _ in 0..10_000 {
            let (provider, model) = pick(&mut router, "split", &[]).unwrap();
            if provider == "a" {
                assert_eq!(model, "ma");
                a += 1;
            }
        }
        // 90% +- 1.5% (about 5 standard deviations)
        assert!((8850..=9150).contains(&a), "a got {a} of 10000");
        assert_eq!(router.pick("nope", &PickArgs::default()), Err(NoRoute::UnknownAlias));
        assert_eq!(pick(&mut router, "one", &[]), Some(("b".into(), "mb".into())));
    }

    #[test]
    fn tried_targets_are_skipped_in_order_or_by_weight() {
        let mut router = Router::new(&config(), HashMap::new(), Some(3));
        assert_eq!(pick(&mut router, "ordered", &[]).unwrap().1, "m1", "failover starts at the first target");
        assert_eq!(pick(&mut router, "ordered", &["b"]).unwrap().1, "m2");
        let args = PickArgs { exclude: &["b".into(), "a".into()], ..Default::default() };
        assert_eq!(router.pick("ordered", &args), Err(NoRoute::Exhausted));
        // weighted: the tried target is never drawn again, whatever its weight
        for _ in 0..1000 {
            assert_eq!(pick(&mut router, "split", &["a"]).unwrap().0, "b");
        }
        assert_eq!(pick(&mut router, "one", &["b"]), None);
        // cost: the cheapest priced target first, then the next; unpriced ones last
        assert_eq!(pick(&mut router, "cheap", &[]).unwrap().1, "gpt-4o-mini");
        assert_eq!(pick(&mut router, "cheap", &["b"]).unwrap().1, "gpt-4o");
    }

    #[test]
    fn cost_prices_the_estimated_tokens_with_target_prices() {
        let mut router = Router::new(&config(), HashMap::new(), Some(3));
        // "in-heavy" is cheap on input, "out-heavy" on output
        let mut cheapest = |input, output| {
            let args = PickArgs { input_tokens: input, output_tokens: output, ..Default::default() };
            router.pick("priced", &args).unwrap().model.clone()
        };
        assert_eq!(cheapest(10_000, 10), "cheap-input");
        assert_eq!(cheapest(10, 10_000), "cheap-output");
    }

    #[test]
    fn latency_moves_traffic_to_the_faster_target() {
        let mut router = Router::new(&config(), HashMap::new(), Some(11));
        let now = crate::types::unix_ms();
        router.target_load("a", "fast").observe(std::time::Duration::from_millis(5), true, now);
        router.target_load("b", "slow").observe(std::time::Duration::from_millis(250), true, now);
        let mut fast = 0;
        for _ in 0..1000 {
            // one request at a time: the faster target wins every draw
            if pick(&mut router, "quick", &[]).unwrap().1 == "fast" {
                fast += 1;
            }
        }
        assert_eq!(fast, 1000);
        // requests in flight on the fast target make the slow one worth a try:
        // 40 held score 5 ms * 41 = 205 ms, below the idle slow target's 250 ms
        let held: Vec<_> = (0..40).map(|_| router.pick("quick", &PickArgs::default()).unwrap()).collect();
        assert!(held.iter().all(|d| d.model == "fast"));
        // 60 in flight score 305 ms: the slow target wins
        let fast_load = router.target_load("a", "fast");
        let more: Vec<_> = (0..20).map(|_| TargetSlot::take(fast_load.clone(), None)).collect();
        assert_eq!(pick(&mut router, "quick", &[]).unwrap().1, "slow");
        drop((held, more));
        assert_eq!(pick(&mut router, "quick", &[]).unwrap().1, "fast");
    }

    #[test]
    fn breakers_are_per_target_and_health_is_per_provider() {
        let now = crate::types::unix_ms();
        let health: HashMap<String, Arc<Breaker>> = ["a", "b"]
            .iter()
            .map(|p| (p.to_string(), Arc::new(Breaker::new(p, 1, std::time::Duration::from_secs(60)))))
            .collect();
        let mut router = Router::new(&config(), HashMap::new(), Some(9)).with_health(health.clone());
        // the canary target (a, v2) fails until its breaker opens: (a, v1) is unaffected
        let v2 = router.target_load("a", "v2");
        for _ in 0..5 {
            v2.breaker.record(false, now);
        }
        assert!(v2.breaker.is_open(now));
        assert!(router.target_load("a", "v1").breaker.allows(now));
        for _ in 0..200 {
            assert_eq!(pick(&mut router, "canary", &[]).unwrap().1, "v1");
        }
        // a failed health check takes every target of the provider out while another is up
        health["a"].check(false, now);
        for _ in 0..50 {
            assert_eq!(pick(&mut router, "split", &[]).unwrap().0, "b");
        }
        // with nothing else up, the request still goes (rather than being refused)
        assert_eq!(pick(&mut router, "quick", &["b"]).unwrap().0, "a");
        // reload with the same breaker settings: the open breaker stays open
        router.load(&config());
        assert!(router.target_load("a", "v2").breaker.is_open(now));
    }

    #[test]
    fn sticky_users_keep_their_target_and_the_split_holds() {
        let mut router = Router::new(&config(), HashMap::new(), Some(5));
        let mut canary = 0;
        for u in 0..4000 {
            let h = sticky_hash(&format!("user-{u}"));
            let args = PickArgs { sticky: Some(h), ..Default::default() };
            let first = router.pick("canary", &args).unwrap().model.clone();
            for _ in 0..3 {
                assert_eq!(router.pick("canary", &args).unwrap().model, first, "user-{u} moved");
            }
            canary += usize::from(first == "v2");
        }
        // 5% of 4000 = 200, +- 5 standard deviations (about 69)
        assert!((131..=269).contains(&canary), "{canary} users on the canary");
    }

    #[test]
    fn a_target_at_its_max_concurrency_is_skipped_until_a_slot_frees() {
        let mut router = Router::new(&config(), HashMap::new(), Some(5));
        let held: Vec<_> = (0..2).map(|_| router.pick("capped", &PickArgs::default()).unwrap()).collect();
        assert!(held.iter().all(|d| d.model == "small"));
        assert_eq!(pick(&mut router, "capped", &[]).unwrap().1, "big", "the first target is full");
        let more: Vec<_> = (0..4).map(|_| router.pick("capped", &PickArgs::default()).unwrap()).collect();
        assert_eq!(router.pick("capped", &PickArgs::default()), Err(NoRoute::Busy));
        drop(more);
        drop(held);
        assert_eq!(pick(&mut router, "capped", &[]).unwrap().1, "small");
        // a reload that keeps the limit keeps the count
        let held = router.pick("capped", &PickArgs::default()).unwrap();
        router.load(&config());
        let _second = router.pick("capped", &PickArgs::default()).unwrap();
        assert_eq!(pick(&mut router, "capped", &[]).unwrap().1, "big");
        drop(held);
    }

    #[actix_rt::test]
    async fn jobs_reach_the_chosen_worker_or_are_refused() {
        use crate::actors::messages::{JobState, Refusal};
        use crate::actors::rate_limiter::RateLimiter;
        let workers: HashMap<_, _> = ["a", "b"]
            .iter()
            .map(|n| (n.to_string(), crate::actors::provider_worker::ProviderWorker::new(*n, 4, 4).start_ref().1))
            .collect();
        let router = Router::new(&config(), workers, Some(1)).start();
        let limiter = RateLimiter::default().start();
        for (alias, want) in [("one", Some("b")), ("nope", None)] {
            // a ticket from the limiter stage, as in the real chain
            let (tjob, trx) = JobState::create(
                "k".into(),
                Default::default(),
                0,
                alias.into(),
                switchyard_config::Priority::Normal,
                None,
            );
            limiter.send(tjob).await.unwrap();
            let ticket = trx.await.unwrap().unwrap().ticket;
            let (Job(mut state), rx) = JobState::create(
                "k".into(),
                Default::default(),
                0,
                alias.into(),
                switchyard_config::Priority::Normal,
                None,
            );
            state.rate = Some(Default::default());
            state.ticket = Some(ticket);
            router.send(Job(state)).await.unwrap();
            match (rx.await.unwrap(), want) {
                (Ok(adm), Some(p)) => assert_eq!(adm.route.unwrap().0.provider, p),
                (Err(Refusal::UnknownModel), None) => {}
                (other, _) => panic!("unexpected {:?}", other.err()),
            }
        }
        // reload: the alias disappears
        let mut cfg = config();
        cfg.models.retain(|m| m.alias == "split");
        router
            .send(UpdateModels { config: Arc::new(cfg), workers: HashMap::new(), health: HashMap::new() })
            .await
            .unwrap();
        let (job, rx) = JobState::create(
            "k".into(),
            Default::default(),
            0,
            "one".into(),
            switchyard_config::Priority::Normal,
            None,
        );
        router.send(job).await.unwrap();
        assert!(matches!(rx.await.unwrap(), Err(Refusal::UnknownModel)));
    }

    /// A job for `alias` holding a limiter ticket, as the real chain hands it on.
    async fn ticketed(
        limiter: &Addr<crate::actors::rate_limiter::RateLimiter>,
        alias: &str,
        priority: switchyard_config::Priority,
    ) -> (Job, tokio::sync::oneshot::Receiver<crate::actors::messages::Answer>) {
        use crate::actors::messages::JobState;
        let (tjob, trx) = JobState::create("k".into(), Default::default(), 0, alias.into(), priority, None);
        limiter.send(tjob).await.unwrap();
        let ticket = trx.await.unwrap().unwrap().ticket;
        let (Job(mut state), rx) = JobState::create("k".into(), Default::default(), 0, alias.into(), priority, None);
        state.rate = Some(Default::default());
        state.ticket = Some(ticket);
        (Job(state), rx)
    }

    #[actix_rt::test]
    async fn the_router_takes_a_free_slot_and_waiting_jobs_keep_their_turn() {
        use crate::actors::messages::{Stats, WorkerStats};
        use crate::actors::provider_worker::ProviderWorker;
        use switchyard_config::Priority;
        let limiter = crate::actors::rate_limiter::RateLimiter::default().start();
        let (b, b_ref) = ProviderWorker::new("b", 1, 4).start_ref();
        let workers = HashMap::from([("b".to_string(), b_ref)]);
        let router = Router::new(&config(), workers, Some(1)).start();
        let stats = || b.send(Stats);

        // a free slot: admitted by the router itself, counted by the worker
        let (job, rx) = ticketed(&limiter, "one", Priority::Low).await;
        router.send(job).await.unwrap();
        let first = rx.await.unwrap().unwrap();
        assert_eq!(stats().await.unwrap(), WorkerStats { inflight: 1, queued: 0, background: 0 });

        // no free slot: the worker queues, and a high job goes before the low one
        let (job, mut low) = ticketed(&limiter, "one", Priority::Low).await;
        router.send(job).await.unwrap();
        let (job, mut high) = ticketed(&limiter, "one", Priority::High).await;
        router.send(job).await.unwrap();
        assert_eq!(stats().await.unwrap(), WorkerStats { inflight: 1, queued: 2, background: 0 });
        drop(first);
        let high = high.recv_or_wait().await;
        assert!(low.try_recv().is_err(), "the low job still waits");
        assert_eq!(stats().await.unwrap(), WorkerStats { inflight: 1, queued: 1, background: 0 });

        // each release hands the slot to the next waiting job, then to a new one
        drop(high);
        let low = low.recv_or_wait().await;
        let (job, mut third) = ticketed(&limiter, "one", Priority::High).await;
        router.send(job).await.unwrap();
        assert_eq!(stats().await.unwrap(), WorkerStats { inflight: 1, queued: 1, background: 0 });
        drop(low);
        let _third = third.recv_or_wait().await;
        assert_eq!(stats().await.unwrap(), WorkerStats { inflight: 1, queued: 0, background: 0 });
    }

    trait RecvOrWait {
        async fn recv_or_wait(&mut self) -> crate::actors::messages::Admission;
    }

    impl RecvOrWait for tokio::sync::oneshot::Receiver<crate::actors::messages::Answer> {
        async fn recv_or_wait(&mut self) -> crate::actors::messages::Admission {
            match self.await {
                Ok(Ok(a)) => a,
                _ => panic!("not admitted"),
            }
        }
    }
}
