//! `/api/v1/conversations/{id}/messages`: post to and read the messages of
//! one of the caller's conversations. A conversation that is not the
//! caller's answers 404, for posting and reading alike.

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
use crate::models::{CreateMessage, Message, MessagePage, PageQuery};
use crate::repo;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/conversations/{id}/messages",
        get(list).post(create),
    )
}

/// Add a message; the conversation's `updated_at` moves with it.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages",
    tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body(content = CreateMessage, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Message),
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
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    PathId(conversation_id): PathId,
    ApiJson(body): ApiJson<CreateMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let message = body.validate()?;
    let created = repo::messages::create(&state.db, conversation_id, caller.user_id, &message)
        .await?
        .ok_or_else(conversation_not_found)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A conversation's messages, oldest first.
///
/// A page ends after `limit` items or once its items reach 1 MiB (content,
/// resources, suggestions and metadata), whichever comes first, so a page
/// may hold fewer than `limit` items and still have a `next_cursor`: follow
/// it until it is `null`.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Conversation id"), PageQuery),
    responses(
        (status = 200, description = "One page", body = MessagePage),
        (status = 401, response = responses::Unauthorized),
        (status = 404, description = "No such conversation for this caller", body = ErrorBody),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub async fn list(
    caller: Caller,
    last_write: LastWrite,
    State(state): State<AppState>,
    PathId(conversation_id): PathId,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = query.limit()?;
    let listing = Listing::Messages { conversation_id };
    let after = decode_cursor(&state, listing, query.cursor.as_deref())?;
    let page = state
        .db
        .read(last_write.own_data(), |db| async move {
            repo::messages::list(&db, conversation_id, caller.user_id, limit, after).await
        })
        .await?
        .ok_or_else(conversation_not_found)?;
    let next_cursor = page_cursor(&state, listing, &page, |m| Cursor {
        at: m.created_at,
        id: m.id,
    });
    Ok(Json(MessagePage {
        items: page.items,
        next_cursor,
    }))
}
