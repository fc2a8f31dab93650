//! The real `pgkit audit` binary: lint's output forms and exit codes (1 with
//! error findings, 0 on a clean database, 2 on bad usage).

use std::path::Path;
use std::process::Output;

use pgkit::testing::check::connect;
use pgkit::testing::{self, TestDatabase};
use pgkit_cli::testing::{stderr, stdout};

fn audit(url: &str, args: &[&str]) -> Output {
    pgkit_cli::testing::pgkit(Some(url), &[], &["audit"])
        .args(args)
        .output()
        .expect("pgkit runs")
}

async fn broken(db: &TestDatabase) {
    connect(db.url())
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE parents (id int PRIMARY KEY, updated_at timestamptz, doc jsonb);
             COMMENT ON TABLE parents IS 'x';
             CREATE TABLE children (id int PRIMARY KEY, parent_id int REFERENCES parents (id));",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn findings_print_like_lint_and_exit_1() {
    let db = testing::cluster().await.database().await;
    broken(&db).await;
    let out = audit(db.url(), &[]);
    let so = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{so}\n{}", stderr(&out));
    assert_eq!(
        so.lines().collect::<Vec<_>>(),
        [
            "public.children: error[table-comment] table has no comment: the next person cannot tell what one row is",
            "  fix: COMMENT ON TABLE public.children IS '<what one row is, and who writes it>';",
            "public.children: error[foreign-key-index] foreign key children_parent_id_fkey (parent_id) -> public.parents has no index leading with its columns: each delete or key update in public.parents scans this whole table",
            "  fix: CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_children_parent_id ON public.children (parent_id); -- alone in a migration file with `-- pgkit:no-transaction` in its header, no BEGIN/COMMIT",
            "public.parents: error[updated-at-trigger] table has updated_at but no enabled BEFORE UPDATE FOR EACH ROW trigger calling update_updated_at_column(): updated_at keeps its insert time",
            "  fix: CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$ BEGIN NEW.updated_at = NOW(); RETURN NEW; END; $$ LANGUAGE plpgsql; DROP TRIGGER IF EXISTS update_parents_updated_at ON public.parents; CREATE TRIGGER update_parents_updated_at BEFORE UPDATE ON public.parents FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();",
            "public.parents.doc: error[jsonb-column-comment] JSONB column has no comment: its shape is written down nowhere else",
            "  fix: COMMENT ON COLUMN public.parents.doc IS '<the JSON it holds: object keys, limits>';",
            "4 errors, 0 warnings in 2 tables",
        ]
    );
    assert_eq!(
        stderr(&out),
        "error: audit: 4 errors, 0 warnings in 2 tables\n\
         hint: fix each finding with the SQL under it (in a new migration), then run pgkit audit again\n"
    );
}

#[tokio::test]
async fn json_form_for_tools() {
    let db = testing::cluster().await.database().await;
    broken(&db).await;
    let out = audit(db.url(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["errors"], 4);
    assert_eq!(json["warnings"], 0);
    assert_eq!(json["tables_checked"], 2);
    let first = &json["findings"][0];
    for key in ["object", "rule", "severity", "message", "fix"] {
        assert!(first[key].is_string(), "{key} in {first}");
    }
}

#[tokio::test]
async fn daves_database_passes_with_exit_0() {
    let db = testing::cluster().await.database().await;
    let client = connect(db.url()).await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dave/migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    for file in files {
        client
            .batch_execute(&std::fs::read_to_string(&file).unwrap())
            .await
            .unwrap();
    }
    let out = audit(db.url(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "0 errors, 0 warnings in 7 tables\n");
    assert_eq!(stderr(&out), "");
}

#[tokio::test]
async fn an_unknown_schema_exits_1_with_a_hint() {
    let db = testing::cluster().await.database().await;
    let out = audit(db.url(), &["--schema", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let se = stderr(&out);
    assert!(
        se.starts_with("error: schema \"nope\" does not exist in database"),
        "{se}"
    );
    assert!(
        se.contains("\nhint: pass the schema that holds the service's tables"),
        "{se}"
    );
}

#[test]
fn a_role_without_a_schema_is_bad_usage() {
    let out = audit("postgresql://u@h/d", &["--role", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--schema"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_database_points_at_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let out = audit(
        &format!(
            "postgresql://u:Secret-Pw-9@/d?host={}",
            dir.path().display()
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let se = stderr(&out);
    assert!(
        se.starts_with("error: cannot connect to postgresql://u:***@/d?host="),
        "{se}"
    );
    assert!(
        se.ends_with("hint: run pgkit doctor to find out why, step by step\n"),
        "{se}"
    );
    assert!(!se.contains("Secret-Pw-9"), "{se}");
}
