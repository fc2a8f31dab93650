//! `/api/v1/knowledge`: full-text search for any caller; adding articles is
//! for admins (403 otherwise, before the body is read).
//!
//! Below the handlers: the search query, the request and response bodies,
//! their rules (`validate`) and the OpenAPI schemas of the rules utoipa
//! cannot state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};

use super::page::page_limit;
use super::schemas::{list, text, NOT_BLANK};
use crate::auth::extract::Admin;
use crate::auth::Caller;
use crate::consistency::LastWrite;
use crate::error::{responses, ApiError};
use crate::extract::{ApiJson, ApiQuery};
use crate::repo;
use crate::repo::knowledge::NewArticle;
pub use crate::repo::knowledge::{KnowledgeArticle, KnowledgeHit};
use crate::state::AppState;
use crate::validate::{check_text, trimmed_text, FieldError};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/knowledge", get(search).post(create))
}

/// Articles matching `q`, best first (Postgres full-text search, english).
///
/// At most `limit` hits, and fewer once they reach 1 MiB of title, content
/// and tags: there is no next page, so narrow the query for more.
#[utoipa::path(
    get,
    path = "/api/v1/knowledge",
    tag = "knowledge",
    params(KnowledgeQuery),
    responses(
        (status = 200, description = "Matches, best first", body = KnowledgeResults),
        (status = 401, response = responses::Unauthorized),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub async fn search(
    _caller: Caller,
    last_write: LastWrite,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<KnowledgeQuery>,
) -> Result<Json<KnowledgeResults>, ApiError> {
    let search = query.validate()?;
    let (q, limit) = (search.q.as_str(), search.limit);
    let items = state
        .db
        .read(last_write.shared_data(), |db| async move {
            repo::knowledge::search(&db, q, limit).await
        })
        .await?;
    Ok(Json(KnowledgeResults { items }))
}

/// Add an article (admin only).
#[utoipa::path(
    post,
    path = "/api/v1/knowledge",
    tag = "knowledge",
    request_body(content = CreateKnowledge, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = KnowledgeArticle),
        (status = 400, response = responses::InvalidJson),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Validation),
        (status = 503, response = responses::Unavailable),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn create(
    _admin: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateKnowledge>,
) -> Result<(StatusCode, Json<KnowledgeArticle>), ApiError> {
    let article = body.validate()?;
    let created = repo::knowledge::create(&state.db, &article).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

// ---------------------------------------------------------------------------
// Request and response bodies
// ---------------------------------------------------------------------------

/// Knowledge title (the reference's limit, and the column's).
pub const MAX_KNOWLEDGE_TITLE_CHARS: usize = 500;
/// Knowledge content: keeps the search's tsvector far under its 1 MB limit.
pub const MAX_KNOWLEDGE_CONTENT_CHARS: usize = 100_000;
/// Tags on one article (not in the contract).
pub const MAX_TAGS: usize = 50;
/// One tag (not in the contract).
pub const MAX_TAG_CHARS: usize = 100;
/// Search text (the reference's limit).
pub const MAX_QUERY_CHARS: usize = 500;

/// `?q=&limit=` of the knowledge search.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KnowledgeQuery {
    /// Words to search for (Postgres `plainto_tsquery('english', q)`), 1 to 500 characters.
    // Required; an `Option` only so that its absence is a 422 that names it.
    #[param(required = true, schema_with = search_words)]
    pub q: Option<String>,
    /// Results to return, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<i64>,
}

/// A checked knowledge search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeSearch {
    pub q: String,
    pub limit: i64,
}

impl KnowledgeQuery {
    pub fn validate(self) -> Result<KnowledgeSearch, FieldError> {
        let q = self
            .q
            .ok_or_else(|| FieldError::new("q", "is required: the words to search for"))?;
        let q = trimmed_text("q", &q, MAX_QUERY_CHARS)?;
        Ok(KnowledgeSearch {
            q,
            limit: page_limit(self.limit)?,
        })
    }
}

/// Body of `POST /api/v1/knowledge` (admin only).
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKnowledge {
    /// 1 to 500 characters after trimming.
    #[schema(schema_with = knowledge_title)]
    pub title: String,
    /// 1 to 100000 characters.
    #[schema(schema_with = knowledge_content)]
    pub content: String,
    /// At most 50 tags, each 1 to 100 characters after trimming.
    #[serde(default)]
    #[schema(schema_with = knowledge_tags)]
    pub tags: Vec<String>,
}

