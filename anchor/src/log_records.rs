//! The epoch log's stored records, in binary (`mnemo-epoch-log` bucket, store version 2):
//!
//! - a **tile** `t.<level>.<tile>`: complete nodes `(level, 16·tile + i)` for `i` from 0, each
//!   32 bytes, concatenated (a partial tile grows as the log does; a full one holds 16);
//! - a user's **record** `l.<user>`: `u8 1 || u64 count || leaf*`, the user's leaves past
//!   the last full chunk (fewer than [`CHUNK`]), oldest first; `count` is how many leaves
//!   the user has in all;
//! - a user's **chunk** `l.<user>.<j>`: leaves `16·j .. 16·j + 15` of the user, written once;
//! - a **leaf**: `u64 leaf index || u64 epoch || u64 seq || [32] head || [32] root` (88
//!   bytes; the user is the key's).
//!
//! Integers are big-endian. Nothing here does I/O.

use mnemo_core::epoch_log::NodeId;
use mnemo_core::{Checkpoint, Hash32, Seq, UserId};

/// Nodes per tile, and leaves per user chunk.
pub(crate) const CHUNK: u64 = 16;

/// Bytes of one encoded leaf.
const LEAF_LEN: usize = 88;

/// One of a user's leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UserLeaf {
    /// Its index in the log.
    pub(crate) leaf: u64,
    /// The epoch that appended it.
    pub(crate) epoch: u64,
    /// The checkpoint.
    pub(crate) checkpoint: Checkpoint,
}

/// The tile holding node `id`, and the node's place in it.
pub(crate) fn tile_of((level, index): NodeId) -> ((u8, u64), usize) {
    ((level, index / CHUNK), (index % CHUNK) as usize)
}

pub(crate) fn tile_key((level, tile): (u8, u64)) -> String {
    format!("t.{level}.{tile}")
}

pub(crate) fn record_key(user: &UserId) -> String {
    format!("l.{user}")
}

pub(crate) fn chunk_key(user: &UserId, j: u64) -> String {
    format!("l.{user}.{j}")
}

/// The node at `place` of a tile, if the tile holds it.
pub(crate) fn tile_node(tile: &[u8], place: usize) -> Option<Hash32> {
    tile.get(place * 32..place * 32 + 32)
        .map(|b| Hash32(b.try_into().expect("32 bytes")))
}

fn encode_leaf(out: &mut Vec<u8>, l: &UserLeaf) {
    out.extend_from_slice(&l.leaf.to_be_bytes());
    out.extend_from_slice(&l.epoch.to_be_bytes());
    out.extend_from_slice(&l.checkpoint.seq.0.to_be_bytes());
    out.extend_from_slice(&l.checkpoint.head.0);
    out.extend_from_slice(&l.checkpoint.root.0);
}

fn decode_leaves(user: &UserId, b: &[u8]) -> Option<Vec<UserLeaf>> {
    if !b.len().is_multiple_of(LEAF_LEN) {
        return None;
    }
    let u64_at = |c: &[u8], i: usize| u64::from_be_bytes(c[i..i + 8].try_into().expect("8"));
    let h_at = |c: &[u8], i: usize| Hash32(c[i..i + 32].try_into().expect("32"));
    Some(
        b.chunks(LEAF_LEN)
            .map(|c| UserLeaf {
                leaf: u64_at(c, 0),
                epoch: u64_at(c, 8),
                checkpoint: Checkpoint {
                    user: user.clone(),
                    seq: Seq(u64_at(c, 16)),
                    head: h_at(c, 24),
                    root: h_at(c, 56),
                },
            })
            .collect(),
    )
}

/// A user's record: how many leaves in all, and those past the last full chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserRecord {
    pub(crate) count: u64,
    pub(crate) recent: Vec<UserLeaf>,
}

impl UserRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.recent.len() * LEAF_LEN);
        out.push(1);
        out.extend_from_slice(&self.count.to_be_bytes());
        for l in &self.recent {
            encode_leaf(&mut out, l);
        }
        out
    }

    pub(crate) fn decode(user: &UserId, b: &[u8]) -> Option<Self> {
        if b.len() < 9 || b[0] != 1 {
            return None;
        }
        let count = u64::from_be_bytes(b[1..9].try_into().expect("8"));
        let recent = decode_leaves(user, &b[9..])?;
        (recent.len() as u64 == count % CHUNK).then_some(Self { count, recent })
    }

    /// Full chunks stored apart.
    pub(crate) fn chunks(&self) -> u64 {
        self.count / CHUNK
    }

    /// Appends a leaf; returns the chunk it completes (its number and bytes), to be
    /// written before the record.
    pub(crate) fn push(&mut self, l: UserLeaf) -> Option<(u64, Vec<u8>)> {
        self.recent.push(l);
        self.count += 1;
        if self.recent.len() as u64 == CHUNK {
            let j = self.count / CHUNK - 1;
            Some((j, encode_chunk(&std::mem::take(&mut self.recent))))
        } else {
            None
        }
    }
}

pub(crate) fn encode_chunk(leaves: &[UserLeaf]) -> Vec<u8> {
    let mut out = Vec::with_capacity(leaves.len() * LEAF_LEN);
    for l in leaves {
        encode_leaf(&mut out, l);
    }
    out
}

/// A full chunk's leaves.
pub(crate) fn decode_chunk(user: &UserId, b: &[u8]) -> Option<Vec<UserLeaf>> {
    decode_leaves(user, b).filter(|v| v.len() as u64 == CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(user: &UserId, i: u64) -> UserLeaf {
        UserLeaf {
            leaf: 100 + i,
            epoch: 7 + i,
            checkpoint: Checkpoint {
                user: user.clone(),
                seq: Seq(i + 1),
                head: Hash32([i as u8; 32]),
                root: Hash32([!(i as u8); 32]),
            },
        }
    }

    #[test]
    fn a_record_moves_each_full_chunk_out_and_round_trips() {
        let u = UserId::new("alice").unwrap();
        let mut r = UserRecord::default();
        let mut chunks = Vec::new();
        for i in 0..40 {
            if let Some(c) = r.push(leaf(&u, i)) {
                chunks.push(c);
            }
            assert_eq!(UserRecord::decode(&u, &r.encode()), Some(r.clone()));
        }
        assert_eq!((r.count, r.recent.len(), r.chunks()), (40, 8, 2));
        assert_eq!(chunks.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1]);
        let second = decode_chunk(&u, &chunks[1].1).unwrap();
        assert_eq!(second[0], leaf(&u, 16));
        assert_eq!(r.recent[0], leaf(&u, 32));
        // A record whose count disagrees with what it holds is refused.
        let mut bad = r.encode();
        bad[8] ^= 1;
        assert_eq!(UserRecord::decode(&u, &bad), None);
        assert_eq!(decode_chunk(&u, &chunks[0].1[..88]), None);
    }

    #[test]
    fn nodes_sit_in_tiles_of_sixteen() {
        assert_eq!(tile_of((0, 0)), ((0, 0), 0));
        assert_eq!(tile_of((3, 37)), ((3, 2), 5));
        let tile: Vec<u8> = (0..3u8).flat_map(|i| [i; 32]).collect();
        assert_eq!(tile_node(&tile, 2), Some(Hash32([2; 32])));
        assert_eq!(tile_node(&tile, 3), None);
    }
}
