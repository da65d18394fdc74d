//! The chain verifier: checks a user's whole chain event by event, in bounded memory
//! (besides the sets of memory and grant ids), with signatures verified in batches.
//!
//! The rules are [`ChainState`]'s (docs/FORMAT.md §8): decoding, user, gap-free sequence
//! from 1, `prev` links, genesis, signer authority under the key history, origin
//! signatures by device keys, payload presence, kind-specific transitions (grants,
//! erasures, access records). The verifier adds signatures (in batches), pinned genesis
//! keys and checkpoints met on the way. The first failure, by sequence number, is
//! reported, even when a signature failure is only found when its batch is flushed.

use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::chain_state::{ChainState, SignatureCheck};
use crate::checkpoint::Checkpoint;
use crate::error::ChainError;
use crate::event::{Event, EventBody};
use crate::ids::{Hash32, KeyId, Seq, UserId};
use crate::keys::{self, KeyHistory};
use crate::processing::{SetMember, TrainingSet};

/// How many signatures are verified together by default.
pub const DEFAULT_BATCH: usize = 256;

type Pending = SignatureCheck;

/// Verifies one user's chain incrementally: [`push`](Self::push) each event in order, then
/// [`finish`](Self::finish).
pub struct ChainVerifier {
    state: ChainState,
    trusted_roots: Option<HashSet<KeyId>>,
    checkpoints: BTreeMap<Seq, Checkpoint>,
    pending: Vec<Pending>,
    batch_size: usize,
    verified: u64,
    failed: Option<ChainError>,
    /// Full batches handed to the caller instead of verified here.
    deferred: Option<Vec<SignatureBatch>>,
    /// Seals (format version 2) whose signature is pending or verified here: the last
    /// [`RECENT_SEALS`], since the events of one batch are close together in a chain.
    recent: VecDeque<Seen>,
    /// Seals verified before, by anyone sharing the cache.
    cache: Option<Arc<SealCache>>,
    /// Digests of the seals in `pending`, for the cache once they verify.
    pending_seals: Vec<Hash32>,
    /// The hash of each event that added a memory, by seq (ascending, 40 bytes each): a
    /// published training set's root is recomputed from them (docs/FORMAT.md §15.4).
    memory_events: Vec<SetMember>,
}

/// A seal's signature as checked: key, signed message, signature.
#[derive(Clone, PartialEq, Eq)]
struct Seen {
    // The signature first: two seals differ there from the first byte, so comparing
    // against the recent ones stops at once.
    sig: [u8; 64],
    msg: [u8; 72],
    key: [u8; 32],
}

impl Seen {
    /// The digest [`SealCache`] keys it by: blake3 of key, signed message and signature.
    fn digest(&self) -> Hash32 {
        let mut h = blake3::Hasher::new();
        h.update(&self.key);
        h.update(&self.msg);
        h.update(&self.sig);
        Hash32(*h.finalize().as_bytes())
    }
}

/// How many recent seals a chain verifier remembers on its own.
pub const RECENT_SEALS: usize = 64;

/// Seals whose signature verified, shared between verifiers (e.g. every chain of a server,
/// `mnemo-audit verify --all-users`), so each batch signature is checked once however many
/// chains it covers. Keyed by a blake3 digest of the key, the signed message and the
/// signature.
#[derive(Debug, Default)]
pub struct SealCache {
    verified: Mutex<HashSet<Hash32>>,
}

impl SealCache {
    /// An empty cache.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Records seals whose signature verified.
    pub fn insert(&self, digests: impl IntoIterator<Item = Hash32>) {
        self.verified
            .lock()
            .expect("seal cache poisoned")
            .extend(digests);
    }

    /// Whether a seal's signature verified before.
    pub fn contains(&self, digest: &Hash32) -> bool {
        self.verified
            .lock()
            .expect("seal cache poisoned")
            .contains(digest)
    }

