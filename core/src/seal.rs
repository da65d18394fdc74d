//! Seals: one custody signature over a batch of events (format version 2,
//! docs/FORMAT.md §5.4).
//!
//! The ledger collects the hashes of the events waiting to be published, across users,
//! builds an RFC 9162 tree over them ([`SEAL_TREE`]) and signs its root once. An event's
//! custody proof is that signature with the event's inclusion path: its [`Seal`]. A seal is
//! carried in one of three forms ([`SealLink`]): a batch of one needs only the signature; a
//! full seal is self-contained (bundles, receipts); a stored link names a [`SealedBatch`]
//! kept once for the whole batch (storage, §11), so the bytes stored per event do not grow
//! with the batch.

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::encoding::{Reader, Writer};
use crate::error::DecodeError;
use crate::hash::{self, SIG_SEAL};
use crate::ids::{Hash32, KeyId};
use crate::keys::{self, Sig};
use crate::merkle::{MerkleTree, SEAL_TREE};

/// The largest batch a seal may cover (its path has at most 16 nodes).
pub const MAX_SEAL_SIZE: u32 = 1 << 16;

/// Version byte of a stored seal record (§11).
pub const SEAL_RECORD_VERSION: u8 = 0x02;

/// The message a seal's signature signs: `SIG_SEAL || u64 size || root` (72 bytes).
pub fn signing_message(size: u32, root: &Hash32) -> [u8; 72] {
    let mut m = [0u8; 72];
    m[..32].copy_from_slice(SIG_SEAL);
    m[32..40].copy_from_slice(&u64::from(size).to_be_bytes());
    m[40..].copy_from_slice(&root.0);
    m
}

/// An event's custody proof in format version 2: the batch's size and signed root, the
/// event's place in the batch, and the path from its leaf to the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// Number of events in the batch.
    pub size: u32,
    /// The event's leaf index in the batch, from 0.
    pub index: u32,
    /// Sibling hashes from the event's leaf up (RFC 9162 §2.1.3).
    pub path: Vec<Hash32>,
    /// The batch tree's root.
    pub root: Hash32,
    /// The custody key's signature over [`signing_message`]`(size, root)`.
    pub signature: Sig,
}

/// Which of a seal's checks failed (each has its own error code, docs/FORMAT.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealCheck {
    /// The index is not below the batch size (`seal_index`).
    Index,
    /// The path has the wrong number of nodes for the index and size (`seal_path`).
    Path,
    /// The path does not lead from the event's leaf to the seal's root (`seal_root`).
    Root,
    /// A stored seal the reader could not find (`seal_missing`).
    Missing,
}

impl SealCheck {
    /// The error code (docs/FORMAT.md §9).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Index => "seal_index",
            Self::Path => "seal_path",
            Self::Root => "seal_root",
            Self::Missing => "seal_missing",
        }
    }

    /// What failed, in words.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Index => "the seal's index is not inside its batch",
            Self::Path => "the seal's path has the wrong length for its index and batch size",
            Self::Root => "the seal's path does not lead from the event to the signed root",
            Self::Missing => "the stored seal the event names is not there",
        }
    }
}

impl Seal {
    /// Checks that the seal covers `event_hash` (index, path length, root); the signature is
    /// checked separately, against [`signing_message`](Self::signing_message), so that a
    /// verifier checks it once per batch.
    pub fn check(&self, event_hash: &Hash32) -> Result<(), SealCheck> {
        crate::merkle::verify_inclusion(
            SEAL_TREE,
            u64::from(self.index),
            u64::from(self.size),
            &self.path,
            &SEAL_TREE.leaf(&event_hash.0),
            &self.root,
        )
        .map_err(|e| match e.code() {
            "index_out_of_range" => SealCheck::Index,
            "proof_length" => SealCheck::Path,
            _ => SealCheck::Root,
        })
    }

    /// The message its signature signs.
    pub fn signing_message(&self) -> [u8; 72] {
        signing_message(self.size, &self.root)
    }

    /// Checks the seal and its signature under `key` (a receipt verified alone).
    pub fn verify(&self, key: &[u8; 32], event_hash: &Hash32) -> Result<(), SealError> {
        self.check(event_hash).map_err(SealError::Check)?;
        if keys::verify_signature(key, &self.signing_message(), &self.signature.to_bytes()) {
            Ok(())
        } else {
            Err(SealError::Signature)
        }
    }
}

/// Why a seal verified alone failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A structural check.
    #[error("{}", .0.describe())]
    Check(SealCheck),
    /// The signature does not verify under the key.
    #[error("the seal's signature does not verify under the custody key")]
    Signature,
}

/// How an event carries its seal (the tail of its version 2 wire form, docs/FORMAT.md §5.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case", deny_unknown_fields)]
pub enum SealLink {
    /// Form 1, a batch of one: size 1, index 0, no path, root `SEAL_TREE.leaf(event hash)`.
    Single {
        /// The signature.
        signature: Sig,
    },
    /// Form 2: the whole seal.
    Full(Seal),
    /// Form 3, storage only: the batch's [`SealedBatch`] record, by its number in the seal
    /// stream, and the event's index in it.
    Stored {
        /// The seal record's number (its stream sequence in `MNEMO-SEALS`).
        seal: u64,
        /// The event's leaf index.
        index: u32,
    },
}

