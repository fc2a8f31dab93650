//! Keys derived from one configured secret: each use (pagination cursors,
//! consistency tokens) signs with its own key, so a signature made for one
//! can never be mistaken for another's.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 keyed with `HMAC(secret, label)`: one secret serves
/// several signatures (cursors, consistency tokens) that can never be
/// mistaken for one another.
pub(crate) fn derived_mac(secret: &[u8], label: &[u8]) -> Hmac<Sha256> {
    let derived = HmacSha256::new_from_slice(secret)
        .expect("HMAC accepts any key length")
        .chain_update(label)
        .finalize()
        .into_bytes();
    HmacSha256::new_from_slice(&derived).expect("HMAC accepts any key length")
}
