//! `/api/v1/conversations`: create, list, read, change and delete the
//! caller's own conversations. Another user's conversation answers 404, the
//! same as one that does not exist.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::{conversation_not_found, decode_cursor, page_cursor};
use crate::auth::Caller;
use crate::consistency::LastWrite;
use crate::cursor::{Cursor, Listing};
use crate::error::{responses, ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::models::{
    Conversation, ConversationPage, CreateConversation, PageQuery, UpdateConversation,
};
use crate::repo;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/conversations", get(list).post(create))
        .route(
            "/api/v1/conversations/{id}",
            get(read).patch(update).delete(delete),
        )
}

/// Start a conversation.
#[utoipa::path(
    post,
    path = "/api/v1/conversations",
    tag = "conversations",
    request_body(content = CreateConversation, content_type = "application/json",
        description = "Every field is optional; an empty body is `{}`."),
    responses(
        (status = 201, description = "Created", body = Conversation,
            headers(("x-session-token" = String, description = "Only for a caller without credentials: its new anonymous session"))),
        (status = 400, response = responses::InvalidJson),
        (status = 401, response = responses::Unauthorized),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateConversation>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    let new = body.validate()?;
    let conversation = repo::conversations::create(&state.db, caller.user_id, &new).await?;
    Ok((StatusCode::CREATED, Json(conversation)))
}

/// The caller's conversations, newest `updated_at` first.
///
/// A page ends after `limit` items or once its items reach 1 MiB (title,
/// context and metadata), whichever comes first, so a page may hold fewer
/// than `limit` items and still have a `next_cursor`: follow it until it is
/// `null`.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "conversations",
    params(PageQuery),
    responses(
        (status = 200, description = "One page", body = ConversationPage),
        (status = 401, response = responses::Unauthorized),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub async fn list(
    caller: Caller,
    last_write: LastWrite,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ConversationPage>, ApiError> {
    let limit = query.limit()?;
    let listing = Listing::Conversations {
        user_id: caller.user_id,
    };
    let after = decode_cursor(&state, listing, query.cursor.as_deref())?;
    let page = state
        .db
        .read(last_write.own_data(), |db| async move {
            repo::conversations::list(&db, caller.user_id, limit, after).await
        })
        .await?;
    let next_cursor = page_cursor(&state, listing, &page, |c| Cursor {
        at: c.updated_at,
        id: c.id,
    });
    Ok(Json(ConversationPage {
        items: page.items,
        next_cursor,
    }))
}

/// One of the caller's conversations.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "Found", body = Conversation),
        (status = 401, response = responses::Unauthorized),
        (status = 404, description = "No such conversation for this caller", body = ErrorBody),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub async fn read(
    caller: Caller,
    last_write: LastWrite,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Conversation>, ApiError> {
    state
        .db
        .read(last_write.own_data(), |db| async move {
            repo::conversations::get(&db, id, caller.user_id).await
        })
        .await?
        .map(Json)
        .ok_or_else(conversation_not_found)
}

/// Change a conversation's title, context or metadata; `updated_at` moves.
#[utoipa::path(
    patch,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body(content = UpdateConversation, content_type = "application/json",
        description = "Absent or null fields stay as they are; an object replaces the stored one."),
    responses(
        (status = 200, description = "Changed", body = Conversation),
        (status = 400, response = responses::InvalidJson),
        (status = 401, response = responses::Unauthorized),
        (status = 404, description = "No such conversation for this caller", body = ErrorBody),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub async fn update(
    caller: Caller,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateConversation>,
) -> Result<Json<Conversation>, ApiError> {
    let changes = body.validate()?;
    repo::conversations::update(&state.db, id, caller.user_id, &changes)
        .await?
        .map(Json)
        .ok_or_else(conversation_not_found)
}

/// Delete a conversation and its messages.
#[utoipa::path(
    delete,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    responses(
        (status = 204, description = "Deleted, with its messages"),
        (status = 401, response = responses::Unauthorized),
        (status = 404, description = "No such conversation for this caller", body = ErrorBody),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    if repo::conversations::delete(&state.db, id, caller.user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(conversation_not_found())
    }
}