impl SealLink {
    /// The seal this link carries for the event `event_hash`; `None` for a stored link,
    /// which only the record it names can resolve.
    pub fn seal(&self, event_hash: &Hash32) -> Option<Seal> {
        match self {
            Self::Single { signature } => Some(Seal {
                size: 1,
                index: 0,
                path: Vec::new(),
                root: SEAL_TREE.leaf(&event_hash.0),
                signature: *signature,
            }),
            Self::Full(s) => Some(s.clone()),
            Self::Stored { .. } => None,
        }
    }

    /// Appends the link's bytes (docs/FORMAT.md §5.3) to `out`: after an event's canonical
    /// bytes, they make its version 2 wire form.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer {
            buf: std::mem::take(out),
        };
        self.encode(&mut w);
        *out = w.buf;
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Self::Single { signature } => {
                w.u8(1);
                w.fixed(&signature.to_bytes());
            }
            Self::Full(s) => {
                w.u8(2);
                w.u32(s.size);
                w.u32(s.index);
                w.len(s.path.len());
                for p in &s.path {
                    w.fixed(&p.0);
                }
                w.fixed(&s.root.0);
                w.fixed(&s.signature.to_bytes());
            }
            Self::Stored { seal, index } => {
                w.u8(3);
                w.u64(*seal);
                w.u32(*index);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        Ok(match r.u8("seal form")? {
            1 => Self::Single {
                signature: Sig::from_bytes(&r.array("seal signature")?),
            },
            2 => {
                let size = read_size(r)?;
                let index = r.u32("seal index")?;
                let n = r.count(32, "seal path")?;
                let path = (0..n)
                    .map(|_| r.array("seal path node").map(Hash32))
                    .collect::<Result<_, _>>()?;
                Self::Full(Seal {
                    size,
                    index,
                    path,
                    root: Hash32(r.array("seal root")?),
                    signature: Sig::from_bytes(&r.array("seal signature")?),
                })
            }
            3 => Self::Stored {
                seal: r.u64("seal number")?,
                index: r.u32("seal index")?,
            },
            _ => {
                return Err(DecodeError::Invalid {
                    offset: at,
                    what: "seal form",
                });
            }
        })
    }
}

/// A signed batch: the tree over its event hashes and the signature over its root. What the
/// ledger makes when it seals, and what a stored seal record holds (§11).
#[derive(Clone, Debug)]
pub struct SealedBatch {
    /// The custody key that signed it.
    pub signer: KeyId,
    tree: MerkleTree,
    signature: Sig,
}

impl SealedBatch {
    /// Seals `event_hashes` (1 to [`MAX_SEAL_SIZE`], in batch order) with `key`.
    pub fn sign(key: &SigningKey, event_hashes: &[Hash32]) -> Self {
        assert!(
            !event_hashes.is_empty() && event_hashes.len() <= MAX_SEAL_SIZE as usize,
            "a seal covers 1 to {MAX_SEAL_SIZE} events"
        );
        let tree = tree_of(event_hashes);
        let size = event_hashes.len() as u32;
        let signature = Sig(key.sign(&signing_message(size, &tree.root())));
        Self {
            signer: hash::key_id(key.verifying_key().as_bytes()),
            tree,
            signature,
        }
    }

    /// Number of events.
    pub fn size(&self) -> u32 {
        self.tree.size() as u32
    }

    /// The signed root.
    pub fn root(&self) -> Hash32 {
        self.tree.root()
    }

    /// The signature.
    pub fn signature(&self) -> Sig {
        self.signature
    }

    /// The message the signature signs.
    pub fn signing_message(&self) -> [u8; 72] {
        signing_message(self.size(), &self.root())
    }

    /// Whether the signature verifies under `key` (whose id must be `signer`).
    pub fn verify_signature(&self, key: &[u8; 32]) -> bool {
        hash::key_id(key) == self.signer
            && keys::verify_signature(key, &self.signing_message(), &self.signature.to_bytes())
    }

    /// The full seal of the event at `index`; `None` beyond the batch.
    pub fn seal(&self, index: u32) -> Option<Seal> {
        let proof = self.tree.inclusion_proof(u64::from(index))?;
        Some(Seal {
            size: self.size(),
            index,
            path: proof.path,
            root: self.root(),
            signature: self.signature,
        })
    }

    /// The seal of the event at `index` as a reader resolves a stored link: an index beyond
    /// the batch gives a seal that fails [`Seal::check`] with [`SealCheck::Index`].
    pub fn resolve(&self, index: u32) -> Seal {
        self.seal(index).unwrap_or_else(|| Seal {
            size: self.size(),
            index,
            path: Vec::new(),
            root: self.root(),
            signature: self.signature,
        })
    }

