//! The one error type every database call returns.
//!
//! Callers (a service's HTTP layer, the CLI) need to decide what to tell a
//! user without parsing driver messages: "not found" is a 404, a unique
//! violation is a 409, anything that means "the database cannot serve you
//! now" is a 503 with a retry hint. So the pool, the breaker and the
//! repository helpers all classify driver errors into [`DbError`] here, once.

use std::time::Duration;

/// A failed database call, classified for the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The query ran and matched no row where one was required.
    #[error("no matching row")]
    NotFound,

    /// A unique (or exclusion) constraint rejected the write.
    #[error("conflict on constraint {}", constraint.as_deref().unwrap_or("(unnamed)"))]
    Conflict { constraint: Option<String> },

    /// The row refers to something that does not exist (foreign key), or a
    /// check constraint failed: the caller's input was wrong.
    #[error("invalid reference or value: {constraint}")]
    Constraint { constraint: String },

    /// The database cannot serve calls now: the breaker is open, the pool is
    /// exhausted, or connections fail. Retry after the given time.
    #[error("database unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Duration,
    },

    /// The statement ran longer than `DB_QUERY_TIMEOUT` and the server cancelled it.
    #[error("query timed out (statement_timeout); the server cancelled it")]
    Timeout,

    /// Any other failure of the statement itself (syntax, types, ...). The
    /// message is the server's, which never includes connection secrets.
    #[error("query failed: {0}")]
    Query(String),

    /// A row could not be read into the requested Rust type.
    #[error("could not decode column: {0}")]
    Decode(String),

    /// The database answers, but not the way the settings need (a role
    /// default missing behind a transaction pooler). Retrying will not
    /// help; the message says what to change.
    #[error("{0}")]
    Misconfigured(String),
}

impl DbError {
    /// Seconds a client should wait before retrying, for 503 answers.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DbError::Unavailable { retry_after, .. } => Some(*retry_after),
            DbError::Timeout => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// A short stable name of the kind, for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            DbError::NotFound => "not_found",
            DbError::Conflict { .. } => "conflict",
            DbError::Constraint { .. } => "constraint",
            DbError::Unavailable { .. } => "unavailable",
            DbError::Timeout => "timeout",
            DbError::Query(_) => "query",
            DbError::Decode(_) => "decode",
            DbError::Misconfigured(_) => "misconfigured",
        }
    }
}

/// Whether a failure says the connection or server is unusable (counts for
/// the breaker, and the connection must not go back to the pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Connection,
    Query,
}

/// An error and its causes on one line, `outer: inner: innermost`, a cause
/// left out when the text so far already says it (drivers often repeat
/// their source in their own message). The one such function in the
/// workspace: logs, CLI errors and test failures all read alike.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Classifies a driver error. SQLSTATE classes: 08 connection exception,
/// 28 invalid authorization, 53300 too many connections, 57P01..57P03
/// shutdown / cannot connect now, 3D000 no such database. Errors without a
/// SQLSTATE are connection-level only when they are I/O or protocol
/// failures; the rest (a wrong parameter count, more rows than `query_opt`
/// allows, a type that does not convert) are the caller's bugs, reported
/// before or after a healthy exchange: counting them against the breaker or
/// discarding the connection would turn one bad query into an outage.
pub(crate) fn classify(e: &tokio_postgres::Error) -> (DbError, Level) {
    use tokio_postgres::error::SqlState;
    let Some(db) = e.as_db_error() else {
        let text = error_chain(e);
        if text.starts_with("error serializing") || text.starts_with("error deserializing") {
            return (DbError::Decode(text), Level::Query);
        }
        if !is_transport_failure(e) {
            return (DbError::Query(text), Level::Query);
        }
        return (
            DbError::Unavailable {
                reason: text,
                retry_after: Duration::from_secs(1),
            },
            Level::Connection,
        );
    };
    if is_stale_plan(e) {
        // A live migration changed a column a cached statement returns; the
        // statement was evicted, so the same call works when tried again.
        let err = DbError::Unavailable {
            reason: "a migration changed a table this statement reads; retry the request".into(),
            retry_after: Duration::from_secs(1),
        };
        return (err, Level::Query);
    }
    let code = db.code();
    if *code == SqlState::PROTOCOL_VIOLATION && db.message().starts_with("bind message supplies") {
        // An unnamed statement (transaction pooler mode) sent with the
        // wrong number of values: the caller's bug, and the session lives.
        return (DbError::Query(db.message().to_string()), Level::Query);
    }
    let connection_level = code.code().starts_with("08")
        || code.code().starts_with("28")
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::UNDEFINED_DATABASE;
    if connection_level {
        let err = DbError::Unavailable {
            reason: db.message().to_string(),
            retry_after: Duration::from_secs(1),
        };
        return (err, Level::Connection);
    }
    let err = if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::EXCLUSION_VIOLATION {
        DbError::Conflict {
            constraint: db.constraint().map(str::to_string),
        }
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION
        || *code == SqlState::CHECK_VIOLATION
        || *code == SqlState::NOT_NULL_VIOLATION
    {
        DbError::Constraint {
            constraint: db.constraint().unwrap_or(db.message()).to_string(),
        }
    } else if *code == SqlState::QUERY_CANCELED {
        DbError::Timeout
    } else {
        DbError::Query(db.message().to_string())
    };
    (err, Level::Query)
}

/// The driver's own failures of the connection (its `Kind`s Io, Closed,
/// UnexpectedMessage, Parse, Encode, Tls, Authentication, Connect, Timeout),
/// told apart by the fixed text tokio-postgres gives each kind.
fn is_transport_failure(e: &tokio_postgres::Error) -> bool {
    const TRANSPORT: [&str; 9] = [
        "error communicating with the server",
        "connection closed",
        "unexpected message from server",
        "error parsing response from server",
        "error encoding message to server",
        "error performing TLS handshake",
        "authentication error",
        "error connecting to server",
        "timeout waiting for server",
    ];
    if e.is_closed() {
        return true;
    }
    let text = e.to_string();
    TRANSPORT.iter().any(|t| text.starts_with(t))
}

/// PostgreSQL's answer to a cached statement whose result columns changed
/// type under it (`ALTER COLUMN ... TYPE` by a migration while we run).
pub(crate) fn is_stale_plan(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED
            && db
                .message()
                .contains("cached plan must not change result type")
    })
}
