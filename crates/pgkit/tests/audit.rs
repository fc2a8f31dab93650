//! `pgkit audit` on a real PostgreSQL (issue 5, part 2): each problem of a
//! deliberately broken schema is flagged once, with a fix; dave's own
//! migrations pass, in `public` as the standard writes them and in a schema
//! of their own provisioned the schema-per-service way.

use std::path::Path;

use pgkit::audit::{audit, AuditError, AuditOptions, AuditReport, AuditRule};
use pgkit::provision::{Login, Plan, ProvisionRequest};
use pgkit::secret::Secret;
use pgkit::testing;
use tokio_postgres::Client;

async fn connect(url: &str) -> Client {
    testing::check::connect(url).await.unwrap()
}

/// `(object, rule)` of every finding, in report order.
fn pairs(report: &AuditReport) -> Vec<(String, &'static str)> {
    report
        .findings()
        .iter()
        .map(|f| (f.object.clone(), f.rule.as_str()))
        .collect()
}

fn find<'a>(
    report: &'a AuditReport,
    object: &str,
    rule: AuditRule,
) -> &'a pgkit::audit::AuditFinding {
    report
        .findings()
        .iter()
        .find(|f| f.object == object && f.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} finding on {object}:\n{}", report.to_text()))
}

const UPDATED_AT_FUNCTION: &str = "
    CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$
    BEGIN NEW.updated_at = NOW(); RETURN NEW; END; $$ LANGUAGE plpgsql;";

/// One table per problem, next to tables that get it right.
const BROKEN: &str = "
    -- updated_at without any trigger
    CREATE TABLE stamped (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now());
    COMMENT ON TABLE stamped IS 'x';
    -- the right function, but AFTER UPDATE: too late to change NEW
    CREATE TABLE stamped_after (id int PRIMARY KEY, updated_at timestamptz);
    COMMENT ON TABLE stamped_after IS 'x';
    CREATE TRIGGER stamp AFTER UPDATE ON stamped_after
        FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
    -- right, but disabled
    CREATE TABLE stamped_disabled (id int PRIMARY KEY, updated_at timestamptz);
    COMMENT ON TABLE stamped_disabled IS 'x';
    CREATE TRIGGER stamp BEFORE UPDATE ON stamped_disabled
        FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
    ALTER TABLE stamped_disabled DISABLE TRIGGER stamp;
    -- right
    CREATE TABLE stamped_ok (id int PRIMARY KEY, updated_at timestamptz);
    COMMENT ON TABLE stamped_ok IS 'x';
    CREATE TRIGGER stamp BEFORE UPDATE ON stamped_ok
        FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

    CREATE TABLE uncommented (id int PRIMARY KEY);
    CREATE TABLE blank_comment (id int PRIMARY KEY);
    COMMENT ON TABLE blank_comment IS '   ';

    CREATE TABLE docs (id int PRIMARY KEY, body jsonb, meta jsonb, plain json);
    COMMENT ON TABLE docs IS 'x';
    COMMENT ON COLUMN docs.meta IS 'object of strings';

    CREATE TABLE parents (id int PRIMARY KEY, code text UNIQUE);
    COMMENT ON TABLE parents IS 'x';
    -- no index at all
    CREATE TABLE children (id int PRIMARY KEY, parent_id int REFERENCES parents (id));
    COMMENT ON TABLE children IS 'x';
    -- an index, but the key column is not its first
    CREATE TABLE children_trailing (id int PRIMARY KEY, parent_id int REFERENCES parents (id));
    COMMENT ON TABLE children_trailing IS 'x';
    CREATE INDEX ON children_trailing (id, parent_id);
    -- a partial index does not serve every row
    CREATE TABLE children_partial (id int PRIMARY KEY, parent_id int REFERENCES parents (id));
    COMMENT ON TABLE children_partial IS 'x';
    CREATE INDEX ON children_partial (parent_id) WHERE parent_id > 0;
    -- served: two-column key matched in another order, extra columns after
    CREATE TABLE children_ok (id int PRIMARY KEY, a int, b text, parent_id int REFERENCES parents (id),
                              FOREIGN KEY (a, b) REFERENCES pairs_target (a, b));
    COMMENT ON TABLE children_ok IS 'x';
    CREATE INDEX ON children_ok (parent_id, id);
    CREATE INDEX ON children_ok (b, a, id);

    CREATE TABLE heap (x int);
    COMMENT ON TABLE heap IS 'x';
