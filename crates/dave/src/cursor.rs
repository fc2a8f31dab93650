//! The signed keyset cursors of the paginated lists ([`CursorCodec`]):
//! what a client gets as `next_cursor` and sends back as `?cursor=`.
//!
//! A page ends at a row; the next page starts strictly after that row's
//! `(timestamp, id)` in the list's order (conversations by `updated_at, id`
//! descending, messages by `created_at, id` ascending). The cursor carries that
//! pair and nothing else, so a client can only hand it back.
//!
//! Format, before base64url without padding (55 characters):
//! `version (1 byte) | timestamp, microseconds since the epoch (8, big endian) |
//! id (16) | tag (16)`. Postgres keeps timestamps to the microsecond, so the
//! pair round-trips exactly and the `(ts, id) < ($2, $3)` comparison never
//! skips or repeats a row.
//!
//! The tag is HMAC-SHA256, truncated to 128 bits, over the version, the
//! timestamp, the id *and the listing it came from* (which list, and whose:
//! the user for conversations, the conversation for messages). So a cursor
//! that was edited, made up, or taken from another list or another user is
//! refused with a 422 instead of silently paging through something else.
//! Authorization does not depend on it (every query filters on the caller
//! anyway); the signature is what makes "garbage or foreign cursor" a clear
//! error rather than an odd page.
//!
//! The key comes from configuration (the service's cursor secret, derived
//! from `SESSION_SECRET` unless set on its own) rather than being drawn per
//! process: on Cloud Run consecutive pages may be served by different
//! instances, or by a new instance after a scale-to-zero, and a cursor must
//! survive both. [`CursorCodec::new`] derives its key from that secret with a
//! fixed label, so cursor tags never coincide with any other signature made
//! with the same secret. Rotating the secret invalidates outstanding cursors
//! (clients restart from the first page), which is acceptable for a cursor.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::DateTime;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::ApiError;
use crate::keys::derived_mac;
use crate::repo::Cursor;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const RAW_LEN: usize = 1 + 8 + 16 + TAG_LEN;
/// base64url of [`RAW_LEN`] bytes, without padding.
const ENCODED_LEN: usize = (RAW_LEN * 4).div_ceil(3);
/// Separates the cursor key from other uses of the same secret.
const KEY_LABEL: &[u8] = b"dave keyset cursor v1";

/// Which list a cursor belongs to; a cursor only works for the list it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// One user's conversations.
    Conversations { user_id: Uuid },
    /// One conversation's messages.
    Messages { conversation_id: Uuid },
}

impl Listing {
    fn tag_input(self) -> [u8; 17] {
        let (kind, id) = match self {
            Listing::Conversations { user_id } => (b'c', user_id),
            Listing::Messages { conversation_id } => (b'm', conversation_id),
        };
        let mut out = [0u8; 17];
        out[0] = kind;
        out[1..].copy_from_slice(id.as_bytes());
        out
    }
}

/// Why a cursor was refused. Every variant is a 422 for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CursorError {
    #[error("cursor is not one this service issued; request the first page without a cursor")]
    Malformed,
    #[error(
        "cursor comes from another list or was altered; request the first page without a cursor"
    )]
    Foreign,
}

impl From<CursorError> for ApiError {
    fn from(error: CursorError) -> Self {
        ApiError::Validation(format!("cursor: {error}"))
    }
}

/// Encodes and checks cursors with one derived key.
#[derive(Clone)]
pub struct CursorCodec {
    mac: HmacSha256,
}

impl fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CursorCodec { key: <redacted> }")
    }
}

