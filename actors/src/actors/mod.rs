//! The actors of the request path. Each owns its state and is reached by typed messages.
//! Mailboxes are bounded; a guard that must notify an actor on drop uses
//! [`deliver`], which never blocks and never loses the message.

pub mod accounting;
pub mod breaker;
pub mod cache;
pub mod job;
pub mod load;
pub mod provider_worker;
pub mod rate_limiter;
pub mod router;

use actix::dev::ToEnvelope;
use actix::prelude::*;

/// Mailbox capacity of the shared actors: large enough that `send` rarely waits,
/// bounded so a stuck actor pushes back instead of growing memory.
pub const MAILBOX: usize = 4096;

/// Delivers a message from a context that cannot await (a `Drop`): `try_send`, and when
/// the mailbox is full, a task that waits for room. Closed mailboxes mean the actor is
/// gone (shutdown), and there is nothing left to notify.
pub fn deliver<A, M>(addr: &Addr<A>, msg: M)
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match addr.try_send(msg) {
        Ok(()) | Err(SendError::Closed(_)) => {}
        Err(SendError::Full(msg)) => {
            let addr = addr.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = addr.send(msg).await;
                });
            }
        }
    }
}

type SpawnFn = Box<dyn FnOnce() + Send>;

/// The thread the admission actors (rate limiter, cache, router, provider workers) run
/// on: an arbiter of their own, or a thread named later by [`EngineHost::host_here`]
/// (the gateway's single HTTP worker with `server.workers = 1`, so that a request
/// reaches them and gets its answer without waking another thread).
#[derive(Clone)]
pub enum EngineThread {
    Own(ArbiterHandle),
    Hosted(tokio::sync::mpsc::UnboundedSender<SpawnFn>),
}

/// Runs the admission actors on the thread that calls [`EngineHost::host_here`].
pub struct EngineHost(tokio::sync::mpsc::UnboundedReceiver<SpawnFn>);

impl EngineThread {
    /// A new arbiter thread of their own.
    pub fn own() -> EngineThread {
        EngineThread::Own(Arbiter::new().handle())
    }

    /// A thread named later: actors started before then wait (their mailboxes fill up
    /// to their capacity) until the host runs them.
    pub fn deferred() -> (EngineThread, EngineHost) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (EngineThread::Hosted(tx), EngineHost(rx))
    }

    fn spawn_fn(&self, f: SpawnFn) {
        match self {
            EngineThread::Own(a) => {
                a.spawn_fn(f);
            }
            EngineThread::Hosted(tx) => {
                let _ = tx.send(f);
            }
        }
    }

    /// Starts an actor on this thread (as `Actor::start_in_arbiter` does on an arbiter).
    pub fn start<A, F>(&self, f: F) -> Addr<A>
    where
        A: Actor<Context = Context<A>>,
        F: FnOnce(&mut Context<A>) -> A + Send + 'static,
    {
        let (tx, rx) = actix::dev::channel::channel(MAILBOX);
        self.spawn_fn(Box::new(move || {
            let mut ctx = Context::with_receiver(rx);
            let act = f(&mut ctx);
            actix_rt::spawn(ctx.into_future(act));
        }));
        Addr::new(tx)
    }
}

impl EngineHost {
    /// From now on, the actors start (and run) on the calling thread's arbiter. Must be
    /// called inside a running actix system.
    pub fn host_here(mut self) {
        actix_rt::spawn(async move {
            while let Some(f) = self.0.recv().await {
                f();
            }
        });
    }
}
