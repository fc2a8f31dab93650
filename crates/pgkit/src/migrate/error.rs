//! What can go wrong with migrations, each with the one line that fixes it.
//!
//! Every variant names the file, version or setting involved; [`MigrateError::hint`]
//! says what the user should do, so the CLI (and a service binary) can print
//! `error: …` then `hint: …` without knowing the variants.

use std::path::PathBuf;
use std::time::Duration;

use crate::connect::ConnectError;

/// An applied file whose text is no longer what was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub version: i64,
    pub name: String,
    pub applied_checksum: String,
    pub file_checksum: String,
}

/// Where and why a migration (or seed) file failed on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFailure {
    pub name: String,
    /// 1-based line in the file: the server's error position when it gave
    /// one, else the start of the failing statement.
    pub line: u32,
    /// 1-based column, when the server gave a position.
    pub column: Option<u32>,
    /// The server's message, with its SQLSTATE code.
    pub message: String,
    pub code: Option<String>,
    pub detail: Option<String>,
    pub server_hint: Option<String>,
    /// The file ran outside a transaction: statements before the failing
    /// one stay applied.
    pub outside_transaction: bool,
    /// The failing statement came after the file's own `COMMIT`: the file's
    /// transaction, and its tracking row, are committed.
    pub after_commit: bool,
}

impl std::fmt::Display for FileFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.line)?;
        if let Some(c) = self.column {
            write!(f, ":{c}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(code) = &self.code {
            write!(f, " (SQLSTATE {code})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, "; detail: {d}")?;
        }
        if let Some(h) = &self.server_hint {
            write!(f, "; server hint: {h}")?;
        }
        Ok(())
    }
}

/// A migration, seed, bundle or new-file operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{name}: {problem}")]
    BadFileName { name: String, problem: String },

    #[error("{name}: the number in the file name is too large (at most 18 digits)")]
    VersionTooLarge { name: String },

    #[error("{name}: the file is not UTF-8 text")]
    NotUtf8 { name: String },

    #[error("two migration files have number {version}: {first} and {second}")]
    DuplicateVersion {
        version: i64,
        first: String,
        second: String,
    },

    #[error("{name}:{line}: {problem}")]
    TransactionControl {
        name: String,
        line: u32,
        problem: String,
    },

    /// A statement PostgreSQL refuses inside a transaction block, in a file
    /// the runner would run in one (no `-- pgkit:no-transaction` marker).
    #[error("{name}:{line}: {statement} cannot run inside a transaction block, and this file runs in one (it has no `-- pgkit:no-transaction` line)")]
    NeedsNoTransaction {
        name: String,
        line: u32,
        statement: String,
    },

    #[error("{name}:{line}: {message}")]
    Syntax {
        name: String,
        line: u32,
        message: String,
    },

    #[error("invalid schema name {schema:?}: {problem}")]
    InvalidSchema { schema: String, problem: String },

    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: Box<ConnectError>,
    },

    #[error("{context}: {message}")]
    Database { context: String, message: String },

    #[error("another migration runner held the lock for {}s{}", waited.as_secs(), holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    LockTimeout {
        waited: Duration,
        holder: Option<String>,
    },

    #[error("{}", changed_message(files))]
    Changed { files: Vec<ChangedFile> },

    #[error("migration failed at {0}")]
    Failed(Box<FileFailure>),

    /// A file kept running into `lock_timeout` (SQLSTATE 55P03) on every
    /// attempt: some other session holds a lock it needs.
    #[error(
        "migration blocked at {failure}: another session held a lock it needs through {attempts} attempt(s) of lock_timeout {}",
        secs(*lock_timeout)
    )]
    Blocked {
        failure: Box<FileFailure>,
        lock_timeout: Duration,
        attempts: u32,
    },

    /// `up` was stopped by a signal; the running file was cancelled.
    #[error("{0}")]
    Interrupted(Box<super::Interrupted>),

    #[error("seed failed at {0}")]
    SeedFailed(Box<FileFailure>),

    /// `DB_POOLER=transaction`: a transaction pooler keeps no session, so
    /// the runner's advisory lock would lock nothing and its session
    /// settings would be lost between statements.
    #[error("DB_POOLER=transaction: migrations and seeds need a session of their own (an advisory lock, session settings), which a transaction pooler does not keep")]
    ThroughPooler,

    #[error("no migration file has number {version}; numbers present: {known}")]
    UnknownVersion { version: i64, known: String },

    /// `repair` found an edit beyond comments and whitespace (or one it
    /// cannot judge) and was not forced; nothing was changed.
    #[error("not repaired: {} changed beyond comments and whitespace (or cannot be compared); nothing was changed", files.join(", "))]
    RepairRefused { files: Vec<String> },

    #[error("cannot repair {name}: {problem}")]
    RepairTarget { name: String, problem: String },

    /// `migrate new` in a folder numbered by day (`YYYYMMDD`) that has
    /// today's file already: the next number would be tomorrow's date.
    #[error("{existing} already has today's number, and this folder numbers files by day (YYYYMMDD): the next number would be tomorrow's date")]
    DateTaken { existing: String },

    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },

    #[error("invalid migration name {name:?}: {problem}")]
    BadName { name: String, problem: String },
}

