//! `rerunnable-trigger`: a `CREATE TRIGGER` must survive a second run, as
//! `CREATE OR REPLACE TRIGGER` (PostgreSQL 14+) or after a
//! `DROP TRIGGER IF EXISTS` of the same trigger on the same table earlier in
//! the same file. The standard's own example (a bare
//! `CREATE TRIGGER update_x_updated_at BEFORE UPDATE ON x ...`) fails this
//! rule: its second run stops with "trigger already exists".

use squawk_syntax::ast::{self, AstNode};

use super::catalog::relation;
use super::Sink;
use crate::lint::names::{last_segment, QualifiedName};
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files {
        // DROP TRIGGER IF EXISTS seen so far in this file: (trigger, table).
        let mut dropped: Vec<(String, QualifiedName)> = Vec::new();
        for stmt in file.stmts() {
            match &stmt {
                ast::Stmt::DropTrigger(drop) if drop.if_exists().is_some() => {
                    let name = drop.trigger_ref().and_then(|t| last_segment(t.syntax()));
                    if let (Some(name), Some(table)) = (name, relation(drop.on_relation())) {
                        dropped.push((name, table));
                    }
                }
                ast::Stmt::CreateTrigger(create) if create.or_replace().is_none() => {
                    let name = create.trigger().and_then(|t| last_segment(t.syntax()));
                    let table = relation(create.on_relation());
                    let (Some(name), Some(table)) = (name, table) else {
                        continue;
                    };
                    if dropped.iter().any(|(n, t)| *n == name && t.matches(&table)) {
                        continue;
                    }
                    sink.push(file.finding_at(
                        Rule::RerunnableTrigger,
                        None,
                        create.syntax(),
                        format!("CREATE TRIGGER {name} fails when the file runs again: the trigger already exists"),
                        format!(
                            "put `DROP TRIGGER IF EXISTS {name} ON {table};` right before it \
                             (or write CREATE OR REPLACE TRIGGER, PostgreSQL 14+)"
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint_one, migration};

    const STANDARD: &str = "CREATE TRIGGER update_x_updated_at BEFORE UPDATE ON x FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();";

    fn check(body: &str) -> Vec<String> {
        lint_one(&migration("001_x", body), Rule::RerunnableTrigger)
    }

    #[test]
    fn the_standards_own_example_fails() {
        assert_eq!(
            check(STANDARD),
            ["001_x.sql:7:1 CREATE TRIGGER update_x_updated_at fails when the file runs again: the trigger already exists"]
        );
    }

    #[test]
    fn drop_if_exists_first_or_or_replace_passes() {
        let drop = format!("DROP TRIGGER IF EXISTS update_x_updated_at ON x;\n{STANDARD}");
        assert!(check(&drop).is_empty());
        let replace = STANDARD.replace("CREATE TRIGGER", "CREATE OR REPLACE TRIGGER");
        assert!(check(&replace).is_empty());
    }

    #[test]
    fn a_drop_of_another_trigger_after_or_without_if_exists_does_not_count() {
        assert_eq!(
            check(&format!("DROP TRIGGER IF EXISTS other ON x;\n{STANDARD}")).len(),
            1
        );
        assert_eq!(
            check(&format!(
                "DROP TRIGGER IF EXISTS update_x_updated_at ON y;\n{STANDARD}"
            ))
            .len(),
            1
        );
        assert_eq!(
            check(&format!(
                "{STANDARD}\nDROP TRIGGER IF EXISTS update_x_updated_at ON x;"
            ))
            .len(),
            1
        );
        assert_eq!(
            check(&format!(
                "DROP TRIGGER update_x_updated_at ON x;\n{STANDARD}"
            ))
            .len(),
            1
        );
    }
}
