//! Responses with user data or credentials are never stored by a browser,
//! proxy or CDN: every `/api/` response, and any carrying a session token,
//! says `Cache-Control: no-store` (docs/security.md).

use crate::helpers::{spawn_app, USER_KEY};

fn cache_control(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn api_responses_are_no_store() {
    let app = spawn_app().await;
    let path = "/api/v1/conversations";

    // A new anonymous session: the token is a credential.
    let created = app
        .client
        .post(app.url(path))
        .json(&serde_json::json!({"title": "private"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(created.headers().contains_key("x-session-token"));
    assert_eq!(cache_control(&created), Some("no-store"));

    // User data, with an API key and with a bearer token.
    let listed = app
        .client
        .get(app.url(path))
        .header("x-api-key", USER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(cache_control(&listed), Some("no-store"));
    let token = app.bearer(uuid::Uuid::new_v4(), false);
    let missing = app
        .client
        .get(app.url(&format!("{path}/{}", uuid::Uuid::new_v4())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(cache_control(&missing), Some("no-store"));

    // Errors under /api/ too, even before authentication decides.
    let refused = app
        .client
        .get(app.url(path))
        .header("x-api-key", "dave_no_such_key_0000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(cache_control(&refused), Some("no-store"));
    let unknown = app.get("/api/v1/no-such-route").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(cache_control(&unknown), Some("no-store"));

    // Probes carry nothing private and keep their own headers.
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    assert_ne!(cache_control(&live), Some("no-store"));
}
