//! `/openapi.json`: an OpenAPI 3 document generated from the code, naming
//! every route of DESIGN §3 with its methods, every `$ref` resolving, and
//! every documented route really served.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{spawn_app, ADMIN_KEY};

/// DESIGN §3's routes and methods.
const CONTRACT: &[(&str, &[&str])] = &[
    ("/health/live", &["get"]),
    ("/health/ready", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
    ("/docs", &["get"]),
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
    let responses = doc["components"]["responses"]
        .as_object()
        .expect("shared responses");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let resolves = if let Some(name) = r.strip_prefix("#/components/schemas/") {
            schemas.contains_key(name)
        } else if let Some(name) = r.strip_prefix("#/components/responses/") {
            responses.contains_key(name)
        } else {
            panic!("unexpected $ref {r}")
        };
        assert!(resolves, "{r} does not resolve");
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

/// The error answers many operations give (401, 403, 413, 415, 422, 503 and
/// 400) are defined once under `components.responses` and referred to, so
/// the document cannot describe one of them two ways.
#[tokio::test]
async fn shared_error_responses_are_defined_once_and_referred_to() {
    let (_app, doc) = document().await;
    let shared = [
        ("400", "InvalidJson"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("413", "PayloadTooLarge"),
        ("415", "UnsupportedMediaType"),
        ("422", "Validation"),
        ("503", "Unavailable"),
    ];
    for (_, name) in shared {
        let response = &doc["components"]["responses"][name];
        assert_eq!(
            response["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{name}: {response}"
        );
    }
    assert!(
        doc["components"]["responses"]["Unavailable"]["headers"]["retry-after"].is_object(),
        "503 declares Retry-After"
    );
    let mut api_operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            // The middleware answers a declared body over 1 MiB on any route.
            assert_eq!(
                op["responses"]["413"]["$ref"], "#/components/responses/PayloadTooLarge",
                "{method} {path} does not declare 413"
            );
        }
        if !path.starts_with("/api/") {
            // The operations endpoints answer their own bodies (readiness's 503).
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            for (status, name) in shared {
                let Some(response) = op["responses"].get(status) else {
                    continue;
                };
                assert_eq!(
                    response["$ref"],
                    format!("#/components/responses/{name}"),
                    "{method} {path} {status} is written out instead of referring to the shared one"
                );
            }
            api_operations += 1;
            for status in ["401", "503"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path} does not declare {status}"
                );
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} takes a body but does not declare {status}"
                    );
                }
            }
        }
    }
    assert_eq!(api_operations, 13);
}

/// `/docs` and its two files are served from the binary.
#[tokio::test]
async fn docs_page_and_its_files_are_served_from_the_binary() {
    let app = spawn_app().await;
    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for (path, content_type) in [
        (
            "/docs/swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
        ),
        ("/docs/swagger-ui.css", "text/css; charset=utf-8"),
    ] {
        let file = path.trim_start_matches('/');
        assert!(
            html.contains(&format!("\"{file}\"")),
            "{file} not loaded by {html}"
        );
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert!(response.bytes().await.unwrap().len() > 100_000, "{path}");
    }
}

/// Debian's `chromium`, or where `CHROMIUM` says. `None` only outside CI:
/// in CI (`CI` set) a missing browser fails the test, since `.ci/run`
/// installs it.
fn chromium() -> Option<std::path::PathBuf> {
    let candidates = std::env::var_os("CHROMIUM")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(["chromium", "chromium-browser", "google-chrome"].map(std::path::PathBuf::from));
    for candidate in candidates {
        let found = std::process::Command::new(&candidate)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return Some(candidate);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("chromium is not installed; .ci/run installs Debian's chromium package");
    }
    eprintln!(
        "SKIPPED: the /docs browser test needs chromium (apt-get install chromium, or CHROMIUM=path); .ci/run installs it"
    );
    None
}

/// `/docs` in a real browser: headless Chromium loads the page, runs
/// Swagger UI (which fetches `/openapi.json` from the service) and the
/// rendered DOM lists every operation of the document by its path and its
/// operationId.
#[tokio::test]
async fn docs_renders_every_operation_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        return;
    };
    let (app, doc) = document().await;
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(&chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            // Virtual time runs on while the page has work pending (the
            // script, the document's fetch, rendering), up to 30 s of it.
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(app.url("/docs"))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium did not finish within 120 s")
        .expect("chromium could not be started");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dom.contains("swagger-ui") && dom.contains("opblock"),
        "Swagger UI did not render operations:\n{dom}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Swagger UI breaks long paths with <wbr> between segments.
        let shown = dom
            .replace("<wbr>", "")
            .replace("&ZeroWidthSpace;", "")
            .replace('\u{200b}', "");
        assert!(
            shown.contains(&format!(">{path}<")),
            "path {path} is not on the rendered page"
        );
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op["operationId"].as_str() {
                operations += 1;
                assert!(
                    dom.contains(&format!(">{id}<")),
                    "operation {id} ({path}) is not on the rendered page"
                );
            }
        }
    }
    assert!(operations >= 20, "{operations} operations");
}
