//! The migration engine on a real PostgreSQL: the standard's examples, a
//! failing file, a changed file, adoption, the lock, the bundle under psql.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgkit::connect::SessionParams;
use pgkit::dsn::Dsn;
use pgkit::migrate::{Event, MigrateError, MigrateOptions, MigrationSource, Migrator, State};
use pgkit::settings::DbSettings;
use pgkit::testing::{cluster, TestDatabase};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/migrate")
        .join(name)
}

/// A writable copy of a fixture directory (top-level files only).
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

fn params(db: &TestDatabase, environment: &str) -> (Dsn, SessionParams) {
    let dsn = Dsn::parse(db.url()).unwrap();
    let mut params = SessionParams::from_settings(&DbSettings::for_dsn(dsn.clone(), "pgkit-test"));
    params.environment = environment.into();
    (dsn, params)
}

fn migrator(dir: &Path) -> Migrator {
    Migrator::new(
        MigrationSource::Dir(dir.to_path_buf()),
        MigrateOptions::default(),
    )
}

async fn client(db: &TestDatabase) -> tokio_postgres::Client {
    let (client, conn) = Dsn::parse(db.url())
        .unwrap()
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// (version, name, checksum) of every tracking row.
async fn tracking_rows(db: &TestDatabase, schema: &str) -> Vec<(i64, String, String)> {
    let sql =
        format!("SELECT version, name, checksum FROM {schema}.pgkit_migrations ORDER BY version");
    client(db)
        .await
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    client(db).await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn exists(db: &TestDatabase, relation: &str) -> bool {
    client(db)
        .await
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation])
        .await
        .unwrap()
        .get(0)
}

fn collect() -> (Arc<Mutex<Vec<Event>>>, impl FnMut(&Event) + Send) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |e: &Event| {
        sink.lock().unwrap().push(e.clone())
    })
}

#[tokio::test]
async fn the_standards_examples_apply_once_and_a_second_run_changes_nothing() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let m = migrator(&fixture("standard"));
    let (events, sink) = collect();

    let report = m.up(&dsn, &params, sink).await.unwrap();
    let names: Vec<&str> = report.applied.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "001_create_updated_at_function.sql",
            "002_create_documents.sql",
            "003_create_categories_and_prompts.sql",
            "004_index_documents_category.sql",
            "20261201_search_function.sql"
        ]
    );
    let notices: Vec<Event> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Notice { .. }))
        .cloned()
        .collect();
    assert!(
        notices
            .iter()
            .any(|e| matches!(e, Event::Notice { name, message, .. }
            if name == "002_create_documents.sql" && message == "documents table ready")),
        "{notices:?}"
    );
    let first = tracking_rows(&db, "public").await;
    assert_eq!(first.len(), 5);
    assert_eq!(first[4].0, 20261201);

    // What the files made works: the trigger stamps updated_at, the
    // concurrent indexes are valid, the function answers.
    let c = client(&db).await;
    c.batch_execute(
        "INSERT INTO documents (category, title, updated_at) VALUES ('guide', 't', now() - interval '1 day');
         UPDATE documents SET title = 't2';",
    )
    .await
    .unwrap();
    let fresh: bool = c
        .query_one(
            "SELECT updated_at > now() - interval '1 minute' FROM documents",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(fresh, "the update_updated_at_column() trigger did not fire");
    let valid: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indisvalid AND indexrelid::regclass::text IN ('idx_documents_category', 'idx_documents_created_at')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(valid, 2);
    assert_eq!(
        count(&db, "SELECT count(*) FROM documents_in_category('guide')").await,
        1
    );

    let (_, sink) = collect();
    let again = m.up(&dsn, &params, sink).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, 5);
    assert_eq!(tracking_rows(&db, "public").await, first);
}

