//! `migrate new NAME`: the next numbered file, from the standard's template.
//!
//! The number follows the directory's style: one more than the highest,
//! zero-padded to the width already in use (`007`), or today's date when the
//! files are numbered by date (`20251229`, or with time `20251229143000`).
//! A second file on one day takes the next number while that still carries
//! today's date (`202512290001`); a folder numbered by day alone
//! (`YYYYMMDD`) has room for one file a day, so a second one is refused
//! rather than numbered as tomorrow. Fields not given are written as the
//! template's `<placeholders>`, which `pgkit lint` reports until filled in.
//! The file is created only if it does not exist, so two people running it
//! at once never overwrite each other's file.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::error::MigrateError;
use super::source::{discover, Migration, MigrationSource};

/// What goes in the header.
#[derive(Debug, Clone, Default)]
pub struct NewFile {
    /// Words for the file name, e.g. "add user email" -> `add_user_email`.
    pub name: String,
    pub issue: Option<String>,
    pub author: Option<String>,
    pub description: Option<String>,
}

/// Writes the next migration file in `dir` and returns its path.
pub fn create(dir: &Path, new: &NewFile, today: NaiveDate) -> Result<PathBuf, MigrateError> {
    let slug = slug(&new.name)?;
    std::fs::create_dir_all(dir).map_err(|source| MigrateError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let existing = discover(&MigrationSource::Dir(dir.to_path_buf()))?;
    let number = next_number(&existing, today)?;
    let stem = format!("{number}_{slug}");
    let path = dir.join(format!("{stem}.sql"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => MigrateError::Exists { path: path.clone() },
            _ => MigrateError::Io {
                path: path.clone(),
                source,
            },
        })?;
    file.write_all(template(&stem, new, today).as_bytes())
        .map_err(|source| MigrateError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// The number for the next file, as text (keeps the padding).
pub fn next_number(existing: &[Migration], today: NaiveDate) -> Result<String, MigrateError> {
    let Some(last) = existing.last() else {
        return Ok("001".into());
    };
    let width = last.name.bytes().take_while(u8::is_ascii_digit).count();
    let day = today.format("%Y%m%d").to_string();
    let date_style = match width {
        8 => Some(day.clone()),
        12 => Some(format!("{day}0000")),
        14 => Some(format!("{day}000000")),
        _ => None,
    }
    .filter(|_| looks_like_date(last.version, width));
    if let Some(d) = date_style {
        let n: i64 = d.parse().unwrap_or(0);
        if n > last.version {
            return Ok(d);
        }
        let next = (last.version + 1).to_string();
        if next.starts_with(&day) && next.len() == width {
            return Ok(next);
        }
        if last.version == n {
            return Err(MigrateError::DateTaken {
                existing: last.name.clone(),
            });
        }
    }
    Ok(format!(
        "{:0width$}",
        last.version + 1,
        width = width.max(3)
    ))
}

fn looks_like_date(version: i64, width: usize) -> bool {
    let ymd = version / 10_i64.pow(width as u32 - 8);
    NaiveDate::parse_from_str(&ymd.to_string(), "%Y%m%d").is_ok()
}

/// `Add user e-mail` -> `add_user_e_mail`.
fn slug(name: &str) -> Result<String, MigrateError> {
    let bad = |problem: &str| MigrateError::BadName {
        name: name.to_string(),
        problem: problem.to_string(),
    };
    if name
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_')))
    {
        return Err(bad(
            "it has characters other than letters, digits, spaces, - and _",
        ));
    }
    let words: Vec<String> = name
        .split([' ', '-', '_'])
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        return Err(bad("it is empty"));
    }
    let slug = words.join("_");
    if slug.len() > 100 {
        return Err(bad("it is longer than 100 characters"));
    }
    Ok(slug)
}

/// Written for a field not given: `pgkit lint` reports it until replaced.
pub const ISSUE_PLACEHOLDER: &str = "<issue id, e.g. DAVE-123>";
pub const AUTHOR_PLACEHOLDER: &str = "<who wrote it>";

/// The standard's migration template.
pub fn template(stem: &str, new: &NewFile, today: NaiveDate) -> String {
    let or = |v: &Option<String>, default: &str| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(default)
            .to_string()
    };
    format!(
        "-- Migration: {stem}\n\
         -- Issue: {issue}\n\
         -- Date: {date}\n\
         -- Author: {author}\n\
         -- Description: {description}\n\
         \n\
         BEGIN;\n\
         \n\
         -- Write the change here. Keep it safe to re-run with psql: IF NOT EXISTS,\n\
         -- DROP TRIGGER IF EXISTS before CREATE TRIGGER, COMMENT ON every new table,\n\
         -- and the update_updated_at_column() trigger on tables with updated_at.\n\
         \n\
         COMMIT;\n",
        issue = or(&new.issue, ISSUE_PLACEHOLDER),
        date = today.format("%Y-%m-%d"),
        author = or(&new.author, AUTHOR_PLACEHOLDER),
        description = or(&new.description, &new.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()
    }

    fn files(names: &[&str]) -> Vec<Migration> {
        names
            .iter()
            .map(|n| Migration::from_file(n, "SELECT 1;").unwrap())
            .collect()
    }

    #[test]
    fn numbers_follow_the_directory_style() {
        assert_eq!(next_number(&[], day()).unwrap(), "001");
        assert_eq!(
            next_number(&files(&["001_a.sql", "006_b.sql"]), day()).unwrap(),
            "007"
        );
        assert_eq!(next_number(&files(&["0099_a.sql"]), day()).unwrap(), "0100");
        assert_eq!(
            next_number(&files(&["20251229_dave.sql"]), day()).unwrap(),
            "20260105"
        );
        assert_eq!(
            next_number(&files(&["20251229143000_x.sql"]), day()).unwrap(),
            "20260105000000"
        );
        // A second file today keeps today's date in its number ...
        assert_eq!(
            next_number(&files(&["20260105000000_x.sql"]), day()).unwrap(),
            "20260105000001"
        );
        assert_eq!(
            next_number(&files(&["202601050000_x.sql"]), day()).unwrap(),
            "202601050001"
        );
        // ... or, numbered by day alone, is refused rather than dated tomorrow.
        let err = next_number(&files(&["20260105_x.sql"]), day()).unwrap_err();
        assert!(matches!(err, MigrateError::DateTaken { .. }), "{err}");
        assert!(err.to_string().contains("20260105_x.sql"), "{err}");
    }

    #[test]
    fn writes_the_template_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("001_init.sql"), "SELECT 1;").unwrap();
        let new = NewFile {
            name: "Add user-email".into(),
            issue: Some("#42".into()),
            author: Some("Ada".into()),
            description: None,
        };
        let path = create(dir.path(), &new, day()).unwrap();
        assert_eq!(path.file_name().unwrap(), "002_add_user_email.sql");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-- Migration: 002_add_user_email\n-- Issue: #42\n-- Date: 2026-01-05\n-- Author: Ada\n-- Description: Add user-email\n"));
        let m = Migration::from_file("002_add_user_email.sql", &text).unwrap();
        assert!(matches!(m.mode, super::super::source::TxMode::Own { .. }));
        assert!(matches!(
            create(
                dir.path(),
                &NewFile {
                    name: "x;y".into(),
                    ..Default::default()
                },
                day()
            ),
            Err(MigrateError::BadName { .. })
        ));
    }
}
