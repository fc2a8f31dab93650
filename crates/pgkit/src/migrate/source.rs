//! Where migration files come from, and turning them into ordered migrations.
//!
//! A service either points at a directory (`pgkit migrate --dir`) or carries
//! its files inside its binary (`include_str!`), so a deployed container needs
//! no migrations folder. Both give (file name, text) pairs; [`discover`] turns
//! those into [`Migration`]s: `NNN_description.sql`, numbers of any width
//! (`007`, `20251229`), in numeric order, one file per number.
//!
//! This module is the one place that decides what a migration (or seed)
//! file is: its name ([`version_of`]), how it runs ([`tx_mode`]) and what
//! the runner refuses ([`refusal`]). `pgkit lint` asks [`refusal`] too, so
//! lint reports, in the same words, every file `migrate`, `seed` and
//! `bundle` would refuse.

use std::path::{Path, PathBuf};

use super::checksum::{checksum, normalize};
use super::error::MigrateError;
use super::sql::{self, Control, Statement};

/// The migration (or seed) files of a service.
#[derive(Debug, Clone)]
pub enum MigrationSource {
    /// `*.sql` files directly in this directory (subdirectories such as
    /// `seeds/` and `data/` are not migrations and are skipped).
    Dir(PathBuf),
    /// (file name, contents) pairs built into a binary, e.g.
    /// `&[("001_init.sql", include_str!("../migrations/001_init.sql"))]`.
    Embedded(&'static [(&'static str, &'static str)]),
}

/// A file's name and text, as read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl MigrationSource {
    /// The `.sql` files, by name. A missing directory is an error for
    /// migrations; see [`MigrationSource::files_if_present`] for seeds.
    pub fn files(&self) -> Result<Vec<SourceFile>, MigrateError> {
        match self {
            MigrationSource::Dir(dir) => read_dir(dir),
            MigrationSource::Embedded(pairs) => pairs
                .iter()
                .filter(|(name, _)| is_sql_name(name))
                .map(|(name, text)| {
                    let name = base_name(name);
                    check_extension(name)?;
                    Ok(SourceFile {
                        name: name.to_string(),
                        text: text.to_string(),
                    })
                })
                .collect(),
        }
    }

    /// Like [`MigrationSource::files`], but a directory that does not exist has no files.
    pub fn files_if_present(&self) -> Result<Vec<SourceFile>, MigrateError> {
        match self {
            MigrationSource::Dir(dir) if !dir.exists() => Ok(Vec::new()),
            _ => self.files(),
        }
    }
}

fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, MigrateError> {
    let io = |source| MigrateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_sql_name(&name) || !path.is_file() {
            continue;
        }
        check_extension(&name)?;
        let bytes = std::fs::read(&path).map_err(|source| MigrateError::Io {
            path: path.clone(),
            source,
        })?;
        let text =
            String::from_utf8(bytes).map_err(|_| MigrateError::NotUtf8 { name: name.clone() })?;
        files.push(SourceFile { name, text });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Whether a file name looks like SQL, whatever the case of its extension:
/// such files are either run or refused, never skipped silently.
pub fn is_sql_name(name: &str) -> bool {
    name.len() >= 4
        && name.is_char_boundary(name.len() - 4)
        && name[name.len() - 4..].eq_ignore_ascii_case(".sql")
}

/// Refuses `X.SQL` (or `.Sql`): PostgreSQL tools and this runner read
/// `.sql`, and a file that is silently skipped is a migration never applied.
fn check_extension(name: &str) -> Result<(), MigrateError> {
    if is_sql_name(name) && !name.ends_with(".sql") {
        return Err(MigrateError::BadFileName {
            name: name.to_string(),
            problem: "the extension must be lower-case .sql".into(),
        });
    }
    Ok(())
}

/// Which rules a file of a migrations folder is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// `NNN_description.sql` in the folder itself: numbered and recorded.
    Migration,
    /// `seeds/` or `data/`: any name ending in `.sql`, run every time.
    Seed,
}

/// Why the runner would refuse this file, before running anything: the
/// check `pgkit migrate`, `seed` and `bundle` make, and `pgkit lint`
/// reports. `None` when the file can run.
pub fn refusal(role: FileRole, name: &str, text: &str) -> Option<MigrateError> {
    match role {
        FileRole::Migration => Migration::from_file(name, text).err(),
        FileRole::Seed => check_extension(name)
            .and_then(|()| {
                let sql = normalize(text);
                tx_mode(name, &sql, &sql::split(&sql)).map(|_| ())
            })
            .err(),
    }
}