";

async fn broken_database() -> testing::TestDatabase {
    let db = testing::cluster().await.database().await;
    let client = connect(db.url()).await;
    client.batch_execute(UPDATED_AT_FUNCTION).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE pairs_target (a int, b text, PRIMARY KEY (a, b));
             COMMENT ON TABLE pairs_target IS 'x';",
        )
        .await
        .unwrap();
    client.batch_execute(BROKEN).await.unwrap();
    db
}

#[tokio::test]
async fn flags_each_problem_of_a_broken_schema_exactly_once() {
    let db = broken_database().await;
    let client = connect(db.url()).await;
    let report = audit(&client, &AuditOptions::default()).await.unwrap();
    assert_eq!(
        pairs(&report),
        [
            ("public.blank_comment".to_string(), "table-comment"),
            ("public.children".into(), "foreign-key-index"),
            ("public.children_partial".into(), "foreign-key-index"),
            ("public.children_trailing".into(), "foreign-key-index"),
            ("public.docs.body".into(), "jsonb-column-comment"),
            ("public.heap".into(), "primary-key"),
            ("public.stamped".into(), "updated-at-trigger"),
            ("public.stamped_after".into(), "updated-at-trigger"),
            ("public.stamped_disabled".into(), "updated-at-trigger"),
            ("public.uncommented".into(), "table-comment"),
        ],
        "{}",
        report.to_text()
    );
    assert!(report.has_errors());
    assert_eq!(report.tables_checked(), 14);
    assert!(report
        .to_text()
        .ends_with("10 errors, 0 warnings in 14 tables\n"));
}

#[tokio::test]
async fn each_finding_names_the_fix_as_sql_that_works() {
    let db = broken_database().await;
    let client = connect(db.url()).await;
    let report = audit(&client, &AuditOptions::default()).await.unwrap();

    let trigger = find(&report, "public.stamped", AuditRule::UpdatedAtTrigger);
    assert!(
        trigger.message.contains("updated_at keeps its insert time"),
        "{}",
        trigger.message
    );
    assert_eq!(
        trigger.fix,
        "DROP TRIGGER IF EXISTS update_stamped_updated_at ON public.stamped; CREATE TRIGGER \
         update_stamped_updated_at BEFORE UPDATE ON public.stamped FOR EACH ROW EXECUTE FUNCTION \
         update_updated_at_column();"
    );
    let fk = find(&report, "public.children", AuditRule::ForeignKeyIndex);
    assert!(
        fk.message
            .contains("children_parent_id_fkey (parent_id) -> public.parents"),
        "{}",
        fk.message
    );
    assert_eq!(
        fk.fix,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_children_parent_id ON public.children (parent_id); \
         -- alone in a migration file with `-- pgkit:no-transaction` in its header, no BEGIN/COMMIT"
    );
    let column = find(&report, "public.docs.body", AuditRule::JsonbColumnComment);
    assert!(
        column
            .fix
            .starts_with("COMMENT ON COLUMN public.docs.body IS '"),
        "{}",
        column.fix
    );
    let pk = find(&report, "public.heap", AuditRule::PrimaryKey);
    assert!(
        pk.fix.contains("ALTER TABLE public.heap ADD PRIMARY KEY"),
        "{}",
        pk.fix
    );

    // Applying the fixes (placeholders filled in) leaves a clean audit.
    for f in report.findings() {
        let sql = f
            .fix
            .replace("CONCURRENTLY ", "")
            .replace("<unique, NOT NULL columns>", "x")
            .split(" or ALTER TABLE")
            .next()
            .unwrap()
            .replace(['<', '>'], "");
        let sql = if f.rule == AuditRule::PrimaryKey {
            format!("ALTER TABLE public.heap ALTER COLUMN x SET NOT NULL; {sql}")
        } else {
            sql
        };
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let after = audit(&client, &AuditOptions::default()).await.unwrap();
    assert!(after.findings().is_empty(), "{}", after.to_text());
}

#[tokio::test]
async fn json_form_has_lints_fields_with_the_object_as_location() {
    let db = broken_database().await;
    let client = connect(db.url()).await;
    let report = audit(&client, &AuditOptions::default()).await.unwrap();
    let json = report.to_json();
    assert_eq!(json["errors"], 10);
    assert_eq!(json["warnings"], 0);
    assert_eq!(json["tables_checked"], 14);
    let heap = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["object"] == "public.heap")
        .unwrap();
    assert_eq!(heap["rule"], "primary-key");
    assert_eq!(heap["severity"], "error");
    assert!(heap["fix"]
        .as_str()
        .unwrap()
        .starts_with("ALTER TABLE public.heap"));
}

