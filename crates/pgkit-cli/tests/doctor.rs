//! The real `pgkit doctor` binary (issue 5, part 3 acceptance): for each
//! broken connection, the words on stdout, the fix on stderr, exit code 1;
//! a healthy DSN exits 0; bad usage exits 2.

use std::process::{Command, Output};

use pgkit::testing;
use pgkit::testing::auth::{require_scram, url_as};
use pgkit::testing::check::connect;
use pgkit_cli::testing::{stderr, stdout};

/// `pgkit doctor ARGS` with a clean environment: the URL and `env` only.
fn doctor(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    pgkit_cli::testing::pgkit(Some(url), env, &["doctor"])
        .args(args)
        .output()
        .expect("pgkit runs")
}

/// Exit 1, `FAIL step: problem` on stdout, the error and the fix on stderr.
fn assert_fails_at(out: &Output, step: &str, problem: &str, fix: &str) {
    let (so, se) = (stdout(out), stderr(out));
    assert_eq!(out.status.code(), Some(1), "stdout:\n{so}\nstderr:\n{se}");
    assert!(
        so.contains(&format!("FAIL {step}: {problem}")),
        "stdout:\n{so}"
    );
    assert!(
        so.contains(&format!("stopped at {step}: ")),
        "stdout:\n{so}"
    );
    assert!(
        se.starts_with(&format!("error: doctor: the {step} step failed\nhint: ")),
        "stderr:\n{se}"
    );
    assert!(se.contains(fix), "the fix {fix:?} is on stderr:\n{se}");
    assert_eq!(
        se.lines().count(),
        2,
        "one error line, one hint line:\n{se}"
    );
}

#[tokio::test]
async fn a_healthy_dsn_passes_and_exits_0() {
    let db = testing::cluster().await.database().await;
    let out = doctor(db.url(), &[("MAX_INSTANCES", "3")], &[]);
    let so = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{so}\n{}", stderr(&out));
    assert!(
        so.starts_with("ok   parse: postgresql://postgres@/"),
        "{so}"
    );
    assert!(
        so.contains("DB_POOL_MAX_SIZE 15 × 3 instances = 45 connections"),
        "MAX_INSTANCES is read: {so}"
    );
    assert!(so.ends_with("all 9 checks passed\n"), "{so}");
    assert_eq!(stderr(&out), "");
}

#[tokio::test]
async fn a_socket_directory_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone");
    let out = doctor(
        &format!("postgresql://u:pw@/d?host={}", missing.display()),
        &[],
        &[],
    );
    assert_fails_at(
        &out,
        "socket",
        &format!("socket directory {} does not exist", missing.display()),
        "start PostgreSQL",
    );

    let out = doctor(
        "postgresql://dave:pw@/dave?host=/cloudsql/proj:europe-west1:main",
        &[],
        &[],
    );
    assert_fails_at(
        &out,
        "socket",
        "socket directory /cloudsql/proj:europe-west1:main does not exist",
        "--add-cloudsql-instances proj:europe-west1:main",
    );
    assert!(stderr(&out).contains("cloud-sql-proxy --unix-socket /cloudsql proj:europe-west1:main"));
}

