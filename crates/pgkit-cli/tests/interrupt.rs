//! Ctrl-C during `pgkit migrate up` (issue 14 §3): the running statement is
//! cancelled on the server, the file rolled back, the migration lock
//! released, the file named, exit 130; all within a few seconds. Through
//! the real binary and a real server.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use pgkit::testing::check::connect;
use pgkit::testing::cluster;
use pgkit_cli::testing::pgkit;
use tokio_postgres::Client;

/// Polls `check` until it is true or `limit` passes; true when it became true.
async fn within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// The migration's statement, running on the server for another session.
const RUNNING: &str = "SELECT count(*) FROM pg_stat_activity \
    WHERE pid <> pg_backend_pid() AND datname = current_database() \
      AND state = 'active' AND query LIKE '%pg_sleep(600)%'";
/// Advisory locks held in this database (the runner's migration lock is one).
const ADVISORY: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the child's exit, at most `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn interrupted(signal_name: &str, code: i32, no_transaction: bool) {
    let db = cluster().await.database().await;
    let c = connect(db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_first.sql"),
        "CREATE TABLE IF NOT EXISTS first (id int);\n",
    )
    .unwrap();
    let slow = if no_transaction {
        "-- pgkit:no-transaction\nCREATE TABLE IF NOT EXISTS slow (id int);\nSELECT pg_sleep(600);\n"
    } else {
        "BEGIN;\nCREATE TABLE IF NOT EXISTS slow (id int);\nSELECT pg_sleep(600);\nCOMMIT;\n"
    };
    std::fs::write(dir.path().join("002_slow.sql"), slow).unwrap();
    let d = dir.path().to_str().unwrap();

    let mut child = pgkit(Some(db.url()), &[], &["migrate", "--dir", d, "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        within(Duration::from_secs(30), || async {
            count(&c, RUNNING).await == 1
        })
        .await,
        "the migration's statement never started"
    );
    assert_eq!(count(&c, ADVISORY).await, 1, "the runner holds its lock");

    let sent = Instant::now();
    signal(&child, signal_name);
    let status = exit_within(&mut child, Duration::from_secs(5))
        .expect("pgkit did not exit within 5s of the signal");
    let took = sent.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(code), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {err}");
    let signal_text = format!("error: interrupted by SIG{signal_name}: 002_slow.sql ");
    assert!(err.contains(&signal_text), "{err}");
    if no_transaction {
        assert!(err.contains("runs outside a transaction"), "{err}");
    } else {
        assert!(err.contains("002_slow.sql was rolled back"), "{err}");
    }
    assert!(err.contains("hint: run `up` again"), "{err}");

    // Nothing of it goes on on the server: no statement, no lock.
    assert!(
        within(Duration::from_secs(2), || async {
            count(&c, RUNNING).await == 0 && count(&c, ADVISORY).await == 0
        })
        .await,
        "the statement or the lock outlived pgkit"
    );
    let slow_exists = count(
        &c,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'slow'",
    )
    .await;
    assert_eq!(slow_exists, i64::from(no_transaction), "{err}");
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM pgkit_migrations WHERE name = '002_slow.sql'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM pgkit_migrations WHERE name = '001_first.sql'"
        )
        .await,
        1,
        "the file before it stays applied"
    );
}

#[tokio::test]
async fn ctrl_c_cancels_the_statement_rolls_back_unlocks_and_exits_130() {
    interrupted("INT", 130, false).await;
}

#[tokio::test]
async fn sigterm_in_a_no_transaction_file_exits_143_and_says_what_stayed() {
    interrupted("TERM", 143, true).await;
}
