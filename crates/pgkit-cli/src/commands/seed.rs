//! `pgkit seed`: seeds/*.sql on every run, data/*.sql only for APP_ENVIRONMENT=test.

use pgkit::seed::{SeedFiles, SeedOptions};

use super::{connection, migrations_folder, progress, timeouts};
use crate::cli::SeedArgs;

pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    migrations_folder(&args.dir)?;
    let (lock_timeout, statement_timeout) = timeouts(&args.run)?;
    let (dsn, params) = connection(&args.db, args.environment).await?;
    let options = SeedOptions {
        lock_timeout,
        statement_timeout,
    };
    let report = pgkit::seed::run(
        &dsn,
        &params,
        &SeedFiles::from_dir(&args.dir),
        &options,
        progress,
    )
    .await?;
    eprintln!(
        "applied {} seed file(s) and {} test-data file(s) (APP_ENVIRONMENT={})",
        report.seeds.len(),
        report.data.len(),
        params.environment
    );
    Ok(())
}