/// How a file is run with respect to transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxMode {
    /// No transaction control of its own: the runner wraps the file and its
    /// tracking row in one transaction.
    Wrapped,
    /// Opens with `BEGIN` and has one `COMMIT` (statement indexes): the
    /// tracking row goes in just before that `COMMIT`. Statements after the
    /// `COMMIT` run after the transaction, each on its own.
    Own { begin: usize, commit: usize },
    /// A line `-- pgkit:no-transaction` before the first statement (first,
    /// or after the header): statement by statement with no
    /// transaction around them (`CREATE INDEX CONCURRENTLY`); the row is
    /// recorded after the last statement.
    NoTransaction,
}

/// The first-line marker for files that must run outside a transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- pgkit:no-transaction";

/// One numbered migration file, ready to run.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    /// The file name, such as `001_create_users.sql`; recorded as `name`.
    pub name: String,
    /// The text as executed: line endings normalised to `\n`.
    pub sql: String,
    /// sha256 hex of [`Migration::sql`].
    pub checksum: String,
    pub statements: Vec<Statement>,
    pub mode: TxMode,
}

impl Migration {
    /// Parses one file; `name` must be `NNN_description.sql`.
    pub fn from_file(name: &str, text: &str) -> Result<Migration, MigrateError> {
        check_extension(name)?;
        let version = version_of(name)?.ok_or_else(|| MigrateError::BadFileName {
            name: name.to_string(),
            problem: name_problem(name).into(),
        })?;
        let sql = normalize(text);
        let statements = sql::split(&sql);
        let mode = tx_mode(name, &sql, &statements)?;
        Ok(Migration {
            version,
            name: name.to_string(),
            checksum: checksum(&sql),
            sql,
            statements,
            mode,
        })
    }

    /// 1-based line of a byte offset in the file.
    pub fn line_of(&self, byte: usize) -> u32 {
        sql::line_col(&self.sql, byte).0
    }
}

/// The leading number of `NNN_description.sql`; `None` when the name has none.
pub fn version_of(name: &str) -> Result<Option<i64>, MigrateError> {
    let digits: &str = &name[..name.bytes().take_while(u8::is_ascii_digit).count()];
    let rest = &name[digits.len()..];
    if digits.is_empty() || !(rest.starts_with('_') || rest == ".sql") {
        return Ok(None);
    }
    digits
        .parse::<i64>()
        .map(Some)
        .map_err(|_| MigrateError::VersionTooLarge {
            name: name.to_string(),
        })
}

/// What is wrong with a name [`version_of`] finds no number in.
fn name_problem(name: &str) -> &'static str {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        "a migration file name must start with its number, as NNN_description.sql"
    } else {
        "the number must be followed by _ and the description, as NNN_description.sql"
    }
}

/// The name a refused file could have: `006-add.sql` -> `006_add.sql`,
/// `X.SQL` -> `X.sql`; `None` when no number can be guessed.
pub fn suggested_name(name: &str) -> Option<String> {
    let stem = if is_sql_name(name) {
        &name[..name.len() - 4]
    } else {
        name
    };
    let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = stem[digits..].trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    Some(if rest.is_empty() {
        format!("{}.sql", &stem[..digits])
    } else {
        format!("{}_{rest}.sql", &stem[..digits])
    })
}

