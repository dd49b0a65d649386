//! The prompt registry: prompts from the config file (`[[prompts]]`, read-only here)
//! and prompts made through the admin API (stored in sled, each change on disk before
//! the call answers, with an audit trail; with `[nats]`, replicated to every instance
//! through a key-value bucket). Versions are immutable and numbered from 1; labels
//! point at versions and move atomically (a rollback is a label moved back).

pub mod experiments;
pub mod feedback;
pub mod render;
pub mod report;
pub mod shape;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use switchyard_config::{check_prompt, Config, Prompt, PromptVersion};

use self::render::Compiled;
use crate::store::Store;
use crate::types::unix_ms;
use crate::GatewayError;

/// The label a request gets when it names neither a version nor a label (else the
/// latest version).
pub const DEFAULT_LABEL: &str = "production";

/// Most audit entries kept per prompt (the oldest go first).
const AUDIT_MAX: usize = 1000;

/// A prompt made through the admin API, as stored and replicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPrompt {
    pub prompt: Prompt,
    #[serde(default)]
    pub audit: Vec<Audit>,
    /// When it last changed (replication keeps the latest).
    pub updated_ms: u64,
}

/// One change: who, when, what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    pub at_ms: u64,
    pub actor: String,
    /// `create`, `version`, `label`, `unlabel`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A label's version before it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
}

/// A prompt ready to serve.
pub struct Entry {
    pub prompt: Prompt,
    /// From the config file (read-only through the API).
    pub from_config: bool,
    pub audit: Vec<Audit>,
    pub updated_ms: u64,
    versions: Vec<Arc<Compiled>>,
}

/// Which version a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Version(u32),
    Label(String),
    /// [`DEFAULT_LABEL`] if the prompt has it, else the latest version.
    Default,
}

impl Entry {
    fn new(
        prompt: Prompt,
        from_config: bool,
        audit: Vec<Audit>,
        updated_ms: u64,
        bounds: render::Bounds,
    ) -> Result<Entry, String> {
        let versions = prompt
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| Compiled::new(i as u32 + 1, v.clone(), bounds).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Entry { prompt, from_config, audit, updated_ms, versions })
    }

    /// The version a selector names; a 400 naming what is not there.
    pub fn select(&self, sel: &Selector) -> Result<Arc<Compiled>, GatewayError> {
        let id = &self.prompt.id;
        let n = match sel {
            Selector::Version(n) => *n,
            Selector::Label(l) => *self
                .prompt
                .labels
                .get(l)
                .ok_or_else(|| GatewayError::BadRequest(format!("prompt `{id}` has no label `{l}`")))?,
            Selector::Default => self.prompt.labels.get(DEFAULT_LABEL).copied().unwrap_or(self.versions.len() as u32),
        };
        n.checked_sub(1)
            .and_then(|i| self.versions.get(i as usize))
            .cloned()
            .ok_or_else(|| GatewayError::BadRequest(format!("prompt `{id}` has no version {n}")))
    }
}

type Table = HashMap<String, Arc<Entry>>;

/// The registry.
pub struct Prompts {
    store: Store,
    table: ArcSwap<Table>,
    /// Serializes changes (rare); reads never wait.
    lock: tokio::sync::Mutex<()>,
    /// With NATS: every change also goes to the other instances (id, JSON).
    outbox: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>>,
}

fn storing(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal(format!("storing the prompt: {e}"))
}

impl Prompts {
    /// The registry of a config and the store's prompts.
    pub fn load(store: Store, config: &Config) -> Result<Prompts, GatewayError> {
        let p = Prompts {
            store,
            table: ArcSwap::from_pointee(HashMap::new()),
            lock: tokio::sync::Mutex::new(()),
            outbox: std::sync::OnceLock::new(),
        };
        p.rebuild(config)?;
        Ok(p)
    }

