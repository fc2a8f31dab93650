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

/// `--role postgres` (issue 14): a superuser, the connecting role or the
/// schema's owner is refused with the reason and a hint, and nothing is
/// changed (no schema, no `ALTER ROLE … SET search_path`).
#[tokio::test]
async fn a_superuser_the_connecting_role_or_the_schema_owner_is_refused() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await;
    let env = [("APP_PW", PASSWORD)];
    let refused = |out: &Output, role: &str, schema: &str, reason: &str| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        let err = stderr(out);
        assert!(
            err.contains(&format!(
                "error: refusing to make {role} the runtime role of schema {schema}: {reason}"
            )),
            "{err}"
        );
        assert!(
            err.contains("hint: give the service a role of its own"),
            "{err}"
        );
        assert_no_password(out);
    };

    let out = provision(
        Some(db.url()),
        &env,
        &[
            "--schema",
            "people_refused",
            "--role",
            "postgres",
            "--password-env",
            "APP_PW",
        ],
    );
    refused(&out, "postgres", "people_refused", "it is a superuser");
    let schemas: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'people_refused'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0);
    let settings: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
             WHERE r.rolname = 'postgres' AND array_to_string(s.setconfig, ',') LIKE '%people_refused%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(settings, 0);

    admin
        .batch_execute(
            "CREATE ROLE cli_refuse_admin LOGIN CREATEROLE;
             CREATE ROLE cli_refuse_owner NOLOGIN;
             CREATE SCHEMA refused_owned AUTHORIZATION cli_refuse_owner;",
        )
        .await
        .unwrap();
    let out = provision(
        Some(&url_as(&db, "cli_refuse_admin")),
        &env,
        &[
            "--schema",
            "refused_conn",
            "--role",
            "cli_refuse_admin",
            "--password-env",
            "APP_PW",
        ],
    );
    refused(
        &out,
        "cli_refuse_admin",
        "refused_conn",
        "it is the role running provision",
    );

    let out = provision(
        Some(db.url()),
        &env,
        &[
            "--schema",
            "refused_owned",
            "--role",
            "cli_refuse_owner",
            "--password-env",
            "APP_PW",
        ],
    );
    refused(
        &out,
        "cli_refuse_owner",
        "refused_owned",
        "it owns the schema",
    );

    let out = provision(
        Some(db.url()),
        &env,
        &[
            "--schema",
            "refused_own2",
            "--role",
            "cli_refuse_owner",
            "--owner",
            "cli_refuse_owner",
            "--password-env",
            "APP_PW",
        ],
    );
    refused(
        &out,
        "cli_refuse_owner",
        "refused_own2",
        "it is the migration owner",
    );
}
