//! Query plans of dave's hot statements on a populated database (issue 13):
//! `cargo test -p dave --test plans`.
//!
//! A throwaway PostgreSQL gets dave's migrations and, with `generate_series`,
//! enough rows that the planner's choice matters: one user with 50,000
//! conversations among 59,000, a conversation with 100,000 messages among
//! 120,000, and 20,000 knowledge articles (every one containing the common
//! term, ten the rare one); then `VACUUM ANALYZE`. Each statement is the constant the
//! service runs (`dave::repo::*`), prepared with its parameter types and
//! explained twice with `EXPLAIN (FORMAT JSON)`: as a custom plan for real
//! values, and as the generic plan a prepared statement switches to after its
//! fifth execution (`plan_cache_mode = force_generic_plan`).
//!
//! What a plan must show: `ai_messages`, `ai_conversations` and
//! `knowledge_base` (and `knowledge_base_terms`) reached through the
//! statement's index (named), never a `Seq Scan` of them, and no `Sort` over
//! more than a page of rows. A one-word knowledge search reads the terms
//! index in rank order, whether the word is rare or in every article. The
//! one allowed exception is a search of several words that nearly every
//! article contains: ranking every match by `ts_rank` is what the order
//! means there, so it may read the whole table, but the rows it sorts must
//! be narrow (`id` and rank, not the articles). [`losing_an_index_fails_the_check`] drops each
//! index in a rolled-back transaction and shows the same check failing.

use std::collections::HashMap;

use dave::repo::{conversations, knowledge, messages, PAGE_BYTES};
use dave::testing::admin_client;
use pgkit::dsn::Dsn;
use pgkit::testing::TestDatabase;
use serde_json::Value;
use tokio_postgres::Client;

/// The tables whose sequential scan is a lost index.
const BIG_TABLES: [&str; 4] = [
    "ai_messages",
    "ai_conversations",
    "knowledge_base",
    "knowledge_base_terms",
];

/// A sort over more rows than this (the planner's estimate of its input) is
/// a sort of the table, not of a page (pages are at most 101 rows).
const PAGE_SORT_ROWS: f64 = 1000.0;

/// The knowledge search's byte budget parameter (`dave::repo::PAGE_BYTES`).
const BYTES: i64 = PAGE_BYTES as i64;

/// Rows of the populated database; everything in SQL, in seconds.
const POPULATE: &str = "
SET synchronous_commit = off;
-- user 1: 50,000 conversations; users 2..10: 1,000 each.
INSERT INTO ai_conversations (id, user_id, title, context, metadata, created_at, updated_at)
SELECT md5('conv-' || u || '-' || c)::uuid, md5('user-' || u)::uuid, 'Conversation ' || c,
       jsonb_build_object('topic', 'topic-' || (c % 7)), jsonb_build_object('n', c),
       now() - interval '90 days' + (u * 100000 + c) * interval '1 second',
       now() - interval '90 days' + (u * 100000 + c) * interval '1 second' + interval '1 hour'
FROM generate_series(1, 10) u, generate_series(1, CASE WHEN u = 1 THEN 50000 ELSE 1000 END) c;
-- the deep conversation: 100,000 messages in user 1's conversation 1.
INSERT INTO ai_messages (conversation_id, role, content, resources, metadata, created_at)
SELECT md5('conv-1-1')::uuid, CASE WHEN m % 2 = 1 THEN 'user' ELSE 'assistant' END,
       'Message ' || m || ' about pools and probes.', ARRAY['doc:' || (m % 13)],
       jsonb_build_object('tokens', m % 50), now() - interval '80 days' + m * interval '10 ms'
FROM generate_series(1, 100000) m;
-- 10 messages in each of users 2..3's 2,000 conversations.
INSERT INTO ai_messages (conversation_id, role, content, resources, metadata, created_at)
SELECT md5('conv-' || u || '-' || c)::uuid, CASE WHEN m % 2 = 1 THEN 'user' ELSE 'assistant' END,
       'Message ' || m || ' of conversation ' || c, ARRAY['doc:' || (m % 13)],
       jsonb_build_object('tokens', m), now() - interval '60 days' + (c * 10 + m) * interval '1 second'
