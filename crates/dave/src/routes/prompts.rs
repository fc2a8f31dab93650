//! `/api/v1/admin/prompts`: versioned prompts, for admins only (403 for
//! everyone else, before the path or body is looked at).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::auth::extract::Admin;
use crate::consistency::LastWrite;
use crate::error::{responses, ApiError, ErrorBody};
use crate::extract::{ApiJson, PromptPath};
use crate::models::{
    CreatePromptVersion, PromptDetail, PromptList, PromptVersionCreated, RollbackPrompt,
};
use crate::repo;
use crate::repo::prompts::NewVersion;
use crate::state::AppState;

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
