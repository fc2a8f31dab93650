//! `pgkit lint DIR`: the standard's rules on migration files. The report
//! goes to stdout (text or JSON); any error-level finding makes the exit
//! code 1, warnings alone leave it 0.

use pgkit::lint::{lint_dir, LintOptions};

use super::{print_report, UserError};
use crate::cli::LintArgs;

pub fn run(args: LintArgs) -> anyhow::Result<()> {
    let dir = args.path.as_ref().unwrap_or(&args.dir);
    super::migrations_folder(dir)?;
    let report = lint_dir(dir, &LintOptions::default()).map_err(|e| {
        UserError::new(
            e.to_string(),
            "pass the folder that holds the NNN_description.sql files",
        )
    })?;
    print_report(
        "lint",
        args.format,
        || report.to_text(),
        || report.to_json(),
        report.has_errors().then(|| report.summary()),
        "fix each finding as its fix line says, or suppress one with `-- pgkit:allow RULE reason` on the line above",
    )
}
