//! `DB_READ_DSN` against a real streaming replica (`pg_basebackup -R`,
//! issue 11 §2): a read that must see a position the replica has not
//! replayed goes to the primary, every time; shared reads and reads whose
//! position was replayed are served by the replica; a stopped replica
//! changes no answer and never makes the service not ready.

use std::time::{Duration, Instant};

use pgkit::error::DbError;
use pgkit::health::readiness;
use pgkit::pool::Database;
use pgkit::replica::{Lsn, ReadAfter};
use pgkit::settings::{DbSettings, Env};
use pgkit::testing::{self, replica::Replica, DedicatedCluster, TestDatabase};

const BOUND: Duration = Duration::from_secs(15);

fn settings(primary: &str, replica: &str) -> DbSettings {
    let pairs = [
        ("DATABASE_URL", primary),
        ("DB_READ_DSN", replica),
        ("APP_ENVIRONMENT", "test"),
        ("DB_POOL_MIN_SIZE", "1"),
        ("DB_POOL_MAX_SIZE", "4"),
        ("DB_CONNECT_RETRY", "1"),
        ("DB_CONNECT_TIMEOUT", "2"),
    ];
    DbSettings::from_env(&Env::from_pairs(pairs), "DATABASE_URL", "pgkit-replica").unwrap()
}

/// The server a read ran on, and what it found.
#[derive(Debug, PartialEq)]
struct Seen {
    on_replica: bool,
    notes: i64,
}

async fn count_notes(db: Database) -> Result<Seen, DbError> {
    let row: tokio_postgres::Row = db
        .fetch_one(
            "SELECT pg_is_in_recovery(), (SELECT count(*) FROM notes)",
            &[],
        )
        .await?;
    Ok(Seen {
        on_replica: row.get(0),
        notes: row.get(1),
    })
}

async fn write_note(db: &Database) -> Lsn {
    db.execute("INSERT INTO notes DEFAULT VALUES", &[])
        .await
        .unwrap();
    db.write_position().await.unwrap()
}

/// A primary with a `notes` table, a streaming replica of it, and a pool
/// on both.
async fn primary_and_replica() -> (DedicatedCluster, TestDatabase, Replica, Database) {
    let primary = testing::replicable_cluster().await;
    let test_db = primary.database().await;
    let admin = Database::new(DbSettings::for_dsn(
        pgkit::dsn::Dsn::parse(test_db.url()).unwrap(),
        "admin",
    ))
    .unwrap();
    admin
        .execute("CREATE TABLE notes (id bigserial PRIMARY KEY)", &[])
        .await
        .unwrap();
    let replica = Replica::start(&primary).await;
    let db = Database::new(settings(test_db.url(), &replica.url(test_db.name()))).unwrap();
    db.warm_up().await.unwrap();
    (primary, test_db, replica, db)
}

/// Reads `after` until the replica serves one (each read starts a check of
/// the replica when the last is old), at most [`BOUND`].
async fn until_replica_serves(db: &Database, after: ReadAfter) -> Seen {
    let deadline = Instant::now() + BOUND;
    loop {
        let seen = db.read(after, count_notes).await.unwrap();
        if seen.on_replica {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the replica served no read within {BOUND:?}: {:?}",
            db.replica_status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_follow_the_callers_writes_across_a_paused_replica() {
    let (primary, _test_db, replica, db) = primary_and_replica().await;

    // Replay running: shared reads and caught-up positions go to the replica.
    let first = write_note(&db).await;
    replica.wait_caught_up(&primary).await;
    let seen = until_replica_serves(&db, ReadAfter::Position(first)).await;
    assert_eq!(seen.notes, 1, "a replica read whose write was replayed");
    assert!(
        until_replica_serves(&db, ReadAfter::Nothing)
            .await
            .on_replica
    );

    // Replay paused: the caller's next write is provably not on the replica.
    replica.pause_replay().await;
    let second = write_note(&db).await;
    for _ in 0..50 {
        let seen = db
            .read(ReadAfter::Position(second), count_notes)
            .await
            .unwrap();
        assert_eq!(
            seen,
            Seen {
                on_replica: false,
                notes: 2
            },
            "a read after an unreplayed write must see it, on the primary"
        );
        let unknown = db.read(ReadAfter::Unknown, count_notes).await.unwrap();
        assert!(!unknown.on_replica, "no position: the primary");
    }
    // The older position is replayed: the replica may still serve it (old data).
    let stale = until_replica_serves(&db, ReadAfter::Position(first)).await;
    assert_eq!(stale.notes, 1);

    replica.resume_replay().await;
    let caught_up = until_replica_serves(&db, ReadAfter::Position(second)).await;
    assert_eq!(caught_up.notes, 2);
    let status = db.replica_status().unwrap();
    assert!(status.reads_replica >= 4, "{status:?}");
    assert!(status.reads_primary >= 100, "{status:?}");
    assert_eq!(status.state, "ok", "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_changes_no_answer_and_readiness_stays_ok() {
    let (primary, _test_db, mut replica, db) = primary_and_replica().await;
    write_note(&db).await;
    replica.wait_caught_up(&primary).await;
    until_replica_serves(&db, ReadAfter::Nothing).await;

    replica.stop();
    // Every read answers, the first ones by falling back from the replica.
    let deadline = Instant::now() + BOUND;
    loop {
        let seen = db.read(ReadAfter::Nothing, count_notes).await.unwrap();
        assert_eq!(seen.notes, 1);
        assert!(!seen.on_replica);
        let status = db.replica_status().unwrap();
        if status.state == "down" {
            break;
        }
        assert!(Instant::now() < deadline, "never seen down: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = readiness(&db).await;
    assert!(ready.is_ready(), "{ready:?}");
    let shown = serde_json::to_value(&ready).unwrap();
    assert_eq!(shown["checks"]["replica"]["state"], "down", "{shown}");
    assert!(
        !shown.to_string().contains("password"),
        "no secret in details: {shown}"
    );
}

#[tokio::test]
async fn without_a_replica_reads_go_to_the_primary() {
    let cluster = testing::cluster().await;
    let test_db = cluster.database().await;
    let db = Database::new(DbSettings::for_dsn(
        pgkit::dsn::Dsn::parse(test_db.url()).unwrap(),
        "pgkit-replica",
    ))
    .unwrap();
    assert!(!db.has_replica());
    assert!(db.replica_status().is_none());
    let on_replica: bool = db
        .read(ReadAfter::Nothing, |db| async move {
            db.fetch_val("SELECT pg_is_in_recovery()", &[]).await
        })
        .await
        .unwrap();
    assert!(!on_replica);
    let ready = serde_json::to_value(readiness(&db).await).unwrap();
    assert!(ready["checks"].get("replica").is_none(), "{ready}");
}
