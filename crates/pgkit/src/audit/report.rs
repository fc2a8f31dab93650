//! Audit's rules and findings, held and rendered by the report shared with
//! lint ([`crate::findings`]): text for people (`object: severity[rule]
//! message` plus the fix) and JSON for tools. The location is a catalog object (`public.ai_messages`,
//! `public.ai_messages.metadata`) instead of `file:line:col`.

use std::fmt;

use serde_json::{json, Value};

pub use crate::findings::Severity;
use crate::findings::{Entry, Findings};

/// One rule of the standard, checked on a live catalog. The ids shared with
/// lint (`updated-at-trigger`, `table-comment`, `jsonb-column-comment`) mean
/// the same thing there, checked on migration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AuditRule {
    UpdatedAtTrigger,
    TableComment,
    JsonbColumnComment,
    ForeignKeyIndex,
    PrimaryKey,
    ObjectOutsideSchema,
    ForeignGrant,
}

impl AuditRule {
    pub const ALL: [AuditRule; 7] = [
        AuditRule::UpdatedAtTrigger,
        AuditRule::TableComment,
        AuditRule::JsonbColumnComment,
        AuditRule::ForeignKeyIndex,
        AuditRule::PrimaryKey,
        AuditRule::ObjectOutsideSchema,
        AuditRule::ForeignGrant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditRule::UpdatedAtTrigger => "updated-at-trigger",
            AuditRule::TableComment => "table-comment",
            AuditRule::JsonbColumnComment => "jsonb-column-comment",
            AuditRule::ForeignKeyIndex => "foreign-key-index",
            AuditRule::PrimaryKey => "primary-key",
            AuditRule::ObjectOutsideSchema => "object-outside-schema",
            AuditRule::ForeignGrant => "foreign-grant",
        }
    }

    /// Every audit rule fails the run: each one is a defect of the live
    /// database, not a change that is sometimes meant.
    pub fn severity(self) -> Severity {
        Severity::Error
    }

    /// One line for `--help` and the docs.
    pub fn summary(self) -> &'static str {
        match self {
            AuditRule::UpdatedAtTrigger => {
                "a table with updated_at has a BEFORE UPDATE trigger calling update_updated_at_column()"
            }
            AuditRule::TableComment => "every table has a comment",
            AuditRule::JsonbColumnComment => "every JSONB column has a comment",
            AuditRule::ForeignKeyIndex => "every foreign key has an index leading with its columns",
            AuditRule::PrimaryKey => "every table has a primary key",
            AuditRule::ObjectOutsideSchema => {
                "with --schema: the schema owner's objects all live in the schema"
            }
            AuditRule::ForeignGrant => {
                "with --schema: only the service's own roles hold privileges in the schema"
            }
        }
    }
}

impl fmt::Display for AuditRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule on one catalog object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFinding {
    /// `schema.table`, `schema.table.column`, `schema S`, or a function
    /// signature: what to look at.
    pub object: String,
    pub rule: AuditRule,
    pub severity: Severity,
    /// What is wrong and why it matters.
    pub message: String,
    /// The SQL (or step) that fixes it.
    pub fix: String,
}

impl AuditFinding {
    pub(crate) fn new(object: String, rule: AuditRule, message: String, fix: String) -> Self {
        AuditFinding {
            object,
            rule,
            severity: rule.severity(),
            message,
            fix,
        }
    }
}

impl Entry for AuditFinding {
    const CHECKED: &'static str = "table";
    const CHECKED_KEY: &'static str = "tables_checked";

    fn severity(&self) -> Severity {
        self.severity
    }

    /// `object: severity[rule] message`, the first line of the text form.
    fn headline(&self) -> String {
        format!(
            "{}: {}[{}] {}",
            self.object, self.severity, self.rule, self.message
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "object": self.object,
            "rule": self.rule.as_str(),
            "severity": self.severity.as_str(),
            "message": self.message,
            "fix": self.fix,
        })
    }

    /// As it is (lint indents continuation lines; audit never has).
    fn fix_text(&self) -> String {
        self.fix.clone()
    }
}

/// Everything one audit found, ordered by object, then rule; the shared
/// report of [`crate::findings`].
pub type AuditReport = Findings<AuditFinding>;

impl Findings<AuditFinding> {
    pub(crate) fn new(mut findings: Vec<AuditFinding>, tables_checked: usize) -> Self {
        findings.sort_by(|a, b| (&a.object, a.rule).cmp(&(&b.object, b.rule)));
        Findings::from_parts(findings, tables_checked)
    }

    pub fn tables_checked(&self) -> usize {
        self.checked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(object: &str, rule: AuditRule) -> AuditFinding {
        AuditFinding::new(
            object.into(),
            rule,
            "table has no comment".into(),
            "COMMENT ON TABLE public.t IS '...';".into(),
        )
    }

    #[test]
    fn text_form_matches_lints_shape() {
        let report = AuditReport::new(
            vec![
                finding("public.t", AuditRule::TableComment),
                finding("public.a", AuditRule::PrimaryKey),
            ],
            2,
        );
        assert_eq!(
            report.to_text(),
            "public.a: error[primary-key] table has no comment\n\
             \x20 fix: COMMENT ON TABLE public.t IS '...';\n\
             public.t: error[table-comment] table has no comment\n\
             \x20 fix: COMMENT ON TABLE public.t IS '...';\n\
             2 errors, 0 warnings in 2 tables\n"
        );
        assert!(report.has_errors());
    }

    #[test]
    fn json_form_carries_every_field() {
        let report = AuditReport::new(vec![finding("public.t", AuditRule::TableComment)], 1);
        let json = report.to_json();
        assert_eq!(json["errors"], 1);
        assert_eq!(json["warnings"], 0);
        assert_eq!(json["tables_checked"], 1);
        let f = &json["findings"][0];
        assert_eq!(f["object"], "public.t");
        assert_eq!(f["rule"], "table-comment");
        assert_eq!(f["severity"], "error");
        assert_eq!(f["message"], "table has no comment");
        assert_eq!(f["fix"], "COMMENT ON TABLE public.t IS '...';");
    }

    #[test]
    fn clean_report_passes() {
        let report = AuditReport::new(vec![], 6);
        assert!(!report.has_errors());
        assert_eq!(report.to_text(), "0 errors, 0 warnings in 6 tables\n");
    }

    #[test]
    fn rule_ids_are_kebab_case_and_unique() {
        let mut ids: Vec<_> = AuditRule::ALL.iter().map(|r| r.as_str()).collect();
        assert!(ids
            .iter()
            .all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), AuditRule::ALL.len());
    }
}