/// Reads, parses and orders every migration of a source.
pub fn discover(source: &MigrationSource) -> Result<Vec<Migration>, MigrateError> {
    let mut migrations = source
        .files()?
        .iter()
        .map(|f| Migration::from_file(&f.name, &f.text))
        .collect::<Result<Vec<_>, _>>()?;
    migrations.sort_by(|a, b| a.version.cmp(&b.version).then(a.name.cmp(&b.name)));
    for pair in migrations.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(MigrateError::DuplicateVersion {
                version: pair[0].version,
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    Ok(migrations)
}

/// Decides how a file runs, refusing transaction control the runner could
/// not pair with its tracking row.
pub fn tx_mode(name: &str, sql: &str, statements: &[Statement]) -> Result<TxMode, MigrateError> {
    // The marker may follow the standard's header: any line of the comments
    // before the first statement.
    if has_no_transaction_marker(sql, statements) {
        return Ok(TxMode::NoTransaction);
    }
    let control: Vec<(usize, Control)> = statements
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.control()))
        .filter(|(_, c)| *c != Control::Other)
        .collect();
    let last = statements.len().saturating_sub(1);
    match control.as_slice() {
        [] => in_transaction(name, sql, statements, TxMode::Wrapped),
        // Statements after the COMMIT (the standard's seed pattern ends with
        // a `DO $$ … RAISE NOTICE … $$`) run after the transaction.
        [(0, Control::Begin), (end, Control::Commit)] => in_transaction(
            name,
            sql,
            &statements[..=*end],
            TxMode::Own {
                begin: 0,
                commit: *end,
            },
        ),
        _ => {
            // A statement the parser cannot read (`CREATE TABLE broken (;`)
            // swallows what follows it, the COMMIT too: that is the problem
            // to report, in the words `pgkit lint` uses.
            if let Some(error) = syntax_error(sql) {
                return Err(error.into_migrate_error(name, sql));
            }
            let (i, what) = misplaced(&control, last);
            let stmt = &statements[i];
            Err(MigrateError::TransactionControl {
                name: name.to_string(),
                line: sql::line_col(sql, stmt.range.start).0,
                problem: format!(
                    "{what}: a file may only open with BEGIN and end with COMMIT (found {})",
                    stmt.first_word()
                ),
            })
        }
    }
}

/// `mode` for a file whose `statements` run in a transaction, unless one of
/// them is a statement PostgreSQL refuses there (`CREATE INDEX
/// CONCURRENTLY`): refused before anything runs, not half way at apply.
fn in_transaction(
    name: &str,
    sql: &str,
    statements: &[Statement],
    mode: TxMode,
) -> Result<TxMode, MigrateError> {
    for stmt in statements {
        if let Some(what) = sql::non_transactional(&sql[stmt.range.clone()]) {
            return Err(MigrateError::NeedsNoTransaction {
                name: name.to_string(),
                line: sql::line_col(sql, stmt.range.start).0,
                statement: what.to_string(),
            });
        }
    }
    Ok(mode)
}

/// The parser's first error in the file, if any.
struct ParseError {
    offset: usize,
    message: String,
}

impl ParseError {
    fn into_migrate_error(self, name: &str, sql: &str) -> MigrateError {
        MigrateError::Syntax {
            name: name.to_string(),
            line: sql::line_col(sql, self.offset).0,
            message: format!("cannot parse this SQL: {}", self.message),
        }
    }
}

fn syntax_error(sql: &str) -> Option<ParseError> {
    let parse = squawk_syntax::ast::SourceFile::parse(sql);
    parse.errors().first().map(|e| ParseError {
        offset: usize::from(e.range().start()),
        message: e.message().to_string(),
    })
}

/// Whether `-- pgkit:no-transaction` is a line of the comments before the
/// first statement (first, or after the standard's header).
pub(crate) fn has_no_transaction_marker(sql: &str, statements: &[Statement]) -> bool {
    let leading = &sql[..statements.first().map_or(sql.len(), |s| s.range.start)];
    leading.lines().any(|l| is_no_transaction_marker(l.trim()))
}

fn is_no_transaction_marker(line: &str) -> bool {
    line.strip_prefix("--")
        .map(|rest| rest.trim() == "pgkit:no-transaction")
        .unwrap_or(false)
}

