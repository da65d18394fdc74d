//! Keys and signatures: ed25519 public keys and signatures with hex serde, key ids, signing
//! helpers, and the key history that keeps a chain verifiable across rotation.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;

use crate::event::EventBody;
use crate::hash::{self, SIG_EVENT, SIG_ORIGIN};
use crate::ids::{Hash32, KeyId, Seq, UserId};

/// An ed25519 public key (32 bytes, hex in JSON).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl PublicKey {
    /// Parses 32 bytes; fails on a non-canonical or invalid point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(bytes).ok().map(Self)
    }
    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// The key's id.
    pub fn id(&self) -> KeyId {
        hash::key_id(self.0.as_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0.as_bytes()))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.as_ref(), &mut b)
            .map_err(|_| serde::de::Error::custom("public key must be 64 hex characters"))?;
        Self::from_bytes(&b).ok_or_else(|| serde::de::Error::custom("invalid ed25519 public key"))
    }
}

/// An ed25519 signature (64 bytes, hex in JSON).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub ed25519_dalek::Signature);

impl Sig {
    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }
    /// Wraps 64 bytes (any bytes: validity is checked when verifying).
    pub fn from_bytes(b: &[u8; 64]) -> Self {
        Self(ed25519_dalek::Signature::from_bytes(b))
    }
}

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({})", hex::encode(self.to_bytes()))
    }
}

impl Serialize for Sig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut b = [0u8; 64];
        hex::decode_to_slice(s.as_ref(), &mut b)
            .map_err(|_| serde::de::Error::custom("signature must be 128 hex characters"))?;
        Ok(Self::from_bytes(&b))
    }
}

/// What a key may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Signs events into the chain (the ledger's key).
    Custody,
    /// Signs the origin of payloads it captured (a user's device).
    Device,
}

impl KeyRole {
    pub(crate) fn tag(self) -> u8 {
        match self {
            Self::Custody => 1,
            Self::Device => 2,
        }
    }
    pub(crate) fn from_tag(t: u8) -> Option<Self> {
        match t {
            1 => Some(Self::Custody),
            2 => Some(Self::Device),
            _ => None,
        }
    }
}

/// The message a custody signature signs: `SIG_EVENT || event hash` (64 bytes).
pub fn event_signing_message(event_hash: &Hash32) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[..32].copy_from_slice(SIG_EVENT);
    m[32..].copy_from_slice(&event_hash.0);
    m
}

/// The message a device's origin signature signs:
/// `SIG_ORIGIN || u32 len(user) || user || payload commitment`.
pub fn origin_signing_message(user: &UserId, commitment: &Hash32) -> Vec<u8> {
    let u = user.as_str().as_bytes();
    let mut m = Vec::with_capacity(32 + 4 + u.len() + 32);
    m.extend_from_slice(SIG_ORIGIN);
    m.extend_from_slice(&(u.len() as u32).to_be_bytes());
    m.extend_from_slice(u);
    m.extend_from_slice(&commitment.0);
    m
}

/// Signs an event hash with a custody key.
pub fn sign_event_hash(key: &SigningKey, event_hash: &Hash32) -> Sig {
    Sig(key.sign(&event_signing_message(event_hash)))
}

/// Signs a payload commitment as its capturing device.
pub fn sign_origin(key: &SigningKey, user: &UserId, commitment: &Hash32) -> Sig {
    Sig(key.sign(&origin_signing_message(user, commitment)))
}

/// Verifies one custody signature. Uses the same (RFC 8032, cofactorless) check as
/// [`verify_batch`] so that batched and single verification agree; weak keys are refused
/// when a key is added to a chain.
pub fn verify_event_signature(key: &PublicKey, event_hash: &Hash32, sig: &Sig) -> bool {
    key.0
        .verify(&event_signing_message(event_hash), &sig.0)
        .is_ok()
}

/// Verifies one origin signature.
pub fn verify_origin_signature(
    key: &PublicKey,
    user: &UserId,
    commitment: &Hash32,
    sig: &Sig,
) -> bool {
    key.0
        .verify(&origin_signing_message(user, commitment), &sig.0)
        .is_ok()
}

