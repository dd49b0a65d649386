//! Virtual keys: created, changed and revoked at run time through the admin API, stored
//! in sled (as JSON, by the SHA-256 of the secret; the secret itself is shown once, at
//! creation, and never stored) and held in memory for the request path. A change is on
//! disk before the admin call answers, and in the in-memory table at the same moment:
//! a revocation refuses the next request.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use switchyard_config::{Api, Budget, BudgetPeriod, Config, Key, Limits, Priority};

use super::KeyEntry;
use crate::store::Store;
use crate::types::unix_ms;
use crate::GatewayError;

/// A virtual key as stored and as the admin API shows it (never with its secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VirtualKey {
    /// Stable identifier in the ledger and reports; unique among all keys.
    pub id: String,
    /// Who it was issued to (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Aliases it may use; absent: all (for a team's key: the team's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpd: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Default priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Set by the gateway.
    #[serde(default)]
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

impl VirtualKey {
    /// Checks the fields against the config (aliases, team) and makes the key the
    /// request path uses. Every problem is named.
    pub fn to_key(&self, hash: &str, config: &Config) -> Result<Key, GatewayError> {
        let bad = |m: String| GatewayError::BadRequest(m);
        if self.id.is_empty() || self.id.len() > 128 || self.id.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("`id` must be 1 to 128 characters without spaces".into()));
        }
        if let Some(t) = &self.team {
            if config.team(t).is_none() {
                return Err(bad(format!("`team`: no team `{t}`")));
            }
        }
        let models = match &self.models {
            Some(list) if !list.iter().any(|m| m == "*") => {
                if let Some(m) = list.iter().find(|m| config.model(m).is_none()) {
                    return Err(bad(format!("`models`: no model alias `{m}`")));
                }
                Some(list.clone())
            }
            _ => None,
        };
        let endpoints = match &self.endpoints {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|e| {
                        Api::parse(e).ok_or_else(|| bad(format!("`endpoints`: `{e}` is not chat, embeddings or batch")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let priority = |name: &str, v: &Option<String>, default| match v {
            None => Ok(default),
            Some(p) => Priority::parse(p).ok_or_else(|| bad(format!("`{name}`: `{p}` is not high, normal or low"))),
        };
        let budget = match self.budget_usd {
            None => None,
            Some(usd) if !(usd >= 0.0 && usd.is_finite()) => return Err(bad("`budget_usd` must be >= 0".into())),
            Some(usd) => {
                let period = match self.budget_period.as_deref() {
                    None => BudgetPeriod::Month,
                    Some(p) => BudgetPeriod::parse(p)
                        .ok_or_else(|| bad(format!("`budget_period`: `{p}` is not day, month or total")))?,
                };
                Some(Budget { usd, period })
            }
        };
        let expires_at_ms = match &self.expires_at {
            None => None,
            Some(t) => Some(
                humantime::parse_rfc3339_weak(t)
                    .ok()
                    .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64)
                    .ok_or_else(|| bad(format!("`expires_at`: `{t}` is not an RFC 3339 time")))?,
            ),
        };
        let limits = Limits { rpm: self.rpm, tpm: self.tpm, tpd: self.tpd, max_concurrent: self.max_concurrent };
        if [limits.rpm.map(u64::from), limits.tpm, limits.tpd, limits.max_concurrent.map(u64::from), self.max_tokens]
            .contains(&Some(0))
        {
            return Err(bad("limits and `max_tokens` must be at least 1 (omit them for none)".into()));
        }
        Ok(Key {
            id: self.id.clone(),
            key_sha256: hash.to_string(),
            models,
            limits,
            priority: priority("priority", &self.priority, Priority::Normal)?,
            batch_priority: Priority::Low,
            team: self.team.clone(),
            endpoints,
            max_tokens: self.max_tokens,
            max_priority: priority("max_priority", &self.max_priority, Priority::High)?,
            budget,
            expires_at_ms,
            guardrails: Vec::new(),
            // its team says
            log_requests: false,
        })
    }
}

/// The in-memory table of live virtual keys, by the hash of their secret; shared by
/// every config snapshot and swapped whole on each change.
pub type VirtualTable = Arc<ArcSwap<HashMap<String, Arc<KeyEntry>>>>;

/// Builds the table from the store for a config: keys that no longer fit it (a team or
/// alias removed by a reload) are left out, with a warning.
pub fn load_table(store: &Store, config: &Config) -> Result<HashMap<String, Arc<KeyEntry>>, GatewayError> {
    let stored: Vec<(String, VirtualKey)> =
        store.virtual_keys().map_err(|e| GatewayError::Internal(format!("reading virtual keys: {e}")))?;
    let mut table = HashMap::new();
    for (hash, vk) in stored {
        if vk.revoked_ms.is_some() {
            continue;
        }
        match vk.to_key(&hash, config) {
            Ok(key) => {
                let team = key.team.as_deref().and_then(|t| config.team(t)).cloned();
                table.insert(hash, Arc::new(KeyEntry::new(key, team)));
            }
            Err(e) => tracing::warn!(key = %vk.id, error = %e, "virtual key does not fit the config; not served"),
        }
    }
    Ok(table)
}

/// A new secret: `sk-sy-` and 32 random bytes from the OS, hex.
pub fn new_secret() -> Result<String, GatewayError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| GatewayError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("sk-sy-{}", hex::encode(bytes)))
}

