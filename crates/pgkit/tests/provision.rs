//! `pgkit provision` on a real PostgreSQL (issue 5, part 4): tables the
//! migration owner creates after provisioning are usable by the service's
//! role over its own connection; other services' schemas stay closed to it;
//! a second run changes nothing; the password works with scram-sha-256.

use pgkit::provision::{Login, Plan, ProvisionError, ProvisionRequest};
use pgkit::secret::Secret;
use pgkit::testing;
use pgkit::testing::auth::{require_scram, url_as};
use pgkit::testing::check::connect;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

fn password_request(schema: &str, role: &str, owner: &str, password: &str) -> ProvisionRequest {
    ProvisionRequest {
        schema: schema.into(),
        role: role.into(),
        login: Login::Password(Secret::new(password)),
        owner: Some(owner.into()),
    }
}

/// Everything provisioning may touch, as text, to compare two runs.
async fn catalog_state(admin: &Client, schema: &str, roles: &[&str]) -> Vec<String> {
    let queries = [
        "SELECT nspname || ' ' || pg_get_userbyid(nspowner) || ' ' || coalesce(nspacl::text, '-')
         FROM pg_namespace WHERE nspname = $1",
        "SELECT c.relname || ' ' || coalesce(c.relacl::text, '-') FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY 1",
        "SELECT pg_get_userbyid(defaclrole) || ' ' || defaclobjtype::text || ' ' || defaclacl::text
         FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
         WHERE n.nspname = $1 ORDER BY 1",
    ];
    let mut out = Vec::new();
    for sql in queries {
        for row in admin.query(sql, &[&schema]).await.unwrap() {
            out.push(row.get::<_, String>(0));
        }
    }
    let datacl = admin
        .query_one(
            "SELECT coalesce(datacl::text, '-') FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    out.push(datacl.get(0));
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    let rows = admin
        .query(
            "SELECT a.rolname || ' ' || a.rolcanlogin || ' ' || coalesce(a.rolpassword, '-') || ' '
                    || coalesce((SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s
                                 WHERE s.setrole = a.oid AND s.setdatabase = 0), '-') || ' '
                    || coalesce((SELECT string_agg(pg_get_userbyid(m.roleid), ',' ORDER BY 1)
                                 FROM pg_auth_members m WHERE m.member = a.oid), '-')
             FROM pg_authid a WHERE a.rolname = ANY($1) ORDER BY 1",
            &[&roles],
        )
        .await
        .unwrap();
    out.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    out
}

#[tokio::test]
async fn later_tables_are_usable_by_the_role_and_other_schemas_are_not() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE prov_owner NOLOGIN;
             CREATE ROLE prov_other_owner NOLOGIN;
             CREATE SCHEMA svc AUTHORIZATION prov_owner;
             CREATE SCHEMA other_svc AUTHORIZATION prov_other_owner;
             SET ROLE prov_owner;
             CREATE TABLE svc.before (id int PRIMARY KEY, note text);
             SET ROLE prov_other_owner;
             CREATE TABLE other_svc.secrets (id int PRIMARY KEY, value text);
             INSERT INTO other_svc.secrets VALUES (1, 'not yours');
             RESET ROLE;",
        )
        .await
        .unwrap();
    let plan = Plan::new(&password_request("svc", "prov_app", "prov_owner", "pw-1")).unwrap();
    plan.apply(&admin).await.unwrap();

    // A migration after provisioning: a new table with a sequence.
    admin
        .batch_execute(
            "SET ROLE prov_owner;
             CREATE TABLE svc.later (id serial PRIMARY KEY, note text NOT NULL);
             RESET ROLE;",
        )
        .await
        .unwrap();

    let app = connect(&url_as(&db, "prov_app", None)).await.unwrap();
    let who: String = app
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "prov_app");
    // Unqualified names: the role's search_path starts with its schema.
    let id: i32 = app
        .query_one(
            "INSERT INTO later (note) VALUES ('hello') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    app.execute("UPDATE later SET note = 'changed' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let note: String = app
        .query_one("SELECT note FROM later WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "changed");
    assert_eq!(
        app.execute("DELETE FROM later WHERE id = $1", &[&id])
            .await
            .unwrap(),
        1
    );
    // The table that existed before provisioning too.
    app.execute("INSERT INTO before VALUES (1, 'x')", &[])
        .await
        .unwrap();
    assert_eq!(
        app.execute("UPDATE before SET note = 'y'", &[])
            .await
            .unwrap(),
        1
    );

    // Data privileges only: no DDL, no TRUNCATE.
    let err = app
        .batch_execute("CREATE TABLE svc.mine (id int)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let err = app.batch_execute("TRUNCATE later").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    // Another service's schema stays closed.
    let err = app
        .query("SELECT value FROM other_svc.secrets", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("permission denied for schema other_svc"),
        "{err}"
    );
}

#[tokio::test]
async fn running_provision_twice_changes_nothing() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await.unwrap();
    admin
        .batch_execute("CREATE ROLE twice_owner NOLOGIN")
        .await
        .unwrap();
    let request = password_request("twice", "twice_app", "twice_owner", "pw-twice");
    Plan::new(&request).unwrap().apply(&admin).await.unwrap();
    admin
        .batch_execute(
            "SET ROLE twice_owner; CREATE TABLE twice.t (id serial PRIMARY KEY); RESET ROLE;",
        )
        .await
        .unwrap();
    let roles = ["twice_app", "twice_owner"];
    let first = catalog_state(&admin, "twice", &roles).await;
    assert!(
        first.iter().any(|l| l.contains("twice_app=arwd/")),
        "table grant present: {first:?}"
    );
    assert!(
        first
            .iter()
            .any(|l| l.starts_with("twice_app true SCRAM-SHA-256$4096:")),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .any(|l| l.contains("search_path=twice, public")),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .any(|l| l.starts_with("twice_owner r {twice_app=arwd/twice_owner}")),
        "{first:?}"
    );

    // A new plan: a new salt, a new password even; the role keeps its own.
    let again = password_request("twice", "twice_app", "twice_owner", "another-password");
    Plan::new(&again).unwrap().apply(&admin).await.unwrap();
    let second = catalog_state(&admin, "twice", &roles).await;
    assert_eq!(first, second);
}

#[tokio::test]
async fn iam_users_get_the_privileges_through_the_group_role() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE iam_owner NOLOGIN;
             -- what gcloud sql users create --type=cloud_iam_service_account makes
             CREATE ROLE \"iam-run@proj.iam\" LOGIN;",
        )
        .await
        .unwrap();
    let request = ProvisionRequest {
        schema: "iamsvc".into(),
        role: "iamsvc_app".into(),
        login: Login::IamUser {
            email: "iam-run@proj.iam.gserviceaccount.com".into(),
        },
        owner: Some("iam_owner".into()),
    };
    Plan::new(&request).unwrap().apply(&admin).await.unwrap();
    admin
        .batch_execute(
            "SET ROLE iam_owner; CREATE TABLE iamsvc.items (id int PRIMARY KEY); RESET ROLE;",
        )
        .await
        .unwrap();

    let user = connect(&url_as(&db, "iam-run@proj.iam", None))
        .await
        .unwrap();
    user.execute("INSERT INTO items VALUES (7)", &[])
        .await
        .unwrap();
    let n: i64 = user
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let can_login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'iamsvc_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !can_login,
        "the group role holds privileges, it does not log in"
    );
}

