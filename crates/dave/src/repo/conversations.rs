//! `ai_conversations`: one user's conversations, every statement scoped by
//! `user_id`.
//!
//! Pagination is keyset on `(updated_at, id)`, newest first, served by the
//! index `idx_ai_conversations_user_updated (user_id, updated_at DESC, id
//! DESC)`; the first page and the following ones are separate statements so
//! each has a plan that walks that index from the right place. A page also
//! ends once its rows reach [`PAGE_BYTES`] (see there).

use chrono::{DateTime, Utc};
use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::repo::{col, FromRow, Json, Row};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{fetch_size, json_object, Cursor, Page, PAGE_BYTES};
use crate::json::{rfc3339, JsonObject, StoredJson};

/// A conversation as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Conversation {
    pub id: Uuid,
    pub user_id: Uuid,
    pub title: String,
    #[schema(value_type = Object)]
    pub context: StoredJson,
    #[schema(value_type = Object)]
    pub metadata: StoredJson,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Moves on every change and on every new message.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// A conversation ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    pub title: String,
    pub context: JsonObject,
    pub metadata: JsonObject,
}

/// The checked changes of a PATCH; `None` means "keep".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationChanges {
    pub title: Option<String>,
    pub context: Option<JsonObject>,
    pub metadata: Option<JsonObject>,
}

pub const INSERT: &str = "INSERT INTO ai_conversations (user_id, title, context, metadata) \
     VALUES ($1, $2, $3, $4) \
     RETURNING id, user_id, title, context, metadata, created_at, updated_at";

pub const GET: &str = "SELECT id, user_id, title, context, metadata, created_at, updated_at \
     FROM ai_conversations WHERE id = $1 AND user_id = $2";

/// A page of the caller's conversations, newest first: `$2` rows (the
/// caller keeps them within [`PAGE_BYTES`]).
pub const LIST_FIRST: &str =
    "SELECT id, user_id, title, context, metadata, created_at, updated_at \
     FROM ai_conversations WHERE user_id = $1 \
     ORDER BY updated_at DESC, id DESC LIMIT $2";

/// [`LIST_FIRST`] after the position `($2, $3)`.
pub const LIST_AFTER: &str =
    "SELECT id, user_id, title, context, metadata, created_at, updated_at \
     FROM ai_conversations WHERE user_id = $1 AND (updated_at, id) < ($2, $3) \
     ORDER BY updated_at DESC, id DESC LIMIT $4";

/// Absent fields stay as they are; the trigger moves `updated_at`.
pub const UPDATE: &str = "UPDATE ai_conversations \
     SET title = COALESCE($3, title), context = COALESCE($4, context), metadata = COALESCE($5, metadata) \
     WHERE id = $1 AND user_id = $2 \
     RETURNING id, user_id, title, context, metadata, created_at, updated_at";

/// Its messages go with it (`ON DELETE CASCADE`).
pub const DELETE: &str = "DELETE FROM ai_conversations WHERE id = $1 AND user_id = $2";

impl FromRow for Conversation {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Conversation {
            id: col(row, "id")?,
            user_id: col(row, "user_id")?,
            title: col(row, "title")?,
            context: json_object(row, "context")?,
            metadata: json_object(row, "metadata")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

pub async fn create(
    db: &Database,
    user_id: Uuid,
    new: &NewConversation,
) -> Result<Conversation, DbError> {
    db.fetch_one(
        INSERT,
        &[
            &user_id,
            &new.title,
            &Json(&new.context),
            &Json(&new.metadata),
        ],
    )
    .await
}

pub async fn get(db: &Database, id: Uuid, user_id: Uuid) -> Result<Option<Conversation>, DbError> {
    db.fetch_optional(GET, &[&id, &user_id]).await
}

/// A page of conversations after `after`: at most `limit` of them and
/// about [`PAGE_BYTES`].
pub async fn list(
    db: &Database,
    user_id: Uuid,
    limit: i64,
    after: Option<Cursor>,
) -> Result<Page<Conversation>, DbError> {
    let rows = fetch_size(limit);
    let within = match after {
        None => {
            db.fetch_within(LIST_FIRST, &[&user_id, &rows], PAGE_BYTES)
                .await?
        }
        Some(Cursor { at, id }) => {
            db.fetch_within(LIST_AFTER, &[&user_id, &at, &id, &rows], PAGE_BYTES)
                .await?
        }
    };
    Ok(Page::from_rows(within, limit))
}

pub async fn update(
    db: &Database,
    id: Uuid,
    user_id: Uuid,
    changes: &ConversationChanges,
) -> Result<Option<Conversation>, DbError> {
    let context = changes.context.as_ref().map(Json);
    let metadata = changes.metadata.as_ref().map(Json);
    db.fetch_optional(
        UPDATE,
        &[&id, &user_id, &changes.title, &context, &metadata],
    )
    .await
}

/// `false` when the caller has no such conversation.
pub async fn delete(db: &Database, id: Uuid, user_id: Uuid) -> Result<bool, DbError> {
    Ok(db.execute(DELETE, &[&id, &user_id]).await? == 1)
}
