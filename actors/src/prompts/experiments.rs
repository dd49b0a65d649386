//! Experiments: `[[experiments]]` and those made through the admin API (stored in sled,
//! replicated as prompts are). A request takes part when it names the experiment's
//! prompt and/or asks for its alias; its variant comes from a stable hash of the
//! experiment id and the sticky value (user, key, a header), so a caller keeps its
//! variant on every instance and across restarts.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_config::{check_experiment, Config, Experiment, Variant};

use super::{Audit, Prompts};
use crate::store::Store;
use crate::types::unix_ms;
use crate::GatewayError;

/// An experiment as stored and replicated: made through the admin API, or a config
/// experiment whose status the API changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredExperiment {
    pub experiment: Experiment,
    #[serde(default)]
    pub audit: Vec<Audit>,
    pub updated_ms: u64,
}

/// An experiment ready to assign.
pub struct Entry {
    pub experiment: Experiment,
    pub from_config: bool,
    pub audit: Vec<Audit>,
    total_weight: u64,
    /// When the API last changed it (0: never).
    pub updated_ms: u64,
}

impl Entry {
    fn new(experiment: Experiment, from_config: bool, audit: Vec<Audit>, updated_ms: u64) -> Entry {
        let total_weight = experiment.variants.iter().map(|v| u64::from(v.weight)).sum();
        Entry { experiment, from_config, audit, total_weight, updated_ms }
    }

    pub fn running(&self) -> bool {
        self.experiment.status == "running"
    }

    /// Whether a request for `alias` naming `prompt` takes part.
    pub fn matches(&self, prompt: Option<&str>, alias: &str) -> bool {
        let e = &self.experiment;
        (e.prompt.is_none() || e.prompt.as_deref() == prompt)
            && (e.model.is_none() || e.model.as_deref() == Some(alias))
    }

    /// The variant of a sticky value: the same value, the same variant, everywhere.
    pub fn variant_for(&self, sticky: &str) -> &Variant {
        let h = Sha256::digest(format!("{}\u{0}{sticky}", self.experiment.id).as_bytes());
        let mut n = [0u8; 8];
        n.copy_from_slice(&h[..8]);
        let mut at = u64::from_be_bytes(n) % self.total_weight.max(1);
        for v in &self.experiment.variants {
            if at < u64::from(v.weight) {
                return v;
            }
            at -= u64::from(v.weight);
        }
        &self.experiment.variants[0]
    }
}

/// The registry.
pub struct Experiments {
    store: Store,
    table: ArcSwap<Vec<Arc<Entry>>>,
    /// Headers that experiments stick by (`header:NAME`), read by every request context.
    pub sticky_headers: Arc<ArcSwap<Vec<String>>>,
    lock: tokio::sync::Mutex<()>,
    outbox: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>>,
}

fn internal(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal(format!("experiments: {e}"))
}

impl Experiments {
    pub fn load(store: Store, config: &Config, prompts: &Prompts) -> Result<Experiments, GatewayError> {
        let x = Experiments {
            store,
            table: ArcSwap::from_pointee(Vec::new()),
            sticky_headers: Arc::new(ArcSwap::from_pointee(Vec::new())),
            lock: tokio::sync::Mutex::new(()),
            outbox: std::sync::OnceLock::new(),
        };
        x.rebuild(config, prompts)?;
        Ok(x)
    }

    fn stored(&self) -> Result<HashMap<String, StoredExperiment>, GatewayError> {
        let mut out = HashMap::new();
        for item in self.store.experiments.iter() {
            let (k, v) = item.map_err(internal)?;
            match serde_json::from_slice::<StoredExperiment>(&v) {
                Ok(s) => {
                    out.insert(String::from_utf8_lossy(&k).into_owned(), s);
                }
                Err(e) => tracing::warn!(error = %e, "an unreadable stored experiment"),
            }
        }
        Ok(out)
    }

    /// Builds the table: the config's experiments (their status as the API last set it),
    /// then the API's, in id order.
    pub fn rebuild(&self, config: &Config, prompts: &Prompts) -> Result<(), GatewayError> {
        let mut stored = self.stored()?;
        let mut table = Vec::new();
        for e in &config.experiments {
            let mut e = e.clone();
            let (audit, updated_ms) = match stored.remove(&e.id) {
                Some(s) => {
                    e.status = s.experiment.status;
                    (s.audit, s.updated_ms)
                }
                None => (Vec::new(), 0),
            };
            table.push(Arc::new(Entry::new(e, true, audit, updated_ms)));
        }
        let mut rest: Vec<StoredExperiment> = stored.into_values().collect();
        rest.sort_by(|a, b| a.experiment.id.cmp(&b.experiment.id));
        for s in rest {
            if let Some((f, m)) = Self::problems(&s.experiment, config, prompts).into_iter().next() {
                tracing::warn!(experiment = %s.experiment.id, "{f}: {m}; not running");
                continue;
            }
            table.push(Arc::new(Entry::new(s.experiment, false, s.audit, s.updated_ms)));
        }
        let headers = table
            .iter()
            .filter_map(|e| e.experiment.sticky.strip_prefix("header:").map(str::to_ascii_lowercase))
            .collect();
        self.sticky_headers.store(Arc::new(headers));
        self.table.store(Arc::new(table));
        Ok(())
    }

