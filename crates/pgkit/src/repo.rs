//! Repository helpers: run a named query with typed parameters, get typed rows.
//!
//! Services keep their SQL as short `const` strings next to the repository
//! that owns them and call these helpers, which prepare each statement once
//! per connection (one round trip per call after that), report outcomes to
//! the breaker and classify errors into [`DbError`]: a missing row is
//! `NotFound`, a unique violation is `Conflict` with the constraint, a
//! cancelled statement is `Timeout`. Parameters are always bound, never
//! spliced into SQL text. Column types map as: `uuid` ↔ `uuid::Uuid`,
//! `jsonb` ↔ `serde_json::Value`, `text[]` ↔ `Vec<String>`, `timestamptz`
//! ↔ `chrono::DateTime<Utc>`.

pub use tokio_postgres::types::{FromSql, Json, ToSql};
pub use tokio_postgres::Row;

use crate::error::DbError;
use crate::pool::{Database, Op, PooledConn, Reply};

/// Each [`Op`] gets its own kind of [`Reply`]; this is never reached.
fn mismatch() -> DbError {
    DbError::Decode("internal: the driver's reply does not fit the call".into())
}

pub use crate::pool::Params;

/// A type built from one row. Implement it next to the repository.
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, DbError>;
}

impl FromRow for Row {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(row.clone())
    }
}

/// The rows of [`PooledConn::fetch_within`]: those that arrived while
/// fewer than `max_bytes` had (measured as the server sent them), so the
/// row that crosses the limit is the last kept. Rows after it were read off
/// the connection and dropped, never decoded or held; `cut` says there were
/// some.
///
/// This is how a service bounds what one request can hold in memory when
/// single rows may be large (a page of 100 rows of 1 MiB each) without
/// making the database do any work for it: the statement stays a plain
/// `ORDER BY ... LIMIT` (a running sum of sizes in SQL, with window
/// functions over the wide rows, took PostgreSQL 1.7 times as long as the
/// plain statement on a page of small rows). The price is paid only by a
/// reply that is actually over the limit: the server still sends its rows
/// up to the `LIMIT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Within<T> {
    pub rows: Vec<T>,
    pub cut: bool,
}

/// Reads one column, naming it when the type does not fit.
pub fn col<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, DbError> {
    row.try_get(name)
        .map_err(|e| DbError::Decode(format!("column {name}: {e}")))
}

impl PooledConn {
    /// Runs a statement; returns the number of rows it touched.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        match self.call(sql, Op::Execute(params)).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(mismatch()),
        }
    }

    /// All rows, each built with [`FromRow`].
    pub async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<T>, DbError> {
        match self.call(sql, Op::Query(params)).await? {
            Reply::Rows(rows) => rows.iter().map(T::from_row).collect(),
            _ => Err(mismatch()),
        }
    }

    /// The rows of a statement up to about `max_bytes` of them: see
    /// [`Within`].
    pub async fn fetch_within<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
        max_bytes: usize,
    ) -> Result<Within<T>, DbError> {
        match self.call(sql, Op::QueryWithin(params, max_bytes)).await? {
            Reply::Within(rows, cut) => Ok(Within {
                rows: rows.iter().map(T::from_row).collect::<Result<_, _>>()?,
                cut,
            }),
            _ => Err(mismatch()),
        }
    }

    /// The first row if there is one.
    pub async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<T>, DbError> {
        match self.call(sql, Op::QueryOpt(params)).await? {
            Reply::Row(row) => row.as_ref().map(T::from_row).transpose(),
            _ => Err(mismatch()),
        }
    }

    /// Exactly one row; none is [`DbError::NotFound`].
    pub async fn fetch_one<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<T, DbError> {
        match self.fetch_optional(sql, params).await? {
            Some(v) => Ok(v),
            None => {
                self.count(&DbError::NotFound);
                Err(DbError::NotFound)
            }
        }
    }

    /// The first column of the one row; no row is [`DbError::NotFound`].
    pub async fn fetch_val<T>(&mut self, sql: &str, params: Params<'_>) -> Result<T, DbError>
    where
        T: for<'r> FromSql<'r>,
    {
        let row: Row = self.fetch_one(sql, params).await?;
        row.try_get(0).map_err(|e| DbError::Decode(e.to_string()))
    }

    /// Runs SQL text through the simple query protocol (no parameters):
    /// for `BEGIN`, `COMMIT` and scripts.
    pub async fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.call(sql, Op::Batch).await.map(|_| ())
    }

    /// Starts a transaction on this connection. Commit it explicitly: one
    /// dropped without commit or rollback takes its connection out of the
    /// pool (closing it rolls the transaction back on the server), so a
    /// half-done transaction can never reach the next caller. The guard
    /// exists before `BEGIN` is sent: a caller dropped while awaiting it
    /// must not leave a transaction open on a pooled connection.
    pub async fn begin(&mut self) -> Result<Transaction<'_>, DbError> {
        self.conn().in_transaction = true;
        let tx = Transaction {
            conn: self,
            done: false,
        };
        tx.conn.batch("BEGIN").await?;
        Ok(tx)
    }
}

/// An open transaction; see [`PooledConn::begin`].
pub struct Transaction<'a> {
    conn: &'a mut PooledConn,
    done: bool,
}

impl Transaction<'_> {
    pub async fn commit(self) -> Result<(), DbError> {
        self.end("COMMIT").await
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        self.end("ROLLBACK").await
    }

    /// Only an answered COMMIT or ROLLBACK frees the connection for reuse;
    /// until then (a failure, a dropped future) the guard discards it.
    async fn end(mut self, sql: &str) -> Result<(), DbError> {
        self.conn.batch(sql).await?;
        self.conn.conn().in_transaction = false;
        self.done = true;
        Ok(())
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = PooledConn;
    fn deref(&self) -> &PooledConn {
        self.conn
    }
}

impl std::ops::DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut PooledConn {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.discard();
        }
    }
}

/// One-call helpers on the pool: acquire, run, give the connection back.
impl Database {
    pub async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        self.acquire().await?.execute(sql, params).await
    }

    pub async fn fetch_all<T: FromRow>(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<T>, DbError> {
        self.acquire().await?.fetch_all(sql, params).await
    }

    pub async fn fetch_within<T: FromRow>(
        &self,
        sql: &str,
        params: Params<'_>,
        max_bytes: usize,
    ) -> Result<Within<T>, DbError> {
        self.acquire()
            .await?
            .fetch_within(sql, params, max_bytes)
            .await
    }

    pub async fn fetch_optional<T: FromRow>(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<T>, DbError> {
        self.acquire().await?.fetch_optional(sql, params).await
    }

    pub async fn fetch_one<T: FromRow>(&self, sql: &str, params: Params<'_>) -> Result<T, DbError> {
        self.acquire().await?.fetch_one(sql, params).await
    }

    pub async fn fetch_val<T>(&self, sql: &str, params: Params<'_>) -> Result<T, DbError>
    where
        T: for<'r> FromSql<'r>,
    {
        self.acquire().await?.fetch_val(sql, params).await
    }
}