#[tokio::test]
async fn a_missing_updated_at_function_is_part_of_the_fix() {
    let db = testing::cluster().await.database().await;
    let client = connect(db.url()).await;
    client
        .batch_execute(
            "CREATE TABLE \"Odd Name\" (id int PRIMARY KEY, updated_at timestamptz);
             COMMENT ON TABLE \"Odd Name\" IS 'x';",
        )
        .await
        .unwrap();
    let report = audit(&client, &AuditOptions::default()).await.unwrap();
    let f = find(&report, "public.Odd Name", AuditRule::UpdatedAtTrigger);
    assert!(
        f.fix
            .starts_with("CREATE OR REPLACE FUNCTION update_updated_at_column()"),
        "{}",
        f.fix
    );
    assert!(
        f.fix.contains("ON public.\"Odd Name\""),
        "quoted where needed: {}",
        f.fix
    );
    client.batch_execute(&f.fix).await.unwrap();
    assert!(audit(&client, &AuditOptions::default())
        .await
        .unwrap()
        .findings()
        .is_empty());
}

async fn apply_dave_migrations(client: &Client) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dave/migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "dave's migrations in {}", dir.display());
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[tokio::test]
async fn daves_migrations_pass() {
    let db = testing::cluster().await.database().await;
    let client = connect(db.url()).await;
    apply_dave_migrations(&client).await;
    let report = audit(&client, &AuditOptions::default()).await.unwrap();
    assert!(report.findings().is_empty(), "{}", report.to_text());
    assert_eq!(report.tables_checked(), 7);
    assert_eq!(report.to_text(), "0 errors, 0 warnings in 7 tables\n");
}

#[tokio::test]
async fn daves_migrations_pass_in_a_provisioned_schema_of_their_own() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await;
    admin
        .batch_execute("CREATE ROLE audit_dave_owner NOLOGIN")
        .await
        .unwrap();
    let plan = Plan::new(&ProvisionRequest {
        schema: "dave".into(),
        role: "audit_dave_app".into(),
        login: Login::Password(Secret::new("app-pw")),
        owner: Some("audit_dave_owner".into()),
    })
    .unwrap();
    plan.apply(&admin).await.unwrap();
    admin
        .batch_execute("SET ROLE audit_dave_owner; SET search_path = dave;")
        .await
        .unwrap();
    apply_dave_migrations(&admin).await;
    admin
        .batch_execute("RESET ROLE; RESET search_path;")
        .await
        .unwrap();

    let opts = AuditOptions {
        schema: Some("dave".into()),
        roles: vec!["audit_dave_app".into()],
    };
    let report = audit(&admin, &opts).await.unwrap();
    assert!(report.findings().is_empty(), "{}", report.to_text());
    assert_eq!(report.tables_checked(), 7);

    // Without naming the runtime role, its grants are someone else's.
    let strict = audit(
        &admin,
        &AuditOptions {
            roles: vec![],
            ..opts
        },
    )
    .await
    .unwrap();
    assert!(!strict.findings().is_empty());
    assert!(strict
        .findings()
        .iter()
        .all(|f| f.rule == AuditRule::ForeignGrant && f.fix.contains("--role audit_dave_app")));
}

