//! The epoch log (epoch tree version 2, docs/FORMAT.md §7.1): checkpoints appended, never
//! moved, as a transparency log appends entries. Each epoch appends the checkpoint of every
//! user whose chain moved since that user's last leaf (in user-id order), and the epoch's
//! root is the RFC 9162 root over every leaf appended so far. An unchanged user's leaf does
//! not move, so an epoch costs O(changed users · log leaves) to compute and O(changed
//! users) to store.
//!
//! The log is kept as its **complete nodes**: node `(level, index)` is the root of leaves
//! `[index · 2^level, (index + 1) · 2^level)`, written once when its last leaf is appended
//! and never changed. A root or an inclusion proof at any size is assembled from O(log n)
//! of them ([`proof_nodes`], [`inclusion_proof`]), and an appender resumes from the O(log n)
//! nodes of its right edge ([`LogAppender::resume`]). No I/O here: the caller fetches the
//! nodes these functions name.

use std::collections::HashMap;

use crate::ids::Hash32;
use crate::merkle::{Accumulator, EPOCH_TREE, InclusionProof};

/// A complete node of the log: `(level, index)`.
pub type NodeId = (u8, u64);

/// The complete nodes whose fold is the root of the first `size` leaves: one per set bit
/// of `size`, largest (leftmost) first.
pub fn peak_nodes(size: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        if size & (1 << level) != 0 {
            out.push((level, start >> level));
            start += 1 << level;
        }
    }
    out
}

/// The root of leaves `[lo, hi)` (a range of an RFC 9162 tree: `lo` a multiple of the
/// largest power of two below `hi - lo`), from complete nodes.
fn range_hash(lo: u64, hi: u64, node: &impl Fn(NodeId) -> Option<Hash32>) -> Option<Hash32> {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return node((n.trailing_zeros() as u8, lo / n));
    }
    let k = split(n);
    Some(EPOCH_TREE.node(
        &range_hash(lo, lo + k, node)?,
        &range_hash(lo + k, hi, node)?,
    ))
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The complete nodes a range hash reads.
fn range_nodes(lo: u64, hi: u64, out: &mut Vec<NodeId>) {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        out.push((n.trailing_zeros() as u8, lo / n));
        return;
    }
    let k = split(n);
    range_nodes(lo, lo + k, out);
    range_nodes(lo + k, hi, out);
}

/// The complete nodes that the inclusion proof of leaf `index` in a log of `size` leaves
/// reads (O(log size)); `None` when `index >= size`.
pub fn proof_nodes(index: u64, size: u64) -> Option<Vec<NodeId>> {
    if index >= size {
        return None;
    }
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            range_nodes(lo + k, hi, &mut out);
            hi = lo + k;
        } else {
            range_nodes(lo, lo + k, &mut out);
            lo += k;
        }
    }
    Some(out)
}

/// The RFC 9162 inclusion proof of leaf `index` in a log of `size` leaves, from the nodes
/// [`proof_nodes`] named; `None` when one is missing.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    nodes: &HashMap<NodeId, Hash32>,
) -> Option<InclusionProof> {
    if index >= size {
        return None;
    }
    let node = |id: NodeId| nodes.get(&id).copied();
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            path.push(range_hash(lo + k, hi, &node)?);
            hi = lo + k;
        } else {
            path.push(range_hash(lo, lo + k, &node)?);
            lo += k;
        }
    }
    // Built from the top down; a proof lists the siblings from the leaf up.
    path.reverse();
    Some(InclusionProof { index, size, path })
}

/// The root of the first `size` leaves, from the nodes [`peak_nodes`] named.
pub fn root(size: u64, nodes: &HashMap<NodeId, Hash32>) -> Option<Hash32> {
    if size == 0 {
        return Some(EPOCH_TREE.empty_root());
    }
    range_hash(0, size, &|id| nodes.get(&id).copied())
}

/// Appends leaves to the log, O(log n) state: the right edge's complete nodes (an
/// [`Accumulator`] in the epoch domain, which also names what each append completes).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LogAppender {
    acc: Accumulator,
}

impl LogAppender {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log of `size` leaves from its peaks (the nodes [`peak_nodes`]`(size)` names, in
    /// that order); `None` when their number does not match.
    pub fn resume(size: u64, peaks: Vec<Hash32>) -> Option<Self> {
        Accumulator::from_peaks(size, peaks).map(|acc| Self { acc })
    }

    /// Leaves appended.
    pub fn size(&self) -> u64 {
        self.acc.size()
    }

    /// The right edge's nodes (what [`resume`](Self::resume) takes).
    pub fn peaks(&self) -> &[Hash32] {
        self.acc.peaks()
    }

    /// Appends a leaf hash; returns the complete nodes it completes (the leaf itself at
    /// level 0 first), each to be stored.
    pub fn push(&mut self, leaf: Hash32) -> Vec<(NodeId, Hash32)> {
        let index = self.acc.size();
        let mut out = Vec::new();
        self.acc.push_completing(EPOCH_TREE, leaf, |level, h| {
            out.push(((level, index >> level), h));
        });
        out
    }

    /// The root over every leaf appended.
    pub fn root(&self) -> Hash32 {
        self.acc.root(EPOCH_TREE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MerkleTree;
    use proptest::prelude::*;

    fn leaf(i: u64) -> Hash32 {
        EPOCH_TREE.leaf(&i.to_be_bytes())
    }

    /// Appends in epochs of random sizes, storing only what each append completes; at
    /// every epoch the root, and every leaf's proof assembled from the stored nodes, equal
    /// a full rebuild's; and an appender resumed from the stored peaks goes on identically.
    fn check(epochs: &[u64]) {
        let mut log = LogAppender::new();
        let mut stored: HashMap<NodeId, Hash32> = HashMap::new();
        let mut all = Vec::new();
        for &changed in epochs {
            for _ in 0..changed {
                let l = leaf(all.len() as u64);
                all.push(l);
                for (id, h) in log.push(l) {
                    assert!(stored.insert(id, h).is_none(), "a node written twice");
                }
            }
            let full = MerkleTree::from_leaf_hashes(EPOCH_TREE, all.clone());
            assert_eq!(log.root(), full.root());
            let n = log.size();
            assert_eq!(root(n, &stored), Some(full.root()));
            for i in 0..n {
                let want: Vec<NodeId> = proof_nodes(i, n).unwrap();
                assert!(want.iter().all(|id| stored.contains_key(id)));
                assert!(want.len() <= 2 * 64);
                let p = inclusion_proof(i, n, &stored).unwrap();
                assert_eq!(p, full.inclusion_proof(i).unwrap(), "leaf {i} of {n}");
                p.verify(EPOCH_TREE, &all[i as usize], &log.root()).unwrap();
            }
            let peaks: Vec<Hash32> = peak_nodes(n).iter().map(|id| stored[id]).collect();
            assert_eq!(LogAppender::resume(n, peaks).unwrap(), log);
        }
    }

    #[test]
    fn small_logs_match_a_full_rebuild() {
        check(&[1, 1, 1, 5, 0, 8, 3, 17, 2]);
        check(&[64, 1, 63, 128]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn incremental_epochs_match_a_full_rebuild(epochs in proptest::collection::vec(0u64..40, 1..8)) {
            check(&epochs);
        }
    }
}
