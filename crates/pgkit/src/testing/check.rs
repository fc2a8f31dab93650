//! What a test uses to look at the server beside the code under test: a
//! plain connection, session settings for calling [`crate::connect`]
//! directly, and polling until a condition holds.
//!
//! These were copies or a `tests/support/mod.rs` shared by several test
//! binaries with `#[allow(dead_code)]`; in the harness they are one public
//! API that any test of a pgkit user can take from. `eventually` is async
//! because its checks query the server; [`crate::local`]'s own polling is
//! for sync checks of processes and files.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::connect::SessionParams;

/// A plain connection to `url` (set-up and checks, not the code under test),
/// driven on the current runtime; the error is the driver's, for tests that
/// expect a refusal.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let dsn = crate::dsn::Dsn::parse(url).expect("a valid test URL");
    let (client, conn) = dsn.pg_config().connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Session settings for a test's connections: application `pgkit-test`,
/// environment `test`, 30 s statement and idle-in-transaction bounds.
pub fn session_params() -> SessionParams {
    SessionParams {
        application_name: "pgkit-test".to_string(),
        statement_timeout: Duration::from_secs(30),
        idle_in_transaction_timeout: Duration::from_secs(30),
        environment: "test".to_string(),
        connect_timeout: Duration::from_secs(10),
        pooler: Default::default(),
    }
}

/// Polls `check` every 20 ms until it holds (`true`) or `bound` passes
/// (`false`).
pub async fn eventually<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