#[tokio::test]
async fn a_tcp_port_where_nothing_listens() {
    // Loopback only: a port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = doctor(&format!("postgresql://u:pw@127.0.0.1:{port}/d"), &[], &[]);
    assert_fails_at(
        &out,
        "tcp",
        &format!("connection refused by 127.0.0.1:{port}: nothing listens on port {port}"),
        "start PostgreSQL there",
    );
    assert!(
        stdout(&out).contains("ok   resolve: 127.0.0.1 is 127.0.0.1\n"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn a_wrong_password_with_scram_authentication() {
    let cluster = testing::dedicated_cluster().await;
    let db = cluster.database().await;
    connect(db.url())
        .await
        .unwrap()
        .batch_execute(
            "CREATE ROLE cli_doc_app LOGIN PASSWORD 'right-pw'; CREATE ROLE cli_doc_probe LOGIN",
        )
        .await
        .unwrap();
    // Every role but the harness's superuser logs in with SCRAM on the socket.
    require_scram(&cluster, &db, "cli_doc_probe").await;
    let out = doctor(&url_as(&db, "cli_doc_app", Some("Wrong-Pw-77")), &[], &[]);
    assert_fails_at(
        &out,
        "authentication",
        "password authentication failed for user \"cli_doc_app\"",
        "ALTER ROLE cli_doc_app PASSWORD",
    );
    assert!(!stdout(&out).contains("Wrong-Pw-77") && !stderr(&out).contains("Wrong-Pw-77"));
    assert!(
        stdout(&out).contains("ok   parse: postgresql://cli_doc_app:***@/"),
        "{}",
        stdout(&out)
    );

    // A role that does not exist gets the same answer from the server: the
    // fix names that cause too (issue 14), not only ALTER ROLE … PASSWORD.
    let nobody = doctor(&url_as(&db, "cli_doc_nobody", Some("Any-Pw-1")), &[], &[]);
    assert_fails_at(
        &nobody,
        "authentication",
        "password authentication failed for user \"cli_doc_nobody\"",
        "User doesn't exist in Cloud SQL",
    );
    assert!(
        stderr(&nobody).contains("gcloud sql users create cli_doc_nobody --instance="),
        "{}",
        stderr(&nobody)
    );

    let right = doctor(&url_as(&db, "cli_doc_app", Some("right-pw")), &[], &[]);
    assert_eq!(right.status.code(), Some(0), "{}", stdout(&right));
}

#[tokio::test]
async fn an_unknown_database() {
    let db = testing::cluster().await.database().await;
    let url = db
        .url()
        .replace(&format!("/{}?", db.name()), "/cli_no_such_db?");
    let out = doctor(&url, &[], &[]);
    assert_fails_at(
        &out,
        "database",
        "database \"cli_no_such_db\" does not exist",
        "create it: CREATE DATABASE cli_no_such_db;",
    );
    assert!(stdout(&out).contains("ok   authentication: logged in as postgres\n"));
}

#[tokio::test]
async fn a_role_without_grants() {
    let db = testing::cluster().await.database().await;
    connect(db.url())
        .await
        .unwrap()
        .batch_execute(
            "CREATE ROLE cli_doc_nogrants LOGIN;
             CREATE SCHEMA svc;
             CREATE TABLE svc.items (id int PRIMARY KEY);",
        )
        .await
        .unwrap();
    let out = doctor(
        &url_as(&db, "cli_doc_nogrants", None),
        &[("PGKIT_SCHEMA", "svc")],
        &[],
    );
    assert_fails_at(
        &out,
        "privileges",
        "role cli_doc_nogrants has no USAGE on schema svc",
        "GRANT USAGE ON SCHEMA svc TO cli_doc_nogrants;",
    );
    assert!(stderr(&out).contains("pgkit provision --schema svc --role cli_doc_nogrants"));
}

#[tokio::test]
async fn a_pool_larger_than_the_connection_budget() {
    let db = testing::cluster().await.database().await;
    let out = doctor(
        db.url(),
        &[("DB_POOL_MAX_SIZE", "40"), ("MAX_INSTANCES", "5")],
        &["--instances", "10"],
    );
    assert_fails_at(
        &out,
        "server",
        "pool exhausted at full scale: DB_POOL_MAX_SIZE 40 × 10 instances = 400 connections, but the server accepts 297",
        "lower DB_POOL_MAX_SIZE to 29 or less, or cap Cloud Run's --max-instances at 7, or raise max_connections",
    );
}

#[tokio::test]
async fn json_output_lists_the_steps() {
    let db = testing::cluster().await.database().await;
    let url = db
        .url()
        .replace(&format!("/{}?", db.name()), "/cli_json_missing?");
    let out = doctor(&url, &[], &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["ok"], false);
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[4]["step"], "database");
    assert_eq!(steps[4]["ok"], false);
    assert!(steps[4]["fix"]
        .as_str()
        .unwrap()
        .starts_with("create it: CREATE DATABASE"));
}

#[test]
fn bad_usage_exits_2() {
    let out = doctor("postgresql://u@h/d", &[], &["--instances", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = doctor("postgresql://u@h/d", &[], &["--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn no_dsn_at_all_is_a_failure_with_the_fix() {
    let out = Command::new(pgkit_cli::testing::pgkit_binary())
        .arg("doctor")
        .env_clear()
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: no database URL: neither --database-url nor DATABASE_URL (nor DAVE_DB_DSN) is set\n\
         hint: pass the URL (postgresql://USER:PASSWORD@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE), or set DATABASE_URL (or DATABASE_URL_FILE)\n"
    );
}

/// The standard's `DAVE_DB_DSN` is read when DATABASE_URL is not set
/// (issue 14 §5): doctor, audit and migrate find the database by it.
#[tokio::test]
async fn the_standards_dave_db_dsn_is_a_fallback_for_database_url() {
    let db = pgkit::testing::cluster().await.database().await;
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["doctor"],
        vec!["audit"],
        vec!["migrate", "--dir", dir.path().to_str().unwrap(), "status"],
    ] {
        let out = Command::new(pgkit_cli::testing::pgkit_binary())
            .args(&args)
            .env_clear()
            .env("DAVE_DB_DSN", db.url())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

/// `pgkit doctor postgresql://…`, as psql users type it (issue 14): the
/// positional URL is the one diagnosed, over DATABASE_URL; audit takes it too.
#[tokio::test]
async fn a_positional_url_is_accepted_like_psql() {
    let db = pgkit::testing::cluster().await.database().await;
    let wrong = "postgresql://nobody@/nodb?host=/nonexistent";
    let doctor = pgkit_cli::testing::pgkit(Some(wrong), &[], &["doctor", db.url()])
        .output()
        .expect("pgkit runs");
    assert_eq!(
        doctor.status.code(),
        Some(0),
        "{}{}",
        pgkit_cli::testing::stdout(&doctor),
        pgkit_cli::testing::stderr(&doctor)
    );
    let audit = pgkit_cli::testing::pgkit(None, &[], &["audit", db.url()])
        .output()
        .expect("pgkit runs");
    assert_eq!(
        audit.status.code(),
        Some(0),
        "{}",
        pgkit_cli::testing::stderr(&audit)
    );
}
