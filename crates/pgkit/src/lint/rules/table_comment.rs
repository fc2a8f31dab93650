//! `table-comment`: every table the migration set creates has a
//! `COMMENT ON TABLE`, in any file, so the schema explains itself in `\d+`
//! and to `pgkit audit`. `COMMENT ... IS NULL` removes a comment and does not
//! count. Temporary tables are exempt.

use super::catalog::Catalog;
use super::Sink;
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], catalog: &Catalog, sink: &mut Sink) {
    for table in catalog
        .tables
        .iter()
        .filter(|t| !catalog.table_has_comment(&t.name))
    {
        sink.push(files[table.site.file].finding(
            Rule::TableComment,
            table.site.offset,
            format!("table {} has no COMMENT ON TABLE", table.name),
            format!(
                "add `COMMENT ON TABLE {} IS '<what a row is, who writes it>';` after the CREATE TABLE",
                table.name
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint, migration};

    #[test]
    fn table_without_comment_is_reported_at_its_create() {
        let found = lint(
            &[(
                "001_x.sql",
                &migration("001_x", "CREATE TABLE IF NOT EXISTS app.users (id int);"),
            )],
            Rule::TableComment,
        );
        assert_eq!(
            found,
            ["001_x.sql:7:1 table app.users has no COMMENT ON TABLE"]
        );
    }

    #[test]
    fn comment_in_a_later_file_counts_and_is_null_does_not() {
        let create = migration("001_x", "CREATE TABLE IF NOT EXISTS users (id int);");
        let comment = migration("002_y", "COMMENT ON TABLE users IS 'People who sign in';");
        assert!(lint(
            &[("001_x.sql", &create), ("002_y.sql", &comment)],
            Rule::TableComment
        )
        .is_empty());
        let removed = migration("003_z", "COMMENT ON TABLE users IS NULL;");
        let found = lint(
            &[
                ("001_x.sql", &create),
                ("002_y.sql", &comment),
                ("003_z.sql", &removed),
            ],
            Rule::TableComment,
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }
}
