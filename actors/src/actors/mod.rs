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
