//! `seed`: seeds/*.sql on every run, data/*.sql only for APP_ENVIRONMENT=test;
//! pgkit's over `--dir`, a service binary's over its embedded files (`dave seed`).

use std::future::Future;

use clap::Args;
use pgkit::connect::SessionParams;
use pgkit::dsn::Dsn;
use pgkit::seed::{SeedFiles, SeedOptions};

use super::{connection, migrations_folder, progress, timeouts};
use crate::cli::{Environment, SeedArgs, SeedRunArgs};

/// `pgkit seed --dir DIR`.
pub async fn run_pgkit(args: SeedArgs) -> anyhow::Result<()> {
    migrations_folder(&args.dir)?;
    run(
        SeedFiles::from_dir(&args.dir),
        args.seed,
        |db, environment| async move { connection(&db, environment).await },
    )
    .await
}

/// Applies `files`; `connect` finds the database, as for
/// [`migrate`](super::migrate::run), after the flags are checked.
pub async fn run<D, C, F>(files: SeedFiles, args: SeedRunArgs<D>, connect: C) -> anyhow::Result<()>
where
    D: Args,
    C: FnOnce(D, Option<Environment>) -> F,
    F: Future<Output = anyhow::Result<(Dsn, SessionParams)>>,
{
    let (lock_timeout, statement_timeout) = timeouts(&args.run)?;
    let (dsn, params) = connect(args.db, args.environment).await?;
    let options = SeedOptions {
        lock_timeout,
        statement_timeout,
    };
    let report = pgkit::seed::run(&dsn, &params, &files, &options, progress).await?;
    eprintln!(
        "applied {} seed file(s) and {} test-data file(s) (APP_ENVIRONMENT={})",
        report.seeds.len(),
        report.data.len(),
        params.environment
    );
    Ok(())
}
