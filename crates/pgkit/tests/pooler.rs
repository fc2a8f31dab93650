//! `DB_POOLER=transaction` through a real PgBouncer in transaction mode
//! (issue 11): the pool works there with unnamed statements and no start-up
//! options, the same setup without the mode fails, start-up refuses a role
//! without the session defaults, and a pooler is told apart from a direct
//! connection from outside.

use std::collections::HashSet;
use std::time::Duration;

use pgkit::connect::SessionParams;
use pgkit::doctor::{diagnose, Diagnosis, DoctorInput, Outcome};
use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::pooler::{detect, Detected};
use pgkit::repo::Within;
use pgkit::secret::Secret;
use pgkit::settings::{DbSettings, Env};
use pgkit::testing::{self, pgbouncer::PgBouncer};
use tokio_postgres::NoTls;

fn settings(url: &str, extra: &[(&str, &str)]) -> DbSettings {
    let mut pairs = vec![
        ("DATABASE_URL", url),
        ("APP_ENVIRONMENT", "test"),
        ("DB_POOL_MIN_SIZE", "2"),
        ("DB_POOL_MAX_SIZE", "6"),
        ("DB_CONNECT_RETRY", "1"),
    ];
    pairs.extend_from_slice(extra);
    DbSettings::from_env(&Env::from_pairs(pairs), "DATABASE_URL", "pgkit-pooler").unwrap()
}

