//! `admin_prompts` and `admin_prompt_versions`: versioned prompts.
//!
//! A new version is numbered `max + 1` and becomes current. Two admins
//! posting at once must never get the same number, so the transaction first
//! takes the prompt row's lock (the upsert does: it inserts the prompt, or
//! updates it and so locks it) and only then reads the highest number, in a
//! later statement whose snapshot sees every version committed before the
//! lock was granted. The unique constraint on `(prompt_id, version_number)`
//! stays as the backstop. Rollback and detail are one statement each.

use chrono::{DateTime, Utc};
use pgkit::error::DbError;
use pgkit::pool::{Database, PooledConn};
use pgkit::repo::{col, FromRow, Row};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::json::rfc3339;

/// One prompt in the list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PromptSummary {
    pub category: String,
    pub name: String,
    pub description: Option<String>,
    /// Number of the version in use; `null` before the first version.
    pub current_version: Option<i32>,
}

/// One immutable version of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PromptVersion {
    pub version_number: i32,
    pub content: String,
    pub commit_message: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// `GET /api/v1/admin/prompts/{category}/{name}`, and the answer to a rollback.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PromptDetail {
    pub category: String,
    pub name: String,
    pub description: Option<String>,
    /// The version in use; `null` before the first version.
    pub current_version: Option<PromptVersion>,
    /// How many versions exist.
    pub versions: i64,
}

/// Answer to `POST .../versions`: the new version, which is now current.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PromptVersionCreated {
    pub category: String,
    pub name: String,
    pub version_number: i32,
    pub content: String,
    pub commit_message: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

const LIST: &str =
    "SELECT category, name, description, current_version FROM admin_prompts ORDER BY category, name";

const DETAIL: &str = "SELECT p.category, p.name, p.description, \
         v.version_number, v.content, v.commit_message, v.created_at, \
         (SELECT count(*) FROM admin_prompt_versions c WHERE c.prompt_id = p.id) AS versions \
     FROM admin_prompts p \
     LEFT JOIN admin_prompt_versions v ON v.prompt_id = p.id AND v.version_number = p.current_version \
     WHERE p.category = $1 AND p.name = $2";

/// Creates the prompt or locks it; either way its row is ours until commit.
const LOCK_PROMPT: &str = "INSERT INTO admin_prompts (category, name) VALUES ($1, $2) \
     ON CONFLICT (category, name) DO UPDATE SET updated_at = NOW() \
     RETURNING id";

/// Under the prompt's lock: the next number, made current in the same statement.
const ADD_VERSION: &str = "WITH added AS ( \
         INSERT INTO admin_prompt_versions (prompt_id, version_number, content, commit_message, created_by) \
         SELECT $1, COALESCE(MAX(version_number), 0) + 1, $2, $3, $4 \
         FROM admin_prompt_versions WHERE prompt_id = $1 \
         RETURNING version_number, content, commit_message, created_at \
     ), made_current AS ( \
         UPDATE admin_prompts SET current_version = (SELECT version_number FROM added) WHERE id = $1 \
     ) \
     SELECT version_number, content, commit_message, created_at FROM added";

/// Makes an existing version current and answers with the prompt's detail;
/// no row when the prompt or the version does not exist.
const ROLLBACK: &str = "WITH p AS ( \
         UPDATE admin_prompts p SET current_version = $3 \
         WHERE p.category = $1 AND p.name = $2 AND EXISTS ( \
             SELECT 1 FROM admin_prompt_versions v WHERE v.prompt_id = p.id AND v.version_number = $3) \
         RETURNING p.id, p.category, p.name, p.description, p.current_version \
     ) \
     SELECT p.category, p.name, p.description, \
         v.version_number, v.content, v.commit_message, v.created_at, \
         (SELECT count(*) FROM admin_prompt_versions c WHERE c.prompt_id = p.id) AS versions \
     FROM p JOIN admin_prompt_versions v ON v.prompt_id = p.id AND v.version_number = p.current_version";

impl FromRow for PromptSummary {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(PromptSummary {
            category: col(row, "category")?,
            name: col(row, "name")?,
            description: col(row, "description")?,
            current_version: col(row, "current_version")?,
        })
    }
}

impl FromRow for PromptDetail {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        let current_version = match col::<Option<i32>>(row, "version_number")? {
            None => None,
            Some(version_number) => Some(PromptVersion {
                version_number,
                content: col(row, "content")?,
                commit_message: col(row, "commit_message")?,
                created_at: col(row, "created_at")?,
            }),
        };
        Ok(PromptDetail {
            category: col(row, "category")?,
            name: col(row, "name")?,
            description: col(row, "description")?,
            current_version,
            versions: col(row, "versions")?,
        })
    }
}

impl FromRow for PromptVersion {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(PromptVersion {
            version_number: col(row, "version_number")?,
            content: col(row, "content")?,
            commit_message: col(row, "commit_message")?,
            created_at: col(row, "created_at")?,
        })
    }
}

/// Every prompt, by category and name.
pub async fn list(db: &Database) -> Result<Vec<PromptSummary>, DbError> {
    db.fetch_all(LIST, &[]).await
}

pub async fn get(
    db: &Database,
    category: &str,
    name: &str,
) -> Result<Option<PromptDetail>, DbError> {
    db.fetch_optional(DETAIL, &[&category, &name]).await
}

/// A version to add: its text and who posted it.
#[derive(Debug, Clone, Copy)]
pub struct NewVersion<'a> {
    pub content: &'a str,
    pub commit_message: &'a str,
    pub created_by: Uuid,
}

/// Adds the next version (creating the prompt on its first version) and
/// makes it current.
pub async fn add_version(
    db: &Database,
    category: &str,
    name: &str,
    version: NewVersion<'_>,
) -> Result<PromptVersionCreated, DbError> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    match add_version_locked(&mut tx, category, name, version).await {
        Ok(added) => {
            tx.commit().await?;
            Ok(PromptVersionCreated {
                category: category.to_owned(),
                name: name.to_owned(),
                version_number: added.version_number,
                content: added.content,
                commit_message: added.commit_message,
                created_at: added.created_at,
            })
        }
        Err(error) => {
            // Roll back here so the connection can go back to the pool; if the
            // connection itself failed, the dropped transaction closes it.
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

async fn add_version_locked(
    conn: &mut PooledConn,
    category: &str,
    name: &str,
    version: NewVersion<'_>,
) -> Result<PromptVersion, DbError> {
    let prompt_id: Uuid = conn.fetch_val(LOCK_PROMPT, &[&category, &name]).await?;
    conn.fetch_one(
        ADD_VERSION,
        &[
            &prompt_id,
            &version.content,
            &version.commit_message,
            &version.created_by,
        ],
    )
    .await
}

/// Makes `version_number` current; `None` when the prompt or that version
/// does not exist.
pub async fn rollback(
    db: &Database,
    category: &str,
    name: &str,
    version_number: i32,
) -> Result<Option<PromptDetail>, DbError> {
    db.fetch_optional(ROLLBACK, &[&category, &name, &version_number])
        .await
}