    /// Builds the table again: the config's prompts, then the stored ones (a stored
    /// prompt whose id the config now defines is not served, with a warning).
    pub fn rebuild(&self, config: &Config) -> Result<(), GatewayError> {
        let mut table: Table = HashMap::new();
        let bounds = render::Bounds::of(&config.server);
        for p in &config.prompts {
            let e = Entry::new(p.clone(), true, Vec::new(), 0, bounds).map_err(GatewayError::Internal)?;
            table.insert(p.id.clone(), Arc::new(e));
        }
        for sp in self.stored()? {
            if table.contains_key(&sp.prompt.id) {
                tracing::warn!(prompt = %sp.prompt.id, "the config defines this prompt; the stored one is not served");
                continue;
            }
            if let Some((field, m)) = check_prompt(&sp.prompt, &|a| config.model(a).is_some()).into_iter().next() {
                tracing::warn!(prompt = %sp.prompt.id, "{field}: {m}; not served");
                continue;
            }
            match Entry::new(sp.prompt.clone(), false, sp.audit, sp.updated_ms, bounds) {
                Ok(e) => {
                    table.insert(sp.prompt.id.clone(), Arc::new(e));
                }
                Err(m) => tracing::warn!(prompt = %sp.prompt.id, "{m}; not served"),
            }
        }
        self.table.store(Arc::new(table));
        Ok(())
    }

    fn stored(&self) -> Result<Vec<StoredPrompt>, GatewayError> {
        let mut out = Vec::new();
        for item in self.store.prompts.iter() {
            let (_, v) = item.map_err(|e| GatewayError::Internal(format!("reading prompts: {e}")))?;
            match serde_json::from_slice::<StoredPrompt>(&v) {
                Ok(sp) => out.push(sp),
                Err(e) => tracing::warn!(error = %e, "an unreadable stored prompt"),
            }
        }
        Ok(out)
    }

    fn stored_one(&self, id: &str) -> Result<Option<StoredPrompt>, GatewayError> {
        let v = self.store.prompts.get(id.as_bytes()).map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok(v.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// A prompt by id.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.table.load().get(id).cloned()
    }

    /// Whether any prompt is defined (requests skip the lookup otherwise).
    pub fn is_empty(&self) -> bool {
        self.table.load().is_empty()
    }

    /// Every prompt, by id.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        let mut all: Vec<Arc<Entry>> = self.table.load().values().cloned().collect();
        all.sort_by(|a, b| a.prompt.id.cmp(&b.prompt.id));
        all
    }

    /// The version of `id` a selector names.
    pub fn resolve(&self, id: &str, sel: &Selector) -> Result<Arc<Compiled>, GatewayError> {
        let entry = self.get(id).ok_or_else(|| GatewayError::BadRequest(format!("no prompt `{id}`")))?;
        entry.select(sel)
    }

    /// Every stored prompt as (id, JSON), for the first replication.
    pub fn all_raw(&self) -> Result<Vec<(String, Vec<u8>)>, GatewayError> {
        Ok(self
            .stored()?
            .into_iter()
            .map(|sp| (sp.prompt.id.clone(), serde_json::to_vec(&sp).unwrap_or_default()))
            .collect())
    }

    /// From now on, changes are also sent to `tx` (the replication to other instances).
    pub fn replicate_to(&self, tx: tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>) {
        let _ = self.outbox.set(tx);
    }

    fn save(&self, sp: &StoredPrompt, config: &Config, replicate: bool) -> Result<(), GatewayError> {
        let json = serde_json::to_vec(sp).map_err(|e| GatewayError::Internal(e.to_string()))?;
        self.store.prompts.insert(sp.prompt.id.as_bytes(), json.clone()).map_err(storing)?;
        self.store.prompts.flush().map_err(storing)?;
        self.rebuild(config)?;
        if let (true, Some(tx)) = (replicate, self.outbox.get()) {
            let _ = tx.send((sp.prompt.id.clone(), json));
        }
        Ok(())
    }

    /// The stored prompt `id`, to change; a config prompt is a 409, an unknown one a 404.
    fn editable(&self, id: &str) -> Result<StoredPrompt, GatewayError> {
        if self.get(id).is_some_and(|e| e.from_config) {
            return Err(GatewayError::Conflict {
                code: "prompt_in_config",
                message: format!("prompt `{id}` is defined in the config file: change it there"),
            });
        }
        self.stored_one(id)?.ok_or_else(|| GatewayError::Missing(format!("no prompt `{id}`")))
    }

