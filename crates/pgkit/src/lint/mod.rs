//! `pgkit lint`: the standard's rules checked on a migrations folder, before
//! anything touches a database. Files are parsed with squawk's PostgreSQL
//! grammar (a typed syntax tree, comments kept as tokens), never matched with
//! regular expressions; each finding names `file:line:col`, a rule id, its
//! severity, what is wrong and how to fix it. The rules live one per file
//! under `lint/rules/`, each documented in `docs/lint-rules.md`.
//!
//! A folder is `NNN_description.sql` migrations, plus optional `seeds/` (must
//! be idempotent) and `data/` (test data behind the `app.environment` guard).
//! Rules see the whole set in apply order, because some span files: a table's
//! trigger or comment may come in a later migration.

mod names;
mod report;
mod rule;
mod rules;
mod source;
mod suppress;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use report::{Finding, Report};
pub use rule::{Rule, Severity, UnknownRule};

use rules::{Draft, Sink};
use source::{FileKind, SqlFile};
use suppress::Allows;

/// Where a migrations folder keeps its seeds and test data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintOptions {
    /// Subfolder (and, for [`lint_files`], parent folder name) of seed files.
    pub seeds_dir: String,
    /// Subfolder (and parent folder name) of environment-gated test data.
    pub data_dir: String,
}

impl Default for LintOptions {
    fn default() -> Self {
        LintOptions {
            seeds_dir: "seeds".into(),
            data_dir: "data".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LintError {
    #[error("migrations folder {} does not exist or is not a folder; pass the folder that holds the NNN_*.sql files", path.display())]
    NotAFolder { path: PathBuf },
    #[error("cannot list {}: {cause}", path.display())]
    ListFolder { path: PathBuf, cause: io::Error },
    #[error("cannot read {}: {cause}", path.display())]
    ReadFile { path: PathBuf, cause: io::Error },
    #[error("{} is not UTF-8 text; save it as UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("no .sql files in {} (nor in its seeds/ or data/); is this the migrations folder?", path.display())]
    NoSqlFiles { path: PathBuf },
}

/// Lints the migrations folder `dir`: its `*.sql` files and those of its
/// seeds and data subfolders. Paths in findings start with `dir`.
pub fn lint_dir(dir: &Path, opts: &LintOptions) -> Result<Report, LintError> {
    if !dir.is_dir() {
        return Err(LintError::NotAFolder {
            path: dir.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    for sub in [None, Some(&opts.seeds_dir), Some(&opts.data_dir)] {
        let folder = sub.map_or_else(|| dir.to_path_buf(), |s| dir.join(s));
        if sub.is_some() && !folder.is_dir() {
            continue;
        }
        for path in sql_files(&folder)? {
            let text = read(&path)?;
            files.push((path, text));
        }
    }
    if files.is_empty() {
        return Err(LintError::NoSqlFiles {
            path: dir.to_path_buf(),
        });
    }
    Ok(lint_files(&files, opts))
}

/// Lints files given as `(path, text)`: a file whose parent folder is named
/// like `opts.seeds_dir` is a seed, like `opts.data_dir` test data, anything
/// else a migration. Files are checked in apply order whatever the order given.
pub fn lint_files(files: &[(PathBuf, String)], opts: &LintOptions) -> Report {
    let mut parsed: Vec<SqlFile> = files
        .iter()
        .map(|(path, text)| SqlFile::parse(path.clone(), kind_of(path, opts), text.clone()))
        .collect();
    parsed.sort_by_key(|f| source::apply_order(f.kind, &f.path));

    let mut sink = Sink::default();
    rules::run_all(&parsed, &mut sink);

    let mut findings = Vec::new();
    for file in &parsed {
        let mut invalid = Vec::new();
        let mut allows = Allows::collect(file, &mut invalid);
        let mut drafts: Vec<&Draft> = sink
            .drafts
            .iter()
            .filter(|d| d.finding.file == file.path)
            .collect();
        drafts.sort_by_key(|d| (d.finding.line, d.finding.col));
        let mut here: Vec<Finding> = drafts
            .into_iter()
            .filter(|d| !allows.take(&d.finding, d.file_level))
            .map(|d| d.finding.clone())
            .chain(invalid)
            .collect();
        here.sort_by_key(|f| (f.line, f.col));
        findings.extend(here);
    }
    Report::new(findings, parsed.len())
}

fn kind_of(path: &Path, opts: &LintOptions) -> FileKind {
    let parent = path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy());
    match parent.as_deref() {
        Some(p) if p == opts.seeds_dir => FileKind::Seed,
        Some(p) if p == opts.data_dir => FileKind::Data,
        _ => FileKind::Migration,
    }
}

/// The `*.sql` files directly in `folder`.
fn sql_files(folder: &Path) -> Result<Vec<PathBuf>, LintError> {
    let list_error = |cause| LintError::ListFolder {
        path: folder.to_path_buf(),
        cause,
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(folder).map_err(list_error)? {
        let path = entry.map_err(list_error)?.path();
        // `X.SQL` too: `migration-file` reports it rather than skipping it.
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if path.is_file() && name.is_some_and(|n| crate::migrate::is_sql_name(&n)) {
            paths.push(path);
        }
    }
    Ok(paths)
}

fn read(path: &Path) -> Result<String, LintError> {
    let bytes = fs::read(path).map_err(|cause| LintError::ReadFile {
        path: path.to_path_buf(),
        cause,
    })?;
    String::from_utf8(bytes).map_err(|_| LintError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_follows_the_parent_folder_name() {
        let opts = LintOptions::default();
        assert_eq!(
            kind_of(Path::new("m/001_a.sql"), &opts),
            FileKind::Migration
        );
        assert_eq!(
            kind_of(Path::new("m/seeds/001_a.sql"), &opts),
            FileKind::Seed
        );
        assert_eq!(
            kind_of(Path::new("m/data/001_a.sql"), &opts),
            FileKind::Data
        );
        assert_eq!(kind_of(Path::new("001_a.sql"), &opts), FileKind::Migration);
    }

    #[test]
    fn findings_come_in_apply_order_then_line() {
        let files = vec![
            (
                PathBuf::from("seeds/001_s.sql"),
                "INSERT INTO t VALUES (1);".to_owned(),
            ),
            (PathBuf::from("010_b.sql"), "DROP TABLE x;".to_owned()),
            (
                PathBuf::from("002_a.sql"),
                "SELECT 1;\nDROP TABLE y;".to_owned(),
            ),
        ];
        let report = lint_files(&files, &LintOptions::default());
        let order: Vec<_> = report
            .findings()
            .iter()
            .map(|f| format!("{}:{}", f.file.display(), f.line))
            .collect();
        assert_eq!(
            order,
            [
                "002_a.sql:1",
                "002_a.sql:1",
                "002_a.sql:2",
                "010_b.sql:1",
                "010_b.sql:1",
                "010_b.sql:1",
                "seeds/001_s.sql:1"
            ]
        );
        assert_eq!(report.files_checked(), 3);
    }
}
