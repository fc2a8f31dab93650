//! The one place where a failure becomes an HTTP answer.
//!
//! Handlers return `Result<_, ApiError>`; every error body is
//! `{"error":{"code":"<snake_case>","message":"<human text>"}}` (DESIGN §3).
//! Database errors arrive as [`pgkit::error::DbError`] and are mapped here
//! once, so "the database cannot serve you now" is always a 503 with a
//! `Retry-After`, a unique violation always a 409, and a bug always a 500 whose
//! body says only that something went wrong while the cause goes to the log.
//! Axum's own extractor rejections (JSON body, path, query) are mapped here
//! too, so a malformed body or a bad UUID in a path uses the same body shape.

use std::error::Error as StdError;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pgkit::error::DbError;
use serde::Serialize;
use utoipa::ToSchema;

/// What a 500 tells the client: nothing about the cause (that is in the log).
const INTERNAL_MESSAGE: &str = "something went wrong on our side; the error was logged";

/// A failed request, as the client will see it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400 `invalid_json`: the body is not JSON at all.
    #[error("{0}")]
    InvalidJson(String),

    /// 401 `unauthorized`: credentials were present but wrong. Never used for
    /// "no credentials" (that caller is anonymous).
    #[error("{0}")]
    Unauthorized(String),

    /// 403 `forbidden`: the caller is known but not allowed (not admin).
    #[error("{0}")]
    Forbidden(String),

    /// 404 `not_found`: no such row for this caller (another user's row looks
    /// exactly like a missing one), or no such route.
    #[error("{0}")]
    NotFound(String),

    /// 405 `method_not_allowed`: the route exists, the method does not. Not in
    /// DESIGN §3's table; answered with the same body shape rather than axum's
    /// empty one.
    #[error("method not allowed on this route")]
    MethodNotAllowed,

    /// 409 `conflict`: a unique constraint rejected the write.
    #[error("{0}")]
    Conflict(String),

    /// 413 `payload_too_large`: the body is over the 1 MiB limit.
    #[error("request body is over the 1 MiB limit")]
    PayloadTooLarge,

    /// 415 `unsupported_media_type`: a body that is not `application/json`.
    #[error("request body must be JSON with Content-Type: application/json")]
    UnsupportedMediaType,

    /// 422 `validation_error`: well-formed JSON that breaks a rule, a malformed
    /// UUID in a path, a bad `limit` or `cursor`. The message names the field.
    #[error("{0}")]
    Validation(String),

    /// 503 `unavailable`: breaker open, pool exhausted, query timed out,
    /// database down. Answered with `Retry-After` (whole seconds, at least 1).
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },

    /// 500 `internal_error`: a bug. The cause is logged with `tracing::error!`
    /// (inside the request's span, so with its request id); the client only
    /// learns that something went wrong.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

/// `code` is stable and machine-readable; `message` is for humans.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// One of DESIGN §3's codes, e.g. `validation_error`.
    pub code: &'a str,
    pub message: &'a str,
}

/// The error answers many operations share, declared once in the OpenAPI
/// document (`#/components/responses/...`) and named by the operations with
/// `(status = 401, response = responses::Unauthorized)`. Each is the
/// [`ErrorBody`] with its code; 503 also carries `Retry-After`.
pub mod responses {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Type};

    /// An error response named `name`: `description`, an [`super::ErrorBody`]
    /// body, and `Retry-After` when `retry_after`.
    fn error_response(description: &str, retry_after: bool) -> RefOr<Response> {
        let mut response = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        );
        if retry_after {
            response = response.header(
                "retry-after",
                HeaderBuilder::new()
                    .schema(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )
                    .description(Some("Seconds to wait before trying again (at least 1)"))
                    .build(),
            );
        }
        response.build().into()
    }

    macro_rules! shared {
        ($($(#[$doc:meta])* $name:ident = $description:literal $(, $retry:ident)?;)*) => {$(
            $(#[$doc])*
            pub struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), error_response($description, shared!(@retry $($retry)?)))
                }
            }
        )*};
        (@retry retry_after) => { true };
        (@retry) => { false };
    }

    shared! {
        /// 400 `invalid_json`.
        InvalidJson = "`invalid_json`: the body is not JSON, or is cut short";
        /// 401 `unauthorized`.
        Unauthorized = "`unauthorized`: credentials present but wrong (unknown or revoked key, bad signature, expired, malformed, tampered session token); never answered to a caller without credentials";
        /// 403 `forbidden`.
        Forbidden = "`forbidden`: the caller is not an admin";
        /// 413 `payload_too_large`.
        PayloadTooLarge = "`payload_too_large`: the body is over 1 MiB (refused whole, before its fields are read)";
        /// 415 `unsupported_media_type`.
        UnsupportedMediaType = "`unsupported_media_type`: a body whose Content-Type is not application/json (or application/*+json)";
        /// 422 `validation_error`.
        Validation = "`validation_error`: well-formed JSON that breaks a rule of its schema (or names an unknown field), a malformed UUID or prompt segment in the path, or a bad query parameter (`limit`, `cursor`, `q`); the message names the field";
        /// 503 `unavailable`.
        Unavailable = "`unavailable`: the database cannot serve now (circuit breaker open, pool exhausted, query timed out, database down)", retry_after;
    }

    /// Every shared response, for the document's `components.responses`.
    pub fn all() -> Vec<(String, RefOr<Response>)> {
        use utoipa::ToResponse;
        [
            InvalidJson::response(),
            Unauthorized::response(),
            Forbidden::response(),
            PayloadTooLarge::response(),
            UnsupportedMediaType::response(),
            Validation::response(),
            Unavailable::response(),
        ]
        .into_iter()
        .map(|(name, response)| (name.to_owned(), response))
        .collect()
    }
}

