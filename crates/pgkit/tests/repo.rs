//! Repository helpers: typed parameters and rows round-trip, and database
//! errors arrive as the typed variants a service maps to HTTP.

use chrono::{DateTime, Utc};
use pgkit::error::DbError;
use pgkit::pool::Database;
use pgkit::repo::{col, FromRow, Row, Within};
use pgkit::settings::{DbSettings, Env};
use pgkit::testing;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, PartialEq)]
struct Item {
    id: Uuid,
    title: String,
    tags: Vec<String>,
    data: Value,
    at: DateTime<Utc>,
}

impl FromRow for Item {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Item {
            id: col(row, "id")?,
            title: col(row, "title")?,
            tags: col(row, "tags")?,
            data: col(row, "data")?,
            at: col(row, "at")?,
        })
    }
}

const CREATE: &str = "CREATE TABLE items (id uuid PRIMARY KEY, title text NOT NULL CONSTRAINT items_title_key UNIQUE, tags text[] NOT NULL, data jsonb NOT NULL, at timestamptz NOT NULL)";
const INSERT: &str = "INSERT INTO items (id, title, tags, data, at) VALUES ($1, $2, $3, $4, $5) RETURNING id, title, tags, data, at";
const BY_ID: &str = "SELECT id, title, tags, data, at FROM items WHERE id = $1";

async fn db() -> (pgkit::testing::TestDatabase, Database) {
    let test_db = testing::cluster().await.database().await;
    let env = Env::from_pairs([("DATABASE_URL", test_db.url()), ("DB_QUERY_TIMEOUT", "1")]);
    let db =
        Database::new(DbSettings::from_env(&env, "DATABASE_URL", "pgkit-test").unwrap()).unwrap();
    db.execute(CREATE, &[]).await.unwrap();
    (test_db, db)
}

