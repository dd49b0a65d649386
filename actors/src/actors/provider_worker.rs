//! Provider worker: one per configured provider, the last admission stage. It owns the
//! provider's concurrency slots and a bounded queue per priority; a job gets a [`Permit`]
//! at once, or when a slot frees (high before normal before low), or is refused when the
//! queue is full (503). While a slot is free and no interactive job waits, the router
//! takes it itself through the shared [`Slots`] and the job never comes here; its
//! release still does. The call itself is made by the request's own task with the
//! provider's pooled client, so upstream I/O is spread over the HTTP worker threads
//! instead of funnelled through this actor's thread.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use switchyard_config::Priority;

use super::messages::{
    CacheDecision, Job, JobState, Permit, Refusal, Release, Resize, Slots, Stats, To, WorkerRef, WorkerStats,
};
use crate::metrics::QUEUE_DEPTH;

/// What the stages before a worker hold of it.
fn worker_ref(addr: Addr<ProviderWorker>, slots: Arc<Slots>) -> WorkerRef {
    WorkerRef {
        jobs: addr.clone().recipient(),
        release: Arc::new(addr.clone().recipient()),
        resize: addr.recipient(),
        slots,
    }
}

pub struct ProviderWorker {
    name: String,
    /// `switchyard_queue_depth{provider,priority}` by lane (high, normal, low),
    /// registered once
    depth: [metrics::Gauge; 3],
    queue_size: usize,
    /// In flight (granted here or taken by the router), and what the router reads.
    slots: Arc<Slots>,
    jobs_share: f64,
    /// Slots held by background jobs.
    background: usize,
    /// Interactive requests waiting: index 0 = high, 1 = normal, 2 = low.
    queues: [VecDeque<Box<JobState>>; 3],
    /// Background jobs waiting (durable NATS jobs, Batch API items), by the same lanes,
    /// each with the time it began to wait.
    background_queues: [VecDeque<(Instant, Box<JobState>)>; 3],
    /// A waiting background job gains one lane per this much waiting, so a low one is
    /// not passed over for ever (`nats.aging_ms`).
    aging: Duration,
    /// Its own address as permits hold it (made once).
    me: Option<To<Release>>,
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
        let name = name.into();
        ProviderWorker {
            depth: [Priority::High, Priority::Normal, Priority::Low]
                .map(|p| metrics::gauge!(QUEUE_DEPTH, "provider" => name.clone(), "priority" => p.as_str())),
            name,
            queue_size,
            slots: Arc::new(Slots::new(concurrency.max(1))),
            jobs_share: 0.5,
            background: 0,
            queues: Default::default(),
            background_queues: Default::default(),
            aging: Duration::from_secs(30),
            me: None,
        }
    }

    pub fn with_jobs_share(mut self, share: f64) -> ProviderWorker {
        self.jobs_share = share;
        self
    }

    /// How fast a waiting background job gains priority.
    pub fn with_aging(mut self, aging: Duration) -> ProviderWorker {
        self.aging = aging;
        self
    }

    /// Starts the worker on the engine's thread.
    pub fn start_on(self, thread: &super::EngineThread) -> WorkerRef {
        let slots = self.slots.clone();
        worker_ref(thread.start(move |_| self), slots)
    }

    /// Starts the worker on the current arbiter (tests): its address and its reference.
    pub fn start_ref(self) -> (Addr<ProviderWorker>, WorkerRef) {
        let slots = self.slots.clone();
        let addr = self.start();
        (addr.clone(), worker_ref(addr, slots))
    }

    fn inflight(&self) -> usize {
        self.slots.inflight.load(Ordering::Acquire)
    }

    /// The slots (kept in [`Slots`] alone, where the router reads them too).
    fn concurrency(&self) -> usize {
        self.slots.concurrency.load(Ordering::Acquire)
    }

    /// Publishes what the router's fast path needs after the queues changed.
    fn publish_queue(&self) {
        self.slots.interactive_queued.store(self.interactive_queued(), Ordering::Release);
    }

    fn queued(&self) -> usize {
        self.interactive_queued() + self.background_queues.iter().map(VecDeque::len).sum::<usize>()
    }

    fn interactive_queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// The background job to start next: high before normal before low, each lane in
    /// arrival order, but one that has waited `aging` per lane of difference wins over
    /// a newer one of a higher lane.
    fn pop_background(&mut self) -> Option<Box<JobState>> {
        let now = Instant::now();
        let aging = self.aging.as_secs_f64().max(1e-3);
        let best = (0..self.background_queues.len())
            .filter_map(|lane| {
                let (since, _) = self.background_queues[lane].front()?;
                let waited = now.saturating_duration_since(*since).as_secs_f64();
                Some((lane, waited / aging - lane as f64))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))?;
        self.background_queues[best.0].pop_front().map(|(_, job)| job)
    }

    /// Slots jobs may hold: the share of the concurrency, at least one.
    fn background_cap(&self) -> usize {
        ((self.concurrency() as f64 * self.jobs_share).floor() as usize).clamp(1, self.concurrency())
    }

    fn background_may_start(&self) -> bool {
        self.inflight() < self.concurrency()
            && self.background < self.background_cap()
            && self.interactive_queued() == 0
    }

    fn report(&self) {
        for (i, gauge) in self.depth.iter().enumerate() {
            gauge.set((self.queues[i].len() + self.background_queues[i].len()) as f64);
        }
    }

    /// Gives the job a slot and answers it.
    fn grant(&mut self, mut job: Box<JobState>, ctx: &mut Context<Self>) {
        self.slots.inflight.fetch_add(1, Ordering::AcqRel);
        if job.background {
            self.background += 1;
        }
        let me = self.me.get_or_insert_with(|| Arc::new(ctx.address().recipient())).clone();
        let permit = Permit::new(me, job.background);
        let Some(decision) = job.decision.take() else {
            return job.refuse(Refusal::Overloaded("job reached a worker without a route"));
        };
        let cache = job.cache_key.map_or(CacheDecision::Bypass, CacheDecision::Miss);
        // a caller that left drops the admission, and with it the permit (a Release)
        job.admit(cache, Some((decision, permit)));
    }

    /// Hands free slots to waiting jobs, highest priority first; jobs whose caller
    /// gave up are dropped (their tickets settle).
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        while self.inflight() < self.concurrency() {
            let job = match self.queues.iter_mut().find_map(VecDeque::pop_front) {
                Some(job) => job,
                None if self.background_may_start() => match self.pop_background() {
                    Some(job) => job,
                    None => break,
                },
                None => break,
            };
            if job.reply.is_closed() {
                continue;
            }
            self.grant(job, ctx);
        }
        self.publish_queue();
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

