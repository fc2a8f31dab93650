//! Anonymous session tokens: how a caller without credentials resumes its
//! conversations.
//!
//! A caller that presents nothing becomes a new anonymous user, and the
//! response hands it a token naming that user; sent back in
//! `X-Session-Token`, the token proves the user id without any database
//! lookup. The token is `<user uuid>.<expiry unix seconds>.<signature>`, the
//! signature being HMAC-SHA256 with `SESSION_SECRET` over
//! `<user uuid>.<expiry>`, base64url without padding. That is byte for byte the
//! Python reference's format, so with the same `SESSION_SECRET` a client keeps
//! its session when the service behind it changes. The user id is not secret
//! (it is the caller's own); the signature is what makes it unforgeable, and it
//! is checked in constant time before anything else in the token is trusted.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// How long an anonymous session lasts: 7 days (DESIGN §3).
pub const SESSION_TTL_SECONDS: i64 = 7 * 24 * 3600;

/// Longer than any token this module issues (36 + 1 + 19 + 1 + 43 bytes);
/// anything longer is refused before any work is done on it.
const MAX_TOKEN_LEN: usize = 128;

/// 32 bytes of HMAC-SHA256 in base64url without padding.
const SIGNATURE_LEN: usize = 43;

/// Why a session token was refused. Every variant is a 401 for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("session token is malformed; drop it to start a new anonymous session")]
    Malformed,
    #[error("session token signature is invalid; drop it to start a new anonymous session")]
    BadSignature,
    #[error("session token expired; drop it to start a new anonymous session")]
    Expired,
    #[error("SESSION_SECRET is empty; set it to a long random value")]
    EmptySecret,
}

/// A verified session: who the anonymous caller is, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// A freshly issued token and its expiry (for a `Set-Cookie` or a log line).
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSession {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSession")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Issues and verifies session tokens with one key.
///
/// Holds the HMAC already keyed: each token then costs one clone and two
/// SHA-256 compressions, not a re-keying.
#[derive(Clone)]
pub struct SessionSigner {
    mac: HmacSha256,
}

impl fmt::Debug for SessionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSigner { key: <redacted> }")
    }
}

impl SessionSigner {
    /// A signer keyed with `SESSION_SECRET`.
    pub fn new(secret: &[u8]) -> Result<Self, SessionError> {
        if secret.is_empty() {
            return Err(SessionError::EmptySecret);
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| SessionError::EmptySecret)?;
        Ok(Self { mac })
    }

