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
    pgkit::testing::check::connect(db.url()).await.unwrap()
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
    // 003's `DROP TRIGGER IF EXISTS` says "does not exist, skipping" on a
    // fresh database: chatter of a re-runnable file, kept to the debug log.
    assert!(
        !notices
            .iter()
            .any(|e| matches!(e, Event::Notice { message, .. } if message.ends_with(", skipping"))),
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

    // The edit is in a string literal, a statement: refused unless forced.
    let (_, sink) = collect();
    let refused = m.repair(&dsn, &params, &[], false, sink).await.unwrap_err();
    assert!(
        matches!(&refused, MigrateError::RepairRefused { files } if files == &["002_create_documents.sql"]),
        "{refused}"
    );
    assert_eq!(
        tracking_rows(&db, "public").await,
        before,
        "nothing changed"
    );
    let (events, sink) = collect();
    let repaired = m
        .repair(
            &dsn,
            &params,
            &["002_create_documents.sql".into()],
            true,
            sink,
        )
        .await
        .unwrap();
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

// ---- lock_timeout: a migration never queues behind live traffic for long ----

/// A table with a row, and a session that read it in a transaction it keeps
/// open: an "idle in transaction" request holding ACCESS SHARE, which is
/// all it takes to make an `ALTER TABLE` (and every query after it) wait.
async fn busy_table(db: &TestDatabase) -> tokio_postgres::Client {
    let blocker = client(db).await;
    blocker
        .batch_execute("CREATE TABLE busy (id int); INSERT INTO busy VALUES (1);")
        .await
        .unwrap();
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM busy;")
        .await
        .unwrap();
    blocker
}

fn lock_options(timeout_ms: u64, retries: u32) -> MigrateOptions {
    MigrateOptions {
        ddl_lock_timeout: Duration::from_millis(timeout_ms),
        ddl_lock_retries: retries,
        ddl_lock_retry_delay: Duration::from_millis(50),
        ..MigrateOptions::default()
    }
}

async fn has_column(db: &TestDatabase, table: &str, column: &str) -> bool {
    client(db)
        .await
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
             WHERE table_name = $1 AND column_name = $2)",
            &[&table, &column],
        )
        .await
        .unwrap()
        .get(0)
}

/// Runs `up` in its own task, its events on a channel, so the test can act
/// when one arrives.
fn up_in_background(
    m: Migrator,
    dsn: Dsn,
    params: SessionParams,
) -> (
    tokio::task::JoinHandle<Result<pgkit::migrate::UpReport, MigrateError>>,
    tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        m.up(&dsn, &params, move |e: &Event| {
            let _ = tx.send(e.clone());
        })
        .await
    });
    (task, rx)
}

/// Events until (and including) the first one `stop` accepts.
async fn events_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    stop: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no such event within 30 s; saw {seen:?}"))
            .unwrap_or_else(|| panic!("the runner ended first; saw {seen:?}"));
        let done = stop(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_file_blocked_by_a_lock_gives_up_after_its_retries_and_leaves_nothing() {
    static FILES: &[(&str, &str)] = &[
        ("001_side.sql", "CREATE TABLE side (id int);\n"),
        (
            "002_alter_busy.sql",
            "BEGIN;\nCREATE TABLE made_first (id int);\nALTER TABLE busy ADD COLUMN note text;\nCOMMIT;\n",
        ),
    ];
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let _blocker = busy_table(&db).await;
    let m = Migrator::new(MigrationSource::Embedded(FILES), lock_options(200, 2));
    let (events, sink) = collect();

    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), m.up(&dsn, &params, sink))
        .await
        .expect("the runner gives up instead of queueing behind the lock")
        .unwrap_err();
    let took = started.elapsed();

    let MigrateError::Blocked {
        failure,
        lock_timeout,
        attempts,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (failure.name.as_str(), failure.line, failure.code.as_deref()),
        ("002_alter_busy.sql", 3, Some("55P03"))
    );
    assert_eq!((*lock_timeout, *attempts), (Duration::from_millis(200), 3));
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(10),
        "three waits of 200 ms and two short pauses, not more: {took:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("migration blocked at 002_alter_busy.sql:3:")
            && message.contains("3 attempt(s) of lock_timeout 0.2s"),
        "{message}"
    );
    let hint = err.hint().unwrap();
    for needle in [
        "nothing of 002_alter_busy.sql was applied or recorded",
        "pg_stat_activity",
        "pg_locks",
        "DB_MIGRATE_LOCK_TIMEOUT",
        "--ddl-lock-timeout",
    ] {
        assert!(hint.contains(needle), "{needle}: {hint}");
    }

    let retries: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::LockRetry { .. }))
        .map(Event::to_string)
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        retries[0].contains("002_alter_busy.sql:3: waited lock_timeout 0.2s")
            && retries[0].contains("(ALTER TABLE busy ADD COLUMN note text;)")
            && retries[0].contains("retry 1 of 2 in"),
        "{}",
        retries[0]
    );
    assert!(retries[1].contains("retry 2 of 2"), "{}", retries[1]);

    // The file was rolled back whole, every time; the one before it stays.
    assert!(!exists(&db, "made_first").await);
    assert!(!has_column(&db, "busy", "note").await);
    let names: Vec<String> = tracking_rows(&db, "public")
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(names, ["001_side.sql"]);
}

