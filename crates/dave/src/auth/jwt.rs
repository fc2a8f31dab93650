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
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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

/// The claims [`issue`] writes.
#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: String,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

/// The header fields read; the algorithm is borrowed when it can be.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
}

/// The claims this service reads, kept as JSON so a claim of the wrong type
/// is told apart from a missing one; others are ignored.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    role: Option<serde_json::Value>,
}

/// Verifies bearer tokens with one key, prepared once.
///
/// Written out rather than through `jsonwebtoken::decode`, which decodes the
/// header twice, the claims twice and keys a new HMAC per token: this path
/// runs on every bearer request (docs/benchmarks.md). `jsonwebtoken` still
/// signs tokens in [`issue`] and the tests, which check both agree.
#[derive(Clone)]
pub struct JwtVerifier {
    mac: Hmac<Sha256>,
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
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| JwtError::EmptySecret)?;
        Ok(Self { mac })
    }

    /// The identity in `token`, or why it is refused. Checks in this order:
    /// shape, `alg`, signature, then the claims (`exp`, `nbf`, `aud`, `sub`).
    pub fn verify(&self, token: &str) -> Result<BearerIdentity, JwtError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header, claims) = signed.split_once('.').ok_or(JwtError::Malformed)?;
        let header_json = decode_part(header)?;
        let header: RawHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
        if header.alg != "HS256" {
            return Err(JwtError::WrongAlgorithm(truncate(&header.alg)));
        }
        let signature = decode_part(signature)?;
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::BadSignature)?;
        let claims: RawClaims =
            serde_json::from_slice(&decode_part(claims)?).map_err(|_| JwtError::Malformed)?;
        check_claims(&claims, Utc::now().timestamp())
    }
}

/// The registered claims' rules, at `now` (seconds since the epoch).
fn check_claims(claims: &RawClaims, now: i64) -> Result<BearerIdentity, JwtError> {
    let exp = claims
        .exp
        .as_ref()
        .ok_or_else(|| JwtError::MissingClaim("exp".to_owned()))?;
    let sub = claims
        .sub
        .as_ref()
        .ok_or_else(|| JwtError::MissingClaim("sub".to_owned()))?;
    let exp = exp
        .as_i64()
        .ok_or_else(|| JwtError::BadClaim("exp".to_owned()))?;
    let nbf = match &claims.nbf {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| JwtError::BadClaim("nbf".to_owned()))?,
        ),
    };
    if exp < now {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now) {
        return Err(JwtError::NotYetValid);
    }
    if claims.aud.is_some() {
        return Err(JwtError::Audience);
    }
    let sub = sub
        .as_str()
        .ok_or_else(|| JwtError::BadClaim("sub".to_owned()))?;
    let user_id = Uuid::try_parse(sub).map_err(|_| JwtError::SubjectNotUuid)?;
    let is_admin = claims.role.as_ref().and_then(serde_json::Value::as_str) == Some("admin");
    Ok(BearerIdentity { user_id, is_admin })
}

/// One base64url part of the token (unpadded, as JWTs are written).
fn decode_part(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
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
