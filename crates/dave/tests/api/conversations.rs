//! `/api/v1/conversations`: create, read, change, delete and list one's own
//! conversations, every field rule of DESIGN §3, and the body rules shared
//! by every JSON route (400, 413, 415, 422).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use reqwest::Method;
use serde_json::{json, Value};

use crate::calls::{
    all_pages, call_raw, delete, get, new_conversation, new_message, patch, post, Who,
};
use crate::helpers::{eventually, migrated_database_on, spawn_app, start, WAIT};

const PATH: &str = "/api/v1/conversations";

fn at(value: &Value) -> DateTime<FixedOffset> {
    let text = value.as_str().expect("a timestamp string");
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {text}"))
}

#[tokio::test]
async fn create_returns_the_conversation_with_defaults() {
    let app = spawn_app().await;
    let who = Who::user();
    let reply = post(&app, PATH, &who, json!({})).await;
    let body = reply.assert_status(201);
    let keys: HashSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "id",
            "user_id",
            "title",
            "context",
            "metadata",
            "created_at",
            "updated_at"
        ])
    );
    assert_eq!(body["title"], "New Conversation");
    assert_eq!(body["context"], json!({}));
    assert_eq!(body["metadata"], json!({}));
    assert_eq!(body["user_id"], who.user_id().unwrap().to_string());
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    assert_eq!(at(&body["created_at"]), at(&body["updated_at"]));
    assert!(
        reply.session_token().is_none(),
        "a bearer caller gets no session token"
    );
}

#[tokio::test]
async fn create_trims_the_title_and_keeps_context_and_metadata() {
    let app = spawn_app().await;
    let who = Who::user();
    let body =
        json!({"title": "  Hello  ", "context": {"a": [1, {"b": null}]}, "metadata": {"k": "v"}});
    let reply = post(&app, PATH, &who, body).await;
    let created = reply.assert_status(201);
    assert_eq!(created["title"], "Hello");
    assert_eq!(created["context"], json!({"a": [1, {"b": null}]}));
    assert_eq!(created["metadata"], json!({"k": "v"}));

    let id = created["id"].as_str().unwrap();
    let read = get(&app, &format!("{PATH}/{id}"), &who).await;
    assert_eq!(
        read.assert_status(200),
        created,
        "what was stored is what was answered"
    );
}

#[tokio::test]
async fn an_empty_body_without_content_type_creates_with_defaults() {
    let app = spawn_app().await;
    let reply = call_raw(&app, Method::POST, PATH, &Who::user(), None, "").await;
    assert_eq!(reply.assert_status(201)["title"], "New Conversation");
}

#[tokio::test]
async fn title_rules_name_the_field() {
    let app = spawn_app().await;
    let who = Who::user();
    for title in [
        json!(""),
        json!("   "),
        json!("x".repeat(201)),
        json!("a\u{0}b"),
        json!(12),
    ] {
        post(&app, PATH, &who, json!({ "title": title }))
            .await
            .assert_invalid("title");
    }
    let longest = "é".repeat(200);
    let reply = post(&app, PATH, &who, json!({ "title": longest })).await;
    assert_eq!(
        reply.assert_status(201)["title"],
        longest,
        "200 characters, not bytes"
    );
}

#[tokio::test]
async fn context_and_metadata_must_be_small_objects() {
    let app = spawn_app().await;
    let who = Who::user();
    for field in ["context", "metadata"] {
        for value in [json!([1, 2]), json!("text"), json!(5)] {
            post(&app, PATH, &who, json!({ field: value }))
                .await
                .assert_invalid(field);
        }
        let big = json!({ "k": "x".repeat(64 * 1024) });
        post(&app, PATH, &who, json!({ field: big }))
            .await
            .assert_invalid(field);
        let nul = json!({ "k": "a\u{0}b" });
        post(&app, PATH, &who, json!({ field: nul }))
            .await
            .assert_invalid(field);
        let fits = json!({ "k": "x".repeat(60 * 1024) });
        post(&app, PATH, &who, json!({ field: fits }))
            .await
            .assert_status(201);
    }
}

#[tokio::test]
async fn unknown_fields_are_refused() {
    let app = spawn_app().await;
    let who = Who::user();
    post(&app, PATH, &who, json!({"bogus": 1}))
        .await
        .assert_invalid("bogus");
    post(
        &app,
        PATH,
        &who,
        json!({"title": "t", "user_id": "someone"}),
    )
    .await
    .assert_invalid("user_id");
    post(&app, PATH, &who, json!(["not", "an", "object"]))
        .await
        .assert_error(422, "validation_error");
}