#[tokio::test]
async fn a_missing_iam_user_fails_with_the_gcloud_command_and_changes_nothing() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await.unwrap();
    let request = ProvisionRequest {
        schema: "ghost".into(),
        role: "ghost_app".into(),
        login: Login::IamUser {
            email: "ghost@proj.iam.gserviceaccount.com".into(),
        },
        owner: None,
    };
    let err = Plan::new(&request)
        .unwrap()
        .apply(&admin)
        .await
        .unwrap_err();
    assert!(matches!(err, ProvisionError::Statement { .. }));
    let text = err.to_string();
    assert!(
        text.contains("IAM database user ghost@proj.iam does not exist"),
        "{text}"
    );
    assert!(
        text.contains("gcloud sql users create ghost@proj.iam --instance=INSTANCE --type=cloud_iam_service_account"),
        "{text}"
    );
    assert!(text.ends_with("nothing was changed"), "{text}");
    let left: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'ghost')
                  + (SELECT count(*) FROM pg_roles WHERE rolname = 'ghost_app')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the transaction rolled back");
}

#[tokio::test]
async fn the_password_logs_in_with_scram_and_a_wrong_one_does_not() {
    let cluster = testing::dedicated_cluster().await;
    let db = cluster.database().await;
    let admin = connect(db.url()).await.unwrap();
    admin
        .batch_execute("CREATE ROLE scram_probe LOGIN")
        .await
        .unwrap();
    require_scram(&cluster, &db, "scram_probe").await;

    let password = "pässword with 'quote' and \\ and $$";
    Plan::new(&ProvisionRequest {
        schema: "scram".into(),
        role: "scram_app".into(),
        login: Login::Password(Secret::new(password)),
        owner: None,
    })
    .unwrap()
    .apply(&admin)
    .await
    .unwrap();

    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let app = connect(&url_as(&db, "scram_app", Some(&encoded)))
        .await
        .unwrap();
    let who: String = app
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "scram_app");

    let err = connect(&url_as(&db, "scram_app", Some("wrong")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
}
