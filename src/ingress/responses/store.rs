//! Where stored Responses API responses live: the local sled store, or with `[nats]` a
//! JetStream object store every instance reads (so a later turn's
//! `previous_response_id` and `GET /v1/responses/{id}` work on any instance). A record
//! belongs to the key that made it; another key sees no such response.

use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectStore};
use async_nats::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_actors::store::Store;
use switchyard_actors::types::unix_secs;
use switchyard_actors::GatewayError;
use switchyard_config::Nats;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use crate::ingress::nats::streams::{responses_bucket, Names};

/// One stored response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The key id that made it.
    pub owner: String,
    /// Unix seconds after which it is gone (`None`: kept).
    pub expires_at: Option<u64>,
    /// The Response object as it was answered.
    pub response: Value,
    /// The input items it was made from: those of the conversation before it, then its own.
    pub input: Vec<Value>,
}

impl Stored {
    fn live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

/// The store of responses.
pub enum ResponseStore {
    Local(Store),
    Nats(Box<Shared>),
}

/// The object store on NATS, opened on first use.
pub struct Shared {
    client: Client,
    cfg: Nats,
    names: Names,
    ttl: Option<Duration>,
    bucket: OnceCell<ObjectStore>,
}

fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Unavailable(format!("the response store is unavailable: {e}"))
}

impl ResponseStore {
    /// With `[nats]` (and a client) the shared object store, else the local one; expired
    /// local records are swept now.
    pub fn new(store: Store, nats: Option<(Client, Nats)>, ttl: Option<Duration>) -> ResponseStore {
        match nats {
            Some((client, cfg)) => {
                let names = Names::new(&cfg);
                ResponseStore::Nats(Box::new(Shared { client, cfg, names, ttl, bucket: OnceCell::new() }))
            }
            None => {
                let now = unix_secs();
                let expired = |v: &[u8]| serde_json::from_slice::<Stored>(v).map_or(true, |s| !s.live(now));
                match store.sweep_responses(expired) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired stored responses removed"),
                    Err(e) => tracing::warn!(error = %e, "sweeping stored responses"),
                }
                ResponseStore::Local(store)
            }
        }
    }

    async fn bucket(&self) -> Result<Option<&ObjectStore>, GatewayError> {
        let ResponseStore::Nats(s) = self else { return Ok(None) };
        let Shared { client, cfg, names, ttl, bucket } = &**s;
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(GatewayError::Unavailable("NATS is not connected; stored responses are unavailable".into()));
        }
        let b = bucket
            .get_or_try_init(|| async { responses_bucket(&jetstream::new(client.clone()), cfg, names, *ttl).await })
            .await
            .map_err(unavailable)?;
        Ok(Some(b))
    }

    /// Stores `record` as `id`, durably, before it returns.
    pub async fn put(&self, id: &str, record: &Stored) -> Result<(), GatewayError> {
        let bytes = serde_json::to_vec(record).map_err(|e| GatewayError::Internal(e.to_string()))?;
        match (self, self.bucket().await?) {
            (_, Some(b)) => b.put(id, &mut bytes.as_slice()).await.map(|_| ()).map_err(unavailable),
            (ResponseStore::Local(s), None) => s.put_response(id, &bytes).map_err(unavailable),
            (ResponseStore::Nats(_), None) => Err(unavailable("no bucket")),
        }
    }

    /// The live record `id` if `owner` made it.
    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<Stored>, GatewayError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let bytes = match (self, self.bucket().await?) {
            (_, Some(b)) => match b.get(id).await {
                Ok(mut obj) => {
                    let mut buf = Vec::new();
                    obj.read_to_end(&mut buf).await.map_err(unavailable)?;
                    Some(buf)
                }
                Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => None,
                Err(e) => return Err(unavailable(e)),
            },
            (ResponseStore::Local(s), None) => s.response(id).map_err(unavailable)?,
            (ResponseStore::Nats(_), None) => None,
        };
        let rec = bytes.and_then(|b| serde_json::from_slice::<Stored>(&b).ok());
        Ok(rec.filter(|r| r.owner == owner && r.live(unix_secs())))
    }

    /// Deletes `id` if `owner` made it; whether it did.
    pub async fn delete(&self, owner: &str, id: &str) -> Result<bool, GatewayError> {
        if self.get(owner, id).await?.is_none() {
            return Ok(false);
        }
        match (self, self.bucket().await?) {
            (_, Some(b)) => b.delete(id).await.map(|_| true).map_err(unavailable),
            (ResponseStore::Local(s), None) => s.delete_response(id).map_err(unavailable),
            (ResponseStore::Nats(_), None) => Ok(false),
        }
    }
}

/// A response id the gateway could have made: `resp_` and up to 128 of `[A-Za-z0-9_-]`.
pub fn valid_id(id: &str) -> bool {
    id.strip_prefix("resp_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 128
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_any_lookup() {
        assert!(valid_id("resp_0123abcd"));
        for bad in ["", "resp_", "msg_1", "resp_a.b", "resp_../x", &format!("resp_{}", "a".repeat(129))] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_record_is_its_owners_and_lives_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResponseStore::new(Store::open(dir.path()).unwrap(), None, None);
        let rec = |owner: &str, expires_at| Stored {
            owner: owner.into(),
            expires_at,
            response: serde_json::json!({"id": "resp_1"}),
            input: vec![],
        };
        store.put("resp_1", &rec("a", None)).await.unwrap();
        store.put("resp_2", &rec("a", Some(1))).await.unwrap();
        assert!(store.get("a", "resp_1").await.unwrap().is_some());
        assert!(store.get("b", "resp_1").await.unwrap().is_none(), "another key's");
        assert!(store.get("a", "resp_2").await.unwrap().is_none(), "expired");
        assert!(!store.delete("b", "resp_1").await.unwrap());
        assert!(store.delete("a", "resp_1").await.unwrap());
        assert!(store.get("a", "resp_1").await.unwrap().is_none());
    }
}
