//! The whole HTTP application as one `Router`, apart from any socket, so
//! tests can drive it in-process and `server` only binds and serves it.
//!
//! The request id is tower-http's: [`SetRequestIdLayer`] keeps the client's
//! `X-Request-Id` (when it is short printable ASCII, see
//! `usable_request_id`) or makes one (128 random bits in hex), and
//! [`PropagateRequestIdLayer`] returns it on every response. Inside them,
//! around every route (and the 404/405 fallbacks), one middleware,
//! `observe`: it opens the request's tracing span (request id, method,
//! route template, trace context) in which the handler and every log line it
//! writes run, refuses a declared body over 1 MiB with the contract's 413,
//! records the request in the metrics and writes the access-log line. It
//! stays hand-written rather than tower-http's `TraceLayer` and
//! `RequestBodyLimitLayer`: the span needs the matched route template and
//! the trace context, the access line the path and user agent (TraceLayer's
//! response hook sees neither the request nor its route), metrics share the
//! same timing, and `RequestBodyLimitLayer` answers a declared oversized
//! body with its own plain-text 413, not the contract's JSON body. Every
//! response under `/api/` (and any carrying a session token) gets
//! `Cache-Control: no-store`: they hold user data or credentials, which no
//! browser, proxy or CDN may keep. Inside it,
//! a panic in a handler becomes the contract's 500 and is logged with the
//! request id, instead of dropping the connection.

use std::any::Any;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tracing::field::Empty;
use tracing::Instrument;

use crate::auth::SESSION_HEADER;
use crate::error::{route_not_found, ApiError};
use crate::extract::declares_too_large;
use crate::metrics::UNMATCHED;
use crate::state::AppState;
use crate::telemetry::{TraceContext, ACCESS_TARGET, SAMPLED_FIELD, SPAN_ID_FIELD, TRACE_ID_FIELD};
use crate::{openapi, ops};

/// The request id header, read and returned.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's request id longer than this is replaced by a generated one.
const MAX_REQUEST_ID_LEN: usize = 128;

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
                .layer(middleware::map_request(drop_unusable_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), RandomRequestId))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(middleware::from_fn_with_state(state.clone(), observe))
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

/// Request ids made for requests that bring no usable one: 32 hex digits,
/// 128 random bits from the thread's generator (no system call per request).
#[derive(Debug, Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("{:032x}", rand::random::<u128>());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The client's `X-Request-Id` as it will be kept: trimmed, when it is 1 to
/// 128 printable ASCII characters; `None` (a new one is made) otherwise.
fn usable_request_id(value: &HeaderValue) -> Option<HeaderValue> {
    let id = value.to_str().ok()?.trim();
    let usable = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic());
    if !usable {
        return None;
    }
    HeaderValue::from_str(id).ok()
}

/// Before [`SetRequestIdLayer`]: an unusable client id is removed, so that
/// one is made instead (the layer keeps any id it finds).
async fn drop_unusable_request_id(mut request: Request) -> Request {
    if let Some(value) = request.headers().get(&REQUEST_ID) {
        match usable_request_id(value) {
            Some(kept) => request.headers_mut().insert(REQUEST_ID.clone(), kept),
            None => request.headers_mut().remove(&REQUEST_ID),
        };
    }
    request
}

/// Health probes and scrapes are not access-logged: they would drown the rest.
fn is_probe(route: &str) -> bool {
    route.starts_with("/health/") || route == "/metrics"
}

/// See the module docs.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Set by SetRequestIdLayer outside this middleware.
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("")
        .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED.to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
        { TRACE_ID_FIELD } = Empty,
        { SPAN_ID_FIELD } = Empty,
        { SAMPLED_FIELD } = Empty,
    );
    if let Some(trace) = TraceContext::from_headers(request.headers()) {
        span.record(TRACE_ID_FIELD, trace.trace_id.as_str());
        if let Some(span_id) = &trace.span_id {
            span.record(SPAN_ID_FIELD, span_id.as_str());
        }
        span.record(SAMPLED_FIELD, trace.sampled);
    }
    let access_log = state.config.access_log && !is_probe(&route);
    let log_detail = access_log.then(|| {
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (request.uri().path().to_owned(), user_agent)
    });

    let private = request.uri().path().starts_with("/api/");
    let in_flight = state.metrics.start_request();
    let mut response = if declares_too_large(request.headers()) {
        span.in_scope(|| ApiError::PayloadTooLarge.into_response())
    } else {
        next.run(request).instrument(span.clone()).await
    };
    drop(in_flight);

    if private || response.headers().contains_key(SESSION_HEADER) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let latency = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .record(method.as_str(), &route, status, latency);
    if let Some((path, user_agent)) = log_detail {
        span.in_scope(|| {
            tracing::info!(
                target: ACCESS_TARGET,
                path = %path,
                status,
                latency_ms = latency.as_secs_f64() * 1000.0,
                user_agent = %user_agent,
                "{method} {route} {status}"
            );
        });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
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

    fn usable(id: &str) -> Option<String> {
        usable_request_id(&HeaderValue::from_str(id).unwrap())
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn client_request_ids_are_kept_when_sane() {
        assert_eq!(usable("abc-123").as_deref(), Some("abc-123"));
        assert_eq!(usable("  padded ").as_deref(), Some("padded"));
        assert_eq!(usable(&"x".repeat(128)).map(|v| v.len()), Some(128));
    }

    #[test]
    fn odd_request_ids_are_replaced() {
        for bad in ["", "   ", "has space", &"x".repeat(129)] {
            assert_eq!(usable(bad), None, "{bad:?}");
        }
        let made = RandomRequestId
            .make_request_id(&axum::http::Request::new(()))
            .unwrap();
        let made = made.header_value().to_str().unwrap();
        assert_eq!(made.len(), 32, "{made}");
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
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

    #[test]
    fn probes_are_not_access_logged() {
        assert!(is_probe("/health/ready"));
        assert!(is_probe("/metrics"));
        assert!(!is_probe("/api/v1/conversations"));
        assert!(!is_probe(UNMATCHED));
    }
}
