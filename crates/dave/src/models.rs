//! The request and response bodies of DESIGN §3, and the rules a request must
//! keep before it reaches the database.
//!
//! Request types reject unknown fields (serde answers those, and a wrong
//! type, before any rule here runs; the error layer turns that into a 422).
//! Each request type's `validate` applies the contract's rules, fills in
//! defaults and returns the value to store, or a [`FieldError`] naming the
//! field. Limits the contract does not give are the Python reference's
//! (`app/schemas.py`) where it has one, or else a generous bound chosen so that
//! client input can never reach the database in a shape it would refuse (a NUL
//! character, a string longer than its column, a tsvector over its limit):
//! client input must never produce a 500.
//!
//! Response timestamps are RFC 3339 with a numeric offset and microseconds
//! (`2026-11-26T14:00:00.123456+00:00`), the precision Postgres keeps.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

pub mod schemas;

/// A JSON object (context, metadata) as a client sends it.
pub type JsonObject = serde_json::Map<String, Value>;

/// A JSON object as the database returns it, passed to the response as its
/// text: no tree is built on the way out (listing pages carry two per row).
/// The text is JSON-equivalent to what was stored, in jsonb's own key order
/// and spacing.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct StoredJson(Box<serde_json::value::RawValue>);

impl StoredJson {
    /// The JSON text as stored.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses it, for callers that need the values (tests, tools).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }
}

impl From<Box<serde_json::value::RawValue>> for StoredJson {
    fn from(raw: Box<serde_json::value::RawValue>) -> StoredJson {
        StoredJson(raw)
    }
}

impl From<&JsonObject> for StoredJson {
    fn from(object: &JsonObject) -> StoredJson {
        let text = serde_json::to_string(object).unwrap_or_else(|_| "{}".to_owned());
        StoredJson(
            serde_json::value::RawValue::from_string(text).expect("serde_json wrote valid JSON"),
        )
    }
}

/// Equal when they hold the same JSON, whatever the spacing and key order.
impl PartialEq for StoredJson {
    fn eq(&self, other: &StoredJson) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

/// Largest `context` or `metadata` object, as compact JSON (DESIGN §3).
pub const MAX_JSON_OBJECT_BYTES: usize = 64 * 1024;
/// Conversation title, after trimming (DESIGN §3).
pub const MAX_TITLE_CHARS: usize = 200;
/// Title given to a conversation created without one (DESIGN §3).
pub const DEFAULT_TITLE: &str = "New Conversation";
/// Message content (DESIGN §3).
pub const MAX_MESSAGE_CHARS: usize = 32_000;
/// Items in `resources` or `follow_up_suggestions` (not in the contract).
pub const MAX_LIST_ITEMS: usize = 100;
/// One item of `resources` or `follow_up_suggestions` (not in the contract).
pub const MAX_LIST_ITEM_CHARS: usize = 2_000;
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
/// Prompt version content (the reference's limit).
pub const MAX_PROMPT_CHARS: usize = 100_000;
/// Prompt commit message (the reference's limit).
pub const MAX_COMMIT_MESSAGE_CHARS: usize = 500;
/// Prompt category in a path (`admin_prompts.category` is VARCHAR(100)).
pub const MAX_CATEGORY_CHARS: usize = 100;
/// Prompt name in a path (`admin_prompts.name` is VARCHAR(200)).
pub const MAX_PROMPT_NAME_CHARS: usize = 200;
/// `limit` bounds and default (DESIGN §3).
pub const MIN_LIMIT: i64 = 1;
pub const MAX_LIMIT: i64 = 100;
pub const DEFAULT_LIMIT: i64 = 50;

// ---------------------------------------------------------------------------
// Validation errors and helpers
// ---------------------------------------------------------------------------

/// A request value that breaks a rule: which field, and what the rule is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's name as the client wrote it, e.g. `title` or `tags[2]`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::Validation(error.to_string())
    }
}

/// Postgres text cannot hold NUL; refuse it as input instead of failing later.
fn check_no_nul(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        return Err(FieldError::new(
            field,
            "must not contain the NUL character (\\u0000)",
        ));
    }
    Ok(())
}

