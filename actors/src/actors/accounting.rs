//! Accounting: the usage ledger (bincode records in sled, written in group commits on a
//! timer or when the batch is full, each idempotency key at most once) and the token and
//! cost metrics. Runs on its own arbiter, so the fsync of a commit never blocks a request.
//!
//! Records reach it through a [`RecordSink`]: a bounded queue that the actor drains on
//! its commit tick. Records wait for the tick anyway, so waking the actor for each one
//! (an eventfd write and a context switch, about 4% of the gateway's CPU per message in
//! the load benchmark) bought nothing. When the queue is full a record falls back to the
//! actor's mailbox, which wakes it.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::messages::{deliver, To};
use crate::metrics::{COST_USD_TOTAL, LEDGER_FLUSH_DURATION, LEDGER_RECORDS_TOTAL, TOKENS_TOTAL};
use crate::store::Store;
use crate::types::UsageRecord;

/// How far back the start-up repair of idempotency keys looks.
const REPAIR_WINDOW_MS: u64 = 60 * 60 * 1000;

/// One finished request; `durable` is answered once its commit is on disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record(pub UsageRecord, pub Option<oneshot::Sender<()>>, pub tracing::Span);

/// Commit everything buffered now (shutdown, tests). Returns the records written.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Flush;

/// The sending side of the ledger queue; cheap to clone.
#[derive(Clone)]
pub struct RecordSink {
    tx: mpsc::Sender<Record>,
    to: To<Record>,
}

impl RecordSink {
    /// Queues a record without waking the accounting actor.
    pub fn record(&self, r: Record) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) | Err(mpsc::error::TrySendError::Closed(r)) => deliver(&self.to, r),
        }
    }
}

/// A model's token and cost metrics, registered once (see [`crate::metrics::Hot`]).
struct ModelMetrics {
    input: metrics::Counter,
    output: metrics::Counter,
    cached: metrics::Counter,
    cache_write: metrics::Counter,
    reasoning: metrics::Counter,
    /// `metrics` counters are integers; a monotonic f64 gauge carries dollars exactly
    cost: metrics::Gauge,
}

impl ModelMetrics {
    fn new(alias: &str) -> ModelMetrics {
        let tokens = |direction: &'static str| metrics::counter!(TOKENS_TOTAL, "direction" => direction, "model" => alias.to_string());
        ModelMetrics {
            input: tokens("input"),
            output: tokens("output"),
            cached: tokens("cached"),
            cache_write: tokens("cache_write"),
            reasoning: tokens("reasoning"),
            cost: metrics::gauge!(COST_USD_TOTAL, "model" => alias.to_string()),
        }
    }
}

/// Models whose metric handles are kept (the config bounds them; a reload may rename).
const MODEL_METRICS_CAP: usize = 1024;

/// Records queued before a commit is forced through the mailbox instead.
pub const QUEUE_CAPACITY: usize = 1 << 16;

pub struct Accounting {
    store: Store,
    queue: mpsc::Receiver<Record>,
    buffer: Vec<UsageRecord>,
    /// Callers waiting for the records in `buffer` to be durable.
    waiters: Vec<oneshot::Sender<()>>,
    /// The records' ledger spans, which end with their commit.
    spans: Vec<tracing::Span>,
    interval: Duration,
    batch_max: usize,
    next_seq: u64,
    model_metrics: std::collections::HashMap<String, ModelMetrics>,
}

