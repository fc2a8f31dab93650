//! `/api/v1/conversations/{id}/messages`: posting moves the conversation's
//! `updated_at`; listing is oldest first with keyset pages; every field rule.

use chrono::{DateTime, FixedOffset};
use serde_json::{json, Value};

use crate::calls::{all_pages, get, new_conversation, new_message, post, Who};
use crate::helpers::spawn_app;

fn at(value: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a timestamp")).expect("RFC 3339")
}

fn messages_of(conversation: &Value) -> String {
    format!(
        "/api/v1/conversations/{}/messages",
        conversation["id"].as_str().unwrap()
    )
}

#[tokio::test]
async fn post_returns_the_message_and_moves_the_conversation() {
    let app = spawn_app().await;
    let who = Who::user();
    let conversation = new_conversation(&app, &who, "chat").await;
    let body = json!({
        "role": "assistant",
        "content": "hi there",
        "resources": ["kb:pool", "kb:health"],
        "follow_up_suggestions": ["why?"],
        "metadata": {"tokens": 3}
    });
    let reply = post(&app, &messages_of(&conversation), &who, body).await;
    let message = reply.assert_status(201).clone();
    let keys: Vec<&str> = {
        let mut k: Vec<&str> = message
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    };
    assert_eq!(
        keys,
        [
            "content",
            "conversation_id",
            "created_at",
            "follow_up_suggestions",
            "id",
            "metadata",
            "resources",
            "role"
        ]
    );
    assert_eq!(message["conversation_id"], conversation["id"]);
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"], "hi there");
    assert_eq!(message["resources"], json!(["kb:pool", "kb:health"]));
    assert_eq!(message["follow_up_suggestions"], json!(["why?"]));
    assert_eq!(message["metadata"], json!({"tokens": 3}));

    let path = format!(
        "/api/v1/conversations/{}",
        conversation["id"].as_str().unwrap()
    );
    let after = get(&app, &path, &who).await.assert_status(200).clone();
    assert!(
        at(&after["updated_at"]) > at(&conversation["updated_at"]),
        "updated_at moved"
    );
    assert_eq!(
        at(&after["updated_at"]),
        at(&message["created_at"]),
        "in the same transaction"
    );
}

#[tokio::test]
async fn optional_fields_default_to_empty() {
    let app = spawn_app().await;
    let who = Who::user();
    let conversation = new_conversation(&app, &who, "chat").await;
    let reply = post(
        &app,
        &messages_of(&conversation),
        &who,
        json!({"role": "system", "content": "x"}),
    )
    .await;
    let message = reply.assert_status(201);
    assert_eq!(message["resources"], json!([]));
    assert_eq!(message["follow_up_suggestions"], json!([]));
    assert_eq!(message["metadata"], json!({}));
}

#[tokio::test]
async fn field_rules_name_the_field() {
    let app = spawn_app().await;
    let who = Who::user();
    let conversation = new_conversation(&app, &who, "chat").await;
    let path = messages_of(&conversation);
    let cases = [
        (json!({"role": "robot", "content": "x"}), "role"),
        (json!({"role": "User", "content": "x"}), "role"),
        (json!({"content": "x"}), "role"),
        (json!({"role": "user"}), "content"),
        (json!({"role": "user", "content": ""}), "content"),
        (
            json!({"role": "user", "content": "x".repeat(32_001)}),
            "content",
        ),
        (json!({"role": "user", "content": "a\u{0}b"}), "content"),
        (json!({"role": "user", "content": 5}), "content"),
        (
            json!({"role": "user", "content": "x", "resources": "r"}),
            "resources",
        ),
        (
            json!({"role": "user", "content": "x", "resources": [1]}),
            "resources",
        ),
        (
            json!({"role": "user", "content": "x", "resources": ["a\u{0}"]}),
            "resources",
        ),
        (
            json!({"role": "user", "content": "x", "follow_up_suggestions": [null]}),
            "follow_up_suggestions",
        ),
        (
            json!({"role": "user", "content": "x", "metadata": []}),
            "metadata",
        ),
        (
            json!({"role": "user", "content": "x", "metadata": {"k": "\u{0}"}}),
            "metadata",
        ),
        (json!({"role": "user", "content": "x", "id": "mine"}), "id"),
    ];
    for (body, field) in cases {
        post(&app, &path, &who, body).await.assert_invalid(field);
    }
    let longest = "ü".repeat(32_000);
    let reply = post(
        &app,
        &path,
        &who,
        json!({"role": "user", "content": longest}),
    )
    .await;
    assert_eq!(
        reply.assert_status(201)["content"],
        longest,
        "32000 characters, not bytes"
    );
}

