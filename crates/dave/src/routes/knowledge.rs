//! `/api/v1/knowledge`: full-text search for any caller; adding articles is
//! for admins (403 otherwise, before the body is read).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::auth::extract::Admin;
use crate::auth::Caller;
use crate::consistency::LastWrite;
use crate::error::{responses, ApiError};
use crate::extract::{ApiJson, ApiQuery};
use crate::models::{CreateKnowledge, KnowledgeArticle, KnowledgeQuery, KnowledgeResults};
use crate::repo;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/knowledge", get(search).post(create))
}

/// Articles matching `q`, best first (Postgres full-text search, english).
///
/// At most `limit` hits, and fewer once they reach 1 MiB of title, content
/// and tags: there is no next page, so narrow the query for more.
#[utoipa::path(
    get,
    path = "/api/v1/knowledge",
    tag = "knowledge",
    params(KnowledgeQuery),
    responses(
        (status = 200, description = "Matches, best first", body = KnowledgeResults),
        (status = 401, response = responses::Unauthorized),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub async fn search(
    _caller: Caller,
    last_write: LastWrite,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<KnowledgeQuery>,
) -> Result<Json<KnowledgeResults>, ApiError> {
    let search = query.validate()?;
    let (q, limit) = (search.q.as_str(), search.limit);
    let items = state
        .db
        .read(last_write.shared_data(), |db| async move {
            repo::knowledge::search(&db, q, limit).await
        })
        .await?;
    Ok(Json(KnowledgeResults { items }))
}

/// Add an article (admin only).
#[utoipa::path(
    post,
    path = "/api/v1/knowledge",
    tag = "knowledge",
    request_body(content = CreateKnowledge, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = KnowledgeArticle),
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
pub async fn create(
    _admin: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateKnowledge>,
) -> Result<(StatusCode, Json<KnowledgeArticle>), ApiError> {
    let article = body.validate()?;
    let created = repo::knowledge::create(&state.db, &article).await?;
    Ok((StatusCode::CREATED, Json(created)))
}
