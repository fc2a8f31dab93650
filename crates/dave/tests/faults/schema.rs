//! Regressions for what Schemathesis found (scripts/schemathesis.sh,
//! docs/testing.md): rules the OpenAPI document did not declare, and
//! answers that broke the contract. In-process, on the shared test cluster:
//! nothing here is a fault, they only live next to the fault suite because
//! both test the service from the outside.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, ADMIN_KEY};

fn document() -> Value {
    serde_json::from_str(dave::openapi::document_json()).expect("the document is JSON")
}

#[test]
fn bodies_that_may_be_absent_are_optional_but_never_null() {
    let doc = document();
    for (path, method) in [
        ("/api/v1/conversations", "post"),
        ("/api/v1/conversations/{id}", "patch"),
    ] {
        let body = &doc["paths"][path][method]["requestBody"];
        eprintln!("{method} {path}: {body}");
        assert_ne!(body["required"], json!(true), "{method} {path}: {body}");
        let schema = &body["content"]["application/json"]["schema"];
        assert!(
            !schema.to_string().contains("\"null\""),
            "{method} {path}: a null body is refused with 422, so the schema must not allow it: {schema}"
        );
    }
}

#[test]
fn text_rules_are_declared() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let title = &schemas["CreateConversation"]["properties"]["title"];
    assert!(title["pattern"].is_string(), "{title}");
    let tags = &schemas["CreateKnowledge"]["properties"]["tags"];
    assert_eq!(tags["items"]["minLength"], 1, "{tags}");
    let metadata = &schemas["CreateMessage"]["properties"]["metadata"];
    assert_eq!(
        metadata["$ref"], "#/components/schemas/JsonObject",
        "{metadata}"
    );
    assert!(schemas["JsonObject"]["propertyNames"]["pattern"].is_string());
}

#[tokio::test]
async fn a_whole_version_number_written_with_a_fraction_is_accepted() {
    let app = spawn_app().await;
    let base = app.url("/api/v1/admin/prompts/faults/rollback_number");
    let created = app
        .client
        .post(format!("{base}/versions"))
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"content": "v1", "commit_message": "first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    for (number, status) in [
        (json!(1.0), 200),
        (json!(1), 200),
        (json!(1.5), 422),
        (json!(3e9), 422),
    ] {
        let response = app
            .client
            .post(format!("{base}/rollback"))
            .header("X-API-Key", ADMIN_KEY)
            .header("Content-Type", "application/json")
            .body(format!("{{\"version_number\": {number}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            status,
            "{number}: {:?}",
            response.text().await
        );
    }
}
