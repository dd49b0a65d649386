//! Durable jobs on JetStream.
//!
//! Streams (created or updated at start): `<PREFIX>_JOBS` (work queue) on
//! `<prefix>.v1.jobs.high|normal|low`, `<PREFIX>_RESULTS` on `<prefix>.v1.results.<id>`,
//! `<PREFIX>_USAGE` on `<prefix>.v1.usage.<key id>`. One durable pull consumer per lane,
//! shared by every instance, so each job is delivered to one of them.
//!
//! A job's life, and why it is answered exactly once:
//! 1. Its result subject is looked up first: a job whose result exists (a redelivery
//!    after a crash between publishing the result and acking) is acked without a call.
//! 2. It runs through the engine like an HTTP request, as background work (at most the
//!    provider's `jobs_share` of its slots). Its usage record is keyed by the job id, so
//!    the ledger holds one record however often the job is delivered, and it is on disk
//!    before anything is published.
//! 3. The usage event, then the result, are published with `Nats-Msg-Id`s derived from
//!    the job id (JetStream drops a repeat within `duplicate_window`), each confirmed.
//! 4. Only then is the job acked. A crash anywhere before leaves it unacked, and
//!    JetStream redelivers it after `ack_wait`; long jobs send in-progress acks.
//!
//! Transient failures (upstream 5xx/429/timeouts) are retried by a delayed NAK with
//! exponential backoff and jitter until `max_attempts` deliveries, then become a failed
//! result; permanent ones (bad request, unknown model, bad key) fail at once. Refusals by
//! the gateway's own limits are delayed, never failed.
//!
//! Priorities: the dispatcher keeps the head of each lane and starts the one with the
//! highest `age + (2 - lane) * aging` (high = lane 0), so high drains before normal
//! before low, and a job that has waited long enough wins over newer, higher ones.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, kv, Context as JetStream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_actors::metrics::{JOBS_INFLIGHT, JOBS_TOTAL, JOB_DURATION, JOB_QUEUE_WAIT};
use switchyard_actors::pipeline::{Failure, JobHooks, OutcomeBody, RequestCtx};
use switchyard_actors::types::{unix_ms, EmbeddingsRequest, UsageRecord};
use switchyard_actors::{Engine, GatewayError};
use switchyard_config::{Nats, Priority};
use tokio::sync::Semaphore;

use super::batcher::{BatchJob, Batcher};
use super::streams::{batches_bucket, ensure_streams, valid_job_id, Names, NatsError, LANES};
use super::{call, header};
use crate::ingress::batch::items::{gate, output_line, BatchRef, Gate};
use switchyard_actors::types::Endpoint;

/// Longest wait for a no-wait fetch's answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates or updates the streams and the lane consumers.
async fn setup(js: &JetStream, cfg: &Nats, names: &Names) -> Result<[PullConsumer; 3], NatsError> {
    ensure_streams(js, cfg, names).await?;
    let stream = js.get_stream(&names.jobs_stream).await.map_err(NatsError::on("stream", &names.jobs_stream))?;
    let mut consumers = Vec::new();
    for p in LANES {
        let config = pull::Config {
            durable_name: Some(names.consumer(p)),
            filter_subject: names.lane_subject(p),
            ack_policy: AckPolicy::Explicit,
            ack_wait: cfg.ack_wait,
            // redelivery is bounded by the runner (max_attempts), not by the server
            max_deliver: -1,
            max_ack_pending: 10_000,
            ..Default::default()
        };
        let name = names.consumer(p);
        let consumer = match stream.get_or_create_consumer(&name, config.clone()).await {
            Ok(c) => c,
            // an existing consumer with other settings (a changed ack_wait): update it
            Err(_) => stream.update_consumer(config).await.map_err(NatsError::on("consumer", &name))?,
        };
        consumers.push(consumer);
    }
    consumers.try_into().map_err(|_| NatsError::Invalid("not three lane consumers".into()))
}

