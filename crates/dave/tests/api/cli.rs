//! The `dave` command line, run as a process: help and usage errors, start-up
//! errors as one line with exit code 1, `migrate` (pgkit's command over the
//! embedded files, Ctrl-C and SIGTERM included), `seed`, and `apikey` (a
//! created key works against the API, and stops working once revoked).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::helpers::{migrated_database, run_binary, side_pool, start, CHILD_SESSION_SECRET};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn help_lists_the_commands_and_bad_usage_exits_2() {
    let d = dir();
    let (status, stdout, _) = run_binary(&["--help"], &[], d.path()).await;
    assert!(status.success());
    for command in ["serve", "migrate", "seed", "apikey"] {
        assert!(stdout.contains(command), "{command} in:\n{stdout}");
    }
    let (status, stdout, _) = run_binary(&["migrate", "--help"], &[], d.path()).await;
    assert!(status.success());
    for action in ["up", "status", "repair", "baseline"] {
        assert!(stdout.contains(action), "{action} in:\n{stdout}");
    }
    // pgkit's `new` and `--dir` are not dave's: its files are built in.
    let (status, _, stderr) = run_binary(&["migrate", "new", "x"], &[], d.path()).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    let (status, _, stderr) = run_binary(&["frobnicate"], &[], d.path()).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    let (status, _, stderr) = run_binary(
        &["apikey", "create", "--user-id", "not-a-uuid"],
        &[],
        d.path(),
    )
    .await;
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("--user-id"), "{stderr}");
}

/// The last stderr line is the one `error:` line, and nothing secret is in it.
fn assert_one_error_line(stderr: &str, starts: &str) {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].starts_with(starts), "{stderr}");
}

#[tokio::test]
async fn production_refuses_short_secrets_and_huge_timeouts_at_start_up() {
    let d = dir();
    let short = "Short-Secret-Value-Of-31-Bytes!";
    let base = [
        ("APP_ENVIRONMENT", "production"),
        (
            "DAVE_DB_DSN",
            "postgresql://u:Sup3rSecret@/d?host=/nonexistent",
        ),
        ("SESSION_SECRET", CHILD_SESSION_SECRET),
    ];
    let mut vars = base.to_vec();
    vars.push(("JWT_SECRET", short));
    let (status, stdout, stderr) = run_binary(&["serve"], &vars, d.path()).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_one_error_line(
        &stderr,
        "error: invalid JWT_SECRET: is shorter than 32 bytes",
    );
    let all = format!("{stdout}{stderr}");
    for secret in [short, "Sup3rSecret", CHILD_SESSION_SECRET] {
        assert!(!all.contains(secret), "{all}");
    }

    let mut vars = base.to_vec();
    vars.push(("DB_QUERY_TIMEOUT", "2592000"));
    let (status, _, stderr) = run_binary(&["serve"], &vars, d.path()).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_one_error_line(
        &stderr,
        "error: invalid DB_QUERY_TIMEOUT: 2592000 is above the maximum of 2147483.647",
    );
}

#[tokio::test]
async fn production_without_a_dsn_is_a_start_up_error() {
    let d = dir();
    let vars = [("APP_ENVIRONMENT", "production"), ("SESSION_SECRET", "s")];
    let (status, _, stderr) = run_binary(&["serve"], &vars, d.path()).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_one_error_line(&stderr, "error: invalid DAVE_DB_DSN: is required");
    let (status, _, stderr) = run_binary(&["migrate", "up"], &vars, d.path()).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("DAVE_DB_DSN"), "{stderr}");
}

#[tokio::test]
async fn invalid_settings_name_the_variable_and_hide_the_password() {
    let d = dir();
    let (status, _, stderr) = run_binary(
        &["serve"],
        &[
            ("PORT", "eighty"),
            ("DAVE_DB_DSN", "postgresql://u:Sup3rSecret@/d?host=/tmp"),
        ],
        d.path(),
    )
    .await;
    assert_eq!(status.code(), Some(1));
    assert_one_error_line(&stderr, "error: invalid PORT");
    let (status, _, stderr) = run_binary(
        &["migrate", "status"],
        &[(
            "DAVE_DB_DSN",
            "postgresql://u:Sup3rSecret@/d?host=/tmp&sslmode=maybe",
        )],
        d.path(),
    )
    .await;
    assert_eq!(status.code(), Some(1));
    assert_one_error_line(&stderr, "error: invalid DAVE_DB_DSN");
    assert!(!stderr.contains("Sup3rSecret"), "{stderr}");
}