#[tokio::test]
async fn values_round_trip_exactly() {
    let (_guard, db) = db().await;
    let cases = [
        Item {
            id: Uuid::new_v4(),
            title: "ünïcødé — 日本語 🐘".into(),
            tags: vec![
                "it's".into(),
                "\"quoted\"".into(),
                "back\\slash".into(),
                "".into(),
            ],
            data: json!({"nested": {"list": [1, 2.5, null, true, "x"], "empty": {}}, "quote": "'\""}),
            at: "2025-01-15T10:11:12.123456Z".parse().unwrap(),
        },
        Item {
            id: Uuid::new_v4(),
            title: "O'Reilly; DROP TABLE items; --".into(),
            tags: vec![],
            data: json!([]),
            at: Utc::now(),
        },
    ];
    for item in &cases {
        let inserted: Item = db
            .fetch_one(
                INSERT,
                &[&item.id, &item.title, &item.tags, &item.data, &item.at],
            )
            .await
            .unwrap();
        let read: Item = db.fetch_one(BY_ID, &[&item.id]).await.unwrap();
        // Postgres keeps microseconds.
        let micros = |t: DateTime<Utc>| t.timestamp_micros();
        assert_eq!(
            (read.id, &read.title, &read.tags, &read.data),
            (item.id, &item.title, &item.tags, &item.data)
        );
        assert_eq!(micros(read.at), micros(item.at));
        assert_eq!(inserted, read);
    }
    let count: i64 = db
        .fetch_val("SELECT count(*) FROM items", &[])
        .await
        .unwrap();
    assert_eq!(count, 2);
    let all: Vec<Item> = db
        .fetch_all(
            "SELECT id, title, tags, data, at FROM items ORDER BY title",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn errors_arrive_typed() {
    let (_guard, db) = db().await;
    let missing = db
        .fetch_one::<Item>(BY_ID, &[&Uuid::new_v4()])
        .await
        .unwrap_err();
    assert!(matches!(missing, DbError::NotFound), "{missing:?}");
    assert_eq!(
        db.fetch_optional::<Item>(BY_ID, &[&Uuid::new_v4()])
            .await
            .unwrap(),
        None
    );

    let (title, tags, data, at) = ("same", Vec::<String>::new(), json!({}), Utc::now());
    db.execute(INSERT, &[&Uuid::new_v4(), &title, &tags, &data, &at])
        .await
        .unwrap();
    let dup = db
        .execute(INSERT, &[&Uuid::new_v4(), &title, &tags, &data, &at])
        .await
        .unwrap_err();
    assert!(
        matches!(&dup, DbError::Conflict { constraint: Some(c) } if c == "items_title_key"),
        "{dup:?}"
    );

    let slow = db.execute("SELECT pg_sleep(3)", &[]).await.unwrap_err();
    assert!(matches!(slow, DbError::Timeout), "{slow:?}");
    assert!(slow.retry_after().is_some());

    let bad = db.execute("SELEC 1", &[]).await.unwrap_err();
    assert!(
        matches!(&bad, DbError::Query(m) if m.contains("syntax error")),
        "{bad:?}"
    );
    assert_eq!(
        db.breaker().failures(),
        0,
        "query errors do not count against the breaker"
    );

    let counts: std::collections::HashMap<_, _> = db.errors_by_kind().into_iter().collect();
    assert_eq!(counts["not_found"], 1);
    assert_eq!(counts["conflict"], 1);
    assert_eq!(counts["timeout"], 1);
}

#[tokio::test]
async fn a_transaction_commits_or_leaves_nothing() {
    let (_guard, db) = db().await;
    let (tags, data, at) = (Vec::<String>::new(), json!({}), Utc::now());
    {
        let mut conn = db.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        tx.execute(INSERT, &[&Uuid::new_v4(), &"kept", &tags, &data, &at])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    {
        let mut conn = db.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        tx.execute(INSERT, &[&Uuid::new_v4(), &"dropped", &tags, &data, &at])
            .await
            .unwrap();
        // Dropped without commit: the connection leaves the pool, the server rolls back.
    }
    let titles: Vec<Row> = db.fetch_all("SELECT title FROM items", &[]).await.unwrap();
    let titles: Vec<String> = titles.iter().map(|r| r.get(0)).collect();
    assert_eq!(titles, vec!["kept".to_string()]);
}

/// `fetch_within` keeps the first rows up to the one that reaches the byte
/// limit, says it cut the rest, and leaves the connection usable: the rows
/// it dropped were read to the end, not cancelled.
#[tokio::test]
async fn a_byte_capped_read_keeps_a_prefix_and_the_connection() {
    let (_guard, db) = db().await;
    // Ten rows of ~100 KB each.
    let sql = "SELECT i, repeat('x', 100000) AS body FROM generate_series(1, $1) i ORDER BY i";
    let mut conn = db.acquire().await.unwrap();
    let pid: i32 = conn
        .fetch_val("SELECT pg_backend_pid()", &[])
        .await
        .unwrap();

    let page: Within<Row> = conn.fetch_within(sql, &[&10i32], 250_000).await.unwrap();
    let ids: Vec<i32> = page.rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        ids,
        vec![1, 2, 3],
        "the row that crosses 250 KB is the last"
    );
    assert!(page.cut);
    let before_last: usize = page.rows[..2].iter().map(|r| r.raw_size_bytes()).sum();
    assert!(before_last < 250_000);

    // The same connection answers the next call: nothing was left unread.
    let again: i32 = conn
        .fetch_val("SELECT pg_backend_pid()", &[])
        .await
        .unwrap();
    assert_eq!(again, pid);

    let all: Within<Row> = conn.fetch_within(sql, &[&2i32], 250_000).await.unwrap();
    assert_eq!(
        (all.rows.len(), all.cut),
        (2, false),
        "under the limit: all, no cut"
    );
    let none: Within<Row> = conn.fetch_within(sql, &[&0i32], 250_000).await.unwrap();
    assert_eq!((none.rows.len(), none.cut), (0, false));
}
