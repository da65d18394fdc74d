//! Processing under consent (docs/FORMAT.md §15): what a processing grant allows, the
//! messages a processor signs for its results, the key that makes a result idempotent, and
//! a model's training-set tree with its inclusion and exclusion proofs.
//!
//! A processor picks the salt of a derived record, computes the payload commitment (§6)
//! and signs [`derived_signing_message`], as a capturing device does for an origin
//! signature. The message names the user, the grant, the processor's version, the inputs
//! and the commitment, so a signed result can not be moved to another chain, grant or set
//! of inputs.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::encoding::Writer;
use crate::error::ProofError;
use crate::event::GrantConditions;
use crate::grant::{MemoryFacts, Refusal};
use crate::hash::{self, SIG_DERIVED, SIG_MODEL};
use crate::ids::{GrantId, Hash32, MemoryId, ProcessorId, Seq, TimestampMs, UserId};
use crate::keys::{self, PublicKey, Sig};
use crate::merkle::{InclusionProof, MerkleTree, TRAINING_SET};

/// Longest processor version string, in bytes.
pub const MAX_VERSION_LEN: usize = 64;
/// Most inputs one derived memory may name.
pub const MAX_INPUTS: usize = 1024;
/// Longest erasure reason, in bytes.
pub const MAX_REASON_LEN: usize = 512;

/// A processing grant as its owner's chain defines it: created by `processing_granted`,
/// ended by `grant_revoked` or its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingGrant {
    /// Its id.
    pub id: GrantId,
    /// Which processor.
    pub processor: ProcessorId,
    /// Only this version, when set.
    pub version: Option<String>,
    /// The processor's public key.
    pub key: PublicKey,
    /// Which memories.
    pub conditions: GrantConditions,
    /// When it lapses by itself.
    pub expires_at: Option<TimestampMs>,
    /// Whether a `grant_revoked` has ended it.
    pub revoked: bool,
}

