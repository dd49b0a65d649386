//! How requests get in.

pub mod http;
