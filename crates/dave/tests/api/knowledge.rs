//! `/api/v1/knowledge`: full-text search for any caller, best match first;
//! adding articles is for admins only.

use serde_json::{json, Value};

use crate::calls::{get, post, Who};
use crate::helpers::spawn_app;

const PATH: &str = "/api/v1/knowledge";

fn titles(reply: &Value) -> Vec<String> {
    reply["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|hit| hit["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn admins_add_articles_and_anyone_finds_them_best_first() {
    let app = spawn_app().await;
    let admin = Who::admin();
    let body = json!({"title": " Zebra pools ", "content": "zebra sizing for zebra herds", "tags": ["t", " u "]});
    let reply = post(&app, PATH, &admin, body).await;
    let article = reply.assert_status(201).clone();
    assert_eq!(article["title"], "Zebra pools");
    assert_eq!(article["tags"], json!(["t", "u"]));
    for field in ["id", "content", "created_at", "updated_at"] {
        assert!(!article[field].is_null(), "{field} in {article}");
    }
    post(
        &app,
        PATH,
        &Who::admin_key(),
        json!({"title": "Zebra crossing", "content": "one zebra"}),
    )
    .await
    .assert_status(201);
    post(
        &app,
        PATH,
        &admin,
        json!({"title": "Horses", "content": "no stripes here"}),
    )
    .await
    .assert_status(201);

    for who in [Who::Nobody, Who::user(), Who::user_key()] {
        let reply = get(&app, &format!("{PATH}?q=zebra"), &who).await;
        let results = reply.assert_status(200);
        assert_eq!(
            titles(results),
            ["Zebra pools", "Zebra crossing"],
            "best first"
        );
        let items = results["items"].as_array().unwrap();
        let ranks: Vec<f64> = items
            .iter()
            .map(|hit| hit["rank"].as_f64().unwrap())
            .collect();
        assert!(ranks[0] > ranks[1], "ranked: {ranks:?}");
        let mut keys: Vec<&str> = items[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["content", "id", "rank", "tags", "title"]);
        assert_eq!(items[0]["id"], article["id"]);
        assert_eq!(items[0]["tags"], json!(["t", "u"]));
    }
    // English stemming: "herd" finds "herds".
    let stemmed = get(&app, &format!("{PATH}?q=herd"), &Who::user()).await;
    assert_eq!(titles(stemmed.assert_status(200)), ["Zebra pools"]);
    let limited = get(&app, &format!("{PATH}?q=zebra&limit=1"), &Who::user()).await;
    assert_eq!(titles(limited.assert_status(200)), ["Zebra pools"]);
}

#[tokio::test]
async fn the_fixture_articles_are_searchable() {
    let app = spawn_app().await;
    let reply = get(&app, &format!("{PATH}?q=readiness%20probe"), &Who::user()).await;
    assert_eq!(titles(reply.assert_status(200)), ["Readiness probes"]);
}

#[tokio::test]
async fn odd_search_text_is_an_empty_result_or_a_422_never_a_500() {
    let app = spawn_app().await;
    let who = Who::user();
    for q in [
        "the",
        "a%20an%20of",
        "%26%7C!%3A*()",
        "'%3B%20DROP%20TABLE%20knowledge_base%3B--",
        "%E2%98%83",
        "x%3A*",
    ] {
        let reply = get(&app, &format!("{PATH}?q={q}"), &who).await;
        assert_eq!(reply.assert_status(200)["items"], json!([]), "q={q}");
    }
    for q in ["", "%20%20", "a%00b"] {
        get(&app, &format!("{PATH}?q={q}"), &who)
            .await
            .assert_invalid("q");
    }
    get(&app, PATH, &who).await.assert_invalid("q");
    let long = "x".repeat(501);
    get(&app, &format!("{PATH}?q={long}"), &who)
        .await
        .assert_invalid("q");
    for limit in ["0", "101", "many"] {
        get(&app, &format!("{PATH}?q=pool&limit={limit}"), &who)
            .await
            .assert_invalid("limit");
    }
}

#[tokio::test]
async fn only_admins_add_articles() {
    let app = spawn_app().await;
    let body = json!({"title": "t", "content": "c"});
    for who in [Who::Nobody, Who::user(), Who::user_key()] {
        post(&app, PATH, &who, body.clone())
            .await
            .assert_error(403, "forbidden");
    }
    // Refused before the body is read: a non-admin learns nothing about its rules.
    post(&app, PATH, &Who::user(), json!({"bogus": true}))
        .await
        .assert_error(403, "forbidden");
    // An anonymous session is never an admin either.
    let anonymous = post(&app, PATH, &Who::Nobody, body).await;
    let session = Who::Session(anonymous.session_token().expect("a new session"));
    post(&app, PATH, &session, json!({"title": "t", "content": "c"}))
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn article_rules_name_the_field() {
    let app = spawn_app().await;
    let admin = Who::admin();
    let cases = [
        (json!({"content": "c"}), "title"),
        (json!({"title": "", "content": "c"}), "title"),
        (json!({"title": "t".repeat(501), "content": "c"}), "title"),
        (json!({"title": "a\u{0}", "content": "c"}), "title"),
        (json!({"title": "t"}), "content"),
        (json!({"title": "t", "content": "  "}), "content"),
        (
            json!({"title": "t", "content": "c".repeat(100_001)}),
            "content",
        ),
        (json!({"title": "t", "content": "c", "tags": "x"}), "tags"),
        (json!({"title": "t", "content": "c", "tags": [""]}), "tags"),
        (
            json!({"title": "t", "content": "c", "tags": vec!["t"; 51]}),
            "tags",
        ),
        (
            json!({"title": "t", "content": "c", "metadata": {}}),
            "metadata",
        ),
    ];
    for (body, field) in cases {
        post(&app, PATH, &admin, body).await.assert_invalid(field);
    }
    let longest = json!({"title": "t".repeat(500), "content": "word ".repeat(20_000)});
    post(&app, PATH, &admin, longest).await.assert_status(201);
}
