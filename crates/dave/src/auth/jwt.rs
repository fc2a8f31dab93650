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

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
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
    #[error("bearer token has no `{0}` claim (or not of its type)")]
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

/// The claims this service reads once `jsonwebtoken` has checked the
/// registered ones (`exp`, `nbf`, `aud`, `sub` present and a string); kept
/// as JSON so a `role` of any type is simply "not admin".
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    role: Option<serde_json::Value>,
    /// Any `aud` at all, `null` and `[null]` included: jsonwebtoken lets
    /// some of those through its own audience check.
    #[serde(default, deserialize_with = "present")]
    aud: Option<serde_json::Value>,
    /// Read again only to know how long a verified token may be remembered.
    #[serde(default)]
    exp: Option<serde_json::Value>,
}

/// A claim that is there, whatever its value (`null` too): `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Only for the message of a refused algorithm: the header's `alg` as written.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
}

/// Verifies bearer tokens with one key, through `jsonwebtoken` (the vetted
/// crate; security-sensitive code is not written here).
///
/// Until issue 12 this was a hand-written HS256 check, kept for speed
/// (jsonwebtoken decodes the header and the claims twice and keys a new HMAC
/// per token). Measured in isolation with criterion, both in the same runs
/// (`jwt_verify` of `cargo bench -p dave --bench hot_paths`, five runs on
/// the shared 2-core machine; docs/benchmarks.md "Bearer verification"),
/// jsonwebtoken took 1.4 to 4.0 times as long, median 2.0 times: from the
/// hand-written 1.77 µs of a quiet run, about 1.8 µs more per bearer
/// request. get_conversation costs 40 µs of service CPU and 34 µs of
/// PostgreSQL CPU per request, so that is about 4 % of the service's CPU and
/// 2.4 % of the benchmark's throughput: not the more than 5 % that would
/// justify own security code. The test vectors below (RFC 7515 A.1, wrong
/// `alg`, `none`, truncated and altered signatures) hold this verifier to
/// the rules.
///
/// A client sends the same token on every request until it expires, so
/// tokens that passed are remembered (see `Verified` below): a repeat costs a
/// hash lookup instead of two JSON decodes and an HMAC, about 6 % of the
/// service's CPU on a by-id read (docs/benchmarks.md, "Issue 13, run 10").
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: Arc<Verified>,
}

/// Tokens this verifier accepted, with their identity and `exp`, as Envoy's
/// `jwt_authn` cache does. Only a token that passed every check gets in,
/// keyed by its whole text, so a hit is the same signed bytes; `exp` is
/// checked again on every hit with the same rule (no leeway). `nbf` needs no
/// second look: a token in here was valid once, and time only moves on. The
/// map is bounded: when it holds [`Verified::CAPACITY`] tokens it is emptied
/// and refills from the tokens still in use.
#[derive(Default)]
struct Verified(Mutex<HashMap<Box<str>, Remembered>>);

#[derive(Clone, Copy)]
struct Remembered {
    identity: BearerIdentity,
    exp: i64,
}

impl Verified {
    const CAPACITY: usize = 4096;

    fn get(&self, token: &str) -> Option<Remembered> {
        self.lock().get(token).copied()
    }

    fn remember(&self, token: &str, remembered: Remembered) {
        let mut map = self.lock();
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(token.into(), remembered);
    }

