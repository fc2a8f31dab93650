//! Liveness and readiness, with the standard's JSON shape.
//!
//! Liveness says the process runs and never touches the database (a
//! database outage must not make Cloud Run restart healthy instances).
//! Readiness runs `SELECT 1` through the pool within 2 s and answers
//! not-ready otherwise, so traffic is routed away while the database is
//! unreachable; the standard's own probe answered 200 regardless. It is
//! cheap: one prepared statement on a pooled connection, no background work.
//! The reason text is built from classified errors, which never carry a
//! password or a DSN.
//!
//! Concurrent probes share one check: a probe that arrives while a
//! `SELECT 1` is in flight awaits that check's answer instead of sending
//! another. An answer is never kept once it has arrived, so no probe sees a
//! result that was already known before it came; under a burst of probes
//! the database sees one query per round trip instead of one per probe.

use std::time::Duration;

use futures_util::future::FutureExt;
use serde::Serialize;

use crate::pool::Database;

/// The readiness bound from DESIGN §3.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize)]
pub struct Liveness {
    pub status: &'static str,
}

/// `{"status":"alive"}`.
pub fn liveness() -> Liveness {
    Liveness { status: "alive" }
}

#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    /// `ok` or `error: <reason>`.
    pub database: String,
    pub database_details: DatabaseDetails,
    /// The read replica (`DB_READ_DSN`), when one is configured. It is
    /// optional: its state never makes the service not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<crate::replica::ReplicaStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseDetails {
    pub pool_size: usize,
    pub idle_connections: usize,
    pub circuit_breaker: &'static str,
    pub in_use: usize,
    pub waiting: usize,
    pub max_size: usize,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// Checks the database and reports in DESIGN §3's shape.
pub async fn readiness(db: &Database) -> Readiness {
    let outcome = shared_check(db).await;
    let status = db.status();
    Readiness {
        status: if outcome.is_ok() {
            "ready"
        } else {
            "not_ready"
        },
        checks: Checks {
            database: match outcome {
                Ok(()) => "ok".to_string(),
                Err(reason) => format!("error: {}", redact(db, &reason)),
            },
            database_details: DatabaseDetails {
                pool_size: status.size,
                idle_connections: status.idle,
                circuit_breaker: db.breaker().state().as_str(),
                in_use: status.in_use,
                waiting: status.waiting,
                max_size: status.max_size,
            },
            replica: db.replica_status(),
        },
    }
}

/// Joins the check in flight, or starts one.
async fn shared_check(db: &Database) -> Result<(), String> {
    let slot = &db.in_flight_check().0;
    let check = {
        let mut current = slot.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_ref() {
            // A finished check whose starter went away before clearing it is stale.
            Some(check) if check.peek().is_none() => check.clone(),
            _ => {
                let check = timed_check(db.clone()).boxed().shared();
                *current = Some(check.clone());
                check
            }
        }
    };
    let outcome = check.clone().await;
    let mut current = slot.lock().unwrap_or_else(|p| p.into_inner());
    if current.as_ref().is_some_and(|c| c.ptr_eq(&check)) {
        *current = None;
    }
    outcome
}

async fn timed_check(db: Database) -> Result<(), String> {
    match tokio::time::timeout(READY_TIMEOUT, select_one(&db)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer to SELECT 1 within {}s",
            READY_TIMEOUT.as_secs()
        )),
    }
}

async fn select_one(db: &Database) -> Result<(), String> {
    let mut conn = db
        .acquire_within(Some(READY_TIMEOUT))
        .await
        .map_err(|e| e.to_string())?;
    let one: i32 = conn
        .fetch_val("SELECT 1", &[])
        .await
        .map_err(|e| e.to_string())?;
    if one == 1 {
        Ok(())
    } else {
        Err(format!("SELECT 1 returned {one}"))
    }
}

/// Belt and braces: whatever the driver said, the password never goes out.
fn redact(db: &Database, reason: &str) -> String {
    let mut text = reason.to_string();
    if let Some(dsn) = &db.settings().dsn {
        if let Some(p) = dsn.password() {
            if !p.expose().is_empty() {
                text = text.replace(p.expose(), "***");
            }
        }
        text = text.replace(&dsn.to_url_with_password(), &dsn.redacted());
    }
    text.chars().take(300).collect()
}