    /// Whether the event at `index` is `event_hash` (what a monitor that holds the whole
    /// record checks instead of a path).
    pub fn holds(&self, index: u32, event_hash: &Hash32) -> bool {
        self.tree
            .leaves()
            .get(index as usize)
            .is_some_and(|l| *l == SEAL_TREE.leaf(&event_hash.0))
    }

    /// How the event at `index` carries this seal in storage: the signature alone for a
    /// batch of one, else a link to the record stored as number `stored`.
    pub fn link(&self, index: u32, stored: Option<u64>) -> SealLink {
        match stored {
            _ if self.size() == 1 => SealLink::Single {
                signature: self.signature,
            },
            Some(seal) => SealLink::Stored { seal, index },
            None => SealLink::Full(self.resolve(index)),
        }
    }

    /// The stored record (docs/FORMAT.md §11):
    /// `u8 0x02 || [32] signer || u32 size || [64] signature || [32] event hash × size`.
    pub fn to_record(&self, event_hashes: &[Hash32]) -> Vec<u8> {
        let mut w = Writer::with_capacity(101 + 32 * event_hashes.len());
        w.u8(SEAL_RECORD_VERSION);
        w.fixed(&self.signer.0);
        w.u32(self.size());
        w.fixed(&self.signature.to_bytes());
        for h in event_hashes {
            w.fixed(&h.0);
        }
        w.buf
    }

    /// Decodes a stored record (strictly).
    pub fn from_record(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("seal record version")?;
        if v != SEAL_RECORD_VERSION {
            return Err(DecodeError::UnknownVersion(v));
        }
        let signer = KeyId(r.array("signer")?);
        let size = read_size(&mut r)?;
        let signature = Sig::from_bytes(&r.array("seal signature")?);
        let hashes = (0..size)
            .map(|_| r.array("event hash").map(Hash32))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(Self {
            signer,
            tree: tree_of(&hashes),
            signature,
        })
    }
}

/// A batch size: 1 to [`MAX_SEAL_SIZE`].
fn read_size(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let at = r.pos();
    let size = r.u32("seal size")?;
    if size == 0 || size > MAX_SEAL_SIZE {
        return Err(DecodeError::Invalid {
            offset: at,
            what: "seal size",
        });
    }
    Ok(size)
}

fn tree_of(event_hashes: &[Hash32]) -> MerkleTree {
    MerkleTree::from_leaf_hashes(
        SEAL_TREE,
        event_hashes.iter().map(|h| SEAL_TREE.leaf(&h.0)).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(n: usize) -> Vec<Hash32> {
        (0..n)
            .map(|i| hash::hash_parts("test", &[&(i as u64).to_be_bytes()]))
            .collect()
    }

    #[test]
    fn every_event_of_a_batch_verifies_and_no_other() {
        let key = SigningKey::from_bytes(&[7; 32]);
        for n in [1, 2, 3, 5, 8, 13, 256] {
            let hs = hashes(n);
            let b = SealedBatch::sign(&key, &hs);
            for (i, h) in hs.iter().enumerate() {
                let s = b.seal(i as u32).unwrap();
                s.verify(key.verifying_key().as_bytes(), h).unwrap();
                assert!(b.holds(i as u32, h));
                let other = hs[(i + 1) % n];
                if n > 1 {
                    assert_eq!(s.check(&other), Err(SealCheck::Root));
                }
            }
            let rec = SealedBatch::from_record(&b.to_record(&hs)).unwrap();
            assert_eq!(rec.root(), b.root());
            assert!(rec.verify_signature(key.verifying_key().as_bytes()));
        }
    }

    #[test]
    fn a_single_link_is_the_seal_of_a_batch_of_one() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let h = hashes(1);
        let b = SealedBatch::sign(&key, &h);
        assert_eq!(b.link(0, Some(4)).seal(&h[0]), b.seal(0));
    }

    #[test]
    fn tampered_seals_fail_their_named_check() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let hs = hashes(6);
        let b = SealedBatch::sign(&key, &hs);
        let s = b.seal(2).unwrap();
        let mut t = s.clone();
        t.index = 6;
        assert_eq!(t.check(&hs[2]), Err(SealCheck::Index));
        let mut t = s.clone();
        t.index = 3;
        assert_eq!(t.check(&hs[2]), Err(SealCheck::Root));
        let mut t = s.clone();
        t.path[0].0[0] ^= 1;
        assert_eq!(t.check(&hs[2]), Err(SealCheck::Root));
        let mut t = s.clone();
        t.size = 2;
        assert_eq!(t.check(&hs[2]), Err(SealCheck::Index));
        let mut t = s.clone();
        t.path.pop();
        assert_eq!(t.check(&hs[2]), Err(SealCheck::Path));
        let mut t = s.clone();
        t.signature = b.seal(0).map(|x| x.signature).unwrap();
        let mut sig = t.signature.to_bytes();
        sig[3] ^= 1;
        t.signature = Sig::from_bytes(&sig);
        assert_eq!(
            t.verify(key.verifying_key().as_bytes(), &hs[2]),
            Err(SealError::Signature)
        );
    }
}
