//! Running a parsed command line, and what the subcommands share: the
//! database settings, progress on stderr, and turning an error into the
//! one line that tells the user how to fix it.

mod audit;
mod bundle;
mod doctor;
mod lint;
mod local;
pub mod migrate;
mod provision;
pub mod seed;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pgkit::connect::SessionParams;
use pgkit::dsn::{Dsn, DsnError};
use pgkit::migrate::{Event, MigrateError};
use pgkit::settings::{DbSettings, Env, SettingsError};

use crate::cli::{Cli, Command, DbArgs, Environment, OutputFormat, RunArgs};

/// Runs the command; an error means exit code 1.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Migrate(args) => migrate::run_pgkit(args).await,
            Command::Seed(args) => seed::run_pgkit(args).await,
            Command::Bundle(args) => bundle::run(args),
            Command::Local(args) => local::run(args).await,
            Command::Lint(args) => lint::run(args),
            Command::Audit(args) => audit::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Provision(args) => provision::run(args).await,
        }
    })
}

/// Standard output was closed by its reader (`pgkit lint | head -1`): the
/// program stops quietly, like every Unix tool killed by SIGPIPE.
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
pub struct ClosedPipe;

/// Ends the run quietly with this exit code: what was to be said is on
/// stdout already (`pgkit local status` exits 3 when nothing runs, like
/// `pg_ctl status`).
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
pub struct QuietExit(pub u8);

/// Writes `text` to stdout and flushes it: the one way the commands print
/// results. A reader that went away becomes [`ClosedPipe`] (main exits
/// quietly), never a panic as with `print!`.
pub fn out(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match write!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// [`out`] with a newline.
pub fn outln(text: impl std::fmt::Display) -> anyhow::Result<()> {
    out(format_args!("{text}\n"))
}

/// A failure the user can fix, with the one line that says how.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub message: String,
    pub how: String,
}

impl UserError {
    pub fn new(message: impl Into<String>, how: impl Into<String>) -> UserError {
        UserError {
            message: message.into(),
            how: how.into(),
        }
    }
}

/// Prints a `lint` or `audit` report in the form asked for. When it has
/// error findings (`errors` holds its summary line) the run fails, exit 1,
/// with `command: summary` and `how` to fix them.
fn print_report(
    command: &str,
    format: OutputFormat,
    text: impl FnOnce() -> String,
    json: impl FnOnce() -> serde_json::Value,
    errors: Option<String>,
    how: &str,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Text => out(text())?,
        OutputFormat::Json => outln(serde_json::to_string_pretty(&json())?)?,
    }
    match errors {
        Some(summary) => Err(UserError::new(format!("{command}: {summary}"), how).into()),
        None => Ok(()),
    }
}

/// The error and its causes on one line, each cause once.
pub fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The binary a command runs in, as its errors name it: `pgkit`, or a
/// service that mounts pgkit's `migrate` and `seed` (`dave`).
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// The binary's name: hints say `{name} migrate repair FILE`.
    pub name: &'static str,
    /// Where its database URL comes from, as a failed connection's hint says.
    pub database: &'static str,
    /// The hint for an error that has no fix of its own to suggest.
    pub fallback_hint: Option<&'static str>,
}

impl Program {
    pub const PGKIT: Program = Program {
        name: "pgkit",
        database: "--database-url or DATABASE_URL",
        fallback_hint: Some(
            "run the command again with RUST_LOG=debug for details, or see its --help",
        ),
    };
}

