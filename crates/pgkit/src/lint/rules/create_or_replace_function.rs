//! `create-or-replace-function`: `CREATE FUNCTION` and `CREATE PROCEDURE`
//! say `OR REPLACE`. Without it a second run fails (the function exists),
//! and a changed body can only ship by dropping the function, which breaks
//! every trigger that uses it.

use squawk_syntax::ast::{self, AstNode};

use super::Sink;
use crate::lint::names::QualifiedName;
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files {
        for stmt in file.stmts() {
            let (kind, name, node) = match &stmt {
                ast::Stmt::CreateFunction(f) if f.or_replace().is_none() => (
                    "FUNCTION",
                    f.name().map(|n| n.syntax().clone()),
                    f.syntax().clone(),
                ),
                ast::Stmt::CreateProcedure(p) if p.or_replace().is_none() => (
                    "PROCEDURE",
                    p.name().map(|n| n.syntax().clone()),
                    p.syntax().clone(),
                ),
                _ => continue,
            };
            let name = name
                .and_then(|n| QualifiedName::of(&n))
                .map_or_else(|| "(unnamed)".into(), |n| n.to_string());
            sink.push(file.finding_at(
                Rule::CreateOrReplaceFunction,
                None,
                &node,
                format!("CREATE {kind} {name} has no OR REPLACE: running the file again fails because it already exists"),
                format!("write `CREATE OR REPLACE {kind} {name}`"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint_one, migration};

    const BODY: &str = "RETURNS TRIGGER AS $$\nBEGIN\n  NEW.updated_at = NOW();\n  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;";

    #[test]
    fn function_and_procedure_without_or_replace() {
        let sql = migration(
            "001_x",
            &format!("CREATE FUNCTION update_updated_at_column() {BODY}\nCREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$;"),
        );
        assert_eq!(
            lint_one(&sql, Rule::CreateOrReplaceFunction),
            [
                "001_x.sql:7:1 CREATE FUNCTION update_updated_at_column has no OR REPLACE: running the file again fails because it already exists",
                "001_x.sql:13:1 CREATE PROCEDURE p has no OR REPLACE: running the file again fails because it already exists",
            ]
        );
    }

    #[test]
    fn or_replace_passes() {
        let sql = migration(
            "001_x",
            &format!("CREATE OR REPLACE FUNCTION update_updated_at_column() {BODY}"),
        );
        assert!(lint_one(&sql, Rule::CreateOrReplaceFunction).is_empty());
    }
}
