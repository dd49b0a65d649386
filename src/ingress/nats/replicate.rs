//! What every instance must know, replicated through JetStream key-value buckets: each
//! instance keeps its own copy in sled for the request path, puts every change made
//! through its admin API in the bucket, and applies what arrives from the others.
//!
//! - Virtual keys (`<PREFIX>_KEYS`, by the hash of the secret; never the secret). A
//!   revocation is final.
//! - Prompts made through the admin API (`<PREFIX>_PROMPTS`, by id). The latest change
//!   wins (`updated_ms`); versions are never renumbered on the instance that made them.
//! - Experiments made or changed through the admin API (`<PREFIX>_EXPERIMENTS`, by id;
//!   the latest change wins).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::Client;
use futures_util::StreamExt;
use switchyard_actors::{Engine, GatewayError};
use switchyard_config::Nats;

use super::streams::{kv_bucket, Names};

type Outbox = tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>;

/// Virtual keys on every instance.
pub async fn keys(client: Client, engine: Arc<Engine>, cfg: Nats) {
    let name = Names::new(&cfg).keys_bucket;
    let replica = Replica {
        what: "virtual keys",
        connect: |e: &Engine, tx| e.virtual_keys().replicate_to(tx),
        local: |e: &Engine| e.virtual_keys().all_raw(),
    };
    sync(client, engine, cfg, name, replica, |engine: Arc<Engine>, key: String, value: bytes::Bytes| async move {
        let config = engine.runtime().config.clone();
        engine.virtual_keys().apply_remote(&key, &value, &config).await
    })
    .await
}

/// Prompts made through the admin API on every instance.
pub async fn prompts(client: Client, engine: Arc<Engine>, cfg: Nats) {
    let name = Names::new(&cfg).prompts_bucket;
    let replica = Replica {
        what: "prompts",
        connect: |e: &Engine, tx| e.prompts().replicate_to(tx),
        local: |e: &Engine| e.prompts().all_raw(),
    };
    sync(client, engine, cfg, name, replica, |engine: Arc<Engine>, _key: String, value: bytes::Bytes| async move {
        let config = engine.runtime().config.clone();
        engine.prompts().apply_remote(&value, &config).await
    })
    .await
}

/// Experiments made or changed through the admin API on every instance.
pub async fn experiments(client: Client, engine: Arc<Engine>, cfg: Nats) {
    let name = Names::new(&cfg).experiments_bucket;
    let replica = Replica {
        what: "experiments",
        connect: |e: &Engine, tx| e.experiments().replicate_to(tx),
        local: |e: &Engine| e.experiments().all_raw(),
    };
    sync(client, engine, cfg, name, replica, |engine: Arc<Engine>, _key: String, value: bytes::Bytes| async move {
        let config = engine.runtime().config.clone();
        engine.experiments().apply_remote(&value, &config, engine.prompts()).await
    })
    .await
}

/// One replicated set: how changes reach the outbox, and what this instance holds.
struct Replica<C, L> {
    what: &'static str,
    connect: C,
    local: L,
}

/// Opens the bucket (retrying while NATS is not reachable), publishes what this
/// instance has that the bucket does not, then applies every change from the others,
/// for as long as the process runs.
async fn sync<C, L, A, F>(
    client: Client,
    engine: Arc<Engine>,
    cfg: Nats,
    name: String,
    replica: Replica<C, L>,
    apply: A,
) where
    C: Fn(&Engine, Outbox),
    L: Fn(&Engine) -> Result<Vec<(String, Vec<u8>)>, GatewayError>,
    A: Fn(Arc<Engine>, String, bytes::Bytes) -> F,
    F: Future<Output = Result<bool, GatewayError>>,
{
    let what = replica.what;
    let js = async_nats::jetstream::new(client);
    let mut failures = 0u32;
    let bucket = loop {
        match kv_bucket(&js, &name, &format!("Switchyard {what}"), Duration::ZERO, &cfg).await {
            Ok(b) => break b,
            Err(e) => {
                tracing::warn!(error = %e, "replication of {what} not ready; retrying");
                failures += 1;
                tokio::time::sleep(super::streams::reconnect_delay(failures)).await;
            }
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    (replica.connect)(&engine, tx.clone());
    match (replica.local)(&engine) {
        Ok(all) => {
            for (key, json) in all {
                if matches!(bucket.entry(&key).await, Ok(None)) {
                    let _ = tx.send((key, json));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read local {what} for replication"),
    }
    let out = bucket.clone();
    tokio::spawn(async move {
        while let Some((key, json)) = rx.recv().await {
            if let Err(e) = out.put(&key, json.into()).await {
                tracing::warn!(error = %e, "a change of {what} could not be replicated");
            }
        }
    });
    loop {
        let mut watch = match bucket.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "watching {what} failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { break };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            if let Err(e) = apply(engine.clone(), entry.key.clone(), entry.value).await {
                tracing::warn!(error = %e, key = %entry.key, "a replicated change of {what} was not applied");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