FROM generate_series(2, 3) u, generate_series(1, 1000) c, generate_series(1, 10) m;
-- 20,000 articles, all with 'postgresql', one in 2,000 with 'quasar'.
INSERT INTO knowledge_base (title, content, tags)
SELECT 'Article ' || k, repeat('Guidance on pool sizing for Cloud Run. ', 1 + k % 4)
         || repeat('PostgreSQL ', 1 + k % 5)
         || CASE WHEN k % 2000 = 0 THEN 'The quasar case. ' ELSE '' END,
       ARRAY['tag' || (k % 10)]
FROM generate_series(1, 20000) k;
";

/// A statement as the service sends it, with its parameters' types and the
/// values to plan it for.
struct Case {
    name: &'static str,
    sql: &'static str,
    types: &'static str,
    args: String,
    /// The index the plan must use.
    index: &'static str,
    /// Reading the whole of `knowledge_base` is allowed (the common term).
    ranks_every_row: bool,
}

fn cases() -> Vec<Case> {
    let user1 = "md5('user-1')::uuid";
    let user2 = "md5('user-2')::uuid";
    let deep = "md5('conv-1-1')::uuid";
    let small = "md5('conv-2-7')::uuid";
    // Keyset positions: 20,000 conversations into user 1's list, 50,000
    // messages into the deep conversation.
    let conv_at = "now() - interval '90 days' + 130000 * interval '1 second'";
    let conv_id = "md5('conv-1-30000')::uuid";
    let msg_at = "now() - interval '80 days' + 50000 * interval '10 ms'";
    let msg_id = "'00000000-0000-0000-0000-000000000000'::uuid";
    let bytes = BYTES;
    let case = |name, sql, types, args: String, index| Case {
        name,
        sql,
        types,
        args,
        index,
        ranks_every_row: false,
    };
    vec![
        case(
            "conversations::GET",
            conversations::GET,
            "uuid, uuid",
            format!("{deep}, {user1}"),
            "ai_conversations_pkey",
        ),
        case(
            "conversations::LIST_FIRST (50,000 conversations)",
            conversations::LIST_FIRST,
            "uuid, bigint",
            format!("{user1}, 21"),
            "idx_ai_conversations_user_updated",
        ),
        case(
            "conversations::LIST_FIRST (1,000 conversations)",
            conversations::LIST_FIRST,
            "uuid, bigint",
            format!("{user2}, 21"),
            "idx_ai_conversations_user_updated",
        ),
        case(
            "conversations::LIST_AFTER (20,000 deep)",
            conversations::LIST_AFTER,
            "uuid, timestamptz, uuid, bigint",
            format!("{user1}, {conv_at}, {conv_id}, 21"),
            "idx_ai_conversations_user_updated",
        ),
        case(
            "conversations::UPDATE",
            conversations::UPDATE,
            "uuid, uuid, text, jsonb, jsonb",
            format!("{deep}, {user1}, 'renamed', NULL, NULL"),
            "ai_conversations_pkey",
        ),
        case(
            "conversations::DELETE",
            conversations::DELETE,
            "uuid, uuid",
            format!("{small}, {user2}"),
            "ai_conversations_pkey",
        ),
        case(
            "messages::INSERT",
            messages::INSERT,
            "uuid, uuid, text, text, text[], text[], jsonb",
            format!("{deep}, {user1}, 'user', 'hello', '{{}}', '{{}}', '{{}}'"),
            "ai_conversations_pkey",
        ),
        case(
            "messages::LIST_FIRST (100,000 messages)",
            messages::LIST_FIRST,
            "uuid, uuid, bigint",
            format!("{deep}, {user1}, 21"),
            "idx_ai_messages_conversation_created",
        ),
        case(
            "messages::LIST_FIRST (10 messages)",
            messages::LIST_FIRST,
            "uuid, uuid, bigint",
            format!("{small}, {user2}, 21"),
            "idx_ai_messages_conversation_created",
        ),
        case(
            "messages::LIST_AFTER (50,000 deep)",
            messages::LIST_AFTER,
            "uuid, uuid, bigint, timestamptz, uuid",
            format!("{deep}, {user1}, 21, {msg_at}, {msg_id}"),
            "idx_ai_messages_conversation_created",
        ),
        case(
            "knowledge::SEARCH (one word in every article)",
            knowledge::SEARCH,
            "text, bigint, bigint",
            format!("'postgresql', 10, {bytes}"),
            "idx_knowledge_base_terms_rank",
        ),
        case(
            "knowledge::SEARCH (one rare word)",
            knowledge::SEARCH,
            "text, bigint, bigint",
            format!("'quasar', 10, {bytes}"),
            "idx_knowledge_base_terms_rank",
        ),
        case(
            "knowledge::SEARCH (two words, rare)",
            knowledge::SEARCH,
            "text, bigint, bigint",
            format!("'quasar case', 10, {bytes}"),
            "idx_knowledge_base_search_vector",
        ),
        Case {
            ranks_every_row: true,
            ..case(
                "knowledge::SEARCH (two words in every article)",
                knowledge::SEARCH,
                "text, bigint, bigint",
                format!("'postgresql guidance', 10, {bytes}"),
                "knowledge_base_pkey",
            )
        },
    ]
}

