//! A chain's rules state as kept between uses ([`ChainSnapshot`]): what [`ChainState`]
//! holds after its first `len` events, so that a process loads a cold user from the
//! snapshot and the events after it instead of replaying the chain from genesis.
//!
//! A snapshot is a cache, never a source of truth. Whoever loads one checks that it is
//! the user's, that the chain's event at `len` is `head` (the hash chain then fixes every
//! event before it), and replays the rest under the rules; whatever does not hold is
//! thrown away and the state is rebuilt from genesis. (The ledger also authenticates the
//! bytes it stored: `mnemo-ledger`'s snapshot store.)

use serde::{Deserialize, Serialize};

use crate::capture_marks::CaptureMarks;
use crate::chain_state::{ChainState, Processing};
use crate::grant::Grant;
use crate::ids::{Hash32, KeyId, MemoryId, Seq, UserId};
use crate::keys::{KeyHistory, KeyRecord};
use crate::merkle::Accumulator;

/// [`ChainState`] after `len` events ending in `head`, as plain data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChainSnapshot {
    /// The chain's user.
    pub user: UserId,
    /// Events applied.
    pub len: u64,
    /// The hash of event `len`.
    pub head: Hash32,
    acc: Accumulator,
    keys: Vec<KeyRecord>,
    memories: Vec<MemoryId>,
    captures: Vec<(Option<KeyId>, String, CaptureMarks)>,
    memory_seq: Vec<(MemoryId, Seq)>,
    #[serde(default = "first")]
    seqs_from: Seq,
    grants: Vec<Grant>,
    processing: Processing,
    version: u8,
}

impl ChainState {
    /// This state as a snapshot.
    pub fn snapshot(&self) -> ChainSnapshot {
        ChainSnapshot {
            user: self.user.clone(),
            len: self.len(),
            head: self.head(),
            acc: self.acc.clone(),
            keys: self.keys.iter().map(|(_, r)| r.clone()).collect(),
            memories: self.memories.iter().copied().collect(),
            captures: self
                .captures
                .iter()
                .map(|((k, stream), m)| (*k, stream.clone(), m.clone()))
                .collect(),
            memory_seq: self.memory_seq.iter().map(|(m, s)| (*m, *s)).collect(),
            seqs_from: self.seqs_from,
            grants: self.grants.values().cloned().collect(),
            processing: self.processing.clone(),
            version: self.version,
        }
    }

    /// The state a snapshot describes; `None` when it is not self-consistent (its tree is
    /// not of `len` leaves, a key id repeats, its head and length disagree). That it is
    /// the chain's own is for the caller to check (see the module's text).
    pub fn from_snapshot(s: ChainSnapshot) -> Option<Self> {
        if s.acc.size() != s.len || (s.len == 0) != (s.head == Hash32::ZERO) {
            return None;
        }
        let mut keys = KeyHistory::default();
        for k in s.keys {
            if !keys.insert(k) {
                return None;
            }
        }
        Some(Self {
            user: s.user,
            next: Seq(s.len + 1),
            prev: s.head,
            acc: s.acc,
            keys,
            memories: s.memories.into_iter().collect(),
            captures: s
                .captures
                .into_iter()
                .map(|(k, stream, m)| ((k, stream), m))
                .collect(),
            memory_seq: s.memory_seq.into_iter().collect(),
            seqs_from: s.seqs_from,
            grants: s.grants.into_iter().map(|g| (g.id, g)).collect(),
            processing: s.processing,
            version: s.version,
        })
    }
}

fn first() -> Seq {
    Seq::FIRST
}
