//! A provider's concurrency slots as the stages share them: the permit that holds one,
//! its release, the counts the router reads, and the worker's reference.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::{deliver, Job, To};

/// A slot was given back (sent by a dropping [`Permit`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub background: bool,
}

/// Change concurrency and queue size (config reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resize {
    pub concurrency: usize,
    pub queue_size: usize,
    pub jobs_share: f64,
}

/// Current counters (tests and diagnostics).
#[derive(Message)]
#[rtype(result = "WorkerStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct WorkerStats {
    pub inflight: usize,
    pub queued: usize,
    /// Of `inflight`, the slots held by jobs.
    pub background: usize,
}

/// A concurrency slot; dropping it releases the slot.
pub struct Permit {
    to: Option<To<Release>>,
    background: bool,
}

impl Permit {
    /// A slot of the worker at `to`, given back there when the permit drops.
    pub fn new(to: To<Release>, background: bool) -> Permit {
        Permit { to: Some(to), background }
    }

    /// Hands the release over to someone else (see `LimitTicket::release_with`).
    pub fn disarm(mut self) -> Option<(To<Release>, bool)> {
        self.to.take().map(|a| (a, self.background))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            deliver(&to, Release { background: self.background });
        }
    }
}

/// A provider's slot counts, written by its worker and read by the router: while a
/// slot is free and no interactive job waits, the router takes it at once
/// ([`Slots::try_take`]) instead of handing the job on to the worker, one hand-off less
/// per request. Queueing, priorities, the jobs' share and every release stay with the
/// worker, which owns the queues. (The router and the workers run on the one engine
/// thread, so a check and the take that follows it are not interleaved with another.)
#[derive(Debug)]
pub struct Slots {
    pub(crate) inflight: AtomicUsize,
    pub(crate) concurrency: AtomicUsize,
    /// High, normal and low jobs waiting (not background ones).
    pub(crate) interactive_queued: AtomicUsize,
}

impl Slots {
    pub(crate) fn new(concurrency: usize) -> Slots {
        Slots {
            inflight: AtomicUsize::new(0),
            concurrency: AtomicUsize::new(concurrency),
            interactive_queued: AtomicUsize::new(0),
        }
    }

    /// A slot for an interactive job, when one is free and no interactive job waits
    /// (the worker grants the same way); its release goes to `worker` like any other.
    pub fn try_take(&self, worker: &To<Release>) -> Option<Permit> {
        if self.interactive_queued.load(Ordering::Acquire) > 0 {
            return None;
        }
        let cap = self.concurrency.load(Ordering::Acquire);
        self.inflight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1)).ok()?;
        Some(Permit { to: Some(worker.clone()), background: false })
    }
}

/// A started worker and its slot counts.
#[derive(Clone)]
pub struct WorkerRef {
    /// Where jobs queue for a slot.
    pub jobs: Recipient<Job>,
    /// Where a permit the router took gives its slot back.
    pub release: To<Release>,
    /// Where a reload sends the provider's new limits.
    pub resize: Recipient<Resize>,
    pub slots: Arc<Slots>,
}
