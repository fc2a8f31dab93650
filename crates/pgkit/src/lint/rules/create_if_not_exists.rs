//! `create-if-not-exists`: `CREATE TABLE`, `CREATE INDEX`, `CREATE SCHEMA`,
//! `CREATE SEQUENCE`, `CREATE EXTENSION` and `ALTER TABLE ... ADD COLUMN` say
//! `IF NOT EXISTS`, so a migration that failed half way (or a database the
//! Python service already built) can be run again. Top-level statements of
//! every file; statements inside `DO` blocks are the author's own guard.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::SyntaxNode;

use super::Sink;
use crate::lint::names::QualifiedName;
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files {
        for stmt in file.stmts() {
            check_stmt(file, &stmt, sink);
        }
    }
}

fn check_stmt(file: &SqlFile, stmt: &ast::Stmt, sink: &mut Sink) {
    let mut report = |node: &SyntaxNode, what: String, fix: String| {
        sink.push(file.finding_at(
            Rule::CreateIfNotExists,
            None,
            node,
            format!("{what} has no IF NOT EXISTS: running the file again fails because it already exists"),
            fix,
        ));
    };
    match stmt {
        ast::Stmt::CreateTable(c) if c.if_not_exists().is_none() && !is_temp(c.persistence()) => {
            let name = name_of(c.table_name().map(|n| n.syntax().clone()));
            report(
                c.syntax(),
                format!("CREATE TABLE {name}"),
                format!("write `CREATE TABLE IF NOT EXISTS {name}`"),
            );
        }
        ast::Stmt::CreateIndex(c) if c.if_not_exists().is_none() => {
            let fix = match c.index() {
                Some(index) => format!(
                    "write `CREATE INDEX {}IF NOT EXISTS {}`",
                    if c.concurrently_token().is_some() { "CONCURRENTLY " } else { "" },
                    name_of(Some(index.syntax().clone()))
                ),
                None => "name the index so it can be checked: `CREATE INDEX IF NOT EXISTS idx_<table>_<columns> ON ...`".into(),
            };
            let name = c.index().map(|i| name_of(Some(i.syntax().clone())));
            report(
                c.syntax(),
                format!(
                    "CREATE INDEX {}",
                    name.unwrap_or_else(|| "(unnamed)".into())
                ),
                fix,
            );
        }
        ast::Stmt::CreateSchema(c) if c.if_not_exists().is_none() => {
            let name = name_of(c.create_schema_target().map(|t| t.syntax().clone()));
            report(
                c.syntax(),
                format!("CREATE SCHEMA {name}"),
                format!("write `CREATE SCHEMA IF NOT EXISTS {name}`"),
            );
        }
        ast::Stmt::CreateSequence(c)
            if c.if_not_exists().is_none() && !is_temp(c.persistence()) =>
        {
            let name = name_of(c.sequence().map(|s| s.syntax().clone()));
            report(
                c.syntax(),
                format!("CREATE SEQUENCE {name}"),
                format!("write `CREATE SEQUENCE IF NOT EXISTS {name}`"),
            );
        }
        ast::Stmt::CreateExtension(c) if c.if_not_exists().is_none() => {
            let name = name_of(c.extension().map(|e| e.syntax().clone()));
            report(
                c.syntax(),
                format!("CREATE EXTENSION {name}"),
                format!("write `CREATE EXTENSION IF NOT EXISTS {name}`"),
            );
        }
        ast::Stmt::AlterTable(alter) => {
            for action in alter.actions() {
                if let ast::AlterTableAction::AddColumn(add) = action {
                    if add.if_not_exists().is_none() {
                        let column = name_of(add.column_name().map(|n| n.syntax().clone()));
                        report(
                            add.syntax(),
                            format!("ADD COLUMN {column}"),
                            format!("write `ADD COLUMN IF NOT EXISTS {column}`"),
                        );
                    }
                }
            }
        }
        _ => {}
    }
}

fn is_temp(persistence: Option<ast::Persistence>) -> bool {
    matches!(persistence, Some(ast::Persistence::Temp(_)))
}

fn name_of(node: Option<SyntaxNode>) -> String {
    node.and_then(|n| QualifiedName::of(&n))
        .map_or_else(|| "(unnamed)".into(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint_one, migration};

    fn check(body: &str) -> Vec<String> {
        lint_one(&migration("001_x", body), Rule::CreateIfNotExists)
    }

    #[test]
    fn every_kind_of_create_without_if_not_exists() {
        let found = check(
            "CREATE TABLE users (id int);\n\
             CREATE INDEX idx_users_id ON users (id);\n\
             CREATE SCHEMA app;\n\
             CREATE SEQUENCE s;\n\
             CREATE EXTENSION pgcrypto;\n\
             ALTER TABLE users ADD COLUMN email text;\n\
             CREATE INDEX ON users (id);",
        );
        assert_eq!(
            found,
            [
                "001_x.sql:7:1 CREATE TABLE users has no IF NOT EXISTS: running the file again fails because it already exists",
                "001_x.sql:8:1 CREATE INDEX idx_users_id has no IF NOT EXISTS: running the file again fails because it already exists",
                "001_x.sql:9:1 CREATE SCHEMA app has no IF NOT EXISTS: running the file again fails because it already exists",
                "001_x.sql:10:1 CREATE SEQUENCE s has no IF NOT EXISTS: running the file again fails because it already exists",
                "001_x.sql:11:1 CREATE EXTENSION pgcrypto has no IF NOT EXISTS: running the file again fails because it already exists",
                "001_x.sql:12:19 ADD COLUMN email has no IF NOT EXISTS: running the file again fails because it already exists",
                "001_x.sql:13:1 CREATE INDEX (unnamed) has no IF NOT EXISTS: running the file again fails because it already exists",
            ]
        );
    }

    #[test]
    fn if_not_exists_everywhere_passes() {
        let found = check(
            "CREATE TABLE IF NOT EXISTS users (id int);\n\
             CREATE INDEX IF NOT EXISTS idx_users_id ON users (id);\n\
             CREATE SCHEMA IF NOT EXISTS app;\n\
             CREATE SEQUENCE IF NOT EXISTS s;\n\
             CREATE EXTENSION IF NOT EXISTS pgcrypto;\n\
             ALTER TABLE users ADD COLUMN IF NOT EXISTS email text;\n\
             CREATE TEMP TABLE scratch (a int);",
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn creates_inside_do_blocks_are_left_to_their_guard() {
        let found = check("DO $$ BEGIN\n  CREATE TABLE t (a int);\nEND $$;");
        assert!(found.is_empty(), "{found:?}");
    }
}
