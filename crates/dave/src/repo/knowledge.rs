//! `knowledge_base`: articles anyone may search, only admins may add.
//!
//! The search filters and ranks on the stored, generated column
//! `search_vector` (`to_tsvector('english', title || ' ' || content)`,
//! migration 007, GIN index `idx_knowledge_base_search_vector`, 008), so no
//! article is parsed again at search time; `plainto_tsquery` takes the
//! client's words as plain text (no query syntax to get wrong), and results
//! come best first by `ts_rank`, ties by id so a page is stable. Only the
//! ranking reads every match, and only `(id, rank)` of it: the page's
//! columns and sizes are fetched for the `$2` best alone. Articles are up to
//! 100,000 characters, so the hits also stop at [`PAGE_BYTES`].

use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::repo::{col, FromRow, Row};

use super::PAGE_BYTES;
use crate::models::{CreateKnowledge, KnowledgeArticle, KnowledgeHit};

/// The best `$2` hits, fewer when their rows would pass `$3` bytes (the
/// hit that crosses it is the last; see [`super::PAGE_BYTES`]).
///
/// `ranked` is the only part that grows with the number of matches: it reads
/// `search_vector` and ranks it, keeping `(id, rank)` of the best `$2`; the
/// articles' text, tags and sizes are read for those rows only, by primary
/// key. A term that nearly every article contains still ranks every match
/// (the order must be `ts_rank`'s), but at the cost of a stored tsvector,
/// not of parsing each article again (docs/benchmarks.md).
pub const SEARCH: &str = "SELECT id, title, content, tags, rank FROM ( \
         SELECT k.id, k.title, k.content, k.tags, ranked.rank, \
             sum(octet_length(k.title) + octet_length(k.content) + octet_length(k.tags::text)) \
                 OVER (ORDER BY ranked.rank DESC, ranked.id ROWS UNBOUNDED PRECEDING) \
             - (octet_length(k.title) + octet_length(k.content) + octet_length(k.tags::text)) AS before \
         FROM ( \
             SELECT id, ts_rank(search_vector, query) AS rank \
             FROM knowledge_base, plainto_tsquery('english', $1) AS query \
             WHERE search_vector @@ query \
             ORDER BY rank DESC, id LIMIT $2 \
         ) ranked \
         JOIN knowledge_base k ON k.id = ranked.id \
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
    db.fetch_all(SEARCH, &[&q, &limit, &PAGE_BYTES]).await
}

pub async fn create(db: &Database, article: &CreateKnowledge) -> Result<KnowledgeArticle, DbError> {
    db.fetch_one(INSERT, &[&article.title, &article.content, &article.tags])
        .await
}
