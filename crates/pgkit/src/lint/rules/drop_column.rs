//! `drop-column` (warning): `ALTER TABLE ... DROP COLUMN` deletes that
//! column's data, and the application version still running during a deploy
//! fails on queries that name it. Stop reading the column first, deploy, then
//! drop it (and allow the finding with the reason).

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
                let ast::AlterTableAction::DropColumn(drop) = action else {
                    continue;
                };
                let column = drop
                    .column_name_ref()
                    .and_then(|c| last_segment(c.syntax()))
                    .unwrap_or_default();
                sink.push(file.finding_at(
                    Rule::DropColumn,
                    None,
                    drop.syntax(),
                    format!("DROP COLUMN {column} deletes that column of {table} and its data"),
                    "first ship a version that no longer reads or writes the column, then drop it \
                     and mark it `-- pgkit:allow drop-column <reason>`",
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
    fn drop_column_warns_at_the_action() {
        assert_eq!(
            lint_one(
                &migration(
                    "001_x",
                    "ALTER TABLE users DROP COLUMN IF EXISTS legacy_id;"
                ),
                Rule::DropColumn
            ),
            ["001_x.sql:7:19 DROP COLUMN legacy_id deletes that column of users and its data"]
        );
    }

    #[test]
    fn other_alters_pass() {
        let body = "ALTER TABLE users ADD COLUMN IF NOT EXISTS email text;";
        assert!(lint_one(&migration("001_x", body), Rule::DropColumn).is_empty());
    }
}
