//! Numbered SQL migrations, run as written, recorded, one runner at a time.
//!
//! Files are `NNN_description.sql` in a directory or built into a binary
//! ([`MigrationSource`]). [`Migrator::up`] takes an advisory lock on its own
//! direct connection, checks that no applied file changed (sha256 with
//! normalised line endings), then runs each pending file statement by
//! statement through the simple query protocol, as `psql -f` would, with its
//! row in `<schema>.pgkit_migrations` inserted in the same transaction. So
//! the same files also work with `psql -f`, and [`Migrator::bundle`] turns
//! them into one self-recording SQL file for `gcloud sql import sql`.
//!
//! The library is clap-free so any service binary can mount its own
//! `migrate up|status|repair|baseline` over its embedded files:
//!
//! ```no_run
//! # async fn f(dsn: pgkit::dsn::Dsn, params: pgkit::connect::SessionParams) -> Result<(), pgkit::migrate::MigrateError> {
//! use pgkit::migrate::{MigrateOptions, MigrationSource, Migrator};
//! static FILES: &[(&str, &str)] = &[("001_init.sql", "CREATE TABLE IF NOT EXISTS t (id int);")];
//! let migrator = Migrator::new(MigrationSource::Embedded(FILES), MigrateOptions::default());
//! migrator.up(&dsn, &params, |event| eprintln!("{event}")).await?;
//! # Ok(()) }
//! ```
//!
//! The runner's session has no `statement_timeout` by default
//! ([`MigrateOptions::statement_timeout`]): `DB_QUERY_TIMEOUT` is meant for a
//! request's query, and a long migration cut half-way helps nobody.
//!
//! It does have a `lock_timeout` (5 s, [`MigrateOptions::ddl_lock_timeout`];
//! [`MigrateOptions::from_env`] reads `DB_MIGRATE_LOCK_TIMEOUT` and
//! `DB_MIGRATE_LOCK_RETRIES`): an `ALTER TABLE` waiting for its lock behind a
//! long transaction holds up every later query on that table, so after that
//! long the file is rolled back and tried again after a pause
//! ([`Event::LockRetry`]), a few times, before `up` fails with
//! [`MigrateError::Blocked`]. The service's queries then wait at most the
//! timeout, a few times, instead of for minutes.

mod bundle;
mod checksum;
mod error;
pub(crate) mod lock;
mod new;
mod repair;
pub(crate) mod runner;
mod source;
pub(crate) mod sql;
mod status;
mod tracking;

use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;

pub use bundle::Bundle;
pub use checksum::{checksum, normalize};
pub use error::{ChangedFile, FileFailure, MigrateError};
pub use lock::lock_key;
pub use new::NewFile;
pub use repair::{Change, RepairCheck};
pub use source::{
    discover, is_sql_name, refusal, suggested_name, version_of, FileRole, Migration,
    MigrationSource, SourceFile, TxMode, NO_TRANSACTION_MARKER,
};
pub(crate) use source::{has_no_transaction_marker, tx_mode as source_tx_mode};
pub use status::{State, Status, StatusEntry};
pub use tracking::{validate_schema, AppliedRow, TABLE};

use crate::connect::SessionParams;
use crate::dsn::Dsn;
use crate::settings::{Env, SettingsError};
use error::secs;
use runner::{Attempt, Failed, Record, RunError, Script, Session, LOCK_NOT_AVAILABLE};
use tracking::Tracking;

/// How the runner behaves; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Schema of the tracking table (created when missing). Default `public`.
    pub schema: String,
    /// How long a runner waits for another one holding the lock before it
    /// gives up. Default 300 s.
    pub lock_timeout: Duration,
    /// `statement_timeout` for the runner's session; `None` (the default)
    /// means no limit.
    pub statement_timeout: Option<Duration>,
    /// `lock_timeout` of the files' statements: how long one may wait for
    /// a table or row lock, while every query that needs the table queues
    /// behind it, before the file is rolled back. Default 5 s
    /// ([`LOCK_TIMEOUT_VAR`]); never unlimited.
    pub ddl_lock_timeout: Duration,
    /// How many more times a file that ran into `ddl_lock_timeout` is
    /// tried. Default 3 ([`LOCK_RETRIES_VAR`]).
    pub ddl_lock_retries: u32,
    /// The pause before the first retry, doubled for each next one (at
    /// most 10 s) and jittered by ±50% so runners on several instances do
    /// not retry in step. Default 0.5 s.
    pub ddl_lock_retry_delay: Duration,
}

