//! Payload encryption (XChaCha20-Poly1305) and key wrapping.
//!
//! The **master key** (from config) seals generation keys and rewrap tables; memory keys
//! are derived from generation keys (see `keystore`). Every ciphertext is bound to its
//! context (user, memory) through the AEAD's associated data.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// A 32-byte symmetric key, wiped from memory on drop, never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// A fresh random key from the OS.
    pub fn random() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        Self(k)
    }

    /// Wraps raw bytes.
    pub fn from_bytes(mut b: [u8; 32]) -> Self {
        let k = Self(Zeroizing::new(b));
        b.zeroize();
        k
    }

    /// Parses 64 hex characters (e.g. the master key from config).
    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| CryptoError::BadKey)?;
        Ok(Self::from_bytes(b))
    }

    /// The raw bytes, for key derivation inside this crate.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// Encrypts: `nonce (24) || ciphertext || tag (16)`, in one buffer. The nonce is
    /// random (192 bits, from the thread's CSPRNG, itself seeded by the OS).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + plaintext.len() + 16);
        out.resize(24, 0);
        rand::thread_rng().fill_bytes(&mut out);
        out.extend_from_slice(plaintext);
        let (nonce, body) = out.split_at_mut(24);
        let tag = self
            .cipher()
            .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, body)
            .expect("XChaCha20-Poly1305 encryption can not fail for in-memory buffers");
        out.extend_from_slice(&tag);
        out
    }

    /// Decrypts what [`seal`](Self::seal) made with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < 24 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = sealed.split_at(24);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// Wraps another key under this one.
    pub fn wrap(&self, aad: &[u8], key: &SecretKey) -> Vec<u8> {
        self.seal(aad, key.0.as_ref())
    }

    /// Unwraps a key wrapped by [`wrap`](Self::wrap).
    pub fn unwrap_key(&self, aad: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        let p = self.open(aad, wrapped)?;
        let b: [u8; 32] = p.as_slice().try_into().map_err(|_| CryptoError::Decrypt)?;
        Ok(SecretKey::from_bytes(b))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Encryption failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key was not 64 hex characters.
    #[error("a key must be 64 hex characters")]
    BadKey,
    /// Authentication failed: wrong key, wrong context, or tampered ciphertext.
    #[error("decryption failed")]
    Decrypt,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_context_binding() {
        let k = SecretKey::random();
        let s = k.seal(b"ctx", b"secret");
        assert_eq!(k.open(b"ctx", &s).unwrap().as_slice(), b"secret");
        assert_eq!(k.open(b"other", &s), Err(CryptoError::Decrypt));
        assert_eq!(
            SecretKey::random().open(b"ctx", &s),
            Err(CryptoError::Decrypt)
        );
        let mut t = s.clone();
        t[30] ^= 1;
        assert_eq!(k.open(b"ctx", &t), Err(CryptoError::Decrypt));
        let dek = SecretKey::random();
        let w = k.wrap(b"w", &dek);
        assert_eq!(k.unwrap_key(b"w", &w).unwrap().0.as_ref(), dek.0.as_ref());
        assert_eq!(format!("{k:?}"), "SecretKey(<redacted>)");
    }
}
