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
use crate::pool::{Database, PooledConn};

/// Query parameters, as the driver takes them.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A type built from one row. Implement it next to the repository.
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, DbError>;
}

impl FromRow for Row {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(row.clone())
    }
}

/// Reads one column, naming it when the type does not fit.
pub fn col<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, DbError> {
    row.try_get(name)
        .map_err(|e| DbError::Decode(format!("column {name}: {e}")))
}

impl PooledConn {
    /// Runs a statement; returns the number of rows it touched.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        let result = self
            .run(sql, |c, s| async move { c.execute(&s, params).await })
            .await;
        self.observe(result)
    }

    /// All rows, each built with [`FromRow`].
    pub async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<T>, DbError> {
        let result = self
            .run(sql, |c, s| async move { c.query(&s, params).await })
            .await;
        self.observe(result)?.iter().map(T::from_row).collect()
    }

    /// The first row if there is one.
    pub async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<T>, DbError> {
        let result = self
            .run(sql, |c, s| async move { c.query_opt(&s, params).await })
            .await;
        self.observe(result)?.as_ref().map(T::from_row).transpose()
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
        let result = self.conn().client.batch_execute(sql).await;
        self.observe(result)
    }

    /// Starts a transaction on this connection. Commit it explicitly: one
    /// dropped without commit or rollback takes its connection out of the
    /// pool (closing it rolls the transaction back on the server), so a
    /// half-done transaction can never reach the next caller.
    pub async fn begin(&mut self) -> Result<Transaction<'_>, DbError> {
        self.batch("BEGIN").await?;
        Ok(Transaction {
            conn: self,
            done: false,
        })
    }

    async fn run<'c, F, Fut, T>(&'c mut self, sql: &str, f: F) -> Result<T, tokio_postgres::Error>
    where
        F: FnOnce(&'c tokio_postgres::Client, tokio_postgres::Statement) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + 'c,
    {
        let conn = self.conn();
        let statement = conn.statement(sql).await?;
        f(&conn.client, statement).await
    }
}

/// An open transaction; see [`PooledConn::begin`].
pub struct Transaction<'a> {
    conn: &'a mut PooledConn,
    done: bool,
}

impl Transaction<'_> {
    pub async fn commit(mut self) -> Result<(), DbError> {
        self.done = true;
        self.conn.batch("COMMIT").await
    }

    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.done = true;
        self.conn.batch("ROLLBACK").await
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
