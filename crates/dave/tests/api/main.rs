//! dave's integration tests, one test binary (`cargo test -p dave --test api`):
//! the service in-process on a free port against a database of each test's
//! own, and the real binary where a process is what is tested.

// The harness, with the service reaching its database directly; the same
// route tests run through PgBouncer in `tests/pooled`.
use dave::testing as helpers;
use dave::testing::calls;

// The shell: operations endpoints, middleware, process behaviour, deployment files.
mod cli;
mod deploy;
mod health;
mod local;
mod logs;
mod metrics;
mod openapi;
mod request_id;
mod shutdown;
mod startup;

// The API routes.
mod auth;
mod authz_matrix;
mod cache_control;
mod connection_budget;
mod conversations;
mod knowledge;
mod messages;
mod page_size;
mod prompts;
mod replica;