    /// A signer with a random 32-byte key, for development when no
    /// `SESSION_SECRET` is set: sessions then last as long as the process.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            mac: HmacSha256::new_from_slice(&key).expect("HMAC accepts any key length"),
        }
    }

    /// A token for `user_id`, valid for [`SESSION_TTL_SECONDS`] from now.
    pub fn issue(&self, user_id: Uuid) -> IssuedSession {
        self.issue_at(user_id, Utc::now().timestamp())
    }

    /// [`issue`](Self::issue) at a given clock, in unix seconds.
    pub fn issue_at(&self, user_id: Uuid, now: i64) -> IssuedSession {
        let expires = now.saturating_add(SESSION_TTL_SECONDS);
        let payload = format!("{}.{expires}", user_id.as_hyphenated());
        let tag = self.mac.clone().chain_update(payload.as_bytes()).finalize();
        let signature = URL_SAFE_NO_PAD.encode(tag.into_bytes());
        IssuedSession {
            token: format!("{payload}.{signature}"),
            expires_at: DateTime::from_timestamp(expires, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// The session a token names, if its signature holds and it has not expired.
    pub fn verify(&self, token: &str) -> Result<Session, SessionError> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// [`verify`](Self::verify) at a given clock, in unix seconds.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Session, SessionError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(SessionError::Malformed);
        }
        let (payload, signature) = token.rsplit_once('.').ok_or(SessionError::Malformed)?;
        if signature.len() != SIGNATURE_LEN {
            return Err(SessionError::Malformed);
        }
        let mut tag = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(signature, &mut tag) {
            Ok(32) => {}
            _ => return Err(SessionError::Malformed),
        }
        // The signature is checked over the bytes as sent, before parsing them.
        self.mac
            .clone()
            .chain_update(payload.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| SessionError::BadSignature)?;

        let (user, expires) = payload.split_once('.').ok_or(SessionError::Malformed)?;
        let user_id = Uuid::try_parse(user).map_err(|_| SessionError::Malformed)?;
        if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SessionError::Malformed);
        }
        let expires: i64 = expires.parse().map_err(|_| SessionError::Malformed)?;
        if expires < now {
            return Err(SessionError::Expired);
        }
        let expires_at = DateTime::from_timestamp(expires, 0).ok_or(SessionError::Malformed)?;
        Ok(Session {
            user_id,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn signer() -> SessionSigner {
        SessionSigner::new(b"test-session-secret").unwrap()
    }

    #[test]
    fn issued_token_verifies_to_the_same_user() {
        let user = Uuid::new_v4();
        let issued = signer().issue_at(user, NOW);
        let session = signer().verify_at(&issued.token, NOW).unwrap();
        assert_eq!(session.user_id, user);
        assert_eq!(session.expires_at.timestamp(), NOW + SESSION_TTL_SECONDS);
        assert_eq!(issued.expires_at, session.expires_at);
    }

    #[test]
    fn token_is_valid_for_seven_days_and_not_a_second_more() {
        let token = signer().issue_at(Uuid::new_v4(), NOW).token;
        let last_second = NOW + 7 * 24 * 3600;
        assert!(signer().verify_at(&token, last_second).is_ok());
        assert_eq!(
            signer().verify_at(&token, last_second + 1),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn python_reference_token_verifies() {
        // Made with the reference's issue_session("test-session-secret", user):
        // payload = f"{user}.{expiry}", base64url(HMAC-SHA256) without padding.
        let user = "6f1c2f0e-8a4b-4c1d-9e2f-3a4b5c6d7e8f";
        let payload = format!("{user}.{}", NOW + 100);
        let tag = HmacSha256::new_from_slice(b"test-session-secret")
            .unwrap()
            .chain_update(payload.as_bytes())
            .finalize()
            .into_bytes();
        let token = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag));
        let session = signer().verify_at(&token, NOW).unwrap();
        assert_eq!(session.user_id.to_string(), user);
    }

    #[test]
    fn another_secret_is_refused() {
        let token = SessionSigner::new(b"other-secret")
            .unwrap()
            .issue_at(Uuid::new_v4(), NOW)
            .token;
        assert_eq!(
            signer().verify_at(&token, NOW),
            Err(SessionError::BadSignature)
        );
    }

    #[test]
    fn changing_the_user_or_the_expiry_breaks_the_signature() {
        let user = Uuid::new_v4();
        let token = signer().issue_at(user, NOW).token;
        let other_user = token.replacen(&user.to_string(), &Uuid::new_v4().to_string(), 1);
        assert_eq!(
            signer().verify_at(&other_user, NOW),
            Err(SessionError::BadSignature)
        );
        let expires = (NOW + SESSION_TTL_SECONDS).to_string();
        let longer = token.replacen(&expires, &(NOW + 10 * SESSION_TTL_SECONDS).to_string(), 1);
        assert_eq!(
            signer().verify_at(&longer, NOW),
            Err(SessionError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature_is_refused() {
        let token = signer().issue_at(Uuid::new_v4(), NOW).token;
        // What the contract check does: replace the last two characters.
        let tampered = format!("{}xx", &token[..token.len() - 2]);
        assert!(signer().verify_at(&tampered, NOW).is_err());
        // Flip one character in the middle of the signature.
        let mut bytes = token.clone().into_bytes();
        let middle = token.len() - 20;
        bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_eq!(
            signer().verify_at(&flipped, NOW),
            Err(SessionError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let long = "a".repeat(500);
        for token in ["", ".", "..", "abc", "a.b.c", "x.1.!!!", long.as_str()] {
            assert_eq!(
                signer().verify_at(token, NOW),
                Err(SessionError::Malformed),
                "{token:?}"
            );
        }
    }

    #[test]
    fn signed_but_unparsable_payload_is_malformed() {
        // A payload signed with the right key but not of our shape (a key
        // shared with another system): the signature holds, the parse refuses.
        let mac = HmacSha256::new_from_slice(b"test-session-secret").unwrap();
        for payload in [
            "not-a-uuid.1900000000",
            "6f1c2f0e-8a4b-4c1d-9e2f-3a4b5c6d7e8f.-5",
            "x",
        ] {
            let tag = mac
                .clone()
                .chain_update(payload.as_bytes())
                .finalize()
                .into_bytes();
            let token = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag));
            assert_eq!(
                signer().verify_at(&token, NOW),
                Err(SessionError::Malformed),
                "{payload}"
            );
        }
    }

    #[test]
    fn empty_secret_is_refused() {
        assert_eq!(
            SessionSigner::new(b"").unwrap_err(),
            SessionError::EmptySecret
        );
    }

    #[test]
    fn random_signers_do_not_accept_each_other() {
        let token = SessionSigner::random().issue(Uuid::new_v4()).token;
        assert_eq!(
            SessionSigner::random().verify(&token),
            Err(SessionError::BadSignature)
        );
    }

    #[test]
    fn debug_output_hides_key_and_token() {
        let issued = signer().issue_at(Uuid::new_v4(), NOW);
        let shown = format!("{:?} {:?}", signer(), issued);
        assert!(!shown.contains("test-session-secret"));
        assert!(!shown.contains(&issued.token));
    }
}
