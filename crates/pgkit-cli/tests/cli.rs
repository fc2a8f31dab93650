//! The real `pgkit` binary against a real PostgreSQL: what an operator runs
//! and what they see (exit codes, stderr lines, JSON).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgkit::testing::check::connect;
use pgkit::testing::{cluster, TestDatabase};
use pgkit_cli::testing::stderr;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pgkit/tests/fixtures/migrate/standard")
}

/// A writable copy of the standard fixture, seeds/ and data/ included.
fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// `pgkit ARGS` with a clean environment: only the URL and environment given.
fn pgkit(url: Option<&str>, environment: &str, args: &[&str]) -> Command {
    pgkit_cli::testing::pgkit(url, &[("APP_ENVIRONMENT", environment)], args)
}

fn run(url: Option<&str>, environment: &str, args: &[&str]) -> Output {
    pgkit(url, environment, args).output().expect("pgkit runs")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "pgkit failed ({:?}): {}",
        out.status,
        stderr(&out)
    );
    out
}

async fn client(db: &TestDatabase) -> tokio_postgres::Client {
    connect(db.url()).await.unwrap()
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    client(db).await.query_one(sql, &[]).await.unwrap().get(0)
}

/// Row counts of the fixture's tables and the tracking rows, for "nothing changed".
async fn snapshot(db: &TestDatabase) -> Vec<String> {
    let c = client(db).await;
    let mut out = Vec::new();
    for table in [
        "documents",
        "categories",
        "admin_prompts",
        "admin_prompt_versions",
    ] {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        out.push(format!("{table}={n}"));
    }
    for r in c
        .query("SELECT version, name, checksum, applied_at::text FROM pgkit_migrations ORDER BY version", &[])
        .await
        .unwrap()
    {
        let (v, n, s, t): (i64, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        out.push(format!("{v} {n} {s} {t}"));
    }
    out
}

#[tokio::test]
async fn migrate_up_then_seed_twice_changes_nothing_the_second_time() {
    let db = cluster().await.database().await;
    let dir = fixture();
    let dir = dir.to_str().unwrap();
    let url = Some(db.url());

    let up = ok(run(url, "test", &["migrate", "--dir", dir, "up"]));
    let err = stderr(&up);
    assert!(
        err.contains("applied 002_create_documents.sql in "),
        "{err}"
    );
    assert!(
        err.contains("documents table ready"),
        "NOTICEs are shown: {err}"
    );
    let seeded = ok(run(url, "test", &["seed", "--dir", dir]));
    assert!(
        stderr(&seeded).contains("applied seeds/002_ai_prompts.sql"),
        "{}",
        stderr(&seeded)
    );
    let first = snapshot(&db).await;
    assert_eq!(
        first[..4],
        [
            "documents=2",
            "categories=3",
            "admin_prompts=1",
            "admin_prompt_versions=1"
        ]
    );

    let again = ok(run(url, "test", &["migrate", "up", "--dir", dir]));
    assert!(
        stderr(&again).contains("database is up to date"),
        "{}",
        stderr(&again)
    );
    ok(run(url, "test", &["seed", "--dir", dir]));
    assert_eq!(snapshot(&db).await, first);
    let current: i32 = client(&db)
        .await
        .query_one("SELECT current_version FROM admin_prompts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, 1);
}

#[tokio::test]
async fn test_data_appears_only_with_app_environment_test() {
    let db = cluster().await.database().await;
    let dir = fixture();
    let dir = dir.to_str().unwrap();
    let url = Some(db.url());
    ok(run(url, "development", &["migrate", "--dir", dir, "up"]));

    let dev = ok(run(url, "development", &["seed", "--dir", dir]));
    assert!(
        stderr(&dev).contains("skipped 1 test-data file(s)"),
        "{}",
        stderr(&dev)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM documents").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM categories").await, 3);

    ok(run(url, "production", &["seed", "--dir", dir]));
    assert_eq!(count(&db, "SELECT count(*) FROM documents").await, 0);

    ok(run(url, "test", &["seed", "--dir", dir]));
    assert_eq!(count(&db, "SELECT count(*) FROM documents").await, 2);
}

#[tokio::test]
async fn eight_runners_started_together_apply_each_file_once() {
    let db = cluster().await.database().await;
    let dir = fixture();
    let children: Vec<_> = (0..8)
        .map(|_| {
            pgkit(
                Some(db.url()),
                "development",
                &["migrate", "--dir", dir.to_str().unwrap(), "up"],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("pgkit starts")
        })
        .collect();
    let mut all_stderr = String::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a runner failed: {}", stderr(&out));
        all_stderr.push_str(&stderr(&out));
    }
    for name in [
        "001_create_updated_at_function.sql",
        "002_create_documents.sql",
        "003_create_categories_and_prompts.sql",
        "004_index_documents_category.sql",
        "20261201_search_function.sql",
    ] {
        let runs = all_stderr.matches(&format!("applied {name} in ")).count();
        assert_eq!(runs, 1, "{name} applied {runs} times:\n{all_stderr}");
    }
    let rows = count(&db, "SELECT count(*) FROM pgkit_migrations").await;
    assert_eq!(rows, 5);
}

#[tokio::test]
async fn an_edited_applied_file_fails_up_with_exit_1_until_repaired() {
    let db = cluster().await.database().await;
    let dir = copy_fixture();
    let d = dir.path().to_str().unwrap();
    let url = Some(db.url());
    ok(run(url, "development", &["migrate", "--dir", d, "up"]));
    let file = dir.path().join("003_create_categories_and_prompts.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("Reference categories, seeded", "Reference categories"),
    )
    .unwrap();

    let up = run(url, "development", &["migrate", "--dir", d, "up"]);
    assert_eq!(up.status.code(), Some(1));
    let err = stderr(&up);
    assert!(
        err.contains("003_create_categories_and_prompts.sql (applied with sha256 "),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("hint: ") && l.contains("pgkit migrate repair")),
        "{err}"
    );

    // repair takes the files it is told.
    let bare = run(url, "development", &["migrate", "--dir", d, "repair"]);
    assert_eq!(bare.status.code(), Some(2), "{}", stderr(&bare));
    let name = "003_create_categories_and_prompts.sql";
    // A statement changed (a string literal): shown, refused, nothing changed.
    let refused = run(url, "development", &["migrate", "--dir", d, "repair", name]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(
        err.contains(&format!(
            "{name}: its statements changed since it was applied (sha256 "
        )),
        "{err}"
    );
    assert!(
        err.contains("Reference categories, seeded"),
        "the diff shows the old line: {err}"
    );
    assert!(
        err.contains(&format!(
            "error: not repaired: {name} changed beyond comments and whitespace"
        )),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        run(url, "development", &["migrate", "--dir", d, "up"])
            .status
            .code(),
        Some(1)
    );

    // Only comments and whitespace: accepted without --force, with the diff.
    std::fs::write(
        &file,
        format!("-- reviewed in DAVE-9\n{}", text.replace("\n\n", "\n\n\n")),
    )
    .unwrap();
    let repaired = ok(run(
        url,
        "development",
        &["migrate", "--dir", d, "repair", &format!("{d}/{name}")],
    ));
    let err = stderr(&repaired);
    assert!(
        err.contains(&format!("{name}: only comments and whitespace changed")),
        "{err}"
    );
    assert!(err.contains("+1: -- reviewed in DAVE-9"), "{err}");
    assert!(err.contains(&format!("repaired {name}")), "{err}");
    ok(run(url, "development", &["migrate", "--dir", d, "up"]));

    // A statement edit the operator vouches for: --force.
    std::fs::write(
        &file,
        text.replace("Reference categories, seeded", "Reference categories"),
    )
    .unwrap();
    let forced = ok(run(
        url,
        "development",
        &["migrate", "--dir", d, "repair", name, "--force"],
    ));
    assert!(
        stderr(&forced).contains(&format!("repaired {name}")),
        "{}",
        stderr(&forced)
    );
    ok(run(url, "development", &["migrate", "--dir", d, "up"]));
}

#[tokio::test]
async fn a_syntax_error_is_reported_at_its_line_and_the_earlier_files_stay() {
    let db = cluster().await.database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_ok.sql"),
        "BEGIN;\nCREATE TABLE ok (id int);\nCOMMIT;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("002_bad.sql"),
        "-- Migration: 002_bad\n-- Description: broken on line 7\n\nBEGIN;\n\nCREATE TABLE bad (id int);\nCREATE TABEL worse (id int);\n\nCOMMIT;\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let up = run(
        Some(db.url()),
        "development",
        &["migrate", "--dir", d, "up"],
    );
    assert_eq!(up.status.code(), Some(1));
    let err = stderr(&up);
    assert!(
        err.contains(
            "error: migration failed at 002_bad.sql:7:8: syntax error at or near \"TABEL\""
        ),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");

    let json = ok(run(
        Some(db.url()),
        "development",
        &["migrate", "--dir", d, "status", "--json"],
    ));
    let status: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let states: Vec<(&str, &str)> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("001_ok.sql", "applied"), ("002_bad.sql", "pending")]
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'bad'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn status_json_agrees_with_the_table_and_the_tracking_rows() {
    let db = cluster().await.database().await;
    let dir = copy_fixture();
    let d = dir.path().to_str().unwrap();
    let url = Some(db.url());
    // Apply up to 003, then add nothing: 004 and 20261201 stay pending.
    let before = ok(run(url, "development", &["migrate", "--dir", d, "status"]));
    assert!(String::from_utf8_lossy(&before.stdout).contains("not created yet"));
    ok(run(
        url,
        "development",
        &["migrate", "--dir", d, "baseline", "--to", "3"],
    ));

    let json = ok(run(
        url,
        "development",
        &["migrate", "--dir", d, "status", "--json"],
    ));
    let status: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("status --json is JSON");
    let table = ok(run(url, "development", &["migrate", "--dir", d, "status"]));
    let table = String::from_utf8(table.stdout).unwrap();

    let c = client(&db).await;
    let rows: Vec<(i64, String)> = c
        .query(
            "SELECT version, checksum FROM pgkit_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let entries = status["migrations"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    for e in entries {
        let version = e["version"].as_i64().unwrap();
        let state = e["state"].as_str().unwrap();
        let row = rows.iter().find(|(v, _)| *v == version);
        assert_eq!(state == "applied", row.is_some(), "{e}");
        if let Some((_, sum)) = row {
            assert_eq!(e["applied_checksum"].as_str(), Some(sum.as_str()));
        }
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&version.to_string()))
            .unwrap_or_else(|| panic!("no table line for {version}:\n{table}"));
        assert_eq!(line.split_whitespace().nth(1), Some(state), "{line}");
        assert!(line.ends_with(e["name"].as_str().unwrap()));
    }
    assert!(
        table.contains("3 applied, 2 pending, 0 changed, 0 missing"),
        "{table}"
    );
}

