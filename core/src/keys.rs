//! Keys and signatures: ed25519 public keys and signatures with hex serde, key ids, signing
//! helpers, and the key history that keeps a chain verifiable across rotation.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::SeedableRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;

use crate::event::EventBody;
use crate::hash::{self, SIG_CAPTURE, SIG_EVENT, SIG_ORIGIN};
use crate::ids::{Hash32, KeyId, Seq, UserId};

/// An ed25519 public key (32 bytes, hex in JSON).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl PublicKey {
    /// Parses 32 bytes that encode a curve point (non-canonical encodings included, as
    /// ZIP-215 reads them: whether a chain may add the key is [`PublicKey::fit_for_chain`]).
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(bytes).ok().map(Self)
    }

    /// Whether a chain may add this key (FORMAT.md §1, §8): its encoding is canonical (so a
    /// key has one id), and the point is of prime order (neither small-order nor mixed with
    /// a torsion component, which no honest key generator produces).
    pub fn fit_for_chain(&self) -> Result<(), KeyRuleError> {
        let bytes = self.0.to_bytes();
        let point = curve25519_dalek::edwards::CompressedEdwardsY(bytes)
            .decompress()
            .ok_or(KeyRuleError::NotAPoint)?;
        if point.compress().to_bytes() != bytes {
            return Err(KeyRuleError::NonCanonical);
        }
        if point.is_small_order() {
            return Err(KeyRuleError::Weak);
        }
        if !point.is_torsion_free() {
            return Err(KeyRuleError::MixedOrder);
        }
        Ok(())
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
        crate::ids::lower_hex(&s).map_err(serde::de::Error::custom)?;
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

/// What a device signs for a capture (docs/FORMAT.md §5.2): the capture id is bound to the
/// device key with the payload commitment, so it cannot be moved to other content.
pub fn capture_signing_message(
    user: &UserId,
    capture: &crate::event::Capture,
    commitment: &Hash32,
) -> Vec<u8> {
    let u = user.as_str().as_bytes();
    let st = capture.stream.as_bytes();
    let mut m = Vec::with_capacity(32 + 8 + u.len() + st.len() + 8 + 32);
    m.extend_from_slice(SIG_CAPTURE);
    m.extend_from_slice(&(u.len() as u32).to_be_bytes());
    m.extend_from_slice(u);
    m.extend_from_slice(&(st.len() as u32).to_be_bytes());
    m.extend_from_slice(st);
    m.extend_from_slice(&capture.counter.to_be_bytes());
    m.extend_from_slice(&commitment.0);
    m
}

/// The message an origin signature signs: [`capture_signing_message`] for a capture,
/// [`origin_signing_message`] otherwise.
pub fn origin_message_for(
    user: &UserId,
    capture: Option<&crate::event::Capture>,
    commitment: &Hash32,
) -> Vec<u8> {
    match capture {
        Some(c) => capture_signing_message(user, c, commitment),
        None => origin_signing_message(user, commitment),
    }
}

/// Signs a capture as its device (the signed form of the device protocol).
pub fn sign_capture(
    key: &SigningKey,
    user: &UserId,
    capture: &crate::event::Capture,
    commitment: &Hash32,
) -> Sig {
    Sig(key.sign(&capture_signing_message(user, capture, commitment)))
}

/// Signs an event hash with a custody key.
pub fn sign_event_hash(key: &SigningKey, event_hash: &Hash32) -> Sig {
    Sig(key.sign(&event_signing_message(event_hash)))
}

/// Signs a payload commitment as its capturing device.
pub fn sign_origin(key: &SigningKey, user: &UserId, commitment: &Hash32) -> Sig {
    Sig(key.sign(&origin_signing_message(user, commitment)))
}

/// The one signature rule (FORMAT.md §1): Ed25519 verified as ZIP-215 specifies, by
/// `ed25519-zebra`. `A` and `R` must decode to curve points, non-canonical encodings
/// included; `S` must be canonical (`S < L`); `k = SHA-512(R_bytes || A_bytes || M) mod L`
/// over the bytes as given; the cofactored equation `[8][S]B = [8]R + [8][k]A` must hold.
/// Single and batch verification ([`verify_batch`]) agree on every input.
pub fn verify_signature(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    ed25519_zebra::VerificationKey::try_from(*key)
        .and_then(|vk| vk.verify(&ed25519_zebra::Signature::from(*sig), msg))
        .is_ok()
}

/// Verifies one custody signature ([`verify_signature`]).
pub fn verify_event_signature(key: &PublicKey, event_hash: &Hash32, sig: &Sig) -> bool {
    verify_signature(
        key.0.as_bytes(),
        &event_signing_message(event_hash),
        &sig.0.to_bytes(),
    )
}

/// Verifies one origin signature ([`verify_signature`]) over the message its event calls
/// for ([`origin_message_for`]: the capture message for a capture, the plain origin message
/// otherwise; FORMAT.md §5.2), wherever it is checked: in a chain and in a proof.
pub fn verify_origin_signature(
    key: &PublicKey,
    user: &UserId,
    capture: Option<&crate::event::Capture>,
    commitment: &Hash32,
    sig: &Sig,
) -> bool {
    verify_signature(
        key.0.as_bytes(),
        &origin_message_for(user, capture, commitment),
        &sig.0.to_bytes(),
    )
}

/// Verifies many `(message, signature, key)` triples at once under the rule of
/// [`verify_signature`]; `true` only if every one verifies alone. ZIP-215's batch equation
/// is cofactored, so it accepts exactly what single verification accepts. The random
/// weights come from a ChaCha20 stream seeded with a BLAKE3 hash of every input, so the
/// batch is deterministic and needs no randomness from the system.
pub fn verify_batch(
    messages: &[&[u8]],
    sigs: &[ed25519_dalek::Signature],
    keys: &[VerifyingKey],
) -> bool {
    if messages.len() != sigs.len() || sigs.len() != keys.len() {
        return false;
    }
    let mut seed = blake3::Hasher::new_derive_key("mnemo 2026-12-01 batch verification seed v1");
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for ((m, s), k) in messages.iter().zip(sigs).zip(keys) {
        let (kb, sb) = (k.to_bytes(), s.to_bytes());
        seed.update(&kb);
        seed.update(&sb);
        seed.update(&(m.len() as u64).to_be_bytes());
        seed.update(m);
        batch.queue((
            ed25519_zebra::VerificationKeyBytes::from(kb),
            ed25519_zebra::Signature::from(sb),
            m,
        ));
    }
    let rng = rand_chacha::ChaCha20Rng::from_seed(*seed.finalize().as_bytes());
    batch.verify(rng).is_ok()
}

/// Why a key event is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRuleError {
    /// A small-order ("weak") public key.
    Weak,
    /// The 32 bytes do not encode a curve point.
    NotAPoint,
    /// A non-canonical encoding of a point (the same key would have two ids).
    NonCanonical,
    /// A point with a torsion component (mixed order).
    MixedOrder,
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
            Self::NotAPoint => "not a curve point",
            Self::NonCanonical => "non-canonical key encoding",
            Self::MixedOrder => "mixed-order key",
            Self::Duplicate => "key already in chain",
            Self::RotationNotByOld => "rotation must be signed by the retiring key",
            Self::Unknown(_) => "unknown key",
            Self::AlreadyRetired => "key already retired",
        }
    }
}

/// One key's life in a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
                key.fit_for_chain()?;
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
                new.fit_for_chain()?;
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