/// Serves jobs for as long as the gateway runs: waits for the connection, sets the
/// streams up, dispatches; after an error (NATS lost), waits and starts over.
pub async fn run(client: Client, engine: Arc<Engine>, cfg: Nats) {
    let names = Names::new(&cfg);
    let js = jetstream::new(client.clone());
    let mut backoff = Duration::from_millis(250);
    // shared across restarts of the dispatcher: jobs still running hold their slots
    let slots = Arc::new(Semaphore::new(cfg.job_concurrency));
    let batcher = (cfg.embed_batch_max_inputs > 1)
        .then(|| Batcher::start(engine.clone(), cfg.embed_batch_max_inputs, cfg.embed_batch_window));
    loop {
        while client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match setup(&js, &cfg, &names).await {
            Ok(consumers) => {
                tracing::info!(stream = %names.jobs_stream, "serving durable jobs");
                backoff = Duration::from_millis(250);
                let (client, js, engine, cfg, names) =
                    (client.clone(), js.clone(), engine.clone(), cfg.clone(), names.clone());
                let (slots, batcher) = (slots.clone(), batcher.clone());
                let d = DispatcherInit { client, js, engine, cfg, names, consumers, slots, batcher };
                if let Err(e) = d.run().await {
                    tracing::warn!(error = %e, "job dispatcher stopped; restarting");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot set up the job streams; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A fetched job waiting for a slot.
struct Buffered {
    msg: jetstream::Message,
    published_ms: u64,
    fetched: Instant,
}

struct Dispatcher {
    client: Client,
    shared: Arc<Shared>,
    consumers: [PullConsumer; 3],
    buffers: [VecDeque<Buffered>; 3],
    slots: Arc<Semaphore>,
}

/// What every job task needs.
struct Shared {
    js: JetStream,
    engine: Arc<Engine>,
    cfg: Nats,
    names: Names,
    results: stream::Stream,
    /// Batch API records: a batch item runs only while its batch is live.
    batches: kv::Store,
    batcher: Option<Batcher>,
}

struct DispatcherInit {
    client: Client,
    js: JetStream,
    engine: Arc<Engine>,
    cfg: Nats,
    names: Names,
    consumers: [PullConsumer; 3],
    slots: Arc<Semaphore>,
    batcher: Option<Batcher>,
}

impl DispatcherInit {
    async fn run(self) -> Result<(), NatsError> {
        let results = self
            .js
            .get_stream(&self.names.results_stream)
            .await
            .map_err(NatsError::on("stream", &self.names.results_stream))?;
        let batches = batches_bucket(&self.js, &self.cfg, &self.names).await?;
        let slots = self.slots;
        let shared = Arc::new(Shared {
            js: self.js,
            engine: self.engine,
            cfg: self.cfg,
            names: self.names,
            results,
            batches,
            batcher: self.batcher,
        });
        let d =
            Dispatcher { client: self.client, shared, consumers: self.consumers, buffers: Default::default(), slots };
        d.run().await
    }
}

impl Dispatcher {
    async fn run(mut self) -> Result<(), NatsError> {
        // every publish to a lane also reaches this plain subscription: an idle
        // dispatcher wakes at once instead of polling
        let wake_subject = format!("{}.v1.jobs.*", self.shared.names.prefix);
        let mut wake =
            self.client.subscribe(wake_subject.clone()).await.map_err(NatsError::on("subscribe", &wake_subject))?;
        let keepalive = self.shared.cfg.ack_wait / 3;
        let mut idle = Duration::from_millis(5);
        loop {
            let permit = tokio::select! {
                p = self.slots.clone().acquire_owned() => p.map_err(|e| NatsError::Invalid(format!("job slots: {e}")))?,
                _ = tokio::time::sleep(keepalive) => {
                    self.keep_buffered_alive(keepalive).await;
                    continue;
                }
            };
            self.refill().await?;
            match self.pick() {
                Some((lane, job)) => {
                    idle = Duration::from_millis(5);
                    let shared = self.shared.clone();
                    actix_web::rt::spawn(async move {
                        metrics::gauge!(JOBS_INFLIGHT).increment(1.0);
                        serve_job(&shared, LANES[lane], job).await;
                        metrics::gauge!(JOBS_INFLIGHT).decrement(1.0);
                        drop(permit);
                    });
                }
                None => {
                    drop(permit);
                    // nothing queued: wait for a publish, or a moment (a delayed NAK
                    // comes back without one)
                    tokio::select! {
                        _ = wake.next() => {}
                        _ = tokio::time::sleep(idle) => {}
                    }
                    while let Some(Some(_)) = wake.next().now_or_never() {}
                    idle = (idle * 2).min(Duration::from_millis(250));
                }
            }
        }
    }

    /// Fetches (without waiting) into every empty lane buffer.
    async fn refill(&mut self) -> Result<(), NatsError> {
        let want = (self.slots.available_permits() + 1).min(64);
        for (lane, (consumer, buffer)) in LANES.iter().zip(self.consumers.iter().zip(self.buffers.iter_mut())) {
            if !buffer.is_empty() {
                continue;
            }
            let fetch = async {
                let mut batch = consumer
                    .fetch()
                    .max_messages(want)
                    .messages()
                    .await
                    .map_err(NatsError::on("fetch", lane.as_str()))?;
                while let Some(m) = batch.next().await {
                    match m {
                        Ok(msg) => {
                            let published_ms = msg
                                .info()
                                .map(|i| (i.published.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
                                .unwrap_or_else(|_| unix_ms());
                            buffer.push_back(Buffered { msg, published_ms, fetched: Instant::now() });
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "fetch ended");
                            break;
                        }
                    }
                }
                Ok::<(), NatsError>(())
            };
            // a fetch whose answer was lost with the connection would wait forever;
            // fetched messages stay buffered either way
            match tokio::time::timeout(FETCH_TIMEOUT, fetch).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(NatsError::on("fetch", lane.as_str())(e)),
                Err(_) => return Err(NatsError::on("fetch", lane.as_str())(format!("no answer in {FETCH_TIMEOUT:?}"))),
            }
        }
        Ok(())
    }

    /// The head with the highest `age + (2 - lane) * aging`.
    fn pick(&mut self) -> Option<(usize, Buffered)> {
        let now = unix_ms();
        let aging = self.shared.cfg.aging.as_millis() as u64;
        let best = (0..LANES.len())
            .filter_map(|lane| {
                let head = self.buffers[lane].front()?;
                let score = now.saturating_sub(head.published_ms) + (2 - lane as u64) * aging;
                Some((score, std::cmp::Reverse(lane), lane))
            })
            .max()?;
        self.buffers[best.2].pop_front().map(|b| (best.2, b))
    }

    /// In-progress acks for fetched jobs that still wait for a slot.
    async fn keep_buffered_alive(&self, after: Duration) {
        for b in self.buffers.iter().flatten() {
            if b.fetched.elapsed() >= after {
                let _ = b.msg.ack_with(AckKind::Progress).await;
            }
        }
    }
}

/// `{"id", "endpoint", "body"}`, plus `batch` for an item of a Batch API batch.
#[derive(Deserialize)]
struct JobBody {
    id: String,
    #[serde(default = "default_endpoint")]
    endpoint: String,
    body: Value,
    #[serde(default)]
    batch: Option<BatchRef>,
}

fn default_endpoint() -> String {
    "chat".into()
}

/// How a failed attempt goes on.
#[derive(Debug, PartialEq)]
enum Next {
    /// Refused by the gateway's own limits: try again later, never a failed result.
    Defer(Duration),
    /// Transient upstream failure: retry while attempts remain.
    Retry(Option<Duration>),
    /// Fail now.
    Fail,
}

fn next_step(err: &GatewayError) -> Next {
    use GatewayError::*;
    match err {
        RateLimited { retry_after, .. } => Next::Defer(*retry_after),
        QueueFull(_) | Unavailable(_) => Next::Defer(Duration::from_millis(500)),
        // the one classifier: what another try may fix
        e if e.retryable() => Next::Retry(e.retry_after_secs().map(Duration::from_secs)),
        _ => Next::Fail,
    }
}

/// The delay before a job's next attempt: the one backoff, with the `[nats]` settings.
fn backoff(cfg: &Nats, attempt: u32) -> Duration {
    switchyard_actors::retry::backoff(cfg.retry_backoff, cfg.retry_backoff_max, attempt)
}

async fn serve_job(s: &Shared, lane: Priority, b: Buffered) {
    let msg = Arc::new(b.msg);
    let (delivered, seq) = match msg.info() {
        Ok(i) => (i.delivered.max(1) as u32, i.stream_sequence),
        Err(_) => (1, 0),
    };
    if delivered == 1 {
        let wait = unix_ms().saturating_sub(b.published_ms) as f64 / 1000.0;
        metrics::histogram!(JOB_QUEUE_WAIT, "lane" => lane.as_str()).record(wait);
    }
    // in-progress acks while the job runs
    let keepalive = {
        let (msg, every) = (msg.clone(), s.cfg.ack_wait / 3);
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        })
    };
    let outcome = run_job(s, lane, &msg, delivered, seq).await;
    keepalive.abort();
    let label = match outcome {
        Done::Answered { failed, id } => {
            let ack = msg.double_ack().await;
            if let Err(e) = ack {
                // the result is stored; a redelivery finds it and only acks
                tracing::warn!(job = %id, error = %e, "cannot ack a finished job");
            }
            metrics::histogram!(JOB_DURATION, "lane" => lane.as_str())
                .record(unix_ms().saturating_sub(b.published_ms) as f64 / 1000.0);
            if failed {
                "failed"
            } else {
                "completed"
            }
        }
        Done::Duplicate => {
            let _ = msg.double_ack().await;
            "duplicate"
        }
        Done::Later { delay, retried } => {
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            if retried {
                "retried"
            } else {
                "deferred"
            }
        }
        Done::Unstored => {
            // not acked: JetStream redelivers after ack_wait
            "unstored"
        }
    };
    metrics::counter!(JOBS_TOTAL, "lane" => lane.as_str(), "outcome" => label).increment(1);
}

enum Done {
    /// The result (and usage) are stored: ack.
    Answered { failed: bool, id: String },
    /// A result already existed: ack without a call.
    Duplicate,
    /// NAK with this delay.
    Later { delay: Duration, retried: bool },
    /// The result could not be stored: leave unacked.
    Unstored,
}

async fn run_job(s: &Shared, lane: Priority, msg: &jetstream::Message, attempt: u32, seq: u64) -> Done {
    let received = Instant::now();
    let lookup = header(msg.headers.as_ref());
    // the id: from the body, else the publisher's Nats-Msg-Id, else the stream sequence
    let parsed = serde_json::from_slice::<JobBody>(&msg.payload);
    let fallback_id =
        lookup("nats-msg-id").filter(|i| valid_job_id(i)).map_or_else(|| format!("seq-{seq}"), str::to_string);
    let (id, job) = match parsed {
        Ok(j) if !valid_job_id(&j.id) => {
            let message = format!("`id` must be 1-128 characters of [A-Za-z0-9_-], not `{}`", j.id);
            (fallback_id, Err(GatewayError::BadRequest(message)))
        }
        Ok(j) if j.batch.as_ref().is_some_and(|b| !valid_job_id(&b.id)) => {
            let message = "`batch.id` must be 1-128 characters of [A-Za-z0-9_-]".to_string();
            (j.id.clone(), Err(GatewayError::BadRequest(message)))
        }
        Ok(j) => (j.id.clone(), Ok(j)),
        Err(e) => (fallback_id, Err(GatewayError::BadRequest(format!("invalid job body: {e}")))),
    };
    let batch = job.as_ref().ok().and_then(|j| j.batch.clone());
    let batch = batch.as_ref();
    // a job whose result exists is never run again
    let subjects = match batch {
        None => vec![s.names.result_subject(&id)],
        Some(b) => vec![s.names.batch_output(&b.id, true, &id), s.names.batch_output(&b.id, false, &id)],
    };
    for subject in subjects {
        match s.results.get_last_raw_message_by_subject(&subject).await {
            Ok(_) => return Done::Duplicate,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot look the result up; retrying later");
                return Done::Later { delay: Duration::from_secs(1), retried: false };
            }
        }
    }
    let job = match job {
        Ok(j) => j,
        Err(error) => {
            let failure = Failure::from(error);
            return store(s, &id, attempt, Err(&failure), None, batch).await;
        }
    };
    let api = match job.endpoint.as_str() {
        "chat" | "chat.completions" | "/v1/chat/completions" => Endpoint::Chat,
        "embeddings" | "/v1/embeddings" => Endpoint::Embeddings,
        other => {
            let failure = Failure::from(GatewayError::BadRequest(format!(
                "`endpoint` must be `chat` or `embeddings`, not `{other}`"
            )));
            return store(s, &id, attempt, Err(&failure), None, batch).await;
        }
    };
    let mut ctx = match RequestCtx::from_headers(s.engine.runtime(), id.clone(), received, lookup) {
        Ok(c) => c,
        Err(e) => return store(s, &id, attempt, Err(&Failure::from(e)), None, batch).await,
    };
    ctx.priority = lane;
    if let Some(b) = batch {
        match gate(&s.batches, b, &ctx.key.id).await {
            Ok(()) => {}
            Err(Gate::Later) => return Done::Later { delay: Duration::from_secs(1), retried: false },
            Err(Gate::Skip(failure)) => return store(s, &id, attempt, Err(&failure), None, batch).await,
            // not this key's batch: answered like a plain job, the batch is untouched
            Err(Gate::Foreign(failure)) => return store(s, &id, attempt, Err(&failure), None, None).await,
        }
    }
    // a job's answer is stored whole: no streaming
    let mut body = job.body;
    if let Some(o) = body.as_object_mut() {
        o.remove("stream");
        o.remove("stream_options");
    }
    let body = serde_json::to_vec(&body).unwrap_or_default();
    // `written`: the finisher already put a success's record in the ledger
    let (result, record, written) = match (api, &s.batcher) {
        (Endpoint::Embeddings, Some(batcher)) => {
            let req = match EmbeddingsRequest::parse(&body) {
                Ok(r) => r,
                Err(e) => return store(s, &id, attempt, Err(&Failure::from(e)), None, batch).await,
            };
            let (key, headers) = (ctx.key.clone(), std::mem::take(&mut ctx.headers));
            drop(ctx);
            let job = BatchJob { job_id: id.clone(), attempt, key, priority: lane, headers, req };
            let (result, record) = batcher.submit(job).await;
            (result, record, false)
        }
        _ => {
            let hooks = Arc::new(JobHooks {
                id: id.clone(),
                attempt,
                defer_failures: true,
                defer_all: false,
                record: std::sync::OnceLock::new(),
                batch: batch.is_some(),
            });
            ctx.job = Some(hooks.clone());
            let result = call(&s.engine, api, &ctx, &body).await;
            drop(ctx);
            let result = match result {
                Ok(outcome) => match outcome.body {
                    OutcomeBody::Json(bytes) => Ok(bytes),
                    OutcomeBody::Sse(_) => {
                        Err(Failure::from(GatewayError::Internal("a job was answered with a stream".into())))
                    }
                },
                Err(f) => Err(f),
            };
            (result, hooks.record.get().cloned(), true)
        }
    };
    match result {
        Ok(bytes) => {
            if let (false, Some(r)) = (written, &record) {
                s.engine.record_usage(r.clone()).await;
            }
            store(s, &id, attempt, Ok(bytes), record, batch).await
        }
        Err(failure) => match next_step(&failure.error) {
            Next::Defer(d) => Done::Later { delay: d.max(Duration::from_millis(100)), retried: false },
            Next::Retry(after) if attempt < s.cfg.max_attempts => {
                let delay = backoff(&s.cfg, attempt).max(after.unwrap_or_default());
                tracing::info!(job = %id, attempt, delay_ms = delay.as_millis() as u64, error = %failure.error,
                    "transient failure; the job will be retried");
                Done::Later { delay, retried: true }
            }
            _ => {
                if let Some(r) = &record {
                    // failures are deferred: this one is the job's final outcome
                    s.engine.record_usage(r.clone()).await;
                }
                store(s, &id, attempt, Err(&failure), record, batch).await
            }
        },
    }
}

/// Publishes the usage event and then the result (or a batch item's output line), each
/// confirmed by JetStream and de-duplicated by a `Nats-Msg-Id` derived from the job id.
async fn store(
    s: &Shared,
    id: &str,
    attempts: u32,
    answer: Result<Bytes, &Failure>,
    record: Option<UsageRecord>,
    batch: Option<&BatchRef>,
) -> Done {
    let failed = answer.is_err();
    if let Some(r) = &record {
        let body = match serde_json::to_vec(r) {
            Ok(b) => Bytes::from(b),
            Err(_) => Bytes::new(),
        };
        if !publish_confirmed(&s.js, s.names.usage_subject(&r.key_id), &format!("usage-{id}"), body).await {
            return Done::Unstored;
        }
    }
    if let Some(b) = batch {
        let answer = answer.map(|bytes| serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null));
        let line = Bytes::from(output_line(id, b, &answer).to_string());
        let subject = s.names.batch_output(&b.id, !failed, id);
        // its own message-id space: a forged plain job of the same id cannot shadow it
        if !publish_confirmed(&s.js, subject, &format!("batch-result-{id}"), line).await {
            return Done::Unstored;
        }
        return Done::Answered { failed, id: id.to_string() };
    }
    let usage = record.as_ref().and_then(|r| serde_json::to_value(r).ok()).unwrap_or(Value::Null);
    let result = match answer {
        Ok(bytes) => {
            let response: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            json!({"id": id, "status": "completed", "response": response, "error": null, "usage": usage,
                "attempts": attempts})
        }
        Err(f) => {
            let mut error = f.error.body().get("error").cloned().unwrap_or(Value::Null);
            if let Some(o) = error.as_object_mut() {
                o.insert("status".into(), json!(f.error.class().status));
            }
            json!({"id": id, "status": "failed", "response": null, "error": error, "usage": usage,
                "attempts": attempts})
        }
    };
    let body = Bytes::from(result.to_string());
    if !publish_confirmed(&s.js, s.names.result_subject(id), &format!("result-{id}"), body).await {
        return Done::Unstored;
    }
    Done::Answered { failed, id: id.to_string() }
}

/// Publishes with a message id and waits for JetStream's ack; retries a few times.
async fn publish_confirmed(js: &JetStream, subject: String, msg_id: &str, body: Bytes) -> bool {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let sent = match js.publish_with_headers(subject.clone(), headers, body.clone()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(subject, attempt, error = %e, "cannot store a job message; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Nats {
        let raw = "[nats]\nurl = \"nats://127.0.0.1:4222\"\nprefix = \"acme.ai\"\n";
        match switchyard_config::load_str(raw, std::path::Path::new("."), &|_| None) {
            Ok(c) => c.nats.clone().unwrap(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn names_follow_the_prefix() {
        let n = Names::new(&cfg());
        assert_eq!(n.jobs_stream, "ACME_AI_JOBS");
        assert_eq!(n.lane_subject(Priority::Low), "acme.ai.v1.jobs.low");
        assert_eq!(n.result_subject("j1"), "acme.ai.v1.results.j1");
        assert_eq!(n.usage_subject("team.a b"), "acme.ai.v1.usage.team_a_b");
        assert_eq!(n.consumer(Priority::High), "acme_ai-jobs-high");
    }

    #[test]
    fn job_ids_are_one_subject_token() {
        assert!(valid_job_id("job-1_A"));
        for bad in ["", "a.b", "a*", "a b", ">", &"x".repeat(129)] {
            assert!(!valid_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn failures_are_deferred_retried_or_final() {
        let up = |status| GatewayError::UpstreamStatus {
            provider: "p".into(),
            status,
            message: String::new(),
            retry_after: Some(3),
        };
        assert_eq!(next_step(&up(503)), Next::Retry(Some(Duration::from_secs(3))));
        assert_eq!(next_step(&up(429)), Next::Retry(Some(Duration::from_secs(3))));
        assert_eq!(next_step(&up(400)), Next::Fail);
        assert_eq!(next_step(&up(401)), Next::Fail);
        assert_eq!(next_step(&GatewayError::UnknownModel("m".into())), Next::Fail);
        assert_eq!(next_step(&GatewayError::InvalidKey), Next::Fail);
        assert!(matches!(next_step(&GatewayError::QueueFull("p".into())), Next::Defer(_)));
        let timeout = GatewayError::UpstreamTimeout { provider: "p".into(), phase: "first byte" };
        assert_eq!(next_step(&timeout), Next::Retry(None));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = cfg();
        for attempt in 1..=20 {
            let d = backoff(&c, attempt);
            let full = c.retry_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(c.retry_backoff_max);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} vs {full:?}");
        }
    }
}
