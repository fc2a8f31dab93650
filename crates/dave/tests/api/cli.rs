//! The `dave` command line, run as a process: help and usage errors, start-up
//! errors as one line with exit code 1, `migrate`, `seed`, and `apikey`
//! (a created key works against the API, and stops working once revoked).

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

    let (status, stdout, stderr) = run_binary(&["migrate", "status"], &vars, d.path()).await;
    assert!(status.success(), "{stderr}");
    for (name, _) in dave::embedded::MIGRATIONS {
        let line = stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} in:\n{stdout}"));
        assert!(line.starts_with("applied"), "{line}");
    }
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
