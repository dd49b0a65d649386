//! How requests get in.

pub mod http;
pub mod nats;
