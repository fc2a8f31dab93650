//! Property tests for what dave reads from clients before anything else:
//! pagination cursors, `X-Session-Token`, `Authorization: Bearer` JWTs,
//! `X-API-Key`, and the header rules that pick one of them.
//!
//! These run on every request with attacker-chosen bytes, so for every input,
//! not just the unit tests' examples: nothing panics; what the service issues
//! reads back to the same value; any change to an issued token or cursor is
//! refused; a refusal never repeats the token's signature. Case counts stay
//! modest so the file runs in seconds.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use dave::api::page::{Cursor, CursorCodec, Listing};
use dave::auth::api_key::{key_hash, MAX_KEY_LEN};
use dave::auth::jwt::{self, JwtVerifier};
use dave::auth::session::{SessionSigner, SESSION_TTL_SECONDS};
use dave::auth::{presented, AuthError, Credential};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;
use uuid::Uuid;

/// What a token or cursor is written in (base64url, plus the `.` separator).
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// Any instant chrono can hold to the microsecond.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    any::<i64>().prop_filter_map("outside chrono's range", DateTime::from_timestamp_micros)
}

fn listing() -> impl Strategy<Value = Listing> {
    prop_oneof![
        uuid().prop_map(|user_id| Listing::Conversations { user_id }),
        uuid().prop_map(|conversation_id| Listing::Messages { conversation_id }),
    ]
}

/// One edit to a string: a character replaced by another, removed, or added.
#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Insert(prop::sample::Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    let char = prop::sample::select(TOKEN_CHARS);
    prop_oneof![
        (any::<prop::sample::Index>(), char.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<prop::sample::Index>().prop_map(Edit::Remove),
        (any::<prop::sample::Index>(), char).prop_map(|(i, c)| Edit::Insert(i, c)),
    ]
}

/// `text` with `edit` applied; `None` when the edit changes nothing (a
/// character replaced by itself).
fn apply(text: &str, edit: &Edit) -> Option<String> {
    let mut bytes = text.as_bytes().to_vec();
    match edit {
        Edit::Replace(i, c) => {
            let i = i.index(bytes.len());
            if bytes[i] == *c {
                return None;
            }
            bytes[i] = *c;
        }
        Edit::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Edit::Insert(i, c) => bytes.insert(i.index(bytes.len() + 1), *c),
    }
    Some(String::from_utf8(bytes).expect("ASCII in, ASCII out"))
}

/// Anything a client could send: any text, or text in the tokens' alphabet
/// (which reaches past the first shape checks).
fn client_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.-]{0,200}",
        "[A-Za-z0-9_-]{55}",
        "[0-9a-f-]{36}\\.[0-9]{1,20}\\.[A-Za-z0-9_-]{43}",
    ]
}

// --------------------------------------------------------------- cursor

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cursor_round_trips(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        listing in listing(),
        at in instant(),
        id in uuid(),
    ) {
        let codec = CursorCodec::new(&secret);
        let cursor = Cursor { at, id };
        let text = codec.encode(listing, cursor);
        prop_assert_eq!(codec.decode(listing, &text), Ok(cursor));
    }

    #[test]
    fn edited_cursor_is_refused(
        listing in listing(),
        at in instant(),
        id in uuid(),
        edit in edit(),
    ) {
        let codec = CursorCodec::new(b"props-cursor-secret");
        let text = codec.encode(listing, Cursor { at, id });
        if let Some(edited) = apply(&text, &edit) {
            prop_assert!(codec.decode(listing, &edited).is_err(), "{:?} accepted", edit);
        }
    }

    #[test]
    fn cursor_with_a_flipped_bit_is_refused(
        listing in listing(),
        at in instant(),
        id in uuid(),
        byte in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let codec = CursorCodec::new(b"props-cursor-secret");
        let text = codec.encode(listing, Cursor { at, id });
        let mut raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        let i = byte.index(raw.len());
        raw[i] ^= 1 << bit;
        prop_assert!(codec.decode(listing, &URL_SAFE_NO_PAD.encode(&raw)).is_err());
    }

    #[test]
    fn cursor_from_another_list_is_refused(
        listing in listing(),
        other in listing(),
        at in instant(),
        id in uuid(),
    ) {
        prop_assume!(listing != other);
        let codec = CursorCodec::new(b"props-cursor-secret");
        let text = codec.encode(listing, Cursor { at, id });
        prop_assert!(codec.decode(other, &text).is_err());
    }

    #[test]
    fn any_client_text_is_refused_as_a_cursor(text in client_text(), listing in listing()) {
        let codec = CursorCodec::new(b"props-cursor-secret");
        prop_assert!(codec.decode(listing, &text).is_err());
    }
}

