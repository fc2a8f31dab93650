//! dave: the reference service (conversations, messages, knowledge base,
//! versioned prompts, API keys) on pgkit, as a library so that tests and the
//! binary share it.

// No `unwrap()` on the service's code paths: a request must never panic on
// a `None` or an `Err` (issue 12 §4). Tests may (clippy.toml:
// allow-unwrap-in-tests); integration tests are other crates, not linted here.
#![deny(clippy::unwrap_used)]

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod consistency;
pub mod cursor;
pub mod embedded;
pub mod error;
pub mod extract;
pub mod json;
mod keys;
pub mod metrics;
pub mod middleware;
pub mod observe;
pub mod openapi;
pub mod ops;
pub mod repo;
pub mod server;
pub mod state;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;
