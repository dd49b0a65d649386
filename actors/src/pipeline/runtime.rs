//! What one config makes for the request path: keys with their teams, provider
//! handles (worker and client), alias facts; built on start and on every reload, and
//! swapped as a whole. Also the tasks a runtime starts: JWKS refresh, health checks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use switchyard_config::{allows_api, Api, Config, Key, Priority, Team};

use super::{jwt, vkeys, Engine, EngineThread};
use crate::actors::breaker::Breaker;
use crate::actors::messages::{Resize, WorkerRef};
use crate::actors::messages::{Scope, Scopes};
use crate::actors::provider_worker::ProviderWorker;
use crate::metrics::HEALTH_CHECKS_TOTAL;
use crate::store::Store;
use crate::types::unix_ms;
use crate::upstream::UpstreamClient;
use crate::GatewayError;

impl Engine {
    pub(super) fn build_runtime(
        config: Arc<Config>,
        old: Option<&Runtime>,
        engine_thread: &EngineThread,
        vkeys: vkeys::VirtualTable,
        sticky_headers: Arc<arc_swap::ArcSwap<Vec<String>>>,
    ) -> Result<Runtime, GatewayError> {
        let jwt = match (&config.jwt, old.and_then(|o| o.jwt.as_ref())) {
            (None, _) => None,
            (Some(cfg), Some(v)) if v.config() == cfg => Some(v.clone()),
            (Some(cfg), _) => {
                let v = Arc::new(jwt::JwtVerifier::new(cfg)?);
                spawn_jwks_refresh(&v);
                Some(v)
            }
        };
        let empty = HashMap::new();
        let old = old.map_or(&empty, |o| &o.providers);
        let mut providers = HashMap::new();
        for p in &config.providers {
            let handle = match old.get(&p.name) {
                Some(h) if h.client.cfg == *p => h.clone(),
                Some(h) => {
                    // same provider, new settings: keep the worker (its in-flight slots),
                    // resize it, and use a new client
                    let _ = h.worker.resize.try_send(Resize {
                        concurrency: p.concurrency,
                        queue_size: p.queue_size,
                        jobs_share: p.jobs_share,
                    });
                    let handle = Arc::new(ProviderHandle {
                        worker: h.worker.clone(),
                        client: UpstreamClient::new(p.clone())?,
                        health: Arc::new(health_breaker(p)),
                    });
                    spawn_health_checks(&handle);
                    handle
                }
                None => {
                    let (name, c, q, share) = (p.name.clone(), p.concurrency, p.queue_size, p.jobs_share);
                    let aging = config.nats.as_ref().map_or(std::time::Duration::from_secs(30), |n| n.aging);
                    let worker = ProviderWorker::new(name, c, q)
                        .with_jobs_share(share)
                        .with_aging(aging)
                        .start_on(engine_thread);
                    let handle = Arc::new(ProviderHandle {
                        worker,
                        client: UpstreamClient::new(p.clone())?,
                        health: Arc::new(health_breaker(p)),
                    });
                    spawn_health_checks(&handle);
                    handle
                }
            };
            providers.insert(p.name.clone(), handle);
        }
        let keys = config
            .keys
            .iter()
            .map(|k| {
                let team = k.team.as_deref().and_then(|t| config.team(t)).cloned();
                (k.key_sha256.clone(), Arc::new(KeyEntry::new(k.clone(), team)))
            })
            .collect();
        let bounds = crate::prompts::render::Bounds::of(&config.server);
        let policies =
            crate::prompts::shape::Policies::new(&config.prompt_policies, bounds).map_err(GatewayError::Internal)?;
        let forward_headers = config
            .providers
            .iter()
            .flat_map(|p| p.forward_headers.iter().cloned())
            .chain(config.routes.iter().flat_map(|r| r.headers.iter().map(|(h, _)| h.clone())))
            .chain(policies.meta_headers.iter().cloned())
            .collect();
        let aliases = config
            .models
            .iter()
            .map(|m| {
                let price = |input, output| {
                    m.targets
                        .iter()
                        .map(|t| {
                            let counts = switchyard_config::TokenCounts { input, output, ..Default::default() };
                            config.pricing.target_cost(m, Some(t), &t.model, counts).0
                        })
                        .fold(0.0, f64::max)
                };
                let info = AliasInfo {
                    scope: (!m.limits.is_unlimited()).then(|| Scope::model(&m.alias, m.limits)),
                    max_price: (price(1_000_000, 0), price(0, 1_000_000)),
                };
                (m.alias.clone(), info)
            })
            .collect();
        let mut guards = HashMap::new();
        for g in &config.guardrails {
            let guard = crate::guardrails::Guard::build(g)
                .map_err(|e| GatewayError::Internal(format!("guardrail `{}`: {e}", g.name)))?;
            guards.insert(g.name.clone(), Arc::new(guard));
        }
        let policies = Arc::new(policies);
        Ok(Runtime { config, keys, providers, forward_headers, aliases, vkeys, jwt, guards, policies, sticky_headers })
    }
}

