//! The Switchyard engine: the domain types, the actors of the request path (router,
//! rate limiter, cache, provider worker, accounting), the provider adapters (pure
//! translation plus the HTTP client, no actix inside), the store and the pipeline
//! that moves one request through them all.

pub mod actors;
pub mod coalesce;
pub mod error;
pub mod guardrails;
pub mod metrics;
pub mod pipeline;
pub mod providers;
pub mod store;
pub mod tokens;
pub mod types;

#[cfg(test)]
mod fuzz_tests;

pub use error::GatewayError;
pub use pipeline::{Engine, Outcome, RequestCtx};
