//! The pool, breaker and readiness against a real PostgreSQL (issue 2's
//! acceptance): min idle, cap, acquire timeout, server-side statement
//! timeout, outage and recovery, session settings, secrets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgkit::breaker::BreakerState;
use pgkit::error::DbError;
use pgkit::health::readiness;
use pgkit::local::{LocalCluster, LocalOptions};
use pgkit::pool::Database;
use pgkit::settings::{DbSettings, Env};
use pgkit::testing;
use pgkit::testing::check::eventually;

fn settings(url: &str, extra: &[(&str, &str)]) -> DbSettings {
    let mut pairs = vec![("DATABASE_URL", url)];
    pairs.extend_from_slice(extra);
    DbSettings::from_env(&Env::from_pairs(pairs), "DATABASE_URL", "pgkit-test").unwrap()
}

/// A plain connection outside the pool, to hold locks and look around.
async fn admin(url: &str) -> tokio_postgres::Client {
    testing::check::connect(url).await.unwrap()
}

async fn sessions(admin: &tokio_postgres::Client, app: &str, state: Option<&str>) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND ($2::text IS NULL OR state = $2)",
            &[&app, &state],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_socket_directory_named_like_a_cloud_sql_instance_is_reached() {
    let root = tempfile::Builder::new()
        .prefix("pgkit-cloudsql")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dir = root.path().join("my-proj:europe-west1:main");
    let cluster = LocalCluster::start(LocalOptions::new(&dir)).await.unwrap();
    let url = format!(
        "postgresql://postgres@/postgres?host={}",
        cluster.socket_dir().display()
    );
    let s = settings(&url, &[("DB_POOL_MIN_SIZE", "1")]);
    let dsn = s.dsn.clone().unwrap();
    assert!(dsn
        .socket_file()
        .unwrap()
        .ends_with("my-proj:europe-west1:main/.s.PGSQL.5432"));
    assert!(dsn.socket_file().unwrap().exists());
    let db = Database::new(s).unwrap();
    let one: i32 = db.fetch_val("SELECT 1", &[]).await.unwrap();
    assert_eq!(one, 1);
    db.close(Duration::from_secs(1)).await;
    cluster.stop().await.unwrap();
}

