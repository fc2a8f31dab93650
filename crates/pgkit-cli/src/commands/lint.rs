//! `pgkit lint DIR`: the standard's rules on migration files. The report
//! goes to stdout (text or JSON); any error-level finding makes the exit
//! code 1, warnings alone leave it 0.

use pgkit::lint::{lint_dir, LintOptions};

use super::UserError;
use crate::cli::{LintArgs, OutputFormat};

pub fn run(args: LintArgs) -> anyhow::Result<()> {
    let report = lint_dir(&args.dir, &LintOptions::default()).map_err(|e| {
        UserError::new(
            e.to_string(),
            "pass the folder that holds the NNN_description.sql files",
        )
    })?;
    match args.format {
        OutputFormat::Text => print!("{}", report.to_text()),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
    }
    if report.has_errors() {
        return Err(UserError::new(
            format!("lint: {}", report.summary()),
            "fix each finding as its fix line says, or suppress one with `-- pgkit:allow RULE reason` on the line above",
        )
        .into());
    }
    Ok(())
}