#[tokio::test]
async fn body_rules_400_413_415() {
    let app = spawn_app().await;
    let who = Who::user();
    let json_type = Some("application/json");
    for bad in [
        "{not json",
        "{\"title\": \"x\"",
        "{\"title\": \"x\"} trailing",
        "\u{1}",
    ] {
        call_raw(&app, Method::POST, PATH, &who, json_type, bad)
            .await
            .assert_error(400, "invalid_json");
    }
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        call_raw(
            &app,
            Method::POST,
            PATH,
            &who,
            content_type,
            "{\"title\":\"x\"}",
        )
        .await
        .assert_error(415, "unsupported_media_type");
    }
    let charset = Some("application/json; charset=utf-8");
    call_raw(&app, Method::POST, PATH, &who, charset, "{\"title\":\"x\"}")
        .await
        .assert_status(201);

    let over = format!("{{\"title\":\"{}\"}}", "x".repeat(1024 * 1024));
    call_raw(&app, Method::POST, PATH, &who, json_type, over.clone())
        .await
        .assert_error(413, "payload_too_large");
    // Just under the limit is read (and then refused for its title, not its size).
    let under = format!("{{\"title\":\"{}\"}}", "x".repeat(1024 * 1024 - 20));
    call_raw(&app, Method::POST, PATH, &who, json_type, under)
        .await
        .assert_invalid("title");
}

