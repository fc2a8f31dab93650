//! One connection and how the pool makes, checks and retires it: the
//! deadpool manager, the per-connection statement cache, and the calls a
//! connection can run ([`Op`], answered by a [`Reply`]).
//!
//! A connection comes from [`crate::connect`] (TLS by sslmode, session
//! settings in the start-up packet, IAM tokens as passwords). Recycling
//! hands out no connection that is broken, mid-call, mid-transaction, past
//! its lifetime or idle long enough that a restart may have cut it (then
//! an empty query checks it first); nothing is reset on checkout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use futures_util::TryStreamExt;
use rand::Rng;
use tokio::task::AbortHandle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use crate::connect::{connect_driven, ConnectError, SessionParams};
use crate::dsn::Dsn;
use crate::iam::SharedTokenSource;
use crate::pooler::{ParamTypes, Pooler};
use crate::settings::DbSettings;

/// One open connection and the statements prepared on it.
pub struct Conn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
    /// Set when a call on it failed at the connection level.
    pub(crate) broken: bool,
    /// Set while a call is on the wire; still set when its future was
    /// dropped before the reply came in (see the module doc).
    pub(crate) busy: bool,
    /// Set between `BEGIN` and its end: a failed statement aborted the
    /// transaction, so it is not retried there.
    pub(crate) in_transaction: bool,
    /// The task that reads and writes the socket.
    driver: AbortHandle,
    /// Behind a transaction pooler: no named statements; queries go out
    /// unnamed with the parameter types learnt here.
    unnamed: Option<ParamTypes>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the client alone leaves the task waiting for a reply
        // that may never come; the socket closes with the task.
        self.driver.abort();
    }
}

impl Conn {
    /// A statement prepared once per connection and reused after.
    pub(crate) async fn statement(
        &mut self,
        sql: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Runs `op` with the statement for `sql`. A live migration that
    /// changed the type of a column the cached statement returns makes the
    /// server refuse it (0A000); the statement is evicted then, and the
    /// call tried once more with a fresh one unless a transaction is open
    /// (the failure aborted it: its caller has to start again).
    pub(super) async fn prepared(
        &mut self,
        sql: &str,
        op: &Op<'_>,
    ) -> Result<Reply, tokio_postgres::Error> {
        if let Op::Batch = op {
            return self.client.batch_execute(sql).await.map(|()| Reply::Done);
        }
        if let Some(types) = &self.unnamed {
            let types = match types.get(sql) {
                Some(t) => t,
                None => types.learn(&self.client, sql, self.in_transaction).await?,
            };
            return op.send_unnamed(&self.client, sql, &types).await;
        }
        let statement = self.statement(sql).await?;
        match op.send(&self.client, &statement).await {
            Err(e) if crate::error::is_stale_plan(&e) => {
                self.statements.remove(sql);
                if self.in_transaction {
                    return Err(e);
                }
                let statement = self.statement(sql).await?;
                op.send(&self.client, &statement).await
            }
            other => other,
        }
    }
}

/// What a call asks of the connection. An enum rather than a closure: the
/// futures stay `Send` for any caller (closures over `&mut Conn` would need
/// higher-ranked bounds the compiler cannot prove for spawned tasks).
pub(crate) enum Op<'a> {
    Execute(super::Params<'a>),
    Query(super::Params<'a>),
    QueryOpt(super::Params<'a>),
    /// Rows until they reach this many bytes; the rest are read and dropped.
    QueryWithin(super::Params<'a>, usize),
    /// SQL text through the simple query protocol.
    Batch,
}

/// The reply to an [`Op`], of the matching kind.
pub(crate) enum Reply {
    Count(u64),
    Rows(Vec<tokio_postgres::Row>),
    Row(Option<tokio_postgres::Row>),
    /// The rows kept, and whether any were dropped after them.
    Within(Vec<tokio_postgres::Row>, bool),
    Done,
}

impl Op<'_> {
    async fn send(
        &self,
        client: &Client,
        statement: &Statement,
    ) -> Result<Reply, tokio_postgres::Error> {
        match self {
            Op::Execute(p) => client.execute(statement, p).await.map(Reply::Count),
            Op::Query(p) => client.query(statement, p).await.map(Reply::Rows),
            Op::QueryOpt(p) => client.query_opt(statement, p).await.map(Reply::Row),
            Op::QueryWithin(p, max) => {
                let rows = client.query_raw(statement, p.iter().copied()).await?;
                keep_within(rows, *max).await
            }
            Op::Batch => Ok(Reply::Done),
        }
    }

    /// One unnamed statement: Parse, Bind, Describe, Execute, Sync.
    /// A parameter count that does not match the types is the driver's
    /// "expected N parameters" error, as with a prepared statement.
    async fn send_unnamed(
        &self,
        client: &Client,
        sql: &str,
        types: &[Type],
    ) -> Result<Reply, tokio_postgres::Error> {
        match self {
            Op::Execute(p) => client
                .execute_typed(sql, &typed(p, types))
                .await
                .map(Reply::Count),
            Op::Query(p) => client
                .query_typed(sql, &typed(p, types))
                .await
                .map(Reply::Rows),
            Op::QueryOpt(p) => client
                .query_typed_opt(sql, &typed(p, types))
                .await
                .map(Reply::Row),
            Op::QueryWithin(p, max) => {
                let rows = client.query_typed_raw(sql, typed(p, types)).await?;
                keep_within(rows, *max).await
            }
            Op::Batch => client.batch_execute(sql).await.map(|()| Reply::Done),
        }
    }
}

/// Keeps rows while those kept so far are under `max` bytes (so the row
/// that crosses it is kept, and a caller paging on it always moves on),
/// then reads the rest of the reply without keeping it. The driver reads
/// the socket only as fast as this consumes rows, so a reply of any size
/// costs about `max` plus a row of memory (and the read buffer that row
/// needed); reading to the end keeps the
/// connection reusable (stopping early would mean a cancel and a new
/// connection).
async fn keep_within(
    rows: tokio_postgres::RowStream,
    max: usize,
) -> Result<Reply, tokio_postgres::Error> {
    let mut rows = std::pin::pin!(rows);
    let (mut kept, mut bytes, mut dropped) = (Vec::new(), 0usize, false);
    while let Some(row) = rows.try_next().await? {
        if bytes < max {
            bytes += row.raw_size_bytes();
            kept.push(row);
        } else {
            dropped = true;
        }
    }
    Ok(Reply::Within(kept, dropped))
}

/// Values paired with their types for an unnamed statement. Extra values
/// (more than the statement has parameters) are kept without a type so the
/// driver reports the count mismatch instead of silently dropping them.
fn typed<'a>(params: super::Params<'a>, types: &[Type]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, types.get(i).cloned().unwrap_or(Type::UNKNOWN)))
        .collect()
}

