//! Provider worker: one per configured provider. It owns the provider's concurrency
//! slots and a bounded queue per priority; a request gets a [`Permit`] (at once, or when
//! a slot frees, high before normal before low) and then performs the call itself with
//! the provider's pooled client, so upstream I/O is spread over the HTTP worker threads
//! instead of funnelled through this actor's thread. A full queue is refused (503).

use std::collections::VecDeque;

use actix::prelude::*;
use switchyard_config::Priority;
use tokio::sync::oneshot;

use super::deliver;
use crate::metrics::QUEUE_DEPTH;

/// Ask for a concurrency slot.
#[derive(Message)]
#[rtype(result = "Result<Permit, QueueFull>")]
pub struct Acquire {
    pub priority: Priority,
}

/// The queue of this provider is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// A slot was given back (sent by a dropping [`Permit`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release;

/// Change concurrency and queue size (config reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resize {
    pub concurrency: usize,
    pub queue_size: usize,
}

/// Current counters, for tests and `/readyz`.
#[derive(Message)]
#[rtype(result = "WorkerStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct WorkerStats {
    pub inflight: usize,
    pub queued: usize,
}

/// A concurrency slot; dropping it releases the slot.
pub struct Permit {
    addr: Option<Addr<ProviderWorker>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(addr) = self.addr.take() {
            deliver(&addr, Release);
        }
    }
}

pub struct ProviderWorker {
    name: String,
    concurrency: usize,
    queue_size: usize,
    inflight: usize,
    /// Index 0 = high, 1 = normal, 2 = low.
    queues: [VecDeque<oneshot::Sender<Permit>>; 3],
}

fn lane(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

impl ProviderWorker {
    pub fn new(name: impl Into<String>, concurrency: usize, queue_size: usize) -> ProviderWorker {
        ProviderWorker {
            name: name.into(),
            concurrency: concurrency.max(1),
            queue_size,
            inflight: 0,
            queues: Default::default(),
        }
    }

    fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    fn report(&self) {
        metrics::gauge!(QUEUE_DEPTH, "provider" => self.name.clone()).set(self.queued() as f64);
    }

    /// Hands free slots to waiters, highest priority first; waiters that gave up
    /// (their request was dropped) are skipped.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        while self.inflight < self.concurrency {
            let Some(tx) = self.queues.iter_mut().find_map(VecDeque::pop_front) else {
                break;
            };
            if tx.is_closed() {
                continue;
            }
            self.inflight += 1;
            if let Err(permit) = tx.send(Permit {
                addr: Some(ctx.address()),
            }) {
                // the waiter left between the check and the send: its permit drops
                // here and comes back as a Release
                drop(permit);
            }
        }
        self.report();
    }
}

impl Actor for ProviderWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
        self.report();
    }
}

impl Handler<Acquire> for ProviderWorker {
    type Result = ResponseFuture<Result<Permit, QueueFull>>;

    fn handle(&mut self, msg: Acquire, ctx: &mut Self::Context) -> Self::Result {
        if self.inflight < self.concurrency && self.queued() == 0 {
            self.inflight += 1;
            let permit = Permit {
                addr: Some(ctx.address()),
            };
            return Box::pin(async move { Ok(permit) });
        }
        if self.queued() >= self.queue_size {
            return Box::pin(async { Err(QueueFull) });
        }
        let (tx, rx) = oneshot::channel();
        self.queues[lane(msg.priority)].push_back(tx);
        self.dispatch(ctx);
        Box::pin(async move { rx.await.map_err(|_| QueueFull) })
    }
}

impl Handler<Release> for ProviderWorker {
    type Result = ();

    fn handle(&mut self, _: Release, ctx: &mut Self::Context) {
        self.inflight = self.inflight.saturating_sub(1);
        self.dispatch(ctx);
    }
}

impl Handler<Resize> for ProviderWorker {
    type Result = ();

    fn handle(&mut self, msg: Resize, ctx: &mut Self::Context) {
        self.concurrency = msg.concurrency.max(1);
        self.queue_size = msg.queue_size;
        self.dispatch(ctx);
    }
}

impl Handler<Stats> for ProviderWorker {
    type Result = WorkerStats;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> WorkerStats {
        WorkerStats {
            inflight: self.inflight,
            queued: self.queued(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[actix_rt::test]
    async fn limits_concurrency_and_queues_by_priority() {
        let w = ProviderWorker::new("p", 1, 2).start();
        let first = w
            .send(Acquire {
                priority: Priority::Normal,
            })
            .await
            .unwrap()
            .unwrap();
        let low = w.send(Acquire {
            priority: Priority::Low,
        });
        let high = w.send(Acquire {
            priority: Priority::High,
        });
        let (low, high) = (actix_rt::spawn(low), actix_rt::spawn(high));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(w.send(Stats).await.unwrap(), WorkerStats { inflight: 1, queued: 2 });
        // the queue (size 2) is full
        assert!(w
            .send(Acquire {
                priority: Priority::High
            })
            .await
            .unwrap()
            .is_err());
        drop(first);
        // high goes first although low asked first
        let h = high.await.unwrap().unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!low.is_finished());
        drop(h);
        let l = low.await.unwrap().unwrap().unwrap();
        drop(l);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(w.send(Stats).await.unwrap(), WorkerStats { inflight: 0, queued: 0 });
    }

    #[actix_rt::test]
    async fn abandoned_waiters_do_not_leak_slots() {
        let w = ProviderWorker::new("p", 1, 8).start();
        let first = w
            .send(Acquire {
                priority: Priority::Normal,
            })
            .await
            .unwrap()
            .unwrap();
        let waiter = actix_rt::spawn(w.send(Acquire {
            priority: Priority::Normal,
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter.abort();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(w.send(Stats).await.unwrap().inflight, 0);
        assert!(w
            .send(Acquire {
                priority: Priority::Low
            })
            .await
            .unwrap()
            .is_ok());
    }
}
