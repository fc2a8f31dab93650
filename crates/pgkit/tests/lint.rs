//! `pgkit::lint` on whole migration folders, as `pgkit lint DIR` runs it.
//!
//! Fixtures live in `tests/fixtures/lint/`: for every rule a `fail/` folder
//! that breaks it and a `pass/` folder that follows it, plus the standard's
//! own examples (`standard/`) and the Python reference's migrations
//! (`python-reference/`). A folder's `expected.txt` lists every finding it
//! must produce, one `file:line:col: severity[rule]` per line (`#` starts a
//! comment); a folder without one must lint clean.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use pgkit::lint::{lint_dir, lint_files, LintError, LintOptions, Report, Rule, Severity};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

fn lint(dir: &Path) -> Report {
    lint_dir(dir, &LintOptions::default())
        .unwrap_or_else(|e| panic!("linting {}: {e}", dir.display()))
}

/// `file:line:col: severity[rule]` with the path relative to `dir`.
fn rendered(dir: &Path, report: &Report) -> Vec<String> {
    report
        .findings()
        .iter()
        .map(|f| {
            let file = f.file.strip_prefix(dir).unwrap_or(&f.file);
            format!(
                "{}:{}:{}: {}[{}]",
                file.display(),
                f.line,
                f.col,
                f.severity,
                f.rule
            )
        })
        .collect()
}

fn expected(dir: &Path) -> Vec<String> {
    match fs::read_to_string(dir.join("expected.txt")) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every folder under the fixtures that holds `.sql` files directly.
fn fixture_sets() -> Vec<PathBuf> {
    let mut sets = BTreeSet::new();
    let mut stack = vec![fixtures()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "sql") {
                // seeds/ and data/ belong to the set one level up
                let name = dir.file_name().unwrap();
                let set = if name == "seeds" || name == "data" {
                    dir.parent().unwrap().to_path_buf()
                } else {
                    dir.clone()
                };
                sets.insert(set);
            }
        }
    }
    sets.into_iter().collect()
}