pub(crate) struct Manager {
    dsn: Dsn,
    params: SessionParams,
    tokens: Option<SharedTokenSource>,
    max_lifetime: Duration,
    idle_timeout: Duration,
    validate_after_idle: Duration,
    /// Shared by every connection behind a transaction pooler.
    unnamed: Option<ParamTypes>,
    /// Until when no new connection is asked for: the server refused one
    /// for lack of slots (53300), and asking again at once only adds load.
    out_of_slots_until: std::sync::Mutex<Option<Instant>>,
}

impl Manager {
    pub(super) fn new(settings: &DbSettings, dsn: Dsn, tokens: Option<SharedTokenSource>) -> Self {
        Manager {
            dsn,
            unnamed: (settings.pooler == Pooler::Transaction).then(ParamTypes::default),
            out_of_slots_until: std::sync::Mutex::new(None),
            params: SessionParams::from_settings(settings),
            tokens,
            max_lifetime: settings.max_lifetime,
            idle_timeout: settings.idle_timeout,
            validate_after_idle: settings.validate_after_idle,
        }
    }

    /// Where connections go; cancel requests go there too.
    pub(super) fn dsn(&self) -> &Dsn {
        &self.dsn
    }

    fn backing_off(&self) -> Option<Duration> {
        let until = *self
            .out_of_slots_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.and_then(|t| t.checked_duration_since(Instant::now()))
    }

    fn refused_for_slots(&self) {
        let wait = Duration::from_millis(1000).mul_f64(rand::thread_rng().gen_range(0.5..1.5));
        *self
            .out_of_slots_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + wait);
    }
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = ConnectError;

    /// Boxed: deadpool's `get` future holds this one inline whether or not
    /// it opens a connection, and the TLS and IAM steps make it 4.6 KB;
    /// every request waiting for a connection carried that (at 1,000
    /// waiting requests, 15 MB). Opening is rare; the allocation is cheap.
    async fn create(&self) -> Result<Conn, ConnectError> {
        Box::pin(self.open()).await
    }

    async fn recycle(&self, conn: &mut Conn, metrics: &Metrics) -> RecycleResult<ConnectError> {
        if conn.broken || conn.busy || conn.in_transaction || conn.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        if metrics.age() >= self.max_lifetime {
            return Err(RecycleError::message("past DB_MAX_LIFETIME"));
        }
        let idle = metrics.last_used();
        if idle >= self.idle_timeout {
            return Err(RecycleError::message("idle past DB_IDLE_TIMEOUT"));
        }
        if idle >= self.validate_after_idle {
            // A proxy or server restart may have cut it while it sat idle.
            // Boxed for the reason given at `create`: a rare path.
            Box::pin(conn.client.simple_query(""))
                .await
                .map_err(|e| RecycleError::message(format!("validation failed: {e}")))?;
        }
        Ok(())
    }
}

impl Manager {
    async fn open(&self) -> Result<Conn, ConnectError> {
        if let Some(left) = self.backing_off() {
            return Err(ConnectError::BackingOff(left));
        }
        let token = match &self.tokens {
            Some(source) => Some(
                source
                    .token()
                    .await
                    .map_err(|e| ConnectError::Token(e.to_string()))?,
            ),
            None => None,
        };
        let (client, driver) = connect_driven(&self.dsn, &self.params, token.as_ref(), None)
            .await
            .inspect_err(|e| {
                if e.is_out_of_slots() {
                    self.refused_for_slots();
                }
            })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
            broken: false,
            busy: false,
            in_transaction: false,
            driver,
            unnamed: self.unnamed.clone(),
        })
    }
}