/// Admin operations on virtual keys.
pub struct VirtualKeys {
    pub store: Store,
    pub table: VirtualTable,
    /// Serializes changes (create/update/revoke are rare; reads never wait).
    lock: tokio::sync::Mutex<()>,
    /// With NATS: every change also goes to the other instances (hash, JSON).
    outbox: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>>,
}

impl VirtualKeys {
    pub fn new(store: Store, table: VirtualTable) -> VirtualKeys {
        VirtualKeys { store, table, lock: tokio::sync::Mutex::new(()), outbox: std::sync::OnceLock::new() }
    }

    /// From now on, changes are also sent to `tx` (the replication to other instances).
    pub fn replicate_to(&self, tx: tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>) {
        let _ = self.outbox.set(tx);
    }

    /// Every stored key as (hash, JSON), for the first replication.
    pub fn all_raw(&self) -> Result<Vec<(String, Vec<u8>)>, GatewayError> {
        let all: Vec<(String, VirtualKey)> =
            self.store.virtual_keys().map_err(|e| GatewayError::Internal(format!("reading virtual keys: {e}")))?;
        Ok(all.into_iter().map(|(h, k)| (h, serde_json::to_vec(&k).unwrap_or_default())).collect())
    }

    /// A change made on another instance. A revocation is final: a key revoked here
    /// stays revoked whatever arrives (and the revocation is sent again). Returns
    /// whether anything changed.
    pub async fn apply_remote(&self, hash: &str, json: &[u8], config: &Config) -> Result<bool, GatewayError> {
        let _guard = self.lock.lock().await;
        let mut remote: VirtualKey =
            serde_json::from_slice(json).map_err(|e| GatewayError::Internal(format!("replicated key: {e}")))?;
        let local: Option<VirtualKey> = self
            .store
            .virtual_keys::<VirtualKey>()
            .map_err(|e| GatewayError::Internal(format!("reading virtual keys: {e}")))?
            .into_iter()
            .find(|(h, _)| h == hash)
            .map(|(_, k)| k);
        if local.as_ref() == Some(&remote) {
            return Ok(false);
        }
        if let Some(revoked) = local.as_ref().and_then(|l| l.revoked_ms) {
            if remote.revoked_ms.is_none() {
                remote.revoked_ms = Some(revoked);
                self.save(hash, &remote, config)?;
                return Ok(true);
            }
        }
        self.store
            .put_virtual_key(hash, &remote)
            .map_err(|e| GatewayError::Internal(format!("storing the key: {e}")))?;
        let fresh = load_table(&self.store, config)?;
        self.table.store(Arc::new(fresh));
        Ok(true)
    }

