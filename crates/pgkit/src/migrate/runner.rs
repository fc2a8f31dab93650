//! Running one file as written, on the runner's dedicated connection.
//!
//! Statements go one by one through the simple query protocol, as psql sends
//! them, so a file's own `BEGIN; … COMMIT;`, `DO` blocks, plpgsql functions
//! and `RAISE NOTICE` all behave as under `psql -f`; NOTICEs are passed on as
//! they arrive. The tracking row is inserted where it lands in the same
//! transaction as the file: inside the runner's own transaction for a file
//! without transaction control, just before the file's final `COMMIT` for a
//! file that has one, and after the last statement for a
//! `-- pgkit:no-transaction` file. A failure is located in the file (line and
//! column from the server's error position, else the failing statement's
//! first line) and the transaction is rolled back.
//!
//! Each attempt at a file first sets the session's `lock_timeout`, so a
//! statement that cannot get its lock (an `ALTER TABLE` behind a long
//! transaction) fails with 55P03 instead of queueing, with every query on
//! that table queued behind it. In a `-- pgkit:no-transaction` file the
//! `CONCURRENTLY` statements run without it: their locks do not block reads
//! or writes, and one cancelled half-way leaves an invalid index behind.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_postgres::error::ErrorPosition;
use tokio_postgres::Client;

use super::error::{server_message, FileFailure, MigrateError};
use super::source::TxMode;
use super::sql::{self, Statement};
use super::tracking::Tracking;
use crate::connect::{connect, Notice, SessionParams};
use crate::dsn::Dsn;

/// A dedicated, direct connection and the NOTICEs it receives.
pub(crate) struct Session {
    pub(crate) client: Client,
    notices: UnboundedReceiver<Notice>,
}

impl Session {
    /// Opens the connection. `statement_timeout` replaces the session's
    /// `DB_QUERY_TIMEOUT` (None: no limit), since a long migration must not
    /// be cut at the limit meant for a request's query.
    pub(crate) async fn open(
        dsn: &Dsn,
        params: &SessionParams,
        statement_timeout: Option<Duration>,
    ) -> Result<Session, MigrateError> {
        if params.pooler == crate::pooler::Pooler::Transaction {
            return Err(MigrateError::ThroughPooler);
        }
        let (tx, notices) = unbounded_channel();
        let client = connect(dsn, params, None, Some(tx))
            .await
            .map_err(|source| MigrateError::Connect {
                target: dsn.redacted(),
                source: Box::new(source),
            })?;
        let ms = statement_timeout.map(|d| d.as_millis().max(1)).unwrap_or(0);
        client
            .batch_execute(&format!("SET statement_timeout = {ms}"))
            .await
            .map_err(|e| MigrateError::db("cannot set statement_timeout", &e))?;
        Ok(Session { client, notices })
    }

    /// Runs one simple-protocol query, passing on NOTICEs while it runs.
    async fn exec(
        &mut self,
        sql: &str,
        on_notice: &mut (dyn FnMut(Notice) + Send),
    ) -> Result<(), tokio_postgres::Error> {
        let Session { client, notices } = self;
        let run = client.batch_execute(sql);
        tokio::pin!(run);
        loop {
            tokio::select! {
                biased;
                Some(n) = notices.recv() => on_notice(n),
                result = &mut run => {
                    // Notices precede the reply on the wire, so they are all here now.
                    while let Ok(n) = notices.try_recv() {
                        on_notice(n);
                    }
                    return result;
                }
            }
        }
    }

    /// Runs a statement with `lock_timeout` off, then puts the session's
    /// value back (the file may have set its own earlier).
    async fn exec_without_lock_timeout(
        &mut self,
        sql: &str,
        on_notice: &mut (dyn FnMut(Notice) + Send),
    ) -> Result<(), tokio_postgres::Error> {
        let before: String = self
            .client
            .query_one("SELECT current_setting('lock_timeout')", &[])
            .await?
            .get(0);
        self.client.batch_execute("SET lock_timeout = 0").await?;
        let result = self.exec(sql, on_notice).await;
        let restored = self
            .client
            .query_one("SELECT set_config('lock_timeout', $1, false)", &[&before])
            .await;
        result?;
        restored.map(|_| ())
    }

    /// Rolls back after a failure, dropping the server's chatter about it.
    async fn rollback(&mut self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
        while self.notices.try_recv().is_ok() {}
    }
}

/// A file to run: its text, statements and mode.
pub(crate) struct Script<'a> {
    pub name: &'a str,
    pub sql: &'a str,
    pub statements: &'a [Statement],
    pub mode: &'a TxMode,
}

/// The tracking row to insert with the file.
pub(crate) struct Record<'a> {
    pub tracking: &'a Tracking,
    pub version: i64,
    pub checksum: &'a str,
}

