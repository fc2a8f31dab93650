//! The whole HTTP application as one `Router`, apart from any socket, so
//! tests can drive it in-process and `server` only binds and serves it.
//!
//! Around every route (and the 404/405 fallbacks), [`Observe`]: the
//! request id, span, metrics, access log and no-store (see
//! [`crate::observe`]). Inside it, a panic in a handler becomes the
//! contract's 500 and is logged with the request id, instead of dropping the
//! connection.

use std::any::Any;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{route_not_found, ApiError};
use crate::middleware::AroundLayer;
use crate::observe::Observe;
use crate::state::AppState;
use crate::{openapi, ops};

/// The service: operations endpoints, the API, fallbacks and middleware.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .route("/docs", get(openapi::docs))
        .route("/docs/swagger-ui-bundle.js", get(openapi::docs_script))
        .route("/docs/swagger-ui.css", get(openapi::docs_stylesheet))
        .merge(crate::api::api_router(&state));
    with_middleware(routes, state)
}

/// Fallbacks and middleware around `routes`. `Router::layer` wraps each
/// route, so it must come after every route is added.
fn with_middleware(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // One `layer` call with the whole stack: each call boxes every
        // route once more, and the boxes are cloned on every request.
        .layer(
            ServiceBuilder::new()
                .layer(AroundLayer(Observe::new(state.clone())))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A handler panicked: the contract's 500, and the panic in the log (inside
/// the request span, so with its request id).
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use serde_json::Value;
    use tower::ServiceExt;
    use tracing_subscriber::layer::SubscriberExt;

    use crate::config::Config;
    use crate::telemetry::test_log::Buffer;
    use crate::telemetry::CloudLoggingLayer;

    /// State whose pool never connects (nothing here touches the database).
    fn offline_state() -> AppState {
        let config = Config::for_tests("postgresql://nobody@/none?host=/nonexistent");
        let db = pgkit::pool::Database::new(config.db.clone()).unwrap();
        AppState::new(db, config).unwrap()
    }

    async fn failing(path: &str) -> (Response, Vec<Value>) {
        let routes = Router::new()
            .route(
                "/panics",
                get(|| async { panic!("kaboom in a handler") as &str }),
            )
            .route(
                "/fails",
                get(|| async { Err::<(), _>(ApiError::internal("disk on fire")) }),
            );
        let app = with_middleware(routes, offline_state());
        let buffer = Buffer::default();
        let subscriber =
            tracing_subscriber::registry().with(CloudLoggingLayer::new(buffer.clone(), None));
        let _guard = tracing::subscriber::set_default(subscriber);
        let request = Request::get(path)
            .header("x-request-id", "req-500")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        (response, buffer.json_lines())
    }

    async fn assert_logged_500(path: &str, cause: &str) {
        let (response, lines) = failing(path).await;
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["x-request-id"], "req-500");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(
            !body.to_string().contains(cause),
            "the cause stays in the log: {body}"
        );
        let errors: Vec<&Value> = lines.iter().filter(|l| l["severity"] == "ERROR").collect();
        assert_eq!(errors.len(), 1, "{lines:?}");
        assert_eq!(errors[0]["request_id"], "req-500");
        assert!(errors[0].to_string().contains(cause), "{}", errors[0]);
    }

    #[tokio::test]
    async fn an_internal_error_is_logged_with_its_request_id_and_cause() {
        assert_logged_500("/fails", "disk on fire").await;
    }

    #[tokio::test]
    async fn a_panic_is_a_500_logged_with_its_request_id() {
        assert_logged_500("/panics", "kaboom in a handler").await;
    }

    #[tokio::test]
    async fn the_request_id_is_kept_or_made_and_returned() {
        let app = with_middleware(
            Router::new().route("/x", get(|| async { "ok" })),
            offline_state(),
        );
        let ask = |id: Option<&str>| {
            let mut request = Request::get("/x");
            if let Some(id) = id {
                request = request.header("x-request-id", id);
            }
            app.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        let kept = ask(Some("mine-1")).await.unwrap();
        assert_eq!(kept.headers()["x-request-id"], "mine-1");
        for odd in [None, Some("has space"), Some(&*"y".repeat(200))] {
            let response = ask(odd).await.unwrap();
            let id = response.headers()["x-request-id"].to_str().unwrap();
            assert_eq!(id.len(), 32, "{odd:?} -> {id}");
        }
    }
}
