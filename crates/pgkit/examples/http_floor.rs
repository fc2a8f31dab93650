//! The floor under an HTTP read on this machine: the least a Rust service
//! can do for `GET /api/v1/conversations/{id}` and still do its database
//! work, so that a benchmark can tell the service's own cost from the
//! machine's (docs/benchmarks.md, run 10, "The floor under get_conversation").
//!
//! It serves two routes with bare hyper on tokio, the stack dave is built on,
//! and nothing else: `/health/ready` answers 200 with no database work, and
//! `/api/v1/conversations/{id}` runs the by-id SELECT (the statement of
//! `../shared/bench/lib/by_id.pgbench`) in one round trip and writes the row
//! as JSON. There is no router, middleware, request id, tracing span,
//! metrics, breaker or error mapping, and the bearer token's signature is not
//! checked: the user id is read straight from its claims. Do not serve real
//! traffic with this.
//!
//! `FLOOR_DRIVER` picks the database side: `raw` (default) shares a few
//! tokio-postgres clients round-robin, each with the statement prepared once;
//! `pgkit` takes a connection from [`pgkit::pool::Database`] per request, as
//! a service built on pgkit does. The gap between the two is the pool's
//! cost; the gap between `pgkit` and dave is the service's.
//!
//! ```sh
//! cargo build --release -p pgkit --example http_floor
//! ../shared/bench/compare --workloads health,get_conversation \
//!   --service floor='exec target/release/examples/http_floor' \
//!   --service floor-pgkit='FLOOR_DRIVER=pgkit exec target/release/examples/http_floor'
//! ```
//! It reads `PORT`, `HOST` and the DSN from `DAVE_DB_DSN` (or `DATABASE_URL`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pgkit::dsn::Dsn;
use pgkit::pool::Database;
use pgkit::settings::{DbSettings, Env};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls, Row, Statement};
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GET: &str = "SELECT id, user_id, title, context, metadata, created_at, updated_at \
     FROM ai_conversations WHERE id = $1 AND user_id = $2";

/// Clients of the `raw` driver: as many as pgkit's default pool cap.
const RAW_CLIENTS: usize = 15;

enum Driver {
    Raw {
        clients: Vec<(Client, Statement)>,
        next: AtomicUsize,
    },
    Pgkit(Database),
}

#[derive(Serialize)]
struct Conversation {
    id: Uuid,
    user_id: Uuid,
    title: String,
    context: serde_json::Value,
    metadata: serde_json::Value,
    created_at: String,
    updated_at: String,
}

impl Conversation {
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        Ok(Conversation {
            id: row.try_get(0)?,
            user_id: row.try_get(1)?,
            title: row.try_get(2)?,
            context: row.try_get(3)?,
            metadata: row.try_get(4)?,
            created_at: time(row.try_get(5)?),
            updated_at: time(row.try_get(6)?),
        })
    }
}

impl pgkit::repo::FromRow for Conversation {
    fn from_row(row: &Row) -> Result<Self, pgkit::error::DbError> {
        Conversation::from_row(row).map_err(|e| pgkit::error::DbError::Decode(e.to_string()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dsn = std::env::var("DAVE_DB_DSN").or_else(|_| std::env::var("DATABASE_URL"))?;
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port: u16 = std::env::var("PORT")
        .unwrap_or_else(|_| "8080".to_owned())
        .parse()?;
    let driver = match std::env::var("FLOOR_DRIVER").as_deref() {
        Ok("pgkit") => pgkit_driver(&dsn).await?,
        Ok("raw") | Err(_) => raw_driver(&dsn).await?,
        Ok(other) => anyhow::bail!("FLOOR_DRIVER must be raw or pgkit, not {other:?}"),
    };
    let driver = Arc::new(driver);
    let listener = TcpListener::bind(SocketAddr::new(host.parse()?, port)).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let driver = driver.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(driver.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn raw_driver(dsn: &str) -> anyhow::Result<Driver> {
    let mut clients = Vec::with_capacity(RAW_CLIENTS);
    for _ in 0..RAW_CLIENTS {
        let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
        tokio::spawn(connection);
        let statement = client.prepare(GET).await?;
        clients.push((client, statement));
    }
    Ok(Driver::Raw {
        clients,
        next: AtomicUsize::new(0),
    })
}

/// The pool as a service configures it: `DB_POOL_MAX_SIZE` and the rest
/// from the environment.
async fn pgkit_driver(dsn: &str) -> anyhow::Result<Driver> {
    let mut settings = DbSettings::from_env(&Env::from_process()?, "DAVE_DB_DSN", "http_floor")?;
    settings.dsn = Some(Dsn::parse(dsn)?);
    let db = Database::new(settings)?;
    db.warm_up().await?;
    Ok(Driver::Pgkit(db))
}

async fn answer(
    driver: Arc<Driver>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    if path == "/health/ready" {
        return Ok(reply(
            StatusCode::OK,
            Bytes::from_static(b"{\"status\":\"ready\"}"),
        ));
    }
    let Some(id) = path.strip_prefix("/api/v1/conversations/") else {
        return Ok(reply(StatusCode::NOT_FOUND, Bytes::new()));
    };
    let (Ok(id), Some(user_id)) = (Uuid::try_parse(id), bearer_subject(&request)) else {
        return Ok(reply(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    Ok(match fetch(&driver, id, user_id).await {
        Ok(Some(c)) => reply(
            StatusCode::OK,
            serde_json::to_vec(&c).unwrap_or_default().into(),
        ),
        Ok(None) => reply(StatusCode::NOT_FOUND, Bytes::new()),
        Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, e.into()),
    })
}

async fn fetch(driver: &Driver, id: Uuid, user_id: Uuid) -> Result<Option<Conversation>, String> {
    match driver {
        Driver::Raw { clients, next } => {
            let (client, statement) =
                &clients[next.fetch_add(1, Ordering::Relaxed) % clients.len()];
            let row = client
                .query_opt(statement, &[&id, &user_id])
                .await
                .map_err(|e| e.to_string())?;
            row.as_ref()
                .map(Conversation::from_row)
                .transpose()
                .map_err(|e| e.to_string())
        }
        Driver::Pgkit(db) => db
            .fetch_optional(GET, &[&id, &user_id])
            .await
            .map_err(|e| e.to_string()),
    }
}

/// The `sub` of a bearer token's claims, its signature NOT checked (see the
/// module docs).
fn bearer_subject(request: &Request<Incoming>) -> Option<Uuid> {
    let token = request
        .headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let claims = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    Uuid::try_parse(claims.get("sub")?.as_str()?).ok()
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a valid header"),
    );
    response
}
