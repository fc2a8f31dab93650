//! Findings and the report that holds them: plain values, rendered as text
//! for people (`file:line:col: severity[rule] message` plus the fix) or as JSON
//! for tools.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::rule::{Rule, Severity};

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

impl Finding {
    /// `file:line:col: severity[rule] message`, the first line of the text form.
    pub fn headline(&self) -> String {
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

    pub fn to_json(&self) -> Value {
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
}

/// Everything one lint run found, in file order, then line and column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    findings: Vec<Finding>,
    files_checked: usize,
}

impl Report {
    pub(crate) fn new(findings: Vec<Finding>, files_checked: usize) -> Self {
        Report {
            findings,
            files_checked,
        }
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    pub fn files_checked(&self) -> usize {
        self.files_checked
    }

    /// Whether `pgkit lint` should exit 1.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// One block per finding (headline, then `  fix: ...`), then a summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for finding in &self.findings {
            out.push_str(&finding.headline());
            out.push('\n');
            out.push_str("  fix: ");
            // continuation lines of a multi-line fix line up under its first
            out.push_str(&finding.fix.replace('\n', "\n       "));
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `2 errors, 1 warning in 6 files`.
    pub fn summary(&self) -> String {
        summary(
            self.error_count(),
            self.warning_count(),
            self.files_checked,
            "file",
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "findings": self.findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
            "errors": self.error_count(),
            "warnings": self.warning_count(),
            "files_checked": self.files_checked,
        })
    }
}

/// `2 errors, 1 warning in 6 files`: the last line of lint's report and of
/// audit's (which counts tables), so the two read alike.
pub(crate) fn summary(errors: usize, warnings: usize, checked: usize, noun: &str) -> String {
    format!(
        "{}, {} in {}",
        plural(errors, "error"),
        plural(warnings, "warning"),
        plural(checked, noun)
    )
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
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
