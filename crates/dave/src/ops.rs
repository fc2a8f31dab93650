//! The operations endpoints: liveness, readiness and metrics (the OpenAPI
//! document and `/docs` are [`crate::openapi`]'s). None of them takes
//! credentials.
//!
//! Liveness never touches the database, so an outage does not make Cloud Run
//! restart healthy instances; readiness is pgkit's (`SELECT 1` within 2 s)
//! and answers 503 with the same body shape until the database answers,
//! which is also the state while start-up is still retrying its first
//! connection.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// `{"status":"alive"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "alive")]
    pub status: String,
}

/// The readiness body, in both the 200 and the 503 case.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: String,
    pub checks: ReadinessChecks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok`, or `error: <reason>` (never a password or a DSN).
    #[schema(example = "ok")]
    pub database: String,
    pub database_details: DatabaseDetails,
    /// The read replica (`DB_READ_DSN`), only when one is configured; it
    /// is optional, so its state never makes the service not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaDetails>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaDetails {
    /// `ok`, `lagging` (over `DB_REPLICA_MAX_LAG`), `down` or `unknown` (not checked yet).
    #[schema(example = "ok")]
    pub state: String,
    /// Seconds behind the primary at the last check, plus that check's age.
    pub lag_seconds: Option<f64>,
    /// The WAL position the replica had replayed at the last check.
    #[schema(example = "0/3000148")]
    pub replayed_lsn: Option<String>,
    /// Why the replica does not serve, when it is `down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Reads that could go to the replica and that it answered.
    pub reads_replica: u64,
    /// Reads that could go to the replica and went to the primary.
    pub reads_primary: u64,
    /// `closed`, `open` or `half_open`: the replica pool's own breaker.
    pub circuit_breaker: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseDetails {
    /// Open connections, idle and in use.
    pub pool_size: usize,
    pub idle_connections: usize,
    /// `closed`, `open` or `half_open`.
    #[schema(example = "closed")]
    pub circuit_breaker: String,
    pub in_use: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
    pub max_size: usize,
}

impl From<pgkit::health::Readiness> for Readiness {
    fn from(r: pgkit::health::Readiness) -> Self {
        let d = r.checks.database_details;
        Readiness {
            status: r.status.to_owned(),
            checks: ReadinessChecks {
                database: r.checks.database,
                database_details: DatabaseDetails {
                    pool_size: d.pool_size,
                    idle_connections: d.idle_connections,
                    circuit_breaker: d.circuit_breaker.to_owned(),
                    in_use: d.in_use,
                    waiting: d.waiting,
                    max_size: d.max_size,
                },
                replica: r.checks.replica.map(|r| ReplicaDetails {
                    state: r.state.to_owned(),
                    lag_seconds: r.lag_seconds,
                    replayed_lsn: r.replayed_lsn,
                    problem: r.problem,
                    reads_replica: r.reads_replica,
                    reads_primary: r.reads_primary,
                    circuit_breaker: r.circuit_breaker.to_owned(),
                }),
            },
        }
    }
}

/// The process runs. Never touches the database.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Liveness))
)]
pub async fn live() -> Json<Liveness> {
    Json(Liveness {
        status: pgkit::health::liveness().status.to_owned(),
    })
}

/// Whether the database answers `SELECT 1` within 2 s.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers", body = Readiness),
        (status = 503, description = "Not ready: starting, or the database does not answer", body = Readiness)
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let readiness = pgkit::health::readiness(&state.db).await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness::from(readiness))).into_response()
}

/// Prometheus metrics (OpenMetrics text): requests, latency histogram, pool,
/// breaker, query errors.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "OpenMetrics text 1.0.0 (Prometheus scrapes it), ending in `# EOF`", body = String, content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&state.db),
    )
        .into_response()
}
