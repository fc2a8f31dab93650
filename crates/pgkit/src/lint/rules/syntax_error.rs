//! `syntax-error`: the file must parse. Every other rule reads the syntax
//! tree, so a statement the parser could not read is a statement no rule
//! checked. The parser is squawk's PostgreSQL grammar, not the server's own:
//! when PostgreSQL accepts a statement that it rejects, allow it with a reason.

use super::Sink;
use crate::lint::rule::Rule;
use crate::lint::source::SqlFile;

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files {
        for error in &file.syntax_errors {
            sink.push(file.finding(
                Rule::SyntaxError,
                usize::from(error.range().start()),
                format!("cannot parse this SQL: {}", error.message()),
                "fix the statement; if PostgreSQL 15 accepts it as written, put \
                 `-- pgkit:allow syntax-error <reason>` on the line above it",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint_one, migration};

    #[test]
    fn broken_statement_is_reported_where_it_breaks() {
        let sql = migration("001_x", "CREATE TABLE IF NOT EXISTS t (id int,);");
        let found = lint_one(&sql, Rule::SyntaxError);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("001_x.sql:7:"), "{found:?}");
    }

    #[test]
    fn valid_sql_has_no_syntax_error() {
        let sql = migration("001_x", "SELECT 1;");
        assert!(lint_one(&sql, Rule::SyntaxError).is_empty());
    }
}