/// Admission stage: a slot now, a place in the queue, or 503.
impl Handler<Job> for ProviderWorker {
    type Result = ();

    fn handle(&mut self, Job(job): Job, ctx: &mut Self::Context) {
        if job.background {
            if self.background_queues.iter().all(VecDeque::is_empty) && self.background_may_start() {
                return self.grant(job, ctx);
            }
        } else if self.inflight() < self.concurrency() && self.interactive_queued() == 0 {
            return self.grant(job, ctx);
        }
        if self.queued() >= self.queue_size {
            let rate = job.rate.clone().unwrap_or_default();
            return job.refuse(Refusal::QueueFull { provider: self.name.clone(), rate });
        }
        let mut job = job;
        job.queued = crate::telemetry::stage(&job.span, "switchyard.queue");
        if job.background {
            self.background_queues[lane(job.priority)].push_back((Instant::now(), job));
        } else {
            self.queues[lane(job.priority)].push_back(job);
        }
        self.publish_queue();
        self.dispatch(ctx);
    }
}

impl Handler<Release> for ProviderWorker {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) {
        let _ = self.slots.inflight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
        if msg.background {
            self.background = self.background.saturating_sub(1);
        }
        self.dispatch(ctx);
    }
}

impl Handler<Resize> for ProviderWorker {
    type Result = ();

    fn handle(&mut self, msg: Resize, ctx: &mut Self::Context) {
        self.slots.concurrency.store(msg.concurrency.max(1), Ordering::Release);
        self.queue_size = msg.queue_size;
        self.jobs_share = msg.jobs_share;
        self.dispatch(ctx);
    }
}