#[tokio::test]
async fn get_a_missing_or_malformed_id() {
    let app = spawn_app().await;
    let who = Who::user();
    let missing = uuid::Uuid::new_v4();
    get(&app, &format!("{PATH}/{missing}"), &who)
        .await
        .assert_error(404, "not_found");
    for bad in ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"] {
        get(&app, &format!("{PATH}/{bad}"), &who)
            .await
            .assert_invalid("id");
        patch(&app, &format!("{PATH}/{bad}"), &who, json!({}))
            .await
            .assert_invalid("id");
        delete(&app, &format!("{PATH}/{bad}"), &who)
            .await
            .assert_invalid("id");
    }
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_moves_updated_at() {
    let app = spawn_app().await;
    let who = Who::user();
    let created = post(
        &app,
        PATH,
        &who,
        json!({"title": "Hello", "context": {"a": 1}}),
    )
    .await
    .assert_status(201)
    .clone();
    let path = format!("{PATH}/{}", created["id"].as_str().unwrap());

    let changed = patch(
        &app,
        &path,
        &who,
        json!({"metadata": {"k": "v"}, "title": null}),
    )
    .await
    .assert_status(200)
    .clone();
    assert_eq!(changed["title"], "Hello");
    assert_eq!(changed["context"], json!({"a": 1}));
    assert_eq!(changed["metadata"], json!({"k": "v"}));
    assert_eq!(changed["created_at"], created["created_at"]);
    assert!(
        at(&changed["updated_at"]) > at(&created["updated_at"]),
        "updated_at moves"
    );

    let renamed = patch(&app, &path, &who, json!({"title": " Renamed "})).await;
    assert_eq!(renamed.assert_status(200)["title"], "Renamed");
    assert_eq!(renamed.body["metadata"], json!({"k": "v"}));

    patch(&app, &path, &who, json!({"title": ""}))
        .await
        .assert_invalid("title");
    patch(&app, &path, &who, json!({"context": [1]}))
        .await
        .assert_invalid("context");
    patch(&app, &path, &who, json!({"id": "x"}))
        .await
        .assert_invalid("id");
    let missing = format!("{PATH}/{}", uuid::Uuid::new_v4());
    patch(&app, &missing, &who, json!({"title": "x"}))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn delete_removes_the_conversation_and_its_messages() {
    let app = spawn_app().await;
    let who = Who::user();
    let conversation = new_conversation(&app, &who, "doomed").await;
    let id = conversation["id"].as_str().unwrap();
    for i in 0..3 {
        new_message(&app, &who, id, &format!("m{i}")).await;
    }
    let path = format!("{PATH}/{id}");
    let reply = delete(&app, &path, &who).await;
    assert_eq!(reply.status, 204);
    assert!(reply.body.is_null(), "204 has no body");

    get(&app, &path, &who).await.assert_error(404, "not_found");
    get(&app, &format!("{path}/messages"), &who)
        .await
        .assert_error(404, "not_found");
    delete(&app, &path, &who)
        .await
        .assert_error(404, "not_found");
    let left: i64 = app
        .db
        .fetch_val(
            "SELECT count(*) FROM ai_messages WHERE conversation_id = $1",
            &[&uuid::Uuid::parse_str(id).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(left, 0, "the messages went with the conversation");
}

#[tokio::test]
async fn list_is_newest_updated_first_and_pages_cover_everything_once() {
    let app = spawn_app().await;
    let who = Who::user();
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(new_conversation(&app, &who, &format!("c{i}")).await["id"].clone());
    }
    // A message moves the oldest conversation to the front.
    new_message(&app, &who, ids[0].as_str().unwrap(), "bump").await;
    let mut expected: Vec<Value> = ids[1..].iter().rev().cloned().collect();
    expected.insert(0, ids[0].clone());

    let first = get(&app, &format!("{PATH}?limit=3"), &who).await;
    let body = first.assert_status(200);
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "items and next_cursor: {body}"
    );
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    assert!(body["next_cursor"].is_string());

    for limit in [1, 2, 3, 7, 50] {
        let items = all_pages(&app, PATH, &who, limit).await;
        let got: Vec<Value> = items.iter().map(|c| c["id"].clone()).collect();
        assert_eq!(got, expected, "limit {limit}");
    }
    let updated: Vec<DateTime<FixedOffset>> = all_pages(&app, PATH, &who, 3)
        .await
        .iter()
        .map(|c| at(&c["updated_at"]))
        .collect();
    assert!(
        updated.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {updated:?}"
    );

    let last = get(&app, &format!("{PATH}?limit=7"), &who).await;
    assert_eq!(
        last.assert_status(200)["next_cursor"],
        Value::Null,
        "no page after the last"
    );
    let default = get(&app, PATH, &who).await;
    assert_eq!(
        default.assert_status(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

#[tokio::test]
async fn limit_and_cursor_rules() {
    let app = spawn_app().await;
    let who = Who::user();
    for _ in 0..3 {
        new_conversation(&app, &who, "c").await;
    }
    for limit in ["0", "101", "-1", "abc", "1.5", "99999999999999999999"] {
        get(&app, &format!("{PATH}?limit={limit}"), &who)
            .await
            .assert_invalid("limit");
    }
    get(&app, &format!("{PATH}?limit=100"), &who)
        .await
        .assert_status(200);

    let page = get(&app, &format!("{PATH}?limit=1"), &who).await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    // Tampered: change one character in the middle, or the last two.
    let mut bytes = cursor.clone().into_bytes();
    bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    let cut = format!("{}xx", &cursor[..cursor.len() - 2]);
    for bad in [
        flipped.as_str(),
        cut.as_str(),
        "!!!",
        "abc",
        "%00",
        &"A".repeat(500),
    ] {
        get(&app, &format!("{PATH}?limit=1&cursor={bad}"), &who)
            .await
            .assert_invalid("cursor");
    }
    // Another user's cursor is not a cursor of this list.
    let other = Who::user();
    get(&app, &format!("{PATH}?limit=1&cursor={cursor}"), &other)
        .await
        .assert_invalid("cursor");
    // An empty cursor is the first page.
    let first = get(&app, &format!("{PATH}?limit=1&cursor="), &who).await;
    assert_eq!(first.assert_status(200)["items"], page.body["items"]);
}

#[tokio::test]
async fn fifty_concurrent_creates_all_land() {
    let app = spawn_app().await;
    let who = Who::user();
    let creates = (0..50).map(|i| {
        let (app, who) = (&app, &who);
        async move { post(app, PATH, who, json!({ "title": format!("c{i}") })).await }
    });
    let replies = futures_util::future::join_all(creates).await;
    let mut ids = HashSet::new();
    for reply in &replies {
        ids.insert(reply.assert_status(201)["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 50, "50 distinct conversations");
    let listed = all_pages(&app, PATH, &who, 100).await;
    assert_eq!(listed.len(), 50);
    let titles: HashSet<String> = listed
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, (0..50).map(|i| format!("c{i}")).collect());
}

#[tokio::test]
async fn database_down_is_503_with_retry_after_then_recovers() {
    let cluster = pgkit::testing::dedicated_cluster().await;
    let database = migrated_database_on(&cluster).await;
    let mut config = dave::config::Config::for_tests(database.url());
    config.db.pool_timeout = Duration::from_secs(1);
    config.db.connect_timeout = Duration::from_secs(1);
    config.db.breaker_reset = Duration::from_secs(1);
    let app = start(config, database).await;
    let who = Who::user();
    let conversation = new_conversation(&app, &who, "before the outage").await;
    let path = format!("{PATH}/{}", conversation["id"].as_str().unwrap());

    cluster.stop().await.unwrap();
    let reply = eventually("a 503 while the database is down", WAIT, || async {
        let reply = get(&app, &path, &who).await;
        (reply.status == 503).then_some(reply)
    })
    .await;
    let message = reply.assert_error(503, "unavailable");
    assert!(
        !message.contains("postgresql://"),
        "no DSN in the message: {message}"
    );
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry_after >= 1,
        "Retry-After in whole seconds: {retry_after}"
    );
    // Writes and anonymous callers too.
    post(&app, PATH, &who, json!({}))
        .await
        .assert_error(503, "unavailable");
    let anonymous = post(&app, PATH, &Who::Nobody, json!({})).await;
    anonymous.assert_error(503, "unavailable");
    assert!(anonymous.headers.contains_key("retry-after"));

    cluster.start().await.unwrap();
    let back = eventually("the API to answer again", WAIT, || async {
        let reply = get(&app, &path, &who).await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    assert_eq!(back.body["title"], "before the outage");
}
