//! The real `pgkit provision` binary: the password comes from the named
//! variable and is never printed, `--dry-run` prints the SQL without
//! connecting, a second run changes nothing, usage errors exit 2.

use std::process::Output;

use pgkit::testing;
use pgkit::testing::auth::url_as;
use pgkit::testing::check::connect;
use pgkit_cli::testing::{stderr, stdout};

const PASSWORD: &str = "Cli-Provision-Pw-31";

fn provision(url: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Output {
    pgkit_cli::testing::pgkit(url, env, &["provision"])
        .args(args)
        .output()
        .expect("pgkit runs")
}

fn assert_no_password(out: &Output) {
    assert!(!stdout(out).contains(PASSWORD), "{}", stdout(out));
    assert!(!stderr(out).contains(PASSWORD), "{}", stderr(out));
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
    let admin = connect(db.url()).await.unwrap();
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
    let app = connect(&url_as(&db, "cli_prov_app", None)).await.unwrap();
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
    let admin = connect(db.url()).await.unwrap();
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
        Some(&url_as(&db, "cli_refuse_admin", None)),
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

/// Issue 14 §4: pgkit's tracking table is read-only for the runtime role,
/// whether it existed before provision or `migrate` creates it afterwards;
/// `doctor` as that role does not ask for writes on it; `audit --schema`
/// does not count pgkit's table or the shared `update_updated_at_column()`
/// as objects outside the schema.
#[tokio::test]
async fn the_runtime_role_reads_the_migration_history_but_cannot_rewrite_it() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await.unwrap();
    let args = [
        "--schema",
        "trk",
        "--role",
        "trk_app",
        "--password-env",
        "APP_PW",
    ];
    let out = provision(Some(db.url()), &[("APP_PW", PASSWORD)], &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_notes.sql"),
        "-- Migration: 001_notes.sql\n-- Issue: T-1\n-- Date: 2025-01-15\n-- Author: A\n-- Description: notes\n\
         BEGIN;\n\
         CREATE OR REPLACE FUNCTION public.update_updated_at_column() RETURNS TRIGGER AS $$\n\
         BEGIN NEW.updated_at = NOW(); RETURN NEW; END;\n$$ LANGUAGE plpgsql;\n\
         CREATE TABLE IF NOT EXISTS trk.notes (id BIGINT PRIMARY KEY, updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW());\n\
         COMMENT ON TABLE trk.notes IS 'Notes';\n\
         DROP TRIGGER IF EXISTS update_notes_updated_at ON trk.notes;\n\
         CREATE TRIGGER update_notes_updated_at BEFORE UPDATE ON trk.notes FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();\n\
         COMMIT;\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    // The tracking table in the service's schema, created after provision
    // (default privileges would give the runtime role writes on it) ...
    for schema in ["trk", "public"] {
        let up = pgkit_cli::testing::pgkit(
            Some(db.url()),
            &[],
            &["migrate", "--dir", d, "up", "--schema", schema],
        )
        .output()
        .unwrap();
        assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    }
    let privileges = |table: &'static str| {
        let admin = &admin;
        async move {
            let row = admin
                .query_one(
                    "SELECT has_table_privilege('trk_app', $1, 'SELECT'),
                            has_table_privilege('trk_app', $1, 'INSERT'),
                            has_table_privilege('trk_app', $1, 'UPDATE'),
                            has_table_privilege('trk_app', $1, 'DELETE'),
                            has_table_privilege('trk_app', $1, 'TRUNCATE')",
                    &[&table],
                )
                .await
                .unwrap();
            (0..5).map(|i| row.get::<_, bool>(i)).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        privileges("trk.pgkit_migrations").await,
        [true, false, false, false, false],
        "created by migrate after provision"
    );
    assert_eq!(
        privileges("trk.notes").await,
        [true, true, true, true, false]
    );

    // ... and one that existed, written to by hand, before provision ran again.
    admin
        .batch_execute("GRANT INSERT, UPDATE, DELETE ON trk.pgkit_migrations TO trk_app")
        .await
        .unwrap();
    let again = provision(Some(db.url()), &[("APP_PW", PASSWORD)], &args);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        privileges("trk.pgkit_migrations").await,
        [true, false, false, false, false],
        "provision revokes the writes on an existing tracking table"
    );
    let app = connect(&url_as(&db, "trk_app", None)).await.unwrap();
    let denied = app
        .execute("DELETE FROM trk.pgkit_migrations", &[])
        .await
        .unwrap_err();
    let denied = denied.as_db_error().map(|e| e.message().to_owned());
    assert!(
        denied
            .as_deref()
            .is_some_and(|m| m.contains("permission denied")),
        "{denied:?}"
    );

    // doctor as the runtime role: the grants step passes.
    let doctor = pgkit_cli::testing::pgkit(
        None,
        &[],
        &["doctor", &url_as(&db, "trk_app", None), "--schema", "trk"],
    )
    .output()
    .unwrap();
    let text = stdout(&doctor);
    let grants = text
        .lines()
        .find(|l| l.contains("privileges:"))
        .unwrap_or_else(|| panic!("{text}{}", stderr(&doctor)));
    assert!(grants.starts_with("ok"), "{text}");
    assert!(grants.contains("on all 1 tables"), "{text}");

    // audit of the schema: pgkit's table in public and the shared trigger
    // function are not "outside the schema"; a stray table is.
    admin
        .batch_execute(
            "CREATE TABLE public.stray (id int PRIMARY KEY); COMMENT ON TABLE public.stray IS 's'",
        )
        .await
        .unwrap();
    let audit = pgkit_cli::testing::pgkit(
        Some(db.url()),
        &[],
        &["audit", "--schema", "trk", "--role", "trk_app"],
    )
    .output()
    .unwrap();
    let text = stdout(&audit);
    assert!(
        text.contains("public.stray: error[object-outside-schema]"),
        "{text}"
    );
    assert!(!text.contains("pgkit_migrations"), "{text}");
    assert!(!text.contains("update_updated_at_column()"), "{text}");
    assert_eq!(text.matches("object-outside-schema").count(), 1, "{text}");
}

/// Issue 14 §5: a missing IAM user gets its one fix (create it with gcloud)
/// once, on the hint line, and no unrelated second hint.
#[tokio::test]
async fn a_missing_iam_user_gets_one_hint_naming_gcloud() {
    let db = testing::cluster().await.database().await;
    let out = provision(
        Some(db.url()),
        &[],
        &[
            "--schema",
            "ghostsvc",
            "--role",
            "ghostsvc_app",
            "--iam-user",
            "ghost-cli@proj.iam.gserviceaccount.com",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let error = lines.iter().find(|l| l.starts_with("error: ")).unwrap();
    let hints: Vec<&&str> = lines.iter().filter(|l| l.starts_with("hint: ")).collect();
    assert!(error.contains("ghost-cli@proj.iam does not exist"), "{err}");
    assert!(
        !error.contains("gcloud"),
        "the fix is said once, on the hint line: {err}"
    );
    assert_eq!(hints.len(), 1, "{err}");
    assert!(
        hints[0].contains("gcloud sql users create ghost-cli@proj.iam --instance=INSTANCE --type=cloud_iam_service_account"),
        "{err}"
    );
    assert!(!err.contains("run provision as a role"), "{err}");
}
