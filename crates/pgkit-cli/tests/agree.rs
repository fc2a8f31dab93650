//! `pgkit lint` and the runner (`migrate`, `bundle`) agree, on one parser
//! (issue 14 §2): what the runner refuses, lint reports first, in the same
//! words; what lint's fixes (and audit's) say to write, the runner applies.

use std::path::Path;
use std::process::Output;

use pgkit::testing::check::connect;
use pgkit::testing::cluster;
use pgkit_cli::testing::{pgkit, stderr, stdout};

fn header(name: &str, description: &str) -> String {
    format!(
        "-- Migration: {name}\n-- Issue: DAVE-1\n-- Date: 2025-01-15\n-- Author: Jane Doe\n-- Description: {description}\n"
    )
}

const CREATE: &str = "BEGIN;\n\
CREATE TABLE IF NOT EXISTS parents (id BIGINT PRIMARY KEY);\n\
COMMENT ON TABLE parents IS 'Parents';\n\
CREATE TABLE IF NOT EXISTS children (id BIGINT PRIMARY KEY, parent_id BIGINT NOT NULL REFERENCES parents (id));\n\
COMMENT ON TABLE children IS 'Children of a parent';\n\
COMMIT;\n";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn run(url: Option<&str>, args: &[&str]) -> Output {
    pgkit(url, &[], args).output().expect("pgkit runs")
}

/// The `error:` line the runner printed, without `error: `.
fn error_line(out: &Output) -> String {
    stderr(out)
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("no error line: {}", stderr(out)))
        .to_owned()
}

#[test]
fn every_name_the_runner_refuses_lint_reports_in_the_same_words() {
    for bad in ["add_users.sql", "006-add.sql", "007_add.SQL"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        write(
            dir.path(),
            "001_create.sql",
            &format!("{}{CREATE}", header("001_create.sql", "tables")),
        );
        let stem = bad.split('.').next().unwrap();
        write(
            dir.path(),
            bad,
            &format!("{}BEGIN;\nSELECT 1;\nCOMMIT;\n", header(stem, "x")),
        );

        let out_file = dir.path().join("bundle.sql");
        let bundle = run(
            None,
            &["bundle", "--dir", d, "--out", out_file.to_str().unwrap()],
        );
        assert_eq!(bundle.status.code(), Some(1), "{bad}: {}", stderr(&bundle));
        let refused = error_line(&bundle);
        assert!(refused.starts_with(&format!("{bad}: ")), "{refused}");

        let lint = run(None, &["lint", d]);
        assert_eq!(lint.status.code(), Some(1), "{bad}: {}", stdout(&lint));
        let text = stdout(&lint);
        let finding = text
            .lines()
            .find(|l| l.contains("error[migration-file]"))
            .unwrap_or_else(|| panic!("{bad}: lint did not report it:\n{text}"));
        assert!(
            finding.ends_with(&refused),
            "{bad}:\n lint: {finding}\n runner: {refused}"
        );
        // The hint is the same too.
        let hint = stderr(&bundle)
            .lines()
            .find_map(|l| l.strip_prefix("hint: ").map(str::to_owned))
            .unwrap();
        assert!(text.contains(&format!("fix: {hint}")), "{text}\n{hint}");
    }
}

