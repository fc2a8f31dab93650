//! `/api/v1/admin/prompts`: versioned prompts, for admins only (403 for
//! everyone else, before the path or body is looked at).
//!
//! Below the handlers: the `{category}/{name}` path extractor, the request
//! and response bodies, their rules (`validate`) and the OpenAPI schemas of
//! the rules utoipa cannot state.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Schema;
use utoipa::ToSchema;

use super::schemas::{text, NOT_BLANK};
use crate::auth::extract::Admin;
use crate::consistency::LastWrite;
use crate::error::{responses, ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::repo;
use crate::repo::prompts::NewVersion;
pub use crate::repo::prompts::{PromptDetail, PromptSummary, PromptVersion, PromptVersionCreated};
use crate::state::AppState;
use crate::validate::{check_text, FieldError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/prompts", get(list))
        .route("/api/v1/admin/prompts/{category}/{name}", get(read))
        .route(
            "/api/v1/admin/prompts/{category}/{name}/versions",
            post(add_version),
        )
        .route(
            "/api/v1/admin/prompts/{category}/{name}/rollback",
            post(rollback),
        )
}

/// Every prompt with the number of its current version.
#[utoipa::path(
    get,
    path = "/api/v1/admin/prompts",
    tag = "prompts",
    responses(
        (status = 200, description = "All prompts, by category and name", body = PromptList),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 503, response = responses::Unavailable),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    _admin: Admin,
    last_write: LastWrite,
    State(state): State<AppState>,
) -> Result<Json<PromptList>, ApiError> {
    let items = state
        .db
        .read(last_write.shared_data(), |db| async move {
            repo::prompts::list(&db).await
        })
        .await?;
    Ok(Json(PromptList { items }))
}

/// One prompt: its current version and how many versions it has.
#[utoipa::path(
    get,
    path = "/api/v1/admin/prompts/{category}/{name}",
    tag = "prompts",
    params(
        ("category" = String, Path, description = "1 to 100 characters"),
        ("name" = String, Path, description = "1 to 200 characters"),
    ),
    responses(
        (status = 200, description = "Found", body = PromptDetail),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, description = "No such prompt", body = ErrorBody),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn read(
    _admin: Admin,
    last_write: LastWrite,
    State(state): State<AppState>,
    path: PromptPath,
) -> Result<Json<PromptDetail>, ApiError> {
    let (category, name) = (path.category.as_str(), path.name.as_str());
    state
        .db
        .read(last_write.shared_data(), |db| async move {
            repo::prompts::get(&db, category, name).await
        })
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("prompt"))
}

/// Save a new version, numbered one past the highest; it becomes current.
/// The prompt is created with its first version.
#[utoipa::path(
    post,
    path = "/api/v1/admin/prompts/{category}/{name}/versions",
    tag = "prompts",
    params(
        ("category" = String, Path, description = "1 to 100 characters"),
        ("name" = String, Path, description = "1 to 200 characters"),
    ),
    request_body(content = CreatePromptVersion, content_type = "application/json"),
    responses(
        (status = 201, description = "Saved and made current", body = PromptVersionCreated),
        (status = 400, response = responses::InvalidJson),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn add_version(
    Admin(admin): Admin,
    State(state): State<AppState>,
    path: PromptPath,
    ApiJson(body): ApiJson<CreatePromptVersion>,
) -> Result<(StatusCode, Json<PromptVersionCreated>), ApiError> {
    let body = body.validate()?;
    let version = NewVersion {
        content: &body.content,
        commit_message: &body.commit_message,
        created_by: admin.user_id,
    };
    let created =
        repo::prompts::add_version(&state.db, &path.category, &path.name, version).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Make an earlier (or any existing) version current again.
#[utoipa::path(
    post,
    path = "/api/v1/admin/prompts/{category}/{name}/rollback",
    tag = "prompts",
    params(
        ("category" = String, Path, description = "1 to 100 characters"),
        ("name" = String, Path, description = "1 to 200 characters"),
    ),
    request_body(content = RollbackPrompt, content_type = "application/json"),
    responses(
        (status = 200, description = "That version is now current", body = PromptDetail),
        (status = 400, response = responses::InvalidJson),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, description = "No such prompt or version", body = ErrorBody),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn rollback(
    _admin: Admin,
    State(state): State<AppState>,
    path: PromptPath,
    ApiJson(body): ApiJson<RollbackPrompt>,
) -> Result<Json<PromptDetail>, ApiError> {
    let version_number = body.validate()?;
    repo::prompts::rollback(&state.db, &path.category, &path.name, version_number)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("prompt version"))
}

/// `{category}/{name}` of a prompt, checked against the column limits so a
/// long or odd segment is a 422, not a database error.
#[derive(Debug, Clone, Deserialize)]
pub struct PromptPath {
    pub category: String,
    pub name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for PromptPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(path) = Path::<PromptPath>::from_request_parts(parts, state).await?;
        validate_prompt_key(&path.category, &path.name)?;
        Ok(path)
    }
}

// ---------------------------------------------------------------------------
// Request and response bodies
// ---------------------------------------------------------------------------

