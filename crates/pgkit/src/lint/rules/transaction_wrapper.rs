//! `transaction-wrapper`: a migration is one transaction, `BEGIN;` first and
//! `COMMIT;` last, so a failure half way leaves nothing half applied and the
//! file works the same under `pgkit migrate`, `psql -f` and
//! `gcloud sql import sql`. A `COMMIT` or `ROLLBACK` in the middle ends that
//! protection early.
//!
//! The exception is a statement PostgreSQL refuses inside a transaction block
//! (`CREATE/DROP INDEX CONCURRENTLY`, `REINDEX CONCURRENTLY`, `VACUUM`,
//! `CREATE/DROP DATABASE`, `ALTER SYSTEM`): a file holding one must not have
//! `BEGIN`, and is then not required to; it needs `-- pgkit:no-transaction`
//! in its header, which `migration-file` reports when missing (the runner
//! refuses the file without it). A file with that marker is held to the
//! no-transaction form. A file the runner refuses for its transaction
//! control is `migration-file`'s, in the runner's words, not reported twice.
//! Only files in the migrations folder.

use squawk_syntax::ast::{self, AstNode};

use super::Sink;
use crate::lint::rule::Rule;
use crate::lint::source::{FileKind, SqlFile};
use crate::migrate::{refusal, FileRole, MigrateError};

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files.iter().filter(|f| f.kind == FileKind::Migration) {
        let stmts: Vec<ast::Stmt> = file
            .stmts()
            .filter(|s| !matches!(s, ast::Stmt::EmptyStmt(_)))
            .collect();
        if stmts.is_empty() {
            continue;
        }
        let name = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if matches!(
            refusal(FileRole::Migration, &name, &file.text),
            Some(MigrateError::TransactionControl { .. } | MigrateError::NeedsNoTransaction { .. })
        ) {
            continue;
        }
        let marked = crate::migrate::has_no_transaction_marker(
            &file.text,
            &crate::migrate::sql::split(&file.text),
        );
        if marked || stmts.iter().any(|s| non_transactional(s).is_some()) {
            check_no_transaction(file, &stmts, sink);
        } else {
            check_wrapped(file, &stmts, sink);
        }
    }
}

fn check_wrapped(file: &SqlFile, stmts: &[ast::Stmt], sink: &mut Sink) {
    // Statements after the closing COMMIT run after the transaction (the
    // standard's seed pattern ends with a `DO $$ … RAISE NOTICE … $$`), as
    // `pgkit migrate` runs them: the transaction is what comes before.
    let closing = stmts
        .iter()
        .rposition(|s| matches!(s, ast::Stmt::Commit(_) | ast::Stmt::Rollback(_)))
        .filter(|&i| i > 0);
    let stmts = closing.map_or(stmts, |i| &stmts[..=i]);
    let (first, last) = (&stmts[0], &stmts[stmts.len() - 1]);
    let begins = matches!(first, ast::Stmt::Begin(_));
    let commits = matches!(last, ast::Stmt::Commit(_));
    let wrap_fix = "put `BEGIN;` after the header and `COMMIT;` at the end of the file";
    match (begins, commits) {
        (false, false) => sink.push(file.finding_at(
            Rule::TransactionWrapper,
            None,
            first.syntax(),
            "the migration is not wrapped in BEGIN; ... COMMIT;, so a failure half way leaves it half applied",
            wrap_fix,
        )),
        (false, true) => sink.push(file.finding_at(
            Rule::TransactionWrapper,
            None,
            first.syntax(),
            "the migration does not start with BEGIN;",
            wrap_fix,
        )),
        (true, false) => sink.push(file.finding_at(
            Rule::TransactionWrapper,
            None,
            last.syntax(),
            if matches!(last, ast::Stmt::Rollback(_)) {
                "the migration ends with ROLLBACK, so none of it is ever applied"
            } else {
                "the migration does not end with COMMIT;"
            },
            "end the file with `COMMIT;`",
        )),
        (true, true) => {}
    }
    // A closing COMMIT or ROLLBACK was judged above.
    let ends = matches!(last, ast::Stmt::Commit(_) | ast::Stmt::Rollback(_));
    let inner = stmts.iter().skip(usize::from(begins));
    let inner = inner.take(stmts.len() - usize::from(begins) - usize::from(ends));
    for stmt in inner {
        let what = match stmt {
            ast::Stmt::Begin(_) => "a second BEGIN",
            ast::Stmt::Commit(_) => "a COMMIT before the end",
            ast::Stmt::Rollback(_) => "a ROLLBACK",
            _ => continue,
        };
        sink.push(file.finding_at(
            Rule::TransactionWrapper,
            None,
            stmt.syntax(),
            format!("{what} inside the migration: the statements after it are not part of one transaction"),
            "keep exactly one BEGIN; at the top and one COMMIT; at the end; split the file if it needs two transactions",
        ));
    }
}

