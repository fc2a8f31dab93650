//! `/api/v1/admin/prompts`: versioned prompts. New versions are numbered
//! max + 1 even under concurrent posts, and become current; rollback picks
//! an existing version; everything is admin only.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::calls::{get, post, Who};
use crate::helpers::spawn_app;

const LIST: &str = "/api/v1/admin/prompts";

fn prompt(category: &str, name: &str) -> String {
    format!("{LIST}/{category}/{name}")
}

async fn add(app: &crate::helpers::TestApp, who: &Who, path: &str, content: &str) -> Value {
    let body = json!({"content": content, "commit_message": format!("commit {content}")});
    post(app, &format!("{path}/versions"), who, body)
        .await
        .assert_status(201)
        .clone()
}

#[tokio::test]
async fn versions_are_numbered_and_become_current() {
    let app = spawn_app().await;
    let admin = Who::admin();
    let path = prompt("support", "greeting");
    get(&app, &path, &admin)
        .await
        .assert_error(404, "not_found");

    let first = add(&app, &admin, &path, "Hello v1").await;
    assert_eq!(first["category"], "support");
    assert_eq!(first["name"], "greeting");
    assert_eq!(first["version_number"], 1);
    assert_eq!(first["content"], "Hello v1");
    assert_eq!(first["commit_message"], "commit Hello v1");
    assert!(first["created_at"].is_string());
    let second = add(&app, &admin, &path, "Hello v2").await;
    assert_eq!(second["version_number"], 2);

    let detail = get(&app, &path, &admin).await;
    let detail = detail.assert_status(200);
    assert_eq!(detail["versions"], 2);
    assert_eq!(detail["description"], Value::Null);
    assert_eq!(detail["current_version"]["version_number"], 2);
    assert_eq!(detail["current_version"]["content"], "Hello v2");
    assert_eq!(
        detail["current_version"]["created_at"],
        second["created_at"]
    );

    let listed = get(&app, LIST, &admin).await;
    let items = listed.assert_status(200)["items"]
        .as_array()
        .unwrap()
        .clone();
    let ours = items
        .iter()
        .find(|p| p["category"] == "support" && p["name"] == "greeting")
        .expect("the new prompt is listed");
    assert_eq!(
        ours,
        &json!({"category": "support", "name": "greeting", "description": null, "current_version": 2})
    );
}