/// The first control statement out of place, and why.
fn misplaced(control: &[(usize, Control)], last: usize) -> (usize, &'static str) {
    for (n, (i, c)) in control.iter().enumerate() {
        let ok = match c {
            Control::Begin => n == 0 && *i == 0,
            Control::Commit => n == control.len() - 1 && *i == last && n == 1,
            _ => false,
        };
        if !ok {
            return match c {
                Control::Rollback => (*i, "ROLLBACK in a migration"),
                Control::Begin => (*i, "BEGIN after the start of the file"),
                _ if n == 0 => (*i, "COMMIT without a BEGIN at the start of the file"),
                _ => (*i, "COMMIT before the end of the file"),
            };
        }
    }
    // A lone BEGIN with no COMMIT, or a lone COMMIT.
    let (i, c) = control[0];
    match c {
        Control::Begin => (i, "BEGIN without a COMMIT at the end of the file"),
        _ => (i, "COMMIT without a BEGIN at the start of the file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded(
        pairs: &'static [(&'static str, &'static str)],
    ) -> Result<Vec<Migration>, MigrateError> {
        discover(&MigrationSource::Embedded(pairs))
    }

    #[test]
    fn orders_numerically_across_widths() {
        let found = embedded(&[
            ("20251229_dave_system_prompts.sql", "SELECT 1;"),
            ("010_ten.sql", "SELECT 1;"),
            ("2_two.sql", "SELECT 1;"),
            ("README.md", "not sql"),
        ])
        .unwrap();
        let names: Vec<(i64, &str)> = found.iter().map(|m| (m.version, m.name.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (2, "2_two.sql"),
                (10, "010_ten.sql"),
                (20251229, "20251229_dave_system_prompts.sql")
            ]
        );
    }

    #[test]
    fn one_number_twice_names_both_files() {
        let err = embedded(&[("001_a.sql", ""), ("1_b.sql", "")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("001_a.sql") && text.contains("1_b.sql"),
            "{text}"
        );
    }

    #[test]
    fn unnumbered_sql_files_are_refused() {
        let err = embedded(&[("init.sql", "")]).unwrap_err();
        assert!(matches!(err, MigrateError::BadFileName { .. }), "{err}");
        assert!(matches!(
            embedded(&[("0123456789012345678901_x.sql", "")]).unwrap_err(),
            MigrateError::VersionTooLarge { .. }
        ));
        assert!(version_of("12abc.sql").unwrap().is_none());
    }

    #[test]
    fn picks_the_transaction_mode() {
        let mode = |sql: &str| Migration::from_file("001_x.sql", sql).map(|m| m.mode);
        assert_eq!(mode("CREATE TABLE a (id int);").unwrap(), TxMode::Wrapped);
        assert_eq!(
            mode("-- Migration: 001\nBEGIN;\nCREATE TABLE a (id int);\nDO $$ BEGIN NULL; END $$;\nCOMMIT;\n").unwrap(),
            TxMode::Own { begin: 0, commit: 3 }
        );
        assert_eq!(
            mode("BEGIN;\nSELECT 1;\nCOMMIT;\nDO $$ BEGIN RAISE NOTICE 'Seed data applied at %', NOW(); END $$;\n").unwrap(),
            TxMode::Own { begin: 0, commit: 2 }
        );
        assert_eq!(
            mode("-- pgkit:no-transaction\nCREATE INDEX CONCURRENTLY i ON a (id);").unwrap(),
            TxMode::NoTransaction
        );
        assert_eq!(
            mode("-- Migration: 001_x.sql\n-- Issue: X\n-- pgkit:no-transaction\nCREATE INDEX CONCURRENTLY i ON a (id);").unwrap(),
            TxMode::NoTransaction
        );
        assert_eq!(
            mode("SELECT 1;\n-- pgkit:no-transaction\nSELECT 2;").unwrap(),
            TxMode::Wrapped,
            "a marker after the first statement is not the file's"
        );
        for (sql, line) in [
            ("SELECT 1;\nBEGIN;\nSELECT 2;\nCOMMIT;", 2),
            ("BEGIN;\nSELECT 1;", 1),
            ("BEGIN;\nROLLBACK;", 2),
            ("BEGIN;\nCOMMIT;\nBEGIN;\nCOMMIT;", 2),
        ] {
            match mode(sql) {
                Err(MigrateError::TransactionControl { line: l, .. }) => {
                    assert_eq!(l, line, "{sql}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_syntax_error_is_reported_with_its_line_not_as_a_missing_commit() {
        let err = Migration::from_file(
            "001_x.sql",
            "-- Migration: 001_x\nBEGIN;\nCREATE TABLE broken (;\nCOMMIT;\n",
        )
        .unwrap_err();
        match &err {
            MigrateError::Syntax { line, message, .. } => {
                assert_eq!(*line, 3, "{err}");
                assert!(message.starts_with("cannot parse this SQL"), "{err}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn crlf_checkout_has_the_same_checksum() {
        let lf = Migration::from_file("001_x.sql", "BEGIN;\nSELECT 1;\nCOMMIT;\n").unwrap();
        let crlf = Migration::from_file("001_x.sql", "BEGIN;\r\nSELECT 1;\r\nCOMMIT;\r\n").unwrap();
        assert_eq!(lf.checksum, crlf.checksum);
        assert_eq!(lf.sql, crlf.sql);
    }
}
