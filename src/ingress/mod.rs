//! How requests get in.

pub mod admin;
pub mod batch;
pub mod http;
pub mod nats;
