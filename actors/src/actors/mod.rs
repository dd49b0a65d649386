//! The actors of the request path. Each owns its state and is reached by typed messages.
//! Mailboxes are bounded; a guard that must notify an actor on drop uses
//! [`messages::deliver`], which never blocks and never loses the message. The admission
//! stages know each other only through [`messages`].

pub mod accounting;
pub mod breaker;
pub mod cache;
pub mod load;
pub mod messages;
pub mod provider_worker;
pub mod rate_limiter;
pub mod router;
pub mod shared_limits;

use actix::dev::ToEnvelope;
use actix::prelude::*;

/// Mailbox capacity of the shared actors: large enough that `send` rarely waits,
/// bounded so a stuck actor pushes back instead of growing memory.
pub const MAILBOX: usize = 4096;

/// Queues a message from a task without waiting for its handler (the answer, if any,
/// comes another way): `try_send`, and only when the mailbox is full, a wait for room.
pub async fn enqueue<A, M>(addr: &Addr<A>, msg: M) -> Result<(), MailboxError>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match addr.try_send(msg) {
        Ok(()) => Ok(()),
        Err(SendError::Full(msg)) => addr.send(msg).await.map(|_| ()),
        Err(SendError::Closed(_)) => Err(MailboxError::Closed),
    }
}

type SpawnFn = Box<dyn FnOnce() + Send>;

/// The thread the admission actors (rate limiter, cache, router, provider workers) run
/// on: an arbiter of their own, or a thread named later by [`EngineHost::host_here`]
/// (the gateway's first HTTP worker when `server.workers` is 1 or 2, so that its
/// requests reach them and get their answer without waking another thread).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Says which thread it runs on.
    struct Where;
    impl Actor for Where {
        type Context = Context<Self>;
    }
    #[derive(Message)]
    #[rtype(result = "std::thread::ThreadId")]
    struct Ask;
    impl Handler<Ask> for Where {
        type Result = MessageResult<Ask>;
        fn handle(&mut self, _: Ask, _: &mut Context<Self>) -> MessageResult<Ask> {
            MessageResult(std::thread::current().id())
        }
    }

    #[actix_rt::test]
    async fn deferred_actors_wait_for_their_host_then_run_on_its_thread() {
        let (thread, host) = EngineThread::deferred();
        let addr = thread.start(|_| Where);
        // asked before there is a host: the message waits in the mailbox
        let early = tokio::spawn({
            let addr = addr.clone();
            async move { addr.send(Ask).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!early.is_finished(), "an actor without a host does not run");
        // a host thread of its own, so that "its thread" is not the test's
        let arbiter = Arbiter::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        arbiter.spawn_fn(move || {
            host.host_here();
            let _ = tx.send(std::thread::current().id());
        });
        let host_thread = rx.await.unwrap();
        assert_eq!(early.await.unwrap().unwrap(), host_thread);
        // actors started after the host runs start there too (a reload's new workers)
        let later = thread.start(|_| Where);
        assert_eq!(later.send(Ask).await.unwrap(), host_thread);
        assert_ne!(host_thread, std::thread::current().id());
        // the host gone: a new actor's mailbox is closed, so a sender gets an error
        arbiter.stop();
        let _ = arbiter.join();
        let orphan = thread.start(|_| Where);
        assert!(orphan.send(Ask).await.is_err());
    }

    #[actix_rt::test]
    async fn own_thread_actors_run_on_another_thread() {
        let thread = EngineThread::own();
        let addr = thread.start(|_| Where);
        assert_ne!(addr.send(Ask).await.unwrap(), std::thread::current().id());
    }
}
