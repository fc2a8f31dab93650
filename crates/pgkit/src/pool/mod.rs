//! The pool manager: one per process, shared by handle, every database call
//! goes through it.
//!
//! Built on `deadpool`'s managed pool with our own manager, because the
//! standard's promises need more than deadpool-postgres gives: connections
//! come from [`crate::connect`] (TLS by sslmode, session settings in the
//! start-up packet, IAM tokens as passwords); prepared statements are cached
//! per connection so a hot query is one round trip; a connection that sat
//! idle is validated before it is handed out, one past its lifetime is
//! replaced; nothing is reset on checkout (asyncpg's reset costs a round
//! trip per request). deadpool has no minimum-idle setting, so the minimum
//! is kept here: opened at start-up and topped up on the next acquire that
//! finds the pool below it. There is no background timer anywhere: Cloud
//! Run throttles CPU between requests.
//!
//! Two promises hold under faults. Cancel safety: a request future can be
//! dropped at any await (the client hung up, Cloud Run's request timeout
//! fired), so a connection is marked busy before each call is sent and
//! unmarked only once the whole reply is in; a connection dropped while
//! marked gets a cancel request and is closed, never handed to the next
//! caller with a statement or a transaction still running. Bounds: every
//! call is bounded on the client's clock by `DB_QUERY_TIMEOUT` plus a
//! margin, and a whole acquire (waiting, checking idle connections, opening
//! one) by `DB_POOL_TIMEOUT`, so a server that stops answering costs a
//! request seconds and a 503, not a TCP timeout.

pub mod breaker;
mod manager;
pub mod replica;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool::managed::{self, Object, PoolError, Timeouts};
use deadpool::Runtime;
use rand::Rng;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::connect::{ConnectError, SessionParams};
use crate::error::{classify, DbError, Level};
use crate::iam::SharedTokenSource;
use crate::pooler::Pooler;
use crate::settings::DbSettings;
use breaker::{Breaker, Ticket};
pub use manager::Conn;
use manager::Manager;
pub(crate) use manager::{Op, Reply};
use replica::Replica;

/// The pool could not be built from the settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolBuildError {
    #[error("no database DSN is configured")]
    NoDsn,
    #[error("cannot build the pool: {0}")]
    Build(String),
}

type Pool = managed::Pool<Manager>;

/// Query parameters, as the driver takes them (re-exported by
/// [`crate::repo`], whose helpers take them).
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A readiness check on its way ([`crate::health`] makes and shares it):
/// kept with the pool it checks, so each pool's probes share their own.
pub(crate) type Check =
    futures_util::future::Shared<futures_util::future::BoxFuture<'static, Result<(), String>>>;

/// The slot for the [`Check`] in flight, if any.
#[derive(Default)]
pub(crate) struct InFlightCheck(pub(crate) std::sync::Mutex<Option<Check>>);

/// Pool figures for health and metrics.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PoolStatus {
    /// Open connections, idle and in use.
    pub size: usize,
    pub idle: usize,
    pub in_use: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
    pub max_size: usize,
    pub min_size: usize,
}

/// Counters since start, for metrics.
#[derive(Debug, Default)]
struct Counters {
    acquire_timeouts: AtomicU64,
    errors_by_kind: [AtomicU64; 8],
}

const ERROR_KINDS: [&str; 8] = [
    "not_found",
    "conflict",
    "constraint",
    "unavailable",
    "timeout",
    "query",
    "decode",
    "misconfigured",
];

struct Shared {
    pool: Pool,
    breaker: Breaker,
    settings: DbSettings,
    timeouts: Timeouts,
    /// `DB_QUERY_TIMEOUT` plus a margin: the most one call may take.
    call_bound: Duration,
    topping_up: AtomicBool,
    /// False until the first connection of the process has been opened.
    started: AtomicBool,
    counters: Counters,
    readiness: InFlightCheck,
    /// Cancel requests on their way for abandoned statements; `close`
    /// waits for them, or a runtime shut down right after would drop them
    /// and the statements would run on.
    cancels_in_flight: Arc<AtomicU64>,
    /// `DB_READ_DSN`'s pool, when set (see [`crate::replica`]).
    replica: Option<Replica>,
}

