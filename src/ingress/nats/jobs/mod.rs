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

mod serve;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, kv, Context as JetStream};
use async_nats::Client;
use futures_util::{FutureExt, StreamExt};
use switchyard_actors::metrics::JOBS_INFLIGHT;
use switchyard_actors::types::unix_ms;
use switchyard_actors::Engine;
use switchyard_config::Nats;
use tokio::sync::Semaphore;

use super::batcher::Batcher;
use super::streams::{batches_bucket, ensure_streams, Names, NatsError, LANES};
use serve::serve_job;

/// The waits between attempts to set the streams up again (the one backoff).
const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

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
    // failed set-ups in a row: the wait before the next one grows with them
    let mut failures = 0u32;
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
                failures = 0;
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
        failures += 1;
        let delay = switchyard_actors::retry::backoff(RECONNECT_BASE, RECONNECT_MAX, failures);
        tokio::time::sleep(delay).await;
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

/// The most messages one sweep looks at.
const SWEEP_MAX: u64 = 10_000;

/// Removes answered jobs that a lane's consumer will never deliver again: messages at or
/// below its ack floor. On a work queue an ack removes the message, but nats-server
/// killed between persisting a consumer's ack floor and the removal (its store syncs on
/// an interval) restarts with the answered jobs still in the stream, for good, counted
/// against its limits. A message is removed only when its job's answer is stored (the
/// same check that keeps a redelivered job from running twice), so nothing that still
/// needs serving is touched. Normally the range is empty: acked messages are gone and
/// the stream starts above every floor.
async fn sweep_answered(js: &JetStream, names: &Names, results: &stream::Stream, consumers: &mut [PullConsumer; 3]) {
    let Ok(mut jobs) = js.get_stream(&names.jobs_stream).await else { return };
    let Ok(first) = jobs.info().await.map(|i| i.state.first_sequence) else { return };
    let mut removed = 0u64;
    for consumer in consumers.iter_mut() {
        let Ok(floor) = consumer.info().await.map(|i| i.ack_floor.stream_sequence) else { continue };
        for seq in first..=floor.min(first.saturating_add(SWEEP_MAX)) {
            let Ok(msg) = jobs.get_raw_message(seq).await else { continue };
            let msg_id = msg.headers.get("Nats-Msg-Id").map(|v| v.as_str());
            let is_answered = serve::answered(results, names, &msg.payload, msg_id, seq).await;
            if is_answered == Some(true) && jobs.delete_message(seq).await.is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed answered jobs left in the work queue");
    }
}

impl DispatcherInit {
    async fn run(self) -> Result<(), NatsError> {
        let results = self
            .js
            .get_stream(&self.names.results_stream)
            .await
            .map_err(NatsError::on("stream", &self.names.results_stream))?;
        let batches = batches_bucket(&self.js, &self.cfg, &self.names).await?;
        let mut consumers = self.consumers;
        sweep_answered(&self.js, &self.names, &results, &mut consumers).await;
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
        let d = Dispatcher { client: self.client, shared, consumers, buffers: Default::default(), slots };
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