#[tokio::test]
async fn a_failing_file_is_reported_at_its_line_and_not_recorded() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("001_a.sql"), "CREATE TABLE a (id int);\n").unwrap();
    std::fs::write(
        dir.path().join("002_b.sql"),
        "BEGIN;\nCREATE TABLE b (id int);\nCOMMIT;\n",
    )
    .unwrap();
    // Line 7, column 1: the misspelt keyword.
    std::fs::write(
        dir.path().join("003_broken.sql"),
        "-- Migration: 003_broken\n\nBEGIN;\n\nCREATE TABLE c (id int);\n\nSELEC 1;\n\nCOMMIT;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("004_later.sql"),
        "CREATE TABLE d (id int);\n",
    )
    .unwrap();

    let (_, sink) = collect();
    let err = migrator(dir.path())
        .up(&dsn, &params, sink)
        .await
        .unwrap_err();
    let MigrateError::Failed(f) = &err else {
        panic!("expected a file failure, got {err}");
    };
    assert_eq!(
        (f.name.as_str(), f.line, f.column),
        ("003_broken.sql", 7, Some(1))
    );
    assert!(
        f.message.contains("syntax error at or near \"SELEC\""),
        "{}",
        f.message
    );
    assert!(
        err.to_string()
            .starts_with("migration failed at 003_broken.sql:7:1: syntax error"),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("003_broken.sql"));

    let versions: Vec<i64> = tracking_rows(&db, "public")
        .await
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(versions, [1, 2]);
    assert!(exists(&db, "a").await && exists(&db, "b").await);
    assert!(
        !exists(&db, "c").await,
        "the failing file's earlier statements were rolled back"
    );
    assert!(
        !exists(&db, "d").await,
        "files after the failing one did not run"
    );
}

#[tokio::test]
async fn errors_inside_do_blocks_and_wrapped_files_point_at_the_right_line() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_do.sql"),
        "CREATE TABLE x (id int);\nDO $$\nBEGIN\n    PERFORM 1;\n    RAISE EXCEPTION 'stop here';\nEND\n$$;\n",
    )
    .unwrap();
    let (_, sink) = collect();
    let err = migrator(dir.path())
        .up(&dsn, &params, sink)
        .await
        .unwrap_err();
    let MigrateError::Failed(f) = &err else {
        panic!("{err}")
    };
    assert_eq!((f.line, f.message.as_str()), (5, "stop here"), "{err}");
    assert!(
        !exists(&db, "x").await,
        "a wrapped file rolls back as a whole"
    );
    assert!(tracking_rows(&db, "public").await.is_empty());
}

#[tokio::test]
async fn a_file_and_its_record_land_together_even_when_its_own_commit_fails() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = tempfile::tempdir().unwrap();
    // The deferred foreign key is checked at the file's own COMMIT, after
    // the tracking row went in: both must go.
    std::fs::write(
        dir.path().join("001_deferred.sql"),
        "BEGIN;\n\
         CREATE TABLE parent (id int PRIMARY KEY);\n\
         CREATE TABLE child (parent_id int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);\n\
         INSERT INTO child VALUES (42);\n\
         COMMIT;\n",
    )
    .unwrap();
    let (_, sink) = collect();
    let err = migrator(dir.path())
        .up(&dsn, &params, sink)
        .await
        .unwrap_err();
    let MigrateError::Failed(f) = &err else {
        panic!("{err}")
    };
    assert_eq!(f.line, 5, "{err}");
    assert!(f.message.contains("foreign key"), "{err}");
    assert!(!exists(&db, "parent").await);
    assert!(tracking_rows(&db, "public").await.is_empty());
}

#[tokio::test]
async fn an_edited_applied_file_stops_up_until_repaired() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = copy_fixture("standard");
    let m = migrator(dir.path());
    let (_, sink) = collect();
    m.up(&dsn, &params, sink).await.unwrap();
    let before = tracking_rows(&db, "public").await;

    let file = dir.path().join("002_create_documents.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("Free-form JSON object", "Free-form JSON object (edited)"),
    )
    .unwrap();

    let status = m.status(&dsn, &params).await.unwrap();
    assert_eq!(status.count(State::Changed), 1);
    let (_, sink) = collect();
    let err = m.up(&dsn, &params, sink).await.unwrap_err();
    let MigrateError::Changed { files } = &err else {
        panic!("{err}")
    };
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, "002_create_documents.sql");
    assert_eq!(files[0].applied_checksum, before[1].2);
    let msg = err.to_string();
    assert!(
        msg.contains(&files[0].applied_checksum) && msg.contains(&files[0].file_checksum),
        "{msg}"
    );

    let (events, sink) = collect();
    let repaired = m.repair(&dsn, &params, sink).await.unwrap();
    assert_eq!(repaired.len(), 1);
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Repaired(_))));
    let (_, sink) = collect();
    assert!(m.up(&dsn, &params, sink).await.unwrap().applied.is_empty());
    assert_eq!(
        m.status(&dsn, &params).await.unwrap().count(State::Applied),
        5
    );
}