#[tokio::test]
async fn the_list_holds_the_seeded_prompts_in_order() {
    let app = spawn_app().await;
    let reply = get(&app, LIST, &Who::admin_key()).await;
    let items = reply.assert_status(200)["items"]
        .as_array()
        .unwrap()
        .clone();
    let keys: Vec<(String, String)> = items
        .iter()
        .map(|p| {
            (
                p["category"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "by category, then name");
    assert!(
        keys.contains(&("system".to_owned(), "default".to_owned())),
        "{keys:?}"
    );
    let detail = get(&app, &prompt("system", "default"), &Who::admin_key()).await;
    let detail = detail.assert_status(200);
    assert!(detail["versions"].as_i64().unwrap() >= 1);
    assert!(detail["description"].is_string());
    assert!(detail["current_version"]["content"]
        .as_str()
        .unwrap()
        .contains("Dave"));
}

#[tokio::test]
async fn rollback_makes_an_existing_version_current() {
    let app = spawn_app().await;
    let admin = Who::admin();
    let path = prompt("support", "farewell");
    for i in 1..=3 {
        add(&app, &admin, &path, &format!("v{i}")).await;
    }
    let rollback = format!("{path}/rollback");
    let reply = post(&app, &rollback, &admin, json!({"version_number": 1})).await;
    let detail = reply.assert_status(200);
    assert_eq!(detail["current_version"]["version_number"], 1);
    assert_eq!(detail["current_version"]["content"], "v1");
    assert_eq!(detail["versions"], 3);
    let read = get(&app, &path, &admin).await;
    assert_eq!(
        read.assert_status(200)["current_version"]["version_number"],
        1
    );

    // The next version still counts from the highest, not from the current.
    let next = add(&app, &admin, &path, "v4").await;
    assert_eq!(next["version_number"], 4);

    for missing in [99, 5] {
        post(&app, &rollback, &admin, json!({"version_number": missing}))
            .await
            .assert_error(404, "not_found");
    }
    post(
        &app,
        &format!("{}/rollback", prompt("support", "nope")),
        &admin,
        json!({"version_number": 1}),
    )
    .await
    .assert_error(404, "not_found");
    let current = get(&app, &path, &admin).await;
    assert_eq!(
        current.assert_status(200)["current_version"]["version_number"],
        4,
        "unchanged by a failed rollback"
    );
}

/// Posts `n` versions to `path` at once; the numbers they got.
async fn race(app: &crate::helpers::TestApp, admin: &Who, path: &str, n: usize) -> BTreeSet<i64> {
    let posts = (0..n).map(|i| async move {
        let body = json!({"content": format!("c{i}"), "commit_message": format!("m{i}")});
        post(app, &format!("{path}/versions"), admin, body).await
    });
    let replies = futures_util::future::join_all(posts).await;
    let numbers: BTreeSet<i64> = replies
        .iter()
        .map(|r| r.assert_status(201)["version_number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers.len(), n, "no number given twice: {numbers:?}");
    numbers
}

#[tokio::test]
async fn twenty_concurrent_posts_get_twenty_consecutive_numbers() {
    let app = spawn_app().await;
    let admin = Who::admin();
    let path = prompt("load", "race");
    // On a new prompt (the posts also race to create it) ...
    assert_eq!(
        race(&app, &admin, &path, 20).await,
        (1..=20).collect::<BTreeSet<i64>>()
    );
    // ... and on an existing one.
    assert_eq!(
        race(&app, &admin, &path, 20).await,
        (21..=40).collect::<BTreeSet<i64>>()
    );

    let detail = get(&app, &path, &admin).await;
    let detail = detail.assert_status(200);
    assert_eq!(detail["versions"], 40);
    assert_eq!(
        detail["current_version"]["version_number"], 40,
        "the last one is current"
    );
}

#[tokio::test]
async fn everything_is_admin_only() {
    let app = spawn_app().await;
    let path = prompt("system", "default");
    for who in [Who::Nobody, Who::user(), Who::user_key()] {
        get(&app, LIST, &who).await.assert_error(403, "forbidden");
        get(&app, &path, &who).await.assert_error(403, "forbidden");
        post(
            &app,
            &format!("{path}/versions"),
            &who,
            json!({"content": "x", "commit_message": "y"}),
        )
        .await
        .assert_error(403, "forbidden");
        post(
            &app,
            &format!("{path}/rollback"),
            &who,
            json!({"version_number": 1}),
        )
        .await
        .assert_error(403, "forbidden");
    }
    // Nothing changed.
    let detail = get(&app, &path, &Who::admin_key()).await;
    assert_eq!(detail.assert_status(200)["versions"], 1);
}

#[tokio::test]
async fn body_and_path_rules_name_the_field() {
    let app = spawn_app().await;
    let admin = Who::admin();
    let path = prompt("support", "rules");
    let versions = format!("{path}/versions");
    let cases = [
        (json!({"commit_message": "m"}), "content"),
        (json!({"content": "", "commit_message": "m"}), "content"),
        (json!({"content": " ", "commit_message": "m"}), "content"),
        (
            json!({"content": "c".repeat(100_001), "commit_message": "m"}),
            "content",
        ),
        (
            json!({"content": "a\u{0}", "commit_message": "m"}),
            "content",
        ),
        (json!({"content": "c"}), "commit_message"),
        (
            json!({"content": "c", "commit_message": ""}),
            "commit_message",
        ),
        (
            json!({"content": "c", "commit_message": "m".repeat(501)}),
            "commit_message",
        ),
        (
            json!({"content": "c", "commit_message": "m", "version_number": 7}),
            "version_number",
        ),
    ];
    for (body, field) in cases {
        post(&app, &versions, &admin, body)
            .await
            .assert_invalid(field);
    }
    let rollback = format!("{path}/rollback");
    for (body, field) in [
        (json!({}), "version_number"),
        (json!({"version_number": 0}), "version_number"),
        (json!({"version_number": -1}), "version_number"),
        (json!({"version_number": "1"}), "version_number"),
        (json!({"version_number": 1.5}), "version_number"),
        (
            json!({"version_number": 4_294_967_296_i64}),
            "version_number",
        ),
        (json!({"version_number": 1, "force": true}), "force"),
    ] {
        post(&app, &rollback, &admin, body)
            .await
            .assert_invalid(field);
    }
    let long_category = "c".repeat(101);
    get(&app, &prompt(&long_category, "n"), &admin)
        .await
        .assert_invalid("category");
    let long_name = "n".repeat(201);
    get(&app, &prompt("c", &long_name), &admin)
        .await
        .assert_invalid("name");
    get(&app, &prompt("c", "a%00b"), &admin)
        .await
        .assert_invalid("name");
    post(
        &app,
        &format!("{}/versions", prompt("c", "a%00b")),
        &admin,
        json!({"content": "x", "commit_message": "y"}),
    )
    .await
    .assert_invalid("name");

    // Any other text is a fine name, including spaces and slashes (encoded).
    let odd = prompt("my%20category", "name%2Fwith%2Fslashes");
    let created = add(&app, &admin, &odd, "x").await;
    assert_eq!(created["category"], "my category");
    assert_eq!(created["name"], "name/with/slashes");
    get(&app, &odd, &admin).await.assert_status(200);
}