fn check_no_transaction(file: &SqlFile, stmts: &[ast::Stmt], sink: &mut Sink) {
    let mut open = false;
    for stmt in stmts {
        match stmt {
            ast::Stmt::Begin(_) => open = true,
            ast::Stmt::Commit(_) | ast::Stmt::Rollback(_) => open = false,
            _ => {
                if let (true, Some(what)) = (open, non_transactional(stmt)) {
                    sink.push(file.finding_at(
                        Rule::TransactionWrapper,
                        None,
                        stmt.syntax(),
                        format!(
                            "{what} cannot run inside a transaction block: the migration fails"
                        ),
                        "move it to a migration file of its own with `-- pgkit:no-transaction` in its header and no BEGIN/COMMIT",
                    ));
                }
            }
        }
    }
}

/// The name of a statement PostgreSQL refuses inside a transaction block:
/// the runner's own reading of it ([`crate::migrate::sql::non_transactional`]).
pub(crate) fn non_transactional(stmt: &ast::Stmt) -> Option<&'static str> {
    crate::migrate::sql::non_transactional(&stmt.syntax().to_string())
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint, lint_one};

    const HEAD: &str =
        "-- Migration: 001_x\n-- Issue: X\n-- Date: 2025-01-15\n-- Author: A\n-- Description: D\n";

    fn check(body: &str) -> Vec<String> {
        lint_one(&format!("{HEAD}{body}"), Rule::TransactionWrapper)
    }

    #[test]
    fn wrapped_file_passes_and_start_transaction_or_end_count() {
        assert!(check("BEGIN;\nSELECT 1;\nCOMMIT;\n").is_empty());
        assert!(check("START TRANSACTION;\nSELECT 1;\nEND;\n").is_empty());
    }

    #[test]
    fn unwrapped_file_is_one_finding_at_its_first_statement() {
        assert_eq!(
            check("SELECT 1;\nSELECT 2;\n"),
            ["001_x.sql:6:1 the migration is not wrapped in BEGIN; ... COMMIT;, so a failure half way leaves it half applied"]
        );
    }

    /// What the runner refuses is `migration-file`'s, in the runner's words.
    fn refused(body: &str) -> Vec<String> {
        assert_eq!(check(body), Vec::<String>::new(), "reported twice");
        lint_one(&format!("{HEAD}{body}"), Rule::MigrationFile)
    }

    #[test]
    fn missing_commit_and_trailing_rollback_are_the_runners_refusals() {
        assert_eq!(
            refused("BEGIN;\nSELECT 1;\n"),
            ["001_x.sql:6:1 pgkit migrate refuses this file: BEGIN without a COMMIT at the end of the file: a file may only open with BEGIN and end with COMMIT (found BEGIN)"]
        );
        assert_eq!(
            refused("BEGIN;\nSELECT 1;\nROLLBACK;\n"),
            ["001_x.sql:8:1 pgkit migrate refuses this file: ROLLBACK in a migration: a file may only open with BEGIN and end with COMMIT (found ROLLBACK)"]
        );
    }

    #[test]
    fn lone_commit_is_one_finding() {
        assert_eq!(
            refused("SELECT 1;\nCOMMIT;\n"),
            ["001_x.sql:7:1 pgkit migrate refuses this file: COMMIT without a BEGIN at the start of the file: a file may only open with BEGIN and end with COMMIT (found COMMIT)"]
        );
    }

    #[test]
    fn statements_after_the_final_commit_pass() {
        let sql = "BEGIN;\nSELECT 1;\nCOMMIT;\nDO $$ BEGIN RAISE NOTICE 'Seed data applied at %', NOW(); END $$;\n";
        assert_eq!(check(sql), Vec::<String>::new());
    }

    #[test]
    fn commit_in_the_middle_is_reported() {
        let found = refused("BEGIN;\nSELECT 1;\nCOMMIT;\nSELECT 2;\nCOMMIT;\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "001_x.sql:8:1 pgkit migrate refuses this file: COMMIT before the end"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn concurrently_needs_no_wrapper_and_refuses_one() {
        assert!(check(
            "-- pgkit:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\n"
        )
        .is_empty());
        // Inside BEGIN/COMMIT the runner refuses it: `migration-file` says so.
        assert!(
            check("BEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\nCOMMIT;\n")
                .is_empty()
        );
        assert_eq!(
            check("-- pgkit:no-transaction\nBEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\nCOMMIT;\n"),
            ["001_x.sql:8:1 CREATE INDEX CONCURRENTLY cannot run inside a transaction block: the migration fails"]
        );
    }

    #[test]
    fn seeds_and_data_are_not_required_to_wrap() {
        let found = lint(
            &[
                ("seeds/001_s.sql", "SELECT 1;"),
                ("data/001_d.sql", "SELECT 1;"),
            ],
            Rule::TransactionWrapper,
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
