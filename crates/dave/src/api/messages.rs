//! `/api/v1/conversations/{id}/messages`: post to and read the messages of
//! one of the caller's conversations. A conversation that is not the
//! caller's answers 404, for posting and reading alike.
//!
//! Below the handlers: the request and response bodies, their rules
//! (`validate`) and the OpenAPI schemas of the rules utoipa cannot state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Schema;
use utoipa::ToSchema;

use super::conversation_not_found;
use super::page::{decode_cursor, page_cursor, Cursor, Listing, PageQuery};
use super::schemas::{self, text, NO_NUL};
use crate::auth::Caller;
use crate::consistency::LastWrite;
use crate::error::{responses, ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::repo;
use crate::repo::messages::NewMessage;
pub use crate::repo::messages::{Message, Role, UnknownRole};
use crate::state::AppState;
use crate::validate::{check_json_object, check_list, check_text, FieldError, JsonObject};

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

// ---------------------------------------------------------------------------
// Request and response bodies
// ---------------------------------------------------------------------------

/// Message content (DESIGN §3).
pub const MAX_MESSAGE_CHARS: usize = 32_000;
/// Items in `resources` or `follow_up_suggestions` (not in the contract).
pub const MAX_LIST_ITEMS: usize = 100;
/// One item of `resources` or `follow_up_suggestions` (not in the contract).
pub const MAX_LIST_ITEM_CHARS: usize = 2_000;

/// Body of `POST /api/v1/conversations/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    pub role: Role,
    /// 1 to 32000 characters.
    #[schema(schema_with = message_content)]
    pub content: String,
    /// Resource references, at most 100 of at most 2000 characters each.
    #[serde(default)]
    #[schema(schema_with = message_list)]
    pub resources: Vec<String>,
    /// Suggested follow-up prompts, at most 100 of at most 2000 characters each.
    #[serde(default)]
    #[schema(schema_with = message_list)]
    pub follow_up_suggestions: Vec<String>,
    /// JSON object, at most 64 KiB; default `{}`.
    #[serde(default)]
    #[schema(schema_with = schemas::json_object)]
    pub metadata: JsonObject,
}

impl CreateMessage {
    /// The message to store, checked.
    pub fn validate(self) -> Result<NewMessage, FieldError> {
        check_text("content", &self.content, 1, MAX_MESSAGE_CHARS)?;
        check_list(
            "resources",
            &self.resources,
            MAX_LIST_ITEMS,
            MAX_LIST_ITEM_CHARS,
        )?;
        check_list(
            "follow_up_suggestions",
            &self.follow_up_suggestions,
            MAX_LIST_ITEMS,
            MAX_LIST_ITEM_CHARS,
        )?;
        check_json_object("metadata", &self.metadata)?;
        Ok(NewMessage {
            role: self.role,
            content: self.content,
            resources: self.resources,
            follow_up_suggestions: self.follow_up_suggestions,
            metadata: self.metadata,
        })
    }
}

/// One page of messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<Message>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `content` of a message.
pub fn message_content() -> Schema {
    text(
        1,
        MAX_MESSAGE_CHARS,
        NO_NUL,
        false,
        "1 to 32000 characters, no NUL",
    )
}

/// `resources` and `follow_up_suggestions` of a message.
pub fn message_list() -> Schema {
    schemas::list(
        MAX_LIST_ITEMS,
        text(
            0,
            MAX_LIST_ITEM_CHARS,
            NO_NUL,
            false,
            "At most 2000 characters, no NUL",
        ),
        "At most 100 items",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::{field_of, parse};
    use crate::validate::JsonObject;
    use serde_json::json;

    #[test]
    fn message_rules() {
        let message = |content: String| CreateMessage {
            role: Role::User,
            content,
            resources: vec![],
            follow_up_suggestions: vec![],
            metadata: JsonObject::new(),
        };
        assert_eq!(field_of(message(String::new()).validate()), "content");
        assert!(message("x".into()).validate().is_ok());
        assert!(message("ü".repeat(32_000)).validate().is_ok());
        assert_eq!(field_of(message("x".repeat(32_001)).validate()), "content");
        assert_eq!(field_of(message("a\0b".into()).validate()), "content");

        let mut with_lists = message("hi".into());
        with_lists.resources = vec!["r".into(); MAX_LIST_ITEMS];
        assert!(with_lists.clone().validate().is_ok());
        with_lists.resources.push("one too many".into());
        assert_eq!(field_of(with_lists.validate()), "resources");

        let mut long_item = message("hi".into());
        long_item.follow_up_suggestions = vec!["ok".into(), "x".repeat(MAX_LIST_ITEM_CHARS + 1)];
        assert_eq!(field_of(long_item.validate()), "follow_up_suggestions[1]");
    }

    #[test]
    fn message_defaults_and_roles() {
        let message: CreateMessage = parse(json!({"role": "assistant", "content": "hi"})).unwrap();
        assert_eq!(message.role, Role::Assistant);
        assert!(message.resources.is_empty() && message.metadata.is_empty());
        assert!(parse::<CreateMessage>(json!({"role": "robot", "content": "hi"})).is_err());
        assert!(parse::<CreateMessage>(json!({"role": "User", "content": "hi"})).is_err());
        assert!(
            parse::<CreateMessage>(json!({"role": "user", "content": "hi", "resources": [1]}))
                .is_err()
        );
        for role in [Role::User, Role::Assistant, Role::System] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert!("robot".parse::<Role>().is_err());
    }
}