async fn connect(config: tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// What `pgkit provision` would set on the role, set on the database here
/// (the test runs as the superuser, whose role settings other tests share).
async fn set_session_defaults(direct_url: &str, db: &str, s: &DbSettings) {
    let admin = connect(pgkit::dsn::Dsn::parse(direct_url).unwrap().pg_config()).await;
    let db = postgres_protocol::escape::escape_identifier(db);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET statement_timeout = '{}ms'; \
             ALTER DATABASE {db} SET idle_in_transaction_session_timeout = '{}ms'; \
             ALTER DATABASE {db} SET app.environment = 'test';",
            s.query_timeout.as_millis(),
            s.idle_in_transaction_timeout.as_millis()
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_pool_works_through_pgbouncer_in_transaction_mode() {
    let cluster = testing::cluster().await;
    let test_db = cluster.database().await;
    let bouncer = PgBouncer::start(cluster.socket_dir(), 2).await;
    let s = settings(
        &bouncer.url(test_db.name()),
        &[("DB_POOLER", "transaction")],
    );
    set_session_defaults(test_db.url(), test_db.name(), &s).await;
    let db = Database::new(s).unwrap();
    db.warm_up().await.unwrap();

    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)", &[])
        .await
        .unwrap();
    // Another client holds a transaction open every other round, so the
    // pool's calls move between the two server connections.
    let other = connect(bouncer.config(test_db.name())).await;
    let mut pids = HashSet::new();
    for i in 0..40i32 {
        let hold = if i % 2 == 0 {
            "BEGIN; SELECT 1"
        } else {
            "COMMIT"
        };
        other.batch_execute(hold).await.unwrap();
        // The same query text again and again: a named statement cached on
        // one client connection would be missing on the next server.
        db.execute(
            "INSERT INTO notes VALUES ($1, $2)",
            &[&i, &format!("note {i}")],
        )
        .await
        .unwrap();
        let pid: i32 = db.fetch_val("SELECT pg_backend_pid()", &[]).await.unwrap();
        pids.insert(pid);
    }
    let body: Option<tokio_postgres::Row> = db
        .fetch_optional("SELECT body FROM notes WHERE id = $1", &[&7i32])
        .await
        .unwrap();
    assert_eq!(body.unwrap().get::<_, String>(0), "note 7");
    // A byte-capped read goes out unnamed as well: the first rows, in
    // order, up to the one that reaches 100 bytes, and the rest cut.
    let page: Within<tokio_postgres::Row> = db
        .fetch_within(
            "SELECT id, body FROM notes WHERE id < $1 ORDER BY id",
            &[&10i32],
            100,
        )
        .await
        .unwrap();
    let ids: Vec<i32> = page.rows.iter().map(|r| r.get(0)).collect();
    let bytes: usize = page.rows.iter().map(|r| r.raw_size_bytes()).sum();
    assert!(
        page.cut && bytes >= 100 && ids.len() < 10,
        "{ids:?}, {bytes} bytes"
    );
    assert_eq!(ids, (0..ids.len() as i32).collect::<Vec<_>>());

    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.execute(
        "UPDATE notes SET body = $1 WHERE id = $2",
        &[&"changed", &1i32],
    )
    .await
    .unwrap();
    let seen: String = tx
        .fetch_val("SELECT body FROM notes WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(
        seen, "changed",
        "a transaction's statements share one server"
    );
    tx.commit().await.unwrap();
    drop(conn);

    let environment: String = db
        .fetch_val("SELECT current_setting('app.environment')", &[])
        .await
        .unwrap();
    assert_eq!(
        environment, "test",
        "test-data gating reads app.environment"
    );
    let count: i64 = db
        .fetch_val("SELECT count(*) FROM notes", &[])
        .await
        .unwrap();
    assert_eq!(count, 40);

    // Concurrent callers through two server connections.
    let calls = (0..30i32).map(|i| {
        let db = db.clone();
        async move {
            db.fetch_val::<String>("SELECT body FROM notes WHERE id = $1", &[&i])
                .await
        }
    });
    for answer in futures_util::future::join_all(calls).await {
        answer.unwrap();
    }
    let wrong_count = db.execute("SELECT $1::int", &[]).await;
    assert!(
        matches!(wrong_count, Err(DbError::Query(_))),
        "{wrong_count:?}"
    );
    assert_eq!(db.breaker().failures(), 0);
    assert!(
        pids.len() > 1,
        "the calls never moved to another server: {pids:?}"
    );
}

#[tokio::test]
async fn without_the_mode_the_same_setup_fails() {
    let cluster = testing::cluster().await;
    let test_db = cluster.database().await;
    let bouncer = PgBouncer::start(cluster.socket_dir(), 2).await;
    let s = settings(&bouncer.url(test_db.name()), &[]);
    set_session_defaults(test_db.url(), test_db.name(), &s).await;
    let db = Database::new(s).unwrap();
    let outcome = db.warm_up().await;
    let Err(DbError::Unavailable { reason, .. }) = outcome else {
        panic!("a session-mode pool through PgBouncer started: {outcome:?}");
    };
    assert!(reason.contains("options"), "{reason}");
}

#[tokio::test]
async fn start_up_refuses_a_role_without_the_session_defaults() {
    let cluster = testing::cluster().await;
    let test_db = cluster.database().await;
    let bouncer = PgBouncer::start(cluster.socket_dir(), 2).await;
    let db = Database::new(settings(
        &bouncer.url(test_db.name()),
        &[("DB_POOLER", "transaction"), ("DB_QUERY_TIMEOUT", "7")],
    ))
    .unwrap();
    let outcome = db.warm_up().await;
    let Err(DbError::Misconfigured(message)) = outcome else {
        panic!("started without statement_timeout: {outcome:?}");
    };
    assert!(
        message.contains("statement_timeout is 0 ms, not 7000 ms (DB_QUERY_TIMEOUT)"),
        "{message}"
    );
    assert!(
        message.contains("app.environment is unset, not test"),
        "{message}"
    );
    assert!(
        message.contains("ALTER ROLE \"postgres\" SET statement_timeout = '7000ms';"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[tokio::test]
async fn a_transaction_pooler_is_detected_from_outside() {
    let cluster = testing::cluster().await;
    let test_db = cluster.database().await;
    let direct = pgkit::dsn::Dsn::parse(test_db.url()).unwrap().pg_config();
    let a = connect(direct.clone()).await;
    let others = vec![connect(direct.clone()).await, connect(direct).await];
    assert_eq!(
        detect(&a, &others, Duration::from_secs(2)).await.unwrap(),
        Detected::Direct
    );

    for pool_size in [1, 3] {
        let bouncer = PgBouncer::start(cluster.socket_dir(), pool_size).await;
        let config = bouncer.config(test_db.name());
        let a = connect(config.clone()).await;
        let others = vec![connect(config.clone()).await, connect(config).await];
        assert_eq!(
            detect(&a, &others, Duration::from_secs(2)).await.unwrap(),
            Detected::TransactionPooler,
            "server pool of {pool_size}"
        );
    }
}

fn doctor_input(url: &str, pooler: &str) -> DoctorInput {
    let s = settings(url, &[("DB_POOLER", pooler)]);
    DoctorInput {
        dsn: Secret::new(url),
        session: SessionParams::from_settings(&s),
        pool_max_size: s.pool_max_size,
        instances: None,
        schema: None,
        token_source: None,
    }
}

/// The step that failed, with its problem and fix.
fn failed(d: &Diagnosis) -> (&'static str, String, String) {
    let step = d
        .failure()
        .unwrap_or_else(|| panic!("no failure:\n{}", d.to_text()));
    match &step.outcome {
        Outcome::Fail { problem, fix } => (step.name.as_str(), problem.clone(), fix.clone()),
        Outcome::Ok(_) => unreachable!("failure() returns a failed step"),
    }
}

#[tokio::test]
async fn doctor_says_which_mode_to_set() {
    let cluster = testing::cluster().await;
    let test_db = cluster.database().await;
    let bouncer = PgBouncer::start(cluster.socket_dir(), 2).await;
    let through = bouncer.url(test_db.name());

    // Direct mode through PgBouncer: refused at login, and told why.
    let d = diagnose(&doctor_input(&through, "none"), &mut |_| {}).await;
    let (step, _, fix) = failed(&d);
    assert_eq!(step, "authentication");
    assert!(fix.contains("set DB_POOLER=transaction"), "{fix}");

    // The mode without the role's defaults: the fix is the SQL.
    let d = diagnose(&doctor_input(&through, "transaction"), &mut |_| {}).await;
    let (step, problem, fix) = failed(&d);
    assert_eq!(step, "pooler");
    assert!(problem.contains("statement_timeout is 0 ms"), "{problem}");
    assert!(
        fix.contains("ALTER ROLE \"postgres\" SET statement_timeout"),
        "{fix}"
    );

    // With them (set before PgBouncer opens its server sessions, which
    // take the defaults when they start), the pooler step passes.
    let provisioned = cluster.database().await;
    let through = bouncer.url(provisioned.name());
    let s = settings(&through, &[("DB_POOLER", "transaction")]);
    set_session_defaults(provisioned.url(), provisioned.name(), &s).await;
    let d = diagnose(&doctor_input(&through, "transaction"), &mut |_| {}).await;
    let pooler = d
        .steps()
        .iter()
        .find(|s| s.name.as_str() == "pooler")
        .unwrap();
    assert!(matches!(pooler.outcome, Outcome::Ok(_)), "{}", d.to_text());

    // The mode on a direct connection: told to unset it.
    let d = diagnose(&doctor_input(test_db.url(), "transaction"), &mut |_| {}).await;
    let (step, _, fix) = failed(&d);
    assert_eq!(step, "pooler");
    assert!(fix.contains("unset DB_POOLER"), "{fix}");
}

#[tokio::test]
async fn provision_writes_the_session_defaults_start_up_checks() {
    use pgkit::provision::{Login, Plan, ProvisionRequest};
    let test_db = testing::cluster().await.database().await;
    let role = format!("svc_{}", test_db.name());
    let url_as_role = test_db.url().replacen(
        "postgresql://postgres@",
        &format!("postgresql://{role}@"),
        1,
    );
    let s = settings(
        &url_as_role,
        &[("DB_POOLER", "transaction"), ("DB_QUERY_TIMEOUT", "9")],
    );
    let request = ProvisionRequest {
        schema: "svc".into(),
        role: role.clone(),
        login: Login::Password(Secret::new("a-long-enough-password")),
        owner: None,
    };
    let admin = connect(pgkit::dsn::Dsn::parse(test_db.url()).unwrap().pg_config()).await;
    // Without the defaults the service refuses to start...
    Plan::new(&request).unwrap().apply(&admin).await.unwrap();
    let refused = Database::new(s.clone()).unwrap().warm_up().await;
    assert!(
        matches!(refused, Err(DbError::Misconfigured(_))),
        "{refused:?}"
    );
    // ...and with them, written by provision, it starts.
    let params = SessionParams::from_settings(&s);
    Plan::new(&request)
        .unwrap()
        .with_session_defaults(&params)
        .apply(&admin)
        .await
        .unwrap();
    let db = Database::new(s).unwrap();
    db.warm_up().await.unwrap();
    let timeout: String = db.fetch_val("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(timeout, "9s");
    admin
        .batch_execute(&format!(
            "ALTER ROLE {0} RESET ALL",
            postgres_protocol::escape::escape_identifier(&role)
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn pgbouncers_own_errors_are_unavailable_not_query_errors() {
    let cluster = testing::cluster().await;
    let test_db = cluster.database().await;
    let bouncer = PgBouncer::start(cluster.socket_dir(), 1).await;
    let s = settings(
        &bouncer.url(test_db.name()),
        &[("DB_POOLER", "transaction"), ("DB_POOL_MIN_SIZE", "1")],
    );
    set_session_defaults(test_db.url(), test_db.name(), &s).await;
    let db = Database::new(s).unwrap();
    db.warm_up().await.unwrap();
    // Another client holds the only server connection.
    let holder = connect(bouncer.config(test_db.name())).await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let outcome = db.fetch_val::<i32>("SELECT 1", &[]).await;
    let Err(DbError::Unavailable { reason, .. }) = outcome else {
        panic!("PgBouncer's query_wait_timeout: {outcome:?}");
    };
    assert!(reason.contains("query_wait_timeout"), "{reason}");
    holder.batch_execute("COMMIT").await.unwrap();
    let one: i32 = db.fetch_val("SELECT 1", &[]).await.unwrap();
    assert_eq!(one, 1);
}

/// PgBouncer's own refusals are the database being unavailable for now (a
/// 503 with `Retry-After` in a service), never a query error (a 500).
#[tokio::test]
async fn pgbouncers_own_refusals_are_unavailable() {
    let cluster = testing::cluster().await;
    let test_db = cluster.database().await;
    let bouncer = PgBouncer::start_with(cluster.socket_dir(), 2, &[("max_client_conn", "2")]).await;

    // `no more connections allowed (max_client_conn)`.
    let s = settings(
        &bouncer.url(test_db.name()),
        &[("DB_POOLER", "transaction"), ("DB_POOL_MIN_SIZE", "0")],
    );
    set_session_defaults(test_db.url(), test_db.name(), &s).await;
    let db = Database::new(s).unwrap();
    let held: Vec<_> = futures_util::future::join_all((0..3).map(|_| db.acquire())).await;
    let refused: Vec<&DbError> = held.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!refused.is_empty(), "a third client connection is refused");
    for e in &refused {
        assert!(
            matches!(e, DbError::Unavailable { .. }),
            "max_client_conn refusal: {e:?}"
        );
        assert!(e.retry_after().is_some());
    }
    drop(held);

    // A server login that fails (here: no such database on the server).
    let s = settings(
        &bouncer.url("no_such_database_here"),
        &[("DB_POOLER", "transaction"), ("DB_POOL_MIN_SIZE", "0")],
    );
    let db = Database::new(s).unwrap();
    let err = db.fetch_val::<i32>("SELECT 1", &[]).await.unwrap_err();
    assert!(
        matches!(err, DbError::Unavailable { .. }),
        "server login failure: {err:?}"
    );
}
