//! Comparing the files with the tracking table: applied, pending, changed, missing.
//!
//! Pure: the runner reads the rows, this decides what each file's state is,
//! so `status`, `up` and `repair` agree on one definition.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::ChangedFile;
use super::source::Migration;
use super::tracking::AppliedRow;

/// Where one migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Recorded, and the file is unchanged.
    Applied,
    /// A file not recorded yet: `up` will run it.
    Pending,
    /// Recorded, but the file's checksum differs: `up` refuses until it is
    /// restored or `repair` accepts it.
    Changed,
    /// Recorded, but no file has this number (an older checkout, or a
    /// deleted file). `up` warns and carries on.
    Missing,
}

/// One line of `migrate status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEntry {
    pub version: i64,
    /// The file name, or the recorded name for a missing file.
    pub name: String,
    pub state: State,
    /// sha256 of the file (None when missing).
    pub checksum: Option<String>,
    /// sha256 recorded when it was applied (None when pending).
    pub applied_checksum: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
    pub execution_ms: Option<i64>,
}

/// The whole picture, as `migrate status --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The schema holding the tracking table.
    pub schema: String,
    /// Whether the tracking table exists yet.
    pub tracking_table: bool,
    pub migrations: Vec<StatusEntry>,
}

impl Status {
    pub fn count(&self, state: State) -> usize {
        self.migrations.iter().filter(|e| e.state == state).count()
    }

    pub fn changed(&self) -> Vec<ChangedFile> {
        self.migrations
            .iter()
            .filter(|e| e.state == State::Changed)
            .map(|e| ChangedFile {
                version: e.version,
                name: e.name.clone(),
                applied_checksum: e.applied_checksum.clone().unwrap_or_default(),
                file_checksum: e.checksum.clone().unwrap_or_default(),
            })
            .collect()
    }
}

/// Merges files and rows by version, in version order.
pub fn compare(migrations: &[Migration], applied: &[AppliedRow]) -> Vec<StatusEntry> {
    let mut out: Vec<StatusEntry> = migrations
        .iter()
        .map(|m| {
            let row = applied.iter().find(|r| r.version == m.version);
            let state = match row {
                None => State::Pending,
                Some(r) if r.checksum == m.checksum => State::Applied,
                Some(_) => State::Changed,
            };
            StatusEntry {
                version: m.version,
                name: m.name.clone(),
                state,
                checksum: Some(m.checksum.clone()),
                applied_checksum: row.map(|r| r.checksum.clone()),
                applied_at: row.map(|r| r.applied_at),
                execution_ms: row.map(|r| r.execution_ms),
            }
        })
        .collect();
    for r in applied {
        if !migrations.iter().any(|m| m.version == r.version) {
            out.push(StatusEntry {
                version: r.version,
                name: r.name.clone(),
                state: State::Missing,
                checksum: None,
                applied_checksum: Some(r.checksum.clone()),
                applied_at: Some(r.applied_at),
                execution_ms: Some(r.execution_ms),
            });
        }
    }
    out.sort_by_key(|e| e.version);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: i64, checksum: &str) -> AppliedRow {
        AppliedRow {
            version,
            name: format!("{version:03}_x.sql"),
            checksum: checksum.into(),
            applied_at: Utc::now(),
            execution_ms: 1,
            sql: None,
        }
    }

    #[test]
    fn each_state_is_found() {
        let files: Vec<Migration> = ["001_a.sql", "002_b.sql", "004_d.sql"]
            .iter()
            .map(|n| Migration::from_file(n, &format!("SELECT '{n}';")).unwrap())
            .collect();
        let applied = vec![row(1, &files[0].checksum), row(2, "0000"), row(3, "abcd")];
        let states: Vec<(i64, State)> = compare(&files, &applied)
            .iter()
            .map(|e| (e.version, e.state))
            .collect();
        assert_eq!(
            states,
            vec![
                (1, State::Applied),
                (2, State::Changed),
                (3, State::Missing),
                (4, State::Pending)
            ]
        );
    }
}