impl CursorCodec {
    /// A codec keyed from the configured cursor secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: derived_mac(secret, KEY_LABEL),
        }
    }

    /// The opaque string a client sends back to get the page after `cursor`.
    pub fn encode(&self, listing: Listing, cursor: Cursor) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..9].copy_from_slice(&cursor.at.timestamp_micros().to_be_bytes());
        raw[9..25].copy_from_slice(cursor.id.as_bytes());
        let tag = self.tag(listing, &raw[..25]);
        raw[25..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The position in `text`, if this service issued it for `listing`.
    pub fn decode(&self, listing: Listing, text: &str) -> Result<Cursor, CursorError> {
        if text.len() != ENCODED_LEN {
            return Err(CursorError::Malformed);
        }
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(CursorError::Malformed),
        }
        if raw[0] != VERSION {
            return Err(CursorError::Malformed);
        }
        self.mac
            .clone()
            .chain_update(listing.tag_input())
            .chain_update(&raw[..25])
            .verify_truncated_left(&raw[25..])
            .map_err(|_| CursorError::Foreign)?;
        let micros = i64::from_be_bytes(raw[1..9].try_into().expect("8 bytes"));
        let at = DateTime::from_timestamp_micros(micros).ok_or(CursorError::Malformed)?;
        let id = Uuid::from_slice(&raw[9..25]).map_err(|_| CursorError::Malformed)?;
        Ok(Cursor { at, id })
    }

    fn tag(&self, listing: Listing, body: &[u8]) -> [u8; TAG_LEN] {
        let full = self
            .mac
            .clone()
            .chain_update(listing.tag_input())
            .chain_update(body)
            .finalize()
            .into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn codec() -> CursorCodec {
        CursorCodec::new(b"cursor-test-secret")
    }

    fn sample() -> Cursor {
        Cursor {
            at: Utc.with_ymd_and_hms(2026, 11, 26, 14, 0, 0).unwrap()
                + chrono::Duration::microseconds(123_456),
            id: Uuid::new_v4(),
        }
    }

    fn conversations() -> Listing {
        Listing::Conversations {
            user_id: Uuid::from_u128(1),
        }
    }

    #[test]
    fn round_trips_to_the_microsecond() {
        let cursor = sample();
        let text = codec().encode(conversations(), cursor);
        assert_eq!(text.len(), ENCODED_LEN);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(codec().decode(conversations(), &text), Ok(cursor));
    }

    #[test]
    fn round_trips_times_before_the_epoch_and_far_ahead() {
        for at in [
            Utc.with_ymd_and_hms(1960, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        ] {
            let cursor = Cursor {
                at,
                id: Uuid::nil(),
            };
            let text = codec().encode(conversations(), cursor);
            assert_eq!(codec().decode(conversations(), &text), Ok(cursor));
        }
    }

    #[test]
    fn another_list_or_user_is_refused() {
        let text = codec().encode(conversations(), sample());
        let other_user = Listing::Conversations {
            user_id: Uuid::from_u128(2),
        };
        assert_eq!(codec().decode(other_user, &text), Err(CursorError::Foreign));
        let messages = Listing::Messages {
            conversation_id: Uuid::from_u128(1),
        };
        assert_eq!(codec().decode(messages, &text), Err(CursorError::Foreign));
    }

    #[test]
    fn another_secret_is_refused() {
        let text = CursorCodec::new(b"other").encode(conversations(), sample());
        assert_eq!(
            codec().decode(conversations(), &text),
            Err(CursorError::Foreign)
        );
    }

    #[test]
    fn every_altered_byte_is_detected() {
        let text = codec().encode(conversations(), sample());
        let raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        for i in 0..raw.len() {
            let mut altered = raw.clone();
            altered[i] ^= 0x01;
            let altered = URL_SAFE_NO_PAD.encode(&altered);
            assert!(
                codec().decode(conversations(), &altered).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let long = "A".repeat(ENCODED_LEN + 1);
        let wrong_alphabet = "!".repeat(ENCODED_LEN);
        // The Python reference's cursor: base64url of "<iso time>|<uuid>".
        let python = URL_SAFE_NO_PAD
            .encode("2026-11-26T14:00:00+00:00|6f1c2f0e-8a4b-4c1d-9e2f-3a4b5c6d7e8f");
        for text in [
            "",
            "!!!",
            "abc",
            long.as_str(),
            wrong_alphabet.as_str(),
            python.as_str(),
        ] {
            assert!(codec().decode(conversations(), text).is_err(), "{text:?}");
        }
        let mut other_version = URL_SAFE_NO_PAD
            .decode(codec().encode(conversations(), sample()))
            .unwrap();
        other_version[0] = 2;
        assert_eq!(
            codec().decode(conversations(), &URL_SAFE_NO_PAD.encode(other_version)),
            Err(CursorError::Malformed)
        );
    }

    #[test]
    fn cursor_errors_are_422() {
        use axum::response::IntoResponse;
        let response = ApiError::from(CursorError::Foreign).into_response();
        assert_eq!(response.status(), 422);
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", codec()).contains("cursor-test-secret"));
    }
}