impl Handler<Stats> for ProviderWorker {
    type Result = WorkerStats;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> WorkerStats {
        WorkerStats { inflight: self.inflight(), queued: self.queued(), background: self.background }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::actors::messages::Answer;
    use crate::actors::messages::RouteDecision;
    use crate::actors::rate_limiter::RateLimiter;

    /// Sends a job (with a ticket from a real limiter) to the worker.
    async fn acquire(w: &Addr<ProviderWorker>, limiter: &Addr<RateLimiter>, p: Priority) -> oneshot::Receiver<Answer> {
        acquire_as(w, limiter, p, false).await
    }

    async fn acquire_as(
        w: &Addr<ProviderWorker>,
        limiter: &Addr<RateLimiter>,
        p: Priority,
        background: bool,
    ) -> oneshot::Receiver<Answer> {
        let (tjob, trx) = JobState::create("k".into(), Default::default(), 0, "m".into(), p, None);
        limiter.send(tjob).await.unwrap();
        let ticket = trx.await.unwrap().unwrap().ticket;
        let (Job(mut state), rx) = JobState::create("k".into(), Default::default(), 0, "m".into(), p, None);
        state.rate = Some(Default::default());
        state.ticket = Some(ticket);
        let load = std::sync::Arc::new(crate::actors::load::TargetLoad::new("p", "m", &Default::default()));
        let slot = crate::actors::load::TargetSlot::take(load, None);
        state.decision = Some(RouteDecision { provider: "p".into(), model: "m".into(), slot });
        state.background = background;
        w.send(Job(state)).await.unwrap();
        rx
    }

    #[actix_rt::test]
    async fn jobs_hold_at_most_their_share_and_yield_to_interactive_work() {
        let limiter = RateLimiter::default().start();
        let w = ProviderWorker::new("p", 4, 16).with_jobs_share(0.5).start();
        let mut jobs = Vec::new();
        for _ in 0..4 {
            jobs.push(acquire_as(&w, &limiter, Priority::High, true).await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(w.send(Stats).await.unwrap(), WorkerStats { inflight: 2, queued: 2, background: 2 });
        // interactive requests take the other half at once, even at low priority
        let a = acquire(&w, &limiter, Priority::Low).await.await.unwrap().unwrap();
        let b = acquire(&w, &limiter, Priority::Low).await.await.unwrap().unwrap();
        // full: an interactive request waits, and goes before the queued jobs
        let mut c = acquire(&w, &limiter, Priority::Low).await;
        let first = jobs.remove(0).await.unwrap().unwrap();
        drop(first);
        let c = tokio::time::timeout(Duration::from_secs(1), &mut c).await.unwrap().unwrap().unwrap();
        assert_eq!(w.send(Stats).await.unwrap(), WorkerStats { inflight: 4, queued: 2, background: 1 });
        // an interactive slot freeing lets a job in (the job share is not full)
        drop((a, b, c));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(w.send(Stats).await.unwrap(), WorkerStats { inflight: 2, queued: 1, background: 2 });
    }

    /// Background jobs (durable NATS jobs) take the provider's slots high before normal
    /// before low, whatever order they arrived in (20 lows then 6 highs used to finish in
    /// arrival order); a low one that has waited long enough goes before newer highs.
    #[actix_rt::test]
    async fn background_jobs_take_slots_by_priority_with_aging() {
        let limiter = RateLimiter::default().start();
        let w = ProviderWorker::new("p", 1, 64).with_jobs_share(1.0).with_aging(Duration::from_secs(3600)).start();
        let first = acquire_as(&w, &limiter, Priority::Low, true).await.await.unwrap().unwrap();
        let mut waiting = Vec::new();
        for p in [Priority::Low, Priority::Low, Priority::Normal, Priority::Low, Priority::High, Priority::High] {
            waiting.push((p, acquire_as(&w, &limiter, p, true).await));
        }
        drop(first);
        let mut order = Vec::new();
        while !waiting.is_empty() {
            // the one that got the slot is the one answered; the others still wait
            tokio::time::sleep(Duration::from_millis(10)).await;
            let i = waiting.iter_mut().position(|(_, rx)| !rx.is_empty()).expect("a job got the slot");
            let (p, rx) = waiting.remove(i);
            order.push(p);
            drop(rx.await.unwrap().unwrap());
        }
        use Priority::*;
        assert_eq!(order, [High, High, Normal, Low, Low, Low]);

        // with aging, a low that has waited long enough goes before a newer high
        let w = ProviderWorker::new("p", 1, 64).with_jobs_share(1.0).with_aging(Duration::from_millis(20)).start();
        let first = acquire_as(&w, &limiter, Priority::Low, true).await.await.unwrap().unwrap();
        let mut old_low = acquire_as(&w, &limiter, Priority::Low, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut new_high = acquire_as(&w, &limiter, Priority::High, true).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!old_low.is_empty() && new_high.is_empty(), "the low that waited 5 agings goes first");
        drop(old_low.try_recv().unwrap().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(new_high.try_recv().is_ok());
    }

    #[actix_rt::test]
    async fn limits_concurrency_and_queues_by_priority() {
        let limiter = RateLimiter::default().start();
        let w = ProviderWorker::new("p", 1, 2).start();
        let first = acquire(&w, &limiter, Priority::Normal).await.await.unwrap().unwrap();
        let mut low = acquire(&w, &limiter, Priority::Low).await;
        let high = acquire(&w, &limiter, Priority::High).await;
        assert_eq!(w.send(Stats).await.unwrap(), WorkerStats { inflight: 1, queued: 2, background: 0 });
        // the queue (size 2) is full
        let full = acquire(&w, &limiter, Priority::High).await.await.unwrap();
        assert!(matches!(full, Err(Refusal::QueueFull { .. })));
        drop(first);
        // high goes first although low asked first
        let h = high.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(low.try_recv().is_err(), "low still waits");
        drop(h);
        let l = low.await.unwrap().unwrap();
        drop(l);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(w.send(Stats).await.unwrap(), WorkerStats { inflight: 0, queued: 0, background: 0 });
    }

    #[actix_rt::test]
    async fn abandoned_jobs_do_not_leak_slots() {
        let limiter = RateLimiter::default().start();
        let w = ProviderWorker::new("p", 1, 8).start();
        let first = acquire(&w, &limiter, Priority::Normal).await.await.unwrap().unwrap();
        let waiter = acquire(&w, &limiter, Priority::Normal).await;
        drop(waiter); // the caller left
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(w.send(Stats).await.unwrap().inflight, 0);
        assert!(acquire(&w, &limiter, Priority::Low).await.await.unwrap().is_ok());
    }
}
