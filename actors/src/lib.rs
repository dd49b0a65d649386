//! The Switchyard engine: the domain types, the actors of the request path (router,
//! rate limiter, cache, provider worker, accounting), the provider adapters (pure
//! translation, `providers`) and the client that calls them (`upstream`), the store and the pipeline
//! that moves one request through them all.

pub mod actors;
pub mod audit;
pub mod bpe;
pub mod coalesce;
pub mod error;
pub mod experiment_index;
pub mod flagged;
pub mod fuzz;
pub mod guardrails;
pub mod ids;
pub mod metrics;
pub mod pipeline;
pub mod prompts;
pub mod providers;
pub mod redact;
pub mod retry;
pub mod rollup;
pub mod semantic;
pub mod store;
pub mod telemetry;
mod timelog;
pub mod tokens;
pub mod types;
pub mod upstream;

#[cfg(test)]
mod fuzz_tests;

pub use error::GatewayError;
pub use pipeline::{Engine, Outcome, RequestCtx};