// ------------------------------------------------------- session tokens

/// A clock between 1970 and 9999, where sessions are issued.
fn clock() -> impl Strategy<Value = i64> {
    0i64..=253_402_300_799 - SESSION_TTL_SECONDS
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn session_token_round_trips(
        secret in prop::collection::vec(any::<u8>(), 1..64),
        user in uuid(),
        now in clock(),
        later in 0..=SESSION_TTL_SECONDS,
    ) {
        let signer = SessionSigner::new(&secret).unwrap();
        let issued = signer.issue_at(user, now);
        let session = signer.verify_at(&issued.token, now + later).unwrap();
        prop_assert_eq!(session.user_id, user);
        prop_assert_eq!(session.expires_at, issued.expires_at);
        // Also through the header rules, as a request brings it.
        let mut headers = HeaderMap::new();
        headers.insert("x-session-token", HeaderValue::from_str(&issued.token).unwrap());
        prop_assert_eq!(presented(&headers), Ok(Credential::Session(issued.token.as_str())));
    }

    #[test]
    fn edited_session_token_is_refused_without_echoing_it(
        user in uuid(),
        now in clock(),
        edit in edit(),
    ) {
        let signer = SessionSigner::new(b"props-session-secret").unwrap();
        let token = signer.issue_at(user, now).token;
        if let Some(edited) = apply(&token, &edit) {
            let error = signer.verify_at(&edited, now).expect_err("edited token accepted");
            let signature = token.rsplit('.').next().unwrap();
            let shown = format!("{error} {error:?}");
            prop_assert!(!shown.contains(signature), "{}", shown);
        }
    }

    #[test]
    fn session_token_from_another_secret_is_refused(
        a in prop::collection::vec(any::<u8>(), 1..32),
        b in prop::collection::vec(any::<u8>(), 1..32),
        user in uuid(),
        now in clock(),
    ) {
        prop_assume!(a != b);
        let token = SessionSigner::new(&a).unwrap().issue_at(user, now).token;
        prop_assert!(SessionSigner::new(&b).unwrap().verify_at(&token, now).is_err());
    }

    #[test]
    fn any_client_text_is_refused_as_a_session_token(text in client_text(), now in any::<i64>()) {
        let signer = SessionSigner::new(b"props-session-secret").unwrap();
        prop_assert!(signer.verify_at(&text, now).is_err());
    }
}

// ---------------------------------------------------------- bearer JWTs

const JWT_SECRET: &[u8] = b"props-jwt-secret";

