//! Bearer tokens: HS256 JWTs signed with `JWT_SECRET` by whoever logs users in.
//!
//! The rules are DESIGN §3's: the algorithm must be HS256 (the header's `alg`
//! is checked against that list, never trusted, so `none` and algorithm
//! confusion are refused), `exp` is required and has no leeway (a token
//! expired ten seconds ago is expired, as in the Python reference), `nbf` is
//! honoured when present, `sub` must be a UUID and is the user id, and
//! `"role":"admin"` makes the caller an admin. Any other `role` value, or none,
//! is an ordinary user. A token carrying `aud` is refused: this service names
//! no audience, so a token meant for someone else must not work here.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a bearer token was refused. Every variant is a 401 for the client;
/// none of the messages repeats any part of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    #[error("bearer token is malformed (expected a JWT: header.claims.signature)")]
    Malformed,
    #[error("bearer token must be signed with HS256 (alg {0} is not accepted)")]
    WrongAlgorithm(String),
    #[error("bearer token signature is invalid")]
    BadSignature,
    #[error("bearer token expired")]
    Expired,
    #[error("bearer token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("bearer token has no `{0}` claim")]
    MissingClaim(String),
    #[error("bearer token claim `{0}` has the wrong type")]
    BadClaim(String),
    #[error("bearer token `sub` must be a UUID")]
    SubjectNotUuid,
    #[error("bearer token has an audience (aud) this service does not accept")]
    Audience,
    #[error("JWT_SECRET is empty; set it or leave it unset to turn bearer auth off")]
    EmptySecret,
    #[error("could not sign a bearer token: {0}")]
    Signing(String),
}

/// Who a valid bearer token says the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BearerIdentity {
    pub user_id: Uuid,
    pub is_admin: bool,
}

/// The claims this service reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing `sub` is reported by the validation as
    // a missing claim, not as a JSON error.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    role: Option<serde_json::Value>,
}

/// The claims [`issue`] writes.
#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: String,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

/// Verifies bearer tokens with one key and one set of rules, built once.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtVerifier { alg: HS256, key: <redacted> }")
    }
}

