//! `api_keys`: machine callers, known by the SHA-256 of their key.
//!
//! The lookup runs on every `X-API-Key` request and is one indexed read
//! (`uq_api_keys_key_hash`); a revoked key is simply not found. Keys are
//! created and revoked by `dave apikey`, which also uses this module.

use chrono::{DateTime, Utc};
use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::repo::{col, FromRow, Row};
use uuid::Uuid;

const FIND_ACTIVE: &str =
    "SELECT user_id, is_admin, tier FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL";

const INSERT: &str = "INSERT INTO api_keys (key_hash, user_id, name, is_admin, tier) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at";

/// Revoking twice keeps the first revocation time.
const REVOKE: &str =
    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, NOW()) WHERE id = $1 RETURNING revoked_at";

/// Who an active key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub user_id: Uuid,
    pub is_admin: bool,
    pub tier: String,
}

impl FromRow for KeyOwner {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(KeyOwner {
            user_id: col(row, "user_id")?,
            is_admin: col(row, "is_admin")?,
            tier: col(row, "tier")?,
        })
    }
}

/// A stored key (without its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
}

impl FromRow for StoredKey {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(StoredKey {
            id: col(row, "id")?,
            created_at: col(row, "created_at")?,
        })
    }
}

/// What a new key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey<'a> {
    /// Lowercase hex SHA-256 of the key (see [`crate::auth::api_key`]).
    pub key_hash: &'a str,
    pub user_id: Uuid,
    pub name: Option<&'a str>,
    pub is_admin: bool,
    pub tier: &'a str,
}

/// The owner of the key with this hash, unless it is unknown or revoked.
pub async fn find_active(db: &Database, key_hash: &str) -> Result<Option<KeyOwner>, DbError> {
    db.fetch_optional(FIND_ACTIVE, &[&key_hash]).await
}

/// Stores a key's hash; a hash already stored is a `Conflict`.
pub async fn insert(db: &Database, key: &NewKey<'_>) -> Result<StoredKey, DbError> {
    db.fetch_one(
        INSERT,
        &[
            &key.key_hash,
            &key.user_id,
            &key.name,
            &key.is_admin,
            &key.tier,
        ],
    )
    .await
}

/// When the key was revoked (now, or earlier if it already was); `None`
/// when there is no key with this id.
pub async fn revoke(db: &Database, id: Uuid) -> Result<Option<DateTime<Utc>>, DbError> {
    let row: Option<Row> = db.fetch_optional(REVOKE, &[&id]).await?;
    row.map(|row| col(&row, "revoked_at")).transpose()
}