/// A key as the engine sees it: with its team, and the limit scopes they make.
pub struct KeyEntry {
    pub id: Arc<str>,
    pub key: Key,
    pub team: Option<Team>,
    /// The key's scope, then its team's (when it has one).
    pub scopes: Scopes,
}

impl KeyEntry {
    pub fn new(key: Key, team: Option<Team>) -> KeyEntry {
        let mut scopes = vec![Scope::key(&key.id, key.limits, key.budget)];
        if let Some(t) = &team {
            scopes.push(Scope::team(&t.id, t.limits, t.budget));
        }
        KeyEntry { id: Arc::from(key.id.as_str()), key, team, scopes: Arc::from(scopes) }
    }

    /// The key and its team both allow the alias.
    pub fn allows_model(&self, alias: &str) -> bool {
        self.key.allows(alias) && self.team.as_ref().is_none_or(|t| t.allows(alias))
    }

    /// The key and its team both allow the API (403 otherwise).
    pub fn check_api(&self, api: Api) -> Result<(), GatewayError> {
        let team = self.team.as_ref().map(|t| &t.endpoints);
        if allows_api(&self.key.endpoints, api) && team.is_none_or(|e| allows_api(e, api)) {
            Ok(())
        } else {
            Err(GatewayError::Forbidden {
                code: "endpoint_not_allowed",
                message: format!("the key may not use the {} API", api.as_str()),
            })
        }
    }

    /// The smaller `max_tokens` cap of the key and its team.
    pub fn max_tokens(&self) -> Option<u64> {
        let team = self.team.as_ref().and_then(|t| t.max_tokens);
        match (self.key.max_tokens, team) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The highest priority both the key and its team allow.
    pub fn max_priority(&self) -> Priority {
        self.team.as_ref().map_or(self.key.max_priority, |t| t.max_priority.max(self.key.max_priority))
    }
}

/// A provider's worker actor and client.
pub struct ProviderHandle {
    pub worker: WorkerRef,
    pub client: UpstreamClient,
    /// Fed by the active health checks only (the calls feed each target's breaker);
    /// kept across reloads that leave the provider's settings unchanged.
    pub health: Arc<Breaker>,
}

/// Everything derived from one config, swapped as a whole on reload.
pub struct Runtime {
    pub config: Arc<Config>,
    pub(super) keys: HashMap<String, Arc<KeyEntry>>,
    pub(super) providers: HashMap<String, Arc<ProviderHandle>>,
    /// The request headers the request path reads: every provider's `forward_headers`
    /// and the headers `[[routes]]` rules look at.
    pub forward_headers: HashSet<String>,
    pub(super) aliases: HashMap<String, AliasInfo>,
    /// Virtual keys (admin API), shared by every snapshot.
    pub(super) vkeys: vkeys::VirtualTable,
    /// `[jwt]`: kept across reloads that leave it unchanged.
    pub(super) jwt: Option<Arc<jwt::JwtVerifier>>,
    /// `[[guardrails]]`, compiled.
    pub(super) guards: HashMap<String, Arc<crate::guardrails::Guard>>,
    /// `[[prompt_policies]]`, compiled.
    pub policies: Arc<crate::prompts::shape::Policies>,
    /// The headers experiments stick by (shared by every snapshot: experiments change
    /// through the admin API too).
    pub sticky_headers: Arc<arc_swap::ArcSwap<Vec<String>>>,
}

/// What admission needs of an alias: its limit scope, and the price budgets reserve at.
pub(super) struct AliasInfo {
    pub(super) scope: Option<Scope>,
    /// USD per million input / output tokens of its dearest target.
    pub(super) max_price: (f64, f64),
}

impl Runtime {
    /// The scopes of a request for `alias`: the key's (and team's), and the alias's.
    pub(super) fn scopes(&self, key: &KeyEntry, alias: &str) -> Scopes {
        match self.aliases.get(alias).and_then(|a| a.scope.clone()) {
            None => key.scopes.clone(),
            Some(s) => key.scopes.iter().cloned().chain(std::iter::once(s)).collect(),
        }
    }

