//! RFC 9162 (Certificate Transparency v2) Merkle trees with blake3: the tree hash, inclusion
//! and consistency proofs (§2.1.1 to §2.1.4), and an append-only accumulator.
//!
//! Two tree domains exist: a user's chain tree (leaves are event hashes) and the epoch tree
//! (leaves are checkpoints). Each has its own leaf and node hash contexts, which play the
//! role of RFC 9162's 0x00 / 0x01 prefixes and also keep the two kinds of tree apart.

use serde::{Deserialize, Serialize};

use crate::error::ProofError;
use crate::hash::{self, CTX_CHAIN_LEAF, CTX_CHAIN_NODE, CTX_EPOCH_LEAF, CTX_EPOCH_NODE};
use crate::ids::Hash32;

/// The hash contexts of one kind of tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeDomain {
    /// Name used in errors.
    pub name: &'static str,
    leaf: &'static str,
    node: &'static str,
}

/// A user's chain tree: leaf data is a 32-byte event hash.
pub const CHAIN_TREE: TreeDomain = TreeDomain {
    name: "chain tree",
    leaf: CTX_CHAIN_LEAF,
    node: CTX_CHAIN_NODE,
};

/// The epoch tree: leaf data is a canonical checkpoint.
pub const EPOCH_TREE: TreeDomain = TreeDomain {
    name: "epoch tree",
    leaf: CTX_EPOCH_LEAF,
    node: CTX_EPOCH_NODE,
};

/// A model's training-set tree: leaf data is `u64 seq || event hash` of each input event,
/// in ascending seq (docs/FORMAT.md §15.4).
pub const TRAINING_SET: TreeDomain = TreeDomain {
    name: "training set",
    leaf: hash::CTX_TRAINING_LEAF,
    node: hash::CTX_TRAINING_NODE,
};

/// A seal's batch tree (format version 2): leaf data is a 32-byte event hash, in the order
/// the batch was sealed (docs/FORMAT.md §5.4).
pub const SEAL_TREE: TreeDomain = TreeDomain {
    name: "seal tree",
    leaf: hash::CTX_SEAL_LEAF,
    node: hash::CTX_SEAL_NODE,
};

impl TreeDomain {
    /// Hash of a leaf's data.
    pub fn leaf(&self, data: &[u8]) -> Hash32 {
        hash::hash_parts(self.leaf, &[data])
    }
    /// Hash of an inner node.
    pub fn node(&self, left: &Hash32, right: &Hash32) -> Hash32 {
        hash::hash_parts(self.node, &[&left.0, &right.0])
    }
    /// Root of a tree with no leaves.
    pub fn empty_root(&self) -> Hash32 {
        hash::hash_parts(hash::CTX_EMPTY_TREE, &[])
    }
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A whole tree kept level by level, for proofs of any leaf in O(log n).
///
/// In an RFC 9162 tree a level's last node without a sibling moves up unchanged, so the
/// levels below give every subtree hash the RFC's recursive definition needs.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    domain: TreeDomain,
    levels: Vec<Vec<Hash32>>,
}

impl MerkleTree {
    /// Builds the tree over already leaf-hashed values.
    pub fn from_leaf_hashes(domain: TreeDomain, leaves: Vec<Hash32>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("loop condition");
            let above = below
                .chunks(2)
                .map(|p| match p {
                    [l, r] => domain.node(l, r),
                    [single] => *single,
                    _ => unreachable!("chunks(2)"),
                })
                .collect();
            levels.push(above);
        }
        Self { domain, levels }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &[Hash32] {
        &self.levels[0]
    }

    /// The tree head (RFC 9162 MTH).
    pub fn root(&self) -> Hash32 {
        match self.levels.last() {
            Some(top) if top.len() == 1 => top[0],
            _ => self.domain.empty_root(),
        }
    }