#[tokio::test]
async fn a_crlf_checkout_of_an_applied_file_is_not_a_change() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = copy_fixture("standard");
    let (_, sink) = collect();
    migrator(dir.path()).up(&dsn, &params, sink).await.unwrap();
    let file = dir.path().join("001_create_updated_at_function.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace('\n', "\r\n")).unwrap();
    let status = migrator(dir.path()).status(&dsn, &params).await.unwrap();
    assert_eq!(status.count(State::Applied), 5, "{status:?}");
}

#[tokio::test]
async fn baseline_adopts_a_database_built_without_pgkit() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let m = migrator(&fixture("standard"));
    // Built the way the Python service's migrate.py does: every file as one
    // simple query, no record kept. (004 cannot run that way; leave it out.)
    let c = client(&db).await;
    for f in m.migrations().unwrap().iter().filter(|f| f.version <= 3) {
        c.batch_execute(&f.sql).await.unwrap();
    }
    c.batch_execute("INSERT INTO categories (code, label) VALUES ('kept', 'Existing row')")
        .await
        .unwrap();

    let (_, sink) = collect();
    let err = m.baseline(&dsn, &params, 5, sink).await.unwrap_err();
    assert!(matches!(err, MigrateError::UnknownVersion { .. }), "{err}");

    let (_, sink) = collect();
    assert_eq!(m.baseline(&dsn, &params, 3, sink).await.unwrap(), [1, 2, 3]);
    let (_, sink) = collect();
    let report = m.up(&dsn, &params, sink).await.unwrap();
    let names: Vec<&str> = report.applied.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "004_index_documents_category.sql",
            "20261201_search_function.sql"
        ]
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM categories WHERE code = 'kept'").await,
        1
    );
    assert_eq!(
        m.status(&dsn, &params).await.unwrap().count(State::Applied),
        5
    );
}

#[tokio::test]
async fn many_runners_at_once_apply_each_file_once() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (dsn, params) = (dsn.clone(), params.clone());
        tasks.push(tokio::spawn(async move {
            migrator(&fixture("standard"))
                .up(&dsn, &params, |_| {})
                .await
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap().unwrap().applied.len();
    }
    assert_eq!(applied, 5, "each file applied by exactly one runner");
    assert_eq!(tracking_rows(&db, "public").await.len(), 5);
}

#[tokio::test]
async fn a_runner_waits_for_the_lock_then_gives_up_naming_the_holder() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let holder = client(&db).await;
    let key = pgkit::migrate::lock_key("pgkit_migrations:public");
    holder
        .query_one("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();

    let options = MigrateOptions {
        lock_timeout: Duration::from_millis(700),
        ..MigrateOptions::default()
    };
    let m = Migrator::new(MigrationSource::Dir(fixture("standard")), options);
    let (events, sink) = collect();
    let err = m.up(&dsn, &params, sink).await.unwrap_err();
    let MigrateError::LockTimeout { holder: who, .. } = &err else {
        panic!("{err}")
    };
    assert!(who.as_deref().unwrap_or("").starts_with("pid "), "{err}");
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::WaitingForLock { .. })));
    assert!(
        !exists(&db, "pgkit_migrations").await,
        "nothing ran without the lock"
    );

    // The holder's session ends: the lock goes with it.
    drop(holder);
    let (_, sink) = collect();
    assert_eq!(m.up(&dsn, &params, sink).await.unwrap().applied.len(), 5);
}

