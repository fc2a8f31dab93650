//! dave's API route tests again, through a real PgBouncer in transaction
//! mode (`cargo test -p dave --test pooled`): each test's service reaches
//! its database through a PgBouncer of its own with `DB_POOLER=transaction`
//! (unnamed statements, no start-up options, session settings from the
//! database's defaults). The modules are the `api` binary's, compiled a
//! second time with the harness's `spawn_app`, `spawn_app_with` and `start`
//! taken from `dave::testing::pooled`.

/// The harness, with the service reaching its database through PgBouncer.
mod helpers {
    pub use dave::testing::pooled::{spawn_app, spawn_app_with, start};
    pub use dave::testing::*;
}
use dave::testing::calls;

#[path = "../api/auth.rs"]
mod auth;
#[path = "../api/authz_matrix.rs"]
mod authz_matrix;
#[path = "../api/cache_control.rs"]
mod cache_control;
#[path = "../api/conversations.rs"]
mod conversations;
#[path = "../api/knowledge.rs"]
mod knowledge;
#[path = "../api/messages.rs"]
mod messages;
#[path = "../api/page_size.rs"]
mod page_size;
#[path = "../api/prompts.rs"]
mod prompts;

mod scale;