    /// MTH of leaves `[lo, hi)` (non-empty); O(1) for aligned power-of-two ranges.
    fn subtree(&self, lo: u64, hi: u64) -> Hash32 {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(lo >> level) as usize];
        }
        let k = split_point(n);
        self.domain
            .node(&self.subtree(lo, lo + k), &self.subtree(lo + k, hi))
    }

    /// Inclusion proof of leaf `index` (RFC 9162 §2.1.3.1, PATH).
    pub fn inclusion_proof(&self, index: u64) -> Option<InclusionProof> {
        if index >= self.size() {
            return None;
        }
        let mut path = Vec::new();
        self.path(index, 0, self.size(), &mut path);
        path.reverse();
        Some(InclusionProof {
            index,
            size: self.size(),
            path,
        })
    }

    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash32>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            out.push(self.subtree(lo + k, hi));
            self.path(m, lo, lo + k, out);
        } else {
            out.push(self.subtree(lo, lo + k));
            self.path(m - k, lo + k, hi, out);
        }
    }

    /// Consistency proof from the first `old_size` leaves to the whole tree
    /// (RFC 9162 §2.1.4.1, SUBPROOF).
    pub fn consistency_proof(&self, old_size: u64) -> Option<ConsistencyProof> {
        if old_size == 0 || old_size > self.size() {
            return None;
        }
        let mut path = Vec::new();
        self.subproof(old_size, 0, self.size(), true, &mut path);
        path.reverse();
        Some(ConsistencyProof {
            old_size,
            new_size: self.size(),
            path,
        })
    }

    fn subproof(&self, m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<Hash32>) {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push(self.subtree(lo, hi));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            out.push(self.subtree(lo + k, hi));
            self.subproof(m, lo, lo + k, complete, out);
        } else {
            out.push(self.subtree(lo, lo + k));
            self.subproof(m - k, lo + k, hi, false, out);
        }
    }
}

/// Proof that a leaf is at `index` in a tree of `size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Leaf index, from 0.
    pub index: u64,
    /// Tree size.
    pub size: u64,
    /// Sibling hashes from the leaf up.
    pub path: Vec<Hash32>,
}

impl InclusionProof {
    /// Recomputes the root from a leaf hash (RFC 9162 §2.1.3.2) and compares it.
    pub fn verify(
        &self,
        domain: TreeDomain,
        leaf: &Hash32,
        root: &Hash32,
    ) -> Result<(), ProofError> {
        verify_inclusion(domain, self.index, self.size, &self.path, leaf, root)
    }
}

/// RFC 9162 §2.1.3.2: whether `path` leads from `leaf` at `index` in a tree of `size` leaves
/// to `root`.
pub fn verify_inclusion(
    domain: TreeDomain,
    index: u64,
    size: u64,
    path: &[Hash32],
    leaf: &Hash32,
    root: &Hash32,
) -> Result<(), ProofError> {
    InclusionCheck { index, size, path }.run(domain, leaf, root)
}

struct InclusionCheck<'a> {
    index: u64,
    size: u64,
    path: &'a [Hash32],
}

impl InclusionCheck<'_> {
    fn run(&self, domain: TreeDomain, leaf: &Hash32, root: &Hash32) -> Result<(), ProofError> {
        if self.index >= self.size {
            return Err(ProofError::IndexOutOfRange {
                tree: domain.name,
                index: self.index,
                size: self.size,
            });
        }
        let (mut fnode, mut snode) = (self.index, self.size - 1);
        let mut r = *leaf;
        for p in self.path {
            if snode == 0 {
                return Err(ProofError::WrongLength { tree: domain.name });
            }
            if fnode & 1 == 1 || fnode == snode {
                r = domain.node(p, &r);
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            } else {
                r = domain.node(&r, p);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        if snode != 0 {
            return Err(ProofError::WrongLength { tree: domain.name });
        }
        if r != *root {
            return Err(ProofError::RootMismatch { tree: domain.name });
        }
        Ok(())
    }
}

/// Proof that a tree of `old_size` leaves is a prefix of a tree of `new_size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// Size of the older tree.
    pub old_size: u64,
    /// Size of the newer tree.
    pub new_size: u64,
    /// Proof hashes.
    pub path: Vec<Hash32>,
}