/// Prints a failed command's `error:` line and `hint:` line on stderr, and
/// picks the exit code: 1 for a failure the user can fix; 130 (SIGINT) or
/// 143 (SIGTERM) when `migrate up` was stopped by that signal, after it
/// cancelled and rolled back the running file; 141, quietly, when standard
/// output was closed by its reader (as a shell reports SIGPIPE); a
/// `QuietExit`'s own code (`pgkit local status`).
pub fn report(result: anyhow::Result<()>, program: &Program) -> ExitCode {
    let e = match result {
        Ok(()) => return ExitCode::SUCCESS,
        Err(e) => e,
    };
    // The reader of stdout went away (`pgkit lint | head -1`): stop
    // quietly with the status a shell shows for SIGPIPE (128 + 13).
    if e.is::<ClosedPipe>() {
        return ExitCode::from(141);
    }
    if let Some(QuietExit(code)) = e.downcast_ref() {
        return ExitCode::from(*code);
    }
    eprintln!("error: {}", message(&e));
    if let Some(how) = hint(&e, program).or(program.fallback_hint.map(String::from)) {
        eprintln!("hint: {how}");
    }
    // Stopped by Ctrl-C or SIGTERM, after cleaning up: the status a shell
    // shows for that signal.
    match e.downcast_ref::<MigrateError>() {
        Some(MigrateError::Interrupted(i)) => ExitCode::from(i.signal.exit_code()),
        _ => ExitCode::from(1),
    }
}

/// What the user should do about it, in `program`'s words; `None` when
/// the error has no fix of its own to suggest.
pub fn hint(e: &anyhow::Error, program: &Program) -> Option<String> {
    for cause in e.chain() {
        if let Some(u) = cause.downcast_ref::<UserError>() {
            return Some(u.how.clone());
        }
        if let Some(m) = cause.downcast_ref::<MigrateError>() {
            if let Some(h) = migrate_hint(m, program) {
                return Some(h);
            }
        }
        if let Some(s) = cause.downcast_ref::<SettingsError>() {
            return Some(format!("set {} to {}", s.variable, s.accepted));
        }
        if cause.downcast_ref::<pgkit::local::LocalError>().is_some() {
            return Some(
                "the message above names the fix; `pgkit local status` shows the cluster's state"
                    .into(),
            );
        }
    }
    None
}

/// pgkit's hint for a migration error, except where it names a command:
/// there the program's own (`dave migrate repair FILE` in dave). The tools
/// only pgkit has (`pgkit migrate new`, `pgkit lint`, `pgkit doctor`) keep
/// pgkit's name.
fn migrate_hint(m: &MigrateError, program: &Program) -> Option<String> {
    let name = program.name;
    Some(match m {
        MigrateError::Changed { .. } => format!(
            "restore the applied file(s) and put the change in a new migration (`pgkit migrate new`); if the edit is only comments or formatting, accept it with `{name} migrate repair FILE`"
        ),
        MigrateError::RepairTarget { .. } => format!(
            "name applied migration files (`{name} migrate status` lists them, marking the changed ones)"
        ),
        MigrateError::Connect { .. } => format!(
            "check the database URL ({}) and that the server is running; `pgkit doctor` diagnoses it step by step",
            program.database
        ),
        _ => return m.hint(),
    })
}

