//! `dave serve` with no DSN outside production: the embedded local
//! PostgreSQL under `.dave/pgdata` is started, migrated and seeded, the
//! service answers, and Ctrl-C stops both.

use std::time::Duration;

use pgkit::local::{LocalCluster, LocalStatus};

use crate::helpers::{client, run_binary, spawn_binary, wait_ready, WAIT};

#[tokio::test]
async fn serve_without_a_dsn_runs_on_a_local_postgres_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_binary(
        &["serve"],
        &[("HOST", "127.0.0.1"), ("PORT", "0"), ("LOG_FORMAT", "json")],
        dir.path(),
    )
    .await;
    // A first initdb takes a few seconds.
    let url = child.wait_for_url_within(Duration::from_secs(120)).await;
    let http = client();
    wait_ready(&http, &url).await;
    let response = http
        .post(format!("{url}/api/v1/conversations"))
        .json(&serde_json::json!({"title": "local"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "migrated: {}", child.output());
    assert!(response.headers().contains_key("x-session-token"));

    let data_dir = dir.path().join(".dave/pgdata");
    assert!(matches!(
        LocalCluster::status(&data_dir),
        LocalStatus::Running { .. }
    ));

    // A second command on the same local cluster attaches to it and must
    // leave it running for the service.
    let (status, _, stderr) = run_binary(
        &[
            "apikey",
            "create",
            "--user-id",
            "7a1e1b2c-0000-4000-8000-000000000001",
        ],
        &[],
        dir.path(),
    )
    .await;
    assert!(status.success(), "{stderr}");
    let after = http
        .get(format!("{url}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        200,
        "the service lost its database: {}",
        child.output()
    );

    child.signal(rustix::process::Signal::INT);
    let status = child.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", child.output());
    assert_eq!(
        LocalCluster::status(&data_dir),
        LocalStatus::Stopped,
        "{}",
        child.output()
    );
}
