//! Keyed pseudonyms: `person_id` = the first 8 bytes of HMAC-SHA256(key, normalised NHS
//! number), read as a big-endian signed 64-bit integer.
//!
//! Why 64 bits: `person_id` is joined and grouped on in every query, and a 64-bit integer
//! is far cheaper to hash, compare and store than a 32-byte string. The price is a chance of
//! two people sharing a pseudonym. With n people and 2^64 values, the birthday bound gives
//! P(any collision) ≤ n(n-1)/2^65: for a region of 3 million people ≤ 2.4e-7, for all of
//! England's 60 million ≤ 9.8e-5. Within a region a collision is therefore not expected
//! in the life of the service; a national deployment should widen the column.
//!
//! The key never leaves this type: it is not `Debug`, not logged and never written.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

use crate::{LoaderError, NhsNumber};

/// Environment variable holding the pseudonymisation key.
pub const KEY_ENV: &str = "POPLAR_PSEUDONYM_KEY";
/// Shortest key accepted, in bytes: HMAC-SHA256 gains nothing beyond 32 and is weak below.
pub const MIN_KEY_BYTES: usize = 32;

/// Holds the secret key and turns NHS numbers into `person_id`s.
#[derive(Clone)]
pub struct Pseudonymiser {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser(<key redacted>)")
    }
}

impl Pseudonymiser {
    pub fn new(key: &[u8]) -> Result<Self, LoaderError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(LoaderError::WeakKey {
                min_bytes: MIN_KEY_BYTES,
            });
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| LoaderError::WeakKey {
            min_bytes: MIN_KEY_BYTES,
        })?;
        Ok(Self { mac })
    }

    /// The key from `--key-file` when given, else from `POPLAR_PSEUDONYM_KEY`; refuses to
    /// go on without one. Surrounding whitespace (a trailing newline in a file) is ignored.
    pub fn from_file_or_env(key_file: Option<&Path>) -> Result<Self, LoaderError> {
        let key = match key_file {
            Some(path) => std::fs::read(path).map_err(|source| LoaderError::KeyFile {
                path: path.display().to_string(),
                source,
            })?,
            None => std::env::var(KEY_ENV)
                .map_err(|_| LoaderError::MissingKey)?
                .into_bytes(),
        };
        Self::new(key.trim_ascii())
    }

    pub fn person_id(&self, nhs_number: &NhsNumber) -> i64 {
        let mut mac = self.mac.clone();
        mac.update(&nhs_number.digits());
        let out = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        i64::from_be_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn same_number_same_pseudonym_whatever_the_spelling() {
        let p = Pseudonymiser::new(KEY).expect("key");
        let a = NhsNumber::parse("9434765919").expect("valid");
        let b = NhsNumber::parse("943 476 5919").expect("valid");
        assert_eq!(p.person_id(&a), p.person_id(&b));
    }

    #[test]
    fn pseudonym_changes_with_the_key() {
        let a = NhsNumber::parse("9434765919").expect("valid");
        let p1 = Pseudonymiser::new(KEY).expect("key");
        let p2 = Pseudonymiser::new(b"another key of at least 32 bytes!!").expect("key");
        assert_ne!(p1.person_id(&a), p2.person_id(&a));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(matches!(Pseudonymiser::new(b"short"), Err(LoaderError::WeakKey { .. })));
    }

    #[test]
    fn debug_hides_the_key() {
        let p = Pseudonymiser::new(KEY).expect("key");
        assert!(!format!("{p:?}").contains("0123"));
    }
}
