//! `migrate status|up|repair|baseline` over any source of files, and
//! `pgkit migrate new` over a folder. pgkit runs it on `--dir`; a service
//! binary mounts [`run`] with its embedded files and its own way to find
//! the database (`dave migrate`), so both print the same table, progress,
//! errors and hints, and stop the same way on Ctrl-C.

use std::future::Future;

use anyhow::Context;
use clap::Args;
use pgkit::connect::SessionParams;
use pgkit::dsn::Dsn;
use pgkit::migrate::{MigrateOptions, MigrationSource, Migrator, NewFile, State, Status, Stop};
use pgkit::settings::Env;

use super::{connection, migrations_folder, out, outln, progress, seconds, timeouts, UserError};
use crate::cli::{
    DdlLockArgs, Environment, MigrateAction, MigrateArgs, NewArgs, OutputFormat,
    PgkitMigrateAction, RunnerArgs,
};

/// `pgkit migrate --dir DIR ACTION`.
pub async fn run_pgkit(args: MigrateArgs) -> anyhow::Result<()> {
    migrations_folder(&args.dir)?;
    match args.action {
        PgkitMigrateAction::New(new) => new_file(&args.dir, &new),
        PgkitMigrateAction::Run(action) => {
            let source = MigrationSource::Dir(args.dir.clone());
            run(source, action, |db, environment| async move {
                connection(&db, environment).await
            })
            .await
        }
    }
}

/// Runs `action` on the migrations of `source`. `connect` finds the
/// database from the action's database flags (`D`) and `--environment`; it
/// is called after the flags are checked and, for `up`, after Ctrl-C and
/// SIGTERM are caught, so a bad flag fails before anything starts and a
/// signal from then on stops the run cleanly. The errors are reported by
/// [`crate::report`], whose hints name the program's commands.
pub async fn run<D, C, F>(
    source: MigrationSource,
    action: MigrateAction<D>,
    connect: C,
) -> anyhow::Result<()>
where
    D: Args,
    C: FnOnce(D, Option<Environment>) -> F,
    F: Future<Output = anyhow::Result<(Dsn, SessionParams)>>,
{
    match action {
        MigrateAction::Status {
            runner,
            format,
            json,
        } => {
            let migrator = Migrator::new(source, options(&runner, None)?);
            let (dsn, params) = connect(runner.db, runner.environment).await?;
            let status = migrator.status(&dsn, &params).await?;
            if json || format == OutputFormat::Json {
                outln(serde_json::to_string_pretty(&status).context("cannot write JSON")?)?;
            } else {
                out(table(&status))?;
            }
            Ok(())
        }
        MigrateAction::Up { runner, ddl } => {
            let migrator = Migrator::new(source, options(&runner, Some(&ddl))?);
            // Listening before anything connects: a Ctrl-C from here on
            // stops the run cleanly instead of killing the process.
            let stop = stop_signal()?;
            let (dsn, params) = connect(runner.db, runner.environment).await?;
            let report = migrator.up_until(&dsn, &params, progress, stop).await?;
            if !report.applied.is_empty() {
                let ms: u128 = report.applied.iter().map(|(_, d)| d.as_millis()).sum();
                eprintln!(
                    "applied {} migration(s) in {ms} ms; {} were already applied",
                    report.applied.len(),
                    report.already_applied
                );
            }
            Ok(())
        }
        MigrateAction::Repair {
            runner,
            files,
            force,
        } => {
            let migrator = Migrator::new(source, options(&runner, None)?);
            let (dsn, params) = connect(runner.db, runner.environment).await?;
            let repaired = migrator
                .repair(&dsn, &params, &files, force, progress)
                .await?;
            if repaired.is_empty() {
                eprintln!(
                    "nothing to repair: the files named are unchanged since they were applied"
                );
            }
            Ok(())
        }
        MigrateAction::Baseline { runner, to } => {
            let migrator = Migrator::new(source, options(&runner, None)?);
            let (dsn, params) = connect(runner.db, runner.environment).await?;
            let recorded = migrator.baseline(&dsn, &params, to, progress).await?;
            eprintln!(
                "recorded {} migration(s) as applied, up to {to}",
                recorded.len()
            );
            Ok(())
        }
    }
}

