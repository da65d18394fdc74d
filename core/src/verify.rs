//! The chain verifier: checks a user's whole chain event by event, in bounded memory
//! (besides the sets of memory and grant ids), with signatures verified in batches.
//!
//! Checks (docs/FORMAT.md §8): decoding, user, gap-free sequence from 1, `prev` links,
//! genesis, signer authority under the key history, origin signatures by device keys,
//! payload presence, kind-specific transitions (grants, erasures, access records), and
//! optionally checkpoints met on the way. The first failure, by sequence number, is
//! reported, even when a signature failure is only found when its batch is flushed.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::checkpoint::Checkpoint;
use crate::error::ChainError;
use crate::event::{ErasureTarget, Event, EventBody};
use crate::ids::{GrantId, Hash32, KeyId, MemoryId, Seq, TimestampMs, UserId};
use crate::keys::{self, KeyHistory, KeyRecord, KeyRole, KeyRuleError};
use crate::merkle::{Accumulator, CHAIN_TREE};

/// How many signatures are verified together by default.
pub const DEFAULT_BATCH: usize = 256;

#[derive(Clone)]
struct Pending {
    seq: Seq,
    origin: bool,
    msg: Vec<u8>,
    sig: Signature,
    key: VerifyingKey,
}

struct GrantState {
    grantee: UserId,
    expires_at: Option<TimestampMs>,
    revoked: bool,
}

/// Verifies one user's chain incrementally: [`push`](Self::push) each event in order, then
/// [`finish`](Self::finish).
pub struct ChainVerifier {
    user: UserId,
    next: Seq,
    prev: Hash32,
    keys: KeyHistory,
    trusted_roots: Option<HashSet<KeyId>>,
    memories: HashSet<MemoryId>,
    grants: HashMap<GrantId, GrantState>,
    acc: Accumulator,
    checkpoints: BTreeMap<Seq, Checkpoint>,
    pending: Vec<Pending>,
    batch_size: usize,
    verified: u64,
    failed: Option<ChainError>,
    /// Full batches handed to the caller instead of verified here.
    deferred: Option<Vec<SignatureBatch>>,
}

/// Signatures of consecutive events, to be verified together, possibly on another thread
/// (see [`ChainVerifier::with_deferred_signatures`]).
#[derive(Clone)]
pub struct SignatureBatch {
    items: Vec<Pending>,
}

