//! The authorization matrix: for every pair of callers (bearer user, API-key
//! user, admin, anonymous session) and every user-scoped route, the intruder
//! neither reads nor writes the owner's rows, and its 404 is exactly the 404
//! of a row that does not exist (no existence leak).

use serde_json::{json, Value};
use uuid::Uuid;

use crate::calls::{delete, get, new_conversation, new_message, patch, post, Reply, Who};
use crate::helpers::{spawn_app, TestApp};

/// The caller kinds of the matrix, each a distinct user.
async fn callers(app: &TestApp) -> Vec<(&'static str, Who)> {
    let anonymous = post(
        app,
        "/api/v1/conversations",
        &Who::Nobody,
        json!({"title": "anon"}),
    )
    .await;
    let session = Who::Session(anonymous.session_token().expect("a session token"));
    vec![
        ("bearer user", Who::user()),
        ("api key user", Who::user_key()),
        ("admin", Who::admin()),
        ("api key admin", Who::admin_key()),
        ("anonymous session", session),
    ]
}

/// What the owner sees of its conversation and messages.
async fn snapshot(app: &TestApp, owner: &Who, id: &str) -> (Value, Value) {
    let conversation = get(app, &format!("/api/v1/conversations/{id}"), owner)
        .await
        .assert_status(200)
        .clone();
    let messages = get(app, &format!("/api/v1/conversations/{id}/messages"), owner)
        .await
        .assert_status(200)
        .clone();
    (conversation, messages)
}

/// The same answer as for a row that does not exist at all.
#[track_caller]
fn assert_like_missing(reply: &Reply, missing: &Reply, what: &str) {
    reply.assert_error(404, "not_found");
    assert_eq!(
        reply.body, missing.body,
        "{what}: same body as a missing row"
    );
}

#[tokio::test]
async fn no_caller_reads_or_writes_another_callers_rows() {
    let app = spawn_app().await;
    let callers = callers(&app).await;
    for (owner_kind, owner) in &callers {
        let conversation = new_conversation(&app, owner, &format!("owned by {owner_kind}")).await;
        let id = conversation["id"].as_str().unwrap().to_owned();
        new_message(&app, owner, &id, "first").await;
        new_message(&app, owner, &id, "second").await;
        let before = snapshot(&app, owner, &id).await;
        let owner_page = get(&app, "/api/v1/conversations?limit=1", owner).await;
        let owner_cursor = owner_page.body["next_cursor"].as_str().map(str::to_owned);

        for (intruder_kind, intruder) in &callers {
            if intruder_kind == owner_kind {
                continue;
            }
            let what =
                |route: &str| format!("{intruder_kind} -> {owner_kind}'s conversation: {route}");
            let path = format!("/api/v1/conversations/{id}");
            let messages = format!("{path}/messages");
            let nowhere = format!("/api/v1/conversations/{}", Uuid::new_v4());
            let nowhere_messages = format!("{nowhere}/messages");

            let missing = get(&app, &nowhere, intruder).await;
            assert_like_missing(&get(&app, &path, intruder).await, &missing, &what("GET"));

            let change = json!({"title": "pwned", "metadata": {"by": intruder_kind}});
            let missing = patch(&app, &nowhere, intruder, change.clone()).await;
            assert_like_missing(
                &patch(&app, &path, intruder, change).await,
                &missing,
                &what("PATCH"),
            );

            let missing = delete(&app, &nowhere, intruder).await;
            assert_like_missing(
                &delete(&app, &path, intruder).await,
                &missing,
                &what("DELETE"),
            );

            let message = json!({"role": "user", "content": "injected"});
            let missing = post(&app, &nowhere_messages, intruder, message.clone()).await;
            assert_like_missing(
                &post(&app, &messages, intruder, message).await,
                &missing,
                &what("POST messages"),
            );

            let missing = get(&app, &nowhere_messages, intruder).await;
            assert_like_missing(
                &get(&app, &messages, intruder).await,
                &missing,
                &what("GET messages"),
            );

            let listed = get(&app, "/api/v1/conversations?limit=100", intruder).await;
            let items = listed.assert_status(200)["items"]
                .as_array()
                .unwrap()
                .clone();
            assert!(
                items.iter().all(|c| c["id"] != id.as_str()),
                "{}",
                what("GET list shows it")
            );
            assert!(
                items.iter().all(|c| c["user_id"] == items[0]["user_id"]),
                "{}",
                what("GET list mixes users")
            );
            if let Some(cursor) = &owner_cursor {
                get(
                    &app,
                    &format!("/api/v1/conversations?cursor={cursor}"),
                    intruder,
                )
                .await
                .assert_invalid("cursor");
            }
        }

        let after = snapshot(&app, owner, &id).await;
        assert_eq!(
            after, before,
            "{owner_kind}'s conversation and messages are untouched"
        );
    }
}

#[tokio::test]
async fn rows_of_other_users_stay_out_of_the_database_writes() {
    // The same, checked in the database rather than through the API: after
    // every intruder tried every write, the owner's rows are as they were.
    let app = spawn_app().await;
    let owner = Who::user();
    let intruder = Who::user();
    let conversation = new_conversation(&app, &owner, "mine").await;
    let id = conversation["id"].as_str().unwrap();
    new_message(&app, &owner, id, "hello").await;
    let conversation_id = Uuid::parse_str(id).unwrap();
    let count = || async {
        let row: (i64, i64) = {
            let conversations: i64 = app
                .db
                .fetch_val(
                    "SELECT count(*) FROM ai_conversations WHERE id = $1 AND title = 'mine'",
                    &[&conversation_id],
                )
                .await
                .unwrap();
            let messages: i64 = app
                .db
                .fetch_val(
                    "SELECT count(*) FROM ai_messages WHERE conversation_id = $1",
                    &[&conversation_id],
                )
                .await
                .unwrap();
            (conversations, messages)
        };
        row
    };
    assert_eq!(count().await, (1, 1));
    let path = format!("/api/v1/conversations/{id}");
    patch(&app, &path, &intruder, json!({"title": "x"}))
        .await
        .assert_error(404, "not_found");
    post(
        &app,
        &format!("{path}/messages"),
        &intruder,
        json!({"role": "user", "content": "x"}),
    )
    .await
    .assert_error(404, "not_found");
    delete(&app, &path, &intruder)
        .await
        .assert_error(404, "not_found");
    assert_eq!(count().await, (1, 1));
    let intruders: i64 = app
        .db
        .fetch_val(
            "SELECT count(*) FROM ai_conversations WHERE user_id = $1",
            &[&intruder.user_id().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(intruders, 0, "the intruder created nothing");
}