    fn find(&self, id: &str) -> Result<Option<(String, VirtualKey)>, GatewayError> {
        let all: Vec<(String, VirtualKey)> =
            self.store.virtual_keys().map_err(|e| GatewayError::Internal(format!("reading virtual keys: {e}")))?;
        Ok(all.into_iter().find(|(_, k)| k.id == id))
    }

    fn save(&self, hash: &str, vk: &VirtualKey, config: &Config) -> Result<(), GatewayError> {
        self.store.put_virtual_key(hash, vk).map_err(|e| GatewayError::Internal(format!("storing the key: {e}")))?;
        let fresh = load_table(&self.store, config)?;
        self.table.store(Arc::new(fresh));
        if let Some(tx) = self.outbox.get() {
            let _ = tx.send((hash.to_string(), serde_json::to_vec(vk).unwrap_or_default()));
        }
        Ok(())
    }

    /// Creates a key; returns it and its secret (shown this once).
    pub async fn create(&self, mut vk: VirtualKey, config: &Config) -> Result<(VirtualKey, String), GatewayError> {
        let _guard = self.lock.lock().await;
        if config.keys.iter().any(|k| k.id == vk.id) || self.find(&vk.id)?.is_some() {
            return Err(GatewayError::Forbidden { code: "key_exists", message: format!("a key `{}` exists", vk.id) });
        }
        let secret = new_secret()?;
        let hash = switchyard_config::hash_key(&secret);
        vk.to_key(&hash, config)?;
        vk.created_ms = unix_ms();
        vk.revoked_ms = None;
        self.save(&hash, &vk, config)?;
        Ok((vk, secret))
    }

    /// Every virtual key (revoked ones included), by id.
    pub fn list(&self) -> Result<Vec<VirtualKey>, GatewayError> {
        let mut all: Vec<VirtualKey> = self
            .store
            .virtual_keys()
            .map_err(|e| GatewayError::Internal(format!("reading virtual keys: {e}")))?
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    /// Replaces the fields given in `patch` (a JSON object of `VirtualKey` fields).
    pub async fn update(
        &self,
        id: &str,
        patch: serde_json::Map<String, serde_json::Value>,
        config: &Config,
    ) -> Result<VirtualKey, GatewayError> {
        let _guard = self.lock.lock().await;
        let (hash, vk) = self.find(id)?.ok_or_else(|| GatewayError::Missing(format!("no virtual key `{id}`")))?;
        if vk.revoked_ms.is_some() {
            return Err(GatewayError::Forbidden { code: "key_revoked", message: format!("`{id}` is revoked") });
        }
        for fixed in ["id", "created_ms", "revoked_ms"] {
            if patch.contains_key(fixed) {
                return Err(GatewayError::BadRequest(format!("`{fixed}` cannot be changed")));
            }
        }
        let mut merged = serde_json::to_value(&vk).map_err(|e| GatewayError::Internal(e.to_string()))?;
        if let Some(obj) = merged.as_object_mut() {
            for (k, v) in patch {
                if v.is_null() {
                    obj.remove(&k);
                } else {
                    obj.insert(k, v);
                }
            }
        }
        let updated: VirtualKey =
            serde_json::from_value(merged).map_err(|e| GatewayError::BadRequest(format!("invalid key: {e}")))?;
        updated.to_key(&hash, config)?;
        self.save(&hash, &updated, config)?;
        Ok(updated)
    }

    /// Revokes a key: refused from the next request on.
    pub async fn revoke(&self, id: &str, config: &Config) -> Result<VirtualKey, GatewayError> {
        let _guard = self.lock.lock().await;
        let (hash, mut vk) = self.find(id)?.ok_or_else(|| GatewayError::Missing(format!("no virtual key `{id}`")))?;
        if vk.revoked_ms.is_none() {
            vk.revoked_ms = Some(unix_ms());
            self.save(&hash, &vk, config)?;
        }
        Ok(vk)
    }
}
