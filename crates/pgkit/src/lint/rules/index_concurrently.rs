//! `index-concurrently` (warning): `CREATE INDEX` on a table that an earlier
//! file created. That table may hold production rows by now, and a plain
//! `CREATE INDEX` blocks every write to it until the build ends.
//! `CREATE INDEX CONCURRENTLY` does not, but cannot run in a transaction
//! block, so it goes in a file of its own with `-- pgkit:no-transaction` in
//! its header and no `BEGIN`/`COMMIT` (see `transaction-wrapper`). An index on a table created in the same file is
//! fine: the table is empty.

use squawk_syntax::ast::{self, AstNode};

use super::Sink;
use crate::lint::names::QualifiedName;
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    // Tables created by the files before the current one.
    let mut earlier: Vec<QualifiedName> = Vec::new();
    for file in files {
        let mut here: Vec<QualifiedName> = Vec::new();
        for stmt in file.stmts() {
            match &stmt {
                ast::Stmt::CreateTable(create) => {
                    here.extend(
                        create
                            .table_name()
                            .and_then(|n| QualifiedName::of(n.syntax())),
                    );
                }
                ast::Stmt::CreateIndex(index) if index.concurrently_token().is_none() => {
                    let Some(table) = index
                        .table_relation_name()
                        .and_then(|n| QualifiedName::of(n.syntax()))
                    else {
                        continue;
                    };
                    if here.iter().any(|t| t.matches(&table))
                        || !earlier.iter().any(|t| t.matches(&table))
                    {
                        continue;
                    }
                    sink.push(file.finding_at(
                        Rule::IndexConcurrently,
                        None,
                        index.syntax(),
                        format!(
                            "CREATE INDEX on {table}, which an earlier migration created, blocks writes to it until the index is built"
                        ),
                        "write `CREATE INDEX CONCURRENTLY IF NOT EXISTS ...` alone in a migration file of its own, with `-- pgkit:no-transaction` in its header and no BEGIN/COMMIT",
                    ));
                }
                _ => {}
            }
        }
        earlier.extend(here);
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint, migration};

    const CREATE: &str = "CREATE TABLE IF NOT EXISTS users (id int, email text);";

    #[test]
    fn plain_index_on_an_earlier_table_warns() {
        let found = lint(
            &[
                ("001_a.sql", &migration("001_a", CREATE)),
                (
                    "002_b.sql",
                    &migration(
                        "002_b",
                        "CREATE INDEX IF NOT EXISTS idx_users_email ON users (email);",
                    ),
                ),
            ],
            Rule::IndexConcurrently,
        );
        assert_eq!(
            found,
            ["002_b.sql:7:1 CREATE INDEX on users, which an earlier migration created, blocks writes to it until the index is built"]
        );
    }

    #[test]
    fn same_file_table_or_concurrently_passes() {
        let same =
            format!("{CREATE}\nCREATE INDEX IF NOT EXISTS idx_users_email ON users (email);");
        assert!(lint(
            &[("001_a.sql", &migration("001_a", &same))],
            Rule::IndexConcurrently
        )
        .is_empty());
        let found = lint(
            &[
                ("001_a.sql", &migration("001_a", CREATE)),
                (
                    "002_b.sql",
                    "-- pgkit:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_email ON users (email);",
                ),
            ],
            Rule::IndexConcurrently,
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