enum Step {
    Runner(&'static str),
    Statement(usize),
    Record,
}

/// Why a file did not complete.
pub(crate) enum RunError {
    /// The file itself failed on the server.
    File(FileFailure),
    /// Recording it failed (the file was rolled back unless it ran outside a transaction).
    Record(MigrateError),
}

/// How one attempt at a file runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempt {
    /// The first statement to run. Past 0 only for a no-transaction file
    /// resuming at the statement that timed out: the ones before it are
    /// committed and must not run twice.
    pub from: usize,
    /// The session's `lock_timeout` for this attempt; `None` leaves it as
    /// it is (seeds).
    pub lock_timeout: Option<Duration>,
}

/// A failed attempt, and at which statement of the file.
pub(crate) struct Failed {
    pub error: RunError,
    pub statement: Option<usize>,
}

/// The SQLSTATE of a statement cancelled by `lock_timeout` (and of `NOWAIT`).
pub(crate) const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Runs the script, with its tracking row when `record` is given. Returns
/// the time the file took (the row's execution_ms).
pub(crate) async fn run(
    session: &mut Session,
    script: &Script<'_>,
    record: Option<&Record<'_>>,
    on_notice: &mut (dyn FnMut(Notice) + Send),
) -> Result<Duration, RunError> {
    run_attempt(session, script, record, on_notice, &Attempt::default())
        .await
        .map_err(|f| f.error)
}

/// [`run`], from statement `attempt.from`, under `attempt.lock_timeout`.
pub(crate) async fn run_attempt(
    session: &mut Session,
    script: &Script<'_>,
    record: Option<&Record<'_>>,
    on_notice: &mut (dyn FnMut(Notice) + Send),
    attempt: &Attempt,
) -> Result<Duration, Failed> {
    let steps = plan(script, record.is_some(), attempt.from);
    let commit = match *script.mode {
        TxMode::Own { commit, .. } => Some(commit),
        _ => None,
    };
    // False once the file's own COMMIT has run: what follows it runs
    // statement by statement, with nothing to roll back.
    let mut in_transaction =
        !matches!(script.mode, TxMode::NoTransaction) && commit.is_none_or(|c| attempt.from <= c);
    let started = Instant::now();
    // Set per attempt, so a file's own session-level SET does not carry
    // over into the next file.
    if let Some(timeout) = attempt.lock_timeout {
        if let Err(e) = session.exec(&set_lock_timeout(timeout), on_notice).await {
            return Err(Failed {
                error: RunError::Record(MigrateError::db("cannot set lock_timeout", &e)),
                statement: None,
            });
        }
    }
    for step in steps {
        let ran = match step {
            Step::Statement(i) => Some(i),
            _ => None,
        };
        let outcome = match step {
            Step::Runner(sql) => session.exec(sql, on_notice).await.map_err(|e| (e, None)),
            Step::Statement(i) => {
                let range = script.statements[i].range.clone();
                let text = &script.sql[range];
                let unbounded =
                    !in_transaction && attempt.lock_timeout.is_some() && sql::is_concurrently(text);
                if unbounded {
                    session.exec_without_lock_timeout(text, on_notice).await
                } else {
                    session.exec(text, on_notice).await
                }
                .map_err(|e| (e, Some(i)))
            }
            Step::Record => {
                let r = record.expect("a Record step is planned only with a record");
                let ms = started.elapsed().as_millis() as i64;
                match r
                    .tracking
                    .insert(
                        &session.client,
                        r.version,
                        script.name,
                        r.checksum,
                        ms,
                        script.sql,
                    )
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        if in_transaction {
                            session.rollback().await;
                        }
                        return Err(Failed {
                            error: RunError::Record(MigrateError::db(
                                &format!(
                                    "cannot record {} in {}",
                                    script.name,
                                    r.tracking.qualified()
                                ),
                                &e,
                            )),
                            statement: None,
                        });
                    }
                }
            }
        };
        if let Err((e, statement)) = outcome {
            if in_transaction {
                session.rollback().await;
            }
            let mut failure = locate(script, statement, &e, !in_transaction);
            failure.after_commit = matches!((commit, statement), (Some(c), Some(i)) if i > c);
            return Err(Failed {
                error: RunError::File(failure),
                statement,
            });
        }
        if ran.is_some() && ran == commit {
            in_transaction = false;
        }
    }
    Ok(started.elapsed())
}

/// `SET lock_timeout` in milliseconds; at least 1, since 0 would mean no limit.
fn set_lock_timeout(timeout: Duration) -> String {
    format!(
        "SET lock_timeout = {}",
        timeout.as_millis().clamp(1, i32::MAX as u128)
    )
}

fn plan(script: &Script<'_>, record: bool, from: usize) -> Vec<Step> {
    let n = script.statements.len();
    let record = record.then_some(Step::Record);
    match *script.mode {
        TxMode::Wrapped => std::iter::once(Step::Runner("BEGIN"))
            .chain((0..n).map(Step::Statement))
            .chain(record)
            .chain(std::iter::once(Step::Runner("COMMIT")))
            .collect(),
        // Resuming past the COMMIT (a lock timeout after it): the
        // transaction and its row are committed, only the rest runs.
        TxMode::Own { commit, .. } if from > commit => {
            (from.min(n)..n).map(Step::Statement).collect()
        }
        TxMode::Own { commit, .. } => (0..commit)
            .map(Step::Statement)
            .chain(record)
            .chain(std::iter::once(Step::Statement(commit)))
            .chain((commit + 1..n).map(Step::Statement))
            .collect(),
        TxMode::NoTransaction => (from.min(n)..n)
            .map(Step::Statement)
            .chain(record)
            .collect(),
    }
}