/// One plan node, flattened, with what the checks need.
#[derive(Debug)]
struct Node {
    kind: String,
    relation: Option<String>,
    index: Option<String>,
    rows: f64,
    width: f64,
    /// Estimated rows of its first child (the input of a Sort).
    input_rows: f64,
    /// Whether a Limit is above it (a Sort under one is a top-N sort).
    under_limit: bool,
}

fn flatten(plan: &Value, under_limit: bool, out: &mut Vec<Node>) {
    let kind = plan["Node Type"].as_str().unwrap_or("?").to_owned();
    let children = plan["Plans"].as_array().cloned().unwrap_or_default();
    let input_rows = children
        .first()
        .and_then(|c| c["Plan Rows"].as_f64())
        .unwrap_or(0.0);
    out.push(Node {
        relation: plan["Relation Name"].as_str().map(str::to_owned),
        index: plan["Index Name"].as_str().map(str::to_owned),
        rows: plan["Plan Rows"].as_f64().unwrap_or(0.0),
        width: plan["Plan Width"].as_f64().unwrap_or(0.0),
        input_rows,
        under_limit,
        kind: kind.clone(),
    });
    let limit = under_limit || kind == "Limit";
    for child in &children {
        flatten(child, limit, out);
    }
}

/// What is wrong with `plan` for `case`; empty when nothing is.
fn violations(case: &Case, plan: &Value) -> Vec<String> {
    let mut nodes = Vec::new();
    flatten(&plan[0]["Plan"], false, &mut nodes);
    let mut wrong = Vec::new();
    for n in &nodes {
        let rel = n.relation.as_deref().unwrap_or("");
        if n.kind == "Seq Scan" && BIG_TABLES.contains(&rel) {
            let allowed = case.ranks_every_row && rel == "knowledge_base" && n.width <= 64.0;
            if !allowed {
                wrong.push(format!("Seq Scan on {rel} (~{} rows)", n.rows));
            }
        }
        if n.kind == "Sort" && n.input_rows > PAGE_SORT_ROWS {
            let narrow_top_n = case.ranks_every_row && n.under_limit && n.width <= 64.0;
            if !narrow_top_n {
                wrong.push(format!(
                    "Sort of ~{} rows of {} bytes{}",
                    n.input_rows,
                    n.width,
                    if n.under_limit { " (top-N)" } else { "" }
                ));
            }
        }
    }
    if !nodes.iter().any(|n| n.index.as_deref() == Some(case.index)) {
        let used: Vec<String> = nodes
            .iter()
            .filter_map(|n| {
                n.index
                    .clone()
                    .or(n.relation.clone().map(|r| format!("{} {r}", n.kind)))
            })
            .collect();
        wrong.push(format!("{} not used (plan reads: {used:?})", case.index));
    }
    wrong
}