impl ApiError {
    /// A 404 naming what was looked for ("conversation not found").
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// The 403 every admin-only route answers to a non-admin.
    pub fn admin_only() -> Self {
        ApiError::Forbidden("this route is for admins only".to_owned())
    }

    /// A 500 wrapping its cause, which is logged but never shown.
    pub fn internal(cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        ApiError::Internal(cause.into())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation(_) => "validation_error",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

/// `Retry-After` in whole seconds, rounded up, never 0 (0 would invite a
/// client to hammer a database that just said it is down).
fn retry_after_seconds(retry_after: Duration) -> u64 {
    let whole = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    whole.max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %pgkit::error::error_chain(cause.as_ref()), "request failed: internal error");
                INTERNAL_MESSAGE.to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: &message,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::Unavailable { retry_after, .. } = &self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(*retry_after)),
            );
        }
        response
    }
}

/// The 409 message for a unique constraint, by its name (the migrations name
/// every unique constraint), so the client learns which value clashed.
fn conflict_message(constraint: Option<&str>) -> String {
    let text = match constraint {
        Some("uq_admin_prompts_category_name") => {
            "a prompt with this category and name already exists"
        }
        Some("uq_admin_prompt_versions_number") => {
            "another version of this prompt was saved at the same time; retry"
        }
        Some("uq_api_keys_key_hash") => "this API key already exists",
        Some(name) if name.ends_with("_pkey") => "a row with this id already exists",
        _ => "a row with these values already exists",
    };
    text.to_owned()
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        let retry_after = error.retry_after().unwrap_or(Duration::from_secs(1));
        match error {
            DbError::NotFound => ApiError::NotFound("not found".to_owned()),
            DbError::Conflict { constraint } => {
                ApiError::Conflict(conflict_message(constraint.as_deref()))
            }
            // Postgres names foreign keys `<table>_<column>_fkey`: the row
            // referred to is gone (e.g. deleted meanwhile), which the client
            // sees as a 404 like any other missing row.
            DbError::Constraint { constraint } if constraint.ends_with("_fkey") => {
                ApiError::NotFound("the referenced row does not exist".to_owned())
            }
            DbError::Constraint { constraint } => ApiError::Validation(format!(
                "a value was rejected by the database (constraint {constraint})"
            )),
            DbError::Unavailable { reason, .. } => {
                // The reason may name hosts or socket paths: log it, don't send it.
                tracing::warn!(%reason, "database unavailable");
                ApiError::Unavailable {
                    message: "the database is unavailable; retry later".to_owned(),
                    retry_after,
                }
            }
            DbError::Timeout => ApiError::Unavailable {
                message: "the query timed out; retry later".to_owned(),
                retry_after,
            },
            other => ApiError::internal(other),
        }
    }
}

