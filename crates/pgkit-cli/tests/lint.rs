//! `pgkit lint` as a user runs it: exit codes, text and JSON output.

use std::path::{Path, PathBuf};
use std::process::Command;

const PGKIT: &str = env!("CARGO_BIN_EXE_pgkit");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lint(dir: &Path, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(PGKIT);
    cmd.arg("lint").arg(dir);
    if json {
        cmd.args(["--format", "json"]);
    }
    let out = cmd.env_remove("PGKIT_MIGRATIONS_DIR").output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn daves_migrations_lint_clean() {
    let (code, stdout, stderr) = lint(&repo().join("crates/dave/migrations"), false);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 errors"), "{stdout}");
}

#[test]
fn a_bad_file_exits_1_with_location_rule_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_users.sql"),
        "-- Migration: 001_users\n-- Issue: X-1\n-- Date: 2025-01-15\n-- Author: A\n-- Description: users\nBEGIN;\nCREATE TABLE users (id int PRIMARY KEY);\nCOMMENT ON TABLE users IS 'u';\nCOMMIT;\n",
    )
    .unwrap();
    let (code, stdout, stderr) = lint(dir.path(), false);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("001_users.sql:7:1: error[create-if-not-exists]"),
        "{stdout}"
    );
    assert!(stdout.contains("fix:"), "{stdout}");
    assert!(stderr.contains("error: lint: 1 error"), "{stderr}");

    let (code, stdout, _) = lint(dir.path(), true);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["errors"], 1);
    assert_eq!(json["findings"][0]["rule"], "create-if-not-exists");
    assert_eq!(json["findings"][0]["line"], 7);
}

#[test]
fn a_missing_folder_is_a_fixable_error() {
    let (code, _, stderr) = lint(Path::new("/nonexistent/migrations"), false);
    assert_eq!(code, 1);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// The standard's template header, `-- Migration: 00X_description.sql`,
/// copied with the file's own name, lints clean.
#[test]
fn the_standards_template_header_with_sql_passes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("002_seed_reference_data.sql"),
        "-- Migration: 002_seed_reference_data.sql\n-- Issue: DAVE-123\n-- Date: 2025-01-15\n-- Author: Jane Doe\n-- Description: Seed reference data\nBEGIN;\nSELECT 1;\nCOMMIT;\n",
    )
    .unwrap();
    let (code, stdout, stderr) = lint(dir.path(), false);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("migration-header"), "{stdout}");
}
