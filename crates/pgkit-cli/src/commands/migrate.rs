//! `pgkit migrate status|up|new|repair|baseline` over a migrations directory.

use anyhow::Context;
use pgkit::migrate::{MigrateOptions, MigrationSource, Migrator, NewFile, State, Status, Stop};
use pgkit::settings::Env;

use super::{connection, out, outln, progress, seconds, timeouts, UserError};
use crate::cli::{DdlLockArgs, MigrateAction, MigrateArgs};

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let (lock_timeout, statement_timeout) = timeouts(&args.run)?;
    let options = MigrateOptions {
        schema: args.schema.clone(),
        lock_timeout,
        statement_timeout,
        ..ddl_lock_options(&args.ddl)?
    };
    let migrator = Migrator::new(MigrationSource::Dir(args.dir.clone()), options);
    match &args.action {
        MigrateAction::New(new) => {
            let file = NewFile {
                name: new.name.clone(),
                issue: new.issue.clone(),
                author: new.author.clone(),
                description: new.description.clone(),
            };
            let today = chrono::Local::now().date_naive();
            let path = pgkit::migrate::new_file(&args.dir, &file, today)?;
            eprintln!("created {}", path.display());
            outln(path.display())?;
            Ok(())
        }
        MigrateAction::Status { json } => {
            let (dsn, params) = connection(&args.db).await?;
            let status = migrator.status(&dsn, &params).await?;
            if *json {
                outln(serde_json::to_string_pretty(&status).context("cannot write JSON")?)?;
            } else {
                out(table(&status))?;
            }
            Ok(())
        }
        MigrateAction::Up => {
            // Listening before anything connects: a Ctrl-C from here on
            // stops the run cleanly instead of killing the process.
            let stop = stop_signal()?;
            let (dsn, params) = connection(&args.db).await?;
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
        MigrateAction::Repair { files, force } => {
            let (dsn, params) = connection(&args.db).await?;
            let repaired = migrator
                .repair(&dsn, &params, files, *force, progress)
                .await?;
            if repaired.is_empty() {
                eprintln!(
                    "nothing to repair: the files named are unchanged since they were applied"
                );
            }
            Ok(())
        }
        MigrateAction::Baseline { to } => {
            let (dsn, params) = connection(&args.db).await?;
            let recorded = migrator.baseline(&dsn, &params, *to, progress).await?;
            eprintln!(
                "recorded {} migration(s) as applied, up to {to}",
                recorded.len()
            );
            Ok(())
        }
    }
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