    /// Number of seals.
    pub fn len(&self) -> usize {
        self.verified.lock().expect("seal cache poisoned").len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Signatures of consecutive events, to be verified together, possibly on another thread
/// (see [`ChainVerifier::with_deferred_signatures`]).
#[derive(Clone)]
pub struct SignatureBatch {
    items: Vec<Pending>,
    /// Seals among the items, recorded in `cache` once the batch verifies.
    seals: Vec<Hash32>,
    cache: Option<Arc<SealCache>>,
}

impl SignatureBatch {
    /// A batch of the given checks.
    pub fn new(items: Vec<SignatureCheck>) -> Self {
        Self {
            items,
            seals: Vec::new(),
            cache: None,
        }
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The lowest sequence number in the batch.
    pub fn first_seq(&self) -> Option<Seq> {
        self.items.first().map(|p| p.seq)
    }

    /// Verifies every signature; on failure names the first event (by seq) whose custody or
    /// origin signature does not verify.
    pub fn verify(&self) -> Result<u64, ChainError> {
        if self.items.is_empty() {
            return Ok(0);
        }
        let msgs: Vec<&[u8]> = self.items.iter().map(|p| p.msg.as_slice()).collect();
        let sigs: Vec<Signature> = self.items.iter().map(|p| p.sig).collect();
        let keys: Vec<VerifyingKey> = self.items.iter().map(|p| p.key).collect();
        if keys::verify_batch(&msgs, &sigs, &keys) {
            if let Some(c) = &self.cache {
                c.insert(self.seals.iter().copied());
            }
            return Ok(self.items.len() as u64);
        }
        let bad = self
            .items
            .iter()
            .find(|p| !keys::verify_signature(p.key.as_bytes(), &p.msg, &p.sig.to_bytes()))
            .unwrap_or(&self.items[0]);
        Err(bad.error())
    }
}

/// What a verified chain amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// The chain's checkpoint after its last event (`None` for an empty chain).
    pub checkpoint: Option<Checkpoint>,
    /// Number of signatures verified (custody and origin).
    pub signatures: u64,
    /// Keys the chain has added.
    pub keys: usize,
}

impl ChainVerifier {
    /// A verifier for `user`'s chain, starting at seq 1.
    pub fn new(user: UserId) -> Self {
        Self::resume(ChainState::new(user))
    }

    /// A verifier that goes on from `state` (e.g. a checkpoint a view holds, see
    /// [`ChainState::resume`]).
    pub fn resume(state: ChainState) -> Self {
        Self {
            state,
            trusted_roots: None,
            checkpoints: BTreeMap::new(),
            pending: Vec::with_capacity(DEFAULT_BATCH),
            batch_size: DEFAULT_BATCH,
            verified: 0,
            failed: None,
            deferred: None,
            recent: VecDeque::with_capacity(RECENT_SEALS),
            cache: None,
            pending_seals: Vec::new(),
            memory_events: Vec::new(),
        }
    }

    /// Skips seal signatures `cache` holds, and records there those this verifier checks.
    pub fn with_seal_cache(mut self, cache: Arc<SealCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Hands signature batches to the caller ([`take_batch`](Self::take_batch)) instead of
    /// verifying them, so they can be verified on other threads while this one goes on
    /// decoding and linking. The caller then owns the signature verdicts: the chain is
    /// valid only if [`finish`](Self::finish) succeeds *and* every batch verifies; the first
    /// failure is the one with the lowest seq among both.
    pub fn with_deferred_signatures(mut self) -> Self {
        self.deferred = Some(Vec::new());
        self
    }

    /// In deferred mode: the next full batch (or, with `all`, whatever is pending).
    pub fn take_batch(&mut self, all: bool) -> Option<SignatureBatch> {
        let ready = self.deferred.as_mut()?;
        if let Some(b) = ready.pop() {
            return Some(b);
        }
        if all && !self.pending.is_empty() {
            let batch = self.take_pending();
            self.verified += batch.len() as u64;
            return Some(batch);
        }
        None
    }

    /// Accept only chains whose genesis key is one of `roots` (e.g. the ledger's published
    /// keys). Without this, the genesis key is trusted on first use.
    pub fn with_trusted_roots(mut self, roots: impl IntoIterator<Item = KeyId>) -> Self {
        self.trusted_roots = Some(roots.into_iter().collect());
        self
    }

    /// Signatures per batch (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Also check that the chain matches `checkpoint` when it reaches its seq. Must be
    /// called before that event is pushed; [`finish`](Self::finish) fails if the chain ends
    /// before it (a truncated tail).
    ///
    /// Fails when the chain is already past that seq or another checkpoint at the same seq
    /// disagrees with it.
    pub fn expect_checkpoint(&mut self, checkpoint: Checkpoint) -> Result<(), &'static str> {
        if checkpoint.seq < self.state.next_seq() {
            return Err("the chain is already past this checkpoint");
        }
        if let Some(other) = self.checkpoints.get(&checkpoint.seq) {
            return if *other == checkpoint {
                Ok(())
            } else {
                Err("two checkpoints at one seq disagree")
            };
        }
        self.checkpoints.insert(checkpoint.seq, checkpoint);
        Ok(())
    }

    /// The key history so far.
    pub fn keys(&self) -> &KeyHistory {
        self.state.keys()
    }

    /// The chain's state so far.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// The checkpoint after the events pushed so far.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.state.checkpoint()
    }

    /// Decodes and pushes one event in wire form.
    pub fn push_wire(&mut self, bytes: &[u8]) -> Result<(Event, Hash32), ChainError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match Event::from_wire(bytes) {
            Ok((event, hash)) => {
                self.push(&event, hash)?;
                Ok((event, hash))
            }
            Err(source) => Err(self.fail(ChainError::Decode {
                seq: self.state.next_seq(),
                source,
            })),
        }
    }

