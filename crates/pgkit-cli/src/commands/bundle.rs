//! `pgkit bundle`: one self-recording SQL file for psql -f or gcloud sql import sql.

use anyhow::Context;
use pgkit::migrate::{MigrateOptions, MigrationSource, Migrator};

use super::out;
use crate::cli::BundleArgs;

pub fn run(args: BundleArgs) -> anyhow::Result<()> {
    super::migrations_folder(&args.dir)?;
    let options = MigrateOptions {
        schema: args.schema.clone(),
        ..MigrateOptions::default()
    };
    let migrator = Migrator::new(MigrationSource::Dir(args.dir.clone()), options);
    let count = migrator.migrations()?.len();
    let bundle = migrator.bundle()?;
    for w in &bundle.warnings {
        eprintln!("warning: {w}");
    }
    if args.out.as_os_str() == "-" {
        out(&bundle.sql)?;
    } else {
        std::fs::write(&args.out, &bundle.sql)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        eprintln!("wrote {} ({count} migration(s))", args.out.display());
    }
    Ok(())
}
