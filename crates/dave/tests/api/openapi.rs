//! `/openapi.json`: an OpenAPI 3 document generated from the code, naming
//! every route of DESIGN §3 with its methods, every `$ref` resolving, and
//! every documented route really served.

use serde_json::Value;

use crate::helpers::{spawn_app, ADMIN_KEY};

/// DESIGN §3's routes and methods.
const CONTRACT: &[(&str, &[&str])] = &[
    ("/health/live", &["get"]),
    ("/health/ready", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
    ("/api/v1/conversations", &["get", "post"]),
    ("/api/v1/conversations/{id}", &["get", "patch", "delete"]),
    ("/api/v1/conversations/{id}/messages", &["get", "post"]),
    ("/api/v1/knowledge", &["get", "post"]),
    ("/api/v1/admin/prompts", &["get"]),
    ("/api/v1/admin/prompts/{category}/{name}", &["get"]),
    (
        "/api/v1/admin/prompts/{category}/{name}/versions",
        &["post"],
    ),
    (
        "/api/v1/admin/prompts/{category}/{name}/rollback",
        &["post"],
    ),
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

async fn document() -> (crate::helpers::TestApp, Value) {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    (app, doc)
}

#[tokio::test]
async fn every_contract_route_is_documented() {
    let (_app, doc) = document().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "dave");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in CONTRACT {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not documented; documented: {:?}", paths.keys()));
        for method in *methods {
            let op = item
                .get(*method)
                .unwrap_or_else(|| panic!("{method} {path} is not documented"));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(r) = v.as_str() {
                        out.push(r);
                    }
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_schema_reference_resolves() {
    let (_app, doc) = document().await;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }
    for name in ["ErrorBody", "Readiness", "Liveness"] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
}

/// A concrete path for a documented template.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", &uuid::Uuid::new_v4().to_string())
        .replace("{category}", "system")
        .replace("{name}", "no-such-prompt")
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let (app, doc) = document().await;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| METHODS.contains(&m.as_str()))
        {
            let url = app.url(&concrete(template));
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), url)
                .header("x-api-key", ADMIN_KEY)
                .header("content-type", "application/json")
                .body("{}");
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            assert_ne!(
                status, 405,
                "{method} {template} is documented but not routed"
            );
            if status == 404 {
                let body: Value = response.json().await.unwrap();
                assert_ne!(
                    body["error"]["message"], "no such route",
                    "{method} {template} is documented but not routed"
                );
            }
        }
    }
}