#[tokio::test]
async fn a_blocked_file_is_applied_on_a_retry_once_the_blocker_lets_go() {
    static FILES: &[(&str, &str)] = &[(
        "001_alter_busy.sql",
        "CREATE TABLE made_first (id int);\nALTER TABLE busy ADD COLUMN note text;\n",
    )];
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let blocker = busy_table(&db).await;
    // Retries to spare: the retry after the release must find the lock
    // free, however slow this machine is at delivering the COMMIT.
    let m = Migrator::new(MigrationSource::Embedded(FILES), lock_options(300, 8));
    let (task, mut rx) = up_in_background(m, dsn, params);

    let before = events_until(&mut rx, |e| matches!(e, Event::LockRetry { .. })).await;
    assert!(
        !before.iter().any(|e| matches!(e, Event::Applied { .. })),
        "{before:?}"
    );
    blocker.batch_execute("COMMIT").await.unwrap();

    let report = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("up finishes once the lock is free")
        .unwrap()
        .unwrap();
    assert_eq!(report.applied.len(), 1);
    let mut after = Vec::new();
    while let Ok(e) = rx.try_recv() {
        after.push(e);
    }
    assert!(
        matches!(after.last(), Some(Event::Applied { name, .. }) if name == "001_alter_busy.sql"),
        "{after:?}"
    );
    assert!(has_column(&db, "busy", "note").await);
    assert!(exists(&db, "made_first").await);
    assert_eq!(tracking_rows(&db, "public").await.len(), 1);
}

#[tokio::test]
async fn a_no_transaction_file_resumes_at_the_statement_that_timed_out() {
    // Run twice from the top, the CREATE TABLE (no IF NOT EXISTS) would fail.
    static FILES: &[(&str, &str)] = &[(
        "001_outside.sql",
        "-- pgkit:no-transaction\nCREATE TABLE made_first (id int);\nALTER TABLE busy ADD COLUMN note text;\n",
    )];
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let blocker = busy_table(&db).await;
    let m = Migrator::new(MigrationSource::Embedded(FILES), lock_options(300, 8));
    let (task, mut rx) = up_in_background(m, dsn, params);

    let seen = events_until(&mut rx, |e| matches!(e, Event::LockRetry { .. })).await;
    assert!(
        matches!(seen.last(), Some(Event::LockRetry { line: 3, .. })),
        "{seen:?}"
    );
    assert!(
        exists(&db, "made_first").await,
        "the statement before stays"
    );
    blocker.batch_execute("COMMIT").await.unwrap();

    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("up finishes once the lock is free")
        .unwrap()
        .unwrap();
    assert!(has_column(&db, "busy", "note").await);
    assert_eq!(tracking_rows(&db, "public").await.len(), 1);
}

#[tokio::test]
async fn a_concurrent_index_build_waits_past_the_lock_timeout_instead_of_leaving_an_invalid_index()
{
    static FILES: &[(&str, &str)] = &[(
        "001_index.sql",
        "-- pgkit:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS busy_id ON busy (id);\n",
    )];
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    // A writer in an open transaction: the build must wait for it to end.
    let blocker = client(&db).await;
    blocker
        .batch_execute("CREATE TABLE busy (id int);")
        .await
        .unwrap();
    blocker
        .batch_execute("BEGIN; INSERT INTO busy VALUES (1);")
        .await
        .unwrap();
    let m = Migrator::new(MigrationSource::Embedded(FILES), lock_options(100, 1));
    let (task, mut rx) = up_in_background(m, dsn, params);

    // Wait until the build has waited on a lock for ten times the lock timeout.
    let watcher = client(&db).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waited: bool = watcher
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
                 AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock' \
                 AND now() - query_start > interval '1 second')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waited {
            break;
        }
        assert!(
            !task.is_finished(),
            "the build ended while the writer was open: {:?}",
            task.await
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the build never waited on the writer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    blocker.batch_execute("COMMIT").await.unwrap();

    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the build finishes once the writer commits")
        .unwrap()
        .unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(
        !events.iter().any(|e| matches!(e, Event::LockRetry { .. })),
        "{events:?}"
    );
    let valid: bool = watcher
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'busy_id'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
}

// ---- statements after the file's COMMIT (issue 14) ----

/// The standard's Idempotent Seed Pattern, as a numbered file: `BEGIN`, the
/// inserts, `COMMIT`, then a `DO` block raising a NOTICE.
const IDEMPOTENT_SEED: &str = "-- Migration: 002_seed_reference_data.sql\n\
-- Issue: DAVE-1\n-- Date: 2025-01-15\n-- Author: A\n-- Description: Seed reference data\n\
BEGIN;\n\
INSERT INTO categories (name) VALUES ('general') ON CONFLICT (name) DO NOTHING;\n\
COMMIT;\n\
DO $$ BEGIN RAISE NOTICE 'Seed data applied at %', NOW(); END $$;\n";