/// The handle services share: cheap to clone, one pool behind it.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("dsn", &self.shared.settings.dsn)
            .field("status", &self.status())
            .finish()
    }
}

impl Database {
    /// Builds the pool; opens nothing yet (see [`Database::warm_up`]).
    pub fn new(settings: DbSettings) -> Result<Database, PoolBuildError> {
        Database::build(settings, None)
    }

    /// The pool the settings ask for: with `DB_IAM_AUTH=true`, passwords are
    /// IAM access tokens from the source the environment names (metadata
    /// server on Cloud Run, Application Default Credentials on a laptop).
    pub fn from_settings(
        settings: DbSettings,
        env: &crate::settings::Env,
    ) -> Result<Database, PoolBuildError> {
        if settings.iam_auth {
            let tokens = crate::iam::token_source_from_env(env)
                .map_err(|e| PoolBuildError::Build(format!("DB_IAM_AUTH=true but {e}")))?;
            Database::with_token_source(settings, tokens)
        } else {
            Database::new(settings)
        }
    }

    /// Like [`Database::new`], with IAM login: every new connection's
    /// password is a fresh token from `tokens`.
    pub fn with_token_source(
        settings: DbSettings,
        tokens: SharedTokenSource,
    ) -> Result<Database, PoolBuildError> {
        Database::build(settings, Some(tokens))
    }