#[tokio::test]
async fn start_up_opens_the_minimum_with_the_application_name() {
    let test_db = testing::cluster().await.database().await;
    let app = "pgkit-min-idle";
    let db = Database::new(settings(
        test_db.url(),
        &[
            ("DB_POOL_MIN_SIZE", "3"),
            ("DB_POOL_MAX_SIZE", "6"),
            ("K_REVISION", ""),
        ],
    ))
    .unwrap();
    let mut s = db.settings().clone();
    s.application_name = app.into();
    let db = Database::new(s).unwrap();
    db.warm_up().await.unwrap();
    let admin = admin(test_db.url()).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            sessions(&admin, app, Some("idle")).await == 3
        })
        .await,
        "expected 3 idle sessions named {app}, saw {}",
        sessions(&admin, app, None).await
    );
    assert_eq!(db.status().idle, 3);
    db.close(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn fifty_concurrent_holders_never_exceed_the_cap() {
    let test_db = testing::cluster().await.database().await;
    let mut s = settings(
        test_db.url(),
        &[("DB_POOL_MIN_SIZE", "1"), ("DB_POOL_MAX_SIZE", "4")],
    );
    s.application_name = "pgkit-cap".into();
    let db = Database::new(s).unwrap();
    db.warm_up().await.unwrap();
    let peak = Arc::new(AtomicUsize::new(0));
    let holders: Vec<_> = (0..50)
        .map(|_| {
            let db = db.clone();
            let peak = peak.clone();
            tokio::spawn(async move {
                let mut conn = db.acquire().await.unwrap();
                peak.fetch_max(db.status().size, Ordering::Relaxed);
                let _: i32 = conn
                    .fetch_val("SELECT 1 FROM pg_sleep(0.01)", &[])
                    .await
                    .unwrap();
            })
        })
        .collect();
    let admin = admin(test_db.url()).await;
    let mut server_peak = 0;
    while !holders.iter().all(|h| h.is_finished()) {
        server_peak = server_peak.max(sessions(&admin, "pgkit-cap", None).await);
    }
    for h in holders {
        h.await.unwrap();
    }
    assert!(
        peak.load(Ordering::Relaxed) <= 4,
        "pool grew to {}",
        peak.load(Ordering::Relaxed)
    );
    assert!(server_peak <= 4, "server saw {server_peak} sessions");
    assert_eq!(db.status().max_size, 4);
}

#[tokio::test]
async fn a_full_pool_fails_with_pool_exhausted_after_the_timeout() {
    let test_db = testing::cluster().await.database().await;
    let db = Database::new(settings(
        test_db.url(),
        &[
            ("DB_POOL_MIN_SIZE", "1"),
            ("DB_POOL_MAX_SIZE", "1"),
            ("DB_POOL_TIMEOUT", "1"),
        ],
    ))
    .unwrap();
    let _held = db.acquire().await.unwrap();
    let started = Instant::now();
    let err = match db.acquire().await {
        Ok(_) => panic!("a second connection was handed out past the cap"),
        Err(e) => e,
    };
    let waited = started.elapsed();
    assert!(
        matches!(&err, DbError::Unavailable { reason, .. } if reason.contains("pool exhausted")),
        "{err}"
    );
    assert!(err.retry_after().is_some());
    assert!(
        waited >= Duration::from_millis(800) && waited <= Duration::from_millis(1200),
        "waited {waited:?}"
    );
    assert_eq!(
        db.breaker().state(),
        BreakerState::Closed,
        "busy connections are not an outage"
    );
}

#[tokio::test]
async fn statement_timeout_is_enforced_by_the_server() {
    let test_db = testing::cluster().await.database().await;
    let mut s = settings(
        test_db.url(),
        &[("DB_QUERY_TIMEOUT", "1"), ("DB_POOL_MIN_SIZE", "1")],
    );
    s.application_name = "pgkit-stmt-timeout".into();
    let db = Database::new(s).unwrap();
    let mut conn = db.acquire().await.unwrap();
    let started = Instant::now();
    let err = conn.execute("SELECT pg_sleep(5)", &[]).await.unwrap_err();
    assert!(matches!(err, DbError::Timeout), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let admin = admin(test_db.url()).await;
    let running: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgkit-stmt-timeout' AND state = 'active' AND query LIKE '%pg_sleep%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0, "the server must have stopped the query");
    let one: i32 = conn.fetch_val("SELECT 1", &[]).await.unwrap();
    assert_eq!(one, 1, "the connection is reusable");
    assert_eq!(
        db.breaker().failures(),
        0,
        "a query's timeout is not a connection failure"
    );
}

#[tokio::test]
async fn every_connection_carries_app_environment() {
    let test_db = testing::cluster().await.database().await;
    let db = Database::new(settings(test_db.url(), &[("APP_ENVIRONMENT", "staging")])).unwrap();
    let env: String = db
        .fetch_val("SELECT current_setting('app.environment')", &[])
        .await
        .unwrap();
    assert_eq!(env, "staging");
    let timeout: String = db.fetch_val("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(timeout, "1min");
    let idle: String = db
        .fetch_val("SHOW idle_in_transaction_session_timeout", &[])
        .await
        .unwrap();
    assert_eq!(idle, "1min");
}

#[tokio::test]
async fn the_breaker_opens_on_an_outage_and_closes_after_recovery() {
    let cluster = testing::dedicated_cluster().await;
    let url = cluster.url("postgres");
    let db = Database::new(settings(
        &url,
        &[
            ("DB_POOL_MIN_SIZE", "2"),
            ("DB_POOL_MAX_SIZE", "4"),
            ("DB_BREAKER_THRESHOLD", "3"),
            ("DB_BREAKER_RESET", "1"),
            ("DB_CONNECT_TIMEOUT", "2"),
        ],
    ))
    .unwrap();
    db.warm_up().await.unwrap();
    assert!(readiness(&db).await.is_ready());

    cluster.stop().await.unwrap();
    for _ in 0..3 {
        let err = db.fetch_val::<i32>("SELECT 1", &[]).await.unwrap_err();
        assert!(matches!(err, DbError::Unavailable { .. }), "{err:?}");
    }
    assert_eq!(db.breaker().state(), BreakerState::Open);
    let started = Instant::now();
    let err = db.fetch_val::<i32>("SELECT 1", &[]).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(10),
        "open breaker took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, DbError::Unavailable { reason, .. } if reason.contains("circuit breaker open"))
    );
    let ready = readiness(&db).await;
    assert!(!ready.is_ready());
    assert_eq!(ready.checks.database_details.circuit_breaker, "open");

    cluster.start().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            db.breaker().state() == BreakerState::HalfOpen
        })
        .await,
        "breaker never half-opened"
    );
    let one: i32 = db.fetch_val("SELECT 1", &[]).await.unwrap();
    assert_eq!(one, 1);
    assert_eq!(db.breaker().state(), BreakerState::Closed);
    assert!(readiness(&db).await.is_ready());
    // No connection broken by the restart is ever handed out.
    for _ in 0..20 {
        let one: i32 = db.fetch_val("SELECT 1", &[]).await.unwrap();
        assert_eq!(one, 1);
    }
    let t = db.breaker().transitions();
    assert_eq!((t.opened, t.half_opened, t.closed), (1, 1, 1));
}

