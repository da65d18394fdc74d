//! blake3 hashing with explicit domain separation.
//!
//! Every hash mnemo computes uses blake3's key-derivation mode with its own context string
//! (blake3 spec §2.4: "derive_key" contexts should be hardcoded, globally unique and
//! application-specific). Two values of different purpose can therefore never collide even
//! if their input bytes are equal: an event can not pass for a Merkle node, a Merkle leaf
//! can not pass for an inner node (the RFC 9162 §2.1.1 0x00/0x01 prefix, done by context).

use crate::ids::{Hash32, KeyId};

/// Context of event hashes, over the canonical event bytes (docs/FORMAT.md §3).
pub const CTX_EVENT: &str = "mnemo 2026-11-26 event hash v1";
/// Context of payload commitments, over `salt || payload`.
pub const CTX_PAYLOAD: &str = "mnemo 2026-11-26 payload commitment v1";
/// Context of key ids, over the 32-byte ed25519 public key.
pub const CTX_KEY_ID: &str = "mnemo 2026-11-26 key id v1";
/// Context of leaves in a user's chain tree (leaf data: an event hash).
pub const CTX_CHAIN_LEAF: &str = "mnemo 2026-11-26 chain tree leaf v1";
/// Context of inner nodes in a user's chain tree.
pub const CTX_CHAIN_NODE: &str = "mnemo 2026-11-26 chain tree node v1";
/// Context of leaves in an epoch tree (leaf data: canonical checkpoint bytes).
pub const CTX_EPOCH_LEAF: &str = "mnemo 2026-11-26 epoch tree leaf v1";
/// Context of inner nodes in an epoch tree.
pub const CTX_EPOCH_NODE: &str = "mnemo 2026-11-26 epoch tree node v1";
/// Context of large-object content hashes, over the plaintext content.
pub const CTX_OBJECT: &str = "mnemo 2026-11-26 object content v1";
/// Context of the root of an empty tree (either kind), over no input.
pub const CTX_EMPTY_TREE: &str = "mnemo 2026-11-26 empty tree v1";
/// Context of leaves in a model's training-set tree (leaf data: `u64 seq || event hash`).
pub const CTX_TRAINING_LEAF: &str = "mnemo 2026-12-01 training set leaf v1";
/// Context of inner nodes in a model's training-set tree.
pub const CTX_TRAINING_NODE: &str = "mnemo 2026-12-01 training set node v1";
/// Context of derivation keys (what makes a result idempotent: processor, version, inputs).
pub const CTX_DERIVATION: &str = "mnemo 2026-12-01 derivation key v1";
/// Context of seal tree leaves (format version 2; leaf data: a 32-byte event hash).
pub const CTX_SEAL_LEAF: &str = "mnemo 2026-12-01 seal tree leaf v2";
/// Context of seal tree inner nodes.
pub const CTX_SEAL_NODE: &str = "mnemo 2026-12-01 seal tree node v2";

/// Prefix of the message an event signature signs: `SIG_EVENT || event hash`.
pub const SIG_EVENT: &[u8; 32] = b"mnemo event signature v1\0\0\0\0\0\0\0\0";
/// Prefix of the message a device's origin signature signs.
pub const SIG_ORIGIN: &[u8; 32] = b"mnemo origin signature v1\0\0\0\0\0\0\0";
/// Prefix of the message a device signs for a capture (a `memory_ingested` with a capture
/// id): `SIG_CAPTURE || u32 len(user) || user || u32 len(stream) || stream || u64 counter
/// || payload commitment`.
pub const SIG_CAPTURE: &[u8; 32] = b"mnemo capture signature v1\0\0\0\0\0\0";
/// Prefix of the message a processor signs for a derived memory.
pub const SIG_DERIVED: &[u8; 32] = b"mnemo derived signature v1\0\0\0\0\0\0";
/// Prefix of the message a processor signs for a trained model.
pub const SIG_MODEL: &[u8; 32] = b"mnemo model signature v1\0\0\0\0\0\0\0\0";
/// Prefix of the message a seal signs (format version 2): `SIG_SEAL || u64 size || root`.
pub const SIG_SEAL: &[u8; 32] = b"mnemo seal signature v2\0\0\0\0\0\0\0\0\0";

const CONTEXTS: [&str; 14] = [
    CTX_EVENT,
    CTX_PAYLOAD,
    CTX_KEY_ID,
    CTX_CHAIN_LEAF,
    CTX_CHAIN_NODE,
    CTX_EPOCH_LEAF,
    CTX_EPOCH_NODE,
    CTX_OBJECT,
    CTX_EMPTY_TREE,
    CTX_TRAINING_LEAF,
    CTX_TRAINING_NODE,
    CTX_DERIVATION,
    CTX_SEAL_LEAF,
    CTX_SEAL_NODE,
];

/// A hasher in key-derivation mode for `context`. The context keys of mnemo's contexts are
/// derived once: deriving one costs a compression, as much as hashing a short input.
pub(crate) fn derive_key_hasher(context: &str) -> blake3::Hasher {
    use blake3::hazmat::{HasherExt, hash_derive_key_context};
    static KEYS: std::sync::OnceLock<[[u8; 32]; 14]> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| CONTEXTS.map(hash_derive_key_context));
    match CONTEXTS.iter().position(|c| *c == context) {
        Some(i) => blake3::Hasher::new_from_context_key(&keys[i]),
        None => blake3::Hasher::new_derive_key(context),
    }
}

/// blake3 in key-derivation mode with `context`, over the concatenation of `parts`.
pub fn hash_parts(context: &str, parts: &[&[u8]]) -> Hash32 {
    let mut h = derive_key_hasher(context);
    for p in parts {
        h.update(p);
    }
    Hash32(*h.finalize().as_bytes())
}

/// The hash of canonical event bytes.
pub fn event_hash(canonical: &[u8]) -> Hash32 {
    hash_parts(CTX_EVENT, &[canonical])
}

/// The key id of an ed25519 public key.
pub fn key_id(public_key: &[u8; 32]) -> KeyId {
    KeyId(hash_parts(CTX_KEY_ID, &[public_key]).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_separate_equal_inputs() {
        let all = CONTEXTS;
        for c in all {
            // the cached context keys give blake3's own derive_key output
            assert_eq!(
                hash_parts(c, &[b"in", b"put"]).0,
                blake3::derive_key(c, b"input")
            );
        }
        let outs: std::collections::HashSet<_> =
            all.iter().map(|c| hash_parts(c, &[b"same"])).collect();
        assert_eq!(outs.len(), all.len());
    }
}
