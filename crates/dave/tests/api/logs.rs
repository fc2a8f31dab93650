//! Structured logs (`LOG_FORMAT=json`): every stdout line is one JSON object
//! in Cloud Logging's format; an API request writes one INFO line with its
//! request id and trace fields, from `traceparent` or `X-Cloud-Trace-Context`;
//! connections carry `application_name` with `K_REVISION`.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    child_bearer, client, eventually, migrated_database, serve_binary, side_pool, wait_ready,
    CHILD_JWT_SECRET, CHILD_SESSION_SECRET, WAIT,
};

const SEVERITIES: &[&str] = &["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"];

fn access_line<'a>(lines: &'a [Value], request_id: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "dave::access" && l["request_id"] == request_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one access line for {request_id}: {found:?}"
    );
    found[0]
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_trace_context() {
    let db = migrated_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve_binary(
        db.url(),
        &[
            ("GOOGLE_CLOUD_PROJECT", "test-project"),
            ("K_REVISION", "dave-00042-abc"),
        ],
        dir.path(),
    )
    .await;
    let http = client();
    wait_ready(&http, &url).await;
    let token = child_bearer(uuid::Uuid::new_v4());

    let response = http
        .get(format!("{url}/api/v1/conversations"))
        .bearer_auth(&token)
        .header("x-request-id", "req-traceparent")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header(
            "x-cloud-trace-context",
            "11111111111111111111111111111111/1;o=0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http
        .get(format!("{url}/api/v1/conversations"))
        .bearer_auth(&token)
        .header("x-request-id", "req-cloud-trace")
        .header(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/123456789;o=1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http
        .get(format!("{url}/api/v1/conversations/not-a-uuid"))
        .bearer_auth(&token)
        .header("x-request-id", "req-bad-id")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);

    // Every connection of the pool names the service and its revision.
    let side = side_pool(db.url());
    let names: Vec<String> = eventually("the service's connections", WAIT, || async {
        let mut conn = side.acquire().await.ok()?;
        let names: Vec<String> = conn
            .fetch_val(
                "SELECT coalesce(array_agg(DISTINCT application_name), '{}') FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name LIKE 'dave%' \
                 AND application_name <> 'dave-tests'",
                &[],
            )
            .await
            .ok()?;
        (!names.is_empty()).then_some(names)
    })
    .await;
    assert_eq!(names, vec!["dave-00042-abc".to_owned()]);
    side.close(Duration::from_secs(1)).await;

    child.signal(rustix::process::Signal::TERM);
    let status = child.wait_exit(WAIT).await;
    assert!(status.success(), "{status}:\n{}", child.output());

    let lines = child.json_lines();
    assert!(lines.len() >= 4, "{}", child.output());
    for line in &lines {
        let severity = line["severity"]
            .as_str()
            .unwrap_or_else(|| panic!("no severity: {line}"));
        assert!(SEVERITIES.contains(&severity), "{line}");
        assert!(line["message"].is_string(), "no message: {line}");
    }

    let first = access_line(&lines, "req-traceparent");
    assert_eq!(first["severity"], "INFO");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["route"], "/api/v1/conversations");
    assert_eq!(first["status"], 200);
    assert!(
        first["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{first}"
    );
    assert_eq!(
        first["logging.googleapis.com/trace"],
        "projects/test-project/traces/4bf92f3577b34da6a3ce929d0e0e4736",
        "traceparent wins over X-Cloud-Trace-Context"
    );
    assert_eq!(first["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
    assert_eq!(first["logging.googleapis.com/trace_sampled"], true);
    assert_eq!(first["httpRequest"]["status"], 200);

    let second = access_line(&lines, "req-cloud-trace");
    assert_eq!(
        second["logging.googleapis.com/trace"],
        "projects/test-project/traces/105445aa7843bc8bf206b12000100000"
    );
    assert_eq!(
        second["logging.googleapis.com/spanId"],
        format!("{:016x}", 123_456_789u64)
    );
    assert_eq!(second["logging.googleapis.com/spanId"], "00000000075bcd15");
    assert_eq!(second["logging.googleapis.com/trace_sampled"], true);

    let bad = access_line(&lines, "req-bad-id");
    assert_eq!(bad["status"], 422);
    assert_eq!(bad["route"], "/api/v1/conversations/{id}");
    assert!(bad.get("logging.googleapis.com/trace").is_none());

    assert!(
        !lines.iter().any(|l| l["target"] == "dave::access"
            && l["route"]
                .as_str()
                .is_some_and(|r| r.starts_with("/health/"))),
        "health probes are not access-logged"
    );
    let all = child.output();
    for secret in [CHILD_JWT_SECRET, CHILD_SESSION_SECRET, token.as_str()] {
        assert!(!all.contains(secret), "a secret reached the logs");
    }
}

#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    let db = migrated_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve_binary(db.url(), &[("ACCESS_LOG", "false")], dir.path()).await;
    let http = client();
    wait_ready(&http, &url).await;
    let response = http
        .get(format!("{url}/api/v1/conversations"))
        .bearer_auth(child_bearer(uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    child.signal(rustix::process::Signal::TERM);
    assert!(child.wait_exit(WAIT).await.success());
    let lines = child.json_lines();
    assert!(!lines.is_empty());
    assert!(
        !lines.iter().any(|l| l["target"] == "dave::access"),
        "{}",
        child.output()
    );
}