impl ProcessingGrant {
    /// Whether the grant is live at `at` (not revoked, not lapsed).
    pub fn live(&self, at: TimestampMs) -> Result<(), Refusal> {
        if self.revoked {
            return Err(Refusal::Revoked);
        }
        if self.expires_at.is_some_and(|x| at >= x) {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    /// Whether the grant allows `version` of its processor.
    pub fn allows_version(&self, version: &str) -> bool {
        self.version.as_deref().is_none_or(|v| v == version)
    }

    /// The processing rule: whether the processor may be handed `m` at `at`.
    pub fn allows(&self, m: &MemoryFacts<'_>, at: TimestampMs) -> Result<(), Refusal> {
        self.live(at)?;
        if m.erased {
            return Err(Refusal::Erased);
        }
        if !self.conditions.covers(m) {
            return Err(Refusal::Conditions);
        }
        Ok(())
    }
}

/// The message a processor signs for a derived memory:
/// `SIG_DERIVED || str(user) || grant || str(processor) || str(version) || u32 n ||
/// inputs || commitment` (§2's encoding; inputs in ascending id order).
pub fn derived_signing_message(
    user: &UserId,
    grant: &GrantId,
    processor: &ProcessorId,
    version: &str,
    inputs: &[MemoryId],
    commitment: &Hash32,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(128 + inputs.len() * 16);
    w.fixed(SIG_DERIVED);
    w.str(user.as_str());
    w.fixed(&grant.0);
    w.str(processor.as_str());
    w.str(version);
    w.len(inputs.len());
    for m in inputs {
        w.fixed(&m.0);
    }
    w.fixed(&commitment.0);
    w.buf
}

/// What a model's signature covers (fields of `model_trained` but its id).
#[derive(Clone, Copy, Debug)]
pub struct ModelClaim<'a> {
    /// Whose chain.
    pub user: &'a UserId,
    /// The processing grant.
    pub grant: &'a GrantId,
    /// The processor.
    pub processor: &'a ProcessorId,
    /// The model version.
    pub version: &'a str,
    /// Hash of the artifact.
    pub artifact: &'a Hash32,
    /// The training-set root.
    pub set_root: &'a Hash32,
    /// The training-set size.
    pub set_count: u64,
}

/// The message a processor signs for a model:
/// `SIG_MODEL || str(user) || grant || str(processor) || str(version) || artifact ||
/// set_root || u64 set_count`.
pub fn model_signing_message(c: &ModelClaim<'_>) -> Vec<u8> {
    let mut w = Writer::with_capacity(192);
    w.fixed(SIG_MODEL);
    w.str(c.user.as_str());
    w.fixed(&c.grant.0);
    w.str(c.processor.as_str());
    w.str(c.version);
    w.fixed(&c.artifact.0);
    w.fixed(&c.set_root.0);
    w.u64(c.set_count);
    w.buf
}

/// Signs a derived memory's message as the processor.
pub fn sign(key: &SigningKey, message: &[u8]) -> Sig {
    use ed25519_dalek::Signer;
    Sig(key.sign(message))
}

/// Verifies a processor signature under the signature rule (§1).
pub fn verify(key: &PublicKey, message: &[u8], sig: &Sig) -> bool {
    keys::verify_signature(key.0.as_bytes(), message, &sig.0.to_bytes())
}

/// The derivation key: what makes a result idempotent. Two results of the same processor,
/// version and inputs have the same key, whatever their bytes.
pub fn derivation_key(processor: &ProcessorId, version: &str, inputs: &[MemoryId]) -> Hash32 {
    let mut w = Writer::with_capacity(64 + inputs.len() * 16);
    w.str(processor.as_str());
    w.str(version);
    w.len(inputs.len());
    for m in inputs {
        w.fixed(&m.0);
    }
    hash::hash_parts(hash::CTX_DERIVATION, &[&w.buf])
}

/// Whether ids are in strictly ascending order (sorted, no repeats).
pub fn strictly_ascending(ids: &[MemoryId]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

/// One member of a training set: an input event's seq and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMember {
    /// The input event's seq.
    pub seq: Seq,
    /// The input event's hash.
    pub event_hash: Hash32,
}

impl SetMember {
    /// The leaf hash: `TRAINING_SET.leaf(u64 seq || event hash)`.
    pub fn leaf(&self) -> Hash32 {
        let mut data = [0u8; 40];
        data[..8].copy_from_slice(&self.seq.0.to_be_bytes());
        data[8..].copy_from_slice(&self.event_hash.0);
        TRAINING_SET.leaf(&data)
    }
}

/// A model's training set: members in ascending seq, distinct.
#[derive(Clone, Debug)]
pub struct TrainingSet {
    members: Vec<SetMember>,
    tree: MerkleTree,
}

impl TrainingSet {
    /// Sorts the members by seq; `None` when a seq repeats or the set is empty.
    pub fn new(mut members: Vec<SetMember>) -> Option<Self> {
        members.sort_by_key(|m| m.seq);
        if members.is_empty() || members.windows(2).any(|w| w[0].seq == w[1].seq) {
            return None;
        }
        let tree = MerkleTree::from_leaf_hashes(
            TRAINING_SET,
            members.iter().map(SetMember::leaf).collect(),
        );
        Some(Self { members, tree })
    }

    /// The commitment's root.
    pub fn root(&self) -> Hash32 {
        self.tree.root()
    }

    /// The commitment's count.
    pub fn count(&self) -> u64 {
        self.members.len() as u64
    }

    /// The members, in ascending seq.
    pub fn members(&self) -> &[SetMember] {
        &self.members
    }

    /// The proof that the event at `seq` (hash `event_hash`) is, or is not, in the set.
    pub fn prove(&self, seq: Seq, event_hash: Hash32) -> TrainingSetProof {
        let at = |i: usize| Neighbour {
            member: self.members[i],
            proof: self
                .tree
                .inclusion_proof(i as u64)
                .expect("index inside the tree"),
        };
        match self.members.binary_search_by_key(&seq, |m| m.seq) {
            Ok(i) => TrainingSetProof {
                root: self.root(),
                count: self.count(),
                member: SetMember { seq, event_hash },
                verdict: Verdict::Included { proof: at(i).proof },
            },
            Err(i) => TrainingSetProof {
                root: self.root(),
                count: self.count(),
                member: SetMember { seq, event_hash },
                verdict: Verdict::Excluded {
                    left: i.checked_sub(1).map(at),
                    right: (i < self.members.len()).then(|| at(i)),
                },
            },
        }
    }
}

/// A neighbour in an exclusion proof: a member and its inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    /// The member.
    #[serde(flatten)]
    pub member: SetMember,
    /// Its inclusion proof.
    pub proof: InclusionProof,
}

