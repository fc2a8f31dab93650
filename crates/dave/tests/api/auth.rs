//! Who is calling (DESIGN §3): API key, then bearer JWT, then session token,
//! else a new anonymous user who gets `X-Session-Token`. Credentials that
//! are present but wrong are a 401 and never fall back to anonymous.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::calls::{get, post, Reply, Who, ADMIN_KEY_USER, USER_KEY_USER};
use crate::helpers::{spawn_app, spawn_app_with, TestApp, ADMIN_KEY, REVOKED_KEY, USER_KEY};

const PATH: &str = "/api/v1/conversations";

/// A JWT signed with `secret` and `alg` as written, with any claims.
fn jwt(secret: &str, alg: &str, claims: serde_json::Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{head}.{body}");
    let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap()
        .chain_update(signed.as_bytes())
        .finalize()
        .into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn bearer(token: impl Into<String>) -> Who {
    Who::header("authorization", format!("Bearer {}", token.into()))
}

/// The caller's user id, as the service sees it: the owner of a new conversation.
async fn whoami(app: &TestApp, who: &Who) -> (String, Reply) {
    let reply = post(app, PATH, who, json!({})).await;
    let user = reply.assert_status(201)["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (user, reply)
}

#[track_caller]
fn assert_unauthorized(reply: &Reply) {
    reply.assert_error(401, "unauthorized");
    assert!(
        reply.session_token().is_none(),
        "a 401 never hands out a session"
    );
}

#[tokio::test]
async fn api_keys_identify_their_user_and_admin_flag() {
    let app = spawn_app().await;
    let (user, _) = whoami(&app, &Who::admin_key()).await;
    assert_eq!(user, ADMIN_KEY_USER);
    let (user, reply) = whoami(&app, &Who::user_key()).await;
    assert_eq!(user, USER_KEY_USER);
    assert!(reply.session_token().is_none());
    get(&app, "/api/v1/admin/prompts", &Who::admin_key())
        .await
        .assert_status(200);
    get(&app, "/api/v1/admin/prompts", &Who::user_key())
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn unknown_revoked_or_odd_api_keys_are_401() {
    let app = spawn_app().await;
    let long = "k".repeat(300);
    for key in [
        "no-such-key",
        REVOKED_KEY,
        "",
        "   ",
        long.as_str(),
        &ADMIN_KEY.to_uppercase(),
    ] {
        assert_unauthorized(&get(&app, PATH, &Who::header("x-api-key", key)).await);
    }
}

#[tokio::test]
async fn a_revoked_key_stops_working() {
    let app = spawn_app().await;
    let key = dave::auth::api_key::NewApiKey::generate();
    let owner = Uuid::new_v4();
    let stored = dave::repo::api_keys::insert(
        &app.db,
        &dave::repo::api_keys::NewKey {
            key_hash: key.hash(),
            user_id: owner,
            name: Some("test"),
            is_admin: false,
            tier: "pro",
        },
    )
    .await
    .unwrap();
    let who = Who::ApiKey(key.key().to_owned());
    assert_eq!(whoami(&app, &who).await.0, owner.to_string());
    let revoked_at = dave::repo::api_keys::revoke(&app.db, stored.id)
        .await
        .unwrap();
    assert!(revoked_at.is_some());
    assert_unauthorized(&get(&app, PATH, &who).await);
    assert_eq!(
        dave::repo::api_keys::revoke(&app.db, stored.id)
            .await
            .unwrap(),
        revoked_at,
        "revoking again keeps the first time"
    );
    assert_eq!(
        dave::repo::api_keys::revoke(&app.db, Uuid::new_v4())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn bearer_tokens_carry_the_user_and_admin_role() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    assert_eq!(
        whoami(&app, &Who::bearer(user, false)).await.0,
        user.to_string()
    );
    get(&app, "/api/v1/admin/prompts", &Who::bearer(user, true))
        .await
        .assert_status(200);
    get(&app, "/api/v1/admin/prompts", &Who::bearer(user, false))
        .await
        .assert_error(403, "forbidden");
    let secret = dave::config::TEST_JWT_SECRET;
    let other_role = jwt(
        secret,
        "HS256",
        json!({"sub": user, "exp": now() + 60, "role": "superuser"}),
    );
    get(&app, "/api/v1/admin/prompts", &bearer(other_role))
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn wrong_bearer_tokens_are_401() {
    let app = spawn_app().await;
    let secret = dave::config::TEST_JWT_SECRET;
    let user = Uuid::new_v4().to_string();
    let exp = now() + 3600;
    let cases = [
        ("not a jwt", "Bearer nope".to_owned()),
        (
            "wrong secret",
            format!(
                "Bearer {}",
                jwt("wrong-secret", "HS256", json!({"sub": user, "exp": exp}))
            ),
        ),
        (
            "expired",
            format!(
                "Bearer {}",
                jwt(secret, "HS256", json!({"sub": user, "exp": now() - 10}))
            ),
        ),
        (
            "no exp",
            format!("Bearer {}", jwt(secret, "HS256", json!({"sub": user}))),
        ),
        (
            "no sub",
            format!("Bearer {}", jwt(secret, "HS256", json!({"exp": exp}))),
        ),
        (
            "sub not a uuid",
            format!(
                "Bearer {}",
                jwt(secret, "HS256", json!({"sub": "alice", "exp": exp}))
            ),
        ),
        (
            "sub a number",
            format!(
                "Bearer {}",
                jwt(secret, "HS256", json!({"sub": 7, "exp": exp}))
            ),
        ),
        (
            "alg none",
            format!(
                "Bearer {}",
                jwt(secret, "none", json!({"sub": user, "exp": exp}))
            ),
        ),
        (
            "alg HS512",
            format!(
                "Bearer {}",
                jwt(secret, "HS512", json!({"sub": user, "exp": exp}))
            ),
        ),
        (
            "not yet valid",
            format!(
                "Bearer {}",
                jwt(
                    secret,
                    "HS256",
                    json!({"sub": user, "exp": exp, "nbf": exp - 60})
                )
            ),
        ),
        ("basic scheme", "Basic dXNlcjpwYXNz".to_owned()),
        ("no token", "Bearer ".to_owned()),
        ("no scheme", "token".to_owned()),
    ];
    for (what, header) in cases {
        let reply = get(&app, PATH, &Who::header("authorization", header)).await;
        assert_eq!(reply.status, 401, "{what}: {reply:?}");
        assert_unauthorized(&reply);
    }
    // A good token, then tampered claims under the same signature.
    let good = jwt(secret, "HS256", json!({"sub": user, "exp": exp}));
    get(&app, PATH, &bearer(good.clone()))
        .await
        .assert_status(200);
    let parts: Vec<&str> = good.split('.').collect();
    let admin_claims =
        URL_SAFE_NO_PAD.encode(json!({"sub": user, "exp": exp, "role": "admin"}).to_string());
    let forged = format!("{}.{admin_claims}.{}", parts[0], parts[2]);
    assert_unauthorized(&get(&app, "/api/v1/admin/prompts", &bearer(forged)).await);
}

#[tokio::test]
async fn bearer_tokens_are_refused_when_no_jwt_secret_is_set() {
    let app = spawn_app_with(|config| config.jwt_secret = None).await;
    assert_unauthorized(&get(&app, PATH, &Who::user()).await);
    get(&app, PATH, &Who::user_key()).await.assert_status(200);
}

#[tokio::test]
async fn no_credentials_make_a_new_anonymous_user_who_can_resume() {
    let app = spawn_app().await;
    let (first_user, reply) = whoami(&app, &Who::Nobody).await;
    let token = reply
        .session_token()
        .expect("X-Session-Token on an anonymous call");
    assert!(token.starts_with(&first_user), "the token names its user");

    let session = Who::Session(token.clone());
    let listed = get(&app, PATH, &session).await;
    let items = listed.assert_status(200)["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 1, "the session sees its conversation");
    assert_eq!(items[0]["user_id"], first_user);
    assert!(
        listed.session_token().is_none(),
        "a resumed session gets no new token"
    );
    let (resumed_user, _) = whoami(&app, &session).await;
    assert_eq!(resumed_user, first_user);

    // Another call without credentials is somebody else.
    let (second_user, second) = whoami(&app, &Who::Nobody).await;
    assert_ne!(second_user, first_user);
    assert_ne!(second.session_token().unwrap(), token);
    let theirs = get(&app, PATH, &Who::Nobody).await;
    assert_eq!(theirs.assert_status(200)["items"], json!([]));
    assert!(
        theirs.session_token().is_some(),
        "every anonymous answer carries its token"
    );
}

#[tokio::test]
async fn the_session_token_comes_with_error_answers_too() {
    let app = spawn_app().await;
    let missing = format!("{PATH}/{}", Uuid::new_v4());
    let reply = get(&app, &missing, &Who::Nobody).await;
    reply.assert_error(404, "not_found");
    let token = reply
        .session_token()
        .expect("the anonymous caller still gets its session");
    get(&app, PATH, &Who::Session(token))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn wrong_session_tokens_are_401() {
    let app = spawn_app().await;
    let (_, reply) = whoami(&app, &Who::Nobody).await;
    let token = reply.session_token().unwrap();
    let tampered = format!("{}xx", &token[..token.len() - 2]);
    let other_user = token.replacen(&token[..36], &Uuid::new_v4().to_string(), 1);
    let (user, rest) = token.split_once('.').unwrap();
    let (expiry, signature) = rest.split_once('.').unwrap();
    let longer = format!(
        "{user}.{}.{signature}",
        expiry.parse::<i64>().unwrap() + 86_400
    );
    let expired = {
        let payload = format!("{user}.{}", now() - 10);
        let mac = Hmac::<Sha256>::new_from_slice(b"test-session-secret-not-for-production")
            .unwrap()
            .chain_update(payload.as_bytes())
            .finalize()
            .into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    };
    for bad in [
        tampered,
        other_user,
        longer,
        expired,
        "garbage".to_owned(),
        String::new(),
    ] {
        assert_unauthorized(&get(&app, PATH, &Who::Session(bad)).await);
    }
}

#[tokio::test]
async fn the_first_credential_present_decides_and_never_falls_back() {
    let app = spawn_app().await;
    let bearer_user = Uuid::new_v4();
    let good_bearer = dave::auth::jwt::issue(
        dave::config::TEST_JWT_SECRET.as_bytes(),
        bearer_user,
        false,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    // A valid key wins over anything after it.
    let key_and_junk = Who::Headers(vec![
        ("x-api-key", USER_KEY.to_owned()),
        ("authorization", "Bearer junk".to_owned()),
        ("x-session-token", "junk".to_owned()),
    ]);
    assert_eq!(whoami(&app, &key_and_junk).await.0, USER_KEY_USER);
    // A wrong key is a 401 even with a valid bearer token behind it.
    let bad_key_good_bearer = Who::Headers(vec![
        ("x-api-key", "no-such-key".to_owned()),
        ("authorization", format!("Bearer {good_bearer}")),
    ]);
    assert_unauthorized(&get(&app, PATH, &bad_key_good_bearer).await);
    // A valid bearer wins over a session token; a wrong one does not fall back to it.
    let (_, anonymous) = whoami(&app, &Who::Nobody).await;
    let session = anonymous.session_token().unwrap();
    let bearer_and_session = Who::Headers(vec![
        ("authorization", format!("Bearer {good_bearer}")),
        ("x-session-token", session.clone()),
    ]);
    assert_eq!(
        whoami(&app, &bearer_and_session).await.0,
        bearer_user.to_string()
    );
    let bad_bearer_and_session = Who::Headers(vec![
        ("authorization", "Bearer junk".to_owned()),
        ("x-session-token", session),
    ]);
    assert_unauthorized(&get(&app, PATH, &bad_bearer_and_session).await);
}

#[tokio::test]
async fn credentials_are_checked_on_every_api_route() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let bad = Who::header("x-api-key", "no-such-key");
    let routes = [
        ("GET", "/api/v1/conversations".to_owned()),
        ("POST", "/api/v1/conversations".to_owned()),
        ("GET", format!("/api/v1/conversations/{id}")),
        ("PATCH", format!("/api/v1/conversations/{id}")),
        ("DELETE", format!("/api/v1/conversations/{id}")),
        ("GET", format!("/api/v1/conversations/{id}/messages")),
        ("POST", format!("/api/v1/conversations/{id}/messages")),
        ("GET", "/api/v1/knowledge?q=pool".to_owned()),
        ("POST", "/api/v1/knowledge".to_owned()),
        ("GET", "/api/v1/admin/prompts".to_owned()),
        ("GET", "/api/v1/admin/prompts/system/default".to_owned()),
        (
            "POST",
            "/api/v1/admin/prompts/system/default/versions".to_owned(),
        ),
        (
            "POST",
            "/api/v1/admin/prompts/system/default/rollback".to_owned(),
        ),
    ];
    for (method, path) in routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        // Even a malformed body: credentials are looked at first.
        let reply =
            crate::calls::call_raw(&app, method, &path, &bad, Some("application/json"), "{oops")
                .await;
        assert_eq!(reply.status, 401, "{path}: {reply:?}");
        assert_unauthorized(&reply);
    }
}