#[tokio::test]
async fn migrate_up_applies_each_file_once_and_status_shows_them() {
    let database = pgkit::testing::cluster().await.database().await;
    let d = dir();
    let vars = [("DAVE_DB_DSN", database.url())];
    let (status, _, stderr) = run_binary(&["migrate", "up"], &vars, d.path()).await;
    assert!(status.success(), "{stderr}");
    // One progress line per file, at least.
    for (name, _) in dave::embedded::MIGRATIONS {
        assert!(stderr.contains(name), "{name}:\n{stderr}");
    }
    let (status, _, stderr) = run_binary(&["migrate", "up"], &vars, d.path()).await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("up to date"), "{stderr}");
    for (name, _) in dave::embedded::MIGRATIONS {
        assert!(!stderr.contains(name), "nothing runs twice:\n{stderr}");
    }

    // pgkit's table: VERSION STATE APPLIED AT MS NAME, then the counts.
    let (status, stdout, stderr) = run_binary(&["migrate", "status"], &vars, d.path()).await;
    assert!(status.success(), "{stderr}");
    assert!(stdout.starts_with("VERSION "), "{stdout}");
    for (name, _) in dave::embedded::MIGRATIONS {
        let line = stdout
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} in:\n{stdout}"));
        assert_eq!(line.split_whitespace().nth(1), Some("applied"), "{line}");
    }
    let applied = format!("{} applied, 0 pending", dave::embedded::MIGRATIONS.len());
    assert!(stdout.contains(&applied), "{stdout}");
    let (status, stdout, _) = run_binary(&["migrate", "status", "--json"], &vars, d.path()).await;
    assert!(status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json["migrations"].as_array().unwrap().len(),
        dave::embedded::MIGRATIONS.len()
    );

    let (status, _, stderr) = run_binary(&["seed"], &vars, d.path()).await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped") && stderr.contains("test-data"),
        "{stderr}"
    );
}

fn key_id(stderr: &str) -> String {
    let at = stderr
        .find("created API key ")
        .expect("the key id is printed")
        + "created API key ".len();
    stderr[at..at + 36].to_owned()
}

#[tokio::test]
async fn a_created_api_key_works_until_revoked() {
    let database = migrated_database().await;
    let url = database.url().to_owned();
    let d = dir();
    let vars = [("DAVE_DB_DSN", url.as_str())];
    let user = uuid::Uuid::new_v4().to_string();
    let (status, stdout, stderr) = run_binary(
        &[
            "apikey",
            "create",
            "--user-id",
            &user,
            "--admin",
            "--tier",
            "pro",
        ],
        &vars,
        d.path(),
    )
    .await;
    assert!(status.success(), "{stderr}");
    let key = stdout.trim().to_owned();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the key on stdout: {stdout}"
    );
    assert!(key.starts_with("dave_") && key.len() > 30, "{key}");
    assert!(!stderr.contains(&key), "the key is printed once, on stdout");
    let id = key_id(&stderr);

    // Only its hash is stored.
    let side = side_pool(&url);
    let mut conn = side.acquire().await.unwrap();
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let by_hash: i64 = conn
        .fetch_val(
            "SELECT count(*) FROM api_keys WHERE key_hash = $1",
            &[&hash],
        )
        .await
        .unwrap();
    assert_eq!(by_hash, 1);
    let holding_key: i64 = conn
        .fetch_val(
            "SELECT count(*) FROM api_keys k WHERE strpos(row_to_json(k)::text, $1) > 0",
            &[&key],
        )
        .await
        .unwrap();
    assert_eq!(holding_key, 0);
    drop(conn);
    side.close(Duration::from_secs(1)).await;

    let app = start(dave::config::Config::for_tests(&url), database).await;
    let admin_route = || {
        app.client
            .get(app.url("/api/v1/admin/prompts"))
            .header("x-api-key", &key)
            .send()
    };
    assert_eq!(admin_route().await.unwrap().status(), 200, "an admin key");

    let (status, _, stderr) = run_binary(&["apikey", "revoke", &id], &vars, d.path()).await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("revoked"), "{stderr}");
    assert_eq!(admin_route().await.unwrap().status(), 401, "a revoked key");

    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, _, stderr) = run_binary(&["apikey", "revoke", &unknown], &vars, d.path()).await;
    assert_eq!(status.code(), Some(1));
    assert_one_error_line(&stderr, "error: no API key has id");
}