/// Seconds each migration statement may wait for a lock.
pub const LOCK_TIMEOUT_VAR: &str = "DB_MIGRATE_LOCK_TIMEOUT";
/// How many times a file that hit the lock timeout is tried again.
pub const LOCK_RETRIES_VAR: &str = "DB_MIGRATE_LOCK_RETRIES";
/// Default of [`MigrateOptions::ddl_lock_timeout`].
pub const DEFAULT_DDL_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`MigrateOptions::ddl_lock_retries`].
pub const DEFAULT_DDL_LOCK_RETRIES: u32 = 3;
/// The longest pause between two attempts, however many retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            schema: "public".into(),
            lock_timeout: Duration::from_secs(300),
            statement_timeout: None,
            ddl_lock_timeout: DEFAULT_DDL_LOCK_TIMEOUT,
            ddl_lock_retries: DEFAULT_DDL_LOCK_RETRIES,
            ddl_lock_retry_delay: Duration::from_millis(500),
        }
    }
}

impl MigrateOptions {
    /// The defaults, with `DB_MIGRATE_LOCK_TIMEOUT` (seconds) and
    /// `DB_MIGRATE_LOCK_RETRIES` from the environment, so every binary that
    /// mounts the migrator reads them the same way.
    pub fn from_env(env: &Env) -> Result<MigrateOptions, SettingsError> {
        let timeout = env.seconds_or(LOCK_TIMEOUT_VAR, DEFAULT_DDL_LOCK_TIMEOUT.as_secs_f64())?;
        check_lock_timeout(timeout).map_err(|problem| {
            SettingsError::new(LOCK_TIMEOUT_VAR, problem, LOCK_TIMEOUT_ACCEPTED)
        })?;
        let retries = env.parse_or(
            LOCK_RETRIES_VAR,
            DEFAULT_DDL_LOCK_RETRIES,
            "a whole number of retries, 0 or more, such as 3",
        )?;
        Ok(MigrateOptions {
            ddl_lock_timeout: timeout,
            ddl_lock_retries: retries,
            ..MigrateOptions::default()
        })
    }
}

/// What a lock timeout may be, for error messages.
pub const LOCK_TIMEOUT_ACCEPTED: &str =
    "a number of seconds greater than 0 and at most 2147483 (PostgreSQL's limit), such as 5";

/// Refuses a lock timeout PostgreSQL would not take (at most i32::MAX ms),
/// or one that rounds to no limit.
pub fn check_lock_timeout(timeout: Duration) -> Result<(), String> {
    if timeout.as_millis() < 1 {
        Err(format!("{} is less than a millisecond", secs(timeout)))
    } else if timeout.as_millis() > i32::MAX as u128 {
        Err(format!(
            "{} is more than PostgreSQL accepts for lock_timeout",
            secs(timeout)
        ))
    } else {
        Ok(())
    }
}