/// The file lint's `index-concurrently` fix describes, and the one audit's
/// `foreign-key-index` fix describes, pass lint and apply; without the
/// marker both lint and `migrate up` refuse it, in the same words.
#[tokio::test]
async fn a_concurrent_index_written_as_lint_and_audit_say_applies() {
    let db = cluster().await.database().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    write(
        dir.path(),
        "001_create.sql",
        &format!("{}{CREATE}", header("001_create.sql", "tables")),
    );
    let up = run(Some(db.url()), &["migrate", "--dir", d, "up"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));

    // Audit names the missing foreign-key index and where its fix goes.
    let audit = run(Some(db.url()), &["audit"]);
    let audit_out = stdout(&audit);
    let fix = audit_out
        .lines()
        .skip_while(|l| !l.contains("error[foreign-key-index]"))
        .find_map(|l| l.trim().strip_prefix("fix: "))
        .unwrap_or_else(|| panic!("{audit_out}"))
        .to_owned();
    assert!(fix.contains("-- pgkit:no-transaction"), "{fix}");

    // As lint's fix for a plain CREATE INDEX says: its own file, no
    // BEGIN/COMMIT, the marker in the header.
    let lint_fix = {
        write(
            dir.path(),
            "002_index.sql",
            &format!("{}BEGIN;\nCREATE INDEX IF NOT EXISTS idx_children_parent_id ON children (parent_id);\nCOMMIT;\n", header("002_index.sql", "index")),
        );
        let lint = run(None, &["lint", d]);
        let text = stdout(&lint);
        let line = text
            .lines()
            .skip_while(|l| !l.contains("warning[index-concurrently]"))
            .find_map(|l| l.trim().strip_prefix("fix: "))
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned();
        line
    };
    assert!(lint_fix.contains("-- pgkit:no-transaction"), "{lint_fix}");

    // Without the marker: lint and the runner refuse it alike.
    let unmarked = format!("{}{fix}\n", header("002_index.sql", "index"));
    write(dir.path(), "002_index.sql", &unmarked);
    let lint = run(None, &["lint", d]);
    assert_eq!(lint.status.code(), Some(1), "{}", stdout(&lint));
    let up = run(Some(db.url()), &["migrate", "--dir", d, "up"]);
    assert_eq!(up.status.code(), Some(1), "{}", stderr(&up));
    let refused = error_line(&up);
    assert!(
        refused.contains("CREATE INDEX CONCURRENTLY cannot run inside a transaction block"),
        "{refused}"
    );
    let refused_words = refused.split_once(": ").unwrap().1;
    assert!(
        stdout(&lint).contains(&format!(
            "error[migration-file] pgkit migrate refuses this file: {refused_words}"
        )),
        "{}\n{refused}",
        stdout(&lint)
    );
    assert!(
        stderr(&up).contains("hint: put `-- pgkit:no-transaction`"),
        "{}",
        stderr(&up)
    );

    // With it, as both fixes say: lint clean, applied, audit clean.
    let marked = format!(
        "{}-- pgkit:no-transaction\n{fix}\n",
        header("002_index.sql", "index")
    );
    write(dir.path(), "002_index.sql", &marked);
    let lint = run(None, &["lint", d]);
    assert_eq!(lint.status.code(), Some(0), "{}", stdout(&lint));
    assert!(
        stdout(&lint).contains("0 errors, 0 warnings"),
        "{}",
        stdout(&lint)
    );
    let up = run(Some(db.url()), &["migrate", "--dir", d, "up"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    let audit = run(Some(db.url()), &["audit"]);
    assert!(
        !stdout(&audit).contains("foreign-key-index"),
        "{}",
        stdout(&audit)
    );
    let c = connect(db.url()).await.unwrap();
    let valid: bool = c
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_children_parent_id'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
}

/// The "Done when": the standard's migration template, its seed file
/// structure (seeds as numbered files), Idempotent Seed Pattern (ending with
/// a NOTICE after COMMIT), AI Prompt Seed Pattern (INSERT ... SELECT ...
/// WHERE NOT EXISTS) and test-data seed (the app.environment guard), as the
/// standard writes them, in a fresh folder: lint clean, and apply twice with
/// the second run changing nothing.
#[tokio::test]
async fn the_standards_own_patterns_lint_clean_and_apply_twice() {
    let db = cluster().await.database().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write(
        dir.path(),
        "001_create_system_prompts.sql",
        "-- Migration: 001_create_system_prompts.sql\n\
         -- Issue: DAVE-123\n\
         -- Date: 2025-01-15\n\
         -- Author: Jane Doe\n\
         -- Description: System prompts table with updated_at trigger\n\
         \n\
         BEGIN;\n\
         \n\
         CREATE OR REPLACE FUNCTION update_updated_at_column()\n\
         RETURNS TRIGGER AS $$\n\
         BEGIN\n    NEW.updated_at = NOW();\n    RETURN NEW;\nEND;\n\
         $$ LANGUAGE plpgsql;\n\
         \n\
         CREATE TABLE IF NOT EXISTS system_prompts (\n\
         \x20   id UUID PRIMARY KEY DEFAULT gen_random_uuid(),\n\
         \x20   name VARCHAR(100) NOT NULL UNIQUE,\n\
         \x20   content TEXT NOT NULL,\n\
         \x20   metadata JSONB NOT NULL DEFAULT '{}',\n\
         \x20   created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),\n\
         \x20   updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()\n\
         );\n\
         \n\
         COMMENT ON TABLE system_prompts IS 'System prompts for AI interactions';\n\
         COMMENT ON COLUMN system_prompts.metadata IS 'Free-form JSON: {\"model\": string, \"temperature\": number}';\n\
         \n\
         DROP TRIGGER IF EXISTS update_system_prompts_updated_at ON system_prompts;\n\
         CREATE TRIGGER update_system_prompts_updated_at\n\
         \x20   BEFORE UPDATE ON system_prompts\n\
         \x20   FOR EACH ROW\n\
         \x20   EXECUTE FUNCTION update_updated_at_column();\n\
         \n\
         COMMIT;\n",
    );
    write(
        dir.path(),
        "002_seed_reference_data.sql",
        "-- Migration: 002_seed_reference_data.sql\n\
         -- Issue: DAVE-124\n\
         -- Date: 2025-01-15\n\
         -- Author: Jane Doe\n\
         -- Description: Seed reference data (idempotent)\n\
         \n\
         BEGIN;\n\
         \n\
         INSERT INTO system_prompts (name, content) VALUES\n\
         \x20   ('default', 'You are a helpful assistant.'),\n\
         \x20   ('summarize', 'Summarize the following text.')\n\
         ON CONFLICT (name) DO UPDATE SET content = EXCLUDED.content;\n\
         \n\
         COMMIT;\n\
         \n\
         DO $$ BEGIN RAISE NOTICE 'Seed data applied at %', NOW(); END $$;\n",
    );
    write(
        dir.path(),
        "003_seed_system_prompts.sql",
        "-- Migration: 003_seed_system_prompts.sql\n\
         -- Issue: DAVE-125\n\
         -- Date: 2025-01-15\n\
         -- Author: Jane Doe\n\
         -- Description: AI prompt seed\n\
         \n\
         BEGIN;\n\
         \n\
         INSERT INTO system_prompts (name, content)\n\
         SELECT 'classifier', 'Classify the request into one of: billing, support, sales.'\n\
         WHERE NOT EXISTS (\n\
         \x20   SELECT 1 FROM system_prompts WHERE name = 'classifier'\n\
         );\n\
         \n\
         COMMIT;\n",
    );
    write(
        &dir.path().join("data"),
        "001_test_prompts.sql",
        "-- Test data: only where app.environment is 'test'\n\
         DO $$\n\
         BEGIN\n\
         \x20   IF current_setting('app.environment', true) = 'test' THEN\n\
         \x20       INSERT INTO system_prompts (name, content)\n\
         \x20       VALUES ('test-prompt', 'A prompt for tests')\n\
         \x20       ON CONFLICT (name) DO NOTHING;\n\
         \x20   END IF;\n\
         END $$;\n",
    );

    let lint = run(None, &["lint", d]);
    assert_eq!(lint.status.code(), Some(0), "{}", stdout(&lint));
    assert!(
        stdout(&lint).contains("0 errors, 0 warnings in 4 files"),
        "{}",
        stdout(&lint)
    );

    let c = connect(db.url()).await.unwrap();
    let mut snapshots = Vec::new();
    for round in 0..2 {
        let up = run(Some(db.url()), &["migrate", "--dir", d, "up"]);
        assert_eq!(up.status.code(), Some(0), "round {round}: {}", stderr(&up));
        if round == 0 {
            assert!(
                stderr(&up).contains("NOTICE: Seed data applied at"),
                "{}",
                stderr(&up)
            );
        } else {
            assert!(
                stderr(&up).contains("database is up to date (3 migration(s) applied)"),
                "{}",
                stderr(&up)
            );
        }
        let seed = pgkit(
            Some(db.url()),
            &[("APP_ENVIRONMENT", "test")],
            &["seed", "--dir", d],
        )
        .output()
        .unwrap();
        assert_eq!(
            seed.status.code(),
            Some(0),
            "round {round}: {}",
            stderr(&seed)
        );
        let rows: Vec<String> = c
            .query(
                "SELECT name || ':' || content FROM system_prompts ORDER BY name",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let tracked: i64 = c
            .query_one("SELECT count(*) FROM pgkit_migrations", &[])
            .await
            .unwrap()
            .get(0);
        snapshots.push((rows, tracked));
    }
    assert_eq!(
        snapshots[0], snapshots[1],
        "the second run changed something"
    );
    assert_eq!(snapshots[0].0.len(), 4, "{:?}", snapshots[0]);
    assert_eq!(snapshots[0].1, 3);
}
