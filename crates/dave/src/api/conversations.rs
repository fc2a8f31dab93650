//! `/api/v1/conversations`: create, list, read, change and delete the
//! caller's own conversations. Another user's conversation answers 404, the
//! same as one that does not exist.
//!
//! Below the handlers: the request and response bodies, their rules
//! (`validate`) and the OpenAPI schema of the rules utoipa cannot state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Schema;
use utoipa::ToSchema;

use super::conversation_not_found;
use super::page::{decode_cursor, page_cursor, Cursor, Listing, PageQuery};
use super::schemas::{self, text, NOT_BLANK};
use crate::auth::Caller;
use crate::consistency::LastWrite;
use crate::error::{responses, ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::repo;
pub use crate::repo::conversations::Conversation;
use crate::repo::conversations::{ConversationChanges, NewConversation};
use crate::state::AppState;
use crate::validate::{check_json_object, trimmed_text, FieldError, JsonObject};

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

// ---------------------------------------------------------------------------
// Request and response bodies
// ---------------------------------------------------------------------------

/// Conversation title, after trimming (DESIGN §3).
pub const MAX_TITLE_CHARS: usize = 200;
/// Title given to a conversation created without one (DESIGN §3).
pub const DEFAULT_TITLE: &str = "New Conversation";

/// Body of `POST /api/v1/conversations`. Every field is optional.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// 1 to 200 characters after trimming; default "New Conversation".
    #[schema(schema_with = conversation_title)]
    pub title: Option<String>,
    /// JSON object, at most 64 KiB; default `{}`.
    #[schema(schema_with = schemas::json_object_or_null)]
    pub context: Option<JsonObject>,
    /// JSON object, at most 64 KiB; default `{}`.
    #[schema(schema_with = schemas::json_object_or_null)]
    pub metadata: Option<JsonObject>,
}

impl CreateConversation {
    pub fn validate(self) -> Result<NewConversation, FieldError> {
        let title = match self.title {
            Some(title) => trimmed_text("title", &title, MAX_TITLE_CHARS)?,
            None => DEFAULT_TITLE.to_owned(),
        };
        let context = self.context.unwrap_or_default();
        check_json_object("context", &context)?;
        let metadata = self.metadata.unwrap_or_default();
        check_json_object("metadata", &metadata)?;
        Ok(NewConversation {
            title,
            context,
            metadata,
        })
    }
}

/// Body of `PATCH /api/v1/conversations/{id}`. A field that is absent or
/// `null` is left as it is; an object replaces the stored one whole.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    /// 1 to 200 characters after trimming.
    #[schema(schema_with = conversation_title)]
    pub title: Option<String>,
    /// Replaces the context; JSON object, at most 64 KiB.
    #[schema(schema_with = schemas::json_object_or_null)]
    pub context: Option<JsonObject>,
    /// Replaces the metadata; JSON object, at most 64 KiB.
    #[schema(schema_with = schemas::json_object_or_null)]
    pub metadata: Option<JsonObject>,
}

impl UpdateConversation {
    pub fn validate(self) -> Result<ConversationChanges, FieldError> {
        let title = match self.title {
            Some(title) => Some(trimmed_text("title", &title, MAX_TITLE_CHARS)?),
            None => None,
        };
        if let Some(context) = &self.context {
            check_json_object("context", context)?;
        }
        if let Some(metadata) = &self.metadata {
            check_json_object("metadata", metadata)?;
        }
        Ok(ConversationChanges {
            title,
            context: self.context,
            metadata: self.metadata,
        })
    }
}

/// One page of conversations, newest `updated_at` first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `title` of a conversation: optional, `null` means absent.
pub fn conversation_title() -> Schema {
    text(
        1,
        MAX_TITLE_CHARS,
        NOT_BLANK,
        true,
        "1 to 200 characters after trimming, not only whitespace, no NUL",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::{field_of, parse};
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    #[test]
    fn conversation_defaults() {
        let new = parse::<CreateConversation>(json!({}))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(new.title, "New Conversation");
        assert!(new.context.is_empty() && new.metadata.is_empty());
    }

    #[test]
    fn title_is_trimmed_and_bounded_in_characters() {
        let title = |t: String| {
            CreateConversation {
                title: Some(t),
                ..Default::default()
            }
            .validate()
        };
        assert_eq!(title("  Hello  ".into()).unwrap().title, "Hello");
        assert_eq!(field_of(title(String::new())), "title");
        assert_eq!(field_of(title("   \t ".into())), "title");
        assert_eq!(title("x".into()).unwrap().title, "x");
        assert!(title("é".repeat(200)).is_ok(), "200 characters, 400 bytes");
        assert!(title(format!("  {}  ", "x".repeat(200))).is_ok());
        assert_eq!(field_of(title("x".repeat(201))), "title");
        assert_eq!(field_of(title("a\0b".into())), "title");
    }

    #[test]
    fn an_object_over_64_kib_names_its_field() {
        let big = json!({"k": "x".repeat(crate::validate::MAX_JSON_OBJECT_BYTES)});
        let create = CreateConversation {
            metadata: big.as_object().cloned(),
            ..Default::default()
        };
        assert_eq!(field_of(create.validate()), "metadata");
    }

    #[test]
    fn patch_keeps_absent_fields() {
        let changes = parse::<UpdateConversation>(json!({"metadata": {"k": "v"}, "title": null}))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(changes.title, None);
        assert_eq!(changes.context, None);
        assert_eq!(changes.metadata.unwrap()["k"], "v");
        assert_eq!(
            field_of(
                UpdateConversation {
                    title: Some(" ".into()),
                    ..Default::default()
                }
                .validate()
            ),
            "title"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_with_offset_and_microseconds() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 14, 0, 0).unwrap()
            + chrono::Duration::microseconds(7);
        let conversation = Conversation {
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            title: "t".into(),
            context: (&JsonObject::new()).into(),
            metadata: (&JsonObject::new()).into(),
            created_at: at,
            updated_at: at,
        };
        let value = serde_json::to_value(&conversation).unwrap();
        assert_eq!(value["created_at"], "2026-11-26T14:00:00.000007+00:00");
        let parsed = DateTime::parse_from_rfc3339(value["updated_at"].as_str().unwrap()).unwrap();
        assert_eq!(parsed, at);
        assert_eq!(value["id"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(
            value.as_object().unwrap().keys().collect::<Vec<_>>(),
            [
                "context",
                "created_at",
                "id",
                "metadata",
                "title",
                "updated_at",
                "user_id"
            ]
        );
    }

    #[test]
    fn page_shape() {
        let page = ConversationPage {
            items: vec![],
            next_cursor: None,
        };
        assert_eq!(
            serde_json::to_value(page).unwrap(),
            json!({"items": [], "next_cursor": null})
        );
    }
}