/// Progress, for a CLI to print (on stderr) or a service to log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Another runner holds the lock; this one waits (said again every few seconds).
    WaitingForLock {
        waited: Duration,
        timeout: Duration,
        holder: Option<String>,
    },
    /// A file starts.
    Applying { name: String },
    /// A statement of the file waited `lock_timeout` for a lock another
    /// session holds: the file was rolled back (a no-transaction file keeps
    /// the statements before it and resumes there) and runs again after
    /// `delay`.
    LockRetry {
        name: String,
        line: u32,
        /// The statement's first line, to say which lock it wanted.
        statement: String,
        lock_timeout: Duration,
        retry: u32,
        retries: u32,
        delay: Duration,
    },
    /// A file and its tracking row were committed.
    Applied { name: String, elapsed: Duration },
    /// The server sent a NOTICE (or WARNING) while a file ran.
    Notice {
        name: String,
        severity: String,
        message: String,
    },
    /// A recorded version has no file (an older checkout?); `up` carries on.
    Missing { version: i64, name: String },
    /// `repair` compared a file with its text as applied: what changed.
    RepairCheck(RepairCheck),
    /// `repair` accepted a changed file's checksum.
    Repaired(ChangedFile),
    /// `baseline` recorded a file as applied without running it.
    Baselined { version: i64, name: String },
    /// Nothing was pending.
    UpToDate { applied: usize },
    /// Seed files of `data/` were not run: the environment is not `test`.
    DataSkipped { files: usize, environment: String },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::WaitingForLock {
                waited,
                timeout,
                holder,
            } => write!(
                f,
                "waiting for the migration lock{} ({}s of at most {}s)",
                holder
                    .as_ref()
                    .map(|h| format!(", held by {h}"))
                    .unwrap_or_default(),
                waited.as_secs(),
                timeout.as_secs()
            ),
            Event::Applying { name } => write!(f, "applying {name}"),
            Event::LockRetry {
                name,
                line,
                statement,
                lock_timeout,
                retry,
                retries,
                delay,
            } => write!(
                f,
                "  {name}:{line}: waited lock_timeout {} for a lock another session holds ({statement}); rolled back, retry {retry} of {retries} in {:.1}s",
                secs(*lock_timeout),
                delay.as_secs_f64()
            ),
            Event::Applied { name, elapsed } => {
                write!(f, "applied {name} in {} ms", elapsed.as_millis())
            }
            Event::Notice {
                name,
                severity,
                message,
            } => write!(f, "  {name}: {severity}: {message}"),
            Event::Missing { version, name } => write!(
                f,
                "warning: {name} (version {version}) is recorded as applied but no file has that number"
            ),
            Event::RepairCheck(c) => write!(f, "{c}"),
            Event::Repaired(c) => write!(
                f,
                "repaired {}: recorded sha256 {} replaced by {}",
                c.name, c.applied_checksum, c.file_checksum
            ),
            Event::Baselined { name, .. } => write!(f, "recorded {name} as applied (not run)"),
            Event::UpToDate { applied } => {
                write!(f, "database is up to date ({applied} migration(s) applied)")
            }
            Event::DataSkipped { files, environment } => write!(
                f,
                "skipped {files} test-data file(s): APP_ENVIRONMENT is {environment}, not test"
            ),
        }
    }
}

/// The signal that stopped a run, as the caller's `stop` future reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT (Ctrl-C): exit 130, as shells report it.
    Interrupt,
    /// SIGTERM: exit 143.
    Terminate,
}

impl Stop {
    /// The exit status a shell shows for a process this signal ended (128 + its number).
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }
}

/// How long each clean-up step after an interrupt may take (cancel request,
/// rollback, unlock): the process must end within seconds of Ctrl-C.
const STOP_BOUND: Duration = Duration::from_millis(1500);

/// What an interrupt left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptOutcome {
    /// No file was running (waiting for the lock, or between files).
    NothingRunning,
    /// The running file's statement was cancelled and its transaction rolled back.
    RolledBack,
    /// The file runs outside a transaction (`-- pgkit:no-transaction`):
    /// statements before the cancelled one stay applied; it is not recorded.
    PartlyApplied,
    /// The file had committed (with its tracking row) before the interrupt.
    Committed,
    /// The server did not answer in time: the connection was closed, and the
    /// server rolls the transaction back when it notices.
    Unconfirmed,
}

