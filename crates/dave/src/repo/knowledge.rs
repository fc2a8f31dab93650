//! `knowledge_base`: articles anyone may search, only admins may add.
//!
//! The search uses exactly the expression of the GIN index
//! `idx_knowledge_base_fts`, `to_tsvector('english', title || ' ' ||
//! content)`, or the planner could not use it; `plainto_tsquery` takes the
//! client's words as plain text (no query syntax to get wrong), and results
//! come best first by `ts_rank`, ties by id so a page is stable. Articles
//! are up to 100,000 characters, so the hits also stop at [`PAGE_BYTES`].

use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::repo::{col, FromRow, Row};

use super::PAGE_BYTES;
use crate::models::{CreateKnowledge, KnowledgeArticle, KnowledgeHit};

/// The best `$2` hits, fewer when their rows would pass `$3` bytes (the
/// hit that crosses it is the last; see [`super::PAGE_BYTES`]).
const SEARCH: &str = "SELECT id, title, content, tags, rank FROM ( \
         SELECT *, sum(size) OVER (ORDER BY rank DESC, id ROWS UNBOUNDED PRECEDING) - size AS before \
         FROM ( \
             SELECT id, title, content, tags, \
                 ts_rank(to_tsvector('english', title || ' ' || content), query) AS rank, \
                 octet_length(title) + octet_length(content) + octet_length(tags::text) AS size \
             FROM knowledge_base, plainto_tsquery('english', $1) AS query \
             WHERE to_tsvector('english', title || ' ' || content) @@ query \
             ORDER BY rank DESC, id LIMIT $2 \
         ) sized \
     ) budgeted WHERE before < $3 \
     ORDER BY rank DESC, id";

const INSERT: &str = "INSERT INTO knowledge_base (title, content, tags) VALUES ($1, $2, $3) \
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