/// The custom and the generic plan of `case` on `client`, by name.
async fn plans(client: &Client, case: &Case) -> Vec<(&'static str, Value)> {
    client.batch_execute("DEALLOCATE ALL").await.unwrap();
    client
        .batch_execute(&format!("PREPARE hot({}) AS {}", case.types, case.sql))
        .await
        .unwrap_or_else(|e| panic!("{}: PREPARE failed: {e:?}", case.name));
    let mut out = Vec::new();
    for (mode, setting) in [
        ("custom", "force_custom_plan"),
        ("generic", "force_generic_plan"),
    ] {
        client
            .batch_execute(&format!("SET plan_cache_mode = {setting}"))
            .await
            .unwrap();
        // EXPLAIN's column is json: read it as text, over the simple protocol.
        let messages = client
            .simple_query(&format!("EXPLAIN (FORMAT JSON) EXECUTE hot({})", case.args))
            .await
            .unwrap_or_else(|e| panic!("{}: EXPLAIN failed: {e:?}", case.name));
        let text = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .expect("EXPLAIN returns its plan");
        out.push((mode, serde_json::from_str(&text).expect("EXPLAIN's JSON")));
    }
    client.batch_execute("RESET plan_cache_mode").await.unwrap();
    out
}

/// Every violation of every case on `client`, as `name (mode): what`.
async fn check_all(client: &Client, only: Option<&str>) -> Vec<String> {
    let mut report = Vec::new();
    for case in cases() {
        if only.is_some_and(|index| case.index != index) {
            continue;
        }
        for (mode, plan) in plans(client, &case).await {
            for v in violations(&case, &plan) {
                report.push(format!("{} ({mode}): {v}", case.name));
            }
        }
    }
    report
}

async fn populated() -> (TestDatabase, Client) {
    let db = pgkit::testing::cluster()
        .await
        .database_from("dave_plans", populate)
        .await;
    let client = admin_client(db.url()).await;
    (db, client)
}

/// dave's migrations (as the binary carries them), then [`POPULATE`].
async fn populate(url: String) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dsn = Dsn::parse(&url)?;
    let settings = pgkit::settings::DbSettings::for_dsn(dsn.clone(), "dave-plan-tests");
    let params = pgkit::connect::SessionParams::from_settings(&settings);
    pgkit::migrate::Migrator::new(
        pgkit::migrate::MigrationSource::Embedded(dave::embedded::MIGRATIONS),
        pgkit::migrate::MigrateOptions::default(),
    )
    .up(&dsn, &params, |_| {})
    .await?;
    let (client, conn) = dsn.pg_config().connect(tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    client.batch_execute(POPULATE).await?;
    // What autovacuum (off in the test cluster) does after a bulk load: the
    // statistics, and the GIN indexes' pending lists merged (while pending,
    // a GIN index looks dearer than reading the table). Alone: VACUUM
    // refuses a multi-statement string.
    client.batch_execute("VACUUM ANALYZE").await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

#[tokio::test]
async fn hot_queries_use_their_indexes_custom_and_generic() {
    let (_db, client) = populated().await;
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM ai_conversations WHERE user_id = md5('user-1')::uuid), \
                    (SELECT count(*) FROM ai_messages WHERE conversation_id = md5('conv-1-1')::uuid), \
                    (SELECT count(*) FROM knowledge_base)",
            &[],
        )
        .await
        .unwrap();
    let (convs, msgs, docs): (i64, i64, i64) = (counts.get(0), counts.get(1), counts.get(2));
    assert_eq!((convs, msgs, docs), (50_000, 100_000, 20_000));

    let report = check_all(&client, None).await;
    assert!(
        report.is_empty(),
        "plans that lose their index:\n{}",
        report.join("\n")
    );
}