#[tokio::test]
async fn schema_boundary_flags_strays_and_foreign_grants() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await;
    admin
        .batch_execute(
            "CREATE ROLE audit_svc_owner NOLOGIN;
             CREATE ROLE audit_svc_app NOLOGIN;
             CREATE ROLE audit_other_svc NOLOGIN;
             GRANT CREATE ON SCHEMA public TO audit_svc_owner;
             CREATE SCHEMA svc AUTHORIZATION audit_svc_owner;
             SET ROLE audit_svc_owner;
             CREATE TABLE svc.things (id int PRIMARY KEY);
             COMMENT ON TABLE svc.things IS 'x';
             CREATE TABLE public.stray (id int PRIMARY KEY);
             COMMENT ON TABLE public.stray IS 'x';
             CREATE FUNCTION public.stray_fn(a int) RETURNS int LANGUAGE sql AS 'SELECT a';
             GRANT USAGE ON SCHEMA svc TO audit_svc_app;
             GRANT SELECT, INSERT ON svc.things TO audit_svc_app;
             GRANT USAGE ON SCHEMA svc TO audit_other_svc;
             GRANT SELECT ON svc.things TO audit_other_svc;
             GRANT UPDATE ON svc.things TO PUBLIC;
             ALTER DEFAULT PRIVILEGES IN SCHEMA svc GRANT SELECT ON TABLES TO audit_other_svc;
             RESET ROLE;
             -- not the service's: owned by someone else, outside the schema
             CREATE TABLE public.unrelated (id int PRIMARY KEY);
             COMMENT ON TABLE public.unrelated IS 'x';",
        )
        .await
        .unwrap();
    let opts = AuditOptions {
        schema: Some("svc".into()),
        roles: vec!["audit_svc_app".into()],
    };
    let report = audit(&admin, &opts).await.unwrap();
    assert_eq!(
        pairs(&report),
        [
            ("public.stray".to_string(), "object-outside-schema"),
            ("public.stray_fn(a integer)".into(), "object-outside-schema"),
            ("schema svc".into(), "foreign-grant"),
            ("schema svc".into(), "foreign-grant"),
            ("svc.things".into(), "foreign-grant"),
            ("svc.things".into(), "foreign-grant"),
        ],
        "{}",
        report.to_text()
    );
    assert_eq!(report.tables_checked(), 1, "only the schema's tables");
    let texts: Vec<String> = report
        .findings()
        .iter()
        .map(|f| format!("{} | {}", f.message, f.fix))
        .collect();
    let all = texts.join("\n");
    for expected in [
        "table owned by audit_svc_owner, the owner of schema svc, lives outside it",
        "ALTER TABLE public.stray SET SCHEMA svc;",
        "ALTER FUNCTION public.stray_fn(a integer) SET SCHEMA svc;",
        "role audit_other_svc holds USAGE on this schema in schema svc",
        "REVOKE ALL ON SCHEMA svc FROM audit_other_svc;",
        "role audit_other_svc holds SELECT on this table in schema svc",
        "REVOKE ALL ON TABLE svc.things FROM audit_other_svc;",
        "every role (PUBLIC) holds UPDATE on this table",
        "REVOKE ALL ON TABLE svc.things FROM PUBLIC;",
        "role audit_other_svc holds SELECT on future objects (default privileges)",
        "ALTER DEFAULT PRIVILEGES FOR ROLE audit_svc_owner IN SCHEMA svc REVOKE ALL ON TABLES FROM audit_other_svc;",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in\n{all}");
    }

    // The fixes clear the boundary.
    for f in report.findings() {
        let sql = f.fix.split(" (").next().unwrap();
        admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let after = audit(&admin, &opts).await.unwrap();
    assert!(after.findings().is_empty(), "{}", after.to_text());
}

#[tokio::test]
async fn an_unknown_schema_is_a_clear_error() {
    let db = testing::cluster().await.database().await;
    let client = connect(db.url()).await;
    let err = audit(
        &client,
        &AuditOptions {
            schema: Some("nope".into()),
            roles: vec![],
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AuditError::SchemaNotFound { .. }));
    let text = err.to_string();
    assert!(
        text.contains("schema \"nope\" does not exist in database"),
        "{text}"
    );
    assert!(text.contains("--schema"), "{text}");
}
