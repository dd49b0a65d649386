//! Virtual keys on every instance: with `[nats]`, each instance's keys (kept in its own
//! sled store for the request path) are replicated through a JetStream key-value bucket
//! (`<PREFIX>_KEYS`, by the hash of the secret; never the secret). A key created,
//! changed or revoked through any instance's admin API is put in the bucket; every
//! instance watches the bucket and applies what arrives. A revocation is final.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::Client;
use futures_util::StreamExt;
use switchyard_actors::Engine;
use switchyard_config::Nats;

use super::streams::{kv_bucket, Names};

/// Opens the bucket (retrying while NATS is not reachable), publishes this instance's
/// keys, then applies every change from the others, for as long as the process runs.
pub async fn sync(client: Client, engine: Arc<Engine>, cfg: Nats) {
    let name = Names::new(&cfg).keys_bucket;
    let js = async_nats::jetstream::new(client);
    let mut failures = 0u32;
    let bucket = loop {
        match kv_bucket(&js, &name, "Switchyard virtual keys", Duration::ZERO, &cfg).await {
            Ok(b) => break b,
            Err(e) => {
                tracing::warn!(error = %e, "virtual key replication not ready; retrying");
                failures += 1;
                tokio::time::sleep(super::streams::reconnect_delay(failures)).await;
            }
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let keys = engine.virtual_keys();
    keys.replicate_to(tx.clone());
    // what this instance has that the bucket does not
    match keys.all_raw() {
        Ok(all) => {
            for (hash, json) in all {
                if matches!(bucket.entry(&hash).await, Ok(None)) {
                    let _ = tx.send((hash, json));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read local virtual keys for replication"),
    }
    let out = bucket.clone();
    tokio::spawn(async move {
        while let Some((hash, json)) = rx.recv().await {
            if let Err(e) = out.put(&hash, json.into()).await {
                tracing::warn!(error = %e, "a virtual key change could not be replicated");
            }
        }
    });
    loop {
        let mut watch = match bucket.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "watching virtual keys failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { break };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let config = engine.runtime().config.clone();
            if let Err(e) = engine.virtual_keys().apply_remote(&entry.key, &entry.value, &config).await {
                tracing::warn!(error = %e, key = %entry.key, "a replicated virtual key was not applied");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
