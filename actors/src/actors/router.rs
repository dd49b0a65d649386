//! Router: model alias -> one target, chosen by weight, then the job goes to that
//! provider's worker. Owns its RNG (seedable for tests), its slice of the config and the
//! workers' addresses, swapped by `UpdateModels` on reload.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use switchyard_config::{Config, Strategy, Target, TokenCounts};

use super::breaker::Breaker;
use super::job::{forward, Job, Refusal};
use super::provider_worker::ProviderWorker;

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub provider: String,
    pub model: String,
}

/// Replace the model table and the workers (config reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateModels {
    pub config: Arc<Config>,
    pub workers: HashMap<String, Addr<ProviderWorker>>,
    pub breakers: HashMap<String, Arc<Breaker>>,
}

struct Group {
    strategy: Strategy,
    targets: Vec<Target>,
}

pub struct Router {
    groups: HashMap<String, Group>,
    workers: HashMap<String, Addr<ProviderWorker>>,
    /// Providers whose breaker is open are skipped while another target is available.
    breakers: HashMap<String, Arc<Breaker>>,
    rng: fastrand::Rng,
}

impl Router {
    pub fn new(config: &Config, workers: HashMap<String, Addr<ProviderWorker>>, seed: Option<u64>) -> Router {
        let rng = match seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        };
        let mut r = Router { groups: HashMap::new(), workers, breakers: HashMap::new(), rng };
        r.load(config);
        r
    }

    pub fn with_breakers(mut self, breakers: HashMap<String, Arc<Breaker>>) -> Router {
        self.breakers = breakers;
        self
    }

    fn load(&mut self, config: &Config) {
        self.groups = config
            .models
            .iter()
            .map(|m| {
                let mut targets = m.targets.clone();
                if m.strategy == Strategy::Cost {
                    // a nominal request; a target with no known price goes last
                    let counts = TokenCounts { input: 1_000, output: 500, cached_input: 0 };
                    let price = |t: &Target| {
                        let known = m.input_per_mtok.is_some() || config.pricing.models.contains_key(&t.model);
                        (!known, config.pricing.cost(m, &t.model, counts))
                    };
                    targets.sort_by(|a, b| price(a).partial_cmp(&price(b)).unwrap_or(std::cmp::Ordering::Equal));
                }
                (m.alias.clone(), Group { strategy: m.strategy, targets })
            })
            .collect();
    }

    /// The choice itself (plain function, benchmarked): a target of `alias` whose
    /// provider is not in `exclude` (the ones a failed request already tried).
    pub fn pick(&mut self, alias: &str, exclude: &[String]) -> Option<RouteDecision> {
        let now = crate::types::unix_ms();
        let g = self.groups.get(alias)?;
        let untried = |t: &&Target| !exclude.contains(&t.provider);
        let up = |t: &&Target| self.breakers.get(&t.provider).is_none_or(|b| b.allows(now));
        // open breakers are skipped while another target is available
        let any_up = g.targets.iter().filter(untried).any(|t| up(&t));
        let open = |t: &&Target| untried(t) && (!any_up || up(t));
        let t = match g.strategy {
            Strategy::Failover | Strategy::Cost => g.targets.iter().find(open)?,
            Strategy::Weighted => {
                let total: u64 = g.targets.iter().filter(open).map(|t| u64::from(t.weight)).sum();
                if total == 0 {
                    g.targets.iter().find(open)?
                } else {
                    let mut x = self.rng.u64(0..total);
                    let mut chosen = g.targets.iter().find(open)?;
                    for t in g.targets.iter().filter(open) {
                        let w = u64::from(t.weight);
                        if x < w {
                            chosen = t;
                            break;
                        }
                        x -= w;
                    }
                    chosen
                }
            }
        };
        Some(RouteDecision { provider: t.provider.clone(), model: t.model.clone() })
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

    fn handle(&mut self, Job(mut job): Job, _: &mut Self::Context) {
        let Some(decision) = self.pick(&job.alias, &job.exclude) else {
            return job.refuse(Refusal::UnknownModel);
        };
        let Some(worker) = self.workers.get(&decision.provider) else {
            return job.refuse(Refusal::Overloaded("no worker for the chosen provider"));
        };
        job.decision = Some(decision);
        forward(worker, Job(job), "provider worker");
    }
}

impl Handler<UpdateModels> for Router {
    type Result = ();

    fn handle(&mut self, msg: UpdateModels, _: &mut Self::Context) {
        self.load(&msg.config);
        self.workers = msg.workers;
        self.breakers = msg.breakers;
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
"#;
        switchyard_config::load_str(&text, Path::new("."), &|_| None).unwrap()
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let mut router = Router::new(&config(), HashMap::new(), Some(7));
        let mut a = 0;
        for _ in 0..10_000 {
            let d = router.pick("split", &[]).unwrap();
            if d.provider == "a" {
                assert_eq!(d.model, "ma");
                a += 1;
            }
        }
        // 90% +- 1.5% (about 5 standard deviations)
        assert!((8850..=9150).contains(&a), "a got {a} of 10000");
        assert_eq!(router.pick("nope", &[]), None);
        assert_eq!(router.pick("one", &[]), Some(RouteDecision { provider: "b".into(), model: "mb".into() }));
    }

    #[test]
    fn tried_targets_are_skipped_in_order_or_by_weight() {
        let mut router = Router::new(&config(), HashMap::new(), Some(3));
        let tried = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(router.pick("ordered", &[]).unwrap().model, "m1", "failover starts at the first target");
        assert_eq!(router.pick("ordered", &tried(&["b"])).unwrap().model, "m2");
        assert_eq!(router.pick("ordered", &tried(&["b", "a"])), None);
        // weighted: the tried target is never drawn again, whatever its weight
        for _ in 0..1000 {
            assert_eq!(router.pick("split", &tried(&["a"])).unwrap().provider, "b");
        }
        assert_eq!(router.pick("one", &tried(&["b"])), None);
        // cost: the cheapest priced target first, then the next; unpriced ones last
        assert_eq!(router.pick("cheap", &[]).unwrap().model, "gpt-4o-mini");
        assert_eq!(router.pick("cheap", &tried(&["b"])).unwrap().model, "gpt-4o");
    }

    #[actix_rt::test]
    async fn jobs_reach_the_chosen_worker_or_are_refused() {
        use crate::actors::job::{JobState, Refusal};
        use crate::actors::rate_limiter::RateLimiter;
        let workers: HashMap<_, _> =
            ["a", "b"].iter().map(|n| (n.to_string(), ProviderWorker::new(*n, 4, 4).start())).collect();
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
            .send(UpdateModels { config: Arc::new(cfg), workers: HashMap::new(), breakers: HashMap::new() })
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
}
