//! API keys: long random secrets for machine callers, stored only as hashes.
//!
//! A new key is `dave_` followed by 40 random alphanumeric characters (about
//! 238 bits from the OS generator): the prefix makes a leaked key
//! recognizable to secret scanners and to a human reading a config file, and
//! alphanumerics survive copy-paste and shell quoting. The database keeps only
//! the lowercase hex SHA-256 of the key exactly as the client sends it in
//! `X-API-Key` (`api_keys.key_hash`), the Python reference's scheme: keys made
//! by either service work in both, and keys without the prefix (made by hand
//! or by the reference) are accepted too. A fast unsalted hash is right here
//! because the keys are random and long, not guessable passwords, and the
//! lookup runs on every request.

use std::fmt;

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

/// Starts every key this service generates.
pub const KEY_PREFIX: &str = "dave_";

/// Random characters after the prefix.
const RANDOM_LEN: usize = 40;

/// No real key is longer; anything longer is refused without hashing it.
pub const MAX_KEY_LEN: usize = 256;

/// Why an `X-API-Key` value was refused before any lookup (a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    #[error("X-API-Key is empty")]
    Empty,
    #[error("X-API-Key is longer than {MAX_KEY_LEN} characters; no key is that long")]
    TooLong,
}

/// A key just generated: shown to its owner once, then only its hash is kept.
#[derive(Clone)]
pub struct NewApiKey {
    key: String,
    hash: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &"<redacted>")
            .field("hash", &self.hash)
            .finish()
    }
}

impl NewApiKey {
    /// A fresh random key and its hash.
    pub fn generate() -> Self {
        let mut key = String::with_capacity(KEY_PREFIX.len() + RANDOM_LEN);
        key.push_str(KEY_PREFIX);
        Alphanumeric.append_string(&mut rand::rngs::OsRng, &mut key, RANDOM_LEN);
        let hash = hash_hex(&key);
        Self { key, hash }
    }

    /// The key itself, to print once for its owner.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What goes into `api_keys.key_hash`.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// The `api_keys.key_hash` to look up for a presented `X-API-Key` value.
pub fn key_hash(presented: &str) -> Result<String, ApiKeyError> {
    if presented.is_empty() {
        return Err(ApiKeyError::Empty);
    }
    if presented.len() > MAX_KEY_LEN {
        return Err(ApiKeyError::TooLong);
    }
    Ok(hash_hex(presented))
}

fn hash_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_prefix_and_are_distinct() {
        let a = NewApiKey::generate();
        let b = NewApiKey::generate();
        assert!(a.key().starts_with("dave_"));
        assert_eq!(a.key().len(), 45);
        assert!(a.key()[5..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.key(), b.key());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn hash_is_what_a_lookup_computes() {
        let key = NewApiKey::generate();
        assert_eq!(key_hash(key.key()).unwrap(), key.hash());
        assert_eq!(key.hash().len(), 64);
        assert!(key
            .hash()
            .chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    }

    #[test]
    fn hash_matches_the_python_reference_and_postgres() {
        // hashlib.sha256(b"abc").hexdigest() (the FIPS 180-2 test vector).
        assert_eq!(
            key_hash("abc").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // encode(sha256(convert_to(key, 'UTF8')), 'hex'), as the test fixture
        // migrations/data/001_test_fixtures.sql stores its admin key.
        assert_eq!(
            key_hash("dave_test_admin_key_0000000000000000000000").unwrap(),
            "6902f37c19fae45a7660fbf947196a31bb0907dfe223288c91ca83768b4c9d82"
        );
    }

    #[test]
    fn empty_and_oversized_keys_are_refused() {
        assert_eq!(key_hash(""), Err(ApiKeyError::Empty));
        assert_eq!(key_hash(&"k".repeat(MAX_KEY_LEN)).map(|h| h.len()), Ok(64));
        assert_eq!(
            key_hash(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(ApiKeyError::TooLong)
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let key = NewApiKey::generate();
        assert!(!format!("{key:?}").contains(key.key()));
    }
}
