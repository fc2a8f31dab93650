//! `migration-header`: every migration opens with the standard's comment
//! block, `-- Migration:`, `-- Issue:`, `-- Date:`, `-- Author:`,
//! `-- Description:`, each with a value. `Date` is `YYYY-MM-DD` and
//! `Migration` names the file (with or without `.sql`, or by its number
//! alone), so a copied header that was not updated shows. Only files in the migrations folder itself: seeds and
//! test data have no template of their own.
//!
//! The header is the comment tokens before the first statement; each line
//! `Field: value` of them is read, other lines (continuations) are ignored.

use chrono::NaiveDate;

use squawk_syntax::ast::AstNode;

use super::Sink;
use crate::lint::rule::Rule;
use crate::lint::source::{FileKind, SqlFile};

const FIELDS: [&str; 5] = ["Migration", "Issue", "Date", "Author", "Description"];

/// One `Field: value` line of the header and the offset of its comment.
struct Field {
    key: &'static str,
    value: String,
    offset: usize,
}

pub(crate) fn check(files: &[SqlFile], sink: &mut Sink) {
    for file in files.iter().filter(|f| f.kind == FileKind::Migration) {
        check_file(file, sink);
    }
}

fn check_file(file: &SqlFile, sink: &mut Sink) {
    let fields = header_fields(file);
    if fields.is_empty() {
        sink.push_file_level(file.finding(
            Rule::MigrationHeader,
            0,
            "the file has no header comment (Migration, Issue, Date, Author, Description)",
            format!(
                "start the file with the standard's header:\n{}",
                template(file)
            ),
        ));
        return;
    }
    for key in FIELDS {
        match fields.iter().find(|f| f.key == key) {
            None => sink.push_file_level(file.finding(
                Rule::MigrationHeader,
                0,
                format!("the header comment has no `{key}:` field"),
                format!(
                    "add `-- {key}: {}` to the comment block at the top",
                    example(key, file)
                ),
            )),
            Some(field) if field.value.is_empty() => sink.push(file.finding(
                Rule::MigrationHeader,
                field.offset,
                format!("the header field `{key}:` is empty"),
                format!("write a value: `-- {key}: {}`", example(key, file)),
            )),
            Some(field) => check_value(file, field, sink),
        }
    }
}

fn check_value(file: &SqlFile, field: &Field, sink: &mut Sink) {
    if is_placeholder(&field.value) {
        sink.push(file.finding(
            Rule::MigrationHeader,
            field.offset,
            format!(
                "the header `{}: {}` is still a placeholder",
                field.key, field.value
            ),
            format!(
                "write the real value: `-- {}: {}`",
                field.key,
                example(field.key, file)
            ),
        ));
        return;
    }
    match field.key {
        "Date" if !is_iso_date(&field.value) => sink.push(file.finding(
            Rule::MigrationHeader,
            field.offset,
            format!(
                "the header `Date: {}` is not a date in YYYY-MM-DD form",
                field.value
            ),
            "write the date the migration was written, e.g. `-- Date: 2025-01-15`",
        )),
        "Migration" if !names_file(&field.value, file) => sink.push(file.finding(
            Rule::MigrationHeader,
            field.offset,
            format!(
                "the header `Migration: {}` does not name this file ({})",
                field.value,
                file.stem()
            ),
            format!(
                "write `-- Migration: {}.sql` (a header copied from another file?)",
                file.stem()
            ),
        )),
        _ => {}
    }
}

/// Whether the header's `Migration:` value names this file: its name with or
/// without `.sql` (the standard's template writes `00X_description.sql`), or
/// just its number (`002`), which cannot be a header copied from another file.
fn names_file(value: &str, file: &SqlFile) -> bool {
    let stem = file.stem();
    let value = value.strip_suffix(".sql").unwrap_or(value);
    if value == stem {
        return true;
    }
    let number: String = stem.chars().take_while(char::is_ascii_digit).collect();
    !number.is_empty() && value == number
}

/// The standard's fields found in the leading comment block, first wins.
fn header_fields(file: &SqlFile) -> Vec<Field> {
    let mut fields: Vec<Field> = Vec::new();
    for element in file.tree.syntax().children_with_tokens() {
        let Some(token) = element.as_token() else {
            break; // the first statement ends the header
        };
        if token.kind() != squawk_syntax::SyntaxKind::COMMENT {
            continue;
        }
        let offset = usize::from(token.text_range().start());
        for line in comment_lines(token.text()) {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let Some(key) = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(key.trim())) else {
                continue;
            };
            if !fields.iter().any(|f| f.key == *key) {
                fields.push(Field {
                    key,
                    value: value.trim().to_owned(),
                    offset,
                });
            }
        }
    }
    fields
}

/// The text lines of a `--` or `/* */` comment, without the comment markers.
fn comment_lines(comment: &str) -> Vec<&str> {
    if let Some(line) = comment.strip_prefix("--") {
        return vec![line.trim()];
    }
    let inner = comment
        .strip_prefix("/*")
        .map_or(comment, |c| c.strip_suffix("*/").unwrap_or(c));
    inner
        .lines()
        .map(|l| l.trim().trim_start_matches('*').trim())
        .collect()
}