/// Verifies many `(message, signature, key)` triples at once; `true` only if all verify.
/// The nonces are derived from the inputs (ed25519-dalek's deterministic batch), so this
/// needs no randomness.
pub fn verify_batch(
    messages: &[&[u8]],
    sigs: &[ed25519_dalek::Signature],
    keys: &[VerifyingKey],
) -> bool {
    ed25519_dalek::verify_batch(messages, sigs, keys).is_ok()
}

/// Why a key event is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRuleError {
    /// A small-order ("weak") public key.
    Weak,
    /// The key is already in the chain.
    Duplicate,
    /// A rotation must be signed by the key it retires.
    RotationNotByOld,
    /// The revoked key was never added.
    Unknown(KeyId),
    /// The revoked key is already retired.
    AlreadyRetired,
}

impl KeyRuleError {
    /// The reason, as reported in chain errors.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Weak => "weak key",
            Self::Duplicate => "key already in chain",
            Self::RotationNotByOld => "rotation must be signed by the retiring key",
            Self::Unknown(_) => "unknown key",
            Self::AlreadyRetired => "key already retired",
        }
    }
}

/// One key's life in a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The public key.
    pub key: PublicKey,
    /// What it may sign.
    pub role: KeyRole,
    /// The event that added it.
    pub added: Seq,
    /// The event that retired it (rotation or revocation); it signs nothing after.
    pub retired: Option<Seq>,
}

/// Every key a chain has added, with when it was retired. Built by replaying the key
/// events; the verifier asks it which key may sign at a given point.
#[derive(Clone, Debug, Default)]
pub struct KeyHistory {
    keys: HashMap<KeyId, KeyRecord>,
}

impl KeyHistory {
    /// Looks a key up.
    pub fn get(&self, id: &KeyId) -> Option<&KeyRecord> {
        self.keys.get(id)
    }
    /// All keys, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&KeyId, &KeyRecord)> {
        self.keys.iter()
    }
    /// Adds a key record (e.g. one loaded from a view); `false` if the id is taken.
    pub fn insert(&mut self, rec: KeyRecord) -> bool {
        let id = rec.key.id();
        if self.keys.contains_key(&id) {
            return false;
        }
        self.keys.insert(id, rec);
        true
    }

    fn retire(&mut self, id: &KeyId, at: Seq) {
        if let Some(r) = self.keys.get_mut(id) {
            r.retired = Some(at);
        }
    }

    /// Applies a key event (`key_added`, `key_rotated`, `key_revoked`) signed by `signer` at
    /// `seq`, after checking the rules of docs/FORMAT.md section 8. Other kinds change
    /// nothing.
    pub fn apply(&mut self, seq: Seq, signer: KeyId, body: &EventBody) -> Result<(), KeyRuleError> {
        match body {
            EventBody::KeyAdded { key, role } => {
                if key.0.is_weak() {
                    return Err(KeyRuleError::Weak);
                }
                let rec = KeyRecord {
                    key: *key,
                    role: *role,
                    added: seq,
                    retired: None,
                };
                if !self.insert(rec) {
                    return Err(KeyRuleError::Duplicate);
                }
            }
            EventBody::KeyRotated { old, new } => {
                if *old != signer {
                    return Err(KeyRuleError::RotationNotByOld);
                }
                if new.0.is_weak() {
                    return Err(KeyRuleError::Weak);
                }
                let rec = KeyRecord {
                    key: *new,
                    role: KeyRole::Custody,
                    added: seq,
                    retired: None,
                };
                if !self.insert(rec) {
                    return Err(KeyRuleError::Duplicate);
                }
                self.retire(old, seq);
            }
            EventBody::KeyRevoked { key } => match self.keys.get(key) {
                Some(r) if r.retired.is_none() => self.retire(key, seq),
                Some(_) => return Err(KeyRuleError::AlreadyRetired),
                None => return Err(KeyRuleError::Unknown(*key)),
            },
            _ => {}
        }
        Ok(())
    }
    /// Number of keys that have ever been added.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// Whether no key was added yet.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
