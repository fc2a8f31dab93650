//! Graceful shutdown of the real binary: on SIGTERM it stops accepting, lets
//! a slow request in flight finish, closes the pool and exits 0; a request
//! still running after `SHUTDOWN_GRACE` is cut so the exit stays bounded.
//!
//! The slow request is a real one: a conversation insert that waits on a
//! table lock the test holds, released when the test decides.

use std::time::{Duration, Instant};

use pgkit::pool::{Database, PooledConn};

use crate::helpers::{
    child_bearer, client, eventually, migrated_database, serve_binary, side_pool, wait_ready, WAIT,
};

/// Locks `ai_conversations` in a transaction on a connection of `pool`.
async fn lock_conversations(pool: &Database) -> PooledConn {
    let mut conn = pool.acquire().await.unwrap();
    conn.batch("BEGIN; LOCK TABLE ai_conversations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    conn
}

/// Waits until a statement of the service waits for a lock.
async fn wait_for_blocked_statement(pool: &Database) {
    eventually("the service's insert to wait on the lock", WAIT, || async {
        let mut conn = pool.acquire().await.ok()?;
        let waiting: i64 = conn
            .fetch_val(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND application_name = 'dave'",
                &[],
            )
            .await
            .ok()?;
        (waiting > 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let db = migrated_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve_binary(db.url(), &[("SHUTDOWN_GRACE", "20")], dir.path()).await;
    let http = client();
    wait_ready(&http, &url).await;

    let side = side_pool(db.url());
    let mut lock = lock_conversations(&side).await;
    let slow = {
        let request = http
            .post(format!("{url}/api/v1/conversations"))
            .bearer_auth(child_bearer(uuid::Uuid::new_v4()))
            .json(&serde_json::json!({"title": "finished after SIGTERM"}));
        tokio::spawn(request.send())
    };
    wait_for_blocked_statement(&side).await;

    child.signal(rustix::process::Signal::TERM);
    // New connections are refused once shutdown began...
    let addr = url.trim_start_matches("http://").to_owned();
    eventually("the listener to close", WAIT, || async {
        tokio::net::TcpStream::connect(&addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // ...while the request in flight keeps the process alive.
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "{}",
        child.output()
    );
    assert!(!slow.is_finished());

    lock.batch("COMMIT").await.unwrap();
    drop(lock);
    let response = tokio::time::timeout(WAIT, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["title"], "finished after SIGTERM");

    let status = child.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", child.output());
    let lines = child.json_lines();
    assert!(lines.iter().any(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("shutting down"))));
    side.close(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn requests_past_the_grace_period_are_cut_and_the_exit_is_bounded() {
    let db = migrated_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve_binary(db.url(), &[("SHUTDOWN_GRACE", "1")], dir.path()).await;
    let http = client();
    wait_ready(&http, &url).await;

    let side = side_pool(db.url());
    let mut lock = lock_conversations(&side).await;
    let stuck = tokio::spawn(
        http.post(format!("{url}/api/v1/conversations"))
            .bearer_auth(child_bearer(uuid::Uuid::new_v4()))
            .json(&serde_json::json!({"title": "never finishes"}))
            .send(),
    );
    wait_for_blocked_statement(&side).await;

    let signalled = Instant::now();
    child.signal(rustix::process::Signal::TERM);
    let status = child.wait_exit(WAIT).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", child.output());
    assert!(
        took >= Duration::from_secs(1),
        "waited the grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "bounded by the grace period: {took:?}"
    );
    let outcome = tokio::time::timeout(WAIT, stuck).await.unwrap().unwrap();
    assert!(
        outcome.is_err(),
        "the cut request gets no answer: {outcome:?}"
    );
    assert!(child.json_lines().iter().any(|l| l["severity"] == "WARNING"
        && l["message"]
            .as_str()
            .is_some_and(|m| m.contains("grace period"))));

    lock.batch("ROLLBACK").await.unwrap();
    drop(lock);
    side.close(Duration::from_secs(1)).await;
}

/// The backends of the service waiting for a lock.
async fn blocked_backends(pool: &Database) -> Vec<i32> {
    let mut conn = pool.acquire().await.unwrap();
    conn.fetch_val(
        "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock' \
         AND application_name = 'dave'",
        &[],
    )
    .await
    .unwrap()
}

/// Cloud Run sends SIGKILL 10 s after SIGTERM. With the default grace, a
/// request still blocked in the database when it ends is cut off (the
/// client's connection closes), the process exits 0 with time to spare, and
/// the statement does not live on in PostgreSQL: it neither keeps waiting
/// there nor commits once the lock goes away.
#[tokio::test]
async fn a_request_blocked_at_the_deadline_is_cut_here_and_on_the_server() {
    let db = migrated_database().await;
    let dir = tempfile::tempdir().unwrap();
    // No SHUTDOWN_GRACE: the default is what Cloud Run gets.
    let (mut child, url) = serve_binary(db.url(), &[], dir.path()).await;
    let http = client();
    wait_ready(&http, &url).await;

    let side = side_pool(db.url());
    let mut lock = lock_conversations(&side).await;
    let title = format!("cut at shutdown {}", uuid::Uuid::new_v4());
    let stuck = tokio::spawn(
        http.post(format!("{url}/api/v1/conversations"))
            .bearer_auth(child_bearer(uuid::Uuid::new_v4()))
            .json(&serde_json::json!({ "title": title }))
            .send(),
    );
    wait_for_blocked_statement(&side).await;
    let backends = blocked_backends(&side).await;
    assert_eq!(backends.len(), 1, "{backends:?}");

    let signalled = Instant::now();
    child.signal(rustix::process::Signal::TERM);
    let status = child.wait_exit(WAIT).await;
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM with a request blocked in the database");
    assert_eq!(status.code(), Some(0), "{}", child.output());
    assert!(
        took >= Duration::from_secs(7),
        "the default grace period was given: {took:?}"
    );
    assert!(
        took < Duration::from_secs(9),
        "well inside Cloud Run's 10 s: {took:?}\n{}",
        child.output()
    );
    let outcome = tokio::time::timeout(WAIT, stuck).await.unwrap().unwrap();
    assert!(
        outcome.is_err(),
        "the cut request gets no answer: {outcome:?}"
    );

    // While the test still holds the lock, the service's statement must be
    // gone from the server: cancelled, its connection closed.
    eventually(
        "the cut statement to stop on the server",
        Duration::from_secs(5),
        || async {
            let mut conn = side.acquire().await.ok()?;
            let running: i64 = conn
                .fetch_val(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE pid = ANY($1) AND state = 'active'",
                    &[&backends],
                )
                .await
                .ok()?;
            (running == 0).then_some(())
        },
    )
    .await;
    lock.batch("ROLLBACK").await.unwrap();
    drop(lock);
    let mut conn = side.acquire().await.unwrap();
    let inserted: i64 = conn
        .fetch_val(
            "SELECT count(*) FROM ai_conversations WHERE title = $1",
            &[&title],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 0, "the cut insert never ran");
    drop(conn);
    side.close(Duration::from_secs(1)).await;
}
