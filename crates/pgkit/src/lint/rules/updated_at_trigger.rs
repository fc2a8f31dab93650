//! `updated-at-trigger`: a table with an `updated_at` column has a trigger
//! that runs `update_updated_at_column()` `BEFORE UPDATE ... FOR EACH ROW`,
//! somewhere in the migration set (the table and its trigger may be in
//! different files). Without it `updated_at` keeps the insert time forever;
//! with `AFTER`, or `FOR EACH STATEMENT`, the function's `NEW.updated_at`
//! assignment has no effect. Judged on the schema the whole set leaves.

use super::catalog::{Catalog, Table, Trigger};
use super::Sink;
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

const FUNCTION: &str = "update_updated_at_column";

pub(crate) fn check(files: &[SqlFile], catalog: &Catalog, sink: &mut Sink) {
    for table in &catalog.tables {
        let Some(column) = table.columns.iter().find(|c| c.name == "updated_at") else {
            continue;
        };
        let triggers: Vec<&Trigger> = catalog
            .triggers_on(&table.name)
            .filter(|t| t.function.as_deref() == Some(FUNCTION))
            .collect();
        if triggers.is_empty() {
            let file = &files[column.site.file];
            sink.push(file.finding(
                Rule::UpdatedAtTrigger,
                column.site.offset,
                format!(
                    "table {} has updated_at but no trigger runs {FUNCTION}() on it, so updated_at never changes after insert",
                    table.name
                ),
                trigger_fix(table),
            ));
        }
        for trigger in triggers.into_iter().filter(|t| !works(t)) {
            let file = &files[trigger.site.file];
            sink.push(file.finding(
                Rule::UpdatedAtTrigger,
                trigger.site.offset,
                format!(
                    "trigger {} runs {FUNCTION}() but not BEFORE UPDATE ... FOR EACH ROW, so updated_at is not set",
                    trigger.name
                ),
                format!("declare it `BEFORE UPDATE ON {} FOR EACH ROW`", table.name),
            ));
        }
    }
}

fn works(trigger: &Trigger) -> bool {
    trigger.before && trigger.on_update && trigger.for_each_row
}

fn trigger_fix(table: &Table) -> String {
    let trigger = format!("update_{}_updated_at", table.name.name);
    format!(
        "add `DROP TRIGGER IF EXISTS {trigger} ON {t};` and `CREATE TRIGGER {trigger} BEFORE UPDATE ON {t} \
         FOR EACH ROW EXECUTE FUNCTION {FUNCTION}();`",
        t = table.name
    )
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint, migration};

    const TABLE: &str = "CREATE TABLE IF NOT EXISTS x (\n  id int,\n  updated_at timestamptz\n);";
    const TRIGGER: &str = "DROP TRIGGER IF EXISTS update_x_updated_at ON x;\nCREATE TRIGGER update_x_updated_at BEFORE UPDATE ON x FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();";

    #[test]
    fn table_without_trigger_is_reported_at_its_updated_at_column() {
        let found = lint(
            &[("001_x.sql", &migration("001_x", TABLE))],
            Rule::UpdatedAtTrigger,
        );
        assert_eq!(
            found,
            ["001_x.sql:9:3 table x has updated_at but no trigger runs update_updated_at_column() on it, so updated_at never changes after insert"]
        );
    }

    #[test]
    fn trigger_in_a_later_file_counts() {
        let found = lint(
            &[
                ("001_x.sql", &migration("001_x", TABLE)),
                ("002_y.sql", &migration("002_y", TRIGGER)),
            ],
            Rule::UpdatedAtTrigger,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn after_or_statement_level_trigger_is_reported() {
        let after = TRIGGER.replace("BEFORE", "AFTER");
        let found = lint(
            &[(
                "001_x.sql",
                &migration("001_x", &format!("{TABLE}\n{after}")),
            )],
            Rule::UpdatedAtTrigger,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("not BEFORE UPDATE ... FOR EACH ROW"));
    }

    #[test]
    fn column_added_later_and_table_dropped_later() {
        let found = lint(
            &[
                (
                    "001_x.sql",
                    &migration("001_x", "CREATE TABLE IF NOT EXISTS x (id int);"),
                ),
                (
                    "002_y.sql",
                    &migration(
                        "002_y",
                        "ALTER TABLE x ADD COLUMN IF NOT EXISTS updated_at timestamptz;",
                    ),
                ),
            ],
            Rule::UpdatedAtTrigger,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("002_y.sql:7:15"), "{found:?}");
        let found = lint(
            &[
                ("001_x.sql", &migration("001_x", TABLE)),
                ("002_y.sql", &migration("002_y", "DROP TABLE IF EXISTS x;")),
            ],
            Rule::UpdatedAtTrigger,
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
