//! Gateway-side batching of embedding jobs: jobs with the same key, model and parameters
//! that arrive within `embed_batch_window` are sent upstream as one call of up to
//! `embed_batch_max_inputs` inputs, and the answer is split back into one response and
//! one usage record per job (tokens and cost shared in proportion to each job's
//! estimated tokens). Works with any provider, whether or not it has a batch API.
//!
//! One task owns the open batches (no locks); each flush runs as its own task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use switchyard_actors::coalesce;
use switchyard_actors::pipeline::{Failure, JobHooks, KeyEntry, OutcomeBody, RequestCtx};
use switchyard_actors::types::{EmbeddingsRequest, UsageRecord};
use switchyard_actors::{tokens, Engine, GatewayError};
use switchyard_config::Priority;
use tokio::sync::{mpsc, oneshot};

/// What one job gets back: its response or the batch's failure, and its usage record
/// (none when nothing reached a provider or the cache).
pub type Answer = (Result<Bytes, Failure>, Option<UsageRecord>);

/// One embeddings job to batch.
pub struct BatchJob {
    pub job_id: String,
    pub attempt: u32,
    pub key: Arc<KeyEntry>,
    pub priority: Priority,
    pub headers: Vec<(String, String)>,
    pub req: EmbeddingsRequest,
}

/// A job waiting in an open batch.
struct Item {
    job: BatchJob,
    reply: oneshot::Sender<Answer>,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Item>,
}

struct Open {
    items: Vec<Item>,
    inputs: usize,
    deadline: Instant,
}

impl Batcher {
    pub fn start(engine: Arc<Engine>, max_inputs: usize, window: Duration) -> Batcher {
        let (tx, rx) = mpsc::channel(4096);
        actix_web::rt::spawn(run(engine, rx, max_inputs, window));
        Batcher { tx }
    }

    /// Queues a job for the next batch of its group and waits for its answer.
    pub async fn submit(&self, job: BatchJob) -> Answer {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Item { job, reply }).await.is_err() {
            return (Err(GatewayError::Unavailable("the batcher stopped".into()).into()), None);
        }
        rx.await.unwrap_or_else(|_| (Err(GatewayError::Unavailable("the batch was dropped".into()).into()), None))
    }
}

async fn run(engine: Arc<Engine>, mut rx: mpsc::Receiver<Item>, max_inputs: usize, window: Duration) {
    let mut open: HashMap<String, Open> = HashMap::new();
    loop {
        let next_deadline = open.values().map(|o| o.deadline).min();
        let item = match next_deadline {
            Some(d) => tokio::select! {
                item = rx.recv() => item,
                _ = tokio::time::sleep_until(d.into()) => {
                    let now = Instant::now();
                    let due: Vec<String> = open.iter().filter(|(_, o)| o.deadline <= now).map(|(k, _)| k.clone()).collect();
                    for k in due {
                        if let Some(o) = open.remove(&k) {
                            flush(&engine, o.items);
                        }
                    }
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(item) = item else { break };
        let n = coalesce::inputs(&item.job.req).len();
        // forwarded headers go upstream with the call: only equal ones share it
        let group = format!("{}{:?}", coalesce::group_key(&item.job.key.id, &item.job.req), item.job.headers);
        // a job that would overflow the open batch closes it first
        if open.get(&group).is_some_and(|o| o.inputs + n > max_inputs) {
            if let Some(o) = open.remove(&group) {
                flush(&engine, o.items);
            }
        }
        let o = open.entry(group.clone()).or_insert_with(|| Open {
            items: Vec::new(),
            inputs: 0,
            deadline: Instant::now() + window,
        });
        o.inputs += n;
        o.items.push(item);
        if o.inputs >= max_inputs {
            if let Some(o) = open.remove(&group) {
                flush(&engine, o.items);
            }
        }
    }
    for (_, o) in open {
        flush(&engine, o.items);
    }
}

fn flush(engine: &Arc<Engine>, items: Vec<Item>) {
    let engine = engine.clone();
    actix_web::rt::spawn(async move { call(&engine, items).await });
}

/// One upstream call for the batch, split back to its jobs.
async fn call(engine: &Engine, items: Vec<Item>) {
    let Some(first) = items.first().map(|i| &i.job) else { return };
    let reqs: Vec<EmbeddingsRequest> = items.iter().map(|i| i.job.req.clone()).collect();
    let Some((merged, ranges)) = coalesce::merge(&reqs) else { return };
    let weights: Vec<u64> = reqs.iter().map(|r| tokens::estimate_embeddings(r).max(1)).collect();
    let batch_id = format!("batch-{}", first.job_id);
    let hooks = Arc::new(JobHooks {
        id: batch_id.clone(),
        attempt: 1,
        defer_failures: true,
        defer_all: true,
        record: std::sync::OnceLock::new(),
        batch: false,
    });
    let ctx = RequestCtx {
        runtime: engine.runtime(),
        request_id: batch_id,
        key: first.key.clone(),
        priority: items.iter().map(|i| i.job.priority).min().unwrap_or(first.priority),
        no_cache: false,
        headers: first.headers.clone(),
        received: Instant::now(),
        job: Some(hooks.clone()),
        shaped: Default::default(),
        span: switchyard_actors::telemetry::current(),
    };
    let body = serde_json::to_vec(&merged).unwrap_or_default();
    let result = engine.embeddings(&ctx, &body).await;
    drop(ctx);
    let record = hooks.record.get().cloned();
    // the job's own record: the batch's, with the job's id and its share of the tokens
    let own = |item: &Item, share: u64, total: u64| {
        record.as_ref().map(|r| {
            let mut r = r.clone();
            r.request_id = item.job.job_id.clone();
            r.idempotency_key = Some(item.job.job_id.clone());
            r.attempts = item.job.attempt;
            r.cost_usd = if r.input_tokens == 0 { 0.0 } else { r.cost_usd * share as f64 / r.input_tokens as f64 };
            r.input_tokens = share;
            r.cached_tokens = if total == 0 { 0 } else { r.cached_tokens * share / total.max(1) };
            r
        })
    };
    match result {
        Ok(outcome) => {
            let OutcomeBody::Json(bytes) = outcome.body else {
                return fail_all(items, GatewayError::Internal("embeddings answered with a stream".into()), &own);
            };
            let response: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let total = record.as_ref().map_or(0, |r| r.input_tokens);
            let Some(parts) = coalesce::split(&response, &ranges, &weights) else {
                let provider = record.as_ref().map(|r| r.provider.clone()).unwrap_or_default();
                let err = GatewayError::UpstreamInvalid {
                    provider,
                    message: "the batched answer does not hold one embedding per input".into(),
                };
                return fail_all(items, err, &own);
            };
            let shares = coalesce::proportional(total, &weights);
            for ((item, (part, _)), share) in items.into_iter().zip(parts).zip(shares) {
                let r = own(&item, share, total);
                let _ = item.reply.send((Ok(Bytes::from(part.to_string())), r));
            }
        }
        Err(failure) => {
            for item in items {
                let r = own(&item, 0, 0);
                let f = Failure { error: failure.error.clone(), rate: failure.rate.clone(), counted: failure.counted };
                let _ = item.reply.send((Err(f), r));
            }
        }
    }
}

fn fail_all(items: Vec<Item>, error: GatewayError, own: &dyn Fn(&Item, u64, u64) -> Option<UsageRecord>) {
    for item in items {
        let r = own(&item, 0, 0).map(|mut r| {
            r.status = error.class().status;
            r
        });
        let _ = item.reply.send((Err(Failure { error: error.clone(), rate: None, counted: true }), r));
    }
}