/// An interrupted `up`: which signal, which file, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub signal: Stop,
    pub file: Option<String>,
    pub outcome: InterruptOutcome,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}", self.signal.name())?;
        let file = self.file.as_deref().unwrap_or("");
        match self.outcome {
            InterruptOutcome::NothingRunning => {
                write!(f, " before any file ran; the migration lock is released")
            }
            InterruptOutcome::RolledBack => write!(
                f,
                ": {file} was rolled back (its running statement cancelled); nothing of it is applied or recorded, and the migration lock is released"
            ),
            InterruptOutcome::PartlyApplied => write!(
                f,
                ": {file} runs outside a transaction; its running statement was cancelled, the statements before it stay applied, it is not recorded; the migration lock is released"
            ),
            InterruptOutcome::Committed => write!(
                f,
                ": {file} had committed and is recorded; the migration lock is released"
            ),
            InterruptOutcome::Unconfirmed => write!(
                f,
                ": {file} was being rolled back (cancel sent) but the server did not confirm it in time; the connection is closed, so the server rolls it back and releases the lock when it notices"
            ),
        }
    }
}

/// What `up` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpReport {
    /// Files run now, in order, with their time.
    pub applied: Vec<(String, Duration)>,
    /// Files that were already applied.
    pub already_applied: usize,
}

/// The migration engine over one source.
#[derive(Debug, Clone)]
pub struct Migrator {
    source: MigrationSource,
    options: MigrateOptions,
}

impl Migrator {
    pub fn new(source: MigrationSource, options: MigrateOptions) -> Migrator {
        Migrator { source, options }
    }

    pub fn options(&self) -> &MigrateOptions {
        &self.options
    }

    /// The source's migrations, in order (no database needed).
    pub fn migrations(&self) -> Result<Vec<Migration>, MigrateError> {
        discover(&self.source)
    }

    fn tracking(&self) -> Result<Tracking, MigrateError> {
        Tracking::new(&self.options.schema)
    }

    fn key(&self) -> i64 {
        lock_key(&format!("pgkit_migrations:{}", self.options.schema))
    }

    async fn open_locked(
        &self,
        dsn: &Dsn,
        params: &SessionParams,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Session, MigrateError> {
        let session = Session::open(dsn, params, self.options.statement_timeout).await?;
        lock::acquire(
            &session.client,
            self.key(),
            self.options.lock_timeout,
            |w| {
                on_event(&Event::WaitingForLock {
                    waited: w.waited,
                    timeout: w.timeout,
                    holder: w.holder,
                })
            },
        )
        .await?;
        Ok(session)
    }

    /// Applies every pending file, in order, under the lock. Stops at an
    /// applied file that changed (before running anything) and at the first
    /// failing file (the ones before it stay applied).
    pub async fn up(
        &self,
        dsn: &Dsn,
        params: &SessionParams,
        on_event: impl FnMut(&Event) + Send,
    ) -> Result<UpReport, MigrateError> {
        self.up_until(dsn, params, on_event, std::future::pending())
            .await
    }

    /// [`Migrator::up`], stopped cleanly when `stop` completes (a CLI passes
    /// its SIGINT/SIGTERM): the running statement gets a cancel request,
    /// the file's transaction is rolled back and the lock released, so
    /// nothing keeps running on the server holding locks with no runner
    /// behind it. Returns [`MigrateError::Interrupted`] naming the file.
    pub async fn up_until(
        &self,
        dsn: &Dsn,
        params: &SessionParams,
        mut on_event: impl FnMut(&Event) + Send,
        stop: impl std::future::Future<Output = Stop> + Send,
    ) -> Result<UpReport, MigrateError> {
        let migrations = self.migrations()?;
        let tracking = self.tracking()?;
        tokio::pin!(stop);
        // The file running now, as the events tell it.
        let current: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let mut on_event = |e: &Event| {
            match e {
                Event::Applying { name } => {
                    *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.clone())
                }
                Event::Applied { .. } => *current.lock().unwrap_or_else(|p| p.into_inner()) = None,
                _ => {}
            }
            on_event(e)
        };
        // Stopped before the lock is held: the connection (and any lock it
        // just took) goes with the dropped future.
        let mut session = tokio::select! {
            session = self.open_locked(dsn, params, &mut on_event) => session?,
            signal = &mut stop => {
                return Err(MigrateError::Interrupted(Box::new(Interrupted {
                    signal,
                    file: None,
                    outcome: InterruptOutcome::NothingRunning,
                })))
            }
        };
        let outcome = {
            let apply = self.apply_pending(&mut session, &tracking, &migrations, &mut on_event);
            tokio::select! {
                result = apply => Ok(result),
                signal = &mut stop => Err(signal),
            }
        };
        let signal = match outcome {
            Ok(result) => {
                lock::release(&session.client, self.key()).await;
                return result;
            }
            Err(signal) => signal,
        };
        let file = current.lock().unwrap_or_else(|p| p.into_inner()).take();
        let outcome = self
            .stop_running(dsn, &mut session, &tracking, &migrations, file.as_deref())
            .await;
        Err(MigrateError::Interrupted(Box::new(Interrupted {
            signal,
            file,
            outcome,
        })))
    }