/// `value` must be `min..=max` characters (Unicode scalar values) and NUL-free.
fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    check_no_nul(field, value)?;
    // Cheap upper bound first: a string of n bytes has at most n characters.
    let count = if value.len() <= max {
        value.chars().count()
    } else {
        value.chars().take(max + 1).count()
    };
    if count < min || count > max {
        let rule = if min == 1 {
            format!("must be 1 to {max} characters")
        } else {
            format!("must be {min} to {max} characters")
        };
        return Err(FieldError::new(field, rule));
    }
    Ok(())
}

/// Trimmed, then [`check_text`].
fn trimmed_text(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {max} characters and not only spaces"),
        ));
    }
    check_text(field, value, 1, max)?;
    Ok(value.to_owned())
}

fn check_list(
    field: &str,
    items: &[String],
    max_items: usize,
    max_chars: usize,
) -> Result<(), FieldError> {
    if items.len() > max_items {
        return Err(FieldError::new(field, format!("at most {max_items} items")));
    }
    for (i, item) in items.iter().enumerate() {
        check_text(&format!("{field}[{i}]"), item, 0, max_chars)?;
    }
    Ok(())
}

/// Counts serialized bytes and stops writing once over the limit.
struct SizeLimit {
    written: usize,
    limit: usize,
}

impl std::io::Write for SizeLimit {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len();
        if self.written > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A `context`/`metadata` object: at most 64 KiB as compact JSON, and no NUL
/// in any key or string (jsonb refuses `\u0000`).
pub fn check_json_object(field: &str, object: &JsonObject) -> Result<(), FieldError> {
    let mut sink = SizeLimit {
        written: 0,
        limit: MAX_JSON_OBJECT_BYTES,
    };
    if serde_json::to_writer(&mut sink, object).is_err() {
        return Err(FieldError::new(
            field,
            format!(
                "must be at most {} KiB as JSON",
                MAX_JSON_OBJECT_BYTES / 1024
            ),
        ));
    }
    if object
        .iter()
        .any(|(k, v)| k.contains('\0') || contains_nul(v))
    {
        return Err(FieldError::new(
            field,
            "must not contain the NUL character (\\u0000)",
        ));
    }
    Ok(())
}

/// Serializes a timestamp as RFC 3339 with a numeric offset and microseconds.
pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, false))
}

// ---------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------

/// `?limit=&cursor=` of the paginated lists. Unknown query parameters are
/// ignored (proxies and caches add their own); only bodies are strict.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 50); a page holds fewer when its
    /// items reach 1 MiB, with a `next_cursor` to carry on.
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; omit (or leave empty) for the
    /// first page. Signed by the service: a cursor it did not issue answers 422.
    #[param(pattern = "^([A-Za-z0-9_-]{55})?$")]
    pub cursor: Option<String>,
}

/// `limit` checked against 1..=100, default 50.
pub fn page_limit(limit: Option<i64>) -> Result<i64, FieldError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (MIN_LIMIT..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(FieldError::new(
            "limit",
            format!("must be {MIN_LIMIT} to {MAX_LIMIT}"),
        )),
    }
}

impl PageQuery {
    /// The page size to use.
    pub fn limit(&self) -> Result<i64, FieldError> {
        page_limit(self.limit)
    }
}

/// `?q=&limit=` of the knowledge search.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KnowledgeQuery {
    /// Words to search for (Postgres `plainto_tsquery('english', q)`), 1 to 500 characters.
    // Required; an `Option` only so that its absence is a 422 that names it.
    #[param(required = true, schema_with = schemas::search_words)]
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

// ---------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------

/// Body of `POST /api/v1/conversations`. Every field is optional.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// 1 to 200 characters after trimming; default "New Conversation".
    #[schema(schema_with = schemas::conversation_title)]
    pub title: Option<String>,
    /// JSON object, at most 64 KiB; default `{}`.
    #[schema(schema_with = schemas::json_object_or_null)]
    pub context: Option<JsonObject>,
    /// JSON object, at most 64 KiB; default `{}`.
    #[schema(schema_with = schemas::json_object_or_null)]
    pub metadata: Option<JsonObject>,
}

/// A conversation ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    pub title: String,
    pub context: JsonObject,
    pub metadata: JsonObject,
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
    #[schema(schema_with = schemas::conversation_title)]
    pub title: Option<String>,
    /// Replaces the context; JSON object, at most 64 KiB.
    #[schema(schema_with = schemas::json_object_or_null)]
    pub context: Option<JsonObject>,
    /// Replaces the metadata; JSON object, at most 64 KiB.
    #[schema(schema_with = schemas::json_object_or_null)]
    pub metadata: Option<JsonObject>,
}

