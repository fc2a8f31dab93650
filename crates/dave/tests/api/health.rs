//! `/health/live` and `/health/ready`: the contract's bodies, and readiness
//! following the database down and back up while liveness stays 200.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{eventually, spawn_app, start, WAIT};

#[tokio::test]
async fn liveness_answers_alive() {
    let app = spawn_app().await;
    let response = app.get("/health/live").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "alive"}));
}

fn assert_details(body: &Value) {
    let details = &body["checks"]["database_details"];
    for field in ["pool_size", "idle_connections"] {
        assert!(details[field].is_u64(), "{field} in {body}");
    }
    let breaker = details["circuit_breaker"].as_str().unwrap();
    assert!(["closed", "open", "half_open"].contains(&breaker), "{body}");
}

#[tokio::test]
async fn readiness_answers_ready_with_pool_details() {
    let app = spawn_app().await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    assert_details(&body);
    assert_eq!(
        body["checks"]["database_details"]["circuit_breaker"],
        "closed"
    );
    assert!(
        body["checks"]["database_details"]["pool_size"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn readiness_follows_the_database_down_and_up() {
    let cluster = pgkit::testing::dedicated_cluster().await;
    let database = cluster.database().await;
    let mut config = dave::config::Config::for_tests(database.url());
    config.db.pool_timeout = Duration::from_secs(1);
    // Recovery is tried on the next call after the breaker's reset time.
    config.db.breaker_reset = Duration::from_secs(1);
    let app = start(config, database).await;
    assert_eq!(app.get("/health/ready").await.status(), 200);

    cluster.stop().await.unwrap();
    let body: Value = eventually("readiness to answer 503", WAIT, || async {
        let response = app.get("/health/ready").await;
        (response.status() == 503).then_some(())?;
        response.json().await.ok()
    })
    .await;
    assert_eq!(body["status"], "not_ready");
    let reason = body["checks"]["database"].as_str().unwrap();
    assert!(reason.starts_with("error: "), "{reason}");
    assert!(
        !reason.contains("postgresql://"),
        "no DSN in the reason: {reason}"
    );
    assert_details(&body);
    assert_eq!(
        app.get("/health/live").await.status(),
        200,
        "liveness ignores the database"
    );

    cluster.start().await.unwrap();
    eventually("readiness to answer 200 again", WAIT, || async {
        (app.get("/health/ready").await.status() == 200).then_some(())
    })
    .await;
}