impl ConsistencyProof {
    /// Checks both roots against the proof (RFC 9162 §2.1.4.2).
    pub fn verify(
        &self,
        domain: TreeDomain,
        old_root: &Hash32,
        new_root: &Hash32,
    ) -> Result<(), ProofError> {
        let tree = domain.name;
        if self.old_size == 0 || self.old_size > self.new_size {
            return Err(ProofError::IndexOutOfRange {
                tree,
                index: self.old_size,
                size: self.new_size,
            });
        }
        if self.old_size == self.new_size {
            if !self.path.is_empty() {
                return Err(ProofError::WrongLength { tree });
            }
            return if old_root == new_root {
                Ok(())
            } else {
                Err(ProofError::RootMismatch { tree })
            };
        }
        let mut path: Vec<Hash32> = Vec::with_capacity(self.path.len() + 1);
        if self.old_size.is_power_of_two() {
            path.push(*old_root);
        }
        path.extend_from_slice(&self.path);
        let Some((first, rest)) = path.split_first() else {
            return Err(ProofError::WrongLength { tree });
        };
        let (mut fnode, mut snode) = (self.old_size - 1, self.new_size - 1);
        while fnode & 1 == 1 {
            fnode >>= 1;
            snode >>= 1;
        }
        let (mut fr, mut sr) = (*first, *first);
        for c in rest {
            if snode == 0 {
                return Err(ProofError::WrongLength { tree });
            }
            if fnode & 1 == 1 || fnode == snode {
                fr = domain.node(c, &fr);
                sr = domain.node(c, &sr);
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            } else {
                sr = domain.node(&sr, c);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        if snode != 0 {
            return Err(ProofError::WrongLength { tree });
        }
        if fr != *old_root || sr != *new_root {
            return Err(ProofError::RootMismatch { tree });
        }
        Ok(())
    }
}

/// An append-only accumulator: the roots of the perfect subtrees ("peaks") of a growing
/// tree, O(log n) state. Its root equals [`MerkleTree::root`] over the same leaves, because
/// an RFC 9162 tree is the right fold of its peaks, largest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accumulator {
    size: u64,
    peaks: Vec<Hash32>,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self {
            size: 0,
            peaks: Vec::new(),
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The peaks, largest (leftmost) first: one per set bit of `size`.
    pub fn peaks(&self) -> &[Hash32] {
        &self.peaks
    }

    /// Rebuilds an accumulator from saved peaks; `None` if their number does not match
    /// `size`.
    pub fn from_peaks(size: u64, peaks: Vec<Hash32>) -> Option<Self> {
        (peaks.len() == size.count_ones() as usize).then_some(Self { size, peaks })
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, domain: TreeDomain, leaf: Hash32) {
        self.push_completing(domain, leaf, |_, _| {});
    }

    /// Appends one leaf hash and hands `completed` every perfect subtree the leaf
    /// completes, as `(level, hash)` from the leaf itself (level 0) up: the nodes an
    /// append-only log stores once (`crate::epoch_log`).
    pub fn push_completing(
        &mut self,
        domain: TreeDomain,
        leaf: Hash32,
        mut completed: impl FnMut(u8, Hash32),
    ) {
        let mut h = leaf;
        let mut s = self.size;
        let mut level = 0u8;
        completed(level, h);
        while s & 1 == 1 {
            let left = self.peaks.pop().expect("one peak per set bit of size");
            h = domain.node(&left, &h);
            s >>= 1;
            level += 1;
            completed(level, h);
        }
        self.peaks.push(h);
        self.size += 1;
    }

    /// The tree head.
    pub fn root(&self, domain: TreeDomain) -> Hash32 {
        let mut it = self.peaks.iter().rev();
        match it.next() {
            None => domain.empty_root(),
            Some(last) => it.fold(*last, |acc, p| domain.node(p, &acc)),
        }
    }
}

impl Default for Accumulator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash32> {
        (0..n).map(|i| CHAIN_TREE.leaf(&i.to_be_bytes())).collect()
    }

    /// MTH straight from RFC 9162's recursive definition, as a reference.
    fn reference_root(l: &[Hash32]) -> Hash32 {
        match l.len() {
            0 => CHAIN_TREE.empty_root(),
            1 => l[0],
            n => {
                let k = split_point(n as u64) as usize;
                CHAIN_TREE.node(&reference_root(&l[..k]), &reference_root(&l[k..]))
            }
        }
    }

    #[test]
    fn every_proof_of_every_small_tree_verifies() {
        for n in 1..=70u64 {
            let t = MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves(n));
            let root = t.root();
            assert_eq!(root, reference_root(t.leaves()), "n={n}");
            let mut acc = Accumulator::new();
            for l in t.leaves() {
                acc.push(CHAIN_TREE, *l);
            }
            assert_eq!(acc.root(CHAIN_TREE), root, "accumulator n={n}");
            for i in 0..n {
                let p = t.inclusion_proof(i).unwrap();
                assert!(p.path.len() <= 64 - (n.leading_zeros() as usize) + 1);
                p.verify(CHAIN_TREE, &t.leaves()[i as usize], &root)
                    .unwrap();
                // the same proof must not verify another leaf or in the epoch domain
                let other = t.leaves()[((i + 1) % n) as usize];
                if n > 1 {
                    assert!(p.verify(CHAIN_TREE, &other, &root).is_err());
                }
                assert!(
                    p.verify(EPOCH_TREE, &t.leaves()[i as usize], &root)
                        .is_err()
                        || n == 1
                );
            }
            for m in 1..=n {
                let old = MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves(m));
                let c = t.consistency_proof(m).unwrap();
                c.verify(CHAIN_TREE, &old.root(), &root).unwrap();
                if m < n {
                    assert!(c.verify(CHAIN_TREE, &root, &old.root()).is_err());
                }
            }
        }
    }

    proptest! {
        #[test]
        fn flipped_proof_byte_is_detected(n in 2u64..300, idx in any::<prop::sample::Index>(),
                                          pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let t = MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves(n));
            let i = idx.index(n as usize) as u64;
            let mut p = t.inclusion_proof(i).unwrap();
            let flat = p.path.len() * 32;
            let at = pos.index(flat);
            p.path[at / 32].0[at % 32] ^= 1 << bit;
            prop_assert!(p.verify(CHAIN_TREE, &t.leaves()[i as usize], &t.root()).is_err());
        }

        #[test]
        fn consistency_detects_any_change(n in 3u64..300, m_idx in any::<prop::sample::Index>(),
                                          pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let t = MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves(n));
            let m = 1 + m_idx.index((n - 1) as usize) as u64;
            let old = MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves(m));
            let mut c = t.consistency_proof(m).unwrap();
            prop_assume!(!c.path.is_empty());
            let at = pos.index(c.path.len() * 32);
            c.path[at / 32].0[at % 32] ^= 1 << bit;
            prop_assert!(c.verify(CHAIN_TREE, &old.root(), &t.root()).is_err());
        }

        #[test]
        fn big_trees_prove_random_leaves(n in 1u64..5000, i in any::<prop::sample::Index>()) {
            let t = MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves(n));
            let i = i.index(n as usize) as u64;
            let p = t.inclusion_proof(i).unwrap();
            prop_assert!(p.verify(CHAIN_TREE, &t.leaves()[i as usize], &t.root()).is_ok());
        }
    }
}
