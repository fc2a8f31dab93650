//! What the service does around every request, as one [`Around`]
//! middleware: the request id, the request's tracing span, the contract's
//! 413 for a declared body over 1 MiB, the metrics, the access-log line and
//! `Cache-Control: no-store` on private responses.
//!
//! The request id is the client's `X-Request-Id` when it is 1 to 128
//! printable ASCII characters (trimmed), else 32 random hex digits; it is
//! returned on every response. The span carries the request id, method,
//! route template and W3C trace context; the handler and every log line it
//! writes run in it. It is hand-written rather than tower-http's
//! `TraceLayer`, `RequestBodyLimitLayer` and request-id layers: the span
//! needs the matched route template and the trace context, the access line
//! the path and user agent (TraceLayer's response hook sees neither the
//! request nor its route), metrics share the same timing,
//! `RequestBodyLimitLayer` answers a declared oversized body with its own
//! plain-text 413, not the contract's JSON body, and one middleware is one
//! wrapped future per request where four would be four (see
//! [`crate::middleware`]). Every response under `/api/` (and any carrying a
//! session token) gets `Cache-Control: no-store`: they hold user data or
//! credentials, which no browser, proxy or CDN may keep.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use tracing::field::Empty;
use tracing::Span;

use crate::auth::SESSION_HEADER;
use crate::error::ApiError;
use crate::extract::declares_too_large;
use crate::metrics::{InFlight, UNMATCHED};
use crate::middleware::Around;
use crate::state::AppState;
use crate::telemetry::{TraceContext, ACCESS_TARGET, SAMPLED_FIELD, SPAN_ID_FIELD, TRACE_ID_FIELD};

/// The request id header, read and returned.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's request id longer than this is replaced by a generated one.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The middleware; see the module docs.
#[derive(Clone)]
pub struct Observe {
    state: AppState,
}

impl Observe {
    pub fn new(state: AppState) -> Observe {
        Observe { state }
    }
}

/// One request, from [`Around::before`] to [`Around::after`].
pub struct Observed {
    state: AppState,
    started: Instant,
    id: HeaderValue,
    method: Method,
    route: Option<MatchedPath>,
    span: Span,
    /// Path and user agent, when the request gets an access-log line.
    access: Option<(String, String)>,
    private: bool,
    in_flight: InFlight,
}

impl Around for Observe {
    type Carry = Observed;

    fn before(&self, request: &mut Request) -> (Observed, Option<Response>) {
        let started = Instant::now();
        let id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(usable_request_id)
            .unwrap_or_else(random_request_id);
        let route = request.extensions().get::<MatchedPath>().cloned();
        let route_name = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let span = request_span(request, &id, route_name);
        let access = (self.state.config.access_log && !is_probe(route_name)).then(|| {
            let user_agent = request
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            (request.uri().path().to_owned(), user_agent.to_owned())
        });
        let answer = declares_too_large(request.headers())
            .then(|| span.in_scope(|| ApiError::PayloadTooLarge.into_response()));
        let observed = Observed {
            state: self.state.clone(),
            started,
            private: request.uri().path().starts_with("/api/"),
            method: request.method().clone(),
            in_flight: self.state.metrics.start_request(),
            id,
            route,
            span,
            access,
        };
        (observed, answer)
    }

    fn after(observed: Observed, response: &mut Response) {
        let Observed {
            state,
            started,
            id,
            method,
            route,
            span,
            access,
            private,
            in_flight,
        } = observed;
        drop(in_flight);
        let headers = response.headers_mut();
        if private || headers.contains_key(SESSION_HEADER) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        headers.insert(REQUEST_ID.clone(), id);
        let latency = started.elapsed();
        let status = response.status().as_u16();
        let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        state
            .metrics
            .record(method.as_str(), route, status, latency);
        if let Some((path, user_agent)) = access {
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
    }

    fn span(observed: &Observed) -> Option<&Span> {
        Some(&observed.span)
    }
}

/// The request's span, with the trace context when the client sent one.
fn request_span(request: &Request, id: &HeaderValue, route: &str) -> Span {
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or(""),
        method = %request.method(),
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
    span
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

/// A made request id: 32 hex digits, 128 random bits from the thread's
/// generator (no system call per request).
fn random_request_id() -> HeaderValue {
    let id = format!("{:032x}", rand::random::<u128>());
    // Hex digits are always a valid header value.
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// Health probes and scrapes are not access-logged: they would drown the rest.
fn is_probe(route: &str) -> bool {
    route.starts_with("/health/") || route == "/metrics"
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let made = random_request_id();
        let made = made.to_str().unwrap();
        assert_eq!(made.len(), 32, "{made}");
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
        assert_ne!(random_request_id(), random_request_id());
    }

    #[test]
    fn probes_are_not_access_logged() {
        assert!(is_probe("/health/ready"));
        assert!(is_probe("/metrics"));
        assert!(!is_probe("/api/v1/conversations"));
        assert!(!is_probe(UNMATCHED));
    }
}
