//! Pages are bounded in bytes as well as in rows (`dave::repo::PAGE_BYTES`):
//! large rows end a page early with a `next_cursor`, so the memory one
//! request takes is bounded, and paging on loses and repeats nothing.

use dave::repo::PAGE_BYTES;
use serde_json::Value;
use uuid::Uuid;

use crate::calls::{new_conversation, Who};
use crate::helpers::{spawn_app, TestApp};

/// One page as it came: the body's length and its items.
struct RawPage {
    bytes: usize,
    items: Vec<Value>,
}

/// Every page of `path` with `?limit=100`, following `next_cursor`.
async fn pages(app: &TestApp, path: &str, token: &str) -> Vec<RawPage> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            None => format!("{path}?limit=100"),
            Some(c) => format!("{path}?limit=100&cursor={c}"),
        };
        let response = app
            .client
            .get(app.url(&url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        out.push(RawPage {
            bytes: text.len(),
            items: body["items"].as_array().unwrap().clone(),
        });
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

/// Checks the pages against the ids expected, in order, and the byte bound:
/// a page ends only once its rows reach the budget (so its JSON, larger
/// than the rows, is at least that), and holds at most one row beyond it.
fn check(pages: &[RawPage], expected: &[Uuid], row_json_max: usize) {
    assert!(pages.len() > 1, "{} pages", pages.len());
    let got: Vec<Uuid> = pages
        .iter()
        .flat_map(|p| &p.items)
        .map(|item| item["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, expected, "every row once, in order");
    let budget = PAGE_BYTES;
    for (i, page) in pages.iter().enumerate() {
        assert!(
            page.bytes <= budget + row_json_max + 1024,
            "page {i}: {} bytes",
            page.bytes
        );
        if i + 1 < pages.len() {
            assert!(
                page.bytes >= budget,
                "page {i} ended early: {} bytes",
                page.bytes
            );
        }
    }
}

#[tokio::test]
async fn large_messages_come_in_pages_within_the_byte_budget() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let who = Who::bearer(user, false);
    let conversation = new_conversation(&app, &who, "big").await;
    let id: Uuid = conversation["id"].as_str().unwrap().parse().unwrap();
    // 12 messages of ~232 KB (content at its 32,000-character limit and 100
    // resources of 2,000): ~2.8 MB, five to a page.
    let mut conn = app.db.acquire().await.unwrap();
    conn.execute(
        "INSERT INTO ai_messages (conversation_id, role, content, resources) \
         SELECT $1, 'user', lpad(i::text, 32000, 'x'), array_fill(repeat('r', 2000), ARRAY[100]) \
         FROM generate_series(1, 12) i",
        &[&id],
    )
    .await
    .unwrap();
    let expected: Vec<Uuid> = conn
        .fetch_val(
            "SELECT array_agg(id ORDER BY created_at, id) FROM ai_messages WHERE conversation_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    drop(conn);

    let path = format!("/api/v1/conversations/{id}/messages");
    let pages = pages(&app, &path, &app.bearer(user, false)).await;
    let row_json = serde_json::to_string(&pages[0].items[0]).unwrap().len();
    assert!(row_json > 200_000, "{row_json}");
    check(&pages, &expected, row_json);
    assert_eq!(pages.len(), 3, "5 + 5 + 2 rows");
}

#[tokio::test]
async fn large_conversations_come_in_pages_within_the_byte_budget() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let mut conn = app.db.acquire().await.unwrap();
    // 30 conversations with ~60 KB of context each: ~1.8 MB.
    conn.execute(
        "INSERT INTO ai_conversations (user_id, title, context) \
         SELECT $1, 'c' || i, jsonb_build_object('blob', repeat('c', 60000)) \
         FROM generate_series(1, 30) i",
        &[&user],
    )
    .await
    .unwrap();
    let expected: Vec<Uuid> = conn
        .fetch_val(
            "SELECT array_agg(id ORDER BY updated_at DESC, id DESC) FROM ai_conversations \
             WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap();
    drop(conn);

    let pages = pages(&app, "/api/v1/conversations", &app.bearer(user, false)).await;
    let row_json = serde_json::to_string(&pages[0].items[0]).unwrap().len();
    check(&pages, &expected, row_json);
}

#[tokio::test]
async fn knowledge_hits_stop_at_the_byte_budget() {
    let app = spawn_app().await;
    let word = format!("zq{}", rand::random::<u32>());
    let mut conn = app.db.acquire().await.unwrap();
    // 20 articles of ~90 KB that all match: ~1.8 MB.
    conn.execute(
        "INSERT INTO knowledge_base (title, content, tags) \
         SELECT $1 || ' ' || i, repeat('lorem ', 15000), '{}' FROM generate_series(1, 20) i",
        &[&word],
    )
    .await
    .unwrap();
    drop(conn);
    let token = app.bearer(Uuid::new_v4(), false);
    let response = app
        .client
        .get(app.url(&format!("/api/v1/knowledge?q={word}&limit=100")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let hits = body["items"].as_array().unwrap();
    assert!(
        (1..20).contains(&hits.len()),
        "{} of 20 hits: ended at the budget",
        hits.len()
    );
    let budget = PAGE_BYTES;
    let row_json = serde_json::to_string(&hits[0]).unwrap().len();
    assert!(
        text.len() >= budget && text.len() <= budget + row_json + 1024,
        "{} bytes",
        text.len()
    );
}
