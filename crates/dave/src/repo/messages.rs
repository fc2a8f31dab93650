//! `ai_messages`: the messages of a conversation, reached only through a
//! conversation the caller owns.
//!
//! Both statements fold the ownership check into the work, so each request
//! is one round trip: posting runs `UPDATE ai_conversations ... WHERE id AND
//! user_id RETURNING id` as a data-modifying CTE and inserts only if it
//! returned the row (the update is also what moves the conversation's
//! `updated_at`, atomically with the insert, since one statement is one
//! transaction); listing joins the page of messages to the owned
//! conversation, so "not yours or missing" (no row at all) is told apart from
//! "yours but empty" (one row with NULL message columns).
//!
//! Order is oldest first, keyset on `(created_at, id)`, served by
//! `idx_ai_messages_conversation_created`. A page also ends once its rows
//! reach [`PAGE_BYTES`] (see there).

use chrono::{DateTime, Utc};
use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::repo::{col, FromRow, Json, Row, Within};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{fetch_size, json_object, Cursor, Page, PAGE_BYTES};
use crate::json::{rfc3339, JsonObject, StoredJson};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
}

impl Role {
    /// The value stored in `ai_messages.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        }
    }
}

/// A stored role the migrations' CHECK constraint would not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message role {0:?}; expected user, assistant or system")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "system" => Ok(Role::System),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A message as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub role: Role,
    pub content: String,
    pub resources: Vec<String>,
    pub follow_up_suggestions: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: StoredJson,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// A message ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub resources: Vec<String>,
    pub follow_up_suggestions: Vec<String>,
    pub metadata: JsonObject,
}

pub const INSERT: &str = "WITH owned AS ( \
         UPDATE ai_conversations SET updated_at = NOW() \
         WHERE id = $1 AND user_id = $2 RETURNING id \
     ) \
     INSERT INTO ai_messages (conversation_id, role, content, resources, follow_up_suggestions, metadata) \
     SELECT id, $3, $4, $5, $6, $7 FROM owned \
     RETURNING id, conversation_id, role, content, resources, follow_up_suggestions, metadata, created_at";

/// A page of one conversation's messages, oldest first: `$3` rows (the
/// caller keeps them within [`PAGE_BYTES`]); an owned conversation without
/// (more) messages is one row of NULLs.
pub const LIST_FIRST: &str = "SELECT m.id, m.conversation_id, m.role, m.content, m.resources, \
         m.follow_up_suggestions, m.metadata, m.created_at \
     FROM ai_conversations c \
     LEFT JOIN LATERAL ( \
         SELECT id, conversation_id, role, content, resources, follow_up_suggestions, metadata, created_at \
         FROM ai_messages WHERE conversation_id = c.id \
         ORDER BY created_at, id LIMIT $3 \
     ) m ON TRUE \
     WHERE c.id = $1 AND c.user_id = $2 \
     ORDER BY m.created_at, m.id";

/// [`LIST_FIRST`] after the position `($4, $5)`.
pub const LIST_AFTER: &str = "SELECT m.id, m.conversation_id, m.role, m.content, m.resources, \
         m.follow_up_suggestions, m.metadata, m.created_at \
     FROM ai_conversations c \
     LEFT JOIN LATERAL ( \
         SELECT id, conversation_id, role, content, resources, follow_up_suggestions, metadata, created_at \
         FROM ai_messages WHERE conversation_id = c.id AND (created_at, id) > ($4, $5) \
         ORDER BY created_at, id LIMIT $3 \
     ) m ON TRUE \
     WHERE c.id = $1 AND c.user_id = $2 \
     ORDER BY m.created_at, m.id";

impl FromRow for Message {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        let role: &str = col(row, "role")?;
        Ok(Message {
            id: col(row, "id")?,
            conversation_id: col(row, "conversation_id")?,
            role: role
                .parse::<Role>()
                .map_err(|e| DbError::Decode(format!("column role: {e}")))?,
            content: col(row, "content")?,
            resources: col(row, "resources")?,
            follow_up_suggestions: col(row, "follow_up_suggestions")?,
            metadata: json_object(row, "metadata")?,
            created_at: col(row, "created_at")?,
        })
    }
}

/// A row of the list statements: a message, or the NULLs of an owned
/// conversation without (more) messages.
struct Slot(Option<Message>);

impl FromRow for Slot {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        match col::<Option<Uuid>>(row, "id")? {
            None => Ok(Slot(None)),
            Some(_) => Message::from_row(row).map(|m| Slot(Some(m))),
        }
    }
}

/// The new message, or `None` when the caller has no such conversation.
pub async fn create(
    db: &Database,
    conversation_id: Uuid,
    user_id: Uuid,
    message: &NewMessage,
) -> Result<Option<Message>, DbError> {
    db.fetch_optional(
        INSERT,
        &[
            &conversation_id,
            &user_id,
            &message.role.as_str(),
            &message.content,
            &message.resources,
            &message.follow_up_suggestions,
            &Json(&message.metadata),
        ],
    )
    .await
}

/// A page of messages after `after`, oldest first, at most `limit` of them
/// and about [`PAGE_BYTES`]; `None` when the caller has no such conversation.
pub async fn list(
    db: &Database,
    conversation_id: Uuid,
    user_id: Uuid,
    limit: i64,
    after: Option<Cursor>,
) -> Result<Option<Page<Message>>, DbError> {
    let rows = fetch_size(limit);
    let slots: Within<Slot> = match after {
        None => {
            db.fetch_within(LIST_FIRST, &[&conversation_id, &user_id, &rows], PAGE_BYTES)
                .await?
        }
        Some(Cursor { at, id }) => {
            db.fetch_within(
                LIST_AFTER,
                &[&conversation_id, &user_id, &rows, &at, &id],
                PAGE_BYTES,
            )
            .await?
        }
    };
    if slots.rows.is_empty() {
        return Ok(None);
    }
    let messages = Within {
        rows: slots.rows.into_iter().filter_map(|Slot(m)| m).collect(),
        cut: slots.cut,
    };
    Ok(Some(Page::from_rows(messages, limit)))
}