    /// After an interrupt: cancels the running statement, rolls back,
    /// releases the lock, each bounded so a dead server cannot hold the
    /// exit; then says what became of the file.
    async fn stop_running(
        &self,
        dsn: &Dsn,
        session: &mut Session,
        tracking: &Tracking,
        migrations: &[Migration],
        file: Option<&str>,
    ) -> InterruptOutcome {
        let Some(name) = file else {
            lock::release(&session.client, self.key()).await;
            return InterruptOutcome::NothingRunning;
        };
        let bound = STOP_BOUND;
        crate::connect::cancel(dsn, session.client.cancel_token(), bound).await;
        // Queued behind the cancelled statement: runs once its error is in.
        let rolled_back = tokio::time::timeout(bound, session.client.batch_execute("ROLLBACK"))
            .await
            .is_ok_and(|r| r.is_ok());
        if !rolled_back {
            // The connection is dropped with the session: the server ends
            // the transaction and the lock when it notices.
            return InterruptOutcome::Unconfirmed;
        }
        let _ = tokio::time::timeout(bound, lock::release(&session.client, self.key())).await;
        let migration = migrations.iter().find(|m| m.name == name);
        let recorded = match tokio::time::timeout(bound, tracking.applied(&session.client)).await {
            Ok(Ok(rows)) => migration.is_some_and(|m| rows.iter().any(|r| r.version == m.version)),
            _ => false,
        };
        if recorded {
            InterruptOutcome::Committed
        } else if migration.is_some_and(|m| m.mode == TxMode::NoTransaction) {
            InterruptOutcome::PartlyApplied
        } else {
            InterruptOutcome::RolledBack
        }
    }

