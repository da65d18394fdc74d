//! Proof bundles: everything needed to check one memory's custody offline
//! (docs/FORMAT.md §7.3): the signed event, its inclusion in a checkpoint of the user's
//! chain, that checkpoint's inclusion in an epoch root, and the anchor receipt of that root.
//!
//! Checking the receipt against the EVM chain itself (receipt status, contract code, block
//! finality) needs the network and is the audit tool's job; here the receipt is checked
//! for agreeing with the epoch proof.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, EpochProof};
use crate::error::ProofError;
use crate::event::Event;
use crate::ids::{Address, Hash32, Seq};
use crate::keys::{self, PublicKey};
use crate::merkle::{CHAIN_TREE, InclusionProof};

/// Where and how an epoch root was committed on an EVM chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorReceipt {
    /// EVM chain id (Sapphire mainnet 23294, testnet 23295, localnet 23293, ...).
    pub chain_id: u64,
    /// The anchor contract.
    pub contract: Address,
    /// The anchoring transaction.
    pub tx_hash: Hash32,
    /// Block that holds it.
    pub block_number: u64,
    /// That block's hash (to detect reorgs).
    pub block_hash: Hash32,
    /// Epoch number passed to `anchor(...)`.
    pub epoch: u64,
    /// Root passed to `anchor(...)`.
    pub root: Hash32,
    /// Number of epoch leaves passed to `anchor(...)`.
    pub leaf_count: u64,
    /// The previous epoch's root (zero for the first).
    pub prev_root: Hash32,
}

/// How far a bundle's proof reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofLevel {
    /// Signed and in a checkpoint of the chain.
    Checkpointed,
    /// The checkpoint is in an epoch root.
    InEpoch,
    /// The epoch root has an anchor receipt.
    Anchored,
}

/// One memory's (or any event's) custody proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// The signed event.
    pub event: Event,
    /// The custody key that signed it (its id must be `event.signer`).
    pub signer_key: PublicKey,
    /// The device key of the origin signature, when the event has one.
    #[serde(default)]
    pub origin_key: Option<PublicKey>,
    /// A checkpoint at or after the event.
    pub checkpoint: Checkpoint,
    /// The event's leaf in the checkpoint's chain tree (index `seq - 1`, size `checkpoint.seq`).
    pub inclusion: InclusionProof,
    /// The checkpoint in an epoch root, once an epoch covered it.
    #[serde(default)]
    pub epoch: Option<EpochProof>,
    /// The epoch root's anchor, once anchored.
    #[serde(default)]
    pub anchor: Option<AnchorReceipt>,
}