#[tokio::test]
async fn the_bundle_written_by_the_cli_runs_twice_under_psql() {
    let db = cluster().await.database().await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("bundle.sql");
    let written = ok(run(
        None,
        "development",
        &[
            "bundle",
            "--dir",
            fixture().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    assert!(stderr(&written).contains("warning: 004_index_documents_category.sql"));
    for _ in 0..2 {
        let psql = Command::new("/usr/bin/psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db.url(),
                "-f",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(psql.status.success(), "{}", stderr(&psql));
    }
    let json = ok(run(
        Some(db.url()),
        "development",
        &[
            "migrate",
            "--dir",
            fixture().to_str().unwrap(),
            "status",
            "--json",
        ],
    ));
    let status: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["state"] == "applied"));
}

#[test]
fn migrate_new_writes_the_next_file_from_the_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("006_last.sql"), "SELECT 1;").unwrap();
    let out = ok(run(
        None,
        "development",
        &[
            "migrate",
            "--dir",
            dir.path().to_str().unwrap(),
            "new",
            "add user email",
            "--issue",
            "#7",
            "--author",
            "Ada",
        ],
    ));
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(path.file_name().unwrap(), "007_add_user_email.sql");
    let text = std::fs::read_to_string(&path).unwrap();
    for line in [
        "-- Migration: 007_add_user_email",
        "-- Issue: #7",
        "-- Author: Ada",
        "-- Date: ",
        "-- Description: add user email",
        "BEGIN;",
        "COMMIT;",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2_and_fixable_errors_exit_1_with_a_hint() {
    assert_eq!(
        run(None, "development", &["migrate"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(None, "development", &["migrate", "up", "--bogus"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(None, "development", &["migrate", "baseline"])
            .status
            .code(),
        Some(2)
    );

    let dir = tempfile::tempdir().unwrap();
    let no_url = run(
        None,
        "development",
        &["migrate", "--dir", dir.path().to_str().unwrap(), "up"],
    );
    assert_eq!(no_url.status.code(), Some(1));
    let err = stderr(&no_url);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "error: no database URL: neither --database-url nor DATABASE_URL (nor DAVE_DB_DSN) is set",
            "hint: pass the URL (postgresql://USER:PASSWORD@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE), or set DATABASE_URL (or DATABASE_URL_FILE)"
        ]
    );

    let unreachable = run(
        Some("postgresql://app:Sekr3t-pw@/db?host=/nonexistent/socket/dir"),
        "development",
        &["migrate", "--dir", dir.path().to_str().unwrap(), "up"],
    );
    assert_eq!(unreachable.status.code(), Some(1));
    let err = stderr(&unreachable);
    assert!(
        err.starts_with("error: cannot connect to postgresql://app:***@/db"),
        "{err}"
    );
    assert!(!err.contains("Sekr3t-pw"), "{err}");
    assert!(err.contains("\nhint: "), "{err}");
}

#[tokio::test]
async fn a_migration_blocked_by_a_lock_reports_its_retries_then_exits_1_naming_the_timeout() {
    let db = cluster().await.database().await;
    let blocker = client(&db).await;
    blocker
        .batch_execute("CREATE TABLE busy (id int)")
        .await
        .unwrap();
    // A request that read the table and left its transaction open.
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM busy")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_alter_busy.sql"),
        "ALTER TABLE busy ADD COLUMN note text;\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();

    let started = std::time::Instant::now();
    let out = pgkit_cli::testing::pgkit(
        Some(db.url()),
        &[("DB_MIGRATE_LOCK_RETRIES", "1")],
        &["migrate", "--dir", d, "up", "--ddl-lock-timeout", "0.2"],
    )
    .output()
    .expect("pgkit runs");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("  001_alter_busy.sql:1: waited lock_timeout 0.2s for a lock another session holds (ALTER TABLE busy ADD COLUMN note text;); rolled back, retry 1 of 1 in "),
        "{err}"
    );
    assert!(
        err.contains("\nerror: migration blocked at 001_alter_busy.sql:1: canceling statement due to lock timeout (SQLSTATE 55P03): another session held a lock it needs through 2 attempt(s) of lock_timeout 0.2s\n"),
        "{err}"
    );
    let hint = err
        .lines()
        .find(|l| l.starts_with("hint: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        hint.contains("pg_stat_activity")
            && hint.contains("DB_MIGRATE_LOCK_TIMEOUT (--ddl-lock-timeout)"),
        "{hint}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM pgkit_migrations").await, 0);

    // Once the transaction ends, the same command applies the file.
    blocker.batch_execute("COMMIT").await.unwrap();
    ok(run(
        Some(db.url()),
        "development",
        &["migrate", "--dir", d, "up"],
    ));
    assert_eq!(count(&db, "SELECT count(*) FROM pgkit_migrations").await, 1);
}

#[test]
fn every_subcommand_has_help_and_help_never_shows_the_url() {
    for args in [
        &["--help"][..],
        &["migrate", "--help"],
        &["migrate", "status", "--help"],
        &["migrate", "up", "--help"],
        &["migrate", "new", "--help"],
        &["migrate", "repair", "--help"],
        &["migrate", "baseline", "--help"],
        &["seed", "--help"],
        &["bundle", "--help"],
        &["local", "--help"],
        &["local", "start", "--help"],
        &["local", "stop", "--help"],
        &["local", "status", "--help"],
    ] {
        let out = run(Some("postgresql://app:Sekr3t-pw@/db"), "development", args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: pgkit"), "{args:?}: {text}");
        assert!(!text.contains("Sekr3t-pw"), "{args:?}: {text}");
    }
}

/// Whether process `pid` is gone (or only a zombie awaiting its reaper)
/// within `limit`.
fn gone_within(pid: u32, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(") ").next().and_then(|r| r.chars().next()));
        if matches!(state, None | Some('Z') | Some('X')) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn local_start_twice_then_stop_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let data = dir.path().join("pgdata");
    let data_arg = data.to_str().unwrap();
    let uninitialized = run(
        None,
        "development",
        &["local", "status", "--data-dir", data_arg],
    );
    assert_eq!(
        uninitialized.status.code(),
        Some(3),
        "{}",
        stderr(&uninitialized)
    );
    assert!(String::from_utf8_lossy(&uninitialized.stdout).starts_with("not initialized"));

    let first = ok(run(
        None,
        "development",
        &["local", "start", "--data-dir", data_arg],
    ));
    // Run as root, the server runs as `postgres`: the temp folder (0700)
    // above the data directory is made traversable, and start says so.
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid() == 0
    };
    let said = format!(
        "changed the mode of {} from 0700 to 0701 (o+x), so the postgres user can reach the data directory",
        dir.path().display()
    );
    assert_eq!(stderr(&first).contains(&said), root, "{}", stderr(&first));
    let url = String::from_utf8(first.stdout).unwrap().trim().to_string();
    assert!(
        url.starts_with("postgresql://postgres@/postgres?host="),
        "{url}"
    );
    let pid: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // Logs into a pipe carry no colour codes.
    let second = ok(pgkit(
        None,
        "development",
        &["local", "start", "--data-dir", data_arg],
    )
    .env("RUST_LOG", "debug")
    .output()
    .unwrap());
    assert!(!stderr(&second).is_empty());
    assert!(!stderr(&second).contains('\u{1b}'), "{:?}", stderr(&second));
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );
    assert!(
        !stderr(&second).contains("changed the mode"),
        "{}",
        stderr(&second)
    );
    assert_eq!(String::from_utf8(second.stdout).unwrap().trim(), url);

    let status = ok(run(
        None,
        "development",
        &["local", "status", "--data-dir", data_arg],
    ));
    assert!(String::from_utf8_lossy(&status.stdout).starts_with(&format!("running: pid {pid}")));
    // The cluster answers on the printed URL.
    let migrated = run(
        Some(&url),
        "development",
        &["migrate", "--dir", fixture().to_str().unwrap(), "status"],
    );
    assert!(migrated.status.success(), "{}", stderr(&migrated));

    ok(run(
        None,
        "development",
        &["local", "stop", "--data-dir", data_arg],
    ));
    assert!(
        !data.join("postmaster.pid").exists(),
        "a stale postmaster.pid was left behind"
    );
    assert!(
        gone_within(pid, std::time::Duration::from_secs(5)),
        "postgres (pid {pid}) still runs"
    );
    // Nothing runs: exit 3, as `pg_ctl status`.
    let status = run(
        None,
        "development",
        &["local", "status", "--data-dir", data_arg],
    );
    assert_eq!(status.status.code(), Some(3), "{}", stderr(&status));
    assert!(String::from_utf8_lossy(&status.stdout).starts_with("stopped"));
    ok(run(
        None,
        "development",
        &["local", "stop", "--data-dir", data_arg],
    ));
}

