//! Integration tests: the real gateway binary against the real mock upstream over TCP.

mod common;
mod it;
