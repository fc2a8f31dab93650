//! `-- pgkit:allow RULE reason`: a comment on the line directly above a
//! finding suppresses one finding of that rule on that line. Several allow
//! comments may be stacked on consecutive lines (one per finding). Findings
//! about the file as a whole (a missing header field) are suppressed by an
//! allow comment for their rule anywhere in the leading comment block. An allow comment without a reason, with an
//! unknown rule, or sharing its line with code is itself a finding and
//! suppresses nothing: the reason is what a reviewer reads later.
//!
//! Comments are read as comment tokens of the syntax tree (and of `DO`
//! bodies), never by scanning the SQL text.

use squawk_syntax::ast::AstNode;
use squawk_syntax::{SyntaxKind, SyntaxToken};

use super::report::Finding;
use super::rule::Rule;
use super::source::{start, SqlFile};

const DIRECTIVE: &str = "pgkit:allow";

/// The valid allow comments of one file.
#[derive(Debug, Default)]
pub(crate) struct Allows {
    /// One entry per rule named by an allow comment, by the comment's last line.
    entries: Vec<Entry>,
    /// Rules allowed in the leading comment block (file-level findings).
    in_header: Vec<Rule>,
}

#[derive(Debug)]
struct Entry {
    line: u32,
    rule: Rule,
    used: bool,
}

impl Allows {
    /// Reads every allow comment of `file`; malformed ones go to `invalid`.
    pub fn collect(file: &SqlFile, invalid: &mut Vec<Finding>) -> Allows {
        let mut allows = Allows::default();
        let header_end = file
            .tree
            .syntax()
            .children()
            .next()
            .map_or(file.text.len(), |first| start(&first));
        for comment in comments(file) {
            let Some(rest) = directive(&comment.text) else {
                continue;
            };
            match parse(rest) {
                Ok(rules) if code_before(file, comment.start) => {
                    invalid.push(file.finding(
                        Rule::InvalidSuppression,
                        comment.start,
                        "a pgkit:allow comment after code on the same line suppresses nothing",
                        format!(
                            "put `-- {DIRECTIVE} {} <reason>` on a line of its own, directly above the finding",
                            join(&rules)
                        ),
                    ));
                }
                Ok(rules) => {
                    if comment.start < header_end {
                        allows.in_header.extend(rules.iter().copied());
                    }
                    let line = file.line_of(comment.end.saturating_sub(1));
                    allows.entries.extend(rules.into_iter().map(|rule| Entry {
                        line,
                        rule,
                        used: false,
                    }));
                }
                Err((message, fix)) => {
                    invalid.push(file.finding(
                        Rule::InvalidSuppression,
                        comment.start,
                        message,
                        fix,
                    ));
                }
            }
        }
        allows
    }

    /// Whether an allow comment covers `finding`: on the line above it, or on
    /// a run of allow-comment lines ending there; for file-level findings also
    /// anywhere in the header. A line's allow comment is spent on the first
    /// finding it covers.
    pub fn take(&mut self, finding: &Finding, file_level: bool) -> bool {
        // The runner refuses such a file whatever a comment says.
        if matches!(finding.rule, Rule::InvalidSuppression | Rule::MigrationFile) {
            return false;
        }
        if file_level && self.in_header.contains(&finding.rule) {
            return true;
        }
        let mut line = finding.line;
        while line > 1 {
            line -= 1;
            let mut on_line = self
                .entries
                .iter_mut()
                .filter(|e| e.line == line)
                .peekable();
            if on_line.peek().is_none() {
                return false;
            }
            if let Some(entry) = on_line.find(|e| e.rule == finding.rule && !e.used) {
                entry.used = true;
                return true;
            }
        }
        false
    }
}

struct Comment {
    text: String,
    start: usize,
    end: usize,
}

/// Comment tokens of the file and of its `DO` bodies, with file offsets.
fn comments(file: &SqlFile) -> Vec<Comment> {
    let outer = file
        .tree
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(is_comment)
        .map(|t| Comment {
            text: t.text().to_owned(),
            start: usize::from(t.text_range().start()),
            end: usize::from(t.text_range().end()),
        });
    let inner = file.bodies.iter().flat_map(|body| {
        body.code
            .syntax()
            .descendants_with_tokens()
            .filter_map(|e| e.into_token())
            .filter(is_comment)
            .map(|t| {
                let range = body.code.source_range(t.text_range());
                Comment {
                    text: t.text().to_owned(),
                    start: usize::from(range.start()),
                    end: usize::from(range.end()),
                }
            })
            .collect::<Vec<_>>()
    });
    let mut all: Vec<Comment> = outer.chain(inner).collect();
    all.sort_by_key(|c| c.start);
    all
}

fn is_comment(token: &SyntaxToken) -> bool {
    token.kind() == SyntaxKind::COMMENT
}

