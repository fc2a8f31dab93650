//! Read-your-writes across instances, with no shared state: the
//! consistency token.
//!
//! With a read replica configured (`DB_READ_DSN`), every successful write
//! response carries `X-Consistency-Token`: the primary's WAL position once
//! the write had committed, signed. A client echoes the last one it got on
//! its reads; any instance can then tell, from the replica's replayed
//! position alone, whether the replica has that write. A caller-scoped read
//! (conversations, messages) with a token the replica has replayed is served
//! there; with no token, or one ahead of the replica, by the primary: a
//! caller never misses its own write, and no read waits. Shared reads
//! (knowledge search, admin prompt reads) go to the replica whenever its lag
//! is within `DB_REPLICA_MAX_LAG`, unless a token says it is behind.
//!
//! The token is `<position, 16 hex digits>.<tag>`, the tag HMAC-SHA256 over
//! the position (truncated to 128 bits, base64url), keyed from the cursor
//! secret with a label of its own. The position is not secret; the tag makes
//! a forged or edited token a clear 422 rather than a silent primary read.
//! Anonymous sessions get the same header: their token format stays the
//! Python reference's, byte for byte (DESIGN §3), so it cannot carry the
//! position too; a client that never echoes the header is still correct,
//! its reads are just served by the primary.

use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};

use axum::extract::{FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::{BoxFuture, Either};
use hmac::{Hmac, Mac};
use pgkit::pool::Database;
use pgkit::replica::{Lsn, ReadAfter};
use sha2::Sha256;
use tower::{Layer, Service};

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// The header writes answer with and reads send back.
pub static HEADER: HeaderName = HeaderName::from_static("x-consistency-token");

const TAG_LEN: usize = 16;
/// 16 hex digits, a dot, 22 base64url characters.
const TOKEN_LEN: usize = 16 + 1 + 22;
/// Separates this key from the cursor key made from the same secret.
const KEY_LABEL: &[u8] = b"dave consistency token v1";

/// Why a token was refused: a 422 naming the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("X-Consistency-Token is not one this service issued; send the token of your last write's response, or none")]
pub struct TokenError;

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        ApiError::Validation(error.to_string())
    }
}

/// Signs and checks consistency tokens with one derived key.
#[derive(Clone)]
pub struct ConsistencyCodec {
    mac: HmacSha256,
}

impl fmt::Debug for ConsistencyCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsistencyCodec { key: <redacted> }")
    }
}

impl ConsistencyCodec {
    /// A codec keyed from the configured cursor secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: crate::keys::derived_mac(secret, KEY_LABEL),
        }
    }

    pub fn encode(&self, position: Lsn) -> String {
        let digits = format!("{:016X}", position.0);
        format!("{digits}.{}", URL_SAFE_NO_PAD.encode(self.tag(&digits)))
    }

    pub fn decode(&self, text: &str) -> Result<Lsn, TokenError> {
        if text.len() != TOKEN_LEN {
            return Err(TokenError);
        }
        let (digits, tag) = text.split_once('.').ok_or(TokenError)?;
        let mut got = [0u8; TAG_LEN];
        match URL_SAFE_NO_PAD.decode_slice(tag, &mut got) {
            Ok(TAG_LEN) => {}
            _ => return Err(TokenError),
        }
        let mut mac = self.mac.clone();
        mac.update(digits.as_bytes());
        mac.verify_truncated_left(&got).map_err(|_| TokenError)?;
        u64::from_str_radix(digits, 16)
            .map(Lsn)
            .map_err(|_| TokenError)
    }

    fn tag(&self, digits: &str) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(digits.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// The position the caller says its reads must see (`X-Consistency-Token`).
#[derive(Debug, Clone, Copy)]
pub struct LastWrite(pub Option<Lsn>);

impl LastWrite {
    /// For the caller's own data: without a token, the primary.
    pub fn own_data(self) -> ReadAfter {
        self.0.map_or(ReadAfter::Unknown, ReadAfter::Position)
    }

    /// For data every caller sees alike: without a token, any fresh replica.
    pub fn shared_data(self) -> ReadAfter {
        self.0.map_or(ReadAfter::Nothing, ReadAfter::Position)
    }
}

impl<S> FromRequestParts<S> for LastWrite
where
    S: Send + Sync,
    ConsistencyCodec: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(&HEADER) else {
            return Ok(LastWrite(None));
        };
        let text = value.to_str().map_err(|_| TokenError)?;
        Ok(LastWrite(Some(
            ConsistencyCodec::from_ref(state).decode(text)?,
        )))
    }
}