/// Turns a server error into a place in the file and the server's words.
fn locate(
    script: &Script<'_>,
    statement: Option<usize>,
    e: &tokio_postgres::Error,
    outside_transaction: bool,
) -> FileFailure {
    let stmt_range = statement.map(|i| script.statements[i].range.clone());
    let stmt_start = stmt_range.as_ref().map(|r| r.start).unwrap_or(0);
    let stmt_text = stmt_range.map(|r| &script.sql[r]).unwrap_or("");
    let db = e.as_db_error();
    let at = db
        .and_then(|d| d.position())
        .and_then(|p| position_in(stmt_text, p))
        .map(|offset| stmt_start + offset);
    let (line, column) = match at {
        Some(byte) => {
            let (l, c) = sql::line_col(script.sql, byte);
            (l, Some(c))
        }
        None => {
            let body_line = db
                .and_then(|d| d.where_())
                .and_then(|w| do_block_line(script.sql, stmt_start, stmt_text, w));
            (
                body_line.unwrap_or_else(|| sql::line_col(script.sql, stmt_start).0),
                None,
            )
        }
    };
    FileFailure {
        name: script.name.to_string(),
        line,
        column,
        message: match db {
            Some(d) => d.message().to_string(),
            None => server_message(e),
        },
        code: db.map(|d| d.code().code().to_string()),
        detail: db.and_then(|d| d.detail()).map(str::to_string),
        server_hint: db.and_then(|d| d.hint()).map(str::to_string).or_else(|| {
            db.filter(|d| {
                d.message()
                    .contains("cannot run inside a transaction block")
            })
            .map(|_| {
                format!(
                    "put `{}` on a line of the header (before the first statement) and remove BEGIN/COMMIT",
                    super::source::NO_TRANSACTION_MARKER
                )
            })
        }),
        outside_transaction,
        after_commit: false,
    }
}

/// The byte offset in the statement of a server error position (1-based
/// characters, either in the statement or in a query the server built from it).
fn position_in(stmt: &str, position: &ErrorPosition) -> Option<usize> {
    match position {
        ErrorPosition::Original(p) => {
            Some(sql::char_to_byte(stmt, (*p as usize).saturating_sub(1)))
        }
        ErrorPosition::Internal { position, query } => {
            let base = stmt.find(query.as_str())?;
            let inner = sql::char_to_byte(query, (*position as usize).saturating_sub(1));
            Some(base + inner)
        }
    }
}

/// For an error raised inside a `DO` block ("PL/pgSQL function
/// inline_code_block line N"), the file line of body line N.
fn do_block_line(sql: &str, stmt_start: usize, stmt: &str, where_: &str) -> Option<u32> {
    let rest = where_.split("inline_code_block line ").nth(1)?;
    let n: u32 = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let body = body_offset(stmt)?;
    Some(sql::line_col(sql, stmt_start + body).0 + n.saturating_sub(1))
}

/// Where the body literal of a `DO` statement starts.
fn body_offset(stmt: &str) -> Option<usize> {
    use squawk_lexer::TokenKind;
    let mut pos = 0usize;
    let mut tokens = squawk_lexer::tokenize(stmt);
    let first = tokens.find(|t| {
        pos += t.len as usize;
        !matches!(
            t.kind,
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment { .. }
        )
    })?;
    if !stmt[pos - first.len as usize..pos].eq_ignore_ascii_case("DO") {
        return None;
    }
    for t in tokens {
        let start = pos;
        pos += t.len as usize;
        if matches!(t.kind, TokenKind::Literal { .. }) {
            return Some(start);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn do_block_lines_count_from_the_opening_quote() {
        let sql = "-- c\nDO $$\nBEGIN\n  RAISE EXCEPTION 'x';\nEND\n$$;";
        let start = sql.find("DO").unwrap();
        let stmt = &sql[start..];
        assert_eq!(
            do_block_line(
                sql,
                start,
                stmt,
                "PL/pgSQL function inline_code_block line 3 at RAISE"
            ),
            Some(4)
        );
        assert_eq!(do_block_line(sql, start, stmt, "SQL statement"), None);
    }

    #[test]
    fn positions_map_into_the_statement() {
        assert_eq!(
            position_in("SELECT é, x", &ErrorPosition::Original(11)),
            Some(11)
        );
        let internal = ErrorPosition::Internal {
            position: 3,
            query: "bad sql".into(),
        };
        assert_eq!(position_in("DO $$ bad sql $$", &internal), Some(8));
    }
}