impl ProofBundle {
    /// Assembles the proof bundle of `event` (the API's `/proof` and `mnemo-audit prove`
    /// both build bundles here). `event_hashes` are the hashes of the chain's events from
    /// seq 1 on, at least up to `event`; `anchors` are the user's anchored checkpoints with
    /// their receipts. The bundle reaches the earliest anchored checkpoint that covers the
    /// event (lowest checkpoint seq, then epoch) and that the hashes reach; without one, the
    /// checkpoint after the last hash given. The result is verified before it is returned.
    pub fn assemble(
        event: Event,
        signer_key: PublicKey,
        origin_key: Option<PublicKey>,
        event_hashes: &[Hash32],
        anchors: impl IntoIterator<Item = (EpochProof, AnchorReceipt)>,
    ) -> Result<(Self, ProofLevel), ProofError> {
        let seq = event.seq.0;
        let have = event_hashes.len() as u64;
        if seq == 0 || seq > have {
            return Err(ProofError::IndexOutOfRange {
                tree: "chain",
                index: seq.saturating_sub(1),
                size: have,
            });
        }
        let anchored = anchors
            .into_iter()
            .filter(|(p, _)| p.checkpoint.seq.0 >= seq && p.checkpoint.seq.0 <= have)
            .min_by_key(|(p, _)| (p.checkpoint.seq, p.epoch));
        let upto = anchored.as_ref().map_or(have, |(p, _)| p.checkpoint.seq.0) as usize;
        let leaves: Vec<Hash32> = event_hashes[..upto]
            .iter()
            .map(|h| CHAIN_TREE.leaf(&h.0))
            .collect();
        let tree = crate::merkle::MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves);
        let (checkpoint, epoch, anchor) = match anchored {
            Some((p, r)) => (p.checkpoint.clone(), Some(p), Some(r)),
            None => (
                Checkpoint {
                    user: event.user.clone(),
                    seq: Seq(have),
                    head: event_hashes[upto - 1],
                    root: tree.root(),
                },
                None,
                None,
            ),
        };
        let inclusion = tree
            .inclusion_proof(seq - 1)
            .ok_or(ProofError::IndexOutOfRange {
                tree: "chain",
                index: seq - 1,
                size: upto as u64,
            })?;
        let bundle = Self {
            event,
            signer_key,
            origin_key,
            checkpoint,
            inclusion,
            epoch,
            anchor,
        };
        let level = bundle.verify()?;
        Ok((bundle, level))
    }

    /// Checks every piece and how they connect; returns how far the proof reaches.
    pub fn verify(&self) -> Result<ProofLevel, ProofError> {
        let e = &self.event;
        let seq = e.seq;
        if self.signer_key.id() != e.signer {
            return Err(ProofError::Event {
                seq,
                what: "signer key does not match the event's key id",
            });
        }
        let hash = e.hash();
        let custody_holds = match &e.custody {
            crate::event::Custody::Signature(sig) => {
                keys::verify_event_signature(&self.signer_key, &hash, sig)
            }
            crate::event::Custody::Seal(link) => {
                let Some(seal) = link.seal(&hash) else {
                    return Err(ProofError::Event {
                        seq,
                        what: "the event's seal is a stored link, not the seal itself",
                    });
                };
                if let Err(check) = seal.check(&hash) {
                    return Err(ProofError::Event {
                        seq,
                        what: check.describe(),
                    });
                }
                keys::verify_signature(
                    self.signer_key.0.as_bytes(),
                    &seal.signing_message(),
                    &seal.signature.to_bytes(),
                )
            }
        };
        if !custody_holds {
            return Err(ProofError::Event {
                seq,
                what: "bad signature",
            });
        }
        if let Some(o) = &e.origin {
            let (Some(k), Some(c)) = (&self.origin_key, &e.payload) else {
                return Err(ProofError::Event {
                    seq,
                    what: "origin signature without its key or payload",
                });
            };
            if k.id() != o.key
                || !keys::verify_origin_signature(k, &e.user, e.body.capture(), c, &o.signature)
            {
                return Err(ProofError::Event {
                    seq,
                    what: "bad origin signature",
                });
            }
        }
        let cp = &self.checkpoint;
        if cp.user != e.user {
            return Err(ProofError::Mismatch("checkpoint is of another user"));
        }
        if seq > cp.seq || self.inclusion.index != seq.0 - 1 || self.inclusion.size != cp.seq.0 {
            return Err(ProofError::Mismatch(
                "inclusion proof is not for this event and checkpoint",
            ));
        }
        if seq == cp.seq && cp.head != hash {
            return Err(ProofError::Mismatch("checkpoint head is not this event"));
        }
        self.inclusion
            .verify(CHAIN_TREE, &CHAIN_TREE.leaf(&hash.0), &cp.root)?;
        let Some(ep) = &self.epoch else {
            return if self.anchor.is_some() {
                Err(ProofError::Mismatch("anchor receipt without epoch proof"))
            } else {
                Ok(ProofLevel::Checkpointed)
            };
        };
        if ep.checkpoint != *cp {
            return Err(ProofError::Mismatch(
                "epoch proof is for another checkpoint",
            ));
        }
        ep.verify()?;
        let Some(a) = &self.anchor else {
            return Ok(ProofLevel::InEpoch);
        };
        if a.root != ep.root {
            return Err(ProofError::Mismatch("anchor receipt is for another root"));
        }
        if a.epoch != ep.epoch {
            return Err(ProofError::Mismatch("anchor receipt is for another epoch"));
        }
        if a.leaf_count != ep.inclusion.size {
            return Err(ProofError::Mismatch(
                "anchor receipt has another leaf count",
            ));
        }
        Ok(ProofLevel::Anchored)
    }

    /// The sequence number proven.
    pub fn seq(&self) -> Seq {
        self.event.seq
    }
}