/// Strips axum's generic lead-in so the message starts with what was wrong.
fn rejection_detail(text: &str, lead: &str) -> String {
    text.strip_prefix(lead)
        .map(|rest| rest.trim_start_matches(": ").to_owned())
        .unwrap_or_else(|| text.to_owned())
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Validation(rejection_detail(
                &e.body_text(),
                "Failed to deserialize the JSON body into the target type",
            )),
            JsonRejection::JsonSyntaxError(e) => ApiError::InvalidJson(format!(
                "request body is not valid JSON: {}",
                rejection_detail(&e.body_text(), "Failed to parse the request body as JSON")
            )),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::InvalidJson(format!(
                "request body could not be read: {}",
                other.body_text()
            )),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        if rejection.status().is_server_error() {
            // Route and extractor disagree: a bug in this service.
            return ApiError::internal(rejection.body_text());
        }
        ApiError::Validation(rejection_detail(&rejection.body_text(), "Invalid URL"))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Validation(rejection_detail(
            &rejection.body_text(),
            "Failed to deserialize query string",
        ))
    }
}

/// The router's fallback: an unknown route is a 404 with the usual body.
pub async fn route_not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn parts(error: ApiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    fn assert_body(body: &serde_json::Value, code: &str) {
        let object = body.as_object().unwrap();
        assert_eq!(object.len(), 1, "only `error` at the top: {body}");
        let error = body["error"].as_object().unwrap();
        assert_eq!(error.len(), 2, "only code and message: {body}");
        assert_eq!(error["code"], code);
        assert!(!error["message"].as_str().unwrap().is_empty());
    }

    #[tokio::test]
    async fn every_variant_has_its_status_code_and_body() {
        let cases = [
            (ApiError::InvalidJson("x".into()), 400, "invalid_json"),
            (ApiError::Unauthorized("x".into()), 401, "unauthorized"),
            (ApiError::admin_only(), 403, "forbidden"),
            (ApiError::not_found("conversation"), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::Conflict("x".into()), 409, "conflict"),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::Validation("title: too long".into()),
                422,
                "validation_error",
            ),
            (
                ApiError::Unavailable {
                    message: "down".into(),
                    retry_after: Duration::from_secs(5),
                },
                503,
                "unavailable",
            ),
            (ApiError::internal("boom"), 500, "internal_error"),
        ];
        for (error, status, code) in cases {
            let (got_status, headers, body) = parts(error).await;
            assert_eq!(got_status.as_u16(), status, "{code}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert_body(&body, code);
        }
    }

    #[tokio::test]
    async fn not_found_names_the_thing() {
        let (_, _, body) = parts(ApiError::not_found("conversation")).await;
        assert_eq!(body["error"]["message"], "conversation not found");
    }

    #[tokio::test]
    async fn internal_error_hides_its_cause() {
        let (_, _, body) = parts(ApiError::internal("password=hunter2 in some driver text")).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("something went wrong"), "{message}");
    }

    #[tokio::test]
    async fn unavailable_has_retry_after_in_whole_seconds_at_least_one() {
        for (given, expected) in [
            (Duration::ZERO, "1"),
            (Duration::from_millis(200), "1"),
            (Duration::from_secs(1), "1"),
            (Duration::from_millis(1500), "2"),
            (Duration::from_secs(30), "30"),
        ] {
            let error = ApiError::Unavailable {
                message: "down".into(),
                retry_after: given,
            };
            let (_, headers, _) = parts(error).await;
            assert_eq!(headers[header::RETRY_AFTER], expected, "{given:?}");
        }
    }

    #[tokio::test]
    async fn other_errors_have_no_retry_after() {
        let (_, headers, _) = parts(ApiError::Validation("x".into())).await;
        assert!(headers.get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn db_errors_map_to_the_contract() {
        let unavailable = DbError::Unavailable {
            reason: "circuit breaker open, host 10.0.0.7".into(),
            retry_after: Duration::from_secs(12),
        };
        let (status, headers, body) = parts(unavailable.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "12");
        assert!(!body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10.0.0.7"));

        let (status, headers, _) = parts(DbError::Timeout.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");

        let cases: Vec<(DbError, u16)> = vec![
            (DbError::NotFound, 404),
            (DbError::Conflict { constraint: None }, 409),
            (
                DbError::Constraint {
                    constraint: "ai_messages_role_check".into(),
                },
                422,
            ),
            (
                DbError::Constraint {
                    constraint: "ai_messages_conversation_id_fkey".into(),
                },
                404,
            ),
            (DbError::Query("syntax error at or near".into()), 500),
            (DbError::Decode("column 3".into()), 500),
        ];
        for (error, status) in cases {
            let (got, _, body) = parts(error.into()).await;
            assert_eq!(got.as_u16(), status);
            assert!(!body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("syntax"));
        }
    }

    #[tokio::test]
    async fn conflicts_say_which_value_clashed() {
        let error: ApiError = DbError::Conflict {
            constraint: Some("uq_admin_prompts_category_name".into()),
        }
        .into();
        let (_, _, body) = parts(error).await;
        assert_eq!(
            body["error"]["message"],
            "a prompt with this category and name already exists"
        );
    }

    #[tokio::test]
    async fn route_fallback_is_a_404_body() {
        let (status, _, body) = parts(route_not_found().await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_body(&body, "not_found");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TitleOnly {
        title: Option<String>,
    }

    async fn json_body(content_type: Option<&str>, body: String) -> Result<TitleOnly, ApiError> {
        use axum::extract::FromRequest;
        let mut request = axum::http::Request::post("/");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(axum::body::Body::from(body)).unwrap();
        match Json::<TitleOnly>::from_request(request, &()).await {
            Ok(Json(body)) => Ok(body),
            Err(rejection) => Err(rejection.into()),
        }
    }

    async fn json_rejection(content_type: Option<&str>, body: String) -> ApiError {
        json_body(content_type, body).await.unwrap_err()
    }

    #[tokio::test]
    async fn json_body_rejections_map_to_the_contract() {
        let json = Some("application/json");
        // The extractor takes a well-formed body, so the rejections below are
        // the body's fault, not the set-up's.
        let body = json_body(json, r#"{"title":"t"}"#.into()).await.unwrap();
        assert_eq!(body.title.as_deref(), Some("t"));
        let error = json_rejection(json, "{not json".into()).await;
        assert_eq!(error.code(), "invalid_json");
        let error = json_rejection(Some("text/plain"), "{}".into()).await;
        assert_eq!(error.code(), "unsupported_media_type");
        let error = json_rejection(None, "{}".into()).await;
        assert_eq!(error.code(), "unsupported_media_type");
        let error = json_rejection(json, r#"{"bogus":1}"#.into()).await;
        assert_eq!(error.code(), "validation_error");
        assert!(error.to_string().contains("bogus"), "{error}");
        let error = json_rejection(json, r#"{"title":1}"#.into()).await;
        assert_eq!(error.code(), "validation_error");
        // Over axum's default body limit (2 MB) when no smaller limit is set.
        let huge = format!(r#"{{"title":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
        let error = json_rejection(json, huge).await;
        assert_eq!(error.code(), "payload_too_large");
    }

    #[tokio::test]
    async fn path_and_query_rejections_are_422() {
        use axum::extract::{Path, Query};
        use axum::routing::get;
        use tower::ServiceExt;

        #[derive(Debug, serde::Deserialize)]
        struct Limit {
            limit: Option<i64>,
        }
        /// Echoes the limit it parsed, so the accepted cases show it was read.
        async fn by_id(
            id: Result<Path<uuid::Uuid>, PathRejection>,
            query: Result<Query<Limit>, QueryRejection>,
        ) -> Result<String, ApiError> {
            id?;
            let Query(Limit { limit }) = query?;
            Ok(format!("{limit:?}"))
        }
        let app = axum::Router::new().route("/c/{id}", get(by_id));
        for (uri, status, body) in [
            ("/c/6f1c2f0e-8a4b-4c1d-9e2f-3a4b5c6d7e8f", 200, Some("None")),
            (
                "/c/6f1c2f0e-8a4b-4c1d-9e2f-3a4b5c6d7e8f?limit=5",
                200,
                Some("Some(5)"),
            ),
            ("/c/not-a-uuid", 422, None),
            (
                "/c/6f1c2f0e-8a4b-4c1d-9e2f-3a4b5c6d7e8f?limit=abc",
                422,
                None,
            ),
        ] {
            let request = axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{uri}");
            if let Some(body) = body {
                let bytes = axum::body::to_bytes(response.into_body(), 1024)
                    .await
                    .unwrap();
                assert_eq!(bytes, body, "{uri}");
            }
        }
    }

    #[test]
    fn error_chain_joins_sources() {
        let io = std::io::Error::other("disk full");
        let wrapped = ApiError::internal(io);
        let ApiError::Internal(cause) = &wrapped else {
            unreachable!()
        };
        assert_eq!(pgkit::error::error_chain(cause.as_ref()), "disk full");
        // A cause the text already says is not repeated.
        assert_eq!(
            pgkit::error::error_chain(&wrapped),
            "internal error: disk full"
        );
    }
}