#[tokio::test]
async fn the_tracking_table_can_live_in_its_own_schema() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let options = MigrateOptions {
        schema: "ops".into(),
        ..MigrateOptions::default()
    };
    let m = Migrator::new(MigrationSource::Dir(fixture("standard")), options);
    let (_, sink) = collect();
    m.up(&dsn, &params, sink).await.unwrap();
    assert_eq!(tracking_rows(&db, "ops").await.len(), 5);
    assert!(!exists(&db, "public.pgkit_migrations").await);
    let bad = Migrator::new(
        MigrationSource::Dir(fixture("standard")),
        MigrateOptions {
            schema: "Ops; DROP".into(),
            ..MigrateOptions::default()
        },
    );
    assert!(matches!(
        bad.status(&dsn, &params).await,
        Err(MigrateError::InvalidSchema { .. })
    ));
}

#[tokio::test]
async fn a_recorded_file_that_is_gone_is_reported_missing_and_up_carries_on() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = copy_fixture("standard");
    let (_, sink) = collect();
    migrator(dir.path()).up(&dsn, &params, sink).await.unwrap();
    std::fs::remove_file(dir.path().join("20261201_search_function.sql")).unwrap();
    let status = migrator(dir.path()).status(&dsn, &params).await.unwrap();
    assert_eq!(status.count(State::Missing), 1);
    let (events, sink) = collect();
    migrator(dir.path()).up(&dsn, &params, sink).await.unwrap();
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        Event::Missing {
            version: 20261201,
            ..
        }
    )));
}

#[tokio::test]
async fn embedded_sources_run_like_directories() {
    static FILES: &[(&str, &str)] = &[
        (
            "migrations/001_one.sql",
            "BEGIN;\nCREATE TABLE one (id int);\nCOMMIT;\n",
        ),
        ("migrations/002_two.sql", "CREATE TABLE two (id int);\n"),
    ];
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let m = Migrator::new(MigrationSource::Embedded(FILES), MigrateOptions::default());
    let (_, sink) = collect();
    assert_eq!(m.up(&dsn, &params, sink).await.unwrap().applied.len(), 2);
    let names: Vec<String> = tracking_rows(&db, "public")
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(names, ["001_one.sql", "002_two.sql"]);
}

/// `pg_dump --schema-only` of a database, without its per-run random
/// `\restrict` key lines.
fn schema_dump(db: &TestDatabase) -> String {
    let out = Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", "--dbname", db.url()])
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn psql_file(db: &TestDatabase, file: &Path) -> String {
    let out = Command::new("/usr/bin/psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.url(), "-f"])
        .arg(file)
        .output()
        .expect("psql runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "psql failed: {stderr}");
    stderr
}

#[tokio::test]
async fn the_bundle_run_twice_with_psql_leaves_the_same_state_as_up() {
    let by_up = cluster().await.database().await;
    let by_bundle = cluster().await.database().await;
    let m = migrator(&fixture("standard"));
    let (dsn, params) = params(&by_up, "development");
    let (_, sink) = collect();
    m.up(&dsn, &params, sink).await.unwrap();

    let bundle = m.bundle().unwrap();
    assert_eq!(bundle.warnings.len(), 1, "{:?}", bundle.warnings);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bundle.sql).unwrap();
    let first = psql_file(&by_bundle, file.path());
    assert!(
        first.contains("documents table ready"),
        "the file's NOTICE shows: {first}"
    );
    psql_file(&by_bundle, file.path());

    assert_eq!(
        tracking_rows(&by_bundle, "public").await,
        tracking_rows(&by_up, "public").await
    );
    assert_eq!(schema_dump(&by_bundle), schema_dump(&by_up));

    // On a database `up` migrated, the bundle changes nothing either.
    psql_file(&by_up, file.path());
    assert_eq!(tracking_rows(&by_up, "public").await.len(), 5);
    // And `up` after the bundle finds nothing to do.
    let (dsn2, params2) = self::params(&by_bundle, "development");
    let (_, sink) = collect();
    assert!(m
        .up(&dsn2, &params2, sink)
        .await
        .unwrap()
        .applied
        .is_empty());
}
