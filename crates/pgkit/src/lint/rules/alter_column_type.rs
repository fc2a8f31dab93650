//! `alter-column-type` (warning): `ALTER COLUMN ... TYPE` usually rewrites
//! the whole table (and its indexes) under an `ACCESS EXCLUSIVE` lock, so
//! reads and writes wait for the rewrite; a lossy cast also changes data.
//! Some changes are free (widening a `varchar(n)`): allow those with the
//! reason. Otherwise add a new column, backfill it in batches, switch the
//! application, then drop the old one.

use squawk_syntax::ast::{self, AstNode};

use super::Sink;
use crate::lint::names::{last_segment, QualifiedName};
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files {
        for stmt in file.stmts() {
            let ast::Stmt::AlterTable(alter) = &stmt else {
                continue;
            };
            let table = alter
                .table_relation_name()
                .and_then(|n| QualifiedName::of(n.syntax()))
                .map_or_else(|| "the table".into(), |n| n.to_string());
            for action in alter.actions() {
                let ast::AlterTableAction::AlterColumn(column) = action else {
                    continue;
                };
                let Some(ast::AlterColumnOption::SetType(set_type)) = column.option() else {
                    continue;
                };
                let name = column
                    .column_name_ref()
                    .and_then(|c| last_segment(c.syntax()))
                    .unwrap_or_default();
                let ty = set_type
                    .ty()
                    .map(|t| t.syntax().text().to_string())
                    .unwrap_or_default();
                sink.push(file.finding_at(
                    Rule::AlterColumnType,
                    None,
                    column.syntax(),
                    format!(
                        "ALTER COLUMN {name} TYPE {ty} rewrites {table} under an ACCESS EXCLUSIVE lock, \
                         blocking reads and writes until done"
                    ),
                    "add a new column, backfill it in batches, switch the application to it, then drop \
                     the old one; if this change needs no rewrite, mark it `-- pgkit:allow alter-column-type <reason>`",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint_one, migration};

    #[test]
    fn both_spellings_of_type_change_warn() {
        let body = "ALTER TABLE users ALTER COLUMN age TYPE bigint;\nALTER TABLE users ALTER COLUMN name SET DATA TYPE text;";
        assert_eq!(
            lint_one(&migration("001_x", body), Rule::AlterColumnType),
            [
                "001_x.sql:7:19 ALTER COLUMN age TYPE bigint rewrites users under an ACCESS EXCLUSIVE lock, blocking reads and writes until done",
                "001_x.sql:8:19 ALTER COLUMN name TYPE text rewrites users under an ACCESS EXCLUSIVE lock, blocking reads and writes until done",
            ]
        );
    }

    #[test]
    fn other_column_changes_pass() {
        let body =
            "ALTER TABLE users ALTER COLUMN name SET NOT NULL, ALTER COLUMN name SET DEFAULT 'x';";
        assert!(lint_one(&migration("001_x", body), Rule::AlterColumnType).is_empty());
    }
}
