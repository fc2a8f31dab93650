//! Start-up while the database (or the Cloud SQL proxy) is not there yet:
//! the binary listens at once, liveness answers 200 throughout, readiness
//! answers 503 until the first connections succeed, then 200, with no
//! restart; giving up after `DB_CONNECT_RETRY` exits 1 with one line.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{client, eventually, serve_binary, spawn_binary, CHILD_SESSION_SECRET, WAIT};

#[tokio::test]
async fn becomes_ready_when_the_database_starts_three_seconds_later() {
    let cluster = pgkit::testing::dedicated_cluster().await;
    let db = cluster.database().await;
    cluster.stop().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve_binary(db.url(), &[("DB_CONNECT_RETRY", "60")], dir.path()).await;
    let http = client();
    let live = format!("{url}/health/live");
    let ready = format!("{url}/health/ready");

    let response = http.get(&ready).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["checks"]["database_details"]["pool_size"].is_u64(),
        "{body}"
    );

    // Three seconds without a database: liveness 200, readiness 503, each poll.
    let down_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < down_until {
        assert_eq!(http.get(&live).send().await.unwrap().status(), 200);
        assert_eq!(http.get(&ready).send().await.unwrap().status(), 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cluster.start().await.unwrap();
    eventually("readiness after the database started", WAIT, || async {
        assert_eq!(
            http.get(&live).send().await.unwrap().status(),
            200,
            "liveness throughout"
        );
        (http.get(&ready).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "no restart: the same process"
    );

    child.signal(rustix::process::Signal::TERM);
    assert_eq!(
        child.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        child.output()
    );
    let waits = child
        .json_lines()
        .into_iter()
        .filter(|l| {
            l["severity"] == "WARNING"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("retrying"))
        })
        .count();
    assert!(waits >= 1, "each wait is logged:\n{}", child.output());
}

#[tokio::test]
async fn gives_up_after_db_connect_retry_with_exit_code_1() {
    let cluster = pgkit::testing::dedicated_cluster().await;
    let db = cluster.database().await;
    let url = db.url().to_owned();
    cluster.stop().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_binary(
        &["serve"],
        &[
            ("APP_ENVIRONMENT", "production"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("DAVE_DB_DSN", &url),
            ("SESSION_SECRET", CHILD_SESSION_SECRET),
            ("LOG_FORMAT", "json"),
            ("DB_CONNECT_RETRY", "1"),
        ],
        dir.path(),
    )
    .await;
    let status = child.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "{}", child.output());
    let stderr = child.stderr_lines();
    let errors: Vec<&String> = stderr.iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr:?}");
    assert!(errors[0].contains("DB_CONNECT_RETRY"), "{stderr:?}");
    drop(db);
}
