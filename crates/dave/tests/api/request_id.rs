//! `X-Request-Id` (taken or generated, always returned) and the contract's
//! bodies for what the shell answers itself: unknown routes, wrong methods,
//! bodies over 1 MiB.

use serde_json::Value;

use crate::helpers::spawn_app;

fn assert_error_body(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn a_client_request_id_is_returned_as_given() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "client-chosen-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-id-42");
}

#[tokio::test]
async fn a_request_id_is_generated_when_missing_or_unusable() {
    let app = spawn_app().await;
    let first = app.get("/health/live").await;
    let second = app.get("/health/live").await;
    let a = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    let b = second.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(a.len(), 32, "{a}");
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b);

    let too_long = "x".repeat(300);
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", &too_long)
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, too_long);
    assert_eq!(id.len(), 32);
}

#[tokio::test]
async fn unknown_routes_are_404_with_the_error_body_and_request_id() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .header("x-request-id", "req-404")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "req-404");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_error_body(&response.json().await.unwrap(), "not_found");
}

#[tokio::test]
async fn wrong_methods_get_the_error_body() {
    let app = spawn_app().await;
    let response = app
        .client
        .put(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("x-request-id"));
    assert_error_body(&response.json().await.unwrap(), "method_not_allowed");
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413_on_any_route() {
    let app = spawn_app().await;
    let big = vec![b'a'; 1024 * 1024 + 1];
    for path in ["/api/v1/conversations", "/health/live", "/no/such/route"] {
        let response = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
        assert_error_body(&response.json().await.unwrap(), "payload_too_large");
    }
}

#[tokio::test]
async fn a_body_of_exactly_one_mebibyte_is_not_refused_for_its_size() {
    let app = spawn_app().await;
    // Valid JSON padded with whitespace to exactly 1 MiB.
    let mut body = b"{\"title\":\"big\"}".to_vec();
    body.resize(1024 * 1024, b' ');
    let response = app
        .client
        .post(app.url("/api/v1/conversations"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}