fn changed_message(files: &[ChangedFile]) -> String {
    let list: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                "{} (applied with sha256 {}, the file now has sha256 {})",
                f.name, f.applied_checksum, f.file_checksum
            )
        })
        .collect();
    format!(
        "{} applied migration file{} changed since {} ran: {}",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        if files.len() == 1 { "it" } else { "they" },
        list.join("; ")
    )
}

impl MigrateError {
    /// One line telling the user how to fix it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            MigrateError::Io { .. } => "check the path (--dir) and its permissions".into(),
            MigrateError::BadFileName { name, .. } => match super::source::suggested_name(name) {
                Some(better) => format!("rename it to {better}, or move it out of the migrations folder"),
                None => "rename it to NNN_description.sql (for example 007_add_index.sql), or move it out of the migrations folder".into(),
            },
            MigrateError::NeedsNoTransaction { .. } => format!(
                "put `{}` on a line of the header (before the first statement), remove BEGIN/COMMIT, and keep the file to that one statement, written to be safe to re-run (IF NOT EXISTS)",
                super::source::NO_TRANSACTION_MARKER
            ),
            MigrateError::VersionTooLarge { .. } => "use a shorter number, such as 007 or a date like 20251229".into(),
            MigrateError::NotUtf8 { .. } => "save the file as UTF-8".into(),
            MigrateError::DuplicateVersion { second, .. } => {
                format!("give {second} the next free number (`pgkit migrate new` picks one)")
            }
            MigrateError::TransactionControl { .. } => {
                "wrap the whole file in one BEGIN; … COMMIT;, or put `-- pgkit:no-transaction` on a line of its header (before the first statement), remove BEGIN/COMMIT and keep each statement safe to re-run".into()
            }
            MigrateError::Syntax { .. } => {
                "fix the statement at that line (`pgkit lint` reports it too); nothing of the folder was run".into()
            }
            MigrateError::InvalidSchema { .. } => {
                "use a lower-case name of letters, digits and _ (such as public or dave)".into()
            }
            MigrateError::Connect { .. } => {
                "check the database URL (--database-url or DATABASE_URL) and that the server is running; `pgkit doctor` diagnoses it step by step".into()
            }
            MigrateError::Database { .. } => {
                "check that the role may create and write the tracking table (pgkit_migrations) in the schema".into()
            }
            MigrateError::LockTimeout { .. } => {
                "wait for the other runner to finish, or raise --lock-timeout; if none is running, end the session holding the lock (pg_terminate_backend(pid))".into()
            }
            MigrateError::Changed { .. } => {
                "restore the applied file(s) and put the change in a new migration (`pgkit migrate new`); if the edit is only comments or formatting, accept it with `pgkit migrate repair FILE`".into()
            }
            MigrateError::Failed(f) if f.after_commit => format!(
                "{} is applied and recorded (its transaction committed); the statements after its COMMIT, from line {} on, did not run and `up` will not run them again: run them by hand if they matter",
                f.name, f.line
            ),
            MigrateError::Failed(f) if f.outside_transaction => {
                "fix the file and run `up` again: it ran outside a transaction, so statements before the failing one stayed applied and must be safe to re-run".into()
            }
            MigrateError::Failed(f) => format!(
                "fix {} and run `up` again: nothing of it was applied or recorded, and the files before it stay applied",
                f.name
            ),
            MigrateError::Blocked { failure, .. } => format!(
                "{}; find the blocker, often a long or idle-in-transaction session (SELECT pid, state, xact_start, left(query, 60) FROM pg_stat_activity WHERE xact_start < now() - interval '1 minute'; pg_locks shows what each pid holds), let it finish or end it (pg_terminate_backend(pid)), then run `up` again; or raise {} (--ddl-lock-timeout) or {} (--ddl-lock-retries), knowing every query on that table queues behind a waiting ALTER",
                if failure.after_commit {
                    format!("{} is applied and recorded, its statements after COMMIT from line {} on did not run", failure.name, failure.line)
                } else if failure.outside_transaction {
                    format!("statements of {} before line {} stayed applied, nothing was recorded", failure.name, failure.line)
                } else {
                    format!("nothing of {} was applied or recorded", failure.name)
                },
                super::LOCK_TIMEOUT_VAR,
                super::LOCK_RETRIES_VAR
            ),
            MigrateError::Interrupted(i) => match i.outcome {
                super::InterruptOutcome::PartlyApplied => format!(
                    "run `up` again when ready: {} resumes from its first statement, so each must be safe to re-run",
                    i.file.as_deref().unwrap_or("the file")
                ),
                super::InterruptOutcome::Unconfirmed => {
                    "check pg_stat_activity for a statement still running, then run `up` again".into()
                }
                _ => "run `up` again when ready: the interrupted file starts over".into(),
            },
            MigrateError::SeedFailed(f) => format!(
                "fix {} (seeds must be idempotent: INSERT … ON CONFLICT) and run `seed` again",
                f.name
            ),
            MigrateError::ThroughPooler => {
                "point DB_MIGRATE_DSN at a direct connection to the instance (the Cloud SQL socket or private IP, not the pooler), or pass --database-url with one".into()
            }
            MigrateError::UnknownVersion { .. } => "give --to the number of an existing migration file".into(),
            MigrateError::RepairRefused { .. } => {
                "the database still holds what the old statements did, and the new ones would never run: restore the file and put the change in a new migration (`pgkit migrate new`); if the database already matches the file (changed by hand), repair with --force".into()
            }
            MigrateError::RepairTarget { .. } => {
                "name applied files of the folder (`pgkit migrate status` lists them, marking the changed ones)".into()
            }
            MigrateError::DateTaken { existing } => format!(
                "if {existing} is not applied anywhere yet, add the change to it; otherwise write the file tomorrow, or name it by hand with a later number"
            ),
            MigrateError::Exists { .. } => "choose another name, or delete the file if it is unused".into(),
            MigrateError::BadName { .. } => {
                "use letters, digits, spaces, - or _ (such as add_user_email)".into()
            }
        })
    }

    /// Wraps a driver error from a tracking or lock query.
    pub(crate) fn db(context: &str, e: &tokio_postgres::Error) -> MigrateError {
        MigrateError::Database {
            context: context.to_string(),
            message: server_message(e),
        }
    }
}

/// Seconds as people write them: `5s`, `0.2s`, `1.25s`.
pub(crate) fn secs(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}s")
}

/// The server's message for a database error, the driver's otherwise.
pub(crate) fn server_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}
