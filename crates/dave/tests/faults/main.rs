//! The fault-injection suite (`cargo test -p dave --test faults -- --nocapture`):
//! the real `dave` binary against a PostgreSQL cluster of each scenario's own,
//! started with full durability, while the test restarts, crashes, freezes
//! or locks the database and signals the service. Issue 10 lists the promises
//! these scenarios check: clear 503s, nothing acknowledged lost, bounded
//! answers, bounded shutdown.
//!
//! Scenarios run one at a time ([`support::serial`]): their bounds are
//! wall-clock bounds, and two of them competing for 2 cores would test the
//! machine, not the service.

// The harness, with the service reaching PostgreSQL directly.
use dave::testing as helpers;
mod support;

mod cancel;
mod frozen;
mod ledger;
mod schema;
mod shutdown;
