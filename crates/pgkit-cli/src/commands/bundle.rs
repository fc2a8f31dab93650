//! `pgkit bundle`: one self-recording SQL file for psql -f or gcloud sql import sql.

use std::io::Write;

use anyhow::Context;
use pgkit::migrate::{MigrateOptions, MigrationSource, Migrator};

use crate::cli::BundleArgs;

pub fn run(args: BundleArgs) -> anyhow::Result<()> {
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
        std::io::stdout()
            .write_all(bundle.sql.as_bytes())
            .context("cannot write the bundle to standard output")?;
    } else {
        std::fs::write(&args.out, &bundle.sql)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        eprintln!("wrote {} ({count} migration(s))", args.out.display());
    }
    Ok(())
}
