//! `knowledge_base`: articles anyone may search, only admins may add.
//!
//! The search reads the stored, generated column `search_vector`
//! (`to_tsvector('english', title || ' ' || content)`, migration 007, GIN
//! index `idx_knowledge_base_search_vector`, 008), so no article is parsed
//! again at search time; `plainto_tsquery` takes the client's words as plain
//! text (no query syntax to get wrong), and results come best first by
//! `ts_rank`, ties by id so a page is stable. Articles are up to 100,000
//! characters, so the hits also stop at [`PAGE_BYTES`], and here the
//! budget stays a running sum in the statement, unlike the lists (which
//! keep it as rows arrive, `pgkit::repo::Within`): any caller may search,
//! and the articles are not the caller's, so the server itself stops
//! sending at 1 MiB rather than sending up to 100 long articles for the
//! service to drop. The sum runs over at most `limit` hits already
//! ranked; it costs the search about 1.6 times the database time
//! (docs/benchmarks.md, run 12, section 4).

use chrono::{DateTime, Utc};
use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::repo::{col, FromRow, Row};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::PAGE_BYTES;
use crate::json::rfc3339;

/// A stored article (answer to its creation).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KnowledgeArticle {
    pub id: Uuid,
    pub title: String,
    pub content: String,
    pub tags: Vec<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// One search result; higher `rank` is a better match.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KnowledgeHit {
    pub id: Uuid,
    pub title: String,
    pub content: String,
    pub tags: Vec<String>,
    /// Postgres `ts_rank`.
    pub rank: f32,
}

/// An article ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewArticle {
    pub title: String,
    pub content: String,
    pub tags: Vec<String>,
}

/// The best `$2` hits, fewer when their rows would pass `$3` bytes (the
/// hit that crosses it is the last; see [`super::PAGE_BYTES`]).
///
/// `ranked` has two branches, one of which runs (one-time filters on
/// `numnode`): a query of one word reads `knowledge_base_terms` (009) in
/// index order, `npos DESC, doc_id`, which for a one-word query is exactly
/// `ts_rank DESC, id` (see the migration), and stops after `$2` rows however
/// many articles contain the word; any other query finds its matches
/// through the GIN index and ranks each of them by `ts_rank` on the stored
/// vector, keeping only `(id, rank)` until the page is known. Either way the
/// page's rows are then read by primary key and `rank` is `ts_rank` itself.
pub const SEARCH: &str = "SELECT id, title, content, tags, rank FROM ( \
         SELECT *, sum(size) OVER (ORDER BY rank DESC, id ROWS UNBOUNDED PRECEDING) - size AS before \
         FROM ( \
             SELECT k.id, k.title, k.content, k.tags, \
                 ts_rank(k.search_vector, plainto_tsquery('english', $1)) AS rank, \
                 octet_length(k.title) + octet_length(k.content) + octet_length(k.tags::text) AS size \
             FROM ( \
                 (SELECT t.doc_id AS id FROM knowledge_base_terms t \
                  WHERE numnode(plainto_tsquery('english', $1)) = 1 \
                    AND t.word = (tsvector_to_array(to_tsvector('english', $1)))[1] \
                  ORDER BY t.npos DESC, t.doc_id LIMIT $2) \
                 UNION ALL \
                 (SELECT id FROM knowledge_base \
                  WHERE numnode(plainto_tsquery('english', $1)) <> 1 \
                    AND search_vector @@ plainto_tsquery('english', $1) \
                  ORDER BY ts_rank(search_vector, plainto_tsquery('english', $1)) DESC, id LIMIT $2) \
             ) ranked \
             JOIN knowledge_base k ON k.id = ranked.id \
         ) hits \
     ) budgeted WHERE before < $3 \
     ORDER BY rank DESC, id";

pub const INSERT: &str = "INSERT INTO knowledge_base (title, content, tags) VALUES ($1, $2, $3) \
     RETURNING id, title, content, tags, created_at, updated_at";

impl FromRow for KnowledgeHit {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(KnowledgeHit {
            id: col(row, "id")?,
            title: col(row, "title")?,
            content: col(row, "content")?,
            tags: col(row, "tags")?,
            rank: col(row, "rank")?,
        })
    }
}

impl FromRow for KnowledgeArticle {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(KnowledgeArticle {
            id: col(row, "id")?,
            title: col(row, "title")?,
            content: col(row, "content")?,
            tags: col(row, "tags")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

/// At most `limit` articles matching `q`, best first, and about
/// [`PAGE_BYTES`] of them: the search has no next page, so a client wanting
/// more narrows the query.
pub async fn search(db: &Database, q: &str, limit: i64) -> Result<Vec<KnowledgeHit>, DbError> {
    db.fetch_all(SEARCH, &[&q, &limit, &SEARCH_BYTES]).await
}

/// [`PAGE_BYTES`] as the statement's `bigint` parameter.
const SEARCH_BYTES: i64 = PAGE_BYTES as i64;

pub async fn create(db: &Database, article: &NewArticle) -> Result<KnowledgeArticle, DbError> {
    db.fetch_one(INSERT, &[&article.title, &article.content, &article.tags])
        .await
}
