//! `seed-on-conflict`: every `INSERT` in `seeds/` has an `ON CONFLICT`
//! clause, so seeding runs any number of times (each deploy, each local
//! start) without duplicate rows or unique violations. Checked in top-level
//! statements and inside `DO` blocks. `INSERT … SELECT … WHERE … NOT EXISTS
//! (…)` (the standard's AI Prompt Seed Pattern) is re-runnable too and
//! passes.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::SyntaxKind;

use super::Sink;
use crate::lint::names::QualifiedName;
use crate::lint::rule::Rule;
use crate::lint::source::{FileKind, SqlFile};

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files.iter().filter(|f| f.kind == FileKind::Seed) {
        for located in file.stmts_with_bodies() {
            let root = located.stmt.syntax();
            for insert in root.descendants().filter_map(ast::Insert::cast) {
                if insert.on_conflict_clause().is_some()
                    || in_routine(insert.syntax())
                    || guarded_by_not_exists(&insert)
                {
                    continue;
                }
                let table = insert
                    .relation_name_ref()
                    .and_then(|r| QualifiedName::of(r.syntax()))
                    .map_or_else(|| "the table".into(), |n| n.to_string());
                sink.push(file.finding_at(
                    Rule::SeedOnConflict,
                    located.body,
                    insert.syntax(),
                    format!("INSERT INTO {table} in a seed has no ON CONFLICT, so seeding twice fails or duplicates rows"),
                    "add `ON CONFLICT (<unique columns>) DO NOTHING` (or `DO UPDATE SET ...` when the seed owns the values)",
                ));
            }
        }
    }
}

/// `INSERT … SELECT … WHERE … NOT EXISTS (…)`: a `WHERE` of the insert's
/// query holds `NOT EXISTS`, so a row already there is not inserted again.
fn guarded_by_not_exists(insert: &ast::Insert) -> bool {
    insert
        .syntax()
        .descendants()
        .filter_map(ast::WhereClause::cast)
        .any(|clause| {
            let mut previous_not = false;
            for token in clause
                .syntax()
                .descendants_with_tokens()
                .filter_map(|e| e.into_token())
                .filter(|t| !matches!(t.kind(), SyntaxKind::WHITESPACE | SyntaxKind::COMMENT))
            {
                if previous_not && token.kind() == SyntaxKind::EXISTS_KW {
                    return true;
                }
                previous_not = token.kind() == SyntaxKind::NOT_KW;
            }
            false
        })
}

/// Inside a function or procedure definition: defined here, not run.
fn in_routine(node: &squawk_syntax::SyntaxNode) -> bool {
    node.ancestors().any(|a| {
        ast::CreateFunction::can_cast(a.kind()) || ast::CreateProcedure::can_cast(a.kind())
    })
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::lint;

    #[test]
    fn insert_without_on_conflict_in_a_seed() {
        let found = lint(
            &[(
                "seeds/001_s.sql",
                "INSERT INTO roles (name) VALUES ('admin');\n",
            )],
            Rule::SeedOnConflict,
        );
        assert_eq!(
            found,
            ["seeds/001_s.sql:1:1 INSERT INTO roles in a seed has no ON CONFLICT, so seeding twice fails or duplicates rows"]
        );
    }

    #[test]
    fn inserts_inside_do_blocks_are_checked_too() {
        let sql = "DO $$\nBEGIN\n  INSERT INTO roles (name) VALUES ('a') ON CONFLICT DO NOTHING;\n  INSERT INTO roles (name) VALUES ('b');\nEND\n$$;\n";
        let found = lint(&[("seeds/001_s.sql", sql)], Rule::SeedOnConflict);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("seeds/001_s.sql:4:3"), "{found:?}");
    }

    #[test]
    fn the_ai_prompt_seed_patterns_not_exists_guard_passes() {
        let sql = "INSERT INTO prompts (name, body)\nSELECT 'summarise', 'Summarise the text'\nWHERE current_setting('app.environment', true) IS NOT NULL\n  AND NOT EXISTS (SELECT 1 FROM prompts WHERE name = 'summarise');\n";
        assert_eq!(
            lint(&[("seeds/001_s.sql", sql)], Rule::SeedOnConflict),
            Vec::<String>::new()
        );
        let unguarded =
            "INSERT INTO prompts (name) SELECT 'x' WHERE EXISTS (SELECT 1 FROM roles);\n";
        assert_eq!(
            lint(&[("seeds/001_s.sql", unguarded)], Rule::SeedOnConflict).len(),
            1
        );
    }

    #[test]
    fn on_conflict_passes_and_migrations_are_not_seeds() {
        let seed = "INSERT INTO roles (name) VALUES ('admin') ON CONFLICT (name) DO NOTHING;";
        assert!(lint(&[("seeds/001_s.sql", seed)], Rule::SeedOnConflict).is_empty());
        let migration = "INSERT INTO roles (name) VALUES ('admin');";
        assert!(lint(&[("001_m.sql", migration)], Rule::SeedOnConflict).is_empty());
    }
}