/// The checked changes of a PATCH; `None` means "keep".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationChanges {
    pub title: Option<String>,
    pub context: Option<JsonObject>,
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

/// One page of conversations, newest `updated_at` first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

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

/// Body of `POST /api/v1/conversations/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    pub role: Role,
    /// 1 to 32000 characters.
    #[schema(schema_with = schemas::message_content)]
    pub content: String,
    /// Resource references, at most 100 of at most 2000 characters each.
    #[serde(default)]
    #[schema(schema_with = schemas::message_list)]
    pub resources: Vec<String>,
    /// Suggested follow-up prompts, at most 100 of at most 2000 characters each.
    #[serde(default)]
    #[schema(schema_with = schemas::message_list)]
    pub follow_up_suggestions: Vec<String>,
    /// JSON object, at most 64 KiB; default `{}`.
    #[serde(default)]
    #[schema(schema_with = schemas::json_object)]
    pub metadata: JsonObject,
}

impl CreateMessage {
    /// The same message, checked.
    pub fn validate(self) -> Result<CreateMessage, FieldError> {
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
        Ok(self)
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

/// One page of messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<Message>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------
// Knowledge base
// ---------------------------------------------------------------------------

/// Body of `POST /api/v1/knowledge` (admin only).
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKnowledge {
    /// 1 to 500 characters after trimming.
    #[schema(schema_with = schemas::knowledge_title)]
    pub title: String,
    /// 1 to 100000 characters.
    #[schema(schema_with = schemas::knowledge_content)]
    pub content: String,
    /// At most 50 tags, each 1 to 100 characters after trimming.
    #[serde(default)]
    #[schema(schema_with = schemas::knowledge_tags)]
    pub tags: Vec<String>,
}

impl CreateKnowledge {
    /// The article with its title and tags trimmed, checked.
    pub fn validate(self) -> Result<CreateKnowledge, FieldError> {
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
        Ok(CreateKnowledge {
            title,
            content: self.content,
            tags,
        })
    }
}

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

/// Search results, best first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KnowledgeResults {
    pub items: Vec<KnowledgeHit>,
}

// ---------------------------------------------------------------------------
// Versioned prompts (admin only)
// ---------------------------------------------------------------------------

/// The `{category}/{name}` of a prompt route, checked against the columns so
/// an oversized path is a 422 and not a database error.
pub fn validate_prompt_key(category: &str, name: &str) -> Result<(), FieldError> {
    check_text("category", category, 1, MAX_CATEGORY_CHARS)?;
    check_text("name", name, 1, MAX_PROMPT_NAME_CHARS)?;
    Ok(())
}

/// One prompt in the list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PromptSummary {
    pub category: String,
    pub name: String,
    pub description: Option<String>,
    /// Number of the version in use; `null` before the first version.
    pub current_version: Option<i32>,
}

/// `GET /api/v1/admin/prompts`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PromptList {
    pub items: Vec<PromptSummary>,
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

/// Body of `POST /api/v1/admin/prompts/{category}/{name}/versions`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePromptVersion {
    /// 1 to 100000 characters.
    #[schema(schema_with = schemas::prompt_content)]
    pub content: String,
    /// 1 to 500 characters.
    #[schema(schema_with = schemas::commit_message)]
    pub commit_message: String,
}

impl CreatePromptVersion {
    /// The same version, checked.
    pub fn validate(self) -> Result<CreatePromptVersion, FieldError> {
        if self.content.trim().is_empty() {
            return Err(FieldError::new("content", "must not be empty"));
        }
        check_text("content", &self.content, 1, MAX_PROMPT_CHARS)?;
        if self.commit_message.trim().is_empty() {
            return Err(FieldError::new("commit_message", "must not be empty"));
        }
        check_text(
            "commit_message",
            &self.commit_message,
            1,
            MAX_COMMIT_MESSAGE_CHARS,
        )?;
        Ok(self)
    }
}

/// Body of `POST /api/v1/admin/prompts/{category}/{name}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackPrompt {
    /// An existing version number (1 or more). JSON Schema counts `3.0` as
    /// an integer, so a whole number written with a fraction is accepted.
    #[schema(minimum = 1, maximum = 2147483647)]
    #[serde(deserialize_with = "whole_i32")]
    pub version_number: i32,
}