impl JwtVerifier {
    /// A verifier for tokens signed with `JWT_SECRET`.
    pub fn new(secret: &[u8]) -> Result<Self, JwtError> {
        if secret.is_empty() {
            return Err(JwtError::EmptySecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// The identity in `token`, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<BearerIdentity, JwtError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| classify(token, e.kind()))?;
        let sub = data
            .claims
            .sub
            .ok_or_else(|| JwtError::MissingClaim("sub".to_owned()))?;
        let user_id = Uuid::try_parse(&sub).map_err(|_| JwtError::SubjectNotUuid)?;
        let is_admin = data
            .claims
            .role
            .as_ref()
            .and_then(serde_json::Value::as_str)
            == Some("admin");
        Ok(BearerIdentity { user_id, is_admin })
    }
}

/// A token for `user_id` valid for `ttl`, signed like an identity provider
/// would. For tests and local tooling; production tokens come from elsewhere.
pub fn issue(
    secret: &[u8],
    user_id: Uuid,
    is_admin: bool,
    ttl: Duration,
) -> Result<String, JwtError> {
    if secret.is_empty() {
        return Err(JwtError::EmptySecret);
    }
    let now = Utc::now().timestamp();
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = IssuedClaims {
        sub: user_id.to_string(),
        exp: now.saturating_add(ttl),
        iat: now,
        role: is_admin.then_some("admin"),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| JwtError::Signing(e.to_string()))
}

/// The header's `alg` as written, for the message when it is not one the
/// library knows (e.g. `none`); only read after decoding already failed.
fn header_alg(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct RawHeader {
        alg: String,
    }
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice::<RawHeader>(&bytes)
        .ok()
        .map(|h| h.alg)
}

fn classify(token: &str, kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => JwtError::BadClaim(claim.clone()),
        ErrorKind::InvalidAudience => JwtError::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::Json(_) => {
            match header_alg(token) {
                Some(alg) if alg != "HS256" => JwtError::WrongAlgorithm(truncate(&alg)),
                _ if matches!(kind, ErrorKind::Json(_)) => claims_problem(token),
                _ => JwtError::Malformed,
            }
        }
        _ => JwtError::Malformed,
    }
}

/// A JSON error with an HS256 header is about the claims: e.g. `sub` is not a
/// string. Says which claim when it can.
fn claims_problem(token: &str) -> JwtError {
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    match claims {
        Some(value) if value.get("sub").is_some_and(|sub| !sub.is_string()) => {
            JwtError::BadClaim("sub".to_owned())
        }
        _ => JwtError::Malformed,
    }
}

/// An attacker-chosen `alg` goes into the message: keep it short.
fn truncate(alg: &str) -> String {
    alg.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"test-jwt-secret";

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    fn sign(alg: Algorithm, secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(SECRET).unwrap()
    }

    /// A token with a hand-written header, signed with HS256 over it.
    fn with_header(header: serde_json::Value, claims: serde_json::Value, signed: bool) -> String {
        use hmac::{Hmac, Mac};
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = if signed {
            let tag = Hmac::<sha2::Sha256>::new_from_slice(SECRET)
                .unwrap()
                .chain_update(input.as_bytes())
                .finalize()
                .into_bytes();
            URL_SAFE_NO_PAD.encode(tag)
        } else {
            String::new()
        };
        format!("{input}.{signature}")
    }

    #[test]
    fn valid_token_gives_user_and_role() {
        let user = Uuid::new_v4();
        let token = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": user, "exp": now() + 60}),
        );
        assert_eq!(
            verifier().verify(&token),
            Ok(BearerIdentity {
                user_id: user,
                is_admin: false
            })
        );
        let admin = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": user, "exp": now() + 60, "role": "admin"}),
        );
        assert!(verifier().verify(&admin).unwrap().is_admin);
    }

    #[test]
    fn other_roles_are_not_admin() {
        let user = Uuid::new_v4();
        for role in [
            json!("user"),
            json!("Admin"),
            json!(["admin"]),
            json!(null),
            json!(1),
        ] {
            let token = sign(
                Algorithm::HS256,
                SECRET,
                json!({"sub": user, "exp": now() + 60, "role": role}),
            );
            assert!(!verifier().verify(&token).unwrap().is_admin, "{role}");
        }
    }

    #[test]
    fn issued_tokens_verify() {
        let user = Uuid::new_v4();
        let token = issue(SECRET, user, true, Duration::from_secs(60)).unwrap();
        assert_eq!(
            verifier().verify(&token),
            Ok(BearerIdentity {
                user_id: user,
                is_admin: true
            })
        );
    }

    #[test]
    fn expired_is_refused_without_leeway() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": Uuid::new_v4(), "exp": now() - 10}),
        );
        assert_eq!(verifier().verify(&token), Err(JwtError::Expired));
    }

    #[test]
    fn missing_exp_or_sub_is_refused() {
        let no_exp = sign(Algorithm::HS256, SECRET, json!({"sub": Uuid::new_v4()}));
        assert_eq!(
            verifier().verify(&no_exp),
            Err(JwtError::MissingClaim("exp".into()))
        );
        let no_sub = sign(Algorithm::HS256, SECRET, json!({"exp": now() + 60}));
        assert_eq!(
            verifier().verify(&no_sub),
            Err(JwtError::MissingClaim("sub".into()))
        );
    }

    #[test]
    fn sub_must_be_a_uuid_string() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": "alice", "exp": now() + 60}),
        );
        assert_eq!(verifier().verify(&token), Err(JwtError::SubjectNotUuid));
        let number = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": 42, "exp": now() + 60}),
        );
        assert!(verifier().verify(&number).is_err());
    }

    #[test]
    fn exp_of_the_wrong_type_is_refused() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": Uuid::new_v4(), "exp": "tomorrow"}),
        );
        assert!(verifier().verify(&token).is_err());
    }

    #[test]
    fn future_nbf_is_refused() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": Uuid::new_v4(), "exp": now() + 600, "nbf": now() + 300}),
        );
        assert_eq!(verifier().verify(&token), Err(JwtError::NotYetValid));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let token = sign(
            Algorithm::HS256,
            b"wrong-secret",
            json!({"sub": Uuid::new_v4(), "exp": now() + 60}),
        );
        assert_eq!(verifier().verify(&token), Err(JwtError::BadSignature));
    }

    #[test]
    fn other_hmac_algorithms_are_refused_even_with_the_right_secret() {
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(
                alg,
                SECRET,
                json!({"sub": Uuid::new_v4(), "exp": now() + 60}),
            );
            assert!(
                matches!(verifier().verify(&token), Err(JwtError::WrongAlgorithm(_))),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let claims = json!({"sub": Uuid::new_v4(), "exp": now() + 60, "role": "admin"});
        for signed in [false, true] {
            let token = with_header(json!({"alg": "none", "typ": "JWT"}), claims.clone(), signed);
            assert_eq!(
                verifier().verify(&token),
                Err(JwtError::WrongAlgorithm("none".into()))
            );
        }
    }

    #[test]
    fn hand_made_hs256_token_verifies() {
        // As bench/compare and check_contract.py mint them.
        let user = Uuid::new_v4();
        let token = with_header(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"sub": user, "exp": now() + 60}),
            true,
        );
        assert_eq!(verifier().verify(&token).unwrap().user_id, user);
    }

    #[test]
    fn tampered_claims_are_refused() {
        let user = Uuid::new_v4();
        let token = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": user, "exp": now() + 60}),
        );
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD
            .encode(json!({"sub": user, "exp": now() + 60, "role": "admin"}).to_string());
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(verifier().verify(&forged), Err(JwtError::BadSignature));
    }

    #[test]
    fn token_with_an_audience_is_refused() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": Uuid::new_v4(), "exp": now() + 60, "aud": "another-service"}),
        );
        assert_eq!(verifier().verify(&token), Err(JwtError::Audience));
    }

    #[test]
    fn garbage_is_malformed() {
        for token in [
            "",
            "nope",
            "a.b",
            "a.b.c",
            "....",
            "eyJhbGciOiJIUzI1NiJ9.e30",
        ] {
            assert_eq!(
                verifier().verify(token),
                Err(JwtError::Malformed),
                "{token:?}"
            );
        }
    }

    #[test]
    fn empty_secret_is_refused() {
        assert_eq!(JwtVerifier::new(b"").unwrap_err(), JwtError::EmptySecret);
    }

    #[test]
    fn messages_and_debug_do_not_leak() {
        let token = sign(Algorithm::HS512, SECRET, json!({"sub": "x", "exp": 1}));
        let error = verifier().verify(&token).unwrap_err();
        assert!(!error.to_string().contains(&token));
        assert!(!format!("{:?}", verifier()).contains("test-jwt-secret"));
    }
}