    fn build(
        settings: DbSettings,
        tokens: Option<SharedTokenSource>,
    ) -> Result<Database, PoolBuildError> {
        let replica = match settings.for_replica() {
            None => None,
            Some(s) => {
                let max_lag = s.replica_max_lag;
                Some(Replica::new(Database::build(s, tokens.clone())?, max_lag))
            }
        };
        let dsn = settings.dsn.clone().ok_or(PoolBuildError::NoDsn)?;
        let call_bound = SessionParams::from_settings(&settings).call_bound();
        let manager = Manager::new(&settings, dsn, tokens);
        let timeouts = Timeouts {
            wait: Some(settings.pool_timeout),
            create: Some(settings.connect_timeout + Duration::from_millis(500)),
            recycle: Some(settings.connect_timeout),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_max_size)
            .timeouts(timeouts)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| PoolBuildError::Build(e.to_string()))?;
        let breaker = Breaker::new(settings.breaker_threshold, settings.breaker_reset);
        Ok(Database {
            shared: Arc::new(Shared {
                pool,
                breaker,
                settings,
                timeouts,
                call_bound,
                topping_up: AtomicBool::new(false),
                started: AtomicBool::new(false),
                counters: Counters::default(),
                readiness: Default::default(),
                cancels_in_flight: Arc::new(AtomicU64::new(0)),
                replica,
            }),
        })
    }

    pub(crate) fn replica(&self) -> Option<&Replica> {
        self.shared.replica.as_ref()
    }

    pub(crate) fn in_flight_check(&self) -> &InFlightCheck {
        &self.shared.readiness
    }

    pub fn settings(&self) -> &DbSettings {
        &self.shared.settings
    }

    pub fn breaker(&self) -> &Breaker {
        &self.shared.breaker
    }

    /// Whether the pool has reached the database once (warm-up or a call).
    pub fn is_started(&self) -> bool {
        self.shared.started.load(Ordering::Acquire)
    }

    /// Opens the minimum of idle connections, retrying with exponential
    /// backoff and jitter for at most `DB_CONNECT_RETRY` (the Cloud SQL
    /// proxy sidecar may not listen yet when the service starts). Each wait
    /// is logged. Start-up failures do not count against the breaker.
    pub async fn warm_up(&self) -> Result<(), DbError> {
        if let Some(replica) = self.replica() {
            // Optional: reads go to the primary until it answers, so the
            // service never waits for it (its own retries log each wait).
            let replica = replica.pool().clone();
            tokio::spawn(async move { replica.warm_up_this_pool().await });
        }
        self.warm_up_this_pool().await
    }

    async fn warm_up_this_pool(&self) -> Result<(), DbError> {
        let deadline = Instant::now() + self.shared.settings.connect_retry;
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1u32;
        loop {
            match self.open_min().await {
                Ok(()) => {
                    self.shared.started.store(true, Ordering::Release);
                    self.shared.breaker.reset();
                    self.warn_if_over_budget().await;
                    return self.verify_pooler_sessions().await;
                }
                Err(e) => {
                    let now = Instant::now();
                    if now >= deadline {
                        tracing::error!(error = %e, attempts = attempt, "database not reachable within DB_CONNECT_RETRY; giving up start-up retries");
                        return Err(e);
                    }
                    let jitter = rand::thread_rng().gen_range(0.5..1.5);
                    let wait = delay.mul_f64(jitter).min(deadline - now);
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "database not reachable yet; retrying");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        }
    }

    /// At full scale (`MAX_INSTANCES` pools of `DB_POOL_MAX_SIZE`), would
    /// the server run out of connection slots? Logged once at start-up, as a
    /// warning: the service can serve, the last instances to scale out
    /// would get 503s under load. Direct connections only (behind a
    /// transaction pooler the pooler's server pool is what counts).
    async fn warn_if_over_budget(&self) {
        let s = &self.shared.settings;
        let Some(instances) = s.max_instances else {
            return;
        };
        if s.pooler == Pooler::Transaction {
            return;
        }
        let Ok(mut conn) = self.acquire().await else {
            return;
        };
        let read = crate::budget::ServerSlots::read(&conn.conn().client);
        let Ok(Ok(slots)) = tokio::time::timeout(self.shared.call_bound, read).await else {
            return;
        };
        let pool = s.pool_max_size as u64;
        if !slots.fits(pool, u64::from(instances)) {
            tracing::warn!(
                max_connections = slots.max_connections,
                reserved = slots.reserved,
                pool_max_size = pool,
                max_instances = instances,
                "connection budget: MAX_INSTANCES × DB_POOL_MAX_SIZE = {} is more than the {} connections the server accepts; at full scale requests get 503s: lower DB_POOL_MAX_SIZE or MAX_INSTANCES, raise max_connections, or put Managed Connection Pooling in front (DB_POOLER=transaction)",
                pool * u64::from(instances),
                slots.for_applications()
            );
        }
    }

    /// Behind a transaction pooler the session settings come from the
    /// role's defaults, not from us: a service that would run without its
    /// statement timeout or with the wrong `app.environment` stops here
    /// with the fix instead.
    async fn verify_pooler_sessions(&self) -> Result<(), DbError> {
        if self.shared.settings.pooler != Pooler::Transaction {
            return Ok(());
        }
        let mut conn = self.acquire().await?;
        let params = SessionParams::from_settings(&self.shared.settings);
        let check = crate::pooler::verify_session_defaults(&conn.conn().client, &params);
        match tokio::time::timeout(self.shared.call_bound, check).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(DbError::Misconfigured(e.to_string())),
            Ok(Err(e)) => Err(classify(&e).0),
            Err(_) => Err(conn.no_answer(self.shared.call_bound)),
        }
    }

    /// Opens connections until `DB_POOL_MIN_SIZE` are open (at least one).
    async fn open_min(&self) -> Result<(), DbError> {
        let shared = &self.shared;
        let want = shared.settings.pool_min_size.max(1);
        let held = futures_util::future::join_all(
            (0..want).map(|_| shared.pool.timeout_get(&shared.timeouts)),
        )
        .await;
        let mut first_error = None;
        for r in held {
            if let Err(e) = r {
                first_error.get_or_insert(pool_error(e));
            }
        }
        match first_error {
            Some(e) if shared.pool.status().size == 0 => Err(e),
            _ => Ok(()),
        }
    }

    /// Takes a connection: fails fast when the breaker is open, waits at most
    /// `DB_POOL_TIMEOUT` for a free one, never hands out a closed one.
    pub async fn acquire(&self) -> Result<PooledConn, DbError> {
        self.acquire_within(self.shared.timeouts.wait).await
    }

    /// [`Database::acquire`] with another wait bound (readiness uses 2 s).
    pub async fn acquire_within(&self, wait: Option<Duration>) -> Result<PooledConn, DbError> {
        let shared = &self.shared;
        let ticket = shared.breaker.enter().map_err(|r| {
            self.probe_if_due();
            DbError::Unavailable {
                reason: "circuit breaker open".into(),
                retry_after: r.retry_after.min(Duration::from_secs(1)),
            }
        })?;
        let timeouts = Timeouts {
            wait,
            ..shared.timeouts
        };
        match bounded_get(&shared.pool, &timeouts).await {
            Ok(obj) => {
                if !shared.started.load(Ordering::Relaxed) {
                    shared.started.store(true, Ordering::Release);
                }
                if Object::metrics(&obj).recycle_count == 0 {
                    shared.breaker.connected();
                }
                self.top_up_if_low();
                Ok(PooledConn {
                    obj: Some(obj),
                    db: self.clone(),
                    ticket: Some(ticket),
                })
            }
            Err(e) => {
                let exhausted = matches!(e, PoolError::Timeout(managed::TimeoutType::Wait));
                let out_of_slots = matches!(&e, PoolError::Backend(c) if c.is_out_of_slots());
                let err = pool_error(e);
                if exhausted {
                    shared
                        .counters
                        .acquire_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    // Busy connections are not a dead server: count only when none is open.
                    if shared.pool.status().size == 0 {
                        shared.breaker.failure(ticket);
                    } else {
                        shared.breaker.neutral(ticket);
                    }
                } else if out_of_slots {
                    // Up, but full: a capacity limit, not an outage.
                    shared.breaker.neutral(ticket);
                } else {
                    shared.breaker.failure(ticket);
                }
                self.count_error(&err);
                Err(err)
            }
        }
    }

    /// The breaker is open and a caller was refused: try one new connection
    /// in a task started by this call (at most once a second, see
    /// [`Breaker::probe_due`]); if it opens, the breaker closes. The probe
    /// connection is closed again: it only had to prove the server answers.
    fn probe_if_due(&self) {
        if !self.shared.breaker.probe_due() {
            return;
        }
        let db = self.clone();
        tokio::spawn(async move {
            let shared = &db.shared;
            let bound = shared.settings.connect_timeout;
            let manager = shared.pool.manager();
            if let Ok(Ok(conn)) =
                tokio::time::timeout(bound, managed::Manager::create(manager)).await
            {
                drop(conn);
                shared.breaker.probe_succeeded();
            }
        });
    }

    /// Below the minimum (after a restart or lifetime expiry)? Open the
    /// missing connections in a task started by this call, not by a timer.
    fn top_up_if_low(&self) {
        let shared = &self.shared;
        if shared.pool.status().size >= shared.settings.pool_min_size || !self.is_started() {
            return;
        }
        if shared.topping_up.swap(true, Ordering::AcqRel) {
            return;
        }
        let db = self.clone();
        tokio::spawn(async move {
            let _ = db.open_min().await;
            db.shared.topping_up.store(false, Ordering::Release);
        });
    }

    pub fn status(&self) -> PoolStatus {
        let s = self.shared.pool.status();
        PoolStatus {
            size: s.size,
            idle: s.available,
            in_use: s.size.saturating_sub(s.available),
            waiting: s.waiting,
            max_size: s.max_size,
            min_size: self.shared.settings.pool_min_size,
        }
    }

    /// Acquires that timed out waiting for a free connection, since start.
    pub fn acquire_timeouts(&self) -> u64 {
        self.shared
            .counters
            .acquire_timeouts
            .load(Ordering::Relaxed)
    }

    /// Failed calls by [`DbError::kind`], since start.
    pub fn errors_by_kind(&self) -> Vec<(&'static str, u64)> {
        ERROR_KINDS
            .iter()
            .zip(&self.shared.counters.errors_by_kind)
            .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
            .collect()
    }

    pub(crate) fn count_error(&self, e: &DbError) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == e.kind()) {
            self.shared.counters.errors_by_kind[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops handing out connections, waits (at most `wait`) for those in
    /// use to come back, then closes them all.
    /// Cancel requests still on their way are waited for too, within the
    /// same bound.
    pub async fn close(&self, wait: Duration) {
        match self.replica() {
            Some(replica) => {
                let both = (
                    replica.pool().close_this_pool(wait),
                    self.close_this_pool(wait),
                );
                futures_util::future::join(both.0, both.1).await;
            }
            None => self.close_this_pool(wait).await,
        }
    }

    async fn close_this_pool(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while self.status().in_use > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.shared.pool.close();
        let cancels = &self.shared.cancels_in_flight;
        while cancels.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// deadpool bounds each step of an acquire (the wait for a slot, each
/// idle connection's check, opening one) but not their sum: with a frozen
/// server, checking ten idle connections one after another takes ten
/// check timeouts. The whole acquire gets the wait bound here.
async fn bounded_get(
    pool: &Pool,
    timeouts: &Timeouts,
) -> Result<Object<Manager>, PoolError<ConnectError>> {
    let Some(bound) = timeouts.wait else {
        return pool.timeout_get(timeouts).await;
    };
    match tokio::time::timeout(bound, pool.timeout_get(timeouts)).await {
        Ok(result) => result,
        // Not an exhausted pool: a slot was had, but checking or opening a
        // connection did not finish in time.
        Err(_) => Err(PoolError::Timeout(managed::TimeoutType::Create)),
    }
}

fn pool_error(e: PoolError<ConnectError>) -> DbError {
    match e {
        PoolError::Timeout(managed::TimeoutType::Wait) => DbError::Unavailable {
            reason: "pool exhausted: no free connection within DB_POOL_TIMEOUT".into(),
            retry_after: Duration::from_secs(1),
        },
        PoolError::Timeout(_) => DbError::Unavailable {
            reason:
                "no usable connection within DB_POOL_TIMEOUT: opening or checking one timed out"
                    .into(),
            retry_after: Duration::from_secs(1),
        },
        PoolError::Backend(e) => e.to_db_error(),
        PoolError::Closed => DbError::Unavailable {
            reason: "the pool is closed (shutting down)".into(),
            retry_after: Duration::from_secs(1),
        },
        other => DbError::Unavailable {
            reason: other.to_string(),
            retry_after: Duration::from_secs(1),
        },
    }
}

/// A connection taken from the pool; goes back when dropped. Its calls
/// report their outcome to the breaker and are classified into [`DbError`].
pub struct PooledConn {
    obj: Option<Object<Manager>>,
    db: Database,
    ticket: Option<Ticket>,
}

impl PooledConn {
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.obj.as_mut().expect("present until drop")
    }

    /// Runs one call on the wire: marks the connection busy, bounds the
    /// call by `DB_QUERY_TIMEOUT` plus a margin, and turns the outcome into
    /// ours. The mark is cleared only here, after the whole reply; if this
    /// future is dropped first, the mark stays and `Drop` cancels.
    pub(crate) async fn call(&mut self, sql: &str, op: Op<'_>) -> Result<Reply, DbError> {
        let bound = self.db.shared.call_bound;
        let conn = self.conn();
        conn.busy = true;
        match tokio::time::timeout(bound, conn.prepared(sql, &op)).await {
            Ok(result) => {
                conn.busy = false;
                self.observe(result)
            }
            Err(_) => Err(self.no_answer(bound)),
        }
    }

    /// The server did not answer within the call bound: the connection is
    /// done for (it stays busy, so dropping it cancels and closes it), and
    /// the breaker hears of a connection-level failure.
    fn no_answer(&mut self, bound: Duration) -> DbError {
        self.conn().broken = true;
        if let Some(t) = self.ticket.take() {
            self.db.shared.breaker.failure(t);
        }
        let err = DbError::Unavailable {
            reason: format!(
                "no answer from the database within {:.1}s (DB_QUERY_TIMEOUT plus a margin)",
                bound.as_secs_f64()
            ),
            retry_after: Duration::from_secs(1),
        };
        self.db.count_error(&err);
        err
    }

    /// Turns a driver result into ours, telling the breaker what it means.
    fn observe<T>(&mut self, result: Result<T, tokio_postgres::Error>) -> Result<T, DbError> {
        let breaker = &self.db.shared.breaker;
        match result {
            Ok(v) => {
                if let Some(t) = self.ticket.take() {
                    breaker.success(t);
                }
                Ok(v)
            }
            Err(e) => {
                let (err, level) = classify(&e);
                if let Some(t) = self.ticket.take() {
                    match level {
                        Level::Connection => breaker.failure(t),
                        Level::Query => breaker.success(t),
                    }
                }
                if level == Level::Connection {
                    self.conn().broken = true;
                }
                self.db.count_error(&err);
                Err(err)
            }
        }
    }

    /// Counts an error found after the query ran (a missing row).
    pub(crate) fn count(&self, e: &DbError) {
        self.db.count_error(e);
    }

    /// Marks the connection so it is closed instead of going back.
    pub(crate) fn discard(&mut self) {
        self.conn().broken = true;
    }

    /// The underlying driver client, for what the helpers do not cover
    /// (COPY, LISTEN). Calls made on it bypass the breaker's bookkeeping.
    pub fn client(&mut self) -> &Client {
        &self.conn().client
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.db.shared.breaker.neutral(t);
        }
        let Some(obj) = self.obj.take() else { return };
        if obj.busy {
            // A call's future was dropped mid-flight: stop the statement on
            // the server, or it runs on, holding its locks.
            let dsn = self.db.shared.pool.manager().dsn().clone();
            let token = obj.client.cancel_token();
            let bound = self.db.shared.settings.connect_timeout;
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let in_flight = Arc::clone(&self.db.shared.cancels_in_flight);
                in_flight.fetch_add(1, Ordering::AcqRel);
                rt.spawn(async move {
                    crate::connect::cancel(&dsn, token, bound).await;
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
        if obj.broken || obj.busy || obj.in_transaction {
            // Detach: such a connection never goes back to the pool.
            drop(Object::take(obj));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request waiting for a connection holds this future: at 1,000
    /// open client connections on a pool of 15, that is 1,000 of them.
    /// Before `Manager::create` was boxed it was 14.8 KB (15 MB at 1,000
    /// waiting requests, most of the service's memory there); it is about
    /// 1.5 KB now. The bound leaves room for the compiler, not for a
    /// connection's set-up future to come back inline.
    #[tokio::test]
    async fn a_waiting_acquire_stays_small() {
        let dsn: crate::dsn::Dsn = "postgresql://app@/app?host=/nonexistent".parse().unwrap();
        let db = Database::new(DbSettings::for_dsn(dsn, "size-check")).unwrap();
        let size = std::mem::size_of_val(&db.acquire());
        assert!(size <= 4096, "Database::acquire's future is {size} bytes");
    }
}