    async fn apply_pending(
        &self,
        session: &mut Session,
        tracking: &Tracking,
        migrations: &[Migration],
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<UpReport, MigrateError> {
        tracking.ensure(&session.client).await?;
        let applied = tracking.applied(&session.client).await?;
        let entries = status::compare(migrations, &applied);
        let changed = Status {
            schema: tracking.schema().into(),
            tracking_table: true,
            migrations: entries.clone(),
        }
        .changed();
        if !changed.is_empty() {
            return Err(MigrateError::Changed { files: changed });
        }
        for e in entries.iter().filter(|e| e.state == State::Missing) {
            on_event(&Event::Missing {
                version: e.version,
                name: e.name.clone(),
            });
        }
        let mut report = UpReport {
            applied: Vec::new(),
            already_applied: entries.iter().filter(|e| e.state == State::Applied).count(),
        };
        for m in migrations {
            if !entries
                .iter()
                .any(|e| e.version == m.version && e.state == State::Pending)
            {
                continue;
            }
            let elapsed = apply_one(session, tracking, m, &self.options, on_event).await?;
            report.applied.push((m.name.clone(), elapsed));
        }
        if report.applied.is_empty() {
            on_event(&Event::UpToDate {
                applied: report.already_applied,
            });
        }
        Ok(report)
    }

    /// Files, tracking rows, and how they compare. Takes no lock and
    /// creates nothing.
    pub async fn status(&self, dsn: &Dsn, params: &SessionParams) -> Result<Status, MigrateError> {
        let migrations = self.migrations()?;
        let tracking = self.tracking()?;
        let session = Session::open(dsn, params, self.options.statement_timeout).await?;
        let exists = tracking.exists(&session.client).await?;
        let applied = tracking.applied(&session.client).await?;
        Ok(Status {
            schema: tracking.schema().into(),
            tracking_table: exists,
            migrations: status::compare(&migrations, &applied),
        })
    }

    /// Accepts the current checksum of the applied files named (by file
    /// name or path; none names every changed file), after showing what
    /// changed in each ([`Event::RepairCheck`]). An edit beyond comments and
    /// whitespace, or one that cannot be told (a row from before pgkit kept
    /// the applied text), is refused unless `force`; then nothing is
    /// changed. Returns what it accepted.
    pub async fn repair(
        &self,
        dsn: &Dsn,
        params: &SessionParams,
        files: &[String],
        force: bool,
        mut on_event: impl FnMut(&Event) + Send,
    ) -> Result<Vec<ChangedFile>, MigrateError> {
        let migrations = self.migrations()?;
        let tracking = self.tracking()?;
        let session = self.open_locked(dsn, params, &mut on_event).await?;
        let result = async {
            tracking.ensure(&session.client).await?;
            let applied = tracking.applied(&session.client).await?;
            let checks = repair_checks(&migrations, &applied, files)?;
            for check in &checks {
                on_event(&Event::RepairCheck(check.clone()));
            }
            let unsafe_ones: Vec<String> = checks
                .iter()
                .filter(|c| !c.is_safe())
                .map(|c| c.name.clone())
                .collect();
            if !force && !unsafe_ones.is_empty() {
                return Err(MigrateError::RepairRefused { files: unsafe_ones });
            }
            let mut repaired = Vec::new();
            for c in checks.iter().filter(|c| c.change != Change::Unchanged) {
                let m = migrations
                    .iter()
                    .find(|m| m.version == c.version)
                    .expect("a check is made for a file of the folder");
                tracking
                    .repair(
                        &session.client,
                        c.version,
                        &c.name,
                        &c.file_checksum,
                        &m.sql,
                    )
                    .await?;
                let changed = ChangedFile {
                    version: c.version,
                    name: c.name.clone(),
                    applied_checksum: c.applied_checksum.clone(),
                    file_checksum: c.file_checksum.clone(),
                };
                on_event(&Event::Repaired(changed.clone()));
                repaired.push(changed);
            }
            Ok::<_, MigrateError>(repaired)
        }
        .await;
        lock::release(&session.client, self.key()).await;
        result
    }

    /// Records every file numbered up to `to` as applied, without running
    /// it: for a database built earlier by hand, by `psql -f`, or by
    /// `gcloud sql import`. Files already recorded are left alone.
    pub async fn baseline(
        &self,
        dsn: &Dsn,
        params: &SessionParams,
        to: i64,
        mut on_event: impl FnMut(&Event) + Send,
    ) -> Result<Vec<i64>, MigrateError> {
        let migrations = self.migrations()?;
        if !migrations.iter().any(|m| m.version == to) {
            let known: Vec<String> = migrations.iter().map(|m| m.version.to_string()).collect();
            return Err(MigrateError::UnknownVersion {
                version: to,
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        }
        let tracking = self.tracking()?;
        let session = self.open_locked(dsn, params, &mut on_event).await?;
        let result = async {
            tracking.ensure(&session.client).await?;
            let applied = tracking.applied(&session.client).await?;
            let mut recorded = Vec::new();
            for m in migrations.iter().filter(|m| m.version <= to) {
                if applied.iter().any(|r| r.version == m.version) {
                    continue;
                }
                tracking
                    .insert(&session.client, m.version, &m.name, &m.checksum, 0, &m.sql)
                    .await
                    .map_err(|e| MigrateError::db(&format!("cannot record {}", m.name), &e))?;
                on_event(&Event::Baselined {
                    version: m.version,
                    name: m.name.clone(),
                });
                recorded.push(m.version);
            }
            Ok::<_, MigrateError>(recorded)
        }
        .await;
        lock::release(&session.client, self.key()).await;
        result
    }

    /// One SQL file that applies and records every migration when missing.
    pub fn bundle(&self) -> Result<Bundle, MigrateError> {
        Ok(bundle::bundle(
            &self.migrations()?,
            &self.tracking()?,
            self.key(),
        ))
    }
}

/// The files `repair` was asked about, each compared with its row: the
/// named ones (all must be applied files of the folder), or every changed
/// one when none is named.
fn repair_checks(
    migrations: &[Migration],
    applied: &[AppliedRow],
    files: &[String],
) -> Result<Vec<RepairCheck>, MigrateError> {
    let row_of = |m: &Migration| applied.iter().find(|r| r.version == m.version);
    if files.is_empty() {
        return Ok(migrations
            .iter()
            .filter_map(|m| row_of(m).map(|r| RepairCheck::new(m, r)))
            .filter(|c| c.change != Change::Unchanged)
            .collect());
    }
    let mut checks = Vec::new();
    for file in files {
        let name = file.rsplit('/').next().unwrap_or(file);
        let m = migrations.iter().find(|m| m.name == name).ok_or_else(|| {
            MigrateError::RepairTarget {
                name: name.to_string(),
                problem: "no migration file of that name in the folder".into(),
            }
        })?;
        let row = row_of(m).ok_or_else(|| MigrateError::RepairTarget {
            name: name.to_string(),
            problem: "it is not applied, so there is nothing to repair (`up` runs it)".into(),
        })?;
        checks.push(RepairCheck::new(m, row));
    }
    Ok(checks)
}

/// Runs one migration with its tracking row, reporting progress, and tries
/// it again when a statement runs into the lock timeout.
async fn apply_one(
    session: &mut Session,
    tracking: &Tracking,
    m: &Migration,
    options: &MigrateOptions,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<Duration, MigrateError> {
    on_event(&Event::Applying {
        name: m.name.clone(),
    });
    let script = Script {
        name: &m.name,
        sql: &m.sql,
        statements: &m.statements,
        mode: &m.mode,
    };
    let record = Record {
        tracking,
        version: m.version,
        checksum: &m.checksum,
    };
    let mut attempt = Attempt {
        from: 0,
        lock_timeout: Some(options.ddl_lock_timeout),
    };
    let mut retry = 0;
    loop {
        let mut forward = |n: crate::connect::Notice| {
            on_event(&Event::Notice {
                name: m.name.clone(),
                severity: n.severity,
                message: n.message,
            })
        };
        let outcome =
            runner::run_attempt(session, &script, Some(&record), &mut forward, &attempt).await;
        let (failure, statement) = match outcome {
            Ok(elapsed) => {
                on_event(&Event::Applied {
                    name: m.name.clone(),
                    elapsed,
                });
                return Ok(elapsed);
            }
            Err(Failed {
                error: RunError::File(f),
                statement,
            }) if f.code.as_deref() == Some(LOCK_NOT_AVAILABLE) => (f, statement),
            Err(Failed {
                error: RunError::File(f),
                ..
            }) => return Err(MigrateError::Failed(Box::new(f))),
            Err(Failed {
                error: RunError::Record(e),
                ..
            }) => return Err(e),
        };
        // A file in a transaction was rolled back whole: run it again from
        // the top. A no-transaction file kept the statements before the
        // failing one (committed each on its own) and resumes at it; the
        // failing statement itself did nothing, a statement being atomic.
        // A statement after the file's own COMMIT: the transaction and its
        // row are committed, so only the statements from it on run again.
        let resume_at = match (&m.mode, statement) {
            (TxMode::NoTransaction, Some(i)) => Some(i),
            (TxMode::Own { commit, .. }, Some(i)) if i > *commit => Some(i),
            (TxMode::NoTransaction, None) => None,
            _ => Some(0),
        };
        let Some(from) = resume_at.filter(|_| retry < options.ddl_lock_retries) else {
            return Err(MigrateError::Blocked {
                failure: Box::new(failure),
                lock_timeout: options.ddl_lock_timeout,
                attempts: retry + 1,
            });
        };
        retry += 1;
        let delay = retry_delay(options.ddl_lock_retry_delay, retry);
        on_event(&Event::LockRetry {
            name: m.name.clone(),
            line: failure.line,
            statement: statement
                .map(|i| first_line(&m.sql[m.statements[i].range.clone()]))
                .unwrap_or_default(),
            lock_timeout: options.ddl_lock_timeout,
            retry,
            retries: options.ddl_lock_retries,
            delay,
        });
        tokio::time::sleep(delay).await;
        attempt.from = from;
    }
}

/// The pause before retry `n` (1-based): `base` doubled each time, capped,
/// times a random factor in [0.5, 1.5).
fn retry_delay(base: Duration, n: u32) -> Duration {
    use rand::Rng;
    let doubled = base.saturating_mul(1u32 << (n - 1).min(16));
    doubled
        .min(MAX_RETRY_DELAY)
        .mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// A statement's first line, shortened, for a progress line.
fn first_line(statement: &str) -> String {
    let line = statement.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// Writes the next numbered migration file in `dir` from the standard's
/// template, dated `today`; returns its path.
pub fn new_file(
    dir: &std::path::Path,
    file: &NewFile,
    today: NaiveDate,
) -> Result<std::path::PathBuf, MigrateError> {
    new::create(dir, file, today)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Result<MigrateOptions, SettingsError> {
        MigrateOptions::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn the_lock_timeout_and_retries_come_from_the_environment() {
        let defaults = options(&[]).unwrap();
        assert_eq!(defaults.ddl_lock_timeout, Duration::from_secs(5));
        assert_eq!(defaults.ddl_lock_retries, 3);
        let set = options(&[(LOCK_TIMEOUT_VAR, "0.25"), (LOCK_RETRIES_VAR, "0")]).unwrap();
        assert_eq!(set.ddl_lock_timeout, Duration::from_millis(250));
        assert_eq!(set.ddl_lock_retries, 0);
        for (var, bad) in [
            (LOCK_TIMEOUT_VAR, "0"),
            (LOCK_TIMEOUT_VAR, "soon"),
            (LOCK_TIMEOUT_VAR, "0.0001"),
            (LOCK_TIMEOUT_VAR, "3000000"),
            (LOCK_RETRIES_VAR, "-1"),
            (LOCK_RETRIES_VAR, "many"),
        ] {
            let err = options(&[(var, bad)]).unwrap_err();
            assert_eq!(err.variable, var, "{bad}");
        }
    }

    #[test]
    fn retry_pauses_double_with_jitter_and_stay_bounded() {
        let base = Duration::from_millis(400);
        for n in 1..=3u32 {
            let nominal = base * 2u32.pow(n - 1);
            let d = retry_delay(base, n);
            assert!(d >= nominal / 2 && d < nominal * 3 / 2, "{n}: {d:?}");
        }
        assert!(retry_delay(base, 40) < MAX_RETRY_DELAY * 3 / 2);
    }

    #[test]
    fn a_retry_line_says_where_what_and_when() {
        let e = Event::LockRetry {
            name: "003_add_email.sql".into(),
            line: 4,
            statement: "ALTER TABLE users ADD COLUMN email text;".into(),
            lock_timeout: Duration::from_secs(5),
            retry: 1,
            retries: 3,
            delay: Duration::from_millis(420),
        };
        assert_eq!(
            e.to_string(),
            "  003_add_email.sql:4: waited lock_timeout 5s for a lock another session holds \
             (ALTER TABLE users ADD COLUMN email text;); rolled back, retry 1 of 3 in 0.4s"
        );
        assert_eq!(first_line(&"x".repeat(100)).chars().count(), 81);
    }
}