/// Whether the memory is in the set, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// In the set: the leaf's inclusion proof.
    Included {
        /// The inclusion proof of the member's leaf.
        proof: InclusionProof,
    },
    /// Not in the set: the members just before and after its seq (adjacent leaves), one
    /// of them absent at either end.
    Excluded {
        /// The member before (absent when the seq precedes every member).
        left: Option<Neighbour>,
        /// The member after (absent when the seq follows every member).
        right: Option<Neighbour>,
    },
}

/// A proof that an event is, or is not, in a model's training set (docs/FORMAT.md §15.4).
/// (Its JSON form flattens the verdict, which serde can not combine with refusing unknown
/// fields: unknown fields are ignored here.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingSetProof {
    /// The model's `set_root`.
    pub root: Hash32,
    /// The model's `set_count`.
    pub count: u64,
    /// The event asked about.
    pub member: SetMember,
    /// The answer and its evidence.
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl TrainingSetProof {
    /// Checks the proof against the model's commitment; `Ok(true)` for a proven inclusion,
    /// `Ok(false)` for a proven exclusion.
    pub fn verify(&self, root: &Hash32, count: u64) -> Result<bool, ProofError> {
        if self.root != *root || self.count != count {
            return Err(ProofError::Mismatch(
                "the proof is not about this model's commitment",
            ));
        }
        let sized = |p: &InclusionProof| {
            if p.size != count {
                Err(ProofError::Mismatch(
                    "an inclusion proof is for another tree size",
                ))
            } else {
                Ok(())
            }
        };
        match &self.verdict {
            Verdict::Included { proof } => {
                sized(proof)?;
                proof.verify(TRAINING_SET, &self.member.leaf(), root)?;
                Ok(true)
            }
            Verdict::Excluded { left, right } => {
                for n in left.iter().chain(right) {
                    sized(&n.proof)?;
                    n.proof.verify(TRAINING_SET, &n.member.leaf(), root)?;
                }
                let seq = self.member.seq;
                let ok = match (left, right) {
                    (Some(l), Some(r)) => {
                        r.proof.index == l.proof.index + 1
                            && l.member.seq < seq
                            && seq < r.member.seq
                    }
                    (None, Some(r)) => r.proof.index == 0 && seq < r.member.seq,
                    (Some(l), None) => l.proof.index + 1 == count && l.member.seq < seq,
                    (None, None) => false,
                };
                if !ok {
                    return Err(ProofError::Mismatch(
                        "the neighbours are not adjacent around the seq: no exclusion",
                    ));
                }
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(seqs: &[u64]) -> TrainingSet {
        TrainingSet::new(
            seqs.iter()
                .map(|s| SetMember {
                    seq: Seq(*s),
                    event_hash: Hash32([*s as u8; 32]),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn inclusion_and_exclusion_verify_and_forgeries_do_not() {
        let s = set(&[9, 3, 5, 12, 20]);
        let (root, n) = (s.root(), s.count());
        for seq in [3, 5, 9, 12, 20] {
            let p = s.prove(Seq(seq), Hash32([seq as u8; 32]));
            assert_eq!(p.verify(&root, n), Ok(true), "seq {seq}");
        }
        for seq in [1, 4, 10, 13, 25] {
            let p = s.prove(Seq(seq), Hash32([0xee; 32]));
            assert_eq!(p.verify(&root, n), Ok(false), "seq {seq}");
        }
        // A forged exclusion of a member: neighbours that are not adjacent.
        let Verdict::Excluded { left, .. } = s.prove(Seq(4), Hash32([0; 32])).verdict else {
            panic!()
        };
        let Verdict::Excluded { right, .. } = s.prove(Seq(6), Hash32([0; 32])).verdict else {
            panic!()
        };
        let forged = TrainingSetProof {
            root,
            count: n,
            member: SetMember {
                seq: Seq(5),
                event_hash: Hash32([5; 32]),
            },
            verdict: Verdict::Excluded { left, right },
        };
        assert!(forged.verify(&root, n).is_err());
        // An inclusion claimed for another hash at a member's seq.
        let mut p = s.prove(Seq(5), Hash32([5; 32]));
        p.member.event_hash = Hash32([6; 32]);
        assert!(p.verify(&root, n).is_err());
        // Dropping a neighbour at the edge is refused.
        let mut p = s.prove(Seq(10), Hash32([0; 32]));
        if let Verdict::Excluded { right, .. } = &mut p.verdict {
            *right = None;
        }
        assert!(p.verify(&root, n).is_err());
        assert!(TrainingSet::new(vec![]).is_none());
    }
}