    /// Pushes the next event with its hash (as returned by [`Event::from_wire`] or
    /// [`Event::hash`]).
    pub fn push(&mut self, event: &Event, hash: Hash32) -> Result<(), ChainError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Err(e) = self.check(event, hash) {
            return Err(self.fail(e));
        }
        if self.pending.len() >= self.batch_size
            && let Err(e) = self.flush()
        {
            return Err(self.fail(e));
        }
        Ok(())
    }

    /// Verifies what is pending and returns the summary.
    /// In deferred mode, take the last batch (`take_batch(true)`) first: what is still
    /// pending here is not verified, and `signatures` counts the signatures handed out.
    pub fn finish(mut self) -> Result<ChainSummary, ChainError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.deferred.is_none() {
            self.flush()?;
        }
        if let Some((seq, _)) = self.checkpoints.first_key_value() {
            return Err(ChainError::Truncated {
                have: self.state.len(),
                checkpoint: *seq,
            });
        }
        let checkpoint = self.checkpoint();
        Ok(ChainSummary {
            checkpoint,
            signatures: self.verified,
            keys: self.state.keys().len(),
        })
    }

    /// Records a failure; a pending signature failure at an earlier seq takes precedence.
    fn fail(&mut self, e: ChainError) -> ChainError {
        let e = match self.flush() {
            Err(sig) if sig.seq() <= e.seq() => sig,
            _ => e,
        };
        self.pending.clear();
        self.failed = Some(e.clone());
        e
    }

    fn flush(&mut self) -> Result<(), ChainError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = self.take_pending();
        if let Some(ready) = &mut self.deferred {
            self.verified += batch.len() as u64;
            ready.push(batch);
            return Ok(());
        }
        self.verified += batch.verify()?;
        Ok(())
    }

    fn take_pending(&mut self) -> SignatureBatch {
        SignatureBatch {
            items: std::mem::replace(&mut self.pending, Vec::with_capacity(self.batch_size)),
            seals: std::mem::take(&mut self.pending_seals),
            cache: self.cache.clone(),
        }
    }

    /// Whether a seal's signature needs checking here: not when this verifier checks it
    /// already (another event of the batch) or the shared cache holds it. `size` is the
    /// seal's batch size: a batch of one is never met again.
    fn seal_is_new(&mut self, sig: &SignatureCheck, size: u32) -> bool {
        if size == 1 && self.cache.is_none() {
            return true;
        }
        let seen = Seen {
            key: sig.key.to_bytes(),
            msg: sig.msg.as_slice().try_into().unwrap_or([0; 72]),
            sig: sig.sig.to_bytes(),
        };
        if self.recent.contains(&seen) {
            return false;
        }
        if let Some(c) = &self.cache {
            let digest = seen.digest();
            if c.contains(&digest) {
                return false;
            }
            self.pending_seals.push(digest);
        }
        if self.recent.len() == RECENT_SEALS {
            self.recent.pop_front();
        }
        self.recent.push_back(seen);
        true
    }

    /// Remembers the events that add memories, and checks a published training set's root
    /// against them (members before this verifier's first event are not known: a resumed
    /// verifier leaves that set's root unchecked, as the chain's rule does).
    fn training_set(&mut self, event: &Event, hash: Hash32) -> Result<(), ChainError> {
        match &event.body {
            EventBody::MemoryIngested { .. } | EventBody::MemoryDerived { .. } => {
                self.memory_events.push(SetMember {
                    seq: event.seq,
                    event_hash: hash,
                });
            }
            EventBody::ModelTrained {
                set: Some(seqs),
                set_root,
                ..
            } => {
                let members: Option<Vec<SetMember>> = seqs
                    .iter()
                    .map(|s| {
                        self.memory_events
                            .binary_search_by_key(s, |m| m.seq)
                            .ok()
                            .map(|i| self.memory_events[i])
                    })
                    .collect();
                if let Some(members) = members
                    && TrainingSet::new(members).map(|t| t.root()) != Some(*set_root)
                {
                    return Err(ChainError::InvalidTransition {
                        seq: event.seq,
                        reason: "the training set's root is not the tree of its members' events",
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check(&mut self, event: &Event, hash: Hash32) -> Result<(), ChainError> {
        let sigs = self.state.check(event, hash)?;
        self.training_set(event, hash)?;
        let sealed = matches!(event.custody, crate::event::Custody::Seal(_));
        let seal_size = match &event.custody {
            crate::event::Custody::Seal(crate::seal::SealLink::Full(s)) => s.size,
            _ => 1,
        };
        let mut checks = Vec::with_capacity(2);
        for s in sigs {
            if !(sealed && s.by == crate::chain_state::Signed::Custody) {
                checks.push(s);
            } else if self.seal_is_new(&s, seal_size) {
                if self.cache.is_some() {
                    // Shared with other chains: verified now, so that they find it in the
                    // cache (interleaved chains would each verify it before a batch of
                    // one of them was flushed).
                    let digest = self.pending_seals.pop().expect("seal_is_new pushed it");
                    if !keys::verify_signature(s.key.as_bytes(), &s.msg, &s.sig.to_bytes()) {
                        return Err(s.error());
                    }
                    self.verified += 1;
                    if let Some(c) = &self.cache {
                        c.insert([digest]);
                    }
                } else {
                    checks.push(s);
                }
            }
        }
        let sigs = checks;
        if event.seq == Seq::FIRST
            && let Some(roots) = &self.trusted_roots
            && !roots.contains(&event.signer)
        {
            return Err(ChainError::BadGenesis("genesis key is not a trusted root"));
        }
        self.pending.extend(sigs);
        if let Some(cp) = self.checkpoints.remove(&event.seq) {
            if cp.head != hash || cp.user != *self.state.user() {
                return Err(ChainError::CheckpointMismatch {
                    seq: event.seq,
                    what: "head",
                });
            }
            if cp.root != self.state.root() {
                return Err(ChainError::CheckpointMismatch {
                    seq: event.seq,
                    what: "root",
                });
            }
        }
        Ok(())
    }
}
