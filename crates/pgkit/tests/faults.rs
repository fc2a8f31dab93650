//! The pool under faults (issue 10): callers that give up mid-call, a
//! server that stops answering, a restart with calls in flight, driver
//! errors that are bugs rather than outages, and a live migration that
//! changes a column's type under cached statements. Outcomes are decided by
//! locks and signals; every wait is a condition with a bound.

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use pgkit::breaker::BreakerState;
use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::settings::{DbSettings, Env};
use pgkit::testing;
use pgkit::testing::check::eventually;

fn settings(url: &str, extra: &[(&str, &str)]) -> DbSettings {
    let mut pairs = vec![("DATABASE_URL", url)];
    pairs.extend_from_slice(extra);
    DbSettings::from_env(&Env::from_pairs(pairs), "DATABASE_URL", "pgkit-faults").unwrap()
}

/// A plain connection outside the pool, to hold locks and look around.
async fn admin(url: &str) -> tokio_postgres::Client {
    testing::check::connect(url).await.unwrap()
}

/// Sessions of the pool that wait on a lock right now.
async fn waiting_on_a_lock(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'pgkit-faults' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Whether, within `bound`, no session of the pool waits on a lock any
/// more: an abandoned statement was cancelled on the server.
async fn none_waits_within(admin: &tokio_postgres::Client, bound: Duration) -> bool {
    eventually(bound, || async { waiting_on_a_lock(admin).await == 0 }).await
}

#[tokio::test]
async fn a_caller_that_gives_up_mid_statement_does_not_delay_the_next() {
    let test_db = testing::cluster().await.database().await;
    let admin = admin(test_db.url()).await;
    admin
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);")
        .await
        .unwrap();
    // One connection and a long statement timeout: before the fix the next
    // caller queued behind the abandoned UPDATE for as long as the lock held.
    let db = Database::new(settings(
        test_db.url(),
        &[
            ("DB_POOL_MIN_SIZE", "1"),
            ("DB_POOL_MAX_SIZE", "1"),
            ("DB_QUERY_TIMEOUT", "60"),
            ("DB_POOL_TIMEOUT", "10"),
        ],
    ))
    .unwrap();
    db.warm_up().await.unwrap();

    admin
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let blocked = {
        let db = db.clone();
        tokio::spawn(async move { db.execute("UPDATE t SET v = v + 1 WHERE id = 1", &[]).await })
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            waiting_on_a_lock(&admin).await == 1
        })
        .await,
        "the UPDATE never started waiting on the lock"
    );
    blocked.abort(); // the client hung up
    let _ = blocked.await;

    let started = Instant::now();
    let one: i32 = tokio::time::timeout(Duration::from_secs(5), db.fetch_val("SELECT 1", &[]))
        .await
        .expect("the next caller waited behind the abandoned statement")
        .unwrap();
    assert_eq!(one, 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        none_waits_within(&admin, Duration::from_secs(10)).await,
        "the abandoned UPDATE still runs on the server: no cancel request was sent"
    );
    admin.batch_execute("COMMIT").await.unwrap();
    let v: i32 = admin
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        v, 0,
        "the cancelled UPDATE must not have run after the lock went"
    );
}

#[tokio::test]
async fn a_caller_dropped_while_awaiting_begin_loses_nobody_elses_write() {
    let test_db = testing::cluster().await.database().await;
    let admin = admin(test_db.url()).await;
    admin
        .batch_execute("CREATE TABLE notes (body text)")
        .await
        .unwrap();
    let db = Database::new(settings(
        test_db.url(),
        &[("DB_POOL_MIN_SIZE", "1"), ("DB_POOL_MAX_SIZE", "1")],
    ))
    .unwrap();
    db.warm_up().await.unwrap();

    let mut conn = db.acquire().await.unwrap();
    // One poll sends BEGIN; dropping the future then abandons the reply.
    assert!(
        conn.begin().now_or_never().is_none(),
        "BEGIN answered before its first poll ended"
    );
    drop(conn);

    // The next caller on the pool of one writes without a transaction.
    db.execute("INSERT INTO notes VALUES ('acknowledged')", &[])
        .await
        .unwrap();
    let seen: i64 = admin
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, 1,
        "the write rode in an abandoned transaction and is not committed"
    );
}