    fn check(p: &Prompt, config: &Config) -> Result<(), GatewayError> {
        let errs = check_prompt(p, &|a| config.model(a).is_some());
        if errs.is_empty() {
            return Ok(());
        }
        let all: Vec<String> = errs.into_iter().map(|(f, m)| format!("{f}: {m}")).collect();
        Err(GatewayError::BadRequest(all.join("; ")))
    }

    fn audit(
        sp: &mut StoredPrompt,
        actor: &str,
        action: &str,
        version: Option<u32>,
        label: Option<&str>,
        from: Option<u32>,
    ) {
        let at_ms = unix_ms();
        sp.updated_ms = at_ms.max(sp.updated_ms + 1);
        sp.audit.push(Audit {
            at_ms,
            actor: actor.to_string(),
            action: action.into(),
            version,
            label: label.map(String::from),
            from,
        });
        if sp.audit.len() > AUDIT_MAX {
            sp.audit.drain(..sp.audit.len() - AUDIT_MAX);
        }
    }

    /// Creates a prompt (its versions and labels as given).
    pub async fn create(&self, prompt: Prompt, actor: &str, config: &Config) -> Result<StoredPrompt, GatewayError> {
        let _guard = self.lock.lock().await;
        Self::check(&prompt, config)?;
        if self.get(&prompt.id).is_some() || self.stored_one(&prompt.id)?.is_some() {
            return Err(GatewayError::Conflict {
                code: "prompt_exists",
                message: format!("a prompt `{}` exists: add a version to it", prompt.id),
            });
        }
        let n = prompt.versions.len() as u32;
        let mut sp = StoredPrompt { prompt, audit: Vec::new(), updated_ms: 0 };
        Self::audit(&mut sp, actor, "create", Some(n), None, None);
        self.save(&sp, config, true)?;
        Ok(sp)
    }

    /// Adds a version (the next number); `labels` are moved to it at the same time.
    pub async fn add_version(
        &self,
        id: &str,
        version: PromptVersion,
        labels: &[String],
        actor: &str,
        config: &Config,
    ) -> Result<(StoredPrompt, u32), GatewayError> {
        let _guard = self.lock.lock().await;
        let mut sp = self.editable(id)?;
        sp.prompt.versions.push(version);
        let n = sp.prompt.versions.len() as u32;
        Self::audit(&mut sp, actor, "version", Some(n), None, None);
        for l in labels {
            let from = sp.prompt.labels.insert(l.clone(), n);
            Self::audit(&mut sp, actor, "label", Some(n), Some(l), from);
        }
        Self::check(&sp.prompt, config)?;
        self.save(&sp, config, true)?;
        Ok((sp, n))
    }

    /// Points `label` at `version` (a rollback is this with an earlier version), or
    /// removes it (`None`).
    pub async fn set_label(
        &self,
        id: &str,
        label: &str,
        version: Option<u32>,
        actor: &str,
        config: &Config,
    ) -> Result<StoredPrompt, GatewayError> {
        let _guard = self.lock.lock().await;
        let mut sp = self.editable(id)?;
        match version {
            Some(n) => {
                let from = sp.prompt.labels.insert(label.to_string(), n);
                Self::audit(&mut sp, actor, "label", Some(n), Some(label), from);
            }
            None => {
                let from = sp.prompt.labels.remove(label);
                if from.is_none() {
                    return Err(GatewayError::Missing(format!("prompt `{id}` has no label `{label}`")));
                }
                Self::audit(&mut sp, actor, "unlabel", None, Some(label), from);
            }
        }
        Self::check(&sp.prompt, config)?;
        self.save(&sp, config, true)?;
        Ok(sp)
    }

    /// A change made on another instance: the later one (by `updated_ms`) is kept.
    /// Returns whether anything changed.
    pub async fn apply_remote(&self, json: &[u8], config: &Config) -> Result<bool, GatewayError> {
        let _guard = self.lock.lock().await;
        let remote: StoredPrompt =
            serde_json::from_slice(json).map_err(|e| GatewayError::Internal(format!("replicated prompt: {e}")))?;
        match self.stored_one(&remote.prompt.id)? {
            Some(local) if local.updated_ms >= remote.updated_ms => Ok(false),
            _ => {
                self.save(&remote, config, false)?;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests;
