//! `pgkit seed`: seeds/*.sql on every run, data/*.sql only for APP_ENVIRONMENT=test.

use pgkit::seed::{SeedFiles, SeedOptions};

use super::{connection, progress, timeouts, UserError};
use crate::cli::SeedArgs;

pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    if !args.dir.is_dir() {
        return Err(UserError::new(
            format!("{} is not a directory", args.dir.display()),
            "pass --dir with the migrations directory that holds seeds/ and data/",
        )
        .into());
    }
    let (lock_timeout, statement_timeout) = timeouts(&args.run)?;
    let (dsn, params) = connection(&args.db).await?;
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