    /// The guardrails of a request: its key's, its team's and its alias's, each once.
    pub(super) fn guardrails(&self, key: &KeyEntry, alias: &str) -> crate::guardrails::Applied {
        if self.guards.is_empty() {
            // no [[guardrails]] at all: nothing to look up per request
            return crate::guardrails::Applied::default();
        }
        let team = key.team.as_ref().map(|t| t.guardrails.as_slice()).unwrap_or_default();
        let model = self.config.model(alias).map(|m| m.guardrails.as_slice()).unwrap_or_default();
        let mut applied = crate::guardrails::Applied::default();
        for name in key.key.guardrails.iter().chain(team).chain(model) {
            if let Some(g) = self.guards.get(name) {
                if !applied.guards.iter().any(|x| x.name == g.name) {
                    applied.guards.push(g.clone());
                }
            }
        }
        applied
    }

    /// What budgets reserve for a request: its tokens at the alias's dearest target.
    pub(super) fn reserve_cost(&self, alias: &str, input: u64, output: u64) -> f64 {
        self.aliases
            .get(alias)
            .map_or(0.0, |a| (input as f64 * a.max_price.0 + output as f64 * a.max_price.1) / 1_000_000.0)
    }

    /// Each provider's worker, for the router.
    pub fn workers(&self) -> HashMap<String, WorkerRef> {
        self.providers.iter().map(|(k, v)| (k.clone(), v.worker.clone())).collect()
    }

    pub fn health(&self) -> HashMap<String, Arc<Breaker>> {
        self.providers.iter().map(|(k, v)| (k.clone(), v.health.clone())).collect()
    }

    /// The key with id `id`, for work done on its behalf without its secret (a Batch API
    /// item, found through its batch's owner): `team` is that of a JWT caller. 401 when
    /// the key no longer exists (revoked) or has expired.
    pub fn key_by_id(&self, id: &str, team: Option<&str>) -> Result<Arc<KeyEntry>, GatewayError> {
        let key = if let Some(caller) = id.strip_prefix("jwt:") {
            // `jwt:<sub>@<team>` (a record made before the team was in the id: `team`)
            let (subject, team) = match caller.rsplit_once('@') {
                Some((subject, team)) => (subject, Some(team)),
                None => (caller, team),
            };
            let (Some(v), Some(team)) = (&self.jwt, team) else { return Err(GatewayError::InvalidKey) };
            v.key_for(subject, team, &self.config)?
        } else {
            let vkeys = self.vkeys.load();
            self.keys
                .values()
                .chain(vkeys.values())
                .find(|k| k.key.id == id)
                .cloned()
                .ok_or(GatewayError::InvalidKey)?
        };
        if key.key.expires_at_ms.is_some_and(|at| unix_ms() >= at) {
            return Err(GatewayError::ExpiredKey);
        }
        Ok(key)
    }

    /// Looks a presented credential up (by its SHA-256): 401 when unknown or expired.
    pub fn authenticate(&self, secret: &str) -> Result<Arc<KeyEntry>, GatewayError> {
        if let (Some(v), true) = (&self.jwt, jwt::looks_like_jwt(secret)) {
            return v.verify(secret, &self.config);
        }
        let hash = switchyard_config::hash_key(secret);
        let key = match self.keys.get(&hash) {
            Some(k) => k.clone(),
            None => self.vkeys.load().get(&hash).cloned().ok_or(GatewayError::InvalidKey)?,
        };
        if key.key.expires_at_ms.is_some_and(|at| unix_ms() >= at) {
            return Err(GatewayError::ExpiredKey);
        }
        Ok(key)
    }

    /// Verifies a token with `[jwt]` (`audience` in place of `jwt.audience`: an ID token's
    /// OIDC client id): the caller and the token's claims.
    pub fn verify_token(
        &self,
        token: &str,
        audience: Option<&str>,
    ) -> Result<(Arc<KeyEntry>, HashMap<String, serde_json::Value>), GatewayError> {
        let v = self.jwt.as_ref().ok_or_else(|| GatewayError::InvalidToken("no `[jwt]` to verify it with".into()))?;
        v.verify_claims(token, audience, &self.config)
    }

