//! Request logs on JetStream: the `<PREFIX>_LOGS` stream (limits-based, oldest dropped
//! first past `request_logs_max_age_secs` or `request_logs_max_bytes`) and the task that
//! publishes the engine's entries to it, a window of acks in flight at once. Entries it
//! cannot store are counted as dropped; requests never wait for them.

use std::sync::Arc;

use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::Context as JetStream;
use async_nats::HeaderMap;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use switchyard_actors::metrics::{REQUEST_LOGS_DROPPED_TOTAL, REQUEST_LOGS_TOTAL};
use switchyard_actors::pipeline::request_log::{LogEntry, RequestLogs};
use switchyard_actors::Engine;
use switchyard_config::Nats;
use tokio::sync::mpsc;

use super::streams::{reconnect_delay, Names, NatsError};

/// Publishes whose acks may be outstanding at once.
const WINDOW: usize = 256;

/// Creates or updates the logs stream.
pub async fn ensure_stream(js: &JetStream, cfg: &Nats, names: &Names) -> Result<(), NatsError> {
    let c = stream::Config {
        name: names.logs_stream.clone(),
        subjects: vec![names.logs_of_key(None)],
        storage: StorageType::File,
        max_age: cfg.request_logs_max_age,
        max_bytes: cfg.request_logs_max_bytes,
        discard: DiscardPolicy::Old,
        duplicate_window: cfg.duplicate_window,
        num_replicas: cfg.replicas,
        ..Default::default()
    };
    js.create_or_update_stream(c).await.map_err(NatsError::on("stream", &names.logs_stream))?;
    Ok(())
}

/// Hands the engine a queue for its log entries and publishes them until the engine
/// is gone. The stream is made first (retried while NATS is not reachable).
pub async fn run(client: async_nats::Client, engine: Arc<Engine>, cfg: Nats) {
    let names = Names::new(&cfg);
    let js = async_nats::jetstream::new(client);
    let mut failures = 0;
    while let Err(e) = ensure_stream(&js, &cfg, &names).await {
        tracing::warn!(error = %e, "request logs: cannot create the stream yet");
        tokio::time::sleep(reconnect_delay(failures)).await;
        failures += 1;
    }
    let (logs, rx) = RequestLogs::new(cfg.request_logs_max_field_bytes);
    engine.log_requests_to(logs);
    tracing::info!(stream = %names.logs_stream, "request logs on");
    publish(js, names, rx).await;
}

async fn publish(js: JetStream, names: Names, mut rx: mpsc::Receiver<LogEntry>) {
    let mut pending = FuturesUnordered::new();
    loop {
        tokio::select! {
            entry = rx.recv() => {
                let Some(e) = entry else { break };
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("log-{}", e.request_id).as_str());
                headers.insert("content-type", "application/json");
                match js.publish_with_headers(names.log_subject(&e.key_id, &e.request_id), headers, e.body).await {
                    Ok(ack) => pending.push(std::future::IntoFuture::into_future(ack)),
                    Err(err) => dropped(&err),
                }
                while pending.len() >= WINDOW {
                    if let Some(r) = pending.next().await {
                        settle(r);
                    }
                }
            }
            Some(r) = pending.next(), if !pending.is_empty() => settle(r),
        }
    }
    while let Some(r) = pending.next().await {
        settle(r);
    }
}

fn settle<E: std::fmt::Display>(r: Result<async_nats::jetstream::publish::PublishAck, E>) {
    match r {
        Ok(_) => metrics::counter!(REQUEST_LOGS_TOTAL).increment(1),
        Err(e) => dropped(&e),
    }
}

fn dropped(e: &dyn std::fmt::Display) {
    metrics::counter!(REQUEST_LOGS_DROPPED_TOTAL).increment(1);
    tracing::warn!(error = %e, "request log entry not stored");
}