/// A value left as the template wrote it: `<who wrote it>` (what `pgkit
/// migrate new` writes for a field it was not given), or the `(none)` and
/// `(unknown)` older versions wrote.
fn is_placeholder(value: &str) -> bool {
    (value.starts_with('<') && value.ends_with('>'))
        || matches!(value, "(none)" | "(unknown)" | "TODO" | "TBD")
}

fn is_iso_date(value: &str) -> bool {
    value.len() == 10 && NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok()
}

fn example(key: &str, file: &SqlFile) -> String {
    match key {
        "Migration" => format!("{}.sql", file.stem()),
        "Issue" => "<issue id, e.g. DAVE-123>".into(),
        "Date" => "<YYYY-MM-DD>".into(),
        "Author" => "<who wrote it>".into(),
        _ => "<what this migration does>".into(),
    }
}

fn template(file: &SqlFile) -> String {
    FIELDS
        .iter()
        .map(|key| format!("-- {key}: {}", example(key, file)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use crate::lint::rule::Rule;
    use crate::lint::rules::test_support::{lint, lint_one};

    const GOOD: &str = "-- Migration: 001_x\n-- Issue: DAVE-123\n-- Date: 2025-01-15\n-- Author: Jane Doe\n-- Description: Create users table\nBEGIN;\nSELECT 1;\nCOMMIT;\n";

    #[test]
    fn the_standard_template_passes() {
        assert_eq!(lint_one(GOOD, Rule::MigrationHeader), Vec::<String>::new());
    }

    #[test]
    fn the_header_may_name_the_file_with_sql_or_by_its_number() {
        for name in ["001_x.sql", "001"] {
            let sql = GOOD.replace("-- Migration: 001_x\n", &format!("-- Migration: {name}\n"));
            assert_eq!(
                lint_one(&sql, Rule::MigrationHeader),
                Vec::<String>::new(),
                "{name}"
            );
        }
        let other = GOOD.replace("-- Migration: 001_x\n", "-- Migration: 002_x.sql\n");
        assert_eq!(lint_one(&other, Rule::MigrationHeader).len(), 1);
    }

    #[test]
    fn placeholders_are_reported() {
        let sql = GOOD
            .replace("DAVE-123", "<issue id, e.g. DAVE-123>")
            .replace("Jane Doe", "(unknown)");
        assert_eq!(
            lint_one(&sql, Rule::MigrationHeader),
            [
                "001_x.sql:2:1 the header `Issue: <issue id, e.g. DAVE-123>` is still a placeholder",
                "001_x.sql:4:1 the header `Author: (unknown)` is still a placeholder",
            ]
        );
    }

    #[test]
    fn each_missing_field_is_one_finding_at_the_top() {
        let sql = GOOD
            .replace("-- Issue: DAVE-123\n", "")
            .replace("-- Author: Jane Doe\n", "");
        assert_eq!(
            lint_one(&sql, Rule::MigrationHeader),
            [
                "001_x.sql:1:1 the header comment has no `Issue:` field",
                "001_x.sql:1:1 the header comment has no `Author:` field",
            ]
        );
    }

    #[test]
    fn no_header_at_all_is_one_finding() {
        assert_eq!(
            lint_one("BEGIN;\nSELECT 1;\nCOMMIT;\n", Rule::MigrationHeader),
            ["001_x.sql:1:1 the file has no header comment (Migration, Issue, Date, Author, Description)"]
        );
    }

    #[test]
    fn empty_value_bad_date_and_wrong_name_point_at_their_line() {
        let sql = GOOD
            .replace("001_x\n", "002_other\n")
            .replace("2025-01-15", "15/01/2025")
            .replace("Jane Doe", "");
        assert_eq!(
            lint_one(&sql, Rule::MigrationHeader),
            [
                "001_x.sql:1:1 the header `Migration: 002_other` does not name this file (001_x)",
                "001_x.sql:3:1 the header `Date: 15/01/2025` is not a date in YYYY-MM-DD form",
                "001_x.sql:4:1 the header field `Author:` is empty",
            ]
        );
    }

    #[test]
    fn comments_after_the_first_statement_are_not_the_header() {
        let sql = "BEGIN;\n-- Migration: 001_x\n-- Issue: X\n-- Date: 2025-01-15\n-- Author: A\n-- Description: D\nCOMMIT;\n";
        assert_eq!(lint_one(sql, Rule::MigrationHeader).len(), 1);
    }

    #[test]
    fn block_comment_header_counts() {
        let sql = "/*\n * Migration: 001_x\n * Issue: X\n * Date: 2025-01-15\n * Author: A\n * Description: D\n */\nBEGIN;\nCOMMIT;\n";
        assert!(lint_one(sql, Rule::MigrationHeader).is_empty());
    }

    #[test]
    fn seeds_and_data_need_no_header() {
        let found = lint(
            &[
                ("seeds/001_s.sql", "SELECT 1;"),
                ("data/001_d.sql", "SELECT 1;"),
            ],
            Rule::MigrationHeader,
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
