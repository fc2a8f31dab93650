//! Lint's findings: plain values at `file:line:col`, held and rendered by the
//! report shared with audit ([`crate::findings`]): text for people
//! (`file:line:col: severity[rule] message` plus the fix) or JSON for tools.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::rule::Rule;
use crate::findings::{Entry, Findings, Severity};

/// One broken rule at one place. `line` and `col` are 1-based; `col` counts
/// characters, not bytes, so editors jump to the right spot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
    pub rule: Rule,
    pub severity: Severity,
    /// What is wrong and why it matters.
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

impl Entry for Finding {
    const CHECKED: &'static str = "file";
    const CHECKED_KEY: &'static str = "files_checked";

    fn severity(&self) -> Severity {
        self.severity
    }

    /// `file:line:col: severity[rule] message`, the first line of the text form.
    fn headline(&self) -> String {
        format!(
            "{}:{}:{}: {}[{}] {}",
            self.file.display(),
            self.line,
            self.col,
            self.severity,
            self.rule,
            self.message
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "file": self.file.display().to_string(),
            "line": self.line,
            "col": self.col,
            "rule": self.rule.as_str(),
            "severity": self.severity.as_str(),
            "message": self.message,
            "fix": self.fix,
        })
    }

    /// Continuation lines of a multi-line fix line up under its first.
    fn fix_text(&self) -> String {
        self.fix.replace('\n', "\n       ")
    }
}

/// Everything one lint run found, in file order, then line and column; the
/// shared report of [`crate::findings`].
pub type Report = Findings<Finding>;

impl Findings<Finding> {
    pub(crate) fn new(findings: Vec<Finding>, files_checked: usize) -> Self {
        Findings::from_parts(findings, files_checked)
    }

    pub fn files_checked(&self) -> usize {
        self.checked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: Rule) -> Finding {
        Finding {
            file: PathBuf::from("m/001_x.sql"),
            line: 3,
            col: 7,
            rule,
            severity: rule.severity(),
            message: "CREATE TABLE t has no IF NOT EXISTS".into(),
            fix: "write CREATE TABLE IF NOT EXISTS t".into(),
        }
    }

    #[test]
    fn text_form_is_location_severity_rule_message_then_fix() {
        let report = Report::new(
            vec![finding(Rule::CreateIfNotExists), finding(Rule::DropTable)],
            2,
        );
        assert_eq!(
            report.to_text(),
            "m/001_x.sql:3:7: error[create-if-not-exists] CREATE TABLE t has no IF NOT EXISTS\n\
             \x20 fix: write CREATE TABLE IF NOT EXISTS t\n\
             m/001_x.sql:3:7: warning[drop-table] CREATE TABLE t has no IF NOT EXISTS\n\
             \x20 fix: write CREATE TABLE IF NOT EXISTS t\n\
             1 error, 1 warning in 2 files\n"
        );
        assert!(report.has_errors());
    }

    #[test]
    fn multi_line_fix_is_indented_under_the_first_line() {
        let mut f = finding(Rule::MigrationHeader);
        f.fix = "start with:\n-- Migration: 001_x\n-- Issue: X".into();
        let text = Report::new(vec![f], 1).to_text();
        assert!(
            text.contains("  fix: start with:\n       -- Migration: 001_x\n       -- Issue: X\n")
        );
    }

    #[test]
    fn warnings_alone_do_not_fail() {
        let report = Report::new(vec![finding(Rule::DropTable)], 1);
        assert!(!report.has_errors());
        assert_eq!(report.warning_count(), 1);
    }

    #[test]
    fn json_form_carries_every_field() {
        let report = Report::new(vec![finding(Rule::TableComment)], 1);
        let json = report.to_json();
        assert_eq!(json["errors"], 1);
        assert_eq!(json["warnings"], 0);
        assert_eq!(json["files_checked"], 1);
        let f = &json["findings"][0];
        assert_eq!(f["file"], "m/001_x.sql");
        assert_eq!(f["line"], 3);
        assert_eq!(f["col"], 7);
        assert_eq!(f["rule"], "table-comment");
        assert_eq!(f["severity"], "error");
        assert_eq!(f["fix"], "write CREATE TABLE IF NOT EXISTS t");
    }
}