impl CreateKnowledge {
    /// The article to store, its title and tags trimmed, checked.
    pub fn validate(self) -> Result<NewArticle, FieldError> {
        let title = trimmed_text("title", &self.title, MAX_KNOWLEDGE_TITLE_CHARS)?;
        if self.content.trim().is_empty() {
            return Err(FieldError::new("content", "must not be empty"));
        }
        check_text("content", &self.content, 1, MAX_KNOWLEDGE_CONTENT_CHARS)?;
        if self.tags.len() > MAX_TAGS {
            return Err(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
        }
        let tags = self
            .tags
            .iter()
            .enumerate()
            .map(|(i, tag)| trimmed_text(&format!("tags[{i}]"), tag, MAX_TAG_CHARS))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NewArticle {
            title,
            content: self.content,
            tags,
        })
    }
}

/// Search results, best first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KnowledgeResults {
    pub items: Vec<KnowledgeHit>,
}

/// `q` of the knowledge search (a required query parameter).
pub fn search_words() -> Schema {
    text(
        1,
        MAX_QUERY_CHARS,
        NOT_BLANK,
        false,
        "Words to search for (Postgres `plainto_tsquery('english', q)`): 1 to 500 characters \
         after trimming, not only whitespace, no NUL",
    )
}

/// `title` of a knowledge article.
pub fn knowledge_title() -> Schema {
    text(
        1,
        MAX_KNOWLEDGE_TITLE_CHARS,
        NOT_BLANK,
        false,
        "1 to 500 characters after trimming, not only whitespace, no NUL",
    )
}

/// `content` of a knowledge article.
pub fn knowledge_content() -> Schema {
    text(
        1,
        MAX_KNOWLEDGE_CONTENT_CHARS,
        NOT_BLANK,
        false,
        "1 to 100000 characters, not only whitespace, no NUL",
    )
}

/// `tags` of a knowledge article.
pub fn knowledge_tags() -> Schema {
    list(
        MAX_TAGS,
        text(
            1,
            MAX_TAG_CHARS,
            NOT_BLANK,
            false,
            "1 to 100 characters after trimming, not only whitespace, no NUL",
        ),
        "At most 50 tags",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::field_of;

    #[test]
    fn knowledge_rules() {
        let article = |title: &str, content: &str, tags: Vec<String>| CreateKnowledge {
            title: title.into(),
            content: content.into(),
            tags,
        };
        let ok = article(" Pools ", "sizing", vec![" pool ".into()])
            .validate()
            .unwrap();
        assert_eq!((ok.title.as_str(), ok.tags[0].as_str()), ("Pools", "pool"));
        assert_eq!(field_of(article("", "c", vec![]).validate()), "title");
        assert!(article(&"t".repeat(500), "c", vec![]).validate().is_ok());
        assert_eq!(
            field_of(article(&"t".repeat(501), "c", vec![]).validate()),
            "title"
        );
        assert_eq!(field_of(article("t", "", vec![]).validate()), "content");
        assert_eq!(field_of(article("t", "  ", vec![]).validate()), "content");
        let huge = "c".repeat(MAX_KNOWLEDGE_CONTENT_CHARS + 1);
        assert_eq!(field_of(article("t", &huge, vec![]).validate()), "content");
        assert_eq!(
            field_of(article("t", "c", vec!["".into()]).validate()),
            "tags[0]"
        );
        let many = vec!["t".to_owned(); MAX_TAGS + 1];
        assert_eq!(field_of(article("t", "c", many).validate()), "tags");
    }

    #[test]
    fn knowledge_query_rules() {
        let query = |q: Option<&str>, limit: Option<i64>| {
            KnowledgeQuery {
                q: q.map(str::to_owned),
                limit,
            }
            .validate()
        };
        assert_eq!(
            query(Some(" zebra "), None),
            Ok(KnowledgeSearch {
                q: "zebra".into(),
                limit: 50
            })
        );
        assert_eq!(field_of(query(None, None)), "q");
        assert_eq!(field_of(query(Some(" "), None)), "q");
        assert_eq!(field_of(query(Some(&"q".repeat(501)), None)), "q");
        assert_eq!(field_of(query(Some("x"), Some(0))), "limit");
    }
}
