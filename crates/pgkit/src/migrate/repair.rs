//! What `migrate repair` accepts: an applied file whose checksum changed
//! because its comments or whitespace did. The tracking row keeps the text
//! as applied, so the edit is shown as a diff and judged on the file's
//! tokens (the parser's, comments and whitespace dropped): an edit of the
//! statements is refused unless forced, since the database still holds what
//! the old statements did and nothing would ever run the new ones.

use std::fmt;

use super::source::Migration;
use super::sql::significant_tokens;
use super::tracking::AppliedRow;

/// How an applied file differs from its text as applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Same checksum: nothing to repair.
    Unchanged,
    /// Only comments and whitespace differ: the same statements ran.
    CommentsOnly,
    /// The statements differ.
    Statements,
    /// The row predates pgkit keeping the applied text: what changed
    /// cannot be told.
    Unknown,
}

/// One file named to `repair`, compared with its tracking row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairCheck {
    pub version: i64,
    pub name: String,
    pub applied_checksum: String,
    pub file_checksum: String,
    pub change: Change,
    /// The changed lines (`-N: old`, `+N: new`), when the applied text is known.
    pub diff: Option<String>,
}

impl RepairCheck {
    pub(crate) fn new(m: &Migration, row: &AppliedRow) -> RepairCheck {
        let (change, diff) = if row.checksum == m.checksum {
            (Change::Unchanged, None)
        } else {
            match &row.sql {
                None => (Change::Unknown, None),
                Some(old) => {
                    let change = if significant_tokens(old) == significant_tokens(&m.sql) {
                        Change::CommentsOnly
                    } else {
                        Change::Statements
                    };
                    (change, Some(line_diff(old, &m.sql)))
                }
            }
        };
        RepairCheck {
            version: m.version,
            name: m.name.clone(),
            applied_checksum: row.checksum.clone(),
            file_checksum: m.checksum.clone(),
            change,
            diff,
        }
    }

    /// Whether repair may accept it without `--force`.
    pub fn is_safe(&self) -> bool {
        matches!(self.change, Change::Unchanged | Change::CommentsOnly)
    }
}

impl fmt::Display for RepairCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.change {
            Change::Unchanged => return write!(f, "{}: unchanged since it was applied", self.name),
            Change::CommentsOnly => "only comments and whitespace changed",
            Change::Statements => "its statements changed",
            Change::Unknown => {
                "changed; what changed cannot be told (it was applied before pgkit kept the applied text)"
            }
        };
        write!(
            f,
            "{}: {what} since it was applied (sha256 {} -> {})",
            self.name, self.applied_checksum, self.file_checksum
        )?;
        if let Some(diff) = &self.diff {
            for line in diff.lines() {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

/// The lines removed from `old` and added in `new` (a longest-common-
/// subsequence diff), each as `-N: text` / `+N: text` with its line number
/// in its own file.
pub(crate) fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: common lines of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("-{}: {}\n", i + 1, a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{}: {}\n", j + 1, b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn row(m: &Migration, sql: Option<&str>, checksum: &str) -> AppliedRow {
        AppliedRow {
            version: m.version,
            name: m.name.clone(),
            checksum: checksum.into(),
            applied_at: Utc::now(),
            execution_ms: 1,
            sql: sql.map(str::to_owned),
        }
    }

    #[test]
    fn a_comment_edit_is_safe_a_statement_edit_is_not() {
        let old = "-- v1\nCREATE TABLE t (a int);\n";
        let comment =
            Migration::from_file("001_t.sql", "-- v2, fixed typo\nCREATE TABLE t (a int);\n")
                .unwrap();
        let check = RepairCheck::new(&comment, &row(&comment, Some(old), "old"));
        assert_eq!(check.change, Change::CommentsOnly);
        assert!(check.is_safe());
        assert_eq!(
            check.diff.as_deref(),
            Some("-1: -- v1\n+1: -- v2, fixed typo\n")
        );

        let stmt =
            Migration::from_file("001_t.sql", "-- v1\nCREATE TABLE t (a bigint);\n").unwrap();
        let check = RepairCheck::new(&stmt, &row(&stmt, Some(old), "old"));
        assert_eq!(check.change, Change::Statements);
        assert!(!check.is_safe());
        assert!(
            check.to_string().contains("+2: CREATE TABLE t (a bigint);"),
            "{check}"
        );

        let unknown = RepairCheck::new(&stmt, &row(&stmt, None, "old"));
        assert_eq!(unknown.change, Change::Unknown);
        assert!(!unknown.is_safe());
        let same = RepairCheck::new(&stmt, &row(&stmt, None, &stmt.checksum.clone()));
        assert_eq!(same.change, Change::Unchanged);
    }

    #[test]
    fn the_diff_keeps_common_lines_out() {
        assert_eq!(
            line_diff("a\nb\nc\n", "a\nx\nc\nd\n"),
            "-2: b\n+2: x\n+4: d\n"
        );
        assert_eq!(line_diff("same\n", "same\n"), "");
    }
}
