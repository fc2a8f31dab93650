//! The OpenAPI document at `/openapi.json`, generated from the code with
//! utoipa: the operations endpoints declared here, merged with the API's
//! paths and schemas that the route modules declare next to their handlers.
//! Built once per process, on first request.
//!
//! Also the interactive documentation at `/docs`: Swagger UI reading
//! `/openapi.json`, its script and stylesheet built into the binary from
//! `crates/dave/assets/` (vendored from npm's `swagger-ui-dist`, see the
//! README there), so the page needs no CDN and nothing outside the service.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::{HttpMethod, Ref, Required};
use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorDetail};
use crate::ops;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dave",
        description = "The reference service on pgkit: conversations, messages, knowledge base, versioned prompts, API keys. Every error body is {\"error\":{\"code\",\"message\"}}."
    ),
    paths(ops::live, ops::ready, ops::metrics, openapi, docs, docs_script, docs_stylesheet),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        ops::Liveness,
        ops::Readiness,
        ops::ReadinessChecks,
        ops::DatabaseDetails,
        ops::ReplicaDetails
    )),
    tags((name = "operations", description = "Health, metrics, this document and its interactive view"))
)]
struct OperationsDoc;

/// The whole document: operations plus every API route.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = OperationsDoc::openapi();
    doc.merge(crate::api::ApiDoc::openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    // Hand-written: the recursive JSON object schema the request models refer to.
    components
        .schemas
        .extend(crate::api::schemas::json_components());
    // The error answers the operations share, defined once and referred to.
    components.responses.extend(crate::error::responses::all());
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
    // The middleware refuses a declared body over 1 MiB on every route,
    // before routing runs, so every operation can answer 413.
    let too_large = <crate::error::responses::PayloadTooLarge as utoipa::ToResponse>::response().0;
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .responses
                .responses
                .entry("413".to_owned())
                .or_insert_with(|| Ref::from_response_name(too_large).into());
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

/// This document: every route and schema of the service.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"))
)]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// The `/docs` page: loads the two files below and renders `/openapi.json`.
const DOCS_PAGE: &str = include_str!("../assets/docs.html");
/// Swagger UI's script (npm `swagger-ui-dist`, unchanged).
const SWAGGER_UI_SCRIPT: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
/// Swagger UI's stylesheet (npm `swagger-ui-dist`, unchanged).
const SWAGGER_UI_STYLESHEET: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");

/// The vendored files change only with the binary: browsers may keep them an hour.
const ASSET_CACHE: &str = "public, max-age=3600";

/// Interactive API documentation (Swagger UI) of this document.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses((status = 200, description = "An HTML page that renders /openapi.json with Swagger UI", body = String, content_type = "text/html"))
)]
pub async fn docs() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DOCS_PAGE,
    )
        .into_response()
}

/// Swagger UI's script, for `/docs`.
#[utoipa::path(
    get,
    path = "/docs/swagger-ui-bundle.js",
    tag = "operations",
    responses((status = 200, description = "JavaScript", body = String, content_type = "text/javascript"))
)]
pub async fn docs_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        SWAGGER_UI_SCRIPT,
    )
        .into_response()
}

/// Swagger UI's stylesheet, for `/docs`.
#[utoipa::path(
    get,
    path = "/docs/swagger-ui.css",
    tag = "operations",
    responses((status = 200, description = "CSS", body = String, content_type = "text/css"))
)]
pub async fn docs_stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        SWAGGER_UI_STYLESHEET,
    )
        .into_response()
}
