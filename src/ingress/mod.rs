//! How requests get in.

pub mod batch;
pub mod http;
pub mod nats;