/// The text after `pgkit:allow` when the comment is an allow comment.
fn directive(comment: &str) -> Option<&str> {
    let body = comment
        .strip_prefix("--")
        .or_else(|| comment.strip_prefix("/*").map(|b| b.trim_end_matches("*/")))?;
    let rest = body.trim_start().strip_prefix(DIRECTIVE)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// `RULE[,RULE...] reason` -> the rules, or the message and fix of what is wrong.
fn parse(rest: &str) -> Result<Vec<Rule>, (String, String)> {
    let rest = rest.trim();
    let (ids, reason) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(ids, reason)| (ids, reason.trim()));
    if ids.is_empty() {
        return Err((
            "pgkit:allow names no rule".into(),
            format!("write `-- {DIRECTIVE} RULE reason`, with a rule id from docs/lint-rules.md"),
        ));
    }
    let mut rules = Vec::new();
    for id in ids.split(',').filter(|id| !id.is_empty()) {
        match id.parse::<Rule>() {
            Ok(rule) => rules.push(rule),
            Err(err) => {
                return Err((
                    format!("pgkit:allow names {err}"),
                    "use one of the rule ids from docs/lint-rules.md".into(),
                ))
            }
        }
    }
    if reason.is_empty() {
        return Err((
            format!("`pgkit:allow {ids}` gives no reason, so it suppresses nothing"),
            format!("say why the finding is acceptable: `-- {DIRECTIVE} {ids} <reason>`"),
        ));
    }
    Ok(rules)
}

/// Whether anything but whitespace precedes `offset` on its line.
fn code_before(file: &SqlFile, offset: usize) -> bool {
    let before = file.text.get(..offset).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    !before[line_start..].trim().is_empty()
}

fn join(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::source::FileKind;

    fn allows(sql: &str) -> (Allows, Vec<Finding>) {
        let file = SqlFile::parse("001_x.sql".into(), FileKind::Migration, sql.into());
        let mut invalid = Vec::new();
        (Allows::collect(&file, &mut invalid), invalid)
    }

    fn at(line: u32, rule: Rule) -> Finding {
        Finding {
            file: "001_x.sql".into(),
            line,
            col: 1,
            rule,
            severity: rule.severity(),
            message: String::new(),
            fix: String::new(),
        }
    }

    #[test]
    fn directive_needs_the_exact_word() {
        assert_eq!(
            directive("-- pgkit:allow drop-table r"),
            Some(" drop-table r")
        );
        assert_eq!(
            directive("/* pgkit:allow drop-table r */"),
            Some(" drop-table r ")
        );
        assert_eq!(directive("-- pgkit:allowed drop-table"), None);
        assert_eq!(directive("-- see pgkit:allow"), None);
    }

    #[test]
    fn allow_covers_the_next_line_only() {
        let sql = "SELECT 1;\n-- pgkit:allow drop-table replaced by t2 in 004\nDROP TABLE t;\n\nDROP TABLE u;\n";
        let (mut allows, invalid) = allows(sql);
        assert!(invalid.is_empty());
        assert!(allows.take(&at(3, Rule::DropTable), false));
        assert!(!allows.take(&at(3, Rule::DropColumn), false));
        assert!(!allows.take(&at(5, Rule::DropTable), false));
    }

    #[test]
    fn one_allow_is_spent_on_one_finding() {
        let sql = "-- pgkit:allow drop-table both were replaced\nDROP TABLE a; DROP TABLE b;\n";
        let (mut allows, _) = allows(sql);
        assert!(allows.take(&at(2, Rule::DropTable), false));
        assert!(!allows.take(&at(2, Rule::DropTable), false));
    }

    #[test]
    fn stacked_allows_and_lists_both_count() {
        let sql = "-- pgkit:allow drop-table gone\n-- pgkit:allow table-comment,jsonb-column-comment legacy\nDROP TABLE t;\n";
        let (mut allows, _) = allows(sql);
        assert!(allows.take(&at(3, Rule::DropTable), false));
        assert!(allows.take(&at(3, Rule::JsonbColumnComment), false));
    }

    #[test]
    fn allow_without_reason_is_reported_and_suppresses_nothing() {
        let sql = "SELECT 1;\n-- pgkit:allow drop-table\nDROP TABLE t;\n";
        let (mut allows, invalid) = allows(sql);
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].rule, Rule::InvalidSuppression);
        assert_eq!((invalid[0].line, invalid[0].col), (2, 1));
        assert!(invalid[0].message.contains("gives no reason"));
        assert!(!allows.take(&at(3, Rule::DropTable), false));
    }

    #[test]
    fn unknown_rule_and_missing_rule_are_reported() {
        let (_, invalid) =
            allows("-- pgkit:allow drop-everything because\n-- pgkit:allow\nSELECT 1;\n");
        assert_eq!(invalid.len(), 2);
        assert!(invalid[0]
            .message
            .contains("unknown lint rule `drop-everything`"));
        assert!(invalid[1].message.contains("names no rule"));
    }

    #[test]
    fn allow_after_code_is_reported() {
        let (mut allows, invalid) =
            allows("SELECT 1; -- pgkit:allow drop-table why\nDROP TABLE t;\n");
        assert_eq!(invalid.len(), 1);
        assert!(!allows.take(&at(2, Rule::DropTable), false));
    }

    #[test]
    fn header_allow_covers_file_level_findings() {
        let sql = "-- Migration: 001_x\n-- pgkit:allow migration-header imported from a vendor\n\nSELECT 1;\n";
        let (mut allows, _) = allows(sql);
        assert!(allows.take(&at(1, Rule::MigrationHeader), true));
        assert!(!allows.take(&at(1, Rule::MigrationHeader), false));
    }

    #[test]
    fn allows_inside_do_bodies_count() {
        let sql = "DO $$\nBEGIN\n  -- pgkit:allow seed-on-conflict guarded by IF NOT EXISTS\n  INSERT INTO t VALUES (1);\nEND\n$$;\n";
        let (mut allows, invalid) = allows(sql);
        assert!(invalid.is_empty());
        assert!(allows.take(&at(4, Rule::SeedOnConflict), false));
    }
}