impl Accounting {
    /// Starts the actor on `arbiter` and returns its address and record sink.
    pub fn start_with_sink(
        arbiter: &ArbiterHandle,
        store: Store,
        interval: Duration,
        batch_max: usize,
    ) -> (Addr<Accounting>, RecordSink) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let addr = Accounting::start_in_arbiter(arbiter, move |_| Accounting::new(store, rx, interval, batch_max));
        (addr.clone(), RecordSink { tx, to: std::sync::Arc::new(addr.recipient()) })
    }

    pub fn new(store: Store, queue: mpsc::Receiver<Record>, interval: Duration, batch_max: usize) -> Accounting {
        let next_seq = store.last_ledger_seq().unwrap_or(0);
        // a crash may have left recent records without their idempotency keys
        let recent = crate::types::unix_ms();
        match store.repair_keys(recent.saturating_sub(REPAIR_WINDOW_MS)) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(records = n, "re-indexed ledger records after a crash"),
            Err(e) => tracing::error!(error = %e, "ledger key repair failed"),
        }
        Accounting {
            store,
            queue,
            buffer: Vec::with_capacity(batch_max),
            waiters: Vec::new(),
            spans: Vec::new(),
            interval,
            batch_max,
            next_seq,
            model_metrics: std::collections::HashMap::new(),
        }
    }

    /// Moves queued records into the buffer, committing whenever it is full, then
    /// commits the rest.
    fn drain_and_commit(&mut self) -> usize {
        let mut n = 0;
        while let Ok(r) = self.queue.try_recv() {
            n += self.take(r);
        }
        n + self.commit()
    }

    /// One record into the buffer (and the metrics); commits when the batch is full.
    fn take(&mut self, Record(r, durable, span): Record) -> usize {
        if let Some(w) = durable {
            self.waiters.push(w);
        }
        if !span.is_disabled() {
            self.spans.push(span);
        }
        if !r.cache_hit {
            if self.model_metrics.len() >= MODEL_METRICS_CAP && !self.model_metrics.contains_key(&r.alias) {
                self.model_metrics.clear();
            }
            let m = self.model_metrics.entry(r.alias.clone()).or_insert_with(|| ModelMetrics::new(&r.alias));
            let counts = [
                (&m.input, r.input_tokens),
                (&m.output, r.output_tokens),
                (&m.cached, r.cached_tokens),
                (&m.cache_write, r.cache_write_tokens),
                (&m.reasoning, r.reasoning_tokens),
            ];
            for (counter, n) in counts {
                if n > 0 {
                    counter.increment(n);
                }
            }
            if r.cost_usd > 0.0 {
                m.cost.increment(r.cost_usd);
            }
        }
        self.buffer.push(r);
        if self.buffer.len() >= self.batch_max {
            self.commit()
        } else {
            0
        }
    }

    fn commit(&mut self) -> usize {
        if self.buffer.is_empty() {
            return 0;
        }
        let started = Instant::now();
        let batch = std::mem::take(&mut self.buffer);
        match self.store.append_usage(&batch, &mut self.next_seq) {
            Ok(n) => {
                for w in self.waiters.drain(..) {
                    let _ = w.send(());
                }
                self.spans.clear();
                metrics::counter!(LEDGER_RECORDS_TOTAL).increment(n as u64);
                metrics::histogram!(LEDGER_FLUSH_DURATION).record(started.elapsed().as_secs_f64());
                n
            }
            Err(e) => {
                // keep the records and try again at the next tick
                tracing::error!(error = %e, records = batch.len(), "ledger commit failed; will retry");
                self.buffer = batch;
                0
            }
        }
    }
}

impl Actor for Accounting {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
        ctx.run_interval(self.interval, |this, _| {
            this.drain_and_commit();
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.drain_and_commit();
    }
}

impl Handler<Record> for Accounting {
    type Result = ();

    fn handle(&mut self, r: Record, _: &mut Self::Context) {
        // the queue overflowed: take everything now
        self.take(r);
        self.drain_and_commit();
    }
}

impl Handler<Flush> for Accounting {
    type Result = usize;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> usize {
        self.drain_and_commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Endpoint;

    fn record(id: &str) -> UsageRecord {
        UsageRecord {
            provider: "p".into(),
            upstream_model: "m".into(),
            input_tokens: 3,
            output_tokens: 4,
            cost_usd: 0.5,
            latency_us: 10,
            status: 200,
            ..UsageRecord::new(id, 5, "k", Endpoint::Chat, "a", false)
        }
    }

    #[actix_rt::test]
    async fn group_commit_on_batch_size_timer_and_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let arbiter = Arbiter::current();
        let (acc, sink) = Accounting::start_with_sink(&arbiter, store.clone(), Duration::from_millis(30), 2);
        // records through the mailbox: the batch size forces a commit
        acc.send(Record(record("a"), None, tracing::Span::none())).await.unwrap();
        acc.send(Record(record("b"), None, tracing::Span::none())).await.unwrap();
        assert_eq!(store.usage_since(0).unwrap().len(), 2, "a full batch commits at once");
        // records through the sink wait for the tick
        let (tx, rx) = oneshot::channel();
        sink.record(Record(record("c"), Some(tx), tracing::Span::none()));
        rx.await.expect("answered after the timer's commit");
        assert_eq!(store.usage_since(0).unwrap().len(), 3, "durable when answered");
        // the same job delivered twice is written once
        let job = UsageRecord { idempotency_key: Some("job-1".into()), ..record("d") };
        sink.record(Record(job.clone(), None, tracing::Span::none()));
        assert_eq!(acc.send(Flush).await.unwrap(), 1);
        sink.record(Record(job, None, tracing::Span::none()));
        assert_eq!(acc.send(Flush).await.unwrap(), 0, "a redelivered job is not written twice");
        assert_eq!(store.usage_since(0).unwrap().len(), 4);
    }
}
