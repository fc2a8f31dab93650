//! `drop-table` (warning): `DROP TABLE` deletes the table and its rows. A
//! rollback of the application cannot bring them back, and the version still
//! running during a deploy fails on the missing table. Sometimes meant: then
//! say so with `-- pgkit:allow drop-table <reason>`.

use squawk_syntax::ast::{self, AstNode};

use super::Sink;
use crate::lint::names::QualifiedName;
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files {
        for stmt in file.stmts() {
            let ast::Stmt::DropTable(drop) = &stmt else {
                continue;
            };
            let names: Vec<String> = drop
                .table_name_refs()
                .filter_map(|n| QualifiedName::of(n.syntax()))
                .map(|n| n.to_string())
                .collect();
            sink.push(file.finding_at(
                Rule::DropTable,
                None,
                drop.syntax(),
                format!("DROP TABLE {} deletes the table and every row in it", names.join(", ")),
                "drop a table only after no deployed version reads it and its data is backed up or moved; \
                 then mark it `-- pgkit:allow drop-table <reason>`",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint_one, migration};

    #[test]
    fn drop_table_warns() {
        assert_eq!(
            lint_one(&migration("001_x", "DROP TABLE IF EXISTS old_sessions, app.tmp;"), Rule::DropTable),
            ["001_x.sql:7:1 DROP TABLE old_sessions, app.tmp deletes the table and every row in it"]
        );
    }

    #[test]
    fn drop_table_with_a_reasoned_allow_is_silent() {
        let body = "-- pgkit:allow drop-table replaced by sessions_v2 in 004, data copied there\nDROP TABLE IF EXISTS old_sessions;";
        assert!(lint_one(&migration("001_x", body), Rule::DropTable).is_empty());
    }
}
