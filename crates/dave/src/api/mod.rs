//! The `/api/v1` routes of DESIGN §3: one module per resource, each with its
//! `router()`, its handlers and their request and response bodies, merged by
//! [`api_router`], with the session middleware that hands new anonymous
//! callers their `X-Session-Token`. Paging (limit, signed cursors, the next
//! page's cursor) is [`page`]; the text and JSON-object rules the request
//! types share are [`crate::validate`].
//!
//! Handlers are thin: extract (caller first, so bad credentials are a 401
//! before anything else is looked at; then path, query, body), validate with
//! the request type's rules, call one repository function, shape the answer.
//! Every handler carries its `#[utoipa::path]`; [`ApiDoc`] gathers them, with
//! the security schemes, for the service's OpenAPI document.
//!
//! Request types reject unknown fields (serde answers those, and a wrong
//! type, before any rule runs; the error layer turns that into a 422), and
//! their `validate()` turns a body into the repository's input. The rows a
//! handler answers with are [`crate::repo`]'s own types, re-exported by the
//! resource modules here; their timestamps are RFC 3339 with a numeric
//! offset and microseconds (`2026-11-26T14:00:00.123456+00:00`, the precision
//! Postgres keeps; see [`crate::json`]).

pub mod conversations;
pub mod knowledge;
pub mod messages;
pub mod page;
pub mod prompts;
pub mod schemas;

use axum::Router;
use tower::ServiceBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::extract::HandOutSession;
use crate::consistency::StampWritesLayer;
use crate::error::{ApiError, ErrorBody};
use crate::middleware::AroundLayer;
use crate::state::AppState;

/// Every `/api/v1` route, ready to merge into the service's router; writes
/// are stamped with consistency tokens (see [`crate::consistency`]).
pub fn api_router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(conversations::router())
        .merge(messages::router())
        .merge(knowledge::router())
        .merge(prompts::router())
        // One `layer` call: see `app::with_middleware`.
        .layer(
            ServiceBuilder::new()
                .layer(StampWritesLayer::new(
                    state.db.clone(),
                    state.consistency.clone(),
                ))
                .layer(AroundLayer(HandOutSession)),
        )
}

/// The OpenAPI description of [`api_router`]'s routes, their schemas and
/// the three ways to call them; merge it into the service's document.
#[derive(OpenApi)]
#[openapi(
    paths(
        conversations::create,
        conversations::list,
        conversations::read,
        conversations::update,
        conversations::delete,
        messages::create,
        messages::list,
        knowledge::search,
        knowledge::create,
        prompts::list,
        prompts::read,
        prompts::add_version,
        prompts::rollback,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes, &ConsistencyHeader),
    tags(
        (name = "conversations", description = "A caller's conversations (user-scoped)"),
        (name = "messages", description = "Messages of a conversation (user-scoped)"),
        (name = "knowledge", description = "Knowledge base: full-text search; admins add articles"),
        (name = "prompts", description = "Versioned prompts (admin only)"),
    )
)]
pub struct ApiDoc;

/// The security schemes the paths name: `api_key`, `bearer`, `session`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A key made by `dave apikey create`; carries the user, admin flag and tier.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT signed with JWT_SECRET: `sub` is the user id (UUID), `exp` required, `\"role\":\"admin\"` for admins.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Session-Token",
                "An anonymous session, as handed out in the X-Session-Token response header of a call without credentials.",
            ))),
        );
    }
}

/// `X-Consistency-Token` on every `/api/v1` operation, in one place: an
/// optional request header of the reads, a response header of the writes'
/// successes (see [`crate::consistency`]).
struct ConsistencyHeader;

impl Modify for ConsistencyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{Header, ObjectBuilder, Required, Type};
        let token = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9A-F]{16}\\.[A-Za-z0-9_-]{22}$"))
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            if let Some(read) = item.get.as_mut() {
                let header = ParameterBuilder::new()
                    .name("X-Consistency-Token")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "The token of the caller's last write. With a read replica (DB_READ_DSN), the read is served where that write is visible; without it, the caller's own data is read on the primary. A token the service did not issue answers 422.",
                    ))
                    .schema(Some(token()))
                    .build();
                read.parameters.get_or_insert_with(Vec::new).push(header);
                // A token it did not issue is a 422, on every read.
                read.responses
                    .responses
                    .entry("422".into())
                    .or_insert_with(|| {
                        utoipa::openapi::Ref::from_response_name("Validation").into()
                    });
            }
            let writes = [
                item.post.as_mut(),
                item.patch.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
            ];
            for write in writes.into_iter().flatten() {
                for (status, response) in write.responses.responses.iter_mut() {
                    let utoipa::openapi::RefOr::T(response) = response else {
                        continue;
                    };
                    if status.starts_with('2') {
                        let mut header = Header::new(token());
                        header.description = Some("Only with a read replica configured: send it as X-Consistency-Token on the next reads to see this write".into());
                        response
                            .headers
                            .insert("x-consistency-token".into(), header);
                    }
                }
            }
        }
    }
}

/// A conversation that does not exist or is another user's: one 404 for
/// both, on the conversation's own routes and on its messages'.
fn conversation_not_found() -> ApiError {
    ApiError::not_found("conversation")
}

#[cfg(test)]
mod tests {
    use crate::api::conversations::*;
    use crate::api::knowledge::*;
    use crate::api::messages::*;
    use crate::api::prompts::*;
    use crate::validate::test_support::parse;
    use serde_json::json;

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
            RollbackPrompt
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