#[tokio::test]
async fn a_distinctive_password_is_never_shown() {
    const PW: &str = "Zq9-Distinctive-Pw-x7";
    let test_db = testing::cluster().await.database().await;
    // Trust auth on the socket ignores the password, so this one connects.
    let good = test_db
        .url()
        .replacen("postgres@", &format!("postgres:{PW}@"), 1);
    let s = settings(&good, &[]);
    let db = Database::new(s.clone()).unwrap();
    let ready = readiness(&db).await;
    let bad = format!("postgresql://postgres:{PW}@/nodb?host=/nonexistent/pgkit-dir");
    let bad_db = Database::new(settings(
        &bad,
        &[("DB_POOL_TIMEOUT", "0.5"), ("DB_CONNECT_TIMEOUT", "0.5")],
    ))
    .unwrap();
    let err = bad_db.fetch_val::<i32>("SELECT 1", &[]).await.unwrap_err();
    let not_ready = readiness(&bad_db).await;
    let bad_setting = DbSettings::from_env(
        &Env::from_pairs([(
            "DATABASE_URL",
            format!("postgresql://u:{PW}@h/d?sslmode=often"),
        )]),
        "DATABASE_URL",
        "x",
    )
    .unwrap_err();
    let shown = [
        format!("{s:?}"),
        format!("{db:?}"),
        format!("{err} {err:?}"),
        serde_json::to_string(&ready).unwrap(),
        serde_json::to_string(&not_ready).unwrap(),
        format!("{bad_setting} {bad_setting:?}"),
    ];
    for text in shown {
        assert!(!text.contains(PW), "password leaked in: {text}");
    }
    assert!(ready.is_ready());
    assert!(!not_ready.is_ready());
    assert!(not_ready.checks.database.starts_with("error: "));
}

#[tokio::test]
async fn concurrent_readiness_probes_share_one_check() {
    let test_db = testing::cluster().await.database().await;
    let db = Database::new(settings(
        test_db.url(),
        &[("DB_POOL_MIN_SIZE", "1"), ("DB_POOL_MAX_SIZE", "10")],
    ))
    .unwrap();
    db.warm_up().await.unwrap();
    let probes: Vec<_> = (0..50)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { readiness(&db).await.is_ready() })
        })
        .collect();
    for p in probes {
        assert!(p.await.unwrap());
    }
    // One check at a time needs one connection; a query per probe would have opened up to 10.
    assert_eq!(db.status().size, 1, "{:?}", db.status());
    // Answers are not kept: after an outage starts, the next probe sees it.
    drop(test_db);
    assert!(
        eventually(Duration::from_secs(5), || async {
            !readiness(&db).await.is_ready()
        })
        .await
    );
}

/// Log lines written while it lives, for tests that check what start-up says.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn start_up_warns_when_every_instances_pool_would_not_fit() {
    let test_db = testing::cluster().await.database().await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let text = || String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();

    // The harness's shared server has max_connections 300 (3 reserved):
    // 19 × 15 fits, 20 × 15 does not.
    let fits = Database::new(settings(
        test_db.url(),
        &[("MAX_INSTANCES", "19"), ("DB_POOL_MIN_SIZE", "1")],
    ))
    .unwrap();
    fits.warm_up().await.unwrap();
    assert!(!text().contains("connection budget"), "{}", text());

    let over = Database::new(settings(
        test_db.url(),
        &[("MAX_INSTANCES", "20"), ("DB_POOL_MIN_SIZE", "1")],
    ))
    .unwrap();
    over.warm_up().await.unwrap();
    let logged = text();
    assert!(
        logged.contains("WARN") && logged.contains("connection budget: MAX_INSTANCES × DB_POOL_MAX_SIZE = 300 is more than the 297 connections"),
        "{logged}"
    );
}
