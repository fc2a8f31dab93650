//! `jsonb-column-comment`: every `JSONB` column has a `COMMENT ON COLUMN`
//! saying what shape the document has. The database does not know the shape
//! of a JSONB value, so the comment is the only schema the next reader gets.

use super::catalog::Catalog;
use super::Sink;
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], catalog: &Catalog, sink: &mut Sink) {
    for table in &catalog.tables {
        for column in table
            .columns
            .iter()
            .filter(|c| c.jsonb && !catalog.column_has_comment(&table.name, &c.name))
        {
            sink.push(files[column.site.file].finding(
                Rule::JsonbColumnComment,
                column.site.offset,
                format!(
                    "JSONB column {}.{} has no COMMENT ON COLUMN describing its shape",
                    table.name, column.name
                ),
                format!(
                    "add `COMMENT ON COLUMN {}.{} IS '<keys and types it holds>';`",
                    table.name, column.name
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint, migration};

    const TABLE: &str = "CREATE TABLE IF NOT EXISTS t (\n  id int,\n  metadata JSONB NOT NULL DEFAULT '{}',\n  context jsonb\n);\nCOMMENT ON TABLE t IS 'x';";

    #[test]
    fn each_uncommented_jsonb_column_is_reported_at_the_column() {
        let found = lint(
            &[("001_x.sql", &migration("001_x", TABLE))],
            Rule::JsonbColumnComment,
        );
        assert_eq!(
            found,
            [
                "001_x.sql:9:3 JSONB column t.metadata has no COMMENT ON COLUMN describing its shape",
                "001_x.sql:10:3 JSONB column t.context has no COMMENT ON COLUMN describing its shape",
            ]
        );
    }

    #[test]
    fn commented_columns_pass_including_schema_qualified_comments() {
        let sql = format!(
            "{TABLE}\nCOMMENT ON COLUMN t.metadata IS 'a';\nCOMMENT ON COLUMN public.t.context IS 'b';"
        );
        assert!(lint(
            &[("001_x.sql", &migration("001_x", &sql))],
            Rule::JsonbColumnComment
        )
        .is_empty());
    }

    #[test]
    fn an_allow_above_the_column_inside_create_table_suppresses_it() {
        let sql = "CREATE TABLE IF NOT EXISTS t (\n  id int,\n  -- pgkit:allow jsonb-column-comment shape owned by the billing service, see its docs\n  metadata jsonb\n);\nCOMMENT ON TABLE t IS 'x';";
        assert!(lint(
            &[("001_x.sql", &migration("001_x", sql))],
            Rule::JsonbColumnComment
        )
        .is_empty());
    }
}
