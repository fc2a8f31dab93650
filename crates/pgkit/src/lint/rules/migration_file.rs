//! `migration-file`: the runner can run the file. `pgkit migrate`, `seed`
//! and `bundle` refuse a whole folder, before running anything, for a file
//! whose name is not `NNN_description.sql` (`add_users.sql`, `006-add.sql`,
//! `007_x.SQL`), for two files with one number, and for transaction control
//! they cannot pair with the tracking row (a `COMMIT` half way, a `CREATE
//! INDEX CONCURRENTLY` in a file without `-- pgkit:no-transaction`). This
//! rule asks the runner's own check ([`crate::migrate::refusal`]) and
//! reports its words and its hint, so lint and the runner never disagree.
//! No allow comment suppresses it: the runner would refuse the file anyway.
//! A file the parser cannot read is `syntax-error`'s, not reported twice.

use std::collections::BTreeMap;

use super::Sink;
use crate::lint::rule::Rule;
use crate::lint::source::{FileKind, SqlFile};
use crate::migrate::{refusal, version_of, FileRole, MigrateError};

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    let mut versions: BTreeMap<i64, &SqlFile> = BTreeMap::new();
    for file in files {
        let name = file_name(file);
        let role = match file.kind {
            FileKind::Migration => FileRole::Migration,
            FileKind::Seed | FileKind::Data => FileRole::Seed,
        };
        if let Some(error) = refusal(role, &name, &file.text) {
            report(file, &error, sink);
            continue;
        }
        if file.kind != FileKind::Migration {
            continue;
        }
        if let Ok(Some(version)) = version_of(&name) {
            if let Some(first) = versions.get(&version) {
                let error = MigrateError::DuplicateVersion {
                    version,
                    first: file_name(first),
                    second: name.clone(),
                };
                report(file, &error, sink);
            } else {
                versions.insert(version, file);
            }
        }
    }
}

/// The runner's refusal as a finding: at its line, in its words, with its hint.
fn report(file: &SqlFile, error: &MigrateError, sink: &mut Sink) {
    let text = error.to_string();
    let (line, message) = match error {
        MigrateError::Syntax { .. } => return,
        MigrateError::TransactionControl { line, problem, .. } => (*line, problem.clone()),
        MigrateError::NeedsNoTransaction { line, name, .. } => {
            let prefix = format!("{name}:{line}: ");
            (
                *line,
                text.strip_prefix(&prefix).unwrap_or(&text).to_owned(),
            )
        }
        _ => (1, text.clone()),
    };
    let offset = line_offset(&file.text, line);
    sink.push(file.finding(
        Rule::MigrationFile,
        offset,
        format!("pgkit migrate refuses this file: {message}"),
        error.hint().unwrap_or_default(),
    ));
}

fn file_name(file: &SqlFile) -> String {
    file.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Byte offset where 1-based `line` starts.
fn line_offset(text: &str, line: u32) -> usize {
    if line <= 1 {
        return 0;
    }
    text.match_indices('\n')
        .nth(line as usize - 2)
        .map_or(text.len(), |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint, migration};

    #[test]
    fn names_the_runner_refuses_are_reported_in_its_words() {
        let body = migration("x", "SELECT 1;");
        let found = lint(
            &[
                ("add_users.sql", &body),
                ("006-add.sql", &body),
                ("007_x.SQL", &body),
                ("008_ok.sql", &migration("008_ok", "SELECT 1;")),
            ],
            Rule::MigrationFile,
        );
        assert_eq!(
            found,
            [
                "006-add.sql:1:1 pgkit migrate refuses this file: 006-add.sql: the number must be followed by _ and the description, as NNN_description.sql",
                "007_x.SQL:1:1 pgkit migrate refuses this file: 007_x.SQL: the extension must be lower-case .sql",
                "add_users.sql:1:1 pgkit migrate refuses this file: add_users.sql: a migration file name must start with its number, as NNN_description.sql",
            ]
        );
    }

    #[test]
    fn two_files_with_one_number() {
        let found = lint(
            &[
                ("001_a.sql", &migration("001_a", "SELECT 1;")),
                ("1_b.sql", &migration("1_b", "SELECT 1;")),
            ],
            Rule::MigrationFile,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("two migration files have number 1"),
            "{found:?}"
        );
    }

    #[test]
    fn concurrently_needs_the_marker_and_passes_with_it() {
        let head = "-- Migration: 002_idx.sql\n-- Issue: X-1\n-- Date: 2025-01-15\n-- Author: A\n-- Description: index\n";
        let stmt = "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_t_a ON t (a);\n";
        let found = lint(
            &[("002_idx.sql", &format!("{head}{stmt}"))],
            Rule::MigrationFile,
        );
        assert_eq!(
            found,
            ["002_idx.sql:6:1 pgkit migrate refuses this file: CREATE INDEX CONCURRENTLY cannot run inside a transaction block, and this file runs in one (it has no `-- pgkit:no-transaction` line)"]
        );
        let marked = format!("{head}-- pgkit:no-transaction\n{stmt}");
        assert!(lint(&[("002_idx.sql", &marked)], Rule::MigrationFile).is_empty());
    }

    #[test]
    fn a_commit_half_way_is_the_runners_words_and_seeds_are_checked_too() {
        let found = lint(
            &[
                (
                    "001_a.sql",
                    "BEGIN;\nSELECT 1;\nCOMMIT;\nSELECT 2;\nCOMMIT;\n",
                ),
                ("seeds/x.sql", "SELECT 1;\nCOMMIT;\n"),
            ],
            Rule::MigrationFile,
        );
        assert_eq!(
            found,
            [
                "001_a.sql:3:1 pgkit migrate refuses this file: COMMIT before the end of the file: a file may only open with BEGIN and end with COMMIT (found COMMIT)",
                "seeds/x.sql:2:1 pgkit migrate refuses this file: COMMIT without a BEGIN at the start of the file: a file may only open with BEGIN and end with COMMIT (found COMMIT)",
            ]
        );
    }
}