    fn forget(&self, token: &str) {
        self.lock().remove(token);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// A panic while the lock was held left nothing half-written (each
    /// operation is one map call), so a poisoned lock is used as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Remembered>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
        // HS256 only (the header's alg is checked against this list, never
        // trusted); `exp` and `sub` required; `nbf` honoured; no leeway; any
        // `aud` refused, since this service names no audience.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
        })
    }

    /// The identity in `token`, or why it is refused. `jsonwebtoken` checks
    /// the shape, `alg`, the signature, then `exp`, `nbf`, `aud` and that
    /// `sub` is there; `sub` must then be a UUID.
    pub fn verify(&self, token: &str) -> Result<BearerIdentity, JwtError> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// [`verify`](Self::verify) with the clock read by the caller, so tests
    /// can see a remembered token expire without waiting for it.
    fn verify_at(&self, token: &str, now: i64) -> Result<BearerIdentity, JwtError> {
        if let Some(remembered) = self.verified.get(token) {
            // jsonwebtoken's rule with no leeway: expired once exp < now.
            if remembered.exp < now {
                self.verified.forget(token);
                return Err(JwtError::Expired);
            }
            return Ok(remembered.identity);
        }
        let (identity, exp) = self.check(token)?;
        if let Some(exp) = exp {
            self.verified.remember(token, Remembered { identity, exp });
        }
        Ok(identity)
    }

    /// The full check, by jsonwebtoken, and the token's `exp` when it is a
    /// whole number of seconds (a token with another `exp` that jsonwebtoken
    /// accepted is checked again next time rather than remembered).
    fn check(&self, token: &str) -> Result<(BearerIdentity, Option<i64>), JwtError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| refusal(e.kind(), token))?
            .claims;
        if claims.aud.is_some() {
            return Err(JwtError::Audience);
        }
        let sub = claims
            .sub
            .as_ref()
            .ok_or_else(|| JwtError::MissingClaim("sub".to_owned()))?
            .as_str()
            .ok_or_else(|| JwtError::BadClaim("sub".to_owned()))?;
        let user_id = Uuid::try_parse(sub).map_err(|_| JwtError::SubjectNotUuid)?;
        let is_admin = claims.role.as_ref().and_then(serde_json::Value::as_str) == Some("admin");
        let exp = claims.exp.as_ref().and_then(serde_json::Value::as_i64);
        Ok((BearerIdentity { user_id, is_admin }, exp))
    }
}

/// `jsonwebtoken`'s reason as this service's.
fn refusal(kind: &ErrorKind, token: &str) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidAudience => JwtError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => JwtError::BadClaim(claim.clone()),
        // A header jsonwebtoken cannot take (e.g. `alg: none`, which its
        // Algorithm type has no name for) may still say which alg it wanted.
        _ => match header_alg(token) {
            Some(alg) if alg != "HS256" => JwtError::WrongAlgorithm(truncate(&alg)),
            _ => JwtError::Malformed,
        },
    }
}

