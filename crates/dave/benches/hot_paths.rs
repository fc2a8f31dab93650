//! Micro-benchmarks of the pure work dave does on every request: checking a
//! credential, coding a page cursor, parsing and validating a body, writing a
//! response. No database and no HTTP, so a change in these numbers is a change
//! in this code (or its crates), not in the network or Postgres.
//!
//! Run with `cargo bench -p dave --bench hot_paths`; results are recorded in
//! docs/benchmarks-micro.md. Each benchmark measures for two seconds so the
//! whole run stays under a minute.

use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use uuid::Uuid;

use dave::api::conversations::{Conversation, ConversationPage, CreateConversation};
use dave::api::messages::{CreateMessage, Message, Role};
use dave::api::page::{Cursor, CursorCodec, Listing};
use dave::auth::api_key::key_hash;
use dave::auth::jwt::{self, JwtVerifier};
use dave::auth::session::SessionSigner;
use dave::extract::parse_json;
use dave::validate::JsonObject;

/// The binary's allocator, so allocation-heavy paths cost what they cost in
/// the service.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const JWT_SECRET: &[u8] = b"bench-jwt-secret-0123456789abcdef";
const SESSION_SECRET: &[u8] = b"bench-session-secret-0123456789ab";
const API_KEY: &str = "dave_Zx8kQ2mN4pR6tV8wY0aC2eG4iK6mO8qS0uW2yA4c";

fn user_id() -> Uuid {
    Uuid::from_u128(0x6f1c_2f0e_8a4b_4c1d_9e2f_3a4b_5c6d_7e8f)
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 14, 0, 0).unwrap() + chrono::Duration::microseconds(123_456)
}

fn object(value: serde_json::Value) -> JsonObject {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("expected a JSON object, got {other}"),
    }
}

fn conversation(n: u128) -> Conversation {
    Conversation {
        id: Uuid::from_u128(n),
        user_id: user_id(),
        title: format!("Sizing the connection pool, take {n}"),
        context: (&object(json!({"product": "dave", "locale": "en-GB", "channel": "web"}))).into(),
        metadata: (&object(json!({"source": "bench", "tags": ["pool", "postgres"]}))).into(),
        created_at: at(),
        updated_at: at(),
    }
}

fn message() -> Message {
    Message {
        id: Uuid::from_u128(7),
        conversation_id: Uuid::from_u128(1),
        role: Role::Assistant,
        content: "A pool of ten connections per instance is plenty here: each request \
                  holds a connection for a few milliseconds, so ten serve hundreds of \
                  requests a second. Raise it only if the wait-time metric says so."
            .repeat(2),
        resources: vec![
            "https://www.postgresql.org/docs/15/runtime-config-connection.html".into(),
            "docs/operations.md#pool".into(),
        ],
        follow_up_suggestions: vec![
            "How do I read the pool wait-time metric?".into(),
            "What happens when the pool is exhausted?".into(),
            "Should each Cloud Run instance have its own pool?".into(),
        ],
        metadata: (&object(json!({"model": "bench-1", "tokens": 120, "latency_ms": 840}))).into(),
        created_at: at(),
    }
}

fn auth(c: &mut Criterion) {
    let verifier = JwtVerifier::new(JWT_SECRET).expect("non-empty secret");
    let token = jwt::issue(JWT_SECRET, user_id(), false, Duration::from_secs(3600))
        .expect("HS256 signing works");
    assert!(
        verifier.verify(&token).is_ok(),
        "the bench token must verify"
    );
    c.bench_function("jwt_verify", |b| {
        b.iter(|| verifier.verify(black_box(&token)))
    });

    let signer = SessionSigner::new(SESSION_SECRET).expect("non-empty secret");
    let session = signer.issue(user_id()).token;
    assert!(
        signer.verify(&session).is_ok(),
        "the bench token must verify"
    );
    c.bench_function("session_verify", |b| {
        b.iter(|| signer.verify(black_box(&session)))
    });
    c.bench_function("session_issue", |b| {
        b.iter(|| signer.issue(black_box(user_id())))
    });

    c.bench_function("api_key_hash", |b| b.iter(|| key_hash(black_box(API_KEY))));
}

fn cursor(c: &mut Criterion) {
    let codec = CursorCodec::new(SESSION_SECRET);
    let listing = Listing::Conversations { user_id: user_id() };
    let position = Cursor {
        at: at(),
        id: Uuid::from_u128(42),
    };
    let text = codec.encode(listing, position);
    assert_eq!(codec.decode(listing, &text), Ok(position));
    c.bench_function("cursor_encode", |b| {
        b.iter(|| codec.encode(black_box(listing), black_box(position)))
    });
    c.bench_function("cursor_decode", |b| {
        b.iter(|| codec.decode(black_box(listing), black_box(&text)))
    });
}

fn serialize(c: &mut Criterion) {
    let one = conversation(1);
    c.bench_function("serialize_conversation", |b| {
        b.iter(|| serde_json::to_vec(black_box(&one)).expect("serializes"))
    });

    let codec = CursorCodec::new(SESSION_SECRET);
    let page = ConversationPage {
        items: (1..=20).map(conversation).collect(),
        next_cursor: Some(codec.encode(
            Listing::Conversations { user_id: user_id() },
            Cursor {
                at: at(),
                id: Uuid::from_u128(20),
            },
        )),
    };
    c.bench_function("serialize_conversation_page_20", |b| {
        b.iter(|| serde_json::to_vec(black_box(&page)).expect("serializes"))
    });

    let message = message();
    c.bench_function("serialize_message", |b| {
        b.iter(|| serde_json::to_vec(black_box(&message)).expect("serializes"))
    });
}

fn parse_validate(c: &mut Criterion) {
    let conversation = json!({
        "title": "  Sizing the connection pool  ",
        "context": {"product": "dave", "locale": "en-GB", "channel": "web"},
        "metadata": {"source": "bench"}
    })
    .to_string();
    let parsed: CreateConversation = parse_json(conversation.as_bytes()).expect("valid body");
    assert!(parsed.validate().is_ok(), "the bench body must validate");
    c.bench_function("parse_validate_create_conversation", |b| {
        b.iter(|| {
            parse_json::<CreateConversation>(black_box(conversation.as_bytes()))
                .expect("valid body")
                .validate()
        })
    });

    let sample = message();
    let message = json!({
        "role": "user",
        "content": sample.content,
        "resources": sample.resources,
        "follow_up_suggestions": sample.follow_up_suggestions,
        "metadata": {"client": "web", "draft": false}
    })
    .to_string();
    let parsed: CreateMessage = parse_json(message.as_bytes()).expect("valid body");
    assert!(parsed.validate().is_ok(), "the bench body must validate");
    c.bench_function("parse_validate_create_message", |b| {
        b.iter(|| {
            parse_json::<CreateMessage>(black_box(message.as_bytes()))
                .expect("valid body")
                .validate()
        })
    });
}

/// Short runs: the machine is shared, and the point is a rough per-op cost,
/// not a fine comparison.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = auth, cursor, serialize, parse_validate
}
criterion_main!(hot_paths);
