//! pgkit: how a Cloud Run service talks to Cloud SQL PostgreSQL, as a library.
//!
//! Read settings once ([`settings`]), parse the DSN ([`dsn`]), open one
//! [`pool::Database`] per process and share it by handle. Everything a service
//! runs against the database goes through that handle, so the circuit breaker
//! ([`breaker`]) and readiness ([`health`]) see every call. The operator tools
//! (migrations, seeds, lint, audit, doctor, provisioning) live here too so the
//! `pgkit` CLI and each service binary share one engine.

pub mod audit;
pub mod budget;
pub mod connect;
pub mod doctor;
pub mod dsn;
pub mod error;
pub mod findings;
pub mod health;
pub mod iam;
pub mod lint;
pub mod local;
pub mod migrate;
pub mod pool;
pub mod pooler;
pub mod provision;
pub mod repo;
mod rt;
pub mod secret;
pub mod seed;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

// The pool's parts keep their short paths (`pgkit::breaker::Breaker`).
pub use pool::{breaker, replica};

// What most services name, at the crate root.
pub use error::DbError;
pub use pool::{Database, PooledConn};
pub use settings::{DbSettings, Env, Environment};