    fn problems(e: &Experiment, config: &Config, prompts: &Prompts) -> Vec<(String, String)> {
        let versions = |id: &str| prompts.get(id).map(|p| p.prompt.versions.len() as u32);
        check_experiment(e, &versions, &|a| config.model(a).is_some())
    }

    pub fn list(&self) -> Vec<Arc<Entry>> {
        self.table.load().iter().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.table.load().iter().find(|e| e.experiment.id == id).cloned()
    }

    /// Whether a running experiment takes requests by alias alone (so every request's
    /// alias must be read to know).
    pub fn by_alias_alone(&self) -> bool {
        self.table.load().iter().any(|e| e.running() && e.experiment.prompt.is_none())
    }

    /// The running experiment a request takes part in (the first that matches).
    pub fn find(&self, prompt: Option<&str>, alias: &str) -> Option<Arc<Entry>> {
        let table = self.table.load();
        if table.is_empty() {
            return None;
        }
        table.iter().find(|e| e.running() && e.matches(prompt, alias)).cloned()
    }

    pub fn replicate_to(&self, tx: tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>) {
        let _ = self.outbox.set(tx);
    }

    pub fn all_raw(&self) -> Result<Vec<(String, Vec<u8>)>, GatewayError> {
        let all = self.stored()?;
        Ok(all.into_iter().map(|(k, s)| (k, serde_json::to_vec(&s).unwrap_or_default())).collect())
    }

    fn save(
        &self,
        s: &StoredExperiment,
        config: &Config,
        prompts: &Prompts,
        replicate: bool,
    ) -> Result<(), GatewayError> {
        let json = serde_json::to_vec(s).map_err(internal)?;
        self.store.experiments.insert(s.experiment.id.as_bytes(), json.clone()).map_err(internal)?;
        self.store.experiments.flush().map_err(internal)?;
        self.rebuild(config, prompts)?;
        if let (true, Some(tx)) = (replicate, self.outbox.get()) {
            let _ = tx.send((s.experiment.id.clone(), json));
        }
        Ok(())
    }

    fn record(s: &mut StoredExperiment, actor: &str, action: &str) {
        let at_ms = unix_ms();
        s.updated_ms = at_ms.max(s.updated_ms + 1);
        s.audit.push(Audit {
            at_ms,
            actor: actor.into(),
            action: action.into(),
            version: None,
            label: None,
            from: None,
        });
    }

    /// Creates an experiment through the admin API.
    pub async fn create(
        &self,
        e: Experiment,
        actor: &str,
        config: &Config,
        prompts: &Prompts,
    ) -> Result<(), GatewayError> {
        let _guard = self.lock.lock().await;
        let problems = Self::problems(&e, config, prompts);
        if !problems.is_empty() {
            let all: Vec<String> = problems.into_iter().map(|(f, m)| format!("{f}: {m}")).collect();
            return Err(GatewayError::BadRequest(all.join("; ")));
        }
        if self.get(&e.id).is_some() {
            return Err(GatewayError::Conflict {
                code: "experiment_exists",
                message: format!("an experiment `{}` exists", e.id),
            });
        }
        let mut s = StoredExperiment { experiment: e, audit: Vec::new(), updated_ms: 0 };
        Self::record(&mut s, actor, "create");
        self.save(&s, config, prompts, true)
    }

    /// Sets the status: `running`, `paused` or `stopped` (final).
    pub async fn set_status(
        &self,
        id: &str,
        status: &str,
        actor: &str,
        config: &Config,
        prompts: &Prompts,
    ) -> Result<(), GatewayError> {
        let _guard = self.lock.lock().await;
        let entry = self.get(id).ok_or_else(|| GatewayError::Missing(format!("no experiment `{id}`")))?;
        if entry.experiment.status == "stopped" && status != "stopped" {
            return Err(GatewayError::Conflict {
                code: "experiment_stopped",
                message: format!("experiment `{id}` is stopped: make a new one"),
            });
        }
        let mut s = StoredExperiment {
            experiment: entry.experiment.clone(),
            audit: entry.audit.clone(),
            updated_ms: entry.updated_ms,
        };
        s.experiment.status = status.to_string();
        Self::record(&mut s, actor, status);
        self.save(&s, config, prompts, true)
    }

    /// A change made on another instance: the later one wins.
    pub async fn apply_remote(&self, json: &[u8], config: &Config, prompts: &Prompts) -> Result<bool, GatewayError> {
        let _guard = self.lock.lock().await;
        let remote: StoredExperiment = serde_json::from_slice(json).map_err(internal)?;
        let local = self.store.experiments.get(remote.experiment.id.as_bytes()).map_err(internal)?;
        let local: Option<StoredExperiment> = local.and_then(|v| serde_json::from_slice(&v).ok());
        if local.is_some_and(|l| l.updated_ms >= remote.updated_ms) {
            return Ok(false);
        }
        self.save(&remote, config, prompts, false)?;
        Ok(true)
    }
}