impl SignatureBatch {
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
            return Ok(self.items.len() as u64);
        }
        let bad = self
            .items
            .iter()
            .find(|p| p.key.verify(&p.msg, &p.sig).is_err())
            .unwrap_or(&self.items[0]);
        Err(if bad.origin {
            ChainError::BadOriginSignature { seq: bad.seq }
        } else {
            ChainError::BadSignature { seq: bad.seq }
        })
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
        Self {
            user,
            next: Seq::FIRST,
            prev: Hash32::ZERO,
            keys: KeyHistory::default(),
            trusted_roots: None,
            memories: HashSet::new(),
            grants: HashMap::new(),
            acc: Accumulator::new(),
            checkpoints: BTreeMap::new(),
            pending: Vec::with_capacity(DEFAULT_BATCH),
            batch_size: DEFAULT_BATCH,
            verified: 0,
            failed: None,
            deferred: None,
        }
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
            let items = std::mem::replace(&mut self.pending, Vec::with_capacity(self.batch_size));
            self.verified += items.len() as u64;
            return Some(SignatureBatch { items });
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
        if checkpoint.seq < self.next {
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
        &self.keys
    }

    /// The checkpoint after the events pushed so far.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        (self.acc.size() > 0).then(|| Checkpoint {
            user: self.user.clone(),
            seq: Seq(self.acc.size()),
            head: self.prev,
            root: self.acc.root(CHAIN_TREE),
        })
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
                seq: self.next,
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
                have: self.acc.size(),
                checkpoint: *seq,
            });
        }
        let checkpoint = self.checkpoint();
        Ok(ChainSummary {
            checkpoint,
            signatures: self.verified,
            keys: self.keys.len(),
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
        let batch = SignatureBatch {
            items: std::mem::replace(&mut self.pending, Vec::with_capacity(self.batch_size)),
        };
        if let Some(ready) = &mut self.deferred {
            self.verified += batch.len() as u64;
            ready.push(batch);
            return Ok(());
        }
        self.verified += batch.verify()?;
        Ok(())
    }

    fn signer(&self, event: &Event) -> Result<VerifyingKey, ChainError> {
        let seq = event.seq;
        if seq == Seq::FIRST {
            let EventBody::KeyAdded {
                key,
                role: KeyRole::Custody,
            } = &event.body
            else {
                return Err(ChainError::BadGenesis("first event must add a custody key"));
            };
            if key.id() != event.signer {
                return Err(ChainError::BadGenesis(
                    "first event must be signed by the key it adds",
                ));
            }
            if let Some(roots) = &self.trusted_roots
                && !roots.contains(&event.signer)
            {
                return Err(ChainError::BadGenesis("genesis key is not a trusted root"));
            }
            return Ok(key.0);
        }
        let rec = self.keys.get(&event.signer).ok_or(ChainError::UnknownKey {
            seq,
            key: event.signer,
        })?;
        allowed(rec, KeyRole::Custody, seq, event.signer)?;
        Ok(rec.key.0)
    }

    fn check(&mut self, event: &Event, hash: Hash32) -> Result<(), ChainError> {
        let seq = event.seq;
        if event.user != self.user {
            return Err(ChainError::WrongUser { seq });
        }
        if seq != self.next {
            return Err(ChainError::SeqGap {
                expected: self.next,
                found: seq,
            });
        }
        if event.prev != self.prev {
            return Err(ChainError::BrokenLink {
                seq,
                expected: self.prev,
                found: event.prev,
            });
        }
        let signer = self.signer(event)?;
        let is_memory = matches!(event.body, EventBody::MemoryIngested { .. });
        if is_memory != event.payload.is_some() {
            return Err(ChainError::InvalidTransition {
                seq,
                reason: "a payload commitment belongs to memory_ingested events only",
            });
        }
        let origin = match (&event.origin, &event.payload) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ChainError::InvalidTransition {
                    seq,
                    reason: "origin signature without payload",
                });
            }
            (Some(o), Some(commitment)) => {
                let rec = self
                    .keys
                    .get(&o.key)
                    .ok_or(ChainError::UnknownKey { seq, key: o.key })?;
                allowed(rec, KeyRole::Device, seq, o.key)?;
                Some(Pending {
                    seq,
                    origin: true,
                    msg: keys::origin_signing_message(&event.user, commitment),
                    sig: o.signature.0,
                    key: rec.key.0,
                })
            }
        };
        self.apply(event)?;
        self.pending.push(Pending {
            seq,
            origin: false,
            msg: keys::event_signing_message(&hash).to_vec(),
            sig: event.signature.0,
            key: signer,
        });
        self.pending.extend(origin);
        self.prev = hash;
        self.next = seq.next();
        self.acc.push(CHAIN_TREE, CHAIN_TREE.leaf(&hash.0));
        if let Some(cp) = self.checkpoints.remove(&seq) {
            if cp.head != hash || cp.user != self.user {
                return Err(ChainError::CheckpointMismatch { seq, what: "head" });
            }
            if cp.root != self.acc.root(CHAIN_TREE) {
                return Err(ChainError::CheckpointMismatch { seq, what: "root" });
            }
        }
        Ok(())
    }

    /// Kind-specific rules and state changes.
    fn apply(&mut self, event: &Event) -> Result<(), ChainError> {
        let seq = event.seq;
        let bad = |reason| ChainError::InvalidTransition { seq, reason };
        match &event.body {
            EventBody::KeyAdded { .. }
            | EventBody::KeyRotated { .. }
            | EventBody::KeyRevoked { .. } => {
                self.keys
                    .apply(seq, event.signer, &event.body)
                    .map_err(|e| match e {
                        KeyRuleError::Unknown(key) => ChainError::UnknownKey { seq, key },
                        other => bad(other.reason()),
                    })?;
            }
            EventBody::MemoryIngested { memory } => {
                if !self.memories.insert(*memory) {
                    return Err(bad("memory id used twice"));
                }
            }
            EventBody::MemoryErased { target } => {
                if let ErasureTarget::Memory(m) = target
                    && !self.memories.contains(m)
                {
                    return Err(ChainError::UnknownMemory { seq, memory: *m });
                }
            }
            EventBody::GrantCreated {
                grant,
                grantee,
                expires_at,
                ..
            } => {
                if *grantee == self.user {
                    return Err(bad("grant to the owner"));
                }
                if self.grants.contains_key(grant) {
                    return Err(ChainError::BadGrant {
                        seq,
                        grant: *grant,
                        reason: "created twice",
                    });
                }
                self.grants.insert(
                    *grant,
                    GrantState {
                        grantee: grantee.clone(),
                        expires_at: *expires_at,
                        revoked: false,
                    },
                );
            }
            EventBody::GrantRevoked { grant } => match self.grants.get_mut(grant) {
                Some(g) if !g.revoked => g.revoked = true,
                Some(_) => {
                    return Err(ChainError::BadGrant {
                        seq,
                        grant: *grant,
                        reason: "already revoked",
                    });
                }
                None => {
                    return Err(ChainError::BadGrant {
                        seq,
                        grant: *grant,
                        reason: "does not exist",
                    });
                }
            },
            EventBody::AccessRecorded {
                accessor,
                grant,
                memories,
                ..
            } => {
                let reason = match self.grants.get(grant) {
                    None => Some("does not exist"),
                    Some(g) if g.revoked => Some("was revoked before this access"),
                    Some(g) if g.expires_at.is_some_and(|x| event.timestamp >= x) => {
                        Some("had expired before this access")
                    }
                    Some(g) if g.grantee != *accessor => Some("was not given to this accessor"),
                    Some(_) => None,
                };
                if let Some(reason) = reason {
                    return Err(ChainError::BadGrant {
                        seq,
                        grant: *grant,
                        reason,
                    });
                }
                if let Some(m) = memories.iter().find(|m| !self.memories.contains(m)) {
                    return Err(ChainError::UnknownMemory { seq, memory: *m });
                }
            }
        }
        Ok(())
    }
}

fn allowed(rec: &KeyRecord, role: KeyRole, seq: Seq, key: KeyId) -> Result<(), ChainError> {
    if rec.role != role {
        return Err(ChainError::KeyNotAllowed {
            seq,
            key,
            reason: match role {
                KeyRole::Custody => "not a custody key",
                KeyRole::Device => "not a device key",
            },
        });
    }
    if rec.retired.is_some() {
        return Err(ChainError::KeyNotAllowed {
            seq,
            key,
            reason: "retired (rotated or revoked) before this event",
        });
    }
    Ok(())
}
