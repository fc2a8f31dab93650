//! The rules, one file each. Every rule reads the whole migration set (some
//! rules span files: a trigger may come in a later file than its table) and
//! pushes plain [`Finding`]s; suppression happens afterwards, in one place.

mod alter_column_type;
mod create_if_not_exists;
mod create_or_replace_function;
mod data_environment_guard;
mod drop_column;
mod drop_table;
mod index_concurrently;
mod jsonb_column_comment;
mod migration_file;
mod migration_header;
mod rerunnable_trigger;
mod seed_on_conflict;
mod syntax_error;
mod table_comment;
mod transaction_wrapper;
mod updated_at_trigger;

pub(crate) mod catalog;

use super::report::Finding;
use super::source::SqlFile;

/// A finding plus whether it is about the file as a whole (then an allow
/// comment in the header suppresses it).
pub(crate) struct Draft {
    pub finding: Finding,
    pub file_level: bool,
}

/// Where rules put their findings.
#[derive(Default)]
pub(crate) struct Sink {
    pub drafts: Vec<Draft>,
}

impl Sink {
    pub fn push(&mut self, finding: Finding) {
        self.drafts.push(Draft {
            finding,
            file_level: false,
        });
    }

    pub fn push_file_level(&mut self, finding: Finding) {
        self.drafts.push(Draft {
            finding,
            file_level: true,
        });
    }
}

/// Runs every rule over `files`, which are in the order they are applied.
pub(crate) fn run_all(files: &[SqlFile], sink: &mut Sink) {
    let catalog = catalog::Catalog::build(files);
    syntax_error::check(files, sink);
    migration_file::check(files, sink);
    migration_header::check(files, sink);
    transaction_wrapper::check(files, sink);
    create_if_not_exists::check(files, sink);
    create_or_replace_function::check(files, sink);
    rerunnable_trigger::check(files, sink);
    updated_at_trigger::check(files, &catalog, sink);
    table_comment::check(files, &catalog, sink);
    jsonb_column_comment::check(files, &catalog, sink);
    seed_on_conflict::check(files, sink);
    data_environment_guard::check(files, sink);
    index_concurrently::check(files, sink);
    drop_table::check(files, sink);
    drop_column::check(files, sink);
    alter_column_type::check(files, sink);
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Lints SQL given inline and renders the findings of one rule as
    //! `file:line:col message` lines, so each rule's tests read like snapshots.

    use std::path::PathBuf;

    use crate::lint::{lint_files, LintOptions, Rule};

    /// Lints `(path, sql)` pairs as one migration set.
    pub fn lint(files: &[(&str, &str)], rule: Rule) -> Vec<String> {
        let files: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(p, s)| (PathBuf::from(p), (*s).to_owned()))
            .collect();
        lint_files(&files, &LintOptions::default())
            .findings()
            .iter()
            .filter(|f| f.rule == rule)
            .map(|f| format!("{}:{}:{} {}", f.file.display(), f.line, f.col, f.message))
            .collect()
    }

    /// Lints one migration file.
    pub fn lint_one(sql: &str, rule: Rule) -> Vec<String> {
        lint(&[("001_x.sql", sql)], rule)
    }

    /// The standard's header and transaction around `body`, so tests of other
    /// rules see only their own findings.
    pub fn migration(name: &str, body: &str) -> String {
        format!(
            "-- Migration: {name}\n-- Issue: T-1\n-- Date: 2025-01-15\n-- Author: Test\n-- Description: test\nBEGIN;\n{body}\nCOMMIT;\n"
        )
    }
}