/// `pgkit migrate new NAME`: the next numbered file in `dir`.
fn new_file(dir: &std::path::Path, new: &NewArgs) -> anyhow::Result<()> {
    let file = NewFile {
        name: new.name.clone(),
        issue: new.issue.clone(),
        author: new.author.clone().or_else(git_user_name),
        description: new.description.clone(),
    };
    let today = chrono::Local::now().date_naive();
    let path = pgkit::migrate::new_file(dir, &file, today)?;
    eprintln!("created {}", path.display());
    outln(path.display())?;
    Ok(())
}

/// `git config user.name`, for the header's Author when --author is not
/// given; `None` outside a repository or without git (the template's
/// placeholder is written then, and lint reports it).
fn git_user_name() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "user.name"])
        .output()
        .ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !name.is_empty()).then_some(name)
}

/// The runner's options: the tracking schema and timeouts from the flags,
/// the DDL lock settings from `up`'s flags or the environment.
fn options<D: Args>(
    runner: &RunnerArgs<D>,
    ddl: Option<&DdlLockArgs>,
) -> anyhow::Result<MigrateOptions> {
    let (lock_timeout, statement_timeout) = timeouts(&runner.run)?;
    let none = DdlLockArgs {
        ddl_lock_timeout: None,
        ddl_lock_retries: None,
    };
    Ok(MigrateOptions {
        schema: runner.schema.clone(),
        lock_timeout,
        statement_timeout,
        ..ddl_lock_options(ddl.unwrap_or(&none))?
    })
}

/// Completes on the first SIGINT or SIGTERM. The handlers are installed
/// now, so the default action (ending the process at once, with the
/// statement left running on the server) is replaced before any work starts.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = Stop> + Send> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => Stop::Interrupt,
            _ = terminate.recv() => Stop::Terminate,
        }
    })
}

/// The lock timeout and retries: the flags (or their variables), else the
/// same variables from .env, else the defaults.
fn ddl_lock_options(ddl: &DdlLockArgs) -> anyhow::Result<MigrateOptions> {
    let mut options = MigrateOptions::from_env(&Env::from_process()?)?;
    if let Some(value) = ddl.ddl_lock_timeout {
        let timeout = seconds("ddl-lock-timeout", value)?;
        pgkit::migrate::check_lock_timeout(timeout).map_err(|problem| {
            UserError::new(
                format!("invalid --ddl-lock-timeout (DB_MIGRATE_LOCK_TIMEOUT): {problem}"),
                format!(
                    "give --ddl-lock-timeout {}",
                    pgkit::migrate::LOCK_TIMEOUT_ACCEPTED
                ),
            )
        })?;
        options.ddl_lock_timeout = timeout;
    }
    if let Some(retries) = ddl.ddl_lock_retries {
        options.ddl_lock_retries = retries;
    }
    Ok(options)
}

/// The status as an aligned table with a summary line.
fn table(status: &Status) -> String {
    let mut out = format!(
        "{:<16} {:<8} {:<25} {:>8}  {}\n",
        "VERSION", "STATE", "APPLIED AT", "MS", "NAME"
    );
    for e in &status.migrations {
        let state = match e.state {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Changed => "changed",
            State::Missing => "missing",
        };
        out.push_str(&format!(
            "{:<16} {:<8} {:<25} {:>8}  {}\n",
            e.version,
            state,
            e.applied_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default(),
            e.execution_ms.map(|ms| ms.to_string()).unwrap_or_default(),
            e.name
        ));
    }
    out.push_str(&format!(
        "{} applied, {} pending, {} changed, {} missing (tracking table {}.pgkit_migrations{})\n",
        status.count(State::Applied),
        status.count(State::Pending),
        status.count(State::Changed),
        status.count(State::Missing),
        status.schema,
        if status.tracking_table {
            ""
        } else {
            ", not created yet"
        }
    ));
    out
}
