//! The real `pgkit provision` binary: the password comes from the named
//! variable and is never printed, `--dry-run` prints the SQL without
//! connecting, a second run changes nothing, usage errors exit 2.

mod support;

use std::process::Output;

use pgkit::testing::{self, TestDatabase};
use support::{connect, stderr, stdout};

const PASSWORD: &str = "Cli-Provision-Pw-31";

fn provision(url: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Output {
    support::pgkit(url, env, &["provision"])
        .args(args)
        .output()
        .expect("pgkit runs")
}

fn assert_no_password(out: &Output) {
    assert!(!stdout(out).contains(PASSWORD), "{}", stdout(out));
    assert!(!stderr(out).contains(PASSWORD), "{}", stderr(out));
}

fn url_as(db: &TestDatabase, user: &str) -> String {
    db.url()
        .replace("postgresql://postgres@", &format!("postgresql://{user}@"))
}

#[test]
fn dry_run_prints_the_sql_with_the_password_hidden_and_connects_nowhere() {
    let out = provision(
        Some("postgresql://u@/d?host=/nonexistent"),
        &[("APP_PW", PASSWORD)],
        &[
            "--schema",
            "dave",
            "--role",
            "dave_app",
            "--password-env",
            "APP_PW",
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sql = stdout(&out);
    assert!(
        sql.contains("CREATE ROLE \"dave_app\" LOGIN PASSWORD '***';"),
        "{sql}"
    );
    assert!(
        sql.contains("ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA \"dave\""),
        "{sql}"
    );
    assert_no_password(&out);
}

#[tokio::test]
async fn provisions_once_and_the_second_run_changes_nothing() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await;
    admin
        .batch_execute("CREATE ROLE cli_prov_owner NOLOGIN")
        .await
        .unwrap();
    let args = [
        "--schema",
        "clisvc",
        "--role",
        "cli_prov_app",
        "--password-env",
        "APP_PW",
        "--owner",
        "cli_prov_owner",
    ];
    let first = provision(Some(db.url()), &[("APP_PW", PASSWORD)], &args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(
        stdout(&first),
        "provisioned schema clisvc and role cli_prov_app; tables and sequences cli_prov_owner creates there later are covered too\n"
    );
    assert_no_password(&first);
    let before: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'cli_prov_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let second = provision(Some(db.url()), &[("APP_PW", "a-different-one")], &args);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(
        stderr(&second)
            .contains("NOTICE: role cli_prov_app exists; its password is left unchanged"),
        "{}",
        stderr(&second)
    );
    let after: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'cli_prov_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after);

    admin
        .batch_execute(
            "SET ROLE cli_prov_owner; CREATE TABLE clisvc.later (id int PRIMARY KEY); RESET ROLE;",
        )
        .await
        .unwrap();
    let app = connect(&url_as(&db, "cli_prov_app")).await;
    app.execute("INSERT INTO later VALUES (1)", &[])
        .await
        .unwrap();
}

#[test]
fn an_unset_password_variable_is_a_failure_with_the_fix() {
    let out = provision(
        Some("postgresql://u@/d?host=/nonexistent"),
        &[],
        &[
            "--schema",
            "s",
            "--role",
            "r",
            "--password-env",
            "MISSING_PW",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: MISSING_PW (named by --password-env) is not set\n\
         hint: export MISSING_PW=<the role's password> (or MISSING_PW_FILE=<a file holding it>) and run provision again\n"
    );
}

#[test]
fn bad_names_and_bad_usage() {
    let out = provision(
        None,
        &[("APP_PW", PASSWORD)],
        &[
            "--schema",
            "x; DROP SCHEMA public",
            "--role",
            "r",
            "--password-env",
            "APP_PW",
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: invalid schema name \"x; DROP SCHEMA public\""),
        "{}",
        stderr(&out)
    );

    let both = provision(
        None,
        &[],
        &[
            "--schema",
            "s",
            "--role",
            "r",
            "--password-env",
            "V",
            "--iam-user",
            "a@b.iam.gserviceaccount.com",
        ],
    );
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let neither = provision(None, &[], &["--schema", "s", "--role", "r"]);
    assert_eq!(neither.status.code(), Some(2), "{}", stderr(&neither));
    assert!(
        stderr(&neither).contains("--password-env"),
        "{}",
        stderr(&neither)
    );
}

#[test]
fn with_a_transaction_pooler_the_session_settings_become_the_roles_defaults() {
    let args = [
        "--schema",
        "dave",
        "--role",
        "dave_app",
        "--password-env",
        "APP_PW",
        "--dry-run",
    ];
    let url = Some("postgresql://u@/d?host=/nonexistent");
    let direct = stdout(&provision(url, &[("APP_PW", PASSWORD)], &args));
    assert!(!direct.contains("SET statement_timeout"), "{direct}");

    let pooled = provision(
        url,
        &[
            ("APP_PW", PASSWORD),
            ("DB_POOLER", "transaction"),
            ("DB_QUERY_TIMEOUT", "12"),
            ("APP_ENVIRONMENT", "production"),
        ],
        &args,
    );
    assert_eq!(pooled.status.code(), Some(0), "{}", stderr(&pooled));
    let sql = stdout(&pooled);
    for line in [
        "ALTER ROLE \"dave_app\" SET statement_timeout = '12000ms';",
        "ALTER ROLE \"dave_app\" SET idle_in_transaction_session_timeout = '60000ms';",
        "ALTER ROLE \"dave_app\" SET app.environment = 'production';",
    ] {
        assert!(sql.contains(line), "{line} missing from:\n{sql}");
    }
}
