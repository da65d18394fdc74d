//! Payload commitments (docs/FORMAT.md §6).
//!
//! A memory's payload is committed to by `H_payload(salt || payload)` with a fresh random
//! 32-byte salt that is stored only inside the encrypted payload. The bare plaintext hash is
//! never published: a short memory ("yes", a phone number) could be guessed from it. Once
//! the payload key is destroyed the salt is gone too, so the commitment reveals nothing,
//! while the chain, which only holds the commitment, still verifies.

use crate::hash::{self, CTX_PAYLOAD};
use crate::ids::Hash32;

/// Length of a commitment salt.
pub const SALT_LEN: usize = 32;

/// The commitment to `payload` under `salt`.
pub fn commit(salt: &[u8; SALT_LEN], payload: &[u8]) -> Hash32 {
    hash::hash_parts(CTX_PAYLOAD, &[salt, payload])
}

/// Whether `commitment` opens to `payload` with `salt`.
pub fn opens(commitment: &Hash32, salt: &[u8; SALT_LEN], payload: &[u8]) -> bool {
    commit(salt, payload) == *commitment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_hides_equal_payloads() {
        let a = commit(&[1; 32], b"yes");
        let b = commit(&[2; 32], b"yes");
        assert_ne!(a, b);
        assert!(opens(&a, &[1; 32], b"yes"));
        assert!(!opens(&a, &[1; 32], b"no"));
        assert_ne!(a.0, *blake3::hash(b"yes").as_bytes());
    }
}
