//! Accounting: the usage ledger (bincode records in sled, written in group commits on a
//! timer or when the batch is full, each request id at most once) and the token and cost
//! metrics. Runs on its own arbiter, so the fsync of a commit never blocks a request.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::metrics::{COST_USD_TOTAL, LEDGER_FLUSH_DURATION, LEDGER_RECORDS_TOTAL, TOKENS_TOTAL};
use crate::store::Store;
use crate::types::UsageRecord;

/// One finished request; `durable` is answered once its commit is on disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record(pub UsageRecord, pub Option<oneshot::Sender<()>>);

/// Commit everything buffered now (shutdown, tests). Returns the records written.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Flush;

pub struct Accounting {
    store: Store,
    buffer: Vec<UsageRecord>,
    /// Callers waiting for the records in `buffer` to be durable.
    waiters: Vec<oneshot::Sender<()>>,
    interval: Duration,
    batch_max: usize,
    next_seq: u64,
}

impl Accounting {
    pub fn new(store: Store, interval: Duration, batch_max: usize) -> Accounting {
        let next_seq = store.last_ledger_seq().unwrap_or(0);
        Accounting {
            store,
            buffer: Vec::with_capacity(batch_max),
            waiters: Vec::new(),
            interval,
            batch_max,
            next_seq,
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
            this.commit();
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.commit();
    }
}

impl Handler<Record> for Accounting {
    type Result = ();

    fn handle(&mut self, Record(r, durable): Record, _: &mut Self::Context) {
        if let Some(w) = durable {
            self.waiters.push(w);
        }
        let alias = r.alias.clone();
        if r.input_tokens > 0 {
            metrics::counter!(TOKENS_TOTAL, "direction" => "input", "model" => alias.clone()).increment(r.input_tokens);
        }
        if r.output_tokens > 0 {
            metrics::counter!(TOKENS_TOTAL, "direction" => "output", "model" => alias.clone())
                .increment(r.output_tokens);
        }
        if r.cached_tokens > 0 {
            metrics::counter!(TOKENS_TOTAL, "direction" => "cached", "model" => alias.clone())
                .increment(r.cached_tokens);
        }
        if r.cost_usd > 0.0 {
            // `metrics` counters are integers; a monotonic f64 gauge carries dollars exactly
            metrics::gauge!(COST_USD_TOTAL, "model" => alias).increment(r.cost_usd);
        }
        self.buffer.push(r);
        if self.buffer.len() >= self.batch_max {
            self.commit();
        }
    }
}

impl Handler<Flush> for Accounting {
    type Result = usize;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> usize {
        self.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Endpoint;

    fn record(id: &str) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            ts_ms: 5,
            key_id: "k".into(),
            endpoint: Endpoint::Chat,
            alias: "a".into(),
            provider: "p".into(),
            upstream_model: "m".into(),
            input_tokens: 3,
            output_tokens: 4,
            cached_tokens: 0,
            cost_usd: 0.5,
            latency_us: 10,
            ttft_us: None,
            status: 200,
            cache_hit: false,
            stream: false,
            usage_estimated: false,
        }
    }

    #[actix_rt::test]
    async fn group_commit_on_batch_size_timer_and_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acc = Accounting::new(store.clone(), Duration::from_millis(30), 2).start();
        acc.send(Record(record("a"), None)).await.unwrap();
        assert_eq!(store.usage_since(0).unwrap().len(), 0, "buffered until the batch fills");
        acc.send(Record(record("b"), None)).await.unwrap();
        assert_eq!(store.usage_since(0).unwrap().len(), 2, "a full batch commits at once");
        let (tx, rx) = oneshot::channel();
        acc.send(Record(record("c"), Some(tx))).await.unwrap();
        rx.await.expect("answered after the timer's commit");
        assert_eq!(store.usage_since(0).unwrap().len(), 3, "durable when answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.usage_since(0).unwrap().len(), 3, "the timer commits the rest");
        acc.send(Record(record("c"), None)).await.unwrap();
        assert_eq!(
            acc.send(Flush).await.unwrap(),
            0,
            "a repeated request id is not written twice"
        );
        assert_eq!(store.usage_since(0).unwrap().len(), 3);
    }
}
