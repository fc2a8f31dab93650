//! `data-environment-guard`: test data in `data/` writes only when
//! `current_setting('app.environment', true)` says so (DESIGN §4), because
//! the same folder ships to production. Each `INSERT`, `UPDATE`, `DELETE` or
//! `MERGE` must either carry the guard itself
//! (`INSERT ... SELECT ... WHERE current_setting('app.environment', true) = 'test'`)
//! or sit in a `DO` block that tests `current_setting('app.environment', ...)`
//! before it (an enclosing `IF`, or an early `RETURN`). A data file with no
//! visible write and no guard at all (say, it calls a loader function) is
//! reported once, at its top.
//!
//! The rule checks that the guard is there, not which value it compares
//! with; the comparison is the author's.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::SyntaxNode;

use super::Sink;
use crate::lint::names::called_function;
use crate::lint::rule::Rule;
use crate::lint::source::{FileKind, SqlFile};

const GUARD: &str = "app.environment";

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files.iter().filter(|f| f.kind == FileKind::Data) {
        check_file(file, sink);
    }
}

fn check_file(file: &SqlFile, sink: &mut Sink) {
    let located = file.stmts_with_bodies();
    let mut writes = 0;
    let mut guarded_anywhere = false;
    for l in &located {
        let guard_before = |write: &SyntaxNode| -> bool {
            let Some(body) = l.body else {
                return false;
            };
            let start = write.text_range().start();
            file.bodies[body]
                .code
                .syntax()
                .descendants()
                .filter_map(ast::CallExpr::cast)
                .any(|call| is_guard(&call) && call.syntax().text_range().start() < start)
        };
        if has_guard(l.stmt.syntax()) {
            guarded_anywhere = true;
        }
        let Some(write) = write_kind(&l.stmt) else {
            continue;
        };
        writes += 1;
        if has_guard(l.stmt.syntax()) || guard_before(l.stmt.syntax()) {
            continue;
        }
        sink.push(file.finding_at(
            Rule::DataEnvironmentGuard,
            l.body,
            l.stmt.syntax(),
            format!("{write} in data/ runs in every environment: it has no app.environment guard"),
            fix(),
        ));
    }
    let guarded_anywhere =
        guarded_anywhere || file.bodies.iter().any(|b| has_guard(&b.code.syntax()));
    let only_transaction_control = located.iter().all(|l| {
        matches!(
            l.stmt,
            ast::Stmt::Begin(_) | ast::Stmt::Commit(_) | ast::Stmt::EmptyStmt(_)
        )
    });
    if writes == 0 && !guarded_anywhere && !only_transaction_control {
        sink.push_file_level(file.finding(
            Rule::DataEnvironmentGuard,
            0,
            "this data/ file has no app.environment guard, so whatever it does runs in production too",
            fix(),
        ));
    }
}

fn fix() -> String {
    format!(
        "wrap the writes in `DO $$ BEGIN IF current_setting('{GUARD}', true) = 'test' THEN ... END IF; END $$;` \
         or add `WHERE current_setting('{GUARD}', true) = 'test'` to each INSERT ... SELECT"
    )
}

fn write_kind(stmt: &ast::Stmt) -> Option<&'static str> {
    match stmt {
        ast::Stmt::Insert(_) => Some("INSERT"),
        ast::Stmt::Update(_) => Some("UPDATE"),
        ast::Stmt::Delete(_) => Some("DELETE"),
        ast::Stmt::Merge(_) => Some("MERGE"),
        _ => None,
    }
}

fn has_guard(node: &SyntaxNode) -> bool {
    node.descendants()
        .filter_map(ast::CallExpr::cast)
        .any(|call| is_guard(&call))
}

/// `current_setting('app.environment' [, missing_ok])`.
fn is_guard(call: &ast::CallExpr) -> bool {
    if called_function(call).as_deref() != Some("current_setting") {
        return false;
    }
    let first_arg = call
        .arg_list()
        .and_then(|args| args.syntax().descendants().find_map(ast::Literal::cast));
    first_arg
        .and_then(|lit| lit.string_value())
        .is_some_and(|name| name.eq_ignore_ascii_case(GUARD))
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::lint;

    fn check(sql: &str) -> Vec<String> {
        lint(&[("data/001_d.sql", sql)], Rule::DataEnvironmentGuard)
    }

    #[test]
    fn unguarded_insert_is_reported() {
        assert_eq!(
            check("BEGIN;\nINSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING;\nCOMMIT;\n"),
            ["data/001_d.sql:2:1 INSERT in data/ runs in every environment: it has no app.environment guard"]
        );
    }

    #[test]
    fn guard_in_the_statement_passes() {
        let sql =
            "INSERT INTO t (a) SELECT 1 WHERE current_setting('app.environment', true) = 'test';";
        assert!(check(sql).is_empty());
    }

    #[test]
    fn do_block_with_enclosing_if_or_early_return_passes() {
        let enclosing = "DO $$\nBEGIN\n  IF current_setting('app.environment', true) = 'test' THEN\n    INSERT INTO t VALUES (1);\n  END IF;\nEND\n$$;";
        assert!(check(enclosing).is_empty());
        let early = "DO $$\nBEGIN\n  IF current_setting('app.environment', true) IS DISTINCT FROM 'test' THEN\n    RETURN;\n  END IF;\n  DELETE FROM t;\n  UPDATE t SET a = 2;\nEND\n$$;";
        assert!(check(early).is_empty());
    }

    #[test]
    fn write_before_the_guard_in_a_do_block_is_reported() {
        let sql = "DO $$\nBEGIN\n  DELETE FROM t;\n  IF current_setting('app.environment', true) <> 'test' THEN RETURN; END IF;\nEND\n$$;";
        assert_eq!(
            check(sql),
            ["data/001_d.sql:3:3 DELETE in data/ runs in every environment: it has no app.environment guard"]
        );
    }

    #[test]
    fn another_setting_is_not_the_guard() {
        let sql = "INSERT INTO t (a) SELECT 1 WHERE current_setting('app.tenant', true) = 'x';";
        assert_eq!(check(sql).len(), 1);
    }

    #[test]
    fn file_without_writes_or_guard_is_reported_once() {
        assert_eq!(
            check("BEGIN;\nSELECT load_fixtures();\nCOMMIT;\n"),
            ["data/001_d.sql:1:1 this data/ file has no app.environment guard, so whatever it does runs in production too"]
        );
    }

    #[test]
    fn seeds_and_migrations_need_no_guard() {
        let sql = "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING;";
        assert!(lint(
            &[("seeds/001_s.sql", sql), ("001_m.sql", sql)],
            Rule::DataEnvironmentGuard
        )
        .is_empty());
    }
}
