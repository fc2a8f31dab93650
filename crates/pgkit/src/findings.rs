//! What lint and audit report, in one shape: each finding has a [`Severity`],
//! a headline and a fix; a [`Findings`] report counts errors and warnings and
//! renders the findings as text for people (headline, then `  fix: ...`, then
//! `2 errors, 1 warning in 6 files`) or as JSON for tools (`findings`,
//! `errors`, `warnings`, `files_checked` or `tables_checked`). Lint's
//! [`Report`](crate::lint::Report) and audit's
//! [`AuditReport`](crate::audit::AuditReport) are this type.

use std::fmt;

use serde_json::{Map, Value};

/// How much a finding matters: errors fail `pgkit lint` and `pgkit audit`
/// (exit 1), warnings are printed but pass, because they flag changes that are
/// sometimes meant (dropping a table) rather than mistakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding as a [`Findings`] report holds it: lint's (at `file:line:col`)
/// or audit's (on a catalog object).
pub trait Entry {
    /// What the report counts: `file` (lint) or `table` (audit).
    const CHECKED: &'static str;
    /// The JSON key of that count: `files_checked` or `tables_checked`.
    const CHECKED_KEY: &'static str;

    fn severity(&self) -> Severity;
    /// `<where>: severity[rule] message`, the first line of the text form.
    fn headline(&self) -> String;
    /// The fix as the text form prints it after `  fix: `.
    fn fix_text(&self) -> String;
    fn to_json(&self) -> Value;
}

/// Everything one run found, in the order the run chose, and how many files
/// or tables it checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings<F> {
    findings: Vec<F>,
    checked: usize,
}

impl<F> Default for Findings<F> {
    fn default() -> Self {
        Findings {
            findings: Vec::new(),
            checked: 0,
        }
    }
}

impl<F: Entry> Findings<F> {
    pub(crate) fn from_parts(findings: Vec<F>, checked: usize) -> Self {
        Findings { findings, checked }
    }

    pub fn findings(&self) -> &[F] {
        &self.findings
    }

    /// How many files (lint) or tables (audit) were checked.
    pub fn checked(&self) -> usize {
        self.checked
    }

    /// Whether the command should exit 1.
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
            .filter(|f| f.severity() == severity)
            .count()
    }

    /// One block per finding (headline, then `  fix: ...`), then a summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for finding in &self.findings {
            out.push_str(&finding.headline());
            out.push_str("\n  fix: ");
            out.push_str(&finding.fix_text());
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `2 errors, 1 warning in 6 files` (or `in 6 tables`).
    pub fn summary(&self) -> String {
        format!(
            "{}, {} in {}",
            plural(self.error_count(), "error"),
            plural(self.warning_count(), "warning"),
            plural(self.checked, F::CHECKED)
        )
    }

    pub fn to_json(&self) -> Value {
        let mut json = Map::new();
        json.insert(
            "findings".to_owned(),
            Value::Array(self.findings.iter().map(F::to_json).collect()),
        );
        json.insert("errors".to_owned(), self.error_count().into());
        json.insert("warnings".to_owned(), self.warning_count().into());
        json.insert(F::CHECKED_KEY.to_owned(), self.checked.into());
        Value::Object(json)
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