/// The `alg` a token's header names, if it has a readable header.
fn header_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let json = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice::<RawHeader>(&json)
        .ok()
        .map(|h| h.alg)
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
        // `[null]` and `null` were let through by jsonwebtoken's own check
        // (found by tests/props.rs).
        for aud in [
            json!("another-service"),
            json!(["a", "b"]),
            json!([null]),
            json!(null),
        ] {
            let token = sign(
                Algorithm::HS256,
                SECRET,
                json!({"sub": Uuid::new_v4(), "exp": now() + 60, "aud": aud}),
            );
            assert_eq!(verifier().verify(&token), Err(JwtError::Audience), "{aud}");
        }
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

    /// RFC 7515 appendix A.1: the HS256 JWS example, its key (JWK `k`) and
    /// its compact serialization, exactly as printed there.
    mod rfc7515_a1 {
        pub const KEY_B64URL: &str =
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
        pub const HEADER: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
        pub const PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        pub const SIGNATURE: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    }

    fn rfc_key() -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(rfc7515_a1::KEY_B64URL).unwrap()
    }

    fn rfc_token(signature: &str) -> String {
        format!("{}.{}.{signature}", rfc7515_a1::HEADER, rfc7515_a1::PAYLOAD)
    }

    /// The example's signature verifies with its key: the verifier gets past
    /// the signature to the claims, which the example lacks for this service
    /// (no `sub`; its `exp` is in 2011). With any other key, or with the
    /// signature cut or changed, it stops at the signature.
    #[test]
    fn vector_rfc7515_a1_signature_verifies() {
        let verifier = JwtVerifier::new(&rfc_key()).unwrap();
        let result = verifier.verify(&rfc_token(rfc7515_a1::SIGNATURE));
        assert!(
            matches!(&result, Err(JwtError::MissingClaim(c)) if c == "sub")
                || result == Err(JwtError::Expired),
            "{result:?}"
        );
        let other = JwtVerifier::new(b"not the example's key").unwrap();
        assert_eq!(
            other.verify(&rfc_token(rfc7515_a1::SIGNATURE)),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn vector_rfc7515_a1_with_sub_and_future_exp_is_accepted_when_resigned() {
        // The example's header (with its CR LF), claims this service needs.
        let user = Uuid::new_v4();
        let claims = URL_SAFE_NO_PAD.encode(format!(
            "{{\"sub\":\"{user}\",\r\n \"exp\":{}}}",
            now() + 60
        ));
        let input = format!("{}.{claims}", rfc7515_a1::HEADER);
        use hmac::{Hmac, Mac};
        let tag = Hmac::<sha2::Sha256>::new_from_slice(&rfc_key())
            .unwrap()
            .chain_update(input.as_bytes())
            .finalize()
            .into_bytes();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag));
        let verifier = JwtVerifier::new(&rfc_key()).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().user_id, user);
    }

    #[test]
    fn vector_truncated_signature_is_refused() {
        let verifier = JwtVerifier::new(&rfc_key()).unwrap();
        let full = rfc7515_a1::SIGNATURE;
        for cut in [&full[..full.len() - 1], &full[..40], &full[..4], ""] {
            let result = verifier.verify(&rfc_token(cut));
            assert!(
                matches!(result, Err(JwtError::BadSignature | JwtError::Malformed)),
                "signature cut to {} chars: {result:?}",
                cut.len()
            );
        }
        // One changed character anywhere in the signature.
        let mut flipped = full.to_owned().into_bytes();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            verifier.verify(&rfc_token(&flipped)),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn vector_wrong_alg_is_refused_before_the_signature() {
        let claims = json!({"sub": Uuid::new_v4(), "exp": now() + 60, "role": "admin"});
        // HMAC over the token with the right secret, whatever the header
        // says: RS256/ES256 (algorithm confusion), other HMACs, made-up names.
        for alg in [
            "HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA", "hs256", "HS256 ",
        ] {
            let token = with_header(json!({"alg": alg, "typ": "JWT"}), claims.clone(), true);
            let result = verifier().verify(&token);
            assert!(
                matches!(&result, Err(JwtError::WrongAlgorithm(a)) if a == alg),
                "{alg}: {result:?}"
            );
        }
        let no_alg = with_header(json!({"typ": "JWT"}), claims, true);
        assert!(verifier().verify(&no_alg).is_err());
    }

    #[test]
    fn vector_alg_none_is_refused() {
        let claims = json!({"sub": Uuid::new_v4(), "exp": now() + 60, "role": "admin"});
        for alg in ["none", "None", "NONE"] {
            for signed in [false, true] {
                let token = with_header(json!({"alg": alg}), claims.clone(), signed);
                assert_eq!(
                    verifier().verify(&token),
                    Err(JwtError::WrongAlgorithm(alg.into())),
                    "{alg} signed={signed}"
                );
            }
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

    /// Remembering a token changes nothing a client can see: a repeat gives
    /// the same identity, the token is refused once its `exp` has passed,
    /// and a copy with one signature byte changed is still a bad signature.
    #[test]
    fn a_remembered_token_is_still_checked() {
        let v = verifier();
        let user = Uuid::new_v4();
        let exp = now() + 60;
        let token = sign(
            Algorithm::HS256,
            SECRET,
            json!({"sub": user, "exp": exp, "role": "admin"}),
        );
        let identity = BearerIdentity {
            user_id: user,
            is_admin: true,
        };
        assert_eq!(v.verify(&token), Ok(identity));
        assert_eq!(v.verified.len(), 1, "a valid token is remembered");
        assert_eq!(v.verify(&token), Ok(identity));
        assert_eq!(v.verify_at(&token, exp), Ok(identity), "valid up to exp");
        assert_eq!(v.verify_at(&token, exp + 1), Err(JwtError::Expired));
        assert_eq!(v.verified.len(), 0, "an expired token is forgotten");

        assert_eq!(v.verify(&token), Ok(identity));
        // A character inside the signature (the last one carries padding bits).
        let mut altered = token.clone().into_bytes();
        let at = altered.len() - 5;
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(v.verify(&altered), Err(JwtError::BadSignature));
        assert_eq!(v.verified.len(), 1, "a refused token is not remembered");
    }

    #[test]
    fn the_remembered_tokens_are_bounded() {
        let v = verifier();
        let user = Uuid::new_v4();
        let base = now() + 600;
        for i in 0..Verified::CAPACITY as i64 + 10 {
            let token = sign(
                Algorithm::HS256,
                SECRET,
                json!({"sub": user, "exp": base + i}),
            );
            assert!(v.verify(&token).is_ok());
            assert!(v.verified.len() <= Verified::CAPACITY);
        }
        assert!(v.verified.len() < Verified::CAPACITY, "emptied when full");
    }
}