#[test]
fn every_fixture_produces_exactly_its_expected_findings() {
    let sets = fixture_sets();
    assert!(
        sets.len() >= 34,
        "found only {} fixture folders",
        sets.len()
    );
    let mut failures = Vec::new();
    for dir in &sets {
        let got = rendered(dir, &lint(dir));
        let want = expected(dir);
        if got != want {
            failures.push(format!(
                "{}\n  expected:\n    {}\n  got:\n    {}",
                dir.display(),
                want.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_has_a_failing_and_a_passing_fixture() {
    for rule in Rule::ALL {
        let fail = fixtures().join(rule.as_str()).join("fail");
        let pass = fixtures().join(rule.as_str()).join("pass");
        let failing = lint(&fail);
        assert!(
            failing.findings().iter().any(|f| f.rule == rule),
            "{} must produce a {rule} finding",
            fail.display()
        );
        let passing = lint(&pass);
        assert!(
            passing.findings().is_empty(),
            "{} must lint clean:\n{}",
            pass.display(),
            passing.to_text()
        );
    }
}

#[test]
fn the_standards_trigger_example_fails_and_its_template_passes() {
    let dir = fixtures().join("standard");
    let report = lint(&dir);
    let rules: Vec<(String, Rule)> = report
        .findings()
        .iter()
        .map(|f| {
            (
                f.file.file_name().unwrap().to_string_lossy().into_owned(),
                f.rule,
            )
        })
        .collect();
    assert_eq!(
        rules,
        [("002_create_x.sql".to_owned(), Rule::RerunnableTrigger)]
    );
    let finding = &report.findings()[0];
    assert_eq!((finding.line, finding.col), (16, 1));
    assert!(finding
        .fix
        .contains("DROP TRIGGER IF EXISTS update_x_updated_at ON x;"));
}

#[test]
fn a_suppression_without_a_reason_is_reported_and_does_not_suppress() {
    let dir = fixtures().join("invalid-suppression/fail");
    let report = lint(&dir);
    let found: Vec<(Rule, u32)> = report.findings().iter().map(|f| (f.rule, f.line)).collect();
    assert_eq!(
        found,
        [(Rule::InvalidSuppression, 9), (Rule::DropTable, 10)]
    );
    assert!(report.has_errors());
    assert!(report.findings()[0].message.contains("gives no reason"));
}

#[test]
fn daves_own_migrations_lint_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dave/migrations");
    let report = lint(&dir);
    assert!(
        report.findings().is_empty(),
        "dave's migrations must lint clean:\n{}",
        report.to_text()
    );
    assert!(report.files_checked() >= 6, "{}", report.summary());
}

#[test]
fn text_report_gives_location_rule_message_and_fix() {
    let dir = fixtures().join("table-comment/fail");
    let text = lint(&dir).to_text();
    let file = dir.join("001_create_labels.sql");
    let expected = format!(
        "{}:9:1: error[table-comment] table labels has no COMMENT ON TABLE\n  \
         fix: add `COMMENT ON TABLE labels IS '<what a row is, who writes it>';` after the CREATE TABLE\n\
         1 error, 0 warnings in 1 file\n",
        file.display()
    );
    assert_eq!(text, expected);
}

#[test]
fn json_report_lists_findings_and_counts() {
    let dir = fixtures().join("drop-table/fail");
    let report = lint(&dir);
    assert!(
        !report.has_errors(),
        "a warning alone must not fail the run"
    );
    let json = report.to_json();
    assert_eq!(json["errors"], 0);
    assert_eq!(json["warnings"], 1);
    assert_eq!(json["files_checked"], 2);
    let finding = &json["findings"][0];
    assert_eq!(finding["rule"], "drop-table");
    assert_eq!(finding["severity"], "warning");
    assert_eq!(finding["line"], 9);
    assert_eq!(finding["col"], 1);
    assert!(finding["file"]
        .as_str()
        .unwrap()
        .ends_with("002_drop_roles.sql"));
    assert!(finding["fix"]
        .as_str()
        .unwrap()
        .contains("pgkit:allow drop-table"));
}

#[test]
fn lint_files_classifies_by_folder_and_sorts_into_apply_order() {
    let files = vec![
        (
            PathBuf::from("m/seeds/001_roles.sql"),
            "INSERT INTO roles (name) VALUES ('a');".to_owned(),
        ),
        (
            PathBuf::from("m/data/001_fixtures.sql"),
            "INSERT INTO roles (name) VALUES ('b') ON CONFLICT DO NOTHING;".to_owned(),
        ),
    ];
    let report = lint_files(&files, &LintOptions::default());
    let rules: Vec<Rule> = report.findings().iter().map(|f| f.rule).collect();
    assert_eq!(rules, [Rule::SeedOnConflict, Rule::DataEnvironmentGuard]);
    assert!(report
        .findings()
        .iter()
        .all(|f| f.severity == Severity::Error));
}

#[test]
fn custom_seed_and_data_folder_names() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = tmp.path().join("fixtures");
    fs::create_dir(&seeds).unwrap();
    fs::write(
        seeds.join("001_roles.sql"),
        "INSERT INTO roles (name) VALUES ('a');",
    )
    .unwrap();
    let opts = LintOptions {
        seeds_dir: "fixtures".into(),
        ..LintOptions::default()
    };
    let report = lint_dir(tmp.path(), &opts).unwrap();
    let rules: Vec<Rule> = report.findings().iter().map(|f| f.rule).collect();
    assert_eq!(rules, [Rule::SeedOnConflict]);
}

#[test]
fn a_missing_folder_is_a_clear_error() {
    let err = lint_dir(Path::new("/no/such/migrations"), &LintOptions::default()).unwrap_err();
    assert!(matches!(err, LintError::NotAFolder { .. }));
    assert!(err.to_string().contains("/no/such/migrations"));
    assert!(err.to_string().contains("NNN_*.sql"));
}

#[test]
fn a_folder_without_sql_files_is_an_error_not_a_clean_report() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("README.md"), "not sql").unwrap();
    let err = lint_dir(tmp.path(), &LintOptions::default()).unwrap_err();
    assert!(matches!(err, LintError::NoSqlFiles { .. }), "{err}");
    assert!(err.to_string().contains("is this the migrations folder?"));
}

#[test]
fn a_file_that_is_not_utf8_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("001_latin1.sql");
    fs::write(&path, b"-- caf\xe9\nSELECT 1;\n").unwrap();
    let err = lint_dir(tmp.path(), &LintOptions::default()).unwrap_err();
    assert!(matches!(err, LintError::NotUtf8 { .. }), "{err}");
    assert!(err.to_string().contains("001_latin1.sql"));
}

#[test]
fn every_rule_is_documented_with_a_bad_and_a_good_example() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/lint-rules.md");
    let text = fs::read_to_string(&docs).expect("docs/lint-rules.md");
    for rule in Rule::ALL {
        let heading = format!("\n## `{}`", rule.as_str());
        let start = text
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/lint-rules.md has no section {heading:?}"));
        let section = &text[start + heading.len()..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        assert!(section.contains("\nBad"), "{rule}: no bad example");
        assert!(section.contains("\nGood"), "{rule}: no good example");
        assert!(
            section.matches("```sql").count() >= 2,
            "{rule}: examples are not SQL blocks"
        );
        let severity = format!("Severity: {}", rule.severity());
        assert!(section.contains(&severity), "{rule}: severity not stated");
    }
}