#[tokio::test]
async fn a_frozen_server_gets_a_503_within_the_call_bound_and_service_recovers() {
    let cluster = testing::dedicated_cluster().await;
    let test_db = cluster.database().await;
    let db = Database::new(settings(
        test_db.url(),
        &[
            ("DB_POOL_MIN_SIZE", "2"),
            ("DB_POOL_MAX_SIZE", "4"),
            ("DB_QUERY_TIMEOUT", "1"),
            ("DB_POOL_TIMEOUT", "2"),
            ("DB_CONNECT_TIMEOUT", "1"),
            ("DB_BREAKER_THRESHOLD", "100"),
        ],
    ))
    .unwrap();
    db.warm_up().await.unwrap();
    let bound = Duration::from_secs(1) + pgkit::connect::ANSWER_MARGIN;

    let frozen = cluster.freeze().unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            db.fetch_val::<i32>("SELECT 1", &[]),
        )
        .await
        .expect("a call to a frozen server was not bounded");
        let took = started.elapsed();
        assert!(
            matches!(outcome, Err(DbError::Unavailable { .. })),
            "frozen server: {outcome:?}"
        );
        // A call on an idle connection waits the call bound; one that must
        // open a connection waits at most the pool timeout.
        assert!(
            took < Duration::from_secs(2) + bound,
            "a call to a frozen server took {took:?}"
        );
    }
    drop(frozen);

    assert!(
        eventually(Duration::from_secs(15), || async {
            db.fetch_val::<i32>("SELECT 1", &[]).await.is_ok()
        })
        .await,
        "no recovery after the server thawed"
    );
}