/// An `i32` from any JSON number with a whole value in range (`7`, `7.0`,
/// `7e0`): what JSON Schema's `"type": "integer"` admits.
fn whole_i32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(deserializer)?;
    let whole = if let Some(i) = n.as_i64() {
        i32::try_from(i).ok()
    } else if let Some(f) = n.as_f64() {
        (f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX))
            .then_some(f as i32)
    } else {
        None
    };
    whole
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number of at most 2147483647")))
}

impl RollbackPrompt {
    /// The version number to make current, checked.
    pub fn validate(self) -> Result<i32, FieldError> {
        if self.version_number < 1 {
            return Err(FieldError::new("version_number", "must be 1 or more"));
        }
        Ok(self.version_number)
    }
}

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

/// `GET /health/live`: always `{"status":"alive"}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "alive")]
    pub status: &'static str,
}

impl Liveness {
    pub const ALIVE: Liveness = Liveness { status: "alive" };
}

/// `GET /health/ready`, 200 and 503 alike.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    pub checks: ReadinessChecks,
}

/// What readiness looked at.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok`, or `error: <reason>` (never a password or a DSN).
    pub database: String,
    pub database_details: DatabaseDetails,
}

/// The pool as readiness saw it; the three named fields are always there.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DatabaseDetails {
    pub pool_size: u64,
    pub idle_connections: u64,
    /// `closed`, `open` or `half_open`.
    pub circuit_breaker: String,
    /// More pool figures (in use, waiting, acquire latency, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: JsonObject,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn field_of<T>(result: Result<T, FieldError>) -> String {
        match result {
            Ok(_) => panic!("expected a field error"),
            Err(e) => e.field,
        }
    }

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
    fn unknown_fields_and_wrong_types_are_refused() {
        assert!(parse::<CreateConversation>(json!({"bogus": 1})).is_err());
        assert!(parse::<UpdateConversation>(json!({"user_id": "x"})).is_err());
        assert!(parse::<CreateConversation>(json!({"context": [1, 2]})).is_err());
        assert!(parse::<CreateConversation>(json!({"metadata": "text"})).is_err());
        assert!(
            parse::<CreateMessage>(json!({"role": "user", "content": "x", "extra": 1})).is_err()
        );
        assert!(parse::<CreateKnowledge>(json!({"title": "t", "content": "c", "x": 1})).is_err());
        assert!(parse::<CreatePromptVersion>(json!({"content": "c"})).is_err());
        assert!(parse::<RollbackPrompt>(json!({"version_number": 1, "force": true})).is_err());
    }

    #[test]
    fn json_objects_are_limited_to_64_kib() {
        // {"k":"<n x>"} is n + 8 bytes of compact JSON.
        let object = |n: usize| json!({"k": "x".repeat(n)}).as_object().unwrap().clone();
        assert!(check_json_object("context", &object(MAX_JSON_OBJECT_BYTES - 8)).is_ok());
        let error = check_json_object("context", &object(MAX_JSON_OBJECT_BYTES - 7)).unwrap_err();
        assert_eq!(error.field, "context");
        assert!(error.to_string().contains("64 KiB"), "{error}");
        let big = CreateConversation {
            metadata: Some(object(MAX_JSON_OBJECT_BYTES)),
            ..Default::default()
        };
        assert_eq!(field_of(big.validate()), "metadata");
    }

    #[test]
    fn json_objects_refuse_nul_anywhere() {
        for value in [
            json!({"a\u{0}": 1}),
            json!({"a": "x\u{0}"}),
            json!({"a": [{"b": ["\u{0}"]}]}),
        ] {
            let object = value.as_object().unwrap();
            assert!(check_json_object("metadata", object).is_err(), "{value}");
        }
        let fine = json!({"a": "\\u0000 is text here", "n": [1, null, true]});
        assert!(check_json_object("metadata", fine.as_object().unwrap()).is_ok());
    }

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

    #[test]
    fn limit_bounds() {
        assert_eq!(page_limit(None), Ok(50));
        assert_eq!(page_limit(Some(1)), Ok(1));
        assert_eq!(page_limit(Some(100)), Ok(100));
        for bad in [0, 101, -1, i64::MAX] {
            assert_eq!(field_of(page_limit(Some(bad))), "limit", "{bad}");
        }
        let error = page_limit(Some(0)).unwrap_err();
        assert_eq!(error.to_string(), "limit: must be 1 to 100");
    }

    #[test]
    fn prompt_rules() {
        let version = |content: &str, message: &str| CreatePromptVersion {
            content: content.into(),
            commit_message: message.into(),
        };
        assert!(version("v1", "first").validate().is_ok());
        assert_eq!(field_of(version("", "m").validate()), "content");
        assert_eq!(field_of(version("c", "").validate()), "commit_message");
        assert_eq!(
            field_of(version("c", &"m".repeat(501)).validate()),
            "commit_message"
        );
        assert_eq!(
            field_of(version(&"c".repeat(100_001), "m").validate()),
            "content"
        );
        assert_eq!(RollbackPrompt { version_number: 2 }.validate(), Ok(2));
        assert_eq!(
            field_of(RollbackPrompt { version_number: 0 }.validate()),
            "version_number"
        );
        assert!(validate_prompt_key("system", "default").is_ok());
        assert_eq!(
            field_of(validate_prompt_key(&"c".repeat(101), "n")),
            "category"
        );
        assert_eq!(field_of(validate_prompt_key("c", &"n".repeat(201))), "name");
        assert_eq!(field_of(validate_prompt_key("c", "")), "name");
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
    fn page_and_detail_shapes() {
        let page = ConversationPage {
            items: vec![],
            next_cursor: None,
        };
        assert_eq!(
            serde_json::to_value(page).unwrap(),
            json!({"items": [], "next_cursor": null})
        );
        let detail = PromptDetail {
            category: "system".into(),
            name: "default".into(),
            description: None,
            current_version: None,
            versions: 0,
        };
        assert_eq!(
            serde_json::to_value(detail).unwrap(),
            json!({"category": "system", "name": "default", "description": null,
                   "current_version": null, "versions": 0})
        );
    }

    #[test]
    fn readiness_shape_keeps_the_three_fields_and_extras() {
        let mut extra = JsonObject::new();
        extra.insert("waiting".into(), json!(0));
        let ready = Readiness {
            status: "ready",
            checks: ReadinessChecks {
                database: "ok".into(),
                database_details: DatabaseDetails {
                    pool_size: 5,
                    idle_connections: 4,
                    circuit_breaker: "closed".into(),
                    extra,
                },
            },
        };
        assert_eq!(
            serde_json::to_value(ready).unwrap(),
            json!({"status": "ready", "checks": {"database": "ok", "database_details":
                {"pool_size": 5, "idle_connections": 4, "circuit_breaker": "closed", "waiting": 0}}})
        );
        assert_eq!(
            serde_json::to_value(Liveness::ALIVE).unwrap(),
            json!({"status": "alive"})
        );
    }

    #[test]
    fn field_errors_become_422_naming_the_field() {
        use axum::response::IntoResponse;
        let error = ApiError::from(FieldError::new("title", "must be 1 to 200 characters"));
        assert_eq!(error.to_string(), "title: must be 1 to 200 characters");
        assert_eq!(error.into_response().status(), 422);
    }

    #[test]
    fn schemas_render() {
        #[derive(utoipa::OpenApi)]
        #[openapi(components(schemas(
            CreateConversation,
            UpdateConversation,
            Conversation,
            ConversationPage,
            CreateMessage,
            Message,
            MessagePage,
            Role,
            CreateKnowledge,
            KnowledgeArticle,
            KnowledgeHit,
            KnowledgeResults,
            PromptSummary,
            PromptList,
            PromptVersion,
            PromptDetail,
            PromptVersionCreated,
            CreatePromptVersion,
            RollbackPrompt,
            Liveness,
            Readiness,
            ReadinessChecks,
            DatabaseDetails
        )))]
        struct Doc;
        let doc = <Doc as utoipa::OpenApi>::openapi();
        let json = serde_json::to_value(&doc).unwrap();
        let schemas = &json["components"]["schemas"];
        assert_eq!(
            schemas["Conversation"]["properties"]["context"]["type"],
            "object"
        );
        assert_eq!(
            schemas["Conversation"]["properties"]["created_at"]["format"],
            "date-time"
        );
        assert_eq!(
            schemas["Role"]["enum"],
            json!(["user", "assistant", "system"])
        );
    }
}