#[tokio::test]
async fn posting_to_a_missing_or_malformed_conversation() {
    let app = spawn_app().await;
    let who = Who::user();
    let missing = format!("/api/v1/conversations/{}/messages", uuid::Uuid::new_v4());
    post(
        &app,
        &missing,
        &who,
        json!({"role": "user", "content": "x"}),
    )
    .await
    .assert_error(404, "not_found");
    get(&app, &missing, &who)
        .await
        .assert_error(404, "not_found");
    let malformed = "/api/v1/conversations/nope/messages";
    post(
        &app,
        malformed,
        &who,
        json!({"role": "user", "content": "x"}),
    )
    .await
    .assert_invalid("id");
    get(&app, malformed, &who).await.assert_invalid("id");
}

#[tokio::test]
async fn list_is_oldest_first_with_keyset_pages() {
    let app = spawn_app().await;
    let who = Who::user();
    let conversation = new_conversation(&app, &who, "chat").await;
    let path = messages_of(&conversation);

    let empty = get(&app, &path, &who).await;
    assert_eq!(
        empty.assert_status(200),
        &json!({"items": [], "next_cursor": null})
    );

    let id = conversation["id"].as_str().unwrap();
    let mut contents = Vec::new();
    for i in 0..9 {
        contents.push(new_message(&app, &who, id, &format!("m{i}")).await["content"].clone());
    }
    for limit in [1, 2, 4, 9, 100] {
        let items = all_pages(&app, &path, &who, limit).await;
        let got: Vec<Value> = items.iter().map(|m| m["content"].clone()).collect();
        assert_eq!(got, contents, "limit {limit}");
    }
    let first = get(&app, &format!("{path}?limit=9"), &who).await;
    assert_eq!(first.assert_status(200)["next_cursor"], Value::Null);
}

#[tokio::test]
async fn limit_and_cursor_rules() {
    let app = spawn_app().await;
    let who = Who::user();
    let one = new_conversation(&app, &who, "one").await;
    let two = new_conversation(&app, &who, "two").await;
    for conversation in [&one, &two] {
        for i in 0..3 {
            new_message(
                &app,
                &who,
                conversation["id"].as_str().unwrap(),
                &format!("m{i}"),
            )
            .await;
        }
    }
    let path = messages_of(&one);
    for limit in ["0", "101", "x"] {
        get(&app, &format!("{path}?limit={limit}"), &who)
            .await
            .assert_invalid("limit");
    }
    let page = get(&app, &format!("{path}?limit=1"), &who).await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    get(&app, &format!("{path}?limit=1&cursor={cursor}"), &who)
        .await
        .assert_status(200);
    // A cursor of one conversation does not page through another.
    get(
        &app,
        &format!("{}?limit=1&cursor={cursor}", messages_of(&two)),
        &who,
    )
    .await
    .assert_invalid("cursor");
    // Nor is a conversation cursor a message cursor.
    let conversations = get(&app, "/api/v1/conversations?limit=1", &who).await;
    let conversation_cursor = conversations.body["next_cursor"].as_str().unwrap();
    get(&app, &format!("{path}?cursor={conversation_cursor}"), &who)
        .await
        .assert_invalid("cursor");
    get(&app, &format!("{path}?cursor=garbage"), &who)
        .await
        .assert_invalid("cursor");
}

#[tokio::test]
async fn concurrent_posts_to_one_conversation_all_land() {
    let app = spawn_app().await;
    let who = Who::user();
    let conversation = new_conversation(&app, &who, "busy").await;
    let path = messages_of(&conversation);
    let posts = (0..20).map(|i| {
        let (app, who, path) = (&app, &who, &path);
        async move {
            post(
                app,
                path,
                who,
                json!({"role": "user", "content": format!("m{i}")}),
            )
            .await
        }
    });
    for reply in futures_util::future::join_all(posts).await {
        reply.assert_status(201);
    }
    let items = all_pages(&app, &path, &who, 7).await;
    assert_eq!(items.len(), 20);
    let created: Vec<DateTime<FixedOffset>> = items.iter().map(|m| at(&m["created_at"])).collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "oldest first");
}