#[tokio::test]
async fn serve_migrates_at_start_up_only_when_asked() {
    let database = pgkit::testing::cluster().await.database().await;
    let d = dir();
    let vars = [
        ("APP_ENVIRONMENT", "production"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("DAVE_DB_DSN", database.url()),
        ("SESSION_SECRET", CHILD_SESSION_SECRET),
        ("LOG_FORMAT", "json"),
    ];
    let side = side_pool(database.url());
    let tables = || async {
        let mut conn = side.acquire().await.unwrap();
        let n: i64 = conn
            .fetch_val(
                "SELECT count(*) FROM pg_tables WHERE tablename = 'ai_conversations'",
                &[],
            )
            .await
            .unwrap();
        n
    };

    // Not asked: the empty database stays empty.
    let mut child = crate::helpers::spawn_binary(&["serve"], &vars, d.path()).await;
    child.wait_for_url().await;
    child.signal(rustix::process::Signal::TERM);
    assert!(
        child.wait_exit(crate::helpers::WAIT).await.success(),
        "{}",
        child.output()
    );
    assert_eq!(tables().await, 0, "no implicit migration");

    // Asked with --migrate: migrated before it serves.
    let mut child = crate::helpers::spawn_binary(&["serve", "--migrate"], &vars, d.path()).await;
    let url = child.wait_for_url().await;
    assert_eq!(tables().await, 1);
    let http = crate::helpers::client();
    let response = http
        .post(format!("{url}/api/v1/conversations"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    child.signal(rustix::process::Signal::TERM);
    assert!(
        child.wait_exit(crate::helpers::WAIT).await.success(),
        "{}",
        child.output()
    );
    side.close(Duration::from_secs(1)).await;
}

/// An edited applied file: `dave migrate up` refuses with pgkit's message,
/// and the hint names dave's own repair command, not pgkit's.
#[tokio::test]
async fn a_changed_file_hints_at_dave_migrate_repair() {
    let database = pgkit::testing::cluster().await.database().await;
    let d = dir();
    let vars = [("DAVE_DB_DSN", database.url())];
    let (status, _, stderr) = run_binary(&["migrate", "up"], &vars, d.path()).await;
    assert!(status.success(), "{stderr}");
    let (first, _) = dave::embedded::MIGRATIONS[0];
    let side = side_pool(database.url());
    let mut conn = side.acquire().await.unwrap();
    conn.execute(
        "UPDATE pgkit_migrations SET checksum = repeat('0', 64) WHERE name = $1",
        &[&first],
    )
    .await
    .unwrap();
    drop(conn);
    side.close(Duration::from_secs(1)).await;

    let (status, _, stderr) = run_binary(&["migrate", "up"], &vars, d.path()).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_one_error_line(&stderr, "error: 1 applied migration file changed");
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("hint: "))
        .unwrap_or_else(|| panic!("a hint in:\n{stderr}"));
    assert!(hint.contains("`dave migrate repair FILE`"), "{hint}");
    assert!(!hint.contains("pgkit migrate repair"), "{hint}");

    let (status, stdout, _) = run_binary(&["migrate", "status"], &vars, d.path()).await;
    assert!(status.success());
    let line = stdout.lines().find(|l| l.ends_with(first)).unwrap();
    assert_eq!(line.split_whitespace().nth(1), Some("changed"), "{line}");
}

/// The file `dave migrate up` is stopped in: its first statement needs a
/// lock on knowledge_base, which the test holds.
const BLOCKED_FILE: &str = "009_create_knowledge_base_terms.sql";
/// A statement of another session waiting for a lock in this database.
const WAITING: &str = "SELECT count(*) FROM pg_stat_activity \
    WHERE pid <> pg_backend_pid() AND datname = current_database() \
      AND state = 'active' AND wait_event_type = 'Lock'";
/// Advisory locks held in this database (the runner's migration lock is one).
const ADVISORY: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Polls `check` until it is true or `limit` passes; true when it became true.
async fn within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `dave migrate up` stopped by `signal` while a file waits for a lock
/// (issue 14 §3, as `pgkit migrate up`): the waiting statement is
/// cancelled, the file rolled back and named, the migration lock released,
/// exit `code` within a few seconds; the next `up` applies it.
async fn migrate_up_interrupted(signal: rustix::process::Signal, name: &str, code: i32) {
    let database = pgkit::testing::cluster().await.database().await;
    let url = database.url().to_owned();
    // Every file before the blocked one applied, as by an earlier release.
    let at = dave::embedded::MIGRATIONS
        .iter()
        .position(|(n, _)| *n == BLOCKED_FILE)
        .expect("the blocked file is embedded");
    let dsn = pgkit::dsn::Dsn::parse(&url).unwrap();
    let params = pgkit::connect::SessionParams::from_settings(
        &pgkit::settings::DbSettings::for_dsn(dsn.clone(), "dave-tests"),
    );
    pgkit::migrate::Migrator::new(
        pgkit::migrate::MigrationSource::Embedded(&dave::embedded::MIGRATIONS[..at]),
        pgkit::migrate::MigrateOptions::default(),
    )
    .up(&dsn, &params, |_| {})
    .await
    .unwrap();

    let holder = crate::helpers::admin_client(&url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE knowledge_base IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let c = crate::helpers::admin_client(&url).await;
    let d = dir();
    // A lock timeout longer than the test: the file waits, it is not retried.
    let vars = [("DAVE_DB_DSN", url.as_str())];
    let mut child = crate::helpers::spawn_binary(
        &["migrate", "up", "--ddl-lock-timeout", "600"],
        &vars,
        d.path(),
    )
    .await;
    assert!(
        within(Duration::from_secs(30), || async {
            count(&c, WAITING).await == 1
        })
        .await,
        "the migration never waited for the lock:\n{}",
        child.output()
    );
    assert_eq!(count(&c, ADVISORY).await, 1, "the runner holds its lock");

    let sent = std::time::Instant::now();
    child.signal(signal);
    let status = child.wait_exit(Duration::from_secs(5)).await;
    let took = sent.elapsed();
    let err = child.stderr_lines().join("\n");
    assert_eq!(status.code(), Some(code), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {err}");
    assert_one_error_line(
        &err,
        &format!("error: interrupted by {name}: {BLOCKED_FILE} "),
    );
    assert!(
        err.contains(&format!("{BLOCKED_FILE} was rolled back")),
        "{err}"
    );
    assert!(err.contains("hint: run `up` again"), "{err}");

    // Nothing of it goes on on the server: no statement, no lock, no row.
    assert!(
        within(Duration::from_secs(2), || async {
            count(&c, WAITING).await == 0 && count(&c, ADVISORY).await == 0
        })
        .await,
        "the statement or the lock outlived dave"
    );
    let recorded: i64 = c
        .query_one(
            "SELECT count(*) FROM pgkit_migrations WHERE name = $1",
            &[&BLOCKED_FILE],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'knowledge_base_terms'"
        )
        .await,
        0
    );

    holder.batch_execute("ROLLBACK").await.unwrap();
    let (status, _, stderr) = run_binary(&["migrate", "up"], &vars, d.path()).await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(BLOCKED_FILE), "{stderr}");
}

#[tokio::test]
async fn ctrl_c_during_migrate_up_rolls_back_unlocks_and_exits_130() {
    migrate_up_interrupted(rustix::process::Signal::INT, "SIGINT", 130).await;
}

#[tokio::test]
async fn sigterm_during_migrate_up_rolls_back_unlocks_and_exits_143() {
    migrate_up_interrupted(rustix::process::Signal::TERM, "SIGTERM", 143).await;
}
