//! Request extractors whose rejections speak the contract's error body.
//!
//! axum's own `Json`, `Path` and `Query` answer in plain text with their own
//! statuses; DESIGN §3 wants every failure as `{"error":{...}}` with a fixed
//! status per kind. So handlers take [`ApiJson`], [`PathId`],
//! [`PromptPath`](crate::api::prompts::PromptPath) and [`ApiQuery`] instead:
//!
//! - body over 1 MiB → 413 (refused from `Content-Length` before reading,
//!   and again while reading a body that does not declare its length);
//! - a body that is not `application/json` (or `application/*+json`) → 415;
//! - not JSON at all, or cut short → 400 `invalid_json`;
//! - JSON of the wrong shape (unknown field, wrong type, missing field) →
//!   422 naming the field (the type's `validate` then applies its rules);
//! - a malformed UUID, a query value of the wrong type or an unusable
//!   prompt path segment → 422.
//!
//! An empty body counts as `{}`: `POST /api/v1/conversations` with no body
//! creates a conversation with the defaults, and a route with required fields
//! answers 422 naming the first missing one.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// The largest request body accepted (DESIGN §3: 413 above it).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON request body of type `T`. Parsing answers for the shape; the
/// contract's field rules are the type's own `validate` (see
/// [`crate::api`]), which the handler calls.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        if declares_too_large(&parts.headers) {
            return Err(ApiError::PayloadTooLarge);
        }
        let bytes = read_body(body).await?;
        let bytes: &[u8] = if bytes.is_empty() {
            b"{}"
        } else if is_json(&parts.headers) {
            &bytes
        } else {
            return Err(ApiError::UnsupportedMediaType);
        };
        parse_json(bytes).map(ApiJson)
    }
}

/// Whether `Content-Length` announces a body over [`MAX_BODY_BYTES`]: such a
/// request gets its 413 before any of the body is read (here and in the
/// middleware, which refuses it before the route runs).
///
/// Hand-written rather than tower-http's `RequestBodyLimitLayer` (issue 12
/// §2): that layer answers a declared oversized body itself, with a
/// plain-text 413, where the contract wants `{"error":{"code":
/// "payload_too_large",...}}`. Bodies without a declared length are cut by
/// `http_body_util`'s `Limited` (through `axum::body::to_bytes`) and mapped
/// to the same answer in [`read_body`].
pub(crate) fn declares_too_large(headers: &HeaderMap) -> bool {
    declared_length(headers).is_some_and(|n| n > MAX_BODY_BYTES as u64)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            if is_length_limit(&error) {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidJson("the request body could not be read to its end".to_owned())
            }
        })
}

/// Whether reading stopped at a length limit: ours, or a body-limit layer's.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// `application/json` or `application/<anything>+json`, any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Parses `bytes` as one JSON value of type `T`; syntax errors are 400,
/// shape errors 422 with the path of the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        json_error(error.into_inner(), &path)
    })?;
    deserializer.end().map_err(|error| json_error(error, "."))?;
    Ok(value)
}

fn json_error(error: serde_json::Error, path: &str) -> ApiError {
    use serde_json::error::Category;
    let text = without_position(&error.to_string());
    match error.classify() {
        Category::Data if path == "." || path.is_empty() => ApiError::Validation(text),
        Category::Data => ApiError::Validation(format!("{path}: {text}")),
        Category::Syntax | Category::Eof | Category::Io => ApiError::InvalidJson(format!(
            "request body is not valid JSON ({text} at line {}, column {})",
            error.line(),
            error.column()
        )),
    }
}

/// serde_json ends its messages with " at line L column C"; for a shape
/// error the field path says more than a column.
fn without_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

/// A row id from the path (`/conversations/{id}`); not a UUID → 422.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            Err(rejection) if rejection.status().is_server_error() => Err(rejection.into()),
            Err(_) => Err(ApiError::Validation(
                "id: the id in the path is not a UUID (expected e.g. 123e4567-e89b-12d3-a456-426614174000)"
                    .to_owned(),
            )),
        }
    }
}

/// A query string of type `T` (e.g. [`crate::api::page::PageQuery`]); a value
/// of the wrong type is a 422 naming the parameter. Unknown parameters are
/// ignored.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        title: Option<String>,
        count: Option<u8>,
    }

    async fn extract(content_type: Option<&str>, body: &str) -> Result<Sample, ApiError> {
        let mut builder = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let request = builder.body(Body::from(body.to_owned())).unwrap();
        ApiJson::<Sample>::from_request(request, &())
            .await
            .map(|j| j.0)
    }

    fn code(result: Result<Sample, ApiError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[tokio::test]
    async fn accepts_json_and_json_suffix_types() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            let body = extract(Some(ct), r#"{"title":"a"}"#).await.unwrap();
            assert_eq!(body.title.as_deref(), Some("a"), "{ct}");
        }
    }

    #[tokio::test]
    async fn empty_body_is_an_empty_object() {
        let body = extract(None, "").await.unwrap();
        assert!(body.title.is_none() && body.count.is_none());
    }

    #[tokio::test]
    async fn wrong_or_missing_content_type_is_415() {
        assert_eq!(
            code(extract(Some("text/plain"), r#"{"title":"a"}"#).await),
            "unsupported_media_type"
        );
        assert_eq!(
            code(extract(None, r#"{"title":"a"}"#).await),
            "unsupported_media_type"
        );
        assert_eq!(
            code(extract(Some("application/jsonx"), "{}").await),
            "unsupported_media_type"
        );
    }

    #[tokio::test]
    async fn syntax_errors_are_400_shape_errors_422_naming_the_field() {
        assert_eq!(
            code(extract(Some("application/json"), "{not json").await),
            "invalid_json"
        );
        assert_eq!(
            code(extract(Some("application/json"), r#"{"title":"a"} x"#).await),
            "invalid_json"
        );
        let error = extract(Some("application/json"), r#"{"count":"x"}"#)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "validation_error");
        assert!(
            error.to_string().starts_with("count: invalid type"),
            "{error}"
        );
        let error = extract(Some("application/json"), r#"{"bogus":1}"#)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "validation_error");
        assert!(
            error.to_string().contains("unknown field `bogus`"),
            "{error}"
        );
        let error = extract(Some("application/json"), r#"{"count":300}"#)
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with("count: "), "{error}");
    }

    #[tokio::test]
    async fn bodies_over_one_mebibyte_are_413() {
        let big = format!(r#"{{"title":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(
            code(extract(Some("application/json"), &big).await),
            "payload_too_large"
        );
        let mut request = Request::builder()
            .method("POST")
            .uri("/")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        request.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(MAX_BODY_BYTES + 1),
        );
        let error = ApiJson::<Sample>::from_request(request, &())
            .await
            .unwrap_err();
        assert_eq!(error.code(), "payload_too_large");
    }
}