/// Prompt version content (the reference's limit).
pub const MAX_PROMPT_CHARS: usize = 100_000;
/// Prompt commit message (the reference's limit).
pub const MAX_COMMIT_MESSAGE_CHARS: usize = 500;
/// Prompt category in a path (`admin_prompts.category` is VARCHAR(100)).
pub const MAX_CATEGORY_CHARS: usize = 100;
/// Prompt name in a path (`admin_prompts.name` is VARCHAR(200)).
pub const MAX_PROMPT_NAME_CHARS: usize = 200;

/// The `{category}/{name}` of a prompt route, checked against the columns so
/// an oversized path is a 422 and not a database error.
pub fn validate_prompt_key(category: &str, name: &str) -> Result<(), FieldError> {
    check_text("category", category, 1, MAX_CATEGORY_CHARS)?;
    check_text("name", name, 1, MAX_PROMPT_NAME_CHARS)?;
    Ok(())
}

/// `GET /api/v1/admin/prompts`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PromptList {
    pub items: Vec<PromptSummary>,
}

/// Body of `POST /api/v1/admin/prompts/{category}/{name}/versions`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePromptVersion {
    /// 1 to 100000 characters.
    #[schema(schema_with = prompt_content)]
    pub content: String,
    /// 1 to 500 characters.
    #[schema(schema_with = commit_message)]
    pub commit_message: String,
}

impl CreatePromptVersion {
    /// The same version, checked.
    pub fn validate(self) -> Result<CreatePromptVersion, FieldError> {
        if self.content.trim().is_empty() {
            return Err(FieldError::new("content", "must not be empty"));
        }
        check_text("content", &self.content, 1, MAX_PROMPT_CHARS)?;
        if self.commit_message.trim().is_empty() {
            return Err(FieldError::new("commit_message", "must not be empty"));
        }
        check_text(
            "commit_message",
            &self.commit_message,
            1,
            MAX_COMMIT_MESSAGE_CHARS,
        )?;
        Ok(self)
    }
}

/// Body of `POST /api/v1/admin/prompts/{category}/{name}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackPrompt {
    /// An existing version number (1 or more). JSON Schema counts `3.0` as
    /// an integer, so a whole number written with a fraction is accepted.
    #[schema(minimum = 1, maximum = 2147483647)]
    #[serde(deserialize_with = "whole_i32")]
    pub version_number: i32,
}

/// An `i32` from any JSON number with a whole value in range (`7`, `7.0`,
/// `7e0`): what JSON Schema's `"type": "integer"` admits.
fn whole_i32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(deserializer)?;
    let whole = if let Some(i) = n.as_i64() {
        i32::try_from(i).ok()
    } else if let Some(f) = n.as_f64() {
        (f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX))
            .then_some(f as i32)
    } else {
        None
    };
    whole
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number of at most 2147483647")))
}

impl RollbackPrompt {
    /// The version number to make current, checked.
    pub fn validate(self) -> Result<i32, FieldError> {
        if self.version_number < 1 {
            return Err(FieldError::new("version_number", "must be 1 or more"));
        }
        Ok(self.version_number)
    }
}

/// `content` of a prompt version.
pub fn prompt_content() -> Schema {
    text(
        1,
        MAX_PROMPT_CHARS,
        NOT_BLANK,
        false,
        "1 to 100000 characters, not only whitespace, no NUL",
    )
}

/// `commit_message` of a prompt version.
pub fn commit_message() -> Schema {
    text(
        1,
        MAX_COMMIT_MESSAGE_CHARS,
        NOT_BLANK,
        false,
        "1 to 500 characters, not only whitespace, no NUL",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::field_of;
    use serde_json::json;

    #[test]
    fn prompt_rules() {
        let version = |content: &str, message: &str| CreatePromptVersion {
            content: content.into(),
            commit_message: message.into(),
        };
        assert!(version("v1", "first").validate().is_ok());
        assert_eq!(field_of(version("", "m").validate()), "content");
        assert_eq!(field_of(version("c", "").validate()), "commit_message");
        assert_eq!(
            field_of(version("c", &"m".repeat(501)).validate()),
            "commit_message"
        );
        assert_eq!(
            field_of(version(&"c".repeat(100_001), "m").validate()),
            "content"
        );
        assert_eq!(RollbackPrompt { version_number: 2 }.validate(), Ok(2));
        assert_eq!(
            field_of(RollbackPrompt { version_number: 0 }.validate()),
            "version_number"
        );
        assert!(validate_prompt_key("system", "default").is_ok());
        assert_eq!(
            field_of(validate_prompt_key(&"c".repeat(101), "n")),
            "category"
        );
        assert_eq!(field_of(validate_prompt_key("c", &"n".repeat(201))), "name");
        assert_eq!(field_of(validate_prompt_key("c", "")), "name");
    }

    #[test]
    fn detail_shape() {
        let detail = PromptDetail {
            category: "system".into(),
            name: "default".into(),
            description: None,
            current_version: None,
            versions: 0,
        };
        assert_eq!(
            serde_json::to_value(detail).unwrap(),
            json!({"category": "system", "name": "default", "description": null,
                   "current_version": null, "versions": 0})
        );
    }
}
