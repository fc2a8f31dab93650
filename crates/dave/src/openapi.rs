//! The OpenAPI document at `/openapi.json`, generated from the code with
//! utoipa: the operations endpoints declared here, merged with the API's
//! paths and schemas that the route modules declare next to their handlers.
//! Built once per process, on first request.

use std::sync::OnceLock;

use utoipa::openapi::{HttpMethod, Required};
use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorDetail};
use crate::ops;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dave",
        description = "The reference service on pgkit: conversations, messages, knowledge base, versioned prompts, API keys. Every error body is {\"error\":{\"code\",\"message\"}}."
    ),
    paths(ops::live, ops::ready, ops::metrics, ops::openapi),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        ops::Liveness,
        ops::Readiness,
        ops::ReadinessChecks,
        ops::DatabaseDetails
    )),
    tags((name = "operations", description = "Health, metrics and this document"))
)]
struct OperationsDoc;

/// The whole document: operations plus every API route.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = OperationsDoc::openapi();
    doc.merge(crate::routes::ApiDoc::openapi());
    // Hand-written: the recursive JSON object schema the request models refer to.
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(crate::models::schemas::json_components());
    // These two take a missing body as `{}`. utoipa says "optional" only by
    // also admitting a `null` body, which they refuse (422): mark them here.
    for (path, method) in [
        ("/api/v1/conversations", HttpMethod::Post),
        ("/api/v1/conversations/{id}", HttpMethod::Patch),
    ] {
        let operation = doc.paths.paths.get_mut(path).and_then(|item| match method {
            HttpMethod::Post => item.post.as_mut(),
            HttpMethod::Patch => item.patch.as_mut(),
            _ => None,
        });
        if let Some(body) = operation.and_then(|op| op.request_body.as_mut()) {
            body.required = Some(Required::False);
        }
    }
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// [`document`] as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document().to_json().unwrap_or_else(|e| {
            format!("{{\"error\":\"cannot serialize the OpenAPI document: {e}\"}}")
        })
    })
}