/// Stamps each successful write's response with its token, when a replica
/// is configured (without one every read is on the primary: no token is
/// needed, and no round trip is spent on it). The position is asked after
/// the handler answered, so after its commit. If the primary cannot say,
/// the response goes without a token: the client's next reads then go to
/// the primary, which is always right. A request that cannot need a token
/// gets the inner service's own future, unwrapped.
#[derive(Clone)]
pub struct StampWritesLayer {
    db: Database,
    codec: ConsistencyCodec,
}

impl StampWritesLayer {
    pub fn new(db: Database, codec: ConsistencyCodec) -> StampWritesLayer {
        StampWritesLayer { db, codec }
    }
}

impl<S> Layer<S> for StampWritesLayer {
    type Service = StampWrites<S>;

    fn layer(&self, inner: S) -> StampWrites<S> {
        StampWrites {
            stamp: self.clone(),
            inner,
        }
    }
}

/// The service [`StampWritesLayer`] wraps around the routes.
#[derive(Clone)]
pub struct StampWrites<S> {
    stamp: StampWritesLayer,
    inner: S,
}

impl<S> Service<Request> for StampWrites<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let writes = !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        let answer = self.inner.call(request);
        if !writes || !self.stamp.db.has_replica() {
            return Either::Left(answer);
        }
        let StampWritesLayer { db, codec } = self.stamp.clone();
        Either::Right(Box::pin(async move {
            let mut response = answer.await?;
            if !response.status().is_success() {
                return Ok(response);
            }
            if let Ok(position) = db.write_position().await {
                if let Ok(value) = HeaderValue::from_str(&codec.encode(position)) {
                    response.headers_mut().insert(HEADER.clone(), value);
                }
            }
            Ok(response)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> ConsistencyCodec {
        ConsistencyCodec::new(b"a test secret that is long enough")
    }

    #[test]
    fn a_token_round_trips() {
        for position in [0, 1, 0x16_B374_D848, u64::MAX] {
            let token = codec().encode(Lsn(position));
            assert_eq!(token.len(), TOKEN_LEN);
            assert_eq!(codec().decode(&token), Ok(Lsn(position)));
        }
    }

    #[test]
    fn an_edited_or_foreign_token_is_refused() {
        let token = codec().encode(Lsn(0x1000));
        let raised = token.replacen("0000000000001000", "0000000000002000", 1);
        assert_eq!(codec().decode(&raised), Err(TokenError));
        let other = ConsistencyCodec::new(b"another secret, also long enough!");
        assert_eq!(other.decode(&token), Err(TokenError));
        for junk in [
            "",
            "x",
            &token[..TOKEN_LEN - 1],
            "0000000000001000",
            &"a".repeat(TOKEN_LEN),
        ] {
            assert_eq!(codec().decode(junk), Err(TokenError), "{junk:?}");
        }
    }

    #[test]
    fn own_data_without_a_token_goes_to_the_primary() {
        assert_eq!(LastWrite(None).own_data(), ReadAfter::Unknown);
        assert_eq!(LastWrite(None).shared_data(), ReadAfter::Nothing);
        assert_eq!(
            LastWrite(Some(Lsn(7))).own_data(),
            ReadAfter::Position(Lsn(7))
        );
    }
}
