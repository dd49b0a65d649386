//! Router: model alias -> one target, chosen by weight. Owns its RNG (seedable for tests)
//! and its slice of the config, swapped by `UpdateModels` on reload.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use switchyard_config::{Config, Target};

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub provider: String,
    pub model: String,
}

/// Pick a target for `alias`; `None` when the alias does not exist.
#[derive(Message)]
#[rtype(result = "Option<RouteDecision>")]
pub struct Route {
    pub alias: String,
}

/// Replace the model table (config reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateModels(pub Arc<Config>);

struct Group {
    targets: Vec<Target>,
    total_weight: u64,
}

pub struct Router {
    groups: HashMap<String, Group>,
    rng: fastrand::Rng,
}

impl Router {
    pub fn new(config: &Config, seed: Option<u64>) -> Router {
        let rng = match seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        };
        let mut r = Router {
            groups: HashMap::new(),
            rng,
        };
        r.load(config);
        r
    }

    fn load(&mut self, config: &Config) {
        self.groups = config
            .models
            .iter()
            .map(|m| {
                let total_weight = m.targets.iter().map(|t| u64::from(t.weight)).sum();
                (
                    m.alias.clone(),
                    Group {
                        targets: m.targets.clone(),
                        total_weight,
                    },
                )
            })
            .collect();
    }

    /// The weighted choice itself (plain function, benchmarked).
    pub fn pick(&mut self, alias: &str) -> Option<RouteDecision> {
        let g = self.groups.get(alias)?;
        let t = if g.targets.len() == 1 || g.total_weight == 0 {
            g.targets.first()?
        } else {
            let mut x = self.rng.u64(0..g.total_weight);
            let mut chosen = g.targets.first()?;
            for t in &g.targets {
                let w = u64::from(t.weight);
                if x < w {
                    chosen = t;
                    break;
                }
                x -= w;
            }
            chosen
        };
        Some(RouteDecision {
            provider: t.provider.clone(),
            model: t.model.clone(),
        })
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
    }
}

impl Handler<Route> for Router {
    type Result = Option<RouteDecision>;

    fn handle(&mut self, msg: Route, _: &mut Self::Context) -> Self::Result {
        self.pick(&msg.alias)
    }
}

impl Handler<UpdateModels> for Router {
    type Result = ();

    fn handle(&mut self, msg: UpdateModels, _: &mut Self::Context) {
        self.load(&msg.0);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        let text = r#"
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
"#;
        switchyard_config::load_str(text, Path::new("."), &|_| None).unwrap()
    }

    #[actix_rt::test]
    async fn routes_by_weight_and_rejects_unknown_alias() {
        let router = Router::new(&config(), Some(7)).start();
        let mut a = 0;
        for _ in 0..10_000 {
            let d = router.send(Route { alias: "split".into() }).await.unwrap().unwrap();
            if d.provider == "a" {
                assert_eq!(d.model, "ma");
                a += 1;
            }
        }
        // 90% +- 1.5% (about 5 standard deviations)
        assert!((8850..=9150).contains(&a), "a got {a} of 10000");
        assert_eq!(router.send(Route { alias: "nope".into() }).await.unwrap(), None);
        let d = router.send(Route { alias: "one".into() }).await.unwrap();
        assert_eq!(
            d,
            Some(RouteDecision {
                provider: "b".into(),
                model: "mb".into()
            })
        );
    }

    #[actix_rt::test]
    async fn reload_replaces_the_table() {
        let router = Router::new(&config(), Some(1)).start();
        let mut cfg = config();
        cfg.models.retain(|m| m.alias == "one");
        router.send(UpdateModels(Arc::new(cfg))).await.unwrap();
        assert_eq!(router.send(Route { alias: "split".into() }).await.unwrap(), None);
    }
}