#[tokio::test]
async fn migrate_refuses_a_transaction_pooler_and_uses_db_migrate_dsn() {
    let cluster = cluster().await;
    let db = cluster.database().await;
    let bouncer = pgkit::testing::pgbouncer::PgBouncer::start(cluster.socket_dir(), 2).await;
    let through = bouncer.url(db.name());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_notes.sql"),
        "-- Migration: 001_notes.sql\nBEGIN;\nCREATE TABLE notes (id int);\nCOMMIT;\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();

    let refused = pgkit_cli::testing::pgkit(
        Some(&through),
        &[("DB_POOLER", "transaction")],
        &["migrate", "--dir", d, "up"],
    )
    .output()
    .expect("pgkit runs");
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(
        err.starts_with(
            "error: DB_POOLER=transaction: migrations and seeds need a session of their own"
        ),
        "{err}"
    );
    assert!(
        err.contains("\nhint: point DB_MIGRATE_DSN at a direct connection"),
        "{err}"
    );
    assert!(!has_notes(&db).await, "nothing ran through the pooler");

    let direct = pgkit_cli::testing::pgkit(
        Some(&through),
        &[("DB_POOLER", "transaction"), ("DB_MIGRATE_DSN", db.url())],
        &["migrate", "--dir", d, "up"],
    )
    .output()
    .expect("pgkit runs");
    assert_eq!(direct.status.code(), Some(0), "{}", stderr(&direct));
    assert!(
        has_notes(&db).await,
        "DB_MIGRATE_DSN's direct connection applied it"
    );
}

async fn has_notes(db: &TestDatabase) -> bool {
    client(db)
        .await
        .query_one("SELECT to_regclass('notes') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0)
}
