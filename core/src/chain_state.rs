//! A chain's state between events, and the rules that move it: the one place that decides
//! whether an event may extend a chain (docs/FORMAT.md §8), signatures aside.
//!
//! [`ChainState::check`] checks an event against the state (user, gap-free seq, `prev`
//! link, genesis, signer and origin-key authority, payload presence, and the kind rules for
//! keys, memories, erasures, grants and access records) and, when it passes, applies it and
//! returns the signatures still to verify ([`SignatureCheck`]). Verifying them is the
//! caller's (in batches, on other threads). The auditor's [`ChainVerifier`] and the
//! projector both hold a `ChainState`: the verifier from genesis, the projector resumed from
//! the checkpoint its view holds ([`ChainState::resume`]), so both refuse exactly the same
//! events for the same reason.
//!
//! [`ChainVerifier`]: crate::verify::ChainVerifier

use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::{HashMap, HashSet};

use crate::checkpoint::Checkpoint;
use crate::error::ChainError;
use crate::event::{ErasureTarget, Event, EventBody};
use crate::grant::Grant;
use crate::ids::{GrantId, Hash32, KeyId, MemoryId, Seq, UserId};
use crate::keys::{self, KeyHistory, KeyRecord, KeyRole, KeyRuleError};
use crate::merkle::{Accumulator, CHAIN_TREE};

/// A signature an accepted event still needs verified.
#[derive(Clone, Debug)]
pub struct SignatureCheck {
    /// The event's seq.
    pub seq: Seq,
    /// An origin (device) signature rather than the custody signature.
    pub origin: bool,
    /// The signed message.
    pub msg: Vec<u8>,
    /// The signature.
    pub sig: Signature,
    /// The key it must verify under.
    pub key: VerifyingKey,
}

impl SignatureCheck {
    /// The error a failure of this signature is.
    pub fn error(&self) -> ChainError {
        if self.origin {
            ChainError::BadOriginSignature { seq: self.seq }
        } else {
            ChainError::BadSignature { seq: self.seq }
        }
    }
}

/// The signatures of one event: its custody signature and, for a device capture, the
/// origin signature.
#[derive(Clone, Debug)]
pub struct EventSignatures {
    /// The custody signature.
    pub custody: SignatureCheck,
    /// The origin signature, if the event has one.
    pub origin: Option<SignatureCheck>,
}

impl IntoIterator for EventSignatures {
    type Item = SignatureCheck;
    type IntoIter =
        std::iter::Chain<std::iter::Once<SignatureCheck>, std::option::IntoIter<SignatureCheck>>;
    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.custody).chain(self.origin)
    }
}

/// What a chain's rules need to remember: where it ends, its chain tree, its keys, its
/// memories and its grants. Bounded by the number of keys, memories and grants, not events.
#[derive(Clone, Debug)]
pub struct ChainState {
    user: UserId,
    next: Seq,
    prev: Hash32,
    acc: Accumulator,
    keys: KeyHistory,
    memories: HashSet<MemoryId>,
    grants: HashMap<GrantId, Grant>,
}

impl ChainState {
    /// The state of `user`'s chain before its first event.
    pub fn new(user: UserId) -> Self {
        Self {
            user,
            next: Seq::FIRST,
            prev: Hash32::ZERO,
            acc: Accumulator::new(),
            keys: KeyHistory::default(),
            memories: HashSet::new(),
            grants: HashMap::new(),
        }
    }

    /// The state after `len` events ending in `head`, with the chain tree `acc`, the key
    /// history, the memories ingested and the grants created so far (as a view that applied
    /// those events keeps them). `None` when `acc` is not of `len` leaves.
    pub fn resume(
        user: UserId,
        len: u64,
        head: Hash32,
        acc: Accumulator,
        keys: impl IntoIterator<Item = KeyRecord>,
        memories: impl IntoIterator<Item = MemoryId>,
        grants: impl IntoIterator<Item = Grant>,
    ) -> Option<Self> {
        if acc.size() != len || (len == 0) != (head == Hash32::ZERO) {
            return None;
        }
        let mut history = KeyHistory::default();
        for k in keys {
            history.insert(k);
        }
        Some(Self {
            user,
            next: Seq(len + 1),
            prev: head,
            acc,
            keys: history,
            memories: memories.into_iter().collect(),
            grants: grants.into_iter().map(|g| (g.id, g)).collect(),
        })
    }