#[tokio::test]
async fn losing_an_index_fails_the_check() {
    let (_db, client) = populated().await;
    let mut caught: HashMap<&str, Vec<String>> = HashMap::new();
    for index in [
        "idx_ai_messages_conversation_created",
        "idx_ai_conversations_user_updated",
        "idx_knowledge_base_search_vector",
        "idx_knowledge_base_terms_rank",
    ] {
        client.batch_execute("BEGIN").await.unwrap();
        client
            .batch_execute(&format!("DROP INDEX {index}"))
            .await
            .unwrap();
        caught.insert(index, check_all(&client, Some(index)).await);
        client.batch_execute("ROLLBACK").await.unwrap();
    }
    for (index, report) in &caught {
        eprintln!("without {index}:\n  {}", report.join("\n  "));
        assert!(
            report
                .iter()
                .any(|v| v.contains("Seq Scan") || v.contains("Sort of")),
            "without {index} the check should see a sequential scan or a sort of the table, \
             it saw: {report:?}"
        );
    }
    // And the rollback put them back: the check passes again.
    assert!(check_all(&client, None).await.is_empty());
}

/// The one-word path (terms index) must give what ranking every match gives:
/// the same ids in the same order with the same `ts_rank`, on the populated
/// database and after articles change (the trigger keeps the terms).
#[tokio::test]
async fn one_word_search_orders_as_ranking_every_match_does() {
    let (_db, client) = populated().await;
    let reference =
        "SELECT id, ts_rank(to_tsvector('english', title || ' ' || content), q) AS rank \
         FROM knowledge_base, plainto_tsquery('english', $1) q \
         WHERE to_tsvector('english', title || ' ' || content) @@ q \
         ORDER BY rank DESC, id LIMIT $2";
    let search = client.prepare(knowledge::SEARCH).await.unwrap();
    let reference = client.prepare(reference).await.unwrap();
    let compare = |word: &'static str, limit: i64| {
        let (client, search, reference) = (&client, &search, &reference);
        async move {
            let got: Vec<(uuid::Uuid, f32)> = client
                .query(search, &[&word, &limit, &BYTES])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("id"), r.get("rank")))
                .collect();
            let want: Vec<(uuid::Uuid, f32)> = client
                .query(reference, &[&word, &limit])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("id"), r.get("rank")))
                .collect();
            assert_eq!(got, want, "search for {word:?}, limit {limit}");
            got.len()
        }
    };
    // Nine executions each: the generic plan is used from the sixth on.
    for _ in 0..9 {
        assert_eq!(compare("postgresql", 50).await, 50);
        assert_eq!(compare("quasar", 50).await, 10);
        assert_eq!(compare("guidance", 7).await, 7);
        assert_eq!(compare("nothing-like-it", 5).await, 0);
        assert_eq!(compare("postgresql quasar", 5).await, 5);
    }
    // Articles change: more PostgreSQL in some, one gone, one new.
    client
        .batch_execute(
            "UPDATE knowledge_base SET content = content || repeat(' PostgreSQL', 40) \
             WHERE title IN ('Article 17', 'Article 4242'); \
             DELETE FROM knowledge_base WHERE title = 'Article 5'; \
             INSERT INTO knowledge_base (title, content) \
             VALUES ('Quasar notes', repeat('quasar PostgreSQL ', 30));",
        )
        .await
        .unwrap();
    assert_eq!(compare("postgresql", 50).await, 50);
    assert_eq!(compare("quasar", 50).await, 11);
    let top: Vec<String> = client
        .query(&search, &[&"postgresql", &3i64, &BYTES])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("title"))
        .collect();
    assert_eq!(top.len(), 3);
    assert!(top.contains(&"Quasar notes".to_owned()), "{top:?}");
}
