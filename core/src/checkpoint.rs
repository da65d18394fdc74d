//! Checkpoints of one user's chain and the epoch tree that puts every user's checkpoint
//! under one root (docs/FORMAT.md §7).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::encoding::Writer;
use crate::error::ProofError;
use crate::ids::{Hash32, Seq, UserId};
use crate::merkle::{EPOCH_TREE, InclusionProof, MerkleTree};

/// The state of a user's chain after `seq` events: the last event's hash and the chain
/// tree's root over events `1..=seq`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Whose chain.
    pub user: UserId,
    /// Number of events covered.
    pub seq: Seq,
    /// Hash of event `seq`.
    pub head: Hash32,
    /// Chain tree root over events `1..=seq`.
    pub root: Hash32,
}

/// A user's checkpoint as the KV heads view (`mnemo-heads`, keyed by the user) keeps it,
/// in JSON: written by the projector, read by the anchorer. The one definition of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadRecord {
    /// Number of events.
    pub seq: u64,
    /// Hash of the last event.
    pub hash: Hash32,
    /// Chain tree root over all events.
    pub root: Hash32,
}

impl HeadRecord {
    /// The checkpoint it records for `user`.
    pub fn checkpoint(&self, user: UserId) -> Checkpoint {
        Checkpoint {
            user,
            seq: Seq(self.seq),
            head: self.hash,
            root: self.root,
        }
    }
}

impl Checkpoint {
    /// Canonical bytes: `0x01 || str user || u64 seq || head || root`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(80 + self.user.as_str().len());
        w.u8(crate::event::FORMAT_V1);
        w.str(self.user.as_str());
        w.u64(self.seq.0);
        w.fixed(&self.head.0);
        w.fixed(&self.root.0);
        w.buf
    }

    /// The checkpoint's leaf in an epoch tree.
    pub fn epoch_leaf(&self) -> Hash32 {
        EPOCH_TREE.leaf(&self.canonical_bytes())
    }
}

/// The epoch tree: one leaf per user, ordered by user id (byte order), so that the same
/// set of checkpoints always gives the same root.
#[derive(Clone, Debug)]
pub struct EpochTree {
    epoch: u64,
    checkpoints: Vec<Checkpoint>,
    index: HashMap<UserId, usize>,
    tree: MerkleTree,
}

/// A checkpoint was given twice for one user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two checkpoints for user {0} in one epoch")]
pub struct DuplicateUser(pub UserId);

impl EpochTree {
    /// Builds epoch `epoch` over one checkpoint per user.
    pub fn build(epoch: u64, mut checkpoints: Vec<Checkpoint>) -> Result<Self, DuplicateUser> {
        checkpoints.sort_unstable_by(|a, b| a.user.cmp(&b.user));
        if let Some(w) = checkpoints.windows(2).find(|w| w[0].user == w[1].user) {
            return Err(DuplicateUser(w[0].user.clone()));
        }
        let leaves = checkpoints.iter().map(Checkpoint::epoch_leaf).collect();
        let tree = MerkleTree::from_leaf_hashes(EPOCH_TREE, leaves);
        let index = checkpoints
            .iter()
            .enumerate()
            .map(|(i, c)| (c.user.clone(), i))
            .collect();
        Ok(Self {
            epoch,
            checkpoints,
            index,
            tree,
        })
    }

    /// The epoch number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// The root that gets anchored.
    pub fn root(&self) -> Hash32 {
        self.tree.root()
    }
    /// Number of users (leaves).
    pub fn leaf_count(&self) -> u64 {
        self.tree.size()
    }
    /// The checkpoints, in leaf order.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// The proof that `user`'s checkpoint is in this epoch.
    pub fn proof(&self, user: &UserId) -> Option<EpochProof> {
        let i = *self.index.get(user)?;
        let p = self.tree.inclusion_proof(i as u64)?;
        Some(EpochProof {
            epoch: self.epoch,
            root: self.root(),
            checkpoint: self.checkpoints[i].clone(),
            inclusion: p,
        })
    }
}

/// A checkpoint's inclusion in an epoch root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochProof {
    /// The epoch.
    pub epoch: u64,
    /// The epoch root.
    pub root: Hash32,
    /// The checkpoint proven (may be later than the checkpoint an event was proven in).
    pub checkpoint: Checkpoint,
    /// Path from the checkpoint's leaf to `root`; `inclusion.size` is the leaf count.
    pub inclusion: InclusionProof,
}

impl EpochProof {
    /// Checks the path.
    pub fn verify(&self) -> Result<(), ProofError> {
        self.inclusion
            .verify(EPOCH_TREE, &self.checkpoint.epoch_leaf(), &self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(u: &str, s: u64) -> Checkpoint {
        Checkpoint {
            user: UserId::new(u).unwrap(),
            seq: Seq(s),
            head: Hash32([s as u8; 32]),
            root: Hash32([s as u8 ^ 0xff; 32]),
        }
    }

    #[test]
    fn order_of_input_does_not_change_root_and_every_user_proves() {
        let a: Vec<_> = (0..37).map(|i| cp(&format!("u{i}"), i + 1)).collect();
        let mut b = a.clone();
        b.reverse();
        let ta = EpochTree::build(1, a.clone()).unwrap();
        let tb = EpochTree::build(1, b).unwrap();
        assert_eq!(ta.root(), tb.root());
        for c in &a {
            let p = ta.proof(&c.user).unwrap();
            p.verify().unwrap();
            let mut forged = p.clone();
            forged.checkpoint.seq = Seq(999);
            assert!(forged.verify().is_err());
        }
        assert!(EpochTree::build(1, vec![cp("x", 1), cp("x", 2)]).is_err());
    }
}