    pub fn model_aliases(&self) -> impl Iterator<Item = &str> {
        self.config.models.iter().map(|m| m.alias.as_str())
    }
}

/// What the ledger holds against each budget in its current period: the spend that a
/// restart must not forget (the ledger is the one durable record of cost).
pub(super) fn seed_spend(
    config: &Config,
    virtual_keys: &HashMap<String, Arc<KeyEntry>>,
    store: &Store,
) -> Result<Vec<(Scope, f64)>, GatewayError> {
    let now = unix_ms();
    let mut key_scopes: HashMap<&str, (Scope, u64)> = HashMap::new();
    let mut team_scopes: HashMap<&str, (Scope, u64)> = HashMap::new();
    let all_keys: Vec<&Key> = config.keys.iter().chain(virtual_keys.values().map(|e| &e.key)).collect();
    for k in all_keys.iter().copied() {
        if let Some(b) = k.budget {
            key_scopes.insert(&k.id, (Scope::key(&k.id, k.limits, k.budget), b.period.start_ms(now)));
        }
    }
    for t in &config.teams {
        if let Some(b) = t.budget {
            team_scopes.insert(&t.id, (Scope::team(&t.id, t.limits, t.budget), b.period.start_ms(now)));
        }
    }
    let Some(since) = key_scopes.values().chain(team_scopes.values()).map(|(_, start)| *start).min() else {
        return Ok(Vec::new());
    };
    let team_of: HashMap<&str, &str> =
        all_keys.iter().filter_map(|k| k.team.as_deref().map(|t| (k.id.as_str(), t))).collect();
    let records = store.usage_since(since).map_err(|e| GatewayError::Internal(format!("reading the ledger: {e}")))?;
    let mut spent: HashMap<Arc<str>, (Scope, f64)> = HashMap::new();
    for r in records.iter().filter(|r| r.cost_usd > 0.0) {
        let team = team_of.get(r.key_id.as_str()).and_then(|t| team_scopes.get(t));
        for (scope, start) in key_scopes.get(r.key_id.as_str()).into_iter().chain(team) {
            if r.ts_ms >= *start {
                spent.entry(scope.id.clone()).or_insert_with(|| (scope.clone(), 0.0)).1 += r.cost_usd;
            }
        }
    }
    Ok(spent.into_values().collect())
}

/// Fetches a JWKS URL now and every `jwks_refresh` for as long as the verifier lives.
pub(super) fn spawn_jwks_refresh(v: &Arc<jwt::JwtVerifier>) {
    if v.config().jwks_url.is_none() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    let weak = Arc::downgrade(v);
    let every = v.config().jwks_refresh;
    rt.spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let Some(v) = weak.upgrade() else { return };
            match v.refresh(&http).await {
                Ok(n) => tracing::info!(keys = n, "JWKS fetched"),
                Err(e) => tracing::warn!(error = %e, "JWKS fetch failed; the previous keys stay"),
            }
            drop(v);
            tokio::time::sleep(every).await;
        }
    });
}

/// A provider's health breaker: one failed check opens it for the cooldown (checks
/// keep it open while they fail), a passing one lets traffic through again.
pub(super) fn health_breaker(p: &switchyard_config::Provider) -> Breaker {
    Breaker::new(&p.name, 1, p.breaker_cooldown)
}

/// The provider's active health checks, when configured: a task that checks every
/// interval for as long as the handle lives (a reload that replaces the provider ends it).
pub(super) fn spawn_health_checks(handle: &Arc<ProviderHandle>) {
    let Some(hc) = handle.client.cfg.health_check.clone() else { return };
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    let weak = Arc::downgrade(handle);
    let name = handle.client.cfg.name.clone();
    let ok = metrics::counter!(HEALTH_CHECKS_TOTAL, "provider" => name.clone(), "result" => "ok");
    let failed = metrics::counter!(HEALTH_CHECKS_TOTAL, "provider" => name.clone(), "result" => "failed");
    rt.spawn(async move {
        let mut tick = tokio::time::interval(hc.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(h) = weak.upgrade() else { return };
            let passed = h.client.health_check().await;
            (if passed { &ok } else { &failed }).increment(1);
            if !passed {
                tracing::warn!(provider = %name, path = %hc.path, "health check failed");
            }
            h.health.check(passed, unix_ms());
        }
    });
}
