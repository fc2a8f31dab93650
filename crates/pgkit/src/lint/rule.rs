//! The catalogue of lint rules: one kebab-case id per rule, its severity, and
//! a one-line summary. `docs/lint-rules.md` has a section per id; the ids are
//! what `-- pgkit:allow RULE reason` names, so they never change once shipped.

use std::fmt;
use std::str::FromStr;

pub use crate::findings::Severity;

/// One rule of the standard, checked on migration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    SyntaxError,
    MigrationFile,
    MigrationHeader,
    TransactionWrapper,
    CreateIfNotExists,
    CreateOrReplaceFunction,
    RerunnableTrigger,
    UpdatedAtTrigger,
    TableComment,
    JsonbColumnComment,
    SeedOnConflict,
    DataEnvironmentGuard,
    IndexConcurrently,
    DropTable,
    DropColumn,
    AlterColumnType,
    InvalidSuppression,
}

impl Rule {
    /// Every rule, in the order `docs/lint-rules.md` lists them.
    pub const ALL: [Rule; 17] = [
        Rule::SyntaxError,
        Rule::MigrationFile,
        Rule::MigrationHeader,
        Rule::TransactionWrapper,
        Rule::CreateIfNotExists,
        Rule::CreateOrReplaceFunction,
        Rule::RerunnableTrigger,
        Rule::UpdatedAtTrigger,
        Rule::TableComment,
        Rule::JsonbColumnComment,
        Rule::SeedOnConflict,
        Rule::DataEnvironmentGuard,
        Rule::IndexConcurrently,
        Rule::DropTable,
        Rule::DropColumn,
        Rule::AlterColumnType,
        Rule::InvalidSuppression,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::SyntaxError => "syntax-error",
            Rule::MigrationFile => "migration-file",
            Rule::MigrationHeader => "migration-header",
            Rule::TransactionWrapper => "transaction-wrapper",
            Rule::CreateIfNotExists => "create-if-not-exists",
            Rule::CreateOrReplaceFunction => "create-or-replace-function",
            Rule::RerunnableTrigger => "rerunnable-trigger",
            Rule::UpdatedAtTrigger => "updated-at-trigger",
            Rule::TableComment => "table-comment",
            Rule::JsonbColumnComment => "jsonb-column-comment",
            Rule::SeedOnConflict => "seed-on-conflict",
            Rule::DataEnvironmentGuard => "data-environment-guard",
            Rule::IndexConcurrently => "index-concurrently",
            Rule::DropTable => "drop-table",
            Rule::DropColumn => "drop-column",
            Rule::AlterColumnType => "alter-column-type",
            Rule::InvalidSuppression => "invalid-suppression",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::IndexConcurrently
            | Rule::DropTable
            | Rule::DropColumn
            | Rule::AlterColumnType => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// One line for `--help` text and the docs' index.
    pub fn summary(self) -> &'static str {
        match self {
            Rule::SyntaxError => "the file does not parse as PostgreSQL",
            Rule::MigrationFile => {
                "pgkit migrate, seed and bundle can run the file (name, numbering, transaction control)"
            }
            Rule::MigrationHeader => {
                "header comment with Migration, Issue, Date, Author and Description"
            }
            Rule::TransactionWrapper => "a migration runs inside BEGIN; ... COMMIT;",
            Rule::CreateIfNotExists => {
                "CREATE TABLE/INDEX/SCHEMA/SEQUENCE/EXTENSION and ADD COLUMN use IF NOT EXISTS"
            }
            Rule::CreateOrReplaceFunction => "CREATE FUNCTION/PROCEDURE uses OR REPLACE",
            Rule::RerunnableTrigger => {
                "CREATE TRIGGER is OR REPLACE or follows DROP TRIGGER IF EXISTS"
            }
            Rule::UpdatedAtTrigger => {
                "a table with updated_at has the update_updated_at_column() trigger"
            }
            Rule::TableComment => "every table has COMMENT ON TABLE",
            Rule::JsonbColumnComment => "every JSONB column has COMMENT ON COLUMN",
            Rule::SeedOnConflict => "an INSERT in seeds/ has ON CONFLICT",
            Rule::DataEnvironmentGuard => {
                "writes in data/ are guarded by current_setting('app.environment')"
            }
            Rule::IndexConcurrently => {
                "CREATE INDEX on a table an earlier file created uses CONCURRENTLY"
            }
            Rule::DropTable => "DROP TABLE loses data",
            Rule::DropColumn => "ALTER TABLE ... DROP COLUMN loses data",
            Rule::AlterColumnType => "ALTER COLUMN ... TYPE rewrites the table under a lock",
            Rule::InvalidSuppression => "a pgkit:allow comment names a known rule and a reason",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a rule id; carries it back for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lint rule `{0}` (known: {known})", known = known_ids())]
pub struct UnknownRule(pub String);

fn known_ids() -> String {
    Rule::ALL.map(Rule::as_str).join(", ")
}

impl FromStr for Rule {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_kebab_case() {
        for rule in Rule::ALL {
            let id = rule.as_str();
            assert_eq!(id.parse::<Rule>(), Ok(rule));
            assert!(
                id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{id}"
            );
            assert_eq!(rule.to_string(), id);
        }
    }

    #[test]
    fn unknown_id_names_the_known_ones() {
        let err = "no-such-rule".parse::<Rule>().unwrap_err();
        assert!(err.to_string().contains("unknown lint rule `no-such-rule`"));
        assert!(err.to_string().contains("table-comment"));
    }

    #[test]
    fn only_the_data_loss_and_lock_rules_are_warnings() {
        let warnings: Vec<_> = Rule::ALL
            .into_iter()
            .filter(|r| r.severity() == Severity::Warning)
            .map(Rule::as_str)
            .collect();
        assert_eq!(
            warnings,
            [
                "index-concurrently",
                "drop-table",
                "drop-column",
                "alter-column-type"
            ]
        );
    }
}
