//! Issue 14 §5, as a new user meets it: lint takes --dir and has a default
//! folder, one message for a missing folder, each command's help lists the
//! flags it uses, `migrate new` writes placeholders lint reports and numbers
//! a date-numbered folder correctly, `migrate status --format json`.

use std::path::Path;
use std::process::Output;

use pgkit_cli::testing::{pgkit, stderr, stdout};

fn run_in(cwd: &Path, args: &[&str]) -> Output {
    pgkit(None, &[], args).current_dir(cwd).output().unwrap()
}

fn help(args: &[&str]) -> String {
    let out = pgkit(None, &[], args).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

const GOOD: &str = "-- Migration: 001_x.sql\n-- Issue: X-1\n-- Date: 2025-01-15\n-- Author: A\n-- Description: d\nBEGIN;\nSELECT 1;\nCOMMIT;\n";

#[test]
fn lint_takes_dir_like_every_command_and_defaults_to_migrations() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("migrations");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("001_x.sql"), GOOD).unwrap();
    for args in [
        vec!["lint", "--dir", dir.to_str().unwrap()],
        vec!["lint", dir.to_str().unwrap()],
        vec!["lint"],
    ] {
        let out = run_in(root.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("0 errors, 0 warnings in 1 file"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn a_missing_folder_gets_one_message_from_every_command() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("nope");
    let m = missing.to_str().unwrap();
    let want = format!("error: migrations folder {m} does not exist or is not a folder\n");
    for args in [
        vec!["lint", m],
        vec!["lint", "--dir", m],
        vec!["migrate", "--dir", m, "status"],
        vec!["migrate", "--dir", m, "up"],
        vec!["seed", "--dir", m],
        vec!["bundle", "--dir", m, "--out", "-"],
    ] {
        let out = run_in(root.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).starts_with(&want),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn each_help_lists_only_the_flags_its_command_uses() {
    let new = help(&["migrate", "new"]);
    for flag in ["--dir", "--issue", "--author", "--description"] {
        assert!(new.contains(flag), "{flag}: {new}");
    }
    for flag in [
        "--schema",
        "--database-url",
        "--lock-timeout",
        "--ddl-lock-timeout",
        "--environment",
        "--statement-timeout",
    ] {
        assert!(
            !new.contains(flag),
            "migrate new --help lists {flag}:\n{new}"
        );
    }
    // --environment's words about data/ only where seeds run.
    assert!(help(&["seed"]).contains("data/ runs only for test"));
    for args in [
        vec!["migrate", "up"],
        vec!["migrate", "status"],
        vec!["provision"],
        vec!["doctor"],
        vec!["audit"],
        vec!["bundle"],
        vec!["lint"],
    ] {
        let text = help(&args);
        assert!(!text.contains("seeds run data/"), "{args:?}:\n{text}");
        assert!(!text.contains("data/ runs only"), "{args:?}:\n{text}");
    }
    for args in [vec!["audit"], vec!["bundle"], vec!["lint"]] {
        assert!(!help(&args).contains("--environment"), "{args:?}");
    }
    let status = help(&["migrate", "status"]);
    assert!(status.contains("--format <FORMAT>"), "{status}");
    let up = help(&["migrate", "up"]);
    assert!(up.contains("--ddl-lock-timeout"), "{up}");
}

#[test]
fn migrate_new_leaves_placeholders_that_lint_reports() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("migrations");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("001_x.sql"), GOOD).unwrap();
    // No --issue, no --author, no git identity (HOME is cleared).
    let out = run_in(root.path(), &["migrate", "new", "add notes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.join("002_add_notes.sql")).unwrap();
    assert!(
        !text.contains("(none)") && !text.contains("(unknown)"),
        "{text}"
    );
    let lint = run_in(root.path(), &["lint"]);
    assert_eq!(lint.status.code(), Some(1), "{}", stdout(&lint));
    let found = stdout(&lint);
    assert!(found.contains("002_add_notes.sql:2:1: error[migration-header] the header `Issue: <issue id, e.g. DAVE-123>` is still a placeholder"), "{found}");
    assert!(found.contains("002_add_notes.sql:4:1: error[migration-header] the header `Author: <who wrote it>` is still a placeholder"), "{found}");

    // Given, they are written and lint passes the header.
    let out = run_in(
        root.path(),
        &[
            "migrate", "new", "add tags", "--issue", "DAVE-7", "--author", "Ada",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.join("003_add_tags.sql")).unwrap();
    assert!(
        text.contains("-- Issue: DAVE-7\n") && text.contains("-- Author: Ada\n"),
        "{text}"
    );
}

#[test]
fn a_second_file_on_one_day_in_a_date_numbered_folder() {
    let today = chrono::Local::now()
        .date_naive()
        .format("%Y%m%d")
        .to_string();
    // Numbered with a time: the next number, still today's.
    let root = tempfile::tempdir().unwrap();
    let d = root.path().to_str().unwrap();
    std::fs::write(root.path().join(format!("{today}000000_a.sql")), GOOD).unwrap();
    let out = run_in(root.path(), &["migrate", "--dir", d, "new", "b"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .trim()
            .ends_with(&format!("{today}000001_b.sql")),
        "{}",
        stdout(&out)
    );

    // Numbered by day alone: refused, not dated tomorrow.
    let root = tempfile::tempdir().unwrap();
    let d = root.path().to_str().unwrap();
    std::fs::write(root.path().join(format!("{today}_a.sql")), GOOD).unwrap();
    let out = run_in(root.path(), &["migrate", "--dir", d, "new", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("error: {today}_a.sql already has today's number")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        1,
        "no file written"
    );
}

#[tokio::test]
async fn migrate_status_takes_format_json_and_keeps_json() {
    let db = pgkit::testing::cluster().await.database().await;
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("001_x.sql"), GOOD).unwrap();
    let d = root.path().to_str().unwrap();
    for flag in [&["--format", "json"][..], &["--json"][..]] {
        let mut args = vec!["migrate", "--dir", d, "status"];
        args.extend_from_slice(flag);
        let out = pgkit(Some(db.url()), &[], &args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag:?}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["migrations"][0]["state"], "pending", "{flag:?}");
    }
}