fn folder_with_seed_in_numbered_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_categories.sql"),
        "BEGIN;\nCREATE TABLE IF NOT EXISTS categories (name text PRIMARY KEY);\nCOMMIT;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("002_seed_reference_data.sql"),
        IDEMPOTENT_SEED,
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn statements_after_the_commit_run_after_the_transaction_in_up_status_and_bundle() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = folder_with_seed_in_numbered_files();
    let m = migrator(dir.path());

    let before = m.status(&dsn, &params).await.unwrap();
    assert_eq!(before.migrations.len(), 2);

    let (events, sink) = collect();
    let report = m.up(&dsn, &params, sink).await.unwrap();
    assert_eq!(report.applied.len(), 2);
    assert!(
        events.lock().unwrap().iter().any(|e| matches!(e,
            Event::Notice { name, message, .. }
            if name == "002_seed_reference_data.sql" && message.starts_with("Seed data applied at"))),
        "the NOTICE after COMMIT shows"
    );
    assert_eq!(tracking_rows(&db, "public").await.len(), 2);
    assert_eq!(count(&db, "SELECT count(*) FROM categories").await, 1);
    let (_, sink) = collect();
    assert!(m.up(&dsn, &params, sink).await.unwrap().applied.is_empty());

    // The bundle takes the same folder, and leaves the same rows as `up`.
    let by_bundle = cluster().await.database().await;
    let bundle = m.bundle().unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bundle.sql).unwrap();
    psql_file(&by_bundle, file.path());
    psql_file(&by_bundle, file.path());
    assert_eq!(
        tracking_rows(&by_bundle, "public").await,
        tracking_rows(&db, "public").await
    );
    assert_eq!(
        count(&by_bundle, "SELECT count(*) FROM categories").await,
        1
    );
}

#[tokio::test]
async fn a_failure_after_the_commit_leaves_the_file_applied_and_says_so() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_a.sql"),
        "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nSELECT * FROM nowhere;\n",
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
    assert_eq!((f.line, f.after_commit), (4, true), "{err}");
    let hint = err.hint().unwrap();
    assert!(hint.contains("applied and recorded"), "{hint}");
    assert!(exists(&db, "a").await);
    assert_eq!(tracking_rows(&db, "public").await.len(), 1);
}

/// A tracking table an older pgkit created (no `sql` column) gains the
/// column on the next `up`; `status` reads it as it was. A row from then
/// has no applied text, so `repair` cannot tell a comment edit from a
/// statement edit: it refuses without `force` (issue 14 §4).
#[tokio::test]
async fn an_older_tracking_table_gains_the_sql_column_and_its_rows_need_force() {
    let db = cluster().await.database().await;
    let (dsn, params) = params(&db, "development");
    let dir = tempfile::tempdir().unwrap();
    let text = "BEGIN;\nCREATE TABLE IF NOT EXISTS t (id int);\nCOMMIT;\n";
    std::fs::write(dir.path().join("001_t.sql"), text).unwrap();
    let old_checksum = pgkit::migrate::checksum(text);
    client(&db)
        .await
        .batch_execute(&format!(
            "CREATE TABLE t (id int);
             CREATE TABLE pgkit_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL,
                 checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                 execution_ms BIGINT NOT NULL);
             INSERT INTO pgkit_migrations (version, name, checksum, execution_ms)
                 VALUES (1, '001_t.sql', '{old_checksum}', 1);"
        ))
        .await
        .unwrap();
    let m = migrator(dir.path());
    assert_eq!(
        m.status(&dsn, &params).await.unwrap().count(State::Applied),
        1
    );
    let (_, sink) = collect();
    assert!(m.up(&dsn, &params, sink).await.unwrap().applied.is_empty());
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'pgkit_migrations'::regclass AND attname = 'sql'"
        )
        .await,
        1
    );

    std::fs::write(
        dir.path().join("001_t.sql"),
        format!("-- a comment\n{text}"),
    )
    .unwrap();
    let (events, sink) = collect();
    let err = m
        .repair(&dsn, &params, &["001_t.sql".into()], false, sink)
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::RepairRefused { .. }), "{err}");
    assert!(events.lock().unwrap().iter().any(|e| matches!(e,
        Event::RepairCheck(c) if c.change == pgkit::migrate::Change::Unknown)));
    let (_, sink) = collect();
    m.repair(&dsn, &params, &["001_t.sql".into()], true, sink)
        .await
        .unwrap();
    // Now the row keeps the text: the next comment edit needs no force.
    std::fs::write(dir.path().join("001_t.sql"), format!("-- another\n{text}")).unwrap();
    let (_, sink) = collect();
    let repaired = m
        .repair(&dsn, &params, &["001_t.sql".into()], false, sink)
        .await
        .unwrap();
    assert_eq!(repaired.len(), 1);
}
