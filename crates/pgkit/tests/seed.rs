//! Seeds on a real PostgreSQL: idempotent reruns, test data gated by the
//! session's environment, failures located in the file.

use std::path::{Path, PathBuf};

use pgkit::connect::SessionParams;
use pgkit::dsn::Dsn;
use pgkit::migrate::{Event, MigrateError, MigrateOptions, MigrationSource, Migrator};
use pgkit::seed::{self, SeedFiles, SeedOptions};
use pgkit::settings::DbSettings;
use pgkit::testing::{cluster, TestDatabase};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrate/standard")
}

fn params(db: &TestDatabase, environment: &str) -> (Dsn, SessionParams) {
    let dsn = Dsn::parse(db.url()).unwrap();
    let mut params = SessionParams::from_settings(&DbSettings::for_dsn(dsn.clone(), "pgkit-test"));
    params.environment = environment.into();
    (dsn, params)
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    let client = pgkit::testing::check::connect(db.url()).await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A database with the standard fixture's migrations applied.
async fn migrated() -> TestDatabase {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    Migrator::new(MigrationSource::Dir(fixture()), MigrateOptions::default())
        .up(&dsn, &params, |_| {})
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn seeds_run_every_time_and_change_nothing_the_second_time() {
    let db = migrated().await;
    let (dsn, params) = params(&db, "development");
    let files = SeedFiles::from_dir(&fixture());
    let mut events = Vec::new();
    let report = seed::run(&dsn, &params, &files, &SeedOptions::default(), |e| {
        events.push(e.clone())
    })
    .await
    .unwrap();
    assert_eq!(
        report.seeds,
        ["seeds/001_categories.sql", "seeds/002_ai_prompts.sql"]
    );
    assert!(report.data.is_empty());
    assert_eq!(report.data_skipped, 1);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::DataSkipped { files: 1, .. })));

    let counts = || async {
        (
            count(&db, "SELECT count(*) FROM categories").await,
            count(&db, "SELECT count(*) FROM admin_prompt_versions").await,
            count(&db, "SELECT count(*) FROM documents").await,
        )
    };
    let first = counts().await;
    assert_eq!(first, (3, 1, 0));
    seed::run(&dsn, &params, &files, &SeedOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(counts().await, first);
}

#[tokio::test]
async fn test_data_goes_in_only_when_the_environment_is_test() {
    let db = migrated().await;
    let files = SeedFiles::from_dir(&fixture());
    for environment in ["development", "staging", "production"] {
        let (dsn, params) = params(&db, environment);
        seed::run(&dsn, &params, &files, &SeedOptions::default(), |_| {})
            .await
            .unwrap();
        assert_eq!(
            count(&db, "SELECT count(*) FROM documents").await,
            0,
            "{environment}"
        );
    }
    let (dsn, params) = params(&db, "test");
    let report = seed::run(&dsn, &params, &files, &SeedOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.data, ["data/001_test_documents.sql"]);
    assert_eq!(count(&db, "SELECT count(*) FROM documents").await, 2);
}

#[tokio::test]
async fn the_in_file_guard_sees_the_sessions_environment() {
    // Even when the runner is told to run data/ (environment test), the file's
    // own guard reads app.environment from the same session: they agree.
    static DATA: &[(&str, &str)] = &[(
        "001_guarded.sql",
        "CREATE TABLE IF NOT EXISTS seen (env text);\n\
         INSERT INTO seen SELECT current_setting('app.environment', true);",
    )];
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "test");
    let files = SeedFiles {
        seeds: MigrationSource::Embedded(&[]),
        data: MigrationSource::Embedded(DATA),
    };
    seed::run(&dsn, &params, &files, &SeedOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM seen WHERE env = 'test'").await,
        1
    );
}

#[tokio::test]
async fn a_failing_seed_names_its_file_and_line_and_rolls_back() {
    static SEEDS: &[(&str, &str)] = &[
        ("001_ok.sql", "CREATE TABLE IF NOT EXISTS ok_seed (id int PRIMARY KEY);\nINSERT INTO ok_seed VALUES (1) ON CONFLICT DO NOTHING;"),
        (
            "002_bad.sql",
            "BEGIN;\nCREATE TABLE half (id int);\nINSERT INTO missing_table VALUES (1);\nCOMMIT;",
        ),
    ];
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let files = SeedFiles {
        seeds: MigrationSource::Embedded(SEEDS),
        data: MigrationSource::Embedded(&[]),
    };
    let err = seed::run(&dsn, &params, &files, &SeedOptions::default(), |_| {})
        .await
        .unwrap_err();
    let MigrateError::SeedFailed(f) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (f.name.as_str(), f.line, f.column),
        ("seeds/002_bad.sql", 3, Some(13))
    );
    assert!(f.message.contains("missing_table"), "{err}");
    assert_eq!(count(&db, "SELECT count(*) FROM ok_seed").await, 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'half'"
        )
        .await,
        0
    );
}

/// The standard's Idempotent Seed Pattern ends with `COMMIT;` then a `DO`
/// block raising a NOTICE: it runs after the seed's transaction.
#[tokio::test]
async fn a_seed_with_statements_after_its_commit_runs_them() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("seeds")).unwrap();
    std::fs::write(
        dir.path().join("seeds/001_reference.sql"),
        "BEGIN;\nCREATE TABLE IF NOT EXISTS reference (n int PRIMARY KEY);\nINSERT INTO reference VALUES (1) ON CONFLICT DO NOTHING;\nCOMMIT;\nDO $$ BEGIN RAISE NOTICE 'Seed data applied at %', NOW(); END $$;\n",
    )
    .unwrap();
    let files = SeedFiles::from_dir(dir.path());
    for _ in 0..2 {
        let mut notices = Vec::new();
        seed::run(&dsn, &params, &files, &SeedOptions::default(), |e| {
            if let Event::Notice { message, .. } = e {
                notices.push(message.clone())
            }
        })
        .await
        .unwrap();
        assert!(
            notices
                .iter()
                .any(|m| m.starts_with("Seed data applied at")),
            "{notices:?}"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM reference").await, 1);
}