/// The DSN and session settings: --database-url / DATABASE_URL, then the
/// DB_* and APP_ENVIRONMENT variables (and .env), as every service reads them.
/// The DSN and session settings of a command. With `DB_IAM_AUTH=true` the
/// password is an IAM access token from the environment's credentials
/// (metadata server on Cloud Run, Application Default Credentials on a
/// laptop), fetched once for the command.
pub async fn connection(
    db: &DbArgs,
    environment: Option<Environment>,
) -> anyhow::Result<(Dsn, SessionParams)> {
    let env = Env::from_process()?;
    // Operator work wants a session of its own: DB_MIGRATE_DSN when set.
    let mut settings = DbSettings::from_env(&env, "DATABASE_URL", "pgkit")?.for_migrations();
    // clap fills the flag from DATABASE_URL too; that one is the
    // service's, already read above. A URL given on the command line is
    // taken as a direct connection.
    let flag = db
        .database_url
        .as_deref()
        .filter(|url| env.get("DATABASE_URL") != Some(*url));
    if let Some(url) = flag {
        let dsn = Dsn::parse(url).map_err(|e: DsnError| {
            UserError::new(
                format!("invalid --database-url: {e}"),
                format!("give a URL of the form {}", DsnError::accepted_form()),
            )
        })?;
        settings.dsn = Some(dsn);
        settings.pooler = pgkit::pooler::Pooler::None;
    }
    if settings.dsn.is_none() {
        if let Some(url) = standard_dsn(&env)? {
            settings.dsn = Some(Dsn::parse(url.expose()).map_err(|e: DsnError| {
                UserError::new(
                    format!("invalid {STANDARD_DSN_VAR}: {e}"),
                    format!("give a URL of the form {}", DsnError::accepted_form()),
                )
            })?);
        }
    }
    let mut dsn = settings.dsn.clone().ok_or_else(no_database_url)?;
    if settings.iam_auth {
        let token = pgkit::iam::token_source_from_env(&env)
            .map_err(|e| UserError::new(format!("DB_IAM_AUTH=true but {e}"), "run `gcloud auth application-default login`, or run on Cloud Run with a service account"))?
            .token()
            .await
            .map_err(|e| UserError::new(format!("cannot get an IAM access token: {e}"), "check the service account's roles/cloudsql.instanceUser and the credentials"))?;
        dsn = dsn.with_password(Some(token));
    }
    let mut params = SessionParams::from_settings(&settings);
    if let Some(e) = environment {
        params.environment = environment_name(e).into();
    }
    Ok((dsn, params))
}

/// The standard's name for a service's database URL; pgkit reads it when
/// DATABASE_URL (pgkit's own, and every service's here) is not set.
pub const STANDARD_DSN_VAR: &str = "DAVE_DB_DSN";

/// `DAVE_DB_DSN` (or `DAVE_DB_DSN_FILE`), when set.
pub fn standard_dsn(env: &Env) -> anyhow::Result<Option<pgkit::secret::Secret>> {
    Ok(env.secret(STANDARD_DSN_VAR)?)
}

/// The one message for a command that found no database URL anywhere.
pub fn no_database_url() -> UserError {
    UserError::new(
        "no database URL: neither --database-url nor DATABASE_URL (nor DAVE_DB_DSN) is set",
        "pass the URL (postgresql://USER:PASSWORD@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE), or set DATABASE_URL (or DATABASE_URL_FILE)",
    )
}

/// The session's `app.environment` for the flag's value.
pub fn environment_name(e: Environment) -> &'static str {
    match e {
        Environment::Development => "development",
        Environment::Test => "test",
        Environment::Staging => "staging",
        Environment::Production => "production",
    }
}

/// The one check, and the one message, for a migrations folder that is not
/// there: `migrate`, `seed`, `bundle` and `lint` alike.
pub fn migrations_folder(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(UserError::new(
        format!(
            "migrations folder {} does not exist or is not a folder",
            dir.display()
        ),
        "pass --dir (or set PGKIT_MIGRATIONS_DIR) with the folder that holds the NNN_description.sql files",
    )
    .into())
}

/// Seconds from a flag, checked.
pub fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !value.is_finite() || !(0.0..=1e9).contains(&value) {
        return Err(UserError::new(
            format!("invalid --{flag}: {value} is out of range"),
            format!("give --{flag} a number of seconds, 0 or more"),
        )
        .into());
    }
    Ok(Duration::from_secs_f64(value))
}

/// Lock and statement timeouts from the flags (statement timeout 0 = none).
pub fn timeouts(run: &RunArgs) -> anyhow::Result<(Duration, Option<Duration>)> {
    let lock = seconds("lock-timeout", run.lock_timeout)?;
    let statement = seconds("statement-timeout", run.statement_timeout)?;
    Ok((lock, (!statement.is_zero()).then_some(statement)))
}

/// Prints progress on stderr, one line per event.
pub fn progress(event: &Event) {
    eprintln!("{event}");
}