    /// Whose chain.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// Events so far.
    pub fn len(&self) -> u64 {
        self.next.0 - 1
    }

    /// Whether no event was applied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seq the next event must have.
    pub fn next_seq(&self) -> Seq {
        self.next
    }

    /// Hash of the last event (zero before the first).
    pub fn head(&self) -> Hash32 {
        self.prev
    }

    /// The chain tree over the events so far.
    pub fn tree(&self) -> &Accumulator {
        &self.acc
    }

    /// The chain tree's root.
    pub fn root(&self) -> Hash32 {
        self.acc.root(CHAIN_TREE)
    }

    /// The key history.
    pub fn keys(&self) -> &KeyHistory {
        &self.keys
    }

    /// A grant the chain created.
    pub fn grant(&self, id: &GrantId) -> Option<&Grant> {
        self.grants.get(id)
    }

    /// The grants the chain created (revoked ones included).
    pub fn grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants.values()
    }

    /// Whether the chain ingested this memory.
    pub fn has_memory(&self, id: &MemoryId) -> bool {
        self.memories.contains(id)
    }

    /// The checkpoint after the events so far (`None` for an empty chain).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        (!self.is_empty()).then(|| Checkpoint {
            user: self.user.clone(),
            seq: Seq(self.len()),
            head: self.prev,
            root: self.root(),
        })
    }

    /// Checks `event` (whose hash is `hash`) as the chain's next event and, if it may extend
    /// the chain, applies it. Returns the signatures to verify: the event is valid only if
    /// they verify too. On an error the state is unchanged.
    pub fn check(&mut self, event: &Event, hash: Hash32) -> Result<EventSignatures, ChainError> {
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
        if !event.timestamp.is_valid() {
            return Err(ChainError::InvalidValue {
                seq,
                reason: "the timestamp is outside the time range",
            });
        }
        event
            .body
            .check_values()
            .map_err(|reason| ChainError::InvalidValue { seq, reason })?;
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
                Some(SignatureCheck {
                    seq,
                    origin: true,
                    msg: keys::origin_signing_message(&event.user, commitment),
                    sig: o.signature.0,
                    key: rec.key.0,
                })
            }
        };
        self.apply(event)?;
        self.prev = hash;
        self.next = seq.next();
        self.acc.push(CHAIN_TREE, CHAIN_TREE.leaf(&hash.0));
        Ok(EventSignatures {
            custody: SignatureCheck {
                seq,
                origin: false,
                msg: keys::event_signing_message(&hash).to_vec(),
                sig: event.signature.0,
                key: signer,
            },
            origin,
        })
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
            return Ok(key.0);
        }
        let rec = self.keys.get(&event.signer).ok_or(ChainError::UnknownKey {
            seq,
            key: event.signer,
        })?;
        allowed(rec, KeyRole::Custody, seq, event.signer)?;
        Ok(rec.key.0)
    }

    /// Kind-specific rules and state changes. Checks everything before changing anything.
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
                capabilities,
                conditions,
                expires_at,
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
                    Grant {
                        id: *grant,
                        grantee: grantee.clone(),
                        capabilities: *capabilities,
                        conditions: conditions.clone(),
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
                action,
                memories,
            } => {
                let refused = match self.grants.get(grant) {
                    None => Some("does not exist"),
                    Some(g) => g
                        .live_for(accessor, *action, event.timestamp)
                        .err()
                        .map(|r| r.reason()),
                };
                if let Some(reason) = refused {
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