/// `header.claims.signature` for hand-made JSON, signed with HS256 over the
/// parts as written: what a careless or hostile identity provider could send.
fn signed_jwt(header: &str, claims: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let tag = Hmac::<Sha256>::new_from_slice(JWT_SECRET)
        .unwrap()
        .chain_update(input.as_bytes())
        .finalize()
        .into_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// A JSON value of any shape, for claims of the wrong type.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
        uuid().prop_map(|u| serde_json::Value::from(u.to_string())),
        Just(serde_json::Value::from("admin")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bearer_token_round_trips(user in uuid(), admin in any::<bool>(), ttl in 60u64..10_000_000) {
        let token = jwt::issue(JWT_SECRET, user, admin, Duration::from_secs(ttl)).unwrap();
        let identity = JwtVerifier::new(JWT_SECRET).unwrap().verify(&token).unwrap();
        prop_assert_eq!((identity.user_id, identity.is_admin), (user, admin));
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {token}");
        headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
        prop_assert_eq!(presented(&headers), Ok(Credential::Bearer(token.as_str())));
    }

    #[test]
    fn edited_bearer_token_is_refused_without_echoing_it(
        user in uuid(),
        admin in any::<bool>(),
        edit in edit(),
    ) {
        let token = jwt::issue(JWT_SECRET, user, admin, Duration::from_secs(600)).unwrap();
        if let Some(edited) = apply(&token, &edit) {
            let error = JwtVerifier::new(JWT_SECRET)
                .unwrap()
                .verify(&edited)
                .expect_err("edited token accepted");
            let signature = token.rsplit('.').next().unwrap();
            let shown = format!("{error} {error:?}");
            prop_assert!(!shown.contains(signature), "{}", shown);
        }
    }

    #[test]
    fn any_client_text_is_refused_as_a_bearer_token(text in client_text()) {
        let verifier = JwtVerifier::new(JWT_SECRET).unwrap();
        prop_assert!(verifier.verify(&text).is_err());
    }

    /// Correctly signed tokens whose header and claims are anything at all:
    /// no panic, and only a sound token (HS256, a UUID `sub`, an integer
    /// `exp` in the future, no `aud`) gets through, as the identity it names.
    #[test]
    fn signed_tokens_with_any_header_and_claims_follow_the_rules(
        alg in prop_oneof![Just(serde_json::json!("HS256")), json_value()],
        sub in prop::option::of(prop_oneof![uuid().prop_map(|u| serde_json::json!(u)), json_value()]),
        exp in prop::option::of(prop_oneof![
            (1_000i64..1_000_000).prop_map(|d| serde_json::json!(Utc::now().timestamp() + d)),
            json_value(),
        ]),
        aud in prop::option::of(json_value()),
        role in prop::option::of(json_value()),
        raw_claims in prop::option::of(".{0,40}"),
    ) {
        let header = serde_json::json!({ "alg": alg, "typ": "JWT" }).to_string();
        let mut claims = serde_json::Map::new();
        for (name, value) in [("sub", &sub), ("exp", &exp), ("aud", &aud), ("role", &role)] {
            if let Some(v) = value {
                claims.insert(name.to_string(), v.clone());
            }
        }
        let claims_text = raw_claims.unwrap_or_else(|| serde_json::Value::Object(claims.clone()).to_string());
        let token = signed_jwt(&header, &claims_text);
        let verdict = JwtVerifier::new(JWT_SECRET).unwrap().verify(&token);
        if let Ok(identity) = verdict {
            prop_assert_eq!(alg.as_str(), Some("HS256"));
            let claims: serde_json::Value = serde_json::from_str(&claims_text).unwrap();
            let user = identity.user_id.to_string();
            prop_assert_eq!(claims["sub"].as_str(), Some(user.as_str()));
            prop_assert!(claims["exp"].as_i64().is_some_and(|e| e >= Utc::now().timestamp() - 1));
            prop_assert!(claims.get("aud").is_none());
            prop_assert_eq!(identity.is_admin, claims["role"] == "admin");
        }
    }
}

// ------------------------------------------------ API keys and headers

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn api_key_hash_takes_any_text(text in prop_oneof![any::<String>(), ".{250,260}"]) {
        match key_hash(&text) {
            Ok(hash) => {
                prop_assert!(!text.is_empty() && text.len() <= MAX_KEY_LEN);
                prop_assert_eq!(hash.len(), 64);
                prop_assert!(hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
                prop_assert_eq!(key_hash(&text), Ok(hash));
            }
            Err(_) => prop_assert!(text.is_empty() || text.len() > MAX_KEY_LEN),
        }
    }

    /// Whatever the headers hold: no panic, and a credential that is
    /// picked is trimmed and non-empty where the rules say so.
    #[test]
    fn header_rules_take_any_header_bytes(
        api_key in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        authorization in prop::option::of(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            "(Bearer|bearer|BEARER|Basic|Token)[ \t]{0,2}[ -~]{0,30}".prop_map(String::into_bytes),
        ]),
        session in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [("x-api-key", &api_key), ("authorization", &authorization), ("x-session-token", &session)] {
            if let Some(Ok(v)) = value.as_ref().map(|v| HeaderValue::from_bytes(v)) {
                headers.insert(name, v);
            }
        }
        match presented(&headers) {
            Ok(Credential::ApiKey(k)) => prop_assert_eq!(k, k.trim()),
            Ok(Credential::Bearer(t)) => {
                prop_assert!(headers.get("x-api-key").is_none());
                prop_assert!(!t.is_empty() && t == t.trim());
                let value = headers["authorization"].to_str().unwrap().trim();
                prop_assert!(value[..7].eq_ignore_ascii_case("bearer "));
            }
            Ok(Credential::Session(t)) => prop_assert_eq!(t, t.trim()),
            Ok(Credential::None) => prop_assert!(headers.is_empty()),
            Err(AuthError::NotText(_) | AuthError::MalformedAuthorization) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