#[tokio::test]
async fn a_restart_with_calls_in_flight_counts_one_failure() {
    let cluster = testing::dedicated_cluster().await;
    let test_db = cluster.database().await;
    let url = test_db.url().to_string();
    let db = Database::new(settings(
        &url,
        &[
            ("DB_POOL_MIN_SIZE", "1"),
            ("DB_POOL_MAX_SIZE", "8"),
            ("DB_BREAKER_THRESHOLD", "3"),
            ("DB_BREAKER_RESET", "60"),
        ],
    ))
    .unwrap();
    db.warm_up().await.unwrap();
    let watcher = admin(&url).await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.execute("SELECT pg_sleep(30)", &[]).await })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let n: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            n == 8
        })
        .await,
        "the eight calls never all ran"
    );
    drop(watcher);
    cluster.stop().await.unwrap();
    for call in calls {
        let outcome = call.await.unwrap();
        assert!(
            matches!(outcome, Err(DbError::Unavailable { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(
        db.breaker().failures(),
        1,
        "eight casualties of one restart"
    );
    assert_eq!(db.breaker().state(), BreakerState::Closed);

    cluster.start().await.unwrap();
    let one: i32 = db.fetch_val("SELECT 1", &[]).await.unwrap();
    assert_eq!(one, 1, "the first call after the restart is served");
    assert_eq!(db.breaker().failures(), 0);
}

#[tokio::test]
async fn driver_errors_that_are_bugs_leave_the_pool_and_breaker_alone() {
    let test_db = testing::cluster().await.database().await;
    let db = Database::new(settings(
        test_db.url(),
        &[
            ("DB_POOL_MIN_SIZE", "1"),
            ("DB_POOL_MAX_SIZE", "1"),
            ("DB_BREAKER_THRESHOLD", "1"),
        ],
    ))
    .unwrap();
    db.warm_up().await.unwrap();
    let pid: i32 = db.fetch_val("SELECT pg_backend_pid()", &[]).await.unwrap();

    let two_rows = db
        .fetch_optional::<tokio_postgres::Row>("SELECT * FROM generate_series(1, 2)", &[])
        .await;
    assert!(matches!(two_rows, Err(DbError::Query(_))), "{two_rows:?}");
    let wrong_count = db.execute("SELECT $1::int", &[]).await;
    assert!(
        matches!(wrong_count, Err(DbError::Query(_))),
        "{wrong_count:?}"
    );

    assert_eq!(db.breaker().failures(), 0);
    assert_eq!(db.breaker().state(), BreakerState::Closed);
    let same: i32 = db.fetch_val("SELECT pg_backend_pid()", &[]).await.unwrap();
    assert_eq!(same, pid, "the connection was discarded for a caller's bug");
}

#[tokio::test]
async fn a_column_type_changed_by_a_live_migration_does_not_break_cached_statements() {
    let test_db = testing::cluster().await.database().await;
    let admin = admin(test_db.url()).await;
    admin
        .batch_execute(
            "CREATE TABLE items (id int, name varchar(10)); INSERT INTO items VALUES (1, 'a');",
        )
        .await
        .unwrap();
    let db = Database::new(settings(
        test_db.url(),
        &[("DB_POOL_MIN_SIZE", "1"), ("DB_POOL_MAX_SIZE", "1")],
    ))
    .unwrap();
    db.warm_up().await.unwrap();
    const READ: &str = "SELECT * FROM items WHERE id = $1";
    let before: Vec<tokio_postgres::Row> = db.fetch_all(READ, &[&1i32]).await.unwrap();
    assert_eq!(before.len(), 1);

    admin
        .batch_execute("ALTER TABLE items ALTER COLUMN name TYPE text")
        .await
        .unwrap();
    let after: Vec<tokio_postgres::Row> = db.fetch_all(READ, &[&1i32]).await.unwrap();
    let name: String = after[0].get("name");
    assert_eq!(name, "a");
    assert_eq!(db.breaker().failures(), 0);
}

#[tokio::test]
async fn a_server_out_of_connection_slots_is_a_503_not_an_outage() {
    let test_db = testing::cluster().await.database().await;
    let admin = admin(test_db.url()).await;
    let role = format!("limited_{}", test_db.name());
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 2"))
        .await
        .unwrap();
    let url = test_db.url().replacen(
        "postgresql://postgres@",
        &format!("postgresql://{role}@"),
        1,
    );
    let db = Database::new(settings(
        &url,
        &[
            ("DB_POOL_MIN_SIZE", "0"),
            ("DB_POOL_MAX_SIZE", "6"),
            ("DB_BREAKER_THRESHOLD", "2"),
            ("DB_POOL_TIMEOUT", "2"),
        ],
    ))
    .unwrap();
    let held = [db.acquire().await.unwrap(), db.acquire().await.unwrap()];
    for _ in 0..10 {
        let refused = db.acquire().await.err();
        let Some(DbError::Unavailable {
            reason,
            retry_after,
        }) = refused
        else {
            panic!("a third connection past the role's limit: {refused:?}");
        };
        assert!(
            reason.contains("53300") || reason.contains("too many connections"),
            "{reason}"
        );
        assert!(retry_after >= Duration::from_secs(1));
    }
    assert_eq!(
        db.breaker().state(),
        BreakerState::Closed,
        "full is not down"
    );
    assert_eq!(db.breaker().failures(), 0);
    let attempts: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2);
    drop(held);
    let one: i32 = db.fetch_val("SELECT 1", &[]).await.unwrap();
    assert_eq!(one, 1, "served again once a slot is free");
    drop(db);
    admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .ok();
}

#[tokio::test]
async fn close_waits_for_the_cancel_of_an_abandoned_statement() {
    let test_db = testing::cluster().await.database().await;
    let admin = admin(test_db.url()).await;
    admin
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    admin
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let url = test_db.url().to_owned();
    // A process's last moments: its own runtime, shut down right after close.
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let db = Database::new(settings(
                &url,
                &[("DB_POOL_MIN_SIZE", "1"), ("DB_POOL_MAX_SIZE", "1")],
            ))
            .unwrap();
            db.warm_up().await.unwrap();
            let insert = db.execute("INSERT INTO t VALUES (1)", &[]);
            // Abandoned while it waits on the lock.
            assert!(
                tokio::time::timeout(Duration::from_millis(300), insert)
                    .await
                    .is_err(),
                "the INSERT did not wait on the lock"
            );
            db.close(Duration::from_secs(2)).await;
        });
        drop(rt);
    });
    worker.join().unwrap();
    assert!(
        none_waits_within(&admin, Duration::from_secs(5)).await,
        "the abandoned INSERT still waits: its cancel request died with the runtime"
    );
    admin.batch_execute("COMMIT").await.unwrap();
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}
