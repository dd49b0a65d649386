#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Integration tests: the real gateway binary against the real mock upstream over TCP.

mod common;
mod it;
